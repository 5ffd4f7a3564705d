"""The op emitter of the graph builder: appends Graph IR ops in program order and keeps the catalogue's
conventions — elementwise operands of one shape and one dtype (explicit `broadcast_to` and `cast`),
scalars as `constant` ops.

Dims: two extents the checker proved equal may be written differently (`D//16` and `R` under
`where D == 16 * R`). The IR compares dims under the function's `where` facts, so both forms are valid;
to keep the printed graph readable, every dim the builder writes into an attribute is replaced by a
representative: the first dim written with the same normal form under the facts, the parameters'
(normalised) dims first.
"""

from __future__ import annotations

from collections.abc import Sequence

from tessera.constraints import ConstraintSet
from tessera.diagnostics import error
from tessera.dtypes import BOOL, F32, DType
from tessera.frontend.builtins import elementwise_dtype
from tessera.frontend.shapes import Operand, broadcast
from tessera.frontend.types import NO_POLICY, Policy
from tessera.ir.graph.build.values import SCALAR_DTYPES, DynScalar, TVal, fe_type, scalar_kind
from tessera.ir.graph.ops import Op, Value, make_op
from tessera.source import Span
from tessera.symbolic import Dim

ONE = Dim.const(1)


def default_rounding(src: DType, dst: DType) -> str:
    """A float to int conversion truncates, as NumPy's astype does; float narrowing rounds to nearest even."""
    return "toward_zero" if src.is_float and not dst.is_float else "nearest_even"


def policy_of(args: Sequence[object], dtype: DType) -> Policy:
    """The policy a result inherits: that of the first operand stored in the result's dtype."""
    for a in args:
        if isinstance(a, TVal) and a.dtype == dtype and a.policy != NO_POLICY:
            return a.policy
    return NO_POLICY


class Emitter:
    """Builds the op list of one graph function."""

    def __init__(self, cs: ConstraintSet):
        self.cs = cs
        self.ops: list[Op] = []
        self._reps: dict[Dim, Dim] = {}

    # ------------------------------------------------------------ dims

    def param_dims(self, dims: Sequence[Dim]) -> tuple[Dim, ...]:
        """A parameter's dims in normal form under the facts (symbols a where equality fixes are
        replaced by what fixes them), made the representatives of their classes."""
        out = tuple(self.cs.simplify(d) for d in dims)
        for d in out:
            self._reps.setdefault(d, d)
        return out

    def canon(self, d: Dim) -> Dim:
        """The representative of d's class: the parameters' form, else the form first written."""
        return self._reps.setdefault(self.cs.simplify(d), d)

    def canon_dims(self, dims: Sequence[Dim]) -> tuple[Dim, ...]:
        return tuple(self.canon(d) for d in dims)

    def dims_equal(self, a: Dim, b: Dim) -> bool:
        return a == b or self.cs.simplify(a) == self.cs.simplify(b) or self.cs.prove_eq(a, b)

    def shapes_equal(self, a: Sequence[Dim], b: Sequence[Dim]) -> bool:
        return len(a) == len(b) and all(self.dims_equal(x, y) for x, y in zip(a, b))

    def broadcast_dims(self, shapes: Sequence[Sequence[Dim]], span: Span, rule: str) -> tuple[Dim, ...]:
        ops = [Operand(tuple(s), span, f"operand {i}") for i, s in enumerate(shapes)]
        return self.canon_dims(broadcast(self.cs, rule, ops, span))

    # ------------------------------------------------------------ emitting

    def emit(self, name: str, operands: Sequence[Value], span: Span | None, **attrs: object) -> Op:
        op = make_op(name, operands, "", span, **attrs)  # type: ignore[arg-type]
        self.ops.append(op)
        return op

    def emit1(self, name: str, operands: Sequence[Value], span: Span | None, **attrs: object) -> Value:
        return self.emit(name, operands, span, **attrs).result

    # ------------------------------------------------------------ basic values

    def constant(self, value: float, dtype: DType, span: Span | None) -> Value:
        return self.emit1("constant", [], span, value=float(value), dtype=dtype)

    def scalar(self, v: object, dtype: DType, span: Span | None) -> Value:
        """A host or dynamic scalar as a rank-0 value of `dtype`."""
        if isinstance(v, DynScalar):
            return self.cast(v.value, dtype, span)
        if isinstance(v, bool):
            return self.constant(1.0 if v else 0.0, dtype, span)
        if isinstance(v, Dim):
            d = self.canon(v)
            if d.is_const:
                return self.constant(float(d.value), dtype, span)
            return self.emit1("extent", [], span, value=d, dtype=dtype)
        if isinstance(v, (int, float)):
            return self.constant(float(v), dtype, span)
        raise TypeError(f"not a scalar: {v!r}")

    def dyn(self, v: object, span: Span | None) -> DynScalar:
        """Any scalar as a dynamic one (its kind's graph dtype)."""
        if isinstance(v, DynScalar):
            return v
        kind = scalar_kind(v)
        return DynScalar(self.scalar(v, SCALAR_DTYPES[kind], span), kind)

    def cast(self, v: Value, dtype: DType, span: Span | None, rounding: str | None = None) -> Value:
        if v.ty.dtype == dtype:
            return v
        return self.emit1("cast", [v], span, dtype=dtype, rounding=rounding or default_rounding(v.ty.dtype, dtype))

    def reshape(self, v: Value, dims: Sequence[Dim], span: Span | None) -> Value:
        """A reshape, skipped when the shape is the same (under the where facts)."""
        if self.shapes_equal(v.ty.dims, dims):
            return v
        return self.emit1("reshape", [v], span, shape=self.canon_dims(dims))

    def transpose(self, v: Value, perm: Sequence[int], span: Span | None) -> Value:
        if list(perm) == list(range(v.ty.rank)):
            return v
        return self.emit1("transpose", [v], span, perm=tuple(perm))

    def broadcast(self, v: Value, dims: Sequence[Dim], span: Span | None) -> Value:
        """NumPy broadcast of v to dims, skipped when v has that shape already."""
        if self.shapes_equal(v.ty.dims, dims):
            return v
        src = v.ty.dims
        if len(src) > len(dims):
            raise _internal(f"cannot broadcast {v.ty} to rank {len(dims)}", span)
        off = len(dims) - len(src)
        for i, d in enumerate(src):
            if d != ONE and not self.dims_equal(d, dims[off + i]):
                raise _internal(f"cannot broadcast {v.ty} to [{', '.join(map(str, dims))}]", span)
        return self.emit1("broadcast_to", [v], span, shape=self.canon_dims(dims))

    def materialize(self, x: object, dtype: DType, dims: Sequence[Dim], span: Span | None) -> Value:
        """An operand of an elementwise op: cast to dtype, broadcast to dims."""
        if isinstance(x, TVal):
            return self.broadcast(self.cast(x.value, dtype, span), dims, span)
        return self.broadcast(self.scalar(x, dtype, span), dims, span)

    # ------------------------------------------------------------ elementwise

    def elementwise(self, name: str, args: Sequence[object], span: Span, *, operand_dtype: DType | None = None,
                    result_bool: bool = False, **attrs: object) -> object:
        """Emit an elementwise op over tensors and scalars (at least one not a host constant): promote
        per spec §4, cast and broadcast the operands, return a TVal (or a DynScalar when every operand
        is a scalar)."""
        if not any(isinstance(a, TVal) for a in args):
            kinds = [scalar_kind(a) for a in args]
            kind = "float" if "float" in kinds else "int" if "int" in kinds else "bool"
            dt = operand_dtype or SCALAR_DTYPES[kind]
            vals = [self.scalar(a, dt, span) for a in args]
            out = self.emit1(name, vals, span, **attrs)
            out_kind = "bool" if result_bool else {v: k for k, v in SCALAR_DTYPES.items()}.get(out.ty.dtype, kind)
            return DynScalar(out, out_kind)
        dt = operand_dtype or elementwise_dtype([fe_type(a) for a in args])
        assert dt is not None
        dims = self.broadcast_dims([a.dims for a in args if isinstance(a, TVal)], span, name)
        vals = [self.materialize(a, dt, dims, span) for a in args]
        out = self.emit1(name, vals, span, **attrs)
        return TVal(out, NO_POLICY if result_bool else policy_of(args, dt))

    def tensor(self, x: object, span: Span | None, dtype: DType | None = None) -> TVal:
        """A tensor operand: tensors as they are, scalars as rank-0 tensors (of dtype, or their
        kind's default: f32 for floats, int64 for ints, bool)."""
        if isinstance(x, TVal):
            return x
        kind = scalar_kind(x)
        dt = dtype or {"float": F32, "int": SCALAR_DTYPES["int"], "bool": BOOL}[kind]
        return TVal(self.scalar(x, dt, span))


def _internal(msg: str, span: Span | None) -> Exception:
    from tessera.source import UNKNOWN_SPAN

    return error("E-SHAPE", f"graph builder: {msg}", span or UNKNOWN_SPAN)

