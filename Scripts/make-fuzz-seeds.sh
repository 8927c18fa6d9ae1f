#!/usr/bin/env bash
# Seeds for the fuzz targets of slowfast-fuzz other than `model` (whose corpus is
# Tests/Fuzz/corpus), written under Tests/Fuzz/<target>/seed-*. Each seed is a file the tool
# itself writes or reads for the fuzz target's fixed models (Sources/slowfast-fuzz/Scratch.swift:
# the two fixtures below, rewritten with hybrid layers every 2), so fuzzing starts from inputs
# that reach deep into each surface.
#   Scripts/make-fuzz-seeds.sh [SLOWFAST_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/debug/slowfast}
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
FLOAT=Tests/Fixtures/qwen2-torchscript/model.onnx
INT4=Tests/Fixtures/qwen2-torchscript-kv-int4/model.onnx
for target in safetensors safetensors-index weight-map layout genai-config import; do
    mkdir -p "Tests/Fuzz/$target"
    rm -f "Tests/Fuzz/$target"/seed-*
done

for name in float int4; do
    src=$FLOAT; [ $name = int4 ] && src=$INT4
    mkdir -p "$work/$name"
    "$BIN" rewrite "$src" -o "$work/$name/model.onnx" --every 2 --weights inline >/dev/null
    cp "$work/$name/model.weight-map.json" "Tests/Fuzz/weight-map/seed-$name.json"
    "$BIN" inspect "$src" --layers --json > "Tests/Fuzz/layout/seed-$name.json"
    "$BIN" weights export "$work/$name/model.onnx" -o "$work/$name-new" >/dev/null
    cp "$work/$name-new/model.safetensors" "Tests/Fuzz/import/seed-$name-new.safetensors"
    cp "$work/$name-new/model.safetensors" "Tests/Fuzz/safetensors/seed-$name-new.safetensors"
    "$BIN" weights export "$work/$name/model.onnx" -o "$work/$name-bf16" --dtype BF16 >/dev/null
    cp "$work/$name-bf16/model.safetensors" "Tests/Fuzz/import/seed-$name-new-bf16.safetensors"
done
# The index of the float base's shards, as the safetensors-index target lays them out.
"$BIN" weights export "$work/float/model.onnx" -o "$work/sharded" --all --max-shard-size 400000 >/dev/null
cp "$work/sharded/model.safetensors.index.json" Tests/Fuzz/safetensors-index/seed-index.json
# The int4 model's every weight, k/v and q of the first layer only (the quantized import path).
"$BIN" weights export "$work/int4/model.onnx" -o "$work/int4-all" --all >/dev/null
"$PY" - "$work/int4-all/model.safetensors" Tests/Fuzz/import/seed-int4-layer0.safetensors <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
size = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + size])
body = data[8 + size:]
keep = {k: v for k, v in header.items() if k.startswith("model.layers.0.self_attn.") and k.endswith("weight")}
out, offset, blobs = {}, 0, []
for name in sorted(keep):
    begin, end = keep[name]["data_offsets"]
    blobs.append(body[begin:end])
    out[name] = {"dtype": keep[name]["dtype"], "shape": keep[name]["shape"], "data_offsets": [offset, offset + end - begin]}
    offset += end - begin
text = json.dumps(out, sort_keys=True, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
for family in qwen2-genai-int4 phi3-genai llama-genai-int4; do
    cp "Tests/Fixtures/$family/genai_config.json" "Tests/Fuzz/genai-config/seed-$family.json"
done
du -sh Tests/Fuzz/*/ | sort -k2
