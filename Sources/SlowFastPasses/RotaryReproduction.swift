import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// Rebuilds the query after RoPE where an exporter fused RoPE into the attention op
/// (onnxruntime-genai's GroupQueryAttention with `do_rotary`), so the hybrid layer can use it.
///
/// GroupQueryAttention places token j of a step of length L at position
/// `seqlens_k[b] + 1 - L + j` (seqlens_k = total length - 1), 0...L-1 on the first prompt and
/// the past length in decode steps. The rotation reads `cos_cache`/`sin_cache` rows at those
/// positions, half-split (NeoX/LLaMA) or interleaved (GPT-J).
enum RotaryReproduction {
    /// Emits the rotated query [batch, heads, seq, head_dim] and returns its name.
    static func query(_ rotary: FusedRotary, dims: ModelDimensions, floatType: ElementType, builder: inout GraphBuilder) throws -> String {
        let heads = Int64(dims.numHeads), headDim = Int64(dims.headDim), half = Int64(dims.headDim / 2)
        var query = rotary.queryBeforeRoPE
        if let count = rotary.querySliceCount {
            query = builder.slice(query, axis: -1, start: 0, end: Int64(count), "rope/query_slice")
        }
        let perHead = builder.toFloat(builder.reshape(query, to: [0, 0, heads, headDim], "rope/query_heads"), from: floatType, "rope/query_float")

        // positions[b, j] = seqlens_k[b] + 1 - L + j
        let shape = builder.op("Shape", [query], "rope/shape")
        let length = builder.op("Gather", [shape, builder.int64s([1], "rope/seq_axis", scalar: true)], "rope/length",
                                attributes: [.int("axis", 0)])
        let seqlens = builder.op("Cast", [rotary.seqlensK], "rope/seqlens", attributes: [.int("to", Int64(ElementType.int64.rawValue))])
        let one = builder.int64s([1], "rope/one", scalar: true)
        let start = builder.op("Sub", [builder.op("Add", [seqlens, one], "rope/total"), length], "rope/start")
        let steps = builder.op("Range", [builder.int64s([0], "rope/zero", scalar: true), length, one], "rope/steps")
        let positions = builder.op("Add", [builder.unsqueeze(start, axes: [1], "rope/start_column"),
                                           builder.unsqueeze(steps, axes: [0], "rope/steps_row")], "rope/positions")
        let cosRows = builder.toFloat(builder.op("Gather", [rotary.cosCache, positions], "rope/cos", attributes: [.int("axis", 0)]),
                                      from: floatType, "rope/cos_float")
        let sinRows = builder.toFloat(builder.op("Gather", [rotary.sinCache, positions], "rope/sin", attributes: [.int("axis", 0)]),
                                      from: floatType, "rope/sin_float")
        let cos = builder.unsqueeze(cosRows, axes: [2], "rope/cos_heads")
        let sin = builder.unsqueeze(sinRows, axes: [2], "rope/sin_heads")

        let first: String, second: String
        if rotary.interleaved {
            first = builder.op("Slice", [perHead, builder.int64s([0], "rope/even_start"), builder.int64s([headDim], "rope/even_end"),
                                         builder.int64s([-1], "rope/even_axis"), builder.int64s([2], "rope/even_step")], "rope/even")
            second = builder.op("Slice", [perHead, builder.int64s([1], "rope/odd_start"), builder.int64s([headDim], "rope/odd_end"),
                                          builder.int64s([-1], "rope/odd_axis"), builder.int64s([2], "rope/odd_step")], "rope/odd")
        } else {
            first = builder.slice(perHead, axis: -1, start: 0, end: half, "rope/first_half")
            second = builder.slice(perHead, axis: -1, start: half, end: headDim, "rope/second_half")
        }
        let rotatedFirst = builder.op("Sub", [builder.op("Mul", [first, cos], "rope/first_cos"),
                                              builder.op("Mul", [second, sin], "rope/second_sin")], "rope/rotated_first")
        let rotatedSecond = builder.op("Add", [builder.op("Mul", [second, cos], "rope/second_cos"),
                                               builder.op("Mul", [first, sin], "rope/first_sin")], "rope/rotated_second")
        let rotated: String
        if rotary.interleaved {
            let pairs = builder.op("Concat", [builder.unsqueeze(rotatedFirst, axes: [-1], "rope/first_pair"),
                                              builder.unsqueeze(rotatedSecond, axes: [-1], "rope/second_pair")], "rope/pairs",
                                   attributes: [.int("axis", -1)])
            rotated = builder.reshape(pairs, to: [0, 0, heads, headDim], "rope/interleave")
        } else {
            rotated = builder.op("Concat", [rotatedFirst, rotatedSecond], "rope/rotated", attributes: [.int("axis", -1)])
        }
        return builder.transpose(rotated, perm: [0, 2, 1, 3], "rope/to_bhld")
    }
}
