import SlowFastIR

/// The PyTorch names and transforms of the weights discovery identified, and the storage helpers
/// every step reads projections with.
extension LayerDiscovery {
    /// The storage of a projection's weight, its errors as this layer's.
    static func storage(of node: Node, weight: String, matcher: PatternMatcher,
                        fail: (String) -> LayerDiscoveryError) throws -> ProjectionStorage? {
        do {
            return try ProjectionStorage.read(node: node, weight: weight, matcher: matcher)
        } catch let error as UnsupportedStorage {
            throw fail(error.description)
        }
    }

    /// The float type a quantized projection computes in: its scales' type.
    static func floatTypeOf(_ storage: ProjectionStorage, index: GraphIndex) -> Int32? {
        switch storage {
        case .blockwise(let q): return index.initializer(q.scales)?.dataType
        case .linear(let q): return index.initializer(q.scale)?.dataType
        }
    }

    /// A projection's whole output width, whatever its storage.
    static func outputWidth(_ projection: ProjectionWeight, index: GraphIndex) -> Int? {
        if let storage = projection.storage { return storage.shape.outFeatures }
        guard let weight = index.initializer(projection.weight), weight.dims.count == 2 else { return nil }
        return Int(weight.dims[1])
    }

    /// The language-model head (a MatMul by a [hidden, vocab] constant) and the final norm
    /// before it.
    static func headParameters(_ dims: ModelDimensions, matcher: PatternMatcher, adapter: Adapter, file: String,
                               known: Set<String>, normOffset: Double? = nil) -> [CanonicalParameter] {
        guard let vocab = dims.vocabSize else { return [] }
        let index = matcher.index
        // The last projection from hidden to vocab, in any storage.
        let projection = Pattern.op("MatMul", [.value("input"), .constant(capture: "weight", value: nil, tolerance: 0)])
        let roots = PatternMatcher.rootOps(projection) ?? []
        var found: (input: String, weight: ProjectionWeight)?
        for node in index.graph.nodes.reversed() where roots.contains(node.op) {
            guard let output = node.outputs.first, case .success(let match) = matcher.match(projection, at: output),
                  let input = match["input"], let weight = match["weight"] else { continue }
            let storage = try? ProjectionStorage.read(node: node, weight: weight, matcher: matcher)
            let candidate = ProjectionWeight(weight: weight, layout: .inputMajor, node: node.name ?? "", storage: storage)
            let shape = storage.map { [Int64($0.shape.inFeatures), Int64($0.shape.outFeatures)] } ?? index.initializer(weight)?.dims
            if shape == [Int64(dims.hiddenSize), Int64(vocab)] {
                found = (input, candidate)
                break
            }
        }
        guard let (headInput, head) = found else { return [] }
        var result: [CanonicalParameter] = []
        if !known.contains(head.weight) {
            result.append(CanonicalParameter(onnxName: head.weight, canonicalName: "lm_head.weight", transform: weightTransform(head)))
            for (tensor, suffix) in head.storage?.parameterTensors ?? [] where !known.contains(tensor) {
                result.append(CanonicalParameter(onnxName: tensor, canonicalName: "lm_head.weight.\(suffix)", transform: .identity))
            }
        }
        if let norm = try? norm(at: headInput, matcher: matcher, adapter: adapter, file: file, layer: dims.numLayers, role: "final norm"),
           index.initializer(norm.weight) != nil, !known.contains(norm.weight) {
            result.append(CanonicalParameter(onnxName: norm.weight, canonicalName: "model.norm.weight", transform: ParameterTransform(offset: normOffset)))
            if let bias = norm.bias, index.initializer(bias) != nil, !known.contains(bias) {
                result.append(CanonicalParameter(onnxName: bias, canonicalName: "model.norm.bias", transform: .identity))
            }
        }
        return result
    }

    /// PyTorch names for the weights discovery identified.
    /// A packed qkv weight in `slicedPacked` is sliced by the graph itself, so the PyTorch
    /// module was packed (Phi-3's qkv_proj); one a fused op reads whole was packed by the
    /// exporter from separate q/k/v projections (its parts). `normOffset` is 1 where the norm
    /// weights store 1 + w (Gemma).
    static func canonicalParameters(_ layers: [LayerDescription], embedding: String?, index: GraphIndex,
                                    slicedPacked: Set<String> = [], normOffset: Double? = nil) -> [CanonicalParameter] {
        var result: [CanonicalParameter] = []
        var seen = Set<String>()
        func add(_ onnx: String?, _ canonical: String, _ transform: ParameterTransform) {
            guard let onnx, !onnx.isEmpty, index.initializer(onnx) != nil, seen.insert(onnx).inserted else { return }
            result.append(CanonicalParameter(onnxName: onnx, canonicalName: canonical, transform: transform))
        }
        // A quantized weight's scales and zero points are part of its storage: named after it.
        func addStorage(_ projection: ProjectionWeight, _ canonical: String) {
            for (tensor, suffix) in projection.storage?.parameterTensors ?? [] { add(tensor, "\(canonical).\(suffix)", .identity) }
        }
        add(embedding, "model.embed_tokens.weight", .identity)
        // Norm weights as the graph stores them: w, or (Gemma) the folded 1 + w.
        let norm = ParameterTransform(offset: normOffset)
        for layer in layers {
            let prefix = "model.layers.\(layer.index)"
            add(layer.inputNorm?.weight, "\(prefix).input_layernorm.weight", norm)
            add(layer.inputNorm?.bias, "\(prefix).input_layernorm.bias", .identity)
            // With a norm after o_proj (Gemma 2/3, OLMo-2), that one is post_attention_layernorm
            // and the norm before the MLP is pre_feedforward_layernorm.
            add(layer.attentionOutputNorm?.weight, "\(prefix).post_attention_layernorm.weight", norm)
            let beforeMLP = "\(prefix).\(layer.attentionOutputNorm == nil ? "post_attention" : "pre_feedforward")_layernorm"
            add(layer.postAttentionNorm?.weight, "\(beforeMLP).weight", norm)
            add(layer.postAttentionNorm?.bias, "\(beforeMLP).bias", .identity)
            add(layer.mlpOutputNorm?.weight, "\(prefix).post_feedforward_layernorm.weight", norm)
            add(layer.qNorm?.weight, "\(prefix).self_attn.q_norm.weight", norm)
            add(layer.kNorm?.weight, "\(prefix).self_attn.k_norm.weight", norm)
            let projections = [("q", layer.q), ("k", layer.k), ("v", layer.v)]
            if layer.q.weight == layer.k.weight, slicedPacked.contains(layer.q.weight) {
                add(layer.q.weight, "\(prefix).self_attn.qkv_proj.weight", layer.q.layout == .inputMajor ? .transposed : .identity)
                add(layer.q.bias, "\(prefix).self_attn.qkv_proj.bias", .identity)
            } else if layer.q.weight == layer.k.weight {
                // One packed tensor: its q, k and v rows are the three PyTorch projections.
                let ordered = projections.sorted { ($0.1.outputStart ?? 0) < ($1.1.outputStart ?? 0) }
                func parts(_ suffix: String) -> [ParameterTransform.Part]? {
                    let parts = ordered.compactMap { role, projection in
                        projection.outputCount.map { ParameterTransform.Part(name: "\(prefix).self_attn.\(role)_proj.\(suffix)", rows: $0) }
                    }
                    return parts.count == 3 ? parts : nil
                }
                add(layer.q.weight, "\(prefix).self_attn.qkv_proj.weight", weightTransform(layer.q, parts: parts("weight")))
                addStorage(layer.q, "\(prefix).self_attn.qkv_proj.weight")
                add(layer.q.bias, "\(prefix).self_attn.qkv_proj.bias", ParameterTransform(parts: parts("bias")))
            } else {
                for (role, projection) in projections {
                    add(projection.weight, "\(prefix).self_attn.\(role)_proj.weight", weightTransform(projection))
                    addStorage(projection, "\(prefix).self_attn.\(role)_proj.weight")
                    add(projection.bias, "\(prefix).self_attn.\(role)_proj.bias", .identity)
                }
            }
            add(layer.o.weight, "\(prefix).self_attn.o_proj.weight", weightTransform(layer.o))
            addStorage(layer.o, "\(prefix).self_attn.o_proj.weight")
            for (role, projection) in layer.mlp.sorted(by: { $0.key < $1.key }) {
                add(projection.weight, "\(prefix).mlp.\(role).weight", weightTransform(projection))
                addStorage(projection, "\(prefix).mlp.\(role).weight")
            }
        }
        return result
    }

    /// How a projection's stored weight is made from `nn.Linear.weight` [out, in]: transposed
    /// where it is stored [in, out] (a float or int8 MatMul operand; MatMulNBits stores rows
    /// per output), quantized where its storage is.
    static func weightTransform(_ projection: ProjectionWeight, parts: [ParameterTransform.Part]? = nil) -> ParameterTransform {
        let transpose = projection.storage?.storedTransposed ?? (projection.layout == .inputMajor)
        return ParameterTransform(transpose: transpose, parts: parts, quantization: projection.storage)
    }

    /// `parameters` under the names the export itself gives their modules, where the adapter
    /// says how to read them (`moduleName`) and the graph names every one: each parameter is
    /// `module.weight` (or `.bias`) of the one module whose nodes read it, less the prefix of
    /// the wrapper the exporter ran (the part before `model.layers.N.` of the layers' modules,
    /// which must be one prefix for all). A family whose modules are not LLaMA's (InternLM2's
    /// attention.wqkv, feed_forward.w1, tok_embeddings, output) keeps its own names; where the
    /// graph does not name every module, the names discovery gave stay, all of them.
    static func exportNamed(_ parameters: [CanonicalParameter], naming: LayerNumbering?, index: GraphIndex) -> [CanonicalParameter] {
        guard let naming, !parameters.isEmpty else { return parameters }
        var paths: [String] = []
        for parameter in parameters {
            let readers = index.consumers(of: parameter.onnxName)
            let modules = Set(readers.map { naming.capture(of: $0)?.split(separator: "/").joined(separator: ".") })
            guard parameter.transform.parts == nil, modules.count == 1, let module = modules.first ?? nil, !module.isEmpty,
                  let leaf = parameter.canonicalName.split(separator: ".").last else { return parameters }
            paths.append("\(module).\(leaf)")
        }
        var wrapper: String?
        for (parameter, path) in zip(parameters, paths) where parameter.canonicalName.hasPrefix("model.layers.") {
            let layer = parameter.canonicalName.split(separator: ".").prefix(3).joined(separator: ".") + "."
            guard let found = path.range(of: layer) else { return parameters }
            let prefix = String(path[..<found.lowerBound])
            guard prefix.isEmpty || prefix.hasSuffix("."), wrapper == nil || wrapper == prefix else { return parameters }
            wrapper = prefix
        }
        guard let wrapper, paths.allSatisfy({ $0.hasPrefix(wrapper) }) else { return parameters }
        let names = paths.map { String($0.dropFirst(wrapper.count)) }
        guard Set(names).count == names.count else { return parameters }
        return zip(parameters, names).map { CanonicalParameter(onnxName: $0.onnxName, canonicalName: $1, transform: $0.transform) }
    }
}
