#if canImport(Glibc)
import Glibc
#endif

/// A small file read whole (a weight map, a layer description): a regular file only, at most
/// `limit` bytes, read with the descriptor's own size. A FIFO or a device is refused by name
/// instead of blocking, and a huge file is refused instead of filling memory. (Foundation's
/// `Data(contentsOf:)` also leaks its buffer for an empty file.)
public enum SmallFile {
    public static func read(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SmallFileError(path: path, message: "cannot be opened (\(String(cString: strerror(errno))))") }
        defer { _ = Glibc.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SmallFileError(path: path, message: "cannot be examined (\(String(cString: strerror(errno))))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SmallFileError(path: path, message: "is \(SafeTensorsFile.fileKind(info.st_mode)), not a regular file")
        }
        let size = Int(info.st_size)
        guard size <= limit else { throw SmallFileError(path: path, message: "is \(size) bytes, more than the \(limit) such a file may have") }
        do {
            return try SafeTensorsFile.readExactly(fd: fd, offset: 0, count: size, path: path)
        } catch {
            throw SmallFileError(path: path, message: "cannot be read (\(error))")
        }
    }
}

/// A small file that could not be read, with the path in front of the reason.
public struct SmallFileError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}
