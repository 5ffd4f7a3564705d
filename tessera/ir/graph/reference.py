"""The reference evaluator: every Graph IR op evaluated with NumPy — the oracle of the tests and the
`--target reference` runtime, never the default.

Numerics, op by op, exactly as each op's result dtype says:
- Narrow floats (bf16, f16, fp8 through ml_dtypes) are computed in f32 and rounded to the result dtype
  at the op boundary; f32 in f32, f64 in f64, integers in int64 (then stored in their dtype).
- `matmul`, `reduce`, `logsumexp` compute in their `accum` dtype (narrow accumulators in f32, then
  rounded); `softmax`, `layernorm`, `rmsnorm`, `attention` compute in `accum` and round once to the
  result dtype.
- `cast` rounds as its attribute says: "nearest_even"; "toward_zero" (also float to int truncation);
  "stochastic" (rounds away from zero with probability equal to the distance, from a fixed-seed
  generator, so that evaluation is reproducible).
- `random` draws from `numpy.random.Generator(PCG64(seed))`: `standard_normal` / `random` (uniform in
  [0, 1)) of the op's shape in f32 (f64 for an f64 op), rounded to the op's dtype: deterministic in
  (seed, shape, dtype).
- `print` writes its format with each `{}` replaced by the next operand as NumPy prints it.

With `float64=True` every floating-point value is computed and kept in f64 — inputs cast up, casts
between float dtypes exact, accumulation dtypes ignored — and the results are f64 (integer and bool
results keep their dtype): the ideal arithmetic that tolerances are measured against. Random samples
are the same values as without it.

Symbols bind from the argument shapes (bare symbols first, then dims linear in one unbound symbol);
a shape, dtype or `where` constraint that does not hold raises `EvaluationError` naming the argument,
the axis, the rule and the extents.
"""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import ml_dtypes
import numpy as np

from tessera.dtypes import F64, DType, numpy_dtype
from tessera.ir.graph.ops import Function, Module, Op, Value, parse_constraint
from tessera.symbolic import Dim

__all__ = ["EvaluationError", "bind_symbols", "evaluate", "implemented_ops", "random_samples"]


class EvaluationError(ValueError):
    """Arguments that do not fit the function (shapes, dtypes, where constraints), or a run-time fault
    of the evaluated program (an embedding id out of range)."""


# ---------------------------------------------------------------- binding


def bind_symbols(fn: Function, args: Sequence[np.ndarray]) -> dict[str, int]:
    """The extent of every dim symbol of `fn` from the argument shapes, checked against every
    parameter dim and every `where` constraint."""
    if len(args) != len(fn.params):
        raise EvaluationError(f"@{fn.name} takes {len(fn.params)} arguments, {len(args)} were given")
    pending: list[tuple[int, int, Dim, int]] = []
    for i, (p, a) in enumerate(zip(fn.params, args)):
        shape = np.shape(a)
        if len(shape) != p.ty.rank:
            raise EvaluationError(f"@{fn.name}: argument {i} ({_pname(p, i)}) has rank {len(shape)}, the parameter "
                                  f"is {p.ty}")
        pending.extend((i, ax, d, int(n)) for ax, (d, n) in enumerate(zip(p.ty.dims, shape)))
    env: dict[str, int] = {}
    origin: dict[str, str] = {}
    progress = True
    while progress:
        progress = False
        for i, ax, d, n in pending:
            free = d.free_symbols - env.keys()
            if len(free) != 1:
                continue
            sym = next(iter(free))
            value = _solve(d.substitute(env), sym, n)
            if value is not None:
                env[sym] = value
                origin[sym] = f"argument {i} ({_pname(fn.params[i], i)}) shape[{ax}]"
                progress = True
    for i, ax, d, n in pending:
        unbound = d.free_symbols - env.keys()
        where = f"@{fn.name}: argument {i} ({_pname(fn.params[i], i)}) shape[{ax}]"
        if unbound:
            raise EvaluationError(f"{where} is {n}, but the symbol {min(unbound)} of its declared dim {d} cannot be "
                                  "bound from the argument shapes")
        want = d.evaluate(env)
        if want != n:
            how = "; ".join(f"{s} = {env[s]} from {origin[s]}" for s in sorted(d.free_symbols) if s in origin)
            raise EvaluationError(f"{where} is {n}, but the parameter declares {d} = {want}" +
                                  (f" ({how})" if how else ""))
    for text in fn.constraints:
        for c in parse_constraint(text):
            if (c.lhs.free_symbols | c.rhs.free_symbols) <= env.keys() and not c.holds(env):
                values = ", ".join(f"{s} = {env[s]}" for s in sorted(c.lhs.free_symbols | c.rhs.free_symbols))
                raise EvaluationError(f"@{fn.name}: the where constraint `{text}` does not hold ({values})")
    return env


def _pname(p: Value, i: int) -> str:
    return p.hint or f"#{i}"


def _solve(d: Dim, sym: str, n: int) -> int | None:
    """The value of `sym` that makes the dim `d` (linear in it) equal n, if it is a whole extent."""
    if d == Dim.sym(sym):
        return n
    lin = d.as_linear()
    if lin is None:
        return None
    coeffs, const = lin
    c = coeffs.get(sym)
    if not c or (n - const) % c:
        return None
    v = (n - const) // c
    return v if v >= 0 else None


# ---------------------------------------------------------------- evaluation


@dataclass
class _Ctx:
    env: dict[str, int]
    float64: bool
    module: Module | None
    out: TextIO

    def dim(self, d: Dim) -> int:
        return d.evaluate(self.env)

    def shape(self, dims: Sequence[Dim]) -> tuple[int, ...]:
        return tuple(self.dim(d) for d in dims)

    def compute_dtype(self, dtype: DType) -> np.dtype:
        """The NumPy dtype arithmetic on values of `dtype` runs in."""
        if dtype.is_float:
            return np.dtype(np.float64 if self.float64 or dtype == F64 else np.float32)
        if dtype.kind == "bool":
            return np.dtype(np.bool_)
        return np.dtype(np.int64)

    def store(self, x: object, dtype: DType) -> np.ndarray:
        """A computed value in the representation of `dtype` (rounded to nearest even)."""
        arr = np.asarray(x)
        if dtype.is_float and self.float64:
            return arr.astype(np.float64)
        if dtype.kind == "bool":
            return arr.astype(np.bool_) if arr.dtype != np.bool_ else arr
        return arr.astype(numpy_dtype(dtype))

    def load(self, x: np.ndarray, dtype: DType) -> np.ndarray:
        return np.asarray(x).astype(self.compute_dtype(dtype), copy=False)


def evaluate(fn: Function, args: Sequence[np.ndarray], *, float64: bool = False, module: Module | None = None,
             out: TextIO | None = None) -> list[np.ndarray]:
    """Run `fn` on NumPy arrays; `module` resolves `call` ops, `out` receives `print` (stdout)."""
    env = bind_symbols(fn, args)
    ctx = _Ctx(env, float64, module, out or sys.stdout)
    arrays = []
    for i, (p, a) in enumerate(zip(fn.params, args)):
        arr = np.asarray(a)
        want = numpy_dtype(p.ty.dtype)
        if arr.dtype != want:
            raise EvaluationError(f"@{fn.name}: argument {i} ({_pname(p, i)}) has dtype {arr.dtype}, the parameter "
                                  f"is {p.ty.dtype}")
        arrays.append(ctx.store(arr, p.ty.dtype) if float64 else arr)
    return _run(fn, arrays, ctx)


def _run(fn: Function, arrays: Sequence[np.ndarray], ctx: _Ctx) -> list[np.ndarray]:
    vals: dict[Value, np.ndarray] = dict(zip(fn.params, arrays))
    for op in fn.ops:
        impl = _IMPLS.get(op.name)
        if impl is None:
            raise EvaluationError(f"the reference evaluator has no implementation of the op '{op.name}'")
        operands = [vals[v] for v in op.operands]
        with np.errstate(all="ignore"):
            results = impl(ctx, op, operands)
        for r, x in zip(op.results, results):
            vals[r] = x
    # Broadcasts and slices are views: results the caller may write to are copies.
    return [v if v.flags.writeable else np.array(v) for v in (vals[r] for r in fn.returns)]


Impl = Callable[[_Ctx, Op, list[np.ndarray]], list[np.ndarray]]
_IMPLS: dict[str, Impl] = {}


def _impl(*names: str) -> Callable[[Impl], Impl]:
    def register(f: Impl) -> Impl:
        for n in names:
            _IMPLS[n] = f
        return f

    return register


def _attrs(op: Op) -> dict[str, object]:
    return dict(op.attrs)


# ---------------------------------------------------------------- elementwise


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erfc, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def _neg_inf_to_zero(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # x * f(x) with f(-inf) = 0: the limit is -0, not the NaN of -inf * 0.
    return np.where(x == -np.inf, np.asarray(-0.0, x.dtype), y).astype(x.dtype)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    # The forms without cancellation for negative x: 0.5 x (1 + tanh(u)) = x sigmoid(2u), and
    # 0.5 x (1 + erf(x / sqrt2)) = 0.5 x erfc(-x / sqrt2).
    if approximate == "tanh":
        c = np.asarray(2.0 * math.sqrt(2.0 / math.pi), x.dtype)
        return _neg_inf_to_zero(x, x * _sigmoid(c * (x + np.asarray(0.044715, x.dtype) * x * x * x)))
    return _neg_inf_to_zero(x, 0.5 * x * _erfc(x * np.asarray(-1.0 / math.sqrt(2.0), x.dtype)))


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: (1.0 / np.sqrt(x)).astype(x.dtype),
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "erf": _erf,
    "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "silu": lambda x: _neg_inf_to_zero(x, x * _sigmoid(x)),
    "not": np.logical_not,
    "isnan": lambda x: np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, np.bool_),
    "isinf": lambda x: np.isinf(x) if x.dtype.kind == "f" else np.zeros(x.shape, np.bool_),
}


@_impl(*_UNARY)
def _unary(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = ctx.load(xs[0], op.operands[0].ty.dtype)
    return [ctx.store(_UNARY[op.name](x), op.result.ty.dtype)]


@_impl("gelu")
def _gelu_op(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = ctx.load(xs[0], op.operands[0].ty.dtype)
    return [ctx.store(_gelu(x, str(op.attr("approximate"))), op.result.ty.dtype)]


def _int_pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.any(y < 0):
        raise EvaluationError("pow: an integer raised to a negative integer power")
    return np.power(x, y)


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.mod,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "and": np.logical_and,
    "or": np.logical_or,
}


@_impl(*_BINARY)
def _binary(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = op.operands[0].ty.dtype
    a, b = (ctx.load(x, v.ty.dtype) for x, v in zip(xs, op.operands))
    if op.name in ("and", "or"):
        a, b = a.astype(np.bool_), b.astype(np.bool_)
    elif dt.kind == "bool":
        a, b = a.astype(np.int64), b.astype(np.int64)
    f = _int_pow if op.name == "pow" and not dt.is_float else _BINARY[op.name]
    r = f(a, b)
    if op.name == "div" and not dt.is_float:
        r = np.trunc(r)
    return [ctx.store(r, op.result.ty.dtype)]


_PREDICATES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal,
}


@_impl("cmp")
def _cmp(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    a, b = (ctx.load(x, v.ty.dtype) for x, v in zip(xs, op.operands))
    return [_PREDICATES[str(op.attr("pred"))](a, b)]


@_impl("select")
def _select(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [ctx.store(np.where(xs[0].astype(np.bool_), xs[1], xs[2]), op.result.ty.dtype)]


# ---------------------------------------------------------------- casts


@_impl("cast")
def _cast(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    src, dst = op.operands[0].ty.dtype, op.result.ty.dtype
    rounding = str(op.attr("rounding"))
    x = xs[0]
    if dst.kind == "bool":
        return [np.asarray(x) != 0]
    if src.is_float and not dst.is_float:
        xf = x.astype(np.float64)
        r = {"nearest_even": np.rint, "toward_zero": np.trunc}.get(rounding)
        if r is not None:
            y = r(xf)
        else:
            lo = np.floor(xf)
            y = lo + (_uniform(xf.shape) < (xf - lo))
        return [_saturate_to_int(y, dst)]
    if not dst.is_float or not src.is_float or ctx.float64:
        return [ctx.store(ctx.load(x, src), dst)]
    if src == dst:
        return [x]
    xf = x.astype(np.float64)
    return [_round_float(xf, dst, rounding)]


def _saturate_to_int(y: np.ndarray, dst: DType) -> np.ndarray:
    """Integral float values as the int dtype dst, as compiled code converts them (docs/ir.md): NaN
    is 0 and values out of range saturate to the type's limits (NumPy's astype leaves them undefined)."""
    nd = numpy_dtype(dst)
    info = ml_dtypes.iinfo(nd)
    lo, top = float(info.min), float(info.max) + 1.0  # both powers of two: exact in f64
    y = np.where(np.isnan(y), 0.0, y)
    out = np.where((y >= lo) & (y < top), y, 0.0).astype(nd)
    out = np.where(y < lo, np.asarray(info.min, nd), out)
    return np.where(y >= top, np.asarray(info.max, nd), out).astype(nd)


def _round_float(x: np.ndarray, dst: DType, rounding: str) -> np.ndarray:
    """x (f64) rounded to the float dtype dst, exactly (no double rounding through f32)."""
    nd = numpy_dtype(dst)
    y = (x.astype(np.float32) if dst.bits < 32 else x).astype(nd)
    if x.size == 0:
        return y
    if dst.bits < 32:
        y = _nearest_of_two(x, y)
    if rounding == "nearest_even":
        return y
    finite_max = float(ml_dtypes.finfo(nd).max) if dst.bits < 32 else float(np.finfo(nd).max)
    # Overflow to nan (fp8 without infinities): saturate before stepping toward zero.
    y64 = y.astype(np.float64)
    y = np.where(np.isnan(y64) & ~np.isnan(x), np.copysign(finite_max, x), y64).astype(nd)
    over = np.isfinite(x) & (np.abs(y.astype(np.float64)) > np.abs(x))
    tz = np.where(over, _step_toward(y, np.zeros_like(x)), y)
    if rounding == "toward_zero":
        return tz
    # Stochastic: away from zero with probability (|x| - |tz|) / ulp.
    tz64 = tz.astype(np.float64)
    inexact = np.isfinite(x) & (tz64 != x)
    up = np.where(inexact, _step_toward(tz, x), tz)
    gap = np.abs(up.astype(np.float64) - tz64)
    p = np.where(inexact & (gap > 0), np.abs(x - tz64) / np.where(gap > 0, gap, 1.0), 0.0)
    return np.where(_uniform(x.shape) < p, up, tz)


def _step_toward(y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """y moved one representable value toward target (where they differ), on the bit pattern."""
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[y.dtype.itemsize]
    width = y.dtype.itemsize * 8
    bits = y.view(uint).astype(np.uint64)
    yf = y.astype(np.float64)
    inc = target > yf
    grow = np.where(np.signbit(yf), ~inc, inc)  # sign-magnitude: a larger magnitude is bits + 1
    moved = np.where(grow, bits + np.uint64(1), bits - np.uint64(1))
    from_zero = np.where(inc, np.uint64(1), np.uint64((1 << (width - 1)) | 1))
    moved = np.where(yf == 0, from_zero, moved)
    moved = np.where(target == yf, bits, moved)
    return moved.astype(uint).view(y.dtype)


def _nearest_of_two(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correct a rounding of x to y's dtype that went through f32: keep y or its neighbour toward x,
    whichever is nearer (ties to the even bit pattern)."""
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32}[y.dtype.itemsize]
    y64 = y.astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y64) & (y64 != x)
    other = _step_toward(y, x)
    dy, do = np.abs(x - y64), np.abs(x - other.astype(np.float64))
    even = (other.view(uint) & 1) == 0
    better = ok & np.isfinite(other.astype(np.float64)) & ((do < dy) | ((do == dy) & even))
    return np.where(better, other, y)


def _uniform(shape: tuple[int, ...]) -> np.ndarray:
    """Samples for stochastic rounding: reproducible (a fixed seed per shape)."""
    seed = zlib.crc32(f"stochastic-round{tuple(shape)}".encode())
    return np.random.Generator(np.random.PCG64(seed)).random(shape)


# ---------------------------------------------------------------- creation


@_impl("constant")
def _constant(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_const_array(ctx, float(op.attr("value")), (), op.result.ty.dtype)]  # type: ignore[arg-type]


def _const_array(ctx: _Ctx, value: float, shape: tuple[int, ...], dtype: DType) -> np.ndarray:
    if dtype.kind == "bool":
        return np.full(shape, value != 0, np.bool_)
    if not dtype.is_float:
        return np.full(shape, int(value), np.int64).astype(numpy_dtype(dtype))
    return ctx.store(np.full(shape, value, np.float64), dtype)


@_impl("fill")
def _fill(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = _attrs(op)
    return [_const_array(ctx, float(a["value"]), ctx.shape(a["shape"]), op.result.ty.dtype)]  # type: ignore


@_impl("iota")
def _iota(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [ctx.store(np.arange(ctx.dim(op.attr("n"))), op.result.ty.dtype)]  # type: ignore[arg-type]


@_impl("extent")
def _extent(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [ctx.store(np.asarray(ctx.dim(op.attr("value"))), op.result.ty.dtype)]  # type: ignore[arg-type]


def random_samples(seed: int, shape: tuple[int, ...], dtype: DType, dist: str) -> np.ndarray:
    """The samples of a `random` op, in the representation of `dtype`."""
    gen = np.random.Generator(np.random.PCG64(seed))
    fdt = np.float64 if dtype == F64 else np.float32
    x = gen.standard_normal(shape, dtype=fdt) if dist == "normal" else gen.random(shape, dtype=fdt)
    return x.astype(numpy_dtype(dtype))


@_impl("random")
def _random(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = _attrs(op)
    dtype = op.result.ty.dtype
    x = random_samples(int(a["seed"]), ctx.shape(a["shape"]), dtype, str(a["dist"]))  # type: ignore[arg-type]
    return [ctx.store(x, dtype) if ctx.float64 else x]


# ---------------------------------------------------------------- shapes


@_impl("broadcast_to")
def _broadcast(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.broadcast_to(xs[0], ctx.shape(op.attr("shape")))]  # type: ignore[arg-type]


@_impl("reshape")
def _reshape(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.reshape(xs[0], ctx.shape(op.attr("shape")))]  # type: ignore[arg-type]


@_impl("transpose")
def _transpose(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.transpose(xs[0], op.attr("perm"))]  # type: ignore[arg-type]


@_impl("slice")
def _slice(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = _attrs(op)
    idx = tuple(_window(ctx.dim(lo), ctx.dim(hi), st)  # type: ignore[arg-type]
                for lo, hi, st in zip(a["starts"], a["stops"], a["steps"]))  # type: ignore[call-overload]
    return [xs[0][idx]]


def _window(lo: int, hi: int, step: int) -> slice:
    """The Python slice of the window [lo, hi) read every `step` (backwards from hi - 1 when < 0)."""
    if step > 0:
        return slice(lo, hi, step)
    if hi <= lo:
        return slice(0, 0)
    return slice(hi - 1, lo - 1 if lo > 0 else None, step)


@_impl("concat")
def _concat(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=op.attr("axis"))]  # type: ignore[arg-type]


@_impl("gather")
def _gather(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    table, ids = xs
    ids64 = ids.astype(np.int64)
    n = table.shape[0]
    bad = (ids64 < 0) | (ids64 >= n)
    if np.any(bad):
        raise EvaluationError(f"gather: id {int(ids64[bad].flat[0])} is out of range for a table of {n} rows")
    return [np.take(table, ids64, axis=0)]


# ---------------------------------------------------------------- reductions and matmul


@_impl("reduce")
def _reduce(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = _attrs(op)
    kind, axes, keep = str(a["kind"]), tuple(a["axes"]), bool(a["keepdims"])  # type: ignore[arg-type]
    src = op.operands[0].ty.dtype
    if kind in ("argmax", "argmin"):
        x = ctx.load(xs[0], src)
        rest = [i for i in range(x.ndim) if i not in axes]
        moved = np.transpose(x, [*rest, *axes]).reshape(*(x.shape[i] for i in rest), -1)
        idx = (np.argmax if kind == "argmax" else np.argmin)(moved, axis=-1)
        if keep:
            idx = idx.reshape([1 if i in axes else x.shape[i] for i in range(x.ndim)])
        return [idx.astype(np.int64)]
    acc: DType = a["accum"]  # type: ignore[assignment]
    if kind in ("max", "min"):
        x = ctx.load(xs[0], src)
        r = (np.max if kind == "max" else np.min)(x, axis=axes, keepdims=keep)
        return [ctx.store(r, op.result.ty.dtype)]
    x = ctx.load(xs[0], src).astype(ctx.compute_dtype(acc))
    f = {"sum": np.sum, "prod": np.prod, "mean": np.mean}[kind]
    return [ctx.store(f(x, axis=axes, keepdims=keep), op.result.ty.dtype)]


@_impl("kernel")
def _kernel(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    # A user @kernel has no NumPy version: it runs compiled (tessera/ir/kernel_registry.py).
    from tessera.ir.kernel_registry import run_op

    return [ctx.store(run_op(op, xs), op.result.ty.dtype)]


@_impl("matmul")
def _matmul(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    cd = ctx.compute_dtype(op.attr("accum"))  # type: ignore[arg-type]
    a, b = (np.asarray(x).astype(cd) for x in xs)
    return [ctx.store(np.matmul(a, b), op.result.ty.dtype)]


# ---------------------------------------------------------------- nn


def _in_accum(ctx: _Ctx, op: Op, x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(ctx.compute_dtype(op.attr("accum")))  # type: ignore[arg-type]


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0).astype(x.dtype))
    return e / np.sum(e, axis=axis, keepdims=True)


@_impl("softmax")
def _softmax_op(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [ctx.store(_softmax(_in_accum(ctx, op, xs[0]), int(op.attr("axis"))), op.result.ty.dtype)]  # type: ignore


@_impl("logsumexp")
def _logsumexp(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = _in_accum(ctx, op, xs[0])
    axes = tuple(op.attr("axes"))  # type: ignore[arg-type]
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    r = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if not op.attr("keepdims"):
        r = np.squeeze(r, axis=axes)
    return [ctx.store(r, op.result.ty.dtype)]


@_impl("layernorm")
def _layernorm(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w, b = (_in_accum(ctx, op, v) for v in xs)
    eps = np.asarray(float(op.attr("eps")), x.dtype)  # type: ignore[arg-type]
    mu = np.mean(x, axis=-1, keepdims=True)
    d = x - mu
    var = np.mean(d * d, axis=-1, keepdims=True)
    return [ctx.store(d / np.sqrt(var + eps) * w + b, op.result.ty.dtype)]


@_impl("rmsnorm")
def _rmsnorm(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w = (_in_accum(ctx, op, v) for v in xs)
    eps = np.asarray(float(op.attr("eps")), x.dtype)  # type: ignore[arg-type]
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return [ctx.store(x / np.sqrt(ms + eps) * w, op.result.ty.dtype)]


@_impl("attention")
def _attention(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    q, k, v = (_in_accum(ctx, op, x) for x in xs)
    scale = float(op.attr("scale"))  # type: ignore[arg-type]
    if scale == 0.0:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)
    if op.attr("causal"):
        sq, sk = s.shape[-2], s.shape[-1]
        masked = np.arange(sk)[None, :] > np.arange(sq)[:, None]
        s = np.where(masked, np.asarray(-np.inf, s.dtype), s)
    return [ctx.store(np.matmul(_softmax(s, -1), v), op.result.ty.dtype)]


# ---------------------------------------------------------------- effects and calls


@_impl("print")
def _print(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    shown = [str(x.item()) if np.ndim(x) == 0 else str(x) for x in xs]
    try:
        text = str(op.attr("format")).format(*shown)
    except (IndexError, ValueError) as exc:
        raise EvaluationError(f"print: bad format {op.attr('format')!r}: {exc}") from None
    print(text, file=ctx.out)
    return []


@_impl("call")
def _call(ctx: _Ctx, op: Op, xs: list[np.ndarray]) -> list[np.ndarray]:
    if ctx.module is None:
        raise EvaluationError(f"call @{op.attr('callee')}: evaluate with module=... to resolve calls")
    try:
        callee = ctx.module.function(str(op.attr("callee")))
    except KeyError:
        raise EvaluationError(f"call @{op.attr('callee')}: no such function in the module") from None
    # The operands are already in the caller's representation (f64 under float64): bind the callee's
    # symbols from their shapes and run its body on them.
    inner = _Ctx(bind_symbols(callee, xs), ctx.float64, ctx.module, ctx.out)
    return _run(callee, xs, inner)


def implemented_ops() -> frozenset[str]:
    """The ops this evaluator implements (the tests check it covers the whole catalogue)."""
    return frozenset(_IMPLS)
