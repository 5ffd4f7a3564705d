"""The host runtime: runs undecorated functions (`main()` by default) by evaluating the checked AST.

Host code has Python semantics for the host subset (assignments, tuples, if/for/while/break/continue,
assert, arithmetic on ints, floats and strings); tensor builtins compute with NumPy
(`host_builtins.py`); calls to `@jit` functions go through `JitFunction` (guards, then the compiled
path); calls to other undecorated functions recurse. Every failure a user can cause is a
`TesseraRuntimeError` with the span of the expression that failed, never a Python traceback.

Random draws: `randn`/`rand`/`dropout` with `seed=N` use a fresh PCG64 generator keyed by N; without a
seed they draw from the run's generator (PCG64 seeded by `--seed`), except inside a
`@deterministic(seed=N)` function, where each draw is keyed by (N, function, call site, step).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from tessera.diagnostics import CompilationError, TesseraRuntimeError, runtime_error
from tessera.dtypes import DType, dtype_named
from tessera.frontend import ast
from tessera.frontend.builtins import BUILTINS, CONSTANTS
from tessera.frontend.checker import CheckResult
from tessera.frontend.intrinsics import EFFECT_SCOPES
from tessera.frontend.signatures import Signature
from tessera.frontend.types import TensorType
from tessera.runtime import host_builtins as hb
from tessera.runtime import values
from tessera.runtime.dispatch import JitFunction, RunConfig, bind_symbols, check_constraints, to_tensor
from tessera.runtime.kernels import KernelFunction, KernelLaunch
from tessera.source import SourceFile, Span
from tessera.symbolic import DimError

Value = Any
MAX_DEPTH = 400


# ---------------------------------------------------------------- host values


@dataclass(frozen=True)
class BuiltinValue:
    name: str

    def __repr__(self) -> str:
        return f"<builtin {self.name}>"


@dataclass(frozen=True)
class NamespaceValue:
    """A module (`import stdlib.nn as nn`) or a builtin namespace (`effects`, `tile`)."""

    name: str

    def __repr__(self) -> str:
        return f"<module {self.name}>"


@dataclass(frozen=True)
class RangeValue:
    """`lo..=hi` / `lo..hi` as a host value: supports `in` and iteration."""

    lo: int
    hi: int
    inclusive: bool

    def as_range(self) -> range:
        return range(self.lo, self.hi + 1 if self.inclusive else self.hi)

    def __contains__(self, x: object) -> bool:
        return isinstance(x, int) and x in self.as_range()


class HostFunction:
    """An undecorated function as a Python callable (host semantics)."""

    def __init__(self, rt: HostRuntime, module: str, fn: ast.FunctionDef, sig: Signature) -> None:
        self.rt, self.module, self.fn, self.sig = rt, module, fn, sig
        self.__name__ = fn.name

    def __call__(self, *args: Value, **kwargs: Value) -> Value:
        return self.rt.call_host(self, list(args), dict(kwargs), self.fn.name_span)

    def __repr__(self) -> str:
        return f"<function {self.fn.name}>"


class _Return(Exception):
    def __init__(self, value: Value) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class Frame:
    module: str
    locals: dict[str, Value] = field(default_factory=dict)
    sig: Signature | None = None


class _Lazy:
    """A module constant or an imported name, evaluated on first use."""

    def __init__(self, thunk: Callable[[], Value], what: str) -> None:
        self.thunk, self.what = thunk, what
        self.busy = False


# ---------------------------------------------------------------- the runtime


class HostRuntime:
    """Evaluates host code of one checked program. `out` receives what `print` writes."""

    def __init__(self, checked: CheckResult, *, config: RunConfig | None = None, seed: int = 0,
                 out: IO[str] | None = None, sources: Mapping[str, SourceFile] | None = None) -> None:
        self.checked = checked
        self.config = config if config is not None else RunConfig()
        self.seed = seed
        self.out = out
        self.sources = sources if sources is not None else checked.program.sources
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.modules = checked.program.modules
        self.namespaces: dict[str, dict[str, Value]] = {}
        self._steps: dict[tuple[str, int, int], int] = {}
        self._site: Span | None = None
        self._frames: list[Frame] = []
        self.depth = 0
        for key in self.modules:
            self._build_namespace(key)

    # -- namespaces

    def _build_namespace(self, key: str) -> None:
        mod = self.modules[key]
        ns: dict[str, Value] = {}
        self.namespaces[key] = ns
        for fn in mod.tree.functions:
            sig = self.checked.signatures.get(fn)
            if sig is None:
                continue
            if sig.kind == "jit":
                ns[fn.name] = JitFunction(self.checked, fn, config=self.config, sources=self.sources,
                                          eval_default=lambda e, k=key: self.eval_in_module(e, k))
            elif sig.kind == "kernel":
                ns[fn.name] = KernelFunction(self.checked, fn, config=self.config, sources=self.sources,
                                             eval_default=lambda e, k=key: self.eval_in_module(e, k))
            else:
                ns[fn.name] = HostFunction(self, key, fn, sig)
        for imp in mod.tree.imports:
            self._bind_import(ns, mod, imp)
        for c in mod.tree.constants:
            ns[c.name] = _Lazy(lambda c=c, k=key: self.eval_in_module(c.value, k), c.name)

    def _bind_import(self, ns: dict[str, Value], mod: Any, imp: ast.ImportFrom | ast.Import) -> None:
        if isinstance(imp, ast.Import):
            target = mod.resolved.get(imp)
            if target is not None:
                ns[imp.asname or imp.module.split(".")[0]] = NamespaceValue(
                    target if imp.asname else imp.module.split(".")[0])
            return
        if not imp.module or mod.resolved.get(imp) is None:
            # `from . import layers`, `from stdlib import nn`: each name is a module.
            for n in imp.names:
                target = mod.resolved.get(n)
                if target is not None:
                    ns[n.asname or n.name] = NamespaceValue(target)
            return
        target = mod.resolved.get(imp)
        if target is None:
            return
        for n in imp.names:
            ns[n.asname or n.name] = _Lazy(lambda t=target, name=n.name: self.module_attr(t, name), n.name)

    def module_attr(self, key: str, name: str) -> Value:
        ns = self.namespaces.get(key)
        if ns is None or name not in ns:
            raise KeyError(name)
        v = ns[name]
        if isinstance(v, _Lazy):
            if v.busy:
                raise runtime_error("E-RUNTIME", f"the constant '{name}' depends on itself",
                                    self._site or _span0())
            v.busy = True
            try:
                value = v.thunk()
            finally:
                v.busy = False
            ns[name] = value
            return value
        return v

    def eval_in_module(self, e: ast.Expr, module: str) -> Value:
        return self.eval(e, Frame(module))

    def function(self, name: str, module: str | None = None) -> Value:
        """The callable bound to `name` in the root module (or `module`)."""
        return self.module_attr(module or self.checked.program.root.key, name)

    # -- calls

    def call_value(self, f: Value, args: list[Value], kwargs: dict[str, Value], span: Span) -> Value:
        if isinstance(f, BuiltinValue):
            return self.call_builtin(f.name, args, kwargs, span)
        if isinstance(f, HostFunction):
            return self.call_host(f, args, kwargs, span)
        if isinstance(f, JitFunction):
            return f.call(args, kwargs, span)
        if isinstance(f, (KernelFunction, KernelLaunch)):
            return f.call(args, kwargs, span)
        if callable(f) and hasattr(f, "__self__") and isinstance(f.__self__, hb.ScheduleSpec):
            return f(*args, **kwargs)
        raise runtime_error("E-TYPE", f"{values.describe(f)} is not callable", span)

    def call_host(self, f: HostFunction, args: list[Value], kwargs: dict[str, Value], span: Span) -> Value:
        fn = f.fn
        positional = [p for p in fn.params if not p.kw_only]
        if len(args) > len(positional):
            raise runtime_error("E-TYPE", f"'{fn.name}' takes {len(positional)} positional arguments but "
                                f"{len(args)} were given", span)
        frame = Frame(f.module, sig=f.sig)
        for p, a in zip(positional, args):
            frame.locals[p.name] = a
        names = {p.name for p in fn.params}
        for k, v in kwargs.items():
            if k not in names:
                raise runtime_error("E-NAME", f"'{fn.name}' has no parameter '{k}'", span)
            if k in frame.locals:
                raise runtime_error("E-TYPE", f"'{fn.name}' got several values for '{k}'", span)
            frame.locals[k] = v
        for p in fn.params:
            if p.name not in frame.locals:
                if p.default is None:
                    raise runtime_error("E-TYPE", f"call to '{fn.name}' is missing the argument '{p.name}'", span)
                frame.locals[p.name] = self.eval(p.default, Frame(f.module))
        self.guard(f, frame, span)
        if self.depth >= MAX_DEPTH:
            raise runtime_error("E-RUNTIME", f"calls nested more than {MAX_DEPTH} deep (runaway recursion?)",
                                span)
        self.depth += 1
        self._frames.append(frame)
        try:
            self.exec_block(fn.body, frame)
        except _Return as r:
            return r.value
        finally:
            self.depth -= 1
            self._frames.pop()
        return None

    def guard(self, f: HostFunction, frame: Frame, span: Span) -> None:
        """Tensor parameters of a host function: convert to the declared dtype, bind the dim symbols
        and check the `where` constraints, as for a @jit call."""
        shapes: dict[str, tuple[int, ...]] = {}
        for ps in f.sig.params:
            v = frame.locals.get(ps.name)
            if isinstance(ps.ty, TensorType) and isinstance(v, np.ndarray):
                frame.locals[ps.name] = to_tensor(v, ps, ps.ty, f.fn.name, span)
                shapes[ps.name] = tuple(v.shape)
        if shapes or f.sig.constraints:
            b = bind_symbols(f.sig, shapes, span)
            check_constraints(f.sig, b, span, self.sources)

    def call_builtin(self, name: str, args: list[Value], kwargs: dict[str, Value], span: Span) -> Value:
        if name in ("accum", "loss_scale", "round", "stochastic_round", "saturate"):
            return hb.PolicyMarker(name)
        if name.startswith("effects."):
            return hb.NullContext(f"{name}({', '.join(map(repr, args))})")
        b = BUILTINS.get(name)
        impl = hb.HOST_BUILTINS.get(name)
        if b is None or impl is None:
            raise runtime_error("E-RUNTIME", f"'{name}' cannot be evaluated on the host", span)
        bound, varargs = _bind_builtin(b, args, kwargs, span)
        self._site = span
        try:
            return impl(bound, varargs, self)
        except hb.HostFailure as ex:
            raise runtime_error(ex.code, f"{name}: {ex}", span) from None
        except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError, DimError,
                np.exceptions.AxisError) as ex:
            raise runtime_error("E-RUNTIME", f"{name}: {_first_line(ex)}", span) from None

    # -- HostCtx for the builtins

    def generator(self, seed: int | None) -> np.random.Generator:
        if seed is not None:
            return np.random.Generator(np.random.PCG64(int(seed)))
        # Inside a @deterministic function (or a callee of one) a draw is keyed by (seed, function,
        # call site, step): reproducible whatever else the run draws.
        owner = next((f.sig for f in reversed(self._frames) if f.sig is not None and f.sig.deterministic), None)
        if owner is not None and self._site is not None:
            inner = self._frames[-1].sig
            site = (inner.fn.name if inner is not None else owner.fn.name, self._site.line, self._site.col)
            step = self._steps.get(site, 0)
            self._steps[site] = step + 1
            base = owner.seed if owner.seed is not None else self.seed
            seq = np.random.SeedSequence([base, zlib.crc32(site[0].encode()), site[1], site[2], step])
            return np.random.Generator(np.random.PCG64(seq))
        return self.rng

    def write(self, text: str) -> None:
        out = self.out if self.out is not None else sys.stdout
        out.write(text)
        out.flush()

    # -- statements

    def exec_block(self, stmts: Sequence[ast.Stmt], frame: Frame) -> None:
        for s in stmts:
            self.exec(s, frame)

    def exec(self, s: ast.Stmt, frame: Frame) -> None:
        match s:
            case ast.Assign(targets=targets, value=value):
                v = self.eval(value, frame)
                for t in targets:
                    self.assign(t, v, frame)
            case ast.AnnAssign(target=target, value=value):
                v = self.eval(value, frame)
                t = target.ty
                if isinstance(t, TensorType) and t.dtype is not None and isinstance(v, np.ndarray):
                    v = values.convert(v, t.dtype)
                frame.locals[target.id] = v
            case ast.AugAssign(target=target, op=op, value=value):
                cur = self.eval(target, frame)
                frame.locals[target.id] = self.binop(op, cur, self.eval(value, frame), s.span)
            case ast.Return(value=value):
                raise _Return(self.eval(value, frame) if value is not None else None)
            case ast.If(test=test, body=body, orelse=orelse):
                self.exec_block(body if self.truth(test, frame) else orelse, frame)
            case ast.For(target=target, iter=it, body=body):
                for item in self.iterate(self.eval(it, frame), it.span):
                    self.assign(target, item, frame)
                    try:
                        self.exec_block(body, frame)
                    except _Break:
                        break
                    except _Continue:
                        continue
            case ast.While(test=test, body=body):
                while self.truth(test, frame):
                    try:
                        self.exec_block(body, frame)
                    except _Break:
                        break
                    except _Continue:
                        continue
            case ast.Break():
                raise _Break()
            case ast.Continue():
                raise _Continue()
            case ast.Pass():
                pass
            case ast.Assert(test=test, msg=msg):
                if not self.truth(test, frame):
                    text = values.format_value(self.eval(msg, frame)) if msg is not None else None
                    raise runtime_error("E-RUNTIME", f"assertion failed{': ' + text if text else ''}", s.span)
            case ast.With(items=items, body=body):
                for item in items:
                    ctx = self.eval(item.context, frame)
                    if item.name is not None:
                        frame.locals[item.name.id] = ctx
                self.exec_block(body, frame)
            case ast.ExprStmt(value=value):
                self.eval(value, frame)
            case ast.FunctionDef() | ast.ConstDef() | ast.Import() | ast.ImportFrom():
                raise runtime_error("E-SYNTAX", "definitions belong at the top level of a module", s.span)
            case _:
                raise runtime_error("E-RUNTIME", f"{type(s).__name__} cannot run on the host", s.span)

    def assign(self, target: ast.Expr, v: Value, frame: Frame) -> None:
        if isinstance(target, ast.Name):
            frame.locals[target.id] = v
            return
        if isinstance(target, ast.Tuple):
            if isinstance(v, np.ndarray) and v.ndim > 0:
                items = [v[i] for i in range(v.shape[0])]
            elif isinstance(v, (tuple, list)):
                items = list(v)
            else:
                raise runtime_error("E-TYPE", f"cannot unpack {values.describe(v)}", target.span)
            if len(items) != len(target.elts):
                raise runtime_error("E-TYPE", f"cannot unpack {len(items)} values into {len(target.elts)} names",
                                    target.span)
            for t, x in zip(target.elts, items):
                self.assign(t, x, frame)
            return
        raise runtime_error("E-SYNTAX", "only names and tuples of names can be assigned", target.span)

    def truth(self, e: ast.Expr, frame: Frame) -> bool:
        return self.as_bool(self.eval(e, frame), e.span)

    def as_bool(self, v: Value, span: Span) -> bool:
        if isinstance(v, np.ndarray):
            if v.size != 1:
                raise runtime_error("E-TYPE", f"the truth value of a tensor of shape "
                                    f"{values.format_value(v.shape)} is ambiguous", span,
                                    notes=["reduce it first (max, min, sum) or select with where(cond, a, b)"])
            return bool(v.astype(np.float32) if values.is_extended(v.dtype) else v)
        return bool(v)

    def iterate(self, v: Value, span: Span) -> Sequence[Value]:
        if isinstance(v, RangeValue):
            return v.as_range()
        if isinstance(v, (range, tuple, list)):
            return v
        if isinstance(v, np.ndarray) and v.ndim > 0:
            return [v[i] for i in range(v.shape[0])]
        if isinstance(v, dict):
            return list(v)
        raise runtime_error("E-TYPE", f"cannot loop over {values.describe(v)}", span)

    # -- expressions

    def eval(self, e: ast.Expr, frame: Frame) -> Value:
        match e:
            case ast.Constant(value=v):
                return v
            case ast.Name(id=name):
                return self.lookup(name, frame, e.span)
            case ast.Attribute():
                return self.attribute(self.eval(e.value, frame), e.attr, e.attr_span or e.span)
            case ast.Subscript():
                return self.subscript(e, frame)
            case ast.Call():
                return self.call(e, frame)
            case ast.BinOp(op=op, left=left, right=right):
                return self.binop(op, self.eval(left, frame), self.eval(right, frame), e.span)
            case ast.UnaryOp(op=op, operand=operand):
                return self.unaryop(op, self.eval(operand, frame), e.span)
            case ast.BoolOp(op=op, values=vals):
                result: Value = None
                for x in vals:
                    result = self.eval(x, frame)
                    truth = self.as_bool(result, x.span)
                    if (op == "and" and not truth) or (op == "or" and truth):
                        return result
                return result
            case ast.Compare():
                return self.compare(e, frame)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return self.eval(body if self.truth(test, frame) else orelse, frame)
            case ast.Tuple(elts=elts):
                return tuple(self.eval(x, frame) for x in elts)
            case ast.List(elts=elts):
                return [self.eval(x, frame) for x in elts]
            case ast.Dict(keys=keys, values=vals):
                return {self.eval(k, frame): self.eval(v, frame) for k, v in zip(keys, vals)}
            case ast.Range(lo=lo, hi=hi, inclusive=inc):
                return RangeValue(self.eval(lo, frame), self.eval(hi, frame), inc)
        raise runtime_error("E-RUNTIME", f"{type(e).__name__} cannot be evaluated on the host", e.span)

    def lookup(self, name: str, frame: Frame, span: Span) -> Value:
        if name in frame.locals:
            return frame.locals[name]
        try:
            return self.module_attr(frame.module, name)
        except KeyError:
            pass
        if name in CONSTANTS:
            return CONSTANTS[name].value  # type: ignore[attr-defined]
        dt = dtype_named(name)
        if dt is not None:
            return dt
        if name in BUILTINS or name in ("accum", "loss_scale", "round", "stochastic_round", "saturate"):
            return BuiltinValue(name)
        if name in ("tile", "effects", "kernel", "verify"):
            return NamespaceValue(name)
        raise runtime_error("E-NAME", f"name '{name}' is not defined", span)

    def attribute(self, base: Value, attr: str, span: Span) -> Value:
        if isinstance(base, np.ndarray):
            if attr == "shape":
                return tuple(int(d) for d in base.shape)
            if attr == "T":
                return np.transpose(base)
            if attr == "ndim":
                return base.ndim
            if attr == "dtype":
                return values.tessera_dtype(base.dtype)
        elif isinstance(base, NamespaceValue):
            if base.name == "effects" and attr in EFFECT_SCOPES:
                return BuiltinValue(f"effects.{attr}")
            if base.name in self.namespaces:
                try:
                    return self.module_attr(base.name, attr)
                except KeyError:
                    pass
            sub = f"{base.name}.{attr}"
            if any(k == sub or k.startswith(sub + ".") for k in self.modules):
                return NamespaceValue(sub)
        elif isinstance(base, hb.ScheduleSpec) and hasattr(base, attr) and not attr.startswith("_"):
            return getattr(base, attr)
        elif isinstance(base, DType) and attr == "name":
            return base.name
        raise runtime_error("E-NAME", f"{values.describe(base)} has no attribute '{attr}'", span)

    def subscript(self, e: ast.Subscript, frame: Frame) -> Value:
        base = self.eval(e.value, frame)
        if isinstance(base, KernelFunction):
            return base.launch(self.eval(e.index, frame), e.span)
        if isinstance(base, (JitFunction, HostFunction)):
            raise runtime_error("E-TYPE", f"only a @kernel is launched over a grid (f[grid](...)); "
                                f"'{base.fn.name}' is not one", e.span)
        parts = e.index.elts if isinstance(e.index, ast.Tuple) else [e.index]
        if isinstance(base, np.ndarray):
            index = tuple(self.index_part(p, frame) for p in parts)
            try:
                r = base[index if isinstance(e.index, ast.Tuple) else index[0]]
            except (IndexError, TypeError, ValueError) as ex:
                raise runtime_error("E-SHAPE", f"bad index into a tensor of shape "
                                    f"{values.format_value(base.shape)}: {_first_line(ex)}", e.span) from None
            return np.asarray(r)
        key = self.eval(e.index, frame)
        try:
            return base[key]
        except (IndexError, KeyError, TypeError) as ex:
            raise runtime_error("E-RUNTIME", f"cannot index {values.describe(base)} with "
                                f"{values.format_value(key, True)}: {_first_line(ex)}", e.span) from None

    def index_part(self, p: ast.Expr, frame: Frame) -> Value:
        if isinstance(p, ast.EllipsisLit):
            return Ellipsis
        if isinstance(p, ast.Slice):
            return slice(*(self.eval(x, frame) if x is not None else None for x in (p.lower, p.upper, p.step)))
        v = self.eval(p, frame)
        if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
            return int(v)
        return v

    def call(self, e: ast.Call, frame: Frame) -> Value:
        f = self.eval(e.func, frame)
        args = [self.eval(a, frame) for a in e.args]
        kwargs = {kw.name: self.eval(kw.value, frame) for kw in e.keywords}
        self._site = e.span
        try:
            return self.call_value(f, args, kwargs, e.span)
        except (TesseraRuntimeError, CompilationError, _Return, _Break, _Continue):
            raise
        except RecursionError:
            raise runtime_error("E-RUNTIME", "calls nested too deep (runaway recursion?)", e.span) from None

    def binop(self, op: str, a: Value, b: Value, span: Span) -> Value:
        try:
            if op == "@":
                if isinstance(a, DType):
                    return a  # `bf16 @accum(f32)`: a host dtype keeps no policy
                return hb.matmul(a, b)
            return hb.binary(op, a, b)
        except hb.HostFailure as ex:
            raise runtime_error(ex.code, str(ex), span) from None
        except ValueError as ex:
            raise runtime_error("E-SHAPE", f"'{op}': operands of shapes {_shape(a)} and {_shape(b)} do not "
                                f"broadcast ({_first_line(ex)})", span) from None
        except (TypeError, OverflowError) as ex:
            raise runtime_error("E-RUNTIME", f"'{op}': {_first_line(ex)}", span) from None

    def unaryop(self, op: str, v: Value, span: Span) -> Value:
        if op == "not":
            return not self.as_bool(v, span)
        if op == "+":
            return v
        if isinstance(v, np.ndarray):
            return hb.elementwise(np.negative, [v])
        if isinstance(v, (int, float)):
            return -v
        raise runtime_error("E-TYPE", f"unary '{op}' on {values.describe(v)}", span)

    def compare(self, e: ast.Compare, frame: Frame) -> Value:
        left = self.eval(e.left, frame)
        result: Value = True
        for op, right_e in zip(e.ops, e.comparators):
            right = self.eval(right_e, frame)
            try:
                if op in ("in", "not in"):
                    r: Value = left in right
                    r = r if op == "in" else not r
                elif op in ("is", "is not"):
                    r = (left is right) if op == "is" else (left is not right)
                else:
                    r = hb.compare(op, left, right)
            except hb.HostFailure as ex:
                raise runtime_error(ex.code, str(ex), e.span) from None
            except (TypeError, ValueError) as ex:
                raise runtime_error("E-RUNTIME", f"'{op}': {_first_line(ex)}", e.span) from None
            if isinstance(r, np.ndarray) and len(e.ops) == 1:
                return r
            if not self.as_bool(r, e.span):
                return False
            result = r
            left = right
        return bool(result) if not isinstance(result, np.ndarray) else result


def _bind_builtin(b: Any, args: list[Value], kwargs: dict[str, Value],
                  span: Span) -> tuple[dict[str, Value], list[Value]]:
    """Arguments of a builtin by name, with the catalogue's defaults (dtype defaults as DTypes)."""
    from tessera.frontend.types import DTypeValue

    positional = [p for p in b.params if not p.kw_only and not p.variadic]
    variadic = next((p for p in b.params if p.variadic), None)
    bound: dict[str, Value] = {}
    varargs: list[Value] = []
    for i, a in enumerate(args):
        if i < len(positional):
            bound[positional[i].name] = a
        elif variadic is not None:
            varargs.append(a)
        else:
            raise runtime_error("E-TYPE", f"{b.name}() takes {len(positional)} positional arguments but "
                                f"{len(args)} were given", span)
    names = {p.name for p in b.params if not p.variadic}
    for k, v in kwargs.items():
        if k in names:
            bound[k] = v
        elif variadic is not None and b.name == "dict":
            varargs.append((k, v))
        else:
            raise runtime_error("E-NAME", f"{b.name}() has no parameter '{k}'", span)
    for p in b.params:
        if p.variadic or p.name in bound:
            continue
        if p.required:
            raise runtime_error("E-TYPE", f"{b.name}() is missing the argument '{p.name}'", span)
        bound[p.name] = p.default.dtype if isinstance(p.default, DTypeValue) else p.default
    return bound, varargs


def _first_line(ex: BaseException) -> str:
    text = str(ex)
    return text.splitlines()[0] if text else type(ex).__name__


def _shape(v: Value) -> str:
    return values.format_value(tuple(v.shape)) if isinstance(v, np.ndarray) else values.describe(v)


def _span0() -> Span:
    return Span("<runtime>", 1, 1, 1, 1)
