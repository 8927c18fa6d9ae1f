import Foundation

/// Where the weight map of a model on disk comes from: the file the caller names, else the
/// one a rewrite wrote beside it (`<model>.weight-map.json`), else one made by layer
/// discovery (a model slowfast has not rewritten).
public enum WeightMapSource {
    /// The map a rewrite wrote beside `path`, if there is one. With `required`, its absence
    /// beside a model slowfast rewrote is an error (its new parameters would lose their names).
    public static func existing(forModel model: Model, at path: String, required: Bool = false) throws -> WeightMap? {
        let beside = WeightMap.defaultPath(forOutput: path)
        guard FileManager.default.fileExists(atPath: beside) else {
            if required && model.graph.hasRewriteMarks {
                throw CheckpointError(file: path, message: "slowfast rewrote this model but its weight map is not beside it (\(beside))")
            }
            return nil
        }
        return try read(beside)
    }

    static func read(_ file: String) throws -> WeightMap {
        let data: Data
        do { data = Data(try SmallFile.read(file, limit: Limits.descriptionBytes)) } catch let error as SmallFileError {
            throw CheckpointError(file: file, message: "the weight map \(error.message)")
        }
        do { return try JSONDecoder().decode(WeightMap.self, from: data) } catch {
            throw CheckpointError(file: file, message: "not a weight map (\(error))")
        }
    }

    public static func load(forModel model: Model, at path: String, explicit: String? = nil,
                            adapters: AdapterChoice = .auto) throws -> WeightMap {
        let beside = WeightMap.defaultPath(forOutput: path)
        if let file = explicit ?? (FileManager.default.fileExists(atPath: beside) ? beside : nil) { return try read(file) }
        if model.graph.hasRewriteMarks {
            throw CheckpointError(file: path, message: "slowfast rewrote this model but its weight map is not beside it (\(beside)); give --weight-map")
        }
        let layout = try adapters.discover(model)
        return WeightMap(model: model, layout: layout, parameters: [])
    }
}

/// A checkpoint or weight-map problem, naming the file.
public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "\(file): \(message)" }
}

/// The map entries that have PyTorch names: discovery or a pass named them.
extension WeightMap.Entry {
    var isNamed: Bool { canonicalSource != "onnx" }

    /// The PyTorch tensors this initializer holds: its parts, or itself.
    var pytorchNames: [String] { transform.parts?.map(\.name) ?? [canonicalName] }
}

/// `slowfast weights export`: the model's parameters under their PyTorch names, in PyTorch
/// layout, as safetensors.
public enum WeightExport {
    public struct Options: Sendable {
        /// Every named parameter (else only the new and derived ones).
        public var all: Bool
        /// The dtype to write float tensors in (nil: each tensor's own).
        public var dtype: SafeTensorsDType?
        /// Shards above this many bytes (model-00001-of-0000N.safetensors + index).
        public var maxShardBytes: Int
        /// A value beyond `dtype`'s range is refused (`.refuse`) or saturated and logged.
        public var overflow: OverflowPolicy = .refuse

        public init(all: Bool = false, dtype: SafeTensorsDType? = nil, maxShardBytes: Int = 5_000_000_000) {
            self.all = all
            self.dtype = dtype
            self.maxShardBytes = maxShardBytes
        }
    }

    /// Writes the checkpoint into `folder` (which must hold no checkpoint yet); returns the
    /// files written and the tensor names, sorted.
    @discardableResult
    public static func export(_ model: Model, weightMap: WeightMap, to folder: String,
                              options: Options = Options()) throws -> (files: [String], tensors: [String]) {
        // Companion models the map lists (the slow K/V encoder) are read from beside the model.
        var companions: [String: Model] = [:]
        let modelFolder = ((model.sourcePath ?? ".") as NSString).deletingLastPathComponent
        for file in Set(weightMap.entries.compactMap(\.file)) {
            guard !file.contains("/"), !file.hasPrefix(".") else {
                throw CheckpointError(file: model.sourcePath ?? "model", message: "the weight map names companion '\(file)' outside the model's folder")
            }
            companions[file] = try ModelReader.read(path: (modelFolder.isEmpty ? "." : modelFolder) + "/" + file)
        }
        let initializers = Initializers(model: model, companions: companions)
        let parameterType = halfParameterType(weightMap, initializers: initializers)
        var writer = SafeTensorsShardedWriter(maxShardBytes: options.maxShardBytes, metadata: ["format": "pt"])
        // A progress line (on a terminal, for a gigabyte or more) as the writer makes each tensor.
        let progress = ProgressLine("exporting to \((folder as NSString).lastPathComponent)")
        defer { progress.finish() }
        var names: [String: (onnxName: String, tensor: Tensor, transform: ParameterTransform)] = [:]
        // The scales and zero points of quantized weights are part of those weights' storage:
        // their dequantized values are exported, not the scales themselves.
        let storageParts = weightMap.quantizationParameters
        for entry in weightMap.entries where entry.isNamed && entry.graph == nil && !initializers.isInputDefault(entry)
            && (options.all || entry.kind != "kept") && !storageParts.contains(entry.onnxName) {
            guard let tensor = initializers.tensor(entry) else {
                throw CheckpointError(file: model.sourcePath ?? "model", message: "the weight map names '\(entry.onnxName)', which the model does not have")
            }
            guard let type = tensor.elementType, let dtype = SafeTensorsDType(type) else {
                throw CheckpointError(file: model.sourcePath ?? "model", message: "tensor '\(entry.onnxName)' is \(ElementType.name(of: tensor.dataType ?? 0)), which safetensors cannot hold")
            }
            let onnxShape = tensor.dims.map { Int($0) }
            if let quantization = entry.transform.quantization {
                try addDequantized(entry, quantization, model: model, companion: entry.file.flatMap { companions[$0] }, options: options,
                                   writer: &writer, names: &names, tensor: tensor, progress: progress)
                continue
            }
            var target = options.dtype.map { dtype.isConvertibleFloat ? $0 : dtype } ?? dtype
            if options.dtype == nil, dtype == .f32, let half = parameterType, onnxShape.count <= 1 {
                // torch.onnx writes a float16 model's norm weights as float32 where the module
                // computes in float32 (Gemma's 1 + w.float(), OLMo-2's weight times a float32
                // value); the state dict holds them in the model's type. Exported in that type
                // where every canonical value is one it holds exactly.
                let onnx = RawTensor(name: entry.onnxName, dtype: dtype, shape: onnxShape, bytes: try tensor.withRawBytes { Array($0) })
                if try entry.transform.canonicalTensors(of: onnx, canonicalName: entry.canonicalName).allSatisfy({ try $0.isExactly(in: half) }) {
                    target = half
                }
            }
            for (name, shape) in try entry.transform.canonicalShapes(onnxShape: onnxShape, canonicalName: entry.canonicalName) {
                if let other = names[name] {
                    // A copy (the slow K/V encoder's input norm, stored as the decoder's is: Gemma's
                    // with offset 1) is exported once; anything else under one name twice is an error.
                    if entry.transform.parts == nil, entry.transform == other.transform, other.tensor.hasSameValues(as: tensor) { continue }
                    throw CheckpointError(file: model.sourcePath ?? "model", message: "'\(other.onnxName)' and '\(entry.onnxName)' would both be exported as '\(name)'")
                }
                names[name] = (entry.onnxName, tensor, entry.transform)
                progress.total += SafeTensorsEntry.checkedByteCount(shape: shape, dtype: target) ?? 0
                // Values are made when the writer reaches them: memory stays at one tensor.
                writer.add(name: name, dtype: target, shape: shape) { sink in
                    let onnx = RawTensor(name: entry.onnxName, dtype: dtype, shape: onnxShape, bytes: try tensor.withRawBytes { Array($0) })
                    let parts = try entry.transform.canonicalTensors(of: onnx, canonicalName: entry.canonicalName)
                    guard let part = parts.first(where: { $0.name == name }) else { return }
                    let bytes = try exported(part, as: target, options, file: model.sourcePath)
                    try sink.write(bytes)
                    progress.advance(by: bytes.count)
                }
            }
        }
        let files = try writer.write(toDirectory: folder)
        return (files, names.keys.sorted())
    }
}

extension WeightExport {
    /// A canonical tensor's bytes in the checkpoint's type; a conversion error names the model.
    static func exported(_ part: RawTensor, as target: SafeTensorsDType, _ options: Options, file: String?) throws -> [UInt8] {
        do {
            return try part.converted(to: target, overflow: options.overflow).bytes
        } catch let error as WeightTransformError {
            throw CheckpointError(file: file ?? "model", message: "\(error)")
        }
    }

    /// A quantized weight exported as the float values it stands for, [out, in] (split into
    /// its parts), float32 unless `options.dtype` asks for another float type.
    static func addDequantized(_ entry: WeightMap.Entry, _ quantization: ProjectionStorage, model: Model, companion: Model?,
                               options: Options, writer: inout SafeTensorsShardedWriter,
                               names: inout [String: (onnxName: String, tensor: Tensor, transform: ParameterTransform)],
                               tensor: Tensor, progress: ProgressLine) throws {
        let file = model.sourcePath ?? "model"
        let graph = (companion ?? model).graph
        let target = options.dtype ?? .f32
        guard target.isConvertibleFloat else {
            throw CheckpointError(file: file, message: "'\(entry.onnxName)' is quantized: its values export as a float type, not \(target.rawValue)")
        }
        let shapes: [(name: String, shape: [Int])]
        do {
            shapes = try entry.transform.canonicalShapes(onnxShape: tensor.dims.map { Int($0) }, canonicalName: entry.canonicalName)
        } catch {
            throw CheckpointError(file: file, message: "\(error)")
        }
        for (name, shape) in shapes {
            if let other = names[name] {
                throw CheckpointError(file: file, message: "'\(other.onnxName)' and '\(entry.onnxName)' would both be exported as '\(name)'")
            }
            names[name] = (entry.onnxName, tensor, entry.transform)
            progress.total += SafeTensorsEntry.checkedByteCount(shape: shape, dtype: target) ?? 0
            writer.add(name: name, dtype: target, shape: shape) { sink in
                let values: [Float]
                do {
                    values = try DequantizedWeights(quantization, graph: graph).matrix()
                } catch let error as QuantizedStorageError {
                    throw CheckpointError(file: file, message: "\(error)")
                }
                let parts = try entry.transform.canonicalTensors(dequantized: values, canonicalName: entry.canonicalName)
                guard let part = parts.first(where: { $0.name == name }) else { return }
                let bytes = try exported(part, as: target, options, file: model.sourcePath)
                try sink.write(bytes)
                progress.advance(by: bytes.count)
            }
        }
    }

    /// float16 or bfloat16 where every named matrix of the model (its projections and
    /// embeddings) is stored in it, nil otherwise: the type a PyTorch state dict of the model holds.
    static func halfParameterType(_ weightMap: WeightMap, initializers: Initializers) -> SafeTensorsDType? {
        var types: Set<SafeTensorsDType> = []
        for entry in weightMap.entries where entry.isNamed && entry.graph == nil {
            guard let tensor = initializers.tensor(entry), tensor.dims.count == 2, let type = tensor.elementType,
                  let dtype = SafeTensorsDType(type), dtype.isConvertibleFloat else { continue }
            types.insert(dtype)
        }
        guard types.count == 1, let only = types.first, only == .f16 || only == .bf16 else { return nil }
        return only
    }
}

/// `slowfast weights import`: fills a model's parameters from a checkpoint by PyTorch name.
extension WeightMap {
    /// The scales and zero points the quantized entries name: part of those weights' storage,
    /// not parameters of their own.
    var quantizationParameters: Set<String> {
        Set(entries.flatMap { $0.transform.quantization?.parameterTensors.map(\.name) ?? [] })
    }
}

public enum WeightImport {
    /// How a float tensor went into a quantized weight.
    public struct Quantized: Equatable, Sendable {
        /// The PyTorch name (a packed weight's parts, joined by ", ").
        public var name: String
        public var maxAbsError: Double
        public var meanAbsError: Double
        /// Scale groups widened (`requantize`); 0 where every value fit the model's scales.
        public var widened: Int
    }

    /// What an import did.
    public struct Report: Equatable, Sendable {
        /// Each quantized weight filled, with its rounding error.
        public var quantized: [Quantized] = []
        /// ONNX initializers whose values came from the checkpoint.
        public var filled: [String]
        /// Named parameters of the model the checkpoint does not have (PyTorch names).
        public var missing: [String]
        /// Checkpoint tensors no parameter of the model took.
        public var unused: [String]
    }

    /// Replaces the values of every named parameter the checkpoint holds (converted to the
    /// tensor's own dtype, laid out by the map's transform, every shape checked), and updates
    /// the map's init rules. With `strict`, any missing or unused tensor is an error and the
    /// model is left unchanged.
    /// `companions` are the models written beside it (by file name, as map entries name them).
    public static func apply(_ checkpoint: SafeTensorsCheckpoint, to model: Model, companions: [String: Model] = [:],
                             weightMap: inout WeightMap, strict: Bool = false, requantize: Bool = false,
                             overflow: OverflowPolicy = .refuse, heldCodesBudget: Int = WeightImport.heldCodesBudget) throws -> Report {
        let file = checkpoint.path
        let initializers = Initializers(model: model, companions: companions)
        let storageParts = weightMap.quantizationParameters
        var used = Set<String>()
        var report = Report(filled: [], missing: [], unused: [])
        var replacements: [(Tensor, TensorStorage, Int)] = []
        var heldCodes = 0
        let scratch = ScratchBuffers()
        for (position, entry) in weightMap.entries.enumerated() where entry.isNamed && entry.graph == nil && !initializers.isInputDefault(entry)
            && !storageParts.contains(entry.onnxName) {
            let wanted = entry.pytorchNames
            let present = wanted.filter { checkpoint.entry(named: $0) != nil }
            if present.isEmpty {
                report.missing += wanted
                continue
            }
            guard present.count == wanted.count else {
                throw CheckpointError(file: file, message: "'\(entry.canonicalName)' is packed from " + wanted.joined(separator: ", ")
                    + " but the checkpoint has only " + present.joined(separator: ", "))
            }
            if let quantization = entry.transform.quantization {
                let graph = (entry.file.flatMap { companions[$0] } ?? model).graph
                // The stored tensors as they are now: the codes are rounded against them again
                // when the writer asks (below), after the graph holds the new ones.
                let stored = StoredTensors(quantization, graph: graph)
                let made = try requantized(entry, quantization, checkpoint: checkpoint, stored: stored, widen: requantize)
                for (name, bytes) in made.tensors {
                    guard let tensor = graph.initializer(named: name) else { continue }
                    // New codes are as large as the weight (3.5 GB for a 7B int4 model). Up to
                    // `heldCodesBudget` bytes of them are kept; past it, they are made again, the
                    // same, as each is written, at the cost of rounding twice. Widened scales are
                    // a small fraction of the codes and always kept.
                    var storage = TensorStorage.bytes(TensorBytes(bytes: bytes))
                    if name == entry.onnxName {
                        if heldCodes + bytes.count > heldCodesBudget {
                            storage = .computed(RequantizedCodes {
                                try requantized(entry, quantization, checkpoint: checkpoint, stored: stored, widen: requantize).tensors[0].1
                            })
                        } else {
                            heldCodes += bytes.count
                        }
                    }
                    replacements.append((tensor, storage, position))
                }
                used.formUnion(entry.pytorchNames)
                report.quantized.append(made.report)
                report.filled.append(entry.onnxName)
                continue
            }
            guard let tensor = initializers.tensor(entry), let type = tensor.elementType, let dtype = SafeTensorsDType(type) else {
                throw CheckpointError(file: file, message: "the model has no initializer '\(entry.onnxName)' of a type safetensors holds")
            }
            let onnxShape = tensor.dims.map { Int($0) }
            let shapes = try entry.transform.canonicalShapes(onnxShape: onnxShape, canonicalName: entry.canonicalName)
            for (name, shape) in shapes {
                guard let found = checkpoint.entry(named: name) else { continue }
                guard found.entry.shape == shape else {
                    throw CheckpointError(file: file, message: "tensor '\(name)' has shape \(found.entry.shape), the model needs \(shape) (for '\(entry.onnxName)')")
                }
                guard found.entry.dtype == dtype || (found.entry.dtype.isConvertibleFloat && dtype.isConvertibleFloat) else {
                    throw CheckpointError(file: file, message: "tensor '\(name)' is \(found.entry.dtype.rawValue), the model stores '\(entry.onnxName)' as \(dtype.rawValue)")
                }
                used.insert(name)
            }
            let values = ImportedValues(checkpoint: checkpoint, names: shapes.map(\.name), shapes: shapes.map(\.shape),
                                        transform: entry.transform, onnxName: entry.onnxName, dtype: dtype, scratch: scratch,
                                        overflow: overflow)
            replacements.append((tensor, .computed(values), position))
            report.filled.append(entry.onnxName)
        }
        report.unused = checkpoint.names.filter { !used.contains($0) }
        if strict && (!report.missing.isEmpty || !report.unused.isEmpty) {
            var problems: [String] = []
            if !report.missing.isEmpty { problems.append("\(report.missing.count) parameters missing (first: \(report.missing[0]))") }
            if !report.unused.isEmpty { problems.append("\(report.unused.count) tensors unused (first: \(report.unused[0]))") }
            throw CheckpointError(file: file, message: "--strict: " + problems.joined(separator: "; "))
        }
        let source = (file as NSString).lastPathComponent
        for (tensor, storage, position) in replacements {
            tensor.storage = storage
            weightMap.entries[position].initRule = "imported from \(source)"
        }
        return report
    }
}

extension WeightImport {
    /// Bytes of new quantized codes an import holds until the write (512 MiB: every model up
    /// to about 1B parameters in int4); the codes past it are rounded again when written.
    /// A debug build takes `SLOWFAST_TEST_HELD_CODES_BYTES` instead, so that tests of small
    /// models reach both paths.
    public static var heldCodesBudget: Int {
        #if DEBUG
        if let value = getenv("SLOWFAST_TEST_HELD_CODES_BYTES").flatMap({ Int(String(cString: $0)) }), value >= 0 { return value }
        #endif
        return 512 << 20
    }

    /// A quantized entry's new codes (and scales, where they widened) from the checkpoint's
    /// float tensors, rounded with the model's own scheme (docs/DESIGN.md §8).
    static func requantized(_ entry: WeightMap.Entry, _ quantization: ProjectionStorage, checkpoint: SafeTensorsCheckpoint,
                            stored: StoredTensors, widen: Bool) throws -> (tensors: [(String, [UInt8])], report: Quantized) {
        let file = checkpoint.path
        let shapes = try entry.transform.canonicalShapes(onnxShape: [], canonicalName: entry.canonicalName)
        var matrix: [Float] = []
        for (name, shape) in shapes {
            guard let found = checkpoint.entry(named: name) else {
                throw CheckpointError(file: file, message: "tensor '\(name)' is missing (for '\(entry.onnxName)')")
            }
            guard found.entry.shape == shape else {
                throw CheckpointError(file: file, message: "tensor '\(name)' has shape \(found.entry.shape), the model needs \(shape) (for '\(entry.onnxName)')")
            }
            guard found.entry.dtype.isConvertibleFloat else {
                throw CheckpointError(file: file, message: "tensor '\(name)' is \(found.entry.dtype.rawValue); a quantized weight takes float values")
            }
            let raw = RawTensor(name: name, dtype: found.entry.dtype, shape: shape, bytes: try found.file.copyBytes(of: found.entry))
            let bytes = try raw.converted(to: .f32).bytes
            matrix += bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        let made: RequantizedWeights
        do {
            made = try DequantizedWeights(quantization, tensor: stored.tensor).requantized(matrix, widen: widen)
        } catch let error as QuantizedStorageError {
            throw CheckpointError(file: file, message: "'\(entry.onnxName)': \(error)")
        } catch let overflow as QuantizationOverflow {
            throw CheckpointError(file: file, message: "'\(shapes.map(\.name).joined(separator: ", "))' into '\(entry.onnxName)' (\(quantization.summary)): "
                + "\(overflow)" + (overflow.range == nil ? "" : "; --requantize widens the scale"))
        }
        var tensors: [(String, [UInt8])] = [(entry.onnxName, made.codes)]  // the codes first (RequantizedCodes reads them there)
        if let scales = made.scales {
            let name: String
            switch quantization {
            case .blockwise(let q): name = q.scales
            case .linear(let q): name = q.scale
            }
            guard let type = try? stored.tensor(name).elementType else {
                throw CheckpointError(file: file, message: "the model has no scales '\(name)'")
            }
            let tensor = TensorBytes(floats: scales, as: type)
            tensors.append((name, tensor.withUnsafeBytes { [UInt8]($0) }))
        }
        let report = Quantized(name: shapes.map(\.name).joined(separator: ", "), maxAbsError: made.maxAbsError,
                               meanAbsError: made.meanAbsError, widened: made.widened)
        return (tensors, report)
    }
}

/// The tensors a quantized weight is stored in (codes, scales, zero points), as they were
/// before an import replaced any of them: the scheme new codes are rounded with.
struct StoredTensors {
    private let tensors: [String: Tensor]
    private let file: String

    init(_ quantization: ProjectionStorage, graph: Graph) {
        var tensors: [String: Tensor] = [:]
        let weight: String
        switch quantization {
        case .blockwise(let q): weight = q.weight
        case .linear(let q): weight = q.weight
        }
        for name in [weight] + quantization.parameterTensors.map(\.name) {
            guard let tensor = graph.initializer(named: name), let type = tensor.elementType else { continue }
            // A copy: the graph's own tensor gets the new values.
            tensors[name] = Tensor(name: tensor.name, elementType: type, dims: tensor.dims, storage: tensor.storage)
        }
        self.tensors = tensors
        file = graph.name ?? ""
    }

    func tensor(_ name: String) throws -> Tensor {
        guard let tensor = tensors[name] else {
            throw TensorDataError.ioFailure(tensor: name, file: file, reason: "no initializer of that name")
        }
        return tensor
    }
}

/// A quantized weight's new codes, rounded from the checkpoint when the writer asks: the same
/// computation the import already ran to check and report them, so the same bytes.
final class RequantizedCodes: TensorData {
    private let make: () throws -> [UInt8]

    init(_ make: @escaping () throws -> [UInt8]) { self.make = make }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try make().withUnsafeBytes(body)
    }
}

/// The values of one initializer taken from a checkpoint: its parts read, converted to the
/// initializer's dtype, packed and laid out by the map's transform, when the writer asks.
final class ImportedValues: TensorData {
    let checkpoint: SafeTensorsCheckpoint
    let names: [String]
    let shapes: [[Int]]
    let transform: ParameterTransform
    let onnxName: String
    let dtype: SafeTensorsDType

    let scratch: ScratchBuffers
    let overflow: OverflowPolicy

    init(checkpoint: SafeTensorsCheckpoint, names: [String], shapes: [[Int]], transform: ParameterTransform,
         onnxName: String, dtype: SafeTensorsDType, scratch: ScratchBuffers, overflow: OverflowPolicy = .refuse) {
        self.overflow = overflow
        self.checkpoint = checkpoint
        self.names = names
        self.shapes = shapes
        self.transform = transform
        self.onnxName = onnxName
        self.dtype = dtype
        self.scratch = scratch
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        // The common case (one tensor, same dtype, at most a transpose) works on the mapped
        // checkpoint directly (its pages released after each tensor) and one buffer reused
        // from tensor to tensor: no fresh memory, so no page faults per tensor.
        if names.count == 1, transform.parts == nil, transform.offset == nil, transform.scale == nil,
           let found = checkpoint.entry(named: names[0]), found.entry.dtype == dtype {
            let count = found.entry.dataRange.count
            guard transform.transpose else { return try found.file.withBytesOnce(of: found.entry, body) }
            let shape = shapes[0]
            guard shape.count == 2 else {
                throw WeightTransformError.shapeMismatch(tensor: names[0], shape: shape, expected: [0, 0])
            }
            let written = scratch.buffer(count)
            try found.file.withBytesOnce(of: found.entry) { mapped in
                ParameterTransform.transpose(mapped, into: written, rows: shape[0], columns: shape[1], width: dtype.byteWidth)
            }
            return try body(UnsafeRawBufferPointer(rebasing: written[0 ..< count]))
        }
        var parts: [RawTensor] = []
        for (name, shape) in zip(names, shapes) {
            guard let found = checkpoint.entry(named: name) else { continue }
            let bytes = try found.file.copyBytes(of: found.entry)
            parts.append(RawTensor(name: name, dtype: found.entry.dtype, shape: shape, bytes: bytes))
        }
        let made: RawTensor
        do {
            made = try transform.onnxTensor(from: parts, name: onnxName, dtype: dtype, overflow: overflow)
        } catch let error as WeightTransformError {
            throw CheckpointError(file: checkpoint.path, message: "\(error)")  // the file its values came from
        }
        return try made.bytes.withUnsafeBytes(body)
    }
}

/// One growable buffer an import reuses for every transposed tensor.
final class ScratchBuffers {
    // Invariant: allocated here, replaced by a larger allocation when needed, freed in deinit.
    private var storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    deinit { storage.deallocate() }

    /// Room for at least `count` bytes; valid until the next call.
    func buffer(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if storage.count < count {
            storage.deallocate()
            storage = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
        }
        return storage
    }
}

/// The initializers of a model and its companions, by weight-map entry.
struct Initializers {
    private var byFile: [String?: [String: Tensor]] = [:]
    private var inputsByFile: [String?: Set<String>] = [:]

    init(model: Model, companions: [String: Model]) {
        func index(_ model: Model) -> [String: Tensor] {
            Dictionary(model.graph.initializers.compactMap { tensor in tensor.name.map { ($0, tensor) } }, uniquingKeysWith: { first, _ in first })
        }
        byFile[nil] = index(model)
        inputsByFile[nil] = Set(model.graph.inputs.compactMap(\.name))
        for (file, companion) in companions {
            byFile[file] = index(companion)
            inputsByFile[file] = Set(companion.graph.inputs.compactMap(\.name))
        }
    }

    func tensor(_ entry: WeightMap.Entry) -> Tensor? { byFile[entry.file]?[entry.onnxName] }

    /// An initializer named like a graph input is that input's default, not a parameter.
    func isInputDefault(_ entry: WeightMap.Entry) -> Bool { inputsByFile[entry.file]?.contains(entry.onnxName) ?? false }
}
