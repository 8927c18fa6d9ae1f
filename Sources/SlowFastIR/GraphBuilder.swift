#if canImport(Glibc)
import Glibc
#endif

/// Emits new nodes and constants for a pass, with names that cannot collide with the model's,
/// and ops written for the model's opset (ReduceMean, Unsqueeze and Squeeze moved their axes
/// from attributes to inputs at opsets 18 and 13).
public struct GraphBuilder {
    public private(set) var nodes: [Node] = []
    public private(set) var initializers: [Tensor] = []
    public var names: NameAllocator
    /// Prefix of node and value names, e.g. `/slowfast/layers.8/attention`.
    public var scope: String
    /// The default-domain opset the model imports.
    public let opset: Int64
    /// The type new parameters are stored in: the model's float type. New nodes compute in
    /// float32, so parameters of another type are cast on use.
    public var parameterType: ElementType = .float
    /// Metadata put on every node this builder adds (a pass's marks, so a written model says
    /// what the pass did).
    public var marks: [StringPair] = []

    public init(names: NameAllocator, scope: String, opset: Int64) {
        self.names = names
        self.scope = scope
        self.opset = opset
    }

    /// Adds a node of `opType` with one output and returns the output's name.
    @discardableResult
    public mutating func op(_ opType: String, _ inputs: [String], _ label: String, attributes: [Attribute] = [],
                            domain: String = Domain.onnx) -> String {
        let output = names.fresh("\(scope)/\(label)_output")
        let node = Node(opType, domain: domain, name: names.fresh("\(scope)/\(label)"), inputs: inputs, outputs: [output],
                        attributes: attributes)
        node.metadataProps = marks
        nodes.append(node)
        return output
    }

    /// Adds an initializer under an exact name (a canonical parameter name), or a fresh
    /// variant of it if the name is taken; returns the name used.
    @discardableResult
    public mutating func parameter(_ tensor: Tensor, name: String) -> String {
        tensor.name = names.fresh(name)
        initializers.append(tensor)
        return tensor.name!
    }

    /// A new parameter of `parameterType` named `name` (or a fresh variant); returns the stored
    /// initializer's name and the float32 value to compute with.
    public mutating func parameter(floats: [Float], dims: [Int64], name: String) -> (stored: String, value: String) {
        let tensor = Tensor(name: "", elementType: parameterType, dims: dims, storage: .bytes(TensorBytes(floats: floats, as: parameterType)))
        let stored = parameter(tensor, name: name)
        return (stored, toFloat(stored, from: parameterType, "\(GraphBuilder.shortLabel(stored))/float"))
    }

    /// `value` (of element type `type`) as float32: itself, or a Cast.
    public mutating func toFloat(_ value: String, from type: ElementType, _ label: String) -> String {
        type == .float ? value : op("Cast", [value], label, attributes: [.int("to", Int64(ElementType.float.rawValue))])
    }

    /// A float32 `value` as `type`: itself, or a Cast.
    public mutating func fromFloat(_ value: String, to type: ElementType, _ label: String) -> String {
        type == .float ? value : op("Cast", [value], label, attributes: [.int("to", Int64(type.rawValue))])
    }

    /// An int64 constant (shapes, axes, indices) as a `Constant` node: constants are part of
    /// the computation, not parameters, so they stay out of the weight map.
    public mutating func int64s(_ values: [Int64], _ label: String, scalar: Bool = false) -> String {
        let tensor = Tensor(name: nil, elementType: .int64, dims: scalar ? [] : [Int64(values.count)],
                            storage: .bytes(TensorBytes(int64s: values)))
        return op("Constant", [], label, attributes: [.tensor("value", tensor)])
    }

    /// A float32 constant as a `Constant` node.
    public mutating func floats(_ values: [Float], dims: [Int64], _ label: String) -> String {
        op("Constant", [], label, attributes: [.tensor("value", Tensor(name: "", dims: dims, floats: values))])
    }

    public mutating func reduceMean(_ input: String, axes: [Int64], keepDims: Bool, _ label: String) -> String {
        if opset >= 18 {
            return op("ReduceMean", [input, int64s(axes, "\(label)_axes")], label, attributes: [.int("keepdims", keepDims ? 1 : 0)])
        }
        return op("ReduceMean", [input], label, attributes: [.ints("axes", axes), .int("keepdims", keepDims ? 1 : 0)])
    }

    public mutating func unsqueeze(_ input: String, axes: [Int64], _ label: String) -> String {
        if opset >= 13 { return op("Unsqueeze", [input, int64s(axes, "\(label)_axes")], label) }
        return op("Unsqueeze", [input], label, attributes: [.ints("axes", axes)])
    }

    public mutating func reshape(_ input: String, to shape: [Int64], _ label: String) -> String {
        op("Reshape", [input, int64s(shape, "\(label)_shape")], label)
    }

    public mutating func transpose(_ input: String, perm: [Int64], _ label: String) -> String {
        op("Transpose", [input], label, attributes: [.ints("perm", perm)])
    }

    /// `input[..., start:end]` along `axis`.
    public mutating func slice(_ input: String, axis: Int64, start: Int64, end: Int64, _ label: String) -> String {
        op("Slice", [input, int64s([start], "\(label)_starts"), int64s([end], "\(label)_ends"), int64s([axis], "\(label)_axes")], label)
    }

    /// A layer's norm on new values: a LayerNorm where `centered` (with its bias, if any), else an RMSNorm.
    public mutating func norm(_ input: String, weight: String, bias: String?, epsilon: Float, centered: Bool, _ label: String) -> String {
        centered ? layerNorm(input, weight: weight, bias: bias, epsilon: epsilon, label) : rmsNorm(input, weight: weight, epsilon: epsilon, label)
    }

    /// A LayerNorm with the standard-op decomposition: (x - mean(x)) / sqrt(var(x) + eps) *
    /// weight (+ bias).
    public mutating func layerNorm(_ input: String, weight: String, bias: String?, epsilon: Float, _ label: String) -> String {
        let mean = reduceMean(input, axes: [-1], keepDims: true, "\(label)/mean_x")
        let scaled = rmsNorm(op("Sub", [input, mean], "\(label)/center"), weight: weight, epsilon: epsilon, label)
        return bias.map { op("Add", [scaled, $0], "\(label)/bias") } ?? scaled
    }

    /// RMSNorm with the standard-op decomposition: x / sqrt(mean(x^2) + eps) * weight.
    public mutating func rmsNorm(_ input: String, weight: String, epsilon: Float, _ label: String) -> String {
        let squared = op("Mul", [input, input], "\(label)/square")
        let mean = reduceMean(squared, axes: [-1], keepDims: true, "\(label)/mean")
        let shifted = op("Add", [mean, floats([epsilon], dims: [], "\(label)/epsilon")], "\(label)/add_epsilon")
        let root = op("Sqrt", [shifted], "\(label)/sqrt")
        let normalised = op("Div", [input, root], "\(label)/divide")
        return op("Mul", [normalised, weight], "\(label)/scale")
    }

    /// Adds `key = value` to the metadata of the new node that produces `output`.
    public mutating func mark(_ output: String, _ key: String, _ value: String) {
        guard let node = nodes.last(where: { $0.outputs.contains(output) }) else { return }
        node.metadataProps.append(StringPair(key, value))
    }

    /// Adds a node built by the caller (e.g. a call of a model-local function).
    public mutating func appendNode(_ node: Node) {
        node.metadataProps += marks
        nodes.append(node)
    }

    /// Renames the output `from` of the last node added to `to` (so a replacement keeps the
    /// name its consumers read).
    public mutating func renameLastOutput(from: String, to: String) {
        guard let last = nodes.last, let slot = last.outputs.firstIndex(of: from) else { return }
        last.outputs[slot] = to
    }

    /// Hands over the nodes emitted so far.
    public mutating func takeNodes() -> [Node] {
        defer { nodes.removeAll() }
        return nodes
    }

    /// Hands over the initializers emitted so far.
    public mutating func takeInitializers() -> [Tensor] {
        defer { initializers.removeAll() }
        return initializers
    }

    /// Moves the new nodes and initializers into `graph`, keeping its topological order:
    /// each new node goes right before the first existing node that reads one of its outputs
    /// (new nodes read only values that exist by then), others at the end.
    public mutating func insert(into graph: Graph, before anchor: Node?) {
        if let anchor, let position = graph.nodes.firstIndex(where: { $0 === anchor }) {
            graph.nodes.insert(contentsOf: nodes, at: position)
        } else {
            graph.nodes.append(contentsOf: nodes)
        }
        graph.initializers.append(contentsOf: initializers)
        nodes.removeAll()
        initializers.removeAll()
    }
}

/// A small deterministic random source (SplitMix64) for parameter init, so the same seed
/// gives the same bytes on every platform.
public struct SeededRandom {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    public mutating func uniform() -> Double {
        (Double(next() >> 11) + 0.5) / Double(1 << 53)
    }

    /// Normal(0, std) samples, Box-Muller.
    public mutating func normal(count: Int, std: Double) -> [Float] {
        var values: [Float] = []
        values.reserveCapacity(count)
        while values.count < count {
            let radius = (-2 * log(uniform())).squareRoot() * std
            let angle = 2 * Double.pi * uniform()
            values.append(Float(radius * cos(angle)))
            if values.count < count { values.append(Float(radius * sin(angle))) }
        }
        return values
    }
}

extension GraphBuilder {
    /// The last two dotted or slashed parts of a parameter name, for node labels.
    package static func shortLabel(_ name: String) -> String {
        String(name.split(whereSeparator: { $0 == "/" || $0 == "." }).suffix(2).joined(separator: "_"))
    }
}
