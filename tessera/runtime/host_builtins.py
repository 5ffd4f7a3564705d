"""The builtins of spec §6 as the host runtime evaluates them: NumPy on concrete arrays, with Tessera's
dtype rules (weak Python scalars, f32 for true division of integers, accumulation dtypes for matmuls
and reductions, the input dtype back from normalisations). Host code is not the compiled path: these
are plain NumPy evaluations of what `main()` and its helpers compute around the `@jit` calls.

Each entry of `HOST_BUILTINS` takes the arguments bound by name (the checker's catalogue gives the
parameter lists and defaults) and a `HostCtx` for what is specific to the run: randomness, output,
files. Failures the user can cause raise `HostFailure` with a one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tessera.dtypes import BOOL, DTYPES, F32, INT64, DType, default_accum, promote
from tessera.ir.kernel_schedule import ScheduleSpec
from tessera.runtime import values

Value = Any


class HostFailure(Exception):
    """A user-visible failure of a builtin; `code` is the diagnostic code (E-RUNTIME, E-SHAPE, ...)."""

    def __init__(self, message: str, code: str = "E-RUNTIME") -> None:
        super().__init__(message)
        self.code = code


class HostCtx(Protocol):
    def generator(self, seed: int | None) -> np.random.Generator: ...

    def write(self, text: str) -> None: ...


@dataclass(frozen=True)
class PolicyMarker:
    """A numeric policy written as a value (`accum(f32)`): on the host a dtype keeps no policy."""

    text: str


class NullContext:
    """`effects.suspend(...)`, `effects.allow(...)`, `device(...)`: scopes the checker reads; at run time
    on the host they do nothing."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return self.what


# ---------------------------------------------------------------- dtype rules on values


def is_tensor(v: Value) -> bool:
    return isinstance(v, np.ndarray)


def dtype_of(a: np.ndarray) -> DType:
    d = values.tessera_dtype(a.dtype)
    if d is None:
        raise HostFailure(f"unsupported element dtype {a.dtype}", "E-DTYPE")
    return d


def is_number(v: Value) -> bool:
    return isinstance(v, (bool, int, float)) and not isinstance(v, str)


def result_dtype(vals: Sequence[Value]) -> DType | None:
    """Spec §4 on values: tensors promote; scalars are weak (a float scalar makes an int tensor f32,
    an int scalar makes a bool tensor int64). None when every operand is a Python scalar."""
    out: DType | None = None
    for v in vals:
        if is_tensor(v):
            d = dtype_of(v)
            out = d if out is None else promote(out, d)
    if out is None:
        return None
    if not out.is_float and any(isinstance(v, float) for v in vals):
        return F32
    if out == BOOL and any(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return INT64
    return out


def compute_dtype(d: DType) -> np.dtype:
    """NumPy computes narrow floats (f16, bf16, fp8) in f32 and rounds the result once."""
    if d.is_float and d.bits < 32:
        return np.dtype(np.float32)
    return values.np_dtype(d)


def operand(v: Value, dt: np.dtype) -> np.ndarray:
    if is_tensor(v):
        return v.astype(dt, copy=False)
    if not is_number(v):
        raise HostFailure(f"expected a tensor or a number, found {values.describe(v)}", "E-TYPE")
    return np.asarray(v, dtype=dt)


def finish(r: np.ndarray, d: DType) -> np.ndarray:
    return values.convert(np.asarray(r), d)


def elementwise(fn: Callable[..., np.ndarray], vals: Sequence[Value], *, float_only: bool = False,
                out: DType | None = None, scalar_fn: Callable[..., Value] | None = None) -> Value:
    """Apply fn elementwise with Tessera promotion; Python scalars alone compute in Python."""
    d = result_dtype(vals)
    if d is None:
        for v in vals:
            if not is_number(v):
                raise HostFailure(f"expected a tensor or a number, found {values.describe(v)}", "E-TYPE")
        if scalar_fn is not None:
            return scalar_fn(*vals)
        r = fn(*(np.float64(v) if float_only else np.asarray(v) for v in vals))
        return r.item() if isinstance(r, (np.ndarray, np.generic)) else r
    if float_only and not d.is_float:
        raise HostFailure(f"needs a floating-point tensor, found {d}", "E-DTYPE")
    cd = compute_dtype(d)
    with np.errstate(all="ignore"):
        r = fn(*(operand(v, cd) for v in vals))
    return finish(r, out if out is not None else d)


def accum_dtype(a: np.ndarray) -> DType:
    return default_accum(dtype_of(a))


def tensor_arg(v: Value, name: str = "x") -> np.ndarray:
    if is_tensor(v):
        return v
    if is_number(v):
        return np.asarray(v, dtype=np.float32 if isinstance(v, float) else (
            np.bool_ if isinstance(v, bool) else np.int64))
    raise HostFailure(f"'{name}' must be a tensor, found {values.describe(v)}", "E-TYPE")


def shape_arg(v: Value) -> tuple[int, ...]:
    items = v if isinstance(v, (tuple, list)) else (v,)
    out = []
    for x in items:
        if isinstance(x, np.ndarray) and x.ndim == 0:
            x = x.item()
        if not isinstance(x, int) or isinstance(x, bool):
            raise HostFailure(f"a shape is an int or a tuple of ints, found {values.describe(v)}", "E-TYPE")
        if x < 0:
            raise HostFailure(f"a dimension cannot be negative ({x})", "E-SHAPE")
        out.append(x)
    return tuple(out)


def axes_arg(v: Value, rank: int) -> tuple[int, ...] | None:
    if v is None:
        return None
    items = v if isinstance(v, (tuple, list)) else (v,)
    out = []
    for a in items:
        if not isinstance(a, int) or isinstance(a, bool) or not -rank <= a < max(rank, 1):
            raise HostFailure(f"axis {a!r} is out of range for rank {rank}", "E-SHAPE")
        out.append(a % rank if rank else 0)
    return tuple(out)


def dtype_arg(v: Value) -> DType:
    if isinstance(v, DType):
        return v
    raise HostFailure(f"expected a dtype such as f32 or bf16, found {values.describe(v)}", "E-TYPE")


# ---------------------------------------------------------------- elementwise math

_SQRT1_2 = 0.7071067811865476
_erf_py = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erf_py(np.asarray(x, dtype=np.float64)), dtype=np.float64).astype(x.dtype)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.asarray(0.7978845608028654, x.dtype) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + _erf(x * np.asarray(_SQRT1_2, x.dtype)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


UNARY: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    "exp": (np.exp, True), "log": (np.log, True), "log1p": (np.log1p, True), "sqrt": (np.sqrt, True),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), True), "sin": (np.sin, True), "cos": (np.cos, True),
    "tanh": (np.tanh, True), "erf": (_erf, True), "sigmoid": (_sigmoid, True),
    "silu": (lambda x: x * _sigmoid(x), True),
    "neg": (np.negative, False), "abs": (np.abs, False), "relu": (lambda x: np.maximum(x, 0), False),
}

BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "//": np.floor_divide,
    "%": np.mod, "**": np.power,
}

COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
    ">=": np.greater_equal,
}


def binary(op: str, a: Value, b: Value) -> Value:
    """`a op b` on tensors and numbers (`/` of integer tensors gives f32)."""
    if not (is_tensor(a) or is_tensor(b)):
        return _python_binop(op, a, b)
    fn = BINARY[op]
    d = result_dtype([a, b])
    assert d is not None
    if op == "/" and not d.is_float:
        d = F32
    cd = compute_dtype(d)
    with np.errstate(all="ignore"):
        r = fn(operand(a, cd), operand(b, cd))
    return finish(r, d)


def _python_binop(op: str, a: Value, b: Value) -> Value:
    if isinstance(a, str) or isinstance(b, str) or isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        if op == "+" and type(a) is type(b):
            return a + b
        if op == "*" and (isinstance(a, int) or isinstance(b, int)):
            return a * b
        raise HostFailure(f"unsupported operands for '{op}': {values.describe(a)} and {values.describe(b)}",
                          "E-TYPE")
    if not (is_number(a) and is_number(b)):
        raise HostFailure(f"unsupported operands for '{op}': {values.describe(a)} and {values.describe(b)}",
                          "E-TYPE")
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        return a ** b
    except ZeroDivisionError:
        raise HostFailure("division by zero") from None
    except OverflowError:
        raise HostFailure(f"'{op}' overflows") from None


def matmul(a: Value, b: Value) -> np.ndarray:
    a, b = tensor_arg(a, "a"), tensor_arg(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        raise HostFailure("matmul needs operands of rank >= 1", "E-SHAPE")
    acc = default_accum(promote(dtype_of(a), dtype_of(b)))
    cd = values.np_dtype(acc)
    try:
        r = np.matmul(a.astype(cd), b.astype(cd))
    except ValueError as ex:
        raise HostFailure(f"matmul: shapes {values.format_value(a.shape)} and {values.format_value(b.shape)} "
                          f"do not fit ({ex})", "E-SHAPE") from None
    return np.asarray(r)


def compare(op: str, a: Value, b: Value) -> Value:
    if not (is_tensor(a) or is_tensor(b)):
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        try:
            return {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
        except TypeError:
            raise HostFailure(f"cannot compare {values.describe(a)} and {values.describe(b)}", "E-TYPE") from None
    d = result_dtype([a, b])
    assert d is not None
    cd = compute_dtype(d)
    return np.asarray(COMPARE[op](operand(a, cd), operand(b, cd)))


# ---------------------------------------------------------------- the builtins

Args = dict[str, Value]
Impl = Callable[[Args, list[Value], HostCtx], Value]
HOST_BUILTINS: dict[str, Impl] = {}


def builtin(name: str) -> Callable[[Impl], Impl]:
    def reg(f: Impl) -> Impl:
        HOST_BUILTINS[name] = f
        return f

    return reg


def _creation(fill: Callable[[tuple[int, ...], np.dtype], np.ndarray]) -> Impl:
    return lambda a, va, ctx: fill(shape_arg(a["shape"]), values.np_dtype(dtype_arg(a["dtype"])))


HOST_BUILTINS["zeros"] = _creation(np.zeros)
HOST_BUILTINS["ones"] = _creation(np.ones)


@builtin("full")
def _full(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    d = dtype_arg(a["dtype"])
    return finish(np.full(shape_arg(a["shape"]), float(a["value"])), d)


@builtin("arange")
def _arange(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    n = a["n"]
    if isinstance(n, np.ndarray) and n.ndim == 0:
        n = n.item()
    if not isinstance(n, int):
        raise HostFailure(f"arange needs an int, found {values.describe(n)}", "E-TYPE")
    return finish(np.arange(max(n, 0)), dtype_arg(a["dtype"]))


def _random(dist: str) -> Impl:
    def impl(a: Args, va: list[Value], ctx: HostCtx) -> Value:
        d = dtype_arg(a["dtype"])
        if not d.is_float:
            raise HostFailure(f"random tensors are floating point, found {d}", "E-DTYPE")
        g = ctx.generator(a.get("seed"))
        shape = shape_arg(a["shape"])
        x = g.standard_normal(shape) if dist == "normal" else g.random(shape)
        return finish(x, d)

    return impl


HOST_BUILTINS["randn"] = _random("normal")
HOST_BUILTINS["rand"] = _random("uniform")


@builtin("print")
def _print(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    ctx.write(" ".join(values.format_value(v) for v in va) + "\n")
    return None


@builtin("load")
def _load(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    try:
        return values.load_npy(str(a["path"]))
    except values.BadInputFile as ex:
        raise HostFailure(str(ex)) from None


@builtin("save")
def _save(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    try:
        values.save_npy(str(a["path"]), x)
    except OSError as ex:
        raise HostFailure(f"cannot save '{a['path']}': {ex.strerror or ex}") from None
    return None


@builtin("clock")
def _clock(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    import time

    return time.perf_counter()


@builtin("device")
def _device(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    return NullContext(f"device({a['kind']!r})")


def _unary(f: Callable[[np.ndarray], np.ndarray], float_only: bool) -> Impl:
    return lambda a, va, ctx: elementwise(f, [a["x"]], float_only=float_only)


for _n, (_f, _float_only) in UNARY.items():
    HOST_BUILTINS[_n] = _unary(_f, _float_only)

HOST_BUILTINS["isnan"] = lambda a, va, ctx: elementwise(np.isnan, [a["x"]], out=BOOL, scalar_fn=math.isnan)
HOST_BUILTINS["isinf"] = lambda a, va, ctx: elementwise(np.isinf, [a["x"]], out=BOOL, scalar_fn=math.isinf)
HOST_BUILTINS["gelu"] = lambda a, va, ctx: elementwise(lambda x: _gelu(x, a["approximate"]), [a["x"]],
                                                       float_only=True)
HOST_BUILTINS["maximum"] = lambda a, va, ctx: elementwise(np.maximum, [a["a"], a["b"]], scalar_fn=max)
HOST_BUILTINS["minimum"] = lambda a, va, ctx: elementwise(np.minimum, [a["a"], a["b"]], scalar_fn=min)


@builtin("where")
def _where(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    cond = a["cond"]
    if not is_tensor(cond):
        return a["a"] if cond else a["b"]
    d = result_dtype([a["a"], a["b"]])
    if d is None:
        d = F32 if any(isinstance(v, float) for v in (a["a"], a["b"])) else INT64
    cd = compute_dtype(d)
    return finish(np.where(cond.astype(bool), operand(a["a"], cd), operand(a["b"], cd)), d)


@builtin("clip")
def _clip(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x, lo, hi = a["x"], a["lo"], a["hi"]
    d = result_dtype([x, lo, hi])
    if d is None:
        return min(max(x, lo), hi)
    if is_tensor(x) and not is_tensor(lo) and not is_tensor(hi):
        d = dtype_of(x)
    cd = compute_dtype(d)
    return finish(np.clip(operand(x, cd), operand(lo, cd), operand(hi, cd)), d)


# -- reductions


def _reduce(kind: str) -> Impl:
    def impl(a: Args, va: list[Value], ctx: HostCtx) -> Value:
        x = tensor_arg(a["x"])
        keep = bool(a["keepdims"])
        if kind in ("argmax", "argmin"):
            ax = a["axis"]
            if isinstance(ax, (tuple, list)):
                raise HostFailure(f"{kind} takes a single axis, not a tuple", "E-TYPE")
            axes = axes_arg(ax, x.ndim)
            fn = np.argmax if kind == "argmax" else np.argmin
            if x.size == 0:
                raise HostFailure(f"{kind} of an empty tensor", "E-SHAPE")
            xf = x.astype(np.float32) if values.is_extended(x.dtype) else x
            r = fn(xf, axis=None if axes is None else axes[0], keepdims=keep)
            return np.asarray(r, dtype=np.int64)
        axes = axes_arg(a["axis"], x.ndim)
        d = dtype_of(x)
        if kind in ("max", "min"):
            if x.size == 0:
                raise HostFailure(f"{kind} of an empty tensor", "E-SHAPE")
            xf = x.astype(np.float32) if values.is_extended(x.dtype) else x
            r = (np.max if kind == "max" else np.min)(xf, axis=axes, keepdims=keep)
            return finish(r, d)
        acc = default_accum(d)
        if kind in ("mean", "logsumexp", "var") and not d.is_float:
            acc = F32
        xa = x.astype(values.np_dtype(acc))
        with np.errstate(all="ignore"):
            if kind == "sum":
                r = np.sum(xa, axis=axes, keepdims=keep)
            elif kind == "prod":
                r = np.prod(xa, axis=axes, keepdims=keep)
            elif kind == "mean":
                r = np.mean(xa, axis=axes, keepdims=keep)
            elif kind == "var":
                r = np.var(xa, axis=axes, keepdims=keep)
            else:
                m = np.max(xa, axis=axes, keepdims=True)
                m = np.where(np.isfinite(m), m, 0)
                r = np.log(np.sum(np.exp(xa - m), axis=axes, keepdims=True)) + m
                if not keep:
                    r = np.squeeze(r, axis=axes if axes is not None else tuple(range(x.ndim)))
        return finish(r, acc)

    return impl


for _n in ("sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "var"):
    HOST_BUILTINS[_n] = _reduce(_n)


# -- shapes


@builtin("reshape")
def _reshape(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    shape = a["shape"] if isinstance(a["shape"], (tuple, list)) else (a["shape"],)
    if sum(1 for s in shape if s == -1) > 1 or any(not isinstance(s, int) or s < -1 for s in shape):
        raise HostFailure(f"bad reshape target {values.format_value(tuple(shape))}", "E-SHAPE")
    try:
        return np.reshape(x, tuple(shape))
    except ValueError:
        raise HostFailure(f"cannot reshape {values.format_value(x.shape)} ({x.size} elements) to "
                          f"{values.format_value(tuple(shape))}", "E-SHAPE") from None


def _perm(x: np.ndarray, axes: Value) -> tuple[int, ...]:
    if axes is None:
        return tuple(reversed(range(x.ndim)))
    perm = axes_arg(axes, x.ndim)
    assert perm is not None
    if sorted(perm) != list(range(x.ndim)):
        raise HostFailure(f"axes {values.format_value(tuple(axes))} are not a permutation of 0..{x.ndim - 1}",
                          "E-SHAPE")
    return perm


HOST_BUILTINS["transpose"] = lambda a, va, ctx: np.transpose(tensor_arg(a["x"]), _perm(tensor_arg(a["x"]),
                                                                                       a["axes"]))
HOST_BUILTINS["permute"] = HOST_BUILTINS["transpose"]


@builtin("swapaxes")
def _swapaxes(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    i, j = axes_arg((a["a"], a["b"]), x.ndim) or (0, 0)
    return np.swapaxes(x, i, j)


@builtin("expand_dims")
def _expand_dims(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    ax = axes_arg(a["axis"], x.ndim + 1)
    return np.expand_dims(x, ax[0] if ax else 0)


@builtin("squeeze")
def _squeeze(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    axes = axes_arg(a["axis"], x.ndim)
    if axes is not None and any(x.shape[i] != 1 for i in axes):
        raise HostFailure(f"cannot squeeze axes {axes} of shape {values.format_value(x.shape)}", "E-SHAPE")
    return np.squeeze(x, axis=axes)


@builtin("broadcast_to")
def _broadcast_to(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    shape = shape_arg(a["shape"])
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        raise HostFailure(f"cannot broadcast {values.format_value(x.shape)} to {values.format_value(shape)}",
                          "E-SHAPE") from None


def _join(a: Args, stack: bool) -> Value:
    xs = a["xs"]
    if not isinstance(xs, (tuple, list)) or not xs:
        raise HostFailure("expected a non-empty list or tuple of tensors", "E-TYPE")
    parts = [tensor_arg(x, "xs") for x in xs]
    d = result_dtype(parts)
    assert d is not None
    cd = values.np_dtype(d)
    try:
        fn = np.stack if stack else np.concatenate
        return np.asarray(fn([p.astype(cd) for p in parts], axis=a["axis"]))
    except (ValueError, np.exceptions.AxisError) as ex:
        raise HostFailure(f"{'stack' if stack else 'concat'}: {str(ex).splitlines()[0]}", "E-SHAPE") from None


HOST_BUILTINS["concat"] = lambda a, va, ctx: _join(a, stack=False)
HOST_BUILTINS["stack"] = lambda a, va, ctx: _join(a, stack=True)


@builtin("split")
def _split(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    n = a["n"]
    ax = axes_arg(a["axis"], x.ndim)
    axis = ax[0] if ax else 0
    if not isinstance(n, int) or n < 1 or x.shape[axis] % n:
        raise HostFailure(f"split: x.shape[{axis}] ({x.shape[axis]}) is not divisible by {n}", "E-SHAPE")
    return tuple(np.split(x, n, axis=axis))


HOST_BUILTINS["matmul"] = lambda a, va, ctx: matmul(a["a"], a["b"])


@builtin("einsum")
def _einsum(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    ops = [tensor_arg(o, "operand") for o in va]
    d = ops[0].dtype if ops else np.float32
    acc = default_accum(result_dtype(ops) or F32)
    try:
        return np.asarray(np.einsum(a["spec"], *(o.astype(values.np_dtype(acc)) for o in ops)))
    except ValueError as ex:
        raise HostFailure(f"einsum: {str(ex).splitlines()[0]} (operands of dtype {d})", "E-SHAPE") from None


# -- nn


def _float_compute(x: np.ndarray) -> tuple[np.ndarray, DType]:
    d = dtype_of(x)
    if not d.is_float:
        raise HostFailure(f"needs a floating-point tensor, found {d}", "E-DTYPE")
    return x.astype(values.np_dtype(default_accum(d))), d


def _softmax_f(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return e / np.sum(e, axis=axis, keepdims=True)


@builtin("softmax")
def _softmax(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    xf, d = _float_compute(x)
    ax = axes_arg(a["axis"], x.ndim)
    with np.errstate(all="ignore"):
        return finish(_softmax_f(xf, ax[0] if ax else -1), d)


def _last_axis(w: Value, x: np.ndarray, name: str) -> np.ndarray:
    w = tensor_arg(w, name)
    if w.shape != (x.shape[-1],):
        raise HostFailure(f"'{name}' must have shape ({x.shape[-1]},), found {values.format_value(w.shape)}",
                          "E-SHAPE")
    return w


@builtin("layernorm")
def _layernorm(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    xf, d = _float_compute(x)
    w = _last_axis(a["w"], x, "w").astype(xf.dtype)
    b = _last_axis(a["b"], x, "b").astype(xf.dtype)
    mu = np.mean(xf, axis=-1, keepdims=True)
    var = np.mean((xf - mu) ** 2, axis=-1, keepdims=True)
    return finish((xf - mu) / np.sqrt(var + np.asarray(a["eps"], xf.dtype)) * w + b, d)


@builtin("rmsnorm")
def _rmsnorm(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    xf, d = _float_compute(x)
    w = _last_axis(a["w"], x, "w").astype(xf.dtype)
    ms = np.mean(xf * xf, axis=-1, keepdims=True)
    return finish(xf / np.sqrt(ms + np.asarray(a["eps"], xf.dtype)) * w, d)


@builtin("dropout")
def _dropout(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = tensor_arg(a["x"])
    p = float(a["p"])
    if not 0.0 <= p < 1.0:
        raise HostFailure(f"dropout probability must be in [0, 1), found {p}")
    xf, d = _float_compute(x)
    keep = ctx.generator(a.get("seed")).random(x.shape) >= p
    return finish(np.where(keep, xf / np.asarray(1.0 - p, xf.dtype), 0), d)


@builtin("embedding")
def _embedding(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    table, ids = tensor_arg(a["table"], "table"), tensor_arg(a["ids"], "ids")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise HostFailure(f"embedding: ids must be in 0..{table.shape[0] - 1}, found {int(ids.min())}.."
                          f"{int(ids.max())}", "E-SHAPE")
    return table[ids.astype(np.int64)]


@builtin("one_hot")
def _one_hot(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    ids = tensor_arg(a["ids"], "ids").astype(np.int64)
    n = int(a["n"])
    return finish((ids[..., None] == np.arange(n)).astype(np.float64), dtype_arg(a["dtype"]))


@builtin("cross_entropy")
def _cross_entropy(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    logits, labels = tensor_arg(a["logits"], "logits"), tensor_arg(a["labels"], "labels").astype(np.int64)
    lf, d = _float_compute(logits)
    m = np.max(lf, axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(lf - m), axis=-1)) + m[..., 0]
    if labels.size and (labels.min() < 0 or labels.max() >= lf.shape[-1]):
        raise HostFailure(f"cross_entropy: labels must be in 0..{lf.shape[-1] - 1}", "E-SHAPE")
    picked = np.take_along_axis(lf, labels[..., None], axis=-1)[..., 0]
    return finish(np.mean(lse - picked), default_accum(d))


@builtin("mse")
def _mse(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x, y = tensor_arg(a["a"], "a"), tensor_arg(a["b"], "b")
    d = result_dtype([x, y])
    assert d is not None
    acc = default_accum(d)
    diff = x.astype(values.np_dtype(acc)) - y.astype(values.np_dtype(acc))
    return finish(np.mean(diff * diff), acc)


@builtin("attention")
def _attention(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    q = tensor_arg(a["q"], "q")
    qf, d = _float_compute(q)
    kf = tensor_arg(a["k"], "k").astype(qf.dtype)
    vf = tensor_arg(a["v"], "v").astype(qf.dtype)
    scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
    s = np.matmul(qf, np.swapaxes(kf, -1, -2)) * np.asarray(scale, qf.dtype)
    if a["causal"]:
        rows = np.arange(s.shape[-2])[:, None]
        cols = np.arange(s.shape[-1])[None, :]
        s = np.where(cols <= rows, s, -np.inf)
    with np.errstate(all="ignore"):
        return finish(np.matmul(_softmax_f(s, -1), vf), d)


@builtin("cast")
def _cast(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    d = dtype_arg(a["dtype"])
    return values.convert(tensor_arg(a["x"]), d) if is_tensor(a["x"]) else finish(np.asarray(a["x"]), d)


@builtin("cast_like")
def _cast_like(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    return values.convert(tensor_arg(a["x"]), dtype_of(tensor_arg(a["y"], "y")))


# -- host scalars and containers


@builtin("range")
def _range(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    start, stop, step = a["start"], a["stop"], a["step"]
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise HostFailure("range() step must not be zero")
    return range(int(start), int(stop), int(step))


@builtin("len")
def _len(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    x = a["x"]
    if is_tensor(x):
        if x.ndim == 0:
            raise HostFailure("len() of a rank-0 tensor", "E-TYPE")
        return int(x.shape[0])
    try:
        return len(x)
    except TypeError:
        raise HostFailure(f"len() of {values.describe(x)}", "E-TYPE") from None


def _scalar_conv(kind: type) -> Impl:
    def impl(a: Args, va: list[Value], ctx: HostCtx) -> Value:
        x = a["x"]
        if is_tensor(x):
            if x.ndim != 0:
                raise HostFailure(f"cannot convert a tensor of shape {values.format_value(x.shape)} to "
                                  f"{kind.__name__}", "E-TYPE")
            x = x.astype(np.float64).item() if values.is_extended(x.dtype) else x.item()
        try:
            return kind(x)
        except (TypeError, ValueError, OverflowError):
            raise HostFailure(f"cannot convert {values.describe(x)} to {kind.__name__}", "E-TYPE") from None

    return impl


for _k in (int, float, bool):
    HOST_BUILTINS[_k.__name__] = _scalar_conv(_k)

HOST_BUILTINS["dict"] = lambda a, va, ctx: dict(va)


@builtin("Schedule")
def _schedule(a: Args, va: list[Value], ctx: HostCtx) -> Value:
    block = a["block"]
    return ScheduleSpec(tuple(block) if isinstance(block, (tuple, list)) else block, a["k"], a["warps"],
                        a["stages"], a["vector"], a["swizzle"])  # type: ignore[arg-type]


DTYPE_VALUES: dict[str, DType] = dict(DTYPES)
