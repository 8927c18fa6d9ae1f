"""SReLU swaps, judged by onnxruntime: exact where the paper's init is exact, the formula
itself with random parameters, and fits whose reported error is the error we measure."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import backend_models, ort_session, run
from fixtures import FIXTURES, graph_inputs

LIGHT = [p for p in backend_models() if p.parent.name == "light"]


def srelu_reference(x, t_l, a_l, t_r, a_r):
    x = x.astype(np.float64)
    return np.where(x >= t_r, t_r + a_r * (x - t_r), np.where(x <= t_l, t_l + a_l * (x - t_l), x))


def random_input(session, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in session.get_inputs()}


@pytest.mark.parametrize("form", ["function", "primitive"])
@pytest.mark.parametrize("path", LIGHT, ids=lambda p: p.stem)
def test_relu_to_srelu_on_cnns_is_exact(path, form, tmp_path):
    out = tmp_path / "m.onnx"
    result = run("rewrite", path, "-o", out, "--activation", "srelu", "--activation-targets", "relu", "--srelu-form", form)
    assert result.returncode == 0, result.stderr
    rewritten = onnx.load(out)
    assert not any(n.op_type == "Relu" for n in rewritten.graph.node)
    if form == "function":
        assert [f.name for f in rewritten.functions] == ["SReLU"] and rewritten.ir_version >= 8
    original = ort_session(path)
    feeds = random_input(original)
    expected = original.run(None, feeds)
    got = ort_session(out).run(None, feeds)
    for a, b in zip(expected, got):
        assert np.abs(a - b).max() <= 1e-5


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


@pytest.mark.parametrize("folder", [f for f in FIXTURES if "genai" not in f.name], ids=lambda f: f.name)
def test_silu_fit_runs_and_reports_the_error_we_measure(folder, tmp_path):
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--activation", "srelu", "--activation-targets", "silu",
                 "--weights", "copy")
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
