"""Tile IR -> Target IR for targets that run a program as one thread with SIMD lanes (the CPU).

The compiled entry runs a range of programs:

    func @k(<per tensor: %t: ptr<global, T>, %t.n0.. (extents), %t.s0.. (strides, in elements)>,
            %grid0.., %begin, %end)

and `for %prog = %begin to %end` decodes the program ids (last grid axis fastest) and runs the
body, so the runtime can split the grid over threads. `abi(kernel)` lists the parameters.

Blocks live in local memory (stack arrays) or in registers:

1. Planning (per region): consecutive block ops of one iteration shape - loads, elementwise ops,
   `full`/`iota`, stores, sum/max/min/prod reductions - form a *group*, emitted as ONE loop nest whose
   last axis runs in vector chunks of `TargetInfo.lanes` (a shorter tail chunk for ragged block
   widths). Inside a group values stay in registers; a value is materialised into a stack array
   only if something outside its group uses it. An op cannot join a group that produces one of its
   operands through a reduction (the reduction is complete only after the nest), so a row softmax
   becomes three nests: max; exp + sum; divide + store.
2. `broadcast`/`transpose`/`reshape` of a block are views: a stack array read with other strides
   (stride 0 for broadcast axes) or another shape, never copied (a strided block is copied once
   before a reshape); `item` reads element 0 of a block as a scalar.
3. Global loads and stores are masked by the tensor extents (unsigned compare, so negative starts
   are out of bounds too); a group touching tensors is versioned on "every inner stride is 1":
   contiguous masked vector loads/stores, else gathers/scatters.
4. `dot` is a register-blocked micro-kernel on the stack arrays: MR rows x NR vectors of the
   accumulator stay in registers through the k loop, each step broadcasting a[i, k] and FMA-ing a
   row of b. It updates the accumulator in place when that is its last use.
5. `for` becomes a Target `for`: scalar carried values are loop-carried SSA values, block carried
   values live in stack arrays updated by the yield.

Every target-specific number comes from `TargetInfo` (lanes, registers, math expansions); targets
that run a program per CTA (`program_model == "cta"`) are lowered by tessera/ir/tile_to_target_gpu.py,
which shares the op semantics (elementwise.py, convert.py, reduction.py) and maps blocks onto threads.

Elementwise op semantics (NumPy's where the contract leaves room) live in
tessera/ir/target/elementwise.py; reductions here: `max`/`min` propagate NaN, `argmax`/`argmin`
give the first extreme index with NaN counting as the extreme, `mean` divides by the block extent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tessera.codegen.mathlib import MathLib
from tessera.dtypes import BOOL, INT64, DType
from tessera.ir.target import convert as cv
from tessera.ir.target import reduction as red
from tessera.ir.target.builder import Builder
from tessera.ir.target.elementwise import Elementwise, compare_predicate
from tessera.ir.target.info import TargetInfo
from tessera.ir.target.ops import (
    I64,
    Function,
    Module,
    Pointer,
    TargetIRError,
    Vector,
    vec,
)
from tessera.ir.target.ops import Value as TValue
from tessera.ir.tile import ops as tile
from tessera.ir.tile.ops import BlockType, Kernel, Op, Region, ScalarType, TensorRefType
from tessera.ir.tile.verify import verify_kernel

_FUSIBLE_ELEMENTWISE = frozenset(n for n, d in tile.TILE_OPS.items() if d.category == "elementwise")
_STORES = ("store", "store_masked")


def _stored(op: Op) -> tile.Value:
    """The value a store or store_masked writes."""
    return op.operands[-2] if op.name == "store_masked" else op.operands[-1]


def _store_starts(op: Op) -> tuple[tile.Value, ...]:
    return op.operands[1:-2] if op.name == "store_masked" else op.operands[1:-1]
_REDUCE_FUSED = ("sum", "mean", "prod", "max", "min")


# ---------------------------------------------------------------- the ABI


@dataclass(frozen=True)
class AbiParam:
    name: str
    kind: str  # "ptr" | "extent" | "stride" | "grid" | "begin" | "end"
    tensor: int = -1  # the kernel parameter index (ptr/extent/stride)
    axis: int = -1


def _tensor_name(k: Kernel, i: int) -> str:
    hint = k.params[i].hint
    ok = hint and (hint[0].isalpha() or hint[0] == "_") and all(c.isalnum() or c == "_" for c in hint)
    names = [p.hint for p in k.params]
    return hint if ok and names.count(hint) == 1 else f"t{i}"


def abi(k: Kernel) -> list[AbiParam]:
    """The compiled entry's parameters, in order (the runtime passes them through ctypes)."""
    out: list[AbiParam] = []
    for i, p in enumerate(k.params):
        assert isinstance(p.ty, TensorRefType)
        name = _tensor_name(k, i)
        out.append(AbiParam(name, "ptr", i))
        out += [AbiParam(f"{name}.n{d}", "extent", i, d) for d in range(p.ty.rank)]
        out += [AbiParam(f"{name}.s{d}", "stride", i, d) for d in range(p.ty.rank)]
    out += [AbiParam(f"grid{a}", "grid", axis=a) for a in range(len(k.grid))]
    return [*out, AbiParam("begin", "begin"), AbiParam("end", "end")]


# ---------------------------------------------------------------- values of the lowering


@dataclass
class Buf:
    """A block in local memory, row-major and contiguous."""

    ptr: TValue
    shape: tuple[int, ...]
    dtype: DType


@dataclass
class View:
    """How to read a block: a Buf with strides per block axis (0 = broadcast), or a scalar splat."""

    shape: tuple[int, ...]
    dtype: DType
    buf: Buf | None = None
    strides: tuple[int, ...] = ()
    scalar: TValue | None = None

    @property
    def contiguous(self) -> bool:
        return self.buf is not None and self.strides == _row_major(self.shape) and self.shape == self.buf.shape


@dataclass
class TensorArg:
    ptr: TValue
    extents: list[TValue]
    strides: list[TValue]
    dtype: DType


@dataclass
class _Row:
    tensor: TensorArg
    ptr: TValue  # the tensor element at (starts + outer indices, 0 on the last axis)
    start_last: TValue | None  # the start on the last axis (None for rank-0 tensors)
    ok: TValue | None  # outer indices in bounds (None: rank <= 1)
    ok_lanes: dict[int, TValue]  # `ok` splat to each chunk width
    ext_lanes: dict[int, TValue]  # the last extent splat to each chunk width


def _row_major(shape: Sequence[int]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc if s > 1 else 0)
        acc *= s
    return tuple(reversed(out))


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


# ---------------------------------------------------------------- planning


@dataclass(eq=False)
class Group:
    shape: tuple[int, ...]
    ops: list[Op] = field(default_factory=list)
    produced: set[int] = field(default_factory=set)  # results (and views of them) not usable by members
    loaded: dict[int, tuple[int, ...]] = field(default_factory=dict)  # tensor uid -> start uids
    stored: set[int] = field(default_factory=set)


def _block(v: tile.Value) -> bool:
    return isinstance(v.ty, BlockType)


def _iteration_shape(op: Op) -> tuple[int, ...] | None:
    """The shape a fusible op iterates over, or None if the op is not fusible."""
    if op.name in _STORES:
        return _stored(op).ty.shape  # type: ignore[union-attr]
    if op.name == "reduce":
        return op.operands[0].ty.shape if op.attr("kind") in _REDUCE_FUSED else None  # type: ignore[union-attr]
    if op.name in ("load", "full", "iota") or (op.name in _FUSIBLE_ELEMENTWISE and _block(op.results[0])):
        return op.results[0].ty.shape  # type: ignore[union-attr]
    if op.name == "broadcast" and not _block(op.operands[0]):
        return op.results[0].ty.shape  # type: ignore[union-attr]
    return None


def _is_view(op: Op) -> bool:
    return op.name in ("transpose", "reshape") or (op.name == "broadcast" and _block(op.operands[0]))


def _is_scalar_op(op: Op) -> bool:
    """Ops on scalars only: they never depend on blocks (`item` does, so it is not one)."""
    return op.name not in ("for", "yield", "item") and bool(op.results) and not op.regions \
        and all(isinstance(r.ty, ScalarType) for r in op.results)


PlanItem = Op | Group


def plan_region(ops: Sequence[Op]) -> list[PlanItem]:
    """Split a region's ops into groups (fused loop nests) and single ops, in emission order."""
    items: list[PlanItem] = []
    cur: Group | None = None
    late: set[int] = set()  # values the open group defines, and views placed after it
    for op in ops:
        if _is_scalar_op(op):
            # Scalars never depend on blocks, so they can run before the open group's nest.
            if cur is not None:
                items.insert(items.index(cur), op)
            else:
                items.append(op)
            continue
        if _is_view(op):
            if cur is not None and op.operands[0].uid not in late:
                # Its source is ready before the open group: place it there, so members may read it.
                items.insert(items.index(cur), op)
            else:
                if cur is not None:
                    # After the group's nest: members cannot read it.
                    cur.produced.add(op.result.uid)
                    late.add(op.result.uid)
                items.append(op)
            continue
        shape = _iteration_shape(op)
        if shape is None:
            cur = None
            items.append(op)
            continue
        if cur is None or not _joins(cur, op, shape):
            cur = Group(shape)
            items.append(cur)
            late = set()
        cur.ops.append(op)
        late.update(r.uid for r in op.results)
        if op.name == "load":
            cur.loaded[op.operands[0].uid] = tuple(v.uid for v in op.operands[1:])
        elif op.name in _STORES:
            cur.stored.add(op.operands[0].uid)
        if op.name == "reduce":
            cur.produced.add(op.result.uid)
    return items


def _joins(g: Group, op: Op, shape: tuple[int, ...]) -> bool:
    if shape != g.shape:
        return False
    if any(v.uid in g.produced for v in op.operands):
        return False
    if op.name == "load" and op.operands[0].uid in g.stored:
        return False
    if op.name in _STORES:
        t = op.operands[0].uid
        starts = tuple(v.uid for v in _store_starts(op))
        if t in g.loaded and g.loaded[t] != starts:
            return False
    return True


def _walk(region: Region) -> list[Op]:
    out = []
    for op in region.ops:
        out.append(op)
        for r in op.regions:
            out += _walk(r)
    return out


# ---------------------------------------------------------------- the lowering


class _Lowering:
    def __init__(self, k: Kernel, target: TargetInfo) -> None:
        self.k = k
        self.t = target
        self.lanes = target.lanes
        self.b = Builder()
        self.math = MathLib(self.b, target.expand_math)
        self.ew = Elementwise(self.b, self.math)
        self.scalars: dict[int, TValue] = {}
        self.views: dict[int, View] = {}
        self.tensors: dict[int, TensorArg] = {}
        self.local_bytes = 0
        # Who uses each value (anywhere in the kernel) and which group each planned op is in.
        self.users: dict[int, list[Op]] = {}
        for op in _walk(k.body):
            for v in op.operands:
                self.users.setdefault(v.uid, []).append(op)
        self.op_group: dict[int, Group] = {}

    # -- entry ---------------------------------------------------------------------------------

    def run(self) -> Function:
        k, b = self.k, self.b
        params: list[TValue] = []
        tensor_params: dict[int, TensorArg] = {}
        for i, p in enumerate(k.params):
            assert isinstance(p.ty, TensorRefType)
            name = _tensor_name(k, i)
            ptr = TValue(Pointer("global", cv.storage_scalar(p.ty.dtype)), name)
            ext = [TValue(I64, f"{name}.n{d}") for d in range(p.ty.rank)]
            st = [TValue(I64, f"{name}.s{d}") for d in range(p.ty.rank)]
            params += [ptr, *ext, *st]
            tensor_params[p.uid] = TensorArg(ptr, ext, st, p.ty.dtype)
        grid = [TValue(I64, f"grid{a}") for a in range(len(k.grid))]
        begin, end = TValue(I64, "begin"), TValue(I64, "end")
        params += [*grid, begin, end]
        self.tensors = tensor_params
        self.grid = grid
        doc = f"programs [begin, end) of kernel {k.name}, grid {', '.join(map(str, k.grid))}"
        with b.function(k.name, params, doc) as fn, b.for_(begin, end, b.index(1), iv_hint="prog") as prog:
            self.pids = self._program_ids(prog.iv)
            self.region(k.body.ops)
        if self.local_bytes > self.t.max_local_bytes:
            raise TargetIRError(
                f"kernel {k.name}: its blocks need {self.local_bytes} bytes of stack per program, more "
                f"than the {self.t.max_local_bytes} this target allows; use smaller block sizes")
        return fn

    def _program_ids(self, lin: TValue) -> list[TValue]:
        b = self.b
        pids: list[TValue] = [lin] * len(self.grid)
        stride: TValue | None = None
        for a in reversed(range(len(self.grid))):
            q = lin if stride is None else b.op("udiv", lin, stride)
            pids[a] = q if a == 0 else b.op("urem", q, self.grid[a])
            stride = self.grid[a] if stride is None else b.op("mul", stride, self.grid[a])
        return pids

    # -- regions -------------------------------------------------------------------------------

    def region(self, ops: Sequence[Op]) -> None:
        items = plan_region([op for op in ops if op.name != "yield"])
        for it in items:
            if isinstance(it, Group):
                for op in it.ops:
                    self.op_group[id(op)] = it
        for it in items:
            if isinstance(it, Group):
                self.group(it)
            else:
                self.single(it)

    def _needs_buffer(self, v: tile.Value, g: Group) -> bool:
        return any(self.op_group.get(id(u)) is not g for u in self.users.get(v.uid, []))

    def alloc(self, shape: tuple[int, ...], dtype: DType, hint: str = "blk") -> Buf:
        elem = cv.buffer_scalar(dtype)
        n = max(1, _numel(shape))
        self.local_bytes += n * elem.bits // 8
        return Buf(self.b.alloca(elem, n, hint or "blk"), shape, dtype)

    def view_of(self, v: tile.Value) -> View:
        if v.uid in self.views:
            return self.views[v.uid]
        if v.uid in self.scalars:
            return View((), v.ty.dtype, scalar=self.scalars[v.uid])  # type: ignore[union-attr]
        raise TargetIRError(f"lowering: block %{v.hint or v.uid} has no storage (an internal planning error)")

    def buf_view(self, buf: Buf) -> View:
        return View(buf.shape, buf.dtype, buf, _row_major(buf.shape))

    # -- single ops ----------------------------------------------------------------------------

    def single(self, op: Op) -> None:
        if _is_scalar_op(op):
            self.scalar_op(op)
        elif op.name == "broadcast":
            src = self.view_of(op.operands[0])
            shape = op.result.ty.shape  # type: ignore[union-attr]
            self.views[op.result.uid] = _broadcast_view(src, shape)
        elif op.name == "reshape":
            self.views[op.result.uid] = self.reshape(self.view_of(op.operands[0]), op.result.ty.shape)  # type: ignore[union-attr]
        elif op.name == "item":
            view = self.view_of(op.operands[0])
            zero = self.b.index(0)
            self.scalars[op.result.uid] = self.read_chunk(view, [zero] * max(0, len(view.shape) - 1), zero, 1)
        elif op.name == "transpose":
            src = self.view_of(op.operands[0])
            perm = op.attr("perm")
            self.views[op.result.uid] = View(tuple(src.shape[p] for p in perm), src.dtype, src.buf,  # type: ignore[union-attr]
                                             tuple(src.strides[p] for p in perm), src.scalar)  # type: ignore[union-attr]
        elif op.name == "dot":
            self.dot(op)
        elif op.name == "for":
            self.for_loop(op)
        elif op.name == "reduce":
            self.arg_reduce(op)
        elif op.name == "barrier":
            pass  # one thread runs a whole program on this target
        elif op.name == "alloc_shared":
            # Shared memory is local memory here; zeros, so that reading it before a copy is defined.
            buf = self.alloc(op.result.ty.shape, op.result.ty.dtype, op.result.hint or "shared")  # type: ignore[union-attr]
            zero = cv.compute_constant(0.0, buf.dtype)
            self.fill(buf, lambda w, buf=buf: self.b.const(zero, vec(cv.compute_scalar(buf.dtype), w)))
            self.views[op.result.uid] = self.buf_view(buf)
        elif op.name == "cp_async":
            # The copy lands in the destination's storage, synchronously on this target.
            dst = self.view_of(op.operands[0])
            assert dst.buf is not None
            self.copy(_broadcast_view(self.view_of(op.operands[1]), dst.shape), dst.buf)
            self.views[op.result.uid] = dst
        else:
            raise TargetIRError(f"lowering: tile op '{op.name}' is not supported by the {self.t.name} lowering")

    def reshape(self, src: View, shape: tuple[int, ...]) -> View:
        """A row-major reinterpretation; a strided view is copied into a contiguous array first."""
        if not src.contiguous:
            buf = self.alloc(src.shape, src.dtype, "reshaped")
            self.copy(src, buf)
            src = self.buf_view(buf)
        assert src.buf is not None
        return self.buf_view(Buf(src.buf.ptr, shape, src.dtype))

    def scalar_op(self, op: Op) -> None:
        lower_scalar_op(self, op, "")

    # -- groups --------------------------------------------------------------------------------

    def group(self, g: Group) -> None:
        b = self.b
        out_bufs: dict[int, Buf] = {}
        for op in g.ops:
            for r in op.results:
                if op.name == "reduce" or self._needs_buffer(r, g):
                    out_bufs[r.uid] = self.alloc(r.ty.shape, r.ty.dtype, r.hint)  # type: ignore[union-attr]
        reduces = [op for op in g.ops if op.name == "reduce"]
        last = len(g.shape) - 1
        for op in reduces:
            if op.attr("axis") != last:
                buf = out_bufs[op.result.uid]
                ident = self._identity(op)
                self.fill(buf, lambda w, ident=ident, buf=buf: self.b.const(ident, vec(cv.compute_scalar(buf.dtype), w)))
        tensors = sorted({op.operands[0].uid for op in g.ops if op.name in ("load", *_STORES)})
        n = g.shape[-1] if g.shape else 1
        if tensors and n > 1:
            cond: TValue | None = None
            for t in tensors:
                st = self.tensors[t].strides[-1]
                c = b.cmp("eq", st, b.index(1))
                cond = c if cond is None else b.op("and", cond, c)
            assert cond is not None
            with b.if_(cond) as br:
                self.group_nest(g, out_bufs, contiguous=True)
                b.yield_([])
                b.else_(br)
                self.group_nest(g, out_bufs, contiguous=False)
                b.yield_([])
        else:
            self.group_nest(g, out_bufs, contiguous=False)
        for op in reduces:
            buf = out_bufs[op.result.uid]
            if op.attr("axis") != last:
                kind = op.attr("kind")
                count = g.shape[op.attr("axis")]  # type: ignore[index]
                self.map_buffer(buf, lambda x, kind=kind, count=count, dt=buf.dtype: self._reduce_final(x, kind, count, dt))
            self.views[op.result.uid] = self.buf_view(buf)
        for uid, buf in out_bufs.items():
            self.views.setdefault(uid, self.buf_view(buf))

    def group_nest(self, g: Group, out_bufs: dict[int, Buf], contiguous: bool) -> None:
        last = len(g.shape) - 1
        lastred = [op for op in g.ops if op.name == "reduce" and op.attr("axis") == last]
        b = self.b

        def acc_init(w: int) -> list[TValue]:
            return [b.const(self._identity(op), vec(cv.compute_scalar(op.result.ty.dtype), w)) for op in lastred]  # type: ignore[union-attr]

        rows: dict[int, _Row] = {}

        def setup(idx: list[TValue], widths: tuple[int, ...]) -> None:
            for op in g.ops:
                if op.name in ("load", *_STORES):
                    starts = op.operands[1:] if op.name == "load" else _store_starts(op)
                    rows[id(op)] = self._row(self.tensors[op.operands[0].uid], starts, idx, widths)

        def chunk(idx: list[TValue], j: TValue, w: int, accs: list[TValue]) -> list[TValue]:
            env: dict[int, TValue] = {}
            acc_it = iter(accs)
            new_accs: list[TValue] = []
            for op in g.ops:
                if op.name == "load":
                    v = self.load_chunk(op, rows[id(op)], j, w, contiguous)
                elif op.name in _STORES:
                    val = self.operand_chunk(_stored(op), env, idx, j, w)
                    keep = self.operand_chunk(op.operands[-1], env, idx, j, w) if op.name == "store_masked" else None
                    self.store_chunk(op, rows[id(op)], val, j, w, contiguous, keep)
                    continue
                elif op.name == "reduce":
                    x = self.operand_chunk(op.operands[0], env, idx, j, w)
                    kind = op.attr("kind")
                    dt = op.result.ty.dtype  # type: ignore[union-attr]
                    if op.attr("axis") == last:
                        new_accs.append(self._combine(kind, next(acc_it), x, dt))  # type: ignore[arg-type]
                    else:
                        buf = out_bufs[op.result.uid]
                        ridx = list(idx)
                        ridx[op.attr("axis")] = b.index(0)  # type: ignore[index]
                        view = self.buf_view(buf)
                        cur = self.read_chunk(view, ridx, j, w)
                        self.write_chunk(buf, ridx, j, self._combine(kind, cur, x, dt))  # type: ignore[arg-type]
                    continue
                elif op.name == "full":
                    dt = op.attr("dtype")
                    v = b.const(cv.compute_constant(float(op.attr("value")), dt), vec(cv.compute_scalar(dt), w))  # type: ignore[arg-type]
                elif op.name == "iota":
                    axis = op.attr("axis")
                    if axis == last:
                        v = b.op("add", b.splat(j, w), b.lane_index(w))
                    else:
                        v = b.splat(idx[axis], w)  # type: ignore[index]
                elif op.name == "broadcast":
                    v = b.splat(self.scalars[op.operands[0].uid], w)
                else:
                    args = [self.operand_chunk(o, env, idx, j, w) for o in op.operands]
                    v = self.ew(op, args)
                r = op.result
                env[r.uid] = v
                if r.uid in out_bufs:
                    self.write_chunk(out_bufs[r.uid], idx, j, v)
            return new_accs

        def finish(idx: list[TValue], main: list[TValue] | None, tail: list[TValue] | None, n: int) -> None:
            for i, op in enumerate(lastred):
                kind = op.attr("kind")
                dt = op.result.ty.dtype  # type: ignore[union-attr]
                parts = [self._hreduce(kind, p[i], dt) for p in (main, tail) if p is not None]  # type: ignore[arg-type]
                s = parts[0]
                for p in parts[1:]:
                    s = self._combine(kind, s, p, dt)  # type: ignore[arg-type]
                s = self._reduce_final(s, kind, n, dt)  # type: ignore[arg-type]
                self.write_chunk(out_bufs[op.result.uid], idx, b.index(0), s)

        self.nest(g.shape, chunk, acc_init, finish, setup)

    def nest(self, shape: tuple[int, ...], chunk: Callable[[list[TValue], TValue, int, list[TValue]], list[TValue]],
             acc_init: Callable[[int], list[TValue]] = lambda w: [],
             finish: Callable[[list[TValue], list[TValue] | None, list[TValue] | None, int], None] | None = None,
             setup: Callable[[list[TValue], tuple[int, ...]], None] | None = None) -> None:
        """Loops over `shape`: the outer axes one index at a time, the last axis in chunks of
        `lanes` (plus one shorter tail chunk). `setup(idx, widths)` runs once per outer index
        before the chunks (for their loop-invariant values); `chunk(idx, j, w, accs)` emits one chunk
        of width w at outer indices idx (one per outer axis) and last-axis offset j, returning the
        updated carried accumulators; `finish` sees each outer index's final accumulators."""
        b = self.b
        r = len(shape)
        n = shape[-1] if r else 1
        w = min(self.lanes, n)
        n_main = n // w * w
        tail = n - n_main

        def inner(idx: list[TValue]) -> None:
            if setup is not None:
                setup(idx, tuple(x for x in (w if n_main else 0, tail) if x))
            main = None
            if n_main == w:
                main = chunk(idx, b.index(0), w, acc_init(w))
            elif n_main:
                with b.for_(b.index(0), b.index(n_main), b.index(w), acc_init(w), iv_hint="j") as lp:
                    b.yield_(chunk(idx, lp.iv, w, lp.args), lp)
                main = lp.results
            tl = chunk(idx, b.index(n_main), tail, acc_init(tail)) if tail else None
            if finish is not None:
                finish(idx, main, tl, n)

        def outer(d: int, idx: list[TValue]) -> None:
            if d >= r - 1:
                inner(idx)
            elif shape[d] == 1:
                outer(d + 1, [*idx, b.index(0)])
            else:
                with b.for_(b.index(0), b.index(shape[d]), b.index(1), iv_hint=f"i{d}") as lp:
                    outer(d + 1, [*idx, lp.iv])

        outer(0, [])

    # -- chunks of views, buffers and tensors --------------------------------------------------

    def _offset(self, strides: Sequence[int], idx: list[TValue], j: TValue) -> TValue:
        b = self.b
        off: TValue | None = None
        terms = list(zip(strides[:-1], idx)) + ([(strides[-1], j)] if strides else [])
        for s, i in terms:
            if s == 0:
                continue
            t = i if s == 1 else b.op("mul", i, b.index(s))
            off = t if off is None else b.op("add", off, t)
        return off if off is not None else b.index(0)

    def read_chunk(self, view: View, idx: list[TValue], j: TValue, w: int) -> TValue:
        b = self.b
        if view.scalar is not None:
            return b.splat(view.scalar, w)
        assert view.buf is not None
        elem = cv.buffer_scalar(view.dtype)
        base = b.ptradd(view.buf.ptr, self._offset(view.strides, idx, j))
        inner = view.strides[-1] if view.strides else 0
        if w == 1 or inner == 1:
            v = b.load(base, vec(elem, w))
        elif inner == 0:
            v = b.splat(b.load(base, elem), w)
        else:
            offs = b.const(tuple(k * inner for k in range(w)), Vector(w, I64))
            v = b.gather(base, offs, b.true_mask(w), b.const(0, Vector(w, elem)))
        return self._from_buffer(v, view.dtype)

    def _from_buffer(self, v: TValue, dt: DType) -> TValue:
        return self.b.cmp("ne", v, self.b.like(0, v)) if dt == BOOL else v

    def write_chunk(self, buf: Buf, idx: list[TValue], j: TValue, v: TValue) -> None:
        b = self.b
        if buf.dtype == BOOL:
            v = b.cast("zext", v, cv.buffer_scalar(BOOL))
        b.store(b.ptradd(buf.ptr, self._offset(_row_major(buf.shape), idx, j)), v)

    def operand_chunk(self, v: tile.Value, env: dict[int, TValue], idx: list[TValue], j: TValue, w: int) -> TValue:
        if v.uid in env:
            return env[v.uid]
        if v.uid in self.scalars:
            return self.b.splat(self.scalars[v.uid], w)
        # Size-1 axes of a stack array have stride 0 (see _row_major), so a smaller operand of the
        # group's shape is broadcast just by reading it at the group's indices.
        return self.read_chunk(self.view_of(v), idx, j, w)

    def _row(self, t: TensorArg, starts: Sequence[tile.Value], idx: list[TValue], widths: tuple[int, ...]) -> _Row:
        """What the chunks of one block row share: the address of its first element, whether the
        outer indices are in bounds, and the lane splats of that flag and of the last extent."""
        b = self.b
        if not starts:
            return _Row(t, t.ptr, None, None, {}, {})
        ok: TValue | None = None
        off: TValue | None = None
        for d in range(len(starts) - 1):
            g = self.scalars[starts[d].uid]
            if idx[d] is not b.index(0):
                g = b.op("add", g, idx[d])
            c = b.cmp("ult", g, t.extents[d])
            ok = c if ok is None else b.op("and", ok, c)
            term = b.op("mul", g, t.strides[d])
            off = term if off is None else b.op("add", off, term)
        ptr = t.ptr if off is None else b.ptradd(t.ptr, off)
        lanes = [w for w in widths if w > 1]
        ok_lanes = {w: b.splat(ok, w) for w in lanes} if ok is not None else {}
        return _Row(t, ptr, self.scalars[starts[-1].uid], ok, ok_lanes,
                    {w: b.splat(t.extents[-1], w) for w in lanes})

    def _chunk_addr(self, row: _Row, j: TValue, w: int, contiguous: bool
                    ) -> tuple[TValue, TValue | None, TValue | None]:
        """(pointer to the chunk's first element, lane mask or None, per-lane offsets or None).
        Masks compare unsigned, so negative indices are out of bounds too."""
        b = self.b
        t = row.tensor
        if row.start_last is None:
            return row.ptr, None, None
        g_last = b.op("add", row.start_last, j)
        off = g_last if contiguous else b.op("mul", g_last, t.strides[-1])
        ptr = b.ptradd(row.ptr, off)
        if w == 1:
            m = b.cmp("ult", g_last, t.extents[-1])
            return ptr, (m if row.ok is None else b.op("and", m, row.ok)), None
        lane = b.lane_index(w)
        mask = b.cmp("ult", b.op("add", b.splat(g_last, w), lane), row.ext_lanes[w])
        if row.ok is not None:
            mask = b.op("and", mask, row.ok_lanes[w])
        offs = None if contiguous else b.op("mul", lane, b.splat(t.strides[-1], w))
        return ptr, mask, offs

    def load_chunk(self, op: Op, row: _Row, j: TValue, w: int, contiguous: bool) -> TValue:
        b = self.b
        t = row.tensor
        ptr, mask, offs = self._chunk_addr(row, j, w, contiguous)
        ty = vec(cv.storage_scalar(t.dtype), w)
        if mask is None:
            raw = b.load(ptr, ty)
        else:
            other = b.const(cv.storage_constant(float(op.attr("other")), t.dtype), ty)  # type: ignore[arg-type]
            raw = b.gather(ptr, offs, mask, other) if offs is not None else b.load(ptr, ty, mask, other)
        return cv.decode(b, raw, t.dtype)

    def store_chunk(self, op: Op, row: _Row, val: TValue, j: TValue, w: int, contiguous: bool,
                    keep: TValue | None = None) -> None:
        b = self.b
        ptr, mask, offs = self._chunk_addr(row, j, w, contiguous)
        if keep is not None:
            mask = keep if mask is None else b.op("and", mask, keep)
        raw = cv.encode(b, val, row.tensor.dtype)
        if mask is None:
            b.store(ptr, raw)
        elif offs is not None:
            b.scatter(ptr, offs, raw, mask)
        else:
            b.store(ptr, raw, mask)

    def fill(self, buf: Buf, value: Callable[[int], TValue]) -> None:
        self.nest(buf.shape, lambda idx, j, w, accs: (self.write_chunk(buf, idx, j, value(w)), [])[1])

    def map_buffer(self, buf: Buf, fn: Callable[[TValue], TValue]) -> None:
        view = self.buf_view(buf)

        def chunk(idx: list[TValue], j: TValue, w: int, accs: list[TValue]) -> list[TValue]:
            self.write_chunk(buf, idx, j, fn(self.read_chunk(view, idx, j, w)))
            return []

        self.nest(buf.shape, chunk)

    def copy(self, src: View, dst: Buf) -> None:
        def chunk(idx: list[TValue], j: TValue, w: int, accs: list[TValue]) -> list[TValue]:
            self.write_chunk(dst, idx, j, self.read_chunk(src, idx, j, w))
            return []

        self.nest(dst.shape, chunk)

    # -- reductions ----------------------------------------------------------------------------

    def _identity(self, op: Op) -> float | int | bool:
        return red.identity(str(op.attr("kind")), op.result.ty.dtype)  # type: ignore[union-attr]

    def _combine(self, kind: str, a: TValue, x: TValue, dt: DType) -> TValue:
        return red.combine(self.b, kind, a, x, dt)

    def _hreduce(self, kind: str, v: TValue, dt: DType) -> TValue:
        return red.lane_reduce(self.b, kind, v, dt)

    def _reduce_final(self, s: TValue, kind: str, n: int, dt: DType) -> TValue:
        return red.finish(self.b, self.ew, s, kind, n, dt)

    def arg_reduce(self, op: Op) -> None:
        """argmax/argmin: first index of the max/min along an axis (NaN counts as the extreme)."""
        b = self.b
        src = self.view_of(op.operands[0])
        axis = op.attr("axis")
        kind = op.attr("kind")
        shape = src.shape
        out = self.alloc(op.result.ty.shape, INT64, op.result.hint)  # type: ignore[union-attr]
        dt = src.dtype
        pred = {"argmax": "gt", "argmin": "lt"}[kind]  # type: ignore[index]
        cmp = compare_predicate(pred, dt)  # type: ignore[arg-type]

        def chunk(idx: list[TValue], j: TValue, w: int, accs: list[TValue]) -> list[TValue]:
            full_idx = [*idx, j]

            def at(i: TValue) -> TValue:
                pos = list(full_idx)
                pos[axis] = i  # type: ignore[index]
                return self.read_chunk(src, pos[:-1], pos[-1], 1)

            first = at(b.index(0))
            with b.for_(b.index(1), b.index(shape[axis]), b.index(1), [first, b.index(0)], iv_hint="k") as lp:  # type: ignore[index]
                x = at(lp.iv)
                best, besti = lp.args
                better = b.cmp(cmp, x, best)
                if dt.is_float:
                    x_nan = b.cmp("uno", x, x)
                    best_ok = b.cmp("ord", best, best)
                    better = b.op("or", better, b.op("and", x_nan, best_ok))
                b.yield_([b.select(better, x, best), b.select(better, lp.iv, besti)], lp)
            ridx = list(full_idx)
            ridx[axis] = b.index(0)  # type: ignore[index]
            self.write_chunk(out, ridx[:-1], ridx[-1], lp.results[1])
            return []

        # One scalar lane per output element: iterate the output shape with width-1 chunks.
        saved = self.lanes
        self.lanes = 1
        try:
            self.nest(out.shape, chunk)
        finally:
            self.lanes = saved
        self.views[op.result.uid] = self.buf_view(out)

    # -- dot -----------------------------------------------------------------------------------

    def dot(self, op: Op) -> None:
        b = self.b
        a_v, b_v, acc_v = (self.view_of(v) for v in op.operands)
        (m, kk), (_, n) = a_v.shape, b_v.shape
        acc_dt = acc_v.dtype
        in_place = self._dead_after(op.operands[2], op) and acc_v.contiguous
        if in_place:
            out = acc_v.buf
            assert out is not None
        else:
            out = self.alloc((m, n), acc_dt, op.result.hint or "acc")
            self.copy(acc_v, out)
        if b_v.scalar is not None or b_v.strides[1] not in (0, 1) or (b_v.strides[1] == 0 and n > 1):
            packed = self.alloc((kk, n), b_v.dtype, "bpack")
            self.copy(b_v, packed)
            b_v = self.buf_view(packed)
        if a_v.scalar is not None:
            packed = self.alloc((m, kk), a_v.dtype, "apack")
            self.copy(a_v, packed)
            a_v = self.buf_view(packed)
        self.micro_kernel(a_v, b_v, out)
        if acc_dt.is_float and acc_dt.name in cv.NARROW_FLOATS:
            self.map_buffer(out, lambda x: cv.round_to(b, x, acc_dt))
        self.views[op.result.uid] = self.buf_view(out)

    def _dead_after(self, v: tile.Value, op: Op) -> bool:
        """v (or a view of it) is not used after op: op's region ends its life there."""
        users = self.users.get(v.uid, [])
        if users != [op]:
            return False
        # Blocks defined outside a loop body must survive later iterations: only values of op's
        # own region (including the loop's carried slots) may be overwritten.
        return self._defined_in_same_region(v, op)

    def _defined_in_same_region(self, v: tile.Value, op: Op) -> bool:
        def find(region: Region) -> bool | None:
            defined = {a.uid for a in region.args}
            for o in region.ops:
                if o is op:
                    return v.uid in defined
                defined.update(r.uid for r in o.results)
                for r in o.regions:
                    res = find(r)
                    if res is not None:
                        return res
            return None

        return bool(find(self.k.body))

    def _blocking(self, m: int, n: int) -> tuple[int, int, int]:
        """(vector width, vectors per micro-tile row NR, micro-tile rows MR) for an [m, n] tile."""
        w = self.lanes
        while w > 1 and n % w:
            w //= 2
        nvec = n // w
        best = (0, 0, 0)
        for nr in (d for d in range(1, min(nvec, 4) + 1) if nvec % d == 0):
            # Accumulators + one row of b + the broadcast a must fit the vector registers.
            mr = max(1, min(m, (self.t.vector_registers - nr - 2) // nr, 8))
            best = max(best, (mr * nr, nr, mr))
        return w, best[1], best[2]

    def micro_kernel(self, a: View, bv: View, c: Buf) -> None:
        b = self.b
        (m, kk), (_, n) = a.shape, bv.shape
        acc_dt = c.dtype
        celem = cv.compute_scalar(acc_dt)
        w, nr, mr = self._blocking(m, n)
        assert a.buf is not None and bv.buf is not None
        sa0, sa1 = a.strides
        sb0 = bv.strides[0]
        ldc = n

        def conv(x: TValue, src: DType) -> TValue:
            return cv.convert(b, x, src, acc_dt) if cv.compute_scalar(src) != celem else x

        def tile_rows(i0: TValue, rows: int, j0: TValue, nv: int) -> None:
            cptrs = [[b.ptradd(c.ptr, b.op("add", b.op("mul", b.op("add", i0, b.index(r)), b.index(ldc)),
                                           b.op("add", j0, b.index(v * w)))) for v in range(nv)]
                     for r in range(rows)]
            init = [b.load(p, vec(celem, w)) for row in cptrs for p in row]
            with b.for_(b.index(0), b.index(kk), b.index(1), init, iv_hint="k") as lp:
                k = lp.iv
                brow = b.op("add", b.op("mul", k, b.index(sb0)) if sb0 != 1 else k, j0)
                bvecs = []
                for v in range(nv):
                    p = b.ptradd(bv.buf.ptr, b.op("add", brow, b.index(v * w)))
                    raw = b.load(p, vec(cv.buffer_scalar(bv.dtype), w)) if bv.strides[1] == 1 else \
                        b.splat(b.load(p, cv.buffer_scalar(bv.dtype)), w)
                    bvecs.append(conv(raw, bv.dtype))
                out = []
                for r in range(rows):
                    ai = b.op("add", b.op("mul", b.op("add", i0, b.index(r)), b.index(sa0)),
                              b.op("mul", k, b.index(sa1)) if sa1 != 1 else k)
                    aval = conv(b.load(b.ptradd(a.buf.ptr, ai), cv.buffer_scalar(a.dtype)), a.dtype)
                    asplat = b.splat(aval, w)
                    for v in range(nv):
                        acc = lp.args[r * nv + v]
                        if celem.is_float:
                            out.append(b.op("fma", asplat, bvecs[v], acc))
                        else:
                            out.append(b.op("add", acc, b.op("mul", asplat, bvecs[v])))
                b.yield_(out, lp)
            for p, val in zip((p for row in cptrs for p in row), lp.results):
                b.store(p, val)

        def rows_block(i0: TValue, rows: int) -> None:
            nvec = n // w
            full = nvec // nr * nr
            if full:
                with b.for_(b.index(0), b.index(full * w), b.index(nr * w), iv_hint="j0") as jl:
                    tile_rows(i0, rows, jl.iv, nr)
            if nvec - full:
                tile_rows(i0, rows, b.index(full * w), nvec - full)

        main = m // mr * mr
        if main:
            with b.for_(b.index(0), b.index(main), b.index(mr), iv_hint="i0") as il:
                rows_block(il.iv, mr)
        if m - main:
            rows_block(b.index(main), m - main)

    # -- for -----------------------------------------------------------------------------------

    def for_loop(self, op: Op) -> None:
        b = self.b
        start, stop, step = (self.scalars[v.uid] for v in op.operands[:3])
        inits = op.operands[3:]
        body = op.regions[0]
        iv, *carried = body.args
        slots: dict[int, Buf] = {}
        scalar_inits = []
        for i, (arg, init) in enumerate(zip(carried, inits)):
            if isinstance(arg.ty, BlockType):
                slot = self.alloc(arg.ty.shape, arg.ty.dtype, arg.hint or "carry")
                self.copy(_broadcast_view(self.view_of(init), arg.ty.shape), slot)
                slots[i] = slot
            else:
                scalar_inits.append(self.scalars[init.uid])
        with b.for_(start, stop, step, scalar_inits, iv_hint=iv.hint or "i") as lp:
            self.scalars[iv.uid] = lp.iv
            sargs = iter(lp.args)
            for i, arg in enumerate(carried):
                if i in slots:
                    self.views[arg.uid] = self.buf_view(slots[i])
                else:
                    self.scalars[arg.uid] = next(sargs)
            self.region(body.ops)
            yielded = body.ops[-1].operands
            self._yield_blocks(slots, yielded)
            b.yield_([self.scalars[v.uid] for i, v in enumerate(yielded) if i not in slots], lp)
        sres = iter(lp.results)
        for i, r in enumerate(op.results):
            if i in slots:
                self.views[r.uid] = self.buf_view(slots[i])
            else:
                self.scalars[r.uid] = next(sres)

    def _yield_blocks(self, slots: dict[int, Buf], yielded: Sequence[tile.Value]) -> None:
        slot_ptrs = {id(s.ptr) for s in slots.values()}
        staged: dict[int, View] = {}
        for i, slot in slots.items():
            v = self.view_of(yielded[i])
            if v.buf is not None and v.buf.ptr is slot.ptr and v.contiguous:
                continue  # already in place (e.g. a dot accumulated into the slot)
            if v.buf is not None and id(v.buf.ptr) in slot_ptrs:
                # Another slot is read: stage it so the copies do not overwrite each other.
                tmp = self.alloc(slot.shape, slot.dtype, "stage")
                self.copy(v, tmp)
                v = self.buf_view(tmp)
            staged[i] = v
        for i, v in staged.items():
            self.copy(_broadcast_view(v, slots[i].shape), slots[i])


def _lanes(v: TValue) -> int:
    return v.ty.lanes if isinstance(v.ty, Vector) else 1


def _broadcast_view(v: View, shape: Sequence[int]) -> View:
    """v read as a block of `shape` (NumPy broadcasting: size-1 or missing leading axes repeat)."""
    shape = tuple(shape)
    if v.scalar is not None:
        return View(shape, v.dtype, scalar=v.scalar)
    if v.shape == shape:
        return v
    pad = len(shape) - len(v.shape)
    if pad < 0:
        raise TargetIRError(f"cannot broadcast a block of shape {list(v.shape)} to {list(shape)}")
    src_shape = (1,) * pad + v.shape
    src_strides = (0,) * pad + v.strides
    strides = []
    for s, t, st in zip(src_shape, shape, src_strides):
        if s == t:
            strides.append(st)
        elif s == 1:
            strides.append(0)
        else:
            raise TargetIRError(f"cannot broadcast a block of shape {list(v.shape)} to {list(shape)}")
    return View(shape, v.dtype, v.buf, tuple(strides))


def lower_kernel(k: Kernel, target: TargetInfo) -> Function:
    """Lower one verified tile kernel to a Target IR function (see the module docstring)."""
    verify_kernel(k)
    if target.program_model == "cta":
        from tessera.ir.tile_to_target_gpu import lower_kernel_gpu

        return lower_kernel_gpu(k, target)
    if target.program_model != "loop":
        raise TargetIRError(f"lower_kernel: unknown program model '{target.program_model}'")
    return _Lowering(k, target).run()


def lower_kernels(kernels: Sequence[Kernel], target: TargetInfo) -> Module:
    return Module([lower_kernel(k, target) for k in kernels])


__all__ = ["AbiParam", "abi", "lower_kernel", "lower_kernels", "plan_region"]


def lower_scalar_op(lw: object, op: Op, lowering: str) -> None:
    """A scalar tile op (ids, extents, constants, scalar arithmetic): the same on every target.
    `lw` is a lowering with `b` (the Target IR builder), `scalars`, `pids`, `grid`, `tensors`, `ew`."""
    b = lw.b  # type: ignore[attr-defined]
    scalars = lw.scalars  # type: ignore[attr-defined]
    name = op.name
    r = op.result
    if name == "program_id":
        scalars[r.uid] = lw.pids[op.attr("axis")]  # type: ignore[attr-defined]
    elif name == "num_programs":
        scalars[r.uid] = lw.grid[op.attr("axis")]  # type: ignore[attr-defined]
    elif name == "dim":
        scalars[r.uid] = lw.tensors[op.operands[0].uid].extents[op.attr("axis")]  # type: ignore[attr-defined]
    elif name == "const":
        dt = op.attr("dtype")
        assert isinstance(dt, DType)
        scalars[r.uid] = b.const(cv.compute_constant(float(op.attr("value")), dt), cv.compute_scalar(dt))  # type: ignore[arg-type]
    elif name in _FUSIBLE_ELEMENTWISE:
        scalars[r.uid] = lw.ew(op, [scalars[v.uid] for v in op.operands])  # type: ignore[attr-defined]
    else:
        raise TargetIRError(f"lowering: scalar tile op '{name}' is not supported{lowering}")
