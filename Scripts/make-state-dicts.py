#!/usr/bin/env python3
"""Writes the PyTorch state_dict of each fixture's source model as safetensors, so the
weight-export tests compare `slowfast weights export --all` with what PyTorch itself holds,
and the logits of the PyTorch hybrid model with bf16-rounded hybrid parameters.

The fixtures come from tiny random models (Scripts/make-fixtures.py), one per family, of the
family's seed in the family table of Scripts/slowfast_oracle.py (SEEDS: Qwen2 10, LLaMA 11, Qwen3
12, Phi-3 13, Granite 14, Gemma 2 13, Gemma 3 14, OLMo-2 15, the Qwen2-VL and Qwen2.5-VL language
models 16 and 17, InternLM2 (Scripts/internlm2.py) 16, SmolLM3 18, StableLM 19, GLM-4 20, Cohere
21; the float16 and KV fixtures of a family are its model; DeepSeek-V3, which the tool refuses,
has none). This rebuilds them with slowfast_oracle.make_model and saves
Tests/Fixtures/state-dicts/{family}-seed{seed}.safetensors in float32. Needs torch + transformers
(Scripts/requirements-fixtures.txt); no test does.
"""
from pathlib import Path

from safetensors.torch import save_file

import slowfast_oracle as oracle

REPO = Path(__file__).resolve().parents[1]

out = REPO / "Tests/Fixtures/state-dicts"
out.mkdir(parents=True, exist_ok=True)
for family, seed in oracle.SEEDS.items():
    if family == "deepseekv3":  # refused by the tool (multi-head latent attention): no weights to export
        continue
    model = oracle.make_model(family, seed)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out / f"{family}-seed{seed}.safetensors"), metadata={"format": "pt", "family": family, "seed": str(seed)})
    print(family, seed, len(state), "tensors")


# The PyTorch hybrid model (docs/DESIGN.md §1: slowfast_oracle.cross_attention_hook) with the
# hybrid parameters of the Qwen2 fixture's reference rounded to bfloat16, as a bf16 checkpoint
# would give them: the reference for importing a bf16 checkpoint (Tests/Validation/test_weights.py).
import numpy as np
import torch

folder = REPO / "Tests/Fixtures/qwen2-torchscript"
ref = dict(np.load(folder / "reference.npz"))
model = oracle.make_model("qwen2", oracle.SEEDS["qwen2"])
rounded = lambda array: torch.tensor(array, dtype=torch.float32).to(torch.bfloat16).to(torch.float32)
slow = torch.tensor(ref["hybrid_slow_tokens"], dtype=torch.float32)
gates = {i: (rounded(ref[f"hybrid_gate_w_{i}"]), rounded(ref[f"hybrid_gate_b_{i}"]), rounded(ref[f"hybrid_alpha_{i}"]))
         for i in oracle.HYBRID_LAYERS}


def bf16_keys_values(attention, s_hat, kv_width):
    """cross_attn_kv_proj = concat(k_proj, v_proj), rounded to bf16 like every tensor of the
    checkpoint, applied as one projection and split into the keys and the values."""
    w = rounded(torch.cat([attention.k_proj.weight, attention.v_proj.weight]).detach().numpy())
    b = rounded(torch.cat([attention.k_proj.bias, attention.v_proj.bias]).detach().numpy())
    kv = s_hat @ w.T + b
    return kv[..., :kv_width], kv[..., kv_width:]


queries = {}                                             # recording_queries: layer index -> its queries
hooks = [oracle.output_projection(oracle.attention_of(model.model.layers[i])).register_forward_pre_hook(
             oracle.cross_attention_hook(i, model.model.layers[i], slow, gates[i], queries, model.config, bf16_keys_values))
         for i in oracle.HYBRID_LAYERS]
try:
    with torch.no_grad(), oracle.recording_queries(model) as recorded:
        queries.update(recorded)
        ids = torch.tensor(oracle.TOKENS)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.numpy()
finally:
    for hook in hooks:
        hook.remove()
np.savez(out / "qwen2-seed10-hybrid-bf16.npz", logits=logits)
print("bf16 hybrid reference: max change from the float32 reference", float(np.abs(logits - ref["hybrid_logits_step0"]).max()))
