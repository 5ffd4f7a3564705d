"""The types of the checker: element dtypes with their promotion order, numeric policies, tensor types
over symbolic dims, and the host-level value types (scalars, strings, tuples, functions, modules).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tessera.frontend.symbolic import Dim

if TYPE_CHECKING:
    from tessera.frontend.ast import FunctionDef

# ---------------------------------------------------------------- dtypes


@dataclass(frozen=True)
class DType:
    """An element dtype. `rank` orders the promotion lattice of spec §4 (bool < ints < fp8 < 16-bit
    floats < tf32 < f32 < f64); equal ranks of different dtypes (f16/bf16, the two fp8s) promote to the
    next wider float. `numpy` names the NumPy/ml_dtypes dtype that stores it."""

    name: str
    kind: str  # "bool" | "int" | "uint" | "float"
    bits: int
    rank: int
    numpy: str

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    def __str__(self) -> str:
        return self.name


_DTYPES = [
    DType("bool", "bool", 1, 0, "bool"),
    DType("int4", "int", 4, 1, "int4"),
    DType("int8", "int", 8, 2, "int8"),
    DType("uint8", "uint", 8, 2, "uint8"),
    DType("int16", "int", 16, 3, "int16"),
    DType("int32", "int", 32, 4, "int32"),
    DType("int64", "int", 64, 5, "int64"),
    DType("fp8_e4m3", "float", 8, 6, "float8_e4m3fn"),
    DType("fp8_e5m2", "float", 8, 6, "float8_e5m2"),
    DType("f16", "float", 16, 7, "float16"),
    DType("bf16", "float", 16, 7, "bfloat16"),
    DType("tf32", "float", 32, 8, "float32"),
    DType("f32", "float", 32, 9, "float32"),
    DType("f64", "float", 64, 10, "float64"),
]
DTYPES: dict[str, DType] = {d.name: d for d in _DTYPES}
DTYPE_ALIASES = {"fp64": "f64", "fp32": "f32", "fp16": "f16"}

BOOL, INT32, INT64, F16, BF16, F32, F64 = (
    DTYPES[n] for n in ("bool", "int32", "int64", "f16", "bf16", "f32", "f64")
)


def dtype_named(name: str) -> DType | None:
    return DTYPES.get(DTYPE_ALIASES.get(name, name))


def promote(a: DType, b: DType) -> DType:
    """The dtype of a binary op on a and b (spec §4)."""
    if a == b:
        return a
    if a.rank != b.rank:
        return a if a.rank > b.rank else b
    # Same rank, different dtype: the smallest dtype that holds both.
    if a.kind == "float" and a.bits == 16:
        return F32
    if a.kind == "float" and a.bits == 8:
        return F16
    return DTYPES["int16"]  # int8 with uint8, as NumPy does


def is_narrowing(src: DType, dst: DType) -> bool:
    """True when storing src into dst loses range or precision implicitly (E-DTYPE)."""
    return src != dst and promote(src, dst) != dst


def default_accum(d: DType) -> DType:
    """Accumulation dtype when no @accum is given: f32 for every float narrower than f32."""
    if d.is_float:
        return d if d.rank >= F32.rank else F32
    if d.kind == "bool":
        return INT64
    return INT64 if d.is_int else d


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
class ScalarType(Type):
    """A Python scalar: `int` (whose value may be a symbolic Dim, e.g. `x.shape[0]`), `float`, `bool`.
    Scalars are weak in promotion: they take the tensor's dtype. `value` is the compile-time value
    when known (needed for axes, reshape targets, static parameters)."""

    kind: str  # "int" | "float" | "bool"
    value: object = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.kind


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
