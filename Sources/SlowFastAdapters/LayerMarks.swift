import SlowFastIR

// What slowfast's two built-in passes write into their marks, and how a model they rewrote is
// read back: the claims of hybrid layers (believed only where the graph agrees) and the view
// of the graph without them that layer discovery describes. Here, above the IR, so the IR
// knows the marks' keys but no pass.
extension RewriteMarks {
    /// The value of `pass` on hybrid-layer nodes.
    public static let hybridPass = "hybrid-layers"
    /// The value of `pass` on SReLU nodes.
    public static let sreluPass = "srelu"

    /// The gate a hybrid layer in `mode` adds (zeros at default init). Marks claiming a layer
    /// are believed only where that layer's marked nodes read it: metadata anyone can write,
    /// a parameter only a rewrite adds.
    public static func gate(layer: Int, mode: String) -> String {
        mode == "insert" ? "model.layers.\(layer).cross_attn_block.cross_attn_attn_gate"
                         : "model.layers.\(layer).self_attn.cross_attn_warm_up_gate"
    }
}

/// A hybrid layer that the marks of a graph claim, and whether the graph agrees.
public struct HybridLayerClaim {
    public let layer: Int
    /// `in-place` or `insert`.
    public let mode: String
    /// The nodes marked as this layer's, in graph order.
    public let nodes: [Node]
    /// The initializers these nodes read and no unmarked node does, in order of first read.
    public let parameters: [String]
    /// Why the claim is not believed; nil when the graph agrees with it.
    public let doubt: String?
}

extension Graph {
    /// The hybrid layers the marks claim, by layer number. A claim is believed when the
    /// layer's marked nodes read the gate that layer adds (`RewriteMarks.gate`): `hybrid layer
    /// 99` on a 6-layer model, from copied or forged marks, is not.
    public func hybridLayerClaims() -> [HybridLayerClaim] {
        var layerNodes: [Int: [Node]] = [:]
        var layerMode: [Int: String] = [:]
        for node in nodes where node.metadata(RewriteMarks.pass) == RewriteMarks.hybridPass {
            guard let layer = node.metadata(RewriteMarks.layer).flatMap(Int.init) else { continue }
            layerNodes[layer, default: []].append(node)
            layerMode[layer] = node.metadata(RewriteMarks.mode) ?? "in-place"
        }
        let layers = layerNodes.keys.sorted()
        let owned = initializers(ownedBy: layers.map { layerNodes[$0] ?? [] })
        return zip(layers, owned).map { layer, parameters in
            let mode = layerMode[layer] ?? "in-place"
            let group = layerNodes[layer] ?? []
            let gate = RewriteMarks.gate(layer: layer, mode: mode)
            let believed = ["in-place", "insert"].contains(mode) && parameters.contains(gate)
            return HybridLayerClaim(layer: layer, mode: mode, nodes: group, parameters: parameters,
                                    doubt: believed ? nil : "marks claim hybrid layer \(layer) (\(mode)), but its \(group.count) marked nodes "
                                        + "read no '\(gate)': not a layer slowfast wrote")
        }
    }

    /// This graph as it was before hybrid layers were added: the nodes of every believed
    /// hybrid layer (`hybridLayerClaims`) left out, and every read of such a passthrough
    /// node's output reading its passthrough input instead. Marks the graph does not agree
    /// with change nothing: their nodes stay as the model's own. The original nodes are not
    /// changed (nodes that read a redirected value are copied).
    public func bypassingHybridLayers() -> Graph {
        let hybrid = Set(hybridLayerClaims().filter { $0.doubt == nil }.flatMap(\.nodes).map(ObjectIdentifier.init))
        var forward: [String: String] = [:]
        for node in nodes where hybrid.contains(ObjectIdentifier(node)) {
            if let slot = node.metadata(RewriteMarks.passthrough).flatMap(Int.init), node.inputs.indices.contains(slot),
               let output = node.outputs.first {
                forward[output] = node.inputs[slot]
            }
        }
        func resolve(_ name: String) -> String {
            var current = name
            var steps = 0
            while let next = forward[current], steps <= forward.count {
                current = next
                steps += 1
            }
            return current
        }
        let kept = nodes.filter { !hybrid.contains(ObjectIdentifier($0)) }.map { node -> Node in
            guard node.inputs.contains(where: { forward[$0] != nil }) else { return node }
            let copy = Node(node.op, domain: node.domain ?? Domain.onnx, name: node.name, inputs: node.inputs.map(resolve),
                            outputs: node.outputs, attributes: node.attributes)
            copy.overload = node.overload
            copy.metadataProps = node.metadataProps
            return copy
        }
        let view = Graph(name: name, nodes: kept, initializers: initializers, inputs: inputs, outputs: outputs, valueInfo: valueInfo)
        view.metadataProps = metadataProps
        return view
    }
}
