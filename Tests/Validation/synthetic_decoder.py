"""A one-layer decoder block written with onnx.helper, shaped like a torch.onnx export
(decomposed RMSNorm, MatMul+bias projections, GQA, eager attention), with the layer
description our CLI accepts through --layout. Small and fully known, so hybrid-layer tests
do not depend on any exporter."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D, H, KV, HD = 32, 4, 2, 8
EPS = 1e-6


def build(path, seed=0, opset=17):
    rng = np.random.default_rng(seed)
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)
    inits = {
        "norm_w": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
        "q_w": w(D, H * HD), "q_b": w(H * HD), "k_w": w(D, KV * HD), "k_b": w(KV * HD),
        "v_w": w(D, KV * HD), "v_b": w(KV * HD), "o_w": w(H * HD, D),
        "eps": np.array(EPS, np.float32), "two": np.array(2.0, np.float32),
        "scale": np.array(1 / np.sqrt(HD), np.float32),
        "shape_q": np.array([0, 0, H, HD], np.int64), "shape_kv": np.array([0, 0, KV, HD], np.int64),
        "shape_out": np.array([0, 0, H * HD], np.int64), "rep": np.array([1, 1, H // KV, 1, 1], np.int64),
        "shape_rep": np.array([0, H, -1, HD], np.int64), "ax2": np.array([2], np.int64),
        "axm1": np.array([-1], np.int64),
    }
    n = helper.make_node
    nodes = [
        n("Pow", ["x", "two"], ["x2"], name="/model/layers.0/input_layernorm/Pow"),
        n("ReduceMean", ["x2"], ["ms"], name="/model/layers.0/input_layernorm/ReduceMean", axes=[-1], keepdims=1),
        n("Add", ["ms", "eps"], ["mse"], name="/model/layers.0/input_layernorm/Add"),
        n("Sqrt", ["mse"], ["rms"], name="/model/layers.0/input_layernorm/Sqrt"),
        n("Div", ["x", "rms"], ["xn0"], name="/model/layers.0/input_layernorm/Div"),
        n("Mul", ["xn0", "norm_w"], ["xn"], name="/model/layers.0/input_layernorm/Mul"),
    ]
    for p, width, shape in (("q", H * HD, "shape_q"), ("k", KV * HD, "shape_kv"), ("v", KV * HD, "shape_kv")):
        nodes += [
            n("MatMul", ["xn", f"{p}_w"], [f"{p}0"], name=f"/model/layers.0/self_attn/{p}_proj/MatMul"),
            n("Add", [f"{p}0", f"{p}_b"], [f"{p}1"], name=f"/model/layers.0/self_attn/{p}_proj/Add"),
            n("Reshape", [f"{p}1", shape], [f"{p}2"], name=f"/model/layers.0/self_attn/{p}_Reshape"),
            n("Transpose", [f"{p}2"], [f"{p}4"], name=f"/model/layers.0/self_attn/{p}_Transpose", perm=[0, 2, 1, 3]),
        ]
    for p in ("k", "v"):
        nodes += [
            n("Unsqueeze", [f"{p}4", "ax2"], [f"{p}5"], name=f"/model/layers.0/self_attn/{p}_Unsqueeze"),
            n("Expand", [f"{p}5", "rep"], [f"{p}6"], name=f"/model/layers.0/self_attn/{p}_Expand"),
            n("Reshape", [f"{p}6", "shape_rep"], [f"{p}7"], name=f"/model/layers.0/self_attn/{p}_Repeat"),
        ]
    nodes += [
        n("Transpose", ["k7"], ["kt"], name="/model/layers.0/self_attn/Transpose_k", perm=[0, 1, 3, 2]),
        n("MatMul", ["q4", "kt"], ["sc0"], name="/model/layers.0/self_attn/MatMul"),
        n("Mul", ["sc0", "scale"], ["sc"], name="/model/layers.0/self_attn/Mul"),
        n("Softmax", ["sc"], ["pr"], name="/model/layers.0/self_attn/Softmax", axis=-1),
        n("MatMul", ["pr", "v7"], ["at0"], name="/model/layers.0/self_attn/MatMul_1"),
        n("Transpose", ["at0"], ["at1"], name="/model/layers.0/self_attn/Transpose_out", perm=[0, 2, 1, 3]),
        n("Reshape", ["at1", "shape_out"], ["attn_out"], name="/model/layers.0/self_attn/Reshape_out"),
        n("MatMul", ["attn_out", "o_w"], ["o"], name="/model/layers.0/self_attn/o_proj/MatMul"),
        n("Add", ["x", "o"], ["y"], name="/model/layers.0/Add"),
    ]
    graph = helper.make_graph(
        nodes, "synthetic_decoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", D])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return inits


def projection(name, bias):
    return {"weight": f"{name}_w", "layout": "inputMajor", "bias": bias, "node": f"/model/layers.0/self_attn/{name}_proj/MatMul"}


def layout():
    """The layer description of build()'s graph, in the JSON of `inspect --layers --json`."""
    layer = {
        "index": 0, "residualInput": "x", "residualOutput": "y",
        "inputNorm": {"weight": "norm_w", "epsilon": EPS, "input": "x", "output": "xn"},
        "q": projection("q", "q_b"), "k": projection("k", "k_b"), "v": projection("v", "v_b"),
        "query": {"tensor": {"name": "q4"}}, "attentionOutput": "attn_out",
        "o": {"weight": "o_w", "layout": "inputMajor", "node": "/model/layers.0/self_attn/o_proj/MatMul"},
        "attentionResidual": "y", "mlp": {}, "activationNodes": [],
    }
    return {"adapter": "synthetic", "floatType": 1, "parameters": [],
            "dimensions": {"numLayers": 1, "hiddenSize": D, "numHeads": H, "numKVHeads": KV, "headDim": HD},
            "layers": [layer]}


def write_layout(path):
    with open(path, "w") as f:
        json.dump(layout(), f)
