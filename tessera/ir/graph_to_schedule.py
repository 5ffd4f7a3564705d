"""Graph IR -> Schedule IR: partition a specialised function into fused kernels and buffers.

`partition(fn)` first rewrites the nn ops into primitive ones (`schedule.decompose`) and applies the
rewrites that expose fusion (`schedule.prepare`), then walks the ops once, in program order, growing
*groups* — the future kernels — greedily:

- constants and fills are *free*: every kernel that reads one computes it inline (a scalar); so is
  an iota reshaped and broadcast, in kernels iterating over its final shape (block coordinates);
- shape ops on a buffer are views (transpose, broadcast, slice; reshape when the strides allow it,
  else a `copy` kernel); on a value still inside a group they first make that value a buffer —
  except the per-row values of a reduction group, whose reshapes and broadcasts back to the row
  stay inside the kernel. A value whose only use is a transpose (keeping the last axis) is written
  through the inverse transpose of a buffer in the transposed order, so that a reshape after the
  transpose is a view;
- an elementwise op joins the group(s) producing its operands when the shapes agree: an
  elementwise group of its shape, a reduction group as a row value (its shape) or a per-row value,
  a matmul group as epilogue (the matmul's result shape). Operand groups that fit together are
  merged; others are materialised. random starts an elementwise group of its own shape;
- a reduce joins the group of its operand when that group is elementwise over the operand's shape
  (which becomes a reduction group: its ops are the prologue) or a reduction group over the same
  axes (a further pass over the row); otherwise it starts a group;
- a matmul starts a group; an elementwise chain from one buffer to one of its operands (a cast, a
  scale), used nowhere else, moves into it as a prologue applied to every loaded block;
- gather starts a group; each piece of a concat is written in place into a slice of the result by
  the kernel computing it (or by a copy kernel when it is an input or used elsewhere); print becomes
  a host step between kernels.

A join or merge is refused when it would make a kernel read what it writes, directly or through
another kernel (the group graph must stay acyclic). A value leaves its group through a buffer when
it is used outside the group or returned. Results are written by kernels into fresh buffers; a
returned parameter, view or duplicate is copied.

The groups become `KernelCall`s in dependency order (program order where free), with their
iteration space collapsed as far as every argument's strides allow, and a schedule from
`schedule.heuristics`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tessera.dtypes import DType
from tessera.ir.graph.ops import Function, Op, Value
from tessera.ir.schedule import heuristics
from tessera.ir.schedule import layout as lay
from tessera.ir.schedule.decompose import Origin, decompose, static_shape
from tessera.ir.schedule.layout import Layout
from tessera.ir.schedule.ops import (
    Buffer,
    HostPrint,
    IterSpace,
    KernelArg,
    KernelCall,
    Plan,
    ScheduleIRError,
    Step,
    ViewStep,
)
from tessera.ir.schedule.prepare import prepare

VIEW_OPS = ("reshape", "transpose", "broadcast_to", "slice")
FREE_SOURCES = ("constant", "fill", "extent")
COORD_OPS = ("random",)
NEEDS_BUFFERS = ("matmul", "gather", "kernel")  # ops whose operands are read from memory, even constant ones

StatMap = tuple[int | None, ...]  # per dim of a per-row value: the row axis it runs along, or None (size 1)


@dataclass(eq=False)
class _Group:
    uid: int
    pos: int  # the index of the op that created it: groups run in program order where they can
    kind: str  # elementwise | reduction | matmul | copy | gather
    shape: tuple[int, ...]
    red_axes: tuple[int, ...] = ()
    ops: list[Op] = field(default_factory=list)
    level: dict[Value, str] = field(default_factory=dict)  # "full" | "row" | "stat"
    statmap: dict[Value, StatMap] = field(default_factory=dict)
    reads: dict[Value, None] = field(default_factory=dict)  # values read through their buffers
    merged_into: _Group | None = None
    copy_src: Value | None = None  # copy groups: the value copied, and the buffer written
    copy_dst: Buffer | None = None
    has_coords: bool = False  # holds iota or random (values that depend on the element index)
    # matmul groups: per operand index, the buffer value loaded and the elementwise ops applied to
    # each loaded block before the dot (a cast of a bf16 operand, a scale).
    prologue: dict[int, tuple[Value, list[Op]]] = field(default_factory=dict)

    def __hash__(self) -> int:
        return self.uid


def partition(fn: Function) -> Plan:
    """The plan of a specialised graph function (see the module docstring)."""
    pfn, origin = rewritten(fn)
    return _Partitioner(pfn, origin).run()


def rewritten(fn: Function) -> tuple[Function, Origin]:
    """The graph function the partitioner walks: decomposed, with the rewrites that expose fusion."""
    dfn, origin = decompose(fn)
    return prepare(dfn, origin), origin


class _Partitioner:
    def __init__(self, fn: Function, origin: Origin) -> None:
        self.fn = fn
        self.origin = origin
        self.index = {op: i for i, op in enumerate(fn.ops)}
        self.groups: list[_Group] = []
        self.owner: dict[Value, _Group] = {}
        # Values every kernel computes inline: None for constant-like ones (one value everywhere,
        # any shape), a shape for index-like ones (iota through reshapes and broadcasts): computed
        # from the element coordinates, only in kernels iterating over exactly that shape.
        self.free: dict[Value, tuple[int, ...] | None] = {}
        self.pos = 0  # the op being visited, for ordering groups
        self.buf: dict[Value, Buffer] = {}
        self.writers: dict[Buffer, list[_Group]] = {}
        self.buffers: list[Buffer] = []
        self.prints: list[tuple[HostPrint, int]] = []  # with the op index, for ordering
        self.names: dict[str, int] = {}
        self.uses: dict[Value, int] = {}
        for op in fn.ops:
            for v in op.operands:
                self.uses[v] = self.uses.get(v, 0) + 1
        self.returned = set(fn.returns)

    # ------------------------------------------------------------------ buffers

    def _name(self, prefix: str) -> str:
        n = self.names.get(prefix, 0)
        self.names[prefix] = n + 1
        return f"{prefix}{n}"

    def new_buffer(self, v: Value, kind: str, base: Buffer | None = None, layout: Layout | None = None,
                   steps: tuple[ViewStep, ...] = (), index: int = -1, name: str | None = None) -> Buffer:
        """A buffer holding v (its own contiguous storage, or a view of `base` with `layout`)."""
        shape = static_shape(v.ty)
        layout = layout or Layout.contiguous(shape)
        assert layout.shape == shape, (layout, shape)
        if name is None:
            name = self._name({"param": "a", "result": "r", "temp": "t", "view": "v"}[kind])
        b = Buffer(name, v.ty, kind, layout, index, base, steps)
        self.buffers.append(b)
        return b

    def find(self, g: _Group) -> _Group:
        while g.merged_into is not None:
            g = g.merged_into
        return g

    def group_of(self, v: Value) -> _Group | None:
        g = self.owner.get(v)
        return self.find(g) if g is not None else None

    def materialize(self, v: Value) -> Buffer:
        """The buffer holding v, creating a temporary (and, for a free value, a kernel) if needed."""
        b = self.buf.get(v)
        if b is not None:
            return b
        g = self.group_of(v)
        if g is None:
            if v not in self.free:
                raise ScheduleIRError(f"value {v.hint or v.uid} has no producer in the plan")
            g = self.new_group("elementwise", static_shape(v.ty))
            g.copy_src = v  # an elementwise group with no ops: it stores the free value
        b = self.new_buffer(v, "temp")
        self.buf[v] = b
        self.writers.setdefault(b, []).append(g)
        return b

    def single_use(self, v: Value) -> bool:
        return self.uses.get(v, 0) == 1 and v not in self.returned

    def writers_of(self, b: Buffer) -> list[_Group]:
        return [self.find(g) for g in self.writers.get(b.root, [])]

    # ------------------------------------------------------------------ groups

    def new_group(self, kind: str, shape: tuple[int, ...], red_axes: tuple[int, ...] = ()) -> _Group:
        g = _Group(len(self.groups), self.pos, kind, shape, red_axes)
        self.groups.append(g)
        return g

    def preds(self, g: _Group) -> set[_Group]:
        out: set[_Group] = set()
        for v in g.reads:
            out.update(self.writers_of(self.buf[v]))
        out.discard(g)
        return out

    def reaches(self, start: _Group, targets: set[_Group]) -> bool:
        """Whether `start` depends, through buffers, on a group of `targets`."""
        seen: set[_Group] = set()
        stack = [start]
        while stack:
            g = stack.pop()
            if g in targets:
                return True
            if g in seen:
                continue
            seen.add(g)
            stack.extend(self.preds(g))
        return False

    def can_join(self, members: Sequence[_Group], operands: Iterable[Value] = ()) -> bool:
        """Whether the members merged into one kernel, together with an op reading `operands`, keep
        the kernel graph acyclic: the kernel must not read (through a buffer, directly or through
        other kernels) what it writes."""
        cset = set(members)
        checks: list[list[_Group]] = []
        for v in operands:
            if v in self.free:
                continue
            g = self.group_of(v)
            if g is not None and g in cset:
                continue  # computed inside the kernel
            checks.append(self.writers_of(self.buf[v]) if v in self.buf else [g] if g else [])
        for m in members:
            checks.extend(self.writers_of(self.buf[v]) for v in m.reads)
        for ws in checks:
            for w in ws:
                if w in cset or self.reaches(w, cset):
                    return False
        return True

    def merge(self, target: _Group, others: Sequence[_Group], as_level: str,
              statmap: StatMap | None = None) -> None:
        for o in others:
            assert o.ops and o.copy_src is None, "only groups of ops merge"
            for op in o.ops:
                for r in op.results:
                    self.owner[r] = target
            for v, lv in o.level.items():
                retag = o.kind == "elementwise" and target.kind != "elementwise"
                target.level[v] = as_level if retag else lv
                if retag and as_level == "stat":
                    target.statmap[v] = statmap  # type: ignore[assignment]
                elif v in o.statmap:
                    target.statmap[v] = o.statmap[v]
            target.ops.extend(o.ops)
            target.reads.update(o.reads)
            target.has_coords |= o.has_coords
            target.pos = min(target.pos, o.pos)
            for b, ws in self.writers.items():
                self.writers[b] = [target if w is o else w for w in ws]
            o.merged_into = target
        target.ops.sort(key=lambda op: self.index[op])

    def add(self, g: _Group, op: Op, level: str, statmap: StatMap | None = None) -> None:
        g.ops.append(op)
        g.has_coords |= any(self.free.get(v) is not None for v in op.operands if v in self.free)
        for r in op.results:
            self.owner[r] = g
            g.level[r] = level
            if statmap is not None:
                g.statmap[r] = statmap
        for v in op.operands:
            if (v in self.free and op.name not in NEEDS_BUFFERS) or self.group_of(v) is g:
                continue
            self.materialize(v)
            g.reads[v] = None
            if v not in g.level:
                # A buffer read by this op has the op's level (elementwise operands share its
                # shape); a reduce reads a row.
                g.level[v] = "row" if op.name == "reduce" else level
                if statmap is not None and op.name != "reduce":
                    g.statmap[v] = statmap

    # ------------------------------------------------------------------ the walk

    def run(self) -> Plan:
        fn = self.fn
        params = []
        used_names: set[str] = set()
        for i, p in enumerate(fn.params):
            # Parameters keep their names unless they could clash with the numbered buffers.
            ok = p.hint.isidentifier() and not re.fullmatch(r"[artv][0-9]+", p.hint)
            name = p.hint if ok and p.hint not in used_names else f"a{i}"
            used_names.add(name)
            b = self.new_buffer(p, "param", index=i, name=name)
            self.buf[p] = b
            params.append(b)
        for i, op in enumerate(fn.ops):
            self.pos = i
            self.visit(op)
        self.pos = len(fn.ops)
        self.sink_epilogues()
        results = self.assign_results()
        steps: list[Step] = []
        for node in self.order():
            if isinstance(node, _Group):
                steps.append(self.make_call(node, f"k{len(steps) - len(self.prints_before(steps))}"))
            else:
                steps.append(node)
        return Plan(fn.name, params, results, self.buffers, steps, fn.effects)

    @staticmethod
    def prints_before(steps: list[Step]) -> list[Step]:
        return [s for s in steps if isinstance(s, HostPrint)]

    def visit(self, op: Op) -> None:
        name = op.name
        if name in FREE_SOURCES:
            self.free[op.result] = None
        elif name == "iota":
            self.free[op.result] = static_shape(op.result.ty)
        elif name in VIEW_OPS:
            self.view(op)
        elif name in COORD_OPS:
            g = self.new_group("elementwise", static_shape(op.result.ty))
            g.has_coords = True
            self.add(g, op, "full")
        elif op.opdef.category == "elementwise":
            self.elementwise(op)
        elif name == "reduce":
            self.reduce(op)
        elif name == "matmul":
            g = self.new_group("matmul", static_shape(op.result.ty))
            for i, v in enumerate(op.operands):
                if i == 1 and v is op.operands[0]:
                    if 0 in g.prologue:
                        g.prologue[1] = g.prologue[0]
                    break
                self.absorb_prologue(g, i, v)
            self.add(g, op, "full")
        elif name == "concat":
            self.concat(op)
        elif name in ("gather", "kernel"):
            g = self.new_group(name, static_shape(op.result.ty))
            self.add(g, op, "full")
        elif name == "print":
            bufs = [self.materialize(v) for v in op.operands]
            self.prints.append((HostPrint(str(op.attr("format")), bufs), self.index[op]))
        else:
            raise ScheduleIRError(f"graph op '{name}' cannot be planned (not decomposed, not supported)")

    def absorb_prologue(self, g: _Group, i: int, v: Value) -> None:
        """Move a chain of elementwise ops from one buffer to matmul operand v into the matmul: each
        op with one computed operand (the others constants), every value used once, the chain the
        whole of its group. The matmul then applies the chain to each block it loads."""
        e = self.group_of(v)
        if e is None or e.kind != "elementwise" or e.has_coords or e.copy_src is not None:
            return
        chain: list[Op] = []
        cur = v
        while self.group_of(cur) is e:
            p = cur.producer
            if p is None or cur in self.buf or not self.single_use(cur) or p.opdef.category != "elementwise":
                return
            computed = [u for u in p.operands if not (u in self.free and self.free[u] is None)]
            if len(computed) != 1:
                return
            chain.append(p)
            cur = computed[0]
        if set(chain) != set(e.ops) or cur not in self.buf or list(e.reads) != [cur]:
            return
        for p in chain:
            self.owner[p.result] = g
            g.level[p.result] = "prologue"
        g.ops.extend(reversed(chain))
        g.reads[cur] = None
        g.prologue[i] = (cur, chain[::-1])
        e.merged_into = g

    # ---------------------------------------------------------------- views

    def view(self, op: Op) -> None:
        x = op.operands[0]
        out = op.result
        in_shape, out_shape = static_shape(x.ty), static_shape(out.ty)
        if x in self.free:
            if self.free[x] is None:
                self.free[out] = None
                return
            nonunit = [n for n in out_shape if n != 1] == [n for n in in_shape if n != 1]
            if op.name == "broadcast_to" or (op.name == "reshape" and nonunit):
                self.free[out] = out_shape
                return
        g = self.group_of(x)
        if (g is not None and self._identity_view(op, in_shape, out_shape)
                and g.kind in ("elementwise", "reduction", "matmul") and self.can_join([g])):
            self.add(g, op, g.level[x], g.statmap.get(x))
            return
        if g is not None and g.kind == "reduction" and g.level[x] == "stat":
            level, smap = self._stat_view(op, g, g.statmap[x], out_shape)
            if level is not None:
                self.add(g, op, level, smap)
                return
        if (g is not None and op.name == "transpose" and x not in self.buf and self.single_use(x)
                and tuple(op.attr("perm"))[-1] == len(in_shape) - 1):  # type: ignore[arg-type]
            # The transpose is x's only use: its kernel writes x through the inverse transpose of a
            # buffer in the transposed order, so that the transposed value is contiguous (a later
            # reshape of it is then a view, not a copy). The last axis stays innermost.
            perm = tuple(op.attr("perm"))  # type: ignore[arg-type]
            inv = tuple(perm.index(i) for i in range(len(perm)))
            root = self.new_buffer(out, "temp")
            self.buf[out] = root
            self.buf[x] = self.new_buffer(x, "view", base=root, layout=lay.transpose(root.layout, inv),
                                          steps=(ViewStep("transpose", (("perm", inv),)),))
            self.writers.setdefault(root, []).append(g)
            return
        src = self.materialize(x)
        step = ViewStep(op.name, tuple(op.attrs))
        if op.name == "transpose":
            new = lay.transpose(src.layout, op.attr("perm"))  # type: ignore[arg-type]
        elif op.name == "broadcast_to":
            new = lay.broadcast(src.layout, out_shape)
        elif op.name == "slice":
            new = lay.slice_(src.layout, _ints(op.attr("starts")), _ints(op.attr("stops")),
                             op.attr("steps"))  # type: ignore[arg-type]
        else:
            maybe = lay.reshape(src.layout, out_shape)
            if maybe is None:
                self.copy_reshape(op, src)
                return
            new = maybe
        self.buf[out] = self.new_buffer(out, "view", base=src, layout=new, steps=(step,))

    @staticmethod
    def _identity_view(op: Op, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
        if in_shape != out_shape:
            return False
        if op.name == "transpose":
            return tuple(op.attr("perm")) == tuple(range(len(in_shape)))  # type: ignore[arg-type]
        if op.name == "slice":
            return all(s == 1 for s in op.attr("steps")) and all(  # type: ignore[union-attr]
                _ints(op.attr("starts"))[i] == 0 for i in range(len(in_shape)))
        return True

    def _stat_view(self, op: Op, g: _Group, smap: StatMap,
                   out_shape: tuple[int, ...]) -> tuple[str | None, StatMap | None]:
        """A reshape between forms of a per-row value, or its broadcast back over the row, stays in
        the reduction kernel."""
        if not self.can_join([g]):
            return None, None
        kept = [a for a in smap if a is not None]
        if op.name == "reshape":
            nonunit = [n for n in out_shape if n != 1]
            if nonunit != [g.shape[a] for a in kept if g.shape[a] != 1]:
                return None, None
            it = iter(a for a in kept if g.shape[a] != 1)
            return "stat", tuple(next(it) if n != 1 else None for n in out_shape)
        if op.name == "broadcast_to" and out_shape == g.shape:
            in_shape = static_shape(op.operands[0].ty)
            lead = len(out_shape) - len(in_shape)
            for j, (n, a) in enumerate(zip(in_shape, smap)):
                if n != 1 and a != lead + j:
                    return None, None
            return "row", None
        return None, None

    def copy_reshape(self, op: Op, src: Buffer) -> None:
        """A reshape that no strides express: copy into a contiguous buffer of the new shape, written
        through its view in the old shape."""
        out = op.result
        dst = self.new_buffer(out, "temp")
        as_src = lay.reshape(dst.layout, src.shape)
        assert as_src is not None  # any reshape of a contiguous buffer is a view
        dst_view = self.new_buffer(op.operands[0], "view", base=dst, layout=as_src,
                                   steps=(ViewStep("reshape", (("shape", src.shape),)),))
        self.copy_group(op.operands[0], dst_view)
        self.buf[out] = dst

    def copy_group(self, v: Value, dst: Buffer) -> _Group:
        g = self.new_group("copy", static_shape(v.ty))
        g.copy_src = v
        g.copy_dst = dst
        if v not in self.free:
            self.materialize(v)
            g.reads[v] = None
        self.writers.setdefault(dst.root, []).append(g)
        return g

    def concat(self, op: Op) -> None:
        out = op.result
        axis = int(op.attr("axis")) % out.ty.rank  # type: ignore[call-overload]
        dst = self.new_buffer(out, "temp")
        start = 0
        shape = static_shape(out.ty)
        for v in op.operands:
            n = static_shape(v.ty)[axis]
            starts = [0] * len(shape)
            stops = list(shape)
            starts[axis], stops[axis] = start, start + n
            piece = lay.slice_(dst.layout, starts, stops, [1] * len(shape))
            view = self.new_buffer(v, "view", base=dst, layout=piece,
                                   steps=(ViewStep("slice", (("starts", tuple(starts)),
                                                             ("stops", tuple(stops)))),))
            g = self.group_of(v)
            if g is not None and v not in self.buf and self.single_use(v):
                # The kernel computing this piece writes it in place.
                self.buf[v] = view
                self.writers.setdefault(dst, []).append(g)
            else:
                self.copy_group(v, view)
            start += n
        self.buf[out] = dst

    # ---------------------------------------------------------------- elementwise and reduce

    def elementwise(self, op: Op) -> None:
        out = op.result
        if all(v in self.free and self.free[v] is None for v in op.operands):
            self.free[out] = None
            return
        shape = static_shape(out.ty)
        cands: list[_Group] = []
        for v in op.operands:
            g = self.group_of(v)
            if g is not None and g not in cands:
                cands.append(g)
        rank = {"matmul": 0, "reduction": 1, "elementwise": 2}
        cands.sort(key=lambda g: (rank.get(g.kind, 9), g.uid))
        for primary in cands:
            fit = self._fit(primary, op, shape)
            if fit is None:
                continue
            level, smap = fit
            members = [primary]
            for other in cands:
                if other is primary or not self._mergeable(primary, other, op, level, smap, shape):
                    continue
                if self.can_join(members + [other], op.operands):
                    members.append(other)
            if not self.can_join(members, op.operands):
                continue
            self.merge(primary, members[1:], level, smap)
            self.add(primary, op, level, smap)
            return
        g = self.new_group("elementwise", shape)
        self.add(g, op, "full")

    def _fit(self, g: _Group, op: Op, shape: tuple[int, ...]) -> tuple[str, StatMap | None] | None:
        """The level `op` would have in g, or None when it does not fit."""
        if g.kind == "elementwise":
            return ("full", None) if shape == g.shape else None
        if g.kind == "matmul":
            return ("full", None) if shape == g.shape else None
        if g.kind == "reduction":
            levels = {g.level[v] for v in op.operands if self.group_of(v) is g}
            if levels == {"stat"}:
                if any(self.free.get(v) is not None for v in op.operands if v in self.free):
                    return None  # index-like values exist over the full row shape only
                maps = {g.statmap[v] for v in op.operands if self.group_of(v) is g}
                if len(maps) != 1:
                    return None
                return "stat", maps.pop()
            return ("row", None) if shape == g.shape else None
        return None

    def _mergeable(self, primary: _Group, other: _Group, op: Op, level: str, smap: StatMap | None,
                   shape: tuple[int, ...]) -> bool:
        if other.kind == "elementwise":
            if other.shape != shape:
                return False
            return level != "stat" or not other.has_coords
        if other.kind == "reduction" and primary.kind == "reduction":
            if other.shape != primary.shape or other.red_axes != primary.red_axes:
                return False
            # The op's operands from `other` must be at its level (per-row values: along the same axes).
            for v in op.operands:
                if self.group_of(v) is other and (other.level[v] != level or other.statmap.get(v) != smap):
                    return False
            return True
        return False

    def reduce(self, op: Op) -> None:
        x = op.operands[0]
        axes = tuple(sorted(op.attr("axes")))  # type: ignore[arg-type]
        keepdims = bool(op.attr("keepdims"))
        shape = static_shape(x.ty)
        smap: StatMap = (tuple(None if i in axes else i for i in range(len(shape))) if keepdims
                         else tuple(i for i in range(len(shape)) if i not in axes))
        g = self.group_of(x)
        if g is not None and g.shape == shape:
            if g.kind == "elementwise" and self.can_join([g]):
                g.kind = "reduction"
                g.red_axes = axes
                for v in list(g.level):
                    g.level[v] = "row"
                self.add(g, op, "stat", smap)
                return
            if (g.kind == "reduction" and g.red_axes == axes and g.level[x] == "row"
                    and self.can_join([g])):
                self.add(g, op, "stat", smap)
                return
        g = self.new_group("reduction", shape, axes)
        self.add(g, op, "stat", smap)

    # ---------------------------------------------------------------- epilogue tails

    def sink_epilogues(self) -> None:
        """Move the tail of a matmul epilogue that only one other kernel reads into that kernel.

        The greedy walk puts an elementwise op into the first group that can take it, so the ops
        that prepare a matmul result for a following reduction (the cast and square of an rmsnorm
        after a residual add) land in the matmul epilogue, and the matmul writes them all. An
        epilogue op whose result is read only by one elementwise or row kernel of its shape moves
        there when its operands are already matmul outputs (or inputs): the matmul then writes fewer
        tensors and nothing new."""
        changed = True
        while changed:
            changed = False
            for m in [g for g in self.groups if g.merged_into is None and g.kind == "matmul"]:
                for op in sorted(m.ops, key=lambda o: -self.index[o]):
                    if op.name != "matmul" and m.level.get(op.results[0]) == "full" and self.sink(m, op):
                        changed = True

    def sink(self, m: _Group, op: Op) -> bool:
        r = op.result
        b = self.buf.get(r)
        if b is None or b.kind != "temp" or r in self.returned or self.writers_of(b) != [m]:
            return False
        if any(x.base is b for x in self.buffers) or any(b in p.args for p, _ in self.prints):
            return False
        readers = [g for g in self.groups if g.merged_into is None and r in g.reads]
        if len(readers) != 1:
            return False
        (dst,) = readers
        shape = static_shape(r.ty)
        if dst.kind not in ("elementwise", "reduction") or dst.shape != shape or dst.level.get(r) not in ("full", "row"):
            return False
        for u in op.operands:
            if self.group_of(u) is m and u not in self.buf and u not in self.returned:
                return False  # the matmul would have to write u instead: no gain
        if not self.can_join([dst], [u for u in op.operands if self.group_of(u) is not m]):
            return False
        m.ops.remove(op)
        del m.level[r]
        level = dst.level[r]
        del dst.reads[r]
        dst.ops.append(op)
        dst.ops.sort(key=lambda o: self.index[o])
        self.owner[r] = dst
        for u in op.operands:
            if (u not in self.free or op.name in NEEDS_BUFFERS) and self.group_of(u) is not dst:
                dst.reads[u] = None
                dst.level.setdefault(u, level)
        del self.buf[r]
        del self.writers[b]
        self.buffers.remove(b)
        return True

    # ---------------------------------------------------------------- results and order

    def assign_results(self) -> list[Buffer]:
        results = []
        taken: set[Buffer] = set()
        for i, v in enumerate(self.fn.returns):
            b = self.buf.get(v)
            if b is None and v not in self.free:
                b = self.materialize(v)
            if b is not None and b.kind == "temp" and b.base is None and b not in taken:
                b.kind = "result"
                b.index = i
                b.name = f"r{i}"
            else:
                b = self.new_buffer(v, "result", index=i, name=f"r{i}")
                self.copy_group(v, b)
            taken.add(b)
            results.append(b)
        # Temps renamed to results leave gaps in the temp numbering: renumber for readers.
        n = 0
        for b in self.buffers:
            if b.kind == "temp":
                b.name = f"t{n}"
                n += 1
        return results

    def order(self) -> list[_Group | HostPrint]:
        live = [g for g in self.groups if g.merged_into is None]
        nodes: list[_Group | HostPrint] = [*live, *(p for p, _ in self.prints)]
        deps: dict[int, set[int]] = {}
        ids = {id(n): i for i, n in enumerate(nodes)}
        for i, g in enumerate(live):
            deps[i] = {ids[id(p)] for p in self.preds(g)}
        prev = None
        for j, (p, _) in enumerate(self.prints):
            k = len(live) + j
            deps[k] = {ids[id(w)] for b in p.args for w in self.writers_of(b)}
            if prev is not None:
                deps[k].add(prev)
            prev = k

        def first(i: int) -> int:
            n = nodes[i]
            if isinstance(n, HostPrint):
                return self.prints[i - len(live)][1]
            return n.pos

        done: list[int] = []
        placed: set[int] = set()
        while len(done) < len(nodes):
            ready = [i for i in range(len(nodes)) if i not in placed and deps[i] <= placed]
            if not ready:
                raise ScheduleIRError("the kernel groups depend on each other in a cycle (partitioner bug)")
            i = min(ready, key=lambda i: (first(i), i))
            done.append(i)
            placed.add(i)
        return [nodes[i] for i in done]

    # ---------------------------------------------------------------- kernel calls

    def make_call(self, g: _Group, name: str) -> KernelCall:
        body = list(g.ops)
        produced = {r for op in body for r in op.results}
        free_ops: dict[Op, None] = {}

        def need_free(v: Value) -> None:
            p = v.producer
            if p is None or p in free_ops or p in produced:
                return
            for u in p.operands:
                need_free(u)
            free_ops[p] = None

        srcs: list[Value] = []
        for op in body:
            for v in op.operands:
                if v in self.free and op.name not in NEEDS_BUFFERS:
                    need_free(v)
        if g.copy_src is not None:
            srcs.append(g.copy_src)
        for v in srcs:
            if v in self.free:
                need_free(v)
        body = sorted([*free_ops, *body], key=lambda op: self.index[op])

        inputs: list[Value] = []
        for op in body:
            for v in op.operands:
                if (v not in produced and (v not in self.free or op.name in NEEDS_BUFFERS)
                        and v not in inputs):
                    inputs.append(v)
        if g.kind == "copy" and g.copy_src is not None and g.copy_src not in self.free:
            inputs.append(g.copy_src)
        outputs: list[tuple[Value, Buffer]] = []
        for op in g.ops:
            for r in op.results:
                b = self.buf.get(r)
                if b is not None and g in self.writers_of(b):
                    outputs.append((r, b))
        if g.copy_dst is not None:
            outputs.append((g.copy_src, g.copy_dst))  # type: ignore[arg-type]
        elif g.copy_src is not None:
            outputs.append((g.copy_src, self.buf[g.copy_src]))
        ins = [(v, self.buf[v]) for v in inputs]
        builder = {"matmul": self._matmul_call, "gather": self._gather_call,
                   "kernel": self._kernel_call}.get(g.kind, self._loop_call)
        space, args, bindings, pattern = builder(g, body, ins, outputs)
        accum = _accum_of(body)
        dtype = max((a.buffer.dtype for a in args), key=lambda d: d.bits, default=None)
        if pattern == "kernel":
            from tessera.ir.kernel_registry import schedule_of

            schedule = schedule_of(next(o for o in body if o.name == "kernel"))
        else:
            schedule = heuristics.choose(pattern, space, accum or dtype)
        origin = tuple(dict.fromkeys(self.origin.get(op, op.name) for op in g.ops)) or ("copy",)
        return KernelCall(name, pattern, origin, body, args, bindings, space, schedule, accum)

    def _loop_call(self, g: _Group, body: list[Op], ins: list[tuple[Value, Buffer]],
                   outs: list[tuple[Value, Buffer]]) -> tuple[IterSpace, list[KernelArg], list, str]:
        shape = g.shape
        red = g.red_axes if g.kind == "reduction" else ()
        order = tuple(a for a in range(len(shape)) if a not in red) + red
        entries: list[tuple[Value, Buffer, str, Layout]] = []
        for role, pairs in (("in", ins), ("out", outs)):
            for v, b in pairs:
                level = g.level.get(v, "full") if g.kind == "reduction" else "full"
                if level == "stat":
                    full = _stat_layout(b.layout, g.statmap[v], shape)
                    part = "stat"
                else:
                    full = b.layout
                    part = "full"
                    if full.shape != shape:
                        raise ScheduleIRError(f"kernel of shape {shape} reads a {full.shape} value as full")
                entries.append((v, b, role + ":" + part, lay.transpose(full, order)))
        npart = len(shape) - len(red)
        parts = [npart, len(red)] if g.kind == "reduction" else [npart]
        runs, layouts = _collapse([e[3] for e in entries], order, parts, shape)
        if g.kind == "reduction":
            p_runs, k_runs = runs[0], runs[1]
            if len(k_runs) != 1:
                raise ScheduleIRError(f"reduction over axes {red} of {shape}: the operands' strides do "
                                      "not let the reduced axes read as one; not supported yet")
            all_runs = p_runs + k_runs
            pattern = "row_reduction" if red == tuple(range(npart, len(shape))) else "reduce"
        else:
            all_runs = runs[0]
            pad = max(0, 2 - len(all_runs))
            all_runs = [()] * pad + all_runs
            layouts = [_pad_front(lo, pad) for lo in layouts]
            pattern = "copy" if g.kind == "copy" or (not g.ops) else "elementwise"
        space = IterSpace(shape, order, len(red), tuple(tuple(r) for r in all_runs))
        args, bindings = _dedupe(entries, layouts)
        return space, args, bindings, pattern

    def _matmul_call(self, g: _Group, body: list[Op], ins: list[tuple[Value, Buffer]],
                     outs: list[tuple[Value, Buffer]]) -> tuple[IterSpace, list[KernelArg], list, str]:
        mm = next(op for op in body if op.name == "matmul")
        shape = g.shape
        r = len(shape)
        k = static_shape(mm.operands[0].ty)[-1]
        # Per argument: its layout over (batch..., M, N) — lhs over (batch..., M, K), rhs (batch..., K, N).
        entries: list[tuple[Value, Buffer, str, Layout]] = []
        in_buf = dict(ins)
        prologue_ops: set[Op] = set()
        for i, part in ((0, "lhs"), (1, "rhs")):
            src, chain = g.prologue.get(i, (mm.operands[i], []))
            prologue_ops.update(chain)
            entries.append((src, in_buf[src], f"in:{part}", in_buf[src].layout))
        epilogue_reads = {v for op in body if op is not mm and op not in prologue_ops for v in op.operands}
        for v, b in ins:
            if v in epilogue_reads:
                entries.append((v, b, "in:full", b.layout))
        for v, b in outs:
            entries.append((v, b, "out:full", b.layout))
        nb = r - 2
        batch = [lo for lo in (e[3] for e in entries)]
        # Collapse the batch axes together (each argument's first nb axes).
        batch_only = [Layout(lo.shape[:nb], lo.strides[:nb], lo.offset) for lo in batch]
        runs, blays = _collapse(batch_only, tuple(range(nb)), [nb], shape[:nb])
        b_runs = runs[0]
        layouts = [Layout(bl.shape + lo.shape[nb:], bl.strides + lo.strides[nb:], lo.offset)
                   for bl, lo in zip(blays, batch)]
        m_run: tuple[int, ...] = (r - 2,)
        # Fold the innermost batch run into M when the rhs does not vary along it.
        while b_runs:
            nbr = len(b_runs)
            ok = True
            for (_, _, part, _), lo in zip(entries, layouts):
                if part.endswith("rhs"):
                    ok &= lo.shape[nbr - 1] == 1 or lo.strides[nbr - 1] == 0
                else:
                    ok &= lay.can_merge(lo, nbr - 1)
            if not ok:
                break
            new = []
            for (_, _, part, _), lo in zip(entries, layouts):
                if part.endswith("rhs"):
                    new.append(lay.drop_axes(lo, [nbr - 1]) if lo.shape[nbr - 1] == 1 else
                               Layout(lo.shape[:nbr - 1] + lo.shape[nbr:],
                                      lo.strides[:nbr - 1] + lo.strides[nbr:], lo.offset))
                else:
                    new.append(lay.merge(lo, nbr - 1))
            layouts = new
            m_run = tuple(b_runs[-1]) + m_run
            b_runs = b_runs[:-1]
        space = IterSpace(shape, tuple(range(r)), 0, tuple(tuple(x) for x in b_runs) + (m_run, (r - 1,)), k)
        args, bindings = _dedupe(entries, layouts)
        return space, args, bindings, "matmul"

    def _kernel_call(self, g: _Group, body: list[Op], ins: list[tuple[Value, Buffer]],
                     outs: list[tuple[Value, Buffer]]) -> tuple[IterSpace, list[KernelArg], list, str]:
        """A @kernel called from @jit code: its operands in order, then its result, each as its buffer
        is laid out (the kernel reads any strided view); nothing is fused into it."""
        op = next(o for o in body if o.name == "kernel")
        bufs = dict(ins)
        args = [KernelArg(bufs[v], "in", bufs[v].layout) for v in op.operands]
        bindings = [(v, i) for i, v in enumerate(op.operands)]
        for v, b in outs:
            bindings.append((v, len(args)))
            args.append(KernelArg(b, "out", b.layout))
        shape = g.shape
        space = IterSpace(shape, tuple(range(len(shape))), 0, tuple((i,) for i in range(len(shape))))
        return space, args, bindings, "kernel"

    def _gather_call(self, g: _Group, body: list[Op], ins: list[tuple[Value, Buffer]],
                     outs: list[tuple[Value, Buffer]]) -> tuple[IterSpace, list[KernelArg], list, str]:
        op = next(op for op in body if op.name == "gather")
        table, ids = op.operands
        tshape, ishape = static_shape(table.ty), static_shape(ids.ty)
        (tv, tb), = [(v, b) for v, b in ins if v is table]
        (iv, ib), = [(v, b) for v, b in ins if v is ids]
        entries: list[tuple[Value, Buffer, str, Layout]] = []
        layouts = []

        def flat(lo: Layout, split: int, what: str) -> Layout:
            parts = []
            for lo_part in (Layout(lo.shape[:split], lo.strides[:split], lo.offset),
                            Layout(lo.shape[split:], lo.strides[split:], lo.offset)):
                cur = lo_part
                if cur.rank == 0:
                    cur = Layout((1,), (0,), lo.offset)
                while cur.rank > 1:
                    if not lay.can_merge(cur, 0):
                        raise ScheduleIRError(f"gather: the {what} strides do not flatten; not supported")
                    cur = lay.merge(cur, 0)
                parts.append(cur)
            return Layout(parts[0].shape + parts[1].shape, parts[0].strides + parts[1].strides, lo.offset)

        entries.append((tv, tb, "in:table", tb.layout))
        layouts.append(flat(tb.layout, 1, "table"))
        entries.append((iv, ib, "in:ids", ib.layout))
        ids_flat = flat(ib.layout, len(ishape), "ids")
        layouts.append(Layout(ids_flat.shape[:1], ids_flat.strides[:1], ids_flat.offset))
        for v, b in outs:
            entries.append((v, b, "out:full", b.layout))
            layouts.append(flat(b.layout, len(ishape), "result"))
        shape = g.shape
        space = IterSpace(shape, tuple(range(len(shape))), 0,
                          (tuple(range(len(ishape))), tuple(range(len(ishape), len(shape)))), tshape[0])
        args, bindings = _dedupe(entries, layouts)
        return space, args, bindings, "gather"


# ---------------------------------------------------------------------- helpers


def _ints(xs: object) -> list[int]:
    return [int(x) for x in xs]  # type: ignore[union-attr, call-overload]


def _accum_of(body: Sequence[Op]) -> DType | None:
    for op in body:
        if op.name in ("matmul", "reduce"):
            return op.attr("accum")  # type: ignore[return-value]
    return None


def _stat_layout(b: Layout, smap: StatMap, shape: tuple[int, ...]) -> Layout:
    """A per-row value's buffer seen over the full row shape: size 1, stride 0 on the reduced axes."""
    strides = [0] * len(shape)
    extents = [1] * len(shape)
    for n, s, a in zip(b.shape, b.strides, smap):
        if a is not None:
            extents[a] = n
            strides[a] = s
    return Layout(tuple(extents), tuple(strides), b.offset)


def _pad_front(lo: Layout, n: int) -> Layout:
    for _ in range(max(0, n)):
        lo = lay.insert_unit(lo, 0)
    return lo


def _collapse(layouts: list[Layout], order: tuple[int, ...], parts: list[int],
              shape: tuple[int, ...]) -> tuple[list[list[tuple[int, ...]]], list[Layout]]:
    """Merge neighbouring axes (layouts already in iteration order) within each part where every
    layout allows it; drop size-1 axes of the iteration. Returns the runs per part (each part keeps
    at least one run; an empty run is a size-1 axis) and the collapsed layouts."""
    runs_out: list[list[tuple[int, ...]]] = []
    out = [Layout((), (), lo.offset) for lo in layouts]
    pos = 0
    for n in parts:
        axes = list(range(pos, pos + n))
        pos += n
        keep = [a for a in axes if shape[order[a]] != 1]
        cur = [Layout(tuple(lo.shape[a] for a in keep), tuple(lo.strides[a] for a in keep), lo.offset)
               for lo in layouts]
        runs = [(order[a],) for a in keep]
        i = 0
        while i + 1 < len(runs):
            if all(lay.can_merge(c, i) for c in cur):
                cur = [lay.merge(c, i) for c in cur]
                runs[i:i + 2] = [runs[i] + runs[i + 1]]
            else:
                i += 1
        if not runs:
            runs = [()]
            cur = [Layout((1,), (0,), c.offset) for c in cur]
        runs_out.append(runs)
        out = [Layout(o.shape + c.shape, o.strides + c.strides, o.offset) for o, c in zip(out, cur)]
    return runs_out, out


def _dedupe(entries: list[tuple[Value, Buffer, str, Layout]],
            layouts: list[Layout]) -> tuple[list[KernelArg], list[tuple[Value, int]]]:
    args: list[KernelArg] = []
    bindings: list[tuple[Value, int]] = []
    for (v, b, rolepart, _), lo in zip(entries, layouts):
        role, part = rolepart.split(":")
        arg = KernelArg(b, role, lo, part)
        idx = next((i for i, a in enumerate(args) if a.buffer is b and a.role == role and a.layout == lo
                    and a.part == part), None)
        if idx is None:
            args.append(arg)
            idx = len(args) - 1
        bindings.append((v, idx))
    return args, bindings
