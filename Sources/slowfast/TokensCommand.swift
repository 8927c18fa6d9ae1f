import ArgumentParser
import SlowFastKit

extension TokenPreset: ExpressibleByArgument {}

/// The fast-token rule, as a preset or as explicit numbers (shared by `tokens` and `cost`).
struct FastTokenOptions: ParsableArguments {
    @Option(help: "A release configuration: s1t4 (64 frames), s1t6 (96), s2t4 (128).")
    var preset: TokenPreset?

    @Option(name: .customLong("stride"), help: "Temporal sampling stride s (instead of --preset).")
    var stride: Int?

    @Option(name: .customLong("temporal-kernel"), help: "Temporal average pooling kernel t (instead of --preset).")
    var temporalKernel: Int?

    @Option(name: .customLong("spatial-pool"), help: "K x K spatial average pooling of fast frames (default 1: none).")
    var spatialPool: Int = 1

    @Option(name: .customLong("min-fast-frames"), help: "Keep at least this many fast frames (adaptive fallback).")
    var minFastFrames: Int = 16

    func validate() throws {
        if preset != nil && (stride != nil || temporalKernel != nil) {
            throw ValidationError("give either --preset or --stride/--temporal-kernel, not both")
        }
    }

    /// The rule, with `defaultPreset` when neither a preset nor numbers were given.
    func config(defaultPreset: TokenPreset? = nil) throws -> FastTokenConfig {
        var rule: FastTokenConfig
        if let preset = preset ?? (stride == nil && temporalKernel == nil ? defaultPreset : nil) {
            rule = preset.fastTokens
        } else if stride != nil || temporalKernel != nil {
            rule = FastTokenConfig(temporalStride: stride ?? 1, temporalKernel: temporalKernel ?? 1)
        } else {
            throw ValidationError("give --preset s1t4|s1t6|s2t4 or --stride S --temporal-kernel T")
        }
        rule.spatialPool = spatialPool
        rule.minFastFrames = minFastFrames
        return rule
    }
}

struct TokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Write an ONNX model that turns projector features into slow and fast tokens.",
        discussion: """
        Input `features` [frames, height, width, dim] float32; outputs `slow_tokens` \
        [1, frames*(h/P)*(w/P), dim] (P x P average pooling, P = --slow-pool, default 2) and \
        `fast_tokens` [1, N_f, dim] (temporal sampling with stride s, temporal average \
        pooling with kernel t, optional spatial pooling, at least --min-fast-frames frames). \
        `slow_tokens` fits the input of the same name of a rewritten model.

        With --into MODEL --after VALUE the same ops are added to MODEL after VALUE (e.g. the \
        projector output of a vision graph, [frames, h, w, d] or [frames, h*w, d]) and the two \
        token values become extra graph outputs.

        Examples:
          slowfast tokens -o tokens.onnx --preset s2t4 --height 18 --width 18 --dim 3584
          slowfast tokens --into vision.onnx --after projector_out -o vision_tokens.onnx \
            --preset s1t4 --height 18 --width 18 --dim 3584
        """
    )

    @Option(name: [.short, .customLong("output")], help: "Where to write the token model.")
    var output: String

    @Option(help: "Number of frames (default: the preset's).")
    var frames: Int?

    @Option(help: "Height of the projector feature grid.")
    var height: Int

    @Option(help: "Width of the projector feature grid.")
    var width: Int

    @Option(help: "Feature width (the LLM's hidden size).")
    var dim: Int

    @Option(name: .customLong("slow-pool"), help: "P x P average pooling that makes slow tokens.")
    var slowPool: Int = 2

    @OptionGroup var fast: FastTokenOptions

    @Option(help: "Add the token ops to this model instead of writing a standalone one.")
    var into: String?

    @Option(help: "With --into: the value (projector output) the token ops read.")
    var after: String?

    @Option(help: "With --into: where the output's external weights go (auto, link, copy, inline).")
    var weights: WeightsMode = .auto

    @Flag(help: "Print the token plan as JSON instead of text.")
    var json = false

    func validate() throws {
        if frames == nil && fast.preset == nil {
            throw ValidationError("give --frames N (or a --preset, whose frame count is the default)")
        }
        if (into == nil) != (after == nil) {
            throw ValidationError("--into MODEL and --after VALUE go together")
        }
    }

    func run() throws {
        try reportingErrors {
            let rule = try fast.config()
            let spec = TokenSpec(frames: frames ?? fast.preset?.frames ?? 0, height: height, width: width, dim: dim,
                                 slowPool: slowPool, fast: rule)
            let plan: TokenPlan
            if let into, let after {
                let model = try ModelReader.read(path: into)
                plan = try TokenBuilder.insert(into: model, after: after, spec: spec).plan
                try ModelWriter.write(model, to: output, options: WriteOptions(weights: weights))
            } else {
                try ModelWriter.write(try TokenBuilder.makeModel(spec), to: output, options: WriteOptions(weights: .inline))
                plan = try TokenPlan(spec)
            }
            if json {
                print(try encodeJSON(plan))
            } else {
                print("wrote \(output)")
                print("slow tokens: \(plan.numSlowTokens) = \(spec.frames) frames x \(plan.slowHeight)x\(plan.slowWidth)")
                print("fast tokens: \(plan.numFastTokens) = \(plan.fastFrames) frames x \(plan.fastHeight)x\(plan.fastWidth)"
                      + (plan.usedFallback ? " (adaptive fallback: at least \(rule.minFastFrames) fast frames)" : ""))
            }
        }
    }
}
