import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif

/// A file that sits beside an input model (a tokenizer, a genai config) and is copied beside
/// the output: read only when it is a regular file inside the input's folder.
///
/// The file is opened under the folder's descriptor without following links (`openat` with
/// `O_NOFOLLOW`), so a name in the folder cannot be swapped for a link between a check and the
/// read. A symbolic link is read only when its target, resolved, is inside the folder (and is
/// then read as that target, again without following links); a link out of the folder, a FIFO,
/// a device or a folder is refused naming the file. The permission bits come back too, so the
/// copy is never readable by more users than the original.
public struct CompanionFile {
    public let bytes: [UInt8]
    /// The source's permission bits (`st_mode & 0o777`).
    public let mode: mode_t

    /// Files larger than this are not companions of a model (tokenizers are megabytes).
    public static let maxBytes = 1 << 28

    public static func read(_ name: String, inFolder folder: String) throws -> CompanionFile {
        let path = (folder.isEmpty ? "." : folder) + "/" + name
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw CompanionFileError(file: path, message: "not a file name inside the folder")
        }
        let directory = PathCall.open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw CompanionFileError(file: path, message: "cannot open its folder: \(SystemError.lastErrorText)") }
        defer { close(directory) }
        var descriptor = ByteString.withCString(name) { openat(directory, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        if descriptor < 0 && errno == ELOOP {
            descriptor = try openLinkInsideFolder(path: path, folder: folder.isEmpty ? "." : folder)
        }
        guard descriptor >= 0 else { throw CompanionFileError(file: path, message: "cannot open: \(SystemError.lastErrorText)") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw CompanionFileError(file: path, message: "cannot stat: \(SystemError.lastErrorText)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CompanionFileError(file: path, message: "is \(SystemError.fileTypeName(info.st_mode)), not a regular file: not copied")
        }
        guard info.st_size <= maxBytes else {
            throw CompanionFileError(file: path, message: "is \(info.st_size) bytes, more than a model's companion file may be (\(maxBytes))")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + done, $0.count - done) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw CompanionFileError(file: path, message: count == 0 ? "shrank while it was read" : "cannot read: \(SystemError.lastErrorText)")
            }
            done += count
        }
        return CompanionFile(bytes: bytes, mode: info.st_mode & 0o777)
    }

    /// A descriptor for the target of the link at `path` when that target, resolved, is inside
    /// `folder`; an error naming the link and its target otherwise.
    private static func openLinkInsideFolder(path: String, folder: String) throws -> Int32 {
        guard let root = PathCall.realpath(folder) else {
            throw CompanionFileError(file: path, message: "cannot resolve its folder: \(SystemError.lastErrorText)")
        }
        guard let target = PathCall.realpath(path) else {
            throw CompanionFileError(file: path, message: "is a symbolic link whose target cannot be resolved: not copied")
        }
        guard target.hasPrefix(root == "/" ? "/" : root + "/") else {
            throw CompanionFileError(file: path, message: "is a symbolic link to '\(target)', outside the model's folder: not copied "
                + "(put the file itself in the folder)")
        }
        return PathCall.open(target, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    }
}

/// A companion file that cannot be copied.
public struct CompanionFileError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}
