"""Shape rules over symbolic dims: broadcasting, matmul, reductions, reshapes, indexing.

Each rule proves what it needs with the function's `ConstraintSet` and, when it cannot, raises an
E-SHAPE `CompilationError` that names the dimension path and the rule. Callers describe operands
with `Operand` (type, span, a printable name) so messages read like
`matmul: x.shape[1] (D) must equal w.shape[0] (K)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.constraints import ConstraintSet
from tessera.diagnostics import CompilationError, Label, error
from tessera.source import Span
from tessera.symbolic import Dim

ONE = Dim.const(1)


@dataclass(frozen=True)
class Operand:
    """A tensor operand as the shape rules see it."""

    dims: tuple[Dim, ...]
    span: Span
    name: str  # how messages refer to it: the source text, or "lhs"/"rhs"

    def path(self, axis: int) -> str:
        return f"{self.shape(axis)} ({self.dims[axis]})"

    def shape(self, axis: int) -> str:
        return f"{as_operand(self.name)}.shape[{axis}]"


def as_operand(text: str) -> str:
    """Source text ready to take `.shape[i]`: parenthesised when it is an operator expression, so that
    messages read `(i > 0).shape[1]` rather than `i > 0.shape[1]`."""
    depth = 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0 and ch == " ":
            return f"({text})"
    return f"({text})" if text.startswith("-") else text


def _equal_note(a: Dim, b: Dim) -> str:
    if any(s.startswith("T.") for s in a.free_symbols | b.free_symbols):
        return "T.m, T.n and T.k are the schedule's block sizes: distinct, so load blocks whose dims agree"
    if not a.is_const and not b.is_const:
        return f"add 'where {a} == {b}' or fix the operand"
    return "fix the operand's shape"


def dims_equal(cs: ConstraintSet, a: Dim, b: Dim) -> bool:
    return a == b or cs.prove_eq(a, b)


def require_equal(
    cs: ConstraintSet, rule: str, a: Operand, ai: int, b: Operand, bi: int, at: Span
) -> None:
    da, db = a.dims[ai], b.dims[bi]
    if dims_equal(cs, da, db):
        return
    raise error(
        "E-SHAPE",
        f"{rule}: {a.path(ai)} must equal {b.path(bi)}",
        at,
        labels=[Label(a.span, f"{a.shape(ai)} is {da}"), Label(b.span, f"{b.shape(bi)} is {db}")],
        notes=[_equal_note(da, db)],
    )


def broadcast(cs: ConstraintSet, rule: str, ops: Sequence[Operand], at: Span) -> tuple[Dim, ...]:
    """NumPy broadcasting of several operands: dims align from the right; two dims broadcast when
    provably equal or when one is the constant 1."""
    rank = max((len(o.dims) for o in ops), default=0)
    out: list[Dim] = []
    for k in range(1, rank + 1):  # k-th dim from the right
        chosen: tuple[Operand, int] | None = None
        for o in ops:
            if len(o.dims) < k:
                continue
            axis = len(o.dims) - k
            d = o.dims[axis]
            if d == ONE:
                continue
            if chosen is None:
                chosen = (o, axis)
                continue
            co, ca = chosen
            if not dims_equal(cs, co.dims[ca], d):
                raise error(
                    "E-SHAPE",
                    f"{rule}: {co.path(ca)} and {o.path(axis)} do not broadcast: they must be equal or 1",
                    at,
                    labels=[Label(co.span, f"dimension {co.dims[ca]}"), Label(o.span, f"dimension {d}")],
                    notes=[_equal_note(co.dims[ca], d)],
                )
        out.append(chosen[0].dims[chosen[1]] if chosen else ONE)
    return tuple(reversed(out))


def normalize_axis(axis: int, rank: int, what: str, at: Span, *, scalar: bool = True) -> int:
    """`axis` in 0..rank-1. With `scalar` (reductions, like NumPy) axis 0 or -1 of a rank-0 tensor is
    accepted and gives 0; callers that index the dims with the result pass scalar=False."""
    if not -rank <= axis < max(rank, 1) or (rank == 0 and (axis not in (0, -1) or not scalar)):
        raise error("E-SHAPE", f"{what}: axis {axis} is out of range for a tensor of rank {rank}", at,
                    notes=[f"valid axes are {-rank}..{rank - 1}" if rank else "a rank-0 tensor has no axes"])
    return axis % rank if rank else 0


def normalize_axes(axes: Sequence[int], rank: int, what: str, at: Span) -> tuple[int, ...]:
    out = tuple(normalize_axis(a, rank, what, at) for a in axes)
    if len(set(out)) != len(out):
        raise error("E-SHAPE", f"{what}: repeated axis in {tuple(axes)}", at)
    return out


def reduce_dims(dims: tuple[Dim, ...], axes: tuple[int, ...] | None, keepdims: bool) -> tuple[Dim, ...]:
    if axes is None:
        return tuple(ONE for _ in dims) if keepdims else ()
    return tuple(ONE if i in axes else d for i, d in enumerate(dims) if keepdims or i not in axes)


def matmul(cs: ConstraintSet, a: Operand, b: Operand, at: Span, rule: str = "matmul") -> tuple[Dim, ...]:
    """NumPy matmul: 1-D operands are promoted and the added axis removed; leading dims broadcast."""
    if not a.dims or not b.dims:
        which = a if not a.dims else b
        raise error("E-SHAPE", f"{rule}: {which.name} is a scalar tensor; matmul needs rank >= 1", which.span,
                    notes=["use `*` for scalar multiplication"])
    ad = a.dims if len(a.dims) > 1 else (ONE, *a.dims)
    bd = b.dims if len(b.dims) > 1 else (*b.dims, ONE)
    a2 = Operand(ad, a.span, a.name)
    b2 = Operand(bd, b.span, b.name)
    ka, kb = len(ad) - 1, len(bd) - 2
    try:
        require_equal(cs, rule, a2, ka, b2, kb, at)
    except CompilationError:
        # Report against the operands as written (a 1-D operand has its K at axis 0).
        require_equal(cs, rule, a, len(a.dims) - 1, b, 0 if len(b.dims) == 1 else len(b.dims) - 2, at)
    batch = broadcast(cs, rule, [Operand(ad[:-2], a.span, a.name), Operand(bd[:-2], b.span, b.name)], at)
    out = [*batch]
    if len(a.dims) > 1:
        out.append(ad[-2])
    if len(b.dims) > 1:
        out.append(bd[-1])
    return tuple(out)


def product(dims: Sequence[Dim]) -> Dim:
    p = ONE
    for d in dims:
        p = p * d
    return p


def reshape(cs: ConstraintSet, src: Operand, target: Sequence[Dim | None], at: Span) -> tuple[Dim, ...]:
    """Reshape to `target`, where at most one entry is None (NumPy's -1, inferred)."""
    holes = [i for i, d in enumerate(target) if d is None]
    if len(holes) > 1:
        raise error("E-SHAPE", "reshape: at most one dimension may be -1", at)
    total = product(src.dims)
    known = product([d for d in target if d is not None])
    if holes:
        inferred = _quotient(cs, src.dims, [d for d in target if d is not None])
        if inferred is None or not dims_equal(cs, inferred * known, total):
            raise error("E-SHAPE", f"reshape: {total} elements are not provably divisible by {known}", at,
                        labels=[Label(src.span, f"{src.name} has shape ({', '.join(map(str, src.dims))})")],
                        notes=["add a 'where' constraint that makes the division exact"])
        dims = tuple(inferred if d is None else d for d in target)
        return tuple(cs.simplify(d) for d in dims)
    if not dims_equal(cs, known, total):
        raise error("E-SHAPE", f"reshape: cannot reshape {total} elements into {known}", at,
                    labels=[Label(src.span, f"{src.name} has shape ({', '.join(map(str, src.dims))})")],
                    notes=["the product of the new dims must equal the product of the old ones"])
    return tuple(d for d in target if d is not None)


def _quotient(cs: ConstraintSet, dims: Sequence[Dim], divisors: Sequence[Dim]) -> Dim | None:
    """product(dims) / product(divisors) when it is a whole Dim: cancel provably equal factors, then
    divide what is left by a constant."""
    rest = list(dims)
    leftover = ONE
    for d in divisors:
        for i, r in enumerate(rest):
            if dims_equal(cs, r, d):
                del rest[i]
                break
        else:
            leftover = leftover * d
    if not leftover.is_const or leftover.value <= 0:
        return None
    return cs.simplify(product(rest) // leftover.value)
