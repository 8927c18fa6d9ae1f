"""Hybrid layers on a small decoder block we fully know (synthetic_decoder.py), checked in
onnxruntime against the NumPy reference of docs/DESIGN.md §1 (hybrid_reference.py)."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hybrid_reference
import synthetic_decoder as syn
from conftest import REPO, query_mask_of, slow_inputs_off
from conftest import ort_session as session
from conftest import run as slowfast


@pytest.fixture()
def rewritten(tmp_path):
    source = tmp_path / "in" / "model.onnx"
    source.parent.mkdir()
    syn.build(str(source))
    layout = tmp_path / "layout.json"
    syn.write_layout(str(layout))
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = slowfast("rewrite", source, "-o", out, "--hybrid-layers", "0", "--layout", layout)
    assert result.returncode == 0, result.stderr
    return source, out


def inputs(batch=2, length=5, slow=6, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, length, syn.D)).astype(np.float32),
            rng.standard_normal((batch, slow, syn.D)).astype(np.float32))


def test_default_init_preserves_the_function_and_passes_the_checker(rewritten):
    source, out = rewritten
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    x, s = inputs()
    before = session(source).run(None, {"x": x})[0]
    after = session(out).run(None, {"x": x, "slow_tokens": s, **slow_inputs_off(2, 6)})[0]
    assert np.abs(before - after).max() <= 1e-5


def test_every_input_is_a_real_input(rewritten):
    """No initializer stands behind a new input (a runtime could skip it), and onnxruntime
    lists each one."""
    _, out = rewritten
    model = onnx.load(out)
    new = {"slow_tokens", "slow_tokens_mask", "slow_query_exclude"}
    assert new <= {i.name for i in model.graph.input}
    assert not new & {t.name for t in model.graph.initializer}
    assert new <= {i.name for i in session(out).get_inputs()}


def with_random_gates(model, seed=3):
    """Sets alpha and the gate weights to random non-zero values; returns them."""
    rng = np.random.default_rng(seed)
    values = {}
    for tensor in model.graph.initializer:
        if tensor.name.endswith("cross_attn_warm_up_gate"):
            values["alpha"] = np.array([0.7], np.float32)
        elif tensor.name.endswith("cross_attn_gate_proj.0.weight"):
            values["gate_w"] = (rng.standard_normal(tuple(tensor.dims)) * 0.3).astype(np.float32)
        elif tensor.name.endswith("cross_attn_gate_proj.0.bias"):
            values["gate_b"] = np.array([0.25], np.float32)
        else:
            continue
        key = {"cross_attn_warm_up_gate": "alpha"}.get(tensor.name.rsplit(".", 1)[-1])
        tensor.CopyFrom(numpy_helper.from_array(values[key or ("gate_w" if tensor.name.endswith("weight") else "gate_b")], tensor.name))
    assert set(values) == {"alpha", "gate_w", "gate_b"}
    return values


def o_proj_input(model):
    node = next(n for n in model.graph.node if n.name == "/model/layers.0/self_attn/o_proj/MatMul")
    return node.input[0]


def expose(model, names):
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return model


def test_gates_on_match_the_numpy_reference(rewritten):
    source, out = rewritten
    model = onnx.load(out)
    gates = with_random_gates(model)
    mixed = o_proj_input(model)
    expose(model, ["attn_out", "q4", mixed])
    x, s = inputs()
    slow_mask = np.ones((2, 6), np.float32)
    slow_mask[1, 3:] = 0
    exclude = np.array([[[0, 2], [4, 4]], [[0, 0], [9, 12]]], np.int64)  # batch 0: 0, 1 do not query; batch 1: all do
    query_mask = query_mask_of(exclude, 5)
    assert query_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    _, a_sa, q, got = session(model).run(None, {"x": x, "slow_tokens": s, "slow_tokens_mask": slow_mask,
                                                "slow_query_exclude": exclude})
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kv_w = weights["model.layers.0.self_attn.cross_attn_kv_proj.weight"].T  # stored [in, out]
    # The derived init is concat(k_proj, v_proj) in PyTorch layout.
    src = {t.name: numpy_helper.to_array(t) for t in onnx.load(source).graph.initializer}
    assert np.array_equal(kv_w, np.concatenate([src["k_w"].T, src["v_w"].T]))
    expected = hybrid_reference.hybrid_attention_input(
        a_sa, q, s, src["norm_w"], syn.EPS, kv_w, weights["model.layers.0.self_attn.cross_attn_kv_proj.bias"],
        gates["gate_w"].T, gates["gate_b"], gates["alpha"], syn.H, syn.KV, syn.HD, slow_mask, query_mask)
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(got - a_sa).max() > 1e-2  # the gates really are on


def test_zero_query_mask_gives_the_original_again(rewritten):
    source, out = rewritten
    model = onnx.load(out)
    with_random_gates(model)
    x, s = inputs()
    before = session(source).run(None, {"x": x})[0]
    nobody = np.array([[[0, 5]], [[0, 3]]], np.int64)
    nobody[1, 0] = [0, 99]
    after = session(model).run(None, {"x": x, "slow_tokens": s, **slow_inputs_off(2, 6), "slow_query_exclude": nobody})[0]
    assert np.abs(before - after).max() <= 1e-5


def test_masked_slow_tokens_are_as_if_absent(rewritten):
    _, out = rewritten
    model = onnx.load(out)
    with_random_gates(model)
    x, s = inputs(slow=8)
    mask = np.ones((2, 8), np.float32)
    mask[:, 4:] = 0
    rewritten_session = session(model)
    masked = rewritten_session.run(None, {"x": x, "slow_tokens": s, **slow_inputs_off(2, 8), "slow_tokens_mask": mask})[0]
    half = rewritten_session.run(None, {"x": x, "slow_tokens": s[:, :4], **slow_inputs_off(2, 4)})[0]
    assert np.abs(masked - half).max() <= 1e-5


def test_insert_mode_preserves_the_function(tmp_path):
    source = tmp_path / "model.onnx"
    syn.build(str(source))
    syn.write_layout(str(tmp_path / "layout.json"))
    out = tmp_path / "out.onnx"
    result = slowfast("rewrite", source, "-o", out, "--hybrid-layers", "0", "--mode", "insert", "--layout", tmp_path / "layout.json")
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(out), full_check=True)
    x, s = inputs()
    before = session(source).run(None, {"x": x})[0]
    after = session(out).run(None, {"x": x, "slow_tokens": s, **slow_inputs_off(2, 6)})[0]
    assert np.abs(before - after).max() <= 1e-5
    names = [e["canonicalName"] for e in json.loads((tmp_path / "out.weight-map.json").read_text())["entries"]]
    assert "model.layers.0.cross_attn_block.cross_attn.q_proj.weight" in names
    assert "model.layers.0.cross_attn_block.cross_attn_attn_gate" in names


def test_weight_map_accounts_for_every_initializer_once(rewritten):
    source, out = rewritten
    entries = json.loads(out.with_name("model.weight-map.json").read_text())["entries"]
    names = [e["onnxName"] for e in entries]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(t.name for t in onnx.load(out).graph.initializer)
    kept = {e["onnxName"] for e in entries if e["kind"] == "kept"}
    assert kept == {t.name for t in onnx.load(source).graph.initializer}
    kinds = {e["canonicalName"]: e["kind"] for e in entries}
    assert kinds["model.layers.0.self_attn.cross_attn_kv_proj.weight"] == "derived"
    assert kinds["model.layers.0.self_attn.cross_attn_warm_up_gate"] == "new"


@pytest.mark.parametrize("args, message", [
    (["--hybrid-layers", "3"], "layer 3 does not exist"),
    (["--hybrid-layers", "0", "--slow-token-width", "48"], "slow tokens are 48 wide"),
])
def test_bad_choices_are_refused_and_nothing_is_written(tmp_path, args, message):
    source = tmp_path / "model.onnx"
    syn.build(str(source))
    syn.write_layout(str(tmp_path / "layout.json"))
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    result = slowfast("rewrite", source, "-o", out, "--layout", tmp_path / "layout.json", *args)
    assert result.returncode != 0
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(out.parent.iterdir()) == []


def test_rewrite_is_deterministic(tmp_path):
    source = tmp_path / "model.onnx"
    syn.build(str(source))
    syn.write_layout(str(tmp_path / "layout.json"))
    outputs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        out = tmp_path / name / "m.onnx"
        assert slowfast("rewrite", source, "-o", out, "--hybrid-layers", "0", "--layout", tmp_path / "layout.json").returncode == 0
        outputs.append((out.read_bytes(), out.with_name("m.weight-map.json").read_bytes()))
    assert outputs[0] == outputs[1]


def test_weight_map_validates_against_its_schema(rewritten):
    import jsonschema
    _, out = rewritten
    schema = json.loads((REPO / "Schemas/weight-map.schema.json").read_text())
    document = json.loads(out.with_name("model.weight-map.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["summary"]["initializers"] == len(document["entries"])
