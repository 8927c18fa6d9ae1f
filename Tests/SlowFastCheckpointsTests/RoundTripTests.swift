import Foundation
import XCTest
@testable import SlowFastCheckpoints

final class RoundTripTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("rt") }
    override func tearDown() { removeTree(dir) }

    let f32 = f32Bytes([0, 1.5, -2, 3.25, 1e30, -0.0])
    let f16: [UInt8] = le([UInt16(0x3C00), 0xB800, 0x7BFF, 0x0000])
    let bf16: [UInt8] = le([UInt16(0x3F80), 0xC000, 0x7F80, 0x0001])
    let i64: [UInt8] = le([Int64(-1), 1 << 62, 0])
    let u8: [UInt8] = Array(0..<10)
    let bools: [UInt8] = [1, 0, 1, 1]

    func makeWriter() -> SafeTensorsWriter {
        var w = SafeTensorsWriter(metadata: ["format": "np", "origin": "swift", "weird\nkey": "va\"l\u{1}ue"])
        w.add(name: "f32", dtype: .f32, shape: [2, 3], bytes: f32)
        w.add(name: "f16", dtype: .f16, shape: [4], bytes: f16)
        w.add(name: "bf16", dtype: .bf16, shape: [2, 2], bytes: bf16)
        w.add(name: "i64", dtype: .i64, shape: [3], bytes: i64)
        w.add(name: "u8", dtype: .u8, shape: [10], bytes: u8)
        w.add(name: "bool", dtype: .bool, shape: [4], bytes: bools)
        w.add(name: "scalar", dtype: .f32, shape: [], bytes: f32Bytes([42]))
        w.add(name: "empty", dtype: .f32, shape: [0, 4], bytes: [])
        return w
    }

    func testRoundTripValuesAndMetadata() throws {
        let path = dir + "/a.safetensors"
        try makeWriter().write(to: path)
        let f = try SafeTensorsFile.open(path: path)
        XCTAssertEqual(f.metadata, ["format": "np", "origin": "swift", "weird\nkey": "va\"l\u{1}ue"])
        XCTAssertEqual(f.entries.count, 8)
        let expected: [String: (SafeTensorsDType, [Int], [UInt8])] = [
            "f32": (.f32, [2, 3], f32), "f16": (.f16, [4], f16), "bf16": (.bf16, [2, 2], bf16),
            "i64": (.i64, [3], i64), "u8": (.u8, [10], u8), "bool": (.bool, [4], bools),
            "scalar": (.f32, [], f32Bytes([42])), "empty": (.f32, [0, 4], []),
        ]
        for (name, (dtype, shape, bytes)) in expected {
            let e = try XCTUnwrap(f.entry(named: name))
            XCTAssertEqual(e.dtype, dtype, name)
            XCTAssertEqual(e.shape, shape, name)
            XCTAssertEqual(e.elementCount * dtype.byteWidth, bytes.count, name)
            XCTAssertEqual(try f.copyBytes(of: e), bytes, name)
            try f.withBytes(of: e) { XCTAssertEqual(Array($0), bytes, name) }
        }
        // Entries sorted by offset; layout follows name order.
        XCTAssertEqual(f.entries.map(\.dataRange.lowerBound), f.entries.map(\.dataRange.lowerBound).sorted())
        XCTAssertEqual(f.entries.filter { !$0.dataRange.isEmpty }.map(\.name),
                       ["bf16", "bool", "f16", "f32", "i64", "scalar", "u8"])
        XCTAssertEqual(f.headerLength % 8, 0)
        let raw = try readBytes(path)
        XCTAssertEqual(String(decoding: raw[8..<24], as: UTF8.self), "{\"__metadata__\":")
        XCTAssertNil(f.entry(named: "missing"))
    }

    func testDeterministicBytes() throws {
        try makeWriter().write(to: dir + "/1.safetensors")
        try makeWriter().write(to: dir + "/2.safetensors")
        XCTAssertEqual(try readBytes(dir + "/1.safetensors"), try readBytes(dir + "/2.safetensors"))
        // Adding in another order gives the same file.
        var w = SafeTensorsWriter(metadata: makeWriter().metadata)
        for t in makeWriter().tensors.reversed() { w.add(t) }
        try w.write(to: dir + "/3.safetensors")
        XCTAssertEqual(try readBytes(dir + "/1.safetensors"), try readBytes(dir + "/3.safetensors"))
    }

    func testProviderMatchesInMemoryAndStreamsLargeTensor() throws {
        var w = SafeTensorsWriter()
        let chunk = [UInt8](repeating: 0xAB, count: 65536)
        let big = 8 << 20
        w.add(name: "big", dtype: .u8, shape: [big]) { sink in
            while sink.remaining > 0 {
                try chunk.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<min(chunk.count, sink.remaining)])) }
            }
        }
        w.add(name: "small", dtype: .f32, shape: [6]) { sink in
            try sink.write(Array(self.f32[0..<10]))
            try sink.write(Data(self.f32[10...]))
        }
        let path = dir + "/big.safetensors"
        try w.write(to: path)
        let f = try SafeTensorsFile.open(path: path)
        try f.withBytes(of: XCTUnwrap(f.entry(named: "big"))) { buf in
            XCTAssertEqual(buf.count, big)
            XCTAssertTrue(buf.allSatisfy { $0 == 0xAB })
        }
        XCTAssertEqual(try f.copyBytes(of: XCTUnwrap(f.entry(named: "small"))), f32)
    }

    func testWriterRejectsBadInputAndLeavesNothing() throws {
        let path = dir + "/bad.safetensors"
        var dup = SafeTensorsWriter()
        dup.add(name: "a", dtype: .u8, shape: [1], bytes: [1])
        dup.add(name: "a", dtype: .u8, shape: [1], bytes: [2])
        assertSTError(try dup.write(to: path), path: path) { if case .invalidTensor = $0 { return true }; return false }

        var reserved = SafeTensorsWriter()
        reserved.add(name: "__metadata__", dtype: .u8, shape: [1], bytes: [1])
        assertSTError(try reserved.write(to: path), path: path) { if case .invalidTensor = $0 { return true }; return false }

        var wrongCount = SafeTensorsWriter()
        wrongCount.add(name: "a", dtype: .f32, shape: [2], bytes: [1, 2, 3])
        assertSTError(try wrongCount.write(to: path), path: path) {
            if case .providerByteCountMismatch(_, "a", 8, 3) = $0 { return true }; return false
        }

        var overflow = SafeTensorsWriter()
        overflow.add(name: "a", dtype: .f64, shape: [Int.max / 2, 3], bytes: [])
        assertSTError(try overflow.write(to: path), path: path) { if case .invalidTensor = $0 { return true }; return false }

        var short = SafeTensorsWriter()
        short.add(name: "a", dtype: .f32, shape: [4]) { try $0.write([1, 2, 3, 4]) }
        assertSTError(try short.write(to: path), path: path) {
            if case .providerByteCountMismatch(_, "a", 16, 4) = $0 { return true }; return false
        }

        var long = SafeTensorsWriter()
        long.add(name: "a", dtype: .u8, shape: [2]) { try $0.write([1, 2, 3]) }
        assertSTError(try long.write(to: path), path: path) {
            if case .providerByteCountMismatch(_, "a", 2, 3) = $0 { return true }; return false
        }

        struct Boom: Error {}
        var throwing = SafeTensorsWriter()
        throwing.add(name: "a", dtype: .u8, shape: [2]) { _ in throw Boom() }
        XCTAssertThrowsError(try throwing.write(to: path)) { XCTAssertTrue($0 is Boom) }

        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(tempLeftovers(dir), [])
    }

    func testFailedOverwriteKeepsOldFile() throws {
        let path = dir + "/keep.safetensors"
        try makeWriter().write(to: path)
        let before = try readBytes(path)
        var w = SafeTensorsWriter()
        w.add(name: "a", dtype: .u8, shape: [2]) { try $0.write([1]) }
        XCTAssertThrowsError(try w.write(to: path))
        XCTAssertEqual(try readBytes(path), before)
        XCTAssertEqual(tempLeftovers(dir), [])
        // A successful overwrite replaces it.
        var ok = SafeTensorsWriter()
        ok.add(name: "a", dtype: .u8, shape: [2], bytes: [1, 2])
        try ok.write(to: path)
        XCTAssertEqual(try SafeTensorsFile.open(path: path).entries.map(\.name), ["a"])
    }

    func testEmptyCheckpoint() throws {
        let path = dir + "/empty.safetensors"
        try SafeTensorsWriter().write(to: path)
        let f = try SafeTensorsFile.open(path: path)
        XCTAssertEqual(f.entries.count, 0)
        XCTAssertEqual(try readBytes(path), rawFile("{}      "))
    }

    func testUnicodeAndEscapedNames() throws {
        let names = ["é", "e\u{301}x", "😀", "a\"b\\c", "tab\tnl\nnul\u{0}"]
        var w = SafeTensorsWriter()
        for (i, n) in names.enumerated() { w.add(name: n, dtype: .u8, shape: [1], bytes: [UInt8(i)]) }
        let path = dir + "/u.safetensors"
        try w.write(to: path)
        let f = try SafeTensorsFile.open(path: path)
        for (i, n) in names.enumerated() {
            XCTAssertEqual(try f.copyBytes(of: XCTUnwrap(f.entry(named: n))), [UInt8(i)])
        }
        let c = try SafeTensorsCheckpoint.open(path: path)
        XCTAssertEqual(c.names, names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }
}

final class APIEdgeTests: XCTestCase {
    func testElementCountNeverTraps() {
        XCTAssertEqual(SafeTensorsEntry(name: "x", dtype: .u8, shape: [Int.max, 3], dataRange: 0..<0).elementCount, Int.max)
        XCTAssertEqual(SafeTensorsEntry(name: "x", dtype: .u8, shape: [], dataRange: 0..<1).elementCount, 1)
        XCTAssertNil(SafeTensorsEntry.checkedByteCount(shape: [-1], dtype: .u8))
        XCTAssertNil(SafeTensorsEntry.checkedByteCount(shape: [Int.max / 2], dtype: .f32))
        XCTAssertEqual(SafeTensorsEntry.checkedByteCount(shape: [2, 3], dtype: .f64), 48)
    }

    func testDTypeWidths() {
        XCTAssertEqual(SafeTensorsDType.allCases.count, 13)
        XCTAssertEqual(SafeTensorsDType.allCases.map(\.byteWidth), [8, 4, 2, 2, 8, 4, 2, 1, 8, 4, 2, 1, 1])
        XCTAssertEqual(SafeTensorsDType(rawValue: "BF16"), .bf16)
        XCTAssertNil(SafeTensorsDType(rawValue: "F8_E4M3"))
    }

    func testStrictParserDirectly() throws {
        XCTAssertEqual(try StrictJSONParser.parse(Array("{\"a\":[1,-2.5e3,true,false,null,\"\\u00e9\\ud83d\\ude00\\/\"]}".utf8)),
                       .object([(key: "a", value: .array([.number(text: "1", isInteger: true), .number(text: "-2.5e3", isInteger: false),
                                                          .bool(true), .bool(false), .null, .string("é😀/")]))]))
        XCTAssertThrowsError(try StrictJSONParser.parse(Array("{\"a\":1,\"a\":2}".utf8))) {
            XCTAssertEqual($0 as? JSONParseFailure, .duplicateKey("a"))
        }
        let d64 = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try StrictJSONParser.parse(Array(d64.utf8)))
        let d65 = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        XCTAssertThrowsError(try StrictJSONParser.parse(Array(d65.utf8)))
        XCTAssertThrowsError(try StrictJSONParser.parse([]))
        XCTAssertThrowsError(try StrictJSONParser.parse(Array("\"\\ud83d\\u0041\"".utf8)))
        XCTAssertEqual(JSONValue.number(text: "9223372036854775807", isInteger: true).nonNegativeInt, Int.max)
        XCTAssertNil(JSONValue.number(text: "9223372036854775808", isInteger: true).nonNegativeInt)
    }

    func testErrorQuoting() {
        XCTAssertEqual(SafeTensorsError.quote("a\"b\\c\nd\u{1b}\u{2028}"), "\"a\\\"b\\\\c\\nd\\u{1b}\\u{2028}\"")
        XCTAssertTrue(SafeTensorsError.quote(String(repeating: "x", count: 1000)).hasSuffix("...\""))
    }
}
