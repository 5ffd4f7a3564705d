"""Global-memory accesses of whole register blocks on a GPU: one bounds test per block, then every
slot's vector access back to back.

The GPU lowering (tessera/ir/tile_to_target_gpu.py) moves each slot of a register block as one
16-byte vector when that slot is in bounds, contiguous and aligned, else lane by lane under a mask.
Testing that per slot puts a branch between consecutive loads, and the code after each branch reads
the loaded value, so a thread waits for every load before it issues the next one: one access in
flight per thread, whatever the block size. A memory-bound kernel then runs at the latency of its
loads, not at the bandwidth of the device.

This module tests the whole block once: when the tensor's inner stride is 1, its base, outer strides
and start are aligned to the vector, and the block lies inside the tensor along every axis, every
slot is a full vector access, and the fast branch issues all of them before any value is used (each
thread keeps `rpt * cpt` loads in flight). Otherwise the per-slot path runs unchanged. The block test
applies to layouts whose slots are all part of the block (`Layout.rows_exact` and `chunks_exact`),
which the GPU schedules (tessera/ir/schedule/gpu_heuristics.py) pick for large tensors.

`BLOCK_ACCESS` switches the block test off (bench/gpu.py times both forms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tessera.ir.gpu_layout import Layout
from tessera.ir.target import convert as cv
from tessera.ir.target.ops import Value, Vector

if TYPE_CHECKING:
    from tessera.ir.tile_to_target import TensorArg
    from tessera.ir.tile_to_target_gpu import _GpuLowering

BLOCK_ACCESS = True
Slot = tuple[int, int]


def block_inside(low: _GpuLowering, t: TensorArg, starts: Sequence[Value], shape: tuple[int, ...], lay: Layout,
                 aligned: Value | None) -> Value | None:
    """i1: every slot of the block (of `shape`, at `starts`, in `lay`) is a whole vector access
    inside `t`; None when the block test does not apply (one-element slots, a rank-0 tensor, slots
    outside the block) or is switched off."""
    if not BLOCK_ACCESS or aligned is None or lay.vec == 1 or len(starts) != len(shape):
        return None
    if not (lay.rows_exact and lay.chunks_exact) or shape[-1] % lay.vec:
        return None
    b = low.b
    cond = aligned
    for start, n, ext in zip(starts, shape, t.extents):
        # start < ext also rejects a negative start (a huge unsigned value), so start + n cannot wrap.
        inside = b.cmp("ult", start, ext)
        if n > 1:
            inside = b.op("and", inside, b.cmp("ule", b.op("add", start, b.index(n)), ext))
        cond = b.op("and", cond, inside)
    return cond


def _slot_pointer(low: _GpuLowering, t: TensorArg, starts: Sequence[Value], shape: tuple[int, ...], lay: Layout,
                  rows: dict[int, Value], i: int, j: int) -> Value:
    """The address of slot (i, j) of a block inside the tensor (inner stride 1)."""
    b = low.b
    if i not in rows:
        rows[i] = low._row_access(t, list(starts), low.outer_index(shape, lay, i))[0]
    return b.ptradd(rows[i], b.op("add", starts[-1], low.coords(lay, i, j).col))


def load_slots(low: _GpuLowering, t: TensorArg, starts: Sequence[Value], shape: tuple[int, ...], lay: Layout,
               aligned: Value | None, slot: Callable[[int, int], Value]) -> dict[Slot, Value]:
    """The raw (storage-typed) vector of every slot of a loaded block: all vector loads in one branch
    when the block test holds, `slot(i, j)` (the per-slot access) for each slot otherwise."""
    slots = lay.slots()
    inside = block_inside(low, t, starts, shape, lay, aligned)
    if inside is None:
        return {s: slot(*s) for s in slots}
    b = low.b
    ty = Vector(lay.vec, cv.storage_scalar(t.dtype))
    rows: dict[int, Value] = {}
    with b.if_(inside, [ty] * len(slots)) as br:
        b.yield_([b.load(_slot_pointer(low, t, starts, shape, lay, rows, i, j), ty) for i, j in slots])
        b.else_(br)
        b.yield_([slot(i, j) for i, j in slots])
    return dict(zip(slots, br.results))


def store_slots(low: _GpuLowering, t: TensorArg, starts: Sequence[Value], shape: tuple[int, ...], lay: Layout,
                aligned: Value | None, raws: dict[Slot, Value], keeps: dict[Slot, Value | None],
                slot: Callable[[int, int], None]) -> None:
    """Store every slot's raw vector (under its `keeps` lane mask, if any): all vector stores in one
    branch when the block test holds, `slot(i, j)` (the per-slot access) for each slot otherwise."""
    slots = lay.slots()
    inside = block_inside(low, t, starts, shape, lay, aligned)
    if inside is None:
        for s in slots:
            slot(*s)
        return
    b = low.b
    rows: dict[int, Value] = {}
    with b.if_(inside) as br:
        for i, j in slots:
            p = _slot_pointer(low, t, starts, shape, lay, rows, i, j)
            keep = keeps[(i, j)]
            if keep is None:
                b.store(p, raws[(i, j)])
            else:
                b.store(p, raws[(i, j)], keep)
        b.yield_([])
        b.else_(br)
        for s in slots:
            slot(*s)
        b.yield_([])

