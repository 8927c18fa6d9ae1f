import SlowFastIR
#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import ONNXProto

/// Where the writer puts the external weights of the input model.
public enum WeightsMode: String, CaseIterable, Sendable {
    /// A reflink (copy-on-write clone: instant, its own inode) where the filesystem has them,
    /// else `copy`. Not `link`: onnx (>= 1.18) refuses to load data files with several hard
    /// links, so a hard link would break onnx.load and onnx.checker on the input and the output.
    case auto
    /// Hard-link each data file next to the output: nothing is copied.
    case link
    /// Copy each data file (a reflink where the filesystem has one).
    case copy
    /// Put every tensor inside the `.onnx` file (only while it stays under 2 GiB).
    case inline
}

/// Options of `ModelWriter.write`.
public struct WriteOptions {
    public var weights: WeightsMode
    /// New tensors of at least this many bytes go to `<output>.data` when the model keeps
    /// its weights externally; smaller ones, and all in inline mode, go inside the model.
    public var externalThreshold: Int

    /// Other files written in the same transaction (e.g. the weight map), path -> bytes.
    public var sidecars: [(path: String, bytes: [UInt8])]
    /// Permission bits for sidecars copied from input files (path -> the input's bits): the
    /// copy gets no bit the input lacks.
    public var sidecarModes: [String: mode_t] = [:]
    /// Other models written in the same transaction (e.g. a companion the rewrite built),
    /// path -> model, every tensor inline (each must stay under 2 GiB).
    public var companions: [(path: String, model: Model)]

    /// Files read besides the model and its data files (e.g. checkpoint files): no file the
    /// write touches may be one of them.
    public var inputs: [String] = []

    public init(weights: WeightsMode = .auto, externalThreshold: Int = 1024, sidecars: [(path: String, bytes: [UInt8])] = [],
                companions: [(path: String, model: Model)] = []) {
        self.weights = weights
        self.externalThreshold = externalThreshold
        self.sidecars = sidecars
        self.companions = companions
    }
}

/// What the writer did with one file.
public struct WrittenFile: Equatable, Sendable {
    public enum Action: String, Sendable { case written, linked, cloned, copied, alreadyInPlace = "already in place" }
    public let path: String
    public let action: Action
    public let bytes: Int
}

/// The files a write produced, model last.
public struct WriteReport: Sendable {
    public let files: [WrittenFile]
    public let weights: WeightsMode
}

/// Writes the IR as a binary `.onnx` file plus its external data, atomically.
public enum ModelWriter {
    /// The protobuf size limit: one message cannot exceed 2 GiB.
    static let protobufLimit = Int(Int32.max)

    /// Writes `model` to `path`. The input model's files are never modified; on error nothing
    /// is left at `path` or beside it.
    @discardableResult
    public static func write(_ model: Model, to path: String, options: WriteOptions = WriteOptions()) throws -> WriteReport {
        let outputFolder = Path.directory(of: path)
        var folderInfo = stat()
        guard PathCall.stat(outputFolder, &folderInfo) == 0, (folderInfo.st_mode & S_IFMT) == S_IFDIR else {
            throw ModelWriteError.outputNotWritable(path: path, reason: "folder '\(outputFolder)' does not exist")
        }
        if let source = model.sourcePath, isSameFile(source, path) {
            throw ModelWriteError.outputIsInput(path: path)
        }
        // Temporaries of earlier runs that were killed before they could clean up.
        OutputTransaction.removeStaleTemporaries(in: outputFolder)

        let plan = try DataFilePlan(model: model, output: path, mode: options.weights)
        // A progress line (on a terminal, for a gigabyte or more): the data files copied and
        // the values written (imported, computed, repacked).
        let progress = ProgressLine("writing \(Path.fileName(of: path))", total: plan.copiedBytes + valueBytes(model, plan: plan))
        defer { progress.finish() }

        // New tensors go beside the output when the model already keeps weights outside; they
        // are streamed into a staged file as the encoder reaches them.
        let transaction = OutputTransaction()
        let newDataName = freshDataName(for: plan.outputName, taken: plan.outputNames)
        let useNewDataFile = plan.mode != .inline && plan.inputWasExternal
        try refuseOverlaps(model: model, output: path,
                           dataFiles: plan.mode == .inline ? [] : plan.locationOrder.map { (outputFolder + "/" + plan.destinationName($0), plan.sources[$0]) },
                           newData: useNewDataFile ? outputFolder + "/" + newDataName : nil,
                           sidecars: options.sidecars.map(\.path) + options.companions.map(\.path), inputs: options.inputs, inputData: Array(plan.inputFiles.values))
        var newData: OutputTransaction.Appender?
        func placeValues(_ data: any TensorData) throws -> TensorPlacement {
            if useNewDataFile, let chunked = data as? any ChunkedTensorData, chunked.byteCount >= options.externalThreshold {
                let file = try newData ?? transaction.stageAppender(path: outputFolder + "/" + newDataName)
                newData = file
                var start: Int?, written = 0
                try chunked.forEachChunk { piece in
                    let offset = try file.append(piece, alignment: start == nil ? 64 : 1)
                    start = start ?? offset
                    written += piece.count
                }
                guard let start, written == chunked.byteCount else {
                    throw ModelWriteError.encodeFailed(path: path, reason: "a computed tensor gave \(written) of its \(chunked.byteCount) bytes")
                }
                return .external(location: newDataName, offset: start, length: written, others: [])
            }
            if useNewDataFile {
                let placed = try data.withBytes { raw -> (offset: Int, length: Int)? in
                    guard raw.count >= options.externalThreshold else { return nil }
                    let file = try newData ?? transaction.stageAppender(path: outputFolder + "/" + newDataName)
                    newData = file
                    return (try file.append(raw, alignment: 64), raw.count)
                }
                if let placed { return .external(location: newDataName, offset: placed.offset, length: placed.length, others: []) }
            }
            return .inline(data)
        }
        let placement: (Tensor) throws -> TensorPlacement = { tensor in
            guard let data = plan.writtenValues(of: tensor) else {
                guard case .external(let data) = tensor.storage, let location = data as? ExternalDataLocation else { return .asRead }
                let name = plan.destinationName(location.location)
                if tensor.origin != nil && name == location.location { return .asRead }
                return .external(location: name, offset: location.offset, length: location.length, others: location.otherEntries)
            }
            defer { progress.advance(by: Self.byteCount(of: tensor)) }
            if plan.mode == .inline, case .external = tensor.storage { return .inline(data) }
            return try placeValues(data)
        }

        let encoder = WireEncoder(place: placement)
        let message = try encoder.model(model)
        let size = withUnsafeMutablePointer(to: &message.pointee.base) { protobuf_c_message_get_packed_size($0) }
        if size > protobufLimit {
            if plan.mode == .inline { throw ModelWriteError.inlineTooLarge(path: path, bytes: size) }
            throw ModelWriteError.encodeFailed(path: path, reason: "the graph alone is \(size) bytes, over the 2 GiB protobuf limit")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { buffer.deallocate() }
        let packed = withUnsafeMutablePointer(to: &message.pointee.base) {
            protobuf_c_message_pack($0, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard packed == size else {
            throw ModelWriteError.encodeFailed(path: path, reason: "packed \(packed) of \(size) bytes")
        }

        newData?.finish()
        var files = try stageDataFiles(plan, transaction: transaction, progress: progress)
        if let newData {
            files.append(WrittenFile(path: newData.path, action: .written, bytes: newData.size))
        }
        files += try stageBesideFiles(options, model: model, transaction: transaction)
        // A data file that shrank while we read or copied it would leave a model pointing
        // past its end: refuse before anything is renamed into place.
        for source in plan.sources.values {
            do { try source.checkUnchanged() } catch let error as SystemError {
                throw ModelWriteError.ioFailure(path: error.path, reason: error.message)
            }
        }
        try transaction.stage(path: path, bytes: UnsafeRawBufferPointer(rebasing: buffer[0 ..< size]))
        files.append(WrittenFile(path: path, action: .written, bytes: size))
        try transaction.commit(lockingFolder: outputFolder)
        return WriteReport(files: files, weights: plan.mode)
    }

    /// Bytes of the values `write` will encode or append (not those it copies whole).
    private static func valueBytes(_ model: Model, plan: DataFilePlan) -> Int {
        model.allTensors.reduce(0) { sum, tensor in
            plan.writtenValues(of: tensor) == nil ? sum : sum.addingReportingOverflow(byteCount(of: tensor)).partialValue
        }
    }

    /// A tensor's bytes by its dims and type (0 where they do not say).
    static func byteCount(of tensor: Tensor) -> Int {
        var elements = 1
        for dim in tensor.dims {
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(clamping: max(0, dim)))
            if overflow { return 0 }
            elements = product
        }
        return tensor.elementType?.byteCount(elements: elements) ?? 0
    }

    /// Copies, clones or links of the input data files the output keeps reading, staged under
    /// their names beside the output.
    private static func stageDataFiles(_ plan: DataFilePlan, transaction: OutputTransaction, progress: ProgressLine) throws -> [WrittenFile] {
        guard plan.mode != .inline else { return [] }
        var files: [WrittenFile] = []
        for location in plan.locationOrder {
            guard let source = plan.sources[location] else { continue }
            let destination = plan.outputFolder + "/" + plan.destinationName(location)
            if isSameFile(destination, source.path) {
                files.append(WrittenFile(path: destination, action: .alreadyInPlace, bytes: source.size))
            } else if plan.mode == .auto, try transaction.stageClone(source: source, path: destination) {
                progress.advance(by: source.size)
                files.append(WrittenFile(path: destination, action: .cloned, bytes: source.size))
            } else if plan.mode == .link {
                try transaction.stageLink(source: source, path: destination)
                files.append(WrittenFile(path: destination, action: .linked, bytes: source.size))
            } else {
                try transaction.stageCopy(source: source, path: destination, progress: progress)
                files.append(WrittenFile(path: destination, action: .copied, bytes: source.size))
            }
        }
        return files
    }

    /// The companion models and sidecar files written beside the output, staged.
    private static func stageBesideFiles(_ options: WriteOptions, model: Model, transaction: OutputTransaction) throws -> [WrittenFile] {
        var files: [WrittenFile] = []
        for companion in options.companions {
            if let source = model.sourcePath, isSameFile(source, companion.path) {
                throw ModelWriteError.outputIsInput(path: companion.path)
            }
            let bytes = try packInline(companion.model, path: companion.path)
            try bytes.withUnsafeBytes { try transaction.stage(path: companion.path, bytes: $0) }
            files.append(WrittenFile(path: companion.path, action: .written, bytes: bytes.count))
        }
        for sidecar in options.sidecars {
            if let source = model.sourcePath, isSameFile(source, sidecar.path) {
                throw ModelWriteError.outputIsInput(path: sidecar.path)
            }
            try sidecar.bytes.withUnsafeBytes { try transaction.stage(path: sidecar.path, bytes: $0, mode: options.sidecarModes[sidecar.path]) }
            files.append(WrittenFile(path: sidecar.path, action: .written, bytes: sidecar.bytes.count))
        }
        return files
    }

    /// `model` packed with every tensor inside the message.
    static func packInline(_ model: Model, path: String) throws -> [UInt8] {
        let encoder = WireEncoder(place: { tensor in
            switch tensor.storage {
            case .embedded: return .asRead
            case .external(let data): return .inline(data)
            case .bytes(let bytes): return .inline(bytes)
            case .computed(let data): return .inline(data)
            }
        })
        let message = try encoder.model(model)
        let size = withUnsafeMutablePointer(to: &message.pointee.base) { protobuf_c_message_get_packed_size($0) }
        if size > protobufLimit { throw ModelWriteError.inlineTooLarge(path: path, bytes: size) }
        var bytes = [UInt8](repeating: 0, count: size)
        let packed = bytes.withUnsafeMutableBufferPointer { buffer in
            withUnsafeMutablePointer(to: &message.pointee.base) { protobuf_c_message_pack($0, buffer.baseAddress!) }
        }
        withExtendedLifetime(encoder) {}
        guard packed == size else { throw ModelWriteError.encodeFailed(path: path, reason: "packed \(packed) of \(size) bytes") }
        return bytes
    }

    /// Every path the write touches is compared, by device and inode, with every file it reads
    /// (the model, its data files, other inputs), and the written paths with each other; any
    /// overlap is refused before anything is written. Special files are refused by type.
    static func refuseOverlaps(model: Model, output: String, dataFiles: [(path: String, source: MappedFile?)], newData: String?,
                               sidecars: [String], inputs: [String], inputData: [MappedFile]) throws {
        struct Identity: Hashable { let device: UInt64; let inode: UInt64 }
        func identity(_ path: String) -> Identity? {
            var info = stat()
            guard PathCall.stat(path, &info) == 0 else { return nil }
            return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
        var read: [Identity: String] = [:]
        for file in inputData { read[Identity(device: file.device, inode: file.inode)] = file.path }
        for input in [model.sourcePath].compactMap({ $0 }) + inputs {
            if let id = identity(input) { read[id] = input }
        }
        // Each written path once, by its folder's real path and its name.
        var written: [String: String] = [:]
        let key = normalizedPath
        var targets: [(path: String, own: MappedFile?)] = [(output, nil)]
        targets += dataFiles.map { ($0.path, $0.source) }
        if let newData { targets.append((newData, nil)) }
        targets += sidecars.map { ($0, nil) }
        for target in targets {
            try OutputTransaction.refuseSpecialFile(at: target.path)
            if let earlier = written.updateValue(target.path, forKey: key(target.path)) {
                throw ModelWriteError.outputNotWritable(path: target.path, reason: "the write would put two files at one path (also '\(earlier)')")
            }
            guard let id = identity(target.path), let input = read[id] else { continue }
            // A data file already in place (the output beside the input) is not written.
            if let own = target.own, own.device == id.device, own.inode == id.inode { continue }
            if target.path == output && input == model.sourcePath { throw ModelWriteError.outputIsInput(path: output) }
            throw ModelWriteError.outputOverwritesInput(path: target.path, input: input)
        }
    }

    /// A path by its folder's real path (when the folder exists) and its name.
    static func normalizedPath(_ path: String) -> String {
        (Path.realPath(Path.directory(of: path)) ?? Path.directory(of: path)) + "/" + Path.fileName(of: path)
    }

    /// Whether `location` is one of the data-file names an output called `modelName` owns:
    /// `<modelName>.data` or `<modelName>.<n>.data`.
    static func isOwnDataName(_ location: String, of modelName: String) -> Bool {
        if location == modelName + ".data" { return true }
        guard location.hasPrefix(modelName + "."), location.hasSuffix(".data") else { return false }
        let middle = location.dropFirst(modelName.count + 1).dropLast(".data".count)
        return !middle.isEmpty && middle.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// `<model file name>.data`, or a variant no input location uses.
    static func freshDataName(for modelName: String, taken: Set<String>) -> String {
        var candidate = modelName + ".data"
        var counter = 1
        while taken.contains(candidate) {
            candidate = "\(modelName).\(counter).data"
            counter += 1
        }
        return candidate
    }

    /// True when both paths exist and are the same file (same device and inode).
    static func isSameFile(_ first: String, _ second: String) -> Bool {
        var a = stat(), b = stat()
        guard PathCall.stat(first, &a) == 0, PathCall.stat(second, &b) == 0 else { return false }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }
}
