"""TargetInfo: the table of what a lowering needs to know about a target.

The Tile -> Target lowering reads only this record, so a new target is a new row (and an emitter),
not a fork of the lowering: the SIMD width and register count size the vector loops and the dot
micro-kernel, `program_model` says how programs map onto execution (a CPU function loops over a
range of programs; a GPU runs one program per CTA), `expand_math` lists the f32 math functions
that have no fast native form and are expanded into polynomial sequences, `warp_size` is the width
of a GPU's lockstep thread group (an NVIDIA warp, an AMD wavefront of 64 or 32): the GPU lowering
sizes programs, layouts and shuffle reductions by it.
"""

from __future__ import annotations

from dataclasses import dataclass

# f32 math functions the CPU has no vector instruction for: LLVM would scalarise them into libm
# calls, so the lowering expands them (tessera/codegen/mathlib.py).
CPU_EXPANDED_MATH = frozenset({"exp", "log", "tanh", "erf"})


@dataclass(frozen=True)
class TargetInfo:
    name: str  # "cpu", "cuda", "hip"
    triple: str
    cpu: str
    features: str  # LLVM feature string, e.g. "+avx2,+fma,..."
    vector_bits: int  # SIMD register width
    vector_registers: int  # architectural SIMD registers (sizes the dot micro-kernel)
    program_model: str = "loop"  # "loop": one function runs programs [begin, end); "cta": one per CTA
    expand_math: frozenset[str] = CPU_EXPANDED_MATH
    has_fma: bool = True
    max_local_bytes: int = 4 << 20  # stack arrays per program (threads have 8 MiB stacks)
    warp_size: int = 32  # GPU threads that run in lockstep and exchange values by shuffles (AMD: wave64/32)
    mma: str = ""  # GPU matrix unit: a fragment layout of tessera/ir/gpu_mma.py ("": none, dot uses FMAs)
    max_shared_bytes: int = 48 * 1024  # GPU shared memory one program may use (beyond 48 KiB: dynamic)

    @property
    def lanes(self) -> int:
        """Lanes of one 32-bit-element vector: the chunk width of vectorised loops."""
        return max(1, self.vector_bits // 32)

    def key(self) -> str:
        """What compiled code depends on (part of the code-cache key)."""
        return (f"{self.name}|{self.triple}|{self.cpu}|{self.features}|{self.vector_bits}|"
                f"{self.vector_registers}|{self.program_model}|{','.join(sorted(self.expand_math))}|w{self.warp_size}|"
                f"{self.mma}|{self.max_shared_bytes}")


# ---------------------------------------------------------------- AMD GPUs


@dataclass(frozen=True)
class AmdArch:
    """An AMD GPU architecture the HIP backend compiles for."""

    name: str  # the --offload-arch, e.g. "gfx90a"
    wave: int  # wavefront size: 64 on CDNA (Instinct) and GCN, 32 on RDNA
    mma: str  # the matrix-core fragment layout (tessera/ir/gpu_mfma.py) bf16/f16 dots use; "": FMAs


AMD_ARCHS: dict[str, AmdArch] = {a.name: a for a in (
    AmdArch("gfx908", 64, ""),  # MI100: its bf16 MFMA is the older 2-element form, not used
    AmdArch("gfx90a", 64, "amd_mfma_16x16x16"),  # MI200
    AmdArch("gfx940", 64, "amd_mfma_16x16x16"), AmdArch("gfx941", 64, "amd_mfma_16x16x16"),
    AmdArch("gfx942", 64, "amd_mfma_16x16x16"),  # MI300
    AmdArch("gfx1030", 32, ""),  # RDNA2
    AmdArch("gfx1100", 32, ""), AmdArch("gfx1101", 32, ""), AmdArch("gfx1102", 32, ""),  # RDNA3 (WMMA: not used)
)}
DEFAULT_AMD_ARCH = "gfx90a"


def amd_arch(name: str) -> AmdArch:
    """The row of an AMD architecture; the name may carry target features ("gfx90a:sramecc+:xnack-")."""
    base = name.split(":")[0].strip()
    if base not in AMD_ARCHS:
        raise ValueError(f"unknown AMD GPU architecture '{name}' (known: {', '.join(AMD_ARCHS)})")
    return AMD_ARCHS[base]


def hip_target_info(arch: str = DEFAULT_AMD_ARCH) -> TargetInfo:
    """The TargetInfo row of an AMD GPU: one workgroup per program, `warp_size` its wavefront."""
    from tessera.codegen.ptx import GPU_EXPANDED_MATH

    a = amd_arch(arch)
    # The math functions are expanded exactly as for CUDA (the device library's are not correctly
    # rounded either), so both vendors compute the same values; the LDS holds 64 KiB per workgroup,
    # all of it usable by a static __shared__ array.
    return TargetInfo(name="hip", triple="amdgcn-amd-amdhsa", cpu=a.name, features="", vector_bits=128,
                      vector_registers=0, program_model="cta", expand_math=GPU_EXPANDED_MATH, has_fma=True,
                      max_local_bytes=0, warp_size=a.wave, mma=a.mma, max_shared_bytes=64 * 1024)
