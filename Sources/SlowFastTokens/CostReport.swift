import Foundation
import SlowFastValues
import SlowFastIR
/// Baseline and slow-fast cost at one frame count, with the ratios against the reference.
public struct CostRow: Codable, Equatable, Sendable {
    public var frames: Int
    public var baseline: PrefillCost
    public var slowFast: PrefillCost
    /// slow-fast@frames FLOPs / baseline@reference FLOPs (the paper's headline at 128 vs 16).
    public var slowFastOverReference: Double
    /// baseline@frames FLOPs / baseline@reference FLOPs.
    public var baselineOverReference: Double
    /// slow-fast@frames FLOPs / baseline@frames FLOPs.
    public var slowFastOverBaseline: Double
    /// One generated token after this row's prefill.
    public var decode: DecodeRow
}

/// One decode step at a frame count: the baseline (past = its sequence), the original model
/// with no hybrid layer at the slow-fast sequence length, and the slow-fast model with the
/// slow K/V cached or recomputed; ratios against the original.
public struct DecodeRow: Codable, Equatable, Sendable {
    public var baseline: DecodeStepCost
    public var original: DecodeStepCost
    public var slowFastCached: DecodeStepCost
    public var slowFastRecomputed: DecodeStepCost
    public var cachedOverOriginal: Double
    public var recomputedOverOriginal: Double
}

/// What `slowfast cost` prints: the inputs, the conventions and one row per frame count.
/// Its JSON form is described by `Schemas/cost.schema.json`.
public struct CostReport: Codable, Equatable, Sendable {
    public var schemaVersion = 1
    /// Where the dims came from: a preset name, a model path, or "explicit".
    public var source: String
    public var model: DecoderShape
    public var parameters: Double
    public var tokensPerFrame: Int
    public var textTokens: Int
    public var referenceFrames: Int
    public var setup: SlowFastSetup
    public var reference: PrefillCost
    public var rows: [CostRow]
    public var conventions: [String]

    /// Computes the report for each frame count in `frames`.
    public init(source: String, shape: DecoderShape, frames: [Int], tokensPerFrame: Int = 81, textTokens: Int = 128,
                referenceFrames: Int = 16, setup: SlowFastSetup) throws {
        guard !frames.isEmpty else { throw CostModelError.invalidWorkload("give at least one frame count") }
        self.source = source
        self.model = shape
        self.parameters = shape.parameters
        self.tokensPerFrame = tokensPerFrame
        self.textTokens = textTokens
        self.referenceFrames = referenceFrames
        self.setup = setup
        let reference = try CostModel.baseline(shape, VideoWorkload(frames: referenceFrames, tokensPerFrame: tokensPerFrame, textTokens: textTokens))
        self.reference = reference
        rows = try frames.map { count in
            let workload = VideoWorkload(frames: count, tokensPerFrame: tokensPerFrame, textTokens: textTokens)
            let baseline = try CostModel.baseline(shape, workload)
            let slowFast = try CostModel.slowFast(shape, workload, setup)
            let hybrids = Set(setup.hybridLayers).count
            let original = CostModel.decodeStep(shape, pastLength: slowFast.sequenceLength)
            let cached = CostModel.decodeStep(shape, pastLength: slowFast.sequenceLength, hybridLayers: hybrids,
                                              slowTokens: slowFast.slowTokens, slowKVCached: true)
            let recomputed = CostModel.decodeStep(shape, pastLength: slowFast.sequenceLength, hybridLayers: hybrids,
                                                  slowTokens: slowFast.slowTokens, slowKVCached: false)
            let decode = DecodeRow(baseline: CostModel.decodeStep(shape, pastLength: baseline.sequenceLength), original: original,
                                   slowFastCached: cached, slowFastRecomputed: recomputed,
                                   cachedOverOriginal: cached.flops.total / original.flops.total,
                                   recomputedOverOriginal: recomputed.flops.total / original.flops.total)
            return CostRow(frames: count, baseline: baseline, slowFast: slowFast,
                           slowFastOverReference: slowFast.flops.total / reference.flops.total,
                           baselineOverReference: baseline.flops.total / reference.flops.total,
                           slowFastOverBaseline: slowFast.flops.total / baseline.flops.total, decode: decode)
        }
        conventions = [
            "a multiply-add is 2 FLOPs; norms, RoPE, softmax and elementwise ops are not counted",
            "self-attention counts the full L x L score matrix (dense kernel)",
            "LM head counted for the last position only",
            "cross-attention queries: \(setup.queries.rawValue) positions" + (setup.queries == .text
                ? " (a rewritten graph computes this when slow_query_exclude names the fast tokens)"
                : " (a rewritten graph computes this when nothing is excluded)"),
            "cross-attention form: \(setup.attention.rawValue)" + (setup.attention == .decomposed
                ? " (MatMul, Softmax, MatMul: the H x L_q x N_s scores count in the activation peak)"
                : " (a fused attention op: no score tensor in the activation peak); FLOPs are the same either way"),
            "decode: one generated token after the prefill (past = the prefill's sequence); self-attention over past + 1 keys; "
                + "slow-fast adds per hybrid layer the token's cross-attention and gate, and kv_proj over every slow token when "
                + "the slow K/V are recomputed each step (--slow-kv inline) rather than cached (--slow-kv inputs)",
            "baseline: all frames x tokensPerFrame visual tokens in the sequence; slow-fast: fast tokens in the sequence, frames x tokensPerFrame slow tokens through the hybrid layers",
            "memory in bytes at \(shape.bytesPerElement) bytes per element"
                + (shape.weightBytesPerParameter.map { String(format: " (weights as stored: %.3f bytes each)", $0) } ?? "")
                + "; activations are the one-layer peak",
        ]
    }
}
