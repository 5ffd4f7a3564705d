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

The vendor-neutral half (argument blocks, NumPy launches, device-resident plans, the process's
device, loaded kernel sets) is tessera/runtime/gpu_common.py's, shared with the HIP runtime; this
module holds what is CUDA's: driver calls, modules, device arrays in place and stream-ordered
memory. Every driver call is checked: a failure raises `CudaError` naming the call, the driver's
error and the kernel involved.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.ir.schedule.ops import Plan
from tessera.ir.tile.ops import Kernel
from tessera.runtime.gpu_common import (
    DeviceBufferBase,
    DeviceView,
    GpuCompiledFunction,
    GpuDeviceBase,
    GpuKernels,
    GpuPlanState,
    GpuRuntime,
    GpuRuntimeError,
    ProcessDevice,
    host_clusters,
    launch_arguments,
)
from tessera.source import Span


class CudaError(GpuRuntimeError):
    """A CUDA failure (no driver or device, a failed driver call, bad launch arguments): a run-time
    error (exit code 3), with a message naming the driver call and the kernel."""

    span = Span("<cuda>", 1, 1, 1, 1)
    grid_unit = "CTAs"


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


class CudaDevice(GpuDeviceBase):
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


class DeviceBuffer(DeviceBufferBase):
    """One device allocation, freed by `free()` (or when collected); `owned=False` wraps memory
    another object owns (a device-array argument), which `free()` leaves alone."""

    def __init__(self, device: CudaDevice, ptr: int, nbytes: int, owned: bool = True) -> None:
        super().__init__(device, ptr, nbytes)
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

    def _release(self, ptr: int) -> None:
        if self.owned:
            _call("cuMemFree", ptr)


_device = ProcessDevice(CudaDevice, CudaError)


def device() -> CudaDevice:
    """The process-wide CUDA device (created on first use)."""
    return _device.get()


def available() -> str | None:
    """None when CUDA kernels can run here, else one line saying why not."""
    return _device.available()


# ---------------------------------------------------------------- kernels


@dataclass
class _Entry:
    kernel: Kernel
    func: Any
    threads: int
    shared: int = 0  # bytes of dynamic shared memory per CTA


class CudaKernels(GpuKernels):
    """A set of kernels in one loaded PTX module."""

    error = CudaError

    def __init__(self, dev: CudaDevice, kernels: Sequence[Kernel], ptx: str, arch: str) -> None:
        from tessera.codegen.ptx import dynamic_shared_bytes

        self.device = dev
        self.ptx = ptx
        self.arch = arch
        names = ", ".join(k.name for k in kernels)
        self.module, self.loaded_from = _load_module(dev, ptx, names)
        self._entries: dict[str, _Entry] = {}
        dynamic = dynamic_shared_bytes(ptx)
        for k in kernels:
            func = _call("cuModuleGetFunction", self.module, k.name.encode(), kernel=k.name)
            shared = dynamic.get(k.name, 0)
            if shared:  # more than 48 KiB of shared memory: the kernel must opt in
                attr = _load_driver().CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _call("cuFuncSetAttribute", func, attr, shared, kernel=k.name)
            self._entries[k.name] = _Entry(k, func, k.schedule.warps * 32, shared)

    def launch_device(self, name: str, views: Sequence[DeviceView], stream: Any = 0) -> None:
        """Launch kernel `name` over its whole grid on device views (asynchronous on `stream`)."""
        e = self._entry(name)
        args = launch_arguments(CudaError, e.kernel, views)
        if args.programs == 0:
            return
        _call("cuLaunchKernel", e.func, args.programs, 1, 1, e.threads, 1, 1, e.shared, stream, args.pointer, 0,
              kernel=name)

    def _resident(self, a: Any) -> bool:
        from tessera.runtime.device_array import DeviceArray

        return isinstance(a, DeviceArray)

    def _resident_view(self, a: Any) -> DeviceView:
        a.wait()  # the stream that produces it has finished
        return DeviceView(a.ptr, a.shape, a.strides, a.dtype)


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


class CudaRuntime(GpuRuntime[CudaKernels]):
    """Compiles tile kernels for the process's CUDA device; holds the loaded modules."""

    tag = "tessera-cuda-1"
    device: CudaDevice

    def _process_device(self) -> CudaDevice:
        return device()

    def _build(self, kernels: Sequence[Kernel]) -> CudaKernels:
        return CudaKernels(self.device, kernels, emit_kernels_ptx(kernels, self.arch), self.arch)


@functools.cache
def default_runtime() -> CudaRuntime:
    return CudaRuntime()


# ---------------------------------------------------------------- running plans


class CudaCompiledFunction(GpuCompiledFunction):
    """A compiled plan whose buffers live on the device (see the module docstring); called like the
    CPU's CompiledFunction: NumPy arrays in, a list of fresh NumPy arrays out - or device arrays in,
    device arrays out."""

    compiled: CudaKernels

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

        plan = self.plan
        dev = self.compiled.device
        self.check_count(arrays)
        state = PlanState(self)
        try:
            for i, (b, a) in enumerate(zip(plan.params, arrays)):
                self.check_argument(i, b, a)
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


class PlanState(GpuPlanState):
    """One call's device buffers of a CudaCompiledFunction called with device arrays, some of them
    stream-ordered allocations."""

    roots: dict[Any, DeviceBuffer]  # type: ignore[assignment]

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
