"""stdlib/kernels.tsr against NumPy: fresh random inputs of ragged sizes, f32 and bf16, under the
kernel's own schedule and several others (`KernelFunction.with_schedule`)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import tessera
import tessera.runtime.kernels as kernels_runtime
from tessera.diagnostics import CompilationError, TesseraRuntimeError
from tessera.ir.tile.ops import Schedule

RNG = np.random.default_rng()
BF16 = np.dtype(ml_dtypes.bfloat16)
TOL = {np.dtype(np.float32): 1e-5, BF16: 1e-2}
KERNELS = ("softmax_rows", "matmul", "layernorm_rows", "rmsnorm_rows", "flash_attention", "rotary", "adam_update")
F32_BF16 = [np.dtype(np.float32), BF16]


@pytest.fixture(scope="module")
def kernels() -> dict[str, object]:
    m = tessera.compile(f"from stdlib.kernels import {', '.join(KERNELS)}\n")
    rt = m.runtime
    return {n: rt.module_attr("stdlib.kernels", n) for n in KERNELS}


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


# ---------------------------------------------------------------- norms, attention, rotary, Adam
#
# A functional kernel's result is allocated by the runtime (np.empty): `poisoned` makes those
# allocations NaN, so an element no program writes shows up as a mismatch.


class _PoisonedNumpy:
    """numpy, except that `empty` fills the new array with NaN and counts the calls."""

    def __init__(self) -> None:
        self.allocations = 0

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)

    def empty(self, shape: object, dtype: object = np.float64) -> np.ndarray:
        self.allocations += 1
        return np.full(shape, np.nan, dtype=dtype)


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> _PoisonedNumpy:
    shim = _PoisonedNumpy()
    monkeypatch.setattr(kernels_runtime, "np", shim)
    return shim


def _close(got: np.ndarray, want: np.ndarray, dtype: np.dtype, f32_tol: float = 1e-5) -> None:
    assert got.dtype == dtype and got.shape == want.shape
    tol = f32_tol if dtype == np.dtype(np.float32) else 2e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


ROW_SCHEDULES = (Schedule(block=(4, 64), warps=8), Schedule(block=(16, 16), warps=16))
ROW_SHAPES = ((37, 300), (1, 1), (9, 1024), (65, 7))


@pytest.mark.parametrize("dtype", F32_BF16)
def test_layernorm_rows(kernels: dict[str, object], poisoned: _PoisonedNumpy, dtype: np.dtype) -> None:
    for f in _schedules(kernels["layernorm_rows"], *ROW_SCHEDULES):
        for shape in ROW_SHAPES:
            eps = float(RNG.uniform(1e-6, 1e-3))
            x = (RNG.standard_normal(shape) * 3 + 1).astype(dtype)
            w, b = RNG.standard_normal(shape[1]).astype(dtype), RNG.standard_normal(shape[1]).astype(dtype)
            xf = x.astype(np.float64)
            d = xf - xf.mean(1, keepdims=True)
            want = d / np.sqrt((d * d).mean(1, keepdims=True) + eps) * w.astype(np.float64) + b.astype(np.float64)
            _close(f(x, w, b, eps=eps), want, dtype, 2e-5)  # type: ignore[operator]
    assert poisoned.allocations == 3 * len(ROW_SHAPES)


@pytest.mark.parametrize("dtype", F32_BF16)
def test_rmsnorm_rows(kernels: dict[str, object], poisoned: _PoisonedNumpy, dtype: np.dtype) -> None:
    for f in _schedules(kernels["rmsnorm_rows"], *ROW_SCHEDULES):
        for shape in ROW_SHAPES:
            eps = float(RNG.uniform(1e-6, 1e-3))
            x, w = (RNG.standard_normal(shape) * 3).astype(dtype), RNG.standard_normal(shape[1]).astype(dtype)
            xf = x.astype(np.float64)
            want = xf / np.sqrt((xf * xf).mean(1, keepdims=True) + eps) * w.astype(np.float64)
            _close(f(x, w, eps=eps), want, dtype, 2e-5)  # type: ignore[operator]
    assert poisoned.allocations == 3 * len(ROW_SHAPES)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    s = q64 @ k64.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    if causal:  # query i sees keys 0..i
        s = np.where(np.arange(k.shape[1])[None, :] <= np.arange(q.shape[1])[:, None], s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v64


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", F32_BF16)
def test_flash_attention(kernels: dict[str, object], poisoned: _PoisonedNumpy, dtype: np.dtype,
                         causal: bool) -> None:
    schedules = (Schedule(block=(16, 32), warps=4), Schedule(block=(32, 16), warps=8, stages=3))
    shapes = ((3, 37, 37, 24), (1, 1, 1, 8), (2, 70, 45, 16), (1, 20, 83, 32))  # (BH, S, SK, D)
    for f in _schedules(kernels["flash_attention"], *schedules):
        for bh, s, sk, d in shapes:
            q = RNG.standard_normal((bh, s, d)).astype(dtype)
            k, v = RNG.standard_normal((bh, sk, d)).astype(dtype), RNG.standard_normal((bh, sk, d)).astype(dtype)
            _close(f(q, k, v, causal=causal), _attention(q, k, v, causal), dtype)  # type: ignore[operator]
    assert poisoned.allocations == 3 * len(shapes)


@pytest.mark.parametrize("dtype", F32_BF16)
def test_rotary(kernels: dict[str, object], poisoned: _PoisonedNumpy, dtype: np.dtype) -> None:
    shapes = ((37, 11), (1, 1), (65, 64), (9, 3))  # (N, H): x is [N, 2H]
    for f in _schedules(kernels["rotary"], *ROW_SCHEDULES):
        for n, h in shapes:
            x = RNG.standard_normal((n, 2 * h)).astype(dtype)
            angle = RNG.uniform(0, 2 * math.pi, (n, h))
            cos, sin = np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)
            x1, x2 = x[:, :h].astype(np.float64), x[:, h:].astype(np.float64)
            c, s = cos.astype(np.float64), sin.astype(np.float64)
            _close(f(x, cos, sin), np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], 1), dtype)  # type: ignore[operator]
    assert poisoned.allocations == 3 * len(shapes)


def test_rotary_needs_an_even_last_axis(kernels: dict[str, object]) -> None:
    x, cs = RNG.standard_normal((4, 7)).astype(np.float32), RNG.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(TesseraRuntimeError, match="D == 2 \\* H"):
        kernels["rotary"](x, cs, cs)  # type: ignore[operator]


def _adam_reference(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, b1: float, b2: float,
                    eps: float, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps), m, v


@pytest.mark.parametrize("grad_dtype", F32_BF16)
def test_adam_update_in_place(kernels: dict[str, object], grad_dtype: np.dtype) -> None:
    k = kernels["adam_update"]
    for f, bn in ((k, 1024), (k.with_schedule(Schedule(block=(1, 128))), 128),  # type: ignore[attr-defined]
                  (k.with_schedule(Schedule(block=(1, 100), warps=2)), 100)):  # type: ignore[attr-defined]
        for n in (3001, 1, 1024, 77):
            # p, m and v are views at the front of NaN-poisoned buffers: the padding past the end
            # of the last (ragged) block must never be written
            bufs = [np.full(n + 37, np.nan, np.float32) for _ in range(3)]
            p, m, v = (b[:n] for b in bufs)
            p[:], m[:], v[:] = RNG.standard_normal(n), RNG.standard_normal(n), np.abs(RNG.standard_normal(n))
            want = (p.astype(np.float64), m.astype(np.float64), v.astype(np.float64))
            lr, b1, b2, eps = float(RNG.uniform(1e-4, 1e-2)), 0.9, float(RNG.uniform(0.99, 0.9999)), 1e-8
            for step in (1, 2, 3, 50):
                g = RNG.standard_normal(n).astype(grad_dtype)
                want = _adam_reference(*want[:1], g.astype(np.float64), *want[1:], lr, b1, b2, eps, step)
                f[(-(-n // bn),)](p, g, m, v, lr=lr, beta1=b1, beta2=b2, eps=eps, step=float(step))  # type: ignore[index]
                for got, w in zip((p, m, v), want):
                    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
            assert all(np.isnan(b[n:]).all() for b in bufs)
