"""A small model with external data, made with onnx's own writer, for I/O tests."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(folder, name="model.onnx", location=None, seed=0):
    """y = (x @ w1) @ w2 + b with w1, w2 external; returns the model path."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "w2")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
         helper.make_node("MatMul", ["h", "w2"], ["h2"], name="mm2"),
         helper.make_node("Add", ["h2", "b"], ["y"], name="add")],
        "external", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w1, w2, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / name
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location or (name + ".data"), size_threshold=64)
    return path


def set_external(path, tensor_name, **entries):
    """Rewrites `tensor_name`'s external_data entries in the .onnx at `path` (for bad-input tests)."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.name == tensor_name:
            for entry in tensor.external_data:
                if entry.key in entries:
                    entry.value = str(entries[entry.key])
    path.write_bytes(model.SerializeToString())
