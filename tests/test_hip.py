"""The HIP backend without an AMD GPU: every @jit function of every example, every stdlib kernel
(stdlib/kernels.tsr, f32 and bf16) and every stdlib.nn function lowers to HIP C++ that clang compiles
for gfx90a (`clang++-15 -x hip --offload-arch=gfx90a --cuda-device-only`, Debian's HIP headers and
ROCm device libraries; these tests skip when clang++-15 is missing), each kernel without register
spills or scratch memory. The wave64 lowering is checked numerically in the lockstep interpreter
(tests/gpu_interpreter.py) against the CPU backend and the reference evaluator; FileCheck patterns
pin what the C++ looks like for wave64 and wave32; error paths are one line."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner
from filecheck_util import filecheck
from gpu_cases import ROOT, example_case, example_names
from gpu_interpreter import run_kernel
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

import tessera
from tessera.cli import main
from tessera.codegen.hip import COMPILE_FLAGS, emit_hip
from tessera.dtypes import BF16, BOOL, DTYPES, F16, F32, F64, INT32, INT64, DType, numpy_dtype
from tessera.frontend.check import check_file
from tessera.ir.gpu_layout import GpuUnsupported, natural
from tessera.ir.graph.reference import evaluate
from tessera.ir.target.info import hip_target_info
from tessera.ir.target.ops import Function, Module, TargetIRError
from tessera.ir.target.printer import print_function
from tessera.ir.target.verify import verify_function
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile.printer import print_kernel
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime import stages
from tessera.runtime.cpu import CpuRuntime
from tessera.runtime.executor import CompiledFunction
from tessera.runtime.hip import emit_kernels_hip

CLANG = shutil.which("clang++-15")
_LIBS = sorted(glob.glob("/usr/lib/*/amdgcn/bitcode")) + sorted(glob.glob("/usr/lib/llvm-15/lib/clang/*/lib/amdgcn/bitcode"))
DEVICE_LIBS = _LIBS[0] if _LIBS else None
needs_clang = pytest.mark.skipif(
    CLANG is None or DEVICE_LIBS is None,
    reason="clang++-15 with Debian's libamdhip64-dev and rocm-device-libs is not installed (.ci/run installs them)")
WAVE64 = hip_target_info("gfx90a")
WAVE32 = hip_target_info("gfx1100")
INT8 = DTYPES["int8"]
NARROW = {BF16: 2.0 ** -7, F16: 2.0 ** -10}


def compile_for(source: str, workdir: Path, name: str, arch: str = "gfx90a") -> tuple[int, str]:
    """clang's exit code and its assembly (or its errors) for a HIP translation unit."""
    src, asm = workdir / f"{name}.hip", workdir / f"{name}.s"
    src.write_text(source)
    cmd = [CLANG, "-x", "hip", f"--offload-arch={arch}", "--cuda-device-only", "--rocm-path=/usr",
           f"--rocm-device-lib-path={DEVICE_LIBS}", *COMPILE_FLAGS, "-S", str(src), "-o", str(asm)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,  # type: ignore[arg-type]
                       env={**os.environ, "HIP_PLATFORM": "amd"})
    return r.returncode, asm.read_text() if r.returncode == 0 else r.stderr


# ---------------------------------------------------------------- what gets compiled


@dataclass
class Unit:
    """One translation unit: a set of tile kernels lowered for gfx90a."""

    id: str
    kernels: list[Kernel]


def _example_units() -> list[Unit]:
    return [Unit(f"example:{f}:{fn}", list(example_case(f, fn).lowered.kernels or [])) for f, fn in example_names()]


STDLIB_KERNELS = ("softmax_rows", "matmul", "layernorm_rows", "rmsnorm_rows", "flash_attention", "rotary",
                  "adam_update")


def _stdlib_kernel_units() -> list[Unit]:
    m = tessera.compile(f"from stdlib.kernels import {', '.join(STDLIB_KERNELS)}\n")
    ks = {n: m.runtime.module_attr("stdlib.kernels", n) for n in STDLIB_KERNELS}
    rng = np.random.default_rng(0)
    units = []
    for dt in (np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)):
        def t(*shape: int, dt: np.dtype = dt) -> np.ndarray:
            return rng.standard_normal(shape).astype(dt)

        lows = [ks["softmax_rows"].lowered(t(37, 300)),
                ks["matmul"].lowered(t(70, 128), t(128, 33), t(33), t(70, 33),
                                     epilogue=("bias", "residual", "gelu", "silu")),
                ks["layernorm_rows"].lowered(t(9, 256), t(256), t(256), eps=1e-5),
                ks["rmsnorm_rows"].lowered(t(9, 256), t(256), eps=1e-5),
                ks["flash_attention"].lowered(t(2, 40, 32), t(2, 50, 32), t(2, 50, 32), causal=True),
                ks["rotary"].lowered(t(9, 64), t(9, 32), t(9, 32)),
                ks["adam_update"].lowered(t(3000), t(3000), t(3000), t(3000), lr=1e-3, beta1=0.9, beta2=0.99,
                                          eps=1e-8, step=1.0, grid=(3,))]
        assert [low.kernel.name for low in lows] == [f"kernel_{n}" for n in STDLIB_KERNELS]
        units.append(Unit(f"stdlib.kernels:{dt}", [low.kernel for low in lows]))
    return units


NN_SOURCE = """
from stdlib.nn import softmax_safe, logsumexp_safe, layernorm_safe, rmsnorm_safe, gelu_exact, gelu_tanh, gelu
from stdlib.nn import rotary_embedding, cross_entropy, mse, attention


@jit
def nn_softmax(x: Tensor["N", "M", DT]) -> Tensor["N", "M", DT]:
    return softmax_safe(x)


@jit
def nn_logsumexp(x: Tensor["N", "M", DT]) -> Tensor["N", DT]:
    return logsumexp_safe(x)


@jit
def nn_layernorm(x: Tensor["N", "M", DT], w: Tensor["M", DT], b: Tensor["M", DT]) -> Tensor["N", "M", DT]:
    return layernorm_safe(x, w, b)


@jit
def nn_rmsnorm(x: Tensor["N", "M", DT], w: Tensor["M", DT]) -> Tensor["N", "M", DT]:
    return rmsnorm_safe(x, w)


@jit
def nn_gelu(x: Tensor["N", "M", DT]) -> Tensor["N", "M", DT]:
    return gelu_exact(x) + gelu_tanh(x) + gelu(x, approximate="tanh")


@jit
def nn_rotary(x: Tensor["S", "D", DT], cos: Tensor["S", "H", DT], sin: Tensor["S", "H", DT]) -> Tensor["S", "D", DT]
        where D == 2 * H:
    return rotary_embedding(x, cos, sin)


@jit
def nn_cross_entropy(logits: Tensor["N", "M", DT], labels: Tensor["N", int64]) -> Tensor[f32]:
    return cross_entropy(logits, labels)


@jit
def nn_mse(a: Tensor["N", "M", DT], b: Tensor["N", "M", DT]) -> Tensor[f32]:
    return mse(a, b)


@jit
def nn_attention(q: Tensor["B", "S", "D", DT], k: Tensor["B", "S", "D", DT],
                 v: Tensor["B", "S", "D", DT]) -> Tensor["B", "S", "D", DT]:
    return attention(q, k, v, causal=True)
"""
NN_FUNCTIONS = ("softmax_safe", "logsumexp_safe", "layernorm_safe", "rmsnorm_safe", "gelu_exact", "gelu_tanh",
                "gelu", "rotary_embedding", "cross_entropy", "mse", "attention")
NN_DIMS = {"N": 37, "M": 300, "S": 24, "D": 64, "B": 2}


def _nn_units(workdir: Path) -> list[Unit]:
    units = []
    for dt in ("f32", "bf16"):
        path = workdir / f"nn_{dt}.tsr"
        path.write_text(NN_SOURCE.replace("DT", dt))
        report = check_file(path)
        assert report.result is not None and not report.diagnostics, report.diagnostics
        checked = report.result
        kernels = []
        for fn in checked.program.root.tree.functions:
            sig = checked.signatures[fn]
            env = stages.bind(sig, {s: v for s, v in NN_DIMS.items() if s in sig.symbols})
            low = stages.lower_to(checked, fn, "tile", stages.static_defaults(sig, fn), env)
            kernels += low.kernels or []
        units.append(Unit(f"stdlib.nn:{dt}", kernels))
    return units


def tile_kernels() -> list[Kernel]:
    return [
        softmax_rows(256, False), softmax_rows(64, True, name="softmax_online"),
        softmax_rows(96, True, dtype=BF16, name="softmax_bf16"), softmax_rows(4096, False, name="softmax_wide"),
        elementwise_chain(), elementwise_chain(BF16, F16, block=(4, 64), name="chain_bf16"),
        layernorm_rows(128, rows=2), matmul_epilogue((32, 32), 16),
        matmul_epilogue((64, 64), 32, BF16, BF16, name="matmul_bf16"),
        matmul_epilogue((16, 32), 16, transpose_b_block=True, name="matmul_t"), argmax_rows(64),
        column_reduce("sum", (8, 16)), column_reduce("max", (8, 16), INT32, name="colmax_i32"), gather_rows(64),
        batched_scale_transpose((4, 8)), unary("erf", name="k_erf"), unary("isnan", name="k_isnan"),
        binary("floordiv", INT8, name="floordiv_i8"), binary("mod", INT64, name="mod_i64"),
        binary("pow", INT32, name="pow_i32"), binary("maximum", F64, name="max_f64"),
        cast_kernel(F32, DTYPES["fp8_e4m3"]), cast_kernel(DTYPES["fp8_e5m2"], F32), cast_kernel(F32, INT8),
        cast_kernel(BOOL, F16), cast_kernel(F64, F32, "toward_zero"), cast_kernel(F32, DTYPES["uint8"]),
    ]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Unit, int, str]]:
    """Every unit emitted for gfx90a and compiled by clang, two at a time per core."""
    if CLANG is None or DEVICE_LIBS is None:
        pytest.skip("clang++-15 with the HIP headers and ROCm device libraries is not installed")
    workdir = tmp_path_factory.mktemp("hip")
    units = [*_example_units(), *_stdlib_kernel_units(), *_nn_units(workdir), Unit("tile_kernels", tile_kernels())]
    sources = [emit_kernels_hip(u.kernels, "gfx90a") for u in units]

    def build(i: int) -> tuple[int, str]:
        return compile_for(sources[i], workdir, f"u{i}")

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(build, range(len(units))))
    return {u.id: (u, rc, out) for u, (rc, out) in zip(units, results)}


UNIT_IDS = ([f"example:{f}:{fn}" for f, fn in example_names()]
            + [f"stdlib.kernels:{dt}" for dt in ("float32", "bfloat16")]
            + ["stdlib.nn:f32", "stdlib.nn:bf16", "tile_kernels"])


@needs_clang
@pytest.mark.parametrize("unit", UNIT_IDS)
def test_every_kernel_compiles_for_gfx90a(compiled: dict[str, tuple[Unit, int, str]], unit: str) -> None:
    u, rc, asm = compiled[unit]
    assert rc == 0, f"{unit}: clang failed:\n{asm[:4000]}"
    names = re.findall(r"^\s*\.amdhsa_kernel (\S+)$", asm, re.MULTILINE)
    assert sorted(names) == sorted(k.name for k in u.kernels), unit
    assert asm.count(".wavefront_size: 64") == len(u.kernels)
    # Kernels without a dot keep their slots in registers: no spills, no scratch memory. (The FMA loop
    # of a dot over 16-lane slots - a bool operand makes the vectors 16 wide - may spill.)
    blocks = re.split(r"^\s*\.amdhsa_kernel ", asm, flags=re.MULTILINE)[1:]
    for k in u.kernels:
        if "dot(" in print_kernel(k):
            continue
        text = next(b for b in blocks if b.startswith(k.name + "\n"))
        # Spilled registers would live in scratch (private segment) memory.
        assert ".amdhsa_private_segment_fixed_size 0\n" in text, f"{unit}: {k.name} uses scratch memory"


@needs_clang
def test_the_units_cover_every_stdlib_function(compiled: dict[str, tuple[Unit, int, str]]) -> None:
    nn = (ROOT / "stdlib" / "nn.tsr").read_text()
    assert sorted(re.findall(r"^def (\w+)\(", nn, re.MULTILINE)) == sorted(NN_FUNCTIONS)
    assert all(f"{n}(" in NN_SOURCE for n in NN_FUNCTIONS)
    kernels = (ROOT / "stdlib" / "kernels.tsr").read_text()
    assert sorted(re.findall(r"^def (\w+)\(", kernels, re.MULTILINE)) == sorted(STDLIB_KERNELS)
    assert len(compiled["stdlib.nn:f32"][0].kernels) >= len(NN_FUNCTIONS)


@needs_clang
def test_wave32_code_compiles_for_rdna(tmp_path: Path) -> None:
    # gfx1030 (RDNA2): Debian's ROCm 5.2 device libraries predate gfx11.
    kernels = [softmax_rows(256, False), layernorm_rows(128, rows=2), matmul_epilogue((32, 32), 16)]
    rc, asm = compile_for(emit_kernels_hip(kernels, "gfx1030"), tmp_path, "rdna2", "gfx1030")
    assert rc == 0, asm
    assert asm.count(".wavefront_size: 32") == len(kernels)


# ---------------------------------------------------------------- what the C++ looks like


def _hip(k: Kernel, arch: str = "gfx90a") -> str:
    return emit_hip(Module([lower_kernel(k, hip_target_info(arch))]), arch)


def test_softmax_wave64_shuffles_across_64_lanes() -> None:
    # 1024 columns of f32 are 256 chunks of 4: a row spans 4 wavefronts of 64 threads.
    filecheck(_hip(softmax_rows(1024, False, name="sm")), """
        CHECK: // for gfx90a: wavefronts of 64
        CHECK: #pragma clang fp contract(off)
        CHECK: typedef float tf_f32x4 __attribute__((ext_vector_type(4)));
        CHECK: extern "C" __global__ void __launch_bounds__(256) sm(
        CHECK-NEXT: float* x,
        CHECK: __shared__ __attribute__((aligned(16))) unsigned char tf_smem[
        CHECK: (long long)threadIdx.x;
        CHECK: (long long)blockIdx.x;
        CHECK: float* const [[SCRATCH:s[0-9]+]] = (float*)(tf_smem + 0);
        CHECK: const tf_f32x4 w{{[0-9]+}} = *(const tf_f32x4*)(p{{[0-9]+}} + 0);
        CHECK: tf_fmax(
        CHECK: __shfl_xor(v{{[0-9]+}}, 32, 64);
        CHECK: __shfl_xor(v{{[0-9]+}}, 1, 64);
        CHECK: float* const [[SLOT:p[0-9]+]] = [[SCRATCH]] + v{{[0-9]+}};
        CHECK-NEXT: [[SLOT]][0] = v{{[0-9]+}};
        CHECK: __syncthreads();
        CHECK: __builtin_fmaf(
        CHECK: __shfl_xor(
        CHECK: const float v{{[0-9]+}} = v{{[0-9]+}} / v{{[0-9]+}};
        CHECK: *(tf_f32x4*)(p{{[0-9]+}} + 0) = (tf_f32x4){
        CHECK: return;
    """)


def test_wave32_targets_shuffle_within_32_lanes() -> None:
    src = _hip(softmax_rows(256, False, name="sm"), "gfx1100")
    filecheck(src, """
        CHECK: // for gfx1100: wavefronts of 32
        CHECK: __launch_bounds__(128) sm(
        CHECK: __shfl_xor(v{{[0-9]+}}, 16, 32);
    """)
    assert ", 64)" not in src


def test_bf16_blocks_move_as_16_byte_vectors_and_loops_carry_variables() -> None:
    # RDNA has no MFMA: the dot is the FMA loop over shared tiles.
    filecheck(_hip(matmul_epilogue((64, 64), 32, BF16, BF16, name="mmb"), "gfx1030"), """
        CHECK: typedef short tf_i16x8 __attribute__((ext_vector_type(8)));
        CHECK: __launch_bounds__(128) mmb(
        CHECK-NEXT: short* x,
        CHECK: float [[ACC:m[0-9]+]] = c{{[0-9]+}};
        CHECK: for (long long [[K:i[0-9]+]] = c{{[0-9]+}}; [[K]] < {{[a-z0-9_]+}}; [[K]] += c{{[0-9]+}}) {
        CHECK: *(const tf_i16x8*)(
        CHECK: __syncthreads();
        CHECK: for (long long [[KK:i[0-9]+]] =
        CHECK: = __builtin_fmaf(v{{[0-9]+}}, w{{[0-9]+}}[0], [[INNER:m[0-9]+]]);
        CHECK: [[INNER]] = v{{[0-9]+}};
        CHECK: }
        CHECK-NEXT: [[ACC]] = m{{[0-9]+}};
    """)


def test_cdna_bf16_dots_use_mfma_builtins() -> None:
    filecheck(_hip(matmul_epilogue((64, 64), 32, BF16, BF16, name="mmb")), """
        CHECK: __launch_bounds__(256) mmb(
        CHECK: if (v{{[0-9]+}} >= 16) {
        CHECK-NEXT: *(tf_i32x4*)p{{[0-9]+}} = *(const tf_i32x4*)p{{[0-9]+}};
        CHECK: for (long long [[K:i[0-9]+]] =
        CHECK: const tf_i32x2 w{{[0-9]+}} = *(const tf_i32x2*)(p{{[0-9]+}} + 0);
        CHECK: const tf_f32x4 w{{[0-9]+}} = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(tf_i16x4, \
(tf_i32x2){w{{[0-9]+}}[0], w{{[0-9]+}}[1]}), __builtin_bit_cast(tf_i16x4, (tf_i32x2){v{{[0-9]+}}, v{{[0-9]+}}}), \
(tf_f32x4){m{{[0-9]+}}, m{{[0-9]+}}, m{{[0-9]+}}, m{{[0-9]+}}}, 0, 0, 0);
        CHECK: }
    """)  # (a backslash-newline joins the lines of one pattern)
    f16 = _hip(matmul_epilogue((64, 64), 32, F16, F16, name="mmh"))
    assert "__builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(tf_f16x4, " in f16
    assert "__builtin_amdgcn_mfma" not in _hip(matmul_epilogue((64, 64), 32, name="mmf"))  # f32 operands: FMAs


def test_integer_semantics_are_spelled_without_undefined_behaviour() -> None:
    src = _hip(binary("floordiv", INT8, name="fdiv_i8")) + _hip(cast_kernel(F32, INT8)) + _hip(unary("neg", INT32))
    filecheck(src, """
        CHECK: fdiv_i8(
        CHECK: (signed char)({{[mv][0-9]+}} / v{{[0-9]+}})
        CHECK: __launch_bounds__
        CHECK: != v{{[0-9]+}} ? (signed char)0 : v{{[0-9]+}} <= (float)-0x1.0000000000000p+7 ? ((signed char)-128) :
        CHECK: __launch_bounds__
        CHECK: (int)(0u - (unsigned){{[mv][0-9]+}})
    """)


def test_unsupported_math_is_a_clear_error() -> None:
    # f32 sin/cos/pow/fmod and the f64 transcendentals are expanded as for CUDA; an f64 remainder is not.
    assert "__builtin_fma(" in _hip(unary("sin", F64, name="sin64"))
    with pytest.raises(GpuUnsupported, match="float remainder"):
        _hip(binary("mod", F64, name="fmod"))
    with pytest.raises(TargetIRError, match="not a GPU kernel"):
        from tessera.codegen.hip import emit_function
        from tessera.runtime.cpu_features import cpu_target_info

        emit_function(lower_kernel(unary("exp"), cpu_target_info()), 64)
    with pytest.raises(TargetIRError, match="unknown AMD GPU architecture 'gfx803'"):
        emit_hip(Module([]), "gfx803")


def test_target_info_rows() -> None:
    assert (WAVE64.warp_size, WAVE64.program_model, WAVE64.name) == (64, "cta", "hip")
    assert (WAVE64.mma, WAVE32.mma, hip_target_info("gfx908").mma) == ("amd_mfma_16x16x16", "", "")
    assert hip_target_info("gfx942:sramecc+:xnack-").cpu == "gfx942"
    assert WAVE32.warp_size == 32 and WAVE64.key() != WAVE32.key()
    with pytest.raises(ValueError, match="unknown AMD GPU architecture"):
        hip_target_info("sm_90a")


# ---------------------------------------------------------------- wave64 numerics in the interpreter


def wave64(k: Kernel) -> Function:
    f = lower_kernel(k, WAVE64)
    verify_function(f)
    assert f.threads == 64 * k.schedule.warps
    return f


def agree64(k: Kernel, arrays: list[np.ndarray], outs: list[int], cpu: CpuRuntime, rtol: float) -> None:
    """k on the CPU and lowered for wave64 in the interpreter (outputs poisoned with NaN first) agree."""
    want = [a.copy() for a in arrays]
    cpu.compile([k]).launch(k.name, want)
    got = [np.full_like(a, np.nan if a.dtype.kind == "f" or a.dtype == ml_dtypes.bfloat16 else -1)
           if i in outs else a.copy() for i, a in enumerate(arrays)]
    run_kernel(wave64(k), k, got)
    for i in outs:
        np.testing.assert_allclose(got[i].astype(np.float64), want[i].astype(np.float64), rtol=rtol, atol=1e-6,
                                   err_msg=f"{k.name} output {i}")


def test_wave64_layouts_keep_rows_in_one_wavefront() -> None:
    # 8 rows of 1024 f32 over 256 threads: a row is one wavefront of 64 threads (32 with warps of 32).
    lay = natural((8, 1024), 4, 256, 64)
    assert (lay.tc, lay.tr, lay.rpt, lay.cpt) == (64, 4, 2, 4)
    assert natural((8, 1024), 4, 256).tc == 32


@pytest.mark.parametrize(("bn", "online", "n", "rows"), [(256, False, 200, 23), (1024, False, 1000, 5),
                                                         (4096, False, 4000, 3), (64, True, 300, 23)])
def test_wave64_softmax_rows(cpu: CpuRuntime, bn: int, online: bool, n: int, rows: int) -> None:
    # 1024 and 4096 columns: rows spread over several wavefronts, combined through shared memory.
    rng = np.random.default_rng()
    x = (rng.standard_normal((rows, n)) * 5).astype(np.float32)
    x[1, 3] = np.inf
    k = softmax_rows(bn, online, name=f"softmax64_{bn}")
    agree64(k, [x, np.empty_like(x)], [1], cpu, rtol=2e-6)


def test_wave64_layernorm_matmul_and_column_reductions(cpu: CpuRuntime) -> None:
    rng = np.random.default_rng()
    x = rng.standard_normal((7, 100)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(100).astype(np.float32), rng.standard_normal(100).astype(np.float32)
    agree64(layernorm_rows(128, rows=3), [x, w, b, np.empty_like(x)], [3], cpu, rtol=1e-5)
    a = rng.standard_normal((45, 70)).astype(ml_dtypes.bfloat16)
    bm = rng.standard_normal((70, 50)).astype(ml_dtypes.bfloat16)
    bias = rng.standard_normal(50).astype(np.float32)
    agree64(matmul_epilogue((64, 64), 32, BF16, BF16, name="mm64"), [a, bm, bias, np.empty((45, 50), a.dtype)],
            [3], cpu, rtol=2.0 ** -7)
    xs = rng.standard_normal((30, 21)).astype(np.float32)
    for kind in ("sum", "max"):
        agree64(column_reduce(kind, (8, 16)), [xs, np.empty((1, 21), np.float32)], [1], cpu, rtol=1e-5)
    agree64(argmax_rows(64), [xs, np.zeros((30, 1), np.int64)], [1], cpu, rtol=0)


MFMA_CASES = [("amd_mfma_16x16x16", BF16, (64, 64)), ("amd_mfma_16x16x16", F16, (64, 64)),
              ("amd_mfma_16x16x16", BF16, (32, 64)), ("amd_mfma_32x32x8", BF16, (128, 64)),
              ("amd_mfma_32x32x8", F16, (64, 128))]


@pytest.mark.parametrize(("layout", "dt", "block"), MFMA_CASES)
def test_wave64_mfma_matmuls(cpu: CpuRuntime, layout: str, dt: DType, block: tuple[int, int]) -> None:
    # The MFMA fragment layouts run lane by lane in the interpreter: ragged M, N and K, a bias epilogue.
    rng = np.random.default_rng()
    npdt = numpy_dtype(dt)
    k = matmul_epilogue(block, 32, dt, dt, name=f"mfma_{block[0]}_{block[1]}")
    info = dataclasses.replace(WAVE64, mma=layout)
    f = lower_kernel(k, info)
    verify_function(f)
    assert print_function(f).count(f"layout = \"{layout}\"") > 0
    a, b = rng.standard_normal((45, 70)).astype(npdt), rng.standard_normal((70, 150)).astype(npdt)
    arrays = [a, b, rng.standard_normal(150).astype(np.float32), np.empty((45, 150), npdt)]
    want = [x.copy() for x in arrays]
    cpu.compile([k]).launch(k.name, want)
    got = [x.copy() for x in arrays]
    got[3][...] = np.nan
    run_kernel(f, k, got)
    # One rounding of an f32 sum apart: a narrow ulp of the result.
    np.testing.assert_allclose(got[3].astype(np.float64), want[3].astype(np.float64),
                               rtol=NARROW[dt], atol=NARROW[dt] * 4)


@needs_clang
def test_mfma_builtins_compile_to_matrix_instructions(tmp_path: Path) -> None:
    funcs = []
    for layout, dt, block in MFMA_CASES:
        info = dataclasses.replace(WAVE64, mma=layout)
        funcs.append(lower_kernel(matmul_epilogue(block, 32, dt, dt, name=f"mm_{layout}_{dt}_{block[0]}"), info))
    rc, asm = compile_for(emit_hip(Module(funcs), "gfx90a"), tmp_path, "mfma")
    assert rc == 0, asm
    for ins in ("v_mfma_f32_16x16x16bf16_1k", "v_mfma_f32_16x16x16f16", "v_mfma_f32_32x32x8bf16_1k",
                "v_mfma_f32_32x32x8f16"):
        assert ins in asm, ins


@pytest.mark.parametrize(("file", "fn"), example_names())
def test_wave64_examples_match_the_reference(file: str, fn: str) -> None:
    case = example_case(file, fn)
    fns = {k.name: (k, wave64(k)) for k in case.lowered.kernels or []}

    class Interpreted:
        def launch(self, name: str, arrays: list[np.ndarray]) -> None:
            k, f = fns[name]
            run_kernel(f, k, arrays)

    compiled = CompiledFunction(case.lowered.plan, case.lowered.kernels, Interpreted(), poison=True)
    xs = case.inputs(np.random.default_rng())
    got = compiled(*xs)
    same = evaluate(case.lowered.graph, xs)
    for g, s in zip(got, same):
        g64, s64 = g.astype(np.float64), s.astype(np.float64)
        assert not np.isnan(g64).any(), f"{case.id}: unwritten (NaN) elements"
        rel = np.linalg.norm(g64 - s64) / np.linalg.norm(s64)
        # bf16 results: reductions in another order flip the rounding of a few elements by an ulp.
        assert rel < (2e-3 if g.dtype == ml_dtypes.bfloat16 else 1e-5), f"{case.id}: {rel:.2e} from the reference"


# ---------------------------------------------------------------- the command line


def test_tessera_lower_prints_hip(monkeypatch: pytest.MonkeyPatch) -> None:
    mlp = str(ROOT / "examples" / "mlp.tsr")
    args = ["lower", mlp, "--stage", "hip", "--dim", "B=4", "--dim", "D=16"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.stderr
    assert "// for gfx90a: wavefronts of 64" in r.stdout and r.stdout.count('extern "C" __global__') == 2
    monkeypatch.setenv("TESSERA_HIP_ARCH", "gfx1100")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "// for gfx1100: wavefronts of 32" in r.stdout
    monkeypatch.setenv("TESSERA_HIP_ARCH", "gfx803")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "TESSERA_HIP_ARCH=gfx803: unknown AMD GPU architecture" in r.stderr


def test_tessera_lower_prints_hip_for_a_kernel(tmp_path: Path) -> None:
    prog = tmp_path / "k.tsr"
    prog.write_text('@kernel\ndef double(x: KTile["N", f32]) -> KTile["N", f32]:\n'
                    '    return tile.load(x) * 2.0\n')
    r = CliRunner().invoke(main, ["lower", str(prog), "--fn", "double", "--stage", "hip", "--dim", "N=100"])
    assert r.exit_code == 0, r.stderr
    assert 'extern "C" __global__' in r.stdout and "kernel_double" in r.stdout


def test_tessera_run_on_hip_without_a_gpu_is_one_line_and_exit_3() -> None:
    from tessera.runtime.hip import available

    why = available()
    if why is None:
        pytest.skip("an AMD GPU is available here")
    r = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "softmax.tsr"), "--target", "hip"])
    assert r.exit_code == 3
    assert r.stderr == f"error: the hip target cannot run here: {why}\n" and r.stdout == ""
