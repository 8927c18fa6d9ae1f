import XCTest
@testable import SlowFastIR

/// The codec that keeps model strings as bytes (docs/DESIGN.md, "Strings").
final class ByteStringTests: XCTestCase {
    func testEveryRandomByteStringRoundTrips() {
        var generator = SystemRandomNumberGenerator()
        // Mostly high bytes and the lead bytes of the reserved range, so broken sequences,
        // overlong forms, surrogates and real U+10FF80... scalars all occur.
        let alphabet: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0xBE, 0xBF, 0xC0, 0xC3, 0xA9, 0xE0, 0xED, 0xA0, 0xF0, 0xF4, 0xF5, 0xFE, 0xFF]
        for round in 0 ..< 500 {
            let count = Int.random(in: 0 ... 24, using: &generator)
            let bytes: [UInt8] = (0 ..< count).map { _ in
                round % 2 == 0 ? UInt8.random(in: 0 ... 255, using: &generator) : alphabet.randomElement(using: &generator)!
            }
            XCTAssertEqual(ByteString.encode(ByteString.decode(bytes)), bytes, "bytes \(bytes)")
        }
    }

    func testValidUTF8InNormalFormCIsUnchanged() {
        // U+10FF00 ... U+10FF7F lie just below the reserved range: ordinary scalars.
        for text in ["", "a", "/model/layers.0/mlp/act/Relu", "é", "q\u{301}", "日本語", "\u{10FF7F}", "😀 \u{10FF00}x"] {
            XCTAssertEqual(ByteString.decode(Array(text.utf8)), text)
            XCTAssertEqual(Array(ByteString.decode(Array(text.utf8)).unicodeScalars), Array(text.unicodeScalars))
            XCTAssertEqual(ByteString.encode(text), Array(text.utf8))
        }
    }

    func testBytesThatAreNotUTF8StayDistinct() {
        let first = ByteString.decode([0x61, 0xFF]), second = ByteString.decode([0x61, 0xFE])
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(Array(first.unicodeScalars).map(\.value), [0x61, 0x10FFFF])
        XCTAssertEqual(ByteString.encode(first), [0x61, 0xFF])
        // An overlong "/" (C0 AF), a lone surrogate (ED A0 80) and a truncated sequence are bytes, not scalars.
        for bytes: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82]] {
            let decoded = ByteString.decode(bytes)
            XCTAssertEqual(decoded.unicodeScalars.count, bytes.count)
            XCTAssertEqual(ByteString.encode(decoded), bytes)
        }
    }

    func testCanonicallyEquivalentSpellingsStayTwoNames() {
        // "é" as one scalar and as e + U+0301: equal as Swift Strings, distinct as ONNX names.
        let composed = ByteString.decode(Array("\u{E9}".utf8)), decomposed = ByteString.decode(Array("e\u{301}".utf8))
        XCTAssertEqual(composed, "\u{E9}")
        XCTAssertNotEqual(composed, decomposed)
        XCTAssertEqual(Set([composed, decomposed]).count, 2)
        XCTAssertEqual(ByteString.encode(decomposed), [0x65, 0xCC, 0x81])
    }

    func testARealScalarOfTheReservedRangeIsNotTakenForAnEscapedByte() {
        // U+10FFFF is valid UTF-8 (F4 8F BF BF): stored as its four bytes, each escaped.
        let real: [UInt8] = [0x61, 0xF4, 0x8F, 0xBF, 0xBF]
        let decoded = ByteString.decode(real)
        XCTAssertEqual(decoded.unicodeScalars.count, 5)
        XCTAssertNotEqual(decoded, ByteString.decode([0x61, 0xFF]))
        XCTAssertEqual(ByteString.encode(decoded), real)
    }

    func testCStringsAndPathsCarryTheOriginalBytes() {
        let bytes: [UInt8] = [0x77, 0xFF, 0x2E, 0x64]
        let decoded = bytes.map { CChar(bitPattern: $0) }.withUnsafeBufferPointer { buffer in
            (Array(buffer) + [0]).withUnsafeBufferPointer { ByteString.decode(cString: $0.baseAddress!) }
        }
        XCTAssertEqual(ByteString.encode(decoded), bytes)
        let passed = ByteString.withCString(decoded) { pointer in (0 ..< 4).map { UInt8(bitPattern: pointer[$0]) } + [UInt8(bitPattern: pointer[4])] }
        XCTAssertEqual(passed, bytes + [0])
    }
}
