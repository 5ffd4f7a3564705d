"""Tests of the `.tsr` parser: golden ASTs per construct, spans, precedence, lexing, the where clause,
refused constructs, syntax-error messages, robustness on garbage, and speed."""

from __future__ import annotations

import logging
import random
import time
from textwrap import dedent

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark

from tessera.diagnostics import CompilationError, Diagnostic
from tessera.frontend import ast
from tessera.frontend.ast_dump import dump, dump_with_spans
from tessera.frontend.parser import _Layout, parse_expression, parse_module, parse_statements
from tessera.resources import grammar_path
from tessera.source import SourceFile, Span

# ---------------------------------------------------------------- helpers


def module(src: str, path: str = "t.tsr") -> ast.Module:
    return parse_module(SourceFile(path, dedent(src)))


def mod(src: str) -> str:
    """The dump of a module, without its `(Module path` wrapper."""
    lines = dump(module(src)).splitlines()[1:]
    lines[-1] = lines[-1][:-1]
    return "\n".join(line[2:] for line in lines)


def stmts(src: str) -> str:
    return dump(parse_statements(dedent(src)))


def expr(text: str) -> str:
    return dump(parse_expression(text))


def errors(src: str) -> list[Diagnostic]:
    """The diagnostics of a module that must not parse (dedented when it starts with a line break)."""
    with pytest.raises(CompilationError) as info:
        parse_module(SourceFile("t.tsr", dedent(src) if src.startswith("\n") else src))
    assert all(d.code == "E-SYNTAX" for d in info.value.diagnostics)
    return info.value.diagnostics


def error(src: str) -> Diagnostic:
    diags = errors(src)
    assert len(diags) == 1, [d.message for d in diags]
    return diags[0]


def pos(span: Span) -> tuple[int, int, int, int]:
    return span.line, span.col, span.end_line, span.end_col


def text_of(src: str, span: Span) -> str:
    """The source text a span covers (spans are 1-based, end exclusive)."""
    lines = src.splitlines(keepends=True)
    if span.line == span.end_line:
        return lines[span.line - 1][span.col - 1:span.end_col - 1]
    parts = [lines[span.line - 1][span.col - 1:]]
    parts += lines[span.line:span.end_line - 1]
    parts.append(lines[span.end_line - 1][:span.end_col - 1])
    return "".join(parts)


MLP = '''\
@jit
def mlp(x: Tensor["B", "D", bf16 @accum(f32)],
        w1: Tensor["D", "H", bf16],
        w2: Tensor["H", "D", bf16], *, act: str = "gelu") -> Tensor["B", "D", bf16]
        where D % 8 == 0, H == 4 * D, B in 1..=4096:
    h = gelu(x @ w1)
    return cast(h @ w2, bf16)
'''


# ---------------------------------------------------------------- §1 modules


def test_imports() -> None:
    assert mod("""
        from stdlib.nn import gelu, rmsnorm_safe
        from stdlib.nn import softmax_safe as softmax, layernorm_safe
        from .layers import block
        from . import sibling
        from ..pkg.mod import (a, b,)
        import stdlib.nn as nn
        import stdlib.nn
        import a, b.c
    """) == dedent("""\
        (ImportFrom stdlib.nn gelu rmsnorm_safe)
        (ImportFrom stdlib.nn (softmax_safe as softmax) layernorm_safe)
        (ImportFrom .layers block)
        (ImportFrom . sibling)
        (ImportFrom ..pkg.mod a b)
        (Import stdlib.nn as nn)
        (Import stdlib.nn)
        (Import a)
        (Import b.c)""")


def test_import_fields() -> None:
    m = module("from ..pkg.mod import a as b\nimport stdlib.nn as nn\n")
    imp_from, imp = m.imports
    assert isinstance(imp_from, ast.ImportFrom)
    assert (imp_from.module, imp_from.level) == ("pkg.mod", 2)
    assert [(n.name, n.asname) for n in imp_from.names] == [("a", "b")]
    assert isinstance(imp, ast.Import) and (imp.module, imp.asname) == ("stdlib.nn", "nn")


def test_module_constants() -> None:
    m = module("""
        EPS = 1e-5
        HEADS: int = 8
        base = Schedule(block=(128, 128), warps=8, stages=3)
    """)
    assert [c.name for c in m.constants] == ["EPS", "HEADS", "base"]
    assert dump(m.constants[1]) == "(ConstDef HEADS : (Name int) = (Constant 8))"
    assert dump(m.constants[2]) == (
        "(ConstDef base (Call (Name Schedule) (kw block (Tuple (Constant 128) (Constant 128)))"
        " (kw warps (Constant 8)) (kw stages (Constant 3))))"
    )


def test_module_docstring_is_kept() -> None:
    assert mod('"""The module."""\nX = 1\n') == "(Expr (Constant 'The module.'))\n(ConstDef X (Constant 1))"


def test_empty_and_comment_only_modules() -> None:
    assert module("").body == []
    assert module("# nothing here\n\n   # indented comment\n").body == []
    assert module("\n\n\nX = 1").constants[0].name == "X"  # no final newline


# ---------------------------------------------------------------- §2 functions


def test_function_from_the_spec() -> None:
    assert mod(MLP) == dedent("""\
        (FunctionDef mlp
          (decorators (Name jit))
          (params
            (Param x : (Subscript (Name Tensor) (Tuple (Constant 'B') (Constant 'D') (BinOp @ (Name bf16) (Call (Name accum) (Name f32))))))
            (Param w1 : (Subscript (Name Tensor) (Tuple (Constant 'D') (Constant 'H') (Name bf16))))
            (Param w2 : (Subscript (Name Tensor) (Tuple (Constant 'H') (Constant 'D') (Name bf16))))
            (Param act kw : (Name str) = (Constant 'gelu')))
          (returns (Subscript (Name Tensor) (Tuple (Constant 'B') (Constant 'D') (Name bf16))))
          (where (Compare (BinOp % (Name D) (Constant 8)) == (Constant 0)) (Compare (Name H) == (BinOp * (Constant 4) (Name D))) (Compare (Name B) in (Range ..= (Constant 1) (Constant 4096))))
          (body
            (Assign (Name h) (Call (Name gelu) (BinOp @ (Name x) (Name w1))))
            (Return (Call (Name cast) (BinOp @ (Name h) (Name w2)) (Name bf16)))))""")


def test_decorators() -> None:
    m = module("""
        @kernel.autotune(space=dict(BM=[64, 128]), metric="latency_ms")
        @effects("random", "io")
        @effects()
        @deterministic(seed=3)
        @kernel
        def k():
            pass
    """)
    assert [dump(d) for d in m.functions[0].decorators] == [
        ("(Call (Attribute (Name kernel) autotune) (kw space (Call (Name dict) (kw BM (List (Constant 64)"
        " (Constant 128))))) (kw metric (Constant 'latency_ms')))"),
        "(Call (Name effects) (Constant 'random') (Constant 'io'))",
        "(Call (Name effects))",
        "(Call (Name deterministic) (kw seed (Constant 3)))",
        "(Name kernel)",
    ]


def test_parameters_defaults_and_keyword_only() -> None:
    assert mod("""
        def f(a, b: int, c=1, d: float = 2.0, *, e, g: str = "x",):
            pass
    """) == dedent("""\
        (FunctionDef f
          (params
            (Param a)
            (Param b : (Name int))
            (Param c = (Constant 1))
            (Param d : (Name float) = (Constant 2.0))
            (Param e kw)
            (Param g kw : (Name str) = (Constant 'x')))
          (body
            (Pass)))""")


def test_result_types() -> None:
    one, two, none = module("""
        def a() -> Tensor["N", f32]:
            pass
        def b() -> (Tensor["N", f32], int):
            pass
        def c():
            pass
    """).functions
    assert dump(one.returns) == "(Subscript (Name Tensor) (Tuple (Constant 'N') (Name f32)))"
    assert dump(two.returns) == "(Tuple (Subscript (Name Tensor) (Tuple (Constant 'N') (Name f32))) (Name int))"
    assert none.returns is None and none.params == [] and none.where == []


def test_one_line_body() -> None:
    assert mod("def f(x): return x\n") == "(FunctionDef f\n  (params\n    (Param x))\n  (body\n    (Return (Name x))))"


# ---------------------------------------------------------------- the where clause


def _where(fn: ast.FunctionDef) -> list[str]:
    return [dump(c) for c in fn.where]


WHERE_D = ["(Compare (BinOp % (Name D) (Constant 8)) == (Constant 0))", "(Compare (Name S) <= (Constant 8192))"]


@pytest.mark.parametrize("header", [
    'def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32] where D % 8 == 0, S <= 8192:',
    'def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32]\n        where D % 8 == 0, S <= 8192:',
    'def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32]\n    where D % 8 == 0, S <= 8192:',
    'def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32]\n  # a comment line\n\n  where D % 8 == 0, S <= 8192:',
    'def f(x: Tensor["S", "D", f32],\n      ) -> Tensor["S", "D", f32]\n        where D % 8 == 0,\n              S <= 8192:',
    ('def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32]\n        where D % 8 == 0,\n'
    '  S <= 8192:  # continuation lines of a where clause may sit anywhere'),
    'def f(x: Tensor["S", "D", f32]) -> Tensor["S", "D", f32] \\\n        where D % 8 == 0, S <= 8192:',
])
def test_where_clause_layouts(header: str) -> None:
    fn = module(f"{header}\n    y = x\n    return y\n").functions[0]
    assert _where(fn) == WHERE_D
    assert [type(s).__name__ for s in fn.body] == ["Assign", "Return"]
    assert dump(fn.returns) == "(Subscript (Name Tensor) (Tuple (Constant 'S') (Constant 'D') (Name f32)))"


def test_where_with_tuple_result_and_without_result() -> None:
    a, b, c = module("""
        def a(x) -> (Tensor["B", f32], Tensor["B", f32])
                where B in 1..4096:
            return x, x
        def b(x)
                where B != 0, B in 1..=64:
            return x
        def c(x) where B > 1: return x
    """).functions
    assert _where(a) == ["(Compare (Name B) in (Range .. (Constant 1) (Constant 4096)))"]
    assert dump(a.returns).startswith("(Tuple (Subscript")
    assert b.returns is None
    assert _where(b) == ["(Compare (Name B) != (Constant 0))",
                         "(Compare (Name B) in (Range ..= (Constant 1) (Constant 64)))"]
    assert _where(c) == ["(Compare (Name B) > (Constant 1))"]


def test_where_stays_a_name_elsewhere() -> None:
    m = module("""
        def where(c, a, b):
            return where(c, a, b)
        def f(x) -> T where N > 0:
            where = 1
            return where
    """)
    assert m.functions[0].name == "where"
    assert stmts("y = where(m, a, b)\n") == "(Assign (Name y) (Call (Name where) (Name m) (Name a) (Name b)))"
    assert dump(m.functions[1].body[0]) == "(Assign (Name where) (Constant 1))"


def test_where_on_next_line_followed_by_more_functions() -> None:
    m = module("""
        def f(x) -> T
                where N > 0:
            if x:
                return x
            return x

        def g(y):
            return y
    """)
    assert [f.name for f in m.functions] == ["f", "g"]
    assert dump(m.functions[0].body[0]) == "(If (Name x)\n  (body\n    (Return (Name x))))"


def test_where_line_must_be_indented_more_than_def() -> None:
    d = error("""
        def f(x) -> T
        where N > 0:
            return x
    """)
    assert "indented more than its `def`" in d.message
    assert pos(d.span) == (3, 1, 3, 6)


def test_where_missing_colon() -> None:
    d = error("""
        def f(x) -> T
            where N > 0
            return x
    """)
    assert d.message == "expected ':', ',' or an operator, found 'return'"
    assert pos(d.span) == (4, 5, 4, 11)


# ---------------------------------------------------------------- §3 statements


def test_assignments() -> None:
    assert stmts("""
        x = e
        a, b = e
        (a, b), c = e
        a = b = 0
        x: Tensor["N", f32] = e
        x += 1
        x -= 1
        x *= 1
        x /= 1
        x //= 1
        x %= 1
        x **= 1
        x @= w
    """) == dedent("""\
        (Assign (Name x) (Name e))
        (Assign (Tuple (Name a) (Name b)) (Name e))
        (Assign (Tuple (Tuple (Name a) (Name b)) (Name c)) (Name e))
        (Assign (Name a) (Name b) (Constant 0))
        (AnnAssign (Name x) : (Subscript (Name Tensor) (Tuple (Constant 'N') (Name f32))) = (Name e))
        (AugAssign + (Name x) (Constant 1))
        (AugAssign - (Name x) (Constant 1))
        (AugAssign * (Name x) (Constant 1))
        (AugAssign / (Name x) (Constant 1))
        (AugAssign // (Name x) (Constant 1))
        (AugAssign % (Name x) (Constant 1))
        (AugAssign ** (Name x) (Constant 1))
        (AugAssign @ (Name x) (Name w))""")


def test_returns() -> None:
    assert stmts("""
        def f():
            return
        def g():
            return a, b
        def h():
            return (a, b)
    """) == dedent("""\
        (FunctionDef f
          (body
            (Return)))
        (FunctionDef g
          (body
            (Return (Tuple (Name a) (Name b)))))
        (FunctionDef h
          (body
            (Return (Tuple (Name a) (Name b)))))""")


def test_if_elif_else() -> None:
    assert stmts("""
        if a:
            x = 1
        elif b:
            x = 2
        elif c:
            pass
        else:
            x = 3
    """) == dedent("""\
        (If (Name a)
          (body
            (Assign (Name x) (Constant 1)))
          (else
            (If (Name b)
              (body
                (Assign (Name x) (Constant 2)))
              (else
                (If (Name c)
                  (body
                    (Pass))
                  (else
                    (Assign (Name x) (Constant 3))))))))""")


def test_loops() -> None:
    assert stmts("""
        for v in range(10):
            if v > 3:
                break
            continue
        for i, (a, b) in pairs:
            pass
        for k in tile.range(0, K, BK):
            acc = tile.dot(a, b, acc)
        while not done:
            done = step()
    """) == dedent("""\
        (For (Name v) (Call (Name range) (Constant 10))
          (body
            (If (Compare (Name v) > (Constant 3))
              (body
                (Break)))
            (Continue)))
        (For (Tuple (Name i) (Tuple (Name a) (Name b))) (Name pairs)
          (body
            (Pass)))
        (For (Name k) (Call (Attribute (Name tile) range) (Constant 0) (Name K) (Name BK))
          (body
            (Assign (Name acc) (Call (Attribute (Name tile) dot) (Name a) (Name b) (Name acc)))))
        (While (UnaryOp not (Name done))
          (body
            (Assign (Name done) (Call (Name step)))))""")


def test_assert_with_pass_and_expression_statements() -> None:
    assert stmts("""
        assert n > 0, "n must be positive"
        assert ok
        with effects.allow("nondet"):
            pass
        with a, b as c:
            print(c)
        "a docstring-like string"
        x; y
    """) == dedent("""\
        (Assert (Compare (Name n) > (Constant 0)) (Constant 'n must be positive'))
        (Assert (Name ok))
        (With (item (Call (Attribute (Name effects) allow) (Constant 'nondet')))
          (body
            (Pass)))
        (With (item (Name a)) (item (Name b) as c)
          (body
            (Expr (Call (Name print) (Name c)))))
        (Expr (Constant 'a docstring-like string'))
        (Expr (Name x))
        (Expr (Name y))""")


def test_kernel_body() -> None:
    fn = module('''
        @kernel.schedule(sched)
        def k(a: Tile["M", "K", f16], out: Tile["M", "N", f32]):
            T = tile.context()
            pid = tile.program_id(0)
            acc = tile.zeros((T.m, T.n), f32)
            for kk in tile.range_n(K, T.k, prefetch=2):
                x = tile.load(a, rows=pid * T.m, cols=kk, mask=m, other=0)
                acc = tile.dot(x, x, acc)
            tile.store(out, acc, rows=pid * T.m, cols=0)
    ''').functions[0]
    assert len(fn.body) == 5
    assert dump(fn.body[-1]) == (
        "(Expr (Call (Attribute (Name tile) store) (Name out) (Name acc) (kw rows (BinOp * (Name pid)"
        " (Attribute (Name T) m))) (kw cols (Constant 0))))"
    )


# ---------------------------------------------------------------- §3 expressions


@pytest.mark.parametrize(("text", "expected"), [
    ("f(a, b, axis=-1, keepdims=True)",
     "(Call (Name f) (Name a) (Name b) (kw axis (UnaryOp - (Constant 1))) (kw keepdims (Constant True)))"),
    ("f()", "(Call (Name f))"),
    ("f(a,)", "(Call (Name f) (Name a))"),
    ("x.shape", "(Attribute (Name x) shape)"),
    ("x.T.shape[0]", "(Subscript (Attribute (Attribute (Name x) T) shape) (Constant 0))"),
    ("k[grid](a, b)", "(Call (Subscript (Name k) (Name grid)) (Name a) (Name b))"),
    ("x[:, 0:64]", "(Subscript (Name x) (Tuple (Slice _ _ _) (Slice (Constant 0) (Constant 64) _)))"),
    ("x[::2]", "(Subscript (Name x) (Slice _ _ (Constant 2)))"),
    ("x[1:]", "(Subscript (Name x) (Slice (Constant 1) _ _))"),
    ("x[:n]", "(Subscript (Name x) (Slice _ (Name n) _))"),
    ("x[a:b:c]", "(Subscript (Name x) (Slice (Name a) (Name b) (Name c)))"),
    ("x[::]", "(Subscript (Name x) (Slice _ _ _))"),
    ("l[:, None]", "(Subscript (Name l) (Tuple (Slice _ _ _) (Constant None)))"),
    ("x[..., 0]", "(Subscript (Name x) (Tuple (Ellipsis) (Constant 0)))"),
    ("x[-1]", "(Subscript (Name x) (UnaryOp - (Constant 1)))"),
    ("x[1,]", "(Subscript (Name x) (Tuple (Constant 1)))"),
    ("(1, 2)", "(Tuple (Constant 1) (Constant 2))"),
    ("(1,)", "(Tuple (Constant 1))"),
    ("()", "(Tuple)"),
    ("a, b", "(Tuple (Name a) (Name b))"),
    ("a,", "(Tuple (Name a))"),
    ("[1, 2.5, 'x']", "(List (Constant 1) (Constant 2.5) (Constant 'x'))"),
    ("[]", "(List)"),
    ("[64, 128,]", "(List (Constant 64) (Constant 128))"),
    ('{"a": 1, "b": [2]}', "(Dict ((Constant 'a') (Constant 1)) ((Constant 'b') (List (Constant 2))))"),
    ("{}", "(Dict)"),
    ("dict(BM=[64, 128], BN=[64])",
     "(Call (Name dict) (kw BM (List (Constant 64) (Constant 128))) (kw BN (List (Constant 64))))"),
    ("1..=4096", "(Range ..= (Constant 1) (Constant 4096))"),
    ("1..4096", "(Range .. (Constant 1) (Constant 4096))"),
    ("0..N+1", "(Range .. (Constant 0) (BinOp + (Name N) (Constant 1)))"),
    ("B in 1..=4096", "(Compare (Name B) in (Range ..= (Constant 1) (Constant 4096)))"),
    ("True and False or None", "(BoolOp or (BoolOp and (Constant True) (Constant False)) (Constant None))"),
    ("...", "(Ellipsis)"),
    ("a if c else b", "(IfExp (Name c) (Name a) (Name b))"),
    ('Tensor["B*H", "S+1", "D//2", 64, fp8_e4m3 @accum(f32) @saturate]',
     ("(Subscript (Name Tensor) (Tuple (Constant 'B*H') (Constant 'S+1') (Constant 'D//2') (Constant 64)"
     " (BinOp @ (BinOp @ (Name fp8_e4m3) (Call (Name accum) (Name f32))) (Name saturate))))")),
    ('f(\n  a,  # first\n  b,\n)', "(Call (Name f) (Name a) (Name b))"),
])
def test_expressions(text: str, expected: str) -> None:
    assert expr(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("-x**2", "(UnaryOp - (BinOp ** (Name x) (Constant 2)))"),
    ("2**-1", "(BinOp ** (Constant 2) (UnaryOp - (Constant 1)))"),
    ("a**b**c", "(BinOp ** (Name a) (BinOp ** (Name b) (Name c)))"),
    ("a @ b + c", "(BinOp + (BinOp @ (Name a) (Name b)) (Name c))"),
    ("a + b @ c", "(BinOp + (Name a) (BinOp @ (Name b) (Name c)))"),
    ("a - b - c", "(BinOp - (BinOp - (Name a) (Name b)) (Name c))"),
    ("a / b * c // d % e",
     "(BinOp % (BinOp // (BinOp * (BinOp / (Name a) (Name b)) (Name c)) (Name d)) (Name e))"),
    ("-a * +b", "(BinOp * (UnaryOp - (Name a)) (UnaryOp + (Name b)))"),
    ("--a", "(UnaryOp - (UnaryOp - (Name a)))"),
    ("not a == b", "(UnaryOp not (Compare (Name a) == (Name b)))"),
    ("not a and b", "(BoolOp and (UnaryOp not (Name a)) (Name b))"),
    ("a or b and c", "(BoolOp or (Name a) (BoolOp and (Name b) (Name c)))"),
    ("a or b or c", "(BoolOp or (Name a) (Name b) (Name c))"),
    ("a < b <= c", "(Compare (Name a) < (Name b) <= (Name c))"),
    ("a == b != c > d >= e", "(Compare (Name a) == (Name b) != (Name c) > (Name d) >= (Name e))"),
    ("a in b", "(Compare (Name a) in (Name b))"),
    ("a not in b", "(Compare (Name a) not in (Name b))"),
    ("a is None", "(Compare (Name a) is (Constant None))"),
    ("a is not None", "(Compare (Name a) is not (Constant None))"),
    ("a + 1 < b * 2", "(Compare (BinOp + (Name a) (Constant 1)) < (BinOp * (Name b) (Constant 2)))"),
    ("a if b else c if d else e", "(IfExp (Name b) (Name a) (IfExp (Name d) (Name c) (Name e)))"),
    ("a or b if c and d else e", "(IfExp (BoolOp and (Name c) (Name d)) (BoolOp or (Name a) (Name b)) (Name e))"),
    ("(a + b) * c", "(BinOp * (BinOp + (Name a) (Name b)) (Name c))"),
    ("x @ w1 @ w2", "(BinOp @ (BinOp @ (Name x) (Name w1)) (Name w2))"),
    ("-x.shape[0]", "(UnaryOp - (Subscript (Attribute (Name x) shape) (Constant 0)))"),
    ("H == 4 * D", "(Compare (Name H) == (BinOp * (Constant 4) (Name D)))"),
])
def test_precedence(text: str, expected: str) -> None:
    assert expr(text) == expected


# ---------------------------------------------------------------- §1 lexical structure


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("0", 0), ("1_000", 1000), ("0x1F", 31), ("0XFF", 255), ("0o17", 15), ("0b101", 5),
    ("1.5", 1.5), ("2.", 2.0), (".5", 0.5), ("1e-5", 1e-5), ("1E5", 1e5), ("2.5e+3", 2500.0),
    ("1_0.2_5", 10.25), ("1.e2", 100.0),
])
def test_number_literals(text: str, value: float) -> None:
    e = parse_expression(text)
    assert isinstance(e, ast.Constant) and e.value == value and type(e.value) is type(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("1..4096", "(Range .. (Constant 1) (Constant 4096))"),
    ("1..=4096", "(Range ..= (Constant 1) (Constant 4096))"),
    ("1.5..2.5", "(Range .. (Constant 1.5) (Constant 2.5))"),
    ("a..b", "(Range .. (Name a) (Name b))"),
    ("0x10..0x20", "(Range .. (Constant 16) (Constant 32))"),
    ("1 .. 2", "(Range .. (Constant 1) (Constant 2))"),
    ("x[...]", "(Subscript (Name x) (Ellipsis))"),
])
def test_ranges_are_not_floats(text: str, expected: str) -> None:
    assert expr(text) == expected


@pytest.mark.parametrize(("text", "value"), [
    ("'single'", "single"),
    ('"double"', "double"),
    (r'"esc\"aped\n\t\\"', 'esc"aped\n\t\\'),
    (r"'it\'s'", "it's"),
    ('"\u00e9t\u00e9"', "\u00e9t\u00e9"),
    (r"'\u00e9'", "\u00e9"),
    ('"""triple\n"quoted" """', 'triple\n"quoted" '),
    ("'''also'''", "also"),
    ('"a" "b"  \'c\'', "abc"),
    (r"r'\d+'", "\\d+"),
    ('""', ""),
])
def test_string_literals(text: str, value: str) -> None:
    e = parse_expression(text)
    assert isinstance(e, ast.Constant) and e.value == value


def test_keywords_literals() -> None:
    assert expr("[True, False, None]") == "(List (Constant True) (Constant False) (Constant None))"


def test_comments_blank_lines_and_continuations() -> None:
    src = (
        "# leading comment\n"
        "\n"
        "def f(x):  # trailing comment\n"
        "\n"
        "    # comment in a block\n"
        "        # comment indented differently\n"
        "    y = x + \\\n"
        "        1\n"
        "\n"
        "    return [y,\n"
        "# comment inside brackets at column 1\n"
        "            y]\n"
        "# comment at the end"
    )
    assert mod(src) == dedent("""\
        (FunctionDef f
          (params
            (Param x))
          (body
            (Assign (Name y) (BinOp + (Name x) (Constant 1)))
            (Return (List (Name y) (Name y)))))""")


def test_crlf_tabs_and_bom() -> None:
    crlf = "\ufeffdef f(x):\r\n\treturn x\r\n\r\ndef g():\r\n\tif a:\r\n\t\tpass\r\n"
    m = parse_module(SourceFile("t.tsr", crlf))
    assert [f.name for f in m.functions] == ["f", "g"]
    assert pos(m.functions[1].body[0].span) == (5, 2, 6, 7)


def test_unicode_identifiers() -> None:
    assert expr("\u03b1 + \u00e9t\u00e9") == "(BinOp + (Name \u03b1) (Name \u00e9t\u00e9))"


def test_semicolons() -> None:
    assert stmts("a = 1; b = 2;\n") == "(Assign (Name a) (Constant 1))\n(Assign (Name b) (Constant 2))"


# ---------------------------------------------------------------- spans


def test_spans_of_the_spec_function() -> None:
    m = module(MLP)
    fn = m.functions[0]
    assert m.span.file == "t.tsr" and pos(m.span) == (1, 1, 7, 30)
    assert pos(fn.span) == (2, 1, 7, 30)  # `def` to the end of the body
    assert pos(fn.name_span) == (2, 5, 2, 8)
    assert text_of(MLP, fn.decorators[0].span) == "jit"
    x = fn.params[0]
    assert text_of(MLP, x.span) == 'x: Tensor["B", "D", bf16 @accum(f32)]'
    assert text_of(MLP, x.annotation.span) == 'Tensor["B", "D", bf16 @accum(f32)]'
    assert text_of(MLP, x.annotation.index.span) == '"B", "D", bf16 @accum(f32)'
    act = fn.params[3]
    assert text_of(MLP, act.span) == 'act: str = "gelu"' and act.kw_only
    assert [text_of(MLP, c.span) for c in fn.where] == ["D % 8 == 0", "H == 4 * D", "B in 1..=4096"]
    assert [pos(c.span) for c in fn.where] == [(5, 15, 5, 25), (5, 27, 5, 37), (5, 39, 5, 52)]
    rng = fn.where[2].comparators[0]
    assert isinstance(rng, ast.Range) and text_of(MLP, rng.span) == "1..=4096"
    assign, ret = fn.body
    assert text_of(MLP, assign.span) == "h = gelu(x @ w1)"
    assert text_of(MLP, assign.value.span) == "gelu(x @ w1)"
    assert text_of(MLP, assign.value.args[0].span) == "x @ w1"
    assert text_of(MLP, ret.span) == "return cast(h @ w2, bf16)"
    assert all(n.span.file == "t.tsr" for n in [fn, x, assign, ret, rng])


def test_spans_of_multiline_nodes() -> None:
    src = dedent("""\
        def f(x):
            y = g(a,
                  b=x.shape,
                  )
            if y:
                z = (y
                     + 1)
            else:
                z = 2
            return z
    """)
    fn = parse_module(SourceFile("t.tsr", src)).functions[0]
    assign, if_, ret = fn.body
    call = assign.value
    assert pos(call.span) == (2, 9, 4, 12)
    kw = call.keywords[0]
    assert text_of(src, kw.span) == "b=x.shape"
    attr = kw.value
    assert isinstance(attr, ast.Attribute) and pos(attr.attr_span) == (3, 15, 3, 20)
    assert text_of(src, attr.attr_span) == "shape"
    assert pos(if_.span) == (5, 5, 9, 14)
    paren = if_.body[0].value
    assert text_of(src, paren.span) == "(y\n             + 1)"
    assert pos(ret.span) == (10, 5, 10, 13)


def test_spans_of_statements_and_imports() -> None:
    src = dedent("""\
        from stdlib.nn import gelu as g
        import stdlib.nn as nn
        EPS: float = 1e-5

        def f(a, b):
            a, b = b, a
            a += 1
            for i in range(3):
                pass
            with q() as c:
                pass
            assert a, "m"
            return a, b
    """)
    m = parse_module(SourceFile("t.tsr", src))
    imp_from, imp, const, fn = m.body
    assert text_of(src, imp_from.span) == "from stdlib.nn import gelu as g"
    assert text_of(src, imp_from.names[0].span) == "gelu as g"
    assert text_of(src, imp.span) == "import stdlib.nn as nn"
    assert text_of(src, const.span) == "EPS: float = 1e-5" and text_of(src, const.name_span) == "EPS"
    tup, aug, for_, with_, assert_, ret = fn.body
    assert text_of(src, tup.span) == "a, b = b, a"
    assert text_of(src, tup.targets[0].span) == "a, b"
    assert text_of(src, aug.span) == "a += 1"
    assert pos(for_.span) == (8, 5, 9, 13)
    assert text_of(src, with_.items[0].span) == "q() as c"
    assert text_of(src, with_.items[0].name.span) == "c"
    assert text_of(src, assert_.span) == 'assert a, "m"'
    assert text_of(src, ret.span) == "return a, b"
    assert text_of(src, ret.value.span) == "a, b"


def test_spans_of_expressions() -> None:
    src = "k[grid](x[:, 0:64], -y**2, z if c else w)"
    e = parse_expression(src, file="<repl>")
    assert e.span == Span("<repl>", 1, 1, 1, len(src) + 1)
    sub = e.args[0]
    assert text_of(src, sub.index.elts[0].span) == ":"
    assert text_of(src, sub.index.elts[1].span) == "0:64"
    assert [text_of(src, a.span) for a in e.args] == ["x[:, 0:64]", "-y**2", "z if c else w"]
    assert text_of(src, e.func.span) == "k[grid]"


def test_dump_with_spans() -> None:
    assert dump_with_spans(parse_expression("f(a)")) == "(Call @1:1-1:5 (Name @1:1-1:2 f) (Name @1:3-1:4 a))"


# ---------------------------------------------------------------- refused constructs

REFUSED = [
    ("lambda", "def f():\n    g = lambda a: a\n", "`lambda` is not supported", (2, 9, 2, 20)),
    ("class", "class A:\n    pass\n", "classes are not supported", (1, 1, 1, 8)),
    ("list comprehension", "def f(y):\n    return [x for x in y]\n", "comprehensions are not supported",
     (2, 12, 2, 26)),
    ("generator", "def f(y):\n    return sum(x for x in y)\n", "comprehensions are not supported",
     (2, 16, 2, 28)),
    ("dict comprehension", "def f(y):\n    return {k: v for k, v in y if k}\n",
     "comprehensions are not supported", (2, 12, 2, 37)),
    ("try", "def f():\n    try:\n        pass\n    except E as e:\n        pass\n", "`try` is not supported",
     (2, 5, 2, 8)),
    ("global", "def f():\n    global X, Y\n", "`global` is not supported", (2, 5, 2, 16)),
    ("nonlocal", "def f():\n    nonlocal X\n", "`nonlocal` is not supported", (2, 5, 2, 15)),
    ("yield", "def f():\n    yield 1\n", "`yield` is not supported", (2, 5, 2, 12)),
    ("yield value", "def f():\n    x = yield\n", "`yield` is not supported", (2, 9, 2, 14)),
    ("async", "async def f():\n    pass\n", "`async` is not supported", (1, 1, 1, 6)),
    ("nested def", "def f():\n    if a:\n        def g():\n            pass\n    return 1\n",
     "nested functions are not supported; define `g` at module level", (3, 9, 3, 14)),
    ("subscript assignment", "def f(x):\n    x[0] = 1\n",
     "assignment to subscripts is not supported; tensors are immutable", (2, 5, 2, 9)),
    ("attribute assignment", "def f(x):\n    x.a = 1\n", "assignment to attributes is not supported",
     (2, 5, 2, 8)),
    ("aug subscript", "def f(x):\n    x[0] += 1\n", "assignment to subscripts is not supported", (2, 5, 2, 9)),
    ("for subscript", "def f(x):\n    for x[0] in y:\n        pass\n", "assignment to subscripts", (2, 9, 2, 13)),
    ("call assignment", "def f():\n    f() = 3\n", "cannot assign to a function call", (2, 5, 2, 8)),
    ("literal assignment", "def f():\n    1 = x\n", "cannot assign to a literal", (2, 5, 2, 6)),
    ("list assignment", "def f():\n    [a, b] = c\n", "cannot assign to a list", (2, 5, 2, 11)),
    ("annotation without value", "def f():\n    x: int\n", "an annotated variable needs a value",
     (2, 5, 2, 11)),
    ("top-level call", "print(1)\n", ("top-level statements are not allowed; programs do their work in "
     "functions (e.g. `def main():`)"), (1, 1, 1, 9)),
    ("top-level if", "if X:\n    pass\n", "top-level statements are not allowed", (1, 1, 2, 9)),
    ("top-level for", "for i in x:\n    pass\n", "top-level statements are not allowed", (1, 1, 2, 9)),
    ("top-level return", "return 1\n", "top-level statements are not allowed", (1, 1, 1, 9)),
    ("top-level augassign", "X = 1\nX += 1\n", "top-level statements are not allowed", (2, 1, 2, 7)),
    ("top-level tuple", "A, B = 1, 2\n", "tuple assignment is not allowed at module level", (1, 1, 1, 12)),
    ("top-level chain", "A = B = 1\n", "chained assignment is not allowed at module level", (1, 1, 1, 10)),
    ("top-level annotation", "X: int\n", "an annotated variable needs a value", (1, 1, 1, 7)),
    ("raise", "def f():\n    raise ValueError('x')\n", "`raise` is not supported", (2, 5, 2, 26)),
    ("del", "def f():\n    del x\n", "`del` is not supported", (2, 5, 2, 10)),
    ("set", "def f():\n    return {1, 2}\n", "sets are not supported", (2, 12, 2, 18)),
    ("star import", "from m import *\n", "`import *` is not supported", (1, 15, 1, 16)),
    ("f-string", "def f():\n    return f'{x}'\n", "f-strings are not supported", (2, 12, 2, 18)),
    ("star args", "def f(*args):\n    pass\n", "variadic parameters (`*args`) are not supported", (1, 7, 1, 12)),
    ("kwargs", "def f(**kw):\n    pass\n", "variadic keyword parameters", (1, 7, 1, 11)),
    ("bare star", "def f(a, *):\n    pass\n", "a bare `*` must be followed by keyword-only parameters",
     (1, 10, 1, 11)),
    ("default order", "def f(a=1, b):\n    pass\n", "a parameter without a default follows one with a default",
     (1, 12, 1, 13)),
    ("duplicate param", "def f(a, a):\n    pass\n", "duplicate parameter 'a'", (1, 10, 1, 11)),
    ("call unpacking", "def f():\n    return g(*a)\n", "argument unpacking", (2, 14, 2, 16)),
    ("positional after keyword", "def f():\n    return g(a=1, b)\n", "positional argument follows keyword",
     (2, 19, 2, 20)),
    ("repeated keyword", "def f():\n    return g(a=1, a=2)\n", "keyword argument 'a' repeated", (2, 19, 2, 22)),
    ("break outside loop", "def f():\n    break\n", "`break` outside a loop", (2, 5, 2, 10)),
    ("for else", "def f():\n    for x in y:\n        pass\n    else:\n        pass\n", "`for ... else`",
     (2, 5, 5, 13)),
    ("leading zeros", "def f():\n    return 007\n", "leading zeros", (2, 12, 2, 15)),
]


@pytest.mark.parametrize(("src", "message", "span"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_constructs(src: str, message: str, span: tuple[int, int, int, int]) -> None:
    d = error(src)
    assert message in d.message
    assert pos(d.span) == span
    assert d.span.file == "t.tsr"


def test_fixits() -> None:
    assert error("def f():\n    x: int\n").fixit == "x: ... = VALUE"
    assert error("def f(*args):\n    pass\n").fixit == "*"
    assert error("def f():\n    raise E\n").fixit == 'assert False, "message"'


def test_independent_errors_are_reported_together() -> None:
    diags = errors("""
        import stdlib.nn as nn
        print("setup")
        class Model:
            pass
        def f(x):
            g = lambda a: a
            x[0] = 1
            def inner():
                pass
            return [v for v in x]
        X, Y = 1, 2
    """)
    assert [(d.span.line, d.message.split(";")[0]) for d in diags] == [
        (3, "top-level statements are not allowed"),
        (4, "classes are not supported"),
        (7, "`lambda` is not supported"),
        (8, "assignment to subscripts is not supported"),
        (9, "nested functions are not supported"),
        (11, "comprehensions are not supported"),
        (12, "tuple assignment is not allowed at module level"),
    ]


def test_statement_parser_allows_top_level_statements() -> None:
    assert stmts("x = 1\nprint(x)\n") == "(Assign (Name x) (Constant 1))\n(Expr (Call (Name print) (Name x)))"
    with pytest.raises(CompilationError) as info:
        parse_statements("def f():\n    def g():\n        pass\n")
    assert "nested functions" in info.value.primary.message


# ---------------------------------------------------------------- syntax errors

SYNTAX = [
    ("missing colon", "def f(x)\n    return x\n", "expected ':' at the end of this line", (1, 9, 1, 10)),
    ("keyword where ':' belongs", "def f(x) return x\n", "expected ':', '->' or 'where', found 'return'",
     (1, 10, 1, 16)),
    ("bad parameter", "def f(:\n", "expected ')', a name or '*', found ':'", (1, 7, 1, 8)),
    ("missing comma", "def f(x):\n    return f(a b)\n", "expected ')', ',', '=' or an operator, found name 'b'",
     (2, 16, 2, 17)),
    ("missing operand", "def f(x):\n    return x +\n", "expected an expression, found end of line",
     (2, 15, 2, 16)),
    ("missing else", "def f(x):\n    return x if y\n", "expected 'else', found end of line", (2, 18, 2, 19)),
    ("assignment in condition", "def f(x):\n    if x = 1:\n        pass\n", "expected ':', found '='",
     (2, 10, 2, 11)),
    ("missing block", "def f():\nreturn 1\n", "expected an indented block, found 'return'", (2, 1, 2, 7)),
    ("missing block at end", "def f(x):\n", "expected an indented block, found end of input", (1, 10, 1, 11)),
    # Found by tests/test_fuzz.py: the DEDENT closing the open blocks sat on a line past the end.
    ("missing nested block at end", "def f():\n    with x:\n ", "expected an indented block, found end of input",
     (2, 12, 2, 13)),
    ("unexpected indent", "def f():\n  x = 1\n    y = 2\n", "unexpected indent", (3, 5, 3, 6)),
    ("indented first line", "  X = 1\n", "unexpected indent", (1, 1, 1, 3)),
    ("bad dedent", "def f():\n    x = 1\n  y = 2\n", "unindent does not match any outer indentation level",
     (3, 1, 3, 4)),
    ("tabs and spaces", "def f():\n\tx = 1\n        y = 2\n", "inconsistent use of tabs and spaces in indentation",
     (3, 1, 3, 10)),
    ("stray else", "def f(x):\n    pass\n    else:\n        pass\n", "expected a statement, found 'else'",
     (3, 5, 3, 9)),
    ("unclosed paren", "def f(x):\n    return (x +\n", "'(' was never closed", (2, 12, 2, 13)),
    ("unmatched paren", "def f(x):\n    return x)\n", "unmatched ')'", (2, 13, 2, 14)),
    ("mismatched bracket", "def f(x):\n    return [1, 2)\n", "closing ')' does not match opening '['",
     (2, 17, 2, 18)),
    ("dollar", "def f(x):\n    return x $ 2\n", "unexpected character '$'", (2, 14, 2, 15)),
    ("control character", "X = 1\x00\n", "unexpected character '\\x00'", (1, 6, 1, 7)),
    ("unterminated string", "def f(x):\n    return 'abc\n", "unterminated string literal", (2, 12, 2, 16)),
    ("unterminated triple string", 'X = """abc\n\n', "unterminated triple-quoted string", (1, 5, 1, 11)),
    ("indented line after a comment", "# c\n  X = 1\n", "unexpected indent", (2, 3, 2, 4)),
    ("bitwise", "def f(x):\n    return x & 1\n", "unexpected character '&'", (2, 14, 2, 15)),
    ("empty import", "import\n", "expected a name, found end of line", (1, 7, 1, 8)),
    ("statement keyword in expression", "X = return\n", "expected an expression, found 'return'", (1, 5, 1, 11)),
    ("end of input in brackets", "X = [1,\n", "'[' was never closed", (1, 5, 1, 6)),
]


@pytest.mark.parametrize(("src", "message", "span"), [r[1:] for r in SYNTAX], ids=[r[0] for r in SYNTAX])
def test_syntax_errors(src: str, message: str, span: tuple[int, int, int, int]) -> None:
    d = error(src)
    assert d.message == message
    assert pos(d.span) == span


def test_syntax_error_notes_and_labels() -> None:
    assert "use '=='" in error("def f(x):\n    if x = 1:\n        pass\n").notes[0]
    assert "`not`" in error("def f(x):\n    return !x\n").notes[0]
    d = error("def f(x):\n    y = [1, 2\n    return y\n")
    assert d.message == "expected ']', ',' or an operator, found 'return'"
    assert [(pos(lb.span), lb.message) for lb in d.labels] == [((2, 9, 2, 10), "'[' opened here is still open")]


def test_syntax_error_in_expression_and_statements() -> None:
    with pytest.raises(CompilationError) as info:
        parse_expression("a +", file="<repl>")
    assert info.value.primary.message == "unexpected end of input; expected an expression" or (
        info.value.primary.message == "expected an expression, found end of line")
    assert info.value.primary.span.file == "<repl>"
    with pytest.raises(CompilationError):
        parse_expression("x = 1")
    with pytest.raises(CompilationError):
        parse_expression("")


def test_syntax_error_keeps_earlier_structural_errors() -> None:
    diags = errors("def f():\n    x[0] = 1\n    return (\n")
    assert [d.message.split(";")[0] for d in diags] == [
        "assignment to subscripts is not supported", "'(' was never closed"]


def test_messages_never_mention_lark_terminals() -> None:
    for src in ["def f(x) -> :\n", "X = (1 2)\n", "def f():\n    return x.\n", "from . import\n",
                "def f(x, *, y=):\n", "X = {1: }\n", "@\ndef f(): pass\n", "X = a[1:2:3:4]\n"]:
        message = error(src).message
        assert "__ANON" not in message and "RPAR" not in message and "$END" not in message, message
        assert "expected" in message or "unexpected" in message, message


# ---------------------------------------------------------------- robustness


def _assert_parses_or_compilation_error(text: str) -> None:
    start = time.perf_counter()
    try:
        parse_module(SourceFile("fuzz.tsr", text))
    except CompilationError as exc:
        assert exc.diagnostics and all(d.code == "E-SYNTAX" for d in exc.diagnostics)
        for d in exc.diagnostics:
            assert d.span.line >= 1 and d.span.col >= 1
    assert time.perf_counter() - start < 1.0


FUZZ_ALPHABET = st.sampled_from(list("abxyz019_.,:;()[]{}'\"\\#@=+-*/%<>! \t\n") + [
    "def ", "return ", "if ", "else", "elif ", "for ", " in ", "where ", "..=", "..", "...", "    ",
    "lambda", "class", "\u00e9", "\x00", "\r", "\ufeff", "0x", "1e", '"""', "not ", "and ", "->",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    _assert_parses_or_compilation_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FUZZ_ALPHABET, max_size=80).map("".join))
def test_random_token_soup_never_crashes(text: str) -> None:
    _assert_parses_or_compilation_error(text)


VALID_PROGRAM = MLP + dedent('''
    from .layers import block
    EPS = 1e-5

    @kernel.autotune(space=dict(BM=[64, 128]), metric="latency_ms")
    def k(a: Tile["M", "K", f16], *, eps: float = 1e-5) -> (Tensor["M", f32], int)
            where M % 16 == 0, K in 1..4096:
        """Doc."""
        acc = tile.zeros((T.m, T.n), f32)
        for kk in tile.range(0, K, 64):
            acc += tile.dot(a[:, kk:kk + 64], b[kk:, ...], acc) ** -2
        if not acc is None and x[-1] != 0x1F:
            y: Tensor["M", f32] = acc if True else -acc
        with effects.suspend("io") as s:
            print('x', 1.5, .5, 2.)
        return acc, 0
''')


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(VALID_PROGRAM) - 1), min_size=1, max_size=6, unique=True))
def test_deletions_from_a_valid_program_never_crash(cuts: list[int]) -> None:
    text = "".join(ch for i, ch in enumerate(VALID_PROGRAM) if i not in set(cuts))
    _assert_parses_or_compilation_error(text)


def test_valid_program_parses() -> None:
    m = parse_module(SourceFile("v.tsr", VALID_PROGRAM))
    assert [f.name for f in m.functions] == ["mlp", "k"]


def test_deep_nesting() -> None:
    assert expr("(" * 200 + "x" + ")" * 200) == "(Name x)"
    assert error("X = " + "[" * 500 + "\n").message == "too many nested brackets (at most 200)"
    deep = "def f():\n" + "".join("    " * i + "if x:\n" for i in range(1, 120)) + "    " * 120 + "pass\n"
    assert error(deep).message == "too many nested blocks (at most 100)"
    ok = "def f():\n" + "".join("    " * i + "if x:\n" for i in range(1, 60)) + "    " * 60 + "pass\n"
    assert len(parse_module(SourceFile("ok.tsr", ok)).functions[0].body) == 1


# ---------------------------------------------------------------- the grammar itself and speed


def test_grammar_has_no_lalr_conflicts() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    lark_logger = logging.getLogger("lark")
    handler, level = Collect(), lark_logger.level
    lark_logger.addHandler(handler)
    lark_logger.setLevel(logging.DEBUG)
    try:
        Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="basic", postlex=_Layout(),
             start=["file_input", "expr_input"], debug=True)
    finally:
        lark_logger.removeHandler(handler)
        lark_logger.setLevel(level)
    assert not [r for r in records if "conflict" in r.lower()], records


def thousand_line_program(functions: int = 100) -> str:
    out = ["from stdlib.nn import gelu, rmsnorm_safe", "import stdlib.nn as nn", "EPS = 1e-5", ""]
    for i in range(functions):
        out += [
            "@jit",
            f'def block{i}(x: Tensor["B", "D", bf16 @accum(f32)], w: Tensor["D", "H", bf16], *,',
            '              eps: float = 1e-5) -> Tensor["B", "H", bf16]',
            "        where D % 8 == 0, B in 1..=4096:",
            "    h = gelu(x @ w)  # project",
            "    s = sum(h * h, axis=-1, keepdims=True) / 64.0",
            "    if s > 0.5 and not eps == 0:",
            "        h = h * rsqrt(s + eps)",
            "    else:",
            "        h = h[:, 0:64] + h[..., -1]",
            "    return cast(h, bf16)",
        ]
    return "\n".join(out) + "\n"


def test_a_thousand_line_program_parses() -> None:
    # Its speed is measured by bench/frontend.py, not asserted here.
    text = thousand_line_program()
    assert text.count("\n") >= 1000
    assert len(parse_module(SourceFile("big.tsr", text)).functions) == 100


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def test_parses_are_independent() -> None:
    # The parser is shared: a failed parse must not leave state behind for the next one.
    with pytest.raises(CompilationError):
        parse_module(SourceFile("a.tsr", "def f():\n    x[0] = 1\n    return (\n"))
    m = parse_module(SourceFile("b.tsr", "def f(x) -> T\n        where N > 0:\n    return x\n"))
    assert m.functions[0].span.file == "b.tsr" and len(m.functions[0].where) == 1
    rng = random.Random(0)
    for _ in range(20):
        cut = rng.randrange(len(VALID_PROGRAM))
        try:
            parse_module(SourceFile("c.tsr", VALID_PROGRAM[:cut]))
        except CompilationError:
            pass
    assert dump(parse_expression("a+b")) == "(BinOp + (Name a) (Name b))"


# Found by tests/test_fuzz.py: a long operator chain is a deep tree, and the checker's recursion over it
# hit Python's recursion limit (RecursionError) from about 300 levels.
@pytest.mark.parametrize("text", [
    " + ".join(["x"] * 101),
    "-" * 100 + "x",
    "not " * 100 + "x",
    "x" + ".T" * 100,
    "x" + "[0]" * 100,
    "exp(" * 100 + "x" + ")" * 100,
    "x if c else " * 100 + "x",
    " ** ".join(["x"] * 101),
])
def test_expressions_nest_at_most_100_levels(text: str) -> None:
    d = error(f"def f(x):\n    return {text}\n")
    assert d.message == "expression nested too deeply (at most 100 levels of operators, calls and subscripts)"
    assert pos(d.span)[:2] == (2, 12)
    with pytest.raises(CompilationError):
        parse_expression(text)
    with pytest.raises(CompilationError):
        parse_statements(f"y = {text}\n")


def test_expressions_at_the_depth_limit_and_flat_ones_parse() -> None:
    ok = [" + ".join(["x"] * 100), "-" * 99 + "x", "(" * 199 + "x" + ")" * 199,
          " < ".join(["x"] * 500), " and ".join(["x"] * 500), "(" + ", ".join(["x"] * 500) + ")",
          "f(\n" + ",\n".join(["x + 1"] * 300) + ")"]
    for text in ok:
        parse_module(SourceFile("ok.tsr", f"def f(x):\n    return {text}\n"))
    # Deep expressions anywhere in a function are found: defaults, annotations, where clauses, bodies.
    deep = " + ".join(["1"] * 150)
    for src in (f"def f(x={deep}):\n    pass\n", f"def f(x) -> T[{deep}]:\n    pass\n",
                f"def f(x) where B == {deep}:\n    pass\n", f"X = {deep}\n",
                f"def f(x):\n    if x:\n        with a({deep}):\n            pass\n"):
        assert "nested too deeply" in error(src).message
