"""Hostile files, faults and limits (issue 13): each class of the issue's table, with its
example. Every refusal: non-zero exit (no signal), one `error:` line naming the file, nothing
new in OUT's folder, every input file unchanged (bytes and mtime), within 10 s."""
import os
import stat
import time

import pytest

import external_model
from conftest import run
from test_bad_input import refused, snapshot


@pytest.fixture()
def folders(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return source, out


# --- protobuf wire bytes, written by hand: onnx's own Python writer has a recursion limit ---

def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested(levels, inner):
    """Messages nested `len(levels)` deep without quadratic copying: level i is
    prefix_i + field(number_i, level i+1), outermost first; the innermost holds `inner`."""
    headers = []
    length = len(inner)
    for prefix, number in reversed(levels):
        header = prefix + varint(number << 3 | 2) + varint(length)
        headers.append(header)
        length += len(header)
    return b"".join(reversed(headers)) + inner


def model_bytes(graph):
    return varint(1 << 3) + varint(8) + field(8, varint(2 << 3) + varint(17)) + field(7, graph)


def if_nest(depth):
    """A graph whose only node is an If whose then_branch is such a graph, `depth` graphs deep."""
    node_prefix = field(4, b"If") + field(1, b"cond") + field(2, b"y")
    attribute_prefix = field(1, b"then_branch") + varint(20 << 3) + varint(5)
    levels = []
    for _ in range(depth - 1):
        levels += [(b"", 1), (node_prefix, 5), (attribute_prefix, 6)]  # graph.node, node.attribute, attribute.g
    innermost = field(1, field(4, b"Identity") + field(1, b"cond") + field(2, b"y"))
    return model_bytes(nested(levels, innermost) if levels else innermost)


def sequence_nest(depth):
    """A graph input whose type is a sequence of a sequence of ... `depth` deep."""
    tensor_type = field(1, varint(1 << 3) + varint(1))
    levels = [(b"", 4), (b"", 1)] * depth  # TypeProto.sequence_type, Sequence.elem_type
    value_type = nested(levels, tensor_type)
    value_info = field(1, b"x") + field(2, value_type)
    return model_bytes(field(11, value_info))


def timed_refusal(model, out, *needles, **kwargs):
    start = time.monotonic()
    line = refused(model, out, *needles, timeout=10, **kwargs)
    assert time.monotonic() - start < 10
    return line


# --- crash on a small file ---

def test_if_subgraphs_nested_3000_deep_are_refused(folders):
    source, out = folders
    model = source / "deep-if.onnx"
    model.write_bytes(if_nest(3000))
    assert model.stat().st_size < 200_000
    line = timed_refusal(model, out / "m.onnx", f"error: {model}: ", "subgraphs nest more than 64 levels")
    for command in (("inspect", model), ("inspect", model, "--layers"), ("plan", model, "--every", "2")):
        result = run(*command, timeout=10)
        assert 0 < result.returncode < 128, result.stderr
        assert result.stderr.splitlines() == [line] or result.stderr.count("\n") == 1


def test_sequence_type_nested_50000_deep_is_refused(folders):
    source, out = folders
    model = source / "deep-seq.onnx"
    model.write_bytes(sequence_nest(50000))
    timed_refusal(model, out / "m.onnx", f"error: {model}: ", "messages nest more than 256 levels")


def test_nesting_within_the_limits_is_read(folders):
    """The limits refuse nothing a real model has: 8 nested If graphs and a 20-deep sequence read fine."""
    source, out = folders
    for name, data in (("if8.onnx", if_nest(8)), ("seq20.onnx", sequence_nest(20))):
        model = source / name
        model.write_bytes(data)
        result = run("inspect", model, timeout=10)
        assert result.returncode == 0, result.stderr


def test_if_nesting_just_over_the_graph_limit(folders):
    source, out = folders
    ok, over = source / "if64.onnx", source / "if65.onnx"
    ok.write_bytes(if_nest(64))
    over.write_bytes(if_nest(65))
    assert run("inspect", ok, timeout=10).returncode == 0
    timed_refusal(over, out / "m.onnx", "subgraphs nest more than 64 levels")


# --- special files read ---

def test_fifo_as_model_path_is_refused_without_blocking(folders):
    source, out = folders
    fifo = source / "model.onnx"
    os.mkfifo(fifo)
    timed_refusal(fifo, out / "m.onnx", f"error: {fifo}: ", "FIFO")


def test_fifo_as_data_file_is_refused_by_type(folders):
    source, out = folders
    model = external_model.build(source)
    data = source / "model.onnx.data"
    data.unlink()
    os.mkfifo(data)
    line = timed_refusal(model, out / "m.onnx", f"error: {model}: ", "is a FIFO, not a regular file")
    assert "does not exist" not in line


# --- special files replaced ---

def test_fifo_as_output_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    target = out / "m.onnx"
    os.mkfifo(target)
    before = sorted(os.listdir(out))
    result = run("rewrite", model, "-o", target, timeout=10)
    assert 0 < result.returncode < 128
    assert result.stderr.splitlines() == [f"error: {target}: cannot write output: it is a FIFO, not a regular file"]
    assert stat.S_ISFIFO(target.lstat().st_mode), "the FIFO was replaced"
    assert sorted(os.listdir(out)) == before


@pytest.mark.parametrize("what", ["weight-map", "data"])
def test_fifo_as_companion_output_is_refused(folders, what):
    source, out = folders
    model = external_model.build(source)
    snap = snapshot(source)
    target = out / ("m.weight-map.json" if what == "weight-map" else "model.onnx.data")
    os.mkfifo(target)
    extra = ("--weight-map", target) if what == "weight-map" else ()
    result = run("rewrite", model, "-o", out / "m.onnx", *extra, timeout=10)
    assert 0 < result.returncode < 128
    assert result.stderr.splitlines() == [f"error: {target}: cannot write output: it is a FIFO, not a regular file"]
    assert stat.S_ISFIFO(target.lstat().st_mode)
    assert sorted(os.listdir(out)) == [target.name]
    assert snapshot(source) == snap


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_character_device_as_output_is_refused_as_root(folders):
    """`-o /dev/null` as root, without touching /dev: the same device (1, 3) made in a temp folder."""
    source, out = folders
    model = external_model.build(source)
    null = out / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run("rewrite", model, "-o", null, timeout=10)
    assert 0 < result.returncode < 128
    assert result.stderr.splitlines() == [f"error: {null}: cannot write output: it is a character device, not a regular file"]
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(os.listdir(out)) == ["null"]


# --- input data destroyed ---

def test_weight_map_onto_the_input_data_file_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    data = source / "model.onnx.data"
    line = refused(model, out / "m.onnx", f"error: {data}: ", "which this run reads",
                   extra=("--weight-map", data), timeout=10)
    assert str(data) in line


def test_weight_map_onto_the_input_model_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    refused(model, out / "m.onnx", f"error: {model}: ", extra=("--weight-map", model), timeout=10)


def test_weight_map_onto_the_input_data_under_another_spelling_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    (source / "alias.data").symlink_to("model.onnx.data")
    refused(model, out / "m.onnx", "which this run reads", extra=("--weight-map", source / "alias.data"), timeout=10)


def test_weight_map_onto_the_output_model_is_refused(folders):
    source, out = folders
    model = external_model.build(source)
    refused(model, out / "m.onnx", "two files at one path", extra=("--weight-map", out / "m.onnx"), timeout=10)


def test_output_beside_input_keeps_its_data_in_place(folders):
    """Writing next to the input is still allowed: its data file is the output's, untouched."""
    source, _ = folders
    model = external_model.build(source)
    data = source / "model.onnx.data"
    before = (data.read_bytes(), data.stat().st_mtime_ns)
    result = run("rewrite", model, "-o", source / "second.onnx", timeout=10)
    assert result.returncode == 0, result.stderr
    assert "already in place" in result.stdout
    assert (data.read_bytes(), data.stat().st_mtime_ns) == before


# --- errors that lie / names ---

def test_newline_in_a_location_cannot_forge_an_error_line(folders):
    source, out = folders
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="x\nerror: forged")
    line = refused(model, out / "m.onnx", f"error: {model}: ", "x\\nerror: forged", timeout=10)
    assert line.count("error:") == 2  # ours, and the escaped text inside the quotes
