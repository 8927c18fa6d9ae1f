import SlowFastIR

/// What the layer's MLP holds and where it rejoins the stream.
struct MLPBlock {
    /// gate_proj/up_proj/down_proj, or a packed gate_up_proj.
    var projections: [String: ProjectionWeight] = [:]
    var activationNodes: [String] = []
    /// The stream after the MLP's Add ("" where it was not found).
    var residualOutput = ""
    /// A norm of down_proj's own output before it joins (Gemma 2/3, OLMo-2).
    var outputNorm: RMSNormDescription?
}

/// Step "MLP": the adapter's `mlp` pattern matched at the value the MLP reads, its packed
/// gate_up split checked, and the down projection followed to the residual stream.
extension LayerDiscovery {
    /// Every MLP match of the graph by the value it reads (`mlpInput`).
    static func mlpMatches(_ adapter: Adapter, matcher: PatternMatcher) -> [String: Match] {
        var byInput: [String: Match] = [:]
        if let mlp = adapter.mlp {
            for match in matcher.matches(of: mlp) { if let input = match["mlpInput"] { byInput[input] = match } }
        }
        return byInput
    }

    /// The MLP that reads the norm after attention, or (OLMo-2: no norm before the MLP) the
    /// residual stream itself, or (Cohere: attention and MLP in parallel) the layer's input
    /// norm, as attention does; an empty block where none matched.
    static func mlp(_ site: LayerSite, residual: ResidualJoin, normed: String, matches: [String: Match]) throws -> MLPBlock {
        var block = MLPBlock()
        guard let mlpMatch = residual.postNorm.flatMap({ matches[$0.output] })
                ?? (residual.postNorm == nil ? matches[residual.attentionResidual] ?? matches[normed] : nil) else { return block }
        for role in ["gate", "up", "down", "gateUp"] {
            if let weight = mlpMatch["\(role)Weight"], let node = mlpMatch.node("\(role)Node"), let name = node.name {
                block.projections[role == "gateUp" ? "gate_up_proj" : "\(role)_proj"] = ProjectionWeight(
                    weight: weight, layout: .inputMajor, node: name, storage: try site.storage(of: node, weight: weight))
            }
        }
        // A packed gate_up_proj is chunked gate first: the gate's Slice starts at 0 (a Split in
        // two gives the gate as its first output).
        if let split = mlpMatch.node("gateSplit"), split.outputs.count != 2 {
            throw site.fail("the packed gate_up_proj is split in \(split.outputs.count) by '\(split.name ?? "")', not in 2")
        }
        if mlpMatch["gateUpWeight"] != nil, mlpMatch.node("gateSplit") == nil {
            let start = try mlpMatch["gateSliceStart"].flatMap { try site.matcher.constantTensor($0)?.int64Values().first }
            guard start == 0 else {
                throw site.fail("the gate of the packed gate_up_proj is sliced from \(start.map(String.init) ?? "a run-time start"), not 0 (gate first, then up)")
            }
        }
        block.activationNodes = ["activation", "activationGate"].compactMap { mlpMatch.node($0)?.name }
        guard var down = mlpMatch.node("downNode")?.outputs.first.map({ scaledBranch($0, matcher: site.matcher) }) else { return block }
        // down_proj's output may be scaled (Granite) or pass through a norm of its own first
        // (Gemma 2/3, OLMo-2).
        let joins: (Node) -> Bool = { $0.op == "Add" || $0.op.hasPrefix("Skip") }
        if !site.index.consumers(of: down).contains(where: joins), let norm = normDownstream(of: down, site: site) {
            block.outputNorm = norm
            down = norm.output
        }
        if let add = site.index.consumers(of: down).first(where: joins) {
            block.residualOutput = add.op == "Add" ? add.outputs[0] : (add.outputs.count > 3 ? add.outputs[3] : add.outputs[0])
        }
        return block
    }
}
