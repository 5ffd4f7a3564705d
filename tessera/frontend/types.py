"""The types of the checker: element dtypes with their promotion order, numeric policies, tensor types
over symbolic dims, and the host-level value types (scalars, strings, tuples, functions, modules).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.frontend.ast import FunctionDef

from tessera.dtypes import (  # noqa: F401 - re-exported: the front end's one import for types
    BF16,
    BOOL,
    DTYPE_ALIASES,
    DTYPES,
    F16,
    F32,
    F64,
    INT32,
    INT64,
    DType,
    default_accum,
    dtype_named,
    is_narrowing,
    promote,
)

# ---------------------------------------------------------------- numeric policies


@dataclass(frozen=True)
class Policy:
    """Numeric policy attached to a dtype with `@`: `bf16 @accum(f32) @stochastic_round`."""

    accum: DType | None = None
    rounding: str | None = None  # "nearest_even" | "toward_zero" | "stochastic"
    loss_scale: float | None = None
    saturate: bool = False

    def __str__(self) -> str:
        parts = []
        if self.accum is not None:
            parts.append(f"@accum({self.accum})")
        if self.rounding == "stochastic":
            parts.append("@stochastic_round")
        elif self.rounding is not None:
            parts.append(f'@round("{self.rounding}")')
        if self.loss_scale is not None:
            parts.append(f"@loss_scale({self.loss_scale})")
        if self.saturate:
            parts.append("@saturate")
        return " ".join(parts)


NO_POLICY = Policy()
ROUNDING_MODES = ("nearest_even", "toward_zero", "stochastic")


# ---------------------------------------------------------------- types


class Type:
    """Base of all checker types."""

    def describe(self) -> str:
        return str(self)


@dataclass(frozen=True)
class AnyType(Type):
    """The type of a value the checker does not track (e.g. inside a generic helper before it is
    instantiated, or a tile value inside a kernel). Operations on it are not checked."""

    def __str__(self) -> str:
        return "any"


ANY = AnyType()


@dataclass(frozen=True)
class TensorType(Type):
    dims: tuple[Dim, ...]
    dtype: DType | None  # None: dtype not known (generic)
    policy: Policy = NO_POLICY
    kind: str = "Tensor"  # "Tensor" | "Tile" | "KTile"

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def accum(self) -> DType | None:
        if self.dtype is None:
            return None
        return self.policy.accum or default_accum(self.dtype)

    def with_(self, **changes: object) -> TensorType:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        dims = [f'"{d}"' if not d.is_const else str(d) for d in self.dims]
        dt = str(self.dtype) if self.dtype is not None else "?"
        pol = str(self.policy)
        return f"{self.kind}[{', '.join([*dims, dt + (' ' + pol if pol else '')])}]"


@dataclass(frozen=True)
class TileType(Type):
    """A block of a `@kernel` (spec §7): what `tile.load`, `tile.zeros`, `tile.dot` ... produce. Its
    dims are static ints or symbols: the schedule's block sizes (`T.m`, `T.n`, `T.k`, symbols named so
    that no user can write them) and the extents of the kernel's tensors (`D`). `space` is `reg` or
    `shared` (`tile.alloc_shared`)."""

    dims: tuple[Dim, ...]
    dtype: DType | None
    policy: Policy = NO_POLICY
    space: str = "reg"

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def accum(self) -> DType | None:
        if self.dtype is None:
            return None
        return self.policy.accum or default_accum(self.dtype)

    def with_(self, **changes: object) -> TileType:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        dt = str(self.dtype) if self.dtype is not None else "?"
        sp = "" if self.space == "reg" else f", {self.space}"
        return f"tile[{', '.join([*map(str, self.dims), dt])}{sp}]"


@dataclass(frozen=True)
class ScalarType(Type):
    """A Python scalar: `int` (whose value may be a symbolic Dim, e.g. `x.shape[0]`), `float`, `bool`.
    Scalars are weak in promotion: they take the tensor's dtype. `value` is the compile-time value
    when known (needed for axes, reshape targets, static parameters)."""

    kind: str  # "int" | "float" | "bool"
    value: object = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class BlockSizeType(ScalarType):
    """`T.m`, `T.n`, `T.k`, `T.d` of `tile.context()`: an int that, given as `rows=` / `cols=`, addresses
    the program's own block of that size. Arithmetic on it gives a plain int."""

    field_name: str = ""


@dataclass(frozen=True)
class BlockRangeType(ScalarType):
    """The loop variable of `tile.range` / `tile.range_n`: a block's start offset with its static size;
    `rows=j` addresses that block. Arithmetic on it gives a plain int (the offset)."""

    size: Dim = field(default_factory=lambda: Dim.const(1), compare=False)


INT = ScalarType("int")
FLOAT = ScalarType("float")
BOOLEAN = ScalarType("bool")


@dataclass(frozen=True)
class StrType(Type):
    value: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return "str"


@dataclass(frozen=True)
class NoneType(Type):
    def __str__(self) -> str:
        return "None"


NONE = NoneType()


@dataclass(frozen=True)
class TupleType(Type):
    elts: tuple[Type, ...]

    def __str__(self) -> str:
        return "(" + ", ".join(map(str, self.elts)) + ("," if len(self.elts) == 1 else "") + ")"


@dataclass(frozen=True)
class ListType(Type):
    elts: tuple[Type, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.elts)) + "]"


@dataclass(frozen=True)
class DictType(Type):
    items: tuple[tuple[str, Type], ...]

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in self.items) + "}"


@dataclass(frozen=True)
class DTypeValue(Type):
    """A dtype used as a value: the `f32` in `cast(x, f32)`; carries its policy if one was attached."""

    dtype: DType
    policy: Policy = NO_POLICY

    def __str__(self) -> str:
        return f"dtype[{self.dtype}]"


@dataclass(frozen=True)
class PolicyValue(Type):
    """A numeric policy used as a value: the `accum(f32)` of `bf16 @accum(f32)`."""

    policy: Policy

    def __str__(self) -> str:
        return f"policy[{self.policy}]"


@dataclass(frozen=True)
class FunctionRef(Type):
    """A user function defined in some module."""

    fn: FunctionDef = field(compare=False)
    module: str = ""

    def __str__(self) -> str:
        return f"function {self.fn.name}"


@dataclass(frozen=True)
class BuiltinRef(Type):
    """A builtin of spec §6 or a `tile.*` / `effects.*` intrinsic, by its table name."""

    name: str

    def __str__(self) -> str:
        return f"builtin {self.name}"


@dataclass(frozen=True)
class NamespaceRef(Type):
    """A module or builtin namespace (`tile`, `effects`, `kernel`, `import stdlib.nn as nn`)."""

    name: str

    def __str__(self) -> str:
        return f"module {self.name}"


@dataclass(frozen=True)
class OpaqueType(Type):
    """Host objects the checker only passes around: schedules, tile contexts, effect scopes, ranges."""

    name: str
    fields: tuple[tuple[str, Type], ...] = ()

    def field(self, attr: str) -> Type | None:
        return dict(self.fields).get(attr)

    def __str__(self) -> str:
        return self.name


def type_of_python_scalar(v: object) -> Type:
    if isinstance(v, bool):
        return ScalarType("bool", v)
    if isinstance(v, int):
        return ScalarType("int", Dim.const(v))
    if isinstance(v, float):
        return ScalarType("float", v)
    if isinstance(v, str):
        return StrType(v)
    return NONE
