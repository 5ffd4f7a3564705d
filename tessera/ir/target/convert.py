"""Element dtypes in Target IR: how each Tessera dtype is stored and computed, and the conversions.

A value of a narrow float dtype (f16, bf16, fp8_e4m3, fp8_e5m2, tf32) is *computed* as f32 holding a
value representable in the narrow dtype: loads widen exactly, arithmetic runs in f32 and its result
is rounded back (`round_to`), stores narrow exactly. For the 8- and 16-bit formats f32 has more than
2p+2 bits, so one f32 operation followed by rounding equals the correctly rounded narrow operation
(what ml_dtypes does). Conversions are bit manipulation on the f32 pattern:

- bf16: the top half of the f32 bits, rounded to nearest even (NaN kept quiet, sign kept);
- fp8 (ml_dtypes semantics): e4m3fn (bias 7, no inf: overflow and inf give NaN 0x7f) and e5m2
  (bias 15, overflow gives inf 0x7c, NaN 0x7e); normal results round the f32 mantissa at the fp8
  position, subnormal results are rint(|x| / 2^(1-bias-m));
- f16 through the target's half type (`fptrunc` rounds to nearest even).

`bool` is computed as i1 and stored as one byte (NumPy's layout).
"""

from __future__ import annotations

import math

import numpy as np

from tessera.dtypes import DType
from tessera.ir.target.builder import Builder
from tessera.ir.target.ops import (
    F16,
    F32,
    F64,
    I1,
    I8,
    I16,
    I32,
    I64,
    Scalar,
    TargetIRError,
    Value,
    elem_of,
    with_elem,
)

_INTS = {"int8": I8, "uint8": I8, "int16": I16, "int32": I32, "int64": I64}
NARROW_FLOATS = ("f16", "bf16", "fp8_e4m3", "fp8_e5m2", "tf32")


def _check(dt: DType) -> None:
    if dt.name == "int4":
        raise TargetIRError("int4 tensors are not supported by the CPU backend yet (no packed 4-bit layout)")


def compute_scalar(dt: DType) -> Scalar:
    """The type a value of dt has in registers."""
    _check(dt)
    if dt.name == "bool":
        return I1
    if dt.name in _INTS:
        return _INTS[dt.name]
    return F64 if dt.name == "f64" else F32


def storage_scalar(dt: DType) -> Scalar:
    """The element type of dt in tensor memory (NumPy / ml_dtypes layout)."""
    _check(dt)
    return {"bool": I8, "f16": F16, "bf16": I16, "fp8_e4m3": I8, "fp8_e5m2": I8, "tf32": F32,
            "f32": F32, "f64": F64}.get(dt.name) or _INTS[dt.name]


def buffer_scalar(dt: DType) -> Scalar:
    """The element type of dt in local (stack) memory: the compute type, bools as bytes."""
    return I8 if dt.name == "bool" else compute_scalar(dt)


def is_unsigned(dt: DType) -> bool:
    return dt.kind in ("uint", "bool")


def compute_constant(value: float, dt: DType) -> float | int | bool:
    """A Python number as a constant of dt's compute type (rounded to dt, ints saturated)."""
    if dt.name == "bool":
        return bool(value != 0)
    if dt.is_int:
        from tessera.dtypes import numpy_dtype

        info = np.iinfo(numpy_dtype(dt))
        if math.isnan(value):
            return 0
        if math.isinf(value):
            return int(info.max if value > 0 else info.min)
        return int(min(max(int(value), int(info.min)), int(info.max)))
    if dt.name in NARROW_FLOATS and dt.name != "tf32":
        from tessera.dtypes import numpy_dtype

        with np.errstate(all="ignore"):
            return float(np.array([value], np.float32).astype(numpy_dtype(dt)).astype(np.float64)[0])
    if dt.name in ("f32", "tf32"):
        return float(np.float32(value))
    return float(value)


def storage_constant(value: float, dt: DType) -> float | int:
    """A Python number encoded as dt's storage element (the pass-through value of masked loads)."""
    c = compute_constant(value, dt)
    if dt.name == "bool":
        return int(c)
    if dt.name in ("bf16", "fp8_e4m3", "fp8_e5m2"):
        from tessera.dtypes import numpy_dtype

        arr = np.array([c], np.float32).astype(numpy_dtype(dt))
        raw = int(arr.view(np.uint16 if dt.name == "bf16" else np.uint8)[0])
        bits = 16 if dt.name == "bf16" else 8
        return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw  # as a signed iN constant
    return c


# ---------------------------------------------------------------- conversions


def decode(b: Builder, x: Value, dt: DType) -> Value:
    """Storage lanes of dt -> compute lanes (exact)."""
    name = dt.name
    if name == "bool":
        return b.cmp("ne", x, b.like(0, x))
    if name == "f16":
        return b.cast("fpext", x, F32)
    if name == "bf16":
        wide = b.cast("zext", x, I32)
        return b.cast("bitcast", b.op("shl", wide, b.like(16, wide)), F32)
    if name in ("fp8_e4m3", "fp8_e5m2"):
        return _fp8_decode(b, x, name)
    return x


def encode(b: Builder, x: Value, dt: DType, rounding: str = "nearest_even") -> Value:
    """Compute lanes -> storage lanes of dt, rounding as asked."""
    name = dt.name
    if name == "bool":
        return b.cast("zext", x, I8)
    if name == "f16":
        return _f16_encode(b, x, rounding)
    if name == "bf16":
        return _bf16_encode(b, x, rounding)
    if name in ("fp8_e4m3", "fp8_e5m2"):
        return _fp8_encode(b, x, name, rounding)
    if name == "tf32":
        return _tf32_round(b, x, rounding)
    return x


def round_to(b: Builder, x: Value, dt: DType, rounding: str = "nearest_even") -> Value:
    """f32 compute lanes rounded to the values dt can hold (identity for f32/f64/ints)."""
    if dt.name == "tf32":
        return _tf32_round(b, x, rounding)
    if dt.name in NARROW_FLOATS:
        return decode(b, encode(b, x, dt, rounding), dt)
    return x


def _bf16_encode(b: Builder, x: Value, rounding: str) -> Value:
    bits = b.cast("bitcast", x, I32)
    if rounding == "toward_zero":
        r = b.op("lshr", bits, b.like(16, bits))
    else:
        lsb = b.op("and", b.op("lshr", bits, b.like(16, bits)), b.like(1, bits))
        biased = b.op("add", b.op("add", bits, b.like(0x7FFF, bits)), lsb)
        r = b.op("lshr", biased, b.like(16, bits))
    quiet = b.op("or", b.op("lshr", bits, b.like(16, bits)), b.like(0x40, bits))
    r = b.select(b.cmp("uno", x, x), quiet, r)
    return b.cast("trunc", r, I16)


def _f16_encode(b: Builder, x: Value, rounding: str) -> Value:
    h = b.cast("fptrunc", x, F16)
    if rounding != "toward_zero":
        return h
    # Round to nearest, then step one ulp toward zero where that overshot |x|.
    back = b.cast("fpext", h, F32)
    over = b.cmp("ogt", b.op("abs", back), b.op("abs", x))
    hb = b.cast("bitcast", h, I16)
    stepped = b.cast("bitcast", b.op("sub", hb, b.like(1, hb)), F16)
    return b.select(over, stepped, h)


def _tf32_round(b: Builder, x: Value, rounding: str) -> Value:
    if elem_of(x.ty) != F32:
        return x
    bits = b.cast("bitcast", x, I32)
    if rounding == "toward_zero":
        r = bits
    else:
        lsb = b.op("and", b.op("lshr", bits, b.like(13, bits)), b.like(1, bits))
        r = b.op("add", b.op("add", bits, b.like(0xFFF, bits)), lsb)
    r = b.op("and", r, b.like(~0x1FFF, bits))
    return b.select(b.cmp("uno", x, x), x, b.cast("bitcast", r, F32))


_FP8 = {
    # name: (mantissa bits, exponent bias, largest finite code, overflow code, NaN code)
    "fp8_e4m3": (3, 7, 0x7E, 0x7F, 0x7F),
    "fp8_e5m2": (2, 15, 0x7B, 0x7C, 0x7E),
}


def _fp8_encode(b: Builder, x: Value, name: str, rounding: str) -> Value:
    mbits, bias, max_code, ovf_code, nan_code = _FP8[name]
    ity = with_elem(x.ty, I32)

    def k(v: int) -> Value:
        return b.const(v, ity)

    bits = b.cast("bitcast", x, I32)
    sign = b.op("shl", b.op("lshr", bits, k(31)), k(7))
    abits = b.op("and", bits, k(0x7FFFFFFF))
    a = b.cast("bitcast", abits, F32)
    shift = 23 - mbits
    if rounding == "toward_zero":
        rounded = b.op("lshr", abits, k(shift))
    else:
        lsb = b.op("and", b.op("lshr", abits, k(shift)), k(1))
        rounded = b.op("lshr", b.op("add", b.op("add", abits, k((1 << (shift - 1)) - 1)), lsb), k(shift))
    normal = b.op("sub", rounded, k((127 - bias) << mbits))
    scaled = b.op("mul", a, b.like(float(2 ** (bias - 1 + mbits)), x))
    if rounding != "toward_zero":
        scaled = b.op("rint", scaled)
    sub = b.cast("fptosi_sat", scaled, I32)
    min_normal = 2.0 ** (1 - bias)
    code = b.select(b.cmp("olt", a, b.like(min_normal, x)), sub, normal)
    is_inf = b.cmp("oeq", a, b.like(math.inf, x))
    overflow = b.select(is_inf, k(ovf_code), k(max_code if rounding == "toward_zero" else ovf_code))
    code = b.select(b.cmp("sgt", code, k(max_code)), overflow, code)
    code = b.select(is_inf, k(ovf_code), code)
    code = b.select(b.cmp("uno", x, x), k(nan_code), code)
    return b.cast("trunc", b.op("or", code, sign), I8)


def _fp8_decode(b: Builder, x: Value, name: str) -> Value:
    mbits, bias, _, ovf_code, _ = _FP8[name]
    ity = with_elem(x.ty, I32)

    def k(v: int) -> Value:
        return b.const(v, ity)

    c = b.cast("zext", x, I32)
    mag = b.op("and", c, k(0x7F))
    sign = b.op("shl", b.op("and", c, k(0x80)), k(24))
    e = b.op("lshr", mag, k(mbits))
    m = b.op("and", mag, k((1 << mbits) - 1))
    nbits = b.op("or", b.op("shl", b.op("add", e, k(127 - bias)), k(23)), b.op("shl", m, k(23 - mbits)))
    normal = b.cast("bitcast", b.op("or", nbits, sign), F32)
    sub_mag = b.op("mul", b.cast("sitofp", m, F32), b.like(float(2.0 ** (1 - bias - mbits)), normal))
    sub = b.op("copysign", sub_mag, normal)
    r = b.select(b.cmp("eq", e, k(0)), sub, normal)
    nan = b.op("copysign", b.like(math.nan, r), normal)  # NaN keeps its sign bit, as in ml_dtypes
    if name == "fp8_e4m3":
        return b.select(b.cmp("eq", mag, k(0x7F)), nan, r)
    inf = b.op("copysign", b.like(math.inf, r), normal)
    r = b.select(b.cmp("eq", mag, k(ovf_code)), inf, r)
    return b.select(b.cmp("ugt", mag, k(ovf_code)), nan, r)


def convert(b: Builder, x: Value, src: DType, dst: DType, rounding: str = "nearest_even") -> Value:
    """cast: compute lanes of src -> compute lanes of dst."""
    if rounding == "stochastic":
        raise TargetIRError("cast with stochastic rounding is not implemented by the CPU backend")
    if src == dst:
        return x
    s, d = compute_scalar(src), compute_scalar(dst)
    if dst.name == "bool":
        if src.is_float:
            return b.cmp("une", x, b.like(0.0, x))
        return b.cmp("ne", x, b.like(0, x))
    if src.is_float and dst.is_float:
        if s == F64 and d == F32:
            y = b.cast("fptrunc", x, F32)
            if rounding == "toward_zero":
                back = b.cast("fpext", y, F64)
                over = b.cmp("ogt", b.op("abs", back), b.op("abs", x))
                yb = b.cast("bitcast", y, I32)
                y = b.select(over, b.cast("bitcast", b.op("sub", yb, b.like(1, yb)), F32), y)
        elif s == F32 and d == F64:
            y = b.cast("fpext", x, F64)
        else:
            y = x
        return round_to(b, y, dst, rounding)
    if src.is_float:  # -> int
        xr = b.op("rint", x) if rounding == "nearest_even" else x
        kind = "fptoui_sat" if is_unsigned(dst) else "fptosi_sat"
        return b.cast(kind, xr, d)
    if dst.is_float:  # int/bool -> float
        kind = "uitofp" if is_unsigned(src) else "sitofp"
        return round_to(b, b.cast(kind, x, d), dst, rounding)
    # int/bool -> int
    if s.bits == d.bits:
        return x
    if s.bits > d.bits:
        return b.cast("trunc", x, d)
    return b.cast("zext" if is_unsigned(src) else "sext", x, d)
