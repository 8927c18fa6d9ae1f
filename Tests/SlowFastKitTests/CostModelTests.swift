import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastSerialization
@testable import SlowFastAdapters
@testable import SlowFastPasses
@testable import SlowFastTokens
@testable import SlowFastWeights

final class CostModelTests: XCTestCase {
    /// A small decoder whose FLOPs are easy to count by hand: d 64, 4 query heads and 2 KV
    /// heads of 16 (kv width 32), MLP 128.
    func smallShape(layers: Int = 2) throws -> DecoderShape {
        try DecoderShape(ModelDimensions(numLayers: layers, hiddenSize: 64, numHeads: 4, numKVHeads: 2, headDim: 16,
                                         intermediateSize: 128, vocabSize: 100))
    }

    func testOneLayerFlopsByHand() throws {
        let layer = LayerFlops(try smallShape(), sequenceLength: 10)
        // q: 2*10*64*64 = 81920; k and v: 2*10*64*32 = 40960 each; o: 2*10*64*64 = 81920.
        XCTAssertEqual(layer.projections, 81920 + 40960 + 40960 + 81920)
        // Q·Kᵀ: 2*10*10*(4*16) = 12800; P·V the same.
        XCTAssertEqual(layer.attention, 12800 + 12800)
        // gate, up: 2*10*64*128 = 163840 each; down the same.
        XCTAssertEqual(layer.mlp, 3 * 163840)
        XCTAssertEqual(layer.total, 762880)

        // Hybrid additions with 50 slow tokens, 3 querying text tokens, sequence 10:
        let hybrid = HybridLayerFlops(try smallShape(), sequenceLength: 10, queryingPositions: 3, slowTokens: 50)
        XCTAssertEqual(hybrid.kvProjection, 2 * 50 * 64 * 64)       // d -> 2*kv = 64
        XCTAssertEqual(hybrid.crossAttention, 2 * (2 * 3 * 50 * 64)) // Q·K_xᵀ and P·V_x
        XCTAssertEqual(hybrid.gate, 2 * 10 * 64)                     // w_g · A_sa per position
    }

    func testDecodeStepByHand() throws {
        let shape = try smallShape(layers: 3)
        let one = LayerFlops(shape, sequenceLength: 1)
        let original = CostModel.decodeStep(shape, pastLength: 20)
        // Per layer: projections and MLP of one token, one query against 21 keys (Q·Kᵀ and P·V).
        XCTAssertEqual(original.flops.selfAttention, 3 * 2 * 2 * 21 * 64)
        XCTAssertEqual(original.flops.total, 3 * (one.projections + one.mlp) + 3 * 2 * 2 * 21 * 64 + 2 * 64 * 100)
        XCTAssertNil(original.slowKV)
        let cached = CostModel.decodeStep(shape, pastLength: 20, hybridLayers: 2, slowTokens: 50, slowKVCached: true)
        XCTAssertEqual(cached.flops.crossAttention, 2 * (2 * 2 * 1 * 50 * 64))
        XCTAssertEqual(cached.flops.gate, 2 * (2 * 1 * 64))
        XCTAssertEqual(cached.flops.slowKVProjection, 0)
        XCTAssertEqual(cached.slowKV, "cached")
        let recomputed = CostModel.decodeStep(shape, pastLength: 20, hybridLayers: 2, slowTokens: 50, slowKVCached: false)
        XCTAssertEqual(recomputed.flops.slowKVProjection, 2 * (2 * 50 * 64 * 64))
        XCTAssertEqual(recomputed.flops.total - cached.flops.total, recomputed.flops.slowKVProjection)
    }

    func testFusedAttentionDropsTheScoresFromThePeak() throws {
        let shape = try smallShape(layers: 3)
        let workload = VideoWorkload(frames: 32, tokensPerFrame: 81, textTokens: 5)
        let decomposed = try CostModel.slowFast(shape, workload, SlowFastSetup(hybridLayers: [0], attention: .decomposed))
        let fused = try CostModel.slowFast(shape, workload, SlowFastSetup(hybridLayers: [0], attention: .fused))
        XCTAssertEqual(decomposed.flops, fused.flops)
        // Text queries: H * L_q * N_s = 4 * 5 * 2592 score elements at 2 bytes.
        XCTAssertEqual(decomposed.memory.activationsPeak - fused.memory.activationsPeak, 4 * 5 * 2592 * 2)
    }

    func testWholePrefillAddsUp() throws {
        let shape = try smallShape(layers: 3)
        // 4 frames x 9 tokens + 5 text tokens = 41 positions.
        let baseline = try CostModel.baseline(shape, VideoWorkload(frames: 4, tokensPerFrame: 9, textTokens: 5))
        XCTAssertEqual(baseline.sequenceLength, 41)
        let layer = LayerFlops(shape, sequenceLength: 41)
        XCTAssertEqual(baseline.flops.total, 3 * layer.total + 2 * 64 * 100)
        // KV cache: 3 layers * (K and V) * 41 * 32 * 2 bytes.
        XCTAssertEqual(baseline.memory.kvCache, 3 * 2 * 41 * 32 * 2)

        // Slow-fast with s1t2 at 4 frames and min 2 fast frames: 2 fast frames of 9 tokens in
        // the sequence (23 positions), 36 slow tokens through layers 0 and 2.
        let setup = SlowFastSetup(fast: FastTokenConfig(temporalStride: 1, temporalKernel: 2, minFastFrames: 2), hybridLayers: [0, 2])
        let slowFast = try CostModel.slowFast(shape, VideoWorkload(frames: 4, tokensPerFrame: 9, textTokens: 5), setup)
        XCTAssertEqual(slowFast.sequenceLength, 23)
        XCTAssertEqual(slowFast.slowTokens, 36)
        let hybrid = HybridLayerFlops(shape, sequenceLength: 23, queryingPositions: 5, slowTokens: 36)
        XCTAssertEqual(slowFast.flops.total, 3 * LayerFlops(shape, sequenceLength: 23).total + 2 * 64 * 100 + 2 * hybrid.total)
        XCTAssertEqual(slowFast.memory.slowKVCache, 2 * 2 * 36 * 32 * 2)

        // With no hybrid layers and as many frames as fast frames, slow-fast is the baseline.
        let same = try CostModel.slowFast(shape, VideoWorkload(frames: 2, tokensPerFrame: 9, textTokens: 5),
                                          SlowFastSetup(fast: setup.fast, hybridLayers: []))
        let base = try CostModel.baseline(shape, VideoWorkload(frames: 2, tokensPerFrame: 9, textTokens: 5))
        XCTAssertEqual(same.flops.total, base.flops.total)
    }

    func testQwen2PresetReproducesTheHeadline() throws {
        let shape = DecoderShape.qwen2_7b
        // The parameter count published for Qwen2/Qwen2.5-7B (7.62B): embeddings, 28 layers
        // with q/k/v biases, untied LM head.
        XCTAssertEqual(shape.parameters, 7_615_616_512)
        let report = try CostReport(source: "qwen2-7b", shape: shape, frames: [16, 64, 128],
                                    setup: .release(numLayers: 28))
        XCTAssertEqual(report.setup.hybridLayers, [0, 8, 16, 24])
        let at128 = try XCTUnwrap(report.rows.last)
        XCTAssertEqual(at128.frames, 128)
        XCTAssertEqual(at128.slowFast.sequenceLength, 128 + 16 * 81)
        XCTAssertEqual(at128.slowFast.slowTokens, 128 * 81)
        XCTAssertEqual(at128.baseline.sequenceLength, 128 + 128 * 81)
        XCTAssertGreaterThanOrEqual(at128.slowFastOverReference, 1.00)
        XCTAssertLessThanOrEqual(at128.slowFastOverReference, 1.05)
        XCTAssertGreaterThan(at128.baselineOverReference, 6)
        // Every slow-fast row keeps the 16-frame sequence: the ratios grow only linearly.
        for row in report.rows {
            XCTAssertEqual(row.slowFast.sequenceLength, report.reference.sequenceLength)
        }
    }

    func testErrorsNameTheProblem() throws {
        XCTAssertThrowsError(try DecoderShape(ModelDimensions(numLayers: 2, hiddenSize: 8, numHeads: 2, numKVHeads: 1, headDim: 4))) { error in
            XCTAssertEqual(error as? CostModelError, .missingDimension("intermediate size"))
        }
        XCTAssertThrowsError(try CostModel.slowFast(try smallShape(), VideoWorkload(frames: 4),
                                                    SlowFastSetup(hybridLayers: [0, 2]))) { error in
            XCTAssertEqual(error as? CostModelError, .hybridLayerOutOfRange(layer: 2, layers: 2))
        }
    }

    func testOverridesLayOverTheReadDims() {
        let base = ModelDimensions(numLayers: 28, hiddenSize: 3584, numHeads: 28, numKVHeads: 4, headDim: 128)
        XCTAssertEqual(DimensionOverrides(intermediateSize: 18944).applied(to: base)?.intermediateSize, 18944)
        XCTAssertEqual(DimensionOverrides(numLayers: 2).applied(to: base)?.numLayers, 2)
        XCTAssertEqual(DimensionOverrides().applied(to: base), base)
        XCTAssertNil(DimensionOverrides(numLayers: 2, hiddenSize: 8).applied(to: nil), "five dims have no default")
        XCTAssertEqual(DimensionOverrides(numLayers: 28, hiddenSize: 3584, numHeads: 28, numKVHeads: 4, headDim: 128).applied(to: nil), base)
    }
}
