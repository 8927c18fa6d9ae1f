import SlowFastKit

// Make layers 0, 2 and 4 of the example model hybrid, as `slowfast rewrite --hybrid-layers 0,2,4` does.
let input = "Examples/qwen2-tiny/model.onnx"
let model = try ModelReader.read(path: input)
let adapters = try Adapter.loadAll(folder: "Adapters")
let layout = try LayerDiscovery.discover(model, adapters: adapters)
let pass = HybridLayerPass(layout: layout, options: HybridLayerOptions(layers: [0, 2, 4]))
let results = try PassManager([pass]).run(model)
let weightMap = WeightMap(model: model, layout: layout, parameters: results.flatMap { $0.result.parameters })
let output = "/tmp/qwen2-tiny-slowfast.onnx"
try ModelWriter.write(model, to: output, options: WriteOptions(
    weights: .copy, sidecars: [(WeightMap.defaultPath(forOutput: output), try weightMap.jsonData())]))
print("\(layout.adapter): \(layout.layers.count) layers; \(weightMap.summary.new + weightMap.summary.derived) new parameters")
print("wrote \(output)")
