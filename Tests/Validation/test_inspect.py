"""`slowfast inspect --json` validates against Schemas/inspect.schema.json and agrees, field by
field, with a report computed independently from onnx's own reading: on every backend model,
every committed fixture, and synthetic models that exercise what the backend data lacks
(If/Loop/Scan subgraphs, local functions with an overload, sequence/optional/map/sparse/opaque
types, many element types, inline tensors stored every way, external data in two files)."""
import collections
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import REPO, backend_models, run
from fixtures import FIXTURES

# Names the spec fixes ("lower-case numpy-like"); the sub-byte and float8 kinds are left to the
# CLI's spelling, and only checked to be a non-empty string.
ELEM_NAMES = {
    TensorProto.FLOAT: "float32", TensorProto.UINT8: "uint8", TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
    TensorProto.INT64: "int64", TensorProto.STRING: "string", TensorProto.BOOL: "bool",
    TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64", TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64", TensorProto.COMPLEX64: "complex64", TensorProto.COMPLEX128: "complex128",
    TensorProto.BFLOAT16: "bfloat16",
}
ANY = object()  # placeholder: the spec does not fix this string


class Either:
    """Either of two values is right where the spec leaves the choice open."""
    def __init__(self, *choices):
        self.choices = choices

    def __repr__(self):
        return " or ".join(map(repr, self.choices))


def elem_name(code):
    return ELEM_NAMES.get(code, ANY)


def type_string(t):
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_s(elem_name(t.tensor_type.elem_type))})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({_s(elem_name(t.sparse_tensor_type.elem_type))})"
    if kind == "sequence_type":
        return f"sequence({_s(type_string(t.sequence_type.elem_type))})"
    if kind == "optional_type":
        return f"optional({_s(type_string(t.optional_type.elem_type))})"
    if kind == "map_type":
        return f"map({_s(elem_name(t.map_type.key_type))},{_s(type_string(t.map_type.value_type))})"
    if kind == "opaque_type":
        return "opaque"
    return "unknown"


def _s(value):
    return "\0ANY\0" if value is ANY else value


def value_info(v):
    kind = v.type.WhichOneof("value")
    tensor = v.type.tensor_type if kind == "tensor_type" else (
        v.type.sparse_tensor_type if kind == "sparse_tensor_type" else None)
    shape = None
    if tensor is not None and tensor.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                 for d in tensor.shape.dim]
    elem = elem_name(tensor.elem_type) if tensor is not None else None
    if kind == "sparse_tensor_type":
        # The spec says null "for non-tensors"; whether a sparse tensor is one is open.
        elem, shape = Either(elem, None), Either(shape, None)
    return {"name": v.name, "type": type_string(v.type), "elemType": elem, "shape": shape}


def subgraphs_of(node):
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def walk(graph, counts):
    """Adds op counts of `graph` and its subgraphs; returns (nodes, graph-valued attributes)."""
    nodes, graphs = 0, 0
    for node in graph.node:
        nodes += 1
        counts[("" if node.domain == "ai.onnx" else node.domain, node.op_type)] += 1
        for sub in subgraphs_of(node):
            graphs += 1
            n, g = walk(sub, counts)
            nodes, graphs = nodes + n, graphs + g
    return nodes, graphs


def tensor_nbytes(t):
    """Bytes of an inline tensor's values: raw_data as stored, else count x element size."""
    if t.HasField("raw_data"):
        return len(t.raw_data)
    return numpy_helper.to_array(t).nbytes


def expected_rewrites(graph):
    """The hybrid layers and SReLU sites a slowfast rewrite marked, rebuilt from node metadata:
    a parameter is owned by a group when the group's nodes read it and no unmarked node does."""
    meta = [{p.key: p.value for p in n.metadata_props} for n in graph.node]
    initializers = {t.name for t in graph.initializer}
    original = {i for n, m in zip(graph.node, meta) if "slowfast.pass" not in m for i in n.input}
    layers, modes, sites = {}, {}, {}
    for node, m in zip(graph.node, meta):
        if m.get("slowfast.pass") == "hybrid-layers" and "slowfast.layer" in m:
            layers.setdefault(int(m["slowfast.layer"]), []).append(node)
            modes[int(m["slowfast.layer"])] = m.get("slowfast.mode", "in-place")
        elif m.get("slowfast.pass") == "srelu" and "slowfast.site" in m:
            sites.setdefault(m["slowfast.site"], []).append(node)

    def owned(nodes):
        names = []
        for node in nodes:
            for name in node.input:
                if name in initializers and name not in original and name not in names:
                    names.append(name)
        return names
    return {"hybridLayers": [{"layer": k, "mode": modes[k], "parameters": owned(layers[k])} for k in sorted(layers)],
            "sreluSites": [{"site": k, "parameters": owned(v)} for k, v in sites.items()]}


def expected_report(path):
    model = onnx.load(str(path), load_external_data=False)
    counts = collections.Counter()
    with_subgraphs, subgraphs = walk(model.graph, counts)
    inline, strings, external, files = 0, 0, 0, set()
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in t.external_data}
            length = int(entries["length"]) if "length" in entries else \
                (Path(path).parent / entries["location"]).stat().st_size - int(entries.get("offset", 0))
            external += length
            files.add(entries["location"])
        elif t.data_type == TensorProto.STRING and not t.HasField("raw_data"):
            strings += sum(len(s) for s in t.string_data)
        else:
            inline += tensor_nbytes(t)
    return {
        "schemaVersion": 1,
        "irVersion": model.ir_version,
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "domain": model.domain,
        "modelVersion": model.model_version,
        "docString": model.doc_string,
        "opsets": [{"domain": "" if o.domain == "ai.onnx" else o.domain, "version": o.version} for o in model.opset_import],
        "graph": {"name": model.graph.name},
        "inputs": [value_info(v) for v in model.graph.input],
        "outputs": [value_info(v) for v in model.graph.output],
        "nodes": {"count": len(model.graph.node), "countWithSubgraphs": with_subgraphs,
                  "byOp": [{"domain": d, "opType": o, "count": c} for (d, o), c in sorted(counts.items())]},
        "initializers": {"count": len(model.graph.initializer), "inlineBytes": Either(inline + strings, inline) if strings else inline, "externalBytes": external,
                         "externalFiles": sorted(files)},
        "functions": [{"domain": f.domain, "name": f.name, "overload": f.overload, "nodeCount": len(f.node)}
                      for f in model.functions],
        "subgraphs": subgraphs,
        "metadata": {p.key: p.value for p in model.metadata_props},
        "rewrites": expected_rewrites(model.graph),
    }


def differences(expected, got, where="$"):
    """Paths where `got` differs from `expected` (ANY matches any non-empty string)."""
    if isinstance(expected, str) and "\0ANY\0" in expected:
        pattern = expected.split("\0ANY\0")
        ok = isinstance(got, str) and got.startswith(pattern[0]) and got.endswith(pattern[-1]) \
            and len(got) > len(pattern[0]) + len(pattern[-1])
        return [] if ok else [f"{where}: expected {expected!r} (any name inside), got {got!r}"]
    if isinstance(expected, Either):
        for choice in expected.choices:
            if not differences(choice, got, where):
                return []
        return [f"{where}: expected {expected!r}, got {got!r}"]
    if expected is ANY:
        return [] if isinstance(got, str) and got else [f"{where}: expected a type name, got {got!r}"]
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{where}: missing key {k!r}" for k in expected if k not in got]
        out += [f"{where}: unexpected key {k!r}" for k in got if k not in expected]
        for k in expected:
            if k in got:
                out += differences(expected[k], got[k], f"{where}.{k}")
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: expected {len(expected)} items {expected!r}, got {len(got)} {got!r}"]
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in differences(e, g, f"{where}[{i}]")]
    if type(expected) is not type(got) or expected != got:
        return [f"{where}: expected {expected!r}, got {got!r}"]
    return []


# ---- Models ---------------------------------------------------------------------------------

def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def control_flow(folder):
    """If with nested Loop in a branch, and a Scan: subgraphs two levels deep."""
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "loop_body",
        [_vi("iter", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("acc_in", TensorProto.FLOAT, [2])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out", TensorProto.FLOAT, [2])])
    then_branch = helper.make_graph(
        [helper.make_node("Loop", ["trip", "cond", "x"], ["looped"], body=loop_body)],
        "then", [], [_vi("looped", TensorProto.FLOAT, [2])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["negated"])], "else", [],
                                    [_vi("negated", TensorProto.FLOAT, [2])])
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"]), helper.make_node("Identity", ["sum_out"], ["scan_out"])],
        "scan_body", [_vi("sum_in", TensorProto.FLOAT, [2]), _vi("row", TensorProto.FLOAT, [2])],
        [_vi("sum_out", TensorProto.FLOAT, [2]), _vi("scan_out", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["branch"], then_branch=then_branch, else_branch=else_branch),
         helper.make_node("Scan", ["x", "rows"], ["total", "partial"], body=scan_body, num_scan_inputs=1),
         helper.make_node("Add", ["branch", "total"], ["y"])],
        "control_flow",
        [_vi("cond", TensorProto.BOOL, []), _vi("x", TensorProto.FLOAT, [2]), _vi("rows", TensorProto.FLOAT, ["steps", 2])],
        [_vi("y", TensorProto.FLOAT, [2]), _vi("partial", TensorProto.FLOAT, ["steps", 2])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(3, np.int64), "trip")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="validation",
                              producer_version="0.1", doc_string="If, Loop and Scan", model_version=7, domain="org.example")
    helper.set_model_props(model, {"author": "validation", "purpose": "subgraphs"})
    return _save(model, folder / "control_flow.onnx")


def functions(folder):
    """Two local functions (one overloaded), one calling the other, used from the graph."""
    inner = helper.make_function("org.example", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                 [helper.make_opsetid("", 18)])
    outer = helper.make_function("org.example", "FourTimes", ["a"], ["b"],
                                 [helper.make_node("Twice", ["a"], ["t"], domain="org.example"),
                                  helper.make_node("Twice", ["t"], ["b"], domain="org.example")],
                                 [helper.make_opsetid("", 18), helper.make_opsetid("org.example", 1)])
    overloaded = helper.make_function("org.example", "Twice", ["a"], ["b"], [helper.make_node("Constant", [], ["two"], value_float=2.0),
                                      helper.make_node("Mul", ["a", "two"], ["b"])],
                                      [helper.make_opsetid("", 18)])
    overloaded.overload = "by_mul"
    graph = helper.make_graph(
        [helper.make_node("FourTimes", ["x"], ["y"], domain="org.example"),
         helper.make_node("Twice", ["y"], ["z"], domain="org.example", overload="by_mul")],
        "with_functions", [_vi("x", TensorProto.FLOAT, ["n"])], [_vi("z", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, functions=[inner, outer, overloaded],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("org.example", 1)])
    model.ir_version = 10  # overloads need IR 10
    return _save(model, folder / "functions.onnx")


def type_kinds(folder):
    """Inputs and outputs of every type kind and many element types and dim kinds."""
    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.INT64, ["len"])
    opt = helper.make_value_info("opt", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [3])))
    opt_seq = helper.make_value_info("opt_seq", helper.make_optional_type_proto(
        helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT16, None))))
    mapping = helper.make_value_info("mapping", helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [4])))
    sparse = helper.make_sparse_tensor_value_info("sparse", TensorProto.FLOAT, [10, 10])
    opaque = onnx.ValueInfoProto(name="opaque")
    opaque.type.opaque_type.domain = "org.example"
    opaque.type.opaque_type.name = "Blob"
    unknown = onnx.ValueInfoProto(name="unknown")
    unknown_rank = helper.make_tensor_value_info("unknown_rank", TensorProto.FLOAT, None)
    mixed_dims = helper.make_tensor_value_info("mixed_dims", TensorProto.BFLOAT16, [1, "batch", None, 0])
    scalars = [helper.make_tensor_value_info(f"t_{name}", code, []) for code, name in ELEM_NAMES.items()]
    float8 = helper.make_tensor_value_info("t_float8", TensorProto.FLOAT8E4M3FN, [2])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["seq"], ["seq_out"])], "type_kinds",
        [seq, opt, opt_seq, mapping, sparse, opaque, unknown, unknown_rank, mixed_dims, *scalars, float8],
        [helper.make_tensor_sequence_value_info("seq_out", TensorProto.INT64, ["len"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    return _save(model, folder / "type_kinds.onnx")


def initializer_storage(folder):
    """Inline tensors stored every way (raw_data, float_data, int64_data, string_data, float16 in
    int32_data) and external tensors split over two data files, one in a subfolder."""
    rng = np.random.default_rng(1)
    raw = numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "raw")
    floats = helper.make_tensor("floats", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    ints = helper.make_tensor("ints", TensorProto.INT64, [3], [1, 2, 3])
    strings = helper.make_tensor("strings", TensorProto.STRING, [2], [b"abc", b"de"])
    halves = helper.make_tensor("halves", TensorProto.FLOAT16, [3], np.array([1, 2, 3], np.float16))
    big_a = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "big_a")
    big_b = numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "big_b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "big_a"], ["h"]), helper.make_node("MatMul", ["h", "big_b"], ["y"])],
        "storage", [_vi("x", TensorProto.FLOAT, ["batch", 64])], [_vi("y", TensorProto.FLOAT, ["batch", 16])],
        [raw, floats, ints, strings, halves, big_a, big_b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "storage.onnx"
    (folder / "weights").mkdir(exist_ok=True)
    onnx.external_data_helper.set_external_data(model.graph.initializer[5], "weights/a.bin")
    onnx.external_data_helper.set_external_data(model.graph.initializer[6], "b.bin")
    onnx.save(model, str(path))  # writes the external tensors into their files
    return path


def _save(model, path):
    onnx.save(model, str(path))
    return path


SYNTHETIC = [control_flow, functions, type_kinds, initializer_storage]


# ---- Tests ----------------------------------------------------------------------------------

SCHEMA = json.loads((REPO / "Schemas/inspect.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def inspect_json(path):
    result = run("inspect", path, "--json")
    assert result.returncode == 0, f"{path}: exit {result.returncode}: {result.stderr}"
    assert result.stderr == "", f"{path}: inspect wrote to stderr: {result.stderr}"
    return json.loads(result.stdout)


def check(path):
    """Every problem with the report on `path`, as lines naming the file and the field."""
    report = inspect_json(path)
    problems = [f"{path}: schema: {e.message} at {'/'.join(map(str, e.absolute_path))}" for e in VALIDATOR.iter_errors(report)]
    if report.get("file") != str(path):
        problems.append(f"{path}: $.file: expected {str(path)!r}, got {report.get('file')!r}")
    report.pop("file", None)
    problems += [f"{path}: {d}" for d in differences(expected_report(path), report)]
    return problems


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_rejects_what_the_spec_forbids():
    """The schema is not a rubber stamp: a real report passes, mutated ones fail."""
    good = inspect_json(FIXTURES[0] / "model.onnx") if FIXTURES else None
    if good is None:
        pytest.skip("no committed fixture")
    assert VALIDATOR.is_valid(good)
    for mutate in (lambda r: r.update(extra=1), lambda r: r.pop("opsets"), lambda r: r.update(schemaVersion=2),
                   lambda r: r["inputs"][0].update(shape="batch"), lambda r: r["nodes"].update(count=-1),
                   lambda r: r["initializers"].update(externalFiles="model.onnx.data"),
                   lambda r: r.update(metadata={"k": 1}), lambda r: r["inputs"][0].pop("elemType")):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert not VALIDATOR.is_valid(bad), bad


def test_every_backend_model_and_fixture():
    paths = backend_models() + [f / "model.onnx" for f in FIXTURES]
    with ThreadPoolExecutor(2) as pool:
        problems = [p for found in pool.map(check, paths) for p in found]
    print(f"\ninspect --json agrees with onnx: {len(paths) - len({p.split(':')[0] for p in problems})}/{len(paths)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("make", SYNTHETIC, ids=lambda f: f.__name__)
def test_synthetic_model(tmp_path, make):
    path = make(tmp_path)
    if make is not type_kinds:  # type_kinds has an input with no type on purpose
        onnx.checker.check_model(str(path))  # the model itself is sound
    problems = check(path)
    assert not problems, "\n".join(problems)


def test_synthetic_models_cover_what_they_claim(tmp_path):
    """Guards the test itself: the synthetic models really have the features they stand for."""
    reports = {make.__name__: expected_report(make(tmp_path)) for make in SYNTHETIC}
    flow = reports["control_flow"]
    assert flow["subgraphs"] == 4 and flow["nodes"]["countWithSubgraphs"] == 9 and flow["nodes"]["count"] == 3
    assert flow["metadata"] == {"author": "validation", "purpose": "subgraphs"} and flow["modelVersion"] == 7
    assert [f["overload"] for f in reports["functions"]["functions"]] == ["", "", "by_mul"]
    kinds = {v["type"].split("(")[0] for v in reports["type_kinds"]["inputs"]}
    assert kinds >= {"tensor", "sequence", "optional", "map", "sparse_tensor", "opaque", "unknown"}
    storage = reports["initializer_storage"]["initializers"]
    assert storage["externalFiles"] == ["b.bin", "weights/a.bin"] and storage["externalBytes"] == (64 * 32 + 32 * 16) * 4


def test_text_form_names_the_inputs(tmp_path):
    for path in [f / "model.onnx" for f in FIXTURES[:1]] + [control_flow(tmp_path), type_kinds(tmp_path)]:
        result = run("inspect", path)
        assert result.returncode == 0, result.stderr
        model = onnx.load(str(path), load_external_data=False)
        for value in model.graph.input:
            assert value.name in result.stdout, f"{path}: input {value.name!r} not in the text form"


def test_inspect_refuses_a_bad_file(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(bytes(range(256)) * 8)
    result = run("inspect", path, "--json")
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr


def test_forged_marks_claim_no_hybrid_layer(tmp_path):
    """slowfast.* marks are metadata anyone can write: marks claiming hybrid layer 99 on the
    nodes of a plain 6-layer export are reported as ignored, not as a layer, and cost reads
    no hybrid layer from them."""
    source = next(f for f in FIXTURES if f.name == "qwen2-torchscript") / "model.onnx"
    model = onnx.load(str(source))
    forged = 0
    for node in model.graph.node:
        if "layers.5/self_attn" in node.name:
            node.metadata_props.add(key="slowfast.pass", value="hybrid-layers")
            node.metadata_props.add(key="slowfast.layer", value="99")
            forged += 1
    assert forged > 10
    path = tmp_path / "forged.onnx"
    onnx.save(model, str(path))
    result = run("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads((REPO / "Schemas/inspect.schema.json").read_text()))
    assert report["rewrites"]["hybridLayers"] == []
    assert report["rewrites"]["ignoredMarks"] == [
        f"marks claim hybrid layer 99 (in-place), but its {forged} marked nodes read no "
        "'model.layers.99.self_attn.cross_attn_warm_up_gate': not a layer slowfast wrote"]
    text = run("inspect", path).stdout
    assert not any(line.startswith("hybrid layer") for line in text.splitlines()), text
    assert "\nignored: marks claim hybrid layer 99 (in-place)" in text, text


def test_forged_marks_do_not_hide_layers_from_discovery(tmp_path):
    """Discovery reads a rewritten model as the original by leaving out its hybrid layers'
    nodes; forged marks must not make it leave out the model's own nodes: the forged export of
    the test above is described exactly as the unmarked one (6 layers, same layout), and a
    rewrite of it keeps its outputs."""
    source = next(f for f in FIXTURES if f.name == "qwen2-torchscript") / "model.onnx"
    model = onnx.load(str(source))
    for node in model.graph.node:
        if "layers.5/self_attn" in node.name or "layers.2/mlp" in node.name:
            node.metadata_props.add(key="slowfast.pass", value="hybrid-layers")
            node.metadata_props.add(key="slowfast.layer", value="5")
            if node.op_type == "Add":
                node.metadata_props.add(key="slowfast.passthrough", value="0")
    path = tmp_path / "forged.onnx"
    onnx.save(model, str(path))
    forged = run("inspect", path, "--layers", "--json")
    plain = run("inspect", source, "--layers", "--json")
    assert forged.returncode == 0 and plain.returncode == 0, forged.stderr + plain.stderr
    forged_layout, plain_layout = json.loads(forged.stdout)["layout"], json.loads(plain.stdout)["layout"]
    assert len(forged_layout["layers"]) == 6
    assert forged_layout == plain_layout
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", path, "-o", out, "--every", "2")
    assert result.returncode == 0, result.stderr
