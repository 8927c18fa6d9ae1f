#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import ONNXProto
import SlowFastIR

/// Which data files an output keeps reading and under which names: the input's external
/// files by location (one file under two spellings is one), those that a rewrite left mostly
/// unread (repacked into the new data file instead), and the output's own names for them
/// (`<OUT>.data`, `<OUT>.1.data`, ...), so an output never replaces a file another model in
/// the same folder reads.
struct DataFilePlan {
    let mode: WeightsMode
    let outputFolder: String
    let outputName: String
    /// Every input data file by the location a tensor names it with.
    let inputFiles: [String: MappedFile]
    /// Locations whose few remaining tensors are written into the new data file.
    let repacked: Set<String>
    /// The files staged beside the output, by location, in the order tensors first name them.
    let sources: [String: MappedFile]
    let locationOrder: [String]
    /// The output's data file names taken by the staged files.
    let outputNames: Set<String>
    /// True when the input kept some weights outside the model file.
    let inputWasExternal: Bool
    private let spelling: [String: String]
    private let renamed: [String: String]

    init(model: Model, output path: String, mode: WeightsMode) throws {
        let outputFolder = Path.directory(of: path)
            // The external files the model reads, by the location it names them with.
            let tensors = model.allTensors
            // Bytes each input data file still holds for the model. A file most of whose bytes no
            // tensor reads any more (weights replaced by an import) is not copied whole: the few
            // tensors left in it are repacked into the new data file instead (link mode links).
            // Counted per file (device and inode), not per spelling of its location.
            struct FileID: Hashable { let device: UInt64; let inode: UInt64 }
            var referenced: [FileID: Int] = [:]
            var inputFiles: [String: MappedFile] = [:]
            for tensor in tensors {
                if case .external(let data) = tensor.storage, let location = data as? ExternalDataLocation {
                    let id = FileID(device: location.file.device, inode: location.file.inode)
                    let (sum, overflow) = referenced[id, default: 0].addingReportingOverflow(location.length)
                    referenced[id] = overflow ? Int.max : sum
                    inputFiles[location.location] = location.file
                }
            }
            let repacked = Set(inputFiles.filter { _, file in
                let bytes = referenced[FileID(device: file.device, inode: file.inode)] ?? 0
                return mode != .link && mode != .inline && bytes < file.size - file.size / 2
            }.keys)
            var sources: [String: MappedFile] = [:]
            var locationOrder: [String] = []
            for tensor in tensors {
                if case .external(let data) = tensor.storage, let location = data as? ExternalDataLocation,
                   sources[location.location] == nil, !repacked.contains(location.location) {
                    sources[location.location] = location.file
                    locationOrder.append(location.location)
                }
            }
            // The output keeps its weights outside when the input did.
            let inputWasExternal = !inputFiles.isEmpty || tensors.contains { tensor in
                guard let origin = tensor.origin as? WireOrigin else { return false }
                let proto = origin.typed(Onnx__TensorProto.self).pointee
                return proto.has_data_location != 0 && proto.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
            }
            // One data file under two spellings (`w.data`, `./w.data`) is one destination: staged once.
            var destinations: [String: (file: MappedFile, location: String)] = [:]
            // A later spelling of a file staged under an earlier one: it is written as that one.
            var spelling: [String: String] = [:]
            locationOrder = locationOrder.filter { location in
                guard let source = sources[location] else { return true }
                let key = ModelWriter.normalizedPath(outputFolder + "/" + location)
                if let earlier = destinations[key], earlier.file.device == source.device, earlier.file.inode == source.inode {
                    spelling[location] = earlier.location
                    return false
                }
                destinations[key] = destinations[key] ?? (source, location)
                return true
            }
            // Data files are named after the output (`<OUT>.data`, `<OUT>.1.data`, ...), so an output
            // never replaces a file another model in the same folder reads (`shared/a.onnx`, then
            // `shared/b.onnx`, both from a `model.onnx.data`). A location that already is one of
            // the output's own names keeps it.
            let outputName = Path.fileName(of: path)
            var renamed: [String: String] = [:]
            var outputNames = Set(locationOrder.filter { ModelWriter.isOwnDataName($0, of: outputName) })
            for location in locationOrder where !outputNames.contains(location) {
                let name = ModelWriter.freshDataName(for: outputName, taken: outputNames)
                renamed[location] = name
                outputNames.insert(name)
            }
            for location in locationOrder where mode != .inline && ModelWriter.isSameFile(outputFolder + "/" + Self.destination(location, spelling: spelling, renamed: renamed), path) {
                throw ModelWriteError.dataFileConflict(path: path, dataFile: Self.destination(location, spelling: spelling, renamed: renamed))
            }
        self.mode = mode
        self.outputFolder = outputFolder
        self.outputName = outputName
        self.inputFiles = inputFiles
        self.repacked = repacked
        self.sources = sources
        self.locationOrder = locationOrder
        self.outputNames = outputNames
        self.inputWasExternal = inputWasExternal
        self.spelling = spelling
        self.renamed = renamed
    }

    /// Bytes of the data files staged by copying (a clone, where it works, counts at once).
    var copiedBytes: Int {
        guard mode == .auto || mode == .copy else { return 0 }
        return locationOrder.reduce(0) { $0.addingReportingOverflow(sources[$1]?.size ?? 0).partialValue }
    }

    /// The values of `tensor` that the write encodes or appends itself, nil for a tensor kept
    /// as it was read or left in a data file that is staged whole.
    func writtenValues(of tensor: Tensor) -> (any TensorData)? {
        switch tensor.storage {
        case .embedded:
            return nil
        case .external(let data):
            if mode == .inline { return data }
            guard let location = data as? ExternalDataLocation, !repacked.contains(location.location) else { return data }
            return nil
        case .bytes(let bytes):
            return bytes
        case .computed(let data):
            return data
        }
    }

    /// The name the output's folder holds `location`'s file under.
    func destinationName(_ location: String) -> String {
        Self.destination(location, spelling: spelling, renamed: renamed)
    }

    private static func destination(_ location: String, spelling: [String: String], renamed: [String: String]) -> String {
        let staged = spelling[location] ?? location
        return renamed[staged] ?? staged
    }
}
