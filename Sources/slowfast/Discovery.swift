import SlowFastKit

/// Finds the decoder layers of `model` with the adapter the user chose: `auto` (every
/// built-in adapter, first complete match wins), a built-in adapter's name, or a file path.
func discoverLayers(_ model: Model, adapter choice: String) throws -> ModelLayout {
    let adapters: [Adapter]
    if choice.hasSuffix(".yaml") || choice.hasSuffix(".yml") || choice.contains("/") {
        adapters = [try Adapter.load(path: choice)]
    } else {
        let builtIn = try Adapter.loadAll(folder: Adapter.builtInFolder())
        if choice == "auto" {
            adapters = builtIn
        } else {
            guard let named = builtIn.first(where: { $0.name == choice }) else {
                throw CommandError("no adapter named '\(choice)'; built in: " + builtIn.map(\.name).joined(separator: ", "))
            }
            adapters = [named]
        }
    }
    return try LayerDiscovery.discover(model, adapters: adapters)
}
