"""Does a tile kernel's schedule fit a target? Budgets as table rows, and the usage model they check.

A `TargetBudget` is what one program (a CTA on a GPU) may use: shared memory per block, registers
(per thread, and of all threads of an SM), threads per block, and on the CPU the local memory of one
program. `check_budget(kernel, budget)` computes the kernel's usage under its schedule and raises
`BudgetError` naming the budget, the resource, the figure and the limit at the first that does not fit.

The usage model (what a GPU lowering of the same Tile IR allocates):
- threads: `warps` x the target's warp size;
- shared memory: every `alloc_shared` block, plus the staging of `dot` operands: a block loaded from
  global memory that feeds a `dot` (directly or through transpose/reshape/cast/broadcast) passes
  through shared memory, once at the kernel's top level and `depth` times inside a `for` (its
  pipeline depth: the loop's `prefetch=`, else the schedule's `stages`);
- registers: the register-space blocks live at once (at the worst point of the program; a value used
  inside a loop lives through the whole loop), spread over the program's threads, 4 bytes per
  register, plus `RESERVED_REGISTERS` per thread for indices and addresses;
- CPU local memory: every block of the program (the CPU lowering gives each its own stack array).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tessera.ir.tile.ops import BlockType, Kernel, Op, Region, TileIRError, Value

RESERVED_REGISTERS = 16  # per thread: indices, addresses, loop counters


@dataclass(frozen=True)
class TargetBudget:
    name: str  # how messages name the target: "H100", "CPU"
    warp_size: int = 32
    threads_per_block: int | None = None
    shared_bytes_per_block: int | None = None
    shared_bytes_per_sm: int | None = None
    registers_per_thread: int | None = None
    registers_per_sm: int | None = None
    local_bytes_per_program: int | None = None  # CPU: stack arrays of one program


KIB = 1024
BUDGETS: dict[str, TargetBudget] = {
    "cpu": TargetBudget("CPU", warp_size=1, local_bytes_per_program=4 << 20),
    "h100": TargetBudget("H100", 32, 1024, 227 * KIB, 228 * KIB, 255, 65536),
    "a100": TargetBudget("A100", 32, 1024, 163 * KIB, 164 * KIB, 255, 65536),
    "mi300x": TargetBudget("MI300X", 64, 1024, 64 * KIB, 64 * KIB, 512, 131072),
}


class BudgetError(TileIRError):
    """A schedule that does not fit a budget: which budget, resource, figure and limit."""

    def __init__(self, kernel: str, budget: TargetBudget, resource: str, needed: int, limit: int, unit: str,
                 detail: str) -> None:
        self.kernel, self.budget, self.resource = kernel, budget, resource
        self.needed, self.limit, self.unit = needed, limit, unit
        super().__init__(f"kernel @{kernel} does not fit the {budget.name}: {resource} needs {_show(needed, unit)}, "
                         f"the {budget.name} allows {_show(limit, unit)} ({detail})")


def _show(n: int, unit: str) -> str:
    if unit == "bytes" and n >= KIB:
        return f"{n} bytes ({n / KIB:.1f} KiB)"
    return f"{n} {unit}"


@dataclass(frozen=True)
class Usage:
    threads: int
    shared_bytes: int
    register_bytes: int  # live register blocks at the worst point
    registers_per_thread: int
    local_bytes: int


def _bytes(t: BlockType) -> int:
    return math.prod(t.shape) * max(1, t.dtype.bits // 8) if t.dtype.bits >= 8 else math.prod(t.shape)


def _walk(region: Region) -> list[Op]:
    out = []
    for op in region.ops:
        out.append(op)
        for r in op.regions:
            out += _walk(r)
    return out


_PASS_THROUGH = ("transpose", "reshape", "cast", "broadcast")


def _feeds_dot(v: Value, users: Mapping[int, list[Op]], seen: set[int] | None = None) -> bool:
    seen = set() if seen is None else seen
    if v.uid in seen:
        return False
    seen.add(v.uid)
    for u in users.get(v.uid, []):
        if u.name == "dot" and v in u.operands[:2]:
            return True
        if u.name in _PASS_THROUGH and any(_feeds_dot(r, users, seen) for r in u.results):
            return True
    return False


def usage(k: Kernel, budget: TargetBudget, loop_depth: Mapping[int, int] | None = None) -> Usage:
    """What `k` uses under its schedule (module docstring). `loop_depth` maps a `for` op's id() to its
    pipeline depth (from `prefetch=`); other loops use the schedule's stages."""
    users: dict[int, list[Op]] = {}
    ops = _walk(k.body)
    for op in ops:
        for v in op.operands:
            users.setdefault(v.uid, []).append(op)
    staged: set[int] = set()
    shared = 0

    def stage(region: Region, depth: int) -> None:
        nonlocal shared
        for op in region.ops:
            if op.name == "load" and isinstance(op.result.ty, BlockType) and _feeds_dot(op.result, users):
                shared += depth * _bytes(op.result.ty)
                staged.add(op.result.uid)
            elif op.name == "alloc_shared":
                shared += _bytes(op.result.ty)  # type: ignore[arg-type]
            for r in op.regions:
                d = (loop_depth or {}).get(id(op), k.schedule.stages)
                stage(r, max(1, d))

    stage(k.body, 1)
    live = _max_live(k, staged)
    threads = k.schedule.warps * budget.warp_size
    regs = -(-live // (4 * threads)) + RESERVED_REGISTERS
    local = sum(_bytes(r.ty) for op in ops for r in op.results if isinstance(r.ty, BlockType))
    local += sum(_bytes(a.ty) for op in ops for reg in op.regions for a in reg.args if isinstance(a.ty, BlockType))
    return Usage(threads, shared, live, regs, local)


def _max_live(k: Kernel, exclude: set[int]) -> int:
    """The most bytes of register blocks live at one point (module docstring)."""
    pos: dict[int, int] = {}  # value uid -> definition position
    end: dict[int, int] = {}  # value uid -> last use position (extended to the end of enclosing loops)
    counter = [0]

    def visit(region: Region, loops: list[tuple[int, set[int]]]) -> None:
        for a in region.args:
            pos[a.uid] = counter[0]
        for op in region.ops:
            counter[0] += 1
            here = counter[0]
            for v in op.operands:
                end[v.uid] = max(end.get(v.uid, -1), here)
            for r in op.regions:
                inner: set[int] = set()
                start = counter[0]
                visit(r, [*loops, (start, inner)])
                stop = counter[0]
                # Values from outside the loop used inside it live until the loop ends.
                for uid in inner:
                    if pos.get(uid, start) < start:
                        end[uid] = max(end.get(uid, -1), stop)
            for v in op.operands:
                for _, inner in loops:
                    inner.add(v.uid)
            counter[0] += 1
            for r in op.results:
                pos[r.uid] = counter[0]

    visit(k.body, [])
    sizes: dict[int, int] = {}
    for op in _walk(k.body):
        for v in (*op.results, *(a for r in op.regions for a in r.args)):
            if isinstance(v.ty, BlockType) and v.ty.space == "reg" and v.uid not in exclude:
                sizes[v.uid] = _bytes(v.ty)
    events: list[tuple[int, int]] = []
    for uid, size in sizes.items():
        start = pos.get(uid, 0)
        events.append((start, size))
        events.append((max(end.get(uid, start), start) + 1, -size))
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        best = max(best, cur)
    return best


def check_budget(k: Kernel, budget: TargetBudget, loop_depth: Mapping[int, int] | None = None) -> Usage:
    """Raise BudgetError at the first resource of `budget` that `k`'s schedule exceeds."""
    u = usage(k, budget, loop_depth)
    s = k.schedule
    if budget.threads_per_block is not None and u.threads > budget.threads_per_block:
        raise BudgetError(k.name, budget, "threads per block", u.threads, budget.threads_per_block, "threads",
                          f"warps={s.warps} x {budget.warp_size} threads")
    for limit, what in ((budget.shared_bytes_per_block, "shared memory per block"),
                        (budget.shared_bytes_per_sm, "shared memory per SM")):
        if limit is not None and u.shared_bytes > limit:
            raise BudgetError(k.name, budget, what, u.shared_bytes, limit, "bytes",
                              f"the staged dot operands and shared blocks of {s}")
    if budget.registers_per_thread is not None:
        cap = budget.registers_per_thread
        if budget.registers_per_sm is not None:
            cap = min(cap, budget.registers_per_sm // max(1, u.threads))
        if u.registers_per_thread > cap:
            raise BudgetError(k.name, budget, "registers per thread", u.registers_per_thread, cap, "registers",
                              f"{u.register_bytes} bytes of blocks live at once over {u.threads} threads")
    if budget.local_bytes_per_program is not None and u.local_bytes > budget.local_bytes_per_program:
        raise BudgetError(k.name, budget, "local memory per program", u.local_bytes, budget.local_bytes_per_program,
                          "bytes", "the blocks of one program")
    return u
