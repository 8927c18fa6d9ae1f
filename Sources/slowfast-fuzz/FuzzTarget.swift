import SlowFastCheckpoints
import SlowFastKit
#if canImport(Glibc)
import Glibc
#endif

/// The fuzz targets, one per surface that reads a file from elsewhere. Each takes the fuzz
/// input as the bytes of one file, puts it where the tool would read it, and runs the tool's
/// own code over it; every error is an expected outcome, only a crash, a trap or a sanitizer
/// report is a finding. `SLOWFAST_FUZZ_TARGET` picks one (default `model`).
enum FuzzTarget: String, CaseIterable {
    /// A model file: read, then rewritten with each pass (SReLU, hybrid layers found by
    /// discovery, insert mode) and written.
    case model
    /// A `.safetensors` file: header parsed, every tensor read and converted to float32.
    case safetensors
    /// A `model.safetensors.index.json` beside real shards: every tensor it maps read.
    case safetensorsIndex = "safetensors-index"
    /// A weight map beside a rewritten model: `weights export` and an import read it.
    case weightMap = "weight-map"
    /// A `--layout` file: loaded, then a hybrid rewrite of a float and an int4 model from it.
    case layout
    /// A genai folder's `genai_config.json`: the files a rewrite would copy beside its output.
    case genaiConfig = "genai-config"
    /// A checkpoint imported into a rewritten float model and a rewritten int4 model
    /// (`--requantize --allow-overflow` on the second, so the widening paths run too).
    case importCheckpoint = "import"

    static var selected: FuzzTarget {
        let name = getenv("SLOWFAST_FUZZ_TARGET").map { String(cString: $0) } ?? "model"
        guard let target = FuzzTarget(rawValue: name) else {
            fputs("SLOWFAST_FUZZ_TARGET=\(name): expected one of " + allCases.map(\.rawValue).joined(separator: ", ") + "\n", stderr)
            exit(2)
        }
        return target
    }

    func run(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        let bytes = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
        switch self {
        case .model: Self.runModel(bytes)
        case .safetensors: Self.runSafeTensors(bytes)
        case .safetensorsIndex: Self.runIndex(bytes)
        case .weightMap: Self.runWeightMap(bytes)
        case .layout: Self.runLayout(bytes)
        case .genaiConfig: Self.runGenAIConfig(bytes)
        case .importCheckpoint: Self.runImport(bytes)
        }
    }

    // MARK: - The targets

    private static func runModel(_ bytes: UnsafeBufferPointer<UInt8>) {
        let input = Scratch.file("in/model.onnx", bytes)
        let requests: [RewriteRequest] = [
            RewriteRequest(),
            RewriteRequest(srelu: SReLUOptions(targets: ActivationKind.allCases), allowNoSites: true),
            RewriteRequest(hybrid: HybridRequest(layers: .every(1, from: 0, below: nil))),
            RewriteRequest(hybrid: HybridRequest(layers: .every(2, from: 0, below: nil), mode: .insert)),
        ]
        for request in requests {
            attempt { _ = try Pipeline.rewrite(input, to: Scratch.output("model.onnx"), request: request, weights: .inline) }
        }
        if let model = try? ModelReader.read(path: input) { _ = ModelSummary(model: model, file: input) }
    }

    private static func runSafeTensors(_ bytes: UnsafeBufferPointer<UInt8>) {
        readEveryTensor(of: Scratch.file("in/checkpoint.safetensors", bytes))
    }

    private static func runIndex(_ bytes: UnsafeBufferPointer<UInt8>) {
        let folder = Bases.shardedCheckpoint
        Scratch.write(folder + "/model.safetensors.index.json", bytes)
        readEveryTensor(of: folder)
    }

    private static func runWeightMap(_ bytes: UnsafeBufferPointer<UInt8>) {
        for base in Bases.rewritten {
            // A copy of the rewritten model with the fuzzed map where a rewrite leaves its own.
            let model = base.copy(into: "in/map")
            Scratch.write(WeightMap.defaultPath(forOutput: model), bytes)
            attempt {
                let loaded = try ModelReader.read(path: model)
                let map = try WeightMapSource.load(forModel: loaded, at: model)
                try WeightExport.export(loaded, weightMap: map, to: Scratch.output("export"), options: .init(all: true))
            }
            attempt {
                _ = try Pipeline.rewrite(model, to: Scratch.output("model.onnx"), request: RewriteRequest(weightsFrom: base.checkpoint), weights: .inline)
            }
        }
    }

    private static func runLayout(_ bytes: UnsafeBufferPointer<UInt8>) {
        let file = Scratch.file("in/layout.json", bytes)
        guard let layout = attempt({ try ModelLayout.load(path: file) }) else { return }
        for base in Bases.originals {
            let request = RewriteRequest(hybrid: HybridRequest(layers: .every(1, from: 0, below: nil)), layers: .given(layout))
            attempt { _ = try Pipeline.rewrite(base, to: Scratch.output("model.onnx"), request: request, weights: .inline) }
        }
    }

    private static func runGenAIConfig(_ bytes: UnsafeBufferPointer<UInt8>) {
        Scratch.write(Scratch.folder + "/in/genai/" + GenAIFolder.configName, bytes)
        Scratch.write(Scratch.folder + "/in/genai/tokenizer.json", UnsafeBufferPointer(start: nil, count: 0))
        attempt { _ = try GenAIFolder.files(input: Scratch.folder + "/in/genai/model.onnx", output: Scratch.output("renamed.onnx")) }
    }

    private static func runImport(_ bytes: UnsafeBufferPointer<UInt8>) {
        let checkpoint = Scratch.file("in/import.safetensors", bytes)
        for (index, base) in Bases.rewritten.enumerated() {
            var request = RewriteRequest(weightsFrom: checkpoint)
            if index % 2 == 1 {
                request.requantize = true
                request.overflow = .saturate(OverflowLog())
            }
            attempt { _ = try Pipeline.rewrite(base.model, to: Scratch.output("model.onnx"), request: request, weights: .inline) }
        }
    }

    /// Opens a checkpoint (file, index or folder) and reads every tensor, converting floats
    /// to float32 as an import does.
    private static func readEveryTensor(of path: String) {
        guard let checkpoint = attempt({ try SafeTensorsCheckpoint.open(path: path) }) else { return }
        for name in checkpoint.names {
            guard let (_, entry) = checkpoint.entry(named: name) else { continue }
            attempt {
                try checkpoint.withBytes(of: name) { raw in
                    if [.f32, .f16, .bf16].contains(entry.dtype) { _ = try DTypeConversion.convert(raw, from: entry.dtype, to: .f32) }
                }
            }
        }
    }

    /// Runs `body`; an error is an expected outcome, printed only with `SLOWFAST_FUZZ_VERBOSE`
    /// set (to see how far the seeds get).
    @discardableResult
    private static func attempt<T>(_ body: () throws -> T) -> T? {
        do { return try body() } catch {
            if verbose { print("  \(error)") }
            return nil
        }
    }

    private static let verbose = getenv("SLOWFAST_FUZZ_VERBOSE") != nil
}
