"""What every graph pass shares: rebuilding a function op by op without touching the input.

A pass walks the ops of the old function and emits ops into a `Rewriter`, which maps each old value
to its new value. Parameters and results are fresh `Value`s, so the input function stays valid and
can be printed or compared after the pass. Dims of types and attributes can be rewritten on the way
(shape specialisation, inlining).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.ir.graph.ops import OPS, AttrValue, Function, Op, TensorType, Value, make_op
from tessera.symbolic import Dim

DimMap = Callable[[Dim], Dim]


def _keep(d: Dim) -> Dim:
    return d


class Rewriter:
    """Builds the new version of `src`; `dim_map` rewrites every dim of types and attributes."""

    def __init__(self, src: Function, dim_map: DimMap = _keep) -> None:
        self.src = src
        self.dim_map = dim_map
        self.values: dict[Value, Value] = {}
        self.ops: list[Op] = []
        self.params = [self.fresh_param(p) for p in src.params]

    def fresh_param(self, p: Value) -> Value:
        new = Value(self.map_type(p.ty), p.hint)
        self.values[p] = new
        return new

    def map_type(self, t: TensorType) -> TensorType:
        return map_type(t, self.dim_map)

    def __getitem__(self, old: Value) -> Value:
        return self.values[old]

    def replace(self, old: Value, new: Value) -> None:
        """From now on, uses of `old` read `new`."""
        self.values[old] = new

    def emit(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def copy(self, op: Op, operands: tuple[Value, ...] | None = None) -> Op:
        """A copy of old `op` over the mapped operands, with fresh results mapped from the old ones
        (not yet emitted)."""
        new_operands = operands if operands is not None else tuple(self.values[v] for v in op.operands)
        new = copy_op(op, new_operands, self.dim_map)
        for old, r in zip(op.results, new.results):
            self.values[old] = r
        return new

    def inline(self, callee: Function, args: list[Value], dim_map: DimMap) -> list[Value]:
        """Emit a copy of `callee`'s body over `args`, its dims rewritten by `dim_map`; returns the
        values it returns."""
        local: dict[Value, Value] = dict(zip(callee.params, args))
        for op in callee.ops:
            new = self.emit(copy_op(op, tuple(local[v] for v in op.operands), dim_map))
            local.update(zip(op.results, new.results))
        return [local[v] for v in callee.returns]

    def finish(self, constraints: tuple[str, ...] | None = None,
               symbols: tuple[str, ...] | None = None) -> Function:
        """The new function: mapped returns; the old function attributes unless replaced."""
        f = self.src
        return Function(f.name, self.params, self.ops, [self.values[v] for v in f.returns],
                        effects=f.effects,
                        constraints=f.constraints if constraints is None else constraints,
                        symbols=f.symbols if symbols is None else symbols, span=f.span)


def map_type(t: TensorType, dim_map: DimMap) -> TensorType:
    return t.with_dims([dim_map(d) for d in t.dims])


def map_attrs(op: Op, dim_map: DimMap) -> tuple[tuple[str, AttrValue], ...]:
    kinds = dict(OPS[op.name].attrs)
    out: list[tuple[str, AttrValue]] = []
    for k, v in op.attrs:
        if kinds.get(k) == "dim":
            v = dim_map(v)  # type: ignore[arg-type]
        elif kinds.get(k) == "dims":
            v = tuple(dim_map(d) for d in v)  # type: ignore[union-attr]
        out.append((k, v))
    return tuple(out)


def copy_op(op: Op, operands: tuple[Value, ...], dim_map: DimMap = _keep) -> Op:
    """A new op like `op` over `operands`, with fresh results (same hints, dims mapped)."""
    new = Op(op.name, operands, map_attrs(op, dim_map), (), op.span)
    new.results = tuple(Value(map_type(r.ty, dim_map), r.hint, new) for r in op.results)
    return new


def copy_function(f: Function) -> Function:
    rw = Rewriter(f)
    for op in f.ops:
        rw.emit(rw.copy(op))
    return rw.finish()


def substitute_dims(mapping: Mapping[str, Dim | int]) -> DimMap:
    """A dim map replacing symbols simultaneously."""
    binding = {k: Dim.of(v) for k, v in mapping.items()}
    return lambda d: d.substitute(binding)


# -- splats: values known to hold one value everywhere ------------------------------------------


# Shape ops move elements around, so a shape op of a splat is a splat of the same value.
_SPLAT_PRESERVING = ("broadcast_to", "reshape", "transpose", "slice")


def splat(v: Value) -> float | int | bool | None:
    """The element value of a `constant` or `fill` result (or of a shape op of one), as its dtype
    stores it; None otherwise."""
    op = v.producer
    while op is not None and op.name in _SPLAT_PRESERVING:
        op = op.operands[0].producer
    if op is None or op.name not in ("constant", "fill"):
        return None
    return stored(op.attr("value"), v.ty)  # type: ignore[arg-type]


def stored(value: float, t: TensorType) -> float | int | bool:
    """`value` rounded to the dtype of `t` (what a fill of that dtype holds), as a Python scalar."""
    with np.errstate(all="ignore"):  # nan or inf into an int dtype: whatever NumPy stores
        arr = np.asarray(value, dtype=np.float64).astype(numpy_dtype(t.dtype))
    if t.dtype.kind == "bool":
        return bool(arr)
    if t.dtype.is_int:
        return int(arr)
    return float(arr)


def is_splat_of(v: Value, target: float) -> bool:
    """True when `v` is a splat of `target`, the sign of a zero included."""
    s = splat(v)
    if s is None or isinstance(s, bool):
        return False
    if s != target:
        return False
    return not (target == 0 and isinstance(s, float) and math.copysign(1.0, s) != math.copysign(1.0, target))


def make_splat(t: TensorType, value: float, hint: str = "") -> Op:
    """A `constant` (rank 0) or `fill` op of type `t` holding `value`."""
    if t.rank == 0:
        return make_op("constant", [], hint, value=float(value), dtype=t.dtype)
    return make_op("fill", [], hint, shape=t.dims, value=float(value), dtype=t.dtype)


def is_pure(op: Op) -> bool:
    """Ops without effects. A `call` is not known to be pure from its function alone."""
    opdef = OPS[op.name]
    return opdef.effect is None and opdef.category != "call"
