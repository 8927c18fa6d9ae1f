/// A parsed JSON value that keeps object keys in file order and numbers as their source text.
enum JSONValue: Equatable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// Number literal as written; `isInteger` when it has no fraction or exponent.
    case number(text: String, isInteger: Bool)
    case bool(Bool)
    case null

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x, i), .number(y, j)): return x == y && i == j
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// The integer value if this is an integer literal >= 0 that fits in `Int`.
    var nonNegativeInt: Int? {
        guard case let .number(text, isInteger) = self, isInteger, !text.hasPrefix("-") else { return nil }
        var v = 0
        for u in text.utf8 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(u &- 0x30))
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }

    /// Short text for error messages.
    var sourceText: String {
        switch self {
        case let .number(text, _): return text
        case let .string(s): return s
        case .object: return "<object>"
        case .array: return "<array>"
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}

/// Why strict parsing failed.
enum JSONParseFailure: Error, Equatable {
    case notUTF8
    case syntax(offset: Int, reason: String)
    case duplicateKey(String)
}

/// A strict RFC 8259 JSON parser for untrusted headers.
///
/// Unlike `JSONSerialization` it reports duplicate object keys, rejects lone surrogate
/// escapes, limits nesting depth, and never converts numbers (they are kept as text).
struct StrictJSONParser {
    static let maxDepth = 64

    private let bytes: [UInt8]
    private var pos = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Parses a complete document (surrounding whitespace allowed, nothing else).
    static func parse(_ bytes: [UInt8]) throws(JSONParseFailure) -> JSONValue {
        guard isValidUTF8(bytes) else { throw .notUTF8 }
        var p = StrictJSONParser(bytes)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        guard p.pos == bytes.count else { throw p.fail("trailing characters after the top-level value") }
        return v
    }

    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var decoder = UTF8()
        var it = bytes.makeIterator()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    private func fail(_ reason: String) -> JSONParseFailure { .syntax(offset: pos, reason: reason) }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func expectLiteral(_ lit: String, _ value: JSONValue) throws(JSONParseFailure) -> JSONValue {
        for u in lit.utf8 {
            guard pos < bytes.count, bytes[pos] == u else { throw fail("invalid literal, expected \(lit)") }
            pos += 1
        }
        return value
    }

    private mutating func parseValue(depth: Int) throws(JSONParseFailure) -> JSONValue {
        guard pos < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expectLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try expectLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try expectLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseFailure) -> JSONValue {
        guard depth <= StrictJSONParser.maxDepth else { throw fail("nesting deeper than \(StrictJSONParser.maxDepth)") }
        pos += 1  // '{'
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<String>()
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            guard seen.insert(key).inserted else { throw .duplicateKey(key) }
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipWhitespace()
            let v = try parseValue(depth: depth)
            members.append((key, v))
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of input in object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseFailure) -> JSONValue {
        guard depth <= StrictJSONParser.maxDepth else { throw fail("nesting deeper than \(StrictJSONParser.maxDepth)") }
        pos += 1  // '['
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of input in array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func hex4() throws(JSONParseFailure) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard pos < bytes.count else { throw fail("truncated \\u escape") }
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func parseString() throws(JSONParseFailure) -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") { pos += 1; break }
            if c < 0x20 { throw fail("unescaped control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); pos += 1; continue }
            pos += 1
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xD800 && cp <= 0xDBFF {
                    guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("high surrogate not followed by a low surrogate escape")
                    }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low <= 0xDFFF else { throw fail("high surrogate not followed by a low surrogate") }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                } else if cp >= 0xDC00 && cp <= 0xDFFF {
                    throw fail("lone low surrogate escape")
                }
                guard let scalar = Unicode.Scalar(cp) else { throw fail("invalid code point escape") }
                out.append(contentsOf: Array(String(scalar).utf8))
            default:
                throw fail("invalid escape character")
            }
        }
        // The whole input was checked to be UTF-8 and escapes add whole scalars.
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func parseNumber() throws(JSONParseFailure) -> JSONValue {
        let start = pos
        var isInteger = true
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard isDigit(pos) else { throw fail("expected a digit") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) { throw fail("leading zero in number") }
        } else {
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard isDigit(pos) else { throw fail("expected a digit after '.'") }
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard isDigit(pos) else { throw fail("expected a digit in exponent") }
            while isDigit(pos) { pos += 1 }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        return .number(text: text, isInteger: isInteger)
    }
}
