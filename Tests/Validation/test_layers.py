"""Layer discovery on real exports: every layer found, dims equal the HF config, and the
anchors are the right tensors, proven against PyTorch's values."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import REPO, backend_models, run
from fixtures import (FIXTURES, NAMES, config, graph_inputs, initializer, pytorch_names, query_anchor, reference, rope_from_caches,
                      rotated_query, run_with_outputs, tolerance)


def layout_of(folder):
    result = run("inspect", folder / "model.onnx", "--layers", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["layout"]


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_every_layer_found_with_the_config_dims(folder):
    layout = layout_of(folder)
    cfg = config(folder)
    dims = layout["dimensions"]
    assert [layer["index"] for layer in layout["layers"]] == list(range(cfg["num_hidden_layers"]))
    assert dims == {**dims, "numLayers": cfg["num_hidden_layers"], "hiddenSize": cfg["hidden_size"],
                    "numHeads": cfg["num_attention_heads"], "numKVHeads": cfg["num_key_value_heads"],
                    "headDim": cfg["head_dim"], "vocabSize": cfg["vocab_size"], "intermediateSize": cfg["intermediate_size"]}
    epsilon = cfg["layer_norm_eps"] if cfg["model_type"] in ("stablelm", "cohere") else cfg["rms_norm_eps"]
    for layer in layout["layers"]:
        # OLMo-2 has no norm before attention nor before the MLP; its norms follow o_proj and down_proj.
        # Cohere's MLP reads the one input norm (attention and MLP in parallel): no norm before the MLP.
        olmo, parallel = cfg["model_type"] == "olmo2", cfg["model_type"] == "cohere"
        norms = ["attentionOutputNorm", "mlpOutputNorm"] if olmo else ["inputNorm"] + ([] if parallel else ["postAttentionNorm"])
        assert olmo == (layer.get("inputNorm") is None)
        assert olmo or parallel == (layer.get("postAttentionNorm") is None)
        sandwich = cfg["model_type"].startswith("gemma") or cfg["model_type"] == "glm4"
        for norm in norms + (["attentionOutputNorm", "mlpOutputNorm"] if sandwich else []):
            assert layer[norm]["epsilon"] == pytest.approx(epsilon, rel=1e-3), norm
            # StableLM's and Cohere's norms are LayerNorms (mean-centred), StableLM's with a bias.
            assert bool(layer[norm].get("centered")) == (cfg["model_type"] in ("stablelm", "cohere")), norm
            assert bool(layer[norm].get("bias")) == (cfg["model_type"] == "stablelm"), norm
        # Phi-3 packs gate and up in one gate_up_proj, as its PyTorch module does (the genai
        # builder writes it as two MatMuls).
        packed = (cfg.get("model_type") == "phi3" and "genai" not in folder.name) or cfg["model_type"] == "glm4"
        assert sorted(layer["mlp"]) == (["down_proj", "gate_up_proj"] if packed else ["down_proj", "gate_proj", "up_proj"])
        # SiLU as Sigmoid and Mul, GELU (Gemma) written out (its last Mul and the Tanh) or as
        # one Gelu op (dynamo at opset 20).
        assert len(layer["activationNodes"]) == 2 or (len(layer["activationNodes"]) == 1 and "gelu" in layer["activationNodes"][0].lower())


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_anchors_are_the_query_after_rope_and_the_attention_output(folder):
    layout = layout_of(folder)
    ref = reference(folder)
    feeds = graph_inputs(folder)
    exposed = []
    for layer in layout["layers"]:
        exposed.append(layer["attentionOutput"])
        query = layer["query"]
        exposed.append(query_anchor(query))
    values = run_with_outputs(folder / "model.onnx", sorted(set(exposed)), feeds)
    cfg = config(folder)
    heads, head_dim = cfg["num_attention_heads"], cfg["head_dim"]
    for layer in layout["layers"]:
        i = layer["index"]
        attention = values[layer["attentionOutput"]]
        # float16: onnxruntime and PyTorch round differently, and the gap grows with depth and
        # with the residual stream's size (Gemma's reaches 20, where a float16 step is 1.6e-2):
        # up to 1.3% of the tensor's largest value at layer 4 of gemma3-torchscript-fp16. A wrong
        # tensor is off by its whole size; the float32 fixtures pin the same anchors at 1e-4.
        def limit(reference):
            return tolerance(folder, float16=2e-2 * np.abs(reference).max())
        assert np.abs(attention.astype(np.float64) - ref[f"attn_out_{i}"]).max() <= limit(ref[f"attn_out_{i}"]), f"layer {i} attention output"
        query = layer["query"]
        q = rotated_query(values, query, heads, head_dim)
        if q is None:
            fused = query["fused"]["rotary"]
            packed = values[fused["queryBeforeRoPE"]][..., : fused["querySliceCount"]]
            batch, length = packed.shape[:2]
            cos = initializer(folder / "model.onnx", fused["cosCache"])
            sin = initializer(folder / "model.onnx", fused["sinCache"])
            positions = np.broadcast_to(np.arange(length), (batch, length))
            q = rope_from_caches(packed.reshape(batch, length, heads, head_dim), cos, sin, positions,
                                 fused["interleaved"]).transpose(0, 2, 1, 3)
        assert q.shape == ref[f"q_rope_{i}"].shape
        assert np.abs(q.astype(np.float64) - ref[f"q_rope_{i}"]).max() <= limit(ref[f"q_rope_{i}"]), f"layer {i} query after RoPE"


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_canonical_names_cover_the_projections(folder):
    layout = layout_of(folder)
    names = {p["canonicalName"] for p in layout["parameters"]}
    own = pytorch_names(folder)
    for i in range(len(layout["layers"])):
        # OLMo-2 has no input norm; its first norm follows o_proj.
        first = "post_attention_layernorm" if config(folder)["model_type"] == "olmo2" else own["input_norm"]
        assert f"model.layers.{i}.{first}.weight" in names
        assert f"model.layers.{i}.{own['o_proj']}.weight" in names
    assert own["embed"] in names


def test_packed_qkv_slices_that_disagree_with_the_heads_are_refused(tmp_path):
    """Phi-3's k slice of the packed qkv made narrower than v: discovery names the weight,
    the bounds it read and what the head counts require, and describes no layer."""
    folder = REPO / "Tests/Fixtures/phi3-torchscript"
    model = onnx.load(str(folder / "model.onnx"))
    nodes = {n.name: n for n in model.graph.node}
    k_slice = nodes["/model/model/layers.0/self_attn/Slice_1"]
    end_node = next(n for n in model.graph.node if n.output[0] == k_slice.input[2])
    assert numpy_helper.to_array(end_node.attribute[0].t).tolist() == [96]
    end_node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([88], np.int64)))
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    result = run("inspect", path, "--layers")
    assert result.returncode != 0
    assert "layer 0" in result.stderr and "packed qkv" in result.stderr, result.stderr
    assert "sliced q 0..<64, k 64..<88, v 96..<128" in result.stderr and "head_dim 16" in result.stderr, result.stderr


@pytest.mark.parametrize("change, message", [
    ("key", "key Gather '/model/model/layers.0/attention/Gather_2' of the grouped qkv takes 1 on axis 3; expected 2 on the group axis"),
    ("query", "query Slice '/model/model/layers.0/attention/Slice' of the grouped qkv takes 0..<1 on axis 3; "
              "expected 0..<2 on the group axis"),
])
def test_grouped_qkv_that_disagrees_with_the_heads_is_refused(tmp_path, change, message):
    """InternLM2's wqkv with its key gathered from a query head's place, or one query head per
    group sliced instead of two: discovery names the node, what it read and what the head
    counts require, and describes no layer."""
    folder = REPO / "Tests/Fixtures/internlm2-torchscript"
    model = onnx.load(str(folder / "model.onnx"))
    nodes = {n.name: n for n in model.graph.node}
    node, slot, value = {"key": ("Gather_2", 1, -3), "query": ("Slice", 2, 1)}[change]
    node = nodes[f"/model/model/layers.0/attention/{node}"]
    model.graph.initializer.append(numpy_helper.from_array(np.array(value if change == "key" else [value], np.int64), "changed"))
    node.input[slot] = "changed"
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    result = run("inspect", path, "--layers")
    assert result.returncode != 0
    assert "layer 0" in result.stderr and message in result.stderr, result.stderr


def test_a_cnn_matches_no_adapter():
    cnn = next(p for p in backend_models() if "resnet50" in str(p) or "squeezenet" in str(p))
    result = run("inspect", cnn, "--layers")
    assert result.returncode != 0
    line = result.stderr.strip()
    assert "no adapter matched; closest, " in line and len(line.splitlines()) == 1, line
    assert len(line) <= len("error: ") + 300, line
    # --explain: every adapter's deepest attempt, one line each.
    explained = run("inspect", cnn, "--layers", "--explain")
    assert explained.returncode != 0
    lines = explained.stderr.strip().splitlines()
    for name in ("hf-torch-eager", "hf-torch-sdpa", "hf-torch-onnx-attention", "ort-genai-gqa"):
        assert sum(l.startswith(f"error: {name}: 0 layers") for l in lines) == 1, explained.stderr


@pytest.mark.parametrize("folder", FIXTURES, ids=NAMES)
def test_every_weight_has_its_pytorch_name(folder):
    """Every learned tensor (at least hidden_size values; RoPE caches are buffers) is named."""
    import onnx
    cfg = config(folder)
    named = {p["onnxName"]: p["canonicalName"] for p in layout_of(folder)["parameters"]}
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    weights = [t.name for t in model.graph.initializer
               if int(np.prod(t.dims)) >= cfg["hidden_size"] and "cos_cache" not in t.name and "sin_cache" not in t.name]
    assert [w for w in weights if w not in named] == []
    # 9 tensors per layer (+3 biases for Qwen2; genai packs q, k, v), embeddings, final norm, lm_head.
    canonical = set(named.values())
    assert {pytorch_names(folder)["embed"], "model.norm.weight", pytorch_names(folder)["lm_head"]} <= canonical


def test_multi_head_latent_attention_is_refused_by_name(tmp_path):
    """DeepSeek-V3's latent attention (kv_a_proj to a low-rank latent, no per-head k_proj/v_proj)
    is recognised and refused in one line naming it, for inspect and rewrite alike; nothing is
    written."""
    model = REPO / "Tests/Fixtures/refused/deepseekv3-torchscript/model.onnx"
    for args in (("inspect", model, "--layers"), ("rewrite", model, "-o", tmp_path / "out.onnx", "--hybrid-layers", "1")):
        result = run(*args)
        assert result.returncode != 0
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and len(line) <= len("error: ") + 300, line
        assert "multi-head latent attention is not supported: layer 0: kv_a_proj MatMul" in line, line
        assert "no per-head k_proj/v_proj" in line, line
    assert list(tmp_path.iterdir()) == []
