"""The semantics of Tile IR's elementwise ops on Target IR lanes, shared by every lowering to
Target IR (any lane count; scalars are one lane).

Where NumPy and IEEE leave a choice the ops follow NumPy: integer `div`/`floordiv`/`mod` are
Python's floor division and modulo and give 0 for a zero divisor (compiled code must not trap);
integer `pow` wraps, and truncates toward zero for a negative exponent (where NumPy raises);
float `floordiv`/`mod` follow NumPy's divmod; `maximum`/`minimum` propagate NaN; comparisons are
ordered except `ne`; narrow float results are rounded to their dtype after each op
(tessera/ir/target/convert.py); math functions come from the target's MathLib.
"""

from __future__ import annotations

import math

from tessera.codegen.mathlib import MathLib
from tessera.dtypes import BOOL, DType
from tessera.ir.target import convert as cv
from tessera.ir.target.builder import Builder
from tessera.ir.target.ops import I1, TargetIRError, Value, Vector, vec
from tessera.ir.tile.ops import Op

FLOAT_PRED = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
SIGNED_PRED = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
UNSIGNED_PRED = {"eq": "eq", "ne": "ne", "lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge"}


def compare_predicate(pred: str, dt: DType) -> str:
    """The Target IR predicate of a Tile `cmp` on operands of dtype dt."""
    if dt.is_float:
        return FLOAT_PRED[pred]
    return (UNSIGNED_PRED if cv.is_unsigned(dt) else SIGNED_PRED)[pred]


class Elementwise:
    def __init__(self, b: Builder, math_lib: MathLib) -> None:
        self.b = b
        self.math = math_lib

    def __call__(self, op: Op, args: list[Value]) -> Value:
        """One elementwise tile op on compute lanes (scalars or vectors of one width)."""
        b = self.b
        name = op.name
        in_dt: DType = op.operands[0].ty.dtype  # type: ignore[union-attr]
        out_dt: DType = op.result.ty.dtype  # type: ignore[union-attr]
        m = self.math
        if name == "cast":
            return cv.convert(b, args[0], in_dt, out_dt, str(op.attr("rounding")))
        if name == "select":
            return b.select(args[0], args[1], args[2])
        if name == "cmp":
            return b.cmp(compare_predicate(str(op.attr("pred")), in_dt), args[0], args[1])
        if name == "isnan":
            return b.cmp("uno", args[0], args[0]) if in_dt.is_float else b.const(False, vec(I1, _lanes(args[0])))
        if name == "isinf":
            if not in_dt.is_float:
                return b.const(False, vec(I1, _lanes(args[0])))
            return b.cmp("oeq", b.op("abs", args[0]), b.like(math.inf, args[0]))
        if in_dt == BOOL:
            return self._bool_op(name, args)
        if not in_dt.is_float:
            return self._int_op(name, args, in_dt)
        x = args[0]
        if name in ("add", "sub", "mul", "div"):
            r = b.op(name, *args)
        elif name == "pow":
            r = m.pow(args[0], args[1])
        elif name in ("maximum", "minimum"):
            r = b.op("max" if name == "maximum" else "min", *args)
        elif name == "floordiv":
            r = self.float_divmod(args[0], args[1])[0]
        elif name == "mod":
            r = self.float_divmod(args[0], args[1])[1]
        elif name == "neg":
            r = b.op("neg", x)
        elif name == "abs":
            r = b.op("abs", x)
        elif name == "relu":
            r = b.op("max", x, b.like(0.0, x))
        elif name == "exp":
            r = m.exp(x)
        elif name == "log":
            r = m.log(x)
        elif name == "log1p":
            r = m.log1p(x)
        elif name == "sqrt":
            r = b.op("sqrt", x)
        elif name == "rsqrt":
            r = b.op("div", b.like(1.0, x), b.op("sqrt", x))
        elif name == "sin":
            r = m.sin(x)
        elif name == "cos":
            r = m.cos(x)
        elif name == "tanh":
            r = m.tanh(x)
        elif name == "erf":
            r = m.erf(x)
        elif name == "sigmoid":
            r = m.sigmoid(x)
        elif name == "silu":
            r = m.silu(x)
        elif name == "gelu":
            r = m.gelu(x, str(op.attr("approximate")))
        else:
            raise TargetIRError(f"lowering: elementwise '{name}' is not defined for {in_dt}")
        if name in ("neg", "abs", "relu", "maximum", "minimum"):
            return r  # exact: the result is already representable in the operand dtype
        return cv.round_to(b, r, out_dt)

    def _bool_op(self, name: str, args: list[Value]) -> Value:
        b = self.b
        table = {"and": "and", "or": "or", "maximum": "or", "minimum": "and", "add": "or", "mul": "and"}
        if name in table:
            return b.op(table[name], *args)
        if name == "not":
            return b.op("xor", args[0], b.like(1, args[0]))
        if name == "neg" or name == "abs":
            return args[0]
        raise TargetIRError(f"lowering: '{name}' on bool blocks is not supported; cast to an integer dtype first")

    def _int_op(self, name: str, args: list[Value], dt: DType) -> Value:
        b = self.b
        unsigned = cv.is_unsigned(dt)
        if name in ("add", "sub", "mul", "and", "or"):
            return b.op(name, *args)
        if name in ("maximum", "minimum", "relu"):
            k = "max" if name in ("maximum", "relu") else "min"
            other = args[1] if name != "relu" else b.like(0, args[0])
            return b.op("u" + k if unsigned else k, args[0], other)
        if name in ("div", "floordiv"):
            return self.floor_div(args[0], args[1], dt)
        if name == "mod":
            return self.int_mod(args[0], args[1], dt)
        if name == "neg":
            return b.op("neg", args[0])
        if name == "abs":
            return args[0] if unsigned else b.op("abs", args[0])
        if name == "not":
            return b.op("xor", args[0], b.like(-1, args[0]))
        if name == "pow":
            return self.int_pow(args[0], args[1], dt)
        raise TargetIRError(f"lowering: elementwise '{name}' is not defined for {dt} (cast to a float dtype)")

    def int_pow(self, a: Value, e: Value, dt: DType) -> Value:
        """a ** e on integers, wrapping like NumPy's: square and multiply over every bit of e. A
        negative exponent (NumPy raises; compiled code must not trap) gives the exact result
        truncated toward zero: 1 for a == 1, ±1 for a == -1, else 0."""
        b = self.b
        bits = e.ty.elem.bits if isinstance(e.ty, Vector) else e.ty.bits  # type: ignore[union-attr]
        one = b.like(1, a)
        result, base, rest = one, a, e
        for _ in range(bits if cv.is_unsigned(dt) else bits - 1):
            odd = b.cmp("ne", b.op("and", rest, b.like(1, rest)), b.like(0, rest))
            result = b.select(odd, b.op("mul", result, base), result)
            base = b.op("mul", base, base)
            rest = b.op("lshr", rest, b.like(1, rest))
        if cv.is_unsigned(dt):
            return result
        negative = b.cmp("slt", e, b.like(0, e))
        minus_one = b.cmp("eq", a, b.like(-1, a))
        odd_e = b.cmp("ne", b.op("and", e, b.like(1, e)), b.like(0, e))
        inverse = b.select(b.cmp("eq", a, one), one,
                           b.select(minus_one, b.select(odd_e, b.like(-1, a), one), b.like(0, a)))
        return b.select(negative, inverse, result)

    def _safe_divisor(self, a: Value, d: Value, unsigned: bool) -> tuple[Value, Value]:
        """A divisor that cannot trap (0 -> 1; MIN / -1 -> 1) and the mask of zero divisors."""
        b = self.b
        zero = b.cmp("eq", d, b.like(0, d))
        bad = zero
        if not unsigned:
            bits = a.ty.elem.bits if isinstance(a.ty, Vector) else a.ty.bits  # type: ignore[union-attr]
            minv = b.cmp("eq", a, b.like(-(1 << (bits - 1)), a))
            bad = b.op("or", zero, b.op("and", minv, b.cmp("eq", d, b.like(-1, d))))
        return b.select(bad, b.like(1, d), d), zero

    def _rounds_toward_zero(self, r: Value, d: Value) -> Value:
        """Where the truncating remainder r of a division by d is nonzero with the other sign than d:
        there the floored quotient is one below the truncated one, and the floored remainder r + d."""
        b = self.b
        return b.op("and", b.cmp("ne", r, b.like(0, r)),
                    b.cmp("ne", b.cmp("slt", r, b.like(0, r)), b.cmp("slt", d, b.like(0, d))))

    def floor_div(self, a: Value, d: Value, dt: DType) -> Value:
        """Python's a // d on integers (0 where d == 0, as NumPy; MIN // -1 wraps to MIN)."""
        b = self.b
        unsigned = cv.is_unsigned(dt)
        dd, zero = self._safe_divisor(a, d, unsigned)
        if unsigned:
            q = b.op("udiv", a, dd)
        else:
            q = b.op("div", a, dd)
            r = b.op("rem", a, dd)
            q = b.op("sub", q, b.select(self._rounds_toward_zero(r, dd), b.like(1, q), b.like(0, q)))
            q = b.select(b.cmp("eq", d, b.like(-1, d)), b.op("neg", a), q)
        return b.select(zero, b.like(0, q), q)

    def int_mod(self, a: Value, d: Value, dt: DType) -> Value:
        """Python's a % d on integers (the sign of d; 0 where d == 0, as NumPy)."""
        b = self.b
        unsigned = cv.is_unsigned(dt)
        dd, zero = self._safe_divisor(a, d, unsigned)
        if unsigned:
            r = b.op("urem", a, dd)
        else:
            r = b.op("rem", a, dd)
            r = b.select(self._rounds_toward_zero(r, dd), b.op("add", r, dd), r)
        return b.select(zero, b.like(0, r), r)

    def float_divmod(self, a: Value, d: Value) -> tuple[Value, Value]:
        """NumPy's floor_divide and remainder on floats (npy_divmod)."""
        b = self.b
        zero = b.like(0.0, a)
        mod = self.math.fmod(a, d)
        div = b.op("div", b.op("sub", a, mod), d)
        nonzero = b.cmp("une", mod, zero)
        wrong_sign = b.cmp("ne", b.cmp("olt", d, zero), b.cmp("olt", mod, zero))
        fix = b.op("and", nonzero, wrong_sign)
        mod = b.select(fix, b.op("add", mod, d), mod)
        div = b.select(fix, b.op("sub", div, b.like(1.0, a)), div)
        mod = b.select(nonzero, mod, b.op("copysign", zero, d))
        fl = b.op("floor", div)
        fl = b.select(b.cmp("ogt", b.op("sub", div, fl), b.like(0.5, a)), b.op("add", fl, b.like(1.0, a)), fl)
        q = b.select(b.cmp("une", div, zero), fl, b.op("copysign", zero, b.op("div", a, d)))
        q = b.select(b.cmp("oeq", d, zero), b.op("div", a, d), q)
        return q, mod


def _lanes(v: Value) -> int:
    return v.ty.lanes if isinstance(v.ty, Vector) else 1
