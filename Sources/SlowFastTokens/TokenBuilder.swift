import SlowFastAdapters
import SlowFastIR
/// The names of the token values the builder made.
public struct TokenOutputs: Equatable, Sendable {
    /// [1, numSlowTokens, dim]: fits the `slow_tokens` input [batch, num_slow, hidden] of a
    /// rewritten model.
    public var slowTokens: String
    /// [1, numFastTokens, dim]: goes into the LLM's input sequence in place of the video.
    public var fastTokens: String
    public var plan: TokenPlan
}

/// Emits the ONNX ops of `TokenPlan`: projector features [frames, h, w, d] (or
/// [frames, h*w, d]) to slow tokens and fast tokens, using only standard ops that exist
/// unchanged from opset 13 on (Transpose, AveragePool, Gather, Slice, Concat, Reshape), so
/// the same nodes fit any graph they are inserted into.
public enum TokenBuilder {
    /// The oldest default-domain opset the emitted nodes are valid in.
    public static let minimumOpset: Int64 = 13
    /// The opset of the standalone model.
    public static let standaloneOpset: Int64 = 17

    /// A standalone model: input `features` [frames, h, w, d] float32, outputs
    /// `slow_tokens` [1, N_s, d] and `fast_tokens` [1, N_f, d].
    public static func makeModel(_ spec: TokenSpec) throws -> Model {
        let plan = try TokenPlan(spec)
        let graph = Graph(name: "slowfast_tokens")
        let dims: [Dimension] = [spec.frames, spec.height, spec.width, spec.dim].map { .value(Int64($0)) }
        graph.inputs = [ValueInfo(name: "features", type: .tensor(.float, dims))]
        var names = NameAllocator(graph: graph)
        _ = names.reserve("slow_tokens")
        _ = names.reserve("fast_tokens")
        try emit(plan, features: "features", into: graph, names: &names,
                 slowName: "slow_tokens", fastName: "fast_tokens")
        graph.outputs = [
            ValueInfo(name: "slow_tokens", type: .tensor(.float, [.value(1), .value(Int64(plan.numSlowTokens)), .value(Int64(spec.dim))])),
            ValueInfo(name: "fast_tokens", type: .tensor(.float, [.value(1), .value(Int64(plan.numFastTokens)), .value(Int64(spec.dim))])),
        ]
        let model = Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: Domain.onnx, version: standaloneOpset)])
        model.producerName = "slowfast tokens"
        return model
    }

    /// Inserts the token ops after `value` (e.g. a vision graph's projector output) in
    /// `model.graph`. The value must hold [frames, h, w, d] or [frames, h*w, d] features; a
    /// static shape recorded for it is checked. With `addGraphOutputs` the two token values
    /// become graph outputs of type `elementType` (default: the type recorded for `value`,
    /// else float32). Returns the new value names. On error the graph is unchanged.
    @discardableResult
    public static func insert(into model: Model, after value: String, spec: TokenSpec,
                              elementType: ElementType? = nil, addGraphOutputs: Bool = true) throws -> TokenOutputs {
        let graph = model.graph
        let opset = model.opsetVersion(Domain.onnx) ?? 0
        guard opset >= minimumOpset else { throw TokenBuilderError.opsetTooOld(found: opset, needed: minimumOpset) }
        let plan = try TokenPlan(spec)
        let shape = staticShape(of: value, in: graph)
        guard shape != nil || valueExists(value, in: graph) else {
            throw TokenBuilderError.valueNotFound(graph: graph.name ?? "", value: value)
        }
        if let shape {
            let full = [spec.frames, spec.height, spec.width, spec.dim].map(Int64.init)
            let flat = [spec.frames, spec.height * spec.width, spec.dim].map(Int64.init)
            let matches = { (expected: [Int64]) in
                shape.count == expected.count && zip(shape, expected).allSatisfy { $0 < 0 || $0 == $1 }
            }
            guard matches(full) || matches(flat) else {
                throw TokenBuilderError.featureShapeMismatch(value: value, found: shape, expected: "\(full) or \(flat)")
            }
        }
        // Build into a scratch graph first so a failure leaves `graph` as it was.
        var names = NameAllocator(model: model)
        let slowName = names.fresh("\(value)_slow_tokens")
        let fastName = names.fresh("\(value)_fast_tokens")
        let scratch = Graph(name: graph.name)
        try emit(plan, features: value, into: scratch, names: &names, slowName: slowName, fastName: fastName)
        graph.nodes.append(contentsOf: scratch.nodes)
        graph.initializers.append(contentsOf: scratch.initializers)
        if addGraphOutputs {
            let elementType = elementType ?? recordedElementType(of: value, in: graph) ?? .float
            let d = Int64(spec.dim)
            graph.outputs.append(ValueInfo(name: slowName, type: .tensor(elementType, [.value(1), .value(Int64(plan.numSlowTokens)), .value(d)])))
            graph.outputs.append(ValueInfo(name: fastName, type: .tensor(elementType, [.value(1), .value(Int64(plan.numFastTokens)), .value(d)])))
        }
        return TokenOutputs(slowTokens: slowName, fastTokens: fastName, plan: plan)
    }

    // MARK: - Emission

    /// Appends the nodes of `plan` reading `features` and producing `slowName`/`fastName`.
    /// Layout: everything temporal happens on [1, d, frames, h*w] so AveragePool and Slice
    /// work along axis 2; spatial pooling on [frames, d, h, w].
    static func emit(_ plan: TokenPlan, features: String, into graph: Graph, names: inout NameAllocator,
                     slowName: String, fastName: String) throws {
        var emitter = Emitter(graph: graph, names: names, prefix: "\(features)_tokens")
        defer { names = emitter.names }
        let spec = plan.spec
        let d = Int64(spec.dim)

        // Slow tokens: [F, h, w, d] -> [F, d, h, w] -> P x P pool -> [F, h', w', d] -> [1, N_s, d].
        let grid = emitter.reshape(features, to: [Int64(spec.frames), Int64(spec.height), Int64(spec.width), d], tag: "grid")
        let channelsFirst = emitter.transpose(grid, perm: [0, 3, 1, 2], tag: "nchw")
        let pooled = spec.slowPool > 1
            ? emitter.averagePool(channelsFirst, kernel: [spec.slowPool, spec.slowPool], tag: "slow_pool")
            : channelsFirst
        let slowChannelsLast = emitter.transpose(pooled, perm: [0, 2, 3, 1], tag: "slow_nhwc")
        emitter.reshape(slowChannelsLast, to: [1, Int64(plan.numSlowTokens), d], tag: "slow", output: slowName)

        // Fast tokens, step 2: temporal sampling (a Gather of constant frame indices).
        var fast = pooled
        let identitySampling = plan.sampledFrames == Array(0..<spec.frames)
        if !identitySampling {
            let indices = emitter.constant(plan.sampledFrames.map(Int64.init), dims: [Int64(plan.sampledFrames.count)], tag: "sample_indices")
            fast = emitter.node("Gather", [fast, indices], tag: "sample", attributes: [.int("axis", 0)])
        }
        let sampled = Int64(plan.sampledFrames.count)
        let hw = Int64(plan.slowTokensPerFrame)

        // Step 3: temporal pooling on [1, d, n, h'*w'].
        if !plan.temporalPoolingIsIdentity {
            let perFrame = emitter.transpose(fast, perm: [1, 0, 2, 3], tag: "time_last")
            let timeAxis = emitter.reshape(perFrame, to: [1, d, sampled, hw], tag: "time_grid")
            var pooledTime: String
            if plan.uniformPooling {
                pooledTime = emitter.averagePool(timeAxis, kernel: [spec.fast.temporalKernel, 1], tag: "time_pool")
            } else {
                var pieces: [String] = []
                for (j, window) in plan.temporalWindows.enumerated() {
                    let piece = emitter.slice(timeAxis, axis: 2, start: window.start, end: window.end, tag: "window\(j)")
                    pieces.append(window.count > 1
                        ? emitter.averagePool(piece, kernel: [window.count, 1], tag: "window\(j)_mean")
                        : piece)
                }
                pooledTime = pieces.count == 1 ? pieces[0]
                    : emitter.node("Concat", pieces, tag: "windows", attributes: [.int("axis", 2)])
            }
            let frameGrid = emitter.reshape(pooledTime, to: [d, Int64(plan.fastFrames), Int64(plan.slowHeight), Int64(plan.slowWidth)], tag: "fast_grid")
            fast = emitter.transpose(frameGrid, perm: [1, 0, 2, 3], tag: "fast_nchw")
        }

        // Step 4: spatial pooling, then [1, N_f, d].
        if spec.fast.spatialPool > 1 {
            fast = emitter.averagePool(fast, kernel: [spec.fast.spatialPool, spec.fast.spatialPool], tag: "fast_spatial_pool")
        }
        let fastChannelsLast = emitter.transpose(fast, perm: [0, 2, 3, 1], tag: "fast_nhwc")
        emitter.reshape(fastChannelsLast, to: [1, Int64(plan.numFastTokens), d], tag: "fast", output: fastName)
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

    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], tag: String, attributes: [Attribute] = [], output: String? = nil) -> String {
        let result = output ?? names.fresh("\(prefix)/\(tag)_output")
        graph.nodes.append(Node(op, name: names.fresh("\(prefix)/\(tag)"), inputs: inputs, outputs: [result], attributes: attributes))
        return result
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

    mutating func slice(_ input: String, axis: Int64, start: Int, end: Int, tag: String) -> String {
        let starts = constant([Int64(start)], dims: [1], tag: "\(tag)_start")
        let ends = constant([Int64(end)], dims: [1], tag: "\(tag)_end")
        let axes = constant([axis], dims: [1], tag: "\(tag)_axis")
        return node("Slice", [input, starts, ends, axes], tag: tag)
    }
}
