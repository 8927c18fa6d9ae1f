/// A key/value pair as ONNX stores metadata (`StringStringEntryProto`).
public struct StringPair: Equatable, Sendable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// One `opset_import` entry: the operator set version a graph is written against.
public struct OpsetImport: Equatable, Sendable {
    /// nil when the field is absent on the wire; "" and absent both mean ai.onnx.
    public var domain: String?
    public var version: Int64?
    public init(domain: String?, version: Int64?) {
        self.domain = domain
        self.version = version
    }
}

/// Names of the standard operator domains, so passes do not scatter string literals.
public enum Domain {
    public static let onnx = ""
    public static let onnxAlias = "ai.onnx"
    public static let microsoft = "com.microsoft"
    public static let ml = "ai.onnx.ml"
    /// Our own domain, for the model-local functions we emit.
    public static let slowFast = "ai.slowfast"

    /// True when `domain` names the default ONNX operator set.
    public static func isONNX(_ domain: String?) -> Bool {
        domain == nil || domain == "" || domain == onnxAlias
    }
}

/// Hands out value and node names that are not used anywhere in a model yet.
///
/// Seeded with every name of a graph, its subgraphs and functions, so a pass that adds
/// values can never capture or shadow an existing one. Allocation is deterministic:
/// `base`, then `base_1`, `base_2`, ... in order.
public struct NameAllocator {
    private var taken: Set<String>

    public init(model: Model) {
        taken = []
        collect(model.graph)
        for function in model.functions {
            taken.formUnion(function.inputs)
            taken.formUnion(function.outputs)
            for node in function.nodes { collect(node) }
        }
    }

    public init(graph: Graph) {
        taken = []
        collect(graph)
    }

    private mutating func collect(_ graph: Graph) {
        for value in graph.inputs { if let name = value.name { taken.insert(name) } }
        for value in graph.outputs { if let name = value.name { taken.insert(name) } }
        for value in graph.valueInfo { if let name = value.name { taken.insert(name) } }
        for tensor in graph.initializers { if let name = tensor.name { taken.insert(name) } }
        for node in graph.nodes { collect(node) }
    }

    private mutating func collect(_ node: Node) {
        if let name = node.name { taken.insert(name) }
        taken.formUnion(node.inputs)
        taken.formUnion(node.outputs)
        for attribute in node.attributes {
            for graph in attribute.value.subgraphs { collect(graph) }
        }
    }

    /// Marks `name` as used (for names chosen by the caller, such as canonical weight names).
    public mutating func reserve(_ name: String) -> Bool {
        taken.insert(name).inserted
    }

    /// True when `name` is used somewhere already.
    public func isTaken(_ name: String) -> Bool { taken.contains(name) }

    /// A name starting with `base` that is not used yet; it is reserved on return.
    public mutating func fresh(_ base: String) -> String {
        if taken.insert(base).inserted { return base }
        var counter = 1
        while true {
            let candidate = "\(base)_\(counter)"
            if taken.insert(candidate).inserted { return candidate }
            counter += 1
        }
    }
}
