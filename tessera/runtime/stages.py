"""The lowering stages of one `@jit` function, as `tessera lower`, `tessera build` and the REPL's
`:lower` show them: Graph IR (symbolic, or specialised to `--dim` extents) → Schedule IR (a plan of
fused kernels) → Tile IR (one tile program per kernel) → Target IR → LLVM IR (the CPU) or PTX (CUDA GPUs,
for $TESSERA_CUDA_ARCH: sm_90a by default, or sm_80) or HIP C++ (AMD GPUs, for $TESSERA_HIP_ARCH: gfx90a
by default).

Every stage below the graph needs concrete extents for every dim symbol; `missing_symbols` says which
are not bound yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera.frontend import ast
from tessera.frontend.types import TensorType
from tessera.runtime.dispatch import Binding, derive_symbols

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult
    from tessera.frontend.signatures import Signature
    from tessera.ir.graph.ops import Function

STAGES = ("graph", "schedule", "tile", "target", "llvm", "ptx", "hip")
UNAVAILABLE_STAGES: tuple[str, ...] = ()


class StageError(Exception):
    """A request the user must change (unbound symbols, a missing static argument): a usage error."""


def unavailable_stage(stage: str) -> str:
    backend = "cuda" if stage == "ptx" else "hip"
    return (f"the {stage} stage is not available yet in this version of Tessera (it arrives with the "
            f"{backend} backend); the CPU stages are graph, schedule, tile, target and llvm")


def cuda_arch() -> str:
    """The GPU architecture `--stage ptx` emits for: $TESSERA_CUDA_ARCH, else sm_90a."""
    arch = os.environ.get("TESSERA_CUDA_ARCH", "").strip() or "sm_90a"
    from tessera.codegen.ptx import ARCHS

    if arch not in ARCHS:
        raise StageError(f"TESSERA_CUDA_ARCH={arch} is not a known architecture ({', '.join(ARCHS)})")
    return arch


def hip_arch() -> str:
    """The AMD GPU architecture `--stage hip` emits for: $TESSERA_HIP_ARCH, else gfx90a."""
    from tessera.ir.target.info import DEFAULT_AMD_ARCH, amd_arch

    arch = os.environ.get("TESSERA_HIP_ARCH", "").strip() or DEFAULT_AMD_ARCH
    try:
        return amd_arch(arch).name
    except ValueError as ex:
        raise StageError(f"TESSERA_HIP_ARCH={arch}: {ex}") from None


def bind(sig: Signature, dims: Mapping[str, int]) -> dict[str, int]:
    """The given extents plus those `where` equalities fix (`H == 4 * D` gives H from D)."""
    b = Binding(dict(dims))
    derive_symbols(sig, b)
    return b.env


def param_symbols(sig: Signature) -> set[str]:
    out: set[str] = set()
    for p in sig.params:
        if isinstance(p.ty, TensorType):
            for d in p.ty.dims:
                out |= d.free_symbols
    return out


def missing_symbols(sig: Signature, env: Mapping[str, int]) -> list[str]:
    """The unbound symbols to ask for: those no `where` equality derives once the others are bound."""
    missing = sorted(param_symbols(sig) - env.keys())
    needed = list(missing)
    # Try first to drop the symbols a `where` equality defines (`H == 4 * D` defines H from D).
    defined = {str(c.lhs) for c, _ in sig.constraints if c.kind == "=="}
    for s in sorted(missing, key=lambda x: x not in defined):
        # A highly divisible stand-in extent, so that `D == 16 * R` can derive R from D.
        trial = {**env, **{t: 720720 for t in needed if t != s}}
        if s in bind(sig, trial):
            needed.remove(s)
    return needed


def dim_flags(symbols: list[str]) -> str:
    """The command-line flags that bind these symbols, as a fix-it: `--dim M=<extent> ...`."""
    return " ".join(f"--dim {s}=<extent>" for s in symbols)


def require_bound(sig: Signature, env: Mapping[str, int], stage: str, name: str) -> None:
    """Below the graph stage every dim symbol needs an extent: a StageError naming the flags if not."""
    missing = missing_symbols(sig, env)
    if missing:
        raise StageError(f"the {stage} stage of '{name}' needs every dim symbol bound; missing "
                         f"{', '.join(missing)} (pass {dim_flags(missing)})")


def static_defaults(sig: Signature, fn: ast.FunctionDef) -> dict[str, object]:
    """The static (non-tensor) parameters' defaults; one without a default cannot be lowered alone."""
    static: dict[str, object] = {}
    for p, node in zip(sig.params, fn.params):
        if isinstance(p.ty, TensorType):
            continue
        if node.default is None or not isinstance(node.default, ast.Constant):
            raise StageError(f"'{fn.name}' has the static parameter '{p.name}' without a literal default; "
                             "lower it through a call instead")
        static[p.name] = node.default.value
    return static


@dataclass
class Lowered:
    """The artefacts of one function at every stage reached so far."""

    graph: Function
    plan: Any = None
    kernels: list[Any] | None = None
    target_fns: list[Any] | None = None
    llvm: str | None = None
    ptx: str | None = None
    hip: str | None = None


def graph_of(checked: CheckResult, fn: ast.FunctionDef, static: Mapping[str, object],
             env: Mapping[str, int] | None) -> Function:
    """Build the Graph IR; specialise it when extents are given; optimise."""
    from tessera.ir.graph.build import build_graph
    from tessera.ir.graph.passes import specialize_shapes
    from tessera.ir.graph.passes.pipeline import optimize

    g = build_graph(checked, fn, dict(static))
    if env is not None:
        # The builder may have rewritten symbols away (`where D == 16 * R` keeps R): bind those it kept.
        g = specialize_shapes(g, {s: v for s, v in env.items() if s in g.symbols})
    return optimize(g)


def lower(checked: CheckResult, fn: ast.FunctionDef, stage: str, dims: Mapping[str, int]) -> str:
    """The text of `fn` at `stage`, with the extents `dims` (required below the graph stage)."""
    if stage in UNAVAILABLE_STAGES:
        raise StageError(unavailable_stage(stage))
    if stage not in STAGES:
        raise StageError(f"unknown stage '{stage}'; stages: {', '.join(STAGES)}")
    sig = checked.signatures[fn]
    if sig.kind == "kernel":
        from tessera.runtime.kernels import lower_kernel_stage

        return lower_kernel_stage(checked, fn, stage, dims)
    env = bind(sig, dims)
    unknown = sorted(set(dims) - sig.symbols)
    if unknown:
        raise StageError(f"'{fn.name}' has no dim symbol {', '.join(unknown)} "
                         f"(its symbols: {', '.join(sorted(sig.symbols)) or 'none'})")
    if stage != "graph":
        require_bound(sig, env, stage, fn.name)
    static = static_defaults(sig, fn)
    low = lower_to(checked, fn, stage, static, env if (stage != "graph" or dims) else None)
    return render(low, stage)


def lower_to(checked: CheckResult, fn: ast.FunctionDef, stage: str, static: Mapping[str, object],
             env: Mapping[str, int] | None) -> Lowered:
    low = Lowered(graph_of(checked, fn, static, env))
    if stage == "graph":
        return low
    from tessera.ir.graph_to_schedule import partition

    low.plan = partition(low.graph)
    if stage == "ptx":
        from tessera.ir.schedule.gpu_heuristics import retarget

        retarget(low.plan)  # the schedules compile_function(target="cuda") runs
    if stage == "hip":
        from tessera.ir.schedule.gpu_heuristics import retarget
        from tessera.ir.target.info import hip_target_info

        retarget(low.plan, warp=hip_target_info(hip_arch()).warp_size)  # as compile_function(target="hip")
    if stage == "schedule":
        return low
    from tessera.ir.schedule_to_tile import lower_plan

    low.kernels = list(lower_plan(low.plan))
    if stage == "tile":
        return low
    if stage == "ptx":
        from tessera.runtime.cuda import emit_kernels_ptx

        low.ptx = emit_kernels_ptx(low.kernels, cuda_arch())
        return low
    if stage == "hip":
        from tessera.runtime.hip import emit_kernels_hip

        low.hip = emit_kernels_hip(low.kernels, hip_arch())
        return low
    from tessera.ir.tile_to_target import lower_kernel
    from tessera.runtime.cpu_features import cpu_target_info

    info = cpu_target_info()
    low.target_fns = [lower_kernel(k, info) for k in low.kernels]
    if stage == "target":
        return low
    from tessera.codegen.llvm import emit_llvm
    from tessera.ir.target.ops import Module as TargetModule

    low.llvm = emit_llvm(TargetModule(list(low.target_fns)), info)
    return low


def render(low: Lowered, stage: str) -> str:
    if stage == "graph":
        from tessera.ir.graph.printer import print_function

        return print_function(low.graph)
    if stage == "schedule":
        from tessera.ir.schedule.printer import print_plan

        return print_plan(low.plan)
    if stage == "tile":
        from tessera.ir.tile.printer import print_kernel

        return "\n".join(print_kernel(k) for k in low.kernels or [])
    if stage == "target":
        from tessera.ir.target.printer import print_function as print_target

        return "\n".join(print_target(f) for f in low.target_fns or [])
    if stage == "ptx":
        assert low.ptx is not None
        return low.ptx
    if stage == "hip":
        assert low.hip is not None
        return low.hip
    assert low.llvm is not None
    return low.llvm
