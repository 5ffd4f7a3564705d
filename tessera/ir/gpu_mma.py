"""Matrix-unit fragment layouts: which lane of a warp holds which element of an MMA tile.

A warp-wide matrix instruction (`mma` in Target IR: NVIDIA `mma.sync`, later AMD `mfma`) computes
D = A @ B + C on one m x n x k tile whose operands are spread over the lanes of a warp. Where each
element lives is the *fragment layout*: a row of `MMA_LAYOUTS`, named by `TargetInfo.mma`, read by
the GPU lowering (tessera/ir/gpu_pipeline.py: where to put the accumulator's elements, which
ldmatrix feeds which operand) and by the test interpreter (to run `mma` lane by lane). A new matrix
unit is a new row: its shape, its register counts and three functions from (lane, register, half)
to (row, column) of A, B and C.

`nv_m16n8k16` is `mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32` (PTX ISA, "Matrix
Fragments for mma.m16n8k16"): with g = lane / 4, t = lane % 4,

    A (16 x 16): register r, half h -> row g + 8 (r % 2), column 2t + h + 8 (r / 2)
    B (16 x 8):  register r, half h -> row (k) 2t + h + 8 r, column g
    C (16 x 8):  element i          -> row g + 8 (i / 2), column 2t + i % 2

16-bit A/B elements are packed two per i32 register, the lower column (A) or row (B) in the low half.
`ldmatrix` (x4) loads exactly these A registers from four 8x8 row-major pieces of shared memory, and
with `.trans` the B registers from a row-major K x N block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tessera.ir.target.ops import F32, I32, TargetIRError, TargetType, Vector

ElemMap = Callable[[int, int, int], tuple[int, int]]  # (lane, register, half) -> (row, column)


@dataclass(frozen=True)
class MmaLayout:
    name: str
    m: int
    n: int
    k: int
    warp: int  # lanes that take part
    a_regs: int  # i32 registers of A per lane (two 16-bit elements each)
    b_regs: int
    c_regs: int  # f32 accumulator elements per lane
    a_elem: ElemMap
    b_elem: ElemMap
    c_elem: Callable[[int, int], tuple[int, int]]  # (lane, element) -> (row, column)
    ab_types: tuple[str, ...]  # operand element types the unit multiplies


def _nv_a(lane: int, r: int, h: int) -> tuple[int, int]:
    g, t = divmod(lane, 4)
    return g + 8 * (r % 2), 2 * t + h + 8 * (r // 2)


def _nv_b(lane: int, r: int, h: int) -> tuple[int, int]:
    g, t = divmod(lane, 4)
    return 2 * t + h + 8 * r, g


def _nv_c(lane: int, i: int) -> tuple[int, int]:
    g, t = divmod(lane, 4)
    return g + 8 * (i // 2), 2 * t + i % 2


MMA_LAYOUTS: dict[str, MmaLayout] = {
    "nv_m16n8k16": MmaLayout("nv_m16n8k16", 16, 8, 16, 32, 4, 2, 4, _nv_a, _nv_b, _nv_c, ("bf16", "f16")),
}


def mma_layout(name: str) -> MmaLayout:
    lay = MMA_LAYOUTS.get(name)
    if lay is None:
        raise TargetIRError(f"unknown mma fragment layout '{name}' (known: {', '.join(MMA_LAYOUTS)})")
    return lay


def mma_types(name: str, ab: str) -> tuple[TargetType, TargetType, TargetType, TargetType]:
    """(A, B, C, result) types of an `mma` with this layout on `ab` operands."""
    lay = mma_layout(name)
    if ab not in lay.ab_types:
        raise TargetIRError(f"mma {name} multiplies {', '.join(lay.ab_types)}, not {ab}")
    c = Vector(lay.c_regs, F32)
    return Vector(lay.a_regs, I32), Vector(lay.b_regs, I32), c, c


# ---------------------------------------------------------------- ldmatrix

LDMATRIX_ROWS = 8  # an ldmatrix piece is 8 x 8 16-bit elements: rows of 16 bytes


def ldmatrix_source(lane: int, reg: int, half: int, trans: bool) -> tuple[int, int]:
    """(lane whose row address is read, element index in that row) of half `half` of register `reg`
    that `lane` receives from an ldmatrix (the register-th 8x8 piece)."""
    g, t = divmod(lane, 4)
    if trans:
        return 8 * reg + 2 * t + half, g
    return 8 * reg + g, 2 * t + half


# ---------------------------------------------------------------- swizzled shared tiles


def swizzle_chunk(row: int, chunk: int, chunks_per_row: int) -> int:
    """The physical 16-byte chunk of logical chunk (row, chunk) of a tile whose rows are
    `chunks_per_row` chunks: within each 128-byte line of eight chunks, the chunk index is XORed with
    the line's row group, so the eight rows one ldmatrix (or one cp.async wave) touches at the same
    logical column fall in eight different bank groups. A permutation inside each line: the tile
    needs a whole number of lines."""
    lin = row * chunks_per_row + chunk
    rows_per_line = max(1, 8 // chunks_per_row)
    return (lin & ~7) | ((lin & 7) ^ ((row // rows_per_line) & 7))


__all__ = ["LDMATRIX_ROWS", "MMA_LAYOUTS", "MmaLayout", "ldmatrix_source", "mma_layout", "mma_types",
           "swizzle_chunk"]
