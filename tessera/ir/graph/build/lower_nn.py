"""Lowering of the NN builtins. softmax, layernorm, rmsnorm and attention are single graph ops that
compute in the accumulation dtype of the input's policy (f32 for narrow floats) and return the input's
dtype; dropout, one_hot, cross_entropy and mse decompose into elementwise ops, reductions and
`logsumexp`; embedding is a `gather`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tessera.dtypes import F32, F64
from tessera.frontend.builtins import accum_of, elementwise_dtype
from tessera.frontend.types import NO_POLICY
from tessera.ir.graph.build.emitter import ONE
from tessera.ir.graph.build.lower_shape import as_tensor, axes_arg
from tessera.ir.graph.build.values import DTypeV, DynScalar, TVal, describe, is_host_scalar
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder


def _float_tensor(b: Builder, x: object, span: Span, what: str) -> TVal:
    t = as_tensor(b, x, span, what)
    if not t.dtype.is_float:
        raise b.fail(f"{what} must be floating point, found {t.dtype}", span, "E-DTYPE")
    return t


def _static_float(b: Builder, v: object, span: Span, what: str) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, (Dim, bool)) and (not isinstance(v, Dim) or v.is_const):
        return float(v.value if isinstance(v, Dim) else v)
    raise b.fail(f"{what} must be a number known when the graph is built, found {describe(v)}", span)


def softmax(b: Builder, x: object, axis: object, span: Span) -> TVal:
    t = _float_tensor(b, x, span, "softmax: x")
    axes = axes_arg(b, axis, t.rank, span, "softmax")
    if axes is None or len(axes) != 1:
        raise b.fail("softmax over several axes is not supported yet; reshape to one axis first", span)
    return TVal(b.em.emit1("softmax", [t.value], span, axis=axes[0], accum=t.accum), t.policy)


def _last_axis_param(b: Builder, w: object, t: TVal, span: Span, what: str) -> object:
    wt = as_tensor(b, w, span, what)
    if wt.rank != 1 or not b.em.dims_equal(wt.dims[0], t.dims[-1]):
        raise b.fail(f"{what} must be 1-D over the last axis of x ({t.dims[-1]}), found {wt.value.ty}", span,
                     "E-SHAPE")
    return b.em.reshape(wt.value, [t.dims[-1]], span)


def layernorm(b: Builder, x: object, w: object, bias: object, eps: object, span: Span) -> TVal:
    t = _float_tensor(b, x, span, "layernorm: x")
    if t.rank == 0:
        raise b.fail("layernorm needs a tensor of rank >= 1", span, "E-SHAPE")
    wv = _last_axis_param(b, w, t, span, "layernorm: w")
    bv = _last_axis_param(b, bias, t, span, "layernorm: b")
    out = b.em.emit1("layernorm", [t.value, wv, bv], span, eps=_static_float(b, eps, span, "layernorm: eps"),
                     accum=t.accum)
    return TVal(out, t.policy)


def rmsnorm(b: Builder, x: object, w: object, eps: object, span: Span) -> TVal:
    t = _float_tensor(b, x, span, "rmsnorm: x")
    if t.rank == 0:
        raise b.fail("rmsnorm needs a tensor of rank >= 1", span, "E-SHAPE")
    wv = _last_axis_param(b, w, t, span, "rmsnorm: w")
    out = b.em.emit1("rmsnorm", [t.value, wv], span, eps=_static_float(b, eps, span, "rmsnorm: eps"),
                     accum=t.accum)
    return TVal(out, t.policy)


def attention(b: Builder, q: object, k: object, v: object, causal: object, scale: object, span: Span) -> TVal:
    ts = [_float_tensor(b, a, span, f"attention: {n}") for a, n in ((q, "q"), (k, "k"), (v, "v"))]
    for t, n in zip(ts, "qkv"):
        if t.rank < 2:
            raise b.fail(f"attention: '{n}' must have rank >= 2 (..., seq, dim)", span, "E-SHAPE")
    if not isinstance(causal, bool):
        raise b.fail(f"attention: causal must be True or False when the graph is built, found {describe(causal)}",
                     span)
    qt = ts[0]
    acc = accum_of([t.fe for t in ts])
    assert acc is not None
    dt = elementwise_dtype([t.fe for t in ts])
    assert dt is not None
    batch = b.em.broadcast_dims([t.dims[:-2] for t in ts], span, "attention")
    d = qt.dims[-1]
    vals = [b.em.broadcast(b.em.cast(t.value, dt, span), [*batch, *t.dims[-2:]], span) for t in ts]
    if scale is None:
        # 0.0 stands for the default 1/sqrt(q.shape[-1]) while that extent is symbolic.
        sc = 1.0 / math.sqrt(d.value) if d.is_const else 0.0
    else:
        sc = _static_float(b, scale, span, "attention: scale")
        if sc == 0.0:
            return _attention_decomposed(b, vals, causal, acc, qt, span)
    out = b.em.emit1("attention", vals, span, causal=causal, scale=sc, accum=acc)
    return TVal(b.em.cast(out, qt.dtype, span), qt.policy)


def _attention_decomposed(b: Builder, vals: list, causal: bool, acc: object, qt: TVal, span: Span) -> TVal:
    """attention with an explicit scale of 0 (which the op's attribute reserves for the default): every
    score is 0, so each row is the mean of v over the visible keys."""
    from tessera.ir.graph.build.lower_linalg import matmul

    qv, kv, vv = vals
    s = matmul(b, TVal(qv), TVal(b.em.transpose(kv, [*range(kv.ty.rank - 2), kv.ty.rank - 1, kv.ty.rank - 2],
                                                   span)), span)
    s = TVal(b.em.emit1("mul", [s.value, b.em.broadcast(b.em.constant(0.0, s.dtype, span), s.dims, span)], span))
    if causal:
        s = _causal_mask(b, s, span)
    p = b.em.emit1("softmax", [s.value], span, axis=s.rank - 1, accum=acc)
    out = matmul(b, TVal(p), TVal(b.em.cast(vv, p.ty.dtype, span)), span)
    return TVal(b.em.cast(out.value, qt.dtype, span), qt.policy)


def _causal_mask(b: Builder, s: TVal, span: Span) -> TVal:
    sq, sk = s.dims[-2], s.dims[-1]
    rows = b.em.broadcast(b.em.reshape(b.em.emit1("iota", [], span, n=sq, dtype=F32), [sq, ONE], span),
                          [sq, sk], span)
    cols = b.em.broadcast(b.em.reshape(b.em.emit1("iota", [], span, n=sk, dtype=F32), [ONE, sk], span),
                          [sq, sk], span)
    keep = b.em.broadcast(b.em.emit1("cmp", [cols, rows], span, pred="le"), s.dims, span)
    ninf = b.em.broadcast(b.em.constant(-math.inf, s.dtype, span), s.dims, span)
    return TVal(b.em.emit1("select", [keep, s.value, ninf], span))


def dropout(b: Builder, x: object, p: object, seed: object, span: Span) -> TVal:
    """Inverted dropout: keep where a uniform sample is >= p, scaled by 1/(1-p)."""
    t = _float_tensor(b, x, span, "dropout: x")
    pv = _static_float(b, p, span, "dropout: p")
    if not 0.0 <= pv < 1.0:
        raise b.fail(f"dropout: p must be in [0, 1), found {pv}", span)
    if pv == 0.0:
        return t
    key = b.draw_key(span) if seed is None else b.static_int(seed, span, "dropout: seed")
    udt = F64 if t.dtype == F64 else F32
    u = b.em.emit1("random", [], span, shape=t.dims, dtype=udt, dist="uniform", seed=key)
    keep = b.em.emit1("cmp", [u, b.em.broadcast(b.em.constant(pv, udt, span), t.dims, span)], span, pred="ge")
    scaled = b.em.emit1("mul", [t.value, b.em.broadcast(b.em.constant(1.0 / (1.0 - pv), t.dtype, span), t.dims,
                                                         span)], span)
    zero = b.em.broadcast(b.em.constant(0.0, t.dtype, span), t.dims, span)
    return TVal(b.em.emit1("select", [keep, scaled, zero], span), t.policy)


def embedding(b: Builder, table: object, ids: object, span: Span) -> TVal:
    tt = as_tensor(b, table, span, "embedding: table")
    it = as_tensor(b, ids, span, "embedding: ids")
    if tt.rank != 2:
        raise b.fail(f"embedding: 'table' must be 2-D (vocab, dim), found rank {tt.rank}", span, "E-SHAPE")
    if not it.dtype.is_int:
        raise b.fail(f"embedding: 'ids' must be an integer tensor, found {it.dtype}", span, "E-DTYPE")
    return TVal(b.em.emit1("gather", [tt.value, it.value], span), tt.policy)


def one_hot(b: Builder, ids: object, n: object, dtype: object, span: Span) -> TVal:
    it = as_tensor(b, ids, span, "one_hot: ids")
    if not it.dtype.is_int:
        raise b.fail(f"one_hot: 'ids' must be an integer tensor, found {it.dtype}", span, "E-DTYPE")
    if not isinstance(dtype, DTypeV):
        raise b.fail(f"one_hot: dtype must be a dtype, found {describe(dtype)}", span)
    if isinstance(n, bool) or not isinstance(n, Dim):
        raise b.fail(f"one_hot: n must be an int known when the graph is built, found {describe(n)}", span)
    n = b.em.canon(n)
    return TVal(_one_hot(b, it.value, n, dtype.dtype, span), dtype.policy)


def _one_hot(b: Builder, ids: object, n: Dim, dtype: object, span: Span) -> object:
    return b.em.cast(_one_hot_mask(b, ids, n, span), dtype, span)  # type: ignore[arg-type]


def _one_hot_mask(b: Builder, ids: object, n: Dim, span: Span) -> object:
    dims = [*ids.ty.dims, n]  # type: ignore[attr-defined]
    iota = b.em.emit1("iota", [], span, n=n, dtype=ids.ty.dtype)  # type: ignore[attr-defined]
    cols = b.em.broadcast(iota, dims, span)
    rows = b.em.broadcast(b.em.reshape(ids, [*ids.ty.dims, ONE], span), dims, span)  # type: ignore
    return b.em.emit1("cmp", [rows, cols], span, pred="eq")


def cross_entropy(b: Builder, logits: object, labels: object, span: Span) -> TVal:
    """mean(logsumexp(logits, -1) - logits[label]) in the accumulation dtype."""
    lt = _float_tensor(b, logits, span, "cross_entropy: logits")
    la = as_tensor(b, labels, span, "cross_entropy: labels")
    if not la.dtype.is_int:
        raise b.fail(f"cross_entropy: 'labels' must be integer class ids, found {la.dtype}", span, "E-DTYPE")
    if lt.rank < 1 or la.rank != lt.rank - 1:
        raise b.fail(f"cross_entropy: 'labels' must have rank {lt.rank - 1} (logits without the class axis)", span,
                     "E-SHAPE")
    acc = lt.accum
    lf = b.em.cast(lt.value, acc, span)
    last = lt.rank - 1
    lse = b.em.emit1("logsumexp", [lf], span, axes=(last,), keepdims=False, accum=acc)
    labels_v = b.em.reshape(la.value, lt.dims[:-1], span)
    # The label's logit selected, not multiplied by a one-hot: a -inf logit of another class (a masked
    # one) times 0 would be NaN.
    hit = _one_hot_mask(b, labels_v, lt.dims[-1], span)
    zero = b.em.broadcast(b.em.constant(0.0, acc, span), lt.dims, span)
    picked = b.em.emit1("reduce", [b.em.emit1("select", [hit, lf, zero], span)], span, kind="sum",
                        axes=(last,), keepdims=False, accum=acc)
    loss = b.em.emit1("sub", [lse, picked], span)
    if loss.ty.rank == 0:
        return TVal(loss)
    return TVal(b.em.emit1("reduce", [loss], span, kind="mean", axes=tuple(range(loss.ty.rank)), keepdims=False,
                           accum=acc), NO_POLICY)


def mse(b: Builder, x: object, y: object, span: Span) -> TVal:
    """mean((a - b)²) over all elements, in the accumulation dtype of the promoted operands."""
    for v, n in ((x, "a"), (y, "b")):
        if not (isinstance(v, (TVal, DynScalar)) or is_host_scalar(v)):
            raise b.fail(f"mse: '{n}' must be a tensor, found {describe(v)}", span)
    tensors = [v for v in (x, y) if isinstance(v, TVal)]
    if not tensors:
        raise b.fail("mse needs at least one tensor operand", span)
    from tessera.ir.graph.build.values import fe_type

    dt = elementwise_dtype([fe_type(v) for v in (x, y)])
    assert dt is not None
    if not dt.is_float:
        raise b.fail(f"mse needs floating-point operands, found {dt}", span, "E-DTYPE")
    from tessera.frontend.types import TensorType as FeTensorType

    acc = accum_of([FeTensorType((), dt, next((t.policy for t in tensors if t.dtype == dt), NO_POLICY))])
    assert acc is not None
    dims = b.em.broadcast_dims([t.dims for t in tensors], span, "mse")
    d = b.em.emit1("sub", [b.em.materialize(x, acc, dims, span), b.em.materialize(y, acc, dims, span)], span)
    sq = b.em.emit1("mul", [d, d], span)
    if not dims:
        return TVal(sq)
    return TVal(b.em.emit1("reduce", [sq], span, kind="mean", axes=tuple(range(len(dims))), keepdims=False,
                           accum=acc))
