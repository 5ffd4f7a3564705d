"""Run-time values at the edges of the runtime: NumPy dtypes of Tessera dtypes, conversion of
arguments to a declared dtype, `.npy`/`.npz` input and output, and the NumPy-like text of `print`.

Tensors are NumPy arrays (bf16 and fp8 through ml_dtypes); host scalars are Python values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np

from tessera.dtypes import DTYPES, DType, numpy_dtype

# The ml_dtypes types NumPy can compute with but cannot store in .npy/.npz files.
_EXTENDED = {np.dtype(ml_dtypes.bfloat16), np.dtype(ml_dtypes.float8_e4m3fn),
             np.dtype(ml_dtypes.float8_e5m2), np.dtype(ml_dtypes.int4)}


def np_dtype(d: DType) -> np.dtype:
    return numpy_dtype(d)


def tessera_dtype(dt: np.dtype) -> DType | None:
    """The Tessera dtype stored as `dt` (f32 for float32: tf32 is never inferred from data)."""
    for name in ("bool", "int8", "uint8", "int16", "int32", "int64", "f16", "bf16", "f32", "f64",
                 "fp8_e4m3", "fp8_e5m2", "int4"):
        if numpy_dtype(DTYPES[name]) == dt:
            return DTYPES[name]
    return None


def is_extended(dt: np.dtype) -> bool:
    """bf16, fp8 and int4: dtypes that .npy files cannot hold."""
    return np.dtype(dt) in _EXTENDED


def is_float(dt: np.dtype) -> bool:
    d = tessera_dtype(np.dtype(dt))
    return d is not None and d.is_float


def convert(arr: np.ndarray, dtype: DType) -> np.ndarray:
    """`arr` in `dtype`: float conversions round to nearest even (NumPy and ml_dtypes both do)."""
    target = np_dtype(dtype)
    if arr.dtype == target:
        return arr
    src = arr
    if is_extended(arr.dtype) and is_extended(target):
        src = arr.astype(np.float32)  # ml_dtypes converts between its own types through f32 exactly
    return src.astype(target)


def widen_for_storage(arr: np.ndarray) -> np.ndarray:
    """An array NumPy can save: bf16 and fp8 widened to f32 (exactly), int4 to int8."""
    if not is_extended(arr.dtype):
        return arr
    return arr.astype(np.int8 if arr.dtype == np.dtype(ml_dtypes.int4) else np.float32)


class BadInputFile(Exception):
    """A .npy file that cannot be read; the message says why in one line."""


def load_npy(path: str | Path) -> np.ndarray:
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise BadInputFile(f"cannot load '{path}': no such file") from None
    except IsADirectoryError:
        raise BadInputFile(f"cannot load '{path}': it is a directory") from None
    except PermissionError:
        raise BadInputFile(f"cannot load '{path}': permission denied") from None
    except (ValueError, OSError, EOFError) as ex:
        first = str(ex).splitlines()[0] if str(ex) else type(ex).__name__
        raise BadInputFile(f"cannot load '{path}': not a valid .npy file ({first})") from None
    if not isinstance(arr, np.ndarray):
        raise BadInputFile(f"cannot load '{path}': expected one array (.npy), found an archive")
    if tessera_dtype(arr.dtype) is None:
        raise BadInputFile(f"cannot load '{path}': unsupported element dtype {arr.dtype}")
    return arr


def save_npy(path: str | Path, arr: np.ndarray) -> None:
    np.save(Path(path), widen_for_storage(np.asarray(arr)))


def save_npz(path: str | Path, arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> None:
    """Write results as `out0, out1, ...` (or the given names); bf16/fp8 widened to f32."""
    items = arrays.items() if isinstance(arrays, Mapping) else ((f"out{i}", a) for i, a in enumerate(arrays))
    np.savez(Path(path), **{k: widen_for_storage(np.asarray(a)) for k, a in items})


# ---------------------------------------------------------------- print formatting


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def _scalar_text(a: np.ndarray) -> str:
    """A rank-0 tensor prints like its value (bf16/fp8 as the float they hold)."""
    if a.dtype == np.bool_:
        return str(bool(a))
    d = tessera_dtype(a.dtype)
    if d is not None and d.is_float:
        if a.dtype in (np.float32, np.float16) or is_extended(a.dtype):
            # The shortest text that round-trips in the value's own precision, as NumPy prints it.
            return str(np.float32(a)) if a.dtype != np.float16 else str(np.float16(a))
        return _float_text(float(a))
    return str(int(a))


def format_tensor(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _scalar_text(a)
    if is_extended(a.dtype):
        a = widen_for_storage(a)
    return np.array2string(a, separator=" ", threshold=1000, edgeitems=3)


def format_value(v: object, nested: bool = False) -> str:
    """The text `print` shows for a host value: Python's for scalars and tuples, NumPy's for tensors."""
    if isinstance(v, np.ndarray):
        return format_tensor(v)
    if isinstance(v, np.generic):
        return format_tensor(np.asarray(v))
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_text(v)
    if isinstance(v, str):
        return repr(v) if nested else v
    if isinstance(v, tuple):
        inner = ", ".join(format_value(e, True) for e in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(e, True) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{format_value(k, True)}: {format_value(x, True)}" for k, x in v.items()) + "}"
    return str(v)


def describe(v: object) -> str:
    """A one-line summary of a value for messages: `tensor (2, 3) f32`, `int 4`."""
    if isinstance(v, np.ndarray):
        d = tessera_dtype(v.dtype)
        return f"tensor {format_value(tuple(v.shape))} {d if d is not None else v.dtype}"
    return f"{type(v).__name__} {format_value(v, True)}"
