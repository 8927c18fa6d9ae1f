import SlowFastAdapters
import SlowFastIR

/// What a rewrite asks one pass to do. The caller builds the request (the CLI from its
/// options, a library user directly) and puts it in `RewriteRequest.passes`; the pipeline
/// makes the pass from it and runs it with the others, in `order`. A new pass is its request
/// type, its `ModelPass` and their tests: the pipeline names no pass.
public protocol PassRequest: Sendable {
    /// The pass's name, as its results, errors and marks say it.
    var passName: String { get }
    /// Passes run in ascending order whatever order they are listed in (the hybrid layers'
    /// 100 before SReLU's 200: SReLU then also replaces activations the hybrid layers added).
    var order: Int { get }
    /// Whether the pass works from the model's layer description (discovery, or a given one).
    var needsLayers: Bool { get }
    /// The pass for a model described by `layout` (set when `needsLayers`).
    func makePass(layout: ModelLayout?) throws -> ModelPass
}

extension PassRequest {
    public var needsLayers: Bool { false }
}
