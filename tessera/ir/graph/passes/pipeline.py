"""The standard graph optimisation sequence: canonicalize, fold, CSE, DCE, repeated to a fixpoint."""

from __future__ import annotations

from tessera.ir.graph.ops import Function, IRError
from tessera.ir.graph.passes.canonicalize import canonicalize
from tessera.ir.graph.passes.cse import cse
from tessera.ir.graph.passes.dce import dce
from tessera.ir.graph.passes.fold import fold_constants
from tessera.ir.graph.printer import print_function

# Each round removes or simplifies something or changes nothing, so a few rounds suffice; a pass
# that undid another would loop, and that is a bug worth an error.
MAX_ROUNDS = 32


def optimize(f: Function) -> Function:
    text = print_function(f)
    for _ in range(MAX_ROUNDS):
        g = dce(cse(fold_constants(canonicalize(f))))
        new_text = print_function(g)
        if new_text == text:
            return g
        f, text = g, new_text
    raise IRError(f"@{f.name}: the graph optimisation pipeline did not reach a fixpoint in {MAX_ROUNDS} rounds")
