#!/usr/bin/env python3
"""Runs the example slow-fast Qwen2.5-VL in onnxruntime: video -> patches -> the vision tower
with token ops -> multimodal RoPE positions -> the language model with hybrid layers -> greedy
decoding. NumPy and onnxruntime only (no torch).

    pipeline.py TOWER_TOKENS_ONNX LLM_ONNX --size FxHxW [--new-tokens K] [--gates REF.npz]
                [--original LLM_ONNX] [--reference REF.npz]

1. Video: the example's random video of F frames of HxW pixels (reference.npz `video_FxHxW`,
   uint8 at half resolution: upscaled 2x, rescaled by 1/255 and normalized with the CLIP mean
   and std, as Qwen's video processor does) cut into patches as the processor lays them out
   (`video_to_patches`: temporal patches of 2 frames, 14x14 patches, 2x2 merge blocks).
2. Vision: the tower exported at that video size (TorchScript fixes a Qwen-VL tower to one
   grid) plus the token ops `slowfast tokens --into TOWER --after features --grid T,H,W` added:
   `slow_tokens` [1, N_s, d], `fast_tokens` [1, N_f, d] and `fast_grid` [3] = (fast rows, h, w).
3. Positions: `position_ids` [3, 1, L] for PREFIX + the fast tokens + QUESTION, computed as
   transformers 5.24's Qwen2.5-VL `get_rope_index` computes them for a video of the fast grid
   (`rope_index`): text at 0, 1, ... in all three rows; the video block at (t, h, w) =
   (start + trunc(row · tokens_per_second · seconds_per_fast_row), start + i, start + j); the
   text after it from start + max(h, w) (what 5.24 does; transformers 4.x continued from the
   largest position + 1 instead, which differs once the temporal positions outgrow the grid);
   a decode step with c tokens cached at c + delta in all three rows, delta = (largest prompt
   position + 1) - L, as generation does with the model's `rope_deltas`.
4. LLM: `inputs_embeds` = embed(PREFIX) + fast tokens + embed(QUESTION) (the text embedding is
   Examples/video-qwen25vl/embed_tokens.npy); `slow_tokens` goes in through the input `slowfast
   rewrite` added, at prefill and at every decode step; the KV cache is carried between steps;
   the next token is the argmax.

`--gates REF.npz` switches the hybrid layers' gates on with the values in REF.npz (`gate_*`),
as training would have left them, and compares with the PyTorch run of the same pipeline
(`logits_FxHxW`, `tokens_FxHxW`); without it the gates stay at the tool's default init (0), the
slow tokens change nothing, and the run is compared with PyTorch's run of the unmodified model on
the fast tokens alone (`logits_plain_FxHxW`); `--original LLM_ONNX` runs that unmodified export
too and compares the tokens. Prints the tokens, the largest logit difference and whether the
positions equal the reference's `get_rope_index` output; exits 1 if logits differ by more than
1e-4 or tokens or positions differ.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PREFIX = [1, 10, 11]          # <bos> and a system prompt, as token ids of the tiny vocabulary
QUESTION = [20, 21, 22, 23]   # the question after the video
TEMPORAL_PATCH, PATCH, MERGE = 2, 14, 2
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)  # the processor's image_mean / image_std
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
TOLERANCE = 1e-4


def normalized_video(half):
    """uint8 [F, 3, H/2, W/2] -> float32 [F, 3, H, W]: upscaled 2x (nearest), rescaled by 1/255,
    normalized with the CLIP mean and std (the processor's rescale and normalize)."""
    video = half.repeat(2, axis=2).repeat(2, axis=3).astype(np.float32)
    return (video / np.float32(255) - CLIP_MEAN.reshape(1, 3, 1, 1)) / CLIP_STD.reshape(1, 3, 1, 1)


def video_to_patches(video, temporal_patch=TEMPORAL_PATCH, patch=PATCH, merge=MERGE):
    """[frames, 3, H, W] -> (pixel_values [T*h*w, 3*temporal_patch*patch*patch], grid_thw [T, h, w]),
    laid out as Qwen2-VL's video processor lays them out (Scripts/export-qwen-vl-tower.py's
    torch version, checked there against the processor): temporal patches in time order; inside
    one, 2x2 merge blocks in raster order, the 4 patches of a block in raster order; each row
    channel-major, then frame, then pixel row and column."""
    frames, channels, height, width = video.shape
    if frames % temporal_patch or height % (patch * merge) or width % (patch * merge):
        raise ValueError(f"video {video.shape}: frames must divide by {temporal_patch}, height and width by {patch * merge}")
    t, h, w = frames // temporal_patch, height // patch, width // patch
    x = video.reshape(t, temporal_patch, channels, h // merge, merge, patch, w // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # t, bh, bw, mh, mw | c, tp, ph, pw
    return np.ascontiguousarray(x.reshape(t * h * w, channels * temporal_patch * patch * patch)), np.array([t, h, w], np.int64)


def rope_index(prefix, fast_grid, question, time_interval):
    """position_ids [3, 1, L] and the rope delta for `prefix` text tokens, a video block of
    `fast_grid` (rows, h, w: merged units) and `question` text tokens, as transformers 5.24's
    Qwen2_5_VLModel.get_rope_index computes them (video_grid_thw [rows, h*2, w*2], temporal
    positions trunc(row * time_interval), time_interval = tokens_per_second * second_per_grid_t)."""
    rows, h, w = (int(v) for v in fast_grid)
    text = np.arange(prefix)
    t_index = (np.arange(rows, dtype=np.float32) * np.float32(time_interval)).astype(np.int64)
    grid_t, grid_h, grid_w = np.meshgrid(t_index, np.arange(h), np.arange(w), indexing="ij")
    video = np.stack([grid_t.ravel(), grid_h.ravel(), grid_w.ravel()]) + prefix
    after = prefix + max(h, w)                 # get_rope_index: current_pos += max(h, w) after a video
    parts = [np.broadcast_to(text, (3, prefix)), video, np.broadcast_to(after + np.arange(question), (3, question))]
    positions = np.concatenate(parts, axis=1).astype(np.int64)
    delta = int(positions.max()) + 1 - positions.shape[1]
    return positions[:, None, :], delta


def session(model):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"])


def llm_with_gates(path, reference):
    """The rewritten LLM with each hybrid layer's gate set from `reference` (gate_alpha_{i},
    gate_w_{i} [1, H*hd] as PyTorch stores it, gate_b_{i}), as serialized bytes."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    layers = sorted(int(k.split("_")[-1]) for k in reference if k.startswith("gate_alpha_"))
    done = set()
    for tensor in model.graph.initializer:
        for i in layers:
            prefix = f"model.layers.{i}.self_attn."
            value = {prefix + "cross_attn_warm_up_gate": reference[f"gate_alpha_{i}"],
                     prefix + "cross_attn_gate_proj.0.weight": reference[f"gate_w_{i}"].T,   # stored transposed
                     prefix + "cross_attn_gate_proj.0.bias": reference[f"gate_b_{i}"]}.get(tensor.name)
            if value is not None:
                tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), tensor.name))
                done.add(tensor.name)
    if len(done) != 3 * len(layers):
        raise SystemExit(f"error: {path}: found {len(done)} of the {3 * len(layers)} gate parameters of layers {layers}")
    return model.SerializeToString()


def generate(llm, embed, fast, positions, delta, new_tokens, slow=None):
    """Greedy decoding with the KV cache; `slow` is fed where the model has a `slow_tokens` input
    (with its masks at their "off" values: every slow token real, every position querying, as
    the PyTorch reference computes). Returns the tokens and the logits of every step."""
    names = {i.name: i for i in llm.get_inputs()}
    outputs = [o.name for o in llm.get_outputs()]
    presents = [o for o in outputs if o.startswith("present.")]
    past = {name: np.zeros((1, value.shape[1], 0, value.shape[3]), np.float32)
            for name, value in names.items() if name.startswith("past_key_values.")}
    extra = {}
    if "slow_tokens" in names:
        extra["slow_tokens"] = slow
        if "slow_tokens_mask" in names:
            extra["slow_tokens_mask"] = np.ones(slow.shape[:2], np.float32)
        if "slow_query_exclude" in names:
            extra["slow_query_exclude"] = np.zeros((1, 1, 2), np.int64)
    sequence = np.concatenate([embed[PREFIX][None], fast, embed[QUESTION][None]], axis=1).astype(np.float32)
    if sequence.shape[1] != positions.shape[2]:
        raise ValueError(f"{sequence.shape[1]} embeddings, {positions.shape[2]} positions")
    length, tokens, logits_per_step = 0, [], []

    def step(embeds, position_ids):
        nonlocal length, past
        length += embeds.shape[1]
        feeds = {"inputs_embeds": embeds, "attention_mask": np.ones((1, length), np.int64), "position_ids": position_ids,
                 **extra, **past}
        result = dict(zip(outputs, llm.run(outputs, feeds)))
        past = {name.replace("present.", "past_key_values."): result[name] for name in presents}
        return result["logits"][0, -1]

    logits = step(sequence, positions)
    for k in range(new_tokens):
        logits_per_step.append(logits)
        token = int(np.argmax(logits))
        tokens.append(token)
        if k + 1 < new_tokens:
            # A decode step at cache length c: c + delta in all three rows (text after the prompt).
            logits = step(embed[[token]][None].astype(np.float32), np.full((3, 1, 1), length + delta, np.int64))
    return tokens, np.stack(logits_per_step)


def run(tower_path, llm_path, size, new_tokens=6, gates=None, original=None, reference=None):
    """The whole pipeline for the video of `size` ("FxHxW"); returns a dict with the tokens, the
    logits of every step, the token values, the positions and timings."""
    reference = reference if reference is not None else dict(np.load(HERE / "reference.npz"))
    meta = json.loads((HERE / "meta.json").read_text())
    timings = {}
    start = time.perf_counter()
    pixel_values, grid_thw = video_to_patches(normalized_video(reference[f"video_{size}"]))
    timings["video -> patches"] = time.perf_counter() - start

    start = time.perf_counter()
    tower = session(tower_path)
    embed = np.load(HERE / "embed_tokens.npy")
    llm = session(llm_with_gates(llm_path, gates) if gates is not None else llm_path)
    timings["load models"] = time.perf_counter() - start

    start = time.perf_counter()
    slow, fast, fast_grid = tower.run(["slow_tokens", "fast_tokens", "fast_grid"], {"pixel_values": pixel_values})
    timings["tower + tokens"] = time.perf_counter() - start

    rule = meta["positions"]
    positions, delta = rope_index(len(PREFIX), fast_grid, len(QUESTION), rule["tokensPerSecond"] * rule["secondsPerFastRow"])
    start = time.perf_counter()
    tokens, logits = generate(llm, embed, fast, positions, delta, new_tokens, slow)
    timings[f"LLM ({new_tokens} tokens)"] = time.perf_counter() - start
    result = {"tokens": tokens, "logits": logits, "slow_tokens": slow, "fast_tokens": fast, "fast_grid": fast_grid,
              "grid_thw": grid_thw, "position_ids": positions, "rope_delta": delta, "timings": timings}
    if original is not None:
        start = time.perf_counter()
        result["original_tokens"], result["original_logits"] = generate(session(original), embed, fast, positions, delta, new_tokens)
        timings[f"original LLM ({new_tokens} tokens)"] = time.perf_counter() - start
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tower", help="the tower of that video size with the token ops (slowfast tokens --into)")
    parser.add_argument("llm", help="the language model with hybrid layers (slowfast rewrite)")
    parser.add_argument("--size", required=True, help="FxHxW: frames, height, width of the video (e.g. 8x56x84)")
    parser.add_argument("--new-tokens", type=int, default=6)
    parser.add_argument("--gates", help="reference.npz with gate_* values to switch the hybrid layers' gates on")
    parser.add_argument("--original", help="the unmodified language model, run on the fast tokens alone to compare tokens")
    parser.add_argument("--reference", default=str(HERE / "reference.npz"))
    args = parser.parse_args()
    reference = dict(np.load(args.reference))
    gates = dict(np.load(args.gates)) if args.gates else None
    result = run(args.tower, args.llm, args.size, args.new_tokens, gates, args.original, reference)
    size, failures = args.size, []
    print(f"{size}: grid_thw {result['grid_thw'].tolist()} -> {result['slow_tokens'].shape[1]} slow tokens "
          f"(cross-attended by the hybrid layers), {result['fast_tokens'].shape[1]} fast tokens, fast_grid "
          f"{result['fast_grid'].tolist()} (in the sequence of {result['position_ids'].shape[2]})")
    print("generated tokens:", " ".join(str(t) for t in result["tokens"]))
    values = max(float(np.abs(result[name] - reference[f"{name}_{size}"]).max()) for name in ("slow_tokens", "fast_tokens"))
    print(f"slow and fast tokens: max abs diff vs PyTorch {values:.2e}; fast_grid equal: "
          f"{np.array_equal(result['fast_grid'], reference[f'fast_grid_{size}'])}")
    same_positions = np.array_equal(result["position_ids"], reference[f"position_ids_{size}"])
    print(f"position_ids equal to get_rope_index's (reference): {same_positions}; rope delta {result['rope_delta']}")
    if not same_positions:
        failures.append("positions differ from get_rope_index's")
    which = "" if gates is not None else "plain_"
    expected_tokens = reference[f"tokens_{which}{size}"].tolist()
    diff = float(np.abs(result["logits"] - reference[f"logits_{which}{size}"][:len(result["logits"])]).max())
    label = "gates on" if gates is not None else "gates at default init, against PyTorch's unmodified model"
    print(f"max abs logit diff vs PyTorch ({label}): {diff:.2e}; tokens equal: {result['tokens'] == expected_tokens[:len(result['tokens'])]}")
    if diff > TOLERANCE:
        failures.append(f"logits differ by {diff:.2e} > {TOLERANCE:g}")
    if result["tokens"] != expected_tokens[:len(result["tokens"])]:
        failures.append(f"tokens {result['tokens']}, PyTorch {expected_tokens}")
    if "original_tokens" in result:
        original_diff = float(np.abs(result["logits"] - result["original_logits"]).max())
        print(f"unmodified LLM on the fast tokens alone: tokens {' '.join(map(str, result['original_tokens']))} "
              f"(equal: {result['tokens'] == result['original_tokens']}), max abs logit diff {original_diff:.2e}")
        if result["tokens"] != result["original_tokens"]:
            failures.append("tokens differ from the unmodified LLM's")
    for stage, seconds in result["timings"].items():
        print(f"  {stage:<26} {seconds * 1000:8.1f} ms")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
