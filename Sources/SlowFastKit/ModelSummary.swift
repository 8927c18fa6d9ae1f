import SlowFastAdapters
import SlowFastIR
import SlowFastPasses
import SlowFastWeights

/// What `slowfast inspect` reports about a model; encodes to the JSON of
/// `Schemas/inspect.schema.json`.
public struct ModelSummary: Encodable, Equatable {
    public struct Producer: Codable, Equatable {
        public var name: String
        public var version: String
    }

    public struct Opset: Codable, Equatable {
        public var domain: String
        public var version: Int64
    }

    public struct GraphName: Codable, Equatable {
        public var name: String
    }

    /// A graph input or output. `shape` entries are an Int (fixed), a String (symbolic) or null.
    public struct Value: Codable, Equatable {
        public var name: String
        public var type: String
        public var elemType: String?
        public var shape: [DimensionSummary]?

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(type, forKey: .type)
            try container.encode(elemType, forKey: .elemType)
            try container.encode(shape, forKey: .shape)
        }
    }

    public struct OpCount: Codable, Equatable {
        public var domain: String
        public var opType: String
        public var count: Int
    }

    public struct Nodes: Codable, Equatable {
        public var count: Int
        public var countWithSubgraphs: Int
        public var byOp: [OpCount]
    }

    public struct Initializers: Codable, Equatable {
        public var count: Int
        public var inlineBytes: Int
        public var externalBytes: Int
        public var externalFiles: [String]
    }

    public struct FunctionSummary: Codable, Equatable {
        public var domain: String
        public var name: String
        public var overload: String
        public var nodeCount: Int
    }

    public var schemaVersion = 1
    public var file: String
    public var irVersion: Int64
    public var producer: Producer
    public var domain: String
    public var modelVersion: Int64
    public var docString: String
    public var opsets: [Opset]
    public var graph: GraphName
    public var inputs: [Value]
    public var outputs: [Value]
    public var nodes: Nodes
    public var initializers: Initializers
    public var functions: [FunctionSummary]
    public var subgraphs: Int
    public var metadata: [String: String]
    /// What earlier slowfast rewrites made (hybrid layers, SReLU sites), one report per pass.
    public var rewrites: RewriteSummary
}

/// One dimension in a summary: fixed, symbolic, or unknown (null in JSON).
public enum DimensionSummary: Codable, Equatable {
    case fixed(Int64)
    case symbolic(String)
    case unknown

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .unknown }
        else if let value = try? container.decode(Int64.self) { self = .fixed(value) }
        else { self = .symbolic(try container.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .fixed(let value): try container.encode(value)
        case .symbolic(let name): try container.encode(name)
        case .unknown: try container.encodeNil()
        }
    }
}

extension ModelSummary {
    /// Summarises `model`; `file` is the path shown in the report.
    public init(model: Model, file: String) {
        self.file = file
        irVersion = model.irVersion ?? 0
        producer = Producer(name: model.producerName ?? "", version: model.producerVersion ?? "")
        domain = model.domain ?? ""
        modelVersion = model.modelVersion ?? 0
        docString = model.docString ?? ""
        opsets = model.opsetImports.map { Opset(domain: Domain.isONNX($0.domain) ? "" : ($0.domain ?? ""), version: $0.version ?? 0) }
        graph = GraphName(name: model.graph.name ?? "")
        inputs = model.graph.inputs.map(ModelSummary.value)
        outputs = model.graph.outputs.map(ModelSummary.value)

        var counts: [String: [String: Int]] = [:]
        var total = 0
        var subgraphCount = 0
        func count(_ graph: Graph) {
            for node in graph.nodes {
                counts[node.domainName, default: [:]][node.op, default: 0] += 1
                total += 1
                for attribute in node.attributes {
                    for subgraph in attribute.value.subgraphs {
                        subgraphCount += 1
                        count(subgraph)
                    }
                }
            }
        }
        count(model.graph)
        let byOp = counts.keys.sorted().flatMap { domain in
            counts[domain]!.keys.sorted().map { OpCount(domain: domain, opType: $0, count: counts[domain]![$0]!) }
        }
        nodes = Nodes(count: model.graph.nodes.count, countWithSubgraphs: total, byOp: byOp)
        subgraphs = subgraphCount

        var inlineBytes = 0, externalBytes = 0
        var files = Set<String>()
        for tensor in model.graph.initializers {
            switch tensor.storage {
            case .external(let location):
                externalBytes += location.length
                files.insert(location.location)
            default:
                inlineBytes += (try? tensor.withRawBytes { $0.count }) ?? 0
            }
        }
        initializers = Initializers(count: model.graph.initializers.count, inlineBytes: inlineBytes,
                                    externalBytes: externalBytes, externalFiles: files.sorted())
        functions = model.functions.map {
            FunctionSummary(domain: $0.domain ?? "", name: $0.name ?? "", overload: $0.overload ?? "", nodeCount: $0.nodes.count)
        }
        var metadata: [String: String] = [:]
        for pair in model.metadataProps { metadata[pair.key] = pair.value }
        self.metadata = metadata
        rewrites = RewriteSummary(model: model)
    }

    static func value(_ info: ValueInfo) -> Value {
        let kind = info.type?.kind ?? .unknown
        var elemType: String?
        var shape: [DimensionSummary]?
        if case .tensor(let type, let tensorShape) = kind {
            elemType = type.map(ElementType.name(of:))
            shape = tensorShape?.dims.map {
                switch $0 {
                case .value(let value): return .fixed(value)
                case .param(let name): return .symbolic(name)
                case .unknown: return .unknown
                }
            }
        }
        return Value(name: info.name ?? "", type: describe(kind), elemType: elemType, shape: shape)
    }

    /// ONNX-style type text: `tensor(float32)`, `sequence(tensor(int64))`, `map(int64,tensor(float32))`.
    public static func describe(_ kind: ValueKind?) -> String {
        guard let kind else { return "unknown" }
        switch kind {
        case .tensor(let type, _): return "tensor(\(type.map(ElementType.name(of:)) ?? "unknown"))"
        case .sparseTensor(let type, _): return "sparse_tensor(\(type.map(ElementType.name(of:)) ?? "unknown"))"
        case .sequence(let element): return "sequence(\(describe(element)))"
        case .optional(let element): return "optional(\(describe(element)))"
        case .map(let key, let value): return "map(\(key.map(ElementType.name(of:)) ?? "unknown"),\(describe(value)))"
        case .opaque: return "opaque"
        case .unknown: return "unknown"
        }
    }
}
