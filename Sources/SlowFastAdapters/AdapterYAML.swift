import Yams

/// Adapter files read straight from Yams' node tree, one pass over each mapping.
///
/// Yams' `Decodable` path looks every key of a type up by scanning the mapping, key node by
/// key node, behind generic containers: for the built-in pattern library (a few hundred
/// mappings) that was most of the time discovery took. Reading the tree directly visits each
/// key once, and a key the schema does not know (`optinal: true`) is an error naming it and
/// its line instead of being ignored.
protocol YAMLReadable {
    init(yaml node: Yams.Node, at path: YAMLPath) throws
}

/// Where in a YAML file a value is (`patterns.rmsNorm.inputs[1]`), for messages.
struct YAMLPath: CustomStringConvertible {
    private let text: String

    static let root = YAMLPath(text: "")

    func key(_ name: String) -> YAMLPath { YAMLPath(text: text.isEmpty ? name : "\(text).\(name)") }
    func item(_ index: Int) -> YAMLPath { YAMLPath(text: "\(text)[\(index)]") }

    var description: String { text.isEmpty ? "the top level" : "'\(text)'" }
}

/// A value in an adapter file that is not what the schema says.
struct YAMLShapeError: Error, CustomStringConvertible {
    let path: YAMLPath
    let line: Int?
    let expected: String

    var description: String { "\(path)\(line.map { " (line \($0))" } ?? ""): expected \(expected)" }
}

extension Yams.Node {
    func shapeError(_ path: YAMLPath, _ expected: String) -> YAMLShapeError {
        YAMLShapeError(path: path, line: mark?.line, expected: expected)
    }

    /// The pairs of a mapping, each key checked against `keys`.
    func fields(at path: YAMLPath, keys: Set<String>) throws -> [(key: String, value: Yams.Node, path: YAMLPath)] {
        guard case .mapping(let mapping) = self else { throw shapeError(path, "a mapping") }
        var seen: Set<String> = []
        return try mapping.map { key, value in
            guard let name = key.scalar?.string else { throw key.shapeError(path, "string keys") }
            guard keys.contains(name) else {
                throw key.shapeError(path, "one of the keys \(keys.sorted().joined(separator: ", ")), found '\(name)'")
            }
            guard seen.insert(name).inserted else { throw key.shapeError(path, "'\(name)' once, found it twice") }
            return (name, value, path.key(name))
        }
    }

    func text(at path: YAMLPath) throws -> String {
        guard let scalar else { throw shapeError(path, "a string") }
        return scalar.string
    }

    func flag(at path: YAMLPath) throws -> Bool {
        guard let value = bool else { throw shapeError(path, "true or false") }
        return value
    }

    func integer(at path: YAMLPath) throws -> Int {
        guard let value = int else { throw shapeError(path, "an integer") }
        return value
    }

    func number(at path: YAMLPath) throws -> Double {
        guard let value = float else { throw shapeError(path, "a number") }
        return value
    }

    func items<T>(at path: YAMLPath, _ read: (Yams.Node, YAMLPath) throws -> T) throws -> [T] {
        guard case .sequence(let sequence) = self else { throw shapeError(path, "a list") }
        return try sequence.enumerated().map { try read($0.element, path.item($0.offset)) }
    }

    func list<T: YAMLReadable>(at path: YAMLPath) throws -> [T] {
        try items(at: path) { try T(yaml: $0, at: $1) }
    }

    func texts(at path: YAMLPath) throws -> [String] {
        try items(at: path) { try $0.text(at: $1) }
    }

    /// A mapping from names to values (`patterns:`).
    func named<T: YAMLReadable>(at path: YAMLPath) throws -> [String: T] {
        guard case .mapping(let mapping) = self else { throw shapeError(path, "a mapping of names") }
        var result: [String: T] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else { throw key.shapeError(path, "string keys") }
            guard result[name] == nil else { throw key.shapeError(path, "'\(name)' once, found it twice") }
            result[name] = try T(yaml: value, at: path.key(name))
        }
        return result
    }
}

extension AdapterFile: YAMLReadable {
    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        var name: String?, residual: Adapter.ResidualKind?, attention: PatternSpec?, inputNorm: PatternSpec?
        let keys: Set<String> = ["name", "description", "layerIndex", "moduleName", "residual", "include", "patterns", "attention",
                                 "inputNorm", "mlp"]
        for (key, value, at) in try node.fields(at: path, keys: keys) {
            switch key {
            case "name": name = try value.text(at: at)
            case "description": description = try value.text(at: at)
            case "layerIndex": layerIndex = try value.list(at: at)
            case "moduleName": moduleName = try value.list(at: at)
            case "residual":
                let text = try value.text(at: at)
                guard let kind = Adapter.ResidualKind(rawValue: text) else { throw value.shapeError(at, "add or skipNorm, found '\(text)'") }
                residual = kind
            case "include": include = try value.texts(at: at)
            case "patterns": patterns = try value.named(at: at)
            case "attention": attention = try PatternSpec(yaml: value, at: at)
            case "inputNorm": inputNorm = try PatternSpec(yaml: value, at: at)
            default: mlp = try PatternSpec(yaml: value, at: at)
            }
        }
        guard let name else { throw node.shapeError(path, "a 'name'") }
        guard let residual else { throw node.shapeError(path, "a 'residual' (add or skipNorm)") }
        guard let attention else { throw node.shapeError(path, "an 'attention' pattern") }
        guard let inputNorm else { throw node.shapeError(path, "an 'inputNorm' pattern") }
        self.name = name
        self.residual = residual
        self.attention = attention
        self.inputNorm = inputNorm
    }
}

extension AdapterFile.IndexSource: YAMLReadable {
    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        for (key, value, at) in try node.fields(at: path, keys: ["nodeName", "metadata"]) {
            if key == "nodeName" { nodeName = try value.text(at: at) } else { metadata = try AdapterFile.MetadataSource(yaml: value, at: at) }
        }
        guard (nodeName == nil) != (metadata == nil) else { throw node.shapeError(path, "one of 'nodeName' or 'metadata'") }
    }
}

extension AdapterFile.MetadataSource: YAMLReadable {
    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        var key: String?, pattern: String?
        for (name, value, at) in try node.fields(at: path, keys: ["key", "pattern"]) {
            if name == "key" { key = try value.text(at: at) } else { pattern = try value.text(at: at) }
        }
        guard let key, let pattern else { throw node.shapeError(path, "both 'key' and 'pattern'") }
        self.key = key
        self.pattern = pattern
    }
}

/// A plain string value of a mapping (`with: {role: q}`).
struct YAMLText: YAMLReadable {
    var value: String

    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        value = try node.text(at: path)
    }
}

extension PatternLibraryFile: YAMLReadable {
    init(yaml node: Yams.Node, at path: YAMLPath) throws {
        var patterns: [String: PatternSpec]?
        for (key, value, at) in try node.fields(at: path, keys: ["description", "include", "layerIndex", "moduleName", "patterns"]) {
            switch key {
            case "description": description = try value.text(at: at)
            case "include": include = try value.texts(at: at)
            case "layerIndex": layerIndex = try value.list(at: at)
            case "moduleName": moduleName = try value.list(at: at)
            default: patterns = try value.named(at: at)
            }
        }
        guard let patterns else { throw node.shapeError(path, "'patterns:'") }
        self.patterns = patterns
    }
}
