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

The two branches meet with every slot's raw vector as their results. A 16-bit element takes a
whole 32-bit register there (a PTX `.b16` register is one), so a bf16 row would hold twice the
registers its words need from the loads until it is decoded; with `PACKED_JOIN` the branches yield
the loaded 32-bit words instead (two elements each) and the lanes are taken apart after the join,
which ptxas folds into the decoding (bf16 -> f32 is a shift or a mask of the word). Registers are
what bound the rows in flight per SM of a row kernel (bench/NOTES-gpu.md).

`BLOCK_ACCESS` and `PACKED_JOIN` switch these off (bench/gpu.py times both forms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tessera.ir.gpu_layout import Layout
from tessera.ir.target import convert as cv
from tessera.ir.target.ops import I16, I32, Value, Vector

if TYPE_CHECKING:
    from tessera.ir.tile_to_target import TensorArg
    from tessera.ir.tile_to_target_gpu import _GpuLowering

BLOCK_ACCESS = True
PACKED_JOIN = True
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
    packed = PACKED_JOIN and ty.elem == I16 and lay.vec % 2 == 0
    words = lay.vec // 2 if packed else 1
    with b.if_(inside, [I32] * (words * len(slots)) if packed else [ty] * len(slots)) as br:
        fast = [b.load(_slot_pointer(low, t, starts, shape, lay, rows, i, j), ty) for i, j in slots]
        b.yield_([w for v in fast for w in _pack(low, v)] if packed else fast)
        b.else_(br)
        slow = [slot(i, j) for i, j in slots]
        b.yield_([w for v in slow for w in _pack(low, v)] if packed else slow)
    if not packed:
        return dict(zip(slots, br.results))
    return {s: _unpack(low, br.results[k * words:(k + 1) * words], ty) for k, s in enumerate(slots)}


def _pack(low: _GpuLowering, v: Value) -> list[Value]:
    """The 16-bit lanes of v as 32-bit words, two lanes each (the lower lane in the low half)."""
    b = low.b
    assert isinstance(v.ty, Vector)
    out = []
    for k in range(0, v.ty.lanes, 2):
        lo = b.cast("zext", b.op("extract", v, index=k), I32)
        hi = b.cast("zext", b.op("extract", v, index=k + 1), I32)
        out.append(b.op("or", lo, b.op("shl", hi, b.like(16, hi))))
    return out


def _unpack(low: _GpuLowering, words: Sequence[Value], ty: Vector) -> Value:
    """The vector of 16-bit lanes `words` hold (the inverse of _pack)."""
    b = low.b
    v = b.splat(b.const(0, I16), ty.lanes)
    for k, w in enumerate(words):
        v = b.op("insert", v, b.cast("trunc", w, I16), index=2 * k)
        v = b.op("insert", v, b.cast("trunc", b.op("lshr", w, b.like(16, w)), I16), index=2 * k + 1)
    return v


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

