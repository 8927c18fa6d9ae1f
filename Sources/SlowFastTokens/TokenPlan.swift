import SlowFastValues
import SlowFastIR
/// How fast tokens are made from the slow ones (docs/DESIGN.md §5, after the
/// release): temporal strided sampling, temporal average pooling, optional spatial pooling,
/// keeping at least `minFastFrames` frames.
public struct FastTokenConfig: Codable, Equatable, Sendable {
    /// s: keep about every s-th frame (1 = keep all).
    public var temporalStride: Int
    /// t: average this many consecutive sampled frames into one (1 = no pooling).
    public var temporalKernel: Int
    /// K: K x K spatial average pooling of each fast frame (1 = none; the release uses 1,
    /// so a fast frame has as many tokens as a slow one).
    public var spatialPool: Int
    /// M: the fallback keeps at least this many fast frames (when the video has that many).
    public var minFastFrames: Int

    public init(temporalStride: Int, temporalKernel: Int, spatialPool: Int = 1, minFastFrames: Int = 16) {
        self.temporalStride = temporalStride
        self.temporalKernel = temporalKernel
        self.spatialPool = spatialPool
        self.minFastFrames = minFastFrames
    }
}

/// Where flat features' grid comes from at run time: an int64 value holding (T, h, w) before
/// the spatial merge (Qwen-VL's `grid_thw`, [3] or [1, 3]), and the merge size.
public struct GridSource: Codable, Equatable, Sendable {
    public var value: String
    public var merge: Int

    public init(value: String, merge: Int) {
        self.value = value
        self.merge = merge
    }
}

extension FastTokenConfig {
    /// The rule for token rows that each cover `framesPerRow` video frames (a Qwen-VL temporal
    /// patch: 2), so that a fast token spans the same s*t video frames as the frame rule: the
    /// stride divides by the patch where it can (s2t4 -> s1t4 over patches: sampling every
    /// second frame is what a patch of two already did), else the kernel does (s1t4 -> s1t2).
    /// A span that is not whole patches would split one and is refused (docs/DESIGN.md §5).
    /// `minFastFrames` counts fast rows either way.
    public func inTemporalPatches(of framesPerRow: Int) throws -> FastTokenConfig {
        guard framesPerRow > 1 else { return self }
        var rule = self
        if temporalStride % framesPerRow == 0 {
            rule.temporalStride = temporalStride / framesPerRow
        } else if temporalKernel % framesPerRow == 0 {
            rule.temporalKernel = temporalKernel / framesPerRow
        } else {
            throw TokenBuilderError.invalidParameter(name: "fast-token span", value: temporalStride * temporalKernel,
                expected: "whole temporal patches of \(framesPerRow) frames (stride \(temporalStride) x kernel \(temporalKernel) frames would split one)")
        }
        return rule
    }
}

/// The release's configurations, named `s{stride}t{kernel}` after the frame count they were
/// trained with: each turns its frame count into 16 fast frames.
public enum TokenPreset: String, CaseIterable, Codable, Sendable {
    case s1t4, s1t6, s2t4

    /// The number of input frames the configuration is meant for.
    public var frames: Int {
        switch self {
        case .s1t4: return 64
        case .s1t6: return 96
        case .s2t4: return 128
        }
    }

    /// Its fast-token rule (no spatial pooling, at least 16 fast frames).
    public var fastTokens: FastTokenConfig {
        switch self {
        case .s1t4: return FastTokenConfig(temporalStride: 1, temporalKernel: 4)
        case .s1t6: return FastTokenConfig(temporalStride: 1, temporalKernel: 6)
        case .s2t4: return FastTokenConfig(temporalStride: 2, temporalKernel: 4)
        }
    }
}

/// What to make of projector features, for any frame count: the grid, the width, the pools and
/// the fast-token rule. A token model built from a rule computes its sampled frames and
/// pooling windows from the frame count it receives at run time (docs/DESIGN.md §5).
public struct TokenRule: Codable, Equatable, Sendable {
    /// Projector features are [frames, height, width, dim] (or one of the layouts of
    /// `FeatureLayout`).
    public var height: Int
    public var width: Int
    public var dim: Int
    /// P: P x P average pooling that turns projector features into slow tokens (release: 2).
    public var slowPool: Int
    public var fast: FastTokenConfig
    /// Flat features whose grid is read at run time (`--grid-from`): `height` and `width` are
    /// then 0 and the token ops reshape by the grid value.
    public var gridFrom: GridSource?

    public init(height: Int, width: Int, dim: Int, slowPool: Int = 2, fast: FastTokenConfig) {
        self.height = height
        self.width = width
        self.dim = dim
        self.slowPool = slowPool
        self.fast = fast
    }

    /// The plan at one frame count.
    public func spec(frames: Int) -> TokenSpec {
        TokenSpec(frames: frames, height: height, width: width, dim: dim, slowPool: slowPool, fast: fast)
    }

    public var slowHeight: Int { height / max(slowPool, 1) }
    public var slowWidth: Int { width / max(slowPool, 1) }
    public var fastHeight: Int { slowHeight / max(fast.spatialPool, 1) }
    public var fastWidth: Int { slowWidth / max(fast.spatialPool, 1) }

    /// Rejects sizes the rules cannot apply to, whatever the frame count.
    public func validate() throws {
        func positive(_ value: Int, _ name: String) throws {
            if value < 1 { throw TokenBuilderError.invalidParameter(name: name, value: value, expected: "at least 1") }
        }
        if gridFrom == nil {
            try positive(height, "height")
            try positive(width, "width")
        }
        try positive(dim, "dim")
        try positive(slowPool, "slow pool")
        try positive(fast.temporalStride, "temporal stride")
        try positive(fast.temporalKernel, "temporal kernel")
        try positive(fast.spatialPool, "spatial pool")
        try positive(fast.minFastFrames, "min fast frames")
        guard gridFrom == nil else { return }
        guard height >= slowPool, width >= slowPool else {
            throw TokenBuilderError.poolLargerThanGrid(what: "slow pool", pool: slowPool, height: height, width: width)
        }
        guard slowHeight >= fast.spatialPool, slowWidth >= fast.spatialPool else {
            throw TokenBuilderError.poolLargerThanGrid(what: "fast spatial pool", pool: fast.spatialPool,
                                                       height: slowHeight, width: slowWidth)
        }
    }

    /// The three regimes of the rule, by frame count F (M = minFastFrames):
    /// `allFrames` below M (every frame becomes a fast frame), `minimum` from M until stride
    /// and kernel leave at least M frames (sampling and pooling weakened to leave exactly M),
    /// `regular` from then on (floor(floor(F/s)/t) fast frames). Each regime is a range of
    /// frame counts; `upTo` is nil for the last one. Regimes the rule never reaches are left out.
    public func regimes() throws -> [TokenRegime] {
        try validate()
        let s = fast.temporalStride, t = fast.temporalKernel, m = fast.minFastFrames
        // The regular regime starts where floor(floor(F/s)/t) >= M, i.e. F >= s*t*M (with s or t
        // of 1 the step that does nothing imposes nothing).
        let regularFrom = s == 1 && t == 1 ? 1 : s * t * m
        var result: [TokenRegime] = []
        if s > 1 || t > 1 {
            if m > 1 { result.append(TokenRegime(kind: .allFrames, from: 1, upTo: m - 1)) }
            if regularFrom > m { result.append(TokenRegime(kind: .minimum, from: m, upTo: regularFrom - 1)) }
            result.append(TokenRegime(kind: .regular, from: max(regularFrom, m), upTo: nil))
        } else {
            result.append(TokenRegime(kind: .regular, from: 1, upTo: nil))
        }
        return result
    }
}

/// One range of frame counts over which a rule behaves one way (see `TokenRule.regimes`).
public struct TokenRegime: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Fewer frames than the minimum: every frame is a fast frame (no sampling, no pooling).
        case allFrames
        /// Stride and kernel would leave fewer than the minimum: exactly M fast frames.
        case minimum
        /// floor(floor(F/s)/t) fast frames, at least M.
        case regular
    }
    public var kind: Kind
    public var from: Int
    public var upTo: Int?
}

/// The shape of projector features at one frame count and what to make of them.
public struct TokenSpec: Codable, Equatable, Sendable {
    /// Projector features are [frames, height, width, dim].
    public var frames: Int
    public var height: Int
    public var width: Int
    public var dim: Int
    /// P: P x P average pooling that turns projector features into slow tokens (release: 2).
    public var slowPool: Int
    public var fast: FastTokenConfig

    public init(frames: Int, height: Int, width: Int, dim: Int, slowPool: Int = 2, fast: FastTokenConfig) {
        self.frames = frames
        self.height = height
        self.width = width
        self.dim = dim
        self.slowPool = slowPool
        self.fast = fast
    }
    /// The frame-independent part.
    public var rule: TokenRule {
        TokenRule(height: height, width: width, dim: dim, slowPool: slowPool, fast: fast)
    }
}

/// One output frame of temporal pooling: the mean of sampled frames `start ..< end`.
public struct TemporalWindow: Codable, Equatable, Sendable {
    public var start: Int
    public var end: Int
    public var count: Int { end - start }
    public init(start: Int, end: Int) {
        self.start = start
        self.end = end
    }
}

/// Every number the token builder derives from a `TokenSpec`, computed once so the ONNX
/// builder, the cost model and the tests share one definition of the rules.
///
/// The rules (the release's `split_slow_fast_tokens`, with the adaptive fallback), for F
/// frames, stride s, kernel t, at least M fast frames:
///
/// 1. Slow tokens: P x P average pooling (stride P, remainder rows/columns dropped) of every
///    frame: F x (H/P) x (W/P) tokens, frame-major then row-major.
/// 2. Temporal sampling (only when s > 1): if F < M every frame is kept; otherwise
///    n = max(floor(F / s), M) frames are kept, frame i being min(trunc(i * (F / n)), F - 1)
///    computed in IEEE double exactly as the release does (`int(i * (total / sampled))`):
///    the rounding of F / n matters, e.g. F = 30, n = 22, i = 11 gives frame 14, not the
///    exact rational 15. When s = 1 all F frames are kept (n = F).
/// 3. Temporal pooling (only when t > 1), over the n sampled frames:
///    - if floor(n / t) >= M: uniform pooling, output frame j is the mean of sampled frames
///      [j*t, j*t + t); the last n mod t frames are dropped (avg_pool3d, no padding);
///    - else (the adaptive fallback): m = min(n, M) output frames, frame j the mean of
///      sampled frames [floor(j*n/m), ceil((j+1)*n/m)) (adaptive average pooling). So
///      whenever pooling by t would leave fewer than M frames, the pooling is weakened to
///      leave exactly M (or all n, when there are fewer than M).
/// 4. Spatial pooling (only when K > 1): K x K average pooling of each fast frame.
///
/// Consequence: a video of F >= M frames always yields at least M fast frames; one of
/// F < M frames keeps all F.
public struct TokenPlan: Codable, Equatable, Sendable {
    public var spec: TokenSpec
    public var slowHeight: Int
    public var slowWidth: Int
    /// Indices (into the F frames) that temporal sampling keeps.
    public var sampledFrames: [Int]
    /// The temporal pooling windows over the sampled frames, one per fast frame.
    public var temporalWindows: [TemporalWindow]
    /// True when the windows are the uniform ones of kernel t (no fallback).
    public var uniformPooling: Bool
    /// True when the adaptive fallback (step 2's minimum or step 3's second case) changed
    /// the result compared with plain stride-s sampling and kernel-t pooling.
    public var usedFallback: Bool
    public var fastHeight: Int
    public var fastWidth: Int

    public var slowTokensPerFrame: Int { slowHeight * slowWidth }
    public var numSlowTokens: Int { spec.frames * slowTokensPerFrame }
    public var fastFrames: Int { temporalWindows.count }
    public var fastTokensPerFrame: Int { fastHeight * fastWidth }
    public var numFastTokens: Int { fastFrames * fastTokensPerFrame }
    /// True when temporal pooling leaves every sampled frame as it is.
    public var temporalPoolingIsIdentity: Bool {
        temporalWindows.count == sampledFrames.count && temporalWindows.allSatisfy { $0.count == 1 }
    }

    /// Derives the plan, rejecting sizes the rules cannot apply to.
    public init(_ spec: TokenSpec) throws {
        if spec.frames < 1 {
            throw TokenBuilderError.invalidParameter(name: "frames", value: spec.frames, expected: "at least 1")
        }
        try spec.rule.validate()
        self.spec = spec
        slowHeight = spec.height / spec.slowPool
        slowWidth = spec.width / spec.slowPool
        fastHeight = slowHeight / spec.fast.spatialPool
        fastWidth = slowWidth / spec.fast.spatialPool

        let frames = spec.frames
        let stride = spec.fast.temporalStride
        let kernel = spec.fast.temporalKernel
        let minimum = spec.fast.minFastFrames
        var fallback = false

        // Step 2: temporal sampling.
        if stride > 1 && frames >= minimum {
            let kept = max(frames / stride, minimum)
            if kept != frames / stride { fallback = true }
            let step = Double(frames) / Double(kept)
            sampledFrames = (0..<kept).map { min(Int(Double($0) * step), frames - 1) }
        } else {
            if stride > 1 { fallback = true }
            sampledFrames = Array(0..<frames)
        }

        // Step 3: temporal pooling.
        let sampled = sampledFrames.count
        if kernel > 1 && sampled / kernel >= minimum {
            temporalWindows = (0..<(sampled / kernel)).map { TemporalWindow(start: $0 * kernel, end: $0 * kernel + kernel) }
            uniformPooling = true
        } else if kernel > 1 {
            fallback = true
            let outputs = min(sampled, minimum)
            temporalWindows = (0..<outputs).map { j in
                TemporalWindow(start: j * sampled / outputs, end: ((j + 1) * sampled + outputs - 1) / outputs)
            }
            uniformPooling = false
        } else {
            temporalWindows = (0..<sampled).map { TemporalWindow(start: $0, end: $0 + 1) }
            uniformPooling = true
        }
        usedFallback = fallback
    }

    /// Which regime of the rule this frame count falls in (see `TokenRule.regimes`).
    public var regime: TokenRegime.Kind {
        let s = spec.fast.temporalStride, t = spec.fast.temporalKernel, m = spec.fast.minFastFrames
        if s == 1 && t == 1 { return .regular }
        if spec.frames < m { return .allFrames }
        return spec.frames >= s * t * m ? .regular : .minimum
    }

    /// One line saying what happens to the frames, in the rule's words.
    public var explanation: String {
        let f = spec.frames, s = spec.fast.temporalStride, t = spec.fast.temporalKernel, m = spec.fast.minFastFrames
        switch regime {
        case .allFrames:
            return "\(f) frames, fewer than the minimum of \(m): every frame is a fast frame (no sampling, no pooling)"
        case .minimum:
            var steps: [String] = []
            if s > 1 { steps.append("\(sampledFrames.count) frames sampled (\(f)/\(s) = \(f / s), raised to \(m))") }
            if t > 1 { steps.append("pooled adaptively to \(fastFrames) (\(sampledFrames.count)/\(t) = \(sampledFrames.count / t) < \(m))") }
            return "stride \(s) and kernel \(t) would leave fewer than \(m) frames: " + steps.joined(separator: ", ")
                + "; \(fastFrames) fast frames"
        case .regular:
            var steps: [String] = []
            if s > 1 { steps.append("one frame in \(s) kept (\(sampledFrames.count))") }
            if t > 1 { steps.append("means of \(t) consecutive frames (\(fastFrames), last \(sampledFrames.count % t) dropped)") }
            return steps.isEmpty ? "every frame is a fast frame" : steps.joined(separator: ", ") + "; \(fastFrames) fast frames"
        }
    }
}

/// Why the token builder refused.
public enum TokenBuilderError: Error, CustomStringConvertible, Equatable {
    case invalidParameter(name: String, value: Int, expected: String)
    case poolLargerThanGrid(what: String, pool: Int, height: Int, width: Int)
    case valueNotFound(graph: String, value: String)
    case featureShapeMismatch(value: String, found: [Int64], expected: String)
    case opsetTooOld(found: Int64, needed: Int64)
    case badOutputNames(slow: String, fast: String, reason: String)
    case outputNameTaken(String)
    case companionShape(value: String, shape: [String], features: String, expected: [String])

    public var description: String {
        switch self {
        case .invalidParameter(let name, let value, let expected):
            return "\(name) is \(value), expected \(expected)"
        case .poolLargerThanGrid(let what, let pool, let height, let width):
            return "\(what) \(pool)x\(pool) does not fit a \(height)x\(width) grid"
        case .valueNotFound(let graph, let value):
            return "graph '\(graph)': no value named '\(value)' (not a graph input, node output or initializer)"
        case .featureShapeMismatch(let value, let found, let expected):
            return "value '\(value)' has static shape \(found), expected \(expected)"
        case .opsetTooOld(let found, let needed):
            return "the graph imports ONNX opset \(found); the token ops need opset \(needed) or newer"
        case .badOutputNames(let slow, let fast, let reason):
            return "token output names '\(slow)' and '\(fast)': expected \(reason)"
        case .outputNameTaken(let name):
            return "the model already has a value named '\(name)'; give other token output names with --output-names SLOW,FAST"
        case .companionShape(let value, let shape, let features, let expected):
            return "'\(value)' has shape [\(shape.joined(separator: ", "))], but the features '\(features)' it follows have "
                + "[\(expected.joined(separator: ", "))]: a --deepstack value needs the features' shape"
        }
    }
}
