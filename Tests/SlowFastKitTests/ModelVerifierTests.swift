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

    /// x (float16) -> Relu -> y; a pass adds `Add(y, float32 constant)` and feeds it to a
    /// MatMul with a float16 weight, as a rewrite that forgot a Cast would: onnxruntime refuses
    /// such a model, so the pass is refused, naming the node and both types.
    struct MistypedPass: ModelPass {
        let name = "mistyped"
        func run(_ model: Model) throws -> PassResult {
            model.graph.initializers.append(Tensor(name: "delta", dims: [2], floats: [0, 0]))
            model.graph.nodes.append(Node("Add", name: "join", inputs: ["y", "delta"], outputs: ["joined"]))
            return PassResult(changed: true)
        }
    }

    /// Adds `MatMul(x [2], w [3, 4])`: the contracted dims 2 and 3 differ.
    struct MisshapedPass: ModelPass {
        let name = "misshaped"
        func run(_ model: Model) throws -> PassResult {
            model.graph.initializers.append(Tensor(name: "w", elementType: .float16, dims: [3, 4], storage: .bytes(TensorBytes(copying: UnsafeRawBufferPointer(start: [UInt16](repeating: 0, count: 12), count: 24)))))
            model.graph.nodes.append(Node("MatMul", name: "project", inputs: ["y", "w"], outputs: ["p"]))
            return PassResult(changed: true)
        }
    }

    func half() -> Model {
        let graph = Graph(name: "g", nodes: [Node("Relu", name: "relu", inputs: ["x"], outputs: ["y"])],
                          inputs: [ValueInfo(name: "x", type: .tensor(.float16, [.value(2)]))],
                          outputs: [ValueInfo(name: "y", type: .tensor(.float16, [.value(2)]))])
        return Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func testAnAddedNodeMixingElementTypesIsRefused() {
        XCTAssertThrowsError(try PassManager([MistypedPass()]).run(half())) { error in
            XCTAssertEqual((error as? PassError)?.pass, "mistyped")
            XCTAssertTrue("\(error)".contains("node 'join' (Add, added): input 0 'y' is float16 but input 1 'delta' is float32"), "\(error)")
        }
        // The same node on a float32 model is fine.
        XCTAssertNoThrow(try PassManager([MistypedPass()]).run(chain()))
    }

    func testAnAddedNodeContradictingKnownDimsIsRefused() {
        XCTAssertThrowsError(try PassManager([MisshapedPass()]).run(half())) { error in
            XCTAssertTrue("\(error)".contains("node 'project' (MatMul, added): contracted dims differ: 2 and 3"), "\(error)")
        }
    }

    /// An original node that now reads an added value is checked too: here the added Cast
    /// makes Relu's output float32 while the original Add still adds a float16 constant.
    func testAnOriginalNodeReadingAnAddedValueIsChecked() {
        struct CastingPass: ModelPass {
            let name = "casting"
            func run(_ model: Model) throws -> PassResult {
                let add = model.graph.nodes.first { $0.name == "bias" }!
                model.graph.nodes.insert(Node("Cast", name: "up", inputs: ["y"], outputs: ["y32"], attributes: [.int("to", 1)]), at: 1)
                add.inputs[0] = "y32"
                return PassResult(changed: true)
            }
        }
        let model = half()
        model.graph.initializers.append(Tensor(name: "b", elementType: .float16, dims: [2], storage: .bytes(TensorBytes(copying: UnsafeRawBufferPointer(start: [UInt16](repeating: 0, count: 2), count: 4)))))
        model.graph.nodes.append(Node("Add", name: "bias", inputs: ["y", "b"], outputs: ["z"]))
        XCTAssertThrowsError(try PassManager([CastingPass()]).run(model)) { error in
            XCTAssertTrue("\(error)".contains("node 'bias' (Add, reads an added value): input 0 'y32' is float32 but input 1 'b' is float16"), "\(error)")
        }
    }
}
