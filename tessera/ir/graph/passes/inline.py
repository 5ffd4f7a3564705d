"""Inlining: every `call` op is replaced by a copy of its callee's body.

The callee's symbols are bound from the argument types at each call (`bind_call`), and its body's
dims are rewritten over the caller's. Callees are inlined first (bottom-up), so the result has no
calls at all; a recursive call raises IRError. A callee `where` constraint that the arguments make
false (decidably) raises IRError. Every function of the module stays (each may be an entry point).
"""

from __future__ import annotations

from tessera.constraints import ConstraintSet
from tessera.ir.graph.ops import Function, IRError, Module, bind_call, parse_constraint
from tessera.ir.graph.passes.rewriter import DimMap, Rewriter
from tessera.symbolic import Dim


def inline_calls(m: Module) -> Module:
    by_name = {f.name: f for f in m.functions}
    done: dict[str, Function] = {}

    def inlined(name: str, stack: tuple[str, ...]) -> Function:
        if name in done:
            return done[name]
        if name in stack:
            raise IRError(f"cannot inline the recursive call chain {' -> '.join('@' + s for s in (*stack, name))}")
        f = by_name.get(name)
        if f is None:
            raise IRError(f"@{stack[-1]} calls @{name}, which is not a function of the module")
        rw = Rewriter(f)
        for op in f.ops:
            if op.name != "call":
                rw.emit(rw.copy(op))
                continue
            callee = inlined(op.attr("callee"), (*stack, name))  # type: ignore[arg-type]
            args = [rw[v] for v in op.operands]
            binding = bind_call(callee, [a.ty for a in args])
            _check_callee_constraints(f, callee, binding)
            for old, new in zip(op.results, rw.inline(callee, args, _bound(callee, binding))):
                rw.replace(old, new)
        done[name] = rw.finish()
        return done[name]

    return Module([inlined(f.name, ()) for f in m.functions])


def _bound(callee: Function, binding: dict[str, Dim]) -> DimMap:
    def dim_map(d: Dim) -> Dim:
        unbound = d.free_symbols - binding.keys()
        if unbound:
            raise IRError(f"cannot inline @{callee.name}: symbol {min(unbound)} is not bound by the "
                          "call's argument types")
        return d.substitute(binding)
    return dim_map


def _check_callee_constraints(caller: Function, callee: Function, binding: dict[str, Dim]) -> None:
    facts = ConstraintSet(c for text in caller.constraints for c in parse_constraint(text))
    for text in callee.constraints:
        for c in parse_constraint(text):
            bound = type(c)(c.kind, c.lhs.substitute(binding), c.rhs.substitute(binding))
            if facts.refutes(bound):
                raise IRError(f"@{caller.name} calls @{callee.name} with arguments that break its where "
                              f"constraint '{text}' (it becomes {bound})")
