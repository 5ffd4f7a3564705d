"""An imperative builder for Target IR functions.

Ops go into the innermost open region; `for_` and `if_` open regions as context managers.
Constants and `alloca`s are hoisted to the function's entry (constants are deduplicated), so
any region can use them and the printed body stays readable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tessera.ir.target.ops import (
    I1,
    I64,
    TARGET_OPS,
    AttrValue,
    Function,
    Op,
    Pointer,
    Region,
    Scalar,
    TargetIRError,
    TargetType,
    Value,
    Vector,
    elem_of,
    lanes_of,
    vec,
)


@dataclass
class Loop:
    iv: Value
    args: list[Value]
    results: list[Value] = field(default_factory=list)
    yielded: bool = False


@dataclass
class Branch:
    then: Region
    other: Region
    result_types: list[TargetType]
    results: list[Value] = field(default_factory=list)
    in_else: bool = False


class Builder:
    def __init__(self) -> None:
        self._regions: list[Region] = []
        self._consts: dict[tuple[object, TargetType], Value] = {}
        self.hoisted: list[Op] = []  # allocas and constants, placed at the function entry

    # -- generic -----------------------------------------------------------------------------

    def emit(self, name: str, operands: Sequence[Value], result_types: Sequence[TargetType] | None = None,
             regions: Sequence[Region] = (), hint: str = "", **attrs: AttrValue) -> Op:
        d = TARGET_OPS.get(name)
        if d is None:
            raise TargetIRError(f"unknown target op '{name}'")
        if result_types is None:
            if d.rule is None:
                raise TargetIRError(f"{name}: result types must be given")
            result_types = d.rule([v.ty for v in operands], attrs)
        op = Op(name, tuple(operands), tuple(attrs.items()),
                tuple(Value(t, hint) for t in result_types), tuple(regions))
        self._regions[-1].ops.append(op)
        return op

    def op(self, name: str, *operands: Value, hint: str = "", **attrs: AttrValue) -> Value:
        return self.emit(name, operands, hint=hint, **attrs).result

    # -- constants and memory ----------------------------------------------------------------

    def const(self, value: float | bool | tuple, ty: TargetType) -> Value:
        e = elem_of(ty)
        if isinstance(value, tuple):
            value = tuple(float(v) if e.is_float else int(v) for v in value)
        elif e.is_float:
            value = float(value)
        else:
            value = int(value)
        key = (repr(value), ty)
        v = self._consts.get(key)
        if v is None:
            v = Value(ty, _const_hint(value))
            self.hoisted.append(Op("const", (), (("value", value),), (v,)))
            self._consts[key] = v
        return v

    def index(self, n: int) -> Value:
        return self.const(n, I64)

    def alloca(self, elem: Scalar, count: int, hint: str = "buf") -> Value:
        v = Value(Pointer("local", elem), hint)
        self.hoisted.append(Op("alloca", (), (("count", count),), (v,)))
        return v

    def ptradd(self, p: Value, offset: Value) -> Value:
        return self.op("ptradd", p, offset)

    def load(self, p: Value, ty: TargetType, mask: Value | None = None, other: Value | None = None,
             hint: str = "") -> Value:
        ops = [p] if mask is None else [p, mask, other]
        return self.emit("load", ops, [ty], hint=hint).result  # type: ignore[list-item]

    def store(self, p: Value, v: Value, mask: Value | None = None) -> None:
        self.emit("store", [p, v] if mask is None else [p, v, mask])

    def gather(self, p: Value, offsets: Value, mask: Value, other: Value) -> Value:
        return self.emit("gather", [p, offsets, mask, other], [other.ty]).result

    def scatter(self, p: Value, offsets: Value, v: Value, mask: Value) -> None:
        self.emit("scatter", [p, offsets, v, mask])

    # -- lanes -------------------------------------------------------------------------------

    def splat(self, x: Value, lanes: int) -> Value:
        if lanes == 1:
            return x
        if isinstance(x.ty, Vector):
            if x.ty.lanes != lanes:
                raise TargetIRError(f"cannot splat {x.ty} to {lanes} lanes")
            return x
        return self.op("splat", x, lanes=lanes)

    def lane_index(self, lanes: int, elem: Scalar = I64) -> Value:
        """<0, 1, ..., lanes-1> (the scalar 0 for one lane)."""
        if lanes == 1:
            return self.const(0, elem)
        return self.const(tuple(range(lanes)), vec(elem, lanes))

    def cast(self, kind: str, x: Value, to: Scalar) -> Value:
        return self.op("cast", x, kind=kind, to=to.kind)

    def cmp(self, pred: str, a: Value, b: Value) -> Value:
        return self.op("cmp", a, b, pred=pred)

    def select(self, c: Value, a: Value, b: Value) -> Value:
        return self.op("select", c, a, b)

    def true_mask(self, lanes: int) -> Value:
        return self.const(True, vec(I1, lanes))

    def like(self, value: float, ty_of: Value) -> Value:
        """A constant of ty_of's type (splat for vectors)."""
        return self.const(value, ty_of.ty)

    # -- regions -----------------------------------------------------------------------------

    @contextmanager
    def function(self, name: str, params: list[Value], doc: str = "") -> Iterator[Function]:
        body = Region([], [])
        fn = Function(name, params, body, doc)
        self._regions.append(body)
        try:
            yield fn
        finally:
            self._regions.pop()
        body.ops.append(Op("return", (), (), ()))
        body.ops[:0] = self.hoisted
        self.hoisted = []
        self._consts = {}

    @contextmanager
    def for_(self, lo: Value, hi: Value, step: Value, inits: Sequence[Value] = (),
             iv_hint: str = "i") -> Iterator[Loop]:
        iv = Value(I64, iv_hint)
        args = [Value(v.ty, v.hint) for v in inits]
        region = Region([iv, *args], [])
        loop = Loop(iv, args)
        self._regions.append(region)
        try:
            yield loop
        finally:
            self._regions.pop()
        if not loop.yielded:
            if inits:
                raise TargetIRError("for: a loop with carried values must end with yield_")
            region.ops.append(Op("yield", (), (), ()))
        op = self.emit("for", [lo, hi, step, *inits], [v.ty for v in inits], regions=[region])
        loop.results = list(op.results)

    def yield_(self, values: Sequence[Value], loop: Loop | None = None) -> None:
        self._regions[-1].ops.append(Op("yield", tuple(values), (), ()))
        if loop is not None:
            loop.yielded = True

    @contextmanager
    def if_(self, cond: Value, result_types: Sequence[TargetType] = ()) -> Iterator[Branch]:
        """with b.if_(c, [T]) as br: ...; b.yield_([x]); br_else(br); ...; b.yield_([y])"""
        br = Branch(Region([], []), Region([], []), list(result_types))
        self._regions.append(br.then)
        try:
            yield br
        finally:
            self._regions.pop()
        for r in (br.then, br.other):
            if not r.ops or r.ops[-1].name != "yield":
                if result_types:
                    raise TargetIRError("if: both branches must yield the results")
                r.ops.append(Op("yield", (), (), ()))
        op = self.emit("if", [cond], list(result_types), regions=[br.then, br.other])
        br.results = list(op.results)

    def else_(self, br: Branch) -> None:
        """Switch from the then-branch to the else-branch of an open `if_`."""
        if br.in_else or self._regions[-1] is not br.then:
            raise TargetIRError("else_: not inside the then-branch of this if")
        self._regions[-1] = br.other
        br.in_else = True


def lanes(v: Value) -> int:
    return lanes_of(v.ty)


def _const_hint(value: float | bool | tuple) -> str:
    """A readable SSA name for a constant: c0, c4096, cm1, c0.5, cinf, cminf, cnan, lanes."""
    if isinstance(value, tuple):
        return "lanes" if len(set(value)) > 1 else _const_hint(value[0])
    text = repr(value).replace("-", "m").replace("+", "")
    return "c" + (text if all(ch.isalnum() or ch == "." for ch in text) else "")
