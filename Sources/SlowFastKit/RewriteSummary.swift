import SlowFastIR

/// One pass's account of what earlier rewrites did to a model, read back from the marks the
/// pass left on the nodes it added (`RewriteMarks`). `inspect --json` writes its keys under
/// `rewrites`; `inspect` prints its lines.
public protocol RewriteReport: Encodable, Sendable {
    /// Reads this pass's marks in `model` (an empty report where there are none).
    init(model: Model)
    /// What `inspect` prints of it, one line each (none where the pass left nothing).
    var lines: [String] { get }
    /// Whether `other` is the same report (for `RewriteSummary`'s equality).
    func isEqual(to other: any RewriteReport) -> Bool
}

extension RewriteReport where Self: Equatable {
    public func isEqual(to other: any RewriteReport) -> Bool { (other as? Self) == self }
}

/// What earlier slowfast rewrites did to a model: one report per pass that reads its own
/// marks, in the order of `RewriteSummary.reporters`. A parameter belongs to a layer or site
/// when nodes of that layer or site read it (directly) and no node of the original model does.
public struct RewriteSummary: Encodable, Equatable, Sendable {
    /// The passes whose earlier rewrites `inspect` reports. A new pass that wants its work
    /// listed adds its report type here; nothing else names it.
    public static let reporters: [any RewriteReport.Type] = [HybridLayerReport.self, SReLUReport.self]

    public var reports: [any RewriteReport]

    /// The reports of `reporters` (the built-in passes' by default; a library that adds a pass
    /// may pass its own report type beside them).
    public init(model: Model, reporters: [any RewriteReport.Type] = RewriteSummary.reporters) {
        reports = reporters.map { $0.init(model: model) }
    }

    /// The report of type `type`, if it is registered.
    public func report<Report: RewriteReport>(_ type: Report.Type) -> Report? {
        reports.lazy.compactMap { $0 as? Report }.first
    }

    /// Every report's lines, in order.
    public var lines: [String] { reports.flatMap(\.lines) }

    /// The reports' keys side by side in one object.
    public func encode(to encoder: Encoder) throws {
        for report in reports { try report.encode(to: encoder) }
    }

    public static func == (a: RewriteSummary, b: RewriteSummary) -> Bool {
        a.reports.count == b.reports.count && zip(a.reports, b.reports).allSatisfy { $0.isEqual(to: $1) }
    }
}
