"""Tensor-core matmul loops for the GPU lowering: a `for` over k whose body loads an A block and a B
block and feeds them to `dot` with the loop-carried accumulator, lowered as a multi-stage
asynchronous-copy pipeline into swizzled shared memory, ldmatrix and warp-wide `mma`.

The pattern (what schedule_to_tile writes for a matmul, and what a hand-written kernel's k loop
looks like):

    %acc = full 0.0 : block<[BM, BN], f32>
    %r = for %k = %lo to %hi step %st iter_args(%c = %acc) {
        %a = load(%A, %m0, %k) {shape = [BM, BK], other = 0.0} : block<[BM, BK], bf16>
        %b = load(%B, %k, %n0) {shape = [BK, BN], other = 0.0} : block<[BK, BN], bf16>
        yield(dot(%a, %b, %c))
    }

with A and B of one 16-bit float dtype the target's matrix unit multiplies (TargetInfo.mma names
its fragment layout, tessera/ir/gpu_mma.py), an f32 accumulator starting from a constant, %m0/%n0
defined outside the loop. Anything else keeps the general lowering (operands staged in shared
memory, an FMA loop).

The lowering, for S = schedule.stages (at least 2: one stage computing while the next fills) and
the CTA's warps tiling the BM x BN output (each warp a WTM x WTN tile of 16 x 8 mma tiles, its
accumulator in fragment registers):

- shared memory holds S stages of the A and B tiles, each row-major in 16-byte chunks permuted
  within 128-byte lines (`swizzle_chunk`), so the 8 rows an ldmatrix reads hit distinct banks;
- the prologue issues the copies of iterations 0 .. S-2, one commit group each; iteration i waits
  until its group is complete (`cp_async_wait S-2`), meets the other threads at a barrier (their
  copies are visible, and every thread is done with the stage about to be refilled), issues the
  copies of iteration i + S - 1 into stage (i - 1) % S, commits, and computes on stage i % S:
  per 16-deep k step, ldmatrix x4 of each A 16x16 piece and ldmatrix x4 .trans of each B 16x16
  piece, then one mma per 16 x 8 output tile;
- copies are 16 bytes (`cp_async`) where both tensors are row-major-contiguous and 16-byte aligned
  (checked once at run time), with the source size cut at the tensor's edge so the rest is zero
  (ragged M, N, K need no masks); else each chunk is read lane by lane under the bounds mask and
  stored to the same place (strided views, odd extents);
- the iterations whose refill lies inside K (the same prefix in every program) run first, in a main
  loop of their own: its refills are the whole 16-byte copies alone (a program whose tile crosses
  the M or N edge branches, uniformly, to the cut ones), from two global offsets carried and
  advanced by a constant, so neither the fallback copies' registers nor per-iteration index
  arithmetic reach the hot loop; the general loop runs the rest (the last S - 1 iterations, or all
  of them when the copies cannot be 16 bytes);
- the hot loop's addresses are kept narrow for ptxas: stage indices are i32, and each ldmatrix
  address is a thread offset (one per operand where the swizzle allows: the other k steps' and
  column pieces' offsets are it xor a constant, `_xor_invariant`) plus a constant it folds into
  the instruction;
- after the loop the fragments go to shared memory as an f32 row-major block (rows padded by 8
  elements: the 8 rows of a fragment store fall in distinct banks) that the epilogue reads like any
  shared block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tessera.dtypes import DType
from tessera.ir.gpu_mma import LDMATRIX_ROWS, MmaLayout, mma_layout, swizzle_chunk
from tessera.ir.target import convert as cv
from tessera.ir.target.ops import F32, I16, I32, I64, Op, Pointer, Vector
from tessera.ir.target.ops import Value as TValue
from tessera.ir.tile.ops import BlockType, TensorRefType

if TYPE_CHECKING:
    from tessera.ir.tile_to_target_gpu import _GpuLowering

CHUNK_BYTES = 16  # one cp_async, one ldmatrix row
EPILOGUE_PAD = 8  # f32 elements added to each accumulator row in shared memory


@dataclass(frozen=True)
class MatmulLoop:
    """A matched k loop: its A and B loads, the dot, and the tile shapes."""

    a_load: Op
    b_load: Op
    dot: Op
    ab: DType
    bm: int
    bn: int
    bk: int


@dataclass(frozen=True)
class WarpTiling:
    wm: int  # warps along M
    wn: int  # warps along N
    wtm: int  # rows of a warp's tile
    wtn: int  # columns of a warp's tile


def warp_tiling(bm: int, bn: int, warps: int, lay: MmaLayout) -> WarpTiling | None:
    """The most square split of a BM x BN block over `warps` warps whose warp tiles are whole mma
    tiles (and pairs of n tiles, one ldmatrix x4 .trans); None if there is none."""
    best: WarpTiling | None = None
    for wm in (w for w in range(1, warps + 1) if warps % w == 0):
        wn = warps // wm
        if bm % wm or bn % wn:
            continue
        wtm, wtn = bm // wm, bn // wn
        if wtm % lay.m or wtn % (2 * lay.n):
            continue
        t = WarpTiling(wm, wn, wtm, wtn)
        if best is None or abs(wtm - wtn) < abs(best.wtm - best.wtn):
            best = t
    return best


def match(L: _GpuLowering, op: Op) -> MatmulLoop | None:
    """The matmul pattern of the module docstring in `for` op `op`, if the target can run it."""
    if not L.t.mma:
        return None
    lay = mma_layout(L.t.mma)
    body = op.regions[0]
    iv, *carried = body.args
    if len(carried) != 1 or len(op.operands) != 4 or not isinstance(carried[0].ty, BlockType):
        return None
    ops = [o for o in body.ops if o.name != "yield"]
    if [o.name for o in ops] != ["load", "load", "dot"] or body.ops[-1].operands != (ops[2].result,):
        return None
    a_load, b_load, dot = ops
    if dot.operands != (a_load.result, b_load.result, carried[0]):
        return None
    acc = carried[0].ty
    a_t, b_t = a_load.result.ty, b_load.result.ty
    assert isinstance(a_t, BlockType) and isinstance(b_t, BlockType)
    if acc.dtype.name != "f32" or a_t.dtype != b_t.dtype or a_t.dtype.name not in lay.ab_types:
        return None
    if len(a_t.shape) != 2 or len(b_t.shape) != 2 or len(acc.shape) != 2:
        return None
    (bm, bk), (bk2, bn) = a_t.shape, b_t.shape
    if bk != bk2 or bk % lay.k or (bm, bn) != acc.shape or bn % LDMATRIX_ROWS:
        return None
    for ld in (a_load, b_load):
        if float(ld.attr("other")) != 0.0 or not isinstance(ld.operands[0].ty, TensorRefType) \
                or ld.operands[0].ty.rank != 2:
            return None
    # A is read at (m0, k), B at (k, n0), m0 and n0 defined before the loop.
    if a_load.operands[2] is not iv or b_load.operands[1] is not iv:
        return None
    if a_load.operands[1].uid not in L.scalars or b_load.operands[2].uid not in L.scalars:
        return None
    if not isinstance(L.blocks.get(op.operands[3].uid), _splat_type()):
        return None
    if warp_tiling(bm, bn, L.threads // lay.warp, lay) is None:
        return None
    return MatmulLoop(a_load, b_load, dot, a_t.dtype, bm, bn, bk)


def _splat_type() -> type:
    from tessera.ir.tile_to_target_gpu import Splat

    return Splat


def lower_matmul_loop(L: _GpuLowering, op: Op) -> bool:
    """Lower `for` op `op` as a tensor-core pipeline if it matches the pattern; False if not."""
    m = match(L, op)
    if m is None:
        return False
    _Pipeline(L, op, m).run()
    return True


def _shift_invariant(cpr: int, rows: int, shift: int) -> bool:
    """Whether moving `shift` rows down moves every swizzled chunk by exactly shift * cpr chunks (so an
    offset is a base plus a constant, and ptxas folds the constant into the address)."""
    return all(swizzle_chunk(r + shift, c, cpr) - swizzle_chunk(r, c, cpr) == shift * cpr
               for r in range(max(0, rows - shift)) for c in range(cpr))


def _xor_invariant(cpr: int, rows: int, chunks: object, step: int) -> bool:
    """Whether moving `step` chunks right from any of `chunks` (in any row) moves the swizzled chunk
    to itself xor `step`: then an offset `step` chunks on is the first one xor 8 * step elements."""
    return all(swizzle_chunk(r, h + step, cpr) == swizzle_chunk(r, h, cpr) ^ step
               for r in range(rows) for h in chunks)  # type: ignore[attr-defined]


class _Operand:
    """One staged operand: its tensor, tile shape and the thread's chunk slots: chunk tid + s * threads
    of the tile for slot s (row-major over 16-byte chunks)."""

    def __init__(self, P: _Pipeline, load: Op, rows: int, cols: int) -> None:
        L = P.L
        self.P = P
        self.t = L.tensors[load.operands[0].uid]
        self.rows, self.cols = rows, cols
        self.cpr = cols * 2 // CHUNK_BYTES  # 16-byte chunks per row
        self.elems = rows * cols  # per stage
        self.elem = cv.storage_scalar(self.t.dtype)
        self.chunks = rows * self.cpr
        self.n_slots = -(-self.chunks // L.threads)
        b = L.b
        # Slots of a thread share the column and are threads / cpr rows apart when cpr divides the
        # thread count: the row, column and offset of slot 0 are enough.
        self.regular = L.threads % self.cpr == 0
        self.base = self._slot(L.tid) if self.regular else None
        self.shift = L.threads // self.cpr if self.regular else 0
        self.invariant = self.regular and _shift_invariant(self.cpr, rows, self.shift)
        _ = b

    def _slot(self, c: TValue) -> tuple[TValue, TValue, TValue]:
        b = self.P.L.b
        row = b.op("udiv", c, b.index(self.cpr))
        ch = b.op("urem", c, b.index(self.cpr))
        return row, b.op("mul", ch, b.index(8)), self.P.swizzled(row, ch, self.cpr)

    def slots(self) -> list[tuple[TValue, TValue, TValue, TValue | None]]:
        """(row, column, element offset in a stage, valid or None) of each slot (emitted where used)."""
        L = self.P.L
        b = L.b
        out = []
        for s in range(self.n_slots):
            c = L.tid if s == 0 else b.op("add", L.tid, b.index(s * L.threads))
            valid = None if (s + 1) * L.threads <= self.chunks else b.cmp("ult", c, b.index(self.chunks))
            if valid is None and self.base is not None and (s == 0 or self.invariant):
                row, col, off = self.base
                if s:
                    row = b.op("add", row, b.index(s * self.shift))
                    off = b.op("add", off, b.index(s * self.shift * self.cols))
                out.append((row, col, off, None))
                continue
            if valid is not None:
                c = b.select(valid, c, b.index(0))
            out.append((*self._slot(c), valid))
        return out


class _Pipeline:
    def __init__(self, L: _GpuLowering, op: Op, m: MatmulLoop) -> None:
        self.L, self.op, self.m = L, op, m
        self.lay = mma_layout(L.t.mma)
        tiling = warp_tiling(m.bm, m.bn, L.threads // self.lay.warp, self.lay)
        assert tiling is not None
        self.w = tiling
        self.stages = max(2, L.k.schedule.stages)  # one stage would leave no copy to overlap
        self.mt = tiling.wtm // self.lay.m
        self.nt = tiling.wtn // self.lay.n

    # -- index helpers (emitted before the loop) -------------------------------------------------

    def swizzled(self, row: TValue, ch: TValue, cpr: int) -> TValue:
        """Element offset of chunk (row, ch) in a tile of cpr chunks per row (gpu_mma.swizzle_chunk)."""
        b = self.L.b
        lin = b.op("add", b.op("mul", row, b.index(cpr)), ch)
        rpl = max(1, 8 // cpr)
        group = row if rpl == 1 else b.op("lshr", row, b.index(rpl.bit_length() - 1))
        mask = b.op("and", group, b.index(7))
        phys = b.op("or", b.op("and", lin, b.index(~7)), b.op("xor", b.op("and", lin, b.index(7)), mask))
        return b.op("mul", phys, b.index(8))

    # -- the lowering ---------------------------------------------------------------------------

    def run(self) -> None:
        L, m, lay = self.L, self.m, self.lay
        b = L.b
        a = _Operand(self, m.a_load, m.bm, m.bk)
        bo = _Operand(self, m.b_load, m.bk, m.bn)
        self.opa, self.opb = a, bo
        stage_bytes = (a.elems + bo.elems) * 2
        epi_stride = m.bn + EPILOGUE_PAD
        arena_bytes = max(self.stages * stage_bytes, m.bm * epi_stride * 4)
        arena = L.alloc_shared(I16, arena_bytes // 2)
        self.a_base = self._cast(arena, a.elem)
        self.b_base = self._cast(b.ptradd(arena, b.index(self.stages * a.elems)), bo.elem)
        lo, hi, step = (L.scalars[v.uid] for v in self.op.operands[:3])
        self.lo, self.step = lo, step
        self.m0 = L.scalars[m.a_load.operands[1].uid]
        self.n0 = L.scalars[m.b_load.operands[2].uid]
        zero = b.index(0)
        span = b.op("sub", hi, lo)
        n_iter = b.select(b.cmp("slt", lo, hi),
                          b.op("div", b.op("add", span, b.op("sub", step, b.index(1))), step), zero)
        self.fast = self._fast_condition()
        self._fragment_offsets()
        for s in range(self.stages - 1):
            with b.if_(b.cmp("slt", b.index(s), n_iter)):
                self.issue(b.index(s), b.const(s, I32))
                b.yield_([])
            b.emit("cp_async_commit", [])
        init = L.blocks[self.op.operands[3].uid].value  # type: ignore[union-attr]
        acc0 = b.splat(init, lay.c_regs)
        tiles = [(i, j) for i in range(self.mt) for j in range(self.nt)]
        # The stage read (it % S) and the stage refilled ((it + S - 1) % S) are carried and wrapped
        # by a select: a 64-bit remainder per iteration is a subroutine call on the GPU.
        last = b.index(self.stages - 1)
        # Stage indices are i32: they only address shared memory.
        state = [*([acc0] * len(tiles)), b.const(0, I32), b.const(self.stages - 1, I32)]
        start = zero
        if self._splittable():
            start, state = self._main_loop(n_iter, tiles, state)
        with b.for_(start, n_iter, b.index(1), state, iv_hint="kt") as lp:
            it = lp.iv
            cur, fill = lp.args[len(tiles)], lp.args[len(tiles) + 1]
            b.emit("cp_async_wait", [], pending=self.stages - 2)
            b.emit("barrier", [])
            nxt = b.op("add", it, last)
            with b.if_(b.cmp("slt", nxt, n_iter)):
                self.issue(nxt, fill)
                b.yield_([])
            b.emit("cp_async_commit", [])
            acc = dict(zip(tiles, lp.args))
            self._compute(cur, acc, tiles)
            b.yield_([*(acc[t] for t in tiles), *self._wrap(cur, fill)], lp)
        b.emit("cp_async_wait", [], pending=0)
        b.emit("barrier", [])
        epi = self._cast(arena, F32)
        self._store_fragments(epi, epi_stride, dict(zip(tiles, lp.results[:len(tiles)])))
        b.emit("barrier", [])
        from tessera.ir.tile_to_target_gpu import Shared

        L.blocks[self.op.results[0].uid] = Shared((m.bm, m.bn), m.dot.result.ty.dtype,  # type: ignore[union-attr]
                                                  epi, (epi_stride, 1))

    def _compute(self, cur: TValue, acc: dict[tuple[int, int], TValue], tiles: list[tuple[int, int]]) -> None:
        """The mma steps on stage `cur` (i32)."""
        a_stage = self._stage(self.a_base, cur, self.opa.elems)
        b_stage = self._stage(self.b_base, cur, self.opb.elems)
        self._k_steps(a_stage, b_stage, acc, tiles)

    def _wrap(self, *stages: TValue) -> list[TValue]:
        b = self.L.b
        last, zero = b.const(self.stages - 1, I32), b.const(0, I32)
        return [b.select(b.cmp("eq", x, last), zero, b.op("add", x, b.const(1, I32))) for x in stages]

    # -- the main loop: every copy whole and inside both tensors -----------------------------------

    def _splittable(self) -> bool:
        """Whether both operands' chunk slots are a base plus constant steps (the main loop's copies)."""
        return all(o.base is not None and o.invariant and o.chunks % self.L.threads == 0
                   for o in (self.opa, self.opb))

    def _main_loop(self, n_iter: TValue, tiles: list[tuple[int, int]],
                   state: list[TValue]) -> tuple[TValue, list[TValue]]:
        """The iterations 0 .. n_main - 1 whose refill is an interior copy (`_interior`), as a loop
        with no edge or fallback copies: their registers and code stay out of the hot loop, and the
        global sources advance by a constant instead of being recomputed from k. Returns n_main (where
        the general loop starts) and the carried state after it."""
        b, m, S = self.L.b, self.m, self.stages
        zero, one = b.index(0), b.index(1)
        a, bo = self.opa, self.opb
        # Interior iterations are a prefix: k + BK <= K holds for it <= (K - BK - lo) / step (step > 0).
        kmin = b.op("min", a.t.extents[1], bo.t.extents[0])
        room = b.op("sub", b.op("sub", kmin, b.index(m.bk)), self.lo)
        n_k = b.select(b.cmp("sge", room, zero), b.op("add", b.op("div", room, self.step), one), zero)
        # The bounds are the same in every program (CTA): one whose tile crosses the M or N edge
        # takes the cut copies of `_copy_fast` in its main loop, a uniform branch.
        n_fast = b.select(self.fast, b.op("min", n_k, n_iter), zero)
        n_main = b.op("max", b.op("sub", n_fast, b.index(S - 1)), zero)
        cta = b.op("and", b.cmp("sle", b.op("add", self.m0, b.index(m.bm)), a.t.extents[0]),
                   b.cmp("sle", b.op("add", self.n0, b.index(m.bn)), bo.t.extents[1]))
        # Element offsets of slot 0's sources for the refill of iteration S - 1 (fast path: unit
        # column strides), and their advance per iteration.
        k0 = b.op("add", self.lo, b.op("mul", b.index(S - 1), self.step))
        a_row, a_col, _ = a.base  # type: ignore[misc]
        b_row, b_col, _ = bo.base  # type: ignore[misc]
        a_src = b.op("add", b.op("mul", b.op("add", self.m0, a_row), a.t.strides[0]), b.op("add", k0, a_col))
        b_src = b.op("add", b.op("mul", b.op("add", k0, b_row), bo.t.strides[0]), b.op("add", self.n0, b_col))
        a_adv, b_adv = self.step, b.op("mul", self.step, bo.t.strides[0])
        n = len(tiles)
        with b.for_(zero, n_main, one, [*state, a_src, b_src], iv_hint="kt") as lp:
            cur, fill, a_at, b_at = lp.args[n:]
            b.emit("cp_async_wait", [], pending=S - 2)
            b.emit("barrier", [])
            with b.if_(cta) as br:
                self._copy_main(a, a_at, fill)
                self._copy_main(bo, b_at, fill)
                b.yield_([])
                b.else_(br)
                k = b.op("add", self.lo, b.op("mul", b.op("add", lp.iv, b.index(S - 1)), self.step))
                for o, r0, c0 in ((a, self.m0, k), (bo, k, self.n0)):
                    self._copy_fast(o, r0, c0, fill)
                b.yield_([])
            b.emit("cp_async_commit", [])
            acc = dict(zip(tiles, lp.args))
            self._compute(cur, acc, tiles)
            b.yield_([*(acc[t] for t in tiles), *self._wrap(cur, fill), b.op("add", a_at, a_adv),
                      b.op("add", b_at, b_adv)], lp)
        return n_main, list(lp.results[:n + 2])

    def _copy_main(self, o: _Operand, src_off: TValue, stage: TValue) -> None:
        """Slot s copies 16 bytes from src_off + s * shift rows to the stage's slot s (a constant
        shared offset from slot 0)."""
        b = self.L.b
        base = self.a_base if o is self.opa else self.b_base
        _, _, off = o.base  # type: ignore[misc]
        dst = b.ptradd(self._stage(base, stage, o.elems), off)
        src = b.ptradd(o.t.ptr, src_off)
        src_step = b.op("mul", o.t.strides[0], b.index(o.shift))
        size = b.const(CHUNK_BYTES, I32)
        for s in range(o.n_slots):
            if s:
                src = b.ptradd(src, src_step)
            b.emit("cp_async", [dst if s == 0 else b.ptradd(dst, b.index(s * o.shift * o.cols)), src, size],
                   bytes=CHUNK_BYTES)

    def _k_steps(self, a_stage: TValue, b_stage: TValue, acc: dict[tuple[int, int], TValue],
                 tiles: list[tuple[int, int]]) -> None:
        """The mma steps of one k tile on the current stage (acc updated in place): ldmatrix x4 of
        each A 16x16 piece and ldmatrix x4 .trans of each B 16x16 piece per 16-deep k step.
        (tessera/ir/gpu_mfma.py overrides it, with _fragment_offsets and _store_fragments.)"""
        b, lay, m = self.L.b, self.lay, self.m
        # An offset is (thread value v, x, c): v ^ x + c. The pointer to v ^ x is formed once per stage
        # and c added to it, so ptxas folds c into the ldmatrix's address; the xor is computed here, in
        # the loop, rather than kept in a register per k step.
        bases: dict[tuple[int, int, int], TValue] = {}

        def at(stage: TValue, off: tuple[TValue, int, int]) -> TValue:
            v, x, c = off
            key = (stage.uid, v.uid, x)
            if key not in bases:
                bases[key] = b.ptradd(stage, b.op("xor", v, b.index(x)) if x else v)
            return bases[key] if c == 0 else b.ptradd(bases[key], b.index(c))

        for kk in range(m.bk // lay.k):
            afr = [b.op("ldmatrix", at(a_stage, self.a_frag[i][kk]), count=4, trans=False) for i in range(self.mt)]
            bfr = [b.op("ldmatrix", at(b_stage, self.b_frag[p][kk]), count=4, trans=True)
                   for p in range(self.nt // 2)]
            for i, j in tiles:
                src = bfr[j // 2]
                h = 2 * (j % 2)
                pair = b.op("insert", b.op("insert", b.const(0, Vector(2, I32)), b.op("extract", src, index=h),
                                           index=0), b.op("extract", src, index=h + 1), index=1)
                acc[(i, j)] = b.op("mma", afr[i], pair, acc[(i, j)], layout=lay.name, ab=m.ab.name)

    def _cast(self, p: TValue, elem: object) -> TValue:
        assert isinstance(p.ty, Pointer)
        if p.ty.elem == elem:
            return p
        return self.L.b.op("ptrcast", p, elem=elem.kind)  # type: ignore[attr-defined]

    def _lane_warp(self) -> tuple[TValue, TValue, TValue]:
        """(lane, warp row, warp column) of this thread."""
        b, L = self.L.b, self.L
        w = self.lay.warp
        lane = b.op("and", L.tid, b.index(w - 1))
        warp = b.op("lshr", L.tid, b.index(w.bit_length() - 1))
        wn = self.w.wn
        wr = b.op("udiv", warp, b.index(wn)) if wn > 1 else warp
        wc = b.op("urem", warp, b.index(wn)) if wn > 1 else b.index(0)
        return lane, wr, wc

    def _fragment_offsets(self) -> None:
        """Each thread's ldmatrix row addresses (element offsets in a stage), per piece and k step:
        lane 8i + r addresses row r of piece i; A pieces are (rows 0-7 | 8-15) x (k 0-7 | 8-15),
        B pieces (k 0-7 | 8-15) x (n 0-7 | 8-15), in the order the fragments want them."""
        b, lay, m = self.L.b, self.lay, self.m
        lane, wr, wc = self._lane_warp()
        r = b.op("and", lane, b.index(7))
        half = b.op("mul", b.op("and", b.op("lshr", lane, b.index(3)), b.index(1)), b.index(8))
        hi = b.op("lshr", lane, b.index(4))
        in16 = b.op("add", r, half)
        row0 = b.op("mul", wr, b.index(self.w.wtm))
        col0 = b.op("mul", wc, b.index(self.w.wtn // 8))
        ksteps = m.bk // lay.k
        a_rows = b.op("add", row0, in16)
        a_inv = _shift_invariant(self.opa.cpr, m.bm, 16)
        b_inv = _shift_invariant(self.opb.cpr, m.bk, 16)
        # (v, x, c) triples, the offset v ^ x + c: pieces 16 rows apart differ by a constant where the
        # swizzle is shift-invariant, and pieces 2 chunks apart by an xor where it is xor-invariant.
        self.a_frag: list[list[tuple[TValue, int, int]]] = []
        a_first: list[tuple[TValue, int, int]] = []
        for kk in range(ksteps):
            if kk and _xor_invariant(self.opa.cpr, m.bm, range(2), 2 * kk):
                a_first.append((a_first[0][0], 16 * kk, 0))
            else:
                a_first.append((self.swizzled(a_rows, b.op("add", hi, b.index(2 * kk)), self.opa.cpr), 0, 0))
        for i in range(self.mt):
            if i and a_inv:
                self.a_frag.append([(v, x, c + 16 * i * m.bk) for v, x, c in a_first])
                continue
            row = a_rows if i == 0 else b.op("add", a_rows, b.index(16 * i))
            self.a_frag.append(a_first if i == 0 else [
                (self.swizzled(row, b.op("add", hi, b.index(2 * kk)), self.opa.cpr), 0, 0) for kk in range(ksteps)])
        self.b_frag: list[list[tuple[TValue, int, int]]] = []
        chunks = [wc * (self.w.wtn // 8) + h for wc in range(self.w.wn) for h in range(2)]
        for p in range(self.nt // 2):
            if p and _xor_invariant(self.opb.cpr, m.bk, chunks, 2 * p):
                first = (self.b_frag[0][0][0], 16 * p, 0)
            else:
                ch = b.op("add", col0, b.op("add", hi, b.index(2 * p)))
                first = (self.swizzled(in16, ch, self.opb.cpr), 0, 0)
            self.b_frag.append([(first[0], first[1], 16 * kk * m.bn) if kk == 0 or b_inv
                                else (self.swizzled(b.op("add", in16, b.index(16 * kk)),
                                                    b.op("add", col0, b.op("add", hi, b.index(2 * p))),
                                                    self.opb.cpr), 0, 0)
                                for kk in range(ksteps)])

    def _fast_condition(self) -> TValue:
        """i1, uniform: every chunk copy is 16 contiguous bytes at 16-byte-aligned addresses (row-major
        tensors, row strides and column starts multiples of 8, aligned bases)."""
        b = self.L.b
        seven, zero = b.index(7), b.index(0)

        def mult8(v: TValue) -> TValue:
            return b.cmp("eq", b.op("and", v, seven), zero)

        cond = b.op("and", mult8(self.lo), mult8(self.step))
        cond = b.op("and", cond, mult8(self.n0))
        for o in (self.opa, self.opb):
            t = o.t
            cond = b.op("and", cond, b.cmp("eq", t.strides[1], b.index(1)))
            cond = b.op("and", cond, mult8(t.strides[0]))
            cond = b.op("and", cond, b.cmp("eq", b.op("and", b.op("ptrtoint", t.ptr), b.index(15)), zero))
        return cond

    def issue(self, it: TValue, stage: TValue) -> None:
        """The copies of iteration `it` into stage `stage`."""
        b = self.L.b
        k = b.op("add", self.lo, b.op("mul", it, self.step))
        pairs = ((self.opa, self.m0, k), (self.opb, k, self.n0))
        with b.if_(self._interior(k)) as inner:
            for o, r0, c0 in pairs:
                self._copy_interior(o, r0, c0, stage)
            b.yield_([])
            b.else_(inner)
            with b.if_(self.fast) as br:
                for o, r0, c0 in pairs:
                    self._copy_fast(o, r0, c0, stage)
                b.yield_([])
                b.else_(br)
                for o, r0, c0 in pairs:
                    self._copy_lanes(o, r0, c0, stage)
                b.yield_([])
            b.yield_([])

    def _interior(self, k: TValue) -> TValue:
        """i1, uniform: the fast copies of this iteration lie inside both tensors (no edge to cut)."""
        b, m = self.L.b, self.m
        cond = self.fast
        for start, size, ext in ((self.m0, m.bm, self.opa.t.extents[0]), (k, m.bk, self.opa.t.extents[1]),
                                 (k, m.bk, self.opb.t.extents[0]), (self.n0, m.bn, self.opb.t.extents[1])):
            cond = b.op("and", cond, b.cmp("sle", b.op("add", start, b.index(size)), ext))
        return cond

    def _copy_interior(self, o: _Operand, r0: TValue, c0: TValue, stage: TValue) -> None:
        """Whole 16-byte copies, addresses a base plus per-slot steps (the common case, kept short)."""
        if o.base is None or not o.invariant or o.chunks % self.L.threads:
            self._copy_fast(o, r0, c0, stage)
            return
        b = self.L.b
        row, col, off = o.base
        src = b.ptradd(o.t.ptr, b.op("add", b.op("mul", b.op("add", r0, row), o.t.strides[0]), b.op("add", c0, col)))
        src_step = b.op("mul", o.t.strides[0], b.index(o.shift))
        dst = self._dst(o, self.a_base if o is self.opa else self.b_base, stage, off)
        size = b.const(CHUNK_BYTES, I32)
        for s in range(o.n_slots):
            b.emit("cp_async", [dst if s == 0 else b.ptradd(dst, b.index(s * o.shift * o.cols)),
                                src if s == 0 else b.ptradd(src, b.op("mul", src_step, b.index(s))), size],
                   bytes=CHUNK_BYTES)

    def _dst(self, o: _Operand, base: TValue, stage: TValue, off: TValue) -> TValue:
        return self.L.b.ptradd(self._stage(base, stage, o.elems), off)

    def _stage(self, base: TValue, stage: TValue, elems: int) -> TValue:
        """Stage `stage` (i32) of the tiles at base, `elems` elements each."""
        b = self.L.b
        return b.ptradd(base, b.cast("zext", b.op("mul", stage, b.const(elems, I32)), I64))

    def _copy_fast(self, o: _Operand, r0: TValue, c0: TValue, stage: TValue) -> None:
        b = self.L.b
        base = self.a_base if o is self.opa else self.b_base
        zero = b.index(0)
        for row, col, off, valid in o.slots():
            g_row = b.op("add", r0, row)
            g_col = b.op("add", c0, col)
            left = b.op("sub", o.t.extents[1], g_col)
            n = b.select(b.cmp("slt", left, b.index(8)), b.op("max", left, zero), b.index(8))
            ok = b.cmp("ult", g_row, o.t.extents[0])
            if valid is not None:
                ok = b.op("and", ok, valid)
            n = b.select(ok, n, zero)
            # A copy of no bytes still names an address: the tensor's base.
            src_off = b.select(b.cmp("sgt", n, zero), b.op("add", b.op("mul", g_row, o.t.strides[0]), g_col), zero)
            size = b.cast("trunc", b.op("mul", n, b.index(o.elem.bits // 8)), I32)
            dst = self._dst(o, base, stage, off)
            if valid is None:
                b.emit("cp_async", [dst, b.ptradd(o.t.ptr, src_off), size], bytes=CHUNK_BYTES)
            else:
                with b.if_(valid):
                    b.emit("cp_async", [dst, b.ptradd(o.t.ptr, src_off), size], bytes=CHUNK_BYTES)
                    b.yield_([])

    def _copy_lanes(self, o: _Operand, r0: TValue, c0: TValue, stage: TValue) -> None:
        b = self.L.b
        base = self.a_base if o is self.opa else self.b_base
        lanes = 8
        ty = Vector(lanes, o.elem)
        lane = b.lane_index(lanes)
        for row, col, off, valid in o.slots():
            g_row = b.op("add", r0, row)
            g_col = b.op("add", c0, col)
            ok = b.cmp("ult", g_row, o.t.extents[0])
            if valid is not None:
                ok = b.op("and", ok, valid)
            cols = b.op("add", b.splat(g_col, lanes), lane)
            mask = b.op("and", b.cmp("ult", cols, b.splat(o.t.extents[1], lanes)), b.splat(ok, lanes))
            row_ptr = b.ptradd(o.t.ptr, b.select(ok, b.op("mul", g_row, o.t.strides[0]), b.index(0)))
            offs = b.op("mul", b.select(mask, cols, b.splat(b.index(0), lanes)), b.splat(o.t.strides[1], lanes))
            x = b.gather(row_ptr, offs, mask, b.const(0, ty))
            dst = self._dst(o, base, stage, off)
            if valid is None:
                b.store(dst, x)
            else:
                with b.if_(valid):
                    b.store(dst, x)
                    b.yield_([])

    def _store_fragments(self, epi: TValue, stride: int, acc: dict[tuple[int, int], TValue]) -> None:
        """Each thread writes its accumulator elements (pairs of adjacent columns) row-major at epi."""
        b, lay = self.L.b, self.lay
        lane, wr, wc = self._lane_warp()
        row0 = b.op("mul", wr, b.index(self.w.wtm))
        col0 = b.op("mul", wc, b.index(self.w.wtn))
        g = b.op("lshr", lane, b.index(2))
        t2 = b.op("mul", b.op("and", lane, b.index(3)), b.index(2))
        base = b.ptradd(epi, b.op("add", b.op("mul", b.op("add", row0, g), b.index(stride)), b.op("add", col0, t2)))
        assert lay.c_elem(0, 1) == (0, 1) and lay.c_elem(0, 2) == (8, 0), "pairs of columns, rows g and g + 8"
        for (i, j), v in acc.items():
            for h in range(lay.c_regs // 2):
                off = (i * lay.m + 8 * h) * stride + j * lay.n
                pair = b.op("insert", b.op("insert", b.const(0.0, Vector(2, F32)), b.op("extract", v, index=2 * h),
                                           index=0), b.op("extract", v, index=2 * h + 1), index=1)
                b.store(b.ptradd(base, b.index(off)), pair)


__all__ = ["MatmulLoop", "WarpTiling", "lower_matmul_loop", "match", "warp_tiling"]
