import Foundation
import XCTest
@testable import SlowFastCheckpoints

final class ConversionTests: XCTestCase {
    func testFloat16WideningIsExactForAllPatterns() {
        for bits in 0...UInt16.max {
            let ours = DTypeConversion.float32Bits(fromFloat16Bits: bits)
            let swift = Float(Float16(bitPattern: bits))
            if swift.isNaN {
                XCTAssertTrue(Float(bitPattern: ours).isNaN)
                // Narrowing back keeps NaN.
                XCTAssertTrue(Float16(bitPattern: DTypeConversion.float16Bits(fromFloat32Bits: ours)).isNaN)
            } else {
                XCTAssertEqual(ours, swift.bitPattern, "f16 bits \(bits)")
                XCTAssertEqual(DTypeConversion.float16Bits(fromFloat32Bits: ours), bits, "round trip \(bits)")
            }
        }
    }

    func testFloat32ToFloat16MatchesSwiftRounding() {
        var rng = SplitMix64(seed: 7)
        var cases: [UInt32] = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001,
                               0x3380_0000, 0x3380_0001, 0x3300_0000, 0x3300_0001, 0x477F_F000, 0x477F_EFFF, 0x477F_F001,
                               0x3F80_1000, 0x3F80_3000, 0x387F_E000, 0x387F_F000]
        for _ in 0..<300_000 { cases.append(UInt32(truncatingIfNeeded: rng.next())) }
        // Values near the f16 range, where rounding matters most.
        for _ in 0..<100_000 { cases.append(0x3000_0000 &+ UInt32(truncatingIfNeeded: rng.next() % 0x1800_0000)) }
        for x in cases {
            let f = Float(bitPattern: x)
            let ours = DTypeConversion.float16Bits(fromFloat32Bits: x)
            if f.isNaN {
                XCTAssertTrue(Float16(bitPattern: ours).isNaN, "NaN \(x)")
            } else {
                XCTAssertEqual(ours, Float16(f).bitPattern, "f32 bits \(String(x, radix: 16))")
            }
        }
    }

    func testBFloat16Rounding() {
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: Float(1).bitPattern), 0x3F80)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: 0x3F80_8000), 0x3F80)  // tie to even (down)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: 0x3F81_8000), 0x3F82)  // tie to even (up)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: 0x3F80_8001), 0x3F81)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: Float.greatestFiniteMagnitude.bitPattern), 0x7F80)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: 0xFF80_0000), 0xFF80)
        XCTAssertEqual(DTypeConversion.bfloat16Bits(fromFloat32Bits: 0x8000_0000), 0x8000)
        for nan: UInt32 in [0x7F80_0001, 0x7FC0_0000, 0xFFFF_FFFF, 0x7F80_FFFF] {
            let b = DTypeConversion.bfloat16Bits(fromFloat32Bits: nan)
            XCTAssertTrue(Float(bitPattern: DTypeConversion.float32Bits(fromBFloat16Bits: b)).isNaN)
        }
        XCTAssertEqual(DTypeConversion.float32Bits(fromBFloat16Bits: 0xC000), Float(-2).bitPattern)
    }

    func testBufferConversionsAndLossless() throws {
        let values: [Float] = [1, -0.5, 0, -0.0, 65504, .infinity, .nan]
        let f32 = f32Bytes(values)
        let f16 = try DTypeConversion.convert(f32, from: .f32, to: .f16)
        XCTAssertEqual(f16.count, 14)
        let back = f32Values(try DTypeConversion.convert(f16, from: .f16, to: .f32))
        XCTAssertEqual(Array(back[0..<6]).map(\.bitPattern), Array(values[0..<6]).map(\.bitPattern))
        XCTAssertTrue(back[6].isNaN)
        XCTAssertTrue(try DTypeConversion.isLossless(f32, from: .f32, to: .f16))
        XCTAssertTrue(try DTypeConversion.isLossless(f32, from: .f32, to: .bf16) == false)  // 65504 is not a bf16 value
        XCTAssertFalse(try DTypeConversion.isLossless(f32Bytes([0.1]), from: .f32, to: .f16))
        XCTAssertFalse(try DTypeConversion.isLossless(f32Bytes([1e10]), from: .f32, to: .f16))
        XCTAssertTrue(try DTypeConversion.isLossless(f32Bytes([1024, -3]), from: .f32, to: .bf16))
        XCTAssertFalse(try DTypeConversion.isLossless(f32Bytes([1e-8]), from: .f32, to: .f16))  // underflows
        XCTAssertTrue(try DTypeConversion.isLossless(f16, from: .f16, to: .f32))
        // f16 <-> bf16 go through f32.
        let bf = try DTypeConversion.convert(le([UInt16(0x3C00), 0xC000]), from: .f16, to: .bf16)
        XCTAssertEqual(u16Values(bf), [0x3F80, 0xC000])
        XCTAssertFalse(try DTypeConversion.isLossless(le([UInt16(0x7F7F)]), from: .bf16, to: .f16))  // ~3.4e38 -> inf
        XCTAssertTrue(try DTypeConversion.isLossless(le([UInt16(0x3F80)]), from: .bf16, to: .f16))
        XCTAssertEqual(try DTypeConversion.convert(f32, from: .f32, to: .f32), f32)

        assertSTError(try DTypeConversion.convert([1, 2, 3], from: .f32, to: .f16), path: nil) {
            if case .conversionUnsupported = $0 { return true }; return false
        }
        assertSTError(try DTypeConversion.convert([1, 2], from: .i16, to: .f16), path: nil) {
            if case .conversionUnsupported = $0 { return true }; return false
        }
    }
}
