import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

/// The matcher on small graphs built in code.
final class PatternMatcherTests: XCTestCase {
    /// y = Mul(Sigmoid(x), x): SiLU written with the operands in the "wrong" order.
    func siluGraph(swapped: Bool) -> Graph {
        let sigmoid = Node("Sigmoid", name: "sig", inputs: ["x"], outputs: ["s"])
        let mul = Node("Mul", name: "mul", inputs: swapped ? ["s", "x"] : ["x", "s"], outputs: ["y"])
        return Graph(name: "g", nodes: [sigmoid, mul])
    }

    let silu = Pattern.op("Mul", [.value("x"), .op("Sigmoid", [.value("x")], capture: "gate")], commutative: true, capture: "silu")

    func testCommutativeInputsMatchInEitherOrder() throws {
        for swapped in [false, true] {
            let match = try PatternMatcher(graph: siluGraph(swapped: swapped)).match(silu, at: "y").get()
            XCTAssertEqual(match["x"], "x")
            XCTAssertEqual(match.node("gate")?.name, "sig")
            XCTAssertEqual(match.matchedNodes.count, 2)
        }
    }

    func testNonCommutativeOrderIsRespected() {
        let strict = Pattern.op("Mul", [.value("x"), .op("Sigmoid", [.value("x")])])
        XCTAssertNoThrow(try PatternMatcher(graph: siluGraph(swapped: false)).match(strict, at: "y").get())
        XCTAssertThrowsError(try PatternMatcher(graph: siluGraph(swapped: true)).match(strict, at: "y").get())
    }

    func testCapturesUsedTwiceMustAgree() {
        // Mul(a, Sigmoid(b)) with a != b is not SiLU.
        let graph = Graph(name: "g", nodes: [Node("Sigmoid", name: "sig", inputs: ["b"], outputs: ["s"]),
                                             Node("Mul", name: "mul", inputs: ["a", "s"], outputs: ["y"])])
        XCTAssertThrowsError(try PatternMatcher(graph: graph).match(silu, at: "y").get())
    }

    func testOptionalNodesAreSkippedWhenAbsent() throws {
        let pattern = Pattern.node(NodePattern(opTypes: ["Cast"], inputs: [.op("Relu", [.value("x")], capture: "relu")], optional: true))
        let withCast = Graph(name: "g", nodes: [Node("Relu", name: "r", inputs: ["x"], outputs: ["r"]),
                                                Node("Cast", name: "c", inputs: ["r"], outputs: ["y"], attributes: [.int("to", 1)])])
        let without = Graph(name: "g", nodes: [Node("Relu", name: "r", inputs: ["x"], outputs: ["y"])])
        XCTAssertEqual(try PatternMatcher(graph: withCast).match(pattern, at: "y").get()["relu"], "r")
        XCTAssertEqual(try PatternMatcher(graph: without).match(pattern, at: "y").get()["relu"], "y")
    }

    /// y = Cast(Relu(Tanh(x))) against Cast?(Relu(Sigmoid(x))): the Cast and the Relu are
    /// there, the Sigmoid is not. Skipping the optional Cast fails at once ("y comes from
    /// Cast"); the failure reported must be the one two nodes further in, at the Tanh.
    func testAFailedOptionalNodeReportsTheDeepestFailureThroughIt() {
        let pattern = Pattern.node(NodePattern(opTypes: ["Cast"], inputs: [.op("Relu", [.op("Sigmoid", [.value("x")])])], optional: true))
        let graph = Graph(name: "g", nodes: [Node("Tanh", name: "t", inputs: ["x"], outputs: ["a"]),
                                             Node("Relu", name: "r", inputs: ["a"], outputs: ["b"]),
                                             Node("Cast", name: "c", inputs: ["b"], outputs: ["y"], attributes: [.int("to", 1)])])
        guard case .failure(let failure) = PatternMatcher(graph: graph).match(pattern, at: "y") else { return XCTFail("matched") }
        XCTAssertEqual(failure.path, "Cast > input 0 > Relu > input 0 > Sigmoid")
        XCTAssertEqual(failure.node, "Tanh 't'")
        XCTAssertEqual(failure.depth, 3)
        // Where the optional node is absent, the skip is the attempt that got further.
        let without = Graph(name: "g", nodes: [Node("Tanh", name: "t", inputs: ["x"], outputs: ["a"]),
                                               Node("Relu", name: "r", inputs: ["a"], outputs: ["y"])])
        guard case .failure(let skipped) = PatternMatcher(graph: without).match(pattern, at: "y") else { return XCTFail("matched") }
        XCTAssertEqual(skipped.path, "Relu > input 0 > Sigmoid")
        XCTAssertEqual(skipped.node, "Tanh 't'")
    }

    /// Of a oneOf's alternatives, the one that got furthest is reported, not a list.
    func testOneOfReportsTheAlternativeThatGotFurthest() {
        let pattern = Pattern.oneOf([.op("Add", [.value("x"), .value("y")]), .op("Relu", [.op("Sigmoid", [.value("x")])])])
        let graph = Graph(name: "g", nodes: [Node("Tanh", name: "t", inputs: ["x"], outputs: ["a"]),
                                             Node("Relu", name: "r", inputs: ["a"], outputs: ["y"])])
        guard case .failure(let failure) = PatternMatcher(graph: graph).match(pattern, at: "y") else { return XCTFail("matched") }
        XCTAssertEqual(failure.path, "Relu > input 0 > Sigmoid")
        XCTAssertEqual(failure.node, "Tanh 't'")
    }

    func testConstantsFromInitializersAndConstantNodes() throws {
        let two = Tensor(name: "two", dims: [], floats: [2])
        let constantNode = Node("Constant", name: "k", inputs: [], outputs: ["eps"], attributes: [.tensor("value", Tensor(name: "", dims: [], floats: [1e-6]))])
        let graph = Graph(name: "g", nodes: [constantNode, Node("Pow", name: "p", inputs: ["x", "two"], outputs: ["sq"]),
                                             Node("Add", name: "a", inputs: ["sq", "eps"], outputs: ["y"])], initializers: [two])
        let pattern = Pattern.op("Add", [.op("Pow", [.value("x"), .scalar(2)]), .constant(capture: "epsilon", value: nil, tolerance: 0)])
        let match = try PatternMatcher(graph: graph).match(pattern, at: "y").get()
        XCTAssertEqual(match["epsilon"], "eps")
        let wrongPower = Pattern.op("Add", [.op("Pow", [.value("x"), .scalar(3)]), .any(capture: nil)])
        XCTAssertThrowsError(try PatternMatcher(graph: graph).match(wrongPower, at: "y").get())
    }

    func testFailureSaysWhereAndWhy() {
        let pattern = Pattern.op("Mul", [.value("x"), .op("Tanh", [.value("x")])])
        guard case .failure(let failure) = PatternMatcher(graph: siluGraph(swapped: false)).match(pattern, at: "y") else {
            return XCTFail("matched")
        }
        XCTAssertEqual(failure.description, "Mul > input 1 > Tanh: 's' comes from Sigmoid 'sig'")
    }

    func testMatchesFindsEverySite() {
        let graph = Graph(name: "g", nodes: siluGraph(swapped: false).nodes + [
            Node("Sigmoid", name: "sig2", inputs: ["z"], outputs: ["s2"]),
            Node("Mul", name: "mul2", inputs: ["s2", "z"], outputs: ["w"]),
        ])
        XCTAssertEqual(PatternMatcher(graph: graph).matches(of: silu).map { $0["silu"] }, ["y", "w"])
    }
}
