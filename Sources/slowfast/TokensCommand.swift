import ArgumentParser
import SlowFastKit

extension TokenPreset: ExpressibleByArgument {}
extension FeatureLayout: ExpressibleByArgument {}

struct TokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Write an ONNX model that turns projector features into slow and fast tokens.",
        discussion: """
        Input `features` [frames, height, width, dim] float32; outputs `slow_tokens` \
        [1, num_slow_tokens, dim] (P x P average pooling, P = --slow-pool, default 2: \
        num_slow_tokens = frames*(h/P)*(w/P)) and `fast_tokens` [1, num_fast_tokens, dim] \
        (temporal sampling with stride s, temporal average pooling with kernel t, optional \
        spatial pooling, at least --min-fast-frames frames when the video has that many). The \
        model reads the frame count at run time: one model serves every video length, and \
        num_fast_tokens = fast frames * fast tokens per frame for that length. --frames N pins \
        the count (static dims). `slow_tokens` fits the input of the same name of a rewritten model.

        With --into MODEL --after VALUE the same ops are added to MODEL after VALUE (e.g. the \
        projector output of a vision graph, [frames, h, w, d] or [frames, h*w, d]) and the two \
        token values become extra graph outputs, named slow_tokens and fast_tokens as in the \
        standalone model (--output-names SLOW,FAST to change them; the CLI prints them). \
        VALUE's shape is proven by shape inference over the vision graph, not taken on trust: \
        --height/--width/--dim may be left out where the graph says them (the patch grid is \
        read from the tower's convolutions), a flag that disagrees with the graph is an error, \
        and a dim the graph cannot prove must be given. Channels-first maps [frames, d, h, w] \
        take --layout nchw (detected when only one layout fits the flags); a leading CLS token \
        of [frames, 1 + h*w, d] takes --drop-leading 1.

        Examples:
          slowfast tokens -o tokens.onnx --preset s2t4 --height 18 --width 18 --dim 3584
          slowfast tokens --into vision.onnx --after projector_out -o out.onnx --preset s1t4
          slowfast tokens --into clip.onnx --after projector_out -o out.onnx --preset s1t4 --drop-leading 1
        """
    )

    @Option(name: [.short, .customLong("output")], help: "Where to write the token model.")
    var output: String

    @Option(help: "Pin the frame count (default: any count, read at run time).")
    var frames: Int?

    @Option(help: "Height of the projector feature grid (with --into: read from the graph when it can be).")
    var height: Int?

    @Option(help: "Width of the projector feature grid (with --into: read from the graph when it can be).")
    var width: Int?

    @Option(help: "Feature width, the LLM's hidden size (with --into: read from the graph when it can be).")
    var dim: Int?

    @Option(help: "With --into: nhwc ([frames, h, w, d] or [frames, N, d]) or nchw ([frames, d, h, w], conv feature maps); detected when only one fits.")
    var layout: FeatureLayout?

    @Option(help: "With --into: the value holds flat rows [T*H*W, d] in (t, h, w) raster order (a Qwen-VL merger's output): T temporal patches, the merged H x W grid.")
    var grid: String?

    @Option(name: .customLong("grid-from"), help: "With --into: flat rows as with --grid, the grid read at run time from this int64 value holding T, h, w before the merge (Qwen-VL's grid_thw input).")
    var gridFrom: String?

    @Option(help: "With --grid-from: the spatial merge size (h and w of the grid value are divided by it; Qwen-VL: 2).")
    var merge: Int = 2

    @Option(name: .customLong("temporal-patch"), help: "With --grid: video frames per row of the grid (Qwen-VL: 2); --frames, --preset, --stride and --temporal-kernel count video frames.")
    var temporalPatch: Int = 2

    @Option(help: "With --into: values of the features' shape (Qwen3-VL's deepstack features, A,B,...) that get the same fast selection, as outputs fast_deepstack_0, ...")
    var deepstack: String?

    @Option(name: .customLong("drop-leading"), help: "With --into: drop this many tokens before the patch grid of [frames, N + h*w, d] (a CLS token: 1).")
    var dropLeading: Int?

    @Option(name: .customLong("slow-pool"), help: "P x P average pooling that makes slow tokens.")
    var slowPool: Int = 2

    @Option(help: "A release configuration: s1t4 (64 frames), s1t6 (96), s2t4 (128).")
    var preset: TokenPreset?

    @OptionGroup var fast: FastRuleOptions

    @Option(help: "Add the token ops to this model instead of writing a standalone one.")
    var into: String?

    @Option(help: "With --into: the value (projector output) the token ops read.")
    var after: String?

    @Option(help: "With --into: where the output's external weights go (auto, link, copy, inline).")
    var weights: WeightsMode = .auto

    @Option(name: .customLong("output-names"),
            help: "Names of the two token outputs, SLOW,FAST (default: slow_tokens,fast_tokens, the rewritten LLM's input and the fast-token sequence).")
    var outputNames: String = "\(TokenInputOptions.defaultSlowName),\(TokenInputOptions.defaultFastName)"

    @Flag(help: "Print the token plan as JSON instead of text.")
    var json = false

    func validate() throws {
        if (into == nil) != (after == nil) {
            throw ValidationError("--into MODEL and --after VALUE go together")
        }
        if into == nil && (height == nil || width == nil || dim == nil) {
            throw ValidationError("a standalone token model needs --height, --width and --dim")
        }
        if into == nil && dropLeading != nil {
            throw ValidationError("--drop-leading goes with --into (a standalone model's input is a grid)")
        }
        try fast.validate(preset: preset, flag: "--preset")
        if into == nil && (grid != nil || gridFrom != nil || deepstack != nil) {
            throw ValidationError("--grid, --grid-from and --deepstack go with --into (they describe a value of a vision graph)")
        }
        if grid != nil && gridFrom != nil {
            throw ValidationError("give --grid T,H,W or --grid-from NAME, not both")
        }
        if gridFrom != nil && frames != nil {
            throw ValidationError("--frames goes with --grid, not --grid-from (the grid, frames included, is read at run time)")
        }
        if let grid, parsedGrid(grid) == nil {
            throw ValidationError("--grid takes three positive numbers T,H,W (temporal patches, merged height, merged width), not '\(grid)'")
        }
        let names = outputNames.split(separator: ",", omittingEmptySubsequences: false)
        if names.count != 2 || names.contains(where: \.isEmpty) || names[0] == names[1] {
            throw ValidationError("--output-names takes two different names, SLOW,FAST (got '\(outputNames)')")
        }
    }

    func run() throws {
        try reportingErrors {
            try Limits.check(fast.numbers)
            try Limits.checkAtMost("--frames", frames, Limits.frames)
            try Limits.checkAtMost("--height", height, Limits.grid)
            try Limits.checkAtMost("--width", width, Limits.grid)
            try Limits.checkAtMost("--dim", dim, Limits.flagWidth)
            try Limits.check("--drop-leading", dropLeading, 0 ... Limits.grid * Limits.grid)
            try Limits.check("--slow-pool", slowPool, 1 ... Limits.grid)
            let names = outputNames.split(separator: ",").map(String.init)
            let options = TokenInputOptions(frames: frames, layout: layout ?? .nhwc, slowName: names[0], fastName: names[1])
            let rule: TokenRule
            var proof: FeatureShapeProof?
            var reported = options
            if let into, let after {
                let flatGrid = grid.flatMap(parsedGrid)
                if let flatGrid {
                    try Limits.checkAtMost("--grid T", flatGrid.frames, Limits.frames)
                    try Limits.checkAtMost("--grid H", flatGrid.height, Limits.grid)
                    try Limits.checkAtMost("--grid W", flatGrid.width, Limits.grid)
                }
                try Limits.check("--temporal-patch", temporalPatch, 1 ... 64)
                try Limits.check("--merge", merge, 1 ... 64)
                var claims = FeatureClaims(height: height, width: width, dim: dim, layout: layout, dropLeading: dropLeading, frames: frames,
                                           grid: flatGrid)
                claims.gridFrom = gridFrom.map { GridSource(value: $0, merge: merge) }
                var names = options
                names.companions = deepstack.map { $0.split(separator: ",").map(String.init) } ?? []
                let result = try TokenPipeline.insert(into: into, after: after, claims: claims, slowPool: slowPool, fast: try fast.config(preset: preset, flag: "--preset"),
                                                      names: names, temporalPatch: temporalPatch, to: output, weights: weights)
                rule = result.outputs.rule
                proof = result.proof
                if result.proof.layout == .flat {
                    // The plan counts rows (temporal patches), as the model computes.
                    reported.frames = frames.map { $0 / temporalPatch } ?? flatGrid?.frames
                    reported.layout = .flat
                    reported.fastGridName = names.fastGridName
                    reported.companions = names.companions
                }
            } else {
                rule = TokenRule(height: height!, width: width!, dim: dim!, slowPool: slowPool, fast: try fast.config(preset: preset, flag: "--preset"))
                try TokenPipeline.writeModel(rule, options: options, to: output)
            }
            var report = try TokensReport(output: output, rule: rule, options: reported)
            report.features = proof
            print(json ? try encodeJSON(report) : report.text)
        }
    }
}

/// "4,2,3" as a grid of positive numbers.
func parsedGrid(_ text: String) -> FlatGrid? {
    let numbers = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard numbers.count == 3, let t = numbers[0], let h = numbers[1], let w = numbers[2], t > 0, h > 0, w > 0 else { return nil }
    return FlatGrid(frames: t, height: h, width: w)
}

/// What `slowfast tokens` made: the output names and how frames become tokens.
struct TokensReport: Encodable {
    var output: String
    var slowTokens: String
    var fastTokens: String
    var rule: TokenRule
    /// nil: any frame count at run time.
    var frames: Int?
    /// The plan at the pinned frame count.
    var plan: TokenPlan?
    /// How each range of frame counts is treated.
    var regimes: [TokenRegime]
    /// With --into: the value's proven shape and layout.
    var features: FeatureShapeProof?
    /// Flat features: the fast grid output, and the deepstack values given the fast selection.
    var fastGrid: String?
    var companions: [String] = []

    enum CodingKeys: String, CodingKey { case output, slowTokens, fastTokens, rule, frames, plan, regimes, features, fastGrid, deepstack }

    /// `frames` and `plan` are written as null when the count is not pinned, so a reader sees
    /// "any frame count" rather than a missing field.
    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(output, forKey: .output)
        try container.encode(slowTokens, forKey: .slowTokens)
        try container.encode(fastTokens, forKey: .fastTokens)
        try container.encode(rule, forKey: .rule)
        try container.encode(frames, forKey: .frames)
        try container.encode(plan, forKey: .plan)
        try container.encode(regimes, forKey: .regimes)
        try container.encodeIfPresent(features, forKey: .features)
        try container.encodeIfPresent(fastGrid, forKey: .fastGrid)
        if !companions.isEmpty {
            try container.encode(Dictionary(uniqueKeysWithValues: companions.enumerated().map { (TokenInputOptions.companionName($0), $1) }), forKey: .deepstack)
        }
    }

    init(output: String, rule: TokenRule, options: TokenInputOptions) throws {
        self.output = output
        slowTokens = options.slowName
        fastTokens = options.fastName
        self.rule = rule
        frames = options.frames
        if options.layout == .flat || !options.companions.isEmpty {
            fastGrid = options.layout == .flat ? options.fastGridName : nil
            companions = options.companions
        }
        plan = try frames.map { try TokenPlan(rule.spec(frames: $0)) }
        regimes = try rule.regimes()
    }

    var text: String {
        let slowGrid = "\(rule.slowHeight)x\(rule.slowWidth)", fastGrid = "\(rule.fastHeight)x\(rule.fastWidth)"
        var lines = ["wrote \(output)"]
        if let features {
            let grid = rule.gridFrom == nil ? "\(features.height)x\(features.width)" : "read at run time"
            lines.append("features '\(features.value)': [\(features.shape.joined(separator: ", "))] \(features.elementType.name), "
                         + "layout \(features.layout.rawValue), grid \(grid), dim \(features.dim)"
                         + (features.dropLeading > 0 ? ", \(features.dropLeading) leading token(s) dropped" : ""))
            lines += features.notes.map { "  \($0)" }
        }
        if let features, features.layout == .flat {
            lines.append("rows are temporal patches (the rule below counts them as frames); fast grid output '\(self.fastGrid ?? TokenInputOptions.defaultFastGridName)'"
                         + (companions.isEmpty ? "" : "; fast selections of " + companions.enumerated().map { "'\($1)' as '\(TokenInputOptions.companionName($0))'" }
                            .joined(separator: ", ")))
        }
        if let source = rule.gridFrom {
            lines.append("slow tokens '\(slowTokens)': rows x (h/\(rule.slowPool))x(w/\(rule.slowPool)), the grid read at run time from '\(source.value)'")
            lines.append("fast tokens '\(fastTokens)': fast rows x the fast grid ('\(self.fastGrid ?? TokenInputOptions.defaultFastGridName)'), fast rows by row count F:")
            lines += fastRegimeLines
            return lines.joined(separator: "\n")
        }
        if let plan, let frames {
            lines.append("slow tokens '\(slowTokens)': \(plan.numSlowTokens) = \(frames) frames x \(slowGrid)")
            lines.append("fast tokens '\(fastTokens)': \(plan.numFastTokens) = \(plan.fastFrames) frames x \(fastGrid)")
            lines.append("  \(plan.explanation)")
        } else {
            lines.append("slow tokens '\(slowTokens)': frames x \(slowGrid) (any frame count, read at run time)")
            lines.append("fast tokens '\(fastTokens)': fast frames x \(fastGrid), fast frames by frame count F:")
            lines += fastRegimeLines
        }
        return lines.joined(separator: "\n")
    }

    /// The fast frames for each range of frame counts, one line each.
    var fastRegimeLines: [String] {
        let s = rule.fast.temporalStride, t = rule.fast.temporalKernel, m = rule.fast.minFastFrames
        return regimes.map { regime in
            let range = regime.upTo.map { regime.from == $0 ? "F = \($0)" : "F = \(regime.from)..\($0)" } ?? "F >= \(regime.from)"
            switch regime.kind {
            case .allFrames:
                return "  \(range): F (fewer than \(m) frames: every frame kept, no sampling or pooling)"
            case .minimum:
                return "  \(range): \(m) (stride \(s) and kernel \(t) would leave fewer: weakened to keep \(m))"
            case .regular:
                let formula = s > 1 && t > 1 ? "floor(floor(F/\(s))/\(t))" : s > 1 ? "floor(F/\(s))" : t > 1 ? "floor(F/\(t))" : "F"
                return "  \(range): \(formula)"
            }
        }
    }
}
