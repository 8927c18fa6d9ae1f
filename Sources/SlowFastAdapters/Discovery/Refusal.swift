import SlowFastIR

/// What one adapter found when it could not describe a model: a short line in plain words for
/// the error, and the whole attempt for `inspect --layers --explain`.
public struct AdapterFinding: Sendable {
    public var adapter: String
    /// How close the adapter came: the layers it got through (an adapter that found layers is
    /// closer than one that found none), then how deep its best attempt got into the pattern.
    var layers: Int
    var depth: Int
    public var summary: String
    public var detail: String

    /// The longest error line discovery writes without `--explain`.
    public static let lineLimit = 300

    init(adapter: String, layers: Int, depth: Int, summary: String, detail: String) {
        self.adapter = adapter
        self.layers = layers
        self.depth = depth
        self.summary = summary
        self.detail = detail
    }

    /// The finding of an adapter whose pattern matched no o_proj: its deepest attempt.
    init(adapter: String, deepest: (root: Node, failure: MatchFailure)?) {
        self.adapter = adapter
        layers = 0
        guard let (root, failure) = deepest else {
            depth = 0
            summary = "0 layers: no MatMul or Gemm got past the attention pattern's first step"
            detail = "0 layers, no attention block; no MatMul or Gemm got past the pattern's first step"
            return
        }
        depth = failure.depth
        summary = "0 layers: from \(root.op) '\(Self.clipped(root.name ?? "", 60))', \(failure.plain)"
        detail = "0 layers, no attention block; its deepest attempt, from \(root.op) '\(root.name ?? "")', reached pattern step "
            + "\(failure.depth) (\(failure.path)) at \(failure.node ?? "a value no node computes"): \(failure.reason)"
    }

    /// Findings ordered closest first (stable: adapters' order among equals).
    static func closestFirst(_ findings: [AdapterFinding]) -> [AdapterFinding] {
        findings.enumerated().sorted { a, b in
            (a.element.layers, a.element.depth, -a.offset) > (b.element.layers, b.element.depth, -b.offset)
        }.map(\.element)
    }

    /// `head + body + tail` in at most `lineLimit` characters, the body clipped to fit.
    static func line(_ head: String, _ body: String, _ tail: String) -> String {
        var body = body.replacingNewlines()
        // The tail (a pointer to --explain) goes first where the finding would not fit beside it.
        if head.count + body.count + tail.count <= lineLimit { return head + body + tail }
        if body.count > lineLimit - head.count { body = compactingNames(body) }
        let room = max(40, lineLimit - head.count)
        return head + clipped(body, room)
    }

    /// `text` with each quoted node or value name longer than 40 characters cut to its last two
    /// path components ('/model/layers.3/attn/k_rotary/MRotaryEmbedding' becomes
    /// '…/k_rotary/MRotaryEmbedding'): the words around them are what the line is for.
    static func compactingNames(_ text: String) -> String {
        let parts = text.split(separator: "'", omittingEmptySubsequences: false)
        return parts.enumerated().map { offset, part in
            guard offset % 2 == 1, part.count > 40, part.contains("/") else { return String(part) }
            return "…/" + part.split(separator: "/").suffix(2).joined(separator: "/")
        }.joined(separator: "'")
    }

    /// `text` in at most `limit` characters: its start and end around an ellipsis.
    static func clipped(_ text: String, _ limit: Int) -> String {
        guard text.count > limit, limit > 8 else { return text }
        let tail = limit / 3
        return String(text.prefix(limit - tail - 1)) + "…" + String(text.suffix(tail))
    }
}

private extension String {
    func replacingNewlines() -> String { split(whereSeparator: \.isNewline).joined(separator: " ") }
}

extension MatchFailure {
    /// The failure in plain words: what the pattern expected at its deepest step and what the
    /// graph has there.
    var plain: String {
        var expected = "the pattern"
        if case .node(let ops)? = steps.first { expected = ops.sorted().joined(separator: " or ") }
        let found = failedNode.map { "\($0.op) '\(AdapterFinding.clipped($0.name ?? "", 60))'" }
        switch reasonData {
        case .comesFrom(let value):
            return "expected \(expected) at step \(depth) and found \(found ?? "'\(value)'")"
        case .notComputed(let value), .notConstant(let value):
            return "expected \(expected) at step \(depth); '\(AdapterFinding.clipped(value, 50))' is "
                + (isNotComputed ? "a graph input or initializer" : "not a constant")
        case .noAlternative(let alternatives):
            // The alternative that got furthest says what the graph has instead.
            guard let deepest = alternatives.max(by: { $0.depth < $1.depth }) else {
                return "no alternative of step \(depth) fits \(found ?? "the value there")"
            }
            return deepest.plain
        default:
            return "step \(depth) (\(expected)) at \(found ?? "a value no node computes"): \(AdapterFinding.clipped(reason, 90))"
        }
    }

    private var isNotComputed: Bool {
        if case .notComputed = reasonData { return true }
        return false
    }
}

extension LayerDiscovery {
    /// Multi-head latent attention (DeepSeek-V2/V3, Kimi-VL): keys and values come from a
    /// low-rank latent (`kv_a_proj`, then a norm and `kv_b_proj`), not from per-head k/v
    /// projections, so a hybrid layer has no k_proj/v_proj to initialise its kv_proj from.
    /// Recognised by the export's module names, since every exporter keeps them.
    static func unsupportedAttention(_ model: Model, matcher: PatternMatcher, file: String) -> LayerDiscoveryError? {
        let projections = ["MatMul", "Gemm", "MatMulNBits", "MatMulInteger"]
        guard let latent = model.graph.nodes.first(where: { node in
            projections.contains(node.op) && ((node.name ?? "").contains("kv_a_proj")
                || node.inputs.contains { $0.contains("kv_a_proj") && matcher.index.initializer($0) != nil })
        }) else { return nil }
        let name = latent.name ?? ""
        let layer = layerNumber(in: name).map { "layer \($0): " } ?? ""
        let width = latent.inputs.dropFirst().compactMap { matcher.index.initializer($0)?.dims }.first { $0.count == 2 }
        let what = width.map { "a \($0[$0.count - 1])-wide latent" } ?? "a latent"
        return .unsupportedAttention(file: file, kind: "multi-head latent attention",
                                     evidence: "\(layer)kv_a_proj \(latent.op) '\(AdapterFinding.clipped(name, 80))' projects keys and values to "
                                        + "\(what), no per-head k_proj/v_proj")
    }

    /// The number after "layers." or "layers_" in a node name.
    private static func layerNumber(in name: String) -> Int? {
        for marker in ["layers.", "layers_"] {
            guard let found = name.range(of: marker) else { continue }
            let digits = name[found.upperBound...].prefix { $0.isASCII && $0.isNumber }
            if let number = Int(digits.prefix(9)) { return number }
        }
        return nil
    }
}
