"""The lowering of each `tile.*` intrinsic to Tile IR ops: one row per intrinsic of
`tessera/frontend/intrinsics.py` (the checker's table; a test keeps both in step).

Each row takes the kernel lowering (`L`, see kernel_to_tile.py) and the call's bound arguments and
returns the call's value. The semantics are those of docs/language.md ("Kernels"); the ones that take
more than one op:

- reductions (`tile.max/min/sum/mean`, `reduce_rowmax/rowsum`) reduce the whole block, padding
  included, and remove the axis; sums accumulate in the accumulation dtype (f32 for narrow floats);
- `softmax_online(s)`: m = rowmax(s), p = exp(s - m), l = rowsum(p); a row that is all -inf gives
  p = 0, l = 0 (its max is taken as 0 for the subtraction, so no NaN appears);
- `softmax_accumulate(acc, m, l, p, v, m_c, l_c)`: m' = max(m, m_c), alpha = exp(m - m'),
  beta = exp(m_c - m'), l' = alpha l + beta l_c, acc' = alpha acc + (beta p) @ v, with p cast to
  v's dtype for the product (as tensor cores take it) and the sum in acc's dtype;
- `mask_causal(s, rows, cols)`: -inf where cols > rows;
- `row_index(b)` / `col_index(b)`: the global indices of a block as an [n, 1] column / [1, n] row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tessera.diagnostics import error
from tessera.dtypes import BOOL, F32, INT64, DType, default_accum, promote
from tessera.frontend import ast
from tessera.ir.kernel_values import BlockRange, TensorArg, TileRange, Weak, describe, is_tile, static_cast
from tessera.ir.tile.ops import BlockType, ScalarType, TensorRefType, Value
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.kernel_to_tile import KernelLowering


@dataclass
class Bound:
    """The arguments of one intrinsic call, bound to its parameters (defaults filled in)."""

    values: dict[str, object]
    nodes: dict[str, ast.Expr | None]
    span: Span

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def given(self, name: str) -> bool:
        return self.nodes.get(name) is not None and self.values[name] is not None

    def at(self, name: str) -> Span:
        n = self.nodes.get(name)
        return n.span if n is not None else self.span


Lowering = Callable[["KernelLowering", Bound], object]
INTRINSIC_LOWERINGS: dict[str, Lowering] = {}


def _row(name: str) -> Callable[[Lowering], Lowering]:
    def deco(f: Lowering) -> Lowering:
        INTRINSIC_LOWERINGS[name] = f
        return f

    return deco


def tile_arg(a: Bound, name: str) -> Value:
    v = a[name]
    if not is_tile(v):
        raise error("E-TYPE", f"'{name}' must be a tile, found {describe(v)}", a.at(name))
    return v  # type: ignore[return-value]


def tensor_arg(a: Bound, name: str) -> TensorArg:
    v = a[name]
    if not isinstance(v, TensorArg):
        raise error("E-TYPE", f"'{name}' must be a tensor parameter of the kernel, found {describe(v)}", a.at(name))
    return v


def static_int(a: Bound, name: str) -> int:
    v = a[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise error("E-TYPE", f"'{name}' must be an int known at compile time, found {describe(v)}", a.at(name))
    return int(v)


def shape_arg(a: Bound, name: str) -> tuple[int, ...]:
    v = a[name]
    items = v if isinstance(v, tuple) else (v,)
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, int) or x <= 0:
            raise error("E-SHAPE", f"a tile shape is made of positive ints known at compile time, found "
                        f"{describe(x)}", a.at(name))
        out.append(int(x))
    return tuple(out)


def dtype_arg(a: Bound, name: str) -> DType:
    v = a[name]
    if not isinstance(v, DType):
        raise error("E-TYPE", f"'{name}' must be a dtype, found {describe(v)}", a.at(name))
    return v


def shape_of(v: Value) -> tuple[int, ...]:
    assert isinstance(v.ty, BlockType)
    return v.ty.shape


# ---------------------------------------------------------------- ids and context


@_row("context")
def _context(L: KernelLowering, a: Bound) -> object:
    return L.context


@_row("program_id")
def _program_id(L: KernelLowering, a: Bound) -> object:
    return L.pids[L.grid_axis(static_int(a, "axis"), a.span)]


@_row("num_programs")
def _num_programs(L: KernelLowering, a: Bound) -> object:
    return L.b.num_programs(L.grid_axis(static_int(a, "axis"), a.span))


# ---------------------------------------------------------------- memory


def _other(a: Bound, dtype: DType) -> float:
    v = a["other"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise error("E-TYPE", f"other= must be a number known at compile time, found {describe(v)}", a.at("other"))
    if not dtype.is_float and (not math.isfinite(float(v)) or not float(v).is_integer()):
        raise error("E-DTYPE", f"other={v} is not a {dtype} value", a.at("other"))
    return float(v)


def _mask(L: KernelLowering, a: Bound, shape: tuple[int, ...]) -> Value | None:
    if not a.given("mask"):
        return None
    m = a["mask"]
    if isinstance(m, bool):
        m = L.e.const(m, BOOL)
    if not isinstance(m, Value) or isinstance(m.ty, TensorRefType) or m.ty.dtype != BOOL:  # type: ignore[union-attr]
        raise error("E-DTYPE", f"the mask must be a bool tile, found {describe(m)}", a.at("mask"))
    return L.e.fit(m, shape, a.at("mask"), "the mask")


@_row("load")
def _load(L: KernelLowering, a: Bound) -> object:
    t = tensor_arg(a, "t")
    addr = L.address(t, a["rows"], a["cols"], a)
    other = _other(a, t.dtype)
    full = L.b.load(t.value, *addr.starts, shape=addr.sizes, other=other, hint=f"{t.name}_blk")
    L.loaded.add(t.name)
    blk = L.e.reshape(full, addr.shape) if addr.shape != addr.sizes else full
    mask = _mask(L, a, addr.shape)
    if L.debug_bounds:
        L.bounds_check(t, addr, mask, a.span, "load")
    if mask is not None:
        blk = L.b.op("select", mask, blk, L.e.const(other, t.dtype))
    return blk


def _store_value(L: KernelLowering, a: Bound, t: TensorArg, shape: tuple[int, ...]) -> Value:
    v = a["value"]
    if isinstance(v, Weak):
        v = v.value
    if isinstance(v, (bool, int, float)):
        v = L.e.const(v, t.dtype)
    if not isinstance(v, Value) or isinstance(v.ty, TensorRefType):
        raise error("E-TYPE", f"tile.store writes a tile, found {describe(v)}", a.at("value"))
    dt = v.ty.dtype
    if dt != t.dtype:
        if promote(dt, t.dtype) != t.dtype:
            raise error("E-DTYPE", f"storing a {dt} tile into the {t.dtype} tensor '{t.name}' narrows; narrowing is "
                        "never implicit", a.at("value"), fixit=f"tile.cast(value, {t.dtype})")
        v = L.b.cast(v, t.dtype)
    return L.e.fit(v, shape, a.at("value"), f"the value stored into '{t.name}'")


@_row("store")
def _store(L: KernelLowering, a: Bound) -> object:
    t = tensor_arg(a, "t")
    addr = L.address(t, a["rows"], a["cols"], a)
    v = _store_value(L, a, t, addr.shape)
    mask = _mask(L, a, addr.shape)
    if L.debug_bounds:
        L.bounds_check(t, addr, mask, a.span, "store")
    v = L.e.reshape(v, addr.sizes)
    if mask is None:
        L.b.store(t.value, *addr.starts, value=v)
    else:
        L.b.emit("store_masked", t.value, *addr.starts, v, L.e.reshape(mask, addr.sizes))
    L.stored.add(t.name)
    return None


@_row("atomic_add")
def _atomic_add(L: KernelLowering, a: Bound) -> object:
    raise error("E-TYPE", "tile.atomic_add is not supported by the kernel lowering yet (no target implements atomics)",
                a.span)


@_row("alloc_shared")
def _alloc_shared(L: KernelLowering, a: Bound) -> object:
    sw = a["swizzle"]
    if sw is not None and sw not in ("xor", "none"):
        raise error("E-TYPE", f"swizzle must be 'xor' or 'none', found {sw!r}", a.at("swizzle"))
    swizzle = sw if sw is not None else (L.b.schedule.swizzle or "none")
    return L.b.op("alloc_shared", shape=shape_arg(a, "shape"), dtype=dtype_arg(a, "dtype"), swizzle=swizzle)


@_row("cp_async")
def _cp_async(L: KernelLowering, a: Bound) -> object:
    dst, src = tile_arg(a, "dst"), tile_arg(a, "src")
    node = a.nodes.get("dst")
    if dst.ty.space != "shared" or not isinstance(node, ast.Name):  # type: ignore[union-attr]
        raise error("E-TYPE", "the destination of tile.cp_async is a name bound to a tile.alloc_shared block",
                    a.at("dst"))
    if shape_of(src) != shape_of(dst):
        raise error("E-SHAPE", f"tile.cp_async copies a block of shape {list(shape_of(src))} into one of "
                    f"{list(shape_of(dst))}", a.at("src"))
    if src.ty.dtype != dst.ty.dtype:  # type: ignore[union-attr]
        src = L.b.cast(src, dst.ty.dtype)  # type: ignore[union-attr]
    L.assign(node.id, L.b.op("cp_async", dst, src, hint=node.id))
    return None


@_row("barrier")
def _barrier(L: KernelLowering, a: Bound) -> object:
    L.b.emit("barrier")
    return None


# ---------------------------------------------------------------- creation and compute


@_row("zeros")
def _zeros(L: KernelLowering, a: Bound) -> object:
    return L.b.full(shape_arg(a, "shape"), 0, dtype_arg(a, "dtype"))


@_row("full")
def _full(L: KernelLowering, a: Bound) -> object:
    v = a["value"]
    dt = dtype_arg(a, "dtype")
    shape = shape_arg(a, "shape")
    if isinstance(v, (bool, int, float)):
        return L.b.full(shape, float(v) if dt.is_float else int(v), dt)
    return L.e.broadcast(L.e.convert(v, dt, a.at("value")), shape)


def dot(L: KernelLowering, x: Value, y: Value, acc: Value | None, span: Span) -> Value:
    for t, what in ((x, "a"), (y, "b")):
        if not is_tile(t) or t.ty.rank != 2:  # type: ignore[union-attr]
            raise error("E-SHAPE", f"tile.dot takes rank-2 tiles; {what} is {describe(t)}", span)
    (m, k), (k2, n) = shape_of(x), shape_of(y)
    if k != k2:
        raise error("E-SHAPE", f"tile.dot: a.shape[1] ({k}) must equal b.shape[0] ({k2})", span)
    dt = promote(x.ty.dtype, y.ty.dtype)  # type: ignore[union-attr]
    x, y = L.e.convert(x, dt, span), L.e.convert(y, dt, span)
    if acc is None:
        acc = L.b.full((m, n), 0, default_accum(dt))
    elif not is_tile(acc) or shape_of(acc) != (m, n):
        raise error("E-SHAPE", f"tile.dot: the accumulator {describe(acc)} must be a [{m}, {n}] tile", span)
    return L.b.dot(x, y, acc)


@_row("dot")
def _dot(L: KernelLowering, a: Bound) -> object:
    acc = tile_arg(a, "acc") if a.given("acc") else None
    return dot(L, tile_arg(a, "a"), tile_arg(a, "b"), acc, a.span)


def transpose(L: KernelLowering, x: Value, span: Span) -> Value:
    if x.ty.rank <= 1:  # type: ignore[union-attr]
        return x
    if x.ty.rank != 2:  # type: ignore[union-attr]
        raise error("E-SHAPE", f"tile.transpose takes a tile of rank <= 2, found {describe(x)}", span)
    return L.b.op("transpose", x, perm=(1, 0))


@_row("transpose")
def _transpose(L: KernelLowering, a: Bound) -> object:
    return transpose(L, tile_arg(a, "x"), a.span)


@_row("cast")
def _cast(L: KernelLowering, a: Bound) -> object:
    return L.e.cast(a["x"], dtype_arg(a, "dtype"), a.span)


def _unary(name: str) -> Lowering:
    def lower(L: KernelLowering, a: Bound) -> object:
        return L.unary_math(name, a["x"], a.span)

    return lower


for _n in ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu", "abs", "neg",
           "relu"):
    INTRINSIC_LOWERINGS[_n] = _unary(_n)


@_row("maximum")
def _maximum(L: KernelLowering, a: Bound) -> object:
    return L.binary("maximum", a["a"], a["b"], a.span)


@_row("minimum")
def _minimum(L: KernelLowering, a: Bound) -> object:
    return L.binary("minimum", a["a"], a["b"], a.span)


@_row("where")
def _where(L: KernelLowering, a: Bound) -> object:
    return L.where(a["cond"], a["a"], a["b"], a.span)


# ---------------------------------------------------------------- reductions


def reduce(L: KernelLowering, x: Value, kind: str, axis: int, span: Span) -> Value:
    """Reduce one axis of a block and remove it; sums in the accumulation dtype."""
    shape = shape_of(x)
    if not shape:
        raise error("E-SHAPE", f"tile.{kind} of a rank-0 tile", span)
    if not -len(shape) <= axis < len(shape):
        raise error("E-SHAPE", f"axis {axis} is out of range for a tile of rank {len(shape)}", span)
    axis %= len(shape)
    dt = x.ty.dtype  # type: ignore[union-attr]
    if kind in ("sum", "mean"):
        if dt == BOOL:
            raise error("E-DTYPE", f"tile.{kind} of a bool tile; cast it first", span)
        acc = default_accum(dt) if dt.is_float else INT64
        x = L.e.convert(x, acc, span)
    r = L.b.reduce(x, kind, axis)
    return L.e.reshape(r, tuple(s for i, s in enumerate(shape) if i != axis))


def _reduction(kind: str, row: bool = False) -> Lowering:
    def lower(L: KernelLowering, a: Bound) -> object:
        x = tile_arg(a, "x")
        if row:
            if x.ty.rank != 2:  # type: ignore[union-attr]
                raise error("E-SHAPE", f"takes a rank-2 tile, found {describe(x)}", a.span)
            return reduce(L, x, kind, 1, a.span)
        return reduce(L, x, kind, static_int(a, "axis"), a.span)

    return lower


for _k in ("max", "min", "sum", "mean"):
    INTRINSIC_LOWERINGS[_k] = _reduction(_k)
INTRINSIC_LOWERINGS["reduce_rowmax"] = _reduction("max", row=True)
INTRINSIC_LOWERINGS["reduce_rowsum"] = _reduction("sum", row=True)


# ---------------------------------------------------------------- online softmax and masks


def _float_tile(a: Bound, name: str, rank: int) -> Value:
    v = tile_arg(a, name)
    if v.ty.rank != rank or not v.ty.dtype.is_float:  # type: ignore[union-attr]
        raise error("E-SHAPE", f"'{name}' must be a rank-{rank} float tile, found {describe(v)}", a.at(name))
    return v


def _safe_max(L: KernelLowering, m: Value, fallback: Value | None = None) -> Value:
    """m where it is finite from below; 0 (or `fallback`) where it is -inf, so that exp(x - m) has no NaN."""
    dt = m.ty.dtype  # type: ignore[union-attr]
    is_ninf = L.b.op("cmp", m, L.e.const(-math.inf, dt), pred="eq")
    return L.b.op("select", is_ninf, fallback if fallback is not None else L.e.const(0.0, dt), m)


@_row("softmax_online")
def _softmax_online(L: KernelLowering, a: Bound) -> object:
    s = _float_tile(a, "s", 2)
    rows, _cols = shape_of(s)
    m = L.b.reduce(s, "max", 1, hint="m_c")
    p = L.b.op("exp", L.b.op("sub", s, _safe_max(L, m)), hint="p")
    lsum = L.b.reduce(p, "sum", 1, hint="l_c")
    return (p, L.e.reshape(m, (rows,)), L.e.reshape(lsum, (rows,)))


@_row("softmax_accumulate")
def _softmax_accumulate(L: KernelLowering, a: Bound) -> object:
    acc = _float_tile(a, "acc", 2)
    p, v = _float_tile(a, "p", 2), _float_tile(a, "v", 2)
    (rows, d), (_, n) = shape_of(acc), shape_of(p)
    if shape_of(p)[0] != rows or shape_of(v) != (n, d):
        raise error("E-SHAPE", f"tile.softmax_accumulate: acc {list(shape_of(acc))}, p {list(shape_of(p))} and v "
                    f"{list(shape_of(v))} are not [M, D], [M, N] and [N, D]", a.span)
    dt = acc.ty.dtype  # type: ignore[union-attr]
    col: dict[str, Value] = {}
    for name in ("m", "l", "m_c", "l_c"):
        x = _float_tile(a, name, 1)
        if shape_of(x) != (rows,):
            raise error("E-SHAPE", f"'{name}' must have the {rows} rows of acc, found {describe(x)}", a.at(name))
        col[name] = L.e.reshape(L.e.convert(x, dt, a.at(name)), (rows, 1))
    m_new = L.b.op("maximum", col["m"], col["m_c"], hint="m_new")
    safe = _safe_max(L, m_new)
    alpha = L.b.op("exp", L.b.op("sub", col["m"], safe), hint="alpha")
    beta = L.b.op("exp", L.b.op("sub", _safe_max(L, col["m_c"], safe), safe), hint="beta")
    l_new = L.b.op("add", L.b.op("mul", alpha, col["l"]), L.b.op("mul", beta, col["l_c"]), hint="l_new")
    scaled = L.b.op("mul", L.e.convert(p, dt, a.at("p")), beta)
    acc_new = L.b.dot(L.e.convert(scaled, v.ty.dtype, a.at("p")), v, L.b.op("mul", acc, alpha),  # type: ignore[union-attr]
                      hint="acc_new")
    return (acc_new, L.e.reshape(m_new, (rows,)), L.e.reshape(l_new, (rows,)))


@_row("mask_causal")
def _mask_causal(L: KernelLowering, a: Bound) -> object:
    s = _float_tile(a, "s", 2)
    rows, cols = tile_arg(a, "rows"), tile_arg(a, "cols")
    above = L.e.elementwise("cmp", [cols, rows], a.span, dtype=INT64, pred="gt")
    out = L.e.select(above, -math.inf, s, a.span)
    if shape_of(out) != shape_of(s):  # type: ignore[arg-type]
        raise error("E-SHAPE", f"tile.mask_causal: the indices broadcast to {list(shape_of(out))}, not to the scores' "  # type: ignore[arg-type]
                    f"{list(shape_of(s))}", a.span)
    return out


def _index(axis: str) -> Lowering:
    def lower(L: KernelLowering, a: Bound) -> object:
        start, size = L.block_of(a["block"] if a.given("block") else L.context_size(axis), axis, a.at("block"))
        shape = (size, 1) if axis == "rows" else (1, size)
        iota = L.b.op("iota", shape=shape, axis=0 if axis == "rows" else 1)
        return L.b.op("add", iota, L.e.index(start, a.span), hint="rows" if axis == "rows" else "cols")

    return lower


INTRINSIC_LOWERINGS["row_index"] = _index("rows")
INTRINSIC_LOWERINGS["col_index"] = _index("cols")


# ---------------------------------------------------------------- loops


def _loop_bound(v: object, what: str, span: Span) -> Value | int:
    if isinstance(v, BlockRange):
        v = v.start
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, Value) and isinstance(v.ty, ScalarType)
                                                          and v.ty.dtype.is_int)):
        raise error("E-TYPE", f"the {what} of a tile loop must be an int, found {describe(v)}", span)
    return v  # type: ignore[return-value]


@_row("range")
def _range(L: KernelLowering, a: Bound) -> object:
    start, stop = a["start"], a["stop"]
    if stop is None:
        start, stop = 0, start
    step = static_int(a, "step")
    if step <= 0:
        raise error("E-TYPE", f"the step of tile.range must be positive, found {step}", a.at("step"))
    return TileRange(_loop_bound(start, "start", a.span), _loop_bound(stop, "stop", a.span), step)


@_row("range_n")
def _range_n(L: KernelLowering, a: Bound) -> object:
    block = static_int(a, "block")
    if block <= 0:
        raise error("E-TYPE", f"the block of tile.range_n must be positive, found {block}", a.at("block"))
    prefetch = static_int(a, "prefetch") if a.given("prefetch") else None
    return TileRange(0, _loop_bound(a["extent"], "extent", a.span), block, prefetch)


# ---------------------------------------------------------------- static evaluation of math


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


STATIC_MATH: dict[str, Callable[[float], float]] = {
    "exp": math.exp, "log": math.log, "log1p": math.log1p, "sqrt": math.sqrt, "rsqrt": lambda x: 1.0 / math.sqrt(x),
    "sin": math.sin, "cos": math.cos, "tanh": math.tanh, "erf": math.erf, "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x), "abs": abs, "neg": lambda x: -x, "relu": lambda x: max(x, 0),
}
FLOAT_ONLY = frozenset(STATIC_MATH) - {"abs", "neg", "relu"}


def static_math(name: str, x: bool | float, span: Span) -> float | int:
    try:
        out = STATIC_MATH[name](x)
    except (ValueError, OverflowError, ZeroDivisionError) as ex:
        raise error("E-TYPE", f"{name}({x}) at compile time: {ex}", span) from None
    return float(out) if name in FLOAT_ONLY else static_cast(out, F32 if isinstance(out, float) else INT64)  # type: ignore[return-value]
