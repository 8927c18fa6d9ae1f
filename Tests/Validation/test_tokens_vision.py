"""`slowfast tokens --into` on real exports of tiny vision towers (issue 14).

Tests/Fixtures/vision/{siglip,clip,convnext}-{torchscript,dynamo} (Scripts/make-vision-fixtures.py):
a SigLIP tower on an 8x12 grid ([frames, 96, 48]), a CLIP tower whose output keeps the CLS
token ([frames, 65, 48]) and a ConvNeXt tower with a channels-first output ([frames, 48, 8, 8]).
TorchScript records no intermediate shapes and a symbolic token dim on the CLIP/SigLIP output,
so the tool has to prove the layout by shape inference. With the right flags the tokens must
equal the NumPy reference of the rules applied to the tower's own output; without them the tool
must refuse, name the file, say which flag to give, and write nothing.
"""
import json
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import REPO, ort_session, run
from test_tokens import reference

FIXTURES = REPO / "Tests/Fixtures/vision"
EXPORTERS = ["torchscript", "dynamo"]
# tower -> (flags that settle it, how to turn the projector output into [F, h, w, d])
TOWERS = {
    "siglip": ([], lambda x: x.reshape(x.shape[0], 8, 12, 48)),
    "clip": (["--drop-leading", 1], lambda x: x[:, 1:].reshape(x.shape[0], 8, 8, 48)),
    "convnext": (["--layout", "nchw"], lambda x: x.transpose(0, 2, 3, 1)),
}
CASES = [(tower, exporter) for tower in TOWERS for exporter in EXPORTERS]
RULE = ["--preset", "s2t4"]


def fixture(tower, exporter):
    return FIXTURES / f"{tower}-{exporter}"


def check_tokens(path, grid, frame_counts, seed, output="projector_out", full_check=True):
    """Runs the tower with token ops at several frame counts; tokens vs the NumPy reference."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=full_check)
    session = ort_session(path)
    pixel = session.get_inputs()[0]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for frames in frame_counts:
        x = rng.standard_normal((frames, *pixel.shape[1:])).astype(np.float32)
        features, slow, fast = session.run([output, "slow_tokens", "fast_tokens"], {pixel.name: x})
        ref_slow, ref_fast = reference(grid(features.astype(np.float64)), 2, 2, 4, 1, 16)
        assert slow.shape == ref_slow.shape and fast.shape == ref_fast.shape, (frames, slow.shape, ref_slow.shape)
        worst = max(worst, float(np.abs(slow - ref_slow).max()), float(np.abs(fast - ref_fast).max()))
    assert worst <= 1e-5, worst
    return worst


@pytest.mark.parametrize("tower,exporter", CASES, ids=[f"{t}-{e}" for t, e in CASES])
def test_right_flags_give_exact_tokens(tower, exporter, tmp_path):
    folder = fixture(tower, exporter)
    flags, grid = TOWERS[tower]
    out = tmp_path / "vision_tokens.onnx"
    result = run("tokens", "--into", folder / "model.onnx", "--after", "projector_out", "-o", out, *RULE, *flags, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    meta = json.loads((folder / "meta.json").read_text())
    assert (report["features"]["height"], report["features"]["width"], report["features"]["dim"]) == (*meta["grid"], 48)
    assert report["features"]["layout"] == meta["layout"]
    assert report["features"]["dropLeading"] == meta["leading"]
    assert (report["slowTokens"], report["fastTokens"]) == ("slow_tokens", "fast_tokens")
    # The tower's own output is unchanged, and the tokens are exact, for short and long videos.
    reference_run = np.load(folder / "reference.npz")
    projected = ort_session(out).run(["projector_out"], {"pixel_values": reference_run["pixel_values"]})[0]
    assert np.abs(projected - reference_run["projector_out"]).max() <= 1e-5
    check_tokens(out, grid, [1, 5, 16, 37], zlib.crc32(f"{tower}{exporter}".encode()))
    # The same input and options give the same bytes.
    again = tmp_path / "again.onnx"
    assert run("tokens", "--into", folder / "model.onnx", "--after", "projector_out", "-o", again, *RULE, *flags).returncode == 0
    assert again.read_bytes() == out.read_bytes()


# (tower, flags, what the refusal must say)
REFUSALS = [
    ("clip", [], "dim 1 holds 65 tokens, 1 more than the 8x8"),
    ("clip", ["--height", 8, "--width", 8], "a 8x8 grid needs 64; give --drop-leading 1"),
    ("convnext", [], "give --layout nhwc or --layout nchw"),
    ("convnext", ["--layout", "nhwc", "--dim", 48], "dim 3 (dim) is 8, but --dim is 48"),
    ("siglip", ["--height", 4, "--width", 24], "--height 4 --width 24 do not match the patch grid the graph computes it from: 8x12"),
    ("siglip", ["--dim", 32], "dim 2 (dim) is 48, but --dim is 32"),
    ("siglip", ["--layout", "nchw"], "--layout nchw expects [frames, d, h, w]"),
    ("siglip", ["--drop-leading", 1], "the 8x12 (node"),
]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("tower,flags,message", REFUSALS, ids=[f"{r[0]}:{' '.join(map(str, r[1])) or 'no flags'}" for r in REFUSALS])
def test_wrong_or_missing_flags_are_refused(tower, flags, message, exporter, tmp_path):
    model = fixture(tower, exporter) / "model.onnx"
    out = tmp_path / "out.onnx"
    result = run("tokens", "--into", model, "--after", "projector_out", "-o", out, *RULE, *flags)
    assert result.returncode != 0
    assert result.stderr.startswith(f"error: {model}: "), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_unrecorded_channels_first_value(exporter, tmp_path):
    """The issue's silent failure: --after the tower's conv output [F, 32, 8, 8] (no shape
    recorded by TorchScript) with grid flags was read as [F, h, w, d]. Now the proven shape
    makes only nchw fit those flags, and with no flags at all the tool refuses."""
    source = onnx.load(fixture("convnext", exporter) / "model.onnx")
    conv = next(n for n in source.graph.node if n.output[0] == "projector_out")
    assert conv.op_type == "Conv"
    value = conv.input[0]  # the tower's last feature map, the projector's input
    if exporter == "torchscript":
        assert value not in {v.name for v in source.graph.value_info}
    # Make it visible for the comparison, recording no dims (the checker wants a rank).
    source.graph.output.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, [None] * 4))
    vision = tmp_path / "vision.onnx"
    onnx.save(source, vision)

    refused = run("tokens", "--into", vision, "--after", value, "-o", tmp_path / "x.onnx", *RULE)
    assert refused.returncode != 0 and "give --layout nhwc or --layout nchw" in refused.stderr, refused.stderr
    assert not (tmp_path / "x.onnx").exists()

    out = tmp_path / "tokens.onnx"
    result = run("tokens", "--into", vision, "--after", value, "-o", out, *RULE, "--height", 8, "--width", 8, "--dim", 32)
    assert result.returncode == 0, result.stderr
    assert "layout nchw: detected" in result.stdout
    check_tokens(out, lambda x: x.transpose(0, 2, 3, 1), [3, 20], 5, output=value)


def opaque_tower(path, record=None):
    """[frames, 64, 8] through an op shape inference does not know (a custom domain)."""
    nodes = [helper.make_node("Mystery", ["pixels"], ["hidden"], name="mystery", domain="com.example"),
             helper.make_node("Identity", ["hidden"], ["features"], name="features")]
    graph = helper.make_graph(nodes, "opaque", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["frames", 64, 8])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, record)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)], ir_version=8)
    onnx.save(model, path)


def test_unprovable_shapes_are_refused_with_the_reason(tmp_path):
    vision = tmp_path / "opaque.onnx"
    opaque_tower(vision)
    result = run("tokens", "--into", vision, "--after", "features", "-o", tmp_path / "x.onnx", *RULE, "--height", 8, "--width", 8, "--dim", 8)
    assert result.returncode != 0
    assert result.stderr == (f"error: {vision}: cannot prove the shape of 'features': node 'mystery' (Mystery): op of domain "
                             f"'com.example' not known to shape inference; record its shape in the model's value_info "
                             f"(e.g. with onnx.shape_inference) or pick another --after value\n")
    # A recorded shape is used where inference stops (and the report says so); the grid split
    # of 64 tokens still cannot be read from such a graph, so it must be given.
    opaque_tower(vision, record=["frames", 64, 8])
    result = run("tokens", "--into", vision, "--after", "features", "-o", tmp_path / "x.onnx", *RULE)
    assert result.returncode != 0
    assert "dim 1 holds 64 tokens and the patch grid cannot be read from the graph: give --height and --width" in result.stderr
    assert list(tmp_path.iterdir()) == [vision]
    result = run("tokens", "--into", vision, "--after", "features", "-o", tmp_path / "x.onnx", *RULE, "--height", 4, "--width", 16)
    assert result.returncode == 0, result.stderr
    assert "shape taken from the model's recorded value info" in result.stdout
