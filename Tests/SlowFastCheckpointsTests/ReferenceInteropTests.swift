import Foundation
import XCTest
@testable import SlowFastCheckpoints

/// Reads files written by the official Python implementation (Scripts/make-safetensors-reference.py,
/// committed in Tests/Fixtures/safetensors-reference); Tests/Validation/test_safetensors.py checks
/// the other direction (Python reads what Swift writes).
final class ReferenceInteropTests: XCTestCase {
    static let referenceDir: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/safetensors-reference").path

    func requireReference() throws -> String {
        let d = ReferenceInteropTests.referenceDir
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/basic.safetensors"), "committed reference files missing: \(d)")
        return d
    }

    func testReadsPythonBasic() throws {
        let d = try requireReference()
        let f = try SafeTensorsFile.open(path: d + "/basic.safetensors")
        XCTAssertEqual(f.metadata, ["format": "np", "source": "make_reference.py"])
        let w = try XCTUnwrap(f.entry(named: "weight"))
        XCTAssertEqual(w.dtype, .f32)
        XCTAssertEqual(w.shape, [3, 4])
        XCTAssertEqual(f32Values(try f.copyBytes(of: w)), (0..<12).map { Float($0) * 0.5 - 1 })
        let h = try XCTUnwrap(f.entry(named: "half"))
        XCTAssertEqual(h.dtype, .f16)
        XCTAssertEqual(u16Values(try f.copyBytes(of: h)), [0xC000, 0xB800, 0x0000, 0x3400, 0x7BFF, 0x0002])
        let ids = try XCTUnwrap(f.entry(named: "ids"))
        XCTAssertEqual(ids.dtype, .i64)
        XCTAssertEqual(i64Values(try f.copyBytes(of: ids)), [-3, 0, 1 << 40, Int64.max])
        // f16 -> f32 conversion of the Python values.
        let asF32 = try DTypeConversion.convert(try f.copyBytes(of: h), from: .f16, to: .f32)
        XCTAssertEqual(Array(f32Values(asF32)[0..<5]), [-2, -0.5, 0, 0.25, 65504])
    }

    func testReadsPythonEdgeCases() throws {
        let d = try requireReference()
        let f = try SafeTensorsFile.open(path: d + "/edge.safetensors")
        XCTAssertEqual(f.metadata, [:])
        XCTAssertEqual(f.entry(named: "empty")?.shape, [0, 3])
        XCTAssertEqual(try f.copyBytes(of: XCTUnwrap(f.entry(named: "empty"))), [])
        XCTAssertEqual(f.entry(named: "scalar")?.shape, [])
        XCTAssertEqual(f32Values(try f.copyBytes(of: XCTUnwrap(f.entry(named: "scalar")))), [7.5])
        XCTAssertEqual(f.entry(named: "flags")?.dtype, .bool)
        XCTAssertEqual(try f.copyBytes(of: XCTUnwrap(f.entry(named: "flags"))), [1, 0, 1])
        XCTAssertEqual(try f.copyBytes(of: XCTUnwrap(f.entry(named: "bytes"))), [0, 1, 254, 255])
    }

    func testReadsPythonShardedSet() throws {
        let d = try requireReference() + "/sharded"
        for path in [d, d + "/model.safetensors.index.json"] {
            let c = try SafeTensorsCheckpoint.open(path: path)
            XCTAssertEqual(c.names, ["a.bias", "a.weight", "b.weight"])
            XCTAssertEqual(c.files.count, 2)
            XCTAssertEqual(c.indexPath, d + "/model.safetensors.index.json")
            XCTAssertEqual(try c.withBytes(of: "a.weight") { f32Values(Array($0)) }, [0, 1, 2, 3, 4, 5])
            XCTAssertEqual(try c.withBytes(of: "a.bias") { f32Values(Array($0)) }, [1.5, -1.5])
            XCTAssertEqual(try c.withBytes(of: "b.weight") { i64Values(Array($0)) }, [0, -7, -14, -21])
            XCTAssertEqual(c.entry(named: "b.weight")?.file.metadata, ["format": "pt"])
            assertSTError(try c.withBytes(of: "nope") { _ in 0 }, path: path) {
                if case .tensorNotFound = $0 { return true }; return false
            }
        }
    }

    func testSwiftRewriteOfPythonFileIsStable() throws {
        // Re-writing a Python file with the Swift writer and reading it back gives the same tensors.
        let d = try requireReference()
        let src = try SafeTensorsFile.open(path: d + "/basic.safetensors")
        var w = SafeTensorsWriter(metadata: src.metadata)
        for e in src.entries { w.add(name: e.name, dtype: e.dtype, shape: e.shape, bytes: try src.copyBytes(of: e)) }
        let out = try makeTempDir("rewrite")
        defer { removeTree(out) }
        try w.write(to: out + "/x.safetensors")
        let back = try SafeTensorsFile.open(path: out + "/x.safetensors")
        XCTAssertEqual(back.metadata, src.metadata)
        for e in src.entries {
            let b = try XCTUnwrap(back.entry(named: e.name))
            XCTAssertEqual(b.shape, e.shape)
            XCTAssertEqual(try back.copyBytes(of: b), try src.copyBytes(of: e))
        }
    }
}
