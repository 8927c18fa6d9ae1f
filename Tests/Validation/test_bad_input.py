"""Bad input gets one clear line naming the file and the problem, a non-zero exit status,
nothing at OUT, and the input untouched."""
import os
import stat

import pytest

import external_model
from conftest import run


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def assert_refused(result, out, *needles):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == [] if out.parent.exists() else True


@pytest.fixture()
def folders(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return source, out


def test_truncated_file(folders):
    source, out = folders
    model = external_model.build(source)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    before = snapshot(source)
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "not an ONNX model")
    assert snapshot(source) == before


def test_random_bytes(folders):
    source, out = folders
    model = source / "noise.onnx"
    model.write_bytes(os.urandom(5000))
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "not an ONNX model")


def test_missing_model(folders):
    source, out = folders
    assert_refused(run("rewrite", source / "nope.onnx", "-o", out / "m.onnx"), out / "m.onnx", source / "nope.onnx")


@pytest.mark.parametrize("location, message", [
    ("../secret.bin", "leads outside the model's folder"),
    ("sub/../../secret.bin", "leads outside the model's folder"),
    ("/etc/passwd", "is absolute"),
])
def test_external_location_outside_the_folder(folders, location, message):
    source, out = folders
    (source.parent / "secret.bin").write_bytes(b"\0" * 8192)
    model = external_model.build(source)
    external_model.set_external(model, "w1", location=location)
    before = snapshot(source)
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "'w1'", location, message)
    assert snapshot(source) == before


def test_symlinked_external_location(folders):
    source, out = folders
    (source.parent / "secret.bin").write_bytes(b"\0" * 8192)
    os.symlink(source.parent / "secret.bin", source / "link.bin")
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="link.bin")
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "link.bin", "outside")


def test_offset_past_end(folders):
    source, out = folders
    model = external_model.build(source)
    external_model.set_external(model, "w2", offset=10**9)
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "'w2'", "past the end")


def test_length_past_end(folders):
    source, out = folders
    model = external_model.build(source)
    size = (source / "model.onnx.data").stat().st_size
    external_model.set_external(model, "w2", length=size + 4)
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "'w2'")


def test_missing_data_file(folders):
    source, out = folders
    model = external_model.build(source)
    (source / "model.onnx.data").unlink()
    assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", model, "model.onnx.data", "does not exist")


def test_output_folder_missing(folders):
    source, out = folders
    model = external_model.build(source)
    target = out / "missing" / "m.onnx"
    result = run("rewrite", model, "-o", target)
    assert_refused(result, target, target, "does not exist")
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0 and not os.environ.get("CI_UNPRIVILEGED"),
                    reason="root can write into read-only folders; covered by the missing-folder test")
def test_output_folder_read_only(folders):
    source, out = folders
    model = external_model.build(source)
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert_refused(run("rewrite", model, "-o", out / "m.onnx"), out / "m.onnx", out / "m.onnx")
    finally:
        out.chmod(0o755)


def test_output_that_is_a_folder_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    (out / "m.onnx").mkdir()
    result = run("rewrite", model, "-o", out / "m.onnx")
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx"]


def test_output_equal_to_input_is_refused(folders):
    source, _ = folders
    model = external_model.build(source)
    before = snapshot(source)
    result = run("rewrite", model, "-o", model)
    assert result.returncode != 0 and "overwrite the input" in result.stderr
    assert snapshot(source) == before
