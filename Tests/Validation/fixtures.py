"""The committed real exports (Scripts/make-fixtures.py) and helpers to run them."""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from conftest import REPO, ort_session

FIXTURES = sorted(p.parent for p in (REPO / "Tests/Fixtures").glob("*/model.onnx"))
NAMES = [p.name for p in FIXTURES]


def config(folder):
    return json.loads((folder / "config.json").read_text())


def pytorch_names(folder):
    """The PyTorch names of the fixture's modules that tests look up: LLaMA's, or the model's
    own where its modules are named otherwise (InternLM2: attention_norm, attention.wo,
    tok_embeddings, output), as `weights export` keeps them."""
    if config(folder)["model_type"] == "internlm2":
        return {"input_norm": "attention_norm", "o_proj": "attention.wo", "qkv": "attention.wqkv",
                "embed": "model.tok_embeddings.weight", "lm_head": "output.weight"}
    return {"input_norm": "input_layernorm", "o_proj": "self_attn.o_proj", "qkv": "self_attn.qkv_proj",
            "embed": "model.embed_tokens.weight", "lm_head": "lm_head.weight"}


def srelu_channel_flags(folder):
    """What a user adds for SReLU where the graph does not tell the activation's channel count:
    Phi-3 by TorchScript chunks its packed gate_up_proj with Slice ends computed at run time,
    so the gate's width (the MLP width) is given by hand. Empty elsewhere."""
    if folder.name.startswith("phi3-torchscript"):
        return ["--srelu-channel-axis=-1", "--srelu-channels", str(config(folder)["intermediate_size"])]
    return []


def reference(folder):
    return dict(np.load(folder / "reference.npz"))


# Per worker (pytest-xdist runs each in its own process): what every test of a fixture reads
# of its unmodified export, computed once.
_ORIGINAL_OUTPUTS = {}


def original_outputs(folder):
    """The export's own outputs on the reference feeds, by name, in onnxruntime: logits and,
    where the export has a KV cache, present.*. Callers must not modify the arrays."""
    if folder not in _ORIGINAL_OUTPUTS:
        session = ort_session(folder / "model.onnx")
        names = [o.name for o in session.get_outputs()]
        _ORIGINAL_OUTPUTS[folder] = dict(zip(names, session.run(names, graph_inputs(folder))))
        for value in _ORIGINAL_OUTPUTS[folder].values():
            value.flags.writeable = False
    return _ORIGINAL_OUTPUTS[folder]


def graph_inputs(folder, path=None):
    """The reference feeds for the graph's inputs."""
    model = onnx.load(str(path or folder / "model.onnx"), load_external_data=False)
    ref = reference(folder)
    return {i.name: ref[i.name] for i in model.graph.input if i.name in ref}


def position_feeds(input_names, prompt_positions, total, length):
    """`position_ids` for a step of `length` new tokens that makes `total` cached, where the graph
    takes position ids ({} elsewhere): the prompt's as its reference fed them, then each decoded
    token at the prompt's largest position + 1 onward in every row (Qwen2-VL's multimodal
    [3, B, L] ids: text after an image continues from there; plain ids: 0...n-1)."""
    if "position_ids" not in input_names:
        return {}
    prompt_length = prompt_positions.shape[-1]
    if total == length == prompt_length:
        return {"position_ids": prompt_positions}
    start = int(prompt_positions.max()) + 1 + total - length - prompt_length
    row = np.arange(start, start + length, dtype=np.int64)
    return {"position_ids": np.broadcast_to(row, prompt_positions.shape[:-1] + (length,)).copy()}


def query_anchor(query):
    """The value a layer's query anchor (inspect --layers --json) names: the query after RoPE,
    heads split or merged, or where RoPE is inside a fused op, the query before it."""
    for kind in ("tensor", "headsMerged"):
        if kind in query:
            return query[kind]["name"]
    return query["fused"]["rotary"]["queryBeforeRoPE"]


def rotated_query(values, query, heads, head_dim):
    """The query after RoPE [B, H, L, hd] from the run `values`, where the graph holds it: as
    it is, or split into heads from [B, L, H*hd] (MRotaryEmbedding before GroupQueryAttention);
    None where RoPE is inside a fused op."""
    if "tensor" in query:
        return values[query["tensor"]["name"]]
    if "headsMerged" in query:
        merged = values[query["headsMerged"]["name"]]
        return merged.reshape(merged.shape[0], merged.shape[1], heads, head_dim).transpose(0, 2, 1, 3)
    return None


def run_with_outputs(path, extra, feeds):
    """Runs `path` in onnxruntime with `extra` values exposed as outputs; returns name -> array.
    A quantized model computes in float32 (`float_compute`), as the PyTorch references do."""
    model = onnx.load(str(path))
    for name in extra:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort_session(float_compute(model))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def rope_from_caches(q, cos_cache, sin_cache, positions, interleaved=False):
    """NumPy RoPE as GroupQueryAttention applies it: q [B, L, H, hd] at `positions` [B, L]."""
    cos = cos_cache[positions][:, :, None, :]
    sin = sin_cache[positions][:, :, None, :]
    half = q.shape[-1] // 2
    if interleaved:
        first, second = q[..., 0::2], q[..., 1::2]
        out = np.empty_like(q)
        out[..., 0::2] = first * cos - second * sin
        out[..., 1::2] = second * cos + first * sin
        return out
    first, second = q[..., :half], q[..., half:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def initializer(path, name):
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return onnx.numpy_helper.to_array(tensor)
    raise KeyError(name)


def float_type(folder):
    """numpy float type of the fixture's hidden states."""
    return np.float16 if folder.name.endswith("fp16") else np.float32


def tolerance(folder, float32=1e-4, float16=2e-2):
    """Comparison tolerance for the fixture's float type (float16 carries about 3 digits)."""
    return float16 if folder.name.endswith("fp16") else float32


def onnx_semantics_run(model, feeds):
    """The graph's outputs as ONNX defines them: onnx.reference's evaluator, every value in its
    declared element type. onnxruntime's CPU provider has no float16 kernels for most ops; it
    computes them in float32 and leaves out the float16 rounding between some of them, and
    which ones depends on who else reads a value (what a rewrite changes), so a float16
    graph's onnxruntime outputs move by a float16 step where the ONNX-defined values do not."""
    import warnings
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(model if isinstance(model, onnx.ModelProto) else str(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow inside masked softmax terms
        values = evaluator.run(None, {k: v for k, v in feeds.items() if k in evaluator.input_names})
    return dict(zip(evaluator.output_names, values))


def assert_float16_outputs_preserved(original, original_feeds, rewritten, rewritten_feeds, before, after):
    """A float16 rewrite that must change nothing: its ONNX-defined outputs equal the original's
    bit for bit (0 float16 ulps), and onnxruntime's (`before`, `after`) differ by no more than
    onnxruntime's own outputs of the original differ from the ONNX-defined ones. Returns the
    largest onnxruntime difference (absolute) and that bound."""
    exact_before = onnx_semantics_run(original, original_feeds)
    exact_after = onnx_semantics_run(rewritten, rewritten_feeds)
    worst, bound = 0.0, 0.0
    for name in before:
        assert exact_before[name].dtype == exact_after[name].dtype == np.float16, name
        assert np.array_equal(exact_before[name], exact_after[name]), f"{name}: ONNX-defined outputs differ"
        drift = np.abs(before[name].astype(np.float64) - exact_before[name]).max()
        moved = np.abs(before[name].astype(np.float64) - after[name]).max()
        assert moved <= drift, f"{name}: onnxruntime moves it by {moved}, more than its own float16 drift {drift}"
        worst, bound = max(worst, moved), max(bound, drift)
    return worst, bound


PYTORCH_FLOAT32, PYTORCH_FLOAT16 = 1e-4, 5e-3


def assert_equals_pytorch_hybrid(folder, ref, logits, step=0):
    """The rewritten export's logits with the reference's gates against PyTorch's hybrid model
    (Scripts/make-fixtures.py) at `step`: within 1e-4 in float32 and 5e-3 in float16. Where the
    float16 export alone is further than 5e-3 from PyTorch's float16 (Gemma 2 and 3: 1.4e-2 and
    2.2e-2 before any rewrite; their residual streams reach 20, where a float16 step is 1.6e-2),
    the measure is the one both approximate: the hybrid model computed in float64 from the
    float16 weights and inputs (`hybrid_exact_logits_*`), which the rewrite in onnxruntime must
    come at least as near as PyTorch's float16 does. Every float16 fixture with that reference
    is measured against it too. Returns the difference from PyTorch."""
    logits = np.asarray(logits, np.float64)
    torch_logits = ref[f"hybrid_logits_step{step}"].astype(np.float64)
    diff = float(np.abs(logits - torch_logits).max())
    if float_type(folder) == np.float32:
        assert diff <= PYTORCH_FLOAT32, diff
        return diff
    exact = ref.get(f"hybrid_exact_logits_step{step}")
    export_gap = float(np.abs(ref["logits"].astype(np.float64) - ref["logits_torch"]).max())
    if exact is not None and genai_float16(folder):
        # onnxruntime-genai's float16 export attends in its fused float16 kernel (and keeps a
        # float16 KV cache), PyTorch in eager float16 ops: two roundings of one computation, a
        # few float16 steps apart (5.6e-3 with the gates on at the prompt). The float64
        # computation both approximate is the measure: the rewrite in onnxruntime may stand
        # from it no further than PyTorch's float16 does plus the distance of the unmodified
        # export from PyTorch (measured at decode step 3: 2.6e-3 against 2.0e-3 + 3.4e-3).
        ours, theirs = np.abs(logits - exact).max(), np.abs(torch_logits - exact).max()
        assert ours <= theirs + export_gap, f"step {step}: {ours} from the float64 values, PyTorch's float16 {theirs}"
        return diff
    if exact is not None:
        ours, theirs = np.abs(logits - exact).max(), np.abs(torch_logits - exact).max()
        assert ours <= theirs, f"step {step}: {ours} from the float64 values, PyTorch's float16 {theirs}"
    if export_gap <= PYTORCH_FLOAT16:
        assert diff <= PYTORCH_FLOAT16, f"step {step}: {diff} from PyTorch's float16"
    else:
        assert exact is not None, f"the float16 export alone is {export_gap} from PyTorch: the fixture needs hybrid_exact_logits"
    return diff


def genai_float16(folder):
    """Whether the fixture is a float16 export by onnxruntime-genai's builder."""
    return float_type(folder) == np.float16 and json.loads((folder / "meta.json").read_text()).get("exporter") == "genai"


QUANTIZED_OPS = {"MatMulNBits", "MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear"}


def is_quantized(model):
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


def _quantized_module():
    import sys
    scripts = str(REPO / "Scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import quantized
    return quantized


def float_compute(model):
    """`model` (a ModelProto, or a path) computing in float32 where it is quantized, as the
    PyTorch references do (a float model over the dequantized weights): every MatMulNBits,
    weight DequantizeLinear and MatMulInteger chain becomes a MatMul by the dequantized weight
    and activation Quantize/DequantizeLinear pairs are bypassed (Scripts/quantized.py,
    float_twin). MatMulNBits' accuracy_level 4 and the int8 forms round activations to int8,
    so the quantized graph itself is 1e-2 to 1e-1 from any float reference. A float model is
    returned as it is."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    if not is_quantized(model):
        return model
    quantized = _quantized_module()
    return quantized.float_twin(model, quantized.dequantized_weights(model))


def float_weights(model):
    """The initializers of `model` as arrays, each quantized MatMul weight replaced by its
    dequantized float32 [in, out] values (what a float MatMul would hold)."""
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if is_quantized(model):
        for name, found in _quantized_module().dequantized_weights(model).items():
            weights[name] = found.weight
    return weights
