extension Tensor {
    /// Calls `body` with the tensor's values in ONNX `raw_data` layout (little-endian).
    /// The bytes are lent for the call only.
    public func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try storage.data.withBytes(body)
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

}
