#!/usr/bin/env bash
# The main job on the bundled example model: make layers hybrid, check the result with
# onnx.checker and onnxruntime (function preservation at default init), show the plan.
# Then the whole video pipeline on Examples/video-mllm: token ops into its vision graph,
# hybrid layers into its LLM, and frames -> vision -> tokens -> LLM -> greedy decoding in
# onnxruntime (Examples/video-mllm/pipeline.py; NumPy and onnxruntime only).
# Last, the same on Examples/video-qwen25vl: a Qwen2.5-VL tower (one export per video size),
# its merger rows read with --grid, and the language model's multimodal RoPE positions computed
# as transformers' get_rope_index does for the fast tokens' grid (pipeline.py; NumPy and onnxruntime).
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

echo
echo "== the whole video pipeline: Examples/video-mllm (SigLIP tower + projector, Qwen2 decoder with a KV cache)"
VIDEO=Examples/video-mllm
VOUT=Examples/out/video-mllm
mkdir -p "$VOUT/llm"
echo "-- slow and fast token ops into the vision graph, after the projector (one model for any frame count)"
"$BIN" tokens --into "$VIDEO/vision/model.onnx" --after projector_out -o "$VOUT/vision_tokens.onnx" \
    --preset s1t4 --min-fast-frames 4
echo "-- hybrid layers 0, 2, 4 into the LLM (slow_tokens becomes an input)"
"$BIN" rewrite "$VIDEO/llm/model.onnx" -o "$VOUT/llm/model.onnx" --hybrid-layers 0,2,4
for FRAMES in 8 24; do
    echo "-- run: $FRAMES frames -> vision -> tokens -> LLM, greedy decoding in onnxruntime (gates on: $VIDEO/reference.npz)"
    "$PY" "$VIDEO/pipeline.py" "$VOUT/vision_tokens.onnx" "$VOUT/llm/model.onnx" --frames "$FRAMES" \
        --gates "$VIDEO/reference.npz"
done
echo "-- the same 24 frames with the hybrid layers' gates at the tool's default init (0): the slow tokens change nothing"
"$PY" "$VIDEO/pipeline.py" "$VOUT/vision_tokens.onnx" "$VOUT/llm/model.onnx" --frames 24

echo
echo "== the whole video pipeline: Examples/video-qwen25vl (Qwen2.5-VL tower, Qwen2.5-VL decoder with multimodal RoPE and a KV cache)"
QVL=Examples/video-qwen25vl
QOUT=Examples/out/video-qwen25vl
mkdir -p "$QOUT/llm"
# TorchScript fixes a Qwen-VL tower to the video size it was traced at: one tower per size.
# --grid T,H,W: the merger's rows are T temporal patches (2 frames each) of the merged H x W grid.
for SIZE in 8x56x84:4,2,3 12x84x112:6,3,4; do
    NAME="${SIZE%%:*}"
    echo "-- slow and fast token ops into the $NAME tower, after the merger (rows of 2 frames: s1t4 = kernel 2 over rows)"
    "$BIN" tokens --into "$QVL/tower-$NAME/model.onnx" --after features --grid "${SIZE#*:}" -o "$QOUT/tower-$NAME.onnx" \
        --preset s1t4 --min-fast-frames 2 --slow-pool 1
done
echo "-- hybrid layers 0, 2, 4 into the language model (slow_tokens becomes an input)"
"$BIN" rewrite "$QVL/llm/model.onnx" -o "$QOUT/llm/model.onnx" --hybrid-layers 0,2,4
for NAME in 8x56x84 12x84x112; do
    echo "-- run: $NAME video -> tower -> tokens -> get_rope_index positions -> LLM, greedy decoding (gates on: $QVL/reference.npz)"
    "$PY" "$QVL/pipeline.py" "$QOUT/tower-$NAME.onnx" "$QOUT/llm/model.onnx" --size "$NAME" --gates "$QVL/reference.npz"
done
echo "-- the 12x84x112 video with the gates at the tool's default init (0): the same tokens as the unmodified LLM on the fast tokens alone"
"$PY" "$QVL/pipeline.py" "$QOUT/tower-12x84x112.onnx" "$QOUT/llm/model.onnx" --size 12x84x112 --original "$QVL/llm/model.onnx"
