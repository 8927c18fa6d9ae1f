import SlowFastIR

/// Step "rotary": the query the layer's attention uses, after whatever rotary the layer
/// applies: a value in the graph (RoPE applied before the attention op, heads split or merged),
/// or, where the rotary is inside a fused attention op, the query before it and the op's
/// tables, so that the pass can apply the same rotation.
extension LayerDiscovery {
    static func query(_ site: LayerSite, fused: Node?, attentionWidth: Int) throws -> QueryAnchor {
        if let tensor = site.match["query"] { return .tensor(name: tensor) }
        if let tensor = site.match["queryMerged"] { return .headsMerged(name: tensor) }
        guard let fused else { throw site.fail("no query after RoPE") }
        guard (fused.intAttribute("do_rotary") ?? 0) != 0 else {
            throw site.fail("fused attention without do_rotary: RoPE is elsewhere")
        }
        return .fused(rotary: FusedRotary(
            // The query the op rotates: a capture of its own where q is normed first (Qwen3 by
            // onnxruntime-genai), else the packed qkv whose first features are q.
            queryBeforeRoPE: try site.match["queryBeforeRoPE"] ?? site.match["qkv"] ?? site.need("qkvNode", "no packed qkv input of the fused attention"),
            querySliceCount: attentionWidth,
            cosCache: try site.need("cosCache", "no cos cache on the fused attention"),
            sinCache: try site.need("sinCache", "no sin cache on the fused attention"),
            interleaved: (fused.intAttribute("rotary_interleaved") ?? 0) != 0,
            seqlensK: try site.need("seqlensK", "no seqlens_k on the fused attention"),
            totalSequenceLength: try site.need("totalSequenceLength", "no total_sequence_length on the fused attention"),
            attentionNode: fused.name ?? ""))
    }
}
