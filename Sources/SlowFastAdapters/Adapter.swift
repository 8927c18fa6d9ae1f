@_exported import SlowFastValues
import SlowFastIR
import Foundation
import Yams

/// A declarative description of how one family of exports lays out its decoder layers:
/// patterns (data for the shared `PatternMatcher`), where layer numbers are read from, and
/// how the residual stream runs. Loaded from `Adapters/*.yaml` (schema:
/// `Schemas/adapter.schema.json`); adding an exporter means adding a file, not code.
public struct Adapter {
    public let name: String
    public let description: String
    /// Where layer numbers come from, tried in order; layers are numbered in graph order
    /// when none applies.
    public let layerIndex: [LayerIndexSource]
    /// `layerIndex`, compiled.
    public let layerNumbering: LayerNumbering
    /// Where the graph names the PyTorch module of a node (TorchScript's node names, dynamo's
    /// name scopes): one group, the module path. Where every weight's node names its module,
    /// the weights take the export's own names (InternLM2's attention.wqkv, not the LLaMA
    /// names discovery would give); the same sources as `layerIndex`, compiled.
    public var moduleNaming: LayerNumbering? = nil
    /// How the attention block's output joins the residual stream.
    public let residual: ResidualKind
    /// Matched at every node output; each match is one layer's attention block.
    public let attention: Pattern
    /// Matched at the attention block's normalised input.
    public let inputNorm: Pattern
    /// Optional: matched at every node output; each match is one MLP (by its input).
    public let mlp: Pattern?
    /// The file it came from (for messages).
    public let source: String

    public enum ResidualKind: String, Codable, Sendable {
        /// x + o_proj(...) is an Add node.
        case add
        /// The sum is computed inside a SkipSimplifiedLayerNormalization (output 3).
        case skipNorm
    }

    public enum LayerIndexSource: Equatable {
        /// A regular expression with one group, over node names (e.g. `layers\.(\d+)/`).
        case nodeName(String)
        /// A regular expression over a node metadata value (dynamo's `pkg.torch.onnx.name_scopes`).
        case metadata(key: String, regex: String)
    }
}

/// Why an adapter file could not be used.
public struct AdapterError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
}

/// The layer-numbering header a pattern library gives the adapters that include it.
struct LibraryHeader {
    var layerIndex: [AdapterFile.IndexSource]?
    var moduleName: [AdapterFile.IndexSource]?
}

/// The YAML form of an adapter (see `Schemas/adapter.schema.json`).
struct AdapterFile {
    struct IndexSource {
        var nodeName: String?
        var metadata: MetadataSource?
    }

    struct MetadataSource {
        var key: String
        var pattern: String
    }

    var name: String
    var description: String?
    var layerIndex: [IndexSource]?
    var moduleName: [IndexSource]?
    var residual: Adapter.ResidualKind
    /// Pattern libraries (`*.patterns.yaml`) whose named patterns this file may `use:`.
    var include: [String]?
    var patterns: [String: PatternSpec]?
    var attention: PatternSpec
    var inputNorm: PatternSpec
    var mlp: PatternSpec?
}

/// A pattern library: named patterns that adapter files include (`include: [NAME.patterns.yaml]`).
struct PatternLibraryFile {
    var description: String?
    var include: [String]?
    /// Where layer numbers and module names come from, for the adapters that include the
    /// library and do not say themselves (the same header for every torch.onnx adapter).
    var layerIndex: [AdapterFile.IndexSource]?
    var moduleName: [AdapterFile.IndexSource]?
    var patterns: [String: PatternSpec]
}

/// One pattern in YAML. Exactly one of `op`, `value`, `any`, `constant`, `oneOf`, `use`.
final class PatternSpec: YAMLReadable {
    var op: [String]?
    var domain: String?
    var inputs: [PatternSpec]?
    var commutative: Bool?
    var capture: String?
    var optional: Bool?
    var output: Int?
    var extraInputs: Bool?
    var value: String?
    var any: Bool?
    var constant: String?
    var equals: Double?
    var oneOf: [PatternSpec]?
    var use: String?
    /// A named pattern's parameters: `${name}` in its strings (and in the patterns it uses)
    /// stands for the value a `use:` gives in `with:`.
    var parameters: [String]?
    /// With `use:`, the values of the used pattern's parameters.
    var with: [String: String]?

    /// A pattern from its YAML mapping; exactly one of `op`, `value`, `any`, `constant`,
    /// `oneOf` and `use` is checked when the pattern is compiled.
    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        let keys: Set<String> = ["op", "domain", "inputs", "commutative", "capture", "optional", "output", "extraInputs",
                                 "value", "any", "constant", "equals", "oneOf", "use", "parameters", "with"]
        for (key, value, at) in try node.fields(at: path, keys: keys) {
            switch key {
            case "op": op = value.scalar != nil ? [try value.text(at: at)] : try value.texts(at: at)
            case "domain": domain = try value.text(at: at)
            case "inputs": inputs = try value.list(at: at)
            case "commutative": commutative = try value.flag(at: at)
            case "capture": capture = try value.text(at: at)
            case "optional": optional = try value.flag(at: at)
            case "output": output = try value.integer(at: at)
            case "extraInputs": extraInputs = try value.flag(at: at)
            case "value": self.value = try value.text(at: at)
            case "any": any = try value.flag(at: at)
            case "constant": constant = try value.text(at: at)
            case "equals": equals = try value.number(at: at)
            case "oneOf": oneOf = try value.list(at: at)
            case "parameters": parameters = try value.texts(at: at)
            case "with": with = try value.named(at: at).mapValues { (text: YAMLText) in text.value }
            default: use = try value.text(at: at)
            }
        }
    }

    /// The matcher's pattern; `named` resolves `use:` references.
    /// How many pattern nodes one adapter section may compile to: `use:` references are
    /// expanded, so a small DAG of references could otherwise stand for 2^64 nodes. The
    /// built-in eager adapter's attention, with every family's alternatives, expands to between
    /// 20,000 and 40,000.
    static let maxCompiledNodes = 100_000

    final class Budget {
        var left = PatternSpec.maxCompiledNodes
    }

    func compile(_ named: [String: PatternSpec], file: String) throws -> Pattern {
        try compile(named, file: file, depth: 0, budget: Budget(), bindings: [:])
    }

    /// `bindings`: the parameters in scope (`${name}` -> value), passed down through `use:`.
    func compile(_ named: [String: PatternSpec], file: String, depth: Int, budget: Budget, bindings: [String: String]) throws -> Pattern {
        guard depth < 128 else { throw AdapterError(file: file, message: "pattern references nest too deep (a cycle of 'use:'?)") }
        budget.left -= 1
        guard budget.left >= 0 else {
            throw AdapterError(file: file, message: "patterns expand to more than \(PatternSpec.maxCompiledNodes) nodes ('use:' references fan out)")
        }
        func bound(_ text: String?) throws -> String? { try text.map { try Self.substituted($0, bindings, file: file) } }
        func compiled(_ spec: PatternSpec, _ scope: [String: String] = bindings) throws -> Pattern {
            try spec.compile(named, file: file, depth: depth + 1, budget: budget, bindings: scope)
        }
        if let use = try bound(use) {
            guard let target = named[use] else { throw AdapterError(file: file, message: "pattern '\(use)' is used but not defined") }
            let scope = try Self.scope(of: target, named: use, with: with, bindings: bindings, file: file)
            let used = try compiled(target, scope)
            guard let capture = try bound(capture) else { return used }
            // `{use: p, capture: c}`: the value p matches at, captured as c.
            return try used.capturingRoot(capture, file: file, use: use)
        }
        if let value = try bound(value) { return .any(capture: value) }
        if any == true { return .any(capture: nil) }
        if constant != nil || equals != nil {
            return .constant(capture: try bound(constant).flatMap { $0.isEmpty ? nil : $0 }, value: equals, tolerance: 1e-3)
        }
        if let oneOf { return .oneOf(try oneOf.map { try compiled($0) }) }
        guard let op, !op.isEmpty else {
            throw AdapterError(file: file, message: "a pattern needs one of op, value, any, constant, oneOf, use")
        }
        return .node(NodePattern(
            opTypes: Set(op), domain: domain,
            inputs: try (inputs ?? []).map { try compiled($0) },
            commutative: commutative ?? false, capture: try bound(capture), optional: optional ?? false,
            allowExtraInputs: extraInputs ?? true, outputIndex: output))
    }

    /// The parameters in scope inside `target` (named `name`): those in scope at the use, with
    /// the use's `with:` values; each must be one the target declares, and the target's
    /// parameters must all have a value.
    static func scope(of target: PatternSpec, named name: String, with: [String: String]?, bindings: [String: String],
                      file: String) throws -> [String: String] {
        guard with != nil || target.parameters != nil else { return bindings }
        var scope = bindings
        let declared = Set(target.parameters ?? [])
        for (key, value) in (with ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard declared.contains(key) else {
                throw AdapterError(file: file, message: "'use: \(name)' gives '\(key)', which pattern '\(name)' does not declare in 'parameters'"
                    + (declared.isEmpty ? "" : " (\(declared.sorted().joined(separator: ", ")))"))
            }
            scope[key] = try substituted(value, bindings, file: file)
        }
        if let missing = declared.sorted().first(where: { scope[$0] == nil }) {
            throw AdapterError(file: file, message: "'use: \(name)' gives no value for its parameter '\(missing)' (with: {\(missing): ...})")
        }
        return scope
    }

    /// `text` with every `${name}` replaced by its binding; an unbound one is an error. Read
    /// byte by byte: compiling the built-in adapters substitutes tens of thousands of strings.
    static func substituted(_ text: String, _ bindings: [String: String], file: String) throws -> String {
        let dollar = UInt8(ascii: "$"), open = UInt8(ascii: "{"), close = UInt8(ascii: "}")
        guard text.utf8.contains(dollar) else { return text }
        let bytes = Array(text.utf8)
        var result: [UInt8] = [], at = 0
        while at < bytes.count {
            guard bytes[at] == dollar, at + 1 < bytes.count, bytes[at + 1] == open else {
                result.append(bytes[at])
                at += 1
                continue
            }
            guard let end = bytes[(at + 2)...].firstIndex(of: close) else {
                throw AdapterError(file: file, message: "'\(text)': '${' without a closing '}'")
            }
            let name = String(decoding: bytes[(at + 2) ..< end], as: UTF8.self)
            guard let value = bindings[name] else {
                throw AdapterError(file: file, message: "'\(text)' uses '${\(name)}', which no 'use: ... with:' in scope gives")
            }
            result += Array(value.utf8)
            at = end + 1
        }
        return String(decoding: result, as: UTF8.self)
    }
}

extension Adapter {
    /// True for a pattern library (`NAME.patterns.yaml`): included by adapters, not one itself.
    public static func isPatternLibrary(_ fileName: String) -> Bool { fileName.hasSuffix(".patterns.yaml") }

    /// Reads one adapter file. An `include:` is looked up beside the file, then in `library`
    /// (file name -> text; the built-in pattern libraries).
    public static func load(path: String, library: [String: String] = [:]) throws -> Adapter {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw AdapterError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        let folder = (path as NSString).deletingLastPathComponent
        return try parse(text, source: path) { name in
            let beside = (folder.isEmpty ? name : folder + "/" + name)
            if FileManager.default.fileExists(atPath: beside) {
                do { return (try String(contentsOfFile: beside, encoding: .utf8), beside) } catch {
                    throw AdapterError(file: path, message: "cannot read included '\(beside)': \(error.localizedDescription)")
                }
            }
            return library[name].map { ($0, "built-in \(name)") }
        }
    }

    /// Parses the text of an adapter file; `source` names it in errors. `resolve` gives the
    /// text (and a name for messages) of an included pattern library, nil when there is none.
    public static func parse(_ text: String, source path: String,
                             resolve: (String) throws -> (text: String, source: String)? = { _ in nil }) throws -> Adapter {
        let file = try decodeBounded(AdapterFile.self, from: text, source: path, kind: "not an adapter")
        // Included patterns first; the adapter's own patterns override them by name (how an
        // adapter for a new export changes one shared pattern).
        var header = LibraryHeader()
        var named = try includedPatterns(file.include ?? [], from: path, resolve: resolve, seen: [], header: &header)
        for (name, spec) in file.patterns ?? [:] { named[name] = spec }
        func compiled(_ entries: [AdapterFile.IndexSource], _ key: String) throws -> ([LayerIndexSource], LayerNumbering) {
            var sources: [LayerIndexSource] = []
            for source in entries {
                if let regex = source.nodeName { sources.append(.nodeName(regex)) }
                if let metadata = source.metadata { sources.append(.metadata(key: metadata.key, regex: metadata.pattern)) }
            }
            do { return (sources, try LayerNumbering(sources)) } catch let error as BoundedRegex.InvalidPattern {
                throw AdapterError(file: path, message: "\(key) pattern '\(error.pattern)' "
                    + (error.reason.map { "is refused: \($0)" } ?? "is not a regular expression"))
            }
        }
        // The adapter's own layerIndex and moduleName; an adapter that gives neither takes both from
        // the first library it includes that has them (a header is one unit: an adapter with its
        // own layer numbering, the genai one, does not get torch.onnx's module names).
        if file.layerIndex != nil || file.moduleName != nil { header = LibraryHeader() }
        let (sources, numbering) = try compiled(file.layerIndex ?? header.layerIndex ?? [], "layerIndex")
        var adapter = Adapter(name: file.name, description: file.description ?? "", layerIndex: sources, layerNumbering: numbering,
                              residual: file.residual,
                              attention: try file.attention.compile(named, file: path), inputNorm: try file.inputNorm.compile(named, file: path),
                              mlp: try file.mlp?.compile(named, file: path), source: path)
        if let moduleName = file.moduleName ?? header.moduleName { adapter.moduleNaming = try compiled(moduleName, "moduleName").1 }
        try adapter.checkCaptures()
        return adapter
    }

    /// Bounds on untrusted adapter files: bytes, YAML nodes (aliases expanded), nesting.
    /// Decodes one YAML file (an adapter or a pattern library) within the bounds every file
    /// from outside gets: its size, and its node count and depth with aliases expanded (a small
    /// file can stand for an exponential tree, a "billion laughs"), checked before decoding.
    static func decodeBounded<T: YAMLReadable>(_ type: T.Type, from text: String, source path: String, kind: String) throws -> T {
        guard text.utf8.count <= maxFileBytes else {
            throw AdapterError(file: path, message: "\(kind): larger than \(maxFileBytes) bytes")
        }
        do {
            guard let root = try Yams.compose(yaml: text, scalarTypes) else { throw AdapterError(file: path, message: "\(kind): the file is empty") }
            var budget = maxYAMLNodes
            guard Adapter.fitsBudget(root, &budget, depth: 0) else {
                throw AdapterError(file: path, message: "\(kind): more than \(maxYAMLNodes) YAML nodes with aliases expanded, or nested more than \(maxYAMLDepth) deep")
            }
            return try T(yaml: root, at: .root)
        } catch let error as AdapterError {
            throw error
        } catch {
            throw AdapterError(file: path, message: "\(kind): \(error)")
        }
    }

    /// Pattern libraries decoded once per process, by their text: every adapter that includes
    /// the shared patterns would decode the same YAML again, and decoding is most of the time
    /// the built-in adapters take to load. Decoded patterns are never changed, so adapters
    /// share them; an adapter's own patterns override them by name without touching them.
    private static let libraries = DecodedLibraries()

    private final class DecodedLibraries: @unchecked Sendable {
        private let lock = NSLock()
        private var byText: [String: PatternLibraryFile] = [:]

        func decoded(_ text: String, _ decode: () throws -> PatternLibraryFile) throws -> PatternLibraryFile {
            lock.lock()
            defer { lock.unlock() }
            if let known = byText[text] { return known }
            let library = try decode()
            byText[text] = library
            return library
        }
    }

    /// How plain scalars are typed: booleans (and `<<` merge keys) only. Yams' default also
    /// tries integer, float and timestamp regexes on every scalar and on every key it looks
    /// up, which was most of the time built-in adapters took to load; adapters' numbers
    /// decode from their text either way.
    private static let scalarTypes = Resolver.basic.appending(.bool).appending(.merge)

    static let maxFileBytes = 1 << 20
    static let maxYAMLNodes = 100_000
    static let maxYAMLDepth = 128

    /// Whether `node` has at most `budget` nodes and `maxYAMLDepth` levels; spends the budget.
    static func fitsBudget(_ node: Yams.Node, _ budget: inout Int, depth: Int) -> Bool {
        budget -= 1
        guard budget >= 0, depth <= maxYAMLDepth else { return false }
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard fitsBudget(key, &budget, depth: depth + 1), fitsBudget(value, &budget, depth: depth + 1) else { return false }
            }
        case .sequence(let sequence):
            for item in sequence where !fitsBudget(item, &budget, depth: depth + 1) { return false }
        default:
            break
        }
        return true
    }


    /// The named patterns of `includes` (and of what they include), in order; a name two
    /// libraries both define is an error, as is an include cycle or a missing library.
    static func includedPatterns(_ includes: [String], from path: String,
                                 resolve: (String) throws -> (text: String, source: String)?,
                                 seen: [String], header: inout LibraryHeader) throws -> [String: PatternSpec] {
        var result: [String: PatternSpec] = [:]
        var origin: [String: String] = [:]
        for name in includes {
            guard isPatternLibrary(name) else {
                throw AdapterError(file: path, message: "include '\(name)': expected a pattern library named NAME.patterns.yaml")
            }
            guard !seen.contains(name) else {
                throw AdapterError(file: path, message: "include '\(name)': an include cycle (\((seen + [name]).joined(separator: " -> ")))")
            }
            guard let (text, source) = try resolve(name) else {
                throw AdapterError(file: path, message: "include '\(name)': no such pattern library beside the file or built in")
            }
            let library = try libraries.decoded(text) {
                try decodeBounded(PatternLibraryFile.self, from: text, source: source, kind: "not a pattern library (expected patterns:)")
            }
            header.layerIndex = header.layerIndex ?? library.layerIndex
            header.moduleName = header.moduleName ?? library.moduleName
            var patterns = try includedPatterns(library.include ?? [], from: source, resolve: resolve, seen: seen + [name], header: &header)
            for (key, spec) in library.patterns { patterns[key] = spec }
            for (key, spec) in patterns {
                if let other = origin[key], other != source {
                    throw AdapterError(file: path, message: "pattern '\(key)' is defined by both \(other) and \(source)")
                }
                origin[key] = source
                result[key] = spec
            }
        }
        return result
    }

    /// Every adapter `*.yaml` in `folder` (pattern libraries excluded), in name order.
    public static func loadAll(folder: String) throws -> [Adapter] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw AdapterError(file: folder, message: "cannot list adapters: \(error.localizedDescription)")
        }
        return try names.filter { ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml")) && !isPatternLibrary($0) }.sorted()
            .map { try load(path: folder + "/" + $0) }
    }
}
