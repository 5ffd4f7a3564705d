"""The text form of Target IR (what `tessera lower --stage target` prints).

    func @scale(%x: ptr<global, f32>, %x.n0: i64, %x.s0: i64, %begin: i64, %end: i64) {
      %c = const {value = 1} : i64
      for %prog = %begin to %end step %c {
        %v = load %p, %mask, %other : <16 x f32>
        ...
      }
      return
    }

Loops print as `%r = for %i = %lo to %hi step %st iter_args(%a = %init) -> (T) { ... yield %x }`,
branches as `%r = if %c -> (T) { ... } else { ... }`; every other op as
`%result = name %operands {attributes} : result type`.
"""

from __future__ import annotations

from tessera.ir.target.ops import Function, Module, Op, Region
from tessera.ir.tile.printer import Namer, format_attr


def print_module(m: Module) -> str:
    return "\n".join(print_function(f) for f in m.functions)


def print_function(f: Function) -> str:
    names = Namer()
    params = ", ".join(f"{names.define(p)}: {p.ty}" for p in f.params)
    threads = f" threads={f.threads}" if f.threads else ""
    if f.min_programs:
        threads += f" min_programs={f.min_programs}"
    lines = [f"func @{f.name}({params}){threads} {{"]
    _region(f.body, names, lines, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _region(r: Region, names: Namer, lines: list[str], indent: str) -> None:
    for op in r.ops:
        _op(op, names, lines, indent)


def _results(op: Op, names: Namer) -> str:
    return ", ".join(names.define(r) for r in op.results) + " = " if op.results else ""


def _types(op: Op) -> str:
    return ", ".join(str(r.ty) for r in op.results)


def _op(op: Op, names: Namer, lines: list[str], indent: str) -> None:
    if op.name == "for":
        lo, hi, st, *inits = (names(v) for v in op.operands)
        body = op.regions[0]
        iv = names.define(body.args[0])
        carried = ", ".join(f"{names.define(a)} = {i}" for a, i in zip(body.args[1:], inits))
        res = _results(op, names)
        extra = f" iter_args({carried}) -> ({_types(op)})" if inits else ""
        lines.append(f"{indent}{res}for {iv} = {lo} to {hi} step {st}{extra} {{")
        _region(body, names, lines, indent + "  ")
        lines.append(f"{indent}}}")
        return
    if op.name == "if":
        res = _results(op, names)
        types = f" -> ({_types(op)})" if op.results else ""
        lines.append(f"{indent}{res}if {names(op.operands[0])}{types} {{")
        _region(op.regions[0], names, lines, indent + "  ")
        lines.append(f"{indent}}} else {{")
        _region(op.regions[1], names, lines, indent + "  ")
        lines.append(f"{indent}}}")
        return
    text = op.name
    if op.operands:
        text += " " + ", ".join(names(v) for v in op.operands)
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in op.attrs) + "}"
    if op.results:
        text = f"{_results(op, names)}{text} : {_types(op)}"
    lines.append(indent + text)
