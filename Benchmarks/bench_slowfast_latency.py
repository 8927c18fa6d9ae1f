#!/usr/bin/env python3
"""Measured prefill latency of a baseline decoder vs its slow-fast rewrite, beside the FLOP
model's prediction for the same dims (issue 6, part 3).

The decoder is built here with onnx.helper, shaped like a torch.onnx export (decomposed
RMSNorm, MatMul+bias q/k/v, grouped-query attention, SiLU MLP) and large enough that
attention dominates at video lengths: d = 256, 8 layers, 4 query heads and 2 KV heads of 64,
MLP 1024. It has no causal mask and no RoPE (both O(L) or O(L^2) elementwise, not matmuls);
its layer description is written beside it in the JSON `slowfast rewrite --layout` reads.

The slow-fast model must come from `slowfast rewrite --hybrid-layers ...` (issue 4). Either:
  * let this script run the rewrite:  --rewrite-bin PATH  (default: --slowfast-bin, which
    is $SLOWFAST_BIN, else .build/debug/slowfast, and must have the `cost` command), or
  * rewrite yourself and pass the result:
        python Benchmarks/bench_slowfast_latency.py --write-only --out Benchmarks/out
        slowfast rewrite Benchmarks/out/decoder.onnx -o Benchmarks/out/hybrid.onnx \\
            --hybrid-layers 0 --layout Benchmarks/out/decoder.layout.json
        python Benchmarks/bench_slowfast_latency.py --rewritten Benchmarks/out/hybrid.onnx

For each frame count F (default 16, 64, 128) with T text tokens and 81 tokens per frame:
  baseline@F  : sequence T + 81*F
  slow-fast@F : sequence T + fast tokens (s2t4 with at least 16 fast frames: 16*81), and
                81*F slow tokens fed to `slow_tokens` and read by the hybrid layers.
The predicted ratios come from `slowfast cost` on the same dims with --cross-queries all,
because the rewritten graph computes cross-attention for every position (the query mask
zeroes the result; it does not skip the work). Ratios are against baseline@16.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
EPS = 1e-6


def build_decoder(path, layers, d, heads, kv_heads, head_dim, intermediate, seed=0):
    """Writes the decoder and returns its layer description (ModelLayout JSON)."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float32)
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    inits = {
        "eps": np.array(EPS, np.float32), "two": np.array(2.0, np.float32),
        "scale": np.array(1 / np.sqrt(head_dim), np.float32),
        "shape_q": np.array([0, 0, heads, head_dim], np.int64),
        "shape_kv": np.array([0, 0, kv_heads, head_dim], np.int64),
        "shape_out": np.array([0, 0, q_width], np.int64),
        "rep": np.array([1, 1, heads // kv_heads, 1, 1], np.int64),
        "shape_rep": np.array([0, heads, -1, head_dim], np.int64),
        "ax2": np.array([2], np.int64),
    }
    nodes, described = [], []
    n = helper.make_node
    x = "inputs_embeds"

    def rms(prefix, source, weight, out):
        nodes.extend([
            n("Pow", [source, "two"], [f"{prefix}/sq"], name=f"{prefix}/Pow"),
            n("ReduceMean", [f"{prefix}/sq"], [f"{prefix}/ms"], name=f"{prefix}/ReduceMean", axes=[-1], keepdims=1),
            n("Add", [f"{prefix}/ms", "eps"], [f"{prefix}/mse"], name=f"{prefix}/Add"),
            n("Sqrt", [f"{prefix}/mse"], [f"{prefix}/rms"], name=f"{prefix}/Sqrt"),
            n("Div", [source, f"{prefix}/rms"], [f"{prefix}/div"], name=f"{prefix}/Div"),
            n("Mul", [f"{prefix}/div", weight], [out], name=f"{prefix}/Mul"),
        ])

    for i in range(layers):
        p = f"/model/layers.{i}"
        inits[f"l{i}.in_norm"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        inits[f"l{i}.post_norm"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        for name, width in (("q", q_width), ("k", kv_width), ("v", kv_width)):
            inits[f"l{i}.{name}_w"] = w(d, width)
            inits[f"l{i}.{name}_b"] = w(width)
        inits[f"l{i}.o_w"] = w(q_width, d)
        inits[f"l{i}.gate_w"] = w(d, intermediate)
        inits[f"l{i}.up_w"] = w(d, intermediate)
        inits[f"l{i}.down_w"] = w(intermediate, d)
        normed = f"{p}/input_layernorm/out"
        rms(f"{p}/input_layernorm", x, f"l{i}.in_norm", normed)
        for name, shape in (("q", "shape_q"), ("k", "shape_kv"), ("v", "shape_kv")):
            nodes += [
                n("MatMul", [normed, f"l{i}.{name}_w"], [f"{p}/{name}0"], name=f"{p}/self_attn/{name}_proj/MatMul"),
                n("Add", [f"{p}/{name}0", f"l{i}.{name}_b"], [f"{p}/{name}1"], name=f"{p}/self_attn/{name}_proj/Add"),
                n("Reshape", [f"{p}/{name}1", shape], [f"{p}/{name}2"], name=f"{p}/self_attn/{name}_Reshape"),
                n("Transpose", [f"{p}/{name}2"], [f"{p}/{name}4"], name=f"{p}/self_attn/{name}_Transpose", perm=[0, 2, 1, 3]),
            ]
        for name in ("k", "v"):
            nodes += [
                n("Unsqueeze", [f"{p}/{name}4", "ax2"], [f"{p}/{name}5"], name=f"{p}/self_attn/{name}_Unsqueeze"),
                n("Expand", [f"{p}/{name}5", "rep"], [f"{p}/{name}6"], name=f"{p}/self_attn/{name}_Expand"),
                n("Reshape", [f"{p}/{name}6", "shape_rep"], [f"{p}/{name}7"], name=f"{p}/self_attn/{name}_Repeat"),
            ]
        attn_out, residual, post, out = f"{p}/attn_out", f"{p}/attn_residual", f"{p}/post_attention_layernorm/out", f"{p}/out"
        nodes += [
            n("Transpose", [f"{p}/k7"], [f"{p}/kt"], name=f"{p}/self_attn/Transpose_k", perm=[0, 1, 3, 2]),
            n("MatMul", [f"{p}/q4", f"{p}/kt"], [f"{p}/sc0"], name=f"{p}/self_attn/MatMul"),
            n("Mul", [f"{p}/sc0", "scale"], [f"{p}/sc"], name=f"{p}/self_attn/Mul"),
            n("Softmax", [f"{p}/sc"], [f"{p}/pr"], name=f"{p}/self_attn/Softmax", axis=-1),
            n("MatMul", [f"{p}/pr", f"{p}/v7"], [f"{p}/at0"], name=f"{p}/self_attn/MatMul_1"),
            n("Transpose", [f"{p}/at0"], [f"{p}/at1"], name=f"{p}/self_attn/Transpose_out", perm=[0, 2, 1, 3]),
            n("Reshape", [f"{p}/at1", "shape_out"], [attn_out], name=f"{p}/self_attn/Reshape_out"),
            n("MatMul", [attn_out, f"l{i}.o_w"], [f"{p}/o"], name=f"{p}/self_attn/o_proj/MatMul"),
            n("Add", [x, f"{p}/o"], [residual], name=f"{p}/Add"),
        ]
        rms(f"{p}/post_attention_layernorm", residual, f"l{i}.post_norm", post)
        nodes += [
            n("MatMul", [post, f"l{i}.gate_w"], [f"{p}/g"], name=f"{p}/mlp/gate_proj/MatMul"),
            n("Sigmoid", [f"{p}/g"], [f"{p}/gs"], name=f"{p}/mlp/act_fn/Sigmoid"),
            n("Mul", [f"{p}/g", f"{p}/gs"], [f"{p}/ga"], name=f"{p}/mlp/act_fn/Mul"),
            n("MatMul", [post, f"l{i}.up_w"], [f"{p}/u"], name=f"{p}/mlp/up_proj/MatMul"),
            n("Mul", [f"{p}/ga", f"{p}/u"], [f"{p}/gu"], name=f"{p}/mlp/Mul"),
            n("MatMul", [f"{p}/gu", f"l{i}.down_w"], [f"{p}/dn"], name=f"{p}/mlp/down_proj/MatMul"),
            n("Add", [residual, f"{p}/dn"], [out], name=f"{p}/Add_1"),
        ]
        proj = lambda name, bias: {"weight": f"l{i}.{name}_w", "layout": "inputMajor", "bias": bias,
                                   "node": f"{p}/self_attn/{name}_proj/MatMul"}
        described.append({
            "index": i, "residualInput": x, "residualOutput": out,
            "inputNorm": {"weight": f"l{i}.in_norm", "epsilon": EPS, "input": x, "output": normed},
            "q": proj("q", f"l{i}.q_b"), "k": proj("k", f"l{i}.k_b"), "v": proj("v", f"l{i}.v_b"),
            "query": {"tensor": {"name": f"{p}/q4"}}, "attentionOutput": attn_out,
            "o": {"weight": f"l{i}.o_w", "layout": "inputMajor", "node": f"{p}/self_attn/o_proj/MatMul"},
            "attentionResidual": residual,
            "postAttentionNorm": {"weight": f"l{i}.post_norm", "epsilon": EPS, "input": residual, "output": post},
            "mlp": {name: {"weight": f"l{i}.{name}_w", "layout": "inputMajor", "node": f"{p}/mlp/{name}_proj/MatMul"}
                    for name in ("gate", "up", "down")},
            "activationNodes": [f"{p}/mlp/act_fn/Sigmoid", f"{p}/mlp/act_fn/Mul"],
        })
        x = out
    graph = helper.make_graph(
        nodes, "bench_decoder",
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "sequence", d])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "sequence", d])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return {"adapter": "bench", "floatType": 1, "parameters": [],
            "dimensions": {"numLayers": layers, "hiddenSize": d, "numHeads": heads, "numKVHeads": kv_heads,
                           "headDim": head_dim, "intermediateSize": intermediate},
            "layers": described}


def session(path, threads):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(sess, sequence, slow, d, rng):
    """Random inputs for every input the model declares (masks all ones)."""
    feeds = {}
    for value in sess.get_inputs():
        name = value.name
        if name == "inputs_embeds":
            feeds[name] = rng.standard_normal((1, sequence, d)).astype(np.float32)
        elif name == "slow_tokens":
            feeds[name] = rng.standard_normal((1, slow, d)).astype(np.float32)
        elif name == "slow_tokens_mask":
            feeds[name] = np.ones((1, slow), dtype=np.float32 if value.type == "tensor(float)" else np.int64)
        elif name == "slow_query_exclude":
            feeds[name] = np.zeros((1, 1, 2), np.int64)  # off: every position queries (what this benchmark measures)
        else:
            raise SystemExit(f"the model has an input this benchmark does not know how to feed: {name} {value.type}")
    return feeds


def median_latency(sess, feeds, repeats):
    sess.run(None, feeds)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def predicted(binary, args, hybrid_layers):
    cmd = [str(binary), "cost", "--layers", args.layers, "--hidden", args.dim, "--heads", args.heads,
           "--kv-heads", args.kv_heads, "--head-dim", args.head_dim, "--intermediate", args.intermediate,
           "--vocab", 1, "--frames", ",".join(map(str, args.frames)), "--reference-frames", args.frames[0],
           "--tokens-per-frame", args.tokens_per_frame, "--text-tokens", args.text_tokens,
           "--hybrid-layers", ",".join(map(str, hybrid_layers)), "--cross-queries", "all",
           "--bytes-per-element", 4, "--json"]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"slowfast cost failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "Benchmarks/out")
    parser.add_argument("--rewritten", type=Path, help="the slow-fast model rewritten from OUT/decoder.onnx")
    parser.add_argument("--slowfast-bin", type=Path,
                        default=Path(os.environ.get("SLOWFAST_BIN", REPO / ".build/debug/slowfast")))
    parser.add_argument("--rewrite-bin", type=Path,
                        help="a slowfast with `rewrite --hybrid-layers` (default: --slowfast-bin), e.g. the main branch's build")
    parser.add_argument("--write-only", action="store_true", help="write decoder.onnx and its layout, then stop")
    parser.add_argument("--hybrid-layers", default="0", help="layers to rewrite (release: every 8 from 0 -> 0)")
    parser.add_argument("--frames", type=lambda s: [int(v) for v in s.split(",")], default=[16, 64, 128])
    parser.add_argument("--tokens-per-frame", type=int, default=81)
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--fast-frames", type=int, default=16, help="fast frames in the sequence (s2t4, min 16)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    decoder = args.out / "decoder.onnx"
    layout_path = args.out / "decoder.layout.json"
    layout = build_decoder(decoder, args.layers, args.dim, args.heads, args.kv_heads, args.head_dim, args.intermediate)
    layout_path.write_text(json.dumps(layout, indent=1))
    print(f"wrote {decoder} and {layout_path}")
    if args.write_only:
        return
    hybrid_layers = [int(v) for v in args.hybrid_layers.split(",")]

    rewritten = args.rewritten
    if rewritten is None:
        rewritten = args.out / "hybrid.onnx"
        cmd = [str(args.rewrite_bin or args.slowfast_bin), "rewrite", str(decoder), "-o", str(rewritten),
               "--hybrid-layers", args.hybrid_layers, "--layout", str(layout_path)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit("could not make the slow-fast model with\n  " + " ".join(cmd) + "\n"
                             + result.stderr.strip() + "\nrewrite it with a slowfast that has --hybrid-layers and pass --rewritten PATH")
        print(f"rewrote layers {args.hybrid_layers} into {rewritten}")

    prediction = predicted(args.slowfast_bin, args, hybrid_layers)
    fast_tokens = args.fast_frames * args.tokens_per_frame
    rng = np.random.default_rng(0)
    base_sess, hybrid_sess = session(decoder, args.threads), session(rewritten, args.threads)
    rows = []
    for frames in args.frames:
        visual = frames * args.tokens_per_frame
        fast = min(fast_tokens, visual)  # fewer frames than the fast budget: all of them
        base = median_latency(base_sess, feeds_for(base_sess, args.text_tokens + visual, 0, args.dim, rng), args.repeats)
        slow_fast = median_latency(hybrid_sess, feeds_for(hybrid_sess, args.text_tokens + fast, visual, args.dim, rng),
                                   args.repeats)
        rows.append((frames, args.text_tokens + visual, args.text_tokens + fast, visual, base, slow_fast))
        print(f"  measured {frames} frames: baseline {base * 1e3:.1f} ms, slow-fast {slow_fast * 1e3:.1f} ms", flush=True)

    predicted_rows = {row["frames"]: row for row in prediction["rows"]}
    reference = rows[0][4]
    print()
    print(f"decoder: {args.layers} layers, d {args.dim}, {args.heads}/{args.kv_heads} heads x {args.head_dim}, MLP {args.intermediate}; "
          f"hybrid layers {args.hybrid_layers}; {args.tokens_per_frame} tokens/frame, {args.text_tokens} text tokens, "
          f"{args.fast_frames} fast frames; onnxruntime {ort.__version__}, median of {args.repeats}")
    print(f"{'frames':>6} {'base seq':>8} {'sf seq':>6} {'slow':>6} {'base ms':>9} {'sf ms':>9} "
          f"{'base/base@' + str(args.frames[0]):>14} {'(FLOP model)':>12} {'sf/base@' + str(args.frames[0]):>12} {'(FLOP model)':>12}")
    for frames, base_seq, sf_seq, slow, base, slow_fast in rows:
        model = predicted_rows[frames]
        print(f"{frames:>6} {base_seq:>8} {sf_seq:>6} {slow:>6} {base * 1e3:>9.1f} {slow_fast * 1e3:>9.1f} "
              f"{base / reference:>14.3f} {model['baselineOverReference']:>12.3f} "
              f"{slow_fast / reference:>12.3f} {model['slowFastOverReference']:>12.3f}")


if __name__ == "__main__":
    sys.exit(main())
