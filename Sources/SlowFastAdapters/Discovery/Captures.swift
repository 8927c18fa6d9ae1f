import SlowFastIR

/// The discovery steps, each in its own file under Discovery/.
public enum DiscoveryStep: String, CaseIterable, Sendable {
    case attentionBlocks = "attention blocks"
    case projections
    case rotary
    case norms
    case residualJoin = "residual join"
    case mlp = "MLP"
    case scores
}

/// Every name an adapter's patterns can capture for discovery to read: which pattern it
/// belongs in and which step reads it. `Schemas/adapter.schema.json` lists the same names
/// (a test checks both ways). A pattern may also capture names of its own that begin with `_`:
/// bindings, read by no step, that make the values captured under one name the same value.
public enum Capture: String, CaseIterable, Sendable {
    // The attention pattern (rooted at o_proj's output).
    case oNode, oWeight, attentionOutput, normedInput
    case qNode, qWeight, qBias, kNode, kWeight, kBias, vNode, vWeight, vBias
    case qkv, qkvNode, qkvWeight, qkvBias, qkvSplit, qSlice, kSlice, vSlice
    case qkvGroupReshape, qGroupSlice, kGroupGather, vGroupGather
    case qReshape, kReshape, kRotary, fusedAttention, attentionCore
    case query, queryMerged, queryBeforeRoPE, cosCache, sinCache, seqlensK, totalSequenceLength
    case qNormWeight, qNormEpsilon, qNormNode, kNormWeight, kNormEpsilon, kNormNode
    case scale, sqrtScale, sqrtScaleKey, scaleOverCap, softcap, softcapFactor
    // The inputNorm pattern (rooted at the norm's output).
    case normWeight, normNode, normInput, epsilon, normBias, normMean
    // The mlp pattern (rooted at down_proj's output).
    case mlpInput, gateNode, gateWeight, upNode, upWeight, downNode, downWeight, gateUpNode, gateUpWeight
    case gateSplit, gateSliceStart, activation, activationGate

    /// The adapter pattern a capture belongs in.
    public enum Site: String, Sendable { case attention, inputNorm, mlp }

    public var site: Site {
        switch self {
        case .normWeight, .normNode, .normInput, .epsilon, .normBias, .normMean: return .inputNorm
        case .mlpInput, .gateNode, .gateWeight, .upNode, .upWeight, .downNode, .downWeight, .gateUpNode, .gateUpWeight,
             .gateSplit, .gateSliceStart, .activation, .activationGate: return .mlp
        default: return .attention
        }
    }

    public var step: DiscoveryStep {
        switch self {
        case .oNode, .attentionOutput, .normedInput: return .attentionBlocks
        case .query, .queryMerged, .queryBeforeRoPE, .cosCache, .sinCache, .seqlensK, .totalSequenceLength: return .rotary
        case .qNormWeight, .qNormEpsilon, .qNormNode, .kNormWeight, .kNormEpsilon, .kNormNode,
             .normWeight, .normNode, .normInput, .epsilon, .normBias, .normMean: return .norms
        case .scale, .sqrtScale, .sqrtScaleKey, .scaleOverCap, .softcap, .softcapFactor: return .scores
        case _ where site == .mlp: return .mlp
        default: return .projections
        }
    }

    /// Captures a step reads together: where a pattern captures one of them it must capture all.
    static let together: [[Capture]] = [
        [.qNode, .qWeight, .kNode, .kWeight, .vNode, .vWeight], [.qkvNode, .qkvWeight], [.qSlice, .kSlice, .vSlice],
        [.qkvGroupReshape, .qGroupSlice, .kGroupGather, .vGroupGather],
        [.cosCache, .sinCache, .seqlensK, .totalSequenceLength],
        [.gateNode, .gateWeight], [.upNode, .upWeight], [.downNode, .downWeight], [.gateUpNode, .gateUpWeight],
    ]

    /// Per pattern: for each requirement, captures of which at least one must be there.
    static let required: [Site: [[Capture]]] = [
        .attention: [[.oNode], [.oWeight], [.attentionOutput], [.normedInput], [.query, .queryMerged, .cosCache],
                     [.qNode, .qkvNode]],
        .inputNorm: [[.normWeight], [.epsilon, .normNode]],
        .mlp: [[.mlpInput], [.downNode]],
    ]

    /// Captures that mean something only beside another: (capture, needs one of).
    static let needs: [(Capture, [Capture])] = [
        (.qNormWeight, [.qNormEpsilon, .qNormNode]), (.kNormWeight, [.kNormEpsilon, .kNormNode]),
        (.sqrtScaleKey, [.sqrtScale]), (.scaleOverCap, [.softcapFactor]), (.qkvSplit, [.qkvNode]),
        (.qSlice, [.qkvNode]), (.qkvGroupReshape, [.qkvNode]), (.gateSplit, [.gateUpNode]), (.gateSliceStart, [.gateUpNode]),
    ]
}

extension Pattern {
    /// How many times each name is captured in the pattern (every alternative counted).
    func captureCounts() -> [String: Int] {
        var counts: [String: Int] = [:]
        func visit(_ pattern: Pattern) {
            switch pattern {
            case .any(let capture), .constant(let capture, _, _):
                if let capture { counts[capture, default: 0] += 1 }
            case .node(let node):
                if let capture = node.capture { counts[capture, default: 0] += 1 }
                node.inputs.forEach(visit)
            case .oneOf(let alternatives):
                alternatives.forEach(visit)
            }
        }
        visit(self)
        return counts
    }
}

extension Adapter {
    /// An adapter's captures against the vocabulary: a name no step reads (a misspelling, or a
    /// capture in the wrong pattern) unless it is a `_binding`, a step's capture missing beside
    /// the others it is read with, or a required one absent, is an error naming both.
    func checkCaptures() throws {
        let patterns: [(Capture.Site, Pattern?)] = [(.attention, attention), (.inputNorm, inputNorm), (.mlp, mlp)]
        for (site, pattern) in patterns {
            guard let pattern else { continue }
            let counts = pattern.captureCounts()
            let present = Set(counts.keys.compactMap(Capture.init(rawValue:)).filter { $0.site == site })
            func names(_ captures: [Capture]) -> String { captures.map { "'\($0.rawValue)'" }.joined(separator: ", ") }
            for name in counts.keys.sorted() where !name.hasPrefix("_") {
                guard let capture = Capture(rawValue: name) else {
                    throw AdapterError(file: source, message: "the \(site.rawValue) pattern captures '\(name)', which no discovery step "
                        + "reads (a binding's name begins with '_'; the \(site.rawValue) captures are: "
                        + "\(Capture.allCases.filter { $0.site == site }.map(\.rawValue).joined(separator: ", ")))")
                }
                guard capture.site == site else {
                    throw AdapterError(file: source, message: "the \(site.rawValue) pattern captures '\(name)', which the "
                        + "\(capture.step.rawValue) step reads from the \(capture.site.rawValue) pattern")
                }
            }
            for group in Capture.together where group.first?.site == site {
                let have = group.filter(present.contains)
                if !have.isEmpty, have.count < group.count {
                    throw AdapterError(file: source, message: "the \(group[0].step.rawValue) step reads \(names(group)) together; "
                        + "the \(site.rawValue) pattern captures \(names(have)) without \(names(group.filter { !present.contains($0) }))")
                }
            }
            for anyOf in Capture.required[site] ?? [] where !anyOf.contains(where: present.contains) {
                throw AdapterError(file: source, message: "the \(anyOf[0].step.rawValue) step needs the \(site.rawValue) pattern to capture "
                    + (anyOf.count == 1 ? names(anyOf) : "one of \(names(anyOf))"))
            }
            for (capture, anyOf) in Capture.needs where capture.site == site && present.contains(capture) && !anyOf.contains(where: present.contains) {
                throw AdapterError(file: source, message: "the \(site.rawValue) pattern captures '\(capture.rawValue)', which the "
                    + "\(capture.step.rawValue) step reads only with \(anyOf.count == 1 ? names(anyOf) : "one of \(names(anyOf))")")
            }
        }
    }
}
