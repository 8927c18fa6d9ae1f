import Foundation
import XCTest
import SlowFastKit

/// A pass from outside the library: it changes nothing in the graph and records one change.
/// Everything it takes to add it is in this file (the request, the pass) — the pipeline,
/// the request type and the weight map name no pass.
private struct NoteRequest: PassRequest {
    var text: String
    var passName: String { "note" }
    var order: Int { 150 }
    func makePass(layout: ModelLayout?) throws -> ModelPass { NotePass(name: passName, text: text, layers: layout?.layers.count) }
}

private struct NotePass: ModelPass {
    var name: String
    var text: String
    var layers: Int?
    func run(_ model: Model) throws -> PassResult {
        PassResult(changed: false, changes: [.recorded(kind: "note", detail: "\(text) (\(model.graph.nodes.count) nodes, layers \(layers.map(String.init) ?? "not read"))")])
    }
}

/// Reads the layer description, and refuses a model with none.
private struct CountingRequest: PassRequest {
    var passName: String { "count-layers" }
    var order: Int { 50 }
    var needsLayers: Bool { true }
    func makePass(layout: ModelLayout?) throws -> ModelPass { NotePass(name: passName, text: "counted", layers: layout?.layers.count) }
}

/// What `inspect` would say of the note pass's earlier work: its own key and lines, beside
/// the built-in passes' reports, declared here only.
private struct NodeCountReport: RewriteReport, Equatable {
    var nodeCount: Int
    init(model: Model) { nodeCount = model.graph.nodes.count }
    var lines: [String] { ["nodes counted: \(nodeCount)"] }
}

final class PassRequestTests: XCTestCase {
    let example = TestSupport.path("Examples/qwen2-tiny/model.onnx")

    func testAPassDeclaredOutsideTheLibraryRunsAndIsRecorded() throws {
        let model = try ModelReader.read(path: example)
        let nodes = model.graph.nodes.count
        let outcome = try Pipeline.apply(RewriteRequest(passes: [NoteRequest(text: "hello")]), to: model)
        XCTAssertEqual(outcome.results.map(\.pass), ["note"])
        XCTAssertEqual(outcome.changes, [.recorded(kind: "note", detail: "hello (\(nodes) nodes, layers not read)")])
        XCTAssertNil(outcome.layout, "no pass asked for the layers: discovery did not run")
        XCTAssertEqual(model.graph.nodes.count, nodes)
        XCTAssertEqual(outcome.weightMap.summary.new + outcome.weightMap.summary.derived, 0)
    }

    func testPassesRunInTheirOrderWhateverOrderTheyAreListedIn() throws {
        let model = try ModelReader.read(path: example)
        let nodes = model.graph.nodes.count
        let request = RewriteRequest(passes: [SReLURequest(SReLUOptions(targets: [.silu])), NoteRequest(text: "between"),
                                              HybridRequest(layers: .layers([0])), CountingRequest()])
        let outcome = try Pipeline.apply(request, to: model)
        XCTAssertEqual(outcome.results.map(\.pass), ["count-layers", "hybrid-layers", "note", "srelu"])
        XCTAssertEqual(outcome.layout?.layers.count, 6, "the layers are read once, for every pass that needs them")
        XCTAssertTrue(outcome.results[0].result.changes.contains(.recorded(kind: "note", detail: "counted (\(nodes) nodes, layers 6)")))
    }

    func testAReportDeclaredOutsideTheLibraryIsListedBesideTheBuiltInOnes() throws {
        let model = try ModelReader.read(path: example)
        _ = try Pipeline.apply(RewriteRequest(hybrid: HybridRequest(layers: .layers([1]))), to: model)
        let summary = RewriteSummary(model: model, reporters: RewriteSummary.reporters + [NodeCountReport.self])
        XCTAssertEqual(summary.report(HybridLayerReport.self)?.hybridLayers.map(\.layer), [1])
        XCTAssertEqual(summary.lines.last, "nodes counted: \(model.graph.nodes.count)")
        XCTAssertEqual(summary.lines.filter { $0.hasPrefix("hybrid layer 1 (in-place): ") }.count, 1)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: encoder.encode(summary)) as? [String: Any])
        XCTAssertEqual(Set(json.keys), ["hybridLayers", "sreluSites", "nodeCount"])
        XCTAssertEqual(json["nodeCount"] as? Int, model.graph.nodes.count)
        XCTAssertEqual(summary, RewriteSummary(model: model, reporters: RewriteSummary.reporters + [NodeCountReport.self]))
        XCTAssertNotEqual(summary, RewriteSummary(model: model))
    }

    func testTheBuiltInAccessorsReadAndReplaceTheirPasses() {
        var request = RewriteRequest(hybrid: HybridRequest(layers: .every(8)), srelu: SReLUOptions(targets: [.gelu]), allowNoSites: true)
        XCTAssertEqual(request.passes.map(\.passName), ["hybrid-layers", "srelu"])
        XCTAssertEqual(request.hybrid?.layers, .every(8))
        XCTAssertEqual(request.srelu?.targets, [.gelu])
        XCTAssertTrue(request.allowNoSites)
        request.hybrid = HybridRequest(layers: .layers([1]))
        request.srelu = nil
        XCTAssertEqual(request.passes.map(\.passName), ["hybrid-layers"])
        XCTAssertEqual(request.hybrid?.layers, .layers([1]))
        XCTAssertFalse(request.allowNoSites)
        XCTAssertTrue(RewriteRequest().passes.isEmpty)
    }
}
