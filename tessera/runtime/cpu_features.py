"""The host CPU as LLVM sees it: triple, CPU name, feature flags, and the SIMD width they imply
(AVX-512 -> 16 f32 lanes, AVX2 -> 8, otherwise 4). `TESSERA_VECTOR_BITS` (128/256/512) narrows the
width, e.g. to test the AVX2 code path on an AVX-512 machine."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from tessera.ir.target.info import TargetInfo


@dataclass(frozen=True)
class HostCPU:
    triple: str
    name: str
    features: frozenset[str]  # enabled feature names, without the '+'
    feature_string: str  # as LLVM takes it: "+avx2,+fma,-avx512f,..."

    def has(self, feature: str) -> bool:
        return feature in self.features


@functools.cache
def host_cpu() -> HostCPU:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    fmap = llvm.get_host_cpu_features()
    enabled = frozenset(k for k, v in fmap.items() if v)
    return HostCPU(llvm.get_process_triple(), llvm.get_host_cpu_name(), enabled, fmap.flatten())


def vector_bits(cpu: HostCPU) -> int:
    if cpu.has("avx512f"):
        bits = 512
    elif cpu.has("avx2") or cpu.has("avx"):
        bits = 256
    else:
        bits = 128  # SSE2 / NEON
    override = os.environ.get("TESSERA_VECTOR_BITS")
    if override:
        if override not in ("128", "256", "512"):
            raise ValueError(f"TESSERA_VECTOR_BITS must be 128, 256 or 512, got {override!r}")
        bits = min(bits, int(override))
    return bits


def cpu_target_info(bits: int | None = None) -> TargetInfo:
    """The TargetInfo of this machine (optionally with a narrower vector width)."""
    cpu = host_cpu()
    width = vector_bits(cpu) if bits is None else min(bits, vector_bits(cpu))
    regs = 32 if cpu.has("avx512f") else 16
    return TargetInfo(name="cpu", triple=cpu.triple, cpu=cpu.name, features=cpu.feature_string,
                      vector_bits=width, vector_registers=regs, program_model="loop",
                      has_fma=cpu.has("fma") or cpu.triple.startswith(("aarch64", "arm64")))
