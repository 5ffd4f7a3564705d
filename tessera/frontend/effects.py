"""Effects (spec §8): what each function does — its own operations plus its callees' — inferred over
the call graph, then checked against `@effects(...)` declarations and `@deterministic`.

The checker records, per function, the effects its body performs directly and the calls it makes,
each with the effect scopes (`effects.suspend` / `effects.allow`) active at that point; this module
closes those records over the call graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.diagnostics import Diagnostic, Label
from tessera.frontend.ast import FunctionDef
from tessera.source import Span

EFFECT_KINDS = ("random", "io", "memory", "state", "collective", "nondet")


@dataclass(frozen=True)
class EffectSite:
    """One direct effect: the op that performs it, and whether an `effects.allow` sanctions it."""

    kind: str
    span: Span
    what: str
    allowed: bool = False


@dataclass(frozen=True)
class CallSite:
    callee: FunctionDef
    span: Span
    suspended: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()


@dataclass
class EffectRecord:
    """What one function's body was seen to do."""

    fn: FunctionDef
    declared: frozenset[str] | None = None  # from @effects(...); None when undeclared
    deterministic: bool = False
    sites: list[EffectSite] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)


@dataclass
class EffectSummary:
    """The closed-over effect set of a function and its unsanctioned nondeterminism."""

    effects: frozenset[str]
    unsanctioned_nondet: bool


def infer_effects(records: dict[FunctionDef, EffectRecord]) -> dict[FunctionDef, EffectSummary]:
    """Least fixpoint of eff(f) = direct(f) ∪ ⋃ (eff(g) − suspended at the call) over the call graph."""
    eff: dict[FunctionDef, set[str]] = {f: {s.kind for s in r.sites} for f, r in records.items()}
    nondet: dict[FunctionDef, bool] = {
        f: any(s.kind == "nondet" and not s.allowed for s in r.sites) for f, r in records.items()
    }
    changed = True
    while changed:
        changed = False
        for f, r in records.items():
            for c in r.calls:
                if c.callee not in records:
                    continue
                extra = eff[c.callee] - c.suspended - eff[f]
                if extra:
                    eff[f] |= extra
                    changed = True
                callee_nd = nondet[c.callee] and not records[c.callee].deterministic
                if callee_nd and "nondet" not in c.allowed and "nondet" not in c.suspended and not nondet[f]:
                    nondet[f] = True
                    changed = True
    return {f: EffectSummary(frozenset(eff[f]), nondet[f]) for f in records}


def _decl_fixit(fn: FunctionDef, kinds: frozenset[str]) -> str:
    return "@effects(" + ", ".join(f'"{k}"' for k in sorted(kinds)) + ")"


def check_effects(
    records: dict[FunctionDef, EffectRecord], summaries: dict[FunctionDef, EffectSummary]
) -> list[Diagnostic]:
    """E-EFFECT for undeclared effects and for nondeterminism in `@deterministic` functions."""
    diags: list[Diagnostic] = []
    for f, r in records.items():
        total = summaries[f].effects
        if r.declared is not None:
            for kind in sorted(total - r.declared):
                site = _first_site(r, records, summaries, kind)
                diags.append(Diagnostic(
                    "E-EFFECT",
                    f"'{f.name}' performs the effect '{kind}' but its @effects declaration does not list it",
                    site[0], (Label(f.name_span, f"'{f.name}' is declared here"),),
                    (site[1], ("declare every effect the function performs, or hide it with "
                     f'`with effects.suspend("{kind}"):`')),
                    _decl_fixit(f, r.declared | total),
                ))
        if r.deterministic:
            for s in r.sites:
                if s.kind == "nondet" and not s.allowed:
                    diags.append(_nondet_diag(f, s.span, f"{s.what} is nondeterministic"))
            for c in r.calls:
                callee = records.get(c.callee)
                if callee is None or "nondet" in c.allowed or "nondet" in c.suspended:
                    continue
                if summaries[c.callee].unsanctioned_nondet and not callee.deterministic:
                    diags.append(_nondet_diag(f, c.span, f"'{c.callee.name}' performs nondeterministic work"))
    return diags


def _nondet_diag(f: FunctionDef, span: Span, what: str) -> Diagnostic:
    return Diagnostic(
        "E-EFFECT", f"{what}, which @deterministic function '{f.name}' may not do", span,
        (Label(f.name_span, f"'{f.name}' is @deterministic"),),
        ('wrap it in `with effects.allow("nondet"):` if the nondeterminism is acceptable',),
    )


def _first_site(
    r: EffectRecord, records: dict[FunctionDef, EffectRecord], summaries: dict[FunctionDef, EffectSummary],
    kind: str,
) -> tuple[Span, str]:
    for s in r.sites:
        if s.kind == kind:
            return s.span, f"{s.what} performs '{kind}'"
    for c in r.calls:
        if c.callee in summaries and kind in summaries[c.callee].effects and kind not in c.suspended:
            return c.span, f"the call to '{c.callee.name}' performs '{kind}'"
    return r.fn.name_span, f"'{kind}' comes from a callee"
