import SlowFastIR
import Foundation

/// Why no layer description could be made.
public enum LayerDiscoveryError: Error, CustomStringConvertible {
    /// No adapter described the model; what each one found.
    case noAdapterMatched(file: String, findings: [String])
    /// An adapter found layers but could not describe one of them fully.
    case incompleteLayer(file: String, adapter: String, layer: Int, missing: String)
    case inconsistent(file: String, adapter: String, message: String)

    /// What one adapter found, without the file name (for the "no adapter matched" list).
    var findings: [String] {
        switch self {
        case .noAdapterMatched(_, let findings): return findings
        case .incompleteLayer(_, let adapter, let layer, let missing): return ["\(adapter): layer \(layer): \(missing)"]
        case .inconsistent(_, let adapter, let message): return ["\(adapter): \(message)"]
        }
    }

    public var description: String {
        switch self {
        case .noAdapterMatched(let file, let findings):
            return "\(file): no adapter matched: " + findings.joined(separator: "; ")
        case .incompleteLayer(let file, let adapter, let layer, let missing):
            return "\(file): adapter '\(adapter)': layer \(layer): \(missing)"
        case .inconsistent(let file, let adapter, let message):
            return "\(file): adapter '\(adapter)': \(message)"
        }
    }
}

/// Finds each decoder layer's anchors with adapters: one algorithm for every adapter.
///
/// 1. Match the adapter's `attention` pattern at every node output: each match is one
///    layer's o_proj, with captures for the projections, the query and the attention output.
/// 2. Match `inputNorm` at the captured normalised input; follow the residual stream.
/// 3. Number the layers (node names, metadata, or graph order) and derive the dimensions
///    from weight shapes and the attention's scale or attributes.
public enum LayerDiscovery {
    /// Tries `adapters` in order and returns the first complete description. With one
    /// adapter, its own error is thrown; with several and none matching, what each found.
    /// A model that slowfast already rewrote is described as the original was: discovery
    /// reads through the hybrid layers' nodes (see `RewriteMarks.passthrough`).
    public static func discover(_ model: Model, adapters: [Adapter]) throws -> ModelLayout {
        try discover(model, loading: adapters.map { adapter in { adapter } })
    }

    /// `discover(_:adapters:)` with each adapter loaded only when discovery gets to it: the
    /// built-in adapters take longer to load than a model takes to match the first of them.
    public static func discover(_ model: Model, loading adapters: [() throws -> Adapter]) throws -> ModelLayout {
        let file = model.sourcePath ?? "model"
        if model.graph.hasRewriteMarks {
            let original = Model(graph: model.graph.bypassingHybridLayers(), origin: nil)
            original.sourcePath = model.sourcePath
            original.opsetImports = model.opsetImports
            original.irVersion = model.irVersion
            original.functions = model.functions
            return try discover(unmarked: original, adapters: adapters, file: file)
        }
        return try discover(unmarked: model, adapters: adapters, file: file)
    }

    private static func discover(unmarked model: Model, adapters: [() throws -> Adapter], file: String) throws -> ModelLayout {
        let matcher = PatternMatcher(graph: model.graph)
        var findings: [String] = []
        for load in adapters {
            do {
                return try describe(model, matcher: matcher, adapter: try load())
            } catch let error as LayerDiscoveryError {
                if adapters.count == 1 { throw error }
                findings.append(contentsOf: error.findings)
            }
        }
        throw LayerDiscoveryError.noAdapterMatched(file: file, findings: findings)
    }

    static func describe(_ model: Model, matcher: PatternMatcher, adapter: Adapter) throws -> ModelLayout {
        let file = model.sourcePath ?? "model"
        let graph = model.graph
        let index = matcher.index
        var attentionMatches: [Match] = []
        // The attempt that got deepest into the pattern, and the candidate o_proj it started at.
        var deepest: (failure: MatchFailure, root: Node)?
        // Per layer number, the failure that got furthest into the pattern: what a user whose
        // layer 3 does not match needs to see.
        var closest: [Int: MatchFailure] = [:]
        // o_proj candidates: the ops the attention pattern can have at its root (a MatMul or
        // Gemm, and the nodes a quantized MatMul ends in).
        let roots = PatternMatcher.rootOps(adapter.attention) ?? ["MatMul", "Gemm"]
        for node in graph.nodes where roots.contains(node.op) {
            guard let output = node.outputs.first else { continue }
            switch matcher.match(adapter.attention, at: output) {
            case .success(let match): attentionMatches.append(match)
            case .failure(let failure):
                // A failure at the root says only that this MatMul is not an o_proj.
                guard failure.depth > 1 else { continue }
                if failure.depth > (deepest?.failure.depth ?? 0) { deepest = (failure, node) }
                if let number = adapter.layerNumbering.number(of: node),
                   failure.depth > (closest[number]?.depth ?? 0) { closest[number] = failure }
            }
        }
        guard !attentionMatches.isEmpty else {
            let hint: String
            if let (failure, root) = deepest {
                hint = "; its deepest attempt, from \(root.op) '\(root.name ?? "")', reached pattern step \(failure.depth) ("
                    + "\(failure.path)) at \(failure.node ?? "a value no node computes"): \(failure.reason)"
            } else {
                hint = "; no MatMul or Gemm got past the pattern's first step"
            }
            throw LayerDiscoveryError.noAdapterMatched(file: file, findings: ["\(adapter.name): 0 layers, no attention block\(hint)"])
        }
        // Layer numbers.
        var numbered: [(Int, Match)] = []
        for (order, match) in attentionMatches.enumerated() {
            numbered.append((match.node("oNode").flatMap(adapter.layerNumbering.number(of:)) ?? order, match))
        }
        numbered.sort { $0.0 < $1.0 }
        let numbers = numbered.map(\.0)
        if let missing = (0 ..< (numbers.last ?? 0)).first(where: { !numbers.contains($0) }) {
            let why = closest[missing].map { "closest: \($0.description)" } ?? "no candidate o_proj"
            throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: missing,
                                                      missing: "its attention block does not match (\(why))")
        }
        guard numbers == Array(0 ..< numbers.count) else {
            throw LayerDiscoveryError.inconsistent(file: file, adapter: adapter.name,
                                                   message: "layer numbers found are \(numbers), expected 0...\(numbers.count - 1) once each")
        }
        var mlpByInput: [String: Match] = [:]
        if let mlp = adapter.mlp {
            for match in matcher.matches(of: mlp) { if let input = match["mlpInput"] { mlpByInput[input] = match } }
        }

        var layers: [LayerDescription] = []
        // Packed qkv weights the graph itself slices (Phi-3): the PyTorch module was packed.
        var slicedPacked: Set<String> = []
        var dims: ModelDimensions?
        var floatType: Int32 = ElementType.float.rawValue
        for (number, match) in numbered {
            func need(_ capture: String, _ what: String) throws -> String {
                guard let value = match[capture] else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: what)
                }
                return value
            }
            guard let oNode = match.node("oNode") else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "no o_proj node captured")
            }
            let oWeightName = try need("oWeight", "no initializer weight for o_proj")
            func fail(_ message: String) -> LayerDiscoveryError {
                .incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: message)
            }
            let oStorage = try storage(of: oNode, weight: oWeightName, matcher: matcher, fail: fail)
            guard let oWeight = index.initializer(oWeightName),
                  let oDims = oStorage.map({ [Int64($0.shape.inFeatures), Int64($0.shape.outFeatures)] }) ?? (oWeight.dims.count == 2 ? oWeight.dims : nil) else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "o_proj weight '\(oWeightName)' is not a 2-D initializer")
            }
            // The model's float type: a float weight's, else (quantized) its scales'.
            floatType = oStorage == nil ? oWeight.dataType ?? floatType : floatTypeOf(oStorage!, index: index) ?? floatType
            // Numbers from the file are bounded before any arithmetic on them.
            let widthLimit: Int64 = 1 << 24
            guard (1 ... widthLimit).contains(oDims[1]), (1 ... widthLimit).contains(oDims[0]) else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number,
                                                          missing: "o_proj weight dims \(oDims) outside 1...\(widthLimit)")
            }
            let hidden = Int(oDims[1]), attentionWidth = Int(oDims[0])

            // Dimensions come from shapes: reshape constants, the fused op's head counts and
            // the weights' widths, checked against each other. The softmax scale is a value of
            // its own (a model may scale by anything, e.g. Granite's attention multiplier).
            let fusedNode = match.node("fusedAttention")
                ?? match.node("attentionOutput").flatMap { $0.intAttribute("num_heads") != nil ? $0 : nil }
            let evidence = try HeadEvidence(match: match, fused: fusedNode, matcher: matcher)
            let headDim = try evidence.headDim(attentionWidth: attentionWidth, fail: fail)
            guard attentionWidth % headDim == 0 else {
                throw fail("o_proj's input width \(attentionWidth) is not a multiple of head_dim \(headDim) (\(evidence.headDimSources))")
            }
            let heads = attentionWidth / headDim
            if let (source, count) = evidence.heads.first(where: { $0.1 != heads }) {
                throw fail("\(source) says \(count) heads, but o_proj's input width \(attentionWidth) / head_dim \(headDim) is \(heads)")
            }
            var kvHeads = evidence.kvHeads.first?.1 ?? 0

            // Projections: separate q/k/v, or one packed qkv.
            func projection(_ role: String, start: Int? = nil, count: Int? = nil, block: Int? = nil, stride: Int? = nil) throws -> ProjectionWeight {
                let weight = try need("\(role)Weight", "no initializer weight for \(role)_proj")
                guard let node = match.node("\(role)Node"), let name = node.name else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "no \(role)_proj node captured")
                }
                let stored = try storage(of: node, weight: weight, matcher: matcher, fail: fail)
                return ProjectionWeight(weight: weight, layout: .inputMajor, outputStart: start, outputCount: count,
                                        outputBlock: block, outputStride: stride, bias: match["\(role)Bias"] ?? stored?.bias, node: name,
                                        storage: stored)
            }
            // A projection's [in, out] shape, whatever its storage.
            func shapeOf(_ projection: ProjectionWeight) -> [Int64]? {
                if let stored = projection.storage { return [Int64(stored.shape.inFeatures), Int64(stored.shape.outFeatures)] }
                return index.initializer(projection.weight)?.dims
            }
            let q: ProjectionWeight, k: ProjectionWeight, v: ProjectionWeight
            if match["qkvWeight"] != nil, match.node("qkvGroupReshape") != nil {
                // Grouped packing (InternLM2's wqkv): per kv head, its query heads, key, value.
                let groups = try groupedSlices(match, matcher: matcher, heads: heads, headDim: headDim, fail: fail)
                let groupKVHeads = heads / groups
                if let (source, count) = evidence.kvHeads.first(where: { $0.1 != groupKVHeads }) {
                    throw fail("\(source) says \(count) kv heads, but the grouped qkv holds \(groups) query heads per kv head, "
                        + "so \(heads) heads make \(groupKVHeads)")
                }
                kvHeads = groupKVHeads
                slicedPacked.insert(try need("qkvWeight", "no packed qkv weight"))
                let stride = (groups + 2) * headDim
                q = try projection("qkv", start: 0, count: attentionWidth, block: groups * headDim, stride: stride)
                k = try projection("qkv", start: groups * headDim, count: kvHeads * headDim, block: headDim, stride: stride)
                v = try projection("qkv", start: (groups + 1) * headDim, count: kvHeads * headDim, block: headDim, stride: stride)
                if let packed = shapeOf(q), packed.count == 2, Int(packed[1]) != kvHeads * stride {
                    throw fail("grouped qkv weight '\(q.weight)' has \(packed[1]) outputs, but \(kvHeads) kv heads of "
                        + "(\(groups) query heads + key + value) x head_dim \(headDim) make \(kvHeads * stride)")
                }
            } else if match["qkvWeight"] != nil {
                if let kvWidth = try packedSlices(match, matcher: matcher, attentionWidth: attentionWidth, headDim: headDim, fail: fail) {
                    if kvHeads > 0, kvHeads * headDim != kvWidth {
                        throw fail("\(evidence.kvHeads.first?.0 ?? "the graph") says \(kvHeads) kv heads, but the k slice of the packed qkv is \(kvWidth) wide with head_dim \(headDim)")
                    }
                    kvHeads = kvWidth / headDim
                    slicedPacked.insert(try need("qkvWeight", "no packed qkv weight"))
                }
                guard kvHeads > 0 else {
                    throw fail("packed qkv without kv_num_heads")
                }
                let kvWidth = kvHeads * headDim
                q = try projection("qkv", start: 0, count: attentionWidth)
                k = try projection("qkv", start: attentionWidth, count: kvWidth)
                v = try projection("qkv", start: attentionWidth + kvWidth, count: kvWidth)
                // The slices must cover the packed weight exactly: q, then k, then v.
                if let packed = shapeOf(q), packed.count == 2, Int(packed[1]) != attentionWidth + 2 * kvWidth {
                    throw fail("packed qkv weight '\(q.weight)' has \(packed[1]) outputs, but \(heads) heads and \(kvHeads) kv heads of \(headDim) make \(attentionWidth) + 2 x \(kvWidth)")
                }
                // A Split of the packed value into q, k and v (onnxruntime-genai's Qwen3) must cut
                // it at those widths, on the last axis.
                if let split = match.node("qkvSplit") {
                    let sizes = split.inputs.count > 1 ? try matcher.constantTensor(split.inputs[1])?.int64Values() : nil
                    let axis = split.intAttribute("axis") ?? 0
                    guard sizes == [Int64(attentionWidth), Int64(kvWidth), Int64(kvWidth)], axis == -1 || axis == 2 else {
                        throw fail("'\(split.name ?? "")' splits the packed qkv into \(sizes.map { "\($0)" } ?? "run-time sizes") on axis \(axis); "
                            + "\(heads) heads and \(kvHeads) kv heads of \(headDim) need [\(attentionWidth), \(kvWidth), \(kvWidth)] on the last axis")
                    }
                }
            } else {
                q = try projection("q")
                k = try projection("k")
                v = try projection("v")
                guard let kDims = shapeOf(k), kDims.count == 2, (1 ... widthLimit).contains(kDims[1]) else {
                    throw fail("k_proj weight is not a 2-D initializer")
                }
                let kvWidth = Int(kDims[1])
                guard kvWidth % headDim == 0 else {
                    throw fail("k_proj's width \(kvWidth) is not a multiple of head_dim \(headDim) (\(evidence.headDimSources))")
                }
                kvHeads = kvWidth / headDim
                if let (source, count) = evidence.kvHeads.first(where: { $0.1 != kvHeads }) {
                    throw fail("\(source) says \(count) kv heads, but k_proj's width \(kvWidth) / head_dim \(headDim) is \(kvHeads)")
                }
            }
            if let rotary = evidence.rotaryDim, rotary > headDim || rotary % 2 != 0 {
                throw fail("the RoPE tables rotate \(rotary) dims, which does not fit head_dim \(headDim) (\(evidence.headDimSources))")
            }
            let layerDims = ModelDimensions(numLayers: numbered.count, hiddenSize: hidden, numHeads: heads, numKVHeads: kvHeads, headDim: headDim)
            // The match is only as good as the shapes agree: every weight must fit the dims.
            func expect(_ projection: ProjectionWeight, _ role: String, out: Int, in inFeatures: Int) throws {
                guard let shape = shapeOf(projection), shape.count == 2 else { return }
                let stored = (inFeatures: Int(shape[0]), outFeatures: Int(shape[1]))
                let count = projection.outputCount ?? stored.outFeatures
                guard stored.inFeatures == inFeatures, count == out else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number,
                        missing: "\(role) weight '\(projection.weight)' is \(shape), which does not fit hidden \(hidden), "
                            + "\(heads) heads, \(kvHeads) kv heads of \(headDim)")
                }
            }
            guard heads > 0, kvHeads > 0, heads % kvHeads == 0, heads * headDim == attentionWidth else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number,
                    missing: "head counts do not fit: \(heads) heads, \(kvHeads) kv heads of \(headDim) for attention width \(attentionWidth)")
            }
            try expect(q, "q_proj", out: attentionWidth, in: hidden)
            try expect(k, "k_proj", out: kvHeads * headDim, in: hidden)
            try expect(v, "v_proj", out: kvHeads * headDim, in: hidden)
            if let dims, dims != layerDims {
                throw LayerDiscoveryError.inconsistent(file: file, adapter: adapter.name, message: "layer \(number) has dims \(layerDims), layer 0 has \(dims)")
            }
            dims = layerDims

            // The query after RoPE, or how to make it.
            let query: QueryAnchor
            if let tensor = match["query"] {
                query = .tensor(name: tensor)
            } else if let tensor = match["queryMerged"] {
                query = .headsMerged(name: tensor)
            } else if let fusedNode {
                let rotary = FusedRotary(
                    // The query the op rotates: a capture of its own where q is normed first
                    // (Qwen3 by onnxruntime-genai), else the packed qkv whose first features are q.
                    queryBeforeRoPE: try match["queryBeforeRoPE"] ?? match["qkv"] ?? need("qkvNode", "no packed qkv input of the fused attention"),
                    querySliceCount: attentionWidth,
                    cosCache: try need("cosCache", "no cos cache on the fused attention"),
                    sinCache: try need("sinCache", "no sin cache on the fused attention"),
                    interleaved: (fusedNode.intAttribute("rotary_interleaved") ?? 0) != 0,
                    seqlensK: try need("seqlensK", "no seqlens_k on the fused attention"),
                    totalSequenceLength: try need("totalSequenceLength", "no total_sequence_length on the fused attention"),
                    attentionNode: fusedNode.name ?? "")
                guard (fusedNode.intAttribute("do_rotary") ?? 0) != 0 else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "fused attention without do_rotary: RoPE is elsewhere")
                }
                query = .fused(rotary: rotary)
            } else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "no query after RoPE")
            }

            // Input norm at the normalised input.
            let normed = try need("normedInput", "no normalised input feeding the projections")
            // None where the projections read the residual stream itself (OLMo-2): checked below,
            // once the residual Add names the stream.
            let inputNormResult = Result { try norm(at: normed, matcher: matcher, adapter: adapter, file: file, layer: number, role: "input RMSNorm") }
            let inputNorm = try? inputNormResult.get()

            // Residual stream.
            let oOutput = oNode.outputs[0]
            let residualInput: String, attentionResidual: String
            var postNorm: RMSNormDescription?
            var attentionOutputNorm: RMSNormDescription?
            switch adapter.residual {
            case .add:
                // o_proj's output joins the residual stream directly, scaled by a constant first
                // (Granite's residual_multiplier), or through a norm of its own (the sandwich
                // norms of Gemma 2/3 and OLMo-2's post norm).
                var joined = scaledBranch(oOutput, matcher: matcher)
                if index.consumers(of: joined).first(where: { $0.op == "Add" && $0.inputs.count == 2 }) == nil,
                   let norm = normDownstream(of: joined, matcher: matcher, adapter: adapter, file: file, layer: number) {
                    attentionOutputNorm = norm
                    joined = norm.output
                }
                guard let add = index.consumers(of: joined).first(where: { $0.op == "Add" && $0.inputs.count == 2 }) else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "no Add joins o_proj to the residual stream")
                }
                residualInput = add.inputs[0] == joined ? add.inputs[1] : add.inputs[0]
                attentionResidual = add.outputs[0]
                postNorm = normDownstream(of: attentionResidual, matcher: matcher, adapter: adapter, file: file, layer: number)
            case .skipNorm:
                // Scaled by a constant first (Granite), or through a norm of o_proj's own
                // (Gemma 2's post_attention_layernorm).
                var joined = scaledBranch(oOutput, matcher: matcher)
                if !index.consumers(of: joined).contains(where: { $0.op.hasPrefix("Skip") }),
                   let norm = normDownstream(of: joined, matcher: matcher, adapter: adapter, file: file, layer: number) {
                    attentionOutputNorm = norm
                    joined = norm.output
                }
                guard let skip = index.consumers(of: joined).first(where: { $0.op.hasPrefix("Skip") }) else {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: "no skip-norm joins o_proj to the residual stream")
                }
                let normNode = index.producer(of: normed)
                residualInput = (normNode?.outputs.count ?? 0) > 3 && !(normNode?.outputs[3].isEmpty ?? true) ? normNode!.outputs[3] : (normNode?.inputs.first ?? "")
                attentionResidual = skip.outputs.count > 3 ? skip.outputs[3] : ""
                postNorm = try? norm(at: skip.outputs[0], matcher: matcher, adapter: adapter, file: file, layer: number, role: "post-attention RMSNorm")
            }
            if inputNorm == nil, normed != residualInput {
                _ = try inputNormResult.get()   // neither a norm nor the residual stream: the norm's error
            }
            var mlp: [String: ProjectionWeight] = [:]
            var activations: [String] = []
            var residualOutput = ""
            var mlpOutputNorm: RMSNormDescription?
            // The MLP reads the norm after attention, or (OLMo-2: no norm before the MLP) the
            // residual stream itself.
            if let mlpMatch = postNorm.flatMap({ mlpByInput[$0.output] }) ?? (postNorm == nil ? mlpByInput[attentionResidual] : nil) {
                for role in ["gate", "up", "down", "gateUp"] {
                    if let weight = mlpMatch["\(role)Weight"], let node = mlpMatch.node("\(role)Node"), let name = node.name {
                        mlp[role == "gateUp" ? "gate_up_proj" : "\(role)_proj"] = ProjectionWeight(
                            weight: weight, layout: .inputMajor, node: name, storage: try storage(of: node, weight: weight, matcher: matcher, fail: fail))
                    }
                }
                // A packed gate_up_proj is chunked gate first: the gate's Slice starts at 0 (a
                // Split in two gives the gate as its first output).
                if let split = mlpMatch.node("gateSplit"), split.outputs.count != 2 {
                    throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number,
                        missing: "the packed gate_up_proj is split in \(split.outputs.count) by '\(split.name ?? "")', not in 2")
                }
                if mlpMatch["gateUpWeight"] != nil, mlpMatch.node("gateSplit") == nil {
                    let start = try mlpMatch["gateSliceStart"].flatMap { try matcher.constantTensor($0)?.int64Values().first }
                    guard start == 0 else {
                        throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: number,
                            missing: "the gate of the packed gate_up_proj is sliced from \(start.map(String.init) ?? "a run-time start"), not 0 (gate first, then up)")
                    }
                }
                activations = ["activation", "activationGate"].compactMap { mlpMatch.node($0)?.name }
                if var down = mlpMatch.node("downNode")?.outputs.first.map({ scaledBranch($0, matcher: matcher) }) {
                    // down_proj's output may be scaled (Granite) or pass through a norm of its own
                    // first (Gemma 2/3, OLMo-2).
                    if !index.consumers(of: down).contains(where: { $0.op == "Add" || $0.op.hasPrefix("Skip") }),
                       let norm = normDownstream(of: down, matcher: matcher, adapter: adapter, file: file, layer: number) {
                        mlpOutputNorm = norm
                        down = norm.output
                    }
                    if let add = index.consumers(of: down).first(where: { $0.op == "Add" || $0.op.hasPrefix("Skip") }) {
                        residualOutput = add.op == "Add" ? add.outputs[0] : (add.outputs.count > 3 ? add.outputs[3] : add.outputs[0])
                    }
                }
            }
            layers.append(LayerDescription(
                index: number, residualInput: residualInput, residualOutput: residualOutput, inputNorm: inputNorm,
                q: q, k: k, v: v, query: query, attentionOutput: try need("attentionOutput", "no attention output before o_proj"),
                o: ProjectionWeight(weight: oWeightName, layout: .inputMajor, node: oNode.name ?? "", storage: oStorage),
                attentionResidual: attentionResidual, postAttentionNorm: postNorm, mlp: mlp, activationNodes: activations,
                attentionScale: try attentionScale(match, fused: fusedNode, matcher: matcher),
                qNorm: try headNorm("q", match, matcher: matcher), kNorm: try headNorm("k", match, matcher: matcher)))
            layers[layers.count - 1].attentionOutputNorm = attentionOutputNorm
            layers[layers.count - 1].mlpOutputNorm = mlpOutputNorm
            layers[layers.count - 1].attentionSoftcap = try softcap(match, fused: fusedNode, matcher: matcher, fail: fail)
        }
        guard var dimensions = dims else {
            throw LayerDiscoveryError.noAdapterMatched(file: file, findings: ["\(adapter.name): 0 layers"])
        }
        if let gate = layers.first?.mlp["gate_proj"], let width = outputWidth(gate, index: index) {
            dimensions.intermediateSize = width
        } else if let packed = layers.first?.mlp["gate_up_proj"], let width = outputWidth(packed, index: index) {
            dimensions.intermediateSize = width / 2
        }
        let embedding = graph.nodes.first { $0.op == "Gather" && index.initializer($0.inputs.first ?? "")?.dims.count == 2 }
        if let table = embedding.flatMap({ index.initializer($0.inputs[0]) }), Int(table.dims[1]) == dimensions.hiddenSize {
            dimensions.vocabSize = Int(table.dims[0])
        }
        let normOffset = embedding.flatMap { gemmaNormOffset(embedding: $0, hidden: dimensions.hiddenSize, matcher: matcher) }
        var parameters = canonicalParameters(layers, embedding: embedding?.inputs.first, index: index, slicedPacked: slicedPacked,
                                             normOffset: normOffset)
        parameters += headParameters(dimensions, matcher: matcher, adapter: adapter, file: file, known: Set(parameters.map(\.onnxName)),
                                     normOffset: normOffset)
        parameters = exportNamed(parameters, naming: adapter.moduleNaming, index: index)
        return ModelLayout(adapter: adapter.name, dimensions: dimensions, layers: layers, floatType: floatType, parameters: parameters)
    }

    /// The storage of a projection's weight, its errors as this layer's.
    static func storage(of node: Node, weight: String, matcher: PatternMatcher,
                        fail: (String) -> LayerDiscoveryError) throws -> ProjectionStorage? {
        do {
            return try ProjectionStorage.read(node: node, weight: weight, matcher: matcher)
        } catch let error as UnsupportedStorage {
            throw fail(error.description)
        }
    }

    /// The float type a quantized projection computes in: its scales' type.
    static func floatTypeOf(_ storage: ProjectionStorage, index: GraphIndex) -> Int32? {
        switch storage {
        case .blockwise(let q): return index.initializer(q.scales)?.dataType
        case .linear(let q): return index.initializer(q.scale)?.dataType
        }
    }

    /// A projection's whole output width, whatever its storage.
    static func outputWidth(_ projection: ProjectionWeight, index: GraphIndex) -> Int? {
        if let storage = projection.storage { return storage.shape.outFeatures }
        guard let weight = index.initializer(projection.weight), weight.dims.count == 2 else { return nil }
        return Int(weight.dims[1])
    }

    /// The RMSNorm that reads `value`: the norm pattern tried at the values a few nodes
    /// downstream of it (a decomposed norm's result is 3-5 nodes away), nearest first.
    static func normDownstream(of value: String, matcher: PatternMatcher, adapter: Adapter, file: String, layer: Int) -> RMSNormDescription? {
        let index = matcher.index
        var frontier = [value]
        var seen: Set<String> = [value]
        for _ in 0 ..< 6 {
            var next: [String] = []
            for current in frontier {
                for consumer in index.consumers(of: current) {
                    for output in consumer.outputs where !output.isEmpty && seen.insert(output).inserted {
                        if let found = try? norm(at: output, matcher: matcher, adapter: adapter, file: file, layer: layer,
                                                 role: "post-attention RMSNorm"),
                           found.input == value || index.producer(of: found.input).map({ $0.op == "Cast" && $0.inputs.first == value }) == true {
                            // A norm that casts after its weight (OLMo-2) ends at that Cast.
                            let consumers = index.consumers(of: found.output)
                            if consumers.count == 1, consumers[0].op == "Cast", let cast = consumers[0].outputs.first,
                               let whole = try? norm(at: cast, matcher: matcher, adapter: adapter, file: file, layer: layer, role: "post-attention RMSNorm"),
                               whole.weight == found.weight {
                                return whole
                            }
                            return found
                        }
                        next.append(output)
                    }
                }
            }
            frontier = next
        }
        return nil
    }

    static func norm(at value: String, matcher: PatternMatcher, adapter: Adapter, file: String, layer: Int, role: String) throws -> RMSNormDescription {
        switch matcher.match(adapter.inputNorm, at: value) {
        case .failure(let failure):
            throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: layer, missing: "no \(role) at '\(value)': \(failure)")
        case .success(let match):
            guard let weight = match["normWeight"] else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: layer, missing: "\(role) has no weight")
            }
            var epsilon: Float?
            if let name = match["epsilon"] { epsilon = try matcher.constantTensor(name)?.floatValues().first }
            if epsilon == nil, let node = match.node("normNode") { epsilon = node.floatAttribute("epsilon") }
            guard let epsilon else {
                throw LayerDiscoveryError.incompleteLayer(file: file, adapter: adapter.name, layer: layer, missing: "\(role) has no epsilon")
            }
            return RMSNormDescription(weight: weight, epsilon: epsilon, input: match["normInput"] ?? "", output: value)
        }
    }

    /// The language-model head (a MatMul by a [hidden, vocab] constant) and the final norm
    /// before it.
    static func headParameters(_ dims: ModelDimensions, matcher: PatternMatcher, adapter: Adapter, file: String,
                               known: Set<String>, normOffset: Double? = nil) -> [CanonicalParameter] {
        guard let vocab = dims.vocabSize else { return [] }
        let index = matcher.index
        // The last projection from hidden to vocab, in any storage.
        let projection = Pattern.op("MatMul", [.value("input"), .constant(capture: "weight", value: nil, tolerance: 0)])
        let roots = PatternMatcher.rootOps(projection) ?? []
        var found: (input: String, weight: ProjectionWeight)?
        for node in index.graph.nodes.reversed() where roots.contains(node.op) {
            guard let output = node.outputs.first, case .success(let match) = matcher.match(projection, at: output),
                  let input = match["input"], let weight = match["weight"] else { continue }
            let storage = try? ProjectionStorage.read(node: node, weight: weight, matcher: matcher)
            let candidate = ProjectionWeight(weight: weight, layout: .inputMajor, node: node.name ?? "", storage: storage)
            let shape = storage.map { [Int64($0.shape.inFeatures), Int64($0.shape.outFeatures)] } ?? index.initializer(weight)?.dims
            if shape == [Int64(dims.hiddenSize), Int64(vocab)] {
                found = (input, candidate)
                break
            }
        }
        guard let (headInput, head) = found else { return [] }
        var result: [CanonicalParameter] = []
        if !known.contains(head.weight) {
            result.append(CanonicalParameter(onnxName: head.weight, canonicalName: "lm_head.weight", transform: weightTransform(head)))
            for (tensor, suffix) in head.storage?.parameterTensors ?? [] where !known.contains(tensor) {
                result.append(CanonicalParameter(onnxName: tensor, canonicalName: "lm_head.weight.\(suffix)", transform: .identity))
            }
        }
        if let norm = try? norm(at: headInput, matcher: matcher, adapter: adapter, file: file, layer: dims.numLayers, role: "final norm"),
           index.initializer(norm.weight) != nil, !known.contains(norm.weight) {
            result.append(CanonicalParameter(onnxName: norm.weight, canonicalName: "model.norm.weight", transform: ParameterTransform(offset: normOffset)))
        }
        return result
    }

    /// PyTorch names for the weights discovery identified.
    /// A packed qkv weight in `slicedPacked` is sliced by the graph itself, so the PyTorch
    /// module was packed (Phi-3's qkv_proj); one a fused op reads whole was packed by the
    /// exporter from separate q/k/v projections (its parts). `normOffset` is 1 where the norm
    /// weights store 1 + w (Gemma).
    static func canonicalParameters(_ layers: [LayerDescription], embedding: String?, index: GraphIndex,
                                    slicedPacked: Set<String> = [], normOffset: Double? = nil) -> [CanonicalParameter] {
        var result: [CanonicalParameter] = []
        var seen = Set<String>()
        func add(_ onnx: String?, _ canonical: String, _ transform: ParameterTransform) {
            guard let onnx, !onnx.isEmpty, index.initializer(onnx) != nil, seen.insert(onnx).inserted else { return }
            result.append(CanonicalParameter(onnxName: onnx, canonicalName: canonical, transform: transform))
        }
        // A quantized weight's scales and zero points are part of its storage: named after it.
        func addStorage(_ projection: ProjectionWeight, _ canonical: String) {
            for (tensor, suffix) in projection.storage?.parameterTensors ?? [] { add(tensor, "\(canonical).\(suffix)", .identity) }
        }
        add(embedding, "model.embed_tokens.weight", .identity)
        // Norm weights as the graph stores them: w, or (Gemma) the folded 1 + w.
        let norm = ParameterTransform(offset: normOffset)
        for layer in layers {
            let prefix = "model.layers.\(layer.index)"
            add(layer.inputNorm?.weight, "\(prefix).input_layernorm.weight", norm)
            // With a norm after o_proj (Gemma 2/3, OLMo-2), that one is post_attention_layernorm
            // and the norm before the MLP is pre_feedforward_layernorm.
            add(layer.attentionOutputNorm?.weight, "\(prefix).post_attention_layernorm.weight", norm)
            add(layer.postAttentionNorm?.weight, "\(prefix).\(layer.attentionOutputNorm == nil ? "post_attention" : "pre_feedforward")_layernorm.weight", norm)
            add(layer.mlpOutputNorm?.weight, "\(prefix).post_feedforward_layernorm.weight", norm)
            add(layer.qNorm?.weight, "\(prefix).self_attn.q_norm.weight", norm)
            add(layer.kNorm?.weight, "\(prefix).self_attn.k_norm.weight", norm)
            let projections = [("q", layer.q), ("k", layer.k), ("v", layer.v)]
            if layer.q.weight == layer.k.weight, slicedPacked.contains(layer.q.weight) {
                add(layer.q.weight, "\(prefix).self_attn.qkv_proj.weight", layer.q.layout == .inputMajor ? .transposed : .identity)
                add(layer.q.bias, "\(prefix).self_attn.qkv_proj.bias", .identity)
            } else if layer.q.weight == layer.k.weight {
                // One packed tensor: its q, k and v rows are the three PyTorch projections.
                let ordered = projections.sorted { ($0.1.outputStart ?? 0) < ($1.1.outputStart ?? 0) }
                func parts(_ suffix: String) -> [ParameterTransform.Part]? {
                    let parts = ordered.compactMap { role, projection in
                        projection.outputCount.map { ParameterTransform.Part(name: "\(prefix).self_attn.\(role)_proj.\(suffix)", rows: $0) }
                    }
                    return parts.count == 3 ? parts : nil
                }
                add(layer.q.weight, "\(prefix).self_attn.qkv_proj.weight", weightTransform(layer.q, parts: parts("weight")))
                addStorage(layer.q, "\(prefix).self_attn.qkv_proj.weight")
                add(layer.q.bias, "\(prefix).self_attn.qkv_proj.bias", ParameterTransform(parts: parts("bias")))
            } else {
                for (role, projection) in projections {
                    add(projection.weight, "\(prefix).self_attn.\(role)_proj.weight", weightTransform(projection))
                    addStorage(projection, "\(prefix).self_attn.\(role)_proj.weight")
                    add(projection.bias, "\(prefix).self_attn.\(role)_proj.bias", .identity)
                }
            }
            add(layer.o.weight, "\(prefix).self_attn.o_proj.weight", weightTransform(layer.o))
            addStorage(layer.o, "\(prefix).self_attn.o_proj.weight")
            for (role, projection) in layer.mlp.sorted(by: { $0.key < $1.key }) {
                add(projection.weight, "\(prefix).mlp.\(role).weight", weightTransform(projection))
                addStorage(projection, "\(prefix).mlp.\(role).weight")
            }
        }
        return result
    }

    /// How a projection's stored weight is made from `nn.Linear.weight` [out, in]: transposed
    /// where it is stored [in, out] (a float or int8 MatMul operand; MatMulNBits stores rows
    /// per output), quantized where its storage is.
    static func weightTransform(_ projection: ProjectionWeight, parts: [ParameterTransform.Part]? = nil) -> ParameterTransform {
        let transpose = projection.storage?.storedTransposed ?? (projection.layout == .inputMajor)
        return ParameterTransform(transpose: transpose, parts: parts, quantization: projection.storage)
    }
}

extension LayerDiscovery {
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

    /// `parameters` under the names the export itself gives their modules, where the adapter
    /// says how to read them (`moduleName`) and the graph names every one: each parameter is
    /// `module.weight` (or `.bias`) of the one module whose nodes read it, less the prefix of
    /// the wrapper the exporter ran (the part before `model.layers.N.` of the layers' modules,
    /// which must be one prefix for all). A family whose modules are not LLaMA's (InternLM2's
    /// attention.wqkv, feed_forward.w1, tok_embeddings, output) keeps its own names; where the
    /// graph does not name every module, the names discovery gave stay, all of them.
    static func exportNamed(_ parameters: [CanonicalParameter], naming: LayerNumbering?, index: GraphIndex) -> [CanonicalParameter] {
        guard let naming, !parameters.isEmpty else { return parameters }
        var paths: [String] = []
        for parameter in parameters {
            let readers = index.consumers(of: parameter.onnxName)
            let modules = Set(readers.map { naming.capture(of: $0)?.split(separator: "/").joined(separator: ".") })
            guard parameter.transform.parts == nil, modules.count == 1, let module = modules.first ?? nil, !module.isEmpty,
                  let leaf = parameter.canonicalName.split(separator: ".").last else { return parameters }
            paths.append("\(module).\(leaf)")
        }
        var wrapper: String?
        for (parameter, path) in zip(parameters, paths) where parameter.canonicalName.hasPrefix("model.layers.") {
            let layer = parameter.canonicalName.split(separator: ".").prefix(3).joined(separator: ".") + "."
            guard let found = path.range(of: layer) else { return parameters }
            let prefix = String(path[..<found.lowerBound])
            guard prefix.isEmpty || prefix.hasSuffix("."), wrapper == nil || wrapper == prefix else { return parameters }
            wrapper = prefix
        }
        guard let wrapper, paths.allSatisfy({ $0.hasPrefix(wrapper) }) else { return parameters }
        let names = paths.map { String($0.dropFirst(wrapper.count)) }
        guard Set(names).count == names.count else { return parameters }
        return zip(parameters, names).map { CanonicalParameter(onnxName: $0.onnxName, canonicalName: $1, transform: $0.transform) }
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
