#!/usr/bin/env python3
"""Writes the PyTorch state_dict of each fixture's source model as safetensors, so the
weight-export tests compare `slowfast weights export --all` with what PyTorch itself holds.

The fixtures come from three tiny random models (Scripts/make-fixtures.py): Qwen2 with seed 10,
LLaMA with seed 11 and Qwen3 with seed 12 (the float16 and KV fixtures are the Qwen2 model). This rebuilds them the
same way and saves Tests/Fixtures/state-dicts/{qwen2-seed10,llama-seed11,qwen3-seed12}.safetensors in
float32. Needs torch + transformers (Scripts/requirements-fixtures.txt); no test does.
"""
import importlib.util
from pathlib import Path

from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "Scripts/make-fixtures.py")
make_fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_fixtures)

out = REPO / "Tests/Fixtures/state-dicts"
out.mkdir(parents=True, exist_ok=True)
for family, seed in (("qwen2", 10), ("llama", 11), ("qwen3", 12)):
    model = make_fixtures.make_model(family, seed)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out / f"{family}-seed{seed}.safetensors"), metadata={"format": "pt", "family": family, "seed": str(seed)})
    print(family, seed, len(state), "tensors")
