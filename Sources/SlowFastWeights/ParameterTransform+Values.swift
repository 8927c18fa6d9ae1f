import SlowFastAdapters
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

extension RawTensor {
    /// The same values as `dtype` (float32, float16 and bfloat16 convert, rounding to nearest
    /// even; any other change is refused).
    public func converted(to dtype: SafeTensorsDType) throws -> RawTensor {
        if dtype == self.dtype { return self }
        guard dtype.isConvertibleFloat, self.dtype.isConvertibleFloat else {
            throw WeightTransformError.dtypeMismatch(tensor: name, dtype: self.dtype.rawValue, expected: dtype.rawValue)
        }
        return RawTensor(name: name, dtype: dtype, shape: shape, bytes: try DTypeConversion.convert(bytes, from: self.dtype, to: dtype))
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
    public func onnxTensor(from canonical: [RawTensor], name: String, dtype: SafeTensorsDType) throws -> RawTensor {
        let converted = try canonical.map { try $0.converted(to: dtype) }
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
        let rows = tensor.shape[0], columns = tensor.shape[1], width = tensor.dtype.byteWidth
        var out = [UInt8](repeating: 0, count: tensor.bytes.count)
        tensor.bytes.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { target in
                // Blocks of 32 x 32 elements keep both sides in cache on large matrices.
                let block = 32
                for rowBlock in stride(from: 0, to: rows, by: block) {
                    for columnBlock in stride(from: 0, to: columns, by: block) {
                        for row in rowBlock ..< min(rowBlock + block, rows) {
                            for column in columnBlock ..< min(columnBlock + block, columns) {
                                let from = (row * columns + column) * width, to = (column * rows + row) * width
                                target.baseAddress!.advanced(by: to).copyMemory(from: source.baseAddress!.advanced(by: from), byteCount: width)
                            }
                        }
                    }
                }
            }
        }
        return RawTensor(name: tensor.name, dtype: tensor.dtype, shape: [columns, rows], bytes: out)
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
