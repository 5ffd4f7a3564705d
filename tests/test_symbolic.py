"""Unit and property tests for tessera.symbolic (the Dim normal form)."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.symbolic import Dim, DimError, FloorDiv, Mod, parse_dim

P = parse_dim
A, B, C, D, H, N, S = (Dim.sym(n) for n in "ABCDHNS")


# -- construction and normal form ------------------------------------------------------------


def test_const_and_sym_basics() -> None:
    assert Dim.const(7).is_const and Dim.const(7).value == 7
    assert Dim.const(0) == 0 and str(Dim.const(0)) == "0"
    assert not B.is_const
    assert B.free_symbols == frozenset({"B"})
    assert Dim.const(3).free_symbols == frozenset()
    assert Dim.of(5) == Dim.const(5)
    assert Dim.of("B") == B
    assert Dim.of(B) is B


@pytest.mark.parametrize("bad", ["", "1B", "B*H", "a-b", " B"])
def test_sym_requires_identifier(bad: str) -> None:
    with pytest.raises(DimError):
        Dim.sym(bad)


@pytest.mark.parametrize("bad", [1.5, None, True, [1]])
def test_of_rejects_other_types(bad: Any) -> None:
    with pytest.raises(DimError):
        Dim.of(bad)


def test_value_of_non_constant_raises() -> None:
    with pytest.raises(DimError, match="not a constant"):
        _ = (B + 1).value


def test_commutativity_and_like_terms() -> None:
    assert B * H == H * B
    assert B + H == H + B
    assert B + B + B == 3 * B
    assert 2 * B - B == B
    assert B - B == 0
    assert (B + 1) * (B - 1) == B * B - 1
    assert (B + H) * 2 == 2 * B + 2 * H
    assert 3 * B + 2 * H - 3 * B == 2 * H


def test_reflected_operators() -> None:
    assert 3 * D == D * 3
    assert 1 + D == D + 1
    assert 10 - D == -(D - 10)
    assert 17 // Dim.const(5) == 3
    assert 17 % Dim.const(5) == 2


def test_constant_folding() -> None:
    assert Dim.const(7) // 2 == Dim.const(3)
    assert Dim.const(-7) // 2 == -4
    assert Dim.const(7) % 3 == 1
    assert Dim.const(-7) % 3 == 2
    assert Dim.const(2) * 3 + 4 == 10
    assert P("2*3 + 4*(5 - 1)") == 22


def test_equality_with_ints_and_hash() -> None:
    assert Dim.const(3) == 3
    assert 3 == Dim.const(3)
    assert Dim.const(3) != 4
    assert B != 3
    assert hash(Dim.const(3)) == hash(3)
    assert {Dim.const(3): "x"}[3] == "x"
    assert hash(P("B*H")) == hash(P("H*B"))
    assert len({P("B + H"), P("H + B"), P("B*1 + H")}) == 1
    assert (B == "B") is False  # no implicit parsing in comparisons


def test_immutable_and_picklable() -> None:
    d = P("(D + 1)//2 + B*H")
    with pytest.raises(AttributeError):
        d._terms = ()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(d)) == d
    assert copy.deepcopy(d) == d


def test_dim_constructor_parses() -> None:
    assert Dim("B*H") == B * H
    assert Dim(4) == 4
    assert Dim(B) == B
    assert eval(repr(P("(D + 1)//2 - 3*N")), {"Dim": Dim}) == P("(D + 1)//2 - 3*N")


# -- floor-division and modulo ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(4*D)//4", "D"),
        ("(4*D + 2)//4", "D"),
        ("(4*D + 6)//4", "D + 1"),
        ("(8*D + 4*H)//4", "2*D + H"),
        ("D//1", "D"),
        ("D % 1", "0"),
        ("(D//2)//3", "D//6"),
        ("(D//2 + 1)//3", "(D + 2)//6"),
        ("(2*D)//4", "D//2"),
        ("(4*D) % 4", "0"),
        ("(4*D + 6) % 4", "2"),
        ("(8*B*H + 16) % 8", "0"),
        ("(D % 8) % 4", "D % 4"),
        ("(D % 8) // 8", "0"),
        ("(2*D) % 4", "2*(D % 2)"),
        ("(N % 4 + 1) % 8", "N % 4 + 1"),
        ("D//4*4", "4*(D//4)"),
    ],
)
def test_floordiv_mod_rules(text: str, expected: str) -> None:
    assert str(P(text)) == expected
    assert P(text) == P(expected)


def test_floordiv_mod_need_positive_constant() -> None:
    for bad in (lambda: D // B, lambda: D % B, lambda: D // 0, lambda: D % -3, lambda: 5 // D):
        with pytest.raises(DimError, match="positive integer constant"):
            bad()
    assert D // Dim.const(2) == D // 2


def test_mod_by_multiple_is_zero() -> None:
    assert (6 * B * H) % 3 == 0
    assert (D * 8 + 24) % 8 == 0


def test_atoms_are_exposed() -> None:
    atom = (D // 4).single_atom()
    assert isinstance(atom, FloorDiv) and atom.k == 4 and atom.arg == D
    atom = (N % 8).single_atom()
    assert isinstance(atom, Mod) and atom.k == 8
    assert B.single_atom() == "B"
    assert (B + 1).single_atom() is None


# -- printing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B*H", "B*H"),
        ("H*B", "B*H"),
        ("1 + S", "S + 1"),
        ("D//4", "D//4"),
        ("-1 + D*2", "2*D - 1"),
        ("(D + 1)//2", "(D + 1)//2"),
        ("0 - N", "-N"),
        ("7", "7"),
        ("-7", "-7"),
        ("N % 8", "N % 8"),
        ("(N + 1) % 8", "(N + 1) % 8"),
        ("-(D//4)", "-(D//4)"),
        ("-(N % 8)", "-(N % 8)"),
        ("S - N % 8", "S - N % 8"),
        ("B*(D//4)", "B*(D//4)"),
        ("B*H//4", "B*H//4"),
        ("B*B*2 + H + 1 + A*B", "A*B + 2*B*B + H + 1"),
        ("3 - B*H", "-B*H + 3"),
        ("A + B + C", "A + B + C"),
        ("C + B + A", "A + B + C"),
        ("D + D//4", "D + D//4"),
    ],
)
def test_printing(text: str, expected: str) -> None:
    d = P(text)
    assert str(d) == expected
    assert repr(d) == f"Dim({expected!r})"
    assert P(str(d)) == d


# -- parse_dim errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1.5", "literal"),
        ("D / 4", "'/'"),
        ("D ** 2", "'**'"),
        ("f(D)", "call"),
        ("x.shape", "attribute"),
        ("D < 4", "comparison"),
        ("True", "literal"),
        ("'B'", "literal"),
        ("(", "invalid"),
        ("B +", "invalid"),
        ("B H", "invalid"),
        ("\x00", "invalid"),
        ("[B]", "List"),
        ("D // B", "positive integer constant"),
        ("D & 1", "'&'"),
        ("~D", "'~'"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(DimError) as info:
        P(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_non_str() -> None:
    with pytest.raises(DimError):
        P(3)  # type: ignore[arg-type]


def test_parse_deep_nesting_is_dimerror() -> None:
    with pytest.raises(DimError):
        P("(" * 5000 + "B" + ")" * 5000)


def test_parse_precedence() -> None:
    assert P("1 + 2 * 3") == 7
    assert P("10 - 4 - 3") == 3
    assert P("2 * D // 4") == D // 2
    assert P("-B * 2") == -2 * B
    assert P("+B") == B
    assert P("20 // 3 % 4") == 2


# -- queries ---------------------------------------------------------------------------------


def test_substitute() -> None:
    d = P("B*H + (D + 1)//2 - N % 8")
    assert d.substitute({"B": 2, "H": 3, "D": 5, "N": 11}) == 6 + 3 - 3
    assert d.substitute({"D": P("2*K + 1")}) == P("B*H + K + 1 - N % 8")
    assert d.substitute({"N": P("8*M")}) == P("B*H + (D + 1)//2")
    assert d.substitute({}) is d
    assert d.substitute({"Z": 3}) is d
    # simultaneous, not sequential
    assert (A + 2 * B).substitute({"A": B, "B": A}) == B + 2 * A


def test_evaluate() -> None:
    d = P("B*H + (D + 1)//2 - N % 8")
    assert d.evaluate({"B": 2, "H": 3, "D": 5, "N": 11}) == 6
    with pytest.raises(DimError, match="'H'"):
        d.evaluate({"B": 2, "D": 5, "N": 11})
    assert Dim.const(4).evaluate({}) == 4


def test_as_linear() -> None:
    assert P("2*A + 3*B - 1").as_linear() == ({"A": 2, "B": 3}, -1)
    assert P("7").as_linear() == ({}, 7)
    assert P("A").as_linear() == ({"A": 1}, 0)
    assert P("A*B").as_linear() is None
    assert P("A//2").as_linear() is None
    assert P("A % 2 + B").as_linear() is None


def test_free_symbols_include_atoms() -> None:
    assert P("(B*H + D)//4 + N % 8").free_symbols == frozenset({"B", "H", "D", "N"})


def test_rewrite_folds_atoms() -> None:
    # Rewriting D to 8*K makes the modulo atom decidable; the callback sees only the result.
    d = P("D % 8 + S")
    assert d.rewrite(lambda a: 8 * Dim.sym("K") if a == "D" else None) == S


def test_terms_and_const_term() -> None:
    d = P("2*B + 5")
    assert d.const_term == 5
    assert B.const_term == 0
    assert Dim.from_terms(dict(d.terms)) == d


# -- property tests --------------------------------------------------------------------------

Tree = tuple[Any, ...]

_leaves = st.one_of(
    st.sampled_from(["A", "B", "C"]).map(lambda s: ("sym", s)),
    st.integers(0, 12).map(lambda n: ("int", n)),
)


def _extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    return st.one_of(
        st.tuples(st.sampled_from(["add", "sub", "mul"]), children, children),
        st.tuples(st.sampled_from(["floordiv", "mod"]), children, st.integers(1, 9)),
        st.tuples(st.just("neg"), children),
    )


trees = st.recursive(_leaves, _extend, max_leaves=10)
envs = st.fixed_dictionaries({n: st.integers(0, 60) for n in "ABC"})


def _eval_tree(t: Tree, env: dict[str, int]) -> int:
    op = t[0]
    if op == "sym":
        return env[t[1]]
    if op == "int":
        return t[1]
    if op == "neg":
        return -_eval_tree(t[1], env)
    if op == "floordiv":
        return _eval_tree(t[1], env) // t[2]
    if op == "mod":
        return _eval_tree(t[1], env) % t[2]
    a, b = _eval_tree(t[1], env), _eval_tree(t[2], env)
    return a + b if op == "add" else a - b if op == "sub" else a * b


def _build(t: Tree) -> Dim:
    op = t[0]
    if op == "sym":
        return Dim.sym(t[1])
    if op == "int":
        return Dim.const(t[1])
    if op == "neg":
        return -_build(t[1])
    if op == "floordiv":
        return _build(t[1]) // t[2]
    if op == "mod":
        return _build(t[1]) % t[2]
    a, b = _build(t[1]), _build(t[2])
    return a + b if op == "add" else a - b if op == "sub" else a * b


def _text(t: Tree) -> str:
    op = t[0]
    if op in ("sym", "int"):
        return str(t[1])
    if op == "neg":
        return f"-({_text(t[1])})"
    if op in ("floordiv", "mod"):
        return f"({_text(t[1])}) {'//' if op == 'floordiv' else '%'} {t[2]}"
    sign = {"add": "+", "sub": "-", "mul": "*"}[op]
    return f"({_text(t[1])}) {sign} ({_text(t[2])})"


@settings(max_examples=400, deadline=None)
@given(trees, envs)
def test_normal_form_is_sound(t: Tree, env: dict[str, int]) -> None:
    d = _build(t)
    assert d.evaluate(env) == _eval_tree(t, env)


@settings(max_examples=200, deadline=None)
@given(trees)
def test_parse_and_print_round_trip(t: Tree) -> None:
    d = _build(t)
    assert P(_text(t)) == d
    assert P(str(d)) == d
    assert hash(P(str(d))) == hash(d)


@settings(max_examples=200, deadline=None)
@given(trees, envs, st.sampled_from(["A", "B", "C"]), trees)
def test_substitution_commutes_with_evaluation(
    t: Tree, env: dict[str, int], name: str, replacement: Tree
) -> None:
    d, r = _build(t), _build(replacement)
    inner = dict(env)
    inner[name] = r.evaluate(env)
    assert d.substitute({name: r}).evaluate(env) == d.evaluate(inner)
