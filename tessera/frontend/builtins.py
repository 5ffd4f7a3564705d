"""The catalogue of graph-level builtins (spec §6): one row per builtin with its signature, shape rule,
dtype rule, effects and where it may be used. The checker, the docs and (later) the lowering all read
this table; adding a builtin is adding a row.
"""

from __future__ import annotations

import ast as pyast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tessera.constraints import ConstraintSet
from tessera.diagnostics import error
from tessera.frontend import shapes
from tessera.frontend.shapes import ONE, Operand
from tessera.frontend.types import (
    ANY,
    BOOL,
    BOOLEAN,
    F32,
    FLOAT,
    INT,
    INT64,
    NO_POLICY,
    NONE,
    AnyType,
    BuiltinRef,
    DictType,
    DType,
    DTypeValue,
    ListType,
    OpaqueType,
    Policy,
    ScalarType,
    StrType,
    TensorType,
    TileType,
    TupleType,
    Type,
    default_accum,
    dtype_named,
    promote,
)
from tessera.source import Span
from tessera.symbolic import Dim

# ---------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Param:
    name: str
    default: object = None
    required: bool = True
    kw_only: bool = False
    variadic: bool = False


def sig(*specs: str) -> tuple[Param, ...]:
    """Parse a compact signature: "x", "axis=-1", "*", "*xs", "dtype=f32" (dtype names allowed)."""
    out: list[Param] = []
    kw_only = False
    for s in specs:
        if s == "*":
            kw_only = True
        elif s.startswith("*"):
            out.append(Param(s[1:], (), required=False, variadic=True))
            kw_only = True
        elif "=" in s:
            name, text = s.split("=", 1)
            dt = dtype_named(text)
            value = DTypeValue(dt) if dt is not None else pyast.literal_eval(text)
            out.append(Param(name, value, required=False, kw_only=kw_only))
        else:
            out.append(Param(s, kw_only=kw_only))
    return tuple(out)


@dataclass
class Arg:
    """One bound argument: its type, where it was written (the call span for defaults), the text."""

    ty: Type
    span: Span
    text: str
    given: bool = True


class UnknownValue(Exception):
    """Raised by a rule that needs an argument's value or shape while its type is `any` (e.g. inside a
    generic helper checked on its own): the call's result is then `any`, and nothing is reported."""


@dataclass
class CallCtx:
    """What a shape/dtype rule sees of one call."""

    name: str
    cs: ConstraintSet
    span: Span
    args: dict[str, Arg]
    varargs: list[Arg]
    fresh_dim: Callable[[], Dim]
    kind: str = "host"  # the calling function's kind: "host" | "jit" | "kernel"

    def error(self, code: str, msg: str, span: Span | None = None, **kw: object):
        return error(code, f"{self.name}: {msg}", span or self.span, **kw)  # type: ignore[arg-type]

    def known(self, name: str) -> Type:
        """The type of an argument the rule must know (UnknownValue when it is `any`)."""
        t = self.args[name].ty
        if isinstance(t, AnyType):
            raise UnknownValue(name)
        return t

    def tensor(self, name: str, arg: Arg | None = None) -> TensorType:
        a = arg or self.args[name]
        if isinstance(a.ty, AnyType):
            raise UnknownValue(name)
        if isinstance(a.ty, TensorType):
            return a.ty
        if isinstance(a.ty, ScalarType):
            return TensorType((), _scalar_dtype(a.ty), NO_POLICY)
        raise self.error("E-TYPE", f"argument '{name}' must be a tensor, found {a.ty}", a.span)

    def operand(self, name: str, arg: Arg | None = None) -> Operand:
        a = arg or self.args[name]
        return Operand(self.tensor(name, a).dims, a.span, a.text or name)

    def is_any(self, *names: str) -> bool:
        return any(isinstance(self.args[n].ty, AnyType) for n in names)

    def static_int(self, name: str) -> int | None:
        a = self.args[name]
        self.known(name)
        v = a.ty.value if isinstance(a.ty, ScalarType) and a.ty.kind == "int" else None
        if v is None or not isinstance(v, Dim) or not v.is_const:
            if a.given:
                raise self.error("E-TYPE", f"'{name}' must be an int known at compile time, found {a.ty}",
                                 a.span)
            return None
        return v.value

    def static_axes(self, name: str, rank: int) -> tuple[int, ...] | None:
        """An axis argument: None (all axes), an int, or a tuple of ints; normalised."""
        a = self.args[name]
        if isinstance(self.known(name), type(NONE)):
            return None
        vals: list[int] = []
        items = a.ty.elts if isinstance(a.ty, (TupleType, ListType)) else (a.ty,)
        for t in items:
            v = t.value if isinstance(t, ScalarType) and t.kind == "int" else None
            if not isinstance(v, Dim) or not v.is_const:
                raise self.error("E-TYPE", f"'{name}' must be an int or a tuple of ints known at compile "
                                 f"time, found {a.ty}", a.span)
            vals.append(v.value)
        return shapes.normalize_axes(vals, rank, self.name, a.span)

    def dims_arg(self, name: str) -> tuple[Dim, ...]:
        """A shape argument: an int or a tuple of ints (static or symbolic, e.g. `x.shape[0]`)."""
        a = self.args[name]
        items = a.ty.elts if isinstance(self.known(name), (TupleType, ListType)) else (a.ty,)
        dims: list[Dim] = []
        for t in items:
            if isinstance(t, ScalarType) and t.kind == "int":
                d = t.value if isinstance(t.value, Dim) else self.fresh_dim()
                if d.is_const and d.value < 0:
                    raise self.error("E-SHAPE", f"a dimension cannot be negative ({d.value})", a.span)
                dims.append(d)
            elif isinstance(t, AnyType):
                dims.append(self.fresh_dim())
            else:
                raise self.error("E-TYPE", f"'{name}' must be a shape (an int or a tuple of ints), "
                                 f"found {a.ty}", a.span)
        return tuple(dims)

    def dtype_arg(self, name: str) -> tuple[DType, Policy]:
        a = self.args[name]
        if isinstance(self.known(name), DTypeValue):
            return a.ty.dtype, a.ty.policy
        raise self.error("E-TYPE", f"'{name}' must be a dtype such as f32 or bf16, found {a.ty}", a.span)

    def str_arg(self, name: str, choices: Sequence[str] | None = None) -> str | None:
        a = self.args[name]
        if isinstance(self.known(name), type(NONE)):
            return None
        if not isinstance(a.ty, StrType) or a.ty.value is None:
            raise self.error("E-TYPE", f"'{name}' must be a string literal, found {a.ty}", a.span)
        if choices is not None and a.ty.value not in choices:
            raise self.error("E-TYPE", f"'{name}' must be one of {', '.join(map(repr, choices))}, "
                             f"found {a.ty.value!r}", a.span)
        return a.ty.value


def _scalar_dtype(t: ScalarType) -> DType:
    return {"bool": BOOL, "int": INT64, "float": F32}[t.kind]


@dataclass(frozen=True)
class Builtin:
    name: str
    params: tuple[Param, ...]
    rule: Callable[[CallCtx], Type]
    effects: frozenset[str] = frozenset()
    host_only: bool = False
    doc: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)


# ---------------------------------------------------------------- dtype helpers


def _policy_of(types: Sequence[Type], dtype: DType | None) -> Policy:
    for t in types:
        if isinstance(t, TensorType) and t.dtype == dtype and t.policy != NO_POLICY:
            return t.policy
    return NO_POLICY


def elementwise_dtype(types: Sequence[Type]) -> DType | None:
    """Promotion of §4: tensors promote to the widest; Python scalars are weak and take the tensor's
    dtype, except that a float scalar makes an int or bool tensor float (f32) and an int scalar makes a
    bool tensor int64."""
    tensor_dts = [t.dtype for t in types if isinstance(t, TensorType)]
    if any(d is None for d in tensor_dts):
        return None
    out: DType | None = None
    for d in tensor_dts:
        out = d if out is None else promote(out, d)  # type: ignore[arg-type]
    if out is not None and not out.is_float and any(
        isinstance(t, ScalarType) and t.kind == "float" for t in types
    ):
        return F32
    if out == BOOL and any(isinstance(t, ScalarType) and t.kind == "int" for t in types):
        return INT64
    return out


def scalar_result(types: Sequence[Type], float_result: bool = False) -> ScalarType:
    kinds = [t.kind for t in types if isinstance(t, ScalarType)]
    if float_result or "float" in kinds:
        return FLOAT
    return INT if "int" in kinds else BOOLEAN


def accum_of(ts: Sequence[TensorType]) -> DType | None:
    """Accumulation dtype of a matmul or reduction over these operands: the widest explicit @accum,
    else the default policy for the promoted dtype."""
    dts = [t.dtype for t in ts]
    if any(d is None for d in dts):
        return None
    explicit = [t.policy.accum for t in ts if t.policy.accum is not None]
    if explicit:
        out = explicit[0]
        for d in explicit[1:]:
            out = promote(out, d)
        return out
    p = dts[0]
    for d in dts[1:]:
        p = promote(p, d)  # type: ignore[arg-type]
    return default_accum(p)  # type: ignore[arg-type]


def _require_accum_for_fp8(ctx: CallCtx, args: Sequence[Arg]) -> None:
    """Ops that accumulate (matmul, einsum, sum-like reductions) need an explicit @accum on fp8."""
    for a in args:
        t = a.ty
        if isinstance(t, TensorType) and t.dtype is not None and t.dtype.bits == 8 and t.dtype.is_float \
                and t.policy.accum is None:
            raise ctx.error("E-DTYPE", f"fp8 operand '{a.text}' needs an explicit accumulation dtype", a.span,
                            notes=["fp8 has no default accumulation policy (spec §4)"],
                            fixit=f"{t.dtype} @accum(f32)")


# ---------------------------------------------------------------- rules


def elementwise(ctx: CallCtx, names: Sequence[str], float_only: bool = False,
                out_dtype: DType | None = None) -> Type:
    types = [ctx.args[n].ty for n in names]
    if any(isinstance(t, AnyType) for t in types):
        return ANY
    if ctx.kind == "kernel" or any(isinstance(t, TileType) for t in types):
        from tessera.frontend.tiles import elementwise_tiles

        return elementwise_tiles(ctx, names, float_only, out_dtype)
    for n, t in zip(names, types):
        if not isinstance(t, (TensorType, ScalarType)):
            raise ctx.error("E-TYPE", f"argument '{n}' must be a tensor or a number, found {t}",
                            ctx.args[n].span)
    if all(isinstance(t, ScalarType) for t in types):
        if out_dtype == BOOL:
            return BOOLEAN
        return scalar_result(types, float_result=float_only)  # type: ignore[arg-type]
    dims = shapes.broadcast(ctx.cs, ctx.name, [ctx.operand(n) for n in names
                                                if isinstance(ctx.args[n].ty, TensorType)], ctx.span)
    dt = elementwise_dtype(types)
    if float_only and dt is not None and not dt.is_float:
        n = next(n for n in names if isinstance(ctx.args[n].ty, TensorType))
        raise ctx.error("E-DTYPE", f"needs a floating-point tensor, found {dt}", ctx.args[n].span,
                        fixit=f"cast({ctx.args[n].text or n}, f32)")
    if out_dtype is not None:
        return TensorType(dims, out_dtype)
    return TensorType(dims, dt, _policy_of(types, dt))


def unary(float_only: bool = False, out_dtype: DType | None = None) -> Callable[[CallCtx], Type]:
    return lambda ctx: elementwise(ctx, ["x"], float_only, out_dtype)


def binary(float_only: bool = False) -> Callable[[CallCtx], Type]:
    return lambda ctx: elementwise(ctx, ["a", "b"], float_only)


def rule_where(ctx: CallCtx) -> Type:
    cond = ctx.args["cond"].ty
    if ctx.kind == "kernel" or any(isinstance(ctx.args[n].ty, TileType) for n in ("cond", "a", "b")):
        from tessera.frontend.tiles import rule_where as tile_where

        return tile_where(ctx)
    if isinstance(cond, TensorType) and cond.dtype not in (BOOL, None):
        raise ctx.error("E-DTYPE", f"the condition must be a bool tensor, found {cond.dtype}",
                        ctx.args["cond"].span, fixit=f"{ctx.args['cond'].text} != 0")
    out = elementwise(ctx, ["a", "b"])
    if isinstance(out, TensorType) or isinstance(cond, TensorType):
        return elementwise(ctx, ["cond", "a", "b"]) if not isinstance(out, TensorType) else \
            out.with_(dims=shapes.broadcast(ctx.cs, "where", [
                ctx.operand(n) for n in ("cond", "a", "b") if isinstance(ctx.args[n].ty, TensorType)],
                ctx.span))
    return out


def rule_clip(ctx: CallCtx) -> Type:
    out = elementwise(ctx, ["x", "lo", "hi"])
    x = ctx.args["x"].ty
    if isinstance(x, TensorType) and isinstance(out, TensorType):
        return out.with_(dtype=x.dtype, policy=x.policy) if out.dtype == x.dtype or \
            all(not isinstance(ctx.args[n].ty, TensorType) for n in ("lo", "hi")) else out
    return out


def rule_gelu(ctx: CallCtx) -> Type:
    ctx.str_arg("approximate", ("none", "tanh"))
    return elementwise(ctx, ["x"], float_only=True)


def rule_creation(ctx: CallCtx) -> Type:
    dims = ctx.dims_arg("shape")
    dt, pol = ctx.dtype_arg("dtype")
    if "value" in ctx.args:
        v = ctx.args["value"].ty
        if not isinstance(v, (ScalarType, AnyType)):
            raise ctx.error("E-TYPE", f"'value' must be a number, found {v}", ctx.args["value"].span)
    return TensorType(dims, dt, pol)


def rule_arange(ctx: CallCtx) -> Type:
    n = ctx.args["n"].ty
    if isinstance(n, ScalarType) and isinstance(n.value, Dim) and n.value.is_const and n.value.value < 0:
        return TensorType((Dim.const(0),), *ctx.dtype_arg("dtype"))  # like NumPy: an empty range
    dims = ctx.dims_arg("n")
    if len(dims) != 1:
        raise ctx.error("E-TYPE", "'n' must be a single int", ctx.args["n"].span)
    dt, pol = ctx.dtype_arg("dtype")
    return TensorType(dims, dt, pol)


def rule_random(ctx: CallCtx) -> Type:
    t = rule_creation(ctx)
    assert isinstance(t, TensorType)
    if t.dtype is not None and not t.dtype.is_float:
        raise ctx.error("E-DTYPE", f"random tensors are floating point, found {t.dtype}",
                        ctx.args["dtype"].span, fixit="f32")
    return t


def rule_load(ctx: CallCtx) -> Type:
    ctx.str_arg("path")
    return ANY  # shape and dtype come from the file, at run time


def rule_save(ctx: CallCtx) -> Type:
    ctx.str_arg("path")
    ctx.tensor("x")
    return NONE


def rule_print(ctx: CallCtx) -> Type:
    return NONE


def reduction(kind: str) -> Callable[[CallCtx], Type]:
    """sum/mean/prod/logsumexp/var accumulate (result in the accumulation dtype); max/min keep the
    dtype; argmax/argmin give int64 indices and take a single axis."""

    def rule(ctx: CallCtx) -> Type:
        if ctx.is_any("x"):
            return ANY
        x = ctx.tensor("x")
        if kind in ("argmax", "argmin"):
            a = ctx.args["axis"]
            if isinstance(a.ty, (TupleType, ListType)):
                raise ctx.error("E-TYPE", "takes a single axis, not a tuple", a.span)
        axes = ctx.static_axes("axis", x.rank)
        keep = _static_bool(ctx, "keepdims")
        dims = shapes.reduce_dims(x.dims, axes, keep)
        if kind in ("argmax", "argmin"):
            return TensorType(dims, INT64)
        if kind in ("max", "min"):
            return TensorType(dims, x.dtype, x.policy)
        _require_accum_for_fp8(ctx, [ctx.args["x"]])
        if kind in ("mean", "logsumexp", "var") and x.dtype is not None and not x.dtype.is_float:
            return TensorType(dims, F32)
        return TensorType(dims, x.accum, NO_POLICY)

    return rule


def _static_bool(ctx: CallCtx, name: str) -> bool:
    t = ctx.known(name)
    if isinstance(t, ScalarType) and t.kind == "bool" and isinstance(t.value, bool):
        return t.value
    raise ctx.error("E-TYPE", f"'{name}' must be True or False", ctx.args[name].span)


def rule_matmul(ctx: CallCtx) -> Type:
    if ctx.is_any("a", "b"):
        return ANY
    a, b = ctx.tensor("a"), ctx.tensor("b")
    _require_accum_for_fp8(ctx, [ctx.args["a"], ctx.args["b"]])
    dims = shapes.matmul(ctx.cs, ctx.operand("a"), ctx.operand("b"), ctx.span)
    return TensorType(dims, accum_of([a, b]))


def rule_einsum(ctx: CallCtx) -> Type:
    spec = ctx.str_arg("spec") or ""
    ops = ctx.varargs
    if any(isinstance(o.ty, AnyType) for o in ops):
        return ANY
    if "..." in spec:
        raise ctx.error("E-TYPE", "einsum with '...' is not supported yet; spell out the axes",
                        ctx.args["spec"].span)
    lhs, arrow, rhs = spec.replace(" ", "").partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ops):
        raise ctx.error("E-TYPE", f"the spec names {len(inputs)} operands but {len(ops)} were given")
    bound: dict[str, tuple[Operand, int]] = {}
    counts: dict[str, int] = {}
    for letters, arg in zip(inputs, ops):
        op = ctx.operand("operand", arg)
        if not letters.isalpha() or len(letters) != len(op.dims):
            raise ctx.error("E-SHAPE", f"'{letters}' does not match operand {op.name} of rank {len(op.dims)}",
                            arg.span)
        for i, ch in enumerate(letters):
            counts[ch] = counts.get(ch, 0) + 1
            if ch in bound:
                bo, bi = bound[ch]
                if bo.dims[bi] != ONE and op.dims[i] != ONE:
                    shapes.require_equal(ctx.cs, f"einsum '{ch}'", bo, bi, op, i, ctx.span)
                if bo.dims[bi] == ONE:
                    bound[ch] = (op, i)
            else:
                bound[ch] = (op, i)
    out_letters = rhs if arrow else "".join(sorted(c for c, n in counts.items() if n == 1))
    for ch in out_letters:
        if ch not in bound:
            raise ctx.error("E-SHAPE", f"output axis '{ch}' does not appear in any input", ctx.args["spec"].span)
    _require_accum_for_fp8(ctx, ops)
    tensors = [ctx.tensor("operand", o) for o in ops]
    return TensorType(tuple(bound[c][0].dims[bound[c][1]] for c in out_letters), accum_of(tensors))


def rule_softmax(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    ctx.static_axes("axis", x.rank)
    _require_float(ctx, "x", x)
    return x


def _require_float(ctx: CallCtx, name: str, t: TensorType) -> None:
    if t.dtype is not None and not t.dtype.is_float:
        raise ctx.error("E-DTYPE", f"'{name}' must be floating point, found {t.dtype}", ctx.args[name].span,
                        fixit=f"cast({ctx.args[name].text or name}, f32)")


def _last_dim_param(ctx: CallCtx, x: Operand, pname: str) -> None:
    if isinstance(ctx.args[pname].ty, AnyType) or not x.dims:
        return
    w = ctx.operand(pname)
    if len(w.dims) != 1:
        raise ctx.error("E-SHAPE", f"'{pname}' must be 1-D over the last axis of x, found rank {len(w.dims)}",
                        w.span)
    shapes.require_equal(ctx.cs, ctx.name, w, 0, x, len(x.dims) - 1, ctx.span)


def rule_layernorm(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    _require_float(ctx, "x", x)
    for p in ("w", "b"):
        if p in ctx.args:
            _last_dim_param(ctx, ctx.operand("x"), p)
    return x


def rule_dropout(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    _require_float(ctx, "x", x)
    p = ctx.args["p"].ty
    if isinstance(p, ScalarType) and isinstance(p.value, float) and not 0.0 <= p.value < 1.0:
        raise ctx.error("E-TYPE", f"'p' must be in [0, 1), found {p.value}", ctx.args["p"].span)
    return x


def rule_embedding(ctx: CallCtx) -> Type:
    if ctx.is_any("table", "ids"):
        return ANY
    table, ids = ctx.tensor("table"), ctx.tensor("ids")
    if table.rank != 2:
        raise ctx.error("E-SHAPE", f"'table' must be 2-D (vocab, dim), found rank {table.rank}",
                        ctx.args["table"].span)
    if ids.dtype is not None and not ids.dtype.is_int:
        raise ctx.error("E-DTYPE", f"'ids' must be an integer tensor, found {ids.dtype}", ctx.args["ids"].span,
                        fixit=f"cast({ctx.args['ids'].text}, int32)")
    return TensorType((*ids.dims, table.dims[1]), table.dtype, table.policy)


def rule_one_hot(ctx: CallCtx) -> Type:
    if ctx.is_any("ids"):
        return ANY
    ids = ctx.tensor("ids")
    if ids.dtype is not None and not ids.dtype.is_int:
        raise ctx.error("E-DTYPE", f"'ids' must be integer class ids, found {ids.dtype}",
                        ctx.args["ids"].span, fixit=f"cast({ctx.args['ids'].text}, int32)")
    n = ctx.dims_arg("n")
    if len(n) != 1:
        raise ctx.error("E-TYPE", "'n' must be a single int", ctx.args["n"].span)
    dt, pol = ctx.dtype_arg("dtype")
    return TensorType((*ids.dims, *n), dt, pol)


def rule_cross_entropy(ctx: CallCtx) -> Type:
    if ctx.is_any("logits", "labels"):
        return ANY
    logits, labels = ctx.tensor("logits"), ctx.tensor("labels")
    _require_float(ctx, "logits", logits)
    _require_accum_for_fp8(ctx, [ctx.args["logits"]])
    if labels.dtype is not None and not labels.dtype.is_int:
        raise ctx.error("E-DTYPE", f"'labels' must be integer class ids, found {labels.dtype}",
                        ctx.args["labels"].span, fixit=f"cast({ctx.args['labels'].text}, int32)")
    lo, la = ctx.operand("logits"), ctx.operand("labels")
    if len(la.dims) != len(lo.dims) - 1:
        raise ctx.error("E-SHAPE", f"'labels' must have rank {len(lo.dims) - 1} (logits without the class "
                        f"axis), found {len(la.dims)}", la.span)
    for i in range(len(la.dims)):
        shapes.require_equal(ctx.cs, "cross_entropy", la, i, lo, i, ctx.span)
    return TensorType((), logits.accum)


def rule_mse(ctx: CallCtx) -> Type:
    out = elementwise(ctx, ["a", "b"], float_only=True)
    if isinstance(out, TensorType):
        _require_accum_for_fp8(ctx, [ctx.args["a"], ctx.args["b"]])
        return TensorType((), accum_of([out]))
    return out


def rule_attention(ctx: CallCtx) -> Type:
    if ctx.is_any("q", "k", "v"):
        return ANY
    q, _k, _v = ctx.tensor("q"), ctx.tensor("k"), ctx.tensor("v")
    qo, ko, vo = ctx.operand("q"), ctx.operand("k"), ctx.operand("v")
    for o in (qo, ko, vo):
        if len(o.dims) < 2:
            raise ctx.error("E-SHAPE", f"'{o.name}' must have rank >= 2 (..., seq, dim)", o.span)
    _require_float(ctx, "q", q)
    shapes.require_equal(ctx.cs, "attention", qo, len(qo.dims) - 1, ko, len(ko.dims) - 1, ctx.span)
    shapes.require_equal(ctx.cs, "attention", ko, len(ko.dims) - 2, vo, len(vo.dims) - 2, ctx.span)
    batch = shapes.broadcast(ctx.cs, "attention", [Operand(o.dims[:-2], o.span, o.name) for o in (qo, ko, vo)],
                             ctx.span)
    _static_bool(ctx, "causal")
    return TensorType((*batch, qo.dims[-2], vo.dims[-1]), q.dtype, q.policy)


def rule_cast(ctx: CallCtx) -> Type:
    dt, pol = ctx.dtype_arg("dtype")
    x = ctx.args["x"].ty
    if isinstance(x, TileType):
        from tessera.frontend.tiles import rule_cast as tile_cast

        return tile_cast(ctx)
    if isinstance(x, AnyType):
        return ANY
    if isinstance(x, ScalarType):
        return TensorType((), dt, pol)
    return TensorType(ctx.tensor("x").dims, dt, pol)


def rule_cast_like(ctx: CallCtx) -> Type:
    if ctx.is_any("x", "y"):
        return ANY
    x, y = ctx.tensor("x"), ctx.tensor("y")
    return TensorType(x.dims, y.dtype, y.policy)


# --- shape manipulation


def rule_reshape(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    a = ctx.args["shape"]
    ctx.known("shape")
    items = a.ty.elts if isinstance(a.ty, (TupleType, ListType)) else (a.ty,)
    target: list[Dim | None] = []
    for t in items:
        v = t.value if isinstance(t, ScalarType) and t.kind == "int" else None
        if not isinstance(v, Dim):
            target.append(ctx.fresh_dim())
        elif v.is_const and v.value == -1:
            target.append(None)
        else:
            target.append(v)
    return x.with_(dims=shapes.reshape(ctx.cs, ctx.operand("x"), target, ctx.span))


def _perm(ctx: CallCtx, x: TensorType, name: str) -> tuple[int, ...]:
    axes = ctx.static_axes(name, x.rank)
    if axes is None:
        return tuple(reversed(range(x.rank)))
    if sorted(axes) != list(range(x.rank)):
        raise ctx.error("E-SHAPE", f"axes {axes} are not a permutation of 0..{x.rank - 1}", ctx.args[name].span)
    return axes


def rule_transpose(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    return x.with_(dims=tuple(x.dims[i] for i in _perm(ctx, x, "axes")))


def rule_swapaxes(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    i = shapes.normalize_axis(ctx.static_int("a") or 0, x.rank, "swapaxes", ctx.args["a"].span, scalar=False)
    j = shapes.normalize_axis(ctx.static_int("b") or 0, x.rank, "swapaxes", ctx.args["b"].span, scalar=False)
    dims = list(x.dims)
    dims[i], dims[j] = dims[j], dims[i]
    return x.with_(dims=tuple(dims))


def rule_expand_dims(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    ax = shapes.normalize_axis(ctx.static_int("axis") or 0, x.rank + 1, "expand_dims", ctx.args["axis"].span)
    dims = list(x.dims)
    dims.insert(ax, ONE)
    return x.with_(dims=tuple(dims))


def rule_squeeze(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    axes = ctx.static_axes("axis", x.rank)
    if axes is None:
        return x.with_(dims=tuple(d for d in x.dims if d != ONE))
    if x.rank == 0:  # static_axes lets axis 0 of a scalar through, for reductions; a scalar has no axis to drop
        axes = (shapes.normalize_axis(axes[0], 0, "squeeze", ctx.args["axis"].span, scalar=False),)
    for ax in axes:
        if not shapes.dims_equal(ctx.cs, x.dims[ax], ONE):
            raise ctx.error("E-SHAPE", f"x.shape[{ax}] ({x.dims[ax]}) must be 1 to squeeze it",
                            ctx.args["axis"].span)
    return x.with_(dims=tuple(d for i, d in enumerate(x.dims) if i not in axes))


def rule_broadcast_to(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    target = ctx.dims_arg("shape")
    xo = ctx.operand("x")
    if len(target) < len(xo.dims):
        raise ctx.error("E-SHAPE", f"cannot broadcast rank {len(xo.dims)} to rank {len(target)}", ctx.span)
    to = Operand(target, ctx.args["shape"].span, "shape")
    for i in range(1, len(xo.dims) + 1):
        d = xo.dims[-i]
        if d != ONE:
            shapes.require_equal(ctx.cs, "broadcast_to", xo, len(xo.dims) - i, to, len(target) - i, ctx.span)
    return x.with_(dims=target)


def _tensor_list(ctx: CallCtx, name: str) -> list[Arg]:
    a = ctx.args[name]
    if not isinstance(a.ty, (TupleType, ListType)) or not a.ty.elts:
        raise ctx.error("E-TYPE", f"'{name}' must be a non-empty list or tuple of tensors, found {a.ty}", a.span)
    return [Arg(t, a.span, f"{name}[{i}]") for i, t in enumerate(a.ty.elts)]


def rule_concat(ctx: CallCtx, stack: bool = False) -> Type:
    parts = _tensor_list(ctx, "xs")
    if any(isinstance(p.ty, AnyType) for p in parts):
        return ANY
    ts = [ctx.tensor("xs", p) for p in parts]
    ops = [ctx.operand("xs", p) for p in parts]
    rank = ts[0].rank
    for t, p in zip(ts, parts):
        if t.rank != rank:
            raise ctx.error("E-SHAPE", f"all tensors must have the same rank; {p.text} has rank {t.rank}, "
                            f"{parts[0].text} has rank {rank}", p.span)
    if rank == 0 and not stack:
        raise ctx.error("E-SHAPE", "cannot concatenate rank-0 tensors", ctx.args["xs"].span,
                        notes=["stack(xs) builds a 1-D tensor from them"])
    ax = shapes.normalize_axis(ctx.static_int("axis") or 0, rank + (1 if stack else 0), ctx.name,
                               ctx.args["axis"].span)
    for o in ops[1:]:
        for i in range(rank):
            if stack or i != ax:
                shapes.require_equal(ctx.cs, ctx.name, ops[0], i, o, i, ctx.span)
    dt = elementwise_dtype(ts)
    dims = list(ts[0].dims)
    if stack:
        dims.insert(ax, Dim.const(len(ts)))
    else:
        total = dims[ax]
        for t in ts[1:]:
            total = total + t.dims[ax]
        dims[ax] = ctx.cs.simplify(total)
    return TensorType(tuple(dims), dt, _policy_of(ts, dt))


MAX_SPLIT_PARTS = 1024


def rule_split(ctx: CallCtx) -> Type:
    if ctx.is_any("x"):
        return ANY
    x = ctx.tensor("x")
    n = ctx.static_int("n")
    n = 1 if n is None else n
    if n < 1:
        raise ctx.error("E-SHAPE", f"'n' must be at least 1, found {n}", ctx.args["n"].span)
    if n > MAX_SPLIT_PARTS:  # the result is a tuple of n tensor types, built here one by one
        raise ctx.error("E-SHAPE", f"'n' must be at most {MAX_SPLIT_PARTS}, found {n}", ctx.args["n"].span,
                        notes=["to cut an axis into many equal parts, reshape it into two axes"])
    ax = shapes.normalize_axis(ctx.static_int("axis") or 0, x.rank, "split", ctx.args["axis"].span,
                               scalar=False)
    d = x.dims[ax]
    if not ctx.cs.divides(n, d) and not (d.is_const and d.value % n == 0):
        raise ctx.error("E-SHAPE", f"x.shape[{ax}] ({d}) is not provably divisible by {n}", ctx.span,
                        notes=[f"add 'where {d} % {n} == 0'" if not d.is_const else "choose a divisor"])
    part = x.with_(dims=tuple(ctx.cs.simplify(d // n) if i == ax else e for i, e in enumerate(x.dims)))
    return TupleType(tuple(part for _ in range(n)))


def rule_range(ctx: CallCtx) -> Type:
    for n in ("start", "stop", "step"):
        t = ctx.args[n].ty
        if not (isinstance(t, (AnyType, type(NONE))) or (isinstance(t, ScalarType) and t.kind == "int")):
            raise ctx.error("E-TYPE", f"'{n}' must be an int, found {t}", ctx.args[n].span)
    return OpaqueType("range", (("item", INT),))


def rule_scalar_conv(kind: str) -> Callable[[CallCtx], Type]:
    def rule(ctx: CallCtx) -> Type:
        t = ctx.args["x"].ty
        if isinstance(t, (ScalarType, AnyType)):
            return ScalarType(kind, t.value if isinstance(t, ScalarType) and kind == t.kind else None)
        if isinstance(t, TensorType) and t.rank == 0:
            return ScalarType(kind)
        raise ctx.error("E-TYPE", f"cannot convert {t} to {kind}", ctx.args["x"].span)

    return rule


def rule_len(ctx: CallCtx) -> Type:
    t = ctx.args["x"].ty
    if isinstance(t, TensorType) and t.rank:
        return ScalarType("int", t.dims[0])
    if isinstance(t, (TupleType, ListType)):
        return ScalarType("int", Dim.const(len(t.elts)))
    if isinstance(t, AnyType):
        return INT
    raise ctx.error("E-TYPE", f"len() of {t}", ctx.args["x"].span)


def rule_dict(ctx: CallCtx) -> Type:
    return DictType(tuple((a.text, a.ty) for a in ctx.varargs))


def rule_schedule(ctx: CallCtx) -> Type:
    return SCHEDULE


def rule_device(ctx: CallCtx) -> Type:
    ctx.str_arg("kind")
    return OpaqueType("Device")


SCHEDULE = OpaqueType("Schedule", tuple(
    (m, BuiltinRef(f"Schedule.{m}")) for m in ("with_block", "with_k", "with_warps", "with_stages",
                                               "with_vector", "with_swizzle")))

# ---------------------------------------------------------------- the table

_UNARY_FLOAT = ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu")
_REDUCTIONS = ("sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "var")

BUILTINS: dict[str, Builtin] = {}


def _add(name: str, params: tuple[Param, ...], rule: Callable[[CallCtx], Type], doc: str, *,
         effects: Sequence[str] = (), host_only: bool = False, tags: Sequence[str] = ()) -> None:
    BUILTINS[name] = Builtin(name, params, rule, frozenset(effects), host_only, doc, frozenset(tags))


for _n in ("zeros", "ones"):
    _add(_n, sig("shape", "dtype=f32"), rule_creation, f"a tensor of {_n[:-1]}s", tags=["creation"])
_add("full", sig("shape", "value", "dtype=f32"), rule_creation, "a tensor filled with value", tags=["creation"])
_add("arange", sig("n", "dtype=int64"), rule_arange, "0, 1, ..., n-1", tags=["creation"])
_add("randn", sig("shape", "dtype=f32", "*", "seed=None"), rule_random, "standard normal samples",
     effects=["random"], tags=["creation"])
_add("rand", sig("shape", "dtype=f32", "*", "seed=None"), rule_random, "uniform samples in [0, 1)",
     effects=["random"], tags=["creation"])
_add("load", sig("path"), rule_load, "read a .npy file", effects=["io"], host_only=True)
_add("save", sig("path", "x"), rule_save, "write a .npy file", effects=["io"], host_only=True)
_add("device", sig("kind='cpu'"), rule_device, "a device handle", host_only=True)
_add("clock", sig(), lambda ctx: FLOAT, "seconds on a monotonic clock, for timing host code", effects=["io"],
     host_only=True)
_add("print", sig("*values"), rule_print, "print values (a run-time debug print in @jit code)", effects=["io"])

for _n in _UNARY_FLOAT:
    _add(_n, sig("x"), unary(float_only=True), f"elementwise {_n}", tags=["elementwise"])
for _n in ("neg", "abs", "relu"):
    _add(_n, sig("x"), unary(), f"elementwise {_n}", tags=["elementwise"])
for _n in ("isnan", "isinf"):
    _add(_n, sig("x"), unary(out_dtype=BOOL), f"elementwise {_n}", tags=["elementwise"])
_add("gelu", sig("x", "approximate='none'"), rule_gelu, "exact gelu, or the tanh form", tags=["elementwise"])
for _n in ("maximum", "minimum"):
    _add(_n, sig("a", "b"), binary(), f"elementwise {_n}", tags=["elementwise"])
_add("where", sig("cond", "a", "b"), rule_where, "select a where cond else b", tags=["elementwise"])
_add("clip", sig("x", "lo", "hi"), rule_clip, "clamp x to [lo, hi]", tags=["elementwise"])

for _n in _REDUCTIONS:
    _add(_n, sig("x", "axis=None", "keepdims=False"), reduction(_n), f"{_n} over axis", tags=["reduction"])

_add("reshape", sig("x", "shape"), rule_reshape, "same elements, new shape (one -1 inferred)")
_add("transpose", sig("x", "axes=None"), rule_transpose, "permute axes (reverse by default)")
_add("permute", sig("x", "axes"), rule_transpose, "permute axes")
_add("swapaxes", sig("x", "a", "b"), rule_swapaxes, "swap two axes")
_add("expand_dims", sig("x", "axis"), rule_expand_dims, "insert an axis of size 1")
_add("squeeze", sig("x", "axis=None"), rule_squeeze, "remove axes of size 1")
_add("broadcast_to", sig("x", "shape"), rule_broadcast_to, "broadcast to a shape")
_add("concat", sig("xs", "axis=0"), rule_concat, "join tensors along an existing axis")
_add("stack", sig("xs", "axis=0"), lambda c: rule_concat(c, stack=True), "join tensors along a new axis")
_add("split", sig("x", "n", "axis=0"), rule_split, "n equal parts along axis")

_add("matmul", sig("a", "b"), rule_matmul, "matrix product (batched, broadcasting leading dims)")
_add("einsum", sig("spec", "*operands"), rule_einsum, "Einstein summation")

_add("softmax", sig("x", "axis=-1"), rule_softmax, "softmax along axis", tags=["nn"])
_add("layernorm", sig("x", "w", "b", "eps=1e-5"), rule_layernorm, "layer normalisation (biased variance)",
     tags=["nn"])
_add("rmsnorm", sig("x", "w", "eps=1e-6"), rule_layernorm, "x / sqrt(mean(x*x, -1) + eps) * w", tags=["nn"])
_add("dropout", sig("x", "p", "*", "seed=None"), rule_dropout, "zero elements with probability p",
     effects=["random"], tags=["nn"])
_add("embedding", sig("table", "ids"), rule_embedding, "rows of table at ids", tags=["nn"])
_add("one_hot", sig("ids", "n", "dtype=f32"), rule_one_hot, "one-hot encoding", tags=["nn"])
_add("cross_entropy", sig("logits", "labels"), rule_cross_entropy, "mean cross-entropy over the last axis",
     tags=["nn"])
_add("mse", sig("a", "b"), rule_mse, "mean squared error", tags=["nn"])
_add("attention", sig("q", "k", "v", "causal=False", "scale=None"), rule_attention,
     "softmax(q @ k^T * scale) @ v", tags=["nn"])

_add("cast", sig("x", "dtype"), rule_cast, "convert to dtype (round to nearest even)")
_add("cast_like", sig("x", "y"), rule_cast_like, "convert x to y's dtype")

_add("range", sig("start", "stop=None", "step=1"), rule_range, "host-level integer range")
_add("len", sig("x"), rule_len, "length of the first axis or of a tuple")
for _k in ("int", "float", "bool"):
    _add(_k, sig("x"), rule_scalar_conv(_k), f"convert to a Python {_k}")
_add("dict", sig("*items"), rule_dict, "a dict from keyword arguments (autotune spaces)")
_add("Schedule", sig("*", "block=None", "k=None", "warps=None", "stages=None", "vector=None", "swizzle=None"),
     rule_schedule, "a kernel schedule (spec §7)")

# Names bound in every module without import (besides BUILTINS and the dtypes).
CONSTANTS: dict[str, Type] = {
    "inf": ScalarType("float", float("inf")),
    "nan": ScalarType("float", float("nan")),
    "pi": ScalarType("float", 3.141592653589793),
}

# Binary operators route to the builtin that implements them.
BINOP_BUILTIN = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod", "**": "pow"}


def unknown_builtin_hint(name: str) -> list[str]:
    import difflib

    close = difflib.get_close_matches(name, [*BUILTINS, *CONSTANTS], n=1)
    return [f"did you mean '{close[0]}'?"] if close else []


