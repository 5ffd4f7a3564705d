"""Common-subexpression elimination: a pure op equal to an earlier one reuses its results.

Two ops are equal when they have the same name, operands (in any order for commutative ops),
attributes and result types. Floats in attributes compare by their text, so -0.0 and 0.0 stay apart
and nan equals nan. Ops with effects (`print`, `random`) and calls are never merged: two draws are
two draws.
"""

from __future__ import annotations

from collections.abc import Hashable

from tessera.ir.graph.ops import AttrValue, Function, Op
from tessera.ir.graph.passes.rewriter import Rewriter, is_pure

# Exactly commutative, bit for bit (maximum/minimum are not: the sign of a zero result may differ).
_COMMUTATIVE = frozenset({"add", "mul", "and", "or"})
_COMMUTATIVE_PREDICATES = frozenset({"eq", "ne"})


def cse(f: Function) -> Function:
    rw = Rewriter(f)
    seen: dict[Hashable, Op] = {}
    for op in f.ops:
        new = rw.copy(op)
        if not is_pure(new):
            rw.emit(new)
            continue
        key = op_key(new)
        prev = seen.get(key)
        if prev is None:
            seen[key] = rw.emit(new)
        else:
            for old, r in zip(op.results, prev.results):
                rw.replace(old, r)
    return rw.finish()


def op_key(op: Op) -> Hashable:
    operands = [v.uid for v in op.operands]
    if op.name in _COMMUTATIVE or (op.name == "cmp" and op.attr("pred") in _COMMUTATIVE_PREDICATES):
        operands.sort()
    attrs = tuple((k, _attr_key(v)) for k, v in op.attrs)
    return (op.name, tuple(operands), attrs, tuple(r.ty for r in op.results))


def _attr_key(v: AttrValue) -> Hashable:
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, tuple):
        return ("tuple", tuple(_attr_key(x) for x in v))
    return (type(v).__name__, v)
