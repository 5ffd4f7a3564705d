"""Checks of the NumPy arrays handed to a compiled kernel, shared by every runtime (CPU, CUDA, HIP):
each names the kernel, the argument and what is wrong, raised as the runtime's own error type."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.ir.tile.ops import TensorRefType

ErrorType = Callable[[str], Exception]


def describe_argument(kernel: str, i: int, hint: str) -> str:
    return f"kernel {kernel}: argument {i} ({hint or '?'})"


def check_array(error: ErrorType, kernel: str, i: int, hint: str, ty: TensorRefType, role: str,
                a: np.ndarray) -> None:
    what = describe_argument(kernel, i, hint)
    if not isinstance(a, np.ndarray):
        raise error(f"{what} must be a NumPy array, got {type(a).__name__}")
    want = np.dtype(numpy_dtype(ty.dtype))
    if a.dtype != want:
        raise error(f"{what} has dtype {a.dtype}, the kernel takes {ty.dtype} ({want})")
    if not a.dtype.isnative:
        raise error(f"{what} is not in native byte order")
    if a.ndim != ty.rank:
        raise error(f"{what} has rank {a.ndim}, the kernel takes rank {ty.rank}")
    if any(s % a.itemsize for s in a.strides):
        raise error(f"{what} has strides {a.strides} that are not whole elements")
    if role in ("out", "inout") and not a.flags.writeable:
        raise error(f"{what} is written by the kernel but the array is read-only")
