"""`slowfast tokens --into TOWER --after VALUE --grid T,H,W` on flat merged patches (issue 23).

A Qwen-VL tower's merger returns [T*H*W, d] in (t, h, w) raster order, T temporal patches of
2 video frames. With --grid the token ops read the rows as [T, H, W, d] and apply the rules
over temporal patches: --preset, --stride and --temporal-kernel count video frames, and a
fast token spans the same s*t frames (stride divided by the patch where it can, else the
kernel; a rule that would split a patch is refused). The model also outputs `fast_grid`
(fast rows, h, w) and, for --deepstack values, the same fast selection of each.
"""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import REPO, ort_session, run
from test_tokens import reference

DIM, CHANNELS = 8, 12
# preset -> (stride, kernel) over video frames
PRESETS = {"s1t4": (1, 4), "s1t6": (1, 6), "s2t4": (2, 4)}


def over_patches(stride, kernel, patch=2):
    """The documented rule: a fast token spans stride*kernel video frames, whole patches."""
    if stride % patch == 0:
        return stride // patch, kernel
    assert kernel % patch == 0
    return stride, kernel // patch


def flat_tower(path, rows, deepstack=1):
    """pixel_values [rows, CHANNELS] -> features [rows, DIM] (+ deepstack_i of the same shape)."""
    rng = np.random.default_rng(rows)
    nodes, outputs, weights = [], [], []
    for name in ["features"] + [f"deepstack_{i}" for i in range(deepstack)]:
        weights.append(numpy_helper.from_array(rng.standard_normal((CHANNELS, DIM)).astype(np.float32), f"w_{name}"))
        nodes.append(helper.make_node("MatMul", ["pixel_values", f"w_{name}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, DIM]))
    graph = helper.make_graph(nodes, "tower", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [rows, CHANNELS])],
                              outputs, initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


GRIDS = [(32, 2, 3), (24, 4, 4), (5, 3, 2)]
CASES = [(preset, grid) for preset in PRESETS for grid in GRIDS]


@pytest.mark.parametrize("preset,grid", CASES, ids=[f"{p}-{'x'.join(map(str, g))}" for p, g in CASES])
def test_grid_tokens_equal_the_rules_over_temporal_patches(preset, grid, tmp_path):
    t, h, w = grid
    tower = flat_tower(tmp_path / "tower.onnx", t * h * w)
    out = tmp_path / "out.onnx"
    result = run("tokens", "--into", tower, "--after", "features", "--grid", ",".join(map(str, grid)), "--preset", preset,
                 "--deepstack", "deepstack_0", "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["features"]["layout"] == "flat" and report["fastGrid"] == "fast_grid"
    assert report["deepstack"] == {"fast_deepstack_0": "deepstack_0"}
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    session = ort_session(out)
    x = np.random.default_rng(7).standard_normal((t * h * w, CHANNELS)).astype(np.float32)
    names = ["features", "deepstack_0", "slow_tokens", "fast_tokens", "fast_grid", "fast_deepstack_0"]
    features, deep, slow, fast, fast_grid, fast_deep = session.run(names, {"pixel_values": x})
    s, k = over_patches(*PRESETS[preset])
    ref_slow, ref_fast = reference(features.astype(np.float64).reshape(t, h, w, DIM), 2, s, k, 1, 16)
    _, ref_deep = reference(deep.astype(np.float64).reshape(t, h, w, DIM), 2, s, k, 1, 16)
    assert slow.shape == ref_slow.shape and fast.shape == ref_fast.shape and fast_deep.shape == ref_deep.shape
    assert max(np.abs(slow - ref_slow).max(), np.abs(fast - ref_fast).max(), np.abs(fast_deep - ref_deep).max()) <= 1e-6
    fast_rows = ref_fast.shape[1] // ((h // 2) * (w // 2))
    assert fast_grid.dtype == np.int64 and fast_grid.tolist() == [fast_rows, h // 2, w // 2]


def test_frames_count_video_frames_and_pin_the_rows(tmp_path):
    tower = flat_tower(tmp_path / "tower.onnx", 32 * 6)
    out = tmp_path / "out.onnx"
    result = run("tokens", "--into", tower, "--after", "features", "--grid", "32,2,3", "--frames", 64, "--preset", "s1t4", "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 32 and len(report["plan"]["temporalWindows"]) == 16, report
    assert report["rule"]["fast"]["temporalKernel"] == 2 and report["rule"]["fast"]["temporalStride"] == 1


def refused(result, out, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()
    return lines[0]


def test_a_grid_that_disagrees_with_the_rows_is_refused(tmp_path):
    tower = flat_tower(tmp_path / "tower.onnx", 24)
    out = tmp_path / "out.onnx"
    refused(run("tokens", "--into", tower, "--after", "features", "--grid", "4,2,4", "--preset", "s1t4", "-o", out),
            out, str(tower), "'features' has shape [24, 8]", "--grid 4,2,4 needs 32")


def test_a_grid_on_a_value_with_a_frame_axis_is_refused(tmp_path):
    tower = REPO / "Tests/Fixtures/vision/siglip-torchscript/model.onnx"
    out = tmp_path / "out.onnx"
    refused(run("tokens", "--into", tower, "--after", "projector_out", "--grid", "4,8,12", "--preset", "s1t4", "-o", out),
            out, "'projector_out' has shape [", "a value with a frame axis", "--grid 4,8,12")


def test_flat_rows_without_a_grid_are_refused(tmp_path):
    tower = flat_tower(tmp_path / "tower.onnx", 24)
    out = tmp_path / "out.onnx"
    refused(run("tokens", "--into", tower, "--after", "features", "--preset", "s1t4", "-o", out),
            out, "'features' has shape [24, 8]", "give --grid T,H,W")


@pytest.mark.parametrize("flags,fragment", [
    (["--frames", 63], "whole temporal patches of 2 frames"),
    (["--frames", 48], "--grid 32,2,3 holds 32 temporal patches"),
    (["--stride", 3, "--temporal-kernel", 3], "would split one"),
])
def test_rules_that_split_a_temporal_patch_are_refused(flags, fragment, tmp_path):
    tower = flat_tower(tmp_path / "tower.onnx", 32 * 6)
    out = tmp_path / "out.onnx"
    preset = [] if "--stride" in flags else ["--preset", "s1t4"]
    refused(run("tokens", "--into", tower, "--after", "features", "--grid", "32,2,3", *preset, *map(str, flags), "-o", out),
            out, fragment)


def test_a_deepstack_value_of_another_shape_is_refused(tmp_path):
    tower = flat_tower(tmp_path / "tower.onnx", 24)
    model = onnx.load(str(tower))
    model.graph.node.append(helper.make_node("Slice", ["deepstack_0", "starts", "ends"], ["short"]))
    model.graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "starts"),
                                    numpy_helper.from_array(np.array([12], np.int64), "ends")])
    onnx.save(model, str(tower))
    out = tmp_path / "out.onnx"
    refused(run("tokens", "--into", tower, "--after", "features", "--grid", "4,2,3", "--preset", "s1t4", "--deepstack", "short", "-o", out),
            out, "'short' has shape [12, 8]", "--grid 4,2,3 needs 24")


# --- The real towers: Tests/Fixtures/vision/qwen*-tower-{a,b} (Scripts/export-qwen-vl-tower.py) ---

TOWER_FIXTURES = sorted((REPO / "Tests/Fixtures/vision").glob("qwen*-tower-*"))
TOWER_CASES = [(folder.name, preset, minimum) for folder in TOWER_FIXTURES for preset in PRESETS for minimum in (16, 1)]


def tower_meta(name):
    return json.loads((REPO / "Tests/Fixtures/vision" / name / "meta.json").read_text())


def run_tower_tokens(name, flags, tmp_path):
    """The tower with token ops (--slow-pool 1 keeps every merged row, so the fast selection is
    all that differs from the features); returns {output: value} on the fixture's input."""
    folder = REPO / "Tests/Fixtures/vision" / name
    meta = tower_meta(name)
    deep = sorted(o for o in meta["outputs"] if o.startswith("deepstack_"))
    out = tmp_path / "tokens.onnx"
    extra = ["--deepstack", ",".join(deep)] if deep else []
    result = run("tokens", "--into", folder / "model.onnx", "--after", "features", *map(str, flags), *extra, "-o", out)
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    session = ort_session(out)
    reference_inputs = np.load(folder / "reference.npz")
    feeds = {i.name: reference_inputs[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds))), deep, meta


@pytest.mark.parametrize("name,preset,minimum", TOWER_CASES, ids=[f"{n}-{p}-M{m}" for n, p, m in TOWER_CASES])
def test_tower_tokens_from_the_grid_equal_the_rules(name, preset, minimum, tmp_path):
    meta = tower_meta(name)
    t, h, w = meta["mergedGrid"]
    variants = [["--grid", f"{t},{h},{w}"]] + ([["--grid-from", "grid_thw", "--merge", 2]] if meta["gridThwInput"] else [])
    assert len(variants) == (2 if name.startswith("qwen3vl") else 1)  # only Qwen3-VL's export keeps grid_thw
    for flags in variants:
        values, deep, _ = run_tower_tokens(name, [*flags, "--preset", preset, "--min-fast-frames", minimum, "--slow-pool", 1], tmp_path)
        features = values["features"].astype(np.float64)
        np.testing.assert_allclose(values["features"], np.load(REPO / "Tests/Fixtures/vision" / name / "reference.npz")["features"], atol=1e-5)
        s, k = over_patches(*PRESETS[preset])
        ref_slow, ref_fast = reference(features.reshape(t, h, w, -1), 1, s, k, 1, minimum)
        assert values["slow_tokens"].shape == ref_slow.shape and values["fast_tokens"].shape == ref_fast.shape, flags
        assert np.abs(values["slow_tokens"] - ref_slow).max() <= 1e-6
        assert np.abs(values["fast_tokens"] - ref_fast).max() <= 1e-6
        assert values["fast_grid"].tolist() == [ref_fast.shape[1] // (h * w), h, w]
        assert len(deep) == (2 if name.startswith("qwen3vl") else 0)
        for i, value in enumerate(deep):
            _, ref_deep = reference(values[value].astype(np.float64).reshape(t, h, w, -1), 1, s, k, 1, minimum)
            assert np.abs(values[f"fast_deepstack_{i}"] - ref_deep).max() <= 1e-6, value


def test_tower_grid_that_disagrees_with_the_graph_is_refused(tmp_path):
    tower = REPO / "Tests/Fixtures/vision/qwen25vl-tower-a/model.onnx"
    out = tmp_path / "out.onnx"
    # A grid of the right row count in another shape (4,3,2) cannot be refuted by the graph;
    # a wrong count can.
    refused(run("tokens", "--into", tower, "--after", "features", "--grid", "3,2,3", "--preset", "s1t4", "-o", out),
            out, str(tower), "'features' has shape [24, 48]", "--grid 3,2,3 needs 18")


def test_grid_from_a_value_that_is_not_a_grid_is_refused(tmp_path):
    tower = REPO / "Tests/Fixtures/vision/qwen3vl-tower-a/model.onnx"
    out = tmp_path / "out.onnx"
    refused(run("tokens", "--into", tower, "--after", "features", "--grid-from", "pixel_values", "--preset", "s1t4", "-o", out),
            out, str(tower), "--grid-from 'pixel_values' is float32 [96, 1176]", "three int64 numbers")
