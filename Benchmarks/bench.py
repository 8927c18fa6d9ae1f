#!/usr/bin/env python3
"""SlowFastKit beside its peers on one Qwen2-0.5B-shaped dynamo export (about 2 GB of
external float32 weights; make it with Scripts/make-bench-model.py, or `make bench`).

Times, in one run and on the same input, each as a separate process (wall time, best and
median of --runs after one warm-up; peak RSS of the process from GNU time):

  io       slowfast rewrite --weights link / copy, onnx_ir load+save, cp of the data file
           targets: link < 0.15 s and < 64 MB; copy within 1.3x of cp          (issue 2)
  layers   layer discovery (timed inside slowfast) beside the model read time
           target: discovery < 50 ms                                            (issue 3)
  rewrite  slowfast rewrite --every 8 --weights link beside onnx_ir load+save
           targets: < 0.25 s and < 96 MB                                        (issue 4)
  import   slowfast weights import of a checkpoint holding every weight (made by
           slowfast weights export --all) beside cp of the checkpoint
           targets: within 1.5x of cp; peak RSS bounded by the largest tensor, not the
           checkpoint (the same import from a half-size checkpoint is shown)   (issue 10)

    bench.py MODEL_DIR [--runs 3] [--only io,layers,rewrite,import]
"""
import argparse
import json
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


def measure(command, prepare=None):
    """(wall seconds, peak RSS MB, stdout) of one run of `command`.

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from this process's wait4:
    Linux carries a parent's own high-water mark into its child's reading at exec, so a
    Python parent that has grown would set a floor under every figure."""
    if prepare:
        prepare()
    with tempfile.NamedTemporaryFile(mode="r") as report:
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], capture_output=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode()[-2000:]}")
        peak_kb = int(report.read().strip().splitlines()[-1])
    return wall, peak_kb / 1024, result.stdout


def series(name, command, runs, prepare=None):
    measure(command, prepare)  # warm-up: page cache and binaries
    results = [measure(command, prepare) for _ in range(runs)]
    walls = [r[0] for r in results]
    row = {"name": name, "best": min(walls), "median": statistics.median(walls), "rss": max(r[1] for r in results),
           "stdout": results[-1][2]}
    print(f"  {name:<34} best {row['best']:8.3f} s   median {row['median']:8.3f} s   peak RSS {row['rss']:8.1f} MB", flush=True)
    return row


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="io,layers,rewrite,import")
    args = parser.parse_args()
    model = Path(args.model_dir) / "model.onnx"
    data = Path(args.model_dir) / "model.onnx.data"
    if not Path("/usr/bin/time").exists():
        sys.exit("bench.py needs GNU time for peak memory: apt-get install time")
    if not model.exists() or not data.exists():
        sys.exit(f"{model}: not found; make it with Scripts/make-bench-model.py {args.model_dir}")
    sections = set(args.only.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="slowfast-bench-", dir=Path(args.model_dir).parent))
    out = scratch / "out"

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    print(f"model: {model} ({data.stat().st_size / 1e9:.2f} GB external data), binary {BIN}, {args.runs} runs after a warm-up")
    try:
        if "io" in sections:
            print("\nio: load + save to a new folder")
            link = series("slowfast rewrite --weights link", [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), "--weights", "link"], args.runs, fresh)
            copy = series("slowfast rewrite --weights copy", [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), "--weights", "copy"], args.runs, fresh)
            onnx_ir = series("onnx_ir load + save", [PYTHON, "-c", ONNX_IR, str(model), str(out / "model.onnx")], args.runs, fresh)
            cp = series("cp of the data file", ["cp", str(data), str(out / "model.onnx.data")], args.runs, fresh)
            print(f"  ratios: link / onnx_ir = {link['best'] / onnx_ir['best']:.3f} (time), {link['rss'] / onnx_ir['rss']:.2f} (memory); "
                  f"copy / cp = {copy['best'] / cp['best']:.2f}")
            print(f"  targets: link < 0.15 s {verdict(link['best'] < 0.15)}, link < 64 MB {verdict(link['rss'] < 64)}, "
                  f"copy <= 1.3x cp {verdict(copy['best'] <= 1.3 * cp['best'])}")
        if "layers" in sections:
            print("\nlayers: discovery inside one `slowfast inspect --layers --json` run")
            row = series("slowfast inspect --layers", [BIN, "inspect", str(model), "--layers", "--json"], args.runs)
            timings = json.loads(row["stdout"])["timings"]
            layout = json.loads(row["stdout"])["layout"]
            print(f"  read {timings['readSeconds'] * 1000:.1f} ms, discovery {timings['discoverSeconds'] * 1000:.1f} ms, "
                  f"{len(layout['layers'])} layers ({layout['adapter']})")
            print(f"  target: discovery < 50 ms {verdict(timings['discoverSeconds'] < 0.05)}")
        if "rewrite" in sections:
            print("\nrewrite: hybrid layers every 8 (0, 8, 16), link mode")
            hybrid = series("slowfast rewrite --every 8", [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), "--every", "8", "--weights", "link"], args.runs, fresh)
            if "io" not in sections:
                onnx_ir = series("onnx_ir load + save", [PYTHON, "-c", ONNX_IR, str(model), str(out / "model.onnx")], args.runs, fresh)
            print(f"  ratio: slowfast hybrid rewrite / onnx_ir load+save = {hybrid['best'] / onnx_ir['best']:.3f}")
            print(f"  targets: < 0.25 s {verdict(hybrid['best'] < 0.25)}, < 96 MB {verdict(hybrid['rss'] < 96)}")
        if "import" in sections:
            print("\nimport: every weight from a safetensors checkpoint (float32)")
            checkpoint = scratch / "checkpoint"
            exported = series("slowfast weights export --all", [BIN, "weights", "export", str(model), "-o", str(checkpoint), "--all"],
                              1, lambda: shutil.rmtree(checkpoint, ignore_errors=True))
            shards = sorted(checkpoint.glob("*.safetensors"))
            size = sum(p.stat().st_size for p in shards)
            largest = max(json_tensor_sizes(shards))
            imported = series("slowfast weights import", [BIN, "weights", "import", str(model), "--from", str(checkpoint),
                                                          "-o", str(out / "model.onnx"), "--strict"], args.runs, fresh)
            cp = series("cp of the checkpoint", ["cp", *map(str, shards), str(out)], args.runs, fresh)
            # The same import with half the tensors: memory must not follow the checkpoint's size.
            half = scratch / "half"
            half.mkdir()
            subprocess.run([PYTHON, "-c", HALF, str(checkpoint), str(half / "model.safetensors")], check=True)
            smaller = series("slowfast weights import (half)", [BIN, "weights", "import", str(model), "--from", str(half),
                                                                 "-o", str(out / "model.onnx")], args.runs, fresh)
            print(f"  checkpoint {size / 1e9:.2f} GB in {len(shards)} files, largest tensor {largest / 1e6:.0f} MB; "
                  f"export {exported['best']:.2f} s")
            print(f"  ratio: import / cp = {imported['best'] / cp['best']:.2f}; peak RSS {imported['rss']:.0f} MB "
                  f"(half-size checkpoint: {smaller['rss']:.0f} MB)")
            print(f"  targets: import <= 1.5x cp {verdict(imported['best'] <= 1.5 * cp['best'])}, "
                  f"RSS below 3x the largest tensor {verdict(imported['rss'] * 1e6 < 3 * largest + 64e6)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


HALF = """
import sys, json, os
from safetensors.numpy import load_file, save_file
folder, out = sys.argv[1], sys.argv[2]
names = sorted(f for f in os.listdir(folder) if f.endswith('.safetensors'))
tensors = {}
for name in names:
    tensors.update(load_file(os.path.join(folder, name)))
keep = sorted(tensors)[: len(tensors) // 2]
save_file({k: tensors[k] for k in keep}, out)
"""


def json_tensor_sizes(shards):
    """Byte sizes of every tensor, from the safetensors headers."""
    sizes = []
    for path in shards:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
        sizes += [v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"]
    return sizes


if __name__ == "__main__":
    main()
