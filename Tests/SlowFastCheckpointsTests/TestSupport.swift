import Foundation
import XCTest
@testable import SlowFastCheckpoints

/// A fresh temporary folder, removed by the returned cleanup.
func makeTempDir(_ label: String = "st") throws -> String {
    let dir = NSTemporaryDirectory() + "/slowfast-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Raw safetensors bytes from a header string and data, with an optional forged length prefix.
func rawFile(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    return rawFile(headerBytes: h, data: data, length: length)
}

func rawFile(headerBytes h: [UInt8], data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    let n = length ?? UInt64(h.count)
    var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
    out += h
    out += data
    return out
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var out: [UInt8] = []
    for v in values {
        for i in 0..<(T.bitWidth / 8) { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }
    return out
}

func f32Bytes(_ values: [Float]) -> [UInt8] { le(values.map(\.bitPattern)) }

func f32Values(_ bytes: [UInt8]) -> [Float] {
    stride(from: 0, to: bytes.count, by: 4).map { i in
        Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
    }
}

func i64Values(_ bytes: [UInt8]) -> [Int64] {
    stride(from: 0, to: bytes.count, by: 8).map { i in
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
        return Int64(bitPattern: v)
    }
}

func u16Values(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

/// Asserts `body` throws a `SafeTensorsError` accepted by `match`, whose description is one
/// line and (when `path` is given) names the file.
func assertSTError<T>(_ body: @autoclosure () throws -> T, path: String?, file: StaticString = #filePath, line: UInt = #line,
                      _ match: (SafeTensorsError) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected an error, got success", file: file, line: line)
    } catch let error as SafeTensorsError {
        XCTAssertTrue(match(error), "unexpected error case: \(error)", file: file, line: line)
        let d = error.description
        XCTAssertFalse(d.contains("\n") || d.contains("\r"), "description spans lines: \(d)", file: file, line: line)
        if let path { XCTAssertTrue(d.contains(path), "description does not name \(path): \(d)", file: file, line: line) }
    } catch {
        XCTFail("expected SafeTensorsError, got \(error)", file: file, line: line)
    }
}

/// Deterministic PRNG (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Files in `dir` whose names contain ".tmp-" (left-over temp files).
func tempLeftovers(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".tmp-") }
}
