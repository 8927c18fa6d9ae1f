import SlowFastValues

/// Single decoder dims a user gives by hand, laid over dims read from a model or a preset
/// (`slowfast cost MODEL --intermediate 18944`), or making up the whole set on their own.
public struct DimensionOverrides: Equatable, Sendable {
    public var numLayers: Int?
    public var hiddenSize: Int?
    public var numHeads: Int?
    public var numKVHeads: Int?
    public var headDim: Int?
    public var intermediateSize: Int?
    public var vocabSize: Int?

    public init(numLayers: Int? = nil, hiddenSize: Int? = nil, numHeads: Int? = nil, numKVHeads: Int? = nil,
                headDim: Int? = nil, intermediateSize: Int? = nil, vocabSize: Int? = nil) {
        self.numLayers = numLayers
        self.hiddenSize = hiddenSize
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.intermediateSize = intermediateSize
        self.vocabSize = vocabSize
    }

    /// True when no dim is given.
    public var isEmpty: Bool { self == DimensionOverrides() }

    /// `base` with every given dim replaced; without a base, the given dims alone when the five
    /// that have no default (layers, hidden, heads, kv heads, head dim) are all there.
    public func applied(to base: ModelDimensions?) -> ModelDimensions? {
        guard var result = base ?? complete else { return nil }
        if let numLayers { result.numLayers = numLayers }
        if let hiddenSize { result.hiddenSize = hiddenSize }
        if let numHeads { result.numHeads = numHeads }
        if let numKVHeads { result.numKVHeads = numKVHeads }
        if let headDim { result.headDim = headDim }
        if let intermediateSize { result.intermediateSize = intermediateSize }
        if let vocabSize { result.vocabSize = vocabSize }
        return result
    }

    private var complete: ModelDimensions? {
        guard let numLayers, let hiddenSize, let numHeads, let numKVHeads, let headDim else { return nil }
        return ModelDimensions(numLayers: numLayers, hiddenSize: hiddenSize, numHeads: numHeads, numKVHeads: numKVHeads,
                               headDim: headDim, intermediateSize: intermediateSize, vocabSize: vocabSize)
    }
}
