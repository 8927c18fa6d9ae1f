import SlowFastIR
/// Why a model file could not be read. Every case names the file, and where it applies the
/// tensor and the data file; `description` is one line, starting with the file.
public enum ModelReadError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(file: String, reason: String)
    case notONNX(file: String, reason: String)
    case externalLocationAbsolute(file: String, tensor: String, location: String)
    case externalLocationEscapes(file: String, tensor: String, location: String)
    case externalLocationMissing(file: String, tensor: String)
    case externalFileMissing(file: String, tensor: String, dataFile: String)
    case externalFileNotRegular(file: String, tensor: String, dataFile: String, kind: String)
    case externalRangePastEnd(file: String, tensor: String, dataFile: String, offset: Int, length: Int, fileSize: Int)
    case externalBadEntry(file: String, tensor: String, key: String, value: String)
    case externalSizeMismatch(file: String, tensor: String, expected: Int, stored: Int)
    case tensorDimsInvalid(file: String, tensor: String, dims: [Int64])
    case rawDataSizeMismatch(file: String, tensor: String, expected: Int, stored: Int)

    public var file: String {
        switch self {
        case .cannotOpen(let file, _), .notONNX(let file, _),
             .externalLocationAbsolute(let file, _, _), .externalLocationEscapes(let file, _, _),
             .externalLocationMissing(let file, _), .externalFileMissing(let file, _, _),
             .externalFileNotRegular(let file, _, _, _),
             .externalRangePastEnd(let file, _, _, _, _, _), .externalBadEntry(let file, _, _, _),
             .externalSizeMismatch(let file, _, _, _), .tensorDimsInvalid(let file, _, _),
             .rawDataSizeMismatch(let file, _, _, _):
            return file
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(let file, let reason):
            return "\(file): cannot open: \(reason)"
        case .notONNX(let file, let reason):
            return "\(file): not an ONNX model (\(reason))"
        case .externalLocationAbsolute(let file, let tensor, let location):
            return "\(file): tensor '\(tensor)': external data location '\(location)' is absolute; it must be relative to the model's folder"
        case .externalLocationEscapes(let file, let tensor, let location):
            return "\(file): tensor '\(tensor)': external data location '\(location)' leads outside the model's folder"
        case .externalLocationMissing(let file, let tensor):
            return "\(file): tensor '\(tensor)': external data has no 'location' entry"
        case .externalFileMissing(let file, let tensor, let dataFile):
            return "\(file): tensor '\(tensor)': external data file '\(dataFile)' does not exist"
        case .externalFileNotRegular(let file, let tensor, let dataFile, let kind):
            return "\(file): tensor '\(tensor)': external data file '\(dataFile)' is \(kind), not a regular file"
        case .externalRangePastEnd(let file, let tensor, let dataFile, let offset, let length, let fileSize):
            return "\(file): tensor '\(tensor)': external data [offset \(offset), length \(length)] runs past the end of '\(dataFile)' (\(fileSize) bytes)"
        case .externalBadEntry(let file, let tensor, let key, let value):
            return "\(file): tensor '\(tensor)': external data entry \(key)='\(value)' is not a non-negative integer"
        case .tensorDimsInvalid(let file, let tensor, let dims):
            return "\(file): tensor '\(tensor)': dims \(dims) are negative or too large for a tensor"
        case .rawDataSizeMismatch(let file, let tensor, let expected, let stored):
            return "\(file): tensor '\(tensor)': raw_data holds \(stored) bytes but its type and dims need \(expected)"
        case .externalSizeMismatch(let file, let tensor, let expected, let stored):
            return "\(file): tensor '\(tensor)': external data holds \(stored) bytes but its type and dims need \(expected)"
        }
    }
}

/// Why a model could not be written. Nothing is left at the output path when one is thrown.
public enum ModelWriteError: Error, CustomStringConvertible, Equatable {
    case outputNotWritable(path: String, reason: String)
    case outputIsInput(path: String)
    case outputOverwritesInput(path: String, input: String)
    case inlineTooLarge(path: String, bytes: Int)
    case crossDeviceLink(path: String, dataFile: String)
    case encodeFailed(path: String, reason: String)
    case ioFailure(path: String, reason: String)
    case dataFileConflict(path: String, dataFile: String)

    public var description: String {
        switch self {
        case .outputNotWritable(let path, let reason):
            return "\(path): cannot write output: \(reason)"
        case .outputIsInput(let path):
            return "\(path): output would overwrite the input model; choose another output path"
        case .outputOverwritesInput(let path, let input):
            return "\(path): the write would replace '\(input)', which this run reads; choose another output path"
        case .inlineTooLarge(let path, let bytes):
            return "\(path): --weights inline would make a \(bytes)-byte model, over the 2 GiB protobuf limit; use --weights link or copy"
        case .crossDeviceLink(let path, let dataFile):
            return "\(path): cannot hard-link '\(dataFile)' across filesystems; use --weights copy"
        case .encodeFailed(let path, let reason):
            return "\(path): cannot encode model: \(reason)"
        case .ioFailure(let path, let reason):
            return "\(path): \(reason)"
        case .dataFileConflict(let path, let dataFile):
            return "\(path): external data file '\(dataFile)' would be written twice with different content"
        }
    }
}
