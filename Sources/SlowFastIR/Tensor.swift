/// A tensor's values in ONNX `raw_data` layout (little-endian), wherever they are kept.
///
/// The IR defines this protocol and reads through it; serialization implements it for values
/// in the decoded model file and in external data files. Bytes are lent to a closure and must
/// not be kept after it returns.
public protocol TensorData: AnyObject {
    /// Calls `body` with the values; throws when they cannot be read (a data file that shrank,
    /// an element type with no raw layout).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R
}

/// Values kept in a file beside the model (ONNX external data).
public protocol ExternalTensorData: TensorData {
    /// The `location` entry as the model wrote it, relative to the model's folder.
    var location: String { get }
    var offset: Int { get }
    var length: Int { get }
}

/// Values made when asked for that are too large to hold at once (a derived parameter of a
/// 70B model is tens of megabytes, ten of them hundreds): the writer takes them in pieces,
/// in order, and never holds them whole. `withBytes` still lends them whole to a reader that
/// needs that.
public protocol ChunkedTensorData: TensorData {
    /// Bytes in all, as `withBytes` would lend them.
    var byteCount: Int { get }
    /// Calls `body` with consecutive pieces of the values, in order, `byteCount` bytes in all.
    func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws
}

extension ChunkedTensorData {
    /// The pieces put together, for `withBytes` (a reader that needs the values whole).
    public func withAssembledBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let whole = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        defer { whole.deallocate() }
        var at = 0
        try forEachChunk { piece in
            guard at + piece.count <= byteCount, let source = piece.baseAddress else { return }
            (whole.baseAddress! + at).copyMemory(from: source, byteCount: piece.count)
            at += piece.count
        }
        return try body(UnsafeRawBufferPointer(start: whole.baseAddress, count: at))
    }
}

/// Bytes owned by a tensor that a pass created. Immutable once made.
public final class TensorBytes: TensorData, @unchecked Sendable {
    /// Invariant: allocated by `init` with `count` bytes, freed only in `deinit`.
    private let base: UnsafeMutableRawPointer
    public let count: Int

    /// Copies `bytes`.
    public init(copying bytes: UnsafeRawBufferPointer) {
        count = bytes.count
        base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        if count > 0, let source = bytes.baseAddress { base.copyMemory(from: source, byteCount: count) }
    }

    /// Copies the bytes of `values`; the pointer is used only inside `withUnsafeBytes`.
    private init<T>(values: [T]) {
        count = values.count * MemoryLayout<T>.stride
        base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        values.withUnsafeBytes { source in
            if let address = source.baseAddress, count > 0 { base.copyMemory(from: address, byteCount: count) }
        }
    }

    /// Little-endian float32 values (every platform we build for is little-endian).
    public convenience init(floats: [Float]) { self.init(values: floats) }

    public convenience init(int64s: [Int64]) { self.init(values: int64s) }

    /// float32 values stored as `type` (float32, float16, bfloat16 or float64), rounded to
    /// nearest even.
    public convenience init(floats: [Float], as type: ElementType) {
        switch type {
        case .float16: self.init(values: floats.map { Float16($0).bitPattern })
        case .bfloat16: self.init(values: floats.map(TensorBytes.bfloat16Bits))
        case .double: self.init(values: floats.map(Double.init))
        default: self.init(values: floats)
        }
    }

    /// The bfloat16 bits of `value`: the upper half of its float32 bits, rounded to nearest even.
    package static func bfloat16Bits(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    public convenience init(bytes: [UInt8]) { self.init(values: bytes) }

    deinit { base.deallocate() }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }
}

/// One value repeated `count` times (a per-channel parameter that starts equal in every
/// channel), made when asked for: an 80-layer model's new per-channel parameters are 37 MB this way
/// never held.
public final class RepeatedTensorBytes: ChunkedTensorData, @unchecked Sendable {
    private let element: TensorBytes
    public let count: Int
    public let byteCount: Int

    /// `value` stored as `type` (float32, float16, bfloat16 or float64), `count` times.
    public init(_ value: Float, count: Int, as type: ElementType) {
        element = TensorBytes(floats: [value], as: type)
        self.count = count
        byteCount = element.count * count
    }

    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let perChunk = max(1, min(count, (1 << 20) / max(element.count, 1)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(perChunk * element.count, 1), alignment: 64)
        defer { buffer.deallocate() }
        element.withUnsafeBytes { one in
            for index in 0 ..< perChunk { (buffer.baseAddress! + index * one.count).copyMemory(from: one.baseAddress!, byteCount: one.count) }
        }
        var left = count
        while left > 0 {
            let now = min(left, perChunk)
            try body(UnsafeRawBufferPointer(start: buffer.baseAddress, count: now * element.count))
            left -= now
        }
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R { try withAssembledBytes(body) }
}

/// Where a tensor's values are.
public enum TensorStorage {
    /// In the model file itself (`raw_data` or a typed field such as `float_data`); read only
    /// when a caller asks.
    case embedded(any TensorData)
    /// A region of an external data file, read only when a caller asks.
    case external(any ExternalTensorData)
    /// Bytes made in memory (by a pass), little-endian `raw_data` layout.
    case bytes(TensorBytes)
    /// Values made when asked for (e.g. from a checkpoint at write time), so a model whose
    /// every weight is replaced never holds them all in memory.
    case computed(any TensorData)

    /// The values, wherever they are.
    public var data: any TensorData {
        switch self {
        case .embedded(let data): return data
        case .external(let data): return data
        case .bytes(let bytes): return bytes
        case .computed(let data): return data
        }
    }
}

/// An ONNX tensor: name, type, dims and where its values are.
///
/// Fields this type does not model (segments, metadata, typed data fields) are kept from
/// the decoded file and written back unchanged.
public final class Tensor {
    public var name: String?
    public var dims: [Int64]
    /// Raw `TensorProto.DataType` number; see `elementType` for the typed view.
    public var dataType: Int32?
    public var docString: String?
    public var storage: TensorStorage
    /// The decoded message this tensor came from, if any (owned by Serialization).
    package var origin: (any MessageOrigin)?

    public init(name: String?, elementType: ElementType, dims: [Int64], storage: TensorStorage) {
        self.name = name
        self.dataType = elementType.rawValue
        self.dims = dims
        self.storage = storage
        self.docString = nil
        self.origin = nil
    }

    package init(name: String?, dataType: Int32?, dims: [Int64], docString: String?, storage: TensorStorage, origin: (any MessageOrigin)?) {
        self.name = name
        self.dataType = dataType
        self.dims = dims
        self.docString = docString
        self.storage = storage
        self.origin = origin
    }

    public var elementType: ElementType? { dataType.flatMap(ElementType.init(rawValue:)) }

    /// Number of elements (product of dims; 1 for a scalar); nil when a dim is negative or
    /// the product overflows, which only a malformed file can make.
    public var elementCount: Int? { Tensor.elementCount(dims) }

    /// Bytes the values take in `raw_data` layout, when the element type has a fixed width.
    public var byteCount: Int? { elementCount.flatMap { elementType?.byteCount(elements: $0) } }

    package static func elementCount(_ dims: [Int64]) -> Int? {
        var count = 1
        for dim in dims {
            guard dim >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
            guard !overflow, product <= Int(Int32.max) * 64 else { return nil }
            count = product
        }
        return count
    }

    /// True when the values live in an external data file.
    public var isExternal: Bool {
        if case .external = storage { return true }
        return false
    }

    /// Convenience for new float32 tensors made by passes.
    public convenience init(name: String, dims: [Int64], floats: [Float]) {
        self.init(name: name, elementType: .float, dims: dims, storage: .bytes(TensorBytes(floats: floats)))
    }
}
