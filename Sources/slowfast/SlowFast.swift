import Foundation
import ArgumentParser
import SlowFastKit

@main
struct SlowFast: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slowfast",
        abstract: "Turn video multi-modal LLM exports (ONNX) into slow-fast models.",
        version: SlowFastVersion.string,
        subcommands: [RewriteCommand.self, PlanCommand.self, InspectCommand.self, TokensCommand.self, CostCommand.self,
                      WeightsCommand.self, AdaptersCommand.self, SchemaCommand.self]
    )
}

/// Runs `body`, turning library errors into `error: <file>: <message>` and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        ProgressLine.clear()
        var standardError = StandardError()
        print("error: \(oneLine(String(describing: error)))", to: &standardError)
        throw ExitCode.failure
    }
}

/// `text` on one line: newlines and other control characters (which a crafted tensor name,
/// location or YAML file can carry) are escaped, so a message cannot forge another line.
/// Multi-line messages of our own (a YAML parser's context) become one line joined by " | ".
/// A byte of a model's string that is not UTF-8 (kept as an escape scalar, see `ByteString`)
/// is written `\xFF`.
func oneLine(_ text: String) -> String {
    var result = ""
    for scalar in text.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars {
        if let byte = ByteString.escapedByte(scalar) {
            result += "\\x" + ByteString.hexByte(byte)
            continue
        }
        switch scalar {
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 || (0x7F ... 0x9F).contains(scalar.value) || scalar == "\u{2028}" || scalar == "\u{2029}" {
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}
