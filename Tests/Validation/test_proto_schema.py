"""Schemas/onnx.proto must describe exactly the ONNX format of the installed onnx package.

The schema is written by hand, so this test parses it with a small parser of its own
(no protoc needed) and compares every message, nested message, enum, enum value, field
(name, number, label, type, default, packed option, oneof membership) and reserved
range/name with the descriptors in ``onnx.onnx_ml_pb2``. It fails with the full list
of differences.

Run: .venv/bin/python -m pytest Tests/Validation/test_proto_schema.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCHEMA = Path(__file__).resolve().parents[2] / "Schemas" / "onnx.proto"

SCALAR_TYPES = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}


# --------------------------------------------------------------------------- parser

@dataclass
class Field:
    name: str
    number: int
    label: str            # optional | required | repeated
    type: str             # scalar name, or fully qualified ".onnx.X" for messages/enums
    default: str | None
    packed: bool
    oneof: str | None


@dataclass
class Enum:
    full_name: str
    values: dict[str, int] = field(default_factory=dict)


@dataclass
class Message:
    full_name: str
    fields: dict[str, Field] = field(default_factory=dict)
    reserved_ranges: set[tuple[int, int]] = field(default_factory=set)  # inclusive
    reserved_names: set[str] = field(default_factory=set)


@dataclass
class Schema:
    syntax: str | None = None
    package: str | None = None
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)


TOKEN = re.compile(
    r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_.]*|-?0[xX][0-9A-Fa-f]+|-?\d+(?:\.\d+)?|[{}\[\]=;,()<>]',
    re.S,
)


def tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise SyntaxError(f"onnx.proto: cannot tokenize at offset {pos}: {text[pos:pos + 30]!r}")
        tok = m.group(0)
        pos = m.end()
        if tok.isspace() or tok.startswith("//") or tok.startswith("/*"):
            continue
        tokens.append(tok)
    return tokens


def parse_int(tok: str) -> int:
    # Decimal or 0x-hex, as the schema is allowed to write numbers.
    return int(tok, 0)


class Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0
        self.schema = Schema()
        # Field types as written, resolved once every name is known.
        self.pending: list[tuple[Field, str, str]] = []

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise SyntaxError("onnx.proto: unexpected end of file")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.next()
        if got != tok:
            raise SyntaxError(f"onnx.proto: expected {tok!r}, found {got!r} (token {self.i})")

    def parse(self) -> Schema:
        while self.peek() is not None:
            tok = self.next()
            if tok == "syntax":
                self.expect("=")
                self.schema.syntax = self.next().strip('"')
                self.expect(";")
            elif tok == "package":
                self.schema.package = self.next()
                self.expect(";")
            elif tok == "option":
                while self.next() != ";":
                    pass
            elif tok == "message":
                self.parse_message(f".{self.schema.package}")
            elif tok == "enum":
                self.parse_enum(f".{self.schema.package}")
            else:
                raise SyntaxError(f"onnx.proto: unexpected top-level token {tok!r}")
        for f, written, scope in self.pending:
            f.type = self.resolve(written, scope)
        return self.schema

    def resolve(self, written: str, scope: str) -> str:
        if written in SCALAR_TYPES:
            return written
        if written.startswith("."):
            return written
        # Protobuf scoping: innermost enclosing scope first.
        parts = scope.split(".")
        while parts:
            candidate = ".".join(parts + [written])
            if candidate in self.schema.messages or candidate in self.schema.enums:
                return candidate
            parts.pop()
        raise SyntaxError(f"onnx.proto: unknown type {written!r} in {scope}")

    def parse_enum(self, scope: str) -> None:
        name = self.next()
        enum = Enum(f"{scope}.{name}")
        self.schema.enums[enum.full_name] = enum
        self.expect("{")
        while (tok := self.next()) != "}":
            if tok == "option":
                while self.next() != ";":
                    pass
                continue
            if tok == "reserved":
                while self.next() != ";":
                    pass
                continue
            self.expect("=")
            enum.values[tok] = parse_int(self.next())
            if self.peek() == "[":
                while self.next() != "]":
                    pass
            self.expect(";")

    def parse_message(self, scope: str) -> None:
        name = self.next()
        msg = Message(f"{scope}.{name}")
        self.schema.messages[msg.full_name] = msg
        self.expect("{")
        self.parse_body(msg, oneof=None)

    def parse_body(self, msg: Message, oneof: str | None) -> None:
        while (tok := self.next()) != "}":
            if tok == "message":
                self.parse_message(msg.full_name)
            elif tok == "enum":
                self.parse_enum(msg.full_name)
            elif tok == "oneof":
                name = self.next()
                self.expect("{")
                self.parse_body(msg, oneof=name)
            elif tok == "reserved":
                self.parse_reserved(msg)
            elif tok == "option":
                while self.next() != ";":
                    pass
            else:
                self.parse_field(msg, tok, oneof)

    def parse_reserved(self, msg: Message) -> None:
        while True:
            tok = self.next()
            if tok.startswith('"'):
                msg.reserved_names.add(tok.strip('"'))
            else:
                start = parse_int(tok)
                end = start
                if self.peek() == "to":
                    self.next()
                    end = parse_int(self.next())
                msg.reserved_ranges.add((start, end))
            sep = self.next()
            if sep == ";":
                return
            if sep != ",":
                raise SyntaxError(f"onnx.proto: bad reserved statement in {msg.full_name}")

    def parse_field(self, msg: Message, first: str, oneof: str | None) -> None:
        if first in ("optional", "required", "repeated"):
            label, written = first, self.next()
        elif oneof is not None:
            label, written = "optional", first
        else:
            raise SyntaxError(f"onnx.proto: field without label in {msg.full_name}: {first!r} (proto2 needs one)")
        name = self.next()
        self.expect("=")
        number = parse_int(self.next())
        default, packed = None, False
        if self.peek() == "[":
            self.next()
            while True:
                key = self.next()
                self.expect("=")
                value = self.next()
                if key == "default":
                    default = value.strip('"')
                elif key == "packed":
                    packed = value == "true"
                else:
                    raise SyntaxError(f"onnx.proto: unsupported field option {key!r} on {msg.full_name}.{name}")
                sep = self.next()
                if sep == "]":
                    break
                if sep != ",":
                    raise SyntaxError(f"onnx.proto: bad options on {msg.full_name}.{name}")
        self.expect(";")
        if name in msg.fields:
            raise SyntaxError(f"onnx.proto: duplicate field {msg.full_name}.{name}")
        f = Field(name, number, label, written, default, packed, oneof)
        msg.fields[name] = f
        self.pending.append((f, written, msg.full_name))


def parse_schema(path: Path = SCHEMA) -> Schema:
    return Parser(path.read_text(encoding="utf-8")).parse()


# --------------------------------------------------------------------------- reference

def reference_schema() -> Schema:
    onnx_ml_pb2 = pytest.importorskip("onnx.onnx_ml_pb2")
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto()
    onnx_ml_pb2.DESCRIPTOR.CopyToProto(fdp)
    F = descriptor_pb2.FieldDescriptorProto
    labels = {F.LABEL_OPTIONAL: "optional", F.LABEL_REQUIRED: "required", F.LABEL_REPEATED: "repeated"}
    scalar = {
        F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
        F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
        F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
        F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
    }
    schema = Schema(syntax=fdp.syntax or "proto2", package=fdp.package)

    def add_enum(e, scope: str) -> None:
        schema.enums[f"{scope}.{e.name}"] = Enum(f"{scope}.{e.name}", {v.name: v.number for v in e.value})

    def add_message(m, scope: str) -> None:
        msg = Message(f"{scope}.{m.name}")
        schema.messages[msg.full_name] = msg
        for e in m.enum_type:
            add_enum(e, msg.full_name)
        for n in m.nested_type:
            add_message(n, msg.full_name)
        for f in m.field:
            msg.fields[f.name] = Field(
                name=f.name,
                number=f.number,
                label=labels[f.label],
                type=f.type_name if f.type in (F.TYPE_MESSAGE, F.TYPE_ENUM, F.TYPE_GROUP) else scalar[f.type],
                default=f.default_value if f.HasField("default_value") else None,
                packed=f.options.packed if f.options.HasField("packed") else False,
                oneof=m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
            )
        # DescriptorProto ranges are half-open; the .proto syntax is inclusive.
        msg.reserved_ranges = {(r.start, r.end - 1) for r in m.reserved_range}
        msg.reserved_names = set(m.reserved_name)

    for e in fdp.enum_type:
        add_enum(e, f".{fdp.package}")
    for m in fdp.message_type:
        add_message(m, f".{fdp.package}")
    return schema


# --------------------------------------------------------------------------- comparison

def expand(ranges: set[tuple[int, int]]) -> set[int]:
    return {n for start, end in ranges for n in range(start, end + 1)}


def differences(ours: Schema, ref: Schema) -> list[str]:
    out: list[str] = []
    if ours.syntax != ref.syntax:
        out.append(f"syntax: ours {ours.syntax!r}, onnx {ref.syntax!r}")
    if ours.package != ref.package:
        out.append(f"package: ours {ours.package!r}, onnx {ref.package!r}")

    for name in sorted(ref.enums.keys() - ours.enums.keys()):
        out.append(f"enum {name}: missing")
    for name in sorted(ours.enums.keys() - ref.enums.keys()):
        out.append(f"enum {name}: not in onnx")
    for name in sorted(ours.enums.keys() & ref.enums.keys()):
        a, b = ours.enums[name].values, ref.enums[name].values
        for v in sorted(b.keys() - a.keys()):
            out.append(f"enum {name}: value {v} = {b[v]} missing")
        for v in sorted(a.keys() - b.keys()):
            out.append(f"enum {name}: value {v} not in onnx")
        for v in sorted(a.keys() & b.keys()):
            if a[v] != b[v]:
                out.append(f"enum {name}.{v}: ours {a[v]}, onnx {b[v]}")

    for name in sorted(ref.messages.keys() - ours.messages.keys()):
        out.append(f"message {name}: missing")
    for name in sorted(ours.messages.keys() - ref.messages.keys()):
        out.append(f"message {name}: not in onnx")
    for name in sorted(ours.messages.keys() & ref.messages.keys()):
        a, b = ours.messages[name], ref.messages[name]
        for f in sorted(b.fields.keys() - a.fields.keys()):
            out.append(f"field {name}.{f}: missing")
        for f in sorted(a.fields.keys() - b.fields.keys()):
            out.append(f"field {name}.{f}: not in onnx")
        for f in sorted(a.fields.keys() & b.fields.keys()):
            fa, fb = a.fields[f], b.fields[f]
            for attr in ("number", "label", "type", "default", "packed", "oneof"):
                va, vb = getattr(fa, attr), getattr(fb, attr)
                if va != vb:
                    out.append(f"field {name}.{f}: {attr} ours {va!r}, onnx {vb!r}")
        if expand(a.reserved_ranges) != expand(b.reserved_ranges):
            out.append(f"message {name}: reserved numbers ours {sorted(expand(a.reserved_ranges))}, "
                       f"onnx {sorted(expand(b.reserved_ranges))}")
        if a.reserved_names != b.reserved_names:
            out.append(f"message {name}: reserved names ours {sorted(a.reserved_names)}, onnx {sorted(b.reserved_names)}")
    return out


# --------------------------------------------------------------------------- tests

def test_schema_matches_installed_onnx():
    ours, ref = parse_schema(), reference_schema()
    diffs = differences(ours, ref)
    assert not diffs, f"{len(diffs)} difference(s) between Schemas/onnx.proto and onnx.onnx_ml_pb2:\n" + "\n".join(diffs)
    # Guard against a parser that silently reads nothing.
    assert len(ours.messages) == len(ref.messages) >= 25
    assert sum(len(m.fields) for m in ours.messages.values()) == sum(len(m.fields) for m in ref.messages.values())


def test_schema_declares_current_ir_version():
    import onnx

    ours = parse_schema()
    assert ours.enums[".onnx.Version"].values["IR_VERSION"] == onnx.IR_VERSION


def test_comparison_reports_a_changed_field():
    """The comparison must notice a wrong number, a lost packed option and a missing field."""
    ref = reference_schema()
    text = SCHEMA.read_text(encoding="utf-8")
    broken = (text.replace("optional int64 model_version = 5;", "optional int64 model_version = 55;")
                  .replace("repeated double double_data = 10 [packed = true];", "repeated double double_data = 10;")
                  .replace("optional string overload = 13;", ""))
    assert broken != text
    diffs = differences(Parser(broken).parse(), ref)
    assert any("ModelProto.model_version: number" in d for d in diffs), diffs
    assert any("TensorProto.double_data: packed" in d for d in diffs), diffs
    assert any("FunctionProto.overload: missing" in d for d in diffs), diffs


# --------------------------------------------------------------------------- generated C code

ROUNDTRIP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "onnx.pb-c.h"

/* For each file argument: unpack as ModelProto with the generated code, pack it
   again, and compare the bytes. Prints one line per mismatch and a final count. */
static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(length > 0 ? (size_t)length : 1);
    *size = fread(bytes, 1, (size_t)length, f);
    fclose(f);
    return bytes;
}

int main(int argc, char **argv) {
    int identical = 0;
    for (int i = 1; i < argc; i++) {
        size_t size = 0;
        unsigned char *in = read_all(argv[i], &size);
        if (!in) { printf("UNREADABLE %s\n", argv[i]); continue; }
        Onnx__ModelProto *model = onnx__model_proto__unpack(NULL, size, in);
        if (!model) { printf("UNPACK-FAILED %s\n", argv[i]); free(in); continue; }
        size_t packed_size = onnx__model_proto__get_packed_size(model);
        unsigned char *out = malloc(packed_size ? packed_size : 1);
        size_t written = onnx__model_proto__pack(model, out);
        if (written == size && memcmp(out, in, size) == 0) identical++;
        else printf("DIFFERENT %s in=%zu out=%zu\n", argv[i], size, written);
        onnx__model_proto__free_unpacked(model, NULL);
        free(out);
        free(in);
    }
    printf("%d/%d byte-identical\n", identical, argc - 1);
    return identical == argc - 1 ? 0 : 1;
}
"""


def test_generated_code_repacks_onnx_models_byte_identically(tmp_path):
    """Unpack + pack with Sources/ONNXProto gives back the exact bytes of models we did not write.

    Inputs: every .onnx under the installed onnx package's backend/test/data, plus every
    node test case model of onnx serialized by the Python protobuf runtime. Any field
    missing from the schema with the wrong type or packing would change the bytes.
    """
    import shutil
    import subprocess

    import onnx
    from onnx.backend.test.case import node

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed")
    root = SCHEMA.parents[1]
    program = tmp_path / "roundtrip"
    source = tmp_path / "roundtrip.c"
    source.write_text(ROUNDTRIP_C)
    build = subprocess.run(
        [gcc, "-O1", "-Wall", "-Werror", f"-I{root / 'Sources/ONNXProto/include'}", str(source),
         str(root / "Sources/ONNXProto/onnx.pb-c.c"), "-lprotobuf-c", "-o", str(program)],
        capture_output=True, text=True,
    )
    if build.returncode != 0 and "protobuf-c.h" in build.stderr:
        pytest.skip("libprotobuf-c-dev not installed")
    assert build.returncode == 0, build.stderr

    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    files = sorted(str(p) for p in data.rglob("*.onnx"))
    cases = tmp_path / "node"
    cases.mkdir()
    for index, case in enumerate(node.collect_testcases(None)):
        if case.model is not None:
            path = cases / f"{index:04d}_{case.name}.onnx"
            path.write_bytes(case.model.SerializeToString())
            files.append(str(path))
    assert len(files) > 1000, f"only {len(files)} models found"

    result = subprocess.run([str(program), *files], capture_output=True, text=True)
    print(result.stdout.splitlines()[-1])
    assert result.returncode == 0, result.stdout[-4000:]
    assert result.stdout.splitlines()[-1] == f"{len(files)}/{len(files)} byte-identical"
