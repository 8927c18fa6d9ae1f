"""The installed tool works on its own: `make install` into a prefix, the binary copied to an
empty folder outside the repository, and every subcommand run from there with a bare
environment (no SLOWFAST_* variables, no repository beside it)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "Examples/qwen2-tiny/model.onnx"


def test_installed_binary_runs_every_subcommand_outside_the_repository(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["make", "-s", "-C", str(REPO), "install", f"PREFIX={prefix}", "CONFIG=debug"],
                   check=True, capture_output=True, text=True)
    installed = prefix / "bin/slowfast"
    assert installed.is_file() and os.access(installed, os.X_OK)

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    binary = alone / "slowfast"
    shutil.copy2(installed, binary)
    model_dir = alone / "model"
    model_dir.mkdir()
    for name in ("model.onnx", "model.onnx.data"):
        shutil.copy2(EXAMPLE.parent / name, model_dir / name)
    env = {"PATH": "/usr/bin:/bin"}

    def run(*args):
        result = subprocess.run([str(binary), *map(str, args)], cwd=alone, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    assert run("--version").strip() == "0.4.0"
    assert "hf-torch-eager" in run("adapters")
    assert "layers:" in run("adapters", "hf-torch-eager") or "attention:" in run("adapters", "hf-torch-eager")
    assert set(run("schema").split()) == {"adapter", "cost", "inspect", "weight-map"}
    json.loads(run("schema", "weight-map"))
    assert "inputs:" in run("inspect", "model/model.onnx")
    layers = json.loads(run("inspect", "model/model.onnx", "--layers", "--json"))
    assert len(layers["layout"]["layers"]) == 6
    assert "layer 2: hybrid" in run("plan", "model/model.onnx", "--hybrid-layers", "0,2")
    run("rewrite", "model/model.onnx", "-o", "out.onnx", "--hybrid-layers", "0,2", "--activation", "srelu",
        "--activation-targets", "silu")
    onnx.checker.check_model(str(alone / "out.onnx"), full_check=True)
    report = json.loads(run("inspect", "out.onnx", "--json"))
    assert [layer["layer"] for layer in report["rewrites"]["hybridLayers"]] == [0, 2]
    run("tokens", "-o", "tokens.onnx", "--preset", "s2t4", "--frames", "32", "--height", "4", "--width", "4", "--dim", "8")
    onnx.checker.check_model(str(alone / "tokens.onnx"), full_check=True)
    assert "slow-fast@128" in run("cost", "--preset", "qwen2-7b", "--frames", "16,128")
    assert "hybrid layers 0,2" in run("cost", "out.onnx", "--frames", "16", "--intermediate", "128")
