"""The LLVM emitter: Target IR -> LLVM IR text (llvmlite.ir) -> optimised object code for the host.

The emitter is a thin printer: each Target IR op maps to one LLVM instruction or intrinsic
(`llvm.masked.load`, `llvm.fma`, `llvm.maximum`, `llvm.vector.reduce.*`, ...); structured `for`/`if`
become basic blocks with phis; `alloca`s go to the entry block. Fast-math flags are limited to
`contract` on float add/sub/mul (FMA formation) and `reassoc` on lane reductions: no `nnan`/`ninf`,
since NaN and inf results must be kept. `erf` has no LLVM intrinsic and calls libm per lane.

`compile_object` runs the O3 pipeline (loop and SLP vectorisers on) for the host CPU and returns
the object code; `compile_count()` counts LLVM runs (the cache tests read it).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from llvmlite import ir

from tessera.ir.target.info import TargetInfo
from tessera.ir.target.ops import (
    Function,
    Module,
    Op,
    Pointer,
    Region,
    Scalar,
    TargetIRError,
    TargetType,
    Value,
    Vector,
    elem_of,
    lanes_of,
)

_compiles = 0  # LLVM optimisation + codegen runs in this process

_SCALARS: dict[str, ir.Type] = {
    "i1": ir.IntType(1), "i8": ir.IntType(8), "i16": ir.IntType(16), "i32": ir.IntType(32),
    "i64": ir.IntType(64), "f16": ir.HalfType(), "f32": ir.FloatType(), "f64": ir.DoubleType(),
}
_I32 = ir.IntType(32)
_PTR = ir.PointerType()
_FLOAT_CMP = {
    "oeq": (True, "=="), "one": (True, "!="), "olt": (True, "<"), "ole": (True, "<="),
    "ogt": (True, ">"), "oge": (True, ">="), "ord": (True, "ord"),
    "ueq": (False, "=="), "une": (False, "!="), "ult": (False, "<"), "ule": (False, "<="),
    "ugt": (False, ">"), "uge": (False, ">="), "uno": (False, "uno"),
}
_INT_CMP = {
    "eq": (True, "=="), "ne": (True, "!="), "slt": (True, "<"), "sle": (True, "<="), "sgt": (True, ">"),
    "sge": (True, ">="), "ult": (False, "<"), "ule": (False, "<="), "ugt": (False, ">"),
    "uge": (False, ">="),
}
_FLOAT_INTRINSIC_1 = {"sqrt": "sqrt", "floor": "floor", "ceil": "ceil", "rint": "rint", "trunc": "trunc",
                      "exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh",
                      "abs": "fabs"}
_CONTRACT = ("contract",)
_NP_FLOAT = {"f16": np.float16, "f32": np.float32, "f64": np.float64}


def lltype(t: TargetType) -> ir.Type:
    if isinstance(t, Scalar):
        return _SCALARS[t.kind]
    if isinstance(t, Vector):
        return ir.VectorType(_SCALARS[t.elem.kind], t.lanes)
    return _PTR


def _mangle(t: TargetType) -> str:
    if isinstance(t, Vector):
        return f"v{t.lanes}{t.elem.kind}"
    if isinstance(t, Scalar):
        return t.kind
    return "p0"


class _FunctionEmitter:
    def __init__(self, module: ir.Module, f: Function) -> None:
        self.module = module
        self.f = f
        fnty = ir.FunctionType(ir.VoidType(), [lltype(p.ty) for p in f.params])
        self.fn = ir.Function(module, fnty, name=f.name)
        self.fn.attributes.add("nounwind")
        self.values: dict[int, ir.Value] = {}
        for p, arg in zip(f.params, self.fn.args):
            arg.name = p.hint.replace(".", "_") or f"arg{p.uid}"
            self.values[p.uid] = arg
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.blocks = itertools.count()

    # -- helpers -------------------------------------------------------------------------------

    def v(self, x: Value) -> ir.Value:
        try:
            return self.values[x.uid]
        except KeyError:
            raise TargetIRError(f"LLVM emitter: value %{x.hint or x.uid} used before definition") from None

    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Value], **kw: object) -> ir.Value:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), name=name)
        return self.b.call(fn, args, **kw)  # type: ignore[arg-type]

    def block(self, hint: str) -> ir.Block:
        return self.fn.append_basic_block(f"{hint}{next(self.blocks)}")

    def emit(self) -> None:
        self.region(self.f.body)

    def region(self, r: Region) -> list[ir.Value] | None:
        """Emit a region's ops; return the values of its final yield."""
        for op in r.ops:
            if op.name == "yield":
                return [self.v(x) for x in op.operands]
            if op.name == "return":
                self.b.ret_void()
                return None
            self.op(op)
        return None

    def set(self, op: Op, value: ir.Value) -> None:
        self.values[op.result.uid] = value

    # -- ops -----------------------------------------------------------------------------------

    def op(self, op: Op) -> None:
        handler = getattr(self, "op_" + op.name, None)
        if handler is None:
            raise TargetIRError(f"the LLVM CPU emitter does not implement target op '{op.name}'")
        handler(op)

    def op_const(self, op: Op) -> None:
        t = op.result.ty
        value = op.attr("value")
        ty = lltype(t)
        if isinstance(t, Vector):
            lanes = list(value) if isinstance(value, tuple) else [value] * t.lanes
            self.set(op, ir.Constant(ty, [ir.Constant(lltype(t.elem), x) for x in lanes]))
        else:
            self.set(op, ir.Constant(ty, value))

    def op_alloca(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Pointer)
        with self.b.goto_entry_block():
            a = self.b.alloca(lltype(t.elem), size=ir.Constant(ir.IntType(64), op.attr("count")))
            a.align = 64
        self.set(op, a)

    def _binary(self, op: Op, fop: str | None, iop: str | None) -> None:
        x, y = (self.v(o) for o in op.operands)
        if elem_of(op.operands[0].ty).is_float:
            if fop is None:
                raise TargetIRError(f"{op.name} on floats")
            kw = {"flags": _CONTRACT} if fop in ("fadd", "fsub", "fmul") else {}
            self.set(op, getattr(self.b, fop)(x, y, **kw))
        else:
            if iop is None:
                raise TargetIRError(f"{op.name} on integers")
            self.set(op, getattr(self.b, iop)(x, y))

    def op_add(self, op: Op) -> None:
        self._binary(op, "fadd", "add")

    def op_sub(self, op: Op) -> None:
        self._binary(op, "fsub", "sub")

    def op_mul(self, op: Op) -> None:
        self._binary(op, "fmul", "mul")

    def op_div(self, op: Op) -> None:
        self._binary(op, "fdiv", "sdiv")

    def op_udiv(self, op: Op) -> None:
        self._binary(op, None, "udiv")

    def op_rem(self, op: Op) -> None:
        self._binary(op, "frem", "srem")

    def op_urem(self, op: Op) -> None:
        self._binary(op, None, "urem")

    def op_and(self, op: Op) -> None:
        self._binary(op, None, "and_")

    def op_or(self, op: Op) -> None:
        self._binary(op, None, "or_")

    def op_xor(self, op: Op) -> None:
        self._binary(op, None, "xor")

    def op_shl(self, op: Op) -> None:
        self._binary(op, None, "shl")

    def op_lshr(self, op: Op) -> None:
        self._binary(op, None, "lshr")

    def op_ashr(self, op: Op) -> None:
        self._binary(op, None, "ashr")

    def _minmax(self, op: Op, fname: str, iname: str) -> None:
        t = op.result.ty
        name = fname if elem_of(t).is_float else iname
        args = [self.v(o) for o in op.operands]
        self.set(op, self.intrinsic(f"llvm.{name}.{_mangle(t)}", lltype(t), args))

    def op_max(self, op: Op) -> None:
        self._minmax(op, "maximum", "smax")

    def op_min(self, op: Op) -> None:
        self._minmax(op, "minimum", "smin")

    def op_umax(self, op: Op) -> None:
        self._minmax(op, "umax", "umax")

    def op_umin(self, op: Op) -> None:
        self._minmax(op, "umin", "umin")

    def op_neg(self, op: Op) -> None:
        x = self.v(op.operands[0])
        if elem_of(op.result.ty).is_float:
            self.set(op, self.b.fneg(x))
        else:
            self.set(op, self.b.neg(x))

    def op_abs(self, op: Op) -> None:
        t = op.result.ty
        x = self.v(op.operands[0])
        if elem_of(t).is_float:
            self.set(op, self.intrinsic(f"llvm.fabs.{_mangle(t)}", lltype(t), [x]))
        else:
            self.set(op, self.intrinsic(f"llvm.abs.{_mangle(t)}", lltype(t), [x, ir.Constant(ir.IntType(1), 0)]))

    def op_fma(self, op: Op) -> None:
        t = op.result.ty
        self.set(op, self.intrinsic(f"llvm.fma.{_mangle(t)}", lltype(t), [self.v(o) for o in op.operands]))

    def _unary_intrinsic(self, op: Op) -> None:
        t = op.result.ty
        name = _FLOAT_INTRINSIC_1[op.name]
        self.set(op, self.intrinsic(f"llvm.{name}.{_mangle(t)}", lltype(t), [self.v(op.operands[0])]))

    op_sqrt = op_floor = op_ceil = op_rint = op_trunc = _unary_intrinsic
    op_exp = op_log = op_sin = op_cos = op_tanh = _unary_intrinsic

    def op_copysign(self, op: Op) -> None:
        t = op.result.ty
        self.set(op, self.intrinsic(f"llvm.copysign.{_mangle(t)}", lltype(t), [self.v(o) for o in op.operands]))

    def op_pow(self, op: Op) -> None:
        t = op.result.ty
        self.set(op, self.intrinsic(f"llvm.pow.{_mangle(t)}", lltype(t), [self.v(o) for o in op.operands]))

    def op_erf(self, op: Op) -> None:
        # No intrinsic: call libm's erf/erff on each lane.
        t = op.result.ty
        e = elem_of(t)
        name = {"f32": "erff", "f64": "erf"}.get(e.kind)
        if name is None:
            raise TargetIRError(f"erf on {t}: the CPU emitter supports f32 and f64")
        x = self.v(op.operands[0])
        if not isinstance(t, Vector):
            self.set(op, self.intrinsic(name, lltype(e), [x]))
            return
        out = ir.Constant(lltype(t), ir.Undefined)
        for i in range(t.lanes):
            lane = self.b.extract_element(x, ir.Constant(_I32, i))
            out = self.b.insert_element(out, self.intrinsic(name, lltype(e), [lane]), ir.Constant(_I32, i))
        self.set(op, out)

    def op_cmp(self, op: Op) -> None:
        x, y = (self.v(o) for o in op.operands)
        pred = str(op.attr("pred"))
        if elem_of(op.operands[0].ty).is_float:
            ordered, sym = _FLOAT_CMP[pred]
            fn = self.b.fcmp_ordered if ordered else self.b.fcmp_unordered
        else:
            signed, sym = _INT_CMP[pred]
            fn = self.b.icmp_signed if signed else self.b.icmp_unsigned
        self.set(op, fn(sym, x, y))

    def op_select(self, op: Op) -> None:
        c, x, y = (self.v(o) for o in op.operands)
        self.set(op, self.b.select(c, x, y))

    def op_cast(self, op: Op) -> None:
        x = self.v(op.operands[0])
        kind = str(op.attr("kind"))
        t = op.result.ty
        if kind in ("fptosi_sat", "fptoui_sat"):
            self.set(op, self._fp_to_int_sat(x, op.operands[0].ty, t, kind == "fptosi_sat"))
            return
        self.set(op, getattr(self.b, kind)(x, lltype(t)))

    def _fp_to_int_sat(self, x: ir.Value, src: TargetType, dst: TargetType, signed: bool) -> ir.Value:
        """Saturating float -> int (NaN -> 0). LLVM's llvm.fptosi.sat scalarises vectors on x86, so
        clamp into range (where the plain conversion is defined) and fix the ends with selects."""
        bits = elem_of(dst).bits
        lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1)) if signed else (0.0, 2.0 ** bits)
        fty = lltype(src)
        b = self.b

        def splat(v: float) -> ir.Constant:
            return ir.Constant(fty, [ir.Constant(fty.element, v)] * fty.count) if isinstance(fty, ir.VectorType) \
                else ir.Constant(fty, v)

        ity = lltype(dst)

        def isplat(v: int) -> ir.Constant:
            return ir.Constant(ity, [ir.Constant(ity.element, v)] * ity.count) if isinstance(ity, ir.VectorType) \
                else ir.Constant(ity, v)

        # Largest float of src's type below hi: hi itself is a power of two, so hi * (1 - eps/2).
        below = float(np.nextafter(np.array(hi, dtype=_NP_FLOAT[elem_of(src).kind]), 0))
        clamped = b.select(b.fcmp_ordered(">=", x, splat(hi)), splat(below), x)
        clamped = b.select(b.fcmp_ordered("<", clamped, splat(lo)), splat(lo), clamped)
        is_nan = b.fcmp_unordered("uno", x, x)
        clamped = b.select(is_nan, splat(0.0), clamped)
        r = b.fptosi(clamped, ity) if signed else b.fptoui(clamped, ity)
        top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        return b.select(b.fcmp_ordered(">=", x, splat(hi)), isplat(top), r)

    def op_splat(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Vector)
        vty = lltype(t)
        one = self.b.insert_element(ir.Constant(vty, ir.Undefined), self.v(op.operands[0]), ir.Constant(_I32, 0))
        zeros = ir.Constant(ir.VectorType(_I32, t.lanes), [ir.Constant(_I32, 0)] * t.lanes)
        self.set(op, self.b.shuffle_vector(one, ir.Constant(vty, ir.Undefined), zeros))

    def op_extract(self, op: Op) -> None:
        self.set(op, self.b.extract_element(self.v(op.operands[0]), ir.Constant(_I32, op.attr("index"))))

    def op_insert(self, op: Op) -> None:
        v, x = (self.v(o) for o in op.operands)
        self.set(op, self.b.insert_element(v, x, ir.Constant(_I32, op.attr("index"))))

    def op_vreduce(self, op: Op) -> None:
        src = op.operands[0].ty
        e = elem_of(src)
        x = self.v(op.operands[0])
        kind = str(op.attr("kind"))
        et = lltype(e)
        if e.is_float:
            if kind == "add":
                r = self.intrinsic(f"llvm.vector.reduce.fadd.{_mangle(src)}", et, [ir.Constant(et, -0.0), x],
                                   fastmath=("reassoc",))
            elif kind == "mul":
                r = self.intrinsic(f"llvm.vector.reduce.fmul.{_mangle(src)}", et, [ir.Constant(et, 1.0), x],
                                   fastmath=("reassoc",))
            elif kind in ("max", "min"):
                name = "fmaximum" if kind == "max" else "fminimum"
                r = self.intrinsic(f"llvm.vector.reduce.{name}.{_mangle(src)}", et, [x])
            else:
                raise TargetIRError(f"vreduce {kind} on floats")
        else:
            name = {"add": "add", "mul": "mul", "max": "smax", "min": "smin", "umax": "umax", "umin": "umin",
                    "and": "and", "or": "or"}[kind]
            r = self.intrinsic(f"llvm.vector.reduce.{name}.{_mangle(src)}", et, [x])
        self.set(op, r)

    # -- memory --------------------------------------------------------------------------------

    def op_ptradd(self, op: Op) -> None:
        p, off = op.operands
        pt = p.ty
        assert isinstance(pt, Pointer)
        self.set(op, self._opaque(self.b.gep(self.v(p), [self.v(off)], source_etype=lltype(pt.elem))))

    @staticmethod
    def _opaque(gep: ir.Value) -> ir.Value:
        # llvmlite types a GEP result as a typed pointer and then refuses loads/stores of another
        # type through it; the module uses opaque pointers, so say so (the text is unchanged).
        gep.type = _PTR
        return gep

    def _align(self, p: Value) -> int:
        assert isinstance(p.ty, Pointer)
        return max(1, p.ty.elem.bits // 8)

    def _as_vector(self, x: ir.Value, t: TargetType) -> tuple[ir.Value, ir.VectorType]:
        """A value as a vector (one lane for scalars), for the masked intrinsics."""
        if isinstance(t, Vector):
            return x, lltype(t)  # type: ignore[return-value]
        vt = ir.VectorType(lltype(t), 1)
        return self.b.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(_I32, 0)), vt

    def op_load(self, op: Op) -> None:
        t = op.result.ty
        p = op.operands[0]
        if len(op.operands) == 1:
            ld = self.b.load(self.v(p), typ=lltype(t))
            ld.align = self._align(p)
            self.set(op, ld)
            return
        mask, other = (self.v(o) for o in op.operands[1:])
        other_v, vt = self._as_vector(other, t)
        mask_v, _ = self._as_vector(mask, op.operands[1].ty)
        name = f"llvm.masked.load.v{vt.count}{elem_of(t).kind}.p0"
        r = self.intrinsic(name, vt, [self.v(p), ir.Constant(_I32, self._align(p)), mask_v, other_v])
        if not isinstance(t, Vector):
            r = self.b.extract_element(r, ir.Constant(_I32, 0))
        self.set(op, r)

    def op_store(self, op: Op) -> None:
        p, x = op.operands[:2]
        if len(op.operands) == 2:
            st = self.b.store(self.v(x), self.v(p))
            st.align = self._align(p)
            return
        mask = op.operands[2]
        xv, vt = self._as_vector(self.v(x), x.ty)
        mv, _ = self._as_vector(self.v(mask), mask.ty)
        name = f"llvm.masked.store.v{vt.count}{elem_of(x.ty).kind}.p0"
        self.intrinsic(name, ir.VoidType(), [xv, self.v(p), ir.Constant(_I32, self._align(p)), mv])

    def _lane_pointers(self, p: Value, offsets: Value) -> ir.Value:
        assert isinstance(p.ty, Pointer)
        gep = self.b.gep(self.v(p), [self.v(offsets)], source_etype=lltype(p.ty.elem))
        gep.type = ir.VectorType(_PTR, lanes_of(offsets.ty))  # a vector index gives one pointer per lane
        return gep

    def op_gather(self, op: Op) -> None:
        p, offs, mask, other = op.operands
        t = op.result.ty
        n = lanes_of(t)
        name = f"llvm.masked.gather.{_mangle(t)}.v{n}p0"
        ptrs = self._lane_pointers(p, offs)
        self.set(op, self.intrinsic(name, lltype(t), [ptrs, ir.Constant(_I32, self._align(p)), self.v(mask),
                                                      self.v(other)]))

    def op_scatter(self, op: Op) -> None:
        p, offs, x, mask = op.operands
        n = lanes_of(x.ty)
        name = f"llvm.masked.scatter.{_mangle(x.ty)}.v{n}p0"
        ptrs = self._lane_pointers(p, offs)
        self.intrinsic(name, ir.VoidType(), [self.v(x), ptrs, ir.Constant(_I32, self._align(p)), self.v(mask)])

    # -- control -------------------------------------------------------------------------------

    def op_for(self, op: Op) -> None:
        lo, hi, step, *inits = (self.v(o) for o in op.operands)
        body = op.regions[0]
        pre = self.b.block
        header, loop, exit_ = self.block("for.head"), self.block("for.body"), self.block("for.exit")
        self.b.branch(header)
        self.b.position_at_end(header)
        iv = self.b.phi(ir.IntType(64), name=body.args[0].hint or "iv")
        iv.add_incoming(lo, pre)
        phis = []
        for a, init in zip(body.args[1:], inits):
            ph = self.b.phi(init.type, name=a.hint or "")
            ph.add_incoming(init, pre)
            phis.append(ph)
        self.values[body.args[0].uid] = iv
        for a, ph in zip(body.args[1:], phis):
            self.values[a.uid] = ph
        self.b.cbranch(self.b.icmp_signed("<", iv, hi), loop, exit_)
        self.b.position_at_end(loop)
        nexts = self.region(body) or []
        latch = self.b.block
        iv_next = self.b.add(iv, step, flags=("nsw",))
        iv.add_incoming(iv_next, latch)
        for ph, nx in zip(phis, nexts):
            ph.add_incoming(nx, latch)
        self.b.branch(header)
        self.b.position_at_end(exit_)
        for r, ph in zip(op.results, phis):
            self.values[r.uid] = ph

    def op_if(self, op: Op) -> None:
        cond = self.v(op.operands[0])
        then_b, else_b, merge = self.block("if.then"), self.block("if.else"), self.block("if.end")
        self.b.cbranch(cond, then_b, else_b)
        outs = []
        for blk, region in ((then_b, op.regions[0]), (else_b, op.regions[1])):
            self.b.position_at_end(blk)
            vals = self.region(region) or []
            outs.append((vals, self.b.block))
            self.b.branch(merge)
        self.b.position_at_end(merge)
        for i, r in enumerate(op.results):
            ph = self.b.phi(lltype(r.ty))
            for vals, blk in outs:
                ph.add_incoming(vals[i], blk)
            self.values[r.uid] = ph

    def op_program_id(self, op: Op) -> None:
        raise TargetIRError("program_id: the CPU target loops over programs; there is no hardware program id")

    def op_thread_id(self, op: Op) -> None:
        raise TargetIRError("thread_id: the CPU target has no threads within a program")

    def op_barrier(self, op: Op) -> None:
        # One thread runs a whole program on the CPU: a barrier among its threads is a no-op.
        pass


def build_module(m: Module, target: TargetInfo | None = None) -> ir.Module:
    mod = ir.Module(name="tessera")
    if target is not None:
        mod.triple = target.triple
    for f in m.functions:
        fe = _FunctionEmitter(mod, f)
        fe.emit()
    return mod


def emit_llvm(target_module: Module, target: TargetInfo | None = None) -> str:
    """The LLVM IR text of a Target IR module (unoptimised)."""
    return str(build_module(target_module, target))


# ---------------------------------------------------------------- compiling for the host


@functools.cache
def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def target_machine(target: TargetInfo):
    llvm = _llvm()
    return llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features, opt=3, codemodel="jitdefault")


def optimize(llvm_ir: str, target: TargetInfo):
    """Parse, verify and optimise (O3, loop + SLP vectorisers) LLVM IR for the target."""
    llvm = _llvm()
    tm = target_machine(target)
    mod = llvm.parse_assembly(llvm_ir)
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def compile_object(llvm_ir: str, target: TargetInfo) -> bytes:
    """Optimise and compile LLVM IR to an object file for the target (counted by compile_count)."""
    global _compiles
    mod = optimize(llvm_ir, target)
    obj = target_machine(target).emit_object(mod)
    _compiles += 1
    return obj


def compile_count() -> int:
    """How many modules this process has run through LLVM's optimiser and code generator."""
    return _compiles


def assembly(llvm_ir: str, target: TargetInfo) -> str:
    """The optimised module's machine assembly (for inspection and FileCheck tests)."""
    mod = optimize(llvm_ir, target)
    return target_machine(target).emit_assembly(mod)
