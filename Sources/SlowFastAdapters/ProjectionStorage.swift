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
}

extension ProjectionStorage {
    /// Largest width a projection may have; numbers from the file are bounded before any
    /// arithmetic on them.
    static let widthLimit = 1 << 24

    /// The storage of the projection computed by `node` whose stored weight is `weight`; nil
    /// for a plain float MatMul or Gemm. Throws, naming the node, the op and the attribute,
    /// for a quantized form the tool does not support.
    public static func read(node: Node, weight: String, matcher: PatternMatcher) throws -> ProjectionStorage? {
        let index = matcher.index
        let name = node.name ?? node.outputs.first ?? ""
        func unsupported(_ what: String) -> UnsupportedStorage { UnsupportedStorage(node: name, op: node.op, what: what) }
        switch node.op {
        case "MatMulNBits":
            guard let k = node.intAttribute("K"), let n = node.intAttribute("N"), let bits = node.intAttribute("bits"),
                  let blockSize = node.intAttribute("block_size") else {
                throw unsupported("a MatMulNBits without K, N, bits and block_size")
            }
            guard bits == 4 || bits == 8 else { throw unsupported("bits = \(bits) (4 and 8 are)") }
            guard blockSize >= 16, blockSize <= 1 << 16, blockSize & (blockSize - 1) == 0 else {
                throw unsupported("block_size = \(blockSize) (a power of two from 16)")
            }
            guard (1 ... Int64(widthLimit)).contains(k), (1 ... Int64(widthLimit)).contains(n) else {
                throw unsupported("K = \(k), N = \(n) (1...\(widthLimit))")
            }
            if node.inputs.count > 4, !node.inputs[4].isEmpty { throw unsupported("input g_idx (act-order)") }
            var q = BlockwiseQuantization(weight: weight, inFeatures: Int(k), outFeatures: Int(n), bits: Int(bits), blockSize: Int(blockSize),
                                          scales: node.inputs.count > 2 ? node.inputs[2] : "", zeroPoints: nil,
                                          accuracyLevel: Int(node.intAttribute("accuracy_level") ?? 0), bias: nil)
            guard let b = index.initializer(weight), b.elementType == .uint8,
                  b.elementCount == q.outFeatures * q.blocksPerRow * q.blobSize else {
                throw unsupported("input B '\(weight)' that is not uint8 [\(n), \(q.blocksPerRow), \(q.blobSize)]")
            }
            guard let scales = index.initializer(q.scales), let type = scales.elementType, [.float, .float16].contains(type),
                  scales.elementCount == q.outFeatures * q.blocksPerRow else {
                throw unsupported("scales '\(q.scales)' that are not \(n)·\(q.blocksPerRow) float constants")
            }
            if node.inputs.count > 3, !node.inputs[3].isEmpty {
                guard let zeros = index.initializer(node.inputs[3]), zeros.elementType == .uint8,
                      zeros.elementCount == q.outFeatures * q.zeroPointRowBytes else {
                    throw unsupported("zero_points '\(node.inputs[3])' that are not packed uint8 [\(n)·\(q.zeroPointRowBytes)]")
                }
                q.zeroPoints = node.inputs[3]
            }
            if node.inputs.count > 5, !node.inputs[5].isEmpty {
                guard index.initializer(node.inputs[5])?.elementCount == q.outFeatures else {
                    throw unsupported("bias '\(node.inputs[5])' that is not \(n) constants")
                }
                q.bias = node.inputs[5]
            }
            return .blockwise(q)
        case "MatMul":
            guard node.inputs.count == 2, let dq = index.producer(of: node.inputs[1]), dq.op == "DequantizeLinear" else { return nil }
            if let block = dq.intAttribute("block_size"), block != 0 { throw UnsupportedStorage(node: dq.name ?? "", op: dq.op, what: "block_size = \(block)") }
            let axis = dq.intAttribute("axis") ?? 1
            return .linear(try linear(.qdq, weight: weight, scale: dq.inputs.count > 1 ? dq.inputs[1] : "",
                                      zeroPoint: dq.inputs.count > 2 ? dq.inputs[2] : "", axis: axis, node: dq, index: index))
        case "Mul":
            // Mul(Cast(MatMulInteger(x_q, W, x_zp, w_zp)), Mul(x_scale, w_scale)): the matcher
            // only accepts this shape, so the parts are there.
            guard let (product, scales) = dynamicParts(of: node, index: index) else { return nil }
            guard let wScale = scales.inputs.first(where: { matcher.constantTensor($0) != nil }) else {
                throw unsupported("a weight scale that is not a constant")
            }
            return .linear(try linear(.dynamic, weight: weight, scale: wScale,
                                      zeroPoint: product.inputs.count > 3 ? product.inputs[3] : "", axis: 1, node: product, index: index))
        default:
            return nil
        }
    }

    /// The MatMulInteger and the scale product of a dynamic-quantization Mul.
    static func dynamicParts(of mul: Node, index: GraphIndex) -> (product: Node, scales: Node)? {
        guard mul.inputs.count == 2 else { return nil }
        for (cast, other) in [(mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])] {
            if let castNode = index.producer(of: cast), castNode.op == "Cast",
               let product = castNode.inputs.first.flatMap(index.producer(of:)), product.op == "MatMulInteger",
               let scales = index.producer(of: other), scales.op == "Mul" {
                return (product, scales)
            }
        }
        return nil
    }

    private static func linear(_ form: LinearQuantization.Form, weight: String, scale: String, zeroPoint: String, axis: Int64,
                               node: Node, index: GraphIndex) throws -> LinearQuantization {
        func unsupported(_ what: String) -> UnsupportedStorage { UnsupportedStorage(node: node.name ?? "", op: node.op, what: what) }
        guard let w = index.initializer(weight), w.dims.count == 2,
              let type = w.elementType, type == .int8 || type == .uint8 else {
            throw unsupported("a weight '\(weight)' that is not a 2-D int8 or uint8 initializer")
        }
        guard w.dims.allSatisfy({ (1 ... Int64(widthLimit)).contains($0) }) else { throw unsupported("weight dims \(w.dims)") }
        let rows = Int(w.dims[0]), columns = Int(w.dims[1])
        guard let s = index.initializer(scale), let scaleType = s.elementType, [.float, .float16].contains(scaleType) else {
            throw unsupported("a scale '\(scale)' that is not a float constant")
        }
        let perColumn: Bool
        switch s.elementCount {
        case 1: perColumn = false
        case columns where axis == 1 || axis == -1: perColumn = true
        default: throw unsupported("scale '\(scale)' of \(s.elementCount ?? 0) values on axis \(axis) (one, or one per output column)")
        }
        var zero: String?
        if !zeroPoint.isEmpty {
            guard let z = index.initializer(zeroPoint), z.elementType == type, z.elementCount == s.elementCount else {
                throw unsupported("zero point '\(zeroPoint)' that is not \(ElementType.name(of: type.rawValue)) like its scale")
            }
            zero = zeroPoint
        }
        return LinearQuantization(form: form, weight: weight, inFeatures: rows, outFeatures: columns, weightType: ElementType.name(of: type.rawValue),
                                  scale: scale, zeroPoint: zero, perColumn: perColumn)
    }
}

// MARK: Codable, with the numbers of a file we read back bounded

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
        let limit = ProjectionStorage.widthLimit
        let (inFeatures, outFeatures) = shape
        guard (1 ... limit).contains(inFeatures), (1 ... limit).contains(outFeatures) else {
            return "widths \(inFeatures) x \(outFeatures) outside 1...\(limit)"
        }
        switch self {
        case .blockwise(let q):
            guard q.bits == 4 || q.bits == 8 else { return "bits \(q.bits) is not 4 or 8" }
            guard (16 ... 1 << 16).contains(q.blockSize), q.blockSize & (q.blockSize - 1) == 0 else {
                return "block size \(q.blockSize) is not a power of two from 16 to 65536"
            }
        case .linear(let q):
            guard q.weightType == "int8" || q.weightType == "uint8" else { return "weight type \(q.weightType) is not int8 or uint8" }
        }
        return nil
    }
}
