import Foundation
import XCTest
@testable import SlowFastCheckpoints

/// 10,000 deterministic mutations of a valid small file; each open must throw a
/// `SafeTensorsError` (one-line message) or succeed with readable tensors, never crash.
final class FuzzTests: XCTestCase {
    func testMutationsNeverCrash() throws {
        let dir = try makeTempDir("fuzz")
        defer { removeTree(dir) }
        var w = SafeTensorsWriter(metadata: ["k": "v"])
        w.add(name: "a", dtype: .f32, shape: [2, 2], bytes: f32Bytes([1, 2, 3, 4]))
        w.add(name: "b", dtype: .i64, shape: [1], bytes: le([Int64(-5)]))
        w.add(name: "c", dtype: .u8, shape: [3], bytes: [7, 8, 9])
        w.add(name: "d", dtype: .bf16, shape: [0], bytes: [])
        let basePath = dir + "/base.safetensors"
        try w.write(to: basePath)
        let base = try readBytes(basePath)
        let headerLen = Int(base[0]) | Int(base[1]) << 8
        let headerRange = 8..<(8 + headerLen)
        let digitPositions = headerRange.filter { base[$0] >= 0x30 && base[$0] <= 0x39 }
        let numbers = ["-1", "0", "1", "3", "4", "8", "16", "32", "1.5", "1e3", "-0", "4294967296", "9223372036854775807",
                       "9223372036854775808", "18446744073709551615", "18446744073709551616", "00", "99999999999999999999999999"]

        var rng = SplitMix64(seed: 0x5AFE_7E45)
        let path = dir + "/m.safetensors"
        var opened = 0, refused = 0
        var kinds: [String: Int] = [:]
        let dump = ProcessInfo.processInfo.environment["SLOWFAST_FUZZ_DUMP"]  // optional: keep every case for comparison
        var verdicts: [String] = []
        let start = Date()
        for iteration in 0..<10_000 {
            var bytes = base
            switch rng.next() % 6 {
            case 0:  // byte flips
                for _ in 0...(rng.next() % 3) {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    bytes[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 1:  // truncation
                bytes = Array(bytes[0..<Int(rng.next() % UInt64(bytes.count))])
            case 2:  // header length edits
                let choices: [UInt64] = [0, 1, 2, UInt64(headerLen - 1), UInt64(headerLen + 1), UInt64(headerLen + 8),
                                         UInt64(bytes.count), 100 << 20, (100 << 20) + 1, 1 << 63, UInt64.max, rng.next()]
                let n = choices[Int(rng.next() % UInt64(choices.count))]
                for k in 0..<8 { bytes[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
            case 3:  // numeric edit inside the JSON (keeps the length prefix consistent)
                let pos = digitPositions[Int(rng.next() % UInt64(digitPositions.count))]
                var end = pos
                while end < 8 + headerLen, base[end] >= 0x30, base[end] <= 0x39 { end += 1 }
                let replacement = Array(numbers[Int(rng.next() % UInt64(numbers.count))].utf8)
                var header = Array(base[8..<pos]) + replacement + Array(base[end..<(8 + headerLen)])
                while header.count % 8 != 0 { header.append(0x20) }
                bytes = rawFile(headerBytes: header, data: Array(base[(8 + headerLen)...]))
            case 4:  // structural edit: insert or delete a JSON byte
                var header = Array(base[headerRange])
                let i = Int(rng.next() % UInt64(header.count))
                if rng.next() % 2 == 0 {
                    let pool = Array("{}[]\",:0-\\ ".utf8)
                    header.insert(pool[Int(rng.next() % UInt64(pool.count))], at: i)
                } else {
                    header.remove(at: i)
                }
                bytes = rawFile(headerBytes: header, data: Array(base[(8 + headerLen)...]))
            default:  // append or drop data bytes
                if rng.next() % 2 == 0 {
                    bytes += (0..<(1 + rng.next() % 9)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                } else {
                    bytes.removeLast(Int(1 + rng.next() % 4))
                }
            }
            try writeBytes(bytes, to: path)
            if let dump { try writeBytes(bytes, to: dump + "/\(iteration).safetensors") }
            do {
                let f = try SafeTensorsFile.open(path: path)
                var total = 0
                for e in f.entries { total += try f.withBytes(of: e) { $0.reduce(0) { $0 + Int($1) } } }
                XCTAssertGreaterThanOrEqual(total, 0)
                opened += 1
                verdicts.append("\(iteration) ok")
            } catch let e as SafeTensorsError {
                refused += 1
                verdicts.append("\(iteration) \(caseName(e))")
                let d = e.description
                XCTAssertFalse(d.contains("\n"), d)
                kinds[caseName(e), default: 0] += 1
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        if let dump { try writeBytes(Array((verdicts.joined(separator: "\n") + "\n").utf8), to: dump + "/verdicts.txt") }
        print("fuzz: \(opened) opened, \(refused) refused in \(String(format: "%.1f", elapsed)) s; cases: \(kinds.filter { $0.value > 0 }.sorted { $0.key < $1.key })")
        XCTAssertEqual(opened + refused, 10_000)
        XCTAssertGreaterThan(opened, 0)
        XCTAssertGreaterThan(refused, 5_000)
    }

    private func caseName(_ e: SafeTensorsError) -> String {
        let m = Mirror(reflecting: e)
        return m.children.first?.label ?? String(describing: e)
    }
}
