"""TargetInfo: the table of what a lowering needs to know about a target.

The Tile -> Target lowering reads only this record, so a new target is a new row (and an emitter),
not a fork of the lowering: the SIMD width and register count size the vector loops and the dot
micro-kernel, `program_model` says how programs map onto execution (a CPU function loops over a
range of programs; a GPU runs one program per CTA), `expand_math` lists the f32 math functions
that have no fast native form and are expanded into polynomial sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

# f32 math functions the CPU has no vector instruction for: LLVM would scalarise them into libm
# calls, so the lowering expands them (tessera/codegen/mathlib.py).
CPU_EXPANDED_MATH = frozenset({"exp", "log", "tanh", "erf"})


@dataclass(frozen=True)
class TargetInfo:
    name: str  # "cpu" (later "cuda", "hip")
    triple: str
    cpu: str
    features: str  # LLVM feature string, e.g. "+avx2,+fma,..."
    vector_bits: int  # SIMD register width
    vector_registers: int  # architectural SIMD registers (sizes the dot micro-kernel)
    program_model: str = "loop"  # "loop": one function runs programs [begin, end); "cta": one per CTA
    expand_math: frozenset[str] = CPU_EXPANDED_MATH
    has_fma: bool = True
    max_local_bytes: int = 4 << 20  # stack arrays per program (threads have 8 MiB stacks)

    @property
    def lanes(self) -> int:
        """Lanes of one 32-bit-element vector: the chunk width of vectorised loops."""
        return max(1, self.vector_bits // 32)

    def key(self) -> str:
        """What compiled code depends on (part of the code-cache key)."""
        return (f"{self.name}|{self.triple}|{self.cpu}|{self.features}|{self.vector_bits}|"
                f"{self.vector_registers}|{self.program_model}|{','.join(sorted(self.expand_math))}")
