"""Symbolic integer algebra for tensor dimensions.

Tensor extents in Tessera types are either integers or expressions over named
symbols: ``B``, ``B*H``, ``S + 1``, ``D//4``, ``(D//4)*4``, ``2*D - 1``, ``N % 8``.
The shape checker compares such extents constantly, so they are kept in a
canonical normal form (`Dim`) where structural equality is a cheap, sound test
of semantic equality.

Normal form: a polynomial with integer coefficients over *atoms*. An atom is
either a symbol name (``str``) or an opaque non-linear atom ``FloorDiv(p, k)`` /
``Mod(p, k)`` with ``p`` itself in normal form and ``k`` a positive integer
constant (``k >= 2`` after canonicalisation). Every symbol stands for an
integer, so every monomial is integer-valued; the floor-division and modulo
rules below rely on that.

Facts *about* symbols (``D % 8 == 0``, ranges, equalities) are not known here;
`tessera.constraints` layers them on top.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import gcd
from typing import TypeAlias

__all__ = [
    "Atom",
    "Dim",
    "DimError",
    "FloorDiv",
    "Mod",
    "Monomial",
    "parse_dim",
]


class DimError(ValueError):
    """A malformed or unsupported dimension expression or operation."""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class FloorDiv:
    """The opaque atom ``arg // k`` (``k >= 2``; ``arg`` already reduced)."""

    arg: Dim
    k: int

    def __str__(self) -> str:
        return f"{_arg_text(self.arg)}//{self.k}"


@dataclass(frozen=True)
class Mod:
    """The opaque atom ``arg % k`` (``k >= 2``; ``arg`` already reduced)."""

    arg: Dim
    k: int

    def __str__(self) -> str:
        return f"{_arg_text(self.arg)} % {self.k}"


Atom: TypeAlias = str | FloorDiv | Mod
# A product of atoms raised to positive powers, sorted by `_atom_key`; () is the constant monomial.
Monomial: TypeAlias = tuple[tuple[Atom, int], ...]
_Terms: TypeAlias = tuple[tuple[Monomial, int], ...]


def _atom_key(atom: Atom) -> tuple[int, str, int]:
    # Printed text is a deterministic, total key for normal forms, and it makes term order
    # match what users read.
    if isinstance(atom, str):
        return (0, atom, 0)
    if isinstance(atom, FloorDiv):
        return (1, str(atom.arg), atom.k)
    return (2, str(atom.arg), atom.k)


def _mono_key(mono: Monomial) -> tuple[int, tuple[tuple[tuple[int, str, int], int], ...]]:
    # Higher total degree first, then by atoms; the constant monomial (degree 0) sorts last.
    degree = sum(p for _, p in mono)
    return (-degree, tuple((_atom_key(a), -p) for a, p in mono))


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    if not a:
        return b
    if not b:
        return a
    powers: dict[Atom, int] = dict(a)
    for atom, p in b:
        powers[atom] = powers.get(atom, 0) + p
    return tuple(sorted(powers.items(), key=lambda ap: _atom_key(ap[0])))


def _make(terms: Mapping[Monomial, int]) -> Dim:
    items = tuple(
        sorted(((m, c) for m, c in terms.items() if c != 0), key=lambda mc: _mono_key(mc[0]))
    )
    return _from_sorted(items)


def _from_sorted(items: _Terms) -> Dim:
    d = object.__new__(Dim)
    object.__setattr__(d, "_terms", items)
    object.__setattr__(d, "_hash", None)
    object.__setattr__(d, "_text", None)
    object.__setattr__(d, "_syms", None)
    return d


def _atom_dim(atom: Atom) -> Dim:
    return _from_sorted(((((atom, 1),), 1),))


def _coerce(x: object) -> Dim | None:
    if isinstance(x, Dim):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return Dim.const(x)
    return None


def _divisor(x: object, op: str, lhs: object) -> int:
    d = _coerce(x)
    if d is None or not d.is_const or d.value <= 0:
        raise DimError(
            f"cannot compute ({lhs}) {op} ({x}): dimension floor-division and modulo are only "
            "defined by a positive integer constant"
        )
    return d.value


def _content(values: Iterable[int], k: int) -> int:
    g = k
    for v in values:
        g = gcd(g, v)
    return g


def _floordiv(p: Dim, k: int) -> Dim:
    if k == 1:
        return p
    # Split p = k*q + r with r's coefficients in [0, k): k*q is a multiple of k for every integer
    # assignment, so p//k == q + r//k exactly. This makes the remainder part canonical.
    q: dict[Monomial, int] = {}
    r: dict[Monomial, int] = {}
    for m, c in p._terms:
        qc, rc = divmod(c, k)
        if qc:
            q[m] = qc
        if rc:
            r[m] = rc
    quot = _make(q)
    if not r or (len(r) == 1 and () in r):
        return quot  # a lone constant remainder is in [0, k), so it floors to 0
    g = _content((c for m, c in r.items() if m), k)
    if g > 1:
        # (g*s + c)//(g*m) == (s + c//g)//m for 0 <= c: the part c % g < g never carries.
        const = r.pop((), 0)
        r = {m: c // g for m, c in r.items()}
        if const // g:
            r[()] = const // g
        k //= g
        return quot + _floordiv(_make(r), k)
    rem = _make(r)
    for mono, c in rem._terms:
        if c == 1 and len(mono) == 1 and mono[0][1] == 1 and isinstance(mono[0][0], FloorDiv):
            # (q + x//a)//k == (a*q + x)//(a*k) for integer q and positive a, k, since
            # q + x//a == (a*q + x)//a. This removes nesting, so equal values meet in one form.
            inner = mono[0][0]
            rest = rem - _atom_dim(inner)
            return quot + _floordiv(inner.k * rest + inner.arg, inner.k * k)
    atom, const = rem._atom_plus_const()
    if isinstance(atom, Mod) and atom.k - 1 + const < k:
        return quot  # 0 <= x % m + c < k, so it floors to 0
    return quot + _atom_dim(FloorDiv(rem, k))


def _mod(p: Dim, k: int) -> Dim:
    if k == 1:
        return Dim.const(0)
    # Coefficients only matter modulo k, since every monomial is an integer.
    r = {m: c % k for m, c in p._terms if c % k}
    if not r:
        return Dim.const(0)
    if len(r) == 1 and () in r:
        return Dim.const(r[()])
    g = _content((c for m, c in r.items() if m), k)
    if g > 1:
        # (g*s + c) % (g*m) == g*((s + c//g) % m) + c % g for 0 <= c.
        const = r.pop((), 0)
        s = _make({m: c // g for m, c in r.items()}) + const // g
        return g * _mod(s, k // g) + const % g
    rem = _make(r)
    atom, const = rem._atom_plus_const()
    if isinstance(atom, Mod):
        if atom.k % k == 0:
            return _mod(atom.arg + const, k)  # (x % (j*k) + c) % k == (x + c) % k
        if atom.k - 1 + const < k:
            return rem  # already in [0, k)
    return _atom_dim(Mod(rem, k))


def _arg_text(arg: Dim) -> str:
    # `B*H//4` parses as (B*H)//4, so a bare product of symbols needs no parentheses.
    if len(arg._terms) == 1:
        mono, c = arg._terms[0]
        if c == 1 and mono and all(isinstance(a, str) for a, _ in mono):
            return str(arg)
    return f"({arg})"


def _term_text(c: int, mono: Monomial) -> str:
    factors: list[str] = []
    bare = c == 1 and len(mono) == 1 and mono[0][1] == 1
    for atom, p in mono:
        text = str(atom)
        if not isinstance(atom, str) and not bare:
            # `4*D//4` would parse as (4*D)//4, and `B*N % 8` as (B*N) % 8.
            text = f"({text})"
        factors.extend([text] * p)
    if c != 1 or not factors:
        factors.insert(0, str(c))
    return "*".join(factors)


class Dim:
    """An immutable symbolic integer in canonical normal form.

    Build with `Dim.const`, `Dim.sym`, `Dim.of`, `parse_dim` (or ``Dim("B*H")``) and the
    operators ``+ - * // %`` (floor-division and modulo by positive integer constants only).
    ``==`` is structural equality of normal forms; a constant Dim also equals the same int.
    """

    __slots__ = ("_hash", "_syms", "_terms", "_text")
    _terms: _Terms
    _hash: int | None
    _text: str | None
    _syms: frozenset[str] | None

    def __init__(self, value: int | str | Dim = 0) -> None:
        if isinstance(value, str):
            src = parse_dim(value)
        else:
            coerced = _coerce(value)
            if coerced is None:
                raise DimError(f"cannot make a dimension from {value!r}")
            src = coerced
        for slot in self.__slots__:
            object.__setattr__(self, slot, getattr(src, slot))

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def const(n: int) -> Dim:
        """The constant dimension ``n``."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise DimError(f"a constant dimension must be an int, got {n!r}")
        return _from_sorted((((), n),) if n else ())

    @staticmethod
    def sym(name: str) -> Dim:
        """The symbol ``name`` (an identifier: ``[A-Za-z_][A-Za-z0-9_]*``)."""
        if not isinstance(name, str) or not _IDENT.match(name):
            raise DimError(f"a dimension symbol must be an identifier, got {name!r}")
        return _atom_dim(name)

    @staticmethod
    def of(x: int | str | Dim) -> Dim:
        """Coerce an int (constant), a str (a single symbol name) or a Dim."""
        if isinstance(x, str):
            return Dim.sym(x)
        d = _coerce(x)
        if d is None:
            raise DimError(f"cannot make a dimension from {x!r}")
        return d

    @staticmethod
    def from_terms(terms: Mapping[Monomial, int]) -> Dim:
        """Build from monomial -> coefficient; atoms must already be canonical (internal use)."""
        norm: dict[Monomial, int] = {}
        for m, c in terms.items():
            key = tuple(sorted(m, key=lambda ap: _atom_key(ap[0])))
            norm[key] = norm.get(key, 0) + c
        return _make(norm)

    @staticmethod
    def internal_sym(name: str) -> Dim:
        """A symbol with any non-empty name, e.g. a solver's fresh ``D'`` no user can write."""
        if not isinstance(name, str) or not name:
            raise DimError(f"a dimension symbol must be a non-empty str, got {name!r}")
        return _atom_dim(name)

    # -- queries -----------------------------------------------------------------------------

    @property
    def terms(self) -> _Terms:
        """The normal form: ``((monomial, coefficient), ...)`` in print order, no zero terms."""
        return self._terms

    @property
    def is_const(self) -> bool:
        return not self._terms or (len(self._terms) == 1 and self._terms[0][0] == ())

    @property
    def value(self) -> int:
        """The integer value of a constant Dim; DimError if it mentions symbols."""
        if not self._terms:
            return 0
        if self.is_const:
            return self._terms[0][1]
        raise DimError(f"dimension {self} is not a constant")

    @property
    def free_symbols(self) -> frozenset[str]:
        """Every symbol name mentioned, including inside floor-division and modulo atoms."""
        if self._syms is None:
            names: set[str] = set()
            for mono, _ in self._terms:
                for atom, _p in mono:
                    if isinstance(atom, str):
                        names.add(atom)
                    else:
                        names |= atom.arg.free_symbols
            object.__setattr__(self, "_syms", frozenset(names))
        assert self._syms is not None
        return self._syms

    @property
    def const_term(self) -> int:
        """The coefficient of the constant monomial (0 if none)."""
        if self._terms and self._terms[-1][0] == ():
            return self._terms[-1][1]
        return 0

    def as_linear(self) -> tuple[dict[str, int], int] | None:
        """``(coeffs, const)`` if this is ``sum(c*sym) + const`` over plain symbols, else None."""
        coeffs: dict[str, int] = {}
        const = 0
        for mono, c in self._terms:
            if not mono:
                const = c
            elif len(mono) == 1 and mono[0][1] == 1 and isinstance(mono[0][0], str):
                coeffs[mono[0][0]] = c
            else:
                return None
        return coeffs, const

    def _atom_plus_const(self) -> tuple[Atom | None, int]:
        """``(atom, c)`` if self is exactly ``atom + c``, else ``(None, 0)``."""
        terms = self._terms
        if not terms or len(terms) > 2:
            return None, 0
        mono, coef = terms[0]
        if coef != 1 or len(mono) != 1 or mono[0][1] != 1:
            return None, 0
        if len(terms) == 2:
            if terms[1][0] != ():
                return None, 0
            return mono[0][0], terms[1][1]
        return mono[0][0], 0

    def single_atom(self) -> Atom | None:
        """The atom if this Dim is exactly one atom (coefficient 1, power 1), else None."""
        atom, const = self._atom_plus_const()
        return atom if const == 0 else None

    # -- rewriting ---------------------------------------------------------------------------

    def rewrite(self, fn: Callable[[Atom], Dim | None]) -> Dim:
        """Rebuild bottom-up, replacing each atom ``a`` by ``fn(a)`` unless that is None.

        Floor-division and modulo atoms are re-canonicalised from their rewritten argument
        before ``fn`` sees them, so ``fn`` can fold atoms that became decidable.
        """
        new_atoms: dict[Atom, Dim] = {}
        for mono, _ in self._terms:
            for atom, _p in mono:
                if atom not in new_atoms:
                    replaced = _rewrite_atom(atom, fn)
                    if replaced is not None:
                        new_atoms[atom] = replaced
        return _replace_atoms(self, new_atoms)

    def substitute(self, mapping: Mapping[str, int | Dim]) -> Dim:
        """Replace symbols by ints or Dims (simultaneously) and renormalise."""
        if not mapping or not (self.free_symbols & mapping.keys()):
            return self
        values = {name: Dim.of(v) for name, v in mapping.items()}
        return self.rewrite(lambda a: values.get(a) if isinstance(a, str) else None)

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The integer value under ``env``; DimError names the first unbound symbol."""
        missing = sorted(self.free_symbols - env.keys())
        if missing:
            raise DimError(f"cannot evaluate {self}: symbol {missing[0]!r} is unbound")
        return self._eval(env)

    def _eval(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, c in self._terms:
            v = c
            for atom, p in mono:
                if isinstance(atom, str):
                    base = env[atom]
                elif isinstance(atom, FloorDiv):
                    base = atom.arg._eval(env) // atom.k
                else:
                    base = atom.arg._eval(env) % atom.k
                v *= base**p
            total += v
        return total

    # -- arithmetic --------------------------------------------------------------------------

    def __add__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        if not o._terms:
            return self
        if not self._terms:
            return o
        total = dict(self._terms)
        for m, c in o._terms:
            total[m] = total.get(m, 0) + c
        return _make(total)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return _from_sorted(tuple((m, -c) for m, c in self._terms))

    def __pos__(self) -> Dim:
        return self

    def __sub__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        return self + (-o)

    def __rsub__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        return o + (-self)

    def __mul__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        if o.is_const:
            k = o.value
            if k == 1:
                return self
            return _from_sorted(tuple((m, c * k) for m, c in self._terms) if k else ())
        total: dict[Monomial, int] = {}
        for ma, ca in self._terms:
            for mb, cb in o._terms:
                m = _mono_mul(ma, mb)
                total[m] = total.get(m, 0) + ca * cb
        return _make(total)

    __rmul__ = __mul__

    def __floordiv__(self, other: object) -> Dim:
        if _coerce(other) is None:
            return NotImplemented
        return _floordiv(self, _divisor(other, "//", self))

    def __rfloordiv__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        return _floordiv(o, _divisor(self, "//", o))

    def __mod__(self, other: object) -> Dim:
        if _coerce(other) is None:
            return NotImplemented
        return _mod(self, _divisor(other, "%", self))

    def __rmod__(self, other: object) -> Dim:
        o = _coerce(other)
        if o is None:
            return NotImplemented
        return _mod(o, _divisor(self, "%", o))

    # -- identity ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dim):
            return self is other or self._terms == other._terms
        if isinstance(other, int) and not isinstance(other, bool):
            return self.is_const and self.value == other
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            # Constants hash like the int they equal.
            h = hash(self.value) if self.is_const else hash(self._terms)
            object.__setattr__(self, "_hash", h)
        assert self._hash is not None
        return self._hash

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Dim is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Dim is immutable")

    def __reduce__(self) -> tuple[Callable[[_Terms], Dim], tuple[_Terms]]:
        return (_from_sorted, (self._terms,))

    def __int__(self) -> int:
        return self.value

    def __str__(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", self._render())
        assert self._text is not None
        return self._text

    def __repr__(self) -> str:
        return f"Dim({str(self)!r})"

    def _render(self) -> str:
        if not self._terms:
            return "0"
        parts: list[str] = []
        for i, (mono, c) in enumerate(self._terms):
            body = _term_text(abs(c), mono)
            if i == 0:
                if c < 0:
                    # `-D//4` would parse as (-D)//4, and `-N % 8` as (-N) % 8.
                    opaque = abs(c) == 1 and len(mono) == 1 and mono[0][1] == 1
                    opaque = opaque and not isinstance(mono[0][0], str)
                    parts.append(f"-({body})" if opaque else f"-{body}")
                else:
                    parts.append(body)
            else:
                parts.append((" - " if c < 0 else " + ") + body)
        return "".join(parts)


def _rewrite_atom(atom: Atom, fn: Callable[[Atom], Dim | None]) -> Dim | None:
    if isinstance(atom, str):
        return fn(atom)
    new_arg = atom.arg.rewrite(fn)
    if new_arg is atom.arg:
        return fn(atom)
    rebuilt = new_arg // atom.k if isinstance(atom, FloorDiv) else new_arg % atom.k
    # Canonicalisation may create new opaque atoms (`(2*x) % 4` -> `2*(x % 2)`); fn must see
    # those too. Their arguments are already rewritten, so only this top level is visited:
    # re-visiting symbols would apply a substitution twice.
    top: dict[Atom, Dim] = {}
    for mono, _ in rebuilt._terms:
        for a, _p in mono:
            if not isinstance(a, str) and a not in top:
                replaced = fn(a)
                if replaced is not None:
                    top[a] = replaced
    return _replace_atoms(rebuilt, top)


def _replace_atoms(d: Dim, new_atoms: Mapping[Atom, Dim]) -> Dim:
    if not new_atoms:
        return d
    total: dict[Monomial, int] = {}
    for mono, c in d._terms:
        factor = Dim.const(c)
        for atom, p in mono:
            base = new_atoms.get(atom)
            if base is None:
                base = _atom_dim(atom)
            for _ in range(p):
                factor = factor * base
        for m, fc in factor._terms:
            total[m] = total.get(m, 0) + fc
    return _make(total)


_BINOPS: dict[type[ast.operator], Callable[[Dim, Dim], Dim]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}

_OP_NAMES: dict[type[ast.AST], str] = {
    ast.Div: "'/' (use '//')",
    ast.Pow: "'**' (write the product out)",
    ast.MatMult: "'@'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.BitXor: "'^'",
    ast.Invert: "'~'",
    ast.Not: "'not'",
}

_ALLOWED = (
    "identifiers, non-negative integer literals, + - * // %, unary minus and parentheses"
)


def parse_dim(text: str) -> Dim:
    """Parse a dimension expression such as ``"(D//4)*4"`` or ``"2*D - 1"``.

    Accepts identifiers, non-negative integer literals, ``+ - * // %``, unary minus and
    parentheses with Python precedence; anything else raises DimError.
    """
    if not isinstance(text, str):
        raise DimError(f"a dimension expression must be a str, got {text!r}")
    if not text.strip():
        raise DimError("empty dimension expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise DimError(f"invalid dimension expression {text!r}: allowed are {_ALLOWED}") from exc
    try:
        return _from_ast(tree.body, text)
    except RecursionError as exc:
        raise DimError(f"dimension expression {text!r} is nested too deeply") from exc


def _from_ast(node: ast.AST, text: str) -> Dim:
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            what = _OP_NAMES.get(type(node.op), type(node.op).__name__)
            raise DimError(f"operator {what} is not allowed in dimension {text!r}; "
                           f"allowed are {_ALLOWED}")
        return op(_from_ast(node.left, text), _from_ast(node.right, text))
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return -_from_ast(node.operand, text)
        if isinstance(node.op, ast.UAdd):
            return _from_ast(node.operand, text)
        what = _OP_NAMES.get(type(node.op), type(node.op).__name__)
        raise DimError(f"operator {what} is not allowed in dimension {text!r}; "
                       f"allowed are {_ALLOWED}")
    if isinstance(node, ast.Constant):
        if type(node.value) is int:
            return Dim.const(node.value)
        raise DimError(f"literal {node.value!r} is not allowed in dimension {text!r}; "
                       f"allowed are {_ALLOWED}")
    if isinstance(node, ast.Name):
        return Dim.sym(node.id)
    what = type(node).__name__
    if isinstance(node, ast.Call):
        what = "a call"
    elif isinstance(node, ast.Attribute):
        what = "an attribute access"
    elif isinstance(node, ast.Compare):
        what = "a comparison"
    raise DimError(f"{what} is not allowed in dimension {text!r}; allowed are {_ALLOWED}")
