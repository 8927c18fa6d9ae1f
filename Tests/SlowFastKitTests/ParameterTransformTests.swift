import XCTest
@testable import SlowFastAdapters
@testable import SlowFastCheckpoints
@testable import SlowFastWeights

/// The steps between a PyTorch tensor and the ONNX initializer that stores it, both ways.
final class ParameterTransformTests: XCTestCase {
    func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    func values(_ tensor: RawTensor) -> [Float] {
        tensor.bytes.withUnsafeBytes { raw in (0 ..< tensor.bytes.count / 4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    }

    func testPackedTransposedProjectionSplitsIntoItsParts() throws {
        // q: 2 rows, k: 1 row, v: 1 row, over 3 inputs; ONNX stores the [in, out] transpose.
        let q: [Float] = [1, 2, 3, 4, 5, 6], k: [Float] = [7, 8, 9], v: [Float] = [10, 11, 12]
        let transform = ParameterTransform(transpose: true, parts: [.init(name: "q", rows: 2), .init(name: "k", rows: 1), .init(name: "v", rows: 1)])
        let onnx = try transform.onnxTensor(from: [RawTensor(name: "q", dtype: .f32, shape: [2, 3], bytes: floats(q)),
                                                   RawTensor(name: "k", dtype: .f32, shape: [1, 3], bytes: floats(k)),
                                                   RawTensor(name: "v", dtype: .f32, shape: [1, 3], bytes: floats(v))],
                                            name: "qkv", dtype: .f32)
        XCTAssertEqual(onnx.shape, [3, 4])
        XCTAssertEqual(values(onnx), [1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12])
        let parts = try transform.canonicalTensors(of: onnx, canonicalName: "qkv")
        XCTAssertEqual(parts.map(\.name), ["q", "k", "v"])
        XCTAssertEqual(parts.map(\.shape), [[2, 3], [1, 3], [1, 3]])
        XCTAssertEqual(parts.map(values), [q, k, v])
        XCTAssertEqual(try transform.canonicalShapes(onnxShape: [3, 4], canonicalName: "qkv").map(\.shape), [[2, 3], [1, 3], [1, 3]])
        XCTAssertThrowsError(try transform.canonicalShapes(onnxShape: [3, 5], canonicalName: "qkv"))
    }

    func testOffsetIsUndoneOnlyWhenExact() throws {
        let gemma = ParameterTransform(offset: 1)
        let stored = RawTensor(name: "norm", dtype: .f32, shape: [3], bytes: floats([1.5, 0.75, 2]))
        XCTAssertEqual(values(try gemma.canonicalTensors(of: stored, canonicalName: "w")[0]), [0.5, -0.25, 1])
        // A stored 1e-9 would mean w = 1e-9 - 1, which float32 rounds to -1; redoing the step
        // gives 0, not the stored value: refused by name.
        let tiny = RawTensor(name: "bias", dtype: .f32, shape: [1], bytes: floats([1e-9]))
        XCTAssertThrowsError(try gemma.canonicalTensors(of: tiny, canonicalName: "b")) { error in
            XCTAssertEqual(error as? WeightTransformError, .notExact(tensor: "bias", step: "+ 1.0"))
        }
    }

    func testDtypesConvertOnlyBetweenFloats() throws {
        let half = try RawTensor(name: "x", dtype: .f32, shape: [2], bytes: floats([1.5, -2])).converted(to: .bf16)
        XCTAssertEqual(half.bytes, [0xC0, 0x3F, 0x00, 0xC0])
        XCTAssertThrowsError(try RawTensor(name: "i", dtype: .i64, shape: [1], bytes: [UInt8](repeating: 0, count: 8)).converted(to: .f32))
    }

    func testOldStringTransformsStillDecode() throws {
        let decoded = try JSONDecoder().decode([ParameterTransform].self, from: Data(#"["identity", "transpose", {"transpose": false, "offset": 1}]"#.utf8))
        XCTAssertEqual(decoded, [.identity, .transposed, ParameterTransform(offset: 1)])
    }
}
