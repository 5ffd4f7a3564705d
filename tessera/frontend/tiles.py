"""Typing tile kernels (spec §7): the shape and dtype rules of the `tile.*` intrinsics and of
operators on tiles, so that a kernel's shape and dtype errors are compile-time diagnostics.

A tile (`TileType`) has dims that are static ints or symbols: the schedule's block sizes `T.m`,
`T.n`, `T.k` (symbols no user can write, so two of them are never provably equal) and the extents of
the kernel's tensors (`D`). The rules prove dims equal with the kernel's `where` facts, exactly as the
tensor rules do, so `tile.dot(a[T.m, D], b[T.n, D])` is an E-SHAPE naming both operands.

How a load addresses a tensor (`rows=` / `cols=`; docs/language.md, "Kernels") is typed here by
the size of the block it reads:
- `T.m` (any field of `tile.context()`): the program's own block of that size;
- a loop variable of `tile.range` / `tile.range_n`: that block (its size is the loop's step);
- `(start, size)`: `size` rows or columns from `start`;
- another int: a block index, whose size is the schedule's `T.m` (rows) or `T.n` (cols);
- nothing: the whole axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tessera.diagnostics import error
from tessera.frontend import ast, shapes
from tessera.frontend.builtins import Arg, CallCtx, accum_of, elementwise_dtype, scalar_result
from tessera.frontend.shapes import ONE, Operand
from tessera.frontend.types import (
    ANY,
    BOOL,
    BOOLEAN,
    F32,
    FLOAT,
    INT,
    INT64,
    NONE,
    AnyType,
    BlockRangeType,
    BlockSizeType,
    DTypeValue,
    NoneType,
    OpaqueType,
    ScalarType,
    TensorType,
    TileType,
    TupleType,
    Type,
    is_narrowing,
    promote,
)
from tessera.source import Span
from tessera.symbolic import Dim

# The schedule's block sizes as symbols: internal names, so they never equal a user's symbol.
BLOCK_SYMBOLS = {f: Dim.internal_sym(f"T.{f}") for f in ("m", "n", "k")}
BM, BN, BK = BLOCK_SYMBOLS["m"], BLOCK_SYMBOLS["n"], BLOCK_SYMBOLS["k"]
SWIZZLES = ("xor", "none")


# ---------------------------------------------------------------- the context


def context_type(tensor_params: Sequence[TensorType]) -> OpaqueType:
    """The type of `tile.context()` in a kernel whose tensor parameters are `tensor_params`: `T.m`,
    `T.n`, `T.k` are the schedule's block sizes, `T.d` the last extent of the first tensor, `T.bh` the
    product of its leading (batch) extents; warps, stages and vector are ints of the schedule."""
    first = tensor_params[0] if tensor_params else None
    d = first.dims[-1] if first is not None and first.rank else None
    bh = shapes.product(first.dims[:-2]) if first is not None and first.rank > 2 else ONE
    fields: list[tuple[str, Type]] = [(f, BlockSizeType("int", sym, field_name=f)) for f, sym in BLOCK_SYMBOLS.items()]
    fields.append(("d", BlockSizeType("int", d, field_name="d") if d is not None else INT))
    fields.append(("bh", ScalarType("int", bh)))
    fields += [(f, INT) for f in ("warps", "stages", "vector")]
    return OpaqueType("TileContext", tuple(fields))


# ---------------------------------------------------------------- arguments


def _tile(ctx: CallCtx, name: str, arg: Arg | None = None) -> TileType:
    a = arg or ctx.args[name]
    t = a.ty
    if isinstance(t, AnyType):
        from tessera.frontend.builtins import UnknownValue

        raise UnknownValue(name)
    if isinstance(t, TileType):
        return t
    if isinstance(t, TensorType):
        raise ctx.error("E-TYPE", f"'{a.text}' is a tensor in global memory; load a block of it with "
                        f"tile.load({a.text}, ...)", a.span)
    raise ctx.error("E-TYPE", f"argument '{name}' must be a tile, found {t}", a.span)


def _operand(t: TileType, a: Arg) -> Operand:
    return Operand(t.dims, a.span, a.text)


def _tensor(ctx: CallCtx, name: str) -> TensorType:
    a = ctx.args[name]
    if isinstance(a.ty, AnyType):
        from tessera.frontend.builtins import UnknownValue

        raise UnknownValue(name)
    if isinstance(a.ty, TensorType):
        return a.ty
    if isinstance(a.ty, TileType):
        raise ctx.error("E-TYPE", f"'{a.text}' is already a tile; {ctx.name} reads and writes tensor "
                        "parameters of the kernel", a.span)
    raise ctx.error("E-TYPE", f"argument '{name}' must be a tensor parameter of the kernel, found {a.ty}",
                    a.span)


def _given(a: Arg) -> bool:
    return a.given and not isinstance(a.ty, NoneType)


def block_size(ctx: CallCtx, name: str, axis: str, full: Dim) -> Dim:
    """The size of the block that `rows=` (axis "rows") or `cols=` addresses (module docstring)."""
    a = ctx.args[name]
    t = a.ty
    if not _given(a):
        return full
    if isinstance(t, AnyType):
        return ctx.fresh_dim()
    if isinstance(t, BlockRangeType):
        return t.size
    if isinstance(t, BlockSizeType):
        return t.value if isinstance(t.value, Dim) else ctx.fresh_dim()
    if isinstance(t, TupleType):
        if len(t.elts) != 2:
            raise ctx.error("E-TYPE", f"{name}=(start, size) takes two ints, found {t}", a.span)
        start, size = t.elts
        if not isinstance(start, AnyType) and not (isinstance(start, ScalarType) and start.kind == "int"):
            raise ctx.error("E-TYPE", f"the start in {name}=(start, size) must be an int, found {start}", a.span)
        if isinstance(size, AnyType):
            return ctx.fresh_dim()
        if not (isinstance(size, ScalarType) and size.kind == "int" and isinstance(size.value, Dim)):
            raise ctx.error("E-TYPE", f"the size in {name}=(start, size) must be an int known at compile time "
                            f"(a literal, a block size such as T.m, or an extent), found {size}", a.span)
        if size.value.is_const and size.value.value <= 0:
            raise ctx.error("E-SHAPE", f"the size in {name}=(start, size) must be positive, found {size.value}",
                            a.span)
        return size.value
    if isinstance(t, ScalarType) and t.kind == "int":
        return BM if axis == "rows" else BN  # a block index
    raise ctx.error("E-TYPE", f"{name}= takes T.m (the program's block), a tile.range variable, "
                    f"(start, size) or a block index, found {t}", a.span)


def addressed_dims(ctx: CallCtx, t: TensorType, tname: str) -> tuple[Dim, ...]:
    """The dims of the block of tensor `t` that rows=/cols= address: [rows, cols] for rank >= 2 (the
    leading axes are the program's batch coordinates), [cols] for rank 1, [] for rank 0."""
    rows_given, cols_given = _given(ctx.args["rows"]), _given(ctx.args["cols"])
    if t.rank == 0 and (rows_given or cols_given):
        raise ctx.error("E-SHAPE", f"'{tname}' has rank 0: it has no rows or columns to address",
                        ctx.args["rows" if rows_given else "cols"].span)
    if t.rank == 1 and rows_given:
        raise ctx.error("E-SHAPE", f"'{tname}' has rank 1: its one axis is addressed with cols=, not rows=",
                        ctx.args["rows"].span, fixit=f"cols={ctx.args['rows'].text}")
    if t.rank == 0:
        return ()
    cols = block_size(ctx, "cols", "cols", t.dims[-1])
    if t.rank == 1:
        return (cols,)
    return (block_size(ctx, "rows", "rows", t.dims[-2]), cols)


def _mask(ctx: CallCtx, block: TileType) -> None:
    a = ctx.args["mask"]
    if not _given(a) or isinstance(a.ty, AnyType):
        return
    m = _tile(ctx, "mask")
    if m.dtype is not None and m.dtype != BOOL:
        raise ctx.error("E-DTYPE", f"the mask must be a bool tile, found {m.dtype}", a.span,
                        fixit=f"{a.text} != 0")
    _fits(ctx, m, a, block, "the mask")


def _fits(ctx: CallCtx, value: TileType, a: Arg, block: TileType, what: str) -> None:
    """`value` broadcasts to `block`'s dims (NumPy rules) without growing them."""
    if value.rank > block.rank:
        raise ctx.error("E-SHAPE", f"{what} has rank {value.rank} but the addressed block has rank {block.rank}",
                        a.span)
    target = Operand(block.dims, ctx.span, "block")
    out = shapes.broadcast(ctx.cs, ctx.name, [_operand(value, a), target], ctx.span)
    for i, (o, b) in enumerate(zip(out, block.dims)):
        if not shapes.dims_equal(ctx.cs, o, b):
            raise ctx.error("E-SHAPE", f"{what} of shape ({', '.join(map(str, value.dims))}) does not fit the "
                            f"addressed block ({', '.join(map(str, block.dims))})", a.span)


def _number(ctx: CallCtx, name: str) -> None:
    t = ctx.args[name].ty
    if not isinstance(t, (AnyType, ScalarType)):
        raise ctx.error("E-TYPE", f"'{name}' must be a number, found {t}", ctx.args[name].span)


# ---------------------------------------------------------------- memory


def rule_load(ctx: CallCtx) -> Type:
    t = _tensor(ctx, "t")
    out = TileType(addressed_dims(ctx, t, ctx.args["t"].text), t.dtype, t.policy)
    _mask(ctx, out)
    _number(ctx, "other")
    return out


def rule_store(ctx: CallCtx) -> Type:
    t = _tensor(ctx, "t")
    block = TileType(addressed_dims(ctx, t, ctx.args["t"].text), t.dtype)
    a = ctx.args["value"]
    v = a.ty
    if isinstance(v, AnyType):
        return NONE
    if isinstance(v, ScalarType):
        return NONE
    value = _tile(ctx, "value")
    _fits(ctx, value, a, block, "the stored value")
    if value.dtype is not None and t.dtype is not None and is_narrowing(value.dtype, t.dtype):
        raise ctx.error("E-DTYPE", f"storing a {value.dtype} tile into the {t.dtype} tensor "
                        f"'{ctx.args['t'].text}' narrows; narrowing is never implicit", a.span,
                        fixit=f"tile.cast({a.text}, {t.dtype})")
    _mask(ctx, block)
    return NONE


def rule_alloc_shared(ctx: CallCtx) -> Type:
    dims = ctx.dims_arg("shape")
    dt, pol = ctx.dtype_arg("dtype")
    ctx.str_arg("swizzle", SWIZZLES)
    return TileType(dims, dt, pol, space="shared")


def rule_cp_async(ctx: CallCtx) -> Type:
    dst, src = _tile(ctx, "dst"), _tile(ctx, "src")
    if dst.space != "shared":
        raise ctx.error("E-TYPE", "the destination must be a block from tile.alloc_shared, "
                        f"found {dst}", ctx.args["dst"].span)
    if dst.rank != src.rank:
        raise ctx.error("E-SHAPE", f"copies a rank-{src.rank} tile into a rank-{dst.rank} block",
                        ctx.args["src"].span)
    for i in range(dst.rank):
        shapes.require_equal(ctx.cs, "tile.cp_async", _operand(src, ctx.args["src"]), i,
                             _operand(dst, ctx.args["dst"]), i, ctx.span)
    if None not in (dst.dtype, src.dtype) and dst.dtype != src.dtype:
        raise ctx.error("E-DTYPE", f"copies a {src.dtype} tile into a {dst.dtype} block",
                        ctx.args["src"].span, fixit=f"tile.cast({ctx.args['src'].text}, {dst.dtype})")
    return NONE


# ---------------------------------------------------------------- creation and compute


def rule_zeros(ctx: CallCtx) -> Type:
    dims = ctx.dims_arg("shape")
    dt, pol = ctx.dtype_arg("dtype")
    if "value" in ctx.args:
        _number(ctx, "value")
    return TileType(dims, dt, pol)


def rule_dot(ctx: CallCtx) -> Type:
    a, b = _tile(ctx, "a"), _tile(ctx, "b")
    for n, t in (("a", a), ("b", b)):
        if t.rank != 2:
            raise ctx.error("E-SHAPE", f"takes rank-2 tiles; '{ctx.args[n].text}' is {t}", ctx.args[n].span)
    ao, bo = _operand(a, ctx.args["a"]), _operand(b, ctx.args["b"])
    shapes.require_equal(ctx.cs, "tile.dot", ao, 1, bo, 0, ctx.span)
    for n, t in (("a", a), ("b", b)):
        if t.dtype is not None and t.dtype == BOOL:
            raise ctx.error("E-DTYPE", "a bool tile has no product", ctx.args[n].span,
                            fixit=f"tile.cast({ctx.args[n].text}, f32)")
    acc_arg = ctx.args["acc"]
    if not _given(acc_arg):
        dt = accum_of([TensorType((), a.dtype, a.policy), TensorType((), b.dtype, b.policy)])
        return TileType((a.dims[0], b.dims[1]), dt)
    acc = _tile(ctx, "acc")
    if acc.rank != 2:
        raise ctx.error("E-SHAPE", f"the accumulator must be a rank-2 tile, found {acc}", acc_arg.span)
    co = _operand(acc, acc_arg)
    shapes.require_equal(ctx.cs, "tile.dot", ao, 0, co, 0, ctx.span)
    shapes.require_equal(ctx.cs, "tile.dot", bo, 1, co, 1, ctx.span)
    if None not in (a.dtype, b.dtype, acc.dtype):
        operand = promote(a.dtype, b.dtype)  # type: ignore[arg-type]
        if operand.is_float != acc.dtype.is_float or is_narrowing(operand, acc.dtype):  # type: ignore[union-attr]
            raise ctx.error("E-DTYPE", f"{operand} operands cannot accumulate in {acc.dtype}",
                            acc_arg.span, notes=["accumulate floats in f32 (or f64), integers in int32/int64"])
    return acc.with_(space="reg")


def rule_transpose(ctx: CallCtx) -> Type:
    x = _tile(ctx, "x")
    if x.rank > 2:
        raise ctx.error("E-SHAPE", f"takes a tile of rank <= 2, found {x}", ctx.args["x"].span)
    return x.with_(dims=tuple(reversed(x.dims)), space="reg")


def rule_cast(ctx: CallCtx) -> Type:
    dt, pol = ctx.dtype_arg("dtype")
    x = ctx.args["x"].ty
    if isinstance(x, ScalarType):
        return FLOAT if dt.is_float else (BOOLEAN if dt == BOOL else INT)
    return _tile(ctx, "x").with_(dtype=dt, policy=pol, space="reg")


def elementwise_tiles(ctx: CallCtx, names: Sequence[str], float_only: bool = False,
                      out_dtype: object = None) -> Type:
    """Elementwise ops among tiles and scalars: NumPy broadcasting of the tiles' dims, the dtype
    promotion of tensors (Python scalars are weak)."""
    types = [ctx.args[n].ty for n in names]
    if any(isinstance(t, AnyType) for t in types):
        return ANY
    for n, t in zip(names, types):
        if isinstance(t, TensorType) and t.rank > 0:
            raise ctx.error("E-TYPE", f"'{ctx.args[n].text}' is a tensor in global memory; load a block of it "
                            f"with tile.load({ctx.args[n].text}, ...)", ctx.args[n].span)
        if not isinstance(t, (TileType, ScalarType, TensorType)):
            raise ctx.error("E-TYPE", f"argument '{n}' must be a tile or a number, found {t}", ctx.args[n].span)
    tiles = [(n, t) for n, t in zip(names, types) if isinstance(t, TileType)]
    if not tiles:
        if out_dtype == BOOL:
            return BOOLEAN
        return scalar_result([t for t in types if isinstance(t, ScalarType)], float_result=float_only)
    dims = shapes.broadcast(ctx.cs, ctx.name, [_operand(t, ctx.args[n]) for n, t in tiles], ctx.span)
    as_tensors = [TensorType((), t.dtype, t.policy) if isinstance(t, TileType) else t for t in types]
    dt = elementwise_dtype(as_tensors)
    if float_only and dt is not None and not dt.is_float:
        n = tiles[0][0]
        raise ctx.error("E-DTYPE", f"needs a floating-point tile, found {dt}", ctx.args[n].span,
                        fixit=f"tile.cast({ctx.args[n].text}, f32)")
    if out_dtype is not None:
        return TileType(dims, out_dtype)  # type: ignore[arg-type]
    policy = next((t.policy for _, t in tiles if t.dtype == dt), tiles[0][1].policy)
    return TileType(dims, dt, policy)


def rule_where(ctx: CallCtx) -> Type:
    c = ctx.args["cond"].ty
    if isinstance(c, TileType) and c.dtype is not None and c.dtype != BOOL:
        raise ctx.error("E-DTYPE", f"the condition must be a bool tile, found {c.dtype}", ctx.args["cond"].span,
                        fixit=f"{ctx.args['cond'].text} != 0")
    out = elementwise_tiles(ctx, ["a", "b"])
    if isinstance(c, TileType) and isinstance(out, (TileType, ScalarType)):
        full = elementwise_tiles(ctx, ["cond", "a", "b"])
        if isinstance(full, TileType) and isinstance(out, TileType):
            return out.with_(dims=full.dims)
        if isinstance(full, TileType) and isinstance(out, ScalarType):
            return full  # both values are scalars: the tile takes the promoted dtype of the scalars
    return out


def reduction(kind: str) -> Callable[[CallCtx], Type]:
    def rule(ctx: CallCtx) -> Type:
        x = _tile(ctx, "x")
        if x.rank == 0:
            raise ctx.error("E-SHAPE", "reduces a rank-0 tile", ctx.args["x"].span)
        if "axis" in ctx.args:
            ax = ctx.static_int("axis")
            axis = shapes.normalize_axis(ax if ax is not None else -1, x.rank, f"tile.{kind}", ctx.args["axis"].span,
                                         scalar=False)
        else:
            if x.rank != 2:
                raise ctx.error("E-SHAPE", f"takes a rank-2 tile, found {x}", ctx.args["x"].span)
            axis = 1
        dims = tuple(d for i, d in enumerate(x.dims) if i != axis)
        if kind in ("max", "min", "rowmax"):
            return TileType(dims, x.dtype, x.policy)
        if x.dtype is not None and x.dtype == BOOL:
            raise ctx.error("E-DTYPE", "sums a bool tile", ctx.args["x"].span,
                            fixit=f"tile.cast({ctx.args['x'].text}, int32)")
        return TileType(dims, x.accum)

    return rule


def _float_tile(ctx: CallCtx, name: str, rank: int) -> TileType:
    t = _tile(ctx, name)
    if t.rank != rank:
        raise ctx.error("E-SHAPE", f"'{ctx.args[name].text}' must be a rank-{rank} tile, found {t}",
                        ctx.args[name].span)
    if t.dtype is not None and not t.dtype.is_float:
        raise ctx.error("E-DTYPE", f"'{ctx.args[name].text}' must be a floating-point tile, found {t.dtype}",
                        ctx.args[name].span, fixit=f"tile.cast({ctx.args[name].text}, f32)")
    return t


def rule_softmax_online(ctx: CallCtx) -> Type:
    s = _float_tile(ctx, "s", 2)
    row = TileType((s.dims[0],), s.dtype)
    return TupleType((s.with_(space="reg"), row, row))


def rule_softmax_accumulate(ctx: CallCtx) -> Type:
    acc = _float_tile(ctx, "acc", 2)
    p, v = _float_tile(ctx, "p", 2), _float_tile(ctx, "v", 2)
    rows = {n: _float_tile(ctx, n, 1) for n in ("m", "l", "m_c", "l_c")}
    op = {n: _operand(t, ctx.args[n]) for n, t in (("acc", acc), ("p", p), ("v", v), *rows.items())}
    rule = "tile.softmax_accumulate"
    shapes.require_equal(ctx.cs, rule, op["p"], 0, op["acc"], 0, ctx.span)
    shapes.require_equal(ctx.cs, rule, op["p"], 1, op["v"], 0, ctx.span)
    shapes.require_equal(ctx.cs, rule, op["v"], 1, op["acc"], 1, ctx.span)
    for n in rows:
        shapes.require_equal(ctx.cs, rule, op[n], 0, op["acc"], 0, ctx.span)
    return TupleType((acc.with_(space="reg"), rows["m"], rows["l"]))


def rule_mask_causal(ctx: CallCtx) -> Type:
    s = _float_tile(ctx, "s", 2)
    args = [("s", s)]
    for n in ("rows", "cols"):
        t = _tile(ctx, n)
        if t.dtype is not None and not t.dtype.is_int:
            raise ctx.error("E-DTYPE", f"'{n}' must be integer indices (tile.row_index(), tile.col_index(j)), "
                            f"found {t.dtype}", ctx.args[n].span)
        args.append((n, t))
    out = shapes.broadcast(ctx.cs, "tile.mask_causal", [_operand(t, ctx.args[n]) for n, t in args], ctx.span)
    for o, d in zip(out, s.dims):
        if not shapes.dims_equal(ctx.cs, o, d):
            raise ctx.error("E-SHAPE", "the row and column indices must broadcast to the "
                            f"scores' shape ({', '.join(map(str, s.dims))})", ctx.span)
    return s.with_(space="reg")


def rule_index(axis: str) -> Callable[[CallCtx], Type]:
    def rule(ctx: CallCtx) -> Type:
        a = ctx.args["block"]
        size = block_size(ctx, "block", axis, BM if axis == "rows" else BN) if _given(a) else \
            (BM if axis == "rows" else BN)
        return TileType((size, ONE) if axis == "rows" else (ONE, size), INT64)

    return rule


# ---------------------------------------------------------------- loops and ids


def _int_or_any(ctx: CallCtx, name: str) -> ScalarType | None:
    t = ctx.args[name].ty
    if isinstance(t, (AnyType, NoneType)):
        return None
    if not (isinstance(t, ScalarType) and t.kind == "int"):
        raise ctx.error("E-TYPE", f"'{name}' must be an int, found {t}", ctx.args[name].span)
    return t


def _static_size(ctx: CallCtx, name: str, t: ScalarType | None) -> Dim:
    if t is None:
        return ctx.fresh_dim()
    if not isinstance(t.value, Dim):
        raise ctx.error("E-TYPE", f"'{name}' must be an int known at compile time (a literal, a block size "
                        f"such as T.n, or an extent), found {t}", ctx.args[name].span)
    if t.value.is_const and t.value.value <= 0:
        raise ctx.error("E-TYPE", f"'{name}' must be positive, found {t.value}", ctx.args[name].span)
    return t.value


def _range(size: Dim) -> OpaqueType:
    return OpaqueType("range", (("item", BlockRangeType("int", None, size=size)),))


def rule_range(ctx: CallCtx) -> Type:
    for n in ("start", "stop"):
        _int_or_any(ctx, n)
    return _range(_static_size(ctx, "step", _int_or_any(ctx, "step")))


def rule_range_n(ctx: CallCtx) -> Type:
    _int_or_any(ctx, "extent")
    size = _static_size(ctx, "block", _int_or_any(ctx, "block"))
    a = ctx.args["prefetch"]
    if _given(a):
        n = ctx.static_int("prefetch")
        if n is not None and n < 0:
            raise ctx.error("E-TYPE", f"prefetch must be >= 0, found {n}", a.span)
    return _range(size)


def rule_axis(ctx: CallCtx) -> Type:
    n = ctx.static_int("axis")
    if n is not None and not 0 <= n < 3:
        raise ctx.error("E-TYPE", f"grid axis {n} is out of range: a grid has at most 3 axes", ctx.args["axis"].span)
    return INT


# ---------------------------------------------------------------- operators, indexing, results


def binop(ctx: CallCtx, op: str) -> Type:
    if op == "@":
        return rule_dot(CallCtx(ctx.name, ctx.cs, ctx.span, {**ctx.args, "acc": Arg(NONE, ctx.span, "acc", False)},
                                [], ctx.fresh_dim, ctx.kind))
    out = elementwise_tiles(ctx, ["a", "b"])
    if op == "/" and isinstance(out, TileType) and out.dtype is not None and not out.dtype.is_float:
        return out.with_(dtype=F32)
    return out


def index_tile(t: TileType, e: ast.Subscript) -> TileType:
    """`l[:, None]`: tiles take only full slices `:`, `None` (a new axis of size 1) and one `...`."""
    parts = e.index.elts if isinstance(e.index, ast.Tuple) else [e.index]

    def is_none(p: ast.Expr) -> bool:
        return isinstance(p, ast.Constant) and p.value is None

    consuming = [p for p in parts if not is_none(p) and not isinstance(p, ast.EllipsisLit)]
    if len(consuming) > t.rank:
        raise error("E-SHAPE", f"too many indices: a tile of rank {t.rank} takes at most {t.rank}", e.index.span)
    if sum(isinstance(p, ast.EllipsisLit) for p in parts) > 1:
        raise error("E-SHAPE", "an index can have only one `...`", e.index.span)
    dims: list[Dim] = []
    axis = 0
    for p in parts:
        if isinstance(p, ast.EllipsisLit):
            fill = t.rank - len(consuming)
            dims.extend(t.dims[axis:axis + fill])
            axis += fill
        elif is_none(p):
            dims.append(ONE)
        elif isinstance(p, ast.Slice) and p.lower is None and p.upper is None and p.step is None:
            dims.append(t.dims[axis])
            axis += 1
        else:
            raise error("E-TYPE", "a tile is indexed only with `:`, `None` and `...` (as in l[:, None])", p.span,
                        notes=["read other parts of a tensor with tile.load(t, rows=..., cols=...)"])
    dims.extend(t.dims[axis:])
    return t.with_(dims=tuple(dims), space="reg")


def tile_attribute(t: TileType, attr: str, at: Span) -> Type:
    if attr == "shape":
        return TupleType(tuple(ScalarType("int", d) for d in t.dims))
    if attr == "T":
        if t.rank > 2:
            raise error("E-SHAPE", f"{t}.T: transpose takes a tile of rank <= 2", at)
        return t.with_(dims=tuple(reversed(t.dims)), space="reg")
    if attr == "ndim":
        return ScalarType("int", Dim.const(t.rank))
    if attr == "dtype" and t.dtype is not None:
        return DTypeValue(t.dtype, t.policy)
    raise error("E-NAME", f"a tile has no attribute '{attr}'", at, notes=["tile attributes: shape, T, ndim, dtype"])


def check_kernel_result(declared: Type, got: Type, value_span: Span, text: str) -> None:
    """What a kernel returns is the program's block of its declared result: a tile of rank
    min(rank, 2) whose dtype does not narrow implicitly into the result's."""
    if isinstance(got, AnyType) or isinstance(declared, AnyType):
        return
    if isinstance(declared, TupleType):
        raise error("E-TYPE", "a @kernel returns one tile; write further outputs with tile.store", value_span)
    if not isinstance(declared, TensorType):
        raise error("E-TYPE", f"a @kernel that returns a tile declares a tensor result (-> KTile[...]), "
                    f"not {declared}", value_span)
    if isinstance(got, ScalarType):
        return
    if not isinstance(got, TileType):
        raise error("E-TYPE", f"a @kernel returns the tile of its program, found {got}", value_span)
    want = min(declared.rank, 2)
    if got.rank != want:
        raise error("E-SHAPE", f"the returned tile has rank {got.rank} but the program's block of the result "
                    f"{declared} has rank {want}", value_span,
                    notes=[("a kernel returns its program's block of the result: its last two axes (the leading "
                           "axes are one per program)")])
    if declared.dtype is not None and got.dtype is not None and is_narrowing(got.dtype, declared.dtype):
        raise error("E-DTYPE", f"the result is declared {declared.dtype} but the returned tile is {got.dtype}; "
                    "narrowing is never implicit", value_span, fixit=f"tile.cast({text}, {declared.dtype})")


def returned_without_result(at: Span) -> None:
    raise error("E-TYPE", "a @kernel that returns a tile must declare its result type, "
                "e.g. -> KTile[\"N\", \"M\", f32]", at)


