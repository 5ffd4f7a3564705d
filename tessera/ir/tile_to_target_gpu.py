"""Tile IR -> Target IR for GPUs (TargetInfo.program_model == "cta"): one program per CTA.

The entry takes the same tensor arguments as the CPU entry, without the program range:

    func @k(<per tensor: %t: ptr<global, T>, %t.n0.. (extents), %t.s0.. (strides)>, %grid0..) threads=T

The runtime launches one CTA per program (a 1-D grid of grid0 * grid1 * ... CTAs; `program_id`
is decoded from the CTA index, last grid axis fastest, as on the CPU) with T = warp_size *
schedule.warps threads (TargetInfo.warp_size: 32, or 64 for an AMD CDNA wavefront). Every scalar
of the tile program is computed by every thread (they agree). Blocks are held in three ways:

- in registers, spread over the threads by a blocked layout (tessera/ir/gpu_layout.py): each thread
  holds a few slots, each a vector of `vec` contiguous elements of one row. Elementwise ops run per
  thread on its slots; global loads and stores move a slot as one vector access (16 bytes of the
  kernel's narrowest element) when it is in bounds, contiguous and aligned, else lane by lane under
  the bounds mask (a per-slot `if`; out-of-bounds lanes read `other`, are never written);
- as constants (`full`, a broadcast scalar, `iota`): produced in whatever layout a user needs;
- in shared memory, row-major, read through strides (0 for broadcast axes, permuted for a
  transpose). A register block goes there (between two barriers) when a user needs elements another
  thread holds: a `dot` operand, a transpose, a reshape that changes the rows, a broadcast the
  layouts do not line up for, `item`, a reduction along another axis than the last.

Reductions (tessera/ir/gpu_reduce.py) along the last axis (sum/mean/prod/max/min) combine a
thread's slots, then the threads of a row with butterfly warp shuffles (`shuffle_xor`) and, for rows
spread over several warps, through shared memory; every thread of the row gets the result, in the
row layout, so the elementwise ops after a softmax max or a layernorm mean read it from registers.
argmax/argmin and reductions along other axes loop over the reduced axis in shared memory.

`dot` stages both operands in shared memory and each thread accumulates its slots of the output
with FMAs over k (the accumulator stays in registers, loop-carried through the k loop); a k loop of
bf16/f16 loads feeding `dot` runs on tensor cores instead (tessera/ir/gpu_pipeline.py).

`for` becomes a Target `for`; carried blocks are carried as the registers of their slots. Shared
memory is allocated statically per kernel (at most 48 KiB). Element semantics (casts, narrow
floats, NaN rules, integer division) are those of the CPU lowering: tessera/ir/target/elementwise.py,
convert.py and reduction.py are shared, and the math functions the target lacks are expanded by
tessera/codegen/mathlib.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.codegen.mathlib import MathLib
from tessera.dtypes import BOOL, INT64, DType
from tessera.ir import (
    gpu_dot,
    gpu_layout,
    gpu_memory,
    gpu_mfma,
    gpu_moments,
    gpu_pipeline,
    gpu_reduce,
    gpu_row_divide,
)
from tessera.ir.gpu_layout import MAX_STAGED_BYTES, VECTOR_BYTES, GpuUnsupported, Layout, natural
from tessera.ir.target import convert as cv
from tessera.ir.target.builder import Builder
from tessera.ir.target.elementwise import Elementwise
from tessera.ir.target.info import TargetInfo
from tessera.ir.target.ops import (
    I64,
    TARGET_OPS,
    Function,
    Op,
    Pointer,
    Scalar,
    TargetIRError,
    Vector,
    vec,
)
from tessera.ir.target.ops import Value as TValue
from tessera.ir.tile import ops as tile
from tessera.ir.tile.ops import BlockType, Kernel, Region, ScalarType, TensorRefType
from tessera.ir.tile.verify import verify_kernel
from tessera.ir.tile_to_target import AbiParam, TensorArg, _tensor_name, abi, lower_scalar_op

MAX_SHARED_BYTES = 48 * 1024  # static shared memory of one CTA
MAX_THREADS = 1024
MAX_SLOT_ELEMENTS = 512  # elements of one block per thread before registers surely spill


class GpuScheduleLimit(GpuUnsupported):
    """A kernel whose schedule the GPU lowering cannot map (shared memory, elements per thread, threads
    per CTA): another schedule compiles it, so a kernel call reports it as an E-SCHEDULE error."""

_ELEMENTWISE = frozenset(n for n, d in tile.TILE_OPS.items() if d.category == "elementwise")
_LAST_AXIS_KINDS = ("sum", "mean", "prod", "max", "min")


def gpu_abi(k: Kernel) -> list[AbiParam]:
    """The kernel entry's parameters, in order: the CPU ABI without the program range."""
    return [p for p in abi(k) if p.kind not in ("begin", "end")]


# ---------------------------------------------------------------- where a block lives


@dataclass(eq=False)
class Regs:
    """A block in the registers of the threads: slot (i, j) -> compute lanes (`layout.vec` of them)."""

    layout: Layout
    shape: tuple[int, ...]
    dtype: DType
    chunks: dict[tuple[int, int], TValue]


@dataclass(eq=False)
class Splat:
    """A block of one scalar value."""

    shape: tuple[int, ...]
    dtype: DType
    value: TValue


@dataclass(eq=False)
class Iota:
    """A block whose elements are their index along `axis`."""

    shape: tuple[int, ...]
    axis: int
    dtype: DType = INT64


@dataclass(eq=False)
class Shared:
    """A block in shared memory, element (i0, ..., ik) at ptr[sum(i * stride)], in the dtype's buffer
    type, or (`stored`) in its storage type, decoded where it is read."""

    shape: tuple[int, ...]
    dtype: DType
    ptr: TValue
    strides: tuple[int, ...]
    stored: bool = False


Block = Regs | Splat | Iota | Shared


def _loop_only_loads(body: Region) -> set[int]:
    """The blocks loaded at the top level of a kernel that only elementwise ops inside loops read (a
    norm's weights, loaded once before a loop over rows: kernels with Schedule.blocks_per_program > 1,
    the ones this was measured on). Held in registers across the loop they would cost the registers
    of their widened values for its whole length - ptxas hoists their decoding out of the loop -, so
    the GPU lowering keeps them in shared memory, as stored in their tensor, and each use reads them
    from there."""
    top = {op.result.uid for op in body.ops if op.name == "load"}
    inner: set[int] = set()
    bad: set[int] = set()

    def walk(ops: Sequence[Op], depth: int) -> None:
        for op in ops:
            for v in op.operands:
                if v.uid in top:
                    (inner if depth and op.name in _ELEMENTWISE else bad).add(v.uid)
            for r in op.regions:
                walk(r.ops, depth + 1)

    walk(body.ops, 0)
    return inner - bad


def _row_major(shape: Sequence[int]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return max(1, n)


def _broadcast_strides(shape: Sequence[int], strides: Sequence[int], to: Sequence[int]) -> tuple[int, ...]:
    """Strides that read a block of `shape` as one of shape `to` (NumPy broadcasting)."""
    pad = len(to) - len(shape)
    if pad < 0:
        raise TargetIRError(f"cannot broadcast a block of shape {list(shape)} to {list(to)}")
    out = []
    for s, t, st in zip((1,) * pad + tuple(shape), to, (0,) * pad + tuple(strides)):
        if s == t:
            out.append(st)
        elif s == 1:
            out.append(0)
        else:
            raise TargetIRError(f"cannot broadcast a block of shape {list(shape)} to {list(to)}")
    return tuple(out)


@dataclass
class _Coords:
    row: TValue  # i64 row index of the slot (0 where the slot is not part of the block)
    col: TValue  # i64 first column of the slot (likewise)
    valid: TValue | None  # i1: the slot is part of the block (None: every thread's is)


# ---------------------------------------------------------------- the lowering


class _GpuLowering:
    def __init__(self, k: Kernel, target: TargetInfo) -> None:
        self.k = k
        self.t = target
        warps = k.schedule.warps
        self.warp = target.warp_size  # 32, or an AMD wavefront of 64
        threads = warps * self.warp
        if warps < 1 or threads > MAX_THREADS:
            raise GpuScheduleLimit(f"kernel {k.name}: {warps} warps per program; the GPU lowering takes 1 to "
                                   f"{MAX_THREADS // self.warp} ({MAX_THREADS} threads)")
        self.threads = threads
        narrowest = min((cv.storage_scalar(p.ty.dtype).bits // 8 for p in k.params), default=4)  # type: ignore[union-attr]
        self.vec = max(1, VECTOR_BYTES // max(1, narrowest))
        self.b = Builder()
        self.math = MathLib(self.b, target.expand_math)
        self.ew = Elementwise(self.b, self.math)
        self.scalars: dict[int, TValue] = {}
        self.blocks: dict[int, Block] = {}
        self.tensors: dict[int, TensorArg] = {}
        self.shared_bytes = 0
        self.shared_scopes: list[dict[int, Shared]] = [{}]
        self._coords: dict[tuple[Layout, int, int], _Coords] = {}
        self._outer: dict[tuple[tuple[int, ...], Layout, int], list[TValue]] = {}
        self._thread: dict[int, tuple[TValue, TValue]] = {}
        self.loop_only = _loop_only_loads(k.body) if k.schedule.blocks_per_program > 1 else set()
        self.staged_bytes = 0

    # -- entry ---------------------------------------------------------------------------------

    def run(self) -> Function:
        k, b = self.k, self.b
        params: list[TValue] = []
        for i, p in enumerate(k.params):
            assert isinstance(p.ty, TensorRefType)
            name = _tensor_name(k, i)
            ptr = TValue(Pointer("global", cv.storage_scalar(p.ty.dtype)), name)
            ext = [TValue(I64, f"{name}.n{d}") for d in range(p.ty.rank)]
            st = [TValue(I64, f"{name}.s{d}") for d in range(p.ty.rank)]
            params += [ptr, *ext, *st]
            self.tensors[p.uid] = TensorArg(ptr, ext, st, p.ty.dtype)
        self.grid = [TValue(I64, f"grid{a}") for a in range(len(k.grid))]
        params += self.grid
        doc = (f"one CTA of {self.threads} threads per program of kernel {k.name}, "
               f"grid {', '.join(map(str, k.grid))}")
        with b.function(k.name, params, doc) as fn:
            self.tid = self._hoist("thread_id", [I64], axis=0)
            self.pids = self._program_ids(self._hoist("program_id", [I64], axis=0))
            self.region(k.body.ops)
        fn.threads = self.threads
        fn.min_programs = k.schedule.resident_threads // self.threads
        limit = max(MAX_SHARED_BYTES, self.t.max_shared_bytes)  # beyond 48 KiB: dynamic shared memory
        if self.shared_bytes > limit:
            raise GpuScheduleLimit(
                f"kernel {k.name}: its blocks need {self.shared_bytes} bytes of shared memory per program, more "
                f"than the {limit} the {self.t.name} target allows; use smaller blocks")
        return fn

    def _hoist(self, name: str, result_types: list[Scalar | Vector | Pointer] | None = None, *operands: TValue,
               **attrs: object) -> TValue:
        """An op placed at the function entry (it depends only on the thread and program ids), so any
        region may use it."""
        d = TARGET_OPS[name]
        types = result_types if result_types is not None else d.rule([v.ty for v in operands], attrs)  # type: ignore[misc, arg-type]
        op = Op(name, tuple(operands), tuple(attrs.items()), tuple(TValue(t) for t in types))  # type: ignore[arg-type]
        self.b.hoisted.append(op)
        return op.result

    def _program_ids(self, lin: TValue) -> list[TValue]:
        pids: list[TValue] = [lin] * len(self.grid)
        stride: TValue | None = None
        for a in reversed(range(len(self.grid))):
            q = lin if stride is None else self._hoist("udiv", None, lin, stride)
            pids[a] = q if a == 0 else self._hoist("urem", None, q, self.grid[a])
            stride = self.grid[a] if stride is None else self._hoist("mul", None, stride, self.grid[a])
        return pids

    # -- thread coordinates (all hoisted to the entry) -------------------------------------------

    def _thread_rc(self, tc: int) -> tuple[TValue, TValue]:
        """(rl, cl) = (tid // tc, tid % tc)."""
        if tc not in self._thread:
            sh = self.b.index(tc.bit_length() - 1)
            mask = self.b.index(tc - 1)
            self._thread[tc] = (self._hoist("lshr", None, self.tid, sh), self._hoist("and", None, self.tid, mask))
        return self._thread[tc]

    def coords(self, lay: Layout, i: int, j: int) -> _Coords:
        key = (lay, i, j)
        c = self._coords.get(key)
        if c is not None:
            return c
        b = self.b
        rl, cl = self._thread_rc(lay.tc)
        row = rl if i == 0 else self._hoist("add", None, rl, b.index(i * lay.tr))
        valid: TValue | None = None
        if not lay.rows_exact:
            valid = self._hoist("cmp", None, row, b.index(lay.rows), pred="ult")
        if lay.replicated:
            col = b.index(0)
        else:
            cc = cl if j == 0 else self._hoist("add", None, cl, b.index(j * lay.tc))
            if not lay.chunks_exact:
                ok = self._hoist("cmp", None, cc, b.index(lay.chunks), pred="ult")
                valid = ok if valid is None else self._hoist("and", None, valid, ok)
            col = cc if lay.vec == 1 else self._hoist("mul", None, cc, b.index(lay.vec))
        if valid is not None:
            # Slots outside the block read (and never write) element 0, so addresses stay in range.
            zero = b.index(0)
            row = self._hoist("select", None, valid, row, zero)
            col = self._hoist("select", None, valid, col, zero)
        c = _Coords(row, col, valid)
        self._coords[key] = c
        return c

    def outer_index(self, shape: tuple[int, ...], lay: Layout, i: int) -> list[TValue]:
        """The indices along every axis but the last of row slot i (row-major unravel)."""
        key = (shape[:-1], lay, i)
        if key in self._outer:
            return self._outer[key]
        b = self.b
        row = self.coords(lay, i, 0).row
        idx: list[TValue] = []
        inner = 1
        outer_axes = list(range(len(shape) - 1))
        for d in reversed(outer_axes):
            if shape[d] == 1:
                idx.append(b.index(0))
                continue
            q = row if inner == 1 else self._hoist("udiv", None, row, b.index(inner))
            last_big = all(shape[e] == 1 for e in range(d))
            idx.append(q if last_big else self._hoist("urem", None, q, b.index(shape[d])))
            inner *= shape[d]
        idx.reverse()
        self._outer[key] = idx
        return idx

    # -- regions -------------------------------------------------------------------------------

    def region(self, ops: Sequence[Op]) -> None:
        fused = gpu_moments.plan(ops)  # a layernorm's mean and variance in one reduction
        for op in ops:
            if op.name == "yield" or gpu_moments.lower(self, op, fused):
                continue
            self.op(op)

    def op(self, op: Op) -> None:
        name = op.name
        if all(isinstance(r.ty, ScalarType) for r in op.results) and op.results and not op.regions \
                and name not in ("item", "for"):
            self.scalar_op(op)
        elif name == "load":
            self.load(op)
        elif name in ("store", "store_masked"):
            self.store(op)
        elif name == "alloc_shared":
            self.alloc_shared_block(op)
        elif name == "cp_async":
            self.copy_to_shared(op)
        elif name == "full":
            dt = op.attr("dtype")
            assert isinstance(dt, DType)
            c = self.b.const(cv.compute_constant(float(op.attr("value")), dt), cv.compute_scalar(dt))  # type: ignore[arg-type]
            self.blocks[op.result.uid] = Splat(self._shape(op.result), dt, c)
        elif name == "iota":
            self.blocks[op.result.uid] = Iota(self._shape(op.result), int(op.attr("axis")))  # type: ignore[arg-type]
        elif name == "broadcast":
            src = op.operands[0]
            if isinstance(src.ty, ScalarType):
                self.blocks[op.result.uid] = Splat(self._shape(op.result), src.ty.dtype, self.scalars[src.uid])
            else:
                self.blocks[op.result.uid] = self.blocks[src.uid]  # read with broadcasting by its users
        elif name == "reshape":
            self.reshape(op)
        elif name == "transpose":
            sm = self.shared_view(op.operands[0])
            perm = [int(p) for p in op.attr("perm")]  # type: ignore[union-attr]
            self.blocks[op.result.uid] = dataclasses.replace(sm, shape=tuple(sm.shape[p] for p in perm),
                                                             strides=tuple(sm.strides[p] for p in perm))
        elif name == "item":
            self.item(op)
        elif name in _ELEMENTWISE:
            self.elementwise(op)
        elif name == "reduce":
            kind = str(op.attr("kind"))
            src_shape = self._shape(op.operands[0])
            if kind in _LAST_AXIS_KINDS and op.attr("axis") == len(src_shape) - 1:
                gpu_reduce.reduce_last(self, op)
            else:
                gpu_reduce.reduce_shared(self, op)
        elif name == "dot":
            self.dot(op)
        elif name == "for":
            self.for_loop(op)
        elif name == "barrier":
            self.b.emit("barrier", [])
        else:
            raise GpuUnsupported(f"tile op '{name}' is not supported by the {self.t.name} GPU lowering yet")

    @staticmethod
    def _shape(v: tile.Value) -> tuple[int, ...]:
        assert isinstance(v.ty, BlockType), v.ty
        return v.ty.shape

    # -- scalars -------------------------------------------------------------------------------

    def scalar_op(self, op: Op) -> None:
        lower_scalar_op(self, op, " by the GPU lowering")

    # -- reading blocks in a layout ------------------------------------------------------------

    def layout_for(self, operands: Sequence[tile.Value], shape: tuple[int, ...]) -> Layout:
        """The layout an op of iteration shape `shape` computes in: that of a register operand of
        the same shape (so no data moves), else the natural one."""
        for v in operands:
            blk = self.blocks.get(v.uid)
            if isinstance(blk, Regs) and blk.shape == shape:
                return blk.layout
        return natural(shape, self.vec, self.threads, self.warp)

    def operand(self, v: tile.Value, lay: Layout, shape: tuple[int, ...], i: int, j: int) -> TValue:
        if isinstance(v.ty, ScalarType):
            return self.b.splat(self.scalars[v.uid], lay.vec)
        return self.fetch(self.blocks[v.uid], lay, shape, i, j)

    def fetch(self, blk: Block, lay: Layout, shape: tuple[int, ...], i: int, j: int) -> TValue:
        """Slot (i, j) of `blk` read as a block of `shape` (broadcasting) in layout `lay`."""
        b = self.b
        if isinstance(blk, Splat):
            return b.splat(blk.value, lay.vec)
        if isinstance(blk, Iota):
            return self._iota(blk, lay, shape, i, j)
        if isinstance(blk, Regs):
            if blk.layout == lay and blk.shape == shape:
                return blk.chunks[(i, j)]
            if len(blk.shape) == len(shape) and blk.shape[:-1] == shape[:-1] and blk.shape[-1] == 1 \
                    and blk.layout.holds_rows_of(lay):
                return b.splat(blk.chunks[(i, 0)], lay.vec)
        sm = self.to_shared(blk)
        c = self.coords(lay, i, j)
        return self.read_shared(sm, shape, self.outer_index(shape, lay, i), c.col, lay.vec)

    def _iota(self, blk: Iota, lay: Layout, shape: tuple[int, ...], i: int, j: int) -> TValue:
        b = self.b
        pad = len(shape) - len(blk.shape)
        if blk.shape[blk.axis] == 1:
            return b.splat(b.index(0), lay.vec)
        axis = blk.axis + pad
        if axis == len(shape) - 1:
            col = self.coords(lay, i, j).col
            return b.op("add", b.splat(col, lay.vec), b.lane_index(lay.vec)) if lay.vec > 1 else col
        return b.splat(self.outer_index(shape, lay, i)[axis], lay.vec)

    def to_regs(self, v: tile.Value) -> Regs:
        """The value of a block as registers of its natural layout (or its own, if it has one)."""
        shape = self._shape(v)
        blk = self.blocks[v.uid]
        if isinstance(blk, Regs) and blk.shape == shape:
            return blk
        lay = natural(shape, self.vec, self.threads, self.warp)
        return Regs(lay, shape, blk.dtype, {(i, j): self.fetch(blk, lay, shape, i, j) for i, j in lay.slots()})

    # -- shared memory -------------------------------------------------------------------------

    def alloc_shared(self, elem: Scalar, count: int) -> TValue:
        # 16-byte aligned pieces of one arena (the emitter lays the arrays out in order).
        self.shared_bytes += -(-count * elem.bits // 8 // 16) * 16
        return self._hoist("shared", None, count=count, elem=elem.kind)

    def to_shared(self, blk: Block) -> Shared:
        """The block in shared memory: written there (once per region) if it lives elsewhere."""
        if isinstance(blk, Shared):
            return blk
        for scope in reversed(self.shared_scopes):
            if id(blk) in scope:
                return scope[id(blk)]
        sm = self._write_shared(blk, self.alloc_shared(cv.buffer_scalar(blk.dtype), _numel(blk.shape)))
        self.shared_scopes[-1][id(blk)] = sm
        return sm

    def _write_shared(self, blk: Block, ptr: TValue) -> Shared:
        """blk written row-major into the shared array at ptr, between two barriers (the first lets
        earlier readers of the array - a previous loop iteration - finish)."""
        lay = blk.layout if isinstance(blk, Regs) else natural(blk.shape, self.vec, self.threads, self.warp)
        self.b.emit("barrier", [])
        self._store_slots(blk, lay, blk.shape, ptr)
        self.b.emit("barrier", [])
        return Shared(blk.shape, blk.dtype, ptr, _row_major(blk.shape))

    def _store_slots(self, blk: Block, lay: Layout, shape: tuple[int, ...], ptr: TValue) -> None:
        """Each thread stores its slots of blk (read as `shape` in `lay`) row-major at ptr."""
        b = self.b
        elem = cv.buffer_scalar(blk.dtype)
        values = {}
        for i, j in lay.slots():
            x = self.fetch(blk, lay, shape, i, j)
            values[(i, j)] = b.cast("zext", x, elem) if blk.dtype == BOOL else x
        self._put_slots(values, lay, shape, ptr)

    def _put_slots(self, values: dict[tuple[int, int], TValue], lay: Layout, shape: tuple[int, ...],
                   ptr: TValue) -> None:
        """Each thread's slot values (of a block of `shape` in `lay`) stored row-major at ptr."""
        b = self.b
        _, cols = gpu_layout.split_shape(shape)
        for (i, j), x in values.items():
            c = self.coords(lay, i, j)
            p = b.ptradd(ptr, b.op("add", b.op("mul", c.row, b.index(cols)), c.col) if cols > 1 else c.row)
            if c.valid is None:
                b.store(p, x)
            else:
                with b.if_(c.valid):
                    b.store(p, x)

    def shared_view(self, v: tile.Value) -> Shared:
        """Block value v in shared memory, with strides for v's own shape."""
        sm = self.to_shared(self.blocks[v.uid])
        shape = self._shape(v)
        if sm.shape == shape:
            return sm
        return dataclasses.replace(sm, shape=shape, strides=_broadcast_strides(sm.shape, sm.strides, shape))

    def read_shared(self, sm: Shared, shape: tuple[int, ...], outer: list[TValue], col: TValue,
                    lanes: int) -> TValue:
        """`lanes` elements of `sm` read as a block of `shape`: row `outer`, columns col... ."""
        b = self.b
        strides = _broadcast_strides(sm.shape, sm.strides, shape) if sm.shape != shape else sm.strides
        elem = cv.storage_scalar(sm.dtype) if sm.stored else cv.buffer_scalar(sm.dtype)
        off: TValue | None = None
        terms = list(zip(strides[:-1], outer)) + ([(strides[-1], col)] if strides else [])
        for st, ix in terms:
            if st == 0:
                continue
            t = ix if st == 1 else b.op("mul", ix, b.index(st))
            off = t if off is None else b.op("add", off, t)
        base = b.ptradd(sm.ptr, off if off is not None else b.index(0))
        inner = strides[-1] if strides else 0
        piece = min(lanes, max(1, VECTOR_BYTES // (elem.bits // 8)))
        aligned = all(st % piece == 0 for st in strides[:-1])
        if lanes == 1 or (inner == 1 and aligned):
            x = b.load(base, vec(elem, lanes))
        elif inner == 0:
            x = b.splat(b.load(base, elem), lanes)
        else:
            x = b.const(0, Vector(lanes, elem))
            for lane in range(lanes):
                p = base if lane == 0 else b.ptradd(base, b.index(lane * inner))
                x = b.op("insert", x, b.load(p, elem), index=lane)
        if sm.stored:
            return cv.decode(b, x, sm.dtype)
        return b.cmp("ne", x, b.like(0, x)) if sm.dtype == BOOL else x

    # -- global memory -------------------------------------------------------------------------

    def _uniform_fast(self, t: TensorArg, starts: list[TValue], lanes: int) -> TValue | None:
        """i1: vector accesses of this tensor at these starts are contiguous and aligned (None when
        slots are one element)."""
        if lanes == 1 or not starts:
            return None
        b = self.b
        elem = cv.storage_scalar(t.dtype)
        eb = elem.bits // 8
        align_elems = max(1, min(VECTOR_BYTES, lanes * eb) // eb)
        cond = b.cmp("eq", t.strides[-1], b.index(1))
        mask = b.index(align_elems - 1)
        zero = b.index(0)
        for v in [*t.strides[:-1], starts[-1]]:
            cond = b.op("and", cond, b.cmp("eq", b.op("and", v, mask), zero))
        addr = b.op("ptrtoint", t.ptr)
        return b.op("and", cond, b.cmp("eq", b.op("and", addr, b.index(align_elems * eb - 1)), zero))

    def _row_access(self, t: TensorArg, starts: list[TValue], outer: list[TValue]) -> tuple[TValue, TValue | None]:
        """(pointer to element (starts + outer, 0 on the last axis), outer indices in bounds)."""
        b = self.b
        ok: TValue | None = None
        off: TValue | None = None
        for d in range(len(starts) - 1):
            g = b.op("add", starts[d], outer[d])
            c = b.cmp("ult", g, t.extents[d])
            ok = c if ok is None else b.op("and", ok, c)
            term = b.op("mul", g, t.strides[d])
            off = term if off is None else b.op("add", off, term)
        return (t.ptr if off is None else b.ptradd(t.ptr, off)), ok

    def _and(self, a: TValue | None, c: TValue | None) -> TValue | None:
        if a is None:
            return c
        if c is None:
            return a
        return self.b.op("and", a, c)

    def load(self, op: Op) -> None:
        b = self.b
        t = self.tensors[op.operands[0].uid]
        starts = [self.scalars[v.uid] for v in op.operands[1:]]
        shape = self._shape(op.result)
        lay = natural(shape, self.vec, self.threads, self.warp)
        self._check_slots(lay)
        lanes = lay.vec
        elem = cv.storage_scalar(t.dtype)
        other_s = cv.storage_constant(float(op.attr("other")), t.dtype)  # type: ignore[arg-type]
        fast_all = self._uniform_fast(t, starts, lanes)
        rows: dict[int, tuple[TValue, TValue | None]] = {}

        def slot(i: int, j: int) -> TValue:
            c = self.coords(lay, i, j)
            if not starts:  # a rank-0 tensor
                return b.load(t.ptr, elem, c.valid, b.const(other_s, elem)) if c.valid is not None \
                    else b.load(t.ptr, elem)
            if i not in rows:
                rows[i] = self._row_access(t, starts, self.outer_index(shape, lay, i))
            row_ptr, row_ok = rows[i]
            ok = self._and(row_ok, c.valid)
            g = b.op("add", starts[-1], c.col)
            ext = t.extents[-1]
            if lanes == 1:
                mask = self._and(ok, b.cmp("ult", g, ext))
                return b.load(b.ptradd(row_ptr, b.op("mul", g, t.strides[-1])), elem, mask, b.const(other_s, elem))
            ty = Vector(lanes, elem)
            fast = self._and(self._and(fast_all, ok), b.op("and", b.cmp("ult", g, ext),
                                                           b.cmp("ult", b.op("add", g, b.index(lanes - 1)), ext)))
            assert fast is not None
            with b.if_(fast, [ty]) as br:
                b.yield_([b.load(b.ptradd(row_ptr, g), ty)])
                b.else_(br)
                cols = b.op("add", b.splat(g, lanes), b.lane_index(lanes))
                mask = b.cmp("ult", cols, b.splat(ext, lanes))
                if ok is not None:
                    mask = b.op("and", mask, b.splat(ok, lanes))
                # Offsets from the row, not from the slot: lane * stride would be the same for every
                # slot, and the compiler keeps those lane offsets live through the whole block.
                offs = b.op("mul", cols, b.splat(t.strides[-1], lanes))
                b.yield_([b.gather(row_ptr, offs, mask, b.const(other_s, ty))])
            return br.results[0]

        # All slots' vector loads back to back when the whole block is inside (gpu_memory).
        raws = gpu_memory.load_slots(self, t, starts, shape, lay, fast_all, slot)
        size = _numel(shape) * elem.bits // 8
        if op.result.uid in self.loop_only and self.staged_bytes + size <= MAX_STAGED_BYTES:
            self.staged_bytes += size
            self.blocks[op.result.uid] = self._stage(raws, lay, shape, t.dtype)
            return
        chunks = {s: cv.decode(b, raw, t.dtype) for s, raw in raws.items()}
        self.blocks[op.result.uid] = Regs(lay, shape, t.dtype, chunks)

    def _stage(self, raws: dict[tuple[int, int], TValue], lay: Layout, shape: tuple[int, ...],
               dtype: DType) -> Shared:
        """A loaded block (its slots' storage lanes) kept in shared memory, as stored in its tensor:
        written once, here, and read by its users inside loops (see _loop_only_loads)."""
        ptr = self.alloc_shared(cv.storage_scalar(dtype), _numel(shape))  # fresh: no earlier reader to wait for
        self._put_slots(raws, lay, shape, ptr)
        self.b.emit("barrier", [])
        return Shared(shape, dtype, ptr, _row_major(shape), stored=True)

    def store(self, op: Op) -> None:
        b = self.b
        t = self.tensors[op.operands[0].uid]
        masked = op.name == "store_masked"
        value = op.operands[-2] if masked else op.operands[-1]
        starts = [self.scalars[v.uid] for v in op.operands[1:-2 if masked else -1]]
        shape = self._shape(value)
        lay = self.layout_for([value], shape)
        lanes = lay.vec
        fast_all = self._uniform_fast(t, starts, lanes)
        rows: dict[int, tuple[TValue, TValue | None]] = {}
        raws = {s: cv.encode(b, self.operand(value, lay, shape, *s), t.dtype) for s in lay.slots()}
        keeps = {s: self.operand(op.operands[-1], lay, shape, *s) if masked else None for s in lay.slots()}

        def slot(i: int, j: int) -> None:
            c = self.coords(lay, i, j)
            raw, keep = raws[(i, j)], keeps[(i, j)]
            if not starts:
                mask = self._and(c.valid, keep)
                if mask is None:
                    b.store(t.ptr, raw)
                else:
                    b.store(t.ptr, raw, mask)
                return
            if i not in rows:
                rows[i] = self._row_access(t, starts, self.outer_index(shape, lay, i))
            row_ptr, row_ok = rows[i]
            ok = self._and(row_ok, c.valid)
            g = b.op("add", starts[-1], c.col)
            ext = t.extents[-1]
            if lanes == 1:
                mask = self._and(self._and(ok, b.cmp("ult", g, ext)), keep)
                assert mask is not None
                b.store(b.ptradd(row_ptr, b.op("mul", g, t.strides[-1])), raw, mask)
                return
            fast = self._and(self._and(fast_all, ok), b.op("and", b.cmp("ult", g, ext),
                                                           b.cmp("ult", b.op("add", g, b.index(lanes - 1)), ext)))
            assert fast is not None
            with b.if_(fast) as br:
                if keep is None:
                    b.store(b.ptradd(row_ptr, g), raw)
                else:
                    b.store(b.ptradd(row_ptr, g), raw, keep)
                b.yield_([])
                b.else_(br)
                cols = b.op("add", b.splat(g, lanes), b.lane_index(lanes))
                mask = b.cmp("ult", cols, b.splat(ext, lanes))
                if ok is not None:
                    mask = b.op("and", mask, b.splat(ok, lanes))
                if keep is not None:
                    mask = b.op("and", mask, keep)
                # Offsets from the row (as in load): no lane offsets shared by all slots.
                b.scatter(row_ptr, b.op("mul", cols, b.splat(t.strides[-1], lanes)), raw, mask)
                b.yield_([])

        # All slots' vector stores in one branch when the whole block is inside (gpu_memory).
        gpu_memory.store_slots(self, t, starts, shape, lay, fast_all, raws, keeps, slot)

    def alloc_shared_block(self, op: Op) -> None:
        """A shared block, zero until written (its swizzle is a layout hint; this lowering keeps
        shared blocks row-major)."""
        b = self.b
        shape = self._shape(op.result)
        dt: DType = op.result.ty.dtype  # type: ignore[union-attr]
        zero = Splat(shape, dt, b.const(cv.compute_constant(0.0, dt), cv.compute_scalar(dt)))
        self.blocks[op.result.uid] = self._write_shared(zero, self.alloc_shared(cv.buffer_scalar(dt), _numel(shape)))

    def copy_to_shared(self, op: Op) -> None:
        """cp_async(dst, src): src's values written into dst's shared array (plain stores; the
        program's next barrier makes them visible to the other threads, as for cp.async)."""
        dst = self.blocks[op.operands[0].uid]
        if not isinstance(dst, Shared) or dst.strides != _row_major(dst.shape):
            raise GpuUnsupported("cp_async into a shared block that is not a whole alloc_shared block")
        shape = self._shape(op.operands[1])
        src = self.blocks[op.operands[1].uid]
        lay = (src.layout if isinstance(src, Regs) and src.shape == shape
               else natural(shape, self.vec, self.threads, self.warp))
        self._store_slots(src, lay, shape, dst.ptr)
        self.blocks[op.result.uid] = Shared(dst.shape, dst.dtype, dst.ptr, dst.strides)

    # -- block ops -----------------------------------------------------------------------------

    def elementwise(self, op: Op) -> None:
        shape = self._shape(op.result)
        lay = self.layout_for(op.operands, shape)
        self._check_slots(lay)
        dens = gpu_row_divide.row_divisor(self, op, lay, shape)
        if dens is not None:  # one reciprocal per row, two FMAs per element
            nums = {(i, j): self.operand(op.operands[0], lay, shape, i, j) for i, j in lay.slots()}
            chunks = gpu_row_divide.divide(self, lay, nums, dens)
            self.blocks[op.result.uid] = Regs(lay, shape, op.result.ty.dtype, chunks)  # type: ignore[union-attr]
            return
        chunks = {}
        for i, j in lay.slots():
            args = [self.operand(v, lay, shape, i, j) for v in op.operands]
            chunks[(i, j)] = self.ew(op, args)
        self.blocks[op.result.uid] = Regs(lay, shape, op.result.ty.dtype, chunks)  # type: ignore[union-attr]

    def _check_slots(self, lay: Layout) -> None:
        if lay.rpt * lay.cpt * lay.vec > MAX_SLOT_ELEMENTS:
            raise GpuScheduleLimit(
                f"kernel {self.k.name}: a block of {lay.rows}x{lay.cols} puts {lay.rpt * lay.cpt * lay.vec} "
                f"elements in each of {self.threads} threads (at most {MAX_SLOT_ELEMENTS}); use smaller "
                "blocks or more warps")

    def reshape(self, op: Op) -> None:
        src = op.operands[0]
        shape = self._shape(op.result)
        blk = self.blocks[src.uid]
        if isinstance(blk, Splat):
            self.blocks[op.result.uid] = Splat(shape, blk.dtype, blk.value)
            return
        if isinstance(blk, Shared) and blk.shape == self._shape(src) and blk.strides == _row_major(blk.shape):
            self.blocks[op.result.uid] = dataclasses.replace(blk, shape=shape, strides=_row_major(shape))
            return
        regs = self.to_regs(src)
        if gpu_layout.split_shape(shape) == gpu_layout.split_shape(regs.shape):
            # The same rows of the same width: every element stays in its thread.
            self.blocks[op.result.uid] = Regs(regs.layout, shape, regs.dtype, regs.chunks)
            return
        sm = self.to_shared(regs)
        self.blocks[op.result.uid] = Shared(shape, sm.dtype, sm.ptr, _row_major(shape))

    def item(self, op: Op) -> None:
        blk = self.blocks[op.operands[0].uid]
        if isinstance(blk, Splat):
            self.scalars[op.result.uid] = blk.value
            return
        sm = self.shared_view(op.operands[0])
        zero = self.b.index(0)
        self.scalars[op.result.uid] = self.read_shared(sm, sm.shape, [zero] * max(0, len(sm.shape) - 1), zero, 1)

    # -- reductions: tessera/ir/gpu_reduce.py ---------------------------------------------------

    # -- dot -----------------------------------------------------------------------------------

    def dot(self, op: Op) -> None:
        """acc + a @ b: both operands in shared memory, each thread's output slots accumulated with
        FMAs over k in registers."""
        if gpu_dot.lower_dot(self, op):  # bf16/f16 operands, f32 accumulator: the matrix unit
            return
        b = self.b
        a_v, b_v, acc_v = op.operands
        a_sm, b_sm = self.shared_view(a_v), self.shared_view(b_v)
        (m, kk), (_, n) = a_sm.shape, b_sm.shape
        out_shape = (m, n)
        acc_dt: DType = op.result.ty.dtype  # type: ignore[union-attr]
        lay = self.layout_for([acc_v], out_shape)
        self._check_slots(lay)
        lanes = lay.vec
        slots = lay.slots()
        celem = cv.compute_scalar(acc_dt)
        inits = [self.operand(acc_v, lay, out_shape, i, j) for i, j in slots]
        sa0, sa1 = a_sm.strides
        zero = b.index(0)

        def conv(x: TValue, src: DType) -> TValue:
            return cv.convert(b, x, src, acc_dt) if cv.compute_scalar(src) != celem else x

        with b.for_(zero, b.index(kk), b.index(1), inits, iv_hint="k") as lp:
            k = lp.iv
            a_col = k if sa1 == 1 else b.op("mul", k, b.index(sa1))
            arow: dict[int, TValue] = {}
            for i in range(lay.rpt):
                row = self.coords(lay, i, 0).row
                off = b.op("add", b.op("mul", row, b.index(sa0)) if sa0 != 1 else row, a_col) if sa0 else a_col
                x = b.load(b.ptradd(a_sm.ptr, off), cv.buffer_scalar(a_sm.dtype))
                if a_sm.dtype == BOOL:
                    x = b.cmp("ne", x, b.like(0, x))
                arow[i] = b.splat(conv(x, a_sm.dtype), lanes)
            bcol: dict[int, TValue] = {}
            for j in range(lay.cpt):
                col = self.coords(lay, 0, j).col
                x = self.read_shared(b_sm, b_sm.shape, [k], col, lanes)
                bcol[j] = conv(x, b_sm.dtype)
            out = []
            for s, (i, j) in enumerate(slots):
                acc = lp.args[s]
                if celem.is_float:
                    out.append(b.op("fma", arow[i], bcol[j], acc))
                else:
                    out.append(b.op("add", acc, b.op("mul", arow[i], bcol[j])))
            b.yield_(out, lp)
        res = list(lp.results)
        if acc_dt.is_float and acc_dt.name in cv.NARROW_FLOATS:
            res = [cv.round_to(b, x, acc_dt) for x in res]
        self.blocks[op.result.uid] = Regs(lay, out_shape, acc_dt, dict(zip(slots, res)))

    # -- for -----------------------------------------------------------------------------------

    def for_loop(self, op: Op) -> None:
        # A k loop feeding dot: the target's matrix unit (AMD MFMA fragments, else NVIDIA tensor cores).
        if gpu_mfma.lower_matmul_loop(self, op) or gpu_pipeline.lower_matmul_loop(self, op):
            return
        b = self.b
        start, stop, step = (self.scalars[v.uid] for v in op.operands[:3])
        inits = op.operands[3:]
        body: Region = op.regions[0]
        iv, *carried = body.args
        layouts: dict[int, Layout] = {}
        flat: list[TValue] = []
        for c, (arg, init) in enumerate(zip(carried, inits)):
            if isinstance(arg.ty, BlockType):
                lay = self.layout_for([init], arg.ty.shape)
                self._check_slots(lay)
                layouts[c] = lay
                flat += [self.operand(init, lay, arg.ty.shape, i, j) for i, j in lay.slots()]
            else:
                flat.append(self.scalars[init.uid])
        with b.for_(start, stop, step, flat, iv_hint=iv.hint or "i") as lp:
            self.scalars[iv.uid] = lp.iv
            self._bind(carried, layouts, list(lp.args))
            self.shared_scopes.append({})
            self.region(body.ops)
            yielded = body.ops[-1].operands
            out: list[TValue] = []
            for c, v in enumerate(yielded):
                if c in layouts:
                    shape = carried[c].ty.shape  # type: ignore[union-attr]
                    out += [self.operand(v, layouts[c], shape, i, j) for i, j in layouts[c].slots()]
                else:
                    out.append(self.scalars[v.uid])
            self.shared_scopes.pop()
            b.yield_(out, lp)
        self._bind(list(op.results), layouts, list(lp.results))

    def _bind(self, values: Sequence[tile.Value], layouts: dict[int, Layout], flat: list[TValue]) -> None:
        it = iter(flat)
        for c, v in enumerate(values):
            if c in layouts:
                lay = layouts[c]
                chunks = {s: next(it) for s in lay.slots()}
                self.blocks[v.uid] = Regs(lay, v.ty.shape, v.ty.dtype, chunks)  # type: ignore[union-attr]
            else:
                self.scalars[v.uid] = next(it)


def lower_kernel_gpu(k: Kernel, target: TargetInfo) -> Function:
    """Lower one verified tile kernel to a Target IR function run by one CTA per program."""
    verify_kernel(k)
    if target.program_model != "cta":
        raise TargetIRError(f"lower_kernel_gpu: target {target.name} does not run programs as CTAs")
    try:
        return _GpuLowering(k, target).run()
    except GpuScheduleLimit:
        if not target.mma:
            raise
    # The matrix unit's operand, accumulator and result staging did not fit the target's shared memory
    # (AMD's LDS is 64 KiB): FMA dots keep their accumulators in registers.
    return _GpuLowering(k, dataclasses.replace(target, mma="")).run()


__all__ = ["MAX_SHARED_BYTES", "GpuScheduleLimit", "gpu_abi", "lower_kernel_gpu"]
