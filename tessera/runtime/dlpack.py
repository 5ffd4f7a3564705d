"""DLPack capsules, read and written with ctypes (the structures of dlpack.h, ABI version 0.x, which
is what `__dlpack__()` returns to a consumer that asks for no newer version).

- `consume(obj, stream)` calls `obj.__dlpack__(stream=...)`, takes ownership of the
  `DLManagedTensor` (the capsule is renamed `used_dltensor`, as the protocol requires) and returns a
  `Borrowed` view: pointer, shape, strides in elements, NumPy dtype, device, and the deleter run when
  the view is released. No data is copied.
- `export(ptr, shape, strides, dtype, device_id, owner)` builds a capsule over device memory that
  keeps `owner` alive until the consumer calls the deleter (or the capsule dies unconsumed).

Dtypes: DLPack codes kDLInt / kDLUInt / kDLFloat / kDLBfloat / kDLBool with their bit widths map to
NumPy (bf16 is ml_dtypes.bfloat16); fp8 and int4 have no DLPack code here and are refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_INT, _UINT, _FLOAT, _BFLOAT, _BOOL = 0, 1, 2, 4, 6


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

_api = ctypes.pythonapi
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, _CAPSULE_DESTRUCTOR]
# PyCapsule_GetPointer on a raw capsule pointer (inside the capsule's destructor), with the GIL held.
_GET_RAW = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_GetPointer", _api))

# The names live as long as the module: the capsule keeps a pointer to its name.
_NAME = b"dltensor"
_USED = b"used_dltensor"


class DLPackError(ValueError):
    """A DLPack tensor this runtime cannot take (another device type, an unsupported dtype)."""


def numpy_dtype_of(code: int, bits: int, lanes: int) -> np.dtype:
    if lanes != 1:
        raise DLPackError(f"DLPack vector dtypes ({lanes} lanes) are not supported")
    if code == _BFLOAT and bits == 16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    kind = {_INT: "i", _UINT: "u", _FLOAT: "f", _BOOL: "b"}.get(code)
    if kind is None or bits % 8 or (kind == "b" and bits != 8):
        raise DLPackError(f"DLPack dtype (code {code}, {bits} bits) is not supported")
    return np.dtype(f"{kind}{bits // 8}") if kind != "b" else np.dtype(np.bool_)


def dlpack_dtype_of(dt: np.dtype) -> tuple[int, int]:
    dt = np.dtype(dt)
    if dt.name == "bfloat16":
        return _BFLOAT, 16
    code = {"i": _INT, "u": _UINT, "f": _FLOAT, "b": _BOOL}.get(dt.kind)
    if code is None:
        raise DLPackError(f"{dt} has no DLPack dtype")
    return code, dt.itemsize * 8


@dataclass
class Borrowed:
    """Memory another library owns, taken from a DLPack capsule; `release()` (or collection) runs
    the producer's deleter."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    dtype: np.dtype
    device_type: int
    device_id: int
    _managed: int = 0

    def release(self) -> None:
        if self._managed:
            m, self._managed = self._managed, 0
            managed = ctypes.cast(m, ctypes.POINTER(DLManagedTensor))
            if managed.contents.deleter:
                managed.contents.deleter(managed)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.release()


def consume(obj: Any, stream: int | None) -> Borrowed:
    """Take `obj`'s memory through `obj.__dlpack__(stream=stream)` (no copy)."""
    try:
        capsule = obj.__dlpack__(stream=stream) if stream is not None else obj.__dlpack__()
    except TypeError:
        capsule = obj.__dlpack__()
    try:
        ptr = _api.PyCapsule_GetPointer(capsule, _NAME)
    except ValueError:  # another capsule name: already consumed, or not DLPack
        ptr = None
    if not ptr:
        raise DLPackError("__dlpack__ did not return an unconsumed 'dltensor' capsule")
    managed = ctypes.cast(ptr, ctypes.POINTER(DLManagedTensor)).contents
    t = managed.dl_tensor
    if _api.PyCapsule_SetName(capsule, _USED) != 0:
        raise DLPackError("cannot mark the DLPack capsule as consumed")
    out = Borrowed(0, (), (), np.dtype(np.uint8), int(t.device.device_type), int(t.device.device_id), int(ptr))
    ndim = int(t.ndim)
    shape = tuple(int(t.shape[i]) for i in range(ndim))
    out.dtype = numpy_dtype_of(int(t.dtype.code), int(t.dtype.bits), int(t.dtype.lanes))
    if t.strides:
        strides = tuple(int(t.strides[i]) for i in range(ndim))
    else:  # NULL strides: compact row-major
        acc, rev = 1, []
        for n in reversed(shape):
            rev.append(acc)
            acc *= n
        strides = tuple(reversed(rev))
    out.ptr = int(t.data or 0) + int(t.byte_offset)
    out.shape, out.strides = shape, strides
    return out


# ---------------------------------------------------------------- producing capsules

_live: dict[int, tuple[Any, Any]] = {}  # managed address -> (owner, ctypes storage), until deleted
_live_lock = threading.Lock()


@_DELETER
def _delete(managed: Any) -> None:
    addr = ctypes.cast(managed, ctypes.c_void_p).value
    with _live_lock:
        _live.pop(addr or 0, None)


@_CAPSULE_DESTRUCTOR
def _capsule_died(capsule: int) -> None:
    # An unconsumed capsule still owns its tensor; a consumed one was renamed and is the consumer's.
    if _api.PyCapsule_IsValid(capsule, _NAME):
        addr = _GET_RAW(capsule, _NAME)
        with _live_lock:
            _live.pop(addr or 0, None)


def export(ptr: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype: np.dtype, device_id: int,
           owner: Any) -> Any:
    """A 'dltensor' capsule over device memory at ptr (strides in elements); `owner` stays alive
    until the consumer's deleter call."""
    code, bits = dlpack_dtype_of(dtype)
    ndim = len(shape)
    shape_arr = (ctypes.c_int64 * max(1, ndim))(*shape)
    strides_arr = (ctypes.c_int64 * max(1, ndim))(*strides)
    managed = DLManagedTensor()
    managed.dl_tensor = DLTensor(ctypes.c_void_p(ptr), DLDevice(KDL_CUDA, device_id), ndim,
                                 DLDataType(code, bits, 1), shape_arr, strides_arr, 0)
    managed.manager_ctx = None
    managed.deleter = _delete
    addr = ctypes.addressof(managed)
    with _live_lock:
        _live[addr] = (owner, (managed, shape_arr, strides_arr))
    return _api.PyCapsule_New(addr, _NAME, _capsule_died)


def live_exports() -> int:
    """Capsules exported and not yet released (tests check that consumers release them)."""
    with _live_lock:
        return len(_live)
