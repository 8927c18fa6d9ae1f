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

    @OptionGroup var passes: PassOptions

    func run() throws {
        try reportingErrors {
            let outcome = try Pipeline.apply(try passes.request(), to: try ModelReader.read(path: input))
            print(renderPlan(outcome))
        }
    }
}

/// The plan as text: per pass its changes, then the weight-map summary.
func renderPlan(_ outcome: RewriteOutcome) -> String {
    var lines: [String] = []
    if let layout = outcome.layout {
        let dims = layout.dimensions
        lines.append("adapter: \(layout.adapter); \(dims.numLayers) layers, hidden \(dims.hiddenSize), heads \(dims.numHeads)/\(dims.numKVHeads) (q/kv), head dim \(dims.headDim)")
    }
    if outcome.results.isEmpty { lines.append("no passes chosen: the model would be re-emitted unchanged") }
    for (pass, result) in outcome.results {
        lines.append("pass \(pass):")
        for change in result.changes { lines.append("  \(change)") }
    }
    let summary = outcome.weightMap.summary
    lines.append("new parameters: \(summary.new + summary.derived) tensors (\(summary.new) new, \(summary.derived) derived), "
        + "\(summary.newElements) values, \(summary.newBytes) bytes")
    lines.append("weight map: \(summary.initializers) initializers, \(summary.kept) kept, \(summary.new) new, \(summary.derived) derived")
    return lines.joined(separator: "\n")
}
