/// The node metadata slowfast's passes leave on every node they add, so a model this tool
/// wrote says which layers are hybrid and which activations are SReLU. `inspect`, `cost MODEL`,
/// layer discovery and the refusal to rewrite a layer twice read them.
public enum RewriteMarks {
    /// The pass that made the node: `hybrid-layers` or `srelu`.
    public static let pass = "slowfast.pass"
    /// The decoder layer a hybrid node belongs to.
    public static let layer = "slowfast.layer"
    /// `in-place` or `insert` for hybrid nodes.
    public static let mode = "slowfast.mode"
    /// The activation an SReLU node replaced.
    public static let site = "slowfast.site"
    /// On a node that joins new values into the model's own stream: the input whose value the
    /// output equals in the model's structure (a hybrid layer's `A_sa + delta` names its A_sa).
    /// Layer discovery reads through such nodes, so a rewritten model is described like the
    /// original.
    public static let passthrough = "slowfast.passthrough"

    /// The value of `pass` on hybrid-layer nodes.
    public static let hybridPass = "hybrid-layers"
    /// The value of `pass` on SReLU nodes.
    public static let sreluPass = "srelu"
}

extension Graph {
    /// True when a slowfast rewrite added nodes to this graph.
    public var hasRewriteMarks: Bool {
        nodes.contains { $0.metadata(RewriteMarks.pass) != nil }
    }

    /// This graph as it was before hybrid layers were added: the hybrid nodes left out, and
    /// every read of a passthrough node's output reading its passthrough input instead. The
    /// original nodes are not changed (nodes that read a redirected value are copied).
    public func bypassingHybridLayers() -> Graph {
        var forward: [String: String] = [:]
        for node in nodes where node.metadata(RewriteMarks.pass) == RewriteMarks.hybridPass {
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
        let kept = nodes.filter { $0.metadata(RewriteMarks.pass) != RewriteMarks.hybridPass }.map { node -> Node in
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
