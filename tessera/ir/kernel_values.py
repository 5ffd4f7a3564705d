"""The values of a `@kernel` while it is lowered to Tile IR, and arithmetic on them with the DSL's rules.

A kernel is specialised per extents, dtypes and static arguments, so most of what its body computes
is known at compile time: ints, floats, bools, strings, shapes, the context `T`. Only tiles and
run-time scalars become Tile IR values:

- a tile is a `tile.Value` of `BlockType`; a run-time scalar a `tile.Value` of `ScalarType`
  (program ids, loop indices, loaded scalars) — both strong in dtype promotion;
- `Weak(v)`: a run-time scalar that promotes like a Python number (a kernel's `float` parameter):
  it takes the dtype of the tiles it meets, like `2.0` does;
- `BlockSize`: `T.m`, `T.n`, `T.k`, `T.d` — an int that, given as `rows=`/`cols=`, means the program's
  own block; arithmetic on it gives a plain int;
- `BlockRange`: a `tile.range`/`tile.range_n` loop variable: the block [start, start + size); in
  arithmetic it is its start offset.

`Emitter` applies the elementwise rules: NumPy broadcasting among tiles (ranks are aligned on the
right, as Tile IR wants equal ranks), dtype promotion of spec §4 with weak scalars, true division of
integers in f32, and constant folding when every operand is known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from tessera.diagnostics import error
from tessera.dtypes import BOOL, F32, INT64, DType, promote
from tessera.ir.tile.builder import TileBuilder
from tessera.ir.tile.ops import INDEX, BlockType, Region, ScalarType, TensorRefType, TileIRError, Value
from tessera.source import Span


class BlockSize(int):
    """`T.m`, `T.n`, `T.k`, `T.d`: an int that addresses the program's own block (see module docstring)."""

    field: str

    def __new__(cls, value: int, field: str) -> Self:
        obj = super().__new__(cls, value)
        obj.field = field
        return obj


@dataclass(frozen=True)
class BlockRange:
    """The block [start, start + size) of a tile loop; `start` is an index Value or an int."""

    start: Value | int
    size: int


@dataclass(frozen=True)
class Weak:
    """A run-time scalar that promotes like a Python number (a kernel's `float` parameter)."""

    value: Value


@dataclass(frozen=True)
class TensorArg:
    """A tensor parameter of the kernel: its Tile IR parameter and its concrete shape and dtype."""

    name: str
    value: Value
    shape: tuple[int, ...]
    dtype: DType

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class TileRange:
    """`tile.range(start, stop, step)` / `tile.range_n(extent, block, prefetch=)` before the loop runs."""

    start: Value | int
    stop: Value | int
    step: int
    prefetch: int | None = None


@dataclass(frozen=True)
class Context:
    """`tile.context()`: the schedule's block sizes, `T.d` and `T.bh`, and its mapping fields."""

    m: int
    n: int | None
    k: int | None
    d: int
    bh: int
    warps: int
    stages: int
    vector: int


def is_tile(v: object) -> bool:
    return isinstance(v, Value) and isinstance(v.ty, BlockType)


def is_runtime(v: object) -> bool:
    """A value that exists only when the kernel runs (a tile or a run-time scalar)."""
    return isinstance(v, (Value, Weak))


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, BlockRange)


def static_dtype(v: object) -> DType:
    """The dtype a Python number has on its own (bool, int64, f32)."""
    if isinstance(v, bool):
        return BOOL
    return INT64 if isinstance(v, int) else F32


class Emitter:
    """Tile IR ops with the DSL's elementwise rules (module docstring). Constants are made once per
    region and reused."""

    def __init__(self, b: TileBuilder) -> None:
        self.b = b
        self._consts: dict[tuple[int, str, DType], Value] = {}

    # -- constants and scalars -------------------------------------------------------------

    def const(self, value: float | bool, dtype: DType) -> Value:
        region: Region = self.b._regions[-1]
        key = (id(region), repr(value), dtype)
        hit = self._consts.get(key)
        if hit is not None:
            return hit
        v = float(value) if isinstance(value, float) or dtype.is_float else int(value)
        if dtype == BOOL:
            v = int(bool(value))
        c = self.b.const(v, dtype)
        self._consts[key] = c
        return c

    def index(self, x: object, span: Span) -> Value:
        """An int-like value (int, loop block, run-time index) as an int64 index scalar."""
        if isinstance(x, BlockRange):
            x = x.start
        if isinstance(x, bool):
            raise error("E-TYPE", f"expected an int index, found {x}", span)
        if isinstance(x, int):
            return self.const(x, INT64)
        if isinstance(x, Value) and isinstance(x.ty, ScalarType):
            return x if x.ty == INDEX else self.b.cast(x, INT64)
        raise error("E-TYPE", f"expected an int index, found {describe(x)}", span)

    # -- dtypes ----------------------------------------------------------------------------

    def dtype_of(self, v: object) -> DType | None:
        """The dtype of a strong operand; None for Python numbers and weak scalars."""
        if isinstance(v, Value) and isinstance(v.ty, (BlockType, ScalarType)):
            return v.ty.dtype
        return None

    def result_dtype(self, args: Sequence[object]) -> DType:
        """Spec §4 promotion: strong operands promote; weak ones take their dtype, except that a float
        makes an integer result f32 and an int makes a bool result int64."""
        strong = [d for d in (self.dtype_of(a) for a in args) if d is not None]
        weak = [a for a in args if self.dtype_of(a) is None]
        if not strong:
            dts = [a.value.ty.dtype if isinstance(a, Weak) else static_dtype(a) for a in weak]  # type: ignore[union-attr]
            out = dts[0]
            for d in dts[1:]:
                out = promote(out, d)
            return out
        out = strong[0]
        for d in strong[1:]:
            out = promote(out, d)
        weak_kinds = [(a.value.ty.dtype if isinstance(a, Weak) else static_dtype(a)) for a in weak]  # type: ignore[union-attr]
        if not out.is_float and any(d.is_float for d in weak_kinds):
            return F32
        if out == BOOL and any(d.is_int for d in weak_kinds):
            return INT64
        return out

    def convert(self, v: object, dtype: DType, span: Span) -> Value:
        """An operand as a Tile IR value of `dtype` (tiles keep their shape)."""
        if isinstance(v, Weak):
            v = v.value
        if isinstance(v, BlockRange):
            v = self.index(v, span)
        if isinstance(v, Value):
            if isinstance(v.ty, TensorRefType):
                raise error("E-TYPE", f"'{v.hint}' is a tensor in global memory; load a block of it with tile.load",
                            span)
            return v if v.ty.dtype == dtype else self.b.cast(v, dtype)  # type: ignore[union-attr]
        if isinstance(v, (bool, int, float)):
            if not dtype.is_float and isinstance(v, float) and not float(v).is_integer():
                raise error("E-DTYPE", f"the number {v} does not fit a {dtype} operand", span)
            if isinstance(v, float) and not dtype.is_float and not math.isfinite(v):
                raise error("E-DTYPE", f"{v} is not a {dtype} value", span)
            return self.const(v, dtype)
        raise error("E-TYPE", f"expected a tile or a number, found {describe(v)}", span)

    # -- shapes ----------------------------------------------------------------------------

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        assert isinstance(v.ty, BlockType)
        if tuple(shape) == v.ty.shape and v.ty.space == "reg":
            return v
        return self.b.op("reshape", v, shape=tuple(shape))

    def broadcast(self, v: Value, shape: Sequence[int]) -> Value:
        if isinstance(v.ty, BlockType) and v.ty.shape == tuple(shape):
            return v
        return self.b.op("broadcast", v, shape=tuple(shape))

    def fit(self, v: Value, shape: Sequence[int], span: Span, what: str) -> Value:
        """`v` (a tile or a scalar) broadcast to `shape` by NumPy's rules, never growing past it."""
        shape = tuple(shape)
        if isinstance(v.ty, ScalarType):
            return self.broadcast(v, shape)
        src = v.ty.shape  # type: ignore[union-attr]
        padded = (1,) * (len(shape) - len(src)) + src
        if len(src) > len(shape) or any(a != b and a != 1 for a, b in zip(padded, shape)):
            raise error("E-SHAPE", f"{what} of shape {list(src)} does not fit the block {list(shape)}", span)
        if padded != src:
            v = self.reshape(v, padded)
        return self.broadcast(v, shape)

    def align(self, vals: list[Value]) -> list[Value]:
        """Blocks of lower rank get leading axes of size 1 (NumPy alignment on the right)."""
        ranks = [v.ty.rank for v in vals if isinstance(v.ty, BlockType)]
        if not ranks:
            return vals
        r = max(ranks)
        out = []
        for v in vals:
            if isinstance(v.ty, BlockType) and v.ty.rank < r:
                v = self.reshape(v, (1,) * (r - v.ty.rank) + v.ty.shape)
            out.append(v)
        return out

    # -- elementwise -----------------------------------------------------------------------

    def elementwise(self, name: str, args: Sequence[object], span: Span, *, dtype: DType | None = None,
                    **attrs: object) -> object:
        """`name` on operands promoted to one dtype (or `dtype`): a tile if any operand is one, else a
        scalar (weak if every operand was weak)."""
        dt = dtype if dtype is not None else self.result_dtype(args)
        all_weak = all(self.dtype_of(a) is None for a in args)
        vals = self.align([self.convert(a, dt, span) for a in args])
        try:
            out = self.b.op(name, *vals, **attrs)  # type: ignore[arg-type]
        except TileIRError as ex:
            raise error("E-SHAPE", f"{name}: {ex}", span) from None
        if all_weak and any(isinstance(a, Weak) for a in args) and out.ty.dtype != BOOL:  # type: ignore[union-attr]
            return Weak(out)
        return out

    def select(self, cond: object, a: object, b: object, span: Span) -> object:
        dt = self.result_dtype([a, b])
        c = self.convert(cond, BOOL, span)
        vals = self.align([c, self.convert(a, dt, span), self.convert(b, dt, span)])
        try:
            return self.b.op("select", *vals)
        except TileIRError as ex:
            raise error("E-SHAPE", f"where: {ex}", span) from None

    def cast(self, v: object, dtype: DType, span: Span) -> object:
        if isinstance(v, (bool, int, float)):
            return static_cast(v, dtype)
        return self.convert(v, dtype, span)


def static_cast(v: bool | float, dtype: DType) -> bool | int | float:
    if dtype == BOOL:
        return bool(v)
    if dtype.is_float:
        return float(v)
    return int(v)


def describe(v: object) -> str:
    if isinstance(v, Value):
        return str(v.ty)
    if isinstance(v, TensorArg):
        return f"the tensor '{v.name}'"
    if isinstance(v, (BlockRange, TileRange)):
        return type(v).__name__
    if isinstance(v, (int, float, str, bool)) or v is None:
        return repr(v)
    return type(v).__name__


