import Foundation
import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

final class TokenBuilderTests: XCTestCase {
    /// The release's grid: 576 px / ConvNeXt stride 32 = 18x18 projector features, pooled 2x2 to 9x9.
    func spec(_ frames: Int, _ fast: FastTokenConfig, height: Int = 18, width: Int = 18, dim: Int = 8) -> TokenSpec {
        TokenSpec(frames: frames, height: height, width: width, dim: dim, fast: fast)
    }

    func testPresetsGiveSixteenFastFramesOfEightyOneTokens() throws {
        for (preset, slow) in [(TokenPreset.s1t4, 64 * 81), (.s1t6, 96 * 81), (.s2t4, 128 * 81)] {
            let plan = try TokenPlan(spec(preset.frames, preset.fastTokens))
            XCTAssertEqual(plan.numSlowTokens, slow, "\(preset)")
            XCTAssertEqual(plan.fastFrames, 16, "\(preset)")
            XCTAssertEqual(plan.numFastTokens, 1296, "\(preset)")
            XCTAssertTrue(plan.uniformPooling, "\(preset)")
            XCTAssertFalse(plan.usedFallback, "\(preset)")
        }
        // s2t4 samples every other frame, then averages 4 sampled frames: fast frame 1 is
        // the mean of frames 8, 10, 12, 14.
        let plan = try TokenPlan(spec(128, TokenPreset.s2t4.fastTokens))
        XCTAssertEqual(plan.sampledFrames.count, 64)
        XCTAssertEqual(Array(plan.sampledFrames[4..<8]), [8, 10, 12, 14])
        XCTAssertEqual(plan.temporalWindows[1], TemporalWindow(start: 4, end: 8))
    }

    func testFallbackWeakensPoolingToKeepSixteenFrames() throws {
        // s1t4 at 32 frames: 32 / 4 = 8 < 16, so adaptive pooling to 16 frames of 2.
        let plan = try TokenPlan(spec(32, TokenPreset.s1t4.fastTokens))
        XCTAssertTrue(plan.usedFallback)
        XCTAssertEqual(plan.fastFrames, 16)
        XCTAssertEqual(plan.temporalWindows, (0..<16).map { TemporalWindow(start: 2 * $0, end: 2 * $0 + 2) })

        // s1t4 at 20 frames: windows [floor(20j/16), ceil(20(j+1)/16)) overlap, by hand:
        let twenty = try TokenPlan(spec(20, TokenPreset.s1t4.fastTokens))
        XCTAssertEqual(twenty.fastFrames, 16)
        XCTAssertEqual(twenty.temporalWindows[0], TemporalWindow(start: 0, end: 2))
        XCTAssertEqual(twenty.temporalWindows[1], TemporalWindow(start: 1, end: 3))
        XCTAssertEqual(twenty.temporalWindows[3], TemporalWindow(start: 3, end: 5))
        XCTAssertEqual(twenty.temporalWindows[15], TemporalWindow(start: 18, end: 20))

        // s2t4 at 20 frames: sampling keeps max(10, 16) = 16 frames, i * 1.25 truncated;
        // pooling would leave 4 < 16 so it becomes the identity on 16 frames.
        let sampled = try TokenPlan(spec(20, TokenPreset.s2t4.fastTokens))
        XCTAssertEqual(sampled.sampledFrames, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18])
        XCTAssertTrue(sampled.temporalPoolingIsIdentity)
        XCTAssertEqual(sampled.numFastTokens, 16 * 81)

        // Fewer frames than the minimum: every frame stays a fast frame.
        let short = try TokenPlan(spec(10, TokenPreset.s2t4.fastTokens))
        XCTAssertEqual(short.sampledFrames, Array(0..<10))
        XCTAssertEqual(short.fastFrames, 10)

        // Spatial pooling of fast frames: 9x9 -> 4x4 with K = 2.
        let pooled = try TokenPlan(spec(64, FastTokenConfig(temporalStride: 1, temporalKernel: 4, spatialPool: 2)))
        XCTAssertEqual(pooled.numFastTokens, 16 * 16)
    }

    func testSamplingRoundsLikeTheRelease() throws {
        // 872 frames, stride 3: 290 frames kept, step 872/290 in double. 145 * step is
        // 435.99999999999994 in IEEE double, so the release picks frame 435 (not 436).
        let plan = try TokenPlan(spec(872, FastTokenConfig(temporalStride: 3, temporalKernel: 1), height: 2, width: 2))
        XCTAssertEqual(plan.sampledFrames.count, 290)
        XCTAssertEqual(plan.sampledFrames[145], 435)
        XCTAssertEqual(plan.sampledFrames[144], 432)
    }

    func testRejectsImpossibleSizes() {
        XCTAssertThrowsError(try TokenPlan(spec(0, TokenPreset.s1t4.fastTokens))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .invalidParameter(name: "frames", value: 0, expected: "at least 1"))
        }
        XCTAssertThrowsError(try TokenPlan(spec(4, FastTokenConfig(temporalStride: 1, temporalKernel: 1, spatialPool: 4), height: 6, width: 6))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .poolLargerThanGrid(what: "fast spatial pool", pool: 4, height: 3, width: 3))
        }
    }

    func testStandaloneModelShapesAndOps() throws {
        let model = try TokenBuilder.makeModel(spec(64, TokenPreset.s2t4.fastTokens, dim: 16))
        XCTAssertEqual(model.graph.inputs.map(\.name), ["features"])
        XCTAssertEqual(model.graph.outputs.map(\.name), ["slow_tokens", "fast_tokens"])
        XCTAssertEqual(model.graph.outputs[0].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                  shape: TensorShape([.value(1), .value(64 * 81), .value(16)])))
        XCTAssertEqual(model.graph.outputs[1].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                  shape: TensorShape([.value(1), .value(16 * 81), .value(16)])))
        // 64 frames with s2t4: Gather of 32 frames, then 16 adaptive windows of 2 (Slice +
        // AveragePool each) joined by one Concat.
        let ops = model.graph.nodes.map(\.op)
        XCTAssertEqual(ops.filter { $0 == "Gather" }.count, 1)
        XCTAssertEqual(ops.filter { $0 == "Slice" }.count, 16)
        XCTAssertEqual(ops.filter { $0 == "Concat" }.count, 1)
        XCTAssertEqual(ops.filter { $0 == "AveragePool" }.count, 1 + 16)

        // It survives our own writer and reader.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("tokens.onnx").path
        try ModelWriter.write(model, to: path, options: WriteOptions(weights: .inline))
        let back = try ModelReader.read(path: path)
        XCTAssertEqual(back.graph.nodes.map(\.op), ops)
        XCTAssertEqual(back.graph.initializers.count, model.graph.initializers.count)
    }

    func visionModel(opset: Int64 = 17) -> Model {
        let graph = Graph(name: "vision")
        graph.inputs = [ValueInfo(name: "pixels", type: .tensor(.float, [.value(8), .value(36), .value(4)]))]
        graph.nodes = [Node("Identity", name: "projector", inputs: ["pixels"], outputs: ["projected"])]
        graph.valueInfo = [ValueInfo(name: "projected", type: .tensor(.float, [.value(8), .value(36), .value(4)]))]
        graph.outputs = [ValueInfo(name: "projected", type: .tensor(.float, [.value(8), .value(36), .value(4)]))]
        return Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)])
    }

    func testInsertAfterProjectorOutput() throws {
        let model = visionModel()
        let outputs = try TokenBuilder.insert(into: model, after: "projected",
                                              spec: TokenSpec(frames: 8, height: 6, width: 6, dim: 4, fast: TokenPreset.s1t4.fastTokens))
        XCTAssertEqual(outputs.slowTokens, "projected_slow_tokens")
        XCTAssertEqual(outputs.fastTokens, "projected_fast_tokens")
        XCTAssertEqual(model.graph.outputs.map(\.name), ["projected", "projected_slow_tokens", "projected_fast_tokens"])
        XCTAssertEqual(outputs.plan.numSlowTokens, 8 * 9)
        XCTAssertEqual(outputs.plan.numFastTokens, 8 * 9)   // 8 < 16 frames: all kept
        let producers = Set(model.graph.nodes.flatMap(\.outputs))
        XCTAssertTrue(producers.contains(outputs.slowTokens))
        XCTAssertTrue(producers.contains(outputs.fastTokens))
        XCTAssertEqual(model.graph.nodes[1].inputs.first, "projected")
    }

    func testInsertErrorsLeaveTheGraphUnchanged() {
        let fast = TokenPreset.s1t4.fastTokens
        let model = visionModel()
        let nodes = model.graph.nodes.count
        XCTAssertThrowsError(try TokenBuilder.insert(into: model, after: "nope", spec: TokenSpec(frames: 8, height: 6, width: 6, dim: 4, fast: fast))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .valueNotFound(graph: "vision", value: "nope"))
        }
        XCTAssertThrowsError(try TokenBuilder.insert(into: model, after: "projected", spec: TokenSpec(frames: 8, height: 5, width: 6, dim: 4, fast: fast))) { error in
            guard case .featureShapeMismatch(let value, let found, _)? = error as? TokenBuilderError else { return XCTFail("\(error)") }
            XCTAssertEqual(value, "projected")
            XCTAssertEqual(found, [8, 36, 4])
        }
        XCTAssertThrowsError(try TokenBuilder.insert(into: visionModel(opset: 11), after: "projected",
                                                     spec: TokenSpec(frames: 8, height: 6, width: 6, dim: 4, fast: fast))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .opsetTooOld(found: 11, needed: 13))
        }
        XCTAssertEqual(model.graph.nodes.count, nodes)
        XCTAssertEqual(model.graph.outputs.count, 1)
        XCTAssertTrue(model.graph.initializers.isEmpty)
    }
}
