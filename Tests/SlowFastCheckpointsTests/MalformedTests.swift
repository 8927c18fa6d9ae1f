import Foundation
import XCTest
@testable import SlowFastCheckpoints

/// One test per validation rule: each asserts the specific error case, and (through
/// `assertSTError`) that the message is one line naming the file.
final class MalformedTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("bad") }
    override func tearDown() { removeTree(dir) }

    /// Writes `bytes` to a fresh file and returns its path.
    func file(_ bytes: [UInt8], _ name: String = "x.safetensors") throws -> String {
        let p = dir + "/" + name
        try writeBytes(bytes, to: p)
        return p
    }

    func open(_ p: String) throws -> SafeTensorsFile { try SafeTensorsFile.open(path: p) }

    let okEntry = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"

    func testFileShorterThan8Bytes() throws {
        let p = try file([1, 0, 0, 0, 0])
        assertSTError(try open(p), path: p) { if case .fileTooSmall(_, 5) = $0 { return true }; return false }
        let e = try file([], "empty.safetensors")
        assertSTError(try open(e), path: e) { if case .fileTooSmall(_, 0) = $0 { return true }; return false }
    }

    func testHeaderLengthZero() throws {
        let p = try file(rawFile("{}", length: 0))
        assertSTError(try open(p), path: p) { if case .headerLengthZero = $0 { return true }; return false }
    }

    func testHeaderTooLarge() throws {
        let p = try file(rawFile("{}", length: 100 * 1024 * 1024 + 1))
        assertSTError(try open(p), path: p) { if case .headerTooLarge = $0 { return true }; return false }
        let q = try file(rawFile("{}", length: UInt64.max), "max.safetensors")
        assertSTError(try open(q), path: q) { if case .headerTooLarge = $0 { return true }; return false }
    }

    func testHeaderPastEndOfFile() throws {
        let p = try file(rawFile("{}", length: 3))
        assertSTError(try open(p), path: p) { if case .headerPastEnd(_, 3, 10) = $0 { return true }; return false }
    }

    func testHeaderNotUTF8() throws {
        var h = Array("{\"a\":\"xx\"}".utf8)
        h[6] = 0xFF
        let p = try file(rawFile(headerBytes: h))
        assertSTError(try open(p), path: p) { if case .headerNotUTF8 = $0 { return true }; return false }
        // Overlong encoding and an encoded surrogate are invalid UTF-8 too.
        let q = try file(rawFile(headerBytes: Array("{\"".utf8) + [0xC0, 0xAF] + Array("\":1}".utf8)), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .headerNotUTF8 = $0 { return true }; return false }
        let r = try file(rawFile(headerBytes: Array("{\"".utf8) + [0xED, 0xA0, 0x80] + Array("\":1}".utf8)), "r.safetensors")
        assertSTError(try open(r), path: r) { if case .headerNotUTF8 = $0 { return true }; return false }
    }

    func testHeaderNotJSON() throws {
        for (i, text) in ["{\"a\":", "{a:1}", "{\"a\":1,}", "{} x", "{\"a\":01}", "{\"a\":\"\\x\"}", "{\"a\":\"\u{1}\"}",
                          "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":tru}", "{\"a\":1.}", "{\"a\":-}", "{'a':1}"].enumerated() {
            let p = try file(rawFile(text), "j\(i).safetensors")
            assertSTError(try open(p), path: p) { if case .headerInvalidJSON = $0 { return true }; return false }
        }
    }

    func testHeaderNotObject() throws {
        for (i, text) in ["[]", "1", "\"s\"", "null", "true"].enumerated() {
            let p = try file(rawFile(text), "o\(i).safetensors")
            assertSTError(try open(p), path: p) { if case .headerNotObject = $0 { return true }; return false }
        }
    }

    func testNestingDepthLimit() throws {
        let deep = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        let p = try file(rawFile("{\"__metadata__\":\(deep)}"))
        assertSTError(try open(p), path: p) {
            if case let .headerInvalidJSON(_, _, reason) = $0 { return reason.contains("nesting") }; return false
        }
        // 64 levels parse (then fail validation for another reason).
        let ok = String(repeating: "[", count: 63) + String(repeating: "]", count: 63)
        let q = try file(rawFile("{\"__metadata__\":\(ok)}"), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .invalidMetadata = $0 { return true }; return false }
    }

    func testEntryNotObject() throws {
        let p = try file(rawFile("{\"a\":[1,2]}"))
        assertSTError(try open(p), path: p) { if case .entryNotObject(_, "a") = $0 { return true }; return false }
    }

    func testMissingFields() throws {
        for field in ["dtype", "shape", "data_offsets"] {
            var parts = ["\"dtype\":\"F32\"", "\"shape\":[1]", "\"data_offsets\":[0,4]"]
            parts.removeAll { $0.hasPrefix("\"\(field)\"") }
            let p = try file(rawFile("{\"t\":{\(parts.joined(separator: ","))}}", data: [0, 0, 0, 0]), "\(field).safetensors")
            assertSTError(try open(p), path: p) {
                if case .missingField(_, "t", field) = $0 { return true }; return false
            }
        }
    }

    func testMistypedFields() throws {
        let cases: [(String, String)] = [
            ("{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}", "dtype"),
            ("{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}", "shape"),
            ("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}", "shape"),
            ("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}", "data_offsets"),
            ("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}", "data_offsets"),
            ("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}", "data_offsets"),
            ("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,null]}", "data_offsets"),
        ]
        for (i, (entry, field)) in cases.enumerated() {
            let p = try file(rawFile("{\"t\":\(entry)}", data: [0, 0, 0, 0]), "m\(i).safetensors")
            assertSTError(try open(p), path: p) {
                if case .fieldWrongType(_, "t", field, _) = $0 { return true }; return false
            }
        }
    }

    func testUnknownDType() throws {
        for (i, d) in ["F8_E4M3", "f32", "Q4", ""].enumerated() {
            let p = try file(rawFile("{\"t\":{\"dtype\":\"\(d)\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [0]), "d\(i).safetensors")
            assertSTError(try open(p), path: p) {
                if case .unsupportedDType(_, "t", d) = $0 { return $0.description.contains("not supported") }; return false
            }
        }
    }

    func testBadShapeDimensions() throws {
        for (i, dim) in ["-1", "1.5", "1e2", "9223372036854775808", "18446744073709551616", "-0"].enumerated() {
            let p = try file(rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[\(dim)],\"data_offsets\":[0,1]}}", data: [0]), "s\(i).safetensors")
            assertSTError(try open(p), path: p) {
                if case .invalidShapeDimension(_, "t", dim) = $0 { return true }; return false
            }
        }
    }

    func testBadOffsets() throws {
        for (i, off) in ["-1", "0.0", "4e0", "9223372036854775808", "99999999999999999999999"].enumerated() {
            let p = try file(rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\(off),1]}}", data: [0]), "o\(i).safetensors")
            assertSTError(try open(p), path: p) {
                if case .invalidOffset(_, "t", off) = $0 { return true }; return false
            }
        }
    }

    func testBeginAfterEnd() throws {
        let p = try file(rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,3]}}", data: [0, 0, 0, 0, 0]))
        assertSTError(try open(p), path: p) { if case .offsetsReversed(_, "t", 4, 3) = $0 { return true }; return false }
    }

    func testEndPastDataBuffer() throws {
        let p = try file(rawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data: [0, 0, 0, 0]))
        assertSTError(try open(p), path: p) { if case .dataPastEnd(_, "t", 8, 4) = $0 { return true }; return false }
        let q = try file(rawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775807]}}", data: [0]), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .dataPastEnd = $0 { return true }; return false }
    }

    func testElementCountOverflow() throws {
        for (i, shape) in ["[4611686018427387904,4]", "[9223372036854775807,9223372036854775807,2]", "[3074457345618258603]"].enumerated() {
            let p = try file(rawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "v\(i).safetensors")
            assertSTError(try open(p), path: p) { if case .sizeOverflow(_, "t") = $0 { return true }; return false }
        }
        // A zero dimension makes the product 0 even with huge others: no overflow, size 0.
        let z = try file(rawFile("{\"t\":{\"dtype\":\"F64\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,0]}}"), "z.safetensors")
        XCTAssertEqual(try open(z).entries.first?.elementCount, 0)
    }

    func testSizeMismatch() throws {
        let p = try file(rawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]))
        assertSTError(try open(p), path: p) { if case .sizeMismatch(_, "t", 8, 4) = $0 { return true }; return false }
    }

    func testOverlappingSpans() throws {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}"
        let p = try file(rawFile(h, data: Array(repeating: 0, count: 6)))
        assertSTError(try open(p), path: p) { if case .overlappingSpans(_, "b", "a") = $0 { return true }; return false }
        // Same span twice.
        let h2 = "{\"a\":\(okEntry),\"b\":\(okEntry)}"
        let q = try file(rawFile(h2, data: [0, 0, 0, 0]), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .overlappingSpans = $0 { return true }; return false }
    }

    func testUncoveredBytes() throws {
        // Gap between tensors.
        let gap = "{\"a\":\(okEntry),\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}"
        let p = try file(rawFile(gap, data: Array(repeating: 0, count: 8)))
        assertSTError(try open(p), path: p) { if case .uncoveredBytes(_, 4..<6) = $0 { return true }; return false }
        // Trailing bytes.
        let q = try file(rawFile("{\"a\":\(okEntry)}", data: Array(repeating: 0, count: 6)), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .uncoveredBytes(_, 4..<6) = $0 { return true }; return false }
        // Leading bytes.
        let lead = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}"
        let r = try file(rawFile(lead, data: Array(repeating: 0, count: 6)), "r.safetensors")
        assertSTError(try open(r), path: r) { if case .uncoveredBytes(_, 0..<2) = $0 { return true }; return false }
        // No tensors but data.
        let s = try file(rawFile("{}", data: [1]), "s.safetensors")
        assertSTError(try open(s), path: s) { if case .uncoveredBytes(_, 0..<1) = $0 { return true }; return false }
    }

    func testDuplicateName() throws {
        let h = "{\"a\":\(okEntry),\"a\":\(okEntry)}"
        let p = try file(rawFile(h, data: [0, 0, 0, 0]))
        assertSTError(try open(p), path: p) { if case .duplicateKey(_, "a") = $0 { return true }; return false }
        // Duplicate via escapes: "a" and "\u0061" are the same name.
        let h2 = "{\"a\":\(okEntry),\"\\u0061\":\(okEntry)}"
        let q = try file(rawFile(h2, data: [0, 0, 0, 0]), "q.safetensors")
        assertSTError(try open(q), path: q) { if case .duplicateKey(_, "a") = $0 { return true }; return false }
        // Duplicate field inside an entry.
        let h3 = "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        let r = try file(rawFile(h3, data: [0, 0, 0, 0]), "r.safetensors")
        assertSTError(try open(r), path: r) { if case .duplicateKey(_, "dtype") = $0 { return true }; return false }
    }

    func testBadMetadata() throws {
        let cases = ["{\"__metadata__\":{\"k\":1}}", "{\"__metadata__\":[\"k\"]}", "{\"__metadata__\":\"x\"}",
                     "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", "{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}"]
        for (i, h) in cases.enumerated() {
            let p = try file(rawFile(h), "md\(i).safetensors")
            assertSTError(try open(p), path: p) {
                switch $0 {
                case .invalidMetadata: return i < 4
                case .duplicateKey(_, "k"): return i == 4
                default: return false
                }
            }
        }
        // Valid metadata, including null (treated as empty).
        let ok = try file(rawFile("{\"__metadata__\":{\"a\":\"b\",\"\\ud83d\\ude00\":\"\\n\"}}"), "ok.safetensors")
        XCTAssertEqual(try open(ok).metadata, ["a": "b", "😀": "\n"])
        let null = try file(rawFile("{\"__metadata__\":null}"), "null.safetensors")
        XCTAssertEqual(try open(null).metadata, [:])
    }

    func testNotARegularFile() throws {
        assertSTError(try open(dir), path: dir) { if case .notRegularFile(_, "a directory") = $0 { return true }; return false }
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        assertSTError(try open(fifo), path: fifo) { if case .notRegularFile(_, "a FIFO") = $0 { return true }; return false }
        assertSTError(try open("/dev/null"), path: "/dev/null") {
            if case .notRegularFile(_, "a character device") = $0 { return true }; return false
        }
        let missing = dir + "/missing.safetensors"
        assertSTError(try open(missing), path: missing) { if case .io(_, "open", ENOENT) = $0 { return true }; return false }
    }

    func testShrunkFileIsReportedNotFaulted() throws {
        var w = SafeTensorsWriter()
        w.add(name: "a", dtype: .u8, shape: [8192], bytes: Array(repeating: 7, count: 8192))
        w.add(name: "b", dtype: .u8, shape: [8192], bytes: Array(repeating: 9, count: 8192))
        let p = dir + "/shrink.safetensors"
        try w.write(to: p)
        let f = try open(p)
        let a = try XCTUnwrap(f.entry(named: "a")), b = try XCTUnwrap(f.entry(named: "b"))
        XCTAssertEqual(truncate(p, off_t(f.dataStart + 8192)), 0)
        assertSTError(try f.withBytes(of: b) { $0.count }, path: p) {
            if case .fileShrunk(_, "b", _, _) = $0 { return true }; return false
        }
        XCTAssertEqual(try f.withBytes(of: a) { $0.allSatisfy { $0 == 7 } }, true)
        // An entry from elsewhere is refused.
        let foreign = SafeTensorsEntry(name: "a", dtype: .u8, shape: [8192], dataRange: 1..<8193)
        assertSTError(try f.withBytes(of: foreign) { $0.count }, path: p) {
            if case .entryNotInFile = $0 { return true }; return false
        }
    }

    func testControlCharactersInNamesCannotForgeLines() throws {
        let evil = "ok\\n\\rERROR: forged\\u2028line\\u001b[31m"
        let p = try file(rawFile("{\"\(evil)\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [0]))
        assertSTError(try open(p), path: p) { e in
            guard case let .unsupportedDType(_, name, _) = e else { return false }
            let d = e.description
            return name.contains("\n") && !d.contains("\u{2028}") && !d.contains("\u{1b}") && d.contains("\\n")
        }
        // A path with a newline is escaped too.
        let q = dir + "/new\nline.safetensors"
        try writeBytes([1], to: q)
        do {
            _ = try open(q)
            XCTFail("expected error")
        } catch let e as SafeTensorsError {
            XCTAssertFalse(e.description.contains("\n"))
            XCTAssertTrue(e.description.contains("new\\nline"))
        }
    }

    func testValidEdgeFilesOpen() throws {
        // Whitespace around the JSON and padding are fine; key order in entries does not matter.
        let h = "  {\"a\" : {\"data_offsets\":[0,4],\"shape\":[1],\"dtype\":\"F32\",\"extra\":[1,{\"x\":null}]}}\n\t  "
        let p = try file(rawFile(h, data: f32Bytes([2.5])))
        let f = try open(p)
        XCTAssertEqual(f32Values(try f.copyBytes(of: XCTUnwrap(f.entry(named: "a")))), [2.5])
        // Surrogate pair escape in a name.
        let q = try file(rawFile("{\"\\ud83d\\ude00\":\(okEntry)}", data: [0, 0, 0, 0]), "q.safetensors")
        XCTAssertNotNil(try open(q).entry(named: "😀"))
    }
}
