"""The CUDA runtime: tile kernels -> Target IR -> PTX -> the driver's JIT -> launches on NumPy arrays.

Built on cuda-python's driver API (`cuda.bindings.driver`, or `cuda.cuda` in older releases), an
optional dependency imported on first use: without it, or without a driver or device, `available()`
says why in one line and every entry point raises `CudaError` with that line.

- `CudaDevice` (one per process, `device()`): cuInit, device 0, its primary context; the PTX
  architecture from its compute capability (sm_90a on Hopper, sm_80 PTX elsewhere, which the driver
  compiles for the GPU at hand); device buffers, streams and events.
- `CudaRuntime.compile(kernels)` lowers each kernel for the device's architecture, emits one PTX
  module (tessera/codegen/ptx.py) and loads it (cuModuleLoadData): as a cubin assembled by ptxas and
  cached on disk when ptxas is available (tessera/runtime/cubin.py), else as PTX that the driver
  JIT-compiles (and caches); loaded sets are kept in memory, keyed by the kernels' text and the
  architecture.
- `CudaKernels.launch_device(name, views)` launches a kernel on device memory (`DeviceView`: a
  pointer, the extents and the strides in elements - any strided view, as on the CPU): one CTA per
  program in a 1-D grid, 32 * warps threads. `launch(name, arrays)` does the same for NumPy arrays:
  the memory of every array (the span its elements cover; arrays whose spans overlap share one
  allocation) is copied to the device, the kernel runs, and the spans of out/inout arrays are
  copied back.
- `compile_plan(plan, kernels)` gives a `CudaCompiledFunction`: a Schedule IR plan run with every
  buffer on the device - NumPy parameters copied in once, intermediates never leave the device,
  results copied out at the end (host prints copy their buffers out when they run). Called with
  device arrays (tessera/runtime/device_array.py: DLPack or `__cuda_array_interface__` tensors of
  PyTorch, CuPy, ...) it reads them in place and returns `DeviceArray` results without waiting;
  kernels go to the thread's current stream (tessera/runtime/cuda_streams.py).

Every driver call is checked: a failure raises `CudaError` naming the call, the driver's error and
the kernel involved.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.diagnostics import Diagnostic, TesseraRuntimeError
from tessera.dtypes import numpy_dtype
from tessera.ir.schedule.ops import Buffer, HostPrint, KernelCall, Plan
from tessera.ir.tile.ops import Kernel, TensorRefType
from tessera.source import Span

_SPAN = Span("<cuda>", 1, 1, 1, 1)


class CudaError(TesseraRuntimeError):
    """A CUDA failure (no driver or device, a failed driver call, bad launch arguments): a run-time
    error (exit code 3), with a message naming the driver call and the kernel."""

    def __init__(self, message: str) -> None:
        super().__init__(Diagnostic("E-RUNTIME", message, _SPAN))
        self.message = message


# ---------------------------------------------------------------- the driver API

_driver: Any = None
_import_error: str | None = None


def _load_driver() -> Any:
    global _driver, _import_error
    if _driver is not None:
        return _driver
    if _import_error is not None:
        raise CudaError(_import_error)
    try:
        from cuda.bindings import driver as drv  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cuda as drv  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            _import_error = ("the cuda target needs the cuda-python package (pip install 'tessera[cuda]'), "
                             "which is not installed")
            raise CudaError(_import_error) from None
    _driver = drv
    return drv


def _error_text(drv: Any, err: Any) -> str:
    try:
        _, name = drv.cuGetErrorName(err)
        _, text = drv.cuGetErrorString(err)
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return f"{name}: {text}"
    except Exception:  # noqa: BLE001 - the error's own name is enough
        return str(err)


def _call(name: str, *args: Any, kernel: str | None = None) -> Any:
    """drv.<name>(*args), checked: the results after the error code (one value, a tuple or None)."""
    drv = _load_driver()
    where = f" (kernel {kernel})" if kernel else ""
    try:
        out = getattr(drv, name)(*args)
    except CudaError:
        raise
    except Exception as ex:  # noqa: BLE001 - e.g. the driver library cannot be loaded
        if "NotFound" in type(ex).__name__:
            raise CudaError("no NVIDIA driver found (libcuda.so cannot be loaded)") from None
        first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
        raise CudaError(f"{name} failed{where}: {first}") from None
    err, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
    if int(err) != 0:
        raise CudaError(f"{name} failed{where}: {_error_text(drv, err)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


# ---------------------------------------------------------------- the device


class CudaDevice:
    """Device 0 with its primary context current on the calling thread."""

    def __init__(self, ordinal: int = 0) -> None:
        from tessera.codegen.ptx import arch_for_capability

        drv = _load_driver()
        _call("cuInit", 0)
        count = _call("cuDeviceGetCount")
        if int(count) <= ordinal:
            raise CudaError(f"no CUDA device {ordinal}: the driver reports {int(count)} device(s)")
        self.dev = _call("cuDeviceGet", ordinal)
        self.ctx = _call("cuDevicePrimaryCtxRetain", self.dev)
        self.make_current()
        attr = drv.CUdevice_attribute
        self.capability = (int(_call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.dev)),
                           int(_call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.dev)))
        if self.capability < (8, 0):
            raise CudaError(f"CUDA device {ordinal} has compute capability {self.capability[0]}.{self.capability[1]}; "
                            "Tessera's PTX needs 8.0 (Ampere) or newer")
        raw = _call("cuDeviceGetName", 256, self.dev)
        self.name = (raw.split(b"\0")[0].decode() if isinstance(raw, bytes) else str(raw)).strip()
        self.arch = arch_for_capability(*self.capability)

    def make_current(self) -> None:
        _call("cuCtxSetCurrent", self.ctx)

    # -- memory, streams, events

    def alloc(self, nbytes: int, kernel: str | None = None) -> DeviceBuffer:
        return DeviceBuffer(self, int(_call("cuMemAlloc", max(1, nbytes), kernel=kernel)), nbytes)

    def to_device(self, a: np.ndarray, kernel: str | None = None) -> DeviceBuffer:
        a = np.ascontiguousarray(a)
        buf = self.alloc(a.nbytes, kernel)
        if a.nbytes:
            _call("cuMemcpyHtoD", buf.ptr, a.ctypes.data, a.nbytes, kernel=kernel)
        return buf

    def synchronize(self, kernel: str | None = None) -> None:
        _call("cuCtxSynchronize", kernel=kernel)

    def stream(self) -> Any:
        return _call("cuStreamCreate", 0)

    def event(self) -> Any:
        return _call("cuEventCreate", 0)

    def record(self, event: Any, stream: Any = 0) -> None:
        _call("cuEventRecord", event, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        _call("cuEventSynchronize", end)
        return float(_call("cuEventElapsedTime", start, end))


class DeviceBuffer:
    """One device allocation, freed by `free()` (or when collected); `owned=False` wraps memory
    another object owns (a device-array argument), which `free()` leaves alone."""

    def __init__(self, device: CudaDevice, ptr: int, nbytes: int, owned: bool = True) -> None:
        self.device = device
        self.ptr = ptr
        self.nbytes = nbytes
        self.owned = owned

    def copy_from(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        if nbytes:
            _call("cuMemcpyHtoD", self.ptr + offset, host_ptr, nbytes, kernel=kernel)

    def copy_to(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        if nbytes:
            _call("cuMemcpyDtoH", host_ptr, self.ptr + offset, nbytes, kernel=kernel)

    def fill_bytes(self, value: int, stream: Any = None) -> None:
        if self.nbytes:
            if stream is None:
                _call("cuMemsetD8", self.ptr, value, self.nbytes)
            else:
                _call("cuMemsetD8Async", self.ptr, value, self.nbytes, stream)

    def to_host(self, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0) -> np.ndarray:
        out = np.empty(shape, dtype)
        self.copy_to(out.ctypes.data, out.nbytes, offset)
        return out

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            if self.owned:
                _call("cuMemFree", ptr)

    def __del__(self) -> None:
        if self.ptr and not sys.is_finalizing():
            with contextlib.suppress(Exception):  # never raise from a finaliser
                self.free()


_device: CudaDevice | None = None
_device_error: str | None = None
_device_lock = threading.Lock()


def device() -> CudaDevice:
    """The process-wide CUDA device (created on first use)."""
    global _device, _device_error
    with _device_lock:
        if _device is None:
            if _device_error is not None:
                raise CudaError(_device_error)
            try:
                _device = CudaDevice()
            except CudaError as ex:
                _device_error = ex.message
                raise
        else:
            _device.make_current()
        return _device


def available() -> str | None:
    """None when CUDA kernels can run here, else one line saying why not."""
    try:
        device()
    except CudaError as ex:
        return ex.message
    return None


# ---------------------------------------------------------------- kernels


@dataclass(frozen=True)
class DeviceView:
    """A strided view of device memory: element (i0, ...) at ptr + sum(i * stride) * itemsize."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    dtype: np.dtype


@dataclass
class _Entry:
    kernel: Kernel
    func: Any
    threads: int
    shared: int = 0  # bytes of dynamic shared memory per CTA


class CudaKernels:
    """A set of kernels in one loaded PTX module."""

    def __init__(self, dev: CudaDevice, kernels: Sequence[Kernel], ptx: str, arch: str) -> None:
        self.device = dev
        self.ptx = ptx
        self.arch = arch
        names = ", ".join(k.name for k in kernels)
        self.module, self.loaded_from = _load_module(dev, ptx, names)
        self._entries: dict[str, _Entry] = {}
        from tessera.codegen.ptx import dynamic_shared_bytes

        dynamic = dynamic_shared_bytes(ptx)
        for k in kernels:
            func = _call("cuModuleGetFunction", self.module, k.name.encode(), kernel=k.name)
            shared = dynamic.get(k.name, 0)
            if shared:  # more than 48 KiB of shared memory: the kernel must opt in
                attr = _load_driver().CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _call("cuFuncSetAttribute", func, attr, shared, kernel=k.name)
            self._entries[k.name] = _Entry(k, func, k.schedule.warps * 32, shared)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def kernel(self, name: str) -> Kernel:
        return self._entry(name).kernel

    def _entry(self, name: str) -> _Entry:
        e = self._entries.get(name)
        if e is None:
            raise CudaError(f"no compiled kernel '{name}' (have {', '.join(self._entries)})")
        return e

    def launch_device(self, name: str, views: Sequence[DeviceView], stream: Any = 0) -> None:
        """Launch kernel `name` over its whole grid on device views (asynchronous on `stream`)."""
        from tessera.ir.tile_to_target_gpu import gpu_abi

        e = self._entry(name)
        k = e.kernel
        if len(views) != len(k.params):
            raise CudaError(f"kernel {name} takes {len(k.params)} arrays, got {len(views)}")
        for i, (p, v) in enumerate(zip(k.params, views)):
            _check_view(name, i, p.hint, p.ty, v)  # type: ignore[arg-type]
        env = {sym: int(views[i].shape[ax]) for sym, (i, ax) in k.extents.items()}
        grid = [d.evaluate(env) for d in k.grid]
        total = math.prod(grid)
        if total <= 0:
            return
        if total >= 2 ** 31:
            raise CudaError(f"kernel {name}: {total} programs exceed the 2^31 - 1 CTAs of a 1-D grid")
        values: list[ctypes.c_uint64 | ctypes.c_int64] = []
        for p in gpu_abi(k):
            if p.kind == "ptr":
                values.append(ctypes.c_uint64(views[p.tensor].ptr))
            elif p.kind == "extent":
                values.append(ctypes.c_int64(views[p.tensor].shape[p.axis]))
            elif p.kind == "stride":
                values.append(ctypes.c_int64(views[p.tensor].strides[p.axis]))
            elif p.kind == "grid":
                values.append(ctypes.c_int64(grid[p.axis]))
        ptrs = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        _call("cuLaunchKernel", e.func, total, 1, 1, e.threads, 1, 1, e.shared, stream, ctypes.addressof(ptrs), 0,
              kernel=name)

    def launch(self, name: str, arrays: Sequence[Any]) -> None:
        """Run kernel `name` on NumPy arrays (any views): copy in, launch, wait, copy out. A DeviceArray
        among them (tessera/runtime/device_array.py) is used in place: read and written on the device."""
        from tessera.runtime.device_array import DeviceArray

        e = self._entry(name)
        k = e.kernel
        if len(arrays) != len(k.params):
            raise CudaError(f"kernel {name} takes {len(k.params)} arrays, got {len(arrays)}")
        host = [i for i, a in enumerate(arrays) if not isinstance(a, DeviceArray)]
        for i in host:
            _check_array(name, i, k.params[i].hint, k.params[i].ty, k.roles[i], arrays[i])  # type: ignore[arg-type]
        dev = self.device
        bufs: list[tuple[list[int], int, int, DeviceBuffer]] = []
        views: list[DeviceView | None] = [None] * len(arrays)
        try:
            for members, lo, hi in host_clusters([arrays[i] for i in host]):
                members = [host[m] for m in members]
                buf = dev.alloc(hi - lo, kernel=name)
                bufs.append((members, lo, hi, buf))
                buf.copy_from(lo, hi - lo, kernel=name)
                for i in members:
                    a = arrays[i]
                    views[i] = DeviceView(buf.ptr + (_address(a) - lo), a.shape,
                                          tuple(s // a.itemsize for s in a.strides), a.dtype)
            for i, a in enumerate(arrays):
                if views[i] is None:
                    a.wait()  # the stream that produces it has finished
                    views[i] = DeviceView(a.ptr, a.shape, a.strides, a.dtype)
            self.launch_device(name, views)  # type: ignore[arg-type]
            dev.synchronize(kernel=name)
            for members, lo, hi, buf in bufs:
                if any(k.roles[i] in ("out", "inout") for i in members):
                    buf.copy_to(lo, hi - lo, kernel=name)
        finally:
            for *_, buf in bufs:
                buf.free()


def _load_module(dev: CudaDevice, ptx: str, names: str) -> tuple[Any, str]:
    """The module of `ptx` loaded on the device, and "cubin" or "ptx" for how: a cubin assembled by
    ptxas (cached on disk) when ptxas is available, else the PTX, JIT-compiled by the driver."""
    from tessera.runtime.cubin import arch_of_device, default_compiler

    compiler = default_compiler()
    arch = arch_of_device(*dev.capability)
    cubin = compiler.cubin(ptx, arch, names)
    if cubin is None:
        return _call("cuModuleLoadData", ptx.encode() + b"\0", kernel=names), "ptx"
    try:
        return _call("cuModuleLoadData", cubin, kernel=names), "cubin"
    except CudaError:
        compiler.discard(ptx, arch)  # a cached cubin the driver refuses: assemble it again
        cubin = compiler.cubin(ptx, arch, names)
        return _call("cuModuleLoadData", cubin, kernel=names), "cubin"


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def host_clusters(arrays: Sequence[np.ndarray]) -> list[tuple[list[int], int, int]]:
    """The host memory the arrays' elements occupy, as (array indices, first byte, end byte) per
    group of arrays whose spans overlap (so that they share one device copy)."""
    spans = []
    for a in arrays:
        if a.size == 0:
            spans.append((_address(a), _address(a)))
            continue
        lo = sum(min(0, (n - 1) * s) for n, s in zip(a.shape, a.strides))
        hi = sum(max(0, (n - 1) * s) for n, s in zip(a.shape, a.strides)) + a.itemsize
        spans.append((_address(a) + lo, _address(a) + hi))
    out: list[tuple[list[int], int, int]] = []
    for i in sorted(range(len(arrays)), key=lambda i: spans[i][0]):
        lo, hi = spans[i]
        if out and lo < out[-1][2]:
            out[-1][0].append(i)
            out[-1] = (out[-1][0], out[-1][1], max(out[-1][2], hi))
        else:
            out.append(([i], lo, hi))
    return out


def _describe(kernel: str, i: int, hint: str) -> str:
    return f"kernel {kernel}: argument {i} ({hint or '?'})"


def _check_view(kernel: str, i: int, hint: str, ty: TensorRefType, v: DeviceView) -> None:
    want = np.dtype(numpy_dtype(ty.dtype))
    if np.dtype(v.dtype) != want:
        raise CudaError(f"{_describe(kernel, i, hint)} has dtype {v.dtype}, the kernel takes {ty.dtype} ({want})")
    if len(v.shape) != ty.rank or len(v.strides) != ty.rank:
        raise CudaError(f"{_describe(kernel, i, hint)} has rank {len(v.shape)}, the kernel takes rank {ty.rank}")


def _check_array(kernel: str, i: int, hint: str, ty: TensorRefType, role: str, a: np.ndarray) -> None:
    what = _describe(kernel, i, hint)
    if not isinstance(a, np.ndarray):
        raise CudaError(f"{what} must be a NumPy array, got {type(a).__name__}")
    want = np.dtype(numpy_dtype(ty.dtype))
    if a.dtype != want:
        raise CudaError(f"{what} has dtype {a.dtype}, the kernel takes {ty.dtype} ({want})")
    if not a.dtype.isnative:
        raise CudaError(f"{what} is not in native byte order")
    if a.ndim != ty.rank:
        raise CudaError(f"{what} has rank {a.ndim}, the kernel takes rank {ty.rank}")
    if any(s % a.itemsize for s in a.strides):
        raise CudaError(f"{what} has strides {a.strides} that are not whole elements")
    if role in ("out", "inout") and not a.flags.writeable:
        raise CudaError(f"{what} is written by the kernel but the array is read-only")


# ---------------------------------------------------------------- compiling


def emit_kernels_ptx(kernels: Sequence[Kernel], arch: str) -> str:
    """The PTX module of a set of tile kernels for `arch` (no device needed)."""
    from tessera.codegen.ptx import cuda_target_info, emit_ptx
    from tessera.ir.target.ops import Module
    from tessera.ir.target.verify import verify_module
    from tessera.ir.tile_to_target_gpu import lower_kernel_gpu

    info = cuda_target_info(arch)
    module = Module([lower_kernel_gpu(k, info) for k in kernels])
    verify_module(module)
    return emit_ptx(module, arch)


class CudaRuntime:
    """Compiles tile kernels for the process's CUDA device; holds the loaded modules."""

    def __init__(self, dev: CudaDevice | None = None, arch: str | None = None) -> None:
        self.device = dev if dev is not None else device()
        self.arch = arch or self.device.arch
        self._loaded: dict[str, CudaKernels] = {}
        self._lock = threading.Lock()

    def compile(self, kernels: Sequence[Kernel]) -> CudaKernels:
        from tessera.ir.tile.printer import print_kernel
        from tessera.ir.tile.verify import verify_kernel
        from tessera.runtime.cache import cache_key

        names = [k.name for k in kernels]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel names must be unique within one compile: {names}")
        for k in kernels:
            verify_kernel(k)
        key = cache_key(["tessera-cuda-1", self.arch, *(print_kernel(k) for k in kernels)])
        with self._lock:
            hit = self._loaded.get(key)
        if hit is not None:
            return hit
        compiled = CudaKernels(self.device, kernels, emit_kernels_ptx(kernels, self.arch), self.arch)
        with self._lock:
            self._loaded[key] = compiled
        return compiled


_runtime: CudaRuntime | None = None


def default_runtime() -> CudaRuntime:
    global _runtime
    if _runtime is None:
        _runtime = CudaRuntime()
    return _runtime


# ---------------------------------------------------------------- running plans


class CudaCompiledFunction:
    """A compiled plan whose buffers live on the device (see the module docstring); called like the
    CPU's CompiledFunction: NumPy arrays in, a list of fresh NumPy arrays out."""

    def __init__(self, plan: Plan, kernels: list[Kernel], compiled: CudaKernels, graph: Any = None,
                 poison: bool = False) -> None:
        from tessera.runtime.executor import CompiledFunction

        self.plan = plan
        self.kernels = kernels
        self.compiled = compiled
        self.graph = graph
        self.poison = poison  # fill fresh buffers with 0xFF bytes (NaN, -1) so unwritten elements show
        self.out = None
        # Host prints format their buffers exactly as the CPU path does.
        self._host = CompiledFunction(plan, kernels, compiled, graph)
        self._dtypes = [np.dtype(numpy_dtype(b.dtype)) for b in plan.params]

    @property
    def name(self) -> str:
        return self.plan.name

    def __call__(self, *arrays: Any, stream: Any = None) -> list[Any]:
        """Run on `stream` (default: the thread's current stream, tessera/runtime/cuda_streams.py).
        NumPy arguments: copied in, NumPy results after the stream finishes. Device arrays (any
        argument): read in place, DeviceArray results returned without waiting."""
        from tessera.runtime.cuda_streams import current_stream
        from tessera.runtime.device_array import DeviceArray

        if stream is None:
            stream = current_stream()
        handle = stream.handle if stream is not None else 0
        if any(isinstance(a, DeviceArray) for a in arrays):
            return self._call_device(arrays, stream, handle)
        state = self.upload(*arrays)
        try:
            state.run(handle)
            return state.results(stream)
        finally:
            state.free()

    def _call_device(self, arrays: Sequence[Any], stream: Any, handle: Any) -> list[Any]:
        from tessera.runtime.device_array import DeviceArray
        from tessera.runtime.executor import ExecutionError

        plan = self.plan
        dev = self.compiled.device
        if len(arrays) != len(plan.params):
            raise ExecutionError(f"@{plan.name} takes {len(plan.params)} arguments, {len(arrays)} were given")
        state = PlanState(self)
        try:
            for i, (b, a, dt) in enumerate(zip(plan.params, arrays, self._dtypes)):
                if a.dtype != dt:
                    raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must be {b.dtype}, got {a.dtype}")
                if tuple(a.shape) != tuple(b.shape):
                    raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must have shape {b.shape}, "
                                         f"got {tuple(a.shape)}")
                if isinstance(a, DeviceArray):
                    if not a.is_c_contiguous:
                        raise CudaError(f"@{plan.name} argument {i} ({b.name}) is a strided device array "
                                        f"(strides {a.strides}); device arguments are read in place and must be "
                                        "C-contiguous (e.g. .contiguous() in PyTorch)")
                    if a.stream is not None and a.stream is not stream:
                        a.wait()
                    state.roots[b] = DeviceBuffer(dev, a.ptr, a.nbytes, owned=False)
                else:
                    host = np.ascontiguousarray(a)  # pageable: the async copy has read it when it returns
                    state.roots[b] = _alloc_async(dev, host.nbytes, handle)
                    if host.nbytes:
                        _call("cuMemcpyHtoDAsync", state.roots[b].ptr, host.ctypes.data, host.nbytes, handle)
            results = set(plan.results)
            for b in plan.buffers:
                if b.base is None and b.kind != "param":
                    nbytes = math.prod(b.shape) * np.dtype(numpy_dtype(b.dtype)).itemsize
                    # temporaries are stream-ordered: allocated and freed in the stream's order
                    state.roots[b] = dev.alloc(nbytes) if b in results else _alloc_async(dev, nbytes, handle)
                    if self.poison:
                        state.roots[b].fill_bytes(0xFF, handle)
            state.run(handle)
            outs: list[Any] = []
            for b in plan.results:
                buf = state.roots.get(b)
                if buf is None:  # a buffer returned twice: the second result is a copy of the first
                    buf = _copy_on_device(dev, outs[plan.results.index(b)].owner, handle)
                elif b.kind == "param" or isinstance(buf, _AsyncBuffer):
                    buf = _copy_on_device(dev, buf, handle)  # an argument: never hand it out or alias it
                else:
                    del state.roots[b]  # the result owns it now
                outs.append(DeviceArray(buf.ptr, tuple(b.shape), np.dtype(numpy_dtype(b.dtype)), owner=buf,
                                        stream=stream))
            return outs
        finally:
            state.free_after(handle)

    def upload(self, *arrays: np.ndarray) -> PlanState:
        """The plan's buffers on the device, the parameters copied in: `run()` it (as often as
        wanted - benchmarks time that), read `results()`, then `free()`."""
        from tessera.runtime.executor import ExecutionError

        plan = self.plan
        if len(arrays) != len(plan.params):
            raise ExecutionError(f"@{plan.name} takes {len(plan.params)} arguments, {len(arrays)} were given")
        state = PlanState(self)
        try:
            for i, (b, a, dt) in enumerate(zip(plan.params, arrays, self._dtypes)):
                a = np.asarray(a)
                if a.dtype != dt:
                    raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must be {b.dtype}, got {a.dtype}")
                if a.shape != b.shape:
                    raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must have shape {b.shape}, "
                                         f"got {a.shape}")
                state.roots[b] = self.compiled.device.to_device(a)
            for b in plan.buffers:
                if b.base is None and b.kind != "param":
                    nbytes = math.prod(b.shape) * np.dtype(numpy_dtype(b.dtype)).itemsize
                    state.roots[b] = self.compiled.device.alloc(nbytes)
                    if self.poison:
                        state.roots[b].fill_bytes(0xFF)
        except BaseException:
            state.free()
            raise
        return state

    @staticmethod
    def _to_host(buf: DeviceBuffer, b: Buffer) -> np.ndarray:
        return buf.to_host(tuple(b.shape), np.dtype(numpy_dtype(b.dtype)))


class PlanState:
    """One call's device buffers of a CudaCompiledFunction (see `upload`)."""

    def __init__(self, fn: CudaCompiledFunction) -> None:
        self.fn = fn
        self.roots: dict[Buffer, DeviceBuffer] = {}

    def run(self, stream: Any = 0) -> None:
        """Launch the plan's kernels in order on `stream` (host prints wait for the device)."""
        fn = self.fn
        for step in fn.plan.steps:
            if isinstance(step, KernelCall):
                views = []
                empty_out = False
                for a in step.args:
                    lay = a.layout
                    dt = np.dtype(numpy_dtype(a.buffer.dtype))
                    views.append(DeviceView(self.roots[a.buffer.root].ptr + lay.offset * dt.itemsize,
                                            tuple(lay.shape), tuple(lay.strides), dt))
                    empty_out |= a.role == "out" and lay.size == 0
                if empty_out:
                    continue
                assert step.kernel is not None, "the plan was not lowered to Tile IR"
                if step.bounds is None:
                    fn.compiled.launch_device(step.kernel, views, stream)
                else:  # a user kernel compiled with TESSERA_DEBUG_BOUNDS=1
                    from tessera.runtime.cuda_kernels import launch_checked

                    launch_checked(fn.compiled, step, views, stream)
            elif isinstance(step, HostPrint):
                fn.compiled.device.synchronize()
                host = {b.root: fn._to_host(self.roots[b.root], b.root) for b in step.args}
                fn._host.out = fn.out
                fn._host._print(step, host)

    def results(self, stream: Any = None) -> list[np.ndarray]:
        if stream is not None:
            stream.synchronize()
        else:
            self.fn.compiled.device.synchronize(kernel=self.fn.plan.name)
        return [self.fn._to_host(self.roots[b], b) for b in self.fn.plan.results]

    def free(self) -> None:
        for buf in self.roots.values():
            buf.free()
        self.roots.clear()

    def free_after(self, stream: Any) -> None:
        """Free the buffers: stream-ordered allocations once the work queued on `stream` is done
        (no wait), the others at once."""
        for buf in self.roots.values():
            if buf.ptr and buf.owned and isinstance(buf, _AsyncBuffer):
                ptr, buf.ptr = buf.ptr, 0
                _call("cuMemFreeAsync", ptr, stream, kernel=self.fn.plan.name)
            else:
                buf.free()
        self.roots.clear()


class _AsyncBuffer(DeviceBuffer):
    """A stream-ordered allocation (cuMemAllocAsync), freed with cuMemFreeAsync by `free_after`."""


def _alloc_async(dev: CudaDevice, nbytes: int, stream: Any) -> DeviceBuffer:
    return _AsyncBuffer(dev, int(_call("cuMemAllocAsync", max(1, nbytes), stream)), nbytes)


def _copy_on_device(dev: CudaDevice, src: DeviceBuffer, stream: Any) -> DeviceBuffer:
    out = dev.alloc(src.nbytes)
    if src.nbytes:
        _call("cuMemcpyDtoDAsync", out.ptr, src.ptr, src.nbytes, stream)
    return out


def compile_plan(plan: Plan, kernels: list[Kernel], graph: Any = None) -> CudaCompiledFunction:
    """The plan's kernels compiled for the device, ready to run with device-resident buffers."""
    return CudaCompiledFunction(plan, kernels, default_runtime().compile(kernels), graph)


__all__ = ["CudaCompiledFunction", "CudaDevice", "CudaError", "CudaKernels", "CudaRuntime", "DeviceBuffer",
           "DeviceView", "PlanState", "available", "compile_plan", "default_runtime", "device", "emit_kernels_ptx",
           "host_clusters"]
