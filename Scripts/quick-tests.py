#!/usr/bin/env python3
"""`make test-quick`: the Python tests a change touches, for a contributor who does not want to
wait for the whole suite (`make test` runs everything; CI runs `make test`).

The change is what differs from QUICK_BASE (default: the merge base with origin/main where
there is one, else HEAD), committed or not, plus untracked files. Each changed path picks test
files (the table below); the fixture-parametrized files (one case per exported model) run only
for the families the change touches: a changed fixture's own family, else a few
representative exports (REPRESENTATIVE). Prints what it runs and why, then runs it with
pytest-xdist over every core.

    Scripts/quick-tests.py [--dry-run] [--base REV]
"""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VALIDATION = "Tests/Validation"
# One case per fixture: run for the touched families only.
PER_FIXTURE = ["test_layers.py", "test_hybrid_fixtures.py", "test_weights.py", "test_quantized.py", "test_srelu.py",
               "test_external_weights.py", "test_genai_runtime.py", "test_every_pass_loads.py"]
# Exports that between them cover every exporter, a KV cache, float16, int4 and a genai folder.
REPRESENTATIVE = ["qwen2-torchscript-kv", "llama-dynamo", "gemma2-torchscript-fp16", "phi3-genai-int4", "qwen25vl-genai"]
# Path prefix -> test files it touches.
TOUCHES = [
    ("Sources/SlowFastTokens/", ["test_tokens.py", "test_tokens_vision.py", "test_tokens_qwenvl.py", "test_cost.py"]),
    ("Sources/SlowFastCheckpoints/", ["test_weights.py", "test_quantized.py", "test_hostile.py"]),
    ("Sources/SlowFastWeights/", ["test_weights.py", "test_quantized.py"]),
    ("Sources/SlowFastAdapters/", ["test_layers.py", "test_adapters.py", "test_inspect.py", "test_hybrid_fixtures.py"]),
    ("Adapters/", ["test_layers.py", "test_adapters.py", "test_hybrid_fixtures.py"]),
    ("Sources/SlowFastPasses/", ["test_hybrid_synthetic.py", "test_hybrid_fixtures.py", "test_srelu.py", "test_quantized.py"]),
    ("Sources/SlowFastIR/", ["test_rewrite_roundtrip.py", "test_bad_input.py", "test_corrupt_input.py", "test_byte_names.py",
                             "test_source_shape.py", "test_hybrid_synthetic.py"]),
    ("Sources/SlowFastSerialization/", ["test_rewrite_roundtrip.py", "test_external_weights.py", "test_hostile.py",
                                        "test_corrupt_input.py", "test_progress.py", "test_roundtrip_backend.py"]),
    ("Sources/SlowFastKit/", ["test_inspect.py", "test_hostile.py", "test_weights.py", "test_genai_runtime.py"]),
    ("Sources/slowfast/", ["test_inspect.py", "test_cost.py", "test_readme.py", "test_bad_input.py", "test_progress.py"]),
    ("Sources/", ["test_source_shape.py"]),
    ("Schemas/", ["test_proto_schema.py", "test_inspect.py", "test_cost.py", "test_adapters.py"]),
    ("Examples/", ["test_video_pipeline.py", "test_video_pipeline_qwen25vl.py", "test_readme.py"]),
    ("README.md", ["test_readme.py"]),
]


def changed_paths(base):
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.split("\n")
    if base is None:
        merge_base = git("merge-base", "HEAD", "origin/main")[0].strip()
        base = merge_base or "HEAD"
    paths = git("diff", "--name-only", base) + git("ls-files", "--others", "--exclude-standard")
    return base, sorted({p for p in paths if p})


def selection(paths):
    files, families, reasons = set(), set(), []
    fixtures = sorted(p.parent.name for p in (REPO / "Tests/Fixtures").glob("*/model.onnx"))
    for path in paths:
        picked = []
        match = re.match(r"Tests/Fixtures/([^/]+)/", path)
        if match and match.group(1) in fixtures:
            families.add(match.group(1))
            picked = PER_FIXTURE
        elif path.startswith("Tests/Fixtures/vision/"):
            picked = ["test_tokens_vision.py", "test_tokens_qwenvl.py"]
        elif path.startswith(VALIDATION + "/") and Path(path).name.startswith("test_"):
            picked = [Path(path).name]
        else:
            for prefix, tests in TOUCHES:
                if path.startswith(prefix):
                    picked += tests
        picked = [t for t in picked if (REPO / VALIDATION / t).exists()]
        if picked:
            reasons.append(f"  {path}: {', '.join(sorted(set(picked)))}")
        files.update(picked)
    return sorted(files), sorted(families), reasons


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=os.environ.get("QUICK_BASE"))
    parser.add_argument("--dry-run", action="store_true", help="print the selection, run nothing")
    args = parser.parse_args()
    base, paths = changed_paths(args.base)
    files, families, reasons = selection(paths)
    print(f"changed since {base}: {len(paths)} files")
    print("\n".join(reasons) if reasons else "  nothing a Python test covers")
    whole = [f for f in files if f not in PER_FIXTURE]
    per_fixture = [f for f in files if f in PER_FIXTURE]
    keyword = " or ".join(families or REPRESENTATIVE)
    runs = []
    if whole:
        runs.append([f"{VALIDATION}/{f}" for f in whole])
    if per_fixture:
        print(f"per-fixture files for: {keyword}" + ("" if families else " (representative exports; a changed fixture picks its own)"))
        runs.append([f"{VALIDATION}/{f}" for f in per_fixture] + ["-k", keyword])
    python = os.environ.get("PYTHON", str(REPO / ".venv/bin/python"))
    jobs = os.environ.get("TEST_JOBS", "auto")
    status = 0
    for run in runs:
        command = [python, "-m", "pytest", "-q", "-n", jobs, *run]
        print("$ " + " ".join(command), flush=True)
        if not args.dry_run:
            status = subprocess.run(command, cwd=REPO).returncode or status
    return status


if __name__ == "__main__":
    sys.exit(main())
