"""The whole slow-fast pipeline of Examples/video-qwen25vl, built by the tool alone and run in
onnxruntime, against the PyTorch run of the same pipeline recorded when the example was made
(Scripts/make-video-example-qwen25vl.py): video -> Qwen2.5-VL vision tower (TorchScript, one
export per video size) -> slow/fast token ops over the merger's flat rows (`slowfast tokens
--into TOWER --after features --grid T,H,W`) -> multimodal RoPE positions for the fast grid as
transformers' get_rope_index gives them -> Qwen2.5-VL decoder with hybrid layers 0, 2, 4
(`slowfast rewrite`, TorchScript export with its KV cache and inputs_embeds), greedy decoding;
8 frames of 56x84 pixels and 12 frames of 84x112, gates on, and at the default init (gates 0)
against the unmodified export on the fast tokens alone."""
import importlib.util
import json

import numpy as np
import onnx
import pytest

from conftest import REPO, run

EXAMPLE = REPO / "Examples/video-qwen25vl"
# Loaded under its own name: Examples/video-mllm's pipeline.py is imported as `pipeline` by
# test_video_pipeline.py, and one module name would make the second test run the first's code.
_spec = importlib.util.spec_from_file_location("video_qwen25vl_pipeline", EXAMPLE / "pipeline.py")
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)

REFERENCE = dict(np.load(EXAMPLE / "reference.npz"))
# Video size -> the merged grid the tower's merger rows hold (T temporal patches, H x W).
SIZES = {"8x56x84": "4,2,3", "12x84x112": "6,3,4"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("video-qwen25vl")
    (out / "llm").mkdir()
    towers = {}
    for size, grid in SIZES.items():
        towers[size] = out / f"tower-{size}.onnx"
        result = run("tokens", "--into", EXAMPLE / f"tower-{size}/model.onnx", "--after", "features", "--grid", grid,
                     "-o", towers[size], "--preset", "s1t4", "--min-fast-frames", 2, "--slow-pool", 1)
        assert result.returncode == 0, result.stderr
    llm = out / "llm/model.onnx"
    result = run("rewrite", EXAMPLE / "llm/model.onnx", "-o", llm, "--hybrid-layers", "0,2,4")
    assert result.returncode == 0, result.stderr
    return towers, llm


def test_models_pass_the_checks(built):
    towers, llm = built
    for tower in towers.values():
        onnx.checker.check_model(str(tower), full_check=True)
        outputs = [o.name for o in onnx.load(str(tower)).graph.output]
        assert {"features", "slow_tokens", "fast_tokens", "fast_grid"} <= set(outputs)
    onnx.checker.check_model(str(llm), full_check=True)
    names = [i.name for i in onnx.load(str(llm)).graph.input]
    assert {"slow_tokens", "inputs_embeds", "position_ids"} <= set(names)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_positions_are_get_rope_index(size):
    """pipeline.rope_index (NumPy) gives what transformers' get_rope_index gave for the fast grid."""
    rule = json.loads((EXAMPLE / "meta.json").read_text())["positions"]
    positions, delta = pipeline.rope_index(len(pipeline.PREFIX), REFERENCE[f"fast_grid_{size}"], len(pipeline.QUESTION),
                                           rule["tokensPerSecond"] * rule["secondsPerFastRow"])
    assert np.array_equal(positions, REFERENCE[f"position_ids_{size}"])
    assert delta == int(REFERENCE[f"rope_delta_{size}"])


@pytest.mark.parametrize("size", sorted(SIZES))
def test_pipeline_equals_pytorch(built, size):
    towers, llm = built
    result = pipeline.run(towers[size], llm, size, new_tokens=6, gates=REFERENCE, reference=REFERENCE)
    slow, fast = REFERENCE[f"slow_tokens_{size}"], REFERENCE[f"fast_tokens_{size}"]
    assert result["slow_tokens"].shape == slow.shape and result["fast_tokens"].shape == fast.shape
    assert np.abs(result["slow_tokens"] - slow).max() <= 1e-5
    assert np.abs(result["fast_tokens"] - fast).max() <= 1e-5
    assert result["fast_grid"].tolist() == REFERENCE[f"fast_grid_{size}"].tolist()
    assert np.array_equal(result["position_ids"], REFERENCE[f"position_ids_{size}"])
    assert result["tokens"] == REFERENCE[f"tokens_{size}"].tolist()
    assert np.abs(result["logits"] - REFERENCE[f"logits_{size}"]).max() <= 1e-4
    # The slow tokens matter once the gates are on: at the default init (gates 0) the logits
    # are far from these.
    default = pipeline.run(towers[size], llm, size, new_tokens=1, reference=REFERENCE)
    assert np.abs(default["logits"][0] - REFERENCE[f"logits_{size}"][0]).max() > 0.1


@pytest.mark.parametrize("size", sorted(SIZES))
def test_default_init_is_the_unmodified_llm(built, size):
    """Gates at the tool's default init: the rewritten model with the slow tokens fed decodes
    what the unmodified export decodes on the fast tokens alone, and what PyTorch did."""
    towers, llm = built
    result = pipeline.run(towers[size], llm, size, new_tokens=6, original=EXAMPLE / "llm/model.onnx", reference=REFERENCE)
    assert result["tokens"] == result["original_tokens"] == REFERENCE[f"tokens_plain_{size}"].tolist()
    assert np.abs(result["logits"] - result["original_logits"]).max() <= 1e-5
    assert np.abs(result["logits"] - REFERENCE[f"logits_plain_{size}"]).max() <= 1e-4
