#if canImport(Glibc)
import Glibc
#endif

/// A small file read whole (a weight map, a layer description, a checkpoint index): a regular
/// file only, at most `limit` bytes, read with the descriptor's own size. A FIFO or a device
/// is refused by name instead of blocking, and a huge file is refused instead of filling
/// memory. (Foundation's `Data(contentsOf:)` also leaks its buffer for an empty file.)
public enum SmallFile {
    public static func read(_ path: String, limit: Int) throws -> [UInt8] {
        do {
            return try contents(path, limit: limit)
        } catch let failure as Failure {
            switch failure {
            case .system(let operation, let code):
                throw SmallFileError(path: path, message: "cannot be \(operation == "open" ? "opened" : "examined") (\(String(cString: strerror(code))))")
            case .notRegular(let mode):
                throw SmallFileError(path: path, message: "is \(SafeTensorsFile.fileKind(mode)), not a regular file")
            case .tooLarge(let size):
                throw SmallFileError(path: path, message: "is \(size) bytes, more than the \(limit) such a file may have")
            }
        } catch {
            throw SmallFileError(path: path, message: "cannot be read (\(error))")
        }
    }

    /// Why `contents` refused, for callers that name it in their own error type.
    enum Failure: Error {
        case system(operation: String, code: Int32)
        case notRegular(mode_t)
        case tooLarge(Int)
    }

    /// The bytes of the file; throws `Failure`, or `SafeTensorsFile.readExactly`'s error when
    /// the file shrinks while it is read.
    static func contents(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw Failure.system(operation: "open", code: errno) }
        defer { _ = Glibc.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure.system(operation: "fstat", code: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw Failure.notRegular(info.st_mode) }
        let size = Int(info.st_size)
        guard size <= limit else { throw Failure.tooLarge(size) }
        return try SafeTensorsFile.readExactly(fd: fd, offset: 0, count: size, path: path)
    }
}

/// A small file that could not be read, with the path in front of the reason.
public struct SmallFileError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}
