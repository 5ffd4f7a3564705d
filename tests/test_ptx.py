"""The PTX emitter: every kernel of every example's @jit functions (extents from tests/gpu_cases.py), the
examples' @kernels, every stdlib kernel under several schedules in f32 and bf16 (tests/kernel_cases.py)
and the hand-built tile kernels emit PTX that NVIDIA's assembler accepts for sm_80 and sm_90a (these
tests skip when `ptxas` is not on the PATH; the kernels go to ptxas in one module per architecture, the
two assembled concurrently), with the ISA version each target needs; FileCheck
patterns pin what the code should look like (16-byte vector accesses, warp shuffles, barriers, IEEE
rounding modes, FMA loops); unsupported operations are clear errors."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from filecheck_util import filecheck
from gpu_cases import ROOT, example_case, example_names
from gpu_checks import PTXAS, needs_ptxas
from kernel_cases import STDLIB, example_cases, kernel_of, modules, stdlib_cases
from tile_kernels import (
    argmax_rows,
    batched_scale_transpose,
    binary,
    cast_kernel,
    column_reduce,
    elementwise_chain,
    gather_rows,
    layernorm_rows,
    matmul_epilogue,
    softmax_rows,
    unary,
)

from tessera.cli import main
from tessera.codegen.ptx import ARCHS, cuda_target_info, emit_ptx
from tessera.dtypes import BF16, BOOL, DTYPES, F16, F32, F64, INT32, INT64
from tessera.ir.gpu_layout import GpuUnsupported
from tessera.ir.target.ops import Module, TargetIRError
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime.cuda import emit_kernels_ptx

ARCH_LIST = sorted(ARCHS)


def assemble(ptx: str, arch: str, tmp_path: Path) -> str:
    """ptxas output (resource usage) for the module; fails the test with ptxas's errors."""
    src = tmp_path / f"k_{arch}.ptx"
    src.write_text(ptx)
    r = subprocess.run([PTXAS, f"-arch={arch}", "-v", str(src), "-o", str(tmp_path / "k.cubin")],  # type: ignore[list-item]
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"ptxas -arch={arch} failed:\n{r.stderr}"
    return r.stderr


def tile_kernels() -> list[Kernel]:
    int8 = DTYPES["int8"]
    return [
        softmax_rows(256, False), softmax_rows(64, True, name="softmax_online"),
        softmax_rows(96, True, dtype=BF16, name="softmax_bf16"), elementwise_chain(),
        elementwise_chain(BF16, F16, block=(4, 64), name="chain_bf16"), layernorm_rows(128, rows=2),
        matmul_epilogue((32, 32), 16), matmul_epilogue((64, 64), 32, BF16, BF16, name="matmul_bf16"),
        matmul_epilogue((16, 32), 16, transpose_b_block=True, name="matmul_t"), argmax_rows(64),
        column_reduce("sum", (8, 16)), column_reduce("max", (8, 16), INT32, name="colmax_i32"), gather_rows(64),
        batched_scale_transpose((4, 8)), unary("erf", name="erf"), unary("isnan", name="isnan"),
        binary("floordiv", int8, name="floordiv_i8"), binary("mod", INT64, name="mod_i64"),
        binary("pow", INT32, name="pow_i32"), binary("maximum", F64, name="max_f64"),
        cast_kernel(F32, DTYPES["fp8_e4m3"]), cast_kernel(DTYPES["fp8_e5m2"], F32), cast_kernel(F32, int8),
        cast_kernel(BOOL, F16), cast_kernel(F64, F32, "toward_zero"),
        _with_warps(softmax_rows(1024, True, name="softmax_w6"), 6),  # not a power of two: 192 threads
        _with_warps(matmul_epilogue((32, 32), 16, name="matmul_w3"), 3),
    ]


def _with_warps(k: Kernel, warps: int) -> Kernel:
    k.schedule = dataclasses.replace(k.schedule, warps=warps)
    return k


# ---------------------------------------------------------------- assembling


def assemble_batch(kernels: list[Kernel], tmp_path: Path) -> dict[str, str]:
    """One module of `kernels` per architecture, assembled by concurrent ptxas runs (two cores: one each);
    arch -> ptxas's report, in which every kernel must have been compiled."""
    procs = {}
    for arch in ARCH_LIST:
        src = tmp_path / f"batch_{arch}.ptx"
        src.write_text(emit_kernels_ptx(kernels, arch))
        procs[arch] = subprocess.Popen([PTXAS, f"-arch={arch}", "-v", str(src), "-o",  # type: ignore[list-item]
                                        str(tmp_path / f"batch_{arch}.cubin")], stderr=subprocess.PIPE, text=True)
    reports = {}
    for arch, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"ptxas -arch={arch} failed:\n{err}"
        missing = [k.name for k in kernels if f"Compiling entry function '{k.name}'" not in err]
        assert not missing, f"ptxas -arch={arch} compiled no entry for {missing}"
        reports[arch] = err
    return reports


def _renamed(kernels: list[Kernel], tag: str) -> list[Kernel]:
    """Copies named `<tag><i>_<name>`, so that kernels of several programs share one module."""
    out = []
    for k in kernels:
        c = copy.copy(k)
        c.name = f"{tag}{len(out)}_{k.name}"
        out.append(c)
    return out


@needs_ptxas
def test_every_example_function_assembles(tmp_path: Path) -> None:
    # Every kernel of every example's @jit functions, and the examples' @kernels.
    kernels = [k for file, fn in example_names() for k in example_case(file, fn).lowered.kernels]
    mods = modules("cpu")
    for case in example_cases(np.random.default_rng()):
        fn = kernel_of(case, mods)
        kernels.append(fn.lowered(*case.inputs(), grid=case.grid, **case.kwargs).kernel)  # type: ignore[attr-defined]
    assemble_batch(_renamed(kernels, "ex"), tmp_path)


@needs_ptxas
def test_every_stdlib_kernel_assembles_under_several_schedules(tmp_path: Path) -> None:
    # Each kernel x its own schedule and two others x f32 and bf16 inputs (a ragged shape each).
    mods = modules("cpu")
    kernels = []
    for case in stdlib_cases(np.random.default_rng(), shapes=1):
        fn = kernel_of(case, mods)
        kernels.append(fn.lowered(*case.inputs(), grid=case.grid, **case.kwargs).kernel)  # type: ignore[attr-defined]
    assert {k.name for k in kernels} == {f"kernel_{n}" for n in STDLIB}
    assemble_batch(_renamed(kernels, "std"), tmp_path)


@needs_ptxas
@pytest.mark.parametrize("arch", ARCH_LIST)
def test_tile_kernels_assemble(arch: str, tmp_path: Path) -> None:
    kernels = tile_kernels()
    info = cuda_target_info(arch)
    ptx = emit_ptx(Module([lower_kernel(k, info) for k in kernels]), arch)
    report = assemble(ptx, arch, tmp_path)
    assert report.count("Compiling entry function") == len(kernels)


@needs_ptxas
def test_big_example_extents_assemble_without_local_memory(tmp_path: Path) -> None:
    # The 8192-wide rows of the benchmarks: slots stay in registers (no stack frame, no spills).
    for file, fn, dims in [("softmax.tsr", "row_softmax", {"N": 64, "M": 8192}),
                           ("layernorm.tsr", "norm", {"B": 1, "S": 64, "D": 8192})]:
        case = example_case(file, fn, dims)
        report = assemble(emit_kernels_ptx(case.lowered.kernels, "sm_90a"), "sm_90a", tmp_path)
        assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in report, report


# ---------------------------------------------------------------- what the PTX looks like


def _ptx(k: Kernel, arch: str = "sm_90a") -> str:
    return emit_ptx(Module([lower_kernel(k, cuda_target_info(arch))]), arch)


def test_module_header_per_architecture() -> None:
    k = softmax_rows(256, False, name="sm")
    filecheck(_ptx(k, "sm_80"), """
        CHECK: .version 7.8
        CHECK-NEXT: .target sm_80
        CHECK-NEXT: .address_size 64
        CHECK: .visible .entry sm(
        CHECK-NEXT: .param .u64 sm_x,
        CHECK: .reqntid 128, 1, 1
    """)
    filecheck(_ptx(k, "sm_90a"), """
        CHECK: .version 8.0
        CHECK-NEXT: .target sm_90a
    """)


def test_softmax_uses_vector_loads_warp_shuffles_and_a_shared_exchange() -> None:
    filecheck(_ptx(softmax_rows(1024, False, name="sm")), """
        CHECK: .shared .align 16 .b8 __smem[
        CHECK: mov.u32 {{%r[0-9]+}}, %tid.x;
        CHECK: mov.u32 {{%r[0-9]+}}, %ctaid.x;
        CHECK: ld.global.v4.f32 {%f{{[0-9]+}}, %f{{[0-9]+}}, %f{{[0-9]+}}, %f{{[0-9]+}}}, [%rd{{[0-9]+}}];
        CHECK: @%p{{[0-9]+}} ld.global.f32
        CHECK: max.NaN.f32
        CHECK: shfl.sync.bfly.b32 {{%f[0-9]+}}, {{%f[0-9]+}}, 16, 31, -1;
        CHECK: shfl.sync.bfly.b32 {{%f[0-9]+}}, {{%f[0-9]+}}, 1, 31, -1;
        CHECK: st.shared.f32
        CHECK: bar.sync 0;
        CHECK: ld.shared.f32
        CHECK: fma.rn.f32
        CHECK: add.rn.f32
        CHECK: shfl.sync.bfly.b32
        CHECK: div.rn.f32
        CHECK: st.global.v4.f32 [%rd{{[0-9]+}}], {%f{{[0-9]+}}, %f{{[0-9]+}}, %f{{[0-9]+}}, %f{{[0-9]+}}};
        CHECK: @%p{{[0-9]+}} st.global.f32
        CHECK: ret;
    """)


def test_bf16_blocks_move_as_packed_words() -> None:
    # Eight bf16 lanes are one 16-byte access: four 32-bit words, each two 16-bit lanes.
    filecheck(_ptx(softmax_rows(256, False, dtype=BF16, name="smb")), """
        CHECK: ld.global.v4.b32 {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, [%rd{{[0-9]+}}];
        CHECK: mov.b32 {%rs{{[0-9]+}}, %rs{{[0-9]+}}}, %r{{[0-9]+}};
        CHECK: mov.b32 %r{{[0-9]+}}, {%rs{{[0-9]+}}, %rs{{[0-9]+}}};
        CHECK: st.global.v4.b32
    """)


def test_dot_is_an_fma_loop_over_shared_tiles() -> None:
    filecheck(_ptx(matmul_epilogue((32, 32), 16, name="mm")), """
        CHECK: $L_for[[O:[0-9]+]]:
        CHECK: setp.ge.s64
        CHECK: st.shared.v4.f32
        CHECK: bar.sync 0;
        CHECK: $L_for[[K:[0-9]+]]:
        CHECK: ld.shared.f32
        CHECK: ld.shared.v4.f32
        CHECK: fma.rn.f32
        CHECK: bra $L_for[[K]];
        CHECK: $L_for[[K]]_end:
        CHECK: bra $L_for[[O]];
    """)


def test_unsupported_math_is_a_clear_error() -> None:
    # f32 sin/cos/pow/fmod and the f64 transcendentals are expanded (tests/test_gpu_math.py); an f64
    # remainder is not yet.
    with pytest.raises(GpuUnsupported, match="float remainder"):
        _ptx(binary("mod", F64, name="fmod"))
    with pytest.raises(TargetIRError, match="not a GPU kernel"):
        from tessera.codegen.ptx import emit_function
        from tessera.runtime.cpu_features import cpu_target_info

        emit_function(lower_kernel(unary("exp"), cpu_target_info()))


def test_tessera_lower_prints_the_ptx_of_a_kernel(tmp_path: Path) -> None:
    src = tmp_path / "k.tsr"
    src.write_text("""
@kernel.schedule(Schedule(block=(4, 64), warps=4))
def twice(x: KTile["N", "M", f32]) -> KTile["N", "M", f32]:
    T = tile.context()
    return tile.load(x, rows=T.m, cols=T.n) * 2.0
""")
    r = CliRunner().invoke(main, ["lower", str(src), "--fn", "twice", "--stage", "ptx", "--dim", "N=5", "--dim", "M=70"])
    assert r.exit_code == 0, r.stderr
    filecheck(r.stdout, """
        CHECK: .target sm_90a
        CHECK: .visible .entry kernel_twice(
        CHECK: .reqntid 128, 1, 1
        CHECK: mul.rn.f32
        CHECK: st.global.v4.f32
    """)
    if PTXAS is not None:
        assemble(r.stdout, "sm_90a", tmp_path)


def test_tessera_lower_prints_ptx(monkeypatch: pytest.MonkeyPatch) -> None:
    mlp = str(ROOT / "examples" / "mlp.tsr")
    r = CliRunner().invoke(main, ["lower", mlp, "--stage", "ptx", "--dim", "B=4", "--dim", "D=16"])
    assert r.exit_code == 0, r.stderr
    assert ".target sm_90a" in r.stdout and r.stdout.count(".visible .entry mlp_k") == 2
    monkeypatch.setenv("TESSERA_CUDA_ARCH", "sm_80")
    r = CliRunner().invoke(main, ["lower", mlp, "--stage", "ptx", "--dim", "B=4", "--dim", "D=16"])
    assert r.exit_code == 0 and ".version 7.8\n.target sm_80" in r.stdout
    monkeypatch.setenv("TESSERA_CUDA_ARCH", "sm_75")
    r = CliRunner().invoke(main, ["lower", mlp, "--stage", "ptx", "--dim", "B=4", "--dim", "D=16"])
    assert r.exit_code == 2 and "TESSERA_CUDA_ARCH=sm_75 is not a known architecture" in r.stderr
