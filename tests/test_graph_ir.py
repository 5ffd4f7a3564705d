"""Graph IR: text round trip, verifier rules, and each pass checked on printed IR with FileCheck."""

from __future__ import annotations

import math
import re
from pathlib import Path
from textwrap import dedent

import numpy as np
import pytest
from filecheck_util import filecheck
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.dtypes import BF16, BOOL, DTYPES, F16, F32, F64, INT32, INT64, DType, numpy_dtype
from tessera.ir.graph.ops import (
    BINARY,
    COMPARE_PREDICATES,
    IR_VERSION,
    OPS,
    REDUCE_KINDS,
    ROUNDING,
    UNARY,
    Function,
    IRError,
    Module,
    Op,
    TensorType,
    Value,
    make_call,
    make_op,
)
from tessera.ir.graph.parser import parse_function, parse_module
from tessera.ir.graph.passes import (
    canonicalize,
    cse,
    dce,
    fold_constants,
    inline_calls,
    optimize,
    specialize_shapes,
)
from tessera.ir.graph.passes.canonicalize import lossless
from tessera.ir.graph.printer import print_function, print_module
from tessera.ir.graph.verify import int_range, verify_function, verify_module
from tessera.symbolic import Dim

# ------------------------------------------------------------------ building functions by hand


def T(dims: str, dtype: DType) -> TensorType:
    """`T("B, D//4", f32)`: a tensor type from dim texts."""
    return TensorType(tuple(Dim(d) for d in dims.split(",")) if dims.strip() else (), dtype)


class FB:
    """A tiny function builder over make_op, for tests."""

    def __init__(self, name: str, symbols: str = "", effects: tuple[str, ...] = (),
                 where: tuple[str, ...] = ()) -> None:
        self.name = name
        self.symbols = tuple(symbols.split()) if symbols else ()
        self.effects = effects
        self.where = where
        self.params: list[Value] = []
        self.ops: list[Op] = []

    def param(self, hint: str, dims: str, dtype: DType) -> Value:
        v = Value(T(dims, dtype), hint)
        self.params.append(v)
        return v

    def op(self, name: str, *operands: Value, hint: str = "", **attrs: object) -> Value:
        op = make_op(name, operands, hint, **attrs)  # type: ignore[arg-type]
        self.ops.append(op)
        return op.result if op.results else None  # type: ignore[return-value]

    def call(self, callee: Function, *operands: Value, hint: str = "") -> Value:
        op = make_call(callee, operands, hint)
        self.ops.append(op)
        return op.results[0]

    def ret(self, *values: Value) -> Function:
        return Function(self.name, self.params, self.ops, list(values), effects=self.effects,
                        constraints=self.where, symbols=self.symbols)


def dims(text: str) -> tuple[Dim, ...]:
    return tuple(Dim(d) for d in text.split(","))


def mlp() -> Function:
    b = FB("mlp", "B D H", where=("D % 8 == 0", "H == 4*D", "B in 1..=4096"))
    x = b.param("x", "B, D", BF16)
    w1 = b.param("w1", "D, H", BF16)
    b1 = b.param("b1", "H", F32)
    w2 = b.param("w2", "H, D", BF16)
    h = b.op("matmul", x, w1, accum=F32)
    bb = b.op("broadcast_to", b1, shape=dims("B, H"))
    h = b.op("add", h, bb, hint="h")
    h = b.op("gelu", h, hint="h", approximate="none")
    hc = b.op("cast", h, rounding="nearest_even", dtype=BF16)
    y = b.op("matmul", hc, w2, accum=F32)
    return b.ret(b.op("cast", y, dtype=BF16, rounding="nearest_even"))


def softmax_stable() -> Function:
    b = FB("softmax", "N D")
    x = b.param("x", "N, D", F32)
    m = b.op("reduce", x, hint="m", kind="max", axes=(1,), keepdims=True, accum=F32)
    mb = b.op("broadcast_to", m, shape=dims("N, D"))
    e = b.op("exp", b.op("sub", x, mb), hint="e")
    s = b.op("reduce", e, hint="s", kind="sum", axes=(1,), keepdims=True, accum=F32)
    return b.ret(b.op("div", e, b.op("broadcast_to", s, shape=dims("N, D"))), b.op("softmax", x, axis=1, accum=F32))


def layernorm_fn() -> Function:
    b = FB("layernorm", "B S D", where=("D <= 8192",))
    x = b.param("x", "B, S, D", BF16)
    w = b.param("w", "D", BF16)
    bias = b.param("b", "D", BF16)
    y = b.op("layernorm", x, w, bias, eps=1e-05, accum=F32)
    r = b.op("rmsnorm", x, w, eps=1e-06, accum=F32)
    lse = b.op("logsumexp", b.op("cast", r, dtype=F32, rounding="nearest_even"), axes=(2,), keepdims=False,
               accum=F32)
    return b.ret(y, lse)


def attention_block() -> Function:
    b = FB("attention", "B S D", where=("D % 8 == 0",))
    x = b.param("x", "B, S, D", BF16)
    wqkv = b.param("wqkv", "D, 3*D", BF16)
    wq = b.op("broadcast_to", wqkv, shape=dims("B, D, 3*D"))
    qkv = b.op("cast", b.op("matmul", x, wq, accum=F32), dtype=BF16, rounding="nearest_even")
    heads = []
    for i, name in enumerate("qkv"):
        part = b.op("slice", qkv, hint=name, starts=(Dim(0), Dim(0), Dim(i) * Dim("D")),
                    stops=(Dim("B"), Dim("S"), Dim(i + 1) * Dim("D")), steps=(1, 1, 1))
        r = b.op("reshape", part, hint=name, shape=dims("B, S, 8, D//8"))
        heads.append(b.op("transpose", r, hint=name, perm=(0, 2, 1, 3)))
    a = b.op("attention", *heads, causal=True, scale=0.125, accum=F32)
    a = b.op("reshape", b.op("transpose", a, perm=(0, 2, 1, 3)), hint="a", shape=dims("B, S, D"))
    ids = b.op("iota", n=Dim("S"), dtype=INT64)
    g = b.op("gather", a, ids)
    return b.ret(b.op("add", x, a), g)


def effects_fn() -> Function:
    b = FB("noisy", "N", effects=("io", "random"))
    x = b.param("x", "N", F32)
    r = b.op("random", shape=dims("N"), dtype=F32, dist="uniform", seed=7)
    keep = b.op("cmp", r, b.op("fill", shape=dims("N"), value=0.1, dtype=F32), pred="ge")
    y = b.op("select", keep, b.op("mul", x, b.op("fill", shape=dims("N"), value=1 / 0.9, dtype=F32)),
             b.op("fill", shape=dims("N"), value=0.0, dtype=F32))
    b.op("print", y, b.op("constant", value=-0.0, dtype=F32), format='kept "{}"\n\t{}')
    c = b.op("concat", y, y, axis=0)
    return b.ret(c, b.op("reduce", y, kind="argmax", axes=(0,), keepdims=False, accum=INT64))


EXAMPLES = [mlp, softmax_stable, layernorm_fn, attention_block, effects_fn]


def fn(text: str) -> Function:
    f = parse_function(dedent(text))
    verify_function(f)
    return f


def roundtrip(m: Module) -> str:
    text = print_module(m)
    again = parse_module(text)
    verify_module(again)
    assert print_module(again) == text
    return text


# ------------------------------------------------------------------ text form


@pytest.mark.parametrize("build", EXAMPLES, ids=lambda b: b.__name__)
def test_examples_verify_and_round_trip(build) -> None:  # type: ignore[no-untyped-def]
    f = build()
    verify_function(f)
    roundtrip(Module([f]))


def test_printed_form() -> None:
    text = print_module(Module([mlp()]))
    filecheck(text, rf"""
        CHECK: tessera.graph {IR_VERSION} hash={{{{[0-9a-f]+}}}}{{{{$}}}}
        CHECK-NEXT: func @mlp(%x: tensor<[B, D], bf16>, %w1: tensor<[D, H], bf16>, %b1: tensor<[H], f32>, %w2: tensor<[H, D], bf16>) -> (tensor<[B, D], bf16>)
        CHECK-NEXT: attributes {{where = ["D % 8 == 0", "H == 4*D", "B in 1..=4096"], symbols = ["B", "D", "H"]}} {{
        CHECK-NEXT: %0 = matmul(%x, %w1) {{accum = f32}} : tensor<[B, H], f32>
        CHECK-NEXT: %1 = broadcast_to(%b1) {{shape = [B, H]}} : tensor<[B, H], f32>
        CHECK-NEXT: %h = add(%0, %1) : tensor<[B, H], f32>
        CHECK-NEXT: %h.1 = gelu(%h) {{approximate = "none"}} : tensor<[B, H], f32>
        CHECK-NEXT: %2 = cast(%h.1) {{dtype = bf16, rounding = "nearest_even"}} : tensor<[B, H], bf16>
        CHECK-NEXT: %3 = matmul(%2, %w2) {{accum = f32}} : tensor<[B, D], f32>
        CHECK-NEXT: %4 = cast(%3) {{dtype = bf16, rounding = "nearest_even"}} : tensor<[B, D], bf16>
        CHECK-NEXT: return %4
        CHECK-NEXT: }}
    """)


def test_header_hash_covers_the_body() -> None:
    text = print_module(Module([mlp(), softmax_stable()]))
    header, body = text.split("\n", 1)
    import hashlib

    assert header == f"tessera.graph {IR_VERSION} hash={hashlib.sha256(body.encode()).hexdigest()[:16]}"
    with pytest.raises(IRError, match="content hash mismatch"):
        parse_module(text.replace("accum = f32", "accum = f64", 1))
    with pytest.raises(IRError, match="version 99 is not supported"):
        parse_module(text.replace(f"tessera.graph {IR_VERSION} ", "tessera.graph 99 ", 1))
    # Text without a header (hand-written IR) parses as well.
    assert print_module(parse_module(body)) == text


def test_special_values_round_trip() -> None:
    b = FB("f", "N", effects=("io",))
    for v in (math.inf, -math.inf, math.nan, -0.0, 0.0, 1e-300, 5e-324, 1.7976931348623157e308, 0.1, -2.5e-05):
        b.op("constant", value=v, dtype=F64)
    x = b.param("x", "N", F32)
    for s in ("", 'q"uote', "back\\slash", "new\nline\ttab", "unicode σ ∑ \u2028", "{{}}", "\x00\x1f"):
        b.op("print", x, format=s + " {}")
    f = b.ret(x)
    text = roundtrip(Module([f]))
    again = parse_module(text).functions[0]
    values = [op.attr("value") for op in again.ops if op.name == "constant"]
    assert [repr(v) for v in values] == ["inf", "-inf", "nan", "-0.0", "0.0", "1e-300", "5e-324",
                                         "1.7976931348623157e+308", "0.1", "-2.5e-05"]
    assert [op.attr("format") for op in again.ops if op.name == "print"][3] == "new\nline\ttab {}"


def test_names_from_hints_are_unique_and_stable() -> None:
    b = FB("f")
    x = b.param("x", "4", F32)
    hints = ["x", "x", "x.1", "", "0", "1a", "a b", "σ", "", "%y"]
    for h in hints:
        x = b.op("neg", x, hint=h)
    text = print_function(b.ret(x))
    names = re.findall(r"(%\S+) = neg", text)
    assert names == ["%x.1", "%x.2", "%x.1.1", "%0", "%_0", "%_1a", "%a_b", "%_", "%1", "%_y"]
    assert print_function(parse_function(text)) == text


# A random-function generator: every drawn function is valid by construction.
_SYMS = ("B", "D", "N")
_DIMS = [Dim("B"), Dim("D"), Dim(1), Dim(3), Dim("D//4"), Dim("2*N + 1"), Dim("N % 8"), Dim("B*D")]
_FLOATS = [F32, BF16, F16, F64, DTYPES["fp8_e4m3"]]
_INTS = [INT32, INT64, DTYPES["int8"], DTYPES["uint8"]]
_HINTS = st.sampled_from(["", "", "x", "h", "x.1", "0", "y", "é", "a-b"]) | st.text(max_size=4)
_VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 0.0, 1.0, 0.1])


@st.composite
def _functions(draw: st.DrawFn) -> Function:
    b = FB("rand", " ".join(_SYMS), effects=("io", "random"),
           where=tuple(draw(st.lists(st.sampled_from(["D % 4 == 0", "B <= 64", "N in 1..=16", "B != 0"]),
                                     unique=True, max_size=2))))
    pool: list[Value] = []
    for _ in range(draw(st.integers(1, 3))):
        rank = draw(st.integers(0, 3))
        ds = ", ".join(str(draw(st.sampled_from(_DIMS))) for _ in range(rank))
        pool.append(b.param(draw(_HINTS), ds, draw(st.sampled_from([*_FLOATS, *_INTS, BOOL]))))

    def pick(pred=lambda v: True) -> Value | None:  # type: ignore[no-untyped-def]
        options = [v for v in pool if pred(v)]
        return draw(st.sampled_from(options)) if options else None

    def splat_like(v: Value) -> Value:
        dt = v.ty.dtype
        if dt.is_float:
            value = draw(_VALUES)
        else:
            lo, hi = int_range(dt) if dt.is_int else (0, 1)
            lo, hi = max(lo, -(2**53)), min(hi, 2**53)  # the float `value` holds ints exactly up to 2**53
            value = float(draw(st.integers(lo, hi) | st.integers(max(lo, -3), min(hi, 3))))
        if v.ty.rank == 0:
            return b.op("constant", value=value, dtype=dt)
        return b.op("fill", shape=v.ty.dims, value=value, dtype=dt)

    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["unary", "binary", "cmp", "select", "cast", "splat", "reduce", "transpose",
                                     "reshape", "broadcast", "slice", "concat", "matmul", "softmax", "print",
                                     "random", "iota", "extent", "norm"]))
        hint = draw(_HINTS)
        x = pick()
        assert x is not None
        fl = x.ty.dtype.is_float
        out: Value | None = None
        if kind == "unary":
            names = [n for n in UNARY if n != "not"] + ["gelu", "isnan"] if fl else ["neg", "abs", "relu", "not", "isinf"]
            name = draw(st.sampled_from(["not", "isnan"] if x.ty.dtype == BOOL else names))
            attrs = {"approximate": draw(st.sampled_from(["none", "tanh"]))} if name == "gelu" else {}
            out = b.op(name, x, hint=hint, **attrs)
        elif kind == "binary":
            y = draw(st.sampled_from([x, splat_like(x)]))
            out = b.op(draw(st.sampled_from(BINARY)), x, y, hint=hint)
        elif kind == "cmp":
            out = b.op("cmp", x, splat_like(x), hint=hint, pred=draw(st.sampled_from(COMPARE_PREDICATES)))
        elif kind == "select":
            c = b.op("cmp", x, x, pred="eq")
            out = b.op("select", c, x, splat_like(x), hint=hint)
        elif kind == "cast":
            out = b.op("cast", x, hint=hint, dtype=draw(st.sampled_from([*_FLOATS, *_INTS, BOOL])),
                       rounding=draw(st.sampled_from(ROUNDING)))
        elif kind == "splat":
            out = splat_like(x)
        elif kind == "reduce" and x.ty.rank:
            axes = draw(st.lists(st.integers(0, x.ty.rank - 1), min_size=1, unique=True))
            out = b.op("reduce", x, hint=hint, kind=draw(st.sampled_from(REDUCE_KINDS)), axes=tuple(axes),
                       keepdims=draw(st.booleans()), accum=draw(st.sampled_from([F32, INT64, F64])))
        elif kind == "transpose":
            out = b.op("transpose", x, hint=hint, perm=tuple(draw(st.permutations(range(x.ty.rank)))))
        elif kind == "reshape":
            total = Dim(1)
            for d in x.ty.dims:
                total = total * d
            out = b.op("reshape", x, hint=hint, shape=(total,))
        elif kind == "broadcast":
            out = b.op("broadcast_to", x, hint=hint, shape=(draw(st.sampled_from(_DIMS)), *x.ty.dims))
        elif kind == "slice":
            steps = tuple(draw(st.integers(1, 3)) for _ in x.ty.dims)
            out = b.op("slice", x, hint=hint, starts=tuple(Dim(0) for _ in x.ty.dims), stops=x.ty.dims,
                       steps=steps)
        elif kind == "concat" and x.ty.rank:
            out = b.op("concat", x, x, hint=hint, axis=draw(st.integers(0, x.ty.rank - 1)))
        elif kind == "matmul" and x.ty.rank == 2:
            out = b.op("matmul", x, b.op("transpose", x, perm=(1, 0)), hint=hint, accum=F32)
        elif kind == "softmax" and x.ty.rank and fl:
            out = b.op("softmax", x, hint=hint, axis=x.ty.rank - 1, accum=F32)
        elif kind == "norm" and x.ty.rank and fl:
            w = b.op("fill", shape=x.ty.dims[-1:], value=1.0, dtype=x.ty.dtype)
            out = b.op("layernorm", x, w, w, hint=hint, eps=draw(_VALUES), accum=F32)
        elif kind == "print":
            shown = draw(st.lists(st.sampled_from(pool), max_size=2))
            text = draw(st.text(max_size=8)).replace("{", "{{").replace("}", "}}")
            b.op("print", *shown, format=text + " {}" * len(shown))
        elif kind == "random":
            out = b.op("random", hint=hint, shape=x.ty.dims, dtype=F32, dist=draw(st.sampled_from(["normal", "uniform"])),
                       seed=draw(st.integers(-(2**63), 2**63 - 1)))
        elif kind == "iota":
            out = b.op("iota", hint=hint, n=draw(st.sampled_from(_DIMS)), dtype=INT32)
        elif kind == "extent":
            out = b.op("extent", hint=hint, value=draw(st.sampled_from(_DIMS)), dtype=INT64)
        if out is not None:
            pool.append(out)
    # The last value is returned, so that the passes have a live chain to work on.
    return b.ret(pool[-1], *draw(st.lists(st.sampled_from(pool), max_size=2)))


_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(_functions())
def test_random_functions_round_trip(f: Function) -> None:
    verify_function(f)
    roundtrip(Module([f]))


@_FAST
@given(_functions())
def test_optimize_random_functions_verifies_and_is_a_fixpoint(f: Function) -> None:
    before = print_function(f)
    g = optimize(f)
    verify_function(g)
    assert print_function(f) == before  # the input is untouched
    assert print_function(optimize(g)) == print_function(g)
    roundtrip(Module([g]))


def _random_inputs(f: Function, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for p in f.params:
        shape = tuple(d.value for d in p.ty.dims)
        dt = p.ty.dtype
        if dt.is_float:
            a = rng.standard_normal(shape) * 3
            if a.size:
                a.flat[rng.integers(a.size)] = rng.choice([np.inf, -np.inf, np.nan, -0.0])
        elif dt.kind == "bool":
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0 if dt.kind == "uint" else -5, 6, shape)
        out.append(np.asarray(a).astype(numpy_dtype(dt)))
    return out


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "biu":
        return bool(np.array_equal(a, b))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return bool(np.array_equal(a64, b64, equal_nan=True) and np.array_equal(np.signbit(a64), np.signbit(b64)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_functions(), st.integers(0, 2**32 - 1))
def test_optimize_keeps_every_result_bit_for_bit(f: Function, seed: int) -> None:
    """The passes on random functions, specialised to small extents, evaluated by the reference
    evaluator on fresh random inputs: the same bits and the same printed output (folding computes
    as the reference does, so even folded values agree exactly)."""
    import io

    from tessera.ir.graph.reference import evaluate

    s = specialize_shapes(f, {"B": 3, "D": 8, "N": 2})
    args = _random_inputs(s, np.random.default_rng(seed))
    printed = io.StringIO()
    try:
        want = evaluate(s, args, out=printed)
    except Exception:  # noqa: BLE001 - the random program itself has no reference value (a negative seed...)
        return
    for g in (dce(cse(canonicalize(s))), optimize(s)):
        again = io.StringIO()
        got = evaluate(g, args, out=again)
        assert again.getvalue() == printed.getvalue()
        for a, b in zip(want, got):
            assert _bitwise_equal(a, b), (print_function(s), print_function(g), a, b)


# ------------------------------------------------------------------ parser errors


@pytest.mark.parametrize("text, where, message", [
    ("func @f() -> () {\n  return\n", "3:1", "expected '}'"),
    ("func @f(%x: tensor<[B], f32>) -> () {\n  %y = exp(%z) : tensor<[B], f32>\n  return\n}", "2:12",
     "use of undefined value %z"),
    ("func @f(%x: tensor<[4], f32>) -> () {\n  %x = exp(%x) : tensor<[4], f32>\n  return\n}", "2:3",
     "value %x is already defined at 1:9"),
    ("func @f(%x: tensor<[4], f32>) -> () {\n  %y = expo(%x) : tensor<[4], f32>\n  return\n}", "2:8",
     "unknown graph op 'expo'"),
    ("func @f(%x: tensor<[4], f33>) -> () {\n  return\n}", "1:25", "unknown dtype 'f33'"),
    ("func @f(%x: tensor<[4 +], f32>) -> () {\n  return\n}", "1:21", "bad dimension"),
    ("func @f(%x: tensor<[4], f32>) -> () {\n  %y = exp(%x)\n  return\n}", "2:8",
     "names 1 results but gives 0 result types"),
    ("func @f(%x: tensor<[4], f32>) -> (tensor<[4], f64>) {\n  return %x\n}", "2:3",
     "returned value 0 has type tensor<[4], f32>, the signature declares tensor<[4], f64>"),
    ("func @f(%x: tensor<[4], f32>) -> (tensor<[4], f32>) {\n  return\n}", "2:3",
     "returns 0 values, its signature declares 1"),
    ("func @f() -> () attributes {colour = []} {\n  return\n}", "1:29", "unknown function attribute 'colour'"),
    ("func @f() -> () {\n  return\n}\nfunc @f() -> () {\n  return\n}", "4:1", "function @f is defined twice"),
    ("func @f() -> () {\n  $\n}", "2:3", "unexpected character '$'"),
])
def test_parse_errors_have_line_and_column(text: str, where: str, message: str) -> None:
    with pytest.raises(IRError) as err:
        parse_module(text)
    assert str(err.value).startswith(where + ":"), str(err.value)
    assert message in str(err.value)


# ------------------------------------------------------------------ verifier rules

_HEAD = 'func @f(%x: tensor<[B, D], f32>, %w: tensor<[D, H], f32>, %i: tensor<[B, D], int32>) -> ()'
_ATTRS = ' attributes {symbols = ["B", "D", "H"]}'


@pytest.mark.parametrize("body, message", [
    ("%y = neg(%x, %x) : tensor<[B, D], f32>", "neg takes 1 operands, got 2"),
    ("%y = gelu(%x) : tensor<[B, D], f32>", "attributes [] do not match the schema ['approximate']"),
    ('%y = cast(%x) {rounding = "nearest_even", dtype = f16} : tensor<[B, D], f16>',
     "attributes ['rounding', 'dtype'] do not match the schema ['dtype', 'rounding']"),
    ('%y = matmul(%x, %w) {accum = "f32"} : tensor<[B, H], f32>', "attribute 'accum' must be of kind dtype"),
    ('%y = reduce(%x) {kind = "sum", axes = [1.5], keepdims = false, accum = f32} : tensor<[B], f32>',
     "attribute 'axes' must be of kind ints"),
    ('%y = cmp(%x, %x) {pred = "lq"} : tensor<[B, D], bool>', "attribute 'pred' is 'lq'; expected one of eq"),
    ("%y = exp(%x) : tensor<[B, D], f64>", ("result 0 has type tensor<[B, D], f64>, but exp of these operands "
                                           "gives tensor<[B, D], f32>")),
    ("%y = matmul(%x, %w) {accum = f32} : tensor<[B, D], f32>", "but matmul of these operands gives"),
    ("%t = transpose(%x) {perm = [1, 0]} : tensor<[D, B], f32>\n  %y = add(%x, %t) : tensor<[B, D], f32>",
     "elementwise operand 1 has shape [D, B], operand 0 has [B, D]"),
    ("%y = add(%x, %i) : tensor<[B, D], f32>", "add operands have dtypes f32 and int32"),
    ("%y = select(%x, %x, %x) : tensor<[B, D], f32>", "select condition has dtype f32, expected bool"),
    ("%y = matmul(%x, %x) {accum = f32} : tensor<[B, D], f32>",
     "matmul contraction dims differ: x.shape[-1] (D) must equal y.shape[-2] (B)"),
    (("%b = broadcast_to(%w) {shape = [B, D, H]} : tensor<[B, D, H], f32>\n"
     "  %c = broadcast_to(%w) {shape = [D, D, H]} : tensor<[D, D, H], f32>\n"
     "  %y = matmul(%b, %c) {accum = f32} : tensor<[B, D, H], f32>"), "matmul batch dims differ"),
    ('%y = reduce(%x) {kind = "sum", axes = [2], keepdims = false, accum = f32} : tensor<[B, D], f32>',
     "axis 2 is out of range for rank 2"),
    ('%y = reduce(%x) {kind = "sum", axes = [1, 1], keepdims = false, accum = f32} : tensor<[B], f32>',
     "axes [1, 1] repeat an axis"),
    ("%y = transpose(%x) {perm = [1, 1]} : tensor<[D, D], f32>", "perm [1, 1] is not a permutation of 0..1"),
    ("%y = slice(%x) {starts = [0, 4], stops = [B, 2], steps = [1, 1]} : tensor<[B, -2], f32>",
     "slice bounds on axis 1 break start <= stop"),
    ("%y = slice(%x) {starts = [0, 0], stops = [B, D + 1], steps = [1, 1]} : tensor<[B, D + 1], f32>",
     "break stop <= extent"),
    ("%y = slice(%x) {starts = [0, 0], stops = [B, D], steps = [1, 0]} : tensor<[B, D], f32>",
     "slice step on axis 1 must not be 0"),
    ("%y = slice(%x) {starts = [0], stops = [B], steps = [1]} : tensor<[B], f32>",
     "one start, stop and step per axis"),
    ("%y = reshape(%x) {shape = [B, H]} : tensor<[B, H], f32>", "reshape changes the element count"),
    ("%y = broadcast_to(%x) {shape = [B, H]} : tensor<[B, H], f32>", "operand dim 1 (D) cannot broadcast to H"),
    ("%y = concat(%x, %w) {axis = 0} : tensor<[B + D, D], f32>", "concat operand 1 dim 1 is H, operand 0 has D"),
    ('print(%x) {format = "x {}"}', "effect 'io' is not in the function's effects []"),
    ('print(%x) {format = "x"}', "print format 'x' has 0 '{}' for 1 operands"),
    ('print(%x) {format = "x {} }"}', "print format 'x {} }': Single '}' encountered"),
    ('print(%x) {format = "x {0}"}', "only bare '{}' placeholders are allowed"),
    ("%y = fill() {shape = [K], value = 0.0, dtype = f32} : tensor<[K], f32>",
     "symbol K is not among the function's symbols"),
    ("%y = gather(%x, %x) : tensor<[B, D, D], f32>", "gather ids have dtype f32"),
    ("%y = fill() {shape = [B], value = 300.0, dtype = int8} : tensor<[B], int8>",
     "fill value 300.0 is not an int8 (an integer in -128..127)"),
    ("%y = constant() {value = 0.5, dtype = int32} : tensor<[], int32>", "constant value 0.5 is not an int32"),
    ("%y = constant() {value = 2.0, dtype = bool} : tensor<[], bool>", "constant value 2.0 is not a bool"),
])
def test_verifier_rejects(body: str, message: str) -> None:
    f = parse_function(f"{_HEAD}{_ATTRS} {{\n  {body}\n  return\n}}\n")
    with pytest.raises(IRError) as err:
        verify_function(f)
    assert message in str(err.value), str(err.value)
    assert str(err.value).startswith("@f: `"), "the message shows the offending op"


def test_verifier_uses_where_constraints_for_symbolic_equality() -> None:
    text = ('func @f(%x: tensor<[H], f32>, %y: tensor<[4*D], f32>) -> (tensor<[H], f32>)\n'
            '    attributes {where = ["H == 4*D"], symbols = ["D", "H"]} {\n'
            '  %z = add(%x, %y) : tensor<[H], f32>\n  return %z\n}\n')
    verify_function(parse_function(text))
    with pytest.raises(IRError, match="elementwise operand 1 has shape"):
        verify_function(parse_function(text.replace('"H == 4*D"', '"H == 2*D"')))


def test_verifier_ssa_on_built_functions() -> None:
    f = mlp()
    f.ops[0], f.ops[1] = f.ops[1], f.ops[0]
    f.ops[0], f.ops[2] = f.ops[2], f.ops[0]  # %h now reads values defined after it
    with pytest.raises(IRError, match=r"operand 0 is not defined before this op in the function \(SSA\)"):
        verify_function(f)
    g = mlp()
    g.ops.append(g.ops[0])
    with pytest.raises(IRError, match="result 0 is already defined"):
        verify_function(g)
    h = mlp()
    foreign = Value(T("B, D", BF16), "foreign")
    h.ops[0].operands = (foreign, h.ops[0].operands[1])
    with pytest.raises(IRError, match="operand 0 is not defined"):
        verify_function(h)
    r = mlp()
    r.returns = [Value(T("B, D", BF16))]
    with pytest.raises(IRError, match="returned value 0 .* is not defined"):
        verify_function(r)


def test_verifier_attribute_dims_must_be_dims() -> None:
    f = FB("f")
    x = f.param("x", "4", F32)
    op = make_op("iota", [], n=4, dtype=INT32)  # an int where the schema says dim
    f.ops.append(op)
    with pytest.raises(IRError, match="attribute 'n' must be of kind dim"):
        verify_function(f.ret(x))


def _caller_and_helper() -> tuple[Function, Function]:
    h = FB("scale", "N", effects=("io",))
    x = h.param("v", "N", F32)
    two = h.op("fill", shape=dims("N"), value=2.0, dtype=F32)
    y = h.op("mul", x, two, hint="y")
    h.op("print", y, format="in helper {}")
    helper = h.ret(y)
    c = FB("main", "B D", effects=("io",))
    a = c.param("a", "B, D", F32)
    flat = c.op("reshape", a, shape=(Dim("B*D"),))
    s = c.call(helper, flat, hint="s")
    s2 = c.call(helper, s, hint="s2")
    return c.ret(s2), helper


def test_call_types_come_from_the_callee_with_symbols_bound() -> None:
    caller, helper = _caller_and_helper()
    m = Module([caller, helper])
    verify_module(m)
    filecheck(roundtrip(m), """
        CHECK: func @main(%a: tensor<[B, D], f32>) -> (tensor<[B*D], f32>)
        CHECK: %s = call(%0) {callee = @scale} : tensor<[B*D], f32>
        CHECK-NEXT: %s2 = call(%s) {callee = @scale} : tensor<[B*D], f32>
        CHECK: func @scale(%v: tensor<[N], f32>)
    """)
    with pytest.raises(IRError, match="argument 0 is tensor<\\[B, D\\], f32>, the callee expects tensor<\\[N\\], f32>"):
        make_call(helper, [caller.params[0]])


def test_verifier_call_rules() -> None:
    caller, helper = _caller_and_helper()
    with pytest.raises(IRError, match="callee @scale is not a function of the module"):
        verify_module(Module([caller]))
    text = print_module(Module([caller, helper])).split("\n", 1)[1]
    bad = text.replace("%s = call(%0) {callee = @scale} : tensor<[B*D], f32>",
                       "%s = call(%0) {callee = @scale} : tensor<[B], f32>")
    with pytest.raises(IRError, match=r"result 0 has type tensor<\[B\], f32>, but call"):
        verify_module(parse_module(bad))
    pure = text.replace('attributes {effects = ["io"], symbols = ["B", "D"]}', 'attributes {symbols = ["B", "D"]}')
    with pytest.raises(IRError, match="effect 'io' is not in the function's effects"):
        verify_module(parse_module(pure))


# ------------------------------------------------------------------ passes


def after(pass_, text: str) -> str:
    """Parse and verify `text`, run the pass, verify and print the result (and check that the input
    function was left as it was)."""
    f = fn(text)
    before = print_function(f)
    g = pass_(f)
    verify_function(g)
    assert print_function(f) == before
    return print_function(g)


_CANON_HEAD = ('func @f(%x: tensor<[N], f32>, %i: tensor<[N], int32>, %m: tensor<[N, M], f32>, '
               '%c: tensor<[N], bool>) -> (tensor<[N], f32>, tensor<[N], int32>, tensor<[N, M], f32>)\n'
               '    attributes {symbols = ["N", "M"]} {\n'
               '  %fz = fill() {shape = [N], value = 0.0, dtype = f32} : tensor<[N], f32>\n'
               '  %fnz = fill() {shape = [N], value = -0.0, dtype = f32} : tensor<[N], f32>\n'
               '  %f1 = fill() {shape = [N], value = 1.0, dtype = f32} : tensor<[N], f32>\n'
               '  %iz = fill() {shape = [N], value = 0.0, dtype = int32} : tensor<[N], int32>\n'
               '  %i1 = fill() {shape = [N], value = 1.0, dtype = int32} : tensor<[N], int32>\n')


def canon(body: str, ret: str = "%x, %i, %m") -> str:
    return after(canonicalize, _CANON_HEAD + dedent(body) + f"  return {ret}\n}}\n")


@pytest.mark.parametrize("body, ret, checks", [
    # x + 0: exact for ints and for floats with -0.0 only.
    ("  %a = add(%i, %iz) : tensor<[N], int32>\n  %b = add(%iz, %a) : tensor<[N], int32>\n", "%x, %b, %m",
     "CHECK: return %x, %i, %m"),
    ("  %a = add(%x, %fnz) : tensor<[N], f32>\n", "%a, %i, %m", "CHECK: return %x, %i, %m"),
    ("  %a = add(%x, %fz) : tensor<[N], f32>\n", "%a, %i, %m", "CHECK: %a = add(%x, %fz)\nCHECK: return %a"),
    ("  %a = sub(%x, %fz) : tensor<[N], f32>\n", "%a, %i, %m", "CHECK: return %x, %i, %m"),
    ("  %a = mul(%f1, %x) : tensor<[N], f32>\n  %b = div(%a, %f1) : tensor<[N], f32>\n", "%b, %i, %m",
     "CHECK: return %x, %i, %m"),
    # A splat reached through shape ops (what the builder emits for `x * 1.0`) counts as well.
    (("  %one = constant() {value = 1.0, dtype = f32} : tensor<[], f32>\n"
     "  %b1 = broadcast_to(%one) {shape = [N]} : tensor<[N], f32>\n  %a = mul(%x, %b1) : tensor<[N], f32>\n"),
     "%a, %i, %m", "CHECK: return %x, %i, %m"),
    # x * 0 and x - x only for ints (NaN * 0 and inf - inf are NaN).
    ("  %a = mul(%i, %iz) : tensor<[N], int32>\n", "%x, %a, %m", "CHECK: return %x, %iz, %m"),
    ("  %a = mul(%x, %fz) : tensor<[N], f32>\n", "%a, %i, %m", "CHECK: %a = mul(%x, %fz)\nCHECK: return %a"),
    ("  %a = sub(%i, %i) : tensor<[N], int32>\n", "%x, %a, %m",
     "CHECK: %a = fill() {shape = [N], value = 0.0, dtype = int32}\nCHECK: return %x, %a, %m"),
    ("  %a = sub(%x, %x) : tensor<[N], f32>\n", "%a, %i, %m", "CHECK: %a = sub(%x, %x)"),
    ("  %a = neg(%x) : tensor<[N], f32>\n  %b = neg(%a) : tensor<[N], f32>\n", "%b, %i, %m",
     "CHECK: return %x, %i, %m"),
    (("  %a = not(%c) : tensor<[N], bool>\n  %b = not(%a) : tensor<[N], bool>\n"
     "  %s = select(%b, %x, %fz) : tensor<[N], f32>\n"), "%s, %i, %m", "CHECK: %s = select(%c, %x, %fz)"),
    ("  %a = neg(%x) : tensor<[N], f32>\n  %b = abs(%a) : tensor<[N], f32>\n  %d = abs(%b) : tensor<[N], f32>\n",
     "%d, %i, %m", "CHECK: %b = abs(%x)\nCHECK: return %b, %i, %m"),
    ("  %a = maximum(%x, %x) : tensor<[N], f32>\n  %b = minimum(%a, %a) : tensor<[N], f32>\n", "%b, %i, %m",
     "CHECK: return %x, %i, %m"),
    (("  %t = fill() {shape = [N], value = 1.0, dtype = bool} : tensor<[N], bool>\n"
     "  %s = select(%t, %x, %fz) : tensor<[N], f32>\n  %u = select(%c, %s, %s) : tensor<[N], f32>\n"),
     "%u, %i, %m", "CHECK: return %x, %i, %m"),
    ('  %a = cast(%x) {dtype = f32, rounding = "nearest_even"} : tensor<[N], f32>\n', "%a, %i, %m",
     "CHECK: return %x, %i, %m"),
    # f32 -> f64 is exact, so the double cast is one cast; f32 -> f16 -> f32 rounds and stays.
    (('  %a = cast(%x) {dtype = f64, rounding = "nearest_even"} : tensor<[N], f64>\n'
     '  %b = cast(%a) {dtype = bf16, rounding = "toward_zero"} : tensor<[N], bf16>\n'), "%x, %i, %m",
     "CHECK: %b = cast(%x) {dtype = bf16, rounding = \"toward_zero\"}"),
    (('  %a = cast(%i) {dtype = f64, rounding = "nearest_even"} : tensor<[N], f64>\n'
     '  %b = cast(%a) {dtype = int32, rounding = "nearest_even"} : tensor<[N], int32>\n'), "%x, %b, %m",
     "CHECK: return %x, %i, %m"),
    (('  %a = cast(%x) {dtype = f16, rounding = "nearest_even"} : tensor<[N], f16>\n'
     '  %b = cast(%a) {dtype = f32, rounding = "nearest_even"} : tensor<[N], f32>\n'), "%b, %i, %m",
     "CHECK: %b = cast(%a)\nCHECK: return %b"),
    (("  %a = reshape(%m) {shape = [N*M]} : tensor<[N*M], f32>\n"
     "  %b = reshape(%a) {shape = [M, N]} : tensor<[M, N], f32>\n"
     "  %d = reshape(%b) {shape = [N, M]} : tensor<[N, M], f32>\n"), "%x, %i, %d", "CHECK: return %x, %i, %m"),
    (("  %a = broadcast_to(%x) {shape = [N]} : tensor<[N], f32>\n"
     "  %b = broadcast_to(%a) {shape = [M, N]} : tensor<[M, N], f32>\n"
     "  %d = broadcast_to(%b) {shape = [2, M, N]} : tensor<[2, M, N], f32>\n"
     "  %r = reduce(%d) {kind = \"sum\", axes = [0, 1], keepdims = false, accum = f32} : tensor<[N], f32>\n"),
     "%r, %i, %m", "CHECK: %d = broadcast_to(%x) {shape = [2, M, N]}\nCHECK-NEXT: %r = reduce(%d)"),
    (("  %a = transpose(%m) {perm = [1, 0]} : tensor<[M, N], f32>\n"
     "  %b = transpose(%a) {perm = [1, 0]} : tensor<[N, M], f32>\n"), "%x, %i, %b", "CHECK: return %x, %i, %m"),
    (("  %a = slice(%m) {starts = [0, 0], stops = [N, M], steps = [1, 1]} : tensor<[N, M], f32>\n"
     "  %b = concat(%a) {axis = 0} : tensor<[N, M], f32>\n"), "%x, %i, %b", "CHECK: return %x, %i, %m"),
])
def test_canonicalize(body: str, ret: str, checks: str) -> None:
    filecheck(canon(body, ret), checks)


def test_canonicalize_composes_transposes() -> None:
    out = after(canonicalize, """
        func @f(%x: tensor<[A, B, C], f32>) -> (tensor<[C, A, B], f32>) attributes {symbols = ["A", "B", "C"]} {
          %t = transpose(%x) {perm = [1, 2, 0]} : tensor<[B, C, A], f32>
          %u = transpose(%t) {perm = [1, 2, 0]} : tensor<[C, A, B], f32>
          return %u
        }
    """)
    filecheck(out, """
        CHECK: %u = transpose(%x) {perm = [2, 0, 1]} : tensor<[C, A, B], f32>
        CHECK-NEXT: return %u
    """)


def test_lossless_casts() -> None:
    assert lossless(F32, F64) and lossless(BF16, F32) and lossless(F16, F32) and lossless(BOOL, BF16)
    assert lossless(DTYPES["int8"], BF16) and lossless(DTYPES["int16"], F32) and lossless(INT32, F64)
    assert lossless(DTYPES["uint8"], DTYPES["int16"]) and lossless(DTYPES["fp8_e5m2"], F16)
    assert not lossless(F16, BF16) and not lossless(BF16, F16) and not lossless(F32, DTYPES["tf32"])
    assert not lossless(INT32, F32) and not lossless(INT64, F64) and not lossless(DTYPES["int8"], DTYPES["uint8"])
    assert not lossless(F32, INT64) and not lossless(INT32, BOOL)
    # Checked exhaustively for the small dtypes: every value survives the round trip.
    for src in ("int8", "uint8", "fp8_e4m3", "fp8_e5m2"):
        values = np.arange(256, dtype=np.uint8).view(numpy_dtype(DTYPES[src]))
        for dst in ("int16", "f16", "bf16", "f32", "int8", "fp8_e5m2"):
            ok = lossless(DTYPES[src], DTYPES[dst])
            back = values.astype(numpy_dtype(DTYPES[dst])).astype(values.dtype)
            same = np.array_equal(back, values, equal_nan=DTYPES[src].is_float)
            assert not ok or same, (src, dst)


def test_cse_merges_pure_ops_only() -> None:
    out = after(cse, """
        func @f(%x: tensor<[N], f32>, %y: tensor<[N], f32>) -> (tensor<[N], f32>)
            attributes {effects = ["io", "random"], symbols = ["N"]} {
          %a = add(%x, %y) : tensor<[N], f32>
          %b = add(%y, %x) : tensor<[N], f32>
          %c = sub(%x, %y) : tensor<[N], f32>
          %d = sub(%y, %x) : tensor<[N], f32>
          %z = constant() {value = 0.0, dtype = f32} : tensor<[], f32>
          %nz = constant() {value = -0.0, dtype = f32} : tensor<[], f32>
          %z2 = constant() {value = 0.0, dtype = f32} : tensor<[], f32>
          %r1 = random() {shape = [N], dtype = f32, dist = "normal", seed = 1} : tensor<[N], f32>
          %r2 = random() {shape = [N], dtype = f32, dist = "normal", seed = 1} : tensor<[N], f32>
          print(%z, %nz, %z2) {format = "p {} {} {}"}
          print(%z, %nz, %z2) {format = "p {} {} {}"}
          %s = add(%a, %b) : tensor<[N], f32>
          %t = add(%c, %d) : tensor<[N], f32>
          %u = add(%r1, %r2) : tensor<[N], f32>
          %v = add(%s, %t) : tensor<[N], f32>
          %w = add(%v, %u) : tensor<[N], f32>
          return %w
        }
    """)
    filecheck(out, """
        CHECK: %a = add(%x, %y)
        CHECK-NOT: add(%y, %x)
        CHECK: %c = sub(%x, %y)
        CHECK-NEXT: %d = sub(%y, %x)
        CHECK-NEXT: %z = constant() {value = 0.0, dtype = f32}
        CHECK-NEXT: %nz = constant() {value = -0.0, dtype = f32}
        CHECK-NEXT: %r1 = random()
        CHECK-NEXT: %r2 = random()
        CHECK-NEXT: print(%z, %nz, %z) {format = "p {} {} {}"}
        CHECK-NEXT: print(%z, %nz, %z) {format = "p {} {} {}"}
        CHECK-NEXT: %s = add(%a, %a)
        CHECK-NEXT: %t = add(%c, %d)
        CHECK-NEXT: %u = add(%r1, %r2)
    """)


def test_dce_keeps_effects() -> None:
    out = after(dce, """
        func @f(%x: tensor<[N], f32>) -> (tensor<[N], f32>) attributes {effects = ["io", "random"], symbols = ["N"]} {
          %dead = exp(%x) : tensor<[N], f32>
          %dead2 = neg(%dead) : tensor<[N], f32>
          %p = log(%x) : tensor<[N], f32>
          print(%p) {format = "p {}"}
          %r = random() {shape = [N], dtype = f32, dist = "uniform", seed = 3} : tensor<[N], f32>
          %y = sqrt(%x) : tensor<[N], f32>
          return %y
        }
    """)
    filecheck(out, """
        CHECK-NOT: exp
        CHECK-NOT: neg
        CHECK: %p = log(%x)
        CHECK-NEXT: print(%p)
        CHECK-NEXT: %r = random()
        CHECK-NEXT: %y = sqrt(%x)
        CHECK-NEXT: return %y
    """)


def _fold_one(body: str, ret_type: str) -> str:
    return after(fold_constants, f'func @f() -> ({ret_type}) attributes {{symbols = ["N"]}} {{\n{body}  return %r\n}}\n')


def _folded_value(text: str) -> float:
    m = re.search(r"%r = (?:fill|constant)\(\) \{(?:shape = \[[^]]*\], )?value = ([^,]+),", text)
    assert m, text
    return float(m.group(1))


def _bf16(v: float) -> float:
    return float(np.asarray(v, np.float32).astype(numpy_dtype(BF16)))


@pytest.mark.parametrize("body, ret_type, expected", [
    (("  %a = fill() {shape = [N], value = 1.5, dtype = f32} : tensor<[N], f32>\n"
     "  %b = fill() {shape = [N], value = 2.25, dtype = f32} : tensor<[N], f32>\n"
     "  %r = mul(%a, %b) : tensor<[N], f32>\n"), "tensor<[N], f32>", 3.375),
    (("  %a = constant() {value = 1.1, dtype = bf16} : tensor<[], bf16>\n"
     "  %r = exp(%a) : tensor<[], bf16>\n"), "tensor<[], bf16>", _bf16(math.exp(_bf16(1.1)))),
    (("  %a = constant() {value = 0.7, dtype = f32} : tensor<[], f32>\n"
     '  %r = gelu(%a) {approximate = "none"} : tensor<[], f32>\n'), "tensor<[], f32>",
     float(np.float32(0.5 * np.float32(0.7) * (1 + math.erf(np.float32(0.7) / math.sqrt(2)))))),
    (("  %a = constant() {value = 7.0, dtype = int32} : tensor<[], int32>\n"
     "  %b = constant() {value = -2.0, dtype = int32} : tensor<[], int32>\n"
     "  %r = floordiv(%a, %b) : tensor<[], int32>\n"), "tensor<[], int32>", -4.0),
    (("  %a = constant() {value = 7.0, dtype = int32} : tensor<[], int32>\n"
     "  %b = constant() {value = -2.0, dtype = int32} : tensor<[], int32>\n"
     "  %r = mod(%a, %b) : tensor<[], int32>\n"), "tensor<[], int32>", -1.0),
    (("  %a = constant() {value = 127.0, dtype = int8} : tensor<[], int8>\n"
     "  %r = add(%a, %a) : tensor<[], int8>\n"), "tensor<[], int8>", -2.0),
    (("  %a = constant() {value = 3.0, dtype = f32} : tensor<[], f32>\n"
     "  %b = constant() {value = 0.0, dtype = f32} : tensor<[], f32>\n"
     "  %r = div(%a, %b) : tensor<[], f32>\n"), "tensor<[], f32>", math.inf),
    (("  %a = constant() {value = 2.5, dtype = f32} : tensor<[], f32>\n"
     '  %r = cast(%a) {dtype = f16, rounding = "nearest_even"} : tensor<[], f16>\n'), "tensor<[], f16>", 2.5),
    (("  %a = fill() {shape = [N, 4], value = 0.5, dtype = bf16} : tensor<[N, 4], bf16>\n"
     '  %r = reduce(%a) {kind = "sum", axes = [1], keepdims = true, accum = f32} : tensor<[N, 1], f32>\n'),
     "tensor<[N, 1], f32>", 2.0),
    (("  %a = fill() {shape = [N, 4], value = -3.0, dtype = int32} : tensor<[N, 4], int32>\n"
     '  %r = reduce(%a) {kind = "prod", axes = [1], keepdims = false, accum = int64} : tensor<[N], int64>\n'),
     "tensor<[N], int64>", 81.0),
    (("  %a = fill() {shape = [N, 4], value = 0.5, dtype = f32} : tensor<[N, 4], f32>\n"
     '  %r = reduce(%a) {kind = "max", axes = [0], keepdims = false, accum = f32} : tensor<[4], f32>\n'),
     "tensor<[4], f32>", 0.5),
    (("  %a = fill() {shape = [N, 8], value = 0.5, dtype = bf16} : tensor<[N, 8], bf16>\n"
     "  %b = fill() {shape = [8, 3], value = 3.0, dtype = bf16} : tensor<[8, 3], bf16>\n"
     "  %r = matmul(%a, %b) {accum = f32} : tensor<[N, 3], f32>\n"), "tensor<[N, 3], f32>", 12.0),
    (("  %a = fill() {shape = [N, 4], value = 9.0, dtype = f32} : tensor<[N, 4], f32>\n"
     "  %r = softmax(%a) {axis = 1, accum = f32} : tensor<[N, 4], f32>\n"), "tensor<[N, 4], f32>", 0.25),
    (("  %a = fill() {shape = [N, 2], value = 1.0, dtype = f32} : tensor<[N, 2], f32>\n"
     "  %b = transpose(%a) {perm = [1, 0]} : tensor<[2, N], f32>\n"
     "  %r = reshape(%b) {shape = [2*N]} : tensor<[2*N], f32>\n"), "tensor<[2*N], f32>", 1.0),
    (("  %a = fill() {shape = [N], value = 4.0, dtype = f32} : tensor<[N], f32>\n"
     "  %c = fill() {shape = [N], value = 3.0, dtype = f32} : tensor<[N], f32>\n"
     '  %b = cmp(%a, %c) {pred = "gt"} : tensor<[N], bool>\n'
     "  %r = select(%b, %a, %c) : tensor<[N], f32>\n"), "tensor<[N], f32>", 4.0),
])
def test_fold_constants(body: str, ret_type: str, expected: float) -> None:
    out = _fold_one(body, ret_type)
    filecheck(out, "CHECK: %r = {{(fill|constant)}}()\nCHECK-NEXT: return %r")
    got = _folded_value(out)
    # Exact but for gelu, whose f32 steps may round differently from the f64 formula by an ulp.
    assert got == pytest.approx(expected, rel=2**-22, abs=0), (got, expected)


@pytest.mark.parametrize("body, ret_type", [
    # The reduced extent is symbolic: the sum is N*x, which no fill can hold.
    (("  %a = fill() {shape = [N], value = 0.5, dtype = f32} : tensor<[N], f32>\n"
     '  %r = reduce(%a) {kind = "sum", axes = [0], keepdims = false, accum = f32} : tensor<[], f32>\n'),
     "tensor<[], f32>"),
    (("  %a = constant() {value = 7.0, dtype = int32} : tensor<[], int32>\n"
     "  %b = constant() {value = 0.0, dtype = int32} : tensor<[], int32>\n"
     "  %r = floordiv(%a, %b) : tensor<[], int32>\n"), "tensor<[], int32>"),
    (("  %a = constant() {value = 2.5, dtype = f32} : tensor<[], f32>\n"
     '  %r = cast(%a) {dtype = int32, rounding = "nearest_even"} : tensor<[], int32>\n'), "tensor<[], int32>"),
    (("  %a = constant() {value = 0.1, dtype = f32} : tensor<[], f32>\n"
     '  %r = cast(%a) {dtype = bf16, rounding = "stochastic"} : tensor<[], bf16>\n'), "tensor<[], bf16>"),
    ("  %r = random() {shape = [N], dtype = f32, dist = \"normal\", seed = 0} : tensor<[N], f32>\n",
     "tensor<[N], f32>"),
    (("  %a = fill() {shape = [N], value = 0.0, dtype = f32} : tensor<[N], f32>\n"
     "  %b = fill() {shape = [N], value = -0.0, dtype = f32} : tensor<[N], f32>\n"
     "  %r = concat(%a, %b) {axis = 0} : tensor<[2*N], f32>\n"), "tensor<[2*N], f32>"),
])
def test_fold_constants_leaves(body: str, ret_type: str) -> None:
    text = f'func @f() -> ({ret_type}) attributes {{effects = ["random"], symbols = ["N"]}} {{\n{body}  return %r\n}}\n'
    out = after(fold_constants, text)
    assert out == print_function(parse_function(text))


def test_specialize_shapes() -> None:
    text = """
        func @f(%x: tensor<[B, D], f32>) -> (tensor<[B, D//4, 4], f32>)
            attributes {where = ["D % 4 == 0", "B in 1..=64", "D <= B*8"], symbols = ["B", "D"]} {
          %i = iota() {n = D, dtype = int32} : tensor<[D], int32>
          %r = reshape(%x) {shape = [B, D//4, 4]} : tensor<[B, D//4, 4], f32>
          return %r
        }
    """
    filecheck(after(lambda f: specialize_shapes(f, {"D": 32}), text), """
        CHECK: func @f(%x: tensor<[B, 32], f32>) -> (tensor<[B, 8, 4], f32>)
        CHECK-NEXT: attributes {where = ["B in 1..=64", "32 <= 8*B"], symbols = ["B"]} {
        CHECK-NEXT: %i = iota() {n = 32, dtype = int32} : tensor<[32], int32>
        CHECK-NEXT: %r = reshape(%x) {shape = [B, 8, 4]} : tensor<[B, 8, 4], f32>
    """)
    filecheck(after(lambda f: specialize_shapes(f, {"D": 32, "B": 4}), text), """
        CHECK: func @f(%x: tensor<[4, 32], f32>) -> (tensor<[4, 8, 4], f32>) {
        CHECK-NOT: attributes
    """)
    f = fn(text)
    with pytest.raises(IRError, match=r"where constraint 'D % 4 == 0' is false for D=30"):
        specialize_shapes(f, {"D": 30})
    with pytest.raises(IRError, match=r"where constraint 'B in 1..=64' is false for B=65"):
        specialize_shapes(f, {"B": 65, "D": 32})
    with pytest.raises(IRError, match="cannot bind K: not a symbol"):
        specialize_shapes(f, {"K": 3})
    with pytest.raises(IRError, match="extents are ints >= 0"):
        specialize_shapes(f, {"B": -1})


def test_inline_calls() -> None:
    caller, helper = _caller_and_helper()
    m = inline_calls(Module([caller, helper]))
    verify_module(m)
    out = roundtrip(m)
    filecheck(out, """
        CHECK-LABEL: func @main(%a: tensor<[B, D], f32>) -> (tensor<[B*D], f32>)
        CHECK: %0 = reshape(%a) {shape = [B*D]} : tensor<[B*D], f32>
        CHECK-NEXT: %1 = fill() {shape = [B*D], value = 2.0, dtype = f32} : tensor<[B*D], f32>
        CHECK-NEXT: %y = mul(%0, %1) : tensor<[B*D], f32>
        CHECK-NEXT: print(%y) {format = "in helper {}"}
        CHECK-NEXT: %2 = fill() {shape = [B*D], value = 2.0, dtype = f32}
        CHECK-NEXT: %y.1 = mul(%y, %2)
        CHECK-NEXT: print(%y.1)
        CHECK-NEXT: return %y.1
        CHECK-LABEL: func @scale(%v: tensor<[N], f32>)
        CHECK-NOT: call
    """)
    # Then the pipeline merges the two fills the two copies brought.
    filecheck(print_function(optimize(m.function("main"))), """
        CHECK: %1 = fill()
        CHECK-NOT: fill()
        CHECK: %y.1 = mul(%y, %1)
    """)


def test_inline_nested_and_recursive_calls() -> None:
    _, helper = _caller_and_helper()
    mid = FB("twice", "K", effects=("io",))
    v = mid.param("v", "K", F32)
    twice = mid.ret(mid.call(helper, mid.call(helper, v)))
    top = FB("top", "M", effects=("io",))
    t = top.param("t", "M", F32)
    topf = top.ret(top.call(twice, t))
    m = inline_calls(Module([topf, twice, helper]))
    verify_module(m)
    assert sum(op.name == "mul" for op in m.function("top").ops) == 2
    assert all(op.name != "call" for f in m.functions for op in f.ops)
    # A function that calls itself cannot be inlined.
    r = FB("loop", "N", effects=("io",))
    x = r.param("x", "N", F32)
    rec = r.ret(x)
    rec.ops.append(make_call(rec, [x]))
    with pytest.raises(IRError, match="recursive call chain @loop -> @loop"):
        inline_calls(Module([rec]))


def test_inline_checks_callee_constraints() -> None:
    h = FB("even", "N", where=("N % 2 == 0",))
    x = h.param("v", "N", F32)
    even = h.ret(x)
    c = FB("main", "B")
    a = c.param("a", "2*B + 1", F32)
    main = c.ret(c.call(even, a))
    with pytest.raises(IRError, match="break its where constraint 'N % 2 == 0'"):
        inline_calls(Module([main, even]))


def test_optimize_pipeline() -> None:
    out = after(optimize, """
        func @f(%x: tensor<[N, D], f32>, %i: tensor<[N, D], int32>) -> (tensor<[N, D], f32>, tensor<[N, D], int32>)
            attributes {effects = ["io"], symbols = ["N", "D"]} {
          %one = fill() {shape = [N, D], value = 1.0, dtype = f32} : tensor<[N, D], f32>
          %two = add(%one, %one) : tensor<[N, D], f32>
          %half = div(%one, %two) : tensor<[N, D], f32>
          %h2 = div(%one, %two) : tensor<[N, D], f32>
          %t = transpose(%x) {perm = [1, 0]} : tensor<[D, N], f32>
          %tt = transpose(%t) {perm = [1, 0]} : tensor<[N, D], f32>
          %a = mul(%tt, %half) : tensor<[N, D], f32>
          %b = mul(%tt, %h2) : tensor<[N, D], f32>
          %s = add(%a, %b) : tensor<[N, D], f32>
          %z = sub(%i, %i) : tensor<[N, D], int32>
          %iz = add(%i, %z) : tensor<[N, D], int32>
          %unused = exp(%s) : tensor<[N, D], f32>
          print(%s) {format = "s {}"}
          return %s, %iz
        }
    """)
    filecheck(out, """
        CHECK: attributes
        CHECK-NEXT: %half = fill() {shape = [N, D], value = 0.5, dtype = f32}
        CHECK-NEXT: %a = mul(%x, %half)
        CHECK-NEXT: %s = add(%a, %a)
        CHECK-NEXT: print(%s)
        CHECK-NEXT: return %s, %i
    """)


def test_passes_preserve_the_examples() -> None:
    for build in EXAMPLES:
        f = build()
        for p in (canonicalize, fold_constants, cse, dce, optimize):
            verify_function(p(f))
        g = specialize_shapes(f, {s: 16 if s != "H" else 64 for s in f.symbols})
        verify_function(g)
        assert not g.symbols and all(d.is_const for v in g.params for d in v.ty.dims)


# ------------------------------------------------------------------ docs


def test_docs_list_every_op_and_pass() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "ir.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Graph IR"):]
    for name in OPS:
        assert f"| `{name}` |" in section, name
    for p in ("canonicalize", "fold_constants", "cse", "dce", "specialize_shapes", "inline_calls", "optimize"):
        assert f"`{p}" in section, p
    # The example of the text form is real: it parses, verifies and prints back byte for byte.
    example = re.search(r"```\n(tessera\.graph .*?)```", section, re.DOTALL)
    assert example is not None
    verify_module(parse_module(example.group(1)))
    assert print_module(parse_module(example.group(1))) == example.group(1)
