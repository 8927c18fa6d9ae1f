import Foundation
import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

/// Round trips through our own writer and reader on models built in code. (Round trips of
/// models we did not write are in Tests/Validation/test_roundtrip_backend.py.)
final class SerializationTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "slowfast-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// y = x + w, with w a 2x3 float initializer.
    func makeModel() -> Model {
        let weight = Tensor(name: "w", dims: [2, 3], floats: [1, 2, 3, 4, 5, 6.5])
        let node = Node("Add", name: "add", inputs: ["x", "w"], outputs: ["y"])
        let graph = Graph(name: "g", nodes: [node], initializers: [weight],
                          inputs: [ValueInfo(name: "x", type: .tensor(.float, [.param("batch"), .value(3)]))],
                          outputs: [ValueInfo(name: "y", type: .tensor(.float, [.param("batch"), .value(3)]))])
        let model = Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)])
        model.producerName = "test"
        return model
    }

    func testWriteThenReadKeepsEveryModelledField() throws {
        let path = folder + "/a.onnx"
        try ModelWriter.write(makeModel(), to: path)
        let read = try ModelReader.read(path: path)
        XCTAssertEqual(read.irVersion, 8)
        XCTAssertEqual(read.producerName, "test")
        XCTAssertEqual(read.opsetImports, [OpsetImport(domain: "", version: 17)])
        XCTAssertEqual(read.graph.nodes.count, 1)
        XCTAssertEqual(read.graph.nodes[0].inputs, ["x", "w"])
        XCTAssertEqual(read.graph.inputs[0].type?.kind, .tensor(elementType: 1, shape: TensorShape([.param("batch"), .value(3)])))
        XCTAssertEqual(try read.graph.initializers[0].floatValues(), [1, 2, 3, 4, 5, 6.5])
    }

    func testRewritingIsByteIdentical() throws {
        let first = folder + "/a.onnx", second = folder + "/b.onnx", third = folder + "/c.onnx"
        try ModelWriter.write(makeModel(), to: first)
        try ModelWriter.write(try ModelReader.read(path: first), to: second)
        try ModelWriter.write(try ModelReader.read(path: first), to: third)
        let a = try Data(contentsOf: URL(fileURLWithPath: first))
        XCTAssertEqual(a, try Data(contentsOf: URL(fileURLWithPath: second)))
        XCTAssertEqual(a, try Data(contentsOf: URL(fileURLWithPath: third)))
    }

    func testRefusesToOverwriteItsInput() throws {
        let path = folder + "/a.onnx"
        try ModelWriter.write(makeModel(), to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ModelWriter.write(try ModelReader.read(path: path), to: path)) { error in
            XCTAssertEqual(error as? ModelWriteError, .outputIsInput(path: path))
        }
        XCTAssertEqual(before, try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func testMissingOutputFolderLeavesNothing() throws {
        let path = folder + "/missing/a.onnx"
        XCTAssertThrowsError(try ModelWriter.write(makeModel(), to: path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), [])
    }

    func testRandomBytesAreNotAModel() throws {
        let path = folder + "/noise.onnx"
        var generator = SystemRandomNumberGenerator()
        try Data((0 ..< 4096).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ModelReader.read(path: path)) { error in
            guard case .notONNX(let file, _)? = error as? ModelReadError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, path)
        }
    }

    func testExternalLocationsOutsideTheFolderAreRefused() throws {
        let resolver = try ExternalDataResolver(modelFile: folder + "/m.onnx")
        FileManager.default.createFile(atPath: folder + "/../outside-\(UUID().uuidString)", contents: Data(count: 8))
        XCTAssertThrowsError(try resolver.resolve(tensor: "t", entries: [StringPair("location", "../x.bin")], expectedBytes: nil)) {
            XCTAssertEqual($0 as? ModelReadError, .externalLocationEscapes(file: self.folder + "/m.onnx", tensor: "t", location: "../x.bin"))
        }
        XCTAssertThrowsError(try resolver.resolve(tensor: "t", entries: [StringPair("location", "/etc/passwd")], expectedBytes: nil)) {
            XCTAssertEqual($0 as? ModelReadError, .externalLocationAbsolute(file: self.folder + "/m.onnx", tensor: "t", location: "/etc/passwd"))
        }
        FileManager.default.createFile(atPath: folder + "/d.bin", contents: Data(count: 16))
        XCTAssertThrowsError(try resolver.resolve(tensor: "t", entries: [StringPair("location", "d.bin"), StringPair("offset", "8"),
                                                                         StringPair("length", "12")], expectedBytes: nil))
        let ok = try resolver.resolve(tensor: "t", entries: [StringPair("location", "d.bin"), StringPair("offset", "8")], expectedBytes: 8)
        XCTAssertEqual(ok.length, 8)
    }

    func testNewTensorsGoBesideTheOutputWhenTheModelIsExternal() throws {
        // Make an external-data model by hand: data file + a tensor pointing into it.
        let floats: [Float] = (0 ..< 512).map { Float($0) }
        try floats.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: folder + "/in.onnx.data"))
        let inputPath = folder + "/in.onnx"
        let resolver = try ExternalDataResolver(modelFile: inputPath)
        let location = try resolver.resolve(tensor: "w", entries: [StringPair("location", "in.onnx.data")], expectedBytes: 2048)
        let model = makeModel()
        model.graph.initializers = [Tensor(name: "w", elementType: .float, dims: [512], storage: .external(location))]
        model.graph.initializers.append(Tensor(name: "extra", dims: [1024], floats: [Float](repeating: 0.5, count: 1024)))
        let outFolder = folder + "/out"
        try FileManager.default.createDirectory(atPath: outFolder, withIntermediateDirectories: true)
        let report = try ModelWriter.write(model, to: outFolder + "/m.onnx", options: WriteOptions(weights: .copy))
        XCTAssertEqual(report.files.map(\.action), [.copied, .written, .written])
        let read = try ModelReader.read(path: outFolder + "/m.onnx")
        XCTAssertEqual(try read.graph.initializers[0].floatValues(), floats)
        XCTAssertEqual(try read.graph.initializers[1].floatValues(), [Float](repeating: 0.5, count: 1024))
        // Both data files are named after the output: the copy of in.onnx.data first, then the new tensors.
        guard case .external(let copied) = read.graph.initializers[0].storage,
              case .external(let extra) = read.graph.initializers[1].storage else { return XCTFail("w or extra is not external") }
        XCTAssertEqual(copied.location, "m.onnx.data")
        XCTAssertEqual(extra.location, "m.onnx.1.data")
    }

    /// A data file that shrinks between read and write is an error naming the file, and
    /// nothing is written (never a bus error, never a model pointing past the data's end).
    func testADataFileTruncatedBetweenReadAndWriteIsAnError() throws {
        for mode in [WeightsMode.copy, .inline, .link] {
            let work = try TestSupport.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: work) }
            for name in ["model.onnx", "model.onnx.data"] {
                try FileManager.default.copyItem(atPath: TestSupport.path("Examples/qwen2-tiny/\(name)"), toPath: work + "/" + name)
            }
            let model = try ModelReader.read(path: work + "/model.onnx")
            XCTAssertEqual(truncate(work + "/model.onnx.data", 4096), 0)
            try FileManager.default.createDirectory(atPath: work + "/out", withIntermediateDirectories: false)
            XCTAssertThrowsError(try ModelWriter.write(model, to: work + "/out/model.onnx", options: WriteOptions(weights: mode))) { error in
                XCTAssertTrue("\(error)".contains("model.onnx.data"), "\(mode): \(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(mode): one line")
            }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work + "/out"), [], "\(mode)")
        }
    }
}

final class TensorBytesTests: XCTestCase {
    /// A large array: its bytes must be copied while the array's buffer is pinned (a pointer
    /// escaping `withUnsafeBytes` crashed the hybrid rewrite of a 0.5B model).
    func testLargeFloatTensorsKeepTheirValues() throws {
        let values = (0 ..< 2_000_000).map { Float($0) * 0.5 }
        let tensor = Tensor(name: "big", dims: [2_000, 1_000], floats: values)
        XCTAssertEqual(try tensor.floatValues(), values)
        XCTAssertEqual(tensor.byteCount, 8_000_000)
    }
}

final class GraphTests: XCTestCase {
    func testTopologicalSortIsStableAndOrdersProducersFirst() throws {
        let a = Node("Relu", name: "a", inputs: ["x"], outputs: ["a"])
        let b = Node("Relu", name: "b", inputs: ["c"], outputs: ["b"])
        let c = Node("Relu", name: "c", inputs: ["a"], outputs: ["c"])
        let d = Node("Relu", name: "d", inputs: ["x"], outputs: ["d"])
        let graph = Graph(name: "g", nodes: [b, a, d, c])
        try graph.sortTopologically()
        XCTAssertEqual(graph.nodes.map { $0.name! }, ["a", "d", "c", "b"])
        try graph.sortTopologically()
        XCTAssertEqual(graph.nodes.map { $0.name! }, ["a", "d", "c", "b"])
    }

    func testCycleIsReported() {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "p", inputs: ["q"], outputs: ["p"]),
                                             Node("Relu", name: "q", inputs: ["p"], outputs: ["q"])])
        XCTAssertThrowsError(try graph.sortTopologically())
    }

    func testNameAllocatorAvoidsEveryExistingName() {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "n", inputs: ["x"], outputs: ["y"]),
                                             Node("Relu", name: "y_1", inputs: ["y"], outputs: ["z"])])
        var names = NameAllocator(graph: graph)
        XCTAssertEqual(names.fresh("y"), "y_2")
        XCTAssertEqual(names.fresh("y"), "y_3")
        XCTAssertEqual(names.fresh("new"), "new")
        XCTAssertEqual(names.fresh("new"), "new_1")
    }

    func testIndexFindsProducersAndConsumers() {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "n", inputs: ["x"], outputs: ["y"]),
                                             Node("Add", name: "m", inputs: ["y", "y"], outputs: ["z"])])
        let index = graph.index()
        XCTAssertEqual(index.producer(of: "y")?.name, "n")
        XCTAssertEqual(index.uses(of: "y").count, 2)
        XCTAssertEqual(index.consumers(of: "y").map { $0.name }, ["m"])
        XCTAssertNil(index.producer(of: "x"))
    }
}
