"""The `tile.*` kernel intrinsics (spec §7) and the `effects.*` scopes (spec §8), as catalogue rows.

Inside a `@kernel`, tile values are typed loosely for now (`any`): the checker resolves every
intrinsic, binds its arguments and records its effects; the tile-shape rules arrive with the kernel
DSL. Outside a kernel, `tile.*` is an error (E-TYPE).
"""

from __future__ import annotations

from tessera.frontend.builtins import Builtin, CallCtx, sig
from tessera.frontend.types import ANY, INT, NONE, OpaqueType, StrType, TupleType, Type

TILE_CONTEXT = OpaqueType("TileContext", tuple(
    (f, INT) for f in ("m", "n", "k", "d", "warps", "stages", "vector", "bh")))
TILE_RANGE = OpaqueType("range", (("item", INT),))


def _any(ctx: CallCtx) -> Type:
    return ANY


def _none(ctx: CallCtx) -> Type:
    return NONE


def _int(ctx: CallCtx) -> Type:
    return INT


def _triple(ctx: CallCtx) -> Type:
    return TupleType((ANY, ANY, ANY))


def _axis(ctx: CallCtx) -> Type:
    ctx.static_int("axis")
    return INT


_TILE: list[tuple[str, tuple, object, str, tuple[str, ...]]] = [
    ("context", sig(), lambda c: TILE_CONTEXT, "the active schedule (T.m, T.n, T.k, T.warps, ...)", ()),
    ("program_id", sig("axis=0"), _axis, "this program's index along a grid axis", ()),
    ("num_programs", sig("axis=0"), _axis, "the grid's extent along an axis", ()),
    ("load", sig("t", "*", "rows=None", "cols=None", "mask=None", "other=0"), _any,
     "load the program's block of t", ()),
    ("store", sig("t", "value", "*", "rows=None", "cols=None", "mask=None"), _none,
     "store a block into t", ("memory",)),
    ("alloc_shared", sig("shape", "dtype", "*", "swizzle=None"), _any, "a block in shared memory", ()),
    ("cp_async", sig("dst", "src"), _none, "asynchronous global-to-shared copy", ()),
    ("barrier", sig(), _none, "synchronise the program's threads", ()),
    ("zeros", sig("shape", "dtype=f32"), _any, "a block of zeros", ()),
    ("full", sig("shape", "value", "dtype=f32"), _any, "a block filled with value", ()),
    ("dot", sig("a", "b", "acc=None"), _any, "block matrix product, accumulating into acc", ()),
    ("transpose", sig("x"), _any, "transpose a 2-D block", ()),
    ("cast", sig("x", "dtype"), _any, "convert a block's dtype", ()),
    ("rsqrt", sig("x"), _any, "1/sqrt(x)", ()),
    ("exp", sig("x"), _any, "elementwise exp", ()),
    ("log", sig("x"), _any, "elementwise log", ()),
    ("sqrt", sig("x"), _any, "elementwise sqrt", ()),
    ("maximum", sig("a", "b"), _any, "elementwise maximum", ()),
    ("minimum", sig("a", "b"), _any, "elementwise minimum", ()),
    ("where", sig("cond", "a", "b"), _any, "elementwise select", ()),
    ("max", sig("x", "axis=-1"), _any, "reduce a block with max", ()),
    ("sum", sig("x", "axis=-1"), _any, "reduce a block with sum", ()),
    ("reduce_rowmax", sig("x"), _any, "max of each row", ()),
    ("reduce_rowsum", sig("x"), _any, "sum of each row", ()),
    ("softmax_online", sig("s"), _triple, "(p, row max, row sum) of one score block", ()),
    ("softmax_accumulate", sig("acc", "m", "l", "p", "v", "m_c", "l_c"), _triple,
     "rescale and accumulate an online-softmax step", ()),
    ("mask_causal", sig("s", "rows", "cols"), _any, "-inf where col > row", ()),
    ("row_index", sig("start=None"), _any, "global row indices of the program's block", ()),
    ("col_index", sig("start=None"), _any, "global column indices of a block", ()),
    ("range", sig("start", "stop=None", "step=1"), lambda c: TILE_RANGE, "a loop over block offsets", ()),
    ("range_n", sig("extent", "block", "*", "prefetch=2"), lambda c: TILE_RANGE,
     "a loop over the blocks of an extent, prefetching", ()),
    ("atomic_add", sig("t", "value", "*", "rows=None", "cols=None", "mask=None"), _none,
     "atomically add a block into t (unordered: nondet)", ("memory", "nondet")),
]

TILE_INTRINSICS: dict[str, Builtin] = {
    name: Builtin(f"tile.{name}", params, rule, frozenset(eff), False, doc)  # type: ignore[arg-type]
    for name, params, rule, doc, eff in _TILE
}


def _effect_kinds(ctx: CallCtx) -> Type:
    from tessera.frontend.effects import EFFECT_KINDS

    for a in ctx.varargs:
        if not isinstance(a.ty, StrType) or a.ty.value not in EFFECT_KINDS:
            raise ctx.error("E-EFFECT", f"expected an effect kind ({', '.join(EFFECT_KINDS)}), found "
                            f"{a.ty.value if isinstance(a.ty, StrType) else a.ty}", a.span)
    return OpaqueType("EffectScope")


EFFECT_SCOPES: dict[str, Builtin] = {
    "suspend": Builtin("effects.suspend", sig("*kinds"), _effect_kinds, doc="hide these effects of the block"),
    "allow": Builtin("effects.allow", sig("*kinds"), _effect_kinds,
                     doc="permit these effects in a @deterministic function"),
}

