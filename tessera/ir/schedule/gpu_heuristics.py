"""GPU schedules for the memory-bound kernel patterns: elementwise, copy and single-pass row
reductions. The CPU schedules (`heuristics.choose`) stay as they are; `retarget(plan)` replaces them
in a plan compiled for a GPU, before it is lowered to Tile IR.

The numbers come from the GPU lowering (tessera/ir/tile_to_target_gpu.py and gpu_layout.py): a
thread holds slots of one 16-byte vector each (`vec` elements of the kernel's narrowest tensor
dtype), and a block that lies inside its tensor is loaded with all its slots' vector loads in
flight at once (tessera/ir/gpu_memory.py). What a memory-bound kernel needs is enough bytes in
flight per SM and whole, exact layouts (every slot of every thread part of the block):

- elementwise / copy: a program is `warps` warps each thread of which holds `slots` consecutive-
  in-the-warp vectors of every operand: a block of (1, 32 * warps * vec * slots) elements along
  the last collapsed axis (2 vectors, 32 bytes, per thread and operand by default: the best of 1, 2,
  4 and 8 measured on an H100, where a bf16 add then runs at the device's copy rate). Rows shorter
  than one vector per thread keep the CPU schedule;
- row_reduction (the row in one block): `row_elements` elements of a row per thread (the row stays
  in registers: 32 f32 values, 8 warps for an 8192-wide bf16 row), at least one warp per row; rows
  too short to fill a warp's worth get several rows per program, one warp each, so a program has at
  least 4 warps. A 16-bit row whose other row-wide inputs are weights (a norm's w and b, the same
  in every row) that fit in shared memory walks 4 blocks of rows a program when the grid stays
  large (`Schedule.blocks_per_program`: the weights are read once a program and kept in shared
  memory), with registers capped for 1024 resident threads an SM (`Schedule.resident_threads`);
  a smaller grid gets one block a program, 16 elements a thread and a cap of 1536 threads. Longer
  rows keep the CPU schedule;
- matmul: the tensor-core tiles of `matmul_schedule` (bf16/f16 operands; bench/gpu_gemm.py).
Other patterns keep the CPU schedule.
"""

from __future__ import annotations

import math
from dataclasses import replace

from tessera.ir.gpu_layout import MAX_STAGED_BYTES, VECTOR_BYTES
from tessera.ir.schedule.heuristics import SINGLE_PASS_ROW, pow2_at_least
from tessera.ir.schedule.ops import KernelArg, KernelCall, Plan
from tessera.ir.tile.ops import Schedule

ELEMENTWISE_WARPS = 4
ELEMENTWISE_SLOTS = 2  # vectors per thread and operand (bench/NOTES-gpu.md: 2 beat 1, 4 and 8)
# Row elements per thread in a single-pass row reduction: 32 f32 registers of the row (256 threads for
# an 8192-wide row).
ROW_ELEMENTS = 32
# A 16-bit norm's row kernel (the row and weights the same in every row: a layernorm's w and b) walks
# 4 rows a program (Schedule.blocks_per_program): the weights are read from global memory once a
# program and kept in shared memory as bf16, instead of being read again for every row - 32 KiB of
# L1/L2 traffic a row of 32 KiB of DRAM traffic, with spilled registers on top. Its registers are
# capped so that 1024 threads (4 programs) stay resident an SM (64 registers, no spills). H100, 8192^2
# bf16: layernorm 0.122 -> 0.100 ms, rmsnorm 0.100 -> 0.097 (bench/NOTES-gpu.md, version 5).
ROW_BLOCKS_PER_PROGRAM_WITH_WEIGHTS = 4
ROW_RESIDENT_THREADS_STAGED = 1024
# Rows with weights held in registers (f32, or a grid too small to walk several blocks a program):
# 16 elements a thread; 16-bit ones cap their registers for 1536 threads an SM (three rows in flight
# instead of two at the price of a few spilled bytes): layernorm 0.125 -> 0.121 ms, rmsnorm 0.115 ->
# 0.101 (version 3).
ROW_ELEMENTS_WITH_WEIGHTS = 16
ROW_RESIDENT_THREADS_WITH_WEIGHTS = 1536
# Programs a grid keeps at least when its programs walk several blocks (about 8 an SM of an H100).
MIN_PROGRAMS = 1024
MIN_WARPS = 4
MAX_THREADS = 1024


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _row_blocks(ext: tuple[int, ...], v: int, warp: int, row_elements: int) -> tuple[int, int, int, int] | None:
    """(blocks of rows in the grid, rows a block, the block's row length, warps a row) of a
    single-pass row reduction over extents `ext` (rows along ext[-2], leading axes before) holding
    `row_elements` of a row per thread; None for a row narrower than a warp's vectors."""
    rows, cols = ext[-2], ext[-1]
    bk = pow2_at_least(cols)
    chunks = max(1, bk // v)
    per_row = min(chunks, MAX_THREADS, max(warp, _pow2_floor(bk // max(1, row_elements))))
    if per_row < warp:
        return None
    row_warps = per_row // warp
    br = min(pow2_at_least(rows), max(1, MIN_WARPS // row_warps))
    return math.prod(ext[:-2]) * -(-rows // br), br, bk, row_warps


def vector_elements(call: KernelCall) -> int:
    """Elements per 16-byte vector of the kernel's narrowest tensor dtype (what the lowering uses)."""
    narrowest = min((max(1, a.buffer.dtype.bits // 8) for a in call.args), default=4)
    return max(1, VECTOR_BYTES // narrowest)


def _row_args(call: KernelCall) -> list[KernelArg]:
    """The call's inputs read whole, row by row (the row itself, broadcast weights)."""
    return [a for a in call.args if a.role == "in" and a.part == "full"]


def row_inputs(call: KernelCall) -> int:
    """How many of the call's inputs are read whole, row by row."""
    return len(_row_args(call))


def invariant_row_bytes(call: KernelCall, block_rows: int, block_cols: int) -> int | None:
    """The bytes a block of the inputs that are the same in every row (stride 0 along the rows: a
    norm's weights) takes, as stored, when every other row input is the row itself (one input varying
    along the rows); None otherwise."""
    full = _row_args(call)
    same = [a for a in full if a.layout.rows_alike()]
    if not same or len(full) - len(same) != 1:
        return None
    return sum(block_rows * block_cols * max(1, a.buffer.dtype.bits // 8) for a in same)


def gpu_schedule(call: KernelCall, *, warp: int = 32, slots: int = ELEMENTWISE_SLOTS,
                 elementwise_warps: int = ELEMENTWISE_WARPS, row_elements: int | None = None,
                 resident_threads: int | None = None, blocks_per_program: int | None = None) -> Schedule | None:
    """The GPU schedule of a memory-bound call (module docstring), or None to keep its own.
    `row_elements` (row elements per thread) and a row reduction's `resident_threads` (threads per
    SM its registers must leave room for; 0: the code generator's choice) default by the call's
    row-wide inputs."""
    ext = call.space.extents
    if len(ext) < 2:
        return None
    cols = ext[-1]
    v = vector_elements(call)
    s = call.schedule
    if call.pattern in ("elementwise", "copy"):
        threads = warp * elementwise_warps
        if cols < threads * v:
            return None
        per_thread = min(_pow2_floor(slots), _pow2_floor(cols // (threads * v)))
        return replace(s, block=(1, threads * v * per_thread), warps=elementwise_warps)
    if call.pattern == "row_reduction" and cols <= SINGLE_PASS_ROW:
        weighted = row_inputs(call) > 1 and v * 2 >= VECTOR_BYTES  # a narrow row with weights
        if blocks_per_program is None:
            blocks_per_program = 1
            staged_blocks = _row_blocks(ext, v, warp, row_elements or ROW_ELEMENTS)
            if weighted and v * 2 == VECTOR_BYTES and staged_blocks is not None:  # 16-bit rows: measured
                count, br, bk, _ = staged_blocks
                held = invariant_row_bytes(call, br, bk)
                if held is not None and held <= MAX_STAGED_BYTES:
                    per = ROW_BLOCKS_PER_PROGRAM_WITH_WEIGHTS
                    while per > 1 and count // per < MIN_PROGRAMS:
                        per //= 2
                    blocks_per_program = per
        staged = weighted and blocks_per_program > 1
        if row_elements is None:
            # Weights held in registers with the row take half of them: 16 elements a thread.
            row_elements = ROW_ELEMENTS if row_inputs(call) <= 1 or staged else ROW_ELEMENTS_WITH_WEIGHTS
        if resident_threads is None:
            # 16-bit rows only (measured on bf16; an f32 row spills 176 bytes a thread under the cap)
            resident_threads = 0
            if staged:
                resident_threads = ROW_RESIDENT_THREADS_STAGED
            elif weighted and row_elements <= ROW_ELEMENTS_WITH_WEIGHTS:
                resident_threads = ROW_RESIDENT_THREADS_WITH_WEIGHTS
        blocks = _row_blocks(ext, v, warp, row_elements)
        if blocks is None:
            return None  # a row narrower than a warp's vectors: the CPU schedule's layout decides
        _, br, bk, row_warps = blocks
        return replace(s, block=(br, bk), warps=row_warps * br, resident_threads=resident_threads,
                       blocks_per_program=blocks_per_program)
    if call.pattern == "matmul":
        return matmul_schedule(call)
    return None


# Tensor-core matmuls (tessera/ir/gpu_pipeline.py): 16-bit operands, 128 x 128 output tiles over 4
# warps (64 x 64 each), k = 64 in 3 pipeline stages (the best measured on an H100, bench/gpu_gemm.py
# --sweep: 4096^3 at ~400 TFLOP/s; 128 x 256 and 256 x 128 over 8 warps ~380, 4 stages or 8 warps on
# 128 x 128 ~310-320); smaller tiles for small outputs.
MATMUL_BLOCK = (128, 128)
MATMUL_K = 64
MATMUL_WARPS = 4
MATMUL_STAGES = 3
# Output blocks in groups of 8 block rows (Schedule.group_m): the programs resident at once read a
# squarer set of A and B panels, which stay in L2 (8192^3 on an H100: 414 TFLOP/s against 389 row by
# row; the same at 4096^3, whose operands fit in L2).
MATMUL_GROUP_M = 8


def matmul_schedule(call: KernelCall, block: tuple[int, int] = MATMUL_BLOCK, k: int = MATMUL_K,
                    warps: int = MATMUL_WARPS, stages: int = MATMUL_STAGES,
                    group_m: int = MATMUL_GROUP_M) -> Schedule | None:
    """The tensor-core schedule of a matmul call whose operands are bf16 or f16, else None."""
    ops = [a for a in call.args if a.part in ("lhs", "rhs")]
    if len(ops) != 2 or any(a.buffer.dtype.name not in ("bf16", "f16") for a in ops):
        return None
    m, n = call.space.extents[-2], call.space.extents[-1]
    bm = min(block[0], max(32, pow2_at_least(m)))
    bn = min(block[1], max(32, pow2_at_least(n)))
    bk = min(k, max(16, pow2_at_least(call.space.k or 1)))
    return replace(call.schedule, block=(bm, bn), k=bk, warps=warps, stages=stages, group_m=group_m)


def retarget(plan: Plan, *, warp: int = 32, **params: int) -> Plan:
    """Give the memory-bound calls of `plan` their GPU schedules (in place; returns the plan).
    `params` override the defaults of `gpu_schedule` (bench/gpu.py sweeps them)."""
    for step in plan.steps:
        if isinstance(step, KernelCall):
            s = gpu_schedule(step, warp=warp, **params)
            if s is not None:
                step.schedule = s
    return plan
