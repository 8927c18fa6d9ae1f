#!/usr/bin/env bash
# Regenerates the C code for the ONNX protobuf schema with protoc-c.
#
#   Scripts/generate-proto.sh          write Sources/ONNXProto/{onnx.pb-c.c,include/onnx.pb-c.h}
#   Scripts/generate-proto.sh --check  regenerate into a temp dir and compare with the
#                                      committed files; exit 1 if they differ
#
# Input: Schemas/onnx.proto. Needs protoc-c (Debian: protobuf-c-compiler).
# The output is deterministic: protoc-c is run from the schema's folder so
# the only path it records is "onnx.proto", and it writes no timestamps.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schema_dir="$root/Schemas"
out_dir="$root/Sources/ONNXProto"

mode=write
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "generate-proto.sh: unknown argument '$1' (expected --check or nothing)" >&2; exit 2 ;;
esac

if ! command -v protoc-c >/dev/null 2>&1; then
    echo "generate-proto.sh: protoc-c not found; install it with: sudo apt-get install protobuf-c-compiler" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Generate into a scratch folder, then lay the files out the way SwiftPM wants
# them: public header in include/, source beside it including "include/...".
(cd "$schema_dir" && protoc-c --c_out="$tmp" onnx.proto)
mkdir -p "$tmp/layout/include"
mv "$tmp/onnx.pb-c.h" "$tmp/layout/include/onnx.pb-c.h"
sed 's|^#include "onnx.pb-c.h"$|#include "include/onnx.pb-c.h"|' "$tmp/onnx.pb-c.c" > "$tmp/layout/onnx.pb-c.c"
if ! grep -q '^#include "include/onnx.pb-c.h"$' "$tmp/layout/onnx.pb-c.c"; then
    echo "generate-proto.sh: protoc-c output has an unexpected #include line; update this script" >&2
    exit 1
fi

files=(onnx.pb-c.c include/onnx.pb-c.h)

if [ "$mode" = check ]; then
    stale=0
    for f in "${files[@]}"; do
        if [ ! -f "$out_dir/$f" ]; then
            echo "generate-proto.sh: missing Sources/ONNXProto/$f" >&2
            stale=1
        elif ! diff -u "$out_dir/$f" "$tmp/layout/$f" > "$tmp/diff" 2>&1; then
            echo "generate-proto.sh: Sources/ONNXProto/$f differs from a fresh protoc-c run ($(protoc-c --version | head -n1)):" >&2
            head -n 40 "$tmp/diff" >&2
            stale=1
        fi
    done
    if [ "$stale" -ne 0 ]; then
        echo "generate-proto.sh: generated code is stale; run Scripts/generate-proto.sh and commit the result" >&2
        exit 1
    fi
    echo "generate-proto.sh: Sources/ONNXProto matches Schemas/onnx.proto"
    exit 0
fi

mkdir -p "$out_dir/include"
for f in "${files[@]}"; do
    cp "$tmp/layout/$f" "$out_dir/$f.tmp"
    mv "$out_dir/$f.tmp" "$out_dir/$f"
done
echo "generate-proto.sh: wrote Sources/ONNXProto/onnx.pb-c.c and Sources/ONNXProto/include/onnx.pb-c.h"
