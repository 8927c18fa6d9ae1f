import SlowFastValues
import SlowFastIR
/// The sizes the cost model needs: the decoder's dims with MLP width and vocabulary known.
public struct DecoderShape: Codable, Equatable, Sendable {
    public var dimensions: ModelDimensions
    public var intermediateSize: Int
    public var vocabSize: Int
    /// Input embedding and LM head share one matrix (counted once in the weights).
    public var tiedEmbeddings: Bool
    /// Bytes per weight / activation / cache element (2 for bf16 and fp16).
    public var bytesPerElement: Int
    /// Bytes a weight takes as the model stores it, where that differs from `bytesPerElement`
    /// (a quantized model: int4 codes and their scales come to about 0.56 bytes); nil: the same.
    public var weightBytesPerParameter: Double?

    /// Fails when the dims leave the MLP width or vocabulary unknown.
    public init(_ dimensions: ModelDimensions, tiedEmbeddings: Bool = false, bytesPerElement: Int = 2) throws {
        guard let intermediate = dimensions.intermediateSize else { throw CostModelError.missingDimension("intermediate size") }
        guard let vocab = dimensions.vocabSize else { throw CostModelError.missingDimension("vocabulary size") }
        for (name, value) in [("layers", dimensions.numLayers), ("hidden size", dimensions.hiddenSize),
                              ("heads", dimensions.numHeads), ("kv heads", dimensions.numKVHeads),
                              ("head dim", dimensions.headDim), ("intermediate size", intermediate),
                              ("vocabulary size", vocab), ("bytes per element", bytesPerElement)] where value < 1 {
            throw CostModelError.invalidDimension(name: name, value: value)
        }
        self.dimensions = dimensions
        self.intermediateSize = intermediate
        self.vocabSize = vocab
        self.tiedEmbeddings = tiedEmbeddings
        self.bytesPerElement = bytesPerElement
    }

    /// Qwen2-7B, the LLM of the slow-fast release: 28 layers, d 3584, 28 query / 4 KV heads
    /// of 128, MLP 18944, vocabulary 152064, untied LM head, bf16.
    public static let qwen2_7b = DecoderShape(
        known: ModelDimensions(numLayers: 28, hiddenSize: 3584, numHeads: 28, numKVHeads: 4, headDim: 128,
                               intermediateSize: 18944, vocabSize: 152064),
        intermediateSize: 18944, vocabSize: 152064)

    /// For presets, whose numbers are checked by the tests rather than at run time.
    private init(known dimensions: ModelDimensions, intermediateSize: Int, vocabSize: Int) {
        self.dimensions = dimensions
        self.intermediateSize = intermediateSize
        self.vocabSize = vocabSize
        self.tiedEmbeddings = false
        self.bytesPerElement = 2
    }

    /// Named presets for `slowfast cost --preset`.
    public static let presets: [String: DecoderShape] = ["qwen2-7b": qwen2_7b]

    var d: Double { Double(dimensions.hiddenSize) }
    /// Width of all query heads together.
    var qWidth: Double { Double(dimensions.numHeads * dimensions.headDim) }
    var kvWidth: Double { Double(dimensions.kvWidth) }
    var mlpWidth: Double { Double(intermediateSize) }

    /// Parameters of one decoder layer: q/k/v with bias (Qwen2 style; the bias terms are
    /// small), o without, gate/up/down, two RMSNorm weights.
    public var parametersPerLayer: Double {
        d * qWidth + qWidth + 2 * (d * kvWidth + kvWidth) + qWidth * d + 3 * d * mlpWidth + 2 * d
    }

    /// Parameters a hybrid layer adds (docs/DESIGN.md §1): cross_attn_kv_proj d -> 2*kv with bias,
    /// the gate Linear over A_sa (H*hd -> 1, with bias), the warm-up gate α.
    public var parametersPerHybridLayer: Double {
        d * 2 * kvWidth + 2 * kvWidth + qWidth + 1 + 1
    }

    /// All parameters: embeddings, layers, final norm, LM head (once when tied).
    public var parameters: Double {
        let embedding = Double(vocabSize) * d
        return embedding * (tiedEmbeddings ? 1 : 2) + Double(dimensions.numLayers) * parametersPerLayer + d
    }
}

/// FLOPs of one decoder layer at one sequence length. A multiply-add is 2 FLOPs; norms,
/// RoPE, softmax and elementwise ops are not counted (they are O(L*d), under 1% here).
public struct LayerFlops: Codable, Equatable, Sendable {
    /// q, k, v and o projections: 2*L*d*(H*hd) + 2*2*L*d*kv + 2*L*(H*hd)*d.
    public var projections: Double
    /// Q·Kᵀ and P·V over the full L x L score matrix (what a dense kernel computes):
    /// 2 * 2 * L * L * H * hd.
    public var attention: Double
    /// gate, up and down: 3 * 2 * L * d * I.
    public var mlp: Double
    public var total: Double { projections + attention + mlp }

    public init(_ shape: DecoderShape, sequenceLength: Int) {
        let L = Double(sequenceLength)
        projections = 2 * L * shape.d * shape.qWidth + 2 * 2 * L * shape.d * shape.kvWidth + 2 * L * shape.qWidth * shape.d
        attention = 2 * 2 * L * L * shape.qWidth
        mlp = 3 * 2 * L * shape.d * shape.mlpWidth
    }
}

/// FLOPs one hybrid layer adds to its decoder layer (docs/DESIGN.md §6).
public struct HybridLayerFlops: Codable, Equatable, Sendable {
    /// [K_x | V_x] = W_kv Ŝ: 2 * N_s * d * 2*kv.
    public var kvProjection: Double
    /// softmax(Q K_xᵀ) V_x for the querying positions: 2 * 2 * L_q * N_s * H * hd.
    public var crossAttention: Double
    /// The gate w_g · A_sa over the whole sequence: 2 * L * H*hd.
    public var gate: Double
    public var total: Double { kvProjection + crossAttention + gate }

    public init(_ shape: DecoderShape, sequenceLength: Int, queryingPositions: Int, slowTokens: Int) {
        let Ns = Double(slowTokens)
        kvProjection = 2 * Ns * shape.d * 2 * shape.kvWidth
        crossAttention = 2 * 2 * Double(queryingPositions) * Ns * shape.qWidth
        gate = 2 * Double(sequenceLength) * shape.qWidth
    }
}

/// Why the cost model refused.
public enum CostModelError: Error, CustomStringConvertible, Equatable {
    case missingDimension(String)
    case invalidDimension(name: String, value: Int)
    case invalidWorkload(String)
    case hybridLayerOutOfRange(layer: Int, layers: Int)
    case unknownPreset(String)

    public var description: String {
        switch self {
        case .missingDimension(let name):
            return "the cost model needs the \(name); give it explicitly"
        case .invalidDimension(let name, let value):
            return "\(name) is \(value), expected at least 1"
        case .invalidWorkload(let message):
            return message
        case .hybridLayerOutOfRange(let layer, let layers):
            return "hybrid layer \(layer) is out of range: the model has layers 0..<\(layers)"
        case .unknownPreset(let name):
            return "unknown model preset '\(name)' (known: \(DecoderShape.presets.keys.sorted().joined(separator: ", ")))"
        }
    }
}
