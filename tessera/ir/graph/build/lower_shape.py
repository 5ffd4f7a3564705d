"""Lowering of the shape builtins: reshape, transpose/permute/swapaxes/`x.T`, expand_dims and squeeze
(as reshapes), broadcast_to, concat, stack (reshape + concat) and split (slices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tessera.frontend import shapes
from tessera.frontend.builtins import elementwise_dtype
from tessera.ir.graph.build.emitter import ONE, policy_of
from tessera.ir.graph.build.values import TVal, describe
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder


def as_tensor(b: Builder, x: object, span: Span, what: str) -> TVal:
    if isinstance(x, TVal):
        return x
    from tessera.ir.graph.build.values import DynScalar, is_host_scalar

    if is_host_scalar(x) or isinstance(x, DynScalar):
        return b.em.tensor(x, span)
    raise b.fail(f"{what} must be a tensor, found {describe(x)}", span)


def axes_arg(b: Builder, v: object, rank: int, span: Span, what: str) -> tuple[int, ...] | None:
    """An axis argument: None (all axes), an int, or a tuple of ints; normalised."""
    if v is None:
        return None
    items = v if isinstance(v, (tuple, list)) else (v,)
    vals = [b.static_int(x, span, f"{what}: an axis") for x in items]
    return shapes.normalize_axes(vals, rank, what, span)


def axis_arg(b: Builder, v: object, rank: int, span: Span, what: str) -> int:
    return shapes.normalize_axis(b.static_int(v, span, f"{what}: the axis"), rank, what, span)


def shape_arg(b: Builder, v: object, span: Span, what: str) -> list[Dim]:
    items = v if isinstance(v, (tuple, list)) else (v,)
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, Dim):
            raise b.fail(f"{what}: a shape is an int or a tuple of ints known when the graph is built, found "
                         f"{describe(x)}", span)
        out.append(x)
    return out


def reshape(b: Builder, x: object, shape: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "reshape: x")
    target: list[Dim | None] = [None if d.is_const and d.value == -1 else d for d in shape_arg(b, shape, span,
                                                                                               "reshape")]
    dims = shapes.reshape(b.cs, shapes.Operand(t.dims, span, "x"), target, span)
    return TVal(b.em.reshape(t.value, dims, span), t.policy)


def transpose_value(b: Builder, x: TVal, perm: Sequence[int], span: Span) -> TVal:
    return TVal(b.em.transpose(x.value, perm, span), x.policy)


def transpose(b: Builder, x: object, axes: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "transpose: x")
    perm = axes_arg(b, axes, t.rank, span, "transpose")
    if perm is None:
        perm = tuple(reversed(range(t.rank)))
    if sorted(perm) != list(range(t.rank)):
        raise b.fail(f"transpose: axes {perm} are not a permutation of 0..{t.rank - 1}", span, "E-SHAPE")
    return transpose_value(b, t, perm, span)


def swapaxes(b: Builder, x: object, a: object, c: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "swapaxes: x")
    i, j = axis_arg(b, a, t.rank, span, "swapaxes"), axis_arg(b, c, t.rank, span, "swapaxes")
    perm = list(range(t.rank))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose_value(b, t, perm, span)


def expand_dims(b: Builder, x: object, axis: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "expand_dims: x")
    ax = axis_arg(b, axis, t.rank + 1, span, "expand_dims")
    dims = list(t.dims)
    dims.insert(ax, ONE)
    return TVal(b.em.reshape(t.value, dims, span), t.policy)


def squeeze(b: Builder, x: object, axis: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "squeeze: x")
    axes = axes_arg(b, axis, t.rank, span, "squeeze")
    if axes is None:
        dims = [d for d in t.dims if d != ONE]
    else:
        for ax in axes:
            if not b.em.dims_equal(t.dims[ax], ONE):
                raise b.fail(f"squeeze: x.shape[{ax}] ({t.dims[ax]}) must be 1", span, "E-SHAPE")
        dims = [d for i, d in enumerate(t.dims) if i not in axes]
    return TVal(b.em.reshape(t.value, dims, span), t.policy)


def broadcast_to(b: Builder, x: object, shape: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, "broadcast_to: x")
    return TVal(b.em.broadcast(t.value, shape_arg(b, shape, span, "broadcast_to"), span), t.policy)


def _tensor_list(b: Builder, xs: object, span: Span, what: str) -> list[TVal]:
    if not isinstance(xs, (tuple, list)) or not xs:
        raise b.fail(f"{what}: expected a non-empty list or tuple of tensors, found {describe(xs)}", span)
    return [as_tensor(b, x, span, f"{what}: each part") for x in xs]


def concat(b: Builder, xs: object, axis: object, span: Span) -> TVal:
    parts = _tensor_list(b, xs, span, "concat")
    return concat_values(b, parts, axis_arg(b, axis, parts[0].rank, span, "concat"), span)


def concat_values(b: Builder, parts: list[TVal], ax: int, span: Span) -> TVal:
    dt = elementwise_dtype([p.fe for p in parts])
    assert dt is not None
    rank = parts[0].rank
    if any(p.rank != rank for p in parts):
        raise b.fail("concat: all tensors must have the same rank", span, "E-SHAPE")
    vals = [b.em.cast(p.value, dt, span) for p in parts]
    if len(vals) == 1:
        return TVal(vals[0], policy_of(parts, dt))
    return TVal(b.em.emit1("concat", vals, span, axis=ax), policy_of(parts, dt))


def stack(b: Builder, xs: object, axis: object, span: Span) -> TVal:
    parts = _tensor_list(b, xs, span, "stack")
    ax = axis_arg(b, axis, parts[0].rank + 1, span, "stack")
    grown = []
    for p in parts:
        dims = list(p.dims)
        dims.insert(ax, ONE)
        grown.append(TVal(b.em.reshape(p.value, dims, span), p.policy))
    return concat_values(b, grown, ax, span)


def split(b: Builder, x: object, n: object, axis: object, span: Span) -> tuple[TVal, ...]:
    t = as_tensor(b, x, span, "split: x")
    count = b.static_int(n, span, "split: n")
    if count < 1:
        raise b.fail(f"split: n must be at least 1, found {count}", span, "E-SHAPE")
    ax = axis_arg(b, axis, t.rank, span, "split")
    d = t.dims[ax]
    if not (b.cs.divides(count, d) or (d.is_const and d.value % count == 0)):
        raise b.fail(f"split: x.shape[{ax}] ({d}) is not provably divisible by {count}", span, "E-SHAPE")
    part = b.em.canon(d // count)
    out = []
    for i in range(count):
        starts = [Dim.const(0)] * t.rank
        stops = list(t.dims)
        starts[ax] = b.em.canon(part * i)
        stops[ax] = starts[ax] + part  # so that the slice's extent reads `part`
        out.append(TVal(slice_value(b, t.value, starts, stops, [1] * t.rank, span), t.policy))
    return tuple(out)


def slice_value(b: Builder, v: object, starts: Sequence[Dim], stops: Sequence[Dim], steps: Sequence[int],
                span: Span) -> object:
    """A `slice` op, skipped when it selects everything."""
    from tessera.ir.graph.ops import Value

    assert isinstance(v, Value)
    if all(s == Dim.const(0) and b.em.dims_equal(e, d) and st == 1
           for s, e, st, d in zip(starts, stops, steps, v.ty.dims)):
        return v
    return b.em.emit1("slice", [v], span, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
