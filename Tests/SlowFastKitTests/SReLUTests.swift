import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

final class SReLUTests: XCTestCase {
    func constant(_ name: String, _ value: Float) -> Tensor { Tensor(name: name, dims: [], floats: [value]) }

    /// Each exporter spelling of an activation is one site of the right kind.
    func testSitesAreFoundByPatternInEveryForm() {
        let half = constant("half", 0.5), one = constant("one", 1), root2 = constant("root2", 1.4142135), qg = constant("qg", 1.702)
        let graph = Graph(name: "g", nodes: [
            Node("Relu", name: "relu", inputs: ["a"], outputs: ["r"]),
            // erf GELU: (x * 0.5) * (1 + erf(x / sqrt 2))
            Node("Div", name: "g1", inputs: ["b", "root2"], outputs: ["g1"]),
            Node("Erf", name: "g2", inputs: ["g1"], outputs: ["g2"]),
            Node("Add", name: "g3", inputs: ["g2", "one"], outputs: ["g3"]),
            Node("Mul", name: "g4", inputs: ["b", "half"], outputs: ["g4"]),
            Node("Mul", name: "g5", inputs: ["g4", "g3"], outputs: ["gelu"]),
            // SiLU: sigmoid(x) * x
            Node("Sigmoid", name: "s1", inputs: ["c"], outputs: ["s1"]),
            Node("Mul", name: "s2", inputs: ["s1", "c"], outputs: ["silu"]),
            // QuickGELU: x * sigmoid(1.702 x)
            Node("Mul", name: "q1", inputs: ["d", "qg"], outputs: ["q1"]),
            Node("Sigmoid", name: "q2", inputs: ["q1"], outputs: ["q2"]),
            Node("Mul", name: "q3", inputs: ["d", "q2"], outputs: ["quick"]),
        ], initializers: [half, one, root2, qg])
        let sites = ActivationSiteFinder.find(in: graph, kinds: ActivationKind.allCases)
        XCTAssertEqual(sites.map(\.kind), [.relu, .gelu, .silu, .quickGelu])
        XCTAssertEqual(sites.map(\.input), ["a", "b", "c", "d"])
        XCTAssertEqual(sites.map { $0.nodes.count }, [1, 5, 2, 3])
        XCTAssertEqual(ActivationSiteFinder.find(in: graph, kinds: [.silu]).count, 1, "QuickGELU's Sigmoid·Mul is not a SiLU")
    }

    func testFusedAndAlternativeSpellings() {
        let graph = Graph(name: "g", nodes: [
            Node("FastGelu", domain: Domain.microsoft, name: "fast", inputs: ["a"], outputs: ["fa"]),
            Node("FastGelu", domain: Domain.microsoft, name: "fastBias", inputs: ["b", "bias"], outputs: ["fb"]),
            Node("QuickGelu", domain: Domain.microsoft, name: "quick", inputs: ["c"], outputs: ["qc"], attributes: [.float("alpha", 1.702)]),
            Node("HardSigmoid", name: "hs", inputs: ["d"], outputs: ["hs"], attributes: [.float("alpha", 1.0 / 6), .float("beta", 0.5)]),
            Node("Mul", name: "hswish", inputs: ["hs", "d"], outputs: ["hd"]),
            Node("HardSigmoid", name: "hs2", inputs: ["e"], outputs: ["hs2"]),  // alpha 0.2: not HardSwish
            Node("Mul", name: "other", inputs: ["hs2", "e"], outputs: ["he"]),
        ])
        let sites = ActivationSiteFinder.find(in: graph, kinds: ActivationKind.allCases)
        XCTAssertEqual(sites.map(\.output), ["fa", "qc", "hd"])
        XCTAssertEqual(sites.map(\.kind), [.gelu, .quickGelu, .hardSwish])
    }

    func testASiteWhoseInsidesAreUsedElsewhereIsLeftAlone() {
        let graph = Graph(name: "g", nodes: [
            Node("Sigmoid", name: "s1", inputs: ["c"], outputs: ["s1"]),
            Node("Mul", name: "s2", inputs: ["s1", "c"], outputs: ["silu"]),
            Node("Add", name: "other", inputs: ["s1", "c"], outputs: ["z"]),
        ])
        XCTAssertTrue(ActivationSiteFinder.find(in: graph, kinds: [.silu]).isEmpty)
    }

    func testFreezingInitIsReLUAndLeakyReLU() {
        let relu = SReLUParameters.freezing(slope: 0)
        let leaky = SReLUParameters.freezing(slope: 0.2)
        for x in stride(from: -5.0, through: 5.0, by: 0.25) {
            XCTAssertEqual(relu.evaluate(x), max(x, 0))
            XCTAssertEqual(leaky.evaluate(x), x >= 0 ? x : Double(Float(0.2)) * x, accuracy: 1e-12)
        }
    }

    func testSiLUFitIsTheBestOfItsGridAndReportsItsError() {
        let fit = SReLUFit.fit(.silu, range: -8 ... 8, points: 4097)
        // The search keeps t_l <= 0 <= t_r (the middle piece is the identity through 0).
        XCTAssertLessThan(fit.parameters.tLeft, 0)
        XCTAssertGreaterThanOrEqual(fit.parameters.tRight, 0)
        XCTAssertEqual(fit.parameters.aLeft, 0, accuracy: 0.1)   // SiLU flattens to 0 on the left
        XCTAssertLessThan(fit.maxAbsError, 0.5)
        let grid = SReLUFit.grid(-8 ... 8, points: 4097)
        let errors = grid.map { abs(fit.parameters.evaluate($0) - ActivationKind.silu.evaluate($0)) }
        XCTAssertEqual(fit.maxAbsError, errors.max()!, accuracy: 1e-12)
        // Moving a breakpoint does not improve the squared error.
        func squared(_ p: SReLUParameters) -> Double { grid.reduce(0) { $0 + pow(p.evaluate($1) - ActivationKind.silu.evaluate($1), 2) } }
        for shift in [-0.25, 0.25] as [Float] {
            var moved = fit.parameters
            moved.tLeft += shift
            XCTAssertLessThanOrEqual(squared(fit.parameters), squared(moved))
        }
        var moved = fit.parameters
        moved.tRight += 0.25
        XCTAssertLessThanOrEqual(squared(fit.parameters), squared(moved))
    }
}
