import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// How a hybrid layer is made, whichever layers it is made at: the one record the command
/// line fills, a library request carries (`HybridRequest`) and the pass reads.
public struct HybridLayerSettings: Sendable, Equatable {
    public enum Mode: String, CaseIterable, Sendable {
        /// The paper's hybrid decoder layer: the layer itself cross-attends (docs/DESIGN.md §1).
        case inPlace = "in-place"
        /// A separate gated cross-attention block before the layer (Flamingo / Llama 3.2 Vision).
        case insert
    }

    public enum NewWeights: String, CaseIterable, Sendable {
        case asModel = "as-model"
        case float
    }

    public var mode: Mode
    /// Width of the slow tokens the caller will feed; must equal the hidden size.
    public var slowTokenWidth: Int?
    /// Std of the normal init of new projections that have nothing to copy (gate, insert mode).
    public var initStd: Double
    public var seed: UInt64
    /// Where the slow keys and values come from: computed in the decoder (`inline`) or fed as
    /// inputs computed once by a companion model (`inputs`, in-place mode only).
    public var slowKV: SlowKVSource
    /// How the cross-attention is written: a fused op where the model's opsets have one that
    /// fits (`auto`), or a chosen form.
    public var crossAttention: CrossAttentionForm
    /// How kv_proj is stored in a quantized model: in the model's own form where k_proj and
    /// v_proj join exactly (`asModel`), or in float from their dequantized values.
    public var newWeights: NewWeights

    public init(mode: Mode = .inPlace, slowTokenWidth: Int? = nil, initStd: Double = 0.02, seed: UInt64 = 0,
                slowKV: SlowKVSource = .inline, crossAttention: CrossAttentionForm = .auto, newWeights: NewWeights = .asModel) {
        self.mode = mode
        self.slowTokenWidth = slowTokenWidth
        self.initStd = initStd
        self.seed = seed
        self.slowKV = slowKV
        self.crossAttention = crossAttention
        self.newWeights = newWeights
    }
}

/// The hybrid-layer pass's options: the layers (resolved against the model) and the settings,
/// whose fields read through (`options.mode`).
@dynamicMemberLookup
public struct HybridLayerOptions: Sendable {
    public typealias Mode = HybridLayerSettings.Mode
    public typealias NewWeights = HybridLayerSettings.NewWeights

    public var layers: [Int]
    public var settings: HybridLayerSettings

    public init(layers: [Int], settings: HybridLayerSettings) {
        self.layers = layers
        self.settings = settings
    }

    public init(layers: [Int], mode: Mode = .inPlace, slowTokenWidth: Int? = nil, initStd: Double = 0.02, seed: UInt64 = 0,
                slowKV: SlowKVSource = .inline, crossAttention: CrossAttentionForm = .auto, newWeights: NewWeights = .asModel) {
        self.init(layers: layers, settings: HybridLayerSettings(mode: mode, slowTokenWidth: slowTokenWidth, initStd: initStd, seed: seed,
                                                                slowKV: slowKV, crossAttention: crossAttention, newWeights: newWeights))
    }

    public subscript<Value>(dynamicMember field: WritableKeyPath<HybridLayerSettings, Value>) -> Value {
        get { settings[keyPath: field] }
        set { settings[keyPath: field] = newValue }
    }
}

/// Turns chosen decoder layers into slow-fast hybrid layers, in place (docs/DESIGN.md §1):
///
///     Ŝ = RMSNorm_in(S);  [K_x | V_x] = W_kv Ŝ + b_kv   (no RoPE; GQA-repeated)
///     A_x = softmax(Q K_xᵀ / sqrt(hd) + mask) V_x        (Q = the layer's query after RoPE)
///     g = tanh(w_g · A_sa + b_g) · tanh(α)
///     o_proj input: A_sa  ->  A_sa + m ⊙ g ⊙ A_x
///
/// W_kv starts as concat(k_proj, v_proj) of the layer and α as 0, so until α is trained the
/// model computes exactly what it did.
public struct HybridLayerPass: ModelPass {
    public let name = RewriteMarks.hybridPass
    public let layout: ModelLayout
    public let options: HybridLayerOptions

    public init(layout: ModelLayout, options: HybridLayerOptions) {
        self.layout = layout
        self.options = options
    }

    public func requires(_ model: Model) throws {
        if options.layers.isEmpty { throw HybridLayerError.noLayersChosen }
        let already = HybridLayerPass.hybridLayers(in: model)
        for layer in options.layers.sorted() where already[layer] != nil {
            throw HybridLayerError.alreadyHybrid(layer: layer, mode: already[layer] ?? "")
        }
        if !already.isEmpty { throw HybridLayerError.alreadyRewritten(layers: already.keys.sorted()) }
        for layer in options.layers where !layout.layers.indices.contains(layer) {
            throw HybridLayerError.layerOutOfRange(layer: layer, layerCount: layout.layers.count)
        }
        guard let type = ElementType(rawValue: layout.floatType), [.float, .float16, .bfloat16].contains(type) else {
            throw HybridLayerError.unsupportedFloatType(ElementType.name(of: layout.floatType))
        }
        if options.mode == .insert {
            // The block's output must reach the layer's norm; a fused skip-norm that adds the
            // residual itself (onnxruntime-genai) has no value to redirect.
            let producers = model.graph.index()
            for layer in options.layers {
                let description = layout.layers[layer]
                if let fused = producers.producer(of: description.residualInput), let norm = description.inputNorm, fused.outputs.contains(norm.output) {
                    throw HybridLayerError.insertNeedsResidualValue(layer: layer)
                }
            }
        }
        if options.slowKV == .inputs && options.mode != .inPlace {
            throw HybridLayerError.slowKVInputsNeedInPlace
        }
        if options.crossAttention == .attention && (model.opsetVersion("") ?? 1) < 23 {
            throw HybridLayerError.attentionNeedsOpset23(Int(model.opsetVersion("") ?? 1))
        }
        // Soft-capped scores (Gemma 2) are capped before the mask; the fused ops cannot do that
        // (MultiHeadAttention has no cap, Attention caps after adding the mask).
        if options.mode == .inPlace, [.attention, .multiHeadAttention].contains(options.crossAttention),
           let layer = options.layers.sorted().first(where: { layout.layers.indices.contains($0) && layout.layers[$0].attentionSoftcap != nil }) {
            throw HybridLayerError.softcapNeedsDecomposed(layer: layer, cap: layout.layers[layer].attentionSoftcap ?? 0,
                                                          form: options.crossAttention.rawValue)
        }
        if (model.opsetVersion("") ?? 1) < 11 {
            throw HybridLayerError.opsetTooOld(Int(model.opsetVersion("") ?? 1))
        }
        if let width = options.slowTokenWidth, width != layout.dimensions.hiddenSize {
            throw HybridLayerError.slowTokenWidthMismatch(slowWidth: width, hiddenSize: layout.dimensions.hiddenSize)
        }
    }

    public func run(_ model: Model) throws -> PassResult {
        let graph = model.graph
        let dims = layout.dimensions
        var builder = GraphBuilder(names: NameAllocator(model: model), scope: "/slowfast", opset: model.opsetVersion("") ?? 1)
        builder.parameterType = floatType
        builder.marks = [StringPair(RewriteMarks.pass, name)]
        let layers = Array(Set(options.layers)).sorted()
        let capped = options.mode == .inPlace && layers.contains { layout.layers[$0].attentionSoftcap != nil }
        let form = capped ? .decomposed : options.crossAttention.resolved(for: model)
        let inputs = try SlowTokenInputs(model: model, hiddenSize: dims.hiddenSize, floatType: floatType, dims: dims, layers: layers,
                                         slowKV: options.slowKV, form: form,
                                         positionSource: positionSource(model, first: layout.layers[layers[0]]), builder: &builder)
        var companion = options.slowKV == .inputs
            ? SlowKVEncoder(model: model, floatType: floatType, dims: dims, batch: inputs.batch, numSlow: inputs.numSlow) : nil
        let nodesByName = Dictionary(graph.nodes.compactMap { node in node.name.map { ($0, node) } }, uniquingKeysWith: { first, _ in first })
        guard let firstNode = nodesByName[layout.layers[layers[0]].o.node] else {
            throw HybridLayerError.missingNode(layer: layers[0], role: "o_proj", name: layout.layers[layers[0]].o.node)
        }
        builder.insert(into: graph, before: firstNode)

        var parameters: [ParameterRecord] = []
        var changes = inputs.changes
        if form == .multiHeadAttention && model.opsetVersion(Domain.microsoft) == nil {
            model.opsetImports.append(OpsetImport(domain: Domain.microsoft, version: 1))
        }
        changes.append(.crossAttentionForm(form: form.rawValue, chosen: options.crossAttention.rawValue))
        let producers = Dictionary(graph.nodes.flatMap { node in node.outputs.map { ($0, node) } }, uniquingKeysWith: { first, _ in first })
        // Each anchor's own type, read before the graph changes (the index holds node positions):
        // float32 where a float16 layer computes attention in float32 (TorchScript's sdpa).
        let types = ChannelFinder(graph: graph)
        let anchorTypes = Dictionary(uniqueKeysWithValues: layers.map { layer in
            (layer, (attention: types.nearestElementType(of: layout.layers[layer].attentionOutput) ?? floatType,
                     residual: types.nearestElementType(of: layout.layers[layer].residualInput) ?? floatType))
        })
        for layer in layers {
            let description = layout.layers[layer]
            guard let oNode = nodesByName[description.o.node] else {
                throw HybridLayerError.missingNode(layer: layer, role: "o_proj", name: description.o.node)
            }
            builder.scope = "/slowfast/layers.\(layer)/cross_attn"
            builder.marks = [StringPair(RewriteMarks.pass, name), StringPair(RewriteMarks.layer, String(layer)),
                             StringPair(RewriteMarks.mode, options.mode.rawValue)]
            let result: (output: String, records: [ParameterRecord])
            switch options.mode {
            case .inPlace:
                result = try inPlace(layer: description, inputs: inputs, graph: graph, form: form, outputType: anchorTypes[layer]?.attention ?? floatType,
                                     companion: &companion, builder: &builder)
                // o_proj's node reads the attention output, or (int8) the node that quantizes
                // its input does: DynamicQuantizeLinear, or QDQ's QuantizeLinear.
                let reader = projectionNode(reading: description.attentionOutput, from: oNode, producers: producers)
                guard let reader, let slot = reader.inputs.firstIndex(of: description.attentionOutput) else {
                    throw HybridLayerError.missingNode(layer: layer, role: "o_proj reading the attention output", name: description.o.node)
                }
                builder.insert(into: graph, before: reader)
                reader.inputs[slot] = result.output
                changes.append(.hybridLayer(layer: layer, oProjection: description.o.node))
                if let change = kvStorageChange(description, records: result.records) { changes.append(change) }
            case .insert:
                result = try insertBlock(layer: description, inputs: inputs, form: form,
                                         residualType: anchorTypes[layer]?.residual ?? floatType, builder: &builder)
                let residual = description.residualInput
                let firstUse = graph.index().consumers(of: residual).first
                // Every existing reader of the layer's input now reads the block's output
                // (not the shared nodes this pass added, which read positions from it).
                for node in graph.nodes where node.metadata(RewriteMarks.pass) != name {
                    for slot in node.inputs.indices where node.inputs[slot] == residual { node.inputs[slot] = result.output }
                }
                builder.insert(into: graph, before: firstUse)
                changes.append(.crossAttentionBlock(layer: layer))
            }
            parameters += result.records
        }
        try graph.sortTopologically()
        var companions: [CompanionModel] = []
        if var encoder = companion {
            let built = encoder.finish()
            companions.append(built)
            changes.append(.companionModel(role: built.role, inputs: built.model.graph.inputs.compactMap { $0.name },
                                           outputs: built.model.graph.outputs.compactMap { $0.name }))
        }
        return PassResult(changed: true, parameters: parameters, changes: changes, companions: companions)
    }

    public func ensures(_ model: Model, _ result: PassResult) throws {
        let marked = HybridLayerPass.hybridLayers(in: model)
        for layer in Set(options.layers) where marked[layer] != options.mode.rawValue {
            throw PassContractError("layer \(layer) has no \(options.mode.rawValue) nodes")
        }
        let initializers = Set(model.graph.initializers.compactMap(\.name))
        for record in result.parameters where !initializers.contains(record.onnxName) {
            throw PassContractError("parameter '\(record.onnxName)' is in the weight map but not in the graph")
        }
        let inputs = Set(model.graph.inputs.compactMap(\.name))
        var required = [SlowTokenInputs.slowTokensMask, SlowTokenInputs.queryExclude]
        switch options.slowKV {
        case .inline: required.append(SlowTokenInputs.slowTokens)
        case .inputs: required += Set(options.layers).sorted().flatMap { [SlowTokenInputs.slowKey($0), SlowTokenInputs.slowValue($0)] }
        }
        for name in required where !inputs.contains(name) {
            throw PassContractError("input '\(name)' is missing")
        }
        // Every input must be fed by the caller: an initializer of the same name would be a
        // default that onnxruntime-genai never overrides.
        for tensor in model.graph.initializers where tensor.name.map(required.contains) == true {
            throw PassContractError("input '\(tensor.name ?? "")' has an initializer behind it")
        }
        if options.slowKV == .inputs {
            guard let companion = result.companions.first, companion.role == SlowKVEncoder.role else {
                throw PassContractError("no slow K/V companion model was built")
            }
            let outputs = Set(companion.model.graph.outputs.compactMap(\.name))
            for layer in Set(options.layers) where !outputs.isSuperset(of: [SlowTokenInputs.presentKey(layer), SlowTokenInputs.presentValue(layer)]) {
                throw PassContractError("the companion model lacks layer \(layer)'s slow keys or values")
            }
        }
    }

    /// The layers a previous rewrite made hybrid, with their mode, read from the marks on
    /// the nodes it added (claims the graph agrees with: `Graph.hybridLayerClaims`).
    public static func hybridLayers(in model: Model) -> [Int: String] {
        Dictionary(model.graph.hybridLayerClaims().filter { $0.doubt == nil }.map { ($0.layer, $0.mode) }, uniquingKeysWith: { a, _ in a })
    }

    /// The model's float type (float32, float16 or bfloat16); new nodes compute in float32.
    private var floatType: ElementType { ElementType(rawValue: layout.floatType) ?? .float }

    /// The query after RoPE as float32 [batch, heads, seq, head_dim].
    private func queryAfterRoPE(_ layer: LayerDescription, builder: inout GraphBuilder) throws -> String {
        switch layer.query {
        case .tensor(let name):
            return builder.toFloat(name, from: floatType, "query/float")
        case .headsMerged(let name):
            let dims = layout.dimensions
            let heads = builder.reshape(name, to: [0, 0, Int64(dims.numHeads), Int64(dims.headDim)], "query/heads")
            return builder.transpose(builder.toFloat(heads, from: floatType, "query/float"), perm: [0, 2, 1, 3], "query/to_bhld")
        case .fused(let rotary):
            return try RotaryReproduction.query(rotary, dims: layout.dimensions, floatType: floatType, builder: &builder)
        }
    }

    private func inPlace(layer: LayerDescription, inputs: SlowTokenInputs, graph: Graph, form: CrossAttentionForm, outputType: ElementType,
                         companion: inout SlowKVEncoder?,
                         builder: inout GraphBuilder) throws -> (output: String, records: [ParameterRecord]) {
        let dims = layout.dimensions
        let prefix = "model.layers.\(layer.index).self_attn"
        let key = try CanonicalProjection(layer.k, in: graph, layer: layer.index, role: "k_proj")
        let value = try CanonicalProjection(layer.v, in: graph, layer: layer.index, role: "v_proj")
        guard key.outFeatures == dims.kvWidth, value.outFeatures == dims.kvWidth, key.inFeatures == dims.hiddenSize else {
            throw HybridLayerError.badWeightShape(layer: layer.index, role: "k_proj", name: layer.k.weight,
                                                  shape: [Int64(key.outFeatures), Int64(key.inFeatures)],
                                                  expected: "[\(dims.kvWidth), \(dims.hiddenSize)] in PyTorch layout")
        }
        // PyTorch names of k_proj and v_proj: a packed tensor's parts name them one by one; a
        // tensor packed in PyTorch itself (Phi-3's qkv_proj) is named with its row block, or
        // (InternLM2's grouped wqkv) with each of its strided row blocks.
        let canonical = canonicalParameters()
        func pytorchName(_ onnx: String?, _ projection: ProjectionWeight, role: String, suffix: String) -> String {
            if let onnx, let entry = canonical[onnx], entry.transform.parts == nil {
                guard projection.outputStart != nil, let count = projection.outputCount else { return entry.canonicalName }
                return projection.outputRanges(total: count).map { "\(entry.canonicalName)[\($0.lowerBound):\($0.upperBound)]" }
                    .joined(separator: ", ")
            }
            return "model.layers.\(layer.index).self_attn.\(role)_proj.\(suffix)"
        }
        let kName = pytorchName(layer.k.weight, layer.k, role: "k", suffix: "weight"), vName = pytorchName(layer.v.weight, layer.v, role: "v", suffix: "weight")
        let kBias = pytorchName(layer.k.bias, layer.k, role: "k", suffix: "bias"), vBias = pytorchName(layer.v.bias, layer.v, role: "v", suffix: "bias")

        let query = try queryAfterRoPE(layer, builder: &builder)
        let attentionOutput = builder.toFloat(layer.attentionOutput, from: floatType, "attention_output/float")
        let hasBias = key.bias != nil || value.bias != nil
        let kvBias = hasBias ? (key.bias ?? [Float](repeating: 0, count: dims.kvWidth)) + (value.bias ?? [Float](repeating: 0, count: dims.kvWidth))
                             : [Float](repeating: 0, count: 2 * dims.kvWidth)
        let kvWeightName = "\(prefix).cross_attn_kv_proj.weight", kvBiasName = "\(prefix).cross_attn_kv_proj.bias"
        var keys: String, values: String
        var kvRecords: (weight: String, bias: String)?
        var quantizedKV: (storage: ProjectionStorage, sources: (codes: [String], scales: [String]))?
        if var encoder = companion {
            // K/V come in as inputs; the companion model computes them once per generation.
            encoder.addLayer(layer.index, norm: try copiedInputNorm(layer, graph: graph, canonical: canonical),
                             kvWeight: try key.weight() + value.weight(), kvBias: kvBias, kvWeightName: kvWeightName, kvBiasName: kvBiasName,
                             kvRule: "concat(\(kName), \(vName))",
                             biasRule: hasBias ? "concat(\(kBias), \(vBias))" : "zeros (k_proj and v_proj have no bias)",
                             biasKind: hasBias ? .derived : .new)
            companion = encoder
            keys = builder.toFloat(SlowTokenInputs.slowKey(layer.index), from: floatType, "slow_keys/float")
            values = builder.toFloat(SlowTokenInputs.slowValue(layer.index), from: floatType, "slow_values/float")
        } else {
            guard let slowTokens = inputs.slowTokens else { throw PassContractError("inline K/V without slow_tokens") }
            // The layer's input norm; without one (OLMo-2) the slow tokens enter kv_proj as the
            // layer's own hidden states enter k_proj and v_proj: un-normed.
            var normalised = slowTokens
            if let norm = layer.inputNorm {
                // RMSNorm, or a LayerNorm (StableLM, Cohere) with its bias where it has one.
                let normWeight = builder.toFloat(norm.weight, from: floatType, "slow_norm/weight_float")
                let bias = norm.isCentered ? norm.bias.map { builder.toFloat($0, from: floatType, "slow_norm/bias_float") } : nil
                normalised = builder.norm(slowTokens, weight: normWeight, bias: bias, epsilon: norm.epsilon, centered: norm.isCentered, "slow_norm")
            }
            // A MatMul-operand export's k/v weights are copied row by row at write time;
            // others are read and transposed here.
            // k_proj and v_proj quantized alike by MatMulNBits: kv_proj is their rows, in the
            // same form (`--new-weights as-model`, the default); otherwise float values.
            var joined: (any JoinedQuantizedProjections)?
            if options.newWeights == .asModel {
                joined = try JoinedBlockwiseProjections(key, value, graph: graph)
                if joined == nil { joined = try JoinedLinearProjections(key, value, graph: graph) }
            }
            let kv: (output: String, weight: String, bias: String?)
            if let joined {
                let made = builder.quantizedLinear(normalised, joined, modelType: floatType, bias: kvBias, weightName: kvWeightName,
                                                   biasName: kvBiasName, "kv_proj")
                quantizedKV = (made.storage, joined.sources)
                kv = (made.output, made.weight, made.bias)
            } else if let stacked = StackedInputMajorProjections(key, value, type: builder.parameterType) {
                kv = builder.linear(normalised, storedWeight: stacked, outFeatures: 2 * dims.kvWidth, inFeatures: dims.hiddenSize,
                                    bias: kvBias, weightName: kvWeightName, biasName: kvBiasName, "kv_proj")
            } else {
                kv = builder.linear(normalised, canonicalWeight: try key.weight() + value.weight(), outFeatures: 2 * dims.kvWidth,
                                    inFeatures: dims.hiddenSize, bias: kvBias, weightName: kvWeightName, biasName: kvBiasName, "kv_proj")
            }
            keys = builder.splitHeads(builder.slice(kv.output, axis: -1, start: 0, end: Int64(dims.kvWidth), "k"),
                                      heads: dims.numKVHeads, headDim: dims.headDim, "k")
            values = builder.splitHeads(builder.slice(kv.output, axis: -1, start: Int64(dims.kvWidth), end: Int64(2 * dims.kvWidth), "v"),
                                        heads: dims.numKVHeads, headDim: dims.headDim, "v")
            kvRecords = (kv.weight, kv.bias!)
        }
        keys = try normedLikeOwnKeys(keys, layer: layer, graph: graph, builder: &builder)
        // The layer's own score factor (a model may scale by other than 1/√hd): the slow keys
        // are scored as the layer scores its own keys.
        let attended = builder.queriedCrossAttention(query: query, keys: keys, values: values, inputs: inputs,
                                                     heads: dims.numHeads, kvHeads: dims.numKVHeads, headDim: dims.headDim,
                                                     form: form, scale: layer.attentionScale, softcap: layer.attentionSoftcap)

        // g = tanh(w_g · A_sa + b_g) · tanh(α), one scalar per token.
        let attentionWidth = dims.numHeads * dims.headDim
        var random = SeededRandom(seed: options.seed &+ UInt64(layer.index))
        let gateWeight = random.normal(count: attentionWidth, std: options.initStd)
        let gate = builder.linear(attentionOutput, canonicalWeight: gateWeight, outFeatures: 1, inFeatures: attentionWidth,
                                  bias: [0], weightName: "\(prefix).cross_attn_gate_proj.0.weight",
                                  biasName: "\(prefix).cross_attn_gate_proj.0.bias", "gate_proj")
        let alpha = builder.parameter(floats: [0], dims: [1], name: "\(prefix).cross_attn_warm_up_gate")
        let gateValue = builder.op("Mul", [builder.op("Tanh", [gate.output], "gate/tanh"), builder.op("Tanh", [alpha.value], "warm_up/tanh")], "gate")
        let scaled = builder.op("Mul", [attended, gateValue], "gated")
        let masked = builder.op("Mul", [scaled, inputs.queryMask], "query_masked")
        // Added in the attention output's type (the model's, or float32 where the layer upcasts
        // inside attention): at α = 0 the delta is exactly 0, so A_sa passes unchanged.
        let output = builder.op("Add", [layer.attentionOutput, builder.fromFloat(masked, to: outputType, "delta/model_type")], "attention_plus_slow")
        builder.mark(output, RewriteMarks.passthrough, "0")

        var records: [ParameterRecord] = []
        if let kvRecords, let quantizedKV {
            // Rows of the model's own codes, scales and zero points: the same bytes.
            let (codes, scales) = quantizedKV.sources
            records += [
                ParameterRecord(onnxName: kvRecords.weight, canonicalName: kvWeightName, kind: .derived,
                                transform: ParameterTransform(transpose: quantizedKV.storage.storedTransposed, quantization: quantizedKV.storage),
                                initRule: "concat(\(kName), \(vName)) as stored: rows of \(codes.joined(separator: ", "))"),
            ]
            // The storage's scales and zero points, named after kv_proj's weight.
            for (tensor, suffix) in quantizedKV.storage.parameterTensors {
                records.append(ParameterRecord(onnxName: tensor, canonicalName: tensor, kind: .derived,
                                               initRule: suffix == "scales" ? "rows of \(scales.joined(separator: ", "))"
                                                   : "rows of k_proj's and v_proj's zero points (the default where one has none)"))
            }
        }
        if let kvRecords {
            if quantizedKV == nil {
                records.append(ParameterRecord(onnxName: kvRecords.weight, canonicalName: kvWeightName, kind: .derived,
                                               transform: .transposed, initRule: "concat(\(kName), \(vName))"))
            }
            records += [
                ParameterRecord(onnxName: kvRecords.bias, canonicalName: kvBiasName, kind: hasBias ? .derived : .new,
                                initRule: hasBias ? "concat(\(kBias), \(vBias))" : "zeros (k_proj and v_proj have no bias)"),
            ]
        }
        records += [
            ParameterRecord(onnxName: gate.weight, canonicalName: "\(prefix).cross_attn_gate_proj.0.weight", kind: .new,
                            transform: .transposed, initRule: "normal(0, \(options.initStd), seed \(options.seed &+ UInt64(layer.index)))"),
            ParameterRecord(onnxName: gate.bias!, canonicalName: "\(prefix).cross_attn_gate_proj.0.bias", kind: .new, initRule: "zeros"),
            ParameterRecord(onnxName: alpha.stored, canonicalName: "\(prefix).cross_attn_warm_up_gate", kind: .new, initRule: "zeros"),
        ]
        return (output, records)
    }

    /// The slow keys normed as the layer norms its own keys before scoring, where it does. A
    /// layer that norms its keys per head before RoPE (Qwen3's k_norm) scores queries that were
    /// normed the same way: the slow keys [B, G, N, hd] go through the same k_norm (weight and
    /// epsilon, over head_dim), so they live where the layer's queries look (docs/DESIGN.md §1).
    /// OLMo-2's k_norm spans every kv head at once (kv_heads·head_dim, before the head split):
    /// the slow keys are normed over the same width.
    private func normedLikeOwnKeys(_ keys: String, layer: LayerDescription, graph: Graph, builder: inout GraphBuilder) throws -> String {
        let dims = layout.dimensions
        guard let kNorm = layer.kNorm else { return keys }
        let weight = builder.toFloat(kNorm.weight, from: floatType, "k_norm/weight_float")
        let width = graph.initializer(named: kNorm.weight).map { Int($0.dims.reduce(1, *)) } ?? dims.headDim
        switch width {
        case dims.headDim:
            return builder.rmsNorm(keys, weight: weight, epsilon: kNorm.epsilon, "k_norm")
        case dims.kvWidth:
            let merged = builder.reshape(builder.transpose(keys, perm: [0, 2, 1, 3], "k_norm/to_bnhd"), to: [0, 0, Int64(dims.kvWidth)], "k_norm/merge")
            return builder.splitHeads(builder.rmsNorm(merged, weight: weight, epsilon: kNorm.epsilon, "k_norm"),
                                      heads: dims.numKVHeads, headDim: dims.headDim, "k_norm")
        default:
            throw HybridLayerError.badWeightShape(layer: layer.index, role: "k_norm", name: kNorm.weight, shape: [Int64(width)],
                                                  expected: "[\(dims.headDim)] (per head) or [\(dims.kvWidth)] (every kv head)")
        }
    }

    /// The layer's input norm as the slow K/V companion stores it: what the decoder's norm
    /// stores (Gemma: 1 + w), named the same way.
    private func copiedInputNorm(_ layer: LayerDescription, graph: Graph, canonical: [String: CanonicalParameter]) throws -> CopiedNorm? {
        guard let norm = layer.inputNorm else { return nil }
        func values(_ name: String) throws -> [Float] {
            guard let tensor = graph.initializer(named: name) else {
                throw HybridLayerError.missingInitializer(layer: layer.index, role: "input norm", name: name)
            }
            return try tensor.floatValues()
        }
        return CopiedNorm(weight: try values(norm.weight), name: canonical[norm.weight]?.canonicalName ?? norm.weight,
                          epsilon: norm.epsilon, transform: canonical[norm.weight]?.transform ?? .identity,
                          bias: try norm.bias.map { (try values($0), canonical[$0]?.canonicalName ?? $0) },
                          centered: norm.isCentered)
    }

    /// Insert mode: x <- x + tanh(a_attn)·m·XAttn(RMSNorm(x), S); x <- x + tanh(a_ff)·m·FFN(RMSNorm(x)).
    /// Own projections (normal init), norms of ones, gates at 0; no RoPE (docs/DESIGN.md §2).
    private func insertBlock(layer: LayerDescription, inputs: SlowTokenInputs, form: CrossAttentionForm, residualType: ElementType,
                             builder: inout GraphBuilder) throws -> (output: String, records: [ParameterRecord]) {
        let dims = layout.dimensions
        let d = dims.hiddenSize, width = dims.numHeads * dims.headDim
        let ffn = dims.intermediateSize ?? 4 * d
        let prefix = "model.layers.\(layer.index).cross_attn_block"
        var random = SeededRandom(seed: options.seed &+ 1000 &+ UInt64(layer.index))
        var records: [ParameterRecord] = []
        let std = options.initStd
        let normalRule = "normal(0, \(std), seed \(options.seed &+ 1000 &+ UInt64(layer.index)))"

        // The block's own norms take the layer's epsilon (any of its norms where it has no input norm).
        let normEpsilon = (layer.inputNorm ?? layer.attentionOutputNorm ?? layer.postAttentionNorm ?? layer.mlpOutputNorm)?.epsilon ?? 1e-6
        func norm(_ input: String, _ name: String, _ label: String, builder: inout GraphBuilder) -> String {
            let weight = builder.parameter(floats: [Float](repeating: 1, count: d), dims: [Int64(d)], name: "\(prefix).\(name).weight")
            records.append(ParameterRecord(onnxName: weight.stored, canonicalName: "\(prefix).\(name).weight", kind: .new, initRule: "ones"))
            return builder.rmsNorm(input, weight: weight.value, epsilon: normEpsilon, label)
        }
        func project(_ input: String, _ name: String, out: Int, in inFeatures: Int, builder: inout GraphBuilder) -> String {
            let weights = random.normal(count: out * inFeatures, std: std)
            let result = builder.linear(input, canonicalWeight: weights, outFeatures: out, inFeatures: inFeatures, bias: nil,
                                        weightName: "\(prefix).\(name).weight", biasName: nil, name)
            records.append(ParameterRecord(onnxName: result.weight, canonicalName: "\(prefix).\(name).weight", kind: .new,
                                           transform: .transposed, initRule: normalRule))
            return result.output
        }
        func gate(_ name: String, builder: inout GraphBuilder) -> String {
            let value = builder.parameter(floats: [0], dims: [1], name: "\(prefix).\(name)")
            records.append(ParameterRecord(onnxName: value.stored, canonicalName: "\(prefix).\(name)", kind: .new, initRule: "zeros"))
            return builder.op("Tanh", [value.value], "\(name)/tanh")
        }

        let x = builder.toFloat(layer.residualInput, from: floatType, "residual/float")
        let attnInput = norm(x, "input_layernorm", "input_norm", builder: &builder)
        let q = project(attnInput, "cross_attn.q_proj", out: width, in: d, builder: &builder)
        let qHeads = builder.transpose(builder.reshape(q, to: [0, 0, Int64(dims.numHeads), Int64(dims.headDim)], "q/heads"),
                                       perm: [0, 2, 1, 3], "q/to_bhld")
        guard let slowTokens = inputs.slowTokens else { throw HybridLayerError.slowKVInputsNeedInPlace }
        let k = builder.splitHeads(project(slowTokens, "cross_attn.k_proj", out: dims.kvWidth, in: d, builder: &builder),
                                   heads: dims.numKVHeads, headDim: dims.headDim, "k")
        let v = builder.splitHeads(project(slowTokens, "cross_attn.v_proj", out: dims.kvWidth, in: d, builder: &builder),
                                   heads: dims.numKVHeads, headDim: dims.headDim, "v")
        let attended = builder.queriedCrossAttention(query: qHeads, keys: k, values: v, inputs: inputs,
                                                     heads: dims.numHeads, kvHeads: dims.numKVHeads, headDim: dims.headDim,
                                                     form: form)
        let o = project(attended, "cross_attn.o_proj", out: d, in: width, builder: &builder)
        let attnGate = gate("cross_attn_attn_gate", builder: &builder)
        let attnDelta = builder.op("Mul", [builder.op("Mul", [o, attnGate], "attn/gated"), inputs.queryMask], "attn/masked")
        let afterAttention = builder.op("Add", [x, attnDelta], "attn/residual")

        let mlpInput = norm(afterAttention, "post_attention_layernorm", "mlp_norm", builder: &builder)
        let gateProj = project(mlpInput, "mlp.gate_proj", out: ffn, in: d, builder: &builder)
        let upProj = project(mlpInput, "mlp.up_proj", out: ffn, in: d, builder: &builder)
        let silu = builder.op("Mul", [gateProj, builder.op("Sigmoid", [gateProj], "mlp/sigmoid")], "mlp/silu")
        let down = project(builder.op("Mul", [silu, upProj], "mlp/product"), "mlp.down_proj", out: d, in: ffn, builder: &builder)
        let mlpGate = gate("cross_attn_mlp_gate", builder: &builder)
        let mlpDelta = builder.op("Mul", [builder.op("Mul", [down, mlpGate], "mlp/gated"), inputs.queryMask], "mlp/masked")
        let afterMLP = builder.op("Add", [afterAttention, mlpDelta], "mlp/residual")
        let output = builder.fromFloat(afterMLP, to: residualType, "residual/model_type")
        // The residual stream runs x -> x + attention delta -> + MLP delta: each step passes
        // its first input through (in the model's structure), for discovery of the output.
        for value in [x, afterAttention, afterMLP, output] { builder.mark(value, RewriteMarks.passthrough, "0") }
        return (output, records)
    }

    /// How the graph tells each token's position, read from the first chosen layer: the
    /// fused attention's `seqlens_k`, else a `position_ids` input [batch, seq], else the
    /// columns of a 2-D `attention_mask`, else 0...L−1. Multimodal RoPE's `position_ids`
    /// [3, batch, seq] (Qwen2-VL) gives a token three positions, shared by an image's tokens,
    /// so there the token's index in the sequence counts (docs/DESIGN.md §3).
    private func positionSource(_ model: Model, first: LayerDescription) -> QueryPositions {
        if case .fused(let rotary) = first.query { return .seqlens(seqlensK: rotary.seqlensK, query: first.attentionOutput) }
        let inputs = Dictionary(model.graph.inputs.compactMap { info in info.name.map { ($0, info) } }, uniquingKeysWith: { a, _ in a })
        if let ids = inputs["position_ids"] {
            let rank: Int? = if case .tensor(_, let shape?)? = ids.type?.kind { shape.dims.count } else { nil }
            if rank != 3 { return .positionIDs("position_ids") }
        }
        if let mask = inputs["attention_mask"], case .tensor(_, let shape?)? = mask.type?.kind, shape.dims.count == 2 {
            return .attentionMaskColumns(mask: "attention_mask", query: first.residualInput)
        }
        // The residual stream entering the layer: [batch, seq, d], defined before any block
        // insert mode adds.
        return .sequence(first.residualInput)
    }

    /// Where k_proj or v_proj is quantized, how kv_proj is stored (the plan says so): as the
    /// model stores them when the pass recorded kv_proj quantized, else in float, and why.
    private func kvStorageChange(_ layer: LayerDescription, records: [ParameterRecord]) -> ModelChange? {
        guard let storage = layer.k.storage ?? layer.v.storage else { return nil }
        if records.contains(where: { $0.canonicalName.hasSuffix(".cross_attn_kv_proj.weight") && $0.transform.quantization != nil }) {
            return .kvProjectionStorage(layer: layer.index, storage: storage.summary, exact: true)
        }
        let why = options.newWeights == .float ? "--new-weights float"
            : options.slowKV == .inputs ? "the companion model computes slow K/V in float"
            : "k_proj and v_proj are stored as \(storage.summary), whose rows do not join exactly"
        return .kvProjectionStorage(layer: layer.index, storage: why, exact: false)
    }

    /// The node of a projection whose result `root` is that reads `input`: `root` itself, or
    /// (a quantized projection) the node a few steps upstream that quantizes the input
    /// (DynamicQuantizeLinear before MatMulInteger, QuantizeLinear of a QDQ pair).
    private func projectionNode(reading input: String, from root: Node, producers: [String: Node]) -> Node? {
        var frontier = [root]
        for _ in 0 ..< 4 {
            if let found = frontier.first(where: { $0.inputs.contains(input) }) { return found }
            frontier = frontier.flatMap { $0.inputs.compactMap { producers[$0] } }
        }
        return nil
    }

    private func canonicalParameters() -> [String: CanonicalParameter] {
        Dictionary(layout.parameters.map { ($0.onnxName, $0) }, uniquingKeysWith: { first, _ in first })
    }
}
