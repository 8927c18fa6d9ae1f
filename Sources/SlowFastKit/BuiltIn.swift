/// The adapters and JSON Schemas compiled into the library from `Adapters/*.yaml` and
/// `Schemas/*.json` (the files in the repository are the source of truth; the build embeds
/// them), so an installed `slowfast` needs nothing beside it.
public enum BuiltIn {
    /// The built-in adapters, in file-name order.
    public static func adapters() throws -> [Adapter] {
        try loaders().map { try $0() }
    }

    /// The built-in adapters, in file-name order, each parsed when called.
    public static func loaders() -> [() throws -> Adapter] {
        EmbeddedFiles.adapters.filter { !Adapter.isPatternLibrary($0.name) }.map { file in
            {
                try Adapter.parse(file.text, source: "built-in adapter \(file.name)") { name in
                    patternLibraries[name].map { ($0, "built-in \(name)") }
                }
            }
        }
    }

    /// The built-in pattern libraries (`Adapters/*.patterns.yaml`) by file name: what an
    /// adapter's `include:` finds when no file of that name is beside it.
    public static var patternLibraries: [String: String] {
        Dictionary(EmbeddedFiles.adapters.filter { Adapter.isPatternLibrary($0.name) }.map { ($0.name, $0.text) }, uniquingKeysWith: { a, _ in a })
    }

    /// Names of the built-in adapters (file names without `.yaml`; pattern libraries excluded).
    public static var adapterNames: [String] {
        EmbeddedFiles.adapters.filter { !Adapter.isPatternLibrary($0.name) }.map { String($0.name.dropLast(".yaml".count)) }
    }

    /// The YAML text of built-in adapter (or pattern library, `NAME.patterns`) `name`.
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

    /// The layer description of `model` by the adapters this choice names; built-in adapters
    /// are loaded only as far as discovery tries them.
    public func discover(_ model: Model) throws -> ModelLayout {
        if case .auto = self { return try LayerDiscovery.discover(model, loading: BuiltIn.loaders()) }
        return try LayerDiscovery.discover(model, adapters: try adapters())
    }

    /// The adapters this choice names.
    public func adapters() throws -> [Adapter] {
        switch self {
        case .auto:
            return try BuiltIn.adapters()
        case .file(let path):
            return [try Adapter.load(path: path, library: BuiltIn.patternLibraries)]
        case .builtIn(let name):
            guard let adapter = try BuiltIn.adapters().first(where: { $0.name == name }) else {
                throw AdapterError(file: name, message: "no built-in adapter of that name; built in: "
                    + BuiltIn.adapterNames.joined(separator: ", "))
            }
            return [adapter]
        }
    }
}
