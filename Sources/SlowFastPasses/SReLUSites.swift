import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
import Foundation

/// The activations an SReLU can replace.
public enum ActivationKind: String, CaseIterable, Sendable {
    case relu, leakyRelu = "leaky_relu", prelu, gelu, silu, quickGelu = "quick_gelu", hardSwish = "hard_swish"

    /// ReLU-family activations an SReLU reproduces exactly; the others are fitted.
    public var isExact: Bool { self == .relu || self == .leakyRelu || self == .prelu }

    /// The function on scalars, for fitting and for reporting the fit's error.
    func evaluate(_ x: Double) -> Double {
        switch self {
        case .relu: return max(x, 0)
        case .leakyRelu, .prelu: return x >= 0 ? x : 0.01 * x
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .silu: return x / (1 + exp(-x))
        case .quickGelu: return x / (1 + exp(-1.702 * x))
        case .hardSwish: return x * min(max(x + 3, 0), 6) / 6
        }
    }
}

/// One place where an activation is computed: its input, its output and the nodes computing it.
public struct ActivationSite {
    public let kind: ActivationKind
    public let input: String
    public let output: String
    /// The nodes the SReLU replaces (one for Relu, several for a decomposed GELU).
    public let nodes: [Node]
    /// LeakyRelu's alpha, or PRelu's slope initializer.
    public let slope: Float?
    public let slopeTensor: String?
}

/// The patterns that find each activation, as data for the shared matcher. Each pattern is
/// rooted at the activation's output and captures its input as `x`.
enum ActivationPatterns {
    static let x = Pattern.value("x")

    /// x * 0.5 * (1 + erf(x / sqrt(2))) in the orders exporters write it.
    static var erfGelu: [Pattern] {
        let scaled = Pattern.oneOf([.op("Div", [x, .scalar(2.0.squareRoot(), tolerance: 1e-3)]),
                                    .op("Mul", [x, .scalar(1 / 2.0.squareRoot(), tolerance: 1e-3)], commutative: true)])
        let onePlusErf = Pattern.op("Add", [.op("Erf", [scaled]), .scalar(1)], commutative: true)
        return [
            .op("Mul", [.op("Mul", [x, .scalar(0.5)], commutative: true), onePlusErf], commutative: true),
            .op("Mul", [.op("Mul", [x, onePlusErf], commutative: true), .scalar(0.5)], commutative: true),
            .op("Mul", [x, .op("Mul", [onePlusErf, .scalar(0.5)], commutative: true)], commutative: true),
        ]
    }

    /// 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
    static var tanhGelu: [Pattern] {
        let cube = Pattern.oneOf([.op("Pow", [x, .scalar(3)]), .op("Mul", [x, .op("Mul", [x, x], commutative: true)], commutative: true)])
        let inner = Pattern.op("Add", [x, .op("Mul", [cube, .scalar(0.044715)], commutative: true)], commutative: true)
        let onePlusTanh = Pattern.op("Add", [.op("Tanh", [.op("Mul", [inner, .scalar(0.7978845608, tolerance: 1e-3)], commutative: true)]),
                                             .scalar(1)], commutative: true)
        return [
            .op("Mul", [.op("Mul", [x, .scalar(0.5)], commutative: true), onePlusTanh], commutative: true),
            .op("Mul", [.op("Mul", [x, onePlusTanh], commutative: true), .scalar(0.5)], commutative: true),
        ]
    }

    /// A one-input op (extra inputs, such as FastGelu's bias, change the function).
    static func single(_ opType: String) -> Pattern {
        .node(NodePattern(opTypes: [opType], inputs: [x], allowExtraInputs: false))
    }

    static func patterns(_ kind: ActivationKind) -> [Pattern] {
        switch kind {
        case .relu: return [.op("Relu", [x])]
        case .leakyRelu: return [.op("LeakyRelu", [x])]
        case .prelu: return [.op("PRelu", [x, .constant(capture: "slope", value: nil, tolerance: 0)])]
        case .gelu:
            // Gelu (opset 20, com.microsoft), FastGelu without its bias input, and the decompositions.
            return [.op("Gelu", [x]), single("FastGelu")] + erfGelu + tanhGelu
        case .silu: return [.op("Mul", [x, .op("Sigmoid", [x])], commutative: true), .op("Swish", [x])]
        case .quickGelu:
            return [.op("Mul", [x, .op("Sigmoid", [.op("Mul", [x, .scalar(1.702, tolerance: 1e-3)], commutative: true)])], commutative: true),
                    .node(NodePattern(opTypes: ["QuickGelu"], inputs: [x], allowExtraInputs: false, condition: { node in
                        abs((node.floatAttribute("alpha") ?? 1.702) - 1.702) < 1e-3 ? nil : "alpha is not 1.702"
                    }))]
        case .hardSwish:
            // HardSwish, or x * HardSigmoid(x) with alpha 1/6 and beta 1/2.
            let hardSigmoid = Pattern.node(NodePattern(opTypes: ["HardSigmoid"], inputs: [x], condition: { node in
                abs((node.floatAttribute("alpha") ?? 0.2) - 1.0 / 6) < 1e-4 && abs((node.floatAttribute("beta") ?? 0.5) - 0.5) < 1e-6
                    ? nil : "not alpha 1/6, beta 1/2"
            }))
            return [.op("HardSwish", [x]), .op("Mul", [x, hardSigmoid], commutative: true)]
        }
    }
}

/// Finds activation sites by pattern.
public enum ActivationSiteFinder {
    /// Every site of `kinds` in `graph`, in node order, each node claimed once (a QuickGELU is
    /// not also a SiLU). `include` filters by the site's nodes.
    public static func find(in graph: Graph, kinds: [ActivationKind], include: (ActivationSite) -> Bool = { _ in true }) -> [ActivationSite] {
        let matcher = PatternMatcher(graph: graph)
        let index = matcher.index
        var claimed = Set<ObjectIdentifier>()
        var sites: [ActivationSite] = []
        // More specific kinds first, so QuickGELU's Sigmoid·Mul is not read as SiLU.
        let ordered = kinds.sorted { order($0) < order($1) }
        var byOutput: [String: ActivationSite] = [:]
        for kind in ordered {
            for node in graph.nodes {
                guard let output = node.outputs.first, !output.isEmpty, byOutput[output] == nil else { continue }
                for pattern in ActivationPatterns.patterns(kind) {
                    guard case .success(let match) = matcher.match(pattern, at: output), let input = match["x"] else { continue }
                    let nodes = match.matchedNodes
                    guard nodes.allSatisfy({ !claimed.contains(ObjectIdentifier($0)) }),
                          internalValuesStayInside(nodes, output: output, index: index) else { continue }
                    var slope: Float?
                    if kind == .leakyRelu { slope = node.floatAttribute("alpha") ?? 0.01 }
                    let site = ActivationSite(kind: kind, input: input, output: output, nodes: nodes, slope: slope, slopeTensor: match["slope"])
                    guard include(site) else { break }
                    nodes.forEach { claimed.insert(ObjectIdentifier($0)) }
                    byOutput[output] = site
                    break
                }
            }
        }
        let position = Dictionary(graph.nodes.enumerated().map { (ObjectIdentifier($0.element), $0.offset) }, uniquingKeysWith: { a, _ in a })
        sites = byOutput.values.sorted {
            (position[ObjectIdentifier($0.nodes[0])] ?? 0) < (position[ObjectIdentifier($1.nodes[0])] ?? 0)
        }
        return sites
    }

    private static func order(_ kind: ActivationKind) -> Int {
        switch kind {
        case .quickGelu: return 0
        case .gelu: return 1
        default: return 2
        }
    }

    /// A site can be replaced only if the values between its nodes are used nowhere else.
    private static func internalValuesStayInside(_ nodes: [Node], output: String, index: GraphIndex) -> Bool {
        let members = Set(nodes.map(ObjectIdentifier.init))
        for node in nodes {
            for value in node.outputs where value != output && !value.isEmpty {
                if index.isGraphOutput(value) { return false }
                if index.consumers(of: value).contains(where: { !members.contains(ObjectIdentifier($0)) }) { return false }
            }
        }
        return true
    }
}
