/// `AttributeProto.AttributeType` numbers.
public enum AttributeType: Int32, Sendable {
    case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5
    case floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10
    case sparseTensor = 11, sparseTensors = 12, typeProto = 13, typeProtos = 14
}

/// The value of a node attribute. Kinds passes never touch (sparse tensors, type protos)
/// are `preserved`: written back exactly as they were read.
public enum AttributeValue {
    case float(Float)
    case int(Int64)
    case string([UInt8])
    case tensor(Tensor)
    case graph(Graph)
    case floats([Float])
    case ints([Int64])
    case strings([[UInt8]])
    case tensors([Tensor])
    case graphs([Graph])
    case preserved

    /// The graphs this value holds (bodies of If/Loop/Scan).
    public var subgraphs: [Graph] {
        switch self {
        case .graph(let graph): return [graph]
        case .graphs(let graphs): return graphs
        default: return []
        }
    }

    /// The tensors this value holds.
    public var tensors: [Tensor] {
        switch self {
        case .tensor(let tensor): return [tensor]
        case .tensors(let tensors): return tensors
        default: return []
        }
    }

    /// The attribute type number of this value, for new attributes.
    package var attributeType: AttributeType {
        switch self {
        case .float: return .float
        case .int: return .int
        case .string: return .string
        case .tensor: return .tensor
        case .graph: return .graph
        case .floats: return .floats
        case .ints: return .ints
        case .strings: return .strings
        case .tensors: return .tensors
        case .graphs: return .graphs
        case .preserved: return .undefined
        }
    }
}

/// A node attribute: a named value, or a reference to an attribute of the enclosing function.
public struct Attribute {
    public var name: String?
    public var value: AttributeValue
    /// Set when the value is taken from the calling function's attribute of this name.
    public var refAttrName: String?
    public var docString: String?
    /// The raw type number as read (kept for types this IR does not model).
    package var typeNumber: Int32?
    package var origin: (any MessageOrigin)?

    public init(_ name: String, _ value: AttributeValue) {
        self.name = name
        self.value = value
        self.refAttrName = nil
        self.docString = nil
        self.typeNumber = value.attributeType.rawValue
        self.origin = nil
    }

    package init(name: String?, value: AttributeValue, refAttrName: String?, docString: String?, typeNumber: Int32?, origin: (any MessageOrigin)?) {
        self.name = name
        self.value = value
        self.refAttrName = refAttrName
        self.docString = docString
        self.typeNumber = typeNumber
        self.origin = origin
    }

    public static func int(_ name: String, _ value: Int64) -> Attribute { Attribute(name, .int(value)) }
    public static func float(_ name: String, _ value: Float) -> Attribute { Attribute(name, .float(value)) }
    public static func ints(_ name: String, _ value: [Int64]) -> Attribute { Attribute(name, .ints(value)) }
    public static func string(_ name: String, _ value: String) -> Attribute { Attribute(name, .string(Array(value.utf8))) }
    public static func tensor(_ name: String, _ value: Tensor) -> Attribute { Attribute(name, .tensor(value)) }
}

/// One operator application. Inputs and outputs are value names; "" marks an omitted
/// optional input or output, as in ONNX.
public final class Node {
    public var name: String?
    public var opType: String?
    public var domain: String?
    public var overload: String?
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [Attribute]
    public var docString: String?
    public var metadataProps: [StringPair]
    package var origin: (any MessageOrigin)?

    public init(_ opType: String, domain: String = Domain.onnx, name: String?, inputs: [String], outputs: [String],
                attributes: [Attribute] = []) {
        self.opType = opType
        self.domain = domain.isEmpty ? nil : domain
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.overload = nil
        self.docString = nil
        self.metadataProps = []
        self.origin = nil
    }

    package init(name: String?, opType: String?, domain: String?, overload: String?, inputs: [String], outputs: [String],
         attributes: [Attribute], docString: String?, metadataProps: [StringPair], origin: (any MessageOrigin)?) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.overload = overload
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.docString = docString
        self.metadataProps = metadataProps
        self.origin = origin
    }

    /// The op type, "" when absent.
    public var op: String { opType ?? "" }

    /// The operator domain with "" for the default ONNX domain ("ai.onnx" folded into "").
    public var domainName: String { Domain.isONNX(domain) ? "" : (domain ?? "") }

    /// The attribute called `name`, if present.
    public func attribute(_ name: String) -> AttributeValue? {
        attributes.first { $0.name == name }?.value
    }

    /// Integer attribute value, if present and an int.
    public func intAttribute(_ name: String) -> Int64? {
        if case .int(let value)? = attribute(name) { return value }
        return nil
    }

    /// Float attribute value, if present and a float.
    public func floatAttribute(_ name: String) -> Float? {
        if case .float(let value)? = attribute(name) { return value }
        return nil
    }

    /// Ints attribute value, if present.
    public func intsAttribute(_ name: String) -> [Int64]? {
        if case .ints(let value)? = attribute(name) { return value }
        return nil
    }

    /// String attribute as UTF-8 text, if present.
    public func stringAttribute(_ name: String) -> String? {
        if case .string(let bytes)? = attribute(name) { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }

    /// Metadata value for `key` (e.g. `pkg.torch.onnx.name_scopes` of dynamo exports).
    public func metadata(_ key: String) -> String? {
        metadataProps.first { $0.key == key }?.value
    }
}
