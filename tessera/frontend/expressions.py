"""Typing expressions: names, operators, attributes, indexing, literals. Calls are in `calls.py`.

Every checked expression node gets its type in `node.ty`. Int scalars carry their value as a `Dim`
when it is known (symbolically, as for `x.shape[0]`), so shapes built from them stay exact.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import TYPE_CHECKING

from tessera.diagnostics import error
from tessera.frontend import ast, shapes, tiles
from tessera.frontend.annotations import POLICY_NAMES, TENSOR_KINDS, merge_policy, policy_value
from tessera.frontend.builtins import (
    BINOP_BUILTIN,
    BUILTINS,
    CONSTANTS,
    Arg,
    CallCtx,
    UnknownValue,
    elementwise,
)
from tessera.frontend.intrinsics import EFFECT_SCOPES, TILE_INTRINSICS
from tessera.frontend.shapes import ONE
from tessera.frontend.types import (
    ANY,
    BOOL,
    BOOLEAN,
    F32,
    FLOAT,
    INT,
    AnyType,
    BuiltinRef,
    DictType,
    DTypeValue,
    FunctionRef,
    ListType,
    NamespaceRef,
    OpaqueType,
    PolicyValue,
    ScalarType,
    StrType,
    TensorType,
    TileType,
    TupleType,
    Type,
    dtype_named,
    type_of_python_scalar,
)
from tessera.symbolic import Dim, DimError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tessera.frontend.checker import FunctionChecker

NAMESPACES = ("tile", "effects", "kernel", "verify")


class ExpressionTyping:
    """Mixin of FunctionChecker: `expr(e)` types an expression and records it on the node."""

    def expr(self: FunctionChecker, e: ast.Expr) -> Type:
        t = self._expr(e)
        e.ty = t
        return t

    def _expr(self: FunctionChecker, e: ast.Expr) -> Type:
        match e:
            case ast.Constant(value=v):
                return type_of_python_scalar(v)
            case ast.Name():
                return self.lookup_name(e)
            case ast.Attribute():
                return self.attribute(e)
            case ast.Subscript():
                return self.subscript(e)
            case ast.Call():
                return self.call(e)
            case ast.BinOp():
                return self.binop(e)
            case ast.UnaryOp():
                return self.unaryop(e)
            case ast.BoolOp(values=vs):
                for v in vs:
                    self.require_host_bool(v, "`and`/`or`")
                return BOOLEAN
            case ast.Compare():
                return self.compare(e)
            case ast.IfExp(test=t, body=b, orelse=o):
                self.require_host_bool(t, "a conditional expression")
                return self.join(self.expr(b), self.expr(o), e.span, "the two branches")
            case ast.Tuple(elts=es):
                return TupleType(tuple(self.expr(x) for x in es))
            case ast.List(elts=es):
                return ListType(tuple(self.expr(x) for x in es))
            case ast.Dict(keys=ks, values=vs):
                items = []
                for k, v in zip(ks, vs):
                    kt = self.expr(k)
                    if not isinstance(kt, StrType) or kt.value is None:
                        raise error("E-TYPE", "dict keys must be string literals", k.span)
                    items.append((kt.value, self.expr(v)))
                return DictType(tuple(items))
            case ast.Range(lo=lo, hi=hi):
                for x in (lo, hi):
                    self.require_int(x, "a range bound")
                return OpaqueType("range", (("item", INT),))
            case ast.EllipsisLit():
                raise error("E-SYNTAX", "`...` is only allowed inside a subscript", e.span)
            case ast.Slice():
                raise error("E-SYNTAX", "a slice is only allowed inside a subscript", e.span)
        raise error("E-TYPE", f"unsupported expression {type(e).__name__}", e.span)

    # ------------------------------------------------------------ names

    def lookup_name(self: FunctionChecker, e: ast.Name) -> Type:
        t = self.resolve(e.id)
        if t is None:
            raise error("E-NAME", f"name '{e.id}' is not defined", e.span, notes=self.suggest(e.id))
        return t

    def resolve(self: FunctionChecker, name: str) -> Type | None:
        if name in self.env:
            return self.env[name]
        t = self.prog.global_lookup(self.module, name)
        if t is not None:
            return t
        return builtin_name(name)

    def suggest(self: FunctionChecker, name: str) -> list[str]:
        pool = [*self.env, *self.prog.namespaces[self.module], *BUILTINS, *CONSTANTS, *NAMESPACES]
        close = difflib.get_close_matches(name, pool, n=1)
        return [f"did you mean '{close[0]}'?"] if close else []

    # ------------------------------------------------------------ attributes

    def attribute(self: FunctionChecker, e: ast.Attribute) -> Type:
        base = self.expr(e.value)
        at = e.attr_span or e.span
        if isinstance(base, AnyType):
            return ANY
        if isinstance(base, TensorType):
            return tensor_attribute(base, e.attr, at)
        if isinstance(base, TileType):
            return tiles.tile_attribute(base, e.attr, at)
        if isinstance(base, NamespaceRef):
            return self.namespace_attribute(base, e.attr, at)
        if isinstance(base, OpaqueType):
            t = base.field(e.attr)
            if t is not None:
                return t
            fields = ", ".join(f for f, _ in base.fields) or "none"
            raise error("E-NAME", f"{base.name} has no attribute '{e.attr}'", at, notes=[f"attributes: {fields}"])
        raise error("E-NAME", f"{base} has no attribute '{e.attr}'", at)

    def namespace_attribute(self: FunctionChecker, ns: NamespaceRef, attr: str, at: ast.Span) -> Type:
        table: dict[str, object] | None = {
            "tile": TILE_INTRINSICS, "effects": EFFECT_SCOPES,
            "kernel": {"autotune": 1, "schedule": 1}, "verify": {"numerics": 1},
        }.get(ns.name)
        if table is not None:
            if attr in table:
                return BuiltinRef(f"{ns.name}.{attr}")
            close = difflib.get_close_matches(attr, list(table), n=1)
            raise error("E-NAME", f"'{ns.name}' has no member '{attr}'", at,
                        notes=[f"did you mean '{ns.name}.{close[0]}'?"] if close else [])
        # A user or stdlib module.
        mod = self.prog.modules.get(ns.name)
        if mod is not None:
            t = self.prog.global_lookup(ns.name, attr, exported_only=True)
            if t is not None:
                return t
            close = difflib.get_close_matches(attr, list(self.prog.namespaces[ns.name]), n=1)
            raise error("E-NAME", f"module '{module_name(ns.name)}' has no name '{attr}'", at,
                        notes=[f"did you mean '{close[0]}'?"] if close else [])
        sub = f"{ns.name}.{attr}"
        if any(k == sub or k.startswith(sub + ".") for k in self.prog.modules):
            return NamespaceRef(sub)
        raise error("E-NAME", f"'{ns.name}' has no member '{attr}'", at)

    # ------------------------------------------------------------ subscripts

    def subscript(self: FunctionChecker, e: ast.Subscript) -> Type:
        if isinstance(e.value, ast.Name) and e.value.id in TENSOR_KINDS and self.resolve(e.value.id) is None:
            raise error("E-TYPE", f"{e.value.id}[...] is a type; it may only appear in annotations", e.span)
        base = self.expr(e.value)
        if isinstance(base, (FunctionRef, BuiltinRef)):
            # `kernel[grid](...)`: the subscript is the launch grid.
            grid = self.expr(e.index)
            for g in grid.elts if isinstance(grid, TupleType) else (grid,):
                if not isinstance(g, (AnyType, ScalarType)) or (isinstance(g, ScalarType) and g.kind != "int"):
                    raise error("E-TYPE", f"a launch grid is an int or a tuple of ints, found {grid}", e.index.span)
            return base
        if isinstance(base, AnyType):
            self.expr_index_parts(e.index)
            return ANY
        if isinstance(base, TensorType):
            return self.index_tensor(base, e)
        if isinstance(base, TileType):
            return tiles.index_tile(base, e)
        if isinstance(base, (TupleType, ListType)):
            it = self.expr(e.index)
            if isinstance(it, AnyType):
                return ANY
            v = it.value if isinstance(it, ScalarType) and it.kind == "int" else None
            if not isinstance(v, Dim) or not v.is_const:
                raise error("E-TYPE", "tuples are indexed by int constants", e.index.span)
            i = v.value
            if not -len(base.elts) <= i < len(base.elts):
                raise error("E-TYPE", f"index {i} is out of range for {base}", e.index.span)
            return base.elts[i]
        if isinstance(base, DictType):
            it = self.expr(e.index)
            d = dict(base.items)
            if isinstance(it, StrType) and it.value in d:
                return d[it.value]
            raise error("E-NAME", f"key not in dict {base}", e.index.span)
        raise error("E-TYPE", f"{base} cannot be indexed", e.span)

    def expr_index_parts(self: FunctionChecker, index: ast.Expr) -> None:
        for part in index.elts if isinstance(index, ast.Tuple) else [index]:
            if isinstance(part, ast.Slice):
                for x in (part.lower, part.upper, part.step):
                    if x is not None:
                        self.expr(x)
            elif not isinstance(part, ast.EllipsisLit):
                self.expr(part)

    def index_tensor(self: FunctionChecker, t: TensorType, e: ast.Subscript) -> Type:
        parts = e.index.elts if isinstance(e.index, ast.Tuple) else [e.index]
        name = shapes.as_operand(self.text(e.value))
        n_ell = sum(isinstance(p, ast.EllipsisLit) for p in parts)
        if n_ell > 1:
            raise error("E-SHAPE", "an index can have only one `...`", e.index.span)
        consuming = [p for p in parts if not isinstance(p, ast.EllipsisLit)
                     and not (isinstance(p, ast.Constant) and p.value is None)]
        if len(consuming) > t.rank:
            raise error("E-SHAPE", f"too many indices: {name} has rank {t.rank} but {len(consuming)} are given",
                        e.index.span)
        dims: list[Dim] = []
        axis = 0
        for p in parts:
            if isinstance(p, ast.EllipsisLit):
                fill = t.rank - len(consuming)
                dims.extend(t.dims[axis:axis + fill])
                axis += fill
            elif isinstance(p, ast.Constant) and p.value is None:
                dims.append(ONE)
            elif isinstance(p, ast.Slice):
                dims.append(self.slice_extent(p, t.dims[axis], f"{name}.shape[{axis}]"))
                axis += 1
            else:
                it = self.expr(p)
                if isinstance(it, TensorType):
                    raise error("E-TYPE", "indexing with a tensor is not supported", p.span,
                                notes=["use embedding(table, ids) to gather rows, or where(...) to select"])
                if not (isinstance(it, ScalarType) and it.kind == "int") and not isinstance(it, AnyType):
                    raise error("E-TYPE", f"an index must be an int, a slice, None or `...`, found {it}", p.span)
                v = it.value if isinstance(it, ScalarType) else None
                d = t.dims[axis]
                if isinstance(v, Dim) and v.is_const and d.is_const and not -d.value <= v.value < d.value:
                    raise error("E-SHAPE", f"index {v.value} is out of range for {name}.shape[{axis}] ({d})",
                                p.span)
                axis += 1
        dims.extend(t.dims[axis:])
        return t.with_(dims=tuple(dims))

    def slice_extent(self: FunctionChecker, s: ast.Slice, d: Dim, path: str) -> Dim:
        given = [x for x in (s.lower, s.upper, s.step) if x is not None]
        if any(isinstance(self.expr(x), AnyType) for x in given):
            return self.prog.fresh_dim()  # an untracked bound: an unknown extent

        def bound(x: ast.Expr | None, default: Dim) -> Dim:
            if x is None:
                return default
            bt = x.ty
            v = bt.value if isinstance(bt, ScalarType) and bt.kind == "int" else None
            if not isinstance(v, Dim):
                raise error("E-TYPE", f"slice bounds must be ints known at compile time, found {bt}", x.span)
            if v.is_const and v.value < 0:
                return d + v.value
            return v

        step = 1
        if s.step is not None:
            st = s.step.ty
            v = st.value if isinstance(st, ScalarType) else None
            if not isinstance(v, Dim) or not v.is_const or v.value == 0:
                raise error("E-TYPE", "a slice step must be a non-zero int constant", s.step.span)
            step = v.value
        if step < 0:
            return self.reversed_slice_extent(s, d, path, -step, bound)
        lo, hi = bound(s.lower, Dim.const(0)), bound(s.upper, d)
        if lo.is_const and hi.is_const and d.is_const:
            lo_v, hi_v = (max(0, min(x.value, d.value)) for x in (lo, hi))
            return Dim.const(max(0, (hi_v - lo_v + step - 1) // step))
        if not (hi == d or self.cs.prove_le(hi, d)):
            raise error("E-SHAPE", f"slice end {hi} may exceed {path} ({d})", s.span,
                        notes=[f"add 'where {d} >= {hi}'" if not d.is_const else "slice within the extent"])
        if not (lo.is_const and lo.value == 0) and not self.cs.prove_le(lo, hi):
            raise error("E-SHAPE", f"slice start {lo} may exceed its end {hi} on {path}", s.span)
        ext = hi - lo
        return self.cs.simplify(ext if step == 1 else (ext + (step - 1)) // step)

    def reversed_slice_extent(self: FunctionChecker, s: ast.Slice, d: Dim, path: str, k: int,
                              bound: Callable[[ast.Expr | None, Dim], Dim]) -> Dim:
        """`x[a:b:-k]` walks from a down to just above b: the window [b + 1, a + 1) read backwards."""
        given_a, given_b = (None if x is None else bound(x, d) for x in (s.lower, s.upper))
        if d.is_const and all(x is None or x.is_const for x in (given_a, given_b)):
            # Python's own clamping, on the bounds as written (before counting from the end).
            a, b = (None if x is None else x.value if x.value >= 0 else x.value - d.value
                    for x in (given_a, given_b))
            return Dim.const(len(range(*slice(a, b, -k).indices(d.value))))
        hi = d if given_a is None else given_a + 1
        lo = Dim.const(0) if given_b is None else given_b + 1
        if not (hi == d or self.cs.prove_le(hi, d)):
            raise error("E-SHAPE", f"slice start {hi - 1} may exceed the last index of {path} ({d})", s.span,
                        notes=[f"add 'where {d} >= {hi}'" if not d.is_const else "slice within the extent"])
        if not (lo.is_const and lo.value == 0) and not self.cs.prove_le(lo, hi):
            raise error("E-SHAPE", f"slice end {lo - 1} may exceed its start {hi - 1} on {path}", s.span)
        return self.cs.simplify((hi - lo + (k - 1)) // k)

    # ------------------------------------------------------------ operators

    def binop(self: FunctionChecker, e: ast.BinOp) -> Type:
        left = self.expr(e.left)
        if e.op == "@" and isinstance(left, DTypeValue):
            pol = policy_value(e.right, self.resolve).policy
            e.right.ty = PolicyValue(pol)
            return DTypeValue(left.dtype, merge_policy(left, pol, e.right.span))
        right = self.expr(e.right)
        if isinstance(left, AnyType) or isinstance(right, AnyType):
            return ANY
        if isinstance(left, TileType) or isinstance(right, TileType):
            ctx = self.call_ctx("matmul" if e.op == "@" else BINOP_BUILTIN.get(e.op, e.op), e.span,
                                {"a": self.arg(left, e.left), "b": self.arg(right, e.right)})
            try:
                return tiles.binop(ctx, e.op)
            except UnknownValue:
                return ANY
        if e.op == "@":
            return self.apply_builtin(BUILTINS["matmul"], e, [(left, e.left), (right, e.right)], {})
        if isinstance(left, ScalarType) and isinstance(right, ScalarType):
            return scalar_arith(e.op, left, right, e.span)
        if isinstance(left, StrType) and isinstance(right, StrType) and e.op == "+":
            return StrType(None if left.value is None or right.value is None else left.value + right.value)
        for t, x in ((left, e.left), (right, e.right)):
            if not isinstance(t, (TensorType, ScalarType)):
                raise error("E-TYPE", f"unsupported operand {t} for '{e.op}'", x.span)
        ctx = self.call_ctx(BINOP_BUILTIN[e.op], e.span, {"a": self.arg(left, e.left), "b": self.arg(right, e.right)})
        out = elementwise(ctx, ["a", "b"])
        if e.op == "/" and isinstance(out, TensorType) and out.dtype is not None and not out.dtype.is_float:
            return out.with_(dtype=F32)
        return out

    def unaryop(self: FunctionChecker, e: ast.UnaryOp) -> Type:
        t = self.expr(e.operand)
        if e.op == "not":
            # The operand's type is in hand: typing it again would double the work per nested `not`.
            self.require_host_bool(e.operand, "`not`", t)
            return BOOLEAN
        if isinstance(t, AnyType):
            return ANY
        if isinstance(t, (TensorType, TileType)):
            if t.dtype == BOOL:
                raise error("E-DTYPE", f"unary '{e.op}' on a bool {'tile' if isinstance(t, TileType) else 'tensor'}",
                            e.span)
            if isinstance(t, TensorType) and self.kind == "kernel" and t.rank > 0:
                raise error("E-TYPE", f"'{self.text(e.operand)}' is a tensor in global memory; load a block of it "
                            "with tile.load", e.operand.span)
            return t.with_(space="reg") if isinstance(t, TileType) else t
        if isinstance(t, ScalarType):
            if e.op == "+":
                return t
            v = t.value
            if isinstance(v, Dim):
                return ScalarType("int", -v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return ScalarType(t.kind, -v)
            return ScalarType("int" if t.kind == "bool" else t.kind)
        raise error("E-TYPE", f"unary '{e.op}' on {t}", e.span)

    def compare(self: FunctionChecker, e: ast.Compare) -> Type:
        types = [self.expr(e.left), *(self.expr(c) for c in e.comparators)]
        operands = [e.left, *e.comparators]
        if e.ops in (["is"], ["is not"]):
            return BOOLEAN  # identity (`bias is not None`): a host-level truth value, whatever the operands
        if any(isinstance(t, (TensorType, TileType)) for t in types):
            if len(e.ops) > 1:
                texts = [self.text(x) for x in operands]
                both = f"{texts[-2]} {e.ops[-1]} {texts[-1]}"
                for i in reversed(range(len(e.ops) - 1)):
                    both = f"where({texts[i]} {e.ops[i]} {texts[i + 1]}, {both}, False)"
                raise error("E-TYPE", "chained comparisons of tensors are ambiguous", e.span, fixit=both,
                            notes=["compare pairwise and combine the bool tensors with where(...)"])
            if e.ops[0] not in ("==", "!=", "<", "<=", ">", ">="):
                raise error("E-TYPE", f"'{e.ops[0]}' does not apply to tensors", e.span)
            ctx = self.call_ctx("compare", e.span, {"a": self.arg(types[0], operands[0]),
                                                   "b": self.arg(types[1], operands[1])})
            return elementwise(ctx, ["a", "b"], out_dtype=BOOL)
        for op, t in zip(e.ops, types[1:]):
            if op in ("in", "not in") and not isinstance(t, (OpaqueType, TupleType, ListType, DictType, AnyType)):
                raise error("E-TYPE", f"'{op}' needs a range, tuple, list or dict on its right, found {t}", e.span)
        return BOOLEAN

    # ------------------------------------------------------------ helpers

    def require_host_bool(self: FunctionChecker, x: ast.Expr, what: str, t: Type | None = None) -> None:
        """`x` (of type `t` when it was typed already) is a host-level truth value, not a tensor."""
        t = self.expr(x) if t is None else t
        if (isinstance(t, TensorType) and t.rank > 0) or isinstance(t, TileType):
            raise error("E-TYPE", f"{what} needs a single bool, found {t}", x.span,
                        notes=["for elementwise selection use where(cond, a, b)"])

    def require_int(self: FunctionChecker, x: ast.Expr, what: str) -> Type:
        t = self.expr(x)
        if not (isinstance(t, ScalarType) and t.kind == "int") and not isinstance(t, AnyType):
            raise error("E-TYPE", f"{what} must be an int, found {t}", x.span)
        return t

    def join(self: FunctionChecker, a: Type, b: Type, at: ast.Span, what: str) -> Type:
        """The type of a value that is `a` on one path and `b` on another."""
        if a == b and not isinstance(a, ScalarType):
            return a
        if isinstance(a, AnyType) or isinstance(b, AnyType):
            return ANY
        if isinstance(a, ScalarType) and isinstance(b, ScalarType):
            if a.kind == b.kind:
                return a if a.value == b.value else ScalarType(a.kind)
            if {a.kind, b.kind} <= {"int", "float", "bool"}:
                return FLOAT if "float" in (a.kind, b.kind) else INT
        if isinstance(a, TensorType) and isinstance(b, TensorType) and a.rank == b.rank and a.dtype == b.dtype \
                and all(shapes.dims_equal(self.cs, x, y) for x, y in zip(a.dims, b.dims)):
            return a
        if isinstance(a, TileType) and isinstance(b, TileType) and a.rank == b.rank and a.dtype == b.dtype \
                and all(shapes.dims_equal(self.cs, x, y) for x, y in zip(a.dims, b.dims)):
            return a
        if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.elts) == len(b.elts):
            return TupleType(tuple(self.join(x, y, at, what) for x, y in zip(a.elts, b.elts)))
        if self.kind in ("host", "kernel"):
            # Host code is dynamic; a kernel's control flow is resolved when it is compiled, with every
            # type known (a tile loop's carried values are checked there).
            return ANY
        raise error("E-TYPE", f"{what} have different types: {a} and {b}", at,
                    notes=["compiled code needs one static type per value"])

    def text(self: FunctionChecker, e: ast.Expr) -> str:
        """The source text of a small expression, for messages (`w1`, `x.T`); else a generic name."""
        sp = e.span
        if sp.line == sp.end_line:
            src = self.prog.source_text(sp.file, sp.line)
            s = src[sp.col - 1:sp.end_col - 1]
            if s and len(s) <= 40:
                return s
        return "operand"

    def arg(self: FunctionChecker, t: Type, e: ast.Expr) -> Arg:
        return Arg(t, e.span, self.text(e))

    def call_ctx(self: FunctionChecker, name: str, span: ast.Span, args: dict[str, Arg],
                 varargs: list[Arg] | None = None) -> CallCtx:
        return CallCtx(name, self.cs, span, args, varargs or [], self.prog.fresh_dim, self.kind)


def builtin_name(name: str) -> Type | None:
    """Names in scope in every module without import: builtins, dtypes, constants, namespaces."""
    if name in CONSTANTS:
        return CONSTANTS[name]
    dt = dtype_named(name)
    if dt is not None:
        return DTypeValue(dt)
    if name in BUILTINS:
        return BuiltinRef(name)
    if name in NAMESPACES:
        return NamespaceRef(name)
    if name in POLICY_NAMES or name in ("jit", "autodiff", "deterministic", "custom_vjp", "checkpoint"):
        return BuiltinRef(name)
    if name == "True" or name == "False":
        return BOOLEAN
    return None


def module_name(key: str) -> str:
    """How messages name a module: `stdlib.nn` by its dotted name, a sibling file by its stem."""
    return Path(key).stem if key.endswith(".tsr") else key


def tensor_attribute(t: TensorType, attr: str, at: ast.Span) -> Type:
    if attr == "shape":
        return TupleType(tuple(ScalarType("int", d) for d in t.dims))
    if attr == "T":
        return t.with_(dims=tuple(reversed(t.dims)))
    if attr == "ndim":
        return ScalarType("int", Dim.const(t.rank))
    if attr == "dtype":
        # A dtype-generic tensor's dtype is known only per call: untracked here.
        return DTypeValue(t.dtype, t.policy) if t.dtype is not None else ANY
    raise error("E-NAME", f"a tensor has no attribute '{attr}'", at, notes=["tensor attributes: shape, T, ndim, dtype"])


# Folded int powers stop at this many bits: `2 ** 2 ** 2 ** 2 ** 2 ** 2` must not hang the checker
# computing a number no tensor extent or int64 host value can be (the value is then left unknown).
_MAX_FOLDED_BITS = 4096


def _small_power(base: int, exp: int) -> bool:
    return exp >= 0 and (abs(base) <= 1 or exp * (abs(base).bit_length()) <= _MAX_FOLDED_BITS)


def scalar_arith(op: str, a: ScalarType, b: ScalarType, at: ast.Span) -> ScalarType:
    """Python arithmetic on host scalars, folding known values (ints symbolically)."""
    kind = "float" if "float" in (a.kind, b.kind) or op == "/" else "int"
    if op == "**" and kind == "int" and isinstance(b.value, Dim) and b.value.is_const and b.value.value < 0:
        kind = "float"
    av, bv = a.value, b.value
    if av is None or bv is None:
        return ScalarType(kind)
    if kind == "int":
        x, y = Dim.of(int(av)) if isinstance(av, bool) else av, Dim.of(int(bv)) if isinstance(bv, bool) else bv
        try:
            if op == "+":
                return ScalarType("int", x + y)
            if op == "-":
                return ScalarType("int", x - y)
            if op == "*":
                return ScalarType("int", x * y)
            if op in ("//", "%"):
                if y.is_const and y.value == 0:
                    raise error("E-TYPE", "integer division by zero", at)
                if y.is_const and y.value < 0 and x.is_const:
                    return ScalarType("int", Dim.const(x.value // y.value if op == "//" else x.value % y.value))
                return ScalarType("int", x // y if op == "//" else x % y)
            if op == "**" and x.is_const and y.is_const and _small_power(x.value, y.value):
                return ScalarType("int", Dim.const(x.value ** y.value))
        except DimError:
            pass
        return ScalarType("int")
    try:
        # An int too large for a float (10 ** 400) makes the result unknown, like an overflow below.
        fx, fy = (float(v.value) if isinstance(v, Dim) and v.is_const else v for v in (av, bv))
    except OverflowError:
        return FLOAT
    if not isinstance(fx, (int, float)) or not isinstance(fy, (int, float)):
        return FLOAT
    try:
        val = {"+": lambda: fx + fy, "-": lambda: fx - fy, "*": lambda: fx * fy, "/": lambda: fx / fy,
               "//": lambda: math.floor(fx / fy), "%": lambda: fx % fy, "**": lambda: fx ** fy}[op]()
    except (ZeroDivisionError, OverflowError, ValueError):
        return FLOAT
    return ScalarType("float", float(val) if not isinstance(val, complex) else None)


