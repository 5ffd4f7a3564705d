"""The @jit functions of examples/*.tsr with small extents, lowered for a GPU (test helper, imported by
tests only): the cases the PTX and GPU tests run over."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.frontend.check import check_file
from tessera.frontend.types import TensorType
from tessera.runtime import stages

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


def example_case(file: str, fn_name: str, dims: dict[str, int] | None = None) -> Case:
    dims = dims if dims is not None else EXAMPLE_DIMS[file][fn_name]
    checked = check_file(ROOT / "examples" / file).result
    assert checked is not None
    fn = next(f for f in checked.program.root.tree.functions if f.name == fn_name)
    sig = checked.signatures[fn]
    env = stages.bind(sig, dims)
    low = stages.lower_to(checked, fn, "tile", stages.static_defaults(sig, fn), env)
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
