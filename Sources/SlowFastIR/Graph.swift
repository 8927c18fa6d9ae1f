/// The type of a value: the parts of `TypeProto` that passes read and write.
public indirect enum ValueKind: Equatable {
    case tensor(elementType: Int32?, shape: TensorShape?)
    case sparseTensor(elementType: Int32?, shape: TensorShape?)
    case sequence(ValueKind?)
    case map(keyType: Int32?, value: ValueKind?)
    case optional(ValueKind?)
    case opaque(domain: String?, name: String?)
    case unknown
}

/// One dimension of a tensor shape.
public enum Dimension: Equatable, Hashable {
    case value(Int64)
    case param(String)
    case unknown
}

/// A tensor shape: nil rank is "unknown rank", represented by `TensorShape?` being nil.
public struct TensorShape: Equatable {
    public var dims: [Dimension]
    public init(_ dims: [Dimension]) { self.dims = dims }
}

/// A value's type, keeping the decoded message (denotations and fields we do not model)
/// until the kind is changed.
public struct ValueType {
    public var kind: ValueKind { didSet { origin = nil } }
    package var origin: (any MessageOrigin)?

    public init(_ kind: ValueKind) {
        self.kind = kind
        self.origin = nil
    }

    package init(kind: ValueKind, origin: (any MessageOrigin)?) {
        self.kind = kind
        self.origin = origin
    }

    /// A tensor type of the given element type and dims.
    public static func tensor(_ type: ElementType, _ dims: [Dimension]) -> ValueType {
        ValueType(.tensor(elementType: type.rawValue, shape: TensorShape(dims)))
    }
}

/// A graph input, output or `value_info` entry.
public struct ValueInfo {
    public var name: String?
    public var type: ValueType?
    public var docString: String?
    package var origin: (any MessageOrigin)?

    public init(name: String, type: ValueType?) {
        self.name = name
        self.type = type
        self.docString = nil
        self.origin = nil
    }

    package init(name: String?, type: ValueType?, docString: String?, origin: (any MessageOrigin)?) {
        self.name = name
        self.type = type
        self.docString = docString
        self.origin = origin
    }
}

/// An ONNX graph: nodes in their stored order, initializers, inputs, outputs, value infos.
///
/// Values are referred to by name, as ONNX does; `index()` gives producer and consumer
/// lookups, and must be taken again after the node list changes.
public final class Graph {
    public var name: String?
    public var nodes: [Node]
    public var initializers: [Tensor]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var valueInfo: [ValueInfo]
    public var docString: String?
    public var metadataProps: [StringPair]
    package var origin: (any MessageOrigin)?

    public init(name: String?, nodes: [Node] = [], initializers: [Tensor] = [], inputs: [ValueInfo] = [],
                outputs: [ValueInfo] = [], valueInfo: [ValueInfo] = []) {
        self.name = name
        self.nodes = nodes
        self.initializers = initializers
        self.inputs = inputs
        self.outputs = outputs
        self.valueInfo = valueInfo
        self.docString = nil
        self.metadataProps = []
        self.origin = nil
    }

    /// The initializer called `name`, if any.
    public func initializer(named name: String) -> Tensor? {
        initializers.first { $0.name == name }
    }

    /// Every graph nested in this one's node attributes (If/Loop/Scan bodies), recursively.
    public var allSubgraphs: [Graph] {
        var result: [Graph] = []
        for node in nodes {
            for attribute in node.attributes {
                for graph in attribute.value.subgraphs {
                    result.append(graph)
                    result.append(contentsOf: graph.allSubgraphs)
                }
            }
        }
        return result
    }
}

/// A model-local function (`FunctionProto`).
public final class Function {
    public var name: String?
    public var domain: String?
    public var overload: String?
    public var inputs: [String]
    public var outputs: [String]
    public var attributeNames: [String]
    public var nodes: [Node]
    public var opsetImports: [OpsetImport]
    public var docString: String?
    package var origin: (any MessageOrigin)?

    public init(name: String, domain: String, inputs: [String], outputs: [String], attributeNames: [String] = [],
                nodes: [Node], opsetImports: [OpsetImport]) {
        self.name = name
        self.domain = domain
        self.overload = nil
        self.inputs = inputs
        self.outputs = outputs
        self.attributeNames = attributeNames
        self.nodes = nodes
        self.opsetImports = opsetImports
        self.docString = nil
        self.origin = nil
    }

    package init(name: String?, domain: String?, overload: String?, inputs: [String], outputs: [String],
         attributeNames: [String], nodes: [Node], opsetImports: [OpsetImport], docString: String?, origin: (any MessageOrigin)?) {
        self.name = name
        self.domain = domain
        self.overload = overload
        self.inputs = inputs
        self.outputs = outputs
        self.attributeNames = attributeNames
        self.nodes = nodes
        self.opsetImports = opsetImports
        self.docString = docString
        self.origin = origin
    }
}

/// An ONNX model: the graph, its operator sets, functions and metadata.
public final class Model {
    public var irVersion: Int64?
    public var opsetImports: [OpsetImport]
    public var producerName: String?
    public var producerVersion: String?
    public var domain: String?
    public var modelVersion: Int64?
    public var docString: String?
    public var graph: Graph
    public var functions: [Function]
    public var metadataProps: [StringPair]
    /// Where the model was read from, for error messages and relative external data.
    public package(set) var sourcePath: String?
    package var origin: (any MessageOrigin)?

    public init(graph: Graph, irVersion: Int64, opsetImports: [OpsetImport]) {
        self.irVersion = irVersion
        self.opsetImports = opsetImports
        self.graph = graph
        self.functions = []
        self.metadataProps = []
        self.origin = nil
    }

    package init(graph: Graph, origin: (any MessageOrigin)?) {
        self.graph = graph
        self.opsetImports = []
        self.functions = []
        self.metadataProps = []
        self.origin = origin
    }

    /// The version of the operator set `domain` imports, if it does ("" and "ai.onnx" are one).
    public func opsetVersion(_ domain: String) -> Int64? {
        opsetImports.first { Domain.isONNX(domain) ? Domain.isONNX($0.domain) : $0.domain == domain }?.version
    }

    /// Every tensor in the model: initializers and attribute tensors, in graphs, subgraphs
    /// and functions, each once.
    public var allTensors: [Tensor] {
        var result: [Tensor] = []
        func visit(nodes: [Node]) {
            for node in nodes {
                for attribute in node.attributes {
                    result.append(contentsOf: attribute.value.tensors)
                    for graph in attribute.value.subgraphs { visit(graph: graph) }
                }
            }
        }
        func visit(graph: Graph) {
            result.append(contentsOf: graph.initializers)
            visit(nodes: graph.nodes)
        }
        visit(graph: graph)
        for function in functions { visit(nodes: function.nodes) }
        return result
    }
}
