import XCTest
@testable import SlowFastIR
@testable import SlowFastPasses

/// The structural checks run after every pass, and the pass manager's use of them.
final class ModelVerifierTests: XCTestCase {
    /// x -> Relu -> y, one import of the default domain.
    func chain() -> Model {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "relu", inputs: ["x"], outputs: ["y"])],
                          inputs: [ValueInfo(name: "x", type: .tensor(.float, [.value(2)]))],
                          outputs: [ValueInfo(name: "y", type: .tensor(.float, [.value(2)]))])
        return Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func testAValidModelHasNoProblems() {
        XCTAssertEqual(ModelVerifier.problems(of: chain()), [])
    }

    func testEachBrokenRuleIsNamed() {
        let dangling = chain()
        dangling.graph.nodes.append(Node("Neg", name: "neg", inputs: ["nowhere"], outputs: ["z"]))
        XCTAssertEqual(ModelVerifier.problems(of: dangling).map(\.message), ["node 'neg' (Neg) reads 'nowhere', which nothing defines"])

        let twice = chain()
        twice.graph.nodes.append(Node("Neg", name: "neg", inputs: ["x"], outputs: ["y"]))
        XCTAssertEqual(ModelVerifier.problems(of: twice).map(\.message), ["value 'y' is defined twice (again by node 'neg' (Neg))"])

        let order = chain()
        order.graph.nodes.insert(Node("Neg", name: "neg", inputs: ["y"], outputs: ["z"]), at: 0)
        XCTAssertEqual(ModelVerifier.problems(of: order).map(\.message),
                       ["node 'neg' (Neg) reads 'y' before the node that produces it (not in topological order)"])

        let domain = chain()
        domain.graph.nodes.append(Node("Thing", domain: "com.example", name: "thing", inputs: ["x"], outputs: ["t"]))
        XCTAssertEqual(ModelVerifier.problems(of: domain).map(\.message),
                       ["node 'thing' (Thing) is in domain 'com.example', which the model does not import"])

        let output = chain()
        output.graph.outputs.append(ValueInfo(name: "missing", type: nil))
        XCTAssertEqual(ModelVerifier.problems(of: output).map(\.message), ["graph output 'missing' is not produced"])
    }

    func testSubgraphsSeeTheirEnclosingValues() {
        let model = chain()
        let body = Graph(name: "then", nodes: [Node("Neg", name: "inner", inputs: ["y"], outputs: ["n"])],
                         outputs: [ValueInfo(name: "n", type: nil)])
        model.graph.nodes.append(Node("If", name: "if", inputs: ["c"], outputs: ["r"],
                                      attributes: [Attribute("then_branch", .graph(body)), Attribute("else_branch", .graph(body))]))
        model.graph.inputs.append(ValueInfo(name: "c", type: .tensor(.bool, [])))
        XCTAssertEqual(ModelVerifier.problems(of: model), [])
    }

    /// A pass that leaves a node reading a value nothing defines.
    struct BreakingPass: ModelPass {
        let name = "breaking"
        func run(_ model: Model) throws -> PassResult {
            model.graph.nodes.append(Node("Neg", name: "broken", inputs: ["nowhere"], outputs: ["z"]))
            return PassResult(changed: true)
        }
    }

    struct NothingPass: ModelPass {
        let name = "nothing"
        func run(_ model: Model) throws -> PassResult { PassResult(changed: false) }
    }

    func testThePassThatBreaksTheGraphIsNamed() {
        XCTAssertThrowsError(try PassManager([NothingPass(), BreakingPass()]).run(chain())) { error in
            XCTAssertEqual((error as? PassError)?.pass, "breaking")
            XCTAssertTrue("\(error)".contains("'nowhere', which nothing defines"), "\(error)")
        }
    }

    func testProblemsTheInputHadAreNotBlamedOnAPass() throws {
        let model = chain()
        model.graph.outputs.append(ValueInfo(name: "missing", type: nil))
        XCTAssertEqual(try PassManager([NothingPass()]).run(model).count, 1)
    }
}
