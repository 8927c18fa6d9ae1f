"""The one Python oracle of SlowFastKit's fixture generators (issue 22): what every
Scripts/make-*.py that writes a committed fixture or reference builds its PyTorch side from.

    family table   TINY, FAMILY_CONFIG and SEEDS (each family's seed: every fixture of a family,
                   whatever its exporter, precision or cache, is that one model), make_model
                   (make_vl_model, VisionLanguageModel: the Qwen2-VL / Qwen2.5-VL language models
                   with their multimodal positions, MROPE_*)
    random weights randomize (one draw per parameter, in parameter order, from one generator:
                   norms 1 + 0.1 n, biases 0.02 n, everything else as the caller's `weight` says;
                   the scripts' towers keep their own scales and norm tests: llm_weight,
                   fan_in_weight) and randomize_weights (the language models' choices)
    hybrid layer   the docs/DESIGN.md §1 cross-attention term as a forward pre-hook on o_proj
                   (cross_attention_hook: the layer's input norm, slow keys/values from its
                   k_proj/v_proj or packed qkv, k_norm, score scale and soft-capping, the gate),
                   recording_queries (the query each attention scores), hybrid_reference (the
                   prompt and three decode steps with gates on) and exact_reference (float64)

It is written from the rules, independently of the Swift passes. Scripts import it by name
(they run as Scripts/x.py, so Scripts/ is on sys.path). Needs torch + transformers
(Scripts/requirements-fixtures.txt); no test needs it.
"""
import contextlib
import sys

import numpy as np
import torch
import transformers

import internlm2

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=256, max_position_embeddings=128,
            rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)
TOKENS = [[3, 17, 42, 99, 128, 7, 201]]


# Families whose config needs more than TINY (issue 11): the entries that make each one's
# peculiarity show at this size. Gemma 2 scores with query_pre_attn_scalar**-0.5 (here 8: not
# 1/sqrt(head_dim)) and caps the scores at 2.0, so the cap changes them (a cap of 1.0 would
# vanish into the scale in the dynamo export). Phi-3's default pad/eos ids (32000) lie outside
# the tiny vocabulary, and its packed gate_up_proj must not be vocab_size wide (the genai
# builder takes any Linear with vocab_size outputs for the LM head), so intermediate is 96;
# Granite's multipliers are set away from their defaults of 1.
FAMILY_CONFIG = {
    "gemma2": dict(query_pre_attn_scalar=8, attn_logit_softcapping=2.0, final_logit_softcapping=30.0),
    "gemma3": dict(query_pre_attn_scalar=8),
    "olmo2": dict(),
    "phi3": dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, intermediate_size=96),
    "granite": dict(attention_multiplier=0.05, residual_multiplier=0.5, embedding_multiplier=4.0, logits_scaling=2.0),
    "internlm2": dict(),
    # Issue 20. SmolLM3: layers 1, 2 and 3 have no rotary embedding (NoPE; layer 2 is a hybrid
    # layer); its default token ids lie outside the tiny vocabulary, as GLM-4's and Cohere's do.
    "smollm3": dict(no_rope_layers=[1, 0, 0, 0, 1, 1], pad_token_id=0, bos_token_id=1, eos_token_id=2),
    # StableLM: LayerNorm with bias, rotary on the first quarter of head_dim (its default
    # partial_rotary_factor), no qkv biases (its default use_qkv_bias).
    "stablelm": dict(partial_rotary_factor=0.25, layer_norm_eps=1e-5),
    # GLM-4: rotary on the first half of head_dim (its default), on interleaved pairs; q/k/v biases.
    "glm4": dict(partial_rotary_factor=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    # Cohere: LayerNorm without bias, attention and MLP in parallel from one norm, interleaved
    # rotary, logits times logit_scale (its default 0.0625).
    "cohere": dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, layer_norm_eps=1e-5),
    # DeepSeek-V3: multi-head latent attention (q_a/q_b and kv_a/kv_b low-rank projections, a
    # rotary part of 8 and a plain part of 16 per query/key head, values of 16; head_dim is the
    # rotary part, as DeepseekV3Config sets it); every MLP dense.
    "deepseekv3": dict(num_key_value_heads=4, head_dim=8, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16,
                       v_head_dim=16, first_k_dense_replace=6, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
                       topk_group=1, moe_intermediate_size=32, pad_token_id=0),
}


# The family table's seeds: every fixture of a family (Tests/Fixtures/<family>-*, its state dict
# Tests/Fixtures/state-dicts/<family>-seed<seed>.safetensors) is the model of that seed.
SEEDS = {"qwen2": 10, "llama": 11, "qwen3": 12, "phi3": 13, "granite": 14, "gemma2": 13, "gemma3": 14, "olmo2": 15,
         "qwen2vl": 16, "qwen25vl": 17, "internlm2": 16, "smollm3": 18, "stablelm": 19, "glm4": 20, "cohere": 21,
         "deepseekv3": 22}


def make_model(family, seed, attention="eager", **dims):
    """A tiny random model of `family` (TINY, FAMILY_CONFIG and `dims` over it), its weights
    drawn from `seed` (randomize_weights; a family's fixtures use SEEDS[family])."""
    if family in VL_FAMILIES:
        return make_vl_model(family, seed, attention, **dims)
    config_class = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig, "qwen3": transformers.Qwen3Config,
                    "gemma2": transformers.Gemma2Config, "gemma3": transformers.Gemma3TextConfig,
                    "olmo2": transformers.Olmo2Config, "phi3": transformers.Phi3Config,
                    "granite": transformers.GraniteConfig, "internlm2": internlm2.LlamaConfig,
                    "smollm3": transformers.SmolLM3Config, "stablelm": transformers.StableLmConfig,
                    "glm4": transformers.Glm4Config, "cohere": transformers.CohereConfig,
                    "deepseekv3": transformers.DeepseekV3Config}[family]
    model_class = {"qwen2": transformers.Qwen2ForCausalLM, "llama": transformers.LlamaForCausalLM,
                   "qwen3": transformers.Qwen3ForCausalLM, "gemma2": transformers.Gemma2ForCausalLM,
                   "gemma3": transformers.Gemma3ForCausalLM, "olmo2": transformers.Olmo2ForCausalLM,
                   "phi3": transformers.Phi3ForCausalLM, "granite": transformers.GraniteForCausalLM,
                   "internlm2": internlm2.InternLM2ForCausalLM, "smollm3": transformers.SmolLM3ForCausalLM,
                   "stablelm": transformers.StableLmForCausalLM, "glm4": transformers.Glm4ForCausalLM,
                   "cohere": transformers.CohereForCausalLM, "deepseekv3": transformers.DeepseekV3ForCausalLM}[family]
    config = config_class(**{**TINY, **FAMILY_CONFIG.get(family, {}), **dims})
    config._attn_implementation = attention
    torch.manual_seed(seed)
    model = model_class(config).eval()
    randomize_weights(model, seed, family)
    return model


def scaled(gain):
    """gain * n: the language models' weights (0.08), Scripts/export-qwen-vl-tower.py's (0.05)."""
    return lambda noise, parameter: gain * noise


llm_weight = scaled(0.08)


def fan_in_weight(gain, divisor=1.0):
    """gain * n / max(1, sqrt(fan_in) / divisor), fan_in the size of one output's slice:
    Scripts/make-vision-fixtures.py's towers (0.2, 4), Scripts/make-video-example.py's (1, 1)."""
    return lambda noise, parameter: gain * noise / max(1.0, parameter[0].numel() ** 0.5 / divisor)


def is_norm_weight(name):
    """A norm's scale: its name has "norm" and ends in weight (a norm's bias is a bias)."""
    return "norm" in name and name.endswith("weight")


def randomize(module, seed, weight, is_norm=is_norm_weight, norm=lambda noise: 1 + 0.1 * noise):
    """Non-degenerate random weights, drawn in parameter order from `seed`: no zero biases and
    no all-ones norms, so no two tensors are equal and exporters cannot merge them. A parameter
    `is_norm(name)` says is a norm's gets `norm(noise)` (1 + 0.1 n), one ending in bias 0.02 n, any
    other `weight(noise, parameter)`. The scripts differ only in `weight` and `is_norm` (and
    Gemma's bfloat16 norms), which they pass as they always had them: each committed fixture
    keeps its bytes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if is_norm(name):
                parameter.copy_(norm(noise))
            elif name.endswith("bias"):
                parameter.copy_(0.02 * noise)
            else:
                parameter.copy_(weight(noise, parameter))


def randomize_weights(model, seed, family):
    """The language models' random weights (randomize): 0.08 n, and every parameter with "norm"
    in its name (norm biases too: StableLM's LayerNorm) 1 + 0.1 n."""
    if family.startswith("gemma"):
        # Gemma's released checkpoints are bfloat16, so 1 + w (which torch.onnx folds
        # into the norm's constant) is exact in float32 and w comes back from it.
        norm = lambda noise: (1 + 0.1 * noise).to(torch.bfloat16).float()
    else:
        norm = lambda noise: 1 + 0.1 * noise
    randomize(model, seed, llm_weight, is_norm=lambda name: "norm" in name, norm=norm)


# Qwen2-VL and Qwen2.5-VL (issue 11): the language model of each, with multimodal RoPE. Its
# three sections of the rotary frequencies (temporal, height, width) must sum to head_dim / 2.
VL_FAMILIES = ("qwen2vl", "qwen25vl")
MROPE_SECTION = [2, 3, 3]
# Prompt positions [3, 1, 7] as Qwen2-VL's get_rope_index gives them for two text tokens, a 2x2
# (merged) image grid at tokens 2-5 and a text token: the image shares its temporal position and
# spans height and width; text after it continues from the largest position + 1. A decode step
# at cache length n sits at n + ROPE_DELTA in all three rows.
MROPE_POSITIONS = np.array([[[0, 1, 2, 2, 2, 2, 4]], [[0, 1, 2, 2, 3, 3, 4]], [[0, 1, 2, 3, 2, 3, 4]]], np.int64)
ROPE_DELTA = int(MROPE_POSITIONS.max()) + 1 - MROPE_POSITIONS.shape[2]


def mrope_positions(length, past):
    """[3, 1, length] positions of a step with `past` tokens cached: the prompt's, or text after it."""
    if past == 0 and length == MROPE_POSITIONS.shape[2]:
        return torch.tensor(MROPE_POSITIONS)
    if past == 0:
        raise ValueError(f"no multimodal positions for a prompt of {length} tokens")
    return torch.arange(past, past + length).add(ROPE_DELTA).view(1, 1, -1).expand(3, 1, -1)


class VisionLanguageModel(torch.nn.Module):
    """The text decoder of a Qwen2-VL / Qwen2.5-VL model and its lm_head, as a causal LM whose
    positions default to MROPE_POSITIONS (prompt) and text positions after it (decode)."""

    def __init__(self, full):
        super().__init__()
        self.model = full.model.language_model
        self.lm_head = full.lm_head
        self.config = self.model.config

    def forward(self, input_ids, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        if position_ids is None:
            past = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = mrope_positions(input_ids.shape[1], past)
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            past_key_values=past_key_values, use_cache=use_cache)
        return transformers.modeling_outputs.CausalLMOutputWithPast(
            logits=self.lm_head(output.last_hidden_state), past_key_values=output.past_key_values)


def make_vl_model(family, seed, attention="eager", **dims):
    """A tiny random Qwen2-VL / Qwen2.5-VL (a one-block vision tower, TINY text model); returns the
    full model's language part (VisionLanguageModel), with the full model at `.full` for export."""
    config_class, model_class = {
        "qwen2vl": (transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration),
        "qwen25vl": (transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration)}[family]
    text = {**TINY, **dims, "bos_token_id": 1, "eos_token_id": 2, "rope_parameters": {"rope_type": "default", "rope_theta": TINY["rope_theta"],
                                                "mrope_section": MROPE_SECTION}}
    del text["rope_theta"]
    vision = dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, out_hidden_size=TINY["hidden_size"],
                  intermediate_size=32, fullatt_block_indexes=[0])
    config = config_class(text_config=text, vision_config=vision, tie_word_embeddings=False,
                          image_token_id=250, video_token_id=251, vision_start_token_id=252, vision_end_token_id=253)
    config._attn_implementation = attention
    config.text_config._attn_implementation = attention
    torch.manual_seed(seed)
    full = model_class(config).eval()
    model = VisionLanguageModel(full).eval()
    randomize_weights(model, seed, family)  # the text weights only
    model.full = [full]  # a list, so the full model is not a submodule of the language model
    return model



@contextlib.contextmanager
def recording_queries(model):
    """Records, per layer, the query each layer's attention function is called with: after
    whatever rotary the layer has (all of head_dim, a partial slice concatenated back as in
    StableLM, interleaved pairs as in GLM-4 and Cohere, none in SmolLM3's NoPE layers), after any
    q norm, as the attention scores it. Yields {layer index: [query [B, H, L, hd] per forward]}.
    Wraps the modeling module's eager_attention_forward (called by name: InternLM2, and the
    eager default) and whatever ALL_ATTENTION_FUNCTIONS.get_interface hands out (sdpa); a call
    inside another recorded one (the eager default handed out by get_interface) is not recorded
    twice. Recording at rotary time (wrapping apply_rotary_pos_emb) misses NoPE layers and, in
    StableLM, sees only the rotated quarter of the query."""
    layers = model.model.layers
    index = {id(attention_of(layer)): i for i, layer in enumerate(layers)}
    queries = {i: [] for i in range(len(layers))}
    module = sys.modules[type(attention_of(layers[0])).__module__]
    interfaces = transformers.modeling_utils.ALL_ATTENTION_FUNCTIONS
    depth = [0]

    def recording(function):
        def attention(attention_module, query, *args, **kwargs):
            if depth[0] == 0:
                queries[index[id(attention_module)]].append(query)
            depth[0] += 1
            try:
                return function(attention_module, query, *args, **kwargs)
            finally:
                depth[0] -= 1
        return attention

    eager = module.eager_attention_forward
    get_interface = type(interfaces).get_interface
    module.eager_attention_forward = recording(eager)
    interfaces.get_interface = lambda implementation, default: recording(get_interface(interfaces, implementation, default))
    try:
        yield queries
    finally:
        module.eager_attention_forward = eager
        del interfaces.get_interface


HYBRID_LAYERS = (0, 2, 4)
HYBRID_SLOW = 10
DECODE_TOKENS = (5, 9, 13)


def hybrid_reference(model, seed, values_dtype=None):
    """PyTorch implementation of docs/DESIGN.md §1 (the in-place hybrid layer), written
    here independently of the Swift pass, run on the reference prompt and three decode steps
    (KV cache) with gates switched on; records the gate values and the logits of each step.
    `values_dtype`: the slow tokens and gates are rounded to it first (exact_reference)."""
    config = model.config
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    rng = np.random.default_rng(seed)
    dtype = next(model.parameters()).dtype
    values_dtype = values_dtype or dtype
    slow = torch.tensor(rng.standard_normal((1, HYBRID_SLOW, config.hidden_size)), dtype=values_dtype).to(dtype)
    gates = {}
    for i in HYBRID_LAYERS:
        gates[i] = (torch.tensor(rng.standard_normal((1, heads * head_dim)) * 0.5, dtype=values_dtype).to(dtype),
                    torch.tensor([0.1 * (i + 1)], dtype=values_dtype).to(dtype), torch.tensor([0.5 + 0.1 * i], dtype=values_dtype).to(dtype))
    queries = {}                                             # recording_queries: layer index -> its queries

    hooks = [output_projection(attention_of(model.model.layers[i])).register_forward_pre_hook(cross_attention_hook(i, model.model.layers[i], slow, gates[i], queries, config))
             for i in HYBRID_LAYERS]
    result = {"hybrid_slow_tokens": slow.numpy()}
    try:
        with torch.no_grad(), recording_queries(model) as recorded:
            queries.update(recorded)
            ids = torch.tensor(TOKENS)
            output = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            result["hybrid_logits_step0"] = output.logits.numpy()
            past, length = output.past_key_values, ids.shape[1]
            for step, token in enumerate(DECODE_TOKENS, start=1):
                length += 1
                output = model(input_ids=torch.tensor([[token]]), attention_mask=torch.ones((1, length), dtype=torch.long),
                               past_key_values=past, use_cache=True)
                result[f"hybrid_logits_step{step}"] = output.logits.numpy()
                past = output.past_key_values
    finally:
        for hook in hooks:
            hook.remove()
    # One query per layer per forward (the prompt and each decode step), none missed or doubled.
    assert all(len(queries[i]) == 1 + len(DECODE_TOKENS) for i in range(config.num_hidden_layers)), \
        {i: len(q) for i, q in queries.items()}
    for i, (w_g, b_g, alpha) in gates.items():
        result[f"hybrid_gate_w_{i}"] = w_g.numpy()
        result[f"hybrid_gate_b_{i}"] = b_g.numpy()
        result[f"hybrid_alpha_{i}"] = alpha.numpy()
    return result


def example_gates(seed, hidden, layers=HYBRID_LAYERS):
    """The gates of the Examples' hybrid layers (Scripts/make-video-example*.py), from `seed`:
    gate_w_i [1, hidden] (0.5 n), gate_b_i 0.1 (i + 1), gate_alpha_i 0.8 + 0.05 i. (The
    fixtures' hybrid_reference draws its own, after its slow tokens, with alpha 0.5 + 0.1 i.)"""
    rng = np.random.default_rng(seed)
    gates = {}
    for i in layers:
        gates[f"gate_w_{i}"] = (rng.standard_normal((1, hidden)) * 0.5).astype(np.float32)
        gates[f"gate_b_{i}"] = np.array([0.1 * (i + 1)], np.float32)
        gates[f"gate_alpha_{i}"] = np.array([0.8 + 0.05 * i], np.float32)
    return gates


def cross_attention_hook(layer_index, layer, slow, gate, queries, config, keys_values=None):
    """The docs/DESIGN.md §1 cross-attention term of hybrid layer `layer_index` as a forward
    pre-hook on its o_proj: `slow` [1, N_s, d] the slow tokens (all real, every position
    queries), `gate` (w_g [1, H*hd], b_g [1], alpha [1]), `queries` what recording_queries
    yields (the layer's last recorded query is the one its attention scored), `config` the
    model's (head counts, head_dim). `keys_values(attention, s_hat, kv_width)` -> (K_x, V_x)
    [1, N_s, kv_width] each: slow_keys_values (the layer's own projections) unless given
    (Scripts/make-state-dicts.py: bfloat16-rounded weights). hybrid_reference,
    Scripts/make-state-dicts.py, make-video-example.py and make-video-example-qwen25vl.py use it."""
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    w_g, b_g, alpha = gate

    def hook(_module, args):
        a_sa = args[0]                                   # [B, L, H*hd], before o_proj
        # [B, H, L, hd]: this layer's query as its attention scores it, after the layer's
        # rotary (partial, interleaved) or none (a NoPE layer); the slow keys get no rotary.
        q = queries[layer_index][-1]
        # The layer's own input norm, whatever its kind (Gemma's (1 + w), LayerNorm with its
        # bias in StableLM, Cohere's LayerNorm); OLMo-2 has none, and its k_proj/v_proj read
        # the residual stream as it is: the slow tokens enter un-normed. In Cohere's parallel
        # block the MLP reads the same norm; the cross-attention term joins the attention
        # branch before o_proj all the same.
        s_hat = input_norm(layer)(slow) if input_norm(layer) is not None else slow
        k, v = (keys_values or slow_keys_values)(attention_of(layer), s_hat, kv_heads * head_dim)  # [K_x | V_x] = concat(k_proj, v_proj)
        n = slow.shape[1]
        k_norm = getattr(attention_of(layer), "k_norm", None)
        if k_norm is not None and k_norm.weight.numel() == kv_heads * head_dim:
            k = k_norm(k)                                # OLMo-2: full-width k_norm, before the head split
        k = k.view(1, n, kv_heads, head_dim)
        if k_norm is not None and k_norm.weight.numel() == head_dim:
            k = k_norm(k)                                # Qwen3, Gemma 3: per-head k_norm
        k = k.transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        v = v.view(1, n, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        # Softmax in float32, as the eager attention of the model itself does.
        scaling = score_scale(attention_of(layer), head_dim)
        if scaling == head_dim ** -0.5:                  # as the first fixtures' references were made
            scores = q @ k.transpose(2, 3) / head_dim ** 0.5
        else:                                            # Granite's multiplier, Gemma's query_pre_attn_scalar**-0.5
            scores = q @ k.transpose(2, 3) * scaling
        cap = getattr(attention_of(layer), "attn_logit_softcapping", None)
        if cap is not None:                              # Gemma 2: the layer's own cap, before the mask
            scores = torch.tanh(scores / cap) * cap
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # no mask: all real
        a_x = (weights @ v).transpose(1, 2).reshape(a_sa.shape)
        g = torch.tanh(a_sa @ w_g.T + b_g) * torch.tanh(alpha)
        return (a_sa + g * a_x,)
    return hook


def attention_of(layer):
    """The layer's attention module: self_attn, or InternLM2's attention."""
    return layer.self_attn if hasattr(layer, "self_attn") else layer.attention


def output_projection(attention):
    """o_proj, or InternLM2's wo."""
    return attention.o_proj if hasattr(attention, "o_proj") else attention.wo


def input_norm(layer):
    """The norm before attention: input_layernorm, InternLM2's attention_norm, or none (OLMo-2)."""
    return getattr(layer, "input_layernorm", None) or getattr(layer, "attention_norm", None)


def exact_reference(model, seed):
    """For a float16 model: its hybrid logits computed in float64 from its own float16 weights,
    slow tokens and gates (`hybrid_exact_logits_step*`), the values both PyTorch's and
    onnxruntime's float16 arithmetic approximate. Gemma's float16 exports are further from
    PyTorch's float16 than 5e-3 before any rewrite, with onnxruntime the nearer of the two to
    these values; the tests measure each against them."""
    import copy
    exact = hybrid_reference(copy.deepcopy(model).double(), seed, values_dtype=next(model.parameters()).dtype)
    return {key.replace("hybrid_logits", "hybrid_exact_logits"): value for key, value in exact.items() if key.startswith("hybrid_logits")}


def slow_keys_values(attention, s_hat, kv_width):
    """The layer's k_proj and v_proj applied to the slow tokens; Phi-3 packs q, k and v in one
    qkv_proj, whose k and v row blocks are those projections; InternLM2's wqkv holds, per kv
    head, its query heads, then its key head, then its value head (strided row blocks)."""
    if hasattr(attention, "wqkv"):
        groups, head_dim = attention.num_key_value_groups, attention.head_dim
        rows = attention.wqkv.weight.view(-1, groups + 2, head_dim, s_hat.shape[-1])
        k_rows, v_rows = rows[:, -2].reshape(kv_width, -1), rows[:, -1].reshape(kv_width, -1)
        return s_hat @ k_rows.T, s_hat @ v_rows.T
    if hasattr(attention, "qkv_proj"):
        weight = attention.qkv_proj.weight
        query_width = weight.shape[0] - 2 * kv_width
        k_rows, v_rows = weight[query_width: query_width + kv_width], weight[query_width + kv_width:]
        return s_hat @ k_rows.T, s_hat @ v_rows.T
    return attention.k_proj(s_hat), attention.v_proj(s_hat)


def score_scale(attention, head_dim):
    """The factor the layer multiplies q.k by: Granite's attention multiplier where the model has
    one, else the module's own `scaling` (Gemma: query_pre_attn_scalar**-0.5), else 1/sqrt(head_dim)."""
    multiplier = getattr(attention.config, "attention_multiplier", None)
    return multiplier if multiplier is not None else getattr(attention, "scaling", 1 / head_dim ** 0.5)

