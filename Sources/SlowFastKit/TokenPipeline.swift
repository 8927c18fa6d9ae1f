/// A token job that failed, with the file it concerns in front of the reason.
public struct TokenJobError: Error, CustomStringConvertible {
    public let file: String
    public let underlying: Error
    public var description: String { "\(file): \(underlying)" }
}

/// `slowfast tokens` as a library call: a standalone token model, or the token ops inserted
/// into a vision graph. Nothing is written when any step fails, and every error names a file
/// (the vision model for what is wrong with it, else the output).
public enum TokenPipeline {
    /// Writes a standalone token model to `output`.
    public static func writeModel(_ rule: TokenRule, options: TokenInputOptions, to output: String) throws {
        let model: Model
        do { model = try TokenBuilder.makeModel(rule, options: options) } catch {
            throw TokenJobError(file: output, underlying: error)
        }
        try ModelWriter.write(model, to: output, options: WriteOptions(weights: .inline))
    }

    /// Reads the vision model at `input`, adds the token ops after `value` and writes the
    /// result to `output`. Returns the names of the token outputs.
    @discardableResult
    public static func insert(into input: String, after value: String, rule: TokenRule, options: TokenInputOptions,
                              to output: String, weights: WeightsMode = .auto) throws -> TokenOutputs {
        do {
            try rule.validate()
            if let frames = options.frames { _ = try TokenPlan(rule.spec(frames: frames)) }
        } catch { throw TokenJobError(file: output, underlying: error) }
        let model = try ModelReader.read(path: input)
        let outputs: TokenOutputs
        do {
            outputs = try TokenBuilder.insert(into: model, after: value, rule: rule, options: options)
        } catch {
            throw TokenJobError(file: input, underlying: error)
        }
        try ModelWriter.write(model, to: output, options: WriteOptions(weights: weights))
        return outputs
    }
}
