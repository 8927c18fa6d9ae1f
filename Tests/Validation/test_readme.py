"""The README's library example is the code the build compiles, and it runs."""
import re
import subprocess
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[2]


def test_readme_example_is_the_compiled_example():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```swift\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README should have exactly one Swift example"
    assert blocks[0] == (REPO / "Examples/LibraryExample/main.swift").read_text()


def test_readme_example_runs(tmp_path):
    binary = REPO / ".build/debug/LibraryExample"
    assert binary.exists(), "build first: swift build"
    result = subprocess.run([str(binary)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = re.findall(r"wrote (\S+)", result.stdout)
    assert written, result.stdout
    for path in written:
        onnx.checker.check_model(path, full_check=True)
