"""The semantics of Tile IR's sum/mean/prod/max/min reductions on Target IR lanes, shared by every
lowering: the identity a reduction starts from, how two partial results combine, how the lanes of a
vector fold into one, and the final step (`mean` divides by the reduced extent; narrow floats are
rounded to their dtype once, at the end). `max`/`min` propagate NaN; on bool blocks they are
`or`/`and`; unsigned integers use the unsigned comparisons.
"""

from __future__ import annotations

import math

from tessera.dtypes import BOOL, DType
from tessera.ir.target import convert as cv
from tessera.ir.target.builder import Builder
from tessera.ir.target.elementwise import Elementwise
from tessera.ir.target.ops import TargetIRError, Value, Vector


def identity(kind: str, dt: DType) -> float | int | bool:
    """The value a `kind` reduction of a dt block starts from (as dt's compute constant)."""
    if dt == BOOL:
        if kind in ("max", "min"):
            return kind == "min"
        raise TargetIRError(f"reduce {kind} of a bool block: cast it to an integer first")
    if kind in ("sum", "mean"):
        return cv.compute_constant(0.0, dt)
    if kind == "prod":
        return cv.compute_constant(1.0, dt)
    return cv.compute_constant(-math.inf if kind == "max" else math.inf, dt)


def _lane_kind(kind: str, dt: DType) -> str:
    if dt == BOOL:
        return "or" if kind == "max" else "and"
    if kind in ("sum", "mean"):
        return "add"
    if kind == "prod":
        return "mul"
    return kind if not cv.is_unsigned(dt) else "u" + kind


def combine(b: Builder, kind: str, a: Value, x: Value, dt: DType) -> Value:
    """Two partial results (scalars or vectors of one width) combined."""
    return b.op(_lane_kind(kind, dt), a, x)


def lane_reduce(b: Builder, kind: str, v: Value, dt: DType) -> Value:
    """The lanes of a vector combined into one scalar (a scalar is returned as it is)."""
    if not isinstance(v.ty, Vector):
        return v
    return b.op("vreduce", v, kind=_lane_kind(kind, dt))


def finish(b: Builder, ew: Elementwise, s: Value, kind: str, n: int, dt: DType) -> Value:
    """The result of a reduction of n elements from its combined partials."""
    if kind == "mean":
        if dt.is_float:
            s = b.op("div", s, b.like(float(n), s))
        else:
            s = ew.floor_div(s, b.like(n, s), dt)
    return cv.round_to(b, s, dt) if dt.is_float else s
