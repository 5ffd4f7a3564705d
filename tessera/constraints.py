"""Facts from `where` clauses and a small, sound solver over symbolic dims.

A function's ``where`` clause (``D % 8 == 0, H == 4 * D, B in 1..=4096, S <= 8192, N != 0``)
becomes a `ConstraintSet`. The shape checker asks it to `simplify` dims for display and to
prove equalities and inequalities between dims; the runtime asks it to `check` concrete
extents. Every symbol is a tensor extent, hence an integer ``>= 0`` unless constrained further.

Proofs are sound but incomplete: ``True`` means proven, ``False`` means "not proven".
Internally the facts are compiled once (lazily, invalidated by `ConstraintSet.add`) into:

* a substitution eliminating symbols via linear equalities with a ``±1`` coefficient;
* residues ``X ≡ r (mod k)`` from modulo equalities, applied by rewriting ``X`` as
  ``k*X' + r`` with a fresh symbol ``X'`` (a name users cannot write), so the ordinary
  floor-division/modulo rules of `Dim` see the divisibility;
* an interval per symbol from range facts, used by interval arithmetic for inequalities;
* explicit ``!=`` facts, matched literally, and multi-symbol ``f >= 0`` facts, used by
  bounding ``d - f`` when asked whether ``d >= 0``.

Constraints the solver cannot use (say ``B*H == 64``) are kept for `check` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from math import gcd

from tessera.symbolic import Atom, Dim, DimError, FloorDiv, Mod

__all__ = ["KINDS", "Constraint", "ConstraintSet"]

KINDS = ("==", "!=", "<", "<=", ">", ">=")

_INF = float("inf")
# Interval ends are ints, or ±inf for "unbounded".
_Bound = int | float
_Interval = tuple[_Bound, _Bound]


@dataclass(frozen=True)
class Constraint:
    """One fact ``lhs <kind> rhs`` over dims; ``kind`` is one of `KINDS`."""

    kind: str
    lhs: Dim
    rhs: Dim

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DimError(f"unknown constraint kind {self.kind!r}; expected one of {KINDS}")
        # Accept ints and symbol names for convenience, store Dims.
        object.__setattr__(self, "lhs", Dim.of(self.lhs))
        object.__setattr__(self, "rhs", Dim.of(self.rhs))

    @staticmethod
    def in_range(
        x: Dim | int | str, lo: Dim | int | str, hi: Dim | int | str, inclusive: bool
    ) -> tuple[Constraint, Constraint]:
        """``x in lo..=hi`` (inclusive) or ``x in lo..hi`` (end exclusive) as two constraints."""
        return (Constraint("<=", Dim.of(lo), Dim.of(x)),
                Constraint("<=" if inclusive else "<", Dim.of(x), Dim.of(hi)))

    def holds(self, env: Mapping[str, int]) -> bool:
        """Evaluate with concrete extents; DimError if a symbol is unbound."""
        a = self.lhs.evaluate(env)
        b = self.rhs.evaluate(env)
        return _compare(self.kind, a, b)

    def negated(self) -> Constraint:
        """The constraint that holds exactly when this one does not."""
        flip = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
        return Constraint(flip[self.kind], self.lhs, self.rhs)

    def __str__(self) -> str:
        return f"{self.lhs} {self.kind} {self.rhs}"


def _compare(kind: str, a: int, b: int) -> bool:
    if kind == "==":
        return a == b
    if kind == "!=":
        return a != b
    if kind == "<":
        return a < b
    if kind == "<=":
        return a <= b
    if kind == ">":
        return a > b
    return a >= b


# -- interval arithmetic ---------------------------------------------------------------------


def _mul_ext(a: _Bound, b: _Bound) -> _Bound:
    if a == 0 or b == 0:
        return 0  # 0 * inf is 0 here: an unbounded factor times an exact zero
    if isinstance(a, float) or isinstance(b, float):
        return _INF if (a > 0) == (b > 0) else -_INF
    return a * b


def _add_ext(a: _Bound, b: _Bound) -> _Bound:
    # Not `a + b`: an int beyond float range (a user's 10**400) plus inf would overflow converting.
    if isinstance(a, float) or isinstance(b, float):
        return a + b if isinstance(a, float) and isinstance(b, float) else (a if isinstance(a, float) else b)
    return a + b


def _imul(x: _Interval, y: _Interval) -> _Interval:
    products = [_mul_ext(p, q) for p in x for q in y]
    return (min(products), max(products))


def _ipow(x: _Interval, p: int) -> _Interval:
    if x[0] >= 0:
        return (_mul_ext_pow(x[0], p), _mul_ext_pow(x[1], p))
    result: _Interval = (1, 1)
    for _ in range(p):
        result = _imul(result, x)
    return result


def _mul_ext_pow(a: _Bound, p: int) -> _Bound:
    return a if isinstance(a, float) else a**p


def _floor_ext(a: _Bound, k: int) -> _Bound:
    return a if isinstance(a, float) else a // k


def _ceil_div(a: int, k: int) -> int:
    return -((-a) // k)


def _to_opt(b: _Bound) -> int | None:
    return None if isinstance(b, float) else b


# -- modular arithmetic ----------------------------------------------------------------------


def _solve_congruence(c: int, d: int, k: int) -> tuple[int, int] | None:
    """Solve ``c*x ≡ d (mod k)`` as ``x ≡ r (mod m)``; None if unsolvable (m == 1: no info)."""
    c %= k
    d %= k
    g = gcd(c, k)
    if d % g:
        return None
    m = k // g
    if m == 1:
        return (1, 0)
    return (m, (d // g) * pow(c // g, -1, m) % m)


def _crt(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """Combine ``x ≡ r1 (mod m1)`` and ``x ≡ r2 (mod m2)``; None if incompatible."""
    (m1, r1), (m2, r2) = a, b
    g = gcd(m1, m2)
    if (r2 - r1) % g:
        return None
    step = m2 // g
    t = (r2 - r1) // g * pow(m1 // g, -1, step) % step if step > 1 else 0
    lcm = m1 * step
    return (lcm, (r1 + m1 * t) % lcm)


class _Facts:
    """The compiled form of a ConstraintSet plus the caches of its queries."""

    def __init__(self, constraints: Iterable[Constraint]) -> None:
        self.inconsistent = False
        # Eliminated symbol -> its value over surviving symbols (never mentions eliminated ones).
        self.subst: dict[str, Dim] = {}
        # Symbol -> (k, r) with X ≡ r (mod k), k >= 2; X is rewritten as k*X' + r.
        self.residues: dict[str, tuple[int, int]] = {}
        self.prime_sub: dict[str, Dim] = {}
        # Fresh symbol -> (original symbol, k, r), to map results back for display.
        self.unprime: dict[str, tuple[str, int, int]] = {}
        # Interval of every surviving user symbol and fresh symbol (default [0, inf)).
        self.intervals: dict[str, _Interval] = {}
        self.nonzero: set[Dim] = set()
        self.nonneg: list[Dim] = []

        self._keep_cache: dict[Dim, Dim] = {}
        self._norm_cache: dict[Dim, Dim] = {}
        self._show_cache: dict[Dim, Dim] = {}
        self._iv_cache: dict[Dim, _Interval] = {}
        self._proof_cache: dict[tuple[str, Dim, Dim], bool] = {}
        self._compile(list(constraints))

    # -- compilation -------------------------------------------------------------------------

    def _compile(self, constraints: list[Constraint]) -> None:
        deferred: list[Dim] = []
        for c in constraints:
            if c.kind == "==":
                self._add_equality(c.lhs - c.rhs, deferred)
        for e in deferred:
            self._add_residue(e.substitute(self.subst))
        fresh_of: dict[str, str] = {}
        for x, (k, r) in self.residues.items():
            fresh = fresh_of[x] = x + "'"  # not an identifier, so no user symbol clashes
            self.prime_sub[x] = k * Dim.internal_sym(fresh) + r
            self.unprime[fresh] = (x, k, r)

        lower: dict[str, int] = {}
        upper: dict[str, int] = {}
        excluded: dict[str, set[int]] = {}
        relational: list[Dim] = []
        ne_raw: list[Dim] = []
        # Each eliminated symbol is an extent too, so its value is >= 0.
        facts: list[Dim] = list(self.subst.values())
        for c in constraints:
            if c.kind in ("<", "<="):
                facts.append(c.rhs - c.lhs - (1 if c.kind == "<" else 0))
            elif c.kind in (">", ">="):
                facts.append(c.lhs - c.rhs - (1 if c.kind == ">" else 0))
            elif c.kind == "!=":
                e = (c.lhs - c.rhs).substitute(self.subst)
                ne_raw.append(e)
                self._note_excluded(e, excluded)
        for raw in facts:
            g = raw.substitute(self.subst)
            lin = g.as_linear()
            if g.is_const:
                if g.value < 0:
                    self.inconsistent = True
            elif lin is not None and len(lin[0]) == 1:
                ((x, a),) = lin[0].items()
                b = lin[1]  # a*x + b >= 0
                if a > 0:
                    lower[x] = max(lower.get(x, 0), _ceil_div(-b, a))
                else:
                    hi = b // -a
                    upper[x] = min(upper[x], hi) if x in upper else hi
            else:
                relational.append(g)

        symbols = set(lower) | set(upper) | set(excluded)
        for x in sorted(symbols):
            lo, hi = lower.get(x, 0), upper.get(x)
            # A `!=` fact at an end of the range shrinks it (N >= 0 and N != 0 give N >= 1).
            bad = excluded.get(x, set())
            while lo in bad:
                lo += 1
            while hi is not None and hi in bad:
                hi -= 1
            if hi is not None and lo > hi:
                self.inconsistent = True
            self.intervals[x] = (lo, _INF if hi is None else hi)
            if x in self.residues:
                k, r = self.residues[x]
                fresh_lo = max(0, _ceil_div(lo - r, k))
                fresh_hi: _Bound = _INF if hi is None else (hi - r) // k
                self.intervals[fresh_of[x]] = (fresh_lo, fresh_hi)
                if fresh_lo > fresh_hi:
                    self.inconsistent = True

        self.nonneg = [self.norm_keep(g) for g in relational]
        for e in ne_raw:
            for n in (self.norm(e), self.norm_keep(e)):
                self.nonzero.add(n)
                self.nonzero.add(-n)

    def _add_equality(self, e: Dim, deferred: list[Dim]) -> None:
        e = e.substitute(self.subst)
        if e.is_const:
            if e.value != 0:
                self.inconsistent = True
            return
        # A symbol can be eliminated when it occurs only as a top-level `±1*X` term.
        elsewhere: set[str] = set()
        linear: dict[str, int] = {}
        for mono, coef in e.terms:
            if len(mono) == 1 and mono[0][1] == 1 and isinstance(mono[0][0], str):
                linear[mono[0][0]] = coef
            else:
                for atom, _p in mono:
                    elsewhere |= {atom} if isinstance(atom, str) else atom.arg.free_symbols
        candidates = [x for x, c in linear.items() if abs(c) == 1 and x not in elsewhere]
        if not candidates:
            deferred.append(e)
            return
        x = max(candidates)
        coef = linear[x]
        value = (Dim.internal_sym(x) * coef - e) * coef  # coef*x + rest == 0  =>  x == -rest*coef
        for y, v in self.subst.items():
            self.subst[y] = v.substitute({x: value})
        self.subst[x] = value

    def _add_residue(self, e: Dim) -> None:
        """Use ``s*(p % k) + d == 0`` with ``p`` linear in one symbol as a residue fact."""
        if e.is_const:
            if e.value != 0:
                self.inconsistent = True
            return
        terms = e.terms
        mono, s = terms[0]
        d = e.const_term
        if len(terms) - (1 if d else 0) != 1 or len(mono) != 1:
            return
        atom, power = mono[0]
        if power != 1 or not isinstance(atom, Mod):
            return
        # s*(p % k) == -d; canonical forms scale modulo atoms (`(4*D) % 32` -> `4*(D % 8)`).
        r, rest = divmod(-d, s)
        if rest or not 0 <= r < atom.k:
            self.inconsistent = True
            return
        lin = atom.arg.as_linear()
        if lin is None or len(lin[0]) != 1:
            return
        ((x, c),) = lin[0].items()
        solved = _solve_congruence(c, r - lin[1], atom.k)
        if solved is None:
            self.inconsistent = True
            return
        if solved[0] == 1:
            return
        merged = _crt(self.residues[x], solved) if x in self.residues else solved
        if merged is None:
            self.inconsistent = True
        else:
            self.residues[x] = merged

    def _note_excluded(self, e: Dim, excluded: dict[str, set[int]]) -> None:
        lin = e.as_linear()
        if lin is None or len(lin[0]) != 1:
            return
        ((x, a),) = lin[0].items()
        if lin[1] % a == 0:
            excluded.setdefault(x, set()).add(-lin[1] // a)

    # -- normal forms ------------------------------------------------------------------------

    def norm_keep(self, d: Dim) -> Dim:
        """Internal form: facts applied, decidable atoms folded, modulo atoms kept."""
        cached = self._keep_cache.get(d)
        if cached is None:
            cached = d.substitute(self.subst).substitute(self.prime_sub)
            cached = cached.rewrite(self._fold_atom)
            self._keep_cache[d] = cached
        return cached

    def norm(self, d: Dim) -> Dim:
        """Internal form with ``p % k`` expanded to ``p - k*(p//k)``: best for equality."""
        cached = self._norm_cache.get(d)
        if cached is None:
            cached = self.norm_keep(d).rewrite(_expand_mod)
            self._norm_cache[d] = cached
        return cached

    def _fold_atom(self, atom: Atom) -> Dim | None:
        if isinstance(atom, str):
            return None
        lo, hi = self.interval(atom.arg)
        if isinstance(lo, float) or isinstance(hi, float) or lo // atom.k != hi // atom.k:
            return None
        q = lo // atom.k
        return Dim.const(q) if isinstance(atom, FloorDiv) else atom.arg - atom.k * q

    def show(self, d: Dim) -> Dim:
        """A normal form over user symbols only, for display.

        Both candidates are equal in value under the facts: the residue-aware internal form
        mapped back (``(D//4)*4`` -> ``D``) and the plain substituted form (which keeps
        ``D//3`` rather than an equal but odd ``D//4 + D//12``). Show the shorter one.
        """
        cached = self._show_cache.get(d)
        if cached is None:
            mapped = self._map_back(self.norm_keep(d))
            plain = d.substitute(self.subst).rewrite(self._fold_atom)
            cached = min((mapped, plain), key=lambda x: (len(str(x)), str(x)))
            self._show_cache[d] = cached
        return cached

    def _map_back(self, d: Dim) -> Dim:
        if not (d.free_symbols & self.unprime.keys()):
            return d
        total = Dim.const(0)
        for mono, coef in d.terms:
            factor = Dim.const(1)
            for atom, p in mono:
                if isinstance(atom, str) and atom in self.unprime:
                    x, k, r = self.unprime[atom]
                    kp = k**p
                    if coef % kp == 0:  # coef*((X - r)/k)**p is exact
                        coef //= kp
                        base = Dim.sym(x) - r
                    elif r == 0:  # X**p is a multiple of k**p, so the division below is exact
                        g = gcd(coef, kp)
                        coef //= g
                        factor = factor * (_power(Dim.sym(x), p) // (kp // g))
                        continue
                    else:
                        base = Dim.sym(x) // k
                elif isinstance(atom, str):
                    base = Dim.internal_sym(atom)
                elif isinstance(atom, FloorDiv):
                    base = self._map_back(atom.arg) // atom.k
                else:
                    base = self._map_back(atom.arg) % atom.k
                factor = factor * _power(base, p)
            total = total + coef * factor
        return total

    # -- intervals ---------------------------------------------------------------------------

    def interval(self, d: Dim) -> _Interval:
        """Sound bounds of an internal-form Dim."""
        cached = self._iv_cache.get(d)
        if cached is not None:
            return cached
        lo: _Bound = 0
        hi: _Bound = 0
        for mono, coef in d.terms:
            iv: _Interval = (coef, coef)
            for atom, p in mono:
                iv = _imul(iv, _ipow(self._atom_interval(atom), p))
            lo, hi = _add_ext(lo, iv[0]), _add_ext(hi, iv[1])
        result = (lo, hi)
        self._iv_cache[d] = result
        return result

    def _atom_interval(self, atom: Atom) -> _Interval:
        if isinstance(atom, str):
            return self.intervals.get(atom, (0, _INF))
        lo, hi = self.interval(atom.arg)
        if isinstance(atom, FloorDiv):
            return (_floor_ext(lo, atom.k), _floor_ext(hi, atom.k))
        if not isinstance(lo, float) and not isinstance(hi, float) and lo // atom.k == hi // atom.k:
            return (lo % atom.k, hi % atom.k)
        return (0, atom.k - 1)

    def best_interval(self, d: Dim) -> _Interval:
        a = self.interval(self.norm_keep(d))
        b = self.interval(self.norm(d))
        return (max(a[0], b[0]), min(a[1], b[1]))

    # -- proofs ------------------------------------------------------------------------------

    def proven(self, kind: str, a: Dim, b: Dim) -> bool:
        key = (kind, a, b)
        cached = self._proof_cache.get(key)
        if cached is None:
            cached = self._prove(kind, a, b)
            self._proof_cache[key] = cached
        return cached

    def _prove(self, kind: str, a: Dim, b: Dim) -> bool:
        if kind == "==":
            return self.norm(a - b) == 0
        if kind == "!=":
            return self._prove_nonzero(a - b)
        if kind == "<=":
            return self._prove_nonneg(b - a)
        if kind == "<":
            return self._prove_nonneg(b - a - 1)
        raise DimError(f"unknown proof kind {kind!r}")

    def _prove_nonneg(self, d: Dim) -> bool:
        if self.best_interval(d)[0] >= 0:
            return True
        keep = self.norm_keep(d)
        return any(self.interval(keep - f)[0] >= 0 for f in self.nonneg)

    def _prove_nonzero(self, d: Dim) -> bool:
        n = self.norm(d)
        if n.is_const:
            return n.value != 0
        lo, hi = self.best_interval(d)
        if lo > 0 or hi < 0:
            return True
        if n in self.nonzero or self.norm_keep(d) in self.nonzero:
            return True
        # Every monomial is an integer: if the non-constant coefficients share a factor g
        # that does not divide the constant, the value is never 0.
        g = 0
        for mono, c in n.terms:
            if mono:
                g = gcd(g, c)
        return g > 1 and n.const_term % g != 0

    def divides(self, k: int, d: Dim) -> bool:
        n = self.norm(d)
        if all(c % k == 0 for _, c in n.terms):
            return True
        return self.norm_keep(d % k) == 0


def _power(d: Dim, p: int) -> Dim:
    result = Dim.const(1)
    for _ in range(p):
        result = result * d
    return result


def _expand_mod(atom: Atom) -> Dim | None:
    if isinstance(atom, Mod):
        return atom.arg - atom.k * (atom.arg // atom.k)
    return None


class ConstraintSet:
    """The facts of one ``where`` clause (or scope) and the queries the checker needs.

    All symbols are assumed to be integers ``>= 0``. Proof methods are sound, not complete.
    """

    def __init__(self, constraints: Iterable[Constraint] = ()) -> None:
        self._constraints: list[Constraint] = []
        self._facts: _Facts | None = None
        for c in constraints:
            self.add(c)

    def add(self, c: Constraint) -> None:
        """Add a fact; invalidates every cached derivation."""
        if not isinstance(c, Constraint):
            raise TypeError(f"expected a Constraint, got {c!r}")
        self._constraints.append(c)
        self._facts = None

    def extend(self, cs: Iterable[Constraint]) -> None:
        for c in cs:
            self.add(c)

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return tuple(self._constraints)

    def __iter__(self) -> Iterator[Constraint]:
        return iter(tuple(self._constraints))

    def __len__(self) -> int:
        return len(self._constraints)

    def __repr__(self) -> str:
        return f"ConstraintSet([{', '.join(str(c) for c in self._constraints)}])"

    def _compiled(self) -> _Facts:
        if self._facts is None:
            self._facts = _Facts(self._constraints)
        return self._facts

    @property
    def consistent(self) -> bool:
        """False if compiling the facts already found them contradictory (best-effort)."""
        return not self._compiled().inconsistent

    # -- queries -----------------------------------------------------------------------------

    def simplify(self, d: Dim | int | str) -> Dim:
        """Normal form of ``d`` under the facts, over the user's symbols only."""
        return self._compiled().show(Dim.of(d))

    def prove_eq(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self._compiled().proven("==", Dim.of(a), Dim.of(b))

    def prove_ne(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self._compiled().proven("!=", Dim.of(a), Dim.of(b))

    def prove_le(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self._compiled().proven("<=", Dim.of(a), Dim.of(b))

    def prove_lt(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self._compiled().proven("<", Dim.of(a), Dim.of(b))

    def prove_ge(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self.prove_le(b, a)

    def prove_gt(self, a: Dim | int | str, b: Dim | int | str) -> bool:
        return self.prove_lt(b, a)

    def prove(self, c: Constraint) -> bool:
        """Whether ``c`` provably follows from the facts."""
        return self._prove_kind(c.kind, c.lhs, c.rhs)

    def refutes(self, c: Constraint) -> bool:
        """Whether ``c`` is provably false given the facts."""
        return self.prove(c.negated())

    def _prove_kind(self, kind: str, a: Dim, b: Dim) -> bool:
        if kind == ">":
            return self.prove_lt(b, a)
        if kind == ">=":
            return self.prove_le(b, a)
        return self._compiled().proven(kind, a, b)

    def divides(self, k: int, d: Dim | int | str) -> bool:
        """Whether ``k`` provably divides ``d`` (``k`` a positive int)."""
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise DimError(f"divisibility is only defined for a positive int, got {k!r}")
        return self._compiled().divides(k, Dim.of(d))

    def bounds(self, d: Dim | int | str) -> tuple[int | None, int | None]:
        """Inclusive ``(lo, hi)`` bounds of ``d``; None where unbounded."""
        lo, hi = self._compiled().best_interval(Dim.of(d))
        return _to_opt(lo), _to_opt(hi)

    def contradictions(self) -> list[Constraint]:
        """Constraints provably false on their own or given the others (best-effort)."""
        found: list[Constraint] = []
        for i, c in enumerate(self._constraints):
            others = ConstraintSet(self._constraints[:i] + self._constraints[i + 1:])
            if others.refutes(c):
                found.append(c)
        return found

    def check(self, env: Mapping[str, int]) -> list[Constraint]:
        """The constraints violated by concrete extents; DimError if a symbol is unbound."""
        return [c for c in self._constraints if not c.holds(env)]
