import SlowFastIR

/// Step "scores": what the layer multiplies q·kᵀ by, and Gemma 2's soft-capping of the scores.
extension LayerDiscovery {
    /// The cap of Gemma 2's attention logit soft-capping, tanh(s / cap) · cap, where the
    /// pattern captured one (`softcap`, and `softcapFactor`, which must be the same number).
    static func softcap(_ match: Match, fused: Node?, matcher: PatternMatcher, fail: (String) -> LayerDiscoveryError) throws -> Double? {
        // GroupQueryAttention's own attribute (onnxruntime-genai's Gemma 2); 0 means none.
        if let cap = fused?.floatAttribute("softcap"), cap != 0 {
            guard cap > 0, cap.isFinite else { throw fail("'\(fused?.name ?? "")' has softcap \(cap), not a positive number") }
            return Double(cap)
        }
        guard let name = match["softcap"] ?? match["softcapFactor"] else { return nil }
        guard let cap = try matcher.constantTensor(name)?.floatValues(), cap.count == 1, cap[0] > 0 else {
            throw fail("the soft-capping divisor '\(name)' is not one positive constant")
        }
        if let factorName = match["softcapFactor"] {
            guard let factor = try matcher.constantTensor(factorName)?.floatValues(), factor == cap else {
                throw fail("soft-capping divides by '\(name)' = \(cap[0]) but multiplies by '\(factorName)', another value")
            }
        }
        return Double(cap[0])
    }

    /// The factor the layer multiplies q·kᵀ by, as the graph holds it: an attention op's
    /// `scale` attribute, a constant multiplying the scores, or (sdpa) the product of the
    /// constants multiplying q and kᵀ. nil when the graph does not say (a fused op's default,
    /// 1/√head_dim). Read as a value of its own: it never decides a head count.
    /// `fused` is the layer's fused attention op (the genai adapter captures GroupQueryAttention
    /// as `attentionOutput`), whose `scale` Granite's export sets to its attention multiplier;
    /// without it, the match's `fusedAttention` capture.
    static func attentionScale(_ match: Match, fused: Node? = nil, matcher: PatternMatcher) throws -> Double? {
        if let scale = match.node("attentionCore")?.floatAttribute("scale") { return Double(scale) }
        if let fused = fused ?? match.node("fusedAttention"), let scale = fused.floatAttribute("scale"), scale != 0 { return Double(scale) }
        func constant(_ capture: String) throws -> Double? {
            guard let name = match[capture], let value = try matcher.constantTensor(name)?.floatValues().first else { return nil }
            return Double(value)
        }
        if let scale = try constant("scale") { return scale }
        // Soft-capped scores with scale / cap folded into one factor (Gemma 2 by dynamo).
        if let folded = try constant("scaleOverCap"), let cap = try constant("softcapFactor") { return folded * cap }
        if let root = try constant("sqrtScale") { return root * (try constant("sqrtScaleKey") ?? root) }
        return nil
    }
}
