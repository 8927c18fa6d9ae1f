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
            let ops = isProjection(node) ? node.opTypes.union(storedProjectionRoots) : node.opTypes
            guard node.optional else { return ops }
            guard let skip = node.inputs.first, let below = rootOps(skip) else { return nil }
            return ops.union(below)
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
        if let stored = storedProjection(pattern, node: node, output: slot.output) {
            return matchStoredProjection(pattern, name, stored, &match, depth: depth, here: here)
        }
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

    // MARK: Projections in any storage

    /// A MatMul by a constant is a linear projection (x · W), and deployed models store W
    /// quantized (docs/DESIGN.md §5). So that adapters describe a projection once, a pattern
    /// `MatMul(X, constant W)` also matches the same projection in every storage onnxruntime's
    /// tools write, with X matched at the float input and W captured as the stored weight:
    ///
    ///     MatMulNBits(X, B, scales, ...)                               W = B
    ///     MatMul(X, DequantizeLinear(Wq, scale, zero_point))            W = Wq
    ///     MatMul(DequantizeLinear(QuantizeLinear(X)), DequantizeLinear(Wq, ...))   W = Wq
    ///     Mul(Cast(MatMulInteger(DynamicQuantizeLinear(X), Wq, ...)), Mul(x_scale, w_scale))   W = Wq
    ///
    /// The node captured is the one whose output is the projection (MatMulNBits, MatMul, Mul);
    /// `ProjectionStorage.read` reads the rest from it.
    static func isProjection(_ pattern: NodePattern) -> Bool {
        guard pattern.opTypes.contains("MatMul"), pattern.inputs.count == 2,
              case .constant(_, nil, _) = pattern.inputs[1] else { return false }
        return true
    }

    static let storedProjectionRoots: Set<String> = ["MatMulNBits", "Mul"]

    /// A quantized projection at a node: its float input and its stored weight.
    struct StoredProjection {
        let root: Node
        let input: String
        let weight: String
        /// Every node of the projection, root first.
        let nodes: [Node]
    }

    private func storedProjection(_ pattern: NodePattern, node: Node, output: Int) -> StoredProjection? {
        guard output == 0, Self.isProjection(pattern) else { return nil }
        switch node.op {
        case "MatMulNBits" where node.domainName == Domain.microsoft && node.inputs.count >= 3:
            return StoredProjection(root: node, input: node.inputs[0], weight: node.inputs[1], nodes: [node])
        case "MatMul" where node.inputs.count == 2:
            guard let dq = index.producer(of: node.inputs[1]), dq.op == "DequantizeLinear", Domain.isONNX(dq.domain),
                  let weight = dq.inputs.first, index.initializer(weight) != nil else { return nil }
            // quantize_static also rounds the activation: X -> QuantizeLinear -> DequantizeLinear.
            if let activation = index.producer(of: node.inputs[0]), activation.op == "DequantizeLinear",
               let quantize = activation.inputs.first.flatMap(index.producer(of:)), quantize.op == "QuantizeLinear",
               let input = quantize.inputs.first {
                return StoredProjection(root: node, input: input, weight: weight, nodes: [node, dq, activation, quantize])
            }
            return StoredProjection(root: node, input: node.inputs[0], weight: weight, nodes: [node, dq])
        case "Mul" where node.inputs.count == 2:
            guard let (product, scales) = ProjectionStorage.dynamicParts(of: node, index: index), product.inputs.count >= 2,
                  let quantize = index.producer(of: product.inputs[0]), quantize.op == "DynamicQuantizeLinear",
                  quantize.outputs.count == 3, quantize.outputs[0] == product.inputs[0],
                  product.inputs.count < 3 || product.inputs[2] == quantize.outputs[2],
                  scales.inputs.contains(quantize.outputs[1]), let input = quantize.inputs.first else { return nil }
            let cast = index.producer(of: node.inputs[0])?.op == "Cast" ? index.producer(of: node.inputs[0]) : index.producer(of: node.inputs[1])
            return StoredProjection(root: node, input: input, weight: product.inputs[1],
                                    nodes: [node, cast, product, quantize, scales].compactMap { $0 })
        default:
            return nil
        }
    }

    private func matchStoredProjection(_ pattern: NodePattern, _ name: String, _ stored: StoredProjection, _ match: inout Match,
                                       depth: Int, here: MatchFailure.Step) -> MatchFailure? {
        let start = match.mark
        if let capture = pattern.capture, !match.bind(capture, value: name, node: stored.root) {
            return MatchFailure(depth: depth, .alreadyBound(capture), node: stored.root, at: here)
        }
        for (slot, value) in [(0, stored.input), (1, stored.weight)] {
            if let failure = self.match(pattern.inputs[slot], value, &match, depth: depth) {
                match.rollback(to: start)
                return failure.through(.input(slot)).through(here)
            }
        }
        for node in stored.nodes { match.cover(node) }
        return nil
    }
}
