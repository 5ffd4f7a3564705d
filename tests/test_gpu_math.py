"""The GPU's math expansions (tessera/codegen/mathlib64.py): f32 sin, cos, pow and fmod (under float
floordiv/mod), and exp, log, sin, cos, tanh, erf, pow, sigmoid, log1p, gelu on f64, lowered for the
cuda target and run in the lockstep SIMT interpreter (tests/gpu_interpreter.py) on fresh random
inputs with poisoned outputs and the special values (inf, nan, +-0, negatives, subnormals), against
NumPy / the math module in float64; the PTX of every such kernel assembles with ptxas; a @jit
function that draws `randn` (Box-Muller: log, sqrt, cos) lowers to PTX."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gpu_checks import PTXAS, needs_ptxas
from gpu_interpreter import run_kernel
from test_gpu_lowering import gpu
from tile_kernels import binary, unary

from tessera.codegen.ptx import ARCHS
from tessera.dtypes import F32, F64
from tessera.ir.tile.ops import Kernel
from tessera.runtime.cuda import emit_kernels_ptx

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0]
ERF = np.vectorize(math.erf, otypes=[np.float64])
ERFC = np.vectorize(math.erfc, otypes=[np.float64])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def run(k: Kernel, *inputs: np.ndarray) -> np.ndarray:
    """k's output for the inputs, through the GPU lowering (the output poisoned with NaN first)."""
    out = np.full(inputs[0].shape, np.nan, inputs[0].dtype)
    run_kernel(gpu(k), k, [*inputs, out])
    return out


def ulps(got: np.ndarray, want: np.ndarray, dt: type) -> np.ndarray:
    """|got - want| in units of the last place of `want` in dtype dt (0 where both are the same
    special value; inf where exactly one is NaN or they are different infinities)."""
    want = want.astype(np.float64)
    got = got.astype(np.float64)
    info = np.finfo(dt)
    with np.errstate(all="ignore"):
        spacing = np.maximum(np.abs(want), float(info.tiny)) * float(info.eps)
        err = np.abs(got - want) / spacing
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def assert_ulps(got: np.ndarray, want: np.ndarray, dt: type, bound: float, x: np.ndarray, what: str) -> None:
    e = ulps(got, want, dt)
    worst = int(np.argmax(e))
    assert e.max() <= bound, (f"{what}: {e.max():.3g} ulp at x = {x.flat[worst]!r}: got {got.flat[worst]!r}, "
                              f"want {want.flat[worst]!r}")


def f64_inputs(rng: np.random.Generator, scale: float) -> np.ndarray:
    return np.concatenate([rng.standard_normal(300) * scale, rng.uniform(-scale * 8, scale * 8, 100), SPECIAL,
                           [5e-324, -2.5e-310, 1e-300]])


# ---------------------------------------------------------------- f64


F64_CASES = {
    "exp": (lambda x: np.exp(x), 30.0, 2.0),
    "log": (lambda x: np.log(x), None, 1.0),
    "sin": (np.sin, 30.0, 2.0),
    "cos": (np.cos, 30.0, 2.0),
    "tanh": (np.tanh, 3.0, 2.0),
    "erf": (ERF, 2.0, 5.0),
    "sigmoid": (lambda x: np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x))), 10.0, 4.0),
    "log1p": (np.log1p, None, 3.0),
}


@pytest.mark.parametrize("op", sorted(F64_CASES))
def test_f64_unary_math_against_numpy(rng: np.random.Generator, op: str) -> None:
    ref, scale, bound = F64_CASES[op]
    if scale is None:  # positive arguments over the whole exponent range, and the specials
        x = np.concatenate([np.exp(rng.uniform(-740, 709, 400)), rng.uniform(0.5, 2.0, 100), SPECIAL,
                            [5e-324, 2.5e-310, -1e-300]])
        if op == "log1p":
            x = np.concatenate([x, -rng.uniform(0, 1, 50), rng.uniform(-1e-8, 1e-8, 50)])
    else:
        x = f64_inputs(rng, scale)
    got = run(unary(op, F64, block=64, name=f"f64_{op}"), x)
    with np.errstate(all="ignore"):
        want = ref(x)
    # exp, log, sin, cos, tanh: ~1e-15 relative (a few ulp) on every input.
    assert_ulps(got, want, np.float64, bound, x, f"f64 {op}")


def test_f64_erf_erfc_and_gelu_tails(rng: np.random.Generator) -> None:
    # The three pieces meet at |x| = 1 and 3; erfc (under gelu) keeps its relative accuracy where
    # 1 - erf would cancel (x -> -inf).
    x = np.concatenate([rng.uniform(0.9, 1.1, 100), rng.uniform(2.9, 3.1, 100), rng.uniform(1, 27, 200)])
    x = np.concatenate([x, -x])
    assert_ulps(run(unary("erf", F64, name="erf64"), x), ERF(x), np.float64, 4.0, x, "f64 erf")
    u = -np.concatenate([rng.uniform(0, 37, 400), rng.uniform(1.3, 1.5, 100), rng.uniform(4.1, 4.4, 100)])
    want = 0.5 * u * erfc_over_sqrt2(-u)
    assert_ulps(run(unary("gelu", F64, name="gelu64", approximate="none"), u), want, np.float64, 8.0, u,
                "f64 gelu")


def erfc_over_sqrt2(x: np.ndarray) -> np.ndarray:
    """erfc(x / sqrt2) for the exact quotient: v = x / sqrt2 rounds, and erfc's exponent amplifies the
    rounding by 2 v^2, so correct by exp(-2 v dv) with dv = x / sqrt2 - v in extended precision."""
    v = x / math.sqrt(2)
    dv = (x.astype(np.longdouble) / np.sqrt(np.longdouble(2)) - v).astype(np.float64)
    return ERFC(v) * np.exp(-2 * v * dv)


def pow_inputs(rng: np.random.Generator, dt: type) -> tuple[np.ndarray, np.ndarray]:
    """Random bases of either sign with random and integer exponents, and the grid of special values."""
    n = 300
    x = np.exp(rng.uniform(-8, 8, n)) * rng.choice([-1.0, 1.0], n)
    y = np.where(rng.random(n) < 0.5, rng.uniform(-30, 30, n), rng.integers(-40, 40, n).astype(np.float64))
    big_x = np.exp(rng.uniform(-700, 700, 100)) if dt == np.float64 else np.exp(rng.uniform(-80, 80, 100))
    big_y = rng.uniform(-1, 1, 100)
    sx, sy = np.meshgrid(SPECIAL + [0.25, 4.0, -0.25, -4.0], SPECIAL + [0.25, -0.25, 4.0, -4.0, 1e300, -1e300])
    with np.errstate(over="ignore"):  # +-1e300 becomes +-inf in f32: one more special value
        xs = np.concatenate([x, big_x, sx.ravel()]).astype(dt)
        ys = np.concatenate([y, big_y, sy.ravel()]).astype(dt)
    return xs, ys


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_pow_against_numpy_with_ieee_special_cases(rng: np.random.Generator, dt: type) -> None:
    x, y = pow_inputs(rng, dt)
    got = run(binary("pow", F64 if dt == np.float64 else F32, name=f"pow_{np.dtype(dt).name}"), x, y)
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(dt)
    # f64: extended-precision exp/log keep ~1e-16 even where |y log x| is near 700; f32: rounded once.
    e = ulps(got, want, dt)
    worst = int(np.argmax(e))
    assert e.max() <= (4.0 if dt == np.float64 else 1.0), (
        f"pow({x[worst]!r}, {y[worst]!r}) = {got[worst]!r}, NumPy {want[worst]!r}")
    # every special case bit for bit (signed zeros and infinities included)
    special = ~np.isfinite(want) | (want == 0) | ~np.isfinite(x) | ~np.isfinite(y) | (x == 0) | (y == 0)
    g, w = got[special], want[special]
    assert np.array_equal(np.signbit(g[~np.isnan(w)]), np.signbit(w[~np.isnan(w)]))
    np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------- f32 sin / cos / floordiv / mod


@pytest.mark.parametrize("op", ["sin", "cos"])
def test_f32_sin_cos_to_an_ulp(rng: np.random.Generator, op: str) -> None:
    x = np.concatenate([rng.standard_normal(300) * 4, rng.uniform(-1e5, 1e5, 300),
                        np.exp(rng.uniform(-90, 11.5, 200)) * rng.choice([-1, 1], 200), SPECIAL,
                        [1e-45, -1e-40, 1e5, 1.2e6]]).astype(np.float32)
    got = run(unary(op, F32, name=f"f32_{op}"), x)
    with np.errstate(all="ignore"):
        want = getattr(np, op)(x.astype(np.float64)).astype(np.float32)
    assert_ulps(got, want, np.float32, 1.0, x, f"f32 {op}")
    zeros = x == 0
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(x[zeros]) if op == "sin" else [False, False])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_sin_cos_of_huge_arguments_payne_hanek(rng: np.random.Generator, dt: type) -> None:
    # From 2^20 on the reduction uses the bits of 2/pi that x's exponent selects: ~1 ulp over the
    # whole range.
    top = 127 if dt == np.float32 else 1023
    x = (2.0 ** rng.uniform(17, top, 600) * rng.choice([-1, 1], 600)).astype(dt)
    x = np.concatenate([x, np.array([2.0 ** 20, -(2.0 ** 20), 1e22, float(np.finfo(dt).max)], dt)])
    ftype = F32 if dt == np.float32 else F64
    for op in ("sin", "cos"):
        got = run(unary(op, ftype, name=f"{op}_huge_{np.dtype(dt).name}"), x)
        want = getattr(np, op)(x.astype(np.float64)).astype(dt)
        assert_ulps(got, want, dt, 1.0, x, f"{np.dtype(dt).name} {op} (large)")
    if dt == np.float64:  # the double closest to a multiple of pi/2: r = 4.7e-19, to ~1e-15 relative
        hard = np.array([6381956970095103 * 2.0 ** 797])
        assert_ulps(run(unary("cos", F64, name="cos_hard"), hard), np.cos(hard), np.float64, 16.0, hard, "cos")


@pytest.mark.parametrize("op", ["mod", "floordiv"])
def test_f32_float_floordiv_and_mod_match_numpy_exactly(rng: np.random.Generator, op: str) -> None:
    n = 400
    a = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 40, n))).astype(np.float32)
    d = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))).astype(np.float32)
    sa, sd = np.meshgrid(SPECIAL + [1e-45, 7.5, -7.5, 3e38], SPECIAL + [1e-45, 2.5, -2.5, 1e-38])
    a = np.concatenate([a, np.float32(3e38) * rng.random(50, np.float32), sa.ravel().astype(np.float32)])
    d = np.concatenate([d, rng.uniform(1e-30, 1e-20, 50).astype(np.float32), sd.ravel().astype(np.float32)])
    got = run(binary(op, F32, name=f"f32_{op}"), a, d)
    with np.errstate(all="ignore"):
        want = (np.remainder if op == "mod" else np.floor_divide)(a, d)
    np.testing.assert_array_equal(got, want, err_msg=f"f32 {op}")
    ok = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[ok]), np.signbit(want[ok])), f"f32 {op}: signs of zeros"


# ---------------------------------------------------------------- PTX


def math_kernels() -> list[Kernel]:
    return [*(unary(op, F64, name=f"f64_{op}") for op in ("exp", "log", "sin", "cos", "tanh", "erf", "log1p")),
            unary("gelu", F64, name="f64_gelu", approximate="none"), unary("sin", F32, name="f32_sin"),
            unary("cos", F32, name="f32_cos"), binary("pow", F32, name="f32_pow"), binary("pow", F64, name="f64_pow"),
            binary("mod", F32, name="f32_mod"), binary("floordiv", F32, name="f32_floordiv")]


@needs_ptxas
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_math_kernels_assemble(arch: str, tmp_path: Path) -> None:
    src = tmp_path / "math.ptx"
    src.write_text(emit_kernels_ptx(math_kernels(), arch))
    r = subprocess.run([PTXAS, f"-arch={arch}", str(src), "-o", str(tmp_path / "math.cubin")],  # type: ignore[list-item]
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"ptxas -arch={arch} failed:\n{r.stderr}"


@needs_ptxas
def test_randn_inside_jit_lowers_to_ptx(tmp_path: Path) -> None:
    from tessera.api import compile as compile_program
    from tessera.ir.graph.passes.pipeline import optimize
    from tessera.ir.graph_to_schedule import partition
    from tessera.ir.schedule_to_tile import lower_plan

    m = compile_program("@jit\ndef noise(x: Tensor[1000, f32]) -> Tensor[1000, f32]:\n"
                        "    return x + randn((1000,), f32, seed=3)\n", target="reference")
    jit = m.noise
    graph = jit.specialized_graph({}, {"N": 1000})
    kernels = lower_plan(partition(optimize(graph)))
    ptx = emit_kernels_ptx(kernels, "sm_90a")
    assert "cos" not in ptx.split(".entry")[0]  # no library call: the expansion is inline
    src = tmp_path / "randn.ptx"
    src.write_text(ptx)
    r = subprocess.run([PTXAS, "-arch=sm_90a", str(src), "-o", str(tmp_path / "randn.cubin")],  # type: ignore[list-item]
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
