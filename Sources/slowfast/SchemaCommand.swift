import ArgumentParser
import SlowFastKit

struct SchemaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Print the JSON Schema of a file the tool reads or writes.",
        discussion: """
        With no name, lists the schemas compiled into the tool.

        Example:
          slowfast schema weight-map > weight-map.schema.json
        """
    )

    @Argument(help: "The schema: weight-map, inspect, cost or adapter.")
    var name: String?

    func run() throws {
        try reportingErrors {
            guard let name else { return print(BuiltIn.schemaNames.joined(separator: "\n")) }
            guard let text = BuiltIn.schema(named: name) else {
                throw CommandError("no schema named '\(name)'; there are: " + BuiltIn.schemaNames.joined(separator: ", "))
            }
            print(text, terminator: "")
        }
    }
}

struct AdaptersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapters",
        abstract: "List the built-in adapters, or print one to start your own from.",
        discussion: """
        Example:
          slowfast adapters hf-torch-eager > my-export.yaml
          slowfast inspect model.onnx --layers --adapter my-export.yaml
        """
    )

    @Argument(help: "A built-in adapter to print.")
    var name: String?

    func run() throws {
        try reportingErrors {
            guard let name else {
                for adapter in try BuiltIn.adapters() { print("\(adapter.name): \(adapter.description)") }
                return
            }
            guard let text = BuiltIn.adapterText(named: name) else {
                throw CommandError("no built-in adapter named '\(name)'; built in: " + BuiltIn.adapterNames.joined(separator: ", "))
            }
            print(text, terminator: "")
        }
    }
}
