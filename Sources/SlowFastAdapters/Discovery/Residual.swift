import SlowFastIR

/// Where a layer's attention block leaves and rejoins the residual stream.
struct ResidualJoin {
    /// The stream the layer reads.
    var residualInput: String
    /// The stream after the attention block's Add (or a skip-norm's sum output).
    var attentionResidual: String
    /// The norm before the MLP, where it reads the stream.
    var postNorm: RMSNormDescription?
    /// A norm of o_proj's own output before it joins (Gemma 2/3's, OLMo-2's post norm).
    var attentionOutputNorm: RMSNormDescription?
}

/// Step "residual join": o_proj's output joins the stream with an Add (`residual: add`) or a
/// fused skip-norm (`residual: skipNorm`), scaled by a constant first (Granite's
/// residual_multiplier) or through a norm of its own (sandwich norms).
extension LayerDiscovery {
    static func residualJoin(_ site: LayerSite, oOutput: String, normed: String) throws -> ResidualJoin {
        let index = site.index
        var joined = scaledBranch(oOutput, matcher: site.matcher)
        let joins: (Node) -> Bool
        switch site.adapter.residual {
        case .add: joins = { $0.op == "Add" && $0.inputs.count == 2 }
        case .skipNorm: joins = { $0.op.hasPrefix("Skip") }
        }
        var attentionOutputNorm: RMSNormDescription?
        if !index.consumers(of: joined).contains(where: joins), let norm = normDownstream(of: joined, site: site) {
            attentionOutputNorm = norm
            joined = norm.output
        }
        guard let join = index.consumers(of: joined).first(where: joins) else {
            throw site.fail(site.adapter.residual == .add ? "no Add joins o_proj to the residual stream"
                                                          : "no skip-norm joins o_proj to the residual stream")
        }
        switch site.adapter.residual {
        case .add:
            let attentionResidual = join.outputs[0]
            return ResidualJoin(residualInput: join.inputs[0] == joined ? join.inputs[1] : join.inputs[0],
                                attentionResidual: attentionResidual,
                                postNorm: normDownstream(of: attentionResidual, site: site),
                                attentionOutputNorm: attentionOutputNorm)
        case .skipNorm:
            // The stream the layer reads is the previous skip-norm's sum output (output 3), or
            // the first norm's input.
            let normNode = index.producer(of: normed)
            let residualInput = (normNode?.outputs.count ?? 0) > 3 && !(normNode?.outputs[3].isEmpty ?? true)
                ? normNode!.outputs[3] : (normNode?.inputs.first ?? "")
            return ResidualJoin(residualInput: residualInput,
                                attentionResidual: join.outputs.count > 3 ? join.outputs[3] : "",
                                postNorm: try? norm(at: join.outputs[0], site: site, role: "post-attention RMSNorm"),
                                attentionOutputNorm: attentionOutputNorm)
        }
    }

    /// The value that joins the residual stream for a block output `value`: `value` itself, or
    /// its product with a constant where the layer scales the block first (Granite's
    /// residual_multiplier: residual + o_proj(...) * m).
    static func scaledBranch(_ value: String, matcher: PatternMatcher) -> String {
        let consumers = matcher.index.consumers(of: value)
        guard !consumers.contains(where: { $0.op == "Add" }), consumers.count == 1, let mul = consumers.first, mul.op == "Mul",
              mul.inputs.count == 2, let other = mul.inputs.first(where: { $0 != value }),
              matcher.constantTensor(other).map({ $0.elementCount == 1 }) == true else { return value }
        return mul.outputs[0]
    }
}
