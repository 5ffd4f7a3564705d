"""The host runtime: undecorated functions evaluated over the checked AST with Python semantics, tensor
builtins on NumPy with Tessera's dtype rules, `print` formatting, `.npy` IO, seeded randomness, and
run-time errors as diagnostics with spans. Every example's main() runs on the reference target."""

from __future__ import annotations

import io
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tessera
from tessera.diagnostics import TesseraRuntimeError, render_text
from tessera.frontend.check import check_text
from tessera.runtime.values import format_value

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tsr"))
MAIN_EXAMPLES = [p for p in EXAMPLES if "\ndef main(" in p.read_text()]


def run_main(text: str, seed: int = 0, target: str = "reference") -> str:
    out = io.StringIO()
    m = tessera.compile(text, path="prog.tsr", target=target, seed=seed, out=out)
    m.main()
    return out.getvalue()


# ---------------------------------------------------------------- the examples


def test_every_example_has_a_main() -> None:
    assert {p.name for p in EXAMPLES} == {p.name for p in MAIN_EXAMPLES}


@pytest.mark.parametrize("target", ["reference", "cpu"])
@pytest.mark.parametrize("path", MAIN_EXAMPLES, ids=lambda p: p.stem)
def test_example_main_runs(path: Path, target: str) -> None:
    out = io.StringIO()
    m = tessera.load(path, target=target, out=out)
    m.main()
    text = out.getvalue()
    assert text.strip(), f"{path.name} printed nothing"
    first = text.split()[0]
    assert first in {"attention", "scaling", "layernorm", "mlp", "softmax", "transformer_block", "flash"}, text
    assert "nan" not in text, text


def test_transformer_block_example_agrees_between_cpu_and_reference() -> None:
    sums = {}
    for target in ("reference", "cpu"):
        out = io.StringIO()
        tessera.load(ROOT / "examples" / "transformer_block.tsr", target=target, out=out).main()
        line = out.getvalue().strip().splitlines()[0]
        assert line.startswith("transformer_block (2, 128, 256) -> (2, 128, 256) checksum ")
        sums[target] = float(line.rsplit(" ", 1)[1])
        assert np.isfinite(sums[target])
    # A sum over 65536 bf16 outputs: a few roundings of bf16 apart at most.
    assert abs(sums["cpu"] - sums["reference"]) <= 1e-2 * 65536 * 2.0**-8


def test_effects_example_prints_inside_suspend_and_counts_kept_elements() -> None:
    out = io.StringIO()
    tessera.load(ROOT / "examples" / "effects.tsr", target="reference", out=out).main()
    lines = out.getvalue().splitlines()
    assert lines[0] == "scaling (16,)"
    kept = float(lines[1].split()[1])
    assert lines[1].endswith("of 16") and 0 < kept <= 16 and kept == int(kept)


# ---------------------------------------------------------------- host semantics


def test_control_flow_tuples_and_strings() -> None:
    text = """
def collatz(n: int):
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n = n // 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps


def evens(n: int):
    total = 0
    for i in range(n):
        if i % 2 == 1:
            continue
        if i > 6:
            break
        total += i
    return total, "sum" + "!"


def main():
    a, (b, c) = 1, (2.5, "x")
    t, s = evens(20)
    print(collatz(27), t, s, a, b, c, 7 / 2, 7 // 2, -7 % 3, 2 ** 10, 1e-5)
    print((1, 2, 3), (4,), [1, "a"], True and False, None, 3 if a > 0 else 4, 1 < 2 <= 2)
"""
    lines = run_main(text).splitlines()
    assert lines[0] == "111 12 sum! 1 2.5 x 3.5 3 2 1024 1e-05"
    assert lines[1] == "(1, 2, 3) (4,) [1, 'a'] False None 3 True"


def test_print_formats_tensors_like_numpy_and_bf16_as_its_float_value() -> None:
    text = """
def main():
    x = reshape(arange(6), (2, 3))
    print(x)
    print(cast(x, f32) / 4.0)
    print(cast(full((2,), 0.1, f32), bf16))
    print(sum(x), mean(cast(x, f32)), x.shape, x.shape[1])
"""
    lines = run_main(text).splitlines()
    assert lines[0:2] == ["[[0 1 2]", " [3 4 5]]"]
    assert lines[2:4] == ["[[0.   0.25 0.5 ]", " [0.75 1.   1.25]]"]
    assert lines[4] == "[0.10009766 0.10009766]"  # bf16(0.1) is 0.10009765625
    assert lines[5] == "15 2.5 (2, 3) 3"


def test_format_value_of_host_values() -> None:
    assert format_value((2, 128, 256)) == "(2, 128, 256)"
    assert format_value(np.asarray(1.5, dtype=ml_dtypes.bfloat16)) == "1.5"
    assert format_value(np.float32(0.1)) == "0.1"
    assert format_value(float("inf")) == "inf"
    assert format_value(("a", 1.0)) == "('a', 1.0)"


def test_dtype_rules_follow_the_language_not_numpy() -> None:
    m = tessera.compile("""
def f():
    x = ones((4,), bf16)
    i = arange(4)
    return x * 0.5, i / 2, i * 1.5, sum(x), max(x), cast(x, f32) @ ones((4, 2), f32), x + ones((4,), f16)
""", target="reference")
    half, div, scaled, total, top, mm, mixed = m.f()
    assert half.dtype == ml_dtypes.bfloat16  # Python scalars are weak
    assert div.dtype == np.float32 and scaled.dtype == np.float32  # int / and int * float give f32
    assert total.dtype == np.float32 and float(total) == 4.0  # sums accumulate in f32
    assert top.dtype == ml_dtypes.bfloat16  # max keeps the dtype
    assert mm.shape == (2,) and mm.dtype == np.float32
    assert mixed.dtype == np.float32  # f16 with bf16 promotes to f32


def test_randn_is_pcg64_keyed_by_the_seed() -> None:
    m = tessera.compile("""
def f():
    return randn((3, 4), f32, seed=5), rand((5,), f64, seed=9)
""", target="reference")
    a, u = m.f()
    np.testing.assert_array_equal(a, np.random.Generator(np.random.PCG64(5)).standard_normal((3, 4))
                                  .astype(np.float32))
    np.testing.assert_array_equal(u, np.random.Generator(np.random.PCG64(9)).random(5))


def test_unseeded_draws_follow_the_run_seed_and_differ_between_calls() -> None:
    text = """
def f():
    return randn((4,), f32), randn((4,), f32)
"""
    a1, b1 = tessera.compile(text, seed=3, target="reference").f()
    a2, _ = tessera.compile(text, seed=3, target="reference").f()
    a3, _ = tessera.compile(text, seed=4, target="reference").f()
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, b1) and not np.array_equal(a1, a3)


def test_deterministic_functions_key_draws_by_seed_site_and_step() -> None:
    text = """
@deterministic(seed=42)
@effects("random")
def init(n: int):
    return randn((n,), f32)


def main():
    print(randn((2,), f32))
"""
    m1 = tessera.compile(text, seed=1, target="reference", out=io.StringIO())
    m2 = tessera.compile(text, seed=2, target="reference", out=io.StringIO())
    m2.main()  # other draws of the run do not move the deterministic ones
    first, second = m1.init(3), m1.init(3)
    np.testing.assert_array_equal(first, m2.init(3))
    assert not np.array_equal(first, second)  # the step advances


def test_load_and_save_npy_relative_to_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "in.npy", np.arange(6, dtype=np.float64).reshape(2, 3))
    out = run_main("""
def main():
    x = load("in.npy")
    save("out.npy", cast(x * 2.0, bf16))
    print(x.shape, sum(x))
""")
    assert out == "(2, 3) 15.0\n"
    saved = np.load(tmp_path / "out.npy")
    assert saved.dtype == np.float32  # bf16 is widened: .npy cannot hold it
    np.testing.assert_array_equal(saved, np.arange(6).reshape(2, 3) * 2.0)


def test_a_bad_npy_file_is_a_clean_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for name, why in (("junk.npy", "not a valid .npy file"), ("missing.npy", "no such file")):
        with pytest.raises(TesseraRuntimeError) as info:
            run_main(f'def main():\n    x = load("{name}")\n')
        d = info.value.diagnostic
        assert d.code == "E-RUNTIME" and why in d.message and name in d.message
        assert (d.span.line, d.span.col) == (2, 9)


def test_assert_with_message_is_a_runtime_error_at_the_assert() -> None:
    text = 'def main():\n    n = 3\n    assert n == 4, "n must be four"\n'
    with pytest.raises(TesseraRuntimeError) as info:
        run_main(text)
    d = info.value.diagnostic
    assert d.message == "assertion failed: n must be four"
    assert d.span.line == 3
    m = tessera.compile(text, path="prog.tsr", target="reference")
    rendered = render_text([d], m.checked.sources)
    assert "error[E-RUNTIME]: assertion failed: n must be four" in rendered
    assert '  3 |     assert n == 4, "n must be four"' in rendered


def test_host_errors_carry_the_span_of_the_failing_expression(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "six.npy", np.arange(6))
    with pytest.raises(TesseraRuntimeError) as info:
        run_main("def main():\n    for n in range(1):\n        print(1 // n)\n")
    assert "division by zero" in info.value.diagnostic.message and info.value.diagnostic.span.line == 3
    with pytest.raises(TesseraRuntimeError) as info:
        run_main('def main():\n    x = reshape(load("six.npy"), (4, 2))\n')
    assert info.value.diagnostic.code == "E-SHAPE" and "cannot reshape (6,)" in info.value.diagnostic.message


def test_effect_scopes_and_devices_are_no_ops_at_run_time() -> None:
    out = run_main("""
def main():
    with effects.suspend("io"):
        print("inside")
    with device("cpu") as d:
        print("device")
""")
    assert out == "inside\ndevice\n"


def test_recursion_and_calls_across_modules(tmp_path: Path) -> None:
    (tmp_path / "lib.tsr").write_text("SCALE = 3\n\n\ndef triple(x):\n    return x * SCALE\n")
    (tmp_path / "prog.tsr").write_text("""from .lib import triple
from stdlib.nn import mse


def fact(n: int):
    if n <= 1:
        return 1
    return n * fact(n - 1)


def main():
    print(fact(10), triple(7), mse(ones((3,), f32), zeros((3,), f32)))
""")
    out = io.StringIO()
    tessera.load(tmp_path / "prog.tsr", target="reference", out=out).main()
    assert out.getvalue() == "3628800 21 1.0\n"


def test_runaway_recursion_is_a_runtime_error() -> None:
    with pytest.raises(TesseraRuntimeError) as info:
        run_main("def loop(n: int):\n    return loop(n + 1)\n\n\ndef main():\n    loop(0)\n")
    assert "deep" in info.value.diagnostic.message


def test_host_nn_builtins_match_numpy() -> None:
    m = tessera.compile("""
def f(x: Tensor["N", "D", f32], w: Tensor["D", f32], b: Tensor["D", f32]):
    return softmax(x), layernorm(x, w, b, 1e-5), rmsnorm(x, w, 1e-6), gelu(x), logsumexp(x, axis=-1)
""", target="reference")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    sm, ln, rms, ge, lse = m.f(x, w, b)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(-1, keepdims=True), rtol=1e-6)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln, (x - mu) / np.sqrt(var + 1e-5) * w + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rms, x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w, rtol=1e-5)
    from math import erf

    np.testing.assert_allclose(ge, 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2))), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lse, np.log(np.exp(x).sum(-1)), rtol=1e-6)


def test_clock_times_host_code_and_is_host_only() -> None:
    out = io.StringIO()
    tessera.compile(
        "def main():\n    t0 = clock()\n    x = sum(ones((256, 256), f32))\n    t1 = clock()\n"
        "    print(t1 >= t0, t1 - t0 < 60.0)\n", out=out
    ).main()
    assert out.getvalue().strip() == "True True"
    checked = check_text("@jit\ndef f(x: Tensor[4, f32]) -> Tensor[4, f32]:\n    t = clock()\n    return x\n")
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [("E-TYPE", 3)]
    assert "host only" in checked.diagnostics[0].message
