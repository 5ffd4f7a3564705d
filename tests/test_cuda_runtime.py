"""The CUDA runtime. Without a GPU: the one-line error of a missing driver or package, how NumPy
views are grouped for copying, CUDA's argument block and its errors, device-resident plans
(CudaCompiledFunction) over host memory with interpreted launches, and the whole runtime (device,
module loading, launches, plans, device arrays) on a fake driver over host memory. With one (tests marked `gpu`, skipped without a device): tile kernels
launched on fresh random NumPy arrays (strided, transposed, broadcast and misaligned views; outputs
poisoned) agree with the CPU backend, every example agrees with the reference evaluator through
device-resident plans, `tessera run --target cuda` runs, and failures name the driver call and kernel."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner
from gpu_cases import ROOT, example_case, example_names
from gpu_checks import (
    VIEWS,
    InterpretedCudaKernels,
    agree,
    check_elementwise_views,
    check_example,
    check_resident_plan,
    device_runtime,
    launcher,
    view_array,
)
from gpu_interpreter import run_kernel
from tile_kernels import (
    argmax_rows,
    batched_scale_transpose,
    binary,
    cast_kernel,
    column_reduce,
    elementwise_chain,
    gather_rows,
    layernorm_rows,
    matmul_epilogue,
    softmax_rows,
    unary,
)

from tessera.cli import main
from tessera.codegen.ptx import cuda_target_info
from tessera.diagnostics import TesseraRuntimeError
from tessera.dtypes import BF16, DTYPES, F16, F32, INT32, DType, numpy_dtype
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile_to_target_gpu import gpu_abi, lower_kernel_gpu
from tessera.runtime import cuda
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.device_array import DeviceArray
from tessera.runtime.executor import compile_function
from tessera.runtime.gpu_common import DeviceView, ProcessDevice, launch_arguments

# ---------------------------------------------------------------- without a GPU


def test_host_clusters_group_overlapping_views() -> None:
    base = np.zeros(100, np.float32)
    a, b = base[:50], base[40:90]  # overlap: one device copy
    c = np.zeros(10, np.float32)
    d = base[::-1][20:30]  # elements 79 down to 70: the span runs backwards from the data pointer
    e = base[95:]
    clusters = cuda.host_clusters([a, c, b, d, e])
    groups = sorted(sorted(m) for m, _, _ in clusters)
    assert groups == [[0, 2, 3], [1], [4]]
    for members, lo, hi in clusters:
        if 0 in members:
            assert (lo, hi) == (base.ctypes.data, base.ctypes.data + 90 * 4)


@pytest.mark.parametrize(("file", "fn"), example_names())
def test_device_resident_plans_without_a_gpu(rng: np.random.Generator, file: str, fn: str) -> None:
    # CudaCompiledFunction's own code (buffers uploaded, poisoned, kernels launched in plan order,
    # results copied out, every buffer freed) over host memory, the launches interpreted.
    case = example_case(file, fn)
    check_resident_plan(case, InterpretedCudaKernels(case.lowered.kernels or []), cuda.CudaCompiledFunction, rng)


def test_launch_argument_errors_are_cudas() -> None:
    # The shared argument block (gpu_common.launch_arguments, checked in test_hip_runtime) raises
    # CUDA's error, in CUDA's words, at CUDA's span.
    k = softmax_rows(256, False, name="sm")
    y = DeviceView(0x20000, (23, 200), (200, 1), np.dtype(np.float32))
    huge = DeviceView(0x10000, (2 ** 31, 200), (200, 1), np.dtype(np.float32))
    with pytest.raises(cuda.CudaError) as info:
        launch_arguments(cuda.CudaError, k, [huge, huge])
    assert info.value.message == "kernel sm: 2147483648 programs exceed the 2^31 - 1 CTAs of a 1-D grid"
    assert info.value.diagnostic.code == "E-RUNTIME" and info.value.diagnostic.span.file == "<cuda>"
    with pytest.raises(cuda.CudaError, match=r"kernel sm: argument 0 \(x\) has rank 1, the kernel takes rank 2"):
        launch_arguments(cuda.CudaError, k, [DeviceView(0x10000, (23,), (1,), np.dtype(np.float32)), y])


class _FakeDriver:
    """cuda-python's driver module over host memory (a pointer is a host address), for one device of
    compute capability 9.0: every call the CUDA runtime makes, checked for its arguments, with
    `cuLaunchKernel` decoding the kernel-parameter block and running the kernel's sm_90a Target IR
    in the lockstep interpreter. Streams are the legacy one (0): work runs when it is issued."""

    class CUdevice_attribute:
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    def __init__(self, kernels: list[Kernel]) -> None:
        self.kernels = {k.name: k for k in kernels}
        self.memory: dict[int, np.ndarray] = {}  # live allocations by address
        self.launches: list[tuple[str, int, int]] = []  # (kernel, grid, threads)
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> object:
        if name.startswith("cu"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    def cuInit(self, flags: int) -> tuple[int]:
        return (0,)

    def cuDeviceGetCount(self) -> tuple[int, int]:
        return 0, 1

    def cuDeviceGet(self, ordinal: int) -> tuple[int, int]:
        return 0, ordinal

    def cuDevicePrimaryCtxRetain(self, dev: int) -> tuple[int, str]:
        return 0, "ctx"

    def cuCtxSetCurrent(self, ctx: str) -> tuple[int]:
        assert ctx == "ctx"
        return (0,)

    def cuDeviceGetAttribute(self, attr: int, dev: int) -> tuple[int, int]:
        return 0, {75: 9, 76: 0}[attr]

    def cuDeviceGetName(self, size: int, dev: int) -> tuple[int, bytes]:
        return 0, b"Fake H100\0\0\0"

    def cuMemAlloc(self, nbytes: int) -> tuple[int, int]:
        buf = np.zeros(nbytes, np.uint8)
        self.memory[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cuMemAllocAsync(self, nbytes: int, stream: object) -> tuple[int, int]:
        return self.cuMemAlloc(nbytes)

    def cuMemFree(self, ptr: int) -> tuple[int]:
        del self.memory[ptr]
        return (0,)

    def cuMemFreeAsync(self, ptr: int, stream: object) -> tuple[int]:
        return self.cuMemFree(ptr)

    def _check(self, ptr: int, nbytes: int) -> None:
        assert any(a <= ptr and ptr + nbytes <= a + len(m) for a, m in self.memory.items()), "not device memory"

    def cuMemcpyHtoD(self, dst: int, src: int, nbytes: int) -> tuple[int]:
        self._check(dst, nbytes)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cuMemcpyHtoDAsync(self, dst: int, src: int, nbytes: int, stream: object) -> tuple[int]:
        return self.cuMemcpyHtoD(dst, src, nbytes)

    def cuMemcpyDtoH(self, dst: int, src: int, nbytes: int) -> tuple[int]:
        self._check(src, nbytes)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cuMemcpyDtoDAsync(self, dst: int, src: int, nbytes: int, stream: object) -> tuple[int]:
        self._check(src, nbytes)
        return self.cuMemcpyHtoD(dst, src, nbytes)

    def cuMemsetD8(self, ptr: int, value: int, nbytes: int) -> tuple[int]:
        self._check(ptr, nbytes)
        ctypes.memset(ptr, value, nbytes)
        return (0,)

    def cuMemsetD8Async(self, ptr: int, value: int, nbytes: int, stream: object) -> tuple[int]:
        return self.cuMemsetD8(ptr, value, nbytes)

    def cuCtxSynchronize(self) -> tuple[int]:
        return (0,)

    def cuModuleLoadData(self, image: bytes) -> tuple[int, str]:
        assert image.startswith(b"//") and image.endswith(b"\0"), "a PTX module, NUL-terminated"
        return 0, "module"

    def cuModuleGetFunction(self, module: str, name: bytes) -> tuple[int, str]:
        return 0, name.decode()

    def cuFuncSetAttribute(self, func: str, attr: int, value: int) -> tuple[int]:
        return (0,)

    def cuLaunchKernel(self, func: str, gx: int, gy: int, gz: int, bx: int, by: int, bz: int, shared: int,
                       stream: object, params: int, extra: int) -> tuple[int]:
        k = self.kernels[func]
        abi = gpu_abi(k)
        block = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        values = [ctypes.cast(block[i], ctypes.POINTER(ctypes.c_int64))[0] for i in range(len(abi))]
        ptrs, shapes, strides = {}, {}, {}
        for p, v in zip(abi, values):
            if p.kind == "ptr":
                ptrs[p.tensor] = v
            elif p.kind == "extent":
                shapes.setdefault(p.tensor, {})[p.axis] = v
            elif p.kind == "stride":
                strides.setdefault(p.tensor, {})[p.axis] = v
        views = []
        for t, param in enumerate(k.params):
            rank = param.ty.rank  # type: ignore[union-attr]
            views.append(view_array(DeviceView(ptrs[t], tuple(shapes[t][a] for a in range(rank)),
                                               tuple(strides[t][a] for a in range(rank)),
                                               np.dtype(numpy_dtype(param.ty.dtype)))))  # type: ignore[union-attr]
        self.launches.append((func, gx, bx))
        assert (gy, gz, by, bz, extra) == (1, 1, 1, 1, 0)
        run_kernel(lower_kernel_gpu(k, cuda_target_info("sm_90a")), k, views)
        return (0,)


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[Kernel]], _FakeDriver]:
    """Install a _FakeDriver for some kernels: the CUDA runtime's own code runs on it, PTX loaded as is."""
    monkeypatch.setenv("TESSERA_PTXAS", "")

    def install(kernels: list[Kernel]) -> _FakeDriver:
        drv = _FakeDriver(kernels)
        monkeypatch.setattr(cuda, "_driver", drv)
        monkeypatch.setattr(cuda, "_device", ProcessDevice(cuda.CudaDevice, cuda.CudaError))
        return drv

    return install


def test_the_runtime_on_a_fake_driver(fake_driver: Callable[[list[Kernel]], _FakeDriver], cpu: CpuRuntime,
                                      rng: np.random.Generator) -> None:
    # CudaDevice, CudaRuntime.compile, CudaKernels.launch (strided and broadcast views copied in and
    # out) and the plans, device arrays in and out, through every driver call they make.
    k = elementwise_chain(block=(8, 40))
    case = example_case("mlp.tsr", "mlp")
    drv = fake_driver([k, *case.lowered.kernels])
    rt = cuda.CudaRuntime()
    assert (rt.device.name, rt.device.capability, rt.arch) == ("Fake H100", (9, 0), "sm_90a")
    m, n = 37, 101
    x = rng.standard_normal((2 * m, 3 * n)).astype(np.float32)[::2, ::3]
    bias = np.broadcast_to(rng.standard_normal(n).astype(np.float32), (m, n))
    got = agree(launcher(rt), cpu, k, [x, bias, np.empty((m, n), np.float32)], [2])
    assert drv.launches[-1] == (k.name, math.ceil(m / 8) * math.ceil(n / 40), 32 * k.schedule.warps)
    assert rt.compile([k]).loaded_from == "ptx" and rt.compile([k]) is rt.compile([k])
    assert not drv.memory, "every buffer freed"
    del got
    fn = cuda.CudaCompiledFunction(case.lowered.plan, case.lowered.kernels, rt.compile(case.lowered.kernels),
                                   poison=True)
    xs = case.inputs(rng)
    check_example(case, xs, fn(*xs))
    assert "cuMemsetD8" in drv.calls and not drv.memory
    devs = [DeviceArray.from_numpy(a) for a in xs]
    ys = fn(*devs)  # device arrays in: stream-ordered buffers, device arrays out
    assert all(isinstance(y, DeviceArray) for y in ys)
    check_example(case, xs, [y.numpy() for y in ys])
    assert {"cuMemAllocAsync", "cuMemFreeAsync", "cuMemsetD8Async"} <= set(drv.calls)
    del ys, devs
    import gc

    gc.collect()
    assert not drv.memory, "device arrays free their memory when collected"


def test_unavailable_cuda_is_one_line() -> None:
    why = cuda.available()
    if why is not None:
        assert "\n" not in why and why
        with pytest.raises(TesseraRuntimeError) as info:
            cuda.device()
        assert info.value.diagnostic.message == why
    assert issubclass(cuda.CudaError, TesseraRuntimeError)


def test_dlpack_capsules_round_trip_without_copies() -> None:
    import gc

    from tessera.runtime import dlpack
    from tessera.runtime.device_array import DeviceArray, DeviceArrayError, as_device_array, is_device_array

    host = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    b = dlpack.consume(host, None)  # NumPy exports kDLCPU capsules: parsed, then refused as device memory
    assert (b.shape, b.strides, b.dtype, b.device_type) == ((4, 3), (6, 2), np.float32, dlpack.KDL_CPU)
    assert b.ptr == host.__array_interface__["data"][0]
    b.release()
    assert not is_device_array(host)
    # a DeviceArray exports a kDLCUDA capsule that keeps it alive until the consumer's deleter runs
    d = DeviceArray(0x7000, (3, 5), np.dtype(ml_dtypes.bfloat16), (10, 2))
    assert is_device_array(d) and d.__dlpack_device__() == (dlpack.KDL_CUDA, 0) and not d.is_c_contiguous
    taken = as_device_array(_Exporter(d))
    assert (taken.ptr, taken.shape, taken.strides, taken.dtype) == (0x7000, (3, 5), (10, 2), d.dtype)
    assert dlpack.live_exports() == 1
    del taken
    gc.collect()
    assert dlpack.live_exports() == 0
    unconsumed = d.__dlpack__()
    assert dlpack.live_exports() == 1
    del unconsumed
    gc.collect()
    assert dlpack.live_exports() == 0
    with pytest.raises(DeviceArrayError, match="not in CUDA memory"):
        as_device_array(_Exporter(host))
    with pytest.raises(DeviceArrayError, match="ambiguous"):
        as_device_array(_Cai(d.__cuda_array_interface__))
    with pytest.raises(DeviceArrayError, match="_Refuses.__dlpack__ failed: requires grad"):
        as_device_array(_Refuses())


class _Refuses:
    def __dlpack__(self, stream: object = None) -> object:
        raise RuntimeError("requires grad")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


class _Exporter:
    """Any DLPack producer: reports a CUDA device and hands out the wrapped object's capsule."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __dlpack__(self, stream: object = None) -> object:
        return self.inner.__dlpack__()  # type: ignore[attr-defined]

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


class _Cai:
    def __init__(self, cai: dict[str, object]) -> None:
        self.__cuda_array_interface__ = cai


def test_device_array_arguments_are_checked_before_any_work() -> None:
    import tessera
    from tessera.runtime.device_array import DeviceArray

    m = tessera.compile(PROGRAM, target="cpu")
    w, b = DeviceArray(0x2000, (64, 64), np.float32), DeviceArray(0x3000, (64,), np.float32)
    with pytest.raises(TesseraRuntimeError, match="CUDA device array but runs on the cpu target"):
        m.affine(DeviceArray(0x1000, (33, 64), np.float32), w, b)
    with pytest.raises(TesseraRuntimeError, match="is a f64 device array but the parameter is f32; device arrays are "
                                                  "used in place, never converted"):
        m.affine(DeviceArray(0x1000, (33, 64), np.float64), w, b)
    with pytest.raises(TesseraRuntimeError, match="has rank 1"):
        m.affine(DeviceArray(0x1000, (33,), np.float32), w, b)


# ---------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module")
def rt() -> cuda.CudaRuntime:
    return device_runtime(cuda.available, cuda.CudaRuntime, "CUDA device")


@pytest.mark.gpu
def test_device_reports_itself(rt: cuda.CudaRuntime) -> None:
    dev = rt.device
    assert dev.capability >= (8, 0) and dev.name and dev.arch in ("sm_80", "sm_90a")
    e0, e1 = dev.event(), dev.event()
    dev.record(e0)
    dev.record(e1)
    assert dev.elapsed_ms(e0, e1) >= 0.0


@pytest.mark.gpu
@pytest.mark.parametrize(("bn", "online", "n"), [(256, False, 200), (64, True, 300), (1024, False, 1000)])
def test_softmax_rows(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator, bn: int, online: bool,
                      n: int) -> None:
    x = (rng.standard_normal((23, n)) * 5).astype(np.float32)
    x[3, :] = -np.inf
    agree(launcher(rt), cpu, softmax_rows(bn, online, name=f"softmax_{bn}_{online}"), [x, np.empty_like(x)], [1])


@pytest.mark.gpu
@pytest.mark.parametrize("layout", VIEWS)
def test_elementwise_views(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator, layout: str) -> None:
    check_elementwise_views(launcher(rt), cpu, rng, layout)


@pytest.mark.gpu
def test_reductions_dots_and_shared_memory(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator) -> None:
    x = rng.standard_normal((7, 100)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(100).astype(np.float32), rng.standard_normal(100).astype(np.float32)
    agree(launcher(rt), cpu, layernorm_rows(128, rows=3), [x, w, b, np.empty_like(x)], [3], rtol=1e-5)
    for block, bk, tr, dt in [((32, 32), 16, False, F32), ((16, 32), 16, True, F32), ((64, 64), 32, False, BF16)]:
        npdt = numpy_dtype(dt)
        xa = rng.standard_normal((45, 70)).astype(npdt)
        wa = rng.standard_normal((50, 70) if tr else (70, 50)).astype(npdt)
        agree(launcher(rt), cpu, matmul_epilogue(block, bk, dt, dt, transpose_b_block=tr, name=f"mm_{block[0]}_{tr}_{dt}"),
              [xa, wa, rng.standard_normal(50).astype(np.float32), np.empty((45, 50), npdt)], [3], rtol=1e-5,
              atol=1e-5)
    xn = rng.standard_normal((9, 50)).astype(np.float32)
    xn[2, 5] = np.nan
    agree(launcher(rt), cpu, argmax_rows(64), [xn, np.zeros((9, 1), np.int64)], [1])
    xs = rng.standard_normal((30, 21)).astype(np.float32)
    agree(launcher(rt), cpu, column_reduce("sum", (8, 16)), [xs, np.empty((1, 21), np.float32)], [1], rtol=1e-5)
    xi = rng.integers(-50, 50, (30, 21)).astype(np.int32)
    agree(launcher(rt), cpu, column_reduce("max", (8, 16), INT32, name="colmax_i32"), [xi, np.empty((1, 21), np.int32)], [1])
    ids = rng.integers(0, 10, 6).astype(np.int64)
    agree(launcher(rt), cpu, gather_rows(64), [ids, rng.standard_normal((10, 70)).astype(np.float32),
                                     np.empty((6, 70), np.float32)], [2])
    x3 = rng.standard_normal((2, 9, 13)).astype(np.float32)
    agree(launcher(rt), cpu, batched_scale_transpose((4, 8)), [x3, np.empty((2, 13, 9), np.float32)], [1])


@pytest.mark.gpu
def test_math_casts_and_integers(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator) -> None:
    x = np.concatenate([rng.standard_normal(150) * 4, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 88.7]])
    x = x.astype(np.float32)
    for op in ("exp", "log", "tanh", "erf", "sigmoid", "silu", "sqrt", "rsqrt", "isnan"):
        xx = np.abs(x) if op in ("log", "sqrt", "rsqrt") else x
        out = np.empty(x.shape, np.bool_ if op == "isnan" else np.float32)
        agree(launcher(rt), cpu, unary(op, block=64, name=f"u_{op}"), [xx, out], [1], rtol=2.5e-7, atol=1e-37)
    int8 = DTYPES["int8"]
    for dt in (int8, INT32, DTYPES["int64"]):
        a = rng.integers(-100, 100, 200).astype(numpy_dtype(dt))
        c = rng.integers(-9, 9, 200).astype(numpy_dtype(dt))
        for op in ("add", "mul", "floordiv", "mod", "maximum"):
            agree(launcher(rt), cpu, binary(op, dt, block=64, name=f"{op}_{dt}"), [a, c, np.empty_like(a)], [2])
    vals = np.concatenate([rng.standard_normal(80) * 300, [0.5, 1.5, 2.5, -0.5, 1e30, -1e30, np.nan, np.inf]])
    casts: list[tuple[DType, DType]] = [(F32, BF16), (BF16, F32), (F32, F16), (F32, int8), (F32, INT32),
                                        (F32, DTYPES["fp8_e4m3"]), (F32, DTYPES["fp8_e5m2"])]
    for src, dst in casts:
        with np.errstate(all="ignore"):
            xs = vals.astype(numpy_dtype(src))
        agree(launcher(rt), cpu, cast_kernel(src, dst), [xs, np.empty(xs.shape, numpy_dtype(dst))], [1], rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize(("file", "fn"), example_names())
def test_examples_match_the_reference(rt: cuda.CudaRuntime, rng: np.random.Generator, file: str, fn: str) -> None:
    case = example_case(file, fn)
    compiled = compile_function(case.lowered.graph, target="cuda")
    compiled.poison = True
    xs = case.inputs(rng)
    check_example(case, xs, compiled(*xs))


@pytest.mark.gpu
def test_tessera_run_on_the_gpu(rt: cuda.CudaRuntime) -> None:
    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "softmax.tsr"), "--target", "cuda"])
    assert r.exit_code == 0, r.stderr
    assert "softmax rows sum to 1.0" in r.stdout or "softmax rows sum to 0.99" in r.stdout


@pytest.mark.gpu
def test_launch_errors_name_the_kernel(rt: cuda.CudaRuntime) -> None:
    ck = rt.compile([unary("exp", name="exp_k")])
    with pytest.raises(cuda.CudaError, match="kernel exp_k: argument 0"):
        ck.launch("exp_k", [np.zeros(4, np.float64), np.zeros(4, np.float32)])


# ---------------------------------------------------------------- device arrays, streams, cubins, math

PROGRAM = """
@jit
def affine(x: Tensor["B", "D", f32], w: Tensor["D", "D", f32], b: Tensor["D", f32]) -> Tensor["B", "D", f32]:
    return tanh(x @ w + b) + x

@jit
def twice(x: Tensor["N", bf16]) -> Tensor["N", bf16]:
    return x + x

@jit
def noisy(x: Tensor["N", f32]) -> Tensor["N", f32]:
    return x + randn(x.shape, f32, seed=7)
"""


@pytest.fixture(scope="module")
def prog(rt: cuda.CudaRuntime) -> object:
    import tessera

    return tessera.compile(PROGRAM, target="cuda")


def _affine_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return np.tanh(x64 @ w.astype(np.float64) + b) + x64


def _affine_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (rng.standard_normal((33, 64)).astype(np.float32), (rng.standard_normal((64, 64)) / 8).astype(np.float32),
            rng.standard_normal(64).astype(np.float32))


@pytest.mark.gpu
def test_numpy_in_numpy_out_device_in_device_out(prog: object, rng: np.random.Generator) -> None:
    from tessera.runtime.device_array import DeviceArray

    x, w, b = _affine_inputs(rng)
    want = _affine_ref(x, w, b)
    y = prog.affine(x, w, b)  # type: ignore[attr-defined]
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    xd, wd, bd = (DeviceArray.from_numpy(a) for a in (x, w, b))
    yd = prog.affine(xd, wd, bd)  # type: ignore[attr-defined]
    assert isinstance(yd, DeviceArray) and yd.shape == (33, 64) and yd.dtype == np.float32
    np.testing.assert_allclose(yd.numpy(), want, rtol=1e-5, atol=1e-5)
    assert xd.numpy().tobytes() == x.tobytes()  # inputs untouched
    mixed = prog.affine(xd, w, b)  # type: ignore[attr-defined]  # any device argument: device results
    assert isinstance(mixed, DeviceArray)
    np.testing.assert_allclose(mixed.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_torch_tensors_in_place_and_results_back_through_dlpack(prog: object, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    from tessera.runtime import dlpack
    from tessera.runtime.device_array import DeviceArray, as_device_array

    x, w, b = _affine_inputs(rng)
    xt, wt, bt = (torch.from_numpy(a).cuda() for a in (x, w, b))
    assert as_device_array(xt).ptr == xt.data_ptr()  # no copy: the tensor's own memory
    y = prog.affine(xt, wt, bt)  # type: ignore[attr-defined]
    assert isinstance(y, DeviceArray)
    yt = torch.from_dlpack(y)
    assert yt.device.type == "cuda" and yt.data_ptr() == y.ptr
    np.testing.assert_allclose(yt.cpu().numpy(), _affine_ref(x, w, b), rtol=1e-5, atol=1e-5)
    yc = torch.as_tensor(y, device="cuda")  # through __cuda_array_interface__
    assert yc.data_ptr() == y.ptr
    del yt, yc, y
    import gc

    gc.collect()
    assert dlpack.live_exports() == 0
    # bf16 travels as kDLBfloat both ways
    xb = torch.randn(1000, device="cuda").to(torch.bfloat16)
    yb = torch.from_dlpack(prog.twice(xb))  # type: ignore[attr-defined]
    assert yb.dtype == torch.bfloat16 and torch.equal(yb, xb + xb)


@pytest.mark.gpu
def test_cupy_arrays_through_dlpack_and_the_array_interface(prog: object, rng: np.random.Generator) -> None:
    cp = pytest.importorskip("cupy")
    from tessera.runtime.device_array import DeviceArray

    x, w, b = _affine_inputs(rng)
    xc, wc, bc = (cp.asarray(a) for a in (x, w, b))
    y = prog.affine(xc, wc, bc)  # type: ignore[attr-defined]
    assert isinstance(y, DeviceArray)
    yc = cp.asarray(y)  # __cuda_array_interface__, no copy
    assert yc.data.ptr == y.ptr
    np.testing.assert_allclose(cp.asnumpy(yc), _affine_ref(x, w, b), rtol=1e-5, atol=1e-5)
    y2 = cp.from_dlpack(y)
    assert y2.data.ptr == y.ptr


@pytest.mark.gpu
def test_device_argument_errors(prog: object, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    import tessera

    x, w, b = _affine_inputs(rng)
    xt, wt, bt = (torch.from_numpy(a).cuda() for a in (x, w, b))
    with pytest.raises(TesseraRuntimeError, match="strided device array"):
        prog.affine(xt, wt.t(), bt)  # type: ignore[attr-defined]
    with pytest.raises(TesseraRuntimeError, match="device arrays are used in place, never converted"):
        prog.affine(xt.double(), wt, bt)  # type: ignore[attr-defined]
    on_cpu = tessera.compile(PROGRAM, target="cpu")
    with pytest.raises(TesseraRuntimeError, match="CUDA device array but runs on the cpu target"):
        on_cpu.affine(xt, wt, bt)  # type: ignore[attr-defined]


@pytest.mark.gpu
def test_streams_and_events(prog: object, rng: np.random.Generator) -> None:
    from tessera.runtime.cuda_streams import Event, Stream, current_stream, use_stream
    from tessera.runtime.device_array import DeviceArray

    x, w, b = _affine_inputs(rng)
    xd, wd, bd = (DeviceArray.from_numpy(a) for a in (x, w, b))
    s = Stream()
    start, end = Event(), Event()
    with use_stream(s):
        assert current_stream() is s
        start.record(s)
        ys = [prog.affine(xd, wd, bd) for _ in range(5)]  # type: ignore[attr-defined]
        end.record(s)
        host = prog.affine(x, w, b)  # type: ignore[attr-defined]  # NumPy in: waits for s
    assert current_stream() is None
    assert all(y.stream is s for y in ys)
    assert end.elapsed_ms(start) >= 0.0 and end.done()
    want = _affine_ref(x, w, b)
    for y in ys:
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host, want, rtol=1e-5, atol=1e-5)
    s.synchronize()
    s.close()


@pytest.mark.gpu
def test_modules_load_as_cached_cubins_or_driver_jitted_ptx(rt: cuda.CudaRuntime, cpu: CpuRuntime,
                                                             rng: np.random.Generator, tmp_path: object,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tessera.runtime import cubin

    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path))
    x = rng.standard_normal(500).astype(np.float32)
    for ptxas in (cubin.ptxas_path(), ""):
        monkeypatch.setenv("TESSERA_PTXAS", ptxas or "")
        fresh = cuda.CudaRuntime()
        k = unary("tanh", name=f"tanh_{'cubin' if ptxas else 'ptx'}")
        ck = fresh.compile([k])
        assert ck.loaded_from == ("cubin" if ptxas else "ptx")
        agree(launcher(fresh), cpu, k, [x, np.empty_like(x)], [1], rtol=2.5e-7)
    if cubin.ptxas_path() is not None:
        assert list(tmp_path.glob("*.tobj"))  # type: ignore[attr-defined]


@pytest.mark.gpu
def test_gpu_math_on_the_device(rt: cuda.CudaRuntime, rng: np.random.Generator) -> None:
    from test_gpu_math import ERF, SPECIAL, pow_inputs, ulps

    def run(k: Kernel, *xs: np.ndarray) -> np.ndarray:
        out = np.full(xs[0].shape, np.nan, xs[0].dtype)
        rt.compile([k]).launch(k.name, [*xs, out])
        return out

    huge32 = 2.0 ** rng.uniform(17, 127, 300) * rng.choice([-1, 1], 300)  # the Payne-Hanek branch
    x32 = np.concatenate([rng.uniform(-1e5, 1e5, 500), rng.standard_normal(500) * 4, huge32, SPECIAL])
    x32 = x32.astype(np.float32)
    for op in ("sin", "cos"):
        got = run(unary(op, F32, name=f"dev_{op}"), x32)
        with np.errstate(invalid="ignore"):  # sin(inf) is NaN
            want = getattr(np, op)(x32.astype(np.float64)).astype(np.float32)
        assert ulps(got, want, np.float32).max() <= 1, op
    x64 = np.concatenate([rng.standard_normal(500) * 20, SPECIAL])
    huge64 = 2.0 ** rng.uniform(17, 1023, 300) * rng.choice([-1, 1], 300)
    for op in ("sin", "cos"):
        got = run(unary(op, DTYPES["f64"], name=f"dev64_{op}_huge"), huge64)
        assert ulps(got, getattr(np, op)(huge64), np.float64).max() <= 1, op
    refs = {"exp": np.exp, "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "erf": ERF}
    for op, f in refs.items():
        got = run(unary(op, DTYPES["f64"], name=f"dev64_{op}"), x64)
        with np.errstate(all="ignore"):
            assert ulps(got, f(x64), np.float64).max() <= 5, op
    pos = np.exp(rng.uniform(-700, 700, 500))
    assert ulps(run(unary("log", DTYPES["f64"], name="dev64_log"), pos), np.log(pos), np.float64).max() <= 2
    for dt, tol in ((np.float32, 1), (np.float64, 4)):
        xs, ys = pow_inputs(rng, dt)
        got = run(binary("pow", F32 if dt == np.float32 else DTYPES["f64"], name=f"dev_pow_{dt.__name__}"), xs, ys)
        with np.errstate(all="ignore"):
            want = np.power(xs.astype(np.float64), ys.astype(np.float64)).astype(dt)
        assert ulps(got, want, dt).max() <= tol, dt
    a = (rng.standard_normal(1000) * 1e4).astype(np.float32)
    d = (rng.standard_normal(1000) * 3).astype(np.float32)
    for op, f in (("mod", np.remainder), ("floordiv", np.floor_divide)):
        np.testing.assert_array_equal(run(binary(op, F32, name=f"dev_{op}"), a, d), f(a, d))


@pytest.mark.gpu
def test_randn_inside_jit_runs_on_the_gpu(prog: object) -> None:
    y = prog.noisy(np.zeros(200_000, np.float32))  # type: ignore[attr-defined]
    assert abs(float(y.mean())) < 0.02 and abs(float(y.std()) - 1) < 0.02
    assert np.isfinite(y).all()
