"""Tile IR: the printer (FileCheck on the text `tessera lower --stage tile` shows) and the verifier
(one malformed kernel per rule, each rejected with a message naming the problem)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from filecheck_util import filecheck
from tile_kernels import (
    argmax_rows,
    elementwise_chain,
    layernorm_rows,
    matmul_epilogue,
    softmax_rows,
)

from tessera.dtypes import BF16, BOOL, F32, INT32, INT64
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import BlockType, Kernel, Op, Schedule, TileIRError, Value, make_op
from tessera.ir.tile.parser import parse_kernel
from tessera.ir.tile.printer import print_kernel
from tessera.ir.tile.verify import verify_kernel
from tessera.symbolic import Dim


def test_printer_softmax_single_block() -> None:
    filecheck(print_kernel(softmax_rows(4096, online=False, name="softmax_rows")), """
        CHECK: kernel @softmax_rows(%x: tensor<2d, f32> in, %y: tensor<2d, f32> out) grid=[M] schedule=Schedule(block=(1, 4096), vector=8, warps=4, stages=1) extents={M: x.0, N: x.1} {
        CHECK-NEXT:   %row = program_id {axis = 0} : int64
        CHECK-NEXT:   %c0 = const {value = 0, dtype = int64} : int64
        CHECK-NEXT:   %xb = load(%x, %row, %c0) {shape = [1, 4096], other = -inf} : block<[1, 4096], f32>
        CHECK:        %mx = reduce(%{{.*}}) {kind = "max", axis = 1} : block<[1, 1], f32>
        CHECK:        %e = exp(%{{.*}}) : block<[1, 4096], f32>
        CHECK-NEXT:   %s = reduce(%e) {kind = "sum", axis = 1} : block<[1, 1], f32>
        CHECK:        store(%y, %row, %c0, %yb)
        CHECK-NEXT: }
    """)


def test_printer_for_with_carried_blocks() -> None:
    filecheck(print_kernel(softmax_rows(64, online=True)), """
        CHECK: %m0 = full {shape = [1, 1], value = -inf, dtype = f32} : block<[1, 1], f32>
        CHECK: %[[M:[a-z_0-9]+]], %[[S:[a-z_0-9]+]] = for %j = %c0 to %n step %bn iter_args(%m = %m0, %s = %s0) : block<[1, 1], f32>, block<[1, 1], f32> {
        CHECK:   %xb = load(%x, %row, %j) {shape = [1, 64], other = -inf}
        CHECK:   yield(%m_new, %s_new)
        CHECK-NEXT: }
        CHECK: for %j_1 = %c0 to %n step %bn {
        CHECK:   sub(%{{.*}}, %[[M]])
        CHECK:   div(%{{.*}}, %[[S]])
    """)


def test_printer_matmul_grid_and_dot() -> None:
    filecheck(print_kernel(matmul_epilogue((64, 32), 16)), """
        CHECK: grid=[(M + 63)//64, (N + 31)//32] schedule=Schedule(block=(64, 32), k=16, vector=8, warps=4, stages=1) extents={M: x.0, K: x.1, N: w.1}
        CHECK: %acc_next = dot(%a, %wb, %acc) : block<[64, 32], f32>
        CHECK: %bb = load(%bias, %c0) {shape = [32], other = 0.0} : block<[32], f32>
        CHECK: broadcast(%bb) {shape = [1, 32]} : block<[1, 32], f32>
        CHECK: %g = gelu(%h) {approximate = "none"} : block<[64, 32], f32>
    """)


def test_printer_is_deterministic_and_names_are_unique() -> None:
    k = layernorm_rows(128, rows=4)
    text = print_kernel(k)
    assert text == print_kernel(k)
    defined = [line.split(" = ")[0].strip() for line in text.splitlines() if " = " in line and
               line.strip().startswith("%")]
    names = [n for d in defined for n in d.split(", ")]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("make", [lambda: elementwise_chain(), lambda: softmax_rows(64, True),
                                  lambda: layernorm_rows(64, rows=2), lambda: matmul_epilogue((32, 32), 8),
                                  lambda: matmul_epilogue((16, 16), 8, transpose_b_block=True),
                                  lambda: argmax_rows(32)])
def test_built_kernels_verify(make: Callable[[], Kernel]) -> None:
    verify_kernel(make())


# ---------------------------------------------------------------- verifier rejections


def _kernel(body: Callable[[TileBuilder, Value, Value], None], block: tuple[int, ...] = (4, 8)) -> Kernel:
    b = TileBuilder("bad", Schedule(block=block))
    x = b.param("x", 2, F32, "in")
    y = b.param("y", 2, F32, "out")
    m = b.extent("M", x, 0)
    b.extent("N", x, 1)
    b.grid(cdiv(m, 4))
    body(b, x, y)
    return b.build()


def _raw(b: TileBuilder, op: Op) -> None:
    b.body.ops.append(op)


def _expect(kernel: Kernel, message: str) -> None:
    with pytest.raises(TileIRError, match=message):
        verify_kernel(kernel)


def test_rejects_wrong_number_of_start_indices() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        _raw(b, Op("load", (x, c), (("shape", (4, 8)), ("other", 0.0)), (Value(BlockType((4, 8), F32)),)))

    _expect(_kernel(body), r"tensor<2d, f32> takes 2 start indices, got 1")


def test_rejects_non_index_start() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT32)
        b.load(x, c, c, shape=(4, 8))

    _expect(_kernel(body), "start index must be an int64 scalar")


def test_rejects_non_positive_block_shape() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        b.load(x, c, c, shape=(0, 8))

    _expect(_kernel(body), r"block shape \[0, 8\] must be static and positive")


def test_rejects_dot_shape_mismatch() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        a = b.load(x, c, c, shape=(4, 8))
        w = b.load(x, c, c, shape=(4, 8))
        acc = b.full((4, 8), 0.0, F32)
        b.dot(a, w, acc)

    _expect(_kernel(body), r"\[4, 8\] x \[4, 8\] \+ \[4, 8\] are not \[M,K\] x \[K,N\] \+ \[M,N\]")


def test_rejects_reduce_axis_out_of_range() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        xb = b.load(x, c, c, shape=(4, 8))
        _raw(b, Op("reduce", (xb,), (("kind", "sum"), ("axis", 2)), (Value(BlockType((4, 8), F32)),)))

    _expect(_kernel(body), "axis 2 is out of range for rank 2")


def test_rejects_unknown_reduce_kind() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        b.reduce(b.load(x, c, c, shape=(4, 8)), "median", 1)

    _expect(_kernel(body), "kind 'median' is not one of")


def test_rejects_use_before_definition() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        later = Value(BlockType((4, 8), F32), "later")
        _raw(b, make_op("exp", [later]))
        _raw(b, Op("full", (), (("shape", (4, 8)), ("value", 0.0), ("dtype", F32)), (later,)))

    _expect(_kernel(body), "operand %later is used before it is defined")


def test_rejects_double_definition() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        op = make_op("full", [], shape=(4, 8), value=0.0, dtype=F32)
        _raw(b, op)
        _raw(b, op)

    _expect(_kernel(body), "is defined twice")


def test_rejects_store_into_input_and_dtype_mismatch() -> None:
    def into_input(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        b.store(x, c, c, value=b.full((4, 8), 1.0, F32))

    def wrong_dtype(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        b.store(y, c, c, value=b.full((4, 8), 1.0, BF16))

    _expect(_kernel(into_input), "whose role is 'in'")
    _expect(_kernel(wrong_dtype), "dtypes differ")


def test_rejects_mixed_dtypes_in_elementwise() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        b.op("add", b.full((4, 8), 1.0, F32), b.full((4, 8), 1.0, BF16))

    _expect(_kernel(body), r"operands have dtypes \['bf16', 'f32'\]")


def test_rejects_bad_result_type() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        f = b.full((4, 8), 1.0, F32)
        _raw(b, Op("exp", (f,), (), (Value(BlockType((4, 8), BF16)),)))

    _expect(_kernel(body), "result types")


def test_rejects_yield_type_mismatch_and_missing_yield() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        f = b.full((4, 8), 1.0, F32)
        with b.for_(c, c, b.const(1, INT64), [f]) as loop:
            b.yield_(loop, [b.full((4, 4), 0.0, F32)])

    _expect(_kernel(body), r"yields \['block<\[4, 4\], f32>'\], but the loop carries")


def test_rejects_values_of_a_loop_body_used_after_it() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        with b.for_(c, c, b.const(1, INT64)):
            inner = b.full((4, 8), 1.0, F32, hint="inner")
        b.op("exp", inner)

    _expect(_kernel(body), "operand %inner is used before it is defined")


def test_rejects_unknown_grid_symbol_and_bad_axes() -> None:
    b = TileBuilder("bad", Schedule(block=(4,)))
    x = b.param("x", 1, F32, "in")
    b.extent("N", x, 0)
    b.grid(cdiv(Dim.sym("P"), 4))
    _expect(b.build(), r"grid dim .* uses symbols \['P'\]")

    def body(b: TileBuilder, x: Value, y: Value) -> None:
        b.program_id(1)

    _expect(_kernel(body), "axis 1 is out of range for rank 1")


def test_rejects_bad_broadcast_and_transpose() -> None:
    def bcast(b: TileBuilder, x: Value, y: Value) -> None:
        _raw(b, Op("broadcast", (b.full((4, 8), 1.0, F32),), (("shape", (4, 4)),),
                   (Value(BlockType((4, 4), F32)),)))

    def perm(b: TileBuilder, x: Value, y: Value) -> None:
        _raw(b, Op("transpose", (b.full((4, 8), 1.0, F32),), (("perm", (0, 0)),),
                   (Value(BlockType((4, 4), F32)),)))

    _expect(_kernel(bcast), r"cannot broadcast block<\[4, 8\], f32> to \[4, 4\]")
    _expect(_kernel(perm), "is not a permutation")


def test_broadcast_may_add_leading_axes() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        v = b.full((8,), 1.0, F32)
        b.op("broadcast", v, shape=(4, 8))

    verify_kernel(_kernel(body))


def test_rejects_select_on_non_bool() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        f = b.full((4, 8), 1.0, F32)
        b.op("select", f, f, f)

    _expect(_kernel(body), "the condition must be bool")

    def ok(b: TileBuilder, x: Value, y: Value) -> None:
        f = b.full((4, 8), 1.0, F32)
        b.op("select", b.full((4, 8), 1.0, BOOL), f, b.const(-math.inf, F32))

    verify_kernel(_kernel(ok))


# ---------------------------------------------------------------- the parser


@pytest.mark.parametrize("make", [lambda: elementwise_chain(BF16, F32), lambda: softmax_rows(64, True),
                                  lambda: layernorm_rows(64, rows=2), lambda: matmul_epilogue((32, 32), 8),
                                  lambda: matmul_epilogue((16, 16), 8, transpose_b_block=True),
                                  lambda: argmax_rows(32)])
def test_print_parse_print_round_trips(make: Callable[[], Kernel]) -> None:
    text = print_kernel(make())
    parsed = parse_kernel(text)
    verify_kernel(parsed)
    assert print_kernel(parsed) == text


def test_parse_errors_name_the_line() -> None:
    text = print_kernel(softmax_rows(64, False))
    with pytest.raises(TileIRError, match=r"line 3: unknown tile op 'frobnicate'"):
        parse_kernel(text.replace("const {", "frobnicate {", 1))
    with pytest.raises(TileIRError, match=r"line 4: value %nope is not defined"):
        parse_kernel(text.replace("load(%x, %row", "load(%x, %nope", 1))
    with pytest.raises(TileIRError, match=r"printed types .* differ from the inferred"):
        parse_kernel(text.replace(": block<[1, 64], f32>", ": block<[1, 32], f32>", 1))


def test_rejects_non_positive_constant_step() -> None:
    def body(b: TileBuilder, x: Value, y: Value) -> None:
        c = b.const(0, INT64)
        with b.for_(c, b.const(10, INT64), c):
            pass

    _expect(_kernel(body), "step 0 must be positive")
