import Foundation
@testable import SlowFastKit

/// Paths and models the test files share.
enum TestSupport {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ relative: String) -> String { repository.appendingPathComponent(relative).path }

    /// The example model (a tiny Qwen2, dynamo export with external data).
    static func exampleModel() throws -> Model { try ModelReader.read(path: path("Examples/qwen2-tiny/model.onnx")) }

    static func fixture(_ name: String) throws -> Model { try ModelReader.read(path: path("Tests/Fixtures/\(name)/model.onnx")) }

    /// A fresh empty folder under the system's temporary folder.
    static func temporaryFolder() throws -> String {
        let folder = NSTemporaryDirectory() + "slowfast-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }
}
