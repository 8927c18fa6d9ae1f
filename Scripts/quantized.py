"""Dequantizes the weights of quantized ONNX exports, and loads them into a PyTorch model.

Used by make-fixtures.py for its quantized fixtures: their references are computed from a
copy of the PyTorch model whose linear weights are the values the ONNX model holds (the
dequantized ones), not the float weights it was quantized from.

dequantized_weights(model) finds, for every quantized MatMul weight, the float [K, N] matrix
(y = x @ W) it stands for:

    MatMulNBits (com.microsoft)   B uint8 [N, k_blocks, blob] (codes packed low bits first along
                                  K), scales [N * k_blocks] or [N, k_blocks], optional
                                  zero_points (uint8 packed like B, or of the scales' type;
                                  default 2^(bits-1)): W[k, n] = (code - zero) * scale
    DequantizeLinear -> MatMul    an integer initializer, per tensor, per axis or blocked
    MatMulInteger -> Cast -> Mul  quantize_dynamic: int8 weight minus its zero point, times the
                                  weight scale, an initializer factor of the Mul after it
                                  (directly or through the Mul with the activation scale)

load_dequantized(model, weights) matches each of them with the PyTorch Linear weight (its
transpose) it came from, by the smallest max-abs difference, among single Linears, sibling
q/k/v and gate/up concatenations (a packed qkv_proj or gate_up MatMul) and the row blocks of
packed qkv_proj / gate_up_proj (a source packing that the exporter split), asserts that the
difference is below one quantization step everywhere, and writes the values into the model.
"""
import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass
class QuantizedWeight:
    name: str            # the initializer holding the quantized values
    node: str            # the node that reads it (MatMulNBits, DequantizeLinear, MatMulInteger)
    op: str
    weight: np.ndarray   # float32 [K, N], y = x @ weight
    step: np.ndarray     # float32 [K, N], the quantization step (scale) of each element


def _unpack(data, bits, count):
    """uint8 [..., bytes] holding `bits`-bit codes packed low bits first -> int64 [..., count]."""
    flat = np.unpackbits(data, axis=-1, bitorder="little")
    flat = flat[..., : count * bits].reshape(*data.shape[:-1], count, bits).astype(np.int64)
    return (flat << np.arange(bits)).sum(axis=-1)


def _matmulnbits(node, values):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    k, n, bits, block = attrs["K"], attrs["N"], attrs.get("bits", 4), attrs["block_size"]
    k_blocks = (k + block - 1) // block
    b = values[node.input[1]]
    if b.dtype != np.uint8:
        raise ValueError(f"{node.name}: B is {b.dtype}, not uint8")
    codes = _unpack(b.reshape(n, k_blocks, -1), bits, block)                    # [N, k_blocks, block]
    scales = values[node.input[2]].astype(np.float64).reshape(n, k_blocks)
    zero_name = node.input[3] if len(node.input) > 3 else ""
    if not zero_name:
        zeros = np.full((n, k_blocks), 2 ** (bits - 1), np.float64)
    else:
        z = values[zero_name]
        if z.dtype == np.uint8:
            zeros = _unpack(z.reshape(n, -1), bits, k_blocks).astype(np.float64)
        else:
            zeros = z.astype(np.float64).reshape(n, k_blocks)
    if len(node.input) > 4 and node.input[4]:
        raise ValueError(f"{node.name}: g_idx (act-order) is not supported")
    weight = (codes - zeros[..., None]) * scales[..., None]                     # [N, k_blocks, block]
    weight = weight.reshape(n, k_blocks * block)[:, :k].T
    step = np.repeat(np.abs(scales), block, axis=1)[:, :k].T
    return weight, step


def _broadcast_params(param, x, axis, block):
    """A DequantizeLinear scale or zero point broadcast to x's shape."""
    if param.ndim == 0 or param.size == 1:
        return np.broadcast_to(param.reshape(()), x.shape)
    axis = axis % x.ndim
    if block:
        return np.repeat(param, block, axis=axis).take(np.arange(x.shape[axis]), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return np.broadcast_to(param.reshape(shape), x.shape)


def _dequantize_linear(node, values):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x = values[node.input[0]].astype(np.float64)
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    scale = _broadcast_params(values[node.input[1]].astype(np.float64), x, axis, block)
    zero = (_broadcast_params(values[node.input[2]].astype(np.float64), x, axis, block)
            if len(node.input) > 2 and node.input[2] else 0.0)
    return (x - zero) * scale, np.abs(scale)


def dequantized_weights(model):
    """{initializer name: QuantizedWeight} for every quantized MatMul weight of `model` (an
    onnx.ModelProto with its external data loaded)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # Constant nodes (rare for weights, but cheap to allow)
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers, producers = {}, {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    found = {}

    def add(name, node, weight, step):
        if name in found:
            raise ValueError(f"{name} is read by two quantized MatMuls")
        found[name] = QuantizedWeight(name, node.name, node.op_type, weight.astype(np.float32), step.astype(np.float32))

    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            add(node.input[1], node, *_matmulnbits(node, values))
        elif node.op_type == "DequantizeLinear" and node.input[0] in values:
            readers = consumers.get(node.output[0], [])
            if any(r.op_type == "MatMul" and r.input[1] == node.output[0] for r in readers):
                weight, step = _dequantize_linear(node, values)
                if weight.ndim != 2:
                    raise ValueError(f"{node.name}: a {weight.ndim}-d MatMul weight")
                add(node.input[0], node, weight, step)
        elif node.op_type == "MatMulInteger" and node.input[1] in values:
            b = values[node.input[1]].astype(np.float64)
            zero = values[node.input[3]].astype(np.float64) if len(node.input) > 3 and node.input[3] else 0.0
            scale = _weight_scale(node, values, consumers, producers)
            scale = np.broadcast_to(scale.reshape(-1) if scale.size > 1 else scale.reshape(()), b.shape)
            add(node.input[1], node, (b - zero) * scale, np.abs(scale))
    return found


def _weight_scale(node, values, consumers, producers):
    """quantize_dynamic's weight scale for a MatMulInteger: MatMulInteger -> Cast -> Mul(y, s),
    s an initializer or Mul(activation scale, weight scale initializer)."""
    (cast,) = consumers[node.output[0]]
    (mul,) = consumers[cast.output[0]] if cast.op_type == "Cast" else (cast,)
    if mul.op_type != "Mul":
        raise ValueError(f"{node.name}: no Mul after MatMulInteger")
    other = mul.input[1] if mul.input[0] == (cast.output[0] if cast.op_type == "Cast" else node.output[0]) else mul.input[0]
    if other in values:
        return values[other].astype(np.float64)
    inner = producers[other]
    candidates = [name for name in inner.input if name in values] if inner.op_type == "Mul" else []
    if len(candidates) != 1:
        raise ValueError(f"{node.name}: cannot find the weight scale in {inner.name}")
    return values[candidates[0]].astype(np.float64)


def _linear_candidates(model):
    """(label, [(parameter, row slice)], [K, N] float weight) for every way a quantized MatMul
    weight can come from the model's Linear layers: a Linear, its siblings concatenated
    (q|k|v, gate|up), or row blocks of a packed qkv_proj / gate_up_proj."""
    import torch
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    candidates = []

    def add(label, parts):
        weight = np.concatenate([p.detach().double().numpy()[rows] for p, rows in parts], axis=0).T
        candidates.append((label, parts, weight))

    for name, module in linears.items():
        rows = module.weight.shape[0]
        add(name, [(module.weight, slice(0, rows))])
        leaf = name.rsplit(".", 1)[-1]
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if leaf == "qkv_proj":
            heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
            head_dim = rows // (heads + 2 * kv_heads)
            q, kv = heads * head_dim, kv_heads * head_dim
            for part, block in (("q", slice(0, q)), ("k", slice(q, q + kv)), ("v", slice(q + kv, rows))):
                add(f"{name}[{part}]", [(module.weight, block)])
        elif leaf == "gate_up_proj":
            half = rows // 2
            add(f"{name}[gate]", [(module.weight, slice(0, half))])
            add(f"{name}[up]", [(module.weight, slice(half, rows))])
        elif leaf == "q_proj" and all(hasattr(parent, p) for p in ("k_proj", "v_proj")):
            parts = [(getattr(parent, p).weight, slice(0, getattr(parent, p).weight.shape[0])) for p in ("q_proj", "k_proj", "v_proj")]
            add(name.replace("q_proj", "q_proj|k_proj|v_proj"), parts)
        elif leaf == "gate_proj" and hasattr(parent, "up_proj"):
            parts = [(getattr(parent, p).weight, slice(0, getattr(parent, p).weight.shape[0])) for p in ("gate_proj", "up_proj")]
            add(name.replace("gate_proj", "gate_proj|up_proj"), parts)
    return candidates


def match(model, weights):
    """{initializer name: (candidate label, parts, max abs diff, worst diff/step)}: the Linear
    weight each quantized weight came from; every difference must be below one step."""
    candidates = _linear_candidates(model)
    matches, used = {}, {}
    for name, quantized in weights.items():
        best = None
        for label, parts, weight in candidates:
            if weight.shape != quantized.weight.shape:
                continue
            diff = np.abs(weight - quantized.weight.astype(np.float64))
            if best is None or diff.max() < best[2]:
                best = (label, parts, float(diff.max()), float((diff / quantized.step).max()))
        if best is None:
            raise ValueError(f"{name}: no Linear of shape {quantized.weight.shape[::-1]}")
        if best[3] >= 1.0:
            raise ValueError(f"{name}: nearest Linear {best[0]} is {best[3]:.2f} steps away")
        if best[0] in used:
            raise ValueError(f"{name} and {used[best[0]]} both match {best[0]}")
        used[best[0]] = name
        matches[name] = best
    return matches


def load_dequantized(model, weights):
    """A copy of the PyTorch `model` whose Linear weights are the dequantized `weights`
    (dequantized_weights), and the match of each (see match)."""
    import torch
    matches = match(model, weights)
    copied = copy.deepcopy(model)
    params = dict(model.named_parameters())
    copied_params = dict(copied.named_parameters())
    by_id = {id(p): name for name, p in params.items()}
    with torch.no_grad():
        for name, (label, parts, _diff, _steps) in matches.items():
            rows = weights[name].weight.T  # [N, K]
            start = 0
            for parameter, block in parts:
                count = block.stop - block.start
                target = copied_params[by_id[id(parameter)]]
                target[block] = torch.from_numpy(rows[start:start + count].copy()).to(target.dtype)
                start += count
    return copied, matches


def float_twin(model, weights):
    """A copy of `model` computing in float with the dequantized `weights`: each MatMulNBits
    becomes MatMul (+ Add of its bias), each weight DequantizeLinear an initializer, each
    quantize_dynamic MatMulInteger -> Cast -> Mul chain a MatMul of the float activation, and
    each activation QuantizeLinear -> DequantizeLinear pair is bypassed. Run in onnxruntime it
    must agree with the dequantized PyTorch model as closely as a float export does."""
    model = copy.deepcopy(model)
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name for t in graph.initializer}
    by_node = {w.node: w for w in weights.values()}
    renames, drop, new_nodes = {}, set(), []
    for node in graph.node:
        weight = by_node.get(node.name)
        if node.op_type == "MatMulNBits" and weight is not None:
            graph.initializer.append(numpy_helper.from_array(weight.weight, weight.name + "_float"))
            if len(node.input) > 5 and node.input[5]:
                new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], weight.name + "_float"], [node.output[0] + "_nobias"]))
                new_nodes.append(onnx.helper.make_node("Add", [node.output[0] + "_nobias", node.input[5]], [node.output[0]]))
            else:
                new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], weight.name + "_float"], [node.output[0]]))
            drop.add(id(node))
        elif node.op_type == "DequantizeLinear" and weight is not None:
            graph.initializer.append(numpy_helper.from_array(weight.weight, node.output[0]))
            drop.add(id(node))
        elif node.op_type == "MatMulInteger" and weight is not None:
            (cast,) = consumers[node.output[0]]
            (mul,) = consumers[cast.output[0]]
            source = producers[node.input[0]]
            if source.op_type != "DynamicQuantizeLinear":
                raise ValueError(f"{node.name}: activation from {source.op_type}")
            graph.initializer.append(numpy_helper.from_array(weight.weight, weight.name + "_float"))
            new_nodes.append(onnx.helper.make_node("MatMul", [source.input[0], weight.name + "_float"], [mul.output[0]]))
            drop.update((id(node), id(cast), id(mul)))
        elif (node.op_type == "DequantizeLinear" and node.input[0] not in initializers
              and producers.get(node.input[0]) is not None and producers[node.input[0]].op_type == "QuantizeLinear"):
            renames[node.output[0]] = producers[node.input[0]].input[0]
            drop.add(id(node))
    kept = [n for n in graph.node if id(n) not in drop] + new_nodes
    for node in kept:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    for output in graph.output:
        if output.name in renames:
            raise ValueError(f"graph output {output.name} is a bypassed DequantizeLinear")
    del graph.node[:]
    graph.node.extend(_topological(kept, {t.name for t in graph.initializer} | {v.name for v in graph.input}))
    return model


def _topological(nodes, available):
    available, ordered, pending = set(available) | {""}, [], list(nodes)
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("float_twin: a cycle or a missing input: " + ", ".join(sorted({i for n in pending for i in n.input} - available))[:300])
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ids]
    return ordered
