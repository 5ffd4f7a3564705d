"""Shape and dtype inference of every builtin of spec §6 over symbolic dims, dtype promotion (spec §4
and docs/language.md), and the symbolic algebra the checker relies on (`where` facts)."""

from __future__ import annotations

import re

import pytest
from checking import Expect, assigned_types, check, find, returned_type

from tessera.frontend.builtins import BUILTINS

# One signature for the shape cases: symbolic batch/sequence/feature dims and a few dtypes.
SIG = """
def f(x: Tensor["B", "S", "D", f32], h: Tensor["B", "S", "D", bf16], m: Tensor["D", "H", bf16],
      v: Tensor["D", f32], b1: Tensor["B", 1, "D", f16], i: Tensor["B", "S", int32],
      lg: Tensor["B", "C", f16], lb: Tensor["B", int64], tbl: Tensor["V", "D", bf16],
      q: Tensor["B", "N", "S", "E", bf16], k: Tensor["B", "N", "T", "E", bf16],
      vv: Tensor["B", "N", "T", "F", bf16], c: Tensor[4, 8, f32], n: int) where D % 4 == 0:
    return {expr}
"""

X = 'Tensor["B", "S", "D", f32]'
XH = 'Tensor["B", "S", "D", bf16]'

SHAPES: list[tuple[str, str]] = [
    # --- elementwise and broadcasting (dims equal or 1, aligned from the right)
    ("x + b1", X),                                   # f16 widens to f32; the 1 broadcasts
    ("b1 * v", 'Tensor["B", 1, "D", f32]'),
    ("x - v", X),
    ("v / x", X),
    ("x[:, :, None, :] * x[:, None, :, :]", 'Tensor["B", "S", "S", "D", f32]'),
    ("x ** 2", X),
    ("x // 2.0", X),
    ("x % 3.0", X),
    ("-x", X),
    ("x > 0.0", 'Tensor["B", "S", "D", bool]'),
    ("x == v", 'Tensor["B", "S", "D", bool]'),
    ("neg(i)", 'Tensor["B", "S", int32]'),
    ("abs(i)", 'Tensor["B", "S", int32]'),
    ("relu(h)", XH),
    ("exp(h)", XH),
    ("log(x)", X),
    ("log1p(x)", X),
    ("sqrt(h)", XH),
    ("rsqrt(x)", X),
    ("sin(x)", X),
    ("cos(x)", X),
    ("tanh(h)", XH),
    ("erf(x)", X),
    ("sigmoid(h)", XH),
    ("silu(h)", XH),
    ("gelu(h)", XH),
    ('gelu(h, approximate="tanh")', XH),
    ("maximum(x, v)", X),
    ("minimum(i, lb[:, None])", 'Tensor["B", "S", int64]'),
    ("where(x > 0.0, x, 0.0)", X),
    ("where(i[..., None] > 0, h, b1)", 'Tensor["B", "S", "D", f32]'),
    ("where(lb[:, None, None] > 0, 1.0, h)", XH),
    ("clip(h, 0.0, 1.0)", XH),
    ("clip(i, 0, 10)", 'Tensor["B", "S", int32]'),
    ("isnan(h)", 'Tensor["B", "S", "D", bool]'),
    ("isinf(x)", 'Tensor["B", "S", "D", bool]'),
    # --- matmul: batched, broadcasting leading dims, 1-D operands
    ("h @ m", 'Tensor["B", "S", "H", f32]'),          # bf16 accumulates in f32
    ("matmul(h, m)", 'Tensor["B", "S", "H", f32]'),
    ("v @ v", "Tensor[f32]"),
    ("v @ m", 'Tensor["H", f32]'),
    ("x @ v", 'Tensor["B", "S", f32]'),
    ("x @ swapaxes(x, -1, -2)", 'Tensor["B", "S", "S", f32]'),
    ("q @ swapaxes(k, -1, -2)", 'Tensor["B", "N", "S", "T", f32]'),
    ("x[0] @ x[:, :, :, None]", 'Tensor["B", "S", "S", 1, f32]'),  # [S, D] @ [B, S, D, 1]
    # --- reductions: axis int/tuple/negative/None, keepdims
    ("sum(x)", "Tensor[f32]"),
    ("sum(x, axis=-1)", 'Tensor["B", "S", f32]'),
    ("sum(x, axis=(0, -1), keepdims=True)", 'Tensor[1, "S", 1, f32]'),
    ("sum(h, axis=1)", 'Tensor["B", "D", f32]'),      # accumulation dtype
    ("mean(h, axis=(1, 2))", 'Tensor["B", f32]'),
    ("mean(i)", "Tensor[f32]"),
    ("max(h, axis=-2)", 'Tensor["B", "D", bf16]'),     # max/min keep the dtype
    ("min(x, axis=0, keepdims=True)", 'Tensor[1, "S", "D", f32]'),
    ("prod(i, axis=1)", 'Tensor["B", int64]'),
    ("argmax(h, axis=-1)", 'Tensor["B", "S", int64]'),
    ("argmin(x, axis=0)", 'Tensor["S", "D", int64]'),
    ("argmax(x)", "Tensor[int64]"),
    ("logsumexp(h, axis=-1)", 'Tensor["B", "S", f32]'),
    ("var(x, axis=-1, keepdims=True)", 'Tensor["B", "S", 1, f32]'),
    ("var(i, axis=0)", 'Tensor["S", f32]'),
    ("sum(x, axis=())", X),
    # --- shape manipulation
    ("reshape(x, (x.shape[0], -1))", 'Tensor["B", "D*S", f32]'),
    ("reshape(x, (-1, 4))", 'Tensor["B*D*S//4", 4, f32]'),
    ("reshape(x, (x.shape[0], x.shape[1], x.shape[2] // 4, 4))", 'Tensor["B", "S", "D//4", 4, f32]'),
    ("reshape(c, (2, -1, 4))", "Tensor[2, 4, 4, f32]"),
    ("reshape(c, 32)", "Tensor[32, f32]"),
    ("transpose(x)", 'Tensor["D", "S", "B", f32]'),
    ("transpose(x, (1, 0, 2))", 'Tensor["S", "B", "D", f32]'),
    ("permute(x, (2, 0, 1))", 'Tensor["D", "B", "S", f32]'),
    ("permute(x, (-1, 0, 1))", 'Tensor["D", "B", "S", f32]'),
    ("swapaxes(x, 0, -1)", 'Tensor["D", "S", "B", f32]'),
    ("expand_dims(x, -1)", 'Tensor["B", "S", "D", 1, f32]'),
    ("expand_dims(x, 0)", 'Tensor[1, "B", "S", "D", f32]'),
    ("expand_dims(x, 2)", 'Tensor["B", "S", 1, "D", f32]'),
    ("squeeze(b1, 1)", 'Tensor["B", "D", f16]'),
    ("squeeze(b1, axis=-2)", 'Tensor["B", "D", f16]'),
    ("squeeze(b1)", 'Tensor["B", "D", f16]'),
    ("broadcast_to(b1, (3, x.shape[0], 5, x.shape[2]))", 'Tensor[3, "B", 5, "D", f16]'),
    ("broadcast_to(v, x.shape)", X),
    ("concat([x, x], axis=1)", 'Tensor["B", "2*S", "D", f32]'),
    ("concat([x, h], axis=-1)", 'Tensor["B", "S", "2*D", f32]'),
    ("concat((c, c, c))", "Tensor[12, 8, f32]"),
    ("stack([x, x], axis=-1)", 'Tensor["B", "S", "D", 2, f32]'),
    ("stack([v, v, v])", 'Tensor[3, "D", f32]'),
    ("stack([1.0, 2.0])", "Tensor[2, f32]"),
    ("split(x, 4, axis=-1)[0]", 'Tensor["B", "S", "D//4", f32]'),
    ("split(c, 2)", "(Tensor[2, 8, f32], Tensor[2, 8, f32])"),
    ("x.T", 'Tensor["D", "S", "B", f32]'),
    ("c.T", "Tensor[8, 4, f32]"),
    ("x.shape[1]", "int"),
    ("len(x)", "int"),
    ("x.ndim", "int"),
    ("zeros(x.shape, x.dtype)", X),
    # --- indexing and slicing: None, ..., negative indices, steps
    ("x[0]", 'Tensor["S", "D", f32]'),
    ("x[-1]", 'Tensor["S", "D", f32]'),
    ("x[:, None]", 'Tensor["B", 1, "S", "D", f32]'),
    ("x[..., 0]", 'Tensor["B", "S", f32]'),
    ("x[..., None]", 'Tensor["B", "S", "D", 1, f32]'),
    ("x[0, ..., -1]", 'Tensor["S", f32]'),
    ("x[:, None, ..., -1]", 'Tensor["B", 1, "S", f32]'),
    ("x[:, :, ::2]", 'Tensor["B", "S", "D//2", f32]'),   # (D + 1)//2, and D is even
    ("c[:, ::3]", "Tensor[4, 3, f32]"),
    ("tbl[::2]", 'Tensor["(V + 1)//2", "D", bf16]'),
    ("x[..., : x.shape[2] // 2]", 'Tensor["B", "S", "D//2", f32]'),
    ("x[..., x.shape[2] // 4 :]", 'Tensor["B", "S", "3*(D//4)", f32]'),
    ("c[1:3]", "Tensor[2, 8, f32]"),
    ("c[-3:]", "Tensor[3, 8, f32]"),
    ("c[:-1, ::3]", "Tensor[3, 3, f32]"),
    ("c[2:100]", "Tensor[2, 8, f32]"),                # constant slices clamp like Python
    ("c[:, 1:7:2]", "Tensor[4, 3, f32]"),
    ("c[3, -8]", "Tensor[f32]"),
    # --- einsum
    ('einsum("bsd,dh->bsh", x, m)', 'Tensor["B", "S", "H", f32]'),
    ('einsum("bsd,bsd", x, x)', "Tensor[f32]"),
    ('einsum("bsd->dsb", x)', 'Tensor["D", "S", "B", f32]'),
    ('einsum("ij,jk", c, c.T)', "Tensor[4, 4, f32]"),
    ('einsum("bnse,bnte->bnst", q, k)', 'Tensor["B", "N", "S", "T", f32]'),
    ('einsum("ij,j->i", b1[0], v)', 'Tensor[1, f32]'),
    # --- nn
    ("softmax(h)", XH),
    ("softmax(x, axis=1)", X),
    ("layernorm(h, v, v, 1e-5)", XH),
    ("layernorm(x, tbl[0], v)", X),
    ("rmsnorm(h, v, 1e-6)", XH),
    ("rmsnorm(x, v)", X),
    ("dropout(h, 0.1, seed=3)", XH),
    ("embedding(tbl, i)", 'Tensor["B", "S", "D", bf16]'),
    ("embedding(tbl, lb)", 'Tensor["B", "D", bf16]'),
    ("one_hot(i, 10)", 'Tensor["B", "S", 10, f32]'),
    ("one_hot(lb, lg.shape[1], bf16)", 'Tensor["B", "C", bf16]'),
    ("cross_entropy(lg, lb)", "Tensor[f32]"),
    ("mse(h, h)", "Tensor[f32]"),
    ("mse(x, 0.0)", "Tensor[f32]"),
    ("attention(q, k, vv)", 'Tensor["B", "N", "S", "F", bf16]'),
    ("attention(q, k, vv, causal=True, scale=0.125)", 'Tensor["B", "N", "S", "F", bf16]'),
    ("attention(q[0, 0], k[0, 0], vv[0, 0])", 'Tensor["S", "F", bf16]'),
    # --- casts
    ("cast(h, f32)", X),
    ("cast(x, bf16 @accum(f32))", 'Tensor["B", "S", "D", bf16 @accum(f32)]'),
    ("cast(3, bf16)", "Tensor[bf16]"),
    ("cast_like(v, h)", 'Tensor["D", bf16]'),
    ("cast_like(h @ m, h)", 'Tensor["B", "S", "H", bf16]'),
    # --- creation
    ("zeros((x.shape[0], 4), bf16)", 'Tensor["B", 4, bf16]'),
    ("zeros(())", "Tensor[f32]"),
    ("ones(5)", "Tensor[5, f32]"),
    ("ones((2, x.shape[-1]), int8)", 'Tensor[2, "D", int8]'),
    ("full((2, 3), 1.5, f16)", "Tensor[2, 3, f16]"),
    ("full(x.shape, 0, int32)", 'Tensor["B", "S", "D", int32]'),
    ("arange(x.shape[1])", 'Tensor["S", int64]'),
    ("arange(10, int32)", "Tensor[10, int32]"),
    ("arange(-3)", "Tensor[0, int64]"),              # NumPy: an empty range
    ("randn((2, 3), bf16, seed=1)", "Tensor[2, 3, bf16]"),
    ("rand((4,))", "Tensor[4, f32]"),
    ("rand(x.shape, f16)", 'Tensor["B", "S", "D", f16]'),
]


@pytest.mark.parametrize(("expr", "expected"), SHAPES, ids=[e for e, _ in SHAPES])
def test_shape_inference(expr: str, expected: str) -> None:
    assert returned_type(SIG.format(expr=expr)) == expected


# The builtins of spec §6 (graph level). Host-only ones (load, save, device, print) are covered by
# the effects tests and test_checker.
SPEC_BUILTINS = [
    "zeros", "ones", "full", "arange", "randn", "rand", "neg", "abs", "exp", "log", "log1p", "sqrt",
    "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "relu", "gelu", "silu", "maximum", "minimum", "where",
    "clip", "isnan", "isinf", "sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "var",
    "reshape", "transpose", "permute", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "concat",
    "split", "stack", "matmul", "einsum", "softmax", "layernorm", "rmsnorm", "dropout", "embedding",
    "one_hot", "cross_entropy", "mse", "attention", "cast", "cast_like",
]


def test_every_spec_builtin_has_a_shape_case() -> None:
    used = {name for expr, _ in SHAPES for name in re.findall(r"([a-z_0-9]+)\(", expr)}
    assert set(SPEC_BUILTINS) <= set(BUILTINS)
    assert set(SPEC_BUILTINS) - used == set()


# ---------------------------------------------------------------- dtype promotion (spec §4)

DSIG = """
def f(a: Tensor["N", f16], b: Tensor["N", bf16], i8: Tensor["N", int8], u8: Tensor["N", uint8],
      e4: Tensor["N", fp8_e4m3], e5: Tensor["N", fp8_e5m2], t: Tensor["N", bool], i32: Tensor["N", int32],
      p: Tensor["N", bf16 @accum(f32)], q: Tensor["N", "N", fp8_e4m3 @accum(f32)], r: Tensor["N", "N", f64],
      s: Tensor["N", "N", bf16 @accum(f64)], t32: Tensor["N", tf32], i4: Tensor["N", int4],
      x: Tensor["N", f32], i64: Tensor["N", int64], n: int):
    return {expr}
"""

DTYPES: list[tuple[str, str]] = [
    ("a + b", "f32"),              # f16 with bf16 gives f32
    ("i8 + u8", "int16"),          # equal rank: the next type that holds both
    ("e4 + e5", "f16"),
    ("t + i8", "int8"),
    ("i4 + i8", "int8"),
    ("i32 + i64", "int64"),
    ("i64 + e4", "fp8_e4m3"),      # ints < fp8
    ("t32 + a", "tf32"),
    ("t32 + x", "f32"),
    ("x + r[0]", "f64"),
    ("b * 2.0", "bf16"),           # Python scalars are weak
    ("b + 1", "bf16"),
    ("e4 + 1.0", "fp8_e4m3"),
    ("i8 * 3", "int8"),
    ("i32 + 1.5", "f32"),          # a float scalar with an int tensor gives f32
    ("t * 2.0", "f32"),
    ("t + 1", "int64"),            # an int scalar with a bool tensor gives int64
    ("t + True", "bool"),
    ("i32 / i32", "f32"),          # true division of ints
    ("i32 // 2", "int32"),
    ("2 ** i32", "int32"),
    ("p * 2.0", "bf16 @accum(f32)"),  # the policy travels with the dtype
    ("i32 @ i32", "int64"),        # accumulation: int64 for ints
    ("a @ b", "f32"),              # f32 for floats narrower than f32
    ("q @ q", "f32"),              # fp8 with an explicit @accum
    ("s @ s", "f64"),              # the explicit @accum wins
    ("s @ r", "f64"),
    ("sum(p)", "f32"),
    ("sum(r)", "f64"),
    ("sum(i8)", "int64"),
    ("sum(t)", "int64"),
    ("prod(a)", "f32"),
    ("mean(i32)", "f32"),
    ("max(b)", "bf16"),
    ("argmin(b)", "int64"),
    ("sum(q)", "f32"),
    ('einsum("ij,jk->ik", s, s)', "f64"),
    ("softmax(a)", "f16"),         # normalisations return the input's dtype
    ("layernorm(b, x, x)", "bf16"),
    ("rmsnorm(a, a)", "f16"),
    ("mse(a, a)", "f32"),
    ("mse(r, r)", "f64"),
    ("cast(e4, f16)", "f16"),
    ("cast_like(x, e5)", "fp8_e5m2"),
    ("concat([a, b])", "f32"),
    ("stack([i8, u8])", "int16"),
    ("where(t, a, b)", "f32"),
    ("maximum(i8, a)", "f16"),
    ("isnan(b)", "bool"),
]


@pytest.mark.parametrize(("expr", "dtype"), DTYPES, ids=[e for e, _ in DTYPES])
def test_dtype_promotion(expr: str, dtype: str) -> None:
    t = returned_type(DSIG.format(expr=expr))
    m = re.fullmatch(r"Tensor\[(?:.*, )?([^,\]]+)\]", t)
    assert m is not None, t
    assert m.group(1) == dtype


E4, E5 = "fp8_e4m3 @accum(f32)", "fp8_e5m2 @accum(f32)"


@pytest.mark.parametrize(("expr", "message", "col", "fixit"), [
    ("e4 @ e4", "matmul: fp8 operand 'e4' needs an explicit accumulation dtype", 12, E4),
    ("sum(e5, axis=0)", "sum: fp8 operand 'e5' needs an explicit accumulation dtype", 16, E5),
    ("mean(e4)", "mean: fp8 operand 'e4' needs an explicit accumulation dtype", 17, E4),
    ("mse(e4, e4)", "mse: fp8 operand 'e4' needs an explicit accumulation dtype", 16, E4),
    ("cross_entropy(e4[None, :], i32[None, 0])", "cross_entropy: fp8 operand 'e4[None, :]'", 26, E4),
    ('einsum("i,i", x, e4)', "einsum: fp8 operand 'e4' needs an explicit accumulation dtype", 29, E4),
    ("exp(i32)", "exp: needs a floating-point tensor, found int32", 16, "cast(i32, f32)"),
    ("-t", "unary '-' on a bool tensor", 12, None),
])
def test_dtype_errors(expr: str, message: str, col: int, fixit: str | None) -> None:
    checked = check(DSIG.format(expr=expr))
    find(checked, Expect("E-DTYPE", message, (6, col), fixit))
    assert len(checked.diagnostics) == 1


def test_fp8_reductions_that_keep_the_dtype_need_no_accum() -> None:
    assert returned_type(DSIG.format(expr="(max(e4), argmax(e5), e4 * 2.0)")) == (
        "(Tensor[fp8_e4m3], Tensor[int64], Tensor[\"N\", fp8_e4m3])")


@pytest.mark.parametrize(("declared", "value", "ok"), [
    ("bf16", "cast(h @ m, bf16)", True),
    ("f32", "h @ m", True),
    ("bf16", "h @ m", False),           # the f32 accumulation does not narrow implicitly
    ("bf16", "cast_like(h @ m, h)", True),
    ("f64", "h @ m", True),             # widening is implicit
    ("f16", "h @ m", False),
])
def test_narrowing_needs_a_cast(declared: str, value: str, ok: bool) -> None:
    checked = check(f"""
        def f(h: Tensor["B", "D", bf16], m: Tensor["D", "H", bf16]) -> Tensor["B", "H", {declared}]:
            return {value}
        """)
    if ok:
        assert checked.ok
    else:
        find(checked, Expect("E-DTYPE", f"the result is declared {declared} but the value is f32", (2, 12),
                             fixit=f"cast({value}, {declared})"))


def test_untyped_tensor_accepts_any_dtype() -> None:
    assert returned_type("""
        def g(a: Tensor["N"]) -> Tensor["N"]:
            return a
        def f(x: Tensor[3, int8], y: Tensor[3, bf16]):
            return (g(x), g(y))
        """) == "(Tensor[3, ?], Tensor[3, ?])"


# ---------------------------------------------------------------- symbolic algebra


def test_reshape_and_back_under_divisibility() -> None:
    src = """
        def f(x: Tensor["B", "D", f32]) -> Tensor["B", "D", f32] where D % 4 == 0:
            y = reshape(x, (x.shape[0], x.shape[1] // 4, 4))
            z = reshape(y, (x.shape[0], -1))
            w = reshape(y, x.shape)
            return z + w
        """
    assert assigned_types(src) == {"y": 'Tensor["B", "D//4", 4, f32]', "z": 'Tensor["B", "D", f32]',
                                   "w": 'Tensor["B", "D", f32]'}


def test_reshape_back_needs_the_divisibility_fact() -> None:
    checked = check("""
        def f(x: Tensor["B", "D", f32]) -> Tensor["B", "D", f32]:
            y = reshape(x, (x.shape[0], x.shape[1] // 4, 4))
            return y
        """)
    find(checked, Expect("E-SHAPE", "reshape: cannot reshape B*D elements into 4*B*(D//4)", (2, 9)))


def test_equal_dims_from_where_are_interchangeable() -> None:
    types = assigned_types("""
        def f(x: Tensor["B", "H", f32], y: Tensor["B", "D", f32],
              w: Tensor["D", "H", f32]) -> Tensor["B", "4*D", f32]
                where H == 4 * D:
            a = x + concat([y, y, y, y], axis=1)
            b = y @ w
            c = reshape(x, (x.shape[0], 4, y.shape[1]))
            d = split(x, 4, axis=1)[0] - y
            e = x[:, : 2 * y.shape[1]]
            return a + b
        """)
    assert types == {
        "a": 'Tensor["B", "H", f32]', "b": 'Tensor["B", "H", f32]', "c": 'Tensor["B", 4, "D", f32]',
        "d": 'Tensor["B", "D", f32]', "e": 'Tensor["B", "2*D", f32]',
    }


def test_distinct_symbols_are_not_equal_without_a_fact() -> None:
    checked = check("""
        def f(x: Tensor["B", "H", f32], y: Tensor["B", "D", f32]):
            return x + y
        """)
    d = find(checked, Expect("E-SHAPE", "add: x.shape[1] (H) and y.shape[1] (D) do not broadcast", (2, 12)))
    assert d.notes == ("add 'where H == D' or fix the operand",)
    assert [(lb.span.col, lb.message) for lb in d.labels] == [(12, "dimension H"), (16, "dimension D")]


def test_matmul_error_names_both_operands_and_suggests_a_fact() -> None:
    checked = check("""
        def f(x: Tensor["B", "D", f32], w1: Tensor["K", "H", f32]):
            return x @ w1
        """)
    d = find(checked, Expect("E-SHAPE", "matmul: x.shape[1] (D) must equal w1.shape[0] (K)", (2, 12)))
    labels = [(lb.span.col, lb.message) for lb in d.labels]
    assert labels == [(12, "x.shape[1] is D"), (16, "w1.shape[0] is K")]
    assert d.notes == ("add 'where D == K' or fix the operand",)


@pytest.mark.parametrize(("where", "ok"), [
    ("where D >= 64", True),
    ("where D in 64..=128", True),
    ("where D == 2 * E, E >= 32", True),
    ("where D >= 63", False),
    ("", False),
])
def test_slices_need_provable_bounds(where: str, ok: bool) -> None:
    checked = check(f"""
        def f(x: Tensor["B", "D", f32], e: Tensor["E", f32]) {where}:
            return x[:, 0:64]
        """)
    assert checked.ok == ok
    if not ok:
        find(checked, Expect("E-SHAPE", "slice end 64 may exceed x.shape[1] (D)", (2, 17)))


def test_split_uses_divisibility_facts() -> None:
    assert returned_type("""
        def f(x: Tensor["B", "D", f32]) where D % 6 == 0:
            return split(x, 3, axis=-1)[2]
        """) == 'Tensor["B", "D//3", f32]'


def test_where_ranges_and_compound_dims_in_annotations() -> None:
    assert returned_type("""
        def f(x: Tensor["B", "S+1", f32]) -> Tensor["B", "S", f32] where S in 1..=8192:
            return x[:, 1:]
        """) == 'Tensor["B", "S", f32]'


# ---------------------------------------------------------------- regressions found by tests/test_fuzz.py


@pytest.mark.parametrize(("expr", "col"), [("squeeze(x, axis=0)", 28), ("swapaxes(x, 0, -1)", 24),
                                          ("split(x, 1)", 12)])
def test_axis_builtins_on_a_rank_0_tensor(expr: str, col: int) -> None:
    # Axis 0 of a scalar is accepted by reductions (like NumPy); these index a dim, and crashed.
    checked = check(f"""
        def f(x: Tensor[f32]):
            return {expr}
        """)
    d = find(checked, Expect("E-SHAPE", "axis 0 is out of range for a tensor of rank 0", (2, col)))
    assert "a rank-0 tensor has no axes" in d.notes


def test_reductions_still_take_axis_0_of_a_scalar() -> None:
    assert returned_type("""
        def f(x: Tensor[f32]):
            return sum(x, axis=0)
        """) == "Tensor[f32]"


def test_split_into_too_many_parts() -> None:
    # The result is a tuple of n types: a huge n hung the checker building it.
    checked = check("""
        def f(x: Tensor["B", f32]) where B == 4096:
            a = split(x, 2048)
            return split(x, 99999999999999999999999999)
        """)
    find(checked, Expect("E-SHAPE", "'n' must be at most 1024, found 2048", (2, 18)))
    find(checked, Expect("E-SHAPE", "'n' must be at most 1024, found 99999999999999999999999999", (3, 21)))
