import SlowFastIR

/// Step "projections": o_proj and the q/k/v projections (separate, packed in one qkv, or
/// grouped per kv head), and the head layout their shapes and the graph's constants agree on.
struct AttentionProjections {
    var q: ProjectionWeight
    var k: ProjectionWeight
    var v: ProjectionWeight
    var o: ProjectionWeight
    var dims: ModelDimensions
    /// A packed qkv weight the graph slices itself: the PyTorch module was packed (Phi-3).
    var slicedPacked: String?
    /// The float type the layer computes in: a float weight's, or (quantized) its scales'.
    var floatType: Int32?
    /// The layer's fused attention op, where it has one (its attributes state heads and scale).
    var fusedAttention: Node?
}

/// The numbers read from o_proj and the head evidence, before q/k/v are looked at.
private struct HeadLayout {
    var hidden: Int
    var attentionWidth: Int
    var heads: Int
    var headDim: Int
    var evidence: HeadEvidence
}

extension LayerDiscovery {
    /// Widths are bounded before any arithmetic on them.
    static let widthLimit = Int64(Limits.width)

    static func projections(_ site: LayerSite, numLayers: Int) throws -> AttentionProjections {
        guard let oNode = site.match.node("oNode") else { throw site.fail("no o_proj node captured") }
        let oWeightName = try site.need("oWeight", "no initializer weight for o_proj")
        let oStorage = try site.storage(of: oNode, weight: oWeightName)
        guard let oWeight = site.index.initializer(oWeightName),
              let oDims = oStorage.map({ [Int64($0.shape.inFeatures), Int64($0.shape.outFeatures)] }) ?? (oWeight.dims.count == 2 ? oWeight.dims : nil) else {
            throw site.fail("o_proj weight '\(oWeightName)' is not a 2-D initializer")
        }
        guard (1 ... widthLimit).contains(oDims[1]), (1 ... widthLimit).contains(oDims[0]) else {
            throw site.fail("o_proj weight dims \(oDims) outside 1...\(widthLimit)")
        }
        // Dimensions come from shapes: reshape constants, the fused op's head counts and the
        // weights' widths, checked against each other. The softmax scale is a value of its own
        // (a model may scale by anything, e.g. Granite's attention multiplier).
        let fused = site.match.node("fusedAttention")
            ?? site.match.node("attentionOutput").flatMap { $0.intAttribute("num_heads") != nil ? $0 : nil }
        let evidence = try HeadEvidence(match: site.match, fused: fused, matcher: site.matcher)
        let attentionWidth = Int(oDims[0])
        let headDim = try evidence.headDim(attentionWidth: attentionWidth, fail: site.fail)
        guard attentionWidth % headDim == 0 else {
            throw site.fail("o_proj's input width \(attentionWidth) is not a multiple of head_dim \(headDim) (\(evidence.headDimSources))")
        }
        let heads = attentionWidth / headDim
        if let (source, count) = evidence.heads.first(where: { $0.1 != heads }) {
            throw site.fail("\(source) says \(count) heads, but o_proj's input width \(attentionWidth) / head_dim \(headDim) is \(heads)")
        }
        let layout = HeadLayout(hidden: Int(oDims[1]), attentionWidth: attentionWidth, heads: heads, headDim: headDim, evidence: evidence)
        let (q, k, v, kvHeads, slicedPacked): (ProjectionWeight, ProjectionWeight, ProjectionWeight, Int, String?)
        if site.match["qkvWeight"] != nil, site.match.node("qkvGroupReshape") != nil {
            (q, k, v, kvHeads, slicedPacked) = try groupedQKV(site, layout)
        } else if site.match["qkvWeight"] != nil {
            (q, k, v, kvHeads, slicedPacked) = try packedQKV(site, layout)
        } else {
            (q, k, v, kvHeads, slicedPacked) = try separateQKV(site, layout)
        }
        if let rotary = evidence.rotaryDim, rotary > headDim || rotary % 2 != 0 {
            throw site.fail("the RoPE tables rotate \(rotary) dims, which does not fit head_dim \(headDim) (\(evidence.headDimSources))")
        }
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0, heads * headDim == attentionWidth else {
            throw site.fail("head counts do not fit: \(heads) heads, \(kvHeads) kv heads of \(headDim) for attention width \(attentionWidth)")
        }
        // The match is only as good as the shapes agree: every weight must fit the dims.
        for (projection, role, out) in [(q, "q_proj", attentionWidth), (k, "k_proj", kvHeads * headDim), (v, "v_proj", kvHeads * headDim)] {
            guard let shape = site.shape(of: projection), shape.count == 2 else { continue }
            let count = projection.outputCount ?? Int(shape[1])
            guard Int(shape[0]) == layout.hidden, count == out else {
                throw site.fail("\(role) weight '\(projection.weight)' is \(shape), which does not fit hidden \(layout.hidden), "
                    + "\(heads) heads, \(kvHeads) kv heads of \(headDim)")
            }
        }
        let o = ProjectionWeight(weight: oWeightName, layout: .inputMajor, node: oNode.name ?? "", storage: oStorage)
        // The type the layer computes in is q_proj's (o_proj's where q's is not stored): a float16
        // export whose sdpa upcasts keeps o_proj's weight in float32 (it reads the float32
        // attention output).
        let floatType = q.storage.map { floatTypeOf($0, index: site.index) } ?? site.index.initializer(q.weight)?.dataType
            ?? oStorage.map { floatTypeOf($0, index: site.index) } ?? oWeight.dataType
        let dims = ModelDimensions(numLayers: numLayers, hiddenSize: layout.hidden, numHeads: heads, numKVHeads: kvHeads, headDim: headDim)
        return AttentionProjections(q: q, k: k, v: v, o: o, dims: dims, slicedPacked: slicedPacked, floatType: floatType, fusedAttention: fused)
    }

    /// A projection captured as `<role>Node`/`<role>Weight`, optionally one slice of its outputs.
    private static func projection(_ site: LayerSite, _ role: String, start: Int? = nil, count: Int? = nil,
                                   block: Int? = nil, stride: Int? = nil) throws -> ProjectionWeight {
        let weight = try site.need("\(role)Weight", "no initializer weight for \(role)_proj")
        guard let node = site.match.node("\(role)Node"), let name = node.name else { throw site.fail("no \(role)_proj node captured") }
        let stored = try site.storage(of: node, weight: weight)
        return ProjectionWeight(weight: weight, layout: .inputMajor, outputStart: start, outputCount: count, outputBlock: block,
                                outputStride: stride, bias: site.match["\(role)Bias"] ?? stored?.bias, node: name, storage: stored)
    }

    /// Separate q_proj, k_proj and v_proj: the kv heads are k_proj's width over head_dim.
    private static func separateQKV(_ site: LayerSite, _ layout: HeadLayout) throws
        -> (ProjectionWeight, ProjectionWeight, ProjectionWeight, Int, String?) {
        let q = try projection(site, "q"), k = try projection(site, "k"), v = try projection(site, "v")
        guard let kDims = site.shape(of: k), kDims.count == 2, (1 ... widthLimit).contains(kDims[1]) else {
            throw site.fail("k_proj weight is not a 2-D initializer")
        }
        let kvWidth = Int(kDims[1]), headDim = layout.headDim
        guard kvWidth % headDim == 0 else {
            throw site.fail("k_proj's width \(kvWidth) is not a multiple of head_dim \(headDim) (\(layout.evidence.headDimSources))")
        }
        let kvHeads = kvWidth / headDim
        if let (source, count) = layout.evidence.kvHeads.first(where: { $0.1 != kvHeads }) {
            throw site.fail("\(source) says \(count) kv heads, but k_proj's width \(kvWidth) / head_dim \(headDim) is \(kvHeads)")
        }
        return (q, k, v, kvHeads, nil)
    }

    /// One packed qkv: q's outputs first, then k's and v's, sliced by the graph (Phi-3), split
    /// (onnxruntime-genai's Qwen3) or read whole by a fused op that states its kv heads.
    private static func packedQKV(_ site: LayerSite, _ layout: HeadLayout) throws
        -> (ProjectionWeight, ProjectionWeight, ProjectionWeight, Int, String?) {
        let (attentionWidth, headDim, heads) = (layout.attentionWidth, layout.headDim, layout.heads)
        var kvHeads = layout.evidence.kvHeads.first?.1 ?? 0
        var slicedPacked: String?
        if let kvWidth = try packedSlices(site.match, matcher: site.matcher, attentionWidth: attentionWidth, headDim: headDim, fail: site.fail) {
            if kvHeads > 0, kvHeads * headDim != kvWidth {
                throw site.fail("\(layout.evidence.kvHeads.first?.0 ?? "the graph") says \(kvHeads) kv heads, but the k slice of the packed qkv is \(kvWidth) wide with head_dim \(headDim)")
            }
            kvHeads = kvWidth / headDim
            slicedPacked = try site.need("qkvWeight", "no packed qkv weight")
        }
        guard kvHeads > 0 else { throw site.fail("packed qkv without kv_num_heads") }
        let kvWidth = kvHeads * headDim
        let q = try projection(site, "qkv", start: 0, count: attentionWidth)
        let k = try projection(site, "qkv", start: attentionWidth, count: kvWidth)
        let v = try projection(site, "qkv", start: attentionWidth + kvWidth, count: kvWidth)
        // The slices must cover the packed weight exactly: q, then k, then v.
        if let packed = site.shape(of: q), packed.count == 2, Int(packed[1]) != attentionWidth + 2 * kvWidth {
            throw site.fail("packed qkv weight '\(q.weight)' has \(packed[1]) outputs, but \(heads) heads and \(kvHeads) kv heads of \(headDim) make \(attentionWidth) + 2 x \(kvWidth)")
        }
        // A Split of the packed value into q, k and v must cut it at those widths, on the last axis.
        if let split = site.match.node("qkvSplit") {
            let sizes = split.inputs.count > 1 ? try site.matcher.constantTensor(split.inputs[1])?.int64Values() : nil
            let axis = split.intAttribute("axis") ?? 0
            guard sizes == [Int64(attentionWidth), Int64(kvWidth), Int64(kvWidth)], axis == -1 || axis == 2 else {
                throw site.fail("'\(split.name ?? "")' splits the packed qkv into \(sizes.map { "\($0)" } ?? "run-time sizes") on axis \(axis); "
                    + "\(heads) heads and \(kvHeads) kv heads of \(headDim) need [\(attentionWidth), \(kvWidth), \(kvWidth)] on the last axis")
            }
        }
        return (q, k, v, kvHeads, slicedPacked)
    }

    /// Grouped packing (InternLM2's wqkv): per kv head, its query heads, then key, then value.
    private static func groupedQKV(_ site: LayerSite, _ layout: HeadLayout) throws
        -> (ProjectionWeight, ProjectionWeight, ProjectionWeight, Int, String?) {
        let (heads, headDim) = (layout.heads, layout.headDim)
        let groups = try groupedSlices(site.match, matcher: site.matcher, heads: heads, headDim: headDim, fail: site.fail)
        let kvHeads = heads / groups
        if let (source, count) = layout.evidence.kvHeads.first(where: { $0.1 != kvHeads }) {
            throw site.fail("\(source) says \(count) kv heads, but the grouped qkv holds \(groups) query heads per kv head, "
                + "so \(heads) heads make \(kvHeads)")
        }
        let packed = try site.need("qkvWeight", "no packed qkv weight")
        let stride = (groups + 2) * headDim
        let q = try projection(site, "qkv", start: 0, count: layout.attentionWidth, block: groups * headDim, stride: stride)
        let k = try projection(site, "qkv", start: groups * headDim, count: kvHeads * headDim, block: headDim, stride: stride)
        let v = try projection(site, "qkv", start: (groups + 1) * headDim, count: kvHeads * headDim, block: headDim, stride: stride)
        if let shape = site.shape(of: q), shape.count == 2, Int(shape[1]) != kvHeads * stride {
            throw site.fail("grouped qkv weight '\(q.weight)' has \(shape[1]) outputs, but \(kvHeads) kv heads of "
                + "(\(groups) query heads + key + value) x head_dim \(headDim) make \(kvHeads * stride)")
        }
        return (q, k, v, kvHeads, packed)
    }
}
