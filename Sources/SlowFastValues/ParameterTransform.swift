/// How an ONNX initializer is made from the PyTorch tensor(s) it stores, step by step:
///
///     canonical = concat_rows(parts)        (a packed tensor: q/k/v rows of qkv_proj, ...)
///     stored    = (canonical + offset) * scale
///     onnx      = transpose(stored)         (MatMul weights are [in, out]; PyTorch's are [out, in])
///
/// Every step can be undone exactly for exporting (`slowfast weights export` checks that
/// redoing it gives the ONNX bytes back, and refuses by name where it does not). A dtype
/// change is not a step: the ONNX tensor's dtype is in the weight map, and import and export
/// convert between float32, float16 and bfloat16 as asked.
public struct ParameterTransform: Codable, Equatable, Hashable, Sendable {
    /// One PyTorch tensor inside a packed canonical tensor: its name and how many rows
    /// (output features) it has, in order.
    public struct Part: Codable, Equatable, Hashable, Sendable {
        public var name: String
        public var rows: Int
        public init(name: String, rows: Int) {
            self.name = name
            self.rows = rows
        }
    }

    /// The ONNX tensor is the transpose of the canonical 2-D tensor.
    public var transpose: Bool
    /// The canonical tensor is these PyTorch tensors stacked by rows (nil: the entry's own
    /// canonical name, unpacked).
    public var parts: [Part]?
    /// A constant the exporter added to the canonical values (Gemma's norms store 1 + w).
    public var offset: Double?
    /// A constant the exporter multiplied the canonical values by.
    public var scale: Double?
    /// The ONNX tensor holds the canonical values quantized (codes whose scales and zero points
    /// are the tensors this names); the canonical values are the dequantized ones.
    public var quantization: ProjectionStorage?

    public init(transpose: Bool = false, parts: [Part]? = nil, offset: Double? = nil, scale: Double? = nil,
                quantization: ProjectionStorage? = nil) {
        self.quantization = quantization
        self.transpose = transpose
        self.parts = parts
        self.offset = offset
        self.scale = scale
    }

    public static let identity = ParameterTransform()
    public static let transposed = ParameterTransform(transpose: true)

    /// Short text for messages and init rules: `transpose`, `rows of [q, k, v] then transpose`.
    public var summary: String {
        var steps: [String] = []
        if let parts { steps.append("rows of [" + parts.map(\.name).joined(separator: ", ") + "]") }
        if let offset { steps.append("+ \(offset)") }
        if let scale { steps.append("* \(scale)") }
        if let quantization { steps.append("quantize (\(quantization.summary))") }
        if transpose { steps.append("transpose") }
        return steps.isEmpty ? "identity" : steps.joined(separator: " then ")
    }

    enum CodingKeys: String, CodingKey { case transpose, parts, offset, scale, quantization }

    /// Reads the object form, and the strings `identity` and `transpose` that layer
    /// descriptions written before the structured form used.
    public init(from decoder: Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            switch text {
            case "identity": self = .identity
            case "transpose": self = .transposed
            default:
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "transform '\(text)' is not identity or transpose"))
            }
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        transpose = try container.decodeIfPresent(Bool.self, forKey: .transpose) ?? false
        parts = try container.decodeIfPresent([Part].self, forKey: .parts)
        offset = try container.decodeIfPresent(Double.self, forKey: .offset)
        scale = try container.decodeIfPresent(Double.self, forKey: .scale)
        quantization = try container.decodeIfPresent(ProjectionStorage.self, forKey: .quantization)
        // Read back from a file, so bounded before any arithmetic: the same checks for import
        // and export, so a transform one of them accepts the other does too.
        if let problem = problem {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "transform: \(problem)"))
        }
    }

    /// Most rows a packed tensor's part may have, and most parts (numbers a weight map states).
    static let partRowsLimit = Limits.partRows, partsLimit = Limits.parts

    /// What makes a transform read from a file unusable, nil when it is sound: a part's rows
    /// out of 1...2^32 (so their sum cannot overflow), a scale that is 0 or not finite (it
    /// cannot be undone), an offset that is not finite.
    public var problem: String? {
        if let parts {
            guard !parts.isEmpty, parts.count <= Self.partsLimit else { return "\(parts.count) parts (1...\(Self.partsLimit))" }
            if let bad = parts.first(where: { !(1 ... Self.partRowsLimit).contains($0.rows) }) {
                return "part '\(bad.name)' has \(bad.rows) rows (1...\(Self.partRowsLimit))"
            }
        }
        if let scale, !scale.isFinite || scale == 0 { return "scale \(scale) cannot be undone" }
        if let offset, !offset.isFinite { return "offset \(offset) is not a number" }
        return nil
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(transpose, forKey: .transpose)
        try container.encodeIfPresent(parts, forKey: .parts)
        try container.encodeIfPresent(offset, forKey: .offset)
        try container.encodeIfPresent(scale, forKey: .scale)
        try container.encodeIfPresent(quantization, forKey: .quantization)
    }
}
