import SlowFastIR

/// Step "attention blocks": the adapter's `attention` pattern tried at every node that can be
/// an o_proj; each match is one layer, numbered by the adapter's `layerIndex` or graph order.
extension LayerDiscovery {
    /// The layers' attention matches in layer order, numbered 0...n-1 once each.
    static func attentionBlocks(_ model: Model, matcher: PatternMatcher, adapter: Adapter, file: String) throws -> [(Int, Match)] {
        var matches: [Match] = []
        // The attempt that got deepest into the pattern, and the candidate o_proj it started at.
        var deepest: (root: Node, failure: MatchFailure)?
        // Per layer number, the failure that got furthest into the pattern: what a user whose
        // layer 3 does not match needs to see.
        var closest: [Int: MatchFailure] = [:]
        // o_proj candidates: the ops the attention pattern can have at its root (a MatMul or
        // Gemm, and the nodes a quantized MatMul ends in).
        let roots = PatternMatcher.rootOps(adapter.attention) ?? ["MatMul", "Gemm"]
        for node in model.graph.nodes where roots.contains(node.op) {
            guard let output = node.outputs.first else { continue }
            switch matcher.match(adapter.attention, at: output) {
            case .success(let match): matches.append(match)
            case .failure(let failure):
                // A failure at the root says only that this MatMul is not an o_proj.
                guard failure.depth > 1 else { continue }
                if failure.depth > (deepest?.failure.depth ?? 0) { deepest = (node, failure) }
                if let number = adapter.layerNumbering.number(of: node),
                   failure.depth > (closest[number]?.depth ?? 0) { closest[number] = failure }
            }
        }
        guard !matches.isEmpty else {
            throw LayerDiscoveryError.noAdapterMatched(file: file, findings: [AdapterFinding(adapter: adapter.name, deepest: deepest)])
        }
        var numbered = matches.enumerated().map { order, match in
            (match.node("oNode").flatMap(adapter.layerNumbering.number(of:)) ?? order, match)
        }
        numbered.sort { $0.0 < $1.0 }
        let numbers = numbered.map(\.0)
        if let missing = (0 ..< (numbers.last ?? 0)).first(where: { !numbers.contains($0) }) {
            throw LayerDiscoveryError.unmatchedLayer(file: file, adapter: adapter.name, layer: missing, closest: closest[missing])
        }
        guard numbers == Array(0 ..< numbers.count) else {
            throw LayerDiscoveryError.inconsistent(file: file, adapter: adapter.name,
                                                   message: "layer numbers found are \(numbers), expected 0...\(numbers.count - 1) once each")
        }
        return numbered
    }
}
