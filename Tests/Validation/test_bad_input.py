"""Bad input gets one clear line naming the file and the problem, a non-zero exit status,
nothing at OUT (no model, no data file, no temporary file in OUT's folder), and the input
folder untouched (same files, bytes and mtimes)."""
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import external_model
from conftest import binary, run


def snapshot(folder):
    """Every entry under `folder`: bytes (or link target) and mtime, without following links."""
    state = {}
    for path in sorted(Path(folder).rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content = ("symlink", os.readlink(path))
        elif path.is_file() and info.st_size > 2**26:  # big sparse data: size, head and tail
            with open(path, "rb") as f:
                content = (info.st_size, f.read(2**20), f.seek(-2**20, 2) and f.read())
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = "folder"
        state[str(path.relative_to(folder))] = (content, info.st_mtime_ns)
    return state


def refused(model, out, *needles, watch=None, **kwargs):
    """Runs `rewrite model -o out` and asserts the refusal contract; returns the error line."""
    watch = watch or model.parent
    before = snapshot(watch)
    out_folder_before = sorted(os.listdir(out.parent)) if out.parent.is_dir() else None
    result = run("rewrite", model, "-o", out, *kwargs.pop("extra", ()), **kwargs)
    assert result.returncode != 0, f"exit 0 on bad input; stdout: {result.stdout}"
    assert result.returncode < 128 and result.returncode > 0, f"crashed: exit {result.returncode}: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {result.stderr!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert str(needle) in line, f"{needle!r} not in {line!r}"
    assert not os.path.lexists(out), f"{out} exists after a refusal"
    if out_folder_before is not None:
        assert sorted(os.listdir(out.parent)) == out_folder_before, "stray files left in OUT's folder"
    assert snapshot(watch) == before, "input folder changed"
    return line


def test_truncated_file(folders):
    source, out = folders
    model = external_model.build(source)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    refused(model, out / "m.onnx", f"error: {model}: ")


@pytest.mark.parametrize("cut", [1, 7, 100, -1])
def test_truncated_at_several_points(folders, cut):
    source, out = folders
    model = external_model.build(source)
    data = model.read_bytes()
    model.write_bytes(data[:cut])
    refused(model, out / "m.onnx", f"error: {model}: ")


def test_random_bytes(folders):
    source, out = folders
    model = source / "noise.onnx"
    model.write_bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    refused(model, out / "m.onnx", f"error: {model}: ")


def test_empty_file(folders):
    source, out = folders
    model = source / "empty.onnx"
    model.write_bytes(b"")
    refused(model, out / "m.onnx", model)


def test_missing_model(folders):
    source, out = folders
    refused(source / "nope.onnx", out / "m.onnx", source / "nope.onnx")


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "./../secret.bin", "sub/../model.onnx.data"])
def test_dot_dot_location(folders, location):
    """`..` is refused, even when it would land back inside the folder (the issue says "contains `..`")."""
    source, out = folders
    (source.parent / "secret.bin").write_bytes(b"\0" * 8192)
    (source / "sub").mkdir()
    model = external_model.build(source)
    external_model.set_external(model, "w1", location=location)
    refused(model, out / "m.onnx", model, location)


@pytest.mark.parametrize("location", ["/etc/passwd", "OUTSIDE_ABS"])
def test_absolute_location(folders, location):
    source, out = folders
    model = external_model.build(source)
    if location == "OUTSIDE_ABS":  # an absolute path that even names the model's own data file
        location = str(source / "model.onnx.data")
    external_model.set_external(model, "w1", location=location)
    refused(model, out / "m.onnx", model, location)


def test_symlinked_file_leading_outside(folders):
    source, out = folders
    (source.parent / "secret.bin").write_bytes(b"\0" * 8192)
    os.symlink(source.parent / "secret.bin", source / "link.bin")
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="link.bin")
    refused(model, out / "m.onnx", model, "link.bin")


def test_symlinked_folder_leading_outside(folders):
    source, out = folders
    outside = source.parent / "elsewhere"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"\0" * 8192)
    os.symlink(outside, source / "weights")
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="weights/w.bin")
    refused(model, out / "m.onnx", model, "weights/w.bin")


def test_relative_symlink_leading_outside(folders):
    source, out = folders
    (source.parent / "secret.bin").write_bytes(b"\0" * 8192)
    os.symlink("../secret.bin", source / "rel.bin")
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="rel.bin")
    refused(model, out / "m.onnx", model, "rel.bin")


def test_symlink_staying_inside_is_accepted(folders):
    """Guards against refusing too much: a link that stays in the folder is an ordinary file."""
    source, out = folders
    model = external_model.build(source)
    expected = onnx.load(str(model))
    os.symlink("model.onnx.data", source / "alias.data")
    for name in ("w1", "w2", "b"):
        external_model.set_external(model, name, location="alias.data")
    result = run("rewrite", model, "-o", out / "m.onnx", "--weights", "copy")
    assert result.returncode == 0, result.stderr
    assert not (out / "alias.data").is_symlink(), "copy mode copied a symlink"
    assert onnx.load(str(out / "m.onnx")) == expected  # onnx.load itself refuses symlinked data, so compare with the pre-link model


def test_offset_past_end(folders):
    source, out = folders
    model = external_model.build(source)
    external_model.set_external(model, "w2", offset=10**9)
    refused(model, out / "m.onnx", model, "'w2'")


def test_offset_exactly_at_end(folders):
    source, out = folders
    model = external_model.build(source)
    size = (source / "model.onnx.data").stat().st_size
    external_model.set_external(model, "w2", offset=size)
    refused(model, out / "m.onnx", model, "'w2'")


def test_length_past_end(folders):
    source, out = folders
    model = external_model.build(source)
    size = (source / "model.onnx.data").stat().st_size
    external_model.set_external(model, "w2", length=size + 4)
    refused(model, out / "m.onnx", model, "'w2'")


def test_offset_plus_length_past_end_by_one(folders):
    source, out = folders
    model = external_model.build(source)
    size = (source / "model.onnx.data").stat().st_size
    entries = {e.key: int(e.value) for e in onnx.load(str(model), load_external_data=False).graph.initializer[1].external_data
               if e.key in ("offset", "length")}
    external_model.set_external(model, "w2", offset=size - entries["length"] + 1)
    refused(model, out / "m.onnx", model, "'w2'")


def test_missing_data_file(folders):
    source, out = folders
    model = external_model.build(source)
    (source / "model.onnx.data").unlink()
    refused(model, out / "m.onnx", model, "model.onnx.data")


@pytest.mark.parametrize("mode", ["link", "copy", "inline"])
def test_bad_data_refused_in_every_mode(folders, mode):
    source, out = folders
    model = external_model.build(source)
    size = (source / "model.onnx.data").stat().st_size
    external_model.set_external(model, "w2", length=size + 4)
    refused(model, out / "m.onnx", model, "'w2'", extra=("--weights", mode))


def test_output_folder_missing(folders):
    source, out = folders
    model = external_model.build(source)
    target = out / "missing" / "m.onnx"
    refused(model, target, target.parent)
    assert list(out.iterdir()) == []


def test_output_parent_is_a_file(folders):
    source, out = folders
    model = external_model.build(source)
    (out / "plain").write_bytes(b"x")
    target = out / "plain" / "m.onnx"
    refused(model, target, target.parent)
    assert sorted(p.name for p in out.iterdir()) == ["plain"] and (out / "plain").read_bytes() == b"x"


def test_output_folder_read_only(folders, monkeypatch):
    source, out = folders
    model = external_model.build(source)
    if os.geteuid() != 0:
        out.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            refused(model, out / "m.onnx", out / "m.onnx")
        finally:
            out.chmod(0o755)
        return
    # Root writes anywhere, so run the CLI as `nobody` in a folder nobody may read but not write.
    # The binary runs from a copy in that folder: the clone may sit where nobody may not enter
    # (a `mktemp -d` folder is 0700).
    scratch = Path(tempfile.mkdtemp(prefix="slowfast-ro-"))
    try:
        scratch.chmod(0o755)
        shutil.copy2(binary(), scratch / "slowfast")
        (scratch / "slowfast").chmod(0o755)
        monkeypatch.setenv("SLOWFAST_BIN", str(scratch / "slowfast"))
        shutil.copytree(source, scratch / "in")
        (scratch / "out").mkdir(mode=0o755)
        for path in [scratch / "in", *(scratch / "in").iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        probe = run("--help", user=65534, group=65534)
        if probe.returncode != 0:
            pytest.skip(f"cannot run {binary()} as nobody: {probe.stderr.strip()}")
        refused(scratch / "in/model.onnx", scratch / "out/m.onnx", scratch / "out", user=65534, group=65534)
    finally:
        shutil.rmtree(scratch)


def test_output_that_is_a_folder_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    (out / "m.onnx").mkdir()
    result = run("rewrite", model, "-o", out / "m.onnx")
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert sorted(p.name for p in out.rglob("*")) == ["m.onnx"]


def test_output_equal_to_input_is_refused(folders):
    source, _ = folders
    model = external_model.build(source)
    before = snapshot(source)
    result = run("rewrite", model, "-o", model)
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert snapshot(source) == before


def test_inline_of_2_gib_or_more_is_refused(folders):
    """A sparse 2 GiB data file: inline mode must refuse (the result would not fit one protobuf)."""
    source, out = folders
    count = 2**29  # float32: exactly 2 GiB
    tensor = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[count])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "huge.bin"), ("offset", "0"), ("length", str(count * 4))):
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Identity", ["huge"], ["y"])], "huge", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [count])], [tensor])
    model = source / "huge.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with open(source / "huge.bin", "wb") as f:
        f.truncate(count * 4)
    refused(model, out / "m.onnx", out / "m.onnx", "2 GiB", extra=("--weights", "inline"), timeout=120)
