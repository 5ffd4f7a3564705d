"""Lowering of `x @ y` / `matmul` and `einsum` to `matmul` ops.

matmul: operands are cast to their promoted dtype and accumulate in the checker's accumulation dtype
(the widest explicit `@accum`, else f32 for narrow floats); 1-D operands are reshaped to matrices and
the added axis removed after; a matrix right operand with a batched left one folds the batch into the
rows (one 2-D product); otherwise batch dims are broadcast explicitly.

einsum: operands are contracted pairwise, left to right; each pairwise contraction sums the axes used
by neither the other operand nor what follows (a `reduce`), transposes both operands to
[batch, free, contracted] / [batch, contracted, free], reshapes them to one matrix per batch, multiplies,
and reshapes back; the result is transposed to the output order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tessera.dtypes import INT64, DType, promote
from tessera.frontend import shapes
from tessera.frontend.builtins import accum_of
from tessera.ir.graph.build.emitter import ONE
from tessera.ir.graph.build.lower_shape import as_tensor
from tessera.ir.graph.build.values import TVal, describe
from tessera.ir.graph.ops import Value
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder


def _product(dims: Sequence[Dim]) -> Dim:
    p = ONE
    for d in dims:
        p = p * d
    return p


def matmul(b: Builder, x: object, y: object, span: Span) -> TVal:
    a = as_tensor(b, x, span, "matmul: the left operand")
    c = as_tensor(b, y, span, "matmul: the right operand")
    if a.rank == 0 or c.rank == 0:
        raise b.fail("matmul needs operands of rank >= 1; use `*` for scalar multiplication", span, "E-SHAPE")
    acc = accum_of([a.fe, c.fe])
    assert acc is not None
    out_dims = b.em.canon_dims(shapes.matmul(b.cs, shapes.Operand(a.dims, span, "lhs"),
                                             shapes.Operand(c.dims, span, "rhs"), span))
    dt = promote(a.dtype, c.dtype)
    av, cv = b.em.cast(a.value, dt, span), b.em.cast(c.value, dt, span)
    if a.rank == 1:
        av = b.em.reshape(av, [ONE, a.dims[0]], span)
    if c.rank == 1:
        cv = b.em.reshape(cv, [c.dims[0], ONE], span)
    return TVal(b.em.reshape(_matmul_nd(b, av, cv, acc, span), out_dims, span))


def _matmul_nd(b: Builder, av: Value, cv: Value, acc: DType, span: Span) -> Value:
    """Product of operands of rank >= 2 with NumPy's batch broadcasting."""
    ad, cd = av.ty.dims, cv.ty.dims
    if len(cd) == 2 and len(ad) > 2:
        rows = b.em.canon(_product(ad[:-1]))
        flat = b.em.reshape(av, [rows, ad[-1]], span)
        out = b.em.emit1("matmul", [flat, cv], span, accum=acc)
        return b.em.reshape(out, [*ad[:-1], cd[-1]], span)
    batch = b.em.broadcast_dims([ad[:-2], cd[:-2]], span, "matmul")
    av = b.em.broadcast(av, [*batch, *ad[-2:]], span)
    cv = b.em.broadcast(cv, [*batch, *cd[-2:]], span)
    return b.em.emit1("matmul", [av, cv], span, accum=acc)


# ---------------------------------------------------------------- einsum


def einsum(b: Builder, spec: object, operands: Sequence[object], span: Span) -> TVal:
    if not isinstance(spec, str):
        raise b.fail(f"einsum: the spec must be a string, found {describe(spec)}", span)
    if "..." in spec:
        raise b.fail("einsum with '...' is not supported yet; spell out the axes", span)
    ops = [as_tensor(b, o, span, "einsum: an operand") for o in operands]
    lhs, arrow, rhs = spec.replace(" ", "").partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ops):
        raise b.fail(f"einsum: the spec names {len(inputs)} operands but {len(ops)} were given", span)
    for letters, o in zip(inputs, ops):
        if len(letters) != o.rank or not letters.isalpha():
            raise b.fail(f"einsum: '{letters}' does not match an operand of rank {o.rank}", span, "E-SHAPE")
    counts: dict[str, int] = {}
    for letters in inputs:
        for ch in letters:
            counts[ch] = counts.get(ch, 0) + 1
    out = rhs if arrow else "".join(sorted(ch for ch, n in counts.items() if n == 1))
    acc = accum_of([o.fe for o in ops])
    assert acc is not None
    dt = ops[0].dtype
    for o in ops[1:]:
        dt = promote(dt, o.dtype)
    extent = _extents(b, inputs, ops, span)
    values = []
    for i, (letters, o) in enumerate(zip(inputs, ops)):
        v, inputs[i] = _diagonal(b, b.em.cast(o.value, dt, span), letters, extent, span)
        values.append(v)
    cur, cur_letters = values[0], inputs[0]
    if len(ops) == 1:
        cur, cur_letters = _sum_unused(b, cur, cur_letters, set(out), acc, span)
    for i in range(1, len(ops)):
        later = set(out).union(*inputs[i + 1:])
        cur, cur_letters = _contract(b, cur, cur_letters, values[i], inputs[i], later, extent, acc, span)
    cur = b.em.cast(cur, acc, span)
    return TVal(b.em.transpose(cur, [cur_letters.index(ch) for ch in out], span))


def _extents(b: Builder, inputs: Sequence[str], ops: Sequence[TVal], span: Span) -> dict[str, Dim]:
    """The extent of every index: the first operand's that is not 1 (1 broadcasts)."""
    ext: dict[str, Dim] = {}
    for letters, o in zip(inputs, ops):
        for ch, d in zip(letters, o.dims):
            if ch not in ext or ext[ch] == ONE:
                ext[ch] = d
            elif d != ONE and not b.em.dims_equal(ext[ch], d):
                raise b.fail(f"einsum: index '{ch}' has extents {ext[ch]} and {d}", span, "E-SHAPE")
    return ext


def _diagonal(b: Builder, v: Value, letters: str, ext: dict[str, Dim], span: Span) -> tuple[Value, str]:
    """An operand with an index repeated (`ii`, `iji`): its diagonal along that index. Each repeated
    axis is compared with the first by position (iotas), the rest selected to 0 and summed away - a sum
    of one element, so exact; entries off the diagonal (NaN included) do not reach the result."""
    for ch in dict.fromkeys(letters):
        while letters.count(ch) > 1:
            first, other = letters.index(ch), letters.index(ch, letters.index(ch) + 1)
            dims = list(v.ty.dims)
            if not b.em.dims_equal(dims[first], dims[other]):
                raise b.fail(f"einsum: index '{ch}' has extents {dims[first]} and {dims[other]}", span, "E-SHAPE")
            n = ext[ch] if dims[first] == ONE else dims[first]
            dims[first] = dims[other] = n
            v = b.em.broadcast(v, dims, span)

            def along(axis: int, n: Dim = n, dims: list[Dim] = dims) -> Value:
                iota = b.em.emit1("iota", [], span, n=n, dtype=INT64)
                shape = [n if a == axis else ONE for a in range(len(dims))]
                return b.em.broadcast(b.em.reshape(iota, shape, span), dims, span)

            on = b.em.emit1("cmp", [along(first), along(other)], span, pred="eq")
            zero = b.em.broadcast(b.em.constant(0.0, v.ty.dtype, span), dims, span)
            picked = b.em.emit1("select", [on, v, zero], span)
            v = b.em.emit1("reduce", [picked], span, kind="sum", axes=(other,), keepdims=False,
                           accum=v.ty.dtype)
            letters = letters[:other] + letters[other + 1:]
    return v, letters


def _sum_unused(b: Builder, v: Value, letters: str, keep: set[str], acc: DType, span: Span) -> tuple[Value, str]:
    axes = tuple(i for i, ch in enumerate(letters) if ch not in keep)
    if not axes:
        return v, letters
    out = b.em.emit1("reduce", [v], span, kind="sum", axes=axes, keepdims=False, accum=acc)
    return out, "".join(ch for ch in letters if ch in keep)


def _contract(b: Builder, x: Value, xl: str, y: Value, yl: str, later: set[str], ext: dict[str, Dim], acc: DType,
              span: Span) -> tuple[Value, str]:
    """Contract two operands over their shared indices not needed later; keep the others."""
    dt = promote(x.ty.dtype, y.ty.dtype)  # a partial product is already in the accumulation dtype
    x, y = b.em.cast(x, dt, span), b.em.cast(y, dt, span)
    x, xl = _sum_unused(b, x, xl, set(yl) | later, acc, span)
    y, yl = _sum_unused(b, y, yl, set(xl) | later, acc, span)
    batch = [ch for ch in xl if ch in yl and ch in later]
    contracted = [ch for ch in xl if ch in yl and ch not in later]
    xfree = [ch for ch in xl if ch not in yl]
    yfree = [ch for ch in yl if ch not in xl]
    # Indices both operands share must have one extent (a 1 broadcasts against the other).
    x = _expand(b, x, xl, ext, set(yl), span)
    y = _expand(b, y, yl, ext, set(xl), span)
    xt = b.em.transpose(x, [xl.index(ch) for ch in (*batch, *xfree, *contracted)], span)
    yt = b.em.transpose(y, [yl.index(ch) for ch in (*batch, *contracted, *yfree)], span)
    size = {**dict(zip(yl, y.ty.dims)), **dict(zip(xl, x.ty.dims))}
    bd = [size[ch] for ch in batch]
    m = b.em.canon(_product([size[ch] for ch in xfree]))
    k = b.em.canon(_product([size[ch] for ch in contracted]))
    n = b.em.canon(_product([size[ch] for ch in yfree]))
    xm = b.em.reshape(xt, [*bd, m, k], span)
    ym = b.em.reshape(yt, [*bd, k, n], span)
    prod = b.em.emit1("matmul", [xm, ym], span, accum=acc)
    letters = "".join((*batch, *xfree, *yfree))
    return b.em.reshape(prod, [size[ch] for ch in letters], span), letters


def _expand(b: Builder, v: Value, letters: str, ext: dict[str, Dim], shared: set[str], span: Span) -> Value:
    dims = [ext[ch] if ch in shared else d for ch, d in zip(letters, v.ty.dims)]
    if list(v.ty.dims) == dims:
        return v
    return b.em.broadcast(v, dims, span)
