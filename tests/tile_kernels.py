"""Hand-built Tile IR kernels for the backend tests (test helper, imported by tests only).

Each builder returns a verified-shape `Kernel` written the way the Schedule -> Tile lowering writes
them: programs over a grid of output blocks, loads with `other` padding, whole-block math, stores.
"""

from __future__ import annotations

import math

from tessera.dtypes import BOOL, F32, INT64, DType
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import Kernel, Schedule, Value

NEG_INF = -math.inf


def _start(b: TileBuilder, axis: int, block: int, hint: str) -> Value:
    return b.op("mul", b.program_id(axis, hint=f"pid{axis}"), b.const(block, INT64), hint=hint)


def elementwise_chain(in_dtype: DType = F32, out_dtype: DType = F32, block: tuple[int, int] = (8, 40),
                      name: str = "chain") -> Kernel:
    """y = cast(gelu(exp(x * 0.5) * s + bias) - x, out) over 2-D x, with a row bias `bias` [1, N]
    view and a scalar parameter-free constant; rows/cols blocked by `block`."""
    bm, bn = block
    b = TileBuilder(name, Schedule(block=block))
    x = b.param("x", 2, in_dtype, "in")
    bias = b.param("bias", 2, F32, "in")
    y = b.param("y", 2, out_dtype, "out")
    m = b.extent("M", x, 0)
    n = b.extent("N", x, 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    r0, c0 = _start(b, 0, bm, "r0"), _start(b, 1, bn, "c0")
    zero = b.const(0, INT64, "zero")
    xb = b.cast(b.load(x, r0, c0, shape=block, hint="xb"), F32, hint="xf")
    bb = b.load(bias, zero, c0, shape=(1, bn), hint="bb")
    e = b.op("exp", b.op("mul", xb, b.const(0.5, F32)), hint="e")
    h = b.op("add", b.op("mul", e, b.const(1.5, F32)), bb, hint="h")
    g = b.op("sub", b.op("gelu", h, approximate="none"), xb, hint="g")
    b.store(y, r0, c0, value=b.cast(g, out_dtype, hint="yb"))
    return b.build()


def softmax_rows(bn: int, online: bool, dtype: DType = F32, name: str = "softmax") -> Kernel:
    """Row softmax, one program per row. online=False: one block covers the row (bn >= N);
    online=True: a `for` over column blocks carrying the running max and sum, then a second pass."""
    b = TileBuilder(name, Schedule(block=(1, bn)))
    x = b.param("x", 2, dtype, "in")
    y = b.param("y", 2, dtype, "out")
    m = b.extent("M", x, 0)
    b.extent("N", x, 1)
    b.grid(m)
    row = b.program_id(0, hint="row")
    zero = b.const(0, INT64, "c0")
    if not online:
        xb = b.cast(b.load(x, row, zero, shape=(1, bn), other=NEG_INF, hint="xb"), F32)
        mx = b.reduce(xb, "max", 1, hint="mx")
        e = b.op("exp", b.op("sub", xb, mx), hint="e")
        s = b.reduce(e, "sum", 1, hint="s")
        b.store(y, row, zero, value=b.cast(b.op("div", e, s), dtype, hint="yb"))
        return b.build()
    n = b.dim(x, 1, hint="n")
    step = b.const(bn, INT64, "bn")
    m0 = b.full((1, 1), NEG_INF, F32, hint="m0")
    s0 = b.full((1, 1), 0.0, F32, hint="s0")
    with b.for_(zero, n, step, [m0, s0], hints=["m", "s"], iv_hint="j") as loop:
        mi, si = loop.args
        xb = b.cast(b.load(x, row, loop.iv, shape=(1, bn), other=NEG_INF, hint="xb"), F32)
        m_new = b.op("maximum", mi, b.reduce(xb, "max", 1), hint="m_new")
        # Rows of -inf keep m = -inf: exp(-inf - -inf) would be NaN, so rescale by 0 there.
        finite = b.op("cmp", m_new, b.const(NEG_INF, F32), pred="ne")
        scale = b.op("select", finite, b.op("exp", b.op("sub", mi, m_new)), b.const(0.0, F32))
        e = b.op("exp", b.op("sub", xb, m_new))
        s_new = b.op("add", b.op("mul", si, scale), b.reduce(e, "sum", 1), hint="s_new")
        b.yield_(loop, [m_new, s_new])
    mf, sf = loop.results
    with b.for_(zero, n, step, iv_hint="j") as loop2:
        xb = b.cast(b.load(x, row, loop2.iv, shape=(1, bn), other=NEG_INF), F32)
        yb = b.op("div", b.op("exp", b.op("sub", xb, mf)), sf)
        b.store(y, row, loop2.iv, value=b.cast(yb, dtype, hint="yb"))
    return b.build()


def layernorm_rows(bn: int, rows: int = 1, eps: float = 1e-5, name: str = "layernorm") -> Kernel:
    """(x - mean) / sqrt(var + eps) * w + b over rows of x, `rows` rows per program, the row in one
    block (bn >= N); the mean divides by the true extent N (padding reads 0 and is masked out)."""
    b = TileBuilder(name, Schedule(block=(rows, bn)))
    x = b.param("x", 2, F32, "in")
    w = b.param("w", 1, F32, "in")
    bias = b.param("b", 1, F32, "in")
    y = b.param("y", 2, F32, "out")
    m = b.extent("M", x, 0)
    b.extent("N", x, 1)
    b.grid(cdiv(m, rows))
    r0 = _start(b, 0, rows, "r0")
    zero = b.const(0, INT64, "c0")
    n = b.cast(b.dim(x, 1), F32, hint="nf")
    xb = b.load(x, r0, zero, shape=(rows, bn), hint="xb")
    mean = b.op("div", b.reduce(xb, "sum", 1), n, hint="mean")
    valid = b.op("cmp", b.op("iota", shape=(rows, bn), axis=1), b.dim(x, 1), pred="lt", hint="valid")
    d = b.op("select", valid, b.op("sub", xb, mean), b.const(0.0, F32), hint="d")
    var = b.op("div", b.reduce(b.op("mul", d, d), "sum", 1), n, hint="var")
    rstd = b.op("rsqrt", b.op("add", var, b.const(eps, F32)), hint="rstd")
    wb = b.op("broadcast", b.load(w, zero, shape=(bn,), hint="wb"), shape=(1, bn))
    bb = b.op("broadcast", b.load(bias, zero, shape=(bn,), hint="bb"), shape=(1, bn))
    b.store(y, r0, zero, value=b.op("add", b.op("mul", b.op("mul", d, rstd), wb), bb, hint="yb"))
    return b.build()


def matmul_epilogue(block: tuple[int, int], bk: int, in_dtype: DType = F32, out_dtype: DType = F32,
                    epilogue: str = "bias_gelu", transpose_b_block: bool = False,
                    name: str = "matmul") -> Kernel:
    """y = cast(act(x @ w + bias), out): a `for` over K blocks accumulating `dot` in f32.
    epilogue: "none" | "bias" | "bias_gelu". With transpose_b_block, w is passed as [N, K] and its
    block is transposed in the kernel (a `transpose` view feeding `dot`)."""
    bm, bn = block
    b = TileBuilder(name, Schedule(block=block, k=bk))
    x = b.param("x", 2, in_dtype, "in")
    w = b.param("w", 2, in_dtype, "in")
    bias = b.param("bias", 1, F32, "in") if epilogue != "none" else None
    y = b.param("y", 2, out_dtype, "out")
    m = b.extent("M", x, 0)
    b.extent("K", x, 1)
    n = b.extent("N", w, 0 if transpose_b_block else 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    r0, c0 = _start(b, 0, bm, "r0"), _start(b, 1, bn, "c0")
    zero = b.const(0, INT64, "c0")
    kdim = b.dim(x, 1, hint="K")
    acc0 = b.full(block, 0.0, F32, hint="acc0")
    with b.for_(zero, kdim, b.const(bk, INT64, "bk"), [acc0], hints=["acc"], iv_hint="k0") as loop:
        a = b.load(x, r0, loop.iv, shape=(bm, bk), hint="a")
        if transpose_b_block:
            wt = b.load(w, c0, loop.iv, shape=(bn, bk), hint="wt")
            wb = b.op("transpose", wt, perm=(1, 0), hint="wb")
        else:
            wb = b.load(w, loop.iv, c0, shape=(bk, bn), hint="wb")
        b.yield_(loop, [b.dot(a, wb, loop.args[0], hint="acc_next")])
    h = loop.results[0]
    if bias is not None:
        bb = b.op("broadcast", b.load(bias, c0, shape=(bn,), hint="bb"), shape=(1, bn))
        h = b.op("add", h, bb, hint="h")
        if epilogue == "bias_gelu":
            h = b.op("gelu", h, approximate="none", hint="g")
    b.store(y, r0, c0, value=b.cast(h, out_dtype, hint="yb"))
    return b.build()


def argmax_rows(bn: int, name: str = "argmax") -> Kernel:
    b = TileBuilder(name, Schedule(block=(1, bn)))
    x = b.param("x", 2, F32, "in")
    y = b.param("y", 2, INT64, "out")
    b.grid(b.extent("M", x, 0))
    b.extent("N", x, 1)
    row = b.program_id(0, hint="row")
    zero = b.const(0, INT64, "c0")
    xb = b.load(x, row, zero, shape=(1, bn), other=NEG_INF)
    b.store(y, row, zero, value=b.reduce(xb, "argmax", 1, hint="am"))
    return b.build()


def unary(op: str, dtype: DType = F32, block: int = 64, name: str = "", **attrs: object) -> Kernel:
    """y = op(x) over a 1-D tensor (for math accuracy tests)."""
    b = TileBuilder(name or op, Schedule(block=(block,)))
    x = b.param("x", 1, dtype, "in")
    out_dtype = BOOL if op in ("isnan", "isinf") else dtype
    y = b.param("y", 1, out_dtype, "out")
    b.grid(cdiv(b.extent("N", x, 0), block))
    s = _start(b, 0, block, "s")
    b.store(y, s, value=b.op(op, b.load(x, s, shape=(block,)), **attrs))  # type: ignore[arg-type]
    return b.build()


def binary(op: str, dtype: DType = F32, block: int = 64, name: str = "", **attrs: object) -> Kernel:
    """z = op(x, y) over 1-D tensors."""
    b = TileBuilder(name or op, Schedule(block=(block,)))
    x = b.param("x", 1, dtype, "in")
    y = b.param("y", 1, dtype, "in")
    out_dtype = BOOL if op == "cmp" else dtype
    z = b.param("z", 1, out_dtype, "out")
    b.grid(cdiv(b.extent("N", x, 0), block))
    s = _start(b, 0, block, "s")
    r = b.op(op, b.load(x, s, shape=(block,)), b.load(y, s, shape=(block,)), **attrs)  # type: ignore[arg-type]
    b.store(z, s, value=r)
    return b.build()


def cast_kernel(src: DType, dst: DType, rounding: str = "nearest_even", block: int = 48) -> Kernel:
    b = TileBuilder(f"cast_{src}_{dst}_{rounding}", Schedule(block=(block,)))
    x = b.param("x", 1, src, "in")
    y = b.param("y", 1, dst, "out")
    b.grid(cdiv(b.extent("N", x, 0), block))
    s = _start(b, 0, block, "s")
    b.store(y, s, value=b.cast(b.load(x, s, shape=(block,)), dst, rounding=rounding))
    return b.build()


def column_reduce(kind: str, block: tuple[int, int], dtype: DType = F32, name: str = "") -> Kernel:
    """out[0, j] = reduce(kind) of x[:, j] over all rows: a `for` over row blocks carrying a [1, BN]
    partial that each step combines with a reduction over axis 0 (not the vector axis)."""
    from tessera.ir.tile.ops import REDUCE_IDENTITY

    bm, bn = block
    b = TileBuilder(name or f"col_{kind}", Schedule(block=block))
    x = b.param("x", 2, dtype, "in")
    y = b.param("y", 2, dtype, "out")
    b.extent("M", x, 0)
    n = b.extent("N", x, 1)
    b.grid(cdiv(n, bn))
    c0 = _start(b, 0, bn, "c0")
    zero = b.const(0, INT64, "zero")
    ident = REDUCE_IDENTITY[kind]
    if dtype.is_int:
        ident = {"sum": 0, "prod": 1, "max": -(2 ** 31), "min": 2 ** 31 - 1}[kind]
    init = b.full((1, bn), ident, dtype, hint="init")
    combine = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}[kind]
    with b.for_(zero, b.dim(x, 0), b.const(bm, INT64), [init], hints=["part"], iv_hint="r0") as loop:
        xb = b.load(x, loop.iv, c0, shape=block, other=ident, hint="xb")
        b.yield_(loop, [b.op(combine, loop.args[0], b.reduce(xb, kind, 0))])
    b.store(y, zero, c0, value=loop.results[0])
    return b.build()


def gather_rows(bd: int, name: str = "gather") -> Kernel:
    """out[i, :] = table[ids[i], :]: the id is loaded as a [1] block and made a scalar by `item`."""
    b = TileBuilder(name, Schedule(block=(1, bd)))
    ids = b.param("ids", 1, INT64, "in")
    table = b.param("table", 2, F32, "in")
    out = b.param("out", 2, F32, "out")
    n = b.extent("N", ids, 0)
    d = b.extent("D", table, 1)
    b.grid(n, cdiv(d, bd))
    i = b.program_id(0, hint="i")
    c0 = _start(b, 1, bd, "c0")
    row = b.op("item", b.load(ids, i, shape=(1,), hint="idb"), hint="id")
    b.store(out, i, c0, value=b.load(table, row, c0, shape=(1, bd), hint="rowb"))
    return b.build()


def batched_scale_transpose(block: tuple[int, int], name: str = "bst") -> Kernel:
    """y[b] = (x[b] * 2)^T for x [B, M, N] -> y [B, N, M]: a [1, BM, BN] block reshaped to 2-D,
    transposed (a view), then scaled and stored."""
    bm, bn = block
    b = TileBuilder(name, Schedule(block=block))
    x = b.param("x", 3, F32, "in")
    y = b.param("y", 3, F32, "out")
    bs = b.extent("B", x, 0)
    m = b.extent("M", x, 1)
    n = b.extent("N", x, 2)
    b.grid(bs, cdiv(m, bm), cdiv(n, bn))
    bi = b.program_id(0, hint="bi")
    r0, c0 = _start(b, 1, bm, "r0"), _start(b, 2, bn, "c0")
    xb = b.op("reshape", b.load(x, bi, r0, c0, shape=(1, bm, bn), hint="xb3"), shape=(bm, bn), hint="xb")
    t = b.op("transpose", xb, perm=(1, 0), hint="xt")
    out = b.op("mul", t, b.const(2.0, F32), hint="o")
    b.store(y, bi, c0, r0, value=b.op("reshape", out, shape=(1, bn, bm)))
    return b.build()
