import SlowFastIR

/// A quantized weight's storage that cannot stand for float values.
public struct QuantizedStorageError: Error, CustomStringConvertible {
    public let tensor: String
    public let problem: String
    public var description: String { "'\(tensor)': \(problem)" }
}

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
        if let problem = storage.problem { throw QuantizedStorageError(tensor: storage.summary, problem: problem) }
        self.storage = storage
        switch storage {
        case .blockwise(let q):
            codes = try Self.bytes(tensor(q.weight), count: q.outFeatures * q.blocksPerRow * q.blobSize)
            scales = try Self.floats(tensor(q.scales), count: q.outFeatures * q.blocksPerRow)
            try Self.checkFinite(scales, q.scales)
            zeroPoints = try q.zeroPoints.map { try Self.bytes(tensor($0), count: q.outFeatures * q.zeroPointRowBytes) }
        case .linear(let q):
            codes = try Self.bytes(tensor(q.weight), count: q.inFeatures * q.outFeatures)
            let count = q.perColumn ? q.outFeatures : 1
            scales = try Self.floats(tensor(q.scale), count: count)
            try Self.checkFinite(scales, q.scale)
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

    /// A scale that is not a finite number would make every value it scales meaningless.
    private static func checkFinite(_ scales: [Float], _ name: String) throws {
        if let bad = scales.first(where: { !$0.isFinite }) {
            throw QuantizedStorageError(tensor: name, problem: "a scale is \(bad); scales must be finite numbers")
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

/// Float values stored again in a quantized projection's form.
public struct RequantizedWeights {
    /// The codes, laid out as the storage lays them out (MatMulNBits' padding bytes as they were).
    public var codes: [UInt8]
    /// New scales (in the scales tensor's order) where some had to widen; nil: unchanged.
    public var scales: [Float]?
    /// |dequantized − given| over every value, as float32 computes it.
    public var maxAbsError: Double
    public var meanAbsError: Double
    /// Scale groups (blocks, columns or the tensor) whose scale widened.
    public var widened: Int
}

/// A value the storage's scales cannot hold: where, and the value.
public struct QuantizationOverflow: Error, CustomStringConvertible {
    public let row: Int
    public let column: Int
    public let value: Float
    /// What the value's scale and zero point hold; nil for a value that is not finite.
    public let range: ClosedRange<Float>?
    public var description: String {
        guard let range else { return "value \(value) at [\(row), \(column)] is not a finite number" }
        return "value \(value) at [\(row), \(column)] is outside \(range.lowerBound)...\(range.upperBound), what its scale and zero point hold"
    }
}

extension DequantizedWeights {
    /// `matrix` ([out, in], `nn.Linear.weight`'s layout) quantized with this storage's own
    /// scales and zero points: each value rounds to the nearest code (ties to even, as NumPy
    /// rounds), so it moves by at most half a step. A value beyond the codes' range throws
    /// unless `widen`, which raises just the scales of the groups that need it (each to the
    /// smallest scale that holds its values) and rounds those groups again.
    public func requantized(_ matrix: [Float], widen: Bool) throws -> RequantizedWeights {
        let (inFeatures, outFeatures) = storage.shape
        guard matrix.count == inFeatures * outFeatures else {
            throw TensorDataError.sizeMismatch(tensor: storageName, expected: inFeatures * outFeatures, stored: matrix.count)
        }
        if let bad = matrix.firstIndex(where: { !$0.isFinite }) {
            throw QuantizationOverflow(row: bad / inFeatures, column: bad % inFeatures, value: matrix[bad], range: nil)
        }
        var scales = self.scales
        var codes = self.codes
        var widened = 0
        let (low, high) = codeRange
        // A scale may be negative (onnxruntime's symmetric quantizer maps the largest magnitude
        // to the most negative code): with u = value · sign(scale), the code is u / |scale|.
        for group in 0 ..< scales.count {
            let zero = zeroPoint(ofGroup: group)
            let sign: Float = scales[group] < 0 ? -1 : 1
            let magnitude = abs(scales[group])
            var needed: Float = 0
            var outside: (row: Int, column: Int, value: Float)?
            forEachValue(inGroup: group) { row, column in
                let value = matrix[row * inFeatures + column]
                let u = value * sign
                let code = magnitude == 0 ? (u == 0 ? 0 : Float.infinity) : (u / magnitude).rounded(.toNearestOrEven)
                if outside == nil, !(Float(low - zero) ... Float(high - zero)).contains(code) { outside = (row, column, value) }
                if u > 0, high > zero { needed = max(needed, u / Float(high - zero)) }
                if u < 0, low < zero { needed = max(needed, u / Float(low - zero)) }
            }
            guard let outside else { continue }
            guard widen else {
                let ends = [Float(low - zero) * scales[group], Float(high - zero) * scales[group]]
                throw QuantizationOverflow(row: outside.row, column: outside.column, value: outside.value,
                                           range: ends.min()! ... ends.max()!)
            }
            scales[group] = sign * max(magnitude, needed)
            widened += 1
        }
        var maxError = 0.0, total = 0.0
        for group in 0 ..< scales.count {
            let zero = zeroPoint(ofGroup: group)
            let scale = scales[group]
            forEachValue(inGroup: group) { row, column in
                let value = matrix[row * inFeatures + column]
                let rounded = scale == 0 ? 0 : (value / scale).rounded(.toNearestOrEven)
                let code = Int(max(Float(low - zero), min(Float(high - zero), rounded))) + zero
                setCode(code, row: row, column: column, in: &codes)
                let error = Double(abs(Float(code - zero) * scale - value))
                maxError = max(maxError, error)
                total += error
            }
        }
        return RequantizedWeights(codes: codes, scales: widened > 0 ? scales : nil, maxAbsError: maxError,
                                  meanAbsError: matrix.isEmpty ? 0 : total / Double(matrix.count), widened: widened)
    }

    private var storageName: String {
        switch storage {
        case .blockwise(let q): return q.weight
        case .linear(let q): return q.weight
        }
    }

    /// The codes' range as integers (a signed int8's as −128...127).
    private var codeRange: (Int, Int) {
        switch storage {
        case .blockwise(let q): return (0, (1 << q.bits) - 1)
        case .linear(let q): return q.weightType == "int8" ? (-128, 127) : (0, 255)
        }
    }

    private func zeroPoint(ofGroup group: Int) -> Int {
        switch storage {
        case .blockwise(let q):
            guard let zeroPoints else { return 1 << (q.bits - 1) }
            let row = group / q.blocksPerRow, block = group % q.blocksPerRow
            let byte = zeroPoints[row * q.zeroPointRowBytes + block * q.bits / 8]
            return q.bits == 4 ? Int(block % 2 == 0 ? byte & 0x0F : byte >> 4) : Int(byte)
        case .linear(let q):
            guard let zeroPoints else { return 0 }
            return q.weightType == "int8" ? Int(Int8(bitPattern: zeroPoints[group])) : Int(zeroPoints[group])
        }
    }

    /// Calls `body(row, column)` for every value of `matrix` ([out, in]) that scale `group` covers.
    private func forEachValue(inGroup group: Int, _ body: (Int, Int) -> Void) {
        switch storage {
        case .blockwise(let q):
            let row = group / q.blocksPerRow, block = group % q.blocksPerRow
            for column in block * q.blockSize ..< min(q.inFeatures, (block + 1) * q.blockSize) { body(row, column) }
        case .linear(let q):
            if q.perColumn {
                for column in 0 ..< q.inFeatures { body(group, column) }
            } else {
                for row in 0 ..< q.outFeatures { for column in 0 ..< q.inFeatures { body(row, column) } }
            }
        }
    }

    private func setCode(_ code: Int, row: Int, column: Int, in codes: inout [UInt8]) {
        switch storage {
        case .blockwise(let q):
            let block = column / q.blockSize, within = column % q.blockSize
            let index = row * q.blocksPerRow * q.blobSize + block * q.blobSize + within * q.bits / 8
            if q.bits == 4 {
                codes[index] = within % 2 == 0 ? (codes[index] & 0xF0) | UInt8(code) : (codes[index] & 0x0F) | UInt8(code << 4)
            } else {
                codes[index] = UInt8(code)
            }
        case .linear(let q):
            codes[column * q.outFeatures + row] = UInt8(truncatingIfNeeded: code)
        }
    }
}
