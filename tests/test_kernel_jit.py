"""`@kernel`s called from `@jit` code (tessera/ir/kernel_registry.py): one `kernel` graph op that
verifies and round-trips through the graph text, a kernel call of its own in the plan, the kernel's
Tile IR, and results against NumPy on the cpu and reference targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from filecheck_util import filecheck

import tessera
from tessera.api import ProgramCompilationError
from tessera.diagnostics import CompilationError
from tessera.frontend.check import check_text
from tessera.ir.graph.parser import parse_module
from tessera.ir.graph.printer import print_function
from tessera.ir.graph.verify import verify_function
from tessera.runtime import stages

RNG = np.random.default_rng()

SRC = """
from stdlib.kernels import matmul

@kernel.schedule(Schedule(block=(16, 32)))
def flash(q: KTile["BH", "S", "D", f32], k: KTile["BH", "S", "D", f32], v: KTile["BH", "S", "D", f32],
          *, causal: bool, scale: float) -> KTile["BH", "S", "D", f32]:
    T = tile.context()
    qb = tile.load(q, rows=T.m)
    acc = tile.zeros((T.m, T.d), f32)
    m = tile.full((T.m,), -inf, f32)
    l = tile.zeros((T.m,), f32)
    for j in tile.range_n(k.shape[1], T.n):
        s = tile.dot(qb, tile.transpose(tile.load(k, rows=j))) * scale
        s = tile.where(tile.col_index(j) < k.shape[1], s, -inf)
        if causal:
            s = tile.mask_causal(s, tile.row_index(), tile.col_index(j))
        p, m_c, l_c = tile.softmax_online(s)
        acc, m, l = tile.softmax_accumulate(acc, m, l, p, tile.load(v, rows=j), m_c, l_c)
    return acc / l[:, None]

@jit
def attn(q: Tensor["BH", "S", "D", f32], k: Tensor["BH", "S", "D", f32], v: Tensor["BH", "S", "D", f32],
         *, causal: bool = True) -> Tensor["BH", "S", "D", f32]:
    return flash(q, k * 1.0, v, causal=causal, scale=1.0 / sqrt(float(q.shape[2]))) + 1.0

@jit
def mlp(x: Tensor["B", "D", bf16], w: Tensor["D", "H", bf16], b: Tensor["H", f32]) -> Tensor["B", "H", f32]:
    return matmul(x, w, b, epilogue=("bias", "gelu")) * 2.0
"""


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        s = np.where(np.arange(n)[:, None] >= np.arange(n)[None, :], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_jit_calls_a_kernel(target: str) -> None:
    m = tessera.compile(SRC, target=target)
    q, k, v = (RNG.standard_normal((2, 37, 16)).astype(np.float32) for _ in range(3))
    for causal in (True, False):
        np.testing.assert_allclose(m.attn(q, k, v, causal=causal), _attention(q, k, v, causal) + 1.0,
                                   rtol=2e-5, atol=2e-5)


def test_jit_calls_a_dtype_generic_stdlib_kernel_with_an_epilogue() -> None:
    import ml_dtypes

    m = tessera.compile(SRC)
    x = RNG.standard_normal((9, 20)).astype(ml_dtypes.bfloat16)
    w = RNG.standard_normal((20, 13)).astype(ml_dtypes.bfloat16)
    b = RNG.standard_normal(13).astype(np.float32)
    y = x.astype(np.float64) @ w.astype(np.float64) + b
    want = 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2))) * 2.0
    got = m.mlp(x, w, b)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_graph_op_verifies_round_trips_and_plans_as_its_own_kernel() -> None:
    checked = check_text(SRC, "k.tsr").result
    assert checked is not None
    fn = next(f for f in checked.program.root.tree.functions if f.name == "attn")
    g = stages.graph_of(checked, fn, {"causal": True}, {"BH": 2, "S": 20, "D": 16})
    verify_function(g)
    text = print_function(g)
    filecheck(text, """
        CHECK: %[[S:[0-9]+]] = constant() {value = 0.25, dtype = f64} : tensor<[], f64>
        CHECK: = kernel(%q, %k, %v, %[[S]]) {kernel = "flash@{{[0-9a-f]+}}", static = "{\\"causal\\": true}", shape = [2, 20, 16], dtype = f32} : tensor<[2, 20, 16], f32>
    """)
    assert print_function(parse_module(text).functions[0]) == text
    low = stages.lower_to(checked, fn, "tile", {"causal": True}, {"BH": 2, "S": 20, "D": 16})
    plan = stages.render(low, "schedule")
    filecheck(plan, """
        CHECK: kernel @k{{[0-9]+}} kernel [kernel] -> tile @attn_k{{[0-9]+}}_kernel {
        CHECK-NEXT:   schedule Schedule(block=(16, 32), k=32, vector=8, warps=4, stages=2)
        CHECK: kernel @k{{[0-9]+}} elementwise [add]
    """)
    tile = stages.render(low, "tile")
    filecheck(tile, """
        CHECK: kernel @attn_k{{[0-9]+}}_kernel(%q: tensor<3d, f32> in, %k: tensor<3d, f32> in, %v: tensor<3d, f32> in, %scale: tensor<0d, f64> in, %out: tensor<3d, f32> out) grid=[BH, (S + 15)//16, (D + 15)//16]
        CHECK: for %j =
        CHECK: dot(
    """)


def test_kernels_launched_over_a_grid_stay_host_only() -> None:
    m = tessera.compile("""
@kernel
def scale(x: KTile["N", f32], y: KTile["N", f32]):
    tile.store(y, tile.load(x) * 2.0)

@jit
def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
    scale(x, x)
    return x
""")
    with pytest.raises(CompilationError, match="launched with an explicit grid"):
        m.f(np.ones(4, np.float32))


def test_a_static_kernel_parameter_needs_a_compile_time_value() -> None:
    with pytest.raises((CompilationError, ProgramCompilationError)):
        m = tessera.compile("""
@kernel
def pick(x: KTile["N", f32], *, n: int) -> KTile["N", f32]:
    T = tile.context()
    return tile.load(x, cols=T.n) * float(n)

@jit
def f(x: Tensor["N", f32]) -> Tensor["N", f32]:
    return pick(x, n=x.shape[0])
""")
        m.f(np.ones(4, np.float32))


def test_a_bundle_runs_jit_functions_that_call_kernels(tmp_path: object) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from tessera.cli import main

    tmp = Path(str(tmp_path))
    prog = tmp / "prog.tsr"
    prog.write_text("""
@kernel
def twice(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) * 2.0

@jit
def f(x: Tensor["N", "M", f32]) -> Tensor["N", "M", f32]:
    return twice(x) + 1.0

def main():
    print(f(ones((2, 3), f32)))
""")
    r = CliRunner().invoke(main, ["build", str(prog), "-o", str(tmp / "b"), "--dim", "N=2", "--dim", "M=3"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", str(tmp / "b")])
    assert r.exit_code == 0, r.output
    assert r.stdout == "[[3. 3. 3.]\n [3. 3. 3.]]\n"
