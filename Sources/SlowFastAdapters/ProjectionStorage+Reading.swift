import SlowFastIR
import SlowFastValues

extension ProjectionStorage {
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
            guard Limits.blockSizes.contains(Int(blockSize)), blockSize & (blockSize - 1) == 0 else {
                throw unsupported("block_size = \(blockSize) (a power of two from 16)")
            }
            guard (1 ... Int64(Limits.width)).contains(k), (1 ... Int64(Limits.width)).contains(n) else {
                throw unsupported("K = \(k), N = \(n) (1...\(Limits.width))")
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
        guard w.dims.allSatisfy({ (1 ... Int64(Limits.width)).contains($0) }) else { throw unsupported("weight dims \(w.dims)") }
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
