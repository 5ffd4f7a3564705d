"""Python arithmetic on build-time scalars, folded while the graph is built.

Ints are `Dim`s, so `x.shape[-1] // 2` stays exact over symbolic extents; floats are Python floats.
An operation that needs the value of a symbolic extent as a float (`float(D) ** 0.5`) cannot be
folded: it raises `NotStatic`, and the builder emits it as rank-0 graph ops instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tessera.constraints import ConstraintSet
from tessera.symbolic import Dim, DimError


class NotStatic(Exception):
    """The operation needs a value only known at run time."""


def as_dim(v: object) -> Dim | None:
    if isinstance(v, bool):
        return Dim.const(int(v))
    if isinstance(v, Dim):
        return v
    return None


def as_float(v: object) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, Dim):
        if not v.is_const:
            raise NotStatic
        return float(v.value)
    if isinstance(v, float):
        return v
    raise TypeError(f"not a number: {v!r}")


def _int_op(op: str, a: Dim, b: Dim) -> object:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op in ("//", "%"):
        if b.is_const and b.value == 0:
            raise ZeroDivisionError("integer division by zero")
        if a.is_const and b.is_const:
            x, y = a.value, b.value
            return Dim.const(x // y if op == "//" else x % y)
        if b.is_const and b.value > 0:
            return a // b if op == "//" else a % b
        raise NotStatic
    if op == "/":
        return as_float(a) / as_float(b)
    if op == "**":
        if a.is_const and b.is_const:
            return Dim.const(a.value ** b.value) if b.value >= 0 else float(a.value) ** b.value
        raise NotStatic
    raise TypeError(op)


_FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y,
    "//": lambda x, y: float(math.floor(x / y)),
    "%": lambda x, y: x - y * math.floor(x / y),
    "**": lambda x, y: x ** y,
}


def binary(op: str, a: object, b: object) -> object:
    """`a op b` for host scalars (Python semantics; bools count as ints)."""
    da, db = as_dim(a), as_dim(b)
    if da is not None and db is not None:
        try:
            return _int_op(op, da, db)
        except DimError:
            raise NotStatic from None
    r = _FLOAT_OPS[op](as_float(a), as_float(b))
    return float(r) if not isinstance(r, complex) else math.nan  # (-8.0) ** (1/3), as NumPy gives


def _gelu(x: float, approximate: str) -> float:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


FLOAT_UNARY: dict[str, Callable[[float], float]] = {
    "exp": math.exp,
    "log": math.log,
    "log1p": math.log1p,
    "sqrt": math.sqrt,
    "rsqrt": lambda x: 1.0 / math.sqrt(x),
    "sin": math.sin,
    "cos": math.cos,
    "tanh": math.tanh,
    "erf": math.erf,
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
}


def unary(name: str, v: object, approximate: str = "none") -> object:
    """A unary builtin on a host scalar."""
    d = as_dim(v)
    if name == "neg":
        return -d if d is not None else -as_float(v)
    if name == "abs":
        if d is not None:
            if d.is_const:
                return Dim.const(abs(d.value))
            return d  # extents are non-negative
        return abs(as_float(v))
    if name == "relu":
        if d is not None:
            if d.is_const:
                return Dim.const(max(d.value, 0))
            return d
        return max(as_float(v), 0.0)
    if name == "isnan":
        return d is None and math.isnan(as_float(v))
    if name == "isinf":
        return d is None and math.isinf(as_float(v))
    if name == "gelu":
        return _gelu(as_float(v), approximate)
    x = as_float(v)
    try:
        return float(FLOAT_UNARY[name](x))
    except (OverflowError, ZeroDivisionError):
        return math.inf
    except ValueError:  # outside the domain: IEEE results, as the compiled code gives
        if (name == "log" and x == 0) or (name == "log1p" and x == -1):
            return -math.inf
        return math.nan


def compare(op: str, a: object, b: object, cs: ConstraintSet) -> bool:
    """A comparison of host scalars; symbolic extents are compared by proof under the where facts."""
    da, db = as_dim(a), as_dim(b)
    if da is not None and db is not None:
        if da.is_const and db.is_const:
            return _cmp(op, da.value, db.value)
        proofs = {
            "==": (cs.prove_eq, cs.prove_ne), "!=": (cs.prove_ne, cs.prove_eq),
            "<": (cs.prove_lt, cs.prove_ge), "<=": (cs.prove_le, cs.prove_gt),
            ">": (cs.prove_gt, cs.prove_le), ">=": (cs.prove_ge, cs.prove_lt),
        }[op]
        if proofs[0](da, db):
            return True
        if proofs[1](da, db):
            return False
        raise NotStatic
    return _cmp(op, as_float(a), as_float(b))


def _cmp(op: str, x: float, y: float) -> bool:
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
