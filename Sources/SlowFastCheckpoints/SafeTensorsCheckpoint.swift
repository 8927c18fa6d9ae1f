import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A checkpoint made of one or more safetensors files, addressed by tensor name.
///
/// `open(path:)` accepts a single `.safetensors` file, a `*.safetensors.index.json` (Hugging
/// Face sharded layout), or a folder. Every shard is validated on open, and the index and
/// shards must agree exactly: each tensor lives in exactly one shard, and the index maps
/// every tensor to the shard holding it.
public struct SafeTensorsCheckpoint: Sendable {
    /// Options for resolving shard files.
    public struct Options: Sendable {
        /// When false (the default), a shard that resolves through symlinks to a place outside
        /// the index folder is refused. The Hugging Face hub cache stores snapshots as symlinks
        /// into `../../blobs`; set this to true to read such a cache folder. Shard names that are
        /// absolute or contain `..` are refused regardless.
        public var allowSymlinksOutsideFolder: Bool
        /// Creates options; the default is the strict behaviour.
        public init(allowSymlinksOutsideFolder: Bool = false) {
            self.allowSymlinksOutsideFolder = allowSymlinksOutsideFolder
        }
    }

    private struct Location: Sendable {
        let file: Int
        let entry: SafeTensorsEntry
    }

    /// The path given to `open`.
    public let path: String
    /// The index file used, if any.
    public let indexPath: String?
    /// The shard files, in the order they were opened (sorted by name).
    public let files: [SafeTensorsFile]
    /// All tensor names, sorted.
    public let names: [String]
    private let locations: [String: Location]

    /// Opens a file, an index, or a folder (see the type's documentation).
    ///
    /// A folder is read as: its `model.safetensors.index.json` (or its single
    /// `*.safetensors.index.json`) if present, else its single `*.safetensors` file, else all
    /// its `*.safetensors` files sorted by name. Hidden files (leading `.`) are ignored.
    public static func open(path: String, options: Options = Options()) throws -> SafeTensorsCheckpoint {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SafeTensorsError.io(path: path, operation: "stat", code: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            return try openFolder(path, options: options)
        }
        if path.hasSuffix(".json") {
            return try openIndex(path, options: options, originalPath: path)
        }
        let file = try SafeTensorsFile.open(path: path)
        return try assemble(path: path, indexPath: nil, files: [file], index: nil)
    }

    private static func openFolder(_ folder: String, options: Options) throws -> SafeTensorsCheckpoint {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        } catch {
            throw SafeTensorsError.io(path: folder, operation: "list directory", code: EIO)
        }
        let visible = names.filter { !$0.hasPrefix(".") }
        let indexes = visible.filter { $0.hasSuffix(".safetensors.index.json") }
        if indexes.contains("model.safetensors.index.json") {
            return try openIndex(join(folder, "model.safetensors.index.json"), options: options, originalPath: folder)
        }
        if indexes.count > 1 { throw SafeTensorsError.ambiguousIndex(path: folder, candidates: indexes) }
        if let only = indexes.first {
            return try openIndex(join(folder, only), options: options, originalPath: folder)
        }
        let shards = visible.filter { $0.hasSuffix(".safetensors") }
        guard !shards.isEmpty else { throw SafeTensorsError.noCheckpointFound(path: folder) }
        let realFolder = try realPath(folder)
        var files: [SafeTensorsFile] = []
        for name in shards {
            let resolved = try resolveShard(name, folder: folder, realFolder: realFolder, reportPath: folder, options: options)
            files.append(try SafeTensorsFile.open(path: resolved))
        }
        return try assemble(path: folder, indexPath: nil, files: files, index: nil)
    }

    private static func openIndex(_ indexPath: String, options: Options, originalPath: String) throws -> SafeTensorsCheckpoint {
        let bytes = try readSmallFile(indexPath, limit: SafeTensorsHeader.maxHeaderLength)
        let root: JSONValue
        do {
            root = try StrictJSONParser.parse(bytes)
        } catch {
            switch error {
            case .notUTF8: throw SafeTensorsError.invalidIndex(path: indexPath, reason: "not valid UTF-8")
            case let .syntax(offset, reason):
                throw SafeTensorsError.invalidIndex(path: indexPath, reason: "invalid JSON at byte \(offset): \(SafeTensorsError.quote(reason))")
            case let .duplicateKey(key):
                throw SafeTensorsError.invalidIndex(path: indexPath, reason: "key \(SafeTensorsError.quote(key)) appears twice")
            }
        }
        guard case let .object(top) = root else {
            throw SafeTensorsError.invalidIndex(path: indexPath, reason: "top level is not an object")
        }
        guard let wm = top.first(where: { $0.key == "weight_map" })?.value else {
            throw SafeTensorsError.invalidIndex(path: indexPath, reason: "missing \"weight_map\"")
        }
        guard case let .object(pairs) = wm else {
            throw SafeTensorsError.invalidIndex(path: indexPath, reason: "\"weight_map\" is not an object")
        }
        var weightMap: [String: String] = [:]
        for (tensor, v) in pairs {
            guard case let .string(shard) = v else {
                throw SafeTensorsError.invalidIndex(path: indexPath, reason: "weight_map value for \(SafeTensorsError.quote(tensor)) is not a string")
            }
            weightMap[tensor] = shard
        }
        let folder = (indexPath as NSString).deletingLastPathComponent
        let folderOrDot = folder.isEmpty ? "." : folder
        let realFolder = try realPath(folderOrDot)
        let shardNames = Set(weightMap.values).sorted()
        var files: [SafeTensorsFile] = []
        var shardOfFile: [String] = []
        for name in shardNames {
            let resolved = try resolveShard(name, folder: folderOrDot, realFolder: realFolder, reportPath: indexPath, options: options)
            files.append(try SafeTensorsFile.open(path: resolved))
            shardOfFile.append(name)
        }
        return try assemble(path: originalPath, indexPath: indexPath, files: files,
                            index: (weightMap: weightMap, shardOfFile: shardOfFile))
    }

    private static func assemble(path: String, indexPath: String?, files: [SafeTensorsFile],
                                 index: (weightMap: [String: String], shardOfFile: [String])?) throws -> SafeTensorsCheckpoint {
        var locations: [String: Location] = [:]
        for (fi, file) in files.enumerated() {
            for e in file.entries {
                if let prior = locations[e.name] {
                    throw SafeTensorsError.tensorInTwoShards(tensor: e.name, first: files[prior.file].path, second: file.path)
                }
                locations[e.name] = Location(file: fi, entry: e)
            }
        }
        if let index {
            for (fi, file) in files.enumerated() {
                let shard = index.shardOfFile[fi]
                for e in file.entries where index.weightMap[e.name] != shard {
                    throw SafeTensorsError.tensorNotInIndex(path: indexPath ?? path, tensor: e.name, shard: shard)
                }
            }
            for (tensor, shard) in index.weightMap.sorted(by: { $0.key < $1.key }) where locations[tensor] == nil {
                throw SafeTensorsError.tensorNotInShard(path: indexPath ?? path, tensor: tensor, shard: shard)
            }
        }
        return SafeTensorsCheckpoint(path: path, indexPath: indexPath, files: files,
                                     names: locations.keys.sorted(by: utf8Less), locations: locations)
    }

    /// The file holding `name` and its entry, if present.
    public func entry(named name: String) -> (file: SafeTensorsFile, entry: SafeTensorsEntry)? {
        guard let loc = locations[name] else { return nil }
        return (files[loc.file], loc.entry)
    }

    /// Lends the bytes of tensor `name` to `body` (see `SafeTensorsFile.withBytes`).
    ///
    /// Throws `tensorNotFound` for an unknown name.
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let (file, entry) = entry(named: name) else { throw SafeTensorsError.tensorNotFound(path: path, tensor: name) }
        return try file.withBytes(of: entry, body)
    }

    // MARK: Path helpers

    static func join(_ folder: String, _ name: String) -> String {
        folder.hasSuffix("/") ? folder + name : folder + "/" + name
    }

    static func realPath(_ p: String) throws -> String {
        guard let r = realpath(p, nil) else { throw SafeTensorsError.io(path: p, operation: "realpath", code: errno) }
        defer { free(r) }
        return String(cString: r)
    }

    /// Validates a shard name from an index or folder and returns the path to open.
    static func resolveShard(_ name: String, folder: String, realFolder: String, reportPath: String,
                             options: Options) throws -> String {
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\0"), !components.contains("..") else {
            throw SafeTensorsError.unsafeShardPath(path: reportPath, shard: name)
        }
        let joined = join(folder, name)
        guard let r = realpath(joined, nil) else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw SafeTensorsError.missingShard(path: reportPath, shard: name) }
            throw SafeTensorsError.io(path: joined, operation: "realpath", code: code)
        }
        let resolved = String(cString: r)
        free(r)
        if !options.allowSymlinksOutsideFolder {
            let prefix = realFolder.hasSuffix("/") ? realFolder : realFolder + "/"
            guard resolved.hasPrefix(prefix) else { throw SafeTensorsError.unsafeShardPath(path: reportPath, shard: name) }
        }
        return resolved
    }

    /// Reads a regular file of at most `limit` bytes (`SmallFile`), with safetensors' errors.
    static func readSmallFile(_ path: String, limit: Int) throws -> [UInt8] {
        do {
            return try SmallFile.contents(path, limit: limit)
        } catch let failure as SmallFile.Failure {
            switch failure {
            case .system(let operation, let code): throw SafeTensorsError.io(path: path, operation: operation, code: code)
            case .notRegular(let mode): throw SafeTensorsError.notRegularFile(path: path, kind: SafeTensorsFile.fileKind(mode))
            case .tooLarge: throw SafeTensorsError.invalidIndex(path: path, reason: "file is larger than \(limit) bytes")
            }
        }
    }
}
