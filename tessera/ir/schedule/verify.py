"""The Schedule IR verifier: what must hold of a plan before it is lowered and run.

- buffers: unique names; params and results numbered in order; roots contiguous in their type's
  shape; views over a buffer of the plan, of its dtype, with the type's shape, inside their root;
- kernel calls: a known pattern and a schedule with positive blocks; every argument inside its
  root and covering as many elements as its buffer; outputs never params and never broadcast (two
  elements of one output may not share memory); a kernel never reads a root it writes;
- the body: every operand defined by an earlier body op or bound to an input argument, every output
  value defined, every binding naming an argument;
- order: a kernel or print reads a root only after every kernel writing it has run (parameters
  are always ready); every result is written.
"""

from __future__ import annotations

from tessera.ir.graph.ops import Value
from tessera.ir.schedule.layout import Layout
from tessera.ir.schedule.ops import (
    BUFFER_KINDS,
    PATTERNS,
    Buffer,
    HostPrint,
    KernelCall,
    Plan,
    ScheduleIRError,
)


def verify_plan(plan: Plan) -> None:
    """Raise ScheduleIRError naming the plan and the buffer or kernel at the first violated rule."""
    _Verifier(plan).run()


class _Verifier:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.known = set(plan.buffers)

    def fail(self, where: str, msg: str) -> None:
        raise ScheduleIRError(f"plan @{self.plan.name}, {where}: {msg}")

    def run(self) -> None:
        p = self.plan
        names = [b.name for b in p.buffers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            self.fail("buffers", f"names {sorted(dup)} are used twice")
        for kind, bufs in (("param", p.params), ("result", p.results)):
            for i, b in enumerate(bufs):
                if b not in self.known:
                    self.fail(f"{kind} {i}", f"%{b.name} is not among the plan's buffers")
                if b.kind != kind or b.index != i:
                    self.fail(f"{kind} {i}", f"%{b.name} is a {b.kind} numbered {b.index}")
        for b in p.buffers:
            self.buffer(b)
        last_write: dict[Buffer, int] = {}
        for i, s in enumerate(p.steps):
            if isinstance(s, KernelCall):
                for a in s.args:
                    if a.role == "out":
                        last_write[a.buffer.root] = i
        for i, s in enumerate(p.steps):
            if isinstance(s, KernelCall):
                self.call(s, i, last_write)
            elif isinstance(s, HostPrint):
                for b in s.args:
                    self.ready(b, i, last_write, "print")
            else:
                self.fail(f"step {i}", f"unknown step {type(s).__name__}")
        for b in p.results:
            if b not in last_write:
                self.fail(f"result %{b.name}", "no kernel writes it")

    def buffer(self, b: Buffer) -> None:
        where = f"buffer %{b.name}"
        if b.kind not in BUFFER_KINDS:
            self.fail(where, f"kind '{b.kind}' is not one of {BUFFER_KINDS}")
        shape = tuple(d.value if d.is_const else -1 for d in b.ty.dims)
        if b.layout.shape != shape:
            self.fail(where, f"layout shape {list(b.layout.shape)} differs from its type {b.ty}")
        if b.base is None:
            if b.kind == "view":
                self.fail(where, "a view without a base")
            if b.layout != Layout.contiguous(shape):
                self.fail(where, f"a root buffer must be contiguous, its layout is {b.layout}")
            return
        if b.kind != "view":
            self.fail(where, f"a {b.kind} buffer with a base")
        if b.base not in self.known:
            self.fail(where, f"views %{b.base.name}, which is not in the plan")
        if b.base.dtype != b.dtype:
            self.fail(where, f"a {b.dtype} view of the {b.base.dtype} buffer %{b.base.name}")
        self.inside(where, b.layout, b.root)

    def inside(self, where: str, lay: Layout, root: Buffer) -> None:
        if lay.offset < 0 or lay.first < 0:
            self.fail(where, f"layout {lay} reaches below element 0 of %{root.name}")
        if lay.size and lay.span > root.layout.size:
            self.fail(where, f"layout {lay} reaches element {lay.span - 1} of %{root.name}, "
                             f"which has {root.layout.size}")

    def ready(self, b: Buffer, i: int, last_write: dict[Buffer, int], who: str) -> None:
        root = b.root
        if root.kind == "param":
            return
        w = last_write.get(root)
        if w is None or w >= i:
            self.fail(f"step {i} ({who})", f"reads %{b.name} before a kernel has written %{root.name}")

    def call(self, c: KernelCall, i: int, last_write: dict[Buffer, int]) -> None:
        where = f"kernel @{c.name}"
        if c.pattern not in PATTERNS:
            self.fail(where, f"pattern '{c.pattern}' is not one of {sorted(PATTERNS)}")
        if not c.schedule.block or any(x <= 0 for x in c.schedule.block):
            self.fail(where, f"schedule blocks must be positive, got {c.schedule.block}")
        if c.schedule.blocks_per_program < 1:
            self.fail(where, f"schedule blocks_per_program must be positive, got {c.schedule.blocks_per_program}")
        if c.schedule.blocks_per_program > 1 and not (
                c.pattern == "row_reduction" and c.schedule.block[-1] >= c.space.extents[-1]):
            self.fail(where, "blocks_per_program > 1 applies to row reductions whose row is one block, "
                             f"not to {c.pattern} with the schedule {c.schedule}")
        reads, writes = set(), set()
        for j, a in enumerate(c.args):
            aw = f"{where} argument {j} (%{a.buffer.name})"
            if a.buffer not in self.known:
                self.fail(aw, "its buffer is not in the plan")
            if a.role not in ("in", "out"):
                self.fail(aw, f"role '{a.role}' is not in/out")
            self.inside(aw, a.layout, a.buffer.root)
            # An input may be seen with a broadcast axis dropped (a matmul rhs shared by a batch);
            # an output is seen whole.
            if a.layout.size > a.buffer.layout.size or (a.role == "out"
                                                         and a.layout.size != a.buffer.layout.size):
                self.fail(aw, f"the kernel sees {a.layout.size} elements of a buffer of "
                              f"{a.buffer.layout.size}")
            if a.role == "out":
                if a.buffer.root.kind == "param":
                    self.fail(aw, "a kernel writes a parameter")
                if a.layout.size and any(s == 0 and n > 1 for n, s in zip(a.layout.shape, a.layout.strides)):
                    self.fail(aw, f"an output layout {a.layout} repeats elements")
                writes.add(a.buffer.root)
            else:
                reads.add(a.buffer.root)
                self.ready(a.buffer, i, last_write, c.name)
        both = reads & writes
        if both:
            self.fail(where, f"reads and writes %{min(b.name for b in both)}")
        defined: set[Value] = set()
        for v, j in c.bindings:
            if not 0 <= j < len(c.args):
                self.fail(where, f"a binding names argument {j} of {len(c.args)}")
            if c.args[j].role == "in":
                defined.add(v)
        for op in c.ops:
            for v in op.operands:
                if v not in defined:
                    self.fail(where, f"op {op.name} reads a value neither computed before it in the "
                                     "kernel nor bound to an input")
            defined.update(op.results)
        for v, a in c.outputs:
            if v not in defined:
                self.fail(where, f"stores into %{a.buffer.name} a value the kernel does not compute")
