/// One dimension as shape inference knows it: a product `coefficient · s1 · s2 · …` of a
/// constant and symbols. A symbol is a named dim of a graph input (`frames`) or a fresh
/// `?n` standing for a dim nothing says anything about. Products and exact quotients stay
/// monomials, so flattening `[frames, 64, 32]` to `[frames·64, 32]` and back is followed; a
/// sum of different symbols is not a monomial and becomes a fresh unknown.
public struct SymbolicDim: Hashable, CustomStringConvertible, Sendable {
    public var coefficient: Int64
    /// Sorted, with repeats (a square has its symbol twice).
    public var symbols: [String]

    public init(_ value: Int64) {
        coefficient = value
        symbols = []
    }

    public init(symbol: String) {
        coefficient = 1
        symbols = [symbol]
    }

    init(coefficient: Int64, symbols: [String]) {
        self.coefficient = coefficient
        self.symbols = coefficient == 0 ? [] : symbols.sorted()
    }

    /// The value when it is a constant.
    public var constant: Int64? { symbols.isEmpty ? coefficient : nil }
    /// True when nothing at all is known about it (one fresh unknown).
    public var isUnknown: Bool { coefficient == 1 && symbols.count == 1 && symbols[0].hasPrefix("?") }
    /// True when it involves an unknown.
    public var hasUnknown: Bool { symbols.contains { $0.hasPrefix("?") } }

    /// Every operation is checked: dims and constants come from the file. A product past
    /// Int64 is an unknown named after its factors (equal only to the same product).
    public static func * (a: SymbolicDim, b: SymbolicDim) -> SymbolicDim {
        let (product, overflow) = a.coefficient.multipliedReportingOverflow(by: b.coefficient)
        if overflow { return SymbolicDim(symbol: "?(\(a))*(\(b))") }
        return SymbolicDim(coefficient: product, symbols: a.symbols + b.symbols)
    }

    /// `a / b` when it divides exactly as monomials.
    public func divided(by other: SymbolicDim) -> SymbolicDim? {
        guard other.coefficient != 0, !(coefficient == .min && other.coefficient == -1),
              coefficient % other.coefficient == 0 else { return nil }
        var remaining = symbols
        for symbol in other.symbols {
            guard let index = remaining.firstIndex(of: symbol) else { return nil }
            remaining.remove(at: index)
        }
        return SymbolicDim(coefficient: coefficient / other.coefficient, symbols: remaining)
    }

    /// `a + b` when both are multiples of the same symbols.
    public func plus(_ other: SymbolicDim) -> SymbolicDim? {
        if coefficient == 0 { return other }
        if other.coefficient == 0 { return self }
        guard symbols == other.symbols else { return nil }
        let (sum, overflow) = coefficient.addingReportingOverflow(other.coefficient)
        guard !overflow else { return nil }
        return SymbolicDim(coefficient: sum, symbols: symbols)
    }

    public var description: String {
        if symbols.isEmpty { return "\(coefficient)" }
        let product = symbols.joined(separator: "*")
        return coefficient == 1 ? product : "\(coefficient)*\(product)"
    }
}

/// What shape inference knows about one value: its element type, its shape, and for small
/// integer tensors (shapes being computed: `Shape`, `Gather`, `Concat`, …) its values.
public struct InferredValue: CustomStringConvertible {
    public var elementType: ElementType?
    public var shape: [SymbolicDim]?
    /// The elements, flattened, when known (each may itself be symbolic).
    public var values: [SymbolicDim]?

    public init(elementType: ElementType?, shape: [SymbolicDim]?, values: [SymbolicDim]? = nil) {
        self.elementType = elementType
        self.shape = shape
        self.values = values
    }

    public var description: String {
        shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "unknown rank"
    }
}

/// Shape inference over the main graph of a model, in node order, for the ops vision towers
/// and projectors are made of (convolutions, matrix products, normalisations, activations,
/// and the shape arithmetic exporters write around reshapes). It proves, rather than trusts:
/// a dim is known only when it follows from the graph inputs' recorded dims, the
/// initializers and the ops. An op it does not know makes its outputs unknown, and the reason
/// is kept (`reason(for:)`), so a caller can say which node stopped the proof.
///
/// A graph input's named dim (`frames`) becomes a symbol of that name; an unnamed or missing
/// one becomes a fresh unknown `?n`.
public struct ShapeInference {
    public private(set) var values: [String: InferredValue] = [:]
    private var reasons: [String: String] = [:]
    private var fresh = 0
    private let opset: Int64
    private var producers: [String: Node] = [:]

    public init(model: Model) {
        opset = model.opsetVersion(Domain.onnx) ?? 1
        let graph = model.graph
        for tensor in graph.initializers {
            guard let name = tensor.name else { continue }
            var value = InferredValue(elementType: tensor.elementType, shape: tensor.dims.map { SymbolicDim($0) })
            if let count = tensor.elementCount, count <= 64, let type = tensor.elementType, type.isInteger,
               let numbers = try? tensor.int64Values() {
                value.values = numbers.map { SymbolicDim($0) }
            }
            values[name] = value
        }
        for input in graph.inputs {
            guard let name = input.name else { continue }
            // An input with an initializer of the same name may be fed anything of its type.
            if case .tensor(let type, let shape)? = input.type?.kind {
                values[name] = InferredValue(elementType: type.flatMap(ElementType.init(rawValue:)),
                                             shape: shape.map { $0.dims.map { dim in
                                                 switch dim {
                                                 case .value(let n): return SymbolicDim(n)
                                                 case .param(let p): return SymbolicDim(symbol: p)
                                                 case .unknown: return nextUnknown()
                                                 }
                                             } })
            } else {
                values[name] = InferredValue(elementType: nil, shape: nil)
                reasons[name] = "graph input '\(name)' has no tensor type"
            }
            if values[name]?.shape == nil, reasons[name] == nil {
                reasons[name] = "graph input '\(name)' has no recorded shape"
            }
        }
        for node in graph.nodes {
            for output in node.outputs where !output.isEmpty { producers[output] = node }
        }
    }

    /// Runs the nodes in order until `value` is known (all of them when it is not produced).
    public mutating func infer(_ model: Model, upTo value: String) -> InferredValue? {
        if let known = values[value] { return known }
        for node in model.graph.nodes {
            if node.outputs.allSatisfy({ values[$0] != nil || $0.isEmpty }) { continue }
            run(node)
            if node.outputs.contains(value) { break }
        }
        return values[value]
    }

    /// Why `value`'s shape (or a dim of it) is not known: the first node on its way that
    /// inference could not follow.
    public func reason(for value: String) -> String? {
        reasons[value]
    }

    /// The node that produces `value`, if a node does.
    public func producer(of value: String) -> Node? { producers[value] }

    private mutating func nextUnknown() -> SymbolicDim {
        fresh += 1
        return SymbolicDim(symbol: "?\(fresh)")
    }

    private func describe(_ node: Node) -> String { "node '\(node.name ?? "")' (\(node.op))" }

    // MARK: - Ops

    private mutating func run(_ node: Node) {
        let inputs: [InferredValue?] = node.inputs.map { $0.isEmpty ? nil : values[$0] }
        // A missing input (not empty) with a reason: pass the reason on.
        for (index, name) in node.inputs.enumerated() where !name.isEmpty && (inputs[index]?.shape == nil) {
            if inputs[index] == nil || !Self.tolerantOfUnknownInputs.contains(node.op) {
                fail(node, because: reasons[name] ?? "'\(name)' has no known shape")
                return
            }
        }
        do {
            let outputs = try infer(node, inputs)
            for (index, name) in node.outputs.enumerated() where !name.isEmpty {
                if index < outputs.count, let output = outputs[index] {
                    values[name] = output
                    if output.shape == nil { reasons[name] = reasons[name] ?? "\(describe(node)): output rank not known" }
                } else {
                    values[name] = InferredValue(elementType: nil, shape: nil)
                    reasons[name] = "\(describe(node)): output \(index) not inferred"
                }
            }
        } catch let error as InferenceFailure {
            fail(node, because: "\(describe(node)): \(error.message)")
        } catch {
            fail(node, because: "\(describe(node)): \(error)")
        }
    }

    private static let tolerantOfUnknownInputs: Set<String> = []

    private mutating func fail(_ node: Node, because reason: String) {
        for name in node.outputs where !name.isEmpty {
            values[name] = InferredValue(elementType: nil, shape: nil)
            reasons[name] = reason
        }
    }

    struct InferenceFailure: Error { let message: String }
    private func failure(_ message: String) -> InferenceFailure { InferenceFailure(message: message) }

    /// The value of a checked operation; an overflow fails inference instead of trapping.
    private func checked(_ result: (partialValue: Int64, overflow: Bool)) throws -> Int64 {
        guard !result.overflow else { throw failure("arithmetic overflow on numbers from the file") }
        return result.partialValue
    }

    private static let unary: Set<String> = [
        "Identity", "Relu", "Gelu", "Erf", "Sqrt", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Abs", "Softmax",
        "LogSoftmax", "Reciprocal", "Floor", "Ceil", "Round", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu",
        "Clip", "Sin", "Cos", "Mish", "Softplus", "Softsign", "QuickGelu", "FastGelu", "LayerNormalization",
        "BatchNormalization", "InstanceNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
        "Dropout", "Sign", "Celu", "ThresholdedRelu", "Shrink", "LpNormalization", "MeanVarianceNormalization",
        "BiasGelu", "Trilu",
    ]
    private static let broadcasting: Set<String> = [
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "PRelu", "Sum", "Mean", "BitShift",
    ]
    private static let comparisons: Set<String> = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"]

    /// A node's inputs as inference reads them: values, shapes, constants and axes, each
    /// missing or out-of-range one an `InferenceFailure` naming it.
    private struct Operands {
        let node: Node
        let inputs: [InferredValue?]

        func input(_ index: Int) throws -> InferredValue {
            guard index < inputs.count, let value = inputs[index], value.shape != nil else { throw InferenceFailure(message: "input \(index) missing") }
            return value
        }
        func shape(_ index: Int) throws -> [SymbolicDim] { try input(index).shape! }
        func constants(_ index: Int, _ what: String) throws -> [Int64] {
            guard index < inputs.count, let values = inputs[index]?.values else {
                throw InferenceFailure(message: "\(what) (input \(index)) is not a known constant")
            }
            return try values.map {
                guard let c = $0.constant else { throw InferenceFailure(message: "\(what) (input \(index)) holds the symbolic value \($0)") }
                return c
            }
        }
        func optionalConstants(_ index: Int, _ what: String) throws -> [Int64]? {
            index < node.inputs.count && !node.inputs[index].isEmpty ? try constants(index, what) : nil
        }
        func axis(_ value: Int64, rank: Int) throws -> Int {
            let a = Int(value < 0 ? value + Int64(rank) : value)
            guard a >= 0, a < max(rank, 1) else { throw InferenceFailure(message: "axis \(value) out of range for rank \(rank)") }
            return a
        }
    }

    private mutating func infer(_ node: Node, _ inputs: [InferredValue?]) throws -> [InferredValue?] {
        let o = Operands(node: node, inputs: inputs)
        let op = node.op
        guard Domain.isONNX(node.domain) || node.domainName == Domain.microsoft else {
            throw failure("op of domain '\(node.domainName)' not known to shape inference")
        }
        if Self.unary.contains(op) {
            let x = try o.input(0)
            return [InferredValue(elementType: x.elementType, shape: x.shape)]
        }
        if Self.broadcasting.contains(op) || Self.comparisons.contains(op) || op == "Where" {
            let all = try (0..<node.inputs.count).map { try o.input($0) }
            var result = all[0].shape!
            for other in all.dropFirst() { result = try broadcast(result, other.shape!) }
            let type: ElementType? = Self.comparisons.contains(op) ? .bool : (op == "Where" ? all[1].elementType : all[0].elementType)
            var out = InferredValue(elementType: type, shape: result)
            out.values = elementwiseValues(op, all, count: result)
            return [out]
        }
        switch op {
        case "Cast", "CastLike", "Not", "IsNaN", "IsInf", "Constant":
            return try inferConversion(o)
        case "Shape", "Size", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Expand", "ConstantOfShape", "Range":
            return try inferShaping(o)
        case "Concat", "Gather", "Slice", "Split", "Tile", "Pad":
            return try inferIndexing(o)
        case "Conv", "AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "MatMul", "Gemm",
             "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp":
            return try inferCompute(o)
        default:
            throw failure("op not known to shape inference")
        }
    }

    /// Type changes and constants: Cast, CastLike, Not, IsNaN, IsInf, Constant.
    private mutating func inferConversion(_ o: Operands) throws -> [InferredValue?] {
        switch o.node.op {
        case "Cast":
            let x = try o.input(0)
            let to = o.node.intAttribute("to").flatMap { ElementType(rawValue: Int32($0)) }
            var out = InferredValue(elementType: to, shape: x.shape)
            if let to, to.isInteger { out.values = x.values }
            return [out]
        case "CastLike":
            let x = try o.input(0)
            return [InferredValue(elementType: try o.input(1).elementType, shape: x.shape, values: x.values)]
        case "Not", "IsNaN", "IsInf":
            return [InferredValue(elementType: .bool, shape: try o.shape(0))]
        case "Constant":
            return [try constantValue(o.node)]
        default:
            throw failure("op not known to shape inference")
        }
    }

    /// Ops that compute or change a shape: Shape, Size, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Expand, ConstantOfShape, Range.
    private mutating func inferShaping(_ o: Operands) throws -> [InferredValue?] {
        switch o.node.op {
        case "Shape":
            let dims = try o.shape(0)
            let rank = dims.count
            var start = Int(o.node.intAttribute("start") ?? 0), end = Int(o.node.intAttribute("end") ?? Int64(rank))
            if start < 0 { start += rank }
            if end < 0 { end += rank }
            start = min(max(start, 0), rank)
            end = min(max(end, start), rank)
            let picked = Array(dims[start..<end])
            return [InferredValue(elementType: .int64, shape: [SymbolicDim(Int64(picked.count))], values: picked)]
        case "Size":
            let dims = try o.shape(0)
            return [InferredValue(elementType: .int64, shape: [], values: [dims.reduce(SymbolicDim(1), *)])]
        case "Reshape":
            let dims = try o.shape(0)
            let target = try o.input(1)
            guard let targetValues = target.values else {
                guard let length = target.shape?.first?.constant else { throw failure("target shape of unknown length") }
                return [InferredValue(elementType: try o.input(0).elementType, shape: (0..<length).map { _ in nextUnknown() })]
            }
            let allowZero = o.node.intAttribute("allowzero") ?? 0
            var out: [SymbolicDim?] = []
            var inferIndex: Int?
            for (i, t) in targetValues.enumerated() {
                if t.constant == -1 { inferIndex = i; out.append(nil) }
                else if t.constant == 0 && allowZero == 0 {
                    guard i < dims.count else { throw failure("target copies dim \(i) of a rank-\(dims.count) input") }
                    out.append(dims[i])
                } else { out.append(t) }
            }
            if let inferIndex {
                let total = dims.reduce(SymbolicDim(1), *)
                let known = out.compactMap { $0 }.reduce(SymbolicDim(1), *)
                out[inferIndex] = (total.hasUnknown || known.hasUnknown) ? nil : total.divided(by: known)
                if out[inferIndex] == nil { out[inferIndex] = nextUnknown() }
            }
            let x = try o.input(0)
            return [InferredValue(elementType: x.elementType, shape: out.map { $0! }, values: x.values)]
        case "Flatten":
            let dims = try o.shape(0)
            let a = Int(o.node.intAttribute("axis") ?? 1)
            let split = a < 0 ? a + dims.count : a
            guard split >= 0, split <= dims.count else { throw failure("axis \(a) out of range") }
            return [InferredValue(elementType: try o.input(0).elementType,
                                  shape: [dims[..<split].reduce(SymbolicDim(1), *), dims[split...].reduce(SymbolicDim(1), *)])]
        case "Transpose":
            let dims = try o.shape(0)
            let perm = o.node.intsAttribute("perm") ?? (0..<Int64(dims.count)).reversed().map { $0 }
            guard perm.count == dims.count else { throw failure("perm \(perm) for rank \(dims.count)") }
            return [InferredValue(elementType: try o.input(0).elementType, shape: perm.map { dims[Int($0)] })]
        case "Squeeze", "Unsqueeze":
            let x = try o.input(0)
            let dims = x.shape!
            let axes = opset >= 13 ? try o.optionalConstants(1, "axes") : o.node.intsAttribute("axes")
            var out = dims
            if o.node.op == "Squeeze" {
                let resolved: [Int]
                if let axes { resolved = try axes.map { try o.axis($0, rank: dims.count) } }
                else {
                    guard dims.allSatisfy({ $0.constant != nil }) else { throw failure("squeeze of all 1-dims with symbolic dims") }
                    resolved = dims.indices.filter { dims[$0].constant == 1 }
                }
                out = dims.enumerated().filter { !resolved.contains($0.offset) }.map(\.element)
            } else {
                guard let axes else { throw failure("no axes") }
                let rank = dims.count + axes.count
                let resolved = try axes.map { try o.axis($0, rank: rank) }.sorted()
                for a in resolved { out.insert(SymbolicDim(1), at: a) }
            }
            return [InferredValue(elementType: x.elementType, shape: out, values: x.values)]
        case "Expand":
            let x = try o.input(0)
            guard let target = try o.input(1).values else { throw failure("target shape not known") }
            return [InferredValue(elementType: x.elementType, shape: try broadcast(x.shape!, target, expand: true))]
        case "ConstantOfShape":
            guard let target = try o.input(0).values else { throw failure("shape not known") }
            var type = ElementType.float
            var fill: SymbolicDim?
            if case .tensor(let t)? = o.node.attribute("value") {
                type = t.elementType ?? .float
                if type.isInteger, let v = try? t.int64Values().first { fill = SymbolicDim(v) }
            }
            var out = InferredValue(elementType: type, shape: target)
            if let fill, target.count == 1, let n = target[0].constant, n <= 64 { out.values = Array(repeating: fill, count: Int(n)) }
            return [out]
        case "Range":
            let x = try o.input(0)
            let start = try o.constants(0, "start"), limit = try o.constants(1, "limit"), delta = try o.constants(2, "delta")
            guard let s = start.first, let l = limit.first, let d = delta.first, d != 0 else { throw failure("bad range") }
            let span = try checked(checked(checked(l.subtractingReportingOverflow(s)).addingReportingOverflow(d))
                .subtractingReportingOverflow(d > 0 ? 1 : -1))
            let count = max(Int64(0), try checked(span.dividedReportingOverflow(by: d)))
            let values = count <= 64 ? try (0..<count).map { SymbolicDim(try checked(s.addingReportingOverflow(try checked($0.multipliedReportingOverflow(by: d))))) } : nil
            return [InferredValue(elementType: x.elementType, shape: [SymbolicDim(count)], values: values)]
        default:
            throw failure("op not known to shape inference")
        }
    }

    /// Ops that pick, join or pad along axes: Concat, Gather, Slice, Split, Tile, Pad.
    private mutating func inferIndexing(_ o: Operands) throws -> [InferredValue?] {
        switch o.node.op {
        case "Concat":
            let all = try (0..<o.node.inputs.count).map { try o.input($0) }
            let rank = all[0].shape!.count
            let a = try o.axis(o.node.intAttribute("axis") ?? 0, rank: rank)
            var out = all[0].shape!
            for other in all.dropFirst() {
                let dims = other.shape!
                guard dims.count == rank else { throw failure("inputs of different ranks") }
                for i in 0..<rank where i != a {
                    if out[i].isUnknown { out[i] = dims[i] }
                }
                out[a] = out[a].plus(dims[a]) ?? nextUnknown()
            }
            var result = InferredValue(elementType: all[0].elementType, shape: out)
            if rank == 1, all.allSatisfy({ $0.values != nil }) { result.values = all.flatMap { $0.values! } }
            return [result]
        case "Gather":
            let data = try o.input(0), indices = try o.input(1)
            let dims = data.shape!
            let a = try o.axis(o.node.intAttribute("axis") ?? 0, rank: dims.count)
            let out = Array(dims[..<a]) + indices.shape! + Array(dims[(a + 1)...])
            var result = InferredValue(elementType: data.elementType, shape: out)
            if dims.count == 1, let values = data.values, let picks = indices.values {
                result.values = try picks.map {
                    guard let c = $0.constant else { throw failure("symbolic index") }
                    let i = Int(c < 0 ? c + Int64(values.count) : c)
                    guard i >= 0, i < values.count else { throw failure("index \(c) out of range") }
                    return values[i]
                }
            }
            return [result]
        case "Slice":
            let x = try o.input(0)
            let dims = x.shape!
            let starts: [Int64], ends: [Int64], axes: [Int64], steps: [Int64]
            if opset >= 10 {
                starts = try o.constants(1, "starts")
                ends = try o.constants(2, "ends")
                axes = try o.optionalConstants(3, "axes") ?? (0..<Int64(starts.count)).map { $0 }
                steps = try o.optionalConstants(4, "steps") ?? Array(repeating: 1, count: starts.count)
            } else {
                starts = o.node.intsAttribute("starts") ?? []
                ends = o.node.intsAttribute("ends") ?? []
                axes = o.node.intsAttribute("axes") ?? (0..<Int64(starts.count)).map { $0 }
                steps = Array(repeating: 1, count: starts.count)
            }
            guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
                throw failure("starts, ends, axes and steps of different lengths")
            }
            var out = dims
            var picked: [Int]? = dims.count == 1 && x.values != nil ? Array(0..<(x.values!.count)) : nil
            for (k, rawAxis) in axes.enumerated() {
                let a = try o.axis(rawAxis, rank: dims.count)
                guard let size = dims[a].constant else {
                    // [start:] of a symbolic dim with a step of 1 from 0 keeps it; else unknown.
                    out[a] = (starts[k] == 0 && ends[k] >= Int64(Int32.max) && steps[k] == 1) ? dims[a] : nextUnknown()
                    picked = nil
                    continue
                }
                guard size >= 0, steps[k] != 0, steps[k] != .min else { throw failure("slice of a dim of \(size) by \(steps[k])") }
                let bounds = sliceBounds(size: size, start: starts[k], end: ends[k], step: steps[k])
                // Counted, not listed: a dim from the file may be 2^62.
                let span = steps[k] > 0 ? bounds.end - bounds.start : bounds.start - bounds.end
                let magnitude = steps[k] > 0 ? steps[k] : -steps[k]
                out[a] = SymbolicDim(span <= 0 ? 0 : (span - 1) / magnitude + 1)
                if picked != nil {
                    picked = stride(from: bounds.start, to: bounds.end, by: Int(steps[k])).map { picked![Int($0)] }
                }
            }
            return [InferredValue(elementType: x.elementType, shape: out, values: picked.map { $0.map { x.values![$0] } })]
        case "Split":
            let x = try o.input(0)
            let dims = x.shape!
            let a = try o.axis(o.node.intAttribute("axis") ?? 0, rank: dims.count)
            let sizes: [Int64]
            if let given = opset >= 13 ? try o.optionalConstants(1, "split") : o.node.intsAttribute("split") {
                sizes = given
            } else {
                guard let total = dims[a].constant else { throw failure("equal split of a symbolic dim") }
                let parts = Int64(o.node.outputs.count)
                guard total >= 0, total < Int64.max / 2 else { throw failure("split of a dim of \(total)") }
                let each = (total + parts - 1) / parts
                sizes = (0..<parts).map { min(each, max(0, total - $0 * each)) }
            }
            return sizes.map { size in
                var out = dims
                out[a] = SymbolicDim(size)
                return InferredValue(elementType: x.elementType, shape: out)
            }
        case "Tile":
            let x = try o.input(0)
            let repeats = try o.constants(1, "repeats")
            guard repeats.count == x.shape!.count else { throw failure("repeats of the wrong length") }
            return [InferredValue(elementType: x.elementType, shape: zip(x.shape!, repeats).map { $0 * SymbolicDim($1) })]
        case "Pad":
            let x = try o.input(0)
            let dims = x.shape!
            let pads = opset >= 11 ? try o.constants(1, "pads") : (o.node.intsAttribute("pads") ?? [])
            let axes = try (opset >= 18 ? o.optionalConstants(3, "axes") : nil) ?? (0..<Int64(dims.count)).map { $0 }
            guard pads.count == 2 * axes.count else { throw failure("pads of the wrong length") }
            var out = dims
            for (k, raw) in axes.enumerated() {
                let a = try o.axis(raw, rank: dims.count)
                out[a] = out[a].plus(SymbolicDim(try checked(pads[k].addingReportingOverflow(pads[k + axes.count])))) ?? nextUnknown()
            }
            return [InferredValue(elementType: x.elementType, shape: out)]
        default:
            throw failure("op not known to shape inference")
        }
    }

    /// Convolutions, pools, matrix products and reductions.
    private mutating func inferCompute(_ o: Operands) throws -> [InferredValue?] {
        switch o.node.op {
        case "Conv":
            let x = try o.shape(0), w = try o.shape(1)
            guard x.count >= 3, w.count == x.count else { throw failure("input rank \(x.count), weight rank \(w.count)") }
            let spatial = x.count - 2
            let kernel = o.node.intsAttribute("kernel_shape") ?? w[2...].map { $0.constant ?? -1 }
            return [InferredValue(elementType: try o.input(0).elementType,
                                  shape: [x[0], w[0]] + (try window(o.node, x: Array(x[2...]), kernel: kernel, spatial: spatial)))]
        case "AveragePool", "MaxPool", "LpPool":
            let x = try o.shape(0)
            guard let kernel = o.node.intsAttribute("kernel_shape") else { throw failure("no kernel_shape") }
            return [InferredValue(elementType: try o.input(0).elementType,
                                  shape: [x[0], x[1]] + (try window(o.node, x: Array(x[2...]), kernel: kernel, spatial: x.count - 2)))]
        case "GlobalAveragePool", "GlobalMaxPool":
            let x = try o.shape(0)
            return [InferredValue(elementType: try o.input(0).elementType, shape: [x[0], x[1]] + x[2...].map { _ in SymbolicDim(1) })]
        case "MatMul":
            var a = try o.shape(0), b = try o.shape(1)
            let aVector = a.count == 1, bVector = b.count == 1
            if aVector { a.insert(SymbolicDim(1), at: 0) }
            if bVector { b.append(SymbolicDim(1)) }
            guard a.count >= 2, b.count >= 2 else { throw failure("rank-0 operand") }
            try requireEqual(a[a.count - 1], b[b.count - 2], "contracted dims")
            var out = try broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) + [a[a.count - 2], b[b.count - 1]]
            if aVector { out.remove(at: out.count - 2) }
            if bVector { out.removeLast() }
            return [InferredValue(elementType: try o.input(0).elementType, shape: out)]
        case "Gemm":
            let a = try o.shape(0), b = try o.shape(1)
            guard a.count == 2, b.count == 2 else { throw failure("operands of rank \(a.count) and \(b.count)") }
            let m = o.node.intAttribute("transA") == 1 ? a[1] : a[0]
            let n = o.node.intAttribute("transB") == 1 ? b[0] : b[1]
            return [InferredValue(elementType: try o.input(0).elementType, shape: [m, n])]
        case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp":
            let x = try o.input(0)
            let dims = x.shape!
            let axesAsInput = o.node.op == "ReduceSum" ? opset >= 13 : opset >= 18
            let axes = axesAsInput ? try o.optionalConstants(1, "axes") : o.node.intsAttribute("axes")
            let keep = (o.node.intAttribute("keepdims") ?? 1) == 1
            let resolved = try (axes ?? (o.node.intAttribute("noop_with_empty_axes") == 1 ? [] : (0..<Int64(dims.count)).map { $0 }))
                .map { try o.axis($0, rank: dims.count) }
            var out: [SymbolicDim] = []
            for (i, d) in dims.enumerated() {
                if resolved.contains(i) { if keep { out.append(SymbolicDim(1)) } } else { out.append(d) }
            }
            return [InferredValue(elementType: x.elementType, shape: out)]
        default:
            throw failure("op not known to shape inference")
        }
    }

    private func requireEqual(_ a: SymbolicDim, _ b: SymbolicDim, _ what: String) throws {
        if let x = a.constant, let y = b.constant, x != y { throw failure("\(what) differ: \(x) and \(y)") }
    }

    /// Multidirectional broadcasting; `expand` allows a target dim of 1 to keep the input's.
    private mutating func broadcast(_ a: [SymbolicDim], _ b: [SymbolicDim], expand: Bool = false) throws -> [SymbolicDim] {
        let rank = max(a.count, b.count)
        let pa = Array(repeating: SymbolicDim(1), count: rank - a.count) + a
        let pb = Array(repeating: SymbolicDim(1), count: rank - b.count) + b
        return try zip(pa, pb).map { x, y in
            if x == y { return x }
            if x.constant == 1 { return y }
            if y.constant == 1 { return x }
            if let p = x.constant, let q = y.constant { throw failure("cannot broadcast \(p) with \(q)") }
            // One side symbolic: a known constant > 1 wins (the other must equal it at run time).
            if x.constant != nil { return x }
            if y.constant != nil { return y }
            return nextUnknown()
        }
    }

    private func elementwiseValues(_ op: String, _ inputs: [InferredValue], count shape: [SymbolicDim]) -> [SymbolicDim]? {
        guard shape.count <= 1, inputs.allSatisfy({ $0.values != nil }) else { return nil }
        let n = shape.first?.constant.map(Int.init) ?? 1
        func at(_ v: [SymbolicDim], _ i: Int) -> SymbolicDim { v.count == 1 ? v[0] : v[i] }
        let vs = inputs.map { $0.values! }
        guard vs.allSatisfy({ $0.count == 1 || $0.count == n }) else { return nil }
        var out: [SymbolicDim] = []
        for i in 0..<n {
            let x = at(vs[0], i), y = vs.count > 1 ? at(vs[1], i) : x
            switch op {
            case "Mul": out.append(x * y)
            case "Add": guard let s = x.plus(y) else { return nil }; out.append(s)
            case "Sub": guard let s = x.plus(SymbolicDim(-1) * y) else { return nil }; out.append(s)
            case "Div":
                if let p = x.constant, let q = y.constant, q != 0 {
                    let (quotient, overflow) = p.dividedReportingOverflow(by: q)
                    guard !overflow else { return nil }
                    out.append(SymbolicDim(quotient))
                }
                else if let s = x.divided(by: y) { out.append(s) } else { return nil }
            case "Equal":
                if x == y { out.append(SymbolicDim(1)) }
                else if let p = x.constant, let q = y.constant { out.append(SymbolicDim(p == q ? 1 : 0)) }
                // A dim (a positive multiple of symbols) never equals 0 or a negative number,
                // which is what exporters compare shapes with (`-1` placeholders).
                else if let p = x.constant ?? y.constant, p <= 0, (x.constant == nil ? x : y).coefficient > 0 { out.append(SymbolicDim(0)) }
                else { return nil }
            case "Where":
                guard let c = x.constant else { return nil }
                out.append(c != 0 ? at(vs[1], i) : at(vs[2], i))
            case "Max", "Min":
                guard let p = x.constant, let q = y.constant else { return nil }
                out.append(SymbolicDim(op == "Max" ? max(p, q) : min(p, q)))
            default: return nil
            }
        }
        return out
    }

    private func constantValue(_ node: Node) throws -> InferredValue {
        if case .tensor(let t)? = node.attribute("value") {
            var out = InferredValue(elementType: t.elementType, shape: t.dims.map { SymbolicDim($0) })
            if let type = t.elementType, type.isInteger, let count = t.elementCount, count <= 64, let v = try? t.int64Values() {
                out.values = v.map { SymbolicDim($0) }
            }
            return out
        }
        if let v = node.intAttribute("value_int") { return InferredValue(elementType: .int64, shape: [], values: [SymbolicDim(v)]) }
        if let v = node.intsAttribute("value_ints") {
            return InferredValue(elementType: .int64, shape: [SymbolicDim(Int64(v.count))], values: v.map { SymbolicDim($0) })
        }
        if node.floatAttribute("value_float") != nil { return InferredValue(elementType: .float, shape: []) }
        if case .floats(let v)? = node.attribute("value_floats") { return InferredValue(elementType: .float, shape: [SymbolicDim(Int64(v.count))]) }
        throw failure("a Constant form not known to shape inference")
    }

    /// Output spatial dims of a convolution or pooling window.
    private mutating func window(_ node: Node, x: [SymbolicDim], kernel: [Int64], spatial: Int) throws -> [SymbolicDim] {
        guard kernel.count == spatial, kernel.allSatisfy({ $0 > 0 }) else { throw failure("kernel \(kernel) for \(spatial) spatial dims") }
        let strides = node.intsAttribute("strides") ?? Array(repeating: 1, count: spatial)
        let dilations = node.intsAttribute("dilations") ?? Array(repeating: 1, count: spatial)
        let pads = node.intsAttribute("pads") ?? Array(repeating: 0, count: 2 * spatial)
        guard strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial else {
            throw failure("strides \(strides), dilations \(dilations) or pads \(pads) do not fit \(spatial) spatial dims")
        }
        let autoPad = node.stringAttribute("auto_pad") ?? "NOTSET"
        let ceil = (node.intAttribute("ceil_mode") ?? 0) == 1
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw failure("strides \(strides) or dilations \(dilations) not positive")
        }
        return try (0..<spatial).map { i in
            guard let size = x[i].constant else { return nextUnknown() }
            let stride = strides[i]
            if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                return SymbolicDim(try checked(checked(size.addingReportingOverflow(stride - 1)).dividedReportingOverflow(by: stride)))
            }
            let effective = try checked(checked(dilations[i].multipliedReportingOverflow(by: kernel[i] - 1)).addingReportingOverflow(1))
            let padding = autoPad == "VALID" ? 0 : try checked(pads[i].addingReportingOverflow(pads[i + spatial]))
            let padded = try checked(checked(size.addingReportingOverflow(padding)).subtractingReportingOverflow(effective))
            let steps = ceil ? try checked(checked(padded.addingReportingOverflow(stride - 1)).dividedReportingOverflow(by: stride))
                             : padded / stride
            return SymbolicDim(try checked(steps.addingReportingOverflow(1)))
        }
    }

    /// Start and end of a slice, clamped into the dim (size >= 0, step neither 0 nor Int64.min).
    private func sliceBounds(size: Int64, start: Int64, end: Int64, step: Int64) -> (start: Int64, end: Int64) {
        func clamp(_ v: Int64, _ low: Int64, _ high: Int64) -> Int64 { min(max(v, low), high) }
        // Saturating: start, end and size all come from the file.
        func shifted(_ v: Int64) -> Int64 {
            guard v < 0 else { return v }
            let (sum, overflow) = v.addingReportingOverflow(size)
            return overflow ? Int64.min : sum
        }
        if step > 0 { return (clamp(shifted(start), 0, size), clamp(shifted(end), 0, size)) }
        return (clamp(shifted(start), -1, size - 1), clamp(shifted(end), -1, size - 1))
    }
}

extension ElementType {
    /// True for the integer and bool types (shape arithmetic is done in these).
    public var isInteger: Bool {
        switch self {
        case .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool: return true
        default: return false
        }
    }
}
