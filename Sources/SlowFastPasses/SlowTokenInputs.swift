import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Where a hybrid layer's slow keys and values come from (docs/DESIGN.md §3, §9).
public enum SlowKVSource: String, CaseIterable, Sendable {
    /// The decoder computes them from `slow_tokens` on every run (one model; every decode
    /// step repeats the work and takes `slow_tokens` again).
    case inline
    /// The decoder takes them as inputs `past_key_values.{i}.encoder.key/value`, computed once
    /// per generation by the companion model `<output>.slow-kv-encoder.onnx`.
    case inputs
}

/// How the cross-attention to the slow tokens is written (docs/DESIGN.md §9).
public enum CrossAttentionForm: String, CaseIterable, Sendable {
    /// `attention` at default-domain opset >= 23, else `multi-head-attention` when the model
    /// already imports `com.microsoft`, else `decomposed`.
    case auto
    /// MatMul, Softmax, MatMul in float32: every runtime has them; the score tensor is materialised.
    case decomposed
    /// The standard `Attention` op (opset 23): grouped-query K/V as they are, the padding bias as
    /// its mask. Refused below opset 23.
    case attention
    /// onnxruntime's `com.microsoft` `MultiHeadAttention`: K/V repeated to every head, the
    /// padding mask as `key_padding_mask`. onnxruntime only; the domain is imported when missing.
    case multiHeadAttention = "multi-head-attention"

    /// The form `auto` resolves to for `model`.
    public func resolved(for model: Model) -> CrossAttentionForm {
        guard self == .auto else { return self }
        if (model.opsetVersion("") ?? 1) >= 23 { return .attention }
        if model.opsetVersion(Domain.microsoft) != nil { return .multiHeadAttention }
        return .decomposed
    }
}

/// The inputs every slow-fast rewrite adds, and the values derived from them once for all
/// layers (docs/DESIGN.md §3). Every input is a real graph input with no initializer behind
/// it, so every runtime feeds it (onnxruntime-genai skips inputs that have a default):
///
/// - `slow_tokens` [batch, num_slow_tokens, hidden] (inline K/V), or per hybrid layer `i`
///   `past_key_values.{i}.encoder.key` / `.value` [batch, kv_heads, num_slow_tokens, head_dim]
///   (K/V as inputs);
/// - `slow_tokens_mask` [batch, num_slow_tokens]: 1 = real slow token, 0 = padding. Off: ones;
/// - `slow_query_exclude` [batch, num_ranges, 2] int64: per sequence, half-open ranges
///   [start, end) of token positions that may not query the slow tokens (the fast visual
///   tokens). Off: one range [0, 0]. Constant for a whole generation, so a generator that sets
///   inputs once can feed it.
struct SlowTokenInputs {
    static let slowTokens = "slow_tokens"
    static let slowTokensMask = "slow_tokens_mask"
    static let queryExclude = "slow_query_exclude"
    /// Decoder inputs of the cached slow keys and values of layer `i`, named the way optimum's
    /// Whisper decoder names its cross-attention cache (`past_key_values.{i}.encoder.key`).
    static func slowKey(_ layer: Int) -> String { "past_key_values.\(layer).encoder.key" }
    static func slowValue(_ layer: Int) -> String { "past_key_values.\(layer).encoder.value" }
    /// The companion model's outputs, named as optimum's decoder names the same tensors
    /// when it first computes them (`present.{i}.encoder.key`).
    static func presentKey(_ layer: Int) -> String { "present.\(layer).encoder.key" }
    static func presentValue(_ layer: Int) -> String { "present.\(layer).encoder.value" }

    /// [batch, num_slow, hidden] as float32, when the decoder computes K/V itself.
    let slowTokens: String?
    /// Additive attention bias [batch, 1, 1, num_slow]: 0 for real tokens, -1e9 for padding.
    let maskBias: String
    /// The slow-token mask [batch, num_slow] as int32 (1 = real), for `MultiHeadAttention`
    /// (emitted only for that form).
    let maskInt32: String?
    /// [batch, seq, 1]: 1 where a position may query, else 0.
    let queryMask: String
    /// [batch, k] int64: the positions (sequence index) that query, in order, k = the most
    /// any sequence has (at least 1); rows of sequences with fewer are padded with positions that do not
    /// query (their result is multiplied by 0).
    let queryRows: String
    /// The inputs added, for the pass's result.
    let changes: [ModelChange]
    /// The symbolic dims used, for the K/V inputs and the companion model.
    let batch: Dimension
    let numSlow: Dimension

    /// Adds the inputs to `model.graph` and emits the shared mask arithmetic.
    ///
    /// - Parameter positionSource: how each token's position is read (for `slow_query_exclude`).
    init(model: Model, hiddenSize: Int, floatType: ElementType, dims: ModelDimensions, layers: [Int], slowKV: SlowKVSource,
         form: CrossAttentionForm, positionSource: QueryPositions, builder: inout GraphBuilder) throws {
        let graph = model.graph
        var names = [SlowTokenInputs.slowTokensMask, SlowTokenInputs.queryExclude]
        switch slowKV {
        case .inline: names.insert(SlowTokenInputs.slowTokens, at: 0)
        case .inputs: names += layers.flatMap { [SlowTokenInputs.slowKey($0), SlowTokenInputs.slowValue($0)] }
        }
        for name in names {
            if builder.names.isTaken(name) { throw HybridLayerError.inputNameTaken(name) }
            _ = builder.names.reserve(name)
        }
        // Reuse the model's own symbolic batch and sequence dims where its first input has them.
        var batch = Dimension.param("batch")
        if case .tensor(_, let shape?)? = graph.inputs.first?.type?.kind, shape.dims.count >= 2 {
            if case .param = shape.dims[0] { batch = shape.dims[0] }
        }
        let numSlow = Dimension.param("num_slow_tokens")
        self.batch = batch
        self.numSlow = numSlow

        var added: [(ValueInfo, optional: Bool, meaning: String)] = []
        switch slowKV {
        case .inline:
            added.append((ValueInfo(name: SlowTokenInputs.slowTokens, type: .tensor(floatType, [batch, numSlow, .value(Int64(hiddenSize))])),
                          false, "the slow video tokens, projected to the hidden size"))
        case .inputs:
            let kvShape: [Dimension] = [batch, .value(Int64(dims.numKVHeads)), numSlow, .value(Int64(dims.headDim))]
            for layer in layers {
                added.append((ValueInfo(name: SlowTokenInputs.slowKey(layer), type: .tensor(floatType, kvShape)), false,
                              "layer \(layer)'s slow keys, from the companion model's \(SlowTokenInputs.presentKey(layer)); fed unchanged at every step"))
                added.append((ValueInfo(name: SlowTokenInputs.slowValue(layer), type: .tensor(floatType, kvShape)), false,
                              "layer \(layer)'s slow values, from the companion model's \(SlowTokenInputs.presentValue(layer)); fed unchanged at every step"))
            }
        }
        added.append((ValueInfo(name: SlowTokenInputs.slowTokensMask, type: .tensor(floatType, [batch, numSlow])), false,
                      "1 = real slow token, 0 = padding (off: all ones; must be fed)"))
        added.append((ValueInfo(name: SlowTokenInputs.queryExclude, type: .tensor(.int64, [batch, .param("num_query_exclude_ranges"), .value(2)])), false,
                      "per sequence, ranges [start, end) of positions that do not query the slow tokens (off: one range [0, 0]; must be fed)"))
        for (info, _, _) in added { graph.inputs.append(info) }

        func shape(_ value: ValueInfo) -> [String] {
            guard case .tensor(_, let shape?)? = value.type?.kind else { return [] }
            return shape.dims.map { dim -> String in
                switch dim {
                case .value(let value): return String(value)
                case .param(let name): return name
                case .unknown: return "?"
                }
            }
        }
        changes = added.map { info, optional, meaning in
            var type = floatType.name
            if case .tensor(let element?, _)? = info.type?.kind { type = ElementType.name(of: element) }
            return .inputAdded(name: info.name ?? "", shape: shape(info), elementType: type, optional: optional, meaning: meaning)
        }

        slowTokens = slowKV == .inline ? builder.toFloat(SlowTokenInputs.slowTokens, from: floatType, "slow_tokens/float") : nil
        let mask = builder.toFloat(SlowTokenInputs.slowTokensMask, from: floatType, "mask/float")
        let padding = builder.op("Sub", [mask, builder.floats([1], dims: [], "one")], "mask/minus_one")
        let scaled = builder.op("Mul", [padding, builder.floats([1e9], dims: [], "mask_scale")], "mask/scale")
        maskBias = builder.unsqueeze(scaled, axes: [1, 2], "mask/bias")
        maskInt32 = form == .multiHeadAttention
            ? builder.op("Cast", [mask], "mask/int32", attributes: [.int("to", Int64(ElementType.int32.rawValue))]) : nil

        // Which positions query: position p of a sequence is excluded when start <= p < end
        // for one of its ranges. Summing (not max) keeps zero ranges and overlaps well defined.
        let positions = positionSource.emit(builder: &builder)                               // [batch or 1, seq] int64
        let column = builder.unsqueeze(positions, axes: [2], "query/positions_column")       // [b, L, 1]
        let starts = builder.op("Gather", [SlowTokenInputs.queryExclude, builder.int64s([0], "query/start_index", scalar: true)],
                                "query/starts", attributes: [.int("axis", 2)])               // [B, R]
        let ends = builder.op("Gather", [SlowTokenInputs.queryExclude, builder.int64s([1], "query/end_index", scalar: true)],
                              "query/ends", attributes: [.int("axis", 2)])
        let afterStart = builder.op("Not", [builder.op("Less", [column, builder.unsqueeze(starts, axes: [1], "query/starts_row")], "query/before_start")],
                                    "query/after_start")
        let beforeEnd = builder.op("Less", [column, builder.unsqueeze(ends, axes: [1], "query/ends_row")], "query/before_end")
        let inside = builder.op("Cast", [builder.op("And", [afterStart, beforeEnd], "query/inside")], "query/inside_float",
                                attributes: [.int("to", Int64(ElementType.float.rawValue))])    // [B, L, R]
        let hits = builder.reduce("ReduceSum", inside, axes: [2], keepDims: false, "query/hits")  // [B, L]
        let queries = builder.op("Cast", [builder.op("Less", [hits, builder.floats([0.5], dims: [], "query/half")], "query/free")],
                                 "query/mask", attributes: [.int("to", Int64(ElementType.float.rawValue))])  // [B, L], 1 = queries
        queryMask = builder.unsqueeze(queries, axes: [2], "query_mask")

        // The querying rows, in order: TopK of m·(L − j) (positive for querying positions,
        // larger for earlier ones), k = the largest count of any sequence.
        let shapeOfMask = builder.op("Shape", [queries], "query/shape")
        let length = builder.op("Gather", [shapeOfMask, builder.int64s([1], "query/length_index", scalar: true)], "query/length",
                                attributes: [.int("axis", 0)])
        let lengthFloat = builder.op("Cast", [length], "query/length_float", attributes: [.int("to", Int64(ElementType.float.rawValue))])
        let steps = builder.op("Range", [builder.floats([0], dims: [], "query/zero"), lengthFloat, builder.floats([1], dims: [], "query/step")],
                               "query/steps")
        let priority = builder.op("Mul", [queries, builder.op("Sub", [lengthFloat, steps], "query/reverse")], "query/priority")
        let counts = builder.reduce("ReduceSum", queries, axes: [1], keepDims: false, "query/counts")
        let most = builder.reduce("ReduceMax", counts, axes: [0], keepDims: true, "query/most")
        // At least one row (a row that does not query is zeroed by m): fused attention ops
        // refuse an empty query.
        let atLeastOne = builder.op("Max", [most, builder.floats([1], dims: [1], "query/one_row")], "query/at_least_one")
        let k = builder.op("Cast", [atLeastOne], "query/k", attributes: [.int("to", Int64(ElementType.int64.rawValue))])
        let topK = builder.multiOutputOp("TopK", [priority, k], "query/top", outputs: 2,
                                         attributes: [.int("axis", -1), .int("largest", 1), .int("sorted", 1)])
        queryRows = topK[1]
    }
}

/// How the graph tells each token's position, for `slow_query_exclude`.
enum QueryPositions {
    /// onnxruntime-genai's GroupQueryAttention: token j of a step of length L sits at
    /// `seqlens_k + 1 − L + j` (the position RoPE gives it).
    case seqlens(seqlensK: String, query: String)
    /// A `position_ids` input [batch, seq].
    case positionIDs(String)
    /// The columns of a 2-D `attention_mask` [batch, total]: token j is at `total − L + j`.
    case attentionMaskColumns(mask: String, query: String)
    /// No cache and nothing to read: 0...L−1 of a value [batch, seq, ...].
    case sequence(String)

    func emit(builder: inout GraphBuilder) -> String {
        func range(of value: String, builder: inout GraphBuilder) -> (length: String, steps: String) {
            let shape = builder.op("Shape", [value], "positions/shape")
            let length = builder.op("Gather", [shape, builder.int64s([1], "positions/seq_axis", scalar: true)], "positions/length",
                                    attributes: [.int("axis", 0)])
            let steps = builder.op("Range", [builder.int64s([0], "positions/zero", scalar: true), length,
                                             builder.int64s([1], "positions/one", scalar: true)], "positions/steps")
            return (length, steps)
        }
        switch self {
        case .positionIDs(let name):
            return builder.op("Cast", [name], "positions/ids", attributes: [.int("to", Int64(ElementType.int64.rawValue))])
        case .sequence(let value):
            return builder.unsqueeze(range(of: value, builder: &builder).steps, axes: [0], "positions")
        case .attentionMaskColumns(let mask, let query):
            let (length, steps) = range(of: query, builder: &builder)
            let total = builder.op("Gather", [builder.op("Shape", [mask], "positions/mask_shape"),
                                              builder.int64s([1], "positions/total_axis", scalar: true)], "positions/total",
                                   attributes: [.int("axis", 0)])
            let start = builder.op("Sub", [total, length], "positions/start")
            return builder.unsqueeze(builder.op("Add", [steps, start], "positions/columns"), axes: [0], "positions")
        case .seqlens(let seqlensK, let query):
            let (length, steps) = range(of: query, builder: &builder)
            let seqlens = builder.op("Cast", [seqlensK], "positions/seqlens", attributes: [.int("to", Int64(ElementType.int64.rawValue))])
            let start = builder.op("Sub", [builder.op("Add", [seqlens, builder.int64s([1], "positions/plus_one", scalar: true)], "positions/total"),
                                           length], "positions/start")
            return builder.op("Add", [builder.unsqueeze(start, axes: [1], "positions/start_column"),
                                      builder.unsqueeze(steps, axes: [0], "positions/steps_row")], "positions")
        }
    }
}

extension GraphBuilder {
    /// A reduction over `axes`, written for the model's opset (ReduceSum took its axes as an
    /// input from opset 13, the other reductions from 18).
    mutating func reduce(_ opType: String, _ input: String, axes: [Int64], keepDims: Bool, _ label: String) -> String {
        let asInput = opType == "ReduceSum" ? opset >= 13 : opset >= 18
        if asInput {
            return op(opType, [input, int64s(axes, "\(label)_axes")], label, attributes: [.int("keepdims", keepDims ? 1 : 0)])
        }
        return op(opType, [input], label, attributes: [.ints("axes", axes), .int("keepdims", keepDims ? 1 : 0)])
    }

    /// A node with several outputs; returns their names.
    mutating func multiOutputOp(_ opType: String, _ inputs: [String], _ label: String, outputs count: Int,
                                attributes: [Attribute] = []) -> [String] {
        let first = op(opType, inputs, label, attributes: attributes)
        var outputs = [first]
        for index in 1 ..< count { outputs.append(names.fresh("\(scope)/\(label)_output_\(index)")) }
        if let node = nodes.last { node.outputs = outputs }
        return outputs
    }

    /// [batch, num_slow, groups·head_dim] -> [batch, groups, num_slow, head_dim].
    mutating func splitHeads(_ value: String, heads: Int, headDim: Int, _ label: String) -> String {
        let perHead = reshape(value, to: [0, 0, Int64(heads), Int64(headDim)], "\(label)/heads")
        return transpose(perHead, perm: [0, 2, 1, 3], "\(label)/to_bhnd")
    }

    /// Cross-attention to the slow tokens computed only for the rows that query
    /// (`inputs.queryRows`), scattered back into zeros: [batch, seq, heads·head_dim].
    ///
    /// - Parameters:
    ///   - query: [batch, heads, seq, head_dim], float32
    ///   - keys, values: [batch, kvHeads, num_slow, head_dim], float32
    /// `scale` is the layer's own score factor where the graph states one (default 1/√head_dim).
    mutating func queriedCrossAttention(query: String, keys: String, values: String, inputs: SlowTokenInputs,
                                        heads: Int, kvHeads: Int, headDim: Int, form: CrossAttentionForm,
                                        scale layerScale: Double? = nil, softcap: Double? = nil) -> String {
        let width = Int64(heads * headDim)
        // rows [B, k] -> [B, 1, k, 1], broadcast over heads and head_dim.
        let rowIndex = unsqueeze(inputs.queryRows, axes: [1, 3], "rows/index")
        let gatherIndex = op("Expand", [rowIndex, int64s([1, Int64(heads), 1, Int64(headDim)], "rows/gather_shape")], "rows/gather_index")
        let rows = op("GatherElements", [query, gatherIndex], "rows/query", attributes: [.int("axis", 2)])
        let scale = layerScale.map(Float.init) ?? 1 / Float(headDim).squareRoot()
        let attended: String   // [B, k, H·hd]
        switch form {
        case .attention:
            // Q [B, H, k, hd], K/V [B, G, N, hd]: the op repeats K/V heads itself (GQA). Its mask
            // must name the query length (onnxruntime checks it): [B, 1, 1, N] -> [B, 1, k, N].
            let rowCount = op("Slice", [op("Shape", [rows], "attention/rows_shape"), int64s([2], "attention/rows_start"),
                                        int64s([3], "attention/rows_end")], "attention/row_count")
            let maskShape = op("Concat", [int64s([1, 1], "attention/mask_lead"), rowCount, int64s([1], "attention/mask_tail")],
                               "attention/mask_shape", attributes: [.int("axis", 0)])
            let mask = op("Expand", [inputs.maskBias, maskShape], "attention/mask")
            let output = op("Attention", [rows, keys, values, mask], "attention",
                            attributes: [.float("scale", scale), .int("is_causal", 0)])
            attended = reshape(transpose(output, perm: [0, 2, 1, 3], "attention/to_blhd"), to: [0, 0, width], "attention/merge")
        case .multiHeadAttention:
            // Grouped as below, G heads: Q [B, r·k, G·hd], K/V [B, G, N, hd] (BNSH), padding as
            // key_padding_mask.
            let grouped = groupQueries(rows, heads: heads, kvHeads: kvHeads, headDim: headDim)
            let flatQuery = reshape(transpose(grouped, perm: [0, 2, 1, 3], "mha/query_bsgd"), to: [0, 0, Int64(kvHeads * headDim)], "mha/query")
            let output = op("MultiHeadAttention", [flatQuery, keys, values, "", inputs.maskInt32 ?? ""], "mha",
                            attributes: [.int("num_heads", Int64(kvHeads)), .float("scale", scale), .float("mask_filter_value", -1e9)],
                            domain: Domain.microsoft)
            let perGroup = transpose(reshape(output, to: [0, 0, Int64(kvHeads), Int64(headDim)], "mha/output_heads"),
                                     perm: [0, 2, 1, 3], "mha/output_bgsd")
            attended = ungroupRows(perGroup, heads: heads, headDim: headDim)
        case .decomposed, .auto:
            attended = slowCrossAttention(query: rows, keys: keys, values: values, maskBias: inputs.maskBias,
                                          heads: heads, kvHeads: kvHeads, headDim: headDim, scale: layerScale, softcap: softcap)
        }
        let zeros = op("ConstantOfShape", [op("Concat", [
            op("Gather", [op("Shape", [query], "rows/query_shape"), int64s([0, 2], "rows/batch_seq")], "rows/batch_and_seq", attributes: [.int("axis", 0)]),
            int64s([width], "rows/width")], "rows/full_shape", attributes: [.int("axis", 0)])], "rows/zeros",
            attributes: [.tensor("value", Tensor(name: "", dims: [1], floats: [0]))])
        let scatterIndex = op("Expand", [unsqueeze(inputs.queryRows, axes: [2], "rows/scatter_row"), int64s([1, 1, width], "rows/scatter_shape")],
                              "rows/scatter_index")
        return op("ScatterElements", [zeros, scatterIndex, attended], "rows/scatter", attributes: [.int("axis", 1)])
    }

    /// softmax(Q K^T · scale + maskBias) V over the slow tokens (scale: 1/sqrt(head_dim) unless
    /// given), non-causal, no RoPE on K, with grouped-query K/V used as they are (the queries are
    /// grouped instead).
    ///
    /// - Parameters:
    ///   - query: [batch, heads, rows, head_dim]
    ///   - keys, values: [batch, kvHeads, num_slow, head_dim]
    /// - Returns: [batch, rows, heads*head_dim]
    mutating func slowCrossAttention(query: String, keys: String, values: String, maskBias: String,
                                     heads: Int, kvHeads: Int, headDim: Int, scale: Double? = nil, softcap: Double? = nil) -> String {
        let grouped = groupQueries(query, heads: heads, kvHeads: kvHeads, headDim: headDim)
        let keysT = transpose(keys, perm: [0, 1, 3, 2], "k/transpose")
        let scores = op("MatMul", [grouped, keysT], "scores")
        var scaled = op("Mul", [scores, floats([scale.map(Float.init) ?? 1 / Float(headDim).squareRoot()], dims: [], "scale")], "scores/scale")
        if let softcap {
            // The layer's own soft-capping, tanh(s / cap) · cap, before the mask as the layer does.
            let cap = floats([Float(softcap)], dims: [], "softcap")
            scaled = op("Mul", [op("Tanh", [op("Div", [scaled, cap], "scores/over_cap")], "scores/tanh"), cap], "scores/capped")
        }
        let masked = op("Add", [scaled, maskBias], "scores/mask")
        let weights = op("Softmax", [masked], "softmax", attributes: [.int("axis", -1)])
        return ungroupRows(op("MatMul", [weights, values], "attend"), heads: heads, headDim: headDim)
    }

    /// Query heads sharing a K/V head, stacked: [B, H, k, hd] -> [B, G, (H/G)·k, hd]. Query head
    /// h reads K/V head h / (H/G), as Hugging Face's repeat_kv; each row's softmax is its own,
    /// so attending per group equals repeating K/V to every head, without the copies.
    mutating func groupQueries(_ query: String, heads: Int, kvHeads: Int, headDim: Int) -> String {
        guard heads != kvHeads else { return query }
        return reshape(query, to: [0, Int64(kvHeads), -1, Int64(headDim)], "q/grouped")
    }

    /// [B, G, (H/G)·k, hd] -> [B, k, H·hd].
    mutating func ungroupRows(_ value: String, heads: Int, headDim: Int) -> String {
        let perHead = reshape(value, to: [0, Int64(heads), -1, Int64(headDim)], "attend/heads")
        let merged = transpose(perHead, perm: [0, 2, 1, 3], "attend/to_blhd")
        return reshape(merged, to: [0, 0, Int64(heads * headDim)], "attend/merge")
    }

    /// x @ W + b with W stored [in, out] as the new initializer `weightName` (the transpose of
    /// the canonical [out, in]) and the bias as `biasName`.
    mutating func linear(_ input: String, canonicalWeight: [Float], outFeatures: Int, inFeatures: Int,
                         bias: [Float]?, weightName: String, biasName: String?, _ label: String) -> (output: String, weight: String, bias: String?) {
        let stored = transposed(canonicalWeight, rows: outFeatures, columns: inFeatures)
        let weight = parameter(floats: stored, dims: [Int64(inFeatures), Int64(outFeatures)], name: weightName)
        return linear(input, weight: weight, outFeatures: outFeatures, bias: bias, biasName: biasName, label)
    }

    /// The same with the weight given as its stored [in, out] values (made at write time).
    mutating func linear(_ input: String, storedWeight: any TensorData, outFeatures: Int, inFeatures: Int,
                         bias: [Float]?, weightName: String, biasName: String?, _ label: String) -> (output: String, weight: String, bias: String?) {
        let tensor = Tensor(name: "", elementType: parameterType, dims: [Int64(inFeatures), Int64(outFeatures)], storage: .computed(storedWeight))
        let stored = parameter(tensor, name: weightName)
        let weight = (stored: stored, value: toFloat(stored, from: parameterType, "\(GraphBuilder.shortLabel(stored))/float"))
        return linear(input, weight: weight, outFeatures: outFeatures, bias: bias, biasName: biasName, label)
    }

    private mutating func linear(_ input: String, weight: (stored: String, value: String), outFeatures: Int,
                                 bias: [Float]?, biasName: String?, _ label: String) -> (output: String, weight: String, bias: String?) {
        var output = op("MatMul", [input, weight.value], label)
        var biasParameter: String?
        if let bias, let biasName {
            let parameter = parameter(floats: bias, dims: [Int64(outFeatures)], name: biasName)
            biasParameter = parameter.stored
            output = op("Add", [output, parameter.value], "\(label)/bias")
        }
        return (output, weight.stored, biasParameter)
    }
}
