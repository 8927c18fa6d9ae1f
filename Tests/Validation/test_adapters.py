"""Adapter files validate against their schema, and a user's own adapter file works without
recompiling."""
import json

import jsonschema
import pytest
import yaml

from conftest import REPO, run
from fixtures import FIXTURES

SCHEMA = json.loads((REPO / "Schemas/adapter.schema.json").read_text())
ADAPTERS = sorted((REPO / "Adapters").glob("*.yaml"))


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_adapter_validates_against_the_schema(path):
    jsonschema.Draft202012Validator(SCHEMA).validate(yaml.safe_load(path.read_text()))


def test_user_adapter_file_is_used_by_path(tmp_path):
    own = tmp_path / "my-export.yaml"
    own.write_text((REPO / "Adapters/hf-torch-eager.yaml").read_text().replace("name: hf-torch-eager", "name: my-export"))
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    result = run("inspect", folder / "model.onnx", "--layers", "--json", "--adapter", own)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["layout"]["adapter"] == "my-export"


def test_broken_adapter_file_is_a_clear_error(tmp_path):
    own = tmp_path / "broken.yaml"
    own.write_text("name: broken\nresidual: add\nattention: {use: nowhere}\ninputNorm: {any: true}\n")
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", own)
    assert result.returncode != 0
    assert str(own) in result.stderr and "'nowhere' is used but not defined" in result.stderr


def test_adapter_that_does_not_fit_says_what_it_found():
    folder = next(f for f in FIXTURES if f.name == "qwen2-genai")
    result = run("inspect", folder / "model.onnx", "--layers", "--adapter", "hf-torch-eager")
    assert result.returncode != 0
    assert "hf-torch-eager: 0 layers" in result.stderr


def test_bad_layer_index_pattern_is_a_clear_error(tmp_path):
    own = tmp_path / "bad-index.yaml"
    text = (REPO / "Adapters/hf-torch-eager.yaml").read_text().replace("pattern: 'layers\\.(\\d+)'", "pattern: 'layers\\.((\\d+)'")
    assert "layers\\.((\\d+)" in text
    own.write_text(text)
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", own)
    assert result.returncode != 0
    assert str(own) in result.stderr and "is not a regular expression" in result.stderr
