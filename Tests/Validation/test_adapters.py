"""Adapter files validate against their schema, and a user's own adapter file works without
recompiling."""
import json

import jsonschema
import pytest
import yaml

from conftest import REPO, run
from fixtures import FIXTURES

SCHEMA = json.loads((REPO / "Schemas/adapter.schema.json").read_text())
ADAPTERS = sorted(p for p in (REPO / "Adapters").glob("*.yaml") if not p.name.endswith(".patterns.yaml"))
LIBRARIES = sorted((REPO / "Adapters").glob("*.patterns.yaml"))


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_adapter_validates_against_the_schema(path):
    jsonschema.Draft202012Validator(SCHEMA).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", LIBRARIES, ids=lambda p: p.name)
def test_pattern_library_validates_against_the_schema(path):
    library_schema = {**SCHEMA, "$ref": "#/$defs/patternLibrary"}
    for key in ("required", "properties", "additionalProperties", "type"):
        library_schema.pop(key, None)
    jsonschema.Draft202012Validator(library_schema).validate(yaml.safe_load(path.read_text()))
    # And it is used: some adapter includes it.
    assert any(path.name in (yaml.safe_load(a.read_text()).get("include") or []) for a in ADAPTERS)


def layout(folder, adapter):
    result = run("inspect", folder / "model.onnx", "--layers", "--json", "--adapter", adapter)
    return result, (json.loads(result.stdout)["layout"] if result.returncode == 0 else None)


def test_an_adapter_for_a_new_export_is_one_pattern_change_and_no_swift(tmp_path):
    """The README's worked example: a torch.onnx export with a KV cache differs from the eager
    export in one place, keys and values pass through Concat(past, new). An adapter that says
    so, including the shared patterns and redefining keysCached and valuesCached, finds every
    layer of the KV export with its config dims; the same file fails on the export without a
    cache, and its error names the step and the node where the Concat was expected."""
    # Start from the built-in eager adapter, as the README says (`slowfast adapters
    # hf-torch-eager > mine.yaml`), and change one thing: the cache's Concat is required.
    base = run("adapters", "hf-torch-eager")
    assert base.returncode == 0, base.stderr
    text = base.stdout.replace("name: hf-torch-eager", "name: my-kv-export")
    assert "\npatterns:\n" in text
    text = text.replace("\npatterns:\n", """
patterns:
  keysCached: {op: Concat, inputs: [{any: true}, {use: keysRope}]}
  valuesCached: {op: Concat, inputs: [{any: true}, {use: valueHeads}]}
""", 1)
    own = tmp_path / "my-kv-export.yaml"
    own.write_text(text)
    kv = next(f for f in FIXTURES if f.name == "qwen2-torchscript-kv")
    cfg = json.loads((kv / "config.json").read_text())
    result, found = layout(kv, own)
    assert result.returncode == 0, result.stderr
    assert found["adapter"] == "my-kv-export"
    assert [layer["index"] for layer in found["layers"]] == list(range(cfg["num_hidden_layers"]))
    dims = found["dimensions"]
    assert (dims["numHeads"], dims["numKVHeads"], dims["headDim"]) == (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"])

    plain = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    result, _ = layout(plain, own)
    assert result.returncode != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and len(line) <= len("error: ") + 300, line
    assert "my-kv-export: 0 layers" in line and "expected Concat at step 15 and found Add '" in line, line
    # The whole attempt, pattern path included, with --explain.
    explained = run("inspect", plain / "model.onnx", "--layers", "--adapter", own, "--explain")
    assert "Unsqueeze > input 0 > Concat" in explained.stderr and "at Add '" in explained.stderr, explained.stderr


def test_an_include_that_is_missing_or_defined_twice_is_a_clear_error(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("name: own\nresidual: add\ninclude: [nowhere.patterns.yaml]\nattention: {any: true}\ninputNorm: {any: true}\n")
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", own)
    assert result.returncode != 0
    assert str(own) in result.stderr and "include 'nowhere.patterns.yaml': no such pattern library" in result.stderr
    (tmp_path / "a.patterns.yaml").write_text("patterns:\n  x: {any: true}\n")
    (tmp_path / "b.patterns.yaml").write_text("patterns:\n  x: {any: true}\n")
    own.write_text("name: own\nresidual: add\ninclude: [a.patterns.yaml, b.patterns.yaml]\nattention: {use: x}\ninputNorm: {any: true}\n")
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", own)
    assert result.returncode != 0
    assert "pattern 'x' is defined by both" in result.stderr and "a.patterns.yaml" in result.stderr, result.stderr


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
    # The adapter's own layerIndex (it takes the shared library's otherwise), with a broken pattern.
    text = (REPO / "Adapters/hf-torch-eager.yaml").read_text().replace(
        "\ninclude: [hf-torch.patterns.yaml]",
        "\nlayerIndex:\n  - metadata: {key: pkg.torch.onnx.name_scopes, pattern: 'layers\\.((\\d+)'}\ninclude: [hf-torch.patterns.yaml]", 1)
    assert "layers\\.((\\d+)" in text
    own.write_text(text)
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", own)
    assert result.returncode != 0
    assert str(own) in result.stderr and "is not a regular expression" in result.stderr


@pytest.mark.parametrize("change, expected", [
    # A misspelt key would otherwise be ignored, and the pattern would silently mean another.
    (("optional: true", "optinal: true"), "one of the keys"),
    (("optional: true", "optional: maybe"), "expected true or false"),
    (("output: 0", "output: first"), "expected an integer"),
])
def test_a_key_or_value_the_schema_does_not_allow_is_named_with_its_line(tmp_path, change, expected):
    old, new = change
    library = (REPO / "Adapters/hf-torch.patterns.yaml").read_text()
    assert old in library
    own = tmp_path / "hf-torch.patterns.yaml"
    own.write_text(library.replace(old, new, 1))
    line = library[:library.index(old)].count("\n") + 1
    adapter = tmp_path / "mine.yaml"
    adapter.write_text((REPO / "Adapters/hf-torch-eager.yaml").read_text())
    result = run("inspect", FIXTURES[0] / "model.onnx", "--layers", "--adapter", adapter)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {own}: "), result.stderr
    assert expected in lines[0] and f"(line {line})" in lines[0], lines[0]
