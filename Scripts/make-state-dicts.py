#!/usr/bin/env python3
"""Writes the PyTorch state_dict of each fixture's source model as safetensors, so the
weight-export tests compare `slowfast weights export --all` with what PyTorch itself holds,
and the logits of the PyTorch hybrid model with bf16-rounded hybrid parameters.

The fixtures come from tiny random models (Scripts/make-fixtures.py): Qwen2 with seed 10,
LLaMA with seed 11, Qwen3 with seed 12, Phi-3 with seed 13, Granite with seed 14, Gemma 2 with
13, Gemma 3 with 14, OLMo-2 with 15, the Qwen2-VL and Qwen2.5-VL language models with 16 and 17, and InternLM2
(Scripts/internlm2.py) with 16, SmolLM3 with 18, StableLM with 19, GLM-4 with 20, Cohere with 21
(the float16 and KV fixtures of a family are its model).
This rebuilds them the same way and saves Tests/Fixtures/state-dicts/{family}-seed{seed}.safetensors in
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
for family, seed in (("qwen2", 10), ("llama", 11), ("qwen3", 12), ("phi3", 13), ("granite", 14),
                     ("gemma2", 13), ("gemma3", 14), ("olmo2", 15),
                     # the language models of Qwen2-VL and Qwen2.5-VL (make-fixtures.py's VisionLanguageModel)
                     ("qwen2vl", 16), ("qwen25vl", 17),
                     ("internlm2", 16),  # our own InternLM2-style module (Scripts/internlm2.py)
                     # issue 20's families: SmolLM3 (NoPE layers), StableLM, GLM-4, Cohere
                     ("smollm3", 18), ("stablelm", 19), ("glm4", 20), ("cohere", 21)):
    model = make_fixtures.make_model(family, seed)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out / f"{family}-seed{seed}.safetensors"), metadata={"format": "pt", "family": family, "seed": str(seed)})
    print(family, seed, len(state), "tensors")


# The PyTorch hybrid model (docs/DESIGN.md §1) with the hybrid parameters of the Qwen2
# fixture's reference rounded to bfloat16, as a bf16 checkpoint would give them: the
# reference for importing a bf16 checkpoint (Tests/Validation/test_weights.py).
import numpy as np
import torch

folder = REPO / "Tests/Fixtures/qwen2-torchscript"
ref = dict(np.load(folder / "reference.npz"))
model = make_fixtures.make_model("qwen2", 10)
module = __import__("sys").modules[type(model.model.layers[0].self_attn).__module__]
config = model.config
heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
rounded = lambda array: torch.tensor(array, dtype=torch.float32).to(torch.bfloat16).to(torch.float32)
slow = torch.tensor(ref["hybrid_slow_tokens"], dtype=torch.float32)
gates = {i: (rounded(ref[f"hybrid_gate_w_{i}"]), rounded(ref[f"hybrid_gate_b_{i}"]), rounded(ref[f"hybrid_alpha_{i}"]))
         for i in make_fixtures.HYBRID_LAYERS}
queries = []
original_rope = module.apply_rotary_pos_emb


def recording_rope(q, k, *args, **kwargs):
    q_embed, k_embed = original_rope(q, k, *args, **kwargs)
    queries.append(q_embed)
    return q_embed, k_embed


def hook_for(index, layer):
    def hook(_module, args):
        a_sa, q = args[0], queries[-1]
        s_hat = layer.input_layernorm(slow)
        # cross_attn_kv_proj = concat(k_proj, v_proj), rounded to bf16 like every tensor of the checkpoint.
        w = rounded(torch.cat([layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight]).detach().numpy())
        b = rounded(torch.cat([layer.self_attn.k_proj.bias, layer.self_attn.v_proj.bias]).detach().numpy())
        kv = s_hat @ w.T + b
        n = slow.shape[1]
        k, v = kv[..., : kv_heads * head_dim], kv[..., kv_heads * head_dim:]
        k = k.view(1, n, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        v = v.view(1, n, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        weights = torch.softmax(q @ k.transpose(2, 3) / head_dim ** 0.5, dim=-1)
        a_x = (weights @ v).transpose(1, 2).reshape(a_sa.shape)
        w_g, b_g, alpha = gates[index]
        return (a_sa + torch.tanh(a_sa @ w_g.T + b_g) * torch.tanh(alpha) * a_x,)
    return hook


hooks = [model.model.layers[i].self_attn.o_proj.register_forward_pre_hook(hook_for(i, model.model.layers[i]))
         for i in make_fixtures.HYBRID_LAYERS]
module.apply_rotary_pos_emb = recording_rope
try:
    with torch.no_grad():
        ids = torch.tensor(make_fixtures.TOKENS)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.numpy()
finally:
    module.apply_rotary_pos_emb = original_rope
    for hook in hooks:
        hook.remove()
np.savez(out / "qwen2-seed10-hybrid-bf16.npz", logits=logits)
print("bf16 hybrid reference: max change from the float32 reference", float(np.abs(logits - ref["hybrid_logits_step0"]).max()))
