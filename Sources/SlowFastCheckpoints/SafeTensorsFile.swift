import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A single safetensors file, validated on open and memory-mapped read-only.
///
/// The whole header is checked before `open` returns (see `SafeTensorsError`). Tensor
/// bytes are reachable only through `withBytes(of:_:)`, which lends them for the duration of
/// a closure; never keep the pointer. The mapping and file descriptor live as long as the
/// object. The class is immutable after `open` and may be shared across threads.
///
/// Residual risk: the file is re-checked with `fstat` before each loan, but if another
/// process truncates it *during* the closure, reading the vanished pages still faults
/// (SIGBUS). Do not read files that other processes are rewriting in place.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path given to `open`.
    public let path: String
    /// `__metadata__` string pairs (empty when absent).
    public let metadata: [String: String]
    /// All tensors, sorted by data offset.
    public let entries: [SafeTensorsEntry]
    /// Length of the JSON header in bytes (without the 8-byte prefix).
    public let headerLength: Int
    /// Size of the file when it was opened.
    public let fileSize: Int
    /// Offset of the data buffer inside the file (`8 + headerLength`).
    public var dataStart: Int { 8 + headerLength }

    private let fd: Int32
    private let mapping: MappedRegion
    private let indexByName: [String: Int]

    private init(path: String, metadata: [String: String], entries: [SafeTensorsEntry], headerLength: Int,
                 fileSize: Int, fd: Int32, mapping: MappedRegion) {
        self.path = path
        self.metadata = metadata
        self.entries = entries
        self.headerLength = headerLength
        self.fileSize = fileSize
        self.fd = fd
        self.mapping = mapping
        var idx: [String: Int] = [:]
        for (i, e) in entries.enumerated() { idx[e.name] = i }
        self.indexByName = idx
    }

    deinit {
        mapping.unmap()
        _ = Glibc.close(fd)
    }

    /// Opens, validates and maps the file at `path`.
    ///
    /// Throws `SafeTensorsError.notRegularFile` for FIFOs, devices, directories and sockets
    /// (checked with `fstat` on the opened descriptor; opening uses `O_NONBLOCK` so a FIFO
    /// cannot block), and a specific error for every header defect.
    public static func open(path: String) throws -> SafeTensorsFile {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SafeTensorsError.io(path: path, operation: "open", code: errno) }
        var keepOpen = false
        defer { if !keepOpen { _ = Glibc.close(fd) } }

        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError.io(path: path, operation: "fstat", code: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError.notRegularFile(path: path, kind: fileKind(st.st_mode))
        }
        let size = Int(st.st_size)
        guard size >= 8 else { throw SafeTensorsError.fileTooSmall(path: path, size: size) }

        let prefix = try readExactly(fd: fd, offset: 0, count: 8, path: path)
        var n: UInt64 = 0
        for (i, b) in prefix.enumerated() { n |= UInt64(b) << (8 * UInt64(i)) }
        guard n > 0 else { throw SafeTensorsError.headerLengthZero(path: path) }
        guard n <= UInt64(SafeTensorsHeader.maxHeaderLength) else {
            throw SafeTensorsError.headerTooLarge(path: path, length: n, limit: SafeTensorsHeader.maxHeaderLength)
        }
        guard n <= UInt64(size - 8) else { throw SafeTensorsError.headerPastEnd(path: path, length: n, fileSize: size) }
        let headerLength = Int(n)
        let headerBytes = try readExactly(fd: fd, offset: 8, count: headerLength, path: path)
        let header = try SafeTensorsHeader.parse(headerBytes: headerBytes, bufferSize: size - 8 - headerLength, path: path)

        let mapping = try MappedRegion.map(fd: fd, length: size, path: path)
        keepOpen = true
        return SafeTensorsFile(path: path, metadata: header.metadata, entries: header.entries,
                               headerLength: headerLength, fileSize: size, fd: fd, mapping: mapping)
    }

    /// The entry called `name`, if any.
    public func entry(named name: String) -> SafeTensorsEntry? {
        indexByName[name].map { entries[$0] }
    }

    /// Lends the bytes of `entry` (little-endian, row-major) to `body`.
    ///
    /// The buffer is valid only inside `body`; do not store or return it. Before lending,
    /// the file's current size is checked with `fstat`; if it shrank below the end of the
    /// tensor, `SafeTensorsError.fileShrunk` is thrown instead of faulting. `entry` must come
    /// from this file (`entryNotInFile` otherwise).
    public func withBytes<R>(of entry: SafeTensorsEntry, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let i = indexByName[entry.name], entries[i] == entry else {
            throw SafeTensorsError.entryNotInFile(path: path, tensor: entry.name)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError.io(path: path, operation: "fstat", code: errno) }
        let needed = dataStart + entry.dataRange.upperBound  // <= fileSize, checked on open
        guard Int(st.st_size) >= needed else {
            throw SafeTensorsError.fileShrunk(path: path, tensor: entry.name, needed: needed, size: Int(st.st_size))
        }
        return try mapping.withBytes(offset: dataStart + entry.dataRange.lowerBound, count: entry.dataRange.count, body)
    }

    /// Copies the bytes of `entry` into a new array, read with `pread` (so the pages do not
    /// stay mapped in the process: memory stays at one tensor however large the file); a file
    /// that shrank gives `fileShrunk`.
    public func copyBytes(of entry: SafeTensorsEntry) throws -> [UInt8] {
        guard let i = indexByName[entry.name], entries[i] == entry else {
            throw SafeTensorsError.entryNotInFile(path: path, tensor: entry.name)
        }
        do {
            return try SafeTensorsFile.readExactly(fd: fd, offset: dataStart + entry.dataRange.lowerBound,
                                                   count: entry.dataRange.count, path: path)
        } catch SafeTensorsError.fileShrunk(let path, _, let needed, let size) {
            throw SafeTensorsError.fileShrunk(path: path, tensor: entry.name, needed: needed, size: size)
        }
    }

    /// Lends the bytes of `entry` from the mapping (same checks as `withBytes`), then tells the
    /// kernel this process is done with those pages: they leave its resident set, so reading
    /// a whole checkpoint tensor by tensor keeps memory at one tensor.
    public func withBytesOnce<R>(of entry: SafeTensorsEntry, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        defer { mapping.release(offset: dataStart + entry.dataRange.lowerBound, count: entry.dataRange.count) }
        return try withBytes(of: entry, body)
    }

    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "a non-regular file"
        }
    }

    /// Reads exactly `count` bytes at `offset` with `pread`; a short file gives `fileShrunk`.
    static func readExactly(fd: Int32, offset: Int, count: Int, path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            // Invariant: `done < count == out.count`, so the destination range lies inside `out`.
            let r = out.withUnsafeMutableBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return pread(fd, base + done, count - done, off_t(offset + done))
            }
            if r < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.io(path: path, operation: "pread", code: errno)
            }
            if r == 0 { throw SafeTensorsError.fileShrunk(path: path, tensor: "<header>", needed: offset + count, size: offset + done) }
            done += r
        }
        return out
    }
}

/// A read-only `mmap` of a whole file; owns the mapping until `unmap`.
final class MappedRegion: @unchecked Sendable {
    private let base: UnsafeRawPointer
    let length: Int

    private init(base: UnsafeRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    /// Maps `length` bytes of `fd` read-only. `length` must be > 0.
    static func map(fd: Int32, length: Int, path: String) throws -> MappedRegion {
        guard let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0),
              p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SafeTensorsError.io(path: path, operation: "mmap", code: errno)
        }
        return MappedRegion(base: UnsafeRawPointer(p), length: length)
    }

    /// Lends `count` bytes at `offset`.
    ///
    /// Invariant: callers pass `offset >= 0`, `count >= 0`, `offset + count <= length`
    /// (guaranteed by header validation: every tensor end is inside the file size that was
    /// mapped). Checked again here; a violation throws rather than reading out of bounds.
    func withBytes<R>(offset: Int, count: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard offset >= 0, count >= 0, offset <= length, count <= length - offset else {
            throw SafeTensorsError.io(path: "<mapping>", operation: "bounds check", code: EINVAL)
        }
        return try body(UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    /// Drops the whole pages inside `offset ..< offset + count` from the process's resident
    /// set (MADV_DONTNEED on a read-only private mapping of an unmodified file: the next read
    /// faults the same bytes in again from the file).
    func release(offset: Int, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0, offset >= 0, count > 0, offset <= length, count <= length - offset else { return }
        let start = (offset + page - 1) / page * page, end = (offset + count) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    func unmap() {
        _ = munmap(UnsafeMutableRawPointer(mutating: base), length)
    }
}
