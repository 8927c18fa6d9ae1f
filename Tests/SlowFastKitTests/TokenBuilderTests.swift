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

    func testRegimesDescribeEveryPlan() throws {
        let rules = TokenPreset.allCases.map(\.fastTokens) + [FastTokenConfig(temporalStride: 3, temporalKernel: 1),
                                                               FastTokenConfig(temporalStride: 1, temporalKernel: 1),
                                                               FastTokenConfig(temporalStride: 2, temporalKernel: 3, minFastFrames: 1)]
        for fast in rules {
            let rule = TokenRule(height: 4, width: 4, dim: 2, fast: fast)
            let regimes = try rule.regimes()
            XCTAssertEqual(regimes.first?.from, 1, "\(fast)")
            XCTAssertNil(regimes.last?.upTo, "\(fast)")
            for frames in 1...300 {
                let plan = try TokenPlan(rule.spec(frames: frames))
                let regime = try XCTUnwrap(regimes.first { frames >= $0.from && frames <= ($0.upTo ?? Int.max) })
                XCTAssertEqual(regime.kind, plan.regime, "\(fast) at \(frames)")
                let s = fast.temporalStride, t = fast.temporalKernel, m = fast.minFastFrames
                switch regime.kind {
                case .allFrames: XCTAssertEqual(plan.fastFrames, frames)
                case .minimum: XCTAssertEqual(plan.fastFrames, m)
                case .regular: XCTAssertEqual(plan.fastFrames, (frames / s) / t, "\(fast) at \(frames)")
                }
            }
        }
        // The case: 8 frames with s2t4 keep all 8, and the plan says so.
        let eight = try TokenPlan(TokenRule(height: 4, width: 4, dim: 2, fast: TokenPreset.s2t4.fastTokens).spec(frames: 8))
        XCTAssertEqual(eight.fastFrames, 8)
        XCTAssertTrue(eight.explanation.contains("every frame is a fast frame"), eight.explanation)
    }

    func testStandaloneModelShapesAndOps() throws {
        let rule = TokenRule(height: 18, width: 18, dim: 16, fast: TokenPreset.s2t4.fastTokens)
        let model = try TokenBuilder.makeModel(rule)
        XCTAssertEqual(model.graph.inputs.map(\.name), ["features"])
        XCTAssertEqual(model.graph.inputs[0].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                 shape: TensorShape([.param("frames"), .value(18), .value(18), .value(16)])))
        XCTAssertEqual(model.graph.outputs.map(\.name), ["slow_tokens", "fast_tokens"])
        XCTAssertEqual(model.graph.outputs[0].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                  shape: TensorShape([.value(1), .param("num_slow_tokens"), .value(16)])))
        XCTAssertEqual(model.graph.outputs[1].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                  shape: TensorShape([.value(1), .param("num_fast_tokens"), .value(16)])))
        // Indices and windows come from the frame count: one Range for the sampled positions,
        // one for the fast frames, one for the window matrix's columns; one Gather of frames
        // (plus the one reading the count) and one MatMul of window sums.
        let ops = model.graph.nodes.map(\.op)
        XCTAssertEqual(ops.filter { $0 == "Range" }.count, 3)
        XCTAssertEqual(ops.filter { $0 == "Gather" }.count, 2)
        XCTAssertEqual(ops.filter { $0 == "MatMul" }.count, 1)
        XCTAssertEqual(ops.filter { $0 == "AveragePool" }.count, 1)

        // Pinned: static dims from the plan.
        let pinned = try TokenBuilder.makeModel(rule, options: TokenInputOptions(frames: 64))
        XCTAssertEqual(pinned.graph.outputs[1].type?.kind, .tensor(elementType: ElementType.float.rawValue,
                                                                   shape: TensorShape([.value(1), .value(16 * 81), .value(16)])))

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
                                              rule: TokenRule(height: 6, width: 6, dim: 4, fast: TokenPreset.s1t4.fastTokens))
        XCTAssertEqual(outputs.slowTokens, "slow_tokens")
        XCTAssertEqual(outputs.fastTokens, "fast_tokens")
        XCTAssertEqual(model.graph.outputs.map(\.name), ["projected", "slow_tokens", "fast_tokens"])
        let producers = Set(model.graph.nodes.flatMap(\.outputs))
        XCTAssertTrue(producers.contains(outputs.slowTokens))
        XCTAssertTrue(producers.contains(outputs.fastTokens))
        XCTAssertEqual(model.graph.nodes[1].inputs.first, "projected")
    }

    func testInsertErrorsLeaveTheGraphUnchanged() {
        let fast = TokenPreset.s1t4.fastTokens
        let model = visionModel()
        let nodes = model.graph.nodes.count
        XCTAssertThrowsError(try TokenBuilder.insert(into: model, after: "nope", rule: TokenRule(height: 6, width: 6, dim: 4, fast: fast))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .valueNotFound(graph: "vision", value: "nope"))
        }
        XCTAssertThrowsError(try TokenBuilder.insert(into: model, after: "projected", rule: TokenRule(height: 6, width: 6, dim: 4, fast: fast),
                                                     options: TokenInputOptions(slowName: "pixels"))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .outputNameTaken("pixels"))
        }
        XCTAssertThrowsError(try TokenBuilder.insert(into: visionModel(opset: 11), after: "projected",
                                                     rule: TokenRule(height: 6, width: 6, dim: 4, fast: fast))) { error in
            XCTAssertEqual(error as? TokenBuilderError, .opsetTooOld(found: 11, needed: 13))
        }
        XCTAssertEqual(model.graph.nodes.count, nodes)
        XCTAssertEqual(model.graph.outputs.count, 1)
        XCTAssertTrue(model.graph.initializers.isEmpty)
    }
}
