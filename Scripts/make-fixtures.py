#!/usr/bin/env python3
"""Builds the real third-party exports our tests read (issue 3), and their references.

Tiny random Qwen2 and LLaMA decoders (6 layers, hidden 64, 4 query heads, 2 KV heads,
head_dim 16), exported three ways each:

    torchscript  torch.onnx.export(dynamo=False), weights inline, no KV cache
    dynamo       torch.onnx.export(dynamo=True), external data, no KV cache
    genai        onnxruntime-genai's model builder (fp32, cpu): fused qkv,
                 GroupQueryAttention with RoPE inside, SkipSimplifiedLayerNormalization, KV cache
    torchscript-kv  torch.onnx.export(dynamo=False) with a KV cache: past_key_values.{i}.key/value
                 in, present.{i}.key/value out (genai's names), keys and values appended with
                 Concat(past, new); traced with a past of 2 positions, so the Concat is in the
                 graph, and fed an empty past for the prompt (issue 11)
    dynamo-kv    torch.onnx.export(dynamo=True) with a KV cache, the same inputs and outputs as
                 torchscript-kv (VL models: position_ids [3, batch, sequence] too), external
                 data (issue 11)

into Tests/Fixtures/<family>-<exporter>/ with config.json, meta.json and reference.npz:
the inputs fed, `logits` (onnxruntime on the export) and `logits_torch`, and per layer i
`q_rope_{i}` [batch, heads, seq, head_dim] (the query the attention scores, after RoPE where the
layer has it: recorded by wrapping the model's attention function, recording_queries) and
`attn_out_{i}` [batch, seq, heads*head_dim] (the input of
o_proj, recorded by a forward pre-hook). `hybrid_*`: a PyTorch implementation of the hybrid
layer (docs/DESIGN.md §1) at layers 0, 2, 4 with gates on, its slow tokens and gate values,
and its logits for the prompt and three KV-cache decode steps (tokens 5, 9, 13).

The PyTorch side lives in Scripts/slowfast_oracle.py, which every fixture script imports: the
models (make_model; TINY, FAMILY_CONFIG, and SEEDS, each family's one seed, from which every
registry here takes its fixtures' seeds), their random weights (randomize_weights) and the
hybrid layer (cross_attention_hook, recording_queries, hybrid_reference, exact_reference). This
script exports them and writes the fixtures.

Needs torch + transformers (+ onnxruntime-genai): Scripts/requirements-fixtures.txt. Only
fixture generation needs them; no test or demo does.

    make-fixtures.py [--only qwen2-dynamo,...] [--examples]
    make-fixtures.py --hybrid-only [--only ...]   # recompute only the hybrid_* references in place

qwen2-torchscript-fp16 is the Qwen2 model (same weights) in float16, exported by TorchScript;
qwen2-torchscript-sdpa and llama-dynamo-sdpa use sdpa attention instead of eager;
qwen2-dynamo-opset23 is exported at opset 23 (Attention, RotaryEmbedding, RMSNormalization ops).
qwen3-torchscript and qwen3-dynamo are Qwen3 (per-head q_norm/k_norm before RoPE, no biases);
the hybrid reference sends its slow keys through the layer's k_norm.
gemma2-*, gemma3-* and olmo2-* (torchscript, dynamo) are Gemma 2 ((1 + w) norms, sandwich norms,
soft-capping, sqrt(d) embedding scale), Gemma 3 (and per-head q/k norms) and OLMo-2 (no input
norm, full-width q/k norms, post norms); the hybrid reference follows each (docs/DESIGN.md §1).
phi3-* are Phi-3 (one packed qkv_proj, sliced into q, k and v; one packed gate_up_proj, chunked;
intermediate 96);
the hybrid reference's kv_proj is the k and v row blocks of qkv_proj.
granite-* are Granite with non-default multipliers (attention 0.05 instead of 1/sqrt(16), residual
0.5, embedding 4.0, logits scaling 2.0); the hybrid reference scores the slow keys with the layer's
own attention multiplier, and takes the slow tokens as they are (no embedding multiplier).
granite-torchscript-fp16 is the Granite model in float16, exported by TorchScript; so are
llama-, qwen3-, phi3-, gemma2-, gemma3- and olmo2-torchscript-fp16 (each family's seed), whose
references add hybrid_exact_logits_step*: the hybrid model in float64 from the float16 weights
and inputs (exact_reference). qwen3-genai is Qwen3 by onnxruntime-genai's builder (per-head
q/k norms as SimplifiedLayerNormalization between a Split of the packed qkv and GroupQueryAttention).
qwen2vl-* and qwen25vl-* are the language models of Qwen2-VL and Qwen2.5-VL (multimodal RoPE,
mrope_section [2, 3, 3] of the 8 frequencies of head_dim 16; the vision tower is not exported):
position_ids [3, batch, sequence] (temporal, height, width) is a graph input, fed for the prompt
as Qwen2-VL's get_rope_index numbers a prompt with a 2x2 image at tokens 2-5 (MROPE_POSITIONS),
and for each decode step as max + 1 onward in all three rows. onnxruntime-genai builds
Qwen2.5-VL with MRotaryEmbedding before GroupQueryAttention; the slow keys get no rotation in
any section (docs/DESIGN.md §1).
internlm2-* are InternLM2 (Scripts/internlm2.py: our own module, transformers has none): one fused
wqkv laid out per kv head as [groups query heads, key, value], InternLM2's parameter names; the
hybrid reference's kv_proj is the key and value rows of wqkv, strided row blocks.
Issue 20 (TRAIT_CELLS): smollm3-* (NoPE in layers 1-3, seed 18), stablelm-* (LayerNorm with
bias, a quarter of head_dim rotated, seed 19), glm4-* (half of head_dim rotated on interleaved
pairs, sandwich norms, fused gate_up_proj, seed 20), cohere-* (LayerNorm, parallel attention and
MLP, interleaved rotary, logit_scale, seed 21); qwen2-torchscript-sdpa-fp16 and
olmo2-torchscript-sdpa; deepseekv3-torchscript (multi-head latent attention, seed 22: inputs and
logits only, no hybrid reference). TorchScript cannot export GLM-4's and Cohere's interleaved
rotary (TRAIT_CELLS says how each fails); those two have dynamo, dynamo-kv and dynamo-fp16 exports.
REMAINING_CELLS fill the rest of the exporter x family table (README.md): the VL and InternLM2
models in float16 by TorchScript, and the KV-cache exports the families lacked (qwen2vl- and
qwen25vl-dynamo-kv, internlm2-dynamo-kv, qwen25vl-, qwen3- and llama-torchscript-kv), and
qwen25vl-dynamo.
QUANTIZED are quantized exports (build_quantized), each of its family's float model and seed:
qwen2-, phi3- and llama-genai-int4 by the genai builder with -p int4 -e cpu (every projection and
lm_head a com.microsoft MatMulNBits: 4 bits, block 32, accuracy_level 4, symmetric, so no zero
points; qkv packed in one); qwen2-torchscript-kv-int4, qwen2-torchscript-kv through
MatMulNBitsQuantizer (4 bits, block 32, symmetric, no accuracy_level); qwen2-torchscript-kv-int8
through quantize_dynamic (MatMul only: DynamicQuantizeLinear, MatMulInteger with a per-tensor
int8 weight, Cast, Mul by activation scale x weight scale); qwen2-torchscript-kv-qdq through
quantize_static (QDQ: per-channel int8 weights through DequantizeLinear, and an int8
QuantizeLinear/DequantizeLinear pair, calibrated on four random prompts, on each projection's
input). Their references (logits_torch, q_rope_*, attn_out_*, hybrid_*) come from a copy of the
PyTorch model holding the dequantized weights (Scripts/quantized.py), and reference.npz keeps
each as dequant/<initializer name>, float32 [K, N]. onnxruntime is 4e-2 to 6e-2 from them on
genai int4 (accuracy_level 4 quantizes the activations to int8 inside MatMulNBits; the same
graph at accuracy_level 0 agrees within 2e-6, asserted within 1e-4), and 5e-2 (int8) and 0.24
(qdq) where the activations are quantized (the graph with float activations agrees within 2e-6,
asserted); meta.json records each. qwen2-genai-fp16 is Qwen2 in float16 by the builder with
-p fp16 -e cuda, as float16 models are deployed (the builder needs no GPU): the graph of the fp32
genai build (packed qkv, GroupQueryAttention with RoPE inside, no position_ids) with a float16
cache; onnxruntime's CPU provider runs it (-e cpu writes float16 attention as separate q/k/v,
RotaryEmbedding, repeat_kv and MultiHeadAttention, which our adapters do not read).
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

import internlm2
import quantized
# The PyTorch side (the family table, random weights, the hybrid layer): Scripts/slowfast_oracle.py.
from slowfast_oracle import (MROPE_POSITIONS, SEEDS, TOKENS, VL_FAMILIES, attention_of, exact_reference, hybrid_reference,
                             make_model, mrope_positions, output_projection, recording_queries)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "Tests/Fixtures"


class VisionLogits(torch.nn.Module):
    """logits from input_ids, attention_mask and position_ids [3, batch, sequence]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids, attention_mask, position_ids=position_ids).logits


class VisionWithCache(torch.nn.Module):
    """VisionLogits with a KV cache: logits and present K/V from the past K/V as flat tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = transformers.DynamicCache(config=self.model.config)
        for i in range(self.model.config.num_hidden_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        output = self.model(input_ids, attention_mask, position_ids=position_ids, past_key_values=cache, use_cache=True)
        presents = []
        for layer in output.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (output.logits, *presents)


def export_vl_torch(model, folder, exporter):
    """torch.onnx export of a VisionLanguageModel: position_ids [3, batch, sequence] is an input;
    torchscript-kv traces with a past of 2 positions, as export_torch_kv."""
    if exporter == "dynamo-kv":
        return export_vl_dynamo_kv(model, folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    ids = torch.tensor(TOKENS)
    if exporter == "dynamo":
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        program = torch.onnx.export(VisionLogits(model), (ids, torch.ones_like(ids), torch.tensor(MROPE_POSITIONS)), dynamo=True,
                                    input_names=["input_ids", "attention_mask", "position_ids"], output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence},
                                                    "position_ids": {1: batch, 2: sequence}})
        program.save(str(path), external_data=True)
        return path
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "position_ids": {1: "batch", 2: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    if exporter == "torchscript":
        torch.onnx.export(VisionLogits(model), (ids, torch.ones_like(ids), torch.tensor(MROPE_POSITIONS)), str(path), dynamo=False,
                          opset_version=17, input_names=["input_ids", "attention_mask", "position_ids"], output_names=["logits"],
                          dynamic_axes=axes)
        return path
    config = model.config
    layers, traced_past = config.num_hidden_layers, 2
    past = [torch.randn(1, config.num_key_value_heads, traced_past, config.head_dim) for _ in range(2 * layers)]
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [name.replace("past_key_values", "present") for name in past_names]
    axes["attention_mask"] = {0: "batch", 1: "total_sequence"}
    axes.update({name: {0: "batch", 2: "past_sequence"} for name in past_names})
    axes.update({name: {0: "batch", 2: "total_sequence"} for name in present_names})
    mask = torch.ones((1, ids.shape[1] + traced_past), dtype=torch.long)
    torch.onnx.export(VisionWithCache(model), (ids, mask, mrope_positions(ids.shape[1], traced_past), *past), str(path),
                      dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                      output_names=["logits", *present_names], dynamic_axes=axes)
    return path


class VisionWithCacheList(VisionWithCache):
    """VisionWithCache taking the past as one list, as WithCacheList (torch.export's dynamic_shapes)."""

    def forward(self, input_ids, attention_mask, position_ids, past):
        return super().forward(input_ids, attention_mask, position_ids, *past)


def export_vl_dynamo_kv(model, folder):
    """torch.onnx.export(dynamo=True) of VisionWithCache: export_dynamo_kv's inputs and outputs
    with position_ids [3, batch, sequence] beside them (export_vl_torch's torchscript-kv
    interface); traced with a past of 2 positions, fed an empty past for the prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    ids, mask, past, past_names, present_names = traced_cache_inputs(model)
    positions = mrope_positions(ids.shape[1], past[0].shape[2])
    batch, sequence, past_sequence = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("past_sequence")
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: torch.export.Dim.AUTO},
              "position_ids": {1: batch, 2: sequence}, "past": [{0: batch, 2: past_sequence} for _ in past]}
    program = torch.onnx.export(VisionWithCacheList(model).eval(), (ids, mask, positions, past), dynamo=True,
                                input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                                output_names=["logits", *present_names], dynamic_shapes=shapes)
    path = folder / "model.onnx"
    program.save(str(path), external_data=True)
    return path


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def torch_reference(model, family):
    """Runs PyTorch on TOKENS, recording the query the attention scores (after RoPE, where the
    layer has it: recording_queries) and o_proj's input per layer."""
    outputs = []
    hooks = [output_projection(attention_of(layer)).register_forward_pre_hook(lambda _m, args: outputs.append(args[0].detach().numpy().copy()))
             for layer in model.model.layers]
    try:
        with recording_queries(model) as queries:
            ids = torch.tensor(TOKENS)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.numpy()
    finally:
        for hook in hooks:
            hook.remove()
    layers = model.config.num_hidden_layers
    assert len(outputs) == layers and all(len(queries[i]) == 1 for i in range(layers)), {i: len(q) for i, q in queries.items()}
    reference = {"logits_torch": logits}
    for i, a in enumerate(outputs):
        reference[f"q_rope_{i}"] = queries[i][0].detach().numpy().copy()
        reference[f"attn_out_{i}"] = a
    return reference


def export_torch(model, folder, dynamo, opset=None):
    folder.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor(TOKENS)
    mask = torch.ones_like(ids)
    path = folder / "model.onnx"
    wrapper = LogitsOnly(model)
    if dynamo:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        program = torch.onnx.export(wrapper, (ids, mask), dynamo=True, opset_version=opset, input_names=["input_ids", "attention_mask"],
                                    output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}})
        program.save(str(path), external_data=True)
    else:
        torch.onnx.export(wrapper, (ids, mask), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch", 1: "sequence"}})
    return path


class WithCache(torch.nn.Module):
    """logits and present K/V from input_ids, attention_mask and the past K/V as flat tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, *past):
        cache = transformers.DynamicCache(config=self.model.config)
        for i in range(self.model.config.num_hidden_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        presents = []
        for layer in output.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (output.logits, *presents)


def traced_cache_inputs(model):
    """What the KV-cache exports are traced with: TOKENS after a random past of 2 positions (so
    the cache's Concat is in the graph), and the names of the past inputs and present outputs."""
    config = model.config
    layers, traced_past = config.num_hidden_layers, 2
    ids = torch.tensor(TOKENS)
    mask = torch.ones((1, ids.shape[1] + traced_past), dtype=torch.long)
    dtype = next(model.parameters()).dtype
    past = [torch.randn(1, config.num_key_value_heads, traced_past, config.head_dim, dtype=dtype) for _ in range(2 * layers)]
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [name.replace("past_key_values", "present") for name in past_names]
    return ids, mask, past, past_names, present_names


def export_torch_kv(model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    ids, mask, past, past_names, present_names = traced_cache_inputs(model)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "logits": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch", 2: "past_sequence"} for name in past_names})
    axes.update({name: {0: "batch", 2: "total_sequence"} for name in present_names})
    path = folder / "model.onnx"
    torch.onnx.export(WithCache(model), (ids, mask, *past), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask", *past_names], output_names=["logits", *present_names],
                      dynamic_axes=axes)
    return path


class WithCacheList(WithCache):
    """WithCache taking the past as one list, so that torch.export's dynamic_shapes can name
    its axes (one spec per tensor)."""

    def forward(self, input_ids, attention_mask, past):
        return super().forward(input_ids, attention_mask, *past)


@contextlib.contextmanager
def sliding_layers_as_full():
    """Traces transformers' sliding-window cache layers as full DynamicLayers, as transformers'
    own dynamo exporter does (transformers/exporters/exporter_dynamo.py,
    _patch_sliding_window_layer): the sliding layer keeps a Python token counter and compares it
    with the window, which torch.export refuses on a dynamic past length. The sliding mask still
    applies the window; only the present is then not cut to the window's last positions (the
    prompts and decode steps here are far inside the 4096-position window, where the two agree)."""
    layer, full = transformers.cache_utils.DynamicSlidingWindowLayer, transformers.cache_utils.DynamicLayer
    names = ("update", "get_mask_sizes", "get_seq_length")
    saved = {name: layer.__dict__[name] for name in names}
    for name in names:
        setattr(layer, name, getattr(full, name))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(layer, name, method)


def export_dynamo_kv(model, folder):
    """torch.onnx.export(dynamo=True) of WithCache: the same inputs and outputs as
    export_torch_kv (past_key_values.{i}.key/value in, present.{i}.key/value out), external
    data. torch.export traces transformers' DynamicCache as plain tensor code: the cache update
    is a Concat(past, new) on the sequence axis. Traced with a past of 2 positions; the prompt
    is fed an empty past (0 positions), which the exported graph takes."""
    folder.mkdir(parents=True, exist_ok=True)
    ids, mask, past, past_names, present_names = traced_cache_inputs(model)
    batch, sequence, past_sequence = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("past_sequence")
    # The mask's length is past_sequence + sequence; torch.export finds that relation itself.
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: torch.export.Dim.AUTO},
              "past": [{0: batch, 2: past_sequence} for _ in past]}
    sliding = "sliding_attention" in (getattr(model.config, "layer_types", None) or ())
    with sliding_layers_as_full() if sliding else contextlib.nullcontext():
        program = torch.onnx.export(WithCacheList(model).eval(), (ids, mask, past), dynamo=True,
                                    input_names=["input_ids", "attention_mask", *past_names],
                                    output_names=["logits", *present_names], dynamic_shapes=shapes)
    path = folder / "model.onnx"
    program.save(str(path), external_data=True)
    return path


def export_genai(model, family, folder, precision="fp32", provider="cpu"):
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        hf = Path(scratch) / "hf"
        if family == "phi3":
            # The builder takes Phi-3 for the LongRoPE variant unless the two context lengths
            # agree; with the default RoPE the model does not read original_max_position_embeddings.
            model.config.original_max_position_embeddings = model.config.max_position_embeddings
        model.save_pretrained(hf)
        save_tiny_tokenizer(hf, getattr(model.config, "text_config", model.config).vocab_size)
        out = Path(scratch) / "out"
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                   "-p", precision, "-e", provider, "-c", str(Path(scratch) / "cache")]
        if model.config.model_type == "gemma2":
            # Sliding-window layers would otherwise get window-sized (4096) preallocated caches,
            # which an empty past (the prompt) does not fill; the 7-token prompt is inside the
            # window either way.
            command += ["--extra_options", "windowed_kv_cache=false"]
        # The builder records `git rev-parse HEAD` of the folder it runs in as producer_version;
        # inside our work tree that is our own latest commit, so every commit would change the
        # fixture. Point git nowhere: the version is then the builder's own.
        environment = {**os.environ, "GIT_DIR": str(Path(scratch) / "no-git"), "GIT_CEILING_DIRECTORIES": scratch}
        result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=scratch)
        if result.returncode != 0:
            raise RuntimeError("onnxruntime-genai builder failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])
        for file in out.iterdir():
            if file.name in ("model.onnx", "model.onnx.data", "genai_config.json"):
                shutil.copy(file, folder / file.name)
    return folder / "model.onnx"


def save_tiny_tokenizer(folder, vocab_size):
    """The genai builder copies a tokenizer; a word-level one over numbered tokens will do."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="t0", eos_token="t1", bos_token="t2")
    fast.save_pretrained(folder)


def onnx_feeds(path, config):
    """The inputs onnxruntime needs for TOKENS (genai: empty KV cache, as a first prompt)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = np.array(TOKENS, np.int64)
    feeds = {}
    for value in session.get_inputs():
        if value.name == "input_ids":
            feeds[value.name] = ids
        elif value.name == "attention_mask":
            feeds[value.name] = np.ones_like(ids)
        elif value.name == "position_ids" and len(value.shape) == 3:  # multimodal RoPE: [3, batch, sequence]
            feeds[value.name] = MROPE_POSITIONS
        elif value.name == "position_ids":
            feeds[value.name] = np.arange(ids.shape[1], dtype=np.int64)[None]
        elif value.name.startswith("past_key_values"):
            kv_heads = config.num_key_value_heads
            dtype = np.float16 if value.type == "tensor(float16)" else np.float32  # genai fp16: a float16 cache
            feeds[value.name] = np.zeros((1, kv_heads, 0, config.head_dim), dtype)
        else:
            raise RuntimeError(f"{path}: unexpected input {value.name}")
    return session, feeds


def describe(path):
    model = onnx.load(str(path), load_external_data=False)
    def info(v):
        t = v.type.tensor_type
        return {"name": v.name, "elemType": t.elem_type,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}
    return {"inputs": [info(v) for v in model.graph.input], "outputs": [info(v) for v in model.graph.output],
            "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}", "nodes": len(model.graph.node)}


def build(family, exporter, folder, seed, half=False, attention="eager", opset=None, precision="fp32", provider="cpu", hybrid=True):
    """hybrid=False: no hybrid references, and of torch_reference only logits_torch (DeepSeek-V3:
    the tool refuses its latent attention, so there is no query or o_proj input to compare)."""
    model = make_model(family, seed, attention)
    if half:
        model = model.half()
    reference = torch_reference(model, family)
    if hybrid:
        reference.update(hybrid_reference(model, seed))
    else:
        reference = {"logits_torch": reference["logits_torch"]}
    if half and hybrid:
        reference.update(exact_reference(model, seed))
    if folder.exists():
        shutil.rmtree(folder)
    if exporter == "genai":
        path = export_genai(getattr(model, "full", [model])[0], family, folder, precision, provider)
    elif family in VL_FAMILIES:
        path = export_vl_torch(model, folder, exporter)
    elif exporter == "torchscript-kv":
        path = export_torch_kv(model, folder)
    elif exporter == "dynamo-kv":
        path = export_dynamo_kv(model, folder)
    else:
        path = export_torch(model, folder, dynamo=exporter == "dynamo", opset=opset)
    session, feeds = onnx_feeds(path, model.config)
    logits = session.run(["logits"], feeds)[0]
    diff = float(np.abs(logits.astype(np.float64) - reference["logits_torch"].astype(np.float64)).max())
    if diff > (3e-2 if half else 1e-4):
        raise RuntimeError(f"{path}: onnxruntime logits differ from torch by {diff}")
    np.savez(folder / "reference.npz", **feeds, logits=logits, **reference)
    if family == "internlm2":
        (folder / "config.json").write_text(json.dumps(internlm2.config_json(model.config), indent=2, sort_keys=True) + "\n")
    else:
        model.config.to_json_file(folder / "config.json")
    meta = {"family": family, "exporter": exporter, "attention": attention, "seed": seed, "torch": torch.__version__,
            "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "fed": sorted(feeds), "maxAbsDiffLogits": diff, **describe(path)}
    if exporter == "genai":
        import onnxruntime_genai
        meta["onnxruntime_genai"] = onnxruntime_genai.__version__
        if precision != "fp32" or provider != "cpu":
            meta["builder"] = {"precision": precision, "executionProvider": provider}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{folder.relative_to(REPO)}: logits max abs diff vs torch {diff:.2e}")


def family_of(name):
    """A fixture's family: the first part of its name (qwen2-torchscript-kv: qwen2)."""
    return name.split("-", 1)[0]


def cells(names, **options):
    """MODELS entries (family, seed, options) for fixture `names`: each its family's model, of
    the family's seed in the one family table (slowfast_oracle.SEEDS)."""
    return {name: (family_of(name), SEEDS[family_of(name)], dict(options)) for name in names}


# Quantized exports: name -> method. The float model of the family (family_of) and its seed is
# exported and quantized; the references come from a copy of the PyTorch model whose Linear
# weights are the dequantized values the ONNX model holds (Scripts/quantized.py).
QUANTIZED = {
    "qwen2-genai-int4": "genai-int4",
    "qwen2-torchscript-kv-int4": "matmulnbits-int4",
    "phi3-genai-int4": "genai-int4",
    "llama-genai-int4": "genai-int4",
    "qwen2-torchscript-kv-int8": "dynamic-int8",
    "qwen2-torchscript-kv-qdq": "static-qdq",
}
QUANT_BLOCK_SIZE = 32
CALIBRATION_PROMPTS = 4


def calibration_feeds(config, seed):
    """A few random prompts (5 to 11 tokens, an empty past) for quantize_static's calibration."""
    rng = np.random.default_rng(seed)
    feeds = []
    for length in (5, 7, 9, 11)[:CALIBRATION_PROMPTS]:
        ids = rng.integers(0, config.vocab_size, (1, length), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        for i in range(config.num_hidden_layers):
            for kind in ("key", "value"):
                feed[f"past_key_values.{i}.{kind}"] = np.zeros((1, config.num_key_value_heads, 0, config.head_dim), np.float32)
        feeds.append(feed)
    return feeds


def quantize_export(model, family, seed, method, folder):
    """Exports `model` into `folder` quantized by `method`; returns the path and what meta.json
    records about the quantization."""
    from onnxruntime import quantization
    if method == "genai-int4":
        path = export_genai(model, family, folder, "int4")
        return path, {"tool": "onnxruntime_genai.models.builder", "arguments": "-p int4 -e cpu",
                      "builderDefaults": {"block_size": 32, "accuracy_level": "4 (the cpu default)", "is_symmetric": True,
                                          "op_types_to_quantize": "MatMul", "algo_config": "default (RTN)"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        float_path = export_torch_kv(model, Path(scratch) / "float")
        if method == "matmulnbits-int4":
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
            quantizer = MatMulNBitsQuantizer(onnx.load(str(float_path)), bits=4, block_size=QUANT_BLOCK_SIZE, is_symmetric=True)
            quantizer.process()
            onnx.save(quantizer.model.model, str(path))
            return path, {"tool": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer",
                          "arguments": {"bits": 4, "block_size": QUANT_BLOCK_SIZE, "is_symmetric": True}}
        if method == "dynamic-int8":
            # MatMul only: by default quantize_dynamic also turns the embedding table into int8
            # (Gather of the int8 table, then DequantizeLinear), which is not a projection weight.
            quantization.quantize_dynamic(float_path, path, weight_type=quantization.QuantType.QInt8, op_types_to_quantize=["MatMul"])
            return path, {"tool": "onnxruntime.quantization.quantize_dynamic",
                          "arguments": {"weight_type": "QInt8", "per_channel": False, "op_types_to_quantize": ["MatMul"]},
                          "notQuantized": "the embedding: with the default op types, quantize_dynamic also stores "
                                          "embed_tokens as int8 (Gather of the int8 table, then DequantizeLinear)",
                          "activations": "quantized at run time: DynamicQuantizeLinear (uint8) before each MatMulInteger"}
        if method == "static-qdq":
            float_model = onnx.load(str(float_path))
            initializers = {t.name for t in float_model.graph.initializer}
            # Only the MatMuls with a weight: QDQ's MatMul quantizer ignores MatMulConstBOnly and
            # would put the attention's QK^T and AV MatMuls through QDQ too.
            weight_matmuls = [n.name for n in float_model.graph.node if n.op_type == "MatMul" and n.input[1] in initializers]
            extra = {"OpTypesToExcludeOutputQuantization": ["MatMul"], "WeightSymmetric": True}

            class Prompts(quantization.CalibrationDataReader):
                def __init__(self):
                    self.feeds = iter(calibration_feeds(model.config, seed))

                def get_next(self):
                    return next(self.feeds, None)

            quantization.quantize_static(float_path, path, Prompts(), quant_format=quantization.QuantFormat.QDQ,
                                         op_types_to_quantize=["MatMul"], nodes_to_quantize=weight_matmuls, per_channel=True,
                                         weight_type=quantization.QuantType.QInt8, activation_type=quantization.QuantType.QInt8,
                                         extra_options=extra)
            return path, {"tool": "onnxruntime.quantization.quantize_static",
                          "arguments": {"quant_format": "QDQ", "per_channel": True, "weight_type": "QInt8", "activation_type": "QInt8",
                                        "op_types_to_quantize": ["MatMul"], "nodes_to_quantize": "the MatMuls with an initializer weight",
                                        "extra_options": extra, "calibration": f"MinMax over {CALIBRATION_PROMPTS} random prompts of 5-11 tokens"},
                          "activations": "QuantizeLinear -> DequantizeLinear (int8, per tensor, calibrated) on each quantized "
                                         "MatMul's input: quantize_static's QDQ MatMul always quantizes a non-constant input; "
                                         "outputs stay float (OpTypesToExcludeOutputQuantization)"}
    raise ValueError(method)


def matmulnbits_attributes(onnx_model):
    """The distinct attribute sets of the model's MatMulNBits nodes, apart from K and N."""
    sets = []
    for node in onnx_model.graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name not in ("K", "N")}
            if attrs not in sets:
                sets.append(attrs)
    return sets


def without_accuracy_level(onnx_model):
    """A copy whose MatMulNBits nodes have accuracy_level 0 (float activations)."""
    copied = onnx.ModelProto()
    copied.CopyFrom(onnx_model)
    for node in copied.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend(kept + [onnx.helper.make_attribute("accuracy_level", 0)])
    return copied


def logits_of(onnx_model, feeds):
    return ort.InferenceSession(onnx_model.SerializeToString()).run(["logits"], feeds)[0]


def dequantized_model(model, path):
    """The PyTorch `model` with the dequantized weights of the quantized export at `path`."""
    onnx_model = onnx.load(str(path))
    weights = quantized.dequantized_weights(onnx_model)
    copied, matches = quantized.load_dequantized(model, weights)
    return copied, onnx_model, weights, matches


def build_quantized(name):
    family, seed, method = family_of(name), SEEDS[family_of(name)], QUANTIZED[name]
    folder = FIXTURES / name
    model = make_model(family, seed)
    float_logits = torch_reference(model, family)["logits_torch"]
    if folder.exists():
        shutil.rmtree(folder)
    path, quantization = quantize_export(model, family, seed, method, folder)
    dequantized, onnx_model, weights, matches = dequantized_model(model, path)
    reference = torch_reference(dequantized, family)
    reference.update(hybrid_reference(dequantized, seed))
    reference.update({f"dequant/{key}": weights[key].weight for key in sorted(weights)})
    session, feeds = onnx_feeds(path, model.config)
    logits = session.run(["logits"], feeds)[0]
    torch_logits = reference["logits_torch"].astype(np.float64)
    diff = float(np.abs(logits.astype(np.float64) - torch_logits).max())
    measured = {"maxAbsDiffLogits": diff,
                "maxAbsDiffLogitsFloatTorch": float(np.abs(logits.astype(np.float64) - float_logits).max())}
    if any(n.op_type == "MatMulNBits" for n in onnx_model.graph.node):
        level0 = float(np.abs(logits_of(without_accuracy_level(onnx_model), feeds).astype(np.float64) - torch_logits).max())
        measured["maxAbsDiffLogitsAccuracyLevel0"] = level0
        quantization["matmulNBitsAttributes"] = matmulnbits_attributes(onnx_model)
        if level0 > 1e-4:
            raise RuntimeError(f"{path}: with accuracy_level 0, onnxruntime differs from the dequantized torch by {level0}")
    else:
        twin = float(np.abs(logits_of(quantized.float_twin(onnx_model, weights), feeds).astype(np.float64) - torch_logits).max())
        measured["maxAbsDiffLogitsFloatTwin"] = twin
        if twin > 1e-4:
            raise RuntimeError(f"{path}: its float twin differs from the dequantized torch by {twin}")
    np.savez(folder / "reference.npz", **feeds, logits=logits, **reference)
    model.config.to_json_file(folder / "config.json")
    quantization["method"] = method
    quantization["weights"] = {key: {"node": weights[key].node, "op": weights[key].op, "shapeKN": list(weights[key].weight.shape),
                                     "linear": label, "maxAbsDiffFromFloat": round(diff_, 8), "maxSteps": round(steps, 6)}
                               for key, (label, _parts, diff_, steps) in sorted(matches.items())}
    # exporter: what wrote the float graph (as the float fixtures say it); quantization: what then quantized it.
    exporter = "genai" if method.startswith("genai") else "torchscript-kv"
    meta = {"family": family, "exporter": exporter, "attention": "eager", "seed": seed,
            "torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "fed": sorted(feeds), **measured, "quantization": quantization, **describe(path)}
    if method.startswith("genai"):
        import onnxruntime_genai
        meta["onnxruntime_genai"] = onnxruntime_genai.__version__
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{folder.relative_to(REPO)}: logits max abs diff vs dequantized torch {diff:.2e}, "
          + ", ".join(f"{k} {v:.2e}" for k, v in measured.items() if k != "maxAbsDiffLogits"))


# The families with a dynamo export with a KV cache (each its model and seed, SEEDS, as in its other exports).
DYNAMO_KV_FAMILIES = ("qwen2", "llama", "qwen3", "phi3", "granite", "gemma2", "gemma3", "olmo2")

# The remaining exporter x family cells of issue 11 (each its family's model and seed): float16
# by TorchScript (-fp16), KV caches by dynamo and TorchScript (-kv).
REMAINING_CELLS = ("qwen2vl-dynamo-kv", "qwen2vl-torchscript-fp16", "qwen25vl-torchscript-fp16", "internlm2-torchscript-fp16",
                   "internlm2-dynamo-kv", "qwen25vl-dynamo", "qwen25vl-torchscript-kv", "qwen3-torchscript-kv",
                   "llama-torchscript-kv", "qwen25vl-dynamo-kv")

# Issue 20 (discovery by traits): SmolLM3 (NoPE layers), StableLM (LayerNorm with bias, a
# quarter of head_dim rotated), GLM-4 (half of head_dim rotated on interleaved pairs, sandwich
# norms, fused gate_up_proj), Cohere (LayerNorm, parallel attention and MLP, interleaved rotary,
# logit_scale), each by TorchScript, dynamo, TorchScript with a KV cache and TorchScript in
# float16 where TorchScript exports it (below); float16 TorchScript with sdpa attention (Qwen2) and OLMo-2 with sdpa (Cast nodes and
# the sdpa decomposition in the attention path); DeepSeek-V3's multi-head latent attention by
# TorchScript, with no hybrid reference (the tool refuses it by name), so reference.npz holds
# only the inputs and the logits.
# TorchScript (torch 2.13, opset 17 or 20) cannot export GLM-4's or Cohere's interleaved rotary
# (rotate_half as stack((-x2, x1), -1).flatten(-2), cos/sin through repeat_interleave(2, dim=-1)):
# GLM-4 (torchscript, -kv, -fp16) fails in the exporter, "AssertionError: All tensors must have
# the same rank" at the aten::cat of the rotated and the pass-through halves (modeling_glm4.py
# apply_rotary_pos_emb); Cohere's torchscript and -fp16 exports are written but wrong: onnxruntime
# fails at /model/model/layers.0/self_attn/Mul_3 (rotate_half(k) * sin), "Attempting to broadcast
# an axis by a dimension other than 1. 8 by 16", and its -kv export fails as GLM-4's. Both
# families have dynamo exports with a KV cache (dynamo-kv) and in float16 (dynamo-fp16) instead.
TRAIT_FAMILIES = ("smollm3", "stablelm", "glm4", "cohere")
TORCHSCRIPT_ROTARY_FAILS = ("glm4", "cohere")
TRAIT_CELLS = {
    **cells(f"{family}-{e}" for family in TRAIT_FAMILIES
            for e in (("dynamo", "dynamo-kv") if family in TORCHSCRIPT_ROTARY_FAILS else ("torchscript", "dynamo", "torchscript-kv"))),
    **cells((f"{family}-{'dynamo' if family in TORCHSCRIPT_ROTARY_FAILS else 'torchscript'}-fp16" for family in TRAIT_FAMILIES),
            half=True),
    **cells(["qwen2-torchscript-sdpa-fp16"], attention="sdpa", half=True),
    **cells(["olmo2-torchscript-sdpa"], attention="sdpa"),
    **cells(["deepseekv3-torchscript"], hybrid=False),
}

# How each fixture's PyTorch model is made (family, seed, make_model/build options): every
# fixture of a family is its model of the family's seed (cells, slowfast_oracle.SEEDS).
MODELS = {
    **cells(f"{family}-{e}" for family in ("qwen2", "llama") for e in ("torchscript", "dynamo", "genai")),
    **cells(["qwen2-torchscript-sdpa", "llama-dynamo-sdpa", "qwen2-dynamo-opset23"], attention="sdpa"),
    **cells(["qwen2-torchscript-fp16"], half=True),
    **cells(f"gemma2-{e}" for e in ("torchscript", "dynamo", "genai", "torchscript-kv")),
    **cells(f"{family}-{e}" for family in ("gemma3", "olmo2") for e in ("torchscript", "dynamo", "torchscript-kv")),
    **cells(f"phi3-{e}" for e in ("torchscript", "dynamo", "genai", "torchscript-kv")),
    **cells(f"granite-{e}" for e in ("torchscript", "dynamo", "torchscript-kv", "genai")),
    **cells(["granite-torchscript-fp16"], half=True),
    # float16 by TorchScript for every other family (same seeds as its float32 fixtures), and
    # Qwen3 by onnxruntime-genai.
    **cells((f"{family}-torchscript-fp16" for family in ("llama", "qwen3", "phi3", "gemma2", "gemma3", "olmo2")), half=True),
    **cells(["qwen3-genai"]),
    # torch.onnx dynamo exports with a KV cache (issue 11): each family's model and seed as in its other exports.
    **cells(f"{family}-dynamo-kv" for family in DYNAMO_KV_FAMILIES),
    **cells(f"qwen2vl-{e}" for e in ("torchscript", "dynamo", "torchscript-kv")),
    **cells(f"qwen25vl-{e}" for e in ("torchscript", "genai")),
    **cells(f"internlm2-{e}" for e in ("torchscript", "dynamo", "torchscript-kv")),
    **cells(name for name in REMAINING_CELLS if not name.endswith("-fp16")),
    **cells((name for name in REMAINING_CELLS if name.endswith("-fp16")), half=True),
    # Quantized exports (build_quantized), and Qwen2 by the genai builder in float16.
    **{name: (family_of(name), SEEDS[family_of(name)], {"quantized": method}) for name, method in QUANTIZED.items()},
    **cells(["qwen2-genai-fp16"], half=True, precision="fp16", provider="cuda"),
    **TRAIT_CELLS,
}


def refresh_hybrid(name):
    """Adds missing hybrid_* entries to an existing fixture's reference.npz (the exports and the
    entries already there stay as they are); entries already there must come out within 1e-5
    (another machine's float32 kernels round differently)."""
    family, seed, options = MODELS[name]
    if not options.get("hybrid", True):
        print(f"{name}: no hybrid references (hybrid=False)")
        return
    model = make_model(family, seed, options.get("attention", "eager"))
    if options.get("half"):
        model = model.half()
    if options.get("quantized"):  # the weights the committed export holds, dequantized
        model = dequantized_model(model, FIXTURES / name / "model.onnx")[0]
    path = FIXTURES / name / "reference.npz"
    stored = dict(np.load(path))
    fresh = hybrid_reference(model, seed)
    if options.get("half"):
        fresh.update(exact_reference(model, seed))
    worst = 0.0
    for key, value in fresh.items():
        if key in stored:
            diff = float(np.abs(stored[key].astype(np.float64) - value.astype(np.float64)).max())
            if diff > 1e-5:
                raise RuntimeError(f"{path}: {key} differs from the stored reference by {diff}")
            worst = max(worst, diff)
    np.savez(path, **{**fresh, **stored})
    print(f"{path.relative_to(REPO)}: hybrid references {sorted(set(fresh) - set(stored))} added "
          f"(stored ones reproduced within {worst:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated fixture names, e.g. qwen2-dynamo")
    parser.add_argument("--examples", action="store_true", help="also build Examples/qwen2-tiny")
    parser.add_argument("--hybrid-only", action="store_true", help="recompute only the hybrid_* entries of reference.npz")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    if args.hybrid_only:
        for name in sorted(wanted or MODELS):
            refresh_hybrid(name)
        return
    for family in ("qwen2", "llama"):
        for exporter in ("torchscript", "dynamo", "genai"):
            name = f"{family}-{exporter}"
            if wanted is None or name in wanted:
                build(family, exporter, FIXTURES / name, seed=SEEDS[family])
    # sdpa attention (the transformers default), written by torch.onnx as a decomposition.
    if wanted is None or "qwen2-torchscript-sdpa" in wanted:
        build("qwen2", "torchscript", FIXTURES / "qwen2-torchscript-sdpa", seed=SEEDS["qwen2"], attention="sdpa")
    if wanted is None or "llama-dynamo-sdpa" in wanted:
        build("llama", "dynamo", FIXTURES / "llama-dynamo-sdpa", seed=SEEDS["llama"], attention="sdpa")
    # opset 23: Attention, RotaryEmbedding and RMSNormalization as standard ops.
    if wanted is None or "qwen2-dynamo-opset23" in wanted:
        build("qwen2", "dynamo", FIXTURES / "qwen2-dynamo-opset23", seed=SEEDS["qwen2"], attention="sdpa", opset=23)
    # Qwen3: per-head q_norm/k_norm before RoPE (issue 11).
    for exporter in ("torchscript", "dynamo"):
        if wanted is None or f"qwen3-{exporter}" in wanted:
            build("qwen3", exporter, FIXTURES / f"qwen3-{exporter}", seed=SEEDS["qwen3"])
    # Gemma 2 ((1 + w) norms, sandwich norms, soft-capping, sqrt(d) embedding scale), Gemma 3
    # (and per-head q/k norms), OLMo-2 (no input norm, full-width q/k norms, post norms): issue 11.
    # onnxruntime-genai 0.18 builds Gemma 2 (GroupQueryAttention with its softcap attribute);
    # its Gemma 3 builder fails on transformers 5's per-layer-type rope_parameters (KeyError
    # 'rope_type'), and it has no OLMo-2 builder.
    for family in ("gemma2", "gemma3", "olmo2"):
        extra = {"gemma2": ("genai", "torchscript-kv"), "gemma3": ("torchscript-kv",), "olmo2": ("torchscript-kv",)}.get(family, ())
        for exporter in ("torchscript", "dynamo") + extra:
            if wanted is None or f"{family}-{exporter}" in wanted:
                build(family, exporter, FIXTURES / f"{family}-{exporter}", seed=SEEDS[family])
    # A KV cache in a torch.onnx export: Concat(past, new) before repeat_kv.
    if wanted is None or "qwen2-torchscript-kv" in wanted:
        build("qwen2", "torchscript-kv", FIXTURES / "qwen2-torchscript-kv", seed=SEEDS["qwen2"])
    # Phi-3 (packed qkv_proj and gate_up_proj) and Granite (attention, residual and embedding
    # multipliers), issue 11.
    for name in ("phi3-torchscript", "phi3-dynamo", "phi3-genai", "phi3-torchscript-kv",
                 "granite-torchscript", "granite-dynamo", "granite-torchscript-kv", "granite-genai"):
        if wanted is None or name in wanted:
            family, exporter = name.split("-", 1)
            build(family, exporter, FIXTURES / name, seed=MODELS[name][1])
    if wanted is None or "granite-torchscript-fp16" in wanted:
        build("granite", "torchscript", FIXTURES / "granite-torchscript-fp16", seed=SEEDS["granite"], half=True)
    if wanted is None or "qwen2-torchscript-fp16" in wanted:
        build("qwen2", "torchscript", FIXTURES / "qwen2-torchscript-fp16", seed=SEEDS["qwen2"], half=True)
    # float16 by TorchScript for every family, and Qwen3 by onnxruntime-genai.
    for name in ("llama-torchscript-fp16", "qwen3-torchscript-fp16", "phi3-torchscript-fp16", "gemma2-torchscript-fp16",
                 "gemma3-torchscript-fp16", "olmo2-torchscript-fp16", "qwen3-genai"):
        if wanted is None or name in wanted:
            family, seed, options = MODELS[name]
            exporter = "genai" if name.endswith("genai") else "torchscript"
            build(family, exporter, FIXTURES / name, seed=seed, half=options.get("half", False))
    # torch.onnx dynamo exports with a KV cache: past_key_values in, present out, as torchscript-kv.
    for family in DYNAMO_KV_FAMILIES:
        if wanted is None or f"{family}-dynamo-kv" in wanted:
            build(family, "dynamo-kv", FIXTURES / f"{family}-dynamo-kv", seed=SEEDS[family])
    # Qwen2-VL and Qwen2.5-VL language models: multimodal RoPE, position_ids [3, batch, sequence]
    # (issue 11); onnxruntime-genai builds Qwen2.5-VL (MRotaryEmbedding before GroupQueryAttention).
    for name, (family, seed, _options) in MODELS.items():
        if family in VL_FAMILIES and name not in REMAINING_CELLS and (wanted is None or name in wanted):
            build(family, name.split("-", 1)[1], FIXTURES / name, seed=seed)
    # InternLM2-style fused wqkv (per kv head: its query heads, key, value), issue 11.
    for exporter in ("torchscript", "dynamo", "torchscript-kv"):
        if wanted is None or f"internlm2-{exporter}" in wanted:
            build("internlm2", exporter, FIXTURES / f"internlm2-{exporter}", seed=SEEDS["internlm2"])
    # The remaining exporter x family cells: float16 by TorchScript (-fp16), KV caches (-kv).
    for name in REMAINING_CELLS:
        if wanted is None or name in wanted:
            family, seed, options = MODELS[name]
            build(family, name.split("-", 1)[1].removesuffix("-fp16"), FIXTURES / name, seed=seed, half=options.get("half", False))
    # Quantized exports (Scripts/quantized.py dequantizes their weights for the references), and
    # Qwen2 by onnxruntime-genai's builder in float16 for CUDA (-e cuda; run here on CPU).
    for name in QUANTIZED:
        if wanted is None or name in wanted:
            build_quantized(name)
    if wanted is None or "qwen2-genai-fp16" in wanted:
        build("qwen2", "genai", FIXTURES / "qwen2-genai-fp16", seed=SEEDS["qwen2"], half=True, precision="fp16", provider="cuda")
    # Issue 20: the families discovery by traits adds, the sdpa and float16 Cast cells, and MLA.
    for name, (family, seed, options) in TRAIT_CELLS.items():
        if wanted is None or name in wanted:
            exporter = name.split("-", 1)[1].removesuffix("-fp16").removesuffix("-sdpa")
            # A model the tool refuses lives under refused/, out of the fixtures every test runs.
            folder = FIXTURES / ("refused" if not options.get("hybrid", True) else "") / name
            build(family, exporter, folder, seed=seed, half=options.get("half", False),
                  attention=options.get("attention", "eager"), hybrid=options.get("hybrid", True))
    if args.examples or wanted is None:
        build("qwen2", "dynamo", REPO / "Examples/qwen2-tiny", seed=99)


if __name__ == "__main__":
    main()
