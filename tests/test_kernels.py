"""`@kernel`s run on the CPU (tessera/ir/kernel_to_tile.py, tessera/runtime/kernels.py): every tile
intrinsic against NumPy on fresh random inputs of ragged sizes, under several schedules; the grid
forms; schedules and autotune; the budget check; debug bounds."""

from __future__ import annotations

import math
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from filecheck_util import filecheck

import tessera
from tessera.diagnostics import CompilationError, TesseraRuntimeError
from tessera.ir.tile.printer import print_kernel

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng()
BF16 = ml_dtypes.bfloat16


def randn(*shape: int, dtype: object = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def close(got: np.ndarray, want: np.ndarray, dtype: object = np.float32) -> None:
    tol = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12, np.dtype(BF16): 2e-2}[np.dtype(dtype)]
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol)


SCHEDULES = ["Schedule(block=(16, 32))", "Schedule(block=(64, 64), k=16)", "Schedule(block=(1, 128), warps=2)"]
RAGGED = [(37, 53), (1, 1), (64, 128), (130, 7)]


def kernel_module(src: str) -> object:
    return tessera.compile(src)


# ---------------------------------------------------------------- loads, stores, grids


@pytest.mark.parametrize("sched", SCHEDULES)
@pytest.mark.parametrize("shape", RAGGED)
def test_functional_kernel_returns_its_block_of_the_result(sched: str, shape: tuple[int, int]) -> None:
    m = kernel_module(f"""
@kernel.schedule({sched})
def affine(x: KTile["N", "M", f32], *, a: float, b: float) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) * a + b
""")
    x = randn(*shape)
    a, b = float(RNG.standard_normal()), float(RNG.standard_normal())
    close(m.affine(x, a=a, b=b), x * np.float32(a) + np.float32(b))


def test_grid_of_a_functional_kernel_and_the_program_coordinates() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(8, 16)))
def coords(x: KTile["B", "N", "M", f32]) -> KTile["B", "N", "M", f32]:
    T = tile.context()
    b = tile.program_id(0)
    i = tile.program_id(1)
    j = tile.program_id(2)
    code = b * 10000 + i * 100 + j + tile.num_programs(2) * 1000000
    return tile.full((T.m, T.n), 0.0, f32) + tile.cast(tile.zeros((1, 1), int64) + code, f32)
""")
    x = randn(3, 20, 33)
    low = m.coords.lowered(x)
    assert low.grid == (3, 3, 3)
    filecheck(print_kernel(low.kernel), """
        CHECK: kernel @kernel_coords(%x: tensor<3d, f32> in, %out: tensor<3d, f32> out) grid=[B, (N + 7)//8, (M + 15)//16]
        CHECK: store(%out, %pid0, %{{.*}}, %{{.*}}, %{{.*}})
    """)
    b, i, j = np.indices(x.shape)
    want = b * 10000 + (i // 8) * 100 + j // 16 + 3 * 1000000
    np.testing.assert_array_equal(m.coords(x), want.astype(np.float32))


def test_explicit_grid_with_block_indices() -> None:
    m = kernel_module("""
base = Schedule(block=(128, 128), k=32, warps=8, stages=3)

@kernel.schedule(base.with_block(16, 64))
def row_scale(x: KTile["N", "M", f32], y: KTile["N", "M", f32], *, alpha: float):
    i = tile.program_id(0)
    xb = tile.load(x, rows=i)
    tile.store(y, xb * alpha, rows=i)
""")
    x = randn(50, 70)
    y = np.zeros_like(x)
    assert m.row_scale[(4,)](x, y, alpha=-1.5) is None
    close(y, -1.5 * x)
    y2 = np.zeros_like(x)
    m.row_scale[2](x, y2, alpha=3.0)  # two programs: rows 0..31 only
    close(y2[:32], 3.0 * x[:32])
    assert not y2[32:].any()


def test_load_forms_start_size_loop_block_whole_axis_and_masks() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(8, 8)))
def forms(x: KTile["N", "M", f32], v: KTile["M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    i = tile.program_id(0)
    whole_row = tile.load(x, rows=T.m)                              # [T.m, M]
    shifted = tile.load(x, rows=T.m, cols=(1, x.shape[1]), other=7.0)  # columns 1..M, pad 7
    keep = tile.col_index((0, x.shape[1])) % 2 == 0
    even = tile.load(x, rows=(i * T.m, T.m), mask=keep, other=-1.0)  # odd columns read -1
    vb = tile.load(v)                                               # [M], broadcast over rows
    total = tile.zeros((T.m,), f32)
    for j in tile.range(0, x.shape[1], 4):
        total = total + tile.sum(tile.load(x, rows=T.m, cols=j), axis=1)
    return whole_row + shifted * 10.0 + even * 100.0 + vb * 1000.0 + total[:, None] * 10000.0
""")
    for shape in ((19, 13), (8, 8), (3, 1)):
        x, v = randn(*shape), randn(shape[1])
        shifted = np.concatenate([x[:, 1:], np.full((shape[0], 1), 7.0, np.float32)], axis=1)
        even = np.where(np.arange(shape[1]) % 2 == 0, x, -1.0)
        want = x + shifted * 10 + even * 100 + v * 1000 + x.sum(1, keepdims=True) * 10000
        np.testing.assert_allclose(m.forms(x, v), want, rtol=1e-5, atol=1e-2)


def test_masked_store_leaves_masked_elements_unchanged() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(16, 16)))
def lower_triangle(x: KTile["N", "M", f32], y: KTile["N", "M", f32]):
    T = tile.context()
    keep = tile.row_index() >= tile.col_index()
    tile.store(y, tile.load(x, rows=T.m, cols=T.n) + 1.0, rows=T.m, cols=T.n, mask=keep)
""")
    x = randn(40, 35)
    y = randn(40, 35)
    before = y.copy()
    m.lower_triangle[(3, 3)](x, y)
    i, j = np.indices(x.shape)
    close(y, np.where(i >= j, x + 1, before))


def test_batched_tensors_and_rank_one_operands() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(4, 8)))
def bias_scale(x: KTile["B", "N", "M", bf16], bias: KTile["M", f32]) -> KTile["B", "N", "M", f32]:
    T = tile.context()
    xb = tile.load(x, rows=T.m, cols=T.n)
    return tile.cast(xb, f32) + tile.load(bias, cols=T.n) * float(T.bh)
""")
    x, bias = randn(2, 9, 11, dtype=BF16), randn(11)
    close(m.bias_scale(x, bias), x.astype(np.float32) + bias * 2.0)


# ---------------------------------------------------------------- compute intrinsics


UNARY = {
    "exp": np.exp, "log": lambda x: np.log(np.abs(x) + 0.5), "log1p": lambda x: np.log1p(np.abs(x)),
    "sqrt": lambda x: np.sqrt(np.abs(x)), "rsqrt": lambda x: 1 / np.sqrt(np.abs(x) + 0.5), "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh, "erf": np.vectorize(math.erf), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)), "abs": np.abs, "neg": np.negative, "relu": lambda x: np.maximum(x, 0),
}
ARG = {"log": "tile.abs(xb) + 0.5", "log1p": "tile.abs(xb)", "sqrt": "tile.abs(xb)", "rsqrt": "tile.abs(xb) + 0.5"}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_intrinsics(name: str) -> None:
    m = kernel_module(f"""
@kernel.schedule(Schedule(block=(8, 32)))
def f(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    xb = tile.load(x, rows=T.m, cols=T.n)
    return tile.{name}({ARG.get(name, "xb")})
""")
    x = randn(13, 45)
    np.testing.assert_allclose(m.f(x), UNARY[name](x), rtol=3e-6, atol=3e-6)


def test_binary_where_cast_transpose_zeros_full() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(16, 16)))
def f(x: KTile["N", "N", f32], y: KTile["N", "N", f32]) -> KTile["N", "N", f32]:
    T = tile.context()
    xb = tile.load(x, rows=T.m, cols=T.n)
    i, j = tile.program_id(0), tile.program_id(1)
    yt = tile.transpose(tile.load(y, rows=(j * T.n, T.n), cols=(i * T.m, T.m)))  # the block of y.T
    mx = tile.maximum(xb, yt) + tile.minimum(xb, 0.5)
    w = tile.where(xb > yt, tile.full((T.m, T.n), 2.0, f32), tile.zeros((T.m, T.n), f32))
    r = tile.cast(tile.cast(xb, bf16), f32) - xb
    return mx + w + r * 1000.0 + exp(yt) - tile.exp(yt)
""")
    x, y = randn(21, 21), randn(21, 21)
    r = x.astype(BF16).astype(np.float32) - x
    want = np.maximum(x, y.T) + np.minimum(x, 0.5) + np.where(x > y.T, 2.0, 0.0) + r * 1000
    np.testing.assert_allclose(m.f(x, y), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["max", "min", "sum", "mean"])
def test_reductions_remove_the_axis(kind: str) -> None:
    other = {"max": "-inf", "min": "inf", "sum": "0.0", "mean": "0.0"}[kind]
    m = kernel_module(f"""
@kernel.schedule(Schedule(block=(4, 64)))
def rows(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    r = tile.{kind}(tile.load(x, rows=T.m, other={other}), axis=1)
    return tile.zeros((T.m, x.shape[1]), f32) + r[:, None]

@kernel.schedule(Schedule(block=(4, 16)))
def cols(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    c = tile.{kind}(tile.load(x, rows=(0, x.shape[0]), cols=T.n, other={other}), axis=0)
    return tile.zeros((T.m, T.n), f32) + c[None, :]
""")
    x = randn(10, 50)
    fn = {"max": np.max, "min": np.min, "sum": np.sum, "mean": np.mean}[kind]
    close(m.rows(x), fn(x, axis=1, keepdims=True) * np.ones_like(x))
    close(m.cols(x), fn(x, axis=0, keepdims=True) * np.ones_like(x))


def test_row_reductions_and_a_row_softmax() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(4, 128)))
def softmax(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    xb = tile.load(x, rows=T.m, other=-inf)
    e = tile.exp(xb - tile.reduce_rowmax(xb)[:, None])
    return e / tile.reduce_rowsum(e)[:, None]
""")
    for shape in ((9, 100), (1, 3), (33, 128)):
        x = randn(*shape)
        e = np.exp(x - x.max(1, keepdims=True))
        close(m.softmax(x), e / e.sum(1, keepdims=True))


@pytest.mark.parametrize("sched", ["Schedule(block=(16, 32), k=8)", "Schedule(block=(64, 64), k=64)",
                                   "Schedule(block=(32, 16), k=16, warps=8, stages=3)"])
@pytest.mark.parametrize("dtype", [np.float32, BF16])
def test_dot_with_a_k_loop(sched: str, dtype: object) -> None:
    dt = "f32" if dtype is np.float32 else "bf16"
    m = kernel_module(f"""
@kernel.schedule({sched})
def matmul(a: KTile["M", "K", {dt}], b: KTile["K", "N", {dt}]) -> KTile["M", "N", f32]:
    T = tile.context()
    acc = tile.zeros((T.m, T.n), f32)
    for kk in tile.range_n(a.shape[1], T.k):
        acc = tile.dot(tile.load(a, rows=T.m, cols=kk), tile.load(b, rows=kk, cols=T.n), acc)
    return acc
""")
    for M, K, N in ((37, 29, 45), (1, 1, 1), (64, 70, 16)):
        a, b = randn(M, K, dtype=dtype), randn(K, N, dtype=dtype)
        want = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(m.matmul(a, b), want, rtol=1e-4, atol=1e-4 * math.sqrt(K))


def test_dot_without_accumulator_and_the_at_operator() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(8, 8)))
def f(a: KTile["M", "K", bf16], b: KTile["K", "N", bf16]) -> KTile["M", "N", f32]:
    T = tile.context()
    x, y = tile.load(a, rows=T.m), tile.load(b, cols=T.n)
    return tile.dot(x, y) - x @ y + tile.dot(x, y)
""")
    a, b = randn(11, 19, dtype=BF16), randn(19, 13, dtype=BF16)
    np.testing.assert_allclose(m.f(a, b), a.astype(np.float32) @ b.astype(np.float32), rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- attention building blocks


def test_index_tiles_and_the_causal_mask() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(8, 8)))
def f(x: KTile["N", "N", f32]) -> KTile["N", "N", f32]:
    T = tile.context()
    s = tile.load(x, rows=T.m, cols=T.n)
    r = tile.cast(tile.row_index(), f32)
    c = tile.cast(tile.col_index(), f32)
    return tile.where(tile.mask_causal(s, tile.row_index(), tile.col_index()) == -inf, 0.0 - r - c * 0.001, s)
""")
    x = randn(20, 20)
    i, j = np.indices(x.shape)
    close(m.f(x), np.where(j > i, -i - j * np.float32(0.001), x))


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        s = np.where(np.arange(n)[:, None] >= np.arange(n)[None, :], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("dtype", [np.float32, BF16])
@pytest.mark.parametrize("causal", [False, True])
def test_the_flash_attention_example_runs(dtype: object, causal: bool) -> None:
    m = tessera.load(ROOT / "examples" / "flash_attention.tsr")
    dt = "bf16" if dtype is BF16 else "f32"
    for bh, s, d in ((2, 77, 32), (1, 5, 16), (3, 128, 8)):
        q, k, v = (randn(bh, s, d, dtype=dtype) for _ in range(3))
        if dt == "f32":  # the example declares bf16: f32 arrays are converted on the way in
            q, k, v = (a.astype(BF16) for a in (q, k, v))
        o = m.flash_attention(q, k, v, causal=causal)
        assert o.dtype == BF16 and o.shape == (bh, s, d)
        np.testing.assert_allclose(o.astype(np.float64), _attention(q, k, v, causal), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("space", ["BM=[16], BN=[32]", "BM=[64], BN=[16], warps=[8]", "BM=[1], BN=[8]"])
def test_online_softmax_under_several_schedules(space: str) -> None:
    src = (ROOT / "examples" / "flash_attention.tsr").read_text()
    src = src.replace("bf16", "f32").replace("space=dict(BM=[64, 128], BN=[64, 128], warps=[4, 8], stages=[2, 3])",
                                                f"space=dict({space})")
    m = tessera.compile(src)
    q, k, v = (randn(2, 45, 16) for _ in range(3))
    for causal in (False, True):
        np.testing.assert_allclose(m.flash_attention(q, k, v, causal=causal), _attention(q, k, v, causal),
                                   atol=2e-5, rtol=2e-5)


# ---------------------------------------------------------------- memory spaces, loops, parameters


def test_explicit_staging_in_shared_memory() -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(16, 16), k=8, swizzle="xor"))
def staged(a: KTile["M", "K", f32], b: KTile["K", "N", f32]) -> KTile["M", "N", f32]:
    T = tile.context()
    acc = tile.zeros((T.m, T.n), f32)
    for kk in tile.range_n(a.shape[1], T.k, prefetch=3):
        bs = tile.alloc_shared((T.k, T.n), f32)
        tile.cp_async(bs, tile.load(b, rows=kk, cols=T.n))
        tile.barrier()
        acc = tile.dot(tile.load(a, rows=T.m, cols=kk), bs, acc)
    return acc
""")
    a, b = randn(30, 21), randn(21, 40)
    low = m.staged.lowered(a, b)
    filecheck(print_kernel(low.kernel), """
        CHECK: for %kk = {{.*}} iter_args(%acc_1 = %acc)
        CHECK: %bs = alloc_shared {shape = [8, 16], dtype = f32, swizzle = "xor"} : block<[8, 16], f32, shared>
        CHECK: %bs_1 = cp_async(%bs, %{{.*}}) : block<[8, 16], f32, shared>
        CHECK-NEXT: barrier()
        CHECK: dot(%{{.*}}, %bs_1, %acc_1)
    """)
    # a's [16, 8] f32 block is staged for the dot 3 deep (prefetch=3); b goes through the explicit block.
    assert low.usage["h100"].shared_bytes == 3 * 16 * 8 * 4 + 8 * 16 * 4
    close(m.staged(a, b), a.astype(np.float64) @ b)


def test_carried_values_static_parameters_helpers_and_unrolled_loops() -> None:
    m = kernel_module("""
def scaled(t, by):
    return t * by

@kernel.schedule(Schedule(block=(8, 4)))
def f(x: KTile["N", "M", f32], *, square: bool, reps: int) -> KTile["N", "M", f32]:
    T = tile.context()
    acc = tile.zeros((T.m, T.n), f32)
    count = tile.program_id(0) * 0
    for j in tile.range_n(3 * T.n, T.n):
        acc = acc + tile.load(x, rows=T.m, cols=T.n)
        count = count + 1
    for r in range(reps):
        acc = scaled(acc, 2.0)
    if square:
        acc = acc * acc
    return acc + tile.cast(tile.zeros((1, 1), int64) + count, f32)
""")
    x = randn(10, 9)
    for square, reps in ((False, 0), (True, 2)):
        want = 3 * x * 2**reps
        want = want * want if square else want
        close(m.f(x, square=square, reps=reps), want + 3)


def test_float_parameters_are_run_time_scalars_and_do_not_recompile() -> None:
    m = kernel_module("""
@kernel
def f(x: KTile["N", f32], *, alpha: float) -> KTile["N", f32]:
    T = tile.context()
    return tile.load(x, cols=T.n) * alpha
""")
    x = randn(100)
    for alpha in (0.5, -2.0, 3.25):
        close(m.f(x, alpha=alpha), x * np.float32(alpha))
    assert len(m.f._cache) == 1
    m.f(randn(7), alpha=1.0)
    assert len(m.f._cache) == 2  # a new extent is a new specialisation


def test_host_code_calls_kernels_and_tessera_run_runs_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tessera.cli import main

    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "flash_attention.tsr")])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("flash attention"))
    err = float(line.split("softmax(q k^T) v:")[1].split()[0])
    assert 0.0 <= err < 0.05 and line.endswith(" ok"), line
    assert "row_scale 0.0" in r.stdout


# ---------------------------------------------------------------- schedules


def test_schedule_inheritance_and_autotune_first_configuration() -> None:
    m = kernel_module("""
base = Schedule(block=(128, 128), k=32, warps=8, stages=3, swizzle="xor")
small = base.with_block(32, 16).with_warps(2)

@kernel.schedule(small.with_k(8))
def a(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) + float(T.k + T.warps + T.stages)

@kernel.schedule(small)
@kernel.autotune(space=dict(BN=[64, 8], stages=[4, 1], vector=[16]), metric="latency_ms")
def b(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n)

@kernel
def c(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n)
""")
    x = randn(40, 70)
    close(m.a(x), x + 13.0)
    assert str(m.a.schedule.schedule) == 'Schedule(block=(32, 16), k=8, vector=8, warps=2, stages=3, swizzle="xor")'
    sb = m.b.schedule
    assert str(sb.schedule) == 'Schedule(block=(32, 64), k=32, vector=16, warps=2, stages=4, swizzle="xor")'
    assert sb.configurations == 4 and "the first (BN=64, stages=4, vector=16) is used" in (sb.note or "")
    close(m.b(x), x)
    assert m.b.lowered(x).grid == (2, 2)
    assert str(m.c.schedule.schedule) == "Schedule(block=(64, 64), k=32, vector=8, warps=4, stages=2)"


def test_tessera_lower_prints_a_kernel_and_says_which_autotune_configuration_it_uses(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tessera.cli import main

    prog = tmp_path / "k.tsr"
    prog.write_text("""
@kernel.autotune(space=dict(BM=[32, 64], BN=[64, 128], warps=[4, 8]), metric="latency_ms")
def scale(x: KTile["N", "M", f32], *, alpha: float = 2.0) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) * alpha
""")
    r = CliRunner().invoke(main, ["lower", str(prog), "--stage", "tile", "--fn", "scale", "--dim", "N=100",
                                  "--dim", "M=200"])
    assert r.exit_code == 0, r.output
    filecheck(r.stdout, """
        CHECK: // autotune: the space has 8 configurations; the tuner is not implemented yet, so the first (BM=32, BN=64, warps=4) is used
        CHECK-NEXT: kernel @kernel_scale(%x: tensor<2d, f32> in, %alpha: tensor<0d, f64> in, %out: tensor<2d, f32> out) grid=[(N + 31)//32, (M + 63)//64] schedule=Schedule(block=(32, 64), k=32, vector=8, warps=4, stages=2)
        CHECK: %x_blk = load(%x, %{{.*}}, %{{.*}}) {shape = [32, 64], other = 0.0} : block<[32, 64], f32>
        CHECK: store(%out,
    """)
    r = CliRunner().invoke(main, ["lower", str(prog), "--stage", "llvm", "--fn", "scale", "--dim", "N=10",
                                  "--dim", "M=20"])
    assert r.exit_code == 0 and "; autotune:" in r.stdout and "define" in r.stdout, r.output
    r = CliRunner().invoke(main, ["lower", str(prog), "--stage", "graph", "--fn", "scale"])
    assert r.exit_code == 2 and "has no graph stage" in r.output


# ---------------------------------------------------------------- budgets and compile-time errors


def _compile_error(src: str, *args: object, **kwargs: object) -> str:
    m = kernel_module(src)
    fn = next(getattr(m, n) for n in ("k",))
    with pytest.raises(CompilationError) as ex:
        fn(*args, **kwargs)
    d = ex.value.diagnostics[0]
    return f"{d.code} {d.span.line}:{d.span.col} {d.message}"


MATMUL = """
@kernel.schedule(Schedule({sched}))
def k(a: KTile["M", "K", f32], b: KTile["K", "N", f32]) -> KTile["M", "N", f32]:
    T = tile.context()
    acc = tile.zeros((T.m, T.n), f32)
    for kk in tile.range_n(a.shape[1], T.k):
        acc = tile.dot(tile.load(a, rows=T.m, cols=kk), tile.load(b, rows=kk, cols=T.n), acc)
    return acc
"""


def test_a_schedule_over_the_shared_memory_budget_is_a_compile_time_error() -> None:
    msg = _compile_error(MATMUL.format(sched="block=(256, 256), k=128, stages=4"), randn(8, 8), randn(8, 8))
    assert msg == ("E-SCHEDULE 2:2 the schedule Schedule(block=(256, 256), k=128, vector=8, warps=4, stages=4) of 'k' "
                   "does not fit the H100: shared memory per block needs 1048576 bytes (1024.0 KiB), the budget is "
                   "232448 bytes (227.0 KiB)")


def test_threads_and_registers_budgets() -> None:
    msg = _compile_error(MATMUL.format(sched="block=(16, 16), k=16, warps=64"), randn(8, 8), randn(8, 8))
    assert "does not fit the H100: threads per block needs 2048 threads, the budget is 1024 threads" in msg
    msg = _compile_error(MATMUL.format(sched="block=(512, 256), k=8, warps=4, stages=1"), randn(8, 8), randn(8, 8))
    assert "does not fit the H100: registers per thread needs" in msg and "the budget is 255 registers" in msg


def test_the_gpu_budget_can_be_changed_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    src = MATMUL.format(sched="block=(128, 128), k=64, stages=4, warps=8")  # 256 KiB of staged operands
    monkeypatch.setenv("TESSERA_GPU_BUDGET", "a100")
    assert "does not fit the A100: shared memory per block" in _compile_error(src, randn(8, 8), randn(8, 8))
    monkeypatch.setenv("TESSERA_GPU_BUDGET", "none")
    a, b = randn(20, 30), randn(30, 10)
    close(kernel_module(src).k(a, b), a.astype(np.float64) @ b)


def test_cpu_local_memory_budget() -> None:
    src = """
@kernel.schedule(Schedule(block=(1024, 1024), warps=32))
def k(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) + 1.0
"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_GPU_BUDGET", "none")
        assert "does not fit the CPU: local memory per program needs 8388608 bytes" in \
            _compile_error(src, randn(4, 4))


def test_lowering_errors() -> None:
    assert "E-TYPE" in _compile_error("""
@kernel
def k(x: KTile["N", f32], y: KTile["N", f32]):
    tile.store(y, tile.load(x))
""", randn(4), randn(4))  # no result and no grid
    assert "an if on a run-time value in a @kernel" in _compile_error("""
@kernel
def k(x: KTile["N", f32]) -> KTile["N", f32]:
    i = tile.program_id(0)
    if i > 0:
        pass
    return tile.load(x, cols=(0, 4))
""", randn(4))
    assert "T.n is not defined: the schedule Schedule(block=(8), k=32" in _compile_error("""
@kernel.schedule(Schedule(block=8))
def k(x: KTile["N", f32]) -> KTile["N", f32]:
    T = tile.context()
    return tile.load(x, cols=T.n)
""", randn(4))
    assert "E-SCHEDULE 2:2 Schedule(block=(8, 8), k=32, vector=8, warps=3" in _compile_error("""
@kernel.schedule(Schedule(block=(8, 8), warps=3))
def k(x: KTile["N", f32]) -> KTile["N", f32]:
    return tile.load(x, cols=(0, 4))
""", randn(4))
    m = kernel_module("""
@kernel
def k(x: KTile["N", f32], y: KTile["N", f32]):
    tile.store(y, tile.load(x))
""")
    y64 = np.zeros(4)
    with pytest.raises(TesseraRuntimeError, match="writes its parameter 'y' in place, so the array passed must already"):
        m.k[1](randn(4), y64)


# ---------------------------------------------------------------- debug bounds


@pytest.fixture()
def debug_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_DEBUG_BOUNDS", "1")


ROW_SCALE = """
@kernel.schedule(Schedule(block=(64, 64)))
def row_scale(x: KTile["N", "M", f32], y: KTile["N", "M", f32], *, alpha: float):
    i = tile.program_id(0)
    xb = tile.load(x, rows=i)
    tile.store(y, xb * alpha, rows=i)
"""


def test_debug_bounds_names_the_kernel_the_tensor_and_the_index(debug_bounds: None) -> None:
    m = kernel_module(ROW_SCALE)
    x = randn(100, 70)
    y = np.zeros_like(x)
    m.row_scale[(2,)](x, y, alpha=2.0)  # the ragged second block is edge padding, not an error
    close(y, 2 * x)
    with pytest.raises(TesseraRuntimeError) as ex:
        m.row_scale[(3,)](x, y, alpha=2.0)
    d = ex.value.diagnostic
    assert d.code == "E-BOUNDS"
    assert d.message == ("kernel 'row_scale': tile.load of 'x' is out of bounds at index [128, 0] ('x' has shape "
                         "(100, 70)), in program (2,)")
    assert (d.span.line, d.span.col) == (5, 10)


def test_debug_bounds_on_masked_and_explicit_accesses(debug_bounds: None) -> None:
    m = kernel_module("""
@kernel.schedule(Schedule(block=(8, 8)))
def shift(x: KTile["N", "M", f32], *, by: int) -> KTile["N", "M", f32]:
    T = tile.context()
    j = tile.program_id(1)
    cols = tile.col_index() + by
    ok = cols < x.shape[1]
    return tile.load(x, rows=T.m, cols=(j * T.n + by, T.n), mask=ok)

@kernel.schedule(Schedule(block=(8, 8)))
def bad_store(x: KTile["N", "M", f32], y: KTile["N", "M", f32]):
    T = tile.context()
    tile.store(y, tile.load(x, rows=T.m, cols=T.n), rows=T.m, cols=(-2, T.n))
""")
    x = randn(10, 20)
    want = np.concatenate([x[:, 3:], np.zeros((10, 3), np.float32)], axis=1)
    close(m.shift(x, by=3), want)  # the masked-off columns past the end are no error
    with pytest.raises(TesseraRuntimeError) as ex:
        m.shift(x, by=-3)  # columns -3..-1 are read with a true mask
    assert ex.value.diagnostic.message.startswith("kernel 'shift': tile.load of 'x' is out of bounds at index [0, -3]")
    with pytest.raises(TesseraRuntimeError) as ex:
        m.bad_store[(2, 1)](x, np.zeros_like(x))
    assert "tile.store of 'y' is out of bounds at index [0, -2]" in ex.value.diagnostic.message


SHIFTED = """
@kernel.schedule(Schedule(block=(8, 8)))
def shifted(x: KTile["N", "M", f32], *, by: int) -> KTile["N", "M", f32]:
    T = tile.context()
    j = tile.program_id(1)
    return tile.load(x, rows=T.m, cols=(j * T.n + by, T.n))

@jit
def uses_shifted(x: Tensor["N", "M", f32]) -> Tensor["N", "M", f32]:
    return shifted(x, by=-3) * 2.0
"""


def test_debug_bounds_covers_kernels_called_from_jit_code(debug_bounds: None) -> None:
    m = kernel_module(SHIFTED)
    with pytest.raises(TesseraRuntimeError) as ex:
        m.uses_shifted(randn(10, 20))
    d = ex.value.diagnostic
    assert d.code == "E-BOUNDS"
    assert d.message.startswith("kernel ") and "tile.load of 'x' is out of bounds at index [0, -3]" in d.message
    assert (d.span.line, d.span.col) == (6, 12)  # the load in the kernel
    assert [lb.span.line for lb in d.labels] == [10]  # the call in the @jit function


def test_kernels_called_from_jit_code_run_unchecked_without_debug_bounds() -> None:
    m = kernel_module(SHIFTED)
    x = randn(10, 20)
    want = 2.0 * np.concatenate([np.zeros((10, 3), np.float32), x[:, :-3]], axis=1)
    close(m.uses_shifted(x), want)  # the out-of-bounds columns read as 0


def test_without_debug_bounds_out_of_bounds_accesses_are_dropped() -> None:
    m = kernel_module(ROW_SCALE)
    x = randn(100, 70)
    y = np.zeros_like(x)
    m.row_scale[(5,)](x, y, alpha=2.0)
    close(y, 2 * x)
