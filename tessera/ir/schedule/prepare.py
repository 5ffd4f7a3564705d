"""Graph rewrites that expose fusion, run on the decomposed function before partitioning.

- *Unflatten matmuls.* The builder computes `x[B, S, K] @ w[K, N]` as
  `reshape(matmul(reshape(x, [B*S, K]), w), [B, S, N])`; the reshapes around the matmul would make
  its result a buffer before any epilogue could fuse. It becomes `matmul(x, broadcast_to(w))` over
  [B, S, ...]: the partitioner folds the batch back into M (the weight does not vary along it), so
  the kernel is the same 2-D product, now with its epilogue fused.
- *Views move to the inputs.* A broadcast, transpose or slice of the single-use result of an
  elementwise op on parameters or constants is applied to the op's operands instead
  (`broadcast_to(cast(w))` becomes `cast(broadcast_to(w))`): views of inputs are free, while a view of
  a computed value makes that value a buffer and costs a kernel. Broadcasts move only through cheap
  ops (casts, arithmetic, selects), since the op then runs on every broadcast element.

The rewrites keep the function's semantics exactly (elementwise ops commute with views) and record
the origin of every new op.
"""

from __future__ import annotations

import math

from tessera.ir.graph.ops import ELEMENTWISE, Function, Op, Value, make_op
from tessera.ir.schedule.decompose import Origin, live_ops, static_shape
from tessera.symbolic import Dim

PUSHED_VIEWS = ("broadcast_to", "transpose", "slice")
# Ops cheap enough to run on every element of a broadcast rather than once per source element.
CHEAP = frozenset({"cast", "neg", "abs", "add", "sub", "mul", "div", "maximum", "minimum", "select", "cmp",
                   "and", "or", "not", "relu"})


def prepare(fn: Function, origin: Origin) -> Function:
    return _Prepare(fn, origin).run()


class _Prepare:
    def __init__(self, fn: Function, origin: Origin) -> None:
        self.fn = fn
        self.origin = origin
        self.uses: dict[Value, list[Op]] = {}
        for op in fn.ops:
            for v in op.operands:
                self.uses.setdefault(v, []).append(op)
        self.returned = set(fn.returns)
        self.env: dict[Value, Value] = {p: p for p in fn.params}
        self.ops: list[Op] = []
        self.current = ""

    def single_use(self, v: Value) -> bool:
        return len(self.uses.get(v, [])) == 1 and v not in self.returned

    def emit(self, name: str, operands: list[Value], hint: str = "", **attrs: object) -> Value:
        op = make_op(name, operands, hint, **attrs)  # type: ignore[arg-type]
        self.ops.append(op)
        self.origin[op] = self.current
        return op.result

    def run(self) -> Function:
        for op in self.fn.ops:
            self.current = self.origin.get(op, op.name)
            if all(r in self.env for r in op.results) and op.results:
                continue  # replaced by an earlier rewrite
            if op.name == "matmul" and self.unflatten(op):
                continue
            if op.name not in PUSHED_VIEWS:
                self.copy(op)
                continue
            feeds_matmul = self.single_use(op.result) and self.uses[op.result][0].name == "matmul"
            if self.pushable(op, op.operands[0], feeds_matmul):
                self.env[op.result] = self.push(op, op.operands[0], feeds_matmul)
                continue
            self.copy(op)
        returns = [self.env[v] for v in self.fn.returns]
        f = self.fn
        return Function(f.name, list(f.params), live_ops(self.ops, returns), returns, f.effects,
                        f.constraints, f.symbols, f.span)

    def copy(self, op: Op) -> None:
        args = [self.env[v] for v in op.operands]
        if all(a is v for a, v in zip(args, op.operands)):
            self.ops.append(op)
            for r in op.results:
                self.env[r] = r
            return
        new = make_op(op.name, args, op.results[0].hint if op.results else "", op.span,
                      **dict(op.attrs))  # type: ignore[arg-type]
        self.ops.append(new)
        self.origin[new] = self.origin.get(op, op.name)
        for old, r in zip(op.results, new.results):
            self.env[old] = r

    # -------------------------------------------------------------- views

    def pushable(self, view: Op, x: Value, anywhere: bool = False) -> bool:
        """Whether view(x) may become x's elementwise op on views of its operands: x used once, the op
        cheap for a broadcast, and the views ending on inputs — or anywhere, when the view feeds a
        matmul operand (the elementwise ops then become the matmul's load prologue)."""
        p = x.producer
        if p is None or p.name not in ELEMENTWISE or not self.single_use(x):
            return False
        if view.name == "broadcast_to" and p.name not in CHEAP:
            return False
        return all(self.input_like(u) or self.pushable(view, u, anywhere) or anywhere for u in p.operands)

    def input_like(self, v: Value) -> bool:
        """A parameter or constant, through views: a view of it is free. (A view of a computed value
        would make that value a buffer, and the moved op would lose its place in that value's
        kernel.)"""
        while v.producer is not None and v.producer.name in ("reshape", *PUSHED_VIEWS):
            v = v.producer.operands[0]
        return v.producer is None or v.producer.name in ("constant", "fill", "extent") or v.ty.rank == 0

    def push(self, view: Op, x: Value, anywhere: bool = False) -> Value:
        """view(x) as the elementwise op of x applied to views of its operands."""
        p = x.producer
        assert p is not None
        self.current = self.origin.get(view, view.name)
        args = []
        for u in p.operands:
            if view.name == "broadcast_to" and u.ty.rank == 0:
                args.append(self.emit("broadcast_to", [self.env[u]], **dict(view.attrs)))
            elif self.pushable(view, u, anywhere):
                args.append(self.push(view, u, anywhere))
            else:
                attrs = dict(view.attrs)
                if view.name == "broadcast_to":
                    attrs["shape"] = view.result.ty.dims
                args.append(self.emit(view.name, [self.env[u]], **attrs))
        self.current = self.origin.get(p, p.name)
        return self.emit(p.name, args, x.hint, **dict(p.attrs))

    # -------------------------------------------------------------- matmuls

    def unflatten(self, mm: Op) -> bool:
        a, w = mm.operands
        out = mm.result
        flat = a.producer
        if a.ty.rank != 2 or w.ty.rank != 2 or flat is None or flat.name != "reshape":
            return False
        x = flat.operands[0]
        xs = static_shape(x.ty)
        p, k = static_shape(a.ty)
        n = static_shape(w.ty)[1]
        # The lead axes of x whose product is the rows of the flattened operand.
        lead = next((i for i in range(1, len(xs) + 1) if math.prod(xs[:i]) == p and math.prod(xs[i:]) == k),
                    None)
        if lead is None or lead < 2 and len(xs) == 2:
            return False
        want = xs[:lead] + (n,)
        users = self.uses.get(out, [])
        if out in self.returned or not users or any(
                u.name != "reshape" or static_shape(u.result.ty) != want for u in users):
            return False
        x3 = self.env[x]
        if len(xs) - lead != 1:
            x3 = self.emit("reshape", [x3], shape=tuple(Dim.const(d) for d in xs[:lead] + (k,)))
        # x3 is [*batch, M, K] with M = xs[lead - 1]: the weight is broadcast over the batch axes only.
        shape = tuple(Dim.const(d) for d in xs[:lead - 1] + (k, n))
        bcast = make_op("broadcast_to", [w], shape=shape)  # a template: the view the weight needs
        if self.pushable(bcast, w, anywhere=True):
            wb = self.push(bcast, w, anywhere=True)
        else:
            wb = self.emit("broadcast_to", [self.env[w]], shape=shape)
        self.current = self.origin.get(mm, mm.name)
        m3 = self.emit("matmul", [x3, wb], out.hint, **dict(mm.attrs))
        self.uses.setdefault(wb, []).append(m3.producer)  # type: ignore[arg-type]
        for u in users:
            self.env[u.result] = m3
        return True
