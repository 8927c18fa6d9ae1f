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
                          "qwen2-torchscript-sdpa": "hf-torch-sdpa", "llama-dynamo-sdpa": "hf-torch-sdpa",
                          "qwen2vl-torchscript-kv": "hf-torch-eager", "qwen2vl-dynamo": "hf-torch-eager", "qwen25vl-genai": "ort-genai-gqa"]
        for (name, adapter) in adapterFor {
            let layout = try LayerDiscovery.discover(try fixture(name), adapters: try adapters())
            XCTAssertEqual(layout.adapter, adapter, name)
            XCTAssertEqual(layout.dimensions, expected, name)
            XCTAssertEqual(layout.layers.map(\.index), Array(0 ..< 6), name)
        }
    }

    /// Qwen2.5-VL by onnxruntime-genai rotates q with MRotaryEmbedding before GroupQueryAttention:
    /// the rotated query is a graph value [B, L, H*hd], and the projections are separate.
    func testARotaryOpBeforeFusedAttentionGivesTheQueryWithHeadsMerged() throws {
        let layout = try LayerDiscovery.discover(try fixture("qwen25vl-genai"), adapters: try adapters())
        XCTAssertEqual(layout.layers.count, 6)
        for layer in layout.layers {
            XCTAssertEqual(layer.query, .headsMerged(name: "/model/layers.\(layer.index)/attn/q_rotary/MRotaryEmbedding/output_0"))
            XCTAssertEqual(layer.k.weight, "model.layers.\(layer.index).attn.k_proj.MatMul.weight")
            XCTAssertNil(layer.k.outputStart)
        }
    }

    /// The head counts MRotaryEmbedding states are checked against the weights: a k rotation
    /// that says 4 heads where k_proj is 2 x 16 wide is an error naming the layer and the numbers.
    func testARotaryOpsHeadCountThatDisagreesIsNamed() throws {
        let model = try fixture("qwen25vl-genai")
        let rotary = try XCTUnwrap(model.graph.nodes.first { $0.name == "/model/layers.3/attn/k_rotary/MRotaryEmbedding" })
        rotary.attributes = rotary.attributes.map { $0.name == "num_heads" ? .int("num_heads", 4) : $0 }
        XCTAssertThrowsError(try LayerDiscovery.discover(model, adapters: try adapters())) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("layer 3") && text.contains("MRotaryEmbedding '/model/layers.3/attn/k_rotary/MRotaryEmbedding' num_heads says 4 kv heads")
                          && text.contains("k_proj's width 32 / head_dim 16 is 2"), text)
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
        let canonical = try key.weight() + value.weight()  // rows of k_proj, then rows of v_proj
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

    /// InternLM2's grouped wqkv (per kv head: 2 query heads, key, value, 16 rows each): k and v
    /// are strided row blocks of it, read back in PyTorch's layout row for row.
    func testGroupedQkvGivesStridedKeyAndValueRows() throws {
        let model = try fixture("internlm2-torchscript")
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        XCTAssertEqual(layout.dimensions, ModelDimensions(numLayers: 6, hiddenSize: 64, numHeads: 4, numKVHeads: 2, headDim: 16,
                                                          intermediateSize: 128, vocabSize: 256))
        let layer = layout.layers[1]
        XCTAssertEqual(layer.q.outputRanges(total: 128), [0 ..< 32, 64 ..< 96])
        XCTAssertEqual(layer.k.outputRanges(total: 128), [32 ..< 48, 96 ..< 112])
        XCTAssertEqual(layer.v.outputRanges(total: 128), [48 ..< 64, 112 ..< 128])
        let stored = try XCTUnwrap(model.graph.initializer(named: layer.k.weight))
        XCTAssertEqual(stored.dims, [64, 128])  // [in, out]: the MatMul operand
        let values = try stored.floatValues()
        let key = try CanonicalProjection(layer.k, in: model.graph, layer: 1, role: "k_proj").weight()
        let value = try CanonicalProjection(layer.v, in: model.graph, layer: 1, role: "v_proj").weight()
        for row in 0 ..< 32 {
            let column = (row / 16) * 64 + row % 16
            for input in 0 ..< 64 {
                XCTAssertEqual(key[row * 64 + input], values[input * 128 + 32 + column])
                XCTAssertEqual(value[row * 64 + input], values[input * 128 + 48 + column])
            }
        }
        let names = Dictionary(layout.parameters.map { ($0.onnxName, $0.canonicalName) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(names[layer.k.weight], "model.layers.1.attention.wqkv.weight")
        XCTAssertEqual(names[layer.o.weight], "model.layers.1.attention.wo.weight")
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

    /// The Constant node (or initializer) feeding a Reshape's shape as its last piece: the
    /// head_dim entry of TorchScript's Concat(batch, length, -1, head_dim).
    func headDimConstant(of reshape: Node, in graph: Graph) -> Node? {
        let index = graph.index()
        guard let concat = index.producer(of: reshape.inputs[1]), concat.op == "Concat", let last = concat.inputs.last else { return nil }
        return index.producer(of: last).flatMap { $0.op == "Constant" ? $0 : nil }
    }

    /// Granite-style: the scores scaled by 0.1 instead of 1/sqrt(16). The head count stays
    /// 4 x 16 (it comes from the reshape and the weights), and the scale is read as it is.
    func testANonDefaultAttentionScaleDoesNotChangeTheHeadCount() throws {
        let model = try fixture("qwen2-torchscript")
        var replaced = 0
        for node in model.graph.nodes where node.op == "Constant" {
            guard case .tensor(let tensor)? = node.attribute("value"), tensor.dims.isEmpty, tensor.elementType == .float,
                  let value = try tensor.floatValues().first, value == 0.25 else { continue }
            node.attributes = [.tensor("value", Tensor(name: "", dims: [], floats: [0.1]))]
            replaced += 1
        }
        for tensor in model.graph.initializers where tensor.dims.isEmpty && tensor.elementType == .float {
            if try tensor.floatValues().first == 0.25 {
                model.graph.initializers[model.graph.initializers.firstIndex { $0 === tensor }!] = Tensor(name: tensor.name ?? "", dims: [], floats: [0.1])
                replaced += 1
            }
        }
        XCTAssertGreaterThanOrEqual(replaced, 1)
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        XCTAssertEqual(layout.dimensions.numHeads, 4)
        XCTAssertEqual(layout.dimensions.numKVHeads, 2)
        XCTAssertEqual(layout.dimensions.headDim, 16)
        for layer in layout.layers { XCTAssertEqual(layer.attentionScale ?? 0, 0.1, accuracy: 1e-7) }
    }

    /// A q reshape that says head_dim 8 while the k reshape says 16 is an error that names
    /// the layer and both numbers, not a guess.
    func testReshapeConstantsThatDisagreeAreAnErrorNamingTheLayerAndTheNumbers() throws {
        let model = try fixture("qwen2-torchscript")
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        let index = model.graph.index()
        // Layer 2's q projection: MatMul -> Add(bias) -> Reshape.
        var value = index.graph.nodes.first { $0.name == layout.layers[2].q.node }!.outputs[0]
        var reshape: Node?
        for _ in 0 ..< 3 {
            guard let next = index.consumers(of: value).first else { break }
            if next.op == "Reshape" { reshape = next; break }
            value = next.outputs[0]
        }
        let constant = try XCTUnwrap(headDimConstant(of: try XCTUnwrap(reshape), in: model.graph))
        // A fresh Constant, so that no other reshape that shared the old one changes.
        let fresh = Node("Constant", name: "test/head_dim_8", inputs: [], outputs: ["test/head_dim_8"],
                         attributes: [.tensor("value", Tensor(name: "", elementType: .int64, dims: [1], storage: .bytes(TensorBytes(int64s: [8]))))])
        let concat = model.graph.index().producer(of: reshape!.inputs[1])!
        concat.inputs[concat.inputs.count - 1] = fresh.outputs[0]
        model.graph.nodes.insert(fresh, at: model.graph.nodes.firstIndex { $0 === constant }!)
        XCTAssertThrowsError(try LayerDiscovery.discover(model, adapters: try adapters())) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("layer 2"), text)
            XCTAssertTrue(text.contains("head_dim disagrees"), text)
            XCTAssertTrue(text.contains("is 8") && text.contains("is 16"), text)
        }
    }

    /// No adapter matches a Qwen2 whose rotated keys pass through an op no adapter expects
    /// there (as a KV cache's Concat(past, new) did before issue 11): each adapter's report
    /// names the deepest step of its best attempt and the node there, through the optional
    /// repeat_kv nodes, instead of the shallow mismatch after skipping them.
    func testNoAdapterMatchedReportsEachAdaptersDeepestPoint() throws {
        let model = try fixture("qwen2-torchscript")
        let layout = try LayerDiscovery.discover(model, adapters: try adapters())
        let graph = model.graph
        // Put Concat(past, k_rotated) between every layer's rotated keys and their consumers.
        var inserted = 0
        for layer in layout.layers {
            let index = graph.index()
            // k MatMul -> Add(bias) -> Reshape -> Transpose -> Mul(cos) -> Add (RoPE).
            var value = index.graph.nodes.first { $0.name == layer.k.node }!.outputs[0]
            for op in ["Add", "Reshape", "Transpose"] {
                guard let next = index.consumers(of: value).first(where: { $0.op == op }) else { break }
                value = next.outputs[0]
            }
            let rotated = index.consumers(of: value).filter { $0.op == "Mul" }
                .compactMap { mul in index.consumers(of: mul.outputs[0]).first { $0.op == "Add" } }.first
            guard let rope = rotated else { continue }
            let out = rope.outputs[0], renamed = out + "/new"
            rope.outputs[0] = renamed
            let concat = Node("Sin", name: "/model/model/layers.\(layer.index)/self_attn/mystery", inputs: [renamed], outputs: [out])
            graph.nodes.insert(concat, at: graph.nodes.firstIndex { $0 === rope }! + 1)
            inserted += 1
        }
        XCTAssertEqual(inserted, layout.layers.count)
        XCTAssertThrowsError(try LayerDiscovery.discover(model, adapters: try adapters())) { error in
            // One line of at most 300 characters: the closest adapter, what it expected and found.
            let text = "\(error)"
            XCTAssertTrue(text.contains("no adapter matched; closest, hf-torch-eager: 0 layers"), text)
            XCTAssertFalse(text.contains("\n"), text)
            XCTAssertLessThanOrEqual(text.count, 300, text)
            XCTAssertTrue(text.contains("found Sin '/model/model/layers."), text)
            // The whole of every adapter's attempt (inspect --layers --explain): the eager adapter
            // got through Transpose, Reshape, Expand, Unsqueeze to where the keys (or the cache's
            // Concat) belong, and found the Sin there.
            let explanation = (error as? LayerDiscoveryError)?.explanation ?? ""
            XCTAssertTrue(explanation.contains("hf-torch-eager: 0 layers"), explanation)
            XCTAssertTrue(explanation.contains("Unsqueeze > input 0) at Sin '/model/model/layers."), explanation)
            for name in ["hf-torch-sdpa", "hf-torch-onnx-attention", "ort-genai-gqa"] {
                XCTAssertTrue(explanation.contains("\n  \(name): "), explanation)
            }
        }
    }
}
