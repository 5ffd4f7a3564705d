"""Reading a function's decorators into its `Signature`: the function kind (`@jit`, `@kernel`,
`@kernel.autotune`, `@kernel.schedule`), declared effects, `@deterministic`, and the flags reserved
for later waves (`@autodiff`, `@custom_vjp`, `@checkpoint`, `@verify.numerics`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.diagnostics import error
from tessera.frontend import ast
from tessera.frontend.effects import EFFECT_KINDS
from tessera.frontend.types import DictType, ListType, OpaqueType, ScalarType, StrType, TupleType

if TYPE_CHECKING:
    from tessera.frontend.checker import FunctionChecker
    from tessera.frontend.signatures import Signature

KIND_DECORATORS = {"jit": "jit", "kernel": "kernel", "kernel.autotune": "kernel", "kernel.schedule": "kernel"}
FLAG_DECORATORS = ("autodiff", "custom_vjp", "checkpoint", "verify.numerics")
AUTOTUNE_METRICS = ("latency_ms", "throughput")


def _dotted(e: ast.Expr) -> str | None:
    match e:
        case ast.Name(id=n):
            return n
        case ast.Attribute(value=v, attr=a):
            base = _dotted(v)
            return f"{base}.{a}" if base else None
    return None


def read_decorators(sig: Signature, scope: FunctionChecker) -> None:
    flags: set[str] = set()
    for dec in sig.fn.decorators:
        call = dec if isinstance(dec, ast.Call) else None
        name = _dotted(call.func if call else dec)
        if name is None:
            raise error("E-SYNTAX", "a decorator is a name or a call, such as @jit or @effects(\"io\")", dec.span)
        if call is not None:
            scope.expr_args_only(call)
        if name in KIND_DECORATORS:
            kind = KIND_DECORATORS[name]
            if sig.kind != "host" and sig.kind != kind:
                raise error("E-TYPE", f"'{sig.fn.name}' cannot be both @{sig.kind} and @{kind}", dec.span)
            sig.kind = kind
            if name == "kernel.autotune":
                _read_autotune(sig, call, dec)
            elif name == "kernel.schedule":
                _read_schedule(call, dec)
            elif call is not None:
                raise error("E-TYPE", f"@{name} takes no arguments", dec.span, fixit=f"@{name}")
        elif name == "effects":
            if call is None:
                raise error("E-TYPE", "@effects needs the list of effects, e.g. @effects(\"io\") or @effects()",
                            dec.span, fixit="@effects()")
            kinds = []
            for a in call.args:
                if not (isinstance(a, ast.Constant) and a.value in EFFECT_KINDS):
                    raise error("E-EFFECT", f"unknown effect {_show(a)}", a.span,
                                notes=[f"effect kinds: {', '.join(EFFECT_KINDS)}"])
                kinds.append(a.value)
            sig.declared_effects = frozenset(kinds)  # type: ignore[arg-type]
        elif name == "deterministic":
            sig.deterministic = True
            if call is not None:
                for kw in call.keywords:
                    if kw.name != "seed":
                        raise error("E-NAME", f"@deterministic has no parameter '{kw.name}'", kw.span)
                    if not (isinstance(kw.value, ast.Constant) and type(kw.value.value) is int):
                        raise error("E-TYPE", "the seed must be an int literal", kw.value.span)
                    sig.seed = kw.value.value  # type: ignore[assignment]
                if call.args:
                    raise error("E-TYPE", "@deterministic takes only seed=N", call.args[0].span)
        elif name in FLAG_DECORATORS:
            flags.add(name)
        else:
            raise error("E-NAME", f"unknown decorator '@{name}'", dec.span,
                        notes=[("decorators: @jit, @kernel, @kernel.autotune(...), @kernel.schedule(s), @effects(...), "
                               "@deterministic(seed=N), @autodiff, @custom_vjp, @checkpoint, @verify.numerics(...)")])
    sig.flags = frozenset(flags)


def _show(a: ast.Expr) -> str:
    return repr(a.value) if isinstance(a, ast.Constant) else "expression"


def _read_autotune(sig: Signature, call: ast.Call | None, dec: ast.Expr) -> None:
    if call is None:
        raise error("E-TYPE", "@kernel.autotune needs a search space", dec.span,
                    fixit="@kernel.autotune(space=dict(BM=[64, 128]))")
    if call.args:
        raise error("E-TYPE", "@kernel.autotune takes keyword arguments only", call.args[0].span)
    kws = {kw.name: kw for kw in call.keywords}
    for k, kw in kws.items():
        if k not in ("space", "metric", "budget_ms", "cache"):
            raise error("E-NAME", f"@kernel.autotune has no parameter '{k}'", kw.span,
                        notes=["parameters: space, metric, budget_ms, cache"])
    if "space" not in kws:
        raise error("E-TYPE", "@kernel.autotune needs space=dict(...)", call.span)
    space_t = kws["space"].value.ty
    if not isinstance(space_t, DictType) or not space_t.items:
        raise error("E-TYPE", "the autotune space must be a non-empty dict of lists", kws["space"].value.span)
    space: dict[str, list[object]] = {}
    for key, t in space_t.items:
        if not isinstance(t, (ListType, TupleType)) or not t.elts:
            raise error("E-TYPE", f"the autotune choices for '{key}' must be a non-empty list", kws["space"].value.span)
        values: list[object] = []
        for e in t.elts:
            if isinstance(e, ScalarType) and e.kind == "int" and e.value is not None and e.value.is_const:
                values.append(e.value.value)
            elif isinstance(e, StrType) and e.value is not None:
                values.append(e.value)
            else:
                raise error("E-TYPE", f"autotune choices are int or string literals; '{key}' has {e}",
                            kws["space"].value.span)
        space[key] = values
    sig.autotune_space = space
    if "metric" in kws:
        m = kws["metric"].value
        if not (isinstance(m, ast.Constant) and m.value in AUTOTUNE_METRICS):
            raise error("E-TYPE", f"the autotune metric must be one of {', '.join(map(repr, AUTOTUNE_METRICS))}",
                        m.span)
    if "budget_ms" in kws:
        b = kws["budget_ms"].value.ty
        if not (isinstance(b, ScalarType) and b.kind in ("int", "float")):
            raise error("E-TYPE", "budget_ms must be a number", kws["budget_ms"].value.span)
    if "cache" in kws and not isinstance(kws["cache"].value.ty, StrType):
        raise error("E-TYPE", "cache must be a path string", kws["cache"].value.span)
    from tessera.ir.kernel_schedule import space_problems

    problems = space_problems(space)
    if problems:
        raise error("E-SCHEDULE", f"@kernel.autotune: {problems[0]}", kws["space"].value.span, notes=problems[1:])


def _read_schedule(call: ast.Call | None, dec: ast.Expr) -> None:
    if call is None or len(call.args) != 1 or call.keywords:
        raise error("E-TYPE", "@kernel.schedule takes one Schedule", dec.span, fixit="@kernel.schedule(Schedule(...))")
    t = call.args[0].ty
    if not (isinstance(t, OpaqueType) and t.name == "Schedule"):
        raise error("E-TYPE", f"@kernel.schedule takes a Schedule, found {t}", call.args[0].span)
