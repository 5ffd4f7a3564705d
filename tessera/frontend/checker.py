"""The checker: names, dtypes, shapes, calls and effects of a whole program.

`check_program` builds each module's namespace, reads every signature, checks every function body
statement by statement (an error in one statement does not hide errors in the next, nor in other
functions), instantiates generic helpers at their calls, and closes effects over the call graph.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tessera.constraints import Constraint, ConstraintSet
from tessera.diagnostics import CompilationError, Diagnostic, Label, error
from tessera.frontend import ast, shapes
from tessera.frontend.annotations import resolve_type
from tessera.frontend.calls import CallTyping, substitute_type
from tessera.frontend.decorators import read_decorators
from tessera.frontend.effects import (
    EffectRecord,
    EffectSite,
    EffectSummary,
    check_effects,
    infer_effects,
)
from tessera.frontend.expressions import ExpressionTyping
from tessera.frontend.program import Program
from tessera.frontend.signatures import ParamSig, Signature, dim_symbols
from tessera.frontend.types import (
    ANY,
    NONE,
    AnyType,
    FunctionRef,
    ListType,
    NamespaceRef,
    NoneType,
    OpaqueType,
    ScalarType,
    StrType,
    TensorType,
    TileType,
    TupleType,
    Type,
    is_narrowing,
)
from tessera.source import Span
from tessera.symbolic import Dim

MAX_INSTANTIATION_DEPTH = 24


@dataclass
class CheckResult:
    program: Program
    diagnostics: list[Diagnostic]
    signatures: dict[ast.FunctionDef, Signature] = field(default_factory=dict)
    effects: dict[ast.FunctionDef, EffectSummary] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diagnostics


class ProgramChecker:
    def __init__(self, program: Program):
        self.program = program
        self.modules = program.modules
        self.namespaces: dict[str, dict[str, Type]] = {}
        self.sigs: dict[ast.FunctionDef, Signature] = {}
        self.records: dict[ast.FunctionDef, EffectRecord] = {}
        self.diags: list[Diagnostic] = []
        self._seen: dict[tuple[str, Span, str], int] = {}  # -> index in self.diags
        self._fresh = itertools.count(1)
        self._memo: dict[tuple, Type] = {}
        self._active: set[tuple] = set()
        self._lines: dict[str, list[str]] = {m.source.path: m.source.text.splitlines() for m in self.modules.values()}

    # ------------------------------------------------------------ services for FunctionChecker

    def add(self, diags: list[Diagnostic]) -> None:
        for d in diags:
            key = (d.code, d.span, d.message)
            i = self._seen.get(key)
            if i is None:
                self._seen[key] = len(self.diags)
                self.diags.append(d)
            elif len(d.labels) < len(self.diags[i].labels):
                # Also found without instantiating a generic helper: drop the "instantiated from" label.
                self.diags[i] = d

    def fresh_dim(self) -> Dim:
        return Dim.internal_sym(f"?{next(self._fresh)}")

    def source_text(self, file: str, line: int) -> str:
        lines = self._lines.get(file, [])
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def global_lookup(self, module: str, name: str, exported_only: bool = False) -> Type | None:
        ns = self.namespaces.get(module)
        if ns is None:
            ns = self.build_namespace(module)
        return ns.get(name)

    # ------------------------------------------------------------ modules

    def build_namespace(self, key: str) -> dict[str, Type]:
        ns: dict[str, Type] = {}
        self.namespaces[key] = ns
        mod = self.modules[key]
        for fn in mod.tree.functions:
            self._define(ns, fn.name, FunctionRef(fn, key), fn.name_span)
        for imp in mod.tree.imports:
            self._bind_import(ns, key, imp)
        scope = FunctionChecker(self, key, None)
        for c in mod.tree.constants:
            try:
                t = scope.expr(c.value)
                if c.annotation is not None:
                    scope.check_assignable(resolve_type(c.annotation, scope.resolve), t, c.value, "constant")
            except CompilationError as ex:
                self.add(ex.diagnostics)
                t = ANY
            self._define(ns, c.name, t, c.name_span)
        return ns

    def _define(self, ns: dict[str, Type], name: str, t: Type, span: Span) -> None:
        if name in ns:
            self.add([error("E-NAME", f"'{name}' is defined twice in this module", span).primary])
        ns[name] = t

    def _bind_import(self, ns: dict[str, Type], key: str, imp: ast.ImportFrom | ast.Import) -> None:
        mod = self.modules[key]
        # A failed import was reported; its names are bound to `any` so that their uses do not cascade.
        if isinstance(imp, ast.Import):
            target = mod.resolved.get(imp)
            name = imp.asname or imp.module.split(".")[0]
            if target is None:
                ns.setdefault(name, ANY)
            else:
                ns[name] = NamespaceRef(target if imp.asname else name)
            return
        if not imp.module or any(n in mod.resolved for n in imp.names):
            # `from . import layers`, `from stdlib import nn`: each name is a module.
            for n in imp.names:
                target = mod.resolved.get(n)
                ns[n.asname or n.name] = NamespaceRef(target) if target is not None else ANY
            return
        target = mod.resolved.get(imp)
        for n in imp.names:
            if target is None:
                ns[n.asname or n.name] = ANY  # the import itself failed and was reported
                continue
            t = self.global_lookup(target, n.name)
            if t is None:
                import difflib

                close = difflib.get_close_matches(n.name, list(self.namespaces.get(target, {})), n=1)
                self.add([error("E-NAME", f"module '{imp.module}' has no name '{n.name}'", n.span,
                                notes=[f"did you mean '{close[0]}'?"] if close else []).primary])
                t = ANY
            ns[n.asname or n.name] = t

    # ------------------------------------------------------------ signatures

    def signature(self, module: str, fn: ast.FunctionDef) -> Signature:
        sig = self.sigs.get(fn)
        if sig is None:
            sig = self._read_signature(module, fn)
            self.sigs[fn] = sig
        return sig

    def _read_signature(self, module: str, fn: ast.FunctionDef) -> Signature:
        sig = Signature(fn, module)
        self.sigs[fn] = sig  # visible to recursive references while it is being read
        scope = FunctionChecker(self, module, None)
        diags: list[Diagnostic] = []

        def attempt(f, *a):
            try:
                return f(*a)
            except CompilationError as ex:
                diags.extend(ex.diagnostics)
                sig.ok = False
                return None

        attempt(read_decorators, sig, scope)
        seen: set[str] = set()
        for p in fn.params:
            if p.name in seen:
                diags.append(error("E-NAME", f"parameter '{p.name}' is given twice", p.span).primary)
            seen.add(p.name)
            ty = attempt(resolve_type, p.annotation, scope.resolve) if p.annotation is not None else None
            if p.default is not None:
                dt = attempt(scope.expr, p.default)
                if ty is not None and dt is not None:
                    attempt(scope.check_assignable, ty, dt, p.default, f"the default of '{p.name}'")
            sig.params.append(ParamSig(p.name, p.span, ty, p.default is not None, p.kw_only))
        if fn.returns is not None:
            sig.returns = attempt(resolve_type, fn.returns, scope.resolve)
            if sig.returns is None:
                sig.ok = False
        symbols: set[str] = set()
        for p, param in zip(sig.params, fn.params):
            # A parameter type that failed (and was reported) still names its dims, so that the `where`
            # clause and the result do not report them again as unknown.
            symbols |= dim_symbols(p.ty) if p.ty is not None or param.annotation is None else \
                _written_symbols(param.annotation)
        from tessera.frontend.annotations import constraints_of

        where_syms = symbols | dim_symbols(sig.returns)
        for item in fn.where:
            cs = attempt(constraints_of, item, frozenset(where_syms), scope.resolve)
            for c in cs or ():
                sig.constraints.append((c, item.span))
        sig.symbols = frozenset(where_syms)
        if sig.returns is not None and fn.returns is not None:
            loose = dim_symbols(sig.returns) - _determined_symbols(symbols, [c for c, _ in sig.constraints])
            if loose:
                diags.append(error("E-SHAPE", f"the result dim{'s' if len(loose) > 1 else ''} "
                                   f"{', '.join(sorted(loose))} {'are' if len(loose) > 1 else 'is'} not bound by "
                                   "any parameter", fn.returns.span,
                                   notes=["every result dim must come from a parameter's dims or a where equality"]
                                   ).primary)
                sig.returns = ANY  # reported here once: the body's returns and the callers see `any`
        cset = sig.constraint_set()
        for bad in cset.contradictions():
            span = next((s for c, s in sig.constraints if c == bad), fn.name_span)
            diags.append(error("E-CONSTRAINT", f"the constraint `{bad}` can never hold", span,
                               notes=["with the other constraints of this signature"]).primary)
        self.add(diags)
        return sig

    # ------------------------------------------------------------ instantiation of generic helpers

    def instantiate(self, sig: Signature, bound: dict[str, tuple[Type, ast.Expr]], caller: FunctionChecker,
                    call: ast.Call) -> Type:
        """Check a generic function's body with the argument types of one call; its result type."""
        args: dict[str, Type] = {}
        for p in sig.params:
            if p.name in bound:
                args[p.name] = bound[p.name][0]
            else:
                default = next(x.default for x in sig.fn.params if x.name == p.name)
                args[p.name] = caller.prog_scope(sig.module).expr(default) if default is not None else ANY
        key = (sig.fn, tuple(_type_key(args[p.name]) for p in sig.params), tuple(map(str, caller.facts)))
        if key in self._memo:
            return self._memo[key]
        if key in self._active or caller.depth >= MAX_INSTANTIATION_DEPTH:
            return ANY  # recursion: the result is not tracked
        self._active.add(key)
        try:
            fc = FunctionChecker(self, sig.module, sig, args=args, facts=caller.facts,
                                 depth=caller.depth + 1, instantiated_at=call.span)
            result = fc.check_body()
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    # ------------------------------------------------------------ driver

    def check(self) -> CheckResult:
        for key in list(self.modules):
            if key not in self.namespaces:
                self.build_namespace(key)
        for key, mod in self.modules.items():
            for fn in mod.tree.functions:
                sig = self.signature(key, fn)
                self.records[fn] = EffectRecord(fn, sig.declared_effects, sig.deterministic)
        for key, mod in self.modules.items():
            for fn in mod.tree.functions:
                FunctionChecker(self, key, self.sigs[fn], record=self.records[fn]).check_body()
        summaries = infer_effects(self.records)
        self.add(check_effects(self.records, summaries))
        return CheckResult(self.program, self.diags, self.sigs, summaries)


def _written_symbols(annotation: ast.Expr) -> set[str]:
    """The dim symbols written in the strings of a type annotation, however the rest of it reads."""
    out: set[str] = set()
    stack = [annotation]
    while stack:
        e = stack.pop()
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            out |= set(re.findall(r"[A-Za-z_]\w*", e.value))
        stack.extend(ast.iter_child_exprs(e))
    return out


def _determined_symbols(params: set[str], constraints: list[Constraint]) -> set[str]:
    """The dim symbols fixed by the parameters, then by `where` equalities that determine one more
    symbol from fixed ones (`H == 4 * D`, `N == B * S`; not `C % 8 == 0`)."""
    fixed = set(params)
    changed = True
    while changed:
        changed = False
        for c in constraints:
            free = (c.lhs.free_symbols | c.rhs.free_symbols) - fixed
            if c.kind != "==" or len(free) != 1:
                continue
            sym = next(iter(free))
            diff = c.lhs - c.rhs
            lin = (diff - diff.substitute({sym: Dim.const(0)})).as_linear()
            if lin is not None and lin[1] == 0 and lin[0].get(sym, 0) != 0:
                fixed.add(sym)
                changed = True
    return fixed


def _type_key(t: Type) -> object:
    if isinstance(t, ScalarType):
        return (t.kind, str(t.value))
    if isinstance(t, StrType):
        return ("str", t.value)
    if isinstance(t, (TupleType, ListType)):
        return (type(t).__name__, tuple(_type_key(e) for e in t.elts))
    return t


class FunctionChecker(ExpressionTyping, CallTyping):
    """Checks one function body (or, with `sig=None`, module-level expressions)."""

    def __init__(self, prog: ProgramChecker, module: str, sig: Signature | None, *,
                 args: dict[str, Type] | None = None, facts: list[Constraint] | None = None,
                 record: EffectRecord | None = None, depth: int = 0, instantiated_at: Span | None = None):
        self.prog = prog
        self.module = module
        self.sig = sig
        self.kind = sig.kind if sig else "host"
        self.depth = depth
        self.instantiated_at = instantiated_at
        self.env: dict[str, Type] = {}
        self.facts: list[Constraint] = list(facts or [])
        self.bindings: dict[str, Dim] = {}
        if sig is not None:
            for p in sig.params:
                self.env[p.name] = args[p.name] if args is not None else (p.ty if p.ty is not None else ANY)
            if args is not None:
                self._bind_instance_symbols(sig, args)
            else:
                self.facts.extend(c for c, _ in sig.constraints)
        self.cs = ConstraintSet(self.facts)
        self.record = record if record is not None else EffectRecord(sig.fn if sig else None)  # type: ignore[arg-type]
        self.suspended: list[str] = []
        self.allowed: list[str] = []
        self.loops = 0
        self.returns: list[tuple[Type, ast.Expr | None, Span]] = []
        self._scope: FunctionChecker | None = None

    def _bind_instance_symbols(self, sig: Signature, args: dict[str, Type]) -> None:
        """In an instantiation, the callee's dim symbols stand for the caller's dims."""
        for p in sig.params:
            want, got = p.ty, args[p.name]
            if isinstance(want, TensorType) and isinstance(got, TensorType) and want.rank == got.rank:
                for w, g in zip(want.dims, got.dims):
                    syms = w.free_symbols
                    if len(syms) == 1 and w == Dim.sym(next(iter(syms))):
                        self.bindings.setdefault(next(iter(syms)), g)
        for c, _ in sig.constraints:
            if (c.lhs.free_symbols | c.rhs.free_symbols) <= set(self.bindings):
                self.facts.append(Constraint(c.kind, c.lhs.substitute(self.bindings),
                                             c.rhs.substitute(self.bindings)))

    def prog_scope(self, module: str) -> FunctionChecker:
        return FunctionChecker(self.prog, module, None)

    def expr_args_only(self, call: ast.Call) -> None:
        """Type a decorator call's arguments (the decorator itself is read by its shape)."""
        for a in call.args:
            self.expr(a)
        for kw in call.keywords:
            self.expr(kw.value)

    def kind_name(self) -> str:
        return {"jit": "@jit", "kernel": "@kernel"}.get(self.kind, "host")

    def effect(self, kind: str, span: Span, what: str) -> None:
        if kind in self.suspended:
            return
        self.record.sites.append(EffectSite(kind, span, what, kind in self.allowed))

    # ------------------------------------------------------------ body

    def check_body(self) -> Type:
        assert self.sig is not None
        self.block(self.sig.fn.body)
        declared = self.sig.returns
        if declared is not None:
            declared = substitute_type(declared, self.bindings) if self.bindings else declared
            if not _always_returns(self.sig.fn.body) and declared != NONE:
                self.report(error("E-TYPE", f"'{self.sig.fn.name}' declares a result but can end without "
                                  "returning one", self.sig.fn.name_span))
            return declared
        result: Type | None = None
        for t, _, span in self.returns:
            try:
                result = t if result is None else self.join(result, t, span, "the returned values")
            except CompilationError as ex:
                self.report(ex)
                return ANY
        return result if result is not None else NONE

    def report(self, ex: CompilationError) -> None:
        diags = ex.diagnostics
        if self.instantiated_at is not None:
            diags = [Diagnostic(d.code, d.message, d.span,
                                (*d.labels, Label(self.instantiated_at, "instantiated from this call")),
                                d.notes, d.fixit) for d in diags]
        self.prog.add(diags)

    def block(self, stmts: list[ast.Stmt]) -> None:
        for s in stmts:
            try:
                self.stmt(s)
            except CompilationError as ex:
                self.report(ex)
                for name in _assigned_names(s):
                    self.env[name] = ANY
                if isinstance(s, ast.Return):
                    self.returns.append((ANY, None, s.span))  # the result is unknown, not None

    def stmt(self, s: ast.Stmt) -> None:
        match s:
            case ast.Assign(targets=targets, value=value):
                t = self.expr(value)
                for target in targets:
                    self.bind_target(target, t, value)
            case ast.AnnAssign(target=target, annotation=ann, value=value):
                want = resolve_type(ann, self.resolve)
                if self.bindings:
                    want = substitute_type(want, self.bindings)
                got = self.expr(value)
                self.check_assignable(want, got, value, f"'{target.id}'")
                self.bind_target(target, want if not isinstance(got, AnyType) else got, value)
            case ast.AugAssign(target=target, op=op, value=value):
                if target.id not in self.env:
                    self.lookup_name(target)
                    raise error("E-NAME", f"'{target.id}' must be a local variable to update it", target.span)
                t = self.expr(ast.BinOp(s.span, op=op, left=target, right=value))
                self.bind_target(target, t, value)
            case ast.Return(value=value):
                t = self.expr(value) if value is not None else NONE
                self.check_return(t, value, s.span)
            # A bad header is reported and its body still checked (its names become `any`).
            case ast.If(test=test, body=body, orelse=orelse):
                self.header(self.require_static_test, test, "an if")
                known = _none_test(test)
                if known is None:
                    self.branches(body, orelse, s.span)
                else:
                    # `if x is not None:` where x's type settles it: the dead branch is not checked
                    # (a default of None for an optional tensor, as the stdlib's kernels use).
                    self.branches(body if known else orelse, [], s.span)
            case ast.For(target=target, iter=it, body=body):
                self.header(lambda: self.loop_target(target, self.expr(it), it), target=target)
                self.loop_body(body, s.span)
            case ast.While(test=test, body=body):
                self.header(self.require_static_test, test, "a while loop")
                self.loop_body(body, s.span)
            case ast.Break() | ast.Continue():
                if not self.loops:
                    raise error("E-SYNTAX", f"'{type(s).__name__.lower()}' outside a loop", s.span)
            case ast.Pass():
                pass
            case ast.Assert(test=test, msg=msg):
                self.require_host_bool(test, "assert")
                if msg is not None and not isinstance(self.expr(msg), (StrType, AnyType)):
                    raise error("E-TYPE", "an assert message must be a string", msg.span)
            case ast.With():
                self.with_block(s)
            case ast.ExprStmt(value=value):
                self.expr(value)
            case _:
                raise error("E-SYNTAX", f"{type(s).__name__} is not allowed here", s.span)

    def header(self, check: Callable[..., None], *args: object, target: ast.Expr | None = None) -> None:
        """Check the header of a compound statement; on error report it and bind `target`'s names to
        `any`, so that the body is still checked without cascading errors."""
        try:
            check(*args)
        except CompilationError as ex:
            self.report(ex)
            for name in _target_names(target) if target is not None else ():
                self.env[name] = ANY

    def bind_target(self, target: ast.Expr, t: Type, value: ast.Expr) -> None:
        if isinstance(target, ast.Name):
            if self.sig is not None and target.id not in self.env and \
                    self.prog.global_lookup(self.module, target.id) is not None and \
                    not isinstance(self.prog.global_lookup(self.module, target.id), (FunctionRef, NamespaceRef)):
                raise error("E-TYPE", f"cannot assign to the module constant '{target.id}'; constants are immutable",
                            target.span, fixit=f"{target.id.lower()}_local = ...")
            target.ty = t
            self.env[target.id] = t
            return
        if isinstance(target, ast.Tuple):
            if isinstance(t, AnyType):
                elts: tuple[Type, ...] = tuple(ANY for _ in target.elts)
            elif isinstance(t, (TupleType, ListType)):
                if len(t.elts) != len(target.elts):
                    raise error("E-TYPE", f"cannot unpack {len(t.elts)} values into {len(target.elts)} names",
                                target.span)
                elts = t.elts
            else:
                raise error("E-TYPE", f"cannot unpack {t}", value.span)
            target.ty = t
            for sub, st in zip(target.elts, elts):
                self.bind_target(sub, st, value)
            return
        raise error("E-SYNTAX", "only names and tuples of names can be assigned", target.span)

    def check_assignable(self, want: Type, got: Type, value: ast.Expr, what: str,
                         text: str | None = None) -> None:
        """`got` may be stored where `want` is declared: same shape, no implicit narrowing. `text` names
        the value in fix-its when it is an element of `value` (`z[1]`)."""
        if isinstance(got, AnyType) or isinstance(want, AnyType):
            return
        if isinstance(want, TensorType):
            if isinstance(got, ScalarType):
                if want.rank == 0:
                    return
                raise error("E-SHAPE", f"{what} is declared {want} but the value is a scalar", value.span)
            if not isinstance(got, TensorType):
                raise error("E-TYPE", f"{what} is declared {want} but the value is {got}", value.span)
            if got.rank != want.rank:
                raise error("E-SHAPE", f"{what} is declared with rank {want.rank} but the value has rank {got.rank}",
                            value.span, notes=[f"declared {want}, found {got}"])
            for i, (w, g) in enumerate(zip(want.dims, got.dims)):
                if not shapes.dims_equal(self.cs, w, g):
                    raise error("E-SHAPE", f"{what}: value.shape[{i}] ({g}) must equal the declared {w}", value.span,
                                notes=[f"add 'where {g} == {w}' or fix the value" if not (g.is_const and w.is_const)
                                       else "fix the value or the declaration"])
            if want.dtype is not None and got.dtype is not None and is_narrowing(got.dtype, want.dtype):
                raise error("E-DTYPE", f"{what} is declared {want.dtype} but the value is {got.dtype}; narrowing is "
                            "never implicit", value.span,
                            fixit=f"cast({text or self.text(value)}, {want.dtype})")
            return
        if isinstance(want, TupleType):
            if not isinstance(got, TupleType) or len(got.elts) != len(want.elts):
                raise error("E-TYPE", f"{what} is declared {want} but the value is {got}", value.span)
            for i, (w, g) in enumerate(zip(want.elts, got.elts)):
                if isinstance(value, ast.Tuple):
                    self.check_assignable(w, g, value.elts[i], what)
                else:
                    self.check_assignable(w, g, value, what, f"{text or self.text(value)}[{i}]")
            return
        if isinstance(want, ScalarType):
            if isinstance(got, ScalarType) and (got.kind == want.kind or (want.kind == "float" and got.kind == "int")):
                return
            raise error("E-TYPE", f"{what} is declared {want} but the value is {got}", value.span)
        if type(want) is not type(got):
            raise error("E-TYPE", f"{what} is declared {want} but the value is {got}", value.span)

    def check_return(self, t: Type, value: ast.Expr | None, span: Span) -> None:
        self.returns.append((t, value, span))
        assert self.sig is not None
        declared = self.sig.returns
        if self.kind == "kernel" and value is not None and isinstance(t, TileType):
            from tessera.frontend import tiles

            if declared is None:
                tiles.returned_without_result(value.span)
            tiles.check_kernel_result(declared, t, value.span, self.text(value))
            return
        if declared is None:
            return
        if self.bindings:
            declared = substitute_type(declared, self.bindings)
        if value is None:
            if declared != NONE:
                raise error("E-TYPE", f"'{self.sig.fn.name}' must return {declared}", span)
            return
        self.check_assignable(declared, t, value, "the result")

    def require_static_test(self, test: ast.Expr, what: str) -> None:
        t = self.expr(test)
        if isinstance(t, TileType):
            raise error("E-TYPE", f"{what} on a tile: kernel control flow must be static", test.span,
                        notes=["branch on parameters and shapes, or select elementwise with tile.where(cond, a, b)"])
        if isinstance(t, TensorType) and (self.kind == "jit" or t.rank > 0):
            raise error("E-TYPE", f"{what} on a tensor value: compiled control flow must be static", test.span,
                        notes=["branch on parameters and shapes, or select elementwise with where(cond, a, b)"])

    def branches(self, body: list[ast.Stmt], orelse: list[ast.Stmt], at: Span) -> None:
        before = dict(self.env)
        self.block(body)
        after_body = self.env
        self.env = dict(before)
        self.block(orelse)
        after_else = self.env
        merged = {}
        for name in after_body.keys() | after_else.keys():
            a, b = after_body.get(name), after_else.get(name)
            if a is None or b is None:
                merged[name] = a if b is None else b  # bound on one path only
                continue
            try:
                merged[name] = self.join(a, b, at, f"the values of '{name}' after the if")
            except CompilationError as ex:
                self.report(ex)
                merged[name] = ANY
        self.env = merged

    def loop_target(self, target: ast.Expr, it: Type, it_expr: ast.Expr) -> None:
        if isinstance(it, OpaqueType) and it.name == "range":
            item: Type = it.field("item") or ANY
        elif isinstance(it, (TupleType, ListType)):
            item = ANY
            for e in it.elts:
                item = e if item is ANY else self.join(item, e, it_expr.span, "the items")
        elif isinstance(it, TensorType) and it.rank > 0 and self.kind == "host":
            item = it.with_(dims=it.dims[1:])
        elif isinstance(it, AnyType):
            item = ANY
        else:
            raise error("E-TYPE", f"cannot loop over {it}", it_expr.span,
                        notes=["loop over range(...), tile.range(...), a tuple or a list"])
        self.bind_target(target, item, it_expr)

    def loop_body(self, body: list[ast.Stmt], at: Span) -> None:
        self.loops += 1
        try:
            before = dict(self.env)
            self.block(body)
            changed = {n for n, t in self.env.items() if n in before and before[n] != t}
            if changed:
                # A value that changes type across iterations: check once more from the joined types.
                for n in changed:
                    try:
                        self.env[n] = self.join(before[n], self.env[n], at,
                                                f"the values of '{n}' across loop iterations")
                    except CompilationError as ex:
                        self.report(ex)
                        self.env[n] = ANY
                self.block(body)
        finally:
            self.loops -= 1

    def with_block(self, s: ast.With) -> None:
        pushed_s, pushed_a = 0, 0

        def enter(item: ast.WithItem) -> None:
            nonlocal pushed_s, pushed_a
            t = self.expr(item.context)
            managed = isinstance(t, OpaqueType) and t.name in ("EffectScope", "Device")
            if not managed and not isinstance(t, AnyType):
                raise error("E-TYPE", f"{t} is not a context manager", item.context.span,
                            notes=["`with` takes effects.suspend(...), effects.allow(...) or device(...)"])
            kinds = _scope_kinds(item.context)
            if kinds is not None:
                scope, names = kinds
                target = self.suspended if scope == "suspend" else self.allowed
                target.extend(names)
                if scope == "suspend":
                    pushed_s += len(names)
                else:
                    pushed_a += len(names)
            if item.name is not None:
                self.bind_target(item.name, t, item.context)

        try:
            for item in s.items:
                self.header(enter, item, target=item.name)
            self.block(s.body)
        finally:
            del self.suspended[len(self.suspended) - pushed_s:]
            del self.allowed[len(self.allowed) - pushed_a:]


def _none_test(test: ast.Expr) -> bool | None:
    """The value of `x is None` / `x is not None` when x's type decides it, else None."""
    match test:
        case ast.Compare(left=ast.Name() as x, ops=[op], comparators=[ast.Constant(value=None)]) \
                if op in ("is", "is not"):
            t = x.ty
            if isinstance(t, NoneType):
                is_none = True
            elif isinstance(t, (TensorType, TileType, ScalarType, StrType, TupleType)):
                is_none = False
            else:
                return None
            return is_none if op == "is" else not is_none
    return None


def _scope_kinds(e: ast.Expr) -> tuple[str, list[str]] | None:
    match e:
        case ast.Call(func=ast.Attribute(value=ast.Name(id="effects"), attr=scope), args=args) \
                if scope in ("suspend", "allow"):
            return scope, [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return None


def _target_names(t: ast.Expr) -> list[str]:
    if isinstance(t, ast.Name):
        return [t.id]
    if isinstance(t, ast.Tuple):
        return [n for e in t.elts for n in _target_names(e)]
    return []


def _assigned_names(s: ast.Stmt) -> list[str]:
    match s:
        case ast.Assign(targets=ts):
            return [n for t in ts for n in _target_names(t)]
        case ast.AnnAssign(target=t) | ast.AugAssign(target=t):
            return [t.id]
        case ast.For(target=t):
            return _target_names(t)
    return []


def _always_returns(body: list[ast.Stmt]) -> bool:
    for s in body:
        if isinstance(s, ast.Return):
            return True
        if isinstance(s, ast.If) and _always_returns(s.body) and _always_returns(s.orelse):
            return True
    return False


def check_program(program: Program) -> CheckResult:
    return ProgramChecker(program).check()


