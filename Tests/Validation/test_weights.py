"""Trained weights in and out (`slowfast weights export/import`, `rewrite --weights-from`):
exports equal the PyTorch state_dict of each fixture's source model; export then import gives
byte-identical initializers; a checkpoint written by the Python `safetensors` package with the
hybrid layers' parameters makes the rewritten model compute what the PyTorch hybrid model
computes; malformed checkpoints are refused with one line and nothing written."""
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

from conftest import REPO, ort_session, run, slow_inputs_off
from fixtures import FIXTURES, NAMES, assert_equals_pytorch_hybrid, config, float_compute, graph_inputs

STATE_DICTS = REPO / "Tests/Fixtures/state-dicts"
LAYERS = (0, 2, 4)


def source_state_dict(folder):
    meta = json.loads((folder / "meta.json").read_text())
    state = load_file(str(STATE_DICTS / f"{meta['family']}-seed{meta['seed']}.safetensors"))
    if meta["exporter"] == "genai" and meta["family"] == "phi3":
        state = split_packed(state, config(folder))
    if "quantization" in meta:
        state = {**state, **dequantized_state_dict(folder)}
    return {k: v.astype(np.float16) for k, v in state.items()} if folder.name.endswith("fp16") else state


def dequantized_state_dict(folder):
    """A quantized fixture's weights as the values its model computes with: each quantized
    weight's dequantized [in, out] values (reference.npz `dequant/<initializer>`, a NumPy
    dequantization of the stored tensors) in PyTorch layout, split into the parts the layout
    names. These, not the float weights the model was quantized from, are its state dict."""
    ref = dict(np.load(folder / "reference.npz"))
    result = run("inspect", folder / "model.onnx", "--layers", "--json")
    assert result.returncode == 0, result.stderr
    state = {}
    for parameter in json.loads(result.stdout)["layout"]["parameters"]:
        transform = parameter["transform"]
        if "quantization" not in transform:
            continue
        full = ref["dequant/" + parameter["onnxName"]].T  # [out, in]
        start = 0
        for part in transform.get("parts") or [{"name": parameter["canonicalName"], "rows": full.shape[0]}]:
            state[part["name"]] = np.ascontiguousarray(full[start:start + part["rows"]])
            start += part["rows"]
    assert state, "the layout names the quantized weights"
    return state


def split_packed(state, cfg):
    """Phi-3's state dict as onnxruntime-genai's builder writes it: gate_up_proj as two MatMuls
    (gate_proj, up_proj) and qkv_proj as one that GroupQueryAttention reads whole. Nothing in
    that graph says the source packed them, so discovery names the row blocks as the projections
    they are (q_proj, k_proj, v_proj): the same values under the names of their parts."""
    q_width, kv_width = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    result = {}
    for name, value in state.items():
        if name.endswith("qkv_proj.weight"):
            prefix = name[: -len("qkv_proj.weight")]
            bounds = {"q": (0, q_width), "k": (q_width, q_width + kv_width), "v": (q_width + kv_width, q_width + 2 * kv_width)}
            result.update({f"{prefix}{role}_proj.weight": np.ascontiguousarray(value[a:b]) for role, (a, b) in bounds.items()})
        elif name.endswith("gate_up_proj.weight"):
            prefix, half = name[: -len("gate_up_proj.weight")], value.shape[0] // 2
            result[prefix + "gate_proj.weight"] = np.ascontiguousarray(value[:half])
            result[prefix + "up_proj.weight"] = np.ascontiguousarray(value[half:])
        else:
            result[name] = value
    return result


def exported(folder):
    files = sorted(folder.glob("*.safetensors"))
    values = {}
    for path in files:
        values.update(load_file(str(path)))
    return values


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_export_all_equals_the_pytorch_state_dict(folder, tmp_path):
    result = run("weights", "export", folder / "model.onnx", "-o", tmp_path / "ckpt", "--all")
    assert result.returncode == 0, result.stderr
    got, want = exported(tmp_path / "ckpt"), source_state_dict(folder)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        if got[name].dtype != value.dtype:
            # TorchScript's float16 sdpa export stores o_proj in float32 (its upcast folded into
            # the weight): the export writes what the model stores, the float16 values widened.
            assert (got[name].dtype, value.dtype) == (np.float32, np.float16), name
            assert np.array_equal(got[name], value.astype(np.float32)), name
            continue
        assert np.array_equal(got[name].view(np.uint8), value.view(np.uint8)), name  # bit for bit


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_export_then_import_into_a_fresh_rewrite_is_byte_identical(folder, tmp_path):
    genai = "genai" in folder.name
    first, fresh = tmp_path / "first/model.onnx", tmp_path / "fresh/model.onnx"
    for path, seed in ((first, "7"), (fresh, "0")):
        path.parent.mkdir()
        result = run("rewrite", folder / "model.onnx", "-o", path, "--hybrid-layers", "1,4", "--seed", seed,
                     *([] if genai else ["--mode", "insert"]))
        assert result.returncode == 0, result.stderr
    result = run("weights", "export", first, "-o", tmp_path / "ckpt", "--all", "--max-shard-size", "200KB")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ckpt/model.safetensors.index.json").exists()
    out = tmp_path / "imported/model.onnx"
    out.parent.mkdir()
    before = snapshot(tmp_path / "fresh")
    result = run("weights", "import", fresh, "--from", tmp_path / "ckpt", "-o", out, "--strict")
    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path / "fresh") == before
    a, b = initializers(first), initializers(out)
    assert sorted(a) == sorted(b)
    differ = [n for n in a if a[n].tobytes() != b[n].tobytes()]
    assert differ == []
    # The fresh rewrite really was different before the import (other seed).
    assert any(a[n].tobytes() != v.tobytes() for n, v in initializers(fresh).items())
    dtype = np.float16 if folder.name.endswith("fp16") else np.float32
    feeds = {**graph_inputs(folder), "slow_tokens": np.random.default_rng(0).standard_normal((1, 5, 64)).astype(dtype),
             **slow_inputs_off(1, 5, dtype)}
    outputs_a = ort_session(str(first)).run(None, feeds)
    outputs_b = ort_session(str(out)).run(None, feeds)
    for x, y in zip(outputs_a, outputs_b):
        assert np.array_equal(x, y)


def hybrid_checkpoint(folder, dtype):
    """The reference's hybrid-layer parameters in PyTorch layout, as the Python package writes them."""
    ref = dict(np.load(folder / "reference.npz"))
    state = source_state_dict(folder)
    tensors = {}
    for layer in LAYERS:
        prefix = f"model.layers.{layer}.self_attn."
        tensors[prefix + "cross_attn_gate_proj.0.weight"] = ref[f"hybrid_gate_w_{layer}"]          # [1, H*hd]
        tensors[prefix + "cross_attn_gate_proj.0.bias"] = ref[f"hybrid_gate_b_{layer}"]
        tensors[prefix + "cross_attn_warm_up_gate"] = ref[f"hybrid_alpha_{layer}"]
        grouped = f"model.layers.{layer}.attention.wqkv.weight"
        if grouped in state:  # InternLM2: per kv head, its query heads, key, value
            cfg = config(folder)
            groups, head_dim = cfg["num_attention_heads"] // cfg["num_key_value_heads"], cfg["head_dim"]
            rows = state[grouped].reshape(cfg["num_key_value_heads"], groups + 2, head_dim, -1)
            tensors[prefix + "cross_attn_kv_proj.weight"] = np.concatenate([rows[:, -2].reshape(-1, rows.shape[-1]),
                                                                             rows[:, -1].reshape(-1, rows.shape[-1])])
        elif prefix + "qkv_proj.weight" in state:  # Phi-3: k and v are the row blocks after q's
            qkv, kv_width = state[prefix + "qkv_proj.weight"], config(folder)["num_key_value_heads"] * config(folder)["head_dim"]
            tensors[prefix + "cross_attn_kv_proj.weight"] = qkv[qkv.shape[0] - 2 * kv_width:]
        else:
            tensors[prefix + "cross_attn_kv_proj.weight"] = np.concatenate([state[prefix + "k_proj.weight"], state[prefix + "v_proj.weight"]])
        tensors[prefix + "cross_attn_kv_proj.bias"] = np.concatenate([state[prefix + "k_proj.bias"], state[prefix + "v_proj.bias"]]) \
            if prefix + "k_proj.bias" in state else np.zeros(64, np.float32)
    return {k: np.ascontiguousarray(v.astype(dtype)) for k, v in tensors.items()}


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_a_python_checkpoint_gives_the_pytorch_hybrid_model(folder, tmp_path):
    ref = dict(np.load(folder / "reference.npz"))
    fp16 = folder.name.endswith("fp16")
    ckpt = tmp_path / "hybrid.safetensors"
    save_file(hybrid_checkpoint(folder, np.float16 if fp16 else np.float32), str(ckpt))
    out = tmp_path / "out/model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4", "--weights-from", ckpt)
    assert result.returncode == 0, result.stderr
    assert "filled 15 parameters" in result.stdout
    slow = ref["hybrid_slow_tokens"]
    feeds = {**graph_inputs(folder), "slow_tokens": slow, **slow_inputs_off(1, slow.shape[1], slow.dtype)}
    logits = ort_session(float_compute(out)).run(["logits"], feeds)[0].astype(np.float64)
    assert_equals_pytorch_hybrid(folder, ref, logits)
    weight_map = json.loads(out.with_suffix(".weight-map.json").read_text())
    rules = {e["canonicalName"]: e.get("initRule") for e in weight_map["entries"]}
    assert rules["model.layers.2.self_attn.cross_attn_warm_up_gate"] == "imported from hybrid.safetensors"


def test_a_bfloat16_checkpoint_is_converted_on_import(tmp_path):
    """bf16 values import exactly (widening is exact): the model equals, bit for bit, the one
    imported from a float32 checkpoint holding the same rounded values, and its logits equal
    those of the PyTorch hybrid model loaded with the same bf16 values."""
    import ml_dtypes
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    ref = dict(np.load(folder / "reference.npz"))
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in hybrid_checkpoint(folder, np.float32).items()}
    save_file(bf16, str(tmp_path / "bf16.safetensors"))
    save_file({k: v.astype(np.float32) for k, v in bf16.items()}, str(tmp_path / "rounded.safetensors"))
    logits = {}
    for name in ("bf16", "rounded"):
        out = tmp_path / name / "model.onnx"
        out.parent.mkdir()
        result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4",
                     "--weights-from", tmp_path / f"{name}.safetensors")
        assert result.returncode == 0, result.stderr
        slow = ref["hybrid_slow_tokens"]
        feeds = {**graph_inputs(folder), "slow_tokens": slow, **slow_inputs_off(1, slow.shape[1], slow.dtype)}
        logits[name] = ort_session(str(out)).run(["logits"], feeds)[0]
    a, b = initializers(tmp_path / "bf16/model.onnx"), initializers(tmp_path / "rounded/model.onnx")
    assert all(a[n].tobytes() == b[n].tobytes() for n in a)
    assert np.array_equal(logits["bf16"], logits["rounded"])
    # PyTorch's hybrid model with the same bf16 values (Scripts/make-state-dicts.py).
    torch_bf16 = np.load(STATE_DICTS / "qwen2-seed10-hybrid-bf16.npz")["logits"]
    assert np.abs(logits["bf16"].astype(np.float64) - torch_bf16).max() <= 1e-4
    assert np.abs(torch_bf16 - ref["hybrid_logits_step0"]).max() > 1e-3  # the rounding matters


def test_the_slow_kv_encoder_is_filled_and_exported_too(tmp_path):
    """With --slow-kv inputs, cross_attn_kv_proj lives in the companion model: an import fills
    it there, and an export reads it from there (the input norm it copies is exported once)."""
    folder = next(f for f in FIXTURES if f.name == "qwen2-genai")
    ckpt = tmp_path / "c.safetensors"
    tensors = hybrid_checkpoint(folder, np.float32)
    tensors = {k: (v * 1.5 if "kv_proj" in k else v) for k, v in tensors.items()}
    save_file(tensors, str(ckpt))
    out = tmp_path / "out/model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4", "--slow-kv", "inputs",
                 "--weights-from", ckpt)
    assert result.returncode == 0, result.stderr
    encoder = initializers(out.parent / "model.slow-kv-encoder.onnx")
    weight = tensors["model.layers.2.self_attn.cross_attn_kv_proj.weight"]
    assert np.array_equal(encoder["model.layers.2.self_attn.cross_attn_kv_proj.weight"], weight.T)
    result = run("weights", "export", out, "-o", tmp_path / "ckpt")
    assert result.returncode == 0, result.stderr
    got = exported(tmp_path / "ckpt")
    assert np.array_equal(got["model.layers.2.self_attn.cross_attn_kv_proj.weight"], weight)
    result = run("weights", "export", out, "-o", tmp_path / "all", "--all")
    assert result.returncode == 0, result.stderr
    assert sorted(exported(tmp_path / "all")) == sorted(set(source_state_dict(folder)) | set(tensors))


def test_strict_and_the_report(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    ckpt = tmp_path / "c.safetensors"
    tensors = hybrid_checkpoint(folder, np.float32)
    tensors["not.a.parameter"] = np.zeros(3, np.float32)
    save_file(tensors, str(ckpt))
    out = tmp_path / "out/model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4", "--weights-from", ckpt)
    assert result.returncode == 0, result.stderr
    assert "filled 15 parameters; 75 missing from the checkpoint; 1 checkpoint tensors unused" in result.stdout
    shutil.rmtree(out.parent)
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4", "--weights-from", ckpt, "--strict-weights")
    assert result.returncode != 0 and list(out.parent.iterdir()) == []
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "--strict" in lines[0], result.stderr


def test_a_transform_that_cannot_be_undone_is_refused_by_name(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    weight_map = tmp_path / "map.json"
    assert run("rewrite", folder / "model.onnx", "-o", tmp_path / "m.onnx", "--hybrid-layers", "1").returncode == 0
    data = json.loads((tmp_path / "m.weight-map.json").read_text())
    for entry in data["entries"]:
        if entry["canonicalName"] == "model.layers.1.self_attn.q_proj.bias":
            entry["transform"]["offset"] = 1.0  # small biases do not survive (b - 1) + 1 in float32
    weight_map.write_text(json.dumps(data))
    result = run("weights", "export", tmp_path / "m.onnx", "-o", tmp_path / "ckpt", "--all", "--weight-map", weight_map)
    assert result.returncode != 0
    assert "model.model.layers.1.self_attn.q_proj.bias" in result.stderr and "cannot be undone exactly" in result.stderr
    assert not (tmp_path / "ckpt").exists() or list((tmp_path / "ckpt").iterdir()) == []


def valid_checkpoint(path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    save_file(hybrid_checkpoint(folder, np.float32), str(path))
    return path.read_bytes()


def header_of(data):
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


def with_header(header, body):
    text = json.dumps(header, separators=(",", ":")).encode()
    return len(text).to_bytes(8, "little") + text + body


def malformed(tmp_path):
    """name -> a function that makes the bad checkpoint at a path; returns the path to pass."""
    def truncated(p):
        p.write_bytes(valid_checkpoint(p)[:-100])
        return p

    def header_too_long(p):
        data = valid_checkpoint(p)
        p.write_bytes((len(data) * 2).to_bytes(8, "little") + data[8:])
        return p

    def edited(change):
        def make(p):
            header, body = header_of(valid_checkpoint(p))
            change(header)
            p.write_bytes(with_header(header, body))
            return p
        return make

    def overlap(h):
        names = sorted(k for k in h if k != "__metadata__")
        h[names[1]]["data_offsets"] = [h[names[0]]["data_offsets"][0], h[names[0]]["data_offsets"][0] + 4 * int(np.prod(h[names[1]]["shape"]))]

    def out_of_file(h):
        name = sorted(k for k in h if k != "__metadata__")[-1]
        h[name]["data_offsets"] = [h[name]["data_offsets"][0], h[name]["data_offsets"][1] + 64]

    def unknown_dtype(h):
        h[sorted(k for k in h if k != "__metadata__")[0]]["dtype"] = "F8_E4M3"

    def shape_mismatch(h):
        h[sorted(k for k in h if k != "__metadata__")[0]]["shape"] = [3, 3]

    def name_twice(p):
        header, body = header_of(valid_checkpoint(p))
        text = json.dumps(header, separators=(",", ":"))
        first = sorted(k for k in header if k != "__metadata__")[0]
        duplicate = f'"{first}":' + json.dumps(header[first], separators=(",", ":"))
        text = text[:-1] + "," + duplicate + "}"
        p.write_bytes(len(text).to_bytes(8, "little") + text.encode() + body)
        return p

    def index_missing_shard(p):
        folder = p.parent / "sharded"
        folder.mkdir()
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
        return folder

    def index_outside(p):
        folder = p.parent / "outside"
        folder.mkdir()
        valid_checkpoint(p.parent / "elsewhere.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../elsewhere.safetensors"}}))
        return folder

    return {"truncated": truncated, "header longer than the file": header_too_long, "overlapping spans": edited(overlap),
            "span past the data": edited(out_of_file), "unknown dtype": edited(unknown_dtype),
            "shape/byte mismatch": edited(shape_mismatch), "a name given twice": name_twice,
            "index names a missing shard": index_missing_shard, "shard outside the folder": index_outside}


def test_malformed_checkpoints_are_refused_with_one_line(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    for case, make in malformed(tmp_path).items():
        work = tmp_path / case.replace(" ", "_").replace("/", "_")
        work.mkdir()
        bad = make(work / "bad.safetensors")
        before = snapshot(work)
        out = work / "out"
        out.mkdir()
        result = run("rewrite", folder / "model.onnx", "-o", out / "m.onnx", "--hybrid-layers", "0,2,4", "--weights-from", bad)
        assert result.returncode != 0, case
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad.name) in lines[0], f"{case}: {result.stderr}"
        assert list(out.iterdir()) == [], case
        assert {k: v for k, v in snapshot(work).items() if k.parts[0] != "out"} == before, case


def forge_weight_map(out, edit):
    """Applies `edit(entry)` to every weight-map entry beside `out`; returns how many it changed."""
    path = out.with_suffix(".weight-map.json")
    weight_map = json.loads(path.read_text())
    changed = sum(1 for entry in weight_map["entries"] if edit(entry))
    path.write_text(json.dumps(weight_map))
    return changed


def packed_rows_overflow(entry):
    if entry["transform"].get("parts"):
        entry["transform"]["parts"][0]["rows"] = 2 ** 62
        entry["transform"]["parts"][1]["rows"] = 2 ** 62
        return True
    return False


def zero_scale(entry):
    if entry["canonicalName"].endswith("input_layernorm.weight"):
        entry["transform"]["scale"] = 0
        return True
    return False


@pytest.mark.parametrize("edit,needle", [(packed_rows_overflow, "rows"), (zero_scale, "scale 0")], ids=["rows-2^62", "scale-0"])
def test_numbers_in_a_weight_map_read_back_are_bounded(edit, needle, tmp_path):
    """A weight map is a file we wrote, read back untrusted (issue 21): parts of 2^62 rows
    (whose sum overflowed) and a scale of 0 (which export refused but import applied, making
    the parameter zeros) are refused alike by export and import, in one line naming the map;
    nothing is written and the model is untouched."""
    folder = next(f for f in FIXTURES if f.name == "qwen2-genai")
    out = tmp_path / "rewritten" / "model.onnx"
    out.parent.mkdir()
    assert run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "0").returncode == 0
    assert run("weights", "export", out, "-o", tmp_path / "good", "--all").returncode == 0
    assert forge_weight_map(out, edit) > 0
    before = snapshot(out.parent)
    for command in (["weights", "export", out, "-o", tmp_path / "ckpt", "--all"],
                    ["weights", "import", out, "--from", tmp_path / "good", "-o", tmp_path / "imported" / "model.onnx"]):
        (tmp_path / "imported").mkdir(exist_ok=True)
        result = run(*command)
        assert 0 < result.returncode < 128, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "weight-map.json" in lines[0] and needle in lines[0], result.stderr
        assert not (tmp_path / "ckpt").exists() and list((tmp_path / "imported").iterdir()) == []
    assert snapshot(out.parent) == before


def test_conversions_that_overflow_are_refused_or_saturated(tmp_path):
    """A float32 value beyond float16's range (65520 rounds to infinity; 1e6) is never written
    as infinity silently (issue 21): import into a float16 model and export --dtype F16 refuse
    it naming the tensor and the value, nothing written; --allow-overflow saturates it to
    65504 and reports the tensor."""
    half = next(f for f in FIXTURES if f.name == "qwen2-torchscript-fp16")
    name = "model.layers.0.input_layernorm.weight"
    assert run("weights", "export", half / "model.onnx", "-o", tmp_path / "base", "--all").returncode == 0
    state = {k: v.astype(np.float32) for k, v in load_file(str(tmp_path / "base/model.safetensors")).items()}
    state[name][:2] = [65520.0, -1e6]
    save_file(state, str(tmp_path / "big.safetensors"))
    out = tmp_path / "imported" / "model.onnx"
    out.parent.mkdir()
    refused = run("weights", "import", half / "model.onnx", "--from", tmp_path / "big.safetensors", "-o", out)
    assert 0 < refused.returncode < 128, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "65520" in lines[0] and "--allow-overflow" in lines[0], refused.stderr
    assert list(out.parent.iterdir()) == []
    done = run("weights", "import", half / "model.onnx", "--from", tmp_path / "big.safetensors", "-o", out, "--allow-overflow")
    assert done.returncode == 0, done.stderr
    assert f"saturated 2 values of '{name}'" in done.stdout or "saturated 2 values" in done.stdout, done.stdout
    values = initializers(out)
    stored = next(v for k, v in values.items() if k.endswith("layers.0.input_layernorm.weight"))
    assert stored.dtype == np.float16 and stored[0] == 65504 and stored[1] == -65504

    single = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    state32 = load_file(str(STATE_DICTS / "qwen2-seed10.safetensors"))
    state32[name] = state32[name].copy()
    state32[name][0] = 1e6
    save_file(state32, str(tmp_path / "big32.safetensors"))
    wide = tmp_path / "wide" / "model.onnx"
    wide.parent.mkdir()
    assert run("weights", "import", single / "model.onnx", "--from", tmp_path / "big32.safetensors", "-o", wide).returncode == 0
    refused = run("weights", "export", wide, "-o", tmp_path / "f16", "--all", "--dtype", "F16")
    assert 0 < refused.returncode < 128 and "1000000" in refused.stderr and name in refused.stderr, refused.stderr
    assert not (tmp_path / "f16").exists()  # the refusal leaves no folder behind (issue 21)
    done = run("weights", "export", wide, "-o", tmp_path / "f16b", "--all", "--dtype", "F16", "--allow-overflow")
    assert done.returncode == 0 and "saturated 1 values" in done.stdout, done.stderr + done.stdout
    assert load_file(str(tmp_path / "f16b/model.safetensors"))[name][0] == 65504
