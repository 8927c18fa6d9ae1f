import SlowFastIR

/// Step "norms": the adapter's `inputNorm` pattern, found where a layer reads its input, after
/// o_proj and down_proj (sandwich norms), before the MLP and before the head; and the per-head
/// (or full-width) q/k norms the attention pattern captures.
extension LayerDiscovery {
    /// The norm whose output is `value`.
    static func norm(at value: String, matcher: PatternMatcher, adapter: Adapter, file: String, layer: Int, role: String) throws -> RMSNormDescription {
        func fail(_ message: String) -> LayerDiscoveryError {
            .incompleteLayer(file: file, adapter: adapter.name, layer: layer, missing: message)
        }
        switch matcher.match(adapter.inputNorm, at: value) {
        case .failure(let failure):
            throw fail("no \(role) at '\(value)': \(failure)")
        case .success(let match):
            guard let weight = match["normWeight"] else { throw fail("\(role) has no weight") }
            var epsilon: Float?
            if let name = match["epsilon"] { epsilon = try matcher.constantTensor(name)?.floatValues().first }
            if epsilon == nil, let node = match.node("normNode") { epsilon = node.floatAttribute("epsilon") }
            guard let epsilon else { throw fail("\(role) has no epsilon") }
            // A LayerNorm: the ONNX op, or a decomposition that subtracts the mean (`normMean`).
            let centered = match.node("normNode")?.op == "LayerNormalization" || match["normMean"] != nil
            return RMSNormDescription(weight: weight, epsilon: epsilon, input: match["normInput"] ?? "", output: value,
                                      bias: match["normBias"], centered: centered)
        }
    }

    static func norm(at value: String, site: LayerSite, role: String) throws -> RMSNormDescription {
        try norm(at: value, matcher: site.matcher, adapter: site.adapter, file: site.file, layer: site.number, role: role)
    }

    /// The layer's input norm at the projections' input `normed`; nil where the projections
    /// read the residual stream itself (OLMo-2), else the norm pattern's own error.
    static func inputNorm(_ site: LayerSite, normed: String, residualInput: String) throws -> RMSNormDescription? {
        do {
            return try norm(at: normed, site: site, role: "input RMSNorm")
        } catch {
            if normed == residualInput { return nil }
            throw error
        }
    }

    /// The norm that reads `value`: the norm pattern tried at the values a few nodes
    /// downstream of it (a decomposed norm's result is 3-5 nodes away), nearest first.
    static func normDownstream(of value: String, site: LayerSite) -> RMSNormDescription? {
        let index = site.index
        func found(at output: String) -> RMSNormDescription? { try? norm(at: output, site: site, role: "post-attention RMSNorm") }
        var frontier = [value]
        var seen: Set<String> = [value]
        for _ in 0 ..< 6 {
            var next: [String] = []
            for current in frontier {
                for consumer in index.consumers(of: current) {
                    for output in consumer.outputs where !output.isEmpty && seen.insert(output).inserted {
                        if let norm = found(at: output),
                           norm.input == value || index.producer(of: norm.input).map({ $0.op == "Cast" && $0.inputs.first == value }) == true {
                            // A norm that casts after its weight (OLMo-2) ends at that Cast.
                            let consumers = index.consumers(of: norm.output)
                            if consumers.count == 1, consumers[0].op == "Cast", let cast = consumers[0].outputs.first,
                               let whole = found(at: cast), whole.weight == norm.weight {
                                return whole
                            }
                            return norm
                        }
                        next.append(output)
                    }
                }
            }
            frontier = next
        }
        return nil
    }

    /// The per-head RMSNorm of `role` (q or k) where the pattern captured one
    /// (`qNormWeight`, `qNormEpsilon`).
    static func headNorm(_ role: String, _ match: Match, matcher: PatternMatcher) throws -> RMSNormDescription? {
        guard let weight = match["\(role)NormWeight"] else { return nil }
        // A decomposed norm's epsilon constant, or a norm op's `epsilon` attribute (`qNormNode`).
        var epsilon: Float?
        if let name = match["\(role)NormEpsilon"] { epsilon = try matcher.constantTensor(name)?.floatValues().first }
        if epsilon == nil { epsilon = match.node("\(role)NormNode")?.floatAttribute("epsilon") }
        guard let epsilon else { return nil }
        return RMSNormDescription(weight: weight, epsilon: epsilon, input: "", output: "")
    }

    /// 1 where the graph follows Gemma's conventions, nil elsewhere. Gemma's RMSNorm applies
    /// its weight as (1 + w), and torch.onnx folds 1 + w into the constant, so the graph alone
    /// cannot tell w from 1 + w; what it does show is the other Gemma convention, token
    /// embeddings multiplied by √hidden right after the lookup. Where that Mul is there, the
    /// norm weights are named as storing 1 + w (docs/DESIGN.md §7).
    static func gemmaNormOffset(embedding: Node, hidden: Int, matcher: PatternMatcher) -> Double? {
        guard let looked = embedding.outputs.first else { return nil }
        let root = Double(hidden).squareRoot()
        for consumer in matcher.index.consumers(of: looked) where consumer.op == "Mul" && consumer.inputs.count == 2 {
            let other = consumer.inputs[0] == looked ? consumer.inputs[1] : consumer.inputs[0]
            if let values = try? matcher.constantTensor(other)?.floatValues(), values.count == 1,
               abs(Double(values[0]) - root) <= 1e-3 * root {
                return 1
            }
        }
        return nil
    }
}
