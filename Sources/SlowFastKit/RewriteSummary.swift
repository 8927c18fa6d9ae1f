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
        var siteNodes: [String: [Node]] = [:]
        var siteOrder: [String] = []
        for node in graph.nodes where node.metadata(RewriteMarks.pass) == RewriteMarks.sreluPass {
            guard let site = node.metadata(RewriteMarks.site) else { continue }
            if siteNodes[site] == nil { siteOrder.append(site) }
            siteNodes[site, default: []].append(node)
        }
        let claims = graph.hybridLayerClaims()
        hybridLayers = claims.filter { $0.doubt == nil }.map { HybridLayer(layer: $0.layer, mode: $0.mode, parameters: $0.parameters) }
        let ignored = claims.compactMap(\.doubt)
        ignoredMarks = ignored.isEmpty ? nil : ignored
        let siteParameters = graph.initializers(ownedBy: siteOrder.map { siteNodes[$0] ?? [] })
        sreluSites = zip(siteOrder, siteParameters).map { SReLUSite(site: $0, parameters: $1) }
    }
}
