"""Arrays in CUDA device memory, exchanged with other GPU libraries without copies.

`DeviceArray` is what `@jit` functions on the cuda target return when they were called with device
arrays (NumPy in, NumPy out; device in, device out, as in JAX or PyTorch): a pointer, a shape, a
NumPy dtype (bf16 as ml_dtypes.bfloat16), strides in elements and the object that owns the memory
(a tessera `DeviceBuffer`, freed when the array is collected, or another library's tensor). It
speaks both exchange protocols:

- `__dlpack__(stream=None)` / `__dlpack_device__()`: a DLPack capsule (kDLCUDA, device 0) that keeps
  the array's memory alive until the consumer is done (`torch.from_dlpack(y)`, `cupy.from_dlpack(y)`);
  bf16 travels as kDLBfloat;
- `__cuda_array_interface__` (version 3): for consumers that read it (`cupy.asarray(y)`, Numba);
  it has no bf16 type string, so bf16 arrays go through DLPack.

`numpy()` copies to the host (after the stream that produced the array has finished).

`as_device_array(obj)` takes any object with `__dlpack__` on a CUDA device (PyTorch, CuPy, JAX
tensors; DLPack is tried first) or `__cuda_array_interface__` and returns a DeviceArray over the same
memory, keeping `obj` (or its DLPack capsule's deleter) alive. Nothing is copied; a tensor on another
device type, on a device other than 0, or of a dtype Tessera has no name for is an error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tessera.runtime import dlpack

_CAI_BFLOAT = "<V2"


class DeviceArrayError(ValueError):
    """An object that cannot be used as a device array (another device, an unsupported dtype)."""


class DeviceArray:
    """A strided array in the memory of CUDA device 0 (see the module docstring)."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, strides: tuple[int, ...] | None = None,
                 owner: Any = None, stream: Any = None) -> None:
        self.ptr = int(ptr)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.strides = tuple(int(s) for s in strides) if strides is not None else _contiguous(self.shape)
        self.owner = owner  # keeps the memory alive (a DeviceBuffer, a borrowed DLPack tensor, a tensor)
        self.stream = stream  # the Stream whose work produces the contents (None: the default stream)
        self.device_id = 0

    # -- array properties

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def is_c_contiguous(self) -> bool:
        return all(s == c for n, s, c in zip(self.shape, self.strides, _contiguous(self.shape)) if n > 1)

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, ptr=0x{self.ptr:x})"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a rank-0 device array")
        return self.shape[0]

    # -- copies

    def numpy(self) -> np.ndarray:
        """A host copy (waits for the work that produces the array)."""
        from tessera.runtime.cuda import _call, device

        device()
        self.wait()
        if self.size == 0:
            return np.empty(self.shape, self.dtype)
        lo, hi = self.span()
        raw = np.empty(hi - lo, np.uint8)
        _call("cuMemcpyDtoH", raw.ctypes.data, lo, hi - lo)
        view = np.ndarray(self.shape, self.dtype, buffer=raw, offset=self.ptr - lo,
                          strides=tuple(s * self.itemsize for s in self.strides))
        return np.ascontiguousarray(view)

    def span(self) -> tuple[int, int]:
        """The device addresses [lo, hi) the elements occupy."""
        if self.size == 0:
            return self.ptr, self.ptr
        lo = sum(min(0, (n - 1) * s) for n, s in zip(self.shape, self.strides)) * self.itemsize
        hi = sum(max(0, (n - 1) * s) for n, s in zip(self.shape, self.strides)) * self.itemsize + self.itemsize
        return self.ptr + lo, self.ptr + hi

    def wait(self) -> None:
        """Block until the stream that produces this array has finished."""
        if self.stream is not None:
            self.stream.synchronize()

    @staticmethod
    def from_numpy(a: np.ndarray) -> DeviceArray:
        """A device copy of a host array (contiguous), owning its allocation."""
        from tessera.runtime.cuda import device

        a = np.ascontiguousarray(a)
        buf = device().to_device(a)
        return DeviceArray(buf.ptr, a.shape, a.dtype, owner=buf)

    # -- exchange protocols

    def __dlpack_device__(self) -> tuple[int, int]:
        return dlpack.KDL_CUDA, self.device_id

    def __dlpack__(self, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        if copy:
            raise BufferError("tessera device arrays are exported without copies (copy=True is not supported)")
        if stream is not None and stream != -1:
            self.wait()  # the consumer's stream may read right away
        return dlpack.export(self.ptr, self.shape, self.strides, self.dtype, self.device_id, self)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        typestr = _CAI_BFLOAT if self.dtype.name == "bfloat16" else self.dtype.str
        strides = None if self.is_c_contiguous else tuple(s * self.itemsize for s in self.strides)
        self.wait()
        return {"shape": self.shape, "typestr": typestr, "data": (self.ptr, False), "strides": strides,
                "version": 3, "stream": None}


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    acc, rev = 1, []
    for n in reversed(shape):
        rev.append(acc)
        acc *= max(1, n)
    return tuple(reversed(rev))


def is_device_array(obj: object) -> bool:
    """True for a DeviceArray and for other libraries' tensors on a CUDA device."""
    if isinstance(obj, DeviceArray):
        return True
    if isinstance(obj, np.ndarray):
        return False
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is not None and hasattr(obj, "__dlpack__"):
        try:
            kind = int(dev()[0])
        except Exception:  # noqa: BLE001 - not a usable DLPack object
            return False
        return kind in (dlpack.KDL_CUDA, dlpack.KDL_CUDA_MANAGED)
    return hasattr(obj, "__cuda_array_interface__")


def as_device_array(obj: object, stream: int | None = None) -> DeviceArray:
    """obj's device memory as a DeviceArray, without a copy (see the module docstring). `stream`:
    the consumer stream handed to `__dlpack__` (default: the legacy default stream, 1)."""
    if isinstance(obj, DeviceArray):
        return obj
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        try:
            b = dlpack.consume(obj, 1 if stream is None else stream)
        except dlpack.DLPackError as ex:
            raise DeviceArrayError(str(ex)) from None
        except Exception as ex:  # noqa: BLE001 - the producer refused (e.g. a tensor that requires grad)
            raise DeviceArrayError(f"{type(obj).__name__}.__dlpack__ failed: {ex}") from None
        if b.device_type not in (dlpack.KDL_CUDA, dlpack.KDL_CUDA_MANAGED):
            raise DeviceArrayError(f"a {type(obj).__name__} on DLPack device type {b.device_type} is not in CUDA "
                                   "memory")
        if b.device_id != 0:
            raise DeviceArrayError(f"a {type(obj).__name__} on CUDA device {b.device_id}: Tessera runs on device 0")
        return DeviceArray(b.ptr, b.shape, b.dtype, b.strides, owner=(b, obj))
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise DeviceArrayError(f"a {type(obj).__name__} is neither a NumPy array nor a device array")
    return _from_cai(obj, cai)


def _from_cai(obj: object, cai: dict[str, Any]) -> DeviceArray:
    typestr = str(cai["typestr"])
    if typestr == _CAI_BFLOAT:
        raise DeviceArrayError("a __cuda_array_interface__ of 2-byte void elements is ambiguous; pass bf16 "
                               "tensors through DLPack")
    try:
        dt = np.dtype(typestr)
    except TypeError:
        raise DeviceArrayError(f"__cuda_array_interface__ type '{typestr}' is not supported") from None
    shape = tuple(int(n) for n in cai["shape"])
    ptr = int(cai["data"][0] or 0)
    raw = cai.get("strides")
    if raw is None:
        strides = _contiguous(shape)
    else:
        if any(int(s) % dt.itemsize for s in raw):
            raise DeviceArrayError(f"__cuda_array_interface__ strides {tuple(raw)} are not whole elements")
        strides = tuple(int(s) // dt.itemsize for s in raw)
    stream = cai.get("stream")
    if stream not in (None, 0, 1, 2):  # the producer's stream: wait for it before reading
        from tessera.runtime.cuda import _call, _load_driver

        _call("cuStreamSynchronize", _load_driver().CUstream(int(stream)))
    return DeviceArray(ptr, shape, dt, strides, owner=obj)


__all__ = ["DeviceArray", "DeviceArrayError", "as_device_array", "is_device_array"]
