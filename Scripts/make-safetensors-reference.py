"""Writes reference safetensors files with the official Python implementation.

Usage: python Scripts/make-safetensors-reference.py [OUT_DIR]   (default: Tests/Fixtures/safetensors-reference)
Needs the `safetensors` and numpy packages. The Swift tests (ReferenceInteropTests) read these
committed files and check the values below.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "safetensors-reference")
os.makedirs(out, exist_ok=True)

basic = {
    "weight": (np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1.0),
    "half": np.array([-2.0, -0.5, 0.0, 0.25, 65504.0, 1e-7], dtype=np.float16),
    "ids": np.array([-3, 0, 1 << 40, 2**63 - 1], dtype=np.int64),
}
save_file(basic, os.path.join(out, "basic.safetensors"), metadata={"format": "np", "source": "make_reference.py"})

edge = {
    "empty": np.zeros((0, 3), dtype=np.float32),
    "scalar": np.array(7.5, dtype=np.float32),
    "flags": np.array([True, False, True], dtype=np.bool_),
    "bytes": np.array([0, 1, 254, 255], dtype=np.uint8),
}
save_file(edge, os.path.join(out, "edge.safetensors"))

sharded = os.path.join(out, "sharded")
os.makedirs(sharded, exist_ok=True)
s1 = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.array([1.5, -1.5], dtype=np.float32)}
s2 = {"b.weight": np.arange(4, dtype=np.int64) * -7}
n1 = "model-00001-of-00002.safetensors"
n2 = "model-00002-of-00002.safetensors"
save_file(s1, os.path.join(sharded, n1), metadata={"format": "pt"})
save_file(s2, os.path.join(sharded, n2), metadata={"format": "pt"})
total = sum(v.nbytes for v in list(s1.values()) + list(s2.values()))
index = {"metadata": {"total_size": total}, "weight_map": {**{k: n1 for k in s1}, **{k: n2 for k in s2}}}
with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote reference files to", out)
