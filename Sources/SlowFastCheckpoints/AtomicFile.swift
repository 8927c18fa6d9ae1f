import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Buffered writes to a file descriptor (1 MiB buffer).
final class BufferedFileOutput {
    private let fd: Int32
    private let path: String
    private var buffer: [UInt8] = []
    private let capacity = 1 << 20

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(capacity)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes all of `bytes`, retrying on EINTR and short writes.
    ///
    /// Invariant: `done <= bytes.count`, so `base + done` stays inside the caller's buffer.
    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let r = Glibc.write(fd, base + done, bytes.count - done)
            if r < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.io(path: path, operation: "write", code: errno)
            }
            if r == 0 { throw SafeTensorsError.io(path: path, operation: "write", code: EIO) }
            done += r
        }
    }
}

/// Atomic file replacement: temp file in the same folder, fsync, rename.
enum AtomicFile {
    /// Writes `path` through `body`. On any error the temp file is removed and `path` untouched.
    static func write(to path: String, _ body: (BufferedFileOutput) throws -> Void) throws {
        let ns = path as NSString
        let dirPart = ns.deletingLastPathComponent
        let dir = dirPart.isEmpty ? "." : dirPart
        let base = ns.lastPathComponent
        guard !base.isEmpty, base != ".", base != "..", !path.hasSuffix("/") else {
            throw SafeTensorsError.io(path: path, operation: "open for writing", code: EISDIR)
        }
        var rng = SystemRandomNumberGenerator()
        let tmp = SafeTensorsCheckpoint.join(dir, ".\(base).tmp-\(getpid())-\(String(rng.next() as UInt64, radix: 16))")
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError.io(path: tmp, operation: "create", code: errno) }
        var fdOpen = true
        var renamed = false
        defer {
            if fdOpen { _ = Glibc.close(fd) }
            if !renamed { _ = unlink(tmp) }
        }
        let out = BufferedFileOutput(fd: fd, path: tmp)
        try body(out)
        try out.flush()
        guard fsync(fd) == 0 else { throw SafeTensorsError.io(path: tmp, operation: "fsync", code: errno) }
        fdOpen = false
        guard Glibc.close(fd) == 0 else { throw SafeTensorsError.io(path: tmp, operation: "close", code: errno) }
        guard rename(tmp, path) == 0 else { throw SafeTensorsError.io(path: path, operation: "rename", code: errno) }
        renamed = true
        // Make the rename durable; failure here does not undo the write.
        let dfd = Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            _ = Glibc.close(dfd)
        }
    }
}
