"""NumPy reference of the slow-fast hybrid layer's cross-attention (docs/DESIGN.md §1).

Written from the equations, independently of the Swift pass, so tests can compare the
rewritten graph's numbers with it:

    S_hat = Norm_in(S)                          (the layer's input norm: RMSNorm, or LayerNorm
                                                with its bias; weight and eps its own)
    [K_x | V_x] = S_hat W_kv^T + b_kv           (no RoPE; GQA repeat to all query heads)
    A_x = softmax(Q K_x^T * scale + mask) V_x   (scale: the layer's own, 1/sqrt(hd) unless the
                                                model says otherwise, e.g. Granite's multiplier)
    g = tanh(A_sa w_g^T + b_g) * tanh(alpha)
    o_proj input = A_sa + m * g * A_x
"""
import numpy as np


def rms_norm(x, weight, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def layer_norm(x, weight, bias, eps):
    x = x.astype(np.float64)
    centered = x - np.mean(x, axis=-1, keepdims=True)
    y = centered / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + eps) * weight
    return y if bias is None else y + bias


def hybrid_attention_input(a_sa, q, slow, norm_weight, eps, kv_weight, kv_bias, gate_weight, gate_bias, alpha,
                           heads, kv_heads, head_dim, slow_mask=None, query_mask=None, k_norm=None, scale=None, softcap=None,
                           layer_norm_bias=None, centered=False):
    """a_sa [B, L, H*hd]; q [B, H, L, hd] (after RoPE); slow [B, N, d];
    kv_weight [2*kv*hd, d] (PyTorch layout); gate_weight [1, H*hd]; k_norm: (weight [hd], eps)
    of the layer's per-head key norm (Qwen3, Gemma 3), or (weight [kv*hd], eps) of a full-width
    one (OLMo-2, before the head split), applied to the slow keys; scale: the layer's score
    factor (default 1/sqrt(hd)); softcap: the layer's tanh(s / cap) * cap before the mask
    (Gemma 2); centered: the input norm is a LayerNorm (StableLM, Cohere), with
    layer_norm_bias where it has one. Returns [B, L, H*hd]."""
    a_sa, q, slow = (np.asarray(v, np.float64) for v in (a_sa, q, slow))  # float16 inputs too
    batch, length, _ = a_sa.shape
    n = slow.shape[1]
    kv_width = kv_heads * head_dim
    if norm_weight is None:
        s_hat = slow  # OLMo-2: no input norm
    elif centered:
        s_hat = layer_norm(slow, norm_weight, layer_norm_bias, eps)
    else:
        s_hat = rms_norm(slow, norm_weight, eps)
    kv = s_hat @ kv_weight.T.astype(np.float64) + kv_bias
    k = kv[..., :kv_width]
    if k_norm is not None and np.size(k_norm[0]) == kv_width:
        k = rms_norm(k, np.asarray(k_norm[0], np.float64), k_norm[1])
    k = k.reshape(batch, n, kv_heads, head_dim)
    if k_norm is not None and np.size(k_norm[0]) == head_dim:
        k = rms_norm(k, np.asarray(k_norm[0], np.float64), k_norm[1])
    k = k.transpose(0, 2, 1, 3)
    v = kv[..., kv_width:].reshape(batch, n, kv_heads, head_dim).transpose(0, 2, 1, 3)
    repeat = heads // kv_heads
    k = np.repeat(k, repeat, axis=1)  # query head h uses kv head h // repeat, as HF repeat_kv
    v = np.repeat(v, repeat, axis=1)
    scores = q.astype(np.float64) @ k.transpose(0, 1, 3, 2) * (1 / np.sqrt(head_dim) if scale is None else scale)
    if softcap is not None:
        scores = np.tanh(scores / softcap) * softcap
    if slow_mask is not None:
        scores = scores + (np.asarray(slow_mask, np.float64)[:, None, None, :] - 1.0) * 1e9
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    a_x = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
    gate = np.tanh(a_sa.astype(np.float64) @ gate_weight.T + gate_bias) * np.tanh(alpha)
    m = np.ones((batch, length, 1)) if query_mask is None else np.asarray(query_mask, np.float64)[:, :, None]
    return a_sa + m * gate * a_x
