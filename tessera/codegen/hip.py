"""The HIP emitter: Target IR (as tessera/ir/tile_to_target_gpu.py writes it) -> HIP C++ for AMD GPUs.

A printer of the same Target IR the PTX emitter prints (tessera/codegen/ptx.py): nothing above the
Target IR knows the vendor. What differs between AMD GPUs - the wavefront size (64 on CDNA, 32 on
RDNA) - is a TargetInfo field (`hip_target_info`, tessera/ir/target/info.py) that the shared GPU
lowering reads; this module only spells the ops in C++.

Every kernel is an `extern "C" __global__` function with `__launch_bounds__(threads)`; every lane
of a Target IR value is one C++ local (`v12`), declared where the op defines it, so the C++ keeps
the IR's structure: `for` is a counted C++ loop whose carried values are variables assigned at the
end of the body (through temporaries: a parallel copy), `if` assigns its results in both branches.
`splat`, `extract` and `insert` name existing locals.

The semantics are the PTX emitter's, spelled so that clang cannot weaken them:

- floats are IEEE: `#pragma clang fp contract(off)` (no fused multiply-add the lowering did not ask
  for), `fma` is `__builtin_fma`, division is HIP's correctly rounded `/` and `sqrt` the correctly
  rounded device-library function (compile with -fhip-fp32-correctly-rounded-divide-sqrt, HIP's
  default: `COMPILE_FLAGS`); `max`/`min` propagate NaN and order -0 below +0 (`tf_fmax`);
- integers wrap: add/sub/mul/neg/shl compute in the unsigned type (signed overflow would be undefined
  in C++); float -> int conversions saturate with NaN -> 0 (a C++ conversion out of range would be
  undefined); bit casts are `__builtin_bit_cast`;
- memory: a vector access is split into aligned pieces of at most 16 bytes, each one access of a
  clang vector type (`tf_f32x4`: `global_load_dwordx4`, `ds_read_b128` in LDS); the lowering emits
  unmasked vector accesses only at addresses aligned for them. Masked loads, gathers and scatters are
  per lane under an `if`. Shared memory is one `__shared__` byte array per kernel (the LDS), cut into
  16-byte aligned pieces;
- `program_id`/`thread_id` read `blockIdx.x`/`threadIdx.x`, `barrier` is `__syncthreads()`,
  `shuffle_xor` is `__shfl_xor` across the whole wavefront (`width` = the target's warp size);
- `mma` with an AMD fragment layout (tessera/ir/gpu_mfma.py) is the MFMA builtin on the lanes'
  registers packed into clang vectors; `cp_async` is a synchronous 16-byte copy with zero fill (so
  `cp_async_commit`/`cp_async_wait` print nothing); `ldmatrix` (NVIDIA only) is an error.

The math functions a GPU has no correctly rounded instruction for (exp, log, tanh, erf, sin, cos,
pow, f32 fmod; the f64 ones) are expanded by the lowering exactly as for CUDA (`hip_target_info`
lists the same expansions), so no library math is called. An f64 remainder and f16 arithmetic are
"not available yet" errors (GpuUnsupported), as for PTX: the same programs compile for both vendors.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from dataclasses import dataclass, field

from tessera.codegen.gpu_printer import GpuPrinter
from tessera.ir.gpu_layout import GpuUnsupported
from tessera.ir.target.info import DEFAULT_AMD_ARCH, amd_arch
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

# clang/hiprtc flags the emitted source is written for: IEEE division and square root, no contraction.
COMPILE_FLAGS = ("-O3", "-ffp-contract=off", "-fhip-fp32-correctly-rounded-divide-sqrt")

_C = {"i1": "bool", "i8": "signed char", "i16": "short", "i32": "int", "i64": "long long",
      "f16": "_Float16", "f32": "float", "f64": "double"}
_U = {"i8": "unsigned char", "i16": "unsigned short", "i32": "unsigned", "i64": "unsigned long long"}
_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}
_CMP = {"oeq": "{a} == {b}", "one": "({a} < {b} || {a} > {b})", "olt": "{a} < {b}", "ole": "{a} <= {b}",
        "ogt": "{a} > {b}", "oge": "{a} >= {b}", "ueq": "!({a} < {b} || {a} > {b})", "une": "{a} != {b}",
        "ult": "!({a} >= {b})", "ule": "!({a} > {b})", "ugt": "!({a} <= {b})", "uge": "!({a} < {b})",
        "ord": "({a} == {a} && {b} == {b})", "uno": "({a} != {a} || {b} != {b})",
        "eq": "{a} == {b}", "ne": "{a} != {b}", "slt": "{a} < {b}", "sle": "{a} <= {b}", "sgt": "{a} > {b}",
        "sge": "{a} >= {b}"}
_UNSIGNED_CMP = {"ult": "<", "ule": "<=", "ugt": ">", "uge": ">="}
_ROUND = {"floor": "__builtin_floor", "ceil": "__builtin_ceil", "rint": "__builtin_rint",
          "trunc": "__builtin_trunc"}

PRELUDE = """\
#if !defined(__HIPCC_RTC__)  // hiprtc declares the device runtime itself
#include <hip/hip_runtime.h>
#endif
#pragma clang fp contract(off)

// max/min as llvm.maximum/minimum: NaN propagates, -0 orders below +0.
template <typename T> __device__ __forceinline__ T tf_fmax(T a, T b) {
  if (a != a || b != b) return a + b;
  if (a == b) return __builtin_signbit(a) ? b : a;
  return a > b ? a : b;
}
template <typename T> __device__ __forceinline__ T tf_fmin(T a, T b) {
  if (a != a || b != b) return a + b;
  if (a == b) return __builtin_signbit(a) ? a : b;
  return a < b ? a : b;
}
"""


def _wide(kind: str) -> str:
    """The unsigned type integer arithmetic of `kind` wraps in."""
    return "unsigned long long" if kind == "i64" else "unsigned"


def _int_lit(value: int, kind: str) -> str:
    bits = _BITS.get(kind, 64)
    v = ((int(value) + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))  # the signed value of kind
    if kind == "i64":
        return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else f"{v}LL"
    if kind == "i32":
        return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)
    return f"(({_C[kind]}){v})"


def _float_lit(value: float, kind: str) -> str:
    if kind == "f16":
        return f"__builtin_bit_cast(_Float16, (unsigned short){struct.unpack('<H', struct.pack('<e', value))[0]:#x})"
    if kind == "f32":
        x = struct.unpack("<f", struct.pack("<f", value))[0]
        if not math.isfinite(x):
            return f"__builtin_bit_cast(float, {struct.unpack('<I', struct.pack('<f', value))[0]:#x}u)"
        return f"{x.hex()}f"
    if not math.isfinite(value):
        return f"__builtin_bit_cast(double, {struct.unpack('<Q', struct.pack('<d', value))[0]:#x}ull)"
    return float(value).hex()


def _sanitize(hint: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in hint)
    if not out or not (out[0].isalpha() or out[0] == "_") or re.fullmatch(r"[vcmpswi]\d+|tf_.*", out):
        return f"a_{out}"  # not a C++ name, or one of the emitter's locals
    return out


def _ctype(v: Value) -> str:
    t = v.ty
    if isinstance(t, Pointer):
        return f"{_C[t.elem.kind]}*"
    return _C[elem_of(t).kind]


@dataclass
class _Types:
    """The clang vector types a module uses (one typedef each)."""

    used: dict[str, str] = field(default_factory=dict)

    def vector(self, kind: str, n: int) -> str:
        name = f"tf_{kind}x{n}"
        self.used.setdefault(name, f"typedef {_C[kind]} {name} __attribute__((ext_vector_type({n})));")
        return name


class _Emitter(GpuPrinter):
    vendor = "HIP"
    return_stmt = "return;"

    def __init__(self, f: Function, warp: int, types: _Types) -> None:
        super().__init__(f, "HIP")
        if f.threads % warp:
            raise TargetIRError(f"HIP emitter: @{f.name} has {f.threads} threads, not whole wavefronts of {warp}")
        self.warp = warp
        self.types = types
        self.depth = 1
        self.ids = itertools.count()

    # -- locals ----------------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def fresh(self, prefix: str = "v") -> str:
        return f"{prefix}{next(self.ids)}"

    def define(self, ctype: str, expr: str, prefix: str = "v") -> str:
        name = self.fresh(prefix)
        self.emit(f"{ctype} const {name} = {expr};" if ctype.endswith("*") else f"const {ctype} {name} = {expr};")
        return name

    def lane(self, v: Value, i: int) -> str:
        regs = self.r(v)
        return regs[i] if len(regs) > 1 else regs[0]

    def lanewise(self, op: Op, expr: str) -> None:
        """result lane i := expr formatted with the operands' lane i as {0}, {1}, ..."""
        ct = _C[elem_of(op.result.ty).kind]
        out = []
        for i in range(lanes_of(op.result.ty)):
            out.append(self.define(ct, expr.format(*(self.lane(v, i) for v in op.operands))))
        self.set(op, out)

    # -- the function ----------------------------------------------------------------------------

    def run(self) -> str:
        f = self.f
        self.layout_shared(f.body)
        params = []
        for p in f.params:
            name = self.unique(_sanitize(p.hint or f"arg{p.uid}"))
            if isinstance(p.ty, Scalar) and p.ty.kind not in ("i32", "i64", "f32", "f64"):
                raise TargetIRError(f"HIP emitter: parameter type {p.ty.kind} is not supported")
            params.append(f"{_ctype(p)} {name}")
            self.vals[p.uid] = [name]
        if self.shared_size:
            self.emit(f"__shared__ __attribute__((aligned(16))) unsigned char tf_smem[{self.shared_size}];")
        self.region(f.body)
        head = [f"// {f.doc}" if f.doc else f"// kernel {f.name}",
                f'extern "C" __global__ void __launch_bounds__({f.threads}) {f.name}(',
                ",\n".join(f"    {p}" for p in params) + ") {"]
        return "\n".join([*head, *self.lines, "}"]) + "\n"

    # -- constants and lanes (splat, extract and insert: GpuPrinter) -------------------------------

    def constant(self, kind: str, x: object) -> str:
        if kind == "i1":
            lit = "true" if x else "false"
        elif kind[0] == "f":
            lit = _float_lit(float(x), kind)  # type: ignore[arg-type]
        else:
            lit = _int_lit(int(x), kind)  # type: ignore[call-overload]
        return self.define(_C[kind], lit, "c")

    def op_vreduce(self, op: Op) -> None:
        elem = elem_of(op.operands[0].ty)
        names = self.r(op.operands[0])
        acc = names[0]
        for x in names[1:]:
            acc = self.define(_C[elem.kind], self.binary(str(op.attr("kind")), acc, x, elem.kind))
        self.set(op, [acc])

    # -- arithmetic ------------------------------------------------------------------------------

    def _binary_op(self, op: Op) -> None:
        k = elem_of(op.operands[0].ty).kind
        a, b = op.operands
        out = [self.define(_C[k], self.binary(op.name, self.lane(a, i), self.lane(b, i), k))
               for i in range(lanes_of(op.result.ty))]
        self.set(op, out)

    op_add = op_sub = op_mul = op_div = op_rem = op_udiv = op_urem = _binary_op
    op_max = op_min = op_umax = op_umin = _binary_op
    op_and = op_or = op_xor = op_shl = op_lshr = op_ashr = _binary_op

    def binary(self, name: str, x: str, y: str, k: str) -> str:
        """The C++ expression of `x name y` on lanes of kind k."""
        if k[0] == "f":
            return self._float_binary(name, x, y, k)
        if k == "i1":
            sym = {"and": "&", "or": "|", "xor": "^", "max": "|", "min": "&", "umax": "|", "umin": "&",
                   "add": "^", "sub": "^", "mul": "&"}.get(name)
            if sym is None:
                raise TargetIRError(f"HIP emitter: {name} on i1")
            return f"({x} {sym} {y})"
        c, u, w = _C[k], _U[k], _wide(k)
        if name in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[name]
            return f"({c})(({w}){x} {sym} ({w}){y})"
        if name == "shl":
            return f"({c})(({w}){x} << {y})"
        if name == "lshr":
            return f"({c})(({u}){x} >> {y})"
        if name == "ashr":
            return f"({c})({x} >> {y})"
        if name in ("div", "rem"):
            return f"({c})({x} {'/' if name == 'div' else '%'} {y})"
        if name in ("udiv", "urem"):
            return f"({c})(({u}){x} {'/' if name == 'udiv' else '%'} ({u}){y})"
        if name in ("max", "min"):
            return f"({x} {'>' if name == 'max' else '<'} {y} ? {x} : {y})"
        if name in ("umax", "umin"):
            return f"(({u}){x} {'>' if name == 'umax' else '<'} ({u}){y} ? {x} : {y})"
        if name in ("and", "or", "xor"):
            return f"({c})({x} {({'and': '&', 'or': '|', 'xor': '^'})[name]} {y})"
        raise TargetIRError(f"HIP emitter: integer {name}")

    def _float_binary(self, name: str, x: str, y: str, k: str) -> str:
        if k == "f16":
            raise GpuUnsupported("HIP emitter: f16 arithmetic (the lowering computes f16 values in f32)")
        if name in ("add", "sub", "mul", "div"):
            return f"{x} {({'add': '+', 'sub': '-', 'mul': '*', 'div': '/'})[name]} {y}"
        if name in ("max", "min"):
            return f"tf_f{name}({x}, {y})"
        if name == "rem":
            raise GpuUnsupported("HIP emitter: float remainder (floordiv/mod of float blocks) is not supported on "
                                "the hip target yet")
        raise TargetIRError(f"HIP emitter: {name} on {k}")

    def _unary(self, op: Op, fn: str) -> None:
        k = elem_of(op.result.ty).kind
        c = _C[k]
        out = []
        for i in range(lanes_of(op.result.ty)):
            x = self.lane(op.operands[0], i)
            if fn in ("neg", "abs") and k == "i1":
                out.append(x)
                continue
            if fn == "neg" and k[0] == "i":
                expr = f"({c})(0u - ({_wide(k)}){x})"
            elif fn == "abs" and k[0] == "i":
                expr = f"({c})({x} < 0 ? 0u - ({_wide(k)}){x} : ({_wide(k)}){x})"
            elif k in ("f32", "f64"):
                sfx = "f" if k == "f32" else ""
                if fn == "neg":
                    expr = f"-{x}"
                elif fn == "abs":
                    expr = f"__builtin_fabs{sfx}({x})"
                elif fn == "sqrt":
                    expr = f"sqrt{sfx}({x})"  # the device library's correctly rounded square root
                elif fn in _ROUND:
                    expr = f"{_ROUND[fn]}{sfx}({x})"
                else:
                    raise GpuUnsupported(f"HIP emitter: {fn} on {k} has no accurate instruction and no expansion "
                                        "yet")
            else:
                raise TargetIRError(f"HIP emitter: {fn} on {k}")
            out.append(self.define(c, expr))
        self.set(op, out)

    def _unary_op(self, op: Op) -> None:
        self._unary(op, op.name)

    op_neg = op_abs = op_sqrt = op_floor = op_ceil = op_rint = op_trunc = _unary_op
    op_exp = op_log = op_sin = op_cos = op_tanh = op_erf = _unary_op

    def op_pow(self, op: Op) -> None:
        raise GpuUnsupported("HIP emitter: pow has no accurate instruction and no expansion yet")

    def op_fma(self, op: Op) -> None:
        sfx = "f" if elem_of(op.result.ty).kind == "f32" else ""
        self.lanewise(op, f"__builtin_fma{sfx}({{0}}, {{1}}, {{2}})")

    def op_copysign(self, op: Op) -> None:
        sfx = "f" if elem_of(op.result.ty).kind == "f32" else ""
        self.lanewise(op, f"__builtin_copysign{sfx}({{0}}, {{1}})")

    # -- compare, select, cast -------------------------------------------------------------------

    def op_cmp(self, op: Op) -> None:
        k = elem_of(op.operands[0].ty).kind
        pred = str(op.attr("pred"))
        if k == "f16":
            raise GpuUnsupported("HIP emitter: f16 comparison (the lowering compares in f32)")
        if k == "i1" and pred not in ("eq", "ne"):
            raise TargetIRError(f"HIP emitter: {pred} on i1")
        out = []
        for i in range(lanes_of(op.result.ty)):
            a, b = (self.lane(v, i) for v in op.operands)
            if k[0] == "i" and pred in _UNSIGNED_CMP:
                u = _U[k]
                expr = f"({u}){a} {_UNSIGNED_CMP[pred]} ({u}){b}"
            else:
                expr = _CMP[pred].format(a=a, b=b)
            out.append(self.define("bool", expr))
        self.set(op, out)

    def op_select(self, op: Op) -> None:
        self.lanewise(op, "{0} ? {1} : {2}")

    def op_cast(self, op: Op) -> None:
        kind = str(op.attr("kind"))
        src = elem_of(op.operands[0].ty).kind
        dst = str(op.attr("to"))
        if kind == "bitcast" and src == dst:
            self.set(op, self.r(op.operands[0]))
            return
        out = [self.define(_C[dst], self.cast(kind, self.lane(op.operands[0], i), src, dst))
               for i in range(lanes_of(op.result.ty))]
        self.set(op, out)

    def cast(self, kind: str, x: str, src: str, dst: str) -> str:
        c = _C[dst]
        if kind in ("fpext", "fptrunc"):
            return f"({c}){x}"  # round to nearest even
        if kind in ("sitofp", "uitofp"):
            if src == "i1":
                return f"({c})({x} ? {'-1' if kind == 'sitofp' else '1'} : 0)"
            return f"({c})({_U[src]}){x}" if kind == "uitofp" else f"({c}){x}"
        if kind in ("fptosi_sat", "fptoui_sat"):
            if dst == "i1":
                raise TargetIRError("HIP emitter: float -> i1 conversion")
            return self._fp_to_int_sat(x, src, dst, kind == "fptosi_sat")
        if kind == "sext":
            return f"({c})({x} ? -1 : 0)" if src == "i1" else f"({c}){x}"
        if kind == "zext":
            return f"({c})({x} ? 1 : 0)" if src == "i1" else f"({c})({_U[src]}){x}"
        if kind == "trunc":
            return f"(({x} & 1) != 0)" if dst == "i1" else f"({c})({_U[dst]}){x}"
        if kind == "bitcast":
            return f"__builtin_bit_cast({c}, {x})"
        raise TargetIRError(f"HIP emitter: cast {kind} from {src} to {dst}")

    def _fp_to_int_sat(self, x: str, src: str, dst: str, signed: bool) -> str:
        """Saturating float -> int, NaN -> 0: the bounds are powers of two, exact in every float kind."""
        bits = _BITS[dst]
        fc = _C[src]
        if signed:
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
            return (f"({x} != {x} ? ({_C[dst]})0 : {x} <= ({fc}){float(lo).hex()} ? {_int_lit(lo, dst)} : "
                    f"{x} >= ({fc}){float(hi).hex()} ? {_int_lit(hi - 1, dst)} : ({_C[dst]}){x})")
        u = _U[dst]
        return (f"({_C[dst]})({x} != {x} || {x} <= ({fc})0 ? ({u})0 : {x} >= ({fc}){float(2 ** bits).hex()} ? "
                f"({u}){_int_lit(-1, dst)} : ({u}){x})")

    # -- memory ----------------------------------------------------------------------------------

    def op_shared(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Pointer)
        off = self.shared_offsets[op.result.uid]
        self.set(op, [self.define(f"{_C[t.elem.kind]}*", f"({_C[t.elem.kind]}*)(tf_smem + {off})", "s")])

    def op_alloca(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Pointer)
        name = self.fresh("tf_local")
        self.emit(f"__attribute__((aligned(16))) {_C[t.elem.kind]} {name}[{int(op.attr('count'))}];")  # type: ignore[arg-type]
        self.set(op, [name])

    def op_ptradd(self, op: Op) -> None:
        p, off = op.operands
        c = self.consts.get(off.uid)
        if isinstance(c, int) and c == 0:
            self.set(op, self.r(p))
            return
        self.set(op, [self.define(_ctype(p), f"{self.r(p)[0]} + {self.r(off)[0]}", "p")])

    def op_ptrtoint(self, op: Op) -> None:
        self.set(op, [self.define("long long", f"(long long)(unsigned long long){self.r(op.operands[0])[0]}")])

    def _pieces(self, kind: str, lanes: int) -> list[tuple[int, int]]:
        """(first lane, lanes) of the aligned accesses a vector access is split into: 16 bytes at most,
        a power of two of lanes each."""
        eb = max(1, Scalar(kind).bits // 8)
        per = max(1, min(lanes, 16 // eb))
        if per & (per - 1) or lanes % per:
            return [(i, 1) for i in range(lanes)]
        return [(s, per) for s in range(0, lanes, per)]

    def op_load(self, op: Op) -> None:
        p = op.operands[0]
        assert isinstance(p.ty, Pointer)
        k = p.ty.elem.kind
        lanes = lanes_of(op.result.ty)
        base = self.r(p)[0]
        out: list[str] = []
        if len(op.operands) == 3:  # masked: lane by lane
            mask, other = op.operands[1], op.operands[2]
            for i in range(lanes):
                d = self.fresh()
                self.emit(f"{_C[k]} {d} = {self.lane(other, i)};")
                self.emit(f"if ({self.lane(mask, i)}) {d} = {base}[{i}];")
                out.append(d)
            self.set(op, out)
            return
        for first, n in self._pieces(k, lanes):
            if n == 1:
                out.append(self.define(_C[k], f"{base}[{first}]"))
                continue
            vt = self.types.vector(k, n)
            t = self.define(vt, f"*(const {vt}*)({base} + {first})", "w")
            out += [f"{t}[{i}]" for i in range(n)]
        self.set(op, out)

    def op_store(self, op: Op) -> None:
        p, v = op.operands[0], op.operands[1]
        assert isinstance(p.ty, Pointer)
        k = p.ty.elem.kind
        lanes = lanes_of(v.ty)
        base = self.r(p)[0]
        names = [self.lane(v, i) for i in range(lanes)]
        if len(op.operands) == 3:
            mask = op.operands[2]
            for i in range(lanes):
                self.emit(f"if ({self.lane(mask, i)}) {base}[{i}] = {names[i]};")
            return
        for first, n in self._pieces(k, lanes):
            if n == 1:
                self.emit(f"{base}[{first}] = {names[first]};")
                continue
            vt = self.types.vector(k, n)
            self.emit(f"*({vt}*)({base} + {first}) = ({vt}){{{', '.join(names[first:first + n])}}};")

    def op_gather(self, op: Op) -> None:
        p, offs, mask, other = op.operands
        assert isinstance(p.ty, Pointer)
        k = p.ty.elem.kind
        out = []
        for i in range(lanes_of(op.result.ty)):
            d = self.fresh()
            self.emit(f"{_C[k]} {d} = {self.lane(other, i)};")
            self.emit(f"if ({self.lane(mask, i)}) {d} = {self.r(p)[0]}[{self.lane(offs, i)}];")
            out.append(d)
        self.set(op, out)

    def op_scatter(self, op: Op) -> None:
        p, offs, v, mask = op.operands
        for i in range(lanes_of(v.ty)):
            self.emit(f"if ({self.lane(mask, i)}) {self.r(p)[0]}[{self.lane(offs, i)}] = {self.lane(v, i)};")

    # -- control ---------------------------------------------------------------------------------

    def _types_of(self, v: Value) -> list[str]:
        t = v.ty
        if isinstance(t, Pointer):
            return [_ctype(v)]
        return [_C[elem_of(t).kind]] * lanes_of(t)

    def _vars(self, v: Value, init: list[str] | None) -> list[str]:
        """Mutable locals for the lanes of v (loop-carried values, if results)."""
        out = []
        for i, ct in enumerate(self._types_of(v)):
            d = self.fresh("m")
            self.emit(f"{ct} {d}{f' = {init[i]}' if init is not None else ''};")
            out.append(d)
        return out

    def _copy(self, dsts: list[str], srcs: list[str], types: list[str]) -> None:
        """dsts := srcs as a parallel copy (a source may be one of the destinations)."""
        if set(srcs) & set(dsts):
            srcs = [self.define(t, s) for s, t in zip(srcs, types)]
        for d, s in zip(dsts, srcs):
            if d != s:
                self.emit(f"{d} = {s};")

    def op_for(self, op: Op) -> None:
        lo, hi, step, *inits = op.operands
        body = op.regions[0]
        carried: list[str] = []
        types: list[str] = []
        for a, init in zip(body.args[1:], inits):
            names = self._vars(a, [self.lane(init, i) for i in range(len(self._types_of(a)))])
            self.vals[a.uid] = names
            carried += names
            types += self._types_of(a)
        iv = self.fresh("i")
        self.vals[body.args[0].uid] = [iv]
        self.emit(f"for (long long {iv} = {self.r(lo)[0]}; {iv} < {self.r(hi)[0]}; {iv} += {self.r(step)[0]}) {{")
        self.depth += 1
        ys = self.region(body) or []
        self._copy(carried, [n for y in ys for n in y], types)
        self.depth -= 1
        self.emit("}")
        it = iter(carried)
        for r in op.results:
            self.vals[r.uid] = [next(it) for _ in self._types_of(r)]

    def op_if(self, op: Op) -> None:
        results = [self._vars(r, None) for r in op.results]
        types = [t for r in op.results for t in self._types_of(r)]
        flat = [x for names in results for x in names]
        self.emit(f"if ({self.r(op.operands[0])[0]}) {{")
        for k, sub in enumerate(op.regions):
            if k:
                self.emit("} else {")
            start = len(self.lines)
            self.depth += 1
            ys = self.region(sub) or []
            self._copy(flat, [n for y in ys for n in y], types)
            self.depth -= 1
            if k and len(self.lines) == start:
                self.lines.pop()  # an empty else
        self.emit("}")
        for r, names in zip(op.results, results):
            self.vals[r.uid] = names

    # -- GPU ids and synchronisation -------------------------------------------------------------

    program_id_reg = "blockIdx.x"
    thread_id_reg = "threadIdx.x"

    def special(self, reg: str) -> str:
        return self.define("long long", f"(long long){reg}")

    def op_barrier(self, op: Op) -> None:
        self.emit("__syncthreads();")

    def op_shuffle_xor(self, op: Op) -> None:
        x = self.r(op.operands[0])[0]
        k = elem_of(op.result.ty).kind
        m = int(op.attr("mask"))  # type: ignore[arg-type]
        if m >= self.warp:
            raise TargetIRError(f"HIP emitter: shuffle_xor lane mask {m} crosses a wavefront of {self.warp}")
        w = self.warp
        if k in ("i32", "f32", "f64", "i64"):
            expr = f"__shfl_xor({x}, {m}, {w})"
        elif k == "i1":
            expr = f"__shfl_xor((int){x}, {m}, {w}) != 0"
        elif k == "f16":
            expr = f"__builtin_bit_cast(_Float16, (unsigned short)__shfl_xor((int)__builtin_bit_cast(unsigned short, {x}), {m}, {w}))"
        else:
            expr = f"({_C[k]})__shfl_xor((int){x}, {m}, {w})"
        self.set(op, [self.define(_C[k], expr)])


    # -- matrix cores and shared-memory copies (tessera/ir/gpu_mfma.py, tessera/ir/gpu_pipeline.py) --

    def op_mma(self, op: Op) -> None:
        from tessera.ir.gpu_mfma import BUILTINS
        from tessera.ir.gpu_mma import mma_layout

        lay = mma_layout(str(op.attr("layout")))
        ab = str(op.attr("ab"))
        builtin = BUILTINS.get((lay.name, ab))
        if builtin is None:
            raise TargetIRError(f"HIP emitter: mma layout {lay.name} on {ab} is not an AMD matrix core instruction")
        a, b, c = (self.r(v) for v in op.operands)
        pair, half = self.types.vector("i32", 2), self.types.vector("i16" if ab == "bf16" else "f16", 4)
        acc = self.types.vector("f32", lay.c_regs)

        def operand(regs: list[str]) -> str:
            return f"__builtin_bit_cast({half}, ({pair}){{{', '.join(regs)}}})"

        d = self.define(acc, f"{builtin}({operand(a)}, {operand(b)}, ({acc}){{{', '.join(c)}}}, 0, 0, 0)", "w")
        self.set(op, [f"{d}[{i}]" for i in range(lay.c_regs)])

    def op_cp_async(self, op: Op) -> None:
        """The copy done at once (the wait ops have nothing left to wait for): `bytes` bytes, those
        from `size` on zero."""
        dst, src, size = (self.r(v)[0] for v in op.operands)
        n = int(op.attr("bytes"))  # type: ignore[arg-type]
        vt = self.types.vector("i32", n // 4) if n > 4 else "int"
        self.emit(f"if ({size} >= {n}) {{")
        self.emit(f"  *({vt}*){dst} = *(const {vt}*){src};")
        self.emit("} else {")
        self.emit(f"  for (int b = 0; b < {n}; ++b) ((unsigned char*){dst})[b] = "
                  f"b < {size} ? ((const unsigned char*){src})[b] : (unsigned char)0;")
        self.emit("}")

    def op_cp_async_commit(self, op: Op) -> None:
        pass  # cp_async copies are complete when issued

    def op_cp_async_wait(self, op: Op) -> None:
        pass

    def op_ptrcast(self, op: Op) -> None:
        t = op.result.ty
        assert isinstance(t, Pointer)
        ct = f"{_C[t.elem.kind]}*"
        self.set(op, [self.define(ct, f"({ct}){self.r(op.operands[0])[0]}", "p")])

    def op_ldmatrix(self, op: Op) -> None:
        raise TargetIRError("HIP emitter: ldmatrix is an NVIDIA warp instruction (AMD fragments are read per lane)")


def emit_function(f: Function, warp: int, types: _Types | None = None) -> str:
    """One kernel's C++ (without the module prelude) for wavefronts of `warp` threads."""
    return _Emitter(f, warp, types if types is not None else _Types()).run()


def emit_hip(module: Module, arch: str = DEFAULT_AMD_ARCH) -> str:
    """A HIP C++ translation unit for `arch` holding every function of the Target IR module as an
    `extern "C" __global__` kernel (compile it with hiprtc or `clang -x hip`, with COMPILE_FLAGS)."""
    try:
        a = amd_arch(arch)
    except ValueError as ex:
        raise TargetIRError(str(ex)) from None
    types = _Types()
    kernels = [emit_function(f, a.wave, types) for f in module.functions]
    head = ["//", "// Generated by Tessera (tessera/codegen/hip.py)", f"// for {a.name}: wavefronts of {a.wave}",
            "//", PRELUDE, *types.used.values(), ""]
    return "\n".join(head) + "\n" + "\n".join(kernels)


__all__ = ["COMPILE_FLAGS", "PRELUDE", "emit_function", "emit_hip"]
