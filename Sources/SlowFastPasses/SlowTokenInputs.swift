import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// The inputs every slow-fast rewrite adds, and the values derived from them once for all
/// layers (docs/DESIGN.md §3): slow tokens [batch, num_slow, hidden], the slow-token padding mask
/// [batch, num_slow] and the query mask [batch, seq] (both 1 = yes; both optional: when not
/// fed, every slow token is real and every position queries).
struct SlowTokenInputs {
    static let slowTokens = "slow_tokens"
    static let slowTokensMask = "slow_tokens_mask"
    static let queryMask = "slow_query_mask"

    /// [batch, num_slow, hidden], as float32.
    let slowTokens: String
    /// Additive attention bias [batch, 1, 1, num_slow]: 0 for real tokens, -1e9 for padding.
    let maskBias: String
    /// [batch, seq, 1]: 1 where a position may query.
    let queryMask: String
    /// The inputs added, for the pass's result.
    let changes: [ModelChange]

    /// Adds the three inputs to `model.graph` and emits the shared mask arithmetic.
    init(model: Model, hiddenSize: Int, floatType: ElementType, builder: inout GraphBuilder) throws {
        let graph = model.graph
        for name in [SlowTokenInputs.slowTokens, SlowTokenInputs.slowTokensMask, SlowTokenInputs.queryMask] {
            if builder.names.isTaken(name) { throw HybridLayerError.inputNameTaken(name) }
            _ = builder.names.reserve(name)
        }
        // Reuse the model's own symbolic batch and sequence dims where its first input has them.
        var batch = Dimension.param("batch"), sequence = Dimension.param("sequence")
        if case .tensor(_, let shape?)? = graph.inputs.first?.type?.kind, shape.dims.count >= 2 {
            if case .param = shape.dims[0] { batch = shape.dims[0] }
            if case .param = shape.dims[1] { sequence = shape.dims[1] }
        }
        let numSlow = Dimension.param("num_slow_tokens")
        // The inputs are in the model's float type; the new nodes compute in float32.
        graph.inputs.append(ValueInfo(name: SlowTokenInputs.slowTokens, type: .tensor(floatType, [batch, numSlow, .value(Int64(hiddenSize))])))
        graph.inputs.append(ValueInfo(name: SlowTokenInputs.slowTokensMask, type: .tensor(floatType, [batch, numSlow])))
        graph.inputs.append(ValueInfo(name: SlowTokenInputs.queryMask, type: .tensor(floatType, [batch, sequence])))
        // An initializer of the same name as an input is the input's default (IR >= 4):
        // a [1, 1] tensor of ones broadcasts to "all real" and "all query".
        for name in [SlowTokenInputs.slowTokensMask, SlowTokenInputs.queryMask] {
            graph.initializers.append(Tensor(name: name, elementType: floatType, dims: [1, 1],
                                             storage: .bytes(TensorBytes(floats: [1], as: floatType))))
        }
        if (model.irVersion ?? 0) < 4 { model.irVersion = 4 }

        func shape(_ dims: [Dimension]) -> [String] {
            dims.map { dim -> String in
                switch dim {
                case .value(let value): return String(value)
                case .param(let name): return name
                case .unknown: return "?"
                }
            }
        }
        changes = [
            .inputAdded(name: SlowTokenInputs.slowTokens, shape: shape([batch, numSlow, .value(Int64(hiddenSize))]),
                        elementType: floatType.name, optional: false, meaning: "the slow video tokens, projected to the hidden size"),
            .inputAdded(name: SlowTokenInputs.slowTokensMask, shape: shape([batch, numSlow]), elementType: floatType.name,
                        optional: true, meaning: "1 = real slow token, 0 = padding (default: all real)"),
            .inputAdded(name: SlowTokenInputs.queryMask, shape: shape([batch, sequence]), elementType: floatType.name,
                        optional: true, meaning: "1 = this position may query the slow tokens (default: all)"),
        ]
        slowTokens = builder.toFloat(SlowTokenInputs.slowTokens, from: floatType, "slow_tokens/float")
        let mask = builder.toFloat(SlowTokenInputs.slowTokensMask, from: floatType, "mask/float")
        let padding = builder.op("Sub", [mask, builder.floats([1], dims: [], "one")], "mask/minus_one")
        let scaled = builder.op("Mul", [padding, builder.floats([1e9], dims: [], "mask_scale")], "mask/scale")
        maskBias = builder.unsqueeze(scaled, axes: [1, 2], "mask/bias")
        queryMask = builder.unsqueeze(builder.toFloat(SlowTokenInputs.queryMask, from: floatType, "query_mask/float"), axes: [2], "query_mask")
    }
}

extension GraphBuilder {
    /// softmax(Q K^T · scale + maskBias) V over the slow tokens, non-causal, with K/V
    /// of `kvHeads` heads repeated to `heads` (grouped-query attention) and no RoPE on K.
    /// `scale` defaults to 1/sqrt(head_dim).
    ///
    /// - Parameters:
    ///   - query: [batch, heads, seq, head_dim]
    ///   - keys, values: [batch, num_slow, kvHeads*head_dim]
    /// - Returns: [batch, seq, heads*head_dim]
    mutating func slowCrossAttention(query: String, keys: String, values: String, maskBias: String,
                                     heads: Int, kvHeads: Int, headDim: Int, scale: Double? = nil) -> String {
        func split(_ value: String, _ label: String) -> String {
            let perHead = reshape(value, to: [0, 0, Int64(kvHeads), Int64(headDim)], "\(label)/heads")
            var result = transpose(perHead, perm: [0, 2, 1, 3], "\(label)/to_bhnd")
            let repeats = heads / kvHeads
            if repeats > 1 {
                let grouped = unsqueeze(result, axes: [2], "\(label)/group")
                let expanded = op("Expand", [grouped, int64s([1, 1, Int64(repeats), 1, 1], "\(label)/repeat_shape")], "\(label)/repeat")
                result = reshape(expanded, to: [0, Int64(heads), -1, Int64(headDim)], "\(label)/repeated")
            }
            return result
        }
        let keyHeads = split(keys, "k"), valueHeads = split(values, "v")
        let keysT = transpose(keyHeads, perm: [0, 1, 3, 2], "k/transpose")
        let scores = op("MatMul", [query, keysT], "scores")
        let scaled = op("Mul", [scores, floats([scale.map(Float.init) ?? 1 / Float(headDim).squareRoot()], dims: [], "scale")], "scores/scale")
        let masked = op("Add", [scaled, maskBias], "scores/mask")
        let weights = op("Softmax", [masked], "softmax", attributes: [.int("axis", -1)])
        let attended = op("MatMul", [weights, valueHeads], "attend")
        let merged = transpose(attended, perm: [0, 2, 1, 3], "attend/to_blhd")
        return reshape(merged, to: [0, 0, Int64(heads * headDim)], "attend/merge")
    }

    /// x @ W + b with W stored [in, out] as the new initializer `weightName` (the transpose of
    /// the canonical [out, in]) and the bias as `biasName`.
    mutating func linear(_ input: String, canonicalWeight: [Float], outFeatures: Int, inFeatures: Int,
                         bias: [Float]?, weightName: String, biasName: String?, _ label: String) -> (output: String, weight: String, bias: String?) {
        let stored = transposed(canonicalWeight, rows: outFeatures, columns: inFeatures)
        let weight = parameter(floats: stored, dims: [Int64(inFeatures), Int64(outFeatures)], name: weightName)
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
