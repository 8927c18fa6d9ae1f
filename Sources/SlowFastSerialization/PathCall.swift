import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif

/// System calls on paths, each passing the path's bytes as `ByteString.encode` gives them.
///
/// A path can carry an external-data location read from a model, whose bytes need not be
/// UTF-8 (it was decoded by `ByteString`); Swift's implicit String-to-C-string conversion would
/// pass the escape scalars' UTF-8 instead and name another file. Every call on a path in this
/// module goes through here. For a path that is valid UTF-8 the bytes are the same.
enum PathCall {
    static func stat(_ path: String, _ info: inout Glibc.stat) -> Int32 {
        ByteString.withCString(path) { statPath($0, &info) }
    }

    static func lstat(_ path: String, _ info: inout Glibc.stat) -> Int32 {
        ByteString.withCString(path) { lstatPath($0, &info) }
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        ByteString.withCString(path) { Glibc.open($0, flags, mode) }
    }

    @discardableResult
    static func unlink(_ path: String) -> Int32 {
        ByteString.withCString(path) { Glibc.unlink($0) }
    }

    @discardableResult
    static func rmdir(_ path: String) -> Int32 {
        ByteString.withCString(path) { Glibc.rmdir($0) }
    }

    static func mkdir(_ path: String, _ mode: mode_t) -> Int32 {
        ByteString.withCString(path) { Glibc.mkdir($0, mode) }
    }

    static func rename(_ source: String, _ destination: String) -> Int32 {
        ByteString.withCString(source) { from in ByteString.withCString(destination) { Glibc.rename(from, $0) } }
    }

    static func link(_ source: String, _ destination: String) -> Int32 {
        ByteString.withCString(source) { from in ByteString.withCString(destination) { Glibc.link(from, $0) } }
    }

    static func opendir(_ path: String) -> OpaquePointer? {
        ByteString.withCString(path) { Glibc.opendir($0) }
    }

    /// The canonical path (symlinks resolved), decoded like every other name; nil on failure.
    static func realpath(_ path: String) -> String? {
        guard let resolved = ByteString.withCString(path, { Glibc.realpath($0, nil) }) else { return nil }
        defer { free(resolved) }
        return ByteString.decode(cString: resolved)
    }
}

// `Glibc.stat` names the struct; these name the functions.
private func statPath(_ path: UnsafePointer<CChar>, _ info: inout stat) -> Int32 { stat(path, &info) }
private func lstatPath(_ path: UnsafePointer<CChar>, _ info: inout stat) -> Int32 { lstat(path, &info) }
