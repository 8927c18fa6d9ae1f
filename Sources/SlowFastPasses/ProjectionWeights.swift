#if canImport(Glibc)
import Glibc
#endif
import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Reads a projection's weight in PyTorch's layout, whatever way the export stores it
/// (transposed MatMul operand, Gemm transB, a slice of a packed qkv weight, shared by
/// deduplication).
struct CanonicalProjection {
    var bias: [Float]?
    var outFeatures: Int
    var inFeatures: Int
    /// The stored weight and where this projection's outputs are in it; its values are read
    /// only when asked for (`weight()`), so a large model's projections are not all held.
    let tensor: Tensor
    let layout: WeightLayout
    /// This projection's stored output features, in order: one range, or (a grouped packing
    /// such as InternLM2's wqkv) one per block.
    let outputRanges: [Range<Int>]
    let columns: Int
    /// How to read a quantized weight's values; nil for a float one.
    let storage: DequantizedWeights?

    init(_ projection: ProjectionWeight, in graph: Graph, layer: Int, role: String) throws {
        guard let tensor = graph.initializer(named: projection.weight) else {
            throw HybridLayerError.missingInitializer(layer: layer, role: role, name: projection.weight)
        }
        let totalOut: Int, inputs: Int, columns: Int
        if let storage = projection.storage {
            // Quantized: the logical [in, out] matrix; discovery checked the stored sizes.
            (inputs, totalOut) = storage.shape
            columns = totalOut
        } else {
            guard tensor.dims.count == 2 else {
                throw HybridLayerError.badWeightShape(layer: layer, role: role, name: projection.weight, shape: tensor.dims,
                                                      expected: "a 2-D matrix")
            }
            let rows = Int(tensor.dims[0])
            columns = Int(tensor.dims[1])
            // Stored [in, out] (MatMul B) or [out, in] (PyTorch / Gemm transB).
            totalOut = projection.layout == .inputMajor ? columns : rows
            inputs = projection.layout == .inputMajor ? rows : columns
        }
        let ranges = projection.outputRanges(total: totalOut)
        let end = ranges.map(\.upperBound).max() ?? 0
        guard ranges.allSatisfy({ $0.lowerBound >= 0 && !$0.isEmpty }), end <= totalOut else {
            throw HybridLayerError.badWeightShape(layer: layer, role: role, name: projection.weight, shape: tensor.dims,
                                                  expected: "at least \(end) output features")
        }
        self.tensor = tensor
        self.storage = try projection.storage.map { try DequantizedWeights($0, graph: graph) }
        self.layout = projection.layout
        self.outputRanges = ranges
        self.columns = columns
        self.outFeatures = ranges.reduce(0) { $0 + $1.count }
        self.inFeatures = inputs
        if let biasName = projection.bias {
            guard let biasTensor = graph.initializer(named: biasName) else {
                throw HybridLayerError.missingInitializer(layer: layer, role: "\(role) bias", name: biasName)
            }
            let all = try biasTensor.floatValues()
            guard all.count >= end else {
                throw HybridLayerError.badWeightShape(layer: layer, role: "\(role) bias", name: biasName, shape: biasTensor.dims,
                                                      expected: "at least \(end) values")
            }
            bias = ranges.flatMap { all[$0] }
        } else {
            bias = nil
        }
    }

    /// Row-major [outFeatures, inFeatures], as `nn.Linear.weight`.
    func weight() throws -> [Float] {
        if let storage {
            var weight: [Float] = []
            weight.reserveCapacity(outFeatures * inFeatures)
            for out in outputRanges.joined() { weight += try storage.row(out) }
            return weight
        }
        let values = try tensor.floatValues()
        var weight = [Float](repeating: 0, count: outFeatures * inFeatures)
        for (out, stored) in outputRanges.joined().enumerated() {
            for input in 0 ..< inFeatures {
                weight[out * inFeatures + input] = layout == .inputMajor
                    ? values[input * columns + stored]
                    : values[stored * columns + input]
            }
        }
        return weight
    }
}

/// Two projections stored [in, out] (MatMul operands) side by side, [in, out₁ + out₂], in
/// their own element type: row i is row i of the first's outputs, then of the second's. This
/// is how the graph stores `concat(k_proj.weight, v_proj.weight)` (PyTorch layout) transposed,
/// made by copying rows, not by transposing twice; made at write time, a block of rows at a
/// time, so a 70B model's ten derived kv projections (67 MB each) are never held at once.
/// Pages of an external source are released once copied.
final class StackedInputMajorProjections: ChunkedTensorData {
    private let parts: [CanonicalProjection]
    private let elementSize: Int
    let rows: Int
    let byteCount: Int

    /// nil unless both are input-major, of `type` and of one input width.
    init?(_ first: CanonicalProjection, _ second: CanonicalProjection, type: ElementType) {
        guard first.layout == .inputMajor, second.layout == .inputMajor, first.inFeatures == second.inFeatures,
              first.tensor.elementType == type, second.tensor.elementType == type,
              let size = type.byteCount(elements: 1) else { return nil }
        parts = [first, second]
        elementSize = size
        rows = first.inFeatures
        byteCount = rows * (first.outFeatures + second.outFeatures) * size
    }

    func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let rowBytes = byteCount / max(rows, 1)
        let rowsPerChunk = max(1, (4 << 20) / max(rowBytes, 1))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: rowsPerChunk * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        try parts[0].tensor.storage.data.withBytes { first in
            try parts[1].tensor.storage.data.withBytes { second in
                let sources = [(parts[0], first), (parts[1], second)]
                for (part, bytes) in sources where bytes.count < rows * part.columns * elementSize {
                    throw TensorDataError.sizeMismatch(tensor: part.tensor.name ?? "", expected: rows * part.columns * elementSize, stored: bytes.count)
                }
                var row = 0
                while row < rows {
                    let count = min(rowsPerChunk, rows - row)
                    var at = 0
                    for r in row ..< row + count {
                        for (part, bytes) in sources {
                            for range in part.outputRanges {
                                let length = range.count * elementSize
                                let from = (r * part.columns + range.lowerBound) * elementSize
                                (buffer.baseAddress! + at).copyMemory(from: bytes.baseAddress! + from, byteCount: length)
                                at += length
                            }
                        }
                    }
                    try body(UnsafeRawBufferPointer(start: buffer.baseAddress, count: at))
                    for (part, bytes) in sources {
                        if case .external = part.tensor.storage {
                            releasePages(bytes, from: row * part.columns * elementSize, to: (row + count) * part.columns * elementSize)
                        }
                    }
                    row += count
                }
            }
        }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R { try withAssembledBytes(body) }
}

/// Drops the whole pages of a read-only file mapping in [from, to) from this process (they
/// stay in the page cache; a later read maps them again), so copying a large external tensor
/// does not leave it all resident.
private func releasePages(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) {
    guard let base = bytes.baseAddress else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + from + page - 1) / page * page
    let end = (Int(bitPattern: base) + to) / page * page
    if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
}

/// Transposes a row-major [rows, columns] matrix.
func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
    var result = [Float](repeating: 0, count: values.count)
    for row in 0 ..< rows {
        for column in 0 ..< columns { result[column * rows + row] = values[row * columns + column] }
    }
    return result
}

/// k_proj and v_proj stored as `MatMulNBits` of one input width, bit width and block size:
/// every stored array is laid out per output row, so their rows side by side are kv_proj in
/// the same form, byte for byte, with no requantization (docs/DESIGN.md §5). A zero point
/// one of them leaves at its default is written out as that default.
struct JoinedBlockwiseProjections {
    let quantization: BlockwiseQuantization
    let codes: [UInt8]
    let scales: Tensor
    let zeroPoints: [UInt8]?
    /// The stored tensors the rows come from, for the weight map's init rules.
    let sources: (codes: [String], scales: [String])

    /// nil unless both projections are blockwise-quantized alike.
    init?(_ first: CanonicalProjection, _ second: CanonicalProjection, graph: Graph) throws {
        guard case .blockwise(let a)? = first.storage?.storage, case .blockwise(let b)? = second.storage?.storage,
              a.inFeatures == b.inFeatures, a.bits == b.bits, a.blockSize == b.blockSize, a.accuracyLevel == b.accuracyLevel,
              let scaleA = graph.initializer(named: a.scales), let scaleB = graph.initializer(named: b.scales),
              let scaleType = scaleA.elementType, scaleB.elementType == scaleType, let scaleSize = scaleType.byteCount(elements: 1),
              let codesA = graph.initializer(named: a.weight), let codesB = graph.initializer(named: b.weight) else { return nil }
        let rowBytes = a.blocksPerRow * a.blobSize
        let parts = [(first, a, codesA, scaleA), (second, b, codesB, scaleB)]
        var codes: [UInt8] = [], scaleBytes: [UInt8] = []
        var zeros: [UInt8]? = (a.zeroPoints != nil || b.zeroPoints != nil) ? [] : nil
        for (projection, q, codeTensor, scaleTensor) in parts {
            let zeroBytes = try q.zeroPoints.map { name -> [UInt8] in
                guard let tensor = graph.initializer(named: name) else {
                    throw TensorDataError.ioFailure(tensor: name, file: graph.name ?? "", reason: "no initializer of that name (zero points)")
                }
                return try tensor.withRawBytes { [UInt8]($0) }
            }
            // The default zero point 2^(bits-1) in every packed slot: 0x88 for 4 bits, 0x80 for 8.
            let defaultZero: UInt8 = q.bits == 4 ? 0x88 : 0x80
            try codeTensor.withRawBytes { raw in
                try scaleTensor.withRawBytes { scaleRaw in
                    guard raw.count == q.outFeatures * rowBytes, scaleRaw.count == q.outFeatures * q.blocksPerRow * scaleSize else {
                        throw TensorDataError.sizeMismatch(tensor: q.weight, expected: q.outFeatures * rowBytes, stored: raw.count)
                    }
                    for row in projection.outputRanges.joined() {
                        codes += raw[row * rowBytes ..< (row + 1) * rowBytes]
                        scaleBytes += scaleRaw[row * q.blocksPerRow * scaleSize ..< (row + 1) * q.blocksPerRow * scaleSize]
                        if zeros != nil {
                            if let zeroBytes {
                                zeros! += zeroBytes[row * q.zeroPointRowBytes ..< (row + 1) * q.zeroPointRowBytes]
                            } else {
                                zeros! += [UInt8](repeating: defaultZero, count: q.zeroPointRowBytes)
                            }
                        }
                    }
                }
            }
        }
        let rows = first.outFeatures + second.outFeatures
        quantization = BlockwiseQuantization(weight: "", inFeatures: a.inFeatures, outFeatures: rows, bits: a.bits, blockSize: a.blockSize,
                                             scales: "", zeroPoints: zeros == nil ? nil : "", accuracyLevel: a.accuracyLevel, bias: nil)
        self.codes = codes
        self.scales = Tensor(name: "", elementType: scaleType, dims: [Int64(rows * a.blocksPerRow)],
                             storage: .bytes(TensorBytes(bytes: scaleBytes)))
        self.zeroPoints = zeros
        sources = ([a.weight, b.weight], [a.scales, b.scales])
    }
}

extension JoinedBlockwiseProjections: JoinedQuantizedProjections {
    /// x · W with W the joined MatMulNBits rows, computed in the model's float type.
    func product(_ input: String, modelType: ElementType, weightName: String, _ label: String,
                 builder: inout GraphBuilder) -> (product: String, storage: ProjectionStorage) {
        var q = quantization
        let codes = builder.parameter(Tensor(name: "", elementType: .uint8, dims: [Int64(q.outFeatures), Int64(q.blocksPerRow), Int64(q.blobSize)],
                                             storage: .bytes(TensorBytes(bytes: self.codes))), name: weightName)
        let (scales, zeros) = builder.storageParameters(scales, zeroPoints: zeroPoints, type: .uint8, dims: { [Int64($0)] }, weightName: weightName)
        q.weight = codes
        q.scales = scales
        q.zeroPoints = zeros
        let a = builder.fromFloat(input, to: modelType, "\(label)/model_type")
        let product = builder.op("MatMulNBits", [a, codes, scales] + (zeros.map { [$0] } ?? []), label,
                                 attributes: [.int("K", Int64(q.inFeatures)), .int("N", Int64(q.outFeatures)), .int("bits", Int64(q.bits)),
                                              .int("block_size", Int64(q.blockSize)), .int("accuracy_level", Int64(q.accuracyLevel))],
                                 domain: Domain.microsoft)
        return (product, .blockwise(q))
    }
}

struct JoinedLinearProjections {
    let quantization: LinearQuantization
    /// [in, out_k + out_v] codes, row-major.
    let codes: [UInt8]
    let scales: Tensor
    let zeroPoints: [UInt8]?
    let codeType: ElementType
    let sources: (codes: [String], scales: [String])

    init?(_ first: CanonicalProjection, _ second: CanonicalProjection, graph: Graph) throws {
        guard case .linear(let a)? = first.storage?.storage, case .linear(let b)? = second.storage?.storage,
              a.form == .qdq, b.form == .qdq, a.weightType == b.weightType, a.inFeatures == b.inFeatures,
              (a.zeroPoint == nil) == (b.zeroPoint == nil), a.perColumn == b.perColumn,
              let scaleA = graph.initializer(named: a.scale), let scaleB = graph.initializer(named: b.scale),
              let scaleType = scaleA.elementType, scaleB.elementType == scaleType, let scaleSize = scaleType.byteCount(elements: 1),
              let codesA = graph.initializer(named: a.weight), let codesB = graph.initializer(named: b.weight),
              let codeType = codesA.elementType else { return nil }
        let scaleBytes = try [scaleA, scaleB].map { tensor in try tensor.withRawBytes { [UInt8]($0) } }
        let zeroBytes = try [a.zeroPoint, b.zeroPoint].map { name in
            try name.flatMap { graph.initializer(named: $0) }.map { tensor in try tensor.withRawBytes { [UInt8]($0) } }
        }
        let perColumn = a.perColumn
        // One scale per tensor joins only where both tensors have the same one.
        if !perColumn, scaleBytes[0] != scaleBytes[1] || zeroBytes[0] != zeroBytes[1] { return nil }
        let parts = [(first, a, codesA), (second, b, codesB)]
        var columns: [[Int]] = []
        for (projection, q, _) in parts {
            let chosen = Array(projection.outputRanges.joined())
            guard chosen.allSatisfy({ (0 ..< q.outFeatures).contains($0) }) else { return nil }
            columns.append(chosen)
        }
        let width = columns[0].count + columns[1].count
        var codes = [UInt8](repeating: 0, count: a.inFeatures * width)
        for (part, (_, q, tensor)) in parts.enumerated() {
            try tensor.withRawBytes { raw in
                guard raw.count == q.inFeatures * q.outFeatures else {
                    throw TensorDataError.sizeMismatch(tensor: q.weight, expected: q.inFeatures * q.outFeatures, stored: raw.count)
                }
                let offset = part == 0 ? 0 : columns[0].count
                for row in 0 ..< q.inFeatures {
                    for (at, column) in columns[part].enumerated() {
                        codes[row * width + offset + at] = raw[row * q.outFeatures + column]
                    }
                }
            }
        }
        var scales: [UInt8] = [], zeros: [UInt8]? = a.zeroPoint == nil ? nil : []
        if perColumn {
            for part in 0 ..< 2 {
                for column in columns[part] {
                    scales += scaleBytes[part][column * scaleSize ..< (column + 1) * scaleSize]
                    if zeros != nil, let bytes = zeroBytes[part] { zeros! += [bytes[column]] }
                }
            }
        } else {
            scales = scaleBytes[0]
            zeros = zeroBytes[0]
        }
        quantization = LinearQuantization(form: .qdq, weight: "", inFeatures: a.inFeatures, outFeatures: width, weightType: a.weightType,
                                          scale: "", zeroPoint: zeros == nil ? nil : "", perColumn: perColumn)
        self.codes = codes
        self.scales = Tensor(name: "", elementType: scaleType, dims: perColumn ? [Int64(width)] : [], storage: .bytes(TensorBytes(bytes: scales)))
        zeroPoints = zeros
        self.codeType = codeType
        sources = ([a.weight, b.weight], [a.scale, b.scale])
    }
}

extension JoinedLinearProjections: JoinedQuantizedProjections {
    /// x · W with W the joined int8 columns behind DequantizeLinear (axis 1 where per column),
    /// computed in the model's float type.
    func product(_ input: String, modelType: ElementType, weightName: String, _ label: String,
                 builder: inout GraphBuilder) -> (product: String, storage: ProjectionStorage) {
        var q = quantization
        let codes = builder.parameter(Tensor(name: "", elementType: codeType, dims: [Int64(q.inFeatures), Int64(q.outFeatures)],
                                             storage: .bytes(TensorBytes(bytes: self.codes))), name: weightName)
        let perColumn = q.perColumn
        let (scales, zeros) = builder.storageParameters(scales, zeroPoints: zeroPoints, type: codeType,
                                                        dims: { perColumn ? [Int64($0)] : [] }, weightName: weightName)
        q.weight = codes
        q.scale = scales
        q.zeroPoint = zeros
        let weight = builder.op("DequantizeLinear", [codes, scales] + (zeros.map { [$0] } ?? []), "\(label)/dequantize",
                                attributes: q.perColumn ? [.int("axis", 1)] : [])
        let product = builder.op("MatMul", [builder.fromFloat(input, to: modelType, "\(label)/model_type"), weight], label)
        return (product, .linear(q))
    }
}

/// k_proj and v_proj joined into one quantized kv_proj in their own storage form.
protocol JoinedQuantizedProjections {
    /// The stored tensors the codes and scales come from, for the weight map's init rules.
    var sources: (codes: [String], scales: [String]) { get }
    /// Adds kv_proj's codes, scales and zero points (named after `weightName`) and the nodes
    /// computing `input` · W; returns the product (in the model's type) and the storage record.
    func product(_ input: String, modelType: ElementType, weightName: String, _ label: String,
                 builder: inout GraphBuilder) -> (product: String, storage: ProjectionStorage)
}

extension GraphBuilder {
    /// The scales tensor and the zero points (of `type`, dims from their count) of a joined
    /// quantized weight, as parameters named `<weightName>.scales` and `.zero_points`.
    mutating func storageParameters(_ scales: Tensor, zeroPoints: [UInt8]?, type: ElementType, dims: (Int) -> [Int64],
                                    weightName: String) -> (scales: String, zeroPoints: String?) {
        let scaleName = parameter(scales, name: "\(weightName).scales")
        let zeros = zeroPoints.map { bytes in
            parameter(Tensor(name: "", elementType: type, dims: dims(bytes.count), storage: .bytes(TensorBytes(bytes: bytes))),
                      name: "\(weightName).zero_points")
        }
        return (scaleName, zeros)
    }

    /// `joined`'s product of `input` plus `bias` (float32 parameter `biasName`), as float32.
    /// Returns the output and the stored initializers' names.
    mutating func quantizedLinear(_ input: String, _ joined: any JoinedQuantizedProjections, modelType: ElementType, bias: [Float],
                                  weightName: String, biasName: String, _ label: String)
        -> (output: String, weight: String, bias: String, storage: ProjectionStorage) {
        let (product, storage) = joined.product(input, modelType: modelType, weightName: weightName, label, builder: &self)
        let biasParameter = parameter(floats: bias, dims: [Int64(storage.shape.outFeatures)], name: biasName)
        let output = op("Add", [toFloat(product, from: modelType, "\(label)/float"), biasParameter.value], "\(label)/bias")
        let weight = switch storage {
        case .blockwise(let q): q.weight
        case .linear(let q): q.weight
        }
        return (output, weight, biasParameter.stored, storage)
    }
}
