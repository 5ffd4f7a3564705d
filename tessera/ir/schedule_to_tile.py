"""Schedule IR -> Tile IR: one tile program per kernel call of a plan.

`lower_plan(plan)` returns the kernels in call order and records in each `KernelCall` the name of
the kernel that runs it (its arguments are the call's `args`, in order). Per pattern:

- elementwise / copy: a 2-D grid of (rows, cols) blocks over the collapsed iteration space (leading
  collapsed axes folded into grid axis 0); each program loads its block of every input, evaluates
  the body on whole blocks (constants stay scalars, broadcasting) and stores every output block;
- row_reduction / reduce: one program per block of rows. When the row fits one block (the
  schedule's block covers it) everything happens in one pass: load, reduce, epilogue, store. Else
  the kernel makes one pass over the row per reduction level — a `for` over column blocks carrying
  the partial results of the reductions of that level (sum, max, min, prod; argmax/argmin carry
  value and index) — and a last pass computing and storing the row outputs; elementwise row values
  are recomputed from the loads in each pass that needs them. Padding columns of a ragged last block
  are replaced by the reduction's identity before reducing;
- matmul: (BM, BN) output blocks, a `for` over K blocks accumulating `dot` in the accumulation
  dtype (operands out of range read 0), then the epilogue on the accumulator block, a cast, a store;
  batched operands are loaded as [1, BM, BK] blocks and reshaped for `dot`;
- gather: one program per id and column block: the id is loaded, `item` makes it a scalar, the
  table row is loaded at it (ids out of range read zeros: no bounds fault in compiled code).

iota and random values are functions of the element coordinates: each program computes the
coordinates of its block (`iota` plus the block start, split back into graph axes where the
iteration collapsed several). random is a counter-based generator: a 32-bit integer hash (two
multiply-xorshift rounds, xor and shift spelled with and/add/floordiv) of the element's row-major
index and the seed, turned into uniforms with 24 (f32) or 53 (f64) bits, and into normals by
Box-Muller. It is deterministic in (seed, shape) and identical in every kernel that recomputes it;
it does not reproduce NumPy's generator (the reference evaluator's), so only distributions compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tessera.dtypes import BOOL, F32, F64, INT64, DType
from tessera.ir.graph.ops import Op as GraphOp
from tessera.ir.graph.ops import Value as GraphValue
from tessera.ir.schedule.ops import KernelCall, Plan, ScheduleIRError
from tessera.ir.tile.builder import TileBuilder
from tessera.ir.tile.ops import TILE_OPS, BlockType, Kernel, ScalarType, Value

_TILE_ELEMENTWISE = {n for n, d in TILE_OPS.items() if d.category == "elementwise"}
_VIEWS = ("broadcast_to", "reshape", "transpose", "slice")
_CONSTANTS = ("constant", "fill", "extent")


def lower_plan(plan: Plan) -> list[Kernel]:
    """The Tile IR kernel of every kernel call of the plan, in call order (see module docstring)."""
    kernels = []
    for call in plan.calls:
        name = f"{plan.name}_{call.name}_{call.pattern}"
        kernels.append(lower_call(call, name))
        call.kernel = name
    return kernels


def lower_call(call: KernelCall, name: str) -> Kernel:
    cls = _LOWERINGS.get(call.pattern)
    if cls is None:
        raise ScheduleIRError(f"no Tile IR lowering for the pattern '{call.pattern}'")
    return cls(call, name).build()


def cdiv(n: int, k: int) -> int:
    return -(-n // k)


@dataclass(frozen=True)
class _Index:
    """An iota on its way to the kernel's shape: `shape`, and the axis its values run along (None
    when that axis has extent 1)."""

    shape: tuple[int, ...]
    axis: int | None
    dtype: DType


def _index_view(op: GraphOp, x: _Index) -> _Index:
    out = _shape(op.result)
    if x.axis is None:
        return _Index(out, None, x.dtype)
    if op.name == "broadcast_to":
        return _Index(out, len(out) - len(x.shape) + x.axis, x.dtype)
    if op.name == "reshape":
        # The non-unit axes keep their order; the iota's axis is the only one that may be non-unit.
        before = sum(1 for n in x.shape[:x.axis] if n != 1)
        nonunit = [i for i, n in enumerate(out) if n != 1]
        return _Index(out, nonunit[before], x.dtype)
    raise ScheduleIRError(f"{op.name} of an iota inside a kernel (partitioner bug)")


@dataclass
class _Frame:
    """Where a program's block lies: per collapsed kernel axis, the graph axes it runs over, the
    start (an index scalar) and the block axis it is laid along (None: size 1 in the block)."""

    runs: tuple[tuple[int, ...], ...]
    starts: list[Value]
    axes: list[int | None]
    shape: tuple[int, ...]  # the block shape
    full: tuple[int, ...]  # the graph shape the runs index


class _Base:
    def __init__(self, call: KernelCall, name: str) -> None:
        self.call = call
        self.b = TileBuilder(name, call.schedule)
        self.params = [self.b.param(a.buffer.name, a.layout.rank, a.buffer.dtype, a.role) for a in call.args]
        self.inputs: dict[GraphValue, list[int]] = {}
        for v, i in call.bindings:
            if call.args[i].role == "in":
                self.inputs.setdefault(v, []).append(i)
        self._consts: list[dict[tuple[float, str], Value]] = [{}]

    # -------------------------------------------------------------- scalars and index arithmetic

    def c(self, value: float, dtype: DType = INT64) -> Value:
        key = (value, dtype.name)
        for scope in reversed(self._consts):
            if key in scope and not math.isnan(value):
                return scope[key]
        v = self.b.const(value, dtype)
        self._consts[-1][key] = v
        return v

    def op(self, name: str, *xs: Value, **attrs: object) -> Value:
        return self.b.op(name, *xs, **attrs)  # type: ignore[arg-type]

    def mul(self, x: Value, n: int) -> Value:
        return x if n == 1 else self.op("mul", x, self.c(n))

    def add(self, x: Value, y: Value) -> Value:
        return self.op("add", x, y)

    def split(self, pid: Value, lead: Sequence[int], inner: int) -> tuple[list[Value], Value]:
        """Program index -> (coordinates along the leading axes, index along the inner axis)."""
        if not lead:
            return [], pid
        rest = pid
        idx = self.c(0)
        if inner > 1:
            idx = self.op("mod", pid, self.c(inner))
            rest = self.op("floordiv", pid, self.c(inner))
        coords: list[Value] = []
        for i in range(len(lead) - 1, -1, -1):
            if i == 0:
                coords.append(rest)
            else:
                coords.append(self.op("mod", rest, self.c(lead[i])))
                rest = self.op("floordiv", rest, self.c(lead[i]))
        return coords[::-1], idx

    @contextmanager
    def loop(self, stop: int, step: int, inits: Sequence[Value] = ()) -> Iterator:
        start, stop_v, step_v = self.c(0), self.c(stop), self.c(step)
        self._consts.append({})
        try:
            with self.b.for_(start, stop_v, step_v, inits, iv_hint="k0") as lp:
                yield lp
        finally:
            self._consts.pop()

    def as_block(self, v: Value, shape: tuple[int, ...]) -> Value:
        t = v.ty
        if isinstance(t, BlockType) and t.shape == shape:
            return v
        return self.op("broadcast", v, shape=shape)

    # -------------------------------------------------------------- graph ops on blocks

    def lower_op(self, op: GraphOp, get: Callable[[GraphValue], Value], frame: _Frame | None) -> Value:
        """The tile value of an elementwise, constant, view (of a scalar or an identity), iota or
        random op, its operands given by `get`."""
        name = op.name
        attrs = dict(op.attrs)
        dtype = op.result.ty.dtype
        if name in ("constant", "fill"):
            return self.c(float(attrs["value"]), dtype)  # type: ignore[arg-type]
        if name == "extent":
            return self.c(float(attrs["value"].value), dtype)  # type: ignore[union-attr]
        if name == "iota":
            assert frame is not None
            n = _shape(op.result)[0]
            return self.resolve(_Index((n,), 0 if n > 1 else None, dtype), frame)
        if name in _VIEWS:
            x = get(op.operands[0])
            if isinstance(x, _Index):
                assert frame is not None
                return self.resolve(_index_view(op, x), frame)
            return x  # a scalar, or a view the partitioner kept in the kernel
        if name == "random":
            assert frame is not None
            return self.random(op, frame)
        if name in _TILE_ELEMENTWISE:
            xs = [get(v) for v in op.operands]
            if any(isinstance(x, _Index) for x in xs):
                raise ScheduleIRError(f"kernel {self.call.name}: an index value of another shape reaches "
                                      f"{name} (partitioner bug)")
            return self.op(name, *xs, **attrs)
        raise ScheduleIRError(f"kernel {self.call.name}: no tile lowering for graph op '{name}' here")

    # -------------------------------------------------------------- coordinates and random

    def resolve(self, x: _Index, f: _Frame) -> Value | _Index:
        """An iota, reshaped and broadcast, becomes block coordinates once it has the kernel's shape."""
        if x.shape != f.full:
            return x
        idx = self.c(0) if x.axis is None else self.coord(f, x.axis)
        return idx if x.dtype == INT64 else self.op("cast", idx, dtype=x.dtype, rounding="nearest_even")

    def coord(self, f: _Frame, axis: int) -> Value:
        """The int64 coordinates along graph axis `axis` of the elements of the block."""
        for r, run in enumerate(f.runs):
            if axis in run:
                break
        else:
            return self.c(0)  # a size-1 axis the iteration dropped
        j = run.index(axis)
        base = f.starts[r]
        if f.axes[r] is not None and f.shape[f.axes[r]] > 1:  # type: ignore[index]
            base = self.add(self.op("iota", shape=f.shape, axis=f.axes[r]), base)
        inner = math.prod(f.full[a] for a in run[j + 1:])
        if inner > 1:
            base = self.op("floordiv", base, self.c(inner))
        if j > 0:
            base = self.op("mod", base, self.c(f.full[axis]))
        return base

    def linear_index(self, f: _Frame) -> Value:
        """The row-major index, in the graph shape, of each element of the block."""
        strides = [math.prod(f.full[a + 1:]) for a in range(len(f.full))]
        total: Value | None = None
        for r, run in enumerate(f.runs):
            if not run:
                continue
            if list(run) == list(range(run[0], run[-1] + 1)):
                # A run of consecutive axes: its collapsed coordinate times the innermost stride.
                base = f.starts[r]
                if f.axes[r] is not None and f.shape[f.axes[r]] > 1:  # type: ignore[index]
                    base = self.add(self.op("iota", shape=f.shape, axis=f.axes[r]), base)
                terms = [self.mul(base, strides[run[-1]])]
            else:
                terms = [self.mul(self.coord(f, a), strides[a]) for a in run]
            for t in terms:
                total = t if total is None else self.add(total, t)
        return total if total is not None else self.c(0)

    def _xor(self, x: Value, k: int | Value) -> Value:
        # Bitwise xor of non-negative values, from the ops the catalogue has: x + k - 2 (x & k).
        kv = self.c(k) if isinstance(k, int) else k
        both = self.op("and", x, kv)
        return self.op("sub", self.add(x, kv), self.mul(both, 2))

    def _hash32(self, x: Value) -> Value:
        m = self.c(_MASK32)
        for mult, shift in _HASH_ROUNDS:
            x = self._xor(x, self.op("floordiv", x, self.c(1 << shift)))
            x = self.op("and", self.op("mul", x, self.c(mult)), m)
        return self._xor(x, self.op("floordiv", x, self.c(1 << _HASH_FINAL_SHIFT)))

    def random(self, op: GraphOp, f: _Frame) -> Value:
        dtype: DType = op.attr("dtype")  # type: ignore[assignment]
        dist = str(op.attr("dist"))
        if not dtype.is_float:
            raise ScheduleIRError(f"random of dtype {dtype}: only float samples are supported")
        seed = int(op.attr("seed"))  # type: ignore[call-overload]
        keys = _seed_keys(seed)
        n = math.prod(f.full)
        lin = self.linear_index(f)
        h = self._hash32(self._xor(self.op("and", lin, self.c(_MASK32)), keys[0]))
        if n > _MASK32:
            h = self._hash32(self._xor(h, self.op("floordiv", lin, self.c(1 << 32))))
        h = self._hash32(self._xor(h, keys[1]))
        streams = [h]
        for k in keys[2:]:
            streams.append(self._hash32(self._xor(streams[-1], k)))
        cd = F64 if dtype == F64 else F32

        def uniform(i: int) -> Value:
            if cd == F32:
                bits = self.op("floordiv", streams[i], self.c(1 << 8))
                return self.op("mul", self.op("cast", bits, dtype=F32, rounding="nearest_even"),
                               self.c(2.0 ** -24, F32))
            hi = self.mul(self.op("floordiv", streams[2 * i], self.c(1 << 6)), 1 << 27)
            bits = self.add(hi, self.op("floordiv", streams[2 * i + 1], self.c(1 << 5)))
            return self.op("mul", self.op("cast", bits, dtype=F64, rounding="nearest_even"),
                           self.c(2.0 ** -53, F64))

        if dist == "uniform":
            u = uniform(0)
            return u if dtype == cd else self.op("cast", u, dtype=dtype, rounding="toward_zero")
        if dist != "normal":
            raise ScheduleIRError(f"random distribution '{dist}' is not supported")
        u1, u2 = uniform(0), uniform(1)
        # Box-Muller: 1 - u1 is in (0, 1], so the log is finite.
        radius = self.op("sqrt", self.op("mul", self.op("log", self.op("sub", self.c(1.0, cd), u1)),
                                         self.c(-2.0, cd)))
        z = self.op("mul", radius, self.op("cos", self.op("mul", u2, self.c(2 * math.pi, cd))))
        return z if dtype == cd else self.op("cast", z, dtype=dtype, rounding="nearest_even")


_MASK32 = 0xFFFFFFFF
# A 32-bit multiply-xorshift finaliser (the constants of the well-known "lowbias32" hash).
_HASH_ROUNDS = ((0x7FEB352D, 16), (0x846CA68B, 15))
_HASH_FINAL_SHIFT = 16


def _hash32_py(x: int) -> int:
    x &= _MASK32
    for mult, shift in _HASH_ROUNDS:
        x ^= x >> shift
        x = (x * mult) & _MASK32
    return x ^ (x >> _HASH_FINAL_SHIFT)


def _seed_keys(seed: int) -> list[int]:
    """Keys of the seed: two for the element hash, then one per further stream (4 for f64 normals)."""
    keys = [_hash32_py(seed & _MASK32), _hash32_py(((seed >> 32) & _MASK32) ^ 0x9E3779B9)]
    for i in range(3):
        keys.append(_hash32_py(keys[-1] ^ (0x85EBCA6B + i)))
    return keys


# ---------------------------------------------------------------------- elementwise and copy


class _Elementwise(_Base):
    def build(self) -> Kernel:
        call = self.call
        ext = call.space.extents
        r = len(ext)
        br, bc = call.schedule.block
        block = (1,) * (r - 2) + (br, bc)
        n_rb, n_cb = cdiv(ext[-2], br), cdiv(ext[-1], bc)
        lead = ext[:-2]
        self.b.grid(math.prod(lead) * n_rb, n_cb)
        lead_idx, rb = self.split(self.b.program_id(0), lead, n_rb)
        starts = lead_idx + [self.mul(rb, br), self.mul(self.b.program_id(1, hint="pid1"), bc)]
        frame = _Frame(call.space.dims, starts, [None] * (r - 2) + [r - 2, r - 1], block,
                       call.space.shape)
        env: dict[GraphValue, Value] = {}

        def get(v: GraphValue) -> Value:
            if v not in env:
                i = self.inputs[v][0]
                env[v] = self.b.load(self.params[i], *starts, shape=block, hint=self.call.args[i].buffer.name)
            return env[v]

        for op in call.ops:
            env[op.result] = self.lower_op(op, get, frame)
        for v, i in call.bindings:
            if call.args[i].role == "out":
                self.b.store(self.params[i], *starts, value=self.as_block(get(v), block))
        return self.b.build()


# ---------------------------------------------------------------------- reductions


def _identity(kind: str, dtype: DType) -> float:
    if dtype.is_float or kind in ("sum", "prod", "mean"):
        return {"sum": 0.0, "mean": 0.0, "prod": 1.0, "max": -math.inf, "argmax": -math.inf,
                "min": math.inf, "argmin": math.inf}[kind]
    if dtype == BOOL:
        return 0.0 if kind in ("max", "argmax") else 1.0
    bits = dtype.bits if dtype.kind == "int" else dtype.bits + 1
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if bits == 64:
        hi = 2 ** 63 - 2 ** 10  # the largest float below 2**63: the attribute is a float
    return float(lo) if kind in ("max", "argmax") else float(hi)


_COMBINE = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}


class _Reduction(_Base):
    """One program per block of rows; passes over the row as described in the module docstring."""

    def build(self) -> Kernel:
        call = self.call
        ext = call.space.extents
        r = len(ext)
        br, bk = call.schedule.block
        self.k_extent = ext[-1]
        self.bk = bk
        self.block = (1,) * (r - 2) + (br, bk)
        self.stat_block = (1,) * (r - 2) + (br, 1)
        n_rb = cdiv(ext[-2], br)
        lead = ext[:-2]
        per_program = call.schedule.blocks_per_program
        self.b.grid(cdiv(math.prod(lead) * n_rb, per_program))
        self.k0: Value = self.c(0)
        self.levels = self._levels()
        self.outer: dict[GraphValue, Value] = {}
        self.rows: dict[GraphValue, Value] = {}
        self.invariant: dict[GraphValue, Value] = {}
        self.in_loop = False
        self.mask: Value | None = None
        nk = cdiv(self.k_extent, bk)
        pid = self.b.program_id(0)
        if per_program == 1:
            self._rows_of_block(pid, lead, n_rb, nk)
        else:
            # The verifier admits this for one-block rows only (nk == 1). Blocks past the end (a
            # last program with fewer) are masked by the loads' and stores' bounds.
            self._load_invariant_rows()
            with self.loop(per_program, 1) as lp:
                self._rows_of_block(self.add(self.mul(pid, per_program), lp.iv), lead, n_rb, nk)
        return self.b.build()

    def _rows_of_block(self, block: Value, lead: Sequence[int], n_rb: int, nk: int) -> None:
        """The body of one block of rows (`block`: its index in row-block order): every pass, and
        the stores."""
        call = self.call
        br = call.schedule.block[0]
        lead_idx, rb = self.split(block, lead, n_rb)
        self.row_starts = lead_idx + [self.mul(rb, br)]
        self.outer = {}
        reduces = [op for op in call.ops if op.name == "reduce"]
        passes = self._passes(reduces)
        row_outs = [(v, i) for v, i in call.bindings
                    if call.args[i].role == "out" and self.levels[v] == "row"]
        if nk <= 1:
            for op in reduces:
                self.value(op.result)
            for v, i in row_outs:
                self.b.store(self.params[i], *self.row_starts, self.k0,
                             value=self.as_block(self.value(v), self.block))
        else:
            for p in range(max(passes.values(), default=-1) + 1):
                self.reduction_pass([op for op in reduces if passes[op] == p])
            if row_outs:
                self.prepare([v for v, _ in row_outs])
                with self.loop(self.k_extent, self.bk) as lp:
                    self.enter(lp.iv)
                    for v, i in row_outs:
                        self.b.store(self.params[i], *self.row_starts, lp.iv,
                                     value=self.as_block(self.value(v), self.block))
                self.leave()
        for v, i in call.bindings:
            if call.args[i].role == "out" and self.levels[v] != "row":
                self.b.store(self.params[i], *self.row_starts, self.c(0),
                             value=self.as_block(self.value(v), self.stat_block))

    def _load_invariant_rows(self) -> None:
        """Load, once per program, the row-level inputs that are the same in every row (at row 0):
        stride 0 along the kernel's collapsed axes but the reduced one."""
        zeros = [self.c(0)] * (len(self.block) - 1)
        for v, idx in self.inputs.items():
            i = idx[0]
            if self.levels[v] == "row" and self.call.args[i].layout.rows_alike():
                p = self.params[i]
                self.invariant[v] = self.b.load(p, *zeros, self.k0, shape=self.block, hint=p.hint)

    # -- analysis ----------------------------------------------------------------------------

    def _levels(self) -> dict[GraphValue, str]:
        """row (varies along the reduced axis), stat (one per row) or scalar, for every value."""
        lv: dict[GraphValue, str] = {}
        for v, i in self.call.bindings:
            if self.call.args[i].role == "in":
                lv[v] = "stat" if self.call.args[i].part == "stat" else "row"
        for op in self.call.ops:
            ins = {lv[v] for v in op.operands}
            if op.name in _CONSTANTS:
                level = "scalar"
            elif op.name in ("iota", "random"):
                level = "row"
            elif op.name == "reduce":
                level = "stat"
            elif op.name == "broadcast_to" and ins == {"stat"}:
                level = "row" if _shape(op.result) == self.call.space.shape else "stat"
            elif "row" in ins:
                level = "row"
            elif "stat" in ins:
                level = "stat"
            else:
                level = "scalar"
            for res in op.results:
                lv[res] = level
        return lv

    def _passes(self, reduces: list[GraphOp]) -> dict[GraphOp, int]:
        """The pass computing each reduce: the number of reductions its operand depends on."""
        depth: dict[GraphValue, int] = {}
        out: dict[GraphOp, int] = {}
        for op in self.call.ops:
            d = max((depth.get(v, 0) for v in op.operands), default=0)
            if op.name == "reduce":
                out[op] = d
                d += 1
            for res in op.results:
                depth[res] = d
        return out

    # -- values ------------------------------------------------------------------------------

    def frame(self) -> _Frame:
        r = len(self.block)
        return _Frame(self.call.space.dims, self.row_starts + [self.k0], [None] * (r - 2) + [r - 2, r - 1],
                      self.block, self.call.space.shape)

    def value(self, v: GraphValue) -> Value:
        level = self.levels[v]
        cache = self.rows if level == "row" else self.outer
        if v in cache:
            return cache[v]
        if self.in_loop and level != "row":
            raise ScheduleIRError(f"kernel {self.call.name}: a per-row value was not computed before its "
                                  "pass (lowering bug)")
        if v in self.invariant:
            return self.invariant[v]
        if v in self.inputs:
            i = self.inputs[v][0]
            p = self.params[i]
            if level == "row":
                t = self.b.load(p, *self.row_starts, self.k0, shape=self.block, hint=p.hint)
            else:
                t = self.b.load(p, *self.row_starts, self.c(0), shape=self.stat_block, hint=p.hint)
        else:
            op = v.producer
            assert op is not None
            if op.name == "reduce":
                t = self.reduce_single(op)
            else:
                t = self.lower_op(op, self.value, self.frame())
        cache[v] = t
        return t

    def prepare(self, targets: Sequence[GraphValue]) -> None:
        """Compute, before a pass loop opens, every per-row value and scalar the pass will read."""
        seen: set[GraphValue] = set()
        stack = list(targets)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if self.levels[v] != "row":
                self.value(v)
            elif v not in self.inputs and v.producer is not None:
                stack.extend(v.producer.operands)

    def enter(self, iv: Value) -> None:
        self.in_loop = True
        self.k0 = iv
        self.rows = {}
        self.mask = None

    def leave(self) -> None:
        self.in_loop = False
        self.k0 = self.c(0)
        self.rows = {}
        self.mask = None

    def masked(self, x: Value, kind: str) -> Value:
        """The row block with the columns past the row's end set to the reduction's identity."""
        x = self.as_block(x, self.block)
        if self.k_extent % self.bk == 0 and self.k_extent > 0:
            return x
        if self.mask is None:
            cols = self.add(self.op("iota", shape=self.block, axis=len(self.block) - 1), self.k0)
            self.mask = self.op("cmp", cols, self.c(self.k_extent), pred="lt")
        dtype = x.ty.dtype  # type: ignore[union-attr]
        return self.op("select", self.mask, x, self.c(_identity(kind, dtype), dtype))

    def reduce_single(self, op: GraphOp) -> Value:
        """A reduce of a row that fits in one block."""
        kind = str(op.attr("kind"))
        x = self.masked(self.value(op.operands[0]), kind)
        axis = len(self.block) - 1
        return self.b.reduce(x, kind, axis)

    def reduction_pass(self, reduces: list[GraphOp]) -> None:
        if not reduces:
            return
        self.prepare([op.operands[0] for op in reduces])
        axis = len(self.block) - 1
        inits: list[Value] = []
        for op in reduces:
            kind = str(op.attr("kind"))
            dtype = op.operands[0].ty.dtype
            inits.append(self.b.full(self.stat_block, _identity(kind, dtype), dtype))
            if kind in ("argmax", "argmin"):
                inits.append(self.b.full(self.stat_block, 0.0, INT64))
        with self.loop(self.k_extent, self.bk, inits) as lp:
            self.enter(lp.iv)
            carried = list(lp.args)
            new: list[Value] = []
            for op in reduces:
                kind = str(op.attr("kind"))
                x = self.masked(self.value(op.operands[0]), kind)
                if kind in ("argmax", "argmin"):
                    best_v, best_i = carried.pop(0), carried.pop(0)
                    part_v = self.b.reduce(x, "max" if kind == "argmax" else "min", axis)
                    part_i = self.add(self.b.reduce(x, kind, axis), lp.iv)
                    # Strictly better only: the first block holding the extreme value wins ties.
                    take = self.op("cmp", part_v, best_v, pred="gt" if kind == "argmax" else "lt")
                    new += [self.op("select", take, part_v, best_v), self.op("select", take, part_i, best_i)]
                else:
                    acc = carried.pop(0)
                    new.append(self.op(_COMBINE[kind], acc, self.b.reduce(x, kind, axis)))
            self.b.yield_(lp, new)
        self.leave()
        results = list(lp.results)
        for op in reduces:
            if str(op.attr("kind")) in ("argmax", "argmin"):
                results.pop(0)
            self.outer[op.result] = results.pop(0)


def _shape(v: GraphValue) -> tuple[int, ...]:
    return tuple(d.value for d in v.ty.dims)


# ---------------------------------------------------------------------- matmul


class _Matmul(_Base):
    """(BM, BN) output blocks; each operand block is loaded, passed through its prologue (the
    elementwise ops between the loaded buffer and the matmul), and accumulated with `dot`; then the
    epilogue runs on the accumulator block."""

    def build(self) -> Kernel:
        call = self.call
        mm = next(op for op in call.ops if op.name == "matmul")
        ext = call.space.extents
        nlead = len(ext) - 2
        m, n = ext[-2], ext[-1]
        k = call.space.k or 0
        bm, bn = call.schedule.block
        bk = call.schedule.k or k
        lead = ext[:-2]
        n_mb, n_nb = cdiv(m, bm), cdiv(n, bn)
        self.b.grid(math.prod(lead) * n_mb, n_nb)
        g = call.schedule.group_m
        if g > 1 and n_mb > 1 and n_nb > 1:
            lin = self.add(self.mul(self.b.program_id(0), n_nb), self.b.program_id(1, hint="pid1"))
            lead_idx, rest = self.split(lin, lead, n_mb * n_nb)
            mb, nb = self._grouped(rest, n_mb, n_nb, g)
        else:
            lead_idx, mb = self.split(self.b.program_id(0), lead, n_mb)
            nb = self.b.program_id(1, hint="pid1")
        m0 = self.mul(mb, bm)
        n0 = self.mul(nb, bn)
        unit = (1,) * nlead
        frame = _Frame(call.space.dims, lead_idx + [m0, n0], [None] * nlead + [0, 1], (bm, bn),
                       call.space.shape)
        chains = [self._chain(mm.operands[0], "lhs"), self._chain(mm.operands[1], "rhs")]
        prologue = {op for _, ops in chains for op in ops}
        # Values that depend on no argument (constants, index values) are computed before the loop.
        env: dict[GraphValue, Value | _Index] = {}
        bound = set(self.inputs)
        dependent: set[GraphValue] = set()
        for op in call.ops:
            if op is mm or any(v in bound or v in dependent for v in op.operands):
                dependent.update(op.results)
            elif op not in prologue:
                env[op.result] = self.lower_op(op, env.__getitem__, frame)  # type: ignore[arg-type]
            else:
                dependent.update(op.results)

        def operand(t: Value, r0: Value, c0: Value, shape: tuple[int, int]) -> Value:
            blk = self.b.load(t, *lead_idx, r0, c0, shape=unit + shape, hint=t.hint)
            return self.op("reshape", blk, shape=shape) if nlead else blk

        def block(i: int, r0: Value, c0: Value, shape: tuple[int, int]) -> Value:
            src, ops = chains[i]
            local: dict[GraphValue, Value] = {src: operand(self.params[self._arg(src, ("lhs", "rhs")[i])],
                                                           r0, c0, shape)}
            for op in ops:
                local[op.result] = self.lower_op(op, lambda v: local[v] if v in local else env[v],  # type: ignore[arg-type,return-value]
                                                 frame)
            return local[mm.operands[i]]

        accum: DType = mm.attr("accum")  # type: ignore[assignment]
        acc = self.b.full((bm, bn), 0.0, accum, hint="acc")
        nk = cdiv(k, bk)
        if nk == 1:
            acc = self.b.dot(block(0, m0, self.c(0), (bm, bk)), block(1, self.c(0), n0, (bk, bn)), acc)
        elif nk > 1:
            with self.loop(k, bk, [acc]) as lp:
                a = block(0, m0, lp.iv, (bm, bk))
                b = block(1, lp.iv, n0, (bk, bn))
                self.b.yield_(lp, [self.b.dot(a, b, lp.args[0])])
            acc = lp.results[0]
        env[mm.result] = acc

        def get(v: GraphValue) -> Value:
            if v not in env:
                env[v] = operand(self.params[self._arg(v, ("full",))], m0, n0, (bm, bn))
            return env[v]  # type: ignore[return-value]

        for op in call.ops:
            if op is not mm and op not in prologue and op.result not in env:
                env[op.result] = self.lower_op(op, get, frame)
        for v, i in call.bindings:
            if call.args[i].role == "out":
                blk = self.as_block(get(v), (bm, bn))
                if nlead:
                    blk = self.op("reshape", blk, shape=unit + (bm, bn))
                self.b.store(self.params[i], *lead_idx, m0, n0, value=blk)
        return self.b.build()

    def _grouped(self, pid: Value, n_mb: int, n_nb: int, g: int) -> tuple[Value, Value]:
        """(block row, block column) of program `pid` of an n_mb x n_nb grid ordered in groups of g
        block rows, column-major within a group (the last group may be shorter)."""
        width = g * n_nb
        first = self.mul(self.op("floordiv", pid, self.c(width)), g)
        size = self.c(g) if n_mb % g == 0 else self.op("minimum", self.op("sub", self.c(n_mb), first), self.c(g))
        within = self.op("mod", pid, self.c(width))
        return self.add(first, self.op("mod", within, size)), self.op("floordiv", within, size)

    def _chain(self, v: GraphValue, part: str) -> tuple[GraphValue, list[GraphOp]]:
        """The buffer value an operand is loaded from and the prologue ops from it to the operand."""
        ops: list[GraphOp] = []
        while not any(self.call.args[i].part == part for i in self.inputs.get(v, [])):
            p = v.producer
            if p is None or p not in self.call.ops:
                raise ScheduleIRError(f"kernel {self.call.name}: the {part} operand has no {part} argument")
            ops.append(p)
            v = next(u for u in p.operands if self._computed(u))
        return v, ops[::-1]

    def _computed(self, v: GraphValue) -> bool:
        """Whether v depends on an argument (as opposed to constants computed in the kernel)."""
        if v in self.inputs:
            return True
        p = v.producer
        return p is not None and any(self._computed(u) for u in p.operands)

    def _arg(self, v: GraphValue, parts: tuple[str, ...]) -> int:
        for i in self.inputs.get(v, []):
            if self.call.args[i].part in parts:
                return i
        raise ScheduleIRError(f"kernel {self.call.name}: no {'/'.join(parts)} argument bound to a matmul value")


# ---------------------------------------------------------------------- gather


class _Gather(_Base):
    def build(self) -> Kernel:
        call = self.call
        table = next(i for i, a in enumerate(call.args) if a.part == "table")
        ids = next(i for i, a in enumerate(call.args) if a.part == "ids")
        outs = [i for i, a in enumerate(call.args) if a.role == "out"]
        n_ids, width = call.args[outs[0]].layout.shape
        _, bc = call.schedule.block
        self.b.grid(n_ids, cdiv(width, bc))
        row = self.b.program_id(0)
        c0 = self.mul(self.b.program_id(1, hint="pid1"), bc)
        idx = self.op("item", self.b.load(self.params[ids], row, shape=(1,), hint="id"))
        if idx.ty != ScalarType(INT64):
            idx = self.op("cast", idx, dtype=INT64, rounding="toward_zero")
        vals = self.b.load(self.params[table], idx, c0, shape=(1, bc), hint="row")
        for i in outs:
            self.b.store(self.params[i], row, c0, value=vals)
        return self.b.build()


class _UserKernel:
    """A `kernel` call: the @kernel's own Tile IR (tessera/ir/kernel_registry.py)."""

    def __init__(self, call: KernelCall, name: str) -> None:
        self.call, self.name = call, name

    def build(self) -> Kernel:
        from tessera.ir.kernel_registry import lower_call

        return lower_call(self.call, self.name)


_LOWERINGS: dict[str, type[_Base | _UserKernel]] = {
    "elementwise": _Elementwise,
    "copy": _Elementwise,
    "row_reduction": _Reduction,
    "reduce": _Reduction,
    "matmul": _Matmul,
    "gather": _Gather,
    "kernel": _UserKernel,
}
