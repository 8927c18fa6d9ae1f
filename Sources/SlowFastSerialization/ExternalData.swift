import SlowFastIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An external data file, memory-mapped read-only the first time a tensor's values are asked
/// for. Its size is known from `stat` when the model is read, so ranges are checked before
/// any byte is touched, and checked again before every read: a file that shrank under us is
/// an error, never a bus error.
public final class MappedFile: @unchecked Sendable {
    /// Absolute path of the file.
    public let path: String
    public let size: Int
    /// Device and inode, to tell whether two paths are one file (hard links).
    public let device: UInt64
    public let inode: UInt64
    // Invariant: both nil until `withBytes` maps the file once; then `descriptor` is open on
    // the file and `mapping` is a PROT_READ mapping of `size` bytes; both live until deinit.
    private var mapping: UnsafeRawPointer?
    private var descriptor: Int32?

    init(path: String, size: Int, device: UInt64, inode: UInt64) {
        self.path = path
        self.size = size
        self.device = device
        self.inode = inode
    }

    deinit {
        if let mapping, size > 0 { munmap(UnsafeMutableRawPointer(mutating: mapping), size) }
        if let descriptor { close(descriptor) }
    }

    /// Throws unless the file still has the size it had when the model was read.
    func checkUnchanged() throws {
        var info = stat()
        let result = descriptor.map { fstat($0, &info) } ?? PathCall.stat(path, &info)
        guard result == 0 else { throw SystemError.errno(path: path, operation: "stat") }
        guard Int(info.st_size) >= size else {
            throw SystemError(path: path, message: "the file shrank from \(size) to \(info.st_size) bytes while it was in use")
        }
    }

    /// Lends `range` of the file's bytes to `body`, mapping the file on first use.
    func withBytes<R>(in range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "ranges are checked when the model is read")
        if range.isEmpty { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let base = try mapped()
        try checkUnchanged()
        return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    private func mapped() throws -> UnsafeRawPointer {
        if let mapping { return mapping }
        let opened = PathCall.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard opened >= 0 else { throw SystemError.errno(path: path, operation: "open") }
        guard let pointer = mmap(nil, size, PROT_READ, MAP_SHARED, opened, 0), pointer != MAP_FAILED else {
            let error = SystemError.errno(path: path, operation: "mmap")
            close(opened)
            throw error
        }
        descriptor = opened
        mapping = UnsafeRawPointer(pointer)
        return UnsafeRawPointer(pointer)
    }
}

/// Where an external tensor's bytes are: a region of a file next to the model.
public final class ExternalDataLocation: ExternalTensorData {
    /// The `location` entry exactly as the model wrote it (relative to the model's folder).
    public let location: String
    public let offset: Int
    public let length: Int
    /// The file, shared by every tensor stored in it.
    public let file: MappedFile
    /// Entries other than location/offset/length (e.g. `checksum`), kept in order.
    public let otherEntries: [StringPair]
    /// The tensor's name, for messages.
    let tensorName: String

    init(location: String, offset: Int, length: Int, file: MappedFile, otherEntries: [StringPair], tensorName: String) {
        self.location = location
        self.offset = offset
        self.length = length
        self.file = file
        self.otherEntries = otherEntries
        self.tensorName = tensorName
    }

    /// The tensor's bytes, read from the mapping.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        do {
            return try file.withBytes(in: offset ..< offset + length, body)
        } catch let error as SystemError {
            throw TensorDataError.ioFailure(tensor: tensorName, file: location, reason: error.message)
        }
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

    /// The kind of file `mode` describes, for messages that refuse it.
    static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "an unknown kind of file"
        }
    }
}

/// Opens external data files for one model and enforces that they stay inside its folder.
///
/// A location that is absolute, contains `..`, or resolves (through symlinks) outside the
/// model's folder is refused: such a file is an attack, not a model (docs/DESIGN.md §8).
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
        return ExternalDataLocation(location: location, offset: offset, length: size, file: file, otherEntries: others, tensorName: tensor)
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
        guard PathCall.stat(resolved, &info) == 0 else {
            throw ModelReadError.externalFileMissing(file: modelFile, tensor: tensor, dataFile: location)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelReadError.externalFileNotRegular(file: modelFile, tensor: tensor, dataFile: location,
                                                        kind: SystemError.fileTypeName(info.st_mode))
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

    static func fileName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func realPath(_ path: String) -> String? {
        PathCall.realpath(path)
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return PathCall.lstat(path, &info) == 0
    }
}
