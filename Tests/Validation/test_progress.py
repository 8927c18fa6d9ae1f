"""A progress line for long work: a copy of a 1.2 GB data file (sparse on the input side)
shows `writing model.onnx: X of 1.2 GB, R MB/s, T s left` on stderr when stderr is a terminal,
redrawn in place and erased at the end; with --quiet, or when stderr is not a terminal, the
output is exactly the lines a copy printed before progress lines existed."""
import os
import pty
import subprocess

import onnx
from onnx import TensorProto, helper

from conftest import binary

ELEMENTS = 300_000_000  # 1.2 GB of float32: over the 1 GiB threshold


def sparse_model(folder):
    """y = x + w with w in model.onnx.data: 1.2 GB of zeros that take no disk space."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[ELEMENTS], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "model.onnx.data"), ("offset", "0"), ("length", str(4 * ELEMENTS))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    with open(folder / "model.onnx.data", "wb") as data:
        data.truncate(4 * ELEMENTS)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ELEMENTS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [ELEMENTS])], initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx"))
    return folder / "model.onnx"


def run_with_terminal(args):
    """Runs the CLI with stderr on a pseudo-terminal: (exit code, stdout, stderr bytes)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(binary()), *map(str, args)], stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            piece = os.read(controller, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not piece:
            break
        seen += piece
    os.close(controller)
    stdout = process.stdout.read()
    return process.wait(timeout=60), stdout, seen


def expected_lines(out):
    return (f"copied: {out.parent / 'model.onnx.data'} ({4 * ELEMENTS} bytes)\n"
            f"written: {out} (151 bytes)\n").encode()


def test_copy_of_a_large_data_file_shows_a_progress_line_on_a_terminal(folders):
    source, out = folders
    model = sparse_model(source)
    target = out / "model.onnx"
    code, stdout, stderr = run_with_terminal(["rewrite", model, "-o", target, "--weights", "copy"])
    assert code == 0, stderr
    assert stdout == expected_lines(target)
    text = stderr.decode()
    draws = [part for part in text.split("\r\x1b[K") if part]
    assert draws, repr(text)
    assert all(part.startswith("writing model.onnx: ") and part.endswith(("left", " GB")) for part in draws), repr(text)
    assert draws[-1].startswith("writing model.onnx: 1.2 of 1.2 GB"), repr(text)
    assert any(" MB/s, " in part for part in draws), repr(text)
    assert text.endswith("\r\x1b[K"), "the line is erased when the copy ends"
    assert "\n" not in text
    assert os.path.getsize(out / "model.onnx.data") == 4 * ELEMENTS


def test_no_progress_line_without_a_terminal_or_with_quiet(folders):
    source, out = folders
    model = sparse_model(source)
    target = out / "model.onnx"
    piped = subprocess.run([str(binary()), "rewrite", str(model), "-o", str(target), "--weights", "copy"], capture_output=True)
    assert piped.returncode == 0, piped.stderr
    assert (piped.stdout, piped.stderr) == (expected_lines(target), b"")
    for name in ("model.onnx", "model.onnx.data"):
        os.remove(out / name)
    code, stdout, stderr = run_with_terminal(["rewrite", model, "-o", target, "--weights", "copy", "--quiet"])
    assert (code, stdout, stderr) == (0, expected_lines(target), b"")
