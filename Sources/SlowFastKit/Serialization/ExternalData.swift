#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An external data file, memory-mapped read-only the first time a tensor's values are asked
/// for. Its size is known from `stat` when the model is read, so ranges are checked before
/// any byte is touched.
public final class MappedFile: @unchecked Sendable {
    /// Absolute path of the file.
    public let path: String
    public let size: Int
    /// Device and inode, to tell whether two paths are one file (hard links).
    public let device: UInt64
    public let inode: UInt64
    // Invariant: nil until `bytes()` succeeds once; then a PROT_READ mapping of `size` bytes
    // that lives until deinit.
    private var mapping: UnsafeRawPointer?

    init(path: String, size: Int, device: UInt64, inode: UInt64) {
        self.path = path
        self.size = size
        self.device = device
        self.inode = inode
    }

    deinit {
        if let mapping, size > 0 { munmap(UnsafeMutableRawPointer(mutating: mapping), size) }
    }

    /// The whole file's bytes (mapped on first call).
    func bytes() throws -> UnsafeRawBufferPointer {
        if let mapping { return UnsafeRawBufferPointer(start: mapping, count: size) }
        if size == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SystemError.errno(path: path, operation: "open") }
        defer { close(descriptor) }
        guard let pointer = mmap(nil, size, PROT_READ, MAP_SHARED, descriptor, 0), pointer != MAP_FAILED else {
            throw SystemError.errno(path: path, operation: "mmap")
        }
        mapping = UnsafeRawPointer(pointer)
        return UnsafeRawBufferPointer(start: mapping, count: size)
    }
}

/// Where an external tensor's bytes are: a region of a file next to the model.
public struct ExternalDataLocation {
    /// The `location` entry exactly as the model wrote it (relative to the model's folder).
    public var location: String
    public var offset: Int
    public var length: Int
    /// The file, shared by every tensor stored in it.
    public let file: MappedFile
    /// Entries other than location/offset/length (e.g. `checksum`), kept in order.
    public var otherEntries: [StringPair]

    /// The tensor's bytes, read from the mapping.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let all = try file.bytes()
        return try body(UnsafeRawBufferPointer(rebasing: all[offset ..< offset + length]))
    }
}

/// A failing system call, with the path and errno text.
struct SystemError: Error, CustomStringConvertible {
    let path: String
    let message: String
    var description: String { "\(path): \(message)" }

    static func errno(path: String, operation: String) -> SystemError {
        SystemError(path: path, message: "\(operation) failed: \(String(cString: strerror(Glibc.errno)))")
    }

    /// errno's text, for messages.
    static var lastErrorText: String { String(cString: strerror(Glibc.errno)) }
}

/// Opens external data files for one model and enforces that they stay inside its folder.
///
/// A location that is absolute, contains `..`, or resolves (through symlinks) outside the
/// model's folder is refused: such a file is an attack, not a model (DESIGN §3).
final class ExternalDataResolver {
    let modelFile: String
    /// The model's folder, with symlinks resolved.
    let folder: String
    private var files: [String: MappedFile] = [:]

    init(modelFile: String) throws {
        self.modelFile = modelFile
        let folderPath = Path.directory(of: modelFile)
        guard let resolved = Path.realPath(folderPath) else {
            throw ModelReadError.cannotOpen(file: modelFile, reason: "cannot resolve its folder '\(folderPath)'")
        }
        self.folder = resolved
    }

    /// Validates one tensor's `external_data` entries and returns its location.
    func resolve(tensor: String, entries: [StringPair], expectedBytes: Int?) throws -> ExternalDataLocation {
        var location: String?
        var offset = 0
        var length: Int?
        var others: [StringPair] = []
        for entry in entries {
            switch entry.key {
            case "location": location = entry.value
            case "offset", "length":
                guard let number = Int(entry.value), number >= 0 else {
                    throw ModelReadError.externalBadEntry(file: modelFile, tensor: tensor, key: entry.key, value: entry.value)
                }
                if entry.key == "offset" { offset = number } else { length = number }
            default: others.append(entry)
            }
        }
        guard let location, !location.isEmpty else {
            throw ModelReadError.externalLocationMissing(file: modelFile, tensor: tensor)
        }
        if location.hasPrefix("/") || location.hasPrefix("\\") || location.dropFirst().hasPrefix(":") {
            throw ModelReadError.externalLocationAbsolute(file: modelFile, tensor: tensor, location: location)
        }
        let components = location.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        if components.contains("..") {
            throw ModelReadError.externalLocationEscapes(file: modelFile, tensor: tensor, location: location)
        }
        let file = try mappedFile(location: location, tensor: tensor)
        let size = length ?? max(file.size - offset, 0)
        if offset > file.size || size > file.size - offset {
            throw ModelReadError.externalRangePastEnd(file: modelFile, tensor: tensor, dataFile: location,
                                                      offset: offset, length: size, fileSize: file.size)
        }
        if let expectedBytes, expectedBytes != size {
            throw ModelReadError.externalSizeMismatch(file: modelFile, tensor: tensor, expected: expectedBytes, stored: size)
        }
        return ExternalDataLocation(location: location, offset: offset, length: size, file: file, otherEntries: others)
    }

    private func mappedFile(location: String, tensor: String) throws -> MappedFile {
        if let file = files[location] { return file }
        let joined = folder + "/" + location
        guard let resolved = Path.realPath(joined) else {
            throw ModelReadError.externalFileMissing(file: modelFile, tensor: tensor, dataFile: location)
        }
        guard resolved.hasPrefix(folder + "/") else {
            throw ModelReadError.externalLocationEscapes(file: modelFile, tensor: tensor, location: location)
        }
        var info = stat()
        guard stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelReadError.externalFileMissing(file: modelFile, tensor: tensor, dataFile: location)
        }
        let file = MappedFile(path: resolved, size: Int(info.st_size), device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        files[location] = file
        return file
    }
}

/// Small path helpers over POSIX calls (Foundation's URL is slow and eager for our needs).
enum Path {
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last dotted or slashed part of a parameter name, for labels.
    static func fileNameLike(_ name: String) -> String {
        String(name.split(whereSeparator: { $0 == "/" || $0 == "." }).suffix(2).joined(separator: "_"))
    }

    static func fileName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}
