import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import ONNXProto

/// Reads binary `.onnx` files into the IR.
///
/// The protobuf is decoded by libprotobuf-c; tensor values stay where they are (in the
/// decoded tree, or in external data files that are checked now and mapped only when values
/// are asked for).
public enum ModelReader {
    /// Reads the model at `path`, validating every external data reference.
    public static func read(path: String) throws -> Model {
        // A FIFO or device is refused by type before it is opened (opening a FIFO blocks until
        // a writer comes); O_NONBLOCK covers one swapped in between the two calls.
        var before = stat()
        if PathCall.stat(path, &before) == 0, (before.st_mode & S_IFMT) != S_IFREG, (before.st_mode & S_IFMT) != S_IFDIR {
            throw ModelReadError.cannotOpen(file: path, reason: "not a regular file (\(SystemError.fileTypeName(before.st_mode)))")
        }
        let descriptor = PathCall.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw ModelReadError.cannotOpen(file: path, reason: SystemError.lastErrorText)
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw ModelReadError.cannotOpen(file: path, reason: SystemError.lastErrorText)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelReadError.cannotOpen(file: path, reason: "not a regular file (\(SystemError.fileTypeName(info.st_mode)))")
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw ModelReadError.notONNX(file: path, reason: "the file is empty") }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), mapping != MAP_FAILED else {
            throw ModelReadError.cannotOpen(file: path, reason: SystemError.lastErrorText)
        }
        defer { munmap(mapping, size) }
        let bytes = mapping.assumingMemoryBound(to: UInt8.self)
        // libprotobuf-c recurses without a limit: measure the nesting before it sees the bytes.
        do { try NestingScan.check(bytes, count: size) } catch let failure as NestingScan.Failure {
            switch failure {
            case .tooDeep(let graphs, let limit):
                throw ModelReadError.notONNX(file: path, reason: graphs
                    ? "subgraphs nest more than \(limit) levels deep"
                    : "messages nest more than \(limit) levels deep")
            case .malformed(let reason):
                throw ModelReadError.notONNX(file: path, reason: "broken protobuf: \(reason)")
            }
        }
        guard let root = onnx__model_proto__unpack(nil, size, bytes) else {
            throw ModelReadError.notONNX(file: path, reason: "the protobuf does not decode as a ModelProto; truncated or not a model")
        }
        let decoded = DecodedModel(root: root)
        guard root.pointee.graph != nil else {
            throw ModelReadError.notONNX(file: path, reason: "it decodes, but has no graph")
        }
        guard root.pointee.has_ir_version != 0 else {
            throw ModelReadError.notONNX(file: path, reason: "it decodes, but has no ir_version")
        }
        var decoder = WireDecoder(owner: decoded, external: try ExternalDataResolver(modelFile: path), file: path)
        let model = try decoder.model(root)
        model.sourcePath = path
        return model
    }
}

/// Converts a decoded tree into IR objects that keep their origin.
struct WireDecoder {
    let owner: DecodedModel
    let external: ExternalDataResolver
    let file: String

    init(owner: DecodedModel, external: ExternalDataResolver, file: String) {
        self.owner = owner
        self.external = external
        self.file = file
    }

    mutating func model(_ message: UnsafeMutablePointer<Onnx__ModelProto>) throws -> Model {
        let proto = message.pointee
        let model = Model(graph: try graph(proto.graph!), origin: WireOrigin(owner, message))
        model.irVersion = proto.has_ir_version != 0 ? proto.ir_version : nil
        model.opsetImports = opsets(proto.opset_import, proto.n_opset_import)
        model.producerName = wireString(proto.producer_name)
        model.producerVersion = wireString(proto.producer_version)
        model.domain = wireString(proto.domain)
        model.modelVersion = proto.has_model_version != 0 ? proto.model_version : nil
        model.docString = wireString(proto.doc_string)
        model.metadataProps = pairs(proto.metadata_props, proto.n_metadata_props)
        model.functions = try wireArray(proto.functions, proto.n_functions).map { try function($0) }
        return model
    }

    func opsets(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__OperatorSetIdProto>?>?, _ count: Int) -> [OpsetImport] {
        wireArray(pointer, count).map {
            OpsetImport(domain: wireString($0.pointee.domain), version: $0.pointee.has_version != 0 ? $0.pointee.version : nil)
        }
    }

    func pairs(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?, _ count: Int) -> [StringPair] {
        wireArray(pointer, count).map { StringPair(wireString($0.pointee.key) ?? "", wireString($0.pointee.value) ?? "") }
    }

    mutating func function(_ message: UnsafeMutablePointer<Onnx__FunctionProto>) throws -> Function {
        let proto = message.pointee
        return Function(
            name: wireString(proto.name), domain: wireString(proto.domain), overload: wireString(proto.overload),
            inputs: wireStrings(proto.input, proto.n_input), outputs: wireStrings(proto.output, proto.n_output),
            attributeNames: wireStrings(proto.attribute, proto.n_attribute),
            nodes: try wireArray(proto.node, proto.n_node).map { try node($0) },
            opsetImports: opsets(proto.opset_import, proto.n_opset_import),
            docString: wireString(proto.doc_string), origin: WireOrigin(owner, message))
    }

    mutating func graph(_ message: UnsafeMutablePointer<Onnx__GraphProto>) throws -> Graph {
        let proto = message.pointee
        let graph = Graph(name: wireString(proto.name))
        graph.origin = WireOrigin(owner, message)
        graph.docString = wireString(proto.doc_string)
        graph.initializers = try wireArray(proto.initializer, proto.n_initializer).map { try tensor($0) }
        graph.inputs = wireArray(proto.input, proto.n_input).map { valueInfo($0) }
        graph.outputs = wireArray(proto.output, proto.n_output).map { valueInfo($0) }
        graph.valueInfo = wireArray(proto.value_info, proto.n_value_info).map { valueInfo($0) }
        graph.metadataProps = pairs(proto.metadata_props, proto.n_metadata_props)
        graph.nodes = try wireArray(proto.node, proto.n_node).map { try node($0) }
        return graph
    }

    mutating func node(_ message: UnsafeMutablePointer<Onnx__NodeProto>) throws -> Node {
        let proto = message.pointee
        return Node(
            name: wireString(proto.name), opType: wireString(proto.op_type), domain: wireString(proto.domain),
            overload: wireString(proto.overload),
            inputs: wireStrings(proto.input, proto.n_input), outputs: wireStrings(proto.output, proto.n_output),
            attributes: try wireArray(proto.attribute, proto.n_attribute).map { try attribute($0) },
            docString: wireString(proto.doc_string), metadataProps: pairs(proto.metadata_props, proto.n_metadata_props),
            origin: WireOrigin(owner, message))
    }

    mutating func attribute(_ message: UnsafeMutablePointer<Onnx__AttributeProto>) throws -> Attribute {
        let proto = message.pointee
        let typeNumber: Int32? = proto.has_type != 0 ? Int32(bitPattern: proto.type.rawValue) : nil
        let value: AttributeValue
        switch typeNumber.flatMap(AttributeType.init(rawValue:)) {
        case .float?: value = .float(proto.f)
        case .int?: value = .int(proto.i)
        case .string?: value = .string(proto.s.len > 0 ? Array(UnsafeBufferPointer(start: proto.s.data, count: proto.s.len)) : [])
        case .tensor? where proto.t != nil: value = .tensor(try tensor(proto.t))
        case .graph? where proto.g != nil: value = .graph(try graph(proto.g))
        case .floats?: value = .floats(wireScalars(proto.floats, proto.n_floats))
        case .ints?: value = .ints(wireScalars(proto.ints, proto.n_ints))
        case .strings?:
            value = .strings((0 ..< proto.n_strings).map {
                let item = proto.strings[$0]
                return item.len > 0 ? Array(UnsafeBufferPointer(start: item.data, count: item.len)) : []
            })
        case .tensors?: value = .tensors(try wireArray(proto.tensors, proto.n_tensors).map { try tensor($0) })
        case .graphs?: value = .graphs(try wireArray(proto.graphs, proto.n_graphs).map { try graph($0) })
        default: value = .preserved
        }
        return Attribute(name: wireString(proto.name), value: value, refAttrName: wireString(proto.ref_attr_name),
                         docString: wireString(proto.doc_string), typeNumber: typeNumber, origin: WireOrigin(owner, message))
    }

    func valueInfo(_ message: UnsafeMutablePointer<Onnx__ValueInfoProto>) -> ValueInfo {
        let proto = message.pointee
        let type = proto.type.map { ValueType(kind: WireDecoder.kind($0), origin: WireOrigin(owner, $0)) }
        return ValueInfo(name: wireString(proto.name), type: type, docString: wireString(proto.doc_string),
                         origin: WireOrigin(owner, message))
    }

    static func kind(_ message: UnsafeMutablePointer<Onnx__TypeProto>) -> ValueKind {
        let proto = message.pointee
        switch proto.value_case {
        case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
            guard let tensor = proto.tensor_type?.pointee else { return .unknown }
            return .tensor(elementType: tensor.has_elem_type != 0 ? tensor.elem_type : nil, shape: tensor.shape.map(shape))
        case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
            guard let tensor = proto.sparse_tensor_type?.pointee else { return .unknown }
            return .sparseTensor(elementType: tensor.has_elem_type != 0 ? tensor.elem_type : nil, shape: tensor.shape.map(shape))
        case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
            return .sequence(proto.sequence_type?.pointee.elem_type.map(kind))
        case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
            return .optional(proto.optional_type?.pointee.elem_type.map(kind))
        case ONNX__TYPE_PROTO__VALUE_MAP_TYPE:
            guard let map = proto.map_type?.pointee else { return .unknown }
            return .map(keyType: map.has_key_type != 0 ? map.key_type : nil, value: map.value_type.map(kind))
        case ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE:
            return .opaque(domain: wireString(proto.opaque_type?.pointee.domain), name: wireString(proto.opaque_type?.pointee.name))
        default:
            return .unknown
        }
    }

    static func shape(_ message: UnsafeMutablePointer<Onnx__TensorShapeProto>) -> TensorShape {
        TensorShape(wireArray(message.pointee.dim, message.pointee.n_dim).map { dimension in
            switch dimension.pointee.value_case {
            case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: return .value(dimension.pointee.dim_value)
            case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM: return .param(wireString(dimension.pointee.dim_param) ?? "")
            default: return .unknown
            }
        })
    }

    mutating func tensor(_ message: UnsafeMutablePointer<Onnx__TensorProto>) throws -> Tensor {
        let proto = message.pointee
        let name = wireString(proto.name)
        let dims = wireScalars(proto.dims, proto.n_dims)
        let dataType: Int32? = proto.has_data_type != 0 ? proto.data_type : nil
        let origin = WireOrigin(owner, message)
        var storage = TensorStorage.embedded(EmbeddedTensorData(origin: origin, tensorName: name ?? "",
                                                                elementType: dataType.flatMap(ElementType.init(rawValue:))))
        if proto.has_data_location != 0 && proto.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            let entries = pairs(proto.external_data, proto.n_external_data)
            let expected = Tensor.elementCount(dims).flatMap { dataType.flatMap(ElementType.init(rawValue:))?.byteCount(elements: $0) }
            // Dims whose size cannot be computed (negative, or a product past 2^37 elements) would
            // skip the size check: such a tensor is refused, not taken on trust.
            if expected == nil, let type = dataType.flatMap(ElementType.init(rawValue:)), type.byteCount(elements: 1) != nil {
                throw ModelReadError.tensorDimsInvalid(file: file, tensor: name ?? "", dims: dims)
            }
            storage = .external(try external.resolve(tensor: name ?? "", entries: entries, expectedBytes: expected))
        } else if proto.has_raw_data != 0, let type = dataType.flatMap(ElementType.init(rawValue:)), type.byteCount(elements: 1) != nil {
            // raw_data longer (or shorter) than the dims say: bytes no reader should see or copy.
            guard let expected = Tensor.elementCount(dims).flatMap({ type.byteCount(elements: $0) }) else {
                throw ModelReadError.tensorDimsInvalid(file: file, tensor: name ?? "", dims: dims)
            }
            guard proto.raw_data.len == expected else {
                throw ModelReadError.rawDataSizeMismatch(file: file, tensor: name ?? "", expected: expected, stored: proto.raw_data.len)
            }
        }
        return Tensor(name: name, dataType: dataType, dims: dims, docString: wireString(proto.doc_string),
                      storage: storage, origin: origin)
    }
}
