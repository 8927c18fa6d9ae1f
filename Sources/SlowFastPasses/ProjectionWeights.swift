import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Reads a projection's weight in PyTorch's layout, whatever way the export stores it
/// (transposed MatMul operand, Gemm transB, a slice of a packed qkv weight, shared by
/// deduplication).
struct CanonicalProjection {
    /// Row-major [outFeatures, inFeatures], as `nn.Linear.weight`.
    var weight: [Float]
    var bias: [Float]?
    var outFeatures: Int
    var inFeatures: Int

    init(_ projection: ProjectionWeight, in graph: Graph, layer: Int, role: String) throws {
        guard let tensor = graph.initializer(named: projection.weight) else {
            throw HybridLayerError.missingInitializer(layer: layer, role: role, name: projection.weight)
        }
        guard tensor.dims.count == 2 else {
            throw HybridLayerError.badWeightShape(layer: layer, role: role, name: projection.weight, shape: tensor.dims,
                                                  expected: "a 2-D matrix")
        }
        let values = try tensor.floatValues()
        let rows = Int(tensor.dims[0]), columns = Int(tensor.dims[1])
        // Stored [in, out] (MatMul B) or [out, in] (PyTorch / Gemm transB).
        let totalOut = projection.layout == .inputMajor ? columns : rows
        let inputs = projection.layout == .inputMajor ? rows : columns
        let start = projection.outputStart ?? 0
        let count = projection.outputCount ?? (totalOut - start)
        guard start >= 0, count > 0, start + count <= totalOut else {
            throw HybridLayerError.badWeightShape(layer: layer, role: role, name: projection.weight, shape: tensor.dims,
                                                  expected: "at least \(start + count) output features")
        }
        var weight = [Float](repeating: 0, count: count * inputs)
        for out in 0 ..< count {
            for input in 0 ..< inputs {
                weight[out * inputs + input] = projection.layout == .inputMajor
                    ? values[input * columns + start + out]
                    : values[(start + out) * columns + input]
            }
        }
        self.weight = weight
        self.outFeatures = count
        self.inFeatures = inputs
        if let biasName = projection.bias {
            guard let biasTensor = graph.initializer(named: biasName) else {
                throw HybridLayerError.missingInitializer(layer: layer, role: "\(role) bias", name: biasName)
            }
            let all = try biasTensor.floatValues()
            guard all.count >= start + count else {
                throw HybridLayerError.badWeightShape(layer: layer, role: "\(role) bias", name: biasName, shape: biasTensor.dims,
                                                      expected: "at least \(start + count) values")
            }
            bias = Array(all[start ..< start + count])
        } else {
            bias = nil
        }
    }
}

/// Transposes a row-major [rows, columns] matrix.
func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
    var result = [Float](repeating: 0, count: values.count)
    for row in 0 ..< rows {
        for column in 0 ..< columns { result[column * rows + row] = values[row * columns + column] }
    }
    return result
}
