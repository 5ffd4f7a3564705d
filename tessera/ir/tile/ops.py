"""Tile IR: the data structures and the op catalogue.

A `Kernel` is the program of one grid point: it loads blocks of its tensor parameters, computes on
whole blocks and stores blocks. It never names a thread: mapping blocks onto threads, warps, vector
lanes and memory spaces is the business of the Tile -> Target lowering, which differs per target
(a CPU runs a program per core-loop iteration with blocks in local memory and SIMD lanes; a GPU runs
a program per CTA with blocks spread over threads). The same Tile IR serves every target.

Values:
- scalars (`ScalarType`): i64 indices and extents, or float/int scalars;
- blocks (`BlockType`): statically shaped tiles of one dtype in a memory space (`reg` by default,
  `shared` for explicitly staged operands);
- tensor parameters (`TensorRefType`): strided views of global memory. The runtime passes, per
  tensor, a base pointer, the extents and the strides (in elements); broadcasts are stride 0 and
  transposes are permuted strides, so the kernel reads any view without copies.

Semantics every lowering must keep:
- `load(t, s0, ..., s{r-1}) {shape}` reads the block t[s0 + i0, ..., s{r-1} + i{r-1}]; elements
  outside t's extents read as `other` (ragged edges need no user masks). `store` writes only the
  in-bounds elements; `store_masked` only the in-bounds elements where its bool mask block (of the
  value's shape, or broadcasting to it) is true.
- `alloc_shared` makes a block in shared memory; `cp_async(dst, src)` is dst with src's values (the
  same storage as dst: SSA names the new contents). On the CPU shared memory is local memory and the
  copy is synchronous; `barrier` orders the copies of a program's threads on GPUs.
- Elementwise ops take blocks of equal rank whose shapes agree or are 1 (NumPy broadcasting among
  blocks), and scalars, which broadcast.
- `reduce {kind, axis}` keeps the rank (the reduced axis becomes 1).
- `dot(a[M,K], b[K,N], acc[M,N])` accumulates in acc's dtype.
- `for` is structured: a region with the induction variable and loop-carried values as arguments,
  ending in `yield`; its results are the final carried values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tessera.dtypes import BOOL, INT64, DType
from tessera.symbolic import Dim


class TileIRError(Exception):
    """A malformed Tile IR program (a verifier failure)."""


@dataclass(frozen=True)
class ScalarType:
    dtype: DType

    def __str__(self) -> str:
        return str(self.dtype)


INDEX = ScalarType(INT64)


@dataclass(frozen=True)
class BlockType:
    shape: tuple[int, ...]
    dtype: DType
    space: str = "reg"  # "reg" | "shared"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        sp = "" if self.space == "reg" else f", {self.space}"
        return f"block<[{', '.join(map(str, self.shape))}], {self.dtype}{sp}>"


@dataclass(frozen=True)
class TensorRefType:
    rank: int
    dtype: DType

    def __str__(self) -> str:
        return f"tensor<{self.rank}d, {self.dtype}>"


TileType = ScalarType | BlockType | TensorRefType
_ids = itertools.count()


@dataclass(eq=False)
class Value:
    ty: TileType
    hint: str = ""
    uid: int = field(default_factory=lambda: next(_ids), repr=False)

    def __hash__(self) -> int:
        return self.uid


AttrValue = int | float | bool | str | DType | tuple


@dataclass(eq=False)
class Region:
    args: list[Value]
    ops: list[Op]


@dataclass(eq=False)
class Op:
    name: str
    operands: tuple[Value, ...]
    attrs: tuple[tuple[str, AttrValue], ...]
    results: tuple[Value, ...]
    regions: tuple[Region, ...] = ()

    def attr(self, key: str) -> AttrValue:
        for k, v in self.attrs:
            if k == key:
                return v
        raise KeyError(f"tile op {self.name} has no attribute '{key}'")

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]


@dataclass(frozen=True)
class Schedule:
    """How a kernel is blocked and mapped: today from a default heuristic, later from the autotuner.
    `block` are the block sizes of the output tile; `k` the reduction block of a dot; `vector` the
    elements per vector access; `warps` and `stages` are GPU mapping and pipelining depth; `group_m`
    orders a matmul's output blocks in groups of that many block rows, column by column within a
    group (consecutive programs share operand panels in cache; 1: row by row); `resident_threads`
    (GPU, 0: the code generator's choice) asks for registers few enough that that many threads of
    the kernel fit on one SM at once; `blocks_per_program` (row reductions whose row is one block)
    has each program walk that many consecutive blocks of rows in a loop, loading the inputs that are
    the same for every row (a norm's weights: stride 0 along the rows) once, before the loop."""

    block: tuple[int, ...]
    k: int | None = None
    vector: int = 8
    warps: int = 4
    stages: int = 1
    swizzle: str | None = None
    group_m: int = 1
    resident_threads: int = 0
    blocks_per_program: int = 1

    def __str__(self) -> str:
        parts = [f"block=({', '.join(map(str, self.block))})"]
        if self.k is not None:
            parts.append(f"k={self.k}")
        parts += [f"vector={self.vector}", f"warps={self.warps}", f"stages={self.stages}"]
        if self.swizzle:
            parts.append(f'swizzle="{self.swizzle}"')
        if self.group_m != 1:
            parts.append(f"group_m={self.group_m}")
        if self.resident_threads:
            parts.append(f"resident_threads={self.resident_threads}")
        if self.blocks_per_program != 1:
            parts.append(f"blocks_per_program={self.blocks_per_program}")
        return f"Schedule({', '.join(parts)})"


@dataclass(eq=False)
class Kernel:
    """One tile program. `grid` gives the number of programs per grid axis as dims over the extent
    symbols; `extents` says which tensor axis defines each symbol (the runtime binds them from the
    arguments' shapes before launch)."""

    name: str
    params: list[Value]  # TensorRefType values, in call order
    roles: list[str]  # per param: "in" | "out" | "inout"
    extents: dict[str, tuple[int, int]]  # symbol -> (param index, axis)
    grid: tuple[Dim, ...]
    body: Region
    schedule: Schedule


# ---------------------------------------------------------------- the catalogue

InferFn = Callable[[Sequence[TileType], dict[str, AttrValue]], list[TileType]]


@dataclass(frozen=True)
class TileOpDef:
    name: str
    n_operands: int  # -1: variadic
    attrs: tuple[tuple[str, str], ...]  # (name, kind) as in the graph IR catalogue
    infer: InferFn
    category: str  # index | memory | elementwise | reduction | dot | block | control | sync
    doc: str = ""


TILE_OPS: dict[str, TileOpDef] = {}


def _def(name: str, n: int, attrs: tuple[tuple[str, str], ...], infer: InferFn, cat: str, doc: str) -> None:
    TILE_OPS[name] = TileOpDef(name, n, attrs, infer, cat, doc)


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if len(a) != len(b):
        raise TileIRError(f"blocks of rank {len(a)} and {len(b)} do not broadcast")
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise TileIRError(f"block shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def _elementwise_type(ts: Sequence[TileType], dtype: DType | None = None) -> TileType:
    blocks = [t for t in ts if isinstance(t, BlockType)]
    base = ts[0] if not blocks else blocks[0]
    dt = dtype if dtype is not None else (base.dtype)  # type: ignore[union-attr]
    if not blocks:
        return ScalarType(dt)
    shape = blocks[0].shape
    for b in blocks[1:]:
        shape = broadcast_shapes(shape, b.shape)
    return BlockType(shape, dt)


def _same(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [_elementwise_type(ts)]


def _bool(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [_elementwise_type(ts, BOOL)]


def _select(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    out = _elementwise_type(ts)
    dt = ts[1].dtype  # type: ignore[union-attr]
    return [BlockType(out.shape, dt) if isinstance(out, BlockType) else ScalarType(dt)]


def _cast(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [_elementwise_type(ts, a["dtype"])]  # type: ignore[arg-type]


def _index(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [INDEX]


def _const(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [ScalarType(a["dtype"])]  # type: ignore[arg-type]


def _iota(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    shape = tuple(a["shape"])  # type: ignore[arg-type]
    return [BlockType(shape, INT64)]


def _full(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [BlockType(tuple(a["shape"]), a["dtype"])]  # type: ignore[arg-type]


def _load(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    t = ts[0]
    assert isinstance(t, TensorRefType)
    return [BlockType(tuple(a["shape"]), t.dtype)]  # type: ignore[arg-type]


def _none(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return []


def _alloc_shared(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [BlockType(tuple(a["shape"]), a["dtype"], "shared")]  # type: ignore[arg-type]


def _cp_async(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [ts[0]]


def _reduce(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    b = ts[0]
    assert isinstance(b, BlockType)
    shape = list(b.shape)
    shape[a["axis"]] = 1  # type: ignore[index]
    dt = INT64 if a["kind"] in ("argmax", "argmin") else b.dtype
    return [BlockType(tuple(shape), dt)]


def _dot(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return [ts[2]]


def _broadcast(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    b = ts[0]
    dt = b.dtype  # type: ignore[union-attr]
    return [BlockType(tuple(a["shape"]), dt)]  # type: ignore[arg-type]


def _transpose(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    b = ts[0]
    assert isinstance(b, BlockType)
    return [BlockType(tuple(b.shape[i] for i in a["perm"]), b.dtype)]  # type: ignore[union-attr]


def _reshape(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    b = ts[0]
    assert isinstance(b, BlockType)
    shape = tuple(a["shape"])  # type: ignore[arg-type]
    n = 1
    for s in shape:
        n *= s
    m = 1
    for s in b.shape:
        m *= s
    if n != m:
        raise TileIRError(f"cannot reshape {b} ({m} elements) to {list(shape)}")
    return [BlockType(shape, b.dtype, b.space)]


def _item(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    b = ts[0]
    assert isinstance(b, BlockType)
    if any(s != 1 for s in b.shape):
        raise TileIRError(f"item takes a block of one element, got {b}")
    return [ScalarType(b.dtype)]


def _for(ts: Sequence[TileType], a: dict[str, AttrValue]) -> list[TileType]:
    return list(ts[3:])  # start, stop, step, then the initial carried values


UNARY = ("neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid",
         "relu", "silu", "not")
BINARY = ("add", "sub", "mul", "div", "floordiv", "mod", "pow", "maximum", "minimum", "and", "or")

_def("program_id", 0, (("axis", "int"),), _index, "index", "this program's index along a grid axis")
_def("num_programs", 0, (("axis", "int"),), _index, "index", "the grid's extent along an axis")
_def("dim", 1, (("axis", "int"),), _index, "index", "the extent of a tensor parameter along an axis")
_def("const", 0, (("value", "float"), ("dtype", "dtype")), _const, "index", "a scalar constant")
_def("iota", 0, (("shape", "ints"), ("axis", "int")), _iota, "index",
     "a block whose elements are their index along axis")
_def("load", -1, (("shape", "ints"), ("other", "float")), _load, "memory",
     "load(t, starts...): the block at starts; out-of-bounds elements read as other")
_def("store", -1, (), _none, "memory", "store(t, starts..., value): write the in-bounds elements")
_def("store_masked", -1, (), _none, "memory",
     "store_masked(t, starts..., value, mask): write the in-bounds elements where the bool block mask holds")
_def("alloc_shared", 0, (("shape", "ints"), ("dtype", "dtype"), ("swizzle", "str")), _alloc_shared, "memory",
     "a block in shared memory (zeros until written), laid out with the swizzle \"xor\" or \"none\"")
_def("cp_async", 2, (), _cp_async, "memory",
     "cp_async(dst, src): dst (a shared block) holding src's values; asynchronous on GPUs, complete at the "
     "next barrier")
for _n in UNARY:
    _def(_n, 1, (), _same, "elementwise", f"elementwise {_n}")
_def("isnan", 1, (), _bool, "elementwise", "elementwise isnan")
_def("isinf", 1, (), _bool, "elementwise", "elementwise isinf")
_def("gelu", 1, (("approximate", "str"),), _same, "elementwise", "gelu (exact or tanh)")
for _n in BINARY:
    _def(_n, 2, (), _same, "elementwise", f"elementwise {_n}")
_def("cmp", 2, (("pred", "str"),), _bool, "elementwise", "comparison -> bool")
_def("select", 3, (), _select, "elementwise", "select(cond, a, b)")
_def("cast", 1, (("dtype", "dtype"), ("rounding", "str")), _cast, "elementwise", "convert the dtype")
_def("full", 0, (("shape", "ints"), ("value", "float"), ("dtype", "dtype")), _full, "block",
     "a block of one value")
_def("broadcast", 1, (("shape", "ints"),), _broadcast, "block", "broadcast size-1 axes (or a scalar) to shape")
_def("transpose", 1, (("perm", "ints"),), _transpose, "block", "permute the axes of a block")
_def("reshape", 1, (("shape", "ints"),), _reshape, "block",
     "the same elements in row-major order with a new shape (e.g. a batched [1, M, K] block as [M, K])")
_def("item", 1, (), _item, "block", "the element of a one-element block as a scalar (a loaded index)")
_def("reduce", 1, (("kind", "str"), ("axis", "int")), _reduce, "reduction",
     "reduce one axis of a block (kept with size 1)")
_def("dot", 3, (), _dot, "dot", "acc + a @ b on blocks, in acc's dtype")
_def("for", -1, (), _for, "control", "for(start, stop, step, inits...) { ^(iv, carried...) ... yield }")
_def("yield", -1, (), _none, "control", "the carried values of the next iteration")
_def("barrier", 0, (), _none, "sync", "all threads of the program reach this point")

REDUCE_IDENTITY = {"sum": 0.0, "mean": 0.0, "prod": 1.0, "max": float("-inf"), "min": float("inf")}


def make_op(name: str, operands: Sequence[Value], hint: str = "", regions: Sequence[Region] = (),
            **attrs: AttrValue) -> Op:
    """Create a tile op with its result types inferred from the catalogue."""
    d = TILE_OPS.get(name)
    if d is None:
        raise TileIRError(f"unknown tile op '{name}'")
    missing = [k for k, _ in d.attrs if k not in attrs]
    extra = [k for k in attrs if k not in dict(d.attrs)]
    if missing or extra:
        raise TileIRError(f"{name}: attributes missing {missing}, unknown {extra}")
    ordered = tuple((k, attrs[k]) for k, _ in d.attrs)
    types = d.infer([v.ty for v in operands], attrs)
    return Op(name, tuple(operands), ordered, tuple(Value(t, hint) for t in types), tuple(regions))
