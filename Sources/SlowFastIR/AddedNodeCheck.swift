/// Type and shape checks over the nodes a pass added and the nodes that read their outputs,
/// run before anything is written (docs/DESIGN.md §10): a rewrite must never produce a model a
/// runtime refuses, such as a float32 value added to a float16 one.
///
/// Element types are followed through the whole graph by op rules (`Cast`'s `to`, shape ops
/// give int64, comparisons bool, most ops their first input's type), seeded by initializers,
/// `Constant` nodes, graph inputs and the types the exporter recorded (`value_info`, outputs).
/// A value whose type no rule or record gives (the output of an op the rules do not know) is
/// not checked: the check proves what it can and claims nothing about the rest. Ranks and
/// known dims come from `ShapeInference`: an added node whose inputs all have known shapes
/// and whose contracted or broadcast dims are different constants is a problem.
public enum AddedNodeCheck {
    /// Problems (one line each, naming the node) among `added` and the nodes reading their
    /// outputs; empty when none is found.
    public static func problems(of model: Model, added: Set<ObjectIdentifier>,
                                addedFunctions: Set<ObjectIdentifier> = []) -> [String] {
        var problems: [String] = []
        // Every op an added node (or a node of an added function) uses must exist at the
        // opset the model (or the function) imports.
        let modelOpset = model.opsetVersion(Domain.onnx) ?? 1
        for node in model.graph.nodes where added.contains(ObjectIdentifier(node)) {
            if let problem = opsetProblem(node, opset: modelOpset) { problems.append("node '\(node.name ?? "")' (\(node.op), added): \(problem)") }
        }
        for function in model.functions where addedFunctions.contains(ObjectIdentifier(function)) {
            let opset = function.opsetImports.first { Domain.isONNX($0.domain) }?.version ?? modelOpset
            for node in function.nodes {
                if let problem = opsetProblem(node, opset: opset) {
                    problems.append("node '\(node.name ?? "")' (\(node.op)) of the added function '\(function.name ?? "")': \(problem)")
                }
            }
        }
        guard !added.isEmpty else { return problems }
        let graph = model.graph
        let types = elementTypes(of: graph)
        let addedOutputs = Set(graph.nodes.filter { added.contains(ObjectIdentifier($0)) }.flatMap(\.outputs))
        var shapes: ShapeInference?
        for node in graph.nodes {
            let isAdded = added.contains(ObjectIdentifier(node))
            guard isAdded || node.inputs.contains(where: addedOutputs.contains) else { continue }
            if let problem = typeProblem(node, types) {
                problems.append("node '\(node.name ?? "")' (\(node.op)\(isAdded ? ", added" : ", reads an added value")): \(problem)")
                continue
            }
            guard isAdded else { continue }
            if shapes == nil {
                var inference = ShapeInference(model: model)
                _ = inference.infer(model, upTo: "")
                shapes = inference
            }
            if let problem = shapeProblem(node, shapes!) {
                problems.append("node '\(node.name ?? "")' (\(node.op), added): \(problem)")
            }
        }
        return problems
    }

    // MARK: - Opsets

    /// The first default-domain opset with each op in the form passes write it (for ops whose
    /// signature changed: the form with the given number of inputs).
    static func opsetProblem(_ node: Node, opset: Int64) -> String? {
        guard Domain.isONNX(node.domain) else { return nil }
        let inputs = node.inputs.count
        var needed: Int64?
        var before: Int64?
        switch node.op {
        case "Where", "Erf", "ConstantOfShape", "Greater", "Less": needed = 9
        case "Expand", "Max", "Min": needed = 8
        case "Pow": needed = 7
        case "Range": needed = 11
        case "CastLike": needed = 15
        case "Trilu": needed = 14
        case "Reshape": needed = 5
        case "Slice": if inputs > 1 { needed = 10 }
        case "Unsqueeze", "Squeeze", "Split", "ReduceSum": if inputs > 1 { needed = 13 } else if node.attribute("axes") != nil { before = 13 }
        case "ReduceMean", "ReduceMax", "ReduceMin": if inputs > 1 { needed = 18 } else if node.attribute("axes") != nil { before = 18 }
        default: break
        }
        if let needed, opset < needed { return "\(node.op) in this form needs opset \(needed), the model imports \(opset)" }
        if let before, opset >= before { return "\(node.op) with an axes attribute exists only before opset \(before), the model imports \(opset)" }
        return nil
    }

    // MARK: - Element types

    /// The element type of every value a rule or a record gives.
    public static func elementTypes(of graph: Graph) -> [String: ElementType] {
        var types: [String: ElementType] = [:]
        func declared(_ info: ValueInfo) {
            guard let name = info.name, case .tensor(let raw, _)? = info.type?.kind,
                  let raw, let type = ElementType(rawValue: raw) else { return }
            types[name] = type
        }
        graph.inputs.forEach(declared)
        for tensor in graph.initializers { if let name = tensor.name, let type = tensor.elementType { types[name] = type } }
        var recorded: [String: ElementType] = [:]
        for info in graph.valueInfo + graph.outputs {
            guard let name = info.name, case .tensor(let raw, _)? = info.type?.kind,
                  let raw, let type = ElementType(rawValue: raw) else { continue }
            recorded[name] = type
        }
        for node in graph.nodes {
            let inferred = outputType(node, types)
            for output in node.outputs where !output.isEmpty {
                if let type = inferred ?? recorded[output] { types[output] = type }
            }
        }
        return types
    }

    private static let sameAsFirst: Set<String> = [
        "Identity", "Relu", "Gelu", "Erf", "Sqrt", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Abs", "Softmax",
        "LogSoftmax", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Softplus", "Clip", "Trilu",
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Sum", "Mean", "MatMul", "Gemm",
        "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Concat", "Gather", "GatherElements",
        "Slice", "Split", "Tile", "Pad", "Flatten", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
        "ReduceProd", "ReduceSumSquare", "LayerNormalization", "RMSNormalization", "Dropout",
        "CumSum", "ScatterND", "ScatterElements", "Einsum", "Sign",
    ]
    private static let comparisons: Set<String> = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                                                   "And", "Or", "Xor", "Not", "IsNaN", "IsInf"]

    static func outputType(_ node: Node, _ types: [String: ElementType]) -> ElementType? {
        guard Domain.isONNX(node.domain) else { return nil }
        func input(_ i: Int) -> ElementType? { i < node.inputs.count ? types[node.inputs[i]] : nil }
        switch node.op {
        case "Cast": return node.intAttribute("to").flatMap { ElementType(rawValue: Int32($0)) }
        case "CastLike": return input(1)
        case "Shape", "Size", "NonZero", "ArgMax", "ArgMin": return .int64
        case "Where": return input(1)
        case "Range": return input(0)
        case "ConstantOfShape":
            if case .tensor(let tensor)? = node.attribute("value") { return tensor.elementType }
            return .float
        case "Constant":
            if case .tensor(let tensor)? = node.attribute("value") { return tensor.elementType }
            if node.attribute("value_float") != nil || node.attribute("value_floats") != nil { return .float }
            if node.attribute("value_int") != nil || node.attribute("value_ints") != nil { return .int64 }
            return nil
        default:
            if comparisons.contains(node.op) { return .bool }
            return sameAsFirst.contains(node.op) ? input(0) : nil
        }
    }

    private static let floating: Set<ElementType> = [.float, .float16, .double, .bfloat16]

    /// Which inputs must share one element type, and which must be of a given kind.
    static func typeProblem(_ node: Node, _ types: [String: ElementType]) -> String? {
        guard Domain.isONNX(node.domain) else { return nil }
        func type(_ i: Int) -> ElementType? { i < node.inputs.count && !node.inputs[i].isEmpty ? types[node.inputs[i]] : nil }
        func same(_ slots: [Int]) -> String? {
            let known = slots.compactMap { slot in type(slot).map { (slot, $0) } }
            guard let first = known.first, let other = known.first(where: { $0.1 != first.1 }) else { return nil }
            return "input \(first.0) '\(node.inputs[first.0])' is \(first.1.name) but input \(other.0) '\(node.inputs[other.0])' is \(other.1.name)"
        }
        func integer(_ slots: [Int], _ what: String) -> String? {
            for slot in slots { if let t = type(slot), t != .int64, t != .int32 { return "\(what) '\(node.inputs[slot])' is \(t.name), not an integer type" } }
            return nil
        }
        func float(_ slot: Int) -> String? {
            if let t = type(slot), !floating.contains(t) { return "input \(slot) '\(node.inputs[slot])' is \(t.name), not a floating-point type" }
            return nil
        }
        let all = Array(node.inputs.indices)
        switch node.op {
        case "Add", "Sub", "Mul", "Div", "MatMul", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater",
             "LessOrEqual", "GreaterOrEqual", "Concat":
            return same(all)
        case "Gemm": return same([0, 1, 2])
        case "Where":
            if let t = type(0), t != .bool { return "condition '\(node.inputs[0])' is \(t.name), not bool" }
            return same([1, 2])
        case "Reshape", "Expand", "Tile": return integer([1], "shape")
        case "Unsqueeze", "Squeeze": return integer([1], "axes")
        case "Slice": return integer([1, 2, 3, 4], "slice bound")
        case "Gather", "GatherElements": return integer([1], "indices")
        case "Softmax", "Tanh", "Sigmoid", "Sqrt", "Exp", "Reciprocal", "Erf", "Log": return float(0)
        case "Pow": return float(0)
        default: return nil
        }
    }

    // MARK: - Shapes

    /// A contracted or broadcast dim that two known constants contradict.
    static func shapeProblem(_ node: Node, _ shapes: ShapeInference) -> String? {
        guard Domain.isONNX(node.domain), let output = node.outputs.first(where: { !$0.isEmpty }) else { return nil }
        for input in node.inputs where !input.isEmpty && shapes.values[input]?.shape == nil { return nil }
        guard let reason = shapes.reason(for: output), reason.hasPrefix("node '\(node.name ?? "")' (\(node.op)): ") else { return nil }
        // Only contradictions of known dims: not what inference cannot follow.
        guard reason.contains("differ:") || reason.contains("cannot broadcast") || reason.contains("rank-0 operand") else { return nil }
        let shapesRead = node.inputs.filter { !$0.isEmpty }.map { "'\($0)' \(shapes.values[$0].map(\.description) ?? "?")" }
        return String(reason.dropFirst("node '\(node.name ?? "")' (\(node.op)): ".count)) + " (inputs " + shapesRead.joined(separator: ", ") + ")"
    }
}
