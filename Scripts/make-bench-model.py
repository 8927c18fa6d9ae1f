#!/usr/bin/env python3
"""Makes the benchmark model: a Qwen2-0.5B-shaped random decoder (24 layers, hidden 896,
14 heads, 2 KV heads, head_dim 64, intermediate 4864, vocab 151936, tied embeddings),
float32, exported by torch.onnx's dynamo exporter with external data (about 2 GB in one
file), the way docs/DESIGN.md §8's peer numbers were measured. Never committed.

    make-bench-model.py OUTDIR
    make-bench-model.py --genai [--vocab N] OUTDIR   # onnxruntime-genai builder export (KV cache, GQA)
    make-bench-model.py --genai --int4 OUTDIR        # the same model as the builder's int4 CPU export

The genai form is what Benchmarks/bench_runtime.py measures (issue 9): prefill and decode
with a KV cache; --int4 is the form most CPU deployments run (MatMulNBits, block 32,
accuracy_level 4), measured the same way (issue 19). Its builder computes logits for every position of a prefill, so the
benchmark uses a smaller vocabulary (default 2048) to keep a 10496-token prefill's logits
from dominating; the cost model is given the same vocabulary.

Needs the fixture tools (Scripts/requirements-fixtures.txt); reuses make-fixtures.py's code.
"""
import importlib.util
import resource
import sys
import time
from pathlib import Path

spec = importlib.util.spec_from_file_location("make_fixtures", Path(__file__).with_name("make-fixtures.py"))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, head_dim=64, vocab_size=151936, max_position_embeddings=4096,
                 tie_word_embeddings=True)


def main():
    args = sys.argv[1:]
    genai = "--genai" in args
    if genai:
        args.remove("--genai")
    precision = "fp32"
    if "--int4" in args:
        args.remove("--int4")
        precision = "int4"
        if not genai:
            sys.exit("--int4 goes with --genai")
    vocab = None
    if "--vocab" in args:
        at = args.index("--vocab")
        vocab = int(args[at + 1])
        del args[at: at + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    out = Path(args[0])
    start = time.time()
    dims = dict(QWEN2_05B)
    if genai:
        dims["vocab_size"] = vocab or 2048
        dims["max_position_embeddings"] = 16384
    elif vocab:
        dims["vocab_size"] = vocab
    model = fixtures.make_model("qwen2", seed=0, **dims)
    path = fixtures.export_genai(model, "qwen2", out, precision=precision) if genai else fixtures.export_torch(model, out, dynamo=True)
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{path}: {sizes} in {time.time() - start:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
