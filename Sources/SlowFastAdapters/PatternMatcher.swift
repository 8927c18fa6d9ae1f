import SlowFastIR
/// Matches `Pattern`s against a graph, walking from a value up through its producers.
///
/// One engine for every pattern: commutative inputs are tried in both orders, optional nodes
/// are skipped when they do not match, captures must agree when a name is used twice, and a
/// failure says where and why. Where several attempts fail (both input orders, every
/// alternative of a `oneOf`, an optional node matched and skipped) the failure reported is
/// the deepest one: the attempt that got furthest says what the export does differently,
/// while the shallow mismatch after skipping an optional node says nothing.
public struct PatternMatcher {
    public let index: GraphIndex

    public init(graph: Graph) { index = graph.index() }
    public init(index: GraphIndex) { self.index = index }

    /// Matches `pattern` with its root at value `name`.
    public func match(_ pattern: Pattern, at name: String) -> Result<Match, MatchFailure> {
        var state = Match()
        if let failure = self.match(pattern, name, &state, depth: 0) { return .failure(failure) }
        return .success(state)
    }

    /// Every node output in the graph at which `pattern` matches, in node order. Nodes whose
    /// op cannot be the pattern's root are skipped without an attempt (and its failure text).
    public func matches(of pattern: Pattern) -> [Match] {
        var found: [Match] = []
        let roots = Self.rootOps(pattern)
        for node in index.graph.nodes where roots?.contains(node.op) ?? true {
            for output in node.outputs where !output.isEmpty {
                if case .success(let match) = match(pattern, at: output) { found.append(match) }
            }
        }
        return found
    }

    /// The op types whose outputs `pattern` can match at its root; nil when any value may (an
    /// `any` or `constant` root, or an optional node over one).
    static func rootOps(_ pattern: Pattern) -> Set<String>? {
        switch pattern {
        case .any, .constant:
            return nil
        case .oneOf(let alternatives):
            var all: Set<String> = []
            for alternative in alternatives {
                guard let ops = rootOps(alternative) else { return nil }
                all.formUnion(ops)
            }
            return all
        case .node(let node):
            guard node.optional else { return node.opTypes }
            guard let skip = node.inputs.first, let below = rootOps(skip) else { return nil }
            return node.opTypes.union(below)
        }
    }

    /// The constant value of `name` (initializer or Constant node), if it is one.
    public func constantTensor(_ name: String) -> Tensor? {
        if let tensor = index.initializer(name) { return tensor }
        guard let producer = index.producer(of: name), producer.op == "Constant", Domain.isONNX(producer.domain) else { return nil }
        if case .tensor(let tensor)? = producer.attribute("value") { return tensor }
        if let value = producer.floatAttribute("value_float") { return Tensor(name: name, dims: [], floats: [value]) }
        return nil
    }

    /// Matches `pattern` at value `name`, `depth` node steps below the root. On failure
    /// `match` is as it was on entry.
    private func match(_ pattern: Pattern, _ name: String, _ match: inout Match, depth: Int) -> MatchFailure? {
        switch pattern {
        case .any(let capture):
            // An uncaptured `any` also accepts an omitted optional input ("").
            if name.isEmpty { return capture == nil ? nil : MatchFailure(depth: depth, .absent) }
            if let capture, !match.bind(capture, value: name) {
                return MatchFailure(depth: depth, .boundTo(capture: capture, bound: match[capture] ?? "", actual: name))
            }
            return nil
        case .constant(let capture, let value, let tolerance):
            guard let tensor = constantTensor(name) else {
                return MatchFailure(depth: depth, .notConstant(name))
            }
            if let value {
                guard let values = try? tensor.floatValues(), let first = values.first,
                      values.allSatisfy({ $0 == first }),
                      abs(Double(first) - value) <= tolerance * max(1, abs(value)) else {
                    return MatchFailure(depth: depth, .constantNot(name, value))
                }
            }
            if let capture, !match.bind(capture, value: name) {
                return MatchFailure(depth: depth, .boundTo(capture: capture, bound: match[capture] ?? "", actual: name))
            }
            return nil
        case .oneOf(let alternatives):
            var failures: [MatchFailure] = []
            for alternative in alternatives {
                guard let failure = self.match(alternative, name, &match, depth: depth) else { return nil }
                failures.append(failure)
            }
            // One alternative got further than every other: it is the one the user meant.
            let deepest = failures.reduce(failures[0]) { $0.deeper($1) }
            if failures.filter({ $0.depth == deepest.depth }).count == 1 { return deepest }
            return MatchFailure(depth: depth, .noAlternative(failures), node: deepest.failedNode)
        case .node(let nodePattern):
            guard let failure = matchNode(nodePattern, name, &match, depth: depth) else { return nil }
            guard nodePattern.optional, let skip = nodePattern.inputs.first else { return failure }
            guard let skipFailure = self.match(skip, name, &match, depth: depth) else { return nil }
            // The node was there and its inputs failed further in: that failure, not the
            // shallow mismatch of treating the node as absent, is what to report.
            return skipFailure.deeper(failure)
        }
    }

    /// Matches a node pattern at value `name`, `depth` node steps below the root. On failure
    /// `match` is as it was on entry.
    private func matchNode(_ pattern: NodePattern, _ name: String, _ match: inout Match, depth: Int) -> MatchFailure? {
        let here = MatchFailure.Step.node(pattern.opTypes)
        let depth = depth + 1
        guard let slot = index.producerSlot(of: name) else {
            return MatchFailure(depth: depth, .notComputed(name), at: here)
        }
        let node = index.graph.nodes[slot.node]
        guard pattern.opTypes.contains(node.op) else {
            return MatchFailure(depth: depth, .comesFrom(name), node: node, at: here)
        }
        if let domain = pattern.domain {
            let same = Domain.isONNX(domain) ? Domain.isONNX(node.domain) : node.domain == domain
            if !same { return MatchFailure(depth: depth, .domain(expected: domain), node: node, at: here) }
        }
        if let outputIndex = pattern.outputIndex, slot.output != outputIndex {
            return MatchFailure(depth: depth, .outputIndex(value: name, actual: slot.output, expected: outputIndex), node: node, at: here)
        }
        let present = node.inputs
        if present.count < pattern.inputs.count || (!pattern.allowExtraInputs && present.count > pattern.inputs.count) {
            return MatchFailure(depth: depth, .inputCount(actual: present.count, expected: pattern.inputs.count), node: node, at: here)
        }
        if let condition = pattern.condition, let reason = condition(node) {
            return MatchFailure(depth: depth, .condition(reason), node: node, at: here)
        }
        let start = match.mark
        if let capture = pattern.capture, !match.bind(capture, value: name, node: node) {
            return MatchFailure(depth: depth, .alreadyBound(capture), node: node, at: here)
        }
        let afterCapture = match.mark
        let orders: [[Int]] = pattern.commutative && pattern.inputs.count == 2 ? [[0, 1], [1, 0]] : [Array(pattern.inputs.indices)]
        var firstFailure: MatchFailure?
        for order in orders {
            var failed: MatchFailure?
            for (patternSlot, inputSlot) in order.enumerated() {
                if let failure = self.match(pattern.inputs[patternSlot], present[inputSlot], &match, depth: depth) {
                    failed = failure.through(.input(inputSlot)).through(here)
                    break
                }
            }
            if let failed {
                match.rollback(to: afterCapture)
                firstFailure = firstFailure.map { $0.deeper(failed) } ?? failed
                continue
            }
            match.cover(node)
            return nil
        }
        match.rollback(to: start)
        return firstFailure
    }
}
