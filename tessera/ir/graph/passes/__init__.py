"""Graph IR passes: each takes a Function (inline: a Module) and returns a new one, leaving its
input untouched. `pipeline.optimize` runs the standard sequence to a fixpoint."""

from tessera.ir.graph.passes.canonicalize import canonicalize
from tessera.ir.graph.passes.cse import cse
from tessera.ir.graph.passes.dce import dce
from tessera.ir.graph.passes.fold import fold_constants
from tessera.ir.graph.passes.inline import inline_calls
from tessera.ir.graph.passes.pipeline import optimize
from tessera.ir.graph.passes.specialize import specialize_shapes

__all__ = ["canonicalize", "cse", "dce", "fold_constants", "inline_calls", "optimize", "specialize_shapes"]
