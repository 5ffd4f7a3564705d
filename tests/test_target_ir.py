"""Target IR: the printer and verifier, the Tile -> Target lowering (FileCheck on the printed Target
IR for the host's vector width and a narrower one) and the LLVM emitter (FileCheck on LLVM IR)."""

from __future__ import annotations

import pytest
from filecheck_util import filecheck
from tile_kernels import elementwise_chain, layernorm_rows, matmul_epilogue, softmax_rows

from tessera.codegen.llvm import assembly, emit_llvm
from tessera.ir.target.builder import Builder
from tessera.ir.target.ops import F32, I1, I64, Module, Op, Pointer, TargetIRError, Value, Vector
from tessera.ir.target.printer import print_function
from tessera.ir.target.verify import verify_function
from tessera.ir.tile_to_target import abi, lower_kernel
from tessera.runtime.cpu_features import cpu_target_info, host_cpu


def _saxpy() -> Value:
    """y[i] = a * x[i] + y[i] in chunks of 8 with a masked tail, summing x on the way."""
    b = Builder()
    x, y = Value(Pointer("global", F32), "x"), Value(Pointer("global", F32), "y")
    n, a = Value(I64, "n"), Value(F32, "a")
    with b.function("saxpy", [x, y, n, a]) as f:
        zero = b.const(0.0, Vector(8, F32))
        with b.for_(b.index(0), n, b.index(8), [zero], iv_hint="i") as loop:
            lane = b.op("add", b.splat(loop.iv, 8), b.lane_index(8))
            mask = b.cmp("slt", lane, b.splat(n, 8))
            xv = b.load(b.ptradd(x, loop.iv), Vector(8, F32), mask, zero)
            yv = b.load(b.ptradd(y, loop.iv), Vector(8, F32), mask, zero)
            b.store(b.ptradd(y, loop.iv), b.op("fma", b.splat(a, 8), xv, yv), mask)
            b.yield_([b.op("add", loop.args[0], xv)], loop)
        total = b.op("vreduce", loop.results[0], kind="add")
        with b.if_(b.cmp("ogt", total, b.const(0.0, F32)), [F32]) as br:
            b.yield_([total])
            b.else_(br)
            b.yield_([b.op("neg", total)])
    return f


def test_printer_shows_loops_masks_and_branches() -> None:
    f = _saxpy()
    verify_function(f)
    filecheck(print_function(f), """
        CHECK: func @saxpy(%x: ptr<global, f32>, %y: ptr<global, f32>, %n: i64, %a: f32) {
        CHECK:   %[[Z:c0.0]] = const {value = 0.0} : <8 x f32>
        CHECK:   %lanes = const {value = [0, 1, 2, 3, 4, 5, 6, 7]} : <8 x i64>
        CHECK:   %[[ACC:[0-9]+]] = for %i = %c0 to %n step %c8 iter_args(%[[ARG:c0.0_[0-9]+]] = %[[Z]]) -> (<8 x f32>) {
        CHECK:     %[[MASK:[0-9]+]] = cmp %{{[0-9]+}}, %{{[0-9]+}} {pred = "slt"} : <8 x i1>
        CHECK:     %[[XV:[0-9]+]] = load %{{[0-9]+}}, %[[MASK]], %[[Z]] : <8 x f32>
        CHECK:     store %{{[0-9]+}}, %{{[0-9]+}}, %[[MASK]]
        CHECK:     yield %{{[0-9]+}}
        CHECK-NEXT: }
        CHECK:   vreduce %[[ACC]] {kind = "add"} : f32
        CHECK:   if %{{[0-9]+}} -> (f32) {
        CHECK:   } else {
        CHECK:     neg
        CHECK:   return
    """)


def test_emitted_llvm_for_hand_built_function() -> None:
    filecheck(emit_llvm(Module([_saxpy()])), """
        CHECK: define void @"saxpy"(ptr %"x", ptr %"y", i64 %"n", float %"a")
        CHECK: phi i64
        CHECK: phi <8 x float>
        CHECK: call <8 x float> @"llvm.masked.load.v8f32.p0"
        CHECK: call <8 x float> @"llvm.fma.v8f32"
        CHECK: call void @"llvm.masked.store.v8f32.p0"
        CHECK: fadd contract <8 x float>
        CHECK: call reassoc float @"llvm.vector.reduce.fadd.v8f32"
        CHECK-NOT: nnan
        CHECK-NOT: ninf
    """)


# ---------------------------------------------------------------- verifier


def _fn(build) -> Value:
    b = Builder()
    p = Value(Pointer("global", F32), "p")
    n = Value(I64, "n")
    with b.function("f", [p, n]) as f:
        build(b, p, n)
    return f


def test_verifier_accepts_the_hand_built_function() -> None:
    verify_function(_saxpy())


def test_verifier_rejects_mixed_operand_types() -> None:
    f = _fn(lambda b, p, n: b.emit("add", [n, b.const(1.0, F32)], [I64]))
    with pytest.raises(TargetIRError, match="operand types i64, f32 differ"):
        verify_function(f)


def test_verifier_rejects_mask_of_wrong_width() -> None:
    def body(b: Builder, p: Value, n: Value) -> None:
        b.load(p, Vector(8, F32), b.const(True, Vector(4, I1)), b.const(0.0, Vector(8, F32)))

    with pytest.raises(TargetIRError, match=r"mask <4 x i1> does not fit <8 x f32>"):
        verify_function(_fn(body))


def test_verifier_rejects_loop_values_used_after_the_loop() -> None:
    def body(b: Builder, p: Value, n: Value) -> None:
        with b.for_(b.index(0), n, b.index(1)) as loop:
            inner = b.op("add", loop.iv, b.index(1), hint="inner")
        b.op("mul", inner, n)

    with pytest.raises(TargetIRError, match="operand %inner is not defined here"):
        verify_function(_fn(body))


def test_verifier_rejects_bad_cast_and_yield_types() -> None:
    with pytest.raises(TargetIRError, match="cast fptrunc from i64 to f32 is not valid"):
        verify_function(_fn(lambda b, p, n: b.emit("cast", [n], [F32], kind="fptrunc", to="f32")))

    def body(b: Builder, p: Value, n: Value) -> None:
        with b.for_(b.index(0), n, b.index(1), [b.index(0)]) as loop:
            b.yield_([b.const(1.0, F32)], loop)

    with pytest.raises(TargetIRError, match=r"yields \(f32\), expected \(i64\)"):
        verify_function(_fn(body))


def test_verifier_rejects_loads_through_the_wrong_pointer_type() -> None:
    with pytest.raises(TargetIRError, match=r"loads i64 through ptr<global, f32>"):
        verify_function(_fn(lambda b, p, n: b.load(p, I64)))


def test_verifier_requires_return() -> None:
    f = _saxpy()
    f.body.ops = [op for op in f.body.ops if op.name != "return"]
    with pytest.raises(TargetIRError, match="must end with return"):
        verify_function(f)
    f.body.ops.append(Op("return", (), (), ()))
    verify_function(f)


# ---------------------------------------------------------------- lowering


@pytest.mark.parametrize("bits", [512, 256, 128])
def test_lowered_softmax_uses_target_lanes(bits: int) -> None:
    if bits > cpu_target_info().vector_bits:
        pytest.skip("host has narrower vectors")
    target = cpu_target_info(bits)
    lanes = bits // 32
    f = lower_kernel(softmax_rows(256, online=False, name="softmax"), target)
    verify_function(f)
    filecheck(print_function(f), f"""
        CHECK: func @softmax(%x: ptr<global, f32>, %x.n0: i64, %x.n1: i64, %x.s0: i64, %x.s1: i64, %y: ptr<global, f32>, %y.n0: i64, %y.n1: i64, %y.s0: i64, %y.s1: i64, %grid0: i64, %begin: i64, %end: i64) {{
        CHECK:   alloca {{count = 256}} : ptr<local, f32>
        CHECK:   for %prog = %begin to %end step %c1 {{
        CHECK:     if %{{{{[0-9]+}}}} {{
        CHECK:       for %j = %c0 to %c256 step %c{lanes} iter_args
        CHECK:         cmp %{{{{[0-9]+}}}}, %{{{{[0-9]+}}}} {{pred = "ult"}} : <{lanes} x i1>
        CHECK:         load %{{{{[0-9]+}}}}, %{{{{[0-9]+}}}}, %cminf{{{{.*}}}} : <{lanes} x f32>
        CHECK:         max %{{{{.*}}}} : <{lanes} x f32>
        CHECK:       vreduce %{{{{[0-9]+}}}} {{kind = "max"}} : f32
        CHECK:     }} else {{
        CHECK:         gather %{{{{[0-9]+}}}}, %{{{{.*}}}} : <{lanes} x f32>
        CHECK:       vreduce %{{{{[0-9]+}}}} {{kind = "add"}} : f32
        CHECK:         div %{{{{.*}}}} : <{lanes} x f32>
        CHECK:         store %{{{{[0-9]+}}}}, %{{{{[0-9]+}}}}, %{{{{[0-9]+}}}}
        CHECK:   return
    """)


def test_lowered_ragged_block_has_a_tail_chunk() -> None:
    target = cpu_target_info(256)
    f = lower_kernel(elementwise_chain(block=(8, 20)), target)  # 20 = 2 chunks of 8 + a tail of 4
    filecheck(print_function(f), """
        CHECK: for %i0 = %c0 to %c8 step %c1 {
        CHECK:   for %j = %c0 to %c16 step %c8 {
        CHECK:     load {{.*}} : <8 x f32>
        CHECK:   }
        CHECK:   load {{.*}} : <4 x f32>
    """)


def test_lowered_matmul_micro_kernel_keeps_accumulators_in_registers() -> None:
    target = cpu_target_info()
    lanes = target.lanes
    f = lower_kernel(matmul_epilogue((64, 64), 32), target)
    text = print_function(f)
    # The k loop carries MR x NR accumulator vectors and FMAs a broadcast a[i, k] into them.
    filecheck(text, f"""
        CHECK: for %k = %c0 to %c32 step %c1 iter_args({{{{.*}}}}) -> (<{lanes} x f32>, <{lanes} x f32>
        CHECK:   splat {{{{.*}}}} {{lanes = {lanes}}} : <{lanes} x f32>
        CHECK:   fma {{{{.*}}}} : <{lanes} x f32>
        CHECK:   yield
    """)
    # The accumulator block is updated in place: no copy of the carried slot per K step.
    assert text.count("alloca") <= 6


def test_layernorm_lowering_verifies() -> None:
    verify_function(lower_kernel(layernorm_rows(128, rows=4), cpu_target_info()))


def test_abi_lists_pointer_extents_strides_grid_range() -> None:
    names = [(p.name, p.kind) for p in abi(matmul_epilogue((16, 16), 8, epilogue="none"))]
    assert names[:5] == [("x", "ptr"), ("x.n0", "extent"), ("x.n1", "extent"), ("x.s0", "stride"),
                         ("x.s1", "stride")]
    assert names[-4:] == [("grid0", "grid"), ("grid1", "grid"), ("begin", "begin"), ("end", "end")]


# ---------------------------------------------------------------- LLVM IR and machine code


def test_llvm_ir_of_matmul_uses_host_vectors_and_fma() -> None:
    target = cpu_target_info()
    lanes = target.lanes
    ir = emit_llvm(Module([lower_kernel(matmul_epilogue((64, 64), 32), target)]), target)
    filecheck(ir, f"""
        CHECK: define void @"matmul"(ptr %"x", i64 %"x_n0"
        CHECK: call <{lanes} x float> @"llvm.masked.load.v{lanes}f32.p0"
        CHECK: call <{lanes} x float> @"llvm.fma.v{lanes}f32"
        CHECK-NOT: fast
    """)
    assert "nnan" not in ir and "ninf" not in ir and " fast " not in ir


def test_llvm_ir_narrow_target_uses_8_lanes() -> None:
    target = cpu_target_info(256)
    ir = emit_llvm(Module([lower_kernel(softmax_rows(64, online=True), target)]), target)
    filecheck(ir, """
        CHECK: <8 x float>
        CHECK: call <8 x float> @"llvm.masked.load.v8f32.p0"
        CHECK: @"llvm.vector.reduce.fmaximum.v8f32"
    """)


@pytest.mark.skipif(not (host_cpu().has("fma") or host_cpu().has("neon")), reason="host has no vector FMA")
def test_machine_code_of_the_dot_inner_loop() -> None:
    target = cpu_target_info()
    asm = assembly(emit_llvm(Module([lower_kernel(matmul_epilogue((64, 64), 32, epilogue="none"), target)]),
                             target), target)
    reg = {512: "zmm", 256: "ymm", 128: "xmm"}[target.vector_bits]
    assert f"vfmadd231ps\t%{reg}" in asm or "fmla" in asm, "the micro-kernel should use vector FMAs"
    if host_cpu().has("avx512f"):
        assert "call" not in asm.split("vfmadd231ps")[1].split("ret")[0], "no calls in the dot loop"
