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
(Scripts/slowfast_oracle.py's cross_attention_hook, as the fixtures' hybrid references; the LLM is
its make_model("qwen2"), the tower's and LLM's weights its randomize).
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
sys.path.insert(0, str(REPO / "Scripts"))
import slowfast_oracle as oracle  # noqa: E402
from pipeline import PREFIX, QUESTION, synthetic_video  # noqa: E402

# save_tiny_tokenizer (for the genai builder) is make-fixtures.py's export helper.
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
        # slowfast_oracle.randomize with this tower's weights, as they always were: n / max(1, sqrt(fan_in)).
        oracle.randomize(self, SEED, oracle.fan_in_weight(1.0))

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
    return oracle.example_gates(SEED, HIDDEN, HYBRID_LAYERS)


def torch_generate(model, embed, slow, fast, gates):
    """Greedy decoding with the §1 hybrid layers at HYBRID_LAYERS (slowfast_oracle.cross_attention_hook),
    gates on; KV cache."""
    queries, hooks = {}, []
    for i in HYBRID_LAYERS:
        layer = model.model.layers[i]
        gate = tuple(torch.from_numpy(gates[f"{name}_{i}"]) for name in ("gate_w", "gate_b", "gate_alpha"))
        hook = oracle.cross_attention_hook(i, layer, slow, gate, queries, model.config)
        hooks.append(oracle.output_projection(oracle.attention_of(layer)).register_forward_pre_hook(hook))
    tokens, logits_per_step = [], []
    try:
        with torch.no_grad(), oracle.recording_queries(model) as recorded:
            queries.update(recorded)
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

    llm = oracle.make_model("qwen2", SEED, max_position_embeddings=256)
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
