import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastPasses

/// The SReLU pass on whole models: its marks, its typed changes, and the function it adds
/// (never a function of the model's own that happens to share the name).
final class SReLUPassTests: XCTestCase {
    /// x -> Relu -> y over [2, 4] float32.
    func reluModel() -> Model {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "act", inputs: ["x"], outputs: ["y"])],
                          inputs: [ValueInfo(name: "x", type: .tensor(.float, [.value(2), .value(4)]))],
                          outputs: [ValueInfo(name: "y", type: .tensor(.float, [.value(2), .value(4)]))])
        return Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func run(_ model: Model) throws -> PassResult {
        try PassManager([SReLUPass(options: SReLUOptions(targets: [.relu], channelAxis: -1, channels: 4))]).run(model)[0].result
    }

    func testChangesAndMarks() throws {
        let model = reluModel()
        let result = try run(model)
        XCTAssertEqual(result.changes, [.functionAdded(domain: Domain.slowFast, name: "SReLU", reused: false),
                                        .activationReplaced(site: "act", kind: "relu", channels: 4, axis: -1, form: "function")])
        XCTAssertEqual(SReLUPass.sites(in: model), ["act"])
        XCTAssertEqual(SReLUReport(model: model).sreluSites.first?.parameters.count, 4)
    }

    func testOurOwnFunctionIsReused() throws {
        let model = reluModel()
        _ = try run(model)
        // A second model that already carries exactly our function (as a model we wrote does).
        let second = reluModel()
        second.functions = model.functions
        second.opsetImports = model.opsetImports
        let result = try run(second)
        XCTAssertEqual(result.changes.first, .functionAdded(domain: Domain.slowFast, name: "SReLU", reused: true))
        XCTAssertEqual(second.functions.count, 1)
    }

    func testAForeignFunctionOfTheSameNameIsNeverCalled() throws {
        let model = reluModel()
        // ai.slowfast::SReLU that computes x + 1000: a model's own function, not ours.
        let thousand = Tensor(name: "", dims: [], floats: [1000])
        let foreign = Function(name: "SReLU", domain: Domain.slowFast, inputs: ["x", "t_left", "a_left", "t_right", "a_right"],
                               outputs: ["y"], nodes: [
                                   Node("Constant", name: "k", inputs: [], outputs: ["k"], attributes: [Attribute("value", .tensor(thousand))]),
                                   Node("Add", name: "add", inputs: ["x", "k"], outputs: ["y"]),
                               ], opsetImports: [OpsetImport(domain: "", version: 17)])
        model.functions = [foreign]
        model.opsetImports.append(OpsetImport(domain: Domain.slowFast, version: 1))
        let result = try run(model)
        XCTAssertEqual(result.changes.first, .functionAdded(domain: Domain.slowFast, name: "SReLU_2", reused: false))
        XCTAssertEqual(model.functions.map { $0.name ?? "" }, ["SReLU", "SReLU_2"])
        let call = try XCTUnwrap(model.graph.nodes.first { $0.domain == Domain.slowFast })
        XCTAssertEqual(call.op, "SReLU_2")
        XCTAssertTrue(model.functions[0] === foreign)
    }

    func testNodesAnotherPassAddedAreLeftAlone() throws {
        let model = reluModel()
        model.graph.nodes[0].metadataProps = [StringPair(RewriteMarks.pass, RewriteMarks.hybridPass)]
        XCTAssertThrowsError(try run(model)) { error in
            XCTAssertEqual((error as? PassError)?.underlying as? SReLUError, .noSites(targets: ["relu"]))
        }
    }
}
