import SlowFastIR

/// The float values a quantized projection stands for, one output row at a time, computed as
/// onnxruntime computes them: (code − zero point) · scale in float32 (docs/DESIGN.md §5).
public struct DequantizedWeights {
    public let storage: ProjectionStorage
    private let codes: [UInt8]
    private let scales: [Float]
    private let zeroPoints: [UInt8]?

    /// Reads the stored tensors `storage` names; `graph` resolves them.
    public init(_ storage: ProjectionStorage, graph: Graph) throws {
        func tensor(_ name: String) throws -> Tensor {
            guard let tensor = graph.initializer(named: name) else {
                throw TensorDataError.ioFailure(tensor: name, file: graph.name ?? "", reason: "no initializer of that name")
            }
            return tensor
        }
        try self.init(storage, tensor: tensor)
    }

    /// The same with the stored tensors looked up by `tensor`.
    public init(_ storage: ProjectionStorage, tensor: (String) throws -> Tensor) throws {
        if let problem = storage.problem {
            throw TensorDataError.unsupportedType(tensor: storage.summary, type: problem, wanted: "a quantization record within bounds")
        }
        self.storage = storage
        switch storage {
        case .blockwise(let q):
            codes = try Self.bytes(tensor(q.weight), count: q.outFeatures * q.blocksPerRow * q.blobSize)
            scales = try Self.floats(tensor(q.scales), count: q.outFeatures * q.blocksPerRow)
            zeroPoints = try q.zeroPoints.map { try Self.bytes(tensor($0), count: q.outFeatures * q.zeroPointRowBytes) }
        case .linear(let q):
            codes = try Self.bytes(tensor(q.weight), count: q.inFeatures * q.outFeatures)
            let count = q.perColumn ? q.outFeatures : 1
            scales = try Self.floats(tensor(q.scale), count: count)
            zeroPoints = try q.zeroPoint.map { try Self.bytes(tensor($0), count: count) }
        }
    }

    /// The weight of output `row` at every input, in input order (a row of `nn.Linear.weight`).
    public func row(_ row: Int) throws -> [Float] {
        switch storage {
        case .blockwise(let q):
            guard (0 ..< q.outFeatures).contains(row) else { throw TensorDataError.sizeMismatch(tensor: q.weight, expected: q.outFeatures, stored: row) }
            var values = [Float](repeating: 0, count: q.inFeatures)
            let rowStart = row * q.blocksPerRow * q.blobSize
            for k in 0 ..< q.inFeatures {
                let block = k / q.blockSize, within = k % q.blockSize
                let code: Int, zero: Int
                if q.bits == 4 {
                    let byte = codes[rowStart + block * q.blobSize + within / 2]
                    code = Int(within % 2 == 0 ? byte & 0x0F : byte >> 4)
                } else {
                    code = Int(codes[rowStart + block * q.blobSize + within])
                }
                if let zeroPoints {
                    let byte = zeroPoints[row * q.zeroPointRowBytes + block * q.bits / 8]
                    zero = q.bits == 4 ? Int(block % 2 == 0 ? byte & 0x0F : byte >> 4) : Int(byte)
                } else {
                    zero = 1 << (q.bits - 1)
                }
                values[k] = Float(code - zero) * scales[row * q.blocksPerRow + block]
            }
            return values
        case .linear(let q):
            guard (0 ..< q.outFeatures).contains(row) else { throw TensorDataError.sizeMismatch(tensor: q.weight, expected: q.outFeatures, stored: row) }
            let signed = q.weightType == "int8"
            func value(_ byte: UInt8) -> Int { signed ? Int(Int8(bitPattern: byte)) : Int(byte) }
            let slot = q.perColumn ? row : 0
            let zero = zeroPoints.map { value($0[slot]) } ?? 0
            let scale = scales[slot]
            return (0 ..< q.inFeatures).map { k in Float(value(codes[k * q.outFeatures + row]) - zero) * scale }
        }
    }

    /// Every row: the projection as `nn.Linear.weight` [out, in].
    public func matrix() throws -> [Float] {
        var values: [Float] = []
        values.reserveCapacity(storage.shape.inFeatures * storage.shape.outFeatures)
        for row in 0 ..< storage.shape.outFeatures { values += try self.row(row) }
        return values
    }

    private static func bytes(_ tensor: Tensor, count: Int) throws -> [UInt8] {
        try tensor.withRawBytes { raw in
            guard raw.count == count else { throw TensorDataError.sizeMismatch(tensor: tensor.name ?? "", expected: count, stored: raw.count) }
            return [UInt8](raw)
        }
    }

    private static func floats(_ tensor: Tensor, count: Int) throws -> [Float] {
        let values = try tensor.floatValues()
        guard values.count == count else {
            throw TensorDataError.sizeMismatch(tensor: tensor.name ?? "", expected: count, stored: values.count)
        }
        return values
    }
}
