import SlowFastIR
import SlowFastWeights

/// What one pass did: typed records of each change, and the parameters it created for the
/// weight map.
public struct PassResult: Sendable {
    public var changed: Bool
    /// Parameters the pass added, for the weight map.
    public var parameters: [ParameterRecord]
    /// Each change, in the order it was made; `plan` renders them.
    public var changes: [ModelChange]
    /// Models the pass built to run beside the rewritten one (written in the same transaction).
    public var companions: [CompanionModel]

    public init(changed: Bool, parameters: [ParameterRecord] = [], changes: [ModelChange] = [], companions: [CompanionModel] = []) {
        self.changed = changed
        self.parameters = parameters
        self.changes = changes
        self.companions = companions
    }
}

/// A model a pass built to go with the rewritten one, e.g. the slow K/V encoder; written as
/// `<output without .onnx>.<role>.onnx` with every tensor inline.
public struct CompanionModel: @unchecked Sendable {
    /// Names the file and says what it is for, e.g. `slow-kv-encoder`.
    public var role: String
    public var model: Model
    /// Its initializers, for the weight map.
    public var parameters: [ParameterRecord]

    public init(role: String, model: Model, parameters: [ParameterRecord]) {
        self.role = role
        self.model = model
        self.parameters = parameters
    }

    /// Where it goes beside `output`: `out/model.onnx` -> `out/model.<role>.onnx`.
    public func path(besideOutput output: String) -> String {
        let stem = output.hasSuffix(".onnx") ? String(output.dropLast(5)) : output
        return "\(stem).\(role).onnx"
    }
}

/// A rewrite of a model in memory. Passes never touch files; reading and writing happen at
/// the edges (`ModelReader`, `ModelWriter`).
///
/// `PassManager` calls `requires`, then `run`, then `ensures`, then `ModelVerifier` and
/// `AddedNodeCheck` (types and known dims of the added nodes); the first
/// that throws stops the pipeline with the pass's name in front of the reason.
public protocol ModelPass {
    /// Shown in plans and in errors ("pass 'hybrid-layers': ...").
    var name: String { get }
    /// Checks that must hold before `run` (e.g. "the layers exist"); throws to refuse.
    func requires(_ model: Model) throws
    func run(_ model: Model) throws -> PassResult
    /// Checks that must hold after `run` (e.g. "o_proj reads the new value"); throws when the
    /// pass did not do what it says.
    func ensures(_ model: Model, _ result: PassResult) throws
}

extension ModelPass {
    public func requires(_ model: Model) throws {}
    public func ensures(_ model: Model, _ result: PassResult) throws {}
}

/// A pass that failed, with the pass's name in front of the reason.
public struct PassError: Error, CustomStringConvertible {
    public let pass: String
    public let underlying: Error
    public var description: String { "pass '\(pass)': \(underlying)" }
}

/// A postcondition that did not hold after a pass: a bug of the pass, never of the input.
public struct PassContractError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "internal check failed after the rewrite: \(message)" }
}

/// Runs passes in order, checks each one's contract and the model's structure after it, and
/// names the pass that failed.
public struct PassManager {
    public var passes: [ModelPass]

    public init(_ passes: [ModelPass]) { self.passes = passes }

    /// Runs every pass on `model`; results in pass order.
    public func run(_ model: Model) throws -> [(pass: String, result: PassResult)] {
        var results: [(pass: String, result: PassResult)] = []
        // Problems the input already had are not a pass's fault (and do not stop a re-emit).
        let before = passes.isEmpty ? [] : Set(ModelVerifier.problems(of: model))
        for pass in passes {
            do {
                try pass.requires(model)
                let existing = Set(model.graph.nodes.map(ObjectIdentifier.init))
                let existingFunctions = Set(model.functions.map(ObjectIdentifier.init))
                let result = try pass.run(model)
                try pass.ensures(model, result)
                let broken = ModelVerifier.problems(of: model).filter { !before.contains($0) }
                if let first = broken.first {
                    throw PassContractError("\(first)" + (broken.count > 1 ? " (and \(broken.count - 1) more)" : ""))
                }
                // Element types and known dims of what the pass added and of the nodes that
                // now read it: a model a runtime would refuse is never written.
                let added = Set(model.graph.nodes.map(ObjectIdentifier.init)).subtracting(existing)
                let addedFunctions = Set(model.functions.map(ObjectIdentifier.init)).subtracting(existingFunctions)
                let mistyped = AddedNodeCheck.problems(of: model, added: added, addedFunctions: addedFunctions)
                if let first = mistyped.first {
                    throw PassContractError(first + (mistyped.count > 1 ? " (and \(mistyped.count - 1) more)" : ""))
                }
                results.append((pass.name, result))
            } catch {
                throw PassError(pass: pass.name, underlying: error)
            }
        }
        return results
    }
}
