"""Graph IR verifier: the invariants every pass keeps and every consumer may rely on.

Per function: SSA (each value defined once, before its uses, all operands from the function), every
op known to the catalogue with its operand count and its attributes in schema order and of the
schema's kinds (and string attributes from `ATTR_CHOICES`), result types equal to the catalogue's
inference, the structural rules of each op family (elementwise operands of one shape, matmul batch
and contraction dims, reduce axes, transpose perms, slice bounds, integer splats in range, print
formats with one `{}` per operand, ...), each op's effect declared by the function, every dim
symbol declared in `symbols`, and the `where` constraints readable.
Dims are compared symbolically: equal normal forms, or equal as proven from the function's `where`
constraints. With a module, `call` ops are checked against their callee.

Failures raise `IRError` naming the function and the offending op as printed.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence

from tessera.constraints import ConstraintSet
from tessera.dtypes import BOOL, DType
from tessera.ir.graph.ops import (
    ATTR_CHOICES,
    BINARY,
    OPS,
    AttrValue,
    Function,
    IRError,
    Module,
    Op,
    TensorType,
    Value,
    call_result_types,
    parse_constraint,
)
from tessera.ir.graph.printer import Namer, print_op
from tessera.symbolic import Dim, DimError

EFFECT_KINDS = ("random", "io", "memory", "state", "collective", "nondet")

# Elementwise ops whose operands (all of them) share one dtype as well as one shape.
_SAME_DTYPE = frozenset(BINARY) | {"cmp"}


def verify_module(m: Module) -> None:
    seen: set[str] = set()
    for f in m.functions:
        if f.name in seen:
            raise IRError(f"module defines function @{f.name} twice")
        seen.add(f.name)
    for f in m.functions:
        verify_function(f, m)


def verify_function(f: Function, module: Module | None = None) -> None:
    """Check `f`; `call` ops are checked against their callees in `module` when it is given."""
    _Verifier(f, module).run()


def _is_kind(v: AttrValue, kind: str) -> bool:
    if kind == "int":
        return type(v) is int
    if kind == "float":
        return type(v) in (float, int)
    if kind == "bool":
        return type(v) is bool
    if kind in ("str", "func"):
        return isinstance(v, str)
    if kind == "dtype":
        return isinstance(v, DType)
    if kind == "dim":
        return isinstance(v, Dim)
    if kind == "ints":
        return isinstance(v, tuple) and all(type(x) is int for x in v)
    if kind == "dims":
        return isinstance(v, tuple) and all(isinstance(x, Dim) for x in v)
    return False


class _Verifier:
    def __init__(self, f: Function, module: Module | None) -> None:
        self.f = f
        self.module = module
        self.names = Namer()
        self.defined: set[Value] = set()
        self._cs: ConstraintSet | None = None
        self.op: Op | None = None

    # -- reporting and comparisons ------------------------------------------------------------

    def fail(self, msg: str) -> IRError:
        where = f"@{self.f.name}"
        if self.op is not None:
            line = print_op(self.op, self.names)
            span = f" (from {self.op.span})" if self.op.span is not None else ""
            where += f": `{line}`{span}"
        return IRError(f"{where}: {msg}")

    @property
    def cs(self) -> ConstraintSet:
        if self._cs is None:
            self._cs = ConstraintSet(c for text in self.f.constraints for c in parse_constraint(text))
        return self._cs

    def dim_eq(self, a: Dim, b: Dim) -> bool:
        return a == b or self.cs.prove_eq(a, b)

    def dims_eq(self, a: Sequence[Dim], b: Sequence[Dim]) -> bool:
        return len(a) == len(b) and all(self.dim_eq(x, y) for x, y in zip(a, b))

    def type_eq(self, a: TensorType, b: TensorType) -> bool:
        return a.dtype == b.dtype and self.dims_eq(a.dims, b.dims)

    def refuted_negative(self, d: Dim) -> bool:
        """True when `d` is provably negative (a bound that is certainly out of range)."""
        _, hi = self.cs.bounds(d)
        return hi is not None and hi < 0

    # -- the function ---------------------------------------------------------------------------

    def run(self) -> None:
        f = self.f
        self.check_function_attrs()
        for i, p in enumerate(f.params):
            if p in self.defined:
                raise self.fail(f"parameter {i} is the same value as an earlier parameter")
            if p.producer is not None:
                raise self.fail(f"parameter {i} is the result of an op")
            self.check_type(p.ty, f"parameter {i}")
            self.names.define(p)
            self.defined.add(p)
        for op in f.ops:
            self.op = op
            self.check_op(op)
            for r in op.results:
                self.names.define(r)
                self.defined.add(r)
        self.op = None
        for i, v in enumerate(f.returns):
            if v not in self.defined:
                raise self.fail(f"returned value {i} ({self.names.use(v)}) is not defined in the function")

    def check_function_attrs(self) -> None:
        f = self.f
        for e in f.effects:
            if e not in EFFECT_KINDS:
                raise self.fail(f"unknown effect '{e}' (known: {', '.join(EFFECT_KINDS)})")
        if len(set(f.symbols)) != len(f.symbols):
            raise self.fail(f"symbols {list(f.symbols)} list a symbol twice")
        for s in f.symbols:
            try:
                Dim.sym(s)
            except DimError:
                raise self.fail(f"symbol {s!r} is not an identifier") from None
        for text in f.constraints:
            for c in parse_constraint(text):
                extra = (c.lhs.free_symbols | c.rhs.free_symbols) - set(f.symbols)
                if extra:
                    raise self.fail(f"where constraint '{text}' mentions undeclared symbol {min(extra)}")

    def check_type(self, t: TensorType, what: str) -> None:
        if not isinstance(t, TensorType) or not isinstance(t.dtype, DType):
            raise self.fail(f"{what} has no tensor type: {t!r}")
        for d in t.dims:
            self.check_dim(d, f"{what} type {t}")

    def check_dim(self, d: object, what: str) -> None:
        if not isinstance(d, Dim):
            raise self.fail(f"{what}: dim {d!r} is a {type(d).__name__}, not a Dim")
        extra = d.free_symbols - set(self.f.symbols)
        if extra:
            raise self.fail(f"{what}: symbol {min(extra)} is not among the function's symbols "
                            f"{list(self.f.symbols)}")

    # -- one op ---------------------------------------------------------------------------------

    def check_op(self, op: Op) -> None:
        opdef = OPS.get(op.name)
        if opdef is None:
            raise self.fail(f"unknown op '{op.name}'")
        for i, v in enumerate(op.operands):
            if v not in self.defined:
                raise self.fail(f"operand {i} is not defined before this op in the function (SSA)")
        for i, r in enumerate(op.results):
            if r in self.defined or r in op.results[:i]:
                raise self.fail(f"result {i} is already defined (SSA: one definition per value)")
            if r.producer is not op:
                raise self.fail(f"result {i} does not name this op as its producer")
        n = len(op.operands)
        if opdef.n_operands >= 0 and n != opdef.n_operands:
            raise self.fail(f"{op.name} takes {opdef.n_operands} operands, got {n}")
        if op.name == "concat" and n == 0:
            raise self.fail("concat takes at least one operand")
        self.check_attrs(op)
        for i, r in enumerate(op.results):
            self.check_type(r.ty, f"result {i}")
        check = _CHECKS.get(op.name) or _CHECKS.get(opdef.category)
        if check is not None:
            check(self, op)
        self.check_result_types(op)
        self.check_effects(op)

    def check_attrs(self, op: Op) -> None:
        schema = OPS[op.name].attrs
        keys = [k for k, _ in op.attrs]
        want = [k for k, _ in schema]
        if keys != want:
            raise self.fail(f"attributes {keys} do not match the schema {want} (names and order)")
        for (key, kind), (_, v) in zip(schema, op.attrs):
            if not _is_kind(v, kind):
                raise self.fail(f"attribute '{key}' must be of kind {kind}, got {type(v).__name__} {v!r}")
            if kind == "dim":
                self.check_dim(v, f"attribute '{key}'")
            elif kind == "dims":
                for d in v:  # type: ignore[union-attr]
                    self.check_dim(d, f"attribute '{key}'")
            choices = ATTR_CHOICES.get((op.name, key))
            if choices is not None and v not in choices:
                raise self.fail(f"attribute '{key}' is {v!r}; expected one of {', '.join(choices)}")

    def check_result_types(self, op: Op) -> None:
        operand_types = [v.ty for v in op.operands]
        if op.name == "call":
            callee = self.callee(op)
            if callee is None:
                return
            try:
                expected = call_result_types(callee, operand_types)
            except IRError as exc:
                raise self.fail(str(exc)) from None
        else:
            try:
                expected = OPS[op.name].infer(operand_types, dict(op.attrs))
            except (IRError, DimError, IndexError, KeyError, TypeError, ValueError) as exc:
                raise self.fail(f"cannot infer the result types: {exc}") from None
        got = [r.ty for r in op.results]
        if len(got) != len(expected):
            raise self.fail(f"{op.name} has {len(got)} results, the catalogue gives {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected)):
            if not self.type_eq(g, e):
                raise self.fail(f"result {i} has type {g}, but {op.name} of these operands gives {e}")

    def callee(self, op: Op) -> Function | None:
        if self.module is None:
            return None  # checked by verify_module, which knows the callees
        name = op.attr("callee")
        for g in self.module.functions:
            if g.name == name:
                return g
        raise self.fail(f"callee @{name} is not a function of the module")

    def check_effects(self, op: Op) -> None:
        if op.name == "call":
            callee = self.callee(op)
            needed: tuple[str, ...] = callee.effects if callee is not None else ()
        else:
            effect = OPS[op.name].effect
            needed = (effect,) if effect else ()
        missing = [e for e in needed if e not in self.f.effects]
        if missing:
            raise self.fail(f"effect '{missing[0]}' is not in the function's effects {list(self.f.effects)}")

    # -- op families ----------------------------------------------------------------------------

    def axis_in_range(self, axis: int, rank: int, what: str) -> None:
        if not 0 <= axis < rank:
            raise self.fail(f"{what} {axis} is out of range for rank {rank} (axes are 0..{rank - 1})")

    def elementwise(self, op: Op) -> None:
        ts = [v.ty for v in op.operands]
        for i, t in enumerate(ts[1:], 1):
            if not self.dims_eq(t.dims, ts[0].dims):
                raise self.fail(f"elementwise operand {i} has shape [{', '.join(map(str, t.dims))}], operand 0 "
                                f"has [{', '.join(map(str, ts[0].dims))}] (broadcasts are explicit broadcast_to)")
        if op.name in _SAME_DTYPE and ts[0].dtype != ts[1].dtype:
            raise self.fail(f"{op.name} operands have dtypes {ts[0].dtype} and {ts[1].dtype}; casts are explicit")
        if op.name == "select":
            if ts[0].dtype != BOOL:
                raise self.fail(f"select condition has dtype {ts[0].dtype}, expected bool")
            if ts[1].dtype != ts[2].dtype:
                raise self.fail(f"select branches have dtypes {ts[1].dtype} and {ts[2].dtype}")

    def splat_value(self, op: Op) -> None:
        """An integer or bool `constant`/`fill` holds a value of its dtype (floats round to theirs)."""
        value = float(op.attr("value"))  # type: ignore[arg-type]
        dtype: DType = op.attr("dtype")  # type: ignore[assignment]
        if dtype.kind == "bool" and value not in (0.0, 1.0):
            raise self.fail(f"{op.name} value {value!r} is not a bool (0.0 or 1.0)")
        if dtype.is_int:
            lo, hi = int_range(dtype)
            if not (math.isfinite(value) and value == math.floor(value) and lo <= value <= hi):
                raise self.fail(f"{op.name} value {value!r} is not an {dtype} (an integer in {lo}..{hi})")

    def print_format(self, op: Op) -> None:
        """Each `{}` of the format is the next operand (`{{` and `}}` are braces), one per operand."""
        fmt: str = op.attr("format")  # type: ignore[assignment]
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(fmt) if name is not None]
        except ValueError as exc:
            raise self.fail(f"print format {fmt!r}: {exc} (write '{{{{' and '}}}}' for braces)") from None
        if any(f != ("", "", None) for f in fields):
            raise self.fail(f"print format {fmt!r}: only bare '{{}}' placeholders are allowed")
        if len(fields) != len(op.operands):
            raise self.fail(f"print format {fmt!r} has {len(fields)} '{{}}' for {len(op.operands)} operands")

    def matmul(self, op: Op) -> None:
        x, y = (v.ty for v in op.operands)
        if x.rank < 2 or y.rank < 2 or x.rank != y.rank:
            raise self.fail(f"matmul operands must have one rank >= 2, got {x.rank} and {y.rank}")
        if not self.dims_eq(x.dims[:-2], y.dims[:-2]):
            raise self.fail(f"matmul batch dims differ: {x} and {y}")
        if not self.dim_eq(x.dims[-1], y.dims[-2]):
            raise self.fail(f"matmul contraction dims differ: x.shape[-1] ({x.dims[-1]}) must equal "
                            f"y.shape[-2] ({y.dims[-2]})")

    def axes(self, op: Op) -> None:
        rank = op.operands[0].ty.rank
        axes: tuple[int, ...] = op.attr("axes")  # type: ignore[assignment]
        for a in axes:
            self.axis_in_range(a, rank, "axis")
        if len(set(axes)) != len(axes):
            raise self.fail(f"axes {list(axes)} repeat an axis")
        if not axes:
            raise self.fail("axes is empty")

    def softmax(self, op: Op) -> None:
        self.axis_in_range(op.attr("axis"), op.operands[0].ty.rank, "axis")  # type: ignore[arg-type]

    def transpose(self, op: Op) -> None:
        perm = op.attr("perm")
        rank = op.operands[0].ty.rank
        if sorted(perm) != list(range(rank)):  # type: ignore[arg-type]
            raise self.fail(f"perm {list(perm)} is not a permutation of 0..{rank - 1}")  # type: ignore[arg-type]

    def reshape(self, op: Op) -> None:
        src = op.operands[0].ty.dims
        dst: tuple[Dim, ...] = op.attr("shape")  # type: ignore[assignment]
        if not self.dim_eq(_product(src), _product(dst)):
            raise self.fail(f"reshape changes the element count: {_product(src)} elements to {_product(dst)}")

    def broadcast_to(self, op: Op) -> None:
        src = op.operands[0].ty.dims
        dst: tuple[Dim, ...] = op.attr("shape")  # type: ignore[assignment]
        if len(dst) < len(src):
            raise self.fail(f"broadcast_to a lower rank ({len(src)} to {len(dst)})")
        for i, (s, d) in enumerate(zip(src, dst[len(dst) - len(src):])):
            if s != 1 and not self.dim_eq(s, d):
                raise self.fail(f"operand dim {i} ({s}) cannot broadcast to {d}: it must be 1 or equal")

    def slice(self, op: Op) -> None:
        dims = op.operands[0].ty.dims
        starts, stops, steps = (op.attr(k) for k in ("starts", "stops", "steps"))
        if not len(starts) == len(stops) == len(steps) == len(dims):  # type: ignore[arg-type]
            raise self.fail(f"slice needs one start, stop and step per axis of the rank-{len(dims)} operand")
        for i, (lo, hi, st, ext) in enumerate(zip(starts, stops, steps, dims)):  # type: ignore[call-overload]
            if st == 0:
                raise self.fail(f"slice step on axis {i} must not be 0")
            for d, rule in ((lo, "start >= 0"), (hi - lo, "start <= stop"), (ext - hi, "stop <= extent")):
                if self.refuted_negative(d):
                    raise self.fail(f"slice bounds on axis {i} break {rule}: start {lo}, stop {hi}, extent {ext}")

    def concat(self, op: Op) -> None:
        ts = [v.ty for v in op.operands]
        axis: int = op.attr("axis")  # type: ignore[assignment]
        self.axis_in_range(axis, ts[0].rank, "axis")
        for i, t in enumerate(ts[1:], 1):
            if t.rank != ts[0].rank or t.dtype != ts[0].dtype:
                raise self.fail(f"concat operand {i} is {t}, operand 0 is {ts[0]}")
            for j, (a, b) in enumerate(zip(t.dims, ts[0].dims)):
                if j != axis and not self.dim_eq(a, b):
                    raise self.fail(f"concat operand {i} dim {j} is {a}, operand 0 has {b}")

    def gather(self, op: Op) -> None:
        table, ids = (v.ty for v in op.operands)
        if table.rank < 1:
            raise self.fail("gather table must have rank >= 1")
        if not ids.dtype.is_int:
            raise self.fail(f"gather ids have dtype {ids.dtype}, expected an integer dtype")

    def norm(self, op: Op) -> None:
        x = op.operands[0].ty
        if x.rank < 1:
            raise self.fail(f"{op.name} needs rank >= 1")
        for i, v in enumerate(op.operands[1:], 1):
            if not self.dims_eq(v.ty.dims, x.dims[-1:]):
                raise self.fail(f"{op.name} operand {i} is {v.ty}; expected shape [{x.dims[-1]}] "
                                "(the last axis of x)")

    def attention(self, op: Op) -> None:
        q, k, v = (o.ty for o in op.operands)
        if not q.rank == k.rank == v.rank or q.rank < 2:
            raise self.fail(f"attention q, k, v must have one rank >= 2, got {q.rank}, {k.rank}, {v.rank}")
        if not (self.dims_eq(q.dims[:-2], k.dims[:-2]) and self.dims_eq(k.dims[:-2], v.dims[:-2])):
            raise self.fail("attention batch dims of q, k, v differ")
        if not self.dim_eq(q.dims[-1], k.dims[-1]):
            raise self.fail(f"attention head dims differ: q {q.dims[-1]}, k {k.dims[-1]}")
        if not self.dim_eq(k.dims[-2], v.dims[-2]):
            raise self.fail(f"attention key lengths differ: k {k.dims[-2]}, v {v.dims[-2]}")
        if not q.dtype == k.dtype == v.dtype:
            raise self.fail(f"attention dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


def int_range(d: DType) -> tuple[int, int]:
    """The smallest and largest value of an integer dtype."""
    if d.kind == "uint":
        return 0, (1 << d.bits) - 1
    return -(1 << (d.bits - 1)), (1 << (d.bits - 1)) - 1


def _product(dims: Sequence[Dim]) -> Dim:
    total = Dim.const(1)
    for d in dims:
        total = total * d
    return total


_CHECKS: dict[str, Callable[[_Verifier, Op], None]] = {
    "constant": _Verifier.splat_value,
    "fill": _Verifier.splat_value,
    "print": _Verifier.print_format,
    "elementwise": _Verifier.elementwise,
    "matmul": _Verifier.matmul,
    "reduce": _Verifier.axes,
    "logsumexp": _Verifier.axes,
    "softmax": _Verifier.softmax,
    "transpose": _Verifier.transpose,
    "reshape": _Verifier.reshape,
    "broadcast_to": _Verifier.broadcast_to,
    "slice": _Verifier.slice,
    "concat": _Verifier.concat,
    "gather": _Verifier.gather,
    "layernorm": _Verifier.norm,
    "rmsnorm": _Verifier.norm,
    "attention": _Verifier.attention,
}
