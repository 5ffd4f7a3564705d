"""Property tests of the whole front end (parse + load + check): whatever the text, `check_text` ends in
a `Checked` whose diagnostics are well formed, and it does so quickly.

Three sources of input:

- mutations of the real programs (every file in examples/ and stdlib/): lines, tokens or characters
  deleted, duplicated, swapped, or Tessera vocabulary inserted. Most mutants are wrong in one small
  way, which is where a checker's error paths are least exercised;
- programs generated from a small grammar of Tessera constructs (typed functions over symbolic dims,
  builtin calls, operators, slices, where clauses, decorators, host code). Most of these parse, so
  they reach the shape, dtype, constraint and effect rules with unusual combinations;
- a table of inputs built to be expensive (deep nesting, huge ints, long files), each of which once
  crashed or hung the checker.

A crash found here is a bug to fix where it happens (with a regression test beside that module's
tests), never something to catch here. The runs are derandomized so that CI is reproducible; set
TESSERA_FUZZ_RANDOM=1 (and TESSERA_FUZZ_SCALE=N for N times the examples) to explore new inputs.
"""

from __future__ import annotations

import gc
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.diagnostics import CODES
from tessera.frontend.builtins import BUILTINS
from tessera.frontend.check import Checked, check_text
from tessera.frontend.intrinsics import TILE_INTRINSICS

ROOT = Path(__file__).resolve().parent.parent
CORPUS: dict[str, str] = {
    str(p): p.read_text(encoding="utf-8")
    for p in sorted([*ROOT.glob("examples/*.tsr"), *ROOT.glob("stdlib/*.tsr")])
}

# One check of a small program takes milliseconds; a second means something is quadratic (or worse).
CHECK_BUDGET_S = 1.0

_RANDOM = os.environ.get("TESSERA_FUZZ_RANDOM") == "1"
_SCALE = float(os.environ.get("TESSERA_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Reproducible by default: derandomized and without the example database, so every CI run tries
    the same inputs and a failure reproduces from the test's name alone."""
    return settings(
        max_examples=max(1, int(examples * _SCALE)),
        deadline=None,
        derandomize=not _RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------- the property


def check_well_formed(text: str, path: str) -> Checked:
    """Check `text` and assert what must hold for every input: no exception (a raise fails the test
    with its traceback), a time bound, and diagnostics with known codes and spans inside their file."""
    # CPU time of this process, not wall time: on a busy machine (several test runs sharing two cores)
    # the wall clock also counts the waits for a core. The collector is paused while timing: a full
    # collection of the runner's own heap (hypothesis keeps every example) is not the checker's time.
    gc.disable()
    try:
        start = time.process_time()
        checked = check_text(text, path)
        elapsed = time.process_time() - start
    finally:
        gc.enable()
    assert elapsed < CHECK_BUDGET_S, f"checking took {elapsed:.2f}s"
    assert isinstance(checked, Checked)
    for d in checked.diagnostics:
        where = f"{d.code} {d.span}: {d.message}"
        assert d.code in CODES, where
        assert isinstance(d.message, str) and d.message, where
        for sp in (d.span, *(lb.span for lb in d.labels)):
            assert sp.line >= 1 and sp.col >= 1, where
            assert (sp.end_line, sp.end_col) >= (sp.line, sp.col), where
            # Every span points into a source the renderer can show.
            assert sp.file in checked.sources, where
            lines = _lines(checked.sources[sp.file].text)
            assert sp.end_line <= len(lines), where
            # A span may start just past the end of its line (a caret after the last character, as
            # for "expected ':'"), never further.
            assert sp.col <= len(lines[sp.line - 1]) + 1, where
            assert sp.end_col <= len(lines[sp.end_line - 1]) + 2, where
    return checked


def _lines(text: str) -> list[str]:
    """The lines a span may point at, as the lexer counts them: a final line break ends the last line
    rather than starting an empty one (an empty file still has its line 1)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


@pytest.fixture(scope="module", autouse=True)
def _warm_parser() -> None:
    # The first parse builds (or loads) the LALR tables; that one-off cost is not a check's time.
    check_text("def f():\n    pass\n")


# ---------------------------------------------------------------- (a) mutations of real programs

KEYWORDS = [
    "def", "return", "if", "elif", "else", "for", "in", "while", "break", "continue", "pass", "assert",
    "with", "as", "from", "import", "where", "and", "or", "not", "True", "False", "None", "is",
    "lambda", "class", "try", "yield", "global", "del",
]
DTYPES = ["f64", "f32", "tf32", "f16", "bf16", "fp8_e4m3", "fp8_e5m2", "int64", "int32", "int16", "int8",
          "int4", "uint8", "bool", "fp32", "int", "float", "str"]
DECORATORS = ["@jit", "@kernel", "@autodiff", "@checkpoint", "@deterministic(seed=1)", "@effects()",
              '@effects("random")', '@effects("io", "nondet")', "@custom_vjp",
              '@kernel.autotune(space=dict(BM=[64]), metric="latency_ms")', "@kernel.schedule(base)",
              "@verify.numerics(stable=True)"]
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "@", "==", "!=", "<", "<=", ">", ">=", "=", "+=", "@=",
             "(", ")", "[", "]", "{", "}", ",", ":", ".", "...", "..", "..=", "->", ";", "\\\n", "\n",
             "\n    ", "\n        ", "\t", "#", "'", '"']
DIMS = ['"B"', '"D"', '"S"', '"H"', '"N"', '"B*H"', '"S+1"', '"D//2"', '"2*D"', '"D%8"', "0", "1", "-1",
        "8", "64", "128", "4096", "1e-5", "0.5", "0x1F", "1..=4096", "1..64", "D % 8 == 0", "H == 4 * D",
        "B in 1..=4096", "S <= 8192", "N != 0"]
NAMES = ["x", "y", "w", "b", "q", "k", "v", "h", "T", "i", "axis", "keepdims", "seed", "shape", "dtype",
         "Tensor", "Tile", "KTile", "KVCache", "Schedule", "tile", "effects", "stdlib", "nn", "main",
         "accum", "stochastic_round", "loss_scale", "saturate", "round", "suspend", "allow"]
VOCAB: list[str] = sorted({
    *KEYWORDS, *DTYPES, *DECORATORS, *OPERATORS, *DIMS, *NAMES, *BUILTINS,
    *(f"tile.{n}" for n in TILE_INTRINSICS), "effects.suspend", "effects.allow", "inf", "nan", "pi",
    "x.shape", "x.T", "x.shape[0]", "x[:, 0:64]", "l[:, None]", "x[..., 0]", "x[-1]",
    'Tensor["B", "D", bf16 @accum(f32)]', "-> Tensor[\"B\", f32]", "where D % 8 == 0",
    "from stdlib.nn import gelu", "import stdlib.nn as nn", "from .layers import block",
    "not not not", "9" * 400, "1e400", "2 ** 2 ** 2 ** 2 ** 2 ** 2", "split(x, 99999)", "- - - -",
})

# Tokens as the mutator sees them: whitespace runs, names/numbers, multi-character operators, then any
# other single character. Joining the pieces gives the text back.
_TOKEN = re.compile(r"\s+|\w+|\.\.\.|\.\.=|\.\.|\*\*=?|//=?|->|[=!<>+\-*/%@]=|.", re.DOTALL)


def _split(text: str, unit: str) -> list[str]:
    if unit == "line":
        return text.splitlines(keepends=True)
    if unit == "token":
        return _TOKEN.findall(text)
    return list(text)


@st.composite
def mutants(draw: st.DrawFn) -> tuple[str, str]:
    """(path, text): one corpus file with 1-4 random edits."""
    path = draw(st.sampled_from(sorted(CORPUS)), label="file")
    text = CORPUS[path]
    for _ in range(draw(st.integers(1, 4), label="edits")):
        unit = draw(st.sampled_from(["line", "token", "char"]))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace"]))
        pieces = _split(text, unit) or [""]
        i = draw(st.integers(0, len(pieces) - 1))
        if op == "delete":
            del pieces[i]
        elif op == "duplicate":
            pieces.insert(i, pieces[i])
        elif op == "swap":
            j = draw(st.integers(0, len(pieces) - 1))
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:
            word = draw(st.sampled_from(VOCAB))
            if unit == "line":
                indent = draw(st.sampled_from(["", "    ", "        ", "\t"]))
                word = f"{indent}{word}\n"
            elif unit == "token" and draw(st.booleans()):
                word = f" {word} "
            if op == "insert":
                pieces.insert(i, word)
            else:
                pieces[i] = word
        text = "".join(pieces)
    return path, text


@fuzz_settings(1500)
@given(mutants())
def test_mutated_programs_check_without_crashing(case: tuple[str, str]) -> None:
    path, text = case
    check_well_formed(text, path)


@pytest.mark.parametrize("path", sorted(CORPUS), ids=lambda p: Path(p).name)
def test_corpus_checks_clean(path: str) -> None:
    # The mutations start from programs that are valid, so a diagnostic in a mutant is the mutation's.
    checked = check_well_formed(CORPUS[path], path)
    assert checked.diagnostics == []


@pytest.mark.parametrize("path", sorted(CORPUS), ids=lambda p: Path(p).name)
def test_every_prefix_of_a_program_checks_without_crashing(path: str) -> None:
    # Truncation is the edit an editor makes all the time (checking as the user types).
    text = CORPUS[path]
    lines = text.splitlines(keepends=True)
    for n in range(len(lines) + 1):
        check_well_formed("".join(lines[:n]), path)
    for n in range(0, len(text), 7):
        check_well_formed(text[:n], path)


# ---------------------------------------------------------------- (b) programs from a small grammar

SYMBOLS = ["B", "S", "D", "H", "N", "K"]
SCALAR_DTYPES = ["f32", "bf16", "f16", "f64", "int32", "int64", "int8", "bool", "fp8_e4m3"]
UNARY = ["exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "silu", "abs", "neg", "erf",
         "isnan", "log1p"]
REDUCE = ["sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "var", "softmax"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "@"]
STDLIB_FNS = ["softmax_safe", "logsumexp_safe", "layernorm_safe", "rmsnorm_safe", "gelu", "rotary_embedding",
              "cross_entropy", "mse", "attention", "gelu_tanh"]


@st.composite
def dim_text(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(draw(st.sampled_from([1, 2, 8, 16, 64, 128])))
    sym = draw(st.sampled_from(SYMBOLS))
    if kind <= 3:
        return f'"{sym}"'
    other = draw(st.sampled_from([*SYMBOLS, "2", "4", "8"]))
    op = draw(st.sampled_from(["*", "+", "//", "-", "%"]))
    return f'"{sym}{op}{other}"'


@st.composite
def tensor_type(draw: st.DrawFn, tile: bool = False) -> str:
    dims = draw(st.lists(dim_text(), min_size=0, max_size=4))
    dtype = draw(st.sampled_from(SCALAR_DTYPES))
    policy = draw(st.sampled_from(["", "", " @accum(f32)", " @accum(bf16)", " @stochastic_round",
                                   " @loss_scale(128.0)", " @saturate", ' @round("nearest_even")']))
    with_dtype = draw(st.booleans()) or not dims
    items = [*dims, f"{dtype}{policy}"] if with_dtype else dims
    return f"{'KTile' if tile else 'Tensor'}[{', '.join(items)}]"


@st.composite
def constraint(draw: st.DrawFn) -> str:
    a, b = draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(SYMBOLS))
    n = draw(st.sampled_from([0, 1, 2, 4, 8, 64, 4096]))
    return draw(st.sampled_from([
        f"{a} % {max(n, 1)} == 0", f"{a} == {n} * {b}", f"{a} == {b}", f"{a} in 1..={max(n, 1)}",
        f"{a} in {n}..{n + 8}", f"{a} <= {n}", f"{a} >= {n}", f"{a} != 0", f"{a} == {b} + {n}",
        f"{a} < {b}", f"{a} * {b} == {n}", f"{a} // 2 == {b}",
    ]))


@st.composite
def expression(draw: st.DrawFn, names: tuple[str, ...], fns: tuple[str, ...] = (), depth: int = 0) -> str:
    """A tensor-ish expression over `names`, calling builtins and the functions `fns` defined above:
    most rules are well typed for some inputs only, which is the point."""
    leaf = depth >= 3 or draw(st.integers(0, 3)) == 0
    if leaf:
        return draw(st.sampled_from([*names, *names, "1.0", "2", "0.5", "inf", "True", "x.T", "10 ** 400"]))
    sub = expression(names, fns, depth + 1)
    kind = draw(st.integers(0, 13))
    if kind == 0:
        return f"({draw(sub)} {draw(st.sampled_from(BINOPS))} {draw(sub)})"
    if kind == 1:
        return f"{draw(st.sampled_from(UNARY))}({draw(sub)})"
    if kind == 2:
        axis = draw(st.sampled_from(["", ", axis=-1", ", axis=0", ", axis=(0, 1)", ", axis=-1, keepdims=True",
                                     ", axis=5", ", keepdims=True"]))
        return f"{draw(st.sampled_from(REDUCE))}({draw(sub)}{axis})"
    if kind == 3:
        return f"cast({draw(sub)}, {draw(st.sampled_from(SCALAR_DTYPES))})"
    if kind == 4:
        idx = draw(st.sampled_from([":, 0:64", "0", "-1", "..., 0", ":, None", "::2", "1:", ":, :, 0",
                                    "0:D", "x.shape[0]", ":-1", "None, :"]))
        return f"{draw(sub)}[{idx}]"
    if kind == 5:
        shape = draw(st.sampled_from(["(-1,)", "(2, -1)", "(x.shape[0], -1)", "(1, 2, 3)", "(-1, -1)", "()"]))
        return f"reshape({draw(sub)}, {shape})"
    if kind == 6:
        return draw(st.sampled_from([
            f"transpose({draw(sub)})", f"swapaxes({draw(sub)}, -1, -2)", f"expand_dims({draw(sub)}, 0)",
            f"squeeze({draw(sub)}, axis=0)", f"permute({draw(sub)}, (1, 0))", f"{draw(sub)}.T",
        ]))
    if kind == 7:
        return draw(st.sampled_from([
            f"where({draw(sub)} > 0.0, {draw(sub)}, {draw(sub)})", f"maximum({draw(sub)}, {draw(sub)})",
            f"clip({draw(sub)}, -1.0, 1.0)", f"concat([{draw(sub)}, {draw(sub)}], axis=-1)",
            f"stack([{draw(sub)}, {draw(sub)}])", f"matmul({draw(sub)}, {draw(sub)})",
            f"einsum(\"ij,jk->ik\", {draw(sub)}, {draw(sub)})", f"broadcast_to({draw(sub)}, (2, 3))",
        ]))
    if kind == 8:
        return draw(st.sampled_from([
            f"softmax({draw(sub)}, axis=-1)", f"layernorm({draw(sub)}, {draw(sub)}, {draw(sub)}, 1e-5)",
            f"rmsnorm({draw(sub)}, {draw(sub)}, 1e-6)", f"dropout({draw(sub)}, 0.1, seed=1)",
            f"attention({draw(sub)}, {draw(sub)}, {draw(sub)}, causal=True)", f"mse({draw(sub)}, {draw(sub)})",
            f"cross_entropy({draw(sub)}, {draw(sub)})", f"embedding({draw(sub)}, {draw(sub)})",
            f"one_hot({draw(sub)}, 8)", f"cast_like({draw(sub)}, {draw(sub)})",
        ]))
    if kind == 9:
        return draw(st.sampled_from([
            "zeros((2, 3), f32)", "ones((4,), bf16)", "full((2, 2), 1.5, f16)", "arange(8)",
            "randn((2, 3), f32, seed=0)", "rand((8,), f32)", "x.shape[0]", "len(x)", "float(2)",
        ]))
    if kind == 10:
        return f"{draw(st.sampled_from(STDLIB_FNS))}({draw(sub)})"
    if kind == 12 and fns:
        args = draw(st.lists(sub, min_size=0, max_size=3))
        extra = draw(st.sampled_from(["", "n", "n=2", "4", "n=x"]))
        return f"{draw(st.sampled_from(fns))}({', '.join([*args, extra] if extra else args)})"
    if kind == 11:
        return f"({draw(sub)} if {draw(st.sampled_from(['True', 'x.shape[0] > 2', 'n > 1']))} else {draw(sub)})"
    return f"{draw(st.sampled_from(['not ', '-', '+']))}{draw(sub)}"


@st.composite
def statements(draw: st.DrawFn, names: tuple[str, ...], fns: tuple[str, ...], indent: str,
               depth: int = 0) -> list[str]:
    out: list[str] = []
    local = list(names)
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 11))
        expr = draw(expression(tuple(local), fns))
        if kind <= 3:
            name = f"t{depth}{i}"
            ann = f": {draw(tensor_type())}" if kind == 0 else ""
            out.append(f"{indent}{name}{ann} = {expr}")
            local.append(name)
        elif kind == 4:
            out.append(f"{indent}{draw(st.sampled_from(local))} {draw(st.sampled_from(['+=', '*=', '@=']))} {expr}")
        elif kind == 5 and depth < 2:
            test = draw(st.sampled_from(["x.shape[0] > 1", "n > 0", "True", "x > 0.0", "len(x) == 2"]))
            out.append(f"{indent}if {test}:")
            out.extend(draw(statements(tuple(local), fns, indent + "    ", depth + 1)))
            if draw(st.booleans()):
                out.append(f"{indent}else:")
                out.extend(draw(statements(tuple(local), fns, indent + "    ", depth + 1)))
        elif kind == 6 and depth < 2:
            it = draw(st.sampled_from(["range(4)", "range(n)", "range(1, 8, 2)", "x"]))
            out.append(f"{indent}for j in {it}:")
            out.extend(draw(statements((*local, "j"), fns, indent + "    ", depth + 1)))
        elif kind == 7:
            out.append(f"{indent}{draw(st.sampled_from(['print', 'assert']))} {expr}" if draw(st.booleans())
                       else f"{indent}print({expr})")
        elif kind == 8:
            scope = draw(st.sampled_from(['effects.suspend("io")', 'effects.allow("nondet")',
                                          'effects.suspend("bogus")']))
            out.append(f"{indent}with {scope}:")
            out.extend(draw(statements(tuple(local), fns, indent + "    ", depth + 1)))
        elif kind == 10 and depth < 2:
            out.append(f"{indent}while {draw(st.sampled_from(['n > 0', 'True', 'x']))}:")
            out.append(f"{indent}    n = n - 1")
            out.append(f"{indent}    {draw(st.sampled_from(['break', 'continue', 'pass']))}")
        elif kind == 11:
            out.append(f"{indent}{draw(st.sampled_from(['u, v', '(u, v)', 'u']))} = {expr}, {expr}")
            local += ["u", "v"]
        else:
            out.append(f"{indent}a{depth}{i}, b{depth}{i} = split({expr}, 2, axis=-1)")
            local += [f"a{depth}{i}", f"b{depth}{i}"]
    out.append(f"{indent}return {draw(expression(tuple(local), fns))}")
    return out


@st.composite
def function(draw: st.DrawFn, name: str, fns: tuple[str, ...]) -> str:
    kernel = draw(st.integers(0, 9)) == 0
    decorators = draw(st.lists(st.sampled_from(DECORATORS), max_size=2, unique=True))
    if kernel:
        decorators = ["@kernel"]
    params = ["x"] + [f"p{i}" for i in range(draw(st.integers(0, 2)))]
    rendered = []
    for p in params:
        if draw(st.integers(0, 4)) == 0:
            rendered.append(p)  # untyped: makes the function generic
        else:
            rendered.append(f"{p}: {draw(tensor_type(tile=kernel))}")
    if draw(st.booleans()):
        rendered += ["*", f"n: int = {draw(st.sampled_from(['1', '4', '0']))}"]
    else:
        rendered.append("n: int")
    result = ""
    if draw(st.booleans()):
        result = f" -> {draw(tensor_type(tile=kernel))}"
    elif draw(st.integers(0, 3)) == 0:
        result = f" -> ({draw(tensor_type())}, {draw(tensor_type())})"
    where = ""
    cs = draw(st.lists(constraint(), max_size=3))
    if cs:
        sep = draw(st.sampled_from([" ", "\n        "]))
        where = f"{sep}where {', '.join(cs)}"
    header = f"def {name}({', '.join(rendered)}){result}{where}:"
    names = (*params, "n")
    if kernel:
        body = ["    T = tile.context()", "    i = tile.program_id(0)", "    xb = tile.load(x, rows=i)",
                f"    acc = tile.dot(xb, tile.transpose(xb), tile.zeros((T.m, T.n), {draw(st.sampled_from(DTYPES))}))",
                "    tile.store(x, acc, rows=i)"]
    else:
        body = draw(statements(names, fns, "    "))
    return "\n".join([*decorators, header, *body])


@st.composite
def programs(draw: st.DrawFn) -> str:
    parts: list[str] = []
    if draw(st.booleans()):
        fns = draw(st.lists(st.sampled_from(STDLIB_FNS), min_size=1, max_size=3, unique=True))
        parts.append(f"from stdlib.nn import {', '.join(fns)}")
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["import stdlib.nn as nn", "from .missing import f", "import os"])))
    if draw(st.booleans()):
        parts.append(f"EPS = {draw(st.sampled_from(['1e-5', '8', 'Schedule(block=(64, 64), warps=4)']))}")
        parts.append("base = Schedule(block=(128, 128), k=32, warps=8, stages=3)")
    names = [f"f{i}" for i in range(draw(st.integers(1, 3)))]
    for i, n in enumerate(names):
        parts.append(draw(function(n, tuple(names[:i]))))
    if draw(st.booleans()):
        shape = draw(st.sampled_from(["(4, 8)", "(2, 3, 4)", "(8,)", "(16, 16)"]))
        dtype = draw(st.sampled_from(SCALAR_DTYPES))
        callee = draw(st.sampled_from(names))
        extra = draw(st.sampled_from(["", ", x", ", x, x", ", n=2", ", 3"]))
        parts.append("\n".join([
            "def main():",
            f"    x = randn({shape}, {dtype}, seed=0)",
            f"    y = {callee}(x{extra})",
            "    print(y.shape, sum(cast(y, f32)))",
        ]))
    return "\n\n\n".join(parts) + "\n"


@fuzz_settings(300)
@given(programs())
def test_generated_programs_check_without_crashing(text: str) -> None:
    check_well_formed(text, "generated.tsr")


def test_generated_programs_reach_the_checker() -> None:
    # The grammar above is only useful if most of its programs parse: then the shape, dtype,
    # constraint and effect rules are what gets exercised. This pins that down on a fixed sample.
    sample = st.lists(programs(), min_size=40, max_size=40)
    seen: dict[str, int] = {}

    @settings(max_examples=1, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sample)
    def run(texts: list[str]) -> None:
        seen.clear()
        for text in texts:
            codes = {d.code for d in check_well_formed(text, "generated.tsr").diagnostics}
            key = "E-SYNTAX" if "E-SYNTAX" in codes else ("clean" if not codes else "checked")
            seen[key] = seen.get(key, 0) + 1

    run()
    assert seen.get("E-SYNTAX", 0) <= 4, seen
    assert seen.get("checked", 0) >= 10, seen


# ---------------------------------------------------------------- (c) inputs built to be expensive

HUGE = "9" * 400

ADVERSARIAL: dict[str, str] = {
    "long operator chain": "def f(x):\n    return " + " + ".join(["x"] * 5000) + "\n",
    "long unary chain": "def f(x):\n    return " + "-" * 5000 + "x\n",
    "nested not": "def f(x: int):\n    return " + "not " * 99 + "x\n",
    "long attribute chain": "def f(x):\n    return x" + ".T" * 3000 + "\n",
    "deep brackets": "def f(x):\n    return " + "exp(" * 199 + "x" + ")" * 199 + "\n",
    "flat comparison": "def f(x):\n    return " + " < ".join(["x"] * 3000) + "\n",
    "wide tuple": "def f(x):\n    return (" + ", ".join(["x"] * 3000) + ")\n",
    "tower of powers": "def f():\n    return 2 ** 2 ** 2 ** 2 ** 2 ** 2 + 10 ** 10 ** 10\n",
    "huge ints": f"def f(x: Tensor[\"B\", f32]) -> Tensor[\"B\", f32] where B in 1..={HUGE}, B % {HUGE} == 3:\n"
                 f"    y = (10 ** 400) * 1.0 + x.shape[0] * {HUGE}\n    return x[0:{HUGE}]\n",
    "huge split": f"def f(x: Tensor[\"{HUGE}*B\", f32]):\n    return split(x, {HUGE})\n",
    "many statements": "def f(x):\n" + "    x = x + 1.0\n" * 3000 + "    return x\n",
    "many functions": "".join(f"def f{i}(x):\n    return f{i - 1}(x)\n\n\n" for i in range(1, 300))
                      + "def f0(x):\n    return x\n",
    "generic call chain": "".join(f"def g{i}(x):\n    return g{i + 1}(x) + g{i + 1}(x * 2.0)\n\n\n" for i in range(40))
                          + "def g40(x):\n    return x\n\n\n@jit\ndef top(x: Tensor[\"B\", f32]) -> Tensor[\"B\", f32]:\n"
                          + "    return g0(x)\n",
    "recursion": "def g(x):\n    return g(x) + g(x * 2.0)\n\n\n@jit\ndef top(x: Tensor[\"B\", f32]):\n    return g(x)\n",
    "many where facts": "def f(x: Tensor[\"B\", f32]) -> Tensor[\"B\", f32] where "
                        + ", ".join(f"B % {i} == 0" for i in range(2, 150)) + ":\n    return x\n",
    "many dims": "def f(x: Tensor[" + ", ".join(f'"S{i}"' for i in range(300)) + ", f32]):\n    return sum(x)\n",
}


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_expensive_inputs_check_quickly(text: str) -> None:
    # Each of these once crashed (RecursionError, OverflowError) or hung (exponential typing of `not`,
    # folding 2 ** 2 ** ..., a tuple of 10**400 split parts) before it was fixed where it happened.
    check_well_formed(text, "adversarial.tsr")
