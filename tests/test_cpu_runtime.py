"""The CPU backend end to end: hand-built tile kernels compiled through Target IR and LLVM, run on
NumPy arrays (strided, transposed and broadcast views; outputs poisoned with NaN first) and checked
against NumPy; the vector math over wide input ranges; the code cache."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
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

from tessera.codegen import llvm as llvm_codegen
from tessera.dtypes import BF16, DTYPES, F16, F32, F64, INT64, numpy_dtype
from tessera.runtime.cache import CodeCache
from tessera.runtime.cpu import CpuRuntime, LaunchError
from tessera.runtime.cpu_features import cpu_target_info

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> CpuRuntime:
    return CpuRuntime(cache=CodeCache(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def nan_array(shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """An output array poisoned with NaN, so unwritten elements show."""
    return np.full(shape, np.nan, np.float32).astype(dtype)


def gelu_ref(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.float64)
    return 0.5 * h * _erfc(-h / np.sqrt(2.0))


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize("layout", ["contiguous", "strided", "transposed"])
def test_elementwise_chain_ragged_views(rt: CpuRuntime, rng: np.random.Generator, layout: str) -> None:
    k = elementwise_chain(block=(8, 40))
    ck = rt.compile([k])
    m, n = 37, 101  # neither is a multiple of the block
    if layout == "contiguous":
        x = rng.standard_normal((m, n)).astype(np.float32)
    elif layout == "strided":
        x = rng.standard_normal((2 * m, 3 * n)).astype(np.float32)[::2, ::3]
    else:
        x = rng.standard_normal((n, m)).astype(np.float32).T
    bias_row = rng.standard_normal(n).astype(np.float32)
    bias = np.broadcast_to(bias_row, (m, n))  # stride 0 rows: never copied
    assert bias.strides[0] == 0
    y = nan_array((m, n), np.float32)
    ck.launch("chain", [x, bias[:1] if layout == "contiguous" else bias, y])
    xf = x.astype(np.float64)
    ref = gelu_ref(np.exp(xf * 0.5) * 1.5 + bias_row) - xf
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-6)


def test_elementwise_bf16_in_f16_out(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = elementwise_chain(BF16, F16, block=(4, 64), name="chain_bf16")
    ck = rt.compile([k])
    x = rng.standard_normal((19, 130)).astype(ml_dtypes.bfloat16)
    bias = rng.standard_normal((1, 130)).astype(np.float32)
    y = nan_array((19, 130), np.float16)
    ck.launch("chain_bf16", [x, bias, y])
    xf = x.astype(np.float64)
    ref = (gelu_ref(np.exp(xf * 0.5) * 1.5 + bias) - xf).astype(np.float16)
    np.testing.assert_allclose(y.astype(np.float32), ref.astype(np.float32), rtol=2e-3, atol=2e-3)


def test_output_view_writes_only_its_elements(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([unary("exp", block=16, name="exp16")])
    x = rng.standard_normal(50).astype(np.float32)
    big = np.full(150, -7.0, np.float32)
    ck.launch("exp16", [x, big[::3]])  # a strided output view
    np.testing.assert_allclose(big[::3], np.exp(x), rtol=2e-7)
    assert np.all(np.delete(big, np.arange(0, 150, 3)) == -7.0)


# ---------------------------------------------------------------- row reductions


@pytest.mark.parametrize(("bn", "online", "n"), [(256, False, 200), (64, True, 300), (128, True, 128)])
def test_softmax_rows(rt: CpuRuntime, rng: np.random.Generator, bn: int, online: bool, n: int) -> None:
    k = softmax_rows(bn, online, name=f"softmax_{bn}_{online}")
    ck = rt.compile([k])
    x = (rng.standard_normal((23, n)) * 5).astype(np.float32)
    x[3, :] = -np.inf  # a fully masked row: NaN, as NumPy
    x[5, 7] = np.inf
    y = nan_array(x.shape, np.float32)
    ck.launch(k.name, [x, y])
    with np.errstate(invalid="ignore"):
        e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
        ref = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=3e-6, atol=1e-7)


def test_softmax_bf16_rows(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = softmax_rows(96, True, dtype=BF16, name="softmax_bf16")
    ck = rt.compile([k])
    x = rng.standard_normal((9, 250)).astype(ml_dtypes.bfloat16)
    y = nan_array(x.shape, ml_dtypes.bfloat16)
    ck.launch("softmax_bf16", [x, y])
    xf = x.astype(np.float64)
    e = np.exp(xf - xf.max(1, keepdims=True))
    ref = (e / e.sum(1, keepdims=True)).astype(np.float32).astype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(y.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 4])
def test_layernorm_rows(rt: CpuRuntime, rng: np.random.Generator, rows: int) -> None:
    k = layernorm_rows(bn=128, rows=rows, name=f"layernorm_{rows}")
    ck = rt.compile([k])
    m, n = 13, 97
    x = (rng.standard_normal((m, n)) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y = nan_array((m, n), np.float32)
    ck.launch(k.name, [x, w, b, y])
    xf = x.astype(np.float64)
    mu = xf.mean(1, keepdims=True)
    ref = (xf - mu) / np.sqrt(((xf - mu) ** 2).mean(1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_argmax_first_index_and_nan(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([argmax_rows(64)])
    x = rng.integers(-3, 4, (7, 50)).astype(np.float32)  # many ties
    x[2, 11] = np.nan
    y = np.full((7, 1), -1, np.int64)
    ck.launch("argmax", [x, y])
    np.testing.assert_array_equal(y[:, 0], np.argmax(x, axis=1))


# ---------------------------------------------------------------- matmul


@pytest.mark.parametrize("epilogue", ["none", "bias_gelu"])
def test_matmul_ragged(rt: CpuRuntime, rng: np.random.Generator, epilogue: str) -> None:
    k = matmul_epilogue((32, 48), 16, epilogue=epilogue, name=f"mm_{epilogue}")
    ck = rt.compile([k])
    m, kk, n = 45, 37, 70  # ragged in M, K and N
    x = rng.standard_normal((m, kk)).astype(np.float32)
    w = rng.standard_normal((kk, n)).astype(np.float32)
    y = nan_array((m, n), np.float32)
    if epilogue == "none":
        ck.launch(k.name, [x, w, y])
        ref = x.astype(np.float64) @ w
    else:
        bias = rng.standard_normal(n).astype(np.float32)
        ck.launch(k.name, [x, w, bias, y])
        ref = gelu_ref(x.astype(np.float64) @ w + bias)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_matmul_transposed_operands(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = matmul_epilogue((16, 32), 8, epilogue="bias", transpose_b_block=True, name="mm_nt")
    ck = rt.compile([k])
    m, kk, n = 21, 19, 33
    x = rng.standard_normal((kk, m)).astype(np.float32).T  # a transposed view of x
    w = rng.standard_normal((n, kk)).astype(np.float32)  # w as [N, K]: the kernel transposes blocks
    bias = rng.standard_normal(2 * n).astype(np.float32)[::2]
    y = nan_array((m, n), np.float32)
    ck.launch("mm_nt", [x, w, bias, y])
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.T + bias, rtol=1e-4, atol=1e-4)


def test_matmul_bf16_in_f32_accumulate_bf16_out(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = matmul_epilogue((16, 32), 32, in_dtype=BF16, out_dtype=BF16, name="mm_bf16")
    ck = rt.compile([k])
    m, kk, n = 30, 70, 41
    x = rng.standard_normal((m, kk)).astype(ml_dtypes.bfloat16)
    w = rng.standard_normal((kk, n)).astype(ml_dtypes.bfloat16)
    bias = rng.standard_normal(n).astype(np.float32)
    y = nan_array((m, n), ml_dtypes.bfloat16)
    ck.launch("mm_bf16", [x, w, bias, y])
    ref = gelu_ref(x.astype(np.float64) @ w.astype(np.float64) + bias)
    # f32 accumulation, one bf16 rounding at the end: within one bf16 ulp (2^-8 relative) of exact.
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=2 ** -7, atol=1e-2)


# ---------------------------------------------------------------- math accuracy


def _wide_inputs(rng: np.random.Generator) -> np.ndarray:
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 1.0, -1.0,
                0.5, 0.625, 88.72, 89.0, -87.3, -103.9, -104.5, 1e-7, 10.05, -10.05]
    parts = [rng.uniform(-120, 120, 20000), rng.standard_normal(20000) * 3,
             np.exp(rng.uniform(-100, 88, 20000)), -np.exp(rng.uniform(-100, 88, 10000)), specials]
    return np.concatenate(parts).astype(np.float32)


def _ulp_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    r32 = ref.astype(np.float32)
    ulp = np.spacing(np.abs(r32)).astype(np.float64)
    with np.errstate(all="ignore"):
        return np.abs(got.astype(np.float64) - ref) / np.maximum(ulp, 2.0 ** -149)


_MATH = {
    "exp": (np.exp, 2), "log": (np.log, 3), "log1p": (np.log1p, 4), "tanh": (np.tanh, 3),
    "erf": (_erf, 4), "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), 4), "sqrt": (np.sqrt, 0.5),
    "rsqrt": (lambda x: 1 / np.sqrt(x), 2), "silu": (lambda x: x / (1 + np.exp(-x)), 5),
}


@pytest.mark.parametrize("fn", sorted(_MATH))
def test_math_f32_accuracy_and_specials(rt: CpuRuntime, rng: np.random.Generator, fn: str) -> None:
    ref_fn, max_ulp = _MATH[fn]
    ck = rt.compile([unary(fn, name=f"math_{fn}")])
    x = _wide_inputs(rng)
    y = nan_array(x.shape, np.float32)
    ck.launch(f"math_{fn}", [x, y])
    with np.errstate(all="ignore"):
        ref = ref_fn(x.astype(np.float64))
        if fn == "silu":
            ref[x == -np.inf] = -0.0  # the limit, not -inf * 0
        r32 = ref.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(r32), err_msg="NaN positions")
    inf = np.isinf(r32)
    np.testing.assert_array_equal(y[inf], r32[inf], err_msg="infinite results")
    normal = np.isfinite(r32) & (np.abs(r32) >= np.finfo(np.float32).tiny)
    err = _ulp_error(y[normal], ref[normal])
    assert err.max() <= max_ulp, f"{fn}: {err.max():.2f} ulp at x={x[normal][np.argmax(err)]!r}"
    # Subnormal results carry few bits; products like x * sigmoid(x) round twice there.
    sub = np.isfinite(r32) & ~normal
    np.testing.assert_allclose(y[sub], ref[sub], rtol=0, atol=128 * 2.0 ** -149)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_f32_accuracy(rt: CpuRuntime, rng: np.random.Generator, approximate: str) -> None:
    ck = rt.compile([unary("gelu", name=f"gelu_{approximate}", approximate=approximate)])
    x = np.concatenate([rng.standard_normal(20000) * 4, rng.uniform(-14, 14, 20000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30]]).astype(np.float32)
    y = nan_array(x.shape, np.float32)
    ck.launch(f"gelu_{approximate}", [x, y])
    xf = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if approximate == "none":
            ref = 0.5 * xf * _erfc(-xf / np.sqrt(2))
            rtol = np.full(x.shape, 2e-6)
        else:
            # x * sigmoid(2u) (1 + tanh(u) would cancel in the reference itself). The result's
            # condition number in u is about |2u|, and u carries f32 rounding: scale the tolerance.
            u = np.sqrt(2 / np.pi) * (xf + 0.044715 * xf ** 3)
            ref = xf / (1 + np.exp(-2 * u))
            rtol = 5e-7 * (2 + 2 * np.abs(u))
    ref[np.isneginf(xf)] = -0.0
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    special = ~np.isfinite(ref) & ~np.isnan(ref)
    np.testing.assert_array_equal(y[special], ref[special])
    np.testing.assert_array_equal(y[np.isinf(xf)], ref[np.isinf(xf)])
    ok = np.isfinite(ref) & np.isfinite(xf)
    err = np.abs(y[ok].astype(np.float64) - ref[ok])
    assert np.all(err <= rtol[ok] * np.abs(ref[ok]) + 128 * 2.0 ** -149), \
        f"worst x = {x[ok][np.argmax(err / (rtol[ok] * np.abs(ref[ok]) + 1e-300))]!r}"


def test_f64_math_uses_libm_accuracy(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([unary("erf", dtype=F64, name="erf64"), unary("tanh", dtype=F64, name="tanh64")])
    x = rng.standard_normal(1000) * 4
    for name, ref in (("erf64", _erf(x)), ("tanh64", np.tanh(x))):
        y = np.full_like(x, np.nan)
        ck.launch(name, [x, y])
        np.testing.assert_allclose(y, ref, rtol=1e-15, atol=1e-300)


# ---------------------------------------------------------------- integer semantics and casts


def test_integer_floordiv_mod_match_numpy(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([binary("floordiv", INT64, name="fdiv"), binary("mod", INT64, name="imod")])
    a = rng.integers(-50, 50, 300)
    d = rng.integers(-7, 8, 300)
    d[:5] = 0  # NumPy gives 0 (with a warning); compiled code must not trap
    a[5], d[5] = np.iinfo(np.int64).min, -1
    for name, ref in (("fdiv", np.floor_divide), ("imod", np.remainder)):
        z = np.full_like(a, 12345)
        ck.launch(name, [a, d, z])
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(z, ref(a, d))


def test_float_floordiv_mod_match_numpy(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([binary("floordiv", F32, name="ffdiv"), binary("mod", F32, name="fmod")])
    a = (rng.standard_normal(500) * 20).astype(np.float32)
    d = (rng.standard_normal(500) * 3).astype(np.float32)
    d[:3] = 0.0
    for name, ref in (("ffdiv", np.floor_divide), ("fmod", np.remainder)):
        z = nan_array(a.shape, np.float32)
        ck.launch(name, [a, d, z])
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(z, ref(a, d))


@pytest.mark.parametrize(("src", "dst"), [("f32", "bf16"), ("f32", "f16"), ("f32", "fp8_e4m3"),
                                          ("f32", "fp8_e5m2"), ("bf16", "f32"), ("fp8_e4m3", "f32"),
                                          ("fp8_e5m2", "bf16"), ("f64", "f32"), ("f32", "int32"),
                                          ("int64", "f32"), ("f32", "bool"), ("bool", "f32"),
                                          ("int32", "int8"), ("uint8", "int64")])
def test_casts_match_ml_dtypes(rt: CpuRuntime, rng: np.random.Generator, src: str, dst: str) -> None:
    s, d = DTYPES[src], DTYPES[dst]
    ck = rt.compile([cast_kernel(s, d)])
    base = np.concatenate([rng.standard_normal(500) * 100, rng.standard_normal(300) * 1e-3,
                           np.exp(rng.uniform(-30, 20, 300)) * rng.choice([-1, 1], 300),
                           [0.0, -0.0, 1.5, 2.5, -2.5, 448.0, 464.0, 480.0, 1e6, 57344.0, 61440.0,
                            2.0 ** -10, 3 * 2.0 ** -11, 2.0 ** -17, 65520.0, 3.4e38]])
    if s.is_float:
        base = np.concatenate([base, [np.inf, -np.inf, np.nan]])
    with np.errstate(all="ignore"):
        if s.name == "bool":
            x = base > 0
        elif s.is_int:
            info = np.iinfo(numpy_dtype(s))
            x = np.clip(np.round(base), info.min, info.max).astype(numpy_dtype(s))
        else:
            x = base.astype(np.float32).astype(numpy_dtype(s)) if s.name != "f64" else base
    y = np.zeros(x.shape, numpy_dtype(d))
    ck.launch(ck.names[0], [x, y])
    with np.errstate(all="ignore"):
        if s.is_float and d.is_int and d.name != "bool":
            ref = np.clip(np.nan_to_num(np.rint(x.astype(np.float64)), nan=0.0), np.iinfo(numpy_dtype(d)).min,
                          np.iinfo(numpy_dtype(d)).max).astype(numpy_dtype(d))
        elif s.is_float and d.is_float and s.name not in ("f32", "f64"):
            ref = x.astype(np.float32).astype(numpy_dtype(d))
        else:
            ref = x.astype(numpy_dtype(d))
    if d.is_float:
        np.testing.assert_array_equal(y.astype(np.float64), ref.astype(np.float64))
        # Same bits, including the sign of zeros and NaN payload classes.
        np.testing.assert_array_equal(np.signbit(y.astype(np.float32)), np.signbit(ref.astype(np.float32)))
    else:
        np.testing.assert_array_equal(y, ref)


# ---------------------------------------------------------------- launch checks and threading


def test_launch_rejects_wrong_dtype_rank_and_readonly(rt: CpuRuntime) -> None:
    ck = rt.compile([unary("exp", block=16, name="exp16")])
    x = np.zeros(10, np.float32)
    with pytest.raises(LaunchError, match="dtype float64"):
        ck.launch("exp16", [x.astype(np.float64), x.copy()])
    with pytest.raises(LaunchError, match="rank 2"):
        ck.launch("exp16", [x.reshape(2, 5), x.copy()])
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(LaunchError, match="read-only"):
        ck.launch("exp16", [x, ro])
    with pytest.raises(LaunchError, match="no compiled kernel"):
        ck.launch("nope", [x, x])


def test_threaded_launch_matches_inline(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = softmax_rows(512, False, name="softmax_threads")
    ck = rt.compile([k])
    x = rng.standard_normal((301, 500)).astype(np.float32)
    y1, y4 = nan_array(x.shape, np.float32), nan_array(x.shape, np.float32)
    ck.launch(k.name, [x, y1], threads=1)
    ck.launch(k.name, [x, y4], threads=4)
    np.testing.assert_array_equal(y1, y4)


def test_empty_grid_is_a_no_op(rt: CpuRuntime) -> None:
    ck = rt.compile([softmax_rows(64, False, name="softmax_empty")])
    ck.launch("softmax_empty", [np.zeros((0, 10), np.float32), np.zeros((0, 10), np.float32)])


# ---------------------------------------------------------------- the code cache


def test_cache_hits_skip_llvm_and_corrupt_entries_rebuild(tmp_path, rng: np.random.Generator) -> None:
    k = softmax_rows(128, True, name="softmax_cached")
    cache = CodeCache(tmp_path)
    before = llvm_codegen.compile_count()
    first = CpuRuntime(cache=cache).compile([k])
    assert llvm_codegen.compile_count() == before + 1 and not first.from_cache
    entries = list(tmp_path.glob("*.tobj"))
    assert len(entries) == 1

    cache.forget_memory()  # as a fresh process: only the disk entry is left
    second = CpuRuntime(cache=cache).compile([k])
    assert llvm_codegen.compile_count() == before + 1, "a cache hit must not run LLVM"
    assert second.from_cache
    x = rng.standard_normal((5, 300)).astype(np.float32)
    y = nan_array(x.shape, np.float32)
    second.launch("softmax_cached", [x, y])
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), rtol=3e-6)

    for damage in (lambda b: b[: len(b) // 2], lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), lambda b: b"junk"):
        entries[0].write_bytes(damage(entries[0].read_bytes()))
        cache.forget_memory()
        third = CpuRuntime(cache=cache).compile([k])
        assert not third.from_cache, "a damaged entry must be rebuilt"
        y = nan_array(x.shape, np.float32)
        third.launch("softmax_cached", [x, y])
        np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), rtol=3e-6)
    assert cache.discarded == 3
    assert llvm_codegen.compile_count() == before + 4


def test_cache_dir_from_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path / "tc"))
    rt = CpuRuntime(cache=CodeCache())
    rt.compile([unary("exp", block=32, name="exp_env")])
    assert len(list((tmp_path / "tc").glob("*.tobj"))) == 1
    assert not list((tmp_path / "tc").glob(".tmp-*")), "temporary files are renamed into place"


def test_unwritable_cache_dir_is_not_fatal(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rt = CpuRuntime(cache=CodeCache(blocker / "sub"))
    ck = rt.compile([unary("exp", block=32, name="exp_nodisk")])
    x = np.ones(5, np.float32)
    y = nan_array((5,), np.float32)
    ck.launch("exp_nodisk", [x, y])
    np.testing.assert_allclose(y, np.e, rtol=1e-7)


def test_narrow_vector_width_target(tmp_path, rng: np.random.Generator) -> None:
    """The AVX2 / SSE code paths (8 and 4 lanes) run on this machine too."""
    for bits in (128, 256):
        rt = CpuRuntime(target=cpu_target_info(bits), cache=CodeCache(tmp_path / str(bits)))
        k = matmul_epilogue((16, 24), 8, name=f"mm_{bits}")
        ck = rt.compile([k, softmax_rows(64, True, name=f"sm_{bits}")])
        x = rng.standard_normal((19, 13)).astype(np.float32)
        w = rng.standard_normal((13, 29)).astype(np.float32)
        bias = rng.standard_normal(29).astype(np.float32)
        y = nan_array((19, 29), np.float32)
        ck.launch(k.name, [x, w, bias, y])
        np.testing.assert_allclose(y, gelu_ref(x.astype(np.float64) @ w + bias), rtol=1e-4, atol=1e-4)
        s = nan_array((19, 13), np.float32)
        ck.launch(f"sm_{bits}", [x, s])
        e = np.exp(x - x.max(1, keepdims=True))
        np.testing.assert_allclose(s, e / e.sum(1, keepdims=True), rtol=3e-6)



# ---------------------------------------------------------------- other block ops


@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
def test_reductions_over_the_row_axis(rt: CpuRuntime, rng: np.random.Generator, kind: str) -> None:
    k = column_reduce(kind, (8, 24), name=f"col_{kind}")
    ck = rt.compile([k])
    x = rng.uniform(0.5, 1.5, (37, 50)).astype(np.float32)
    x[4, 3] = np.nan if kind in ("max", "min") else x[4, 3]
    y = nan_array((1, 50), np.float32)
    ck.launch(k.name, [x, y])
    ref = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}[kind](x.astype(np.float64), axis=0)
    np.testing.assert_allclose(y[0], ref, rtol=1e-5)


def test_integer_row_axis_reduction(rt: CpuRuntime, rng: np.random.Generator) -> None:
    k = column_reduce("max", (4, 16), dtype=DTYPES["int32"], name="col_max_i32")
    ck = rt.compile([k])
    x = rng.integers(-1000, 1000, (23, 40)).astype(np.int32)
    y = np.zeros((1, 40), np.int32)
    ck.launch(k.name, [x, y])
    np.testing.assert_array_equal(y[0], x.max(axis=0))


def test_gather_rows_with_item(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([gather_rows(32)])
    table = rng.standard_normal((11, 70)).astype(np.float32)
    ids = rng.integers(0, 11, 9)
    ids[2] = 50  # out of range: reads zeros, never faults
    out = nan_array((9, 70), np.float32)
    ck.launch("gather", [ids, table, out])
    ref = np.where((ids < 11)[:, None], table[np.minimum(ids, 10)], 0.0)
    np.testing.assert_array_equal(out, ref)


def test_reshape_and_transpose_views(rt: CpuRuntime, rng: np.random.Generator) -> None:
    ck = rt.compile([batched_scale_transpose((8, 16))])
    x = rng.standard_normal((3, 21, 35)).astype(np.float32)
    y = nan_array((3, 35, 21), np.float32)
    ck.launch("bst", [x, y])
    np.testing.assert_array_equal(y, 2 * x.transpose(0, 2, 1))


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f64", "int8", "uint8", "int32", "int64"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum", "cmp_lt"])
def test_binary_ops_across_dtypes(rt: CpuRuntime, rng: np.random.Generator, dtype: str, op: str) -> None:
    dt = DTYPES[dtype]
    name = op.split("_")[0]
    attrs = {"pred": "lt"} if name == "cmp" else {}
    ck = rt.compile([binary(name, dt, block=32, name=f"{op}_{dtype}", **attrs)])
    npdt = numpy_dtype(dt)
    if dt.is_int:
        info = np.iinfo(npdt)
        x = rng.integers(info.min, info.max, 100, endpoint=True).astype(npdt)
        y = rng.integers(info.min, info.max, 100, endpoint=True).astype(npdt)
    else:
        x = (rng.standard_normal(100) * 50).astype(npdt)
        y = (rng.standard_normal(100) * 50).astype(npdt)
        x[:3] = np.array([np.nan, np.inf, -0.0]).astype(npdt)
    out = np.zeros(100, np.bool_ if name == "cmp" else npdt)
    ck.launch(f"{op}_{dtype}", [x, y, out])
    ref_fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
              "minimum": np.minimum, "cmp": np.less}[name]
    with np.errstate(all="ignore"):
        ref = ref_fn(x, y)  # NumPy (and ml_dtypes) wrap integers and round narrow floats per op
    if ref.dtype.kind == "f" or dtype == "bf16":
        np.testing.assert_array_equal(out.astype(np.float64), ref.astype(np.float64))
    else:
        np.testing.assert_array_equal(out, ref)
