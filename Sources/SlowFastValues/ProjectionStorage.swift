import SlowFastIR

/// How a projection's weight is stored, where it is not a plain float matrix: the quantized
/// forms onnxruntime's tools write (docs/DESIGN.md §5). Discovery reads it from the node that
/// computes the projection; everything downstream (dims, slicing a packed qkv, kv_proj, the
/// weight map) works on the projection's logical [in, out] matrix whatever its storage.
public enum ProjectionStorage: Codable, Equatable, Hashable, Sendable {
    /// com.microsoft `MatMulNBits`: codes in blocks along K, one scale per (output, block).
    case blockwise(BlockwiseQuantization)
    /// An int8/uint8 [in, out] matrix with one scale per tensor or per output column:
    /// `DequantizeLinear` before a MatMul (QDQ) or `MatMulInteger` after
    /// `DynamicQuantizeLinear` (dynamic quantization).
    case linear(LinearQuantization)

    /// The projection's input and output widths.
    public var shape: (inFeatures: Int, outFeatures: Int) {
        switch self {
        case .blockwise(let q): return (q.inFeatures, q.outFeatures)
        case .linear(let q): return (q.inFeatures, q.outFeatures)
        }
    }

    /// The scales and zero points the codes need, with the suffix they are named by
    /// (`<weight>.scales`, `<weight>.zero_points`): part of the weight's storage.
    public var parameterTensors: [(name: String, suffix: String)] {
        switch self {
        case .blockwise(let q): return [(q.scales, "scales")] + (q.zeroPoints.map { [($0, "zero_points")] } ?? [])
        case .linear(let q): return [(q.scale, "scales")] + (q.zeroPoint.map { [($0, "zero_points")] } ?? [])
        }
    }

    /// Whether the codes are stored [in, out] (a MatMul operand: the transpose of
    /// `nn.Linear.weight`); MatMulNBits stores them per output row.
    public var storedTransposed: Bool {
        if case .linear = self { return true }
        return false
    }

    /// A bias the storage's own node adds (MatMulNBits' bias input).
    public var bias: String? {
        if case .blockwise(let q) = self { return q.bias }
        return nil
    }

    /// Short text for plans and weight maps: `int4 blocks of 32, asymmetric`.
    public var summary: String {
        switch self {
        case .blockwise(let q):
            return "MatMulNBits int\(q.bits), blocks of \(q.blockSize), \(q.zeroPoints == nil ? "symmetric" : "zero points '\(q.zeroPoints!)'")"
        case .linear(let q):
            let form = q.form == .qdq ? "DequantizeLinear" : "MatMulInteger"
            return "\(form) \(q.weightType), \(q.perColumn ? "per output column" : "per tensor")"
        }
    }
}

/// `MatMulNBits(A, B, scales, zero_points?, g_idx?, bias?)` with attributes K, N, bits and
/// block_size: B is uint8 [N, blocks, blockSize·bits/8], codes packed low bits first along K;
/// the weight of output n at input k is (code − zero point) · scale of (n, k / blockSize).
public struct BlockwiseQuantization: Codable, Equatable, Hashable, Sendable {
    /// B: uint8 codes [N, blocks, blockSize·bits/8].
    public var weight: String
    public var inFeatures: Int
    public var outFeatures: Int
    public var bits: Int
    public var blockSize: Int
    /// One float per (output, block), `[N·blocks]` or `[N, blocks]`.
    public var scales: String
    /// Packed uint8 zero points, `ceil(blocks·bits/8)` bytes per output; nil: 2^(bits−1).
    public var zeroPoints: String?
    /// The node's accuracy_level (4 lets onnxruntime quantize A to int8 inside the op).
    public var accuracyLevel: Int
    /// The bias input of the node, where it has one.
    public var bias: String?

    public init(weight: String, inFeatures: Int, outFeatures: Int, bits: Int, blockSize: Int, scales: String, zeroPoints: String?,
                accuracyLevel: Int, bias: String?) {
        self.weight = weight
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.bits = bits
        self.blockSize = blockSize
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.accuracyLevel = accuracyLevel
        self.bias = bias
    }

    public var blocksPerRow: Int { (inFeatures + blockSize - 1) / blockSize }
    public var blobSize: Int { blockSize * bits / 8 }
    /// Bytes of zero points per output row.
    public var zeroPointRowBytes: Int { (blocksPerRow * bits + 7) / 8 }
}

/// An int8/uint8 weight [in, out] with a scale and zero point per tensor or per output column.
public struct LinearQuantization: Codable, Equatable, Hashable, Sendable {
    public enum Form: String, Codable, Hashable, Sendable {
        /// `MatMul(x, DequantizeLinear(W, scale, zero_point))`.
        case qdq = "dequantizeLinear"
        /// `MatMulInteger(DynamicQuantizeLinear(x), W, x_zp, w_zp)`, cast, times x_scale·w_scale.
        case dynamic = "matMulInteger"
    }
    public var form: Form
    /// The int8/uint8 codes [in, out].
    public var weight: String
    public var inFeatures: Int
    public var outFeatures: Int
    /// `int8` or `uint8`.
    public var weightType: String
    public var scale: String
    public var zeroPoint: String?
    /// One scale (and zero point) per output column rather than one for the tensor.
    public var perColumn: Bool

    public init(form: Form, weight: String, inFeatures: Int, outFeatures: Int, weightType: String, scale: String,
                zeroPoint: String?, perColumn: Bool) {
        self.form = form
        self.weight = weight
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weightType = weightType
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.perColumn = perColumn
    }
}

/// Why a quantized projection is not one the tool can read.
public struct UnsupportedStorage: Error, CustomStringConvertible {
    public let node: String
    public let op: String
    public let what: String
    public var description: String { "node '\(node)' (\(op)): \(what) is not supported" }

    public init(node: String, op: String, what: String) {
        self.node = node
        self.op = op
        self.what = what
    }
}

extension ProjectionStorage {
    enum CodingKeys: String, CodingKey { case blockwise, linear }

    /// `{"blockwise": {...}}` or `{"linear": {...}}`.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let q = try container.decodeIfPresent(BlockwiseQuantization.self, forKey: .blockwise) {
            self = .blockwise(q)
        } else if let q = try container.decodeIfPresent(LinearQuantization.self, forKey: .linear) {
            self = .linear(q)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "quantization is neither blockwise nor linear"))
        }
        guard let problem = self.problem else { return }
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "quantization: \(problem)"))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .blockwise(let q): try container.encode(q, forKey: .blockwise)
        case .linear(let q): try container.encode(q, forKey: .linear)
        }
    }

    /// What is out of bounds in a record read from a file, nil when it is sound: every size
    /// the dequantizer multiplies is then below 2^48.
    public var problem: String? {
        let limit = Limits.width
        let (inFeatures, outFeatures) = shape
        guard (1 ... limit).contains(inFeatures), (1 ... limit).contains(outFeatures) else {
            return "widths \(inFeatures) x \(outFeatures) outside 1...\(limit)"
        }
        switch self {
        case .blockwise(let q):
            guard q.bits == 4 || q.bits == 8 else { return "bits \(q.bits) is not 4 or 8" }
            guard Limits.blockSizes.contains(q.blockSize), q.blockSize & (q.blockSize - 1) == 0 else {
                return "block size \(q.blockSize) is not a power of two from 16 to 65536"
            }
        case .linear(let q):
            guard q.weightType == "int8" || q.weightType == "uint8" else { return "weight type \(q.weightType) is not int8 or uint8" }
        }
        return nil
    }
}
