#!/usr/bin/env python3
"""Builds Examples/video-qwen25vl: a tiny random Qwen2.5-VL (vision tower and language model),
exported the way such models are, and a PyTorch run of the whole slow-fast pipeline as its
reference (issue 23).

    tower-8x56x84/      the Qwen2.5-VL vision tower (Scripts/export-qwen-vl-tower.py's qwen25vl:
    tower-12x84x112/    depth 3, window attention, merger width 64 = the LM width) exported by
                        TorchScript at one video size each (8 frames of 56x84 pixels: grid_thw
                        [4, 4, 6], merged 4x2x3, 24 rows; 12 frames of 84x112: [6, 6, 8], merged
                        6x3x4, 72 rows): `pixel_values` [T*h*w, 1176] -> `features` [rows, 64];
                        with the export script's meta.json (raster-order proofs, torch diff)
    llm/model.onnx      the Qwen2.5-VL text decoder (Scripts/slowfast_oracle.py's qwen25vl: 6 layers,
                        hidden 64, 4 heads, 2 KV heads, head_dim 16, vocab 256, mrope_section
                        [2, 3, 3]) and its lm_head, exported by TorchScript (opset 17) with its KV
                        cache as qwen25vl-torchscript-kv is, but taking `inputs_embeds` [batch,
                        sequence, 64] (so the fast tokens can be put in the sequence),
                        `attention_mask`, `position_ids` [3, batch, sequence] and
                        `past_key_values.{i}.key/value`; `logits` and `present.{i}.key/value` out
    embed_tokens.npy    the decoder's token embedding [256, 64], for the text around the video
    reference.npz       for each size (key suffix FxHxW): the random video (`video_*`, uint8 at
                        half resolution), PyTorch's merger `features_*`, `slow_tokens_*`,
                        `fast_tokens_*`, `fast_grid_*`, the prompt's `position_ids_*` [3, 1, L]
                        and `rope_delta_*` from transformers' own get_rope_index, and the logits of
                        every decoding step and the greedy tokens with the hybrid layers 0, 2, 4
                        gated on (`logits_*`, `tokens_*`; gates `gate_*`, the same for both sizes)
                        and of the unmodified model (`logits_plain_*`, `tokens_plain_*`)
    meta.json           the rules and choices below, versions, per-size counts

The PyTorch pipeline is written here from the rules, not from the tool:
- tokens (docs/DESIGN.md §5, flat merged patches): the merger rows read as [T, h, w, d]; preset
  s1t4 counts video frames, and over rows of 2 frames it is stride 1, kernel 2; at least 2 fast
  rows (so both sizes are pooled by 2: 4 -> 2 and 6 -> 3 rows, no fallback); slow pool 1 (the
  merged grids are 2x3 and 3x4: a 2x2 pool would leave one or two tokens a row); fast_grid =
  (fast rows, h, w);
- positions: transformers' Qwen2_5_VLModel.get_rope_index itself, called with input ids PREFIX,
  one video token per fast token, QUESTION, `video_grid_thw` [fast rows, 2h, 2w] (the fast
  layout in unmerged patches) and `second_per_grid_ts` the seconds a fast row spans (4 frames
  at FPS 2: 2 s), with `tokens_per_second` 2 (the released Qwen2.5-VL checkpoints' value; the
  config class defaults to 4); decode steps at cache length + rope delta in all three rows, as
  generation does. pipeline.rope_index's NumPy version is checked against it here;
- the hybrid layer (§1): Scripts/slowfast_oracle.py's cross_attention_hook on o_proj, the query
  recorded after the multimodal RoPE (recording_queries), the slow keys unrotated; the gates
  slowfast_oracle.example_gates.
Needs torch + transformers (Scripts/requirements-fixtures.txt); the demo and the tests do not.
Deterministic: a second run writes the same bytes.
"""
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "Examples/video-qwen25vl"
sys.path.insert(0, str(OUT))
sys.path.insert(0, str(REPO / "Scripts"))
import pipeline  # noqa: E402
import slowfast_oracle as oracle  # noqa: E402
from pipeline import PREFIX, QUESTION  # noqa: E402


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tower_export = load("export_qwen_vl_tower", REPO / "Scripts/export-qwen-vl-tower.py")

SEED = 37                     # the language model's weights and the gates
TOWER_SEED = 31               # the tower's weights (export-qwen-vl-tower.py's qwen25vl default)
VIDEO_SEED = 41
HIDDEN = oracle.TINY["hidden_size"]
SIZES = ((8, 56, 84), (12, 84, 112))
NEW_TOKENS = 6
HYBRID_LAYERS = (0, 2, 4)
PRESET, FRAME_STRIDE, FRAME_KERNEL = "s1t4", 1, 4
ROW_STRIDE, ROW_KERNEL = 1, FRAME_KERNEL // pipeline.TEMPORAL_PATCH   # s1t4 over rows of 2 frames
MIN_FAST_ROWS, SLOW_POOL = 2, 1
FPS, TOKENS_PER_SECOND = 2, 2
SECONDS_PER_FAST_ROW = FRAME_STRIDE * FRAME_KERNEL / FPS


def size_key(frames, height, width):
    return f"{frames}x{height}x{width}"


def example_video(frames, height, width, seed):
    """uint8 [frames, 3, height/2, width/2]: drawn at half resolution (pipeline.normalized_video
    upscales it 2x), so that reference.npz stays small, as the tower fixtures' videos are."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, 3, height // 2, width // 2), generator=generator, dtype=torch.uint8).numpy()


def torch_tokens(features, grid):
    """docs/DESIGN.md §5 over rows: features [T*h*w, d] -> slow [1, T*(h/P)*(w/P), d],
    fast [1, N_f, d], fast_grid (fast rows, h/P, w/P)."""
    rows, h, w = grid
    d = features.shape[-1]
    x = features.reshape(rows, h, w, d).permute(0, 3, 1, 2)                 # [T, d, h, w]
    pooled = torch.nn.functional.avg_pool2d(x, SLOW_POOL) if SLOW_POOL > 1 else x
    slow = pooled.permute(0, 2, 3, 1).reshape(1, -1, d)
    if ROW_STRIDE > 1 and rows >= MIN_FAST_ROWS:
        n = max(rows // ROW_STRIDE, MIN_FAST_ROWS)
        indices = [min(int(i * (rows / n)), rows - 1) for i in range(n)]
    else:
        indices = list(range(rows))
    sampled = pooled[indices]
    n = sampled.shape[0]
    if ROW_KERNEL > 1 and n // ROW_KERNEL >= MIN_FAST_ROWS:
        fast_grid = torch.stack([sampled[j * ROW_KERNEL:(j + 1) * ROW_KERNEL].mean(0) for j in range(n // ROW_KERNEL)])
    else:
        raise AssertionError(f"{rows} rows: the adaptive fallback; the example is to pool at both sizes")
    return slow, fast_grid.permute(0, 2, 3, 1).reshape(1, -1, d), np.array(fast_grid.shape[:1] + fast_grid.shape[2:], np.int64)


def gate_values():
    return oracle.example_gates(SEED, HIDDEN, HYBRID_LAYERS)


def rope_index(llm, fast_grid):
    """transformers' get_rope_index for PREFIX + a video of the fast layout + QUESTION."""
    full = llm.full[0]
    video_token = full.config.video_token_id
    rows, h, w = (int(v) for v in fast_grid)
    count = rows * h * w
    ids = torch.tensor([PREFIX + [video_token] * count + QUESTION])
    types = torch.tensor([[0] * len(PREFIX) + [2] * count + [0] * len(QUESTION)], dtype=torch.int32)
    merge = full.config.vision_config.spatial_merge_size
    positions, delta = full.model.get_rope_index(ids, mm_token_type_ids=types,
                                                 video_grid_thw=torch.tensor([[rows, h * merge, w * merge]]),
                                                 second_per_grid_ts=torch.tensor([SECONDS_PER_FAST_ROW], dtype=torch.float32),
                                                 attention_mask=torch.ones_like(ids))
    return positions, int(delta.reshape(-1)[0])


def torch_generate(llm, embed, slow, fast, positions, delta, gates=None):
    """Greedy decoding with the KV cache; with `gates`, the §1 hybrid layers at HYBRID_LAYERS
    (slowfast_oracle.cross_attention_hook), gates on. Returns the tokens and every step's logits."""
    model = llm.model                                                       # the text decoder
    queries, hooks = {}, []
    if gates is not None:
        for i in HYBRID_LAYERS:
            layer = model.layers[i]
            gate = tuple(torch.from_numpy(gates[f"{name}_{i}"]) for name in ("gate_w", "gate_b", "gate_alpha"))
            hook = oracle.cross_attention_hook(i, layer, slow, gate, queries, llm.config)
            hooks.append(oracle.output_projection(oracle.attention_of(layer)).register_forward_pre_hook(hook))
    tokens, logits_per_step = [], []
    try:
        with torch.no_grad(), oracle.recording_queries(llm) as recorded:
            queries.update(recorded)
            sequence = torch.cat([embed[PREFIX][None], fast, embed[QUESTION][None]], dim=1)
            length = sequence.shape[1]
            output = model(inputs_embeds=sequence, attention_mask=torch.ones((1, length), dtype=torch.long),
                           position_ids=positions, use_cache=True)
            for step in range(NEW_TOKENS):
                logits = llm.lm_head(output.last_hidden_state)[0, -1]
                logits_per_step.append(logits.numpy().copy())
                top = torch.topk(logits, 2).values
                if float(top[0] - top[1]) < 1e-3:
                    raise RuntimeError(f"step {step}: the top two logits are {float(top[0] - top[1]):.1e} apart; greedy "
                                       "decoding would not be a stable reference (change SEED or the prompt)")
                token = int(torch.argmax(logits))
                tokens.append(token)
                if step + 1 < NEW_TOKENS:
                    position = torch.full((3, 1, 1), length + delta, dtype=torch.long)   # cache length + rope delta
                    length += 1
                    output = model(inputs_embeds=embed[[token]][None], attention_mask=torch.ones((1, length), dtype=torch.long),
                                   position_ids=position, past_key_values=output.past_key_values, use_cache=True)
    finally:
        for hook in hooks:
            hook.remove()
    return tokens, np.stack(logits_per_step)


class EmbedsWithCache(torch.nn.Module):
    """The text decoder and lm_head: logits and present K/V from inputs_embeds, attention_mask,
    position_ids [3, batch, sequence] and the past K/V as flat tensors (make-fixtures.py's
    VisionWithCache with inputs_embeds for input_ids)."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = transformers.DynamicCache(config=self.llm.config)
        for i in range(self.llm.config.num_hidden_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        output = self.llm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                                past_key_values=cache, use_cache=True)
        presents = []
        for layer in output.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (self.llm.lm_head(output.last_hidden_state), *presents)


def export_llm(llm, folder):
    """TorchScript (opset 17) with the KV cache, traced with a past of 2 positions (so the cache's
    Concat is in the graph), as make-fixtures.py's export_vl_torch's torchscript-kv."""
    folder.mkdir(parents=True)
    config = llm.config
    layers, traced_past, length = config.num_hidden_layers, 2, len(oracle.TOKENS[0])
    generator = torch.Generator().manual_seed(SEED)
    embeds = torch.randn(1, length, config.hidden_size, generator=generator)
    past = [torch.randn(1, config.num_key_value_heads, traced_past, config.head_dim, generator=generator) for _ in range(2 * layers)]
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [name.replace("past_key_values", "present") for name in past_names]
    axes = {"inputs_embeds": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "position_ids": {1: "batch", 2: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch", 2: "past_sequence"} for name in past_names})
    axes.update({name: {0: "batch", 2: "total_sequence"} for name in present_names})
    mask = torch.ones((1, length + traced_past), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(EmbedsWithCache(llm), (embeds, mask, oracle.mrope_positions(length, traced_past), *past),
                          str(folder / "model.onnx"), dynamo=False, opset_version=17,
                          input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=axes)
    onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)


def export_tower(frames, height, width, folder):
    """export-qwen-vl-tower.py's qwen25vl tower with its merger widened to the LM width; the
    script's own checks (processor layout, raster-order proofs, onnxruntime within 1e-5) run."""
    tower_export.LLM_WIDTH = HIDDEN
    tower_export.FAMILIES["qwen25vl"]["kwargs"]["out_hidden_size"] = HIDDEN
    with tempfile.TemporaryDirectory() as scratch:
        tower_export.build("qwen25vl", frames, height, width, Path(scratch) / "tower", TOWER_SEED)
        folder.mkdir(parents=True)
        shutil.copy(Path(scratch) / "tower/model.onnx", folder / "model.onnx")
        meta = json.loads((Path(scratch) / "tower/meta.json").read_text())
        meta["note"] = ("written by Scripts/export-qwen-vl-tower.py for Scripts/make-video-example-qwen25vl.py "
                        "(out_hidden_size 64); its reference.npz is not kept: the example's is in ../reference.npz")
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    graph = tower_export.TowerGraph("qwen25vl", TOWER_SEED).eval()
    return graph


def main():
    torch.set_num_threads(1)
    for part in [f"tower-{size_key(*s)}" for s in SIZES] + ["llm", "embed_tokens.npy", "reference.npz", "meta.json"]:
        path = OUT / part
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    llm = oracle.make_model("qwen25vl", SEED)
    llm.full[0].config.vision_config.tokens_per_second = TOKENS_PER_SECOND
    export_llm(llm, OUT / "llm")
    embed = llm.model.embed_tokens.weight.detach()
    np.save(OUT / "embed_tokens.npy", embed.numpy().astype(np.float32))
    llm_session = pipeline.session(OUT / "llm/model.onnx")

    gates = gate_values()
    reference = dict(gates)
    sizes = {}
    for frames, height, width in SIZES:
        key = size_key(frames, height, width)
        folder = OUT / f"tower-{key}"
        tower = export_tower(frames, height, width, folder)
        video = example_video(frames, height, width, VIDEO_SEED + frames)
        pixels = pipeline.normalized_video(video)
        pixel_values, grid_thw = tower_export.video_to_patches(torch.from_numpy(pixels))
        numpy_values, numpy_grid = pipeline.video_to_patches(pixels)
        if not (np.array_equal(pixel_values.numpy(), numpy_values) and np.array_equal(grid_thw[0].numpy(), numpy_grid)):
            raise AssertionError("pipeline.video_to_patches differs from export-qwen-vl-tower.py's")
        with torch.no_grad():
            features = tower(pixel_values, grid_thw)
        onnx_features = pipeline.session(folder / "model.onnx").run(["features"], {"pixel_values": numpy_values})[0]
        tower_diff = float(np.abs(onnx_features - features.numpy()).max())
        if tower_diff > 1e-5:
            raise AssertionError(f"{key}: the tower's export differs from torch by {tower_diff}")
        T, h, w = grid_thw[0].tolist()
        merged = (T, h // pipeline.MERGE, w // pipeline.MERGE)
        slow, fast, fast_grid = torch_tokens(features, merged)
        positions, delta = rope_index(llm, fast_grid)
        numpy_positions, numpy_delta = pipeline.rope_index(len(PREFIX), fast_grid, len(QUESTION), TOKENS_PER_SECOND * SECONDS_PER_FAST_ROW)
        if not np.array_equal(positions.numpy(), numpy_positions) or delta != numpy_delta:
            raise AssertionError(f"{key}: pipeline.rope_index differs from get_rope_index:\n{positions}\n{numpy_positions}")
        tokens, logits = torch_generate(llm, embed, slow, fast, positions, delta, gates)
        plain_tokens, plain_logits = torch_generate(llm, embed, slow, fast, positions, delta)
        # The export, unmodified, on the fast tokens alone, against PyTorch's plain run.
        onnx_tokens, onnx_logits = pipeline.generate(llm_session, embed.numpy(), fast.numpy(), positions.numpy(), delta, NEW_TOKENS)
        llm_diff = float(np.abs(onnx_logits - plain_logits).max())
        if llm_diff > 1e-4 or onnx_tokens != plain_tokens:
            raise AssertionError(f"{key}: the LLM export differs from torch by {llm_diff} (tokens {onnx_tokens}, {plain_tokens})")
        if tokens == plain_tokens:
            print(f"{key}: note: the gates do not change the greedy tokens (the logits do)")
        reference.update({f"video_{key}": video, f"features_{key}": features.numpy(), f"slow_tokens_{key}": slow.numpy(),
                          f"fast_tokens_{key}": fast.numpy(), f"fast_grid_{key}": fast_grid,
                          f"position_ids_{key}": positions.numpy(), f"rope_delta_{key}": np.array(delta, np.int64),
                          f"logits_{key}": logits, f"tokens_{key}": np.array(tokens, np.int64),
                          f"logits_plain_{key}": plain_logits, f"tokens_plain_{key}": np.array(plain_tokens, np.int64)})
        sizes[key] = {"frames": frames, "height": height, "width": width, "grid_thw": grid_thw[0].tolist(),
                      "mergedGrid": list(merged), "slowTokens": int(slow.shape[1]), "fastTokens": int(fast.shape[1]),
                      "fastGrid": fast_grid.tolist(), "sequence": int(positions.shape[2]), "ropeDelta": delta,
                      "towerMaxAbsDiffTorch": tower_diff, "llmMaxAbsDiffTorch": llm_diff,
                      "tokens": tokens, "tokensPlain": plain_tokens}
        print(f"{key}: grid {grid_thw[0].tolist()} -> {slow.shape[1]} slow, {fast.shape[1]} fast tokens (fast grid "
              f"{fast_grid.tolist()}); torch tokens {tokens}, unmodified {plain_tokens}; tower diff {tower_diff:.1e}, "
              f"LLM diff {llm_diff:.1e}")
    np.savez(OUT / "reference.npz", **reference)
    meta = {"seed": SEED, "towerSeed": TOWER_SEED, "videoSeed": f"{VIDEO_SEED} + frames", "sizes": sizes,
            "newTokens": NEW_TOKENS, "hybridLayers": list(HYBRID_LAYERS), "prefix": PREFIX, "question": QUESTION,
            "tokenRule": {"preset": PRESET, "frameStride": FRAME_STRIDE, "frameKernel": FRAME_KERNEL,
                          "temporalPatch": pipeline.TEMPORAL_PATCH, "rowStride": ROW_STRIDE, "rowKernel": ROW_KERNEL,
                          "minFastRows": MIN_FAST_ROWS, "slowPool": SLOW_POOL},
            "positions": {"function": "transformers Qwen2_5_VLModel.get_rope_index", "fps": FPS,
                          "tokensPerSecond": TOKENS_PER_SECOND, "secondsPerFastRow": SECONDS_PER_FAST_ROW,
                          "videoGridThw": "[fast rows, 2h, 2w]", "videoTokenId": llm.full[0].config.video_token_id,
                          "textAfterVideo": "start + max(h, w) (transformers 5.24; 4.x: largest position + 1)",
                          "decode": "cache length + rope delta, all three rows"},
            "llm": {"family": "qwen25vl", "exporter": "torchscript", "opset": 17, "kvCache": True,
                    "inputs": ["inputs_embeds", "attention_mask", "position_ids", "past_key_values.{i}.key/value"],
                    "mropeSection": oracle.MROPE_SECTION, **{k: v for k, v in oracle.TINY.items()}},
            "torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
