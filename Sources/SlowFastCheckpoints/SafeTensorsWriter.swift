import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Orders strings by their UTF-8 bytes (same as Unicode code-point order, and Python's sort).
@inline(__always)
func utf8Less(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// Receives one tensor's bytes from a provider closure during a write.
///
/// Write exactly the tensor's byte count (little-endian, row-major), in as many calls as you
/// like. Writing more than that throws at once; writing less makes the whole write fail.
/// Do not keep the sink after the provider returns.
public final class SafeTensorsByteSink {
    private let output: BufferedFileOutput
    private let path: String
    /// The tensor being written.
    public let tensor: String
    /// Bytes the tensor needs in total.
    public let expected: Int
    /// Bytes written so far.
    public private(set) var written = 0
    /// Bytes still to write.
    public var remaining: Int { expected - written }

    init(output: BufferedFileOutput, path: String, tensor: String, expected: Int) {
        self.output = output
        self.path = path
        self.tensor = tensor
        self.expected = expected
    }

    /// Appends raw bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count <= remaining else {
            throw SafeTensorsError.providerByteCountMismatch(path: path, tensor: tensor, expected: expected, written: written + bytes.count)
        }
        try output.write(bytes)
        written += bytes.count
    }

    /// Appends the bytes of an array.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends the bytes of a `Data`.
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }
}

/// Writes one safetensors file atomically and deterministically.
///
/// Tensors are added in any order; the header lists `__metadata__` first (when non-empty) and
/// then tensors sorted by name (UTF-8 byte order), and data is laid out in that same order.
/// The header is compact JSON padded with spaces to a multiple of 8 bytes, so the same inputs
/// always give byte-identical files. Data comes either from an in-memory array or from a
/// provider closure called once per tensor while writing, so a checkpoint never needs to be in
/// memory at once.
public struct SafeTensorsWriter {
    /// A tensor to write: name, dtype, shape and where its bytes come from.
    public struct Tensor {
        enum Source {
            case bytes([UInt8])
            case provider((SafeTensorsByteSink) throws -> Void)
        }
        /// Tensor name; `__metadata__` is reserved and refused.
        public let name: String
        /// Element type.
        public let dtype: SafeTensorsDType
        /// Dimensions (each >= 0).
        public let shape: [Int]
        let source: Source

        /// A tensor whose bytes are already in memory (`bytes.count` must match the shape).
        public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.source = .bytes(bytes)
        }

        /// A tensor whose bytes `provider` writes into the sink when the file is written.
        ///
        /// The provider is called exactly once per write, must write exactly the byte count the
        /// shape needs, and may throw to abort the whole write (the temp file is removed).
        public init(name: String, dtype: SafeTensorsDType, shape: [Int],
                    provider: @escaping (SafeTensorsByteSink) throws -> Void) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.source = .provider(provider)
        }

        /// Byte count from shape and dtype, nil on overflow or negative dims.
        public var byteCount: Int? { SafeTensorsEntry.checkedByteCount(shape: shape, dtype: dtype) }
    }

    /// `__metadata__` pairs written into the header (omitted when empty).
    public var metadata: [String: String]
    /// Tensors added so far, in the order added.
    public private(set) var tensors: [Tensor] = []

    /// Creates an empty writer.
    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Adds a tensor.
    public mutating func add(_ tensor: Tensor) { tensors.append(tensor) }

    /// Adds a tensor whose bytes are in memory.
    public mutating func add(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        tensors.append(Tensor(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Adds a tensor whose bytes a provider writes at write time.
    public mutating func add(name: String, dtype: SafeTensorsDType, shape: [Int],
                             provider: @escaping (SafeTensorsByteSink) throws -> Void) {
        tensors.append(Tensor(name: name, dtype: dtype, shape: shape, provider: provider))
    }

    /// Writes the file to `path` atomically.
    ///
    /// Everything is validated first (names unique and not `__metadata__`, sizes without
    /// overflow, in-memory byte counts, header within the 100 MiB limit). Data goes to `<dir>/.<name>.tmp-<pid>-<random>`, which
    /// is fsynced and renamed over `path`; on any error the temp file is removed and `path` is
    /// left as it was.
    public func write(to path: String) throws {
        let plan = try SafeTensorsWriter.layout(tensors, path: path)
        let header = SafeTensorsWriter.headerBytes(metadata: metadata, entries: plan.map(\.entry))
        guard header.count <= SafeTensorsHeader.maxHeaderLength else {
            throw SafeTensorsError.headerTooLarge(path: path, length: UInt64(header.count), limit: SafeTensorsHeader.maxHeaderLength)
        }
        try AtomicFile.write(to: path) { out in
            var prefix = [UInt8](repeating: 0, count: 8)
            let n = UInt64(header.count)
            for i in 0..<8 { prefix[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
            try prefix.withUnsafeBytes { try out.write($0) }
            try header.withUnsafeBytes { try out.write($0) }
            for item in plan {
                let sink = SafeTensorsByteSink(output: out, path: path, tensor: item.entry.name, expected: item.entry.dataRange.count)
                switch item.tensor.source {
                case let .bytes(b): try sink.write(b)
                case let .provider(p): try p(sink)
                }
                guard sink.written == sink.expected else {
                    throw SafeTensorsError.providerByteCountMismatch(path: path, tensor: item.entry.name,
                                                                    expected: sink.expected, written: sink.written)
                }
            }
        }
    }

    /// Validates tensors and assigns offsets in name order.
    static func layout(_ tensors: [Tensor], path: String) throws -> [(tensor: Tensor, entry: SafeTensorsEntry)] {
        var seen = Set<[UInt8]>()
        for t in tensors {
            guard t.name != "__metadata__" else {
                throw SafeTensorsError.invalidTensor(path: path, tensor: t.name, reason: "the name __metadata__ is reserved")
            }
            guard seen.insert(Array(t.name.utf8)).inserted else {
                throw SafeTensorsError.invalidTensor(path: path, tensor: t.name, reason: "name given twice")
            }
        }
        let sorted = tensors.sorted { utf8Less($0.name, $1.name) }
        var offset = 0
        var out: [(tensor: Tensor, entry: SafeTensorsEntry)] = []
        for t in sorted {
            guard let count = t.byteCount else {
                throw SafeTensorsError.invalidTensor(path: path, tensor: t.name, reason: "shape has a negative dimension or its byte size overflows")
            }
            if case let .bytes(b) = t.source, b.count != count {
                throw SafeTensorsError.providerByteCountMismatch(path: path, tensor: t.name, expected: count, written: b.count)
            }
            let (end, o) = offset.addingReportingOverflow(count)
            guard !o else { throw SafeTensorsError.invalidTensor(path: path, tensor: t.name, reason: "total data size overflows") }
            out.append((t, SafeTensorsEntry(name: t.name, dtype: t.dtype, shape: t.shape, dataRange: offset..<end)))
            offset = end
        }
        return out
    }

    /// Deterministic compact header JSON, space-padded to a multiple of 8 bytes.
    static func headerBytes(metadata: [String: String], entries: [SafeTensorsEntry]) -> [UInt8] {
        var s = "{"
        var first = true
        if !metadata.isEmpty {
            s += "\"__metadata__\":{"
            var firstKV = true
            for k in metadata.keys.sorted(by: utf8Less) {
                if !firstKV { s += "," }
                firstKV = false
                s += jsonString(k) + ":" + jsonString(metadata[k] ?? "")
            }
            s += "}"
            first = false
        }
        for e in entries.sorted(by: { utf8Less($0.name, $1.name) }) {
            if !first { s += "," }
            first = false
            s += jsonString(e.name)
            s += ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":["
            s += e.shape.map(String.init).joined(separator: ",")
            s += "],\"data_offsets\":[\(e.dataRange.lowerBound),\(e.dataRange.upperBound)]}"
        }
        s += "}"
        var bytes = Array(s.utf8)
        let pad = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(0x20, count: pad))
        return bytes
    }

    /// A JSON string literal, escaped like serde_json (short escapes, `\u00xx` for other controls).
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let h = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Writes a checkpoint split into shards of bounded size, Hugging Face style.
///
/// Tensors are taken in name order and packed greedily: a new shard starts when adding the next
/// tensor would push the current shard's data past `maxShardBytes` (a tensor larger than the
/// limit gets a shard of its own). Several shards are written as
/// `model-00001-of-0000N.safetensors` ... plus `model.safetensors.index.json`
/// (`{"metadata": {"total_size": N}, "weight_map": {...}}`, sorted keys, 2-space indent like
/// `json.dumps(indent=2, sort_keys=True)`); a single shard is written as `model.safetensors`
/// without an index. Each file is written atomically; the index is written last.
public struct SafeTensorsShardedWriter {
    /// Upper bound on a shard's data bytes (header not counted), > 0.
    public var maxShardBytes: Int
    /// Metadata written into every shard's header.
    public var metadata: [String: String]
    /// Tensors added so far.
    public private(set) var tensors: [SafeTensorsWriter.Tensor] = []

    /// Creates an empty sharded writer.
    public init(maxShardBytes: Int, metadata: [String: String] = [:]) {
        self.maxShardBytes = maxShardBytes
        self.metadata = metadata
    }

    /// Adds a tensor.
    public mutating func add(_ tensor: SafeTensorsWriter.Tensor) { tensors.append(tensor) }

    /// Adds a tensor whose bytes are in memory.
    public mutating func add(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        tensors.append(.init(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Adds a tensor whose bytes a provider writes at write time.
    public mutating func add(name: String, dtype: SafeTensorsDType, shape: [Int],
                             provider: @escaping (SafeTensorsByteSink) throws -> Void) {
        tensors.append(.init(name: name, dtype: dtype, shape: shape, provider: provider))
    }

    /// The shard file names and the tensor names in each, without writing anything.
    public func plan() throws -> [(file: String, tensors: [String])] {
        try groups(path: "<plan>").map { ($0.file, $0.tensors.map(\.name)) }
    }

    private func groups(path: String) throws -> [(file: String, tensors: [SafeTensorsWriter.Tensor])] {
        guard maxShardBytes > 0 else {
            throw SafeTensorsError.invalidTensor(path: path, tensor: "", reason: "maxShardBytes must be > 0")
        }
        let laid = try SafeTensorsWriter.layout(tensors, path: path)  // validates, sorts by name
        var shards: [[SafeTensorsWriter.Tensor]] = []
        var current: [SafeTensorsWriter.Tensor] = []
        var size = 0
        for item in laid {
            let n = item.entry.dataRange.count
            let (sum, o) = size.addingReportingOverflow(n)
            if !current.isEmpty && (o || sum > maxShardBytes) {
                shards.append(current)
                current = []
                size = 0
            }
            current.append(item.tensor)
            size += n
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        if shards.count == 1 { return [("model.safetensors", shards[0])] }
        let total = shards.count
        return shards.enumerated().map { i, ts in
            ("model-\(pad5(i + 1))-of-\(pad5(total)).safetensors", ts)
        }
    }

    private func pad5(_ n: Int) -> String {
        let s = String(n)
        return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
    }

    /// Writes the shards (and index, when more than one) into `directory`.
    ///
    /// The folder is created if missing. A folder that already holds `*.safetensors` or
    /// `*.safetensors.index.json` files is refused (`directoryNotEmpty`), so stale shards or a
    /// stale index can never mix with the new ones. If writing fails part-way, the files this
    /// call already wrote are removed. Returns the file names written, index last.
    @discardableResult
    public func write(toDirectory directory: String) throws -> [String] {
        let groups = try groups(path: directory)
        var st = stat()
        // A folder made here is removed again if the write fails: a refusal leaves nothing.
        var created = false
        if stat(directory, &st) != 0 {
            guard errno == ENOENT, mkdir(directory, 0o755) == 0 else {
                throw SafeTensorsError.io(path: directory, operation: "mkdir", code: errno)
            }
            created = true
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw SafeTensorsError.io(path: directory, operation: "open folder", code: ENOTDIR)
        }
        let existing: [String]
        do {
            existing = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw SafeTensorsError.io(path: directory, operation: "list directory", code: EIO)
        }
        if let clash = existing.first(where: { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }) {
            throw SafeTensorsError.directoryNotEmpty(path: directory, existing: clash)
        }

        var written: [String] = []
        do {
            var weightMap: [(String, String)] = []
            var total = 0
            for g in groups {
                var w = SafeTensorsWriter(metadata: metadata)
                for t in g.tensors {
                    w.add(t)
                    weightMap.append((t.name, g.file))
                    total += t.byteCount ?? 0  // validated by layout; sum bounded by layout's overflow check
                }
                try w.write(to: SafeTensorsCheckpoint.join(directory, g.file))
                written.append(g.file)
            }
            if groups.count > 1 {
                let indexName = "model.safetensors.index.json"
                let json = SafeTensorsShardedWriter.indexJSON(totalSize: total, weightMap: weightMap)
                try AtomicFile.write(to: SafeTensorsCheckpoint.join(directory, indexName)) { out in
                    try json.withUnsafeBytes { try out.write($0) }
                }
                written.append(indexName)
            }
        } catch {
            for f in written { _ = unlink(SafeTensorsCheckpoint.join(directory, f)) }
            if created { _ = rmdir(directory) }  // only succeeds while empty
            throw error
        }
        return written
    }

    /// The index file bytes: sorted keys, 2-space indent, trailing newline.
    static func indexJSON(totalSize: Int, weightMap: [(String, String)]) -> [UInt8] {
        var s = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {"
        let sorted = weightMap.sorted { utf8Less($0.0, $1.0) }
        for (i, (name, file)) in sorted.enumerated() {
            s += i == 0 ? "\n" : ",\n"
            s += "    " + SafeTensorsWriter.jsonString(name) + ": " + SafeTensorsWriter.jsonString(file)
        }
        s += sorted.isEmpty ? "}\n}\n" : "\n  }\n}\n"
        return Array(s.utf8)
    }
}
