"""Model strings that are not UTF-8 (issue 13, "names"; docs/DESIGN.md, "Strings are bytes").

ONNX string fields are bytes and onnxruntime runs a model whose value names are not UTF-8.
Such a model must be rewritten (plain, SReLU, hybrid layers) into one that runs like the input,
with every name it copies byte-identical, the input untouched, and error lines that print the
bytes escaped. onnx's Python API cannot assign such names, so the models are built with ASCII
placeholders of a fixed length and the serialized bytes are patched (lengths unchanged).
onnx.load (upb) reads a field that is not UTF-8 back as `bytes`."""
import os
import re
import shutil
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import checker_passes, ort_session, run, slow_inputs_off
from fixtures import FIXTURES, config, graph_inputs
from test_bad_input import snapshot

PLACEHOLDER = re.compile(rb"~\x7f\x7f~(\d{6})")


def placeholder(index):
    return "~\x7f\x7f~%06d" % index


def byte_name(index):
    """Names 2k and 2k+1 differ only in a first byte that is not UTF-8 (0xFE / 0xFF): a reader
    that decodes lossily (to U+FFFD) makes them one name."""
    return (b"\xff" if index % 2 else b"\xfe") + b"\x7f\x7f~" + b"%06d" % (index // 2)


def patched(data):
    """Serialized model bytes with every placeholder replaced by its byte name."""
    result, count = PLACEHOLDER.subn(lambda match: byte_name(int(match.group(1))), data)
    assert count > 0
    return result


def raw(value):
    """A string field as onnx.load returns it (str when UTF-8, else bytes), as bytes."""
    return value if isinstance(value, bytes) else value.encode()


def strings_of(model):
    """Every string the tests check, as bytes, in file order."""
    graph = model.graph
    found = [raw(model.doc_string), raw(graph.name), raw(graph.doc_string)]
    found += [raw(text) for entry in model.metadata_props for text in (entry.key, entry.value)]
    for node in graph.node:
        found += [raw(node.name), raw(node.doc_string)] + [raw(v) for v in (*node.input, *node.output)]
    for tensor in graph.initializer:
        found += [raw(tensor.name)] + [raw(e.value) for e in tensor.external_data if e.key == "location"]
    found += [raw(v.name) for v in (*graph.input, *graph.output, *graph.value_info)]
    return found


REAL_RESERVED = "m\U0010ffaa"  # valid UTF-8 of a scalar in the range the codec escapes bytes with
LOCATION = 12


def small_model(folder):
    """y = h + (relu(h) @ w2) with h = x @ w: values, initializers, nodes, the graph, doc strings,
    metadata and the data file's location not UTF-8 (colliding pairs under a lossy decode)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), placeholder(4))
    w2 = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), placeholder(5))
    nodes = [helper.make_node("MatMul", ["x", placeholder(4)], [placeholder(2)], name=placeholder(6), doc_string=placeholder(13)),
             helper.make_node("Relu", [placeholder(2)], [placeholder(3)], name="/model/layers.0/mlp/act/Relu"),
             helper.make_node("MatMul", [placeholder(3), placeholder(5)], [REAL_RESERVED], name=placeholder(7)),
             helper.make_node("Add", [placeholder(2), REAL_RESERVED], ["y"], name="add")]
    graph = helper.make_graph(nodes, placeholder(8), [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w, w2], doc_string=placeholder(9))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=placeholder(1))
    helper.set_model_props(model, {placeholder(10): placeholder(11)})
    location = placeholder(LOCATION) + ".data"
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    path = folder / "m.onnx"
    path.write_bytes(patched(path.read_bytes()))
    os.rename(os.path.join(os.fsencode(folder), location.encode()), os.path.join(os.fsencode(folder), byte_name(LOCATION) + b".data"))
    return path


def test_the_fixture_is_what_it_claims(folders):
    """onnxruntime runs the input; its names really are not UTF-8 and pairs differ in one byte."""
    source, _ = folders
    model = small_model(source)
    names = strings_of(onnx.load(str(model), load_external_data=False))
    assert byte_name(2) in names and byte_name(3) in names and byte_name(2)[1:] == byte_name(3)[1:]
    for name in (byte_name(2), byte_name(3)):
        with pytest.raises(UnicodeDecodeError):
            name.decode()
    assert REAL_RESERVED.encode() in names
    ort_session(model).run(None, {"x": np.ones((1, 8), np.float32)})


def outputs_match(model, out):
    x = np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32)
    expected = ort_session(model).run(None, {"x": x})[0]
    got = ort_session(out).run(None, {"x": x})[0]
    assert float(np.abs(got - expected).max()) <= 1e-5


@pytest.mark.parametrize("weights", ["copy", "link"])
def test_plain_rewrite_keeps_every_string_byte_for_byte(folders, weights):
    source, out = folders
    model = small_model(source)
    before = snapshot(source)
    result = run("rewrite", model, "-o", out / "m.onnx", "--weights", weights, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "\ufffd" not in result.stdout
    assert snapshot(source) == before
    # A re-emit with no passes keeps every string byte for byte but the data file's location:
    # the output's data file is named after the output (m.onnx.data), never after the input's.
    assert sorted(os.listdir(os.fsencode(out))) == [b"m.onnx", b"m.onnx.data"]
    written = onnx.load(str(out / "m.onnx"), load_external_data=False)
    location = byte_name(LOCATION) + b".data"
    original = strings_of(onnx.load(str(model), load_external_data=False))
    assert location in original
    assert strings_of(written) == [b"m.onnx.data" if text == location else text for text in original]
    # onnx's checker refuses a data file with several hard links (see `rewrite --help`).
    assert weights == "link" or checker_passes(out / "m.onnx")
    outputs_match(model, out / "m.onnx")


def test_srelu_rewrite_keeps_the_names_and_runs_like_the_input(folders):
    source, out = folders
    model = small_model(source)
    before = snapshot(source)
    result = run("rewrite", model, "-o", out / "m.onnx", "--activation", "srelu", "--weights", "copy", timeout=10)
    assert result.returncode == 0, result.stderr
    assert snapshot(source) == before
    written = onnx.load(str(out / "m.onnx"), load_external_data=False)
    assert not any(op.op_type == "Relu" for op in written.graph.node)
    kept = set(strings_of(written))
    for index in (2, 3, 4, 5, 6, 7):  # values, initializers and node names the pass leaves alone
        assert byte_name(index) in kept, byte_name(index)
    assert not any(b"\xef\xbf\xbd" in name for name in kept)  # no U+FFFD anywhere
    assert checker_passes(out / "m.onnx")
    outputs_match(model, out / "m.onnx")


def test_an_error_naming_such_a_string_prints_its_bytes_escaped(folders):
    """Two initializers named by one byte string: refused, the name printed as \\xFE..."""
    source, out = folders
    twin = numpy_helper.from_array(np.zeros((8, 8), np.float32), placeholder(4))
    extended = onnx.load(str(small_model(source)), load_external_data=False)
    extended.graph.initializer.add().ParseFromString(patched(twin.SerializeToString()))
    bad = source / "bad.onnx"
    bad.write_bytes(extended.SerializeToString())
    before = snapshot(source)
    result = run("rewrite", bad, "-o", out / "o.onnx", timeout=10)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "initializer '\\xFE\\u{7f}\\u{7f}~000002' is defined twice" in lines[0], lines[0]
    assert os.listdir(out) == [] and snapshot(source) == before


def renamed_decoder(folder, target):
    """The fixture's decoder with every value between nodes renamed to bytes that are not UTF-8."""
    model = onnx.load(str(folder / "model.onnx"))
    outputs = {o.name for o in model.graph.output}
    names = {}
    for node in model.graph.node:
        for value in node.output:
            if value and value not in outputs:
                names.setdefault(value, placeholder(len(names)))
    for node in model.graph.node:
        node.input[:] = [names.get(v, v) for v in node.input]
        node.output[:] = [names.get(v, v) for v in node.output]
    for info in model.graph.value_info:
        info.name = names.get(info.name, info.name)
    target.mkdir()
    path = target / "model.onnx"
    path.write_bytes(patched(model.SerializeToString()))
    shutil.copy(folder / "config.json", target / "config.json")
    return path, len(names)


DECODER = next(f for f in FIXTURES if f.name == "qwen2-torchscript")


@pytest.mark.parametrize("passes", [["--hybrid-layers", "0,2,4"],
                                    ["--hybrid-layers", "0,2,4", "--activation", "srelu", "--activation-targets", "silu"]],
                         ids=["hybrid", "hybrid-srelu"])
def test_decoder_with_byte_names_rewrites_like_its_utf8_twin(tmp_path, passes):
    """The same rewrite of the fixture and of its renamed twin computes the same logits; the
    hybrid rewrite alone is function-preserving at default init, as on the fixture."""
    model, renamed = renamed_decoder(DECODER, tmp_path / "in")
    assert renamed > 1000
    before = snapshot(model.parent)
    outputs = {}
    for name, source in (("twin", model), ("fixture", DECODER / "model.onnx")):
        out = tmp_path / name / "model.onnx"
        out.parent.mkdir()
        result = run("rewrite", source, "-o", out, *passes, "--weights", "copy", timeout=60)
        assert result.returncode == 0, result.stderr
        outputs[name] = out
    assert snapshot(model.parent) == before
    assert checker_passes(outputs["twin"]) == checker_passes(outputs["fixture"]) == True  # noqa: E712
    written = strings_of(onnx.load(str(outputs["twin"]), load_external_data=False))
    assert all(byte_name(i) in written for i in range(0, renamed, 97))
    cfg = config(DECODER)
    feeds = graph_inputs(DECODER)
    slow = np.random.default_rng(5).standard_normal((1, 10, cfg["hidden_size"])).astype(np.float32)
    extra = {**slow_inputs_off(1, 10), "slow_tokens": slow}
    logits = {name: ort_session(path).run(["logits"], {**feeds, **extra})[0] for name, path in outputs.items()}
    assert float(np.abs(logits["twin"] - logits["fixture"]).max()) <= 1e-5
    if "--activation" not in passes:
        original = ort_session(model).run(["logits"], feeds)[0]
        assert float(np.abs(logits["twin"] - original).max()) <= 1e-5


@pytest.mark.parametrize("passes", [[], ["--activation", "srelu"]], ids=["plain", "srelu"])
def test_canonically_equivalent_names_stay_two_values(folders, passes):
    """"é" as one scalar and as e + U+0301 are two ONNX names (Swift Strings compare them equal)."""
    source, out = folders
    composed, decomposed = "\u00e9", "e\u0301"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], [composed], name="/model/layers.0/mlp/act/Relu"),
         helper.make_node("Neg", ["x"], [decomposed], name="neg"),
         helper.make_node("Sub", [composed, decomposed], ["y"], name="sub")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = source / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    result = run("rewrite", model, "-o", out / "m.onnx", *passes, timeout=10)
    assert result.returncode == 0, result.stderr
    written = strings_of(onnx.load(str(out / "m.onnx")))
    assert composed.encode() in written and decomposed.encode() in written
    assert checker_passes(out / "m.onnx")
    outputs_match(model, out / "m.onnx")
