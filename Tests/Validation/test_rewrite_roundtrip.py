"""A model this tool wrote, read back by this tool: `inspect` lists exactly the hybrid layers and
SReLU sites the rewrite made, each with the parameters the weight map says are new or derived;
`inspect --layers` describes it like the original; a second rewrite of it is refused."""
import json

import pytest

from conftest import run
from fixtures import FIXTURES, srelu_channel_flags


def snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("folder", FIXTURES, ids=[f.name for f in FIXTURES])
def test_inspect_lists_what_the_rewrite_made(folder, tmp_path):
    genai = "genai" in folder.name
    modes = ["in-place"] if genai else ["in-place", "insert"]
    for mode in modes:
        out = tmp_path / mode / "model.onnx"
        out.parent.mkdir()
        # Gemma's MLP activation is GELU (tanh), every other family's SiLU.
        target = "gelu" if folder.name.startswith("gemma") else "silu"
        result = run("rewrite", folder / "model.onnx", "-o", out, "--hybrid-layers", "1,4", "--mode", mode,
                     "--activation", "srelu", "--activation-targets", target, *srelu_channel_flags(folder))
        assert result.returncode == 0, result.stderr
        weight_map = json.loads(out.with_suffix(".weight-map.json").read_text())
        created = {e["onnxName"] for e in weight_map["entries"] if e["kind"] in ("new", "derived")}

        report = json.loads(run("inspect", out, "--json").stdout)["rewrites"]
        assert [(layer["layer"], layer["mode"]) for layer in report["hybridLayers"]] == [(1, mode), (4, mode)]
        per_layer = [set(layer["parameters"]) for layer in report["hybridLayers"]]
        # A quantized kv_proj brings its scales (and zero points) along.
        storage = [sum(1 for e in weight_map["entries"] if e["kind"] != "kept"
                       and e["canonicalName"].startswith(f"model.layers.{index}.self_attn.cross_attn_kv_proj.weight.")) for index in (1, 4)]
        assert all(len(p) == (5 if mode == "in-place" else 11) + extra for p, extra in zip(per_layer, storage)), per_layer
        sites = report["sreluSites"]
        assert len(sites) == 6 and all(len(site["parameters"]) == 4 for site in sites)
        owned = set().union(*per_layer, *(set(site["parameters"]) for site in sites))
        # Exactly the tensors the weight map calls new or derived.
        assert owned == created
        for layer in report["hybridLayers"]:
            assert all(f"layers.{layer['layer']}." in name for name in layer["parameters"]), layer

        original = json.loads(run("inspect", folder / "model.onnx", "--layers", "--json").stdout)["layout"]
        again = json.loads(run("inspect", out, "--layers", "--json").stdout)["layout"]
        assert again["dimensions"]["numLayers"] == original["dimensions"]["numLayers"]
        assert [l["o"]["node"] for l in again["layers"]] == [l["o"]["node"] for l in original["layers"]]


def test_a_second_rewrite_is_refused_and_writes_nothing(tmp_path):
    folder = next(f for f in FIXTURES if f.name == "qwen2-torchscript")
    first = tmp_path / "first.onnx"
    assert run("rewrite", folder / "model.onnx", "-o", first, "--hybrid-layers", "0,2").returncode == 0
    out = tmp_path / "second"
    out.mkdir()
    before = snapshot(tmp_path)
    for layers, expected in [("0,2", "layer 0 is already hybrid"), ("3", "already has hybrid layers 0,2")]:
        result = run("rewrite", first, "-o", out / "m.onnx", "--hybrid-layers", layers)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {first}:") and expected in lines[0], result.stderr
        assert list(out.iterdir()) == []
    assert snapshot(tmp_path) == before
