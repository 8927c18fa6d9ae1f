#!/usr/bin/env python3
"""The issue-9 run-time benchmark: a slow-fast rewrite of a Qwen2-0.5B-shaped onnxruntime-genai
export (24 layers, d 896, 14/2 heads of 64, MLP 4864; KV cache, GroupQueryAttention), hybrid
layers every 8 (0, 8, 16), 10368 slow tokens (128 frames x 81), measured in onnxruntime on
this machine beside `slowfast cost`'s prediction for the same dims. Not a test.

    /tmp/fixture-venv/bin/python Scripts/make-bench-model.py --genai Benchmarks/out/qwen2-0.5b-genai
    .venv/bin/python Benchmarks/bench_runtime.py --model Benchmarks/out/qwen2-0.5b-genai

It prints, each with its best wall time (timed round-robin with the other variants of its
group in one process, --rounds rounds after a warm-up, so load from other work on a shared
machine falls on all alike; baseline@128 alone, one run), the peak RSS of the process that ran it (GNU time,
one child process per measurement) and the cost model's prediction. The measured ratios are
paired: in each round a variant's time over its group's baseline (baseline@16, or the original
decode step) in the same round, median over the rounds, so a change in the machine's speed
between rounds (other sessions' work) cancels out of the ratio instead of landing on whichever
variant ran in the slow round:

  prefill  baseline@16   sequence 128 text + 16x81 = 1424 tokens
  prefill  baseline@128  sequence 128 + 128x81 = 10496 tokens (one run: minutes on 2 cores)
  prefill  slow-fast@128 sequence 128 + 1296 fast tokens = 1424, 10368 slow tokens;
           text-only (slow_query_exclude = the 1296 fast tokens) and all-queries (nothing
           excluded); fused (com.microsoft MultiHeadAttention, what --cross-attention auto emits
           for a genai export) and decomposed (MatMul/Softmax/MatMul); --slow-kv inline, so
           kv_proj runs inside the prefill as the cost model counts it
  companion the --slow-kv inputs companion model on 10368 slow tokens (once per generation)
  decode   one step at past 1424 of the original, and of the slow-fast model with the slow K/V
           cached (--slow-kv inputs) and recomputed (--slow-kv inline)

and the targets of issue 9: prefill slow-fast@128 (text) / baseline@16 within 5% of the cost
model's text-only prediction; a decode step with cached slow K/V within 1.15x of the
original's; the fused form's peak RSS below the decomposed form's.

The genai builder computes logits for every prefill position (the cost model: the last only),
so the benchmark model has a 2048-token vocabulary (make-bench-model.py --genai) and the cost
model is given the same. Timings are warm-cache, intra-op threads --threads (default: the
machine's cores).
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

REPO = Path(__file__).resolve().parents[1]
TEXT, FAST, FRAMES_SLOW, PER_FRAME = 128, 1296, 128, 81
SLOW = FRAMES_SLOW * PER_FRAME            # 10368
FAST_START = TEXT // 2                    # system prompt, then the fast tokens, then the question


def prepare(spec, options):
    """The session and feeds of one measurement; the companion's time when it runs."""
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    config = json.loads((Path(spec["model"]).parent / "genai_config.json").read_text())["model"]
    decoder = config["decoder"]
    layers, kv_heads, head = decoder["num_hidden_layers"], decoder["num_key_value_heads"], decoder["head_size"]
    hidden, vocab = decoder["hidden_size"], config["vocab_size"]
    session = ort.InferenceSession(spec["model"], options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    length, past = spec["length"], spec["past"]
    feeds = {"input_ids": rng.integers(3, vocab, size=(1, length)).astype(np.int64),
             "attention_mask": np.ones((1, past + length), np.int64)}
    for i in range(layers):
        for part in ("key", "value"):
            feeds[f"past_key_values.{i}.{part}"] = (rng.standard_normal((1, kv_heads, past, head)) * 0.5).astype(np.float32)
    slow = rng.standard_normal((1, spec["slow"], hidden)).astype(np.float32) if spec["slow"] else None
    companion_seconds = None
    if "slow_tokens_mask" in names:
        feeds["slow_tokens_mask"] = np.ones((1, spec["slow"]), np.float32)
        feeds["slow_query_exclude"] = np.array([[spec["exclude"]]], np.int64)
        if "slow_tokens" in names:
            feeds["slow_tokens"] = slow
        else:
            companion = ort.InferenceSession(spec["companion"], options, providers=["CPUExecutionProvider"])
            outputs = [o.name for o in companion.get_outputs()]
            start = time.perf_counter()
            values = companion.run(outputs, {"slow_tokens": slow})
            companion_seconds = time.perf_counter() - start
            for name, value in zip(outputs, values):
                feeds[name.replace("present.", "past_key_values.", 1)] = value
    missing = names - set(feeds)
    if missing:
        sys.exit(f"error: {spec['model']}: inputs this benchmark does not feed: {sorted(missing)}")
    return session, {k: v for k, v in feeds.items() if k in names}, companion_seconds


def session_options(threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return options


def child(spec):
    """Runs one measurement in this process (for its peak RSS) and prints its JSON result."""
    session, feeds, companion_seconds = prepare(spec, session_options(spec["threads"]))
    for _ in range(spec["warmup"]):
        session.run(["logits"], feeds)
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        session.run(["logits"], feeds)
        times.append(time.perf_counter() - start)
    # The best run is the figure used: on a machine shared with other work, the slower runs
    # measure the other work. The median is kept beside it.
    print(json.dumps({"seconds": min(times), "median": statistics.median(times), "times": times,
                      "companion_seconds": companion_seconds}))


def interleaved(specs, rounds):
    """Times every spec in one process, round-robin (each round runs each once), so load from
    other work on a shared machine falls on all of them alike. Returns key -> best and median
    seconds, and each spec's time over the first spec's in the same round (paired ratios:
    drift in the machine's speed between rounds cancels out of them)."""
    options = session_options(specs[0]["threads"])
    prepared = {spec["key"]: prepare(spec, options)[:2] for spec in specs}
    for session, feeds in prepared.values():
        session.run(["logits"], feeds)  # warm-up
    times = {key: [] for key in prepared}
    for _ in range(rounds):
        for key, (session, feeds) in prepared.items():
            start = time.perf_counter()
            session.run(["logits"], feeds)
            times[key].append(time.perf_counter() - start)
    first = times[specs[0]["key"]]
    return {key: {"best": min(t), "median": statistics.median(t), "times": t,
                  "paired_ratio": statistics.median(a / b for a, b in zip(t, first))} for key, t in times.items()}


def measure(spec):
    """Runs `spec` in a child process under GNU time; returns its result with peak RSS (MB)."""
    command = ["/usr/bin/time", "-f", "%M", sys.executable, __file__, "--child", json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: measurement {spec['label']} failed:\n{result.stderr[-2000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["peak_mb"] = int(result.stderr.strip().splitlines()[-1]) / 1024
    print(f"  {spec['label']}: best {data['seconds']:.4f} s, median {data['median']:.4f} s, peak RSS {data['peak_mb']:.0f} MB",
          flush=True)
    return data


def slowfast(binary, *args):
    result = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: slowfast {' '.join(map(str, args))}:\n{result.stderr}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=str(REPO / "Benchmarks/out/qwen2-0.5b-genai"), help="folder of the genai export")
    parser.add_argument("--bin", default=os.environ.get("SLOWFAST_BIN", str(REPO / ".build/debug/slowfast")))
    parser.add_argument("--out", default=str(REPO / "Benchmarks/out/runtime"), help="where the rewrites go")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--decode-repeats", type=int, default=20, help="rounds of the interleaved decode timing")
    parser.add_argument("--skip-baseline-128", action="store_true", help="skip the long baseline@128 prefill")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of the interleaved timing (prefill: baseline@16 and the four slow-fast@128; decode: the three steps)")
    parser.add_argument("--decode-target", type=float, default=1.15,
                        help="the largest decode-step ratio (cached slow K/V over the original) that passes: issue 9's 1.15, "
                             "issue 19's 1.10 for the int4 export")
    parser.add_argument("--interleaved-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.interleaved_child:
        request = json.loads(args.interleaved_child)
        print(json.dumps(interleaved(request["specs"], request["rounds"])))
        return

    model = Path(args.model) / "model.onnx"
    if not model.exists():
        sys.exit(f"error: {model}: no such model; make it with Scripts/make-bench-model.py --genai {args.model}")
    out = Path(args.out)
    rewrites = {}
    for name, options in (("inline", ["--slow-kv", "inline"]), ("inputs", ["--slow-kv", "inputs"]),
                          ("inline-decomposed", ["--slow-kv", "inline", "--cross-attention", "decomposed"])):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        target = folder / "model.onnx"
        start = time.perf_counter()
        slowfast(args.bin, "rewrite", model, "-o", target, "--every", 8, "--weights", "auto", *options)
        print(f"rewrite {name}: {time.perf_counter() - start:.1f} s", flush=True)
        rewrites[name] = target

    config = json.loads((Path(args.model) / "genai_config.json").read_text())["model"]
    decoder = config["decoder"]
    dims = ["--layers", decoder["num_hidden_layers"], "--hidden", decoder["hidden_size"], "--heads", decoder["num_attention_heads"],
            "--kv-heads", decoder["num_key_value_heads"], "--head-dim", decoder["head_size"], "--intermediate", 4864,
            "--vocab", config["vocab_size"], "--tied-embeddings", "--bytes-per-element", 4, "--frames", "16,128",
            "--text-tokens", TEXT, "--every", 8]
    cost = {queries: json.loads(slowfast(args.bin, "cost", *dims, "--cross-queries", queries, "--json"))
            for queries in ("text", "all")}
    rows = {q: {row["frames"]: row for row in report["rows"]} for q, report in cost.items()}
    reference = cost["text"]["reference"]["flops"]["total"]

    base = dict(threads=args.threads, past=0, slow=0, exclude=[0, 0], warmup=1, repeats=1, companion=None)
    text_exclude, all_exclude = [FAST_START, FAST_START + FAST], [0, 0]
    short = TEXT + FAST                    # 1424
    results = {}
    print("measuring (one process each):", flush=True)
    specs = {"base16": {**base, "label": "prefill baseline@16", "model": str(model), "length": short}}
    for form, key in (("fused", "inline"), ("decomposed", "inline-decomposed")):
        for queries, exclude in (("text", text_exclude), ("all", all_exclude)):
            label = f"prefill slow-fast@128 {'text-only' if queries == 'text' else 'all-queries'} {form}"
            specs[f"sf128-{queries}-{form}"] = {**base, "label": label, "model": str(rewrites[key]), "length": short,
                                                 "slow": SLOW, "exclude": exclude}
    decode = dict(base, past=short, length=1)
    companion_path = str(rewrites["inputs"].with_name("model.slow-kv-encoder.onnx"))
    specs["dec-original"] = {**decode, "label": "decode original", "model": str(model)}
    specs["dec-cached"] = {**decode, "label": "decode slow-fast, cached slow K/V", "model": str(rewrites["inputs"]),
                           "slow": SLOW, "companion": companion_path}
    specs["dec-recomputed"] = {**decode, "label": "decode slow-fast, recomputed slow K/V", "model": str(rewrites["inline"]),
                               "slow": SLOW}
    for key, spec in specs.items():
        spec["key"] = key

    # Peak RSS: each measurement alone in its own process (one run).
    print("peak RSS, one process each:", flush=True)
    for key, spec in specs.items():
        results[key] = measure({**spec, "warmup": 0, "repeats": 1})
    # Times: interleaved round-robin in one process per group, so other work on a shared machine
    # slows every variant alike; the best round of each is the time shown, the median of the
    # per-round ratios to the group's baseline is the ratio.
    groups = [["base16", "sf128-text-fused", "sf128-all-fused"], ["base16", "sf128-text-decomposed", "sf128-all-decomposed"],
              ["dec-original", "dec-cached", "dec-recomputed"]]
    print("times, interleaved:", flush=True)
    for group in groups:
        rounds = args.decode_repeats if group[0].startswith("dec") else args.rounds
        request = json.dumps({"specs": [specs[k] for k in group], "rounds": rounds})
        result = subprocess.run([sys.executable, __file__, "--interleaved-child", request], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: interleaved timing of {group} failed:\n{result.stderr[-2000:]}")
        for key, timing in json.loads(result.stdout.strip().splitlines()[-1]).items():
            if key == "base16" and "seconds_interleaved" in results[key]:
                results[key]["check_second_group"] = timing["best"]
                continue
            results[key]["seconds_alone"] = results[key]["seconds"]
            results[key]["seconds"] = results[key]["seconds_interleaved"] = timing["best"]
            results[key]["interleaved"] = timing
            results[key]["ratio"] = timing["paired_ratio"]
            print(f"  {specs[key]['label']}: best {timing['best']:.4f} s, median {timing['median']:.4f} s, "
                  f"median ratio to {group[0]} in the same round {timing['paired_ratio']:.3f}", flush=True)
    if not args.skip_baseline_128:  # alone, one run: minutes on 2 cores
        results["base128"] = measure({**base, "label": "prefill baseline@128", "model": str(model),
                                      "length": TEXT + FRAMES_SLOW * PER_FRAME, "warmup": 0, "repeats": 1})

    b16 = results["base16"]["seconds"]
    lines = [("measurement", "best s", "peak RSS MB", "measured ratio", "cost model ratio")]

    def row(label, key, ratio=None, predicted=None):
        if key not in results:
            lines.append((label, "skipped", "", "", f"{predicted:.3f}" if predicted else ""))
            return
        r = results[key]
        lines.append((label, f"{r['seconds']:.4f}", f"{r['peak_mb']:.0f}", f"{ratio:.3f}" if ratio else "",
                      f"{predicted:.3f}" if predicted else ""))

    row("prefill baseline@16 (1424 tokens)", "base16", 1.0, 1.0)
    row("prefill baseline@128 (10496 tokens)", "base128", results.get("base128", {}).get("seconds", 0) / b16,
        rows["text"][128]["baselineOverReference"])
    for form in ("fused", "decomposed"):
        row(f"prefill slow-fast@128 text-only, {form}", f"sf128-text-{form}", results[f"sf128-text-{form}"]["ratio"],
            rows["text"][128]["slowFastOverReference"])
        row(f"prefill slow-fast@128 all-queries, {form}", f"sf128-all-{form}", results[f"sf128-all-{form}"]["ratio"],
            rows["all"][128]["slowFastOverReference"])
    dec = rows["text"][128]["decode"]
    original = results["dec-original"]["seconds"]
    row("decode original (past 1424)", "dec-original", 1.0, 1.0)
    row("decode slow-fast, cached slow K/V", "dec-cached", results["dec-cached"]["ratio"], dec["cachedOverOriginal"])
    row("decode slow-fast, recomputed slow K/V", "dec-recomputed", results["dec-recomputed"]["ratio"],
        dec["recomputedOverOriginal"])
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    print()
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line)))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    companion = results["dec-cached"]["companion_seconds"]
    if "check_second_group" in results["base16"]:
        print(f"\nbaseline@16 timed again beside the decomposed forms: {results['base16']['check_second_group']:.4f} s")
    print(f"companion (slow K/V of 3 layers for {SLOW} slow tokens, once per generation): {companion:.4f} s")
    print(f"cost model: FLOPs, {config['vocab_size']}-token vocabulary, LM head on the last position only; "
          f"baseline@16 = {reference / 1e12:.3f} TFLOP")

    text_ratio = results["sf128-text-fused"]["ratio"]
    predicted = rows["text"][128]["slowFastOverReference"]
    checks = [
        ("prefill slow-fast@128 (text) / baseline@16 within 5% of the cost model",
         abs(text_ratio / predicted - 1) <= 0.05, f"{text_ratio:.3f} vs {predicted:.3f}"),
        (f"decode with cached slow K/V within {args.decode_target:.2f}x of the original",
         results["dec-cached"]["ratio"] <= args.decode_target, f"x{results['dec-cached']['ratio']:.3f}"),
        # The cost model's own ratio for the same step: the cross-attention FLOPs beside the
        # step's. Where it is above the target above (the int4 step: 1.132), the target cannot be
        # met by this layer at this shape; this row says whether we are where the model says.
        ("decode with cached slow K/V within 5% of the cost model",
         abs(results["dec-cached"]["ratio"] / dec["cachedOverOriginal"] - 1) <= 0.05,
         f"x{results['dec-cached']['ratio']:.3f} vs x{dec['cachedOverOriginal']:.3f}"),
        ("fused peak RSS below decomposed (slow-fast@128 all-queries)",
         results["sf128-all-fused"]["peak_mb"] < results["sf128-all-decomposed"]["peak_mb"],
         f"{results['sf128-all-fused']['peak_mb']:.0f} MB vs {results['sf128-all-decomposed']['peak_mb']:.0f} MB"),
    ]
    print()
    for label, ok, detail in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}: {detail}")
    (out / "results.json").write_text(json.dumps({"results": results, "checks": [[l, ok, d] for l, ok, d in checks]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
