/// A tensor element type as named in a safetensors header.
///
/// Only these 13 names are accepted; any other (e.g. `F8_E4M3`) is refused when a file is
/// opened with `SafeTensorsError.unsupportedDType`.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element (BOOL is one byte per element).
    public var byteWidth: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// One tensor described by a safetensors header.
///
/// `dataRange` is relative to the first byte after the header (the data buffer), not to the
/// start of the file. Entries from an opened file are already validated: the range length
/// equals `elementCount * dtype.byteWidth` without overflow.
public struct SafeTensorsEntry: Sendable, Hashable {
    /// Tensor name (arbitrary UTF-8 from the file; escape before printing).
    public let name: String
    /// Element type.
    public let dtype: SafeTensorsDType
    /// Dimensions; `[]` is a scalar.
    public let shape: [Int]
    /// Byte span inside the data buffer.
    public let dataRange: Range<Int>

    /// Creates an entry; no validation is done here (the file reader and writer validate).
    public init(name: String, dtype: SafeTensorsDType, shape: [Int], dataRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
    }

    /// Product of the shape (1 for a scalar).
    ///
    /// Never traps: entries read from a file were checked not to overflow; for a hand-made
    /// entry whose product overflows this returns `Int.max` (use `checkedByteCount` to detect
    /// overflowing or negative shapes).
    public var elementCount: Int {
        var n = 1
        for d in shape {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return Int.max }
            n = p
        }
        return n
    }

    /// Element count × byte width with overflow checking; nil on overflow or negative dims.
    public static func checkedByteCount(shape: [Int], dtype: SafeTensorsDType) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        let (b, o) = n.multipliedReportingOverflow(by: dtype.byteWidth)
        return o ? nil : b
    }
}
