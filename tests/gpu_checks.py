"""Checks shared by the GPU tests (the lowering in the interpreter, the CUDA and HIP runtimes):

- `agree`: a tile kernel run some GPU way (`run(k, arrays)`: the interpreter, a vendor runtime) on
  the arrays' own views, its outputs poisoned first, agrees with the CPU backend (`check_outputs`:
  integers exactly, floats to a relative tolerance widened to an ulp of f16/bf16 results);
- `check_example`: an example's results against the reference evaluator;
- `HostDevice`: device memory stood in for by host memory (a buffer's address is its "device
  pointer"), and `InterpretedKernels`, a kernel set on it whose launches run the GPU Target IR in
  the lockstep interpreter: the vendor runtimes' own code (copies in and out, device arrays in
  place, device-resident plans, debug-bounds launches) runs without a GPU.
"""

from __future__ import annotations

import ctypes
import math
import shutil
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import ml_dtypes
import numpy as np
import pytest
from gpu_interpreter import run_kernel
from tile_kernels import elementwise_chain

import tessera
from tessera.codegen.ptx import cuda_target_info
from tessera.diagnostics import TesseraRuntimeError
from tessera.dtypes import BF16, F16
from tessera.ir.graph.reference import evaluate
from tessera.ir.target.info import TargetInfo
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.cuda import CudaError, CudaKernels
from tessera.runtime.gpu_common import (
    DeviceView,
    GpuCompiledFunction,
    GpuKernels,
    GpuRuntimeError,
    launch_arguments,
)

# The CUDA toolkit's PTX assembler: the PTX tests assemble for sm_80 and sm_90a where it is on the PATH.
PTXAS = shutil.which("ptxas")
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="ptxas (the CUDA toolkit's PTX assembler) is not on the PATH")

# An ulp of f32 apart on the two sides can round to neighbouring values of a narrow result.
NARROW_RTOL = {np.dtype(np.float16): 2.0 ** -10, np.dtype(ml_dtypes.bfloat16): 2.0 ** -7}


def poisoned(a: np.ndarray) -> np.ndarray:
    """An array like `a` full of NaN (floats) or -1 (integers; True for booleans): unwritten
    elements show."""
    fill = np.nan if a.dtype.kind in "fV" or a.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2") else -1
    out = np.empty_like(a)
    out[...] = np.array(fill).astype(np.float64).astype(a.dtype) if a.dtype != np.bool_ else True
    return out


def check_outputs(got: Sequence[np.ndarray], want: Sequence[np.ndarray], outs: Sequence[int], name: str,
                  rtol: float = 2e-6, atol: float = 1e-6) -> None:
    """Outputs `outs` agree: integers exactly, floats to `rtol` (0: to `atol` alone), widened for
    narrow results."""
    for i in outs:
        g, w = got[i], want[i]
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"{name} output {i}")
        else:
            r = max(rtol, NARROW_RTOL.get(g.dtype, 0.0)) if rtol else 0.0
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=r, atol=atol,
                                       err_msg=f"{name} output {i}")


def agree(run: Callable[[Kernel, list[np.ndarray]], Any], cpu: CpuRuntime, k: Kernel, arrays: list[np.ndarray],
          outs: Sequence[int], rtol: float = 2e-6, atol: float = 1e-6) -> list[np.ndarray]:
    """`run(k, arrays)` on the arrays themselves - their views (strided, transposed, broadcast,
    misaligned) are what is tested - with the outputs poisoned first, agrees with the CPU backend
    run on contiguous copies; the arrays, outputs written."""
    want = [a.copy() for a in arrays]
    cpu.compile([k]).launch(k.name, want)
    for i in outs:
        arrays[i][...] = poisoned(arrays[i])
    run(k, arrays)
    check_outputs(arrays, want, outs, k.name, rtol, atol)
    return arrays


R = TypeVar("R")


def device_runtime(available: Callable[[], str | None], runtime: Callable[[], R], what: str) -> R:
    """A vendor runtime on the process's GPU, or the test skipped with the one line saying why none."""
    why = available()
    if why is not None:
        pytest.skip(f"no {what}: {why}")
    return runtime()


def launcher(rt: Any) -> Callable[[Kernel, list[np.ndarray]], None]:
    """`agree`'s `run` for a vendor runtime: compile the kernel, launch it on the NumPy arrays."""
    return lambda k, arrays: rt.compile([k]).launch(k.name, arrays)


def check_plan_debug_bounds(target: str, rng: np.random.Generator) -> Any:
    """With TESSERA_DEBUG_BOUNDS=1 (the caller sets it), a kernel of a @jit function's plan on
    `target` gets its debug buffer on the device (gpu_common.launch_checked) and reports its first
    out-of-bounds access as E-BOUNDS, as on the CPU; the compiled module (with `row_scale`)."""
    from test_kernels import ROW_SCALE, SHIFTED

    m = tessera.compile(ROW_SCALE + SHIFTED, target=target)
    with pytest.raises(TesseraRuntimeError) as info:
        m.uses_shifted(rng.standard_normal((10, 20)).astype(np.float32))
    assert info.value.diagnostic.code == "E-BOUNDS"
    assert "tile.load of 'x' is out of bounds at index [0, -3]" in info.value.diagnostic.message
    return m


def view_of(rng: np.random.Generator, shape: tuple[int, int], layout: str) -> np.ndarray:
    """Fresh standard-normal f32 values of `shape` in a view of `layout`: contiguous, strided (every
    2nd row and 3rd column of a larger array), transposed (column-major) or misaligned (4 bytes past
    an aligned start)."""
    m, n = shape
    if layout == "strided":
        return rng.standard_normal((2 * m, 3 * n)).astype(np.float32)[::2, ::3]
    if layout == "transposed":
        return rng.standard_normal((n, m)).astype(np.float32).T
    if layout == "misaligned":
        return rng.standard_normal(m * n + 1).astype(np.float32)[1:].reshape(m, n)
    assert layout == "contiguous", layout
    return rng.standard_normal((m, n)).astype(np.float32)


VIEWS = ("contiguous", "strided", "transposed", "misaligned")


def check_elementwise_views(run: Callable[[Kernel, list[np.ndarray]], Any], cpu: CpuRuntime,
                            rng: np.random.Generator, layout: str) -> None:
    """The elementwise chain on an input (misaligned: and an output) of `layout` plus a broadcast
    bias row, at extents no multiple of the block, then a bf16 -> f16 chain: `run` agrees with the
    CPU."""
    m, n = 37, 101
    x = view_of(rng, (m, n), layout)
    out = view_of(rng, (m, n), layout) if layout == "misaligned" else np.empty((m, n), np.float32)
    bias = np.broadcast_to(rng.standard_normal(n).astype(np.float32), (m, n))
    agree(run, cpu, elementwise_chain(block=(8, 40)), [x, bias, out], [2])
    xb = rng.standard_normal((19, 130)).astype(ml_dtypes.bfloat16)
    agree(run, cpu, elementwise_chain(BF16, F16, block=(4, 64), name="chain_bf16"),
          [xb, rng.standard_normal((1, 130)).astype(np.float32), np.empty((19, 130), np.float16)], [2])


def check_example(case: Any, xs: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> None:
    """An example's results `got` for inputs `xs` against the reference evaluator in the same dtypes:
    every element written, relative error 1e-5 (2e-3 for bf16 results, where reductions in another
    order flip the rounding of a few elements by an ulp)."""
    for g, s in zip(got, evaluate(case.lowered.graph, xs)):
        g64, s64 = g.astype(np.float64), s.astype(np.float64)
        assert not np.isnan(g64).any(), f"{case.id}: unwritten (NaN) elements"
        rel = np.linalg.norm(g64 - s64) / np.linalg.norm(s64)
        assert rel < (2e-3 if g.dtype == ml_dtypes.bfloat16 else 1e-5), f"{case.id}: {rel:.2e} from the reference"


def check_resident_plan(case: Any, ks: InterpretedKernels, function: type[GpuCompiledFunction],
                        rng: np.random.Generator) -> None:
    """An example's plan run by a runtime's `function` class (buffers uploaded, poisoned, launched in
    plan order, results copied out, every buffer freed) over the interpreted kernel set `ks`."""
    compiled = function(case.lowered.plan, case.lowered.kernels, ks, poison=True)
    xs = case.inputs(rng)
    check_example(case, xs, compiled(*xs))
    assert [n for n, _ in ks.launches] == [s.kernel for s in case.lowered.plan.steps if hasattr(s, "kernel")]
    assert all(b.freed for b in ks.device.buffers)


# ---------------------------------------------------------------- a host-memory device


class HostBuffer:
    """Device memory stood in for by host memory (its address is the 'device pointer')."""

    def __init__(self, nbytes: int) -> None:
        self.mem = np.zeros(max(1, nbytes), np.uint8)
        self.ptr = self.mem.ctypes.data
        self.nbytes = nbytes
        self.freed = False

    def copy_from(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        ctypes.memmove(self.ptr + offset, host_ptr, nbytes)

    def copy_to(self, host_ptr: int, nbytes: int, offset: int = 0, kernel: str | None = None) -> None:
        ctypes.memmove(host_ptr, self.ptr + offset, nbytes)

    def fill_bytes(self, value: int, stream: object = None) -> None:
        self.mem[:] = value

    def to_host(self, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0) -> np.ndarray:
        n = math.prod(shape) * dtype.itemsize
        return self.mem[offset:offset + n].view(dtype).reshape(shape).copy()

    def free(self) -> None:
        self.freed = True  # the memory stays: a test may read it after the runtime is done


class HostDevice:
    """A device whose allocations are HostBuffers (kept until the test ends); counts its waits."""

    def __init__(self) -> None:
        self.buffers: list[HostBuffer] = []
        self.syncs = 0

    def alloc(self, nbytes: int, kernel: str | None = None) -> HostBuffer:
        self.buffers.append(HostBuffer(nbytes))
        return self.buffers[-1]

    def to_device(self, a: np.ndarray, kernel: str | None = None) -> HostBuffer:
        a = np.ascontiguousarray(a)
        buf = self.alloc(a.nbytes)
        buf.copy_from(a.ctypes.data, a.nbytes)
        return buf

    def synchronize(self, kernel: str | None = None) -> None:
        self.syncs += 1


def view_array(v: DeviceView) -> np.ndarray:
    """The elements a DeviceView of host memory describes, as a NumPy view (any strides)."""
    item = np.dtype(v.dtype).itemsize
    lo = sum(min(0, (n - 1) * s) for n, s in zip(v.shape, v.strides)) if math.prod(v.shape) else 0
    hi = sum(max(0, (n - 1) * s) for n, s in zip(v.shape, v.strides)) + 1
    raw = (ctypes.c_char * ((hi - lo) * item)).from_address(v.ptr + lo * item)
    return np.ndarray(v.shape, v.dtype, buffer=raw, offset=-lo * item, strides=tuple(s * item for s in v.strides))


class InterpretedKernels(GpuKernels):
    """A kernel set on a HostDevice whose launches run the kernels' Target IR (lowered with `info`)
    in the lockstep interpreter, checking the arguments as a vendor's launch does (`error`);
    `launches` records (kernel, programs). Mixed in before a vendor's kernel class, the vendor's
    own `launch` runs (e.g. CUDA's device arrays in place)."""

    def __init__(self, kernels: Sequence[Kernel], info: TargetInfo,
                 error: Callable[[str], Exception] = GpuRuntimeError, device: Any = None) -> None:
        self.device = device if device is not None else HostDevice()
        self.error = error  # type: ignore[misc]
        self.fns = {k.name: (k, lower_kernel(k, info)) for k in kernels}
        self.launches: list[tuple[str, int]] = []

    def kernel(self, name: str) -> Kernel:
        return self.fns[name][0]

    def launch_device(self, name: str, views: Sequence[DeviceView], stream: object = None) -> None:
        k, f = self.fns[name]
        args = launch_arguments(self.error, k, views)
        self.launches.append((name, args.programs))
        if args.programs:
            run_kernel(f, k, [view_array(v) for v in views])


class InterpretedCudaKernels(InterpretedKernels, CudaKernels):
    """The CUDA runtime's kernel set (its `launch`: NumPy arrays copied, device arrays in place) with
    launches of the sm_90a Target IR interpreted on host memory."""

    def __init__(self, kernels: Sequence[Kernel], device: Any = None) -> None:
        InterpretedKernels.__init__(self, kernels, cuda_target_info("sm_90a"), CudaError, device)
