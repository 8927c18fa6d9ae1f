#!/usr/bin/env python3
"""Builds tiny vision towers with projectors, exported as ONNX the way real video MLLMs are,
for the `slowfast tokens --into` tests (issue 14): the value the token ops read must be
proven by shape inference, whatever the exporter recorded.

Three towers from transformers with tiny random weights, each followed by a LLaVA-style
projector to the LLM width 48:

    siglip    SiglipVisionModel, 32x48 images, patch 4: an 8x12 grid, no CLS token;
              projector Linear-GELU-Linear: output [frames, 96, 48]
    clip      CLIPVisionModel, 32x32 images, patch 4: an 8x8 grid after a CLS token;
              projector over every token: output [frames, 65, 48]
    convnext  ConvNextModel, 64x64 images, stem 4, two stages: a channels-first 8x8 map;
              projector a 1x1 convolution: output [frames, 48, 8, 8]

each exported twice, into Tests/Fixtures/vision/<tower>-<exporter>/model.onnx (a level
below the LLM fixtures, which the decoder tests enumerate):

    torchscript  torch.onnx.export(dynamo=False), `frames` dynamic: no shapes recorded for
                 intermediate values, symbolic dims on the output
    dynamo       torch.onnx.export(dynamo=True), `frames` dynamic

with meta.json (what the tower is, its grid, the flags a user gives) and reference.npz
(`pixel_values` for 5 frames and `projector_out` from onnxruntime, checked against torch).
Needs torch + transformers (Scripts/requirements-fixtures.txt); no test needs them.

    make-vision-fixtures.py [--only siglip-torchscript,...]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

import slowfast_oracle as oracle

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "Tests/Fixtures/vision"
LLM_WIDTH = 48
TOWERS = {
    "siglip": dict(image=(32, 48), grid=(8, 12), leading=0, layout="nhwc"),
    "clip": dict(image=(32, 32), grid=(8, 8), leading=1, layout="nhwc"),
    "convnext": dict(image=(64, 64), grid=(8, 8), leading=0, layout="nchw"),
}


def randomize(module, seed):
    """slowfast_oracle.randomize with these towers' weights, as they always were: 0.2 n / max(1, sqrt(fan_in) / 4)."""
    oracle.randomize(module, seed, oracle.fan_in_weight(0.2, 4))


class Tower(torch.nn.Module):
    """vision tower -> projector, as a video MLLM's vision graph: frames in, features out."""

    def __init__(self, kind, seed):
        super().__init__()
        self.kind = kind
        torch.manual_seed(seed)
        if kind == "siglip":
            config = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=32, patch_size=4, vision_use_head=False)
            self.vision = transformers.SiglipVisionModel(config)
            # A non-square input: the position embedding is interpolated by the exporters'
            # trace only when asked; give it the full 8x12 table instead.
            embeddings = getattr(self.vision, "vision_model", self.vision).embeddings
            embeddings.position_embedding = torch.nn.Embedding(96, 32)
            embeddings.num_patches = 96
            embeddings.num_positions = 96
            embeddings.register_buffer("position_ids", torch.arange(96).expand((1, -1)), persistent=False)
            width = 32
        elif kind == "clip":
            config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=32, patch_size=4)
            self.vision = transformers.CLIPVisionModel(config)
            width = 32
        else:
            config = transformers.ConvNextConfig(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32],
                                                 depths=[1, 1], image_size=64)
            self.vision = transformers.ConvNextModel(config)
            width = 32
        self.vision.eval()
        if kind == "convnext":
            self.projector = torch.nn.Conv2d(width, LLM_WIDTH, kernel_size=1)
        else:
            self.projector = torch.nn.Sequential(torch.nn.Linear(width, LLM_WIDTH), torch.nn.GELU(),
                                                 torch.nn.Linear(LLM_WIDTH, LLM_WIDTH))
        randomize(self, seed)

    def forward(self, pixel_values):
        features = self.vision(pixel_values=pixel_values).last_hidden_state
        return self.projector(features)


def export(tower, path, dynamo, example):
    if dynamo:
        frames = torch.export.Dim("frames", min=1, max=1024)
        program = torch.onnx.export(tower, (example,), dynamo=True, input_names=["pixel_values"], output_names=["projector_out"],
                                    dynamic_shapes={"pixel_values": {0: frames}})
        program.save(str(path), external_data=False)
    else:
        torch.onnx.export(tower, (example,), str(path), dynamo=False, opset_version=17, input_names=["pixel_values"],
                          output_names=["projector_out"], dynamic_axes={"pixel_values": {0: "frames"}, "projector_out": {0: "frames"}})


def build(kind, exporter, seed):
    spec = TOWERS[kind]
    folder = FIXTURES / f"{kind}-{exporter}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tower = Tower(kind, seed).eval()
    height, width = spec["image"]
    example = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(seed))
    path = folder / "model.onnx"
    with torch.no_grad():
        export(tower, path, exporter == "dynamo", example)
        pixels = torch.randn(5, 3, height, width, generator=torch.Generator().manual_seed(seed + 1))
        expected = tower(pixels).numpy()
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path))
    got = session.run(["projector_out"], {"pixel_values": pixels.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > 1e-4:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff}")
    np.savez(folder / "reference.npz", pixel_values=pixels.numpy(), projector_out=got)
    model = onnx.load(str(path))
    output = model.graph.output[0].type.tensor_type.shape.dim
    meta = {"tower": kind, "exporter": exporter, "seed": seed, "torch": torch.__version__,
            "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "grid": list(spec["grid"]), "leading": spec["leading"], "layout": spec["layout"], "dim": LLM_WIDTH,
            "outputShapeRecorded": [d.dim_param or d.dim_value for d in output], "valueInfo": len(model.graph.value_info),
            "maxAbsDiffTorch": diff, "nodes": len(model.graph.node)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{folder.relative_to(REPO)}: {path.stat().st_size} bytes, output recorded as {meta['outputShapeRecorded']}, "
          f"{meta['valueInfo']} value_info, torch diff {diff:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated fixture names, e.g. clip-dynamo")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    for seed, kind in enumerate(TOWERS):
        for exporter in ("torchscript", "dynamo"):
            if wanted is None or f"{kind}-{exporter}" in wanted:
                build(kind, exporter, seed=20 + seed)


if __name__ == "__main__":
    main()
