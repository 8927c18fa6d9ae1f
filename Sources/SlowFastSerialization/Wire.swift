import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import ONNXProto

// The C boundary. Every decoded message tree has exactly one owner (`DecodedModel`), which
// frees it in deinit; IR objects that came from it keep a `WireOrigin` (owner + pointer), so
// the pointer never outlives the tree. Nothing here is public.

/// Owns one tree unpacked by libprotobuf-c.
final class DecodedModel {
    // Invariant: returned by onnx__model_proto__unpack, freed exactly once in deinit.
    let root: UnsafeMutablePointer<Onnx__ModelProto>

    init(root: UnsafeMutablePointer<Onnx__ModelProto>) { self.root = root }

    deinit { onnx__model_proto__free_unpacked(root, nil) }
}

/// The decoded message an IR object was read from. Keeping it lets the writer reproduce the
/// fields the IR does not model (and unknown fields) exactly as they were.
struct WireOrigin: MessageOrigin {
    let owner: DecodedModel
    let pointer: UnsafeMutableRawPointer

    init<T>(_ owner: DecodedModel, _ pointer: UnsafeMutablePointer<T>) {
        self.owner = owner
        self.pointer = UnsafeMutableRawPointer(pointer)
    }

    func typed<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        pointer.assumingMemoryBound(to: T.self)
    }
}

/// Reads a possibly-NULL C string. The one place wire bytes become Strings: decoded by
/// `ByteString`, so bytes that are not UTF-8 survive the trip back (`EncodeArena.cString`).
@inline(__always)
func wireString(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
    pointer.map { ByteString.decode(cString: $0) }
}

/// The `count` non-NULL elements of a protobuf-c repeated message field.
@inline(__always)
func wireArray<T>(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ count: Int) -> [UnsafeMutablePointer<T>] {
    guard let pointer, count > 0 else { return [] }
    var result: [UnsafeMutablePointer<T>] = []
    result.reserveCapacity(count)
    for position in 0 ..< count { if let element = pointer[position] { result.append(element) } }
    return result
}

/// The strings of a protobuf-c repeated string field.
@inline(__always)
func wireStrings(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int) -> [String] {
    guard let pointer, count > 0 else { return [] }
    return (0 ..< count).map { wireString(pointer[$0]) ?? "" }
}

/// The values of a protobuf-c repeated scalar field.
@inline(__always)
func wireScalars<T>(_ pointer: UnsafeMutablePointer<T>?, _ count: Int) -> [T] {
    guard let pointer, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: pointer, count: count))
}

/// Memory for messages being encoded. Everything allocated here is freed when the arena is.
final class EncodeArena {
    // Invariant: each pointer came from malloc/calloc/strdup here and is freed once, in deinit.
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for block in blocks { free(block) } }

    /// Zeroed storage for `count` values of T.
    func allocate<T>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = calloc(max(count, 1), MemoryLayout<T>.stride)!
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// One message, initialised by `initializer` (the protobuf-c `*_init` function).
    func message<T>(_ initializer: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = allocate(T.self, count: 1)
        initializer(pointer)
        return pointer
    }

    /// The one place Strings become wire bytes: `ByteString.encode`, the inverse of `wireString`.
    func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        let copy = ByteString.withCString(string) { strdup($0)! }
        blocks.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    func cString(_ string: String?) -> UnsafeMutablePointer<CChar>? {
        string.map { cString($0) }
    }

    func strings(_ strings: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard !strings.isEmpty else { return nil }
        let array = allocate(UnsafeMutablePointer<CChar>?.self, count: strings.count)
        for (position, string) in strings.enumerated() { array[position] = cString(string) }
        return array
    }

    func scalars<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let array = allocate(T.self, count: values.count)
        values.withUnsafeBufferPointer { array.update(from: $0.baseAddress!, count: values.count) }
        return array
    }

    func pointers<T>(_ values: [UnsafeMutablePointer<T>]) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        guard !values.isEmpty else { return nil }
        let array = allocate(UnsafeMutablePointer<T>?.self, count: values.count)
        for (position, value) in values.enumerated() { array[position] = value }
        return array
    }

    func bytes(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        bytes.withUnsafeBytes { self.bytes($0) }
    }

    /// A copy of `bytes` owned by the arena.
    func bytes(_ bytes: UnsafeRawBufferPointer) -> ProtobufCBinaryData {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
        let copy = allocate(UInt8.self, count: bytes.count)
        UnsafeMutableRawPointer(copy).copyMemory(from: source, byteCount: bytes.count)
        return ProtobufCBinaryData(len: bytes.count, data: copy)
    }
}
