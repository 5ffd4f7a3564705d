"""AMD matrix cores (MFMA) for the GPU lowering: the fragment layouts of CDNA's wave64 `mfma`
instructions, and the tensor-core matmul loop of tessera/ir/gpu_pipeline.py with MFMA fragments.

A row of `MMA_LAYOUTS` (tessera/ir/gpu_mma.py) per instruction shape, named by `TargetInfo.mma`
(`hip_target_info` sets it on gfx90a and gfx94x); the Target IR op is the vendor-neutral `mma`, which
tessera/codegen/hip.py prints as the builtin (`__builtin_amdgcn_mfma_f32_16x16x16bf16_1k`, ...).
For `v_mfma_f32_MxNxK{bf16_1k,f16}` on a wavefront of 64 lanes (AMD's matrix instruction tables),
with e = 2 r + h the e-th 16-bit element a lane holds (register r, half h):

    A (M x K): lane l holds row l % M, columns 4 (l / M) + e      (4 consecutive k: one 8-byte read)
    B (K x N): lane l holds column l % N, rows 4 (l / N) + e
    C (M x N): element e of lane l is row 4 (l / N) + f(e), column l % N,
               f(e) = e for 16x16x16, 8 (e / 4) + e % 4 for 32x32x8

The matmul loop is the NVIDIA pipeline's (multi-stage copies into swizzled shared tiles, fragments
in registers across the k loop, the accumulator to shared memory for the epilogue) with the two
pieces that depend on the fragment layout replaced: each lane reads its A fragment of a k step as
one 8-byte load and its B fragment as four 2-byte loads from the shared tiles (CDNA has no
ldmatrix), and writes its accumulator elements back one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.ir import gpu_mma
from tessera.ir.gpu_mma import MmaLayout
from tessera.ir.gpu_pipeline import _Pipeline, match
from tessera.ir.target.ops import I16, I32, Op, Vector
from tessera.ir.target.ops import Value as TValue

if TYPE_CHECKING:
    from tessera.ir.tile_to_target_gpu import _GpuLowering

WAVE = 64


def _c_row_32(e: int) -> int:
    return 8 * (e // 4) + e % 4


def _layout(name: str, m: int, n: int, k: int) -> MmaLayout:
    c_regs = m * n // WAVE
    c_row = _c_row_32 if m == 32 else (lambda e: e)
    return MmaLayout(
        name, m, n, k, WAVE, 2, 2, c_regs,
        a_elem=lambda lane, r, h: (lane % m, 4 * (lane // m) + 2 * r + h),
        b_elem=lambda lane, r, h: (4 * (lane // n) + 2 * r + h, lane % n),
        c_elem=lambda lane, e: (4 * (lane // n) + c_row(e), lane % n),
        ab_types=("bf16", "f16"))


MFMA_LAYOUTS: dict[str, MmaLayout] = {
    lay.name: lay for lay in (_layout("amd_mfma_16x16x16", 16, 16, 16), _layout("amd_mfma_32x32x8", 32, 32, 8))
}
gpu_mma.MMA_LAYOUTS.update(MFMA_LAYOUTS)  # the `mma` op's type rule and the interpreter read that table

# The clang builtin of each layout, per operand type (A and B as 4 x 16 bits, C as c_regs x f32).
BUILTINS: dict[tuple[str, str], str] = {
    ("amd_mfma_16x16x16", "bf16"): "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
    ("amd_mfma_16x16x16", "f16"): "__builtin_amdgcn_mfma_f32_16x16x16f16",
    ("amd_mfma_32x32x8", "bf16"): "__builtin_amdgcn_mfma_f32_32x32x8bf16_1k",
    ("amd_mfma_32x32x8", "f16"): "__builtin_amdgcn_mfma_f32_32x32x8f16",
}


class _MfmaPipeline(_Pipeline):
    """The pipeline with fragments read by each lane from the shared tiles."""

    def _fragment_offsets(self) -> None:
        """Per lane, the i32 offset of its A fragment (per row tile and k step) and the i16 offsets of
        its four B elements (per column tile and k step) in a stage."""
        b, lay, m = self.L.b, self.lay, self.m
        lane, wr, wc = self._lane_warp()
        row0 = b.op("mul", wr, b.index(self.w.wtm))
        col0 = b.op("mul", wc, b.index(self.w.wtn))
        a_row = b.op("add", row0, b.op("and", lane, b.index(lay.m - 1)))
        a_k = b.op("mul", b.op("lshr", lane, b.index(lay.m.bit_length() - 1)), b.index(4))
        b_col = b.op("add", col0, b.op("and", lane, b.index(lay.n - 1)))
        b_k = b.op("mul", b.op("lshr", lane, b.index(lay.n.bit_length() - 1)), b.index(4))
        steps = m.bk // lay.k

        def offset(row: TValue, col: TValue, cpr: int) -> TValue:
            # 16-byte chunks of 8 elements are swizzled; an element keeps its place in its chunk.
            chunk = self.swizzled(row, b.op("lshr", col, b.index(3)), cpr)
            return b.op("add", chunk, b.op("and", col, b.index(7)))

        self.a_off = [[b.op("lshr", offset(b.op("add", a_row, b.index(i * lay.m)),
                                           b.op("add", a_k, b.index(kk * lay.k)), self.opa.cpr), b.index(1))
                       for kk in range(steps)] for i in range(self.mt)]
        self.b_off = [[[offset(b.op("add", b_k, b.index(kk * lay.k + e)), b.op("add", b_col, b.index(j * lay.n)),
                               self.opb.cpr) for e in range(4)] for kk in range(steps)] for j in range(self.nt)]

    def _k_steps(self, a_stage: TValue, b_stage: TValue, acc: dict[tuple[int, int], TValue],
                 tiles: list[tuple[int, int]]) -> None:
        b, lay, m = self.L.b, self.lay, self.m
        a32 = self._cast(a_stage, I32)
        b16 = self._cast(b_stage, I16)

        def pack(lo: TValue, hi: TValue) -> TValue:
            wide = [b.cast("zext", x, I32) for x in (lo, hi)]
            return b.op("or", wide[0], b.op("shl", wide[1], b.const(16, I32)))

        for kk in range(m.bk // lay.k):
            afr = [b.load(b.ptradd(a32, self.a_off[i][kk]), Vector(2, I32)) for i in range(self.mt)]
            bfr = []
            for j in range(self.nt):
                h = [b.load(b.ptradd(b16, off), I16) for off in self.b_off[j][kk]]
                regs = b.op("insert", b.const(0, Vector(2, I32)), pack(h[0], h[1]), index=0)
                bfr.append(b.op("insert", regs, pack(h[2], h[3]), index=1))
            for i, j in tiles:
                acc[(i, j)] = b.op("mma", afr[i], bfr[j], acc[(i, j)], layout=lay.name, ab=m.ab.name)

    def _store_fragments(self, epi: TValue, stride: int, acc: dict[tuple[int, int], TValue]) -> None:
        """Each lane writes its accumulator elements row-major at epi."""
        b, lay = self.L.b, self.lay
        lane, wr, wc = self._lane_warp()
        row = b.op("add", b.op("mul", wr, b.index(self.w.wtm)),
                   b.op("mul", b.op("lshr", lane, b.index(lay.n.bit_length() - 1)), b.index(4)))
        col = b.op("add", b.op("mul", wc, b.index(self.w.wtn)), b.op("and", lane, b.index(lay.n - 1)))
        base = b.ptradd(epi, b.op("add", b.op("mul", row, b.index(stride)), col))
        for (i, j), v in acc.items():
            for e in range(lay.c_regs):
                r, c = lay.c_elem(0, e)
                off = (i * lay.m + r) * stride + j * lay.n + c
                b.store(b.ptradd(base, b.index(off)), b.op("extract", v, index=e))


def lower_matmul_loop(L: _GpuLowering, op: Op) -> bool:
    """Lower `for` op `op` as an MFMA pipeline if the target's matrix unit is an MFMA layout and the
    loop matches the pattern of tessera/ir/gpu_pipeline.py; False if not."""
    if L.t.mma not in MFMA_LAYOUTS:
        return False
    m = match(L, op)
    if m is None:
        return False
    _MfmaPipeline(L, op, m).run()
    return True


__all__ = ["BUILTINS", "MFMA_LAYOUTS", "lower_matmul_loop"]
