"""Tests of effects (spec §8): inference over the call graph, `@effects(...)` declarations, effect
scopes (`effects.suspend`, `effects.allow`) and `@deterministic`."""

from __future__ import annotations

import pytest
from checking import Expect, check, clean, find, function, shown

from tessera.frontend.check import Checked


def effects_of(checked: Checked, name: str) -> set[str]:
    assert checked.result is not None
    return set(checked.result.effects[function(checked, name)].effects)


CALL_CHAIN = """
    def leaf():
        print("hello")
    def middle():
        leaf()
    def top():
        middle()
    def noisy(x: Tensor["N", f32]):
        return dropout(x, 0.5)
    def hidden():
        with effects.suspend("io"):
            top()
    def mixed(x: Tensor["N", f32]):
        y = randn((3,), f32)
        with effects.suspend("io", "random"):
            print(dropout(x, 0.5))
    @jit
    def traced(x: Tensor["N", f32]) -> Tensor["N", f32]:
        print(x)
        return x
    def both(x: Tensor["N", f32]):
        traced(x)
        noisy(x)
    def pure(x: Tensor["N", f32]) -> Tensor["N", f32]:
        return exp(x) + x @ x
    def recursive(n: int):
        if n > 0:
            recursive(n - 1)
        print(n)
    def io_host():
        x = load("a.npy")
        save("b.npy", x)
    """


@pytest.mark.parametrize(("fn", "expected"), [
    ("leaf", {"io"}),
    ("middle", {"io"}),
    ("top", {"io"}),            # a caller of a caller of print
    ("noisy", {"random"}),
    ("hidden", set()),          # suspended at the call
    ("mixed", {"random"}),      # randn outside the scope; print and dropout inside it
    ("traced", {"io"}),         # print in @jit code is a run-time debug print
    ("both", {"io", "random"}),
    ("pure", set()),
    ("recursive", {"io"}),
    ("io_host", {"io"}),
])
def test_inferred_effect_sets(fn: str, expected: set[str]) -> None:
    assert effects_of(clean(CALL_CHAIN), fn) == expected


def test_random_builtins_are_random() -> None:
    checked = clean("""
        def a():
            return randn((2,), f32, seed=1)
        def b():
            return rand((2,))
        def c(x: Tensor["N", f32]):
            return dropout(x, 0.1, seed=3)
        """)
    assert [effects_of(checked, f) for f in "abc"] == [{"random"}] * 3


def test_kernel_effects() -> None:
    checked = clean("""
        @kernel
        def store(t: Tensor["N", f32]):
            tile.store(t, tile.load(t))
        @kernel
        def atomic(t: Tensor["N", f32]):
            tile.atomic_add(t, 1.0)
        def host(t: Tensor["N", f32]):
            store[4](t)
            atomic[4](t)
        """)
    assert effects_of(checked, "store") == {"memory"}
    assert effects_of(checked, "atomic") == {"memory", "nondet"}
    assert effects_of(checked, "host") == {"memory", "nondet"}


def test_undeclared_effect_through_a_callee() -> None:
    checked = check("""
        def a():
            print(1)
        def b():
            a()
        @effects("random")
        def c(x: Tensor["N", f32]):
            b()
            return dropout(x, 0.5)
        """)
    d = find(checked, Expect("E-EFFECT", "'c' performs the effect 'io' but its @effects declaration does not "
                             "list it", (7, 5), fixit='@effects("io", "random")'))
    assert [(lb.span.line, lb.message) for lb in d.labels] == [(6, "'c' is declared here")]
    assert d.notes[0] == "the call to 'b' performs 'io'"
    assert len(checked.diagnostics) == 1


def test_pure_declaration_lists_the_full_set_in_its_fixit() -> None:
    checked = check("""
        @effects()
        def p(x: Tensor["N", f32]) -> Tensor["N", f32]:
            print(x)
            return dropout(x, 0.5)
        """)
    both = '@effects("io", "random")'
    io = find(checked, Expect("E-EFFECT", "'p' performs the effect 'io'", (3, 5), fixit=both))
    rnd = find(checked, Expect("E-EFFECT", "'p' performs the effect 'random'", (4, 12), fixit=both))
    assert io.notes[0] == "print() performs 'io'" and rnd.notes[0] == "dropout() performs 'random'"
    assert len(checked.diagnostics) == 2


def test_declared_effects_that_match_are_clean() -> None:
    checked = clean("""
        @effects("random", "io")
        def a(x: Tensor["N", f32]):
            print(dropout(x, 0.5))
        @effects("io", "random", "state")
        def more_than_needed(x: Tensor["N", f32]):
            a(x)
        @effects()
        def suspended(x: Tensor["N", f32]) -> Tensor["N", f32]:
            with effects.suspend("io"):
                print("scaling", x.shape)
            with effects.suspend("random", "io"):
                a(x)
            return x * 2.0
        """)
    assert effects_of(checked, "suspended") == set()
    assert effects_of(checked, "more_than_needed") == {"io", "random"}


def test_suspend_hides_only_the_named_effects() -> None:
    checked = check("""
        @effects("io")
        def f(x: Tensor["N", f32]):
            with effects.suspend("io"):
                print(dropout(x, 0.5))
        """)
    find(checked, Expect("E-EFFECT", "'f' performs the effect 'random'", (4, 15),
                         fixit='@effects("io", "random")'))
    assert len(checked.diagnostics) == 1


DETERMINISTIC = """
    @kernel
    def atomic(t: Tensor["N", f32]):
        tile.atomic_add(t, 1.0)
    @kernel
    def sanctioned(t: Tensor["N", f32]):
        with effects.allow("nondet"):
            tile.atomic_add(t, 1.0)
    def middle(t: Tensor["N", f32]):
        atomic[1](t)
    @deterministic(seed=3)
    def own_body(t: Tensor["N", f32]):
        middle(t)
    """


def test_deterministic_rejects_nondet_in_a_callee() -> None:
    checked = check(DETERMINISTIC + """
    @deterministic(seed=0)
    def f(t: Tensor["N", f32]):
        sanctioned[1](t)
        own_body(t)
        middle(t)
    """)
    # own_body is @deterministic itself (its own error); sanctioned allows its atomics.
    errors = [(d.span.line, d.message) for d in checked.diagnostics]
    assert errors == [
        (12, "'middle' performs nondeterministic work, which @deterministic function 'own_body' may not do"),
        (18, "'middle' performs nondeterministic work, which @deterministic function 'f' may not do"),
    ], shown(checked)
    d = checked.diagnostics[1]
    assert [(lb.span.line, lb.message) for lb in d.labels] == [(15, "'f' is @deterministic")]
    assert d.notes == ('wrap it in `with effects.allow("nondet"):` if the nondeterminism is acceptable',)


def test_deterministic_allows_nondet_inside_allow() -> None:
    checked = clean(DETERMINISTIC.replace("        middle(t)", """        with effects.allow("nondet"):
            middle(t)""") + """
    @deterministic(seed=0)
    @effects("random", "memory", "nondet")
    def f(t: Tensor["N", f32]):
        x = randn((4,), f32)
        with effects.allow("nondet"):
            middle(t)
    """)
    assert effects_of(checked, "f") == {"random", "memory", "nondet"}  # allowed, and still in the set


def test_deterministic_kernel_with_a_direct_atomic() -> None:
    checked = check("""
        @deterministic(seed=0)
        @kernel
        def k(t: Tensor["N", f32]):
            tile.atomic_add(t, 1.0)
            with effects.allow("nondet"):
                tile.atomic_add(t, 2.0)
        """)
    find(checked, Expect("E-EFFECT", "tile.atomic_add() is nondeterministic, which @deterministic function "
                         "'k' may not do", (4, 5)))
    assert len(checked.diagnostics) == 1


def test_suspending_nondet_hides_it_from_deterministic_callers() -> None:
    clean("""
        @kernel
        def atomic(t: Tensor["N", f32]):
            tile.atomic_add(t, 1.0)
        @deterministic(seed=0)
        def f(t: Tensor["N", f32]):
            with effects.suspend("nondet"):
                atomic[1](t)
        """)


def test_examples_effects_program() -> None:
    from pathlib import Path

    from tessera.frontend.check import check_file

    checked = check_file(Path(__file__).resolve().parent.parent / "examples" / "effects.tsr")
    assert checked.ok, shown(checked)
    assert effects_of(checked, "noisy") == {"random"}
    assert effects_of(checked, "pure_scale") == set()
    assert effects_of(checked, "main") == {"io", "random"}
