import ArgumentParser
import SlowFastKit

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what a rewrite would change, writing nothing.",
        discussion: """
        Takes the same pass options as `rewrite`.

        Example:
          slowfast plan qwen2/model.onnx --every 8
        """
    )

    @Argument(help: "The ONNX model to plan for.")
    var input: String

    @OptionGroup(title: "Hybrid layers") var hybrid: HybridOptions
    @OptionGroup(title: "Activations") var activation: ActivationOptions

    func run() throws {
        try reportingErrors {
            let model = try ModelReader.read(path: input)
            let inputsBefore = Set(model.graph.inputs.compactMap(\.name))
            let outcome = try runPasses(on: model, hybrid: hybrid, activation: activation)
            print(renderPlan(outcome, model: model, inputsBefore: inputsBefore))
        }
    }
}

/// The plan as text: per pass its notes, the new inputs, and the weight-map summary.
func renderPlan(_ outcome: PipelineOutcome, model: Model, inputsBefore: Set<String>) -> String {
    var lines: [String] = []
    if let layout = outcome.layout {
        let dims = layout.dimensions
        lines.append("adapter: \(layout.adapter); \(dims.numLayers) layers, hidden \(dims.hiddenSize), heads \(dims.numHeads)/\(dims.numKVHeads) (q/kv), head dim \(dims.headDim)")
    }
    if outcome.results.isEmpty { lines.append("no passes chosen: the model would be re-emitted unchanged") }
    for (pass, result) in outcome.results {
        lines.append("pass \(pass):")
        for note in result.notes { lines.append("  \(note)") }
    }
    let added = model.graph.inputs.compactMap(\.name).filter { !inputsBefore.contains($0) }
    if !added.isEmpty { lines.append("new graph inputs: " + added.joined(separator: ", ")) }
    let summary = outcome.weightMap.summary
    lines.append("new parameters: \(summary.new + summary.derived) tensors (\(summary.new) new, \(summary.derived) derived), "
        + "\(summary.newElements) values, \(summary.newBytes) bytes")
    lines.append("weight map: \(summary.initializers) initializers, \(summary.kept) kept, \(summary.new) new, \(summary.derived) derived")
    return lines.joined(separator: "\n")
}
