#!/usr/bin/env python3
"""Runs the example slow-fast video MLLM in onnxruntime: frames -> vision tower with token ops
-> LLM with hybrid layers -> greedy decoding. NumPy and onnxruntime only (no torch).

    pipeline.py VISION_TOKENS_ONNX LLM_ONNX [--frames N] [--video FILE.npy] [--new-tokens K] [--gates REF.npz]

1. Video: N frames, read from FILE.npy ([T, 3, H, W] float32, N taken evenly over T) or, by
   default, from the example's synthetic video (a moving pattern, `synthetic_video`).
2. Vision: the tower plus the token ops `slowfast tokens --into` added: `slow_tokens`
   [1, N_s, d] and `fast_tokens` [1, N_f, d] for whatever N it gets.
3. LLM: the sequence is embed(PREFIX) + fast tokens + embed(QUESTION) (`inputs_embeds`; the
   text embedding is Examples/video-mllm/embed_tokens.npy); `slow_tokens` goes in through the
   input `slowfast rewrite` added, at prefill and at every decode step (docs/DESIGN.md §9);
   the KV cache is carried between steps; the next token is the argmax.

`--gates REF.npz` switches the hybrid layers' gates on with the values in REF.npz (`gate_*`),
as training would have left them; at the tool's default init (gates 0) the slow tokens change
nothing. Prints the generated tokens and the time each stage took.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PREFIX = [2, 10, 11]          # <bos> and a system prompt, as token ids of the tiny vocabulary
QUESTION = [20, 21, 22, 23]   # the question after the video


def synthetic_video(frames, height=32, width=32, total=None):
    """The example's video: `total` frames (default: `frames`) of a diagonal wave and a bright
    square moving across, read as `frames` frames taken evenly; float32 [frames, 3, H, W]."""
    total = total or frames
    picks = np.linspace(0, total - 1, frames).round().astype(int) if frames > 1 else np.array([0])
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = []
    for t in picks:
        phase = 2 * np.pi * t / max(total, 1)
        wave = np.stack([np.sin(0.3 * x + 0.2 * y + phase + c) for c in range(3)])
        square = np.zeros((3, height, width), np.float32)
        cx = int((t * 3) % (width - 8))
        square[:, 8:16, cx:cx + 8] = 1.5
        video.append(wave + square)
    return np.stack(video).astype(np.float32)


def read_frames(frames, video=None):
    if video is None:
        return synthetic_video(frames)
    data = np.load(video).astype(np.float32)
    picks = np.linspace(0, len(data) - 1, frames).round().astype(int)
    return data[picks]


def session(model):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
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


def run(vision_path, llm_path, frames, new_tokens=6, gates=None, video=None):
    """The whole pipeline; returns a dict with the tokens, the logits of every step and timings."""
    timings = {}
    start = time.perf_counter()
    pixels = read_frames(frames, video)
    timings["read frames"] = time.perf_counter() - start

    start = time.perf_counter()
    vision = session(vision_path)
    embed = np.load(HERE / "embed_tokens.npy")
    llm = session(llm_with_gates(llm_path, gates) if gates is not None else llm_path)
    timings["load models"] = time.perf_counter() - start

    start = time.perf_counter()
    slow, fast = vision.run(["slow_tokens", "fast_tokens"], {vision.get_inputs()[0].name: pixels})
    timings["vision + tokens"] = time.perf_counter() - start

    past_inputs = [i for i in llm.get_inputs() if i.name.startswith("past_key_values.")]
    outputs = [o.name for o in llm.get_outputs()]
    presents = [o for o in outputs if o.startswith("present.")]
    sequence = np.concatenate([embed[PREFIX][None], fast, embed[QUESTION][None]], axis=1).astype(np.float32)
    # The cache's head size is symbolic in the export; the builder's config says it.
    head_size = json.loads((HERE / "llm/genai_config.json").read_text())["model"]["decoder"]["head_size"]
    past = {i.name: np.zeros((1, i.shape[1], 0, head_size), np.float32) for i in past_inputs}
    length, generated, logits_per_step = 0, [], []

    def step(embeds):
        nonlocal length, past
        length += embeds.shape[1]
        feeds = {"inputs_embeds": embeds, "attention_mask": np.ones((1, length), np.int64), "slow_tokens": slow, **past}
        # The rewritten LLM's mask inputs at their "off" values: every slow token real, no
        # position excluded from querying (as the PyTorch reference computes).
        names = {i.name for i in llm.get_inputs()}
        if "slow_tokens_mask" in names:
            feeds["slow_tokens_mask"] = np.ones(slow.shape[:2], np.float32)
        if "slow_query_exclude" in names:
            feeds["slow_query_exclude"] = np.zeros((1, 1, 2), np.int64)
        result = dict(zip(outputs, llm.run(outputs, feeds)))
        past = {name.replace("present.", "past_key_values."): result[name] for name in presents}
        return result["logits"][0, -1]

    start = time.perf_counter()
    logits = step(sequence)
    timings["prefill"] = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(new_tokens):
        logits_per_step.append(logits)
        token = int(np.argmax(logits))
        generated.append(token)
        if k + 1 < new_tokens:
            logits = step(embed[[token]][None].astype(np.float32))
    timings[f"decode ({new_tokens} tokens)"] = time.perf_counter() - start
    return {"tokens": generated, "logits": np.stack(logits_per_step), "slow_tokens": slow, "fast_tokens": fast,
            "sequence_length": sequence.shape[1], "timings": timings}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vision")
    parser.add_argument("llm")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--video", help="frames as .npy [T, 3, H, W] (default: the synthetic video)")
    parser.add_argument("--new-tokens", type=int, default=6)
    parser.add_argument("--gates", help="reference.npz with gate_* values to switch the hybrid layers' gates on")
    args = parser.parse_args()
    gates = dict(np.load(args.gates)) if args.gates else None
    result = run(args.vision, args.llm, args.frames, args.new_tokens, gates, args.video)
    print(f"{args.frames} frames -> {result['slow_tokens'].shape[1]} slow tokens (cross-attended by the hybrid layers), "
          f"{result['fast_tokens'].shape[1]} fast tokens (in the sequence of {result['sequence_length']})")
    print("generated tokens:", " ".join(str(t) for t in result["tokens"]))
    for stage, seconds in result["timings"].items():
        print(f"  {stage:<22} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
