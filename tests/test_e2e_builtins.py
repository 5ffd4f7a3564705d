"""End to end, every builtin of spec §6 usable in `@jit` code, compiled for the CPU.

Each test calls `@jit` functions of one Tessera program (`SOURCE`, compiled once with
`tessera.compile(..., target="cpu")`) through the dispatcher's phases — bind and guard the arguments,
specialise and optimise the graph, partition, lower to Tile IR, compile with LLVM — and runs the
compiled function with every fresh buffer poisoned with NaN (or -1), so an element no kernel writes
cannot pass. Every result is held to two oracles:

- the reference evaluator on the same graph (`evaluate`), with a tight tolerance: the same dtype
  semantics, so at most an ulp or two of the result dtype apart;
- an independent NumPy formula in float64 on the same input values, with a dtype-aware tolerance
  (f32 ~1e-5 relative, bf16 ~1e-2).

The user-facing call (`module.fn(*args)`) must return exactly what the poisoned compiled function
returned. Inputs are fresh random arrays at every run; the seed is in every assertion message, so a
failure reproduces with `E2E(..., seed=N)`. Shapes are ragged (37×129, 3×5×67: no extent a
multiple of a block) and shared between tests, so that specialisations are compiled once.
"""

from __future__ import annotations

import io
import math
import secrets
from collections.abc import Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tessera
from tessera.ir.graph.ops import Function, Value
from tessera.ir.graph.reference import evaluate
from tessera.runtime.executor import CompiledFunction

ROOT = Path(__file__).resolve().parent.parent
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E5M2 = np.dtype(ml_dtypes.float8_e5m2)
F32 = np.dtype(np.float32)

# Ragged shapes, reused everywhere so that each function is specialised (and compiled) once.
N, M = 37, 129
A, B, C = 3, 5, 67

# Tight tolerance of compiled vs reference (same graph, same dtype semantics): a few ulps of the result
# dtype; integers and bools exactly.
REF_RTOL = {F32: 4e-6, np.dtype(np.float64): 1e-13, F16: 2.0 ** -10, BF16: 2.0 ** -7, E4M3: 2.0 ** -3,
            E5M2: 2.0 ** -2}
# Compiled vs an independent NumPy formula in float64 (the result rounded to its dtype once, plus the
# rounding of intermediates).
NP_RTOL = {F32: 1e-5, np.dtype(np.float64): 1e-12, F16: 2e-3, BF16: 1e-2, E4M3: 0.125, E5M2: 0.25}


SOURCE = '''
from stdlib.nn import softmax_safe, logsumexp_safe, layernorm_safe, rmsnorm_safe, gelu_exact, gelu_tanh
from stdlib import nn


# ------------------------------------------------------------------ creation

@jit
def creation(*, n: int, m: int):
    return (zeros((n, m), f32), ones((n, m), bf16), full((n, m), 2.5, f32), full((n, m), -3, int32),
            arange(m), arange(m, f32), zeros((3, 5, 67), int8), full((n,), inf, f32), full((m,), nan, bf16),
            ones((n, 1), f16) * pi)


@jit
def creation_like(x: Tensor["N", "M", f32]) -> (Tensor["N", "M", f32], Tensor["M", f32]):
    return x + ones(x.shape, f32), cast(arange(x.shape[1]), f32) * 0.5


@jit
def draws(*, seed: int):
    return (randn((37, 129), f32, seed=seed), rand((37, 129), f32, seed=seed),
            randn((3, 5, 67), bf16, seed=seed), rand((3, 5, 67), bf16, seed=seed))


@jit
def two_sites(*, n: int):
    return randn((n, 129), f32), randn((n, 129), f32)


# ------------------------------------------------------------------ elementwise

@jit
def unary_simple(x: Tensor["N", "M"]):
    return -x, neg(x), abs(x), relu(x), x * x, x + 1.5, 2.0 - x, 3.0 / x


@jit
def unary_math(x: Tensor["N", "M"]):
    return exp(x), log(x), log1p(x), sqrt(x), rsqrt(x), sin(x), cos(x), tanh(x), erf(x)


@jit
def unary_act(x: Tensor["N", "M"]):
    return sigmoid(x), gelu(x), gelu(x, approximate="tanh"), silu(x), isnan(x), isinf(x)


@jit
def binary(x: Tensor["N", "M"], y: Tensor["N", "M"]):
    return x + y, x - y, x * y, x / y, x // y, x % y, maximum(x, y), minimum(x, y)


@jit
def binary_bcast(x: Tensor["N", "M"], row: Tensor["M"], col: Tensor["N", 1]):
    return x + row, x * col, row - col, maximum(x, row), minimum(col, x), x / row


@jit
def powers(x: Tensor["N", "M"], y: Tensor["N", "M"]):
    return abs(x) ** y, x ** 2.0, x ** 3, 2.0 ** y


@jit
def compare(x: Tensor["N", "M"], y: Tensor["N", "M"]):
    return x < y, x <= y, x > y, x >= y, x == y, x != y, x > 0.5


@jit
def selects(x: Tensor["N", "M"], y: Tensor["N", "M"]):
    return (where(x > y, x, y), where(isnan(x), 0.0, x), where(y < 0.0, -1.0, 1.0), clip(x, -1.0, 1.5),
            clip(x, y, y + 1.0))


@jit
def integer_ops(x: Tensor["N", "M", int32], y: Tensor["N", "M", int32]):
    return (x + y, x - y, x * y, x // y, x % y, maximum(x, y), minimum(x, y), abs(x), -x, x / y, x < y,
            x == y, x * 2 + 1)


@jit
def debug_print(x: Tensor["N", "M"]) -> Tensor["N", "M"] where N >= 2, M >= 4:
    print("total", sum(x), "corner", x[0, 0], "row", x[1, :4])
    return x * 2.0


@jit
def integer_pow(x: Tensor["N", "M", int32], e: Tensor["N", "M", int32], u: Tensor["N", "M", uint8]):
    return x ** e, x ** 2, x ** 3, 3 ** e, u ** 3

# ------------------------------------------------------------------ reductions

@jit
def reduce3(x: Tensor["A", "B", "C"]):
    return (sum(x), sum(x, axis=-1), sum(x, axis=(0, 2)), sum(x, axis=1, keepdims=True),
            mean(x, axis=(-1, -3), keepdims=True), mean(x), max(x, axis=0), max(x), min(x, axis=(1, 2)),
            min(x, axis=-2, keepdims=True), prod(x, axis=-1), prod(x, axis=(0, 1)), argmax(x, axis=-1),
            argmin(x, axis=1), argmax(x), argmin(x, axis=0, keepdims=True), logsumexp(x, axis=-1),
            logsumexp(x, axis=(0, 1), keepdims=True), logsumexp(x), var(x, axis=-1),
            var(x, axis=(0, 2), keepdims=True), var(x))


@jit
def reduce2(x: Tensor["N", "M"]):
    return (sum(x, axis=0), mean(x, axis=-1), max(x, axis=1, keepdims=True), min(x, axis=0),
            logsumexp(x, axis=0), var(x, axis=0), argmax(x, axis=0), argmin(x, axis=-1), prod(x, axis=0))


@jit
def reduce_accum(x: Tensor["N", "M", bf16 @accum(f32)], y: Tensor["N", "M", f32 @accum(f64)]):
    return sum(x, axis=-1), mean(x, axis=0), var(x, axis=-1), logsumexp(x, axis=-1), sum(y, axis=-1), mean(y)


@jit
def reduce_nan(x: Tensor["N", "M"]):
    return (max(x, axis=-1), min(x, axis=0), argmax(x, axis=-1), argmin(x, axis=0), sum(x, axis=-1),
            logsumexp(x, axis=-1), max(x))


@jit
def reduce_int(x: Tensor["N", "M", int32], m: Tensor["N", "M", bool]):
    return (sum(x, axis=-1), max(x, axis=0), min(x), argmax(x, axis=1), mean(x, axis=-1), sum(m, axis=-1),
            prod(x % 3 + 1, axis=0), var(x, axis=0))


# ------------------------------------------------------------------ shapes

@jit
def shape_views(x: Tensor["A", "B", "C"]) where A % 3 == 0, B >= 1:
    return (reshape(x, (x.shape[0] * x.shape[1], x.shape[2])), reshape(x, (-1,)), reshape(x, (3, -1)),
            transpose(x), transpose(x, (1, 0, 2)), permute(x, (2, 0, 1)), swapaxes(x, 0, -1), x.T,
            expand_dims(x, 1), expand_dims(x, -1), squeeze(expand_dims(x, 0), 0),
            squeeze(x[:, :1, :], axis=1), broadcast_to(x[:, :1, :], (2, x.shape[0], 5, x.shape[2])))


@jit
def shape_math(x: Tensor["A", "B", "C"]):
    # Shape ops between computations: the views are inside or between kernels.
    return (exp(transpose(x, (2, 0, 1))) + 1.0, sum(reshape(x * 2.0, (-1, x.shape[2])), axis=0),
            swapaxes(x, 1, 2) * reshape(x[0, 0, :], (x.shape[2], 1)), x.T * 0.5 + 1.0)


@jit
def slicing(x: Tensor[3, 5, 67]):
    return (x[1], x[-1], x[:, -2:, 3:60:4], x[..., 0], x[..., None, -1], x[None, 1:, ..., ::2], x[:, 2],
            x[0:2, 1:-1, -5:], x[:, :, 66:], x[-3:-1, ::3], x[::-1], x[:, ::-2, 60:2:-3],
            x[2:-100:-1, 3::-1, -1:-68:-5], x[:, 1:3:-1], x[..., ::-1][1, None], exp(x[::-1, :, ::-1]) + 1.0)


@jit
def slicing_sym(x: Tensor["N", "M"]) where N >= 3, M >= 2:
    return (x[1:-1, :-1], x[:, -1:], x[-1], x[::-1], x[-2::-1, ::-3], x[:1:-1], sum(x[:, ::-2], axis=-1),
            cast(arange(x.shape[1])[::-1], f32) * x, reshape(x[::-1], (-1,)), x[::-1] @ x[:, ::-1].T,
            softmax(x[:, ::-1]), concat([x[::-1], x], axis=0), x[::-3][1:][::-2])


@jit
def joins(x: Tensor["A", "B", "C"], y: Tensor["A", "B", "C"], z: Tensor["A", 2, "C"]) where A % 3 == 0:
    p, q, r = split(x, 3, axis=0)
    u, v = split(concat([x, x], axis=-1), 2, axis=-1)
    return (concat([x, y], axis=0), concat([x, z, y], axis=1), concat([x, y, x], axis=-1),
            stack([x, y], axis=0), stack([x, y, x], axis=-1), stack([x, y], axis=2), p, q, r, u + v,
            concat([exp(x), y * 2.0], axis=2))


# ------------------------------------------------------------------ linear algebra

@jit
def matmuls(a: Tensor["N", "K"], w: Tensor["K", "P"], v: Tensor["K"], u: Tensor["N"]):
    return a @ w, matmul(a, w), v @ w, a @ v, u @ a, v @ v, (a @ w) * 2.0 + 1.0


@jit
def batched(x: Tensor["A", "N", "K"], w: Tensor["K", "P"], y: Tensor[2, 1, "N", "K"],
            z: Tensor["A", "K", "P"]):
    return x @ w, y @ z, swapaxes(x, -1, -2)[0].T @ w, x @ z


@jit
def matmul_bf16(x: Tensor["N", "K", bf16 @accum(f32)], w: Tensor["K", "P", bf16], b: Tensor["P", f32]):
    return x @ w, cast(x @ w, bf16), gelu(x @ w + b), cast_like(x @ w, x) * 2.0


@jit
def einsums(a: Tensor["N", "K"], w: Tensor["K", "P"], q: Tensor[2, 3, 7, 16], k: Tensor[2, 3, 9, 16],
            s: Tensor["K", "K"]):
    return (einsum("ij,jk->ik", a, w), einsum("ij->ji", a), einsum("ij->", a), einsum("ij->j", a),
            einsum("i,j->ij", a[0], w[:, 0]), einsum("bhqd,bhkd->bhqk", q, k), einsum("ij,ij->i", a, a),
            einsum("ii->i", s), einsum("ii", s), einsum("ijkl->ljki", q), einsum("ij,jk,kl->il", a, s, w),
            einsum("ik,kj", a, w))


# ------------------------------------------------------------------ nn

@jit
def nn_rows(x: Tensor["N", "M"], w: Tensor["M"], b: Tensor["M"]):
    return (softmax(x), softmax(x, axis=0), layernorm(x, w, b, 1e-5), rmsnorm(x, w, 1e-6), layernorm(x, w, b),
            rmsnorm(x, w))


@jit
def nn_rows3(x: Tensor["A", "B", "C"], w: Tensor["C"], b: Tensor["C"]):
    return softmax(x, axis=1), softmax(x, axis=-1), layernorm(x, w, b, 1e-3), rmsnorm(x, w, 1e-2)


@jit
def nn_accum(x: Tensor["N", "M", bf16 @accum(f32)], w: Tensor["M", bf16], b: Tensor["M", bf16]):
    return softmax(x), layernorm(x, w, b, 1e-5), rmsnorm(x, w, 1e-6)


@jit
def drop(x: Tensor["N", "M"], *, p: float, seed: int):
    return dropout(x, p, seed=seed)


@jit
def lookups(table: Tensor["V", "D"], ids: Tensor["N", "S", int32], labels: Tensor["N", int64]):
    return (embedding(table, ids), one_hot(labels, 10), one_hot(ids, table.shape[0], bf16),
            embedding(table, labels))


@jit
def losses(logits: Tensor["N", "M"], labels: Tensor["N", int32], a: Tensor["N", "M"], b: Tensor["N", "M"]):
    return cross_entropy(logits, labels), mse(a, b), cross_entropy(logits[0], labels[0]), mse(a, 1.0)


@jit
def attn(q: Tensor["A", "S", "D"], k: Tensor["A", "T", "D"], v: Tensor["A", "T", "E"]):
    return attention(q, k, v), attention(q, k, v, scale=0.5), attention(q, k, v, causal=True)


@jit
def attn4(q: Tensor[2, 3, "S", "D"], k: Tensor[1, 3, "S", "D"], v: Tensor[2, 1, "S", "D"]):
    return attention(q, k, v, causal=True), attention(q, k, v, causal=True, scale=0.3)


# ------------------------------------------------------------------ casts

@jit
def casts_to(x: Tensor["N", "M", f32], i: Tensor["N", "M", f32]):
    return (cast(x, bf16), cast(x, f16), cast(x, fp8_e4m3), cast(x, fp8_e5m2), cast(x, f64), cast(i, int32),
            cast(i, int8), cast(i, int64), cast(x > 0.0, f32), cast(x, bool), cast(cast(x, bf16), f16),
            cast(cast(x, f16), fp8_e5m2))


@jit
def casts_from(h: Tensor["N", "M", bf16], e: Tensor["N", "M", fp8_e4m3], i: Tensor["N", "M", int32],
               f: Tensor["N", "M", f16], g: Tensor["N", "M", fp8_e5m2]):
    return (cast(h, f32), cast(h, f16), cast(h, fp8_e5m2), cast(e, f32), cast(e, bf16), cast(i, f32),
            cast(i, bf16), cast(f, bf16), cast_like(f, h), cast_like(i, h), cast_like(h, f), cast(g, f32),
            cast(h, int32), cast_like(e, g), cast(i, int8))


# ------------------------------------------------------------------ stdlib.nn

@jit
def safe_forms(x: Tensor["N", "M"], w: Tensor["M"], b: Tensor["M"]):
    return (softmax_safe(x), softmax_safe(x, axis=0), logsumexp_safe(x), logsumexp_safe(x, axis=0),
            layernorm_safe(x, w, b), rmsnorm_safe(x, w), gelu_exact(x), gelu_tanh(x), nn.gelu(x),
            nn.gelu(x, approximate="tanh"), layernorm_safe(x, w, b, eps=1e-2), rmsnorm_safe(x, w, eps=1e-2))


@jit
def safe_more(q: Tensor["A", "S", "D"], k: Tensor["A", "S", "D"], v: Tensor["A", "S", "D"],
              logits: Tensor["N", "M"], labels: Tensor["N", int32], cos: Tensor["S", "R", f32],
              sin: Tensor["S", "R", f32]) where D == 2 * R:
    return (nn.attention(q, k, v, causal=True), nn.attention(q, k, v), nn.cross_entropy(logits, labels),
            nn.mse(logits, logits * 0.5), nn.rotary_embedding(q, cos, sin))

'''


@pytest.fixture(scope="module", autouse=True)
def private_code_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compiled code goes to a cache of this test module's own, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TESSERA_CACHE_DIR", str(tmp_path_factory.mktemp("tessera-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def module(private_code_cache) -> tessera.api.Module:
    return tessera.compile(SOURCE, path=str(ROOT / "tests" / "e2e_builtins.tsr"), target="cpu")


def as_list(r: object) -> list[np.ndarray]:
    return [np.asarray(x) for x in (r if isinstance(r, tuple) else (r,))]


def wide(a: np.ndarray) -> np.ndarray:
    """Values as float64 (integers and bools too), for formulas and comparisons."""
    return np.asarray(a).astype(np.float64)


class E2E:
    """One test's fresh random inputs and its two oracles. `seed` reproduces a failure."""

    def __init__(self, module: tessera.api.Module, seed: int) -> None:
        self.module = module
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    # -- inputs

    def normal(self, shape: Sequence[int], dtype: np.dtype = F32, scale: float = 1.0, loc: float = 0.0):
        return (loc + scale * self.rng.standard_normal(shape)).astype(dtype)

    def uniform(self, shape: Sequence[int], lo: float, hi: float, dtype: np.dtype = F32) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(dtype)

    def ints(self, shape: Sequence[int], lo: int, hi: int, dtype: type = np.int32) -> np.ndarray:
        return self.rng.integers(lo, hi, shape).astype(dtype)

    def specials(self, a: np.ndarray, values: Sequence[float] = (np.inf, -np.inf, np.nan, 0.0, -0.0),
                 count: int = 4) -> np.ndarray:
        """`a` with each of `values` written at `count` random positions."""
        out = a.copy().reshape(-1)
        pos = self.rng.choice(out.size, size=len(values) * count, replace=False)
        for i, v in enumerate(values):
            out[pos[i * count:(i + 1) * count]] = v
        return out.reshape(a.shape)

    # -- running

    def run(self, name: str, *args: object, ref_atol: float = 0.0, **static: object) -> list[np.ndarray]:
        """Run `name` compiled (poisoned buffers) and check every result against the reference
        evaluator on the same graph (`ref_atol`: an absolute tolerance where values cancel); the
        user-facing call must give the same arrays."""
        jf = getattr(self.module, name)
        arrays, st, binding = jf.prepare(args, static, jf.fn.name_span)
        key = jf.spec_key(arrays, st, binding)
        cf = jf.compiled(key, st, binding)
        assert isinstance(cf, CompiledFunction), f"{name}: the cpu target gave {type(cf).__name__}"
        cf.poison = True
        assert cf.graph is not None
        got = cf(*[a.copy() for a in arrays])
        ref = evaluate(cf.graph, [a.copy() for a in arrays])
        assert len(got) == len(ref), self.msg(name)
        drawn = random_results(cf.graph)
        for i, (g, r) in enumerate(zip(got, ref)):
            if i in drawn:
                # The compiled generator is a counter-based hash, not NumPy's (the reference's): only
                # what the samples are made of compares; the test checks their distribution.
                assert (g.dtype, g.shape) == (r.dtype, r.shape), self.msg(f"{name} result {i}")
                continue
            self.same(g, r, f"{name} result {i}: compiled vs reference", REF_RTOL, atol=ref_atol)
        api = as_list(jf(*args, **static))
        assert len(api) == len(got), self.msg(name)
        for i, (a, g) in enumerate(zip(api, got)):
            assert a.dtype == g.dtype and a.shape == g.shape, self.msg(f"{name} result {i} via the API")
            # Bit for bit (NaNs and signed zeros included): the same code ran.
            assert a.tobytes() == g.tobytes(), self.msg(f"{name} result {i} via the API differs")
        return got

    # -- checking

    def msg(self, what: str) -> str:
        return f"{what} (seed={self.seed}: rerun with E2E(module, seed={self.seed}))"

    def same(self, got: np.ndarray, want: np.ndarray, what: str, table: dict[np.dtype, float],
             rtol: float | None = None, atol: float = 0.0) -> None:
        assert got.dtype == want.dtype, self.msg(f"{what}: dtype {got.dtype}, expected {want.dtype}")
        assert got.shape == want.shape, self.msg(f"{what}: shape {got.shape}, expected {want.shape}")
        if got.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want, err_msg=self.msg(what))
            return
        r = table[got.dtype] if rtol is None else rtol
        tiny = float(np.finfo(got.dtype).tiny) if got.dtype in (F32, F16) else 1e-30
        np.testing.assert_allclose(wide(got), wide(want), rtol=r, atol=max(atol, tiny), equal_nan=True,
                                   err_msg=self.msg(what))

    def close(self, got: np.ndarray, want: np.ndarray | float, what: str, dtype: np.dtype | None = None,
              rtol: float | None = None, atol: float = 0.0) -> None:
        """`got` against a float64 (or exact) NumPy formula: the dtype must be `dtype` (default: got's),
        the values within the dtype's tolerance."""
        want = np.asarray(want)
        if dtype is not None:
            assert got.dtype == np.dtype(dtype), self.msg(f"{what}: dtype {got.dtype}, expected {dtype}")
        assert got.shape == want.shape, self.msg(f"{what}: shape {got.shape}, expected {want.shape}")
        if got.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=self.msg(what))
            return
        r = NP_RTOL[got.dtype] if rtol is None else rtol
        np.testing.assert_allclose(wide(got), wide(want), rtol=r, atol=max(atol, 1e-30), equal_nan=True,
                                   err_msg=self.msg(what))


def random_results(fn: Function) -> set[int]:
    """The indices of `fn`'s results computed from random samples."""
    tainted: set[Value] = set()
    for op in fn.ops:
        if op.name == "random" or any(v in tainted for v in op.operands):
            tainted.update(op.results)
    return {i for i, r in enumerate(fn.returns) if r in tainted}


@pytest.fixture
def e2e(module: tessera.api.Module) -> E2E:
    return E2E(module, secrets.randbits(63))


def with_dtype(name: str) -> np.dtype:
    return {"f32": F32, "bf16": BF16}[name]


FLOATS = pytest.mark.parametrize("dt", ["f32", "bf16"])


def rounded(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """A float64 formula's values rounded to `dt` and back (what a result of that dtype can hold)."""
    return wide(np.asarray(x).astype(dt))


def errstate() -> np.errstate:
    return np.errstate(all="ignore")


# ============================================================================ creation


def test_creation(e2e: E2E) -> None:
    out = e2e.run("creation", n=N, m=M)
    want = [np.zeros((N, M), F32), np.ones((N, M), BF16), np.full((N, M), 2.5, F32),
            np.full((N, M), -3, np.int32), np.arange(M, dtype=np.int64), np.arange(M, dtype=F32),
            np.zeros((A, B, C), np.int8), np.full(N, np.inf, F32), np.full(M, np.nan, BF16),
            (np.ones((N, 1), F16) * np.float16(np.pi))]
    assert len(out) == len(want)
    for i, (g, w) in enumerate(zip(out, want)):
        assert g.dtype == w.dtype, e2e.msg(f"creation result {i}: {g.dtype} != {w.dtype}")
        np.testing.assert_array_equal(wide(g), wide(w), err_msg=e2e.msg(f"creation result {i}"))


def test_creation_from_shapes(e2e: E2E) -> None:
    x = e2e.normal((N, M))
    y, r = e2e.run("creation_like", x)
    e2e.close(y, wide(x) + 1, "x + ones(x.shape)", F32)
    e2e.close(r, np.arange(M) * 0.5, "cast(arange(M), f32) * 0.5", F32)


def test_random_draws_have_the_right_moments_and_are_keyed_by_the_seed(e2e: E2E) -> None:
    seed = int(e2e.rng.integers(0, 2 ** 31))
    n1, u1, n2, u2 = e2e.run("draws", seed=seed)
    again = e2e.run("draws", seed=seed)
    for a, b in zip((n1, u1, n2, u2), again):
        np.testing.assert_array_equal(a, b, err_msg=e2e.msg("the same seed draws the same samples"))
    other = e2e.run("draws", seed=seed + 1)
    for a, b in zip((n1, u1, n2, u2), other):
        assert not np.array_equal(a, b), e2e.msg("another seed draws other samples")
    assert (n1.dtype, u1.dtype, n2.dtype, u2.dtype) == (F32, F32, BF16, BF16)
    for normal, uniform in ((n1, u1), (n2, u2)):
        nw, uw = wide(normal), wide(uniform)
        k = 5.0 / math.sqrt(nw.size)  # five standard errors
        assert abs(nw.mean()) < k and abs(nw.std() - 1) < 1.5 * k, e2e.msg(f"normal moments {nw.mean()} "
                                                                         f"{nw.std()}")
        assert abs(np.mean(nw ** 3)) < 4 * k and abs(np.mean(nw ** 4) - 3) < 12 * k, e2e.msg("normal shape")
        assert uw.min() >= 0 and uw.max() <= 1, e2e.msg("uniform in [0, 1]")
        assert abs(uw.mean() - 0.5) < k * 0.29 and abs(uw.var() - 1 / 12) < k * 0.1, \
            e2e.msg("uniform moments")
        # Not all samples the same value, and the two samples not the same bits.
        assert len(np.unique(nw)) > nw.size // 8 and not np.array_equal(nw, uw)


def test_unseeded_draws_differ_per_call_site(e2e: E2E) -> None:
    a, b = e2e.run("two_sites", n=N)
    assert not np.array_equal(a, b), e2e.msg("two call sites draw different samples")
    assert abs(wide(a).mean()) < 0.1 and abs(wide(b).std() - 1) < 0.1


# ============================================================================ elementwise


@FLOATS
def test_unary_simple(e2e: E2E, dt: str) -> None:
    x = e2e.specials(e2e.normal((N, M), with_dtype(dt), scale=3.0))
    d = x.dtype
    out = e2e.run("unary_simple", x)
    xw = wide(x)
    with errstate():
        want = [-xw, -xw, np.abs(xw), np.maximum(xw, 0), xw * xw, xw + 1.5, 2.0 - xw, 3.0 / xw]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, rounded(w, d), f"unary_simple[{i}] {dt}", d)
    # relu keeps NaN (as NumPy's maximum does) and signs of zero are IEEE's.
    assert np.array_equal(np.signbit(out[0]), np.signbit(-xw)), e2e.msg("neg flips the sign of zeros")


@FLOATS
def test_unary_math(e2e: E2E, dt: str) -> None:
    x = e2e.specials(e2e.normal((N, M), with_dtype(dt), scale=3.0), (np.inf, -np.inf, np.nan, 0.0, -0.0,
                                                                       -1.0, 88.0, -100.0, 1e-3))
    d = x.dtype
    out = e2e.run("unary_math", x)
    xw = wide(x)
    with errstate():
        want = [np.exp(xw), np.log(xw), np.log1p(xw), np.sqrt(xw), 1 / np.sqrt(xw), np.sin(xw), np.cos(xw),
                np.tanh(xw), np.vectorize(math.erf)(xw)]
    names = ["exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf"]
    for g, w, n in zip(out, want, names):
        e2e.close(g, rounded(w, d), f"{n} {dt}", d, atol=1e-6)


@FLOATS
def test_unary_activations(e2e: E2E, dt: str) -> None:
    x = e2e.specials(e2e.normal((N, M), with_dtype(dt), scale=3.0), (np.inf, -np.inf, np.nan, 0.0, -30.0,
                                                                       30.0))
    d = x.dtype
    # erfc deep in its tail (gelu(x) ~ 1e-20) is good to ~1e-5 relative: compare those absolutely.
    sig, ge, gt, si, nan_, inf_ = e2e.run("unary_act", x, ref_atol=1e-12)
    xw = wide(x)
    with errstate():
        s = 1 / (1 + np.exp(-xw))
        erf = np.vectorize(math.erf)
        exact = 0.5 * xw * (1 + erf(xw / math.sqrt(2)))
        tanh = 0.5 * xw * (1 + np.tanh(math.sqrt(2 / math.pi) * (xw + 0.044715 * xw ** 3)))
        silu = xw * s
    # At ±inf the formulas give nan (0 * inf); the functions' limits are 0 (x → -inf) and x (x → inf).
    for w in (exact, tanh, silu):
        w[xw == np.inf] = np.inf
        w[xw == -np.inf] = 0.0
    e2e.close(sig, rounded(s, d), f"sigmoid {dt}", d, atol=1e-7)
    e2e.close(ge, rounded(exact, d), f"gelu {dt}", d, atol=1e-6)
    e2e.close(gt, rounded(tanh, d), f"gelu tanh {dt}", d, atol=1e-6)
    e2e.close(si, rounded(silu, d), f"silu {dt}", d, atol=1e-6)
    e2e.close(nan_, np.isnan(xw), f"isnan {dt}", np.bool_)
    e2e.close(inf_, np.isinf(xw), f"isinf {dt}", np.bool_)


@FLOATS
def test_binary(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.specials(e2e.normal((N, M), d, scale=4.0), count=2)
    y = e2e.specials(e2e.normal((N, M), d, scale=2.0), (np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0),
                     count=2)
    out = e2e.run("binary", x, y)
    xw, yw = wide(x), wide(y)
    with errstate():
        want = [xw + yw, xw - yw, xw * yw, xw / yw, np.floor_divide(xw, yw), np.mod(xw, yw),
                np.maximum(xw, yw), np.minimum(xw, yw)]
    names = ["+", "-", "*", "/", "//", "%", "maximum", "minimum"]
    for g, w, n in zip(out, want, names):
        if n in ("//", "%"):
            # floor(x / y) and x - floor(x / y) * y are discontinuous: compare where the quotient is not
            # within rounding of an integer.
            with errstate():
                q = xw / yw
                ok = ~np.isfinite(q) | (np.abs(q - np.round(q)) > 1e-2)
            e2e.close(np.where(ok, g, 0), np.where(ok, rounded(w, d), 0), f"{n} {dt}", d,
                      atol=1e-5 * np.nanmax(np.abs(yw[np.isfinite(yw)])))
        else:
            e2e.close(g, rounded(w, d), f"{n} {dt}", d)


@FLOATS
def test_binary_with_broadcasts(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x, row, col = e2e.normal((N, M), d), e2e.normal((M,), d, loc=3.0), e2e.normal((N, 1), d)
    out = e2e.run("binary_bcast", x, row, col)
    xw, rw, cw = wide(x), wide(row), wide(col)
    want = [xw + rw, xw * cw, rw - cw, np.maximum(xw, rw), np.minimum(cw, xw), xw / rw]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, rounded(w, d), f"binary_bcast[{i}] {dt}", d)


@FLOATS
def test_powers(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.specials(e2e.normal((N, M), d, scale=2.0), (0.0, -0.0, np.inf, np.nan, 1.0), count=2)
    y = e2e.specials(e2e.normal((N, M), d, scale=1.5), (0.0, -1.0, 2.0, 0.5), count=2)
    out = e2e.run("powers", x, y)
    xw, yw = wide(x), wide(y)
    with errstate():
        want = [np.abs(xw) ** yw, xw ** 2.0, xw ** 3, 2.0 ** yw]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, rounded(w, d), f"powers[{i}] {dt}", d, rtol=NP_RTOL[d] * 4)


@FLOATS
def test_comparisons(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.specials(e2e.normal((N, M), d), count=2)
    y = e2e.specials(e2e.normal((N, M), d), count=2)
    y.reshape(-1)[:50] = x.reshape(-1)[:50]  # some equal pairs
    out = e2e.run("compare", x, y)
    xw, yw = wide(x), wide(y)
    with errstate():
        want = [xw < yw, xw <= yw, xw > yw, xw >= yw, xw == yw, xw != yw, xw > 0.5]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, w, f"compare[{i}] {dt}", np.bool_)


@FLOATS
def test_where_and_clip(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.specials(e2e.normal((N, M), d, scale=2.0), (np.nan, np.inf, -np.inf), count=3)
    y = e2e.normal((N, M), d)
    out = e2e.run("selects", x, y)
    xw, yw = wide(x), wide(y)
    with errstate():
        want = [np.where(xw > yw, xw, yw), np.where(np.isnan(xw), 0.0, xw), np.where(yw < 0, -1.0, 1.0),
                np.clip(xw, -1.0, 1.5), np.minimum(np.maximum(xw, yw), rounded(yw + 1.0, d))]
    # where(c, -1.0, 1.0): two float scalars with a bool condition are f32 (docs: weak scalars).
    for i, (g, w) in enumerate(zip(out, want)):
        rd = F32 if i == 2 else d
        e2e.close(g, rounded(w, rd), f"selects[{i}] {dt}", rd)


def test_integer_elementwise(e2e: E2E) -> None:
    x = e2e.ints((N, M), -1000, 1000)
    y = e2e.ints((N, M), -50, 50)
    y[y == 0] = 7  # integer division by zero is undefined
    out = e2e.run("integer_ops", x, y)
    xw, yw = x.astype(np.int64), y.astype(np.int64)
    want = [xw + yw, xw - yw, xw * yw, np.floor_divide(xw, yw), np.mod(xw, yw), np.maximum(xw, yw),
            np.minimum(xw, yw), np.abs(xw), -xw]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, w, f"integer_ops[{i}]", np.int32)
    e2e.close(out[9], xw / yw, "int / int", F32)
    e2e.close(out[10], xw < yw, "int <", np.bool_)
    e2e.close(out[11], xw == yw, "int ==", np.bool_)
    e2e.close(out[12], xw * 2 + 1, "int * 2 + 1", np.int32)


def test_integer_powers_wrap_like_numpy(e2e: E2E) -> None:
    x = e2e.ints((N, M), -50, 50)
    e = e2e.ints((N, M), 0, 40)
    u = e2e.ints((N, M), 0, 256, np.uint8)
    out = e2e.run("integer_pow", x, e, u)
    with errstate():
        want = [(x ** e, np.int32), (x ** 2, np.int32), (x ** 3, np.int32), (np.int32(3) ** e, np.int32),
                (u ** 3, np.uint8)]
    for i, (g, (w, wd)) in enumerate(zip(out, want)):
        e2e.close(g, w, f"integer_pow[{i}]", wd)


def test_negative_integer_exponents_truncate(e2e: E2E) -> None:
    # NumPy (and the reference evaluator) raise; compiled code must not trap (docs/runtime.md).
    x = np.array([[1, -1, -1, 2, -3, 0, 7]], np.int32)
    e = np.array([[-5, -2, -3, -1, -1, 3, 2]], np.int32)
    jf = e2e.module.integer_pow
    got = as_list(jf(x, e, np.zeros((1, 7), np.uint8)))[0]
    np.testing.assert_array_equal(got, [[1, 1, -1, 0, 0, 0, 49]], err_msg=e2e.msg("negative exponents"))


# ============================================================================ reductions


def lse(x: np.ndarray, axis: object = None, keepdims: bool = False) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@FLOATS
def test_reductions_over_every_axis_form(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.normal((A, B, C), d)
    # prod needs factors near 1 (it over- and underflows otherwise).
    out = e2e.run("reduce3", x, ref_atol=1e-5)
    xw = wide(x)
    acc = F32  # bf16 and f32 accumulate in f32; max, min keep the dtype; arg* give int64
    want = [
        (np.sum(xw), acc), (np.sum(xw, -1), acc), (np.sum(xw, (0, 2)), acc),
        (np.sum(xw, 1, keepdims=True), acc),
        (np.mean(xw, (-1, -3), keepdims=True), acc), (np.mean(xw), acc), (np.max(xw, 0), d), (np.max(xw), d),
        (np.min(xw, (1, 2)), d), (np.min(xw, -2, keepdims=True), d), (np.prod(xw, -1), acc),
        (np.prod(xw, (0, 1)), acc), (np.argmax(xw, -1), np.int64), (np.argmin(xw, 1), np.int64),
        (np.argmax(xw), np.int64), (np.argmin(xw, 0, keepdims=True), np.int64), (lse(xw, -1), acc),
        (lse(xw, (0, 1), keepdims=True), acc), (lse(xw), acc), (np.var(xw, -1), acc),
        (np.var(xw, (0, 2), keepdims=True), acc), (np.var(xw), acc)]
    assert len(out) == len(want)
    for i, (g, (w, wd)) in enumerate(zip(out, want)):
        if i in (10, 11):
            continue  # prod: below, on factors near 1
        e2e.close(g, w, f"reduce3[{i}] {dt}", wd, atol=1e-5 * math.sqrt(x.size))
    p = e2e.normal((A, B, C), d, scale=0.05, loc=1.0)
    out = e2e.run("reduce3", p, ref_atol=1e-5)
    e2e.close(out[10], np.prod(wide(p), -1), f"prod axis=-1 {dt}", acc)
    e2e.close(out[11], np.prod(wide(p), (0, 1)), f"prod axis=(0, 1) {dt}", acc)


@FLOATS
def test_reductions_of_a_ragged_matrix(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = e2e.normal((N, M), d, scale=2.0)
    out = e2e.run("reduce2", x, ref_atol=1e-5)
    xw = wide(x)
    want = [(np.sum(xw, 0), F32), (np.mean(xw, -1), F32), (np.max(xw, 1, keepdims=True), d),
            (np.min(xw, 0), d), (lse(xw, 0), F32), (np.var(xw, 0), F32), (np.argmax(xw, 0), np.int64),
            (np.argmin(xw, -1), np.int64)]
    for i, (g, (w, wd)) in enumerate(zip(out, want)):
        e2e.close(g, w, f"reduce2[{i}] {dt}", wd, atol=1e-4)
    p = e2e.normal((N, M), d, scale=0.05, loc=1.0)
    e2e.close(e2e.run("reduce2", p)[8], np.prod(wide(p), 0), f"prod axis=0 {dt}", F32)


def test_reductions_accumulate_in_the_declared_dtype(e2e: E2E) -> None:
    x = e2e.normal((N, M), BF16, loc=100.0)  # a large mean: bf16 accumulation would lose it
    y = e2e.normal((N, M), F32, loc=1e4)
    s, m, v, l_, sy, my = e2e.run("reduce_accum", x, y, ref_atol=1e-3)
    xw, yw = wide(x), wide(y)
    e2e.close(s, xw.sum(-1), "sum bf16 @accum(f32)", F32)
    e2e.close(m, xw.mean(0), "mean bf16 @accum(f32)", F32)
    e2e.close(v, xw.var(-1), "var bf16 @accum(f32)", F32, rtol=1e-3)  # var cancels mean**2 ~ 1e4 in f32
    e2e.close(l_, lse(xw, -1), "logsumexp bf16 @accum(f32)", F32)
    e2e.close(sy, yw.sum(-1), "sum f32 @accum(f64)", np.float64, rtol=1e-12)
    e2e.close(my, yw.mean(), "mean f32 @accum(f64)", np.float64, rtol=1e-12)


@FLOATS
def test_reductions_propagate_nan_and_find_the_first_extreme(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    # Few distinct values: ties everywhere, so argmax/argmin must give the first extreme.
    x = e2e.ints((N, M), -3, 4).astype(d)
    x[3, 17] = x[5, 0] = np.nan
    x[7, 100] = np.inf
    x[9, 2] = -np.inf
    x[11] = -np.inf  # a whole row of -inf: its logsumexp is -inf, not NaN
    out = e2e.run("reduce_nan", x)
    xw = wide(x)
    with errstate():
        want = [(np.max(xw, -1), d), (np.min(xw, 0), d), (np.argmax(xw, -1), np.int64),
                (np.argmin(xw, 0), np.int64), (np.sum(xw, -1), F32), (lse(xw, -1), F32), (np.max(xw), d)]
    want[5][0][11] = -np.inf
    want[5][0][7] = np.inf  # log(sum(exp)) of a row holding +inf (the shifted formula gives inf - inf)
    for i, (g, (w, wd)) in enumerate(zip(out, want)):
        e2e.close(g, w, f"reduce_nan[{i}] {dt}", wd)


def test_integer_and_bool_reductions(e2e: E2E) -> None:
    x = e2e.ints((N, M), -1000, 1000)
    mask = e2e.rng.random((N, M)) < 0.3
    out = e2e.run("reduce_int", x, mask)
    xw = x.astype(np.int64)
    e2e.close(out[0], xw.sum(-1), "int sum", np.int64)
    e2e.close(out[1], xw.max(0), "int max", np.int32)
    e2e.close(out[2], xw.min(), "int min", np.int32)
    e2e.close(out[3], xw.argmax(1), "int argmax", np.int64)
    e2e.close(out[4], xw.mean(-1), "int mean", F32)
    e2e.close(out[5], mask.sum(-1), "bool sum", np.int64)
    e2e.close(out[6], np.prod(np.mod(xw, 3) + 1, 0), "int prod", np.int64)
    e2e.close(out[7], xw.var(0), "int var", F32)


# ============================================================================ shapes


@FLOATS
def test_views(e2e: E2E, dt: str) -> None:
    x = e2e.normal((A, B, C), with_dtype(dt))
    out = e2e.run("shape_views", x)
    want = [x.reshape(15, 67), x.reshape(-1), x.reshape(3, -1), x.transpose(), x.transpose(1, 0, 2),
            x.transpose(2, 0, 1), np.swapaxes(x, 0, -1), x.T, np.expand_dims(x, 1), np.expand_dims(x, -1), x,
            x[:, 0, :], np.broadcast_to(x[:, :1, :], (2, 3, 5, 67))]
    assert len(out) == len(want)
    for i, (g, w) in enumerate(zip(out, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, e2e.msg(f"shape_views[{i}]: {g.shape} {w.shape}")
        np.testing.assert_array_equal(wide(g), wide(w), err_msg=e2e.msg(f"shape_views[{i}] {dt}"))


def test_views_between_computations(e2e: E2E) -> None:
    x = e2e.normal((A, B, C))
    out = e2e.run("shape_math", x, ref_atol=1e-5)
    xw = wide(x)
    want = [np.exp(xw.transpose(2, 0, 1)) + 1, (xw * 2).reshape(-1, 67).sum(0),
            np.swapaxes(xw, 1, 2) * xw[0, 0, :].reshape(67, 1), xw.T * 0.5 + 1]
    for i, (g, w) in enumerate(zip(out, want)):
        e2e.close(g, w, f"shape_math[{i}]", F32, atol=1e-5)


def test_slicing(e2e: E2E) -> None:
    x = e2e.normal((A, B, C))
    out = e2e.run("slicing", x)
    want = [x[1], x[-1], x[:, -2:, 3:60:4], x[..., 0], x[..., None, -1], x[None, 1:, ..., ::2], x[:, 2],
            x[0:2, 1:-1, -5:], x[:, :, 66:], x[-3:-1, ::3], x[::-1], x[:, ::-2, 60:2:-3],
            x[2:-100:-1, 3::-1, -1:-68:-5], x[:, 1:3:-1], x[..., ::-1][1, None]]
    assert len(out) == len(want) + 1
    for i, (g, w) in enumerate(zip(out, want)):
        assert g.shape == w.shape, e2e.msg(f"slicing[{i}]: shape {g.shape}, expected {w.shape}")
        np.testing.assert_array_equal(g, w, err_msg=e2e.msg(f"slicing[{i}]"))
    e2e.close(out[-1], np.exp(wide(x)[::-1, :, ::-1]) + 1, "a reversed view feeding a kernel", F32)


def test_slicing_symbolic_extents(e2e: E2E) -> None:
    x = e2e.normal((N, M), BF16)
    out = e2e.run("slicing_sym", x)
    views = [x[1:-1, :-1], x[:, -1:], x[-1], x[::-1], x[-2::-1, ::-3], x[:1:-1]]
    for i, (g, w) in enumerate(zip(out, views)):
        assert g.shape == w.shape and g.dtype == BF16, e2e.msg(f"slicing_sym[{i}]: {g.shape} {w.shape}")
        np.testing.assert_array_equal(wide(g), wide(w), err_msg=e2e.msg(f"slicing_sym[{i}]"))
    xw = wide(x)
    e2e.close(out[6], xw[:, ::-2].sum(-1), "sum of a reversed strided view", F32)
    e2e.close(out[7], rounded(np.arange(M)[::-1] * xw, F32), "a reversed iota", F32)
    np.testing.assert_array_equal(wide(out[8]), xw[::-1].reshape(-1), err_msg=e2e.msg("reshape of x[::-1]"))
    e2e.close(out[9], xw[::-1] @ xw[:, ::-1].T, "reversed views into a matmul", F32, atol=1e-4)
    e2e.close(out[10], rounded(softmax_np(xw[:, ::-1]), BF16), "softmax of reversed rows", BF16, atol=1e-3)
    np.testing.assert_array_equal(wide(out[11]), np.concatenate([xw[::-1], xw]), err_msg=e2e.msg("concat"))
    np.testing.assert_array_equal(wide(out[12]), xw[::-3][1:][::-2], err_msg=e2e.msg("slices of slices"))


@FLOATS
def test_concat_split_stack(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x, y, z = e2e.normal((A, B, C), d), e2e.normal((A, B, C), d), e2e.normal((A, 2, C), d)
    out = e2e.run("joins", x, y, z)
    xw, yw = wide(x), wide(y)
    want = [np.concatenate([x, y], 0), np.concatenate([x, z, y], 1), np.concatenate([x, y, x], -1),
            np.stack([x, y], 0), np.stack([x, y, x], -1), np.stack([x, y], 2), x[0:1], x[1:2], x[2:3]]
    for i, (g, w) in enumerate(zip(out, want)):
        assert g.shape == w.shape and g.dtype == d, e2e.msg(f"joins[{i}]: {g.shape} {w.shape}")
        np.testing.assert_array_equal(wide(g), wide(w), err_msg=e2e.msg(f"joins[{i}] {dt}"))
    e2e.close(out[9], rounded(xw + xw, d), f"split halves of a concat {dt}", d)
    e2e.close(out[10], np.concatenate([rounded(np.exp(xw), d), rounded(yw * 2, d)], 2),
              f"concat of kernels {dt}", d)


# ============================================================================ linear algebra

KK, PP = 70, 23  # contraction and output extents: not multiples of any block either


@FLOATS
def test_matmul_2d_and_1d(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    a, w, v, u = e2e.normal((N, KK), d), e2e.normal((KK, PP), d), e2e.normal((KK,), d), e2e.normal((N,), d)
    out = e2e.run("matmuls", a, w, v, u, ref_atol=1e-5)
    aw, ww, vw, uw = wide(a), wide(w), wide(v), wide(u)
    want = [aw @ ww, aw @ ww, vw @ ww, aw @ vw, uw @ aw, vw @ vw, (aw @ ww) * 2 + 1]
    assert len(out) == len(want)
    for i, (g, w_) in enumerate(zip(out, want)):
        e2e.close(g, w_, f"matmuls[{i}] {dt}", F32, atol=1e-4)


def test_batched_matmul_broadcasts_leading_dims(e2e: E2E) -> None:
    x, w = e2e.normal((A, N, KK)), e2e.normal((KK, PP))
    y, z = e2e.normal((2, 1, N, KK)), e2e.normal((A, KK, PP))
    out = e2e.run("batched", x, w, y, z, ref_atol=1e-5)
    xw, ww, yw, zw = wide(x), wide(w), wide(y), wide(z)
    want = [xw @ ww, yw @ zw, np.swapaxes(xw, -1, -2)[0].T @ ww, xw @ zw]
    for i, (g, w_) in enumerate(zip(out, want)):
        e2e.close(g, w_, f"batched[{i}]", F32, atol=1e-4)


def test_bf16_matmul_accumulates_in_f32(e2e: E2E) -> None:
    x, w, b = e2e.normal((N, KK), BF16, loc=2.0), e2e.normal((KK, PP), BF16, loc=1.0), e2e.normal((PP,), F32)
    acc, narrowed, act, like = e2e.run("matmul_bf16", x, w, b, ref_atol=1e-4)
    exact = wide(x) @ wide(w)  # bf16 products are exact in f32; only the f32 sum rounds
    e2e.close(acc, exact, "bf16 @ bf16 @accum(f32)", F32)
    e2e.close(narrowed, rounded(exact, BF16), "cast(x @ w, bf16)", BF16)
    h = exact + wide(b)
    erf = np.vectorize(math.erf)
    e2e.close(act, 0.5 * h * (1 + erf(h / math.sqrt(2))), "gelu(x @ w + b)", F32, atol=1e-4)
    e2e.close(like, rounded(exact, BF16) * 2, "cast_like(x @ w, x) * 2.0", BF16)


@FLOATS
def test_einsum(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    a, w = e2e.normal((N, KK), d), e2e.normal((KK, PP), d)
    q, k, s = e2e.normal((2, 3, 7, 16), d), e2e.normal((2, 3, 9, 16), d), e2e.normal((KK, KK), d)
    out = e2e.run("einsums", a, w, q, k, s, ref_atol=1e-4)
    aw, ww, qw, kw, sw = map(wide, (a, w, q, k, s))
    specs = [("ij,jk->ik", aw, ww), ("ij->ji", aw), ("ij->", aw), ("ij->j", aw), ("i,j->ij", aw[0], ww[:, 0]),
             ("bhqd,bhkd->bhqk", qw, kw), ("ij,ij->i", aw, aw), ("ii->i", sw), ("ii", sw), ("ijkl->ljki", qw),
             ("ij,jk,kl->il", aw, sw, ww), ("ik,kj", aw, ww)]
    assert len(out) == len(specs)
    for g, (spec, *ops) in zip(out, specs):
        want = np.einsum(spec, *ops)
        # einsum gives the accumulation dtype (docs), a pure permutation too.
        e2e.close(g, want, f"einsum {spec} {dt}", F32,
                  atol=1e-3 * (1 + np.abs(want).max()) if dt == "bf16" else 1e-4)


# ============================================================================ nn


def softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def layernorm_np(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def rmsnorm_np(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def attention_np(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = False,
                 scale: float | None = None) -> np.ndarray:
    sc = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * sc
    if causal:
        rows, cols = np.arange(q.shape[-2])[:, None], np.arange(k.shape[-2])[None, :]
        s = np.where(cols <= rows, s, -np.inf)
    return softmax_np(s) @ v


@FLOATS
def test_softmax_layernorm_rmsnorm(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    # Large logits: exp would overflow without the row maximum subtracted.
    x, w, b = e2e.normal((N, M), d, scale=30.0), e2e.normal((M,), d), e2e.normal((M,), d)
    out = e2e.run("nn_rows", x, w, b, ref_atol=1e-6)
    xw, ww, bw = wide(x), wide(w), wide(b)
    want = [softmax_np(xw), softmax_np(xw, 0), layernorm_np(xw, ww, bw, 1e-5), rmsnorm_np(xw, ww, 1e-6),
            layernorm_np(xw, ww, bw, 1e-5), rmsnorm_np(xw, ww, 1e-6)]
    for i, (g, w_) in enumerate(zip(out, want)):
        e2e.close(g, rounded(w_, d), f"nn_rows[{i}] {dt}", d, atol=1e-6 if dt == "f32" else 1e-2)
    x3, w3, b3 = e2e.normal((A, B, C), d, scale=3.0), e2e.normal((C,), d), e2e.normal((C,), d)
    out = e2e.run("nn_rows3", x3, w3, b3, ref_atol=1e-6)
    xw, ww, bw = wide(x3), wide(w3), wide(b3)
    want = [softmax_np(xw, 1), softmax_np(xw, -1), layernorm_np(xw, ww, bw, 1e-3), rmsnorm_np(xw, ww, 1e-2)]
    for i, (g, w_) in enumerate(zip(out, want)):
        e2e.close(g, rounded(w_, d), f"nn_rows3[{i}] {dt}", d, atol=1e-6 if dt == "f32" else 1e-2)


def test_normalisations_compute_in_the_accumulation_dtype(e2e: E2E) -> None:
    # A large common offset: bf16 arithmetic on (x - mean) would lose everything.
    x = e2e.normal((N, M), BF16, loc=50.0)
    w, b = e2e.normal((M,), BF16), e2e.normal((M,), BF16)
    sm, ln, rms = e2e.run("nn_accum", x, w, b)
    xw, ww, bw = wide(x), wide(w), wide(b)
    e2e.close(sm, rounded(softmax_np(xw), BF16), "softmax bf16 @accum(f32)", BF16, atol=1e-3)
    e2e.close(ln, rounded(layernorm_np(xw, ww, bw, 1e-5), BF16), "layernorm bf16 @accum(f32)", BF16,
              atol=2e-2)
    e2e.close(rms, rounded(rmsnorm_np(xw, ww, 1e-6), BF16), "rmsnorm bf16 @accum(f32)", BF16, atol=1e-2)


@FLOATS
def test_dropout_moments_and_determinism(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x = (np.abs(e2e.normal((N, M))) + 0.5).astype(d)  # no zeros: a zero result means dropped
    p = 0.3
    seed = int(e2e.rng.integers(0, 2 ** 31))
    (y,) = e2e.run("drop", x, p=p, seed=seed)
    (again,) = e2e.run("drop", x, p=p, seed=seed)
    (other,) = e2e.run("drop", x, p=p, seed=seed + 1)
    assert y.dtype == d and y.shape == x.shape
    assert y.tobytes() == again.tobytes(), e2e.msg("dropout with one seed is deterministic")
    assert not np.array_equal(wide(y) == 0, wide(other) == 0), e2e.msg("another seed drops other elements")
    dropped = wide(y) == 0
    frac = dropped.mean()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / y.size), e2e.msg(f"dropped fraction {frac}, p = {p}")
    kept = ~dropped
    e2e.close(y[kept], rounded(wide(x)[kept] * rounded(1 / (1 - p), d), d), f"kept values scaled {dt}", d)
    # The mask is not a pattern of rows or columns.
    assert 0 < dropped.sum(0).min() and dropped.sum(0).max() < N and dropped.sum(1).max() < M
    (same,) = e2e.run("drop", x, p=0.0, seed=seed)
    assert same.tobytes() == x.tobytes(), e2e.msg("dropout with p = 0 is the identity")


@FLOATS
def test_embedding_and_one_hot(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    table = e2e.normal((50, 37), d)
    ids = e2e.ints((N, 5), 0, 50)
    labels = e2e.ints((N,), 0, 10, np.int64)
    emb, oh, oh2, emb2 = e2e.run("lookups", table, ids, labels)
    np.testing.assert_array_equal(wide(emb), wide(table[ids]), err_msg=e2e.msg("embedding"))
    np.testing.assert_array_equal(wide(emb2), wide(table[labels]), err_msg=e2e.msg("embedding of int64 ids"))
    e2e.close(oh, np.eye(10)[labels], "one_hot", F32)
    e2e.close(oh2, np.eye(50)[ids], "one_hot bf16", BF16)


@FLOATS
def test_cross_entropy_and_mse(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    logits = e2e.normal((N, M), d, scale=3.0)
    labels = e2e.ints((N,), 0, M)
    # A masked class (-inf logit) that is nobody's label: the loss stays finite.
    masked = (labels + 1) % M
    logits[np.arange(N), masked] = -np.inf
    a, b = e2e.normal((N, M), d), e2e.normal((N, M), d)
    ce, err, ce0, err1 = e2e.run("losses", logits, labels, a, b, ref_atol=1e-5)
    lw = wide(logits)
    with errstate():
        per_row = lse(lw, -1) - lw[np.arange(N), labels]
    e2e.close(ce, per_row.mean(), f"cross_entropy {dt}", F32)
    e2e.close(ce0, per_row[0], f"cross_entropy of one row {dt}", F32)
    e2e.close(err, np.mean((wide(a) - wide(b)) ** 2), f"mse {dt}", F32)
    e2e.close(err1, np.mean((wide(a) - 1) ** 2), f"mse with a scalar {dt}", F32)


@FLOATS
def test_attention(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    q, k, v = e2e.normal((A, N, 24), d), e2e.normal((A, 41, 24), d), e2e.normal((A, 41, 19), d)
    plain, scaled, causal = e2e.run("attn", q, k, v, ref_atol=1e-5)
    qw, kw, vw = wide(q), wide(k), wide(v)
    tol = {"atol": 1e-5} if dt == "f32" else {"atol": 1e-2}
    e2e.close(plain, rounded(attention_np(qw, kw, vw), d), f"attention {dt}", d, **tol)
    e2e.close(scaled, rounded(attention_np(qw, kw, vw, scale=0.5), d), f"attention scale=0.5 {dt}", d, **tol)
    e2e.close(causal, rounded(attention_np(qw, kw, vw, causal=True), d), f"causal attention S != T {dt}", d,
              **tol)
    q4, k4, v4 = e2e.normal((2, 3, N, 16), d), e2e.normal((1, 3, N, 16), d), e2e.normal((2, 1, N, 16), d)
    c1, c2 = e2e.run("attn4", q4, k4, v4, ref_atol=1e-5)
    qw, kw, vw = wide(q4), wide(k4), wide(v4)
    e2e.close(c1, rounded(attention_np(qw, kw, vw, causal=True), d), f"causal, broadcast {dt}", d, **tol)
    e2e.close(c2, rounded(attention_np(qw, kw, vw, causal=True, scale=0.3), d), f"causal scale=0.3 {dt}", d,
              **tol)


# ============================================================================ casts


def test_casts_from_f32(e2e: E2E) -> None:
    x = e2e.specials(e2e.normal((N, M), scale=100.0), (np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-3, 65504.0, 1e6,
                                                        -3e38, 2.0 ** -140))
    i = e2e.uniform((N, M), -120.0, 120.0)  # float -> int truncates toward zero; in range of every int dtype
    out = e2e.run("casts_to", x, i)
    with errstate():
        want = [x.astype(BF16), x.astype(F16), x.astype(E4M3), x.astype(E5M2), x.astype(np.float64),
                i.astype(np.int32), i.astype(np.int8), i.astype(np.int64), (x > 0).astype(F32),
                x.astype(bool),
                x.astype(BF16).astype(np.float32).astype(F16),
                x.astype(F16).astype(np.float32).astype(E5M2)]
    assert len(out) == len(want)
    for k, (g, w) in enumerate(zip(out, want)):
        assert g.dtype == w.dtype, e2e.msg(f"casts_to[{k}]: dtype {g.dtype}, expected {w.dtype}")
        # Round to nearest even: exactly what NumPy / ml_dtypes give, NaN and inf included.
        np.testing.assert_array_equal(wide(g), wide(w), err_msg=e2e.msg(f"casts_to[{k}] ({w.dtype})"))


def test_casts_to_f32_and_between_narrow_floats(e2e: E2E) -> None:
    h = e2e.specials(e2e.normal((N, M), BF16, scale=50.0), (np.inf, -np.inf, np.nan, 0.0, 1e5, -7e4), count=2)
    e = e2e.specials(e2e.normal((N, M), E4M3, scale=40.0), (np.nan, 0.0, 448.0, -448.0), count=2)
    i = e2e.ints((N, M), -100, 100)
    f = e2e.specials(e2e.normal((N, M), F16, scale=10.0), (np.inf, np.nan, 60000.0), count=2)
    g = e2e.specials(e2e.normal((N, M), E5M2, scale=10.0), (np.inf, np.nan, 57344.0), count=2)
    out = e2e.run("casts_from", h, e, i, f, g)
    f32 = np.float32
    hf = h.astype(f32)
    # float -> int truncates; NaN gives 0 and out-of-range values saturate (docs/runtime.md).
    to_int = np.clip(np.nan_to_num(np.trunc(wide(hf)), nan=0.0), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    with errstate():
        want = [hf, hf.astype(F16), hf.astype(E5M2), e.astype(f32), e.astype(f32).astype(BF16), i.astype(f32),
                i.astype(BF16), f.astype(f32).astype(BF16), f.astype(f32).astype(BF16), i.astype(BF16),
                hf.astype(F16), g.astype(f32), to_int,
                e.astype(f32).astype(E5M2), i.astype(np.int8)]
    assert len(out) == len(want)
    for k, (got, w) in enumerate(zip(out, want)):
        assert got.dtype == w.dtype, e2e.msg(f"casts_from[{k}]: dtype {got.dtype}, expected {w.dtype}")
        np.testing.assert_array_equal(wide(got), wide(w), err_msg=e2e.msg(f"casts_from[{k}] ({w.dtype})"))


# ============================================================================ stdlib.nn


@FLOATS
def test_stdlib_safe_forms(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    x, w, b = e2e.normal((N, M), d, scale=40.0), e2e.normal((M,), d), e2e.normal((M,), d)
    out = e2e.run("safe_forms", x, w, b, ref_atol=1e-5)
    xw, ww, bw = wide(x), wide(w), wide(b)
    erf = np.vectorize(math.erf)
    exact = 0.5 * xw * (1 + erf(xw / math.sqrt(2)))
    tanh = 0.5 * xw * (1 + np.tanh(math.sqrt(2 / math.pi) * (xw + 0.044715 * xw ** 3)))
    want = [softmax_np(xw), softmax_np(xw, 0), lse(xw, -1), lse(xw, 0), layernorm_np(xw, ww, bw, 1e-5),
            rmsnorm_np(xw, ww, 1e-6), exact, tanh, exact, tanh, layernorm_np(xw, ww, bw, 1e-2),
            rmsnorm_np(xw, ww, 1e-2)]
    for k, (g, w_) in enumerate(zip(out, want)):
        # Computed in f32 whatever the input dtype, returned in it.
        e2e.close(g, rounded(w_, d), f"safe_forms[{k}] {dt}", d, atol=1e-5 if dt == "f32" else 2e-2)


@FLOATS
def test_stdlib_attention_losses_and_rotary(e2e: E2E, dt: str) -> None:
    d = with_dtype(dt)
    q, k, v = e2e.normal((A, N, 16), d), e2e.normal((A, N, 16), d), e2e.normal((A, N, 16), d)
    logits, labels = e2e.normal((N, M), d, scale=3.0), e2e.ints((N,), 0, M)
    ang = np.arange(N)[:, None] * (1.0 / 10000 ** (np.arange(8) / 8))[None, :]
    cos, sin = np.cos(ang).astype(F32), np.sin(ang).astype(F32)
    causal, full, ce, err, rot = e2e.run("safe_more", q, k, v, logits, labels, cos, sin, ref_atol=1e-5)
    qw, kw, vw, lw = wide(q), wide(k), wide(v), wide(logits)
    tol = 1e-5 if dt == "f32" else 1e-2
    e2e.close(causal, rounded(attention_np(qw, kw, vw, causal=True), d), f"nn.attention causal {dt}", d,
              atol=tol)
    e2e.close(full, rounded(attention_np(qw, kw, vw), d), f"nn.attention {dt}", d, atol=tol)
    e2e.close(ce, np.mean(lse(lw, -1) - lw[np.arange(N), labels]), f"nn.cross_entropy {dt}", F32)
    e2e.close(err, np.mean((lw - rounded(lw * 0.5, d)) ** 2), f"nn.mse {dt}", F32)
    x1, x2 = qw[..., :8], qw[..., 8:]
    c, s_ = wide(cos), wide(sin)
    e2e.close(rot, rounded(np.concatenate([x1 * c - x2 * s_, x1 * s_ + x2 * c], -1), d), f"rotary {dt}", d,
              atol=tol)


# ============================================================================ print


def test_print_in_jit_code_runs_at_run_time(e2e: E2E) -> None:
    x = e2e.normal((N, M))
    jf = e2e.module.debug_print
    arrays, st, binding = jf.prepare((x,), {}, jf.fn.name_span)
    cf = jf.compiled(jf.spec_key(arrays, st, binding), st, binding)
    assert isinstance(cf, CompiledFunction) and cf.graph is not None
    cf.poison = True
    compiled_out, reference_out = io.StringIO(), io.StringIO()
    cf.out = compiled_out
    try:
        (y,) = cf(x)
    finally:
        cf.out = None
    (r,) = evaluate(cf.graph, [x], out=reference_out)
    e2e.same(y, r, "debug_print: compiled vs reference", REF_RTOL)
    text, ref_text = compiled_out.getvalue(), reference_out.getvalue()
    # The same line, but for the sum's last digits (another summation order).
    assert text.split(" corner ")[1] == ref_text.split(" corner ")[1], e2e.msg(f"{text!r} vs {ref_text!r}")
    assert text.startswith("total ") and f"corner {x[0, 0]}" in text and str(x[1, :4]) in text, e2e.msg(text)
    total, ref_total = float(text.split()[1]), float(ref_text.split()[1])
    assert abs(total - wide(x).sum()) < 1e-3 and abs(total - ref_total) < 1e-4, e2e.msg(f"printed {total}")
    e2e.close(y, wide(x) * 2, "debug_print result", F32)


# ============================================================================ examples/*.tsr

EXAMPLES = ROOT / "examples"


def _example_inputs(e: E2E, name: str) -> tuple[object, ...]:
    """Arguments for every @jit function of the examples, in the shapes of their main() but ragged and
    smaller (the where constraints still hold)."""
    r = e.normal
    qkv = [r((2, 3, 37, 24), BF16) for _ in range(3)]
    d = 64  # transformer_block: D == 16 * R, heads of 8, rotary over half a head
    ang = np.arange(37)[:, None] * (1.0 / 10000 ** (np.arange(4) / 4))[None, :]
    table = {
        "causal_attention": qkv,
        "causal_attention_ref": qkv,
        "norm": [r((2, 37, 129)), r((129,)), r((129,))],
        "norms_bf16": [r((37, 129), BF16), r((129,), BF16), r((129,), BF16)],
        "mlp": [r((37, 24), BF16), r((24, 96), BF16), r((96,)), r((96, 24), BF16)],
        "row_softmax": [r((37, 129), scale=10.0)],
        "row_softmax_bf16": [r((37, 129), BF16, scale=10.0)],
        "transformer_block": [r((2, 37, d), BF16), r((d,), BF16, loc=1.0), r((d, 3 * d), BF16, scale=0.1),
                              r((d, d), BF16, scale=0.1), r((d,), BF16, loc=1.0),
                              r((d, 4 * d), BF16, scale=0.1), r((4 * d, d), BF16, scale=0.1),
                              np.cos(ang).astype(F32), np.sin(ang).astype(F32)],
    }
    return tuple(table[name])


EXAMPLE_JIT = {
    "attention.tsr": ["causal_attention", "causal_attention_ref"],
    "effects.tsr": [],
    "flash_attention.tsr": [],
    "layernorm.tsr": ["norm", "norms_bf16"],
    "mlp.tsr": ["mlp"],
    "softmax.tsr": ["row_softmax", "row_softmax_bf16"],
    "transformer_block.tsr": ["transformer_block"],
}


@pytest.fixture(scope="module")
def examples(private_code_cache) -> dict[str, tessera.api.Module]:
    return {p.name: tessera.load(p, target="cpu") for p in sorted(EXAMPLES.glob("*.tsr"))}


def test_every_example_jit_function_is_covered(examples: dict[str, tessera.api.Module]) -> None:
    found = {}
    for name, m in examples.items():
        assert m.checked.result is not None
        sigs = m.checked.result.signatures
        found[name] = [f.name for f in m.checked.result.program.root.tree.functions if sigs[f].kind == "jit"]
    assert found == EXAMPLE_JIT


@pytest.mark.parametrize("file,fn", [(f, fn) for f, fns in EXAMPLE_JIT.items() for fn in fns])
def test_example_jit_functions_match_the_reference(examples: dict[str, tessera.api.Module], file: str,
                                                   fn: str) -> None:
    e = E2E(examples[file], secrets.randbits(63))
    args = _example_inputs(e, fn)
    # The transformer block rounds to bf16 between its stages: where compiled and reference
    # intermediates sit on either side of a rounding boundary, the output moves by a bf16 step at
    # the activations' scale (|x| up to ~4, where a step is 2**-5), so allow two such steps there.
    out = e.run(fn, *args, ref_atol=2.0**-4 if fn == "transformer_block" else 1e-5)
    for k, o in enumerate(out):
        assert np.isfinite(wide(o)).all(), e.msg(f"{file} {fn} result {k} is finite")
    w = [wide(a) for a in args]  # type: ignore[arg-type]
    erf = np.vectorize(math.erf)
    if fn in ("causal_attention", "causal_attention_ref"):
        e.close(out[0], rounded(attention_np(*w, causal=True), BF16), f"{fn} vs NumPy", BF16, atol=1e-2)
    elif fn == "norm":
        e.close(out[0], layernorm_np(w[0], w[1], w[2], 1e-5), f"{fn} vs NumPy", F32, atol=1e-5)
    elif fn == "norms_bf16":
        e.close(out[0], rounded(layernorm_np(w[0], w[1], w[2], 1e-5), BF16), "layernorm_safe bf16", BF16,
                atol=2e-2)
        e.close(out[1], rounded(rmsnorm_np(w[0], w[1], 1e-6), BF16), "rmsnorm_safe bf16", BF16, atol=2e-2)
    elif fn == "mlp":
        h = w[0] @ w[1] + w[2]
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        e.close(out[0], rounded(h @ w[3], BF16), f"{fn} vs NumPy", BF16, atol=5e-2)
    elif fn in ("row_softmax", "row_softmax_bf16"):
        e.close(out[0], rounded(softmax_np(w[0]), out[0].dtype), f"{fn} vs NumPy", None, atol=1e-6)
    else:
        assert fn == "transformer_block"
        assert out[0].shape == (2, 37, 64) and out[0].dtype == BF16, e.msg("transformer_block result")
