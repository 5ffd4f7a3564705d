"""The executor end to end: graph -> optimise -> partition -> Tile IR -> CPU runtime (LLVM JIT) ->
NumPy arrays, compared with the reference evaluator on fresh random inputs.

The numeric tests of tests/test_schedule_to_tile.py are collected here again with this module's
`run` fixture — `compile_function(fn)` on the real CPU runtime, with every fresh buffer poisoned
with NaN so an element no kernel writes cannot pass — so the interpreter oracle and the compiled
code are held to the same cases. The tests below that check the executor itself (argument checks,
views without copies, thread safety of repeated calls) run on the CPU runtime only.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_schedule_ir import G, dims
from test_schedule_to_tile import (  # noqa: F401 - re-collected with this module's `run`
    Runner,
    check,
    compare,
    rand,
    random_graphs,
    run_interpreted,
    test_attention,
    test_batched_matmul_with_a_residual,
    test_bf16_matmul_accumulates_in_f32,
    test_casts_with_rounding,
    test_copies_concat_and_returned_params,
    test_cross_entropy_in_one_row_kernel,
    test_elementwise_chain_with_broadcasts,
    test_flattened_projection_with_casts_and_residual,
    test_gather_rows,
    test_heads_merged_after_attention_like_matmul,
    test_integer_and_bool_reductions,
    test_integer_elementwise,
    test_iota_in_an_elementwise_kernel_and_as_a_result,
    test_layernorm,
    test_logsumexp_with_a_row_of_minus_inf,
    test_matmul_bias_gelu,
    test_matmul_of_transposed_views,
    test_print_formats_its_operands_on_the_host,
    test_projection_with_a_broadcast_weight_folds_the_batch,
    test_random_is_deterministic_in_the_seed_and_the_same_in_every_kernel,
    test_random_samples_have_the_right_distribution,
    test_reductions_along_the_row,
    test_residual_then_rmsnorm,
    test_rmsnorm,
    test_softmax,
    test_softmax_over_a_leading_axis,
    test_sums_and_maxima_over_other_axes,
    test_views_feed_kernels_without_copies,
)

from tessera.dtypes import F32, F64
from tessera.ir.graph.ops import Function
from tessera.runtime.executor import CompiledFunction, ExecutionError, compile_function


def run_compiled(f: Function, *args: np.ndarray, out: io.StringIO | None = None) -> list[np.ndarray]:
    cf = compile_function(f, target="cpu")
    cf.poison = True
    cf.out = out
    return cf(*args)


@pytest.fixture
def run() -> Runner:
    return run_compiled


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240612)


@pytest.fixture(autouse=True, scope="module")
def private_code_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compiled code goes to a cache of this test module's own, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TESSERA_CACHE_DIR", str(tmp_path_factory.mktemp("tessera-cache")))
    yield
    mp.undo()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_graphs())
def test_random_graphs_compile_and_match_the_reference(case):
    f, args = case
    compare(run_compiled, f, *args, tol=(1e-4, 1e-4))


def test_compiled_random_bits_equal_the_interpreted_ones():
    # The generator's integer hash relies on wrapping 64-bit products: the compiled code and the
    # interpreter (NumPy int64) must agree bit for bit.
    g = G("bits")
    n = g("random", shape=dims(33, 70), dtype=F64, dist="normal", seed=2 ** 40 + 5)
    u = g("random", shape=dims(33, 70), dtype=F32, dist="uniform", seed=9)
    f = g.ret(n, u, effects=("random",))
    (n1, u1), (n2, u2) = run_compiled(f), run_interpreted(f)
    np.testing.assert_array_equal(u1, u2)  # integer hash and conversion: exact
    np.testing.assert_allclose(n1, n2, rtol=1e-14, atol=1e-15)  # log/cos/sqrt: within an ulp or two


def test_reductions_over_an_empty_axis():
    g = G("empty_red")
    x = g.param("x", 4, 0)
    s = g("reduce", x, kind="sum", axes=(1,), keepdims=False, accum=F32)
    m = g("reduce", x, kind="max", axes=(1,), keepdims=False, accum=F32)
    total, biggest = run_compiled(g.ret(s, m), np.zeros((4, 0), np.float32))
    np.testing.assert_array_equal(total, np.zeros(4, np.float32))
    np.testing.assert_array_equal(biggest, np.full(4, -np.inf, np.float32))


# ---------------------------------------------------------------------- the executor itself


def _mlp() -> Function:
    g = G("mlp")
    x, w, b = g.param("x", 33, 40), g.param("w", 40, 24), g.param("b", 24)
    h = g("add", g("matmul", x, w, accum=F32), g.bcast(b, 33, 24))
    return g.ret(g("gelu", h, approximate="none"))


def test_compiled_function_exposes_plan_and_kernels():
    cf = compile_function(_mlp())
    assert isinstance(cf, CompiledFunction)
    assert [c.pattern for c in cf.plan.calls] == ["matmul"]
    assert [k.name for k in cf.kernels] == [c.kernel for c in cf.plan.calls] == ["mlp_k0_matmul"]


def test_arguments_are_checked():
    cf = compile_function(_mlp())
    x, w, b = np.zeros((33, 40), np.float32), np.zeros((40, 24), np.float32), np.zeros(24, np.float32)
    with pytest.raises(ExecutionError, match="takes 3 arguments"):
        cf(x, w)
    with pytest.raises(ExecutionError, match=r"argument 1 \(w\) must have shape \(40, 24\)"):
        cf(x, w.T.copy().T[:, :23], b)
    with pytest.raises(ExecutionError, match="argument 2 .* must be f32, got float64"):
        cf(x, w, b.astype(np.float64))


def test_strided_arguments_and_fresh_results(rng):
    f = _mlp()
    cf = compile_function(f)
    xs = rand(rng, (40, 33)).T  # a transposed (non-contiguous) argument
    w, b = rand(rng, (40, 24)), rand(rng, (24,))
    (y,) = cf(xs, w, b)
    (y2,) = cf(xs, w, b)
    assert y.flags.c_contiguous and not np.shares_memory(y, y2)
    want = xs.astype(np.float64) @ w + b
    want = 0.5 * want * (1 + np.vectorize(__import__("math").erf)(want / np.sqrt(2)))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y, y2)


def test_calls_from_several_threads(rng):
    cf = compile_function(_mlp())
    inputs = [(rand(rng, (33, 40)), rand(rng, (40, 24)), rand(rng, (24,))) for _ in range(6)]
    want = [cf(*a)[0] for a in inputs]
    got: list[np.ndarray | None] = [None] * len(inputs)

    def work(i: int) -> None:
        got[i] = cf(*inputs[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_empty_extents_launch_nothing():
    g = G("empty")
    x = g.param("x", 0, 5)
    (y,) = compile_function(g.ret(g("exp", x)))(np.zeros((0, 5), np.float32))
    assert y.shape == (0, 5)


def test_only_the_cpu_and_gpu_targets_compile_here():
    with pytest.raises(ValueError, match="cpu, cuda or hip"):
        compile_function(_mlp(), target="tpu")
