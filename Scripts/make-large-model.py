#!/usr/bin/env python3
"""Makes a Qwen2-7B- or LLaMA-70B-shaped decoder export, laid out as torch.onnx's dynamo
exporter writes it, in seconds and without torch: every weight in one sparse external data
file (zeros; `truncate` gives it its size, nothing is allocated: ~30 GB for 7B, ~280 GB for
70B on paper, a few KB on disk).

    make-large-model.py {qwen2-7b,llama-70b} OUTDIR

The graph is the committed tiny dynamo fixture (Tests/Fixtures/qwen2-dynamo or llama-dynamo:
6 layers, hidden 64, 4/2 heads of 16, MLP 128, vocab 256), grown to the target's layer count
and dims the way the exporter would have written it at that size:

- layers 0-5 are the fixture's; layer L >= 6 repeats layer 5 with every numbered name
  (values, nodes, the FX names inside the node metadata) advanced by the per-layer stride
  of its counter, which is read off layers 4 and 5 (and checked against layers 3 and 4);
  names the exporter made after the layers (the final norm, lm_head, the rewriter's late
  constants) move by the stride times the number of added layers;
- initializers, value_info and nodes keep the exporter's order (layer 5's runs are followed
  by the added layers'); the parameter list in the graph metadata names every layer;
- dims are substituted by role in shapes, in the constants that hold them (head size,
  heads, half the head size, the attention scale, the RMSNorm epsilon, rotary inv_freq) and
  in the `pkg.torch.onnx.fx_node` argument lists;
- external data as onnx_ir writes it: float tensors over 256 bytes go to model.onnx.data,
  packed densely in initializer order (offset = sum of the lengths before it).

Deterministic: the same arguments give the same bytes.
"""
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]

# name: fixture, dims (HF config names), rope theta, RMSNorm epsilon
SHAPES = {
    "qwen2-7b": ("qwen2-dynamo", dict(num_hidden_layers=28, hidden_size=3584, num_attention_heads=28,
                                      num_key_value_heads=4, head_dim=128, intermediate_size=18944,
                                      vocab_size=152064), 1000000.0, 1e-06),
    # Qwen2-0.5B's dims (untied, unlike Scripts/make-bench-model.py's export): to compare the
    # grown layers with what the exporter wrote at that size.
    "qwen2-0.5b": ("qwen2-dynamo", dict(num_hidden_layers=24, hidden_size=896, num_attention_heads=14,
                                        num_key_value_heads=2, head_dim=64, intermediate_size=4864,
                                        vocab_size=151936), 1000000.0, 1e-06),
    "llama-70b": ("llama-dynamo", dict(num_hidden_layers=80, hidden_size=8192, num_attention_heads=64,
                                       num_key_value_heads=8, head_dim=128, intermediate_size=28672,
                                       vocab_size=128256), 500000.0, 1e-05),
}
INLINE_MAX_BYTES = 256  # onnx_ir.save's size_threshold_bytes: larger tensors go external
LAYER = re.compile(r"model\.model\.layers\.(\d+)(?=[.'\"/: ]|$)")
LAYER_TOKEN = re.compile(r"(?<=_layers_)(\d+)(?=_)")  # p_model_model_layers_5_mlp_up_proj_weight
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def fail(message):
    sys.exit(f"error: {message}")


def parse(name):
    """(family, number, rebuild) of a numbered exporter name, or None. `node_Add_80` (onnx_ir's
    node names) counts with `val_80`; `node_mul_440` is `node_` + the FX name `mul_440`."""
    m = re.fullmatch(r"node_[A-Z][A-Za-z0-9]*_(\d+)", name)
    if m:
        head = name[: m.start(1)]
        return "val", int(m.group(1)), lambda n: f"{head}{n}"
    if name.startswith("node_"):
        inner = parse(name[5:])
        if inner:
            family, number, rebuild = inner
            return family, number, lambda n: "node_" + rebuild(n)
        return None
    m = re.fullmatch(r"(.+)_(\d+)", name)
    if m:
        return m.group(1), int(m.group(2)), lambda n: f"{m.group(1)}_{n}"
    return None


class Grower:
    def __init__(self, fixture, layers):
        self.graph = fixture.graph
        self.layers = layers
        self.node_layer = [self.scope_layer(n) for n in self.graph.node]
        by = {}
        for node, layer in zip(self.graph.node, self.node_layer):
            by.setdefault(layer, []).append(node)
        self.fixture_layers = max(k for k in by if k is not None) + 1
        self.template = self.fixture_layers - 1
        if self.fixture_layers < 4:
            fail("the fixture needs at least 4 layers to read the per-layer strides")
        ops = [[n.op_type for n in by[k]] for k in range(1, self.fixture_layers)]
        if any(o != ops[-1] for o in ops):
            fail("fixture layers 1.. differ in their ops: cannot repeat the last one")
        self.stride, self.last = {}, {}
        self.learn(by[self.template - 1], by[self.template], check=False)
        self.learn(by[self.template - 2], by[self.template - 1], check=True)
        for node in by[self.template]:
            for token in self.tokens(node):
                p = parse(token)
                if p and p[0] in self.stride:
                    self.last[p[0]] = max(self.last.get(p[0], -1), p[1])
        self.added = layers - self.fixture_layers

    @staticmethod
    def scope_layer(node):
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                m = re.search(r"'model\.model\.layers\.(\d+)'", p.value)
                return int(m.group(1)) if m else None
        return None

    @staticmethod
    def tokens(node):
        out = [node.name, *node.input, *node.output]
        for p in node.metadata_props:
            if p.key != "pkg.torch.onnx.stack_trace":
                out += TOKEN.findall(LAYER.sub("", p.value))
        return out

    def learn(self, before, after, check):
        for a, b in zip(before, after):
            ta, tb = self.tokens(a), self.tokens(b)
            if len(ta) != len(tb):
                fail(f"fixture nodes {a.name} and {b.name} do not pair up")
            for x, y in zip(ta, tb):
                if x == y:
                    continue
                px, py = parse(x), parse(y)
                if not px or not py or px[0] != py[0]:
                    if LAYER.sub("", LAYER_TOKEN.sub("", x)) == LAYER.sub("", LAYER_TOKEN.sub("", y)):
                        continue
                    fail(f"fixture names {x} and {y} (nodes {a.name}, {b.name}) do not pair up")
                stride = py[1] - px[1]
                known = self.stride.setdefault(px[0], stride)
                if known != stride:
                    fail(f"counter {px[0]!r} advances by {known} and {stride} per layer")

    def rename(self, name, layer_shift):
        """A layer-`template` name in the added layer template+layer_shift (layer_shift > 0), or
        a name outside the layers (layer_shift == 0): moved past the added layers if the exporter
        numbered it after the last layer."""
        for pattern, form in ((LAYER, "model.model.layers.{}"), (LAYER_TOKEN, "{}")):
            if pattern.search(name):
                return pattern.sub(lambda m: form.format(int(m.group(1)) + layer_shift), name) if layer_shift else name
        p = parse(name)
        if not p or p[0] not in self.stride:
            return name
        family, number, rebuild = p
        if number > self.last[family]:
            return rebuild(number + self.added * self.stride[family])
        # The template layer's own names, and its previous layer's (the residual stream it reads).
        if layer_shift and number > self.last[family] - 2 * self.stride[family]:
            return rebuild(number + layer_shift * self.stride[family])
        return name

    def rename_text(self, text, layer_shift):
        if layer_shift:
            text = LAYER.sub(lambda m: f"model.model.layers.{int(m.group(1)) + layer_shift}"
                             if int(m.group(1)) == self.template else m.group(0), text)
        return TOKEN.sub(lambda m: self.rename(m.group(0), layer_shift), text)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SHAPES:
        sys.exit(__doc__)
    start = time.time()
    shape, out = sys.argv[1], Path(sys.argv[2])
    fixture_name, dims, theta, eps = SHAPES[shape]
    fixture_dir = REPO / "Tests/Fixtures" / fixture_name
    model = onnx.load(str(fixture_dir / "model.onnx"), load_external_data=False)
    small = json.loads((fixture_dir / "config.json").read_text())
    grow = Grower(model, dims["num_hidden_layers"])
    g = model.graph

    h, hd, heads, kv = dims["hidden_size"], dims["head_dim"], dims["num_attention_heads"], dims["num_key_value_heads"]
    s_h, s_hd, s_heads, s_kv = small["hidden_size"], small["head_dim"], small["num_attention_heads"], small["num_key_value_heads"]
    if len({s_h, s_hd, s_heads, s_kv * s_hd, small["intermediate_size"], s_hd // 2, small["vocab_size"]}) != 7:
        fail(f"{fixture_name}: its dims collide; cannot substitute them by value")
    by_value = {s_h: h, s_hd: hd, s_heads: heads, s_kv * s_hd: kv * hd, small["intermediate_size"]: dims["intermediate_size"],
                s_hd // 2: hd // 2, small["vocab_size"]: dims["vocab_size"]}

    def float_dims(ds):
        """Dims of a float value of the fixture at the target's size. The only ambiguous one,
        the fixture's kv heads = its heads per kv head, is told apart by its place in the
        GQA expand [batch, kv, n_rep, seq, head_dim]."""
        out = []
        for i, d in enumerate(ds):
            if d == s_kv and len(ds) == 5 and i == 2 and ds[1] == s_kv:
                out.append(heads // kv)
            elif d == s_kv and ds.count(s_kv) and i in (1, 2):
                out.append(kv)
            else:
                out.append(by_value.get(d, d))
        return out

    def grow_type(value_info):
        tt = value_info.type.tensor_type
        if tt.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
            fixed = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            new = float_dims([d if d is not None else -1 for d in fixed])
            for d, f, n in zip(tt.shape.dim, fixed, new):
                if f is not None:
                    d.dim_value = n

    # Constants that hold dims, by value and role (checked: each must be found).
    roles = {(onnx.TensorProto.INT64, (s_hd,)): hd, (onnx.TensorProto.INT64, (s_heads,)): heads,
             (onnx.TensorProto.INT64, (s_hd // 2,)): hd // 2}
    found = set()

    def grow_tensor(t):
        if t.name == "model.model.rotary_emb.inv_freq":
            arr = (1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
            found.add("inv_freq")
            return
        if t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1 and t.dims[0] == 1:
            v = int(numpy_helper.to_array(t)[0])
            if (t.data_type, (v,)) in roles:
                t.CopyFrom(numpy_helper.from_array(np.array([roles[(t.data_type, (v,))]], dtype=np.int64), t.name))
                found.add(v)
            return
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 0:
            v = float(numpy_helper.to_array(t))
            if math.isclose(v, s_hd ** -0.5, rel_tol=1e-6):
                t.CopyFrom(numpy_helper.from_array(np.array(hd ** -0.5, dtype=np.float32), t.name))
                found.add("scale")
            elif math.isclose(v, small["rms_norm_eps"], rel_tol=1e-6):
                t.CopyFrom(numpy_helper.from_array(np.array(eps, dtype=np.float32), t.name))
                found.add("eps")
            return
        if t.data_type == onnx.TensorProto.FLOAT:
            new = float_dims(list(t.dims))
            del t.dims[:]
            t.dims.extend(new)
            t.ClearField("raw_data")
            t.ClearField("float_data")
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT

    def grow_fx(text):
        """The dims inside an FX node's printed arguments."""
        text = re.sub(rf"(-1, ){s_hd}\]", rf"\g<1>{hd}]", text)
        text = re.sub(rf"(%\w+, ){s_kv}, {s_kv}(, %\w+, ){s_hd}\]", rf"\g<1>{kv}, {heads // kv}\g<2>{hd}]", text)
        text = re.sub(rf"(%\w+, ){s_heads}(, %\w+, ){s_hd}\]", rf"\g<1>{heads}\g<2>{hd}]", text)
        text = re.sub(rf"(%\w+, 3, )0, {s_hd // 2}\)", rf"\g<1>0, {hd // 2})", text)
        text = re.sub(rf"(%\w+, 3, ){s_hd // 2}, ", rf"\g<1>{hd // 2}, ", text)
        text = re.sub(rf"(aten\.mul\.Tensor\]\(args = \(%\w+, ){s_hd ** -0.5!r}\)", rf"\g<1>{hd ** -0.5!r})", text)
        text = re.sub(rf"(args = \(%\w+, ){small['rms_norm_eps']!r}\)", rf"\g<1>{eps!r})", text)
        return text

    # Owners: the layer whose nodes alone use or make a name (None: shared, head or tail).
    users = {}
    for node, layer in zip(g.node, grow.node_layer):
        for name in [*node.input, *node.output]:
            users.setdefault(name, set()).add(layer)
    owner = {name: next(iter(ls)) for name, ls in users.items() if len(ls) == 1}

    def expand(items, layers, clone, fix):
        """`items` in order, each fixed up; after each run of the template layer's items,
        its clones for the added layers."""
        result, run = [], []
        for item, layer in [*zip(items, layers), (None, None)]:
            if item is not None and layer == grow.template:
                run.append(item)
                continue
            if run:
                clones = [clone(r, shift) for shift in range(1, grow.added + 1) for r in run]
                for r in run:
                    fix(r)
                result += run + clones
                run = []
            if item is not None:
                fix(item)
                result.append(item)
        return result

    def copy(proto):
        c = type(proto)()
        c.CopyFrom(proto)
        return c

    def clone_node(node, shift):
        c = copy(node)
        c.name = grow.rename(node.name, shift)
        c.input[:] = [grow.rename(x, shift) for x in node.input]
        c.output[:] = [grow.rename(x, shift) for x in node.output]
        for p in c.metadata_props:
            if p.key != "pkg.torch.onnx.stack_trace":
                p.value = grow.rename_text(p.value, shift)
            if p.key == "pkg.torch.onnx.fx_node":
                p.value = grow_fx(p.value)
        return c

    def fix_node(node):
        node.name = grow.rename(node.name, 0)
        node.input[:] = [grow.rename(x, 0) for x in node.input]
        node.output[:] = [grow.rename(x, 0) for x in node.output]
        for p in node.metadata_props:
            if p.key != "pkg.torch.onnx.stack_trace":
                p.value = grow.rename_text(p.value, 0)
            if p.key == "pkg.torch.onnx.fx_node":
                p.value = grow_fx(p.value)

    def clone_named(proto, shift, fix):
        c = copy(proto)
        c.name = grow.rename(proto.name, shift)
        fix(c)
        return c

    def fix_tensor(t):
        t.name = grow.rename(t.name, 0)
        grow_tensor(t)

    def fix_info(v):
        v.name = grow.rename(v.name, 0)
        grow_type(v)

    nodes = expand([copy(n) for n in g.node], grow.node_layer, clone_node, fix_node)
    inits = expand([copy(t) for t in g.initializer], [owner.get(t.name) for t in g.initializer],
                   lambda t, s: clone_named(t, s, grow_tensor), fix_tensor)
    infos = expand([copy(v) for v in g.value_info], [owner.get(v.name) for v in g.value_info],
                   lambda v, s: clone_named(v, s, grow_type), fix_info)
    split_gqa_constants(nodes, inits, kv, heads // kv, s_hd, hd)
    missing = {"inv_freq", "scale", "eps", s_hd, s_heads, s_hd // 2} - found
    if missing:
        fail(f"{fixture_name}: constants for {sorted(map(str, missing))} not found; the fixture's layout changed")
    for v in [*g.input, *g.output]:
        v.name = grow.rename(v.name, 0)
        grow_type(v)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    g.value_info.extend(infos)
    for p in g.metadata_props:
        if p.key == "pkg.torch.export.ExportedProgram.graph_signature":
            p.value = grow_signature(p.value, grow)

    # External data as onnx_ir lays it out: dense, in initializer order.
    out.mkdir(parents=True, exist_ok=True)
    data = out / "model.onnx.data"
    offset = 0
    for t in g.initializer:
        if t.data_type != onnx.TensorProto.FLOAT or t.raw_data or t.float_data:
            continue
        length = 4 * math.prod(t.dims)
        if length <= INLINE_MAX_BYTES:
            t.raw_data = bytes(length)
            continue
        t.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        offset += length
    with open(data, "wb") as f:
        f.truncate(offset)  # sparse: no block is written
    (out / "model.onnx").write_bytes(model.SerializeToString(deterministic=True))
    config = dict(small, **dims, rope_parameters={"rope_theta": theta, "rope_type": "default"}, rms_norm_eps=eps,
                  layer_types=["full_attention"] * dims["num_hidden_layers"], max_window_layers=dims["num_hidden_layers"])
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    disk = os.stat(data).st_blocks * 512
    print(f"{out / 'model.onnx'}: {len(g.node)} nodes, {len(g.initializer)} initializers, "
          f"{(out / 'model.onnx').stat().st_size / 1e6:.1f} MB; {data.name}: {offset / 1e9:.1f} GB "
          f"({disk} bytes on disk) in {time.time() - start:.1f} s")


def split_gqa_constants(nodes, inits, kv, n_rep, small_hd, hd):
    """The GQA expand's shape, Concat(batch, kv, n_rep, seq, head_dim): the fixture's kv heads
    and heads per kv head are both 2 and share the axis constant [2]; at size they are their
    own constants unless their value is one an earlier constant already holds (the exporter's
    optimizer keeps the first of equal constants). A new constant is named as the exporter
    numbers it (n_rep: val_<Concat's number - 3>, as in a Qwen2-0.5B export, kv just before) and
    placed after the head-dim constant, as there."""
    ints = {}
    for t in inits:
        if t.data_type == onnx.TensorProto.INT64 and list(t.dims) == [1]:
            ints.setdefault(int(numpy_helper.to_array(t)[0]), t.name)
    concat = [n for n in nodes if n.op_type == "Concat" and len(n.input) == 5
              and any(m.op_type == "Expand" and m.input[1] == n.output[0] for m in nodes)]
    if not concat:
        fail("no GQA expand shape (Concat of 5 feeding Expand) in the fixture")
    number = int(re.fullmatch(r"node_Concat_(\d+)", concat[0].name).group(1))
    head_dim = ints[hd]
    at = next(i for i, t in enumerate(inits) if t.name == head_dim) + 1
    for position, value, name in ((1, kv, f"val_{number - 4}"), (2, n_rep, f"val_{number - 3}")):
        if value not in ints:
            inits.insert(at, numpy_helper.from_array(np.array([value], dtype=np.int64), name))
            at += 1
            ints[value] = name
        for n in concat:
            n.input[position] = ints[value]


def grow_signature(text, grow):
    """The exported program's parameter list, with the added layers' parameters."""
    lines = text.split("\n")
    template = [line for line in lines if f"layers_{grow.template}_" in line]
    if not template:
        fail("graph signature: no parameters of the fixture's last layer")
    at = lines.index(template[-1]) + 1
    added = []
    for shift in range(1, grow.added + 1):
        layer = grow.template + shift
        added += [line.replace(f"layers_{grow.template}_", f"layers_{layer}_")
                  .replace(f"layers.{grow.template}.", f"layers.{layer}.") for line in template]
    lines[at:at] = added
    return "\n".join(grow.rename_text(line, 0) for line in lines)


if __name__ == "__main__":
    main()
