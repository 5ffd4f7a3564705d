"""Element dtypes: the promotion order of spec §4, the accumulation defaults, and the NumPy /
ml_dtypes storage of each. Shared by the front end, every IR layer and the runtimes."""

from __future__ import annotations

from dataclasses import dataclass


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


def numpy_dtype(d: DType):
    """The NumPy dtype that stores `d` (bf16 and fp8 through ml_dtypes)."""
    import ml_dtypes  # noqa: F401 - registers bfloat16/float8 names with NumPy
    import numpy as np

    if d.numpy in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "int4"):
        import ml_dtypes as mld

        return np.dtype(getattr(mld, d.numpy))
    return np.dtype(d.numpy)
