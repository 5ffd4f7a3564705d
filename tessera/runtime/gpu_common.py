"""What every GPU runtime shares, whatever the vendor: device views, argument checks, the kernel
argument block, running kernels on NumPy arrays and running Schedule IR plans on device buffers.

A vendor runtime (tessera/runtime/cuda.py, tessera/runtime/hip.py) supplies a device and a kernel
set with a small interface:

- `GpuDevice`: `alloc(nbytes, kernel)` -> a `GpuBuffer` (`ptr`, `copy_from`, `copy_to`,
  `fill_bytes`, `to_host`, `free`; `DeviceBufferBase` has the vendor-neutral part),
  `to_device(array)` (`GpuDeviceBase`: alloc and copy), `synchronize(kernel)`, `make_current()`;
  `ProcessDevice` holds the process's device (created on first use, a failure remembered as one
  line);
- `GpuKernels`: `device`, `kernel(name)` and `launch_device(name, views, stream)`; `launch` (NumPy
  arrays in, copied to the device and back; a vendor's device arrays used in place) and plans
  (`GpuCompiledFunction`, kernels compiled with debug bounds included: `launch_checked`) are built
  on those;
- `GpuRuntime`: the process's device and architecture and the kernel sets loaded so far
  (`LoadedSets`, keyed by the kernels' text); a vendor names its cache `tag` and builds a set
  (`_build`). `compile_scheduled` compiles a @kernel call's kernel, a schedule the GPU lowering
  cannot map reported as E-SCHEDULE.

Launches pass the arguments of `tessera.ir.tile_to_target_gpu.gpu_abi` (a 64-bit pointer, extents
and strides in elements per tensor, then the grid) as one C array of pointers to the values, the
kernel-parameter form both vendors' driver APIs take (`launch_arguments`).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from tessera.diagnostics import Diagnostic, TesseraRuntimeError
from tessera.dtypes import numpy_dtype
from tessera.ir.schedule.ops import Buffer, HostPrint, KernelCall, Plan
from tessera.ir.tile.ops import Kernel, TensorRefType
from tessera.runtime.arguments import ErrorType, check_array, describe_argument
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.kernel_to_tile import LoweredKernel


class GpuRuntimeError(TesseraRuntimeError):
    """A GPU failure (no runtime or device, a failed API call, bad launch arguments): a run-time
    error (exit code 3), with a one-line message naming the call and the kernel."""

    span = Span("<gpu>", 1, 1, 1, 1)
    grid_unit = "workgroups"  # what the vendor calls the programs of a grid, in messages

    def __init__(self, message: str) -> None:
        super().__init__(Diagnostic("E-RUNTIME", message, self.span))
        self.message = message


class GpuBuffer(Protocol):
    ptr: int
    nbytes: int

    def copy_from(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None: ...

    def copy_to(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None: ...

    def fill_bytes(self, value: int) -> None: ...

    def to_host(self, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0) -> np.ndarray: ...

    def free(self) -> None: ...


class GpuDevice(Protocol):
    def alloc(self, nbytes: int, kernel: str | None = None) -> GpuBuffer: ...

    def to_device(self, a: np.ndarray, kernel: str | None = None) -> GpuBuffer: ...

    def synchronize(self, kernel: str | None = None) -> None: ...


class GpuDeviceBase(ABC):
    """The vendor-neutral part of a device: `to_device` as an allocation and a copy."""

    @abstractmethod
    def alloc(self, nbytes: int, kernel: str | None = None) -> Any:
        ...

    def to_device(self, a: np.ndarray, kernel: str | None = None) -> Any:
        """A fresh device copy of `a` (made contiguous first)."""
        a = np.ascontiguousarray(a)
        buf = self.alloc(a.nbytes, kernel)
        buf.copy_from(a.ctypes.data, a.nbytes, kernel=kernel)
        return buf


class DeviceBufferBase(ABC):
    """One device allocation (`ptr`, `nbytes`), freed by `free()` or when collected; a vendor sets
    `_release(ptr)` and the copies."""

    def __init__(self, device: Any, ptr: int, nbytes: int) -> None:
        self.device = device
        self.ptr = ptr
        self.nbytes = nbytes

    @abstractmethod
    def _release(self, ptr: int) -> None:
        ...

    @abstractmethod
    def copy_to(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        ...

    def to_host(self, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0) -> np.ndarray:
        out = np.empty(shape, dtype)
        self.copy_to(out.ctypes.data, out.nbytes, offset)
        return out

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._release(ptr)

    def __del__(self) -> None:
        if self.ptr and not sys.is_finalizing():
            with contextlib.suppress(Exception):  # never raise from a finaliser
                self.free()


D = TypeVar("D")


class ProcessDevice(Generic[D]):
    """A vendor's process-wide device, created on first use by `create` (made current again at every
    later use); a failure to create it is remembered, so every later use raises the same one-line
    error without retrying."""

    def __init__(self, create: Callable[[], D], error: type[GpuRuntimeError]) -> None:
        self._create = create
        self._error = error
        self._device: D | None = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    def get(self) -> D:
        with self._lock:
            if self._device is None:
                if self._failure is not None:
                    raise self._error(self._failure)
                try:
                    self._device = self._create()
                except GpuRuntimeError as ex:
                    self._failure = ex.message
                    raise
            else:
                self._device.make_current()  # type: ignore[attr-defined]
            return self._device

    def available(self) -> str | None:
        """None when kernels can run on the device, else one line saying why not."""
        try:
            self.get()
        except GpuRuntimeError as ex:
            return ex.message
        return None


K = TypeVar("K")


class LoadedSets(Generic[K]):
    """The kernel sets a runtime has loaded, by what they were compiled from: `get(tag, arch,
    kernels, build)` checks the kernels (unique names, verified Tile IR) and builds a set only the
    first time a key is seen (the key: the tag, the architecture and the kernels' text)."""

    def __init__(self) -> None:
        self._sets: dict[str, K] = {}
        self._lock = threading.Lock()

    def get(self, tag: str, arch: str, kernels: Sequence[Kernel], build: Callable[[], K]) -> K:
        from tessera.ir.tile.printer import print_kernel
        from tessera.ir.tile.verify import verify_kernel
        from tessera.runtime.cache import cache_key

        names = [k.name for k in kernels]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel names must be unique within one compile: {names}")
        for k in kernels:
            verify_kernel(k)
        key = cache_key([tag, arch, *(print_kernel(k) for k in kernels)])
        with self._lock:
            hit = self._sets.get(key)
        if hit is not None:
            return hit
        built = build()
        with self._lock:
            return self._sets.setdefault(key, built)


class GpuRuntime(ABC, Generic[K]):
    """Compiles tile kernels for a process's GPU (`dev`, default: the vendor's process-wide device)
    and architecture (default: the device's); holds the loaded kernel sets. A vendor sets `tag`
    (the loaded sets' key, bumped when what a set holds changes), `_process_device` and `_build`."""

    tag: str

    def __init__(self, dev: Any = None, arch: str | None = None) -> None:
        self.device = dev if dev is not None else self._process_device()
        self.arch: str = arch or self.device.arch
        self._loaded: LoadedSets[K] = LoadedSets()

    @abstractmethod
    def _process_device(self) -> Any:
        ...

    @abstractmethod
    def _build(self, kernels: Sequence[Kernel]) -> K:
        ...

    def compile(self, kernels: Sequence[Kernel]) -> K:
        """The kernels loaded on the device (built once per set of kernels)."""
        return self._loaded.get(self.tag, self.arch, kernels, lambda: self._build(kernels))


def compile_scheduled(runtime: GpuRuntime[K], low: LoweredKernel, name: str, target: str) -> K:
    """A @kernel call's lowered kernel `low` (of the @kernel `name`) loaded by `runtime`; a schedule
    the GPU lowering cannot map is an E-SCHEDULE error at the schedule (as a stack frame too large
    is on the CPU)."""
    from tessera.diagnostics import error
    from tessera.ir.tile_to_target_gpu import GpuScheduleLimit

    try:
        return runtime.compile([low.kernel])
    except GpuScheduleLimit as ex:
        raise error("E-SCHEDULE", f"the schedule {low.schedule.schedule} of '{name}' cannot be compiled for the "
                    f"{target} target: {ex}", low.schedule.span,
                    notes=["use smaller blocks, more warps (fewer elements per thread) or fewer stages"]) from None


@dataclass(frozen=True)
class DeviceView:
    """A strided view of device memory: element (i0, ...) at ptr + sum(i * stride) * itemsize."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    dtype: np.dtype


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def host_clusters(arrays: Sequence[np.ndarray]) -> list[tuple[list[int], int, int]]:
    """The host memory the arrays' elements occupy, as (array indices, first byte, end byte) per
    group of arrays whose spans overlap (so that they share one device copy)."""
    spans = []
    for a in arrays:
        if a.size == 0:
            spans.append((address(a), address(a)))
            continue
        lo = sum(min(0, (n - 1) * s) for n, s in zip(a.shape, a.strides))
        hi = sum(max(0, (n - 1) * s) for n, s in zip(a.shape, a.strides)) + a.itemsize
        spans.append((address(a) + lo, address(a) + hi))
    out: list[tuple[list[int], int, int]] = []
    for i in sorted(range(len(arrays)), key=lambda i: spans[i][0]):
        lo, hi = spans[i]
        if out and lo < out[-1][2]:
            out[-1][0].append(i)
            out[-1] = (out[-1][0], out[-1][1], max(out[-1][2], hi))
        else:
            out.append(([i], lo, hi))
    return out


def check_view(error: ErrorType, kernel: str, i: int, hint: str, ty: TensorRefType, v: DeviceView) -> None:
    want = np.dtype(numpy_dtype(ty.dtype))
    if np.dtype(v.dtype) != want:
        raise error(f"{describe_argument(kernel, i, hint)} has dtype {v.dtype}, the kernel takes {ty.dtype} ({want})")
    if len(v.shape) != ty.rank or len(v.strides) != ty.rank:
        raise error(f"{describe_argument(kernel, i, hint)} has rank {len(v.shape)}, the kernel takes rank {ty.rank}")



@dataclass
class LaunchArguments:
    """One launch's programs and its kernel-parameter block (`pointer`: the address of an array of
    pointers to the argument values, which must stay alive until the launch call returns)."""

    programs: int
    values: list[ctypes.c_uint64 | ctypes.c_int64]
    block: Any

    @property
    def pointer(self) -> int:
        return ctypes.addressof(self.block)


def launch_arguments(error: ErrorType, k: Kernel, views: Sequence[DeviceView]) -> LaunchArguments:
    """The checked arguments of launching `k` over its whole grid on `views` (programs may be 0)."""
    from tessera.ir.tile_to_target_gpu import gpu_abi

    if len(views) != len(k.params):
        raise error(f"kernel {k.name} takes {len(k.params)} arrays, got {len(views)}")
    for i, (p, v) in enumerate(zip(k.params, views)):
        check_view(error, k.name, i, p.hint, p.ty, v)  # type: ignore[arg-type]
    env = {sym: int(views[i].shape[ax]) for sym, (i, ax) in k.extents.items()}
    grid = [d.evaluate(env) for d in k.grid]
    total = max(0, math.prod(grid))
    if total >= 2 ** 31:
        unit = getattr(error, "grid_unit", GpuRuntimeError.grid_unit)
        raise error(f"kernel {k.name}: {total} programs exceed the 2^31 - 1 {unit} of a 1-D grid")
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
    block = (ctypes.c_void_p * max(1, len(values)))(*(ctypes.addressof(v) for v in values))
    return LaunchArguments(total, values, block)


class GpuKernels(ABC):
    """A loaded set of kernels: subclasses set `device`, `error` and `_entries` (name -> an entry
    with the tile `kernel`) and implement `launch_device`."""

    device: Any
    error: ErrorType
    _entries: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def kernel(self, name: str) -> Kernel:
        return self._entry(name).kernel

    def _entry(self, name: str) -> Any:
        e = self._entries.get(name)
        if e is None:
            raise self.error(f"no compiled kernel '{name}' (have {', '.join(self._entries)})")
        return e

    @abstractmethod
    def launch_device(self, name: str, views: Sequence[DeviceView], stream: Any = 0) -> None:
        ...

    def _resident(self, a: Any) -> bool:
        """Whether argument `a` is the vendor's device memory, which kernels use in place."""
        return False

    def _resident_view(self, a: Any) -> DeviceView:
        """The view of a resident argument, once the work that produces it is done (only called where
        `_resident` said yes, so a vendor without device arrays of its own never reaches it)."""
        raise self.error(f"{type(self).__name__} has no device arrays of its own to use in place")

    def launch(self, name: str, arrays: Sequence[Any]) -> None:
        """Run kernel `name` on NumPy arrays (any views): copy in, launch, wait, copy out (the
        memory of arrays whose spans overlap is one device allocation, as on the host). Resident
        arguments (`_resident`: a vendor's device arrays) are read and written in place."""
        k = self.kernel(name)
        if len(arrays) != len(k.params):
            raise self.error(f"kernel {name} takes {len(k.params)} arrays, got {len(arrays)}")
        host = [i for i, a in enumerate(arrays) if not self._resident(a)]
        for i in host:
            check_array(self.error, name, i, k.params[i].hint, k.params[i].ty, k.roles[i],  # type: ignore[arg-type]
                        arrays[i])
        dev = self.device
        bufs: list[tuple[list[int], int, int, GpuBuffer]] = []
        views: list[DeviceView | None] = [None] * len(arrays)
        try:
            for members, lo, hi in host_clusters([arrays[i] for i in host]):
                members = [host[m] for m in members]
                buf = dev.alloc(hi - lo, kernel=name)
                bufs.append((members, lo, hi, buf))
                buf.copy_from(lo, hi - lo, kernel=name)
                for i in members:
                    a = arrays[i]
                    views[i] = DeviceView(buf.ptr + (address(a) - lo), a.shape,
                                          tuple(s // a.itemsize for s in a.strides), a.dtype)
            for i, a in enumerate(arrays):
                if views[i] is None:
                    views[i] = self._resident_view(a)
            self.launch_device(name, views)  # type: ignore[arg-type]
            dev.synchronize(kernel=name)
            for members, lo, hi, buf in bufs:
                if any(k.roles[i] in ("out", "inout") for i in members):
                    buf.copy_to(lo, hi - lo, kernel=name)
        finally:
            for *_, buf in bufs:
                buf.free()


# ---------------------------------------------------------------- running plans


class GpuCompiledFunction:
    """A compiled plan whose buffers live on the device: parameters copied in once, intermediates
    never leave the device, results copied out at the end (host prints copy their buffers out when
    they run). Called like the CPU's CompiledFunction: NumPy arrays in, fresh NumPy arrays out."""

    def __init__(self, plan: Plan, kernels: list[Kernel], compiled: GpuKernels, graph: Any = None,
                 poison: bool = False) -> None:
        from tessera.runtime.executor import CompiledFunction

        self.plan = plan
        self.kernels = kernels
        self.compiled = compiled
        self.graph = graph
        self.poison = poison  # fill fresh buffers with 0xFF bytes (NaN, -1) so unwritten elements show
        self.out = None
        # Host prints format their buffers exactly as the CPU path does.
        self._host = CompiledFunction(plan, kernels, compiled, graph)  # type: ignore[arg-type]
        self._dtypes = [np.dtype(numpy_dtype(b.dtype)) for b in plan.params]

    @property
    def name(self) -> str:
        return self.plan.name

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        state = self.upload(*arrays)
        try:
            state.run()
            return state.results()
        finally:
            state.free()

    def upload(self, *arrays: np.ndarray) -> GpuPlanState:
        """The plan's buffers on the device, the parameters copied in: `run()` it (as often as
        wanted - benchmarks time that), read `results()`, then `free()`."""
        self.check_count(arrays)
        state = GpuPlanState(self)
        dev = self.compiled.device
        try:
            for i, (b, a) in enumerate(zip(self.plan.params, arrays)):
                a = np.asarray(a)
                self.check_argument(i, b, a)
                state.roots[b] = dev.to_device(a)
            for b in self.plan.buffers:
                if b.base is None and b.kind != "param":
                    nbytes = math.prod(b.shape) * np.dtype(numpy_dtype(b.dtype)).itemsize
                    state.roots[b] = dev.alloc(nbytes)
                    if self.poison:
                        state.roots[b].fill_bytes(0xFF)
        except BaseException:
            state.free()
            raise
        return state

    def check_count(self, arrays: Sequence[Any]) -> None:
        from tessera.runtime.executor import ExecutionError

        plan = self.plan
        if len(arrays) != len(plan.params):
            raise ExecutionError(f"@{plan.name} takes {len(plan.params)} arguments, {len(arrays)} were given")

    def check_argument(self, i: int, b: Buffer, a: Any) -> None:
        """Argument `i` (an array of any kind: `dtype` and `shape`) has parameter `b`'s dtype and shape."""
        from tessera.runtime.executor import ExecutionError

        name = self.plan.name
        if a.dtype != self._dtypes[i]:
            raise ExecutionError(f"@{name} argument {i} ({b.name}) must be {b.dtype}, got {a.dtype}")
        if tuple(a.shape) != tuple(b.shape):
            raise ExecutionError(f"@{name} argument {i} ({b.name}) must have shape {b.shape}, got {tuple(a.shape)}")

    @staticmethod
    def to_host(buf: GpuBuffer, b: Buffer) -> np.ndarray:
        return buf.to_host(tuple(b.shape), np.dtype(numpy_dtype(b.dtype)))


class GpuPlanState:
    """One call's device buffers of a GpuCompiledFunction (see `upload`)."""

    def __init__(self, fn: GpuCompiledFunction) -> None:
        self.fn = fn
        self.roots: dict[Buffer, GpuBuffer] = {}

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
                    launch_checked(fn.compiled, step, views, stream)
            elif isinstance(step, HostPrint):
                fn.compiled.device.synchronize()
                host = {b.root: fn.to_host(self.roots[b.root], b.root) for b in step.args}
                fn._host.out = fn.out
                fn._host._print(step, host)

    def results(self, stream: Any = None) -> list[np.ndarray]:
        """The results, once `stream` (an object with `synchronize()`; None: the whole device) is done."""
        if stream is not None:
            stream.synchronize()
        else:
            self.fn.compiled.device.synchronize(kernel=self.fn.plan.name)
        return [self.fn.to_host(self.roots[b], b) for b in self.fn.plan.results]

    def free(self) -> None:
        for buf in self.roots.values():
            buf.free()
        self.roots.clear()


def launch_checked(compiled: GpuKernels, step: KernelCall, views: list[DeviceView], stream: Any = 0) -> None:
    """Launch a plan's user kernel compiled with debug bounds: its zeroed debug buffer inserted among
    the views, copied back once the kernel is done, and its first violation raised as E-BOUNDS (as
    the CPU's executor does)."""
    from tessera.runtime.kernels import debug_buffer, report_bounds

    low = step.bounds
    assert low is not None and step.kernel is not None and step.debug_param is not None
    host = debug_buffer(low)
    buf = compiled.device.to_device(host, kernel=step.kernel)
    try:
        view = DeviceView(buf.ptr, host.shape, tuple(s // host.itemsize for s in host.strides), host.dtype)
        compiled.launch_device(step.kernel, [*views[:step.debug_param], view, *views[step.debug_param:]], stream)
        compiled.device.synchronize(kernel=step.kernel)
        buf.copy_to(host.ctypes.data, host.nbytes, kernel=step.kernel)
    finally:
        buf.free()
    op = next(o for o in step.ops if o.name == "kernel")
    report_bounds(low.kernel.name, host, low, op.span)


__all__ = ["DeviceBufferBase", "DeviceView", "GpuBuffer", "GpuCompiledFunction", "GpuDevice", "GpuDeviceBase",
           "GpuKernels", "GpuPlanState", "GpuRuntime", "GpuRuntimeError", "LaunchArguments", "LoadedSets",
           "ProcessDevice", "address", "check_array", "check_view", "compile_scheduled", "host_clusters",
           "launch_arguments", "launch_checked"]
