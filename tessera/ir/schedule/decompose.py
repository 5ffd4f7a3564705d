"""Rewrite a specialised graph function into the primitive ops kernels are made of.

The partitioner fuses elementwise ops, reductions and matmuls; the nn ops of the graph are
rewritten here into those, with the numeric policy spelled out as ops:

- softmax, logsumexp, layernorm, rmsnorm: a cast to the accumulation dtype, `reduce` ops over the
  normalised axes (keepdims) with broadcasts back, the elementwise math, a cast back to the input
  dtype (rounding `nearest_even`);
- `reduce {kind = "mean"}`: a sum, then a division by the element count;
- every sum / prod / max / min whose input dtype is not its accumulation dtype: a cast first;
  one over axes that are not adjacent: one reduction per run of adjacent axes;
- attention: q, k, v cast to the accumulation dtype, `q @ transpose(k)` scaled (scale 0 means
  1/sqrt(D)), causally masked (`select` of `-inf` where the key position is after the query
  position), a softmax, `@ v`, a cast to q's dtype.

Normalisations divide by sqrt(var + eps) (not multiply by rsqrt) and softmax/logsumexp subtract a
max that is replaced by 0 where infinite: the reference evaluator's formulas, so that results agree
to rounding.

`decompose(fn)` returns the new function (without the ops no result or print depends on) and, for
every op of it, the name of the graph op it came from (what the plan printer shows as a kernel's
origin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tessera.dtypes import BOOL, INT64, DType
from tessera.ir.graph.ops import Function, Op, TensorType, Value, make_op
from tessera.ir.schedule.ops import ScheduleIRError
from tessera.symbolic import Dim

Origin = dict[Op, str]


def static_shape(t: TensorType) -> tuple[int, ...]:
    """The extents of a specialised type; a symbolic dim is an error (run specialize_shapes first)."""
    out = []
    for d in t.dims:
        if not d.is_const:
            raise ScheduleIRError(f"dim {d} of {t} is symbolic: bind the shapes (specialize_shapes) "
                                  "before partitioning")
        out.append(d.value)
    return tuple(out)


def _dims(shape: Sequence[int]) -> tuple[Dim, ...]:
    return tuple(Dim.const(n) for n in shape)


class _Rewriter:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.origin: Origin = {}
        self.current = ""

    def op(self, name: str, operands: Sequence[Value], hint: str = "", **attrs: object) -> Value:
        o = make_op(name, operands, hint, **attrs)  # type: ignore[arg-type]
        self.ops.append(o)
        self.origin[o] = self.current
        return o.result

    # ------------------------------------------------------------ small builders

    def scalar(self, value: float, dtype: DType, shape: Sequence[int]) -> Value:
        c = self.op("constant", [], value=float(value), dtype=dtype)
        return self.op("broadcast_to", [c], shape=_dims(shape)) if shape else c

    def cast(self, x: Value, dtype: DType) -> Value:
        if x.ty.dtype == dtype:
            return x
        return self.op("cast", [x], x.hint, dtype=dtype, rounding="nearest_even")

    def bcast(self, x: Value, shape: Sequence[int]) -> Value:
        if static_shape(x.ty) == tuple(shape):
            return x
        return self.op("broadcast_to", [x], shape=_dims(shape))

    def reduce(self, kind: str, x: Value, axes: tuple[int, ...], keepdims: bool, accum: DType) -> Value:
        if kind in ("sum", "prod", "max", "min", "mean"):
            x = self.cast(x, accum)
        if kind == "mean":
            shape = static_shape(x.ty)
            count = 1
            for a in axes:
                count *= shape[a]
            s = self.reduce("sum", x, axes, keepdims, accum)
            return self.op("div", [s, self.scalar(count, accum, static_shape(s.ty))])
        runs = _runs(axes)
        if len(runs) == 1:
            return self.op("reduce", [x], kind=kind, axes=axes, keepdims=keepdims, accum=accum)
        if kind not in ("sum", "prod", "max", "min"):
            raise ScheduleIRError(f"reduce {kind} over the axes {list(axes)}, which are not adjacent: "
                                  "not supported")
        # Axes that are not adjacent do not read as one run of memory: reduce one run of adjacent
        # axes at a time (the innermost first), then drop the kept unit axes if asked.
        for run in reversed(runs):
            x = self.op("reduce", [x], kind=kind, axes=run, keepdims=True, accum=accum)
        if not keepdims:
            shape = [n for i, n in enumerate(static_shape(x.ty)) if i not in axes]
            x = self.op("reshape", [x], shape=_dims(shape))
        return x

    def row_stat(self, kind: str, x: Value, axes: tuple[int, ...], accum: DType) -> Value:
        """reduce(x) over axes with keepdims, broadcast back to x's shape."""
        r = self.reduce(kind, x, axes, True, accum)
        return self.bcast(r, static_shape(x.ty))

    # ------------------------------------------------------------ the nn ops

    def safe_max(self, xa: Value, axes: tuple[int, ...], accum: DType) -> Value:
        """The max over axes (keepdims), 0 where it is infinite: exp(x - m) of a row of -inf is then
        0 rather than nan (so logsumexp of it is -inf, as the reference evaluator computes)."""
        m = self.reduce("max", xa, axes, True, accum)
        zero = self.scalar(0.0, accum, static_shape(m.ty))
        return self.op("select", [self.op("isinf", [m]), zero, m])

    def softmax(self, x: Value, axis: int, accum: DType) -> Value:
        axes = (axis % x.ty.rank,)
        xa = self.cast(x, accum)
        m = self.bcast(self.safe_max(xa, axes, accum), static_shape(xa.ty))
        e = self.op("exp", [self.op("sub", [xa, m])])
        s = self.row_stat("sum", e, axes, accum)
        return self.cast(self.op("div", [e, s]), x.ty.dtype)

    def logsumexp(self, x: Value, axes: tuple[int, ...], keepdims: bool, accum: DType) -> Value:
        axes = tuple(sorted(a % x.ty.rank for a in axes))
        xa = self.cast(x, accum)
        m = self.safe_max(xa, axes, accum)
        e = self.op("exp", [self.op("sub", [xa, self.bcast(m, static_shape(xa.ty))])])
        s = self.reduce("sum", e, axes, True, accum)
        y = self.op("add", [self.op("log", [s]), m])
        if not keepdims:
            shape = [n for i, n in enumerate(static_shape(xa.ty)) if i not in axes]
            y = self.op("reshape", [y], shape=_dims(shape))
        return y

    def _normalise(self, xa: Value, centre: bool, eps: float, accum: DType) -> Value:
        shape = static_shape(xa.ty)
        axes = (len(shape) - 1,)
        count = self.scalar(shape[-1], accum, shape[:-1] + (1,))
        if centre:
            mean = self.op("div", [self.reduce("sum", xa, axes, True, accum), count])
            xa = self.op("sub", [xa, self.bcast(mean, shape)])
        sq = self.op("mul", [xa, xa])
        var = self.op("div", [self.reduce("sum", sq, axes, True, accum), count])
        sd = self.op("sqrt", [self.op("add", [var, self.scalar(eps, accum, shape[:-1] + (1,))])])
        return self.op("div", [xa, self.bcast(sd, shape)])

    def layernorm(self, x: Value, w: Value, b: Value, eps: float, accum: DType) -> Value:
        shape = static_shape(x.ty)
        y = self._normalise(self.cast(x, accum), True, eps, accum)
        y = self.op("mul", [y, self.cast(self.bcast(w, shape), accum)])
        y = self.op("add", [y, self.cast(self.bcast(b, shape), accum)])
        return self.cast(y, x.ty.dtype)

    def rmsnorm(self, x: Value, w: Value, eps: float, accum: DType) -> Value:
        shape = static_shape(x.ty)
        y = self._normalise(self.cast(x, accum), False, eps, accum)
        y = self.op("mul", [y, self.cast(self.bcast(w, shape), accum)])
        return self.cast(y, x.ty.dtype)

    def attention(self, q: Value, k: Value, v: Value, causal: bool, scale: float, accum: DType) -> Value:
        r = q.ty.rank
        if scale == 0.0:  # the graph's spelling of the default, 1/sqrt(D)
            scale = 1.0 / math.sqrt(static_shape(q.ty)[-1])
        perm = tuple(range(r - 2)) + (r - 1, r - 2)
        kt = self.op("transpose", [self.cast(k, accum)], perm=perm)
        s = self.op("matmul", [self.cast(q, accum), kt], accum=accum)
        shape = static_shape(s.ty)
        s = self.op("mul", [s, self.scalar(scale, accum, shape)])
        if causal:
            sq, sk = shape[-2], shape[-1]
            rows = self.op("reshape", [self.op("iota", [], n=Dim.const(sq), dtype=INT64)],
                           shape=_dims((sq, 1)))
            cols = self.op("reshape", [self.op("iota", [], n=Dim.const(sk), dtype=INT64)],
                           shape=_dims((1, sk)))
            after = self.op("cmp", [self.bcast(cols, shape), self.bcast(rows, shape)], pred="gt")
            s = self.op("select", [after, self.scalar(float("-inf"), accum, shape), s])
        p = self.softmax(s, r - 1, accum)
        o = self.op("matmul", [p, self.cast(v, accum)], accum=accum)
        return self.cast(o, q.ty.dtype)


def _runs(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Sorted axes as runs of adjacent ones: (0, 1, 3) -> [(0, 1), (3,)]."""
    runs: list[list[int]] = []
    for a in sorted(axes):
        if runs and runs[-1][-1] == a - 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    return [tuple(r) for r in runs]


def decompose(fn: Function) -> tuple[Function, Origin]:
    """`fn` with its nn ops rewritten into primitive ops (see the module docstring)."""
    rw = _Rewriter()
    env: dict[Value, Value] = {}
    params = [Value(p.ty, p.hint) for p in fn.params]
    for old, new in zip(fn.params, params):
        static_shape(old.ty)
        env[old] = new
    for op in fn.ops:
        if op.name == "call":
            raise ScheduleIRError(f"call @{op.attr('callee')} left in @{fn.name}: inline calls "
                                  "(inline_calls) before partitioning")
        args = [env[v] for v in op.operands]
        attrs = dict(op.attrs)
        rw.current = op.name
        out: list[Value]
        if op.name == "softmax":
            out = [rw.softmax(args[0], int(attrs["axis"]), attrs["accum"])]  # type: ignore[arg-type]
        elif op.name == "logsumexp":
            out = [rw.logsumexp(args[0], tuple(attrs["axes"]), bool(attrs["keepdims"]),  # type: ignore[arg-type]
                                attrs["accum"])]  # type: ignore[arg-type]
        elif op.name == "layernorm":
            out = [rw.layernorm(*args, float(attrs["eps"]), attrs["accum"])]  # type: ignore[arg-type]
        elif op.name == "rmsnorm":
            out = [rw.rmsnorm(*args, float(attrs["eps"]), attrs["accum"])]  # type: ignore[arg-type]
        elif op.name == "attention":
            out = [rw.attention(*args, bool(attrs["causal"]), float(attrs["scale"]),  # type: ignore[arg-type]
                                attrs["accum"])]  # type: ignore[arg-type]
        elif op.name == "reduce":
            out = [_reduce(rw, args[0], attrs)]
        else:
            new = make_op(op.name, args, op.results[0].hint if op.results else "", op.span,
                          **attrs)  # type: ignore[arg-type]
            rw.ops.append(new)
            rw.origin[new] = op.name
            out = list(new.results)
        for old, new_v in zip(op.results, out):
            if new_v.ty != old.ty:
                raise ScheduleIRError(f"decomposing {op.name} gave {new_v.ty}, expected {old.ty}")
            if not new_v.hint:
                new_v.hint = old.hint
            env[old] = new_v
    returns = [env[v] for v in fn.returns]
    result = Function(fn.name, params, live_ops(rw.ops, returns), returns, fn.effects, fn.constraints,
                      fn.symbols, fn.span)
    return result, rw.origin


def live_ops(ops: list[Op], returns: list[Value]) -> list[Op]:
    """The ops a result or a print depends on (unused values would become kernels writing nothing)."""
    live = set(returns)
    kept = []
    for op in reversed(ops):
        if op.name == "print" or any(r in live for r in op.results):
            kept.append(op)
            live.update(op.operands)
    return kept[::-1]


def _reduce(rw: _Rewriter, x: Value, attrs: dict[str, object]) -> Value:
    kind = str(attrs["kind"])
    accum: DType = attrs["accum"]  # type: ignore[assignment]
    keepdims = bool(attrs["keepdims"])
    axes = tuple(sorted(int(a) % x.ty.rank for a in attrs["axes"]))  # type: ignore[union-attr]
    if not axes:
        # Reducing no axis: the value itself (in the accumulation dtype), or index 0 for arg-reductions.
        if kind in ("argmax", "argmin"):
            return rw.scalar(0, INT64, static_shape(x.ty))
        return rw.cast(x, accum)
    if x.ty.dtype == BOOL and kind in ("max", "min"):
        return rw.cast(rw.reduce(kind, rw.cast(x, INT64), axes, keepdims, INT64), accum)
    return rw.reduce(kind, x, axes, keepdims, accum)
