"""Corrupted models never crash the reader: truncations at many points and random byte
flips either read (the bytes may still be a valid protobuf) or fail with one error line."""
import random

from conftest import run
from fixtures import FIXTURES


def test_truncations_and_flips_never_crash(tmp_path):
    source = next(f for f in FIXTURES if f.name == "qwen2-genai") / "model.onnx"
    data = source.read_bytes()
    rng = random.Random(1234)
    cases = [data[:cut] for cut in sorted(rng.sample(range(1, len(data)), 60))]
    for _ in range(60):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        cases.append(bytes(flipped))
    crashes, outcomes = [], {"read": 0, "refused": 0}
    for number, case in enumerate(cases):
        path = tmp_path / f"case{number}.onnx"
        path.write_bytes(case)
        result = run("inspect", path, "--json")
        if result.returncode < 0 or result.returncode > 1:
            crashes.append(f"case {number}: exit {result.returncode}: {result.stderr[-300:]}")
        elif result.returncode == 1:
            assert result.stderr.startswith(f"error: {path}: ") and len(result.stderr.strip().splitlines()) == 1
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    print(f"\ncorrupt inputs: {outcomes}")
    assert not crashes, "\n".join(crashes)
    assert outcomes["refused"] >= 60  # every truncation is refused or read; most are refused


def test_passes_on_models_they_do_not_fit_never_crash():
    """Hybrid layers and SReLU on every backend model (CNNs, single ops): a plan or a clear
    refusal, never a crash."""
    from conftest import backend_models
    crashes = []
    for path in backend_models():
        for args in (["--every", "1"], ["--activation", "srelu", "--activation-targets", ",".join(
                ["relu", "leaky_relu", "prelu", "gelu", "silu", "quick_gelu", "hard_swish"]), "--allow-no-sites"]):
            result = run("plan", path, *args)
            if result.returncode not in (0, 1) or (result.returncode == 1 and not result.stderr.startswith("error: ")):
                crashes.append(f"{path} {args[0]}: exit {result.returncode}: {result.stderr[-200:]}")
    assert not crashes, "\n".join(crashes)
