import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif
import CSystem

/// Files that appear together or not at all.
///
/// Each file is first written as an anonymous file (`O_TMPFILE`) in its final folder, which
/// the kernel frees if the process dies (SIGKILL included); where the filesystem has no
/// `O_TMPFILE`, under a hidden name that carries our process id, which later runs remove once
/// that process is gone. `commit` takes an exclusive lock on the output folder, so two runs
/// writing the same output cannot interleave their renames, names the anonymous files, and
/// renames data files first and the model last, so a model never points at missing data.
/// If anything fails before `commit`, `rollBack` removes every temporary file and every folder
/// this transaction created: nothing half-written is left at the output.
final class OutputTransaction {
    private struct Staged {
        let temporary: String
        let final: String
        /// Whether something was at `final` before; a failed commit removes only what it added.
        let replaces: Bool
        /// The anonymous file, named `temporary` only at commit; -1 for a named temporary.
        var anonymous: Int32 = -1
    }

    /// The marker in our temporary names, followed by the process id.
    static let temporaryMarker = ".slowfast-tmp-"

    private var staged: [Staged] = []
    private var createdFolders: [String] = []
    private var committed = false
    private let suffix = OutputTransaction.temporaryMarker + "\(getpid())"

    deinit {
        if !committed { rollBack() }
        closeAnonymous()
    }

    private func closeAnonymous() {
        for index in staged.indices where staged[index].anonymous >= 0 {
            close(staged[index].anonymous)
            staged[index].anonymous = -1
        }
    }

    /// Removes temporary files of ours in `folder` whose process is gone (a run killed while
    /// it staged named temporaries). A name with a live process id is left alone.
    static func removeStaleTemporaries(in folder: String) {
        guard let directory = PathCall.opendir(folder) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                ByteString.decode(Array(raw.prefix(while: { $0 != 0 })))
            }
            guard name.hasPrefix("."), let digits = name.split(separator: "-").last, name.hasSuffix(temporaryMarker + digits),
                  let pid = Int32(digits), pid > 0, pid != getpid() else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }
            let path = folder + "/" + name
            var info = stat()
            if PathCall.lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { PathCall.unlink(path) }
        }
    }

    private func temporaryName(for path: String) -> String {
        Path.directory(of: path) + "/." + Path.fileName(of: path) + suffix
    }

    /// Writes `bytes` to a temporary file for `path`; with `mode`, its permission bits are
    /// narrowed to those (a copy of an input file is readable by no one the input was not).
    func stage(path: String, bytes: UnsafeRawBufferPointer, mode: mode_t? = nil) throws {
        let temporary = temporaryName(for: path)
        let descriptor = try create(temporary, finalPath: path)
        defer { close(descriptor) }
        if let mode {
            var info = stat()
            guard fstat(descriptor, &info) == 0, fchmod(descriptor, info.st_mode & 0o777 & mode) == 0 else {
                throw ModelWriteError.ioFailure(path: path, reason: "cannot set its mode: \(SystemError.lastErrorText)")
            }
        }
        var done = 0
        while done < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw ModelWriteError.ioFailure(path: path, reason: "write failed: \(SystemError.lastErrorText)")
            }
            done += written
        }
    }

    /// A file staged piece by piece (new tensors, streamed so that memory does not grow with
    /// their total size). Closed by `finish` or when the transaction ends.
    final class Appender {
        let path: String
        private(set) var size = 0
        // Invariant: open until `finish`; -1 after.
        private var descriptor: Int32

        fileprivate init(path: String, descriptor: Int32) {
            self.path = path
            self.descriptor = descriptor
        }

        deinit { if descriptor >= 0 { close(descriptor) } }

        /// Writes `bytes` at the next multiple of `alignment` (zeros between); returns the offset.
        func append(_ bytes: UnsafeRawBufferPointer, alignment: Int) throws -> Int {
            let offset = (size + alignment - 1) / alignment * alignment
            if offset > size {
                let zeros = [UInt8](repeating: 0, count: offset - size)
                try zeros.withUnsafeBytes { try write($0) }
            }
            try write(bytes)
            return offset
        }

        func finish() {
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }

        private func write(_ bytes: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else {
                    throw ModelWriteError.ioFailure(path: path, reason: "write failed: \(SystemError.lastErrorText)")
                }
                done += written
            }
            size += bytes.count
        }
    }

    /// Starts a temporary file for `path` that is written piece by piece.
    func stageAppender(path: String) throws -> Appender {
        let descriptor = try create(temporaryName(for: path), finalPath: path)
        return Appender(path: path, descriptor: descriptor)
    }

    /// Hard-links `source` under a temporary name for `path`.
    func stageLink(source: MappedFile, path: String) throws {
        try makeFolders(for: path)
        try refuseFolder(at: path)
        let temporary = temporaryName(for: path)
        PathCall.unlink(temporary)
        // A hard link takes no space: if we die before commit, the stale name is removed by
        // a later run (removeStaleTemporaries).
        guard PathCall.link(source.path, temporary) == 0 else {
            if errno == EXDEV { throw ModelWriteError.crossDeviceLink(path: path, dataFile: source.path) }
            throw ModelWriteError.outputNotWritable(path: path, reason: "cannot link '\(source.path)': \(SystemError.lastErrorText)")
        }
        staged.append(Staged(temporary: temporary, final: path, replaces: Path.exists(path)))
    }

    /// Clones `source` (a copy-on-write reflink: instant, its own inode) under a temporary name
    /// for `path`; false, with nothing left behind, where the filesystem cannot.
    func stageClone(source: MappedFile, path: String) throws -> Bool {
        let input = PathCall.open(source.path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { return false }
        defer { close(input) }
        let temporary = temporaryName(for: path)
        let output = try create(temporary, finalPath: path)
        defer { close(output) }
        if sfk_clone_file(input, output) == 0 { return true }
        let dropped = staged.removeLast()
        if dropped.anonymous >= 0 { close(dropped.anonymous) } else { PathCall.unlink(temporary) }
        return false
    }

    /// Copies `source` under a temporary name for `path`: a reflink where the filesystem
    /// supports one, else an in-kernel copy.
    func stageCopy(source: MappedFile, path: String, progress: ProgressLine? = nil) throws {
        let input = PathCall.open(source.path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            throw ModelWriteError.ioFailure(path: source.path, reason: "cannot open for copying: \(SystemError.lastErrorText)")
        }
        defer { close(input) }
        let temporary = temporaryName(for: path)
        let output = try create(temporary, finalPath: path)
        defer { close(output) }
        if sfk_clone_file(input, output) == 0 {
            progress?.advance(by: source.size)
            return
        }
        // In pieces of 256 MiB, so a progress line can follow a copy of many gigabytes.
        var left = source.size
        while left > 0 {
            let piece = min(left, 1 << 28)
            guard sfk_copy_range(input, output, Int64(piece)) == 0 else {
                throw ModelWriteError.ioFailure(path: path, reason: "copy of '\(source.path)' failed: \(SystemError.lastErrorText)")
            }
            left -= piece
            progress?.advance(by: piece)
        }
    }

    /// Renames every staged file into place, data before the model (staged last). If a rename
    /// fails, the files this commit added are removed again.
    func commit(lockingFolder folder: String) throws {
        // Held until this function returns: another run's commit to the same folder waits.
        let lock = PathCall.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lock >= 0, sfk_lock_exclusive(lock) == 0 else {
            let reason = SystemError.lastErrorText
            if lock >= 0 { close(lock) }
            throw ModelWriteError.outputNotWritable(path: folder, reason: "cannot lock the output folder: \(reason)")
        }
        defer { close(lock) }
        for (position, file) in staged.enumerated() {
            var failure: String?
            if file.anonymous >= 0 {
                PathCall.unlink(file.temporary)  // our own name (this process id): a leftover of nobody alive
                if ByteString.withCString(file.temporary, { sfk_link_anonymous(file.anonymous, $0) }) != 0 { failure = "cannot name the staged file: \(SystemError.lastErrorText)" }
            }
            if failure == nil, PathCall.rename(file.temporary, file.final) != 0 { failure = "rename failed: \(SystemError.lastErrorText)" }
            if let failure {
                for done in staged[..<position] where !done.replaces { PathCall.unlink(done.final) }
                for pending in staged[position...] { PathCall.unlink(pending.temporary) }
                closeAnonymous()
                staged.removeAll()
                committed = true
                throw ModelWriteError.ioFailure(path: file.final, reason: failure)
            }
            #if DEBUG
            // Tests pause a commit between its renames to check that a concurrent run waits.
            if position == 0, let pause = getenv("SLOWFAST_TEST_COMMIT_PAUSE_MS").flatMap({ UInt32(String(cString: $0)) }) {
                usleep(pause * 1000)
            }
            #endif
        }
        closeAnonymous()
        committed = true
    }

    func rollBack() {
        for file in staged where file.anonymous < 0 { PathCall.unlink(file.temporary) }
        closeAnonymous()
        for folder in createdFolders.reversed() { PathCall.rmdir(folder) }
        staged.removeAll()
        createdFolders.removeAll()
    }

    private func create(_ temporary: String, finalPath: String) throws -> Int32 {
        try makeFolders(for: finalPath)
        try refuseFolder(at: finalPath)
        let anonymous = ByteString.withCString(Path.directory(of: finalPath)) { sfk_open_anonymous($0, 0o644) }
        if anonymous >= 0 {
            // The writer gets its own descriptor; ours keeps the file alive until commit.
            let writer = fcntl(anonymous, F_DUPFD_CLOEXEC, 0)
            guard writer >= 0 else {
                close(anonymous)
                throw ModelWriteError.outputNotWritable(path: finalPath, reason: SystemError.lastErrorText)
            }
            staged.append(Staged(temporary: temporary, final: finalPath, replaces: Path.exists(finalPath), anonymous: anonymous))
            return writer
        }
        let descriptor = PathCall.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ModelWriteError.outputNotWritable(path: finalPath, reason: SystemError.lastErrorText)
        }
        staged.append(Staged(temporary: temporary, final: finalPath, replaces: Path.exists(finalPath)))
        return descriptor
    }

    /// Only a regular file (or a symbolic link, which rename replaces, not its target) may be
    /// replaced: a folder, a device, a FIFO or a socket where a file should go is refused
    /// before anything is written (as root, `-o /dev/null` would otherwise become a file).
    private func refuseFolder(at path: String) throws {
        try OutputTransaction.refuseSpecialFile(at: path)
    }

    static func refuseSpecialFile(at path: String) throws {
        var info = stat()
        guard PathCall.lstat(path, &info) == 0 else { return }
        let type = info.st_mode & S_IFMT
        if type != S_IFREG && type != S_IFLNK {
            throw ModelWriteError.outputNotWritable(path: path, reason: "it is \(SystemError.fileTypeName(info.st_mode)), not a regular file")
        }
    }

    /// Creates the missing folders above `path` (for data locations with sub-folders).
    private func makeFolders(for path: String) throws {
        let folder = Path.directory(of: path)
        var info = stat()
        if PathCall.stat(folder, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw ModelWriteError.outputNotWritable(path: path, reason: "'\(folder)' is not a folder")
            }
            return
        }
        guard folder != path, folder != "/", folder != "." else {
            throw ModelWriteError.outputNotWritable(path: path, reason: "folder '\(folder)' does not exist")
        }
        try makeFolders(for: folder)
        guard PathCall.mkdir(folder, 0o755) == 0 else {
            throw ModelWriteError.outputNotWritable(path: path, reason: "cannot create folder '\(folder)': \(SystemError.lastErrorText)")
        }
        createdFolders.append(folder)
    }
}
