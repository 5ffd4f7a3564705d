"""Reading what the user wrote as types and constraints: `Tensor["B", "D//4", bf16 @accum(f32)]`,
`-> (T1, T2)`, numeric policies, and `where` clauses into `Constraint`s."""

from __future__ import annotations

from collections.abc import Callable

from tessera.constraints import Constraint
from tessera.diagnostics import error
from tessera.frontend import ast
from tessera.frontend.types import (
    BOOLEAN,
    FLOAT,
    INT,
    NO_POLICY,
    NONE,
    ROUNDING_MODES,
    DType,
    DTypeValue,
    Policy,
    PolicyValue,
    ScalarType,
    StrType,
    TensorType,
    TupleType,
    Type,
    default_accum,
    dtype_named,
    promote,
)
from tessera.symbolic import Dim, DimError, parse_dim

Lookup = Callable[[str], "Type | None"]

TENSOR_KINDS = ("Tensor", "Tile", "KTile")
RESERVED_TYPES = ("KVCache", "Operator", "SpectralOperator")
SCALAR_TYPES: dict[str, Type] = {"int": INT, "float": FLOAT, "bool": BOOLEAN, "str": StrType(), "None": NONE}
POLICY_NAMES = ("accum", "stochastic_round", "loss_scale", "saturate", "round")


def resolve_type(e: ast.Expr, lookup: Lookup) -> Type:
    """The type an annotation expression denotes; E-TYPE when it denotes none."""
    match e:
        case ast.Name(id=n) if n in SCALAR_TYPES:
            return SCALAR_TYPES[n]
        case ast.Constant(value=None):
            return NONE
        case ast.Name(id=n) if n in TENSOR_KINDS:
            raise error("E-TYPE", f"{n} needs its dims and dtype", e.span, fixit=f'{n}["N", f32]')
        case ast.Name(id=n) | ast.Subscript(value=ast.Name(id=n)) if n in RESERVED_TYPES:
            raise error("E-TYPE", f"{n} is reserved for a later version of Tessera", e.span)
        case ast.Subscript(value=ast.Name(id=kind), index=index) if kind in TENSOR_KINDS:
            return _tensor_type(kind, index, lookup)
        case ast.Tuple(elts=elts):
            return TupleType(tuple(resolve_type(x, lookup) for x in elts))
    raise error("E-TYPE", "not a type", e.span,
                notes=["types are int, float, bool, str, Tensor[dims..., dtype], or a tuple of types"])


def _tensor_type(kind: str, index: ast.Expr, lookup: Lookup) -> TensorType:
    items = index.elts if isinstance(index, ast.Tuple) else [index]
    dims: list[Dim] = []
    dtype: DType | None = None
    policy = NO_POLICY
    for i, item in enumerate(items):
        if _is_dtype_expr(item, lookup):
            if i != len(items) - 1:
                raise error("E-TYPE", "the dtype comes last in a tensor type", item.span,
                            fixit=f"{kind}[dims..., dtype]")
            dv = dtype_value(item, lookup)
            dtype, policy = dv.dtype, dv.policy
            continue
        dims.append(dim_of_annotation(item, lookup))
    return TensorType(tuple(dims), dtype, policy, kind)


def _is_dtype_expr(e: ast.Expr, lookup: Lookup) -> bool:
    match e:
        case ast.Name(id=n):
            return dtype_named(n) is not None
        case ast.BinOp(op="@", left=left):
            return _is_dtype_expr(left, lookup)
    return False


def dim_of_annotation(e: ast.Expr, lookup: Lookup) -> Dim:
    """A dim as written in a tensor type: an int, a string dim expression, or an int constant's name."""
    match e:
        case ast.Constant(value=bool()):
            pass
        case ast.Constant(value=int(v)):
            if v < 0:
                raise error("E-SHAPE", f"a dimension cannot be negative ({v})", e.span)
            return Dim.const(v)
        case ast.UnaryOp(op="-", operand=ast.Constant(value=int(v))) if not isinstance(v, bool):
            raise error("E-SHAPE", f"a dimension cannot be negative ({-v})", e.span)
        case ast.Constant(value=str(text)):
            try:
                return parse_dim(text)
            except DimError as ex:
                raise error("E-TYPE", f"bad dimension expression {text!r}: {ex}", e.span,
                            notes=['dims are ints or strings over symbols such as "B", "B*H", "D//4", "S+1"'])
        case ast.Name(id=n):
            t = lookup(n)
            if isinstance(t, ScalarType) and t.kind == "int" and isinstance(t.value, Dim):
                return t.value
            raise error("E-TYPE", f"'{n}' is not a dimension", e.span,
                        notes=['symbolic dims are written as strings, e.g. "B"'], fixit=f'"{n}"')
    raise error("E-TYPE", "not a dimension", e.span,
                notes=['dims are ints or strings over symbols such as "B", "B*H", "D//4", "S+1"'])


def dtype_value(e: ast.Expr, lookup: Lookup) -> DTypeValue:
    """`bf16`, `bf16 @accum(f32)`, `fp8_e4m3 @accum(f32) @saturate`, or a constant naming one."""
    match e:
        case ast.Name(id=n) if dtype_named(n) is not None:
            return DTypeValue(dtype_named(n))  # type: ignore[arg-type]
        case ast.BinOp(op="@", left=left, right=right):
            base = dtype_value(left, lookup)
            return DTypeValue(base.dtype, merge_policy(base, policy_value(right, lookup).policy, right.span))
    raise error("E-DTYPE", "not a dtype", e.span,
                notes=["dtypes: f64 f32 tf32 f16 bf16 fp8_e4m3 fp8_e5m2 int64 int32 int16 int8 int4 uint8 bool"])


def policy_value(e: ast.Expr, lookup: Lookup) -> PolicyValue:
    """One policy term: `accum(f32)`, `stochastic_round`, `loss_scale(128.0)`, `saturate`, `round("…")`."""
    match e:
        case ast.Name(id="stochastic_round"):
            return PolicyValue(Policy(rounding="stochastic"))
        case ast.Name(id="saturate"):
            return PolicyValue(Policy(saturate=True))
        case ast.Call(func=ast.Name(id="accum"), args=[arg], keywords=[]):
            return PolicyValue(Policy(accum=dtype_value(arg, lookup).dtype))
        case ast.Call(func=ast.Name(id="loss_scale"), args=[ast.Constant(value=float(v) | int(v))], keywords=[]) \
                if not isinstance(v, bool) and v > 0:
            return PolicyValue(Policy(loss_scale=float(v)))
        case ast.Call(func=ast.Name(id="round"), args=[ast.Constant(value=str(mode))], keywords=[]):
            if mode not in ROUNDING_MODES:
                raise error("E-DTYPE", f"unknown rounding mode {mode!r}", e.span,
                            notes=[f"rounding modes: {', '.join(ROUNDING_MODES)}"])
            return PolicyValue(Policy(rounding=mode))
    raise error("E-DTYPE", "not a numeric policy", e.span,
                notes=["policies: @accum(dtype), @stochastic_round, @loss_scale(x), @saturate, @round(mode)"])


def merge_policy(base: DTypeValue, extra: Policy, at: ast.Span) -> Policy:  # type: ignore[name-defined]
    p = base.policy
    if extra.accum is not None:
        if p.accum is not None:
            raise error("E-DTYPE", "@accum is given twice", at)
        acc = extra.accum
        if promote(acc, base.dtype) != acc:
            raise error("E-DTYPE", f"accumulation dtype {acc} is narrower than the storage dtype {base.dtype}",
                        at, fixit=f"{base.dtype} @accum({default_accum(base.dtype)})")
        p = Policy(acc, p.rounding, p.loss_scale, p.saturate)
    if extra.rounding is not None:
        if p.rounding is not None:
            raise error("E-DTYPE", "a rounding mode is given twice", at)
        p = Policy(p.accum, extra.rounding, p.loss_scale, p.saturate)
    if extra.loss_scale is not None:
        p = Policy(p.accum, p.rounding, extra.loss_scale, p.saturate)
    if extra.saturate:
        p = Policy(p.accum, p.rounding, p.loss_scale, True)
    return p


# ---------------------------------------------------------------- where clauses

_CMP = {"==", "!=", "<", "<=", ">", ">="}


def constraints_of(e: ast.Expr, symbols: frozenset[str], lookup: Lookup) -> list[Constraint]:
    """The constraints one `where` item states, over the signature's dim symbols."""
    if not isinstance(e, ast.Compare):
        raise error("E-CONSTRAINT", "a where constraint must be a comparison", e.span,
                    notes=["e.g. `D % 8 == 0`, `H == 4 * D`, `B in 1..=4096`, `S <= 8192`"])
    out: list[Constraint] = []
    left = e.left
    for op, right in zip(e.ops, e.comparators):
        lhs = constraint_dim(left, symbols, lookup)
        if op == "in":
            if not isinstance(right, ast.Range):
                raise error("E-CONSTRAINT", "`in` takes a range such as 1..=4096 (inclusive) or 1..4096",
                            right.span)
            lo = constraint_dim(right.lo, symbols, lookup)
            hi = constraint_dim(right.hi, symbols, lookup)
            out.extend(Constraint.in_range(lhs, lo, hi, right.inclusive))
        elif op in _CMP:
            out.append(Constraint(op, lhs, constraint_dim(right, symbols, lookup)))
        else:
            raise error("E-CONSTRAINT", f"'{op}' is not a constraint operator", e.span,
                        notes=["use ==, !=, <, <=, >, >= or `in lo..=hi`"])
        left = right
    return out


def constraint_dim(e: ast.Expr, symbols: frozenset[str], lookup: Lookup) -> Dim:
    try:
        match e:
            case ast.Name(id=n) if n in symbols:
                return Dim.sym(n)
            case ast.Name(id=n):
                t = lookup(n)
                if isinstance(t, ScalarType) and t.kind == "int" and isinstance(t.value, Dim):
                    return t.value
                raise error("E-CONSTRAINT", f"'{n}' is not a dim of this signature", e.span,
                            notes=[f"the signature's dims are: {', '.join(sorted(symbols)) or '(none)'}"])
            case ast.Constant(value=bool()):
                pass
            case ast.Constant(value=int(v)):
                return Dim.const(v)
            case ast.UnaryOp(op="-", operand=o):
                return -constraint_dim(o, symbols, lookup)
            case ast.BinOp(op=op, left=l, right=r) if op in ("+", "-", "*", "//", "%"):
                a, b = constraint_dim(l, symbols, lookup), constraint_dim(r, symbols, lookup)
                return {"+": a.__add__, "-": a.__sub__, "*": a.__mul__, "//": a.__floordiv__,
                        "%": a.__mod__}[op](b)
    except DimError as ex:
        raise error("E-CONSTRAINT", str(ex), e.span) from None
    raise error("E-CONSTRAINT", "constraints are integer expressions over dims (+ - * // %)", e.span)
