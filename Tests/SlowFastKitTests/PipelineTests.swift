import XCTest
@testable import SlowFastKit
@testable import SlowFastAdapters

/// The library's pipeline and what the build compiles into it.
final class PipelineTests: XCTestCase {
    func testBuiltInAdaptersAreTheRepositoryFiles() throws {
        let all = try FileManager.default.contentsOfDirectory(atPath: TestSupport.path("Adapters")).filter { $0.hasSuffix(".yaml") }.sorted()
        let files = all.filter { !Adapter.isPatternLibrary($0) }
        XCTAssertEqual(BuiltIn.adapterNames, files.map { String($0.dropLast(5)) })
        // Pattern libraries are built in too, for adapters' include: and `slowfast adapters NAME`.
        XCTAssertEqual(BuiltIn.patternLibraries.keys.sorted(), all.filter(Adapter.isPatternLibrary))
        XCTAssertFalse(BuiltIn.patternLibraries.isEmpty)
        for name in BuiltIn.adapterNames + BuiltIn.patternLibraries.keys.map({ String($0.dropLast(5)) }) {
            let text = try String(contentsOfFile: TestSupport.path("Adapters/\(name).yaml"), encoding: .utf8)
            XCTAssertEqual(BuiltIn.adapterText(named: name), text, name)
        }
        XCTAssertEqual(try BuiltIn.adapters().map(\.name), BuiltIn.adapterNames)
    }

    func testBuiltInSchemasAreTheRepositoryFiles() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: TestSupport.path("Schemas")).filter { $0.hasSuffix(".schema.json") }
        XCTAssertEqual(Set(BuiltIn.schemaNames), Set(files.map { String($0.dropLast(".schema.json".count)) }))
        for name in BuiltIn.schemaNames {
            XCTAssertEqual(BuiltIn.schema(named: name), try String(contentsOfFile: TestSupport.path("Schemas/\(name).schema.json"), encoding: .utf8))
        }
    }

    func testAdapterChoiceReadsTheArgumentAsTheCommandLineDoes() {
        XCTAssertEqual(AdapterChoice(argument: "auto"), .auto)
        XCTAssertEqual(AdapterChoice(argument: "hf-torch-eager"), .builtIn("hf-torch-eager"))
        XCTAssertEqual(AdapterChoice(argument: "mine.yaml"), .file("mine.yaml"))
        XCTAssertEqual(AdapterChoice(argument: "dir/mine"), .file("dir/mine"))
        XCTAssertThrowsError(try AdapterChoice.builtIn("nope").adapters()) { error in
            XCTAssertTrue("\(error)".contains("built in: hf-torch-eager"), "\(error)")
        }
    }

    func testLayerSelectionFollowsTheReleaseRule() {
        XCTAssertEqual(LayerSelection.every(8).resolve(layerCount: 28), [0, 8, 16, 24])
        XCTAssertEqual(LayerSelection.every(8, from: 4, below: 20).resolve(layerCount: 28), [4, 12])
        XCTAssertEqual(LayerSelection.layers([5, 1, 5]).resolve(layerCount: 28), [1, 5])
        // A range past the model keeps its first missing layer, so the pass refuses it by name.
        XCTAssertEqual(LayerSelection.every(8, below: 40).resolve(layerCount: 28), [0, 8, 16, 24, 32])
        XCTAssertEqual(LayerSelection.every(1, from: 30).resolve(layerCount: 28), [])
        XCTAssertEqual(LayerSelection.every(1, from: 30, below: 31).resolve(layerCount: 28), [30])
        // Huge numbers cost nothing and do not trap.
        XCTAssertEqual(LayerSelection.every(Int.max, below: Int.max).resolve(layerCount: 28), [0])
        XCTAssertEqual(LayerSelection.every(1, from: 0, below: Int.max).resolve(layerCount: 3), [0, 1, 2, 3])
        XCTAssertEqual(LayerSelection.every(0).resolve(layerCount: 28), [])
    }

    func testRewriteWritesTheModelAndItsWeightMap() throws {
        let folder = try TestSupport.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let output = folder + "/model.onnx"
        let (outcome, report) = try Pipeline.rewrite(TestSupport.path("Examples/qwen2-tiny/model.onnx"), to: output,
                                                     request: RewriteRequest(hybrid: HybridRequest(layers: .every(2))))
        XCTAssertEqual(outcome.layout?.layers.count, 6)
        XCTAssertEqual(report.files.last?.path, output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/model.weight-map.json"))
        XCTAssertEqual(HybridLayerReport(model: try ModelReader.read(path: output)).hybridLayers.map(\.layer), [0, 2, 4])
    }

    func testAFailedRewriteNamesTheFileAndWritesNothing() throws {
        let folder = try TestSupport.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let input = TestSupport.path("Examples/qwen2-tiny/model.onnx")
        XCTAssertThrowsError(try Pipeline.rewrite(input, to: folder + "/m.onnx", request: RewriteRequest(hybrid: HybridRequest(layers: .layers([9]))))) { error in
            XCTAssertEqual("\(error)", "\(input): pass 'hybrid-layers': layer 9 does not exist: the model has 6 decoder layers (0...5)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), [])
    }
}
