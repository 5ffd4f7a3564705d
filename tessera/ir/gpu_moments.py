"""A row's mean and sum of squared deviations in one cross-thread reduction (GPU lowering).

A layernorm's Tile IR computes the variance in two passes over the row:

    s = reduce(x) {sum, last axis};  m = div(s, n);  d = sub(x, m);  q = mul(d, d)
    r = reduce(q) {sum, last axis}

On a GPU each last-axis reduction is a warp butterfly and, for a row spread over several warps, a
round through shared memory with a barrier (tessera/ir/gpu_reduce.py): the second one cannot start
before the first has finished across the whole CTA. Here both come out of one such round: each
thread computes the mean m_t and the sum of squared deviations M2_t of its own slots exactly as the
two-pass form does (in registers, no communication), then the threads of a row combine the pairs
(count, mean, M2) with Chan, Golub and LeVeque's update ("Updating formulae and a pairwise algorithm
for computing sample variances", 1979):

    delta = m_b - m_a;  m = m_a + delta * n_b / n;  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n

Every thread of a full row holds the same count, so every butterfly step merges equal counts, where
the update is symmetric in a and b, (m_a + m_b) / 2 and M2_a + M2_b + delta^2 * n_a / 2: both lanes of
a shuffle get the same bits, as the plain sums do. The warps' pairs are merged pairwise (a power of two
of them: equal counts again), in the same order by every thread. The result replaces m (the mean) and r (M2 about the mean); q and the first
sum are never formed. Unlike the textbook one-pass sum of squares this does not cancel on rows with a
large mean (the deviations are taken from each thread's local mean).

Only full rows: the block's row is the whole row (the divisor n is the block's width) and every slot
of every thread holds `vec` elements of it. A ragged row (masked columns, n smaller than the block)
keeps the two-pass form, as does everything outside the GPU lowering (the CPU lowering is unchanged).
Off by default (`ENABLED`): measured slower on the H100 (bench/NOTES-gpu.md, version 4). On the
8192 x 8192 bf16 layernorm (16 warps a row, 16 elements a thread, 3 programs an SM) it took 0.127 ms
against the two-pass form's 0.122 in the same run: the barrier round it saves is latency that the
other resident programs hide, while the three-value merges (27 shuffles instead of 10, ~16 FP
operations a step) and the extra deviations pass add instructions to a kernel that is
instruction-bound. bench/gpu.py --sweep times both forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tessera.ir.target.ops import Value as TValue
from tessera.ir.target.ops import Vector
from tessera.ir.tile.ops import BlockType, Op, ScalarType
from tessera.ir.tile.ops import Value as TileValue

if TYPE_CHECKING:
    from tessera.ir.gpu_layout import Layout
    from tessera.ir.tile_to_target_gpu import _GpuLowering

ENABLED = False


@dataclass(eq=False)
class Moments:
    """One matched mean -> centred square -> sum pattern of a region (module docstring)."""

    total: Op  # s = reduce(x) {sum}
    mean: Op  # m = div(s, n)
    square: Op  # q = mul(d, d)
    m2: Op  # r = reduce(q) {sum}


Plan = dict[int, Moments]  # uid of the op's result -> its match, for each of the four ops


def plan(ops: Sequence[Op]) -> Plan:
    """The patterns of `ops` (one region) that one fused reduction can lower."""
    if not ENABLED:
        return {}
    uses: dict[int, int] = {}
    _count_uses(ops, uses)
    defs = {r.uid: op for op in ops for r in op.results}
    users: dict[int, list[Op]] = {}
    for op in ops:
        for v in op.operands:
            users.setdefault(v.uid, []).append(op)
    out: Plan = {}
    for op in ops:
        if not _is_row_sum(op):
            continue
        x = op.operands[0]
        found = _match(op, x, defs, users, uses)
        if found is not None:
            for o in (found.total, found.mean, found.square, found.m2):
                out[o.result.uid] = found
    return out


def lower(low: _GpuLowering, op: Op, fused: Plan) -> bool:
    """Lower `op` as part of a fused pattern: True when it is done (or was, with its pattern's
    first op), False when the ordinary lowering must take it."""
    if not fused or len(op.results) != 1:
        return False
    found = fused.get(op.result.uid)
    if found is None:
        return False
    if op is not found.total:
        return True  # lowered with its pattern's first op
    x = op.operands[0]
    shape: tuple[int, ...] = x.ty.shape  # type: ignore[union-attr]
    lay = low.layout_for([x], shape)
    low._check_slots(lay)
    if lay.replicated or not lay.chunks_exact or lay.cols % lay.vec:
        # A slot with masked lanes: the whole pattern takes the two-pass form.
        for o in (found.total, found.mean, found.square, found.m2):
            del fused[o.result.uid]
        return False
    means, m2s = _row_moments(low, x, lay, shape)
    from tessera.ir.tile_to_target_gpu import Regs

    f32 = op.result.ty.dtype  # type: ignore[union-attr]
    rows = lay.row_layout()
    low.blocks[found.mean.result.uid] = Regs(rows, found.mean.result.ty.shape, f32,  # type: ignore[union-attr]
                                             {(i, 0): m for i, m in enumerate(means)})
    low.blocks[found.m2.result.uid] = Regs(rows, found.m2.result.ty.shape, f32,  # type: ignore[union-attr]
                                           {(i, 0): q for i, q in enumerate(m2s)})
    return True


# ---------------------------------------------------------------- matching


def _count_uses(ops: Sequence[Op], uses: dict[int, int]) -> None:
    for op in ops:
        for v in op.operands:
            uses[v.uid] = uses.get(v.uid, 0) + 1
        for r in op.regions:
            _count_uses(r.ops, uses)


def _is_f32_block(v: TileValue) -> bool:
    return isinstance(v.ty, BlockType) and v.ty.dtype.name == "f32"


def _is_row_sum(op: Op) -> bool:
    if op.name != "reduce" or str(op.attr("kind")) != "sum" or not _is_f32_block(op.operands[0]):
        return False
    shape = op.operands[0].ty.shape  # type: ignore[union-attr]
    return op.attr("axis") == len(shape) - 1 and _is_f32_block(op.result)


def _only_user(v: TileValue, users: dict[int, list[Op]], uses: dict[int, int]) -> Op | None:
    mine = users.get(v.uid, [])
    return mine[0] if len(mine) == 1 and uses.get(v.uid, 0) == 1 else None


def _match(total: Op, x: TileValue, defs: dict[int, Op], users: dict[int, list[Op]],
           uses: dict[int, int]) -> Moments | None:
    width = x.ty.shape[-1]  # type: ignore[union-attr]
    mean = _only_user(total.result, users, uses)
    if mean is None or mean.name != "div" or mean.operands[0] is not total.result:
        return None
    n = defs.get(mean.operands[1].uid)
    if n is None or n.name != "const" or not isinstance(mean.operands[1].ty, ScalarType):
        return None
    if float(n.attr("value")) != float(width):  # type: ignore[arg-type]
        return None  # a ragged row: the block is wider than the row
    for centred in users.get(mean.result.uid, []):
        if centred.name != "sub" or centred.operands != (x, mean.result):
            continue
        for square in users.get(centred.result.uid, []):
            if square.name != "mul" or square.operands != (centred.result, centred.result):
                continue
            m2 = _only_user(square.result, users, uses)
            if m2 is not None and _is_row_sum(m2) and m2.operands[0] is square.result:
                return Moments(total, mean, square, m2)
    return None


# ---------------------------------------------------------------- the fused reduction


Stats = tuple[TValue, TValue, TValue]  # (m, S, r): a point, sum (x - m)^2 and sum (x - m) of a group


def _row_moments(low: _GpuLowering, x: TileValue, lay: Layout, shape: tuple[int, ...]) -> tuple[list[TValue], list[TValue]]:
    """Each row slot's mean and M2 over the row, in every thread of the row."""
    b = low.b
    count = lay.cpt * lay.vec  # elements of the row in each thread (full rows only)
    stats: list[Stats] = []
    for i in range(lay.rpt):
        xs = [low.operand(x, lay, shape, i, j) for j in range(lay.cpt)]
        total = xs[0]
        for v in xs[1:]:
            total = b.op("add", total, v)
        s = _lane_sum(b, total)
        # A power-of-two count: the multiply by 1/count rounds as the division does (and costs one
        # instruction instead of the IEEE division's ten).
        pow2 = count & (count - 1) == 0
        m = b.op("mul", s, b.like(1.0 / count, s)) if pow2 else b.op("div", s, b.like(float(count), s))
        mv = b.splat(m, lay.vec) if isinstance(xs[0].ty, Vector) else m
        sq: TValue | None = None
        dev: TValue | None = None
        for v in xs:
            d = b.op("sub", v, mv)
            sq = b.op("mul", d, d) if sq is None else b.op("fma", d, d, sq)
            dev = d if dev is None else b.op("add", dev, d)
        assert sq is not None and dev is not None
        stats.append((m, _lane_sum(b, sq), _lane_sum(b, dev)))
    k = count
    if lay.tc > 1:
        mask = min(lay.tc, low.warp) // 2
        while mask >= 1:
            stats = [_merge(b, st, tuple(b.op("shuffle_xor", v, mask=mask) for v in st), k)  # type: ignore[arg-type]
                     for st in stats]
            k *= 2
            mask //= 2
        if lay.tc > low.warp:
            stats, k = _across_warps(low, lay, stats, k)
    # The point m is the rounded mean; r / n is what it misses: mean = m + r / n and
    # M2 = S - r^2 / n (the second moment about the mean).
    means, m2s = [], []
    for m, sq, r in stats:
        rn = b.op("mul", r, b.like(1.0 / k, r))  # k: a power of two times `count`
        if k & (k - 1):
            rn = b.op("div", r, b.like(float(k), r))
        means.append(b.op("add", m, rn))
        m2s.append(b.op("sub", sq, b.op("mul", r, rn)))
    return means, m2s


def _lane_sum(b: object, v: TValue) -> TValue:
    if not isinstance(v.ty, Vector):
        return v
    return b.op("vreduce", v, kind="add")  # type: ignore[attr-defined]


def _merge(b: object, a: Stats, c: Stats, k: int) -> Stats:
    """Two groups of k elements each about their points, merged about the midpoint m:
    S = S_a + S_c + 2 (d_a r_a + d_c r_c) + k (d_a^2 + d_c^2), r = r_a + r_c + k (d_a + d_c), with
    d = point - m. Every operation is symmetric in a and c, so both lanes of a shuffle agree."""
    op = b.op  # type: ignore[attr-defined]
    like = b.like  # type: ignore[attr-defined]
    (ma, sa, ra), (mc, sc, rc) = a, c
    m = op("mul", op("add", ma, mc), like(0.5, ma))
    da, dc = op("sub", ma, m), op("sub", mc, m)
    cross = op("add", op("mul", da, ra), op("mul", dc, rc))
    spread = op("add", op("mul", da, da), op("mul", dc, dc))
    s = op("fma", spread, like(float(k), spread), op("fma", cross, like(2.0, cross), op("add", sa, sc)))
    r = op("fma", op("add", da, dc), like(float(k), da), op("add", ra, rc))
    return m, s, r


def _across_warps(low: _GpuLowering, lay: Layout, stats: list[Stats], k: int) -> tuple[list[Stats], int]:
    """Lane 0 of each warp posts its warp's statistics; after one barrier lane l of every warp of
    a row reads those of the row's warp l mod per_row and a butterfly over per_row lanes merges
    them (every warp the same values in the same lanes: all threads of the row agree). Returns the
    row's statistics and the elements they cover."""
    from tessera.ir.target.ops import F32

    b = low.b
    warps = low.threads // low.warp
    per_row = lay.tc // low.warp  # a power of two, at most a warp: every merge is of equal counts
    scratch = low.alloc_shared(F32, 3 * len(stats) * warps)
    lane = b.op("and", low.tid, b.index(low.warp - 1))
    warp = b.op("lshr", low.tid, b.index(low.warp.bit_length() - 1))
    if len(low.shared_scopes) > 1:
        b.emit("barrier", [])  # inside a loop: the previous iteration's readers first (gpu_reduce)
    with b.if_(b.cmp("eq", lane, b.index(0))):
        for i, st in enumerate(stats):
            for c, v in enumerate(st):
                b.store(b.ptradd(scratch, b.op("add", warp, b.index((3 * i + c) * warps))), v)
    b.emit("barrier", [])
    rl, _ = low._thread_rc(lay.tc)
    mine = b.op("add", b.op("mul", rl, b.index(per_row)), b.op("and", lane, b.index(per_row - 1)))
    out = []
    for i in range(len(stats)):
        st: Stats = tuple(b.load(b.ptradd(scratch, b.op("add", mine, b.index((3 * i + c) * warps))), F32)  # type: ignore[assignment]
                          for c in range(3))
        kk, mask = k, per_row // 2
        while mask >= 1:
            st = _merge(b, st, tuple(b.op("shuffle_xor", v, mask=mask) for v in st), kk)  # type: ignore[arg-type]
            kk, mask = 2 * kk, mask // 2
        out.append(st)
    return out, k * per_row
