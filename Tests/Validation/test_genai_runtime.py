"""The rewritten genai exports in onnxruntime-genai's generator, driven by the example program
Examples/genai_generate.py: the output folder runs as written (genai_config.json and the
tokenizer files beside the model), greedy tokens equal the original's at default init, with
gates on every step's logits equal a plain onnxruntime loop (1e-5), and every mask input
changes the result exactly as it does in plain onnxruntime."""
import json
import os
import stat
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import REPO, ort_session, run
from fixtures import FIXTURES, config, position_feeds

og = pytest.importorskip("onnxruntime_genai")
GENAI = [f for f in FIXTURES if "genai" in f.name]
PROMPT = [3, 17, 42, 99, 128, 7, 201]
NEW_TOKENS = 5
N_SLOW = 10
EXAMPLE = REPO / "Examples/genai_generate.py"


def rewritten_folder(folder, tmp_path, slow_kv, name="decoder.onnx"):
    """The fixture folder, with a tokenizer file added, rewritten at layers 0, 2, 4 into
    tmp_path/out/<name> (another file name than the input's, so genai_config must follow)."""
    source = tmp_path / "in"
    shutil.copytree(folder, source)
    (source / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "stand-in"}}\n')
    out = tmp_path / "out" / name
    out.parent.mkdir()
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0,2,4", "--slow-kv", slow_kv)
    assert result.returncode == 0, result.stderr
    return source, out


def open_gates(out, seed=7):
    """alpha, w_g, b_g of every hybrid layer set to non-zero values, in the written file."""
    rng = np.random.default_rng(seed)
    model = onnx.load(out, load_external_data=False)
    changed = 0
    for tensor in model.graph.initializer:
        name = tensor.name
        if not ("cross_attn_warm_up_gate" in name or "cross_attn_gate_proj" in name):
            continue
        assert not tensor.external_data, name  # small: stored inline, so this edit is the whole change
        value = numpy_helper.to_array(tensor)
        if name.endswith("cross_attn_warm_up_gate"):
            value = np.full_like(value, 0.9)
        elif name.endswith("bias"):
            value = np.full_like(value, 0.3)
        else:
            value = (rng.standard_normal(value.shape) * 0.5).astype(value.dtype)
        tensor.CopyFrom(numpy_helper.from_array(value, name))
        changed += 1
    assert changed == 9
    onnx.save(model, out)


def example(folder, tmp_path, *args, tag="run"):
    """Runs the example program; returns (tokens, logits per step)."""
    saved = tmp_path / f"{tag}.npz"
    result = subprocess.run([sys.executable, EXAMPLE, folder, "--prompt-ids", ",".join(map(str, PROMPT)), "--cpu",
                             "--max-new-tokens", str(NEW_TOKENS), "--save-logits", saved, *map(str, args)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = np.load(saved)
    return data["tokens"].tolist(), data["logits"]


def plain_loop(path, tokens, steps, slow_inputs):
    """Plain onnxruntime on the same tokens: prefill the prompt, then one token per step;
    the slow inputs are the same at every step. Last-position logits of each step. Where the
    graph takes position_ids (Qwen2.5-VL: [3, B, L]), the text positions the generator gives
    a prompt without images: 0...n-1 in every row."""
    session = ort_session(path)
    names = [i.name for i in session.get_inputs()]
    ranks = {i.name: len(i.shape) for i in session.get_inputs()}
    prompt_positions = np.arange(len(PROMPT)).reshape((1,) * (ranks.get("position_ids", 2) - 1) + (-1,))
    prompt_positions = np.broadcast_to(prompt_positions, (3,) * (ranks.get("position_ids", 2) - 2) + (1, len(PROMPT)))
    outputs = [o.name for o in session.get_outputs()]
    cfg = json.loads((path.parent / "genai_config.json").read_text())["model"]["decoder"]
    types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    past = {n: np.zeros((1, cfg["num_key_value_heads"], 0, cfg["head_size"]), types[n])
            for n in names if n.startswith("past_key_values") and ".encoder." not in n}
    ids, total, logits = np.array([tokens[: len(PROMPT)]], np.int64), len(PROMPT), []
    for step in range(steps):
        values = dict(zip(outputs, session.run(outputs, {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64),
                                                           **past, **slow_inputs,
                                                           **position_feeds(names, prompt_positions, total, ids.shape[1])})))
        logits.append(values["logits"][0, -1])
        past = {n: values[n.replace("past_key_values", "present")] for n in past}
        ids = np.array([[tokens[total]]], np.int64)
        total += 1
    return np.stack(logits)


def slow_tokens(folder, count=N_SLOW):
    return np.random.default_rng(5).standard_normal((1, count, config(folder)["hidden_size"])).astype(np.float32)


def example_inputs(out, slow, mask_from=None, exclude=()):
    sys.path.insert(0, str(REPO / "Examples"))
    import genai_generate
    return genai_generate.slow_inputs(out.parent, slow, mask_from, exclude)


@pytest.mark.parametrize("slow_kv", ["inputs", "inline"])
@pytest.mark.parametrize("folder", GENAI, ids=[f.name for f in GENAI])
def test_output_folder_runs_in_the_generator(folder, slow_kv, tmp_path):
    source, out = rewritten_folder(folder, tmp_path, slow_kv)
    files = {p.name for p in out.parent.iterdir()}
    assert {"genai_config.json", "config.json", "tokenizer.json", "decoder.onnx"} <= files
    assert (slow_kv == "inputs") == ("decoder.slow-kv-encoder.onnx" in files)
    assert "reference.npz" not in files and "meta.json" not in files
    for name in ("config.json", "tokenizer.json"):
        assert (out.parent / name).read_bytes() == (source / name).read_bytes()
    written = json.loads((out.parent / "genai_config.json").read_text())
    original = json.loads((source / "genai_config.json").read_text())
    assert written["model"]["decoder"].pop("filename") == "decoder.onnx"
    original["model"]["decoder"].pop("filename")
    assert written == original

    # Default init: the generator's greedy tokens and logits are the original's.
    slow = slow_tokens(folder)
    np.save(tmp_path / "slow.npy", slow)
    tokens, logits = example(out.parent, tmp_path, "--slow-tokens", tmp_path / "slow.npy", tag="default")
    config_ = og.Config(str(source))
    config_.clear_providers()  # a float16 export built for CUDA runs on the CPU here
    model = og.Model(config_)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + NEW_TOKENS, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([PROMPT], np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    expected = [int(t) for t in generator.get_sequence(0)]
    assert tokens == expected and len(tokens) == len(PROMPT) + NEW_TOKENS
    plain_original = plain_loop(source / "model.onnx", tokens, len(logits), {})
    assert np.abs(logits - plain_original).max() <= 1e-5


@pytest.mark.parametrize("slow_kv", ["inputs", "inline"])
@pytest.mark.parametrize("folder", GENAI, ids=[f.name for f in GENAI])
def test_gates_on_and_masks_match_plain_onnxruntime(folder, slow_kv, tmp_path):
    source, out = rewritten_folder(folder, tmp_path, slow_kv)
    open_gates(out)
    slow = slow_tokens(folder)
    np.save(tmp_path / "slow.npy", slow)
    np.save(tmp_path / "half.npy", slow[:, : N_SLOW // 2])
    plain_original = None

    def check(tag, args, inputs):
        tokens, logits = example(out.parent, tmp_path, *args, tag=tag)
        assert len(logits) == NEW_TOKENS
        expected = plain_loop(out, tokens, len(logits), inputs)
        assert np.abs(logits - expected).max() <= 1e-5, tag
        return tokens, logits

    tokens, gated = check("gated", ["--slow-tokens", tmp_path / "slow.npy"], example_inputs(out, slow))
    plain_original = plain_loop(source / "model.onnx", tokens, len(gated), {})
    assert np.abs(gated - plain_original).max() > 1e-3  # the gates really change every run

    # Half the slow tokens masked as padding = only the other half passed.
    _, masked = check("masked", ["--slow-tokens", tmp_path / "slow.npy", "--slow-mask-from", N_SLOW // 2],
                      example_inputs(out, slow, mask_from=N_SLOW // 2))
    _, half = check("half", ["--slow-tokens", tmp_path / "half.npy"], example_inputs(out, slow[:, : N_SLOW // 2]))
    assert np.abs(masked - half).max() <= 1e-5
    assert np.abs(masked - gated).max() > 1e-3

    # The prompt may not query: the prefill step is the original's, decode steps still query.
    tokens, excluded = check("excluded", ["--slow-tokens", tmp_path / "slow.npy", "--exclude", f"0:{len(PROMPT)}"],
                             example_inputs(out, slow, exclude=[(0, len(PROMPT))]))
    original_steps = plain_loop(source / "model.onnx", tokens, len(excluded), {})
    assert np.abs(excluded[0] - original_steps[0]).max() <= 1e-5
    assert np.abs(excluded[1:] - original_steps[1:]).max() > 1e-3


def genai_source(tmp_path):
    """A copy of the first genai fixture with a stand-in tokenizer: (source folder, output path)."""
    source = tmp_path / "in"
    shutil.copytree(GENAI[0], source)
    (source / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "stand-in"}}\n')
    (tmp_path / "out").mkdir()
    return source, tmp_path / "out" / "decoder.onnx"


def test_a_companion_file_linked_out_of_the_folder_is_refused_and_nothing_written(tmp_path):
    """A tokenizer.json that is a link to a file outside the model's folder (a secret) is not
    copied: the rewrite is refused naming the link and its target, and nothing is written."""
    source, out = genai_source(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$secret\n")
    (source / "tokenizer.json").unlink()
    (source / "tokenizer.json").symlink_to(secret)
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0")
    assert result.returncode != 0
    line = result.stderr.strip()
    assert f"{source}/tokenizer.json: is a symbolic link to '{secret}', outside the model's folder: not copied" in line, line
    assert list(out.parent.iterdir()) == []


def test_a_companion_link_inside_the_folder_is_copied_as_its_target(tmp_path):
    source, out = genai_source(tmp_path)
    (source / "tokenizer.json").rename(source / "tokenizer.real.json")
    (source / "tokenizer.json").symlink_to("tokenizer.real.json")
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0")
    assert result.returncode == 0, result.stderr
    copied = out.parent / "tokenizer.json"
    assert not copied.is_symlink() and copied.read_bytes() == (source / "tokenizer.real.json").read_bytes()


def test_a_companion_fifo_is_refused_by_kind(tmp_path):
    source, out = genai_source(tmp_path)
    (source / "tokenizer.json").unlink()
    os.mkfifo(source / "tokenizer.json")
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0", timeout=60)
    assert result.returncode != 0
    assert f"{source}/tokenizer.json: is a FIFO, not a regular file: not copied" in result.stderr, result.stderr
    assert list(out.parent.iterdir()) == []


def test_companion_copies_are_not_readable_by_more_users(tmp_path):
    """A tokenizer only its owner may read (0600) is copied 0600; the config keeps its 0644."""
    source, out = genai_source(tmp_path)
    (source / "tokenizer.json").chmod(0o600)
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((out.parent / "tokenizer.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((out.parent / "genai_config.json").stat().st_mode) & 0o044 == stat.S_IMODE((source / "genai_config.json").stat().st_mode) & 0o044


def test_a_weight_map_at_the_companion_models_path_is_refused(tmp_path):
    """Every path one run writes is checked against the others before anything is written: a
    weight map named like the --slow-kv inputs companion would have replaced it."""
    source, out = genai_source(tmp_path)
    clash = out.parent / "decoder.slow-kv-encoder.onnx"
    result = run("rewrite", source / "model.onnx", "-o", out, "--hybrid-layers", "0", "--slow-kv", "inputs",
                 "--weight-map", clash)
    assert result.returncode != 0
    assert f"{clash}: " in result.stderr and "the write would put two files at one path" in result.stderr, result.stderr
    assert list(out.parent.iterdir()) == []
