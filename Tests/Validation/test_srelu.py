"""SReLU swaps, judged by onnxruntime: exact where the paper's init is exact, the formula
itself with random parameters, and fits whose reported error is the error we measure."""
import json
from pathlib import Path

import onnxruntime as ort

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import backend_models, ort_session, run, session_options
from fixtures import FIXTURES, graph_inputs, srelu_channel_flags

LIGHT = [p for p in backend_models() if p.parent.name == "light"]


def srelu_reference(x, t_l, a_l, t_r, a_r):
    x = x.astype(np.float64)
    return np.where(x >= t_r, t_r + a_r * (x - t_r), np.where(x <= t_l, t_l + a_l * (x - t_l), x))


def random_input(session, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in session.get_inputs()}


def with_random_weights(path, out, seed=0):
    """The light models' weights are ConstantOfShape(0.02): every output is nearly constant and
    a comparison on them proves little. Replace each by a random initializer of its shape
    (He-scaled, fixed seed) so activations really see both signs."""
    model = onnx.load(path)
    rng = np.random.default_rng(seed)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in constants:
            shape = [int(d) for d in constants[node.input[0]]]
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / max(fan_in, 1)))
            if len(shape) == 1:  # batch-norm vectors: scale near 1, variance positive
                values = 1 + 0.1 * np.abs(rng.standard_normal(shape, dtype=np.float32))
            model.graph.initializer.append(numpy_helper.from_array(values.astype(np.float32, copy=False), node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.save(model, out)
    return out


def exposed(model_path, names):
    model = onnx.load(model_path)
    for name in names:
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = session_options()
    # onnxruntime fuses Conv+BatchNorm+Relu when a Relu is there and not when it is gone; the
    # fused kernels round differently (1.1e-5 seen on inception_v2), which is onnxruntime's,
    # not ours: compare the graphs as written.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options)


# Per worker: a light model with random weights, and the original's values on one input, made
# once and compared against both SReLU forms (the two cases share a worker: xdist_group).
RANDOM_CNNS = {}


def random_cnn(path, tmp_path_factory):
    if path not in RANDOM_CNNS:
        source = with_random_weights(path, tmp_path_factory.mktemp(path.stem) / "random.onnx")
        graph = onnx.load(source, load_external_data=False).graph
        relu_outputs = [n.output[0] for n in graph.node if n.op_type == "Relu"]
        relu_inputs = [n.input[0] for n in graph.node if n.op_type == "Relu"]
        original = exposed(source, relu_inputs + relu_outputs)
        feeds = random_input(original)
        expected = dict(zip([o.name for o in original.get_outputs()], original.run(None, feeds)))
        RANDOM_CNNS[path] = (source, relu_inputs, relu_outputs, [o.name for o in graph.output], feeds, expected)
    return RANDOM_CNNS[path]


@pytest.mark.parametrize("form", ["function", "primitive"])
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=pytest.mark.xdist_group(f"cnn-{p.stem}")) for p in LIGHT])
def test_relu_to_srelu_on_cnns_is_exact(path, form, tmp_path, tmp_path_factory):
    source, relu_inputs, relu_outputs, final, feeds, expected = random_cnn(path, tmp_path_factory)
    out = tmp_path / "m.onnx"
    result = run("rewrite", source, "-o", out, "--activation", "srelu", "--activation-targets", "relu", "--srelu-form", form)
    assert result.returncode == 0, result.stderr
    rewritten = onnx.load(out)
    assert not any(n.op_type == "Relu" for n in rewritten.graph.node)
    if form == "function":
        assert [f.name for f in rewritten.functions] == ["SReLU"] and rewritten.ir_version >= 8
    for name in relu_inputs:  # every ReLU really sees both signs
        assert (expected[name] < 0).any() and (expected[name] > 0).any(), name
    got = exposed(out, relu_outputs)
    values = dict(zip([o.name for o in got.get_outputs()], got.run(None, feeds)))
    for name in relu_outputs + final:
        assert np.abs(expected[name] - values[name]).max() <= 1e-5, name
    # The comparison is not between constants: outputs (often softmax probabilities) vary.
    assert expected[final[0]].std() > 0.1 * np.abs(expected[final[0]]).mean()


def small_model(path, activation="Relu", channels=8):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, channels])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, channels])
    model = helper.make_model(helper.make_graph([helper.make_node(activation, ["x"], ["y"], name="act")], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


@pytest.mark.parametrize("form", ["function", "primitive"])
def test_random_parameters_follow_the_formula(form, tmp_path):
    source, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    small_model(source)
    assert run("rewrite", source, "-o", out, "--activation", "srelu", "--srelu-form", form).returncode == 0
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(1)
    params = {"t_left": -rng.uniform(0.2, 1.0, 8), "a_left": rng.uniform(-0.5, 0.5, 8),
              "t_right": rng.uniform(0.2, 1.0, 8), "a_right": rng.uniform(0.5, 2.0, 8)}
    for tensor in model.graph.initializer:
        key = tensor.name.rsplit(".", 1)[-1]
        tensor.CopyFrom(numpy_helper.from_array(params[key].astype(np.float32), tensor.name))
    x = np.linspace(-2, 2, 16, dtype=np.float32).reshape(2, 8)
    got = ort_session(model).run(None, {"x": x})[0]
    p32 = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
    expected = srelu_reference(x, p32["t_left"], p32["a_left"], p32["t_right"], p32["a_right"])
    assert (x < p32["t_left"]).any() and (x > p32["t_right"]).any()
    assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("form", ["function", "primitive"])
def test_leaky_relu_is_exact(form, tmp_path):
    source, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    small_model(source, "LeakyRelu")
    assert run("rewrite", source, "-o", out, "--activation", "srelu", "--activation-targets", "leaky_relu", "--srelu-form", form).returncode == 0
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    assert np.array_equal(ort_session(source).run(None, {"x": x})[0], ort_session(out).run(None, {"x": x})[0])


def silu(x):
    return x / (1 + np.exp(-x))


# SiLU MLPs only: Gemma's is GELU (tanh).
@pytest.mark.parametrize("folder", [f for f in FIXTURES if "genai" not in f.name and not f.name.startswith("gemma")], ids=lambda f: f.name)
def test_silu_fit_runs_and_reports_the_error_we_measure(folder, tmp_path):
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--activation", "srelu", "--activation-targets", "silu",
                 "--weights", "copy", *srelu_channel_flags(folder))
    assert result.returncode == 0, result.stderr
    feeds = graph_inputs(folder)
    logits = ort_session(out).run(["logits"], feeds)[0]
    assert np.isfinite(logits).all()
    entries = json.loads(out.with_name("model.weight-map.json").read_text())["entries"]
    sites = [e for e in entries if e["canonicalName"].endswith(".srelu.t_left")]
    assert len(sites) == 6  # one SiLU per decoder layer
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    grid = np.linspace(-8, 8, 4097)
    for entry in sites:
        base = entry["onnxName"][: -len("t_left")]
        t_l, a_l, t_r, a_r = (float(weights[base + k].ravel()[0]) for k in ("t_left", "a_left", "t_right", "a_right"))
        errors = np.abs(srelu_reference(grid, t_l, a_l, t_r, a_r) - silu(grid))
        assert entry["figures"]["fitMaxAbsError"] == pytest.approx(errors.max(), rel=1e-9, abs=1e-12)
        assert entry["figures"]["fitMeanAbsError"] == pytest.approx(errors.mean(), rel=1e-9, abs=1e-12)
        assert errors.max() < 0.5


def test_absent_target_reports_zero_sites_and_writes_nothing(tmp_path):
    source = tmp_path / "in.onnx"
    small_model(source, "Tanh")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "m.onnx"
    result = run("rewrite", source, "-o", out, "--activation", "srelu", "--activation-targets", "gelu")
    assert result.returncode != 0 and "0 sites" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []
    result = run("rewrite", source, "-o", out, "--activation", "srelu", "--activation-targets", "gelu", "--allow-no-sites")
    assert result.returncode == 0 and out.exists()
    plan = run("plan", source, "--activation", "srelu", "--activation-targets", "gelu", "--allow-no-sites")
    assert "0 sites" in plan.stdout


def gelu(x):
    from math import erf
    return np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x])


def hard_swish(x):
    return x * np.clip(x + 3, 0, 6) / 6


@pytest.mark.parametrize("op, target, function", [("Gelu", "gelu", gelu), ("HardSwish", "hard_swish", hard_swish)])
def test_fitted_ops_follow_their_reported_parameters_and_error(op, target, function, tmp_path):
    source, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])
    model = helper.make_model(helper.make_graph([helper.make_node(op, ["x"], ["y"], name="act")], "g", [x_info],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])]),
                              opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, source)
    result = run("rewrite", source, "-o", out, "--activation", "srelu", "--activation-targets", target)
    assert result.returncode == 0, result.stderr
    weights = {t.name.rsplit(".", 1)[-1]: float(numpy_helper.to_array(t).ravel()[0]) for t in onnx.load(out).graph.initializer}
    x = np.linspace(-6, 6, 32, dtype=np.float32).reshape(4, 8)
    got = ort_session(out).run(None, {"x": x})[0]
    formula = srelu_reference(x, weights["t_left"], weights["a_left"], weights["t_right"], weights["a_right"])
    assert np.abs(got - formula).max() <= 1e-6
    entry = next(e for e in json.loads(out.with_name("out.weight-map.json").read_text())["entries"] if e["onnxName"].endswith("t_left"))
    grid = np.linspace(-8, 8, 4097)
    errors = np.abs(srelu_reference(grid, weights["t_left"], weights["a_left"], weights["t_right"], weights["a_right"]) - function(grid))
    assert entry["figures"]["fitMaxAbsError"] == pytest.approx(errors.max(), rel=1e-9, abs=1e-12)
