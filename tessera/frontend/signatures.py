"""Function signatures as the checker sees them: kind (jit/kernel/host) from the decorators,
parameter and result types from the annotations, and the `where` constraints over the dim symbols."""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.constraints import Constraint, ConstraintSet
from tessera.frontend import ast
from tessera.frontend.types import TensorType, TupleType, Type
from tessera.source import Span


@dataclass
class ParamSig:
    name: str
    span: Span
    ty: Type | None  # None: unannotated (generic)
    has_default: bool
    kw_only: bool


@dataclass
class Signature:
    fn: ast.FunctionDef
    module: str
    kind: str = "host"  # "jit" | "kernel" | "host"
    params: list[ParamSig] = field(default_factory=list)
    returns: Type | None = None
    constraints: list[tuple[Constraint, Span]] = field(default_factory=list)
    symbols: frozenset[str] = frozenset()
    declared_effects: frozenset[str] | None = None
    deterministic: bool = False
    seed: int | None = None
    autotune_space: dict[str, list[object]] | None = None
    flags: frozenset[str] = frozenset()  # autodiff, custom_vjp, checkpoint, verify.numerics
    ok: bool = True  # False when the signature itself had errors (callers then see `any`)

    @property
    def generic(self) -> bool:
        """A function whose types depend on its arguments: checked again at each distinct call."""
        return any(p.ty is None for p in self.params) or self.returns is None

    def constraint_set(self) -> ConstraintSet:
        return ConstraintSet(c for c, _ in self.constraints)


def dim_symbols(t: Type | None) -> set[str]:
    if isinstance(t, TensorType):
        out: set[str] = set()
        for d in t.dims:
            out |= d.free_symbols
        return out
    if isinstance(t, TupleType):
        return set().union(*(dim_symbols(e) for e in t.elts)) if t.elts else set()
    return set()
