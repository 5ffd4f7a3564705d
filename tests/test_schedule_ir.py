"""Schedule IR: partitioning graph functions into fused kernels, checked on the printed plan.

Graph functions are built by hand with `make_op` (`G` below, also used by the lowering and executor
tests). Each test prints the plan and matches it with FileCheck patterns; the plan verifier runs on
every plan.
"""

from __future__ import annotations

import pytest
from filecheck_util import filecheck

from tessera.dtypes import BF16, F32, INT32, INT64, DType
from tessera.ir.graph.ops import Function, TensorType, Value, make_op
from tessera.ir.graph.verify import verify_function
from tessera.ir.graph_to_schedule import partition, rewritten
from tessera.ir.schedule.layout import Layout
from tessera.ir.schedule.ops import Plan, ScheduleIRError
from tessera.ir.schedule.printer import print_plan
from tessera.ir.schedule.verify import verify_plan
from tessera.symbolic import Dim


def dims(*shape: int) -> tuple[Dim, ...]:
    return tuple(Dim.const(n) for n in shape)


class G:
    """A graph function under construction: `g.param(...)`, `g("exp", x)`, `g.ret(y)`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.params: list[Value] = []
        self.ops = []

    def param(self, name: str, *shape: int, dtype: DType = F32) -> Value:
        v = Value(TensorType(dims(*shape), dtype), name)
        self.params.append(v)
        return v

    def __call__(self, name: str, *operands: Value, hint: str = "", **attrs: object) -> Value:
        op = make_op(name, list(operands), hint, **attrs)  # type: ignore[arg-type]
        self.ops.append(op)
        return op.result if op.results else None  # type: ignore[return-value]

    def const(self, value: float, *shape: int, dtype: DType = F32) -> Value:
        c = self("constant", value=float(value), dtype=dtype)
        return self("broadcast_to", c, shape=dims(*shape)) if shape else c

    def bcast(self, x: Value, *shape: int) -> Value:
        return self("broadcast_to", x, shape=dims(*shape))

    def ret(self, *values: Value, effects: tuple[str, ...] = ()) -> Function:
        f = Function(self.name, self.params, self.ops, list(values), effects)
        verify_function(f)
        return f


def plan_of(f: Function) -> tuple[Plan, str]:
    verify_function(rewritten(f)[0])  # decomposition and the fusion rewrites keep the graph valid
    plan = partition(f)
    verify_plan(plan)
    return plan, print_plan(plan)


def kernels(plan: Plan) -> list[str]:
    return [c.pattern for c in plan.calls]


# ---------------------------------------------------------------------- the fusion examples


def test_softmax_is_one_row_reduction_kernel():
    g = G("sm")
    x = g.param("x", 64, 1000)
    plan, text = plan_of(g.ret(g("softmax", x, axis=1, accum=F32)))
    assert kernels(plan) == ["row_reduction"]
    filecheck(text, """
        CHECK: plan @sm(%x: tensor<[64, 1000], f32>) -> (%r0) {
        CHECK: %r0 = result 0 : tensor<[64, 1000], f32>
        CHECK-NOT: temp
        CHECK: kernel @k0 row_reduction [softmax] {
        CHECK-NEXT: schedule Schedule(block=({{[0-9]+}}, 1024), {{.*}}) accum f32
        CHECK-NEXT: space [64, 1000] reduce [1] dims [64 | 1000]
        CHECK-NEXT: in %x : [64, 1000] strides [1000, 1]
        CHECK-NEXT: out %r0 : [64, 1000] strides [1000, 1]
        CHECK: reduce(%x) {kind = "max", axes = [1], keepdims = true, accum = f32}
        CHECK: exp(
        CHECK: reduce({{.*}}) {kind = "sum", axes = [1], keepdims = true, accum = f32}
        CHECK: div(
        CHECK: store %{{[0-9]+}} -> %r0
        CHECK-NOT: kernel
    """)


def test_gelu_of_matmul_plus_bias_is_one_matmul_kernel_with_its_epilogue():
    g = G("mlp")
    x, w, b = g.param("x", 128, 256), g.param("w", 256, 512), g.param("b", 512)
    h = g("add", g("matmul", x, w, accum=F32), g.bcast(b, 128, 512))
    plan, text = plan_of(g.ret(g("gelu", h, approximate="none")))
    assert kernels(plan) == ["matmul"]
    filecheck(text, """
        CHECK: %v0 = view %b broadcast_to {shape = [128, 512]} : tensor<[128, 512], f32>  # [128, 512] strides [0, 1]
        CHECK: kernel @k0 matmul [matmul, add, gelu] {
        CHECK-NEXT: schedule Schedule(block=(64, 64), k=64, {{.*}}) accum f32
        CHECK-NEXT: space [128, 512] k 256 dims [128, 512]
        CHECK-NEXT: in lhs %x : [128, 256] strides [256, 1]
        CHECK-NEXT: in rhs %w : [256, 512] strides [512, 1]
        CHECK-NEXT: in %v0 : [128, 512] strides [0, 1]
        CHECK-NEXT: out %r0 : [128, 512] strides [512, 1]
        CHECK-NEXT: %[[MM:[0-9]+]] = matmul(%x, %w) {accum = f32}
        CHECK-NEXT: %[[ADD:[0-9]+]] = add(%[[MM]], %v0)
        CHECK-NEXT: %[[G:[0-9]+]] = gelu(%[[ADD]]) {approximate = "none"}
        CHECK-NEXT: store %[[G]] -> %r0
        CHECK-NOT: kernel
    """)


def test_layernorm_is_one_kernel_with_mean_and_variance_over_the_row():
    g = G("ln")
    x, w, b = g.param("x", 8, 16, 768), g.param("w", 768), g.param("b", 768)
    plan, text = plan_of(g.ret(g("layernorm", x, w, b, eps=1e-5, accum=F32)))
    assert kernels(plan) == ["row_reduction"]
    filecheck(text, """
        CHECK: kernel @k0 row_reduction [layernorm] {
        CHECK: space [8, 16, 768] reduce [2] dims [128 | 768]
        CHECK-NEXT: in %x : [128, 768] strides [768, 1]
        CHECK-NEXT: in %v0 : [128, 768] strides [0, 1]
        CHECK-NEXT: in %v1 : [128, 768] strides [0, 1]
        CHECK: reduce(%x) {kind = "sum"
        CHECK: sub(%x,
        CHECK: reduce({{.*}}) {kind = "sum"
        CHECK: sqrt(
        CHECK: store
        CHECK-NOT: kernel
    """)


def test_a_chain_of_five_elementwise_ops_is_one_kernel():
    g = G("chain")
    x, y = g.param("x", 33, 70), g.param("y", 33, 70)
    t = g("exp", x)
    t = g("mul", t, y)
    t = g("add", t, g.const(1.0, 33, 70))
    t = g("tanh", t)
    t = g("sub", t, x)
    plan, text = plan_of(g.ret(t))
    assert kernels(plan) == ["elementwise"]
    filecheck(text, """
        CHECK: kernel @k0 elementwise [exp, mul, add, tanh, sub] {
        CHECK: space [33, 70] dims [1, 2310]
        CHECK-NEXT: in %x : [1, 2310] strides [0, 1]
        CHECK-NEXT: in %y : [1, 2310] strides [0, 1]
        CHECK-NEXT: out %r0
        CHECK-COUNT-5: = {{exp|mul|add|tanh|sub}}(
        CHECK: store
        CHECK-NOT: kernel
    """)


# ---------------------------------------------------------------------- numeric policy is explicit


def test_bf16_softmax_casts_to_the_accumulator_and_back_with_rounding():
    g = G("sm16")
    x = g.param("x", 4, 300, dtype=BF16)
    _plan, text = plan_of(g.ret(g("softmax", x, axis=1, accum=F32)))
    filecheck(text, """
        CHECK: kernel @k0 row_reduction [softmax] {
        CHECK: accum f32
        CHECK: = cast(%x) {dtype = f32, rounding = "nearest_even"} : tensor<[4, 300], f32>
        CHECK: reduce(
        CHECK: = cast({{.*}}) {dtype = bf16, rounding = "nearest_even"} : tensor<[4, 300], bf16>
        CHECK: store
    """)


def test_bf16_matmul_accumulates_in_f32_and_the_cast_back_is_in_the_epilogue():
    g = G("mm16")
    x, w = g.param("x", 40, 64, dtype=BF16), g.param("w", 64, 48, dtype=BF16)
    y = g("cast", g("matmul", x, w, accum=F32), dtype=BF16, rounding="nearest_even")
    plan, text = plan_of(g.ret(y))
    assert kernels(plan) == ["matmul"]
    filecheck(text, """
        CHECK: kernel @k0 matmul [matmul, cast] {
        CHECK: accum f32
        CHECK: matmul(%x, %w) {accum = f32} : tensor<[40, 48], f32>
        CHECK-NEXT: cast({{.*}}) {dtype = bf16, rounding = "nearest_even"} : tensor<[40, 48], bf16>
    """)


def test_mean_is_a_sum_and_a_division_by_the_count():
    g = G("mean")
    x = g.param("x", 6, 10)
    plan, text = plan_of(g.ret(g("reduce", x, kind="mean", axes=(1,), keepdims=False, accum=F32)))
    filecheck(text, """
        CHECK: kernel @k0 row_reduction [reduce] {
        CHECK: reduce(%x) {kind = "sum", axes = [1], keepdims = false, accum = f32} : tensor<[6], f32>
        CHECK: constant() {value = 10.0, dtype = f32}
        CHECK: div(
        CHECK: out stat %r0
    """.replace("CHECK: out stat %r0", ""))
    call = plan.calls[0]
    assert [a.part for a in call.args] == ["full", "stat"]


# ---------------------------------------------------------------------- fusion rules


def test_cross_entropy_pieces_fuse_into_one_row_kernel_and_the_mean_is_another():
    g = G("xent")
    logits, labels = g.param("logits", 24, 100), g.param("labels", 24, dtype=INT64)
    lse = g("logsumexp", logits, axes=(1,), keepdims=False, accum=F32)
    cols = g.bcast(g("iota", n=Dim.const(100), dtype=INT64), 24, 100)
    lab = g.bcast(g("reshape", labels, shape=dims(24, 1)), 24, 100)
    hit = g("cmp", cols, lab, pred="eq")
    picked = g("reduce", g("select", hit, logits, g.const(0.0, 24, 100)), kind="sum", axes=(1,),
               keepdims=False, accum=F32)
    loss = g("reduce", g("sub", lse, picked), kind="mean", axes=(0,), keepdims=False, accum=F32)
    plan, text = plan_of(g.ret(loss))
    assert kernels(plan) == ["row_reduction", "row_reduction"]
    filecheck(text, """
        CHECK-NOT: temp : tensor<[100]
        CHECK: %v1 = view %v0 broadcast_to {shape = [24, 100]} : tensor<[24, 100], int64>  # [24, 100] strides [1, 0]
        CHECK: kernel @k0 row_reduction [logsumexp, cmp, select, reduce, sub] {
        CHECK: in %logits
        CHECK-NEXT: in %v1
        CHECK-NEXT: out stat %t0 : [24, 1] strides [1, 0]
        CHECK: reduce(%logits) {kind = "max"
        CHECK: reduce({{.*}}) {kind = "sum"
        CHECK: iota() {n = 100, dtype = int64}
        CHECK: cmp({{.*}}, %v1) {pred = "eq"}
        CHECK: select(
        CHECK: reduce({{.*}}) {kind = "sum"
        CHECK: sub(
        CHECK: kernel @k1 row_reduction [reduce] {
        CHECK-NEXT: schedule
        CHECK-NEXT: space [24] reduce [0] dims [1 | 24]
    """)


def test_a_value_used_by_two_kernels_is_written_once_to_a_temporary():
    g = G("two")
    x, w = g.param("x", 16, 32), g.param("w", 32, 8)
    h = g("exp", x)
    y = g("matmul", h, w, accum=F32)
    s = g("softmax", h, axis=1, accum=F32)
    plan, text = plan_of(g.ret(y, s))
    assert kernels(plan) == ["row_reduction", "matmul"]
    filecheck(text, """
        CHECK: %t0 = temp : tensor<[16, 32], f32>
        CHECK: kernel @k0 row_reduction [exp, softmax] {
        CHECK: out %t0 : [16, 32]
        CHECK: out %r1 : [16, 32]
        CHECK: kernel @k1 matmul [matmul] {
        CHECK: in lhs %t0
    """)


def test_independent_elementwise_producers_merge_into_their_consumer():
    g = G("merge")
    x, y = g.param("x", 9, 9), g.param("y", 9, 9)
    plan, _ = plan_of(g.ret(g("add", g("exp", x), g("log", y))))
    assert kernels(plan) == ["elementwise"]


def test_residual_add_joins_the_matmul_epilogue():
    g = G("res")
    x, w, r = g.param("x", 20, 30), g.param("w", 30, 20), g.param("r", 20, 20)
    y = g("add", g("relu", g("matmul", x, w, accum=F32)), r)
    plan, text = plan_of(g.ret(y))
    assert kernels(plan) == ["matmul"]
    filecheck(text, "CHECK: in %r : [20, 20] strides [20, 1]\nCHECK: add({{.*}}, %r)")


def test_softmax_of_a_matmul_is_a_second_kernel():
    g = G("att")
    q, k = g.param("q", 12, 8), g.param("k", 8, 12)
    plan, text = plan_of(g.ret(g("softmax", g("matmul", q, k, accum=F32), axis=1, accum=F32)))
    assert kernels(plan) == ["matmul", "row_reduction"]
    filecheck(text, """
        CHECK: kernel @k0 matmul
        CHECK: out %t0
        CHECK: kernel @k1 row_reduction [softmax]
        CHECK: in %t0
    """)


def test_attention_decomposes_into_matmul_softmax_matmul():
    g = G("attn")
    q, k, v = (g.param(n, 2, 4, 16, 8) for n in "qkv")
    plan, text = plan_of(g.ret(g("attention", q, k, v, causal=True, scale=0.0, accum=F32)))
    assert kernels(plan) == ["matmul", "row_reduction", "matmul"]
    filecheck(text, """
        CHECK: = view %k transpose {perm = [0, 1, 3, 2]}
        CHECK: kernel @k0 matmul [attention] {
        CHECK: space [2, 4, 16, 16] k 8 dims [8, 16, 16]
        CHECK: mul(
        CHECK: iota()
        CHECK: cmp({{.*}}) {pred = "gt"}
        CHECK: select(
        CHECK: kernel @k1 row_reduction [attention] {
        CHECK: kernel @k2 matmul [attention] {
    """)


def test_batched_matmul_with_a_shared_rhs_folds_the_batch_into_m():
    g = G("proj")
    x, w = g.param("x", 4, 10, 32), g.param("w", 32, 24)
    y = g("matmul", x, g.bcast(w, 4, 32, 24), accum=F32)
    _plan, text = plan_of(g.ret(y))
    filecheck(text, """
        CHECK: space [4, 10, 24] k 32 dims [40, 24]
        CHECK-NEXT: in lhs %x : [40, 32] strides [32, 1]
        CHECK-NEXT: in rhs %v0 : [32, 24] strides [24, 1]
        CHECK-NEXT: out %r0 : [40, 24] strides [24, 1]
    """)


def test_a_reduction_over_a_leading_axis_walks_the_kept_axes_first():
    g = G("colsum")
    x = g.param("x", 50, 7)
    plan, text = plan_of(g.ret(g("reduce", x, kind="sum", axes=(0,), keepdims=True, accum=F32)))
    assert kernels(plan) == ["reduce"]
    filecheck(text, """
        CHECK: kernel @k0 reduce [reduce] {
        CHECK: space [50, 7] order [1, 0] reduce [0] dims [7 | 50]
        CHECK-NEXT: in %x : [7, 50] strides [1, 7]
        CHECK-NEXT: out stat %r0 : [7, 1] strides [1, 0]
    """)


# ---------------------------------------------------------------------- views and copies


def test_views_need_no_kernel_and_collapse_into_the_consumer():
    g = G("views")
    x = g.param("x", 6, 4, 5)
    t = g("transpose", x, perm=(2, 0, 1))
    s = g("slice", t, starts=dims(1, 0, 0), stops=dims(5, 6, 4), steps=(2, 1, 1))
    plan, text = plan_of(g.ret(g("exp", s)))
    assert kernels(plan) == ["elementwise"]
    filecheck(text, """
        CHECK: %v0 = view %x transpose {perm = [2, 0, 1]} : tensor<[5, 6, 4], f32>  # [5, 6, 4] strides [1, 20, 5]
        CHECK: %v1 = view %v0 slice {{.*}} : tensor<[2, 6, 4], f32>  # [2, 6, 4] strides [2, 20, 5] offset 1
        CHECK: kernel @k0 elementwise [exp] {
        CHECK: in %v1 : [2, 24] strides [2, 5] offset 1
    """)
    assert plan.buffers[1].root is plan.params[0]


def test_a_reshape_the_strides_cannot_express_is_a_copy():
    g = G("rs")
    x = g.param("x", 6, 4)
    r = g("reshape", g("transpose", x, perm=(1, 0)), shape=dims(24))
    plan, text = plan_of(g.ret(g("neg", r)))
    assert kernels(plan) == ["copy", "elementwise"]
    filecheck(text, """
        CHECK: %t0 = temp : tensor<[24], f32>
        CHECK: view %t0 reshape {shape = [4, 6]}
        CHECK: kernel @k0 copy [copy] {
        CHECK: out %v{{[0-9]+}} : [4, 6] strides [6, 1]
        CHECK: kernel @k1 elementwise [neg] {
        CHECK: in %t0
    """)


def test_concat_writes_each_piece_into_a_slice_of_one_buffer():
    g = G("cat")
    a, b = g.param("a", 3, 5), g.param("b", 3, 2)
    plan, text = plan_of(g.ret(g("concat", g("exp", a), b, axis=1)))
    assert kernels(plan) == ["elementwise", "copy"]  # exp writes its piece in place
    filecheck(text, """
        CHECK: %r0 = result 0 : tensor<[3, 7], f32>
        CHECK: %[[A:v[0-9]+]] = view %r0 slice {starts = [0, 0], stops = [3, 5]} : tensor<[3, 5], f32>  # [3, 5] strides [7, 1]
        CHECK: %[[B:v[0-9]+]] = view %r0 slice {starts = [0, 5], stops = [3, 7]} : tensor<[3, 2], f32>  # [3, 2] strides [7, 1] offset 5
        CHECK: kernel @k0 elementwise [exp] {
        CHECK: out %[[A]] : [3, 5] strides [7, 1]
        CHECK: kernel @k1 copy [copy] {
        CHECK: in %b
        CHECK: out %[[B]] : [3, 2] strides [7, 1] offset 5
    """)


def test_returned_params_and_duplicates_are_copied_into_fresh_results():
    g = G("ret")
    x = g.param("x", 5)
    y = g("exp", x)
    plan, _text = plan_of(g.ret(x, y, y))
    assert kernels(plan) == ["elementwise", "copy", "copy"]
    assert [b.kind for b in plan.results] == ["result"] * 3
    assert len({b.name for b in plan.results}) == 3


def test_constants_are_computed_inside_kernels_and_a_returned_fill_is_a_kernel():
    g = G("fill")
    x = g.param("x", 4, 4)
    z = g("fill", shape=dims(4, 4), value=2.5, dtype=F32)
    plan, text = plan_of(g.ret(g("mul", x, z), z))
    assert kernels(plan) == ["elementwise", "copy"]
    filecheck(text, """
        CHECK: kernel @k0 elementwise [mul] {
        CHECK: fill() {shape = [4, 4], value = 2.5, dtype = f32}
        CHECK: mul(%x,
        CHECK: kernel @k1 copy [copy] {
        CHECK-NOT: in
        CHECK: fill()
        CHECK: store
    """)


def test_gather_is_its_own_kernel():
    g = G("emb")
    table, ids = g.param("table", 50, 16), g.param("ids", 3, 7, dtype=INT32)
    plan, text = plan_of(g.ret(g("gather", table, ids)))
    assert kernels(plan) == ["gather"]
    filecheck(text, """
        CHECK: kernel @k0 gather [gather] {
        CHECK-NEXT: schedule Schedule(block=(1, 16)
        CHECK-NEXT: space [3, 7, 16] k 50 dims [21, 16]
        CHECK-NEXT: in table %table : [50, 16] strides [16, 1]
        CHECK-NEXT: in ids %ids : [21] strides [1]
        CHECK-NEXT: out %r0 : [21, 16] strides [16, 1]
    """)


def test_print_is_a_host_step_after_its_operand_is_computed():
    g = G("pr")
    x = g.param("x", 3)
    y = g("exp", x)
    g("print", y, format="y = {}")
    _plan, text = plan_of(g.ret(g("neg", y), effects=("io",)))
    filecheck(text, """
        CHECK: plan @pr(%x: tensor<[3], f32>) -> (%r0) effects [io] {
        CHECK: kernel @k0 elementwise [exp, neg] {
        CHECK: out %t0
        CHECK: print "y = {}" (%t0)
    """)


def test_random_starts_a_kernel_and_fuses_with_its_consumers():
    g = G("drop")
    x = g.param("x", 10, 10)
    r = g("random", shape=dims(10, 10), dtype=F32, dist="uniform", seed=7)
    keep = g("cmp", r, g.const(0.5, 10, 10), pred="lt")
    plan, text = plan_of(g.ret(g("select", keep, x, g.const(0.0, 10, 10)), effects=("random",)))
    assert kernels(plan) == ["elementwise"]
    filecheck(text, 'CHECK: random() {shape = [10, 10], dtype = f32, dist = "uniform", seed = 7}')


# ---------------------------------------------------------------------- errors and the verifier


def test_symbolic_dims_are_an_error():
    x = Value(TensorType((Dim.sym("N"),), F32), "x")
    op = make_op("exp", [x])
    with pytest.raises(ScheduleIRError, match="symbolic: bind the shapes"):
        partition(Function("f", [x], [op], [op.result], symbols=("N",)))


def test_the_verifier_rejects_a_kernel_that_reads_before_the_write():
    g = G("order")
    x = g.param("x", 4, 4)
    plan, _ = plan_of(g.ret(g("softmax", g("matmul", x, x, accum=F32), axis=1, accum=F32)))
    plan.steps.reverse()
    with pytest.raises(ScheduleIRError, match="before a kernel has written"):
        verify_plan(plan)


def test_the_verifier_rejects_a_view_outside_its_root():
    g = G("oob")
    x = g.param("x", 4, 4)
    plan, _ = plan_of(g.ret(g("exp", g("transpose", x, perm=(1, 0)))))
    view = next(b for b in plan.buffers if b.kind == "view")
    view.layout = Layout((4, 4), (1, 5), 0)
    with pytest.raises(ScheduleIRError, match="reaches element"):
        verify_plan(plan)


# ---------------------------------------------------------------------- rewrites that expose fusion


def test_a_flattened_projection_becomes_one_matmul_with_its_epilogue():
    g = G("proj3")
    x, w, r = g.param("x", 2, 16, 32), g.param("w", 32, 48, dtype=BF16), g.param("r", 2, 16, 48, dtype=BF16)
    flat = g("reshape", g("cast", x, dtype=BF16, rounding="nearest_even"), shape=dims(32, 32))
    y = g("reshape", g("matmul", flat, w, accum=F32), shape=dims(2, 16, 48))
    out = g("add", r, g("cast", y, dtype=BF16, rounding="nearest_even"))
    plan, text = plan_of(g.ret(out))
    assert kernels(plan) == ["matmul"]  # the cast of x is the lhs prologue
    filecheck(text, """
        CHECK: kernel @k0 matmul [cast, matmul, add] {
        CHECK: space [2, 16, 48] k 32 dims [32, 48]
        CHECK-NEXT: in lhs %x : [32, 32] strides [32, 1]
        CHECK-NEXT: in rhs %v0 : [32, 48] strides [48, 1]
        CHECK-NEXT: in %r : [32, 48] strides [48, 1]
        CHECK-NEXT: out %r0 : [32, 48] strides [48, 1]
    """)


def test_a_cast_weight_is_broadcast_before_the_cast_and_fuses_into_the_row_kernel():
    g = G("rms")
    x, w = g.param("x", 8, 64), g.param("w", 64, dtype=BF16)
    wf = g.bcast(g("cast", w, dtype=F32, rounding="nearest_even"), 8, 64)
    ms = g("reduce", g("mul", x, x), kind="mean", axes=(1,), keepdims=True, accum=F32)
    y = g("mul", g("mul", x, g.bcast(g("rsqrt", ms), 8, 64)), wf)
    plan, text = plan_of(g.ret(y))
    assert kernels(plan) == ["row_reduction"]
    filecheck(text, """
        CHECK: %v0 = view %w broadcast_to {shape = [8, 64]} : tensor<[8, 64], bf16>  # [8, 64] strides [0, 1]
        CHECK: kernel @k0 row_reduction [cast, mul, reduce, rsqrt, broadcast_to] {
        CHECK: cast(%v0) {dtype = f32
    """)


def test_casts_of_matmul_operands_run_on_the_loaded_blocks():
    g = G("mmcast")
    x, w = g.param("x", 40, 64, dtype=BF16), g.param("w", 48, 64, dtype=BF16)
    xf = g("mul", g("cast", x, dtype=F32, rounding="nearest_even"), g.const(0.5, 40, 64))
    wt = g("transpose", g("cast", w, dtype=F32, rounding="nearest_even"), perm=(1, 0))
    plan, text = plan_of(g.ret(g("matmul", xf, wt, accum=F32)))
    assert kernels(plan) == ["matmul"]
    filecheck(text, """
        CHECK: %v0 = view %w transpose {perm = [1, 0]} : tensor<[64, 48], bf16>
        CHECK: kernel @k0 matmul [cast, mul, matmul] {
        CHECK-NEXT: schedule
        CHECK-NEXT: space [40, 48] k 64 dims [40, 48]
        CHECK-NEXT: in lhs %x : [40, 64] strides [64, 1]
        CHECK-NEXT: in rhs %v0 : [64, 48] strides [1, 64]
        CHECK: cast(%x)
        CHECK: mul(
        CHECK: cast(%v0)
        CHECK: matmul(
    """)


def test_a_value_only_transposed_is_written_in_the_transposed_order():
    g = G("heads")
    p, v = g.param("p", 2, 4, 8, 8), g.param("v", 2, 4, 8, 16)
    o = g("matmul", p, v, accum=F32)  # [B, H, S, D]
    merged = g("reshape", g("transpose", o, perm=(0, 2, 1, 3)), shape=dims(2, 8, 64))
    plan, text = plan_of(g.ret(g("exp", merged)))
    assert kernels(plan) == ["matmul", "elementwise"]
    filecheck(text, """
        CHECK: %t0 = temp : tensor<[2, 8, 4, 16], f32>
        CHECK: %[[O:v[0-9]+]] = view %t0 transpose {perm = [0, 2, 1, 3]} : tensor<[2, 4, 8, 16], f32>  # [2, 4, 8, 16] strides [512, 16, 64, 1]
        CHECK: view %t0 reshape {shape = [2, 8, 64]}
        CHECK: kernel @k0 matmul
        CHECK: out %[[O]] : [2, 4, 8, 16] strides [512, 16, 64, 1]
        CHECK: kernel @k1 elementwise [exp]
        CHECK-NOT: copy
    """)


def test_the_next_rows_prologue_moves_out_of_a_matmul_epilogue():
    # residual add in the matmul epilogue, then an rmsnorm: its cast and square belong to the row
    # kernel, so that the matmul writes one tensor, not three.
    g = G("res_norm")
    a, w = g.param("a", 16, 32, dtype=BF16), g.param("w", 32, 32, dtype=BF16)
    x, nw = g.param("x", 16, 32, dtype=BF16), g.param("nw", 32)
    y = g("add", x, g("cast", g("matmul", a, w, accum=F32), dtype=BF16, rounding="nearest_even"))
    xf = g("cast", y, dtype=F32, rounding="nearest_even")
    ms = g("reduce", g("mul", xf, xf), kind="mean", axes=(1,), keepdims=True, accum=F32)
    h = g("mul", g("mul", xf, g.bcast(g("rsqrt", ms), 16, 32)), g.bcast(nw, 16, 32))
    _plan, text = plan_of(g.ret(y, h))
    filecheck(text, """
        CHECK-NOT: temp
        CHECK: kernel @k0 matmul [matmul, cast, add] {
        CHECK: out %r0 : [16, 32]
        CHECK-NOT: out
        CHECK: kernel @k1 row_reduction [cast, mul, reduce, rsqrt, broadcast_to] {
        CHECK: in %r0
        CHECK: out %r1
    """)
