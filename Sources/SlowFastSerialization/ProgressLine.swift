#if canImport(Glibc)
import Glibc
#endif

/// A progress line on stderr for long work (copying, importing, exporting about a gigabyte or
/// more): what, bytes done of the total, the rate and the time left, redrawn in place at most
/// five times a second and erased when the work ends, so what is printed after it reads as if
/// it had never been there. Drawn only while `isEnabled`: off by default, so a library caller's
/// stderr stays its own; the CLI turns it on when stderr is a terminal and `--quiet` is not
/// given.
public final class ProgressLine {
    /// Whether any progress line is drawn (process-wide; set once, before the work).
    nonisolated(unsafe) public static var isEnabled = false
    /// Work of fewer bytes than this draws nothing.
    public static let threshold = 1 << 30
    /// The line now on the screen, if any: erased before an error message is printed.
    nonisolated(unsafe) private static var current: ProgressLine?

    private let what: String
    /// Bytes of the whole work; may grow until the first `advance`.
    public var total: Int
    private var done = 0
    private var started: Double?
    private var lastDrawn = 0.0

    public init(_ what: String, total: Int = 0) {
        self.what = what
        self.total = total
    }

    /// Counts `bytes` more as done and redraws the line when it is due.
    public func advance(by bytes: Int) {
        guard Self.isEnabled, total >= Self.threshold else { return }
        let now = Self.seconds()
        if started == nil { started = now }
        done = min(total, done + max(0, bytes))
        guard now - lastDrawn >= 0.2 || done == total else { return }
        lastDrawn = now
        Self.current = self
        Self.write("\r\u{1B}[K" + line(elapsed: now - (started ?? now)))
    }

    /// Ends the work: the line is erased.
    public func finish() {
        guard Self.current === self else { return }
        Self.clear()
    }

    /// Erases whatever progress line is on the screen.
    public static func clear() {
        guard current != nil else { return }
        current = nil
        write("\r\u{1B}[K")
    }

    /// "copying model.onnx.data: 1.2 of 3.4 GB, 410 MB/s, 6 s left"
    func line(elapsed: Double) -> String {
        let gigabytes = { (bytes: Int) in Self.decimal(Double(bytes) / 1e9) }
        var text = "\(what): \(gigabytes(done)) of \(gigabytes(total)) GB"
        if elapsed > 0.05, done > 0 {
            let rate = Double(done) / elapsed
            text += ", \(Int(rate / 1e6)) MB/s, \(Int((Double(total - done) / rate).rounded(.up))) s left"
        }
        return text
    }

    private static func decimal(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    private static func seconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    private static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
