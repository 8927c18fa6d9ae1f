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

    @Flag(help: "Print JSON (Schemas/inspect.schema.json; with --layers the layer description) instead of text.")
    var json = false

    @Flag(help: "Find the decoder layers and print what each one is made of.")
    var layers = false

    @Option(help: "With --layers: auto, a built-in adapter name, or a path to an adapter file.")
    var adapter: String = "auto"

    @Flag(help: "With --layers, where no adapter describes the model: every adapter's deepest attempt in full, one per line.")
    var explain = false

    func run() throws {
        try reportingErrors {
            if layers { return try printLayers() }
            let read = try ModelReader.read(path: model)
            try Pipeline.refuseDuplicateInitializers(read.graph, file: model)
            let summary = ModelSummary(model: read, file: model)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                print(render(summary))
            }
        }
    }

    /// The layer table, or the ModelLayout JSON with read and discovery times.
    func printLayers() throws {
        let clock = ContinuousClock()
        let readStart = clock.now
        let loaded = try ModelReader.read(path: model)
        let readTime = clock.now - readStart
        try Pipeline.refuseDuplicateInitializers(loaded.graph, file: model)
        let discoverStart = clock.now
        let layout: ModelLayout
        do {
            layout = try AdapterChoice(argument: adapter).discover(loaded)
        } catch let error as LayerDiscoveryError where explain {
            var standardError = StandardError()
            for line in error.explanation.split(separator: "\n") { print("error: \(oneLine(String(line)))", to: &standardError) }
            throw ExitCode.failure
        }
        let discoverTime = clock.now - discoverStart
        func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
        }
        if json {
            struct Report: Encodable {
                let layout: ModelLayout
                let timings: [String: Double]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let report = Report(layout: layout, timings: ["readSeconds": seconds(readTime), "discoverSeconds": seconds(discoverTime)])
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let dims = layout.dimensions
        print("adapter: \(layout.adapter)")
        print("dims: \(dims.numLayers) layers, hidden \(dims.hiddenSize), heads \(dims.numHeads), kv heads \(dims.numKVHeads), head dim \(dims.headDim)"
            + (dims.intermediateSize.map { ", intermediate \($0)" } ?? "") + (dims.vocabSize.map { ", vocab \($0)" } ?? ""))
        for layer in layout.layers {
            let query: String
            switch layer.query {
            case .tensor(let name): query = name
            case .headsMerged(let name): query = "\(name) (heads merged)"
            case .fused(let rotary): query = "RoPE inside '\(rotary.attentionNode)' (reproduced from \(rotary.cosCache))"
            }
            // Names come from the model: escaped like error lines (control characters, bytes that are not UTF-8).
            if let norm = layer.inputNorm {
                let kind = norm.isCentered ? "LayerNorm" + (norm.bias.map { " (bias \(oneLine($0)))" } ?? "") + " " : ""
                print("layer \(layer.index): \(kind)norm eps \(norm.epsilon) weight \(oneLine(norm.weight))")
            } else {
                print("layer \(layer.index): no input norm (the projections read the residual stream)")
            }
            print("  q/k/v: \(oneLine(layer.q.weight)) | \(oneLine(layer.k.weight)) | \(oneLine(layer.v.weight))")
            print("  query after RoPE: \(oneLine(query))")
            print("  attention output: \(oneLine(layer.attentionOutput)) -> o_proj \(oneLine(layer.o.node))")
        }
        print(String(format: "read %.1f ms, discovery %.1f ms", seconds(readTime) * 1000, seconds(discoverTime) * 1000))
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
        lines += summary.rewrites.lines
        if !summary.metadata.isEmpty {
            lines.append("metadata:")
            for key in summary.metadata.keys.sorted() { lines.append("  \(key): \(summary.metadata[key]!)") }
        }
        // Names, metadata and locations come from the model: each line is escaped like an error
        // line (control characters, bytes that are not UTF-8), its indentation kept.
        return lines.map { line in
            let indent = line.prefix(while: { $0 == " " })
            return indent + oneLine(String(line.dropFirst(indent.count)))
        }.joined(separator: "\n")
    }
}
