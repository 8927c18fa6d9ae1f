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

    /// The pattern with its root value captured as `name`: the root node's capture, each
    /// alternative's root in a `oneOf`, and through an optional root node to the value it
    /// stands for when absent. A root that captures already is an error (one name per value).
    func capturingRoot(_ name: String, file: String, use: String) throws -> Pattern {
        switch self {
        case .any(let existing), .constant(let existing, _, _):
            if let existing, existing != name {
                throw AdapterError(file: file, message: "'use: \(use)' with capture '\(name)': its root already captures '\(existing)'")
            }
            if case .constant(_, let value, let tolerance) = self { return .constant(capture: name, value: value, tolerance: tolerance) }
            return .any(capture: name)
        case .node(var node):
            if let existing = node.capture, existing != name {
                throw AdapterError(file: file, message: "'use: \(use)' with capture '\(name)': its root node already captures '\(existing)'")
            }
            node.capture = name
            if node.optional, let skipped = node.inputs.first {
                node.inputs[0] = try skipped.capturingRoot(name, file: file, use: use)
            }
            return .node(node)
        case .oneOf(let alternatives):
            return .oneOf(try alternatives.map { try $0.capturingRoot(name, file: file, use: use) })
        }
    }

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
///
/// The matcher backtracks by rolling a match back to a `Mark` rather than copying it at
/// every step: captures are only ever added, so undoing a failed attempt is forgetting what
/// it added.
public struct Match {
    public private(set) var values: [String: String] = [:]
    public private(set) var nodes: [String: Node] = [:]
    /// Every node the match covers, in the order they were matched (root first).
    public private(set) var matchedNodes: [Node] = []
    /// Captures in the order they were bound, so a rollback knows which to forget.
    private var bound: [String] = []

    public init() {}

    public subscript(_ capture: String) -> String? { values[capture] }

    public func node(_ capture: String) -> Node? { nodes[capture] }

    /// Records `value` under `capture`; false when the capture already holds another value
    /// (the same name used twice must be the same value).
    mutating func bind(_ capture: String, value: String, node: Node? = nil) -> Bool {
        if let existing = values[capture] { return existing == value }
        values[capture] = value
        if let node { nodes[capture] = node }
        bound.append(capture)
        return true
    }

    mutating func cover(_ node: Node) { matchedNodes.append(node) }

    /// How far the match has got: what `rollback(to:)` returns to.
    struct Mark {
        fileprivate let bound: Int
        fileprivate let covered: Int
    }

    var mark: Mark { Mark(bound: bound.count, covered: matchedNodes.count) }

    /// Forgets every capture and covered node added since `mark`.
    mutating func rollback(to mark: Mark) {
        while bound.count > mark.bound {
            let capture = bound.removeLast()
            values[capture] = nil
            nodes[capture] = nil
        }
        matchedNodes.removeLast(matchedNodes.count - mark.covered)
    }
}

/// Why a pattern did not match, for the user whose model did not match.
///
/// Discovery fails at most of the steps it tries and reports one failure, so a failure keeps
/// what it needs to describe itself (its reason as data, its path as pattern steps) and
/// builds text only when asked.
public struct MatchFailure: Error, CustomStringConvertible, Equatable {
    /// How many pattern steps deep the failure is: the node steps in `path` (a failure at
    /// the root is 0 or 1). The matcher compares depths at every choice.
    public let depth: Int
    let reasonData: Reason
    /// The node whose value the failing step looked at, when a node computes it.
    let failedNode: Node?
    /// The pattern steps from the failure up to the root (innermost first), appended while
    /// the failure returns through them.
    var steps: [Step] = []

    enum Step {
        case node(Set<String>)
        case input(Int)
    }

    enum Reason {
        case absent
        case boundTo(capture: String, bound: String, actual: String)
        case notConstant(String)
        case constantNot(String, Double)
        case noAlternative([MatchFailure])
        case notComputed(String)
        case comesFrom(String)
        case domain(expected: String)
        case outputIndex(value: String, actual: Int, expected: Int)
        case inputCount(actual: Int, expected: Int)
        case condition(String)
        case alreadyBound(String)
    }

    init(depth: Int, _ reason: Reason, node: Node? = nil, at step: Step? = nil) {
        self.depth = depth
        reasonData = reason
        failedNode = node
        if let step { steps = [step] }
    }

    /// The failure as seen from one step further out.
    func through(_ step: Step) -> MatchFailure {
        var outer = self
        outer.steps.append(step)
        return outer
    }

    /// Where in the pattern (e.g. "Mul > input 1 > Sigmoid").
    public var path: String {
        steps.reversed().map { step in
            switch step {
            case .node(let ops): return ops.sorted().joined(separator: "|")
            case .input(let slot): return "input \(slot)"
            }
        }.joined(separator: " > ")
    }

    /// The node whose value the failing step looked at, when a node computes it.
    public var node: String? { failedNode.map { "\($0.op) '\($0.name ?? "")'" } }

    public var reason: String { reason(under: path) }

    /// The reason, with `prefix` (the path down to this failure) in front of the paths of a
    /// `oneOf`'s alternatives, which are kept relative to the `oneOf`.
    private func reason(under prefix: String) -> String {
        let name = failedNode?.name ?? ""
        switch reasonData {
        case .absent: return "input is absent"
        case .boundTo(let capture, let bound, let actual): return "'\(capture)' must be '\(bound)', is '\(actual)'"
        case .notConstant(let value): return "'\(value)' is not a constant"
        case .constantNot(let value, let expected): return "constant '\(value)' is not \(expected)"
        case .noAlternative(let failures):
            return "no alternative matched (" + failures.map { failure in
                let inner = failure.path
                let full = [prefix, inner].filter { !$0.isEmpty }.joined(separator: " > ")
                let reason = failure.reason(under: full)
                return full.isEmpty ? reason : "\(full): \(reason)"
            }.joined(separator: "; ") + ")"
        case .notComputed(let value): return "'\(value)' is not computed by a node"
        case .comesFrom(let value): return "'\(value)' comes from \(failedNode?.op ?? "") '\(name)'"
        case .domain(let expected): return "node '\(name)' is in domain '\(failedNode?.domainName ?? "")', not '\(expected)'"
        case .outputIndex(let value, let actual, let expected): return "'\(value)' is output \(actual) of '\(name)', not \(expected)"
        case .inputCount(let actual, let expected): return "node '\(name)' has \(actual) inputs, expected \(expected)"
        case .condition(let why): return "node '\(name)': \(why)"
        case .alreadyBound(let capture): return "'\(capture)' already bound to another value"
        }
    }

    /// The deeper of two failures; `self` on a tie. A deeper failure got further into the
    /// pattern, so it is the one that tells a user what their export does differently.
    public func deeper(_ other: MatchFailure) -> MatchFailure { other.depth > depth ? other : self }

    public var description: String {
        let path = path
        return path.isEmpty ? reason : "\(path): \(reason)"
    }

    public static func == (a: MatchFailure, b: MatchFailure) -> Bool {
        a.depth == b.depth && a.description == b.description && a.node == b.node
    }
}
