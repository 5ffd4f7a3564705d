"""The `tile.*` kernel intrinsics (spec §7) and the `effects.*` scopes (spec §8), as catalogue rows.

Each tile row is (name, signature, shape/dtype rule, doc, effects); the rules live in
`tessera/frontend/tiles.py` and the lowering of each row in `tessera/ir/kernel_intrinsics.py`
(a test keeps the two tables in step). Outside a kernel, `tile.*` is an error (E-TYPE).
`tile.context()` is typed from the kernel's own parameters (see `CallTyping.call_builtin_ref`).
"""

from __future__ import annotations

from tessera.frontend import tiles
from tessera.frontend.builtins import Builtin, CallCtx, binary, sig, unary
from tessera.frontend.types import NONE, OpaqueType, StrType, Type

# A stand-in for kernels whose parameters are unknown; `CallTyping` types the real context.
TILE_CONTEXT = tiles.context_type(())


def _none(ctx: CallCtx) -> Type:
    return NONE


_UNARY = ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu")
_UNARY_ANY = ("abs", "neg", "relu")

_TILE: list[tuple[str, tuple, object, str, tuple[str, ...]]] = [
    ("context", sig(), lambda c: TILE_CONTEXT, "the active schedule (T.m, T.n, T.k, T.d, T.warps, ...)", ()),
    ("program_id", sig("axis=0"), tiles.rule_axis, "this program's index along a grid axis", ()),
    ("num_programs", sig("axis=0"), tiles.rule_axis, "the grid's extent along an axis", ()),
    ("load", sig("t", "*", "rows=None", "cols=None", "mask=None", "other=0"), tiles.rule_load,
     "load a block of a tensor parameter (the program's block, a loop's block, (start, size) or a block index)",
     ()),
    ("store", sig("t", "value", "*", "rows=None", "cols=None", "mask=None"), tiles.rule_store,
     "store a block into a tensor parameter (in-bounds elements where mask holds)", ("memory",)),
    ("alloc_shared", sig("shape", "dtype", "*", "swizzle=None"), tiles.rule_alloc_shared,
     "a block in shared memory (explicit staging)", ()),
    ("cp_async", sig("dst", "src"), tiles.rule_cp_async, "copy a block into a shared block (asynchronously on GPUs)",
     ()),
    ("barrier", sig(), _none, "synchronise the program's threads", ()),
    ("zeros", sig("shape", "dtype=f32"), tiles.rule_zeros, "a block of zeros", ()),
    ("full", sig("shape", "value", "dtype=f32"), tiles.rule_zeros, "a block filled with value", ()),
    ("dot", sig("a", "b", "acc=None"), tiles.rule_dot, "block matrix product, accumulating into acc", ()),
    ("transpose", sig("x"), tiles.rule_transpose, "transpose a 2-D block", ()),
    ("cast", sig("x", "dtype"), tiles.rule_cast, "convert a block's dtype (round to nearest even)", ()),
    *((n, sig("x"), unary(float_only=True), f"elementwise {n}", ()) for n in _UNARY),
    *((n, sig("x"), unary(), f"elementwise {n}", ()) for n in _UNARY_ANY),
    ("maximum", sig("a", "b"), binary(), "elementwise maximum", ()),
    ("minimum", sig("a", "b"), binary(), "elementwise minimum", ()),
    ("where", sig("cond", "a", "b"), tiles.rule_where, "elementwise select", ()),
    ("max", sig("x", "axis=-1"), tiles.reduction("max"), "reduce one axis of a block with max (removed)", ()),
    ("min", sig("x", "axis=-1"), tiles.reduction("min"), "reduce one axis of a block with min (removed)", ()),
    ("sum", sig("x", "axis=-1"), tiles.reduction("sum"), "reduce one axis of a block with sum (removed)", ()),
    ("mean", sig("x", "axis=-1"), tiles.reduction("mean"), "reduce one axis of a block with mean (removed)", ()),
    ("reduce_rowmax", sig("x"), tiles.reduction("rowmax"), "max of each row of a 2-D block", ()),
    ("reduce_rowsum", sig("x"), tiles.reduction("rowsum"), "sum of each row of a 2-D block", ()),
    ("softmax_online", sig("s"), tiles.rule_softmax_online, "(p, row max, row sum) of one score block", ()),
    ("softmax_accumulate", sig("acc", "m", "l", "p", "v", "m_c", "l_c"), tiles.rule_softmax_accumulate,
     "rescale and accumulate an online-softmax step: (acc, m, l)", ()),
    ("mask_causal", sig("s", "rows", "cols"), tiles.rule_mask_causal, "-inf where col > row", ()),
    ("row_index", sig("block=None"), tiles.rule_index("rows"), "global row indices of a block, as a column", ()),
    ("col_index", sig("block=None"), tiles.rule_index("cols"), "global column indices of a block, as a row", ()),
    ("range", sig("start", "stop=None", "step=1"), tiles.rule_range, "a loop over the blocks [j, j + step)", ()),
    ("range_n", sig("extent", "block", "*", "prefetch=None"), tiles.rule_range_n,
     "a loop over the blocks of an extent, prefetching", ()),
    ("atomic_add", sig("t", "value", "*", "rows=None", "cols=None", "mask=None"), tiles.rule_store,
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

