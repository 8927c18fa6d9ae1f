import Foundation

/// Every way reading, validating or writing a safetensors checkpoint can fail.
///
/// Each case carries the file (and, where one is involved, the tensor) it is about.
/// `description` is always a single line: untrusted text (tensor names, metadata keys,
/// file names found in an index) is quoted and escaped so that newlines or control
/// characters inside it cannot start a new line or forge a message.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    // MARK: File level
    /// A system call failed (`operation` names it, `code` is `errno`).
    case io(path: String, operation: String, code: Int32)
    /// The path is not a regular file (FIFO, device, directory, socket ...).
    case notRegularFile(path: String, kind: String)
    /// The file is shorter than the 8-byte header-length prefix.
    case fileTooSmall(path: String, size: Int)
    /// The header length prefix is zero.
    case headerLengthZero(path: String)
    /// The header length prefix exceeds `limit` bytes.
    case headerTooLarge(path: String, length: UInt64, limit: Int)
    /// The header length prefix points past the end of the file.
    case headerPastEnd(path: String, length: UInt64, fileSize: Int)
    /// The header bytes are not valid UTF-8.
    case headerNotUTF8(path: String)
    /// The header is not valid JSON (strict parse; `offset` is a byte offset inside the header).
    case headerInvalidJSON(path: String, offset: Int, reason: String)
    /// The header JSON is valid but its top level is not an object.
    case headerNotObject(path: String)
    /// A key (tensor name or metadata key) appears twice in one JSON object.
    case duplicateKey(path: String, key: String)
    /// `__metadata__` is not an object mapping strings to strings.
    case invalidMetadata(path: String, key: String?, reason: String)

    // MARK: Tensor entries
    /// A tensor's header value is not a JSON object.
    case entryNotObject(path: String, tensor: String)
    /// A tensor entry lacks a required field (`dtype`, `shape`, `data_offsets`).
    case missingField(path: String, tensor: String, field: String)
    /// A tensor entry field has the wrong JSON type; `expected` describes the right one.
    case fieldWrongType(path: String, tensor: String, field: String, expected: String)
    /// The dtype name is not one this library supports.
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// A shape dimension is negative, fractional, or too large for `Int`.
    case invalidShapeDimension(path: String, tensor: String, value: String)
    /// A data offset is negative, fractional, or too large for `Int`.
    case invalidOffset(path: String, tensor: String, value: String)
    /// `data_offsets` has begin > end.
    case offsetsReversed(path: String, tensor: String, begin: Int, end: Int)
    /// `data_offsets` end lies past the data buffer.
    case dataPastEnd(path: String, tensor: String, end: Int, bufferSize: Int)
    /// Element count × byte width overflows `Int`.
    case sizeOverflow(path: String, tensor: String)
    /// Element count × byte width differs from end - begin.
    case sizeMismatch(path: String, tensor: String, expected: Int, actual: Int)
    /// Two tensors' byte spans overlap.
    case overlappingSpans(path: String, tensor: String, other: String)
    /// Bytes of the data buffer in `range` belong to no tensor (spans must tile the buffer).
    case uncoveredBytes(path: String, range: Range<Int>)

    // MARK: Access
    /// The file shrank after it was opened; reading the tensor would fault.
    case fileShrunk(path: String, tensor: String, needed: Int, size: Int)
    /// The entry passed does not belong to this file.
    case entryNotInFile(path: String, tensor: String)
    /// No tensor of that name in the checkpoint.
    case tensorNotFound(path: String, tensor: String)

    // MARK: Checkpoints / index
    /// The index file is malformed (`reason` says how).
    case invalidIndex(path: String, reason: String)
    /// An index names a shard that is absolute, contains `..`, or resolves outside the folder.
    case unsafeShardPath(path: String, shard: String)
    /// A shard named by the index does not exist.
    case missingShard(path: String, shard: String)
    /// The index maps a tensor to a shard that does not hold it.
    case tensorNotInShard(path: String, tensor: String, shard: String)
    /// A shard holds a tensor the index does not list (or lists for another shard).
    case tensorNotInIndex(path: String, tensor: String, shard: String)
    /// The same tensor name appears in two shards.
    case tensorInTwoShards(tensor: String, first: String, second: String)
    /// A folder holds no usable safetensors file.
    case noCheckpointFound(path: String)
    /// A folder holds more than one `*.safetensors.index.json`.
    case ambiguousIndex(path: String, candidates: [String])

    // MARK: Writing
    /// A tensor given to a writer is invalid (`reason` says how).
    case invalidTensor(path: String, tensor: String, reason: String)
    /// A data provider supplied a different number of bytes than the shape needs.
    case providerByteCountMismatch(path: String, tensor: String, expected: Int, written: Int)
    /// The sharded writer refuses a folder that already holds safetensors files.
    case directoryNotEmpty(path: String, existing: String)

    // MARK: Conversion
    /// A byte buffer's length is not a multiple of the dtype width, or the conversion is unsupported.
    case conversionUnsupported(from: String, to: String, reason: String)

    /// One line naming the file (and tensor) and what was expected; untrusted text is escaped.
    public var description: String {
        let q = SafeTensorsError.quote
        switch self {
        case let .io(path, op, code):
            return "\(q(path)): \(op) failed: \(q(String(cString: strerror(code)))) (errno \(code))"
        case let .notRegularFile(path, kind):
            return "\(q(path)): expected a regular file, found \(kind)"
        case let .fileTooSmall(path, size):
            return "\(q(path)): file is \(size) bytes, expected at least 8 (the header length prefix)"
        case let .headerLengthZero(path):
            return "\(q(path)): header length is 0, expected a JSON header of at least 2 bytes"
        case let .headerTooLarge(path, length, limit):
            return "\(q(path)): header length \(length) exceeds the limit of \(limit) bytes"
        case let .headerPastEnd(path, length, size):
            return "\(q(path)): header length \(length) runs past the end of the \(size)-byte file"
        case let .headerNotUTF8(path):
            return "\(q(path)): header is not valid UTF-8"
        case let .headerInvalidJSON(path, offset, reason):
            return "\(q(path)): header is not valid JSON at byte \(offset): \(q(reason))"
        case let .headerNotObject(path):
            return "\(q(path)): header JSON is not an object"
        case let .duplicateKey(path, key):
            return "\(q(path)): key \(q(key)) appears twice in the header, expected unique names"
        case let .invalidMetadata(path, key, reason):
            if let key { return "\(q(path)): __metadata__ key \(q(key)): \(reason)" }
            return "\(q(path)): __metadata__: \(reason)"
        case let .entryNotObject(path, t):
            return "\(q(path)): tensor \(q(t)): entry is not a JSON object"
        case let .missingField(path, t, f):
            return "\(q(path)): tensor \(q(t)): missing field \(q(f))"
        case let .fieldWrongType(path, t, f, e):
            return "\(q(path)): tensor \(q(t)): field \(q(f)) must be \(e)"
        case let .unsupportedDType(path, t, d):
            return "\(q(path)): tensor \(q(t)): dtype \(q(d)) is not supported (supported: \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: " ")))"
        case let .invalidShapeDimension(path, t, v):
            return "\(q(path)): tensor \(q(t)): shape dimension \(q(v)) is not a non-negative integer that fits in Int"
        case let .invalidOffset(path, t, v):
            return "\(q(path)): tensor \(q(t)): data offset \(q(v)) is not a non-negative integer that fits in Int"
        case let .offsetsReversed(path, t, b, e):
            return "\(q(path)): tensor \(q(t)): data_offsets begin \(b) > end \(e)"
        case let .dataPastEnd(path, t, e, size):
            return "\(q(path)): tensor \(q(t)): data_offsets end \(e) is past the \(size)-byte data buffer"
        case let .sizeOverflow(path, t):
            return "\(q(path)): tensor \(q(t)): element count times dtype width overflows"
        case let .sizeMismatch(path, t, e, a):
            return "\(q(path)): tensor \(q(t)): shape and dtype need \(e) bytes, data_offsets span \(a)"
        case let .overlappingSpans(path, t, o):
            return "\(q(path)): tensor \(q(t)): data overlaps tensor \(q(o))"
        case let .uncoveredBytes(path, r):
            return "\(q(path)): data bytes \(r.lowerBound)..<\(r.upperBound) belong to no tensor, expected tensors to tile the data buffer"
        case let .fileShrunk(path, t, needed, size):
            return "\(q(path)): tensor \(q(t)): file shrank to \(size) bytes after opening, \(needed) needed"
        case let .entryNotInFile(path, t):
            return "\(q(path)): tensor \(q(t)): entry does not belong to this file"
        case let .tensorNotFound(path, t):
            return "\(q(path)): no tensor named \(q(t))"
        case let .invalidIndex(path, reason):
            return "\(q(path)): invalid index: \(reason)"
        case let .unsafeShardPath(path, s):
            return "\(q(path)): shard \(q(s)) is absolute, contains '..', or resolves outside the index folder"
        case let .missingShard(path, s):
            return "\(q(path)): shard \(q(s)) does not exist"
        case let .tensorNotInShard(path, t, s):
            return "\(q(path)): tensor \(q(t)): index maps it to shard \(q(s)), which does not hold it"
        case let .tensorNotInIndex(path, t, s):
            return "\(q(path)): tensor \(q(t)) in shard \(q(s)) is not mapped to that shard by the index"
        case let .tensorInTwoShards(t, a, b):
            return "tensor \(q(t)) is present in two shards: \(q(a)) and \(q(b))"
        case let .noCheckpointFound(path):
            return "\(q(path)): no model.safetensors.index.json or *.safetensors file found"
        case let .ambiguousIndex(path, c):
            return "\(q(path)): several index files, expected one: \(c.map(q).joined(separator: ", "))"
        case let .invalidTensor(path, t, reason):
            return "\(q(path)): tensor \(q(t)): \(reason)"
        case let .providerByteCountMismatch(path, t, e, w):
            return "\(q(path)): tensor \(q(t)): provider wrote \(w) bytes, expected \(e)"
        case let .directoryNotEmpty(path, existing):
            return "\(q(path)): folder already holds \(q(existing)), expected no safetensors files"
        case let .conversionUnsupported(from, to, reason):
            return "conversion \(from) -> \(to): \(reason)"
        }
    }

    /// Quotes `text` for a one-line message: escapes quotes, backslashes, control and
    /// line-separator characters, and shortens very long text.
    static func quote(_ text: String) -> String {
        var out = "\""
        var count = 0
        for scalar in text.unicodeScalars {
            count += 1
            if count > 256 { out += "..."; break }
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let v = scalar.value
                if v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029 || v == 0xFEFF
                    || (v >= 0x202A && v <= 0x202E) || (v >= 0x2066 && v <= 0x2069) {
                    out += "\\u{\(String(v, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
