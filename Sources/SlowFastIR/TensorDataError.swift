/// A tensor's values were asked for but cannot be given in the requested form.
public enum TensorDataError: Error, CustomStringConvertible, Equatable {
    case unsupportedType(tensor: String, type: String, wanted: String)
    case ioFailure(tensor: String, file: String, reason: String)
    case sizeMismatch(tensor: String, expected: Int, stored: Int)

    public var description: String {
        switch self {
        case .unsupportedType(let tensor, let type, let wanted):
            return "tensor '\(tensor)': element type \(type) cannot be read as \(wanted)"
        case .ioFailure(let tensor, let file, let reason):
            return "tensor '\(tensor)': cannot read external data file '\(file)': \(reason)"
        case .sizeMismatch(let tensor, let expected, let stored):
            return "tensor '\(tensor)': holds \(stored) bytes but its type and dims need \(expected)"
        }
    }
}
