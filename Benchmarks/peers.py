#!/usr/bin/env python3
"""The peers of `slowfast rewrite` in Benchmarks/bench.py: the same edit made with onnx_ir and
with onnx-graphsurgeon, each as its own process (the one bench.py times).

    peers.py patch INPUT.onnx SLOWFAST_OUTPUT.onnx PATCH_DIR    # untimed: what slowfast changed
    peers.py onnx_ir INPUT.onnx PATCH_DIR OUTPUT.onnx             # timed: load, edit, save
    peers.py graphsurgeon INPUT.onnx PATCH_DIR OUTPUT.onnx        # timed: load, edit, save

`patch` reads slowfast's output beside its input (graphs only, plus the new parameters' values
from slowfast's new data file) and keeps: the nodes it added (in order), the nodes it removed,
the inputs it rewired, its new graph inputs, initializers (values in PATCH_DIR/new.npz),
functions and opset imports. A peer loads INPUT, applies exactly that, and saves OUTPUT with
the input's weights kept where they are (OUTPUT's folder gets a hard link to the input's data
file, as `slowfast rewrite --weights link` does); new parameters are written as the peer
writes them (inline in the model file: neither library can append a second data file while
keeping the first by reference). bench.py checks each result afterwards (untimed): the node
count of slowfast's output, and onnx.checker.
"""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def external_array(tensor, folder):
    """The values of an external tensor of slowfast's output (read from its data file)."""
    info = {e.key: e.value for e in tensor.external_data}
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    with open(Path(folder) / info["location"], "rb") as f:
        f.seek(int(info.get("offset", 0)))
        return np.frombuffer(f.read(int(info["length"])), dtype=dtype, count=count).reshape(tuple(tensor.dims))


def make_patch(before_path, after_path, out_dir):
    before = onnx.load(before_path, load_external_data=False)
    after = onnx.load(after_path, load_external_data=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old_nodes = {n.name: n for n in before.graph.node}
    new_names = {n.name for n in after.graph.node}
    if len(old_nodes) != len(before.graph.node) or len(new_names) != len(after.graph.node):
        sys.exit("peers.py patch: node names are not unique; cannot tell what changed")
    added = [n.SerializeToString() for n in after.graph.node if n.name not in old_nodes]
    removed = [name for name in old_nodes if name not in new_names]
    rewired = {n.name: list(n.input) for n in after.graph.node
               if n.name in old_nodes and list(n.input) != list(old_nodes[n.name].input)}
    old_inits = {t.name for t in before.graph.initializer}
    arrays, inline = {}, []
    for t in after.graph.initializer:
        if t.name in old_inits:
            continue
        if t.data_location == onnx.TensorProto.EXTERNAL:
            arrays[t.name] = external_array(t, Path(after_path).parent)
        else:
            inline.append(t.SerializeToString())
    old_inputs = {i.name for i in before.graph.input}
    patch = dict(added=added, removed=removed, rewired=rewired, inline=inline,
                 inputs=[i.SerializeToString() for i in after.graph.input if i.name not in old_inputs],
                 outputs=[o.name for o in after.graph.output],
                 functions=[f.SerializeToString() for f in after.functions],
                 opsets={o.domain: o.version for o in after.opset_import},
                 nodes=len(after.graph.node))
    np.savez(out_dir / "new.npz", **arrays)
    (out_dir / "patch.pkl").write_bytes(pickle.dumps(patch))
    print(f"patch: {len(added)} nodes added, {len(removed)} removed, {len(rewired)} rewired, "
          f"{len(arrays) + len(inline)} new initializers ({sum(a.nbytes for a in arrays.values()) / 1e6:.1f} MB)")


def link_data(input_path, output_path):
    """Hard-links the input's data files beside the output (what --weights link does)."""
    model_dir, out_dir = Path(input_path).parent, Path(output_path).parent
    for data in model_dir.glob(Path(input_path).name + "*.data"):
        target = out_dir / data.name
        if not target.exists():
            os.link(data, target)


def load_patch(patch_dir):
    patch = pickle.loads((Path(patch_dir) / "patch.pkl").read_bytes())
    arrays = np.load(Path(patch_dir) / "new.npz", mmap_mode="r")
    return patch, arrays


def apply_onnx_ir(input_path, patch_dir, output_path):
    import onnx_ir as ir
    patch, arrays = load_patch(patch_dir)
    model = ir.load(input_path)
    graph = model.graph
    values = {v.name: v for v in graph.inputs}
    values.update(graph.initializers)
    for node in graph:
        values.update({v.name: v for v in node.outputs})
    for raw in patch["inputs"]:
        proto = onnx.ValueInfoProto.FromString(raw)
        value = ir.serde.deserialize_value_info_proto(proto, None)
        graph.inputs.append(value)
        values[value.name] = value
    for name in arrays.files:
        value = ir.Value(name=name, const_value=ir.tensor(np.asarray(arrays[name]), name=name))
        graph.register_initializer(value)
        values[name] = value
    for raw in patch["inline"]:
        tensor = ir.serde.deserialize_tensor(onnx.TensorProto.FromString(raw))
        value = ir.Value(name=tensor.name, const_value=tensor)
        graph.register_initializer(value)
        values[value.name] = value
    by_name = {node.name: node for node in graph}
    graph.remove([by_name[name] for name in patch["removed"]], safe=False)
    added = []
    for raw in patch["added"]:
        proto = onnx.NodeProto.FromString(raw)
        node = ir.Node(proto.domain, proto.op_type, inputs=[values.get(name) if name else None for name in proto.input],
                       attributes=[ir.serde.deserialize_attribute(a) for a in proto.attribute],
                       num_outputs=len(proto.output), name=proto.name)
        for value, name in zip(node.outputs, proto.output):
            value.name = name
            values[name] = value
        added.append((node, proto))
    for node, proto in added:  # inputs made by nodes added later in the list
        for index, name in enumerate(proto.input):
            if name and node.inputs[index] is None:
                node.replace_input_with(index, values[name])
        graph.append(node)
    for name, inputs in patch["rewired"].items():
        node = by_name[name]
        for index, input_name in enumerate(inputs):
            if node.inputs[index] is None or node.inputs[index].name != input_name:
                node.replace_input_with(index, values[input_name])
    graph.outputs[:] = [values[name] for name in patch["outputs"]]
    for raw in patch["functions"]:
        function = ir.serde.deserialize_function(onnx.FunctionProto.FromString(raw))
        model.functions[function.identifier()] = function
    model.opset_imports.update(patch["opsets"])
    graph.sort()
    link_data(input_path, output_path)
    ir.save(model, output_path)


def apply_graphsurgeon(input_path, patch_dir, output_path):
    import onnx_graphsurgeon as gs
    patch, arrays = load_patch(patch_dir)
    model = onnx.load(input_path, load_external_data=False)
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    for raw in patch["inputs"]:
        proto = onnx.ValueInfoProto.FromString(raw)
        tt = proto.type.tensor_type
        variable = gs.Variable(proto.name, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type),
                               shape=[d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim])
        graph.inputs.append(variable)
        tensors[proto.name] = variable
    for name in arrays.files:
        tensors[name] = gs.Constant(name, np.asarray(arrays[name]))
    for raw in patch["inline"]:
        proto = onnx.TensorProto.FromString(raw)
        tensors[proto.name] = gs.Constant(proto.name, numpy_helper.to_array(proto))
    removed = set(patch["removed"])
    for node in graph.nodes:
        if node.name in removed:
            node.inputs.clear()
            node.outputs.clear()
    graph.nodes = [n for n in graph.nodes if n.name not in removed]

    def tensor(name):
        if name not in tensors:
            tensors[name] = gs.Variable(name)
        return tensors[name]

    def attribute(a):
        value = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            return gs.Constant(a.t.name or a.name, numpy_helper.to_array(a.t))
        return value.decode() if isinstance(value, bytes) else value

    for raw in patch["added"]:
        proto = onnx.NodeProto.FromString(raw)
        graph.nodes.append(gs.Node(proto.op_type, name=proto.name, domain=proto.domain or None,
                                   attrs={a.name: attribute(a) for a in proto.attribute},
                                   inputs=[tensor(n) if n else gs.Variable.empty() for n in proto.input],
                                   outputs=[tensor(n) for n in proto.output]))
    by_name = {n.name: n for n in graph.nodes}
    for name, inputs in patch["rewired"].items():
        by_name[name].inputs = [tensor(n) if n else gs.Variable.empty() for n in inputs]
    graph.outputs = [tensor(n) for n in patch["outputs"]]
    graph.toposort()
    exported = gs.export_onnx(graph, do_type_check=False)
    exported.functions.extend(onnx.FunctionProto.FromString(raw) for raw in patch["functions"])
    known = {o.domain for o in exported.opset_import}
    for domain, version in patch["opsets"].items():
        if domain not in known:
            exported.opset_import.add(domain=domain, version=version)
    link_data(input_path, output_path)
    onnx.save(exported, output_path)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("patch", "onnx_ir", "graphsurgeon"):
        sys.exit(__doc__)
    command, a, b, c = sys.argv[1:]
    {"patch": make_patch, "onnx_ir": apply_onnx_ir, "graphsurgeon": apply_graphsurgeon}[command](a, b, c)


if __name__ == "__main__":
    main()
