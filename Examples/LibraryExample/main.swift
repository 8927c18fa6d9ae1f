import SlowFastKit

// Make layers 0, 2 and 4 of the example model hybrid, as `slowfast rewrite --hybrid-layers 0,2,4` does.
let output = "/tmp/qwen2-tiny-slowfast.onnx"
let (outcome, _) = try Pipeline.rewrite("Examples/qwen2-tiny/model.onnx", to: output,
                                        request: RewriteRequest(hybrid: HybridRequest(layers: .layers([0, 2, 4]))))
for change in outcome.changes { print(change) }
print("wrote \(output)")
