"""The HIP runtime. Without an AMD GPU: the one-line errors (no hip-python, no device, a failed call
naming the call and the kernel), hiprtc compiling code objects for gfx90a and caching them on disk
(where hip-python and the ROCm hiprtc library are installed), and the vendor-neutral half of the
runtime (tessera/runtime/gpu_common.py: argument blocks, NumPy launches with copies in and out,
device-resident plans, debug-bounds launches) driven through a host-memory "device" whose launches
run the wave64 Target IR in the lockstep interpreter. With one (tests marked `hip`, skipped without
a device): tile kernels on fresh random NumPy views agree with the CPU backend, every example agrees
with the reference through device-resident plans, kernels, streams, events and the code-object
cache work on the device."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner
from gpu_cases import ROOT, example_case, example_names
from gpu_checks import (
    VIEWS,
    InterpretedKernels,
    agree,
    check_elementwise_views,
    check_example,
    check_outputs,
    check_plan_debug_bounds,
    check_resident_plan,
    device_runtime,
    launcher,
    poisoned,
    view_of,
)
from tile_kernels import (
    argmax_rows,
    column_reduce,
    elementwise_chain,
    layernorm_rows,
    matmul_epilogue,
    softmax_rows,
)

import tessera
from tessera.cli import main
from tessera.diagnostics import TesseraRuntimeError
from tessera.dtypes import BF16
from tessera.ir.target.info import hip_target_info
from tessera.ir.tile.ops import Kernel
from tessera.runtime import hip
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.gpu_common import DeviceView, GpuCompiledFunction, launch_arguments

WAVE64 = hip_target_info("gfx90a")


# ---------------------------------------------------------------- without a GPU: errors


def test_unavailable_hip_is_one_line() -> None:
    why = hip.available()
    if why is None:
        pytest.skip("an AMD GPU is available here")
    assert "\n" not in why
    try:
        import hip as hip_python  # noqa: F401
    except ImportError:
        assert why == ("the hip target needs the hip-python package (pip install 'tessera[hip]', matching the "
                       "ROCm version), which is not installed")
    else:
        assert why.startswith(("no AMD GPU found (hipInit failed: hipError",
                               "the ROCm runtime library libamdhip64.so cannot be loaded")), why
    with pytest.raises(hip.HipError) as info:
        hip.HipRuntime()
    assert info.value.message == why and info.value.diagnostic.code == "E-RUNTIME"


class _Status(int):
    """A hip-python status enum: an int with a name."""

    def __new__(cls, code: int, name: str) -> Self:
        s = super().__new__(cls, code)
        s.name = name  # type: ignore[attr-defined]
        return s


class _FakeHip:
    """hip-python's `hip` with one failing call, to check how failures are reported."""

    @staticmethod
    def hipMalloc(size: int) -> tuple[_Status, int]:
        return _Status(2, "hipErrorOutOfMemory"), 0

    @staticmethod
    def hipGetErrorString(err: int) -> tuple[_Status, bytes]:
        return _Status(0, "hipSuccess"), b"out of memory"

    @staticmethod
    def hipDeviceSynchronize() -> tuple[_Status]:
        raise RuntimeError("failed to dlopen 'libamdhip64.so': cannot open shared object file\nmore")


def test_every_call_is_checked_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hip, "_modules", (_FakeHip, _FakeHip))
    with pytest.raises(hip.HipError) as info:
        hip._call("hipMalloc", 1 << 40, kernel="k_softmax")
    assert info.value.message == "hipMalloc failed (kernel k_softmax): hipErrorOutOfMemory: out of memory"
    with pytest.raises(hip.HipError) as info:
        hip._call("hipDeviceSynchronize")
    assert info.value.message.startswith("the ROCm runtime library libamdhip64.so cannot be loaded (failed to")
    assert "\n" not in info.value.message


def test_a_missing_hip_python_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hip, "_modules", None)
    monkeypatch.setattr(hip, "_import_error", None)
    monkeypatch.setitem(sys.modules, "hip", None)  # import hip -> ImportError
    with pytest.raises(hip.HipError, match=r"needs the hip-python package \(pip install 'tessera\[hip\]'"):
        hip.compile_code_object("", "gfx90a")


def _hiprtc_environment(tmp_path: Path) -> dict[str, str] | None:
    """The environment under which hip-python finds hiprtc: as installed, or - Debian's ROCm 5.x
    ships hiprtc inside libamdhip64 - through a libhiprtc.so link to it. None where neither works."""
    try:
        import hip as hip_python  # noqa: F401
    except ImportError:
        return None
    env = dict(os.environ)
    try:
        ctypes.CDLL("libhiprtc.so")
        return env
    except OSError:
        pass
    try:
        lib = ctypes.CDLL("libamdhip64.so.5")
    except OSError:
        return None
    if not hasattr(lib, "hiprtcCompileProgram"):
        return None
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libhiprtc.so").symlink_to(lib._name if os.path.isabs(lib._name) else
                                                    _find_library_path("libamdhip64.so.5"))
    env["LD_LIBRARY_PATH"] = f"{tmp_path / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


def _find_library_path(name: str) -> str:
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.strip().startswith(name + " "):
            return line.split("=>")[-1].strip()
    return f"/usr/lib/x86_64-linux-gnu/{name}"


HIPRTC_SCRIPT = """
import json, sys, time
sys.path.insert(0, "tests")
from gpu_cases import example_case
from tessera.runtime import hip
from tessera.runtime.cache import CodeCache
case = example_case("softmax.tsr", "row_softmax")
src = hip.emit_kernels_hip(case.lowered.kernels, "gfx90a")
cache = CodeCache()
t = time.perf_counter()
code = hip.compile_code_object(src, "gfx90a", cache=cache)
cold = time.perf_counter() - t
cache.forget_memory()  # the second compile reads the disk entry
t = time.perf_counter()
again = hip.compile_code_object(src, "gfx90a", cache=cache)
warm = time.perf_counter() - t
try:
    hip.compile_code_object('extern "C" __global__ void k() { undeclared_name; }', "gfx90a", cache=cache)
    error = None
except hip.HipError as ex:
    error = ex.message
print(json.dumps({"magic": code[:4].hex(), "size": len(code), "same": again == code, "cold": cold, "warm": warm,
                  "names": [k.name for k in case.lowered.kernels], "has_names": all(k.name.encode() in code
                  for k in case.lowered.kernels), "gfx90a": b"gfx90a" in code, "error": error}))
"""


def test_hiprtc_compiles_code_objects_and_caches_them_on_disk(tmp_path: Path) -> None:
    env = _hiprtc_environment(tmp_path)
    if env is None:
        pytest.skip("hip-python or the ROCm hiprtc library is not installed")
    env["TESSERA_CACHE_DIR"] = str(tmp_path / "cache")
    r = subprocess.run([sys.executable, "-c", HIPRTC_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["magic"] == "7f454c46" and out["gfx90a"] and out["has_names"], out  # an AMDGPU ELF code object
    assert out["same"] and out["warm"] < out["cold"], out
    assert len(list((tmp_path / "cache").glob("*.tobj"))) == 1
    assert out["error"].startswith("hiprtcCompileProgram failed (kernel tessera.hip): HIPRTC_ERROR_COMPILATION:")
    assert "undeclared_name" in out["error"] and "\n" not in out["error"]


# ---------------------------------------------------------------- without a GPU: the shared runtime


def interpreted(kernels: Sequence[Kernel]) -> InterpretedKernels:
    """A kernel set whose launches run the wave64 Target IR in the lockstep interpreter."""
    return InterpretedKernels(kernels, WAVE64, hip.HipError)


def test_launch_arguments_follow_the_kernel_abi() -> None:
    k = softmax_rows(256, False, name="sm")
    x = DeviceView(0x10000, (23, 200), (256, 1), np.dtype(np.float32))
    y = DeviceView(0x20000, (23, 200), (200, 1), np.dtype(np.float32))
    args = launch_arguments(hip.HipError, k, [x, y])
    assert args.programs == 23
    assert [v.value for v in args.values] == [0x10000, 23, 200, 256, 1, 0x20000, 23, 200, 200, 1, 23]
    block = ctypes.cast(args.pointer, ctypes.POINTER(ctypes.c_void_p))
    assert [block[i] for i in range(len(args.values))] == [ctypes.addressof(v) for v in args.values]
    with pytest.raises(hip.HipError, match=r"kernel sm: argument 1 \(y\) has dtype float64, the kernel takes f32"):
        launch_arguments(hip.HipError, k, [x, DeviceView(0x20000, (23, 200), (200, 1), np.dtype(np.float64))])
    with pytest.raises(hip.HipError, match="kernel sm takes 2 arrays, got 1"):
        launch_arguments(hip.HipError, k, [x])


@pytest.mark.parametrize("layout", ["contiguous", "strided", "transposed", "shared"])
def test_numpy_launches_copy_in_and_out(cpu: CpuRuntime, rng: np.random.Generator, layout: str) -> None:
    m, n = 37, 101
    k = elementwise_chain(block=(8, 40))
    x = view_of(rng, (m, n), "contiguous" if layout == "shared" else layout)
    bias = np.broadcast_to(rng.standard_normal(n).astype(np.float32), (m, n))
    if layout == "shared":  # input and output interleaved in one array: one device copy, written back whole
        both = rng.standard_normal((m, 2 * n)).astype(np.float32)
        arrays = [both[:, :n], bias, both[:, n:]]
    else:
        arrays = [x, bias, np.empty((m, n), np.float32)]
    want = [a.copy() for a in arrays]
    cpu.compile([k]).launch(k.name, want)
    arrays[2][...] = poisoned(arrays[2])
    before = arrays[0].copy()
    ks = interpreted([k])
    ks.launch(k.name, arrays)
    check_outputs(arrays, want, [2], k.name)
    np.testing.assert_array_equal(arrays[0], before)  # inputs are not copied back
    assert ks.device.syncs == 1 and all(b.freed for b in ks.device.buffers)
    assert len(ks.device.buffers) == (2 if layout == "shared" else 3)


def test_numpy_launch_errors_are_checked_before_any_copy(rng: np.random.Generator) -> None:
    k = softmax_rows(256, False, name="sm")
    ks = interpreted([k])
    x = rng.standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(hip.HipError, match="is written by the kernel but the array is read-only"):
        y = np.empty_like(x)
        y.flags.writeable = False
        ks.launch("sm", [x, y])
    with pytest.raises(hip.HipError, match=r"has rank 1, the kernel takes rank 2"):
        ks.launch("sm", [x, np.empty(40, np.float32)])
    assert ks.device.buffers == []


@pytest.mark.parametrize(("file", "fn"), example_names())
def test_device_resident_plans_match_the_reference(rng: np.random.Generator, file: str, fn: str) -> None:
    case = example_case(file, fn)
    check_resident_plan(case, interpreted(case.lowered.kernels or []), GpuCompiledFunction, rng)


class _InterpretedRuntime:
    """The process's HIP runtime stood in for: gfx90a, kernel sets interpreted on host memory."""

    arch = "gfx90a"

    def compile(self, kernels: Sequence[Kernel]) -> InterpretedKernels:
        return interpreted(kernels)


def test_debug_bounds_in_plans_without_a_gpu(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    monkeypatch.setattr(hip, "default_runtime", _InterpretedRuntime)
    monkeypatch.setenv("TESSERA_DEBUG_BOUNDS", "1")
    check_plan_debug_bounds("hip", rng)


# ---------------------------------------------------------------- on an AMD GPU


@pytest.fixture(scope="module")
def rt() -> hip.HipRuntime:
    return device_runtime(hip.available, hip.HipRuntime, "AMD GPU")


@pytest.mark.hip
def test_device_reports_itself(rt: hip.HipRuntime) -> None:
    dev = rt.device
    assert dev.name and dev.arch in ("gfx908", "gfx90a", "gfx940", "gfx941", "gfx942", "gfx1030", "gfx1100",
                                     "gfx1101", "gfx1102")
    assert dev.warp_size == hip_target_info(dev.arch).warp_size
    s = dev.stream()
    e0, e1 = dev.event(), dev.event()
    dev.record(e0, s)
    dev.record(e1, s)
    assert dev.elapsed_ms(e0, e1) >= 0.0
    dev.destroy_stream(s)
    buf = dev.to_device(np.arange(100, dtype=np.int32))
    np.testing.assert_array_equal(buf.to_host((100,), np.dtype(np.int32)), np.arange(100))
    buf.fill_bytes(0xFF)
    assert (buf.to_host((100,), np.dtype(np.int32)) == -1).all()
    buf.free()


@pytest.mark.hip
@pytest.mark.parametrize(("bn", "online", "n"), [(256, False, 200), (64, True, 300), (4096, False, 4000)])
def test_softmax_rows(rt: hip.HipRuntime, cpu: CpuRuntime, rng: np.random.Generator, bn: int, online: bool,
                      n: int) -> None:
    x = (rng.standard_normal((23, n)) * 5).astype(np.float32)
    agree(launcher(rt), cpu, softmax_rows(bn, online, name=f"softmax_{bn}_{online}"), [x, np.empty_like(x)], [1])


@pytest.mark.hip
@pytest.mark.parametrize("layout", VIEWS)
def test_elementwise_views(rt: hip.HipRuntime, cpu: CpuRuntime, rng: np.random.Generator, layout: str) -> None:
    check_elementwise_views(launcher(rt), cpu, rng, layout)


@pytest.mark.hip
def test_reductions_dots_and_shared_memory(rt: hip.HipRuntime, cpu: CpuRuntime, rng: np.random.Generator) -> None:
    x = rng.standard_normal((7, 100)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(100).astype(np.float32), rng.standard_normal(100).astype(np.float32)
    agree(launcher(rt), cpu, layernorm_rows(128, rows=3), [x, w, b, np.empty_like(x)], [3], rtol=1e-5)
    a = rng.standard_normal((45, 70)).astype(ml_dtypes.bfloat16)
    bm = rng.standard_normal((70, 50)).astype(ml_dtypes.bfloat16)
    agree(launcher(rt), cpu, matmul_epilogue((64, 64), 32, BF16, BF16, name="mm_bf16"),
          [a, bm, rng.standard_normal(50).astype(np.float32), np.empty((45, 50), a.dtype)], [3], rtol=1e-5)
    xs = rng.standard_normal((30, 21)).astype(np.float32)
    agree(launcher(rt), cpu, column_reduce("sum", (8, 16)), [xs, np.empty((1, 21), np.float32)], [1], rtol=1e-5)
    agree(launcher(rt), cpu, argmax_rows(64), [xs, np.zeros((30, 1), np.int64)], [1])


@pytest.mark.hip
@pytest.mark.parametrize(("file", "fn"), example_names())
def test_examples_match_the_reference(rt: hip.HipRuntime, rng: np.random.Generator, file: str, fn: str) -> None:
    case = example_case(file, fn)
    compiled = GpuCompiledFunction(case.lowered.plan, case.lowered.kernels, rt.compile(case.lowered.kernels),
                                   poison=True)
    xs = case.inputs(rng)
    check_example(case, xs, compiled(*xs))


@pytest.mark.hip
def test_jit_functions_and_kernels_on_the_hip_target(rt: hip.HipRuntime, rng: np.random.Generator) -> None:
    m = tessera.load(ROOT / "examples" / "softmax.tsr", target="hip")
    x = rng.standard_normal((33, 500)).astype(np.float32)
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    np.testing.assert_allclose(m.row_softmax(x), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    k = tessera.compile("from stdlib.kernels import softmax_rows\n", target="hip")
    f = k.runtime.module_attr("stdlib.kernels", "softmax_rows")
    np.testing.assert_allclose(f(x), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "softmax.tsr"), "--target", "hip"])
    assert r.exit_code == 0, r.stderr


@pytest.mark.hip
def test_launch_errors_name_the_kernel(rt: hip.HipRuntime) -> None:
    k = softmax_rows(256, False, name="sm_err")
    ks = rt.compile([k])
    with pytest.raises(TesseraRuntimeError, match=r"kernel sm_err: argument 0 \(x\) has dtype float64"):
        ks.launch("sm_err", [np.zeros((4, 8)), np.zeros((4, 8), np.float32)])
    with pytest.raises(hip.HipError, match="no compiled kernel 'nope'"):
        ks.launch("nope", [])
    assert rt.compile([k]) is ks  # loaded modules are kept by the kernels' text
