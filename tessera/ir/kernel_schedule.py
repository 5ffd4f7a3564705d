"""The schedule of a `@kernel`: `@kernel.schedule(s)`, `@kernel.autotune(space=...)`, or the default.

`Schedule(block=(BM, BN), k=BK, warps=W, stages=S, vector=V, swizzle="xor")` values are module
constants or decorator arguments; `.with_block(bm, bn)`, `.with_k`, `.with_warps`, `.with_stages`,
`.with_vector`, `.with_swizzle` derive new ones (a schedule inherits every field it does not
change). Fields left unset take the defaults of `DEFAULT`.

An autotune space is a dict of lists over the schedule's fields: `BM`, `BN` (the block), `BK` (the
reduction block, `k`), `warps`, `stages`, `vector`, `swizzle`. Its configurations apply on top of the
`@kernel.schedule` (or default) schedule. Until the autotuner exists the *first* configuration (the
first value of every list) is used, and `tessera lower` says so.

Schedule expressions are evaluated statically here (literals, module constants, imported constants,
`Schedule(...)` and its `with_*` methods, tuples, dicts and int arithmetic), so that a kernel's
schedule is known when the kernel is lowered, without running host code.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tessera.diagnostics import CompilationError, error
from tessera.frontend import ast
from tessera.ir.tile.ops import Schedule
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult

SWIZZLES = ("xor", "none")
# An autotune space key -> the ScheduleSpec field it sets.
SPACE_KEYS = {"BM": "bm", "BN": "bn", "BK": "k", "warps": "warps", "stages": "stages", "vector": "vector",
              "swizzle": "swizzle"}


@dataclass(frozen=True)
class ScheduleSpec:
    """A `Schedule(...)` as written: unset fields are None until `resolve` fills the defaults."""

    block: tuple[int, ...] | None = None
    k: int | None = None
    warps: int | None = None
    stages: int | None = None
    vector: int | None = None
    swizzle: str | None = None

    def with_block(self, bm: int, bn: int | None = None) -> ScheduleSpec:
        return replace(self, block=(bm,) if bn is None else (bm, bn))

    def with_k(self, k: int) -> ScheduleSpec:
        return replace(self, k=k)

    def with_warps(self, warps: int) -> ScheduleSpec:
        return replace(self, warps=warps)

    def with_stages(self, stages: int) -> ScheduleSpec:
        return replace(self, stages=stages)

    def with_vector(self, vector: int) -> ScheduleSpec:
        return replace(self, vector=vector)

    def with_swizzle(self, swizzle: str) -> ScheduleSpec:
        return replace(self, swizzle=swizzle)

    def __str__(self) -> str:
        fields = [f"{k}={getattr(self, k)!r}" for k in ("block", "k", "warps", "stages", "vector", "swizzle")
                  if getattr(self, k) is not None]
        return f"Schedule({', '.join(fields)})"

    def configured(self, config: Mapping[str, object]) -> ScheduleSpec:
        """This schedule with one autotune configuration applied."""
        s = self
        block = list(s.block or DEFAULT.block)
        for key, value in config.items():
            f = SPACE_KEYS[key]
            if f == "bm":
                block[0] = value  # type: ignore[call-overload]
            elif f == "bn":
                block = [block[0], value]  # type: ignore[list-item]
            else:
                s = replace(s, **{f: value})
        return replace(s, block=tuple(block))  # type: ignore[arg-type]

    def resolve(self) -> Schedule:
        d = DEFAULT
        return Schedule(block=self.block or d.block, k=self.k if self.k is not None else d.k,
                        vector=self.vector if self.vector is not None else d.vector,
                        warps=self.warps if self.warps is not None else d.warps,
                        stages=self.stages if self.stages is not None else d.stages,
                        swizzle=self.swizzle if self.swizzle is not None else d.swizzle)


# The schedule of a kernel that names none: (64, 64) blocks, k = 32, 4 warps, 2 stages.
DEFAULT = Schedule(block=(64, 64), k=32, vector=8, warps=4, stages=2)


@dataclass(frozen=True)
class KernelSchedule:
    """What a kernel runs with: `schedule`, and where it came from (`note` for `tessera lower`)."""

    schedule: Schedule
    span: Span  # the decorator that gave it (the kernel's name when none did)
    space: dict[str, list[object]] | None = None
    note: str | None = None

    @property
    def configurations(self) -> int:
        n = 1
        for values in (self.space or {}).values():
            n *= len(values)
        return n


# ---------------------------------------------------------------- validation


def check_schedule(s: Schedule, span: Span) -> None:
    """E-SCHEDULE unless every field is in range (budgets are checked on the lowered kernel)."""
    def bad(msg: str) -> CompilationError:
        return error("E-SCHEDULE", f"{s}: {msg}", span)

    if not 1 <= len(s.block) <= 2 or any(not _pos_int(b) for b in s.block):
        raise bad("block must be one or two positive ints, e.g. block=(64, 64)")
    if s.k is not None and not _pos_int(s.k):
        raise bad("k must be a positive int")
    for name in ("warps", "vector"):
        v = getattr(s, name)
        if not _pos_int(v) or v & (v - 1):
            raise bad(f"{name} must be a positive power of two, found {v}")
    if not _pos_int(s.stages):
        raise bad(f"stages must be a positive int, found {s.stages}")
    if s.swizzle is not None and s.swizzle not in SWIZZLES:
        raise bad(f"swizzle must be one of {', '.join(map(repr, SWIZZLES))}, found {s.swizzle!r}")


def _pos_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def space_problems(space: Mapping[str, list[object]]) -> list[str]:
    """What is wrong with an autotune space (empty when it is valid): unknown keys, bad values."""
    out = []
    for key, values in space.items():
        if key not in SPACE_KEYS:
            out.append(f"'{key}' is not a schedule parameter (autotune keys: {', '.join(SPACE_KEYS)})")
            continue
        for v in values:
            if key == "swizzle":
                if v not in SWIZZLES:
                    out.append(f"swizzle choices are {', '.join(map(repr, SWIZZLES))}; found {v!r}")
            elif not _pos_int(v):
                out.append(f"'{key}' choices must be positive ints; found {v!r}")
            elif key in ("warps", "vector") and v & (v - 1):  # type: ignore[operator]
                out.append(f"'{key}' choices must be powers of two; found {v}")
    return out


# ---------------------------------------------------------------- the kernel's schedule


def kernel_schedule(checked: CheckResult, fn: ast.FunctionDef) -> KernelSchedule:
    """The schedule `fn` is lowered with: its `@kernel.schedule`, with the first configuration of its
    `@kernel.autotune` space applied (the tuner is not implemented yet), else `DEFAULT`."""
    sig = checked.signatures[fn]
    ev = StaticEvaluator(checked)
    spec = ScheduleSpec()
    span = fn.name_span
    space: dict[str, list[object]] | None = None
    for dec in fn.decorators:
        if not isinstance(dec, ast.Call):
            continue
        name = _dotted(dec.func)
        if name == "kernel.schedule" and dec.args:
            v = ev.eval(dec.args[0], sig.module)
            if not isinstance(v, ScheduleSpec):
                raise error("E-SCHEDULE", f"@kernel.schedule takes a Schedule, found {_describe(v)}", dec.args[0].span)
            spec, span = v, dec.span
        elif name == "kernel.autotune":
            space = sig.autotune_space
            span = dec.span
    note = None
    if space:
        problems = space_problems(space)
        if problems:
            raise error("E-SCHEDULE", f"@kernel.autotune: {problems[0]}", span, notes=problems[1:])
        first = {k: v[0] for k, v in space.items()}
        spec = spec.configured(first)
        n = 1
        for values in space.values():
            n *= len(values)
        shown = ", ".join(f"{k}={v!r}" for k, v in first.items())
        note = (f"autotune: the space has {n} configuration{'s' if n != 1 else ''}; the tuner is not implemented "
                f"yet, so the first ({shown}) is used")
    s = spec.resolve()
    check_schedule(s, span)
    return KernelSchedule(s, span, space, note)


def _dotted(e: ast.Expr) -> str | None:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        base = _dotted(e.value)
        return f"{base}.{e.attr}" if base else None
    return None


def _describe(v: object) -> str:
    return type(v).__name__ if not isinstance(v, (int, float, str)) else repr(v)


# ---------------------------------------------------------------- static evaluation


_BINOPS: dict[str, Callable[[object, object], object]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod,
    "/": operator.truediv, "**": operator.pow,
}


class StaticEvaluator:
    """Evaluates module-level expressions that must be known at compile time (schedules, their
    arguments): literals, constants of this or an imported module, Schedule(...), its `with_*`
    methods, tuples, lists, dicts and arithmetic."""

    def __init__(self, checked: CheckResult) -> None:
        self.checked = checked
        self.modules = checked.program.modules
        self._busy: set[tuple[str, str]] = set()

    def eval(self, e: ast.Expr, module: str) -> object:
        match e:
            case ast.Constant(value=v):
                return v
            case ast.Name(id=n):
                return self.name(n, module, e.span)
            case ast.Tuple(elts=es):
                return tuple(self.eval(x, module) for x in es)
            case ast.List(elts=es):
                return [self.eval(x, module) for x in es]
            case ast.UnaryOp(op="-", operand=x):
                return -self._number(self.eval(x, module), x.span)  # type: ignore[operator]
            case ast.BinOp(op=op, left=a, right=b) if op in _BINOPS:
                return _BINOPS[op](self._number(self.eval(a, module), a.span), self._number(self.eval(b, module), b.span))
            case ast.Call(func=ast.Name(id="Schedule"), args=[], keywords=kws):
                return ScheduleSpec(**{kw.name: self._field(kw.name, self.eval(kw.value, module), kw.value.span)
                                       for kw in kws})
            case ast.Call(func=ast.Name(id="dict"), args=[], keywords=kws):
                return {kw.name: self.eval(kw.value, module) for kw in kws}
            case ast.Call(func=ast.Attribute(value=base, attr=method), args=args, keywords=[]):
                obj = self.eval(base, module)
                if isinstance(obj, ScheduleSpec) and method.startswith("with_") and hasattr(obj, method):
                    vals = [self.eval(a, module) for a in args]
                    try:
                        return getattr(obj, method)(*vals)
                    except TypeError:
                        raise error("E-SCHEDULE", f"Schedule.{method} takes {'(bm, bn)' if method == 'with_block' else 'one value'}",
                                    e.span) from None
        raise error("E-SCHEDULE", "a schedule must be known at compile time: write it with literals, module "
                    "constants, Schedule(...) and its with_* methods", e.span)

    def _field(self, name: str, v: object, span: Span) -> object:
        if name == "block" and isinstance(v, int) and not isinstance(v, bool):
            return (v,)
        if name == "block" and isinstance(v, list):
            return tuple(v)
        return v

    def _number(self, v: object, span: Span) -> int | float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
        raise error("E-SCHEDULE", f"expected a number, found {_describe(v)}", span)

    def name(self, n: str, module: str, span: Span) -> object:
        mod = self.modules[module]
        for c in mod.tree.constants:
            if c.name == n:
                key = (module, n)
                if key in self._busy:
                    raise error("E-SCHEDULE", f"the constant '{n}' depends on itself", span)
                self._busy.add(key)
                try:
                    return self.eval(c.value, module)
                finally:
                    self._busy.discard(key)
        for imp in mod.tree.imports:
            if isinstance(imp, ast.ImportFrom) and imp in mod.resolved:
                for nm in imp.names:
                    if (nm.asname or nm.name) == n:
                        return self.name(nm.name, mod.resolved[imp], span)
        if n in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[n]
        raise error("E-SCHEDULE", f"'{n}' is not a module constant known at compile time", span)
