"""A small imperative builder for Tile IR kernels.

Lowerings (Schedule -> Tile), tests and benchmarks build kernels op by op; this keeps the
bookkeeping (current region, result inference through the catalogue, `for` regions) in one place.

    b = TileBuilder("scale", Schedule(block=(64,)))
    x = b.param("x", 1, F32, "in"); y = b.param("y", 1, F32, "out")
    b.extent("N", x, 0); b.grid(cdiv(Dim.sym("N"), 64))
    pid = b.program_id(0)
    start = b.op("mul", pid, b.const(64, INT64))
    xb = b.load(x, start, shape=(64,))
    b.store(y, start, value=b.op("mul", xb, b.const(2.0, F32)))
    kernel = b.build()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tessera.dtypes import INT64, DType
from tessera.ir.tile.ops import (
    INDEX,
    AttrValue,
    Kernel,
    Op,
    Region,
    Schedule,
    TensorRefType,
    TileIRError,
    Value,
    make_op,
)
from tessera.symbolic import Dim


def cdiv(n: Dim | int, k: int) -> Dim:
    """ceil(n / k) as a Dim: the number of blocks of k covering n."""
    return (Dim.of(n) + (k - 1)) // k


@dataclass
class ForLoop:
    """The handle of a `for` under construction: its induction variable and carried arguments;
    `results` are valid once the `with` block has ended."""

    iv: Value
    args: list[Value]
    results: list[Value] = field(default_factory=list)
    _yielded: bool = False


class TileBuilder:
    def __init__(self, name: str, schedule: Schedule) -> None:
        self.name = name
        self.schedule = schedule
        self.params: list[Value] = []
        self.roles: list[str] = []
        self.extents: dict[str, tuple[int, int]] = {}
        self._grid: tuple[Dim, ...] = ()
        self.body = Region([], [])
        self._regions: list[Region] = [self.body]

    # -- signature ---------------------------------------------------------------------------

    def param(self, name: str, rank: int, dtype: DType, role: str = "in") -> Value:
        v = Value(TensorRefType(rank, dtype), name)
        self.params.append(v)
        self.roles.append(role)
        return v

    def extent(self, symbol: str, param: Value, axis: int) -> Dim:
        self.extents[symbol] = (self.params.index(param), axis)
        return Dim.sym(symbol)

    def grid(self, *dims: Dim | int) -> None:
        self._grid = tuple(Dim.of(d) for d in dims)

    # -- ops ---------------------------------------------------------------------------------

    def emit(self, name: str, *operands: Value, hint: str = "", regions: Sequence[Region] = (),
             **attrs: AttrValue) -> Op:
        op = make_op(name, operands, hint, regions, **attrs)
        self._regions[-1].ops.append(op)
        return op

    def op(self, name: str, *operands: Value, hint: str = "", **attrs: AttrValue) -> Value:
        """Append a single-result op and return its result."""
        return self.emit(name, *operands, hint=hint, **attrs).result

    def program_id(self, axis: int, hint: str = "pid") -> Value:
        return self.op("program_id", hint=hint, axis=axis)

    def num_programs(self, axis: int) -> Value:
        return self.op("num_programs", axis=axis)

    def dim(self, t: Value, axis: int, hint: str = "") -> Value:
        return self.op("dim", t, hint=hint, axis=axis)

    def const(self, value: float, dtype: DType = INT64, hint: str = "") -> Value:
        return self.op("const", hint=hint, value=value, dtype=dtype)

    def load(self, t: Value, *starts: Value, shape: Sequence[int], other: float = 0.0,
             hint: str = "") -> Value:
        return self.op("load", t, *starts, hint=hint, shape=tuple(shape), other=other)

    def store(self, t: Value, *starts: Value, value: Value) -> None:
        self.emit("store", t, *starts, value)

    def full(self, shape: Sequence[int], value: float, dtype: DType, hint: str = "") -> Value:
        return self.op("full", hint=hint, shape=tuple(shape), value=value, dtype=dtype)

    def cast(self, x: Value, dtype: DType, rounding: str = "nearest_even", hint: str = "") -> Value:
        return self.op("cast", x, hint=hint, dtype=dtype, rounding=rounding)

    def reduce(self, x: Value, kind: str, axis: int, hint: str = "") -> Value:
        return self.op("reduce", x, hint=hint, kind=kind, axis=axis)

    def dot(self, a: Value, b: Value, acc: Value, hint: str = "") -> Value:
        return self.op("dot", a, b, acc, hint=hint)

    @contextmanager
    def for_(self, start: Value, stop: Value, step: Value, inits: Sequence[Value] = (),
             hints: Sequence[str] = (), iv_hint: str = "i") -> Iterator[ForLoop]:
        """`with b.for_(lo, hi, st, [init]) as loop: ...; b.yield_(loop, [next])`."""
        iv = Value(INDEX, iv_hint)
        names = list(hints) + [""] * (len(inits) - len(hints))
        args = [Value(v.ty, h or v.hint) for v, h in zip(inits, names)]
        region = Region([iv, *args], [])
        loop = ForLoop(iv, args)
        self._regions.append(region)
        try:
            yield loop
        finally:
            self._regions.pop()
        if not loop._yielded:
            if inits:
                raise TileIRError("for: a loop with carried values must end with b.yield_(loop, values)")
            region.ops.append(make_op("yield", []))
        op = self.emit("for", start, stop, step, *inits, regions=[region])
        for r, h in zip(op.results, names):
            r.hint = h
        loop.results = list(op.results)

    def yield_(self, loop: ForLoop, values: Sequence[Value]) -> None:
        self._regions[-1].ops.append(make_op("yield", list(values)))
        loop._yielded = True

    def build(self) -> Kernel:
        return Kernel(self.name, self.params, self.roles, dict(self.extents), self._grid, self.body,
                      self.schedule)
