import Foundation
import PackagePlugin

/// Compiles the built-in adapters (`Adapters/*.yaml`) and the JSON Schemas (`Schemas/*.json`)
/// into the target as string constants, so an installed `slowfast` carries them. The files in
/// the repository stay the source of truth: the generated code is rebuilt when one changes.
@main
struct EmbedFiles: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL
        func files(in folder: String, suffix: String) throws -> [URL] {
            let url = root.appendingPathComponent(folder)
            return try FileManager.default.contentsOfDirectory(atPath: url.path)
                .filter { $0.hasSuffix(suffix) }
                .sorted()
                .map { url.appendingPathComponent($0) }
        }
        let adapters = try files(in: "Adapters", suffix: ".yaml")
        let schemas = try files(in: "Schemas", suffix: ".json")
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedFiles.swift")
        let arguments = [output.path, "--adapters"] + adapters.map(\.path) + ["--schemas"] + schemas.map(\.path)
        return [.buildCommand(
            displayName: "Embedding \(adapters.count) adapters and \(schemas.count) schemas",
            executable: try context.tool(named: "embed-files").url,
            arguments: arguments,
            inputFiles: adapters + schemas,
            outputFiles: [output]
        )]
    }
}
