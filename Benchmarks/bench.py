#!/usr/bin/env python3
"""`make bench`: every benchmark of SlowFastKit in one run and one table, each beside its
peers doing the nearest equal work, with PASS or MISS against the issues' targets; the table
goes to Benchmarks/RESULTS.md with the date, the machine and the commit.

Each tool runs as its own process on the same input (wall time: best and median of --runs
after one warm-up; peak RSS from GNU time). Models: MODEL_DIR (default Benchmarks/out/
qwen2-0.5b, a torch.onnx dynamo export, Scripts/make-bench-model.py) and the Qwen2-7B- and
LLaMA-70B-shaped exports with sparse weights (Scripts/make-large-model.py, made here when
missing, cached under Benchmarks/out).

  io        0.5B  slowfast rewrite --weights link / copy; onnx_ir and onnx-graphsurgeon load +
                  save with the weights; cp of the data file (the floor)
                  targets: link < 0.15 s and < 64 MB; copy within 1.3x of cp      (issue 2)
  layers    0.5B  layer discovery, timed inside `slowfast inspect --layers`
                  target: < 50 ms                                                 (issue 3)
  rewrite   0.5B  slowfast rewrite --every 8 --weights link; the peers load, make the same
                  edit (the nodes slowfast added, removed and rewired, its new parameters;
                  Benchmarks/peers.py), save with the weights kept in place
                  targets: < 0.25 s and < 96 MB                                   (issue 4)
  srelu     0.5B  slowfast rewrite --activation srelu --activation-targets silu --weights
                  link, beside the same peers (no target of its own)
  large     7B, 70B  rewrite --every 8 + SReLU of the MLP activations, weights kept in place,
                  beside the same peers; slowfast inspect
                  targets: rewrite < 1 s and < 128 MB; inspect < 0.3 s           (issue 13)
  import    0.5B  slowfast weights import of a checkpoint of every weight beside cp of it
                  targets: within 1.5x of cp; RSS below 3x the largest tensor     (issue 10)
  runtime   Benchmarks/bench_runtime.py (issue 9, ~7 minutes, needs the genai export
                  Benchmarks/out/qwen2-0.5b-genai): run as a child, its table and PASS/MISS
                  lines folded in. --runtime-output FILE reads a saved output instead;
                  --only without runtime skips it.
  runtime-int4  the same on the genai builder's int4 export (Benchmarks/out/qwen2-0.5b-genai-int4;
                  issue 19: decode with cached slow K/V within 1.10x of the int4 original)

    bench.py [MODEL_DIR] [--runs 3] [--only io,layers,rewrite,srelu,large,import,order,runtime,runtime-int4]
             [--runtime-output FILE] [--results Benchmarks/RESULTS.md]
"""
import argparse
import datetime
import json
import os
import platform
import re
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
PEERS = str(REPO / "Benchmarks/peers.py")
LARGE = {"qwen2-7b": "Qwen2-7B", "llama-70b": "LLaMA-70B"}
SRELU = ["--activation", "srelu", "--activation-targets", "silu"]

ONNX_IR = """
import sys, onnx_ir as ir
model = ir.load(sys.argv[1])
ir.save(model, sys.argv[2], external_data="model.onnx.data")
"""

GRAPHSURGEON = """
import sys, onnx, onnx_graphsurgeon as gs
graph = gs.import_onnx(onnx.load(sys.argv[1]))
onnx.save(gs.export_onnx(graph), sys.argv[2], save_as_external_data=True, location="model.onnx.data")
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


class Table:
    """The rows of the one table: what ran, its figures, its target and verdict."""

    def __init__(self, load_average):
        self.rows = []
        self.load_average = load_average

    def add(self, section, row, target="", ok=None, note="", ratio=""):
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        if ok is False and not note:
            note = f"machine shared (load average {self.load_average:.1f} at start)"
        self.rows.append(dict(section=section, what=row["name"], best=f"{row['best']:.3f}", median=f"{row['median']:.3f}",
                              rss=f"{row['rss']:.0f}", ratio=ratio, target=target, verdict=verdict, note=note))

    def add_line(self, section, what, best="", median="", rss="", ratio="", target="", verdict="", note=""):
        self.rows.append(dict(section=section, what=what, best=best, median=median, rss=rss, ratio=ratio, target=target,
                              verdict=verdict, note=note))

    def markdown(self):
        header = ["section", "what", "best s", "median s", "peak RSS MB", "ratio", "target", "verdict", "why (MISS)"]
        keys = ["section", "what", "best", "median", "rss", "ratio", "target", "verdict", "note"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(str(row[k]).replace("|", "\\|") for k in keys) + " |")
        return "\n".join(lines)


def graphsurgeon_available():
    return subprocess.run([PYTHON, "-c", "import onnx_graphsurgeon"], capture_output=True).returncode == 0


def graph_counts(path):
    """(nodes, initializers, functions) of a saved model, graph only: the peers' outputs must
    match slowfast's."""
    code = ("import sys, onnx; m = onnx.load(sys.argv[1], load_external_data=False); "
            "print(len(m.graph.node), len(m.graph.initializer), len(m.functions))")
    return subprocess.run([PYTHON, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout.split()


def new_bytes(out):
    """Bytes of new parameters slowfast wrote (its weight map's summary)."""
    maps = list(out.glob("*.weight-map.json"))
    return json.loads(maps[0].read_text())["summary"].get("newBytes", 0) if maps else 0


def edit_beside_peers(table, section, label, model, extra, runs, scratch, targets, gs):
    """slowfast rewrite MODEL EXTRA --weights link beside onnx_ir and onnx-graphsurgeon making
    the same edit; returns slowfast's row."""
    out = scratch / "out"

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    command = [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), *extra, "--weights", "link"]
    mine = series(f"slowfast rewrite {' '.join(extra)} --weights link ({label})", command, runs, fresh)
    written = new_bytes(out)
    expected = graph_counts(out / "model.onnx")
    patch = scratch / "patch"
    shutil.rmtree(patch, ignore_errors=True)
    subprocess.run([PYTHON, PEERS, "patch", str(model), str(out / "model.onnx"), str(patch)], check=True, capture_output=True)
    peers = []
    for peer, available in (("onnx_ir", True), ("graphsurgeon", gs)):
        if not available:
            continue
        row = series(f"{peer}: load, same edit, save ({label})", [PYTHON, PEERS, peer, str(model), str(patch), str(out / "model.onnx")],
                     runs, fresh)
        got = graph_counts(out / "model.onnx")
        if got != expected:
            sys.exit(f"bench.py: {peer} wrote (nodes, initializers, functions) {got}, slowfast {expected}")
        peers.append(row)
    seconds, megabytes = targets
    ok = mine["best"] < seconds and mine["rss"] < megabytes
    note = ""
    if not ok:
        causes = []
        if written > 32e6:
            causes.append(f"writes {written / 1e6:.0f} MB of new parameters (cross_attn_kv_proj = concat(k_proj, v_proj) "
                          "per hybrid layer)")
        causes.append(f"load average {table.load_average:.1f} at start")
        note = "; ".join(causes)
    ratio = ", ".join(f"{p['best'] / mine['best']:.1f}x ({p['name'].split(':')[0]})" for p in peers)
    table.add(section, mine, f"< {seconds} s, < {megabytes} MB", ok, note, ratio=f"peers take {ratio}" if ratio else "")
    for p in peers:
        table.add(section, p)
    return mine


def run_runtime(args, table, section="runtime", model_name="qwen2-0.5b-genai", extra=(), issue="issue 9", saved=None):
    """bench_runtime.py's output (run now, or read from a saved output), folded into the table
    as `section`."""
    if saved:
        text = Path(saved).read_text()
        source = f"read from {saved}"
    else:
        model = REPO / "Benchmarks/out" / model_name
        if not (model / "model.onnx").exists():
            sys.exit(f"{model}: not found; make it with Scripts/make-bench-model.py --genai {model} (or make bench)")
        print(f"\n{section}: Benchmarks/bench_runtime.py on {model_name} (about 7 minutes)", flush=True)
        result = subprocess.run([PYTHON, str(REPO / "Benchmarks/bench_runtime.py"), "--model", str(model), "--bin", BIN,
                                 "--out", str(REPO / "Benchmarks/out" / section), *extra],
                                capture_output=True, text=True)
        text = result.stdout
        print(text, flush=True)
        if result.returncode != 0:
            sys.exit(f"bench_runtime.py failed:\n{result.stderr[-2000:]}")
        source = "run now"
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("measurement "))
    except StopIteration:
        sys.exit("bench_runtime.py's output has no results table")
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 3:
            label, best, rss = cells[0], cells[1], cells[2]
            measured = cells[3] if len(cells) > 3 else ""
            predicted = cells[4] if len(cells) > 4 else ""
            table.add_line(section, label, best=best, rss=rss,
                           ratio=f"{measured} (cost model {predicted})" if predicted else measured)
    for line in lines:
        m = re.match(r"(PASS|MISS)\s+(.*?): (.*)$", line)
        if m:
            note = ""
            if m.group(1) == "MISS":
                note = ("onnxruntime CPU time beside a FLOP count on a shared machine; "
                        "see Benchmarks/README.md (run time)")
            table.add_line(section, m.group(2), ratio=m.group(3), target=issue, verdict=m.group(1), note=note)
    extras = [line.strip() for line in lines if line.startswith(("companion", "cost model", "baseline@16 timed again"))]
    return source, extras


def machine(load_average):
    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({model}), {memory / 1024 / 1024:.1f} GiB memory, load average {load_average:.2f} at start"


def commit():
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short=12", "HEAD") + dirty


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", default=str(REPO / "Benchmarks/out/qwen2-0.5b"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="io,layers,rewrite,srelu,large,import,order,runtime,runtime-int4")
    parser.add_argument("--runtime-output", help="a saved output of bench_runtime.py to fold in instead of running it")
    parser.add_argument("--results", default=str(REPO / "Benchmarks/RESULTS.md"), help="where the table goes ('-': nowhere)")
    args = parser.parse_args()
    model = Path(args.model_dir) / "model.onnx"
    data = Path(args.model_dir) / "model.onnx.data"
    if not Path("/usr/bin/time").exists():
        sys.exit("bench.py needs GNU time for peak memory: apt-get install time")
    sections = set(args.only.split(","))
    if sections & {"io", "layers", "rewrite", "srelu", "import"} and (not model.exists() or not data.exists()):
        sys.exit(f"{model}: not found; make it with Scripts/make-bench-model.py {args.model_dir}")
    load_average = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.timezone.utc)
    revision = commit()  # at the start: what was measured
    table = Table(load_average)
    gs = graphsurgeon_available()
    scratch = Path(tempfile.mkdtemp(prefix="slowfast-bench-", dir=REPO / "Benchmarks/out"))
    out = scratch / "out"

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    print(f"binary {BIN}, {args.runs} runs after a warm-up; {machine(load_average)}; "
          f"onnx-graphsurgeon {'installed' if gs else 'not installed: its rows are left out'}")
    runtime_source, runtime_extras = None, []
    try:
        if "io" in sections:
            print(f"\nio: load + save to a new folder ({data.stat().st_size / 1e9:.2f} GB of external data)")
            link = series("slowfast rewrite --weights link", [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), "--weights", "link"], args.runs, fresh)
            copy = series("slowfast rewrite --weights copy", [BIN, "rewrite", str(model), "-o", str(out / "model.onnx"), "--weights", "copy"], args.runs, fresh)
            onnx_ir = series("onnx_ir load + save", [PYTHON, "-c", ONNX_IR, str(model), str(out / "model.onnx")], args.runs, fresh)
            surgeon = series("onnx-graphsurgeon load + save", [PYTHON, "-c", GRAPHSURGEON, str(model), str(out / "model.onnx")],
                             args.runs, fresh) if gs else None
            cp = series("cp of the data file", ["cp", str(data), str(out / "model.onnx.data")], args.runs, fresh)
            table.add("io 0.5B", link, "< 0.15 s, < 64 MB", link["best"] < 0.15 and link["rss"] < 64)
            table.add("io 0.5B", copy, "<= 1.3x cp", copy["best"] <= 1.3 * cp["best"], ratio=f"{copy['best'] / cp['best']:.2f}x cp")
            table.add("io 0.5B", onnx_ir, ratio=f"{onnx_ir['best'] / cp['best']:.2f}x cp")
            if surgeon:
                table.add("io 0.5B", surgeon, ratio=f"{surgeon['best'] / cp['best']:.2f}x cp")
            table.add("io 0.5B", cp, ratio="1.00x cp")
        if "layers" in sections:
            print("\nlayers: discovery inside one `slowfast inspect --layers --json` run")
            row = series("slowfast inspect --layers (0.5B)", [BIN, "inspect", str(model), "--layers", "--json"], args.runs)
            report = json.loads(row["stdout"])
            discover = report["timings"]["discoverSeconds"]
            print(f"  read {report['timings']['readSeconds'] * 1000:.1f} ms, discovery {discover * 1000:.1f} ms, "
                  f"{len(report['layout']['layers'])} layers ({report['layout']['adapter']})")
            table.add_line("layers 0.5B", f"layer discovery ({len(report['layout']['layers'])} layers, inside inspect)",
                           best=f"{discover:.3f}", target="< 0.05 s", verdict="PASS" if discover < 0.05 else "MISS",
                           note="" if discover < 0.05 else f"load average {load_average:.1f} at start")
            table.add("layers 0.5B", row)
        if "rewrite" in sections:
            print("\nrewrite: hybrid layers every 8, weights kept in place, beside the same edit by the peers")
            edit_beside_peers(table, "rewrite 0.5B", "0.5B", model, ["--every", "8"], args.runs, scratch, (0.25, 96), gs)
        if "srelu" in sections:
            print("\nsrelu: SReLU in place of every MLP SiLU, weights kept in place")
            edit_beside_peers_untargeted(table, model, args.runs, scratch, gs)
        if "large" in sections:
            for name, label in LARGE.items():
                large = REPO / "Benchmarks/out" / name / "model.onnx"
                if not large.exists():
                    subprocess.run([PYTHON, str(REPO / "Scripts/make-large-model.py"), name, str(large.parent)], check=True)
                print(f"\nlarge: {label}-shaped export ({large.with_suffix('.onnx.data').stat().st_size / 1e9:.0f} GB sparse weights)")
                edit_beside_peers(table, f"large {label}", label, large, ["--every", "8", *SRELU], args.runs, scratch, (1, 128), gs)
                inspect = series(f"slowfast inspect ({label})", [BIN, "inspect", str(large)], args.runs)
                table.add(f"large {label}", inspect, "< 0.3 s", inspect["best"] < 0.3)
                layers = series(f"slowfast inspect --layers ({label})", [BIN, "inspect", str(large), "--layers", "--json"], args.runs)
                timings = json.loads(layers["stdout"])["timings"]
                table.add(f"large {label}", layers, ratio=f"discovery {timings['discoverSeconds']:.3f} s")
        if "import" in sections:
            run_import(table, model, args.runs, scratch, fresh, out)
        if "order" in sections:
            run_order(table, args.runs, scratch)
        if "runtime" in sections or args.runtime_output:
            runtime_source, runtime_extras = run_runtime(args, table, saved=args.runtime_output)
        if "runtime-int4" in sections:
            source, extras = run_runtime(args, table, section="runtime-int4", model_name="qwen2-0.5b-genai-int4",
                                         extra=("--decode-target", "1.10"), issue="issue 19")
            runtime_source = f"{runtime_source}; int4: {source}" if runtime_source else f"int4: {source}"
            runtime_extras += [f"int4: {line}" for line in extras]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    markdown = table.markdown()
    print("\n" + markdown)
    if args.results != "-":
        lines = [
            "# SlowFastKit benchmarks",
            "",
            f"Made by `make bench` (Benchmarks/bench.py; what each row measures is in Benchmarks/README.md).",
            "",
            f"- date: {started:%Y-%m-%d %H:%M} UTC",
            f"- machine: {machine(load_average)}",
            f"- commit: {revision}",
            f"- runs: best and median of {args.runs} after a warm-up; peak RSS from GNU time; warm page cache",
            f"- peers: onnx_ir{', onnx-graphsurgeon' if gs else ' (onnx-graphsurgeon not installed)'}; `cp` as the I/O floor",
        ]
        if runtime_source:
            lines.append(f"- run-time benchmark (Benchmarks/bench_runtime.py): {runtime_source}")
        lines += ["", markdown, ""]
        lines += [f"{line}  " for line in runtime_extras]
        Path(args.results).write_text("\n".join(lines).rstrip() + "\n")
        print(f"\nwritten: {args.results}")


def run_order(table, runs, scratch):
    """A 100,000-node chain stored in reverse topological order (issue 21): the rewrite (read,
    verify, write) against the same chain in order and against onnx_ir load + save of it."""
    import onnx
    from onnx import TensorProto, helper
    n = 100_000
    print(f"\norder: a {n:,}-node Relu chain, rewritten as stored in order and in reverse order")
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"n{i}") for i in range(n)]
    io = ([helper.make_tensor_value_info("v0", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [4])])
    paths = {}
    for order, listed in (("in-order", nodes), ("reversed", list(reversed(nodes)))):
        paths[order] = scratch / f"chain-{order}.onnx"
        onnx.save(helper.make_model(helper.make_graph(listed, "chain", *io), opset_imports=[helper.make_opsetid("", 17)]), str(paths[order]))
    out = scratch / "chain-out.onnx"
    ordered = series("slowfast rewrite (in order)", [BIN, "rewrite", str(paths["in-order"]), "-o", str(out)], runs)
    reverse = series("slowfast rewrite (reverse order)", [BIN, "rewrite", str(paths["reversed"]), "-o", str(out)], runs)
    peer = series("onnx_ir load + save (reverse order)", [PYTHON, "-c", ONNX_IR, str(paths["reversed"]), str(out)], runs)
    table.add("order 100k nodes", reverse, "< 2 s", reverse["best"] < 2,
              ratio=f"{reverse['best'] / ordered['best']:.2f}x in order, {reverse['best'] / peer['best']:.2f}x onnx_ir")
    table.add("order 100k nodes", ordered)
    table.add("order 100k nodes", peer)


def edit_beside_peers_untargeted(table, model, runs, scratch, gs):
    """The SReLU rewrite beside the peers: no target of its own."""
    before = len(table.rows)
    edit_beside_peers(table, "srelu 0.5B", "0.5B", model, SRELU, runs, scratch, (float("inf"), float("inf")), gs)
    for row in table.rows[before:]:
        row["target"], row["verdict"] = "", ""


def run_import(table, model, runs, scratch, fresh, out):
    print("\nimport: every weight from a safetensors checkpoint (float32)")
    checkpoint = scratch / "checkpoint"
    exported = series("slowfast weights export --all", [BIN, "weights", "export", str(model), "-o", str(checkpoint), "--all"],
                      1, lambda: shutil.rmtree(checkpoint, ignore_errors=True))
    shards = sorted(checkpoint.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in shards)
    largest = max(json_tensor_sizes(shards))
    imported = series("slowfast weights import", [BIN, "weights", "import", str(model), "--from", str(checkpoint),
                                                  "-o", str(out / "model.onnx"), "--strict"], runs, fresh)
    cp = series("cp of the checkpoint", ["cp", *map(str, shards), str(out)], runs, fresh)
    # The same import with half the tensors: memory must not follow the checkpoint's size.
    half = scratch / "half"
    half.mkdir()
    subprocess.run([PYTHON, "-c", HALF, str(checkpoint), str(half / "model.safetensors")], check=True)
    smaller = series("slowfast weights import (half)", [BIN, "weights", "import", str(model), "--from", str(half),
                                                         "-o", str(out / "model.onnx")], runs, fresh)
    print(f"  checkpoint {size / 1e9:.2f} GB in {len(shards)} files, largest tensor {largest / 1e6:.0f} MB; "
          f"export {exported['best']:.2f} s")
    fast, small = imported["best"] <= 1.5 * cp["best"], imported["rss"] * 1e6 < 3 * largest + 64e6
    note = "" if fast and small else "; ".join(
        ([] if fast else [f"time {imported['best'] / cp['best']:.2f}x cp"]) +
        ([] if small else [f"RSS {imported['rss']:.0f} MB, largest tensor {largest / 1e6:.0f} MB"]) +
        [f"load average {table.load_average:.1f} at start"])
    table.add("import 0.5B", imported, "<= 1.5x cp; RSS < 3x largest tensor", fast and small, note,
              ratio=f"{imported['best'] / cp['best']:.2f}x cp")
    table.add("import 0.5B", smaller, ratio=f"RSS {smaller['rss'] / imported['rss']:.2f}x of the full import")
    table.add("import 0.5B", cp, ratio="1.00x cp")
    table.add("import 0.5B", exported)


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
