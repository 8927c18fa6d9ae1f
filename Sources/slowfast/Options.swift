import ArgumentParser
import SlowFastKit

extension WeightsMode: ExpressibleByArgument {}

/// Input and output of commands that write a model.
struct ModelIOOptions: ParsableArguments {
    @Argument(help: "The ONNX model to read (binary .onnx; external data is found beside it).")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Where to write the new model.")
    var output: String

    @Option(help: "Where the output's external weights go: auto (reflink where the filesystem can, else copy), link (hard link: instant, but onnx.load refuses multiply-linked data), copy, inline")
    var weights: WeightsMode = .auto
}
