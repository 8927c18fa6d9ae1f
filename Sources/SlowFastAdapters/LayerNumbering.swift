import SlowFastIR
import Foundation

/// Reads a node's decoder-layer number from its name or metadata, with regular expressions
/// compiled once. Layer discovery uses an adapter's sources; passes that scope by layer (SReLU)
/// use `huggingFace`.
public struct LayerNumbering {
    private struct Rule {
        let metadataKey: String?  // nil: the node name
        let regex: NSRegularExpression
    }

    private let rules: [Rule]

    /// Compiles `sources`; throws naming the first expression that does not compile.
    public init(_ sources: [Adapter.LayerIndexSource]) throws {
        rules = try sources.map { source in
            let (key, pattern): (String?, String)
            switch source {
            case .nodeName(let regex): (key, pattern) = (nil, regex)
            case .metadata(let metadataKey, let regex): (key, pattern) = (metadataKey, regex)
            }
            if let reason = LayerNumbering.backtrackingRisk(pattern) { throw InvalidPattern(pattern: pattern, reason: reason) }
            guard let regex = try? NSRegularExpression(pattern: pattern) else { throw InvalidPattern(pattern: pattern, reason: nil) }
            return Rule(metadataKey: key, regex: regex)
        }
    }

    /// `layers.N` in node names (TorchScript, onnxruntime-genai) or in dynamo's name scopes.
    public static let huggingFace = (try? LayerNumbering([
        .nodeName(#"layers\.(\d+)"#), .metadata(key: "pkg.torch.onnx.name_scopes", regex: #"layers\.(\d+)"#),
    ])) ?? LayerNumbering(rules: [])  // literal patterns: the fallback is never taken

    private init(rules: [Rule]) { self.rules = rules }

    /// Texts longer than this are not searched: a layer path is far shorter, and the regex
    /// engine's time grows with the text.
    public static let maxTextLength = 4096

    /// Why `pattern` could backtrack exponentially, or nil. The regex engine has no step limit,
    /// so adapter patterns (untrusted files) may not repeat a group that itself repeats or
    /// alternates (`(a+)+`, `(a|aa)*`), nor use back-references.
    static func backtrackingRisk(_ pattern: String) -> String? {
        let characters = Array(pattern)
        // Per open group: whether it holds a quantifier or an alternation.
        var groups: [Bool] = [false]
        var inClass = false
        var index = 0
        func repeats(_ at: Int) -> Bool {
            at < characters.count && (characters[at] == "*" || characters[at] == "+" || characters[at] == "{")
        }
        while index < characters.count {
            let character = characters[index]
            if character == "\\" {
                if !inClass, index + 1 < characters.count, let digit = characters[index + 1].wholeNumberValue, digit > 0 {
                    return "it uses a back-reference"
                }
                index += 2
                continue
            }
            if inClass {
                if character == "]" { inClass = false }
                index += 1
                continue
            }
            switch character {
            case "[":
                inClass = true
            case "(":
                groups.append(false)
                if index + 2 < characters.count, characters[index + 1] == "?" { index += 2 }  // (?:, (?=, (?<name>
            case ")":
                guard groups.count > 1 else { return nil }  // unbalanced: the compiler refuses it
                let risky = groups.removeLast()
                if risky {
                    if repeats(index + 1) { return "a repeated group repeats or alternates inside (exponential backtracking)" }
                    groups[groups.count - 1] = true
                }
            case "|", "*", "+", "{", "?":
                groups[groups.count - 1] = true
            default:
                break
            }
            index += 1
        }
        return nil
    }

    /// The layer number of `node`, from the first rule whose text matches; the last match in
    /// a text wins (name scopes list outer modules first).
    public func number(of node: Node) -> Int? {
        for rule in rules {
            guard let text = rule.metadataKey.map(node.metadata) ?? node.name, text.utf8.count <= LayerNumbering.maxTextLength else { continue }
            let matches = rule.regex.matches(in: text, range: NSRange(text.startIndex..., in: text))
            if let last = matches.last, last.numberOfRanges > 1, let range = Range(last.range(at: 1), in: text),
               let number = Int(text[range]) {
                return number
            }
        }
        return nil
    }

    struct InvalidPattern: Error {
        let pattern: String
        let reason: String?
    }
}
