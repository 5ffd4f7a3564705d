"""The HIP runtime: tile kernels -> Target IR -> HIP C++ -> hiprtc -> code objects launched on AMD GPUs.

Built on hip-python (`hip.hip` and `hip.hiprtc`), an optional dependency imported on first use:
without it, without the ROCm libraries or without an AMD GPU, `available()` says why in one line
and every entry point raises `HipError` with that line (`tessera run --target hip` prints it and
exits 3).

- `HipDevice` (one per process, `device()`): hipInit, device 0, its architecture from
  `gcnArchName` (gfx90a, gfx942, gfx1100, ...) and wavefront size; device buffers (hipMalloc,
  hipMemcpy, hipMemset), streams and events.
- `compile_code_object(source, arch)` compiles HIP C++ with hiprtc for one architecture
  (`--offload-arch`, tessera/codegen/hip.py's COMPILE_FLAGS) into a code object; code objects are
  kept on disk by tessera/runtime/cache.py, keyed by the source, the architecture, the flags and the
  hiprtc version, so a second process skips the compiler.
- `HipRuntime.compile(kernels)` lowers the kernels with the device's TargetInfo row (its wavefront
  size), emits one HIP module, compiles it and loads it (hipModuleLoadData); loaded sets are kept
  in memory by the kernels' text and the architecture.
- `HipKernels.launch_device(name, views)` launches one workgroup per program in a 1-D grid
  (hipModuleLaunchKernel with the kernel-parameter block of tessera/runtime/gpu_common.py);
  `launch(name, arrays)` runs on NumPy arrays; `compile_plan` runs a Schedule IR plan with every
  buffer on the device (gpu_common's GpuCompiledFunction).

Every HIP and hiprtc call is checked: a failure raises `HipError` naming the call, the error and the
kernel involved.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera.ir.schedule.ops import Plan
from tessera.ir.tile.ops import Kernel
from tessera.runtime.cache import CodeCache, cache_key
from tessera.runtime.gpu_common import (
    DeviceBufferBase,
    DeviceView,
    GpuCompiledFunction,
    GpuDeviceBase,
    GpuKernels,
    GpuRuntime,
    GpuRuntimeError,
    ProcessDevice,
    compile_scheduled,
    launch_arguments,
)
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.kernel_to_tile import LoweredKernel


class HipError(GpuRuntimeError):
    """A HIP failure (no runtime or device, a failed HIP/hiprtc call, a compile error, bad launch
    arguments): a run-time error (exit code 3) with a one-line message."""

    span = Span("<hip>", 1, 1, 1, 1)


# ---------------------------------------------------------------- hip-python

_modules: tuple[Any, Any] | None = None
_import_error: str | None = None


def _load() -> tuple[Any, Any]:
    """(hip, hiprtc) of hip-python, imported once."""
    global _modules, _import_error
    if _modules is not None:
        return _modules
    if _import_error is not None:
        raise HipError(_import_error)
    try:
        from hip import hip, hiprtc
    except ImportError:
        _import_error = ("the hip target needs the hip-python package (pip install 'tessera[hip]', matching "
                         "the ROCm version), which is not installed")
        raise HipError(_import_error) from None
    _modules = (hip, hiprtc)
    return _modules


def _first_line(ex: BaseException) -> str:
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def _status(err: Any) -> tuple[int, str]:
    code = int(err)
    return code, getattr(err, "name", str(code))


def _checked(lib: str, name: str, args: tuple[Any, ...], kernel: str | None) -> Any:
    """<lib>.<name>(*args) of hip-python, checked: the results after the status (one value, a tuple or
    None)."""
    hip, hiprtc = _load()
    mod = hip if lib == "hip" else hiprtc
    where = f" (kernel {kernel})" if kernel else ""
    try:
        out = getattr(mod, name)(*args)
    except HipError:
        raise
    except Exception as ex:  # noqa: BLE001 - e.g. a ROCm library that cannot be loaded
        msg = _first_line(ex)
        if "dlopen" in msg or "cannot open shared object" in msg:
            lib_name = "libhiprtc.so" if lib == "hiprtc" else "libamdhip64.so"
            raise HipError(f"the ROCm runtime library {lib_name} cannot be loaded ({msg})") from None
        raise HipError(f"{name} failed{where}: {msg}") from None
    err, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
    code, text = _status(err)
    if code != 0:
        if lib == "hip":
            with contextlib.suppress(Exception):  # the error's name is enough where this fails
                s = hip.hipGetErrorString(err)
                s = _text(s[-1] if isinstance(s, tuple) else s)
                if s and s != text:
                    text = f"{text}: {s}"
        raise HipError(f"{name} failed{where}: {text}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def _call(name: str, *args: Any, kernel: str | None = None) -> Any:
    return _checked("hip", name, args, kernel)


def _rtc(name: str, *args: Any, kernel: str | None = None) -> Any:
    return _checked("hiprtc", name, args, kernel)


# ---------------------------------------------------------------- the device


def _text(raw: Any) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).split(b"\0")[0].decode(errors="replace").strip()
    return str(raw).strip()


class HipDevice(GpuDeviceBase):
    """AMD GPU `ordinal`, current on the calling thread."""

    def __init__(self, ordinal: int = 0) -> None:
        from tessera.ir.target.info import amd_arch

        hip, _ = _load()
        try:
            _call("hipInit", 0)
            count = int(_call("hipGetDeviceCount"))
        except HipError as ex:
            raise HipError(f"no AMD GPU found ({ex.message})") from None
        if count <= ordinal:
            raise HipError(f"no AMD GPU {ordinal}: the HIP runtime reports {count} device(s)")
        self.ordinal = ordinal
        self.make_current()
        props = hip.hipDeviceProp_t()
        _call("hipGetDeviceProperties", props, ordinal)
        self.name = _text(props.name)
        self.gcn_arch = _text(props.gcnArchName)  # e.g. "gfx90a:sramecc+:xnack-"
        self.warp_size = int(props.warpSize)
        try:
            self.arch = amd_arch(self.gcn_arch).name
        except ValueError as ex:
            raise HipError(f"AMD GPU {ordinal} ({self.name}): {ex}") from None

    def make_current(self) -> None:
        _call("hipSetDevice", self.ordinal)

    # -- memory, streams, events

    def alloc(self, nbytes: int, kernel: str | None = None) -> HipBuffer:
        return HipBuffer(self, int(_call("hipMalloc", max(1, nbytes), kernel=kernel)), nbytes)

    def synchronize(self, kernel: str | None = None) -> None:
        _call("hipDeviceSynchronize", kernel=kernel)

    def stream(self) -> Any:
        return _call("hipStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        _call("hipStreamDestroy", stream)

    def event(self) -> Any:
        return _call("hipEventCreate")

    def record(self, event: Any, stream: Any = None) -> None:
        _call("hipEventRecord", event, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        _call("hipEventSynchronize", end)
        return float(_call("hipEventElapsedTime", start, end))


class HipBuffer(DeviceBufferBase):
    """One device allocation, freed by `free()` (or when collected)."""

    def _kind(self, name: str) -> Any:
        hip, _ = _load()
        return getattr(hip.hipMemcpyKind, name)

    def copy_from(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        if nbytes:
            _call("hipMemcpy", self.ptr + offset, host_ptr, nbytes, self._kind("hipMemcpyHostToDevice"),
                  kernel=kernel)

    def copy_to(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        if nbytes:
            _call("hipMemcpy", host_ptr, self.ptr + offset, nbytes, self._kind("hipMemcpyDeviceToHost"),
                  kernel=kernel)

    def fill_bytes(self, value: int) -> None:
        if self.nbytes:
            _call("hipMemset", self.ptr, value, self.nbytes)

    def _release(self, ptr: int) -> None:
        _call("hipFree", ptr)


_device = ProcessDevice(HipDevice, HipError)


def device() -> HipDevice:
    """The process-wide AMD GPU (created on first use)."""
    return _device.get()


def available() -> str | None:
    """None when HIP kernels can run here, else one line saying why not."""
    return _device.available()


# ---------------------------------------------------------------- compiling


def emit_kernels_hip(kernels: Sequence[Kernel], arch: str) -> str:
    """The HIP C++ module of a set of tile kernels for `arch` (no device needed)."""
    from tessera.codegen.hip import emit_hip
    from tessera.ir.target.info import hip_target_info
    from tessera.ir.target.ops import Module
    from tessera.ir.target.verify import verify_module
    from tessera.ir.tile_to_target_gpu import lower_kernel_gpu

    try:
        info = hip_target_info(arch)
    except ValueError as ex:
        raise HipError(str(ex)) from None
    module = Module([lower_kernel_gpu(k, info) for k in kernels])
    verify_module(module)
    return emit_hip(module, info.cpu)


def _rtc_version() -> str:
    return ".".join(str(int(x)) for x in _rtc("hiprtcVersion"))


_code_cache = CodeCache()


def compile_code_object(source: str, arch: str, name: str = "tessera.hip", cache: CodeCache | None = None) -> bytes:
    """A code object for `arch` compiled from HIP C++ by hiprtc (cached on disk, see the module
    docstring). A compile error is a HipError with the first lines of hiprtc's log."""
    from tessera.codegen.hip import COMPILE_FLAGS

    cache = cache if cache is not None else _code_cache
    options = [f"--offload-arch={arch}", *COMPILE_FLAGS]
    key = cache_key(["tessera-hip-1", arch, *options, _rtc_version(), source])
    hit = cache.get(key)
    if hit is not None:
        return hit
    prog = _rtc("hiprtcCreateProgram", source.encode(), name.encode(), 0, [], [])
    try:
        opts = [o.encode() for o in options]
        try:
            _rtc("hiprtcCompileProgram", prog, len(opts), opts, kernel=name)
        except HipError as ex:
            log = _program_log(prog)
            first = next((line for line in log.splitlines() if "error" in line), log.strip()[:300])
            raise HipError(f"{ex.message}: {first}" if first else ex.message) from None
        size = int(_rtc("hiprtcGetCodeSize", prog))
        code = bytearray(size)
        _rtc("hiprtcGetCode", prog, code)
    finally:
        # hiprtcDestroyProgram takes the program's address (hip-python: createRef()).
        _rtc("hiprtcDestroyProgram", prog.createRef())
    data = bytes(code)
    cache.put(key, data)
    return data


def _program_log(prog: Any) -> str:
    try:
        size = int(_rtc("hiprtcGetProgramLogSize", prog))
        log = bytearray(max(1, size))
        _rtc("hiprtcGetProgramLog", prog, log)
        return _text(log)
    except HipError:
        return ""


@dataclass
class _Entry:
    kernel: Kernel
    func: Any
    threads: int


class HipKernels(GpuKernels):
    """A set of kernels in one loaded code object."""

    error = HipError

    def __init__(self, dev: HipDevice, kernels: Sequence[Kernel], source: str, code: bytes, arch: str,
                 threads: dict[str, int]) -> None:
        self.device = dev
        self.source = source
        self.code = code
        self.arch = arch
        names = ", ".join(k.name for k in kernels)
        self._image = bytes(code)  # the module may read the image until it is unloaded
        self.module = _call("hipModuleLoadData", self._image, kernel=names)
        self._entries: dict[str, _Entry] = {}
        for k in kernels:
            func = _call("hipModuleGetFunction", self.module, k.name.encode(), kernel=k.name)
            self._entries[k.name] = _Entry(k, func, threads[k.name])

    def launch_device(self, name: str, views: Sequence[DeviceView], stream: Any = None) -> None:
        """Launch kernel `name` over its whole grid on device views (asynchronous on `stream`)."""
        e = self._entry(name)
        args = launch_arguments(HipError, e.kernel, views)
        if args.programs == 0:
            return
        _call("hipModuleLaunchKernel", e.func, args.programs, 1, 1, e.threads, 1, 1, 0, stream or None,
              args.pointer, None, kernel=name)


class HipRuntime(GpuRuntime[HipKernels]):
    """Compiles tile kernels for the process's AMD GPU; holds the loaded modules."""

    tag = "tessera-hip-1"
    device: HipDevice

    def _process_device(self) -> HipDevice:
        return device()

    def _build(self, kernels: Sequence[Kernel]) -> HipKernels:
        from tessera.ir.target.info import hip_target_info

        source = emit_kernels_hip(kernels, self.arch)
        code = compile_code_object(source, self.arch)
        wave = hip_target_info(self.arch).warp_size
        return HipKernels(self.device, kernels, source, code, self.arch,
                          {k.name: k.schedule.warps * wave for k in kernels})


@functools.cache
def default_runtime() -> HipRuntime:
    return HipRuntime()


def compile_kernel(low: LoweredKernel, name: str) -> HipKernels:
    """A @kernel call's lowered kernel (of the @kernel `name`) loaded on the process's AMD GPU; a
    schedule the GPU lowering cannot map is an E-SCHEDULE error at the schedule, as on cuda."""
    return compile_scheduled(default_runtime(), low, name, "hip")


def compile_plan(plan: Plan, kernels: list[Kernel], graph: Any = None) -> GpuCompiledFunction:
    """The plan's kernels compiled for the AMD GPU, ready to run with device-resident buffers."""
    return GpuCompiledFunction(plan, kernels, default_runtime().compile(kernels), graph)


__all__ = ["HipBuffer", "HipDevice", "HipError", "HipKernels", "HipRuntime", "available", "compile_code_object",
           "compile_kernel", "compile_plan", "default_runtime", "device", "emit_kernels_hip"]
