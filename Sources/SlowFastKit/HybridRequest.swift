import SlowFastAdapters
import SlowFastIR
import SlowFastPasses

/// The hybrid-layer part of a rewrite: which layers (a selection, resolved when the model's
/// layers are known), and how (the settings the pass reads as they are; `request.mode`).
@dynamicMemberLookup
public struct HybridRequest: Sendable {
    public var layers: LayerSelection
    public var settings: HybridLayerSettings

    public init(layers: LayerSelection, settings: HybridLayerSettings) {
        self.layers = layers
        self.settings = settings
    }

    public init(layers: LayerSelection, mode: HybridLayerOptions.Mode = .inPlace, slowTokenWidth: Int? = nil,
                initStd: Double = 0.02, seed: UInt64 = 0, slowKV: SlowKVSource = .inline, crossAttention: CrossAttentionForm = .auto,
                newWeights: HybridLayerOptions.NewWeights = .asModel) {
        self.init(layers: layers, settings: HybridLayerSettings(mode: mode, slowTokenWidth: slowTokenWidth, initStd: initStd, seed: seed,
                                                                slowKV: slowKV, crossAttention: crossAttention, newWeights: newWeights))
    }

    public subscript<Value>(dynamicMember field: WritableKeyPath<HybridLayerSettings, Value>) -> Value {
        get { settings[keyPath: field] }
        set { settings[keyPath: field] = newValue }
    }
}

extension HybridRequest: PassRequest {
    public var passName: String { RewriteMarks.hybridPass }
    public var order: Int { 100 }
    public var needsLayers: Bool { true }

    public func makePass(layout: ModelLayout?) throws -> ModelPass {
        guard let layout else { throw PassContractError("the hybrid-layer pass was made without a layer description") }
        return HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: layers.resolve(layerCount: layout.layers.count), settings: settings))
    }
}

extension RewriteRequest {
    /// The hybrid-layer pass this request asks for, if any (setting replaces it).
    public var hybrid: HybridRequest? {
        get { passes.lazy.compactMap { $0 as? HybridRequest }.first }
        set {
            passes.removeAll { $0 is HybridRequest }
            if let newValue { passes.append(newValue) }
        }
    }
}

/// The hybrid layers earlier rewrites made, as `inspect` reports them: each with its mode and
/// the parameters it owns, and the marks that claim a layer the model does not hold.
public struct HybridLayerReport: RewriteReport, Codable, Equatable {
    public struct HybridLayer: Codable, Equatable, Sendable {
        public var layer: Int
        /// `in-place` or `insert`.
        public var mode: String
        public var parameters: [String]
    }

    public var hybridLayers: [HybridLayer]
    /// Marks that claim a hybrid layer the model does not hold (metadata anyone can write):
    /// what each claimed and why it is not believed. Absent when there are none.
    public var ignoredMarks: [String]?

    public init(model: Model) {
        let claims = model.graph.hybridLayerClaims()
        hybridLayers = claims.filter { $0.doubt == nil }.map { HybridLayer(layer: $0.layer, mode: $0.mode, parameters: $0.parameters) }
        let ignored = claims.compactMap(\.doubt)
        ignoredMarks = ignored.isEmpty ? nil : ignored
    }

    /// Whether the hybrid layers' cross-attention was written as a fused op (`Attention`,
    /// `MultiHeadAttention`), for the cost model.
    public static func crossAttentionIsFused(in model: Model) -> Bool {
        model.graph.nodes.contains { node in
            node.metadata(RewriteMarks.pass) == RewriteMarks.hybridPass && ["Attention", "MultiHeadAttention"].contains(node.opType)
        }
    }

    public var lines: [String] {
        hybridLayers.map { "hybrid layer \($0.layer) (\($0.mode)): " + $0.parameters.joined(separator: ", ") }
            + (ignoredMarks ?? []).map { "ignored: " + $0 }
    }
}
