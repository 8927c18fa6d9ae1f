import ArgumentParser
import SlowFastKit

struct RewriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewrite",
        abstract: "Read a model, apply the chosen passes, and write it atomically with its weight map.",
        discussion: """
        With no pass options the model is re-emitted unchanged. External weights are \
        reflinked beside the output where the filesystem can, else copied; --weights link \
        hard-links them instead (instant, but onnx.load refuses multiply-linked data).

        Examples:
          slowfast rewrite qwen2/model.onnx -o out/model.onnx --every 8
          slowfast rewrite qwen2/model.onnx -o out/model.onnx --hybrid-layers 0,2,4 --mode insert
        """
    )

    @OptionGroup var io: ModelIOOptions
    @OptionGroup var passes: PassOptions

    @Option(name: .customLong("weight-map"), help: "Where to write the weight map (default: beside the output, <name>.weight-map.json).")
    var weightMap: String?

    @Option(name: .customLong("weights-from"), help: "After the passes, fill parameters from this safetensors checkpoint (file, index or folder) by PyTorch name.")
    var weightsFrom: String?

    @Flag(name: .customLong("strict-weights"), help: "With --weights-from: fail unless every named parameter is filled and every tensor used.")
    var strictWeights = false

    @Flag(help: "With --weights-from: where a value does not fit a quantized weight's scales, widen those scales (reported) instead of refusing.")
    var requantize = false

    @Flag(name: .customLong("allow-overflow"), help: "With --weights-from: saturate values beyond the model's float type (65520 in float16) instead of refusing them; each tensor is reported.")
    var allowOverflow = false

    func validate() throws {
        if strictWeights && weightsFrom == nil { throw ValidationError("--strict-weights goes with --weights-from CKPT") }
        if requantize && weightsFrom == nil { throw ValidationError("--requantize goes with --weights-from CKPT") }
        if allowOverflow && weightsFrom == nil { throw ValidationError("--allow-overflow goes with --weights-from CKPT") }
    }

    func run() throws {
        io.progress.apply()
        try reportingErrors {
            var request = try passes.request()
            request.weightsFrom = weightsFrom
            request.strictWeights = strictWeights
            request.requantize = requantize
            let overflowLog = OverflowLog()
            if allowOverflow { request.overflow = .saturate(overflowLog) }
            defer { printSaturated(overflowLog) }
            let (outcome, report) = try Pipeline.rewrite(io.input, to: io.output, request: request, weights: io.weights,
                                                         weightMapPath: weightMap)
            printImport(outcome.imported)
            for file in report.files { print("\(file.action.rawValue): \(oneLine(file.path)) (\(file.bytes) bytes)") }
            if report.files.contains(where: { $0.action == .linked }) {
                print("note: data files are hard-linked; onnx.load (onnx >= 1.18) refuses data files with several links, "
                    + "onnxruntime does not mind. Use --weights copy for tools that load weights with onnx.")
            }
        }
    }
}
