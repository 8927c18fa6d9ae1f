/// Structural checks a model must pass before it is written: the rules every runtime relies on
/// and that a rewrite could break.
///
/// - every node is after the producers of its inputs (topological order);
/// - every value a node reads exists: a graph input, an initializer, an earlier node's output,
///   or, inside a subgraph, a value of an enclosing graph;
/// - no value is produced twice (by two nodes, or by a node and an input or initializer);
/// - every graph output is produced;
/// - every node's domain is imported by the model, and every node in a domain that has
///   model-local functions calls one that exists.
///
/// Problems are returned as values (one line each); `PassManager` compares them with the
/// problems the input already had, so a pass is blamed only for what it broke.
public enum ModelVerifier {
    /// One broken rule, with the graph and node or value it concerns.
    public struct Problem: Hashable, Sendable, CustomStringConvertible {
        public let graph: String
        public let message: String
        public var description: String { graph.isEmpty ? message : "graph '\(graph)': \(message)" }
    }

    /// The problems of `model`, in graph order; empty when it passes.
    public static func problems(of model: Model) -> [Problem] {
        var problems: [Problem] = []
        let imported = Set(model.opsetImports.map { Domain.isONNX($0.domain) ? Domain.onnx : ($0.domain ?? "") })
        var functions = Set<FunctionKey>()
        var functionDomains = Set<String>()
        for function in model.functions {
            functions.insert(FunctionKey(domain: function.domain ?? "", name: function.name ?? "", overload: function.overload ?? ""))
            functionDomains.insert(function.domain ?? "")
        }
        let context = Context(imported: imported, functions: functions, functionDomains: functionDomains)
        check(model.graph, outer: [], label: model.graph.name ?? "", context: context, into: &problems)
        return problems
    }

    private struct FunctionKey: Hashable {
        let domain: String
        let name: String
        let overload: String
    }

    private struct Context {
        let imported: Set<String>
        let functions: Set<FunctionKey>
        let functionDomains: Set<String>
    }

    private static func check(_ graph: Graph, outer: Set<String>, label: String, context: Context, into problems: inout [Problem]) {
        var defined = Set<String>()
        func define(_ name: String, by what: String) {
            guard !name.isEmpty else { return }
            if !defined.insert(name).inserted {
                problems.append(Problem(graph: label, message: "value '\(name)' is defined twice (again by \(what))"))
            }
        }
        for input in graph.inputs { if let name = input.name { define(name, by: "graph input") } }
        for tensor in graph.initializers {
            // An initializer named like an input is that input's default (IR >= 4), not a second definition.
            if let name = tensor.name, !graph.inputs.contains(where: { $0.name == name }) { define(name, by: "initializer") }
        }
        // Every node output, built the first time a read is missing: looking each one up in the
        // nodes made a graph stored in reverse order quadratic (minutes for 100,000 nodes).
        var produced: Set<String>?
        for node in graph.nodes {
            let nodeLabel = "node '\(node.name ?? "")' (\(node.op))"
            for name in node.inputs where !name.isEmpty && !defined.contains(name) && !outer.contains(name) {
                if produced == nil { produced = Set(graph.nodes.flatMap(\.outputs)) }
                let producedLater = produced?.contains(name) ?? false
                problems.append(Problem(graph: label, message: producedLater
                    ? "\(nodeLabel) reads '\(name)' before the node that produces it (not in topological order)"
                    : "\(nodeLabel) reads '\(name)', which nothing defines"))
            }
            let domain = Domain.isONNX(node.domain ?? "") ? Domain.onnx : (node.domain ?? "")
            if !context.imported.contains(domain) {
                problems.append(Problem(graph: label, message: "\(nodeLabel) is in domain '\(domain)', which the model does not import"))
            } else if context.functionDomains.contains(domain),
                      !context.functions.contains(FunctionKey(domain: domain, name: node.op, overload: node.overload ?? "")) {
                problems.append(Problem(graph: label, message: "\(nodeLabel) calls no model-local function of that name in '\(domain)'"))
            }
            // Only a node with subgraphs needs the names it can see: building the set for
            // every node made checking quadratic in the node count (seconds on an 80-layer model).
            let subgraphs = node.attributes.flatMap { $0.value.subgraphs }
            let visible = subgraphs.isEmpty ? outer : outer.union(defined)
            for attribute in node.attributes {
                for subgraph in attribute.value.subgraphs {
                    check(subgraph, outer: visible, label: "\(label)/\(subgraph.name ?? node.name ?? "")", context: context, into: &problems)
                }
            }
            for name in node.outputs { define(name, by: nodeLabel) }
        }
        for output in graph.outputs {
            if let name = output.name, !name.isEmpty, !defined.contains(name), !outer.contains(name) {
                problems.append(Problem(graph: label, message: "graph output '\(name)' is not produced"))
            }
        }
    }
}
