import Foundation
import SlowFastIR

/// One change a pass made, as a value: `plan` renders it, tests compare it, `inspect` finds
/// the same facts again in a written model (see `RewriteMarks`).
public enum ModelChange: Equatable, Sendable, CustomStringConvertible {
    /// A new graph input; `optional` inputs have a documented "off" value.
    case inputAdded(name: String, shape: [String], elementType: String, optional: Bool, meaning: String)
    /// A decoder layer made hybrid in place: its attention output gains the slow-token term
    /// before `oProjection` reads it.
    case hybridLayer(layer: Int, oProjection: String)
    /// A gated cross-attention block inserted before a decoder layer.
    case crossAttentionBlock(layer: Int)
    /// An activation replaced by SReLU.
    case activationReplaced(site: String, kind: String, channels: Int, axis: Int, form: String)
    /// The least-squares fit used for a smooth activation, and its error on the fit grid.
    case activationFit(kind: String, maxAbsError: Double, meanAbsError: Double, low: Double, high: Double)
    /// A model-local function added (or an identical one reused).
    case functionAdded(domain: String, name: String, reused: Bool)
    /// The pass found nothing to change (allowed by the caller).
    case nothingFound(what: String)
    /// A second model written beside the output (e.g. the slow K/V encoder), with its inputs
    /// and outputs.
    case companionModel(role: String, inputs: [String], outputs: [String])
    /// How the cross-attention is written (`form`), and what the caller asked for (`chosen`).
    case crossAttentionForm(form: String, chosen: String)
    /// How a hybrid layer's kv_proj is stored in a quantized model: in the model's own form
    /// (`exact`: the k and v rows' bytes), or in float from the dequantized values, and why.
    case kvProjectionStorage(layer: Int, storage: String, exact: Bool)
    /// A change of a pass declared outside this file (`PassRequest`): its kind, and how plans
    /// and errors show it.
    case recorded(kind: String, detail: String)

    public var description: String {
        switch self {
        case .inputAdded(let name, let shape, let type, let optional, let meaning):
            return "new input \(name) [\(shape.joined(separator: ", "))] \(type)\(optional ? " (optional)" : ""): \(meaning)"
        case .hybridLayer(let layer, let oProjection):
            return "layer \(layer): hybrid (cross-attends to slow tokens before o_proj '\(oProjection)')"
        case .crossAttentionBlock(let layer):
            return "layer \(layer): gated cross-attention block inserted before it"
        case .activationReplaced(let site, let kind, let channels, let axis, let form):
            return "\(site): \(kind) -> SReLU (\(channels) channels on axis \(axis), \(form) form)"
        case .activationFit(let kind, let maxError, let meanError, let low, let high):
            return "\(kind) fit on [\(low), \(high)]: max abs error \(Self.short(maxError)), mean \(Self.short(meanError))"
        case .functionAdded(let domain, let name, let reused):
            return reused ? "function \(domain)::\(name) already in the model and identical: reused"
                          : "function \(domain)::\(name) added"
        case .nothingFound(let what):
            return "0 \(what)"
        case .crossAttentionForm(let form, let chosen):
            let what = ["attention": "the Attention op (opset 23)", "multi-head-attention": "com.microsoft MultiHeadAttention",
                        "decomposed": "MatMul, Softmax, MatMul (float32)"][form] ?? form
            return "cross-attention: \(what)\(chosen == form ? "" : " (\(chosen))"), computed only for the rows that query"
        case .kvProjectionStorage(let layer, let storage, let exact):
            return exact ? "layer \(layer): cross_attn_kv_proj stored as \(storage): k_proj's and v_proj's codes, scales and zero points, the same bytes"
                         : "layer \(layer): cross_attn_kv_proj stored in float from the dequantized k_proj and v_proj (\(storage))"
        case .companionModel(let role, let inputs, let outputs):
            return "companion model \(role) (<output>.\(role).onnx): \(inputs.joined(separator: ", ")) -> \(outputs.joined(separator: ", "))"
        case .recorded(_, let detail):
            return detail
        }
    }

    private static func short(_ value: Double) -> String { String(format: "%.3g", value) }
}
