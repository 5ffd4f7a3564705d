"""Constant folding: ops whose operands are all splats (`constant` / `fill` results, or shape ops of
them such as `broadcast_to(constant)`) become splats.

Every operand holds one value everywhere, so the result does too, whatever its (symbolic) shape:
the pass evaluates the op once on the scalar values with NumPy in the op's dtype and emits a
`constant` (rank 0) or `fill` of the result type. The arithmetic is the Graph IR's (the reference
evaluator's): 16- and 8-bit floats are computed in f32 and rounded to the result dtype, integers
and bools in int64 and then stored in the result dtype (so they wrap), `and`/`or`/`not` are
logical, casts to narrow floats go through f32.

Folded: elementwise ops and casts, shape ops (the value is unchanged), reductions (sum, prod and
mean need a constant reduced extent; small extents are summed as NumPy sums them), matmul (constant
contraction extent), softmax and logsumexp (constant extent). Left alone: anything whose value is
not certain (int division, float-to-int casts of non-integral or out-of-range values, casts that
round other than to nearest even unless exact, an int raised to a negative power), int4, the
normalisations and attention, and effectful ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from tessera.dtypes import DType, numpy_dtype
from tessera.ir.graph.ops import Function, Op, TensorType
from tessera.ir.graph.passes.rewriter import Rewriter, is_pure, make_splat, splat
from tessera.symbolic import Dim

Scalar = float | int | bool

# Reductions over at most this many elements are evaluated element by element, so that the folded
# value is what NumPy's summation gives; longer ones multiply.
_MATERIALISE = 1 << 16


def fold_constants(f: Function) -> Function:
    rw = Rewriter(f)
    for op in f.ops:
        new = rw.copy(op)
        value = _fold(new)
        if value is None:
            rw.emit(new)
        else:
            folded = rw.emit(make_splat(new.result.ty, value, new.result.hint))
            rw.replace(op.result, folded.result)
    return rw.finish()


def _fold(op: Op) -> float | None:
    if not op.operands or len(op.results) != 1 or not is_pure(op):
        return None
    values = [splat(v) for v in op.operands]
    if any(v is None for v in values) or any(v.ty.dtype.name == "int4" for v in (*op.operands, op.result)):
        return None
    fold = _FOLDERS.get(op.name) or _FOLDERS.get(op.opdef.category)
    if fold is None:
        return None
    with np.errstate(all="ignore"):
        try:
            return _attr_value(fold(op, values), op.result.ty)  # type: ignore[arg-type]
        except _NoFold:
            return None


class _NoFold(Exception):
    """The value is not certain here; keep the op."""


def _compute_dtype(d: DType) -> np.dtype:
    if d.is_float:
        return np.dtype(np.float32) if d.bits < 32 or d.name == "tf32" else numpy_dtype(d)
    return np.dtype(np.int64)  # ints and bools


def _arr(value: Scalar, d: DType) -> np.ndarray:
    """The splat value (already as dtype d stores it) as a rank-0 array of its compute dtype."""
    return np.asarray(value, dtype=np.float64 if d.is_float else np.int64).astype(_compute_dtype(d))


def _store(x: np.ndarray, d: DType) -> np.ndarray:
    x = np.asarray(x)
    if d.kind == "bool":
        return x != 0
    if d.is_float and d.bits < 32 and x.dtype.kind == "f" and x.dtype.itemsize > 4:
        x = x.astype(np.float32)  # f64 to a narrow float through f32, as the IR's casts round
    return x.astype(numpy_dtype(d))


def _attr_value(out: np.ndarray, t: TensorType) -> float:
    """The `value` attribute (a float) of the splat holding `out` in dtype t."""
    stored = _store(out, t.dtype)
    if t.dtype.kind == "bool":
        return 1.0 if bool(stored) else 0.0
    if t.dtype.is_int:
        i = int(stored)
        if int(float(i)) != i:
            raise _NoFold  # an int64 beyond 2**53 has no exact float attribute
        return float(i)
    return float(stored)


def _extent(dims: tuple[Dim, ...] | list[Dim]) -> int | None:
    total = Dim.const(1)
    for d in dims:
        total = total * d
    return total.value if total.is_const else None


# -- elementwise ---------------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(math.erf(float(x))).astype(x.dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Never exp of a large positive number: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below.
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    return (one / (one + e) if x >= 0 else e / (one + e)).astype(x.dtype)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    t = x.dtype.type
    if approximate == "tanh":
        inner = t(math.sqrt(2.0 / math.pi)) * (x + t(0.044715) * x * x * x)
        return t(0.5) * x * (t(1.0) + np.tanh(inner))
    return t(0.5) * x * (t(1.0) + _erf(x * t(1.0 / math.sqrt(2.0))))


_FLOAT_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: x.dtype.type(1) / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "erf": _erf, "sigmoid": _sigmoid, "silu": lambda x: x * _sigmoid(x),
}
_CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
        "ge": np.greater_equal}
_ARITH = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum, "minimum": np.minimum}


def _elementwise(op: Op, values: list[Scalar]) -> np.ndarray:
    dt = op.operands[0].ty.dtype
    xs = [_arr(v, o.ty.dtype) for v, o in zip(values, op.operands)]
    name = op.name
    if name == "select":
        return xs[1] if values[0] else xs[2]
    if name == "cast":
        return _cast(op, xs[0])
    if name in ("isnan", "isinf"):
        return (np.isnan if name == "isnan" else np.isinf)(xs[0]) if dt.is_float else np.asarray(False)
    if name == "cmp":
        return _CMP[op.attr("pred")](xs[0], xs[1])  # type: ignore[index]
    if name == "not":
        return np.logical_not(xs[0])
    if name in ("and", "or"):
        return (np.logical_and if name == "and" else np.logical_or)(xs[0], xs[1])
    if name == "neg":
        return np.negative(xs[0])
    if name == "abs":
        return np.abs(xs[0])
    if name == "relu":
        return np.maximum(xs[0], xs[0].dtype.type(0))
    if name in _ARITH:
        return _ARITH[name](xs[0], xs[1])
    if name in ("div", "floordiv", "mod", "pow"):
        return _division_like(name, dt, xs[0], xs[1])
    if not dt.is_float:
        raise _NoFold  # transcendental functions of ints: left to the target
    if name == "gelu":
        return _gelu(xs[0], op.attr("approximate"))  # type: ignore[arg-type]
    return _FLOAT_UNARY[name](xs[0])


def _division_like(name: str, dt: DType, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if dt.is_float:
        return {"div": np.true_divide, "floordiv": np.floor_divide, "mod": np.mod, "pow": np.power}[name](x, y)
    # Integer division by zero and negative powers have no value; integer `div` truncation is the
    # target's business.
    if name == "div" or (name in ("floordiv", "mod") and int(y) == 0) or (name == "pow" and int(y) < 0):
        raise _NoFold
    return {"floordiv": np.floor_divide, "mod": np.mod, "pow": np.power}[name](x, y)


def _cast(op: Op, x: np.ndarray) -> np.ndarray:
    src = op.operands[0].ty.dtype
    dst: DType = op.attr("dtype")  # type: ignore[assignment]
    if src.is_float and dst.is_int:
        v = float(x)
        info = np.iinfo(numpy_dtype(dst))
        if not (math.isfinite(v) and v == math.floor(v) and info.min <= v <= info.max):
            raise _NoFold  # the float-to-int rounding and overflow rules belong to the target
    out = _store(x, dst)
    if op.attr("rounding") != "nearest_even" and dst.is_float:
        back = out.astype(np.float64)
        if not (back == x.astype(np.float64) or (np.isnan(back) and np.isnan(x))):
            raise _NoFold  # inexact: the rounding mode decides the value
    return out


# -- shape ops, reductions, matmul, normalisations ---------------------------------------------------


def _same_value(op: Op, values: list[Scalar]) -> np.ndarray:
    if op.name == "concat" and any(repr(v) != repr(values[0]) for v in values):
        raise _NoFold  # not one value everywhere (repr tells -0.0 from 0.0)
    return _arr(values[0], op.operands[0].ty.dtype)


def _reduce(op: Op, values: list[Scalar]) -> np.ndarray:
    kind: str = op.attr("kind")  # type: ignore[assignment]
    x = op.operands[0]
    n = _extent([x.ty.dims[a] for a in op.attr("axes")])  # type: ignore[union-attr]
    if kind in ("argmax", "argmin"):
        if n == 0:
            raise _NoFold
        return np.asarray(0)
    acc: DType = op.attr("accum")  # type: ignore[assignment]
    v = _arr(values[0], x.ty.dtype).astype(_compute_dtype(acc))
    if kind in ("max", "min"):
        if n == 0:
            raise _NoFold
        return v
    if n is None or (kind == "mean" and (n == 0 or not acc.is_float)):
        raise _NoFold
    if n <= _MATERIALISE:
        return {"sum": np.sum, "prod": np.prod, "mean": np.mean}[kind](np.full(n, v, dtype=v.dtype))
    if kind == "sum":
        return np.multiply(v, np.asarray(n).astype(v.dtype))
    if kind == "mean":
        return v
    if acc.is_float:
        return np.power(v, v.dtype.type(n))
    r = pow(int(v), n, 1 << 64)  # an int64 product wraps modulo 2**64
    return np.asarray(r - (1 << 64) if r >= 1 << 63 else r, dtype=np.int64)


def _matmul(op: Op, values: list[Scalar]) -> np.ndarray:
    x, y = op.operands
    k = _extent([x.ty.dims[-1]])
    if k is None:
        raise _NoFold
    cd = _compute_dtype(op.attr("accum"))  # type: ignore[arg-type]
    a = _arr(values[0], x.ty.dtype).astype(cd)
    b = _arr(values[1], y.ty.dtype).astype(cd)
    if k <= _MATERIALISE:
        return np.matmul(np.full((1, k), a, dtype=cd), np.full((k, 1), b, dtype=cd))[0, 0]
    return np.multiply(a * b, np.asarray(k).astype(cd))


def _softmax(op: Op, values: list[Scalar]) -> np.ndarray:
    x = op.operands[0]
    n = _extent([x.ty.dims[op.attr("axis")]])  # type: ignore[index]
    if not n or not math.isfinite(float(values[0])):
        raise _NoFold
    cd = _compute_dtype(op.attr("accum"))  # type: ignore[arg-type]
    # exp(x - max) is 1 everywhere: each element is 1 over n (a sum of n ones).
    return cd.type(1) / np.asarray(n, dtype=cd)


def _logsumexp(op: Op, values: list[Scalar]) -> np.ndarray:
    x = op.operands[0]
    n = _extent([x.ty.dims[a] for a in op.attr("axes")])  # type: ignore[union-attr]
    if not n or not math.isfinite(float(values[0])):
        raise _NoFold
    cd = _compute_dtype(op.attr("accum"))  # type: ignore[arg-type]
    v = _arr(values[0], x.ty.dtype).astype(cd)
    return np.log(np.asarray(n, dtype=cd)) + v


_FOLDERS: dict[str, Callable[[Op, list[Scalar]], np.ndarray]] = {
    "elementwise": _elementwise,
    "reshape": _same_value,
    "broadcast_to": _same_value,
    "transpose": _same_value,
    "slice": _same_value,
    "concat": _same_value,
    "gather": _same_value,
    "reduce": _reduce,
    "matmul": _matmul,
    "softmax": _softmax,
    "logsumexp": _logsumexp,
}
