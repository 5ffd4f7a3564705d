"""`@kernel`s on the cuda target: what a host-code call (`k(...)`, `k[grid](...)`) compiles to there.

A kernel call on `--target cuda` takes the CPU's route (tessera/runtime/kernels.py: bind, specialise,
lower to Tile IR once per key) and differs only in what runs the Tile IR: the CUDA runtime lowers it
for the device (tessera/ir/tile_to_target_gpu.py), emits PTX and loads it, and `CudaKernels.launch`
runs it on the call's NumPy arrays - each array's memory copied to the device, the kernel launched
(one CTA per program), the arrays the kernel writes (its result, and tensors updated in place with
`tile.store`) copied back. Arguments that are GPU tensors (DeviceArray, or a PyTorch/CuPy tensor
through DLPack) are used in place instead - nothing copied, in-place updates land in the tensor's own
memory - and, as for `@jit` functions, device arrays in means a device array out: the result is a
fresh `DeviceArray` (`device_result`).

`@jit` code calling a kernel takes the plan route: the graph's `kernel` op becomes a kernel of the
function's plan, which tessera/runtime/cuda.py runs with device buffers; with TESSERA_DEBUG_BOUNDS=1
such a kernel also takes a debug buffer, which tessera/runtime/gpu_common.py's `launch_checked`
provides (as the CPU's executor does) and reads back to report the first out-of-bounds access
(E-BOUNDS).

A schedule the GPU lowering cannot map (more shared memory than a CTA has, too many elements per
thread, too many threads) is an E-SCHEDULE compile error at the schedule, as a schedule whose stack
frame is too large is on the CPU; an operation the GPU backend lacks stays "not available yet".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tessera.runtime.gpu_common import compile_scheduled

if TYPE_CHECKING:
    from tessera.ir.kernel_to_tile import LoweredKernel
    from tessera.runtime.cuda import CudaKernels
    from tessera.runtime.device_array import DeviceArray


def compile_kernel(low: LoweredKernel, name: str) -> CudaKernels:
    """The lowered kernel `low` (of the @kernel `name`) loaded on the process's CUDA device."""
    from tessera.runtime.cuda import default_runtime

    return compile_scheduled(default_runtime(), low, name, "cuda")


def device_result(shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray:
    """A fresh device array for the result of a kernel called with device arrays (it owns its memory)."""
    from tessera.runtime.cuda import device
    from tessera.runtime.device_array import DeviceArray

    dt = np.dtype(dtype)
    buf = device().alloc(math.prod(shape) * dt.itemsize)
    return DeviceArray(buf.ptr, shape, dt, owner=buf)


__all__ = ["compile_kernel", "device_result"]
