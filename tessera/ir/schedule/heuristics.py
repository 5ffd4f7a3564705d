"""The default schedule of a kernel: block sizes from its collapsed iteration extents, the vector
width from the host CPU, GPU mapping hints (warps, stages). Later the autotuner replaces these.

Rules of thumb (CPU first; the GPU lowerings read the same numbers):
- elementwise / copy: a (rows, cols) block of about `ELEMENTWISE_BLOCK` elements, cols up to 1024
  and at least a vector's worth; more rows when rows are short;
- reductions: the whole row in one block when it is at most `SINGLE_PASS_ROW` long (one pass over
  memory), else blocks of `ROW_CHUNK` looped over; rows per program so a block holds about
  `REDUCTION_BLOCK` elements;
- matmul: (64, 64) output tiles with k = 64 (a 48 KiB working set of f32 blocks: L1-sized),
  shrunk to the extents of small problems;
- gather: one id per program, up to 1024 columns.
"""

from __future__ import annotations

import functools

from tessera.dtypes import F32, DType
from tessera.ir.schedule.ops import IterSpace
from tessera.ir.tile.ops import Schedule

ELEMENTWISE_BLOCK = 4096
REDUCTION_BLOCK = 4096
SINGLE_PASS_ROW = 8192
ROW_CHUNK = 2048
MATMUL_TILE = (64, 64)
MATMUL_K = 64
DEFAULT_VECTOR_BITS = 256  # 8 f32 lanes, when the host CPU cannot be asked


def pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


@functools.cache
def host_vector_bits() -> int:
    try:
        from tessera.runtime.cpu_features import host_cpu, vector_bits
    except ImportError:
        return DEFAULT_VECTOR_BITS
    return vector_bits(host_cpu())


def vector_width(dtype: DType | None) -> int:
    """Elements of `dtype` per host vector register (narrow floats compute in f32 lanes)."""
    d = dtype or F32
    bits = max(d.bits, 32) if d.is_float else max(d.bits, 8)
    return max(1, host_vector_bits() // bits)


def choose(pattern: str, space: IterSpace, dtype: DType | None) -> Schedule:
    vec = vector_width(dtype)
    ext = space.extents
    if pattern in ("elementwise", "copy"):
        rows, cols = ext[-2], ext[-1]
        bc = min(pow2_at_least(cols), 1024)
        br = min(pow2_at_least(rows), max(1, ELEMENTWISE_BLOCK // bc))
        return Schedule(block=(br, bc), vector=min(vec, bc), warps=4, stages=1)
    if pattern in ("row_reduction", "reduce"):
        rows, k = ext[-2], ext[-1]
        bk = pow2_at_least(k) if k <= SINGLE_PASS_ROW else ROW_CHUNK
        br = min(pow2_at_least(rows), max(1, REDUCTION_BLOCK // bk))
        warps = min(8, max(1, br * bk // 1024))  # ~32 elements per GPU thread: no register spills
        return Schedule(block=(br, bk), vector=min(vec, bk), warps=warps, stages=1)
    if pattern == "matmul":
        m, n = ext[-2], ext[-1]
        k = space.k or 1
        bm = min(MATMUL_TILE[0], pow2_at_least(m))
        bn = min(MATMUL_TILE[1], pow2_at_least(n))
        bk = min(MATMUL_K, pow2_at_least(k))
        return Schedule(block=(bm, bn), k=bk, vector=min(vec, bn), warps=4, stages=2)
    if pattern == "gather":
        bc = min(pow2_at_least(ext[-1]), 1024)
        return Schedule(block=(1, bc), vector=min(vec, bc), warps=1, stages=1)
    raise ValueError(f"no schedule heuristic for pattern '{pattern}'")
