import SlowFastIR

/// Packed q/k/v read back to their parts: the slices of a packed qkv, the groups of a grouped one.
extension LayerDiscovery {
    /// The k width of a packed qkv the graph slices (Phi-3: Slice nodes on the last axis of
    /// one MatMul), checked: q is the first `attentionWidth` outputs, k and v follow it, equal
    /// in width, a multiple of head_dim, and end where the packed weight ends. nil when the
    /// match has no slices (a fused op reads the packed value whole).
    static func packedSlices(_ match: Match, matcher: PatternMatcher, attentionWidth: Int, headDim: Int,
                             fail: (String) -> LayerDiscoveryError) throws -> Int? {
        guard let sliceNode = match.node("qSlice"), let weightName = match["qkvWeight"] else { return nil }
        let stored = try match.node("qkvNode").flatMap { try storage(of: $0, weight: weightName, matcher: matcher, fail: fail) }
        guard let width = stored?.shape.outFeatures
                ?? matcher.index.initializer(weightName).flatMap({ $0.dims.count == 2 ? Int($0.dims[1]) : nil }) else {
            throw fail("packed qkv weight '\(weightName)' is not a 2-D initializer")
        }
        var ranges: [String: Range<Int>] = [:]
        for role in ["q", "k", "v"] {
            guard let node = role == "q" ? sliceNode : match.node("\(role)Slice") else { throw fail("no \(role) slice of the packed qkv") }
            func bound(_ slot: Int) throws -> Int64? {
                guard node.inputs.count > slot, !node.inputs[slot].isEmpty else { return nil }
                guard let values = try matcher.constantTensor(node.inputs[slot])?.int64Values(), values.count == 1 else {
                    throw fail("\(role) Slice '\(node.name ?? "")' input \(slot) is not one constant")
                }
                return values[0]
            }
            if let axis = try bound(3), axis != -1, axis != 2 {
                throw fail("\(role) Slice '\(node.name ?? "")' cuts axis \(axis), not the last one")
            }
            if let step = try bound(4), step != 1 { throw fail("\(role) Slice '\(node.name ?? "")' steps by \(step)") }
            func clamped(_ value: Int64) -> Int { Int(max(0, min(Int64(width), value < 0 ? value + Int64(width) : value))) }
            let start = clamped(try bound(1) ?? 0), end = clamped(try bound(2) ?? Int64(width))
            ranges[role] = start ..< max(start, end)
        }
        let q = ranges["q"]!, k = ranges["k"]!, v = ranges["v"]!
        guard q == 0 ..< attentionWidth, k.lowerBound == q.upperBound, v.lowerBound == k.upperBound, v.upperBound == width,
              k.count == v.count, k.count > 0, k.count % headDim == 0 else {
            throw fail("packed qkv '\(weightName)' (\(width) outputs) is sliced q \(q), k \(k), v \(v); "
                + "expected q 0..<\(attentionWidth), then k and v of equal width, a multiple of head_dim \(headDim)")
        }
        return k.count
    }

    /// The number of query heads per kv head of a grouped qkv (InternLM2's wqkv: the MatMul's
    /// output reshaped to [B, L, kv_heads, groups + 2, head_dim], the query heads sliced
    /// [0, groups) and the key and value gathered at groups and groups + 1 on that axis),
    /// checked: the Reshape's trailing constants, the Slice's bounds and the Gathers' indices
    /// against `heads` and `headDim`.
    static func groupedSlices(_ match: Match, matcher: PatternMatcher, heads: Int, headDim: Int,
                              fail: (String) -> LayerDiscoveryError) throws -> Int {
        guard let reshape = match.node("qkvGroupReshape"), reshape.inputs.count > 1,
              let slice = match.node("qGroupSlice"), let key = match.node("kGroupGather"), let value = match.node("vGroupGather") else {
            throw fail("a grouped qkv needs its Reshape, the query Slice and the key and value Gathers")
        }
        let shape = HeadEvidence.constantShape(reshape.inputs[1], matcher: matcher)
        guard shape.count == 5, let groupsPlusTwo = shape[3], let dim = shape[4], groupsPlusTwo > 2 else {
            throw fail("grouped qkv Reshape '\(reshape.name ?? "")' has shape \(shape.map { $0.map(String.init) ?? "?" }), "
                + "not [batch, length, kv_heads, groups + 2, head_dim] with constant groups + 2 and head_dim")
        }
        let groups = groupsPlusTwo - 2
        guard dim == headDim, heads % groups == 0 else {
            throw fail("grouped qkv Reshape '\(reshape.name ?? "")' splits into groups of \(groups) query heads + key + value "
                + "of \(dim), which does not fit \(heads) heads of head_dim \(headDim)")
        }
        if let kvHeads = shape[2], kvHeads > 0, kvHeads * groups != heads {
            throw fail("grouped qkv Reshape '\(reshape.name ?? "")' has \(kvHeads) kv heads of \(groups) query heads, not \(heads) heads")
        }
        func constant(_ node: Node, _ slot: Int) throws -> Int64? {
            guard node.inputs.count > slot, !node.inputs[slot].isEmpty else { return nil }
            guard let values = try matcher.constantTensor(node.inputs[slot])?.int64Values(), values.count == 1 else {
                throw fail("\(node.op) '\(node.name ?? "")' input \(slot) is not one constant")
            }
            return values[0]
        }
        func onGroupAxis(_ axis: Int64?) -> Bool { axis == 3 || axis == -2 }
        func position(_ index: Int64?) -> Int? { index.map { Int($0 < 0 ? $0 + Int64(groupsPlusTwo) : $0) } }
        let start = try constant(slice, 1), end = try constant(slice, 2), axis = try constant(slice, 3), step = try constant(slice, 4)
        guard start == 0, let end, min(end, Int64(groupsPlusTwo)) == Int64(groups), onGroupAxis(axis), step == nil || step == 1 else {
            throw fail("query Slice '\(slice.name ?? "")' of the grouped qkv takes \(start.map(String.init) ?? "?")..<"
                + "\(end.map(String.init) ?? "?") on axis \(axis.map(String.init) ?? "?"); expected 0..<\(groups) on the group axis")
        }
        for (node, role, wanted) in [(key, "key", groups), (value, "value", groups + 1)] {
            let at = try position(constant(node, 1))
            guard onGroupAxis(node.intAttribute("axis")), at == wanted else {
                throw fail("\(role) Gather '\(node.name ?? "")' of the grouped qkv takes \(at.map(String.init) ?? "?") on axis "
                    + "\(node.intAttribute("axis").map(String.init) ?? "0"); expected \(wanted) on the group axis")
            }
        }
        return groups
    }
}
