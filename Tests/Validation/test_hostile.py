"""Hostile files, faults and limits (issue 13): each class of the issue's table, with its
example. Every refusal: non-zero exit (no signal), one `error:` line naming the file, nothing
new in OUT's folder, every input file unchanged (bytes and mtime), within 10 s."""
import json
import os
import stat
import time

import pytest

import external_model
from conftest import run
from test_bad_input import refused, snapshot


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


@pytest.mark.parametrize("flag", ["--weight-map", "--layout"])
def test_fifo_or_oversized_weight_map_and_layout_are_refused_without_blocking(flag, folders):
    """A weight map or layer description is read whole: a FIFO blocked the run forever (the
    read waited for a writer), an empty file leaked Foundation's read buffer (found by the
    weight-map fuzz target); both are now read as regular files of bounded size."""
    source, out = folders
    fifo = source / "described.json"
    os.mkfifo(fifo)
    model = REPO / "Examples/qwen2-tiny/model.onnx"
    what = "the weight map" if flag == "--weight-map" else "the layer description"
    if flag == "--weight-map":
        command = ("weights", "export", model, "-o", out / "ckpt", flag, fifo)
    else:
        command = ("rewrite", model, "-o", out / "m.onnx", "--every", 2, flag, fifo)
    start = time.monotonic()
    result = run(*command, timeout=10)
    assert time.monotonic() - start < 10
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr == f"error: {fifo}: {what} is a FIFO, not a regular file\n", result.stderr
    assert list(out.iterdir()) == []
    empty = source / "empty.json"
    empty.write_bytes(b"")
    command = tuple(empty if part == fifo else part for part in command)
    result = run(*command, timeout=10)
    assert result.returncode != 0 and str(empty) in result.stderr and list(out.iterdir()) == []


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
    target = out / ("m.weight-map.json" if what == "weight-map" else "m.onnx.data")  # the data file is named after OUT
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


def test_output_beside_input_gets_a_data_file_of_its_own(folders):
    """Writing next to the input is allowed; the output's data file is named after it, so the
    input's stays untouched and no later rewrite of the input can change what the output reads
    (with --weights link it is a hard link: no copy)."""
    source, _ = folders
    model = external_model.build(source)
    data = source / "model.onnx.data"
    before = (data.read_bytes(), data.stat().st_mtime_ns)
    result = run("rewrite", model, "-o", source / "second.onnx", "--weights", "link", timeout=10)
    assert result.returncode == 0, result.stderr
    assert (data.read_bytes(), data.stat().st_mtime_ns) == before
    own = source / "second.onnx.data"
    assert own.read_bytes() == before[0] and own.stat().st_ino == data.stat().st_ino
    import onnx
    assert {e.value for t in onnx.load(str(source / "second.onnx"), load_external_data=False).graph.initializer
            for e in t.external_data if e.key == "location"} == {"second.onnx.data"}


def test_two_models_written_into_one_folder_keep_their_own_data(tmp_path):
    """shared/a.onnx, then shared/b.onnx, each from a model whose data file is model.onnx.data:
    each output reads its own data file, and a.onnx still computes what its input does."""
    import onnx
    inputs = {}
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        inputs[name] = external_model.build(tmp_path / name, seed=seed)
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("a", "b"):
        result = run("rewrite", inputs[name], "-o", shared / f"{name}.onnx", timeout=10)
        assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(shared)) == ["a.onnx", "a.onnx.data", "b.onnx", "b.onnx.data"]
    for name in ("a", "b"):
        got = {t.name: numpy_helper.to_array(t, base_dir=str(shared)) for t in onnx.load(str(shared / f"{name}.onnx")).graph.initializer}
        want = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(inputs[name])).graph.initializer}
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got), name


# --- errors that lie / names ---

def test_newline_in_a_location_cannot_forge_an_error_line(folders):
    source, out = folders
    model = external_model.build(source)
    external_model.set_external(model, "w1", location="x\nerror: forged")
    line = refused(model, out / "m.onnx", f"error: {model}: ", "x\\nerror: forged", timeout=10)
    assert line.count("error:") == 2  # ours, and the escaped text inside the quotes


# --- traps on untrusted numbers and option values ---

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
import numpy as np  # noqa: E402

from fixtures import FIXTURES  # noqa: E402

QWEN = next(f for f in FIXTURES if f.name == "qwen2-torchscript") / "model.onnx"
HUGE = 2**62


@pytest.mark.parametrize("args,needle", [
    (("--every", "1", "--init-std", "nan"), "--init-std: takes a finite number >= 0, not nan"),
    (("--every", "1", "--init-std", "inf"), "--init-std: takes a finite number >= 0, not inf"),
    (("--every", "1", "--init-std=-1"), "--init-std: takes a finite number >= 0, not -1.0"),
    (("--activation", "srelu", "--srelu-tr", "nan"), "--srelu-tr: takes a finite number > 0, not nan"),
    (("--activation", "srelu", "--srelu-fit-range=-inf,inf"), "--srelu-fit-range: takes LOW,HIGH, finite"),
    (("--activation", "srelu", "--srelu-fit-range=nan,8"), "--srelu-fit-range: takes LOW,HIGH, finite"),
    (("--activation", "srelu", "--srelu-channel-axis=-1", "--srelu-channels", "0"), "--srelu-channels: takes a channel count from 1 to 16777216, not 0"),
    (("--activation", "srelu", "--srelu-channel-axis=-1", "--srelu-channels=-1"), "--srelu-channels: takes a channel count from 1 to 16777216, not -1"),
    (("--activation", "srelu", "--srelu-channel-axis=-1", f"--srelu-channels={HUGE}"), f"not {HUGE}"),
    (("--activation", "srelu", "--activation-layers=-3"), "--activation-layers: takes A-B or one layer number >= 0"),
    (("--activation", "srelu", "--activation-layers=3-"), "--activation-layers: takes A-B or one layer number >= 0"),
    (("--hybrid-layers=-1",), "--hybrid-layers: takes layer numbers >= 0, not '-1'"),
    (("--every", "2", "--min-depth=-4"), "--min-depth: takes a layer number >= 0, not -4"),
])
def test_option_values_that_would_poison_the_output_are_refused(folders, args, needle):
    _, out = folders
    line = refused(QWEN, out / "m.onnx", needle, extra=args, timeout=10)
    assert line.startswith("error: --")


def test_max_depth_of_int64_max_is_answered_at_once(folders):
    _, out = folders
    start = time.monotonic()
    refused(QWEN, out / "m.onnx", "layer 8 does not exist", extra=("--every", "8", "--max-depth", str(2**63 - 1)), timeout=10)
    assert time.monotonic() - start < 10


def save_model(path, nodes, initializers, inputs, outputs):
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializers)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def any_output(name):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def hostile_channel_model(source, kind):
    if kind == "negative dims before a Relu":
        return save_model(source / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])], [],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, -5])], [any_output("y")])
    if kind == "ConvTranspose group 2^62":
        weight = numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "w")
        return save_model(source / "m.onnx", [helper.make_node("ConvTranspose", ["x", "w"], ["c"], group=HUGE),
                                              helper.make_node("Relu", ["c"], ["y"])], [weight],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])], [any_output("y")])
    if kind == "Concat of two [4, 2^62] weights":
        # Declared only (no values): as external data such dims are refused when the model is read.
        weights = [TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, HUGE]) for name in ("a", "b")]
        return save_model(source / "m.onnx", [helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
                                              helper.make_node("Relu", ["c"], ["y"])], weights, [], [any_output("y")])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["negative dims before a Relu", "ConvTranspose group 2^62", "Concat of two [4, 2^62] weights"])
def test_untrusted_channel_numbers_do_not_trap(folders, kind):
    """These trapped (SIGILL/SIGSEGV) in the SReLU pass; a channel count outside 1...2^24 is unknown."""
    source, out = folders
    model = hostile_channel_model(source, kind)
    refused(model, out / "m.onnx", f"error: {model}: ", "cannot tell its channel count", extra=("--activation", "srelu"), timeout=10)


def refused_command(out_folder, *args):
    before = sorted(os.listdir(out_folder))
    start = time.monotonic()
    result = run(*args, timeout=10)
    assert time.monotonic() - start < 10
    assert 0 < result.returncode < 128, f"exit {result.returncode}: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert sorted(os.listdir(out_folder)) == before
    return lines[0]


@pytest.mark.parametrize("flags,needle", [
    (("--preset", "s2t4", "--frames", HUGE, "--height", 4, "--width", 4, "--dim", 8), f"--frames: takes a number up to 65536, not {HUGE}"),
    (("--preset", "s2t4", "--height", HUGE, "--width", HUGE, "--dim", 8), "--height: takes a number up to 4096"),
    (("--preset", "s2t4", "--height", 4, "--width", 4, "--dim", HUGE), "--dim: takes a number up to 131072"),
    (("--stride", HUGE, "--temporal-kernel", 4, "--height", 4, "--width", 4, "--dim", 8), "--stride: takes a number from 1 to 65536"),
    (("--preset", "s2t4", "--min-fast-frames", HUGE, "--height", 4, "--width", 4, "--dim", 8), "--min-fast-frames: takes a number from 0 to 65536"),
    (("--preset", "s2t4", "--spatial-pool", 0, "--height", 4, "--width", 4, "--dim", 8), "--spatial-pool: takes a number from 1 to 4096, not 0"),
])
def test_tokens_numbers_near_2_62_are_refused(folders, flags, needle):
    _, out = folders
    line = refused_command(out, "tokens", "-o", out / "t.onnx", *flags)
    assert needle in line


def test_tokens_at_the_limits_does_not_trap(folders):
    _, out = folders
    result = run("tokens", "-o", out / "t.onnx", "--stride", 65536, "--temporal-kernel", 65536, "--height", 4096,
                 "--width", 4096, "--dim", 131072, "--frames", 65536, "--min-fast-frames", 65536, timeout=10)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("flags,needle", [
    (("--frames", str(HUGE)), f"--frames: takes a number from 1 to 65536, not {HUGE}"),
    (("--tokens-per-frame", HUGE), "--tokens-per-frame: takes a number from 1 to 16777216"),
    (("--hidden", HUGE), f"hidden size: takes a number from 1 to 131072, not {HUGE}"),
    (("--layers", HUGE), "layers: takes a number from 1 to 4096"),
    (("--stride", HUGE), "--stride: takes a number from 1 to 65536"),
])
def test_cost_numbers_near_2_62_are_refused(folders, flags, needle):
    _, out = folders
    line = refused_command(out, "cost", "--preset", "qwen2-7b", *flags)
    assert needle in line


def test_cost_at_the_limits_does_not_trap():
    result = run("cost", "--layers", 4096, "--hidden", 131072, "--heads", 4096, "--kv-heads", 4096, "--head-dim", 131072,
                 "--intermediate", 1048576, "--vocab", 16777216, "--frames", 65536, "--tokens-per-frame", 16777216,
                 "--text-tokens", 1048576, "--bytes-per-element", 16, timeout=10)
    assert result.returncode == 0, result.stderr


# --- hangs on small inputs ---

def alias_bomb():
    lines = ['l0: &l0 ["ha","ha","ha","ha","ha","ha","ha","ha","ha","ha"]']
    for k in range(1, 12):
        lines.append(f"l{k}: &l{k} [" + ",".join([f"*l{k - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def adapter_text(extra=""):
    return (REPO_ADAPTER.read_text() + "\n" + extra)


from conftest import REPO  # noqa: E402

REPO_ADAPTER = REPO / "Adapters/hf-torch-eager.yaml"


def refused_adapter(adapter, needle, culprit=None):
    """`--adapter adapter` is refused within 10 s with one error line naming `culprit` (the
    adapter, or the file it includes that is at fault), which is left unchanged."""
    culprit = culprit or adapter
    before = (culprit.read_bytes(), culprit.stat().st_mtime_ns)
    start = time.monotonic()
    result = run("inspect", QWEN, "--layers", "--adapter", adapter, timeout=10)
    assert time.monotonic() - start < 10
    assert 0 < result.returncode < 128, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {culprit}: "), result.stderr
    assert needle in lines[0], lines[0]
    assert (culprit.read_bytes(), culprit.stat().st_mtime_ns) == before


def test_yaml_alias_bomb_is_refused(tmp_path):
    adapter = tmp_path / "bomb.yaml"
    adapter.write_text(adapter_text("bomb:\n" + "".join("  " + line + "\n" for line in alias_bomb().splitlines())))
    assert adapter.stat().st_size < 8192
    refused_adapter(adapter, "more than 100000 YAML nodes with aliases expanded")


def test_yaml_alias_bomb_in_an_included_pattern_library_is_refused(tmp_path):
    """An included NAME.patterns.yaml gets the same bounds as the adapter that includes it."""
    library = tmp_path / "bomb.patterns.yaml"
    library.write_text("patterns: {}\nbomb:\n" + "".join("  " + line + "\n" for line in alias_bomb().splitlines()))
    adapter = tmp_path / "includes-bomb.yaml"
    adapter.write_text(REPO_ADAPTER.read_text().replace("include: [hf-torch.patterns.yaml]",
                                                        "include: [bomb.patterns.yaml, hf-torch.patterns.yaml]"))
    assert "bomb.patterns.yaml" in adapter.read_text() and library.stat().st_size < 8192
    refused_adapter(adapter, "more than 100000 YAML nodes with aliases expanded", culprit=library)


def test_use_fan_out_is_refused(tmp_path):
    """Each pattern uses the next one twice: 2^25 nodes in about 1.3 KB (under the depth limit of 64)."""
    levels = 25
    patterns = "".join(f"  p{k}: {{op: Add, inputs: [{{use: p{k + 1}}}, {{use: p{k + 1}}}]}}\n" for k in range(levels))
    patterns += f"  p{levels}: {{any: true}}\n"
    adapter = tmp_path / "fan.yaml"
    adapter.write_text("name: fan\nresidual: add\npatterns:\n" + patterns + "attention: {use: p0}\ninputNorm: {any: true}\n")
    assert adapter.stat().st_size < 1400
    refused_adapter(adapter, "patterns expand to more than 100000 nodes")


def with_layer_index(pattern):
    """The built-in eager adapter with a layerIndex of its own (it overrides the library's)."""
    text = REPO_ADAPTER.read_text()
    assert "\nlayerIndex:" not in text
    return text.replace("\ninclude: [hf-torch.patterns.yaml]", f"\nlayerIndex:\n  - nodeName: '{pattern}'\ninclude: [hf-torch.patterns.yaml]", 1)


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|aa)*b", "((ab)*)+", "(x+x+)+y", "(a)\\1"])
def test_catastrophic_layer_index_patterns_are_refused(tmp_path, pattern):
    adapter = tmp_path / "regex.yaml"
    adapter.write_text(with_layer_index(pattern))
    assert pattern in adapter.read_text()
    refused_adapter(adapter, "is refused")


@pytest.mark.parametrize("pattern", ["layers\\.(\\d+)/", "(?:model/)?layers\\.(\\d+)", "blocks?\\.(\\d{1,4})", "(layer|block)_(\\d+)"])
def test_ordinary_layer_index_patterns_are_accepted(tmp_path, pattern):
    adapter = tmp_path / "ok.yaml"
    adapter.write_text(with_layer_index(pattern))
    result = run("inspect", QWEN, "--layers", "--adapter", adapter, timeout=10)
    assert "is refused" not in result.stderr


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|aa)*b", "(a)\\1"])
def test_catastrophic_activation_scope_is_refused_before_reading(folders, pattern):
    """--activation-scope goes through the same bounded regex as layerIndex patterns: refused
    up front, even with a model path that does not exist."""
    _, out = folders
    start = time.monotonic()
    result = run("rewrite", out / "missing.onnx", "-o", out / "o.onnx", "--activation", "srelu",
                 "--activation-scope", pattern, timeout=10)
    assert time.monotonic() - start < 10
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is refused" in lines[0], result.stderr
    assert os.listdir(out) == []


def test_activation_scope_skips_names_over_4_kib(folders):
    """A node name longer than the bound is never searched: out of scope, answered at once."""
    source, out = folders
    import onnx
    model = relu_model(source / "m.onnx")
    proto = onnx.load(str(model))
    relu = next(node for node in proto.graph.node if node.op_type == "Relu")
    relu.name += "/" + "a" * 5000
    long_named = source / "long.onnx"
    onnx.save(proto, str(long_named))
    result = run("rewrite", long_named, "-o", out / "o.onnx", "--activation", "srelu", "--activation-scope", "act/Relu", timeout=10)
    assert result.returncode == 1 and "0 sites" in result.stderr, result.stderr
    result = run("rewrite", model, "-o", out / "o.onnx", "--activation", "srelu", "--activation-scope", "act/Relu", timeout=10)
    assert result.returncode == 0, result.stderr


def test_attention_scale_of_1e_minus_6_does_not_trap(folders):
    """sdpa's sqrt(scale) constants set to 1e-6 once gave head_dim 1e24 ("Double value cannot be
    converted to Int"). Head dims now come from shapes and the scale is a value of its own:
    the model is described with its real dims and rewritten, no trap."""
    import onnx
    source, out = folders
    fixture = next(f for f in FIXTURES if f.name == "qwen2-torchscript-sdpa") / "model.onnx"
    model = onnx.load(str(fixture))
    changed = 0
    for node in model.graph.node:
        if node.op_type == "Constant" and "/self_attn/" in node.name + node.output[0]:
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.size == 1 and value.dtype.kind == "f" and float(value.reshape(-1)[0]) == 0.5:
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(1e-6, dtype=value.dtype)))
                changed += 1
    assert changed == 12  # two per layer, six layers
    path = source / "model.onnx"
    onnx.save(model, str(path))
    result = run("rewrite", path, "-o", out / "m.onnx", "--every", "2", timeout=10)
    assert result.returncode == 0, result.stderr
    result = run("inspect", path, "--layers", "--json", timeout=10)
    assert result.returncode == 0, result.stderr
    dims = json.loads(result.stdout)["layout"]["dimensions"]
    assert (dims["numHeads"], dims["numKVHeads"], dims["headDim"]) == (4, 2, 16)


def test_two_external_tensors_of_2_62_bytes_are_refused_by_inspect(folders):
    source, out = folders
    (source / "small.bin").write_bytes(bytes(64))
    tensors = []
    for name in ("e1", "e2"):
        tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[HUGE])
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value="small.bin")
        tensors.append(tensor)
    model = save_model(source / "m.onnx", [helper.make_node("Add", ["e1", "e2"], ["y"])], tensors, [],
                       [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    before = snapshot(source)
    result = run("inspect", model, timeout=10)
    assert 0 < result.returncode < 128, result.stderr
    assert result.stderr.splitlines() == [f"error: {model}: tensor 'e1': dims [{HUGE}] are negative or too large for a tensor"]
    assert snapshot(source) == before
    refused(model, out / "o.onnx", "are negative or too large", timeout=10)


def vision_model(source, kind):
    if kind == "Concat of two [4, 2^62, 2, 8] weights":
        a = TensorProto(name="a", data_type=TensorProto.FLOAT, dims=[4, HUGE, 2, 8])
        b = TensorProto(name="b", data_type=TensorProto.FLOAT, dims=[4, HUGE, 2, 8])
        return save_model(source / "v.onnx", [helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
                                              helper.make_node("Relu", ["c"], ["y"])], [a, b], [], [any_output("y")])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["frames", 3, HUGE, HUGE])
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[8, 3, 2**40, 2**40])
    conv = helper.make_node("Conv", ["x", "w"], ["c"], strides=[HUGE, HUGE], pads=[HUGE] * 4, dilations=[HUGE, HUGE])
    return save_model(source / "v.onnx", [conv, helper.make_node("Relu", ["c"], ["y"])], [w], [x], [any_output("y")])


@pytest.mark.parametrize("kind", ["Concat of two [4, 2^62, 2, 8] weights", "Conv with strides, pads and dilations of 2^62"])
def test_shape_inference_on_numbers_near_2_62_does_not_trap(folders, kind):
    source, out = folders
    model = vision_model(source, kind)
    before = snapshot(source)
    line = refused_command(out, "tokens", "--into", model, "--after", "y", "-o", out / "o.onnx", "--preset", "s1t4",
                           "--height", 2, "--width", 2, "--dim", 8)
    assert line.startswith(f"error: {model}: ")
    assert ("arithmetic overflow" in line) if "Conv" in kind else ("?" in line)
    assert snapshot(source) == before


@pytest.mark.parametrize("key,value", [("hiddenSize", -5), ("headDim", HUGE), ("numHeads", 0), ("numKVHeads", -1), ("numLayers", HUGE)])
def test_layout_json_with_negative_or_huge_dims_is_refused(folders, key, value):
    import json
    source, out = folders
    result = run("inspect", QWEN, "--layers", "--json", timeout=10)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert key in report["layout"]["dimensions"]
    report["layout"]["dimensions"][key] = value
    layout = source / "layout.json"
    layout.write_text(json.dumps(report))
    line = refused(QWEN, out / "m.onnx", f"error: {layout}: {key} is {value}, outside", extra=("--every", "2", "--layout", layout), timeout=10)
    assert line.count("\n") == 0


@pytest.mark.parametrize("field,value,needle", [("epsilon", -1, "inputNorm epsilon is -1"), ("epsilon", 0, "inputNorm epsilon is 0"),
                                                 ("attentionScale", 0, "attentionScale is 0"),
                                                 ("attentionSoftcap", -3, "attentionSoftcap is -3")])
def test_layout_json_with_values_that_make_nan_is_refused(folders, field, value, needle):
    """Issue 21: a layout whose norm epsilon is -1 made every output NaN at default init; an
    epsilon of 0 or below, a score scale of 0 or a negative soft cap are refused by name."""
    import json
    source, out = folders
    result = run("inspect", QWEN, "--layers", "--json", timeout=10)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    layer = report["layout"]["layers"][0]
    if field == "epsilon":
        layer["inputNorm"]["epsilon"] = value
    else:
        layer[field] = value
    layout = source / "layout.json"
    layout.write_text(json.dumps(report))
    line = refused(QWEN, out / "m.onnx", f"error: {layout}: layer 0 {needle}", extra=("--every", "2", "--layout", layout), timeout=10)
    assert line.count("\n") == 0


# --- interrupted and concurrent writes ---

import signal  # noqa: E402
import subprocess  # noqa: E402

from conftest import binary, debug_binary  # noqa: E402


def one_gib_model(folder):
    """A model whose one tensor lives in a sparse 1 GiB data file (a copy takes seconds)."""
    count = 2**28
    tensor = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[count])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "huge.bin"), ("offset", "0"), ("length", str(count * 4))):
        tensor.external_data.add(key=key, value=value)
    model = save_model(folder / "huge.onnx", [helper.make_node("Identity", ["huge"], ["y"])], [tensor], [],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [count])])
    with open(folder / "huge.bin", "wb") as f:
        f.truncate(count * 4)
    return model


def copying(process, out, timeout=8):
    """Waits until `process` holds an open file in `out` (a staged file: anonymous, or a hidden
    temporary) that has bytes in it, i.e. the copy is under way; False if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            descriptors = os.listdir(f"/proc/{process.pid}/fd")
        except OSError:
            break
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/{process.pid}/fd/{fd}")
                if target.startswith(str(out) + "/") and os.stat(f"/proc/{process.pid}/fd/{fd}").st_size > 0:
                    return process.poll() is None
            except OSError:
                continue
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_run_killed_during_a_large_copy_leaves_nothing(folders, signum):
    source, out = folders
    model = one_gib_model(source)
    before = snapshot(source)
    process = subprocess.Popen([str(binary()), "rewrite", model, "-o", out / "m.onnx", "--weights", "copy"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert copying(process, out), "the run ended before its copy was seen in progress: the test proves nothing"
    process.send_signal(signum)
    process.wait(timeout=10)
    assert process.returncode == -signum
    assert os.listdir(out) == [], "a killed run left files in OUT's folder"
    (source.parent / "small").mkdir()
    small = external_model.build(source.parent / "small")
    result = run("rewrite", small, "-o", out / "m.onnx", timeout=10)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["m.onnx", "m.onnx.data"]
    assert snapshot(source) == before


def test_stale_named_temporaries_of_dead_runs_are_removed(folders):
    """Where O_TMPFILE is missing, temporaries carry the process id; a later run removes those
    whose process is gone, and leaves those of a live process alone."""
    source, out = folders
    model = external_model.build(source)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".m.onnx.slowfast-tmp-{dead.pid}"
    stale.write_bytes(b"half a model")
    live = out / f".m.onnx.data.slowfast-tmp-{os.getpid()}"
    live.write_bytes(b"someone else's, still running")
    mine = out / "notes.slowfast-tmp-1"  # not hidden: not one of our names
    mine.write_bytes(b"user data")
    result = run("rewrite", model, "-o", out / "m.onnx", timeout=10)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(["m.onnx", "m.onnx.data", live.name, mine.name])


def test_two_rewrites_to_one_output_give_one_consistent_result(tmp_path):
    """Run A pauses between renaming its data file and its model; run B, started meanwhile,
    must wait for A's commit (the folder lock), so the result is all A or all B, never A's
    model over B's data file (B's weights)."""
    import onnx
    folders = {}
    for name, seed in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        folders[name] = external_model.build(folder, seed=seed)
        marked = onnx.load(str(folders[name]), load_external_data=False)
        marked.doc_string = f"run {name}"  # which run's model the output is
        folders[name].write_bytes(marked.SerializeToString())
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, SLOWFAST_TEST_COMMIT_PAUSE_MS="2000")
    start = time.monotonic()
    first = subprocess.Popen([str(debug_binary()), "rewrite", folders["a"], "-o", out / "m.onnx", "--weights", "copy"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 5
    while not (out / "m.onnx.data").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (out / "m.onnx.data").exists() and not (out / "m.onnx").exists(), "run A is not paused between its renames"
    second = run("rewrite", folders["b"], "-o", out / "m.onnx", "--weights", "copy", timeout=10)
    first.wait(timeout=10)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert time.monotonic() - start >= 2.0
    written = onnx.load(str(out / "m.onnx"))
    got = {t.name: numpy_helper.to_array(t, base_dir=str(out)) for t in written.graph.initializer}
    expected = {}
    for name, path in folders.items():
        model = onnx.load(str(path))
        expected[name] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert not all(np.array_equal(expected["a"][k], expected["b"][k]) for k in got)
    run_name = written.doc_string.removeprefix("run ")
    assert run_name in ("a", "b"), written.doc_string
    assert all(np.array_equal(got[k], expected[run_name][k]) for k in got), \
        f"the output mixes the two runs' files: run {run_name}'s model over the other's data"
    assert run_name == "b", "B started after A: its commit should come last"
    assert sorted(os.listdir(out)) == ["m.onnx", "m.onnx.data"]


# --- ambiguous maps and reuse of what the model has ---

def relu_model(path, extra_initializers=(), functions=()):
    w = numpy_helper.from_array(np.eye(8, dtype=np.float32) * 2, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="/model/layers.0/mlp/fc"),
         helper.make_node("Relu", ["h"], ["y"], name="/model/layers.0/mlp/act/Relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w, *extra_initializers])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.slowfast", 1)] if functions else [])
    path.write_bytes(helper.make_model(graph, opset_imports=opsets, functions=list(functions)).SerializeToString())
    return path


def test_duplicate_initializer_names_are_refused(folders):
    source, out = folders
    twin = numpy_helper.from_array(np.zeros((8, 8), np.float32), "w")
    model = relu_model(source / "m.onnx", extra_initializers=[twin])
    refused(model, out / "o.onnx", f"error: {model}: initializer 'w' is defined twice", extra=("--activation", "srelu"), timeout=10)


@pytest.mark.parametrize("flags", [[], ["--json"], ["--layers"]], ids=["text", "json", "layers"])
def test_inspect_names_a_duplicate_initializer(folders, flags):
    source, _ = folders
    twin = numpy_helper.from_array(np.zeros((8, 8), np.float32), "w")
    model = relu_model(source / "m.onnx", extra_initializers=[twin])
    before = snapshot(source)
    result = run("inspect", model, *flags, timeout=10)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr.splitlines() == [f"error: {model}: initializer 'w' is defined twice in graph 'g'"], result.stderr
    assert snapshot(source) == before


def test_unused_initializer_named_like_a_new_parameter_gets_no_twin_entry(folders):
    import json
    import onnx
    source, out = folders
    squatter = numpy_helper.from_array(np.full(3, 7, np.float32), "model.layers.0.mlp.act.srelu.t_left")
    model = relu_model(source / "m.onnx", extra_initializers=[squatter])
    before = snapshot(source)
    result = run("rewrite", model, "-o", out / "o.onnx", "--activation", "srelu", timeout=10)
    assert result.returncode == 0, result.stderr
    entries = json.loads((out / "o.weight-map.json").read_text())["entries"]
    canonical = [e["canonicalName"] for e in entries]
    onnx_names = [e["onnxName"] for e in entries]
    assert len(set(canonical)) == len(canonical), canonical
    assert len(set(onnx_names)) == len(onnx_names), onnx_names
    kept = next(e for e in entries if e["onnxName"] == "model.layers.0.mlp.act.srelu.t_left")
    assert kept["kind"] == "kept" and kept["shape"] == [3]
    new = next(e for e in entries if e["kind"] == "new" and e["canonicalName"].startswith("model.layers.0.mlp.act.srelu.t_left"))
    assert new["canonicalName"] == "model.layers.0.mlp.act.srelu.t_left_1" and new["onnxName"] != kept["onnxName"]
    written = onnx.load(str(out / "o.onnx"))
    assert [t.name for t in written.graph.initializer].count("model.layers.0.mlp.act.srelu.t_left") == 1
    assert snapshot(source) == before


def test_a_model_local_srelu_function_with_another_body_is_not_called(folders):
    """The model already defines ai.slowfast::SReLU as x + 1000: the rewrite must not call it."""
    import onnx
    from conftest import ort_session
    source, out = folders
    thousand = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(1000, np.float32)))
    impostor = helper.make_function("ai.slowfast", "SReLU", ["x", "t_left", "a_left", "t_right", "a_right"], ["y"],
                                    [thousand, helper.make_node("Add", ["x", "k"], ["y"])], [helper.make_opsetid("", 17)])
    model = relu_model(source / "m.onnx", functions=[impostor])
    result = run("rewrite", model, "-o", out / "o.onnx", "--activation", "srelu", timeout=10)
    assert result.returncode == 0, result.stderr
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(1, 8)
    expected = ort_session(onnx.load(str(model))).run(None, {"x": x})[0]
    got = ort_session(onnx.load(str(out / "o.onnx"))).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert float(np.abs(got).max()) < 100


# --- valid but unusual input ---

def test_one_data_file_under_two_spellings_is_written_once_and_runs(folders):
    import onnx
    from conftest import ort_session
    source, out = folders
    model = external_model.build(source)
    external_model.set_external(model, "w2", location="./model.onnx.data")
    before = snapshot(source)
    result = run("rewrite", model, "-o", out / "m.onnx", "--weights", "copy", timeout=10)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["m.onnx", "m.onnx.data"]
    assert result.stdout.count("copied:") == 1, result.stdout
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    expected = ort_session(model).run(None, {"x": x})[0]
    got = ort_session(out / "m.onnx").run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)
    assert snapshot(source) == before


def test_yaml_syntax_error_is_one_line(tmp_path):
    adapter = tmp_path / "broken.yaml"
    adapter.write_text("name: broken\nresidual: add\nattention: {use: [unclosed\ninputNorm: {any: true}\n")
    refused_adapter(adapter, "not an adapter")


@pytest.mark.parametrize("extra", [64, -4])
def test_raw_data_longer_or_shorter_than_its_dims_is_refused(tmp_path, extra):
    """A k_proj whose raw_data carries 64 bytes more (or 4 fewer) than its dims need is refused
    when the model is read, naming the tensor and both sizes; nothing is written."""
    model = onnx.load(QWEN)
    layout = json.loads(run("inspect", QWEN, "--layers", "--json").stdout)["layout"]
    name = layout["layers"][0]["k"]["weight"]
    tensor = next(t for t in model.graph.initializer if t.name == name)
    need = len(tensor.raw_data)
    tensor.raw_data = tensor.raw_data + b"\0" * extra if extra > 0 else tensor.raw_data[:extra]
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out" / "model.onnx"
    result = run("rewrite", path, "-o", out, "--hybrid-layers", "0")
    assert result.returncode != 0
    assert f"{path}: tensor '{name}': raw_data holds {need + extra} bytes but its type and dims need {need}" in result.stderr, result.stderr
    assert not out.parent.exists()


def test_a_long_chain_stored_in_reverse_order_is_read_in_linear_time(tmp_path):
    """100,000 nodes in reverse topological order: the checks that name nodes read before their
    producer were quadratic (past 120 s); now the run ends as the in-order one does."""
    n = 100_000
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"n{i}") for i in range(n)]
    io = ([helper.make_tensor_value_info("v0", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [4])])
    results = {}
    for order, listed in (("in order", nodes), ("reversed", list(reversed(nodes)))):
        path = tmp_path / f"{order.replace(' ', '-')}.onnx"
        onnx.save(helper.make_model(helper.make_graph(listed, "chain", *io), opset_imports=[helper.make_opsetid("", 17)]), str(path))
        results[order] = run("rewrite", path, "-o", tmp_path / "out.onnx", "--activation", "srelu", timeout=60)
    for result in results.values():
        assert result.returncode != 0 and "cannot tell its channel count from the graph" in result.stderr, result.stderr
    assert not (tmp_path / "out.onnx").exists()
