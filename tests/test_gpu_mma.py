"""Tensor-core matmul loops (tessera/ir/gpu_pipeline.py, gpu_mma.py): a k loop of loads feeding a bf16
or f16 `dot` becomes a cp.async pipeline into swizzled shared memory, ldmatrix and mma.sync m16n8k16.

Checked without a GPU: the lowered kernels run in the SIMT interpreter (tests/gpu_interpreter.py, which
runs `mma` through the fragment layout table, `ldmatrix` lane by lane, and lands `cp_async` copies
only when a `cp_async_wait` retires their group, so a missing wait or barrier reads stale data or is
reported as a race) on fresh random inputs with poisoned outputs, against the float64 product;
FileCheck pins the Target IR and PTX; ptxas assembles the pipelined kernels for sm_80 and sm_90a. On a
device (tests marked `gpu`), the compiled `@jit` matmul is checked at ragged sizes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from filecheck_util import filecheck
from gpu_checks import PTXAS, needs_ptxas
from gpu_interpreter import SimtError, run_kernel

import tessera
from tessera.codegen.ptx import cuda_target_info, emit_ptx
from tessera.dtypes import BF16, F16, F32, INT64, DType
from tessera.ir.gpu_mma import MMA_LAYOUTS, ldmatrix_source, swizzle_chunk
from tessera.ir.target.builder import Builder
from tessera.ir.target.ops import F32 as TF32
from tessera.ir.target.ops import I16, I32, I64, Function, Module, Pointer, TargetIRError, Value, Vector
from tessera.ir.target.printer import print_function
from tessera.ir.target.verify import verify_function
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import Kernel, Schedule
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime import cuda

INFO = cuda_target_info("sm_90a")
NP = {"bf16": ml_dtypes.bfloat16, "f16": np.float16}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def matmul(block: tuple[int, int], bk: int, dtype: DType, *, stages: int = 3, warps: int = 4,
           name: str = "mm") -> Kernel:
    """y[M, N] (f32) = x[M, K] @ w[K, N]: the k loop schedule_to_tile writes for a matmul."""
    bm, bn = block
    b = TileBuilder(name, Schedule(block=block, k=bk, stages=stages, warps=warps))
    x = b.param("x", 2, dtype, "in")
    w = b.param("w", 2, dtype, "in")
    y = b.param("y", 2, F32, "out")
    m = b.extent("M", x, 0)
    b.extent("K", x, 1)
    n = b.extent("N", w, 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    r0 = b.op("mul", b.program_id(0), b.const(bm, INT64))
    c0 = b.op("mul", b.program_id(1), b.const(bn, INT64))
    acc0 = b.full(block, 0.0, F32)
    with b.for_(b.const(0, INT64), b.dim(x, 1), b.const(bk, INT64), [acc0]) as loop:
        a = b.load(x, r0, loop.iv, shape=(bm, bk))
        wb = b.load(w, loop.iv, c0, shape=(bk, bn))
        b.yield_(loop, [b.dot(a, wb, loop.args[0])])
    b.store(y, r0, c0, value=loop.results[0])
    return b.build()


def lowered(k: Kernel) -> Function:
    f = lower_kernel(k, INFO)
    verify_function(f)
    return f


def check_product(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """y against the float64 product: f32 accumulation of exact 16-bit products, in any order."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    bound = 2e-6 * (np.abs(x64) @ np.abs(w64)) + 1e-30
    err = np.abs(y.astype(np.float64) - x64 @ w64)
    assert not np.isnan(y).any(), "unwritten (poisoned) outputs"
    assert (err <= bound).all(), f"max error {err.max()} over bound {bound[err > bound].min()}"


# ---------------------------------------------------------------- layouts


def test_fragment_layouts_cover_each_tile_once() -> None:
    for lay in MMA_LAYOUTS.values():
        a = {lay.a_elem(ln, r, h) for ln in range(lay.warp) for r in range(lay.a_regs) for h in range(2)}
        b = {lay.b_elem(ln, r, h) for ln in range(lay.warp) for r in range(lay.b_regs) for h in range(2)}
        c = {lay.c_elem(ln, i) for ln in range(lay.warp) for i in range(lay.c_regs)}
        assert a == {(i, j) for i in range(lay.m) for j in range(lay.k)}
        assert b == {(i, j) for i in range(lay.k) for j in range(lay.n)}
        assert c == {(i, j) for i in range(lay.m) for j in range(lay.n)}


def test_ldmatrix_feeds_the_fragments() -> None:
    # Lane 8i + r addressing row r of piece i (A: rows 0-7/8-15 x k 0-7/8-15) gives the A registers.
    lay = MMA_LAYOUTS["nv_m16n8k16"]
    for lane in range(32):
        for r in range(4):
            for h in range(2):
                src, col = ldmatrix_source(lane, r, h, trans=False)
                row = 8 * r + src % 8 - 8 * r  # the row of piece r the source lane addresses
                assert (row + 8 * (r % 2), col + 8 * (r // 2)) == lay.a_elem(lane, r, h)
                src, n = ldmatrix_source(lane, r, h, trans=True)
                assert (src % 8 + 8 * (r % 2), n) == lay.b_elem(lane, r % 2, h)


@pytest.mark.parametrize("cpr", [2, 4, 8, 16])
def test_swizzle_permutes_lines_and_spreads_ldmatrix_rows(cpr: int) -> None:
    rows = 64
    phys = [[swizzle_chunk(r, c, cpr) for c in range(cpr)] for r in range(rows)]
    flat = [p for row in phys for p in row]
    assert sorted(flat) == list(range(rows * cpr))
    assert all(p // 8 == (r * cpr + c) // 8 for r in range(rows) for c, p in enumerate(phys[r]))
    for r0 in range(0, rows, 8):  # eight rows at one logical chunk: eight distinct bank groups
        for c in range(cpr):
            assert len({phys[r0 + i][c] % 8 for i in range(8)}) == 8


# ---------------------------------------------------------------- numerics in the interpreter


@pytest.mark.parametrize(("m", "n", "k", "block", "bk", "stages", "warps", "dt"), [
    (64, 64, 128, (64, 64), 32, 3, 4, BF16),
    (50, 37, 45, (32, 32), 16, 2, 4, F16),  # ragged everywhere, odd K: lane-by-lane copies
    (96, 72, 200, (32, 64), 32, 4, 4, BF16),  # ragged K tail, 4 stages, more stages than iterations
    (40, 48, 64, (64, 32), 64, 3, 2, F16),
    (128, 64, 32, (128, 64), 16, 2, 8, BF16),  # 8 warps, one k step per stage
])
def test_pipelined_dot_matches_float64(rng: np.random.Generator, m: int, n: int, k: int, block: tuple[int, int],
                                       bk: int, stages: int, warps: int, dt: DType) -> None:
    kern = matmul(block, bk, dt, stages=stages, warps=warps)
    f = lowered(kern)
    text = print_function(f)
    assert "mma" in text and " fma" not in text
    x = rng.standard_normal((m, k)).astype(NP[dt.name])
    w = rng.standard_normal((k, n)).astype(NP[dt.name])
    y = np.full((m, n), np.nan, np.float32)
    run_kernel(f, kern, [x, w, y])
    check_product(y, x, w)


@pytest.mark.parametrize("view", ["transposed", "strided", "offset"])
def test_pipelined_dot_reads_any_view(rng: np.random.Generator, view: str) -> None:
    m, n, k = 48, 40, 64
    kern = matmul((32, 32), 32, BF16, stages=2)
    bf = ml_dtypes.bfloat16
    if view == "transposed":
        x = rng.standard_normal((k, m)).astype(bf).T
        w = rng.standard_normal((n, k)).astype(bf).T
    elif view == "strided":
        x = rng.standard_normal((m, 2 * k)).astype(bf)[:, ::2]
        w = rng.standard_normal((2 * k, n)).astype(bf)[::2]
    else:  # contiguous rows, base 2 bytes off 16-byte alignment
        x = rng.standard_normal(m * k + 1).astype(bf)[1:].reshape(m, k)
        w = rng.standard_normal((k, n)).astype(bf)
    y = np.full((m, n), np.nan, np.float32)
    run_kernel(lowered(kern), kern, [x, w, y])
    check_product(y, x, w)


def test_empty_k_keeps_the_initial_accumulator(rng: np.random.Generator) -> None:
    kern = matmul((32, 32), 16, BF16)
    x = np.zeros((33, 0), ml_dtypes.bfloat16)
    w = np.zeros((0, 20), ml_dtypes.bfloat16)
    y = np.full((33, 20), np.nan, np.float32)
    run_kernel(lowered(kern), kern, [x, w, y])
    assert (y == 0).all()


def test_missing_barrier_is_a_race(rng: np.random.Generator) -> None:
    """The interpreter sees the pipeline's hazards: without the barrier at the top of the k loop a
    thread's copies land in a stage other threads are still reading."""
    kern = matmul((32, 32), 16, BF16, stages=2)
    f = lowered(kern)
    loop = next(op for op in f.body.ops if op.name == "for" and any(o.name == "mma" for o in op.regions[0].ops))
    body = loop.regions[0].ops
    body.remove(next(o for o in body if o.name == "barrier"))
    x = rng.standard_normal((32, 64)).astype(ml_dtypes.bfloat16)
    w = rng.standard_normal((64, 32)).astype(ml_dtypes.bfloat16)
    with pytest.raises(SimtError, match="race"):
        run_kernel(f, kern, [x, w, np.empty((32, 32), np.float32)])


def single_dot(block: tuple[int, int], k: int, dtype: DType, *, transpose_b: bool = False,
               name: str = "dot1") -> Kernel:
    """y += x @ w for one block of K (no k loop); w given as [N, K] and transposed with transpose_b."""
    bm, bn = block
    b = TileBuilder(name, Schedule(block=block, k=k))
    x = b.param("x", 2, dtype, "in")
    w = b.param("w", 2, dtype, "in")
    y = b.param("y", 2, F32, "inout")
    m = b.extent("M", x, 0)
    n = b.extent("N", w, 0 if transpose_b else 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    r0 = b.op("mul", b.program_id(0), b.const(bm, INT64))
    c0 = b.op("mul", b.program_id(1), b.const(bn, INT64))
    zero = b.const(0, INT64)
    a = b.load(x, r0, zero, shape=(bm, k))
    if transpose_b:
        wb = b.op("transpose", b.load(w, c0, zero, shape=(bn, k)), perm=(1, 0))
    else:
        wb = b.load(w, zero, c0, shape=(k, bn))
    b.store(y, r0, c0, value=b.dot(a, wb, b.load(y, r0, c0, shape=block)))
    return b.build()


@pytest.mark.parametrize(("m", "n", "k", "block", "dt", "transpose_b"), [
    (40, 50, 32, (32, 32), BF16, False),
    (64, 64, 16, (32, 64), F16, True),
    (33, 70, 7, (32, 32), BF16, False),  # K not a multiple of 16: the last k step reads zeros past K
])
def test_general_dot_on_the_matrix_unit(rng: np.random.Generator, m: int, n: int, k: int,
                                        block: tuple[int, int], dt: DType, transpose_b: bool) -> None:
    """A dot outside a k loop, with a loaded accumulator (and a transposed operand): fragments read
    element by element from the staged operands (tessera/ir/gpu_dot.py)."""
    kern = single_dot(block, k, dt, transpose_b=transpose_b)
    f = lowered(kern)
    text = print_function(f)
    assert "mma" in text and " fma" not in text and "ldmatrix" not in text
    x = rng.standard_normal((m, k)).astype(NP[dt.name])
    w = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(NP[dt.name])
    w_kn = w.T if transpose_b else w
    y0 = rng.standard_normal((m, n)).astype(np.float32)
    y = y0.copy()
    run_kernel(f, kern, [x, w, y])
    ref = x.astype(np.float64) @ w_kn.astype(np.float64) + y0
    bound = 2e-6 * (np.abs(x.astype(np.float64)) @ np.abs(w_kn.astype(np.float64)) + np.abs(y0)) + 1e-30
    assert (np.abs(y - ref) <= bound).all()


def test_lane_maps_must_be_affine() -> None:
    from tessera.ir.gpu_dot import lane_affine

    assert lane_affine(lambda ln: ln // 4 + 8, 32) == (8, [(2, 1), (3, 2), (4, 4)])
    assert lane_affine(lambda ln: (ln * ln) % 7, 32) is None


def test_f32_dot_keeps_the_fma_loop() -> None:
    text = print_function(lowered(matmul((32, 32), 16, F32)))
    assert "fma" in text and "mma" not in text and "cp_async" not in text


# ---------------------------------------------------------------- IR and PTX


def test_target_ir_pipeline_shape() -> None:
    filecheck(print_function(lowered(matmul((64, 64), 32, BF16, stages=3))), """
        CHECK: shared {count = {{[0-9]+}}, elem = "i16"}
        CHECK: cp_async {{.*}} {bytes = 16}
        CHECK: cp_async_commit
        CHECK: cp_async_commit
        CHECK: for %kt
        CHECK-NEXT: cp_async_wait {pending = 1}
        CHECK-NEXT: barrier
        CHECK: cp_async {{.*}} {bytes = 16}
        CHECK: cp_async_commit
        CHECK: ldmatrix {{.*}} {count = 4, trans = false} : <4 x i32>
        CHECK: ldmatrix {{.*}} {count = 4, trans = true} : <4 x i32>
        CHECK: mma {{.*}} {layout = "nv_m16n8k16", ab = "bf16"} : <4 x f32>
        CHECK: yield
        CHECK: cp_async_wait {pending = 0}
        CHECK-NEXT: barrier
        CHECK: ptrcast {{.*}} {elem = "f32"}
    """)


def test_main_loop_refills_without_guards() -> None:
    """The iterations whose refill lies inside both tensors run in a loop of their own: its copies are
    16-byte cp_asyncs from sources advanced by a constant per iteration (two i64 offsets carried with the
    i32 stage indices), with no per-iteration `if` around them; programs on the M or N edge take the cut
    copies (the `else`, uniform per program); ldmatrix addresses of later k steps are xors of the first's.
    The general loop runs the rest."""
    filecheck(print_function(lowered(matmul((64, 64), 32, BF16, stages=3))), """
        CHECK: for %kt = %c0 to {{.*}} -> ({{(<4 x f32>, )+}}i32, i32, i64, i64) {
        CHECK-NEXT: cp_async_wait {pending = 1}
        CHECK-NEXT: barrier
        CHECK-NEXT: if
        CHECK-NOT: if
        CHECK: cp_async {{.*}}, %c16 {bytes = 16}
        CHECK: } else {
        CHECK: xor {{.*}}, %c16{{.*}} : i64
        CHECK: ldmatrix
        CHECK: mma
        CHECK: for %kt_1 = {{.*}} -> ({{(<4 x f32>, )+}}i32, i32) {
        CHECK: if
        CHECK: ldmatrix
        CHECK: mma
    """)


def ptx_of(k: Kernel, arch: str = "sm_90a") -> str:
    return emit_ptx(Module([lower_kernel(k, cuda_target_info(arch))]), arch)


def test_ptx_instructions() -> None:
    filecheck(ptx_of(matmul((64, 64), 32, F16, stages=4)), """
        CHECK: cp.async.cg.shared.global [%r{{[0-9]+}}], [%rd{{[0-9]+}}], 16, %r{{[0-9]+}};
        CHECK: cp.async.commit_group;
        CHECK: cp.async.wait_group 2;
        CHECK-NEXT: bar.sync 0;
        CHECK: ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, [%r{{[0-9]+}}];
        CHECK: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
        CHECK: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f{{.*}}}, {%r{{.*}}}, {%r{{.*}}}, {%f{{.*}}};
        CHECK: cp.async.wait_group 0;
    """)


def test_main_loop_ptx_keeps_shared_addresses_32_bit() -> None:
    """In the main loop the stage offset is an i32 product, and the ldmatrix of the next 16-row piece is
    the first one's 32-bit address plus an immediate (which ptxas folds into the instruction)."""
    filecheck(ptx_of(matmul((64, 64), 32, BF16, stages=3)), r"""
        CHECK: cp.async.wait_group 1;
        CHECK-NEXT: bar.sync 0;
        CHECK: cp.async.cg.shared.global [%r{{[0-9]+}}], [%rd{{[0-9]+}}], 16, %r{{[0-9]+}};
        CHECK: cp.async.commit_group;
        CHECK-NEXT: mul.lo.s32 %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}};
        CHECK: ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{.*}}, {{\[}}[[A:%r[0-9]+]]{{\]}};
        CHECK-NEXT: add.s32 [[A2:%r[0-9]+]], [[A]], 1024;
        CHECK-NEXT: ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{.*}}, {{\[}}[[A2]]{{\]}};
    """)


def test_large_tiles_use_dynamic_shared_memory() -> None:
    ptx = ptx_of(matmul((128, 128), 32, BF16))
    filecheck(ptx, """
        CHECK: .extern .shared .align 16 .b8 __tessera_dsmem[];
        CHECK: // dynamic shared memory: [[N:[0-9]+]] bytes
        CHECK-NEXT: .visible .entry mm(
        CHECK-NOT: .shared .align 16 .b8 __smem
        CHECK: mov.u32 %r{{[0-9]+}}, __tessera_dsmem;
    """)
    from tessera.codegen.ptx import dynamic_shared_bytes

    assert dynamic_shared_bytes(ptx) == {"mm": 128 * (128 + 8) * 4}  # the f32 epilogue block, padded rows


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_ptxas_assembles_the_pipelined_kernels(tmp_path: Path, arch: str) -> None:
    kernels = [matmul((128, 128), 32, BF16, name="mm_big"), matmul((64, 64), 32, F16, stages=4, name="mm_f16"),
               matmul((128, 256), 32, BF16, warps=8, name="mm_wide"),
               single_dot((64, 64), 24, F16, transpose_b=True, name="dot_general")]
    src = tmp_path / f"k_{arch}.ptx"
    src.write_text(emit_ptx(Module([lower_kernel(k, cuda_target_info(arch)) for k in kernels]), arch))
    r = subprocess.run([PTXAS, f"-arch={arch}", "-v", str(src), "-o", str(tmp_path / "k.cubin")],  # type: ignore[list-item]
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    for k in kernels:
        assert f"Compiling entry function '{k.name}'" in r.stderr


# ---------------------------------------------------------------- diagnostics of the new ops


def _fn_with(emit) -> Function:  # type: ignore[no-untyped-def]
    b = Builder()
    p = Value(Pointer("global", I16), "p")
    with b.function("f", [p]) as fn:
        emit(b, p)
    fn.threads = 32
    return fn


def test_mma_operand_types_are_checked() -> None:
    def emit(b: Builder, p: Value) -> None:
        a = b.const(0, Vector(4, I32))
        c = b.const(0.0, Vector(4, TF32))
        b.emit("mma", [a, a, c], [Vector(4, TF32)], layout="nv_m16n8k16", ab="bf16")

    with pytest.raises(TargetIRError, match="mma nv_m16n8k16 bf16 takes"):
        verify_function(_fn_with(emit))


def test_mma_layout_and_type_are_checked() -> None:
    def emit(layout: str, ab: str):  # type: ignore[no-untyped-def]
        def go(b: Builder, p: Value) -> None:
            a, bb = b.const(0, Vector(4, I32)), b.const(0, Vector(2, I32))
            b.emit("mma", [a, bb, b.const(0.0, Vector(4, TF32))], [Vector(4, TF32)], layout=layout, ab=ab)
        return go

    with pytest.raises(TargetIRError, match="unknown mma fragment layout 'amd_nope'"):
        verify_function(_fn_with(emit("amd_nope", "bf16")))
    with pytest.raises(TargetIRError, match="multiplies bf16, f16, not f32"):
        verify_function(_fn_with(emit("nv_m16n8k16", "f32")))


def test_ldmatrix_needs_shared_memory() -> None:
    def emit(b: Builder, p: Value) -> None:
        b.emit("ldmatrix", [p], [Vector(4, I32)], count=4, trans=False)

    with pytest.raises(TargetIRError, match="ldmatrix reads 16-bit elements from shared memory"):
        verify_function(_fn_with(emit))


def test_cp_async_checks_spaces_and_sizes() -> None:
    def emit(b: Builder, p: Value) -> None:
        b.emit("cp_async", [p, p, b.const(16, I32)], [], bytes=16)

    with pytest.raises(TargetIRError, match="cp_async writes shared memory"):
        verify_function(_fn_with(emit))

    def wait(b: Builder, p: Value) -> None:
        b.emit("cp_async_wait", [], [], pending=9)

    with pytest.raises(TargetIRError, match="pending must be in 0..7"):
        verify_function(_fn_with(wait))
    _ = I64


# ---------------------------------------------------------------- on a GPU

MM = '''
@jit
def mm(a: Tensor["M", "K", bf16 @accum(f32)], b: Tensor["K", "N", bf16]) -> Tensor["M", "N", bf16]:
    return cast(a @ b, bf16)
'''


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k"), [(256, 256, 512), (131, 77, 45), (300, 200, 1000)])
def test_device_bf16_matmul(rng: np.random.Generator, m: int, n: int, k: int) -> None:
    why = cuda.available()
    if why is not None:
        pytest.skip(f"no CUDA device: {why}")
    mm = tessera.compile(MM, target="cuda").mm
    bf = ml_dtypes.bfloat16
    a = rng.standard_normal((m, k)).astype(bf)
    b = rng.standard_normal((k, n)).astype(bf)
    y = np.asarray(mm(a, b)).astype(np.float64)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # bf16 output rounding (2^-8 relative) plus the f32 accumulation
    bound = 2.0 ** -8 * np.abs(ref) + 2e-6 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    assert (np.abs(y - ref) <= bound).all()


# ---------------------------------------------------------------- grouped program order


def plan_kernels(src: str, extents: dict[str, int], **schedule: object) -> list[Kernel]:
    """The Tile IR kernels of the one function in `src` at these extents, for cuda, with the matmul
    schedule's parameters replaced."""
    from tessera.ir.graph_to_schedule import partition
    from tessera.ir.schedule.gpu_heuristics import matmul_schedule, retarget
    from tessera.ir.schedule_to_tile import lower_plan

    module = tessera.compile(src, target="cuda")
    fn = getattr(module, src.split("def ")[1].split("(")[0])
    plan = retarget(partition(fn.specialized_graph({}, extents)))
    for call in plan.calls:
        s = matmul_schedule(call, **schedule)  # type: ignore[arg-type]
        if s is not None:
            call.schedule = s
    return lower_plan(plan)


def mm_kernels(m: int, n: int, kk: int, **schedule: object) -> list[Kernel]:
    return plan_kernels(MM, {"M": m, "N": n, "K": kk}, **schedule)


@pytest.mark.parametrize(("m", "group_m"), [(167, 4), (192, 2), (100, 8)])
def test_grouped_program_order(rng: np.random.Generator, m: int, group_m: int) -> None:
    """Output blocks ordered in groups of group_m block rows (the last group shorter where they do not
    divide: 6 rows in groups of 4; more rows in a group than blocks): every block written once, right."""
    n, k = 96, 48
    (kern,) = mm_kernels(m, n, k, block=(32, 32), k=16, warps=4, stages=2, group_m=group_m)
    assert kern.schedule.group_m == group_m
    bf = ml_dtypes.bfloat16
    a = rng.standard_normal((m, k)).astype(bf)
    b = rng.standard_normal((k, n)).astype(bf)
    y = np.full((m, n), np.nan, bf)
    run_kernel(lowered(kern), kern, [a, b, y])
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert not np.isnan(y.astype(np.float32)).any(), "unwritten (poisoned) outputs"
    bound = 2.0 ** -8 * np.abs(ref) + 2e-6 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    assert (np.abs(y.astype(np.float64) - ref) <= bound).all()


BMM = '''
@jit
def bmm(a: Tensor["B", "M", "K", bf16 @accum(f32)], b: Tensor["B", "K", "N", bf16]) -> Tensor["B", "M", "N", bf16]:
    return cast(a @ b, bf16)
'''


def test_grouped_program_order_batched(rng: np.random.Generator) -> None:
    """With leading (batch) axes the groups are formed within each batch's blocks."""
    nb, m, n, k = 3, 100, 70, 40
    (kern,) = plan_kernels(BMM, {"B": nb, "M": m, "N": n, "K": k}, block=(32, 32), k=16, warps=4, stages=2,
                           group_m=3)
    bf = ml_dtypes.bfloat16
    a = rng.standard_normal((nb, m, k)).astype(bf)
    b = rng.standard_normal((nb, k, n)).astype(bf)
    y = np.full((nb, m, n), np.nan, bf)
    run_kernel(lowered(kern), kern, [a, b, y])
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert not np.isnan(y.astype(np.float32)).any(), "unwritten (poisoned) outputs"
    bound = 2.0 ** -8 * np.abs(ref) + 2e-6 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    assert (np.abs(y.astype(np.float64) - ref) <= bound).all()


def test_grouped_program_order_decode() -> None:
    """The program index is decoded in Tile IR: group, row within the group, column; a group size that
    divides the block rows needs no `minimum` (4096 / 128 in groups of 8), and group_m = 1 keeps the
    row-by-row order."""
    from tessera.ir.tile.parser import parse_kernel
    from tessera.ir.tile.printer import print_kernel

    (kern,) = mm_kernels(4096, 4096, 4096, group_m=8)
    filecheck(print_kernel(kern), """
        CHECK: schedule=Schedule(block=(128, 128), k=64, {{.*}}, group_m=8)
        CHECK: %pid = program_id {axis = 0}
        CHECK: %pid1 = program_id {axis = 1}
        CHECK: floordiv
        CHECK-NOT: minimum
        CHECK: mod
        CHECK: mod
        CHECK: floordiv
        CHECK: for
    """)
    assert parse_kernel(print_kernel(kern)).schedule == kern.schedule  # group_m survives the text form
    (kern,) = mm_kernels(4096, 4096, 4096, group_m=1)
    text = print_kernel(kern)
    assert "group_m" not in text and "floordiv" not in text
