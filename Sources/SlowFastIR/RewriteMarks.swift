/// The node metadata slowfast's passes leave on every node they add, so a model this tool
/// wrote says what each pass changed. `inspect`, `cost MODEL`, layer discovery and a pass's
/// refusal to rewrite what it already rewrote read them. The keys are here; what each pass
/// writes under them is the pass's own (SlowFastAdapters' LayerMarks for the built-in ones).
public enum RewriteMarks {
    /// The name of the pass that made the node.
    public static let pass = "slowfast.pass"
    /// The decoder layer the node belongs to, for passes that work per layer.
    public static let layer = "slowfast.layer"
    /// How the pass placed the node in its layer (the pass's own words).
    public static let mode = "slowfast.mode"
    /// The original node a node stands in for, for passes that replace nodes one by one.
    public static let site = "slowfast.site"
    /// On a node that joins new values into the model's own stream: the input whose value the
    /// output equals in the model's structure (`A + delta` names its A). Layer discovery reads
    /// through such nodes, so a rewritten model is described like the original.
    public static let passthrough = "slowfast.passthrough"
}

extension Graph {
    /// True when a slowfast rewrite added nodes to this graph.
    public var hasRewriteMarks: Bool {
        nodes.contains { $0.metadata(RewriteMarks.pass) != nil }
    }

    /// For each group of marked nodes, the initializers it reads that no unmarked node reads,
    /// in order of first read: what one layer or site of a pass added.
    public func initializers(ownedBy groups: [[Node]]) -> [[String]] {
        let names = Set(initializers.compactMap(\.name))
        var readByOriginal = Set<String>()
        for node in nodes where node.metadata(RewriteMarks.pass) == nil { readByOriginal.formUnion(node.inputs) }
        return groups.map { group in
            var seen = Set<String>()
            var owned: [String] = []
            for node in group {
                for input in node.inputs where names.contains(input) && !readByOriginal.contains(input) && seen.insert(input).inserted {
                    owned.append(input)
                }
            }
            return owned
        }
    }
}
