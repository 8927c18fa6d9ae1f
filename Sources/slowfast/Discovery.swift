import SlowFastKit

/// Finds the decoder layers of `model` with the adapter the user chose.
func discoverLayers(_ model: Model, adapter: String) throws -> ModelLayout {
    throw CommandError("\(model.sourcePath ?? "model"): layer discovery is not available yet; pass --layout FILE")
}
