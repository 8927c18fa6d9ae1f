import SlowFastIR
import CProtobufC
import ONNXProto

/// How the writer stores one tensor's values.
enum TensorPlacement {
    /// As read: raw_data, typed fields or external entries of the decoded message.
    case asRead
    /// In `raw_data`: the encoder copies these values into its arena.
    case inline(any TensorData)
    /// In an external file at `location`, `offset`, `length`.
    case external(location: String, offset: Int, length: Int, others: [StringPair])
}

/// Builds libprotobuf-c messages from the IR. Each message starts as a shallow copy of the
/// decoded one it came from (so unmodelled and unknown fields survive) and the fields the IR
/// models are then set from the IR. All new memory belongs to `arena`.
struct WireEncoder {
    let arena = EncodeArena()
    /// Decides where each tensor's values go; called once per tensor.
    let place: (Tensor) throws -> TensorPlacement

    func model(_ model: Model) throws -> UnsafeMutablePointer<Onnx__ModelProto> {
        let message = start(model.origin, onnx__model_proto__init)
        message.pointee.has_ir_version = model.irVersion != nil ? 1 : 0
        message.pointee.ir_version = model.irVersion ?? 0
        (message.pointee.n_opset_import, message.pointee.opset_import) = opsets(model.opsetImports)
        message.pointee.producer_name = arena.cString(model.producerName)
        message.pointee.producer_version = arena.cString(model.producerVersion)
        message.pointee.domain = arena.cString(model.domain)
        message.pointee.has_model_version = model.modelVersion != nil ? 1 : 0
        message.pointee.model_version = model.modelVersion ?? 0
        message.pointee.doc_string = arena.cString(model.docString)
        message.pointee.graph = try graph(model.graph)
        (message.pointee.n_metadata_props, message.pointee.metadata_props) = pairs(model.metadataProps)
        (message.pointee.n_functions, message.pointee.functions) = try list(model.functions.map(function))
        return message
    }

    /// A message copied from its origin, or a fresh initialised one.
    private func start<T>(_ origin: (any MessageOrigin)?, _ initializer: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let message = arena.allocate(T.self, count: 1)
        if let origin = origin as? WireOrigin { message.pointee = origin.typed(T.self).pointee } else { initializer(message) }
        return message
    }

    private func list<T>(_ items: [UnsafeMutablePointer<T>]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<T>?>?) {
        (items.count, arena.pointers(items))
    }

    private func strings(_ items: [String]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        (items.count, arena.strings(items))
    }

    private func opsets(_ imports: [OpsetImport]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Onnx__OperatorSetIdProto>?>?) {
        list(imports.map { entry in
            let message = arena.message(onnx__operator_set_id_proto__init)
            message.pointee.domain = arena.cString(entry.domain)
            message.pointee.has_version = entry.version != nil ? 1 : 0
            message.pointee.version = entry.version ?? 0
            return message
        })
    }

    private func pairs(_ items: [StringPair]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?) {
        list(items.map { pair in
            let message = arena.message(onnx__string_string_entry_proto__init)
            message.pointee.key = arena.cString(pair.key)
            message.pointee.value = arena.cString(pair.value)
            return message
        })
    }

    private func function(_ function: Function) throws -> UnsafeMutablePointer<Onnx__FunctionProto> {
        let message = start(function.origin, onnx__function_proto__init)
        message.pointee.name = arena.cString(function.name)
        message.pointee.domain = arena.cString(function.domain)
        message.pointee.overload = arena.cString(function.overload)
        (message.pointee.n_input, message.pointee.input) = strings(function.inputs)
        (message.pointee.n_output, message.pointee.output) = strings(function.outputs)
        (message.pointee.n_attribute, message.pointee.attribute) = strings(function.attributeNames)
        (message.pointee.n_node, message.pointee.node) = try list(function.nodes.map(node))
        (message.pointee.n_opset_import, message.pointee.opset_import) = opsets(function.opsetImports)
        message.pointee.doc_string = arena.cString(function.docString)
        return message
    }

    func graph(_ graph: Graph) throws -> UnsafeMutablePointer<Onnx__GraphProto> {
        let message = start(graph.origin, onnx__graph_proto__init)
        message.pointee.name = arena.cString(graph.name)
        message.pointee.doc_string = arena.cString(graph.docString)
        (message.pointee.n_node, message.pointee.node) = try list(graph.nodes.map(node))
        (message.pointee.n_initializer, message.pointee.initializer) = try list(graph.initializers.map(tensor))
        (message.pointee.n_input, message.pointee.input) = list(graph.inputs.map(valueInfo))
        (message.pointee.n_output, message.pointee.output) = list(graph.outputs.map(valueInfo))
        (message.pointee.n_value_info, message.pointee.value_info) = list(graph.valueInfo.map(valueInfo))
        (message.pointee.n_metadata_props, message.pointee.metadata_props) = pairs(graph.metadataProps)
        return message
    }

    private func node(_ node: Node) throws -> UnsafeMutablePointer<Onnx__NodeProto> {
        let message = start(node.origin, onnx__node_proto__init)
        message.pointee.name = arena.cString(node.name)
        message.pointee.op_type = arena.cString(node.opType)
        message.pointee.domain = arena.cString(node.domain)
        message.pointee.overload = arena.cString(node.overload)
        (message.pointee.n_input, message.pointee.input) = strings(node.inputs)
        (message.pointee.n_output, message.pointee.output) = strings(node.outputs)
        (message.pointee.n_attribute, message.pointee.attribute) = try list(node.attributes.map(attribute))
        message.pointee.doc_string = arena.cString(node.docString)
        (message.pointee.n_metadata_props, message.pointee.metadata_props) = pairs(node.metadataProps)
        return message
    }

    private func attribute(_ attribute: Attribute) throws -> UnsafeMutablePointer<Onnx__AttributeProto> {
        // A value whose kind changed since reading must not inherit the old value fields.
        let kindUnchanged: Bool
        if case .preserved = attribute.value { kindUnchanged = true } else {
            kindUnchanged = attribute.typeNumber == attribute.value.attributeType.rawValue
        }
        let message = start(kindUnchanged ? attribute.origin : nil, onnx__attribute_proto__init)
        message.pointee.name = arena.cString(attribute.name)
        message.pointee.ref_attr_name = arena.cString(attribute.refAttrName)
        message.pointee.doc_string = arena.cString(attribute.docString)
        let typeNumber: Int32?
        if case .preserved = attribute.value { typeNumber = attribute.typeNumber } else {
            typeNumber = attribute.value.attributeType.rawValue
        }
        message.pointee.has_type = typeNumber != nil ? 1 : 0
        message.pointee.type = Onnx__AttributeProto__AttributeType(rawValue: UInt32(bitPattern: typeNumber ?? 0))
        switch attribute.value {
        case .float(let value): message.pointee.has_f = 1; message.pointee.f = value
        case .int(let value): message.pointee.has_i = 1; message.pointee.i = value
        case .string(let value): message.pointee.has_s = 1; message.pointee.s = arena.bytes(value)
        case .tensor(let value): message.pointee.t = try tensor(value)
        case .graph(let value): message.pointee.g = try graph(value)
        case .floats(let values): message.pointee.n_floats = values.count; message.pointee.floats = arena.scalars(values)
        case .ints(let values): message.pointee.n_ints = values.count; message.pointee.ints = arena.scalars(values)
        case .strings(let values):
            message.pointee.n_strings = values.count
            let array = arena.allocate(ProtobufCBinaryData.self, count: values.count)
            for (position, value) in values.enumerated() { array[position] = arena.bytes(value) }
            message.pointee.strings = values.isEmpty ? nil : array
        case .tensors(let values): (message.pointee.n_tensors, message.pointee.tensors) = try list(values.map(tensor))
        case .graphs(let values): (message.pointee.n_graphs, message.pointee.graphs) = try list(values.map(graph))
        case .preserved: break
        }
        return message
    }

    private func valueInfo(_ info: ValueInfo) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let message = start(info.origin, onnx__value_info_proto__init)
        message.pointee.name = arena.cString(info.name)
        message.pointee.doc_string = arena.cString(info.docString)
        if let type = info.type {
            message.pointee.type = type.origin.flatMap { ($0 as? WireOrigin)?.typed(Onnx__TypeProto.self) } ?? typeProto(type.kind)
        } else {
            message.pointee.type = nil
        }
        return message
    }

    private func typeProto(_ kind: ValueKind) -> UnsafeMutablePointer<Onnx__TypeProto> {
        let message = arena.message(onnx__type_proto__init)
        switch kind {
        case .tensor(let elementType, let shape):
            let tensor = arena.message(onnx__type_proto__tensor__init)
            tensor.pointee.has_elem_type = elementType != nil ? 1 : 0
            tensor.pointee.elem_type = elementType ?? 0
            tensor.pointee.shape = shape.map(shapeProto)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
            message.pointee.tensor_type = tensor
        case .sparseTensor(let elementType, let shape):
            let tensor = arena.message(onnx__type_proto__sparse_tensor__init)
            tensor.pointee.has_elem_type = elementType != nil ? 1 : 0
            tensor.pointee.elem_type = elementType ?? 0
            tensor.pointee.shape = shape.map(shapeProto)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE
            message.pointee.sparse_tensor_type = tensor
        case .sequence(let element):
            let sequence = arena.message(onnx__type_proto__sequence__init)
            sequence.pointee.elem_type = element.map(typeProto)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE
            message.pointee.sequence_type = sequence
        case .optional(let element):
            let optional = arena.message(onnx__type_proto__optional__init)
            optional.pointee.elem_type = element.map(typeProto)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE
            message.pointee.optional_type = optional
        case .map(let keyType, let value):
            let map = arena.message(onnx__type_proto__map__init)
            map.pointee.has_key_type = keyType != nil ? 1 : 0
            map.pointee.key_type = keyType ?? 0
            map.pointee.value_type = value.map(typeProto)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_MAP_TYPE
            message.pointee.map_type = map
        case .opaque(let domain, let name):
            let opaque = arena.message(onnx__type_proto__opaque__init)
            opaque.pointee.domain = arena.cString(domain)
            opaque.pointee.name = arena.cString(name)
            message.pointee.value_case = ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE
            message.pointee.opaque_type = opaque
        case .unknown:
            break
        }
        return message
    }

    private func shapeProto(_ shape: TensorShape) -> UnsafeMutablePointer<Onnx__TensorShapeProto> {
        let message = arena.message(onnx__tensor_shape_proto__init)
        (message.pointee.n_dim, message.pointee.dim) = list(shape.dims.map { dimension in
            let entry = arena.message(onnx__tensor_shape_proto__dimension__init)
            switch dimension {
            case .value(let value):
                entry.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                entry.pointee.dim_value = value
            case .param(let name):
                entry.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                entry.pointee.dim_param = arena.cString(name)
            case .unknown:
                break
            }
            return entry
        })
        return message
    }

    private func tensor(_ tensor: Tensor) throws -> UnsafeMutablePointer<Onnx__TensorProto> {
        let message = start(tensor.origin, onnx__tensor_proto__init)
        message.pointee.name = arena.cString(tensor.name)
        message.pointee.n_dims = tensor.dims.count
        message.pointee.dims = arena.scalars(tensor.dims)
        message.pointee.has_data_type = tensor.dataType != nil ? 1 : 0
        message.pointee.data_type = tensor.dataType ?? 0
        message.pointee.doc_string = arena.cString(tensor.docString)
        switch try place(tensor) {
        case .asRead:
            break
        case .inline(let data):
            clearValues(message)
            message.pointee.has_raw_data = 1
            message.pointee.raw_data = try data.withBytes { arena.bytes($0) }
        case .external(let location, let offset, let length, let others):
            clearValues(message)
            message.pointee.has_data_location = 1
            message.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
            let entries = [StringPair("location", location), StringPair("offset", String(offset)), StringPair("length", String(length))] + others
            (message.pointee.n_external_data, message.pointee.external_data) = pairs(entries)
        }
        return message
    }

    /// Drops every value field, before the writer puts the values somewhere else.
    private func clearValues(_ message: UnsafeMutablePointer<Onnx__TensorProto>) {
        message.pointee.n_float_data = 0; message.pointee.float_data = nil
        message.pointee.n_int32_data = 0; message.pointee.int32_data = nil
        message.pointee.n_int64_data = 0; message.pointee.int64_data = nil
        message.pointee.n_double_data = 0; message.pointee.double_data = nil
        message.pointee.n_uint64_data = 0; message.pointee.uint64_data = nil
        message.pointee.n_string_data = 0; message.pointee.string_data = nil
        message.pointee.has_raw_data = 0; message.pointee.raw_data = ProtobufCBinaryData(len: 0, data: nil)
        message.pointee.n_external_data = 0; message.pointee.external_data = nil
        message.pointee.has_data_location = 0
        message.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT
    }
}
