/// What earlier slowfast rewrites did to a model, read back from the marks its passes left
/// on the nodes they added (`RewriteMarks`): the hybrid layers and SReLU sites, each with the
/// parameters it owns. An initializer belongs to a layer or site when nodes of that layer or
/// site read it (directly) and no node of the original model does.
public struct RewriteSummary: Codable, Equatable, Sendable {
    public struct HybridLayer: Codable, Equatable, Sendable {
        public var layer: Int
        /// `in-place` or `insert`.
        public var mode: String
        public var parameters: [String]
    }

    public struct SReLUSite: Codable, Equatable, Sendable {
        /// The name of the activation node that was replaced.
        public var site: String
        public var parameters: [String]
    }

    public var hybridLayers: [HybridLayer]
    public var sreluSites: [SReLUSite]
    /// Marks that claim a hybrid layer the model does not hold (metadata anyone can write):
    /// what each claimed and why it is not believed. Absent when there are none.
    public var ignoredMarks: [String]?

    public init(model: Model) {
        let graph = model.graph
        let initializers = Set(graph.initializers.compactMap(\.name))
        // Initializers read by nodes of the original model.
        var readByOriginal = Set<String>()
        for node in graph.nodes where node.metadata(RewriteMarks.pass) == nil { readByOriginal.formUnion(node.inputs) }
        func owned(by group: [Node]) -> [String] {
            var seen = Set<String>()
            var names: [String] = []
            for node in group {
                for input in node.inputs where initializers.contains(input) && !readByOriginal.contains(input) {
                    if seen.insert(input).inserted { names.append(input) }
                }
            }
            return names
        }

        var layerNodes: [Int: [Node]] = [:]
        var layerMode: [Int: String] = [:]
        var siteNodes: [String: [Node]] = [:]
        var siteOrder: [String] = []
        for node in graph.nodes {
            switch node.metadata(RewriteMarks.pass) {
            case RewriteMarks.hybridPass?:
                guard let layer = node.metadata(RewriteMarks.layer).flatMap(Int.init) else { continue }
                layerNodes[layer, default: []].append(node)
                layerMode[layer] = node.metadata(RewriteMarks.mode) ?? "in-place"
            case RewriteMarks.sreluPass?:
                guard let site = node.metadata(RewriteMarks.site) else { continue }
                if siteNodes[site] == nil { siteOrder.append(site) }
                siteNodes[site, default: []].append(node)
            default:
                continue
            }
        }
        // A layer is believed when its marked nodes read the gate slowfast writes for that layer
        // and mode: `hybrid layer 99` on a 6-layer model, from copied or forged marks, is not.
        var ignored: [String] = []
        hybridLayers = layerNodes.keys.sorted().compactMap { layer in
            let mode = layerMode[layer] ?? "in-place"
            let parameters = owned(by: layerNodes[layer] ?? [])
            let gate = mode == "insert" ? "model.layers.\(layer).cross_attn_block.cross_attn_attn_gate"
                                        : "model.layers.\(layer).self_attn.cross_attn_warm_up_gate"
            guard ["in-place", "insert"].contains(mode), parameters.contains(gate) else {
                ignored.append("marks claim hybrid layer \(layer) (\(mode)), but its \(layerNodes[layer]?.count ?? 0) marked nodes read no '\(gate)': "
                    + "not a layer slowfast wrote")
                return nil
            }
            return HybridLayer(layer: layer, mode: mode, parameters: parameters)
        }
        ignoredMarks = ignored.isEmpty ? nil : ignored
        sreluSites = siteOrder.map { SReLUSite(site: $0, parameters: owned(by: siteNodes[$0] ?? [])) }
    }
}
