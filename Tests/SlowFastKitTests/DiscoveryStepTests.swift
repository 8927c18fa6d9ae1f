import Foundation
import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters

/// Each discovery step (Sources/SlowFastAdapters/Discovery/) on the committed exports that
/// have its trait, and the capture vocabulary the steps read.
final class DiscoveryStepTests: XCTestCase {
    /// The layer sites of a fixture, as `describe` makes them, with the adapter that matched.
    func sites(_ name: String) throws -> (LayerSite, [LayerSite]) {
        let model = try TestSupport.fixture(name)
        let matcher = PatternMatcher(graph: model.graph)
        let layout = try LayerDiscovery.discover(model, adapters: try BuiltIn.adapters())
        let adapter = try XCTUnwrap(try BuiltIn.adapters().first { $0.name == layout.adapter })
        let sites = try LayerDiscovery.attentionBlocks(model, matcher: matcher, adapter: adapter, file: name).map {
            LayerSite(file: name, adapter: adapter, matcher: matcher, match: $0.1, number: $0.0)
        }
        return (try XCTUnwrap(sites.first), sites)
    }

    func testAttentionBlocksAreNumberedInLayerOrder() throws {
        for name in ["qwen2-torchscript", "qwen2-genai", "llama-dynamo"] {
            let (_, all) = try sites(name)
            XCTAssertEqual(all.map(\.number), Array(0 ..< 6), name)
        }
    }

    func testProjectionsSeparatePackedAndGrouped() throws {
        // Separate q/k/v (GQA: 4 heads, 2 kv heads of 16).
        let plain = try LayerDiscovery.projections(try sites("qwen2-torchscript").0, numLayers: 6)
        XCTAssertEqual([plain.dims.numHeads, plain.dims.numKVHeads, plain.dims.headDim, plain.dims.hiddenSize], [4, 2, 16, 64])
        XCTAssertNil(plain.slicedPacked)
        XCTAssertNotEqual(plain.q.weight, plain.k.weight)
        // Phi-3's qkv_proj, sliced by the graph: one weight, three row ranges, a packed module.
        let packed = try LayerDiscovery.projections(try sites("phi3-torchscript").0, numLayers: 6)
        XCTAssertEqual(packed.q.weight, packed.k.weight)
        XCTAssertEqual([packed.q.outputStart, packed.k.outputStart, packed.v.outputStart], [0, 64, 96])
        XCTAssertEqual(packed.slicedPacked, packed.q.weight)
        // InternLM2's wqkv: per kv head, its query heads, key and value, strided.
        let grouped = try LayerDiscovery.projections(try sites("internlm2-torchscript").0, numLayers: 6)
        XCTAssertEqual(grouped.k.outputStride, (4 / grouped.dims.numKVHeads + 2) * grouped.dims.headDim)
        XCTAssertEqual(grouped.k.outputBlock, grouped.dims.headDim)
    }

    func testRotaryGivesTheQueryTheAttentionUses() throws {
        let site = try sites("qwen2-torchscript").0
        guard case .tensor = try LayerDiscovery.query(site, fused: nil, attentionWidth: 64) else { return XCTFail("expected a rotated query value") }
        // RoPE inside GroupQueryAttention: the query before it and the op's tables.
        let fusedSite = try sites("qwen2-genai").0
        let projections = try LayerDiscovery.projections(fusedSite, numLayers: 6)
        guard case .fused(let rotary) = try LayerDiscovery.query(fusedSite, fused: projections.fusedAttention, attentionWidth: 64) else {
            return XCTFail("expected the fused op's rotary")
        }
        XCTAssertFalse(rotary.interleaved)
        XCTAssertEqual(rotary.querySliceCount, 64)
        XCTAssertFalse(rotary.cosCache.isEmpty)
    }

    func testResidualJoinFindsSandwichNormsAndAMissingInputNorm() throws {
        // Gemma 2: o_proj's output goes through a norm of its own before the Add.
        let gemma = try sites("gemma2-torchscript").0
        let oOutput = try XCTUnwrap(gemma.match.node("oNode")?.outputs.first)
        let join = try LayerDiscovery.residualJoin(gemma, oOutput: oOutput, normed: try gemma.need("normedInput", ""))
        XCTAssertNotNil(join.attentionOutputNorm)
        XCTAssertNotNil(join.postNorm)
        // OLMo-2: no input norm; the projections read the stream itself.
        let olmo = try sites("olmo2-torchscript").0
        let normed = try olmo.need("normedInput", "")
        let olmoJoin = try LayerDiscovery.residualJoin(olmo, oOutput: try XCTUnwrap(olmo.match.node("oNode")?.outputs.first), normed: normed)
        XCTAssertEqual(olmoJoin.residualInput, normed)
        XCTAssertNil(try LayerDiscovery.inputNorm(olmo, normed: normed, residualInput: olmoJoin.residualInput))
        // Qwen2: an input norm, and nothing between o_proj and the Add.
        let qwen = try sites("qwen2-torchscript").0
        let qwenJoin = try LayerDiscovery.residualJoin(qwen, oOutput: try XCTUnwrap(qwen.match.node("oNode")?.outputs.first),
                                                       normed: try qwen.need("normedInput", ""))
        XCTAssertNil(qwenJoin.attentionOutputNorm)
        let norm = try XCTUnwrap(try LayerDiscovery.inputNorm(qwen, normed: try qwen.need("normedInput", ""), residualInput: qwenJoin.residualInput))
        XCTAssertEqual(norm.epsilon, 1e-6, accuracy: 1e-9)
    }

    func testMLPStepReadsPackedGateUp() throws {
        let site = try sites("phi3-torchscript").0
        let oOutput = try XCTUnwrap(site.match.node("oNode")?.outputs.first)
        let join = try LayerDiscovery.residualJoin(site, oOutput: oOutput, normed: try site.need("normedInput", ""))
        let block = try LayerDiscovery.mlp(site, residual: join, normed: try site.need("normedInput", ""),
                                           matches: LayerDiscovery.mlpMatches(site.adapter, matcher: site.matcher))
        XCTAssertEqual(Set(block.projections.keys), ["gate_up_proj", "down_proj"])
        XCTAssertFalse(block.residualOutput.isEmpty)
    }

    func testScoresReadScaleAndSoftcap() throws {
        let gemma = try sites("gemma2-torchscript").0
        let cap = try XCTUnwrap(try LayerDiscovery.softcap(gemma.match, fused: nil, matcher: gemma.matcher, fail: gemma.fail))
        XCTAssertGreaterThan(cap, 0)
        let qwen = try sites("qwen2-torchscript").0
        XCTAssertNil(try LayerDiscovery.softcap(qwen.match, fused: nil, matcher: qwen.matcher, fail: qwen.fail))
    }

    func testCaptureVocabularyIsTheSchemas() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestSupport.path("Schemas/adapter.schema.json")))
        let schema = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let defs = try XCTUnwrap(schema["$defs"] as? [String: Any])
        let vocabulary = try XCTUnwrap((defs["captureVocabulary"] as? [String: Any])?["enum"] as? [String])
        XCTAssertEqual(vocabulary, Capture.allCases.map(\.rawValue))
    }

    /// The built-in eager adapter's text with one edit, parsed.
    func parsedEager(_ replace: String, with replacement: String) throws -> Adapter {
        let text = try XCTUnwrap(BuiltIn.adapterText(named: "hf-torch-eager"))
        XCTAssertTrue(text.contains(replace) || BuiltIn.patternLibraries.values.contains { $0.contains(replace) })
        let libraries = BuiltIn.patternLibraries.mapValues { $0.replacingOccurrences(of: replace, with: replacement) }
        return try Adapter.parse(text.replacingOccurrences(of: replace, with: replacement), source: "mine.yaml") { libraries[$0].map { ($0, "built-in") } }
    }

    func testACaptureNoStepReadsOrOneMissingFromItsGroupIsAnAdapterError() throws {
        XCTAssertNoThrow(try parsedEager("capture: oNode", with: "capture: oNode"))
        XCTAssertThrowsError(try parsedEager("capture: oNode", with: "capture: oNodes")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("mine.yaml: the attention pattern captures 'oNodes', which no discovery step reads"), text)
        }
        XCTAssertThrowsError(try parsedEager("constant: vWeight}", with: "constant: vWeights}")) { error in
            XCTAssertTrue("\(error)".contains("captures 'vWeights', which no discovery step reads"), "\(error)")
        }
        // A binding of the adapter's own is read by no step and refused by none.
        XCTAssertNoThrow(try parsedEager("- op: Softmax\n", with: "- op: Softmax\n            capture: _scores\n"))
        // A step's captures read together: the fused rotary's four inputs.
        let genai = try XCTUnwrap(BuiltIn.adapterText(named: "ort-genai-gqa"))
        XCTAssertThrowsError(try Adapter.parse(genai.replacingOccurrences(of: "sinCache", with: "_sin"), source: "gqa.yaml") {
            BuiltIn.patternLibraries[$0].map { ($0, "built-in") }
        }) { error in
            XCTAssertTrue("\(error)".contains("the rotary step reads 'cosCache', 'sinCache', 'seqlensK', 'totalSequenceLength' together"), "\(error)")
        }
        // A capture of the norm pattern in the attention pattern.
        XCTAssertThrowsError(try parsedEager("capture: oNode", with: "capture: normNode")) { error in
            XCTAssertTrue("\(error)".contains("captures 'normNode', which the norms step reads from the inputNorm pattern"), "\(error)")
        }
    }

    func testParameterisedPatternsExpandOncePerUse() throws {
        // The shared library's query and key heads are one pattern with p = q and p = k.
        let eager = try XCTUnwrap(try BuiltIn.adapters().first { $0.name == "hf-torch-eager" })
        let counts = eager.attention.captureCounts()
        for name in ["qNode", "kNode", "qWeight", "kWeight", "qReshape", "kReshape", "qNormWeight", "kNormWeight", "qGroupSlice", "kGroupGather"] {
            XCTAssertNotNil(counts[name], name)
        }
        XCTAssertFalse(counts.keys.contains { $0.contains("$") }, "\(counts.keys.sorted())")
        // The header comes from the library: layer numbers and module names for every torch.onnx adapter.
        XCTAssertEqual(eager.layerIndex.count, 2)
        XCTAssertNotNil(eager.moduleNaming)

        let library = """
        patterns:
          projected:
            parameters: [role]
            op: MatMul
            capture: '${role}Node'
            inputs: [{value: normedInput}, {constant: '${role}Weight'}]
        """
        func adapter(_ attention: String) throws -> Adapter {
            let text = """
            name: mine
            residual: add
            include: [mine.patterns.yaml]
            attention: \(attention)
            inputNorm: {op: Mul, inputs: [{value: normInput}, {constant: normWeight}], capture: normNode}
            """
            return try Adapter.parse(text, source: "mine.yaml") { $0 == "mine.patterns.yaml" ? (library, "mine.patterns.yaml") : nil }
        }
        let attention = """
        {op: MatMul, capture: oNode, inputs: [{op: Add, capture: attentionOutput, inputs: [{use: projected, with: {role: q}}, \
        {use: projected, with: {role: k}}, {use: projected, with: {role: v}}, {value: query}]}, {constant: oWeight}]}
        """
        let parsed = try adapter(attention.replacingOccurrences(of: "\\\n", with: ""))
        XCTAssertEqual(Set(parsed.attention.captureCounts().keys),
                       ["oNode", "attentionOutput", "qNode", "qWeight", "kNode", "kWeight", "vNode", "vWeight", "normedInput", "query", "oWeight"])
        func refusal(_ attention: String) -> String {
            do { _ = try adapter(attention); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(refusal("{use: projected, with: {rol: q}}").contains("'use: projected' gives 'rol', which pattern 'projected' does not declare in 'parameters' (role)"))
        XCTAssertTrue(refusal("{use: projected}").contains("'use: projected' gives no value for its parameter 'role'"))
        XCTAssertTrue(refusal("{op: MatMul, capture: '${x}Node'}").contains("'${x}Node' uses '${x}', which no 'use: ... with:' in scope gives"))
    }
}
