"""The Tile IR ops kernels added (store_masked, alloc_shared, cp_async): printer, parser, verifier and
CPU execution; and the schedule budgets of tessera/ir/tile/budget.py on hand-built kernels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from filecheck_util import filecheck

from tessera.dtypes import BOOL, F32, INT64
from tessera.ir.tile.budget import BUDGETS, BudgetError, check_budget, usage
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import Kernel, Schedule, TileIRError, Value, make_op
from tessera.ir.tile.parser import parse_kernel
from tessera.ir.tile.printer import print_kernel
from tessera.ir.tile.verify import verify_kernel
from tessera.runtime.cpu import CpuRuntime
from tessera.symbolic import Dim

RNG = np.random.default_rng()


def staged_matmul(bm: int, bn: int, bk: int, *, warps: int = 4, stages: int = 2, explicit: bool = True) -> Kernel:
    """C = A @ B with B's blocks copied into shared memory (explicit) or loaded straight into the dot."""
    b = TileBuilder("mm", Schedule(block=(bm, bn), k=bk, warps=warps, stages=stages))
    a = b.param("a", 2, F32, "in")
    w = b.param("w", 2, F32, "in")
    c = b.param("c", 2, F32, "out")
    m, k, n = b.extent("M", a, 0), b.extent("K", a, 1), b.extent("N", w, 1)
    b.grid(cdiv(m, bm), cdiv(n, bn))
    i0 = b.op("mul", b.program_id(0), b.const(bm))
    j0 = b.op("mul", b.program_id(1), b.const(bn))
    acc0 = b.full((bm, bn), 0.0, F32, hint="acc")
    with b.for_(b.const(0), b.dim(a, 1), b.const(bk), [acc0], hints=["acc"], iv_hint="kk") as lp:
        ab = b.load(a, i0, lp.iv, shape=(bm, bk))
        wb = b.load(w, lp.iv, j0, shape=(bk, bn))
        if explicit:
            smem = b.op("alloc_shared", shape=(bk, bn), dtype=F32, swizzle="xor", hint="smem")
            wb = b.op("cp_async", smem, wb, hint="ws")
            b.emit("barrier")
        b.yield_(lp, [b.dot(ab, wb, lp.args[0])])
    keep = b.op("cmp", b.op("iota", shape=(bm, bn), axis=1), b.const(bn // 2), pred="lt")
    b.emit("store_masked", c, i0, j0, lp.results[0], keep)
    del m, k, n
    return b.build()


def test_new_ops_print_parse_and_verify() -> None:
    k = staged_matmul(16, 8, 4)
    verify_kernel(k)
    text = print_kernel(k)
    filecheck(text, """
        CHECK: %smem = alloc_shared {shape = [4, 8], dtype = f32, swizzle = "xor"} : block<[4, 8], f32, shared>
        CHECK-NEXT: %ws = cp_async(%smem, %{{.*}}) : block<[4, 8], f32, shared>
        CHECK-NEXT: barrier()
        CHECK: store_masked(%c, %{{[0-9]+}}, %{{[0-9]+}}, %acc_2, %{{[0-9]+}})
    """)
    assert print_kernel(parse_kernel(text)) == text


def test_new_ops_run_on_the_cpu() -> None:
    k = staged_matmul(16, 8, 4)
    a, w = RNG.standard_normal((21, 10)).astype(np.float32), RNG.standard_normal((10, 19)).astype(np.float32)
    c = np.full((21, 19), 7.0, np.float32)
    CpuRuntime().compile([k]).launch("mm", [a, w, c])
    want = np.where((np.arange(19) % 8) < 4, a.astype(np.float64) @ w, 7.0)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def _bad(build: Callable[[TileBuilder, Value], None]) -> str:
    b = TileBuilder("bad", Schedule(block=(8,)))
    t = b.param("t", 2, F32, "out")
    b.grid(Dim.const(1))
    build(b, t)
    with pytest.raises(TileIRError) as ex:
        verify_kernel(b.build())
    return str(ex.value)


def test_verifier_rejects_misused_new_ops() -> None:
    def mask_shape(b: TileBuilder, t: Value) -> None:
        z = b.const(0)
        v = b.full((4, 8), 0.0, F32)
        b.emit("store_masked", t, z, z, v, b.full((4, 3), 1, BOOL))

    assert "the mask block<[4, 3], bool> does not broadcast to the value" in _bad(mask_shape)

    def mask_dtype(b: TileBuilder, t: Value) -> None:
        z = b.const(0)
        b.emit("store_masked", t, z, z, b.full((4, 8), 0.0, F32), b.full((4, 8), 1, INT64))

    assert "the mask must be a bool block" in _bad(mask_dtype)

    def copy_into_registers(b: TileBuilder, t: Value) -> None:
        v = b.full((4, 8), 0.0, F32)
        b.body.ops.append(make_op("cp_async", [v, v]))

    assert "the destination must be a shared block" in _bad(copy_into_registers)

    def bad_swizzle(b: TileBuilder, t: Value) -> None:
        b.op("alloc_shared", shape=(4, 4), dtype=F32, swizzle="zigzag")

    assert "swizzle 'zigzag' is not one of" in _bad(bad_swizzle)


# ---------------------------------------------------------------- budgets


def test_usage_model() -> None:
    k = staged_matmul(64, 64, 32, warps=4, stages=3, explicit=False)
    u = usage(k, BUDGETS["h100"])
    assert u.threads == 128
    assert u.shared_bytes == 3 * (64 * 32 + 32 * 64) * 4  # both dot operands, 3 stages deep
    # Live at once at worst: the accumulator slot, the dot result and the mask of the store.
    assert u.register_bytes >= 64 * 64 * 4
    assert u.registers_per_thread == -(-u.register_bytes // (4 * 128)) + 16
    e = staged_matmul(64, 64, 32, warps=4, stages=3, explicit=True)
    # B's block goes through the explicit shared block; A's is staged automatically.
    assert usage(e, BUDGETS["h100"]).shared_bytes == 3 * 64 * 32 * 4 + 32 * 64 * 4
    assert usage(k, BUDGETS["h100"], {id(op): 1 for op in k.body.ops if op.name == "for"}).shared_bytes == \
        (64 * 32 + 32 * 64) * 4


@pytest.mark.parametrize("name, kernel, resource", [
    ("h100", staged_matmul(256, 256, 64, stages=4, explicit=False), "shared memory per block"),
    ("a100", staged_matmul(128, 128, 64, stages=3, explicit=False), "shared memory per block"),
    ("mi300x", staged_matmul(64, 64, 64, stages=3, explicit=False), "shared memory per block"),
    ("h100", staged_matmul(16, 16, 16, warps=64), "threads per block"),
    ("h100", staged_matmul(256, 256, 8, warps=4, stages=1, explicit=False), "registers per thread"),
    ("cpu", staged_matmul(1024, 1024, 8, stages=1), "local memory per program"),
])
def test_budget_errors_name_the_target_the_resource_and_the_figures(name: str, kernel: Kernel,
                                                                   resource: str) -> None:
    with pytest.raises(BudgetError) as ex:
        check_budget(kernel, BUDGETS[name])
    e = ex.value
    assert e.resource == resource and e.needed > e.limit
    assert str(e).startswith(f"kernel @mm does not fit the {BUDGETS[name].name}: {resource} needs {e.needed}")


def test_small_schedules_fit_every_budget() -> None:
    k = staged_matmul(64, 64, 32, warps=4, stages=2)
    for b in BUDGETS.values():
        check_budget(k, b)
