import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// The companion model of `--slow-kv inputs` (docs/DESIGN.md §9): from `slow_tokens`
/// [batch, num_slow_tokens, d] it computes, per hybrid layer i, exactly what the inline form
/// computes inside the decoder,
///
///     [K_x | V_x] = RMSNorm_in,i(S) W_kv,iᵀ + b_kv,i   -> [batch, kv_heads, num_slow_tokens, head_dim]
///
/// as outputs `present.{i}.encoder.key` / `.value` in the model's float type, which the
/// decoder takes as `past_key_values.{i}.encoder.key` / `.value` at every step. It holds each
/// layer's input-norm weight (a copy) and `cross_attn_kv_proj`, all inline.
struct SlowKVEncoder {
    static let role = "slow-kv-encoder"

    private let graph: Graph
    private let model: Model
    private var builder: GraphBuilder
    private let floatType: ElementType
    private let dims: ModelDimensions
    private let slowTokens: String
    private let batch: Dimension
    private let numSlow: Dimension
    private var parameters: [ParameterRecord] = []

    init(model decoder: Model, floatType: ElementType, dims: ModelDimensions, batch: Dimension, numSlow: Dimension) {
        graph = Graph(name: "slow_kv_encoder")
        graph.inputs = [ValueInfo(name: SlowTokenInputs.slowTokens, type: .tensor(floatType, [batch, numSlow, .value(Int64(dims.hiddenSize))]))]
        let opset = decoder.opsetVersion("") ?? 11
        model = Model(graph: graph, irVersion: decoder.irVersion ?? 8, opsetImports: [OpsetImport(domain: "", version: opset)])
        model.producerName = "slowfast"
        model.docString = "Slow keys and values of each hybrid layer, computed once per generation (docs/DESIGN.md §9)."
        builder = GraphBuilder(names: NameAllocator(graph: graph), scope: "/slowfast/slow_kv", opset: opset)
        _ = builder.names.reserve(SlowTokenInputs.slowTokens)
        builder.parameterType = floatType
        builder.marks = [StringPair(RewriteMarks.pass, RewriteMarks.hybridPass)]
        self.floatType = floatType
        self.dims = dims
        self.batch = batch
        self.numSlow = numSlow
        slowTokens = builder.toFloat(SlowTokenInputs.slowTokens, from: floatType, "slow_tokens/float")
    }

    mutating func addLayer(_ layer: Int, norm inputNorm: CopiedNorm?, kvWeight: [Float], kvBias: [Float],
                           kvWeightName: String, kvBiasName: String, kvRule: String, biasRule: String, biasKind: ParameterRecord.Kind) {
        builder.scope = "/slowfast/layers.\(layer)/slow_kv"
        builder.marks = [StringPair(RewriteMarks.pass, RewriteMarks.hybridPass), StringPair(RewriteMarks.layer, String(layer))]
        // The layer's input norm, copied; a layer without one (OLMo-2) reads the slow tokens as they are.
        var normalised = slowTokens
        var normStored: String?
        var biasStored: String?
        if let inputNorm {
            let parameter = builder.parameter(floats: inputNorm.weight, dims: [Int64(inputNorm.weight.count)], name: inputNorm.name)
            let bias = !inputNorm.centered ? nil : inputNorm.bias.map { builder.parameter(floats: $0.values, dims: [Int64($0.values.count)], name: $0.name) }
            biasStored = bias?.stored
            normalised = builder.norm(slowTokens, weight: parameter.value, bias: bias?.value, epsilon: inputNorm.epsilon,
                                      centered: inputNorm.centered, "slow_norm")
            normStored = parameter.stored
        }
        let kv = builder.linear(normalised, canonicalWeight: kvWeight, outFeatures: 2 * dims.kvWidth, inFeatures: dims.hiddenSize,
                                bias: kvBias, weightName: kvWeightName, biasName: kvBiasName, "kv_proj")
        for (index, (name, label)) in [(SlowTokenInputs.presentKey(layer), "k"), (SlowTokenInputs.presentValue(layer), "v")].enumerated() {
            let part = builder.slice(kv.output, axis: -1, start: Int64(index * dims.kvWidth), end: Int64((index + 1) * dims.kvWidth), label)
            let heads = builder.splitHeads(part, heads: dims.numKVHeads, headDim: dims.headDim, label)
            var result = builder.fromFloat(heads, to: floatType, "\(label)/model_type")
            if result == heads { result = builder.op("Identity", [heads], "\(label)/output") }
            _ = builder.names.reserve(name)
            builder.renameLastOutput(from: result, to: name)
            graph.outputs.append(ValueInfo(name: name, type: .tensor(floatType, [batch, .value(Int64(dims.numKVHeads)), numSlow,
                                                                               .value(Int64(dims.headDim))])))
        }
        if let normStored, let inputNorm {
            parameters.append(ParameterRecord(onnxName: normStored, canonicalName: inputNorm.name, kind: .derived, transform: inputNorm.transform,
                                              initRule: "copy of the decoder's \(inputNorm.name) (the layer's input norm, applied to the slow tokens)"))
            if let biasStored, let bias = inputNorm.bias {
                parameters.append(ParameterRecord(onnxName: biasStored, canonicalName: bias.name, kind: .derived,
                                                  initRule: "copy of the decoder's \(bias.name) (the layer's input norm's bias)"))
            }
        }
        parameters += [
            ParameterRecord(onnxName: kv.weight, canonicalName: kvWeightName, kind: .derived, transform: .transposed, initRule: kvRule),
            ParameterRecord(onnxName: kv.bias!, canonicalName: kvBiasName, kind: biasKind, initRule: biasRule),
        ]
    }

    /// The finished model.
    mutating func finish() -> CompanionModel {
        graph.nodes = builder.takeNodes()
        graph.initializers = builder.takeInitializers()
        return CompanionModel(role: SlowKVEncoder.role, model: model, parameters: parameters)
    }
}

/// A layer's input norm copied into the companion model: its values and PyTorch names.
struct CopiedNorm {
    var weight: [Float]
    var name: String
    var epsilon: Float
    var transform: ParameterTransform
    /// LayerNorm's bias (values, PyTorch name).
    var bias: (values: [Float], name: String)?
    /// A LayerNorm (mean subtracted first).
    var centered: Bool
}
