"""Vectorised f32 math as Target IR op sequences (f64, and f32 sin/cos/pow/fmod: mathlib64.py).

LLVM turns `llvm.exp.v16f32` and friends into sixteen scalar libm calls on x86, far too slow for a
softmax or a gelu, so targets that list a function in `TargetInfo.expand_math` get these expansions
instead (any lane count, scalars included). Each is accurate to a few ulp over the whole f32 range
and keeps IEEE special values (NaN in -> NaN out, +-inf and signed zeros where the function defines
them):

- exp: Cody-Waite range reduction x = n ln2 + r (|r| <= ln2/2, n rounded by the 1.5 * 2^23 trick,
  which also yields n as an integer), a degree-7 Taylor polynomial of exp(r), and 2^n applied as two exact power-of-two factors, so subnormal results round once;
- log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m-1)/(m+1), as an odd
  series in s (|s| <= 0.172, s^2 <= 0.0295: nine terms give 2e-9);
- log1p: log(u) * x / (u - 1) with u = 1 + x, which cancels the rounding error of u;
- tanh: x + x^3 Q(x^2) for |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) with x's sign beyond;
- erf / erfc: x P(x^2) for |x| < 1; beyond, erfc(a) = exp(-a^2) / a * G(1/a) with a^2 split into
  an exact hi + lo pair (the exponent amplifies its rounding error by a^2); erfc on [0.5, 1) has its
  own polynomial M, where 1 - erf would cancel;
- sigmoid: e / (1 + e) or 1 / (1 + e) with e = exp(-|x|), so neither tail overflows;
- gelu: 0.5 x erfc(-x/sqrt2) (no cancellation for negative x), the tanh form as x * sigmoid(2u).

The polynomial coefficients (Q, P, G, M) are our own least-squares fits, weighted by the relative
error, on Chebyshev nodes of each interval (G in t - 0.55, t = 1/a in [1/10.1, 1]); in f32 Horner
form they are good to < 1e-7 relative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tessera.codegen import mathlib64 as m64
from tessera.ir.target.builder import Builder
from tessera.ir.target.ops import F32, F64, I32, TargetIRError, Value, elem_of, with_elem

# tanh(x) = x + x^3 Q(x^2), |x| < 0.625
TANH_Q = (-0.3333333316417312, 0.1333330272916927, -0.05395909970199091, 0.021767807275298822,
          -0.008340757084102798, 0.002289524777740656)
# erf(x) = x P(x^2), |x| < 1
ERF_P = (1.1283791656893234, -0.3761262556739931, 0.11283582247993419, -0.026853691099740888,
         0.005188098889451825, -0.0008008189323640677, 7.847259128515437e-05)
# erfc(a) = exp(-a^2) * t * G(t - 0.55), t = 1 / a, a in [1, 10.1]
ERFC_G = (0.502353428417032, -0.1700351118899594, -0.02036569099157233, 0.09835709453567808,
          -0.09691136847943632, 0.049877422041372486, 0.009604572486170864, -0.06074217827601347,
          0.10596259663338116, -0.09435063555451981, -0.04869194886673913, 0.11632079912051671)
ERFC_SHIFT = 0.55
# erfc(a) = M(a - 0.75), a in [0.5, 1): 1 - erf(a) would lose up to 3 bits to cancellation there
ERFC_MID = (0.2888443663462175, -0.6429310692084365, 0.4821983021233585, -0.026788791045256173,
            -0.15068699977866173, 0.0532424624700305, 0.026873926152003826, -0.01842678565814725,
            -0.0023287690649073742, 0.0038491338617810417)
EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(8))
ROUND_MAGIC, ROUND_MAGIC_BITS = 12582912.0, 0x4B400000  # 1.5 * 2^23 and its f32 bit pattern
LN2_HI, LN2_LO = 0.693359375, -2.12194440054690583e-4  # ln2_hi has 9 bits: n * ln2_hi is exact
INV_SQRT2 = 0.7071067811865476
SQRT_2_OVER_PI = 0.7978845608028654


class MathLib:
    """Emits math functions into a Builder: the f32 expansions for the functions in `expand`,
    the target's math ops (a library call or instruction) otherwise."""

    def __init__(self, b: Builder, expand: frozenset[str]) -> None:
        self.b = b
        self.expand = expand

    # -- terse arithmetic on one type ---------------------------------------------------------

    def c(self, value: float, like: Value) -> Value:
        return self.b.like(value, like)

    def add(self, x: Value, y: Value) -> Value:
        return self.b.op("add", x, y)

    def sub(self, x: Value, y: Value) -> Value:
        return self.b.op("sub", x, y)

    def mul(self, x: Value, y: Value) -> Value:
        return self.b.op("mul", x, y)

    def div(self, x: Value, y: Value) -> Value:
        return self.b.op("div", x, y)

    def fma(self, x: Value, y: Value, z: Value) -> Value:
        return self.b.op("fma", x, y, z)

    def abs(self, x: Value) -> Value:
        return self.b.op("abs", x)

    def sel(self, cond: Value, x: Value, y: Value) -> Value:
        return self.b.select(cond, x, y)

    def cmp(self, pred: str, x: Value, y: Value) -> Value:
        return self.b.cmp(pred, x, y)

    def horner(self, coeffs: Sequence[float], u: Value) -> Value:
        r = self.c(coeffs[-1], u)
        for k in reversed(coeffs[:-1]):
            r = self.fma(r, u, self.c(k, u))
        return r

    def _native(self, name: str, x: Value) -> bool:
        """True when the target's own math op should be used for `name` on x: `expand` names the
        f32 functions to expand as `name` and the f64 ones as `f64:name`."""
        kind = elem_of(x.ty).kind
        return (name if kind == "f32" else f"{kind}:{name}") not in self.expand

    def _f64(self, x: Value) -> bool:
        return elem_of(x.ty) == F64

    # -- exp / log -----------------------------------------------------------------------------

    def exp(self, x: Value, scale_log2: int = 0) -> Value:
        """exp(x) * 2^scale_log2 (0 <= scale_log2 <= 24) with one rounding: a scaled exp keeps the
        bits that exp(x) alone would lose to subnormal rounding."""
        if self._native("exp", x):
            r = self.b.op("exp", x)
            return self.mul(r, self.c(2.0 ** scale_log2, x)) if scale_log2 else r
        if self._f64(x):
            return m64.exp(self, x, scale_log2)
        b = self.b
        # Clamp so 2^n stays in [2^-150, 2^128]; NaN fails both compares and passes through.
        xc = self.sel(self.cmp("ogt", x, self.c(89.0, x)), self.c(89.0, x), x)
        xc = self.sel(self.cmp("olt", xc, self.c(-104.0, x)), self.c(-104.0, x), xc)
        # n = round(x / ln2) by adding 1.5 * 2^23: the sum's low mantissa bits are n itself.
        t = self.fma(xc, self.c(1.0 / math.log(2.0), x), self.c(ROUND_MAGIC, x))
        n = self.sub(t, self.c(ROUND_MAGIC, x))
        r = self.fma(n, self.c(-LN2_HI, x), xc)
        r = self.fma(n, self.c(-LN2_LO, x), r)
        p = self.horner(EXP_TAYLOR, r)
        ni = b.op("sub", b.cast("bitcast", t, I32), b.like(ROUND_MAGIC_BITS, b.cast("bitcast", t, I32)))
        n1 = b.op("ashr", ni, self.b.like(1, ni))
        n2 = b.op("sub", ni, n1)
        if scale_log2:
            n2 = b.op("add", n2, self.b.like(scale_log2, n2))
        r = self.mul(self.mul(p, self._pow2(n1)), self._pow2(n2))
        if scale_log2:
            # Below the clamp exp(x) is 0; scaled, the clamped value would not be.
            r = self.sel(self.cmp("olt", x, self.c(-104.0, x)), self.c(0.0, x), r)
        return r

    def _pow2(self, n: Value) -> Value:
        """2^n as f32 for n in [-126, 127] (i32 lanes)."""
        biased = self.b.op("add", n, self.b.like(127, n))
        bits = self.b.op("shl", biased, self.b.like(23, n))
        return self.b.cast("bitcast", bits, F32)

    def log(self, x: Value) -> Value:
        if self._native("log", x):
            return self.b.op("log", x)
        if self._f64(x):
            return m64.log(self, x)
        b = self.b
        ity = with_elem(x.ty, I32)
        tiny = self.cmp("olt", x, self.c(1.1754943508222875e-38, x))  # subnormal (or <= 0)
        xs = self.sel(tiny, self.mul(x, self.c(8388608.0, x)), x)  # * 2^23
        bits = b.cast("bitcast", xs, I32)
        e = b.op("sub", b.op("ashr", bits, b.const(23, ity)), b.const(127, ity))
        mbits = b.op("or", b.op("and", bits, b.const(0x7FFFFF, ity)), b.const(0x3F800000, ity))
        m = b.cast("bitcast", mbits, F32)
        big = self.cmp("ogt", m, self.c(1.4142135623730951, x))
        m = self.sel(big, self.mul(m, self.c(0.5, x)), m)
        e = b.op("add", e, b.select(big, b.const(1, ity), b.const(0, ity)))
        e = b.op("add", e, b.select(tiny, b.const(-23, ity), b.const(0, ity)))
        f = self.sub(m, self.c(1.0, x))
        s = self.div(f, self.add(f, self.c(2.0, x)))
        z = self.mul(s, s)
        two_s = self.add(s, s)
        series = self.horner((1 / 3, 1 / 5, 1 / 7, 1 / 9), z)
        logm = self.fma(self.mul(two_s, z), series, two_s)
        ef = b.cast("sitofp", e, F32)
        r = self.fma(ef, self.c(LN2_HI, x), self.fma(ef, self.c(LN2_LO, x), logm))
        r = self.sel(self.cmp("oeq", x, self.c(math.inf, x)), x, r)
        r = self.sel(self.cmp("oeq", x, self.c(0.0, x)), self.c(-math.inf, x), r)
        return self.sel(self.cmp("ult", x, self.c(0.0, x)), self.c(math.nan, x), r)  # x < 0 or NaN

    def log1p(self, x: Value) -> Value:
        u = self.add(x, self.c(1.0, x))
        corrected = self.mul(self.log(u), self.div(x, self.sub(u, self.c(1.0, x))))
        r = self.sel(self.cmp("oeq", u, self.c(1.0, x)), x, corrected)
        return self.sel(self.cmp("oeq", x, self.c(math.inf, x)), x, r)

    # -- sin / cos / pow / fmod (tessera/codegen/mathlib64.py) ----------------------------------

    def sin(self, x: Value) -> Value:
        return self._trig("sin", x)

    def cos(self, x: Value) -> Value:
        return self._trig("cos", x)

    def _trig(self, name: str, x: Value) -> Value:
        if self._native(name, x):
            return self.b.op(name, x)
        return m64.sin_cos(self, x, name) if self._f64(x) else m64.widened(self, name, x)

    def pow(self, x: Value, y: Value) -> Value:
        if self._native("pow", x):
            return self.b.op("pow", x, y)
        return m64.pow(self, x, y) if self._f64(x) else m64.widened(self, "pow", x, y)

    def fmod(self, x: Value, y: Value) -> Value:
        """C's fmod (the `rem` op), exact; expanded for f32 when the target lists `rem` (there is
        no f64 expansion: a target without an f64 remainder says so when it prints the op)."""
        if self._native("rem", x):
            return self.b.op("rem", x, y)
        return m64.fmod32(self, x, y)

    # -- tanh / sigmoid ------------------------------------------------------------------------

    def tanh(self, x: Value) -> Value:
        if self._native("tanh", x):
            return self.b.op("tanh", x)
        if self._f64(x):
            return m64.tanh(self, x)
        a = self.abs(x)
        z = self.mul(x, x)
        small = self.fma(self.mul(x, z), self.horner(TANH_Q, z), x)
        e = self.exp(self.add(a, a))
        large = self.sub(self.c(1.0, x), self.div(self.c(2.0, x), self.add(e, self.c(1.0, x))))
        large = self.b.op("copysign", large, x)
        return self.sel(self.cmp("olt", a, self.c(0.625, x)), small, large)

    def sigmoid(self, x: Value) -> Value:
        e = self.exp(self.b.op("neg", self.abs(x)))
        num = self.sel(self.cmp("olt", x, self.c(0.0, x)), e, self.c(1.0, x))
        return self.div(num, self.add(self.c(1.0, x), e))

    def mul_sigmoid(self, x: Value, z: Value) -> Value:
        """x * sigmoid(z) without the subnormal intermediate sigmoid(z) has for z < -87: the
        negative branch works with exp(z) * 2^24 and scales the (normal) product back."""
        e_s = self.exp(self.b.op("neg", self.abs(z)), scale_log2=24)
        den = self.add(self.c(1.0, x), self.mul(e_s, self.c(2.0 ** -24, x)))
        neg = self.mul(self.div(self.mul(x, e_s), den), self.c(2.0 ** -24, x))
        return self.sel(self.cmp("olt", z, self.c(0.0, z)), neg, self.div(x, den))

    def silu(self, x: Value) -> Value:
        return self._neg_inf_to_zero(x, self.mul_sigmoid(x, x))

    def _neg_inf_to_zero(self, x: Value, r: Value) -> Value:
        # x * f(x) with f(-inf) = 0: the limit is -0, not the NaN of -inf * 0.
        return self.sel(self.cmp("oeq", x, self.c(-math.inf, x)), self.c(-0.0, x), r)

    # -- erf / erfc / gelu ---------------------------------------------------------------------

    def _square_split(self, x: Value, scale: float) -> tuple[Value, Value]:
        """scale * x^2 as hi + lo exactly (scale a power of two); lo = 0 once x^2 overflows."""
        hi = self.mul(x, x)
        lo = self.fma(x, x, self.b.op("neg", hi))
        lo = self.sel(self.cmp("oeq", hi, self.c(math.inf, x)), self.c(0.0, x), lo)
        if scale != 1.0:
            hi, lo = self.mul(hi, self.c(scale, x)), self.mul(lo, self.c(scale, x))
        return hi, lo

    def _erfc_tail(self, a: Value, sq_hi: Value, sq_lo: Value) -> Value:
        """erfc(a) for a >= 1 given a^2 = sq_hi + sq_lo (any value for a < 1; NaN stays NaN)."""
        one = self.c(1.0, a)
        ac = self.sel(self.cmp("olt", a, one), one, a)
        t = self.div(one, ac)
        g = self.horner(ERFC_G, self.sub(t, self.c(ERFC_SHIFT, a)))
        e = self.mul(self.exp(self.b.op("neg", sq_hi)), self.sub(one, sq_lo))
        return self.mul(self.mul(e, t), g)

    def _erf_small(self, x: Value) -> Value:
        return self.mul(x, self.horner(ERF_P, self.mul(x, x)))

    def erf(self, x: Value) -> Value:
        if self._native("erf", x):
            return self.b.op("erf", x)
        if self._f64(x):
            return m64.erf(self, x)
        a = self.abs(x)
        hi, lo = self._square_split(x, 1.0)
        tail = self.sub(self.c(1.0, x), self._erfc_tail(a, hi, lo))
        large = self.b.op("copysign", tail, x)
        return self.sel(self.cmp("olt", a, self.c(1.0, x)), self._erf_small(x), large)

    def erfc(self, x: Value) -> Value:
        if self._native("erf", x):
            return self.sub(self.c(1.0, x), self.b.op("erf", x))
        if self._f64(x):
            return m64.erfc(self, x)
        a = self.abs(x)
        hi, lo = self._square_split(x, 1.0)
        return self._erfc_signed(x, a, hi, lo)

    def _erfc_signed(self, u: Value, a: Value, hi: Value, lo: Value) -> Value:
        """erfc(u) from a = |u| and u^2 = hi + lo."""
        one = self.c(1.0, u)
        mid = self.horner(ERFC_MID, self.sub(a, self.c(0.75, u)))
        pos = self.sel(self.cmp("olt", a, one), mid, self._erfc_tail(a, hi, lo))  # erfc(a)
        signed = self.sel(self.cmp("olt", u, self.c(0.0, u)), self.sub(self.c(2.0, u), pos), pos)
        small = self.sub(one, self._erf_small(u))
        return self.sel(self.cmp("olt", a, self.c(0.5, u)), small, signed)

    def gelu(self, x: Value, approximate: str) -> Value:
        half = self.c(0.5, x)
        if approximate == "tanh":
            inner = self.mul(self.c(2 * SQRT_2_OVER_PI, x),
                             self.fma(self.mul(self.c(0.044715, x), x), self.mul(x, x), x))
            # 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for negative x.
            return self._neg_inf_to_zero(x, self.mul_sigmoid(x, inner))
        if approximate != "none":
            raise TargetIRError(f"gelu: unknown approximation '{approximate}'")
        if self._native("erf", x):
            cdf = self.add(self.c(1.0, x), self.b.op("erf", self.mul(x, self.c(INV_SQRT2, x))))
            return self._neg_inf_to_zero(x, self.mul(self.mul(half, x), cdf))
        # erfc(-x/sqrt2) with (x/sqrt2)^2 = x^2 / 2 split exactly.
        u = self.b.op("neg", self.mul(x, self.c(INV_SQRT2, x)))
        hi, lo = self._square_split(x, 0.5)
        if self._f64(x):
            cdf2 = m64.erfc(self, u, (hi, lo))
        else:
            cdf2 = self._erfc_signed(u, self.abs(u), hi, lo)
        return self._neg_inf_to_zero(x, self.mul(self.mul(half, x), cdf2))
