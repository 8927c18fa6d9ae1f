#!/usr/bin/env bash
# The main job on the bundled example model: make layers hybrid, check the result with
# onnx.checker and onnxruntime (function preservation at default init), show the plan.
# Run through `make demo`, which builds the CLI and the validation virtualenv first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${SLOWFAST_BIN:-.build/debug/slowfast}"
PY="${PYTHON:-.venv/bin/python}"
MODEL=Examples/qwen2-tiny/model.onnx
OUT=Examples/out/qwen2-tiny-slowfast.onnx
LAYERS="${DEMO_LAYERS:-0,2,4}"

rm -rf Examples/out && mkdir -p Examples/out
echo "== the example model"
"$BIN" inspect "$MODEL" | head -12
echo
echo "== plan: hybrid layers $LAYERS (in place, as the slow-fast release does)"
"$BIN" plan "$MODEL" --hybrid-layers "$LAYERS"
echo
echo "== rewrite"
"$BIN" rewrite "$MODEL" -o "$OUT" --hybrid-layers "$LAYERS"
echo
echo "== validate with onnx.checker and onnxruntime"
"$PY" Scripts/validate_rewrite.py "$MODEL" "$OUT" --reference Examples/qwen2-tiny/reference.npz
echo
echo "weight map: Examples/out/qwen2-tiny-slowfast.weight-map.json"
