"""The memory-bound GPU paths: the GPU schedules of elementwise and row-reduction calls
(tessera/ir/schedule/gpu_heuristics.py), whole-block global accesses and early loads
(tessera/ir/gpu_memory.py) and the bf16 rounding instruction of the PTX emitter
(tessera/codegen/ptx_bf16.py).

Numerics run the retargeted plans through the lockstep SIMT interpreter (tests/gpu_interpreter.py,
races detected) on fresh random inputs with poisoned outputs, against float64 NumPy, at extents where
the blocks lie inside the tensors (the block path) and ragged ones (the per-slot path for the last
block). FileCheck patterns pin the PTX the speed relies on: the vector loads of a block issued back to
back, `cvt.rn.bf16.f32` for bf16 rounding, registers that leave half an SM's threads resident.
Division by a row-uniform divisor (tessera/ir/gpu_row_divide.py): the multiply-and-two-FMAs sequence
against IEEE division, exhaustively over the dividend significands for hard divisors and on random
pairs over the guarded exponent ranges, and the lowered kernels bit for bit against the same kernels
with IEEE division per element, on rows that take the fast path and rows that take the guard's.
Packed 16-bit joins: the same bits as unpacked ones; the norms' register cap (`.minnctapersm`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from filecheck_util import filecheck
from gpu_cases import jit_graph, run_interpreted
from gpu_checks import PTXAS, needs_ptxas

from tessera.codegen import ptx_bf16
from tessera.codegen.ptx import cuda_target_info
from tessera.dtypes import BF16
from tessera.ir import gpu_memory, gpu_row_divide
from tessera.ir.gpu_layout import natural
from tessera.ir.graph.passes.pipeline import optimize
from tessera.ir.graph_to_schedule import partition
from tessera.ir.schedule.gpu_heuristics import gpu_schedule, retarget, row_inputs
from tessera.ir.schedule.ops import KernelCall
from tessera.ir.schedule_to_tile import lower_plan
from tessera.ir.target.builder import Builder
from tessera.ir.target.convert import encode
from tessera.ir.target.ops import F32 as T_F32
from tessera.ir.target.ops import Value, vec
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime.cuda import emit_kernels_ptx

INFO = cuda_target_info("sm_90a")
BF = np.dtype(ml_dtypes.bfloat16)

# The memory-bound rows of bench/gpu.py (bf16) and two f32 forms: name -> (parameters, result, body).
T2 = 'Tensor["N", "M", {}]'
ROWS = {
    "softmax_bf16": ("x: " + T2.format("bf16"), T2.format("bf16"), "softmax(x, axis=-1)"),
    "layernorm_bf16": ("x: " + T2.format("bf16") + ', w: Tensor["M", bf16], b: Tensor["M", bf16]', T2.format("bf16"),
                       "layernorm(x, w, b, 1e-5)"),
    "rmsnorm_f32": ("x: " + T2.format("f32") + ', w: Tensor["M", f32]', T2.format("f32"), "rmsnorm(x, w, 1e-6)"),
    "layernorm_f32": ("x: " + T2.format("f32") + ', w: Tensor["M", f32], b: Tensor["M", f32]', T2.format("f32"),
                      "layernorm(x, w, b, 1e-5)"),
    "softmax_f32": ("x: " + T2.format("f32"), T2.format("f32"), "softmax(x, axis=-1)"),
    "add_bf16": ("x: " + T2.format("bf16") + ", y: " + T2.format("bf16"), T2.format("bf16"), "x + y"),
    "scale_f32": ("x: " + T2.format("f32"), T2.format("f32"), "x * 2.0 + 1.0"),
}
SRC = "".join(f"@jit\ndef {name}({params}) -> {result}:\n    return {body}\n\n"
              for name, (params, result, body) in ROWS.items())


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gpu_memory") / "rows.tsr"
    p.write_text(SRC)
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def gpu_plan(src: Path, fn_name: str, dims: dict[str, int], **params: int) -> tuple[object, list, list[KernelCall]]:
    g = optimize(jit_graph(src, fn_name, dims))  # type: ignore[arg-type]
    plan = retarget(partition(g), **params)
    kernels = lower_plan(plan)
    return plan, kernels, [s for s in plan.steps if isinstance(s, KernelCall)]


def rel(got: np.ndarray, ref: np.ndarray) -> float:
    g = got.astype(np.float64)
    assert not np.isnan(g).any(), "unwritten (NaN) elements"
    return float(np.linalg.norm(g - ref) / np.linalg.norm(ref))


# ---------------------------------------------------------------- schedules


def test_gpu_schedules_of_memory_bound_calls(src: Path) -> None:
    # bf16 add over 8192 x 8192 (collapsed to one axis): 128 threads x 2 vectors of 8 elements.
    *_, (call,) = gpu_plan(src, "add_bf16", {"N": 8192, "M": 8192})
    assert (call.schedule.block, call.schedule.warps) == ((1, 2048), 4)
    # f32: 4 elements a vector.
    *_, (call,) = gpu_plan(src, "scale_f32", {"N": 64, "M": 4096})
    assert (call.schedule.block, call.schedule.warps) == ((1, 1024), 4)
    # One 8192-wide bf16 row per program, 32 elements a thread: 8 warps; with weights (w, b read
    # whole with the row) 4 rows a program, the weights staged in shared memory, 8 warps too; with
    # weights in registers (a small grid) 16 elements a thread: 16 warps.
    *_, (call,) = gpu_plan(src, "softmax_bf16", {"N": 8192, "M": 8192})
    assert (call.schedule.block, call.schedule.warps) == ((1, 8192), 8)
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 8192, "M": 8192})
    assert (call.schedule.block, call.schedule.warps, row_inputs(call)) == ((1, 8192), 8, 3)
    assert call.schedule.blocks_per_program == 4
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 64, "M": 8192})
    assert (call.schedule.block, call.schedule.warps, call.schedule.blocks_per_program) == ((1, 8192), 16, 1)
    # 1024-wide rows: one warp a softmax row, 4 rows a program; two warps a layernorm row, 2 rows.
    *_, (call,) = gpu_plan(src, "softmax_bf16", {"N": 100, "M": 1024})
    assert (call.schedule.block, call.schedule.warps) == ((4, 1024), 4)
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 100, "M": 1024})
    assert (call.schedule.block, call.schedule.warps) == ((2, 1024), 4)
    # Every layout of these blocks is exact: each slot of each thread is part of the block.
    for block, warps in (((1, 8192), 8), ((1, 8192), 16), ((4, 1024), 4), ((2, 1024), 4), ((1, 2048), 4)):
        lay = natural(block, 8, 32 * warps)
        assert lay.rows_exact and lay.chunks_exact, lay
    # Rows narrower than a warp's vectors, rows too long for one pass: the CPU schedule stays.
    for fn, dims in (("softmax_bf16", {"N": 64, "M": 96}), ("softmax_bf16", {"N": 4, "M": 20000}),
                     ("add_bf16", {"N": 5, "M": 7})):
        plan = partition(optimize(jit_graph(src, fn, dims)))  # type: ignore[arg-type]
        for call in (s for s in plan.steps if isinstance(s, KernelCall)):
            assert gpu_schedule(call) is None


def test_cpu_plans_keep_their_schedules(src: Path) -> None:
    g = optimize(jit_graph(src, "softmax_bf16", {"N": 8192, "M": 8192}))  # type: ignore[arg-type]
    before = [s.schedule for s in partition(g).steps if isinstance(s, KernelCall)]
    after = [s.schedule for s in partition(g).steps if isinstance(s, KernelCall)]
    assert before == after  # partition alone (the CPU path) never calls the GPU heuristics


# ---------------------------------------------------------------- numerics through the interpreter


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("rows", [8, 3])  # 3: a ragged last block of rows
def test_softmax_and_layernorm_under_gpu_schedules(src: Path, rng: np.random.Generator, rows: int) -> None:
    m = 1024
    plan, kernels, (call,) = gpu_plan(src, "softmax_bf16", {"N": rows, "M": m})
    assert call.schedule.block == (4, 1024)
    x = (rng.standard_normal((rows, m)) * 3).astype(BF)
    (y,) = run_interpreted(plan, kernels, [x])
    assert rel(y, _softmax(x.astype(np.float64))) < 1e-2
    plan, kernels, _ = gpu_plan(src, "layernorm_bf16", {"N": rows, "M": m})
    w, b = rng.standard_normal(m).astype(BF), rng.standard_normal(m).astype(BF)
    (y,) = run_interpreted(plan, kernels, [x, w, b])
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(-1, keepdims=True)
    want = d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * w.astype(np.float64) + b.astype(np.float64)
    assert rel(y, want) < 1e-2


def test_rmsnorm_f32_with_several_warps_a_row(src: Path, rng: np.random.Generator) -> None:
    # 2048 f32 a row at 16 elements a thread: 4 warps share a row (shared-memory exchange).
    plan, kernels, (call,) = gpu_plan(src, "rmsnorm_f32", {"N": 2, "M": 2048})
    assert (call.schedule.block, call.schedule.warps) == ((1, 2048), 4)
    x, w = rng.standard_normal((2, 2048)).astype(np.float32), rng.standard_normal(2048).astype(np.float32)
    (y,) = run_interpreted(plan, kernels, [x, w])
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-6) * w
    assert rel(y, want) < 1e-6


@pytest.mark.parametrize("m", [2048, 2048 + 24])  # + 24: the last block is ragged (the per-slot path)
def test_add_under_gpu_schedules(src: Path, rng: np.random.Generator, m: int) -> None:
    plan, kernels, (call,) = gpu_plan(src, "add_bf16", {"N": 2, "M": m})
    assert call.schedule.block == (1, 2048)
    x, y = rng.standard_normal((2, m)).astype(BF), rng.standard_normal((2, m)).astype(BF)
    (z,) = run_interpreted(plan, kernels, [x, y])
    want = (x.astype(np.float64) + y.astype(np.float64)).astype(BF)  # one rounding: exact
    np.testing.assert_array_equal(z.view(np.uint16), want.view(np.uint16))
    gpu_memory.BLOCK_ACCESS = False  # the per-slot path everywhere: the same bits
    try:
        (z2,) = run_interpreted(plan, kernels, [x, y])
    finally:
        gpu_memory.BLOCK_ACCESS = True
    np.testing.assert_array_equal(z2.view(np.uint16), want.view(np.uint16))


# ---------------------------------------------------------------- the PTX


def big_ptx(src: Path, fn_name: str) -> str:
    _, kernels, _ = gpu_plan(src, fn_name, {"N": 8192, "M": 8192})
    return emit_kernels_ptx(kernels, "sm_90a")


def test_a_row_is_loaded_with_its_vector_loads_back_to_back(src: Path) -> None:
    # One test of the whole block, then the four 16-byte loads of a thread's slots with nothing but
    # their addresses between them (no unpacking, no branch), the same for the stores.
    filecheck(big_ptx(src, "softmax_bf16"), """
        CHECK: .reqntid 256, 1, 1
        CHECK: bra $L_if0_else;
        CHECK: ld.global.v4.b32
        CHECK-NOT: {{cvt|shl|bra|shfl}}
        CHECK: ld.global.v4.b32
        CHECK-NOT: {{cvt|shl|bra|shfl}}
        CHECK: ld.global.v4.b32
        CHECK-NOT: {{cvt|shl|bra|shfl}}
        CHECK: ld.global.v4.b32
        CHECK: $L_if0_else:
        CHECK: shfl.sync.bfly.b32
        CHECK: st.global.v4.b32
        CHECK-NOT: {{bra|st.global.b16}}
        CHECK: st.global.v4.b32
        CHECK-NOT: {{bra|st.global.b16}}
        CHECK: st.global.v4.b32
        CHECK-NOT: {{bra|st.global.b16}}
        CHECK: st.global.v4.b32
    """)


def test_bf16_rounding_is_one_instruction(src: Path) -> None:
    ptx = big_ptx(src, "add_bf16")
    filecheck(ptx, """
        CHECK: ld.global.v4.b32
        CHECK: add.rn.f32
        CHECK: cvt.rn.bf16.f32 %rs{{[0-9]+}}, %f{{[0-9]+}};
        CHECK: st.global.v4.b32
    """)
    saved = ptx_bf16.ENABLED
    ptx_bf16.ENABLED = False
    try:
        assert "cvt.rn.bf16.f32" not in big_ptx(src, "add_bf16")
    finally:
        ptx_bf16.ENABLED = saved


def test_the_peephole_matches_round_to_nearest_even_only() -> None:
    # convert._bf16_encode's round-to-nearest-even form is matched (back to its f32 input); the
    # truncating form is not (it has no single PTX instruction).
    for rounding, matched in (("nearest_even", True), ("toward_zero", False)):
        b = Builder()
        x = Value(vec(T_F32, 4), "x")
        with b.function("f", [x]) as fn:
            out = encode(b, x, BF16, rounding)
        defs = ptx_bf16.definitions(fn)
        assert (ptx_bf16.match(defs[out.uid], defs) is x) == matched, rounding




@needs_ptxas
def test_memory_bound_kernels_assemble_without_spills(src: Path, tmp_path: Path) -> None:
    for fn in ("softmax_bf16", "layernorm_bf16", "rmsnorm_f32", "add_bf16"):
        p = tmp_path / f"{fn}.ptx"
        ptx = big_ptx(src, fn)
        p.write_text(ptx)
        r = subprocess.run([PTXAS, "-arch=sm_90a", "-v", str(p), "-o", str(tmp_path / f"{fn}.cubin")],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        regs = int(r.stderr.split("Used ")[1].split(" registers")[0])
        threads = int(ptx.split(".reqntid ")[1].split(",")[0])
        spilled = int(r.stderr.split(" bytes spill stores")[0].split()[-1])
        if ".minnctapersm" in ptx:
            # A norm's kernel asks for 1024 resident threads (4 rows a program, its weights in shared
            # memory: ROW_RESIDENT_THREADS_STAGED): ptxas fits its registers to that without spilling.
            want = int(ptx.split(".minnctapersm ")[1].split()[0])
            assert want * threads == 1024 and 65536 // (regs * threads) >= want, f"{fn}: {regs} x {threads}"
            assert spilled == 0, r.stderr
        else:
            assert spilled == 0 and "0 bytes stack frame" in r.stderr, r.stderr
            # At least half the SM's 2048 threads resident (65536 registers an SM).
            assert 65536 // (regs * threads) * threads >= 1024, f"{fn}: {regs} registers x {threads} threads"


# ---------------------------------------------------------------- division by a row-uniform divisor


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """f32 fused multiply-add, rounded once: the product is exact in f64 (48 bits); the f64 sum's
    rounding error (TwoSum) breaks the one case where rounding f64 to f32 would round twice, a sum
    that lands exactly on an f32 midpoint."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    s = p + c64
    t = s - p
    err = (p - (s - t)) + (c64 - t)
    midpoint = (s.view(np.uint64) & np.uint64((1 << 29) - 1)) == np.uint64(1 << 28)
    s = np.where(midpoint & (err != 0), np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def markstein(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """gpu_row_divide's sequence: y = RN(1/d), q = RN(x y), r = fma(-d, q, x), fma(r, y, q)."""
    y = (np.float32(1) / d).astype(np.float32)
    q = (x * y).astype(np.float32)
    return fma32(fma32(-d, q, x), y, q)


def test_fma_emulation_rounds_once() -> None:
    # a * b = 2^-24 (1 + 2^-36) exactly, so 1 + a * b lies just above the midpoint between 1 and
    # 1 + 2^-23: rounded once it goes up; rounded to f64 first it lands on the midpoint, then on 1.
    a = np.array([(1 + 2.0 ** -12) * 2.0 ** -24], np.float32)
    b = np.array([1 - 2.0 ** -12 + 2.0 ** -24], np.float32)
    one = np.array([1.0], np.float32)
    assert (a.astype(np.float64) * b + 1).astype(np.float32)[0] == 1.0
    assert fma32(a, b, one)[0] == np.float32(1 + 2.0 ** -23)


def test_row_divide_is_correctly_rounded_for_every_dividend_significand() -> None:
    # All 2^23 significands of x in [1, 2) against divisors with all-ones, one-ulp and random
    # significands: the sequence equals IEEE division everywhere, where x * RN(1/d) alone does not.
    xs = np.arange(0x3F800000, 0x40000000, dtype=np.uint32).view(np.float32)
    rng = np.random.default_rng()
    divisors = [0x3FFFFFFF, 0x3FFFFFFE, 0x3F800001, 0x3FAAAAAB, *rng.integers(0x3F800000, 0x40000000, 2)]
    naive_wrong = 0
    for bits in divisors:
        d = np.full_like(xs, np.array([bits], np.uint32).view(np.float32)[0])
        want = xs / d
        np.testing.assert_array_equal(markstein(xs, d), want, err_msg=f"divisor bits {bits:#x}")
        naive_wrong += int((xs * (np.float32(1) / d) != want).sum())
    assert naive_wrong > 0


def test_row_divide_over_the_guarded_exponent_ranges() -> None:
    # Random significands, exponents across the ranges the guard admits (their edges included).
    rng = np.random.default_rng()
    n = 1 << 21
    ed, ex = gpu_row_divide.DIVISOR_EXP, gpu_row_divide.DIVIDEND_EXP
    assert 2 * ed + ex + 47 <= 149  # the remainder's grid stays at or above 2^-149

    def floats(lo: int, hi: int) -> np.ndarray:
        sig = rng.integers(0x3F800000, 0x40000000, n, dtype=np.uint32).view(np.float32)
        e = rng.integers(lo, hi, n)
        e[: n // 8] = lo
        e[n // 8: n // 4] = hi - 1
        sign = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float32)
        return (sig * np.ldexp(np.float32(1), e).astype(np.float32) * sign).astype(np.float32)

    x, d = floats(-ex, ex), floats(-ed, ed)
    np.testing.assert_array_equal(markstein(x, d), x / d)


def _rows_both_ways(src: Path, fn: str, dims: dict[str, int], xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    plan, kernels, _ = gpu_plan(src, fn, dims)
    (fast,) = run_interpreted(plan, kernels, xs)
    gpu_row_divide.ENABLED = False
    try:
        plan, kernels, _ = gpu_plan(src, fn, dims)
        (ieee,) = run_interpreted(plan, kernels, xs)
    finally:
        gpu_row_divide.ENABLED = True
    return fast, ieee


@pytest.mark.parametrize("m", [1024, 1000])  # 1000: ragged rows (the per-slot path)
def test_softmax_rows_divide_like_ieee(src: Path, rng: np.random.Generator, m: int) -> None:
    x = (rng.standard_normal((9, m)) * 4).astype(np.float32)
    x[1] *= 1e4  # exponentials that underflow to zero: the guard's IEEE path
    x[2, 5] = np.nan
    x[3, :7] = -np.inf
    x[4] += 3e4  # a large mean
    fast, ieee = _rows_both_ways(src, "softmax_f32", {"N": 9, "M": m}, [x])
    np.testing.assert_array_equal(fast.view(np.uint32), ieee.view(np.uint32))
    ok = [0, 1, 3, 4, 5, 6, 7, 8]
    assert rel(fast[ok], _softmax(x[ok].astype(np.float64))) < 1e-6
    assert np.isnan(fast[2]).all()
    xb = (rng.standard_normal((5, m)) * 3).astype(BF)
    fast, ieee = _rows_both_ways(src, "softmax_bf16", {"N": 5, "M": m}, [xb])
    np.testing.assert_array_equal(fast.view(np.uint16), ieee.view(np.uint16))
    assert rel(fast, _softmax(xb.astype(np.float64))) < 1e-2


@pytest.mark.parametrize("m", [2048, 2040])
def test_norm_rows_divide_like_ieee(src: Path, rng: np.random.Generator, m: int) -> None:
    x = rng.standard_normal((6, m)).astype(np.float32)
    x[1] += 1e3  # a large mean
    x[2] *= 1e-30  # tiny values: |x| below the guard's range, the IEEE path
    x[3] *= 1e15  # (1e25 would overflow the f32 variance)
    w, b = rng.standard_normal(m).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    fast, ieee = _rows_both_ways(src, "layernorm_f32", {"N": 6, "M": m}, [x, w, b])
    np.testing.assert_array_equal(fast.view(np.uint32), ieee.view(np.uint32))
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(-1, keepdims=True)
    want = d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * w + b
    assert rel(fast, want) < 1e-4  # row 1: the f32 mean of values near 1e3
    fast, ieee = _rows_both_ways(src, "rmsnorm_f32", {"N": 6, "M": m}, [x, w])
    np.testing.assert_array_equal(fast.view(np.uint32), ieee.view(np.uint32))
    xb, wb, bb = x.astype(BF), w.astype(BF), b.astype(BF)
    fast, ieee = _rows_both_ways(src, "layernorm_bf16", {"N": 6, "M": m}, [xb, wb, bb])
    np.testing.assert_array_equal(fast.view(np.uint16), ieee.view(np.uint16))


def test_row_divide_ptx(src: Path) -> None:
    # One IEEE reciprocal per row, the guard's compares on |x|, then per element a multiply and two
    # FMAs; the IEEE divisions only on the other branch.
    filecheck(big_ptx(src, "softmax_bf16"), r"""
        CHECK: div.rn.f32 [[Y:%f[0-9]+]], {{%f[0-9]+}}, [[D:%f[0-9]+]];
        CHECK: abs.f32 [[A:%f[0-9]+]], [[X:%f[0-9]+]];
        CHECK: setp.ge.f32 {{%p[0-9]+}}, [[A]],
        CHECK: @!{{%p[0-9]+}} bra [[SLOW:\$L_if[0-9]+_else]];
        CHECK: neg.f32 [[ND:%f[0-9]+]], [[D]];
        CHECK: mul.rn.f32 [[Q:%f[0-9]+]], [[X]], [[Y]];
        CHECK: fma.rn.f32 [[R:%f[0-9]+]], [[ND]], [[Q]], [[X]];
        CHECK: fma.rn.f32 {{%f[0-9]+}}, [[R]], [[Y]], [[Q]];
        CHECK-NOT: div.rn.f32
        CHECK: [[SLOW]]:
        CHECK: div.rn.f32 {{%f[0-9]+}}, [[X]], [[D]];
    """)


# ---------------------------------------------------------------- 16-bit lanes packed at the join


@pytest.mark.parametrize("m", [2048, 2040])  # 2040: ragged (the per-slot branch packs its gathers)
def test_packed_join_keeps_the_bits(src: Path, rng: np.random.Generator, m: int) -> None:
    x = (rng.standard_normal((3, m)) * 3).astype(BF)
    w, b = rng.standard_normal(m).astype(BF), rng.standard_normal(m).astype(BF)
    outs = []
    for packed in (True, False):
        gpu_memory.PACKED_JOIN = packed
        try:
            plan, kernels, _ = gpu_plan(src, "layernorm_bf16", {"N": 3, "M": m})
            outs.append(run_interpreted(plan, kernels, [x, w, b])[0])
        finally:
            gpu_memory.PACKED_JOIN = True
    np.testing.assert_array_equal(outs[0].view(np.uint16), outs[1].view(np.uint16))


def test_packed_join_yields_words(src: Path) -> None:
    # The whole-block branch of a bf16 load meets the per-slot one with 32-bit words (4 a slot of
    # 8 lanes), taken apart after the join.
    from tessera.ir.target.printer import print_function

    _, kernels, _ = gpu_plan(src, "add_bf16", {"N": 2, "M": 2048})
    text = print_function(lower_kernel(kernels[0], INFO))
    filecheck(text, """
        CHECK: = if {{%[0-9]+}} -> (i32, i32, i32, i32, i32, i32, i32, i32)
        CHECK: load {{.*}} : <8 x i16>
        CHECK: extract
        CHECK: shl
        CHECK: } else {
        CHECK: gather
        CHECK: }
        CHECK: lshr
        CHECK: insert
    """)


def test_norm_rows_cap_their_registers(src: Path) -> None:
    # A bf16 norm row walks 4 rows a program (its weights staged in shared memory) with 32 elements a
    # thread (256 threads) and asks for 1024 resident threads: .minnctapersm 4. A grid too small for
    # that keeps one row a program, 16 elements a thread (512 threads) and asks for 1536: 3. The
    # softmax (already 4 programs of 256 at 64 registers), f32 rows and elementwise kernels leave the
    # registers to ptxas.
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 8192, "M": 8192})
    assert (call.schedule.resident_threads, call.schedule.blocks_per_program) == (1024, 4)
    filecheck(big_ptx(src, "layernorm_bf16"), """
        CHECK: .reqntid 256, 1, 1
        CHECK-NEXT: .minnctapersm 4
        CHECK-NEXT: {
    """)
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 1024, "M": 8192})  # 1024 / 4 < MIN_PROGRAMS
    assert (call.schedule.resident_threads, call.schedule.blocks_per_program) == (1536, 1)
    assert call.schedule.warps == 16
    *_, (call,) = gpu_plan(src, "layernorm_bf16", {"N": 2048, "M": 8192})
    assert (call.schedule.resident_threads, call.schedule.blocks_per_program) == (1024, 2)
    for fn in ("softmax_bf16", "rmsnorm_f32", "add_bf16"):
        *_, (call,) = gpu_plan(src, fn, {"N": 8192, "M": 8192})
        assert call.schedule.resident_threads == 0 and call.schedule.blocks_per_program == 1, fn
        assert ".minnctapersm" not in big_ptx(src, fn)
