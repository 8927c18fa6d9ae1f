"""`slowfast tokens` against a NumPy reference of the release's pooling rules.

The reference below is written from the rules (docs/DESIGN.md §5 and the release's
`split_slow_fast_tokens`), not from the Swift code: slow = PxP average pool; fast =
temporal sampling (stride s, at least M frames, step F/n in double precision), temporal
average pooling by t or, when that would leave fewer than M frames, adaptive average pooling
to min(n, M) frames (PyTorch's adaptive bins), then optional KxK spatial pooling.
"""
import json
import math
import zlib
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import session_options

REPO = Path(__file__).resolve().parents[2]


def slowfast(*args):
    binary = Path(os.environ.get("SLOWFAST_BIN", REPO / ".build/debug/slowfast"))
    if not binary.exists():
        pytest.fail(f"slowfast binary not found at {binary}: run `swift build` first", pytrace=False)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)


def spatial_pool(x, k):
    """x [F, h, w, d] -> [F, h//k, w//k, d], remainder rows/columns dropped."""
    f, h, w, d = x.shape
    h2, w2 = h // k, w // k
    return x[:, :h2 * k, :w2 * k].reshape(f, h2, k, w2, k, d).mean(axis=(2, 4))


def reference(x, slow_pool, s, t, k, m):
    frames = x.shape[0]
    slow = spatial_pool(x, slow_pool)
    # Temporal sampling.
    if s > 1 and frames >= m:
        n = max(frames // s, m)
        step = frames / n
        indices = [min(int(i * step), frames - 1) for i in range(n)]
    else:
        indices = list(range(frames))
    fast = slow[indices]
    # Temporal pooling.
    if t > 1:
        n = fast.shape[0]
        if n // t >= m:
            fast = fast[: (n // t) * t].reshape(n // t, t, *fast.shape[1:]).mean(axis=1)
        else:
            out = min(n, m)
            fast = np.stack([fast[(j * n) // out: math.ceil((j + 1) * n / out)].mean(axis=0) for j in range(out)])
    if k > 1:
        fast = spatial_pool(fast, k)
    d = x.shape[-1]
    return slow.reshape(1, -1, d), fast.reshape(1, -1, d)


# (name, CLI args, frames, h, w, d, slow pool, s, t, K, M)
CASES = [
    ("s1t4", ["--preset", "s1t4"], 64, 18, 18, 8, 2, 1, 4, 1, 16),
    ("s1t6", ["--preset", "s1t6"], 96, 18, 18, 8, 2, 1, 6, 1, 16),
    ("s2t4", ["--preset", "s2t4"], 128, 18, 18, 8, 2, 2, 4, 1, 16),
    # Presets at frame counts that force the fallback.
    ("s1t4@32 adaptive 2-frame windows", ["--preset", "s1t4", "--frames", 32], 32, 6, 6, 5, 2, 1, 4, 1, 16),
    ("s1t4@20 overlapping windows", ["--preset", "s1t4", "--frames", 20], 20, 6, 6, 5, 2, 1, 4, 1, 16),
    ("s1t6@50 uneven windows", ["--preset", "s1t6", "--frames", 50], 50, 4, 4, 3, 2, 1, 6, 1, 16),
    ("s2t4@64 sample then adapt", ["--preset", "s2t4", "--frames", 64], 64, 6, 6, 5, 2, 2, 4, 1, 16),
    ("s2t4@20 minimum sampling", ["--preset", "s2t4", "--frames", 20], 20, 6, 6, 5, 2, 2, 4, 1, 16),
    ("s2t4@10 fewer than minimum", ["--preset", "s2t4", "--frames", 10], 10, 6, 6, 5, 2, 2, 4, 1, 16),
    # Explicit rules, odd grids, spatial pooling, another minimum.
    ("s3t1@872 double-precision step", ["--frames", 872, "--stride", 3, "--temporal-kernel", 1], 872, 2, 2, 3, 2, 3, 1, 1, 16),
    ("s2t3 K2 odd grid", ["--frames", 100, "--stride", 2, "--temporal-kernel", 3, "--spatial-pool", 2], 100, 9, 11, 4, 2, 2, 3, 2, 16),
    ("s1t4 M8 slow pool 3", ["--frames", 30, "--stride", 1, "--temporal-kernel", 4, "--min-fast-frames", 8, "--slow-pool", 3], 30, 9, 9, 4, 3, 1, 4, 1, 8),
    ("s1t5 M4 pool 1", ["--frames", 13, "--stride", 1, "--temporal-kernel", 5, "--min-fast-frames", 4, "--slow-pool", 1], 13, 3, 3, 2, 1, 1, 5, 1, 4),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tokens_match_numpy_reference(case, tmp_path):
    name, args, frames, h, w, d, p, s, t, k, m = case
    out = tmp_path / "tokens.onnx"
    result = slowfast("tokens", "-o", out, "--height", h, "--width", w, "--dim", d, *args)
    assert result.returncode == 0, result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((frames, h, w, d)).astype(np.float32)
    options = session_options()
    session = ort.InferenceSession(str(out), options)
    slow, fast = session.run(["slow_tokens", "fast_tokens"], {"features": x})

    ref_slow, ref_fast = reference(x.astype(np.float64), p, s, t, k, m)
    assert slow.shape == ref_slow.shape
    assert fast.shape == ref_fast.shape
    assert np.abs(slow - ref_slow).max() <= 1e-6
    assert np.abs(fast - ref_fast).max() <= 1e-6
    # Output shapes declared in the model agree with what runs: static when --frames pins the
    # count, else the documented symbolic dims.
    declared = {o.name: [dim.dim_param or dim.dim_value for dim in o.type.tensor_type.shape.dim] for o in model.graph.output}
    if "--frames" in args:
        assert declared["slow_tokens"] == list(slow.shape)
        assert declared["fast_tokens"] == list(fast.shape)
    else:
        assert declared["slow_tokens"] == [1, "num_slow_tokens", d]
        assert declared["fast_tokens"] == [1, "num_fast_tokens", d]


PRESETS = [("s1t4", 1, 4), ("s1t6", 1, 6), ("s2t4", 2, 4)]


@pytest.mark.parametrize("preset,s,t", PRESETS, ids=[p[0] for p in PRESETS])
def test_one_model_serves_every_frame_count(preset, s, t, tmp_path):
    """Without --frames the model reads the frame count at run time: for every count from 1
    to 300 its tokens equal the reference (sampling, fallback and pooling regimes all met)."""
    h, w, d = 5, 4, 3  # odd grid: the 2x2 slow pool drops a row
    out = tmp_path / "tokens.onnx"
    result = slowfast("tokens", "-o", out, "--preset", preset, "--height", h, "--width", w, "--dim", d)
    assert result.returncode == 0, result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    dims = {v.name: [x.dim_param or x.dim_value for x in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}
    assert dims == {"features": ["frames", h, w, d], "slow_tokens": [1, "num_slow_tokens", d],
                    "fast_tokens": [1, "num_fast_tokens", d]}
    session = ort_session(out)
    rng = np.random.default_rng(zlib.crc32(preset.encode()))
    worst, fast_frames = 0.0, {}
    for frames in range(1, 301):
        x = rng.standard_normal((frames, h, w, d)).astype(np.float32)
        slow, fast = session.run(["slow_tokens", "fast_tokens"], {"features": x})
        ref_slow, ref_fast = reference(x.astype(np.float64), 2, s, t, 1, 16)
        assert slow.shape == ref_slow.shape, frames
        assert fast.shape == ref_fast.shape, frames
        worst = max(worst, float(np.abs(slow - ref_slow).max()), float(np.abs(fast - ref_fast).max()))
        fast_frames[frames] = fast.shape[1] // 4
    assert worst <= 1e-6, worst
    # The three regimes the CLI prints: all frames below 16, then 16, then floor(floor(F/s)/t).
    assert all(fast_frames[f] == f for f in range(1, 16))
    assert all(fast_frames[f] == 16 for f in range(16, s * t * 16))
    assert all(fast_frames[f] == (f // s) // t for f in range(s * t * 16, 301))


def ort_session(path):
    options = session_options()
    return ort.InferenceSession(str(path), options)


def test_presets_keep_sixteen_fast_frames(tmp_path):
    for preset, frames in [("s1t4", 64), ("s1t6", 96), ("s2t4", 128)]:
        out = tmp_path / f"{preset}.onnx"
        result = slowfast("tokens", "-o", out, "--preset", preset, "--frames", frames, "--height", 18, "--width", 18, "--dim", 4)
        assert result.returncode == 0, result.stderr
        dims = {o.name: [dim.dim_value for dim in o.type.tensor_type.shape.dim] for o in onnx.load(out).graph.output}
        assert dims["slow_tokens"] == [1, frames * 81, 4]
        assert dims["fast_tokens"] == [1, 16 * 81, 4]


def test_bad_options_write_nothing(tmp_path):
    out = tmp_path / "bad.onnx"
    result = slowfast("tokens", "-o", out, "--frames", 8, "--height", 1, "--width", 4, "--dim", 4, "--preset", "s1t4")
    assert result.returncode != 0
    assert "slow pool 2x2 does not fit a 1x4 grid" in result.stderr
    assert not out.exists()
    result = slowfast("tokens", "-o", out, "--frames", 8, "--height", 4, "--width", 4, "--dim", 4,
                      "--preset", "s1t4", "--stride", 2)
    assert result.returncode != 0
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_insert_after_projector_output(tmp_path):
    """`--into/--after` adds the same ops inside a vision-like graph whose projector output is
    [frames, h*w, d]; the original output is untouched and the token outputs match."""
    from onnx import TensorProto, helper, numpy_helper
    frames, h, w, c, d = 24, 6, 6, 5, 8
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((c, d)).astype(np.float32)
    bias = rng.standard_normal(d).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["patches", "proj_w"], ["proj0"], name="projector/MatMul"),
         helper.make_node("Add", ["proj0", "proj_b"], ["projector_out"], name="projector/Add")],
        "vision",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, [frames, h * w, c])],
        [helper.make_tensor_value_info("projector_out", TensorProto.FLOAT, [frames, h * w, d])],
        [numpy_helper.from_array(weight, "proj_w"), numpy_helper.from_array(bias, "proj_b")])
    vision = tmp_path / "vision.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), vision)
    before = vision.read_bytes()

    out = tmp_path / "vision_tokens.onnx"
    result = slowfast("tokens", "--into", vision, "--after", "projector_out", "-o", out,
                      "--preset", "s1t4", "--frames", frames, "--height", h, "--width", w, "--dim", d)
    assert result.returncode == 0, result.stderr
    assert vision.read_bytes() == before
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    names = [o.name for o in model.graph.output]
    assert names == ["projector_out", "slow_tokens", "fast_tokens"]
    assert "slow tokens 'slow_tokens'" in result.stdout and "fast tokens 'fast_tokens'" in result.stdout

    patches = rng.standard_normal((frames, h * w, c)).astype(np.float32)
    options = session_options()
    projected, slow, fast = ort.InferenceSession(str(out), options).run(names, {"patches": patches})
    expected = patches @ weight + bias
    assert np.abs(projected - expected).max() <= 1e-5
    ref_slow, ref_fast = reference(projected.astype(np.float64).reshape(frames, h, w, d), 2, 1, 4, 1, 16)
    assert fast.shape == (1, 16 * 9, d)  # 24 frames / 4 = 6 < 16: adaptive pooling to 16 frames
    assert np.abs(slow - ref_slow).max() <= 1e-6
    assert np.abs(fast - ref_fast).max() <= 1e-6

    missing = slowfast("tokens", "--into", vision, "--after", "nope", "-o", tmp_path / "x.onnx",
                       "--preset", "s1t4", "--frames", frames, "--height", h, "--width", w, "--dim", d)
    assert missing.returncode != 0
    assert missing.stderr == f"error: {vision}: graph 'vision': no value named 'nope' (not a graph input, node output or initializer)\n"
    assert not (tmp_path / "x.onnx").exists()

    # Other names on request, in the JSON report too; a name the graph already has is refused.
    renamed = tmp_path / "renamed.onnx"
    result = slowfast("tokens", "--into", vision, "--after", "projector_out", "-o", renamed, "--json",
                      "--output-names", "video_slow,video_fast", "--preset", "s1t4", "--height", h, "--width", w, "--dim", d)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["slowTokens"], report["fastTokens"], report["frames"]) == ("video_slow", "video_fast", None)
    assert [o.name for o in onnx.load(renamed).graph.output] == ["projector_out", "video_slow", "video_fast"]
    taken = slowfast("tokens", "--into", vision, "--after", "projector_out", "-o", tmp_path / "y.onnx",
                     "--output-names", "proj0,fast", "--preset", "s1t4", "--height", h, "--width", w, "--dim", d)
    assert taken.returncode != 0
    assert taken.stderr.startswith(f"error: {vision}: the model already has a value named 'proj0'"), taken.stderr
    assert "--output-names" in taken.stderr
    assert not (tmp_path / "y.onnx").exists()


def test_plan_wording_for_each_regime(tmp_path):
    """The plan says what happens: 8 frames with s2t4 keep all 8 (no fallback claim)."""
    args = ["--preset", "s2t4", "--height", 4, "--width", 4, "--dim", 2]
    short = slowfast("tokens", "-o", tmp_path / "a.onnx", "--frames", 8, *args)
    assert short.returncode == 0, short.stderr
    assert "fast tokens 'fast_tokens': 32 = 8 frames x 2x2" in short.stdout
    assert "8 frames, fewer than the minimum of 16: every frame is a fast frame" in short.stdout
    assert "at least 16" not in short.stdout
    middle = slowfast("tokens", "-o", tmp_path / "b.onnx", "--frames", 40, *args)
    assert "16 frames sampled (40/2 = 20, raised to 16)" not in middle.stdout  # 20 >= 16: not raised
    assert "20 frames sampled" in middle.stdout and "pooled adaptively to 16 (20/4 = 5 < 16)" in middle.stdout, middle.stdout
    regular = slowfast("tokens", "-o", tmp_path / "c.onnx", "--frames", 300, *args)
    assert "one frame in 2 kept (150), means of 4 consecutive frames (37, last 2 dropped); 37 fast frames" in regular.stdout, regular.stdout
    any_count = slowfast("tokens", "-o", tmp_path / "d.onnx", *args)
    assert any_count.stdout.splitlines()[-3:] == [
        "  F = 1..15: F (fewer than 16 frames: every frame kept, no sampling or pooling)",
        "  F = 16..127: 16 (stride 2 and kernel 4 would leave fewer: weakened to keep 16)",
        "  F >= 128: floor(floor(F/2)/4)"]


def test_errors_name_the_file(tmp_path):
    out = tmp_path / "t.onnx"
    result = slowfast("tokens", "-o", out, "--preset", "s1t4", "--height", 1, "--width", 4, "--dim", 4)
    assert result.stderr == f"error: {out}: slow pool 2x2 does not fit a 1x4 grid\n"
    result = slowfast("tokens", "-o", out, "--preset", "s1t4", "--frames", 0, "--height", 4, "--width", 4, "--dim", 4)
    assert result.stderr == f"error: {out}: frames is 0, expected at least 1\n"
    missing = tmp_path / "missing.onnx"
    result = slowfast("tokens", "--into", missing, "--after", "x", "-o", out, "--preset", "s1t4", "--height", 4, "--width", 4, "--dim", 4)
    assert result.returncode != 0 and str(missing) in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype,onnx_type,limit", [(np.float16, 10, 2e-3), (np.float64, 11, 1e-6)])
def test_other_float_types_pool_in_float32(dtype, onnx_type, limit, tmp_path):
    """A float16 (or double) projector output: the ops pool in float32 and the tokens come
    back in the features' type, at every frame count."""
    from onnx import helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["projected"], name="projector")], "vision",
                              [helper.make_tensor_value_info("x", onnx_type, ["frames", 36, 4])],
                              [helper.make_tensor_value_info("projected", onnx_type, ["frames", 36, 4])])
    vision = tmp_path / "vision.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), vision)
    out = tmp_path / "tokens.onnx"
    result = slowfast("tokens", "--into", vision, "--after", "projected", "-o", out, "--preset", "s2t4", "--height", 6, "--width", 6)
    assert result.returncode == 0, result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx_type] * 3
    session = ort_session(out)
    rng = np.random.default_rng(3)
    for frames in (1, 17, 70, 131):
        x = rng.standard_normal((frames, 36, 4)).astype(dtype)
        _, slow, fast = session.run(None, {"x": x})
        assert slow.dtype == dtype and fast.dtype == dtype
        ref_slow, ref_fast = reference(x.astype(np.float64).reshape(frames, 6, 6, 4), 2, 2, 4, 1, 16)
        assert np.abs(slow - ref_slow).max() <= limit
        assert np.abs(fast - ref_fast).max() <= limit


def test_standalone_channels_first(tmp_path):
    """--layout nchw: the standalone input is [frames, d, h, w] and is read without a transpose."""
    out = tmp_path / "tokens.onnx"
    result = slowfast("tokens", "-o", out, "--preset", "s1t6", "--layout", "nchw", "--height", 5, "--width", 6, "--dim", 3)
    assert result.returncode == 0, result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["frames", 3, 5, 6]
    session = ort_session(out)
    rng = np.random.default_rng(11)
    for frames in (2, 50, 97):
        x = rng.standard_normal((frames, 3, 5, 6)).astype(np.float32)
        slow, fast = session.run(["slow_tokens", "fast_tokens"], {"features": x})
        ref_slow, ref_fast = reference(x.astype(np.float64).transpose(0, 2, 3, 1), 2, 1, 6, 1, 16)
        assert np.abs(slow - ref_slow).max() <= 1e-6
        assert np.abs(fast - ref_fast).max() <= 1e-6
