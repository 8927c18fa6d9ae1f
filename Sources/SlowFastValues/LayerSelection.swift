/// Which decoder layers a rewrite touches: a list, or every N-th layer from a first one up to
/// a bound, the way the release picks its hybrid layers (`range(min_depth, max_depth, every)`:
/// every 8 from 0 gives 0, 8, 16, 24 on a 28-layer model).
public enum LayerSelection: Equatable, Sendable {
    case layers([Int])
    /// Every `step`-th layer from `from` up to `below` (exclusive; nil: the layer count).
    case every(Int, from: Int = 0, below: Int? = nil)

    /// The layer numbers for a model of `layerCount` layers, in ascending order and each once.
    /// A number past the last layer is kept (the first one only, for `every`), so the pass
    /// can refuse it by name; nothing here grows with the size of the numbers given.
    public func resolve(layerCount: Int) -> [Int] {
        switch self {
        case .layers(let layers):
            return Array(Set(layers)).sorted()
        case .every(let step, let from, let below):
            guard step > 0, from >= 0 else { return [] }
            let bound = below ?? layerCount
            guard from < bound else { return [] }
            var result = Array(stride(from: from, to: min(bound, max(layerCount, 0)), by: step))
            // The first chosen layer that does not exist, if the range reaches past the model.
            let next = result.last.map { $0.addingReportingOverflow(step) } ?? (partialValue: from, overflow: false)
            if !next.overflow, next.partialValue < bound, next.partialValue >= layerCount { result.append(next.partialValue) }
            return result
        }
    }
}
