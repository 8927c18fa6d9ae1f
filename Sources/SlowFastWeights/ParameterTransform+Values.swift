import SlowFastValues
import SlowFastCheckpoints
import SlowFastIR

/// A tensor as bytes: row-major, little-endian, `dtype` elements.
public struct RawTensor: Equatable, Sendable {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }
}

/// Why a weight could not be moved between its ONNX and canonical forms.
public enum WeightTransformError: Error, CustomStringConvertible, Equatable {
    case notExact(tensor: String, step: String)
    case shapeMismatch(tensor: String, shape: [Int], expected: [Int])
    case badPacking(tensor: String, rows: Int, parts: Int)
    case needsFloat(tensor: String, dtype: String, step: String)
    case dtypeMismatch(tensor: String, dtype: String, expected: String)
    case overflow(tensor: String, value: Double, dtype: String)

    public var description: String {
        switch self {
        case .notExact(let tensor, let step):
            return "tensor '\(tensor)': its transform step '\(step)' cannot be undone exactly, so its canonical values are not known"
        case .shapeMismatch(let tensor, let shape, let expected):
            return "tensor '\(tensor)' has shape \(shape), expected \(expected)"
        case .badPacking(let tensor, let rows, let parts):
            return "tensor '\(tensor)': its parts have \(parts) rows in all but the tensor has \(rows)"
        case .needsFloat(let tensor, let dtype, let step):
            return "tensor '\(tensor)' is \(dtype): '\(step)' needs a float type"
        case .overflow(let tensor, let value, let dtype):
            return "tensor '\(tensor)': value \(value) is beyond \(dtype)'s range (it would become infinity); --allow-overflow saturates it"
        case .dtypeMismatch(let tensor, let dtype, let expected):
            return "tensor '\(tensor)' is \(dtype) and cannot become \(expected) (only float32, float16 and bfloat16 convert)"
        }
    }
}

extension SafeTensorsDType {
    /// The safetensors name of an ONNX element type, where there is one.
    public init?(_ type: ElementType) {
        switch type {
        case .double: self = .f64
        case .float: self = .f32
        case .float16: self = .f16
        case .bfloat16: self = .bf16
        case .int64: self = .i64
        case .int32: self = .i32
        case .int16: self = .i16
        case .int8: self = .i8
        case .uint64: self = .u64
        case .uint32: self = .u32
        case .uint16: self = .u16
        case .uint8: self = .u8
        case .bool: self = .bool
        default: return nil
        }
    }

    /// float32, float16 or bfloat16: the types import and export convert between.
    public var isConvertibleFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// What a narrowing conversion does with a finite value beyond the target type's range.
public enum OverflowPolicy: Sendable {
    /// Refuse, naming the tensor and the value (the default: never a silent infinity).
    case refuse
    /// Saturate to the largest finite value of that sign, and record the tensor in the log.
    case saturate(OverflowLog)
}

/// The tensors a saturating conversion clipped, and how many values in each.
public final class OverflowLog: @unchecked Sendable {
    // Invariant: appended to by one conversion at a time (exports and imports convert tensors
    // one after another).
    public private(set) var saturated: [(tensor: String, count: Int)] = []
    public init() {}
    func record(_ tensor: String, _ count: Int) { saturated.append((tensor, count)) }
}

extension RawTensor {
    /// The same values as `dtype` (float32, float16 and bfloat16 convert, rounding to nearest
    /// even; any other change is refused). A finite value that would become infinite in
    /// `dtype` (65520 in float16) is refused naming it, or saturated, as `overflow` says.
    public func converted(to dtype: SafeTensorsDType, overflow: OverflowPolicy = .refuse) throws -> RawTensor {
        if dtype == self.dtype { return self }
        guard dtype.isConvertibleFloat, self.dtype.isConvertibleFloat else {
            throw WeightTransformError.dtypeMismatch(tensor: name, dtype: self.dtype.rawValue, expected: dtype.rawValue)
        }
        var out = try DTypeConversion.convert(bytes, from: self.dtype, to: dtype)
        if dtype != .f32, self.dtype.byteWidth >= dtype.byteWidth {
            try checkOverflow(&out, to: dtype, overflow: overflow)
        }
        return RawTensor(name: name, dtype: dtype, shape: shape, bytes: out)
    }

    /// Finds 16-bit results that are infinite where the source value is finite.
    private func checkOverflow(_ out: inout [UInt8], to dtype: SafeTensorsDType, overflow: OverflowPolicy) throws {
        let infinity: UInt16 = dtype == .f16 ? 0x7C00 : 0x7F80
        let largest: UInt16 = dtype == .f16 ? 0x7BFF : 0x7F7F
        let wide = self.dtype == .f32 ? bytes : try DTypeConversion.convert(bytes, from: self.dtype, to: .f32)
        var clipped = 0
        for index in 0 ..< out.count / 2 {
            let bits = UInt16(out[2 * index]) | UInt16(out[2 * index + 1]) << 8
            guard bits & 0x7FFF == infinity else { continue }
            let source = wide.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: index * 4, as: Float.self) }
            guard source.isFinite else { continue }
            guard case .saturate = overflow else {
                throw WeightTransformError.overflow(tensor: name, value: Double(source), dtype: dtype.rawValue)
            }
            let saturated = (bits & 0x8000) | largest
            out[2 * index] = UInt8(truncatingIfNeeded: saturated)
            out[2 * index + 1] = UInt8(truncatingIfNeeded: saturated >> 8)
            clipped += 1
        }
        if clipped > 0, case .saturate(let log) = overflow { log.record(name, clipped) }
    }

    /// Whether every value is one that `dtype` holds exactly (converting there and back gives
    /// the same bytes): a float32 tensor of float16 values is a float16 tensor up-cast.
    public func isExactly(in dtype: SafeTensorsDType) throws -> Bool {
        guard dtype != self.dtype else { return true }
        return try converted(to: dtype).converted(to: self.dtype).bytes == bytes
    }
}

extension ParameterTransform {
    /// The canonical tensors an ONNX tensor stores: its transpose undone, then its offset and
    /// scale, then split into its parts (or one tensor named `canonicalName`). Throws when a
    /// step cannot be undone exactly: redoing the steps must give the ONNX bytes back.
    public func canonicalTensors(of onnx: RawTensor, canonicalName: String) throws -> [RawTensor] {
        var canonical = onnx
        canonical.name = canonicalName
        if transpose { canonical = try Self.transposed(canonical) }
        if offset != nil || scale != nil { canonical = try undoAffine(canonical) }
        let result = try split(canonical)
        // Exactness: the forward steps on the result must give the stored bytes back.
        if offset != nil || scale != nil {
            let again = try onnxTensor(from: result, name: onnx.name, dtype: onnx.dtype)
            if again.bytes != onnx.bytes { throw WeightTransformError.notExact(tensor: onnx.name, step: summary) }
        }
        return result
    }

    /// The ONNX tensor made from canonical tensors (in part order, or the one tensor), in
    /// `dtype`: parts stacked by rows, offset and scale applied, transposed.
    public func onnxTensor(from canonical: [RawTensor], name: String, dtype: SafeTensorsDType,
                           overflow: OverflowPolicy = .refuse) throws -> RawTensor {
        let converted = try canonical.map { try $0.converted(to: dtype, overflow: overflow) }
        var packed: RawTensor
        if converted.count == 1 {
            packed = converted[0]
            packed.name = name
        } else {
            guard let first = converted.first else { throw WeightTransformError.badPacking(tensor: name, rows: 0, parts: 0) }
            let tail = Array(first.shape.dropFirst())
            var bytes: [UInt8] = []
            var rows = 0
            for part in converted {
                guard Array(part.shape.dropFirst()) == tail, let partRows = part.shape.first else {
                    throw WeightTransformError.shapeMismatch(tensor: part.name, shape: part.shape, expected: [part.shape.first ?? 0] + tail)
                }
                rows += partRows
                bytes += part.bytes
            }
            packed = RawTensor(name: name, dtype: dtype, shape: [rows] + tail, bytes: bytes)
        }
        if offset != nil || scale != nil { packed = try applyAffine(packed) }
        if transpose { packed = try Self.transposed(packed) }
        packed.name = name
        return packed
    }

    /// The canonical shape of each part (or of the whole), from the ONNX shape.
    public func canonicalShapes(onnxShape: [Int], canonicalName: String) throws -> [(name: String, shape: [Int])] {
        // A quantized tensor stands for the [out, in] matrix its storage describes.
        if let quantization {
            return try partShapes(canonicalShape: [quantization.shape.outFeatures, quantization.shape.inFeatures], canonicalName: canonicalName)
        }
        var shape = onnxShape
        if transpose {
            guard shape.count == 2 else { throw WeightTransformError.shapeMismatch(tensor: canonicalName, shape: shape, expected: [0, 0]) }
            shape.reverse()
        }
        return try partShapes(canonicalShape: shape, canonicalName: canonicalName)
    }

    /// Each part's shape within a canonical (already untransposed) shape.
    private func partShapes(canonicalShape shape: [Int], canonicalName: String) throws -> [(name: String, shape: [Int])] {
        guard let parts else { return [(canonicalName, shape)] }
        let total = parts.reduce(0) { $0 + $1.rows }
        guard let rows = shape.first, rows == total else {
            throw WeightTransformError.badPacking(tensor: canonicalName, rows: shape.first ?? 0, parts: total)
        }
        return parts.map { ($0.name, [$0.rows] + shape.dropFirst()) }
    }

    /// The canonical tensors of a quantized tensor, from its dequantized [out, in] values
    /// (float32): split into its parts.
    public func canonicalTensors(dequantized values: [Float], canonicalName: String) throws -> [RawTensor] {
        guard let quantization else { throw WeightTransformError.notExact(tensor: canonicalName, step: "dequantize") }
        let shape = [quantization.shape.outFeatures, quantization.shape.inFeatures]
        guard values.count == shape[0] * shape[1] else {
            throw WeightTransformError.shapeMismatch(tensor: canonicalName, shape: [values.count], expected: shape)
        }
        let bytes = values.withUnsafeBytes { [UInt8]($0) }
        return try split(RawTensor(name: canonicalName, dtype: .f32, shape: shape, bytes: bytes))
    }

    private func split(_ tensor: RawTensor) throws -> [RawTensor] {
        guard let parts else { return [tensor] }
        let shapes = try partShapes(canonicalShape: tensor.shape, canonicalName: tensor.name)
        let rowBytes = (tensor.shape.dropFirst().reduce(1, *)) * tensor.dtype.byteWidth
        var start = 0
        return zip(parts, shapes).map { part, shape in
            let end = start + part.rows * rowBytes
            defer { start = end }
            return RawTensor(name: part.name, dtype: tensor.dtype, shape: shape.shape, bytes: Array(tensor.bytes[start ..< end]))
        }
    }

    /// The 2-D transpose, on bytes of any element width.
    static func transposed(_ tensor: RawTensor) throws -> RawTensor {
        guard tensor.shape.count == 2 else {
            throw WeightTransformError.shapeMismatch(tensor: tensor.name, shape: tensor.shape, expected: [0, 0])
        }
        let rows = tensor.shape[0], columns = tensor.shape[1]
        let out: [UInt8]
        switch tensor.dtype.byteWidth {
        case 4: out = transpose(tensor.bytes, rows: rows, columns: columns, as: UInt32.self)
        case 2: out = transpose(tensor.bytes, rows: rows, columns: columns, as: UInt16.self)
        case 8: out = transpose(tensor.bytes, rows: rows, columns: columns, as: UInt64.self)
        default: out = transpose(tensor.bytes, rows: rows, columns: columns, as: UInt8.self)
        }
        return RawTensor(name: tensor.name, dtype: tensor.dtype, shape: [columns, rows], bytes: out)
    }

    /// `bytes` as a rows x columns matrix of `T`, transposed.
    private static func transpose<T: FixedWidthInteger>(_ bytes: [UInt8], rows: Int, columns: Int, as _: T.Type) -> [UInt8] {
        precondition(bytes.count == rows * columns * MemoryLayout<T>.size, "shape and byte count agree")
        return [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, initialized in
            bytes.withUnsafeBytes { raw in
                transpose(raw, into: UnsafeMutableRawBufferPointer(buffer), rows: rows, columns: columns, width: MemoryLayout<T>.size)
            }
            initialized = bytes.count
        }
    }

    /// Writes the transpose of the rows x columns matrix in `source` (elements of `width`
    /// bytes: 1, 2, 4 or 8) into `target`, in blocks of 32 x 32 elements so both sides stay in
    /// cache. Both buffers hold at least rows * columns * width bytes.
    public static func transpose(_ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer,
                                 rows: Int, columns: Int, width: Int) {
        func run<T: FixedWidthInteger>(_: T.Type) {
            let count = rows * columns
            precondition(source.count >= count * MemoryLayout<T>.size && target.count >= count * MemoryLayout<T>.size,
                         "buffers hold the matrix")
            guard count > 0, let from = source.baseAddress, let to = target.baseAddress else { return }
            let input = from.assumingMemoryBound(to: T.self), output = to.assumingMemoryBound(to: T.self)
            let block = 32
            var rowBlock = 0
            while rowBlock < rows {
                let rowEnd = min(rowBlock + block, rows)
                var columnBlock = 0
                while columnBlock < columns {
                    let columnEnd = min(columnBlock + block, columns)
                    for row in rowBlock ..< rowEnd {
                        let base = row * columns
                        for column in columnBlock ..< columnEnd { output[column * rows + row] = input[base + column] }
                    }
                    columnBlock = columnEnd
                }
                rowBlock = rowEnd
            }
        }
        switch width {
        case 8: run(UInt64.self)
        case 4: run(UInt32.self)
        case 2: run(UInt16.self)
        default: run(UInt8.self)
        }
    }

    private func floats(_ tensor: RawTensor) throws -> [Float] {
        guard tensor.dtype.isConvertibleFloat else {
            throw WeightTransformError.needsFloat(tensor: tensor.name, dtype: tensor.dtype.rawValue, step: summary)
        }
        let wide = try DTypeConversion.convert(tensor.bytes, from: tensor.dtype, to: .f32)
        return wide.withUnsafeBytes { raw in (0 ..< wide.count / 4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    }

    private func withFloats(_ tensor: RawTensor, _ values: [Float]) throws -> RawTensor {
        let wide = values.withUnsafeBytes { Array($0) }
        return RawTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape,
                         bytes: try DTypeConversion.convert(wide, from: .f32, to: tensor.dtype))
    }

    private func applyAffine(_ tensor: RawTensor) throws -> RawTensor {
        let add = Float(offset ?? 0), multiply = Float(scale ?? 1)
        return try withFloats(tensor, try floats(tensor).map { ($0 + add) * multiply })
    }

    private func undoAffine(_ tensor: RawTensor) throws -> RawTensor {
        let add = Float(offset ?? 0), multiply = Float(scale ?? 1)
        return try withFloats(tensor, try floats(tensor).map { $0 / multiply - add })
    }
}
