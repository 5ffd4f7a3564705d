"""The CUDA runtime. Without a GPU: the one-line error of a missing driver or package, and how NumPy
views are grouped for copying. With one (tests marked `gpu`, skipped without a device): tile kernels
launched on fresh random NumPy arrays (strided, transposed, broadcast and misaligned views; outputs
poisoned) agree with the CPU backend, every example agrees with the reference evaluator through
device-resident plans, `tessera run --target cuda` runs, and failures name the driver call and kernel."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner
from gpu_cases import ROOT, example_case, example_names
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
from tessera.diagnostics import TesseraRuntimeError
from tessera.dtypes import BF16, DTYPES, F16, F32, INT32, DType, numpy_dtype
from tessera.ir.graph.reference import evaluate
from tessera.ir.tile.ops import Kernel
from tessera.runtime import cuda
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.executor import compile_function

NARROW_RTOL = {np.dtype(np.float16): 2.0 ** -10, np.dtype(ml_dtypes.bfloat16): 2.0 ** -7}


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


def test_unavailable_cuda_is_one_line() -> None:
    why = cuda.available()
    if why is not None:
        assert "\n" not in why and why
        with pytest.raises(TesseraRuntimeError) as info:
            cuda.device()
        assert info.value.diagnostic.message == why
    assert issubclass(cuda.CudaError, TesseraRuntimeError)


# ---------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module")
def rt() -> cuda.CudaRuntime:
    why = cuda.available()
    if why is not None:
        pytest.skip(f"no CUDA device: {why}")
    return cuda.CudaRuntime()


@pytest.fixture(scope="module")
def cpu() -> CpuRuntime:
    return CpuRuntime()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def agree(rt: cuda.CudaRuntime, cpu: CpuRuntime, k: Kernel, arrays: list[np.ndarray], outs: list[int],
          rtol: float = 2e-6, atol: float = 1e-6) -> None:
    want = [a.copy() for a in arrays]
    cpu.compile([k]).launch(k.name, want)
    got = [a.copy() for a in arrays]
    for i in outs:
        got[i][...] = np.array(np.nan).astype(got[i].dtype) if got[i].dtype.kind not in "biu" else -1
    rt.compile([k]).launch(k.name, got)
    for i in outs:
        g, w = got[i], want[i]
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"{k.name} output {i}")
        else:
            r = max(rtol, NARROW_RTOL.get(g.dtype, 0.0)) if rtol else 0.0
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=r, atol=atol,
                                       err_msg=f"{k.name} output {i}")


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
    agree(rt, cpu, softmax_rows(bn, online, name=f"softmax_{bn}_{online}"), [x, np.empty_like(x)], [1])


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["contiguous", "strided", "transposed", "misaligned"])
def test_elementwise_views(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator, layout: str) -> None:
    m, n = 37, 101
    out = np.empty((m, n), np.float32)
    if layout == "contiguous":
        x = rng.standard_normal((m, n)).astype(np.float32)
    elif layout == "strided":
        x = rng.standard_normal((2 * m, 3 * n)).astype(np.float32)[::2, ::3]
    elif layout == "transposed":
        x = rng.standard_normal((n, m)).astype(np.float32).T
    else:
        x = rng.standard_normal(m * n + 1).astype(np.float32)[1:].reshape(m, n)
        out = np.empty(m * n + 3, np.float32)[3:].reshape(m, n)
    bias = np.broadcast_to(rng.standard_normal(n).astype(np.float32), (m, n))
    agree(rt, cpu, elementwise_chain(block=(8, 40)), [x, bias, out], [2])
    xb = rng.standard_normal((19, 130)).astype(ml_dtypes.bfloat16)
    agree(rt, cpu, elementwise_chain(BF16, F16, block=(4, 64), name="chain_bf16"),
          [xb, rng.standard_normal((1, 130)).astype(np.float32), np.empty((19, 130), np.float16)], [2])


@pytest.mark.gpu
def test_reductions_dots_and_shared_memory(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator) -> None:
    x = rng.standard_normal((7, 100)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(100).astype(np.float32), rng.standard_normal(100).astype(np.float32)
    agree(rt, cpu, layernorm_rows(128, rows=3), [x, w, b, np.empty_like(x)], [3], rtol=1e-5)
    for block, bk, tr, dt in [((32, 32), 16, False, F32), ((16, 32), 16, True, F32), ((64, 64), 32, False, BF16)]:
        npdt = numpy_dtype(dt)
        xa = rng.standard_normal((45, 70)).astype(npdt)
        wa = rng.standard_normal((50, 70) if tr else (70, 50)).astype(npdt)
        agree(rt, cpu, matmul_epilogue(block, bk, dt, dt, transpose_b_block=tr, name=f"mm_{block[0]}_{tr}_{dt}"),
              [xa, wa, rng.standard_normal(50).astype(np.float32), np.empty((45, 50), npdt)], [3], rtol=1e-5,
              atol=1e-5)
    xn = rng.standard_normal((9, 50)).astype(np.float32)
    xn[2, 5] = np.nan
    agree(rt, cpu, argmax_rows(64), [xn, np.zeros((9, 1), np.int64)], [1])
    xs = rng.standard_normal((30, 21)).astype(np.float32)
    agree(rt, cpu, column_reduce("sum", (8, 16)), [xs, np.empty((1, 21), np.float32)], [1], rtol=1e-5)
    xi = rng.integers(-50, 50, (30, 21)).astype(np.int32)
    agree(rt, cpu, column_reduce("max", (8, 16), INT32, name="colmax_i32"), [xi, np.empty((1, 21), np.int32)], [1])
    ids = rng.integers(0, 10, 6).astype(np.int64)
    agree(rt, cpu, gather_rows(64), [ids, rng.standard_normal((10, 70)).astype(np.float32),
                                     np.empty((6, 70), np.float32)], [2])
    x3 = rng.standard_normal((2, 9, 13)).astype(np.float32)
    agree(rt, cpu, batched_scale_transpose((4, 8)), [x3, np.empty((2, 13, 9), np.float32)], [1])


@pytest.mark.gpu
def test_math_casts_and_integers(rt: cuda.CudaRuntime, cpu: CpuRuntime, rng: np.random.Generator) -> None:
    x = np.concatenate([rng.standard_normal(150) * 4, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 88.7]])
    x = x.astype(np.float32)
    for op in ("exp", "log", "tanh", "erf", "sigmoid", "silu", "sqrt", "rsqrt", "isnan"):
        xx = np.abs(x) if op in ("log", "sqrt", "rsqrt") else x
        out = np.empty(x.shape, np.bool_ if op == "isnan" else np.float32)
        agree(rt, cpu, unary(op, block=64, name=f"u_{op}"), [xx, out], [1], rtol=2.5e-7, atol=1e-37)
    int8 = DTYPES["int8"]
    for dt in (int8, INT32, DTYPES["int64"]):
        a = rng.integers(-100, 100, 200).astype(numpy_dtype(dt))
        c = rng.integers(-9, 9, 200).astype(numpy_dtype(dt))
        for op in ("add", "mul", "floordiv", "mod", "maximum"):
            agree(rt, cpu, binary(op, dt, block=64, name=f"{op}_{dt}"), [a, c, np.empty_like(a)], [2])
    vals = np.concatenate([rng.standard_normal(80) * 300, [0.5, 1.5, 2.5, -0.5, 1e30, -1e30, np.nan, np.inf]])
    casts: list[tuple[DType, DType]] = [(F32, BF16), (BF16, F32), (F32, F16), (F32, int8), (F32, INT32),
                                        (F32, DTYPES["fp8_e4m3"]), (F32, DTYPES["fp8_e5m2"])]
    for src, dst in casts:
        with np.errstate(all="ignore"):
            xs = vals.astype(numpy_dtype(src))
        agree(rt, cpu, cast_kernel(src, dst), [xs, np.empty(xs.shape, numpy_dtype(dst))], [1], rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize(("file", "fn"), example_names())
def test_examples_match_the_reference(rt: cuda.CudaRuntime, rng: np.random.Generator, file: str, fn: str) -> None:
    case = example_case(file, fn)
    compiled = compile_function(case.lowered.graph, target="cuda")
    compiled.poison = True
    xs = case.inputs(rng)
    got = compiled(*xs)
    same = evaluate(case.lowered.graph, xs)
    for g, s in zip(got, same):
        g64, s64 = g.astype(np.float64), s.astype(np.float64)
        assert not np.isnan(g64).any(), f"{case.id}: unwritten (NaN) elements"
        rel = np.linalg.norm(g64 - s64) / np.linalg.norm(s64)
        assert rel < (2e-3 if g.dtype == ml_dtypes.bfloat16 else 1e-5), f"{case.id}: {rel:.2e}"


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
