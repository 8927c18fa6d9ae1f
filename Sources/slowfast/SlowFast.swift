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
        var standardError = StandardError()
        print("error: \(error)", to: &standardError)
        throw ExitCode.failure
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}
