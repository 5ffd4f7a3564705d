"""Unit and property tests for tessera.constraints (where-clause facts and proofs)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tessera.constraints import Constraint, ConstraintSet
from tessera.symbolic import Dim, DimError, parse_dim

P = parse_dim


def eq(a: Any, b: Any) -> Constraint:
    return Constraint("==", _d(a), _d(b))


def _d(x: Any) -> Dim:
    return P(x) if isinstance(x, str) else Dim.of(x)


def rng(x: str, lo: int, hi: int, inclusive: bool = True) -> tuple[Constraint, Constraint]:
    return Constraint.in_range(x, lo, hi, inclusive)


# -- Constraint ------------------------------------------------------------------------------


def test_constraint_str_and_kinds() -> None:
    assert str(eq("D % 8", 0)) == "D % 8 == 0"
    assert str(Constraint(">=", Dim.sym("B"), Dim.const(1))) == "B >= 1"
    assert str(eq("H", "4 * D")) == "H == 4*D"
    with pytest.raises(DimError):
        Constraint("=<", Dim.sym("B"), Dim.const(1))


def test_constraint_coerces_and_is_hashable() -> None:
    c = Constraint("<=", "S", 8192)  # type: ignore[arg-type]
    assert c.lhs == Dim.sym("S") and c.rhs == 8192
    assert c == Constraint("<=", Dim.sym("S"), Dim.const(8192))
    assert len({c, Constraint("<=", "S", 8192)}) == 1  # type: ignore[arg-type]


def test_in_range() -> None:
    lo, hi = rng("B", 1, 4096)
    assert (str(lo), str(hi)) == ("1 <= B", "B <= 4096")
    lo, hi = rng("B", 1, 4096, inclusive=False)
    assert str(hi) == "B < 4096"


@pytest.mark.parametrize(
    ("c", "env", "expected"),
    [
        (eq("D % 8", 0), {"D": 64}, True),
        (eq("D % 8", 0), {"D": 60}, False),
        (Constraint("!=", Dim.sym("N"), Dim.const(0)), {"N": 0}, False),
        (Constraint("<", Dim.sym("B"), Dim.const(4)), {"B": 4}, False),
        (Constraint("<=", Dim.sym("B"), Dim.const(4)), {"B": 4}, True),
        (Constraint(">", Dim.sym("B"), Dim.const(4)), {"B": 5}, True),
        (Constraint(">=", Dim.sym("B"), Dim.const(4)), {"B": 3}, False),
    ],
)
def test_holds(c: Constraint, env: dict[str, int], expected: bool) -> None:
    assert c.holds(env) is expected
    assert c.negated().holds(env) is not expected


def test_holds_unbound_symbol() -> None:
    with pytest.raises(DimError, match="'D'"):
        eq("D % 8", 0).holds({})


# -- simplify and equality -------------------------------------------------------------------


def test_divisibility_facts() -> None:
    cs = ConstraintSet([eq("D % 8", 0)])
    assert str(cs.simplify(P("(D//4)*4"))) == "D"
    assert str(cs.simplify(P("D//8*8"))) == "D"
    assert cs.simplify(P("D % 4")) == 0
    assert cs.simplify(P("(D + 16) % 8")) == 0
    assert str(cs.simplify(P("(D//2)*2 + 1"))) == "D + 1"
    assert str(cs.simplify(P("D//3"))) == "D//3"
    assert cs.prove_eq(P("(D//4)*4"), "D")
    assert cs.prove_eq(P("D//4 + D//8"), P("3*(D//8)"))
    assert cs.divides(8, "D") and cs.divides(4, "D") and cs.divides(16, P("2*D"))
    assert not cs.divides(16, "D")
    assert not cs.divides(3, "D")


def test_divisor_needed() -> None:
    empty = ConstraintSet()
    assert not empty.prove_eq(P("(D//4)*4"), "D")
    assert str(empty.simplify(P("(D//4)*4"))) == "4*(D//4)"
    assert ConstraintSet([eq("D % 4", 0)]).prove_eq(P("(D//4)*4"), "D")
    assert not ConstraintSet([eq("D % 2", 0)]).prove_eq(P("(D//4)*4"), "D")


def test_linear_equalities() -> None:
    cs = ConstraintSet([eq("H", "4 * D")])
    assert cs.prove_eq("H", P("4*D"))
    assert cs.prove_eq(P("H//4"), "D")
    assert str(cs.simplify("H")) == "4*D"
    assert str(cs.simplify(P("H//4 + 1"))) == "D + 1"
    assert cs.divides(4, "H")
    assert cs.prove_eq(P("H % 4"), 0)


def test_equalities_chain_to_fixpoint() -> None:
    cs = ConstraintSet([eq("A", "B + 1"), eq("B", "2*C"), eq("E", "A + B")])
    assert cs.prove_eq("E", P("4*C + 1"))
    assert cs.prove_eq("A", P("2*C + 1"))
    # The result mentions only user symbols and is deterministic.
    assert str(cs.simplify("E")) == "4*C + 1"
    assert str(ConstraintSet([eq("S", "T")]).simplify("T")) == "S"
    assert str(ConstraintSet([eq("T", "S")]).simplify("T")) == "S"


def test_equality_with_constant() -> None:
    cs = ConstraintSet([eq("D", 64)])
    assert cs.simplify(P("D//8 + 1")) == 9
    assert cs.prove_eq(P("D*D"), 4096)
    assert cs.bounds("D") == (64, 64)


def test_residue_facts() -> None:
    cs = ConstraintSet([eq("E % 8", 3)])
    assert cs.prove_eq(P("E % 4"), 3)
    assert cs.prove_eq(P("E//8*8 + 3"), "E")
    assert cs.prove_ne("E", 16)
    assert cs.prove_eq(P("(E*E) % 8"), 1)
    odd = ConstraintSet([eq("(2*F + 1) % 6", 5)])  # F ≡ 2 (mod 3)
    assert odd.prove_eq(P("F % 3"), 2)
    assert not odd.prove_ne("F", 2)


def test_combined_residues() -> None:
    cs = ConstraintSet([eq("D % 4", 0), eq("D % 6", 0)])
    assert cs.divides(12, "D")
    assert not cs.divides(24, "D")


def test_divisibility_through_equality() -> None:
    cs = ConstraintSet([eq("H", "4*D"), eq("H % 32", 0)])
    assert cs.divides(8, "D")
    assert cs.prove_eq(P("(D//8)*8"), "D")


def test_distinct_symbols_unknown() -> None:
    cs = ConstraintSet()
    assert not cs.prove_eq("A", "B")
    assert not cs.prove_ne("A", "B")
    assert not cs.prove_le("A", "B")
    assert not cs.prove_lt("A", "B")
    assert cs.prove_eq(P("A + B"), P("B + A"))
    assert cs.prove_ne(P("A + 1"), "A")


def test_non_linear_equality_kept_but_unused() -> None:
    cs = ConstraintSet([eq("B*H", 64), eq("2*X", "3*Y")])
    assert not cs.prove_eq("B", 8)
    assert str(cs.simplify(P("B*H"))) == "B*H"
    assert cs.check({"B": 8, "H": 8, "X": 3, "Y": 2}) == []
    assert [str(c) for c in cs.check({"B": 8, "H": 4, "X": 3, "Y": 2})] == ["B*H == 64"]


def test_simplify_accepts_ints_and_names() -> None:
    cs = ConstraintSet([eq("H", "4*D")])
    assert cs.simplify(5) == 5
    assert cs.simplify("H") == P("4*D")


# -- inequalities and bounds -----------------------------------------------------------------


def test_ranges() -> None:
    cs = ConstraintSet([*rng("B", 1, 4096), Constraint("<=", Dim.sym("S"), Dim.const(8192))])
    assert cs.prove_le("B", 8192)
    assert cs.prove_le("B", 4096)
    assert not cs.prove_lt("B", 4096)
    assert cs.prove_lt(0, "B")
    assert cs.prove_ge("B", 1)
    assert cs.prove_gt(P("B + S"), 0)
    assert cs.prove_le(P("B + S"), 4096 + 8192)
    assert cs.bounds("B") == (1, 4096)
    assert cs.bounds("S") == (0, 8192)
    assert cs.bounds(P("2*B - S")) == (2 - 8192, 8192)
    assert cs.bounds(P("B*S")) == (0, 4096 * 8192)
    assert cs.bounds("Q") == (0, None)
    assert cs.prove_ne("B", 0)
    assert cs.prove_ne("B", 5000)
    assert not cs.prove_ne("B", 7)


def test_exclusive_range() -> None:
    cs = ConstraintSet(rng("B", 1, 4096, inclusive=False))
    assert cs.bounds("B") == (1, 4095)
    assert cs.prove_lt("B", 4096)


def test_floordiv_folds_under_bounds() -> None:
    cs = ConstraintSet([*rng("S", 0, 100)])
    assert cs.simplify(P("S//101")) == 0
    assert cs.simplify(P("S % 128")) == P("S")
    assert cs.bounds(P("S//10")) == (0, 10)
    assert cs.bounds(P("N % 8")) == (0, 7)
    assert cs.prove_le(P("N % 8"), 7)


def test_ne_facts() -> None:
    cs = ConstraintSet([Constraint("!=", Dim.sym("N"), Dim.const(0))])
    assert cs.prove_ne("N", 0)
    assert cs.prove_ne(0, "N")
    assert cs.prove_le(1, "N")
    assert cs.bounds("N") == (1, None)
    pair = ConstraintSet([Constraint("!=", Dim.sym("A"), Dim.sym("B"))])
    assert pair.prove_ne("A", "B") and pair.prove_ne("B", "A")
    assert not pair.prove_eq("A", "B")


def test_relational_inequality() -> None:
    cs = ConstraintSet([Constraint("<=", Dim.sym("S"), Dim.sym("T"))])
    assert cs.prove_le("S", "T")
    assert cs.prove_le(P("S"), P("T + 3"))
    assert not cs.prove_lt("S", "T")


def test_implicit_non_negativity() -> None:
    cs = ConstraintSet([eq("N", "M - 4")])
    assert cs.prove_le(4, "M")
    assert ConstraintSet().prove_le(0, P("A*B + C"))
    assert not ConstraintSet().prove_le(0, P("A - B"))


def test_parity_ne() -> None:
    assert ConstraintSet().prove_ne(P("2*A + 1"), P("4*B"))
    assert not ConstraintSet().prove_ne(P("2*A"), P("4*B"))


def test_divides_validates() -> None:
    with pytest.raises(DimError):
        ConstraintSet().divides(0, "D")


def test_prove_constraint() -> None:
    cs = ConstraintSet([*rng("B", 1, 64)])
    assert cs.prove(Constraint("<", Dim.sym("B"), Dim.const(65)))
    assert cs.refutes(Constraint(">", Dim.sym("B"), Dim.const(64)))
    assert not cs.refutes(Constraint("==", Dim.sym("B"), Dim.const(3)))


# -- contradictions and check ----------------------------------------------------------------


def test_contradictions_empty_range() -> None:
    cs = ConstraintSet(rng("B", 10, 4))
    assert [str(c) for c in cs.contradictions()] == ["10 <= B", "B <= 4"]
    assert not cs.consistent


def test_contradictions_constant_false() -> None:
    cs = ConstraintSet([eq(4, 5), *rng("B", 1, 4)])
    assert [str(c) for c in cs.contradictions()] == ["4 == 5"]


def test_contradictions_mod_with_value() -> None:
    cs = ConstraintSet([eq("D % 8", 3), eq("D", 16), *rng("B", 1, 4)])
    assert [str(c) for c in cs.contradictions()] == ["D % 8 == 3", "D == 16"]


def test_contradictions_incompatible_residues() -> None:
    cs = ConstraintSet([eq("D % 8", 3), eq("D % 4", 0)])
    assert len(cs.contradictions()) == 2
    assert not cs.consistent


def test_contradictions_negative_extent() -> None:
    cs = ConstraintSet([Constraint("<", Dim.sym("X"), Dim.const(0))])
    assert cs.contradictions() == list(cs)


def test_consistent_set_has_no_contradictions() -> None:
    cs = ConstraintSet([eq("D % 8", 0), eq("H", "4*D"), *rng("B", 1, 4096),
                        Constraint("!=", Dim.sym("N"), Dim.const(0))])
    assert cs.contradictions() == []
    assert cs.consistent


def test_check() -> None:
    cs = ConstraintSet([eq("D % 8", 0), eq("H", "4*D"), *rng("B", 1, 4096, inclusive=False),
                        Constraint("<=", Dim.sym("S"), Dim.const(8192))])
    good = {"D": 16, "H": 64, "B": 4095, "S": 8192}
    assert cs.check(good) == []
    bad = {"D": 12, "H": 64, "B": 4096, "S": 9000}
    assert [str(c) for c in cs.check(bad)] == ["D % 8 == 0", "H == 4*D", "B < 4096", "S <= 8192"]
    with pytest.raises(DimError):
        cs.check({"D": 16})


def test_add_invalidates_caches() -> None:
    cs = ConstraintSet()
    assert not cs.prove_eq(P("(D//4)*4"), "D")
    cs.add(eq("D % 4", 0))
    assert cs.prove_eq(P("(D//4)*4"), "D")
    assert len(cs) == 1 and list(cs) == [eq("D % 4", 0)]
    with pytest.raises(TypeError):
        cs.add("D % 4 == 0")  # type: ignore[arg-type]


def test_many_queries_are_fast() -> None:
    cs = ConstraintSet([eq("D % 8", 0), eq("H", "4*D"), *rng("B", 1, 4096),
                        Constraint("<=", Dim.sym("S"), Dim.const(8192))])
    dims = [P(t) for t in ("B*S", "H//4", "(D//4)*4", "D", "B*H", "4*D", "S + 1", "B*S*H//8")]
    start = time.perf_counter()
    for _ in range(500):
        for a in dims:
            for b in dims:
                cs.prove_eq(a, b)
                cs.prove_le(a, b)
    assert time.perf_counter() - start < 5.0


# -- property tests --------------------------------------------------------------------------

Tree = tuple[Any, ...]
NAMES = ("A", "B", "C")

_leaves = st.one_of(
    st.sampled_from(NAMES).map(lambda s: ("sym", s)),
    st.integers(0, 10).map(lambda n: ("int", n)),
)


def _extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    return st.one_of(
        st.tuples(st.sampled_from(["add", "sub", "mul"]), children, children),
        st.tuples(st.sampled_from(["floordiv", "mod"]), children, st.sampled_from([1, 2, 3, 4, 8])),
    )


trees = st.recursive(_leaves, _extend, max_leaves=8)


def _build(t: Tree) -> Dim:
    op = t[0]
    if op == "sym":
        return Dim.sym(t[1])
    if op == "int":
        return Dim.const(t[1])
    if op == "floordiv":
        return _build(t[1]) // t[2]
    if op == "mod":
        return _build(t[1]) % t[2]
    a, b = _build(t[1]), _build(t[2])
    return a + b if op == "add" else a - b if op == "sub" else a * b


@st.composite
def divisibility_sets(draw: st.DrawFn) -> tuple[ConstraintSet, dict[str, int]]:
    """Constraints `X % k == 0` plus a random environment that satisfies them."""
    divisors = draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from([2, 3, 4, 6, 8]),
                                    max_size=3))
    cs = ConstraintSet([eq(f"{x} % {k}", 0) for x, k in sorted(divisors.items())])
    env = {x: divisors.get(x, 1) * draw(st.integers(0, 12)) for x in NAMES}
    return cs, env


@settings(max_examples=300, deadline=None)
@given(divisibility_sets(), trees, trees)
def test_divisibility_proofs_are_sound(
    setup: tuple[ConstraintSet, dict[str, int]], ta: Tree, tb: Tree
) -> None:
    cs, env = setup
    a, b = _build(ta), _build(tb)
    va, vb = a.evaluate(env), b.evaluate(env)
    assert cs.check(env) == []
    assert cs.simplify(a).evaluate(env) == va
    assert cs.simplify(a).free_symbols <= set(NAMES)
    assert cs.prove_eq(a, cs.simplify(a))
    if cs.prove_eq(a, b):
        assert va == vb
    if cs.prove_ne(a, b):
        assert va != vb
    if cs.prove_le(a, b):
        assert va <= vb
    for k in (2, 3, 4, 8):
        if cs.divides(k, a):
            assert va % k == 0


polynomials = st.recursive(
    _leaves, lambda ch: st.tuples(st.sampled_from(["add", "sub", "mul"]), ch, ch), max_leaves=6
)


@settings(max_examples=300, deadline=None)
@given(divisibility_sets(), polynomials)
def test_known_identities_are_proven(setup: tuple[ConstraintSet, dict[str, int]], t: Tree) -> None:
    cs, _env = setup
    a = _build(t)
    # Exact identities the normal form must see for polynomial dims, whatever the facts.
    # (Completeness is not promised for arbitrarily nested floor-division and modulo.)
    assert cs.prove_eq(a % 4 + 4 * (a // 4), a)
    assert cs.prove_eq((a * 8) // 8, a)
    assert cs.prove_eq((a * 8) // 4 // 2, a)


@st.composite
def general_sets(draw: st.DrawFn) -> tuple[ConstraintSet, dict[str, int]]:
    """Residues, ranges, `!=` and a linear equality, with an environment satisfying them."""
    env = {x: draw(st.integers(0, 40)) for x in NAMES}
    cons: list[Constraint] = []
    for x in NAMES:
        choice = draw(st.integers(0, 4))
        if choice == 1:
            k = draw(st.sampled_from([2, 3, 4, 8]))
            cons.append(eq(f"{x} % {k}", env[x] % k))
        elif choice == 2:
            lo = draw(st.integers(0, env[x]))
            hi = draw(st.integers(env[x], 60))
            cons.extend(rng(x, lo, hi))
        elif choice == 3:
            cons.append(Constraint("!=", Dim.sym(x), Dim.const(draw(st.integers(0, 60)))))
    if draw(st.booleans()):
        c1, c0 = draw(st.integers(0, 3)), draw(st.integers(0, 5))
        env["C"] = c1 * env["A"] + env["B"] + c0
        cons.append(eq("C", f"{c1}*A + B + {c0}"))
    cs = ConstraintSet(cons)
    return cs, env


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(general_sets(), trees, trees)
def test_general_proofs_are_sound(
    setup: tuple[ConstraintSet, dict[str, int]], ta: Tree, tb: Tree
) -> None:
    cs, env = setup
    assume(cs.check(env) == [])
    a, b = _build(ta), _build(tb)
    va, vb = a.evaluate(env), b.evaluate(env)
    assert cs.contradictions() == []
    assert cs.simplify(a).evaluate(env) == va
    assert cs.prove_eq(a, cs.simplify(a))
    lo, hi = cs.bounds(a)
    assert lo is None or lo <= va
    assert hi is None or va <= hi
    if cs.prove_eq(a, b):
        assert va == vb
    if cs.prove_ne(a, b):
        assert va != vb
    if cs.prove_le(a, b):
        assert va <= vb
    if cs.prove_lt(a, b):
        assert va < vb


def test_bounds_beyond_float_range() -> None:
    # Found by tests/test_fuzz.py: interval ends mix ints and ±inf, and adding inf to an int beyond float
    # range (`where B in 1..=10**400`) raised OverflowError.
    huge = 10**400
    cs = ConstraintSet([*rng("B", 1, huge)])
    assert cs.bounds("B") == (1, huge)
    assert cs.bounds(P("B + D")) == (1, None)
    assert cs.bounds(P("B - D")) == (None, huge)
    assert cs.prove_le("B", huge)
    assert not cs.prove_le(P("B * D"), huge)
