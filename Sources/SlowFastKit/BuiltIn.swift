/// The adapters and JSON Schemas compiled into the library from `Adapters/*.yaml` and
/// `Schemas/*.json` (the files in the repository are the source of truth; the build embeds
/// them), so an installed `slowfast` needs nothing beside it.
public enum BuiltIn {
    /// The built-in adapters, in file-name order.
    public static func adapters() throws -> [Adapter] {
        try EmbeddedFiles.adapters.map { try Adapter.parse($0.text, source: "built-in adapter \($0.name)") }
    }

    /// Names of the built-in adapters (file names without `.yaml`).
    public static var adapterNames: [String] {
        EmbeddedFiles.adapters.map { String($0.name.dropLast(".yaml".count)) }
    }

    /// The YAML text of built-in adapter `name`.
    public static func adapterText(named name: String) -> String? {
        EmbeddedFiles.adapters.first { $0.name == name + ".yaml" }?.text
    }

    /// Names of the JSON Schemas of the files the tool reads and writes (without `.schema.json`).
    public static var schemaNames: [String] {
        EmbeddedFiles.schemas.map { $0.name.hasSuffix(".schema.json") ? String($0.name.dropLast(".schema.json".count)) : $0.name }
    }

    /// The text of schema `name` (`weight-map`, `inspect`, ...), if there is one.
    public static func schema(named name: String) -> String? {
        EmbeddedFiles.schemas.first { $0.name == name + ".schema.json" || $0.name == name }?.text
    }
}

/// Which adapters layer discovery tries.
public enum AdapterChoice: Equatable, Sendable {
    /// Every built-in adapter; the first that matches every layer wins.
    case auto
    /// One built-in adapter by name.
    case builtIn(String)
    /// A user's adapter file.
    case file(String)

    /// The command line's rule: `auto`, a path (it ends in `.yaml`/`.yml` or contains `/`),
    /// else a built-in adapter's name.
    public init(argument: String) {
        if argument == "auto" {
            self = .auto
        } else if argument.hasSuffix(".yaml") || argument.hasSuffix(".yml") || argument.contains("/") {
            self = .file(argument)
        } else {
            self = .builtIn(argument)
        }
    }

    /// The adapters this choice names.
    public func adapters() throws -> [Adapter] {
        switch self {
        case .auto:
            return try BuiltIn.adapters()
        case .file(let path):
            return [try Adapter.load(path: path)]
        case .builtIn(let name):
            guard let adapter = try BuiltIn.adapters().first(where: { $0.name == name }) else {
                throw AdapterError(file: name, message: "no built-in adapter of that name; built in: "
                    + BuiltIn.adapterNames.joined(separator: ", "))
            }
            return [adapter]
        }
    }
}
