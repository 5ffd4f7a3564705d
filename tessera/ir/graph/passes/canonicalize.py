"""Canonicalisation: local algebraic simplifications that keep every result bit for bit.

Rules (x, y values; 0 and 1 splats: `constant` or `fill` results, or shape ops of them):
- add(x, 0) and add(0, x) -> x for ints; for floats only with -0.0, since -0.0 + 0.0 is +0.0
- sub(x, 0) -> x (ints and floats); sub(x, x) -> 0 for ints only (inf - inf is nan)
- mul(x, 1), mul(1, x), div(x, 1) (floats) -> x; mul(x, 0) -> 0 for ints only (nan * 0 is nan)
- neg(neg x) -> x; not(not x) -> x (bool); abs(abs x) -> abs x; abs(neg x) -> abs x (not unsigned)
- maximum(x, x), minimum(x, x) -> x; and(x, x), or(x, x) -> x for bools (they are logical)
- select(c, a, b) with c a splat -> a or b; select(c, a, a) -> a
- cast to the operand's dtype -> the operand; cast(cast(x, a), b) -> cast(x, b) when every value
  of x's dtype is exact in a
- reshape and broadcast_to to the operand's shape -> the operand; reshape of a reshape and
  broadcast_to of a broadcast_to -> one op
- transpose of a transpose -> one transpose of the composed perm; the identity perm -> the operand
- slice of the whole operand (starts 0, stops the extents, steps 1) -> the operand
- concat of one operand -> the operand
- extent of a constant dim (after shape specialisation) -> constant

Replaced ops are left for DCE. A rule that builds a new op sees the rules again.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.dtypes import DType
from tessera.ir.graph.ops import Function, Op, Value, make_op
from tessera.ir.graph.passes.rewriter import Rewriter, is_splat_of, make_splat, splat
from tessera.symbolic import Dim

# Significand bits (with the implicit one) and exponent bits of each float dtype.
_FLOAT_FORMAT = {"fp8_e4m3": (4, 4), "fp8_e5m2": (3, 5), "f16": (11, 5), "bf16": (8, 8),
                 "tf32": (11, 8), "f32": (24, 8), "f64": (53, 11)}


def lossless(src: DType, dst: DType) -> bool:
    """True when every value of `src` converts to `dst` exactly (so converting further from dst is
    the same as converting from src)."""
    if src == dst or src.kind == "bool":
        return True
    if dst.kind == "bool":
        return False
    if src.is_float:
        if not dst.is_float:
            return False
        (ps, es), (pd, ed) = _FLOAT_FORMAT[src.name], _FLOAT_FORMAT[dst.name]
        return pd >= ps and ed >= es
    # Integer sources: the magnitude bits that must fit.
    magnitude = src.bits if src.kind == "uint" else src.bits - 1
    if dst.is_float:
        return _FLOAT_FORMAT[dst.name][0] >= magnitude
    if dst.kind == "uint":
        return src.kind == "uint" and dst.bits >= src.bits
    return dst.bits - 1 >= magnitude


def canonicalize(f: Function) -> Function:
    rw = Rewriter(f)
    for op in f.ops:
        cur = rw.copy(op)
        if len(cur.results) != 1:
            rw.emit(cur)
            continue
        while True:
            rule = _RULES.get(cur.name)
            out = rule(cur) if rule is not None else None
            if out is None:
                rw.emit(cur)
                rw.replace(op.result, cur.result)
                break
            if isinstance(out, Value):
                rw.replace(op.result, out)
                break
            cur = out  # a new op: try the rules on it too
    return rw.finish()


def _zero(v: Value) -> bool:
    return is_splat_of(v, 0)


def _add(op: Op) -> Value | None:
    x, y = op.operands
    if op.result.ty.dtype.is_float:
        # x + (-0.0) is x for every x; x + (+0.0) turns -0.0 into +0.0.
        neutral = -0.0
    elif op.result.ty.dtype.is_int:
        neutral = 0
    else:
        return None
    if is_splat_of(y, neutral):
        return x
    if is_splat_of(x, neutral):
        return y
    return None


def _sub(op: Op) -> Value | Op | None:
    x, y = op.operands
    dt = op.result.ty.dtype
    if (dt.is_float or dt.is_int) and _zero(y):
        return x
    if dt.is_int and x is y:
        return make_splat(op.result.ty, 0, op.result.hint)
    return None


def _mul(op: Op) -> Value | None:
    x, y = op.operands
    dt = op.result.ty.dtype
    if not (dt.is_float or dt.is_int):
        return None
    if is_splat_of(y, 1):
        return x
    if is_splat_of(x, 1):
        return y
    if dt.is_int:
        if _zero(y):
            return y
        if _zero(x):
            return x
    return None


def _div(op: Op) -> Value | None:
    x, y = op.operands
    if op.result.ty.dtype.is_float and is_splat_of(y, 1):
        return x
    return None


def _involution(op: Op) -> Value | None:
    kind = op.result.ty.dtype.kind
    if (op.name == "not") != (kind == "bool"):
        return None  # logical not of an int maps every nonzero to 0; neg of a bool is no involution
    inner = op.operands[0].producer
    if inner is not None and inner.name == op.name:
        return inner.operands[0]
    return None


def _abs(op: Op) -> Value | Op | None:
    inner = op.operands[0].producer
    if inner is not None and inner.name == "abs":
        return op.operands[0]
    # Not for unsigned ints, where neg wraps (abs(neg 5) is 251) and abs is the identity.
    if inner is not None and inner.name == "neg" and op.result.ty.dtype.kind in ("float", "int"):
        return make_op("abs", [inner.operands[0]], op.result.hint)
    return None


def _idempotent(op: Op) -> Value | None:
    x, y = op.operands
    if op.name in ("and", "or") and x.ty.dtype.kind != "bool":
        return None  # logical: and(5, 5) is 1
    return x if x is y else None


def _select(op: Op) -> Value | None:
    c, a, b = op.operands
    if a is b:
        return a
    cond = splat(c)
    if cond is None:
        return None
    return a if cond else b


def _cast(op: Op) -> Value | Op | None:
    x = op.operands[0]
    dst: DType = op.attr("dtype")  # type: ignore[assignment]
    if x.ty.dtype == dst:
        return x
    inner = x.producer
    if inner is not None and inner.name == "cast" and lossless(inner.operands[0].ty.dtype, x.ty.dtype):
        return make_op("cast", [inner.operands[0]], op.result.hint, dtype=dst, rounding=op.attr("rounding"))
    return None


def _same_shape_or_merge(op: Op) -> Value | Op | None:
    """reshape / broadcast_to: to the operand's own shape is nothing; of the same op, one op."""
    x = op.operands[0]
    shape = op.attr("shape")
    if tuple(x.ty.dims) == shape:
        return x
    inner = x.producer
    if inner is not None and inner.name == op.name:
        return make_op(op.name, [inner.operands[0]], op.result.hint, shape=shape)
    return None


def _transpose(op: Op) -> Value | Op | None:
    x = op.operands[0]
    perm: tuple[int, ...] = op.attr("perm")  # type: ignore[assignment]
    if perm == tuple(range(len(perm))):
        return x
    inner = x.producer
    if inner is not None and inner.name == "transpose":
        first: tuple[int, ...] = inner.attr("perm")  # type: ignore[assignment]
        # out[i] = mid[perm[i]] = in[first[perm[i]]]
        return make_op("transpose", [inner.operands[0]], op.result.hint,
                       perm=tuple(first[p] for p in perm))
    return None


def _slice(op: Op) -> Value | None:
    x = op.operands[0]
    starts, stops, steps = (op.attr(k) for k in ("starts", "stops", "steps"))
    if (all(s == 0 for s in starts) and all(s == 1 for s in steps)  # type: ignore[union-attr]
            and tuple(stops) == tuple(x.ty.dims)):  # type: ignore[arg-type]
        return x
    return None


def _concat(op: Op) -> Value | None:
    return op.operands[0] if len(op.operands) == 1 else None


def _extent(op: Op) -> Op | None:
    d: Dim = op.attr("value")  # type: ignore[assignment]
    if not d.is_const:
        return None
    return make_op("constant", [], op.result.hint, value=float(d.value), dtype=op.attr("dtype"))


_RULES: dict[str, Callable[[Op], Value | Op | None]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "neg": _involution,
    "not": _involution,
    "abs": _abs,
    "maximum": _idempotent,
    "minimum": _idempotent,
    "and": _idempotent,
    "or": _idempotent,
    "select": _select,
    "cast": _cast,
    "reshape": _same_shape_or_merge,
    "broadcast_to": _same_shape_or_merge,
    "transpose": _transpose,
    "slice": _slice,
    "concat": _concat,
    "extent": _extent,
}
