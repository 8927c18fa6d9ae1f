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

    /// Reads the vision model at `input`, proves the layout of `value` by shape inference
    /// over the graph (`FeatureShapeProof`: a dim is proven or given by a flag, never assumed),
    /// adds the token ops after it and writes the result to `output`. `claims` holds what the
    /// user said (grid, width, layout, leading tokens, frames); `names` the output names.
    @discardableResult
    public static func insert(into input: String, after value: String, claims: FeatureClaims, slowPool: Int,
                              fast: FastTokenConfig, names: TokenInputOptions = TokenInputOptions(),
                              to output: String, weights: WeightsMode = .auto) throws -> (outputs: TokenOutputs, proof: FeatureShapeProof) {
        let model = try ModelReader.read(path: input)
        let proof: FeatureShapeProof
        let outputs: TokenOutputs
        do {
            proof = try FeatureShapeProof.prove(value, in: model, claims: claims)
            let rule = TokenRule(height: proof.height, width: proof.width, dim: proof.dim, slowPool: slowPool, fast: fast)
            var options = names
            options.frames = claims.frames
            options.layout = proof.layout
            options.dropLeading = proof.dropLeading
            outputs = try TokenBuilder.insert(into: model, after: value, rule: rule, options: options, elementType: proof.elementType)
        } catch {
            throw TokenJobError(file: input, underlying: error)
        }
        try ModelWriter.write(model, to: output, options: WriteOptions(weights: weights))
        return (outputs, proof)
    }
}
