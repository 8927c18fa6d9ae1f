import SlowFastIR
/// The sizes of a decoder LLM, as layer discovery reads them from the graph (and checks
/// them against the weights' shapes).
public struct ModelDimensions: Codable, Equatable, Sendable {
    public var numLayers: Int
    public var hiddenSize: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var intermediateSize: Int?
    public var vocabSize: Int?

    public init(numLayers: Int, hiddenSize: Int, numHeads: Int, numKVHeads: Int, headDim: Int,
                intermediateSize: Int? = nil, vocabSize: Int? = nil) {
        self.numLayers = numLayers
        self.hiddenSize = hiddenSize
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.intermediateSize = intermediateSize
        self.vocabSize = vocabSize
    }

    /// Width of K (and of V): kv_heads * head_dim.
    public var kvWidth: Int { numKVHeads * headDim }
}

/// How a weight is stored in the graph relative to PyTorch's `nn.Linear.weight` [out, in].
public enum WeightLayout: String, Codable, Sendable {
    /// [in, out]: the B operand of a MatMul; the transpose of PyTorch's.
    case inputMajor
    /// [out, in]: PyTorch's own layout (e.g. Gemm with transB = 1).
    case outputMajor
}

/// A linear projection (q/k/v/o, MLP) as the graph stores it.
public struct ProjectionWeight: Codable, Equatable, Sendable {
    /// The initializer holding the weight (possibly shared: packed qkv, deduplicated).
    public var weight: String
    public var layout: WeightLayout
    /// For packed projections: the output features that are this projection's
    /// (`start ..< start + count` along the output axis). nil = all of them.
    public var outputStart: Int?
    public var outputCount: Int?
    /// For a grouped packing (InternLM2's wqkv: per kv head, its query heads, key, value): the
    /// `outputCount` outputs are blocks of `outputBlock` outputs, one every `outputStride`
    /// outputs from `outputStart`. nil = one contiguous block.
    public var outputBlock: Int?
    public var outputStride: Int?
    /// The bias initializer, if any, with the same output slice.
    public var bias: String?
    /// The MatMul/Gemm node computing the projection (MatMulNBits, or the MatMul or Mul whose
    /// output is the projection, for a quantized one).
    public var node: String
    /// How `weight` is stored where it is quantized; nil: a float matrix in `layout`.
    public var storage: ProjectionStorage?

    public init(weight: String, layout: WeightLayout, outputStart: Int? = nil, outputCount: Int? = nil,
                outputBlock: Int? = nil, outputStride: Int? = nil, bias: String? = nil, node: String,
                storage: ProjectionStorage? = nil) {
        self.storage = storage
        self.weight = weight
        self.layout = layout
        self.outputStart = outputStart
        self.outputCount = outputCount
        self.outputBlock = outputBlock
        self.outputStride = outputStride
        self.bias = bias
        self.node = node
    }

    /// The stored output features that are this projection's, in order, as ranges: one
    /// (`start ..< start + count`), or one per block of a grouped packing. `total` is the
    /// stored weight's output width (used where `outputCount` is nil).
    public func outputRanges(total: Int) -> [Range<Int>] {
        let start = outputStart ?? 0
        let count = outputCount ?? (total - start)
        guard let block = outputBlock, let stride = outputStride, block > 0, block < count, count % block == 0 else {
            return [start ..< start + count]
        }
        return (0 ..< count / block).map { start + $0 * stride ..< start + $0 * stride + block }
    }
}

/// A norm over the last axis: an RMSNorm, y = x / sqrt(mean(x^2) + epsilon) * weight, or
/// (`centered`) a LayerNorm, which subtracts the mean first and may add a `bias`.
public struct RMSNormDescription: Codable, Equatable, Sendable {
    public var weight: String
    public var epsilon: Float
    /// The value normalised and the normalised result.
    public var input: String
    public var output: String
    /// LayerNorm's bias (StableLM), where the norm has one.
    public var bias: String?
    /// true for a LayerNorm (x - mean(x) normalised); nil or false for an RMSNorm.
    public var centered: Bool?

    public init(weight: String, epsilon: Float, input: String, output: String, bias: String? = nil, centered: Bool = false) {
        self.weight = weight
        self.epsilon = epsilon
        self.input = input
        self.output = output
        self.bias = bias
        self.centered = centered ? true : nil
    }

    /// Whether the norm subtracts the mean (a LayerNorm).
    public var isCentered: Bool { centered ?? false }
}

/// Where a layer's query after RoPE is, or how to make it.
public enum QueryAnchor: Codable, Equatable, Sendable {
    /// A tensor of the graph laid out [batch, heads, seq, head_dim].
    case tensor(name: String)
    /// A tensor of the graph laid out [batch, seq, heads*head_dim], heads not split: the query a
    /// fused attention op takes rotated by an RoPE op of its own (onnxruntime-genai's
    /// MRotaryEmbedding before GroupQueryAttention; adapters capture it as `queryMerged`).
    case headsMerged(name: String)
    /// RoPE happens inside a fused attention op (GroupQueryAttention with do_rotary): the
    /// query before RoPE, [batch, seq, heads*head_dim] (or a packed qkv value to slice), and
    /// what the op uses to rotate it.
    case fused(rotary: FusedRotary)
}

/// What a fused attention op rotates the query with, so a pass can rotate it the same way.
public struct FusedRotary: Codable, Equatable, Sendable {
    /// The query before RoPE; when `querySliceCount` is set, a packed q|k|v value whose
    /// first `querySliceCount` features (last axis) are the query.
    public var queryBeforeRoPE: String
    public var querySliceCount: Int?
    /// cos and sin caches [max_positions, rotary_dim / 2].
    public var cosCache: String
    public var sinCache: String
    /// Interleaved (GPT-J) or half-split (NeoX, LLaMA/Qwen) rotation.
    public var interleaved: Bool
    /// The attention op's inputs that give each token's position: GroupQueryAttention derives
    /// positions from `seqlens_k` (past + current length - 1 per batch row) and the sequence length.
    public var seqlensK: String
    public var totalSequenceLength: String
    /// The fused attention node.
    public var attentionNode: String

    public init(queryBeforeRoPE: String, querySliceCount: Int?, cosCache: String, sinCache: String,
                interleaved: Bool, seqlensK: String, totalSequenceLength: String, attentionNode: String) {
        self.queryBeforeRoPE = queryBeforeRoPE
        self.querySliceCount = querySliceCount
        self.cosCache = cosCache
        self.sinCache = sinCache
        self.interleaved = interleaved
        self.seqlensK = seqlensK
        self.totalSequenceLength = totalSequenceLength
        self.attentionNode = attentionNode
    }
}

/// Everything a pass needs to know about one decoder layer of a graph.
public struct LayerDescription: Codable, Equatable, Sendable {
    public var index: Int
    /// The residual stream entering the layer ([batch, seq, hidden]) and leaving it.
    public var residualInput: String
    public var residualOutput: String
    /// The norm before attention; nil where the projections read the residual stream itself
    /// (OLMo-2), and the slow tokens enter kv_proj un-normed as well (docs/DESIGN.md §1).
    public var inputNorm: RMSNormDescription?
    public var q: ProjectionWeight
    public var k: ProjectionWeight
    public var v: ProjectionWeight
    public var query: QueryAnchor
    /// Self-attention output before o_proj, heads concatenated: [batch, seq, heads*head_dim].
    public var attentionOutput: String
    public var o: ProjectionWeight
    /// x + o_proj(attention): the residual after attention.
    public var attentionResidual: String
    public var postAttentionNorm: RMSNormDescription?
    /// MLP projections (gate, up, down) and the activation nodes between them.
    public var mlp: [String: ProjectionWeight]
    public var activationNodes: [String]
    /// The factor the layer's self-attention multiplies q·kᵀ by, as the graph holds it; nil
    /// where the graph does not say (1/√head_dim). The cross-attention term scores the slow
    /// keys with the same factor (docs/DESIGN.md §1).
    public var attentionScale: Double?
    /// Per-head RMSNorms over head_dim on the queries and keys before RoPE (Qwen3's q_norm and
    /// k_norm); nil where the layer has none. Slow keys go through `kNorm` (docs/DESIGN.md §1).
    public var qNorm: RMSNormDescription?
    public var kNorm: RMSNormDescription?
    /// Sandwich norms (Gemma 2/3, OLMo-2): the norm between o_proj and the residual Add (the
    /// cross term passes through it as the self-attention output does), and the one between
    /// down_proj and the residual Add. nil where the layer has none.
    public var attentionOutputNorm: RMSNormDescription?
    public var mlpOutputNorm: RMSNormDescription?
    /// Gemma 2's attention logit soft-capping: scores become tanh(s / cap) · cap before the
    /// mask. The cross scores are capped the same way (docs/DESIGN.md §1). nil: no cap.
    public var attentionSoftcap: Double?

    public init(index: Int, residualInput: String, residualOutput: String, inputNorm: RMSNormDescription?,
                q: ProjectionWeight, k: ProjectionWeight, v: ProjectionWeight, query: QueryAnchor,
                attentionOutput: String, o: ProjectionWeight, attentionResidual: String,
                postAttentionNorm: RMSNormDescription?, mlp: [String: ProjectionWeight], activationNodes: [String],
                attentionScale: Double? = nil, qNorm: RMSNormDescription? = nil, kNorm: RMSNormDescription? = nil) {
        self.attentionScale = attentionScale
        self.qNorm = qNorm
        self.kNorm = kNorm
        self.index = index
        self.residualInput = residualInput
        self.residualOutput = residualOutput
        self.inputNorm = inputNorm
        self.q = q
        self.k = k
        self.v = v
        self.query = query
        self.attentionOutput = attentionOutput
        self.o = o
        self.attentionResidual = attentionResidual
        self.postAttentionNorm = postAttentionNorm
        self.mlp = mlp
        self.activationNodes = activationNodes
    }
}

/// A parameter of the original model under its PyTorch name.
public struct CanonicalParameter: Codable, Equatable, Sendable {
    /// The initializer's name in the graph (e.g. `onnx::MatMul_1310`, `val_41`).
    public var onnxName: String
    /// The PyTorch-style name (e.g. `model.layers.3.self_attn.q_proj.weight`).
    public var canonicalName: String
    /// How the ONNX tensor is made from the canonical one(s).
    public var transform: ParameterTransform

    public init(onnxName: String, canonicalName: String, transform: ParameterTransform) {
        self.onnxName = onnxName
        self.canonicalName = canonicalName
        self.transform = transform
    }
}

/// What layer discovery found in a graph: the adapter that matched, dims, every layer.
public struct ModelLayout: Codable, Equatable, Sendable {
    /// Name of the adapter that matched (its file name without extension).
    public var adapter: String
    public var dimensions: ModelDimensions
    public var layers: [LayerDescription]
    /// The float type of hidden states (float32, float16, bfloat16), raw type number.
    public var floatType: Int32
    /// Original initializers discovery could name; the rest are named by the weight map
    /// after their ONNX names.
    public var parameters: [CanonicalParameter]

    public init(adapter: String, dimensions: ModelDimensions, layers: [LayerDescription], floatType: Int32,
                parameters: [CanonicalParameter]) {
        self.adapter = adapter
        self.dimensions = dimensions
        self.layers = layers
        self.floatType = floatType
        self.parameters = parameters
    }
}
