import SlowFastIR
/// A description of a subgraph to find, as data: the matcher (`PatternMatcher`) is one
/// engine for every pattern, so a new exporter or activation needs a new pattern, not code.
///
/// A pattern describes the value at its root and, through `inputs`, the values upstream of it.
public indirect enum Pattern {
    /// Any value; captured under `capture` when given.
    case any(capture: String?)
    /// A constant: an initializer, or the output of a `Constant` node. `value`, when given,
    /// requires a scalar (or all-equal tensor) within `tolerance` of it.
    case constant(capture: String?, value: Double?, tolerance: Double)
    /// A value computed by a node.
    case node(NodePattern)
    /// The first alternative that matches.
    case oneOf([Pattern])

    /// Any value, captured as `name`.
    public static func value(_ name: String) -> Pattern { .any(capture: name) }

    /// A constant near `value` (relative tolerance 1e-4 by default).
    public static func scalar(_ value: Double, tolerance: Double = 1e-4, capture: String? = nil) -> Pattern {
        .constant(capture: capture, value: value, tolerance: tolerance)
    }

    /// A node of `opType` whose inputs match `inputs`.
    public static func op(_ opType: String, _ inputs: [Pattern], domain: String? = nil, commutative: Bool = false,
                          capture: String? = nil) -> Pattern {
        .node(NodePattern(opTypes: [opType], domain: domain, inputs: inputs, commutative: commutative, capture: capture))
    }
}

/// The node part of a pattern.
public struct NodePattern {
    /// Op types accepted (any one of them).
    public var opTypes: Set<String>
    /// Required domain; nil accepts any domain ("" and "ai.onnx" are the same domain).
    public var domain: String?
    /// Patterns for the node's first `inputs.count` inputs; extra inputs are allowed when
    /// `allowExtraInputs` is set.
    public var inputs: [Pattern]
    /// For two-input ops such as Add and Mul: the inputs may match in either order.
    public var commutative: Bool
    /// The node (and its output) are captured under this name.
    public var capture: String?
    /// When set and the node does not match, the pattern continues at `inputs[0]` on the
    /// same value, as if the node were absent (e.g. an optional Cast or Reshape).
    public var optional: Bool
    public var allowExtraInputs: Bool
    /// Which output of the node the value must be.
    public var outputIndex: Int?
    /// Extra checks on the node (attributes), with a reason when they fail.
    public var condition: ((Node) -> String?)?

    public init(opTypes: Set<String>, domain: String? = nil, inputs: [Pattern] = [], commutative: Bool = false,
                capture: String? = nil, optional: Bool = false, allowExtraInputs: Bool = true,
                outputIndex: Int? = nil, condition: ((Node) -> String?)? = nil) {
        self.opTypes = opTypes
        self.domain = domain
        self.inputs = inputs
        self.commutative = commutative
        self.capture = capture
        self.optional = optional
        self.allowExtraInputs = allowExtraInputs
        self.outputIndex = outputIndex
        self.condition = condition
    }
}

/// What a pattern captured: value names, and for node patterns the node.
public struct Match {
    public private(set) var values: [String: String] = [:]
    public private(set) var nodes: [String: Node] = [:]
    /// Every node the match covers, in the order they were matched (root first).
    public private(set) var matchedNodes: [Node] = []

    public init() {}

    public subscript(_ capture: String) -> String? { values[capture] }

    public func node(_ capture: String) -> Node? { nodes[capture] }

    /// Records `value` under `capture`; false when the capture already holds another value
    /// (the same name used twice must be the same value).
    mutating func bind(_ capture: String, value: String, node: Node? = nil) -> Bool {
        if let existing = values[capture] { return existing == value }
        values[capture] = value
        if let node { nodes[capture] = node }
        return true
    }

    mutating func cover(_ node: Node) { matchedNodes.append(node) }
}

/// Why a pattern did not match, for the user whose model did not match.
public struct MatchFailure: Error, CustomStringConvertible, Equatable {
    /// Where in the pattern (e.g. "Mul > input 1 > Sigmoid").
    public let path: String
    public let reason: String
    /// The node whose value the failing step looked at, when a node computes it.
    public let node: String?

    /// How many pattern steps deep the failure is: the node steps in `path` (a failure at
    /// the root is 0 or 1). Computed once: the matcher compares depths at every choice.
    public let depth: Int

    public init(path: String, reason: String, node: String? = nil) {
        self.path = path
        self.reason = reason
        self.node = node
        depth = path.isEmpty ? 0 : path.split(separator: " > ", omittingEmptySubsequences: true).reduce(0) { $1.hasPrefix("input ") ? $0 : $0 + 1 }
    }

    /// The deeper of two failures; `self` on a tie. A deeper failure got further into the
    /// pattern, so it is the one that tells a user what their export does differently.
    public func deeper(_ other: MatchFailure) -> MatchFailure { other.depth > depth ? other : self }

    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}
