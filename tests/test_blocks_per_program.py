"""Schedule.blocks_per_program: a row reduction whose row is one block walks several blocks of rows
in one program, loading the inputs that are the same in every row (a norm's weights, stride 0 along
the rows) once, before the loop; the GPU lowering keeps such blocks in shared memory as stored in
their tensor (tile_to_target_gpu._loop_only_loads).

Numerics: every program count (a last program with fewer blocks than the rest included) gives the
results of one block a program bit for bit, on the CPU and through the GPU lowering in the lockstep
interpreter, and both agree with the reference evaluator."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import gpu_checks
import ml_dtypes
import numpy as np
import pytest
from filecheck_util import filecheck
from gpu_cases import jit_graph, run_interpreted
from test_hip import compile_for, needs_clang

from tessera.codegen.ptx import cuda_target_info, emit_ptx
from tessera.ir.graph.passes.pipeline import optimize
from tessera.ir.graph.reference import evaluate
from tessera.ir.graph_to_schedule import partition
from tessera.ir.schedule.gpu_heuristics import retarget
from tessera.ir.schedule.ops import KernelCall, Plan, ScheduleIRError
from tessera.ir.schedule.verify import verify_plan
from tessera.ir.schedule_to_tile import lower_plan
from tessera.ir.target.info import hip_target_info
from tessera.ir.target.ops import Module
from tessera.ir.tile.ops import Schedule
from tessera.ir.tile.parser import parse_kernel
from tessera.ir.tile.printer import print_kernel
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.executor import CompiledFunction
from tessera.runtime.hip import emit_kernels_hip

INFO = cuda_target_info("sm_90a")
BF16 = np.dtype(ml_dtypes.bfloat16)

SRC = '''
@jit
def ln(x: Tensor["B", "S", "D", bf16], w: Tensor["D", bf16], b: Tensor["D", bf16]) -> Tensor["B", "S", "D", bf16]:
    return layernorm(x, w, b, 1e-5)

@jit
def ln32(x: Tensor["N", "D", f32], w: Tensor["D", f32], b: Tensor["D", f32]) -> Tensor["N", "D", f32]:
    return layernorm(x, w, b, 1e-5)

@jit
def rms(x: Tensor["N", "D", bf16], w: Tensor["D", bf16]) -> Tensor["N", "D", bf16]:
    return rmsnorm(x, w, 1e-6)

@jit
def soft(x: Tensor["N", "D", bf16]) -> Tensor["N", "D", bf16]:
    return softmax(x, axis=-1)

@jit
def mm(a: Tensor["N", "D", f32], c: Tensor["D", "N", f32]) -> Tensor["N", "N", f32]:
    return a @ c

@jit
def soft2(x: Tensor["N", "D", bf16], y: Tensor["N", "D", bf16]) -> Tensor["N", "D", bf16]:
    return softmax(x + y, axis=-1)

@jit
def rms_res(x: Tensor["N", "D", bf16], r: Tensor["N", "D", bf16], w: Tensor["D", bf16]) -> Tensor["N", "D", bf16]:
    return rmsnorm(x + r, w, 1e-6)

@jit
def ln_wide(x: Tensor["N", "D", bf16], w: Tensor["D", f32], b: Tensor["D", f32]) -> Tensor["N", "D", bf16]:
    xf = cast(x, f32)
    d = xf - mean(xf, axis=-1, keepdims=True)
    return cast(d / sqrt(mean(d * d, axis=-1, keepdims=True) + 1e-5) * w + b, bf16)
'''


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("bpp") / "rows.tsr"
    p.write_text(SRC)
    return p


def plan_of(path: Path, fn_name: str, dims: dict[str, int], per_program: int | None, gpu: bool = True) -> Plan:
    """The plan with GPU schedules (or the CPU's), its row reduction walking `per_program` blocks
    (None: the heuristic's choice)."""
    plan = partition(optimize(jit_graph(path, fn_name, dims)))
    if gpu:
        retarget(plan)
    for step in plan.steps:
        if isinstance(step, KernelCall) and step.pattern == "row_reduction" and per_program is not None:
            step.schedule = dataclasses.replace(step.schedule, blocks_per_program=per_program)
    verify_plan(plan)
    return plan


def run_plan(plan: Plan, xs: list[np.ndarray], where: str, cpu: CpuRuntime) -> np.ndarray:
    kernels = lower_plan(plan)
    if where == "cpu":
        return CompiledFunction(plan, kernels, cpu.compile(kernels), poison=True)(*xs)[0]
    return run_interpreted(plan, kernels, xs, hip_target_info("gfx90a") if where == "wave64" else None)[0]


CASES = [  # (function, extents, inputs' shapes and dtypes)
    ("ln", {"B": 2, "S": 5, "D": 96}, [((2, 5, 96), BF16), ((96,), BF16), ((96,), BF16)]),
    ("ln32", {"N": 7, "D": 100}, [((7, 100), np.float32), ((100,), np.float32), ((100,), np.float32)]),
    ("rms", {"N": 9, "D": 256}, [((9, 256), BF16), ((256,), BF16)]),
    ("soft", {"N": 6, "D": 64}, [((6, 64), BF16)]),
]


@pytest.mark.parametrize("where", ["cpu", "gpu", "wave64"])
@pytest.mark.parametrize(("fn", "dims", "shapes"), CASES, ids=[c[0] for c in CASES])
def test_rows_per_program_give_the_same_bits(source: Path, cpu: CpuRuntime, rng: np.random.Generator, where: str,
                                             fn: str, dims: dict[str, int], shapes: list) -> None:
    xs = [(rng.standard_normal(s) * 2 + 0.5).astype(d) for s, d in shapes]
    one = run_plan(plan_of(source, fn, dims, 1, gpu=where != "cpu"), xs, where, cpu)
    ref = evaluate(jit_graph(source, fn, dims), xs)[0]
    tol = 2.0 ** -7 if one.dtype == BF16 else 1e-5
    np.testing.assert_allclose(one.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol)
    rows = int(np.prod(shapes[0][0][:-1]))
    for per_program in (2, 3, rows, rows + 2):  # 3 leaves a last program with fewer rows
        got = run_plan(plan_of(source, fn, dims, per_program, gpu=where != "cpu"), xs, where, cpu)
        assert not np.isnan(got.astype(np.float32)).any(), f"{per_program} rows a program: unwritten elements"
        np.testing.assert_array_equal(got.view(np.uint8), one.view(np.uint8),
                                      err_msg=f"{fn}, {per_program} blocks a program, {where}")


def test_the_weights_load_once_before_the_row_loop(source: Path) -> None:
    # 512 rows of 128: blocks of 32 rows, 4 blocks a program.
    plan = plan_of(source, "ln", {"B": 8, "S": 64, "D": 128}, 4)
    (k,) = lower_plan(plan)
    filecheck(print_kernel(k), """
    CHECK: grid=[4] schedule=Schedule(block=(32, 128){{.*}}blocks_per_program=4)
    CHECK: %pid = program_id
    CHECK: load(%v0, %0, %0) {shape = [32, 128]
    CHECK: load(%v1, %0, %0) {shape = [32, 128]
    CHECK: for %k0 = %0 to
    CHECK: load(%x,
    CHECK: reduce(
    CHECK: store(%r0,
    CHECK: yield()
    """)
    again = parse_kernel(print_kernel(k))  # the printed schedule reads back
    assert again.schedule == k.schedule and print_kernel(again) == print_kernel(k)


def test_the_gpu_keeps_the_weights_in_shared_memory_as_bf16(source: Path) -> None:
    def ptx(per_program: int) -> str:
        (k,) = lower_plan(plan_of(source, "ln", {"B": 4, "S": 64, "D": 1024}, per_program))
        return emit_ptx(Module([lower_kernel(k, INFO)]), "sm_90a")

    def count(pattern: str, text: str) -> int:
        return len(re.findall(pattern, text))

    vector_load = r"ld\.global\.v4\.b32"
    one = count(vector_load, ptx(1))  # x, w and b: the same accesses each
    text = ptx(4)
    loop = text.index("$L_for")
    before, inside = text[:loop], text[loop:]
    # w and b are read from global memory once, before the loop; x inside it.
    assert (count(vector_load, before), count(vector_load, inside)) == (2 * one // 3, one // 3)
    # Their 16-byte vectors (8 bf16) go to shared memory once and are read back in every iteration.
    staged = count(r"st\.shared\.v4\.b32", before)
    assert staged > 0 and count(r"ld\.shared\.v4\.b32", inside) == staged
    assert count(r"st\.shared\.v4", inside) == 0
    # Every thread's part is written before any thread reads another's: a barrier after the last write.
    assert before.rindex("bar.sync 0;") > before.rindex("st.shared.v4.b32")
    assert count(r"st\.shared\.v4", ptx(1)) == 0  # one block a program: the weights stay in registers
    filecheck(inside, """
    CHECK: ld.global.v4.b32
    CHECK: ld.shared.v4.b32
    CHECK: st.global.v4.b32
    """)


def test_blocks_per_program_is_for_one_block_rows_only(source: Path) -> None:
    plan = partition(optimize(jit_graph(source, "mm", {"N": 32, "D": 16})))
    (call,) = [s for s in plan.steps if isinstance(s, KernelCall)]
    call.schedule = dataclasses.replace(call.schedule, blocks_per_program=2)
    with pytest.raises(ScheduleIRError, match="blocks_per_program > 1 applies to row reductions"):
        verify_plan(plan)
    call.schedule = dataclasses.replace(call.schedule, blocks_per_program=0)
    with pytest.raises(ScheduleIRError, match="blocks_per_program must be positive, got 0"):
        verify_plan(plan)
    # A row longer than its block (several passes over the row) is refused too.
    plan = partition(optimize(jit_graph(source, "soft", {"N": 4, "D": 20000})))
    (call,) = [s for s in plan.steps if isinstance(s, KernelCall)]
    call.schedule = dataclasses.replace(call.schedule, blocks_per_program=2)
    with pytest.raises(ScheduleIRError, match="row reductions whose row is one block"):
        verify_plan(plan)


def test_the_gpu_schedule_walks_rows_only_for_weights_it_can_stage(source: Path) -> None:
    def schedule(fn: str, dims: dict[str, int]) -> Schedule:
        (k,) = lower_plan(plan_of(source, fn, dims, None))
        return k.schedule

    big = {"N": 8192, "D": 8192}
    # bf16 weights (16 KiB a row each): staged, 4 rows a program; leading axes count as rows.
    assert schedule("ln", {"B": 8, "S": 1024, "D": 8192}).blocks_per_program == 4
    assert schedule("ln", {"B": 8, "S": 256, "D": 8192}).blocks_per_program == 2  # 2048 rows
    assert schedule("rms", big).blocks_per_program == 4
    # Two rows varying along the rows (x + y, x + r): nothing to stage for one of them; f32 weights
    # of 8192 (64 KiB) past the staging budget; no weights at all.
    for fn in ("soft2", "rms_res", "ln_wide", "soft"):
        s = schedule(fn, big)
        assert s.blocks_per_program == 1, fn
        assert s.resident_threads == (0 if fn == "soft" else 1536), (fn, s)


@gpu_checks.needs_ptxas
def test_staged_rows_assemble_without_spills(source: Path, tmp_path: Path) -> None:
    import subprocess

    (k,) = lower_plan(plan_of(source, "ln", {"B": 64, "S": 128, "D": 8192}, None))
    assert k.schedule.blocks_per_program > 1
    p = tmp_path / "ln.ptx"
    p.write_text(emit_ptx(Module([lower_kernel(k, INFO)]), "sm_90a"))
    r = subprocess.run([str(gpu_checks.PTXAS), "-arch=sm_90a", "-v", str(p), "-o", str(tmp_path / "ln.cubin")],
                       capture_output=True, text=True, check=True)
    assert "0 bytes spill stores" in r.stderr, r.stderr


@needs_clang
def test_staged_rows_compile_for_gfx90a(source: Path, tmp_path: Path) -> None:
    (k,) = lower_plan(plan_of(source, "ln", {"B": 64, "S": 128, "D": 8192}, None))
    assert k.schedule.blocks_per_program > 1
    rc, asm = compile_for(emit_kernels_hip([k], "gfx90a"), tmp_path, "ln")
    assert rc == 0, asm
    assert "ds_write_b128" in asm and "ds_read_b128" in asm  # the weights through LDS, 16 bytes at a time


@pytest.mark.gpu
def test_staged_layernorm_on_the_device(source: Path, rng: np.random.Generator) -> None:
    # 4097 rows of 4096: one row a block, 4 blocks a program, and a last program with one.
    import tessera
    from tessera.runtime import cuda

    gpu_checks.device_runtime(cuda.available, cuda.CudaRuntime, "CUDA device")
    rows, d = 4097, 4096
    (k,) = lower_plan(plan_of(source, "ln", {"B": 1, "S": rows, "D": d}, None))
    assert (k.schedule.block, k.schedule.blocks_per_program, k.grid) == ((1, d), 4, (1025,))
    m = tessera.compile(SRC, target="cuda")
    x = (rng.standard_normal((1, rows, d)) * 3 + 1).astype(BF16)
    w, b = rng.standard_normal(d).astype(BF16), rng.standard_normal(d).astype(BF16)
    y = m.ln(x, w, b)
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    want = (x64 - mu) / np.sqrt(((x64 - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * w.astype(np.float64) + b
    got = y.astype(np.float64)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=2.0 ** -7, atol=2.0 ** -7 * np.abs(want).max())
