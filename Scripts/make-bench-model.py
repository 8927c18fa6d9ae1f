#!/usr/bin/env python3
"""Makes the benchmark model: a Qwen2-0.5B-shaped random decoder (24 layers, hidden 896,
14 heads, 2 KV heads, head_dim 64, intermediate 4864, vocab 151936, tied embeddings),
float32, exported by torch.onnx's dynamo exporter with external data (about 2 GB in one
file), the way docs/DESIGN.md §8's peer numbers were measured. Never committed.

    make-bench-model.py OUTDIR

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
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    start = time.time()
    model = fixtures.make_model("qwen2", seed=0, **QWEN2_05B)
    path = fixtures.export_torch(model, out, dynamo=True)
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{path}: {sizes} in {time.time() - start:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
