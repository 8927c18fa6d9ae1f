import SlowFastKit

/// What a rewrite or plan did in memory: the passes' results and the weight map.
struct PipelineOutcome {
    var results: [(pass: String, result: PassResult)]
    var layout: ModelLayout?
    var weightMap: WeightMap
}

/// Builds the passes the options ask for and runs them on `model`.
func runPasses(on model: Model, hybrid: HybridOptions, activation: ActivationOptions) throws -> PipelineOutcome {
    var passes: [ModelPass] = []
    var layout: ModelLayout?
    if hybrid.isRequested {
        let described = try hybrid.describe(model)
        layout = described
        passes.append(hybrid.pass(for: model, layout: described))
    }
    if let srelu = activation.pass() { passes.append(srelu) }
    let results: [(pass: String, result: PassResult)]
    do {
        results = try PassManager(passes).run(model)
    } catch let error as PassError {
        throw CommandError("\(model.sourcePath ?? "model"): \(error)")
    }
    let parameters = results.flatMap { $0.result.parameters }
    return PipelineOutcome(results: results, layout: layout, weightMap: WeightMap(model: model, layout: layout, parameters: parameters))
}
