import SlowFastIR

/// One decoder layer's attention match and what every discovery step reads it with: the
/// matcher, the adapter, and where an error points (file, adapter, layer number).
struct LayerSite {
    let file: String
    let adapter: Adapter
    let matcher: PatternMatcher
    let match: Match
    let number: Int

    var index: GraphIndex { matcher.index }

    /// An error about this layer.
    func fail(_ message: String) -> LayerDiscoveryError {
        .incompleteLayer(file: file, adapter: adapter.name, layer: number, missing: message)
    }

    /// A capture the layer cannot be described without; `what` says what its absence means.
    func need(_ capture: String, _ what: String) throws -> String {
        guard let value = match[capture] else { throw fail(what) }
        return value
    }

    /// The storage of a projection's weight (nil: float), its errors as this layer's.
    func storage(of node: Node, weight: String) throws -> ProjectionStorage? {
        try LayerDiscovery.storage(of: node, weight: weight, matcher: matcher, fail: fail)
    }

    /// A projection's [in, out] shape, whatever its storage.
    func shape(of projection: ProjectionWeight) -> [Int64]? {
        if let stored = projection.storage { return [Int64(stored.shape.inFeatures), Int64(stored.shape.outFeatures)] }
        return index.initializer(projection.weight)?.dims
    }
}
