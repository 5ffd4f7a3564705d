"""The PTX emitter: Target IR (as tessera/ir/tile_to_target_gpu.py writes it) -> PTX text.

A thin printer, like tessera/codegen/llvm.py: every Target IR op becomes one PTX instruction per
vector lane, or a short fixed sequence. What it needs to know about a GPU is the table `ARCHS`
(PTX ISA version and target name per architecture) and `cuda_target_info`.

Values live in virtual registers, one per lane: `%p` predicates (i1), `%rs` 16-bit registers (i8,
i16 and f16 bit patterns), `%r` 32-bit integers, `%f` f32, `%rd` 64-bit integers and global
pointers, `%fd` f64; parameters and loop indices get named registers (`%x_n0`, `%k`). i8 values
are kept sign-extended in their 16-bit register and renormalised after ops that can leave the
8-bit range. `splat`, `extract`, `insert` and loop/branch results need no instructions: they name
existing registers.

- arithmetic is IEEE: `.rn` on every float add/sub/mul/div/sqrt/fma (no contraction the lowering did
  not ask for), `max.NaN`/`min.NaN` propagate NaN (emulated for f64); integer division is the
  hardware's (the lowering keeps divisors nonzero);
- memory: `ld`/`st` in the pointer's state space (global, shared, local). A vector access is split
  into accesses of at most 16 bytes (`ld.global.v4.f32`; 8- and 16-bit lanes packed in 32-bit words,
  `ld.global.v4.b32` then unpacked); the lowering only emits unmasked vector accesses at addresses
  aligned for them. Masked loads, gathers and scatters are per lane, predicated on the mask;
- control: `for` is a counted loop (`setp.ge.s64` + `bra`), carried values are registers updated at
  the end of the body (through temporaries where the update would read a carried register); `if`
  branches over the else part;
- `program_id` and `thread_id` read `%ctaid.x` / `%tid.x` (the runtime launches a 1-D grid);
  `barrier` is `bar.sync 0`; `shuffle_xor` is `shfl.sync.bfly.b32` over the full warp (64-bit
  values as two halves); `shared` arrays are 16-byte aligned pieces of one `.shared` array.

sin, cos and pow on f32, and the transcendental functions on f64, have no accurate PTX instruction
and no expansion yet: the emitter raises GpuUnsupported (a "not available yet" error) naming them.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections import defaultdict
from dataclasses import dataclass

from tessera.codegen import ptx_bf16
from tessera.codegen.gpu_printer import GpuPrinter
from tessera.ir.gpu_layout import GpuUnsupported
from tessera.ir.target.info import TargetInfo
from tessera.ir.target.ops import (
    Function,
    Module,
    Op,
    Pointer,
    Scalar,
    TargetIRError,
    Value,
    elem_of,
    lanes_of,
)


@dataclass(frozen=True)
class ArchInfo:
    name: str  # the .target, e.g. "sm_90a"
    ptx_version: str  # the .version: the lowest PTX ISA that has this target
    compute_capability: tuple[int, int]
    max_shared_bytes: int  # shared memory one CTA may opt in to (dynamic beyond STATIC_SHARED_BYTES)


ARCHS: dict[str, ArchInfo] = {
    "sm_80": ArchInfo("sm_80", "7.8", (8, 0), 163 * 1024),  # the A100's opt-in limit
    "sm_90a": ArchInfo("sm_90a", "8.0", (9, 0), 227 * 1024),
}
STATIC_SHARED_BYTES = 48 * 1024  # more is dynamic shared memory: the module's extern array, opted in at load
DYNAMIC_SMEM = "__tessera_dsmem"
DEFAULT_ARCH = "sm_90a"

# Math the GPU has no correctly rounded instruction for, expanded by tessera/codegen/mathlib.py and
# mathlib64.py: f32 functions by name (`rem` is fmod, under float floordiv/mod), f64 ones as "f64:NAME".
GPU_EXPANDED_MATH = frozenset({"exp", "log", "tanh", "erf", "sin", "cos", "pow", "rem",
                               *(f"f64:{f}" for f in ("exp", "log", "tanh", "erf", "sin", "cos", "pow"))})


def cuda_target_info(arch: str = DEFAULT_ARCH) -> TargetInfo:
    """The TargetInfo row of an NVIDIA GPU architecture (one CTA per program)."""
    if arch not in ARCHS:
        raise TargetIRError(f"unknown CUDA architecture '{arch}' (known: {', '.join(ARCHS)})")
    return TargetInfo(name="cuda", triple="nvptx64-nvidia-cuda", cpu=arch, features="", vector_bits=128,
                      vector_registers=0, program_model="cta", expand_math=GPU_EXPANDED_MATH, has_fma=True,
                      max_local_bytes=0, mma="nv_m16n8k16", max_shared_bytes=ARCHS[arch].max_shared_bytes)


def arch_for_capability(major: int, minor: int) -> str:
    """The architecture to emit for a device: sm_90a on Hopper, else sm_80 PTX (the driver compiles
    it for any later GPU)."""
    return "sm_90a" if (major, minor) == (9, 0) else "sm_80"


# ---------------------------------------------------------------- registers and spellings

_CLASS = {"i1": ("pred", "%p"), "i8": ("b16", "%rs"), "i16": ("b16", "%rs"), "f16": ("b16", "%rs"),
          "i32": ("b32", "%r"), "f32": ("f32", "%f"), "i64": ("b64", "%rd"), "f64": ("f64", "%fd")}
_INT_BITS = {"i8": 16, "i16": 16, "i32": 32, "i64": 64}  # register width of each integer kind
_FLOAT_SETP = {"oeq": "eq", "one": "ne", "olt": "lt", "ole": "le", "ogt": "gt", "oge": "ge", "ueq": "equ",
               "une": "neu", "ult": "ltu", "ule": "leu", "ugt": "gtu", "uge": "geu", "ord": "num", "uno": "nan"}
_INT_SETP = {"eq": ("eq", "s"), "ne": ("ne", "s"), "slt": ("lt", "s"), "sle": ("le", "s"), "sgt": ("gt", "s"),
             "sge": ("ge", "s"), "ult": ("lt", "u"), "ule": ("le", "u"), "ugt": ("gt", "u"), "uge": ("ge", "u")}
_MEM_LOAD = {"i8": "s8", "i16": "b16", "f16": "b16", "i32": "b32", "f32": "f32", "i64": "b64", "f64": "f64"}
_MEM_STORE = {"i8": "b8", "i16": "b16", "f16": "b16", "i32": "b32", "f32": "f32", "i64": "b64", "f64": "f64"}
_ROUND_TO_INT = {"floor": "rmi", "ceil": "rpi", "rint": "rni", "trunc": "rzi"}


def _bytes(s: Scalar) -> int:
    return max(1, s.bits // 8)


def _float_imm(value: float, kind: str) -> str:
    if kind == "f32":
        return "0f" + struct.pack(">f", value).hex().upper()
    if kind == "f64":
        return "0d" + struct.pack(">d", value).hex().upper()
    return "0x" + struct.pack(">e", value).hex().upper()  # f16 bits in a b16 register


def _int_imm(value: int, kind: str) -> str:
    if kind == "i1":
        return "1" if value else "0"
    if kind == "i8":
        v = ((int(value) & 0xFF) ^ 0x80) - 0x80  # sign-extended, the register's canonical form
        return str(v & 0xFFFF) if v >= 0 else str(v)
    return str(int(value))


def _sanitize(hint: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in hint)
    return out if out and (out[0].isalpha() or out[0] == "_") else f"v_{out}"


class _Emitter(GpuPrinter):
    vendor = "PTX"
    return_stmt = "ret;"

    def __init__(self, f: Function) -> None:
        super().__init__(f, "CUDA")
        self.counts: dict[str, int] = defaultdict(int)
        self.named: list[tuple[str, str]] = []  # (class, name) of named registers
        self.labels = itertools.count()
        self.locals: list[tuple[str, int]] = []
        self.smem_base: str | None = None
        self.defs = ptx_bf16.definitions(f)  # for the bf16 rounding peephole (ptx_bf16)

    # -- registers -----------------------------------------------------------------------------

    def reg(self, kind: str) -> str:
        prefix = _CLASS[kind][1]
        self.counts[prefix] += 1
        return f"{prefix}{self.counts[prefix]}"

    def preg(self, p: Pointer) -> str:
        return self.reg("i32" if p.space == "shared" else "i64")

    def named_reg(self, hint: str, kind: str) -> str:
        cls = _CLASS[kind][0]
        base = _sanitize(hint or "v")
        if re.fullmatch(r"(p|rs|r|f|rd|fd)\d+", base):  # the numbered registers' names
            base = "v_" + base
        name = self.unique("%" + base)
        self.named.append((cls, name))
        return name

    def new_regs(self, v: Value) -> list[str]:
        t = v.ty
        if isinstance(t, Pointer):
            return [self.preg(t)]
        kind = elem_of(t).kind
        return [self.reg(kind) for _ in range(lanes_of(t))]

    def emit(self, text: str) -> None:
        self.lines.append("    " + text)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    # -- the function --------------------------------------------------------------------------

    def run(self) -> str:
        f = self.f
        self.layout_shared(f.body)
        self.dynamic_shared = self.shared_size > STATIC_SHARED_BYTES
        params = []
        for p in f.params:
            pname = f"{_sanitize(f.name)}_{_sanitize(p.hint or f'arg{p.uid}')}"
            if isinstance(p.ty, Pointer):
                params.append(f".param .u64 {pname}")
                raw = self.named_reg(p.hint + "_param", "i64")
                reg = self.named_reg(p.hint, "i64")
                self.emit(f"ld.param.u64 {raw}, [{pname}];")
                self.emit(f"cvta.to.{p.ty.space}.u64 {reg}, {raw};")
                self.vals[p.uid] = [reg]
            else:
                assert isinstance(p.ty, Scalar)
                kind = p.ty.kind
                if kind not in ("i32", "i64", "f32", "f64"):
                    raise TargetIRError(f"PTX emitter: parameter type {kind} is not supported")
                ptype = {"i32": "s32", "i64": "s64", "f32": "f32", "f64": "f64"}[kind]
                params.append(f".param .{ptype} {pname}")
                reg = self.named_reg(p.hint, kind)
                self.emit(f"ld.param.{ptype} {reg}, [{pname}];")
                self.vals[p.uid] = [reg]
        if self.shared_size:
            self.smem_base = self.reg("i32")
            self.emit(f"mov.u32 {self.smem_base}, {DYNAMIC_SMEM if self.dynamic_shared else '__smem'};")
        self.region(f.body)
        head = [f"// {f.doc}" if f.doc else f"// kernel {f.name}",
                *([f"// dynamic shared memory: {self.shared_size} bytes"] if self.dynamic_shared else []),
                f".visible .entry {f.name}(", ",\n".join(f"    {p}" for p in params), ")",
                f".reqntid {f.threads}, 1, 1",
                *([f".minnctapersm {f.min_programs}"] if f.min_programs else []), "{"]
        decls = []
        for cls, prefix in sorted({v for v in _CLASS.values()}, key=lambda x: x[1]):
            if self.counts[prefix]:
                decls.append(f"    .reg .{cls} {prefix}<{self.counts[prefix] + 1}>;")
        decls += [f"    .reg .{cls} {name};" for cls, name in self.named]
        if self.shared_size and not self.dynamic_shared:
            decls.append(f"    .shared .align 16 .b8 __smem[{self.shared_size}];")
        decls += [f"    .local .align 16 .b8 {name}[{size}];" for name, size in self.locals]
        return "\n".join([*head, *decls, "", *self.lines, "}"]) + "\n"

    # -- constants and lanes (splat, extract and insert: GpuPrinter) -------------------------------

    def constant(self, kind: str, x: object) -> str:
        reg = self.reg(kind)
        if kind == "i1":
            self.emit(f"mov.pred {reg}, {1 if x else 0};")
        elif kind[0] == "f":
            suffix = "b16" if kind == "f16" else kind
            self.emit(f"mov.{suffix} {reg}, {_float_imm(float(x), kind)};")  # type: ignore[arg-type]
        else:
            self.emit(f"mov.b{_INT_BITS[kind]} {reg}, {_int_imm(int(x), kind)};")  # type: ignore[call-overload]
        return reg

    def op_vreduce(self, op: Op) -> None:
        kind = str(op.attr("kind"))
        elem = elem_of(op.operands[0].ty)
        regs = self.r(op.operands[0])
        acc = regs[0]
        for x in regs[1:]:
            acc = self.binary(kind, acc, x, elem)
        self.set(op, [acc])

    # -- arithmetic ----------------------------------------------------------------------------

    def _lanes(self, op: Op) -> int:
        return lanes_of(op.result.ty)

    def _lane(self, v: Value, i: int) -> str:
        regs = self.r(v)
        return regs[i] if len(regs) > 1 else regs[0]

    def _binary_op(self, op: Op) -> None:
        elem = elem_of(op.operands[0].ty)
        a, b = op.operands
        self.set(op, [self.binary(op.name, self._lane(a, i), self._lane(b, i), elem, b) for i in range(self._lanes(op))])

    op_add = op_sub = op_mul = op_div = op_rem = op_udiv = op_urem = _binary_op
    op_max = op_min = op_umax = op_umin = _binary_op
    op_and = op_or = op_xor = op_shl = op_lshr = op_ashr = _binary_op

    def binary(self, name: str, x: str, y: str, elem: Scalar, yv: Value | None = None) -> str:
        k = elem.kind
        d = self.reg(k)
        if k[0] == "f":
            return self._float_binary(name, d, x, y, k)
        if k == "i1":
            op = {"and": "and", "or": "or", "xor": "xor", "max": "or", "min": "and", "umax": "or", "umin": "and",
                  "add": "xor", "sub": "xor", "mul": "and"}.get(name)
            if op is None:
                raise TargetIRError(f"PTX emitter: {name} on i1")
            self.emit(f"{op}.pred {d}, {x}, {y};")
            return d
        bits = _INT_BITS[k]
        if name in ("shl", "lshr", "ashr"):
            amount = self._shift_amount(y, yv, k)
            if k == "i8" and name == "lshr":
                x = self._zext8(x)
            instr = {"shl": f"shl.b{bits}", "lshr": f"shr.u{bits}", "ashr": f"shr.s{bits}"}[name]
            self.emit(f"{instr} {d}, {x}, {amount};")
        elif name in ("udiv", "urem", "umax", "umin"):
            if k == "i8":
                x, y = self._zext8(x), self._zext8(y)
            instr = {"udiv": "div", "urem": "rem", "umax": "max", "umin": "min"}[name]
            self.emit(f"{instr}.u{bits} {d}, {x}, {y};")
        else:
            instr = {"add": f"add.s{bits}", "sub": f"sub.s{bits}", "mul": f"mul.lo.s{bits}", "div": f"div.s{bits}",
                     "rem": f"rem.s{bits}", "max": f"max.s{bits}", "min": f"min.s{bits}", "and": f"and.b{bits}",
                     "or": f"or.b{bits}", "xor": f"xor.b{bits}"}.get(name)
            if instr is None:
                raise TargetIRError(f"PTX emitter: integer {name}")
            self.emit(f"{instr} {d}, {x}, {y};")
        if k == "i8" and name not in ("and", "or", "xor", "max", "min", "ashr"):
            self.emit(f"cvt.s16.s8 {d}, {d};")
        return d

    def _float_binary(self, name: str, d: str, x: str, y: str, k: str) -> str:
        if k == "f16":
            raise GpuUnsupported("PTX emitter: f16 arithmetic (the lowering computes f16 values in f32)")
        if name in ("add", "sub", "mul", "div"):
            self.emit(f"{name}.rn.{k} {d}, {x}, {y};")
        elif name in ("max", "min") and k == "f32":
            self.emit(f"{name}.NaN.f32 {d}, {x}, {y};")
        elif name in ("max", "min"):
            s, nan, p = self.reg("f64"), self.reg("f64"), self.reg("i1")
            self.emit(f"{name}.f64 {s}, {x}, {y};")
            self.emit(f"add.rn.f64 {nan}, {x}, {y};")
            self.emit(f"setp.nan.f64 {p}, {x}, {y};")
            self.emit(f"selp.f64 {d}, {nan}, {s}, {p};")
        elif name == "rem":
            raise GpuUnsupported("PTX emitter: float remainder (floordiv/mod of float blocks) is not supported on "
                                "the cuda target yet")
        else:
            raise TargetIRError(f"PTX emitter: {name} on {k}")
        return d

    def _shift_amount(self, y: str, yv: Value | None, k: str) -> str:
        if yv is not None and yv.uid in self.consts:
            c = self.consts[yv.uid]
            c0 = c[0] if isinstance(c, tuple) and len(set(c)) == 1 else c
            if isinstance(c0, int):
                return str(c0)
        if k == "i32":
            return y
        t = self.reg("i32")
        self.emit(f"cvt.u32.{'u64' if k == 'i64' else 'u16'} {t}, {y};")
        return t

    def _zext8(self, x: str) -> str:
        t = self.reg("i16")
        self.emit(f"and.b16 {t}, {x}, 255;")
        return t

    def _unary(self, op: Op, fn: str) -> None:
        k = elem_of(op.result.ty).kind
        out = []
        for i in range(self._lanes(op)):
            x = self._lane(op.operands[0], i)
            d = self.reg(k)
            if fn in ("neg", "abs") and k == "i1":
                self.emit(f"mov.pred {d}, {x};")
            elif fn in ("neg", "abs") and k[0] == "i":
                self.emit(f"{fn}.s{_INT_BITS[k]} {d}, {x};")
                if k == "i8":
                    self.emit(f"cvt.s16.s8 {d}, {d};")
            elif k in ("f32", "f64"):
                if fn in ("neg", "abs"):
                    self.emit(f"{fn}.{k} {d}, {x};")
                elif fn == "sqrt":
                    self.emit(f"sqrt.rn.{k} {d}, {x};")
                elif fn in _ROUND_TO_INT:
                    self.emit(f"cvt.{_ROUND_TO_INT[fn]}.{k}.{k} {d}, {x};")
                else:
                    raise GpuUnsupported(f"PTX emitter: {fn} on {k} has no accurate PTX instruction and no expansion "
                                        "yet (the cuda target supports exp, log, tanh and erf on f32)")
            else:
                raise TargetIRError(f"PTX emitter: {fn} on {k}")
            out.append(d)
        self.set(op, out)

    def op_neg(self, op: Op) -> None:
        self._unary(op, "neg")

    def op_abs(self, op: Op) -> None:
        self._unary(op, "abs")

    def op_sqrt(self, op: Op) -> None:
        self._unary(op, "sqrt")

    def op_floor(self, op: Op) -> None:
        self._unary(op, "floor")

    def op_ceil(self, op: Op) -> None:
        self._unary(op, "ceil")

    def op_rint(self, op: Op) -> None:
        self._unary(op, "rint")

    def op_trunc(self, op: Op) -> None:
        self._unary(op, "trunc")

    def op_exp(self, op: Op) -> None:
        self._unary(op, op.name)

    op_log = op_sin = op_cos = op_tanh = op_erf = op_exp

    def op_pow(self, op: Op) -> None:
        raise GpuUnsupported("PTX emitter: pow has no accurate PTX instruction and no expansion yet")

    def op_fma(self, op: Op) -> None:
        k = elem_of(op.result.ty).kind
        out = []
        for i in range(self._lanes(op)):
            a, b, c = (self._lane(v, i) for v in op.operands)
            d = self.reg(k)
            self.emit(f"fma.rn.{k} {d}, {a}, {b}, {c};")
            out.append(d)
        self.set(op, out)

    def op_copysign(self, op: Op) -> None:
        k = elem_of(op.result.ty).kind
        out = []
        for i in range(self._lanes(op)):
            mag, sign = (self._lane(v, i) for v in op.operands)
            d = self.reg(k)
            self.emit(f"copysign.{k} {d}, {sign}, {mag};")  # PTX copies the sign of its first operand
            out.append(d)
        self.set(op, out)

    # -- compare, select, cast -----------------------------------------------------------------

    def op_cmp(self, op: Op) -> None:
        elem = elem_of(op.operands[0].ty)
        k = elem.kind
        pred = str(op.attr("pred"))
        out = []
        for i in range(self._lanes(op)):
            x, y = (self._lane(v, i) for v in op.operands)
            d = self.reg("i1")
            if k[0] == "f":
                if k == "f16":
                    raise GpuUnsupported("PTX emitter: f16 comparison (the lowering compares in f32)")
                self.emit(f"setp.{_FLOAT_SETP[pred]}.{k} {d}, {x}, {y};")
            elif k == "i1":
                if pred not in ("eq", "ne"):
                    raise TargetIRError(f"PTX emitter: {pred} on i1")
                self.emit(f"xor.pred {d}, {x}, {y};")
                if pred == "eq":
                    self.emit(f"not.pred {d}, {d};")
            else:
                cond, sign = _INT_SETP[pred]
                if k == "i8" and sign == "u":
                    x, y = self._zext8(x), self._zext8(y)
                self.emit(f"setp.{cond}.{sign}{_INT_BITS[k]} {d}, {x}, {y};")
            out.append(d)
        self.set(op, out)

    def op_select(self, op: Op) -> None:
        c, a, b = op.operands
        k = elem_of(op.result.ty).kind
        out = []
        for i in range(self._lanes(op)):
            ci, ai, bi = self._lane(c, i), self._lane(a, i), self._lane(b, i)
            d = self.reg(k)
            if k == "i1":
                t1, t2, nc = self.reg("i1"), self.reg("i1"), self.reg("i1")
                self.emit(f"and.pred {t1}, {ci}, {ai};")
                self.emit(f"not.pred {nc}, {ci};")
                self.emit(f"and.pred {t2}, {nc}, {bi};")
                self.emit(f"or.pred {d}, {t1}, {t2};")
            else:
                suffix = k if k in ("f32", "f64") else f"b{_INT_BITS.get(k, 16)}"
                self.emit(f"selp.{suffix} {d}, {ai}, {bi}, {ci};")
            out.append(d)
        self.set(op, out)

    def op_cast(self, op: Op) -> None:
        x = ptx_bf16.match(op, self.defs)
        if x is not None:  # convert._bf16_encode's integer rounding: one cvt per lane (sm_80+)
            out = [self.reg("i16") for _ in range(self._lanes(op))]
            for i, d in enumerate(out):
                self.emit(f"cvt.rn.bf16.f32 {d}, {self._lane(x, i)};")
            self.set(op, out)
            return
        kind = str(op.attr("kind"))
        src = elem_of(op.operands[0].ty).kind
        dst = str(op.attr("to"))
        self.set(op, [self.cast(kind, self._lane(op.operands[0], i), src, dst) for i in range(self._lanes(op))])

    def cast(self, kind: str, x: str, src: str, dst: str) -> str:
        if kind == "bitcast" and _CLASS[src][0] == _CLASS[dst][0]:
            return x
        d = self.reg(dst)
        fl = {"f16": "f16", "f32": "f32", "f64": "f64"}
        if kind in ("fpext", "fptrunc"):
            rnd = "rn." if kind == "fptrunc" else ""
            self.emit(f"cvt.{rnd}{fl[dst]}.{fl[src]} {d}, {x};")
        elif kind in ("sitofp", "uitofp"):
            if src == "i1":
                one = _float_imm(-1.0 if kind == "sitofp" else 1.0, dst)
                suffix = dst if dst != "f16" else "b16"
                self.emit(f"selp.{suffix} {d}, {one}, {_float_imm(0.0, dst)}, {x};")
            else:
                if src == "i8" and kind == "uitofp":
                    x = self._zext8(x)
                sign = "s" if kind == "sitofp" else "u"
                self.emit(f"cvt.rn.{fl[dst]}.{sign}{_INT_BITS[src]} {d}, {x};")
        elif kind in ("fptosi_sat", "fptoui_sat"):
            sign = "s" if kind == "fptosi_sat" else "u"
            width = 8 if dst == "i8" else _INT_BITS[dst]
            self.emit(f"cvt.rzi.{sign}{width}.{fl[src]} {d}, {x};")  # saturating; NaN gives 0
            if dst == "i8":
                self.emit(f"cvt.s16.s8 {d}, {d};")
        elif kind in ("sext", "zext"):
            if src == "i1":
                one = "-1" if kind == "sext" else "1"
                self.emit(f"selp.{'s' if kind == 'sext' else 'u'}{_INT_BITS[dst]} {d}, {one}, 0, {x};")
            elif kind == "zext" and src == "i8":
                t = self._zext8(x)
                if dst == "i16":
                    self.emit(f"mov.b16 {d}, {t};")
                else:
                    self.emit(f"cvt.u{_INT_BITS[dst]}.u16 {d}, {t};")
            else:
                sign = "s" if kind == "sext" else "u"
                if _INT_BITS[src] == _INT_BITS[dst]:  # i8 -> i16: the register already holds it
                    self.emit(f"mov.b16 {d}, {x};")
                else:
                    self.emit(f"cvt.{sign}{_INT_BITS[dst]}.{sign}{_INT_BITS[src]} {d}, {x};")
        elif kind == "trunc":
            if dst == "i1":
                t = self.reg(src)
                bits = _INT_BITS[src]
                self.emit(f"and.b{bits} {t}, {x}, 1;")
                self.emit(f"setp.ne.b{bits} {d}, {t}, 0;")
            else:
                if _INT_BITS[dst] != _INT_BITS[src]:
                    self.emit(f"cvt.u{_INT_BITS[dst]}.u{_INT_BITS[src]} {d}, {x};")
                else:
                    self.emit(f"mov.b16 {d}, {x};")
                if dst == "i8":
                    self.emit(f"cvt.s16.s8 {d}, {d};")
        elif kind == "bitcast":
            bits = {"i16": 16, "f16": 16, "i32": 32, "f32": 32, "i64": 64, "f64": 64}[dst]
            self.emit(f"mov.b{bits} {d}, {x};")
        else:
            raise TargetIRError(f"PTX emitter: cast {kind} from {src} to {dst}")
        return d

    # -- memory --------------------------------------------------------------------------------

    def op_shared(self, op: Op) -> None:
        assert self.smem_base is not None
        off = self.shared_offsets[op.result.uid]
        if off == 0:
            self.set(op, [self.smem_base])
            return
        d = self.reg("i32")
        self.emit(f"add.s32 {d}, {self.smem_base}, {off};")
        self.set(op, [d])

    def op_alloca(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Pointer)
        name = f"__local{len(self.locals)}"
        self.locals.append((name, int(op.attr("count")) * _bytes(t.elem)))  # type: ignore[arg-type]
        d = self.reg("i64")
        self.emit(f"mov.u64 {d}, {name};")
        self.set(op, [d])

    def _offset_addr(self, p: Pointer, base: str, off: str, off_value: Value | None, scale: int) -> str:
        """base + off * scale (off an i64 register)."""
        if off_value is not None and off_value.uid in self.consts and isinstance(self.consts[off_value.uid], int):
            imm = int(self.consts[off_value.uid]) * scale  # type: ignore[call-overload]
            if imm == 0:
                return base
            d = self.preg(p)
            self.emit(f"add.s{32 if p.space == 'shared' else 64} {d}, {base}, {imm};")
            return d
        d = self.preg(p)
        if p.space == "shared":
            t = self.reg("i32")
            self.emit(f"cvt.u32.u64 {t}, {off};")
            off = t
        bits = 32 if p.space == "shared" else 64
        if scale == 1:
            self.emit(f"add.s{bits} {d}, {off}, {base};")
        else:
            self.emit(f"mad.lo.s{bits} {d}, {off}, {scale}, {base};")
        return d

    def op_ptradd(self, op: Op) -> None:
        p, off = op.operands
        assert isinstance(p.ty, Pointer)
        self.set(op, [self._offset_addr(p.ty, self.r(p)[0], self.r(off)[0], off, _bytes(p.ty.elem))])

    def op_ptrtoint(self, op: Op) -> None:
        p = op.operands[0]
        assert isinstance(p.ty, Pointer)
        if p.ty.space != "shared":
            self.set(op, self.r(p))
            return
        d = self.reg("i64")
        self.emit(f"cvt.u64.u32 {d}, {self.r(p)[0]};")
        self.set(op, [d])

    def _pieces(self, elem: Scalar, lanes: int) -> list[tuple[int, int, int]]:
        """How an aligned vector access is split: (first lane, lanes, 32-bit words or 0 for lanes in
        their own registers)."""
        eb = _bytes(elem)
        if lanes == 1:
            return [(0, 1, 0)]
        if eb >= 4:
            per = max(1, min(lanes, 16 // eb))
            return [(s, per, 0) for s in range(0, lanes, per)]
        if (lanes * eb) % 4:
            return [(s, 1, 0) for s in range(lanes)]
        per_word = 4 // eb
        out = []
        lane = 0
        words = lanes * eb // 4
        while words:
            w = 4 if words >= 4 else (2 if words >= 2 else 1)
            out.append((lane, w * per_word, w))
            lane += w * per_word
            words -= w
        return out

    def _vec(self, n: int) -> str:
        return "" if n == 1 else f".v{n}"

    def op_load(self, op: Op) -> None:
        p = op.operands[0]
        assert isinstance(p.ty, Pointer)
        t = op.result.ty
        elem = p.ty.elem
        lanes = lanes_of(t)
        base = self.r(p)[0]
        sp = p.ty.space
        eb = _bytes(elem)
        if len(op.operands) == 3:  # masked: lane by lane
            mask, other = op.operands[1], op.operands[2]
            out = []
            for i in range(lanes):
                d = self.reg(elem.kind)
                self.emit(f"mov.{self._mov_suffix(elem.kind)} {d}, {self._lane(other, i)};")
                self.emit(f"@{self._lane(mask, i)} ld.{sp}.{_MEM_LOAD[elem.kind]} {d}, [{base}+{i * eb}];")
                out.append(d)
            self.set(op, out)
            return
        out: list[str] = []
        for first, n, words in self._pieces(elem, lanes):
            addr = f"[{base}+{first * eb}]" if first else f"[{base}]"
            if words == 0:
                regs = [self.reg(elem.kind) for _ in range(n)]
                dst = regs[0] if n == 1 else "{" + ", ".join(regs) + "}"
                self.emit(f"ld.{sp}{self._vec(n)}.{_MEM_LOAD[elem.kind] if n == 1 else self._vec_type(elem)} "
                          f"{dst}, {addr};")
                out += regs
            else:
                ws = [self.reg("i32") for _ in range(words)]
                dst = ws[0] if words == 1 else "{" + ", ".join(ws) + "}"
                self.emit(f"ld.{sp}{self._vec(words)}.b32 {dst}, {addr};")
                for w in ws:
                    out += self._unpack(w, elem)
        self.set(op, out)

    def _vec_type(self, elem: Scalar) -> str:
        return {"i32": "b32", "f32": "f32", "i64": "b64", "f64": "f64"}[elem.kind]

    def _mov_suffix(self, kind: str) -> str:
        return {"i8": "b16", "i16": "b16", "f16": "b16", "i32": "b32", "f32": "f32", "i64": "b64",
                "f64": "f64", "i1": "pred"}[kind]

    def _unpack(self, w: str, elem: Scalar) -> list[str]:
        if elem.bits == 16:
            h = [self.reg(elem.kind), self.reg(elem.kind)]
            self.emit(f"mov.b32 {{{h[0]}, {h[1]}}}, {w};")
            return h
        out = []
        for byte in range(4):
            t, d = self.reg("i32"), self.reg("i8")
            self.emit(f"bfe.s32 {t}, {w}, {8 * byte}, 8;")
            self.emit(f"cvt.u16.u32 {d}, {t};")
            out.append(d)
        return out

    def _pack(self, regs: list[str], elem: Scalar) -> str:
        w = self.reg("i32")
        if elem.bits == 16:
            self.emit(f"mov.b32 {w}, {{{regs[0]}, {regs[1]}}};")
            return w
        self.emit(f"mov.b32 {w}, 0;")
        for byte, x in enumerate(regs):
            t = self.reg("i32")
            self.emit(f"cvt.u32.u16 {t}, {x};")
            self.emit(f"bfi.b32 {w}, {t}, {w}, {8 * byte}, 8;")
        return w

    def op_store(self, op: Op) -> None:
        p, v = op.operands[0], op.operands[1]
        assert isinstance(p.ty, Pointer)
        elem = p.ty.elem
        lanes = lanes_of(v.ty)
        base = self.r(p)[0]
        sp = p.ty.space
        eb = _bytes(elem)
        regs = self.r(v) if lanes > 1 else [self.r(v)[0]]
        if len(op.operands) == 3:
            mask = op.operands[2]
            for i in range(lanes):
                self.emit(f"@{self._lane(mask, i)} st.{sp}.{_MEM_STORE[elem.kind]} [{base}+{i * eb}], {regs[i]};")
            return
        for first, n, words in self._pieces(elem, lanes):
            addr = f"[{base}+{first * eb}]" if first else f"[{base}]"
            if words == 0:
                src = regs[first] if n == 1 else "{" + ", ".join(regs[first:first + n]) + "}"
                ty = _MEM_STORE[elem.kind] if n == 1 else self._vec_type(elem)
                self.emit(f"st.{sp}{self._vec(n)}.{ty} {addr}, {src};")
            else:
                per_word = 4 // eb
                ws = [self._pack(regs[first + w * per_word:first + (w + 1) * per_word], elem) for w in range(words)]
                src = ws[0] if words == 1 else "{" + ", ".join(ws) + "}"
                self.emit(f"st.{sp}{self._vec(words)}.b32 {addr}, {src};")

    def _lane_addr(self, p: Pointer, base: str, offs: Value, i: int) -> str:
        return self._offset_addr(p, base, self._lane(offs, i), None, _bytes(p.elem))

    def op_gather(self, op: Op) -> None:
        p, offs, mask, other = op.operands
        assert isinstance(p.ty, Pointer)
        elem = p.ty.elem
        out = []
        for i in range(lanes_of(op.result.ty)):
            a = self._lane_addr(p.ty, self.r(p)[0], offs, i)
            d = self.reg(elem.kind)
            self.emit(f"mov.{self._mov_suffix(elem.kind)} {d}, {self._lane(other, i)};")
            self.emit(f"@{self._lane(mask, i)} ld.{p.ty.space}.{_MEM_LOAD[elem.kind]} {d}, [{a}];")
            out.append(d)
        self.set(op, out)

    def op_scatter(self, op: Op) -> None:
        p, offs, v, mask = op.operands
        assert isinstance(p.ty, Pointer)
        elem = p.ty.elem
        for i in range(lanes_of(v.ty)):
            a = self._lane_addr(p.ty, self.r(p)[0], offs, i)
            self.emit(f"@{self._lane(mask, i)} st.{p.ty.space}.{_MEM_STORE[elem.kind]} [{a}], {self._lane(v, i)};")

    # -- control -------------------------------------------------------------------------------

    def _copy(self, dsts: list[str], srcs: list[str], kinds: list[str]) -> None:
        """dsts := srcs as a parallel copy (a source may be one of the destinations)."""
        if set(srcs) & set(dsts):
            tmps = []
            for s, k in zip(srcs, kinds):
                t = self.reg(k)
                self.emit(f"mov.{self._mov_suffix(k)} {t}, {s};")
                tmps.append(t)
            srcs = tmps
        for d, s, k in zip(dsts, srcs, kinds):
            if d != s:
                self.emit(f"mov.{self._mov_suffix(k)} {d}, {s};")

    def _kinds(self, v: Value) -> list[str]:
        t = v.ty
        if isinstance(t, Pointer):
            return ["i32" if t.space == "shared" else "i64"]
        return [elem_of(t).kind] * lanes_of(t)

    def op_for(self, op: Op) -> None:
        lo, hi, step, *inits = op.operands
        body = op.regions[0]
        n = next(self.labels)
        iv = self.named_reg(body.args[0].hint or "i", "i64")
        self.vals[body.args[0].uid] = [iv]
        carried: list[str] = []
        kinds: list[str] = []
        for a, init in zip(body.args[1:], inits):
            regs = self.new_regs(a)
            self.vals[a.uid] = regs
            carried += regs
            kinds += self._kinds(a)
            self._copy(regs, self.r(init), self._kinds(a))
        self.emit(f"mov.b64 {iv}, {self.r(lo)[0]};")
        head, end = f"$L_for{n}", f"$L_for{n}_end"
        done = self.reg("i1")
        self.label(head)
        self.emit(f"setp.ge.s64 {done}, {iv}, {self.r(hi)[0]};")
        self.emit(f"@{done} bra {end};")
        ys = self.region(body) or []
        self._copy(carried, [r for y in ys for r in y], kinds)
        self.emit(f"add.s64 {iv}, {iv}, {self.r(step)[0]};")
        self.emit(f"bra {head};")
        self.label(end)
        it = iter(carried)
        for r in op.results:
            self.vals[r.uid] = [next(it) for _ in self._kinds(r)]

    def op_if(self, op: Op) -> None:
        n = next(self.labels)
        cond = self.r(op.operands[0])[0]
        results = [self.new_regs(r) for r in op.results]
        kinds = [k for r in op.results for k in self._kinds(r)]
        flat = [x for regs in results for x in regs]
        other, end = f"$L_if{n}_else", f"$L_if{n}_end"
        self.emit(f"@!{cond} bra {other};")
        ys = self.region(op.regions[0]) or []
        self._copy(flat, [r for y in ys for r in y], kinds)
        self.emit(f"bra {end};")
        self.label(other)
        ys = self.region(op.regions[1]) or []
        self._copy(flat, [r for y in ys for r in y], kinds)
        self.label(end)
        for r, regs in zip(op.results, results):
            self.vals[r.uid] = regs

    # -- GPU ids and synchronisation -----------------------------------------------------------

    program_id_reg = "%ctaid.x"
    thread_id_reg = "%tid.x"

    def special(self, reg: str) -> str:
        t, d = self.reg("i32"), self.reg("i64")
        self.emit(f"mov.u32 {t}, {reg};")
        self.emit(f"cvt.u64.u32 {d}, {t};")
        return d

    def op_barrier(self, op: Op) -> None:
        self.emit("bar.sync 0;")

    def op_shuffle_xor(self, op: Op) -> None:
        x = self.r(op.operands[0])[0]
        k = elem_of(op.result.ty).kind
        m = int(op.attr("mask"))  # type: ignore[arg-type]
        d = self.reg(k)

        def shfl(dst: str, src: str) -> None:
            self.emit(f"shfl.sync.bfly.b32 {dst}, {src}, {m}, 31, -1;")

        if k in ("i32", "f32"):
            shfl(d, x)
        elif k in ("i64", "f64"):
            lo, hi, lo2, hi2 = (self.reg("i32") for _ in range(4))
            self.emit(f"mov.b64 {{{lo}, {hi}}}, {x};")
            shfl(lo2, lo)
            shfl(hi2, hi)
            self.emit(f"mov.b64 {d}, {{{lo2}, {hi2}}};")
        elif k == "i1":
            t, t2 = self.reg("i32"), self.reg("i32")
            self.emit(f"selp.u32 {t}, 1, 0, {x};")
            shfl(t2, t)
            self.emit(f"setp.ne.u32 {d}, {t2}, 0;")
        else:  # 16-bit registers
            t, t2 = self.reg("i32"), self.reg("i32")
            self.emit(f"cvt.u32.u16 {t}, {x};")
            shfl(t2, t)
            self.emit(f"cvt.u16.u32 {d}, {t2};")
        self.set(op, [d])

    # -- matrix units and asynchronous copies (tessera/ir/gpu_mma.py) --------------------------

    def op_ptrcast(self, op: Op) -> None:
        self.set(op, self.r(op.operands[0]))

    def op_cp_async(self, op: Op) -> None:
        dst, src, size = (self.r(v)[0] for v in op.operands)
        n = int(op.attr("bytes"))  # type: ignore[arg-type]
        cache = "cg" if n == 16 else "ca"  # .cg (L2 only) takes 16-byte copies alone
        self.emit(f"cp.async.{cache}.shared.global [{dst}], [{src}], {n}, {size};")

    def op_cp_async_commit(self, op: Op) -> None:
        self.emit("cp.async.commit_group;")

    def op_cp_async_wait(self, op: Op) -> None:
        self.emit(f"cp.async.wait_group {int(op.attr('pending'))};")  # type: ignore[arg-type]

    def op_ldmatrix(self, op: Op) -> None:
        n = int(op.attr("count"))  # type: ignore[arg-type]
        regs = [self.reg("i32") for _ in range(n)]
        trans = ".trans" if op.attr("trans") else ""
        self.emit(f"ldmatrix.sync.aligned.m8n8.x{n}{trans}.shared.b16 {{{', '.join(regs)}}}, "
                  f"[{self.r(op.operands[0])[0]}];")
        self.set(op, regs)

    def op_mma(self, op: Op) -> None:
        from tessera.ir.gpu_mma import mma_layout

        lay = mma_layout(str(op.attr("layout")))
        if not lay.name.startswith("nv_"):
            raise TargetIRError(f"PTX emitter: mma layout {lay.name} is not an NVIDIA matrix unit")
        ab = str(op.attr("ab"))
        a, b, c = (self.r(v) for v in op.operands)
        d = [self.reg("f32") for _ in range(lay.c_regs)]

        def group(rs: list[str]) -> str:
            return "{" + ", ".join(rs) + "}"

        self.emit(f"mma.sync.aligned.m{lay.m}n{lay.n}k{lay.k}.row.col.f32.{ab}.{ab}.f32 "
                  f"{group(d)}, {group(a)}, {group(b)}, {group(c)};")
        self.set(op, d)


def dynamic_shared_bytes(ptx: str) -> dict[str, int]:
    """Kernel name -> bytes of dynamic shared memory, for the kernels of a module that use it (the
    runtime opts each in at load and passes the size at launch)."""
    return {m.group(2): int(m.group(1)) for m in
            re.finditer(r"// dynamic shared memory: (\d+) bytes\n\.visible \.entry (\w+)\(", ptx)}


def emit_function(f: Function) -> str:
    """One kernel's `.entry` (without the module header)."""
    return _Emitter(f).run()


def emit_ptx(module: Module, arch: str = DEFAULT_ARCH) -> str:
    """A PTX module for `arch` holding every function of the Target IR module as a kernel entry."""
    if arch not in ARCHS:
        raise TargetIRError(f"unknown CUDA architecture '{arch}' (known: {', '.join(ARCHS)})")
    info = ARCHS[arch]
    head = ["//", "// Generated by Tessera (tessera/codegen/ptx.py)", "//",
            f".version {info.ptx_version}", f".target {info.name}", ".address_size 64", ""]
    entries = [emit_function(f) for f in module.functions]
    if any(DYNAMIC_SMEM in e for e in entries):
        head.append(f".extern .shared .align 16 .b8 {DYNAMIC_SMEM}[];\n")
    return "\n".join(head) + "\n" + "\n".join(entries)


__all__ = ["ARCHS", "DEFAULT_ARCH", "GPU_EXPANDED_MATH", "STATIC_SHARED_BYTES", "ArchInfo", "arch_for_capability",
           "cuda_target_info", "dynamic_shared_bytes", "emit_function", "emit_ptx"]
