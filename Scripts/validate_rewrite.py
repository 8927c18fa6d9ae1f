#!/usr/bin/env python3
"""Checks a rewritten model with engines we did not write.

    validate_rewrite.py ORIGINAL REWRITTEN [--reference reference.npz] [--tolerance 1e-5]

1. onnx.checker.check_model(full_check=True) gives the rewritten model the same verdict as
   the original (exports with onnxruntime-internal ops fail it before any rewrite).
2. onnxruntime runs both; with random slow tokens and default init the outputs must be equal
   within the tolerance (function preservation). Prints the max abs difference per output.
Exit status 1 on any failure.
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort

NUMPY = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64}


def checker_verdict(path):
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return "passes"
    except Exception as error:  # the checker raises several types
        return f"fails ({str(error).splitlines()[0][:120]})"


def feeds_for(session, reference, rng, dims):
    feeds = {}
    # Symbolic dims take the sizes the fed inputs give them (batch, sequence, ...).
    for value in session.get_inputs():
        if value.name in reference:
            for dim, size in zip(value.shape, np.shape(reference[value.name])):
                if isinstance(dim, str):
                    dims.setdefault(dim, size)
    for value in session.get_inputs():
        if value.name in reference:
            feeds[value.name] = reference[value.name]
            continue
        shape = [d if isinstance(d, int) else dims.get(d, dims.get("*", 1)) for d in value.shape]
        kind = value.type
        if value.name == "slow_tokens_mask":
            feeds[value.name] = np.ones(shape, np.float32)  # off: every slow token real
        elif value.name == "slow_query_exclude":
            feeds[value.name] = np.zeros([shape[0], 1, 2], np.int64)  # off: one empty range
        elif value.name == "slow_tokens" or ".encoder." in value.name:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
        elif "int" in kind:
            feeds[value.name] = rng.integers(0, 32, size=shape).astype(np.int64 if "int64" in kind else np.int32)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("original")
    parser.add_argument("rewritten")
    parser.add_argument("--reference", help="npz with the inputs to feed (names as graph inputs)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--slow-tokens", type=int, default=12)
    args = parser.parse_args()

    ok = True
    before, after = checker_verdict(args.original), checker_verdict(args.rewritten)
    same = before.split()[0] == after.split()[0]
    print(f"onnx.checker (full): original {before}; rewritten {after}" + ("" if same else "  <-- verdict changed"))
    ok &= same

    options = ort.SessionOptions()
    options.log_severity_level = 3
    original = ort.InferenceSession(args.original, options)
    rewritten = ort.InferenceSession(args.rewritten, options)
    reference = dict(np.load(args.reference)) if args.reference else {}
    rng = np.random.default_rng(0)
    dims = {"num_slow_tokens": args.slow_tokens, "*": 7}
    feeds = feeds_for(original, reference, rng, dims)
    new_feeds = feeds_for(rewritten, {**reference, **feeds}, rng, dims)
    outputs_before = original.run(None, feeds)
    outputs_after = rewritten.run([o.name for o in original.get_outputs()], new_feeds)
    for meta, a, b in zip(original.get_outputs(), outputs_before, outputs_after):
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
        good = diff <= args.tolerance
        ok &= good
        print(f"onnxruntime output {meta.name} {list(a.shape)}: max abs diff {diff:.3g} (tolerance {args.tolerance:g})"
              + ("" if good else "  <-- too large"))
    print("validation: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
