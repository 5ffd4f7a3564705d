"""What the graph builder computes with: tensors under construction and the host-level values of `@jit`
code that exist only at build time.

A `@jit` body mixes graph work (tensors, which become SSA values of the Graph IR) with host work that
is folded away while the graph is built: Python scalars (ints are `Dim`s, so `x.shape[0]` stays
symbolic), strings, tuples, dtypes, functions. A `TVal` pairs a graph value with the numeric policy of
its dtype (`bf16 @accum(f32)`), which graph types do not carry but matmuls and reductions need. A
`DynScalar` is a Python scalar whose value is only known at run time (`float(q.shape[-1])` over a
symbolic extent): a rank-0 graph value that keeps the weak typing of Python scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.dtypes import BOOL, F64, INT64, DType
from tessera.frontend import ast
from tessera.frontend.types import NO_POLICY, Policy, ScalarType
from tessera.frontend.types import TensorType as FeTensorType
from tessera.ir.graph.ops import Value
from tessera.symbolic import Dim


@dataclass(frozen=True, eq=False)
class TVal:
    """A tensor of the graph being built."""

    value: Value
    policy: Policy = NO_POLICY

    @property
    def dims(self) -> tuple[Dim, ...]:
        return self.value.ty.dims

    @property
    def dtype(self) -> DType:
        return self.value.ty.dtype

    @property
    def rank(self) -> int:
        return self.value.ty.rank

    @property
    def fe(self) -> FeTensorType:
        """The checker's view of this tensor, for the checker's own dtype and accumulation rules."""
        return FeTensorType(self.dims, self.dtype, self.policy)

    @property
    def accum(self) -> DType:
        acc = self.fe.accum
        assert acc is not None
        return acc


# The graph dtype that holds a dynamic Python scalar of each kind (Python floats are doubles).
SCALAR_DTYPES: dict[str, DType] = {"float": F64, "int": INT64, "bool": BOOL}


@dataclass(frozen=True, eq=False)
class DynScalar:
    """A Python scalar known only at run time, held in a rank-0 graph value (weak in promotion)."""

    value: Value
    kind: str  # "int" | "float" | "bool"


@dataclass(frozen=True)
class DTypeV:
    """A dtype used as a value (`cast(x, bf16 @stochastic_round)`), with its policy."""

    dtype: DType
    policy: Policy = NO_POLICY


@dataclass(frozen=True)
class PolicyV:
    policy: Policy


@dataclass(frozen=True, eq=False)
class FnV:
    """A user function and the module it is defined in."""

    fn: ast.FunctionDef
    module: str


@dataclass(frozen=True)
class BuiltinV:
    """A builtin of spec §6, an `effects.*` scope or a `tile.*` intrinsic, by name."""

    name: str


@dataclass(frozen=True)
class NamespaceV:
    """A module (`import stdlib.nn as nn`) or a builtin namespace (`effects`, `tile`)."""

    name: str


@dataclass(frozen=True)
class ScopeV:
    """The value of `effects.suspend(...)` / `effects.allow(...)`: a context that changes nothing in
    the graph (effects are function attributes, computed by the checker)."""

    what: str


@dataclass(frozen=True)
class SymRange:
    """`range(n)` over a symbolic extent: it exists, but cannot be unrolled."""

    stop: Dim


def is_host_scalar(v: object) -> bool:
    return isinstance(v, (Dim, float, bool))


def scalar_kind(v: object) -> str:
    """The Python kind of a host or dynamic scalar: "bool", "int" or "float"."""
    if isinstance(v, DynScalar):
        return v.kind
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Dim):
        return "int"
    if isinstance(v, float):
        return "float"
    raise TypeError(f"not a scalar: {v!r}")


def fe_type(v: object) -> FeTensorType | ScalarType:
    """The checker's type of a tensor or scalar operand (for promotion rules)."""
    if isinstance(v, TVal):
        return v.fe
    return ScalarType(scalar_kind(v))


def describe(v: object) -> str:
    """A short description of a build-time value, for error messages."""
    if isinstance(v, TVal):
        return str(v.value.ty)
    if isinstance(v, DynScalar):
        return f"{v.kind} (known at run time)"
    if isinstance(v, Dim):
        return f"int {v}"
    if isinstance(v, bool):
        return f"bool {v}"
    if isinstance(v, float):
        return f"float {v}"
    if isinstance(v, str):
        return f"str {v!r}"
    if v is None:
        return "None"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(describe(x) for x in v) + ")"
    if isinstance(v, DTypeV):
        return f"dtype {v.dtype}"
    if isinstance(v, FnV):
        return f"function {v.fn.name}"
    if isinstance(v, BuiltinV):
        return f"builtin {v.name}"
    if isinstance(v, NamespaceV):
        return f"module {v.name}"
    return type(v).__name__
