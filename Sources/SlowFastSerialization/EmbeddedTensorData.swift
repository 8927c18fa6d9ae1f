import SlowFastIR
import CProtobufC
import ONNXProto

/// Values stored in the decoded model file: `raw_data`, or a typed field such as
/// `float_data` re-laid as raw bytes when asked.
final class EmbeddedTensorData: TensorData {
    private let origin: WireOrigin
    private let tensorName: String
    private let elementType: ElementType?

    init(origin: WireOrigin, tensorName: String, elementType: ElementType?) {
        self.origin = origin
        self.tensorName = tensorName
        self.elementType = elementType
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let proto = origin.typed(Onnx__TensorProto.self).pointee
        if proto.has_raw_data != 0 {
            return try body(UnsafeRawBufferPointer(start: proto.raw_data.data, count: proto.raw_data.len))
        }
        return try typedFieldBytes(proto).withUnsafeBytes(body)
    }

    /// Values stored in typed fields, re-laid as `raw_data` bytes.
    private func typedFieldBytes(_ proto: Onnx__TensorProto) throws -> [UInt8] {
        func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
        guard let type = elementType else { return [] }
        switch type {
        case .float, .complex64: return bytes(wireScalars(proto.float_data, proto.n_float_data))
        case .double, .complex128: return bytes(wireScalars(proto.double_data, proto.n_double_data))
        case .int64: return bytes(wireScalars(proto.int64_data, proto.n_int64_data))
        case .uint64: return bytes(wireScalars(proto.uint64_data, proto.n_uint64_data))
        case .uint32: return bytes(wireScalars(proto.uint64_data, proto.n_uint64_data).map { UInt32(truncatingIfNeeded: $0) })
        case .int32: return bytes(wireScalars(proto.int32_data, proto.n_int32_data))
        case .int16, .uint16, .float16, .bfloat16:
            return bytes(wireScalars(proto.int32_data, proto.n_int32_data).map { UInt16(truncatingIfNeeded: $0) })
        case .int8, .uint8, .bool, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0:
            return wireScalars(proto.int32_data, proto.n_int32_data).map { UInt8(truncatingIfNeeded: $0) }
        case .int4, .uint4, .float4e2m1:
            // Typed int4 data stores one packed byte per int32 entry.
            return wireScalars(proto.int32_data, proto.n_int32_data).map { UInt8(truncatingIfNeeded: $0) }
        case .string, .undefined:
            throw TensorDataError.unsupportedType(tensor: tensorName, type: type.name, wanted: "raw bytes")
        }
    }
}
