"""Building the Graph IR from checked `.tsr` programs: every builtin usable in `@jit` code is built,
verified and evaluated with the reference evaluator on fresh random inputs, against a NumPy formula
written here independently; plus inlined stdlib helpers, static parameters, unrolled loops, function
attributes, spans, printed IR (FileCheck) and every `@jit` function of the examples."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from textwrap import dedent

import ml_dtypes
import numpy as np
import pytest
from filecheck_util import filecheck

from tessera.diagnostics import CompilationError, render_text
from tessera.dtypes import BF16, F32, DType, numpy_dtype
from tessera.frontend.check import Checked, check_file, check_text
from tessera.ir.graph.build import build_graph, build_module, jit_functions
from tessera.ir.graph.ops import Function
from tessera.ir.graph.printer import print_function
from tessera.ir.graph.reference import evaluate
from tessera.ir.graph.verify import verify_function

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
bf16 = ml_dtypes.bfloat16


# ---------------------------------------------------------------- helpers


def checked(src: str) -> Checked:
    c = check_text(dedent(src), "t.tsr")
    assert c.ok, render_text(c.diagnostics, c.sources)
    return c


def build(src: str, name: str | None = None, static: dict[str, object] | None = None,
          dims: dict[str, int] | None = None) -> Function:
    c = checked(src)
    fns = jit_functions(c)
    fn = fns[0] if name is None else next(f for f in fns if f.name == name)
    g = build_graph(c, fn, static, dims=dims)
    verify_function(g)
    return g


def run(src: str, *args: np.ndarray, name: str | None = None, static: dict[str, object] | None = None,
        float64: bool = False) -> list[np.ndarray]:
    return evaluate(build(src, name, static), list(args), float64=float64)


def run1(src: str, *args: np.ndarray, **kw: object) -> np.ndarray:
    (out,) = run(src, *args, **kw)  # type: ignore[arg-type]
    return out


TOL = {"float32": (1e-5, 1e-6), "bfloat16": (2e-2, 2e-2), "float16": (2e-3, 2e-3), "float64": (1e-12, 1e-12)}


def close(actual: np.ndarray, expected: object, dtype: str | None = None) -> None:
    """Dtype-aware comparison: the tolerance of the result's dtype (or `dtype`)."""
    actual = np.asarray(actual)
    rtol, atol = TOL[dtype or str(actual.dtype)]
    np.testing.assert_allclose(actual.astype(np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def randn(rng: np.random.Generator, *shape: int, dtype: object = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def ops_of(g: Function) -> list[str]:
    return [op.name for op in g.ops]


_erf = np.vectorize(math.erf)


def np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float | None = None
                 ) -> np.ndarray:
    s = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        n, m = s.shape[-2:]
        s = np.where(np.tril(np.ones((n, m), bool)), s, -np.inf)
    return np_softmax(s) @ v


UNARY = """
@jit
def f(x: Tensor["N", "M", {dt}]) -> Tensor["N", "M", {dt}]:
    return {call}
"""

# ---------------------------------------------------------------- elementwise

UNARY_CASES = [
    ("exp(x)", np.exp, "any"),
    ("log(x)", np.log, "pos"),
    ("log1p(x)", np.log1p, "pos"),
    ("sqrt(x)", np.sqrt, "pos"),
    ("rsqrt(x)", lambda x: 1 / np.sqrt(x), "pos"),
    ("sin(x)", np.sin, "any"),
    ("cos(x)", np.cos, "any"),
    ("tanh(x)", np.tanh, "any"),
    ("erf(x)", _erf, "any"),
    ("sigmoid(x)", lambda x: 1 / (1 + np.exp(-x)), "any"),
    ("relu(x)", lambda x: np.maximum(x, 0), "any"),
    ("silu(x)", lambda x: x / (1 + np.exp(-x)), "any"),
    ("gelu(x)", lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), "any"),
    ('gelu(x, approximate="tanh")',
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), "any"),
    ("neg(x)", np.negative, "any"),
    ("-x", np.negative, "any"),
    ("abs(x)", np.abs, "any"),
]


@pytest.mark.parametrize("dt", ["f32", "bf16"])
@pytest.mark.parametrize(("call", "formula", "domain"), UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
def test_unary_builtins(call: str, formula, domain: str, dt: str, rng: np.random.Generator) -> None:
    x = randn(rng, 3, 5)
    if domain == "pos":
        x = np.abs(x) + 0.1
    xin = x.astype(numpy_dtype(BF16 if dt == "bf16" else F32))
    out = run1(UNARY.format(dt=dt, call=call), xin)
    assert out.dtype == xin.dtype
    close(out, formula(f64(xin)))


def test_isnan_isinf_give_bool() -> None:
    x = np.array([[1.0, np.nan, np.inf, -np.inf]], np.float32)
    src = """
    @jit
    def f(x: Tensor["N", "M", f32]) -> (Tensor["N", "M", bool], Tensor["N", "M", bool]):
        return isnan(x), isinf(x)
    """
    a, b = run(src, x)
    np.testing.assert_array_equal(a, np.isnan(x))
    np.testing.assert_array_equal(b, np.isinf(x))


BINARY_CASES = [
    ("x + y", np.add), ("x - y", np.subtract), ("x * y", np.multiply), ("x / y", np.divide),
    ("x // y", np.floor_divide), ("x % y", np.mod), ("maximum(x, y)", np.maximum),
    ("minimum(x, y)", np.minimum), ("abs(x) ** y", lambda a, b: np.abs(a) ** b),
]


@pytest.mark.parametrize(("expr", "formula"), BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_binary_operators_broadcast(expr: str, formula, rng: np.random.Generator) -> None:
    """[N, 1] against [M]: both operands are broadcast explicitly to [N, M]."""
    src = f"""
    @jit
    def f(x: Tensor["N", 1, f32], y: Tensor["M", f32]) -> Tensor["N", "M", f32]:
        return {expr}
    """
    x, y = randn(rng, 4, 1), np.abs(randn(rng, 6)) + 0.5
    g = build(src)
    assert ops_of(g).count("broadcast_to") == 2
    (out,) = evaluate(g, [x, y])
    assert out.shape == (4, 6)
    close(out, formula(f64(x), f64(y)))


def test_scalars_are_weak_and_become_constants(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", bf16]) -> Tensor["N", bf16]:
        return 2.0 * x + 1 - x / 4
    """
    x = randn(rng, 8, dtype=bf16)
    g = build(src)
    assert "constant" in ops_of(g) and "cast" not in ops_of(g)  # scalars take x's dtype: no casts
    out = evaluate(g, [x])[0]
    assert out.dtype == bf16
    close(out, 2 * f64(x) + 1 - f64(x) / 4)


def test_promotion_inserts_casts_to_the_result_dtype(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(a: Tensor["N", bf16], b: Tensor["N", f32], i: Tensor["N", int32]) -> (Tensor["N", f32],
                                                                                Tensor["N", f32],
                                                                                Tensor["N", f32]):
        return a + b, i * 0.5, i / i
    """
    a, b = randn(rng, 5, dtype=bf16), randn(rng, 5)
    i = rng.integers(1, 9, 5).astype(np.int32)
    g = build(src)
    casts = [op for op in g.ops if op.name == "cast"]
    assert {str(op.attr("dtype")) for op in casts} == {"f32"}
    for op in g.ops:
        if op.name in ("add", "mul", "div"):
            assert {v.ty.dtype for v in op.operands} == {op.result.ty.dtype} == {F32}
    x, y, z = evaluate(g, [a, b, i])
    close(x, f64(a) + f64(b))
    close(y, i * 0.5)
    close(z, np.ones(5))


def test_comparisons_where_and_clip(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", "M", f32], y: Tensor["M", f32]) -> (Tensor["N", "M", f32], Tensor["N", "M", f32],
                                                             Tensor["N", "M", bool]):
        return where(x > y, x, 0.0), clip(x, -0.5, 0.5), x != y
    """
    x, y = randn(rng, 3, 4), randn(rng, 4)
    a, c, ne = run(src, x, y)
    close(a, np.where(x > y, x, 0.0))
    close(c, np.clip(x, -0.5, 0.5))
    np.testing.assert_array_equal(ne, x != y)


# ---------------------------------------------------------------- reductions

REDUCTIONS = [
    ("sum(x, axis=1)", lambda x: x.sum(1)),
    ("sum(x)", lambda x: x.sum()),
    ("mean(x, axis=(0, 2), keepdims=True)", lambda x: x.mean((0, 2), keepdims=True)),
    ("max(x, axis=-1)", lambda x: x.max(-1)),
    ("min(x, axis=0, keepdims=True)", lambda x: x.min(0, keepdims=True)),
    ("prod(x, axis=2)", lambda x: x.prod(2)),
    ("logsumexp(x, axis=-1)", lambda x: np.log(np.exp(x).sum(-1))),
    ("var(x, axis=1)", lambda x: x.var(1)),
    ("var(x)", lambda x: x.var()),
]


@pytest.mark.parametrize(("expr", "formula"), REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reductions(expr: str, formula, rng: np.random.Generator) -> None:
    src = f"""
    @jit
    def f(x: Tensor[3, 4, 5, f32]):
        return {expr}
    """
    x = randn(rng, 3, 4, 5)
    close(run1(src, x), formula(f64(x)))


def test_bf16_reductions_accumulate_in_f32(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", "M", bf16]) -> (Tensor["N", f32], Tensor["N", bf16]):
        return sum(x, axis=-1), max(x, axis=-1)
    """
    x = randn(rng, 4, 300, dtype=bf16)
    g = build(src)
    red = [op for op in g.ops if op.name == "reduce"]
    assert [str(op.attr("accum")) for op in red] == ["f32", "bf16"]
    s, m = evaluate(g, [x])
    assert s.dtype == np.float32 and m.dtype == bf16
    close(s, f64(x).sum(-1), "float32")
    np.testing.assert_array_equal(m, x.max(-1))


def test_argmax_argmin(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", "M", f32]):
        return argmax(x, axis=1), argmin(x), argmax(x, axis=0, keepdims=True)
    """
    x = randn(rng, 4, 6)
    a, b, c = run(src, x)
    assert a.dtype == np.int64
    np.testing.assert_array_equal(a, x.argmax(1))
    assert int(b) == int(x.argmin())
    np.testing.assert_array_equal(c, x.argmax(0)[None, :])


# ---------------------------------------------------------------- matmul and einsum


def test_bf16_matmul_accumulates_in_f32(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["B", "K", bf16 @accum(f32)], w: Tensor["K", "N", bf16]) -> Tensor["B", "N", f32]:
        return x @ w
    """
    g = build(src)
    (mm,) = [op for op in g.ops if op.name == "matmul"]
    assert mm.attr("accum") == F32 and mm.result.ty.dtype == F32
    filecheck(print_function(g), """
        CHECK: func @f(%x: tensor<[B, K], bf16>, %w: tensor<[K, N], bf16>) -> (tensor<[B, N], f32>)
        CHECK-NEXT: attributes {symbols = ["B", "K", "N"]}
        CHECK-NEXT: matmul(%x, %w) {accum = f32} : tensor<[B, N], f32>
    """)
    x, w = randn(rng, 5, 256, dtype=bf16), randn(rng, 256, 3, dtype=bf16)
    (out,) = evaluate(g, [x, w])
    assert out.dtype == np.float32
    close(out, f64(x) @ f64(w), "float32")


MATMULS = [
    ((4, 3), (3, 5)),
    ((3,), (3, 5)),
    ((4, 3), (3,)),
    ((3,), (3,)),
    ((2, 4, 3), (3, 5)),
    ((2, 1, 4, 3), (3, 3, 5)),
    ((4, 3), (2, 3, 5)),
]


@pytest.mark.parametrize(("sa", "sb"), MATMULS, ids=[f"{a}@{b}" for a, b in MATMULS])
def test_matmul_shapes(sa: tuple[int, ...], sb: tuple[int, ...], rng: np.random.Generator) -> None:
    src = f"""
    @jit
    def f(a: Tensor[{", ".join(map(str, sa))}, f32], b: Tensor[{", ".join(map(str, sb))}, f32]):
        return matmul(a, b)
    """
    a, b = randn(rng, *sa), randn(rng, *sb)
    g = build(src)
    for op in g.ops:
        if op.name == "matmul":
            x, y = (v.ty for v in op.operands)
            assert x.rank == y.rank >= 2 and x.dims[:-2] == y.dims[:-2]
    close(evaluate(g, [a, b])[0], f64(a) @ f64(b))


def test_matmul_mixed_dtypes_cast_to_the_promoted_dtype(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(a: Tensor["M", "K", f32], b: Tensor["K", "N", bf16]) -> Tensor["M", "N", f32]:
        return a @ b
    """
    g = build(src)
    (mm,) = [op for op in g.ops if op.name == "matmul"]
    assert [v.ty.dtype for v in mm.operands] == [F32, F32]
    a, b = randn(rng, 3, 4), randn(rng, 4, 2, dtype=bf16)
    close(evaluate(g, [a, b])[0], f64(a) @ f64(b))


EINSUMS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("i,i->", [(6,), (6,)]),
    ("ij,j->i", [(3, 4), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ijk,ik->j", [(2, 3, 4), (2, 4)]),
    ("ij,jk", [(3, 4), (4, 5)]),
]


@pytest.mark.parametrize(("spec", "shapes"), EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum(spec: str, shapes: list[tuple[int, ...]], rng: np.random.Generator) -> None:
    names = "abc"[:len(shapes)]
    params = ", ".join(f'{n}: Tensor[{", ".join(map(str, s))}, f32]' for n, s in zip(names, shapes))
    src = f"""
    @jit
    def f({params}):
        return einsum("{spec}", {", ".join(names)})
    """
    args = [randn(rng, *s) for s in shapes]
    close(run1(src, *args), np.einsum(spec, *[f64(a) for a in args]))


def test_einsum_with_ellipsis_is_refused() -> None:
    c = check_text(dedent("""
    @jit
    def f(a: Tensor[2, 3, f32]):
        return einsum("...i->...", a)
    """), "t.tsr")
    assert not c.ok  # the checker refuses it; nothing to build


# ---------------------------------------------------------------- shapes


def test_shape_builtins(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor[2, 3, 4, f32]):
        a = reshape(x, (6, -1))
        b = transpose(x)
        c = permute(x, (1, 0, 2))
        d = swapaxes(x, 0, -1)
        e = expand_dims(x, 1)
        g = squeeze(expand_dims(x, -1), axis=-1)
        h = broadcast_to(x[:, :, 0:1], (5, 2, 3, 4))
        i = x.T
        return a, b, c, d, e, g, h, i
    """
    x = randn(rng, 2, 3, 4)
    a, b, c, d, e, g, h, i = run(src, x)
    np.testing.assert_array_equal(a, x.reshape(6, -1))
    np.testing.assert_array_equal(b, x.transpose())
    np.testing.assert_array_equal(c, x.transpose(1, 0, 2))
    np.testing.assert_array_equal(d, np.swapaxes(x, 0, -1))
    np.testing.assert_array_equal(e, x[:, None])
    np.testing.assert_array_equal(g, x)
    np.testing.assert_array_equal(h, np.broadcast_to(x[:, :, 0:1], (5, 2, 3, 4)))
    np.testing.assert_array_equal(i, x.T)


def test_concat_stack_split(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", 6, f32], y: Tensor["N", 2, bf16]):
        a, b, c = split(x, 3, axis=1)
        return concat([x, y], axis=-1), stack([a, b, c], axis=0), stack([a, c], axis=-1), b
    """
    x, y = randn(rng, 4, 6), randn(rng, 4, 2, dtype=bf16)
    g = build(src)
    assert ops_of(g).count("slice") == 3
    cat, st, st2, b = evaluate(g, [x, y])
    assert cat.dtype == np.float32
    np.testing.assert_array_equal(cat, np.concatenate([x, f64(y).astype(np.float32)], -1))
    parts = np.split(x, 3, axis=1)
    np.testing.assert_array_equal(st, np.stack(parts, 0))
    np.testing.assert_array_equal(st2, np.stack([parts[0], parts[2]], -1))
    np.testing.assert_array_equal(b, parts[1])


SLICES = ["x[1]", "x[-1]", "x[:, 0:2]", "x[:, -2:]", "x[..., 1]", "x[None, 1:, ::2]", "x[:, None, -1, ...]",
          "x[0, 1, 2]", "x[1:3:2, ..., None]", "x[-3:-1]", "x[:, 10:]"]


@pytest.mark.parametrize("expr", SLICES)
def test_slicing_and_indexing(expr: str, rng: np.random.Generator) -> None:
    src = f"""
    @jit
    def f(x: Tensor[4, 5, 3, f32]):
        return {expr}
    """
    x = randn(rng, 4, 5, 3)
    np.testing.assert_array_equal(run1(src, x), eval(expr, {"x": x}))


def test_symbolic_slices_and_shape_arithmetic(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["B", "D", f32]) -> (Tensor["B", "D//2", f32], Tensor["B", f32], Tensor["B*D", f32])
            where D % 2 == 0:
        h = x.shape[-1] // 2
        return x[:, :h] + x[:, h:], x[:, -1], reshape(x, (x.shape[0] * x.shape[1],))
    """
    g = build(src)
    assert [str(r.ty) for r in g.returns] == ["tensor<[B, D//2], f32>", "tensor<[B], f32>",
                                              "tensor<[B*D], f32>"]
    x = randn(rng, 3, 8)
    a, b, c = evaluate(g, [x])
    np.testing.assert_array_equal(a, x[:, :4] + x[:, 4:])
    np.testing.assert_array_equal(b, x[:, -1])
    np.testing.assert_array_equal(c, x.reshape(-1))


# ---------------------------------------------------------------- nn builtins


def test_softmax_layernorm_rmsnorm(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", "D", bf16], w: Tensor["D", bf16], b: Tensor["D", bf16]):
        return softmax(x, axis=0), layernorm(x, w, b, 1e-5), rmsnorm(x, w)
    """
    x, w, b = randn(rng, 4, 16, dtype=bf16), randn(rng, 16, dtype=bf16), randn(rng, 16, dtype=bf16)
    g = build(src)
    for op in g.ops:
        assert op.attr("accum") == F32 and op.result.ty.dtype == BF16
    s, ln, rms = evaluate(g, [x, w, b])
    xf, wf, bf = f64(x), f64(w), f64(b)
    close(s, np_softmax(xf, 0))
    mu, var = xf.mean(-1, keepdims=True), xf.var(-1, keepdims=True)
    close(ln, (xf - mu) / np.sqrt(var + 1e-5) * wf + bf)
    close(rms, xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-6) * wf)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_builtin_static_causal(causal: bool, rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(q: Tensor["B", "S", "D", f32], k: Tensor["B", "T", "D", f32], v: Tensor["B", "T", "E", f32], *,
          causal: bool) -> Tensor["B", "S", "E", f32]:
        return attention(q, k, v, causal=True) if causal else attention(q, k, v)
    """
    g = build(src, static={"causal": causal})
    (att,) = [op for op in g.ops if op.name == "attention"]
    assert att.attr("causal") is causal
    assert att.attr("scale") == 0.0  # D is symbolic: 1/sqrt(D) once shapes are known
    q, k, v = randn(rng, 2, 5, 8), randn(rng, 2, 7, 8), randn(rng, 2, 7, 3)
    close(evaluate(g, [q, k, v])[0], np_attention(f64(q), f64(k), f64(v), causal))


def test_attention_explicit_scale_and_static_head_dim(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(q: Tensor[4, 8, f32], k: Tensor[4, 8, f32], v: Tensor[4, 8, f32]):
        return attention(q, k, v), attention(q, k, v, causal=True, scale=0.5), attention(q, k, v, scale=0.0)
    """
    g = build(src)
    scales = [op.attr("scale") for op in g.ops if op.name == "attention"]
    assert scales == [pytest.approx(1 / math.sqrt(8)), 0.5]  # scale 0 is built from softmax and matmuls
    q, k, v = randn(rng, 4, 8), randn(rng, 4, 8), randn(rng, 4, 8)
    a, b, c = evaluate(g, [q, k, v])
    close(a, np_attention(f64(q), f64(k), f64(v), False))
    close(b, np_attention(f64(q), f64(k), f64(v), True, 0.5))
    close(c, np.broadcast_to(f64(v).mean(0), (4, 8)))


def test_dropout_is_random_cmp_select_mul(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32], *, p: float) -> Tensor["N", f32]:
        return dropout(x, p, seed=11)
    """
    g = build(src, static={"p": 0.25})
    assert {"random", "cmp", "select", "mul"} <= set(ops_of(g))
    assert g.effects == ("random",)
    x = np.abs(randn(rng, 20000)) + 1
    a, b = evaluate(g, [x])[0], evaluate(g, [x])[0]
    np.testing.assert_array_equal(a, b)  # keyed by the seed: reproducible
    kept = a != 0
    assert abs(kept.mean() - 0.75) < 0.02
    close(a[kept], x[kept] / 0.75)
    assert ops_of(build(src, static={"p": 0.0})) == []  # p = 0 keeps everything


def test_random_draws_without_seed_are_keyed_by_call_site() -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32]):
        a = dropout(x, 0.5)
        b = dropout(x, 0.5)
        return a, b
    """
    g1, g2 = build(src), build(src)
    seeds = [op.attr("seed") for op in g1.ops if op.name == "random"]
    assert len(set(seeds)) == 2  # two call sites, two keys
    assert seeds == [op.attr("seed") for op in g2.ops if op.name == "random"]  # deterministic


def test_embedding_one_hot_cross_entropy_mse(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(table: Tensor["V", "D", f32], ids: Tensor["I", "J", int32], logits: Tensor["B", "C", bf16],
          labels: Tensor["B", int64], a: Tensor["B", "C", f32]):
        return embedding(table, ids), one_hot(labels, 5, f32), cross_entropy(logits, labels), mse(a, logits)
    """
    table, ids = randn(rng, 7, 3), rng.integers(0, 7, (2, 4)).astype(np.int32)
    logits, labels = randn(rng, 6, 5, dtype=bf16), rng.integers(0, 5, 6)
    a = randn(rng, 6, 5)
    g = build(src)
    assert "gather" in ops_of(g) and "logsumexp" in ops_of(g)
    emb, oh, ce, m = evaluate(g, [table, ids, logits, labels, a])
    np.testing.assert_array_equal(emb, table[ids])
    np.testing.assert_array_equal(oh, np.eye(5, dtype=np.float32)[labels])
    lf = f64(logits)
    want = np.mean(np.log(np.exp(lf).sum(-1)) - lf[np.arange(6), labels])
    assert ce.dtype == np.float32 and ce.shape == ()
    close(ce, want, "float32")
    close(m, np.mean((f64(a) - lf) ** 2), "float32")


# ---------------------------------------------------------------- casts and creation


def test_cast_and_cast_like(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32], y: Tensor["N", bf16]):
        return cast(x, bf16), cast_like(x, y), cast(x, int32), cast(x, bf16 @round("toward_zero"))
    """
    g = build(src)
    roundings = [op.attr("rounding") for op in g.ops if op.name == "cast"]
    assert roundings == ["nearest_even", "nearest_even", "toward_zero", "toward_zero"]
    x = randn(rng, 64) * 100
    a, b, c, d = evaluate(g, [x, x.astype(bf16)])
    np.testing.assert_array_equal(a, x.astype(bf16))
    np.testing.assert_array_equal(b, x.astype(bf16))
    np.testing.assert_array_equal(c, np.trunc(x).astype(np.int32))
    truncated = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    np.testing.assert_array_equal(f64(d), truncated)


def test_stochastic_round_policy_reaches_the_cast() -> None:
    g = build("""
    @jit
    def f(x: Tensor["N", f32]) -> Tensor["N", bf16]:
        return cast(x, bf16 @stochastic_round)
    """)
    assert [op.attr("rounding") for op in g.ops] == ["stochastic"]


def test_creation_builtins(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", "M", f32]):
        n = x.shape[0]
        return (zeros((n, 2), f32), ones(x.shape, bf16), full((3,), 2.5, f32), arange(x.shape[1]),
                randn((n, 4), f32, seed=3), rand((2, 2), f64, seed=4), full((n,), n, int32))
    """
    g = build(src)
    x = randn(rng, 3, 5)
    z, o, fl, ar, rn, ru, fn = evaluate(g, [x])
    np.testing.assert_array_equal(z, np.zeros((3, 2), np.float32))
    assert o.dtype == bf16 and o.shape == (3, 5) and np.all(f64(o) == 1)
    np.testing.assert_array_equal(fl, [2.5, 2.5, 2.5])
    np.testing.assert_array_equal(ar, np.arange(5))
    assert ar.dtype == np.int64
    np.testing.assert_array_equal(rn, np.random.Generator(np.random.PCG64(3)).standard_normal((3, 4),
                                                                                               dtype=np.float32))
    assert ru.dtype == np.float64 and np.all((ru >= 0) & (ru < 1))
    np.testing.assert_array_equal(fn, [3, 3, 3])
    assert "extent" in ops_of(g)  # `n` is the symbolic extent N, known at run time


def test_print_is_an_io_op_with_a_format(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
        print("x =", x, "shape", x.shape, "{literal}")
        return x
    """
    g = build(src)
    (pr,) = [op for op in g.ops if op.name == "print"]
    assert pr.attr("format") == "x = {} shape ({},) {{literal}}"
    assert g.effects == ("io",)
    x = np.arange(3, dtype=np.float32)
    buf = io.StringIO()
    evaluate(g, [x], out=buf)  # type: ignore[call-arg]
    assert buf.getvalue() == "x = [0. 1. 2.] shape (3,) {literal}\n"


# ---------------------------------------------------------------- stdlib helpers, inlined

STDLIB = """
from stdlib.nn import softmax_safe, logsumexp_safe, layernorm_safe, rmsnorm_safe, gelu_exact, gelu_tanh
from stdlib.nn import rotary_embedding, gelu
import stdlib.nn as nn

@jit
def f(x: Tensor["N", "D", bf16], w: Tensor["D", bf16], b: Tensor["D", bf16], c: Tensor["N", "R", f32],
      s: Tensor["N", "R", f32]) where D == 2 * R:
    return (softmax_safe(x), logsumexp_safe(x, axis=0), layernorm_safe(x, w, b), rmsnorm_safe(x, w, eps=1e-5),
            gelu_exact(cast(x, f32)), gelu_tanh(cast(x, f32)), gelu(cast(x, f32), approximate="tanh"),
            rotary_embedding(x, c, s), nn.mse(x, x * 2.0))
"""


def test_stdlib_helpers_are_inlined(rng: np.random.Generator) -> None:
    g = build(STDLIB)
    assert "call" not in ops_of(g)
    assert all(op.span is not None for op in g.ops)
    assert any(op.span.file.endswith("nn.tsr") for op in g.ops)  # helper ops point into stdlib/nn.tsr
    n, d = 6, 8
    x, w, b = randn(rng, n, d, dtype=bf16), randn(rng, d, dtype=bf16), randn(rng, d, dtype=bf16)
    c, s = randn(rng, n, d // 2), randn(rng, n, d // 2)
    outs = evaluate(g, [x, w, b, c, s])
    xf, wf, bf = f64(x), f64(w), f64(b)
    gelu_t = 0.5 * xf * (1 + np.tanh(0.7978845608028654 * (xf + 0.044715 * xf ** 3)))
    x1, x2 = xf[:, : d // 2], xf[:, d // 2:]
    want = [
        np_softmax(xf),
        np.log(np.exp(xf).sum(0)),
        (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5) * wf + bf,
        xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-5) * wf,
        0.5 * xf * (1 + _erf(xf / np.sqrt(2))),
        gelu_t,
        gelu_t,
        np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], -1),
        np.mean((xf - 2 * xf) ** 2),
    ]
    dtypes = [bf16, bf16, bf16, bf16, np.float32, np.float32, np.float32, bf16, np.float32]
    for out, ref, dt in zip(outs, want, dtypes):
        assert out.dtype == dt
        close(out, ref)


@pytest.mark.parametrize("causal", [False, True])
def test_stdlib_attention_and_cross_entropy(causal: bool, rng: np.random.Generator) -> None:
    src = """
    from stdlib.nn import attention, cross_entropy

    @jit
    def f(q: Tensor["H", "S", "D", f32], k: Tensor["H", "S", "D", f32], v: Tensor["H", "S", "D", f32],
          logits: Tensor["S", "C", f32], labels: Tensor["S", int32], *, causal: bool):
        return attention(q, k, v, causal=causal), cross_entropy(logits, labels)
    """
    g = build(src, static={"causal": causal})
    assert ("select" in ops_of(g)) is causal  # the mask exists only in the causal build
    q, k, v = randn(rng, 2, 5, 4), randn(rng, 2, 5, 4), randn(rng, 2, 5, 4)
    logits, labels = randn(rng, 5, 3), rng.integers(0, 3, 5).astype(np.int32)
    att, ce = evaluate(g, [q, k, v, logits, labels])
    close(att, np_attention(f64(q), f64(k), f64(v), causal))
    lf = f64(logits)
    close(ce, np.mean(np.log(np.exp(lf).sum(-1)) - lf[np.arange(5), labels]))


def test_helpers_recompute_types_per_call(rng: np.random.Generator) -> None:
    """One generic helper called at two dtypes and ranks: each call is built with its own types."""
    src = """
    def scale(x, k):
        return x * k + sum(x, axis=-1, keepdims=True)

    @jit
    def f(a: Tensor["N", f32], b: Tensor["K", "M", bf16]):
        return scale(a, 2), scale(b, 0.5)
    """
    g = build(src)
    assert [str(r.ty) for r in g.returns] == ["tensor<[N], f32>", "tensor<[K, M], f32>"]
    a, b = randn(rng, 4), randn(rng, 3, 5, dtype=bf16)
    x, y = evaluate(g, [a, b])
    close(x, a * 2 + a.sum())
    close(y, f64(b) * 0.5 + f64(b).sum(-1, keepdims=True))


def test_jit_callee_is_inlined_and_widened(rng: np.random.Generator) -> None:
    src = """
    @jit
    def inner(x: Tensor["N", f32]) -> Tensor["N", f32]:
        return x * 2.0

    @jit
    def outer(y: Tensor["N", bf16]) -> Tensor["N", f32]:
        return inner(y) + 1.0
    """
    g = build(src, name="outer")
    assert ops_of(g)[0] == "cast"  # the bf16 argument widened to the declared f32
    y = randn(rng, 5, dtype=bf16)
    close(evaluate(g, [y])[0], f64(y) * 2 + 1)


# ---------------------------------------------------------------- control flow and static values


def test_static_if_and_unrolled_loops(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32], *, n: int, double: bool = False) -> Tensor["N", f32]:
        y = x
        for i in range(n):
            y = y + x * float(i)
        k = 0
        while k < 10:
            k += 3
            if k == 6:
                continue
            if k > 8:
                break
            y = y - 1.0
        if double:
            y = y * 2.0
        return y
    """
    g = build(src, static={"n": 3})
    assert ops_of(g).count("add") == 3 and ops_of(g).count("sub") == 1 and ops_of(g).count("mul") == 3
    x = randn(rng, 4)
    close(evaluate(g, [x])[0], x + 0 * x + 1 * x + 2 * x - 1)
    close(evaluate(build(src, static={"n": 1, "double": True}), [x])[0], (x - 1) * 2)


def test_static_params_must_have_values() -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32], *, causal: bool) -> Tensor["N", f32]:
        return x
    """
    with pytest.raises(CompilationError, match="static parameter 'causal'.*static_args"):
        build(src)
    with pytest.raises(CompilationError, match="'causal' is bool"):
        build(src, static={"causal": 3})
    with pytest.raises(CompilationError, match="no parameter 'nope'"):
        build(src, static={"causal": True, "nope": 1})


def test_undecidable_static_test_is_a_clear_error() -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
        if x.shape[0] > 4:
            return x * 2.0
        return x
    """
    with pytest.raises(CompilationError, match="cannot decide"):
        build(src)
    # With the extent bound (a where fact or concrete dims) the branch is decided.
    assert ops_of(build(src, dims={"N": 8}))[-1] == "mul"
    assert ops_of(build(src.replace("-> Tensor[\"N\", f32]:", "-> Tensor[\"N\", f32] where N >= 5:", 1)))[-1] \
        == "mul"


def test_loop_over_a_symbolic_range_is_refused() -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
        for i in range(x.shape[0]):
            x = x + 1.0
        return x
    """
    with pytest.raises(CompilationError, match="cannot unroll"):
        build(src)
    assert ops_of(build(src, dims={"N": 3})).count("add") == 3


# ---------------------------------------------------------------- function attributes and spans


def test_function_attributes() -> None:
    src = """
    @jit
    def f(x: Tensor["B", "D", f32], w: Tensor["D", "H", f32]) -> Tensor["B", "H", f32]
            where D % 8 == 0, H == 4 * D, B in 1..=64:
        n = randn((x.shape[0], 4 * x.shape[1]), f32)
        return x @ w + n
    """
    g = build(src)
    assert g.name == "f"
    assert g.effects == ("random",)
    assert g.constraints == ("D % 8 == 0", "H == 4*D", "1 <= B", "B <= 64")
    assert g.symbols == ("B", "D", "H")
    # H is fixed by `H == 4 * D`: the graph writes it as 4*D, so binding B and D specialises everything.
    assert [str(p.ty) for p in g.params] == ["tensor<[B, D], f32>", "tensor<[D, 4*D], f32>"]
    (rnd,) = [op for op in g.ops if op.name == "random"]
    assert str(rnd.result.ty) == "tensor<[B, 4*D], f32>"


def test_every_op_has_the_span_of_its_expression() -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32], y: Tensor["N", f32]) -> Tensor["N", f32]:
        a = exp(x)
        return a * y + 1.0
    """
    g = build(src)
    lines = {op.name: (op.span.line, op.span.col) for op in g.ops}
    assert lines["exp"] == (4, 9)
    assert lines["mul"] == (5, 12) and lines["add"][0] == 5 and lines["constant"][0] == 5


def test_dims_binding_specialises_every_shape() -> None:
    src = """
    @jit
    def f(x: Tensor["B", "D", f32]) -> Tensor["B", f32]:
        return sum(x * float(x.shape[1]), axis=1)
    """
    g = build(src, dims={"B": 2, "D": 3})
    assert [str(p.ty) for p in g.params] == ["tensor<[2, 3], f32>"]
    assert "extent" not in ops_of(g)


def test_printed_graph_of_broadcast_and_promotion() -> None:
    g = build("""
    @jit
    def f(x: Tensor["B", "D", bf16], b: Tensor["D", f32]) -> Tensor["B", "D", f32]:
        return x + b
    """)
    filecheck(print_function(g), """
        CHECK: func @f(%x: tensor<[B, D], bf16>, %b: tensor<[D], f32>)
        CHECK: %[[X:.+]] = cast(%x) {dtype = f32, rounding = "nearest_even"} : tensor<[B, D], f32>
        CHECK-NEXT: %[[B:.+]] = broadcast_to(%b) {shape = [B, D]} : tensor<[B, D], f32>
        CHECK-NEXT: %[[S:.+]] = add(%[[X]], %[[B]]) : tensor<[B, D], f32>
        CHECK-NEXT: return %[[S]]
    """)


# ---------------------------------------------------------------- the examples


EXTENTS = {"B": 2, "S": 8, "D": 32, "H": 2, "N": 3, "M": 5, "T": 4, "R": 2, "D3": 96, "F": 128}
OVERRIDES = {"mlp": {"H": 128}}


def _example_functions() -> list[tuple[str, str]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.tsr")):
        c = check_file(path)
        assert c.ok, render_text(c.diagnostics, c.sources)
        out.extend((path.name, f.name) for f in jit_functions(c))
    return out


def _arg(rng: np.random.Generator, ty: object, env: dict[str, int]) -> np.ndarray:
    shape = tuple(d.evaluate(env) for d in ty.dims)  # type: ignore[attr-defined]
    dt: DType = ty.dtype  # type: ignore[attr-defined]
    if dt.is_float:
        return (rng.standard_normal(shape) * 0.5).astype(numpy_dtype(dt))
    return rng.integers(0, 2, shape).astype(numpy_dtype(dt))


@pytest.mark.parametrize(("file", "name"), _example_functions())
def test_examples_build_verify_and_run(file: str, name: str, rng: np.random.Generator) -> None:
    c = check_file(EXAMPLES / file)
    g = next(g for g in build_module(c).functions if g.name == name)
    verify_function(g)
    env = {**EXTENTS, **OVERRIDES.get(name, {})}
    args = [_arg(rng, p.ty, env) for p in g.params]
    outs = evaluate(g, args)
    assert outs and all(np.all(np.isfinite(f64(o))) for o in outs)
    ref = evaluate(g, args, float64=True)
    for o, r in zip(outs, ref):
        # A chain of bf16 ops rounds at every op: measure against the result's scale.
        tol = 5e-2 if o.dtype == bf16 else 1e-5
        assert np.abs(f64(o) - r).max() <= tol * max(1.0, np.abs(r).max())


def test_example_pairs_agree(rng: np.random.Generator) -> None:
    """The builtins against their stdlib forms, as the examples' main() compares them."""
    m = build_module(check_file(EXAMPLES / "attention.tsr"))
    q, k, v = (randn(rng, 1, 2, 16, 16, dtype=bf16) for _ in range(3))
    (a,) = evaluate(m.function("causal_attention"), [q, k, v])
    (b,) = evaluate(m.function("causal_attention_ref"), [q, k, v])
    close(a, f64(b))
    m = build_module(check_file(EXAMPLES / "softmax.tsr"))
    x = randn(rng, 3, 50)
    (s,) = evaluate(m.function("row_softmax"), [x])
    (t,) = evaluate(m.function("row_softmax_bf16"), [x.astype(bf16)])
    close(s, np_softmax(f64(x)))
    close(t, np_softmax(f64(x)), "bfloat16")


def test_transformer_block_graph_is_written_in_its_free_symbols() -> None:
    from tessera.ir.graph.passes import specialize_shapes

    m = build_module(check_file(EXAMPLES / "transformer_block.tsr"))
    g = m.function("transformer_block")
    text = print_function(g)
    # where D == 16 * R, D3 == 3 * D, F == 4 * D: every dim is over B, S and R.
    assert text.startswith("func @transformer_block(%x: tensor<[B, S, 16*R], bf16>, %attn_norm: tensor<[16*R], "
                           "bf16>, %wqkv: tensor<[16*R, 48*R], bf16>")
    # split(h @ wqkv, 3) gives three [B, S, 16*R] parts; heads of 2*R; rotary halves of R.
    assert len(re.findall(r"= slice\(%\d+\) \{starts = \[0, 0, (0|16\*R|32\*R)\].*: tensor<\[B, S, 16\*R\], "
                          r"bf16>", text)) == 3
    assert "attention(%q.2, %k.2, %v.1) {causal = true, scale = 0.0, accum = f32} : tensor<[B, 8, S, 2*R], bf16>" \
        in text
    assert text.count("matmul(") == 4 and "call" not in text
    s = specialize_shapes(g, {"B": 2, "S": 8, "R": 2})
    verify_function(s)
    assert all(d.is_const for op in s.ops for r in op.results for d in r.ty.dims)


def test_binding_the_free_symbols_specialises_the_mlp() -> None:
    c = check_file(EXAMPLES / "mlp.tsr")
    (fn,) = jit_functions(c)
    g = build_graph(c, fn, dims={"B": 32, "D": 256})
    assert [str(p.ty) for p in g.params] == ["tensor<[32, 256], bf16>", "tensor<[256, 1024], bf16>",
                                             "tensor<[1024], f32>", "tensor<[1024, 256], bf16>"]
    verify_function(g)


def test_build_module_builds_every_jit_function_of_the_root() -> None:
    m = build_module(check_file(EXAMPLES / "layernorm.tsr"))
    assert [f.name for f in m.functions] == ["norm", "norms_bf16"]
    assert [op.name for op in m.function("norm").ops] == ["layernorm"]


def test_inlined_jit_callee_constraints_become_guards() -> None:
    src = """
    @jit
    def inner(x: Tensor["M", f32]) -> Tensor["M", f32] where M % 4 == 0:
        return x * 2.0

    @jit
    def outer(y: Tensor["N", f32], z: Tensor["K", f32]) -> (Tensor["N", f32], Tensor["K", f32])
            where K % 8 == 0:
        return inner(y), inner(z)
    """
    g = build(src, name="outer")
    assert g.constraints == ("K % 8 == 0", "N % 4 == 0")  # K % 4 == 0 follows from the caller's facts
    assert "call" not in ops_of(g)


def test_untyped_jit_parameters_take_their_type_from_static_args(rng: np.random.Generator) -> None:
    from tessera.ir.graph.ops import TensorType
    from tessera.symbolic import Dim

    src = """
    @jit
    def f(x, k):
        return x * k
    """
    g = build(src, static={"x": TensorType((Dim("K"), Dim.const(2)), BF16), "k": 3})
    assert [str(p.ty) for p in g.params] == ["tensor<[K, 2], bf16>"] and g.symbols == ("K",)
    x = randn(rng, 4, 2, dtype=bf16)
    close(evaluate(g, [x])[0], f64(x) * 3)
    with pytest.raises(CompilationError, match="'x' of 'f' has no type"):
        build(src, static={"k": 3})


def test_annotated_assignment_widens_and_reads_int_constants(rng: np.random.Generator) -> None:
    src = """
    K = 4

    @jit
    def f(x: Tensor["N", K, bf16]) -> Tensor["N", K, f32]:
        y: Tensor["N", K, f32] = x * 2.0
        return y
    """
    g = build(src)
    assert ops_of(g)[-1] == "cast" and g.returns[0].ty.dtype == F32
    x = randn(rng, 3, 4, dtype=bf16)
    np.testing.assert_array_equal(evaluate(g, [x])[0], (f64(x) * 2).astype(np.float32))


def test_suspended_print_keeps_its_op() -> None:
    src = """
    @jit
    @effects()
    def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
        with effects.suspend("io"):
            print("n =", x.shape[0])
        return x
    """
    g = build(src)
    (pr,) = [op for op in g.ops if op.name == "print"]
    assert pr.attr("format") == "n = {}" and [o.producer.name for o in pr.operands] == ["extent"]
    assert g.effects == ("io",)  # the graph keeps the op; only callers' effect sets hide it
    buf = io.StringIO()
    evaluate(g, [np.zeros(5, np.float32)], out=buf)  # type: ignore[call-arg]
    assert buf.getvalue() == "n = 5\n"


def test_dims_that_break_a_where_constraint_are_refused() -> None:
    src = """
    @jit
    def f(x: Tensor["D", f32]) -> Tensor["D", f32] where D % 8 == 0:
        return x
    """
    with pytest.raises(CompilationError, match=r"`D % 8 == 0` of 'f' does not hold for D = 12"):
        build(src, dims={"D": 12})
    assert str(build(src, dims={"D": 16}).params[0].ty) == "tensor<[16], f32>"


def test_constants_inf_nan_pi(rng: np.random.Generator) -> None:
    src = """
    @jit
    def f(x: Tensor["N", f32]) -> (Tensor["N", f32], Tensor["N", bool]):
        y = where(x > 0.0, x * pi, -inf)
        return maximum(y, -1e30), isnan(x + nan)
    """
    x = randn(rng, 16)
    y, n = run(src, x)
    close(y, np.where(x > 0, x * np.pi, -1e30))
    assert n.all()
