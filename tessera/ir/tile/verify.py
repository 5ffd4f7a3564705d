"""The Tile IR verifier: the checks every kernel passes before it is lowered.

- the signature: tensor parameters with roles, extent symbols naming a parameter axis, a grid over
  those symbols, a schedule with positive block sizes;
- SSA: every value is defined once, before its uses, in its region or an enclosing one;
- every op is in the catalogue with its attributes, and its result types are the catalogue's;
- per op: load/store/store_masked start counts equal the tensor rank and block shapes are static and
  positive; a store mask is a bool block broadcasting to the value; cp_async copies into a shared block;
  dot is [M,K] x [K,N] + [M,N]; reduce/iota/dim/program_id axes are in range; elementwise operands
  agree in dtype; `for` regions take (iv, carried...) and end in a `yield` of the carried types.
"""

from __future__ import annotations

from tessera.dtypes import BOOL, DType
from tessera.ir.tile.ops import (
    INDEX,
    REDUCE_IDENTITY,
    TILE_OPS,
    AttrValue,
    BlockType,
    Kernel,
    Op,
    Region,
    ScalarType,
    TensorRefType,
    TileIRError,
    Value,
    broadcast_shapes,
)

REDUCE_KINDS = (*REDUCE_IDENTITY, "argmax", "argmin")
COMPARE_PREDICATES = ("eq", "ne", "lt", "le", "gt", "ge")
ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
GELU_FORMS = ("none", "tanh")
ROLES = ("in", "out", "inout")
# Elementwise ops whose operands must share one dtype (select checks its two value operands).
_SAME_DTYPE = {n for n, d in TILE_OPS.items() if d.category == "elementwise"} - {"select", "cast"}


def _attr_ok(kind: str, v: AttrValue) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "dtype":
        return isinstance(v, DType)
    if kind == "ints":
        return isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    if kind == "bool":
        return isinstance(v, bool)
    return True


class _Verifier:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.seen: set[int] = set()  # every value defined so far: SSA allows one definition
        self.visible: set[int] = set()  # the values in scope at this point
        self.consts: dict[int, float] = {}  # values of `const` ops (a constant for step must be > 0)

    def fail(self, op: Op | None, msg: str) -> None:
        where = f"kernel @{self.k.name}" + (f", op {op.name}" if op is not None else "")
        raise TileIRError(f"{where}: {msg}")

    def run(self) -> None:
        k = self.k
        if len(k.params) != len(k.roles):
            self.fail(None, f"{len(k.params)} parameters but {len(k.roles)} roles")
        for p, role in zip(k.params, k.roles):
            if not isinstance(p.ty, TensorRefType):
                self.fail(None, f"parameter {p.hint or p.uid} is a {p.ty}, not a tensor")
            if role not in ROLES:
                self.fail(None, f"parameter {p.hint} has role '{role}', not one of {ROLES}")
            self.define(p, None)
        for sym, (i, ax) in k.extents.items():
            if not 0 <= i < len(k.params) or not 0 <= ax < k.params[i].ty.rank:  # type: ignore[union-attr]
                self.fail(None, f"extent {sym} names parameter {i} axis {ax}, which does not exist")
        for d in k.grid:
            unknown = d.free_symbols - set(k.extents)
            if unknown:
                self.fail(None, f"grid dim {d} uses symbols {sorted(unknown)} that no extent defines")
        if not k.grid:
            self.fail(None, "the grid has no axes")
        if not k.schedule.block or any(b <= 0 for b in k.schedule.block):
            self.fail(None, f"schedule block sizes must be positive, got {k.schedule.block}")
        self.region(k.body, in_loop=False)

    def define(self, v: Value, op: Op | None) -> None:
        if v.uid in self.seen:
            self.fail(op, f"value %{v.hint or v.uid} is defined twice")
        self.seen.add(v.uid)
        self.visible.add(v.uid)
        t = v.ty
        if isinstance(t, BlockType) and any(not isinstance(s, int) or s <= 0 for s in t.shape):
            self.fail(op, f"block shape {list(t.shape)} must be static and positive")
        if isinstance(t, BlockType) and t.space not in ("reg", "shared"):
            self.fail(op, f"unknown memory space '{t.space}'")

    def region(self, region: Region, in_loop: bool) -> None:
        for i, op in enumerate(region.ops):
            if op.name == "yield" and (not in_loop or i != len(region.ops) - 1):
                self.fail(op, "yield must be the last op of a for body")
            self.op(op)
        if in_loop and (not region.ops or region.ops[-1].name != "yield"):
            self.fail(None, "a for body must end with yield")

    def op(self, op: Op) -> None:
        d = TILE_OPS.get(op.name)
        if d is None:
            self.fail(op, "not in the Tile IR catalogue")
            return
        for v in op.operands:
            if v.uid not in self.visible:
                self.fail(op, f"operand %{v.hint or v.uid} is used before it is defined")
        if d.n_operands >= 0 and len(op.operands) != d.n_operands:
            self.fail(op, f"takes {d.n_operands} operands, got {len(op.operands)}")
        attrs = dict(op.attrs)
        schema = dict(d.attrs)
        if set(attrs) != set(schema):
            self.fail(op, f"attributes {sorted(attrs)} do not match the schema {sorted(schema)}")
        for key, kind in d.attrs:
            if not _attr_ok(kind, attrs[key]):
                self.fail(op, f"attribute {key} = {attrs[key]!r} is not a {kind}")
        for v in op.operands:
            if isinstance(v.ty, TensorRefType) and op.name not in ("load", "store", "store_masked", "dim"):
                self.fail(op, "tensor parameters are only read by load, store and dim")
        check = getattr(self, "op_" + op.name, None)
        if check is not None:
            check(op, attrs)
        elif d.category == "elementwise":
            self.elementwise(op)
        if op.name != "for":
            try:
                expected = d.infer([v.ty for v in op.operands], attrs)
            except (TileIRError, KeyError, IndexError, TypeError, AssertionError) as e:
                self.fail(op, f"operand types do not fit: {e}")
                return
            got = [r.ty for r in op.results]
            if got != expected:
                self.fail(op, f"result types {[str(t) for t in got]} should be "
                              f"{[str(t) for t in expected]}")
        for r in op.results:
            self.define(r, op)

    # -- per-op checks -----------------------------------------------------------------------

    def scalar_index(self, op: Op, v: Value, what: str) -> None:
        if v.ty != INDEX:
            self.fail(op, f"{what} must be an {INDEX} scalar, got {v.ty}")

    def axis_in(self, op: Op, axis: int, rank: int) -> None:
        if not 0 <= axis < rank:
            self.fail(op, f"axis {axis} is out of range for rank {rank}")

    def static_shape(self, op: Op, shape: tuple[int, ...]) -> None:
        if any(s <= 0 for s in shape):
            self.fail(op, f"block shape {list(shape)} must be static and positive")

    def op_program_id(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.axis_in(op, a["axis"], len(self.k.grid))  # type: ignore[arg-type]

    op_num_programs = op_program_id

    def op_dim(self, op: Op, a: dict[str, AttrValue]) -> None:
        t = op.operands[0].ty
        if not isinstance(t, TensorRefType):
            self.fail(op, f"operand must be a tensor parameter, got {t}")
            return
        self.axis_in(op, a["axis"], t.rank)  # type: ignore[arg-type]

    def op_iota(self, op: Op, a: dict[str, AttrValue]) -> None:
        shape = a["shape"]
        self.static_shape(op, shape)  # type: ignore[arg-type]
        self.axis_in(op, a["axis"], len(shape))  # type: ignore[arg-type]

    def op_full(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.static_shape(op, a["shape"])  # type: ignore[arg-type]

    def op_const(self, op: Op, a: dict[str, AttrValue]) -> None:
        if op.results:
            self.consts[op.results[0].uid] = float(a["value"])  # type: ignore[arg-type]

    def _tensor_starts(self, op: Op, n_extra: int) -> TensorRefType | None:
        if not op.operands or not isinstance(op.operands[0].ty, TensorRefType):
            self.fail(op, "the first operand must be a tensor parameter")
            return None
        t = op.operands[0].ty
        starts = op.operands[1:len(op.operands) - n_extra]
        if len(starts) != t.rank:
            self.fail(op, f"{t} takes {t.rank} start indices, got {len(starts)}")
        for s in starts:
            self.scalar_index(op, s, "a start index")
        return t

    def op_load(self, op: Op, a: dict[str, AttrValue]) -> None:
        t = self._tensor_starts(op, 0)
        shape = a["shape"]
        if t is not None and len(shape) != t.rank:  # type: ignore[arg-type]
            self.fail(op, f"block shape {list(shape)} must have the tensor's rank {t.rank}")  # type: ignore[arg-type]
        self.static_shape(op, shape)  # type: ignore[arg-type]

    def op_store(self, op: Op, a: dict[str, AttrValue]) -> None:
        t = self._tensor_starts(op, 1)
        v = op.operands[-1].ty
        if not isinstance(v, BlockType):
            self.fail(op, f"the stored value must be a block, got {v}")
            return
        if t is not None:
            if v.rank != t.rank:
                self.fail(op, f"a {v} stored into a {t}: ranks differ")
            if v.dtype != t.dtype:
                self.fail(op, f"a {v} stored into a {t}: dtypes differ (cast first)")
        idx = self.k.params.index(op.operands[0]) if op.operands[0] in self.k.params else -1
        if idx >= 0 and self.k.roles[idx] == "in":
            self.fail(op, f"stores into parameter {op.operands[0].hint}, whose role is 'in'")

    def op_store_masked(self, op: Op, a: dict[str, AttrValue]) -> None:
        t = self._tensor_starts(op, 2)
        v, m = op.operands[-2].ty, op.operands[-1].ty
        if not isinstance(v, BlockType):
            self.fail(op, f"the stored value must be a block, got {v}")
            return
        if not isinstance(m, BlockType) or m.dtype != BOOL:
            self.fail(op, f"the mask must be a bool block, got {m}")
            return
        try:
            if m.rank != v.rank or broadcast_shapes(m.shape, v.shape) != v.shape:
                raise TileIRError("")
        except TileIRError:
            self.fail(op, f"the mask {m} does not broadcast to the value {v}")
        if t is not None and (v.rank != t.rank or v.dtype != t.dtype):
            self.fail(op, f"a {v} stored into a {t}: ranks or dtypes differ")
        idx = self.k.params.index(op.operands[0]) if op.operands[0] in self.k.params else -1
        if idx >= 0 and self.k.roles[idx] == "in":
            self.fail(op, f"stores into parameter {op.operands[0].hint}, whose role is 'in'")

    def op_alloc_shared(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.static_shape(op, a["shape"])  # type: ignore[arg-type]
        if a["swizzle"] not in ("xor", "none"):
            self.fail(op, f"swizzle '{a['swizzle']}' is not one of ('xor', 'none')")

    def op_cp_async(self, op: Op, a: dict[str, AttrValue]) -> None:
        dst, src = (v.ty for v in op.operands)
        if not isinstance(dst, BlockType) or dst.space != "shared":
            self.fail(op, f"the destination must be a shared block, got {dst}")
            return
        if not isinstance(src, BlockType) or src.shape != dst.shape or src.dtype != dst.dtype:
            self.fail(op, f"copies a {src} into a {dst}: shapes and dtypes must agree")

    def elementwise(self, op: Op) -> None:
        for v in op.operands:
            if not isinstance(v.ty, (BlockType, ScalarType)):
                self.fail(op, f"operand {v.ty} is not a block or a scalar")
        if op.name in _SAME_DTYPE:
            dts = {v.ty.dtype for v in op.operands}  # type: ignore[union-attr]
            if len(dts) > 1:
                self.fail(op, f"operands have dtypes {sorted(map(str, dts))}; cast them to one dtype")
        if op.name in ("and", "or", "not") and any(v.ty.dtype.is_float for v in op.operands):  # type: ignore[union-attr]
            self.fail(op, "takes bool or integer operands")

    def op_cmp(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.elementwise(op)
        if a["pred"] not in COMPARE_PREDICATES:
            self.fail(op, f"pred '{a['pred']}' is not one of {COMPARE_PREDICATES}")

    def op_select(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.elementwise(op)
        c, x, y = (v.ty for v in op.operands)
        if c.dtype != BOOL:  # type: ignore[union-attr]
            self.fail(op, f"the condition must be bool, got {c}")
        if x.dtype != y.dtype:  # type: ignore[union-attr]
            self.fail(op, f"the two values have dtypes {x.dtype} and {y.dtype}")  # type: ignore[union-attr]

    def op_cast(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.elementwise(op)
        if a["rounding"] not in ROUNDINGS:
            self.fail(op, f"rounding '{a['rounding']}' is not one of {ROUNDINGS}")

    def op_gelu(self, op: Op, a: dict[str, AttrValue]) -> None:
        self.elementwise(op)
        if a["approximate"] not in GELU_FORMS:
            self.fail(op, f"approximate '{a['approximate']}' is not one of {GELU_FORMS}")

    def op_broadcast(self, op: Op, a: dict[str, AttrValue]) -> None:
        src = op.operands[0].ty
        shape = tuple(a["shape"])  # type: ignore[arg-type]
        self.static_shape(op, shape)
        if isinstance(src, BlockType):
            # NumPy alignment: missing leading axes are size 1.
            padded = (1,) * (len(shape) - src.rank) + src.shape
            try:
                if src.rank > len(shape) or broadcast_shapes(padded, shape) != shape:
                    raise TileIRError("")
            except TileIRError:
                self.fail(op, f"cannot broadcast {src} to {list(shape)}")
        elif not isinstance(src, ScalarType):
            self.fail(op, f"cannot broadcast {src}")

    def op_transpose(self, op: Op, a: dict[str, AttrValue]) -> None:
        src = op.operands[0].ty
        if not isinstance(src, BlockType):
            self.fail(op, f"operand must be a block, got {src}")
            return
        if sorted(a["perm"]) != list(range(src.rank)):  # type: ignore[arg-type]
            self.fail(op, f"perm {list(a['perm'])} is not a permutation of the {src.rank} axes")  # type: ignore[arg-type]

    def op_reduce(self, op: Op, a: dict[str, AttrValue]) -> None:
        src = op.operands[0].ty
        if not isinstance(src, BlockType):
            self.fail(op, f"operand must be a block, got {src}")
            return
        if a["kind"] not in REDUCE_KINDS:
            self.fail(op, f"kind '{a['kind']}' is not one of {REDUCE_KINDS}")
        self.axis_in(op, a["axis"], src.rank)  # type: ignore[arg-type]

    def op_dot(self, op: Op, a: dict[str, AttrValue]) -> None:
        x, y, acc = (v.ty for v in op.operands)
        if not all(isinstance(t, BlockType) and t.rank == 2 for t in (x, y, acc)):
            self.fail(op, f"takes three rank-2 blocks, got {x}, {y}, {acc}")
            return
        assert isinstance(x, BlockType) and isinstance(y, BlockType) and isinstance(acc, BlockType)
        (m, k), (k2, n), (m2, n2) = x.shape, y.shape, acc.shape
        if k != k2 or (m, n) != (m2, n2):
            self.fail(op, f"shapes {list(x.shape)} x {list(y.shape)} + {list(acc.shape)} are not "
                          "[M,K] x [K,N] + [M,N]")
        if x.dtype != y.dtype:
            self.fail(op, f"operand dtypes {x.dtype} and {y.dtype} differ")
        if x.dtype.is_float != acc.dtype.is_float:
            self.fail(op, f"{x.dtype} operands cannot accumulate in {acc.dtype}")

    def op_for(self, op: Op, a: dict[str, AttrValue]) -> None:
        if len(op.operands) < 3:
            self.fail(op, "takes start, stop, step and the initial carried values")
            return
        for v, what in zip(op.operands[:3], ("start", "stop", "step")):
            self.scalar_index(op, v, what)
        if self.consts.get(op.operands[2].uid, 1.0) <= 0:
            self.fail(op, f"step {self.consts[op.operands[2].uid]:g} must be positive")
        if len(op.regions) != 1:
            self.fail(op, "has exactly one region")
            return
        region = op.regions[0]
        inits = op.operands[3:]
        if len(region.args) != 1 + len(inits):
            self.fail(op, f"region takes the iv and {len(inits)} carried values, has {len(region.args)} args")
            return
        iv, *carried = region.args
        outer_scope = set(self.visible)
        self.define(iv, op)
        if iv.ty != INDEX:
            self.fail(op, f"the induction variable must be an {INDEX} scalar, got {iv.ty}")
        for c, init in zip(carried, inits):
            if c.ty != init.ty:
                self.fail(op, f"carried value {c.ty} does not match its initial value {init.ty}")
            self.define(c, op)
        if len(op.results) != len(inits) or any(r.ty != i.ty for r, i in zip(op.results, inits)):
            self.fail(op, "results must match the carried values")
        self.region(region, in_loop=True)
        y = region.ops[-1]
        if [v.ty for v in y.operands] != [c.ty for c in carried]:
            got = [str(v.ty) for v in y.operands]
            self.fail(y, f"yields {got}, but the loop carries {[str(c.ty) for c in carried]}")
        # The body's values are not visible after the loop.
        self.visible = outer_scope

    def op_yield(self, op: Op, a: dict[str, AttrValue]) -> None:
        pass

    def op_barrier(self, op: Op, a: dict[str, AttrValue]) -> None:
        pass


def verify_kernel(k: Kernel) -> None:
    """Raise TileIRError naming the kernel and op at the first violated rule."""
    _Verifier(k).run()
