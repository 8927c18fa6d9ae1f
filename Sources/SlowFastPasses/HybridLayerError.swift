import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Why a hybrid-layer or cross-attention rewrite was refused. Nothing is written when one is
/// thrown.
public enum HybridLayerError: Error, CustomStringConvertible, Equatable {
    case layerOutOfRange(layer: Int, layerCount: Int)
    case noLayersChosen
    case unsupportedFloatType(String)
    case slowTokenWidthMismatch(slowWidth: Int, hiddenSize: Int)
    case inputNameTaken(String)
    case missingInitializer(layer: Int, role: String, name: String)
    case badWeightShape(layer: Int, role: String, name: String, shape: [Int64], expected: String)
    case missingNode(layer: Int, role: String, name: String)
    case unsupportedQuery(layer: Int, reason: String)
    case insertNeedsResidualValue(layer: Int)
    case alreadyHybrid(layer: Int, mode: String)
    case alreadyRewritten(layers: [Int])
    case slowKVInputsNeedInPlace
    case opsetTooOld(Int)
    case attentionNeedsOpset23(Int)
    case softcapNeedsDecomposed(layer: Int, cap: Double, form: String)

    public var description: String {
        switch self {
        case .layerOutOfRange(let layer, let count):
            return "layer \(layer) does not exist: the model has \(count) decoder layers (0...\(count - 1))"
        case .noLayersChosen:
            return "no layers chosen: give --hybrid-layers 0,8,... or --every N"
        case .unsupportedFloatType(let type):
            return "hybrid layers support float32, float16 and bfloat16 hidden states; this model computes in \(type)"
        case .slowTokenWidthMismatch(let slowWidth, let hidden):
            return "slow tokens are \(slowWidth) wide but the model's hidden size is \(hidden); project them to \(hidden) first"
        case .inputNameTaken(let name):
            return "the model already has a value named '\(name)'; it cannot take the new input of that name"
        case .missingInitializer(let layer, let role, let name):
            return "layer \(layer): \(role) weight '\(name)' is not an initializer of the graph"
        case .badWeightShape(let layer, let role, let name, let shape, let expected):
            return "layer \(layer): \(role) weight '\(name)' has shape \(shape), expected \(expected)"
        case .missingNode(let layer, let role, let name):
            return "layer \(layer): \(role) node '\(name)' is not in the graph"
        case .insertNeedsResidualValue(let layer):
            return "layer \(layer): --mode insert needs the residual stream as a value before the layer's norm, "
                + "but this export sums it inside a fused skip-norm; use --mode in-place"
        case .alreadyHybrid(let layer, let mode):
            return "layer \(layer) is already hybrid (\(mode)): this model was written by slowfast; rewrite the original model instead"
        case .alreadyRewritten(let layers):
            return "this model already has hybrid layers \(layers.map(String.init).joined(separator: ",")) from an earlier rewrite; "
                + "rewrite the original model with every layer you want at once"
        case .slowKVInputsNeedInPlace:
            return "--slow-kv inputs works with --mode in-place only; use --slow-kv inline with --mode insert"
        case .attentionNeedsOpset23(let version):
            return "--cross-attention attention needs default-domain opset 23 (the Attention op); this model imports opset \(version): "
                + "use auto, decomposed or multi-head-attention"
        case .opsetTooOld(let version):
            return "hybrid layers need default-domain opset 11 or later (TopK, GatherElements, ScatterElements); this model imports opset \(version)"
        case .softcapNeedsDecomposed(let layer, let cap, let form):
            return "layer \(layer) caps its attention scores (tanh(s / \(cap)) * \(cap), Gemma 2 soft-capping) before the mask, "
                + "which --cross-attention \(form) cannot: use auto or decomposed"
        case .unsupportedQuery(let layer, let reason):
            return "layer \(layer): cannot find the query after RoPE: \(reason)"
        }
    }
}
