"""Lowering of the creation builtins (fill, iota, random), casts, the debug `print`, and the host
helpers usable in `@jit` code (`range`, `len`, `int`, `float`, `bool`, `dict`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.dtypes import BOOL, F64, INT64
from tessera.ir.graph.build import hostops
from tessera.ir.graph.build.lower_shape import shape_arg
from tessera.ir.graph.build.values import DTypeV, DynScalar, SymRange, TVal, describe, is_host_scalar
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder


def _dtype(b: Builder, v: object, span: Span, what: str) -> DTypeV:
    if not isinstance(v, DTypeV):
        raise b.fail(f"{what} must be a dtype such as f32 or bf16, found {describe(v)}", span)
    return v


def fill(b: Builder, shape: object, value: object, dtype: object, span: Span) -> TVal:
    dt = _dtype(b, dtype, span, "the dtype")
    dims = b.em.canon_dims(shape_arg(b, shape, span, "the shape"))
    if isinstance(value, DynScalar):
        return TVal(b.em.broadcast(b.em.scalar(value, dt.dtype, span), dims, span), dt.policy)
    if not is_host_scalar(value):
        raise b.fail(f"full: value must be a number, found {describe(value)}", span)
    v = hostops.as_float(value) if not isinstance(value, Dim) or value.is_const else None
    if v is None:
        return TVal(b.em.broadcast(b.em.scalar(value, dt.dtype, span), dims, span), dt.policy)
    return TVal(b.em.emit1("fill", [], span, shape=dims, value=v, dtype=dt.dtype), dt.policy)


def arange(b: Builder, n: object, dtype: object, span: Span) -> TVal:
    dt = _dtype(b, dtype, span, "arange: dtype")
    dims = shape_arg(b, n, span, "arange: n")
    if len(dims) != 1:
        raise b.fail("arange: n must be a single int", span)
    return TVal(b.em.emit1("iota", [], span, n=b.em.canon(dims[0]), dtype=dt.dtype), dt.policy)


def random(b: Builder, dist: str, shape: object, dtype: object, seed: object, span: Span) -> TVal:
    dt = _dtype(b, dtype, span, "the dtype")
    if not dt.dtype.is_float:
        raise b.fail(f"random tensors are floating point, found {dt.dtype}", span, "E-DTYPE")
    dims = b.em.canon_dims(shape_arg(b, shape, span, "the shape"))
    key = b.draw_key(span) if seed is None else b.static_int(seed, span, "the seed")
    return TVal(b.em.emit1("random", [], span, shape=dims, dtype=dt.dtype, dist=dist, seed=key), dt.policy)


def cast(b: Builder, x: object, dtype: object, span: Span) -> object:
    dt = _dtype(b, dtype, span, "cast: dtype")
    if isinstance(x, TVal):
        rounding = dt.policy.rounding or x.policy.rounding
        return TVal(b.em.cast(x.value, dt.dtype, span, rounding), dt.policy)
    if isinstance(x, DynScalar) or is_host_scalar(x):
        return TVal(b.em.scalar(x, dt.dtype, span), dt.policy)
    raise b.fail(f"cast: x must be a tensor or a number, found {describe(x)}", span)


def cast_like(b: Builder, x: object, y: object, span: Span) -> object:
    if not isinstance(y, TVal):
        raise b.fail(f"cast_like: y must be a tensor, found {describe(y)}", span)
    return cast(b, x, DTypeV(y.dtype, y.policy), span)


def print_(b: Builder, values: list[object], span: Span) -> None:
    """A run-time debug print: literal text in the format string, each run-time value a `{}` field."""
    fmt: list[str] = []
    operands: list[object] = []

    def text(v: object) -> None:
        if isinstance(v, (TVal, DynScalar)):
            fmt.append("{}")
            operands.append(v.value)
        elif isinstance(v, Dim):
            if v.is_const:
                fmt.append(str(v.value))
            else:
                fmt.append("{}")
                operands.append(b.em.scalar(v, INT64, span))
        elif isinstance(v, (tuple, list)):
            fmt.append("(" if isinstance(v, tuple) else "[")
            for i, x in enumerate(v):
                if i:
                    fmt.append(", ")
                text(x)
            if isinstance(v, tuple) and len(v) == 1:
                fmt.append(",")
            fmt.append(")" if isinstance(v, tuple) else "]")
        elif isinstance(v, DTypeV):
            fmt.append(_escape(str(v.dtype)))
        elif isinstance(v, str):
            fmt.append(_escape(v))
        elif isinstance(v, (bool, float)) or v is None:
            fmt.append(_escape(str(v)))
        else:
            fmt.append(_escape(describe(v)))

    for i, v in enumerate(values):
        if i:
            fmt.append(" ")
        text(v)
    b.em.emit("print", operands, span, format="".join(fmt))  # type: ignore[arg-type]


def _escape(s: str) -> str:
    return s.replace("{", "{{").replace("}", "}}")


def range_(b: Builder, start: object, stop: object, step: object, span: Span) -> object:
    if stop is None:
        start, stop = Dim.const(0), start
    vals = []
    for v, what in ((start, "start"), (stop, "stop"), (step, "step")):
        d = hostops.as_dim(v)
        if d is None:
            raise b.fail(f"range: {what} must be an int, found {describe(v)}", span)
        vals.append(d)
    if all(d.is_const for d in vals):
        if vals[2].value == 0:
            raise b.fail("range: step must not be zero", span)
        return range(vals[0].value, vals[1].value, vals[2].value)
    return SymRange(vals[1])


def len_(b: Builder, x: object, span: Span) -> Dim:
    if isinstance(x, TVal):
        if x.rank == 0:
            raise b.fail("len() of a rank-0 tensor", span)
        return x.dims[0]
    if isinstance(x, (tuple, list, str, dict)):
        return Dim.const(len(x))
    raise b.fail(f"len() of {describe(x)}", span)


def to_scalar(b: Builder, kind: str, x: object, span: Span) -> object:
    """int(x), float(x), bool(x) of a host scalar (folded) or a rank-0 tensor (a run-time scalar)."""
    if isinstance(x, TVal):
        if x.rank != 0:
            raise b.fail(f"cannot convert a tensor of rank {x.rank} to {kind}", span)
        return _dyn_convert(b, kind, x.value, span)
    if isinstance(x, DynScalar):
        return _dyn_convert(b, kind, x.value, span)
    if not is_host_scalar(x):
        raise b.fail(f"cannot convert {describe(x)} to {kind}", span)
    if kind == "bool":
        return b.truth(x, span)
    if kind == "int":
        if isinstance(x, float):
            return Dim.const(int(x))
        return hostops.as_dim(x)
    try:
        return hostops.as_float(x)
    except hostops.NotStatic:  # float() of a symbolic extent: known at run time
        return DynScalar(b.em.scalar(x, F64, span), "float")


def _dyn_convert(b: Builder, kind: str, v: object, span: Span) -> DynScalar:
    dt = {"int": INT64, "float": F64, "bool": BOOL}[kind]
    if kind == "bool" and v.ty.dtype != BOOL:  # type: ignore[attr-defined]
        zero = b.em.constant(0.0, v.ty.dtype, span)  # type: ignore[attr-defined]
        return DynScalar(b.em.emit1("cmp", [v, zero], span, pred="ne"), "bool")  # type: ignore[list-item]
    return DynScalar(b.em.cast(v, dt, span), kind)  # type: ignore[arg-type]
