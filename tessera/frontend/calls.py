"""Typing calls: binding arguments to parameters, builtin rules, and calls of user functions —
binding the callee's dim symbols to the caller's dims, checking the callee's `where` constraints
at the call, and instantiating generic (unannotated) helpers with the argument types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.constraints import Constraint
from tessera.diagnostics import Label, error
from tessera.frontend import ast, shapes
from tessera.frontend.annotations import policy_value
from tessera.frontend.builtins import BUILTINS, SCHEDULE, Arg, Builtin, Param, UnknownValue
from tessera.frontend.intrinsics import EFFECT_SCOPES, TILE_INTRINSICS
from tessera.frontend.signatures import Signature
from tessera.frontend.types import (
    ANY,
    AnyType,
    BuiltinRef,
    DTypeValue,
    FunctionRef,
    OpaqueType,
    ScalarType,
    StrType,
    TensorType,
    TupleType,
    Type,
    is_narrowing,
    type_of_python_scalar,
)
from tessera.symbolic import Dim, DimError

if TYPE_CHECKING:
    from tessera.frontend.checker import FunctionChecker

Bound = tuple[Type, ast.Expr]

_SCHEDULE_METHODS = {
    "with_block": ("bm", "bn"), "with_k": ("k",), "with_warps": ("warps",), "with_stages": ("stages",),
    "with_vector": ("vector",), "with_swizzle": ("swizzle",),
}


class CallTyping:
    """Mixin of FunctionChecker for call expressions."""

    def call(self: FunctionChecker, e: ast.Call) -> Type:
        callee = self.expr(e.func)
        pos: list[Bound] = [(self.expr(a), a) for a in e.args]
        kws: dict[str, tuple[Type, ast.Expr, ast.Span]] = {}
        for kw in e.keywords:
            if kw.name in kws:
                raise error("E-TYPE", f"keyword argument '{kw.name}' is given twice", kw.span)
            kws[kw.name] = (self.expr(kw.value), kw.value, kw.span)
        match callee:
            case AnyType():
                return ANY
            case FunctionRef(fn=fn, module=mod):
                return self.call_user(self.prog.signature(mod, fn), e, pos, kws)
            case BuiltinRef(name=name) if name.startswith("Schedule."):
                return SCHEDULE
            case BuiltinRef(name=name):
                return self.call_builtin_ref(name, e, pos, kws)
        raise error("E-TYPE", f"{callee} is not callable", e.func.span)

    def call_builtin_ref(self: FunctionChecker, name: str, e: ast.Call, pos: list[Bound],
                         kws: dict[str, tuple[Type, ast.Expr, ast.Span]]) -> Type:
        if name in ("accum", "loss_scale", "round"):
            return policy_value(e, self.resolve)
        if name.startswith("tile."):
            if self.kind != "kernel":
                raise error("E-TYPE", f"{name} is a tile intrinsic; it may only be used inside a @kernel", e.span,
                            notes=["graph-level code uses the builtins of spec §6"])
            if name == "tile.context":
                self.apply_builtin(TILE_INTRINSICS["context"], e, pos, kws)
                return self.tile_context_type()
            return self.apply_builtin(TILE_INTRINSICS[name[5:]], e, pos, kws)
        if name.startswith("effects."):
            return self.apply_builtin(EFFECT_SCOPES[name[8:]], e, pos, kws)
        b = BUILTINS.get(name)
        if b is None:
            raise error("E-TYPE", f"'{name}' cannot be called here", e.span,
                        notes=["decorators and policies are written with @"])
        if b.host_only and self.kind != "host":
            raise error("E-TYPE", f"'{name}' runs on the host only; it cannot be used in {self.kind_name()} code",
                        e.span, notes=["do it in an undecorated host function such as main()"])
        return self.apply_builtin(b, e, pos, kws)

    def apply_builtin(self: FunctionChecker, b: Builtin, e: ast.Expr, pos: list[Bound],
                      kws: dict[str, tuple[Type, ast.Expr, ast.Span]]) -> Type:
        args, varargs = self.bind_builtin(b, e, pos, kws)
        for kind in b.effects:
            self.effect(kind, e.span, f"{b.name}()")
        try:
            return b.rule(self.call_ctx(b.name, e.span, args, varargs))
        except UnknownValue:
            return ANY  # a value the rule needs is untracked (`any`): so is the result

    def bind_builtin(self: FunctionChecker, b: Builtin, e: ast.Expr, pos: list[Bound],
                     kws: dict[str, tuple[Type, ast.Expr, ast.Span]]) -> tuple[dict[str, Arg], list[Arg]]:
        args: dict[str, Arg] = {}
        varargs: list[Arg] = []
        positional = [p for p in b.params if not p.kw_only and not p.variadic]
        variadic = next((p for p in b.params if p.variadic), None)
        for i, (t, x) in enumerate(pos):
            if i < len(positional):
                args[positional[i].name] = Arg(t, x.span, self.text(x))
            elif variadic is not None:
                varargs.append(Arg(t, x.span, self.text(x)))
            else:
                raise error("E-TYPE", f"{b.name}() takes {len(positional)} positional argument"
                            f"{'s' if len(positional) != 1 else ''} but {len(pos)} were given", x.span,
                            notes=[_signature_note(b)])
        names = {p.name for p in b.params if not p.variadic}
        for k, (t, x, span) in kws.items():
            if k in args:
                raise error("E-TYPE", f"{b.name}() got several values for '{k}'", span)
            if k in names:
                args[k] = Arg(t, x.span, self.text(x))
            elif variadic is not None and b.name == "dict":
                varargs.append(Arg(t, x.span, k))
            else:
                raise error("E-NAME", f"{b.name}() has no parameter '{k}'", span, notes=[_signature_note(b)])
        for p in b.params:
            if p.variadic or p.name in args:
                continue
            if p.required:
                raise error("E-TYPE", f"{b.name}() is missing the argument '{p.name}'", e.span,
                            notes=[_signature_note(b)])
            args[p.name] = Arg(_default_type(p), e.span, p.name, given=False)
        return args, varargs

    # ------------------------------------------------------------ user functions

    def call_user(self: FunctionChecker, sig: Signature, e: ast.Call, pos: list[Bound],
                  kws: dict[str, tuple[Type, ast.Expr, ast.Span]]) -> Type:
        fn = sig.fn
        callee_kind = sig.kind
        self.record_call(fn, e.span)
        if not sig.ok:
            return ANY
        if self.kind == "kernel" and callee_kind != "host":
            raise error("E-TYPE", f"a @kernel cannot call the {callee_kind} function '{fn.name}'", e.span)
        bound = self.bind_user_args(sig, e, pos, kws)
        bindings: dict[str, Dim] = {}
        origin: dict[str, str] = {}
        for p in sig.params:
            if p.name not in bound or p.ty is None:
                continue
            t, x = bound[p.name]
            self.check_argument(sig, p.name, p.ty, t, x, bindings, origin)
        self.check_callee_constraints(sig, bindings, e)
        if sig.generic:
            return self.prog.instantiate(sig, bound, self, e)
        assert sig.returns is not None
        return substitute_type(sig.returns, bindings)

    def bind_user_args(self: FunctionChecker, sig: Signature, e: ast.Call, pos: list[Bound],
                       kws: dict[str, tuple[Type, ast.Expr, ast.Span]]) -> dict[str, Bound]:
        fn = sig.fn
        def_label = Label(fn.name_span, f"'{fn.name}' is defined here")
        positional = [p for p in sig.params if not p.kw_only]
        out: dict[str, Bound] = {}
        for i, (t, x) in enumerate(pos):
            if i >= len(positional):
                raise error("E-TYPE", f"'{fn.name}' takes {len(positional)} positional argument"
                            f"{'s' if len(positional) != 1 else ''} but {len(pos)} were given", x.span,
                            labels=[def_label])
            out[positional[i].name] = (t, x)
        names = {p.name for p in sig.params}
        for k, (t, x, span) in kws.items():
            if k not in names:
                raise error("E-NAME", f"'{fn.name}' has no parameter '{k}'", span, labels=[def_label],
                            notes=[f"parameters: {', '.join(p.name for p in sig.params) or '(none)'}"])
            if k in out:
                raise error("E-TYPE", f"'{fn.name}' got several values for '{k}'", span, labels=[def_label])
            out[k] = (t, x)
        missing = [p.name for p in sig.params if p.name not in out and not p.has_default]
        if missing:
            raise error("E-TYPE", f"call to '{fn.name}' is missing the argument"
                        f"{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}", e.span,
                        labels=[def_label])
        return out

    def check_argument(self: FunctionChecker, sig: Signature, pname: str, want: Type, got: Type,
                       x: ast.Expr, bindings: dict[str, Dim], origin: dict[str, str]) -> None:
        fn = sig.fn.name
        if isinstance(got, AnyType):
            return
        if isinstance(want, TensorType):
            if isinstance(got, ScalarType) and want.rank == 0:
                return
            if not isinstance(got, TensorType):
                raise error("E-TYPE", f"argument '{pname}' of '{fn}' must be a tensor, found {got}", x.span)
            if got.rank != want.rank:
                raise error("E-SHAPE", f"argument '{pname}' of '{fn}' has rank {got.rank} but the parameter is "
                            f"{want}", x.span, labels=[Label(sig.fn.name_span, f"'{fn}' is defined here")])
            self.bind_dims(sig, pname, want, got, x, bindings, origin)
            if want.dtype is not None and got.dtype is not None and is_narrowing(got.dtype, want.dtype):
                raise error("E-DTYPE", f"argument '{pname}' of '{fn}' is {got.dtype} but the parameter is "
                            f"{want.dtype}; narrowing is never implicit", x.span,
                            fixit=f"cast({self.text(x)}, {want.dtype})")
            return
        if isinstance(want, ScalarType):
            ok = isinstance(got, ScalarType) and (got.kind == want.kind or (want.kind == "float" and got.kind
                                                                            in ("int", "bool")))
            if not ok:
                raise error("E-TYPE", f"argument '{pname}' of '{fn}' must be {want}, found {got}", x.span)
            return
        if isinstance(want, StrType) and not isinstance(got, StrType):
            raise error("E-TYPE", f"argument '{pname}' of '{fn}' must be str, found {got}", x.span)

    def bind_dims(self: FunctionChecker, sig: Signature, pname: str, want: TensorType, got: TensorType,
                  x: ast.Expr, bindings: dict[str, Dim], origin: dict[str, str]) -> None:
        arg_text = shapes.as_operand(self.text(x))
        # Bare symbols bind first, so that compound dims ("D//4") can be checked against them.
        for i, (w, g) in enumerate(zip(want.dims, got.dims)):
            syms = w.free_symbols
            if len(syms) == 1 and w == Dim.sym(next(iter(syms))) and next(iter(syms)) not in bindings:
                bindings[next(iter(syms))] = g
                origin[next(iter(syms))] = f"{arg_text}.shape[{i}]"
        for i, (w, g) in enumerate(zip(want.dims, got.dims)):
            free = [s for s in w.free_symbols if s not in bindings]
            if len(free) == 1:
                solved = _solve_linear(w, free[0], bindings, g)
                if solved is not None:
                    bindings[free[0]] = solved
                    origin[free[0]] = f"{arg_text}.shape[{i}]"
            expected = self.cs.simplify(w.substitute(bindings))
            if expected.free_symbols - set().union(*(d.free_symbols for d in bindings.values()), set()) \
                    and any(s not in bindings for s in w.free_symbols):
                raise error("E-SHAPE", f"cannot infer the dim symbols of '{w}' in parameter '{pname}' of "
                            f"'{sig.fn.name}' from {arg_text}.shape[{i}] ({g})", x.span,
                            notes=["pass a tensor that binds the symbol on its own first"])
            if not shapes.dims_equal(self.cs, expected, g):
                sym_note = [f"{s} is bound to {bindings[s]} by {origin[s]}" for s in sorted(w.free_symbols)
                            if s in origin]
                shown = f"{w}" if str(w) == str(expected) else f"{w} = {expected}"
                raise error("E-SHAPE", f"call to '{sig.fn.name}': {arg_text}.shape[{i}] ({g}) must equal "
                            f"{shown}, as parameter '{pname}' declares", x.span,
                            labels=[Label(sig.fn.name_span, f"'{sig.fn.name}' is defined here")],
                            notes=[*sym_note, f"add 'where {g} == {expected}' or fix the argument"
                                   if not g.is_const or not expected.is_const else "fix the argument"])

    def check_callee_constraints(self: FunctionChecker, sig: Signature, bindings: dict[str, Dim],
                                 e: ast.Call) -> None:
        """A callee constraint that is provably false for these arguments is a compile-time error;
        one that is merely unproven becomes a run-time guard."""
        for c, span in sig.constraints:
            try:
                inst = Constraint(c.kind, c.lhs.substitute(bindings), c.rhs.substitute(bindings))
            except DimError:
                continue
            if any(s not in bindings for s in c.lhs.free_symbols | c.rhs.free_symbols):
                continue
            if provably_false(self.cs, inst):
                raise error("E-CONSTRAINT", f"call to '{sig.fn.name}' violates its constraint `{c}` "
                            f"(here `{inst}`)", e.span, labels=[Label(span, "the constraint is declared here")])

    def record_call(self: FunctionChecker, fn: ast.FunctionDef, span: ast.Span) -> None:
        from tessera.frontend.effects import CallSite

        self.record.calls.append(CallSite(fn, span, frozenset(self.suspended), frozenset(self.allowed)))

    def tile_context_type(self: FunctionChecker) -> Type:
        """`tile.context()`: the schedule's block sizes, and `T.d` from the kernel's first tensor."""
        from tessera.frontend.tiles import context_type

        params = [self.env.get(p.name) for p in self.sig.params] if self.sig is not None else []
        return context_type([t for t in params if isinstance(t, TensorType)])

    def schedule_method(self: FunctionChecker, base: OpaqueType, name: str) -> Type:
        return SCHEDULE


def provably_false(cs, c: Constraint) -> bool:
    a, b = c.lhs, c.rhs
    match c.kind:
        case "==":
            return cs.prove_ne(a, b)
        case "!=":
            return cs.prove_eq(a, b)
        case "<":
            return cs.prove_le(b, a)
        case "<=":
            return cs.prove_lt(b, a)
        case ">":
            return cs.prove_le(a, b)
        case ">=":
            return cs.prove_lt(a, b)
    return False


def _solve_linear(w: Dim, sym: str, bindings: dict[str, Dim], g: Dim) -> Dim | None:
    """Solve `w == g` for one unbound symbol when w is `±sym + rest` (e.g. "S+1" against 129)."""
    part = w.substitute(bindings)
    lin = part.as_linear()
    if lin is None:
        return None
    coeffs, _ = lin
    c = coeffs.get(sym)
    if c not in (1, -1):
        return None
    rest = part - Dim.sym(sym) * c
    return (g - rest) * c


def substitute_type(t: Type, bindings: dict[str, Dim]) -> Type:
    if isinstance(t, TensorType):
        return TensorType(tuple(d.substitute(bindings) for d in t.dims), t.dtype, t.policy, "Tensor")
    if isinstance(t, TupleType):
        return TupleType(tuple(substitute_type(e, bindings) for e in t.elts))
    return t


def _default_type(p: Param) -> Type:
    v = p.default
    if isinstance(v, DTypeValue):
        return v
    if v == ():
        return TupleType(())
    return type_of_python_scalar(v)


def _signature_note(b: Builtin) -> str:
    parts = []
    star = False
    for p in b.params:
        if p.variadic:
            parts.append(f"*{p.name}")
            star = True
            continue
        if p.kw_only and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.required else f"{p.name}={_show_default(p.default)}")
    return f"signature: {b.name}({', '.join(parts)})"


def _show_default(v: object) -> str:
    if isinstance(v, DTypeValue):
        return str(v.dtype)
    return repr(v)


