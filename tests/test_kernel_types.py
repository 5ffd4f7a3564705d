"""The checker's tile types (tessera/frontend/tiles.py): the type of every `tile.*` intrinsic, and
the kernel errors that are compile-time diagnostics with spans (E-SHAPE, E-DTYPE, E-TYPE,
E-SCHEDULE)."""

from __future__ import annotations

from textwrap import dedent

import pytest
from checking import Expect, assigned_types, check, find, shown

from tessera.frontend.intrinsics import TILE_INTRINSICS

HEAD = """
    @kernel
    def f(x: KTile["N", "M", f32], w: KTile["M", "K", bf16 @accum(f32)], b: KTile["K", f32],
          q: KTile["BH", "S", "D", bf16], y: KTile["N", "M", bf16], *, alpha: float, causal: bool):
        T = tile.context()
"""


def kernel(body: str) -> str:
    """HEAD followed by `body` as the rest of the kernel's body."""
    return HEAD + "".join("        " + line + "\n" for line in dedent(body).strip("\n").splitlines())


def types(body: str) -> dict[str, str]:
    return assigned_types(kernel(body))


def test_context_fields() -> None:
    t = types("""
        m = T.m
        n = T.n
        d = T.d
        bh = T.bh
        w4 = T.warps
    """)
    assert t == {"T": "TileContext", "m": "int", "n": "int", "d": "int", "bh": "int", "w4": "int"}


def test_load_addresses_the_program_block_a_loop_block_an_explicit_range_or_a_whole_axis() -> None:
    t = types("""
        a = tile.load(x, rows=T.m, cols=T.n)
        whole = tile.load(x, rows=T.m)
        i = tile.program_id(0)
        by_index = tile.load(x, rows=i, cols=i)
        explicit = tile.load(x, rows=(i * 7, 7), cols=(0, 32))
        vec = tile.load(b, cols=T.n)
        batched = tile.load(q, rows=T.m)
        padded = tile.load(x, rows=T.m, other=-inf, mask=tile.row_index() < 5)
    """)
    assert t["a"] == "tile[T.m, T.n, f32]"
    assert t["whole"] == "tile[T.m, M, f32]"
    assert t["by_index"] == "tile[T.m, T.n, f32]"
    assert t["explicit"] == "tile[7, 32, f32]"
    assert t["vec"] == "tile[T.n, f32]"
    assert t["batched"] == "tile[T.m, D, bf16]"
    assert t["padded"] == "tile[T.m, M, f32]"


def test_loop_blocks_take_the_loop_step() -> None:
    src = HEAD + """
        acc = tile.zeros((T.m, T.n), f32)
        for kk in tile.range_n(x.shape[1], T.k, prefetch=3):
            a = tile.load(x, rows=T.m, cols=kk)
            acc = tile.dot(a, tile.cast(tile.load(w, rows=kk, cols=T.n), f32), acc)
        for j in tile.range(0, 64, 16):
            c = tile.load(x, rows=T.m, cols=j)
        """
    t = assigned_types(src)
    assert t["a"] == "tile[T.m, T.k, f32]"
    assert t["acc"] == "tile[T.m, T.n, f32]"
    assert t["c"] == "tile[T.m, 16, f32]"


def test_compute_intrinsics() -> None:
    t = types("""
        xb = tile.load(x, rows=T.m)
        wb = tile.load(w, cols=T.n)
        z = tile.zeros((T.m, T.n), f32)
        full = tile.full((T.m,), -inf, f32)
        prod = tile.dot(tile.cast(xb, bf16), wb)
        acc = tile.dot(xb, tile.cast(wb, f32), z)
        tr = tile.transpose(xb)
        e = tile.exp(xb - tile.reduce_rowmax(xb)[:, None])
        r = tile.rsqrt(float(T.d))
        s = tile.sum(e, axis=0)
        rs = tile.reduce_rowsum(e)
        mx = tile.max(e)
        mn = tile.min(xb, axis=-1)
        mean = tile.mean(tile.cast(xb, bf16), axis=1)
        mm = tile.maximum(xb, 0.0)
        wh = tile.where(xb > 0, xb, 0.0)
        sc = xb * alpha + 1
        half = tile.cast(xb, bf16) * 2.0
        cmp = xb < 1.0
        via_matmul = xb @ tile.cast(wb, f32)
        g = gelu(xb)
        col = tile.row_index()
        row = tile.col_index()
    """)
    assert t["z"] == "tile[T.m, T.n, f32]"
    assert t["full"] == "tile[T.m, f32]"
    assert t["prod"] == "tile[T.m, T.n, f32]"  # bf16 @accum(f32) operands accumulate in f32
    assert t["acc"] == "tile[T.m, T.n, f32]"
    assert t["tr"] == "tile[M, T.m, f32]"
    assert t["e"] == "tile[T.m, M, f32]"
    assert t["r"] == "float"
    assert t["s"] == "tile[M, f32]"
    assert t["rs"] == t["mx"] == t["mn"] == "tile[T.m, f32]"
    assert t["mean"] == "tile[T.m, f32]"  # bf16 sums accumulate in f32
    assert t["mm"] == t["wh"] == t["sc"] == "tile[T.m, M, f32]"
    assert t["half"] == "tile[T.m, M, bf16]"  # Python scalars are weak
    assert t["cmp"] == "tile[T.m, M, bool]"
    assert t["via_matmul"] == "tile[T.m, T.n, f32]"
    assert t["g"] == "tile[T.m, M, f32]"
    assert t["col"] == "tile[T.m, 1, int64]" and t["row"] == "tile[1, T.n, int64]"


def test_online_softmax_and_masks() -> None:
    t = types("""
        qb = tile.load(q, rows=T.m)
        kb = tile.load(q, rows=(0, 64))
        s = tile.dot(qb, tile.transpose(kb))
        s2 = tile.mask_causal(s, tile.row_index(), tile.col_index((0, 64)))
        p, m_c, l_c = tile.softmax_online(s2)
        acc = tile.zeros((T.m, q.shape[2]), f32)
        m = tile.full((T.m,), -inf, f32)
        acc, m, l = tile.softmax_accumulate(acc, m, m, p, kb, m_c, l_c)
    """)
    assert t["s"] == t["s2"] == "tile[T.m, 64, f32]"
    assert t["acc"] == "tile[T.m, D, f32]"
    assert t["m"] == "tile[T.m, f32]"


def test_shared_memory_intrinsics() -> None:
    t = types("""
        buf = tile.alloc_shared((T.k, T.n), f32, swizzle="xor")
        tile.cp_async(buf, tile.load(x, rows=(0, T.k), cols=T.n))
        tile.barrier()
        z = tile.dot(tile.load(x, rows=T.m, cols=(0, T.k)), buf)
    """)
    assert t["buf"] == "tile[T.k, T.n, f32, shared]"
    assert t["z"] == "tile[T.m, T.n, f32]"


def test_ids_and_stores_check_clean() -> None:
    types("""
        i = tile.program_id(1)
        n = tile.num_programs(0)
        tile.store(y, tile.cast(tile.load(x, rows=i), bf16), rows=i)
        tile.store(y, 0.0, rows=T.m, mask=tile.row_index() > 3)
    """)


# ---------------------------------------------------------------- diagnostics


CASES = {
    "dot-mismatch": ("""
        a = tile.load(x, rows=T.m, cols=T.n)
        c = tile.dot(a, tile.load(x, rows=T.m, cols=T.n))
        """, Expect("E-SHAPE", "tile.dot: a.shape[1] (T.n) must equal tile.load(x, rows=T.m, cols=T.n).shape[0] (T.m)",
                    (6, 9))),
    "dot-rank": ("""
        c = tile.dot(tile.load(b), tile.load(b))
        """, Expect("E-SHAPE", "tile.dot: takes rank-2 tiles; 'tile.load(b)' is tile[K, f32]", (5, 18))),
    "store-narrows": ("""
        tile.store(y, tile.load(x, rows=T.m), rows=T.m)
        """, Expect("E-DTYPE", "storing a f32 tile into the bf16 tensor 'y' narrows", (5, 19),
                    fixit="tile.cast(tile.load(x, rows=T.m), bf16)")),
    "store-shape": ("""
        tile.store(x, tile.zeros((T.n, T.m), f32), rows=T.m, cols=T.n)
        """, Expect("E-SHAPE", "do not broadcast", (5, 5))),
    "tensor-as-value": ("""
        z = x * 2.0
        """, Expect("E-TYPE", "'x' is a tensor in global memory; load a block of it with tile.load(x, ...)", (5, 9))),
    "rows-on-a-vector": ("""
        z = tile.load(b, rows=T.m)
        """, Expect("E-SHAPE", "'b' has rank 1: its one axis is addressed with cols=", (5, 27), fixit="cols=T.m")),
    "if-on-a-tile": ("""
        z = tile.load(x, rows=T.m)
        if z:
            pass
        """, Expect("E-TYPE", "an if on a tile: kernel control flow must be static", (6, 8))),
    "elementwise-shapes": ("""
        z = tile.load(x, rows=T.m, cols=T.n) + tile.zeros((T.n, T.m), f32)
        """, Expect("E-SHAPE", "do not broadcast", (5, 9))),
    "float-only": ("""
        z = tile.exp(tile.zeros((4,), int32))
        """, Expect("E-DTYPE", "needs a floating-point tile, found int32", (5, 18),
                    fixit="tile.cast(tile.zeros((4,), int32), f32)")),
    "mask-dtype": ("""
        z = tile.load(x, rows=T.m, mask=tile.row_index())
        """, Expect("E-DTYPE", "the mask must be a bool tile, found int64", (5, 37),
                    fixit="tile.row_index() != 0")),
    "size-not-static": ("""
        z = tile.load(x, rows=(0, tile.program_id(0)))
        """, Expect("E-TYPE", "the size in rows=(start, size) must be an int known at compile time", (5, 27))),
    "cp-async-into-registers": ("""
        tile.cp_async(tile.zeros((4, 4), f32), tile.zeros((4, 4), f32))
        """, Expect("E-TYPE", "the destination must be a block from tile.alloc_shared", (5, 19))),
    "accumulate-step": ("""
        acc = tile.zeros((T.m, T.n), f32)
        acc, m, l = tile.softmax_accumulate(acc, acc, acc, acc, acc, acc, acc)
        """, Expect("E-SHAPE", "must be a rank-1 tile", (6, 46))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_diagnostic(name: str) -> None:
    body, want = CASES[name]
    checked = check(kernel(body))
    find(checked, want)
    assert len(checked.diagnostics) == 1, shown(checked)


def test_returned_tile_rank_and_dtype() -> None:
    checked = check("""
        @kernel
        def f(x: KTile["B", "N", "M", bf16]) -> KTile["B", "N", "M", bf16]:
            T = tile.context()
            return tile.sum(tile.load(x, rows=T.m), axis=1)
        @kernel
        def g(x: KTile["N", "M", bf16]) -> KTile["N", "M", bf16]:
            T = tile.context()
            xb = tile.load(x, rows=T.m)
            return xb + tile.zeros((T.m, 1), f32)
        @kernel
        def h(x: KTile["N", "M", f32]):
            return tile.load(x)
        """)
    find(checked, Expect("E-SHAPE", "the returned tile has rank 1 but the program's block of the result", (4, 12)))
    find(checked, Expect("E-DTYPE", "the result is declared bf16 but the returned tile is f32", (9, 12),
                         fixit="tile.cast(xb + tile.zeros((T.m, 1), f32), bf16)"))
    find(checked, Expect("E-TYPE", "a @kernel that returns a tile must declare its result type", (12, 12)))
    assert len(checked.diagnostics) == 3, shown(checked)


def test_autotune_space_keys_and_values_are_checked() -> None:
    checked = check("""
        @kernel.autotune(space=dict(BM=[64, 128], tile_m=[2]))
        def f(x: KTile["N", f32]):
            pass
        @kernel.autotune(space=dict(warps=[4, 6]))
        def g(x: KTile["N", f32]):
            pass
        """)
    find(checked, Expect("E-SCHEDULE", "'tile_m' is not a schedule parameter (autotune keys: BM, BN, BK", (1, 24)))
    find(checked, Expect("E-SCHEDULE", "'warps' choices must be powers of two; found 6", (4, 24)))


def test_tile_intrinsics_are_an_error_outside_kernels_and_graph_builtins_are_for_tensors() -> None:
    checked = check("""
        @jit
        def f(x: Tensor["N", f32]):
            return tile.zeros((4,), f32)
        """)
    find(checked, Expect("E-TYPE", "tile.zeros is a tile intrinsic; it may only be used inside a @kernel", (3, 12)))


def test_every_intrinsic_has_a_lowering_and_a_doc() -> None:
    from pathlib import Path

    from tessera.ir.kernel_intrinsics import INTRINSIC_LOWERINGS

    assert set(TILE_INTRINSICS) == set(INTRINSIC_LOWERINGS)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text()
    section = doc[doc.index("## Kernels (§7)"):doc.index("## Tools (§9)")]
    missing = [n for n in TILE_INTRINSICS if n not in ("context",) and n not in section]
    assert not missing, missing
