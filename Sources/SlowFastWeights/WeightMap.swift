import SlowFastValues
import SlowFastIR
import Foundation

/// Where every parameter of a written model comes from: one entry per initializer of the
/// output, kept from the input, new (an init rule) or derived (computed from input weights).
/// Encodes to the JSON of `Schemas/weight-map.schema.json`.
public struct WeightMap: Codable, Equatable {
    public struct Entry: Codable, Equatable {
        public var onnxName: String
        /// PyTorch-style name; `canonicalSource` says where it came from.
        public var canonicalName: String
        /// `adapter` (layer discovery named it), `pass` (a pass created it), `onnx` (no
        /// better name is known: the ONNX name is used).
        public var canonicalSource: String
        public var kind: String
        public var shape: [Int64]
        public var dtype: String
        /// How the ONNX tensor is made from the canonical one(s).
        public var transform: ParameterTransform
        /// For new and derived tensors: how the values were made.
        public var initRule: String?
        public var figures: [String: Double]?
        /// The graph holding the initializer, when it is not the main graph.
        public var graph: String?
        /// The model file holding the initializer, when it is a companion model written beside
        /// the output (e.g. `model.slow-kv-encoder.onnx`), not the output itself.
        public var file: String?
    }

    public struct Summary: Codable, Equatable {
        public var initializers: Int
        public var kept: Int
        public var new: Int
        public var derived: Int
        public var newElements: Int
        public var newBytes: Int
    }

    public var schemaVersion = 2
    public var adapter: String?
    public var summary: Summary
    public var entries: [Entry]

    /// Builds the map of `model` (after the passes) from what discovery named and what the
    /// passes reported.
    ///
    /// `previous` is the map of an earlier rewrite of this model: initializers that neither
    /// this run's passes nor discovery name keep what it said of them (the parameters the
    /// earlier rewrite added stay named and `new`). `companions`: models written beside the
    /// output (file name, model, their parameters); their initializers are listed too, each
    /// with its `file`.
    public init(model: Model, layout: ModelLayout?, parameters: [ParameterRecord], previous: WeightMap? = nil,
                companions: [(file: String, model: Model, parameters: [ParameterRecord])] = []) {
        var created = Dictionary(parameters.map { ($0.onnxName, $0) }, uniquingKeysWith: { first, _ in first })
        let named = Dictionary((layout?.parameters ?? []).map { ($0.onnxName, $0) }, uniquingKeysWith: { first, _ in first })
        let earlier = Dictionary((previous?.entries ?? []).filter { $0.graph == nil }.map { ($0.onnxName, $0) },
                                 uniquingKeysWith: { first, _ in first })
        var entries: [Entry] = []
        var summary = Summary(initializers: 0, kept: 0, new: 0, derived: 0, newElements: 0, newBytes: 0)
        var file: String?
        func add(_ graph: Graph, label: String?) {
            for tensor in graph.initializers {
                let name = tensor.name ?? ""
                var entry = Entry(onnxName: name, canonicalName: name, canonicalSource: "onnx", kind: "kept", shape: tensor.dims,
                                  dtype: ElementType.name(of: tensor.dataType ?? 0), transform: .identity, initRule: nil,
                                  figures: nil, graph: label, file: file)
                if let record = created[name] {
                    entry.canonicalName = record.canonicalName
                    entry.canonicalSource = "pass"
                    entry.kind = record.kind.rawValue
                    entry.transform = record.transform
                    entry.initRule = record.initRule
                    entry.figures = record.figures.isEmpty ? nil : record.figures
                    summary.newElements += tensor.elementCount ?? 0
                    summary.newBytes += tensor.byteCount ?? 0
                    if record.kind == .new { summary.new += 1 } else { summary.derived += 1 }
                } else if label == nil, file == nil, let before = earlier[name], before.kind != "kept" || named[name] == nil {
                    entry.canonicalName = before.canonicalName
                    entry.canonicalSource = before.canonicalSource
                    entry.kind = before.kind
                    entry.transform = before.transform
                    entry.initRule = before.initRule
                    entry.figures = before.figures
                    if before.kind == "kept" {
                        summary.kept += 1
                    } else {
                        summary.newElements += tensor.elementCount ?? 0
                        summary.newBytes += tensor.byteCount ?? 0
                        if before.kind == "new" { summary.new += 1 } else { summary.derived += 1 }
                    }
                } else {
                    if let canonical = named[name] {
                        entry.canonicalName = canonical.canonicalName
                        entry.canonicalSource = "adapter"
                        entry.transform = canonical.transform
                    }
                    summary.kept += 1
                }
                entries.append(entry)
            }
            for node in graph.nodes {
                for attribute in node.attributes {
                    for subgraph in attribute.value.subgraphs { add(subgraph, label: subgraph.name ?? node.name ?? "") }
                }
            }
        }
        add(model.graph, label: nil)
        for companion in companions {
            file = companion.file
            created = Dictionary(companion.parameters.map { ($0.onnxName, $0) }, uniquingKeysWith: { first, _ in first })
            add(companion.model.graph, label: nil)
        }
        // Canonical names are keys (checkpoint import, training code): one entry each in the
        // main graph (a companion's copy of a weight shares its name on purpose). A name a pass
        // asked for that the model already uses (an unused initializer of that name, say) gets
        // a fresh variant, as its ONNX name did.
        var used = Set(entries.filter { $0.graph == nil && $0.file == nil && $0.canonicalSource != "pass" }.map(\.canonicalName))
        for index in entries.indices where entries[index].graph == nil && entries[index].file == nil && entries[index].canonicalSource == "pass" {
            let base = entries[index].canonicalName
            var candidate = base
            var counter = 1
            while used.contains(candidate) {
                candidate = "\(base)_\(counter)"
                counter += 1
            }
            entries[index].canonicalName = candidate
            used.insert(candidate)
        }
        summary.initializers = entries.count
        self.adapter = layout?.adapter
        self.summary = summary
        self.entries = entries
    }

    /// The JSON text, pretty-printed with sorted keys (deterministic).
    public func jsonData() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Where the map goes when the user does not say: beside the output, `<name>.weight-map.json`.
    public static func defaultPath(forOutput output: String) -> String {
        var base = output
        if base.hasSuffix(".onnx") { base.removeLast(5) }
        return base + ".weight-map.json"
    }
}
