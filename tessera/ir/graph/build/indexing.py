"""Lowering of subscripts: `x[:, 0:64]`, `x[-1]`, `l[:, None]`, `x[..., :half]` become one `slice` op
(skipped when it selects everything) and one `reshape` that drops the indexed axes and inserts the new
ones. Subscripts of tuples (`x.shape[-1]`) are folded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tessera.frontend import ast
from tessera.ir.graph.build.emitter import ONE
from tessera.ir.graph.build.lower_shape import slice_value
from tessera.ir.graph.build.values import DynScalar, TVal, describe
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder, Frame

ZERO = Dim.const(0)


def subscript(b: Builder, e: ast.Subscript, fr: Frame) -> object:
    base = b.expr(e.value, fr)
    if isinstance(base, TVal):
        return index_tensor(b, base, e.index, fr, e.span)
    if isinstance(base, (tuple, list)):
        if isinstance(e.index, ast.Slice):
            lo, hi, st = (_opt_int(b, x, fr) for x in (e.index.lower, e.index.upper, e.index.step))
            return base[lo:hi:st]
        i = b.static_int(b.expr(e.index, fr), e.index.span, "a tuple index")
        if not -len(base) <= i < len(base):
            raise b.fail(f"index {i} is out of range for a tuple of {len(base)}", e.index.span)
        return base[i]
    if isinstance(base, dict):
        key = b.expr(e.index, fr)
        if key not in base:
            raise b.fail(f"key {key!r} is not in the dict", e.index.span, "E-NAME")
        return base[key]
    raise b.fail(f"{describe(base)} cannot be indexed in compiled code", e.span)


def _opt_int(b: Builder, x: ast.Expr | None, fr: Frame) -> int | None:
    if x is None:
        return None
    return b.static_int(b.expr(x, fr), x.span, "a tuple slice bound")


def index_tensor(b: Builder, t: TVal, index: ast.Expr, fr: Frame, span: Span) -> TVal:
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    if sum(isinstance(p, ast.EllipsisLit) for p in parts) > 1:
        raise b.fail("an index can have only one `...`", index.span, "E-SHAPE")
    consuming = [p for p in parts if not isinstance(p, ast.EllipsisLit) and not _is_none(p)]
    if len(consuming) > t.rank:
        raise b.fail(f"too many indices: the tensor has rank {t.rank} but {len(consuming)} are given",
                     index.span, "E-SHAPE")
    starts = [ZERO] * t.rank
    stops = list(t.dims)
    steps = [1] * t.rank
    # The result's axes: ("axis", i) keeps source axis i (sliced), ("new",) is a None axis.
    layout: list[tuple] = []
    axis = 0
    for p in parts:
        if isinstance(p, ast.EllipsisLit):
            fill = t.rank - len(consuming)
            layout.extend(("axis", axis + k) for k in range(fill))
            axis += fill
        elif _is_none(p):
            layout.append(("new",))
        elif isinstance(p, ast.Slice):
            starts[axis], stops[axis], steps[axis] = _slice_bounds(b, p, t.dims[axis], fr)
            layout.append(("axis", axis))
            axis += 1
        else:
            v = b.expr(p, fr)
            if isinstance(v, (TVal, DynScalar)):
                raise b.fail("indexing with a tensor is not supported", p.span,
                             notes=["use embedding(table, ids) to gather rows, or where(...) to select"])
            if isinstance(v, bool) or not isinstance(v, Dim):
                raise b.fail(f"an index must be an int, a slice, None or `...`, found {describe(v)}", p.span)
            d = t.dims[axis]
            if v.is_const and v.value < 0:
                v = d + v.value
            if v.is_const and d.is_const and not 0 <= v.value < d.value:
                raise b.fail(f"index {v.value} is out of range for an axis of {d}", p.span, "E-SHAPE")
            starts[axis] = b.em.canon(v)
            stops[axis] = starts[axis] + 1
            axis += 1
    layout.extend(("axis", k) for k in range(axis, t.rank))
    sliced = slice_value(b, t.value, starts, stops, steps, span)
    dims = [ONE if item[0] == "new" else sliced.ty.dims[item[1]] for item in layout]  # type: ignore[attr-defined]
    return TVal(b.em.reshape(sliced, dims, span), t.policy)  # type: ignore[arg-type]


def _is_none(p: ast.Expr) -> bool:
    return isinstance(p, ast.Constant) and p.value is None


def _slice_bounds(b: Builder, s: ast.Slice, d: Dim, fr: Frame) -> tuple[Dim, Dim, int]:
    """Start, stop and step of one axis (the `slice` op's window and step): negative constants count
    from the end; on a constant extent constant bounds clamp as in Python. A negative step reads the
    window [b + 1, a + 1) of `x[a:b:-k]` backwards from its last element."""
    step = 1
    if s.step is not None:
        step = b.static_int(b.expr(s.step, fr), s.step.span, "a slice step")
        if step == 0:
            raise b.fail("a slice step must be a non-zero int constant", s.step.span)

    def bound(x: ast.Expr | None, default: Dim) -> Dim:
        if x is None:
            return default
        v = b.expr(x, fr)
        if isinstance(v, bool) or not isinstance(v, Dim):
            raise b.fail(f"slice bounds must be ints known when the graph is built, found {describe(v)}", x.span)
        if v.is_const and v.value < 0:
            return d + v.value
        return v

    if step < 0:
        return _reversed_bounds(b, s, d, step, bound)
    lo, hi = bound(s.lower, ZERO), bound(s.upper, d)
    if lo.is_const and hi.is_const and d.is_const:
        lo_v, hi_v = (max(0, min(x.value, d.value)) for x in (lo, hi))
        hi_v = max(hi_v, lo_v)
        return Dim.const(lo_v), Dim.const(hi_v), step
    start = b.em.canon(lo)
    # The stop as start + extent, so that the slice's extent reads as the extent's representative.
    return start, start + b.em.canon(hi - lo), step


def _reversed_bounds(b: Builder, s: ast.Slice, d: Dim, step: int,
                     bound: Callable[[ast.Expr | None, Dim], Dim]) -> tuple[Dim, Dim, int]:
    given_a = None if s.lower is None else bound(s.lower, d)
    given_b = None if s.upper is None else bound(s.upper, d)
    if d.is_const and all(x is None or x.is_const for x in (given_a, given_b)):
        # Python's own clamping, on the bounds as written (before counting from the end).
        a, c = (None if x is None else x.value if x.value >= 0 else x.value - d.value
                for x in (given_a, given_b))
        r = range(*slice(a, c, step).indices(d.value))
        if not r:
            return ZERO, ZERO, step
        # The tightest window: from the last element taken up to the first.
        return Dim.const(r[-1]), Dim.const(r[0] + 1), step
    hi = d if given_a is None else given_a + 1
    lo = ZERO if given_b is None else given_b + 1
    start = b.em.canon(lo)
    return start, start + b.em.canon(hi - lo), step
