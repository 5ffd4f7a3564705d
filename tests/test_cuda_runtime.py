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
        agree(fresh, cpu, k, [x, np.empty_like(x)], [1], rtol=2.5e-7)
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
