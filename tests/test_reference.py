"""The reference evaluator on hand-built Graph IR: symbol binding and its errors, rounding at op
boundaries, float64 mode, cast rounding modes, deterministic random, accumulation dtypes, the nn ops,
gather, print, extent and call — each against NumPy written here."""

from __future__ import annotations

import io
import math

import ml_dtypes
import numpy as np
import pytest

from tessera.dtypes import BF16, F16, F32, F64, INT32, INT64, DType, dtype_named
from tessera.ir.graph.ops import OPS, Function, Module, Op, TensorType, Value, make_call, make_op
from tessera.ir.graph.reference import EvaluationError, bind_symbols, evaluate, implemented_ops
from tessera.ir.graph.verify import verify_function
from tessera.symbolic import Dim

bf16 = ml_dtypes.bfloat16
FP8 = dtype_named("fp8_e4m3")
BOOL = dtype_named("bool")
INT8 = dtype_named("int8")


def T(dims: str, dtype: DType) -> TensorType:
    return TensorType(tuple(Dim(d) for d in dims.split(",")) if dims.strip() else (), dtype)


def D(text: str) -> tuple[Dim, ...]:
    return tuple(Dim(d) for d in text.split(",")) if text.strip() else ()


class FB:
    """A small function builder over make_op."""

    def __init__(self, symbols: str = "", where: tuple[str, ...] = (), effects: tuple[str, ...] = ()):
        self.symbols = tuple(symbols.split())
        self.where = where
        self.effects = effects
        self.params: list[Value] = []
        self.ops: list[Op] = []

    def param(self, hint: str, dims: str, dtype: DType) -> Value:
        v = Value(T(dims, dtype), hint)
        self.params.append(v)
        return v

    def op(self, name: str, *operands: Value, **attrs: object) -> Value:
        op = make_op(name, operands, "", None, **attrs)  # type: ignore[arg-type]
        self.ops.append(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def ret(self, *values: Value, name: str = "f") -> Function:
        f = Function(name, self.params, self.ops, list(values), effects=self.effects, constraints=self.where,
                     symbols=self.symbols)
        verify_function(f)
        return f


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def test_every_catalogue_op_is_implemented() -> None:
    assert set(OPS) <= implemented_ops()


# ---------------------------------------------------------------- binding


def _typed(dims: str, where: tuple[str, ...] = ()) -> Function:
    b = FB("B D R", where=where)
    x = b.param("x", dims, F32)
    w = b.param("w", "D", F32)
    return b.ret(b.op("reduce", x, kind="sum", axes=(0,), keepdims=False, accum=F32), w)


def test_symbols_bind_from_bare_and_linear_dims() -> None:
    b = FB("B R")
    x = b.param("x", "B, 16*R", F32)
    y = b.param("y", "R + 1", F32)
    f = b.ret(x, y)
    assert bind_symbols(f, [np.zeros((2, 32), np.float32), np.zeros(3, np.float32)]) == {"B": 2, "R": 2}


def test_binding_errors_name_the_argument_axis_and_rule() -> None:
    f = _typed("B, D", where=("D % 8 == 0",))
    with pytest.raises(EvaluationError, match=r"argument 1 \(w\) shape\[0\] is 5, but the parameter declares D "
                                              r"= 8 \(D = 8 from argument 0 \(x\) shape\[1\]\)"):
        evaluate(f, [np.zeros((2, 8), np.float32), np.zeros(5, np.float32)])
    with pytest.raises(EvaluationError, match=r"where constraint `D % 8 == 0` does not hold \(D = 4\)"):
        evaluate(f, [np.zeros((2, 4), np.float32), np.zeros(4, np.float32)])
    with pytest.raises(EvaluationError, match="has rank 1"):
        evaluate(f, [np.zeros(8, np.float32), np.zeros(8, np.float32)])
    with pytest.raises(EvaluationError, match="has dtype float64, the parameter is f32"):
        evaluate(f, [np.zeros((2, 8)), np.zeros(8, np.float32)])
    with pytest.raises(EvaluationError, match="takes 2 arguments, 1 were given"):
        evaluate(f, [np.zeros((2, 8), np.float32)])
    g = _typed("B, 3*R")
    with pytest.raises(EvaluationError, match="symbol R of its declared dim 3\\*R cannot be bound"):
        evaluate(g, [np.zeros((2, 7), np.float32), np.zeros(7, np.float32)])


# ---------------------------------------------------------------- rounding and float64


def test_bf16_ops_round_at_each_op_boundary(rng: np.random.Generator) -> None:
    b = FB("N")
    x = b.param("x", "N", BF16)
    y = b.param("y", "N", BF16)
    s = b.op("add", x, y)
    f = b.ret(s, b.op("mul", s, y))
    xs, ys = rng.standard_normal(64).astype(bf16), rng.standard_normal(64).astype(bf16)
    got_s, got_p = evaluate(f, [xs, ys])
    want_s = (xs.astype(np.float32) + ys.astype(np.float32)).astype(bf16)
    want_p = (want_s.astype(np.float32) * ys.astype(np.float32)).astype(bf16)
    assert got_s.dtype == bf16 and got_p.dtype == bf16
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_p, want_p)
    # float64: no rounding anywhere, f64 results.
    s64, p64 = evaluate(f, [xs, ys], float64=True)
    assert s64.dtype == p64.dtype == np.float64
    xf, yf = xs.astype(np.float64), ys.astype(np.float64)
    np.testing.assert_array_equal(s64, xf + yf)
    np.testing.assert_array_equal(p64, (xf + yf) * yf)


def test_matmul_accumulates_in_its_accum_dtype(rng: np.random.Generator) -> None:
    b = FB("M K N")
    x = b.param("x", "M, K", BF16)
    w = b.param("w", "K, N", BF16)
    f = b.ret(b.op("matmul", x, w, accum=F32), b.op("matmul", x, w, accum=BF16))
    xs, ws = rng.standard_normal((4, 512)).astype(bf16), rng.standard_normal((512, 3)).astype(bf16)
    acc32, accbf = evaluate(f, [xs, ws])
    exact = xs.astype(np.float64) @ ws.astype(np.float64)
    assert acc32.dtype == np.float32 and accbf.dtype == bf16
    np.testing.assert_allclose(acc32, exact, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(accbf, acc32.astype(bf16))  # narrow accumulators: f32, then rounded
    bi = FB("M K N")
    a = bi.param("a", "M, K", INT8)
    c = bi.param("c", "K, N", INT8)
    fi = bi.ret(bi.op("matmul", a, c, accum=INT64))
    ai, ci = rng.integers(-128, 127, (3, 300)).astype(np.int8), rng.integers(-128, 127, (300, 2)).astype(np.int8)
    (r,) = evaluate(fi, [ai, ci])
    assert r.dtype == np.int64
    np.testing.assert_array_equal(r, ai.astype(np.int64) @ ci.astype(np.int64))


# ---------------------------------------------------------------- casts


def _cast_fn(src: DType, dst: DType, rounding: str) -> Function:
    b = FB("N")
    x = b.param("x", "N", src)
    return b.ret(b.op("cast", x, dtype=dst, rounding=rounding))


def test_cast_toward_zero_truncates(rng: np.random.Generator) -> None:
    x = (rng.standard_normal(1000) * 100).astype(np.float32)
    (tz,) = evaluate(_cast_fn(F32, BF16, "toward_zero"), [x])
    np.testing.assert_array_equal(tz.view(np.uint16), (x.view(np.uint32) >> 16).astype(np.uint16))
    (h,) = evaluate(_cast_fn(F32, F16, "toward_zero"), [x])
    near = x.astype(np.float16)
    assert np.all(np.abs(h.astype(np.float64)) <= np.abs(x.astype(np.float64)))
    assert np.all(np.abs(h.astype(np.float64) - x) <= np.abs(np.spacing(near).astype(np.float64)))
    (q,) = evaluate(_cast_fn(F32, FP8, "toward_zero"), [np.array([1000.0, -1000.0, 0.3], np.float32)])
    assert list(q.astype(np.float32)) == [448.0, -448.0, 0.28125]  # saturates instead of nan


def test_cast_stochastic_rounds_to_a_neighbour_without_bias() -> None:
    x = np.full(20000, 1.0 + 1 / 512, np.float32)  # a quarter of the way from 1.0 to the next bf16
    f = _cast_fn(F32, BF16, "stochastic")
    (y,) = evaluate(f, [x])
    vals = set(np.unique(y.astype(np.float64)))
    assert vals == {1.0, 1.0078125}
    assert abs(y.astype(np.float64).mean() - x[0]) < 2e-4
    np.testing.assert_array_equal(evaluate(f, [x])[0], y)  # reproducible


def test_cast_float_to_int_rounding_modes() -> None:
    x = np.array([2.5, -2.5, 3.7, -3.7, 0.5], np.float32)
    (ne,) = evaluate(_cast_fn(F32, INT32, "nearest_even"), [x])
    (tz,) = evaluate(_cast_fn(F32, INT32, "toward_zero"), [x])
    np.testing.assert_array_equal(ne, [2, -2, 4, -4, 0])
    np.testing.assert_array_equal(tz, [2, -2, 3, -3, 0])
    (st,) = evaluate(_cast_fn(F32, INT32, "stochastic"), [x])
    assert np.all((st == np.floor(x)) | (st == np.ceil(x)))
    (bl,) = evaluate(_cast_fn(F32, BOOL, "nearest_even"), [x * 0])
    assert bl.dtype == np.bool_ and not bl.any()


# ---------------------------------------------------------------- creation


def test_random_is_deterministic_in_seed_shape_and_dtype() -> None:
    b = FB("N", effects=("random",))
    x = b.param("x", "N", F32)
    f = b.ret(x, b.op("random", shape=D("N, 3"), dtype=BF16, dist="normal", seed=5),
              b.op("random", shape=D("N, 3"), dtype=F32, dist="uniform", seed=5),
              b.op("random", shape=D("N, 3"), dtype=F32, dist="uniform", seed=6))
    x4 = np.zeros(4, np.float32)
    _, n, u, u6 = evaluate(f, [x4])
    want = np.random.Generator(np.random.PCG64(5)).standard_normal((4, 3), dtype=np.float32).astype(bf16)
    np.testing.assert_array_equal(n, want)
    np.testing.assert_array_equal(u, np.random.Generator(np.random.PCG64(5)).random((4, 3), dtype=np.float32))
    assert np.all((u >= 0) & (u < 1)) and not np.array_equal(u, u6)
    again = evaluate(f, [x4])
    for a, b2 in zip(again, (x4, n, u, u6)):
        np.testing.assert_array_equal(a, b2)
    # float64 mode draws the same samples.
    _, n64, _, _ = evaluate(f, [x4], float64=True)
    np.testing.assert_array_equal(n64, n.astype(np.float64))


def test_constant_fill_iota_extent() -> None:
    b = FB("N")
    x = b.param("x", "N", F32)
    f = b.ret(x, b.op("fill", shape=D("2, N"), value=1.5, dtype=BF16), b.op("iota", n=Dim("N + 1"), dtype=INT32),
              b.op("extent", value=Dim("3*N"), dtype=F32), b.op("constant", value=-2.0, dtype=INT64))
    _, fl, io_, ex, c = evaluate(f, [np.zeros(4, np.float32)])
    assert fl.dtype == bf16 and fl.shape == (2, 4) and np.all(fl.astype(np.float32) == 1.5)
    np.testing.assert_array_equal(io_, np.arange(5, dtype=np.int32))
    assert ex.dtype == np.float32 and float(ex) == 12.0
    assert c.dtype == np.int64 and int(c) == -2


# ---------------------------------------------------------------- elementwise, shapes, reductions


def test_integer_arithmetic_follows_python() -> None:
    b = FB("N")
    x = b.param("x", "N", INT32)
    y = b.param("y", "N", INT32)
    f = b.ret(b.op("floordiv", x, y), b.op("mod", x, y), b.op("isnan", x), b.op("pow", x, y))
    xs, ys = np.array([7, -7, 7, -7], np.int32), np.array([2, 2, -2, 3], np.int32)
    with pytest.raises(EvaluationError, match="negative integer power"):
        evaluate(f, [xs, ys])
    q, r, n, p = evaluate(f, [xs, np.abs(ys)])
    np.testing.assert_array_equal(q, xs // np.abs(ys))
    np.testing.assert_array_equal(r, xs % np.abs(ys))
    assert q.dtype == np.int32 and not n.any()
    np.testing.assert_array_equal(p, xs.astype(np.int64) ** np.abs(ys))


def test_shape_ops_and_symbolic_slices(rng: np.random.Generator) -> None:
    b = FB("N M")
    x = b.param("x", "N, M", F32)
    t = b.op("transpose", x, perm=(1, 0))
    s = b.op("slice", t, starts=D("1, 0"), stops=D("M, N"), steps=(2, 1))
    r = b.op("reshape", x, shape=D("N*M"))
    c = b.op("concat", x, x, axis=0)
    bc = b.op("broadcast_to", b.op("reshape", r, shape=D("1, N*M")), shape=D("3, N*M"))
    f = b.ret(s, c, bc)
    xs = rng.standard_normal((3, 5)).astype(np.float32)
    a, cc, bb = evaluate(f, [xs])
    np.testing.assert_array_equal(a, xs.T[1:5:2])
    np.testing.assert_array_equal(cc, np.concatenate([xs, xs]))
    np.testing.assert_array_equal(bb, np.broadcast_to(xs.reshape(1, -1), (3, 15)))


def test_reductions_argmax_over_several_axes_and_logsumexp_of_empty_mass(rng: np.random.Generator) -> None:
    b = FB("A B C")
    x = b.param("x", "A, B, C", F32)
    i = b.param("i", "A, B", INT32)
    f = b.ret(b.op("reduce", x, kind="argmax", axes=(0, 2), keepdims=True, accum=F32),
              b.op("reduce", i, kind="mean", axes=(1,), keepdims=False, accum=F32),
              b.op("logsumexp", x, axes=(2,), keepdims=False, accum=F32),
              b.op("reduce", x, kind="prod", axes=(0, 1, 2), keepdims=False, accum=F64))
    xs = rng.standard_normal((2, 3, 4)).astype(np.float32)
    xs[1, 2, :] = -np.inf
    iv = rng.integers(0, 10, (2, 3)).astype(np.int32)
    am, mi, lse, pr = evaluate(f, [xs, iv])
    moved = np.transpose(xs, (1, 0, 2)).reshape(3, -1)
    np.testing.assert_array_equal(am.reshape(3), moved.argmax(-1))
    assert am.shape == (1, 3, 1)
    np.testing.assert_allclose(mi, iv.mean(1), rtol=1e-6)
    assert lse[1, 2] == -np.inf  # all -inf: -inf, not nan
    np.testing.assert_allclose(lse[0], np.log(np.exp(xs[0].astype(np.float64)).sum(-1)), rtol=1e-6)
    assert pr.dtype == np.float64 and pr == np.prod(xs.astype(np.float64))


# ---------------------------------------------------------------- nn ops


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_masks_keys_after_the_query(causal: bool, rng: np.random.Generator) -> None:
    b = FB("H S T D")
    q = b.param("q", "H, S, D", BF16)
    k = b.param("k", "H, T, D", BF16)
    v = b.param("v", "H, T, D", BF16)
    f = b.ret(b.op("attention", q, k, v, causal=causal, scale=0.0, accum=F32))
    qs, ks, vs = (rng.standard_normal(s).astype(bf16) for s in ((2, 5, 8), (2, 7, 8), (2, 7, 8)))
    (out,) = evaluate(f, [qs, ks, vs])
    qf, kf, vf = (a.astype(np.float64) for a in (qs, ks, vs))
    s = qf @ np.swapaxes(kf, -1, -2) / math.sqrt(8)
    if causal:
        s = np.where(np.arange(7)[None, :] <= np.arange(5)[:, None], s, -np.inf)
    assert out.dtype == bf16
    np.testing.assert_allclose(out.astype(np.float64), _np_softmax(s) @ vf, rtol=2e-2, atol=2e-2)


def test_norms_compute_in_accum(rng: np.random.Generator) -> None:
    b = FB("N D")
    x = b.param("x", "N, D", BF16)
    w = b.param("w", "D", F32)
    bb = b.param("b", "D", F32)
    f = b.ret(b.op("layernorm", x, w, bb, eps=1e-5, accum=F32), b.op("rmsnorm", x, w, eps=1e-6, accum=F32),
              b.op("softmax", x, axis=0, accum=F32))
    xs = rng.standard_normal((3, 64)).astype(bf16)
    ws, bs = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    ln, rms, sm = evaluate(f, [xs, ws, bs])
    xf = xs.astype(np.float64)
    want_ln = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5) * ws + bs
    # One rounding to bf16 at the end: within half a bf16 ulp of the exact value.
    np.testing.assert_allclose(ln.astype(np.float64), want_ln, rtol=2 ** -8, atol=1e-6)
    want_rms = xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-6) * ws
    np.testing.assert_allclose(rms.astype(np.float64), want_rms, rtol=2 ** -8, atol=1e-6)
    np.testing.assert_allclose(sm.astype(np.float64), _np_softmax(xf.T).T, rtol=2 ** -8, atol=1e-6)


def test_gather_rows_and_out_of_range_ids(rng: np.random.Generator) -> None:
    b = FB("V D I")
    t = b.param("t", "V, D", F32)
    ids = b.param("ids", "I", INT32)
    f = b.ret(b.op("gather", t, ids))
    table = rng.standard_normal((5, 3)).astype(np.float32)
    (rows,) = evaluate(f, [table, np.array([4, 0, 4], np.int32)])
    np.testing.assert_array_equal(rows, table[[4, 0, 4]])
    with pytest.raises(EvaluationError, match="id 5 is out of range for a table of 5 rows"):
        evaluate(f, [table, np.array([5], np.int32)])
    with pytest.raises(EvaluationError, match="id -1"):
        evaluate(f, [table, np.array([-1], np.int32)])


# ---------------------------------------------------------------- effects and calls


def test_print_formats_operands_like_numpy() -> None:
    b = FB("N", effects=("io",))
    x = b.param("x", "N", F32)
    s = b.op("reduce", x, kind="sum", axes=(0,), keepdims=False, accum=F32)
    b.op("print", x, s, format="x={} sum={} {{braces}}")
    f = b.ret(s)
    buf = io.StringIO()
    evaluate(f, [np.array([1.0, 2.5], np.float32)], out=buf)
    assert buf.getvalue() == "x=[1.  2.5] sum=3.5 {braces}\n"


def test_call_ops_evaluate_their_callee(rng: np.random.Generator) -> None:
    cb = FB("K")
    y = cb.param("y", "K", BF16)
    callee = cb.ret(cb.op("mul", y, y), name="square")
    b = FB("N")
    x = b.param("x", "N", BF16)
    op = make_call(callee, [x])
    b.ops.append(op)
    f = b.ret(op.results[0])
    xs = rng.standard_normal(6).astype(bf16)
    m = Module([callee, f])
    (out,) = evaluate(f, [xs], module=m)
    np.testing.assert_array_equal(out, (xs.astype(np.float32) ** 2).astype(bf16))
    (out64,) = evaluate(f, [xs], module=m, float64=True)
    np.testing.assert_array_equal(out64, xs.astype(np.float64) ** 2)
    with pytest.raises(EvaluationError, match="module="):
        evaluate(f, [xs])


def test_cast_from_f64_rounds_once() -> None:
    # Just above the midpoint of two bf16 values: rounding through f32 first would land on the even
    # neighbour below; the correctly rounded result is above.
    x = np.array([1.00390625 + 1e-9, -(1.00390625 + 1e-9), 1.00390625], np.float64)
    (y,) = evaluate(_cast_fn(F64, BF16, "nearest_even"), [x])
    assert list(y.astype(np.float64)) == [1.0078125, -1.0078125, 1.0]


def test_results_are_writable_arrays() -> None:
    b = FB("N")
    x = b.param("x", "N", F32)
    f = b.ret(b.op("broadcast_to", b.op("slice", x, starts=D("0"), stops=D("1"), steps=(1,)), shape=D("N")))
    (y,) = evaluate(f, [np.arange(3, dtype=np.float32)])
    y[0] = 7.0
    np.testing.assert_array_equal(y, [7.0, 0.0, 0.0])
