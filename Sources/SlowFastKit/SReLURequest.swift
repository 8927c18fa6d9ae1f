import SlowFastAdapters
import SlowFastIR
import SlowFastPasses

/// The SReLU part of a rewrite: which activations, and whether finding none is fine.
public struct SReLURequest: PassRequest {
    public var options: SReLUOptions
    /// Write the model even when no target activation is found.
    public var allowNoSites: Bool

    public init(_ options: SReLUOptions, allowNoSites: Bool = false) {
        self.options = options
        self.allowNoSites = allowNoSites
    }

    public var passName: String { RewriteMarks.sreluPass }
    public var order: Int { 200 }

    public func makePass(layout: ModelLayout?) throws -> ModelPass {
        SReLUPass(options: options, allowNoSites: allowNoSites)
    }
}

extension RewriteRequest {
    /// The SReLU pass this request asks for, if any (setting replaces it).
    public var srelu: SReLUOptions? {
        get { passes.lazy.compactMap { $0 as? SReLURequest }.first?.options }
        set {
            let allow = allowNoSites
            passes.removeAll { $0 is SReLURequest }
            if let newValue { passes.append(SReLURequest(newValue, allowNoSites: allow)) }
        }
    }

    /// With `srelu`: write the model even when no target activation is found.
    public var allowNoSites: Bool {
        get { passes.lazy.compactMap { $0 as? SReLURequest }.first?.allowNoSites ?? false }
        set {
            passes = passes.map { pass in
                guard var srelu = pass as? SReLURequest else { return pass }
                srelu.allowNoSites = newValue
                return srelu
            }
        }
    }

    /// A request for the two built-in passes (either or both), as earlier versions took it.
    public init(hybrid: HybridRequest? = nil, srelu: SReLUOptions? = nil, allowNoSites: Bool = false,
                layers: LayerSource = .discover(.auto), weightsFrom: String? = nil, strictWeights: Bool = false) {
        self.init(passes: [hybrid].compactMap { $0 } + [srelu.map { SReLURequest($0, allowNoSites: allowNoSites) }].compactMap { $0 },
                  layers: layers, weightsFrom: weightsFrom, strictWeights: strictWeights)
    }
}

/// The activations earlier rewrites replaced by SReLU, as `inspect` reports them: each site
/// (the replaced node's name) with the parameters it owns.
public struct SReLUReport: RewriteReport, Codable, Equatable {
    public struct SReLUSite: Codable, Equatable, Sendable {
        /// The name of the activation node that was replaced.
        public var site: String
        public var parameters: [String]
    }

    public var sreluSites: [SReLUSite]

    public init(model: Model) {
        let graph = model.graph
        var siteNodes: [String: [Node]] = [:]
        var siteOrder: [String] = []
        for node in graph.nodes where node.metadata(RewriteMarks.pass) == RewriteMarks.sreluPass {
            guard let site = node.metadata(RewriteMarks.site) else { continue }
            if siteNodes[site] == nil { siteOrder.append(site) }
            siteNodes[site, default: []].append(node)
        }
        let siteParameters = graph.initializers(ownedBy: siteOrder.map { siteNodes[$0] ?? [] })
        sreluSites = zip(siteOrder, siteParameters).map { SReLUSite(site: $0, parameters: $1) }
    }

    public var lines: [String] {
        sreluSites.isEmpty ? [] : ["SReLU sites: \(sreluSites.count)"] + sreluSites.map { "  \($0.site): " + $0.parameters.joined(separator: ", ") }
    }
}
