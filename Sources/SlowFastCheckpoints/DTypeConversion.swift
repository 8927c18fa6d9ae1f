/// Conversions between float32, float16 and bfloat16 on raw little-endian byte buffers.
///
/// Narrowing rounds to nearest, ties to even; values too large become ±infinity; NaN stays
/// NaN (quiet, sign and top payload bits kept). Widening (f16 → f32, bf16 → f32) is exact.
/// f16 ↔ bf16 go through f32, which rounds once because the widening step is exact.
/// Buffers whose length is not a multiple of the source width are refused.
public enum DTypeConversion {
    // MARK: Scalar bit conversions

    /// float32 bits → float16 bits (round to nearest even).
    public static func float16Bits(fromFloat32Bits x: UInt32) -> UInt16 {
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xFF)
        let mant = x & 0x7F_FFFF
        if exp == 0xFF {
            if mant == 0 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: mant >> 13)  // quiet NaN, payload kept
        }
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }  // below half the smallest subnormal: rounds to ±0
            let m = mant | 0x80_0000
            let shift = UInt32(14 - e)  // 14...24
            var r = m >> shift
            let rem = m & ((UInt32(1) << shift) - 1)
            let half = UInt32(1) << (shift - 1)
            if rem > half || (rem == half && (r & 1) == 1) { r += 1 }
            return sign | UInt16(truncatingIfNeeded: r)
        }
        var h = UInt32(e) << 10 | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) { h += 1 }  // may carry into infinity: correct
        return sign | UInt16(truncatingIfNeeded: h)
    }

    /// float16 bits → float32 bits (exact).
    public static func float32Bits(fromFloat16Bits h: UInt16) -> UInt32 {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        var mant = UInt32(h & 0x3FF)
        if exp == 0x1F { return sign | 0x7F80_0000 | (mant << 13) }
        if exp == 0 {
            if mant == 0 { return sign }
            var e = -14
            while mant & 0x400 == 0 { mant <<= 1; e -= 1 }
            mant &= 0x3FF
            return sign | (UInt32(e + 127) << 23) | (mant << 13)
        }
        return sign | (UInt32(exp - 15 + 127) << 23) | (mant << 13)
    }

    /// float32 bits → bfloat16 bits (round to nearest even).
    public static func bfloat16Bits(fromFloat32Bits x: UInt32) -> UInt16 {
        if (x & 0x7F80_0000) == 0x7F80_0000 && (x & 0x7F_FFFF) != 0 {
            return UInt16(truncatingIfNeeded: x >> 16) | 0x0040  // quiet NaN
        }
        let lsb = (x >> 16) & 1
        let (r, _) = x.addingReportingOverflow(0x7FFF + lsb)  // cannot overflow for non-NaN input
        return UInt16(truncatingIfNeeded: r >> 16)
    }

    /// bfloat16 bits → float32 bits (exact).
    public static func float32Bits(fromBFloat16Bits b: UInt16) -> UInt32 {
        UInt32(b) << 16
    }

    // MARK: Buffer conversions

    /// Converts `bytes` holding `from` elements into `to` elements.
    ///
    /// Supported: any pair of F32, F16, BF16 (identity included). Throws
    /// `conversionUnsupported` for other dtypes or a length not a multiple of the width.
    public static func convert(_ bytes: UnsafeRawBufferPointer, from: SafeTensorsDType, to: SafeTensorsDType) throws -> [UInt8] {
        let floats: Set<SafeTensorsDType> = [.f32, .f16, .bf16]
        guard floats.contains(from), floats.contains(to) else {
            throw SafeTensorsError.conversionUnsupported(from: from.rawValue, to: to.rawValue, reason: "only F32, F16 and BF16 are supported")
        }
        guard bytes.count % from.byteWidth == 0 else {
            throw SafeTensorsError.conversionUnsupported(from: from.rawValue, to: to.rawValue,
                                                        reason: "buffer of \(bytes.count) bytes is not a multiple of \(from.byteWidth)")
        }
        let n = bytes.count / from.byteWidth
        var out = [UInt8](repeating: 0, count: n * to.byteWidth)
        for i in 0..<n {
            let f32 = readFloat32Bits(bytes, index: i, dtype: from)
            switch to {
            case .f32: put32(&out, i, f32)
            case .f16: put16(&out, i, float16Bits(fromFloat32Bits: f32))
            default: put16(&out, i, bfloat16Bits(fromFloat32Bits: f32))
            }
        }
        return out
    }

    /// `convert` for an array.
    public static func convert(_ bytes: [UInt8], from: SafeTensorsDType, to: SafeTensorsDType) throws -> [UInt8] {
        try bytes.withUnsafeBytes { try convert($0, from: from, to: to) }
    }

    /// Whether converting `bytes` from `from` to `to` loses nothing.
    ///
    /// True when every element converted to `to` and back gives the same bits, except that
    /// NaN → NaN counts as preserved whatever its payload. -0 must stay -0.
    public static func isLossless(_ bytes: UnsafeRawBufferPointer, from: SafeTensorsDType, to: SafeTensorsDType) throws -> Bool {
        let there = try convert(bytes, from: from, to: to)
        let back = try convert(there, from: to, to: from)
        let n = bytes.count / from.byteWidth
        return back.withUnsafeBytes { backBuf in
            for i in 0..<n {
                let a = readFloat32Bits(bytes, index: i, dtype: from)
                let b = readFloat32Bits(backBuf, index: i, dtype: from)
                if isNaN32(a) { if !isNaN32(b) { return false } else { continue } }
                if a != b { return false }
            }
            return true
        }
    }

    /// `isLossless` for an array.
    public static func isLossless(_ bytes: [UInt8], from: SafeTensorsDType, to: SafeTensorsDType) throws -> Bool {
        try bytes.withUnsafeBytes { try isLossless($0, from: from, to: to) }
    }

    static func isNaN32(_ x: UInt32) -> Bool { (x & 0x7F80_0000) == 0x7F80_0000 && (x & 0x7F_FFFF) != 0 }

    /// Reads element `index` (little-endian) as float32 bits. Caller guarantees
    /// `(index + 1) * dtype.byteWidth <= bytes.count` and dtype ∈ {F32, F16, BF16}.
    private static func readFloat32Bits(_ bytes: UnsafeRawBufferPointer, index: Int, dtype: SafeTensorsDType) -> UInt32 {
        let o = index * dtype.byteWidth
        switch dtype {
        case .f32:
            return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
        case .f16:
            return float32Bits(fromFloat16Bits: UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)
        default:
            return float32Bits(fromBFloat16Bits: UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)
        }
    }

    private static func put32(_ out: inout [UInt8], _ i: Int, _ v: UInt32) {
        for k in 0..<4 { out[i * 4 + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
    }

    private static func put16(_ out: inout [UInt8], _ i: Int, _ v: UInt16) {
        out[i * 2] = UInt8(truncatingIfNeeded: v)
        out[i * 2 + 1] = UInt8(truncatingIfNeeded: v >> 8)
    }
}
