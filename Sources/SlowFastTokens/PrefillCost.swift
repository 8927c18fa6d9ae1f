import SlowFastValues
import SlowFastIR
/// Which sequence positions query the slow tokens in a hybrid layer.
public enum CrossAttentionQueries: String, Codable, CaseIterable, Sendable {
    /// Only text tokens (system, user, response), as in the release: fast visual tokens and
    /// padding do not query (docs/DESIGN.md §1 and §6). Cost O(L_text * N_s * d).
    case text
    /// Every position of the sequence (a rewritten graph with no query mask computes this).
    case all
}

/// One video question: frames, visual tokens per frame, text tokens.
public struct VideoWorkload: Codable, Equatable, Sendable {
    public var frames: Int
    /// Tokens per frame after the projector's 2x2 pool: 81 in the release (576 px, ConvNeXt
    /// stride 32 = 18x18, pooled to 9x9). The baseline puts these in the sequence; the
    /// slow-fast model uses them as slow tokens.
    public var tokensPerFrame: Int
    /// System prompt, question and answer prefix.
    public var textTokens: Int

    public init(frames: Int, tokensPerFrame: Int = 81, textTokens: Int = 128) {
        self.frames = frames
        self.tokensPerFrame = tokensPerFrame
        self.textTokens = textTokens
    }
}

/// How the cross-attention is computed, for memory: the FLOPs are the same.
public enum CrossAttentionKernel: String, Codable, CaseIterable, Sendable {
    /// MatMul, Softmax, MatMul: the [H, L_q, N_s] score tensor is materialised.
    case decomposed
    /// A fused attention op (Attention, MultiHeadAttention): scores are not kept.
    case fused
}

/// The slow-fast side of a comparison.
public struct SlowFastSetup: Codable, Equatable, Sendable {
    public var fast: FastTokenConfig
    public var hybridLayers: [Int]
    public var queries: CrossAttentionQueries
    public var attention: CrossAttentionKernel

    public init(fast: FastTokenConfig = TokenPreset.s2t4.fastTokens, hybridLayers: [Int], queries: CrossAttentionQueries = .text,
                attention: CrossAttentionKernel = .decomposed) {
        self.fast = fast
        self.hybridLayers = hybridLayers
        self.queries = queries
        self.attention = attention
    }

    /// The release's choice: layers range(0, numLayers, 8).
    public static func release(numLayers: Int, fast: FastTokenConfig = TokenPreset.s2t4.fastTokens) -> SlowFastSetup {
        SlowFastSetup(fast: fast, hybridLayers: Array(stride(from: 0, to: numLayers, by: 8)))
    }
}

/// FLOPs of a prefill, by part.
public struct FlopBreakdown: Codable, Equatable, Sendable {
    public var projections: Double = 0
    public var selfAttention: Double = 0
    public var mlp: Double = 0
    /// Logits of the last position only (what generation needs): 2 * d * vocab.
    public var lmHead: Double = 0
    public var slowKVProjection: Double = 0
    public var crossAttention: Double = 0
    public var gate: Double = 0
    public var total: Double = 0
}

/// Memory of a prefill in bytes, by part.
public struct MemoryBreakdown: Codable, Equatable, Sendable {
    public var weights: Double = 0
    /// K and V of every layer for the sequence: layers * 2 * L * kv * bytes.
    public var kvCache: Double = 0
    /// K_x and V_x of the slow tokens, kept for decode steps: hybrid * 2 * N_s * kv * bytes.
    public var slowKVCache: Double = 0
    /// Peak transient activations of one layer at a time (inference keeps no activations
    /// across layers): see `PrefillCost` for the formula.
    public var activationsPeak: Double = 0
    public var total: Double = 0
}

/// The cost of one generated token (one decode step).
public struct DecodeStepCost: Codable, Equatable, Sendable {
    /// Positions already in the KV cache.
    public var pastLength: Int
    public var slowTokens: Int
    /// For slow-fast: `cached` (slow K/V fed as inputs) or `recomputed` (kv_proj every step).
    public var slowKV: String?
    public var flops: FlopBreakdown
}

/// The cost of one prefill of one variant.
public struct PrefillCost: Codable, Equatable, Sendable {
    public enum Variant: String, Codable, Sendable { case baseline, slowFast = "slow-fast" }
    public var variant: Variant
    public var frames: Int
    /// Length of the self-attention sequence: text + visual tokens in it.
    public var sequenceLength: Int
    public var visualTokensInSequence: Int
    /// Tokens reaching the LLM only through cross-attention (0 for the baseline).
    public var slowTokens: Int
    public var fastFrames: Int?
    public var flops: FlopBreakdown
    public var memory: MemoryBreakdown
}

/// The prefill compute and memory model.
///
/// Conventions: a multiply-add is 2 FLOPs; self-attention counts the full L x L score
/// matrix (dense kernels; a causal-skipping kernel would do about half); norms, RoPE,
/// softmax and elementwise ops are not counted; the LM head is counted for the last position
/// only. Activation peak (elements, times bytes per element), one layer at a time:
///   plain layer:  2*L*d + max(L*(H*hd + 2*kv) + H*L*L + L*H*hd,  3*L*I)
///   hybrid layer: 2*L*d + L*(H*hd + 2*kv) + H*L*L + L*H*hd          (self-attention kept)
///                 + N_s*d + 2*N_s*kv + H*L_q*N_s + L*H*hd            (slow path; the H*L_q*N_s
///                 scores only for the decomposed form)
///   slow-fast adds N_s*d for the slow-token input held through the whole prefill.
public enum CostModel {
    /// The baseline: every frame's tokens in the sequence.
    public static func baseline(_ shape: DecoderShape, _ workload: VideoWorkload) throws -> PrefillCost {
        try check(workload)
        let visual = workload.frames * workload.tokensPerFrame
        let length = workload.textTokens + visual
        var flops = decoderFlops(shape, sequenceLength: length)
        flops.total = flops.projections + flops.selfAttention + flops.mlp + flops.lmHead
        var memory = MemoryBreakdown()
        let bytes = Double(shape.bytesPerElement)
        memory.weights = shape.parameters * (shape.weightBytesPerParameter ?? bytes)
        memory.kvCache = Double(shape.dimensions.numLayers) * 2 * Double(length) * shape.kvWidth * bytes
        memory.activationsPeak = plainLayerActivations(shape, length) * bytes
        memory.total = memory.weights + memory.kvCache + memory.activationsPeak
        return PrefillCost(variant: .baseline, frames: workload.frames, sequenceLength: length,
                           visualTokensInSequence: visual, slowTokens: 0, fastFrames: nil, flops: flops, memory: memory)
    }

    /// The slow-fast model: fast tokens in the sequence, every frame's tokens as slow
    /// tokens through the hybrid layers.
    public static func slowFast(_ shape: DecoderShape, _ workload: VideoWorkload, _ setup: SlowFastSetup) throws -> PrefillCost {
        try check(workload)
        for layer in setup.hybridLayers where layer < 0 || layer >= shape.dimensions.numLayers {
            throw CostModelError.hybridLayerOutOfRange(layer: layer, layers: shape.dimensions.numLayers)
        }
        let plan = try fastPlan(workload, setup.fast)
        let fastTokens = plan.numFastTokens
        let slowTokens = workload.frames * workload.tokensPerFrame
        let length = workload.textTokens + fastTokens
        let querying = setup.queries == .text ? workload.textTokens : length
        let hybridCount = Double(Set(setup.hybridLayers).count)

        var flops = decoderFlops(shape, sequenceLength: length)
        let hybrid = HybridLayerFlops(shape, sequenceLength: length, queryingPositions: querying, slowTokens: slowTokens)
        flops.slowKVProjection = hybridCount * hybrid.kvProjection
        flops.crossAttention = hybridCount * hybrid.crossAttention
        flops.gate = hybridCount * hybrid.gate
        flops.total = flops.projections + flops.selfAttention + flops.mlp + flops.lmHead
            + flops.slowKVProjection + flops.crossAttention + flops.gate

        let bytes = Double(shape.bytesPerElement)
        var memory = MemoryBreakdown()
        memory.weights = (shape.parameters + hybridCount * shape.parametersPerHybridLayer) * (shape.weightBytesPerParameter ?? bytes)
        memory.kvCache = Double(shape.dimensions.numLayers) * 2 * Double(length) * shape.kvWidth * bytes
        memory.slowKVCache = hybridCount * 2 * Double(slowTokens) * shape.kvWidth * bytes
        let L = Double(length), Ns = Double(slowTokens), H = Double(shape.dimensions.numHeads)
        let selfAttention = L * (shape.qWidth + 2 * shape.kvWidth) + H * L * L + L * shape.qWidth
        let scores = setup.attention == .decomposed ? H * Double(querying) * Ns : 0
        let slowPath = Ns * shape.d + 2 * Ns * shape.kvWidth + scores + L * shape.qWidth
        let hybridPeak = 2 * L * shape.d + selfAttention + slowPath
        let peak = Ns * shape.d + (hybridCount > 0 ? max(plainLayerActivations(shape, length), hybridPeak) : plainLayerActivations(shape, length))
        memory.activationsPeak = peak * bytes
        memory.total = memory.weights + memory.kvCache + memory.slowKVCache + memory.activationsPeak
        return PrefillCost(variant: .slowFast, frames: workload.frames, sequenceLength: length,
                           visualTokensInSequence: fastTokens, slowTokens: slowTokens, fastFrames: plan.fastFrames,
                           flops: flops, memory: memory)
    }

    /// One generated token after a prefill of `pastLength` positions: FLOPs per token.
    /// With `slow` (hybrid layers and slow tokens), each hybrid layer adds the new token's
    /// cross-attention and gate, plus `kv_proj` over every slow token when the slow K/V are
    /// recomputed at each step (`--slow-kv inline`) instead of cached (`--slow-kv inputs`).
    public static func decodeStep(_ shape: DecoderShape, pastLength: Int, hybridLayers: Int = 0, slowTokens: Int = 0,
                                  slowKVCached: Bool = true) -> DecodeStepCost {
        let layer = LayerFlops(shape, sequenceLength: 1)
        let layers = Double(shape.dimensions.numLayers)
        var flops = FlopBreakdown()
        flops.projections = layers * layer.projections
        // One query against past + 1 keys: 2 * 2 * (P + 1) * H*hd per layer.
        flops.selfAttention = layers * 2 * 2 * Double(pastLength + 1) * shape.qWidth
        flops.mlp = layers * layer.mlp
        flops.lmHead = 2 * shape.d * Double(shape.vocabSize)
        if hybridLayers > 0 {
            let hybrid = HybridLayerFlops(shape, sequenceLength: 1, queryingPositions: 1, slowTokens: slowTokens)
            flops.crossAttention = Double(hybridLayers) * hybrid.crossAttention
            flops.gate = Double(hybridLayers) * hybrid.gate
            flops.slowKVProjection = slowKVCached ? 0 : Double(hybridLayers) * hybrid.kvProjection
        }
        flops.total = flops.projections + flops.selfAttention + flops.mlp + flops.lmHead + flops.slowKVProjection + flops.crossAttention + flops.gate
        return DecodeStepCost(pastLength: pastLength, slowTokens: hybridLayers > 0 ? slowTokens : 0,
                              slowKV: hybridLayers == 0 ? nil : (slowKVCached ? "cached" : "recomputed"), flops: flops)
    }

    /// The fast-token plan for a workload: the slow grid is taken square (9x9 for 81) when
    /// tokensPerFrame is a square, else one row (then spatial pooling is refused).
    public static func fastPlan(_ workload: VideoWorkload, _ fast: FastTokenConfig) throws -> TokenPlan {
        var side = Int(Double(workload.tokensPerFrame).squareRoot())
        while side * side > workload.tokensPerFrame { side -= 1 }
        while (side + 1) * (side + 1) <= workload.tokensPerFrame { side += 1 }
        let square = side * side == workload.tokensPerFrame
        if !square && fast.spatialPool > 1 {
            throw CostModelError.invalidWorkload("fast spatial pooling needs a square token grid; \(workload.tokensPerFrame) tokens per frame is not a square")
        }
        let spec = TokenSpec(frames: workload.frames, height: square ? side : 1, width: square ? side : workload.tokensPerFrame,
                             dim: 1, slowPool: 1, fast: fast)
        return try TokenPlan(spec)
    }

    static func check(_ workload: VideoWorkload) throws {
        guard workload.frames >= 1, workload.tokensPerFrame >= 1, workload.textTokens >= 0 else {
            throw CostModelError.invalidWorkload("frames and tokens per frame must be at least 1, text tokens at least 0 (got \(workload.frames), \(workload.tokensPerFrame), \(workload.textTokens))")
        }
    }

    static func decoderFlops(_ shape: DecoderShape, sequenceLength: Int) -> FlopBreakdown {
        let layer = LayerFlops(shape, sequenceLength: sequenceLength)
        let layers = Double(shape.dimensions.numLayers)
        var flops = FlopBreakdown()
        flops.projections = layers * layer.projections
        flops.selfAttention = layers * layer.attention
        flops.mlp = layers * layer.mlp
        flops.lmHead = 2 * shape.d * Double(shape.vocabSize)
        return flops
    }

    static func plainLayerActivations(_ shape: DecoderShape, _ length: Int) -> Double {
        let L = Double(length), H = Double(shape.dimensions.numHeads)
        let attention = L * (shape.qWidth + 2 * shape.kvWidth) + H * L * L + L * shape.qWidth
        return 2 * L * shape.d + max(attention, 3 * L * shape.mlpWidth)
    }
}
