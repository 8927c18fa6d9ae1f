"""How the sources read: no Swift function or initializer in Sources/ longer than 150 lines
(long functions were where changes collided and reviews missed things)."""
import re

from conftest import REPO

LIMIT = 150
DECLARATION = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|static|mutating|override|final|'
                         r'nonisolated|@discardableResult)\s+)*(?:func\s+\w+|init\??\s*[(<])')


def code_of(line):
    """The line without string literals and a trailing comment (enough to count braces)."""
    return re.sub(r'"(\\.|[^"\\])*"', '""', line).split("//")[0]


def function_lengths(path):
    lines = path.read_text().splitlines()
    for start, line in enumerate(lines):
        if not DECLARATION.match(line):
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            code = code_of(lines[end])
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                yield end - start + 1, f"{path.relative_to(REPO)}:{start + 1} {line.strip()[:70]}"
                break
            if not opened and end > start + 8:
                break  # a requirement in a protocol: no body


def test_no_function_longer_than_150_lines():
    sources = sorted((REPO / "Sources").rglob("*.swift"))
    assert len(sources) > 50
    lengths = [item for path in sources for item in function_lengths(path)]
    assert len(lengths) > 500, "the declaration pattern finds the functions"
    too_long = sorted((n, where) for n, where in lengths if n > LIMIT)
    assert too_long == [], "\n".join(f"{n} lines: {where}" for n, where in too_long)


def test_the_ir_and_the_pipeline_name_no_pass():
    """Passes plug in (PassRequest): the IR target and the pipeline file name none of them, so
    a new pass is its own files and its tests."""
    files = sorted((REPO / "Sources/SlowFastIR").glob("*.swift")) + [REPO / "Sources/SlowFastKit/Pipeline.swift"]
    assert len(files) > 10
    for path in files:
        text = path.read_text().lower()
        for word in ("hybrid", "srelu", "slow-kv", "cross_attn"):
            assert word not in text, f"{path.relative_to(REPO)} names '{word}'"
