"""`dot` on the matrix unit for any bf16/f16 operands: the GPU lowering's general tensor-core dot.

The k loops of tessera/ir/gpu_pipeline.py cover the common matmul; every other `dot(a, b, acc)` whose
operands are one 16-bit float dtype the target's matrix unit multiplies (TargetInfo.mma) and whose
accumulator is f32 comes here: a dot outside a loop (K within one block), operands that went through
casts, transposes or elementwise ops, accumulators that are not constants. Each warp owns a WTM x WTN
part of the M x N output (`gpu_pipeline.warp_tiling`), so M and N must split into whole mma tiles;
K is anything (elements past K read as zero).

The operands are staged in shared memory by the lowering's usual means (`shared_view`: row-major in
the compute type, any strides), and every lane reads the elements its fragments hold straight from
there, packing pairs of 16-bit patterns into the i32 registers `mma` takes. Where a lane's elements
are is the fragment layout's (gpu_mma.MMA_LAYOUTS) business: its element maps must be affine in the
bits of the lane index, which the emitted address arithmetic relies on (checked). The accumulator
comes in the same way (a constant is splat), and the result goes back to shared memory as an f32
block with padded rows, which later ops read like any shared block.

This path trades speed for generality (a load and a conversion per element and fragment); the
pipelined k loop is the fast one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tessera.ir.gpu_mma import MmaLayout, mma_layout
from tessera.ir.gpu_pipeline import EPILOGUE_PAD, warp_tiling
from tessera.ir.target import convert as cv
from tessera.ir.target.ops import F32, I16, I32, Op, Vector
from tessera.ir.target.ops import Value as TValue
from tessera.ir.tile.ops import BlockType

if TYPE_CHECKING:
    from tessera.ir.tile_to_target_gpu import _GpuLowering

LaneMap = Callable[[int], int]


def lane_affine(f: LaneMap, warp: int) -> tuple[int, list[tuple[int, int]]] | None:
    """f(lane) as const + sum(coef_b * bit b of lane), or None if f is not of that form."""
    const = f(0)
    bits = warp.bit_length() - 1
    coefs = [(bit, f(1 << bit) - const) for bit in range(bits)]
    for lane in range(warp):
        if f(lane) != const + sum(c for bit, c in coefs if lane >> bit & 1):
            return None
    return const, [(bit, c) for bit, c in coefs if c]


def _affine_layout(lay: MmaLayout) -> bool:
    maps: list[LaneMap] = []
    for r in range(lay.a_regs):
        for h in range(2):
            maps += [lambda ln, r=r, h=h, ax=ax: lay.a_elem(ln, r, h)[ax] for ax in (0, 1)]
    for r in range(lay.b_regs):
        for h in range(2):
            maps += [lambda ln, r=r, h=h, ax=ax: lay.b_elem(ln, r, h)[ax] for ax in (0, 1)]
    for e in range(lay.c_regs):
        maps += [lambda ln, e=e, ax=ax: lay.c_elem(ln, e)[ax] for ax in (0, 1)]
    return all(lane_affine(f, lay.warp) is not None for f in maps)


def lower_dot(L: _GpuLowering, op: Op) -> bool:
    """Lower tile `dot` op `op` on the matrix unit if it fits (module docstring); False if not."""
    if not L.t.mma:
        return False
    lay = mma_layout(L.t.mma)
    a_v, b_v, _ = op.operands
    a_t, b_t, r_t = a_v.ty, b_v.ty, op.result.ty
    if not all(isinstance(t, BlockType) and len(t.shape) == 2 for t in (a_t, b_t, r_t)):
        return False
    if a_t.dtype != b_t.dtype or a_t.dtype.name not in lay.ab_types or r_t.dtype.name != "f32":  # type: ignore[union-attr]
        return False
    m, k = a_t.shape  # type: ignore[union-attr]
    n = b_t.shape[1]  # type: ignore[union-attr]
    tiling = warp_tiling(m, n, L.threads // lay.warp, lay)
    if tiling is None or not _affine_layout(lay):
        return False
    _Dot(L, op, lay, tiling, (m, n, k)).run()
    return True


class _Dot:
    def __init__(self, L: _GpuLowering, op: Op, lay: MmaLayout, tiling: object, mnk: tuple[int, int, int]) -> None:
        self.L, self.op, self.lay, self.w = L, op, lay, tiling
        self.m, self.n, self.k = mnk
        self.mt = self.w.wtm // lay.m  # type: ignore[attr-defined]
        self.nt = self.w.wtn // lay.n  # type: ignore[attr-defined]
        b = L.b
        warp = lay.warp
        self.lane = L._hoist("and", None, L.tid, b.index(warp - 1))
        wid = L._hoist("lshr", None, L.tid, b.index(warp.bit_length() - 1))
        wn = self.w.wn  # type: ignore[attr-defined]
        wr = L._hoist("udiv", None, wid, b.index(wn)) if wn > 1 else wid
        wc = L._hoist("urem", None, wid, b.index(wn)) if wn > 1 else b.index(0)
        self.row0 = L._hoist("mul", None, wr, b.index(self.w.wtm))  # type: ignore[attr-defined]
        self.col0 = L._hoist("mul", None, wc, b.index(self.w.wtn))  # type: ignore[attr-defined]
        self._cache: dict[tuple[int, ...], TValue] = {}

    def lane_value(self, f: LaneMap, key: tuple[int, ...]) -> TValue:
        """f(lane) for this thread's lane (hoisted; f affine in the lane bits)."""
        if key in self._cache:
            return self._cache[key]
        L, b = self.L, self.L.b
        aff = lane_affine(f, self.lay.warp)
        assert aff is not None
        const, terms = aff
        acc: TValue = b.index(const)
        for bit, coef in terms:
            x = L._hoist("and", None, L._hoist("lshr", None, self.lane, b.index(bit)), b.index(1))
            acc = L._hoist("add", None, acc, L._hoist("mul", None, x, b.index(coef)))
        self._cache[key] = acc
        return acc

    def run(self) -> None:
        L, b, lay = self.L, self.L.b, self.lay
        a_v, b_v, acc_v = self.op.operands
        ab = a_v.ty.dtype  # type: ignore[union-attr]
        a_sm, b_sm = L.shared_view(a_v), L.shared_view(b_v)
        from tessera.ir.tile_to_target_gpu import Shared, Splat

        acc_blk = L.blocks.get(acc_v.uid)
        acc_sm = None if isinstance(acc_blk, Splat) else L.shared_view(acc_v)
        tiles = [(i, j) for i in range(self.mt) for j in range(self.nt)]
        acc: dict[tuple[int, int], TValue] = {}
        for i, j in tiles:
            if acc_sm is None:
                acc[(i, j)] = b.splat(acc_blk.value, lay.c_regs)  # type: ignore[union-attr]
                continue
            v = b.const(0.0, Vector(lay.c_regs, F32))
            for e in range(lay.c_regs):
                row, col = self._c_pos(i, j, e)
                v = b.op("insert", v, self._read(acc_sm, row, col), index=e)
            acc[(i, j)] = v
        for kk in range(-(-self.k // lay.k)):
            afr = [self._regs(a_sm, ab, lay.a_regs, i, kk, "a") for i in range(self.mt)]
            bfr = [self._regs(b_sm, ab, lay.b_regs, j, kk, "b") for j in range(self.nt)]
            for i, j in tiles:
                acc[(i, j)] = b.op("mma", afr[i], bfr[j], acc[(i, j)], layout=lay.name, ab=ab.name)
        stride = self.n + EPILOGUE_PAD
        out = L.alloc_shared(F32, self.m * stride)
        b.emit("barrier", [])  # earlier readers of `out` (a previous loop iteration) are done
        for (i, j), v in acc.items():
            for e in range(lay.c_regs):
                row, col = self._c_pos(i, j, e)
                b.store(b.ptradd(out, b.op("add", b.op("mul", row, b.index(stride)), col)),
                        b.op("extract", v, index=e))
        b.emit("barrier", [])
        L.blocks[self.op.result.uid] = Shared((self.m, self.n), self.op.result.ty.dtype, out,  # type: ignore[union-attr]
                                              (stride, 1))

    def _c_pos(self, i: int, j: int, e: int) -> tuple[TValue, TValue]:
        b, lay = self.L.b, self.lay
        r = self.lane_value(lambda ln: lay.c_elem(ln, e)[0], (0, e, 0))
        c = self.lane_value(lambda ln: lay.c_elem(ln, e)[1], (0, e, 1))
        return (b.op("add", self.row0, b.op("add", r, b.index(i * lay.m))),
                b.op("add", self.col0, b.op("add", c, b.index(j * lay.n))))

    def _read(self, sm: object, row: TValue, col: TValue) -> TValue:
        b = self.L.b
        s0, s1 = sm.strides  # type: ignore[attr-defined]
        off = b.op("add", b.op("mul", row, b.index(s0)), b.op("mul", col, b.index(s1)))
        return b.load(b.ptradd(sm.ptr, off), cv.buffer_scalar(sm.dtype))  # type: ignore[attr-defined]

    def _regs(self, sm: object, ab: object, regs: int, t: int, kk: int, which: str) -> TValue:
        """The `regs` i32 registers of operand `which` for row tile t (A) or column tile t (B), k step kk."""
        b, lay = self.L.b, self.lay
        elem = lay.a_elem if which == "a" else lay.b_elem
        out = b.const(0, Vector(regs, I32)) if regs > 1 else None
        words = []
        for r in range(regs):
            halves = []
            for h in range(2):
                u = self.lane_value(lambda ln, r=r, h=h: elem(ln, r, h)[0], (1 if which == "a" else 2, r, h, 0))
                v = self.lane_value(lambda ln, r=r, h=h: elem(ln, r, h)[1], (1 if which == "a" else 2, r, h, 1))
                if which == "a":  # (row, k)
                    row = b.op("add", self.row0, b.op("add", u, b.index(t * lay.m)))
                    kidx = b.op("add", v, b.index(kk * lay.k))
                    pos = (row, kidx)
                else:  # (k, column)
                    kidx = b.op("add", u, b.index(kk * lay.k))
                    pos = (kidx, b.op("add", self.col0, b.op("add", v, b.index(t * lay.n))))
                in_k = None
                if (kk + 1) * lay.k > self.k:  # the ragged last k step: elements past K are zero
                    in_k = b.cmp("ult", kidx, b.index(self.k))
                    pos = tuple(b.select(in_k, p, b.index(0)) for p in pos)  # type: ignore[assignment]
                x = self._read(sm, *pos)
                if in_k is not None:
                    x = b.select(in_k, x, b.const(0.0, F32))
                bits = cv.encode(b, x, ab)  # type: ignore[arg-type]
                if bits.ty != I16:
                    bits = b.cast("bitcast", bits, I16)
                halves.append(b.cast("zext", bits, I32))
            words.append(b.op("or", halves[0], b.op("shl", halves[1], b.const(16, I32))))
        if out is None:
            return words[0]
        for r, w in enumerate(words):
            out = b.op("insert", out, w, index=r)
        return out


__all__ = ["lane_affine", "lower_dot"]
