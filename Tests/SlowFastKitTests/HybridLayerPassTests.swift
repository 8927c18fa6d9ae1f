import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastAdapters
@testable import SlowFastPasses

/// The hybrid-layer pass: its typed changes, its marks, its contract, and what a second
/// rewrite of a model it wrote does.
final class HybridLayerPassTests: XCTestCase {
    func rewrite(_ model: Model, layers: [Int], mode: HybridLayerOptions.Mode = .inPlace,
                 slowKV: SlowKVSource = .inline) throws -> (ModelLayout, PassResult) {
        let layout = try LayerDiscovery.discover(model, adapters: try BuiltIn.adapters())
        let pass = HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: layers, mode: mode, slowKV: slowKV))
        return (layout, try PassManager([pass]).run(model)[0].result)
    }

    func testChangesAreTypedAndComplete() throws {
        let (_, result) = try rewrite(try TestSupport.exampleModel(), layers: [4, 0, 2])
        let layers = result.changes.compactMap { change -> Int? in
            if case .hybridLayer(let layer, _) = change { return layer }
            return nil
        }
        XCTAssertEqual(layers, [0, 2, 4])
        let inputs = result.changes.compactMap { change -> String? in
            if case .inputAdded(let name, _, _, _, _) = change { return name }
            return nil
        }
        XCTAssertEqual(inputs, ["slow_tokens", "slow_tokens_mask", "slow_query_exclude"])
        XCTAssertEqual(result.parameters.count, 3 * 5)  // kv weight/bias, gate weight/bias, warm-up gate
        XCTAssertTrue(result.companions.isEmpty)
    }

    func testNoNewInputHasAnInitializerBehindIt() throws {
        for slowKV in SlowKVSource.allCases {
            let model = try TestSupport.exampleModel()
            let (_, result) = try rewrite(model, layers: [0, 2], slowKV: slowKV)
            let added = result.changes.compactMap { change -> String? in
                if case .inputAdded(let name, _, _, _, _) = change { return name }
                return nil
            }
            XCTAssertEqual(Set(added).intersection(model.graph.initializers.compactMap(\.name)), [], slowKV.rawValue)
            XCTAssertTrue(Set(added).isSubset(of: model.graph.inputs.compactMap(\.name)), slowKV.rawValue)
        }
    }

    func testSlowKVInputsBuildsTheCompanion() throws {
        let model = try TestSupport.exampleModel()
        let (_, result) = try rewrite(model, layers: [2, 0], slowKV: .inputs)
        let inputs = result.changes.compactMap { change -> String? in
            if case .inputAdded(let name, _, _, _, _) = change { return name }
            return nil
        }
        XCTAssertEqual(inputs, ["past_key_values.0.encoder.key", "past_key_values.0.encoder.value", "past_key_values.2.encoder.key",
                                "past_key_values.2.encoder.value", "slow_tokens_mask", "slow_query_exclude"])
        XCTAssertEqual(result.companions.count, 1)
        let companion = try XCTUnwrap(result.companions.first)
        XCTAssertEqual(companion.role, "slow-kv-encoder")
        XCTAssertEqual(companion.path(besideOutput: "out/model.onnx"), "out/model.slow-kv-encoder.onnx")
        XCTAssertEqual(companion.model.graph.inputs.compactMap(\.name), ["slow_tokens"])
        XCTAssertEqual(companion.model.graph.outputs.compactMap(\.name),
                       ["present.0.encoder.key", "present.0.encoder.value", "present.2.encoder.key", "present.2.encoder.value"])
        // The decoder keeps the gates; kv_proj and the norm copies live in the companion.
        XCTAssertEqual(result.parameters.count, 2 * 3)
        XCTAssertEqual(companion.parameters.count, 2 * 3)
        XCTAssertEqual(Set(companion.parameters.map(\.onnxName)), Set(companion.model.graph.initializers.compactMap(\.name)))
        XCTAssertFalse(model.graph.initializers.contains { $0.name?.contains("cross_attn_kv_proj") == true })
        XCTAssertTrue(ModelVerifier.problems(of: companion.model).isEmpty)
    }

    func testSlowKVInputsNeedsInPlaceMode() throws {
        let model = try TestSupport.exampleModel()
        XCTAssertThrowsError(try rewrite(model, layers: [0], mode: .insert, slowKV: .inputs)) { error in
            XCTAssertEqual((error as? PassError)?.underlying as? HybridLayerError, .slowKVInputsNeedInPlace)
        }
    }

    func testEveryNewNodeIsMarkedWithItsLayer() throws {
        let model = try TestSupport.exampleModel()
        let before = Set(model.graph.nodes.map(ObjectIdentifier.init))
        _ = try rewrite(model, layers: [1, 3])
        let added = model.graph.nodes.filter { !before.contains(ObjectIdentifier($0)) }
        XCTAssertFalse(added.isEmpty)
        for node in added { XCTAssertEqual(node.metadata(RewriteMarks.pass), RewriteMarks.hybridPass, node.name ?? "") }
        XCTAssertEqual(Set(added.compactMap { $0.metadata(RewriteMarks.layer) }), ["1", "3"])
        XCTAssertEqual(HybridLayerPass.hybridLayers(in: model), [1: "in-place", 3: "in-place"])
        // One join per layer passes the attention output through.
        XCTAssertEqual(added.filter { $0.metadata(RewriteMarks.passthrough) == "0" }.count, 2)
    }

    func testARewrittenModelIsDescribedLikeTheOriginal() throws {
        for mode in HybridLayerOptions.Mode.allCases {
            let model = try TestSupport.exampleModel()
            let (original, _) = try rewrite(model, layers: [0, 3], mode: mode)
            let again = try LayerDiscovery.discover(model, adapters: try BuiltIn.adapters())
            XCTAssertEqual(again.dimensions, original.dimensions, mode.rawValue)
            XCTAssertEqual(again.layers.map(\.o.node), original.layers.map(\.o.node), mode.rawValue)
            XCTAssertEqual(again.layers.map(\.attentionOutput), original.layers.map(\.attentionOutput), mode.rawValue)
        }
    }

    func testASecondRewriteIsRefusedBeforeAnyChange() throws {
        let model = try TestSupport.exampleModel()
        let (layout, _) = try rewrite(model, layers: [2])
        let nodes = model.graph.nodes.count
        for layers in [[2], [4]] {
            let pass = HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: layers))
            XCTAssertThrowsError(try PassManager([pass]).run(model)) { error in
                let underlying = (error as? PassError)?.underlying as? HybridLayerError
                XCTAssertEqual(underlying, layers == [2] ? .alreadyHybrid(layer: 2, mode: "in-place") : .alreadyRewritten(layers: [2]))
            }
            XCTAssertEqual(model.graph.nodes.count, nodes)
        }
    }

    func testRewriteSummaryListsTheLayersAndTheirOwnParameters() throws {
        let model = try TestSupport.exampleModel()
        let (_, result) = try rewrite(model, layers: [0, 5], mode: .insert)
        let summary = try XCTUnwrap(RewriteSummary(model: model).report(HybridLayerReport.self))
        XCTAssertEqual(summary.hybridLayers.map(\.layer), [0, 5])
        XCTAssertEqual(summary.hybridLayers.map(\.mode), ["insert", "insert"])
        // Every parameter the pass reported belongs to exactly one layer.
        let owned = summary.hybridLayers.flatMap(\.parameters)
        XCTAssertEqual(Set(owned).count, owned.count)
        XCTAssertEqual(Set(owned), Set(result.parameters.map(\.onnxName)))
    }
}
