"""Shape specialisation: bind dim symbols to extents.

Every dim of the function (parameter and result types, `dim`/`dims` attributes) has the bound
symbols replaced by their ints; the bound symbols leave `symbols`. Each `where` constraint is
evaluated once all its symbols are bound: a false one raises IRError naming it and the extents, a
true one is dropped, and one still mentioning unbound symbols is kept (rewritten over them).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

from tessera.ir.graph.ops import Function, IRError, parse_constraint
from tessera.ir.graph.passes.rewriter import Rewriter, substitute_dims


def specialize_shapes(f: Function, bindings: Mapping[str, int]) -> Function:
    unknown = sorted(set(bindings) - set(f.symbols))
    if unknown:
        raise IRError(f"@{f.name}: cannot bind {unknown[0]}: not a symbol of the function "
                      f"(symbols: {', '.join(f.symbols) or 'none'})")
    for name, value in bindings.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise IRError(f"@{f.name}: symbol {name} bound to {value!r}; extents are ints >= 0")
    bindings = {name: int(value) for name, value in bindings.items()}  # NumPy ints from shapes too
    constraints: list[str] = []
    for text in f.constraints:
        parts = parse_constraint(text)
        if not any((c.lhs.free_symbols | c.rhs.free_symbols) & bindings.keys() for c in parts):
            constraints.append(text)
            continue
        for c in parts:
            bound = type(c)(c.kind, c.lhs.substitute(bindings), c.rhs.substitute(bindings))
            if bound.lhs.free_symbols or bound.rhs.free_symbols:
                constraints.append(str(bound))
            elif not bound.holds({}):
                used = sorted((c.lhs.free_symbols | c.rhs.free_symbols) & bindings.keys())
                env = ", ".join(f"{s}={bindings[s]}" for s in used)
                raise IRError(f"@{f.name}: where constraint '{text}' is false for {env}")
    rw = Rewriter(f, substitute_dims(bindings))
    for op in f.ops:
        rw.emit(rw.copy(op))
    return rw.finish(constraints=tuple(constraints),
                     symbols=tuple(s for s in f.symbols if s not in bindings))
