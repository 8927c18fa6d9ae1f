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
    ///
    /// Flat features (`claims.grid`, a Qwen-VL merger's [T*H*W, d]) have a temporal patch of
    /// `temporalPatch` video frames per row: `fast` and `claims.frames` count video frames and are
    /// turned into rows (`FastTokenConfig.inTemporalPatches`); a patch is never split. Each of
    /// `names.companions` (Qwen3-VL's deepstack features) must have the features' shape.
    @discardableResult
    public static func insert(into input: String, after value: String, claims: FeatureClaims, slowPool: Int,
                              fast: FastTokenConfig, names: TokenInputOptions = TokenInputOptions(), temporalPatch: Int = 2,
                              to output: String, weights: WeightsMode = .auto) throws -> (outputs: TokenOutputs, proof: FeatureShapeProof) {
        let model = try ModelReader.read(path: input)
        let proof: FeatureShapeProof
        let outputs: TokenOutputs
        do {
            proof = try FeatureShapeProof.prove(value, in: model, claims: claims)
            for companion in names.companions {
                let other = try FeatureShapeProof.prove(companion, in: model, claims: claims)
                // Equal where both are proven (a symbolic row count is settled by the grid).
                let rowsDiffer = Int(other.shape.first ?? "").flatMap { a in Int(proof.shape.first ?? "").map { a != $0 } } ?? false
                guard !rowsDiffer, other.shape.count == proof.shape.count, other.layout == proof.layout,
                      other.height == proof.height, other.width == proof.width, other.dim == proof.dim else {
                    throw TokenBuilderError.companionShape(value: companion, shape: other.shape, features: value, expected: proof.shape)
                }
            }
            var options = names
            var rule = TokenRule(height: proof.height, width: proof.width, dim: proof.dim, slowPool: slowPool, fast: fast)
            options.frames = claims.frames
            if proof.layout == .flat {
                rule.gridFrom = claims.gridFrom
                rule.fast = try fast.inTemporalPatches(of: temporalPatch)
                options.frames = try claims.frames.map { frames in
                    guard frames % temporalPatch == 0 else {
                        throw TokenBuilderError.invalidParameter(name: "--frames", value: frames, expected: "whole temporal patches of \(temporalPatch) frames")
                    }
                    if let grid = claims.grid, grid.frames * temporalPatch != frames {
                        throw TokenBuilderError.invalidParameter(name: "--frames", value: frames,
                            expected: "\(grid.frames * temporalPatch): --grid \(grid.text) holds \(grid.frames) temporal patches of \(temporalPatch) frames")
                    }
                    return frames / temporalPatch
                } ?? claims.grid?.frames
            }
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
