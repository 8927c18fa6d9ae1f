/// The validated content of a safetensors header.
struct SafeTensorsHeader {
    /// Header size limit: 100 MiB.
    static let maxHeaderLength = 100 * 1024 * 1024

    var metadata: [String: String]
    /// Sorted by data offset (then end, then name).
    var entries: [SafeTensorsEntry]

    /// Parses and validates header JSON bytes against a data buffer of `bufferSize` bytes.
    ///
    /// `path` is used only in errors. Checks every rule of the format: field presence and
    /// types, dtype names, integer ranges, offsets inside the buffer, size consistency, and
    /// exact tiling of the buffer by the tensors' spans.
    static func parse(headerBytes: [UInt8], bufferSize: Int, path: String) throws -> SafeTensorsHeader {
        let root: JSONValue
        do {
            root = try StrictJSONParser.parse(headerBytes)
        } catch {
            switch error {
            case .notUTF8: throw SafeTensorsError.headerNotUTF8(path: path)
            case let .syntax(offset, reason): throw SafeTensorsError.headerInvalidJSON(path: path, offset: offset, reason: reason)
            case let .duplicateKey(key): throw SafeTensorsError.duplicateKey(path: path, key: key)
            }
        }
        guard case let .object(members) = root else { throw SafeTensorsError.headerNotObject(path: path) }

        var metadata: [String: String] = [:]
        var entries: [SafeTensorsEntry] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                switch value {
                case .null: break
                case let .object(kv):
                    for (k, v) in kv {
                        guard case let .string(s) = v else {
                            throw SafeTensorsError.invalidMetadata(path: path, key: k, reason: "value must be a string")
                        }
                        metadata[k] = s
                    }
                default:
                    throw SafeTensorsError.invalidMetadata(path: path, key: nil, reason: "must be an object of strings")
                }
                continue
            }
            entries.append(try parseEntry(name: name, value: value, bufferSize: bufferSize, path: path))
        }

        entries.sort {
            if $0.dataRange.lowerBound != $1.dataRange.lowerBound { return $0.dataRange.lowerBound < $1.dataRange.lowerBound }
            if $0.dataRange.upperBound != $1.dataRange.upperBound { return $0.dataRange.upperBound < $1.dataRange.upperBound }
            return $0.name < $1.name
        }
        var cursor = 0
        var previous: String? = nil
        for e in entries {
            if e.dataRange.lowerBound < cursor {
                throw SafeTensorsError.overlappingSpans(path: path, tensor: e.name, other: previous ?? "")
            }
            if e.dataRange.lowerBound > cursor {
                throw SafeTensorsError.uncoveredBytes(path: path, range: cursor..<e.dataRange.lowerBound)
            }
            cursor = e.dataRange.upperBound
            previous = e.name
        }
        if cursor != bufferSize {
            throw SafeTensorsError.uncoveredBytes(path: path, range: cursor..<bufferSize)
        }
        return SafeTensorsHeader(metadata: metadata, entries: entries)
    }

    private static func parseEntry(name: String, value: JSONValue, bufferSize: Int, path: String) throws -> SafeTensorsEntry {
        guard case let .object(fields) = value else { throw SafeTensorsError.entryNotObject(path: path, tensor: name) }
        func field(_ key: String) throws -> JSONValue {
            guard let v = fields.first(where: { $0.key == key })?.value else {
                throw SafeTensorsError.missingField(path: path, tensor: name, field: key)
            }
            return v
        }
        guard case let .string(dtypeName) = try field("dtype") else {
            throw SafeTensorsError.fieldWrongType(path: path, tensor: name, field: "dtype", expected: "a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw SafeTensorsError.unsupportedDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard case let .array(dims) = try field("shape") else {
            throw SafeTensorsError.fieldWrongType(path: path, tensor: name, field: "shape", expected: "an array of integers")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard case .number = d else {
                throw SafeTensorsError.fieldWrongType(path: path, tensor: name, field: "shape", expected: "an array of integers")
            }
            guard let v = d.nonNegativeInt else {
                throw SafeTensorsError.invalidShapeDimension(path: path, tensor: name, value: d.sourceText)
            }
            shape.append(v)
        }
        guard case let .array(offs) = try field("data_offsets"), offs.count == 2 else {
            throw SafeTensorsError.fieldWrongType(path: path, tensor: name, field: "data_offsets", expected: "an array of two integers")
        }
        var bounds: [Int] = []
        for o in offs {
            guard case .number = o else {
                throw SafeTensorsError.fieldWrongType(path: path, tensor: name, field: "data_offsets", expected: "an array of two integers")
            }
            guard let v = o.nonNegativeInt else {
                throw SafeTensorsError.invalidOffset(path: path, tensor: name, value: o.sourceText)
            }
            bounds.append(v)
        }
        let begin = bounds[0], end = bounds[1]
        guard begin <= end else { throw SafeTensorsError.offsetsReversed(path: path, tensor: name, begin: begin, end: end) }
        guard end <= bufferSize else { throw SafeTensorsError.dataPastEnd(path: path, tensor: name, end: end, bufferSize: bufferSize) }
        guard let byteCount = SafeTensorsEntry.checkedByteCount(shape: shape, dtype: dtype) else {
            throw SafeTensorsError.sizeOverflow(path: path, tensor: name)
        }
        guard byteCount == end - begin else {
            throw SafeTensorsError.sizeMismatch(path: path, tensor: name, expected: byteCount, actual: end - begin)
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }
}
