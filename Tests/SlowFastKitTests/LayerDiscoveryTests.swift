import Foundation
import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

/// Discovery and the hybrid pass on the committed real exports, from Swift.
final class LayerDiscoveryTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func fixture(_ name: String) throws -> Model {
        try ModelReader.read(path: Self.repository.appendingPathComponent("Tests/Fixtures/\(name)/model.onnx").path)
    }

    func adapters() throws -> [Adapter] {
        try Adapter.loadAll(folder: Self.repository.appendingPathComponent("Adapters").path)
    }

    func testEveryFixtureIsDescribedWithItsDims() throws {
        let expected = ModelDimensions(numLayers: 6, hiddenSize: 64, numHeads: 4, numKVHeads: 2, headDim: 16,
                                       intermediateSize: 128, vocabSize: 256)
        let adapterFor = ["qwen2-torchscript": "hf-torch-eager", "llama-dynamo": "hf-torch-eager", "qwen2-genai": "ort-genai-gqa",
                          "qwen2-torchscript-sdpa": "hf-torch-sdpa", "llama-dynamo-sdpa": "hf-torch-sdpa"]
        for (name, adapter) in adapterFor {
            let layout = try LayerDiscovery.discover(try fixture(name), adapters: try adapters())
            XCTAssertEqual(layout.adapter, adapter, name)
            XCTAssertEqual(layout.dimensions, expected, name)
            XCTAssertEqual(layout.layers.map(\.index), Array(0 ..< 6), name)
        }
    }

    func testHybridPassDerivesKVFromTheLayersOwnProjections() throws {
        let model = try fixture("qwen2-torchscript")
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        let layer = layout.layers[2]
        let key = try CanonicalProjection(layer.k, in: model.graph, layer: 2, role: "k_proj")
        let value = try CanonicalProjection(layer.v, in: model.graph, layer: 2, role: "v_proj")
        let inputsBefore = model.graph.inputs.count
        let result = try PassManager([HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: [2]))]).run(model)[0].result

        XCTAssertEqual(model.graph.inputs.count, inputsBefore + 3)
        let kv = try XCTUnwrap(model.graph.initializer(named: "model.layers.2.self_attn.cross_attn_kv_proj.weight"))
        XCTAssertEqual(kv.dims, [64, 64])  // stored [in, out] = transpose of [2 * kv_heads * head_dim, hidden]
        let stored = try kv.floatValues()
        let canonical = key.weight + value.weight  // rows of k_proj, then rows of v_proj
        for out in 0 ..< 64 { for input in 0 ..< 64 { XCTAssertEqual(stored[input * 64 + out], canonical[out * 64 + input]) } }
        let bias = try XCTUnwrap(model.graph.initializer(named: "model.layers.2.self_attn.cross_attn_kv_proj.bias")).floatValues()
        XCTAssertEqual(bias, try XCTUnwrap(key.bias) + XCTUnwrap(value.bias))
        XCTAssertEqual(try XCTUnwrap(model.graph.initializer(named: "model.layers.2.self_attn.cross_attn_warm_up_gate")).floatValues(), [0])
        let kinds = Dictionary(result.parameters.map { ($0.canonicalName, $0.kind) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(kinds["model.layers.2.self_attn.cross_attn_kv_proj.weight"], .derived)
        XCTAssertEqual(kinds["model.layers.2.self_attn.cross_attn_gate_proj.0.weight"], .new)
        // The o_proj now reads the attention output plus the gated slow-token term.
        let oNode = try XCTUnwrap(model.graph.nodes.first { $0.name == layer.o.node })
        XCTAssertNotEqual(oNode.inputs[0], layer.attentionOutput)
        XCTAssertNoThrow(try model.graph.sortTopologically())
    }

    func testOutOfRangeLayerIsRefusedBeforeAnythingChanges() throws {
        let model = try fixture("qwen2-dynamo")
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        let nodes = model.graph.nodes.count
        XCTAssertThrowsError(try PassManager([HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: [0, 7]))]).run(model)) {
            XCTAssertTrue("\($0)".contains("layer 7 does not exist"), "\($0)")
        }
        XCTAssertEqual(model.graph.nodes.count, nodes)
    }
}
