"""Graph IR text form: the printer.

    tessera.graph 1 hash=dd8f5449a4574612
    func @mlp(%x: tensor<[B, D], bf16>, %w1: tensor<[D, H], bf16>) -> (tensor<[B, H], f32>)
        attributes {effects = ["io"], where = ["D % 8 == 0"], symbols = ["B", "D", "H"]} {
      %0 = matmul(%x, %w1) {accum = f32} : tensor<[B, H], f32>
      print(%0) {format = "h = {}"}
      return %0
    }

The header carries the IR version and the first 16 hex digits of the SHA-256 of everything after
the header line. One op per line; values are named from their hints (made unique with `.1`, `.2`,
...) or numbered when they have none; attributes follow the catalogue's schema order. Every value
is written so that `parser.parse_module` reads back the same IR and printing that again gives the
same bytes (floats by `repr`, so inf, nan and -0.0 survive; strings JSON-quoted).
"""

from __future__ import annotations

import hashlib
import json
import re

from tessera.dtypes import DType
from tessera.ir.graph.ops import IR_VERSION, OPS, AttrValue, Function, Module, Op, Value
from tessera.symbolic import Dim

HEADER = "tessera.graph"

# Names the printer may use as written; anything else in a hint becomes `_`.
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")


def content_hash(body: str) -> str:
    """The header's hash: the first 16 hex digits of the SHA-256 of the text after the header line."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def print_module(m: Module) -> str:
    body = "\n".join(print_function(f) for f in m.functions)
    return f"{HEADER} {IR_VERSION} hash={content_hash(body)}\n{body}"


def print_function(f: Function) -> str:
    names = Namer()
    params = ", ".join(f"{names.define(p)}: {p.ty}" for p in f.params)
    results = ", ".join(str(v.ty) for v in f.returns)
    lines = [f"func @{f.name}({params}) -> ({results})"]
    fattrs = [(key, vals) for key, vals in (("effects", f.effects), ("where", f.constraints),
                                            ("symbols", f.symbols)) if vals]
    if fattrs:
        text = ", ".join(f"{k} = [{', '.join(quote(v) for v in vals)}]" for k, vals in fattrs)
        lines.append(f"    attributes {{{text}}} {{")
    else:
        lines[0] += " {"
    lines.extend("  " + print_op(op, names) for op in f.ops)
    ret = ", ".join(names.use(v) for v in f.returns)
    lines.append(f"  return {ret}" if ret else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"


def print_op(op: Op, names: Namer) -> str:
    """One op as its line (without indentation); defines its results in `names`."""
    operands = ", ".join(names.use(v) for v in op.operands)
    text = f"{op.name}({operands})"
    if op.attrs:
        kinds = dict(OPS[op.name].attrs) if op.name in OPS else {}
        text += " {" + ", ".join(f"{k} = {format_attr(v, kinds.get(k))}" for k, v in op.attrs) + "}"
    if op.results:
        lhs = ", ".join(names.define(r) for r in op.results)
        types = ", ".join(str(r.ty) for r in op.results)
        text = f"{lhs} = {text} : {types}"
    return text


def format_attr(v: AttrValue, kind: str | None = None) -> str:
    """An attribute value in the text form; `kind` (the schema's) only decides int-vs-float."""
    if kind == "float" and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if kind == "func" and isinstance(v, str):
        return f"@{v}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back to the same float: 'inf', 'nan', '-0.0'
    if isinstance(v, int | Dim | DType):
        return str(v)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    return f"<unprintable {type(v).__name__}>"  # only reached for malformed IR, in verifier messages


def quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


class Namer:
    """Unique `%names` for values in definition order: the hint when it is free, else `hint.1`,
    `hint.2`, ...; values without a hint are numbered `%0`, `%1`, ..."""

    def __init__(self) -> None:
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def define(self, v: Value) -> str:
        hint = _NAME_BAD.sub("_", v.hint)
        if hint and hint[0].isdigit():
            hint = "_" + hint  # bare numbers are reserved for values without a hint
        if not hint:
            while str(self.counter) in self.used:
                self.counter += 1
            name = str(self.counter)
        else:
            name, i = hint, 0
            while name in self.used:
                i += 1
                name = f"{hint}.{i}"
        self.used.add(name)
        self.names[v] = name
        return "%" + name

    def use(self, v: Value) -> str:
        name = self.names.get(v)
        # An undefined operand only occurs in malformed IR, printed in a verifier message.
        return "%" + name if name is not None else f"%<undefined {v.hint or v.uid}>"
