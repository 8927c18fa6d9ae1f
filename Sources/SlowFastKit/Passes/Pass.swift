/// A parameter a pass created or derived, for the weight map.
public struct ParameterRecord: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Made from an init rule alone (zeros, normal(...), a fit).
        case new
        /// Computed from existing weights (e.g. concat(k_proj, v_proj)).
        case derived
    }

    /// The initializer's name in the output graph.
    public var onnxName: String
    /// The PyTorch-style name (`model.layers.8.self_attn.cross_attn_kv_proj.weight`).
    public var canonicalName: String
    public var kind: Kind
    /// How the ONNX tensor is laid out relative to the canonical one: `identity` or `transpose`.
    public var transform: String
    /// How the values were made: `zeros`, `concat(k_proj, v_proj)`, `normal(0.02, seed 0)`, ...
    public var initRule: String
    /// Named numbers that go with the rule (e.g. `fitMaxAbsError`, `fitMeanAbsError`).
    public var figures: [String: Double]

    public init(onnxName: String, canonicalName: String, kind: Kind, transform: String = "identity",
                initRule: String, figures: [String: Double] = [:]) {
        self.onnxName = onnxName
        self.canonicalName = canonicalName
        self.kind = kind
        self.transform = transform
        self.initRule = initRule
        self.figures = figures
    }
}

/// What one pass did.
public struct PassResult: Sendable {
    public var changed: Bool
    /// Parameters the pass added, for the weight map.
    public var parameters: [ParameterRecord]
    /// Lines for `slowfast plan` (which sites, which layers, fit errors...).
    public var notes: [String]

    public init(changed: Bool, parameters: [ParameterRecord] = [], notes: [String] = []) {
        self.changed = changed
        self.parameters = parameters
        self.notes = notes
    }
}

/// A rewrite of a model in memory. Passes never touch files; reading and writing happen at
/// the edges (`ModelReader`, `ModelWriter`).
public protocol ModelPass {
    /// Shown in plans and in errors ("pass 'hybrid-layers' failed: ...").
    var name: String { get }
    /// Checks that must hold before `run` (e.g. "the layers exist"); throws to refuse.
    func checkPreconditions(_ model: Model) throws
    func run(_ model: Model) throws -> PassResult
}

extension ModelPass {
    public func checkPreconditions(_ model: Model) throws {}
}

/// A pass that failed, with the pass's name in front of the reason.
public struct PassError: Error, CustomStringConvertible {
    public let pass: String
    public let underlying: Error
    public var description: String { "pass '\(pass)': \(underlying)" }
}

/// Runs passes in order and names the one that failed.
public struct PassManager {
    public var passes: [ModelPass]

    public init(_ passes: [ModelPass]) { self.passes = passes }

    /// Runs every pass on `model`; results in pass order.
    public func run(_ model: Model) throws -> [(pass: String, result: PassResult)] {
        var results: [(pass: String, result: PassResult)] = []
        for pass in passes {
            do {
                try pass.checkPreconditions(model)
                results.append((pass.name, try pass.run(model)))
            } catch {
                throw PassError(pass: pass.name, underlying: error)
            }
        }
        return results
    }
}
