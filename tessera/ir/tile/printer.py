"""The text form of Tile IR (what `tessera lower --stage tile` prints).

    kernel @softmax_rows(%x: tensor<2d, f32> in, %y: tensor<2d, f32> out) grid=[M]
        schedule=Schedule(block=(1, 4096), vector=8, warps=4, stages=1) extents={M: x.0, N: x.1} {
      %pid = program_id {axis = 0} : i64
      %xb = load(%x, %pid, %c0) {shape = [1, 4096], other = -inf} : block<[1, 4096], f32>
      %m, %s = for %j = %c0 to %n step %bn iter_args(%m_1 = %m0, %s_1 = %s0)
          : block<[1, 1], f32>, block<[1, 1], f32> {
        ...
        yield(%m2, %s2)
      }
      store(%y, %pid, %c0, %yb)
    }

(the header and the `for` line are single lines in the output). Value names come from the hints,
made unique with a `_N` suffix; values without a hint are numbered. The text is deterministic: it is
also the key of the compiled-code cache.
"""

from __future__ import annotations

import re

from tessera.dtypes import DType
from tessera.ir.tile.ops import AttrValue, Kernel, Op, Region, Value

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


class Namer:
    """Unique, readable SSA names in order of first definition."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def define(self, v: Value) -> str:
        base = v.hint if v.hint and _IDENT.match(v.hint) else ""
        if base:
            name, n = base, 0
            while name in self.used:
                n += 1
                name = f"{base}_{n}"
        else:
            while str(self.counter) in self.used:
                self.counter += 1
            name = str(self.counter)
            self.counter += 1
        self.used.add(name)
        self.names[v.uid] = name
        return "%" + name

    def __call__(self, v: Value) -> str:
        name = self.names.get(v.uid)
        return "%" + name if name is not None else f"%<undefined:{v.hint or v.uid}>"


def format_attr(v: AttrValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, DType):
        return v.name
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    return str(v)


def print_kernel(k: Kernel) -> str:
    names = Namer()
    params = []
    for p, role in zip(k.params, k.roles):
        params.append(f"{names.define(p)}: {p.ty} {role}")
    grid = ", ".join(str(d) for d in k.grid)
    ext = ", ".join(f"{sym}: {names(k.params[i])[1:]}.{ax}" for sym, (i, ax) in k.extents.items())
    header = (f"kernel @{k.name}({', '.join(params)}) grid=[{grid}] schedule={k.schedule} "
              f"extents={{{ext}}} {{")
    lines = [header]
    _print_region(k.body, names, lines, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _print_region(region: Region, names: Namer, lines: list[str], indent: str) -> None:
    for op in region.ops:
        _print_op(op, names, lines, indent)


def _print_op(op: Op, names: Namer, lines: list[str], indent: str) -> None:
    if op.name == "for":
        start, stop, step, *inits = (names(v) for v in op.operands)
        region = op.regions[0]
        iv = names.define(region.args[0])
        carried = [f"{names.define(a)} = {init}" for a, init in zip(region.args[1:], inits)]
        res = ", ".join(names.define(r) for r in op.results)
        head = f"{res} = " if op.results else ""
        iters = f" iter_args({', '.join(carried)})" if carried else ""
        types = f" : {', '.join(str(r.ty) for r in op.results)}" if op.results else ""
        lines.append(f"{indent}{head}for {iv} = {start} to {stop} step {step}{iters}{types} {{")
        _print_region(region, names, lines, indent + "  ")
        lines.append(f"{indent}}}")
        return
    operands = ", ".join(names(v) for v in op.operands)
    text = op.name + (f"({operands})" if op.operands or not op.results else "")
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in op.attrs) + "}"
    if op.results:
        res = ", ".join(names.define(r) for r in op.results)
        text = f"{res} = {text} : {', '.join(str(r.ty) for r in op.results)}"
    lines.append(indent + text)
