#!/usr/bin/env python3
"""I/O benchmark for issue 2: re-emitting a ~2 GB external-data model, beside its peers.

Times, in one run, on the same input, each tool as its own child process (one warm-up run,
then --runs timed runs; wall time best and median; peak RSS of the child from os.wait4):

  slowfast rewrite --weights link     (release binary: $SLOWFAST_BIN or .build/release/slowfast)
  slowfast rewrite --weights copy
  onnx_ir load + save                 (to a new folder, external data; python: $BENCH_PYTHON or this one)
  cp of the data file

prints a table, the ratios (link / onnx_ir, copy / cp) and PASS/MISS against the targets:
link < 0.15 s and < 64 MB peak RSS; copy within 1.3x of cp. After the timed runs it checks
that each slowfast output is right (link: same inode; copy: equal bytes), so a fast wrong
answer cannot pass. Outputs go to a temporary folder beside the model (same filesystem) and
are removed at the end. The page cache cannot be dropped here, so every number is warm-cache.

    bench_io.py MODEL_DIR [--runs 3]          MODEL_DIR holds model.onnx + model.onnx.data
                                              (Scripts/make-bench-model.py makes one)
    bench_io.py --synthetic [DIR] [--runs 3]  makes a Qwen2-0.5B-shaped stand-in with numpy and
                                              onnx.helper (about 2 GB of random float32) in DIR
                                              (default: a temporary folder, removed afterwards)
"""
import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = os.environ.get("SLOWFAST_BIN", str(REPO / ".build/release/slowfast"))
PYTHON = os.environ.get("BENCH_PYTHON", sys.executable)

ONNX_IR = """
import sys, onnx_ir as ir
model = ir.load(sys.argv[1])
ir.save(model, sys.argv[2], external_data="model.onnx.data")
"""

# Qwen2-0.5B: 24 layers, hidden 896, 14 heads x 64, 2 KV heads, MLP 4864, vocab 151936.
LAYERS, HIDDEN, KV, MLP, VOCAB = 24, 896, 2 * 64, 4864, 151936


def make_synthetic(folder):
    """A decoder-shaped graph (per layer: RMS-style norm, q/k/v/o and gate/up/down MatMuls,
    residual adds) over ~494 M float32 parameters written straight to model.onnx.data."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    initializers, nodes = [], []
    offset = 0
    with open(folder / "model.onnx.data", "wb") as data:
        def weight(name, shape):
            nonlocal offset
            values = rng.standard_normal(shape, dtype=np.float32)
            data.write(values.tobytes())
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape),
                                 data_location=TensorProto.EXTERNAL)
            for key, value in (("location", "model.onnx.data"), ("offset", str(offset)), ("length", str(values.nbytes))):
                tensor.external_data.add(key=key, value=value)
            offset += values.nbytes
            pad = (-offset) % 4096  # page-aligned like torch's writer
            data.write(b"\0" * pad)
            offset += pad
            initializers.append(tensor)
            return name

        nodes.append(helper.make_node("Gather", [weight("embed_tokens.weight", (VOCAB, HIDDEN)), "input_ids"], ["h0"], name="embed"))
        h = "h0"
        for i in range(LAYERS):
            p = f"layers.{i}."
            nodes.append(helper.make_node("Mul", [h, weight(p + "input_layernorm.weight", (HIDDEN,))], [p + "n1"]))
            for proj, width in (("q", HIDDEN), ("k", KV), ("v", KV)):
                nodes.append(helper.make_node("MatMul", [p + "n1", weight(f"{p}self_attn.{proj}_proj.weight", (HIDDEN, width))], [f"{p}{proj}"]))
            nodes.append(helper.make_node("MatMul", [p + "q", weight(p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN))], [p + "o"]))
            nodes.append(helper.make_node("Add", [h, p + "o"], [p + "r1"]))
            nodes.append(helper.make_node("Mul", [p + "r1", weight(p + "post_attention_layernorm.weight", (HIDDEN,))], [p + "n2"]))
            nodes.append(helper.make_node("MatMul", [p + "n2", weight(p + "mlp.gate_proj.weight", (HIDDEN, MLP))], [p + "g"]))
            nodes.append(helper.make_node("MatMul", [p + "n2", weight(p + "mlp.up_proj.weight", (HIDDEN, MLP))], [p + "u"]))
            nodes.append(helper.make_node("Mul", [p + "g", p + "u"], [p + "gu"]))
            nodes.append(helper.make_node("MatMul", [p + "gu", weight(p + "mlp.down_proj.weight", (MLP, HIDDEN))], [p + "d"]))
            nodes.append(helper.make_node("Add", [p + "r1", p + "d"], [f"layers.{i + 1}.in" if i + 1 < LAYERS else "hidden"]))
            h = f"layers.{i + 1}.in"
        nodes.append(helper.make_node("Transpose", ["embed_tokens.weight"], ["lm_head"], perm=[1, 0]))
        nodes.append(helper.make_node("MatMul", ["hidden", "lm_head"], ["logits"]))
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", VOCAB])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="bench_io --synthetic")
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder


TIME = "/usr/bin/time"


def measure(command, prepare):
    """(wall seconds, peak RSS in MB) of one run of `command` as a child process.

    Peak RSS comes from wait4's rusage, taken by GNU time rather than by this process: Linux
    carries the forking process's own RSS high-water mark into the child's ru_maxrss at exec
    (with vfork the child even shares this process's mm until then), so measured from a Python
    parent every tool would report at least the parent's peak (about 10 MB for a bare Python,
    over 1 GB after --synthetic). GNU time is ~1 MB, so its children start from ~1 MB."""
    prepare()
    with tempfile.NamedTemporaryFile("r") as report:
        timed = [TIME, "-f", "%M", "-o", report.name, *command] if os.path.exists(TIME) else command
        start = time.perf_counter()
        process = subprocess.Popen(timed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{' '.join(command)} failed ({status}): {stderr.decode()[-2000:]}")
        kib = int(report.read().split()[-1]) if timed is not command else usage.ru_maxrss
    return wall, kib / 1024


def series(name, command, runs, prepare):
    measure(command, prepare)  # warm-up
    results = [measure(command, prepare) for _ in range(runs)]
    walls = [wall for wall, _ in results]
    return {"name": name, "best": min(walls), "median": statistics.median(walls), "rss": max(r for _, r in results)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--synthetic", action="store_true", help="make a ~2 GB stand-in model first (in MODEL_DIR or a temp folder)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(TIME):
        print(f"warning: {TIME} (GNU time) missing: peak RSS is measured from this process and includes its own peak", file=sys.stderr)
    if not Path(BIN).exists():
        sys.exit(f"{BIN}: no slowfast binary; run `swift build -c release` or set SLOWFAST_BIN")

    made = None
    if args.synthetic:
        made = Path(args.model_dir) if args.model_dir else Path(tempfile.mkdtemp(prefix="slowfast-bench-model-", dir=REPO / "Benchmarks"))
        if not (made / "model.onnx").exists():
            start = time.perf_counter()
            make_synthetic(made)
            print(f"made {made} in {time.perf_counter() - start:.1f} s")
        model_dir = made
    elif args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        parser.error("give MODEL_DIR or --synthetic")
    model, data = model_dir / "model.onnx", model_dir / "model.onnx.data"
    if not model.exists() or not data.exists():
        sys.exit(f"{model}: model.onnx and model.onnx.data not found; make them with Scripts/make-bench-model.py {model_dir} or use --synthetic")

    scratch = Path(tempfile.mkdtemp(prefix="slowfast-bench-", dir=model_dir.parent))
    out = scratch / "out"

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    target = str(out / "model.onnx")
    print(f"model: {model} ({data.stat().st_size / 1e9:.3f} GB external data, {model.stat().st_size / 1e6:.2f} MB graph)")
    print(f"slowfast: {BIN}; python: {PYTHON}; {args.runs} timed runs after one warm-up each; warm page cache\n")
    try:
        rows = {}
        rows["link"] = series("slowfast rewrite --weights link", [BIN, "rewrite", str(model), "-o", target, "--weights", "link"], args.runs, fresh)
        linked = (out / "model.onnx.data").stat().st_ino == data.stat().st_ino
        rows["copy"] = series("slowfast rewrite --weights copy", [BIN, "rewrite", str(model), "-o", target, "--weights", "copy"], args.runs, fresh)
        copied = (out / "model.onnx.data").stat().st_ino != data.stat().st_ino and filecmp.cmp(out / "model.onnx.data", data, shallow=False)
        rows["onnx_ir"] = series("onnx_ir load + save", [PYTHON, "-c", ONNX_IR, str(model), target], args.runs, fresh)
        rows["cp"] = series("cp of the data file", ["cp", str(data), str(out / "model.onnx.data")], args.runs, fresh)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if made is not None and not args.model_dir:
            shutil.rmtree(made, ignore_errors=True)

    print(f"{'tool':<34} {'best s':>9} {'median s':>9} {'peak RSS MB':>12}")
    for row in rows.values():
        print(f"{row['name']:<34} {row['best']:9.3f} {row['median']:9.3f} {row['rss']:12.1f}")
    link, copy, onnx_ir, cp = rows["link"], rows["copy"], rows["onnx_ir"], rows["cp"]
    print(f"\nratios (best time): slowfast link / onnx_ir = {link['best'] / onnx_ir['best']:.3f}, "
          f"slowfast copy / cp = {copy['best'] / cp['best']:.2f}; "
          f"peak RSS slowfast link / onnx_ir = {link['rss'] / onnx_ir['rss']:.2f}")
    verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    checks = [
        (f"link < 0.15 s (best {link['best']:.3f} s)", link["best"] < 0.15),
        (f"link < 64 MB peak RSS ({link['rss']:.1f} MB)", link["rss"] < 64),
        (f"copy <= 1.3x cp (best {copy['best']:.3f} s vs {cp['best']:.3f} s)", copy["best"] <= 1.3 * cp["best"]),
        ("link output is a hard link of the input data", linked),
        ("copy output is a separate file with equal bytes", copied),
    ]
    for text, ok in checks:
        print(f"  {verdict(ok)}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
