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
        hybridLayers = layerNodes.keys.sorted().map {
            HybridLayer(layer: $0, mode: layerMode[$0] ?? "in-place", parameters: owned(by: layerNodes[$0] ?? []))
        }
        sreluSites = siteOrder.map { SReLUSite(site: $0, parameters: owned(by: siteNodes[$0] ?? [])) }
    }
}
