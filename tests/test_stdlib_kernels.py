"""stdlib/kernels.tsr against NumPy: fresh random inputs of ragged sizes, f32 and bf16, under the
kernel's own schedule and several others (`KernelFunction.with_schedule`)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import tessera
from tessera.diagnostics import CompilationError
from tessera.ir.tile.ops import Schedule

RNG = np.random.default_rng()
BF16 = np.dtype(ml_dtypes.bfloat16)
TOL = {np.dtype(np.float32): 1e-5, BF16: 1e-2}


@pytest.fixture(scope="module")
def kernels() -> dict[str, object]:
    m = tessera.compile("from stdlib.kernels import softmax_rows, matmul\n")
    rt = m.runtime
    return {n: rt.module_attr("stdlib.kernels", n) for n in ("softmax_rows", "matmul")}


def _schedules(kernel: object, *extra: Schedule) -> list[object]:
    return [kernel, *(kernel.with_schedule(s) for s in extra)]  # type: ignore[attr-defined]


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), BF16])
def test_softmax_rows(kernels: dict[str, object], dtype: np.dtype) -> None:
    k = kernels["softmax_rows"]
    for f in _schedules(k, Schedule(block=(4, 64), warps=8), Schedule(block=(16, 16), warps=16)):
        for shape in ((37, 300), (1, 1), (9, 1024), (65, 7)):
            x = (RNG.standard_normal(shape) * 3).astype(dtype)
            xf = x.astype(np.float64)
            e = np.exp(xf - xf.max(1, keepdims=True))
            y = f(x)  # type: ignore[operator]
            assert y.dtype == dtype and y.shape == shape
            np.testing.assert_allclose(y.astype(np.float64), e / e.sum(1, keepdims=True), rtol=TOL[dtype],
                                       atol=TOL[dtype])


MATMUL_SCHEDULES = (Schedule(block=(16, 32), k=8), Schedule(block=(32, 16), k=64, warps=8, stages=2))


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), BF16])
def test_matmul(kernels: dict[str, object], dtype: np.dtype) -> None:
    k = kernels["matmul"]
    for f in _schedules(k, *MATMUL_SCHEDULES):
        for m, kk, n in ((37, 29, 45), (1, 1, 1), (70, 128, 33)):
            a, b = RNG.standard_normal((m, kk)).astype(dtype), RNG.standard_normal((kk, n)).astype(dtype)
            want = a.astype(np.float64) @ b.astype(np.float64)
            got = f(a, b)  # type: ignore[operator]
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * math.sqrt(kk))


EPILOGUES = {
    ("bias",): lambda y, bias, res: y + bias,
    ("bias", "relu"): lambda y, bias, res: np.maximum(y + bias, 0),
    ("bias", "gelu", "residual"): lambda y, bias, res: 0.5 * (y + bias) * (1 + _erf((y + bias) / math.sqrt(2))) + res,
    ("gelu_tanh",): lambda y, bias, res: 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y**3))),
    ("silu", "residual"): lambda y, bias, res: y / (1 + np.exp(-y)) + res,
    ("sigmoid",): lambda y, bias, res: 1 / (1 + np.exp(-y)),
    ("tanh", "bias"): lambda y, bias, res: np.tanh(y) + bias,
}


@pytest.mark.parametrize("chain", list(EPILOGUES), ids="-".join)
def test_matmul_epilogue_chains(kernels: dict[str, object], chain: tuple[str, ...]) -> None:
    k = kernels["matmul"]
    for f in _schedules(k, MATMUL_SCHEDULES[0]):
        m, kk, n = 45, 37, 29
        a, b = RNG.standard_normal((m, kk)).astype(BF16), RNG.standard_normal((kk, n)).astype(BF16)
        bias, res = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal((m, n)).astype(np.float32)
        y = a.astype(np.float64) @ b.astype(np.float64)
        want = EPILOGUES[chain](y, bias.astype(np.float64), res.astype(np.float64))
        got = f(a, b, bias, res, epilogue=chain)  # type: ignore[operator]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        cast = f(a, b, bias, res, epilogue=(*chain, "bf16"))  # type: ignore[operator]
        assert cast.dtype == BF16
        np.testing.assert_allclose(cast.astype(np.float64), want, rtol=1e-2, atol=1e-2)


def test_matmul_epilogue_errors(kernels: dict[str, object]) -> None:
    k = kernels["matmul"]
    a = RNG.standard_normal((4, 4)).astype(np.float32)
    with pytest.raises(CompilationError, match="the 'bias' epilogue needs bias="):
        k(a, a, epilogue=("bias",))  # type: ignore[operator]
    with pytest.raises(CompilationError, match="unknown epilogue step swish"):
        k(a, a, epilogue=("swish",))  # type: ignore[operator]
