"""Dead-code elimination: drop pure ops none of whose results is used.

Ops with effects (`print`, `random`) and calls stay whether or not their results are used.
"""

from __future__ import annotations

from tessera.ir.graph.ops import Function, Value
from tessera.ir.graph.passes.rewriter import Rewriter, is_pure


def dce(f: Function) -> Function:
    live: set[Value] = set(f.returns)
    keep = []
    for op in reversed(f.ops):
        if not is_pure(op) or any(r in live for r in op.results):
            keep.append(op)
            live.update(op.operands)
    rw = Rewriter(f)
    for op in reversed(keep):
        rw.emit(rw.copy(op))
    return rw.finish()
