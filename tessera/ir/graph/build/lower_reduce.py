"""Lowering of the reductions: `reduce` ops with their kind, axes, keepdims and accumulation dtype;
`logsumexp` as its own op; `var` as mean((x - mean(x))²) in the accumulation dtype; argmax/argmin over
all axes on the flattened tensor (NumPy's rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.dtypes import F32, INT64
from tessera.frontend import shapes
from tessera.frontend.types import NO_POLICY
from tessera.ir.graph.build.emitter import ONE
from tessera.ir.graph.build.lower_shape import as_tensor, axes_arg
from tessera.ir.graph.build.values import TVal, describe
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder


def reduction(b: Builder, kind: str, x: object, axis: object, keepdims: object, span: Span) -> TVal:
    t = as_tensor(b, x, span, f"{kind}: x")
    if not isinstance(keepdims, bool):
        raise b.fail(f"{kind}: keepdims must be True or False, found {describe(keepdims)}", span)
    if kind in ("argmax", "argmin"):
        if isinstance(axis, (tuple, list)):
            raise b.fail(f"{kind} takes a single axis, not a tuple", span)
        return _arg(b, kind, t, axis, keepdims, span)
    axes = axes_arg(b, axis, t.rank, span, kind)
    if axes is None:
        axes = tuple(range(t.rank))
    if kind in ("max", "min"):
        return TVal(_reduce(b, kind, t.value, axes, keepdims, t.dtype, span), t.policy)
    acc = t.accum if t.dtype.is_float or kind in ("sum", "prod") else F32
    if kind == "logsumexp":
        v = b.em.cast(t.value, F32, span) if not t.dtype.is_float else t.value
        if not axes:
            return TVal(b.em.cast(v, acc, span))
        return TVal(b.em.emit1("logsumexp", [v], span, axes=axes, keepdims=keepdims, accum=acc))
    if kind == "var":
        return TVal(variance(b, t.value, axes, keepdims, acc, span))
    return TVal(_reduce(b, kind, t.value, axes, keepdims, acc, span), NO_POLICY)


def _reduce(b: Builder, kind: str, v: object, axes: tuple[int, ...], keepdims: bool, acc: object,
            span: Span) -> object:
    if not axes:  # nothing to reduce (a rank-0 tensor): the value in the result dtype
        return b.em.cast(v, acc, span)  # type: ignore[arg-type]
    return b.em.emit1("reduce", [v], span, kind=kind, axes=tuple(axes), keepdims=keepdims, accum=acc)  # type: ignore[list-item]


def variance(b: Builder, v: object, axes: tuple[int, ...], keepdims: bool, acc: object, span: Span) -> object:
    """The biased variance over axes, computed in acc."""
    xf = b.em.cast(v, acc, span)  # type: ignore[arg-type]
    if not axes:
        zero = b.em.constant(0.0, acc, span)  # type: ignore[arg-type]
        return b.em.broadcast(zero, xf.ty.dims, span)
    m = _reduce(b, "mean", xf, axes, True, acc, span)
    d = b.em.emit1("sub", [xf, b.em.broadcast(m, xf.ty.dims, span)], span)  # type: ignore[list-item]
    sq = b.em.emit1("mul", [d, d], span)
    return _reduce(b, "mean", sq, axes, keepdims, acc, span)


def _arg(b: Builder, kind: str, t: TVal, axis: object, keepdims: bool, span: Span) -> TVal:
    if t.rank == 0:
        return TVal(b.em.constant(0.0, INT64, span))
    if axis is None:
        total = ONE
        for d in t.dims:
            total = total * d
        flat = b.em.reshape(t.value, [total], span)
        out = b.em.emit1("reduce", [flat], span, kind=kind, axes=(0,), keepdims=False, accum=t.dtype)
        if keepdims:
            out = b.em.reshape(out, [ONE] * t.rank, span)
        return TVal(out)
    ax = shapes.normalize_axis(b.static_int(axis, span, f"{kind}: the axis"), t.rank, kind, span)
    return TVal(b.em.emit1("reduce", [t.value], span, kind=kind, axes=(ax,), keepdims=keepdims, accum=t.dtype))
