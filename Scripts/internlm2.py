"""A tiny InternLM2-style decoder, written here (no trust_remote_code; transformers 5.24 has no
InternLM2): transformers' LLaMA with InternLM2's module names and its one fused `wqkv`.

InternLM2's modeling lays `wqkv`'s outputs out per key/value head: for each of the
num_key_value_heads groups, its num_key_value_groups query heads, then its key head, then its
value head, each head_dim wide (rearrange "b q (h gs d) -> b q h gs d", gs = 2 + groups;
q = [..., :groups, :], k = [..., -2, :], v = [..., -1, :]). So a key head's rows in `wqkv` are
strided: one head_dim block every (groups + 2) * head_dim rows. RoPE, masks, the KV cache and
eager attention are transformers' LLaMA code. Parameter names are InternLM2's: tok_embeddings,
layers.N.attention.{wqkv,wo}, layers.N.feed_forward.{w1,w3,w2}, attention_norm, ffn_norm,
norm, output.
"""
import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import (ACT2FN, LlamaAttention, LlamaModel, LlamaRMSNorm,
                                                      apply_rotary_pos_emb, eager_attention_forward)


class InternLM2Attention(LlamaAttention):
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        del self.q_proj, self.k_proj, self.v_proj, self.o_proj
        kv_heads = config.num_key_value_heads
        self.wqkv = nn.Linear(config.hidden_size, kv_heads * (self.num_key_value_groups + 2) * self.head_dim,
                              bias=config.attention_bias)
        self.wo = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=config.attention_bias)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        groups = self.num_key_value_groups
        qkv = self.wqkv(hidden_states).view(*input_shape, -1, groups + 2, self.head_dim)
        query_states = qkv[..., :groups, :].reshape(*input_shape, -1, self.head_dim).transpose(1, 2)
        key_states = qkv[..., -2, :].transpose(1, 2)
        value_states = qkv[..., -1, :].transpose(1, 2)
        cos, sin = position_embeddings
        # Looked up in this module at call time, so a reference can record the rotated query.
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        if cache is not None:
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)
        attn_output, attn_weights = eager_attention_forward(self, query_states, key_states, value_states, attention_mask,
                                                            scaling=self.scaling)
        return self.wo(attn_output.reshape(*input_shape, -1).contiguous()), attn_weights


class InternLM2MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.w2(self.act_fn(self.w1(x)) * self.w3(x))


class InternLM2DecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.attention = InternLM2Attention(config, layer_idx)
        self.feed_forward = InternLM2MLP(config)
        self.attention_norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.ffn_norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, cache=None, **kwargs):
        attended, _ = self.attention(self.attention_norm(hidden_states), position_embeddings=position_embeddings,
                                     attention_mask=attention_mask, cache=cache)
        hidden_states = hidden_states + attended
        return hidden_states + self.feed_forward(self.ffn_norm(hidden_states))


class InternLM2Model(LlamaModel):
    """LlamaModel's forward (masks, RoPE, cache) over InternLM2's embedding and layers."""

    def __init__(self, config):
        super().__init__(config)
        del self.embed_tokens
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([InternLM2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        return super().forward(inputs_embeds=self.tok_embeddings(input_ids), attention_mask=attention_mask,
                               cache=past_key_values, use_cache=use_cache)


class InternLM2ForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = InternLM2Model(config)
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                            use_cache=use_cache)
        return CausalLMOutputWithPast(logits=self.output(output.last_hidden_state), past_key_values=output.past_key_values)


def config_json(config):
    """config.json as InternLM2's own config names the model (its fields are LLaMA's)."""
    values = config.to_dict()
    values.update(model_type="internlm2", architectures=["InternLM2ForCausalLM"], bias=config.attention_bias)
    return values


__all__ = ["InternLM2ForCausalLM", "LlamaConfig", "config_json", "modeling_llama"]
