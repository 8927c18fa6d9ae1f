import ArgumentParser
import Foundation
import SlowFastKit

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a model contains: opsets, inputs, outputs, ops, weights.",
        discussion: """
        Example:
          slowfast inspect qwen2/model.onnx --json
        """
    )

    @Argument(help: "The ONNX model to inspect.")
    var model: String

    @Flag(help: "Print JSON (Schemas/inspect.schema.json) instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            let summary = ModelSummary(model: try ModelReader.read(path: model), file: model)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                print(render(summary))
            }
        }
    }

    func render(_ summary: ModelSummary) -> String {
        func shape(_ dims: [DimensionSummary]?) -> String {
            guard let dims else { return "?" }
            return "[" + dims.map {
                switch $0 {
                case .fixed(let value): return String(value)
                case .symbolic(let name): return name
                case .unknown: return "?"
                }
            }.joined(separator: ", ") + "]"
        }
        var lines: [String] = []
        lines.append("model: \(summary.file)")
        lines.append("ir version: \(summary.irVersion)   producer: \(summary.producer.name) \(summary.producer.version)")
        lines.append("opsets: " + summary.opsets.map { "\($0.domain.isEmpty ? "ai.onnx" : $0.domain) \($0.version)" }.joined(separator: ", "))
        lines.append("inputs:")
        for value in summary.inputs { lines.append("  \(value.name): \(value.type) \(shape(value.shape))") }
        lines.append("outputs:")
        for value in summary.outputs { lines.append("  \(value.name): \(value.type) \(shape(value.shape))") }
        lines.append("nodes: \(summary.nodes.count) (\(summary.nodes.countWithSubgraphs) with \(summary.subgraphs) subgraphs)")
        for op in summary.nodes.byOp {
            lines.append("  \(op.domain.isEmpty ? "" : op.domain + ".")\(op.opType): \(op.count)")
        }
        let initializers = summary.initializers
        lines.append("initializers: \(initializers.count) (\(initializers.inlineBytes) bytes inline, \(initializers.externalBytes) bytes external\(initializers.externalFiles.isEmpty ? "" : " in " + initializers.externalFiles.joined(separator: ", ")))")
        if !summary.functions.isEmpty {
            lines.append("functions:")
            for function in summary.functions { lines.append("  \(function.domain).\(function.name): \(function.nodeCount) nodes") }
        }
        if !summary.metadata.isEmpty {
            lines.append("metadata:")
            for key in summary.metadata.keys.sorted() { lines.append("  \(key): \(summary.metadata[key]!)") }
        }
        return lines.joined(separator: "\n")
    }
}
