extension Function {
    /// True when `other` has the same signature and the same body, node for node: op types,
    /// domains, value names, attributes (tensors compared by type, dims and bytes) and opset
    /// imports. Node names and doc strings do not count.
    public func computesTheSame(as other: Function) -> Bool {
        guard inputs == other.inputs, outputs == other.outputs, attributeNames == other.attributeNames,
              nodes.count == other.nodes.count,
              opsetImports.map({ "\($0.domain ?? ""):\($0.version ?? 0)" }).sorted()
                  == other.opsetImports.map({ "\($0.domain ?? ""):\($0.version ?? 0)" }).sorted() else { return false }
        return zip(nodes, other.nodes).allSatisfy { $0.computesTheSame(as: $1) }
    }
}

extension Node {
    /// Same op, domain, inputs, outputs and attributes.
    func computesTheSame(as other: Node) -> Bool {
        guard op == other.op, domainName == other.domainName, (overload ?? "") == (other.overload ?? ""),
              inputs == other.inputs, outputs == other.outputs, attributes.count == other.attributes.count else { return false }
        return zip(attributes, other.attributes).allSatisfy { first, second in
            first.name == second.name && first.refAttrName == second.refAttrName && first.value.isSame(as: second.value)
        }
    }
}

extension AttributeValue {
    fileprivate func isSame(as other: AttributeValue) -> Bool {
        switch (self, other) {
        case (.float(let a), .float(let b)): return a.bitPattern == b.bitPattern
        case (.int(let a), .int(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.floats(let a), .floats(let b)): return a.map(\.bitPattern) == b.map(\.bitPattern)
        case (.ints(let a), .ints(let b)): return a == b
        case (.strings(let a), .strings(let b)): return a == b
        case (.tensor(let a), .tensor(let b)): return a.hasSameValues(as: b)
        case (.tensors(let a), .tensors(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.hasSameValues(as: $1) }
        // Subgraphs and attributes this IR does not model are never taken as equal.
        default: return false
        }
    }
}

extension Tensor {
    /// Same element type, dims and bytes; false when either cannot be read.
    public func hasSameValues(as other: Tensor) -> Bool {
        guard dataType == other.dataType, dims == other.dims else { return false }
        guard let mine = try? withRawBytes({ Array($0) }), let theirs = try? other.withRawBytes({ Array($0) }) else { return false }
        return mine == theirs
    }
}
