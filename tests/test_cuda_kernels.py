"""`@kernel`s on `--target cuda`: every stdlib kernel (stdlib/kernels.tsr) and every example kernel, called
from host code (`k(...)`, `k[grid](...)`, in-place updates of NumPy arrays and of device arrays) and
from `@jit` code, against float64 NumPy on fresh random inputs of ragged sizes, f32 and bf16, several
schedules, results poisoned (NaN); and every example through `tessera run --target cuda`.

Without a GPU, the cuda route itself is checked with the device replaced by the lockstep interpreter
(tests/gpu_interpreter.py) over host memory: a kernel call on the cuda target compiles through the
CUDA runtime's entry point (never the CPU's), `CudaKernels.launch` copies NumPy arrays in and out and
uses device arrays in place, and the GPU lowering's code computes the results; a schedule the GPU
cannot map is an E-SCHEDULE error; a device array on the cpu target is E-TYPE; without a driver
`tessera run --target cuda` says so in one line and exits 3. The tests marked `gpu` (skipped without
a device) run the same calls on the device."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from click.testing import CliRunner
from gpu_cases import ROOT
from gpu_checks import HostDevice, InterpretedCudaKernels, check_plan_debug_bounds
from kernel_cases import (
    BF16,
    F32,
    SHAPES,
    STDLIB,
    KernelCase,
    call,
    example_cases,
    kernel_of,
    modules,
    stdlib_case,
    stdlib_cases,
)
from test_kernel_jit import SRC as JIT_SRC
from test_kernel_jit import _attention
from test_kernels import ROW_SCALE, SHIFTED
from test_stdlib_kernels import _adam_reference, _PoisonedNumpy

import tessera
import tessera.runtime.kernels as kernels_runtime
from tessera.cli import main
from tessera.diagnostics import CompilationError, TesseraRuntimeError
from tessera.ir.tile.ops import Kernel, Schedule
from tessera.runtime import cuda
from tessera.runtime.device_array import DeviceArray

RNG = np.random.default_rng()


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> _PoisonedNumpy:
    """Results the kernel runtime allocates are NaN-filled (and copied to the device as such)."""
    shim = _PoisonedNumpy()
    monkeypatch.setattr(kernels_runtime, "np", shim)
    return shim


# ---------------------------------------------------------------- the cuda route, without a GPU


class _InterpretedRuntime:
    """The CUDA runtime with host memory for device memory (allocations kept until the test ends) and
    the kernels' launches interpreted: `launch` (copies in and out, device arrays in place) and
    plans (CudaCompiledFunction) are the real ones."""

    def __init__(self) -> None:
        self.device = HostDevice()
        self.compiled: list[str] = []

    def compile(self, kernels: Sequence[Kernel]) -> InterpretedCudaKernels:
        for k in kernels:  # what CudaRuntime.compile does before loading the module
            cuda.emit_kernels_ptx([k], "sm_90a")
        self.compiled += [k.name for k in kernels]
        return InterpretedCudaKernels(kernels, self.device)


@pytest.fixture
def interpreted(monkeypatch: pytest.MonkeyPatch) -> _InterpretedRuntime:
    rt = _InterpretedRuntime()
    monkeypatch.setattr(cuda, "default_runtime", lambda: rt)
    monkeypatch.setattr(cuda, "device", lambda: rt.device)
    return rt


@pytest.fixture
def interpreted_modules(interpreted: _InterpretedRuntime) -> dict[str, object]:
    """Kernels of their own: a kernel keeps what it compiled, which must not reach the device tests."""
    return modules("cuda")


@pytest.fixture(scope="module")
def cuda_modules() -> dict[str, object]:
    return modules("cuda")


@pytest.mark.parametrize("name", STDLIB)
def test_kernel_calls_on_cuda_run_the_gpu_lowering(interpreted: _InterpretedRuntime, poisoned: _PoisonedNumpy,
                                                   interpreted_modules: dict[str, object], name: str) -> None:
    # Two shapes in f32, one in bf16, under the kernel's own schedule.
    plan = [(F32, SHAPES[name][0]), (F32, SHAPES[name][1]), (BF16, SHAPES[name][0])]
    cases = [stdlib_case(name, None, dt, shape, RNG, variant=v) for v, (dt, shape) in enumerate(plan)]
    for case in cases:
        case.check(call(case, kernel_of(case, interpreted_modules)))  # type: ignore[arg-type]
    assert len(interpreted.compiled) == len(cases)  # one specialisation each, all through the cuda runtime
    assert poisoned.allocations == sum(1 for c in cases if not c.written)


def test_example_kernels_on_cuda_run_the_gpu_lowering(interpreted: _InterpretedRuntime,
                                                      interpreted_modules: dict[str, object]) -> None:
    for case in example_cases(RNG):
        case.check(call(case, kernel_of(case, interpreted_modules)))  # type: ignore[arg-type]
    assert interpreted.compiled


def test_a_schedule_the_gpu_cannot_map_is_an_e_schedule_error(interpreted: _InterpretedRuntime,
                                                              interpreted_modules: dict[str, object],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The H100 budget (kernel_to_tile.py) rejects this schedule first; without it the GPU lowering's own
    # limit must still be a compile error at the schedule. 16 whole rows of 2048 in one CTA of one warp: 1024 elements per thread.
    f = kernel_of(stdlib_case("softmax_rows", None, F32, (16, 2048), RNG), interpreted_modules)
    f = f.with_schedule(Schedule(block=(16, 128), warps=1))  # type: ignore[attr-defined]
    x = RNG.standard_normal((16, 2048)).astype(np.float32)
    monkeypatch.setenv("TESSERA_GPU_BUDGET", "none")
    with pytest.raises(CompilationError) as info:
        f(x)  # type: ignore[operator]
    d = info.value.diagnostics[0]
    assert d.code == "E-SCHEDULE" and "cannot be compiled for the cuda target" in d.message
    assert "elements in each of 32 threads" in d.message


def test_device_arrays_are_used_in_place(interpreted: _InterpretedRuntime,
                                        interpreted_modules: dict[str, object]) -> None:
    # Device memory is host memory here: DeviceArrays over NumPy buffers. Adam's state is updated in
    # place (never copied), a host gradient is copied in, and device arrays in gives a device array out.
    n = 1500
    host = [RNG.standard_normal(n).astype(np.float32) for _ in range(4)]
    host[3] = np.abs(host[3])
    want = _adam_reference(*(a.astype(np.float64) for a in host), 1e-3, 0.9, 0.999, 1e-8, 2)  # type: ignore[call-arg]
    p, m, v = (host[i].copy() for i in (0, 2, 3))
    dev = [DeviceArray(a.ctypes.data, a.shape, a.dtype, owner=a) for a in (p, m, v)]
    adam = kernel_of(stdlib_case("adam_update", None, F32, (n,), RNG), interpreted_modules)
    adam[(2,)](dev[0], host[1], dev[1], dev[2], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=2.0)  # type: ignore[index]
    for got, w in zip((p, m, v), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
    x = RNG.standard_normal((37, 300)).astype(BF16)
    xd = DeviceArray(x.ctypes.data, x.shape, x.dtype, owner=x)
    y = kernel_of(stdlib_case("softmax_rows", None, BF16, x.shape, RNG), interpreted_modules)(xd)  # type: ignore[operator]
    assert isinstance(y, DeviceArray) and y.dtype == BF16 and y.shape == x.shape
    got = np.ndarray(y.shape, y.dtype, buffer=y.owner.mem)  # type: ignore[union-attr]
    xf = x.astype(np.float64)
    e = np.exp(xf - xf.max(1, keepdims=True))
    np.testing.assert_allclose(got.astype(np.float64), e / e.sum(1, keepdims=True), rtol=2e-2, atol=2e-2)


def test_jit_code_calling_kernels_on_cuda_runs_device_resident_plans(interpreted: _InterpretedRuntime) -> None:
    # The @jit function's plan (CudaCompiledFunction: buffers on the "device", results copied out)
    # launches the user kernel and the fused graph kernels through the CUDA runtime's classes.
    mod = tessera.compile(JIT_SRC, target="cuda")
    q, k, v = (RNG.standard_normal((2, 37, 16)).astype(np.float32) for _ in range(3))
    got = mod.attn(q, k, v, causal=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, _attention(q, k, v, True) + 1.0, rtol=1e-5, atol=1e-5)
    assert any(name.endswith("_kernel") for name in interpreted.compiled)  # the @kernel call's step
    assert all(b.freed for b in interpreted.device.buffers)


def test_debug_bounds_on_cuda_without_a_gpu(interpreted: _InterpretedRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    # Plans (gpu_checks) and host-code calls of a kernel compiled with debug bounds report E-BOUNDS.
    monkeypatch.setenv("TESSERA_DEBUG_BOUNDS", "1")
    m = check_plan_debug_bounds("cuda", RNG)
    x = RNG.standard_normal((100, 70)).astype(np.float32)
    with pytest.raises(TesseraRuntimeError) as info:
        m.row_scale[(3,)](x, np.zeros_like(x), alpha=2.0)  # type: ignore[attr-defined]
    assert info.value.diagnostic.message == ("kernel 'row_scale': tile.load of 'x' is out of bounds at index "
                                             "[128, 0] ('x' has shape (100, 70)), in program (2,)")


def test_a_device_array_for_a_kernel_on_the_cpu_is_an_error() -> None:
    # (a DeviceArray is only a pointer, shape and dtype: none is allocated here)
    cpu = modules("cpu")
    case = stdlib_case("softmax_rows", None, F32, (4, 8), RNG)
    with pytest.raises(TesseraRuntimeError, match="was given a CUDA device array but runs on the cpu target"):
        kernel_of(case, cpu)(DeviceArray(0, (4, 8), F32))  # type: ignore[operator]


def test_tessera_run_without_a_driver_says_so() -> None:
    if cuda.available() is None:
        pytest.skip("a CUDA device is present")
    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "flash_attention.tsr"), "--target", "cuda"])
    assert r.exit_code == 3
    assert "flash attention" not in r.stdout  # nothing ran on the CPU instead
    assert r.stderr.count("\n") == 1 and "cuda" in r.stderr


# ---------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module")
def device() -> None:
    why = cuda.available()
    if why is not None:
        pytest.skip(f"no CUDA device: {why}")


def on_device(case: KernelCase, mods: dict[str, object]) -> None:
    fn = kernel_of(case, mods)  # type: ignore[arg-type]
    case.check(call(case, fn))
    assert all(isinstance(c.compiled, cuda.CudaKernels) for c in fn._cache.values())  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.parametrize("name", STDLIB)
def test_stdlib_kernel_on_the_device(device: None, poisoned: _PoisonedNumpy, cuda_modules: dict[str, object],
                                     name: str) -> None:
    cases: list[KernelCase] = [c for c in stdlib_cases(RNG) if c.kernel == name]
    for case in cases:
        on_device(case, cuda_modules)
    assert poisoned.allocations == sum(1 for c in cases if not c.written)


@pytest.mark.gpu
def test_example_kernels_on_the_device(device: None, cuda_modules: dict[str, object]) -> None:
    for case in example_cases(RNG):
        on_device(case, cuda_modules)


@pytest.mark.gpu
def test_adam_steps_update_in_place_on_the_device(device: None, cuda_modules: dict[str, object]) -> None:
    # Several steps on the same arrays: each launch reads what the previous one wrote.
    f = kernel_of(stdlib_case("adam_update", None, F32, (2049,), RNG), cuda_modules)
    p, m, v = RNG.standard_normal(2049).astype(np.float32), np.zeros(2049, np.float32), np.zeros(2049, np.float32)
    want = [a.astype(np.float64) for a in (p, m, v)]
    for step in range(1, 5):
        g = RNG.standard_normal(2049).astype(np.float32)
        want = list(_adam_reference(want[0], g.astype(np.float64), want[1], want[2], 1e-3, 0.9, 0.999, 1e-8, step))
        f[(math.ceil(2049 / 1024),)](p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=float(step))  # type: ignore[index]
        for got, w in zip((p, m, v), want):
            np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_kernels_on_device_arrays_work_in_place(device: None, cuda_modules: dict[str, object]) -> None:
    # Device arrays in: used in place (Adam's state updated in the device memory), a device array out.
    n = 3001
    host = [RNG.standard_normal(n).astype(np.float32) for _ in range(4)]
    host[3] = np.abs(host[3])
    p, g, m, v = (DeviceArray.from_numpy(a) for a in host)
    adam = kernel_of(stdlib_case("adam_update", None, F32, (n,), RNG), cuda_modules)
    adam[(math.ceil(n / 1024),)](p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1.0)  # type: ignore[index]
    want = _adam_reference(*(a.astype(np.float64) for a in host), 1e-3, 0.9, 0.999, 1e-8, 1)  # type: ignore[call-arg]
    for got, w in zip((p, m, v), want):
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g.numpy(), host[1])
    x = RNG.standard_normal((37, 300)).astype(BF16)
    y = kernel_of(stdlib_case("softmax_rows", None, BF16, (37, 300), RNG), cuda_modules)(DeviceArray.from_numpy(x))  # type: ignore[operator]
    assert isinstance(y, DeviceArray) and y.dtype == BF16 and y.shape == (37, 300)
    xf = x.astype(np.float64)
    e = np.exp(xf - xf.max(1, keepdims=True))
    np.testing.assert_allclose(y.numpy().astype(np.float64), e / e.sum(1, keepdims=True), rtol=2e-2, atol=2e-2)
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(host[0].copy()).cuda()
    mt, vt = torch.zeros_like(t), torch.zeros_like(t)
    adam[(math.ceil(n / 1024),)](t, t * 0.5, mt, vt, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, step=1.0)  # type: ignore[index]
    want = _adam_reference(host[0].astype(np.float64), host[0].astype(np.float64) * 0.5, np.zeros(n), np.zeros(n),
                           1e-2, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(t.cpu().numpy(), want[0], rtol=1e-5, atol=1e-6)  # the torch tensor itself


@pytest.mark.gpu
def test_jit_code_calling_kernels_on_the_device(device: None) -> None:
    mod = tessera.compile(JIT_SRC, target="cuda")
    q, k, v = (RNG.standard_normal((2, 37, 16)).astype(np.float32) for _ in range(3))
    for causal in (False, True):
        got = mod.attn(q, k, v, causal=causal)  # type: ignore[attr-defined]
        np.testing.assert_allclose(got, _attention(q, k, v, causal) + 1.0, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_debug_bounds_on_the_device(device: None, monkeypatch: pytest.MonkeyPatch,
                                    cuda_modules: dict[str, object]) -> None:
    monkeypatch.setenv("TESSERA_DEBUG_BOUNDS", "1")
    for case in [stdlib_case("softmax_rows", None, F32, (37, 300), RNG),
                 stdlib_case("adam_update", None, F32, (77,), RNG)]:
        case.check(call(case, kernel_of(case, cuda_modules)))
    m = tessera.compile(ROW_SCALE + SHIFTED, target="cuda")
    x = RNG.standard_normal((100, 70)).astype(np.float32)
    with pytest.raises(TesseraRuntimeError) as info:
        m.row_scale[(3,)](x, np.zeros_like(x), alpha=2.0)  # type: ignore[attr-defined]
    assert info.value.diagnostic.message == ("kernel 'row_scale': tile.load of 'x' is out of bounds at index "
                                             "[128, 0] ('x' has shape (100, 70)), in program (2,)")
    with pytest.raises(TesseraRuntimeError) as info:  # a kernel of a @jit function's plan
        m.uses_shifted(RNG.standard_normal((10, 20)).astype(np.float32))  # type: ignore[attr-defined]
    assert "tile.load of 'x' is out of bounds at index [0, -3]" in info.value.diagnostic.message


@pytest.mark.gpu
def test_tessera_run_flash_attention_on_the_device(device: None) -> None:
    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "flash_attention.tsr"), "--target", "cuda"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("flash attention (2, 80, 32) bf16") and lines[0].endswith("ok"), r.stdout
    assert lines[1].startswith("row_scale") and float(lines[1].split()[-1]) < 1e-6, r.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.tsr")))
def test_tessera_run_every_example_on_the_device(device: None, example: str) -> None:
    # The same lines as on the CPU (their values are checked by the tests above and in test_cuda_runtime).
    path = str(ROOT / "examples" / example)
    on_cpu = CliRunner().invoke(main, ["run", path, "--target", "cpu"])
    on_gpu = CliRunner().invoke(main, ["run", path, "--target", "cuda"])
    assert on_gpu.exit_code == 0, on_gpu.stderr
    assert "TOO LARGE" not in on_gpu.stdout
    assert [ln.split()[:1] for ln in on_gpu.stdout.splitlines()] == [ln.split()[:1] for ln in on_cpu.stdout.splitlines()]
