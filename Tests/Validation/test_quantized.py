"""Quantized deployments (the int4 and int8 fixtures of Scripts/make-fixtures.py): projections
found in every storage onnxruntime's tools write, kv_proj kept in the model's own form where it
joins exactly, dequantized weights exported exactly, and unsupported forms refused by name.
The function-preservation, gates-on and decode-step checks run on these fixtures in
test_hybrid_fixtures.py like on every other."""
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from safetensors.numpy import load_file

from conftest import REPO, debug_binary, run
from fixtures import FIXTURES, config, reference

QUANTIZED = [f for f in FIXTURES if f.name.endswith(("-int4", "-int8", "-qdq"))]
INT4 = [f for f in QUANTIZED if f.name.endswith("-int4")]
LAYERS = [0, 2, 4]
REPO_STATE_DICTS = REPO / "Tests/Fixtures/state-dicts"

# What each fixture's projections are stored as (inspect --layers --json `storage`).
EXPECTED_STORAGE = {"-int4": ("blockwise", None), "-int8": ("linear", "matMulInteger"), "-qdq": ("linear", "dequantizeLinear")}


def expected_storage(folder):
    return next(kind for suffix, kind in EXPECTED_STORAGE.items() if folder.name.endswith(suffix))


def layout(path):
    result = run("inspect", path, "--layers", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["layout"]


def rewrite(folder, out, *extra):
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", ",".join(map(str, LAYERS)),
                 "--weights", "copy", *extra)
    assert result.returncode == 0, result.stderr
    return result


def initializers(path):
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, model


def test_there_are_quantized_fixtures():
    """The fixtures this file reads exist in each storage (a rename must not empty it)."""
    suffixes = {suffix for suffix in EXPECTED_STORAGE for f in QUANTIZED if f.name.endswith(suffix)}
    assert suffixes == set(EXPECTED_STORAGE), suffixes
    assert len(INT4) >= 2


@pytest.mark.parametrize("folder", QUANTIZED, ids=[f.name for f in QUANTIZED])
def test_every_layer_is_found_with_its_storage(folder):
    cfg = config(folder)
    found = layout(folder / "model.onnx")
    dims = found["dimensions"]
    assert dims["numLayers"] == cfg["num_hidden_layers"]
    assert dims["hiddenSize"] == cfg["hidden_size"]
    assert dims["numHeads"] == cfg["num_attention_heads"]
    assert dims["numKVHeads"] == cfg["num_key_value_heads"]
    assert dims["headDim"] == cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    assert dims["intermediateSize"] == cfg["intermediate_size"]
    kind, form = expected_storage(folder)
    for layer in found["layers"]:
        for role in ("q", "k", "v", "o"):
            storage = layer[role]["storage"]
            assert list(storage) == [kind], (layer["index"], role, storage)
            if form:
                assert storage[kind]["form"] == form


@pytest.mark.parametrize("folder", INT4, ids=[f.name for f in INT4])
def test_int4_kv_proj_is_the_models_own_rows(folder, tmp_path):
    """kv_proj stays MatMulNBits: its codes, scales and zero points are k_proj's rows then
    v_proj's, byte for byte, so the output grows by those bytes and the small new parameters
    (gate projection, warm-up gate, kv bias) alone."""
    out = tmp_path / "out" / "model.onnx"
    rewrite(folder, out)
    plan = run("plan", folder / "model.onnx", "--hybrid-layers", ",".join(map(str, LAYERS)))
    assert plan.stdout.count("cross_attn_kv_proj stored as MatMulNBits int4") == len(LAYERS), plan.stdout
    before, _ = initializers(folder / "model.onnx")
    after, model = initializers(out)
    found = layout(folder / "model.onnx")
    cfg = config(folder)
    kv_width = cfg["num_key_value_heads"] * cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    for index in LAYERS:
        layer = found["layers"][index]
        name = f"model.layers.{index}.self_attn.cross_attn_kv_proj.weight"
        nodes = [n for n in model.graph.node if name in n.input]
        assert [n.op_type for n in nodes] == ["MatMulNBits"]
        node = nodes[0]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["N"] == 2 * kv_width and attributes["K"] == cfg["hidden_size"]

        def rows(role, stored):
            projection = layer[role]
            start = projection.get("outputStart", 0)
            count = projection.get("outputCount", stored.shape[0] - start)
            return stored.reshape(-1, *stored.shape[1:])[start:start + count] if stored.ndim > 1 else stored[start:start + count]

        for slot, key in ((1, "weight"), (2, "scales")):
            joined = after[node.input[slot]]
            parts = []
            for role in ("k", "v"):
                q = layer[role]["storage"]["blockwise"]
                stored = before[q[key]]
                per_row = stored.reshape(q["outFeatures"], -1)
                parts.append(rows(role, per_row))
            assert np.array_equal(joined.reshape(2 * kv_width, -1), np.concatenate(parts)), (index, key)
    weight_map = json.loads(out.with_name("model.weight-map.json").read_text())
    created = {e["onnxName"]: e for e in weight_map["entries"] if e["kind"] != "kept"}
    grown = sum(a.nbytes for n, a in after.items() if n not in before)
    assert grown == sum(after[n].nbytes for n in created)
    quantized_kv = sum(after[n].nbytes for n, e in created.items() if ".cross_attn_kv_proj.weight" in e["canonicalName"])
    small = grown - quantized_kv
    d = cfg["hidden_size"]
    heads_width = cfg["num_attention_heads"] * cfg.get("head_dim", d // cfg["num_attention_heads"])
    # per layer: gate [H*hd, 1] + bias [1] + alpha [1] + kv bias [2*kv] in float32
    assert small == len(LAYERS) * 4 * (heads_width + 2 + 2 * kv_width)
    # The quantized kv_proj is the k and v storage, not float: a quarter of float32 at most.
    assert quantized_kv < len(LAYERS) * 2 * kv_width * d * 4 / 4


@pytest.mark.parametrize("folder", QUANTIZED, ids=[f.name for f in QUANTIZED])
def test_weights_export_is_the_dequantized_tensors(folder, tmp_path):
    """`weights export --all` of the quantized model: every quantized weight as the float
    values the model computes with, (code - zero point) * scale, equal to a NumPy
    dequantization of the stored tensors bit for bit; scales and zero points are not exported."""
    ref = reference(folder)
    dequantized = {key[len("dequant/"):]: value for key, value in ref.items() if key.startswith("dequant/")}
    assert dequantized, "the fixture records its dequantized weights"
    result = run("weights", "export", folder / "model.onnx", "-o", tmp_path / "ckpt", "--all")
    assert result.returncode == 0, result.stderr
    exported = {}
    for file in sorted((tmp_path / "ckpt").glob("*.safetensors")):
        exported.update(load_file(file))
    found = layout(folder / "model.onnx")
    by_weight = {}
    for layer in found["layers"]:
        for role, prefix in (("q", "self_attn"), ("k", "self_attn"), ("v", "self_attn"), ("o", "self_attn")):
            by_weight.setdefault(layer[role]["weight"], []).append((f"model.layers.{layer['index']}.{prefix}.{role}_proj.weight",
                                                                     layer[role]))
    checked = 0
    for onnx_name, parts in by_weight.items():
        if onnx_name not in dequantized:
            continue
        full = dequantized[onnx_name].T  # [out, in]
        for canonical, projection in parts:
            start = projection.get("outputStart", 0)
            count = projection.get("outputCount", full.shape[0] - start)
            assert canonical in exported, canonical
            assert exported[canonical].dtype == np.float32
            assert np.array_equal(exported[canonical], full[start:start + count]), canonical
            checked += 1
    assert checked >= 4 * config(folder)["num_hidden_layers"]
    for name, value in exported.items():
        assert value.dtype != np.uint8, f"{name}: a stored code or zero point was exported"


def quantized_node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def test_unsupported_quantized_forms_are_refused_by_name(tmp_path):
    """A MatMulNBits with a g_idx input, or with 2-bit codes, is refused in one line naming the
    node, the op and what is not supported; nothing is written."""
    folder = INT4[0]
    for case in ("g_idx", "bits"):
        model = onnx.load(str(folder / "model.onnx"))
        node = next(n for n in model.graph.node if n.op_type == "MatMulNBits" and "o_proj" in n.name)
        if case == "g_idx":
            k = next(a.i for a in node.attribute if a.name == "K")
            model.graph.initializer.append(numpy_helper.from_array(np.arange(k, dtype=np.int32) // 32, "g_idx_forged"))
            while len(node.input) < 4:
                node.input.append("")
            node.input.insert(4, "g_idx_forged")
            del node.input[5:]
        else:
            next(a for a in node.attribute if a.name == "bits").i = 2
        path = tmp_path / case / "model.onnx"
        path.parent.mkdir()
        onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data")
        out = tmp_path / f"{case}-out" / "model.onnx"
        out.parent.mkdir()
        result = run("rewrite", path, "-o", out, "--every", "2", "--adapter", "ort-genai-gqa" if "genai" in folder.name else "auto")
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stderr
        assert node.name in lines[0] and "MatMulNBits" in lines[0]
        assert ("g_idx" if case == "g_idx" else "bits = 2") in lines[0], lines[0]
        assert list(out.parent.iterdir()) == []


def requantize_reference(values, scales, zeros, low, high):
    """NumPy of the import's rounding for one scale group: `values` (float32) with `scales`
    and `zeros` per value; a group whose codes leave [low, high] widens to the smallest scale
    that holds it. Returns the dequantized values and the scale used."""
    codes = np.round(values / scales)  # ties to even, float32 division
    if ((codes + zeros < low) | (codes + zeros > high)).any():
        # A negative scale (onnxruntime's symmetric quantizer) holds u = value * sign(scale).
        sign = np.float32(-1 if scales < 0 else 1)
        u = values * sign
        needed = np.maximum(np.where(u > 0, u / np.float32(high - zeros), 0),
                            np.where(u < 0, u / np.float32(low - zeros), 0)).max().astype(np.float32)
        scales = sign * np.maximum(np.abs(scales), needed)
        codes = np.round(values / scales)
    codes = np.clip(codes + zeros, low, high)
    return ((codes - zeros) * scales).astype(np.float32), scales


def blockwise_groups(storage, inits):
    """Per output row and block: the scale and zero point of a MatMulNBits storage record."""
    q = storage["blockwise"]
    blocks = -(-q["inFeatures"] // q["blockSize"])
    scales = inits[q["scales"]].astype(np.float32).reshape(q["outFeatures"], blocks)
    zeros = np.full_like(scales, 2 ** (q["bits"] - 1))
    if "zeroPoints" in q:
        packed = inits[q["zeroPoints"]].reshape(q["outFeatures"], -1)
        nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(q["outFeatures"], -1) if q["bits"] == 4 else packed
        zeros = nibbles[:, :blocks].astype(np.float32)
    return q, scales, zeros


# Phi-3's state dict packs qkv_proj and gate_up_proj, which the genai export stores apart.
UNPACKED_INT4 = [f for f in INT4 if not f.name.startswith("phi3")]


@pytest.mark.parametrize("folder", UNPACKED_INT4, ids=[f.name for f in UNPACKED_INT4])
def test_a_float_checkpoint_imports_within_half_a_step(folder, tmp_path):
    """Importing the float weights the model was quantized from: each value rounds to the
    nearest code of the model's own scales (half a step at most); where a block's codes cannot
    reach a value (onnxruntime's symmetric int4 maps the largest magnitude to -8, so +max would
    need code 8) the import is refused naming the tensor, unless --requantize widens that
    block's scale. The reported max and mean errors are the NumPy computation's."""
    meta = json.loads((folder / "meta.json").read_text())
    source = REPO_STATE_DICTS / f"{meta['family']}-seed{meta['seed']}.safetensors"
    out = tmp_path / "plain" / "model.onnx"
    out.parent.mkdir()
    refused = run("weights", "import", folder / "model.onnx", "--from", source, "-o", out)
    assert refused.returncode != 0
    lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--requantize" in lines[0] and "is outside" in lines[0], refused.stderr
    assert list(out.parent.iterdir()) == []

    out = tmp_path / "widened" / "model.onnx"
    out.parent.mkdir()
    result = run("weights", "import", folder / "model.onnx", "--from", source, "-o", out, "--requantize")
    assert result.returncode == 0, result.stderr
    reported = {}
    for line in result.stdout.splitlines():
        if line.startswith("  quantized "):
            name, rest = line[len("  quantized "):].split(": max abs error ")
            maximum, mean = rest.split(", mean ")
            reported[name] = (float(maximum), float(mean.split(";")[0]))
    state = load_file(str(source))
    before, _ = initializers(folder / "model.onnx")
    after, _ = initializers(out)
    exported_dir = tmp_path / "ckpt"
    assert run("weights", "export", out, "-o", exported_dir, "--all").returncode == 0
    exported = load_file(str(exported_dir / "model.safetensors"))
    checked = 0
    for layer in layout(folder / "model.onnx")["layers"][:2]:
        for role in ("k", "o"):
            projection = layer[role]
            q, scales, zeros = blockwise_groups(projection["storage"], before)
            canonical = f"model.layers.{layer['index']}.self_attn.{role}_proj.weight"
            start = projection.get("outputStart", 0)
            values = state[canonical].astype(np.float32)  # [out, in]
            rows = range(start, start + values.shape[0])
            expected = np.zeros_like(values)
            widened_scales = scales.copy()
            for row_index, row in enumerate(rows):
                for block in range(scales.shape[1]):
                    columns = slice(block * q["blockSize"], (block + 1) * q["blockSize"])
                    expected[row_index, columns], widened_scales[row, block] = requantize_reference(
                        values[row_index, columns], scales[row, block], zeros[row, block], 0, 2 ** q["bits"] - 1)
            # Within half a step of the scale used, and exactly the NumPy rounding.
            step = np.repeat(widened_scales[list(rows)], q["blockSize"], axis=1)[:, :values.shape[1]]
            assert (np.abs(exported[canonical] - values) <= np.abs(step) / 2 + 1e-7).all(), canonical
            assert np.array_equal(exported[canonical], expected), canonical
            errors = np.abs(expected - values)
            key = next(k for k in reported if canonical in k.split(", "))
            if key == canonical:
                assert reported[key][0] == pytest.approx(float(errors.max()), rel=1e-6)
                assert reported[key][1] == pytest.approx(float(errors.mean()), rel=1e-6)
            checked += 1
    assert checked == 4
    assert any("scales widened" in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("folder", INT4, ids=[f.name for f in INT4])
def test_cost_counts_weights_at_their_stored_width(folder):
    """`cost MODEL` of a quantized model: the weights' memory is the bytes the model stores
    (codes, scales, float embeddings), not parameters x bytes per element."""
    result = run("cost", folder / "model.onnx", "--frames", "16", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stored = sum(a.nbytes for a in initializers(folder / "model.onnx")[0].values())
    weights = report["rows"][0]["baseline"]["memory"]["weights"]
    assert weights == pytest.approx(stored, rel=1e-9)
    assert weights < report["parameters"] * report["model"]["bytesPerElement"]


def test_new_weights_float_writes_kv_proj_in_float(tmp_path):
    """--new-weights float: kv_proj of an int4 model is a float MatMul whose weight is the
    dequantized k and v rows, and the plan says why; the default keeps MatMulNBits."""
    folder = next(f for f in INT4 if f.name == "qwen2-torchscript-kv-int4")
    out = tmp_path / "out" / "model.onnx"
    rewrite(folder, out, "--new-weights", "float")
    after, model = initializers(out)
    ref = reference(folder)
    found = layout(folder / "model.onnx")
    for index in LAYERS:
        name = f"model.layers.{index}.self_attn.cross_attn_kv_proj.weight"
        assert after[name].dtype == np.float32
        readers = [n.op_type for n in model.graph.node if name in n.input]
        assert readers in (["MatMul"], ["Cast"]), readers
        layer = found["layers"][index]
        expected = np.concatenate([ref["dequant/" + layer[r]["weight"]] for r in ("k", "v")], axis=1)  # [in, 2 kv]
        assert np.array_equal(after[name], expected), index
    plan = run("plan", folder / "model.onnx", "--hybrid-layers", "0", "--new-weights", "float")
    assert "cross_attn_kv_proj stored in float from the dequantized k_proj and v_proj (--new-weights float)" in plan.stdout, plan.stdout


def test_qdq_per_column_kv_proj_is_the_models_own_columns(tmp_path):
    """QDQ with one scale per output column: kv_proj is DequantizeLinear of k_proj's and
    v_proj's int8 columns side by side with their scales and zero points (no requantization),
    and it exports as concat(k_proj, v_proj) of the dequantized values, bit for bit. The
    dynamic int8 export's per-tensor scales differ between k and v: its kv_proj is float."""
    folder = next(f for f in QUANTIZED if f.name.endswith("-qdq"))
    out = tmp_path / "out" / "model.onnx"
    rewrite(folder, out)
    before, _ = initializers(folder / "model.onnx")
    after, model = initializers(out)
    found = layout(folder / "model.onnx")
    for index in LAYERS:
        layer = found["layers"][index]
        name = f"model.layers.{index}.self_attn.cross_attn_kv_proj.weight"
        readers = [n for n in model.graph.node if name in n.input]
        assert [n.op_type for n in readers] == ["DequantizeLinear"]
        k, v = (layer[r]["storage"]["linear"] for r in ("k", "v"))
        assert after[name].dtype == np.int8
        assert np.array_equal(after[name], np.concatenate([before[k["weight"]], before[v["weight"]]], axis=1))
        assert np.array_equal(after[readers[0].input[1]], np.concatenate([before[k["scale"]], before[v["scale"]]]))
        assert np.array_equal(after[readers[0].input[2]], np.concatenate([before[k["zeroPoint"]], before[v["zeroPoint"]]]))
    result = run("weights", "export", out, "-o", tmp_path / "ckpt")
    assert result.returncode == 0, result.stderr
    exported = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    ref = reference(folder)
    for index in LAYERS:
        layer = found["layers"][index]
        expected = np.concatenate([ref["dequant/" + layer[r]["weight"]].T for r in ("k", "v")])
        assert np.array_equal(exported[f"model.layers.{index}.self_attn.cross_attn_kv_proj.weight"], expected)
    int8 = next(f for f in QUANTIZED if f.name.endswith("-int8"))
    plan = run("plan", int8 / "model.onnx", "--hybrid-layers", "0")
    assert "cross_attn_kv_proj stored in float from the dequantized k_proj and v_proj" in plan.stdout, plan.stdout


@pytest.mark.parametrize("field,value", [("bits", 3), ("blockSize", 24), ("inFeatures", 2 ** 40), ("outFeatures", 0)])
def test_a_forged_quantization_record_is_refused(field, value, tmp_path):
    """A weight map read back is untrusted: a quantization record whose numbers are out of
    bounds (a bit width, block size or width no stored array can have) is refused with one
    error line naming the map, never trusted into arithmetic; nothing is written."""
    folder = next(f for f in INT4 if f.name == "qwen2-torchscript-kv-int4")
    out = tmp_path / "out" / "model.onnx"
    rewrite(folder, out)
    path = out.with_name("model.weight-map.json")
    weight_map = json.loads(path.read_text())
    forged = 0
    for entry in weight_map["entries"]:
        quantization = entry["transform"].get("quantization")
        if quantization and "blockwise" in quantization:
            quantization["blockwise"][field] = value
            forged += 1
    assert forged > 0
    path.write_text(json.dumps(weight_map))
    result = run("weights", "export", out, "-o", tmp_path / "ckpt", "--all")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "weight-map.json" in lines[0] and "quantization" in lines[0], result.stderr
    assert not (tmp_path / "ckpt").exists()


def import_twice(model, source, tmp_path, *extra):
    """Imports `source` into `model` with every new code held until the write and with none
    held (each rounded again as it is written: the debug build's test budget of 0 bytes);
    returns both output folders."""
    outs = []
    for budget in (None, "0"):
        out = tmp_path / f"held-{budget or 'all'}" / "model.onnx"
        out.parent.mkdir()
        env = dict(os.environ)
        if budget is not None:
            env["SLOWFAST_TEST_HELD_CODES_BYTES"] = budget
        result = subprocess.run([str(debug_binary()), "weights", "import", str(model), "--from", str(source), "-o", str(out), *extra],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        outs.append((out.parent, result.stdout))
    return outs


@pytest.mark.parametrize("folder", QUANTIZED, ids=[f.name for f in QUANTIZED])
def test_codes_rounded_again_at_write_are_the_codes_held(folder, tmp_path):
    """An import keeps new quantized codes in memory up to a budget and rounds the rest again
    as each is written: both give the same files byte for byte, and the same report."""
    exported = tmp_path / "ckpt"
    assert run("weights", "export", folder / "model.onnx", "-o", exported, "--all").returncode == 0
    sources = [(exported, ())]
    if folder in UNPACKED_INT4:  # the float weights it was quantized from: scales widen
        meta = json.loads((folder / "meta.json").read_text())
        sources.append((REPO_STATE_DICTS / f"{meta['family']}-seed{meta['seed']}.safetensors", ("--requantize",)))
    for index, (source, extra) in enumerate(sources):
        (tmp_path / str(index)).mkdir()
        (held, held_report), (remade, remade_report) = import_twice(folder / "model.onnx", source, tmp_path / str(index), *extra)
        assert sorted(p.name for p in held.iterdir()) == sorted(p.name for p in remade.iterdir())
        for path in held.iterdir():
            assert path.read_bytes() == (remade / path.name).read_bytes(), path.name
        assert held_report.replace(str(held), "") == remade_report.replace(str(remade), "")
        assert "quantized" in held_report
