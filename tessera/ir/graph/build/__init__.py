"""Building the Graph IR of `@jit` functions from the checked AST.

`build_graph(checked, fn, static_args)` interprets the function's body at build time (see `interp`):
tensor parameters become the graph function's parameters; non-tensor parameters (`causal: bool`,
`eps: float`) are static — their values come from `static_args` or their defaults and are folded in,
so a function is built once per set of static values. Helpers are inlined, host-level control flow is
unrolled, and every builtin becomes graph ops through the table in `lowerings`. The function carries
its effect set (from the checker), its `where` constraints as text (plus the unproven constraints of
inlined `@jit` callees, as run-time guards) and its dim symbols in order of first appearance.

A parameter dim fixed by a `where` equality is written in the symbols that fix it (`H == 4 * D` makes
`w1: Tensor["D", "H"]` a `tensor<[D, 4*D]>`), so that binding the free symbols specialises every shape;
passing `dims={"B": 32, ...}` binds symbols to extents while building.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.constraints import Constraint
from tessera.diagnostics import error
from tessera.dtypes import DType, dtype_named
from tessera.frontend import ast
from tessera.frontend.checker import CheckResult
from tessera.frontend.types import ScalarType, StrType, TensorType, TupleType
from tessera.ir.graph.build.interp import Builder, Frame, _Return
from tessera.ir.graph.build.values import DTypeV, DynScalar, TVal, describe, is_host_scalar
from tessera.ir.graph.ops import Function, Module, Value
from tessera.ir.graph.ops import TensorType as GraphTensorType
from tessera.symbolic import Dim

__all__ = ["build_graph", "build_module", "jit_functions"]


def _result(checked: Any) -> CheckResult:
    """Accept the checker's `CheckResult` or the front end's `Checked` wrapper."""
    if isinstance(checked, CheckResult):
        return checked
    res = getattr(checked, "result", None)
    if isinstance(res, CheckResult):
        if getattr(checked, "diagnostics", None):
            raise ValueError("cannot build the graph of a program with compile errors")
        return res
    raise TypeError(f"expected a CheckResult, got {type(checked).__name__}")


def jit_functions(checked: Any) -> list[ast.FunctionDef]:
    """The `@jit` functions of the root module, in source order."""
    res = _result(checked)
    return [f for f in res.program.root.tree.functions if res.signatures[f].kind == "jit"]


def build_module(checked: Any, static_args_per_fn: Mapping[str, Mapping[str, object]] | None = None) -> Module:
    """The graph of every `@jit` function of the root module."""
    per_fn = static_args_per_fn or {}
    return Module([build_graph(checked, f, per_fn.get(f.name)) for f in jit_functions(checked)])


def build_graph(checked: Any, fn: ast.FunctionDef, static_args: Mapping[str, object] | None = None, *,
                dims: Mapping[str, int] | None = None) -> Function:
    """The Graph IR of one `@jit` function, specialised to its static arguments (and to `dims`, when
    given). A static parameter without a value, or anything that cannot be built, is a
    `CompilationError` pointing at the source."""
    res = _result(checked)
    sig = res.signatures.get(fn)
    if sig is None or sig.kind != "jit":
        raise error("E-TYPE", f"'{fn.name}' is not a @jit function; only @jit functions have a graph",
                    fn.name_span)
    cs = sig.constraint_set()
    bound = {name: int(value) for name, value in (dims or {}).items()}
    for c, span in sig.constraints:
        syms = c.lhs.free_symbols | c.rhs.free_symbols
        if bound and syms <= bound.keys() and not c.holds(bound):
            shown = ", ".join(f"{s} = {bound[s]}" for s in sorted(syms))
            raise error("E-SHAPE", f"the where constraint `{c}` of '{fn.name}' does not hold for {shown}", span)
    for name, value in bound.items():
        cs.add(Constraint("==", Dim.sym(name), Dim.const(value)))
    b = Builder(res, sig, cs)
    fr = Frame(sig.module, fn=fn)
    statics = dict(static_args or {})
    unknown = sorted(set(statics) - {p.name for p in fn.params})
    if unknown:
        raise error("E-NAME", f"'{fn.name}' has no parameter {', '.join(map(repr, unknown))} (given as a static "
                    "argument)", fn.name_span)
    params: list[Value] = []
    for p, ps in zip(fn.params, sig.params):
        ty = ps.ty
        if isinstance(ty, TensorType) or isinstance(statics.get(p.name), GraphTensorType):
            v = _tensor_param(b, p, ty, statics.get(p.name))
            params.append(v.value)
            fr.env[p.name] = v
            continue
        if p.name in statics:
            value = _static_value(statics[p.name])
        elif p.default is not None:
            value = b.expr(p.default, Frame(sig.module))
        elif ty is None:
            raise error("E-TYPE", f"the parameter '{p.name}' of '{fn.name}' has no type: pass its tensor type "
                        "(or its static value) in static_args", p.span)
        else:
            raise error("E-TYPE", f"the static parameter '{p.name}' of '{fn.name}' has no value: pass it in "
                        "static_args (the graph is built once per static value)", p.span)
        fr.env[p.name] = _check_static(b, p, ty, value)
    signal = b.block(fn.body, fr)
    value = signal.value if isinstance(signal, _Return) else None
    if sig.returns is not None:
        value = _coerce_result(b, value, sig.returns, fn)
    returns = [_result_value(b, v, fn) for v in (value if isinstance(value, tuple) else
                                                 () if value is None else (value,))]
    summary = res.effects.get(fn)
    # The checker's set, plus what ops perform under `effects.suspend` (hidden from callers, but the
    # graph must still keep those ops and their order).
    effects = set(summary.effects if summary is not None else ())
    effects |= {op.opdef.effect for op in b.em.ops if op.opdef.effect is not None}
    constraints = (*(str(c) for c, _ in sig.constraints), *b.guards)
    return Function(
        name=fn.name,
        params=params,
        ops=b.em.ops,
        returns=returns,
        effects=tuple(sorted(effects)),
        constraints=constraints,
        symbols=_symbols(sig, params),
        span=fn.span,
    )


def _tensor_param(b: Builder, p: ast.Param, ty: object, given: object) -> TVal:
    """A tensor parameter's graph value; a dtype-generic one (`Tensor["N"]`) takes its dtype, and an
    unannotated one its whole type, from the static arguments."""
    if isinstance(given, GraphTensorType):
        pdims = b.em.param_dims(given.dims)
        return TVal(Value(GraphTensorType(pdims, given.dtype), p.name))
    assert isinstance(ty, TensorType)
    dtype = ty.dtype
    if dtype is None:
        dtype = _as_dtype(given)
        if dtype is None:
            raise error("E-TYPE", f"the parameter '{p.name}' declares no dtype: pass one for it in static_args "
                        "(e.g. {'" + p.name + "': f32})", p.span)
    return TVal(Value(GraphTensorType(b.em.param_dims(ty.dims), dtype), p.name), ty.policy)


def _as_dtype(v: object) -> DType | None:
    if isinstance(v, DType):
        return v
    if isinstance(v, str):
        return dtype_named(v)
    if isinstance(v, DTypeV):
        return v.dtype
    return None


def _static_value(v: object) -> object:
    """A Python value given for a static parameter, as the builder holds it."""
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()  # a NumPy scalar
    if isinstance(v, bool) or v is None or isinstance(v, (str, float, Dim)):
        return v
    if isinstance(v, int):
        return Dim.const(v)
    if isinstance(v, (tuple, list)):
        return type(v)(_static_value(x) for x in v)
    if isinstance(v, DType):
        return DTypeV(v)
    return v


def _check_static(b: Builder, p: ast.Param, ty: object, value: object) -> object:
    if isinstance(ty, ScalarType):
        ok = {"bool": isinstance(value, bool),
              "int": isinstance(value, Dim) and not isinstance(value, bool),
              "float": is_host_scalar(value)}[ty.kind]
        if not ok:
            raise error("E-TYPE", f"the static parameter '{p.name}' is {ty.kind}, but the value given is "
                        f"{describe(value)}", p.span)
        if ty.kind == "float" and not isinstance(value, float):
            return float(value.value if isinstance(value, Dim) else value)  # type: ignore[union-attr]
    if isinstance(ty, StrType) and not isinstance(value, str):
        raise error("E-TYPE", f"the static parameter '{p.name}' is str, but the value given is {describe(value)}",
                    p.span)
    return value


def _coerce_result(b: Builder, value: object, ty: object, fn: ast.FunctionDef) -> object:
    """The returned value(s) in the declared result type (widened; narrowing was rejected)."""
    if isinstance(ty, TupleType) and isinstance(value, tuple):
        return tuple(_coerce_result(b, v, t, fn) for v, t in zip(value, ty.elts))
    return b.coerce_declared(value, ty, fn.span, {})


def _result_value(b: Builder, v: object, fn: ast.FunctionDef) -> Value:
    if isinstance(v, TVal):
        return v.value
    if isinstance(v, DynScalar) or is_host_scalar(v):
        return b.em.tensor(v, fn.span).value
    raise error("E-TYPE", f"'{fn.name}' returns {describe(v)}; a @jit function returns tensors", fn.name_span)


def _symbols(sig: Any, params: list[Value]) -> tuple[str, ...]:
    """The signature's dim symbols in order of first appearance in the parameters, then any other
    symbol of the signature (those only the results or the where clause name)."""
    out: list[str] = []
    for p in sig.params:
        if isinstance(p.ty, TensorType):
            for d in p.ty.dims:
                out.extend(s for s in sorted(d.free_symbols) if s not in out)
    out.extend(s for s in sorted(sig.symbols) if s not in out)
    for v in params:  # the types of untyped parameters, given in static_args
        for d in v.ty.dims:
            out.extend(s for s in sorted(d.free_symbols) if s not in out)
    return tuple(out)
