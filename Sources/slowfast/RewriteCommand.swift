import ArgumentParser
import SlowFastKit

struct RewriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewrite",
        abstract: "Read a model, apply the chosen passes, and write it atomically.",
        discussion: """
        With no pass options the model is re-emitted unchanged. External weights are \
        hard-linked beside the output by default, so nothing is copied.

        Example:
          slowfast rewrite qwen2/model.onnx -o out/model.onnx --weights link
        """
    )

    @OptionGroup var io: ModelIOOptions

    func run() throws {
        try reportingErrors {
            let model = try ModelReader.read(path: io.input)
            try ModelWriter.write(model, to: io.output, options: WriteOptions(weights: io.weights))
        }
    }
}
