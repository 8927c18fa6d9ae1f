import Foundation
import ArgumentParser
import SlowFastKit

extension CrossAttentionQueries: ExpressibleByArgument {}
extension CrossAttentionKernel: ExpressibleByArgument {}

struct CostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cost",
        abstract: "Prefill FLOPs and memory of the baseline and of the slow-fast model.",
        discussion: """
        The baseline puts frames x tokens-per-frame visual tokens in the sequence; the slow-fast \
        model puts the fast tokens there (--preset-fast, default s2t4, at least 16 fast frames) \
        and sends all frames' tokens as slow tokens through the hybrid layers (default every \
        8th from 0). Ratios are against the baseline at --reference-frames.

        Example:
          slowfast cost --preset qwen2-7b --frames 16,64,128
        """
    )

    @Argument(help: "An ONNX model to read the dims from (needs layer discovery; see --preset).")
    var model: String?

    @Option(help: "With MODEL: layer discovery adapter (auto, an adapter name, or a path to an adapter file).")
    var adapter: String = "auto"

    @Option(help: "Model dims preset: qwen2-7b.")
    var preset: String?

    @Option(help: "Decoder layers.") var layers: Int?
    @Option(help: "Hidden size d.") var hidden: Int?
    @Option(help: "Query heads.") var heads: Int?
    @Option(name: .customLong("kv-heads"), help: "Key/value heads.") var kvHeads: Int?
    @Option(name: .customLong("head-dim"), help: "Head dim.") var headDim: Int?
    @Option(help: "MLP intermediate size.") var intermediate: Int?
    @Option(help: "Vocabulary size.") var vocab: Int?
    @Flag(name: .customLong("tied-embeddings"), help: "The LM head shares the embedding matrix.") var tiedEmbeddings = false
    @Option(name: .customLong("bytes-per-element"), help: "Bytes per weight/activation element (2 = bf16/fp16).") var bytesPerElement: Int = 2

    @Option(help: "Frame counts, comma separated.")
    var frames: String = "16,64,128"

    @Option(name: .customLong("reference-frames"), help: "The baseline frame count ratios are taken against.")
    var referenceFrames: Int = 16

    @Option(name: .customLong("tokens-per-frame"), help: "Visual tokens per frame after the 2x2 pool (release: 81); with --temporal-patch, per row.")
    var tokensPerFrame: Int = 81

    @Option(name: .customLong("temporal-patch"), help: "Video frames per row of visual tokens (Qwen-VL: 2): --frames, --reference-frames and the fast rule count video frames, the model counts rows.")
    var temporalPatch: Int = 1

    @Option(name: .customLong("text-tokens"), help: "Text tokens in the prompt (system + question).")
    var textTokens: Int = 128

    @Option(name: .customLong("preset-fast"), help: "Fast-token configuration: s1t4, s1t6, s2t4.")
    var fastPreset: TokenPreset?

    @OptionGroup var fastRule: FastRuleOptions

    @Option(name: .customLong("hybrid-layers"), help: "Hybrid layer indices, comma separated (default: those of a MODEL slowfast rewrote, else every 8 from 0).")
    var hybridLayers: LayerList?

    @Option(help: "Make every N-th layer hybrid, from 0.")
    var every: Int?

    @Option(name: .customLong("cross-queries"), help: "Positions that query the slow tokens: text (release) or all.")
    var crossQueries: CrossAttentionQueries = .text

    @Option(name: .customLong("cross-attention"), help: ArgumentHelp(
        "Cross-attention form for the memory model: decomposed (scores materialised) or fused (default: what a MODEL slowfast rewrote uses, else decomposed).",
        valueName: "decomposed|fused"))
    var crossAttention: CrossAttentionKernel?

    @Flag(help: "Print the report as JSON (Schemas/cost.schema.json).")
    var json = false

    func validate() throws {
        if hybridLayers != nil && every != nil { throw ValidationError("give --hybrid-layers or --every, not both") }
        try fastRule.validate(preset: fastPreset, flag: "--preset-fast")
        _ = try parseList(frames, "--frames")
    }

    func run() throws {
        try reportingErrors {
            try Limits.check(fastRule.numbers)
            for frameCount in try parseList(frames, "--frames") { try Limits.check("--frames", frameCount, 1 ... Limits.frames) }
            try Limits.check("--reference-frames", referenceFrames, 1 ... Limits.frames)
            try Limits.check("--tokens-per-frame", tokensPerFrame, 1 ... Limits.grid * Limits.grid)
            try Limits.check("--text-tokens", textTokens, 0 ... Limits.textTokens)
            try Limits.check("--bytes-per-element", bytesPerElement, 1 ... 16)
            try Limits.check("--every", every, 1 ... Limits.layers)
            let (shape, source, rewritten, fused) = try resolveShape()
            // Explicit, preset or read from a model: every dim is bounded the same way.
            let dims = shape.dimensions
            try Limits.check("layers", dims.numLayers, 1 ... Limits.layers)
            try Limits.check("hidden size", dims.hiddenSize, 1 ... Limits.flagWidth)
            try Limits.check("heads", dims.numHeads, 1 ... Limits.flagHeads)
            try Limits.check("kv heads", dims.numKVHeads, 1 ... Limits.flagHeads)
            try Limits.check("head dim", dims.headDim, 1 ... Limits.flagWidth)
            try Limits.check("intermediate size", dims.intermediateSize, 1 ... 8 * Limits.flagWidth)
            try Limits.check("vocab size", dims.vocabSize, 1 ... Limits.flagVocab)
            let fast = try fastRule.config(preset: fastPreset, flag: "--preset-fast", defaultPreset: .s2t4)
            let layerCount = shape.dimensions.numLayers
            let hybrid: [Int]
            if let hybridLayers {
                hybrid = hybridLayers.layers
            } else if every == nil, let rewritten, !rewritten.isEmpty {
                // A model slowfast rewrote: the hybrid layers it has.
                hybrid = rewritten
            } else {
                let step = every ?? 8
                guard step >= 1 else { throw ValidationError("--every must be at least 1") }
                hybrid = LayerSelection.every(step).resolve(layerCount: layerCount)
            }
            let setup = SlowFastSetup(fast: fast, hybridLayers: hybrid, queries: crossQueries,
                                      attention: crossAttention ?? (fused == true ? .fused : .decomposed))
            // Rows of a temporal patch: frame counts and the fast rule become rows, a patch never split.
            try Limits.check("--temporal-patch", temporalPatch, 1 ... 64)
            var rowSetup = setup
            rowSetup.fast = try fast.inTemporalPatches(of: temporalPatch)
            let rows = try ([referenceFrames] + parseList(frames, "--frames")).map { count in
                guard count % temporalPatch == 0 else {
                    throw ValidationError("--frames \(count): not whole temporal patches of \(temporalPatch) frames (--temporal-patch)")
                }
                return count / temporalPatch
            }
            let report = try CostReport(source: source, shape: shape, frames: Array(rows.dropFirst()),
                                        tokensPerFrame: tokensPerFrame, textTokens: textTokens,
                                        referenceFrames: rows[0], setup: rowSetup)
            if temporalPatch > 1 && !json {
                print("rows: temporal patches of \(temporalPatch) video frames; the frames column below counts rows")
            }
            print(json ? try encodeJSON(report) : CostTable.render(report))
        }
    }

    /// The decoder dims: from MODEL (layer discovery), a preset, or explicit options; explicit
    /// options override single numbers of the other two. For a model slowfast rewrote, also
    /// the hybrid layers it has and whether its cross-attention is a fused op.
    func resolveShape() throws -> (DecoderShape, String, [Int]?, Bool?) {
        var dims: ModelDimensions?
        var source = "explicit"
        var rewritten: [Int]?
        var fused: Bool?
        var storedWeightBytes: Double?
        if let model {
            // Intermediate size and vocabulary may be unknown to discovery; --intermediate and
            // --vocab fill them in below.
            let loaded = try ModelReader.read(path: model)
            dims = try AdapterChoice(argument: adapter).discover(loaded).dimensions
            rewritten = HybridLayerReport(model: loaded).hybridLayers.map(\.layer)
            fused = HybridLayerReport.crossAttentionIsFused(in: loaded)
            storedWeightBytes = Double(loaded.graph.initializers.reduce(0) { $0 + ($1.byteCount ?? 0) })
            source = model
        }
        if model != nil && preset != nil { throw ValidationError("give MODEL or --preset, not both") }
        if let preset {
            guard let known = DecoderShape.presets[preset] else { throw CostModelError.unknownPreset(preset) }
            dims = known.dimensions
            source = preset
        }
        let overrides = DimensionOverrides(numLayers: layers, hiddenSize: hidden, numHeads: heads, numKVHeads: kvHeads,
                                           headDim: headDim, intermediateSize: intermediate, vocabSize: vocab)
        guard let result = overrides.applied(to: dims) else {
            throw ValidationError("give MODEL, --preset qwen2-7b, or all of --layers --hidden --heads --kv-heads --head-dim --intermediate --vocab")
        }
        if dims != nil && !overrides.isEmpty { source += " (overridden)" }
        var shape = try DecoderShape(result, tiedEmbeddings: tiedEmbeddings, bytesPerElement: bytesPerElement)
        // A MODEL's weights count at the width it stores them (int4 codes and scales, float16, ...).
        if let storedWeightBytes, overrides.isEmpty {
            let parameters = shape.parameters + Double(Set(rewritten ?? []).count) * shape.parametersPerHybridLayer
            shape.weightBytesPerParameter = storedWeightBytes / parameters
        }
        return (shape, source, rewritten, fused)
    }
}

/// The text form of a cost report.
enum CostTable {
    static func render(_ report: CostReport) -> String {
        let dims = report.model.dimensions
        var lines: [String] = []
        lines.append("model: \(report.source): \(dims.numLayers) layers, d \(dims.hiddenSize), \(dims.numHeads)/\(dims.numKVHeads) heads x \(dims.headDim), MLP \(report.model.intermediateSize), vocab \(report.model.vocabSize), \(format(report.parameters / 1e9, 2))B parameters")
        let fast = report.setup.fast
        lines.append("workload: \(report.tokensPerFrame) tokens/frame, \(report.textTokens) text tokens; fast s\(fast.temporalStride)t\(fast.temporalKernel) spatial \(fast.spatialPool) min \(fast.minFastFrames) frames; hybrid layers \(report.setup.hybridLayers.map(String.init).joined(separator: ",")); cross queries: \(report.setup.queries.rawValue); cross-attention: \(report.setup.attention.rawValue)")
        lines.append("")
        let header = ["variant", "frames", "seq len", "slow tok", "TFLOPs", "vs base@\(report.referenceFrames)", "weights GB", "KV GB", "act GB"]
        var table: [[String]] = [header]
        for row in report.rows {
            for (cost, ratio) in [(row.baseline, row.baselineOverReference), (row.slowFast, row.slowFastOverReference)] {
                table.append([cost.variant.rawValue, String(cost.frames), String(cost.sequenceLength), String(cost.slowTokens),
                              format(cost.flops.total / 1e12, 2), format(ratio, 3), format(cost.memory.weights / 1e9, 2),
                              format((cost.memory.kvCache + cost.memory.slowKVCache) / 1e9, 3),
                              format(cost.memory.activationsPeak / 1e9, 3)])
            }
        }
        let widths = header.indices.map { column in table.map { $0[column].count }.max() ?? 0 }
        for (index, row) in table.enumerated() {
            lines.append(row.enumerated().map { column, cell in
                String(repeating: " ", count: widths[column] - cell.count) + cell
            }.joined(separator: "  "))
            if index == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        lines.append("")
        for row in report.rows {
            lines.append("slow-fast@\(row.frames) / baseline@\(report.referenceFrames) = \(format(row.slowFastOverReference, 4))    baseline@\(row.frames) / baseline@\(report.referenceFrames) = \(format(row.baselineOverReference, 4))")
        }
        lines.append("")
        lines.append("decode, one generated token after the prefill (GFLOPs per token):")
        for row in report.rows {
            let d = row.decode
            lines.append("  @\(row.frames): baseline \(format(d.baseline.flops.total / 1e9, 3)) (past \(d.baseline.pastLength)); "
                + "original \(format(d.original.flops.total / 1e9, 3)) (past \(d.original.pastLength)); "
                + "slow-fast cached K/V \(format(d.slowFastCached.flops.total / 1e9, 3)) (x\(format(d.cachedOverOriginal, 4))), "
                + "recomputed \(format(d.slowFastRecomputed.flops.total / 1e9, 3)) (x\(format(d.recomputedOverOriginal, 4)))")
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ value: Double, _ digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }
}

/// Parses "16,64,128".
func parseList(_ text: String, _ option: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
        throw ValidationError("\(option) takes comma-separated integers, e.g. 16,64,128 (got '\(text)')")
    }
    return values.compactMap { $0 }
}

/// Pretty, key-sorted JSON (deterministic output).
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
