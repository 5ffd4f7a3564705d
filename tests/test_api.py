"""The Python API (spec §9): `tessera.load` / `tessera.compile` return modules whose functions take and
return NumPy arrays; compile errors raise `tessera.CompilationError` with the rendered diagnostics;
guards raise `tessera.TesseraRuntimeError` before any work."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tessera
from tessera.runtime.dispatch import JitFunction

ROOT = Path(__file__).resolve().parent.parent

SCALE = """
@jit
def scale(x: Tensor["N", "D", f32], *, alpha: float = 2.0) -> Tensor["N", "D", f32] where D % 4 == 0:
    return x * alpha


@jit
def pair(x: Tensor["N", f32]) -> (Tensor["N", f32], Tensor["N", f32]):
    return x + 1.0, x - 1.0


def twice(x: Tensor["N", "D", f32]):
    return scale(scale(x))

LIMIT = 4 * 2
"""


def test_exports() -> None:
    assert tessera.__version__ == "0.1.0"
    assert tessera.CompilationError.__module__ == "tessera.diagnostics"
    assert callable(tessera.load) and callable(tessera.compile)


def test_compile_returns_a_module_of_callables() -> None:
    m = tessera.compile(SCALE, target="reference")
    assert isinstance(m.scale, JitFunction)
    assert "scale" in dir(m) and "twice" in dir(m)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(m.scale(x), x * 2.0)
    np.testing.assert_array_equal(m.scale(x, alpha=0.5), x * 0.5)
    a, b = m.pair(x[0])
    np.testing.assert_array_equal(a, x[0] + 1.0)
    np.testing.assert_array_equal(b, x[0] - 1.0)
    np.testing.assert_array_equal(m.twice(x), x * 4.0)
    assert m.LIMIT == 8
    with pytest.raises(AttributeError):
        _ = m.nothing


def test_arguments_of_another_float_dtype_are_converted() -> None:
    m = tessera.compile('@jit\ndef ident(x: Tensor["N", bf16]) -> Tensor["N", bf16]:\n    return x\n',
                        target="reference")
    x = np.array([1.0, 1.0 + 2.0**-9, 2.5], dtype=np.float64)
    y = m.ident(x)
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y, x.astype(ml_dtypes.bfloat16))


def test_guards_run_before_any_work() -> None:
    m = tessera.compile(SCALE, target="reference")
    with pytest.raises(tessera.TesseraRuntimeError) as info:
        m.scale(np.ones((2, 6), np.float32))
    d = info.value.diagnostic
    assert d.code == "E-SHAPE"
    assert d.message == "D % 4 == 0 does not hold: D = 6 (x.shape[1])"
    with pytest.raises(tessera.TesseraRuntimeError) as info:
        m.scale(np.ones(8, np.float32))
    assert "has rank 1" in info.value.diagnostic.message


def test_compiled_artefacts_are_cached_per_extents_dtypes_and_static_args() -> None:
    m = tessera.compile(SCALE, target="reference")
    f = m.scale
    f(np.ones((2, 4), np.float32))
    f(np.ones((2, 4), np.float32) * 3)
    assert len(f._cache) == 1
    f(np.ones((5, 4), np.float32))
    f(np.ones((2, 4), np.float32), alpha=3.0)
    assert len(f._cache) == 3


def test_compile_errors_raise_with_rendered_text() -> None:
    with pytest.raises(tessera.CompilationError) as info:
        tessera.compile('def f():\n    return nope\n', path="bad.tsr")
    text = str(info.value)
    assert text.startswith("error[E-NAME]: name 'nope' is not defined")
    assert "  --> bad.tsr:2:12" in text and "  2 |     return nope" in text
    assert info.value.diagnostics[0].code == "E-NAME"


def test_load_an_example_and_call_its_jit_function() -> None:
    m = tessera.load(ROOT / "examples" / "softmax.tsr", target="reference")
    x = np.random.default_rng(1).standard_normal((4, 10)).astype(np.float32)
    y = m.row_softmax(x)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-6, atol=1e-7)


def test_the_hip_target_without_a_gpu_is_a_runtime_error() -> None:
    from tessera.runtime.hip import available

    why = available()
    if why is None:
        pytest.skip("an AMD GPU is available here")
    m = tessera.compile(SCALE, target="hip")
    with pytest.raises(tessera.TesseraRuntimeError) as info:
        m.scale(np.ones((2, 4), np.float32))
    assert info.value.diagnostic.message == why and "\n" not in why


def test_the_cuda_target_without_a_gpu_is_a_runtime_error() -> None:
    from tessera.runtime.cuda import available

    why = available()
    if why is None:
        pytest.skip("a CUDA device is available here")
    m = tessera.compile(SCALE, target="cuda")
    with pytest.raises(tessera.TesseraRuntimeError) as info:
        m.scale(np.ones((2, 4), np.float32))
    assert info.value.diagnostic.message == why and "\n" not in why


@pytest.mark.parametrize("shape", [(3, 8), (17, 64), (64, 1000)])
def test_the_cpu_target_agrees_with_the_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    cpu = tessera.load(ROOT / "examples" / "softmax.tsr", target="cpu")
    ref = tessera.load(ROOT / "examples" / "softmax.tsr", target="reference")
    np.testing.assert_allclose(cpu.row_softmax(x), ref.row_softmax(x), rtol=1e-5, atol=1e-7)
    xb = x.astype(ml_dtypes.bfloat16)
    got, want = cpu.row_softmax_bf16(xb), ref.row_softmax_bf16(xb)
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2**-7, atol=1e-6)
    m = tessera.compile(SCALE, target="cpu")
    np.testing.assert_array_equal(m.scale(x[:, :8], alpha=0.25), x[:, :8] * 0.25)
