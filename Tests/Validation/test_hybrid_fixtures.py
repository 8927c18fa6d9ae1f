"""Hybrid layers on the real exports, judged by onnxruntime and onnx.checker:
function preservation at default init (both modes), the docs/DESIGN.md §1 and §2 equations with the
gates on, the masks, the weight map, and KV-cache decode steps on the genai exports, with the slow
keys and values computed inside the decoder (`--slow-kv inline`) or fed from the companion model
(`--slow-kv inputs`)."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hybrid_reference
from conftest import REPO, checker_passes, ort_session, query_mask_of, run, slow_inputs_off
from fixtures import (FIXTURES, NAMES, assert_equals_pytorch_hybrid, float_compute, float_weights, assert_float16_outputs_preserved, config, float_type,
                      graph_inputs, original_outputs, position_feeds, pytorch_names, query_anchor, rope_from_caches, rotated_query, tolerance)

LAYERS = [0, 2, 4]
GATED = 2
N_SLOW = 10


def rewrite(folder, tmp_path, mode="in-place", name="out", slow_kv="inline", cross_attention="auto"):
    out = tmp_path / name / "model.onnx"
    out.parent.mkdir(parents=True)
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", ",".join(map(str, LAYERS)),
                 "--mode", mode, "--weights", "copy", "--slow-kv", slow_kv, "--cross-attention", cross_attention)
    return out, result


def companion_of(out):
    return out.with_name(out.name[: -len(".onnx")] + ".slow-kv-encoder.onnx")


def slow_feeds(out, slow, mask=None, exclude=None):
    """What a rewritten decoder at `out` takes for the slow tokens `slow`: `slow_tokens`
    (inline form) or, computed once by the companion model, the per-layer slow keys and values
    (inputs form); plus the two mask inputs (their "off" values unless given)."""
    feeds = slow_inputs_off(slow.shape[0], slow.shape[1], slow.dtype)
    if mask is not None:
        feeds["slow_tokens_mask"] = mask
    if exclude is not None:
        feeds["slow_query_exclude"] = exclude
    companion = companion_of(out)
    if not companion.exists():
        return {**feeds, "slow_tokens": slow}
    session = ort_session(companion)
    names = [o.name for o in session.get_outputs()]
    for name, value in zip(names, session.run(names, {"slow_tokens": slow})):
        feeds[name.replace("present.", "past_key_values.", 1)] = value
    return feeds


def slow_tokens(cfg, batch=1, count=N_SLOW, seed=5, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((batch, count, cfg["hidden_size"])).astype(dtype)


def layout_of(folder):
    return json.loads(run("inspect", folder / "model.onnx", "--layers", "--json").stdout)["layout"]


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
@pytest.mark.parametrize("mode", ["in-place", "insert"])
def test_default_init_is_function_preserving(folder, mode, tmp_path):
    out, result = rewrite(folder, tmp_path, mode)
    if mode == "insert" and "genai" in folder.name:
        assert result.returncode != 0 and "use --mode in-place" in result.stderr
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    assert checker_passes(folder / "model.onnx") == checker_passes(out)
    feeds = graph_inputs(folder)
    before = original_outputs(folder)  # logits, and present.* where the export has a cache
    names = list(before)
    slow = slow_feeds(out, slow_tokens(config(folder), dtype=float_type(folder)))
    after = dict(zip(names, ort_session(out).run(names, {**feeds, **slow})))
    # float32: every output is the original's (1e-5). float16: bit for bit as ONNX defines the
    # graph; onnxruntime's CPU provider computes float16 ops in float32 and skips some roundings
    # between them depending on a value's readers, so there the outputs may move by a float16
    # step (up to 1.5 steps of the largest logit, hundreds of ulps at logits near 0), never more
    # than onnxruntime's outputs of the original stand from the ONNX-defined ones.
    for name in names:
        assert before[name].shape == after[name].shape, name  # no broadcast hides a wrong rank
    if float_type(folder) == np.float16 and uses_onnxruntime_ops(folder / "model.onnx"):
        # onnx.reference cannot run com.microsoft ops (GroupQueryAttention): in onnxruntime the
        # added float16 term is exactly +0, so every output is the original's bit for bit.
        for name in names:
            assert np.array_equal(before[name], after[name]), name
        return
    if float_type(folder) == np.float16:
        assert_float16_outputs_preserved(folder / "model.onnx", feeds, out, {**feeds, **slow}, before, after)
        return
    for name in names:
        assert np.abs(before[name].astype(np.float64) - after[name]).max() <= 1e-5, name


def uses_onnxruntime_ops(path):
    """Whether the model has ops of onnxruntime's own domain (com.microsoft)."""
    return any(n.domain == "com.microsoft" for n in onnx.load(str(path), load_external_data=False).graph.node)


def gates_on(model, layer, seed=7):
    """alpha, w_g, b_g of `layer` set to random non-zero values (in the parameters' own type);
    returns them."""
    rng = np.random.default_rng(seed)
    dtype = next(numpy_helper.to_array(t).dtype for t in model.graph.initializer if t.name.endswith("cross_attn_warm_up_gate"))
    prefix = f"model.layers.{layer}.self_attn."
    values = {}
    for tensor in model.graph.initializer:
        if tensor.name == prefix + "cross_attn_warm_up_gate":
            values["alpha"] = np.array([0.9], dtype)
            tensor.CopyFrom(numpy_helper.from_array(values["alpha"], tensor.name))
        elif tensor.name == prefix + "cross_attn_gate_proj.0.weight":
            values["w"] = (rng.standard_normal(tuple(tensor.dims)) * 0.5).astype(dtype)
            tensor.CopyFrom(numpy_helper.from_array(values["w"], tensor.name))
        elif tensor.name == prefix + "cross_attn_gate_proj.0.bias":
            values["b"] = np.array([0.3], dtype)
            tensor.CopyFrom(numpy_helper.from_array(values["b"], tensor.name))
    assert len(values) == 3
    return values


def o_proj_input(model, layer):
    """The value o_proj of hybrid `layer` reads (directly, or through the quantization of its
    input in an int8 model): the attention output plus the gated slow-token term."""
    name = f"/slowfast/layers.{layer['index']}/cross_attn/attention_plus_slow"
    return next(n for n in model.graph.node if n.name == name).output[0]


def query_after_rope(values, layer, cfg, positions):
    query = layer["query"]
    rotated = rotated_query(values, query, cfg["num_attention_heads"], cfg["head_dim"])
    if rotated is not None:
        return rotated
    fused = query["fused"]["rotary"]
    packed = values[fused["queryBeforeRoPE"]][..., : fused["querySliceCount"]]
    batch, length = packed.shape[:2]
    model_path = values["__path__"]
    caches = {t.name: numpy_helper.to_array(t) for t in onnx.load(model_path).graph.initializer
              if t.name in (fused["cosCache"], fused["sinCache"])}
    q = packed.reshape(batch, length, cfg["num_attention_heads"], cfg["head_dim"])
    return rope_from_caches(q, caches[fused["cosCache"]], caches[fused["sinCache"]], positions, fused["interleaved"]).transpose(0, 2, 1, 3)


def config_score(cfg):
    """The layer's score factor and soft cap as the model's config states them, read
    independently of discovery (None: 1/sqrt(head_dim), no cap)."""
    if cfg.get("attention_multiplier") is not None:  # Granite scores by its attention multiplier
        scale = cfg["attention_multiplier"]
    elif cfg.get("query_pre_attn_scalar"):  # Gemma 2/3
        scale = cfg["query_pre_attn_scalar"] ** -0.5
    else:
        scale = None
    return scale, cfg.get("attn_logit_softcapping")


def reference_mix(model, layer, values, gates, slow, cfg, positions, slow_mask=None, query_mask=None):
    weights = float_weights(model)
    prefix = f"model.layers.{layer['index']}.self_attn."
    weights = {k: v.astype(np.float64) for k, v in weights.items()}
    gates = {k: v.astype(np.float64) for k, v in gates.items()}
    return hybrid_reference.hybrid_attention_input(
        values[layer["attentionOutput"]].astype(np.float64), query_after_rope(values, layer, cfg, positions), slow,
        *((weights[layer["inputNorm"]["weight"]], layer["inputNorm"]["epsilon"]) if layer.get("inputNorm") else (None, None)),
        weights[prefix + "cross_attn_kv_proj.weight"].T, weights[prefix + "cross_attn_kv_proj.bias"],
        gates["w"].T, gates["b"], gates["alpha"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
        cfg["head_dim"], slow_mask, query_mask,
        (weights[layer["kNorm"]["weight"]], layer["kNorm"]["epsilon"]) if layer.get("kNorm") else None,
        *config_score(cfg),
        layer_norm_bias=weights[layer["inputNorm"]["bias"]] if layer.get("inputNorm", {}).get("bias") else None,
        centered=bool(layer.get("inputNorm", {}).get("centered")))


def logit_scale(folder):
    """The factor a model multiplies its logits by (Cohere's logit_scale, 0.0625 in the fixtures;
    1 elsewhere): "the slow tokens change the logits" is measured in the logits' own units."""
    return config(folder).get("logit_scale", 1.0)


def exposed_run(model, names, feeds, path):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort_session(float_compute(model))
    outputs = [o.name for o in session.get_outputs()]
    values = dict(zip(outputs, session.run(outputs, feeds)))
    values["__path__"] = str(path)
    return values


def anchors(layer):
    query = layer["query"]
    return [layer["attentionOutput"], query_anchor(query)]


def gated_rewrite(folder, tmp_path):
    """The fixture rewritten (in-place, inline) with layer GATED's gates on: the output path,
    config, GATED's layout entry, the model, its gate values and o_proj's (mixed) input."""
    out, result = rewrite(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    layer = layout_of(folder)["layers"][GATED]
    model = onnx.load(out)
    gates = gates_on(model, GATED)
    return out, config(folder), layer, model, gates, o_proj_input(model, layer)


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_gates_on_follow_the_equations(folder, tmp_path):
    out, cfg, layer, model, gates, mixed = gated_rewrite(folder, tmp_path)
    feeds = graph_inputs(folder)
    length = feeds["input_ids"].shape[1]
    dtype = float_type(folder)
    slow = slow_tokens(cfg, dtype=dtype)
    slow_mask = np.ones((1, N_SLOW), dtype)
    slow_mask[0, 6:] = 0
    exclude = np.array([[[1, 2]]], np.int64)  # position 1 does not query
    query_mask = query_mask_of(exclude, length)
    values = exposed_run(model, anchors(layer) + [mixed],
                         {**feeds, **slow_feeds(out, slow, slow_mask, exclude)}, out)
    positions = np.arange(length)[None]
    expected = reference_mix(model, layer, values, gates, slow, cfg, positions, slow_mask, query_mask)
    assert np.abs(values[mixed] - expected).max() <= tolerance(folder)
    effect = np.abs(values[mixed].astype(np.float64) - values[layer["attentionOutput"]]).max()
    assert effect > 10 * tolerance(folder)  # the gate is really open


MROPE = [f for f in FIXTURES if graph_inputs(f).get("position_ids", np.zeros((1, 1))).ndim == 3]


@pytest.mark.parametrize("folder", MROPE, ids=[f.name for f in MROPE])
def test_multimodal_rope_positions_exclude_by_token_index(folder, tmp_path):
    """position_ids [3, B, L] (Qwen2-VL's multimodal RoPE): slow_query_exclude counts token
    indices (docs/DESIGN.md §3). The prompt's image tokens 2-5 share temporal position 2 and
    text after them continues at 4; excluding [2, 3) stops token 2 alone from querying."""
    assert graph_inputs(folder)["position_ids"][0, 0].tolist() == [0, 1, 2, 2, 2, 2, 4]
    out, cfg, layer, model, gates, mixed = gated_rewrite(folder, tmp_path)
    feeds = graph_inputs(folder)
    length = feeds["input_ids"].shape[1]
    slow = slow_tokens(cfg, dtype=float_type(folder))
    exclude = np.array([[[2, 3]]], np.int64)
    values = exposed_run(model, anchors(layer) + [mixed], {**feeds, **slow_feeds(out, slow, exclude=exclude)}, out)
    assert values[mixed].shape == values[layer["attentionOutput"]].shape == (1, length, cfg["num_attention_heads"] * cfg["head_dim"])
    query_mask = query_mask_of(exclude, length)
    assert query_mask[0].tolist() == [1, 1, 0, 1, 1, 1, 1]
    expected = reference_mix(model, layer, values, gates, slow, cfg, np.arange(length)[None], None, query_mask)
    assert np.abs(values[mixed] - expected).max() <= tolerance(folder)
    effect = np.abs(values[mixed].astype(np.float64) - values[layer["attentionOutput"]]).max(-1)[0]
    assert effect[2] == 0 and effect[[3, 4, 5]].min() > 1e-3


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_query_mask_zero_and_slow_padding(folder, tmp_path):
    out, result = rewrite(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = config(folder)
    model = onnx.load(out)
    gates_on(model, GATED)
    session = ort_session(model)
    feeds = graph_inputs(folder)
    length = feeds["input_ids"].shape[1]
    dtype = float_type(folder)
    slow = slow_tokens(cfg, dtype=dtype)
    original = original_outputs(folder)["logits"]
    # Every position excluded closes the gates; so do two ranges that together cover every
    # position. The output is the original's (float16: as in test_default_init_is_function_preserving).
    for exclude in (np.array([[[0, length]]], np.int64), np.array([[[3, 99], [0, 3]]], np.int64)):
        closed_feeds = {**feeds, **slow_feeds(out, slow, exclude=exclude)}
        closed = session.run(["logits"], closed_feeds)[0]
        if dtype == np.float16 and uses_onnxruntime_ops(folder / "model.onnx"):
            assert np.array_equal(closed, original)  # onnx.reference has no com.microsoft ops; +0 exactly
        elif dtype == np.float16:
            assert_float16_outputs_preserved(folder / "model.onnx", feeds, model, closed_feeds, {"logits": original}, {"logits": closed})
        else:
            assert np.abs(closed.astype(np.float64) - original).max() <= 1e-5
    mask = np.ones((1, N_SLOW), dtype)
    mask[0, N_SLOW // 2:] = 0
    masked = session.run(["logits"], {**feeds, **slow_feeds(out, slow, mask)})[0]
    half = session.run(["logits"], {**feeds, **slow_feeds(out, slow[:, : N_SLOW // 2])})[0]
    assert np.abs(masked.astype(np.float64) - half).max() <= tolerance(folder, float32=1e-5, float16=1e-2)
    assert np.abs(masked.astype(np.float64) - original).max() > 10 * tolerance(folder, float32=1e-5, float16=1e-2) * logit_scale(folder)


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_weight_map_accounts_for_every_initializer(folder, tmp_path):
    import jsonschema
    out, result = rewrite(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.with_name("model.weight-map.json").read_text())
    jsonschema.Draft202012Validator(json.loads((REPO / "Schemas/weight-map.schema.json").read_text())).validate(document)
    names = [e["onnxName"] for e in document["entries"]]
    assert len(names) == len(set(names))
    assert set(names) == {t.name for t in onnx.load(out, load_external_data=False).graph.initializer}
    original = {t.name for t in onnx.load(folder / "model.onnx", load_external_data=False).graph.initializer}
    assert {e["onnxName"] for e in document["entries"] if e["kind"] == "kept"} == original
    canonical = {e["canonicalName"]: e for e in document["entries"]}
    for layer in LAYERS:
        kv = canonical[f"model.layers.{layer}.self_attn.cross_attn_kv_proj.weight"]
        assert kv["kind"] == "derived" and kv["initRule"].startswith("concat(")
        if folder.name.startswith("phi3-") and "genai" not in folder.name:
            # Phi-3's qkv_proj is packed in PyTorch: kv_proj is its k and v row blocks.
            qkv = f"model.layers.{layer}.self_attn.qkv_proj.weight"
            assert kv["initRule"] == f"concat({qkv}[64:96], {qkv}[96:128])"
        if folder.name.startswith("internlm2-"):
            # InternLM2's wqkv holds per kv head its 2 query heads, key, value (16 rows each):
            # kv_proj is the key rows of both kv heads, then their value rows.
            qkv = f"model.layers.{layer}.attention.wqkv.weight"
            assert kv["initRule"] == f"concat({qkv}[32:48], {qkv}[96:112], {qkv}[48:64], {qkv}[112:128])"
        assert canonical[f"model.layers.{layer}.self_attn.cross_attn_warm_up_gate"]["initRule"] == "zeros"
    assert canonical[f"model.layers.0.{pytorch_names(folder)['o_proj']}.weight"]["canonicalSource"] == "adapter"


GENAI = [f for f in FIXTURES if "genai" in f.name]
# Every export with a KV cache: genai's, and torch.onnx's with past_key_values in and present out.
def has_kv_cache(folder):
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    return any(i.name.startswith("past_key_values.") for i in model.graph.input)


KV = [f for f in FIXTURES if has_kv_cache(f)]


@pytest.mark.parametrize("folder", [f for f in KV if f.name.endswith("-dynamo-kv")], ids=lambda f: f.name)
def test_dynamo_kv_exports_have_the_torchscript_interface(folder):
    """A dynamo export with a KV cache takes and returns what the TorchScript one does (the
    names genai uses): past_key_values.{i}.key/value [batch, kv_heads, past, head_dim] in,
    logits and present.{i}.key/value out, one pair per layer; the two exports' names agree
    where the family has both. Qwen2-VL's and Qwen2.5-VL's also take position_ids [3, batch, sequence]
    after the mask."""
    cfg = config(folder)
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    inputs, outputs = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    layers = range(cfg["num_hidden_layers"])
    leading = ["input_ids", "attention_mask"] + (["position_ids"] if "position_ids" in inputs else [])
    assert inputs == leading + [f"past_key_values.{i}.{k}" for i in layers for k in ("key", "value")]
    assert outputs == ["logits"] + [f"present.{i}.{k}" for i in layers for k in ("key", "value")]
    for value in model.graph.input[len(leading):]:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", cfg["num_key_value_heads"], "past_sequence", cfg["head_dim"]], (value.name, dims)
    torchscript = folder.with_name(folder.name.replace("-dynamo-kv", "-torchscript-kv"))
    if torchscript.exists():
        other = onnx.load(str(torchscript / "model.onnx"), load_external_data=False)
        assert [i.name for i in other.graph.input] == inputs and [o.name for o in other.graph.output] == outputs


COMPANION_CASES = ("gemma2-genai", "qwen2-genai", "qwen2-torchscript-fp16", "llama-dynamo")


@pytest.mark.parametrize("folder", [f for f in FIXTURES if f.name in COMPANION_CASES],
                         ids=[f.name for f in FIXTURES if f.name in COMPANION_CASES])
def test_slow_kv_inputs_companion_and_weight_map(folder, tmp_path):
    """--slow-kv inputs: the decoder has no kv_proj and takes per-layer K/V inputs; the companion
    passes onnx.checker and holds each layer's norm copy and kv_proj, listed in the weight map
    with its file; the same input gives byte-identical files."""
    import jsonschema
    out, result = rewrite(folder, tmp_path, slow_kv="inputs")
    assert result.returncode == 0, result.stderr
    companion = companion_of(out)
    onnx.checker.check_model(str(companion), full_check=True)
    assert checker_passes(folder / "model.onnx") == checker_passes(out)
    decoder = onnx.load(out, load_external_data=False)
    encoder = onnx.load(companion)
    cfg = config(folder)
    kv_shape = ["batch", cfg["num_key_value_heads"], "num_slow_tokens", cfg["head_dim"]]
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in decoder.graph.input}
    for layer in LAYERS:
        for part in ("key", "value"):
            shape = inputs[f"past_key_values.{layer}.encoder.{part}"]
            assert shape[1:] == kv_shape[1:], shape
    assert "slow_tokens" not in inputs and not any("cross_attn_kv_proj" in t.name for t in decoder.graph.initializer)
    assert [i.name for i in encoder.graph.input] == ["slow_tokens"]
    assert [o.name for o in encoder.graph.output] == [f"present.{l}.encoder.{p}" for l in LAYERS for p in ("key", "value")]

    document = json.loads(out.with_name("model.weight-map.json").read_text())
    jsonschema.Draft202012Validator(json.loads((REPO / "Schemas/weight-map.schema.json").read_text())).validate(document)
    in_companion = {e["onnxName"]: e for e in document["entries"] if e.get("file") == companion.name}
    assert set(in_companion) == {t.name for t in encoder.graph.initializer}
    assert {e["onnxName"] for e in document["entries"] if "file" not in e} == {t.name for t in decoder.graph.initializer}
    for layer in LAYERS:
        kv = next(e for e in in_companion.values() if e["canonicalName"] == f"model.layers.{layer}.self_attn.cross_attn_kv_proj.weight")
        assert kv["kind"] == "derived" and kv["initRule"].startswith("concat(") and kv["transform"] == {"transpose": True}
    assert sum(1 for e in in_companion.values() if e["initRule"].startswith("copy of the decoder's")) == len(LAYERS)
    plan = run("plan", folder / "model.onnx", "--hybrid-layers", ",".join(map(str, LAYERS)), "--slow-kv", "inputs")
    assert plan.returncode == 0 and "companion model slow-kv-encoder" in plan.stdout and "present.4.encoder.value" in plan.stdout
    # The companion's norm copy is named as the decoder's norm is (Gemma: 1 + w, offset 1), so
    # the export names it once and every original weight comes out as PyTorch holds it.
    result = run("weights", "export", out, "-o", tmp_path / "ckpt", "--all")
    assert result.returncode == 0, result.stderr
    for layer in LAYERS:
        copies = [e for e in document["entries"] if e["canonicalName"] == f"model.layers.{layer}.input_layernorm.weight"]
        assert len(copies) == 2 and copies[0]["transform"] == copies[1]["transform"]

    again, result = rewrite(folder, tmp_path, name="again", slow_kv="inputs")
    assert result.returncode == 0, result.stderr
    for path in out.parent.iterdir():
        assert path.read_bytes() == (again.parent / path.name).read_bytes(), path.name


def slowfast_ops(model):
    return sorted({n.op_type for n in model.graph.node if n.name.startswith("/slowfast/layers.")
                   and n.op_type in ("Attention", "MultiHeadAttention", "Softmax")})


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_fused_cross_attention_equals_the_decomposed_form(folder, tmp_path):
    """auto picks Attention at opset 23 and MultiHeadAttention where com.microsoft is imported;
    every fused form the model allows gives the decomposed form's logits (1e-5 in float32),
    gates on, with padding and excluded positions."""
    opset = next(o.version for o in onnx.load(folder / "model.onnx", load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
    microsoft = any(o.domain == "com.microsoft" for o in onnx.load(folder / "model.onnx", load_external_data=False).opset_import)
    expected_auto = ["Attention"] if opset >= 23 else ["MultiHeadAttention"] if microsoft else ["Softmax"]
    forms = ["decomposed", "auto", "multi-head-attention"] + (["attention"] if opset >= 23 else [])
    if any(layer.get("attentionSoftcap") for layer in layout_of(folder)["layers"]):
        # Soft-capped scores (Gemma 2): the cap comes before the mask, which no fused op does;
        # auto writes the decomposed form and the fused forms are refused, nothing written.
        expected_auto = ["Softmax"]
        for form in forms[2:]:
            out, result = rewrite(folder, tmp_path, name=form, cross_attention=form)
            assert result.returncode != 0 and "caps its attention scores" in result.stderr, form
            assert len(result.stderr.strip().splitlines()) == 1 and list(out.parent.iterdir()) == []
        forms = forms[:2]
    cfg = config(folder)
    dtype = float_type(folder)
    slow = slow_tokens(cfg, dtype=dtype)
    mask = np.ones((1, N_SLOW), dtype)
    mask[0, 7:] = 0
    exclude = np.array([[[1, 3]]], np.int64)
    logits = {}
    for form in forms:
        out, result = rewrite(folder, tmp_path, name=form, cross_attention=form)
        assert result.returncode == 0, result.stderr
        assert checker_passes(folder / "model.onnx") == checker_passes(out), form
        model = onnx.load(out)
        assert slowfast_ops(model) == {"decomposed": ["Softmax"], "auto": expected_auto, "attention": ["Attention"],
                                       "multi-head-attention": ["MultiHeadAttention"]}[form], form
        for layer in LAYERS:
            gates_on(model, layer)
        logits[form] = ort_session(model).run(["logits"], {**graph_inputs(folder), **slow_feeds(out, slow, mask, exclude)})[0]
    limit = tolerance(folder, float32=1e-5, float16=1e-2)
    for form in forms[1:]:
        assert np.abs(logits[form].astype(np.float64) - logits["decomposed"]).max() <= limit, form
    original = original_outputs(folder)["logits"]
    assert np.abs(logits["decomposed"].astype(np.float64) - original).max() > 10 * limit * logit_scale(folder)


def test_attention_op_below_opset_23_is_refused(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-dynamo")
    out, result = rewrite(folder, tmp_path, cross_attention="attention")
    assert result.returncode != 0 and "--cross-attention attention needs default-domain opset 23" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(out.parent.iterdir()) == []


def test_slow_kv_inputs_is_refused_in_insert_mode(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    out, result = rewrite(folder, tmp_path, mode="insert", slow_kv="inputs")
    assert result.returncode != 0 and "--slow-kv inputs works with --mode in-place only" in result.stderr
    assert result.stderr.startswith(f"error: {folder / 'model.onnx'}: ") and len(result.stderr.strip().splitlines()) == 1
    assert list(out.parent.iterdir()) == []


def decode(session, cfg, feeds_extra, steps=3, with_slow=None, prompt_positions=None):
    """Prefill on the reference prompt, then `steps` greedy decode steps feeding present K/V back;
    `feeds_extra` (the slow inputs) is the same at every step; `prompt_positions`: the reference's
    position_ids, where the graph takes them."""
    prompt = np.array([[3, 17, 42, 99, 128, 7, 201]], np.int64)
    names = [i.name for i in session.get_inputs()]
    types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    past = {n: np.zeros((1, cfg["num_key_value_heads"], 0, cfg["head_dim"]), types[n]) for n in names
            if n.startswith("past_key_values") and ".encoder." not in n}
    ids, total = prompt, prompt.shape[1]
    all_logits = []
    outputs = [o.name for o in session.get_outputs()]
    for step in range(steps + 1):
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64), **past, **feeds_extra,
                 **position_feeds(names, prompt_positions, total, ids.shape[1])}
        if with_slow is not None:
            feeds["slow_tokens"] = with_slow
        values = dict(zip(outputs, session.run(outputs, feeds)))
        all_logits.append(values["logits"])
        past = {n: values[n.replace("past_key_values", "present")] for n in past}
        ids = values["logits"][:, -1:].argmax(-1).astype(np.int64)
        total += 1
    return all_logits, values


@pytest.mark.parametrize("folder", KV, ids=[f.name for f in KV])
def test_kv_cache_decode_steps(folder, tmp_path):
    out, result = rewrite(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = config(folder)
    slow = slow_tokens(cfg, dtype=float_type(folder))
    positions = graph_inputs(folder).get("position_ids")
    original, original_values = decode(ort_session(folder / "model.onnx"), cfg, {}, prompt_positions=positions)
    rewritten, rewritten_values = decode(ort_session(out), cfg, slow_feeds(out, slow), prompt_positions=positions)
    assert len(rewritten) == 4
    for a, b in zip(original, rewritten):
        assert np.abs(a - b).max() <= 1e-5
    # Every present K/V of the last step too: the cache the next step would read.
    presents = [name for name in original_values if name.startswith("present")]
    assert len(presents) == 2 * cfg["num_hidden_layers"]
    for name in presents:
        assert np.abs(original_values[name] - rewritten_values[name]).max() <= 1e-5, name

    # Gates on: in the last decode step, the new token's o_proj input follows the equations
    # with its query rotated at its true position: the prompt fills 0...6, the three decoded
    # tokens sit at 7, 8 and 9.
    layer = layout_of(folder)["layers"][GATED]
    model = onnx.load(out)
    gates = gates_on(model, GATED)
    mixed = o_proj_input(model, layer)
    for name in anchors(layer) + [mixed]:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort_session(float_compute(model))
    logits, values = decode(session, cfg, slow_feeds(out, slow), prompt_positions=positions)
    values["__path__"] = str(out)
    position = 9 if positions is None else int(positions.max()) + 3
    expected = reference_mix(model, layer, values, gates, slow, cfg, np.array([[position]]))
    assert np.abs(values[mixed] - expected).max() <= tolerance(folder)
    assert np.abs(logits[-1] - original[-1]).max() > 1e-4


def test_layer_out_of_range_is_refused(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-dynamo")
    out = tmp_path / "m.onnx"
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,6")
    assert result.returncode != 0 and "layer 6 does not exist: the model has 6 decoder layers" in result.stderr
    assert result.stderr.startswith(f"error: {folder / 'model.onnx'}: ")
    assert list(tmp_path.iterdir()) == []


def test_a_layer_the_adapter_cannot_describe_is_named(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    model = onnx.load(folder / "model.onnx")
    # Break layer 3's attention: its Softmax becomes a Sigmoid.
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax" and "layers.3/" in n.name)
    softmax.op_type = "Sigmoid"
    del softmax.attribute[:]
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    (tmp_path / "out").mkdir()
    result = run("rewrite", broken, "-o", tmp_path / "out/m.onnx", "--hybrid-layers", "0", "--adapter", "hf-torch-eager")
    assert result.returncode != 0
    assert "layer 3: its attention block does not match" in result.stderr and "Softmax" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def set_reference_gates(model, ref):
    """Copies the PyTorch reference's gate values into the rewritten model."""
    values = {}
    for layer in LAYERS:
        prefix = f"model.layers.{layer}.self_attn."
        values[prefix + "cross_attn_gate_proj.0.weight"] = ref[f"hybrid_gate_w_{layer}"].T  # stored [in, out]
        values[prefix + "cross_attn_gate_proj.0.bias"] = ref[f"hybrid_gate_b_{layer}"]
        values[prefix + "cross_attn_warm_up_gate"] = ref[f"hybrid_alpha_{layer}"]
    found = 0
    for tensor in model.graph.initializer:
        if tensor.name in values:
            dtype = numpy_helper.to_array(tensor).dtype
            tensor.CopyFrom(numpy_helper.from_array(values[tensor.name].astype(dtype), tensor.name))
            found += 1
    assert found == len(values)


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_gates_on_match_the_pytorch_hybrid_model(folder, tmp_path):
    """Whole-model check: logits of the rewritten export with the reference's gates equal
    those of a PyTorch implementation of docs/DESIGN.md §1 run at fixture time."""
    out, result = rewrite(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    ref = dict(np.load(folder / "reference.npz"))
    model = onnx.load(out)
    set_reference_gates(model, ref)
    feeds = {**graph_inputs(folder), **slow_feeds(out, ref["hybrid_slow_tokens"])}
    logits = ort_session(float_compute(model)).run(["logits"], feeds)[0].astype(np.float64)
    assert_equals_pytorch_hybrid(folder, ref, logits)
    assert np.abs(logits - ref["logits"]).max() > 10 * tolerance(folder) * logit_scale(folder)  # the gates change the output


def reference_steps(ref):
    """How many steps the PyTorch reference recorded: the prompt, then decode tokens 5, 9, 13."""
    return sum(1 for key in ref if key.startswith("hybrid_logits_step"))


def reference_decode(session, folder, slow_feeds_once, ref):
    """Prefill on the reference prompt, then the reference's decode tokens (5, 9, 13, as many
    as it recorded); logits of each step."""
    outputs = [o.name for o in session.get_outputs()]
    feeds = graph_inputs(folder)
    past = {k: v for k, v in feeds.items() if k.startswith("past_key_values")}
    ids, total = feeds["input_ids"], feeds["input_ids"].shape[1]
    inputs = [i.name for i in session.get_inputs()]
    steps = []
    for token in [None, 5, 9, 13][: reference_steps(ref)]:
        if token is not None:
            ids, total = np.array([[token]], np.int64), total + 1
        values = dict(zip(outputs, session.run(outputs, {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64),
                                                           **past, **slow_feeds_once,
                                                           **position_feeds(inputs, feeds.get("position_ids"), total, ids.shape[1])})))
        steps.append(values["logits"])
        past = {name: values[name.replace("past_key_values", "present")] for name in past}
    return steps


@pytest.mark.parametrize("folder", KV, ids=[f.name for f in KV])
def test_kv_cache_decode_steps_match_the_pytorch_hybrid_model(folder, tmp_path):
    """Every export with a KV cache (onnxruntime-genai and torch.onnx): prefill and two or three
    decode steps (as many as the reference recorded) with the reference's gates on, in both forms: the slow
    K/V computed inside the decoder at every step, and computed once by the companion model
    and fed as inputs. Each step equals the PyTorch reference (1e-4) and the two forms equal
    each other (1e-5); at default init each step of the inputs form equals the original (1e-5)."""
    ref = dict(np.load(folder / "reference.npz"))
    cfg = config(folder)
    assert cfg["num_hidden_layers"] == 6
    slow = ref["hybrid_slow_tokens"]
    steps = {}
    for form in ("inline", "inputs"):
        out, result = rewrite(folder, tmp_path, name=form, slow_kv=form)
        assert result.returncode == 0, result.stderr
        assert companion_of(out).exists() == (form == "inputs")
        feeds = slow_feeds(out, slow)  # computed once, fed unchanged at every step
        if form == "inputs":
            assert "slow_tokens" not in feeds and len([n for n in feeds if ".encoder." in n]) == 2 * len(LAYERS)
            assert "slow_tokens" not in {i.name for i in ort_session(out).get_inputs()}
            default = reference_decode(ort_session(out), folder, feeds, ref)
            original = reference_decode(ort_session(folder / "model.onnx"), folder, {}, ref)
            for step, (a, b) in enumerate(zip(default, original)):
                assert np.abs(a - b).max() <= 1e-5, f"default init, step {step}"
        model = onnx.load(out)
        set_reference_gates(model, ref)
        steps[form] = reference_decode(ort_session(float_compute(model)), folder, feeds, ref)
        for step, logits in enumerate(steps[form]):
            assert_equals_pytorch_hybrid(folder, ref, logits, step)  # 1e-4 in float32
    assert len(steps["inputs"]) == reference_steps(ref) >= 3
    # float16: the inputs form takes K/V rounded to float16 (the companion's outputs, in the
    # model's type), the inline form keeps them in float32.
    for step, (a, b) in enumerate(zip(steps["inline"], steps["inputs"])):
        assert np.abs(a.astype(np.float64) - b).max() <= tolerance(folder, float32=1e-5), f"inline vs inputs, step {step}"
    # The gates really change every step (so the comparisons above can fail).
    for step, (gated, plain) in enumerate(zip(steps["inputs"], original)):
        assert np.abs(gated - plain).max() > 1e-3, f"step {step}"
