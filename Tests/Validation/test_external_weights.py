"""External weights round-trip in every --weights mode, and rewriting is deterministic."""
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import external_model
from conftest import REPO, ort_session, run

FIXTURE = REPO / "Tests/Fixtures/qwen2-dynamo/model.onnx"


def sources(tmp_path):
    (tmp_path / "synthetic").mkdir()
    found = [external_model.build(tmp_path / "synthetic")]
    if FIXTURE.exists():
        # A private copy: link mode adds links to the data file, and onnx.load refuses data
        # files with several links.
        copy = tmp_path / "fixture"
        shutil.copytree(FIXTURE.parent, copy)
        found.append(copy / FIXTURE.name)
    return found


def tensor_bytes(model_path):
    """Each initializer's raw bytes, read by hand (onnx.load refuses hard-linked data)."""
    model = onnx.load(str(model_path), load_external_data=False)
    values = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            with open(Path(model_path).parent / entries["location"], "rb") as f:
                f.seek(int(entries.get("offset", 0)))
                values[tensor.name] = f.read(int(entries["length"]))
        else:
            values[tensor.name] = onnx.numpy_helper.to_array(tensor).tobytes()
    return values


def feeds_for(session):
    rng = np.random.default_rng(0)
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 5 for d in value.shape]
        if "int" in value.type:
            feeds[value.name] = rng.integers(0, 64, size=shape).astype(np.int64)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("mode", ["link", "copy", "inline", "auto"])
def test_round_trip_in_every_mode(tmp_path, mode):
    for source in sources(tmp_path):
        out = tmp_path / f"out-{mode}-{source.parent.name}" / "model.onnx"
        out.parent.mkdir()
        result = run("rewrite", source, "-o", out, "--weights", mode)
        assert result.returncode == 0, result.stderr
        a, b = onnx.load(source, load_external_data=False), onnx.load(out, load_external_data=False)
        assert a.graph.node == b.graph.node
        assert tensor_bytes(source) == tensor_bytes(out)
        original, rewritten = ort_session(source), ort_session(out)
        feeds = feeds_for(original)
        for x, y in zip(original.run(None, feeds), rewritten.run(None, feeds)):
            assert np.abs(x - y).max() == 0
        data_in = {p.name for p in source.parent.iterdir() if p.suffix == ".data"}
        if mode == "inline":
            assert not any(p.suffix == ".data" for p in out.parent.iterdir())
            assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in onnx.load(out, load_external_data=False).graph.initializer)
        else:
            for name in data_in:
                src, dst = (source.parent / name).stat(), (out.parent / name).stat()
                if mode == "link":
                    assert (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino), "link mode must hard-link"
                elif mode == "copy":
                    assert src.st_ino != dst.st_ino
                    assert (source.parent / name).read_bytes() == (out.parent / name).read_bytes()


def test_rewriting_twice_is_byte_identical(tmp_path):
    for source in sources(tmp_path):
        outputs = []
        for name in ("first", "second"):
            out = tmp_path / f"{name}-{source.parent.name}" / "model.onnx"
            out.parent.mkdir()
            assert run("rewrite", source, "-o", out, "--weights", "copy").returncode == 0
            outputs.append(sorted((p.name, p.read_bytes()) for p in out.parent.iterdir()))
        assert outputs[0] == outputs[1]


def test_link_into_the_input_folder_keeps_the_data_file(tmp_path):
    (tmp_path / "in").mkdir()
    source = external_model.build(tmp_path / "in")
    data = (tmp_path / "in/model.onnx.data").read_bytes()
    out = tmp_path / "in" / "copy.onnx"
    assert run("rewrite", source, "-o", out).returncode == 0
    assert (tmp_path / "in/model.onnx.data").read_bytes() == data
    feeds = feeds_for(ort_session(source))
    assert np.array_equal(ort_session(source).run(None, feeds)[0], ort_session(out).run(None, feeds)[0])
