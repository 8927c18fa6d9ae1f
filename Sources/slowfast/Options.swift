import ArgumentParser
import SlowFastKit
#if canImport(Glibc)
import Glibc
#endif

extension WeightsMode: ExpressibleByArgument {}

/// Input and output of commands that write a model.
struct ModelIOOptions: ParsableArguments {
    @Argument(help: "The ONNX model to read (binary .onnx; external data is found beside it).")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Where to write the new model.")
    var output: String

    @Option(help: "Where the output's external weights go: auto (reflink where the filesystem can, else copy), link (hard link: instant, but onnx.load refuses multiply-linked data), copy, inline")
    var weights: WeightsMode = .auto

    @OptionGroup var progress: ProgressOptions
}

/// `--quiet`, for commands whose work can take minutes (copies, imports, exports of gigabytes).
struct ProgressOptions: ParsableArguments {
    @Flag(help: "No progress line on stderr (one is drawn for about 1 GB of work or more, when stderr is a terminal).")
    var quiet = false

    /// Turns the progress line on where it helps: stderr is a terminal and --quiet not given.
    func apply() {
        ProgressLine.isEnabled = !quiet && isatty(2) != 0
    }
}

/// Numbers from flags (and from a model's dims) bounded before any work (`Limits`, the one
/// table of bounds): far above any real video or model, and small enough that the token and
/// cost arithmetic (products of frames, grid, width, layers, tokens squared) cannot overflow.
/// One `error:` line names the flag.
extension Limits {
    static func check(_ flag: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
        guard let value else { return }
        guard range.contains(value) else {
            throw CommandError("\(flag): takes a number from \(range.lowerBound) to \(range.upperBound), not \(value)")
        }
    }

    /// Only the upper bound, where the command has its own message for values below 1.
    static func checkAtMost(_ flag: String, _ value: Int?, _ limit: Int) throws {
        guard let value, value > limit else { return }
        throw CommandError("\(flag): takes a number up to \(limit), not \(value)")
    }

    /// The fast-token numbers shared by `tokens` and `cost`.
    static func check(_ fast: FastTokenNumbers) throws {
        try check("--stride", fast.stride, 1 ... frames)
        try check("--temporal-kernel", fast.temporalKernel, 1 ... frames)
        try check("--spatial-pool", fast.spatialPool, 1 ... grid)
        try check("--min-fast-frames", fast.minFastFrames, 0 ... frames)
    }
}

/// The fast-token flags, for `Limits.check`.
struct FastTokenNumbers {
    var stride: Int?
    var temporalKernel: Int?
    var spatialPool: Int
    var minFastFrames: Int
}

/// The fast-token rule's numbers, shared by `tokens` and `cost` (each names its own preset
/// flag: `--preset` and `--preset-fast`, since `cost --preset` names a model).
struct FastRuleOptions: ParsableArguments {
    @Option(name: .customLong("stride"), help: "Temporal sampling stride s (instead of a preset).")
    var stride: Int?

    @Option(name: .customLong("temporal-kernel"), help: "Temporal average pooling kernel t (instead of a preset).")
    var temporalKernel: Int?

    @Option(name: .customLong("spatial-pool"), help: "K x K spatial average pooling of fast frames (default 1: none).")
    var spatialPool: Int = 1

    @Option(name: .customLong("min-fast-frames"), help: "Keep at least this many fast frames (adaptive fallback).")
    var minFastFrames: Int = 16

    var numbers: FastTokenNumbers {
        FastTokenNumbers(stride: stride, temporalKernel: temporalKernel, spatialPool: spatialPool, minFastFrames: minFastFrames)
    }

    /// For the command's `validate`: a preset (given as `flag`) and explicit numbers exclude each other.
    func validate(preset: TokenPreset?, flag: String) throws {
        if preset != nil && (stride != nil || temporalKernel != nil) {
            throw ValidationError("give either \(flag) or --stride/--temporal-kernel, not both")
        }
    }

    /// The rule: `preset` (given as `flag`), else the numbers, else `defaultPreset`.
    func config(preset: TokenPreset?, flag: String, defaultPreset: TokenPreset? = nil) throws -> FastTokenConfig {
        var rule: FastTokenConfig
        if let preset = preset ?? (stride == nil && temporalKernel == nil ? defaultPreset : nil) {
            rule = preset.fastTokens
        } else if stride != nil || temporalKernel != nil {
            rule = FastTokenConfig(temporalStride: stride ?? 1, temporalKernel: temporalKernel ?? 1)
        } else {
            throw ValidationError("give \(flag) s1t4|s1t6|s2t4 or --stride S --temporal-kernel T")
        }
        rule.spatialPool = spatialPool
        rule.minFastFrames = minFastFrames
        return rule
    }
}
