"""Reductions of the GPU lowering (tessera/ir/tile_to_target_gpu.py): the `reduce` tile op.

Along the last axis (sum/mean/prod/max/min, `reduce_last`) a thread combines its slots, then the tc
threads of a row combine their partials with butterfly warp shuffles (`shuffle_xor`) and, when a row
spans several warps, through shared memory (`row_allreduce`); every thread of the row gets the
result, so it lands in the layout's *row layout* and the elementwise ops after a softmax max or a
layernorm mean read it from registers. argmax/argmin and reductions along another axis
(`reduce_shared`) loop over the reduced axis of the operand in shared memory, each thread for its own
output slots. The element rules (identities, NaN propagation, the mean's division) are those of the
CPU lowering: tessera/ir/target/reduction.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.dtypes import BOOL, DType
from tessera.ir.gpu_layout import Layout, natural
from tessera.ir.target import convert as cv
from tessera.ir.target import reduction as red
from tessera.ir.target.elementwise import compare_predicate
from tessera.ir.target.ops import Op, vec
from tessera.ir.target.ops import Value as TValue

if TYPE_CHECKING:
    from tessera.ir.tile_to_target_gpu import Regs, _GpuLowering


def _regs() -> type[Regs]:
    from tessera.ir.tile_to_target_gpu import Regs

    return Regs


def reduce_last(L: _GpuLowering, op: Op) -> None:
    """sum/mean/prod/max/min along the last axis: per thread, then across the row's threads."""
    b = L.b
    src = op.operands[0]
    shape = L._shape(src)
    kind = str(op.attr("kind"))
    dt: DType = op.result.ty.dtype  # type: ignore[union-attr]
    lay = L.layout_for([src], shape)
    L._check_slots(lay)
    ident = red.identity(kind, dt)
    cs = cv.compute_scalar(dt)
    partials: list[TValue] = []
    for i in range(lay.rpt):
        acc: TValue | None = None
        for j in range(lay.cpt):
            x = L.operand(src, lay, shape, i, j)
            c = L.coords(lay, i, j)
            if not lay.chunks_exact and c.valid is not None:
                x = b.select(c.valid, x, b.const(ident, vec(cs, lay.vec)))
            acc = x if acc is None else red.combine(b, kind, acc, x, dt)
        assert acc is not None
        partials.append(red.lane_reduce(b, kind, acc, dt))
    partials = row_allreduce(L, partials, lay, kind, dt)
    n = shape[-1]
    chunks = {(i, 0): red.finish(b, L.ew, p, kind, n, dt) for i, p in enumerate(partials)}
    L.blocks[op.result.uid] = _regs()(lay.row_layout(), L._shape(op.result), dt, chunks)

def row_allreduce(L: _GpuLowering, partials: list[TValue], lay: Layout, kind: str, dt: DType) -> list[TValue]:
    """Combine each row slot's partial over the tc threads of the row; all of them get the result."""
    b = L.b
    if lay.tc == 1 or lay.replicated:
        return partials
    m = min(lay.tc, L.warp) // 2
    while m >= 1:
        partials = [red.combine(b, kind, p, b.op("shuffle_xor", p, mask=m), dt) for p in partials]
        m //= 2
    if lay.tc <= L.warp:
        return partials
    # A row spans several warps: lane 0 of each warp posts its warp's result, every thread
    # combines the results of its row's warps in order (so all threads agree bit for bit).
    warps = L.threads // L.warp
    per_row = lay.tc // L.warp
    elem = cv.buffer_scalar(dt)
    scratch = L.alloc_shared(elem, lay.rpt * warps)
    lane = b.op("and", L.tid, b.index(L.warp - 1))
    warp = b.op("lshr", L.tid, b.index(L.warp.bit_length() - 1))
    if len(L.shared_scopes) > 1:
        # Inside a loop the previous iteration's readers of `scratch` must finish first; outside
        # one the array is this reduction's own (alloc_shared hands out fresh pieces), unread yet.
        b.emit("barrier", [])
    with b.if_(b.cmp("eq", lane, b.index(0))):
        for i, p in enumerate(partials):
            x = b.cast("zext", p, elem) if dt == BOOL else p
            b.store(b.ptradd(scratch, b.op("add", warp, b.index(i * warps))), x)
    b.emit("barrier", [])
    rl, _ = L._thread_rc(lay.tc)
    first = b.op("mul", rl, b.index(per_row))
    out = []
    for i in range(len(partials)):
        acc: TValue | None = None
        for w in range(per_row):
            x = b.load(b.ptradd(scratch, b.op("add", first, b.index(i * warps + w))), elem)
            if dt == BOOL:
                x = b.cmp("ne", x, b.like(0, x))
            acc = x if acc is None else red.combine(b, kind, acc, x, dt)
        assert acc is not None
        out.append(acc)
    return out

def reduce_shared(L: _GpuLowering, op: Op) -> None:
    """argmax/argmin, and sum/mean/prod/max/min along an axis other than the last: each output
    element loops over the reduced axis of the operand in shared memory."""
    b = L.b
    src = op.operands[0]
    sm = L.shared_view(src)
    in_shape = L._shape(src)
    out_shape = L._shape(op.result)
    axis = int(op.attr("axis"))  # type: ignore[arg-type]
    kind = str(op.attr("kind"))
    out_dt: DType = op.result.ty.dtype  # type: ignore[union-attr]
    lay = natural(out_shape, L.vec, L.threads, L.warp)
    L._check_slots(lay)
    lanes = lay.vec
    last = len(in_shape) - 1
    slots = lay.slots()

    def at(i: int, j: int, k: TValue) -> TValue:
        outer = list(L.outer_index(out_shape, lay, i))
        col = L.coords(lay, i, j).col
        if axis == last:
            col = k
        else:
            outer[axis] = k
        return L.read_shared(sm, in_shape, outer, col, lanes)

    n = in_shape[axis]
    if kind in ("argmax", "argmin"):
        src_dt = sm.dtype
        cmp = compare_predicate("gt" if kind == "argmax" else "lt", src_dt)
        inits = [at(i, j, b.index(0)) for i, j in slots] + [b.splat(b.index(0), lanes) for _ in slots]
        with b.for_(b.index(1), b.index(n), b.index(1), inits, iv_hint="k") as lp:
            nxt_best, nxt_idx = [], []
            for s, (i, j) in enumerate(slots):
                x = at(i, j, lp.iv)
                best, besti = lp.args[s], lp.args[len(slots) + s]
                better = b.cmp(cmp, x, best)
                if src_dt.is_float:
                    better = b.op("or", better, b.op("and", b.cmp("uno", x, x), b.cmp("ord", best, best)))
                nxt_best.append(b.select(better, x, best))
                nxt_idx.append(b.select(better, b.splat(lp.iv, lanes), besti))
            b.yield_(nxt_best + nxt_idx, lp)
        chunks = {s: lp.results[len(slots) + k] for k, s in enumerate(slots)}
    else:
        ident = red.identity(kind, out_dt)
        cs = cv.compute_scalar(out_dt)
        inits = [b.const(ident, vec(cs, lanes)) for _ in slots]
        with b.for_(b.index(0), b.index(n), b.index(1), inits, iv_hint="k") as lp:
            b.yield_([red.combine(b, kind, lp.args[s], at(i, j, lp.iv), out_dt)
                      for s, (i, j) in enumerate(slots)], lp)
        chunks = {s: red.finish(b, L.ew, lp.results[k], kind, n, out_dt) for k, s in enumerate(slots)}
    L.blocks[op.result.uid] = _regs()(lay, out_shape, out_dt, chunks)
