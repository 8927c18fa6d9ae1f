import SlowFastKit

let model = try ModelReader.read(path: "Examples/qwen2-tiny/model.onnx")
let summary = ModelSummary(model: model, file: "Examples/qwen2-tiny/model.onnx")
print("\(summary.nodes.count) nodes, \(summary.initializers.count) initializers")
try ModelWriter.write(model, to: "/tmp/qwen2-copy.onnx", options: WriteOptions(weights: .link))
