import SlowFastIR

/// What a layer's graph says about its heads: each number with where it was read, so that a
/// disagreement can name both sides.
struct HeadEvidence {
    var headDims: [(String, Int)] = []
    var heads: [(String, Int)] = []
    var kvHeads: [(String, Int)] = []
    /// The width the RoPE tables rotate (twice a cos cache's width), where the graph holds one.
    var rotaryDim: Int?

    init(match: Match, fused: Node?, matcher: PatternMatcher) throws {
        if let fused {
            if let count = fused.intAttribute("num_heads") { heads.append(("\(fused.op) '\(fused.name ?? "")' num_heads", Int(count))) }
            if let count = fused.intAttribute("kv_num_heads") { kvHeads.append(("\(fused.op) '\(fused.name ?? "")' kv_num_heads", Int(count))) }
        }
        if let core = match.node("attentionCore") {
            if let count = core.intAttribute("q_num_heads") { heads.append(("\(core.op) '\(core.name ?? "")' q_num_heads", Int(count))) }
            if let count = core.intAttribute("kv_num_heads") { kvHeads.append(("\(core.op) '\(core.name ?? "")' kv_num_heads", Int(count))) }
        }
        // An RoPE op of its own before the attention op (MRotaryEmbedding before
        // GroupQueryAttention) states the head count of what it rotates.
        for (capture, role) in [("queryMerged", "q"), ("kRotary", "k")] {
            guard let node = match.node(capture), let count = node.intAttribute("num_heads"), count > 0 else { continue }
            let source = ("\(node.op) '\(node.name ?? "")' num_heads", Int(count))
            if role == "q" { heads.append(source) } else { kvHeads.append(source) }
        }
        for (capture, role) in [("qReshape", "q"), ("kReshape", "k")] {
            guard let node = match.node(capture), node.inputs.count > 1 else { continue }
            let shape = Self.constantShape(node.inputs[1], matcher: matcher)
            let label = "\(role) Reshape '\(node.name ?? "")'"
            guard shape.count >= 2 else { continue }
            if let last = shape[shape.count - 1], last > 0 { headDims.append(("\(label) head_dim", last)) }
            if let count = shape[shape.count - 2], count > 0 {
                if role == "q" { heads.append(("\(label)", count)) } else { kvHeads.append(("\(label)", count)) }
            }
        }
        if let name = match["cosCache"], let cache = matcher.index.initializer(name), cache.dims.count == 2 {
            rotaryDim = 2 * Int(cache.dims[1])
        }
    }

    var headDimSources: String {
        let all = headDims.map { "\($0.0) \($0.1)" } + heads.map { "\($0.0): \($0.1) heads" }
        return all.isEmpty ? "no source" : all.joined(separator: ", ")
    }

    /// head_dim: every source that states it must agree; else the width over a stated head count.
    func headDim(attentionWidth: Int, fail: (String) -> LayerDiscoveryError) throws -> Int {
        if let first = headDims.first {
            if let other = headDims.first(where: { $0.1 != first.1 }) {
                throw fail("head_dim disagrees: \(first.0) is \(first.1), \(other.0) is \(other.1)")
            }
            return first.1
        }
        if let (source, count) = heads.first {
            guard count > 0, attentionWidth % count == 0 else {
                throw fail("\(source) says \(count) heads, which does not divide o_proj's input width \(attentionWidth)")
            }
            return attentionWidth / count
        }
        throw fail("no reshape constant or attention attribute gives head_dim (the softmax scale is not read as one)")
    }

    /// The entries of a shape value that are constants: a constant tensor, or a Concat of
    /// constant pieces and run-time ones (nil for the run-time entries).
    static func constantShape(_ name: String, matcher: PatternMatcher) -> [Int?] {
        if let tensor = matcher.constantTensor(name), let values = try? tensor.int64Values() { return values.map { Int($0) } }
        guard let concat = matcher.index.producer(of: name), concat.op == "Concat" else { return [] }
        var result: [Int?] = []
        for input in concat.inputs {
            if let tensor = matcher.constantTensor(input), let values = try? tensor.int64Values() {
                result += values.map { Int($0) }
            } else {
                // A run-time piece (batch, sequence length), taken as one entry: callers read
                // only the trailing entries, whose positions do not depend on it.
                result.append(nil)
            }
        }
        return result
    }
}
