import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Finds the channel axis and count of a value by walking up to the op that fixes them:
/// a convolution (axis 1, its weight's output channels), a batch norm (axis 1, its scale's
/// length), a linear layer (last axis, the weight's output features), through ops that keep
/// channels (activations, element-wise ops, pooling, dropout, casts). Declared shapes
/// (`value_info`, graph inputs) are used when the walk finds nothing.
struct ChannelFinder {
    /// Channel counts come from the file: one outside 1...maxChannels (negative, zero, or
    /// large enough to overflow the parameter arithmetic) is treated as unknown.
    static let maxChannels = Limits.width

    static func checked(_ value: Int64) -> Int? {
        (1 ... Int64(maxChannels)).contains(value) ? Int(value) : nil
    }

    let index: GraphIndex
    private let matcher: PatternMatcher
    private var declared: [String: TensorShape] = [:]
    private var declaredTypes: [String: Int32] = [:]

    init(graph: Graph) {
        matcher = PatternMatcher(graph: graph)
        index = matcher.index
        for info in graph.valueInfo + graph.inputs + graph.outputs {
            if let name = info.name, case .tensor(let type, let shape)? = info.type?.kind {
                if let shape { declared[name] = shape }
                if let type { declaredTypes[name] = type }
            }
        }
    }

    /// (axis, channels, rank) for `value`; axis is 1 or -1.
    func channels(of value: String, axisHint: Int?, depth: Int = 0) -> (Int, Int, Int)? {
        guard depth < 64 else { return nil }
        if let producer = index.producer(of: value) {
            switch producer.op {
            case "Conv", "ConvTranspose", "ConvInteger", "QLinearConv":
                let weightSlot = producer.op == "QLinearConv" ? 3 : 1
                if producer.inputs.count > weightSlot, let dims = dimsOf(producer.inputs[weightSlot]), dims.count >= 3 {
                    let group = producer.intAttribute("group") ?? 1
                    let product = dims[1].multipliedReportingOverflow(by: group)
                    let count = producer.op == "ConvTranspose" ? (product.overflow ? nil : ChannelFinder.checked(product.partialValue))
                                                               : ChannelFinder.checked(dims[0])
                    guard let count else { return nil }
                    return (1, count, dims.count)
                }
            case "BatchNormalization", "InstanceNormalization":
                if producer.inputs.count > 1, let dims = dimsOf(producer.inputs[1]), dims.count == 1 {
                    let rank = channels(of: producer.inputs[0], axisHint: 1, depth: depth + 1)?.2 ?? 4
                    guard let count = ChannelFinder.checked(dims[0]) else { return nil }
                    return (1, count, rank)
                }
            case "Concat":
                // Joined along the channel axis: the channels add up.
                let parts = producer.inputs.filter { !$0.isEmpty }.map { channels(of: $0, axisHint: axisHint, depth: depth + 1) }
                if let first = parts.first ?? nil, parts.allSatisfy({ $0 != nil && $0!.0 == first.0 }) {
                    let axis = producer.intAttribute("axis") ?? 1
                    if axis == Int64(first.0) || (first.0 == -1 && first.2 > 0 && axis == Int64(first.2 - 1)) {
                        // Each part is at most maxChannels, so the sum cannot overflow; it is checked again.
                        guard let sum = ChannelFinder.checked(Int64(parts.reduce(0) { $0 + $1!.1 })) else { return nil }
                        return (first.0, sum, first.2)
                    }
                    return first
                }
            case "MatMulNBits":
                // A quantized projection: N outputs (docs/DESIGN.md §8).
                if let n = producer.intAttribute("N"), let count = ChannelFinder.checked(n) { return (-1, count, 0) }
            case "MatMul", "Gemm", "MatMulInteger":
                if producer.inputs.count > 1, let dims = dimsOf(producer.inputs[1]), dims.count == 2 {
                    let transposed = producer.op == "Gemm" && (producer.intAttribute("transB") ?? 0) != 0
                    guard let count = ChannelFinder.checked(transposed ? dims[0] : dims[1]) else { return nil }
                    return (-1, count, 0)
                }
            case "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "Dropout", "Identity",
                 "Cast", "MaxPool", "AveragePool", "LRN", "Sum", "Max", "Min", "Erf", "Gelu", "Pad", "GlobalAveragePool", "GlobalMaxPool":
                for input in producer.inputs where !input.isEmpty && index.initializer(input) == nil {
                    if let found = channels(of: input, axisHint: axisHint, depth: depth + 1) { return found }
                }
            default:
                break
            }
        }
        if let shape = declared[value], !shape.dims.isEmpty {
            let axis = axisHint ?? (shape.dims.count == 4 ? 1 : -1)
            let position = axis < 0 ? shape.dims.count + axis : axis
            if shape.dims.indices.contains(position), case .value(let value) = shape.dims[position], let count = ChannelFinder.checked(value) {
                return (axis == 1 ? 1 : -1, count, shape.dims.count)
            }
        }
        return nil
    }

    /// The float element type of `value`: from a Cast's target, a declared type, or the float
    /// weights of the op computing it; float32 when nothing says.
    func elementType(of value: String, depth: Int = 0) -> ElementType {
        if let declared = declaredTypes[value].flatMap(ElementType.init(rawValue:)) { return declared }
        guard depth < 64, let producer = index.producer(of: value) else { return .float }
        if producer.op == "Cast", let target = producer.intAttribute("to").flatMap({ ElementType(rawValue: Int32($0)) }) {
            return target
        }
        for input in producer.inputs where !input.isEmpty {
            if let type = matcher.constantTensor(input)?.elementType, [.float, .float16, .bfloat16, .double].contains(type) {
                return type
            }
        }
        for input in producer.inputs where !input.isEmpty && matcher.constantTensor(input) == nil {
            return elementType(of: input, depth: depth + 1)
        }
        return .float
    }

    /// The float type of `value` from the evidence nearest upstream of it: a declared type, a
    /// Cast's target, or a float constant its producer reads (ONNX's arithmetic ops take one
    /// type); nil where nothing within a few nodes says. Nearest first, so a float16 model
    /// whose attention computes in float32 gives float32 for the attention output.
    func nearestElementType(of value: String) -> ElementType? {
        let floats: Set<ElementType> = [.float, .float16, .bfloat16, .double]
        var frontier = [value]
        var seen: Set<String> = [value]
        for _ in 0 ..< 12 {
            var next: [String] = []
            for name in frontier {
                if let declared = declaredTypes[name].flatMap(ElementType.init(rawValue:)), floats.contains(declared) { return declared }
                // A shape computation (Shape's output, or a Cast to an integer) says nothing.
                guard let producer = index.producer(of: name), producer.op != "Shape" else { continue }
                if producer.op == "Cast" {
                    guard let target = producer.intAttribute("to").flatMap({ ElementType(rawValue: Int32(truncatingIfNeeded: $0)) }),
                          floats.contains(target) else { continue }
                    return target
                }
                for input in producer.inputs where !input.isEmpty {
                    if let type = matcher.constantTensor(input)?.elementType {
                        if floats.contains(type) { return type }
                    } else if seen.insert(input).inserted {
                        next.append(input)
                    }
                }
            }
            frontier = next
        }
        return nil
    }

    /// Dims of a weight: an initializer, a Constant, or ConstantOfShape of a constant shape.
    private func dimsOf(_ name: String) -> [Int64]? {
        if let tensor = matcher.constantTensor(name) { return tensor.dims }
        // A QDQ weight: DequantizeLinear of a constant keeps its dims.
        if let producer = index.producer(of: name), producer.op == "DequantizeLinear",
           let tensor = producer.inputs.first.flatMap(matcher.constantTensor) {
            return tensor.dims
        }
        if let producer = index.producer(of: name), producer.op == "ConstantOfShape",
           let shape = matcher.constantTensor(producer.inputs[0]), let values = try? shape.int64Values() {
            return values
        }
        return nil
    }
}
