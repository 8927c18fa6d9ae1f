import ArgumentParser
import SlowFastKit

extension HybridLayerSettings.Mode: ExpressibleByArgument {}
extension SlowKVSource: ExpressibleByArgument {}
extension CrossAttentionForm: ExpressibleByArgument {}
extension HybridLayerSettings.NewWeights: ExpressibleByArgument {}

/// The library's defaults, which the flags take when not given.
private let defaults = HybridLayerSettings()

/// Options that choose and shape hybrid layers; shared by `rewrite` and `plan`.
struct HybridOptions: ParsableArguments {
    @Option(name: .customLong("hybrid-layers"), help: "Decoder layers to make hybrid, e.g. 0,8,16,24.")
    var layerList: LayerList?

    @Option(help: "Make every N-th layer hybrid (the release: 8), from --min-depth to --max-depth.")
    var every: Int?

    @Option(name: .customLong("min-depth"), help: "First layer for --every.")
    var minDepth: Int = 0

    @Option(name: .customLong("max-depth"), help: "Layer bound for --every, exclusive (default: the layer count).")
    var maxDepth: Int?

    @Option(help: "in-place (the paper's hybrid layer) or insert (a gated cross-attention block before each layer).")
    var mode: HybridLayerSettings.Mode = defaults.mode

    @Option(name: .customLong("slow-kv"), help: ArgumentHelp(
        "inline: the decoder computes each hybrid layer's slow keys/values from slow_tokens on every run. inputs: it takes them as "
        + "inputs past_key_values.{i}.encoder.key/value, computed once per generation by <output>.slow-kv-encoder.onnx (in-place mode).",
        valueName: "inline|inputs"))
    var slowKV: SlowKVSource = defaults.slowKV

    @Option(name: .customLong("cross-attention"), help: ArgumentHelp(
        "auto: the Attention op at opset >= 23, com.microsoft MultiHeadAttention when the model imports com.microsoft, else "
        + "decomposed (MatMul, Softmax, MatMul). Or force one; multi-head-attention imports com.microsoft (onnxruntime only).",
        valueName: "auto|decomposed|attention|multi-head-attention"))
    var crossAttention: CrossAttentionForm = defaults.crossAttention

    @Option(name: .customLong("new-weights"), help: ArgumentHelp(
        "In a quantized model: as-model writes cross_attn_kv_proj in the model's own quantized form where k_proj and v_proj join "
        + "exactly (MatMulNBits rows, the same bytes), float elsewhere; float writes it in float from their dequantized values.",
        valueName: "as-model|float"))
    var newWeights: HybridLayerSettings.NewWeights = defaults.newWeights

    @Option(name: .customLong("slow-token-width"), help: "Width of the slow tokens you will feed; must equal the hidden size.")
    var slowTokenWidth: Int?

    @Option(name: .customLong("init-std"), help: "Std of the normal init of new projections that copy nothing.")
    var initStd: Double = defaults.initStd

    @Option(help: "Seed of that init.")
    var seed: UInt64 = defaults.seed

    @Option(help: "Layer discovery: auto, a built-in adapter name (see `slowfast adapters`), or a path to an adapter file.")
    var adapter: String = "auto"

    @Option(help: "Use this layer description (the JSON of `slowfast inspect --layers --json`) instead of discovery.")
    var layout: String?

    var isRequested: Bool { layerList != nil || every != nil }

    /// How the layers are made, as the flags say.
    var settings: HybridLayerSettings {
        HybridLayerSettings(mode: mode, slowTokenWidth: slowTokenWidth, initStd: initStd, seed: seed, slowKV: slowKV,
                            crossAttention: crossAttention, newWeights: newWeights)
    }

    func validate() throws {
        if layerList != nil && every != nil {
            throw ValidationError("give either --hybrid-layers or --every, not both")
        }
        if let every, every <= 0 { throw ValidationError("--every takes a positive number of layers") }
        if !isRequested && (maxDepth != nil || minDepth != 0) {
            throw ValidationError("--min-depth/--max-depth go with --every")
        }
    }

    /// Values that parse but would poison the output or hang the run, refused before any
    /// work with one `error:` line (ArgumentParser's `validate` prints usage lines too).
    func checkValues() throws {
        guard isRequested else { return }
        if !initStd.isFinite || initStd < 0 {
            throw CommandError("--init-std: takes a finite number >= 0, not \(initStd)")
        }
        if minDepth < 0 { throw CommandError("--min-depth: takes a layer number >= 0, not \(minDepth)") }
        if let maxDepth, maxDepth < 0 { throw CommandError("--max-depth: takes a layer bound >= 0, not \(maxDepth)") }
        if let slowTokenWidth, !(1 ... Limits.width).contains(slowTokenWidth) {
            throw CommandError("--slow-token-width: takes a width from 1 to \(Limits.width), not \(slowTokenWidth)")
        }
        if let negative = layerList?.layers.first(where: { $0 < 0 }) {
            throw CommandError("--hybrid-layers: takes layer numbers >= 0, not '\(negative)'")
        }
    }

    /// The hybrid part of the rewrite, when asked for.
    var request: HybridRequest? {
        guard isRequested else { return nil }
        let selection: LayerSelection
        if let layerList {
            selection = .layers(layerList.layers)
        } else {
            selection = .every(every ?? 1, from: minDepth, below: maxDepth)
        }
        return HybridRequest(layers: selection, settings: settings)
    }

    /// Where the layer description comes from: --layout, else discovery with --adapter.
    func layerSource() throws -> LayerSource {
        if let layout { return .given(try ModelLayout.load(path: layout)) }
        return .discover(AdapterChoice(argument: adapter))
    }
}

/// `--hybrid-layers 0,8,16`, parsed once when the flag is read: integers separated by commas
/// (a part that is not one is refused by the argument parser, naming the flag).
struct LayerList: ExpressibleByArgument {
    let layers: [Int]

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        layers = parts.compactMap { $0 }
    }
}

/// A CLI-level error whose text already names the file.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
