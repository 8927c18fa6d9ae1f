"""Round trip of every model in the onnx package's backend test data, models we did not
write: `slowfast rewrite IN -o OUT` must give the same protobuf message, the same checker
verdict and identical onnxruntime outputs."""
import glob
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from conftest import backend_models, checker_passes, ort_session, run


def recorded_inputs(model_path):
    folder = Path(model_path).parent / "test_data_set_0"
    tensors = []
    for file in sorted(glob.glob(str(folder / "input_*.pb")), key=lambda p: int(Path(p).stem.split("_")[1])):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(Path(file).read_bytes())
        tensors.append(numpy_helper.to_array(tensor))
    return tensors


def same_outputs(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return np.array_equal(a, b, equal_nan=True)
    return np.array_equal(a, b)


def round_trip(source, out_folder):
    out = out_folder / (source.parent.name + "-" + source.name)
    result = run("rewrite", source, "-o", out)
    if result.returncode != 0:
        return f"{source}: rewrite failed: {result.stderr.strip()}"
    if onnx.load(source) != onnx.load(out):
        return f"{source}: onnx.load(OUT) differs from onnx.load(IN)"
    if checker_passes(source) != checker_passes(out):
        return f"{source}: onnx.checker verdict changed"
    try:
        original = ort_session(source)
    except Exception:
        return None  # onnxruntime does not run the original; nothing to compare
    inputs = recorded_inputs(source)
    if len(inputs) != len(original.get_inputs()):
        return None
    feeds = {meta.name: value for meta, value in zip(original.get_inputs(), inputs)}
    try:
        expected = original.run(None, feeds)
    except Exception:
        return None
    got = ort_session(out).run(None, feeds)
    if not all(same_outputs(a, b) for a, b in zip(expected, got)):
        return f"{source}: onnxruntime outputs differ"
    return None


def test_every_backend_model_round_trips(tmp_path):
    models = backend_models()
    assert len(models) >= 100, f"expected the onnx backend test data, found {len(models)} models"
    with ThreadPoolExecutor(2) as pool:
        misses = [m for m in pool.map(lambda p: round_trip(p, tmp_path), models) if m]
    print(f"\nround trip: {len(models) - len(misses)}/{len(models)}")
    assert not misses, "\n".join(misses)
