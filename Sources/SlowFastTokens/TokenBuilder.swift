import SlowFastValues
import SlowFastIR

/// How projector features are laid out in the value the token ops read.
public enum FeatureLayout: String, Codable, CaseIterable, Sendable {
    /// Channels last: [frames, h, w, d], or [frames, leading + h*w, d] (ViT-style token
    /// sequences, with `dropLeading` tokens such as CLS before the patch grid).
    case nhwc
    /// Channels first: [frames, d, h, w] (convolutional feature maps).
    case nchw
    /// Flat rows [frames*h*w, d] in (frame, row, column) raster order: the merged patches of a
    /// Qwen-VL tower, where a "frame" is a temporal patch (docs/DESIGN.md §5). The token model
    /// also outputs the fast grid (`fast_grid`: fast frames, h, w as int64).
    case flat

    /// The layouts of a value with a frame axis.
    public static let framed: [FeatureLayout] = [.nhwc, .nchw]
}

/// Where the token ops read and what they are called.
public struct TokenInputOptions: Equatable, Sendable {
    /// nil: any frame count at run time; a number pins it (static dims).
    public var frames: Int?
    public var layout: FeatureLayout
    /// Tokens before the patch grid to drop (a ViT's CLS token: 1), nhwc only.
    public var dropLeading: Int
    /// The names of the two token values.
    public var slowName: String
    public var fastName: String
    /// With `layout: .flat`: the name of the fast grid output.
    public var fastGridName = TokenInputOptions.defaultFastGridName
    /// Values of the same layout as the features (Qwen3-VL's deepstack features) that get the
    /// same fast selection, each as an output named `fast_<value's position>`: `fast_deepstack_0`, ...
    public var companions: [String] = []

    public static let defaultSlowName = "slow_tokens"
    public static let defaultFastName = "fast_tokens"
    public static let defaultFastGridName = "fast_grid"
    /// The output that carries the fast selection of companion value `index`.
    public static func companionName(_ index: Int) -> String { "fast_deepstack_\(index)" }

    public init(frames: Int? = nil, layout: FeatureLayout = .nhwc, dropLeading: Int = 0,
                slowName: String = TokenInputOptions.defaultSlowName, fastName: String = TokenInputOptions.defaultFastName) {
        self.frames = frames
        self.layout = layout
        self.dropLeading = dropLeading
        self.slowName = slowName
        self.fastName = fastName
    }
}

/// The names of the token values the builder made.
public struct TokenOutputs: Equatable, Sendable {
    /// [1, num_slow_tokens, dim]: fits the `slow_tokens` input [batch, num_slow_tokens, hidden]
    /// of a rewritten model.
    public var slowTokens: String
    /// [1, num_fast_tokens, dim]: goes into the LLM's input sequence in place of the video.
    public var fastTokens: String
    public var rule: TokenRule
    /// The plan, when the frame count is pinned.
    public var plan: TokenPlan?
}

/// Emits the ONNX ops of the token rules (docs/DESIGN.md §5): projector features to slow
/// tokens and fast tokens, for whatever frame count the graph receives. The sampled frame
/// indices and the pooling windows are computed in the graph from the frame count (the
/// sampling step in double precision, as the release computes it), so one model serves every
/// video length. Only standard ops that exist unchanged from opset 13 on are used, so the same
/// nodes fit any graph they are inserted into.
public enum TokenBuilder {
    /// The oldest default-domain opset the emitted nodes are valid in.
    public static let minimumOpset: Int64 = 13
    /// The opset of the standalone model.
    public static let standaloneOpset: Int64 = 17
    /// The symbolic dims of the standalone model and of the token outputs.
    public static let framesDim = "frames"
    public static let slowTokensDim = "num_slow_tokens"
    public static let fastTokensDim = "num_fast_tokens"

    /// A standalone model: input `features` [frames, h, w, d] float32 (or [frames, d, h, w]
    /// with `layout: .nchw`), outputs [1, num_slow_tokens, d] and [1, num_fast_tokens, d]
    /// (`slow_tokens` and `fast_tokens` unless renamed).
    public static func makeModel(_ rule: TokenRule, options: TokenInputOptions = TokenInputOptions()) throws -> Model {
        try rule.validate()
        let plan = try options.frames.map { try TokenPlan(rule.spec(frames: $0)) }
        guard options.slowName != options.fastName, !options.slowName.isEmpty, !options.fastName.isEmpty,
              options.slowName != "features", options.fastName != "features" else {
            throw TokenBuilderError.badOutputNames(slow: options.slowName, fast: options.fastName, reason: "two different names, not 'features'")
        }
        guard options.dropLeading == 0 else {
            throw TokenBuilderError.invalidParameter(name: "drop leading", value: options.dropLeading, expected: "0 for a standalone model (its input is a grid)")
        }
        let graph = Graph(name: "slowfast_tokens")
        let frames: Dimension = options.frames.map { .value(Int64($0)) } ?? .param(framesDim)
        let (h, w, d) = (Dimension.value(Int64(rule.height)), Dimension.value(Int64(rule.width)), Dimension.value(Int64(rule.dim)))
        graph.inputs = [ValueInfo(name: "features", type: .tensor(.float, options.layout == .nchw ? [frames, d, h, w] : [frames, h, w, d]))]
        var names = NameAllocator(graph: graph)
        _ = names.reserve(options.slowName)
        _ = names.reserve(options.fastName)
        try emit(rule, features: "features", layout: options.layout, dropLeading: 0, elementType: .float,
                 into: graph, names: &names, slowName: options.slowName, fastName: options.fastName)
        graph.outputs = outputInfos(rule, plan: plan, elementType: .float, slowName: options.slowName, fastName: options.fastName)
        let model = Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: Domain.onnx, version: standaloneOpset)])
        model.producerName = "slowfast tokens"
        return model
    }

    /// Inserts the token ops after `value` (e.g. a vision graph's projector output) in
    /// `model.graph`. The caller has established the value's layout (see `FeatureShapeProof`);
    /// this only checks that the names are free. With `addGraphOutputs` the two token values
    /// become graph outputs of type `elementType`. Returns the new value names. On error the
    /// graph is unchanged.
    @discardableResult
    public static func insert(into model: Model, after value: String, rule: TokenRule, options: TokenInputOptions = TokenInputOptions(),
                              elementType: ElementType = .float, addGraphOutputs: Bool = true) throws -> TokenOutputs {
        let graph = model.graph
        let opset = model.opsetVersion(Domain.onnx) ?? 0
        guard opset >= minimumOpset else { throw TokenBuilderError.opsetTooOld(found: opset, needed: minimumOpset) }
        try rule.validate()
        let plan = try options.frames.map { try TokenPlan(rule.spec(frames: $0)) }
        guard valueExists(value, in: graph) else {
            throw TokenBuilderError.valueNotFound(graph: graph.name ?? "", value: value)
        }
        guard options.slowName != options.fastName, !options.slowName.isEmpty, !options.fastName.isEmpty else {
            throw TokenBuilderError.badOutputNames(slow: options.slowName, fast: options.fastName, reason: "two different names")
        }
        if let shape = staticShape(of: value, in: graph) {
            let f = Int64(options.frames ?? -1), h = Int64(rule.height), w = Int64(rule.width), d = Int64(rule.dim)
            let lead = Int64(options.dropLeading)
            let accepted: [[Int64]]
            switch options.layout {
            case .nchw: accepted = [[f, d, h, w]]
            case .flat: accepted = [[f < 0 || rule.gridFrom != nil ? -1 : f * h * w, d]]
            case .nhwc: accepted = lead > 0 ? [[f, lead + h * w, d]] : [[f, h, w, d], [f, h * w, d]]
            }
            let matches = { (expected: [Int64]) in
                shape.count == expected.count && zip(shape, expected).allSatisfy { $0 < 0 || $1 < 0 || $0 == $1 }
            }
            guard accepted.contains(where: matches) else {
                throw TokenBuilderError.featureShapeMismatch(value: value, found: shape,
                                                             expected: accepted.map { "\($0)" }.joined(separator: " or "))
            }
        }
        if let source = rule.gridFrom {
            guard valueExists(source.value, in: graph) else { throw TokenBuilderError.valueNotFound(graph: graph.name ?? "", value: source.value) }
            guard options.frames == nil else {
                throw TokenBuilderError.invalidParameter(name: "--frames", value: options.frames ?? 0,
                                                         expected: "left out with --grid-from (the grid, frames included, is read at run time)")
            }
        }
        for companion in options.companions where !valueExists(companion, in: graph) {
            throw TokenBuilderError.valueNotFound(graph: graph.name ?? "", value: companion)
        }
        var names = NameAllocator(model: model)
        let gridName = options.layout == .flat ? options.fastGridName : nil
        let outputNames = [options.slowName, options.fastName] + [gridName].compactMap { $0 }
            + options.companions.indices.map(TokenInputOptions.companionName)
        for name in outputNames where names.isTaken(name) {
            throw TokenBuilderError.outputNameTaken(name)
        }
        guard Set(outputNames).count == outputNames.count else {
            throw TokenBuilderError.badOutputNames(slow: options.slowName, fast: options.fastName, reason: "names different from "
                + outputNames.dropFirst(2).joined(separator: ", "))
        }
        for name in outputNames { _ = names.reserve(name) }
        // Build into a scratch graph first so a failure leaves `graph` as it was.
        let scratch = Graph(name: graph.name)
        try emit(rule, features: value, layout: options.layout, dropLeading: options.dropLeading, elementType: elementType,
                 into: scratch, names: &names, slowName: options.slowName, fastName: options.fastName, fastGridName: gridName)
        for (index, companion) in options.companions.enumerated() {
            try emit(rule, features: companion, layout: options.layout, dropLeading: options.dropLeading, elementType: elementType,
                     into: scratch, names: &names, slowName: nil, fastName: TokenInputOptions.companionName(index))
        }
        graph.nodes.append(contentsOf: scratch.nodes)
        graph.initializers.append(contentsOf: scratch.initializers)
        if addGraphOutputs {
            let infos = outputInfos(rule, plan: plan, elementType: elementType, slowName: options.slowName, fastName: options.fastName)
            graph.outputs += infos
            if let gridName { graph.outputs.append(ValueInfo(name: gridName, type: .tensor(.int64, [.value(3)]))) }
            for index in options.companions.indices {
                graph.outputs.append(ValueInfo(name: TokenInputOptions.companionName(index), type: infos[1].type))
            }
        }
        return TokenOutputs(slowTokens: options.slowName, fastTokens: options.fastName, rule: rule, plan: plan)
    }

    static func outputInfos(_ rule: TokenRule, plan: TokenPlan?, elementType: ElementType, slowName: String, fastName: String) -> [ValueInfo] {
        let d = Dimension.value(Int64(rule.dim))
        let slow: Dimension = plan.map { .value(Int64($0.numSlowTokens)) } ?? .param(slowTokensDim)
        let fast: Dimension = plan.map { .value(Int64($0.numFastTokens)) } ?? .param(fastTokensDim)
        return [ValueInfo(name: slowName, type: .tensor(elementType, [.value(1), slow, d])),
                ValueInfo(name: fastName, type: .tensor(elementType, [.value(1), fast, d]))]
    }

    // MARK: - Emission

    /// Appends the nodes of the rule reading `features` and producing `slowName`/`fastName`.
    ///
    /// Slow tokens: features as [F, d, h, w], P x P AveragePool, then [1, F*h'*w', d].
    /// Fast tokens, from the pooled [F, d, h', w'] with F read from the features' shape:
    /// - sampling (s > 1): n = F < M ? F : max(F / s, M); indices min(floor(i * (F / n)), F - 1)
    ///   with F / n and the product in double (`Range`, `Cast`, `Floor`), then `Gather`;
    /// - temporal pooling (t > 1): out = n / t >= M ? n / t : min(n, M) windows, [j*t, j*t + t)
    ///   or [floor(j*n/out), ceil((j+1)*n/out)); a 0/1 window matrix [out, n] built from the
    ///   bounds, `MatMul` with the frames as [n, d*h'*w'] sums each window, `Div` by its length;
    /// - spatial pooling (K > 1): K x K AveragePool.
    /// `slowName` nil: only the fast tokens (a companion value's); `fastGridName`: also output the
    /// fast grid [fast frames, h, w] as int64.
    static func emit(_ rule: TokenRule, features: String, layout: FeatureLayout, dropLeading: Int, elementType: ElementType,
                     into graph: Graph, names: inout NameAllocator, slowName: String?, fastName: String, fastGridName: String? = nil) throws {
        var e = Emitter(graph: graph, names: names, prefix: "\(features)_tokens")
        defer { names = e.names }
        let d = Int64(rule.dim), h = Int64(rule.height), w = Int64(rule.width)
        let slowH = Int64(rule.slowHeight), slowW = Int64(rule.slowWidth)
        // Features of another float type are pooled in float32 (not every runtime has
        // AveragePool and MatMul for float16/bfloat16) and the tokens cast back at the end.
        let computeInFloat = elementType != .float
        let input = computeInFloat ? e.cast(features, to: .float, tag: "features_float") : features
        let (slowResult, fastResult) = computeInFloat
            ? (slowName.map { _ in e.names.fresh("\(e.prefix)/slow_float_output") }, e.names.fresh("\(e.prefix)/fast_float_output"))
            : (slowName, fastName)

        // [F, d, h, w], F from the input.
        var channelsFirst: String
        switch layout {
        case .nchw:
            channelsFirst = e.reshape(input, to: [-1, d, h, w], tag: "grid")
        case .nhwc, .flat:
            var tokens = input
            if dropLeading > 0 {
                tokens = e.slice(tokens, axis: 1, start: Int64(dropLeading), end: Int64.max, tag: "drop_leading")
            }
            let grid: String
            if let source = rule.gridFrom {
                // [T, h/m, w/m, d] from the grid value at run time.
                let thw = e.reshape(source.value, to: [3], tag: "grid_thw")
                let merged = e.node("Div", [thw, e.constant([1, Int64(source.merge), Int64(source.merge)], dims: [3], tag: "grid_merge")],
                                    tag: "grid_merged")
                let target = e.node("Concat", [merged, e.constant([d], dims: [1], tag: "grid_dim")], tag: "grid_shape",
                                    attributes: [.int("axis", 0)])
                grid = e.node("Reshape", [tokens, target], tag: "grid")
            } else {
                grid = e.reshape(tokens, to: [-1, h, w, d], tag: "grid")
            }
            channelsFirst = e.transpose(grid, perm: [0, 3, 1, 2], tag: "nchw")
        }
        let pooled = rule.slowPool > 1
            ? e.averagePool(channelsFirst, kernel: [rule.slowPool, rule.slowPool], tag: "slow_pool")
            : channelsFirst
        let slowChannelsLast = e.transpose(pooled, perm: [0, 2, 3, 1], tag: "slow_nhwc")
        if let slowResult { e.reshape(slowChannelsLast, to: [1, -1, d], tag: "slow", output: slowResult) }

        let s = Int64(rule.fast.temporalStride), t = Int64(rule.fast.temporalKernel), m = Int64(rule.fast.minFastFrames)
        var fast = pooled
        if s > 1 || t > 1 {
            let shape = e.node("Shape", [pooled], tag: "shape")
            let frames = e.node("Gather", [shape, e.scalar(0, tag: "frame_axis")], tag: "frames", attributes: [.int("axis", 0)])
            let zero = e.scalar(0, tag: "zero"), one = e.scalar(1, tag: "one"), minimum = e.scalar(m, tag: "min_fast_frames")

            // Step 2: temporal sampling.
            var sampled = frames
            if s > 1 {
                let strided = e.node("Div", [frames, e.scalar(s, tag: "stride")], tag: "strided")
                let raised = e.node("Max", [strided, minimum], tag: "sampled_at_least_min")
                let short = e.node("Less", [frames, minimum], tag: "fewer_than_min")
                sampled = e.node("Where", [short, frames, raised], tag: "sampled_count")
                let step = e.node("Div", [e.cast(frames, to: .double, tag: "frames_double"), e.cast(sampled, to: .double, tag: "sampled_double")],
                                  tag: "step")
                let positions = e.node("Range", [zero, sampled, one], tag: "sample_positions")
                let product = e.node("Mul", [e.cast(positions, to: .double, tag: "positions_double"), step], tag: "sample_times")
                let truncated = e.cast(e.node("Floor", [product], tag: "sample_floor"), to: .int64, tag: "sample_indices_raw")
                let last = e.node("Sub", [frames, one], tag: "last_frame")
                let indices = e.node("Min", [truncated, last], tag: "sample_indices")
                fast = e.node("Gather", [fast, indices], tag: "sample", attributes: [.int("axis", 0)])
            }

            // Step 3: temporal pooling as window sums (MatMul with a 0/1 matrix) over lengths.
            if t > 1 {
                let kernel = e.scalar(t, tag: "kernel")
                let pooledCount = e.node("Div", [sampled, kernel], tag: "pooled_count")
                let uniform = e.node("Not", [e.node("Less", [pooledCount, minimum], tag: "pooled_below_min")], tag: "uniform")
                let adaptiveCount = e.node("Min", [sampled, minimum], tag: "adaptive_count")
                let outputs = e.node("Where", [uniform, pooledCount, adaptiveCount], tag: "fast_frame_count")
                let j = e.node("Range", [zero, outputs, one], tag: "fast_positions")
                let uniformStart = e.node("Mul", [j, kernel], tag: "uniform_start")
                let uniformEnd = e.node("Add", [uniformStart, kernel], tag: "uniform_end")
                let adaptiveStart = e.node("Div", [e.node("Mul", [j, sampled], tag: "j_n"), outputs], tag: "adaptive_start")
                let nextTimesN = e.node("Mul", [e.node("Add", [j, one], tag: "j_plus_one"), sampled], tag: "next_n")
                let adaptiveEnd = e.node("Div", [e.node("Add", [nextTimesN, e.node("Sub", [outputs, one], tag: "out_minus_one")], tag: "ceil_numerator"),
                                                 outputs], tag: "adaptive_end")
                let start = e.node("Where", [uniform, uniformStart, adaptiveStart], tag: "window_start")
                let end = e.node("Where", [uniform, uniformEnd, adaptiveEnd], tag: "window_end")
                let column = e.node("Range", [zero, sampled, one], tag: "sampled_positions")
                let startColumn = e.unsqueeze(start, axis: 1, tag: "window_start_column")
                let endColumn = e.unsqueeze(end, axis: 1, tag: "window_end_column")
                let inside = e.node("And", [e.node("Not", [e.node("Less", [column, startColumn], tag: "before_window")], tag: "from_start"),
                                            e.node("Less", [column, endColumn], tag: "before_end")], tag: "in_window")
                let windows = e.cast(inside, to: .float, tag: "window_matrix")
                let lengths = e.cast(e.node("Sub", [endColumn, startColumn], tag: "window_length"), to: .float, tag: "window_length_float")
                let flat = e.reshape(fast, to: [0, -1], tag: "frames_flat")
                let sums = e.node("MatMul", [windows, flat], tag: "window_sums")
                let means = e.node("Div", [sums, lengths], tag: "window_means")
                if rule.gridFrom != nil {
                    // [-1, d, h', w'] with h', w' read from the pooled grid at run time.
                    let pooledShape = e.node("Slice", [e.node("Shape", [pooled], tag: "pooled_shape"), e.constant([2], dims: [1], tag: "pooled_hw_start"),
                                                       e.constant([4], dims: [1], tag: "pooled_hw_end")], tag: "pooled_hw")
                    let target = e.node("Concat", [e.constant([-1, d], dims: [2], tag: "fast_lead"), pooledShape], tag: "fast_grid_shape",
                                        attributes: [.int("axis", 0)])
                    fast = e.node("Reshape", [means, target], tag: "fast_grid")
                } else {
                    fast = e.reshape(means, to: [-1, d, slowH, slowW], tag: "fast_grid")
                }
            }
        }

        // Step 4: spatial pooling, then [1, N_f, d].
        if rule.fast.spatialPool > 1 {
            fast = e.averagePool(fast, kernel: [rule.fast.spatialPool, rule.fast.spatialPool], tag: "fast_spatial_pool")
        }
        let fastChannelsLast = e.transpose(fast, perm: [0, 2, 3, 1], tag: "fast_nhwc")
        e.reshape(fastChannelsLast, to: [1, -1, d], tag: "fast", output: fastResult)
        if let fastGridName {
            // [F_f, d, h_f, w_f] -> (F_f, h_f, w_f): what a pipeline needs for the fast tokens'
            // positions (Qwen-VL's multimodal RoPE reads a video of this grid).
            let shape = e.node("Shape", [fast], tag: "fast_shape")
            e.node("Gather", [shape, e.constant([0, 2, 3], dims: [3], tag: "fast_grid_axes")], tag: "fast_grid", attributes: [.int("axis", 0)],
                   output: fastGridName)
        }
        if computeInFloat {
            if let slowResult, let slowName {
                e.node("Cast", [slowResult], tag: "slow_cast", attributes: [.int("to", Int64(elementType.rawValue))], output: slowName)
            }
            e.node("Cast", [fastResult], tag: "fast_cast", attributes: [.int("to", Int64(elementType.rawValue))], output: fastName)
        }
    }

    /// The static dims recorded for `value` (graph input, output, value_info or initializer),
    /// with -1 for symbolic or unknown dims; nil when none are recorded.
    static func staticShape(of value: String, in graph: Graph) -> [Int64]? {
        if let tensor = graph.initializer(named: value) { return tensor.dims }
        for info in graph.inputs + graph.valueInfo + graph.outputs where info.name == value {
            if case .tensor(_, let shape?)? = info.type?.kind {
                return shape.dims.map { if case .value(let n) = $0 { return n } else { return -1 } }
            }
        }
        return nil
    }

    /// The dims recorded for `value`, nil when no shape is recorded.
    static func recordedDims(of value: String, in graph: Graph) -> [Dimension]? {
        if let tensor = graph.initializer(named: value) { return tensor.dims.map { .value($0) } }
        for info in graph.inputs + graph.valueInfo + graph.outputs where info.name == value {
            if case .tensor(_, let shape?)? = info.type?.kind { return shape.dims }
        }
        return nil
    }

    static func recordedElementType(of value: String, in graph: Graph) -> ElementType? {
        if let tensor = graph.initializer(named: value) { return tensor.elementType }
        for info in graph.inputs + graph.valueInfo + graph.outputs where info.name == value {
            if case .tensor(let type?, _)? = info.type?.kind { return ElementType(rawValue: type) }
        }
        return nil
    }

    static func valueExists(_ value: String, in graph: Graph) -> Bool {
        graph.inputs.contains { $0.name == value }
            || graph.initializers.contains { $0.name == value }
            || graph.nodes.contains { $0.outputs.contains(value) }
    }
}

/// Appends nodes and constant initializers to a graph under fresh names.
private struct Emitter {
    let graph: Graph
    var names: NameAllocator
    let prefix: String

    mutating func constant(_ values: [Int64], dims: [Int64], tag: String) -> String {
        let name = names.fresh("\(prefix)/\(tag)")
        graph.initializers.append(Tensor(name: name, elementType: .int64, dims: dims, storage: .bytes(TensorBytes(int64s: values))))
        return name
    }

    mutating func scalar(_ value: Int64, tag: String) -> String {
        constant([value], dims: [], tag: tag)
    }

    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], tag: String, attributes: [Attribute] = [], output: String? = nil) -> String {
        let result = output ?? names.fresh("\(prefix)/\(tag)_output")
        graph.nodes.append(Node(op, name: names.fresh("\(prefix)/\(tag)"), inputs: inputs, outputs: [result], attributes: attributes))
        return result
    }

    mutating func cast(_ input: String, to type: ElementType, tag: String) -> String {
        node("Cast", [input], tag: tag, attributes: [.int("to", Int64(type.rawValue))])
    }

    /// Unsqueeze with its axes as an input (opset 13 on).
    mutating func unsqueeze(_ input: String, axis: Int64, tag: String) -> String {
        node("Unsqueeze", [input, constant([axis], dims: [1], tag: "\(tag)_axes")], tag: tag)
    }

    @discardableResult
    mutating func reshape(_ input: String, to shape: [Int64], tag: String, output: String? = nil) -> String {
        let target = constant(shape, dims: [Int64(shape.count)], tag: "\(tag)_shape")
        return node("Reshape", [input, target], tag: tag, output: output)
    }

    mutating func transpose(_ input: String, perm: [Int64], tag: String) -> String {
        node("Transpose", [input], tag: tag, attributes: [.ints("perm", perm)])
    }

    /// Average pooling with stride = kernel and no padding: remainders are dropped, as in
    /// PyTorch's avg_pool with ceil_mode = False.
    mutating func averagePool(_ input: String, kernel: [Int], tag: String) -> String {
        let k = kernel.map(Int64.init)
        return node("AveragePool", [input], tag: tag, attributes: [.ints("kernel_shape", k), .ints("strides", k)])
    }

    mutating func slice(_ input: String, axis: Int64, start: Int64, end: Int64, tag: String) -> String {
        let starts = constant([start], dims: [1], tag: "\(tag)_start")
        let ends = constant([end], dims: [1], tag: "\(tag)_end")
        let axes = constant([axis], dims: [1], tag: "\(tag)_axis")
        return node("Slice", [input, starts, ends, axes], tag: tag)
    }
}
