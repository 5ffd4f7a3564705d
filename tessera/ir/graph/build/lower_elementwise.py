"""Lowering of the elementwise builtins and operators: arithmetic, comparisons, the unary math
functions, `where`, `clip`, `maximum`/`minimum`.

Host scalars fold to host scalars; anything involving a tensor becomes one graph op whose operands the
emitter casts to the promoted dtype (spec §4: Python scalars are weak) and broadcasts to one shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.dtypes import BOOL, F32, F64
from tessera.frontend.builtins import BINOP_BUILTIN, elementwise_dtype
from tessera.ir.graph.build import hostops
from tessera.ir.graph.build.values import DynScalar, TVal, describe, fe_type, is_host_scalar
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder

FLOAT_ONLY = frozenset(("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu",
                        "gelu"))
PREDICATES = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def _check_operand(b: Builder, v: object, span: Span, what: str) -> None:
    if not (isinstance(v, (TVal, DynScalar)) or is_host_scalar(v)):
        raise b.fail(f"{what}: expected a tensor or a number, found {describe(v)}", span)


def unary(b: Builder, name: str, x: object, span: Span, approximate: str = "none") -> object:
    _check_operand(b, x, span, name)
    if is_host_scalar(x):
        try:
            return hostops.unary(name, x, approximate)
        except hostops.NotStatic:
            x = b.em.dyn(x, span)
    attrs: dict[str, object] = {"approximate": approximate} if name == "gelu" else {}
    if isinstance(x, DynScalar):
        if name in FLOAT_ONLY or x.kind == "float":
            return b.em.elementwise(name, [x], span, operand_dtype=F64, **attrs)
        return b.em.elementwise(name, [x], span, result_bool=name in ("isnan", "isinf"), **attrs)
    assert isinstance(x, TVal)
    if name in FLOAT_ONLY and not x.dtype.is_float:
        raise b.fail(f"{name} needs a floating-point tensor, found {x.dtype}", span, "E-DTYPE")
    if name == "neg" and x.dtype == BOOL:
        raise b.fail("unary '-' on a bool tensor", span, "E-DTYPE")
    return b.em.elementwise(name, [x], span, result_bool=name in ("isnan", "isinf"), **attrs)


def binary(b: Builder, op: str, left: object, right: object, span: Span) -> object:
    """An arithmetic operator `+ - * / // % **` (the `@` operator is a matmul)."""
    name = BINOP_BUILTIN[op]
    return _binary(b, name, left, right, span, host_op=op)


def _binary(b: Builder, name: str, left: object, right: object, span: Span, host_op: str | None = None) -> object:
    _check_operand(b, left, span, name)
    _check_operand(b, right, span, name)
    if is_host_scalar(left) and is_host_scalar(right):
        try:
            if host_op is not None:
                return hostops.binary(host_op, left, right)
            return _host_minmax(b, name, left, right)
        except hostops.NotStatic:
            left, right = b.em.dyn(left, span), b.em.dyn(right, span)
        except ZeroDivisionError:
            raise b.fail(f"division by zero in {describe(left)} {host_op} {describe(right)}", span) from None
    args = [left, right]
    if not any(isinstance(a, TVal) for a in args):
        floats = name == "div" or any(isinstance(a, DynScalar) and a.kind == "float" or isinstance(a, float)
                                      for a in args)
        return b.em.elementwise(name, args, span, operand_dtype=F64 if floats else None)
    dt = elementwise_dtype([fe_type(a) for a in args])
    assert dt is not None
    if name == "div" and not dt.is_float:
        dt = F32  # true division of integers gives f32 (docs/language.md)
    return b.em.elementwise(name, args, span, operand_dtype=dt)


def _host_minmax(b: Builder, name: str, x: object, y: object) -> object:
    pick_x = hostops.compare(">=" if name == "maximum" else "<=", x, y, b.cs)
    v = x if pick_x else y
    if isinstance(x, float) or isinstance(y, float):
        return hostops.as_float(v)
    return v


def minmax(b: Builder, name: str, x: object, y: object, span: Span) -> object:
    return _binary(b, name, x, y, span)


def compare(b: Builder, op: str, left: object, right: object, span: Span) -> object:
    """A comparison with a tensor or a run-time scalar: `cmp` on operands of their promoted dtype."""
    if op not in PREDICATES:
        raise b.fail(f"'{op}' does not apply to tensors", span)
    _check_operand(b, left, span, "comparison")
    _check_operand(b, right, span, "comparison")
    args = [left, right]
    if not any(isinstance(a, TVal) for a in args):
        floats = any(isinstance(a, float) or (isinstance(a, DynScalar) and a.kind == "float") for a in args)
        return b.em.elementwise("cmp", args, span, operand_dtype=F64 if floats else None, result_bool=True,
                                pred=PREDICATES[op])
    return b.em.elementwise("cmp", args, span, result_bool=True, pred=PREDICATES[op])


def where(b: Builder, cond: object, x: object, y: object, span: Span) -> object:
    for v, what in ((cond, "where: cond"), (x, "where: a"), (y, "where: b")):
        _check_operand(b, v, span, what)
    if is_host_scalar(cond):
        # A static condition picks one side (broadcast against the other, as NumPy would).
        chosen = x if b.truth(cond, span) else y
        tensors = [v for v in (x, y) if isinstance(v, TVal)]
        if not tensors:
            return chosen
        dt = elementwise_dtype([fe_type(v) for v in (x, y)])
        assert dt is not None
        dims = b.em.broadcast_dims([t.dims for t in tensors], span, "where")
        from tessera.ir.graph.build.emitter import policy_of

        return TVal(b.em.materialize(chosen, dt, dims, span), policy_of([x, y], dt))
    if isinstance(cond, TVal) and cond.dtype != BOOL:
        raise b.fail(f"where: the condition must be a bool tensor, found {cond.dtype}", span, "E-DTYPE")
    args = [x, y]
    if not any(isinstance(a, TVal) for a in (cond, x, y)):
        floats = any(isinstance(a, float) or (isinstance(a, DynScalar) and a.kind == "float") for a in args)
        dt = F64 if floats else elementwise_dtype([fe_type(a) for a in args])
        c = b.em.cast(b.em.dyn(cond, span).value, BOOL, span)
        out = b.em.emit1("select", [c, b.em.scalar(x, dt, span), b.em.scalar(y, dt, span)], span)
        return DynScalar(out, "float" if floats else {F64: "float", BOOL: "bool"}.get(dt, "int"))
    # Two scalar sides take the dtype the bool condition gives them (f32 for floats), as the checker
    # types `where(c, -1.0, 1.0)`.
    typed = args if any(isinstance(a, TVal) for a in args) else [cond, *args]
    dt = elementwise_dtype([fe_type(a) for a in typed])
    assert dt is not None
    tensors = [v for v in (cond, x, y) if isinstance(v, TVal)]
    dims = b.em.broadcast_dims([t.dims for t in tensors], span, "where")
    c = b.em.materialize(cond, BOOL, dims, span)
    from tessera.ir.graph.build.emitter import policy_of

    out = b.em.emit1("select", [c, b.em.materialize(x, dt, dims, span), b.em.materialize(y, dt, dims, span)], span)
    return TVal(out, policy_of(args, dt))


def clip(b: Builder, x: object, lo: object, hi: object, span: Span) -> object:
    """minimum(maximum(x, lo), hi), in the dtype the checker gives clip (x's dtype for scalar bounds)."""
    for v, what in ((x, "clip: x"), (lo, "clip: lo"), (hi, "clip: hi")):
        _check_operand(b, v, span, what)
    if not any(isinstance(v, TVal) for v in (x, lo, hi)):
        return minmax(b, "minimum", minmax(b, "maximum", x, lo, span), hi, span)
    dt = elementwise_dtype([fe_type(v) for v in (x, lo, hi)])
    assert dt is not None
    tensors = [v for v in (x, lo, hi) if isinstance(v, TVal)]
    dims = b.em.broadcast_dims([t.dims for t in tensors], span, "clip")
    from tessera.ir.graph.build.emitter import policy_of

    xs = b.em.materialize(x, dt, dims, span)
    m = b.em.emit1("maximum", [xs, b.em.materialize(lo, dt, dims, span)], span)
    out = b.em.emit1("minimum", [m, b.em.materialize(hi, dt, dims, span)], span)
    return TVal(out, policy_of([x, lo, hi], dt))
