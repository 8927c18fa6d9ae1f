"""The whole video pipeline of Examples/video-mllm, built by the tool alone and run in
onnxruntime, against the PyTorch run of the same pipeline recorded when the example was made
(Scripts/make-video-example.py): frames -> SigLIP tower + projector -> slow/fast token ops
(`slowfast tokens --into`) -> Qwen2 decoder with hybrid layers 0, 2, 4 (`slowfast rewrite`,
onnxruntime-genai export with its KV cache), gates on, greedy decoding, for 8 frames (adaptive
fallback) and 24 frames (pooled by 4)."""
import sys

import numpy as np
import onnx
import pytest

from conftest import REPO, checker_passes, run

EXAMPLE = REPO / "Examples/video-mllm"
sys.path.insert(0, str(EXAMPLE))
import pipeline  # noqa: E402

REFERENCE = dict(np.load(EXAMPLE / "reference.npz"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("video-mllm")
    (out / "llm").mkdir()
    vision = out / "vision_tokens.onnx"
    result = run("tokens", "--into", EXAMPLE / "vision/model.onnx", "--after", "projector_out", "-o", vision,
                 "--preset", "s1t4", "--min-fast-frames", 4)
    assert result.returncode == 0, result.stderr
    llm = out / "llm/model.onnx"
    result = run("rewrite", EXAMPLE / "llm/model.onnx", "-o", llm, "--hybrid-layers", "0,2,4")
    assert result.returncode == 0, result.stderr
    return vision, llm


def test_models_pass_the_checks(built):
    vision, llm = built
    onnx.checker.check_model(str(vision), full_check=True)
    # The genai export holds onnxruntime-internal ops the checker rejects; the verdict must not change.
    assert checker_passes(llm) == checker_passes(EXAMPLE / "llm/model.onnx")
    names = [i.name for i in onnx.load(str(llm), load_external_data=False).graph.input]
    assert "slow_tokens" in names and "inputs_embeds" in names


@pytest.mark.parametrize("frames", [8, 24])
def test_pipeline_equals_pytorch(built, frames):
    vision, llm = built
    result = pipeline.run(vision, llm, frames, new_tokens=6, gates=REFERENCE)
    slow, fast = REFERENCE[f"slow_tokens_{frames}"], REFERENCE[f"fast_tokens_{frames}"]
    assert result["slow_tokens"].shape == slow.shape and result["fast_tokens"].shape == fast.shape
    assert np.abs(result["slow_tokens"] - slow).max() <= 1e-5
    assert np.abs(result["fast_tokens"] - fast).max() <= 1e-5
    assert result["tokens"] == REFERENCE[f"tokens_{frames}"].tolist()
    assert np.abs(result["logits"] - REFERENCE[f"logits_{frames}"]).max() <= 1e-4
    # The slow tokens matter once the gates are on: at the default init (gates 0) the logits
    # are far from these.
    default = pipeline.run(vision, llm, frames, new_tokens=1)
    assert np.abs(default["logits"][0] - REFERENCE[f"logits_{frames}"][0]).max() > 0.1
