import SlowFastValues
import SlowFastIR
/// A parameter a pass created or derived, for the weight map.
public struct ParameterRecord: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Made from an init rule alone (zeros, normal(...), a fit).
        case new
        /// Computed from existing weights (e.g. concat(k_proj, v_proj)).
        case derived
    }

    /// The initializer's name in the output graph.
    public var onnxName: String
    /// The PyTorch-style name (`model.layers.8.self_attn.cross_attn_kv_proj.weight`).
    public var canonicalName: String
    public var kind: Kind
    /// How the ONNX tensor is made from the canonical one.
    public var transform: ParameterTransform
    /// How the values were made: `zeros`, `concat(k_proj, v_proj)`, `normal(0.02, seed 0)`, ...
    public var initRule: String
    /// Named numbers that go with the rule (e.g. `fitMaxAbsError`, `fitMeanAbsError`).
    public var figures: [String: Double]

    public init(onnxName: String, canonicalName: String, kind: Kind, transform: ParameterTransform = .identity,
                initRule: String, figures: [String: Double] = [:]) {
        self.onnxName = onnxName
        self.canonicalName = canonicalName
        self.kind = kind
        self.transform = transform
        self.initRule = initRule
        self.figures = figures
    }
}
