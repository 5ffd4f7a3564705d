"""The Target IR verifier: SSA scoping, the catalogue's type rules, memory and region shapes.

- every value is defined once and used only where its definition is in scope (its region or an
  enclosing one, earlier);
- every op is in TARGET_OPS with its attributes, and its result types are the type rule's;
- declared results are checked too: a `load`/`gather` yields the pointer's element type (per lane),
  masks have one i1 per lane, `alloca` gives a local pointer, constants fit their type;
- `for` regions take (i64 iv, carried...) and `for`/`if` regions end in a `yield` of the result types;
- a function body ends in `return`.
"""

from __future__ import annotations

from tessera.ir.target.ops import (
    I1,
    I64,
    TARGET_OPS,
    Function,
    Module,
    Op,
    Pointer,
    Region,
    Scalar,
    TargetIRError,
    TargetType,
    Vector,
    elem_of,
    lanes_of,
    vec,
)


class _Verifier:
    def __init__(self, f: Function) -> None:
        self.f = f
        self.seen: set[int] = set()
        self.visible: set[int] = set()

    def fail(self, op: Op | None, msg: str) -> None:
        where = f"func @{self.f.name}" + (f", op {op.name}" if op is not None else "")
        raise TargetIRError(f"{where}: {msg}")

    def define(self, v, op: Op | None) -> None:
        if v.uid in self.seen:
            self.fail(op, f"value %{v.hint or v.uid} is defined twice")
        self.seen.add(v.uid)
        self.visible.add(v.uid)

    def run(self) -> None:
        for p in self.f.params:
            if not isinstance(p.ty, (Scalar, Pointer)):
                self.fail(None, f"parameter %{p.hint} has type {p.ty}; parameters are scalars or pointers")
            self.define(p, None)
        ops = self.f.body.ops
        if not ops or ops[-1].name != "return":
            self.fail(None, "the body must end with return")
        self.region(self.f.body, ())

    def region(self, r: Region, yields: tuple[TargetType, ...] | None) -> None:
        outer = set(self.visible)
        for a in r.args:
            self.define(a, None)
        for i, op in enumerate(r.ops):
            last = i == len(r.ops) - 1
            if op.name in ("yield", "return") and not last:
                self.fail(op, "must be the last op of its region")
            self.op(op)
        if yields is not None and r.ops and r.ops[-1].name == "yield":
            got = tuple(v.ty for v in r.ops[-1].operands)
            if got != yields:
                self.fail(r.ops[-1], f"yields ({', '.join(map(str, got))}), expected "
                                     f"({', '.join(map(str, yields))})")
        self.visible = outer

    def op(self, op: Op) -> None:
        d = TARGET_OPS.get(op.name)
        if d is None:
            self.fail(op, "not in the Target IR catalogue")
            return
        for v in op.operands:
            if v.uid not in self.visible:
                self.fail(op, f"operand %{v.hint or v.uid} is not defined here")
        if d.n_operands >= 0 and len(op.operands) != d.n_operands:
            self.fail(op, f"takes {d.n_operands} operands, got {len(op.operands)}")
        attrs = dict(op.attrs)
        missing = [a for a in d.attrs if a not in attrs]
        if missing:
            self.fail(op, f"missing attributes {missing}")
        ts = [v.ty for v in op.operands]
        try:
            if d.rule is not None:
                expected = d.rule(ts, attrs)
                got = [r.ty for r in op.results]
                if got != expected:
                    self.fail(op, f"results ({', '.join(map(str, got))}) should be "
                                  f"({', '.join(map(str, expected))})")
            else:
                getattr(self, "op_" + op.name)(op, ts, attrs)
        except TargetIRError as e:
            if str(e).startswith("func @"):
                raise
            self.fail(op, str(e))
        if op.name not in ("for", "if"):
            for r in op.results:
                self.define(r, op)

    # -- ops with declared results -----------------------------------------------------------

    def op_const(self, op: Op, ts: list[TargetType], a: dict) -> None:
        t = op.result.ty
        v = a["value"]
        if isinstance(t, Pointer):
            self.fail(op, "pointer constants are not allowed")
        if isinstance(v, tuple) and (not isinstance(t, Vector) or len(v) != t.lanes):
            self.fail(op, f"{len(v)} lane values for type {t}")
        is_float = elem_of(t).is_float
        for x in v if isinstance(v, tuple) else (v,):
            if is_float != isinstance(x, float):
                self.fail(op, f"value {x!r} does not fit {t}")

    def op_alloca(self, op: Op, ts: list[TargetType], a: dict) -> None:
        t = op.result.ty
        if not isinstance(t, Pointer) or t.space != "local":
            self.fail(op, f"result must be a local pointer, got {t}")
        if not isinstance(a["count"], int) or a["count"] <= 0:
            self.fail(op, f"count must be positive, got {a['count']}")

    def op_load(self, op: Op, ts: list[TargetType], a: dict) -> None:
        if len(ts) not in (1, 3) or not isinstance(ts[0], Pointer):
            self.fail(op, "takes (pointer) or (pointer, mask, other)")
            return
        t = op.result.ty
        p = ts[0]
        assert isinstance(p, Pointer)
        if elem_of(t) != p.elem:
            self.fail(op, f"loads {t} through {p}")
        if len(ts) == 3:
            if ts[1] != vec(I1, lanes_of(t)):
                self.fail(op, f"mask {ts[1]} does not fit {t}")
            if ts[2] != t:
                self.fail(op, f"other {ts[2]} is not a {t}")

    def op_gather(self, op: Op, ts: list[TargetType], a: dict) -> None:
        p, offs, mask, other = ts
        t = op.result.ty
        if not isinstance(p, Pointer) or not isinstance(t, Vector) or t.elem != p.elem:
            self.fail(op, f"gathers {t} through {p}")
            return
        if offs != Vector(t.lanes, I64) or mask != Vector(t.lanes, I1) or other != t:
            self.fail(op, f"offsets {offs}, mask {mask}, other {other} do not fit {t}")

    def op_for(self, op: Op, ts: list[TargetType], a: dict) -> None:
        if len(ts) < 3 or any(t != I64 for t in ts[:3]):
            self.fail(op, "lo, hi and step must be i64")
        if len(op.regions) != 1:
            self.fail(op, "has one region")
        body = op.regions[0]
        inits = tuple(ts[3:])
        if [v.ty for v in body.args] != [I64, *inits]:
            self.fail(op, "region args must be the i64 iv and the carried values")
        if tuple(r.ty for r in op.results) != inits:
            self.fail(op, "results must have the carried types")
        self.region(body, inits)
        for r in op.results:
            self.define(r, op)

    def op_if(self, op: Op, ts: list[TargetType], a: dict) -> None:
        if ts != [I1]:
            self.fail(op, f"condition must be i1, got {ts}")
        if len(op.regions) != 2:
            self.fail(op, "has a then and an else region")
        types = tuple(r.ty for r in op.results)
        for r in op.regions:
            if r.args:
                self.fail(op, "branches take no arguments")
            if not r.ops or r.ops[-1].name != "yield":
                self.fail(op, "each branch ends with yield")
            self.region(r, types)
        for r in op.results:
            self.define(r, op)

    def op_program_id(self, op: Op, ts: list[TargetType], a: dict) -> None:
        if op.result.ty != I64:
            self.fail(op, "result must be i64")

    op_thread_id = op_program_id


def verify_function(f: Function) -> None:
    """Raise TargetIRError naming the function and op at the first violated rule."""
    _Verifier(f).run()


def verify_module(m: Module) -> None:
    names = [f.name for f in m.functions]
    if len(set(names)) != len(names):
        raise TargetIRError(f"duplicate function names in {names}")
    for f in m.functions:
        verify_function(f)
