import SlowFastIR
import Foundation

/// Why no layer description could be made.
public enum LayerDiscoveryError: Error, CustomStringConvertible {
    /// No adapter described the model; what each one found, closest first.
    case noAdapterMatched(file: String, findings: [AdapterFinding])
    /// An adapter found layers but could not describe one of them fully.
    case incompleteLayer(file: String, adapter: String, layer: Int, missing: String)
    case inconsistent(file: String, adapter: String, message: String)
    /// An adapter matched some layers' attention blocks but not this one's; its closest attempt.
    case unmatchedLayer(file: String, adapter: String, layer: Int, closest: MatchFailure?)
    /// The model's attention is of a kind no adapter can describe (multi-head latent attention).
    case unsupportedAttention(file: String, kind: String, evidence: String)

    /// What one adapter found, without the file name (for the "no adapter matched" list).
    var finding: AdapterFinding {
        switch self {
        case .noAdapterMatched(_, let findings):
            return findings.first ?? AdapterFinding(adapter: "", layers: 0, depth: 0, summary: "no adapter", detail: "no adapter")
        case .incompleteLayer(_, let adapter, let layer, let missing):
            return AdapterFinding(adapter: adapter, layers: layer + 1, depth: .max, summary: "layer \(layer): \(missing)",
                                  detail: "layer \(layer): \(missing)")
        case .inconsistent(_, let adapter, let message):
            return AdapterFinding(adapter: adapter, layers: 1, depth: .max, summary: message, detail: message)
        case .unmatchedLayer(_, let adapter, let layer, let closest):
            return AdapterFinding(adapter: adapter, layers: layer, depth: closest?.depth ?? 0,
                                  summary: "layer \(layer): its attention block does not match: \(closest?.plain ?? "no candidate o_proj")",
                                  detail: "layer \(layer): its attention block does not match (\(closest.map { "closest: \($0.description)" } ?? "no candidate o_proj"))")
        case .unsupportedAttention(_, let kind, let evidence):
            return AdapterFinding(adapter: "", layers: 0, depth: 0, summary: "\(kind) (\(evidence))", detail: "\(kind) (\(evidence))")
        }
    }

    /// One line of at most `AdapterFinding.lineLimit` characters: the closest adapter's finding
    /// in plain words (the whole text of every adapter's attempt is `explanation`).
    public var description: String {
        switch self {
        case .noAdapterMatched(let file, let findings):
            let tried = findings.count > 1 ? " (\(findings.count) tried; each: inspect --layers --explain)" : ""
            guard let closest = findings.first else { return "\(file): no adapter matched" }
            let which = findings.count > 1 ? "closest, \(closest.adapter)" : closest.adapter
            return AdapterFinding.line("\(file): no adapter matched; \(which): ", closest.summary, tried)
        case .incompleteLayer(let file, let adapter, let layer, let missing):
            return AdapterFinding.line("\(file): adapter '\(adapter)': layer \(layer): ", missing, "")
        case .inconsistent(let file, let adapter, let message):
            return AdapterFinding.line("\(file): adapter '\(adapter)': ", message, "")
        case .unmatchedLayer(let file, let adapter, _, _):
            return AdapterFinding.line("\(file): adapter '\(adapter)': ", finding.summary, "")
        case .unsupportedAttention(let file, let kind, let evidence):
            return AdapterFinding.line("\(file): \(kind) is not supported: ", evidence, "")
        }
    }

    /// Every adapter's attempt in full, one per line (`inspect --layers --explain`).
    public var explanation: String {
        switch self {
        case .noAdapterMatched(let file, let findings):
            return (["\(file): no adapter matched:"] + findings.map { "  \($0.adapter): \($0.detail)" }).joined(separator: "\n")
        case .incompleteLayer(let file, let adapter, _, _), .inconsistent(let file, let adapter, _),
             .unmatchedLayer(let file, let adapter, _, _):
            return "\(file): adapter '\(adapter)': \(finding.detail)"
        case .unsupportedAttention:
            return description
        }
    }
}

/// Finds each decoder layer's anchors with adapters: one algorithm for every adapter, in steps
/// (one file each under Discovery/):
///
/// 1. attention blocks: the adapter's `attention` pattern at every node output; each match
///    is one layer's o_proj, with captures for the projections, the query and the attention
///    output; layers numbered by node names, metadata, or graph order.
/// 2. per layer: projections (and the head layout their shapes agree on), rotary (the query
///    the attention uses), residual join, norms, MLP, scores (scale and soft-capping).
/// 3. the model: dims, the head, and the PyTorch name of every parameter.
public enum LayerDiscovery {
    /// Tries `adapters` in order and returns the first complete description. With one
    /// adapter, its own error is thrown; with several and none matching, what each found.
    /// A model that slowfast already rewrote is described as the original was: discovery
    /// reads through the hybrid layers' nodes (see `RewriteMarks.passthrough`).
    public static func discover(_ model: Model, adapters: [Adapter]) throws -> ModelLayout {
        try discover(model, loading: adapters.map { adapter in { adapter } })
    }

    /// `discover(_:adapters:)` with each adapter loaded only when discovery gets to it: the
    /// built-in adapters take longer to load than a model takes to match the first of them.
    public static func discover(_ model: Model, loading adapters: [() throws -> Adapter]) throws -> ModelLayout {
        let file = model.sourcePath ?? "model"
        if model.graph.hasRewriteMarks {
            let original = Model(graph: model.graph.bypassingHybridLayers(), origin: nil)
            original.sourcePath = model.sourcePath
            original.opsetImports = model.opsetImports
            original.irVersion = model.irVersion
            original.functions = model.functions
            return try discover(unmarked: original, adapters: adapters, file: file)
        }
        return try discover(unmarked: model, adapters: adapters, file: file)
    }

    private static func discover(unmarked model: Model, adapters: [() throws -> Adapter], file: String) throws -> ModelLayout {
        let matcher = PatternMatcher(graph: model.graph)
        var findings: [AdapterFinding] = []
        for load in adapters {
            do {
                return try describe(model, matcher: matcher, adapter: try load())
            } catch let error as LayerDiscoveryError {
                if adapters.count == 1 { throw error }
                findings.append(error.finding)
            }
        }
        // Attention of a kind no adapter describes is named, rather than each adapter's miss.
        if let refusal = unsupportedAttention(model, matcher: matcher, file: file) { throw refusal }
        throw LayerDiscoveryError.noAdapterMatched(file: file, findings: AdapterFinding.closestFirst(findings))
    }

    static func describe(_ model: Model, matcher: PatternMatcher, adapter: Adapter) throws -> ModelLayout {
        let file = model.sourcePath ?? "model"
        let index = matcher.index
        let numbered = try attentionBlocks(model, matcher: matcher, adapter: adapter, file: file)
        let mlpByInput = mlpMatches(adapter, matcher: matcher)
        var layers: [LayerDescription] = []
        var slicedPacked: Set<String> = []
        var dims: ModelDimensions?
        var floatType: Int32 = ElementType.float.rawValue
        for (number, match) in numbered {
            let site = LayerSite(file: file, adapter: adapter, matcher: matcher, match: match, number: number)
            let (layer, projections) = try describeLayer(site, numLayers: numbered.count, mlpMatches: mlpByInput)
            if let dims, dims != projections.dims {
                throw LayerDiscoveryError.inconsistent(file: file, adapter: adapter.name,
                                                       message: "layer \(number) has dims \(projections.dims), layer 0 has \(dims)")
            }
            dims = projections.dims
            floatType = projections.floatType ?? floatType
            if let packed = projections.slicedPacked { slicedPacked.insert(packed) }
            layers.append(layer)
        }
        guard var dimensions = dims else {
            throw LayerDiscoveryError.noAdapterMatched(file: file, findings: [
                AdapterFinding(adapter: adapter.name, layers: 0, depth: 0, summary: "0 layers", detail: "0 layers")])
        }
        if let gate = layers.first?.mlp["gate_proj"], let width = outputWidth(gate, index: index) {
            dimensions.intermediateSize = width
        } else if let packed = layers.first?.mlp["gate_up_proj"], let width = outputWidth(packed, index: index) {
            dimensions.intermediateSize = width / 2
        }
        let embedding = model.graph.nodes.first { $0.op == "Gather" && index.initializer($0.inputs.first ?? "")?.dims.count == 2 }
        if let table = embedding.flatMap({ index.initializer($0.inputs[0]) }), Int(table.dims[1]) == dimensions.hiddenSize {
            dimensions.vocabSize = Int(table.dims[0])
        }
        let normOffset = embedding.flatMap { gemmaNormOffset(embedding: $0, hidden: dimensions.hiddenSize, matcher: matcher) }
        var parameters = canonicalParameters(layers, embedding: embedding?.inputs.first, index: index, slicedPacked: slicedPacked,
                                             normOffset: normOffset)
        parameters += headParameters(dimensions, matcher: matcher, adapter: adapter, file: file, known: Set(parameters.map(\.onnxName)),
                                     normOffset: normOffset)
        parameters = exportNamed(parameters, naming: adapter.moduleNaming, index: index)
        return ModelLayout(adapter: adapter.name, dimensions: dimensions, layers: layers, floatType: floatType, parameters: parameters)
    }

    /// One layer through every step.
    static func describeLayer(_ site: LayerSite, numLayers: Int, mlpMatches: [String: Match]) throws
        -> (LayerDescription, AttentionProjections) {
        let projections = try projections(site, numLayers: numLayers)
        let fused = projections.fusedAttention
        let query = try query(site, fused: fused, attentionWidth: projections.dims.numHeads * projections.dims.headDim)
        guard let oNode = site.match.node("oNode"), let oOutput = oNode.outputs.first else { throw site.fail("no o_proj node captured") }
        let normed = try site.need("normedInput", "no normalised input feeding the projections")
        let residual = try residualJoin(site, oOutput: oOutput, normed: normed)
        let inputNorm = try inputNorm(site, normed: normed, residualInput: residual.residualInput)
        let mlp = try mlp(site, residual: residual, normed: normed, matches: mlpMatches)
        var layer = LayerDescription(
            index: site.number, residualInput: residual.residualInput, residualOutput: mlp.residualOutput, inputNorm: inputNorm,
            q: projections.q, k: projections.k, v: projections.v, query: query,
            attentionOutput: try site.need("attentionOutput", "no attention output before o_proj"), o: projections.o,
            attentionResidual: residual.attentionResidual, postAttentionNorm: residual.postNorm, mlp: mlp.projections,
            activationNodes: mlp.activationNodes,
            attentionScale: try attentionScale(site.match, fused: fused, matcher: site.matcher),
            qNorm: try headNorm("q", site.match, matcher: site.matcher), kNorm: try headNorm("k", site.match, matcher: site.matcher))
        layer.attentionOutputNorm = residual.attentionOutputNorm
        layer.mlpOutputNorm = mlp.outputNorm
        layer.attentionSoftcap = try softcap(site.match, fused: fused, matcher: site.matcher, fail: site.fail)
        return (layer, projections)
    }
}
