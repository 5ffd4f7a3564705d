"""CPU backend benchmark: hand-built tile kernels vs NumPy in the same process.

    .venv/bin/python bench/cpu_kernels.py [--repeat N] [--threads T]

Prints one row per workload: the median NumPy time, the median Tessera time, and NumPy / Tessera
(above 1.0 Tessera is faster), with the target each workload should reach. Each kernel's output is
checked against NumPy before it is timed. Compile time is reported separately (first compile; the
code cache is bypassed so it is a real LLVM run).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from tessera.dtypes import F32, INT64
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import Kernel, Schedule
from tessera.runtime.cache import CodeCache
from tessera.runtime.cpu import CpuRuntime

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def softmax_kernel(bn: int) -> Kernel:
    b = TileBuilder("softmax", Schedule(block=(1, bn)))
    x, y = b.param("x", 2, F32, "in"), b.param("y", 2, F32, "out")
    b.grid(b.extent("M", x, 0))
    b.extent("N", x, 1)
    row, c0 = b.program_id(0, hint="row"), b.const(0, INT64, "c0")
    xb = b.load(x, row, c0, shape=(1, bn), other=-math.inf, hint="xb")
    e = b.op("exp", b.op("sub", xb, b.reduce(xb, "max", 1, hint="mx")), hint="e")
    b.store(y, row, c0, value=b.op("div", e, b.reduce(e, "sum", 1, hint="s")))
    return b.build()


def layernorm_kernel(bn: int, eps: float = 1e-5) -> Kernel:
    b = TileBuilder("layernorm", Schedule(block=(1, bn)))
    x, w, bias = b.param("x", 2, F32, "in"), b.param("w", 1, F32, "in"), b.param("b", 1, F32, "in")
    y = b.param("y", 2, F32, "out")
    b.grid(b.extent("M", x, 0))
    b.extent("N", x, 1)
    row, c0 = b.program_id(0, hint="row"), b.const(0, INT64, "c0")
    n = b.cast(b.dim(x, 1), F32, hint="n")
    xb = b.load(x, row, c0, shape=(1, bn), hint="xb")
    mean = b.op("div", b.reduce(xb, "sum", 1), n, hint="mean")
    valid = b.op("cmp", b.op("iota", shape=(1, bn), axis=1), b.dim(x, 1), pred="lt")
    d = b.op("select", valid, b.op("sub", xb, mean), b.const(0.0, F32), hint="d")
    var = b.op("div", b.reduce(b.op("mul", d, d), "sum", 1), n, hint="var")
    rstd = b.op("rsqrt", b.op("add", var, b.const(eps, F32)), hint="rstd")
    wb = b.op("broadcast", b.load(w, c0, shape=(bn,)), shape=(1, bn))
    bb = b.op("broadcast", b.load(bias, c0, shape=(bn,)), shape=(1, bn))
    b.store(y, row, c0, value=b.op("add", b.op("mul", b.op("mul", d, rstd), wb), bb))
    return b.build()


def matmul_kernel(name: str, bm: int, bn: int, bk: int, gelu: str | None) -> Kernel:
    b = TileBuilder(name, Schedule(block=(bm, bn), k=bk))
    x, w = b.param("x", 2, F32, "in"), b.param("w", 2, F32, "in")
    bias = b.param("b", 1, F32, "in") if gelu else None
    y = b.param("y", 2, F32, "out")
    m, n = b.extent("M", x, 0), b.extent("N", w, 1)
    b.extent("K", x, 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    r0 = b.op("mul", b.program_id(0), b.const(bm, INT64), hint="r0")
    c0 = b.op("mul", b.program_id(1), b.const(bn, INT64), hint="c0")
    zero = b.const(0, INT64, "zero")
    acc0 = b.full((bm, bn), 0.0, F32, hint="acc0")
    with b.for_(zero, b.dim(x, 1), b.const(bk, INT64), [acc0], hints=["acc"], iv_hint="k0") as loop:
        a = b.load(x, r0, loop.iv, shape=(bm, bk), hint="a")
        wb = b.load(w, loop.iv, c0, shape=(bk, bn), hint="wb")
        b.yield_(loop, [b.dot(a, wb, loop.args[0])])
    h = loop.results[0]
    if bias is not None:
        h = b.op("add", h, b.op("broadcast", b.load(bias, c0, shape=(bn,)), shape=(1, bn)))
        h = b.op("gelu", h, approximate=gelu)
    b.store(y, r0, c0, value=h)
    return b.build()


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=1, keepdims=True)
    d = x - mu
    return d / np.sqrt((d * d).mean(axis=1, keepdims=True) + 1e-5) * w + b


def np_gelu_tanh(h: np.ndarray) -> np.ndarray:
    # NumPy has no erf: the tanh form is its cheapest gelu, so both sides compute the tanh form.
    return 0.5 * h * (1 + np.tanh(np.float32(SQRT_2_OVER_PI) * (h + np.float32(0.044715) * h * h * h)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="threads per launch (default: all cores)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rt = CpuRuntime(cache=CodeCache(disk=False))
    kernels = [softmax_kernel(4096), layernorm_kernel(4096), matmul_kernel("matmul", 64, 64, 64, None),
               matmul_kernel("matmul_gelu", 64, 64, 64, "tanh")]
    t0 = time.perf_counter()
    ck = rt.compile(kernels)
    compile_s = time.perf_counter() - t0

    def launch(name: str, arrays: list[np.ndarray]) -> Callable[[], None]:
        return lambda: ck.launch(name, arrays, threads=args.threads)

    x = rng.standard_normal((2048, 4096)).astype(np.float32)
    y = np.empty_like(x)
    w, bvec = rng.standard_normal(4096).astype(np.float32), rng.standard_normal(4096).astype(np.float32)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    wm = rng.standard_normal((1024, 1024)).astype(np.float32)
    bias = rng.standard_normal(1024).astype(np.float32)
    c = np.empty((1024, 1024), np.float32)

    rows = [
        ("softmax 2048x4096 f32", lambda: np_softmax(x), launch("softmax", [x, y]), lambda: np_softmax(x), y,
         1.0),
        ("layernorm 2048x4096 f32", lambda: np_layernorm(x, w, bvec), launch("layernorm", [x, w, bvec, y]),
         lambda: np_layernorm(x, w, bvec), y, 1.0),
        ("matmul 1024^3 f32", lambda: a @ wm, launch("matmul", [a, wm, c]), lambda: a @ wm, c, 0.3),
        ("gelu(x @ w + b) 1024^3 f32", lambda: np_gelu_tanh(a @ wm + bias),
         launch("matmul_gelu", [a, wm, bias, c]), lambda: np_gelu_tanh(a @ wm + bias), c, 0.8),
    ]
    print(f"CPU: {rt.target.cpu}, {rt.target.vector_bits}-bit vectors, {os.cpu_count()} cores; "
          f"compile (4 kernels, cold LLVM) {compile_s:.2f} s")
    print(f"{'workload':30s} {'numpy ms':>10s} {'tessera ms':>11s} {'numpy/tessera':>14s} {'target':>7s}")
    ok = True
    for name, np_fn, ts_fn, ref_fn, out, target in rows:
        out.fill(np.nan)
        ts_fn()
        np.testing.assert_allclose(out, ref_fn(), rtol=2e-3, atol=2e-3, err_msg=name)
        t_np = median_ms(np_fn, args.repeat)
        t_ts = median_ms(ts_fn, args.repeat)
        ratio = t_np / t_ts
        ok &= ratio >= target
        print(f"{name:30s} {t_np:10.2f} {t_ts:11.2f} {ratio:14.2f} {'>= ' + str(target):>7s}"
              f"{'' if ratio >= target else '  (below target)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
