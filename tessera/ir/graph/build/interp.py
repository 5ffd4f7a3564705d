"""The build-time interpreter: runs the body of a `@jit` function over the checked AST, emitting graph
ops for tensor work and folding everything else.

Host-level control flow is executed, not compiled: an `if` on a static value takes one branch, a
`for` over a static range is unrolled, and calls of user functions (undecorated helpers, the generic
functions of `stdlib.nn`, other `@jit` functions) are inlined with their arguments bound. A test that
depends on a tensor is an error. Types are recomputed from the graph values as they are built — a
generic helper's nodes hold the checker's types of its last instantiation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tessera.constraints import Constraint, ConstraintSet
from tessera.diagnostics import CompilationError, error
from tessera.frontend import ast
from tessera.frontend.annotations import dtype_value, resolve_type
from tessera.frontend.builtins import BUILTINS, CONSTANTS
from tessera.frontend.builtins import Param as BParam
from tessera.frontend.checker import CheckResult
from tessera.frontend.expressions import NAMESPACES, builtin_name
from tessera.frontend.intrinsics import EFFECT_SCOPES
from tessera.frontend.signatures import Signature
from tessera.frontend.types import (
    BuiltinRef,
    DTypeValue,
    NamespaceRef,
    ScalarType,
    TensorType,
    TupleType,
    dtype_named,
)
from tessera.ir.graph.build import hostops
from tessera.ir.graph.build.emitter import Emitter
from tessera.ir.graph.build.values import (
    BuiltinV,
    DTypeV,
    DynScalar,
    FnV,
    NamespaceV,
    PolicyV,
    ScopeV,
    SymRange,
    TVal,
    describe,
    is_host_scalar,
)
from tessera.source import Span
from tessera.symbolic import Dim

MAX_INLINE_DEPTH = 64
MAX_LOOP_ITERATIONS = 100_000
_MISSING = object()


@dataclass
class Frame:
    """One function activation: its module (for global names) and its local variables."""

    module: str
    env: dict[str, object] = field(default_factory=dict)
    fn: ast.FunctionDef | None = None


@dataclass
class _Return:
    value: object


class _Break:
    pass


class _Continue:
    pass


Signal = _Return | _Break | _Continue | None


class Builder:
    """Interprets one `@jit` function (and everything it inlines) into an `Emitter`."""

    def __init__(self, result: CheckResult, root: Signature, cs: ConstraintSet):
        self.result = result
        self.program = result.program
        self.root = root
        self.cs = cs
        self.em = Emitter(cs)
        self.depth = 0
        self.guards: list[str] = []
        self._globals: dict[str, dict[str, object]] = {}
        self._const_values: dict[tuple[str, str], object] = {}
        self._draws: dict[tuple[str, int, int], int] = {}

    # ------------------------------------------------------------ errors

    def fail(self, msg: str, span: Span, code: str = "E-TYPE", notes: Sequence[str] = ()) -> CompilationError:
        return error(code, msg, span, notes=notes)

    def unsupported(self, what: str, span: Span) -> CompilationError:
        return error("E-TYPE", f"{what} is not supported in compiled (@jit) code yet", span)

    # ------------------------------------------------------------ names

    def lookup(self, name: str, fr: Frame, span: Span) -> object:
        if name in fr.env:
            return fr.env[name]
        v = self.global_value(fr.module, name, span)
        if v is not _MISSING:
            return v
        v = builtin_value(name)
        if v is _MISSING:
            raise self.fail(f"name '{name}' is not defined", span, "E-NAME")
        return v

    def _namespace(self, module: str) -> dict[str, object]:
        ns = self._globals.get(module)
        if ns is not None:
            return ns
        ns = {}
        self._globals[module] = ns
        mod = self.program.modules[module]
        for fn in mod.tree.functions:
            ns[fn.name] = FnV(fn, module)
        for imp in mod.tree.imports:
            if isinstance(imp, ast.Import):
                target = mod.resolved.get(imp)
                if target is not None:
                    if imp.asname:
                        ns[imp.asname] = NamespaceV(target)
                    else:
                        ns[imp.module.split(".")[0]] = NamespaceV(imp.module.split(".")[0])
            elif not imp.module or mod.resolved.get(imp) is None:
                # `from . import layers`, `from stdlib import nn`: each name is a module.
                for n in imp.names:
                    target = mod.resolved.get(n)
                    if target is not None:
                        ns[n.asname or n.name] = NamespaceV(target)
            else:
                target = mod.resolved.get(imp)
                if target is not None:
                    for n in imp.names:
                        ns[n.asname or n.name] = ("import", target, n.name)
        for c in mod.tree.constants:
            ns[c.name] = ("const", c)
        return ns

    def global_value(self, module: str, name: str, span: Span) -> object:
        entry = self._namespace(module).get(name, _MISSING)
        if isinstance(entry, tuple) and entry and entry[0] == "import":
            _, target, member = entry
            return self.global_value(target, member, span)
        if isinstance(entry, tuple) and entry and entry[0] == "const":
            key = (module, name)
            if key not in self._const_values:
                c: ast.ConstDef = entry[1]
                self._const_values[key] = self.expr(c.value, Frame(module))
            return self._const_values[key]
        return entry

    def attribute(self, base: object, attr: str, span: Span) -> object:
        if isinstance(base, TVal):
            if attr == "shape":
                return base.dims
            if attr == "T":
                from tessera.ir.graph.build.lower_shape import transpose_value

                return transpose_value(self, base, tuple(reversed(range(base.rank))), span)
            if attr == "ndim":
                return Dim.const(base.rank)
            if attr == "dtype":
                return DTypeV(base.dtype, base.policy)
            raise self.fail(f"a tensor has no attribute '{attr}'", span, "E-NAME")
        if isinstance(base, NamespaceV):
            if base.name == "effects" and attr in EFFECT_SCOPES:
                return BuiltinV(f"effects.{attr}")
            if base.name == "tile":
                raise self.fail(f"tile.{attr} is a tile intrinsic; it may only be used inside a @kernel", span)
            if base.name in self.program.modules:
                v = self.global_value(base.name, attr, span)
                if v is _MISSING:
                    raise self.fail(f"module '{base.name}' has no name '{attr}'", span, "E-NAME")
                return v
            sub = f"{base.name}.{attr}"
            if any(k == sub or k.startswith(sub + ".") for k in self.program.modules):
                return NamespaceV(sub)
        raise self.fail(f"{describe(base)} has no attribute '{attr}' in compiled code", span, "E-NAME")

    # ------------------------------------------------------------ expressions

    def expr(self, e: ast.Expr, fr: Frame) -> object:
        match e:
            case ast.Constant(value=v):
                if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
                    return v
                return Dim.const(v)
            case ast.Name(id=name):
                return self.lookup(name, fr, e.span)
            case ast.Attribute(value=base, attr=attr):
                return self.attribute(self.expr(base, fr), attr, e.attr_span or e.span)
            case ast.Subscript():
                from tessera.ir.graph.build.indexing import subscript

                return subscript(self, e, fr)
            case ast.Call():
                return self.call(e, fr)
            case ast.BinOp():
                return self.binop(e, fr)
            case ast.UnaryOp(op=op, operand=operand):
                v = self.expr(operand, fr)
                if op == "not":
                    return not self.truth(v, operand.span)
                if op == "+":
                    return v
                from tessera.ir.graph.build.lower_elementwise import unary

                return unary(self, "neg", v, e.span)
            case ast.BoolOp(op=op, values=values):
                v: object = None
                for x in values:
                    v = self.expr(x, fr)
                    t = self.truth(v, x.span)
                    if (op == "and" and not t) or (op == "or" and t):
                        return v
                return v
            case ast.Compare():
                return self.compare(e, fr)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return self.expr(body if self.truth(self.expr(test, fr), test.span) else orelse, fr)
            case ast.Tuple(elts=elts):
                return tuple(self.expr(x, fr) for x in elts)
            case ast.List(elts=elts):
                return [self.expr(x, fr) for x in elts]
            case ast.Dict(keys=keys, values=values):
                return {self.expr(k, fr): self.expr(v, fr) for k, v in zip(keys, values)}
        raise self.unsupported(f"the expression {type(e).__name__}", e.span)

    def binop(self, e: ast.BinOp, fr: Frame) -> object:
        left = self.expr(e.left, fr)
        if e.op == "@" and isinstance(left, DTypeV):
            dv = e.ty if isinstance(e.ty, DTypeValue) else dtype_value(e, _annotation_lookup)
            return DTypeV(dv.dtype, dv.policy)
        right = self.expr(e.right, fr)
        if e.op == "@":
            from tessera.ir.graph.build.lower_linalg import matmul

            return matmul(self, left, right, e.span)
        if isinstance(left, (tuple, list)) or isinstance(right, (tuple, list)) or isinstance(left, str):
            return self.sequence_op(e.op, left, right, e.span)
        from tessera.ir.graph.build.lower_elementwise import binary

        return binary(self, e.op, left, right, e.span)

    def sequence_op(self, op: str, a: object, b: object, span: Span) -> object:
        if op == "+" and isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
            return type(a)([*a, *b])
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if op == "*" and isinstance(a, (tuple, list)) and isinstance(b, Dim):
            return type(a)(list(a) * self.static_int(b, span, "a repeat count"))
        raise self.fail(f"unsupported operands for '{op}': {describe(a)} and {describe(b)}", span)

    def compare(self, e: ast.Compare, fr: Frame) -> object:
        left = self.expr(e.left, fr)
        rights = [self.expr(c, fr) for c in e.comparators]
        if any(isinstance(v, (TVal, DynScalar)) for v in (left, *rights)):
            if len(e.ops) > 1:
                raise self.fail("chained comparisons of tensors are ambiguous", e.span)
            from tessera.ir.graph.build.lower_elementwise import compare

            return compare(self, e.ops[0], left, rights[0], e.span)
        a = left
        for op, b in zip(e.ops, rights):
            if not self.host_compare(op, a, b, e.span):
                return False
            a = b
        return True

    def host_compare(self, op: str, a: object, b: object, span: Span) -> bool:
        if op in ("in", "not in"):
            if isinstance(b, range) and isinstance(a, Dim):
                found = a.is_const and a.value in b
            elif isinstance(b, (tuple, list, dict)):
                found = any(self._host_equal(a, x, span) for x in b)
            else:
                raise self.fail(f"'{op}' needs a range, tuple, list or dict on its right, found {describe(b)}",
                                span)
            return found if op == "in" else not found
        if op in ("is", "is not"):
            same = a is b or (a is None and b is None)
            return same if op == "is" else not same
        if is_host_scalar(a) and is_host_scalar(b):
            try:
                return hostops.compare(op, a, b, self.cs)
            except hostops.NotStatic:
                raise self.fail(f"cannot decide `{a} {op} {b}` when the graph is built: it depends on extents "
                                "the where clause does not fix", span,
                                notes=["add a where constraint that decides it, or build with concrete dims"]) \
                    from None
        if op in ("==", "!="):
            eq = self._host_equal(a, b, span)
            return eq if op == "==" else not eq
        raise self.fail(f"cannot compare {describe(a)} and {describe(b)} with '{op}'", span)

    def _host_equal(self, a: object, b: object, span: Span) -> bool:
        if is_host_scalar(a) and is_host_scalar(b):
            return self.host_compare("==", a, b, span)
        if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
            return len(a) == len(b) and all(self._host_equal(x, y, span) for x, y in zip(a, b))
        if is_host_scalar(a) != is_host_scalar(b):
            return False
        return bool(a == b)

    def truth(self, v: object, span: Span) -> bool:
        """The truth of a static test; a tensor-dependent test is an error."""
        if isinstance(v, (TVal, DynScalar)):
            raise self.fail("a test on a tensor value: compiled control flow must be static", span,
                            notes=["branch on parameters and shapes, or select elementwise with where(cond, a, b)"])
        if isinstance(v, bool):
            return v
        if isinstance(v, Dim):
            try:
                return not hostops.compare("==", v, Dim.const(0), self.cs)
            except hostops.NotStatic:
                raise self.fail(f"cannot decide whether {v} is zero when the graph is built", span) from None
        if isinstance(v, SymRange):
            raise self.fail(f"cannot decide whether range({v.stop}) is empty when the graph is built", span)
        return bool(v)

    def static_int(self, v: object, span: Span, what: str) -> int:
        d = hostops.as_dim(v)
        if d is None or not d.is_const:
            raise self.fail(f"{what} must be an int known when the graph is built, found {describe(v)}", span)
        return d.value

    # ------------------------------------------------------------ calls

    def call(self, e: ast.Call, fr: Frame) -> object:
        f = self.expr(e.func, fr)
        args = [self.expr(a, fr) for a in e.args]
        kws = {kw.name: self.expr(kw.value, fr) for kw in e.keywords}
        if isinstance(f, FnV):
            return self.call_user(f, args, kws, e.span)
        if isinstance(f, BuiltinV):
            return self.call_builtin(f.name, args, kws, e)
        raise self.fail(f"{describe(f)} is not callable", e.func.span)

    def call_builtin(self, name: str, args: list[object], kws: dict[str, object], e: ast.Call) -> object:
        from tessera.ir.graph.build.lowerings import LOWERINGS

        if name.startswith("effects."):
            return ScopeV(name)
        if name in ("accum", "loss_scale", "round"):
            from tessera.frontend.annotations import policy_value

            return PolicyV(policy_value(e, _annotation_lookup).policy)
        b = BUILTINS.get(name)
        low = LOWERINGS.get(name)
        if b is None or low is None:
            raise self.unsupported(f"'{name}'", e.span)
        if b.host_only:
            raise self.fail(f"'{name}' runs on the host only; it cannot be used in @jit code", e.span)
        bound, varargs = bind_builtin(b.params, args, kws)
        if bound is None:
            raise self.fail(f"bad arguments for {name}()", e.span)
        return low(self, bound, varargs, e.span)

    def call_user(self, f: FnV, args: list[object], kws: dict[str, object], span: Span) -> object:
        sig = self.result.signatures.get(f.fn)
        if sig is None:
            raise self.fail(f"'{f.fn.name}' was not checked", span)
        if sig.kind == "kernel":
            from tessera.ir.kernel_registry import build_call

            return build_call(self, self.result, f.fn, f.module, args, kws, span)
        if self.depth >= MAX_INLINE_DEPTH:
            raise self.fail(f"inlining '{f.fn.name}' nests more than {MAX_INLINE_DEPTH} calls deep (recursion?)",
                            span, notes=["compiled code inlines every call; recursion cannot be unrolled"])
        fr = Frame(f.module, fn=f.fn)
        positional = [p for p in f.fn.params if not p.kw_only]
        if len(args) > len(positional):
            raise self.fail(f"'{f.fn.name}' takes {len(positional)} positional arguments but {len(args)} were given",
                            span)
        for p, a in zip(positional, args):
            fr.env[p.name] = a
        for k, v in kws.items():
            if k in fr.env or all(p.name != k for p in f.fn.params):
                raise self.fail(f"bad keyword argument '{k}' for '{f.fn.name}'", span)
            fr.env[k] = v
        for p in f.fn.params:
            if p.name not in fr.env:
                if p.default is None:
                    raise self.fail(f"call to '{f.fn.name}' is missing the argument '{p.name}'", span)
                fr.env[p.name] = self.expr(p.default, Frame(f.module))
        bindings: dict[str, Dim] = {}
        for ps in sig.params:
            fr.env[ps.name] = self.coerce_declared(fr.env[ps.name], ps.ty, span, bindings)
        if sig.kind == "jit" and sig.constraints:
            self.add_guards(sig, bindings)
        self.depth += 1
        try:
            sigl = self.block(f.fn.body, fr)
        finally:
            self.depth -= 1
        value = sigl.value if isinstance(sigl, _Return) else None
        if sig.returns is not None:
            value = self.coerce_declared(value, sig.returns, span, {})
        return value

    def coerce_declared(self, v: object, ty: object, span: Span, bindings: dict[str, Dim]) -> object:
        """A value stored where a type is declared: widened to the declared dtype (narrowing was
        rejected by the checker) and given the declared policy; ints declared float become floats."""
        if isinstance(ty, TensorType) and ty.dtype is not None:
            if isinstance(v, TVal):
                for w, g in zip(ty.dims, v.dims):
                    if len(w.free_symbols) == 1 and w == Dim.sym(next(iter(w.free_symbols))):
                        bindings.setdefault(next(iter(w.free_symbols)), g)
                out = self.em.cast(v.value, ty.dtype, span)
                return TVal(out, ty.policy)
            if isinstance(v, (DynScalar, Dim, float, bool)) and ty.rank == 0:
                return TVal(self.em.scalar(v, ty.dtype, span), ty.policy)
            return v
        if isinstance(ty, ScalarType) and ty.kind == "float" and isinstance(v, (Dim, bool)):
            try:
                return hostops.as_float(v)
            except hostops.NotStatic:
                return self.em.dyn(v, span)
        if isinstance(ty, TupleType) and isinstance(v, tuple):
            return tuple(self.coerce_declared(x, t, span, bindings) for x, t in zip(v, ty.elts))
        return v

    def add_guards(self, sig: Signature, bindings: dict[str, Dim]) -> None:
        """An inlined @jit callee's where constraints, over the caller's dims: those the caller's facts
        do not prove become run-time guards of the built function."""
        for c, _ in sig.constraints:
            if not (c.lhs.free_symbols | c.rhs.free_symbols) <= bindings.keys():
                continue
            inst = Constraint(c.kind, self.em.canon(c.lhs.substitute(bindings)),
                              self.em.canon(c.rhs.substitute(bindings)))
            if not self.cs.prove(inst) and str(inst) not in self.guards:
                self.guards.append(str(inst))

    # ------------------------------------------------------------ statements

    def block(self, stmts: Sequence[ast.Stmt], fr: Frame) -> Signal:
        for s in stmts:
            sig = self.stmt(s, fr)
            if sig is not None:
                return sig
        return None

    def stmt(self, s: ast.Stmt, fr: Frame) -> Signal:
        match s:
            case ast.Assign(targets=targets, value=value):
                v = self.expr(value, fr)
                for t in targets:
                    self.assign(t, v, fr, value.span)
            case ast.AnnAssign(target=target, annotation=ann, value=value):
                v = self.expr(value, fr)
                ty = resolve_type(ann, lambda name: self.annotation_name(name, fr, ann.span))
                self.assign(target, self.coerce_declared(v, ty, value.span, {}), fr, value.span)
            case ast.AugAssign(target=target, op=op, value=value):
                cur = self.lookup(target.id, fr, target.span)
                rhs = self.expr(value, fr)
                if op == "@":
                    from tessera.ir.graph.build.lower_linalg import matmul

                    new = matmul(self, cur, rhs, s.span)
                elif isinstance(cur, (tuple, list, str)):
                    new = self.sequence_op(op, cur, rhs, s.span)
                else:
                    from tessera.ir.graph.build.lower_elementwise import binary

                    new = binary(self, op, cur, rhs, s.span)
                self.assign(target, new, fr, s.span)
            case ast.Return(value=value):
                return _Return(self.expr(value, fr) if value is not None else None)
            case ast.If(test=test, body=body, orelse=orelse):
                return self.block(body if self.truth(self.expr(test, fr), test.span) else orelse, fr)
            case ast.For(target=target, iter=it, body=body):
                return self.for_loop(target, self.expr(it, fr), body, fr, it.span)
            case ast.While(test=test, body=body):
                n = 0
                while self.truth(self.expr(test, fr), test.span):
                    n += 1
                    if n > MAX_LOOP_ITERATIONS:
                        raise self.fail(f"a while loop ran more than {MAX_LOOP_ITERATIONS} iterations when the "
                                        "graph was built", s.span)
                    sig = self.block(body, fr)
                    if isinstance(sig, _Break):
                        break
                    if isinstance(sig, _Return):
                        return sig
            case ast.Break():
                return _Break()
            case ast.Continue():
                return _Continue()
            case ast.Pass():
                pass
            case ast.Assert(test=test, msg=msg):
                if not self.truth(self.expr(test, fr), test.span):
                    text = self.expr(msg, fr) if msg is not None else None
                    raise self.fail(f"assertion failed when the graph was built{': ' + text if text else ''}",
                                    s.span)
            case ast.With(items=items, body=body):
                for item in items:
                    v = self.expr(item.context, fr)
                    if not isinstance(v, ScopeV):
                        raise self.fail(f"{describe(v)} is not a context manager", item.context.span)
                    if item.name is not None:
                        self.assign(item.name, v, fr, item.span)
                return self.block(body, fr)
            case ast.ExprStmt(value=value):
                self.expr(value, fr)
            case _:
                raise self.unsupported(f"the statement {type(s).__name__}", s.span)
        return None

    def for_loop(self, target: ast.Expr, it: object, body: list[ast.Stmt], fr: Frame, span: Span) -> Signal:
        if isinstance(it, SymRange):
            raise self.fail(f"cannot unroll a loop over range({it.stop}): its trip count is not known when the "
                            "graph is built", span, notes=["loop over a static range, or use tensor ops"])
        if isinstance(it, range):
            items: Sequence[object] = [Dim.const(i) for i in it]
        elif isinstance(it, (tuple, list)):
            items = list(it)
        else:
            raise self.fail(f"cannot loop over {describe(it)} in compiled code", span)
        if len(items) > MAX_LOOP_ITERATIONS:
            raise self.fail(f"a loop of {len(items)} iterations is too long to unroll", span)
        for item in items:
            self.assign(target, item, fr, span)
            sig = self.block(body, fr)
            if isinstance(sig, _Break):
                break
            if isinstance(sig, _Return):
                return sig
        return None

    def assign(self, target: ast.Expr, v: object, fr: Frame, span: Span) -> None:
        if isinstance(target, ast.Name):
            if isinstance(v, TVal) and not v.value.hint and v.value.producer is not None:
                v.value.hint = target.id
            fr.env[target.id] = v
            return
        if isinstance(target, ast.Tuple):
            if not isinstance(v, (tuple, list)) or len(v) != len(target.elts):
                raise self.fail(f"cannot unpack {describe(v)} into {len(target.elts)} names", span)
            for t, x in zip(target.elts, v):
                self.assign(t, x, fr, span)
            return
        raise self.fail("only names and tuples of names can be assigned", target.span, "E-SYNTAX")

    def annotation_name(self, name: str, fr: Frame, span: Span) -> object:
        """A name inside a type annotation: an int module constant is a dim (`Tensor[HEADS, f32]`)."""
        v = self.global_value(fr.module, name, span) if name not in fr.env else fr.env[name]
        if isinstance(v, Dim):
            return ScalarType("int", v)
        return builtin_name(name)

    # ------------------------------------------------------------ random keys

    def draw_key(self, span: Span) -> int:
        """The seed of a random draw without an explicit one: a key of the function's seed
        (`@deterministic(seed=N)`, else 0), the call site and the draw's ordinal there (unrolled
        loops draw anew at each step)."""
        import zlib

        site = (span.file.rsplit("/", 1)[-1], span.line, span.col)
        n = self._draws.get(site, 0)
        self._draws[site] = n + 1
        text = f"{self.root.seed or 0}|{self.root.fn.name}|{site[0]}:{site[1]}:{site[2]}|{n}"
        return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _annotation_lookup(name: str) -> object:
    return builtin_name(name)


def builtin_value(name: str) -> object:
    """Names in scope in every module: builtin functions, dtypes, constants, namespaces."""
    if name in CONSTANTS:
        return float(CONSTANTS[name].value)  # type: ignore[attr-defined, arg-type]
    dt = dtype_named(name)
    if dt is not None:
        return DTypeV(dt)
    if name in NAMESPACES:
        return NamespaceV(name)
    t = builtin_name(name)
    if isinstance(t, BuiltinRef):
        return BuiltinV(t.name)
    if isinstance(t, NamespaceRef):
        return NamespaceV(t.name)
    return _MISSING


def bind_builtin(params: Sequence[BParam], args: list[object], kws: dict[str, object]
                 ) -> tuple[dict[str, object] | None, list[object]]:
    """Bind a builtin call's arguments to its catalogue signature (the checker validated the call)."""
    bound: dict[str, object] = {}
    varargs: list[object] = []
    positional = [p for p in params if not p.kw_only and not p.variadic]
    variadic = next((p for p in params if p.variadic), None)
    for i, a in enumerate(args):
        if i < len(positional):
            bound[positional[i].name] = a
        elif variadic is not None:
            varargs.append(a)
        else:
            return None, []
    for k, v in kws.items():
        if any(p.name == k and not p.variadic for p in params):
            bound[k] = v
        elif variadic is not None:
            varargs.append((k, v))
        else:
            return None, []
    for p in params:
        if p.variadic or p.name in bound:
            continue
        if p.required:
            return None, []
        bound[p.name] = default_value(p.default)
    return bound, varargs


def default_value(v: object) -> object:
    if isinstance(v, DTypeValue):
        return DTypeV(v.dtype, v.policy)
    if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
        return v
    if isinstance(v, int):
        return Dim.const(v)
    if isinstance(v, tuple):
        return tuple(default_value(x) for x in v)
    return v

