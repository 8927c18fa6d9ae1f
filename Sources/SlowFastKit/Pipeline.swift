import Foundation

/// Where the layer description of a model comes from.
public enum LayerSource: Sendable {
    /// Layer discovery with these adapters.
    case discover(AdapterChoice)
    /// A description the caller gives (e.g. the `layout` of `slowfast inspect --layers --json`).
    case given(ModelLayout)

    /// The layer description of `model`.
    public func layout(of model: Model) throws -> ModelLayout {
        switch self {
        case .discover(let choice): return try choice.discover(model)
        case .given(let layout): return layout
        }
    }
}

extension ModelLayout {
    /// Reads a layer description from `path`: a bare `ModelLayout`, or the whole report of
    /// `slowfast inspect --layers --json` (its `layout` member).
    public static func load(path: String) throws -> ModelLayout {
        struct Report: Decodable { let layout: ModelLayout }
        let data: Data
        do { data = Data(try SmallFile.read(path, limit: Limits.descriptionBytes)) } catch let error as SmallFileError {
            throw AdapterError(file: path, message: "the layer description " + error.message)
        }
        let layout: ModelLayout
        if let report = try? JSONDecoder().decode(Report.self, from: data) {
            layout = report.layout
        } else {
            do {
                layout = try JSONDecoder().decode(ModelLayout.self, from: data)
            } catch {
                throw AdapterError(file: path, message: "not a layer description (\(error))")
            }
        }
        try layout.checkNumbers(file: path)
        return layout
    }

    /// A layer description is a file from elsewhere: every number in it is bounded before the
    /// passes compute with it (`Limits`: dims multiply, widths up to 2^24, heads and head_dim to 2^16).
    func checkNumbers(file: String) throws {
        func check(_ what: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
            guard let value, !range.contains(value) else { return }
            throw AdapterError(file: file, message: "\(what) is \(value), outside \(range.lowerBound)...\(range.upperBound)")
        }
        let width = Limits.width, heads = Limits.heads
        try check("numLayers", dimensions.numLayers, 1 ... Limits.layers)
        try check("hiddenSize", dimensions.hiddenSize, 1 ... width)
        try check("numHeads", dimensions.numHeads, 1 ... heads)
        try check("numKVHeads", dimensions.numKVHeads, 1 ... heads)
        try check("headDim", dimensions.headDim, 1 ... heads)
        try check("intermediateSize", dimensions.intermediateSize, 1 ... width)
        try check("vocabSize", dimensions.vocabSize, 1 ... Limits.vocab)
        for layer in layers {
            try check("a layer index", layer.index, 0 ... Limits.layers)
            for (role, projection) in [("q", layer.q), ("k", layer.k), ("v", layer.v), ("o", layer.o)] + layer.mlp.sorted(by: { $0.key < $1.key }).map({ ($0.key, $0.value) }) {
                try check("layer \(layer.index) \(role) outputStart", projection.outputStart, 0 ... width)
                try check("layer \(layer.index) \(role) outputCount", projection.outputCount, 1 ... width)
                try check("layer \(layer.index) \(role) outputBlock", projection.outputBlock, 1 ... width)
                try check("layer \(layer.index) \(role) outputStride", projection.outputStride, 1 ... width)
            }
            // A norm divides by sqrt(mean(x^2) + epsilon): an epsilon of 0 or below gives NaN at
            // a zero input (and -1 everywhere the mean is below 1), so it must be positive.
            let norms: [(String, RMSNormDescription?)] = [("inputNorm", layer.inputNorm), ("postAttentionNorm", layer.postAttentionNorm),
                                                          ("attentionOutputNorm", layer.attentionOutputNorm), ("mlpOutputNorm", layer.mlpOutputNorm),
                                                          ("qNorm", layer.qNorm), ("kNorm", layer.kNorm)]
            for case let (role, norm?) in norms where !(norm.epsilon.isFinite && norm.epsilon > 0) {
                throw AdapterError(file: file, message: "layer \(layer.index) \(role) epsilon is \(norm.epsilon), not a positive number")
            }
            if let scale = layer.attentionScale, !(scale.isFinite && scale != 0) {
                throw AdapterError(file: file, message: "layer \(layer.index) attentionScale is \(scale), not a non-zero number")
            }
            if let cap = layer.attentionSoftcap, !(cap.isFinite && cap > 0) {
                throw AdapterError(file: file, message: "layer \(layer.index) attentionSoftcap is \(cap), not a positive number")
            }
        }
    }
}

/// Everything a rewrite is asked to do. With no pass the model is re-emitted unchanged.
public struct RewriteRequest: Sendable {
    /// The passes to run (each a `PassRequest`; they run in their `order`).
    public var passes: [any PassRequest]
    /// Where the layer description comes from (used when a pass needs the layers, or an
    /// import names the weights to fill).
    public var layers: LayerSource
    /// A safetensors checkpoint (file, folder or index) whose tensors replace the parameters
    /// of the same PyTorch names after the passes ran (trained weights of the new layers, or a
    /// whole fine-tuned model).
    public var weightsFrom: String?
    /// With `weightsFrom`: fail unless every named parameter is filled and every checkpoint
    /// tensor used.
    public var strictWeights: Bool
    /// With `weightsFrom`: where a value does not fit a quantized weight's scales, widen them
    /// (reported) instead of refusing.
    public var requantize: Bool = false
    /// With `weightsFrom`: a value beyond the model's float type is refused, or saturated.
    public var overflow: OverflowPolicy = .refuse

    public init(passes: [any PassRequest] = [], layers: LayerSource = .discover(.auto), weightsFrom: String? = nil,
                strictWeights: Bool = false) {
        self.passes = passes
        self.layers = layers
        self.weightsFrom = weightsFrom
        self.strictWeights = strictWeights
    }
}

/// What a rewrite did in memory.
public struct RewriteOutcome {
    /// Each pass's result, in pass order.
    public var results: [(pass: String, result: PassResult)]
    /// The layer description the passes worked from (when one needed it).
    public var layout: ModelLayout?
    /// One entry per initializer of the rewritten model.
    public var weightMap: WeightMap
    /// What the checkpoint import did, when one was asked for.
    public var imported: WeightImport.Report?
    /// Files the rewrite read besides the model and its data (checkpoint files, an index):
    /// the write must not replace any of them.
    public var inputFiles: [String] = []

    /// Every change of every pass, in order.
    public var changes: [ModelChange] { results.flatMap(\.result.changes) }
    /// Models the passes built to be written beside the output.
    public var companions: [CompanionModel] { results.flatMap(\.result.companions) }
}

/// A model that cannot be rewritten without guessing, with the file in front of the reason.
public struct AmbiguousModelError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}

/// A rewrite that failed, with the model file in front of the reason.
public struct RewriteError: Error, CustomStringConvertible {
    public let file: String
    public let underlying: Error
    public var description: String { "\(file): \(underlying)" }
}

/// The whole job, as the CLI and a library user run it: find the layers, build the passes,
/// run them with their checks, build the weight map, and write everything atomically.
public enum Pipeline {
    /// The passes `request` asks for, in the order they run, and the layer description they
    /// work from (read once, when one of them needs it).
    public static func passes(for request: RewriteRequest, model: Model) throws -> (passes: [ModelPass], layout: ModelLayout?) {
        let ordered = request.passes.enumerated().sorted { ($0.element.order, $0.offset) < ($1.element.order, $1.offset) }.map(\.element)
        let layout = ordered.contains(where: \.needsLayers) ? try request.layers.layout(of: model) : nil
        return (try ordered.map { try $0.makePass(layout: layout) }, layout)
    }

    /// Rewrites `model` in memory. `output` (where it will be written) names companion models
    /// in the weight map; without it they are named `<output>.<role>.onnx`.
    public static func apply(_ request: RewriteRequest, to model: Model, output: String? = nil) throws -> RewriteOutcome {
        try refuseDuplicateInitializers(model.graph, file: model.sourcePath ?? "model")
        do {
            // The map of an earlier rewrite, read before this run adds its own marks.
            let previous = try model.sourcePath.flatMap {
                try WeightMapSource.existing(forModel: model, at: $0, required: request.weightsFrom != nil)
            }
            let (passes, layout) = try passes(for: request, model: model)
            let results = try PassManager(passes).run(model)
            let parameters = results.flatMap { $0.result.parameters }
            let companions = results.flatMap { $0.result.companions }.map { companion in
                (file: output.map { URL(fileURLWithPath: companion.path(besideOutput: $0)).lastPathComponent } ?? "<output>.\(companion.role).onnx",
                 model: companion.model, parameters: companion.parameters)
            }
            var described = layout
            if described == nil, request.weightsFrom != nil {
                // No pass described the layers in this run: discovery names the weights to fill.
                described = try request.layers.layout(of: model)
            }
            var weightMap = WeightMap(model: model, layout: described, parameters: parameters, previous: previous,
                                      companions: companions)
            var imported: WeightImport.Report?
            var inputFiles: [String] = []
            if let sourcePath = model.sourcePath { inputFiles.append(WeightMap.defaultPath(forOutput: sourcePath)) }
            if let checkpoint = request.weightsFrom {
                if companions.isEmpty, let file = previous?.entries.compactMap(\.file).first {
                    throw CheckpointError(file: model.sourcePath ?? "model", message: "its slow K/V companion model (\(file)) holds "
                        + "weights an import must fill too; import while rewriting instead: slowfast rewrite ORIGINAL ... --weights-from CKPT")
                }
                let opened = try SafeTensorsCheckpoint.open(path: checkpoint)
                inputFiles += opened.files.map(\.path) + [opened.indexPath].compactMap { $0 }
                imported = try WeightImport.apply(opened, to: model,
                                                  companions: Dictionary(companions.map { ($0.file, $0.model) }, uniquingKeysWith: { a, _ in a }),
                                                  weightMap: &weightMap, strict: request.strictWeights, requantize: request.requantize,
                                                  overflow: request.overflow)
            }
            var outcome = RewriteOutcome(results: results, layout: layout, weightMap: weightMap, imported: imported)
            outcome.inputFiles = inputFiles
            return outcome
        } catch let error as PassError {
            throw RewriteError(file: model.sourcePath ?? "model", underlying: error)
        }
    }

    /// Two initializers of one name in a graph make the model ambiguous (which one does a node
    /// read?) and would give the weight map two entries of one name: refused, naming it.
    /// `rewrite` and `inspect` both check it right after reading.
    public static func refuseDuplicateInitializers(_ graph: Graph, file: String) throws {
        var seen = Set<String>()
        for tensor in graph.initializers {
            guard let name = tensor.name, !name.isEmpty else { continue }
            guard seen.insert(name).inserted else {
                throw AmbiguousModelError(file: file, message: "initializer '\(name)' is defined twice in graph '\(graph.name ?? "")'")
            }
        }
        for node in graph.nodes {
            for attribute in node.attributes {
                for subgraph in attribute.value.subgraphs { try refuseDuplicateInitializers(subgraph, file: file) }
            }
        }
    }

    /// Reads `input`, rewrites it and writes the result to `output` with its weight map
    /// (at `weightMapPath`, else beside the output; none for a plain re-emit unless asked).
    /// Nothing is written when any step fails.
    @discardableResult
    public static func rewrite(_ input: String, to output: String, request: RewriteRequest,
                               weights: WeightsMode = .auto, weightMapPath: String? = nil) throws -> (outcome: RewriteOutcome, report: WriteReport) {
        let model = try ModelReader.read(path: input)
        let outcome = try apply(request, to: model, output: output)
        var options = WriteOptions(weights: weights)
        options.inputs = outcome.inputFiles
        if weightMapPath != nil || !outcome.results.isEmpty || outcome.imported != nil {
            options.sidecars.append((weightMapPath ?? WeightMap.defaultPath(forOutput: output), try outcome.weightMap.jsonData()))
        }
        options.companions = outcome.companions.map { ($0.path(besideOutput: output), $0.model) }
        for file in try GenAIFolder.files(input: input, output: output) {
            options.sidecars.append((file.path, file.bytes))
            options.sidecarModes[file.path] = file.mode
        }
        return (outcome, try ModelWriter.write(model, to: output, options: options))
    }
}

/// An onnxruntime-genai model folder (one with `genai_config.json`): what the generator reads
/// besides the model goes beside the output too, so the output folder runs as it is.
public enum GenAIFolder {
    public static let configName = "genai_config.json"
    /// Files a generator or its tokenizer reads (Hugging Face tokenizer and generation files,
    /// SentencePiece models, chat templates).
    static let knownFiles: Set<String> = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
        "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "generation_config.json", "config.json",
        "chat_template.jinja", "chat_template.json", "preprocessor_config.json", "processor_config.json",
    ]

    /// The files to write beside `output` when `input`'s folder is a genai folder and the output
    /// goes to another folder: `genai_config.json` (its decoder `filename` set to the output's
    /// file name when that differs) and the known tokenizer/config files, byte for byte, each
    /// with its permission bits. Each is read as `CompanionFile` reads: a regular file inside the
    /// folder, or a link to one; a link out of the folder, a FIFO or a device is refused by name.
    public static func files(input: String, output: String) throws -> [(path: String, bytes: [UInt8], mode: mode_t)] {
        let inputURL = URL(fileURLWithPath: input), outputURL = URL(fileURLWithPath: output)
        let inputFolder = inputURL.deletingLastPathComponent().path, outputFolder = outputURL.deletingLastPathComponent().path
        let configPath = inputFolder + "/" + configName
        guard FileManager.default.fileExists(atPath: configPath) else { return [] }
        if inputURL.deletingLastPathComponent().resolvingSymlinksInPath().standardizedFileURL
            == outputURL.deletingLastPathComponent().resolvingSymlinksInPath().standardizedFileURL {
            return []
        }
        func read(_ name: String) throws -> CompanionFile {
            do { return try CompanionFile.read(name, inFolder: inputFolder) } catch let error as CompanionFileError {
                throw GenAIFolderError(file: error.file, message: error.message)
            }
        }
        let configFile = try read(configName)
        var config = configFile.bytes
        let outputName = outputURL.lastPathComponent
        guard var json = (try? JSONSerialization.jsonObject(with: Data(config))) as? [String: Any],
              var modelSection = json["model"] as? [String: Any], var decoder = modelSection["decoder"] as? [String: Any],
              let filename = decoder["filename"] as? String else {
            throw GenAIFolderError(file: configPath, message: "expected a JSON object with model.decoder.filename")
        }
        if filename != outputName {
            decoder["filename"] = outputName
            modelSection["decoder"] = decoder
            json["model"] = modelSection
            config = Array(try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) + [10]
        }
        var result: [(path: String, bytes: [UInt8], mode: mode_t)] = [(outputFolder + "/" + configName, config, configFile.mode)]
        let present = (try? FileManager.default.contentsOfDirectory(atPath: inputFolder)) ?? []
        for name in present.sorted() where knownFiles.contains(name) && name != outputName {
            let file = try read(name)
            result.append((outputFolder + "/" + name, file.bytes, file.mode))
        }
        return result
    }
}

/// A genai folder file that could not be read or understood.
public struct GenAIFolderError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}
