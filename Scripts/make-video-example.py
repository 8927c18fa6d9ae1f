#!/usr/bin/env python3
"""Builds Examples/video-mllm: a tiny video MLLM from random parts, exported the way real
ones are, and a PyTorch run of the same pipeline as its reference (issue 14).

    vision/model.onnx   SigLIP tower (32x32 frames, patch 4: an 8x8 grid, width 32) and a
                        LLaVA projector (Linear-GELU-Linear) to the LLM width 64, exported by
                        torch.onnx (dynamo), `pixel_values` [frames, 3, 32, 32] ->
                        `projector_out` [frames, 64, 64]
    llm/                a Qwen2 decoder (6 layers, hidden 64, 4 heads, 2 KV heads, vocab 256)
                        exported by onnxruntime-genai's builder with its KV cache and
                        `exclude_embeds` (it takes `inputs_embeds`, so the fast tokens can be
                        put in the sequence)
    embed_tokens.npy    the decoder's token embedding [256, 64], for the text around the video
    reference.npz       for 8 and 24 frames: PyTorch's slow and fast tokens, the logits of
                        every decoding step and the greedy tokens, with the hybrid layers
                        0, 2, 4 gated on (`gate_*`, the same for both lengths)

The PyTorch pipeline is written here from the rules, not from the tool: the token rules of
docs/DESIGN.md §5 (s1t4 with at least 4 fast frames; 8 frames fall back to adaptive pooling,
24 are pooled by 4) and the hybrid layer of §1 as forward hooks on the transformers model
(the same construction as Scripts/make-fixtures.py's hybrid reference).
Needs torch + transformers + onnxruntime-genai (Scripts/requirements-fixtures.txt); the demo
and the tests do not.
"""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import transformers

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "Examples/video-mllm"
sys.path.insert(0, str(OUT))
from pipeline import PREFIX, QUESTION, synthetic_video  # noqa: E402

spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "Scripts/make-fixtures.py")
make_fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_fixtures)

SEED = 31
HIDDEN = 64
FRAME_COUNTS = (8, 24)
NEW_TOKENS = 6
HYBRID_LAYERS = (0, 2, 4)
STRIDE, KERNEL, MIN_FAST, SLOW_POOL = 1, 4, 4, 2


class VisionTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        config = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=2, image_size=32, patch_size=4, vision_use_head=False)
        self.vision = transformers.SiglipVisionModel(config)
        self.projector = torch.nn.Sequential(torch.nn.Linear(32, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN))
        generator = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                noise = torch.randn(parameter.shape, generator=generator)
                if "norm" in name and name.endswith("weight"):
                    parameter.copy_(1 + 0.1 * noise)
                elif name.endswith("bias"):
                    parameter.copy_(0.02 * noise)
                else:
                    parameter.copy_(noise / max(1.0, parameter[0].numel() ** 0.5))

    def forward(self, pixel_values):
        return self.projector(self.vision(pixel_values=pixel_values).last_hidden_state)


def torch_tokens(features):
    """docs/DESIGN.md §5 in torch: features [F, 64, d] on an 8x8 grid -> slow [1, F*16, d], fast."""
    frames, _, d = features.shape
    grid = features.reshape(frames, 8, 8, d).permute(0, 3, 1, 2)
    slow_grid = torch.nn.functional.avg_pool2d(grid, SLOW_POOL)                # [F, d, 4, 4]
    slow = slow_grid.permute(0, 2, 3, 1).reshape(1, -1, d)
    if STRIDE > 1 and frames >= MIN_FAST:
        n = max(frames // STRIDE, MIN_FAST)
        indices = [min(int(i * (frames / n)), frames - 1) for i in range(n)]
    else:
        indices = list(range(frames))
    sampled = slow_grid[indices]
    n = sampled.shape[0]
    if KERNEL > 1 and n // KERNEL >= MIN_FAST:
        fast_grid = torch.stack([sampled[j * KERNEL:(j + 1) * KERNEL].mean(0) for j in range(n // KERNEL)])
    elif KERNEL > 1:
        m = min(n, MIN_FAST)
        fast_grid = torch.stack([sampled[(j * n) // m:math.ceil((j + 1) * n / m)].mean(0) for j in range(m)])
    else:
        fast_grid = sampled
    return slow, fast_grid.permute(0, 2, 3, 1).reshape(1, -1, d)


def gate_values():
    rng = np.random.default_rng(SEED)
    gates = {}
    for i in HYBRID_LAYERS:
        gates[f"gate_w_{i}"] = (rng.standard_normal((1, HIDDEN)) * 0.5).astype(np.float32)
        gates[f"gate_b_{i}"] = np.array([0.1 * (i + 1)], np.float32)
        gates[f"gate_alpha_{i}"] = np.array([0.8 + 0.05 * i], np.float32)
    return gates


def torch_generate(model, embed, slow, fast, gates):
    """Greedy decoding with the §1 hybrid layers at HYBRID_LAYERS, gates on; KV cache."""
    module = sys.modules[type(model.model.layers[0].self_attn).__module__]
    config = model.config
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    queries = []
    original_rope = module.apply_rotary_pos_emb

    def recording_rope(q, k, *args, **kwargs):
        q_embed, k_embed = original_rope(q, k, *args, **kwargs)
        queries.append(q_embed)
        return q_embed, k_embed

    def hook_for(i, layer):
        def hook(_module, args):
            a_sa = args[0]
            q = queries[-1]
            s_hat = layer.input_layernorm(slow)
            n = slow.shape[1]
            k = layer.self_attn.k_proj(s_hat).view(1, n, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
            v = layer.self_attn.v_proj(s_hat).view(1, n, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
            weights = torch.softmax(q @ k.transpose(2, 3) / head_dim ** 0.5, dim=-1)
            a_x = (weights @ v).transpose(1, 2).reshape(a_sa.shape)
            w = torch.from_numpy(gates[f"gate_w_{i}"])
            b = torch.from_numpy(gates[f"gate_b_{i}"])
            alpha = torch.from_numpy(gates[f"gate_alpha_{i}"])
            return (a_sa + torch.tanh(a_sa @ w.T + b) * torch.tanh(alpha) * a_x,)
        return hook

    hooks = [model.model.layers[i].self_attn.o_proj.register_forward_pre_hook(hook_for(i, model.model.layers[i])) for i in HYBRID_LAYERS]
    module.apply_rotary_pos_emb = recording_rope
    tokens, logits_per_step = [], []
    try:
        with torch.no_grad():
            sequence = torch.cat([embed[PREFIX][None], fast, embed[QUESTION][None]], dim=1)
            length = sequence.shape[1]
            output = model(inputs_embeds=sequence, attention_mask=torch.ones((1, length), dtype=torch.long), use_cache=True)
            for step in range(NEW_TOKENS):
                logits = output.logits[0, -1]
                logits_per_step.append(logits.numpy().copy())
                top = torch.topk(logits, 2).values
                if float(top[0] - top[1]) < 1e-3:
                    raise RuntimeError(f"step {step}: the top two logits are {float(top[0] - top[1]):.1e} apart; greedy "
                                       "decoding would not be a stable reference (change SEED or the prompt)")
                token = int(torch.argmax(logits))
                tokens.append(token)
                if step + 1 < NEW_TOKENS:
                    length += 1
                    output = model(inputs_embeds=embed[[token]][None], attention_mask=torch.ones((1, length), dtype=torch.long),
                                   past_key_values=output.past_key_values, use_cache=True)
    finally:
        module.apply_rotary_pos_emb = original_rope
        for hook in hooks:
            hook.remove()
    return tokens, np.stack(logits_per_step)


def export_llm(model, folder):
    with tempfile.TemporaryDirectory() as scratch:
        hf = Path(scratch) / "hf"
        model.save_pretrained(hf)
        make_fixtures.save_tiny_tokenizer(hf, model.config.vocab_size)
        out = Path(scratch) / "out"
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out), "-p", "fp32",
                   "-e", "cpu", "-c", str(Path(scratch) / "cache"), "--extra_options", "exclude_embeds=true"]
        environment = {**os.environ, "GIT_DIR": str(Path(scratch) / "no-git"), "GIT_CEILING_DIRECTORIES": scratch}
        result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=scratch)
        if result.returncode != 0:
            raise RuntimeError("onnxruntime-genai builder failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])
        folder.mkdir(parents=True)
        for name in ("model.onnx", "model.onnx.data", "genai_config.json"):
            shutil.copy(out / name, folder / name)


def main():
    for part in ("vision", "llm", "embed_tokens.npy", "reference.npz", "meta.json"):
        path = OUT / part
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    tower = VisionTower().eval()
    (OUT / "vision").mkdir(parents=True)
    with torch.no_grad():
        frames = torch.export.Dim("frames", min=1, max=1024)
        program = torch.onnx.export(tower, (torch.from_numpy(synthetic_video(3)),), dynamo=True, input_names=["pixel_values"],
                                    output_names=["projector_out"], dynamic_shapes={"pixel_values": {0: frames}})
        program.save(str(OUT / "vision/model.onnx"), external_data=False)

    llm = make_fixtures.make_model("qwen2", SEED, max_position_embeddings=256)
    export_llm(llm, OUT / "llm")
    embed = llm.model.embed_tokens.weight.detach()
    np.save(OUT / "embed_tokens.npy", embed.numpy().astype(np.float32))

    gates = gate_values()
    reference = dict(gates)
    vision_session = ort.InferenceSession(str(OUT / "vision/model.onnx"))
    for count in FRAME_COUNTS:
        pixels = synthetic_video(count)
        with torch.no_grad():
            features = tower(torch.from_numpy(pixels))
        onnx_features = vision_session.run(["projector_out"], {"pixel_values": pixels})[0]
        diff = float(np.abs(onnx_features - features.numpy()).max())
        if diff > 1e-4:
            raise RuntimeError(f"vision export differs from torch by {diff}")
        slow, fast = torch_tokens(features)
        tokens, logits = torch_generate(llm, embed, slow, fast, gates)
        reference.update({f"slow_tokens_{count}": slow.numpy(), f"fast_tokens_{count}": fast.numpy(),
                          f"logits_{count}": logits, f"tokens_{count}": np.array(tokens, np.int64)})
        print(f"{count} frames: {slow.shape[1]} slow, {fast.shape[1]} fast tokens; torch tokens {tokens}")
    np.savez(OUT / "reference.npz", **reference)
    meta = {"seed": SEED, "frames": list(FRAME_COUNTS), "newTokens": NEW_TOKENS, "hybridLayers": list(HYBRID_LAYERS),
            "tokenRule": {"stride": STRIDE, "kernel": KERNEL, "minFastFrames": MIN_FAST, "slowPool": SLOW_POOL},
            "prefix": PREFIX, "question": QUESTION, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": ort.__version__}
    import onnxruntime_genai
    meta["onnxruntime_genai"] = onnxruntime_genai.__version__
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
