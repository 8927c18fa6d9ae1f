import CProtobufC
import ONNXProto

extension Tensor {
    /// Calls `body` with the tensor's values in ONNX `raw_data` layout (little-endian).
    ///
    /// External values are read from the memory-mapped file; values stored in typed fields
    /// (`float_data`, `int64_data`, ...) are converted into a temporary buffer.
    public func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let label = name ?? ""
        switch storage {
        case .bytes(let bytes):
            return try bytes.withUnsafeBytes(body)
        case .external(let location):
            do {
                return try location.withUnsafeBytes(body)
            } catch let error as SystemError {
                throw TensorDataError.ioFailure(tensor: label, file: location.location, reason: error.message)
            }
        case .wire:
            guard let origin = wireOrigin else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            let proto = origin.typed(Onnx__TensorProto.self).pointee
            if proto.has_raw_data != 0 {
                return try body(UnsafeRawBufferPointer(start: proto.raw_data.data, count: proto.raw_data.len))
            }
            return try typedFieldBytes(proto).withUnsafeBytes(body)
        }
    }

    /// The values as float32 (float32, float16, bfloat16 and float64 tensors are converted).
    public func floatValues() throws -> [Float] {
        let label = name ?? ""
        guard let type = elementType, let count = elementCount else {
            throw TensorDataError.unsupportedType(tensor: label, type: ElementType.name(of: dataType ?? 0), wanted: "float32")
        }
        return try withRawBytes { raw -> [Float] in
            guard let needed = type.byteCount(elements: count), raw.count == needed else {
                throw TensorDataError.sizeMismatch(tensor: label, expected: type.byteCount(elements: count) ?? 0, stored: raw.count)
            }
            switch type {
            case .float:
                return (0 ..< count).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            case .double:
                return (0 ..< count).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
            case .float16:
                return (0 ..< count).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
            case .bfloat16:
                return (0 ..< count).map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) << 16) }
            default:
                throw TensorDataError.unsupportedType(tensor: label, type: type.name, wanted: "float32")
            }
        }
    }

    /// The values as Int64 (int64, int32, int16, int8, uint8, uint16, uint32 and bool tensors).
    public func int64Values() throws -> [Int64] {
        let label = name ?? ""
        guard let type = elementType, let count = elementCount, let width = type.bitWidth, width >= 8 else {
            throw TensorDataError.unsupportedType(tensor: label, type: ElementType.name(of: dataType ?? 0), wanted: "int64")
        }
        return try withRawBytes { raw -> [Int64] in
            guard raw.count == count * width / 8 else {
                throw TensorDataError.sizeMismatch(tensor: label, expected: count * width / 8, stored: raw.count)
            }
            switch type {
            case .int64: return (0 ..< count).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
            case .int32: return (0 ..< count).map { Int64(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            case .uint32: return (0 ..< count).map { Int64(raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
            case .int16: return (0 ..< count).map { Int64(raw.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self)) }
            case .uint16: return (0 ..< count).map { Int64(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
            case .int8: return (0 ..< count).map { Int64(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case .uint8, .bool: return (0 ..< count).map { Int64(raw.load(fromByteOffset: $0, as: UInt8.self)) }
            default: throw TensorDataError.unsupportedType(tensor: label, type: type.name, wanted: "int64")
            }
        }
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
            throw TensorDataError.unsupportedType(tensor: name ?? "", type: type.name, wanted: "raw bytes")
        }
    }
}
