/// A bounded walk over the protobuf wire bytes of a ModelProto, run before libprotobuf-c
/// unpacks them.
///
/// libprotobuf-c recurses once per nested message and has no depth limit, so a small file
/// with `If` subgraphs nested thousands deep, or a `sequence` type nested 50,000 deep,
/// overflows the stack inside it. This walk decodes only tags and lengths, descends only into
/// the fields through which ONNX messages recurse (graphs, nodes, attributes, value infos,
/// types, functions), never recurses deeper than the limits, and visits each byte once.
/// It also refuses wire data libprotobuf-c would refuse anyway (a length past the end, a
/// group, a varint over 10 bytes), so nothing it lets through is deeper than it measured.
enum NestingScan {
    /// Graph levels (`If`/`Loop`/`Scan` bodies inside bodies). Real exports use a handful.
    static let graphLimit = 64
    /// Message levels of any kind (types nested in types count here).
    static let messageLimit = 256

    enum Failure: Error, Equatable {
        case tooDeep(graphs: Bool, limit: Int)
        case malformed(String)
    }

    /// The ONNX messages that can contain themselves, directly or not.
    private enum Kind {
        case model, trainingInfo, function, graph, node, attribute, valueInfo, type, sequenceType, mapType, optionalType

        /// The kind of the sub-message in field `number`, or nil for a field not descended into
        /// (scalars, strings, tensors and other messages that cannot nest).
        func child(_ number: UInt64) -> Kind? {
            switch (self, number) {
            case (.model, 7): return .graph
            case (.model, 20): return .trainingInfo
            case (.model, 25): return .function
            case (.trainingInfo, 1), (.trainingInfo, 2): return .graph
            case (.function, 7): return .node
            case (.function, 11): return .attribute
            case (.function, 12): return .valueInfo
            case (.graph, 1): return .node
            case (.graph, 11), (.graph, 12), (.graph, 13): return .valueInfo
            case (.node, 5): return .attribute
            case (.attribute, 6), (.attribute, 11): return .graph
            case (.attribute, 14), (.attribute, 15): return .type
            case (.valueInfo, 2): return .type
            case (.type, 4): return .sequenceType
            case (.type, 5): return .mapType
            case (.type, 9): return .optionalType
            case (.sequenceType, 1), (.optionalType, 1): return .type
            case (.mapType, 2): return .type
            default: return nil
            }
        }
    }

    /// Throws `Failure` when the model nests deeper than the limits or its wire data is broken.
    static func check(_ bytes: UnsafePointer<UInt8>, count: Int,
                      graphLimit: Int = graphLimit, messageLimit: Int = messageLimit) throws {
        var scan = Scanner(bytes: bytes, graphLimit: graphLimit, messageLimit: messageLimit)
        try scan.message(.model, from: 0, to: count, depth: 1, graphs: 0)
    }

    private struct Scanner {
        let bytes: UnsafePointer<UInt8>
        let graphLimit: Int
        let messageLimit: Int

        init(bytes: UnsafePointer<UInt8>, graphLimit: Int, messageLimit: Int) {
            self.bytes = bytes
            self.graphLimit = graphLimit
            self.messageLimit = messageLimit
        }

        func varint(_ position: inout Int, _ end: Int) throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard position < end else { throw Failure.malformed("a varint runs past the end of its message") }
                guard shift < 64 else { throw Failure.malformed("a varint is longer than 10 bytes") }
                let byte = bytes[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }

        func message(_ kind: Kind, from start: Int, to end: Int, depth: Int, graphs: Int) throws {
            var position = start
            while position < end {
                let tag = try varint(&position, end)
                let number = tag >> 3
                switch tag & 7 {
                case 0: _ = try varint(&position, end)
                case 1:
                    guard end - position >= 8 else { throw Failure.malformed("a fixed64 field runs past the end of its message") }
                    position += 8
                case 5:
                    guard end - position >= 4 else { throw Failure.malformed("a fixed32 field runs past the end of its message") }
                    position += 4
                case 2:
                    let length = try varint(&position, end)
                    guard length <= UInt64(end - position) else {
                        throw Failure.malformed("a field of \(length) bytes runs past the end of its message")
                    }
                    let fieldEnd = position + Int(length)
                    if let child = kind.child(number) {
                        let childGraphs = child == .graph ? graphs + 1 : graphs
                        guard childGraphs <= graphLimit else { throw Failure.tooDeep(graphs: true, limit: graphLimit) }
                        guard depth + 1 <= messageLimit else { throw Failure.tooDeep(graphs: false, limit: messageLimit) }
                        try message(child, from: position, to: fieldEnd, depth: depth + 1, graphs: childGraphs)
                    }
                    position = fieldEnd
                default:
                    throw Failure.malformed("wire type \(tag & 7) (groups are not used by ONNX)")
                }
            }
        }
    }
}
