"""Blocked layouts: how the elements of a Tile IR block are spread over the threads of a GPU program.

A block of shape [s0, ..., s{r-1}] is seen as `rows` x `cols` (rows = s0 * ... * s{r-2}, cols = the
last axis). A row is cut into chunks of `vec` contiguous elements - one vector access each (16 bytes
of the kernel's narrowest tensor element). `tc` consecutive threads share a row, chunk by chunk
(thread `cl` takes chunks cl, cl + tc, ...), so the lanes of a warp touch consecutive memory; the
`tr = threads / tc` groups of threads take rows rl, rl + tr, ... . A thread therefore holds
`rpt` x `cpt` *slots*, slot (i, j) being the chunk `cl + j * tc` of row `rl + i * tr`:

    thread t:  rl = t // tc,  cl = t % tc
    slot (i, j) -> row rl + i * tr, columns (cl + j * tc) * vec ... + vec - 1

A row is reduced by combining a thread's slots, then the tc threads of the row with warp shuffles
(butterfly, inside a warp when tc <= the warp size: 32, or 64 on AMD CDNA) and, when a row spans several warps, through shared memory.
The reduced value is held by every thread of the row: the *row layout* of a layout (cols = 1,
replicated over the tc threads), so that a later elementwise op of the full shape reads it from the
thread's own registers.

`natural(shape, ...)` is the layout a block gets when nothing else decides: `tc` is the number of
chunks in a row, capped to keep a row inside one warp unless there are too few rows to occupy all
warps. Slots past the end of the block (rows beyond `rows`, chunks beyond the row) exist when the
block does not divide evenly; they are masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tessera.ir.target.ops import TargetIRError

WARP = 32
VECTOR_BYTES = 16  # a slot: one 16-byte vector access of the kernel's narrowest element
# Blocks read only inside loops kept in shared memory, as stored (tile_to_target_gpu._loop_only_loads);
# the GPU schedules stage a norm's weights when they fit (tessera/ir/schedule/gpu_heuristics.py).
MAX_STAGED_BYTES = 32 * 1024


class GpuUnsupported(TargetIRError, NotImplementedError):
    """A kernel the GPU lowering or the PTX emitter cannot compile yet (an op, a dtype, a size):
    reported to users as "not available yet", not as an internal error."""


def pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def pow2_ceil(n: int) -> int:
    return 1 << max(0, (max(1, n) - 1).bit_length())


@dataclass(frozen=True)
class Layout:
    rows: int
    cols: int
    vec: int  # contiguous elements of a row per slot
    tc: int  # threads sharing a row (a power of two dividing `threads`)
    threads: int
    replicated: bool = False  # cols == 1 and every one of the tc threads of a row holds the value

    @property
    def chunks(self) -> int:
        return math.ceil(self.cols / self.vec)

    @property
    def tr(self) -> int:
        return self.threads // self.tc

    @property
    def cpt(self) -> int:
        return 1 if self.replicated else math.ceil(self.chunks / self.tc)

    @property
    def rpt(self) -> int:
        return math.ceil(self.rows / self.tr)

    @property
    def rows_exact(self) -> bool:
        """Every row slot of every thread is a row of the block."""
        return self.rows % self.tr == 0

    @property
    def chunks_exact(self) -> bool:
        """Every chunk slot of every thread is a chunk of its row."""
        return self.replicated or self.chunks % self.tc == 0

    def slots(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.rpt) for j in range(self.cpt)]

    def row_layout(self) -> Layout:
        """Where a reduction along the last axis leaves its results: one value per row slot, held by
        all tc threads of the row."""
        return Layout(self.rows, 1, 1, self.tc, self.threads, replicated=self.tc > 1)

    def holds_rows_of(self, other: Layout) -> bool:
        """self (cols == 1) gives each thread of `other` the value of each of its row slots."""
        return (self.cols == 1 and self.rows == other.rows and self.tc == other.tc
                and self.threads == other.threads and (self.replicated or self.tc == 1))

    def __str__(self) -> str:
        rep = ", replicated" if self.replicated else ""
        return (f"layout<{self.rows}x{self.cols}, vec={self.vec}, threads={self.tr}x{self.tc}, "
                f"slots={self.rpt}x{self.cpt}{rep}>")


def split_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of a block shape."""
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


def natural(shape: tuple[int, ...], vec: int, threads: int, warp: int = WARP) -> Layout:
    """The default layout of a block of `shape` with vector width `vec` (a power of two) over
    `threads` threads (a power of two) in warps of `warp` threads (the target's warp_size)."""
    rows, cols = split_shape(shape)
    v = vec
    while v > 1 and cols % v:
        v //= 2
    chunks = math.ceil(cols / v)
    # A row in one warp keeps reductions in shuffles; wider only when the rows cannot fill the warps.
    tc = min(pow2_floor(min(chunks, threads)), max(warp, pow2_ceil(math.ceil(threads / max(rows, 1)))))
    # tc divides threads, so the thread groups are whole (a non-power-of-two warp count: 3 warps of 32
    # take rows in 3 groups, or in 6 of 16 ...): the largest power of two dividing both.
    return Layout(rows, cols, v, math.gcd(tc, threads), threads)
