import ArgumentParser
import SlowFastKit

extension SafeTensorsDType: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "float32", "f32": self = .f32
        case "float16", "f16": self = .f16
        case "bfloat16", "bf16": self = .bf16
        default: return nil
        }
    }
}

struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "Move parameters between a model and a safetensors checkpoint, by their PyTorch names.",
        subcommands: [WeightsExportCommand.self, WeightsImportCommand.self]
    )
}

struct WeightsExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the model's new and derived parameters (or all) as a safetensors checkpoint.",
        discussion: """
        Names and layouts come from the weight map beside MODEL (<name>.weight-map.json, written \
        by every rewrite), or --weight-map, or layer discovery for a model slowfast did not \
        write. Tensors are written in PyTorch layout; packed tensors (a fused qkv_proj) are split \
        into their parts. A transform that cannot be undone exactly is refused by name.

        Example:
          slowfast weights export out/model.onnx -o trained/ --dtype bfloat16
        """
    )

    @Argument(help: "The ONNX model.") var model: String
    @Option(name: [.short, .customLong("output")], help: "The folder to write the checkpoint into (created; must hold no checkpoint).")
    var output: String
    @Flag(help: "Every named parameter, not only the new and derived ones.") var all = false
    @Option(help: "Write float tensors as float32, float16 or bfloat16 (default: each tensor's own type).")
    var dtype: SafeTensorsDType?
    @Option(name: .customLong("max-shard-size"), help: "Shard above this many bytes, e.g. 5GB, 500MB, 1000000.")
    var maxShardSize: String = "5GB"
    @Option(name: .customLong("weight-map"), help: "The weight map to name the tensors by.") var weightMap: String?
    @Option(help: "Layer discovery when there is no weight map: auto, a built-in adapter name, or a path.")
    var adapter: String = "auto"
    @Flag(name: .customLong("allow-overflow"), help: "With --dtype: saturate values beyond the target type (1e6 in float16) instead of refusing them; each tensor is reported.")
    var allowOverflow = false
    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        if byteCount(maxShardSize) == nil { throw ValidationError("--max-shard-size takes a positive size such as 5GB, 500MB or 1000000") }
    }

    func run() throws {
        progress.apply()
        try reportingErrors {
            let loaded = try ModelReader.read(path: model)
            let map = try WeightMapSource.load(forModel: loaded, at: model, explicit: weightMap, adapters: AdapterChoice(argument: adapter))
            var options = WeightExport.Options(all: all, dtype: dtype, maxShardBytes: byteCount(maxShardSize) ?? 5_000_000_000)
            let overflowLog = OverflowLog()
            if allowOverflow { options.overflow = .saturate(overflowLog) }
            let (files, tensors) = try WeightExport.export(loaded, weightMap: map, to: output, options: options)
            printSaturated(overflowLog)
            for file in files { print("written: \(output)/\(file)") }
            print("\(tensors.count) tensors")
        }
    }
}

struct WeightsImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Fill a model's parameters from a safetensors checkpoint and write it like a rewrite.",
        discussion: """
        Every parameter whose PyTorch name the checkpoint holds is replaced (converted to the \
        model's dtype, laid out as the weight map says, shapes checked); kept weights too, so \
        a base export plus a fine-tuned checkpoint gives the fine-tuned model. CKPT is a \
        .safetensors file, a model.safetensors.index.json, or a folder holding either.

        Example:
          slowfast weights import out/model.onnx --from release/ -o trained/model.onnx --strict
        """
    )

    @OptionGroup var io: ModelIOOptions
    @Option(name: .customLong("from"), help: "The checkpoint: a .safetensors file, an index, or a folder.") var checkpoint: String
    @Flag(help: "Fail unless every named parameter is filled and every checkpoint tensor used.") var strict = false
    @Flag(help: "Where a value does not fit a quantized weight's scales, widen those scales (reported) instead of refusing.")
    var requantize = false
    @Flag(name: .customLong("allow-overflow"), help: "Saturate values beyond the model's float type (65520 in float16) instead of refusing them; each tensor is reported.")
    var allowOverflow = false
    @Option(name: .customLong("weight-map"), help: "Where to write the output's weight map (default: beside the output).")
    var weightMap: String?
    @Option(help: "Layer discovery when the model has no weight map: auto, a built-in adapter name, or a path.")
    var adapter: String = "auto"

    func run() throws {
        io.progress.apply()
        try reportingErrors {
            var request = RewriteRequest(layers: .discover(AdapterChoice(argument: adapter)), weightsFrom: checkpoint, strictWeights: strict)
            request.requantize = requantize
            let overflowLog = OverflowLog()
            if allowOverflow { request.overflow = .saturate(overflowLog) }
            defer { printSaturated(overflowLog) }
            let (outcome, report) = try Pipeline.rewrite(io.input, to: io.output, request: request, weights: io.weights,
                                                         weightMapPath: weightMap)
            printImport(outcome.imported)
            for file in report.files { print("\(file.action.rawValue): \(oneLine(file.path)) (\(file.bytes) bytes)") }
        }
    }
}

/// The tensors a saturating conversion clipped (`--allow-overflow`).
func printSaturated(_ log: OverflowLog) {
    for (tensor, count) in log.saturated {
        print("saturated \(count) values of '\(tensor)' beyond its float type's range (--allow-overflow)")
    }
}

/// The import's counts, and the first few names of what did not match.
func printImport(_ report: WeightImport.Report?) {
    guard let report else { return }
    print("filled \(report.filled.count) parameters; \(report.missing.count) missing from the checkpoint; \(report.unused.count) checkpoint tensors unused")
    if !report.missing.isEmpty { print("  missing: " + report.missing.prefix(5).joined(separator: ", ") + (report.missing.count > 5 ? ", ..." : "")) }
    if !report.unused.isEmpty { print("  unused: " + report.unused.prefix(5).joined(separator: ", ") + (report.unused.count > 5 ? ", ..." : "")) }
    for quantized in report.quantized {
        print("  quantized \(quantized.name): max abs error \(quantized.maxAbsError), mean \(quantized.meanAbsError)"
              + (quantized.widened > 0 ? "; \(quantized.widened) scales widened (--requantize)" : ""))
    }
}

/// "5GB", "500MB", "64KB", "1000000" as bytes (decimal units, as Hugging Face's max_shard_size).
func byteCount(_ text: String) -> Int? {
    let units: [(String, Int)] = [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1)]
    let upper = text.uppercased()
    for (suffix, factor) in units where upper.hasSuffix(suffix) {
        guard let number = Int(upper.dropLast(suffix.count)), number > 0 else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
    return Int(upper).flatMap { $0 > 0 ? $0 : nil }
}
