/// Byte strings from a model file as Swift Strings, losslessly.
///
/// ONNX string fields (names, domains, doc strings, metadata, data locations) are bytes; the
/// format asks for UTF-8 but nothing enforces it, and onnxruntime runs a model whose value
/// names are not UTF-8. A Swift String holds Unicode scalars only, so the reader decodes with
/// `decode` and the writer (and every system call on a path built from a location) encodes
/// with `encode`, which gives back exactly the bytes read:
///
/// - valid UTF-8 in normal form C (every ASCII name, almost every other) decodes to its scalars;
/// - a byte that is not part of a valid UTF-8 sequence (always >= 0x80) becomes the scalar
///   U+10FF00 + byte, in the reserved range U+10FF80 ... U+10FFFF (plane 16, private use);
/// - a real occurrence of a scalar in that range (valid UTF-8 `F4 8F BE/BF xx`) is itself
///   stored as its four bytes, each escaped, so it cannot be confused with an escaped byte;
/// - a string whose scalars are not in Unicode normal form C (`e` + U+0301 rather than `é`)
///   has every byte >= 0x80 escaped: Swift compares Strings by canonical equivalence, so two
///   such spellings would otherwise be one dictionary key, one name.
///
/// Every decoded String is therefore in NFC, and two of them are equal exactly when their bytes are.
/// `encode(decode(b)) == b` for every byte string `b` (tested over random bytes). Strings we
/// make ourselves are plain Unicode and encode as their UTF-8. Error lines print an escaped
/// byte as `\xFF` (the CLI's `oneLine`).
public enum ByteString {
    /// Scalars U+10FF80 ... U+10FFFF stand for the bytes 0x80 ... 0xFF.
    static let escapeBase: UInt32 = 0x10FF00
    static let reserved: ClosedRange<UInt32> = 0x10FF80 ... 0x10FFFF

    /// The byte an escape scalar stands for; nil for any other scalar.
    @inline(__always)
    public static func escapedByte(_ scalar: Unicode.Scalar) -> UInt8? {
        reserved.contains(scalar.value) ? UInt8(truncatingIfNeeded: scalar.value - escapeBase) : nil
    }

    /// The String for `bytes` (stopping at nothing: a NUL byte is a byte like any other).
    public static func decode(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        if !bytes.contains(where: { $0 >= 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        let decoded = scalarsOrEscapes(bytes)
        // Canonical equivalence would merge spellings: such a string is kept as escaped bytes.
        // (`_nfcCodeUnits` is the standard library's public NFC view, which String comparison uses.)
        guard decoded._nfcCodeUnits.elementsEqual(decoded.utf8) else {
            return String(String.UnicodeScalarView(bytes.map { $0 < 0x80 ? Unicode.Scalar($0) : escape($0) }))
        }
        return decoded
    }

    /// Valid UTF-8 as its scalars (the reserved ones as escaped bytes), other bytes escaped.
    private static func scalarsOrEscapes(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        // Valid UTF-8 without reserved scalars decodes as itself.
        if !bytes.contains(where: { $0 >= 0xF4 }), let valid = String(validating: bytes, as: UTF8.self) { return valid }
        var scalars = String.UnicodeScalarView()
        var position = 0
        while position < bytes.count {
            if let (scalar, length) = scalar(in: bytes, at: position) {
                if reserved.contains(scalar.value) {
                    for byte in bytes[position ..< position + length] { scalars.append(escape(byte)) }
                } else {
                    scalars.append(scalar)
                }
                position += length
            } else {
                scalars.append(escape(bytes[position]))
                position += 1
            }
        }
        return String(scalars)
    }

    public static func decode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { decode($0) }
    }

    /// A NUL-terminated C string's bytes, decoded.
    public static func decode(cString pointer: UnsafePointer<CChar>) -> String {
        var length = 0
        while pointer[length] != 0 { length += 1 }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            decode(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// The bytes `string` stands for: escape scalars as their byte, the rest as UTF-8.
    public static func encode(_ string: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(string.utf8.count)
        for scalar in string.unicodeScalars {
            if let byte = escapedByte(scalar) { bytes.append(byte) } else { bytes.append(contentsOf: UTF8.encode(scalar)!) }
        }
        return bytes
    }

    /// Lends `string`'s bytes as a NUL-terminated C string (for system calls on paths).
    public static func withCString<R>(_ string: String, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        if string.utf8.allSatisfy({ $0 < 0xF4 }) { return try string.withCString(body) }
        let bytes = encode(string) + [0]
        return try bytes.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// Two upper-case hex digits.
    public static func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }

    @inline(__always)
    private static func escape(_ byte: UInt8) -> Unicode.Scalar {
        Unicode.Scalar(escapeBase + UInt32(byte))!
    }

    /// The scalar of the well-formed UTF-8 sequence at `position` and its length, or nil.
    /// Well-formed as Unicode defines it: no overlong forms, no surrogates, nothing past U+10FFFF.
    private static func scalar(in bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (Unicode.Scalar, Int)? {
        let lead = bytes[position]
        if lead < 0x80 { return (Unicode.Scalar(lead), 1) }
        let length: Int
        var lowest: UInt8 = 0x80, highest: UInt8 = 0xBF
        switch lead {
        case 0xC2 ... 0xDF: length = 2
        case 0xE0: length = 3; lowest = 0xA0
        case 0xE1 ... 0xEC, 0xEE ... 0xEF: length = 3
        case 0xED: length = 3; highest = 0x9F
        case 0xF0: length = 4; lowest = 0x90
        case 0xF1 ... 0xF3: length = 4
        case 0xF4: length = 4; highest = 0x8F
        default: return nil
        }
        guard position + length <= bytes.count else { return nil }
        var value = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for offset in 1 ..< length {
            let byte = bytes[position + offset]
            let (low, high) = offset == 1 ? (lowest, highest) : (0x80, 0xBF)
            guard byte >= low, byte <= high else { return nil }
            value = value << 6 | UInt32(byte & 0x3F)
        }
        return Unicode.Scalar(value).map { ($0, length) }
    }
}
