"""Division by a row-uniform divisor on a GPU: one reciprocal per row, a correctly rounded quotient
per element from a multiply and two FMAs.

A softmax divides every element of a row by the row's sum, a layernorm by the row's standard
deviation. An IEEE `div.rn.f32` costs each element about ten instructions on an NVIDIA GPU: a
reciprocal on the special-function unit, five FMAs, an FCHK test and a branch to a slow path, with
convergence barriers around it that keep the scheduler from interleaving neighbouring elements
(bench/NOTES-gpu.md). Here the divisor d is one value per row, so its correctly rounded reciprocal
y = RN(1/d) is computed once (an IEEE division), and each element x takes (Markstein's correction)

    q = RN(x * y);  r = fma(-d, q, x);  q' = fma(r, y, q)

q' is RN(x / d): with y correctly rounded and q within an ulp of x/d, the remainder r is exact and
one correction rounds correctly (Markstein 1990; Cornea, Harrison and Tang, "Scientific computing on
Itanium-based systems", ch. 8). tests/test_gpu_row_divide.py checks the sequence against IEEE division
exhaustively over the 2^23 dividend significands for divisors that include the hard ones (all-ones
significands) and on 2.5e8 random pairs over the exponent range used below: no difference.

The theorem holds while nothing underflows or overflows: the remainder's grid, ulp(d) * ulp(q), must
stay at or above the smallest subnormal, 2^-149. The guard tests the operands, not the quotients
(which would keep a second register per element alive up to the branch): |d| in
[2^-DIVISOR_EXP, 2^DIVISOR_EXP] for the row and |x| in [2^-DIVIDEND_EXP, 2^DIVIDEND_EXP] for every
element of the thread put |q| in [2^-(DIVIDEND_EXP + DIVISOR_EXP + 1), ...], and the grid at or above
2^-(2 DIVISOR_EXP + DIVIDEND_EXP + 47) = 2^-149. A thread with any other element (a zero, a tiny or
huge value, NaN, infinity) divides all its elements with the IEEE division instead: the same values,
one branch per thread instead of one per element. The ranges cover a softmax (the sum in [1, n],
exponentials down to e^-48) and a norm (sqrt(var + eps) >= 2^-16 for any eps >= 2^-32).

Target-neutral: it emits Target IR (`div`, `mul`, `fma`, compares, `if`), so the PTX and HIP printers
print it alike. `ENABLED` switches it off (bench/gpu.py times both forms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.ir.target.ops import Value, Vector

if TYPE_CHECKING:
    from tessera.ir.gpu_layout import Layout
    from tessera.ir.tile import ops as tile
    from tessera.ir.tile_to_target_gpu import _GpuLowering

ENABLED = True
DIVISOR_EXP = 16  # |d| in [2^-16, 2^16]: a softmax's sum (>= 1), a norm's sqrt(var + eps)
DIVIDEND_EXP = 70  # |x| in [2^-70, 2^70]: 2 * 16 + 70 + 47 = 149, the remainder never underflows
GROUP_SLOTS = 64  # slots (vectors) under one guard and branch
Slot = tuple[int, int]


def row_divisor(low: _GpuLowering, op: tile.Op, lay: Layout, shape: tuple[int, ...]) -> dict[int, Value] | None:
    """Row slot -> the f32 divisor of that row, when `op` is an f32 `div` of a block of `shape` by a
    block that holds one value per row (shape [..., 1]) in registers; None otherwise."""
    from tessera.ir.tile_to_target_gpu import Regs

    if not ENABLED or op.name != "div" or len(op.operands) != 2 or shape[-1] <= 1:
        return None
    num, den = op.operands
    if getattr(op.result.ty, "dtype", None) is None or op.result.ty.dtype.name != "f32":  # type: ignore[union-attr]
        return None
    if getattr(num.ty, "shape", None) != shape:
        return None
    blk = low.blocks.get(den.uid)
    if not isinstance(blk, Regs) or blk.dtype.name != "f32" or len(blk.shape) != len(shape):
        return None
    if blk.shape[:-1] != shape[:-1] or blk.shape[-1] != 1 or not blk.layout.holds_rows_of(lay):
        return None
    rows = sorted({i for i, _ in lay.slots()})
    if any((i, 0) not in blk.chunks or isinstance(blk.chunks[(i, 0)].ty, Vector) for i in rows):
        return None
    return {i: blk.chunks[(i, 0)] for i in rows}


def divide(low: _GpuLowering, lay: Layout, nums: dict[Slot, Value], dens: dict[int, Value]) -> dict[Slot, Value]:
    """Every slot's quotient nums[(i, j)] / dens[i], correctly rounded (module docstring): one
    guard and branch per GROUP_SLOTS slots."""
    b = low.b
    slots = list(nums)

    def both(a: Value | None, c: Value) -> Value:
        return c if a is None else b.op("and", a, c)

    def within(x: Value, e: int) -> Value:
        ax = b.op("abs", x)
        return b.op("and", b.cmp("oge", ax, b.like(2.0 ** -e, x)), b.cmp("ole", ax, b.like(2.0 ** e, x)))

    def lanes_of(x: Value) -> int:
        return x.ty.lanes if isinstance(x.ty, Vector) else 1

    def per_lane(v: Value, lanes: int) -> Value:
        return b.splat(v, lanes) if lanes > 1 else v

    row_ok = {i: within(d, DIVISOR_EXP) for i, d in dens.items()}
    recip = {i: b.op("div", b.like(1.0, d), d) for i, d in dens.items()}
    out: dict[Slot, Value] = {}
    for g in range(0, len(slots), GROUP_SLOTS):
        group = slots[g:g + GROUP_SLOTS]
        ok: Value | None = None
        for i in sorted({s[0] for s in group}):
            ok = both(ok, row_ok[i])
        for s in group:
            fine = within(nums[s], DIVIDEND_EXP)
            ok = both(ok, b.op("vreduce", fine, kind="and") if lanes_of(nums[s]) > 1 else fine)
        assert ok is not None
        with b.if_(ok, [nums[s].ty for s in group]) as br:
            fast = []
            for s in group:
                x, n = nums[s], lanes_of(nums[s])
                y, nd = per_lane(recip[s[0]], n), per_lane(b.op("neg", dens[s[0]]), n)
                q = b.op("mul", x, y)
                fast.append(b.op("fma", b.op("fma", nd, q, x), y, q))
            b.yield_(fast)
            b.else_(br)
            b.yield_([b.op("div", nums[s], per_lane(dens[s[0]], lanes_of(nums[s]))) for s in group])
        out.update(zip(group, br.results))
    return out
