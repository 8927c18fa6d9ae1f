import SlowFastIR
import Foundation

/// Reads a node's decoder-layer number from its name or metadata, with regular expressions
/// compiled once. Layer discovery uses an adapter's sources; passes that scope by layer (SReLU)
/// use `huggingFace`.
public struct LayerNumbering {
    private struct Rule {
        let metadataKey: String?  // nil: the node name
        let regex: BoundedRegex
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
            return Rule(metadataKey: key, regex: try BoundedRegex(pattern))
        }
    }

    /// `layers.N` in node names (TorchScript, onnxruntime-genai) or in dynamo's name scopes.
    public static let huggingFace = (try? LayerNumbering([
        .nodeName(#"layers\.(\d+)"#), .metadata(key: "pkg.torch.onnx.name_scopes", regex: #"layers\.(\d+)"#),
    ])) ?? LayerNumbering(rules: [])  // literal patterns: the fallback is never taken

    private init(rules: [Rule]) { self.rules = rules }

    /// The layer number of `node`, from the first rule whose text matches; the last match in
    /// a text wins (name scopes list outer modules first).
    public func number(of node: Node) -> Int? {
        capture(of: node, where: { Int($0) != nil }).flatMap { Int($0) }
    }

    /// The text of the first group of the first rule whose text matches (the last match in a
    /// text), and which `accept` accepts.
    public func capture(of node: Node, where accept: (Substring) -> Bool = { _ in true }) -> String? {
        for rule in rules {
            guard let text = rule.metadataKey.map(node.metadata) ?? node.name else { continue }
            if let last = rule.regex.matches(in: text).last, last.numberOfRanges > 1, let range = Range(last.range(at: 1), in: text),
               accept(text[range]) {
                return String(text[range])
            }
        }
        return nil
    }
}
