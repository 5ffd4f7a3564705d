"""The @jit functions of examples/*.tsr with small extents, lowered for a GPU (test helper, imported by
tests only): the cases the PTX and GPU tests run over; and the helpers they share for any .tsr file
(`lowered`, `jit_graph`) and for running a plan through the GPU lowering (`run_interpreted`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpu_interpreter import run_kernel

from tessera.codegen.ptx import cuda_target_info
from tessera.dtypes import numpy_dtype
from tessera.frontend.check import check_file
from tessera.frontend.signatures import Signature
from tessera.frontend.types import TensorType
from tessera.ir.graph.ops import Function as GraphFunction
from tessera.ir.schedule.ops import Plan
from tessera.ir.target.info import TargetInfo
from tessera.ir.target.verify import verify_function
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile_to_target import lower_kernel
from tessera.runtime import stages
from tessera.runtime.executor import CompiledFunction

ROOT = Path(__file__).resolve().parent.parent

# file -> function -> extents of its free dim symbols (the others follow from `where` equalities)
EXAMPLE_DIMS: dict[str, dict[str, dict[str, int]]] = {
    "softmax.tsr": {"row_softmax": {"N": 6, "M": 1000}, "row_softmax_bf16": {"N": 5, "M": 300}},
    "layernorm.tsr": {"norm": {"B": 2, "S": 3, "D": 128}, "norms_bf16": {"T": 5, "D": 96}},
    "mlp.tsr": {"mlp": {"B": 5, "D": 64}},
    "attention.tsr": {"causal_attention": {"B": 1, "H": 2, "S": 40, "D": 32},
                      "causal_attention_ref": {"B": 1, "H": 2, "S": 40, "D": 32}},
    "transformer_block.tsr": {"transformer_block": {"B": 1, "S": 24, "D": 64}},
}


@dataclass
class Case:
    file: str
    fn: str
    dims: dict[str, int]
    lowered: stages.Lowered
    shapes: list[tuple[int, ...]]  # of the tensor parameters
    dtypes: list[np.dtype]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.fn}"

    def inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal(s).astype(d) for s, d in zip(self.shapes, self.dtypes)]


def lowered(path: Path, fn_name: str, dims: dict[str, int], stage: str) -> tuple[stages.Lowered, Signature,
                                                                                   dict[str, int]]:
    """@jit function `fn_name` of the file at `path`, specialised to the extents `dims`, lowered to
    `stage`; with its signature and the bound extents."""
    checked = check_file(path).result
    assert checked is not None, path
    fn = next(f for f in checked.program.root.tree.functions if f.name == fn_name)
    sig = checked.signatures[fn]
    env = stages.bind(sig, dims)
    return stages.lower_to(checked, fn, stage, stages.static_defaults(sig, fn), env), sig, env


def jit_graph(path: Path, fn_name: str, dims: dict[str, int]) -> GraphFunction:
    """The specialised graph of @jit `fn_name` of the file at `path`."""
    return lowered(path, fn_name, dims, "graph")[0].graph


def run_interpreted(plan: Plan, kernels: list[Kernel], xs: list[np.ndarray],
                    info: TargetInfo | None = None) -> list[np.ndarray]:
    """A plan run with its kernels through the GPU lowering for `info` (default: sm_90a; every lowered
    function verified) in the lockstep interpreter, its buffers poisoned first."""
    target = info or cuda_target_info("sm_90a")
    fns = {k.name: (k, lower_kernel(k, target)) for k in kernels}
    for _, f in fns.values():
        verify_function(f)

    class Interpreted:
        def launch(self, name: str, arrays: list[np.ndarray]) -> None:
            k, f = fns[name]
            run_kernel(f, k, arrays)

    return CompiledFunction(plan, kernels, Interpreted(), poison=True)(*xs)  # type: ignore[arg-type]


def example_case(file: str, fn_name: str, dims: dict[str, int] | None = None) -> Case:
    dims = dims if dims is not None else EXAMPLE_DIMS[file][fn_name]
    low, sig, env = lowered(ROOT / "examples" / file, fn_name, dims, "tile")
    shapes, dtypes = [], []
    for p in sig.params:
        if isinstance(p.ty, TensorType):
            shapes.append(tuple(d.evaluate(env) for d in p.ty.dims))
            dtypes.append(np.dtype(numpy_dtype(p.ty.dtype)))  # type: ignore[arg-type]
    return Case(file, fn_name, dims, low, shapes, dtypes)


def example_names() -> list[tuple[str, str]]:
    """Every @jit function of every example, as (file, function); each must be in EXAMPLE_DIMS."""
    out = []
    for path in sorted((ROOT / "examples").glob("*.tsr")):
        checked = check_file(path).result
        assert checked is not None, path
        for f in checked.program.root.tree.functions:
            if checked.signatures[f].kind == "jit":
                out.append((path.name, f.name))
    return out
