"""Shared helpers for the validation suite: where the CLI is, how to run it quietly."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def binary():
    path = Path(os.environ.get("SLOWFAST_BIN", REPO / ".build/debug/slowfast"))
    if not path.is_file() or not os.access(path, os.X_OK):
        where = "SLOWFAST_BIN" if "SLOWFAST_BIN" in os.environ else "the default location"
        pytest.fail(f"slowfast binary not found (or not executable) at {path} ({where}): run `swift build` "
                    f"(or `make test`) first, or set SLOWFAST_BIN", pytrace=False)
    return path


def debug_binary():
    """The debug build of the CLI, for tests of hooks that only a debug build has (a pause
    inside a commit, `SLOWFAST_TEST_COMMIT_PAUSE_MS`). The rest of the suite runs `binary()`,
    which `make test` points at the release build users install."""
    path = Path(os.environ.get("SLOWFAST_DEBUG_BIN", REPO / ".build/debug/slowfast"))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"debug build of slowfast not found at {path}: run `swift build` or set SLOWFAST_DEBUG_BIN", pytrace=False)
    return path


def run(*args, **kwargs):
    """Runs the CLI; returns the CompletedProcess (text mode)."""
    return subprocess.run([str(binary()), *map(str, args)], capture_output=True, text=True, **kwargs)


@pytest.fixture()
def folders(tmp_path):
    """An input folder and an output folder, both empty: (tmp_path/in, tmp_path/out)."""
    source = tmp_path / "in"
    source.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return source, out


def session_options():
    """onnxruntime session options for the suite: warnings off, and, under pytest-xdist, the
    cores shared between the workers (each session's own thread pool would otherwise take
    every core and spin against the other workers' pools and the CLI runs)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // workers)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def ort_session(model):
    import onnx
    import onnxruntime as ort
    options = session_options()
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options)


def backend_models():
    import onnx
    root = Path(onnx.__file__).parent / "backend/test/data"
    return sorted(root.rglob("*.onnx"))


def checker_passes(path):
    """onnx.checker's full-check verdict on the model at `path`."""
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return True
    except Exception:  # the checker raises several exception types
        return False


def slow_inputs_off(batch, num_slow, dtype=None):
    """The "off" values of a rewritten model's mask inputs (README, docs/DESIGN.md §3): every
    slow token real, no position excluded from querying. Both are real inputs: feed them."""
    import numpy as np
    return {"slow_tokens_mask": np.ones((batch, num_slow), dtype or np.float32),
            "slow_query_exclude": np.zeros((batch, 1, 2), np.int64)}


def query_mask_of(exclude, length, start=0):
    """[batch, length] float64: 1 where position start+j may query, for `slow_query_exclude` ranges."""
    import numpy as np
    exclude = np.asarray(exclude)
    positions = start + np.arange(length)
    inside = (positions[None, :, None] >= exclude[:, None, :, 0]) & (positions[None, :, None] < exclude[:, None, :, 1])
    return (~inside.any(-1)).astype(np.float64)
