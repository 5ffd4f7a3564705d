"""A layernorm's mean and variance in one cross-thread reduction on the GPU (tessera/ir/gpu_moments.py).

The fused form against the two-pass form (gpu_moments.ENABLED off) and float64 NumPy, through the
lockstep SIMT interpreter (tests/gpu_interpreter.py, races detected) with poisoned outputs: f32 and
bf16 rows held by one warp and by several, ragged rows (which keep the two-pass form), rows with a
large mean (1e4, deviation 1), rows with NaN and infinities. FileCheck pins the fused reduction in the
Target IR: one barrier where the two-pass form has two, the M2 merges as FMAs after the shuffles.
The fusion is off by default (slower on the H100, see the module); these tests switch it on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from filecheck_util import filecheck
from test_gpu_memory import BF, INFO, SRC, gpu_plan, run_interpreted

from tessera.dtypes import F32, INT64
from tessera.ir import gpu_moments
from tessera.ir.target.printer import print_function
from tessera.ir.tile.builder import TileBuilder
from tessera.ir.tile.ops import Kernel, Schedule
from tessera.ir.tile_to_target import lower_kernel

EPS = 1e-5


def _layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + EPS) * w.astype(np.float64) + b.astype(np.float64)


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gpu_moments") / "rows.tsr"
    p.write_text(SRC)
    return p


@contextmanager
def _fusion(on: bool) -> Iterator[None]:
    saved, gpu_moments.ENABLED = gpu_moments.ENABLED, on
    try:
        yield
    finally:
        gpu_moments.ENABLED = saved


def _both(src: Path, fn: str, dims: dict[str, int], xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows with the fused reduction and with the two-pass form."""
    out = []
    for on in (True, False):
        with _fusion(on):
            out.append(run_interpreted(*gpu_plan(src, fn, dims)[:2], xs)[0])
    return out[0], out[1]


def _target_ir(src: Path, fn: str, dims: dict[str, int], fused: bool = True) -> str:
    with _fusion(fused):
        _, kernels, _ = gpu_plan(src, fn, dims)
        return "\n".join(print_function(lower_kernel(k, INFO)) for k in kernels)


def _err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max())


# (function, N, M): a few threads a row (several rows a warp), one warp a row and several (several
# rows a program); M not a power of two: ragged rows (the two-pass form).
CASES = [("layernorm_f32", 6, 8), ("layernorm_bf16", 7, 64), ("layernorm_f32", 5, 1024),
         ("layernorm_f32", 2, 2048), ("layernorm_bf16", 3, 2048), ("layernorm_bf16", 9, 1024),
         ("layernorm_f32", 4, 200), ("layernorm_bf16", 3, 1000)]


@pytest.mark.parametrize(("fn", "n", "m"), CASES)
def test_fused_moments_match_float64(src: Path, fn: str, n: int, m: int) -> None:
    rng = np.random.default_rng()
    dt = BF if fn.endswith("bf16") else np.dtype(np.float32)
    x = (rng.standard_normal((n, m)) * 2 + 0.5).astype(dt)
    w, b = rng.standard_normal(m).astype(dt), rng.standard_normal(m).astype(dt)
    fused, two_pass = _both(src, fn, {"N": n, "M": m}, [x, w, b])
    want = _layernorm(x, w, b)
    assert not np.isnan(fused.astype(np.float64)).any()
    rtol, atol = (2.0**-8, 1e-3) if dt == BF else (2e-6, 2e-6)  # bf16: the output's rounding
    np.testing.assert_allclose(fused.astype(np.float64), want, rtol=rtol, atol=atol)
    assert _err(fused, want) <= 1.25 * _err(two_pass, want) + atol


@pytest.mark.parametrize("m", [1024, 2048])
def test_large_mean_rows(src: Path, m: int) -> None:
    rng = np.random.default_rng()
    # mean 1e4, deviation 1 (and -3e4, deviation 1e-2): a sum-of-squares form would lose every
    # digit; the fused one stays within the two-pass form's error, which the rounding of the mean to
    # f32 dominates (an ulp of 1e4 is 1e-3 of the deviation).
    x = (rng.standard_normal((4, m)) + 1e4).astype(np.float32)
    x[1] = (rng.standard_normal(m) * 1e-2 - 3e4).astype(np.float32)
    w, b = rng.standard_normal(m).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    fused, two_pass = _both(src, "layernorm_f32", {"N": 4, "M": m}, [x, w, b])
    want = _layernorm(x, w, b)
    for r in range(4):
        e_fused, e_two = _err(fused[r], want[r]), _err(two_pass[r], want[r])
        assert e_fused <= 1.25 * e_two + 1e-5, (r, e_fused, e_two)


def test_nan_and_infinite_rows(src: Path) -> None:
    m, rng = 2048, np.random.default_rng()
    x = rng.standard_normal((5, m)).astype(np.float32)
    x[0, 17] = np.nan
    x[1, 1000] = np.inf
    x[2, 3] = -np.inf
    x[3, 5], x[3, 2000] = np.inf, -np.inf
    w, b = rng.standard_normal(m).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    with np.errstate(invalid="ignore"):
        want = _layernorm(x, w, b)
    fused, two_pass = _both(src, "layernorm_f32", {"N": 5, "M": m}, [x, w, b])
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(want))
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(two_pass))
    assert _err(fused[4], want[4]) < 5e-5
    xb = x.astype(BF)
    fused, _ = _both(src, "layernorm_bf16", {"N": 5, "M": m}, [xb, w.astype(BF), b.astype(BF)])
    np.testing.assert_array_equal(np.isnan(fused.astype(np.float32)), np.isnan(want))


def test_fused_reduction_target_ir(src: Path) -> None:
    dims = {"N": 1024, "M": 8192}  # one row a program (too few rows for more): 16 warps, 16 elements a thread
    fused = _target_ir(src, "layernorm_bf16", dims)
    # Each thread's point (its sum times 1/16), its squared deviations as FMAs and their sum, then
    # each butterfly step shuffles the three and merges them about the midpoint (k = 16 elements a
    # side: k * spread + (2 * cross + S_a + S_c)); one barrier, then lane l reads warp l's three
    # values and a butterfly over 16 lanes merges the warps (up to two groups of 4096); then
    # mean = m + r / 8192.
    filecheck(fused, r"""
        CHECK: [[S:%[0-9]+]] = vreduce {{%[0-9]+}} {kind = "add"} : f32
        CHECK: [[M:%[0-9]+]] = mul [[S]], %c0.0625 : f32
        CHECK: fma {{%[0-9]+}}, {{%[0-9]+}}, {{%[0-9]+}} : <8 x f32>
        CHECK: [[Q:%[0-9]+]] = vreduce {{%[0-9]+}} {kind = "add"} : f32
        CHECK: [[R:%[0-9]+]] = vreduce {{%[0-9]+}} {kind = "add"} : f32
        CHECK: shuffle_xor [[M]] {mask = 16} : f32
        CHECK: shuffle_xor [[Q]] {mask = 16} : f32
        CHECK: shuffle_xor [[R]] {mask = 16} : f32
        CHECK: mul {{%[0-9]+}}, %c0.5 : f32
        CHECK: fma {{%[0-9]+}}, %c2.0, {{%[0-9]+}} : f32
        CHECK: fma {{%[0-9]+}}, %c16.0, {{%[0-9]+}} : f32
        CHECK: shuffle_xor {{%[0-9]+}} {mask = 1} : f32
        CHECK: barrier
        CHECK-NOT: barrier
        CHECK: [[WM:%[0-9]+]] = load {{%[0-9]+}} : f32
        CHECK: load {{%[0-9]+}} : f32
        CHECK: load {{%[0-9]+}} : f32
        CHECK: shuffle_xor [[WM]] {mask = 8} : f32
        CHECK: fma {{%[0-9]+}}, %c512.0, {{%[0-9]+}} : f32
        CHECK: shuffle_xor {{%[0-9]+}} {mask = 1} : f32
        CHECK: fma {{%[0-9]+}}, %c4096.0, {{%[0-9]+}} : f32
        CHECK: mul {{%[0-9]+}}, %c0.0001220703125 : f32
        CHECK-NOT: {{barrier|shuffle_xor}}
    """)
    two_pass = _target_ir(src, "layernorm_bf16", dims, fused=False)
    assert (fused.count("barrier"), two_pass.count("barrier")) == (1, 2)
    assert (fused.count("shuffle_xor"), two_pass.count("shuffle_xor")) == (27, 10)


def test_off_by_default(src: Path) -> None:
    assert not gpu_moments.ENABLED
    dims = {"N": 1024, "M": 8192}
    assert _target_ir(src, "layernorm_bf16", dims, fused=False).count("barrier") == 2


def test_ragged_rows_keep_two_passes(src: Path) -> None:
    # 1000 columns in a 1024-wide block: masked lanes, the divisor is not the block's width.
    ir = _target_ir(src, "layernorm_bf16", {"N": 3, "M": 1000})
    assert ir == _target_ir(src, "layernorm_bf16", {"N": 3, "M": 1000}, fused=False)


def _odd_width_layernorm(width: int) -> Kernel:
    """A layernorm over rows of `width` (not a power of two) with the constant divisor `width`: the
    pattern matches, but the row's slots do not split evenly over its threads."""
    b = TileBuilder("ln_odd", Schedule(block=(1, width)))
    x = b.param("x", 2, F32, "in")
    y = b.param("y", 2, F32, "out")
    b.grid(b.extent("M", x, 0))
    b.extent("N", x, 1)
    r0, zero, n = b.program_id(0), b.const(0, INT64), b.const(float(width), F32)
    xb = b.load(x, r0, zero, shape=(1, width))
    d = b.op("sub", xb, b.op("div", b.reduce(xb, "sum", 1), n))
    var = b.op("div", b.reduce(b.op("mul", d, d), "sum", 1), n)
    b.store(y, r0, zero, value=b.op("mul", d, b.op("rsqrt", b.op("add", var, b.const(EPS, F32)))))
    return b.build()


def test_uneven_slots_keep_two_passes() -> None:
    # 40 columns: 10 vectors of 4 over 8 threads, some threads hold a masked slot; the matched
    # pattern falls back to the two-pass form whole (no op of it left unlowered).
    k = _odd_width_layernorm(40)
    with _fusion(True):
        fused = print_function(lower_kernel(k, INFO))
    assert fused.count("vreduce") == 2
    with _fusion(False):
        assert fused == print_function(lower_kernel(k, INFO))
