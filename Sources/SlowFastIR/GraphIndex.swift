/// Producer and consumer lookups for one graph, taken at one moment.
///
/// Build it with `graph.index()` after changing nodes; it does not follow later edits.
public struct GraphIndex {
    /// A node's output: the node's position in `graph.nodes` and the output slot.
    public struct Producer: Equatable {
        public let node: Int
        public let output: Int
    }

    /// A node's input: the node's position in `graph.nodes` and the input slot.
    public struct Use: Equatable {
        public let node: Int
        public let input: Int
    }

    public let graph: Graph
    private let producers: [String: Producer]
    private let uses: [String: [Use]]
    private let initializers: [String: Tensor]
    private let graphInputs: Set<String>
    private let graphOutputs: Set<String>

    package init(graph: Graph) {
        self.graph = graph
        var producers: [String: Producer] = [:]
        var uses: [String: [Use]] = [:]
        for (position, node) in graph.nodes.enumerated() {
            for (slot, name) in node.outputs.enumerated() where !name.isEmpty {
                producers[name] = Producer(node: position, output: slot)
            }
            for (slot, name) in node.inputs.enumerated() where !name.isEmpty {
                uses[name, default: []].append(Use(node: position, input: slot))
            }
            // A subgraph reading an outer value is a use by the node that owns the subgraph.
            for name in node.capturedNames() {
                uses[name, default: []].append(Use(node: position, input: -1))
            }
        }
        var initializers: [String: Tensor] = [:]
        for tensor in graph.initializers { if let name = tensor.name { initializers[name] = tensor } }
        self.producers = producers
        self.uses = uses
        self.initializers = initializers
        self.graphInputs = Set(graph.inputs.compactMap(\.name))
        self.graphOutputs = Set(graph.outputs.compactMap(\.name))
    }

    /// The node that computes `name`, or nil for graph inputs, initializers and outer values.
    public func producer(of name: String) -> Node? {
        producers[name].map { graph.nodes[$0.node] }
    }

    /// Where `name` is produced (node position and output slot).
    public func producerSlot(of name: String) -> Producer? { producers[name] }

    /// Every node input that reads `name`, in node order (`input` is -1 for a subgraph capture).
    public func uses(of name: String) -> [Use] { uses[name] ?? [] }

    /// The nodes that read `name`, in node order, each once.
    public func consumers(of name: String) -> [Node] {
        var seen = Set<Int>()
        return uses(of: name).compactMap { seen.insert($0.node).inserted ? graph.nodes[$0.node] : nil }
    }

    /// The initializer called `name`, if it is one.
    public func initializer(_ name: String) -> Tensor? { initializers[name] }

    public func isGraphInput(_ name: String) -> Bool { graphInputs.contains(name) }
    public func isGraphOutput(_ name: String) -> Bool { graphOutputs.contains(name) }
}

extension Graph {
    /// Producer/consumer lookups over the current nodes.
    public func index() -> GraphIndex { GraphIndex(graph: self) }

    /// Names this graph reads but does not define (inputs from an enclosing graph).
    public func outerNames() -> Set<String> {
        var defined = Set(inputs.compactMap(\.name))
        defined.formUnion(initializers.compactMap(\.name))
        for node in nodes { defined.formUnion(node.outputs) }
        var read = Set<String>()
        for node in nodes {
            read.formUnion(node.inputs.filter { !$0.isEmpty })
            read.formUnion(node.capturedNames())
        }
        read.formUnion(outputs.compactMap(\.name))
        return read.subtracting(defined)
    }
}

extension Node {
    /// Outer values that this node's subgraphs read.
    public func capturedNames() -> Set<String> {
        var names = Set<String>()
        for attribute in attributes {
            for graph in attribute.value.subgraphs { names.formUnion(graph.outerNames()) }
        }
        return names
    }
}

/// A graph whose nodes cannot be ordered: some node waits on itself.
public struct GraphCycleError: Error, CustomStringConvertible {
    public let graphName: String
    public let nodeName: String
    public var description: String {
        "graph '\(graphName)' has a cycle through node '\(nodeName)'"
    }
}

extension Graph {
    /// Sorts `nodes` so every node comes after the producers of its inputs.
    ///
    /// Stable: among nodes that are ready at the same time the one stored first goes first,
    /// so an already sorted graph is left exactly as it was.
    public func sortTopologically() throws {
        let index = self.index()
        var waiting = [Int](repeating: 0, count: nodes.count)
        var dependents = [[Int]](repeating: [], count: nodes.count)
        for (position, node) in nodes.enumerated() {
            var producers = Set<Int>()
            for name in node.inputs where !name.isEmpty {
                if let producer = index.producerSlot(of: name) { producers.insert(producer.node) }
            }
            for name in node.capturedNames() {
                if let producer = index.producerSlot(of: name) { producers.insert(producer.node) }
            }
            producers.remove(position) // a node reading its own output is a cycle, caught below
            waiting[position] = producers.count
            for producer in producers { dependents[producer].append(position) }
            if node.inputs.contains(where: { !$0.isEmpty && node.outputs.contains($0) }) {
                throw GraphCycleError(graphName: name ?? "", nodeName: node.name ?? node.op)
            }
        }
        var ready = MinHeap()
        for position in nodes.indices where waiting[position] == 0 { ready.insert(position) }
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let next = ready.popMin() {
            order.append(next)
            for dependent in dependents[next] {
                waiting[dependent] -= 1
                if waiting[dependent] == 0 { ready.insert(dependent) }
            }
        }
        if order.count != nodes.count {
            let stuck = nodes.indices.first { waiting[$0] > 0 } ?? 0
            throw GraphCycleError(graphName: name ?? "", nodeName: nodes[stuck].name ?? nodes[stuck].op)
        }
        nodes = order.map { nodes[$0] }
    }
}

/// A binary min-heap of node positions, for the stable topological sort.
struct MinHeap {
    private var items: [Int] = []

    mutating func insert(_ value: Int) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent] <= items[child] { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func popMin() -> Int? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count && items[left] < items[smallest] { smallest = left }
                if right < items.count && items[right] < items[smallest] { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}
