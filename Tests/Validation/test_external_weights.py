"""Models with external weights round-trip in every --weights mode: the same protobuf message
once weights are loaded, the same tensor bytes, bitwise-identical onnxruntime outputs, data
files hard-linked (link) or copied (copy) or gone (inline); and rewriting is deterministic.

Sources: a synthetic model saved by onnx's own writer (always), and every committed torch.onnx
export with external data under Tests/Fixtures (qwen2-dynamo among them) when present."""
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import external_model
from conftest import REPO, ort_session, run

FIXTURES = sorted(p.parent for p in (REPO / "Tests/Fixtures").glob("*/model.onnx.data"))
SOURCES = ["synthetic"] + [f.name for f in FIXTURES]
MODES = ["link", "copy", "inline", "auto"]


def make_source(tmp_path, name):
    """A private copy of the source (link mode adds links to its data file); returns the model path."""
    folder = tmp_path / "in" / name
    if name == "synthetic":
        folder.mkdir(parents=True)
        return external_model.build(folder)
    shutil.copytree(REPO / "Tests/Fixtures" / name, folder)
    return folder / "model.onnx"


def data_files(model_path):
    model = onnx.load(str(model_path), load_external_data=False)
    names = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.add({e.key: e.value for e in tensor.external_data}["location"])
    return sorted(names)


def load_full(model_path, scratch):
    """onnx.load with weights, through a private copy (onnx.load refuses hard-linked data files)."""
    scratch.mkdir(parents=True)
    for name in [Path(model_path).name] + data_files(model_path):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(model_path).parent / name, scratch / name)
    return onnx.load(str(scratch / Path(model_path).name))


def without_default_locations(model):
    """onnx's external-data loader sets data_location=DEFAULT explicitly on the tensors it
    loads; a tensor written inline simply has no such field. Same meaning, so drop the field."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in model.graph.initializer:
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    return model


def feeds_for(folder, session):
    reference = folder / "reference.npz"
    if reference.exists():
        stored = dict(np.load(reference))
        if all(v.name in stored for v in session.get_inputs()):
            return {v.name: stored[v.name] for v in session.get_inputs()}
    rng = np.random.default_rng(0)
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 3 for d in value.shape]
        if "int" in value.type:
            feeds[value.name] = rng.integers(0, 32, size=shape).astype(np.int64 if "64" in value.type else np.int32)
        elif "float16" in value.type:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float16)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def bitwise_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.tobytes() == b.tobytes() or (a.dtype.kind == "f" and np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SOURCES)
def test_round_trip(tmp_path, name, mode):
    source = make_source(tmp_path, name)
    inputs = data_files(source)
    assert inputs, f"{source}: the source has no external data, the test would prove nothing"
    expected = onnx.load(str(source))  # before any link exists
    original = ort_session(source)
    feeds = feeds_for(source.parent, original)
    want = original.run(None, feeds)

    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", source, "-o", out, "--weights", mode)
    assert result.returncode == 0, result.stderr

    # The whole message, weights loaded, equals the original's.
    got = load_full(out, tmp_path / "scratch")
    assert without_default_locations(got) == without_default_locations(expected), f"{mode}: onnx.load(OUT) differs from onnx.load(IN)"

    # Bitwise-identical outputs in onnxruntime (max abs diff == 0, NaN-aware).
    outputs = ort_session(out).run(None, feeds)
    assert len(outputs) == len(want)
    for index, (a, b) in enumerate(zip(want, outputs)):
        assert bitwise_equal(a, b), f"output {index}: max abs diff {np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))}"

    written = sorted(str(p.relative_to(out.parent)) for p in out.parent.rglob("*") if p.is_file())
    # An onnxruntime-genai folder stays one: its genai_config.json and config files come along.
    genai = ["config.json", "genai_config.json"] if (source.parent / "genai_config.json").exists() else []
    for name in genai:
        assert (out.parent / name).read_bytes() == (source.parent / name).read_bytes(), name
    if mode == "inline":
        assert written == sorted(["model.onnx", *genai]), written
        assert data_files(out) == []
        return
    assert data_files(out) == inputs, "data files renamed"
    assert written == sorted(["model.onnx", *inputs, *genai]), written
    for name in inputs:
        src, dst = (source.parent / name).stat(), (out.parent / name).stat()
        same_fs = src.st_dev == out.parent.stat().st_dev
        if mode == "link" and same_fs:
            assert (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino), f"{name}: link mode did not hard-link"
            assert src.st_nlink == 2
        elif mode in ("copy", "auto"):  # auto: a reflink where the filesystem has one, else a copy
            assert (src.st_dev, src.st_ino) != (dst.st_dev, dst.st_ino), f"{name}: copy mode shares the inode"
            assert (source.parent / name).read_bytes() == (out.parent / name).read_bytes()
            assert src.st_nlink == 1


@pytest.mark.parametrize("mode", MODES)
def test_rewriting_twice_is_byte_identical(tmp_path, mode):
    for name in SOURCES:
        source = make_source(tmp_path / name, name)
        outputs = []
        for attempt in ("first", "second"):
            out = tmp_path / name / attempt / "model.onnx"
            out.parent.mkdir(parents=True)
            result = run("rewrite", source, "-o", out, "--weights", mode)
            assert result.returncode == 0, result.stderr
            outputs.append(sorted((str(p.relative_to(out.parent)), p.read_bytes()) for p in out.parent.rglob("*") if p.is_file()))
        assert [n for n, _ in outputs[0]] == [n for n, _ in outputs[1]]
        for (file, a), (_, b) in zip(*outputs):
            assert a == b, f"{name} {mode}: {file} differs between two identical runs"


def test_default_mode_is_auto(tmp_path):
    """The CLI's default is --weights auto (reflink or copy: a separate inode, equal bytes), a
    deliberate change from issue 2's "link by default" so that onnx.load reads the output."""
    source = make_source(tmp_path, "synthetic")
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    assert run("rewrite", source, "-o", out).returncode == 0
    src, dst = source.parent / "model.onnx.data", out.parent / "model.onnx.data"
    assert src.stat().st_ino != dst.stat().st_ino and src.stat().st_nlink == 1
    assert src.read_bytes() == dst.read_bytes()
    assert onnx.load(str(out)) == onnx.load(str(source))


def test_link_into_the_input_folder_keeps_the_data_file(tmp_path):
    source = make_source(tmp_path, "synthetic")
    data = (source.parent / "model.onnx.data").read_bytes()
    out = source.parent / "copy.onnx"
    result = run("rewrite", source, "-o", out)
    assert result.returncode == 0, result.stderr
    assert (source.parent / "model.onnx.data").read_bytes() == data
    feeds = feeds_for(source.parent, ort_session(source))
    assert bitwise_equal(ort_session(source).run(None, feeds)[0], ort_session(out).run(None, feeds)[0])
