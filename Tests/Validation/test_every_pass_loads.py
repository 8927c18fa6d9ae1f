"""Every pass on every decoder fixture, and SReLU on every onnx backend model that onnxruntime
loads: the tool either writes a model onnxruntime loads and runs, or refuses with one line and
writes nothing (issue 11, item 6). The type and shape checks of AddedNodeCheck run before any
write; this test is the runtime's verdict on what they let through."""
import numpy as np
import onnx
import pytest

from conftest import backend_models, ort_session, run, slow_inputs_off
from fixtures import FIXTURES, NAMES, config, float_type, graph_inputs

PASSES = {
    "hybrid-in-place": ["--hybrid-layers", "0,2,4"],
    "hybrid-insert": ["--hybrid-layers", "0,2,4", "--mode", "insert"],
    "srelu": ["--activation", "srelu", "--activation-targets", "silu"],
    "hybrid-and-srelu": ["--hybrid-layers", "1,3", "--activation", "srelu", "--activation-targets", "silu"],
}
# The refusals the tool is known to make, by (fixture kind, pass): insert mode needs the
# residual stream as a value, which genai exports sum inside SkipSimplifiedLayerNormalization.
# Gemma's MLP is GELU (tanh), not SiLU: `--activation-targets silu` finds no site there.
# Phi-3 by TorchScript chunks its packed gate_up_proj with Slice ends computed at run time, so SReLU cannot
# tell the gate's channel count from the graph and asks for --srelu-channels.
REFUSED = {("genai", "hybrid-insert"): "use --mode in-place",
           ("gemma", "srelu"): "0 sites for --activation-targets silu",
           ("gemma", "hybrid-and-srelu"): "0 sites for --activation-targets silu",
           ("phi3-torchscript", "srelu"): "give --srelu-channel-axis and --srelu-channels",
           ("phi3-torchscript", "hybrid-and-srelu"): "give --srelu-channel-axis and --srelu-channels"}


def refusal(folder, name):
    return next((why for (kind, p), why in REFUSED.items() if kind in folder.name and p == name), None)


def assert_refused_cleanly(result, out, expected):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert expected in lines[0], lines[0]
    assert not out.exists() and not list(out.parent.glob("*.onnx*"))


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_pass_on_every_fixture_loads_in_onnxruntime(folder, name, tmp_path):
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", folder / "model.onnx", "-o", out, *PASSES[name], "--weights", "copy")
    expected = refusal(folder, name)
    if expected is not None:
        assert_refused_cleanly(result, out, expected)
        return
    assert result.returncode == 0, result.stderr
    session = ort_session(out)
    feeds = graph_inputs(folder)
    if name.startswith("hybrid"):
        rng = np.random.default_rng(3)
        feeds["slow_tokens"] = rng.standard_normal((1, 6, config(folder)["hidden_size"])).astype(float_type(folder))
        feeds.update(slow_inputs_off(1, 6, float_type(folder)))
    logits = session.run(["logits"], feeds)[0]
    assert logits.shape[-1] == config(folder)["vocab_size"]
    assert np.isfinite(logits.astype(np.float64)).all()


def backend_with_activations():
    """Backend models with an op SReLU replaces, that onnxruntime loads as they are."""
    found = []
    for path in backend_models():
        model = onnx.load(str(path), load_external_data=False)
        if any(n.op_type in ("Relu", "LeakyRelu", "PRelu", "Gelu") for n in model.graph.node):
            found.append(path)
    return found


BACKEND = backend_with_activations()


@pytest.mark.parametrize("path", BACKEND, ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in BACKEND])
def test_srelu_on_backend_models_loads_in_onnxruntime(path, tmp_path):
    try:
        ort_session(path)
    except Exception:
        pytest.skip("onnxruntime does not load the input either")
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    result = run("rewrite", path, "-o", out, "--activation", "srelu", "--activation-targets", "relu,leaky_relu,prelu,gelu")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert not out.exists()
        return
    ort_session(out)
