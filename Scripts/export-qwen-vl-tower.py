#!/usr/bin/env python3
"""Exports a tiny random Qwen-VL vision tower to ONNX at one fixed video grid, with its PyTorch
outputs, for the `slowfast tokens --into TOWER --after features --grid T,H,W` tests (issue 23):
the tool is to read the merger's rows as a (t, h', w') raster grid, which this script proves
they are, on the tower and on its export.

Three families from transformers, each with tiny random weights (patch 14, temporal patch 2,
spatial merge 2, width 32, 2 heads, output width 48, the LM width):

    qwen2vl   Qwen2VisionTransformerPretrainedModel (Qwen2VLVisionConfig), depth 2
    qwen25vl  Qwen2_5_VisionTransformerPretrainedModel (Qwen2_5_VLVisionConfig), depth 3:
              window attention (window_size 56: windows of 2x2 merged blocks, so 2 windows a
              temporal patch at the fixture grids), block 2 full attention; the tower permutes
              its rows into window order and restores raster order after the merger
    qwen3vl   Qwen3VLVisionModel (Qwen3VLVisionConfig), depth 3, learned 4x4 position table
              resampled to the grid, deepstack_visual_indexes [0, 1]: two more mergers' outputs
              (real Qwen3-VL uses patch 16; this tower uses 14, as the other two)

The video processor cuts F frames of HxW pixels into T = F/2 temporal patches of h x w = H/14 x
W/14 patches, ordered so that every 4 consecutive rows are one 2x2 merge block
(video_to_patches, checked against the processors' own patchify); the tower's merger returns
one row per block, [T*(h/2)*(w/2), 48], in (t, h', w') raster order.

The graph is exported by TorchScript (torch.onnx.export(dynamo=False), opset 17) at the given
grid: `pixel_values` [T*h*w, 3*2*14*14] in, `features` [N, 48] (the merger output) out, and for
Qwen3-VL `deepstack_0`, `deepstack_1` [N, 48]. The trace turns every grid-derived value into a
constant (rotary positions, window permutation, attention segments, Qwen3-VL's resampling
weights), so the model holds for that grid only and `grid_thw` [1, 3] stays an input only where
a traced op still reads it (meta.json `gridThwInput`: Qwen3-VL's position-table resampling
does; Qwen2-VL's and Qwen2.5-VL's exports have `pixel_values` alone). torch.onnx.export(dynamo=True)
cannot export these towers: torch.export stops at the grid read as Python values
(GuardOnDataDependentSymNode at `lengths.tolist()`, the attention segments, in Qwen2-VL and
Qwen3-VL; in get_vision_window_index in Qwen2.5-VL).

Writes FOLDER/model.onnx (onnx.checker full_check), FOLDER/meta.json (family, grid, merged grid,
inputs, outputs, onnxruntime's largest difference from PyTorch, the raster-order proofs) and
FOLDER/reference.npz (compressed: `pixel_values`, `grid_thw`, `features`, `deepstack_<i>` from
PyTorch on a random uint8 video rescaled and normalized as the processor does; onnxruntime must
agree within 1e-5). Deterministic: the same arguments write the same bytes. Needs torch +
transformers (Scripts/requirements-fixtures.txt); no test needs them.

    export-qwen-vl-tower.py --family qwen2vl|qwen25vl|qwen3vl --frames F --height H --width W
                            -o FOLDER [--seed S]
"""
import argparse
import ast
import copy
import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from transformers.vision_utils import get_vision_window_index

import slowfast_oracle as oracle

TEMPORAL_PATCH = 2
PATCH = 14
MERGE = 2
WIDTH = 32
LLM_WIDTH = 48
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # the processors' image_mean / image_std
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COMMON = dict(in_channels=3, patch_size=PATCH, temporal_patch_size=TEMPORAL_PATCH, spatial_merge_size=MERGE, num_heads=2)
FAMILIES = {
    "qwen2vl": dict(module="qwen2_vl", tower="Qwen2VisionTransformerPretrainedModel", config="Qwen2VLVisionConfig", seed=30,
                    processor=("qwen2_vl.video_processing_qwen2_vl", "Qwen2VLVideoProcessor"),
                    kwargs=dict(depth=2, embed_dim=WIDTH, hidden_size=LLM_WIDTH, mlp_ratio=2, **COMMON)),
    "qwen25vl": dict(module="qwen2_5_vl", tower="Qwen2_5_VisionTransformerPretrainedModel", config="Qwen2_5_VLVisionConfig", seed=31,
                     processor=("qwen2_vl.video_processing_qwen2_vl", "Qwen2VLVideoProcessor"),
                     kwargs=dict(depth=3, hidden_size=WIDTH, intermediate_size=64, out_hidden_size=LLM_WIDTH,
                                 window_size=56, fullatt_block_indexes=[2], **COMMON)),
    "qwen3vl": dict(module="qwen3_vl", tower="Qwen3VLVisionModel", config="Qwen3VLVisionConfig", seed=32,
                    processor=("qwen3_vl.video_processing_qwen3_vl", "Qwen3VLVideoProcessor"),
                    kwargs=dict(depth=3, hidden_size=WIDTH, intermediate_size=64, out_hidden_size=LLM_WIDTH,
                                num_position_embeddings=16, deepstack_visual_indexes=[0, 1], **COMMON)),
}


def video_to_patches(video, temporal_patch=TEMPORAL_PATCH, patch=PATCH, merge=MERGE):
    """[frames, 3, H, W] float -> (pixel_values [T*h*w, 3*temporal_patch*patch*patch], grid_thw [[T, h, w]]),
    as Qwen2-VL's video processor lays them out (with do_resize, do_rescale, do_normalize off):
    temporal patches in time order; inside one, 2x2 merge blocks in raster order, the 4 patches of
    a block in raster order; each row channel-major, then frame, then pixel row and column."""
    frames, channels, height, width = video.shape
    if frames % temporal_patch or height % (patch * merge) or width % (patch * merge):
        raise ValueError(f"video {tuple(video.shape)}: frames must divide by {temporal_patch}, "
                         f"height and width by {patch * merge}")
    t, h, w = frames // temporal_patch, height // patch, width // patch
    x = video.reshape(t, temporal_patch, channels, h // merge, merge, patch, w // merge, merge, patch)
    # axes: t, tp, c, bh, mh, ph, bw, mw, pw -> t, bh, bw, mh, mw | c, tp, ph, pw
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, channels * temporal_patch * patch * patch), torch.tensor([[t, h, w]], dtype=torch.int64)


def processor_patchify(module, cls):
    """The installed processor's own `patchify`. The processor classes need torchvision and PIL to
    be constructed; where they are missing, the method is compiled alone from the installed
    transformers source (it uses torch only)."""
    source = Path(importlib.util.find_spec(f"transformers.models.{module}").origin)
    tree = ast.parse(source.read_text())
    klass = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls)
    method = next(node for node in klass.body if isinstance(node, ast.FunctionDef) and node.name == "patchify")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[method], type_ignores=[]), str(source), "exec"), namespace)
    return namespace["patchify"]


def check_against_processor(family, video):
    """video_to_patches == the family's video processor (resize, rescale and normalize off); and a
    2-frame video of one image == Qwen2VLImageProcessor on that image (it repeats the image)."""
    module, cls = FAMILIES[family]["processor"]
    ours, grid = video_to_patches(video)
    how = None
    try:
        processor = getattr(transformers, cls)(do_resize=False, do_rescale=False, do_normalize=False,
                                               patch_size=PATCH, do_sample_frames=False)
        got = processor(videos=[video], return_tensors="pt")
        theirs, their_grid = got["pixel_values_videos"], got["video_grid_thw"]
        how = f"{cls}(do_resize=False, do_rescale=False, do_normalize=False)"
    except ImportError:
        patchify = processor_patchify(module, cls)
        flat, t, h, w = patchify(None, video[None], patch_size=PATCH, merge_size=MERGE,
                                 temporal_patch_size=TEMPORAL_PATCH)
        theirs, their_grid = flat[0], torch.tensor([[t, h, w]])
        how = f"{cls}.patchify compiled from transformers/models/{module.replace('.', '/')}.py " \
              "(the processor needs torchvision and PIL, not installed)"
    if not torch.equal(ours, theirs) or not torch.equal(grid, their_grid):
        raise AssertionError(f"video_to_patches differs from {how}")
    image = video[0]
    image_patchify = processor_patchify("qwen2_vl.image_processing_qwen2_vl", "Qwen2VLImageProcessor")
    flat, h, w = image_patchify(None, image[None], patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL_PATCH)
    still, _ = video_to_patches(torch.stack([image] * TEMPORAL_PATCH))
    if not torch.equal(still, flat[0]):
        raise AssertionError("video_to_patches of a still video differs from Qwen2VLImageProcessor.patchify")
    return {"videoProcessor": how, "imageProcessor": "Qwen2VLImageProcessor.patchify on frame 0 == "
            "video_to_patches of that frame twice", "equal": True}


def randomize(module, seed):
    """slowfast_oracle.randomize with this tower's choices, as they always were: weights 0.05 n,
    and the merger's ln_q a norm like the others."""
    oracle.randomize(module, seed, oracle.scaled(0.05), is_norm=lambda name: ("norm" in name or "ln_q" in name) and name.endswith("weight"))


class TowerGraph(torch.nn.Module):
    """The vision tower as the exported graph: pixel_values, grid_thw -> features (, deepstack_i)."""

    def __init__(self, family, seed):
        super().__init__()
        spec = FAMILIES[family]
        package = f"transformers.models.{spec['module']}"
        config = getattr(importlib.import_module(f"{package}.configuration_{spec['module']}"), spec["config"])(**spec["kwargs"])
        config._attn_implementation = "eager"
        torch.manual_seed(seed)
        self.tower = getattr(importlib.import_module(f"{package}.modeling_{spec['module']}"), spec["tower"])(config).eval()
        self.deepstack = len(spec["kwargs"].get("deepstack_visual_indexes", []))
        randomize(self, seed)

    def outputs(self):
        return ["features"] + [f"deepstack_{i}" for i in range(self.deepstack)]

    def forward(self, pixel_values, grid_thw):
        out = self.tower(pixel_values, grid_thw=grid_thw)
        if self.deepstack:
            return (out.pooler_output, *out.deepstack_features)
        return out.pooler_output


def run(graph, pixel_values, grid_thw):
    with torch.no_grad():
        out = graph(pixel_values, grid_thw)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def random_video(frames, height, width, seed):
    """uint8 frames, rescaled by 1/255 and normalized with the CLIP mean and std, as the processor does.
    Drawn at half the resolution and upscaled 2x (nearest), so that reference.npz compresses."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, 3, height // 2, width // 2), generator=generator, dtype=torch.uint8)
    video = video.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (video.float() / 255 - mean) / std


def block_index(grid, t, i, j):
    _, h, w = grid
    return (t * (h // MERGE) + i) * (w // MERGE) + j


def perturb(video, t, i, j, amount):
    side = PATCH * MERGE
    video = video.clone()
    video[t * TEMPORAL_PATCH:(t + 1) * TEMPORAL_PATCH, :, i * side:(i + 1) * side, j * side:(j + 1) * side] += amount
    return video


def raster_proofs(graph, session, video, grid, names):
    """That row t*(h/2)*(w/2) + i*(w/2) + j of every output is merge block (t, i, j) of the video:

    wiring   a twin of the tower with every attention output projection zeroed (no row reads
             another; the window permutation, rotary, position table and merger are untouched):
             changing the pixels of block (t, i, j) changes that row of every output and leaves
             every other row bit for bit; for each block
    time     the real tower on one temporal patch alone (grid [1, h, w]) gives rows
             t*(h/2)*(w/2) ... of its run on the whole video (attention never crosses temporal patches)
    place    the real tower and its onnxruntime export: changing block (t, i, j) changes that
             row more than any other, and no row of another temporal patch; for each block
    """
    T, h, w = grid
    per_t = (h // MERGE) * (w // MERGE)
    base_pixels, grid_thw = video_to_patches(video)
    twin = copy.deepcopy(graph)
    with torch.no_grad():
        for block in twin.tower.blocks:
            block.attn.proj.weight.zero_()
    twin_base = run(twin, base_pixels, grid_thw)
    real_base = run(graph, base_pixels, grid_thw)
    feeds = {i.name: i for i in session.get_inputs()}

    def ort_run(pixels):
        feed = {"pixel_values": pixels.numpy()}
        if "grid_thw" in feeds:
            feed["grid_thw"] = grid_thw.numpy()
        return session.run(names, feed)

    ort_base = ort_run(base_pixels)
    worst_margin, worst_outside = np.inf, 0.0
    for t in range(T):
        for i in range(h // MERGE):
            for j in range(w // MERGE):
                expected = block_index(grid, t, i, j)
                pixels, _ = video_to_patches(perturb(video, t, i, j, 0.5))
                for name, before, after in zip(names, twin_base, run(twin, pixels, grid_thw)):
                    changed = np.flatnonzero((before != after).any(axis=1)).tolist()
                    if changed != [expected]:
                        raise AssertionError(f"wiring: block {(t, i, j)} changed {name} rows {changed}, not [{expected}]")
                for label, base, after in (("torch", real_base, run(graph, pixels, grid_thw)),
                                           ("onnxruntime", ort_base, ort_run(pixels))):
                    for name, before, now in zip(names, base, after):
                        change = np.abs(now - before).max(axis=1)
                        if int(change.argmax()) != expected:
                            raise AssertionError(f"place ({label}): block {(t, i, j)} moved {name} row "
                                                 f"{int(change.argmax())} most, not {expected}")
                        others = np.delete(change, expected)
                        inside = others[t * per_t:(t + 1) * per_t - 1]
                        outside = np.concatenate([others[:t * per_t], others[(t + 1) * per_t - 1:]])
                        worst_outside = max(worst_outside, float(outside.max(initial=0.0)))
                        if outside.size and outside.max() > 1e-5:
                            raise AssertionError(f"place ({label}): block {(t, i, j)} moved {name} rows of "
                                                 f"another temporal patch by {outside.max()}")
                        margin = change[expected] / max(float(inside.max(initial=0.0)), 1e-30)
                        worst_margin = min(worst_margin, float(margin))
    worst_time = 0.0
    for t in range(T):
        alone = run(graph, base_pixels[t * h * w:(t + 1) * h * w], torch.tensor([[1, h, w]]))
        for name, whole, part in zip(names, real_base, alone):
            diff = float(np.abs(whole[t * per_t:(t + 1) * per_t] - part).max())
            worst_time = max(worst_time, diff)
            if diff > 1e-5:
                raise AssertionError(f"time: temporal patch {t} alone differs from rows of the whole in {name} by {diff}")
    return {"wiring": "every block changes exactly its row of every output (attention-free twin)",
            "timeMaxAbsDiff": worst_time,
            "placeMinRatio": worst_margin,
            "placeMaxChangeOtherTemporalPatch": worst_outside}


def export(graph, path, pixel_values, grid_thw, names):
    torch.onnx.export(graph, (pixel_values, grid_thw), str(path), dynamo=False, opset_version=17,
                      input_names=["pixel_values", "grid_thw"], output_names=names)


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def build(family, frames, height, width, folder, seed):
    if frames % TEMPORAL_PATCH or height % (PATCH * MERGE) or width % (PATCH * MERGE):
        raise SystemExit(f"--frames must be even and --height, --width multiples of {PATCH * MERGE}")
    torch.set_num_threads(1)
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    graph = TowerGraph(family, seed).eval()
    names = graph.outputs()
    video = random_video(frames, height, width, seed + 1)
    processor = check_against_processor(family, video)
    pixel_values, grid_thw = video_to_patches(video)
    T, h, w = grid_thw[0].tolist()
    path = folder / "model.onnx"
    with torch.no_grad():
        export(graph, path, pixel_values, grid_thw, names)
    expected = run(graph, pixel_values, grid_thw)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    inputs = {i.name: dims(i) for i in model.graph.input}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"pixel_values": pixel_values.numpy()}
    if "grid_thw" in inputs:
        feed["grid_thw"] = grid_thw.numpy()
    got = session.run(names, feed)
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    if diff > 1e-5:
        raise AssertionError(f"{path}: onnxruntime differs from torch by {diff}")
    n = T * (h // MERGE) * (w // MERGE)
    for name, value in zip(names, expected):
        if value.shape != (n, LLM_WIDTH):
            raise AssertionError(f"{name}: {value.shape}, not {(n, LLM_WIDTH)}")
    proofs = raster_proofs(graph, session, video, (T, h, w), names)
    if family == "qwen25vl":
        window_index, cu_window = get_vision_window_index(grid_thw, MERGE, FAMILIES[family]["kwargs"]["window_size"], PATCH)
        # The merge blocks in the order the tower holds them, and where its windows start (in rows of patches).
        # A window 2 blocks wide covers a row 2 blocks wide whole: at a merged width of 2 window order is raster order.
        proofs["windowOrder"] = window_index.tolist()
        proofs["windowRows"] = cu_window.tolist()
        proofs["windowOrderIsRaster"] = proofs["windowOrder"] == sorted(proofs["windowOrder"])
        if len(cu_window) - 1 <= T:
            raise AssertionError(f"window attention: one window a temporal patch at grid {[T, h, w]}")
    arrays = {"pixel_values": pixel_values.numpy(), "grid_thw": grid_thw.numpy()}
    arrays.update(zip(names, expected))
    np.savez_compressed(folder / "reference.npz", **arrays)
    spec = FAMILIES[family]
    meta = {"family": family, "tower": spec["tower"], "config": spec["config"],
            "configArgs": {k: v for k, v in spec["kwargs"].items()}, "seed": seed,
            "frames": frames, "height": height, "width": width, "grid_thw": [T, h, w],
            "mergedGrid": [T, h // MERGE, w // MERGE], "rows": n, "mergeSize": MERGE, "temporalPatchSize": TEMPORAL_PATCH,
            "patchSize": PATCH, "dim": LLM_WIDTH, "inputs": inputs,
            "outputs": {o.name: dims(o) for o in model.graph.output}, "gridThwInput": "grid_thw" in inputs,
            "exporter": "torchscript", "opset": 17, "attention": "eager", "maxAbsDiffTorch": diff,
            "rasterOrder": proofs, "processorCheck": processor, "nodes": len(model.graph.node),
            "torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{folder}: {family} grid {[T, h, w]} -> {n} rows; inputs {inputs}; "
          f"{path.stat().st_size} + {(folder / 'reference.npz').stat().st_size} bytes; torch diff {diff:.1e}; "
          f"place ratio {proofs['placeMinRatio']:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--frames", type=int, required=True, help="even")
    parser.add_argument("--height", type=int, required=True, help="pixels, a multiple of 28")
    parser.add_argument("--width", type=int, required=True, help="pixels, a multiple of 28")
    parser.add_argument("-o", "--output", required=True, help="folder (replaced)")
    parser.add_argument("--seed", type=int, help="weights seed (the video's is seed + 1); default per family")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else FAMILIES[args.family]["seed"]
    build(args.family, args.frames, args.height, args.width, args.output, seed)


if __name__ == "__main__":
    main()
