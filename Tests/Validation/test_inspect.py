"""`slowfast inspect --json` validates against its schema and agrees with what onnx reads."""
import collections
import json

import jsonschema
import onnx
import pytest
from onnx import helper

from conftest import REPO, backend_models, run
from fixtures import FIXTURES

SCHEMA = json.loads((REPO / "Schemas/inspect.schema.json").read_text())
NUMPY_NAMES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64", 16: "bfloat16"}


def models():
    chosen = backend_models()[::8] + [f / "model.onnx" for f in FIXTURES]
    return chosen


def count_ops(graph, counts):
    for node in graph.node:
        counts[(node.domain if node.domain != "ai.onnx" else "", node.op_type)] += 1
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                count_ops(sub, counts)
    return counts


@pytest.mark.parametrize("path", models(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_inspect_json_is_valid_and_right(path):
    result = run("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(report)
    model = onnx.load(str(path), load_external_data=False)
    assert report["irVersion"] == model.ir_version
    assert report["opsets"] == [{"domain": o.domain if o.domain != "ai.onnx" else "", "version": o.version} for o in model.opset_import]
    assert [i["name"] for i in report["inputs"]] == [i.name for i in model.graph.input]
    for got, value in zip(report["inputs"], model.graph.input):
        if value.type.HasField("tensor_type"):
            assert got["elemType"] == NUMPY_NAMES.get(value.type.tensor_type.elem_type, got["elemType"])
            if value.type.tensor_type.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                        for d in value.type.tensor_type.shape.dim]
                assert got["shape"] == dims
    assert report["nodes"]["count"] == len(model.graph.node)
    counts = count_ops(model.graph, collections.Counter())
    assert {(e["domain"], e["opType"]): e["count"] for e in report["nodes"]["byOp"]} == dict(counts)
    assert report["initializers"]["count"] == len(model.graph.initializer)
    external = sum(int({e.key: e.value for e in t.external_data}["length"]) for t in model.graph.initializer
                   if t.data_location == onnx.TensorProto.EXTERNAL)
    assert report["initializers"]["externalBytes"] == external


def test_functions_and_subgraphs_are_reported(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "body", [],
                             [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    function = helper.make_function("custom", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                    [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("Twice", ["x"], ["t"], domain="custom"),
         helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    report = json.loads(run("inspect", path, "--json").stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(report)
    assert report["functions"] == [{"domain": "custom", "name": "Twice", "overload": "", "nodeCount": 1}]
    assert report["subgraphs"] == 2
    assert report["nodes"]["countWithSubgraphs"] == 4


def test_text_form_names_the_inputs():
    path = FIXTURES[0] / "model.onnx"
    result = run("inspect", path)
    assert result.returncode == 0
    assert "input_ids" in result.stdout and "initializers:" in result.stdout
