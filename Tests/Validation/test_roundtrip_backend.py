"""Round trip of every model in the onnx package's backend test data, models we did not
write: `slowfast rewrite IN -o OUT` must give the same protobuf message, the same full-check
checker verdict, nothing but OUT in OUT's folder, and bitwise-identical onnxruntime outputs
(NaN-aware) on the recorded test_data_set_0 inputs wherever onnxruntime runs the original."""
import collections
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
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes() or (a.dtype.kind in "fc" and np.array_equal(a, b, equal_nan=True))


def round_trip(source, out):
    """(miss or None, how far the comparison went)."""
    out.parent.mkdir(parents=True)
    result = run("rewrite", source, "-o", out)
    if result.returncode != 0:
        return f"{source}: rewrite failed (exit {result.returncode}): {result.stderr.strip()}", "failed"
    written = sorted(p.name for p in out.parent.iterdir())
    if written != [out.name]:
        return f"{source}: OUT's folder holds {written}, expected only {out.name}", "failed"
    if onnx.load(str(source)) != onnx.load(str(out)):
        return f"{source}: onnx.load(OUT) differs from onnx.load(IN)", "failed"
    verdicts = checker_passes(source), checker_passes(out)
    if verdicts[0] != verdicts[1]:
        return f"{source}: onnx.checker full_check verdict changed from {verdicts[0]} to {verdicts[1]}", "failed"
    try:
        original = ort_session(source)
    except Exception:
        return None, "ort cannot load the original"
    inputs = recorded_inputs(source)
    if len(inputs) != len(original.get_inputs()):
        return None, "recorded inputs do not match the graph"
    feeds = {meta.name: value for meta, value in zip(original.get_inputs(), inputs)}
    try:
        expected = original.run(None, feeds)
    except Exception:
        return None, "ort cannot run the original"
    try:
        got = ort_session(out).run(None, feeds)
    except Exception as error:
        return f"{source}: onnxruntime runs the original but not OUT: {str(error)[:300]}", "failed"
    if len(expected) != len(got):
        return f"{source}: {len(expected)} outputs before, {len(got)} after", "failed"
    for index, (a, b) in enumerate(zip(expected, got)):
        if not same_outputs(a, b):
            return f"{source}: onnxruntime output {index} differs", "failed"
    return None, "outputs compared"


def test_every_backend_model_round_trips(tmp_path, capsys):
    models = backend_models()
    assert len(models) >= 149, f"expected the onnx backend test data (149 models in onnx 1.23), found {len(models)}"
    outs = [tmp_path / str(index) / "model.onnx" for index in range(len(models))]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(round_trip, models, outs))
    misses = [miss for miss, _ in results if miss]
    stages = collections.Counter(stage for _, stage in results)
    with capsys.disabled():
        print(f"\nround trip: {len(models) - len(misses)}/{len(models)}; "
              + ", ".join(f"{stage}: {count}" for stage, count in sorted(stages.items())))
    # Guards the test itself: most models must reach the bitwise output comparison.
    assert stages["outputs compared"] >= 90 or misses, dict(stages)
    assert not misses, "\n".join(misses)
