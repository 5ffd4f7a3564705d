"""f64 math expansions (and the f32 functions computed through them) as Target IR op sequences.

A GPU has no correctly rounded f64 exp, log, sin, cos, tanh, erf or pow instruction (nor f32 sin,
cos, pow accurate enough), so targets that list `f64:NAME` (or the f32 `sin`, `cos`, `pow`, `rem`)
in `TargetInfo.expand_math` get these sequences from `MathLib` (tessera/codegen/mathlib.py). Every
polynomial is a truncated Taylor (or atanh / Bernoulli) series whose coefficients are computed here
from exact rationals, evaluated in Horner form; there are no tables in memory (the 2/pi chunks of
the Payne-Hanek reduction are constants picked by selects).

- exp: Cody-Waite reduction x = n ln2 + r (ln2 = a 32-bit head, whose products with n are exact,
  plus a tail), n = rint(x / ln2) by the 1.5 * 2^52 trick, the degree-13 Taylor polynomial of
  exp(r), and 2^n as two exact power-of-two factors so that subnormal results round once (~1 ulp);
- log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m-1)/(m+1) carried as a
  double-double (hi + lo), plus e ln2 in double-double: `log2x` returns the pair (used by pow), the
  sum is log (~1 ulp);
- sin / cos: below 2^20, Cody-Waite: k = rint(x 2/pi), r = x - k pi/2 with pi/2 in three parts
  (33 + 33 + 53 bits) through FMAs; from 2^20 on, Payne-Hanek (`_reduce_large`: the bits of 2/pi
  that matter for x's exponent, picked from 24-bit chunks computed here by Machin's formula, times
  the halves of x's mantissa, all products exact), in a branch that only threads with such an
  argument take; then degree-19/20 Taylor polynomials of r (+ the low part), the quadrant k mod 4
  choosing sin or cos and the sign (~1 ulp everywhere; ~1e-15 relative for the few doubles within
  2^-49 of a multiple of pi/2);
- tanh: the odd Bernoulli series for |x| < 0.55 (19 terms), 1 - 2 / (exp(2|x|) + 1) beyond;
- erf / erfc: x P(x^2) (Taylor) for |x| < 1 (erfc = 1 - erf there); beyond, erfc(|x|) =
  exp(-x^2) times erfcx(|x|): its 34-term Taylor polynomial at 2 (coefficients by erfcx's
  differential equation in 80-digit decimals) for |x| < 3, its continued fraction (32 levels)
  above; x^2 split exactly into hi + lo for the exponential; erf = 1 - erfc there (~ulp relative
  accuracy for both);
- pow: exp(y log|x|) with log|x| as a double-double and y * log|x| as one, so the result keeps
  ~1e-16 relative accuracy even when |y log x| is near 700; NumPy's (C99's) special cases: x**0 = 1
  and 1**y = 1 even for NaN, (-1)**±inf = 1, negative x with a non-integer y is NaN, an odd
  integer y keeps x's sign (-0 and -inf included);
- f32 sin, cos and pow are the f64 functions on the widened arguments, rounded once to f32 (the f64
  result is ~2^-50 accurate, far below an f32 ulp);
- f32 rem (fmod, under float floordiv/mod): exact, from 24-bit integer mantissas:
  fmod(a, d) = 2^ed ((ma mod md) (2^(ea-ed) mod md) mod md), 2^k mod md by square and multiply in i64.
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction
from typing import TYPE_CHECKING

from tessera.ir.target.ops import F32, F64, I32, I64, Value, Vector, lanes_of, with_elem

if TYPE_CHECKING:
    from tessera.codegen.mathlib import MathLib

_PI = Fraction("3.14159265358979323846264338327950288419716939937510582097494459230781640628")
_LN2 = Fraction("0.693147180559945309417232121458176568075500134360255254120680009493393621969")


def _head(x: Fraction, bits: int) -> Fraction:
    """x truncated to its leading `bits` significant bits (exactly representable in a double)."""
    e = math.floor(math.log2(abs(x)))
    scale = Fraction(2) ** (bits - 1 - e)
    return Fraction(math.floor(x * scale)) / scale


def _split(x: Fraction, heads: tuple[int, ...]) -> tuple[float, ...]:
    """x as leading parts of the given bit counts, then the rest rounded to a double."""
    parts = []
    rest = x
    for bits in heads:
        h = _head(rest, bits)
        parts.append(float(h))
        rest -= h
    parts.append(float(rest))
    return tuple(parts)


LN2_HI, LN2_LO = _split(_LN2, (32,))  # n * LN2_HI is exact for |n| < 2^21
PIO2_1, PIO2_2, PIO2_3 = _split(_PI / 2, (33, 33))
TWO_OVER_PI = float(2 / _PI)
INV_LN2 = float(1 / _LN2)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer held in the low bits
ROUND_MAGIC_BITS = 0x4338000000000000

EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))
# sin(r) = r + r^3 SIN(r^2), cos(r) = 1 + r^2 COS(r^2): Taylor through r^19 / r^20 (|r| <= 1)
SIN_P = tuple((-1) ** (k + 1) / math.factorial(2 * k + 3) for k in range(9))
COS_P = tuple((-1) ** (k + 1) / math.factorial(2 * k + 2) for k in range(10))
# log(m) = 2 s + s^3 ATANH(s^2), ATANH_k = 2 / (2k + 3), |s| <= 0.1716
ATANH_P = tuple(2.0 / (2 * k + 3) for k in range(11))
# erf(x) = x ERF_SMALL(x^2), |x| < 1
ERF_SMALL = tuple(float(Fraction((-1) ** n, math.factorial(n) * (2 * n + 1))) * TWO_OVER_SQRT_PI
                  for n in range(20))


ERFCX_CENTER = 2.0  # erfc(x) = exp(-x^2) ERFCX(x - 2) for 1 <= x < 3 (Taylor of erfcx)
ERFC_CF_DEPTH = 32  # levels of erfc's continued fraction: 5e-16 relative at |x| = 3
ERF_CF_FROM = 3.0


def _bernoulli(n: int) -> list[Fraction]:
    b = [Fraction(1)]
    for m in range(1, n + 1):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b


def _tanh_series(terms: int) -> tuple[float, ...]:
    """tanh(x) = x + x^3 T(x^2): T's coefficients from 2^2n (2^2n - 1) B_2n / (2n)!."""
    b = _bernoulli(2 * terms + 2)
    coef = [Fraction(4 ** n * (4 ** n - 1)) * b[2 * n] / math.factorial(2 * n) for n in range(1, terms + 2)]
    return tuple(float(c) for c in coef[1:])


TANH_T = _tanh_series(19)
TANH_SMALL = 0.55


# ---------------------------------------------------------------- f64 functions


def _i64(m: MathLib, x: Value) -> Value:
    return m.b.cast("bitcast", x, I64)


def _f64(m: MathLib, n: Value) -> Value:
    return m.b.cast("bitcast", n, F64)


def _pow2(m: MathLib, n: Value) -> Value:
    """2^n as f64 for n in [-1022, 1023] (i64 lanes)."""
    b = m.b
    return _f64(m, b.op("shl", b.op("add", n, b.like(1023, n)), b.like(52, n)))


def _round_int(m: MathLib, t: Value) -> tuple[Value, Value]:
    """(n, n as i64) from t = fma(x, c, ROUND_MAGIC)."""
    b = m.b
    n = m.sub(t, m.c(ROUND_MAGIC, t))
    ti = _i64(m, t)
    return n, b.op("sub", ti, b.like(ROUND_MAGIC_BITS, ti))


def exp(m: MathLib, x: Value, scale_log2: int = 0) -> Value:
    """exp(x) * 2^scale_log2 on f64 lanes (0 <= scale_log2 <= 60)."""
    b = m.b
    xc = m.sel(m.cmp("ogt", x, m.c(710.0, x)), m.c(710.0, x), x)  # NaN fails both compares
    xc = m.sel(m.cmp("olt", xc, m.c(-746.0, x)), m.c(-746.0, x), xc)
    n, ni = _round_int(m, m.fma(xc, m.c(INV_LN2, x), m.c(ROUND_MAGIC, x)))
    r = m.fma(n, m.c(-LN2_HI, x), xc)
    r = m.fma(n, m.c(-LN2_LO, x), r)
    p = m.horner(EXP_TAYLOR, r)
    n1 = b.op("ashr", ni, b.like(1, ni))
    n2 = b.op("sub", ni, n1)
    if scale_log2:
        n2 = b.op("add", n2, b.like(scale_log2, n2))
    out = m.mul(m.mul(p, _pow2(m, n1)), _pow2(m, n2))
    if scale_log2:
        out = m.sel(m.cmp("olt", x, m.c(-746.0, x)), m.c(0.0, x), out)
    return out


def _two_sum(m: MathLib, a: Value, b: Value) -> tuple[Value, Value]:
    s = m.add(a, b)
    bb = m.sub(s, a)
    err = m.add(m.sub(a, m.sub(s, bb)), m.sub(b, bb))
    return s, err


def log2x(m: MathLib, x: Value) -> tuple[Value, Value]:
    """log(x) as a double-double hi + lo (|lo| <= ulp(hi)), ~2^-60 relative; the special values
    (log 0 = -inf, log inf = inf, NaN for x < 0 and NaN) in hi with lo = 0."""
    b = m.b
    tiny = m.cmp("olt", x, m.c(2.2250738585072014e-308, x))  # subnormal (or <= 0)
    xs = m.sel(tiny, m.mul(x, m.c(2.0 ** 54, x)), x)
    bits = _i64(m, xs)
    e = b.op("sub", b.op("ashr", bits, b.like(52, bits)), b.like(1023, bits))
    mant = _f64(m, b.op("or", b.op("and", bits, b.like(0x000FFFFFFFFFFFFF, bits)),
                         b.like(0x3FF0000000000000, bits)))
    big = m.cmp("ogt", mant, m.c(1.4142135623730951, x))
    mant = m.sel(big, m.mul(mant, m.c(0.5, x)), mant)
    e = b.op("add", e, b.select(big, b.like(1, e), b.like(0, e)))
    e = b.op("add", e, b.select(tiny, b.like(-54, e), b.like(0, e)))
    f = m.sub(mant, m.c(1.0, x))  # exact
    # s = f / (2 + f) as s_hi + s_lo; 2 + f as d_hi + d_lo exactly (|f| < 2).
    d_hi = m.add(f, m.c(2.0, x))
    d_lo = m.add(m.sub(m.c(2.0, x), d_hi), f)
    s_hi = m.div(f, d_hi)
    rem = m.fma(m.b.op("neg", s_hi), d_hi, f)
    rem = m.fma(m.b.op("neg", s_hi), d_lo, rem)
    s_lo = m.div(rem, d_hi)
    z = m.mul(s_hi, s_hi)
    tail = m.mul(m.mul(s_hi, z), m.horner(ATANH_P, z))
    ef = b.cast("sitofp", e, F64)
    a = m.mul(ef, m.c(LN2_HI, x))  # exact
    two_s = m.add(s_hi, s_hi)
    hi, err = _two_sum(m, a, two_s)
    lo = m.add(err, m.fma(ef, m.c(LN2_LO, x), m.add(m.add(s_lo, s_lo), tail)))
    h = m.add(hi, lo)
    lo = m.sub(lo, m.sub(h, hi))
    special = m.b.op("or", m.cmp("oeq", x, m.c(math.inf, x)), m.cmp("ule", x, m.c(0.0, x)))
    h = m.sel(m.cmp("oeq", x, m.c(math.inf, x)), x, h)
    h = m.sel(m.cmp("oeq", x, m.c(0.0, x)), m.c(-math.inf, x), h)
    h = m.sel(m.cmp("ult", x, m.c(0.0, x)), m.c(math.nan, x), h)  # x < 0 or NaN
    return h, m.sel(special, m.c(0.0, x), lo)


def log(m: MathLib, x: Value) -> Value:
    hi, lo = log2x(m, x)
    return m.add(hi, lo)


def _pi_bits(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in integers."""
    guard = bits + 32

    def atan_inv(n: int) -> int:
        term = total = (1 << guard) // n
        k, n2 = 1, n * n
        while term:
            term //= n2
            total += (-1) ** k * (term // (2 * k + 1))
            k += 1
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 32


def _two_over_pi_chunks(n: int) -> tuple[float, ...]:
    """2/pi = sum_j g_j 2^(-24 (j+1)): the first n 24-bit integers g_j (as floats)."""
    total = 24 * n
    g = (1 << (total + 1 + total + 64)) // _pi_bits(total + 64)  # floor(2/pi * 2^total)
    return tuple(float((g >> (24 * (n - 1 - j))) & 0xFFFFFF) for j in range(n))


PH_FROM = 2.0 ** 20  # Cody-Waite's k * PIO2_1 is exact below 2^20 pi/2; Payne-Hanek from here on
PH_TERMS = 8  # 24-bit chunks of 2/pi per product: the tail is below 2^-112
TWO_OVER_PI_CHUNKS = _two_over_pi_chunks(41 + PH_TERMS)  # the lsb exponent of a double is at most 971
PIO2_HI, PIO2_LO = _split(_PI / 2, (53,))


def _reduce_large(m: MathLib, x: Value) -> tuple[Value, Value, Value]:
    """Payne-Hanek: (r_hi, r_lo, k mod 4) with |x| = k pi/2 + r_hi + r_lo, for finite |x| >= 2^20.

    |x| = M 2^E (M a 53-bit integer), so |x| 2/pi = sum_j M g_j 2^(E - 24(j+1)); the terms with
    E - 24(j+1) >= 2 are multiples of 4 and drop out, leaving PH_TERMS chunks from j0 on, each
    multiplied exactly by M's 26-bit head and 27-bit tail. The products are summed from the largest,
    the integer part moved into the quadrant after each step, the fraction kept as hi + lo;
    r = fraction * pi/2."""
    b = m.b
    a = m.abs(x)
    bits = _i64(m, a)
    e = b.op("sub", b.op("ashr", bits, b.like(52, bits)), b.like(1075, bits))
    mbits = b.op("or", b.op("and", bits, b.like(0x000FFFFFFFFFFFFF, bits)), b.like(0x4330000000000000, bits))
    # M = 2^52 + fraction, split in a 26-bit head and a 27-bit tail: each times a 24-bit chunk is exact
    m_hi = _f64(m, b.op("and", mbits, b.like(~((1 << 27) - 1), mbits)))
    m_lo = m.sub(_f64(m, mbits), m_hi)
    em2 = b.op("sub", e, b.like(2, e))
    j0 = b.select(b.cmp("slt", em2, b.like(0, e)), b.like(0, e), b.op("div", em2, b.like(24, e)))
    shift = b.op("sub", b.op("sub", e, b.op("mul", j0, b.like(24, e))), b.like(24, e))  # in [-48, 2)
    scale = _pow2(m, shift)
    picks = [b.cmp("eq", j0, b.like(i, j0)) for i in range(len(TWO_OVER_PI_CHUNKS) - PH_TERMS + 1)]
    terms: list[Value] = []
    for k in range(PH_TERMS):
        g = m.c(TWO_OVER_PI_CHUNKS[k], a)
        for i, hit in enumerate(picks[1:], start=1):
            g = m.sel(hit, m.c(TWO_OVER_PI_CHUNKS[i + k], a), g)
        sk = m.mul(scale, m.c(2.0 ** (-24 * k), a))
        terms += [m.mul(m.mul(m_hi, g), sk), m.mul(m.mul(m_lo, g), sk)]
    order = [terms[0]] + [t for k in range(1, PH_TERMS) for t in (terms[2 * k], terms[2 * k - 1])] + [terms[-1]]
    zero = m.c(0.0, a)
    hi, lo, q = zero, zero, zero
    for t in order:
        hi, err = _two_sum(m, hi, t)
        lo = m.add(lo, err)
        n = b.op("rint", hi)
        hi = m.sub(hi, n)  # exact: hi and n are multiples of hi's ulp
        q = m.add(q, _mod4(m, n))
    n = b.op("rint", m.add(hi, lo))
    hi = m.sub(hi, n)
    q = _mod4(m, m.add(q, _mod4(m, n)))
    f_hi = m.add(hi, lo)
    f_lo = m.sub(lo, m.sub(f_hi, hi))
    r_hi = m.mul(f_hi, m.c(PIO2_HI, a))
    r_lo = m.fma(f_hi, m.c(PIO2_HI, a), b.op("neg", r_hi))
    r_lo = m.fma(f_hi, m.c(PIO2_LO, a), m.fma(f_lo, m.c(PIO2_HI, a), r_lo))
    r = m.add(r_hi, r_lo)
    r_lo = m.sub(r_lo, m.sub(r, r_hi))
    qi = b.cast("fptosi_sat", q, I64)
    neg = m.cmp("olt", x, m.c(0.0, x))
    qi = b.select(neg, b.op("and", b.op("sub", b.like(4, qi), qi), b.like(3, qi)), qi)
    return m.sel(neg, b.op("neg", r), r), m.sel(neg, b.op("neg", r_lo), r_lo), qi


def _mod4(m: MathLib, n: Value) -> Value:
    """n mod 4 in [0, 4) for an integer-valued f64 (exact at any magnitude)."""
    return m.sub(n, m.mul(m.c(4.0, n), m.b.op("floor", m.mul(n, m.c(0.25, n)))))


def _reduce_pio2(m: MathLib, x: Value) -> tuple[Value, Value]:
    """(r, k mod 4 as i64) with x = k pi/2 + r (Cody-Waite: accurate for |x| < 2^20 pi/2)."""
    k, ki = _round_int(m, m.fma(x, m.c(TWO_OVER_PI, x), m.c(ROUND_MAGIC, x)))
    negk = m.b.op("neg", k)
    r = m.fma(negk, m.c(PIO2_1, x), x)
    r = m.fma(negk, m.c(PIO2_2, x), r)
    r = m.fma(negk, m.c(PIO2_3, x), r)
    return r, m.b.op("and", ki, m.b.like(3, ki))


def _sin_cos_poly(m: MathLib, r: Value, r_lo: Value) -> tuple[Value, Value]:
    """(sin, cos) of r + r_lo (|r_lo| below an ulp of r)."""
    z = m.mul(r, r)
    s = m.fma(m.mul(r, z), m.horner(SIN_P, z), r)
    c = m.fma(z, m.horner(COS_P, z), m.c(1.0, r))
    return m.fma(r_lo, c, s), m.fma(m.b.op("neg", r_lo), s, c)


def _reduce(m: MathLib, x: Value) -> tuple[Value, Value, Value]:
    """(r_hi, r_lo, k mod 4): Cody-Waite, and Payne-Hanek (in a branch taken only when some lane of
    the thread needs it) for finite |x| >= 2^20."""
    b = m.b
    r, q = _reduce_pio2(m, x)
    zero = m.c(0.0, x)
    a = m.abs(x)
    big = b.op("and", m.cmp("oge", a, m.c(PH_FROM, x)), m.cmp("olt", a, m.c(math.inf, x)))
    any_big = b.op("vreduce", big, kind="or") if lanes_of(big.ty) > 1 and isinstance(big.ty, Vector) else big
    with b.if_(any_big, [r.ty, r.ty, q.ty]) as br:
        ph_r, ph_lo, ph_q = _reduce_large(m, x)
        b.yield_([m.sel(big, ph_r, r), m.sel(big, ph_lo, zero), b.select(big, ph_q, q)])
        b.else_(br)
        b.yield_([r, zero, q])
    return br.results[0], br.results[1], br.results[2]


def sin_cos(m: MathLib, x: Value, which: str) -> Value:
    b = m.b
    r, r_lo, q = _reduce(m, x)
    s, c = _sin_cos_poly(m, r, r_lo)
    if which == "cos":
        q = b.op("add", q, b.like(1, q))  # cos(x) = sin(x + pi/2)
    odd = b.cmp("ne", b.op("and", q, b.like(1, q)), b.like(0, q))
    neg = b.cmp("ne", b.op("and", q, b.like(2, q)), b.like(0, q))
    v = m.sel(odd, c, s)
    v = m.sel(neg, b.op("neg", v), v)
    # sin(-0) = -0 (the polynomial's r + r^3 S(r^2) gives +0)
    return m.sel(m.cmp("oeq", x, m.c(0.0, x)), x, v) if which == "sin" else v


def tanh(m: MathLib, x: Value) -> Value:
    a = m.abs(x)
    z = m.mul(x, x)
    small = m.fma(m.mul(x, z), m.horner(TANH_T, z), x)
    e = exp(m, m.add(a, a))
    large = m.sub(m.c(1.0, x), m.div(m.c(2.0, x), m.add(e, m.c(1.0, x))))
    large = m.b.op("copysign", large, x)
    return m.sel(m.cmp("olt", a, m.c(TANH_SMALL, x)), small, large)


Square = tuple[Value, Value]


def _exp_neg_square(m: MathLib, a: Value, sq: Square | None) -> Value:
    """exp(-a^2) with a^2 = hi + lo split exactly (the exponent amplifies its rounding error by a^2)."""
    hi, lo = sq if sq is not None else m._square_split(a, 1.0)
    return m.mul(exp(m, m.b.op("neg", hi)), m.sub(m.c(1.0, a), lo))


def _erfc_cf(m: MathLib, a: Value, e: Value) -> Value:
    """erfc(a) for a >= 3 (any value below: it is selected away) by the continued fraction
    exp(-a^2) / sqrt(pi) / (a + (1/2) / (a + 1 / (a + (3/2) / (a + ...)))), e = exp(-a^2)."""
    lo = m.c(ERF_CF_FROM, a)
    ac = m.sel(m.cmp("olt", a, lo), lo, a)
    t = ac
    for k in range(ERFC_CF_DEPTH, 0, -1):
        t = m.add(ac, m.div(m.c(k / 2, a), t))
    return m.div(m.mul(e, m.c(INV_SQRT_PI, a)), t)


def _erfcx_taylor(center: float, terms: int) -> tuple[float, ...]:
    """Taylor coefficients of erfcx(x) = exp(x^2) erfc(x) at `center`, from erfcx' = 2x erfcx - 2/sqrt(pi)
    (a_(n+1) = (2c a_n + 2 a_(n-1)) / (n+1)), in 80-digit decimals; erfc(center) by erf's series."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        pi = decimal.Decimal(_pi_bits(300)) / decimal.Decimal(2) ** 300
        two_over_sqrt_pi = 2 / pi.sqrt()
        c = decimal.Decimal(center)
        erf_sum, term, n = decimal.Decimal(0), c, 0
        while abs(term) > decimal.Decimal(10) ** -78:
            erf_sum += term / (2 * n + 1)
            n += 1
            term = -term * c * c / n
        a = [(1 - two_over_sqrt_pi * erf_sum) * (c * c).exp()]
        a.append(2 * c * a[0] - two_over_sqrt_pi)
        for k in range(1, terms - 1):
            a.append((2 * c * a[k] + 2 * a[k - 1]) / (k + 1))
        return tuple(float(v) for v in a)


ERFCX_MID = _erfcx_taylor(ERFCX_CENTER, 34)  # < 1e-16 relative truncation over [1, 3]


def _erf_parts(m: MathLib, x: Value, sq: Square | None) -> tuple[Value, Value, Value, Value]:
    """(|x|, erf(x) for |x| < 1, erfc(|x|) for 1 <= |x| < 3, erfc(|x|) for |x| >= 3); sq: x^2 as
    an exact hi + lo when x itself is rounded (gelu's x / sqrt2)."""
    a = m.abs(x)
    small = m.mul(x, m.horner(ERF_SMALL, m.mul(x, x)))
    e = _exp_neg_square(m, a, sq)
    mid = m.mul(e, m.horner(ERFCX_MID, m.sub(a, m.c(ERFCX_CENTER, x))))
    return a, small, mid, _erfc_cf(m, a, e)


def erf(m: MathLib, x: Value) -> Value:
    a, small, mid, tail = _erf_parts(m, x, None)
    one = m.c(1.0, x)
    pos = m.sub(one, m.sel(m.cmp("olt", a, m.c(ERF_CF_FROM, x)), mid, tail))
    return m.sel(m.cmp("olt", a, one), small, m.b.op("copysign", pos, x))


def erfc(m: MathLib, x: Value, sq: Square | None = None) -> Value:
    a, small, mid, tail = _erf_parts(m, x, sq)
    one = m.c(1.0, x)
    pos = m.sel(m.cmp("olt", a, m.c(ERF_CF_FROM, x)), mid, tail)  # erfc(|x|)
    signed = m.sel(m.cmp("olt", x, m.c(0.0, x)), m.sub(m.c(2.0, x), pos), pos)
    return m.sel(m.cmp("olt", a, one), m.sub(one, small), signed)


def _is_odd_integer(m: MathLib, y: Value) -> tuple[Value, Value]:
    """(y is an integer, y is an odd integer) for f64 y (infinities count as even integers)."""
    b = m.b
    integer = m.cmp("oeq", b.op("floor", y), y)
    half = m.mul(y, m.c(0.5, y))
    odd = b.op("and", integer, m.cmp("une", b.op("floor", half), half))
    return integer, odd


def pow(m: MathLib, x: Value, y: Value) -> Value:
    b = m.b
    a = m.abs(x)
    lhi, llo = log2x(m, a)
    zhi = m.mul(y, lhi)
    zlo = m.fma(y, llo, m.fma(y, lhi, b.op("neg", zhi)))
    # Beyond |zhi| = 1000 exp saturates (and zlo, below an ulp of zhi, is no longer small).
    zlo = m.sel(m.cmp("olt", m.abs(zhi), m.c(1000.0, x)), zlo, m.c(0.0, x))
    # exp(zhi + zlo) = exp(zhi) (1 + zlo): zlo is below an ulp of zhi
    r = m.mul(exp(m, zhi), m.add(m.c(1.0, x), zlo))
    r = m.sel(m.cmp("oeq", zhi, m.c(math.inf, x)), zhi, r)
    integer, odd = _is_odd_integer(m, y)
    xi = _i64(m, x)
    sign = b.cmp("slt", xi, b.like(0, xi))
    r = m.sel(b.op("and", sign, odd), b.op("neg", r), r)
    neg_finite = b.op("and", m.cmp("olt", x, m.c(0.0, x)), m.cmp("ogt", x, m.c(-math.inf, x)))
    y_finite = m.cmp("olt", m.abs(y), m.c(math.inf, x))
    bad = b.op("and", neg_finite, b.op("and", y_finite, b.op("xor", integer, b.like(1, integer))))
    r = m.sel(bad, m.c(math.nan, x), r)
    r = m.sel(m.cmp("oeq", a, m.c(1.0, x)), m.sel(sign, r, m.c(1.0, x)), r)  # 1**y = 1 (NaN y too)
    r = m.sel(b.op("and", m.cmp("oeq", a, m.c(1.0, x)), b.op("xor", y_finite, b.like(1, y_finite))),
              m.sel(m.cmp("uno", y, y), r, m.c(1.0, x)), r)  # (-1)**±inf = 1
    return m.sel(m.cmp("oeq", y, m.c(0.0, y)), m.c(1.0, x), r)  # x**0 = 1 (NaN x too)


# ---------------------------------------------------------------- f32 through f64


def widened(m: MathLib, fn: str, *args: Value) -> Value:
    """The f32 function `fn` (sin, cos, pow) computed in f64 and rounded once."""
    b = m.b
    wide = [b.cast("fpext", a, F64) for a in args]
    if fn == "pow":
        r = pow(m, wide[0], wide[1])
    else:
        r = sin_cos(m, wide[0], fn)
    return b.cast("fptrunc", r, F32)


def fmod32(m: MathLib, a: Value, d: Value) -> Value:
    """C's fmod on f32 lanes, exactly (the sign of a; NaN for d = 0 or infinite a; a for infinite d)."""
    b = m.b
    ity = with_elem(a.ty, I32)
    aa, ad = m.abs(a), m.abs(d)

    def parts(v: Value) -> tuple[Value, Value]:
        """(24-bit integer mantissa as i64, exponent of its last bit as i64) of |v| > 0 finite."""
        sub = m.cmp("olt", v, m.c(1.1754943508222875e-38, v))
        vs = m.sel(sub, m.mul(v, m.c(16777216.0, v)), v)  # * 2^24
        bits = b.cast("bitcast", vs, I32)
        e = b.op("sub", b.op("ashr", bits, b.const(23, ity)), b.const(150, ity))
        e = b.op("sub", e, b.select(sub, b.const(24, ity), b.const(0, ity)))
        mant = b.op("or", b.op("and", bits, b.const(0x7FFFFF, ity)), b.const(0x800000, ity))
        return b.cast("sext", mant, I64), b.cast("sext", e, I64)

    ma, ea = parts(aa)
    md, ed = parts(ad)
    md = b.select(b.cmp("eq", md, b.like(0, md)), b.like(1, md), md)
    k = b.op("sub", ea, ed)  # >= 0 whenever |a| >= |d|
    k = b.select(b.cmp("slt", k, b.like(0, k)), b.like(0, k), k)
    # 2^k mod md by square and multiply over the bits of k (k < 2^9); products stay below 2^48.
    result = b.op("rem", b.like(1, md), md)
    base = b.op("rem", b.like(2, md), md)
    for bit in range(9):
        on = b.cmp("ne", b.op("and", k, b.like(1 << bit, k)), b.like(0, k))
        result = b.select(on, b.op("rem", b.op("mul", result, base), md), result)
        base = b.op("rem", b.op("mul", base, base), md)
    q = b.op("rem", b.op("mul", b.op("rem", ma, md), result), md)
    # q * 2^ed is exact (it is the remainder); scale in two steps so 2^ed never leaves the normal range.
    qf = b.cast("sitofp", q, F32)
    e32 = b.cast("trunc", ed, I32)
    e1 = b.op("ashr", e32, b.const(1, ity))
    e2 = b.op("sub", e32, e1)
    r = m.mul(m.mul(qf, _pow2_32(m, e1)), _pow2_32(m, e2))
    r = m.sel(m.cmp("olt", aa, ad), aa, r)
    r = b.op("copysign", r, a)
    bad = b.op("or", m.cmp("oeq", ad, m.c(0.0, d)),
               b.op("or", m.cmp("oeq", aa, m.c(math.inf, a)), m.cmp("uno", a, d)))
    return m.sel(bad, m.c(math.nan, a), r)


def _pow2_32(m: MathLib, n: Value) -> Value:
    """2^n as f32 for n in [-126, 127] (i32 lanes)."""
    b = m.b
    return b.cast("bitcast", b.op("shl", b.op("add", n, b.like(127, n)), b.like(23, n)), F32)
