"""A NumPy interpreter of Tile IR kernels: the oracle the Schedule -> Tile lowering is tested against
while the CPU backend is checked on its own. Test-only: nothing under tessera/ imports it.

It runs every program of the grid one after another, each op on whole NumPy blocks, following the
semantics in tessera/ir/tile/ops.py: loads read `other` outside the tensor's extents, stores write the
in-bounds part, elementwise ops broadcast blocks and scalars, `reduce` keeps the rank, `dot`
accumulates in the accumulator's dtype, `for` carries values through `yield`. Narrow floats compute
in f32 and round to their dtype at each op, as the reference evaluator does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ml_dtypes
import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.ir.tile.ops import BlockType, Kernel, Op, Region, ScalarType, TensorRefType, Value

_ERF = np.vectorize(math.erf, otypes=[np.float64])


class InterpretedKernels:
    """The `launch(name, arrays)` interface of the CPU runtime, by interpretation."""

    def __init__(self, kernels: Sequence[Kernel]) -> None:
        self.kernels = {k.name: k for k in kernels}
        self.launches: list[str] = []

    def launch(self, name: str, arrays: list[np.ndarray]) -> None:
        self.launches.append(name)
        run_kernel(self.kernels[name], arrays)


def run_kernel(k: Kernel, arrays: Sequence[np.ndarray]) -> None:
    if len(arrays) != len(k.params):
        raise ValueError(f"{k.name}: {len(k.params)} parameters, {len(arrays)} arrays")
    for p, a in zip(k.params, arrays):
        t = p.ty
        assert isinstance(t, TensorRefType)
        if a.ndim != t.rank or a.dtype != numpy_dtype(t.dtype):
            raise ValueError(f"{k.name}: parameter {p.hint} is {t}, got {a.dtype} array of rank {a.ndim}")
    env = {sym: arrays[i].shape[ax] for sym, (i, ax) in k.extents.items()}
    grid = tuple(d.evaluate(env) for d in k.grid)
    for pid in np.ndindex(*grid):
        _Program(k, arrays, pid, grid).region(k.body)


def _compute_dtype(d: np.dtype) -> np.dtype:
    if d.kind == "f" or d in (np.dtype(ml_dtypes.bfloat16), np.dtype(ml_dtypes.float8_e4m3fn),
                              np.dtype(ml_dtypes.float8_e5m2)):
        return np.dtype(np.float64) if d == np.float64 else np.dtype(np.float32)
    return d


def _np(v: Value) -> np.dtype:
    return numpy_dtype(v.ty.dtype)  # type: ignore[union-attr]


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _ERF(x / math.sqrt(2)).astype(x.dtype))


_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "erf": lambda x: _ERF(x).astype(x.dtype), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, np.zeros((), x.dtype)), "silu": lambda x: x / (1 + np.exp(-x)),
}
_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "floordiv": np.floor_divide,
    "mod": np.mod, "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
}
_CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
        "ge": np.greater_equal}


def _cast(x: np.ndarray, dst: np.dtype, rounding: str) -> np.ndarray:
    x = np.asarray(x)
    if dst == np.bool_:
        return x != 0
    src_float = _compute_dtype(x.dtype).kind == "f"
    if src_float and dst.kind in "iu":
        r = {"nearest_even": np.rint, "toward_zero": np.trunc}[rounding]
        return r(x.astype(np.float64)).astype(dst)
    if not src_float or _compute_dtype(dst).kind != "f":
        return x.astype(dst)
    wide = x.astype(np.float64)
    y = (wide.astype(np.float32) if dst.itemsize < 4 else wide).astype(dst)
    if rounding == "nearest_even":
        return y
    if rounding != "toward_zero":
        raise NotImplementedError(f"the interpreter does not model {rounding} rounding")
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dst.itemsize]
    y = np.array(y)
    over = np.isfinite(wide) & (np.abs(y.astype(np.float64)) > np.abs(wide))
    bits = y.view(uint).copy()
    bits[over] -= 1
    return bits.view(dst)


class _Program:
    def __init__(self, k: Kernel, arrays: Sequence[np.ndarray], pid: tuple[int, ...],
                 grid: tuple[int, ...]) -> None:
        self.k = k
        self.arrays = arrays
        self.pid = pid
        self.grid = grid
        self.env: dict[int, object] = {p.uid: a for p, a in zip(k.params, arrays)}

    def get(self, v: Value) -> object:
        return self.env[v.uid]

    def set(self, v: Value, x: object) -> None:
        t = v.ty
        if isinstance(t, BlockType):
            x = np.asarray(x)
            if x.shape != t.shape:
                x = np.broadcast_to(x, t.shape)
            x = np.array(x, dtype=numpy_dtype(t.dtype))
        elif isinstance(t, ScalarType):
            x = np.asarray(x).astype(numpy_dtype(t.dtype))[()]
        self.env[v.uid] = x

    def region(self, r: Region) -> list[object] | None:
        for op in r.ops:
            if op.name == "yield":
                return [self.get(v) for v in op.operands]
            self.op(op)
        return None

    def op(self, op: Op) -> None:
        a = dict(op.attrs)
        xs = op.operands
        name = op.name
        if name == "program_id":
            return self.set(op.result, self.pid[a["axis"]])
        if name == "num_programs":
            return self.set(op.result, self.grid[a["axis"]])
        if name == "dim":
            return self.set(op.result, self.get(xs[0]).shape[a["axis"]])  # type: ignore[union-attr]
        if name == "const":
            return self.set(op.result, np.asarray(a["value"]).astype(numpy_dtype(a["dtype"])))
        if name == "iota":
            shape, axis = tuple(a["shape"]), a["axis"]
            ar = np.arange(shape[axis], dtype=np.int64).reshape([-1 if i == axis else 1 for i in range(len(shape))])
            return self.set(op.result, np.broadcast_to(ar, shape))
        if name == "full":
            return self.set(op.result, np.full(tuple(a["shape"]), a["value"]).astype(numpy_dtype(a["dtype"])))
        if name == "load":
            return self.set(op.result, self.load(op, a))
        if name == "store":
            return self.store(op)
        if name == "for":
            return self.loop(op)
        if name == "barrier":
            return None
        if name == "broadcast":
            return self.set(op.result, np.broadcast_to(self.get(xs[0]), tuple(a["shape"])))
        if name == "transpose":
            return self.set(op.result, np.transpose(self.get(xs[0]), a["perm"]))
        if name == "reshape":
            return self.set(op.result, np.reshape(self.get(xs[0]), tuple(a["shape"])))
        if name == "item":
            return self.set(op.result, np.asarray(self.get(xs[0])).reshape(-1)[0])
        if name == "reduce":
            return self.set(op.result, self.reduce(self.get(xs[0]), a["kind"], a["axis"]))
        if name == "dot":
            x, y, acc = (np.asarray(self.get(v)) for v in xs)
            cd = _compute_dtype(acc.dtype)
            return self.set(op.result, (acc.astype(cd) + x.astype(cd) @ y.astype(cd)).astype(acc.dtype))
        return self.set(op.result, self.elementwise(op, a))

    def elementwise(self, op: Op, a: dict) -> object:
        name = op.name
        vals = [np.asarray(self.get(v)) for v in op.operands]
        out_dt = numpy_dtype(op.result.ty.dtype)  # type: ignore[union-attr]
        if name == "cast":
            return _cast(vals[0], out_dt, a["rounding"])
        if name == "select":
            return np.where(vals[0], vals[1], vals[2])
        if name in ("isnan", "isinf"):
            return (np.isnan if name == "isnan" else np.isinf)(vals[0].astype(_compute_dtype(vals[0].dtype)))
        if name in ("and", "or", "not"):
            if vals[0].dtype == np.bool_:
                f = {"and": np.logical_and, "or": np.logical_or, "not": np.logical_not}[name]
            else:
                f = {"and": np.bitwise_and, "or": np.bitwise_or, "not": np.invert}[name]
            return f(*vals)
        cd = _compute_dtype(vals[0].dtype)
        wide = [v.astype(cd) for v in vals]
        with np.errstate(all="ignore"):
            if name == "cmp":
                return _CMP[a["pred"]](*wide)
            if name == "gelu":
                r = _gelu(wide[0], a["approximate"])
            elif name in _UNARY:
                r = _UNARY[name](wide[0])
            else:
                r = _BINARY[name](*wide)
        return np.asarray(r).astype(out_dt)

    def reduce(self, x: np.ndarray, kind: str, axis: int) -> np.ndarray:
        x = np.asarray(x)
        if kind in ("argmax", "argmin"):
            f = np.argmax if kind == "argmax" else np.argmin
            return f(x, axis=axis, keepdims=True).astype(np.int64)
        f = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean}[kind]
        cd = _compute_dtype(x.dtype)
        return f(x.astype(cd), axis=axis, keepdims=True).astype(x.dtype)

    def _window(self, arr: np.ndarray, starts: list[int], shape: tuple[int, ...]):
        src, dst = [], []
        for s, n, ext in zip(starts, shape, arr.shape):
            lo, hi = max(s, 0), min(s + n, ext)
            if hi <= lo:
                return None
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        return tuple(src), tuple(dst)

    def load(self, op: Op, a: dict) -> np.ndarray:
        arr = self.get(op.operands[0])
        starts = [int(self.get(v)) for v in op.operands[1:]]  # type: ignore[call-overload]
        shape = tuple(a["shape"])
        with np.errstate(invalid="ignore"):
            block = np.full(shape, a["other"]).astype(arr.dtype)  # type: ignore[union-attr]
        w = self._window(arr, starts, shape)  # type: ignore[arg-type]
        if w is not None:
            block[w[1]] = arr[w[0]]  # type: ignore[index]
        return block

    def store(self, op: Op) -> None:
        arr = self.get(op.operands[0])
        starts = [int(self.get(v)) for v in op.operands[1:-1]]  # type: ignore[call-overload]
        value = np.asarray(self.get(op.operands[-1]))
        w = self._window(arr, starts, value.shape)  # type: ignore[arg-type]
        if w is not None:
            arr[w[0]] = value[w[1]]  # type: ignore[index]

    def loop(self, op: Op) -> None:
        start, stop, step = (int(self.get(v)) for v in op.operands[:3])  # type: ignore[call-overload]
        carried = [self.get(v) for v in op.operands[3:]]
        region = op.regions[0]
        iv, *args = region.args
        for i in range(start, stop, step):
            self.set(iv, i)
            for arg, val in zip(args, carried):
                self.set(arg, val)
            out = self.region(region)
            carried = list(out or [])
        for r, val in zip(op.results, carried):
            self.set(r, val)
