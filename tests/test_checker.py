"""Tests of the checker's diagnostics: one small failing program per distinct diagnostic of the front
end (code, key message, primary span, fix-it), then calls, recovery after errors, imports, and the
shipped examples and stdlib checking clean. Shape and dtype inference is in test_builtins_shapes.py,
effects in test_effects.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from checking import Expect, check, clean, find, function, returned_type, shown

from tessera.diagnostics import CODES
from tessera.frontend.check import check_file

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    src: str
    expect: Expect
    count: int = 1  # how many diagnostics the program reports in all (1: no cascades)


def case(code: str, message: str, at: tuple[int, int], src: str, *, fixit: str | None = None,
         count: int = 1) -> Case:
    return Case(src, Expect(code, message, at, fixit), count)


# The usual first line (x: [B, D] f32), indented like the bodies that follow it.
X = '\n        def f(x: Tensor["B", "D", f32]):'

# ---------------------------------------------------------------- every diagnostic, one program each

CASES: dict[str, Case] = {
    # --- module level and signatures (checker.py)
    "defined-twice": case("E-NAME", "'g' is defined twice in this module", (3, 5), """
        def g(x):
            return x
        def g(y):
            return y
        """),
    "import-missing-name": case("E-NAME", "module 'stdlib.nn' has no name 'softmx'", (1, 23), """
        from stdlib.nn import softmx
        """),
    "result-dim-unbound": case("E-SHAPE", "the result dim C is not bound by any parameter", (1, 31), """
        def f(x: Tensor["B", f32]) -> Tensor["C", f32]:
            return x
        """),
    "result-dim-unbound-by-inequality": case("E-SHAPE", "the result dim C is not bound", (1, 31), """
        def f(x: Tensor["B", f32]) -> Tensor["C", f32] where C % 8 == 0, C > 1:
            return x
        """),
    "constraints-contradict": case("E-CONSTRAINT", "the constraint `B > 4` can never hold", (1, 54), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B > 4, B < 2:
            return x
        """, count=2),
    "missing-return": case("E-TYPE", "'f' declares a result but can end without returning one", (1, 5), """
        def f(x: Tensor["B", f32], n: int) -> Tensor["B", f32]:
            if n > 2:
                return x
        """),
    "bare-return": case("E-TYPE", "'f' must return Tensor[\"B\", f32]", (2, 5), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32]:
            return
        """),
    # --- statements (checker.py)
    "augassign-global": case("E-NAME", "'N' must be a local variable to update it", (3, 5), """
        N = 3
        def f(x: int):
            N += 1
        """),
    "break-outside-loop": case("E-SYNTAX", "outside a loop", (2, 5), """
        def f():
            break
        """),
    "assert-message": case("E-TYPE", "an assert message must be a string", (2, 18), """
        def f(x: int):
            assert True, 3
        """),
    "assign-constant": case("E-TYPE", "cannot assign to the module constant 'N'", (3, 5), """
        N = 3
        def f(x: int):
            N = 4
        """, fixit="n_local = ..."),
    "unpack-count": case("E-TYPE", "cannot unpack 3 values into 2 names", (2, 5), """
        def f(x: int):
            a, b = (1, 2, 3)
        """),
    "unpack-scalar": case("E-TYPE", "cannot unpack int", (2, 12), """
        def f(x: int):
            a, b = 1
        """),
    "annotated-scalar-for-tensor": case(
        "E-SHAPE", "'y' is declared Tensor[\"B\", \"D\", f32] but the value is a "
        "scalar", (2, 32), X + """
            y: Tensor["B", "D", f32] = 1.0
        """),
    "annotated-tuple-for-tensor": case(
        "E-TYPE", "'y' is declared Tensor[\"B\", f32] but the value is (", (2, 27),
        X + """
            y: Tensor["B", f32] = (x, x)
        """),
    "annotated-rank": case("E-SHAPE", "'y' is declared with rank 1 but the value has rank 2", (2, 27), X + """
            y: Tensor["B", f32] = x
        """),
    "annotated-dim": case("E-SHAPE", "'y': value.shape[1] (D) must equal the declared 4", (2, 30), X + """
            y: Tensor["B", 4, f32] = x
        """),
    "annotated-narrowing": case("E-DTYPE", "'y' is declared bf16 but the value is f32; narrowing is never "
                                "implicit", (2, 33), X + """
            y: Tensor["B", "D", bf16] = x * 2.0
        """, fixit="cast(x * 2.0, bf16)"),
    "result-narrowing": case("E-DTYPE", "the result is declared f16 but the value is f32", (2, 12), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f16]:
            return x
        """, fixit="cast(x, f16)"),
    "result-tuple-element": case("E-DTYPE", "the result is declared f16 but the value is f32", (2, 16), """
        def f(x: Tensor["B", f32], y: Tensor["B", f16]) -> (Tensor["B", f32], Tensor["B", f16]):
            return (x, x + y)
        """, fixit="cast(x + y, f16)"),
    "result-tuple-variable": case("E-DTYPE", "the result is declared f16 but the value is f32", (3, 12), """
        def f(x: Tensor["B", f32], y: Tensor["B", f16]) -> (Tensor["B", f32], Tensor["B", f16]):
            z = (x, x)
            return z
        """, fixit="cast(z[1], f16)"),
    "result-not-a-tuple": case(
        "E-TYPE", "the result is declared (Tensor[\"B\", f32], Tensor[\"B\", f16]) but the "
        "value is Tensor[\"B\", f32]", (2, 12), """
        def f(x: Tensor["B", f32], y: Tensor["B", f16]) -> (Tensor["B", f32], Tensor["B", f16]):
            return x
        """),
    "default-narrowing": case(
        "E-DTYPE", "the default of 'y' is declared f16 but the value is f32", (1, 27), """
        def f(y: Tensor[3, f16] = zeros(3)):
            return y
        """, fixit="cast(zeros(3), f16)"),
    "constant-annotation": case("E-TYPE", "constant is declared int but the value is float", (1, 10), """
        N: int = 1.5
        """),
    "annotated-tuple": case("E-TYPE", "'t' is declared (int, int) but the value is int", (2, 21), """
        def f(x: int):
            t: (int, int) = 3
        """),
    "annotated-str": case("E-TYPE", "'r' is declared str but the value is int", (2, 14), """
        def f(x: int):
            r: str = 3
        """),
    "jit-if-on-tensor": case(
        "E-TYPE", "an if on a tensor value: compiled control flow must be static", (3, 8), """
        @jit
        def f(x: Tensor["B", f32]):
            if x > 0.0:
                pass
        """),
    "while-on-tensor": case("E-TYPE", "a while loop on a tensor value", (2, 11), """
        def f(x: Tensor["B", f32]):
            while x > 0.0:
                pass
        """),
    "loop-over-int": case("E-TYPE", "cannot loop over int", (2, 14), """
        def f(x: int):
            for i in 3:
                pass
        """),
    "not-a-context-manager": case("E-TYPE", "is not a context manager", (2, 10), X + """
            with x:
                pass
        """),
    "join-after-if": case("E-TYPE", "the values of 'y' after the if have different types: Tensor[\"B\", f16] "
                          "and Tensor[\"B\", f32]", (4, 5), """
        @jit
        def f(x: Tensor["B", f32], n: int):
            y = x
            if n > 0:
                y = cast(x, f16)
            return y
        """),
    "join-across-loop": case(
        "E-TYPE", "the values of 'y' across loop iterations have different types", (4, 5), """
        @jit
        def f(x: Tensor["B", f32], n: int):
            y = x
            for i in range(n):
                y = sum(y)
            return y
        """),
    "join-returns": case("E-TYPE", "the returned values have different types", (5, 5), """
        @jit
        def f(x: Tensor["B", f32], n: int):
            if n > 0:
                return x
            return sum(x)
        """),
    "join-ifexp": case("E-TYPE", "the two branches have different types", (3, 9), """
        @jit
        def f(x: Tensor["B", f32], n: int):
            y = x if n > 0 else (x, x)
        """),
    # --- expressions (expressions.py)
    "dict-key": case("E-TYPE", "dict keys must be string literals", (2, 10), """
        def f(x: int):
            y = {1: 2}
        """),
    "ellipsis-outside-subscript": case("E-SYNTAX", "`...` is only allowed inside a subscript", (2, 9), """
        def f(x: int):
            y = ...
        """),
    "undefined-name": case("E-NAME", "name 'xx' is not defined", (2, 9), X + """
            y = xx + 1
        """),
    "opaque-attribute": case("E-NAME", "Schedule has no attribute 'foo'", (3, 11), """
        def f(x: int):
            s = Schedule(block=(64, 64))
            a = s.foo
        """),
    "tuple-attribute": case("E-NAME", "(int, int) has no attribute 'foo'", (2, 16), """
        def f(x: int):
            a = (1, 2).foo
        """),
    "namespace-member": case("E-NAME", "'effects' has no member 'suspnd'", (2, 17), """
        def f(x: int):
            a = effects.suspnd
        """),
    "module-member": case("E-NAME", "module 'stdlib.nn' has no name 'softmx'", (3, 12), """
        import stdlib.nn as nn
        def f(x: int):
            a = nn.softmx
        """),
    "package-member": case("E-NAME", "'stdlib' has no member 'foo'", (3, 16), """
        import stdlib.nn
        def f(x: int):
            a = stdlib.foo
        """),
    "type-as-value": case("E-TYPE", "Tensor[...] is a type; it may only appear in annotations", (2, 9), """
        def f(x: int):
            a = Tensor["B", f32]
        """),
    "launch-grid": case("E-TYPE", "a launch grid is an int or a tuple of ints, found float", (5, 7), """
        @kernel
        def k(x: Tensor["B", f32]):
            pass
        def f(x: Tensor["B", f32]):
            k[1.5](x)
        """),
    "tuple-index-unknown": case("E-TYPE", "tuples are indexed by int constants", (2, 16), """
        def f(n: int):
            a = (1, 2)[n]
        """),
    "tuple-index-range": case("E-TYPE", "index 5 is out of range for (int, int)", (2, 16), """
        def f(n: int):
            a = (1, 2)[5]
        """),
    "dict-key-missing": case("E-NAME", "key not in dict", (2, 19), """
        def f(n: int):
            c = dict(a=1)["b"]
        """),
    "index-int": case("E-TYPE", "int cannot be indexed", (2, 9), """
        def f(n: int):
            d = n[0]
        """),
    "two-ellipses": case("E-SHAPE", "an index can have only one `...`", (2, 11), X + """
            a = x[..., 0, ...]
        """),
    "too-many-indices": case("E-SHAPE", "too many indices: x has rank 2 but 3 are given", (2, 11), X + """
            b = x[0, 0, 0]
        """),
    "tensor-index": case("E-TYPE", "indexing with a tensor is not supported", (2, 11), """
        def f(x: Tensor["B", f32], i: Tensor["B", int32]):
            c = x[i]
        """),
    "float-index": case("E-TYPE", "an index must be an int, a slice, None or `...`, found float", (2, 11), """
        def f(x: Tensor["B", f32], s: float):
            d = x[s]
        """),
    "constant-index-range": case("E-SHAPE", "index -5 is out of range for x.shape[0] (4)", (2, 11), """
        def f(x: Tensor[4, 8, f32]):
            b = x[-5]
        """),
    "slice-bound-float": case(
        "E-TYPE", "slice bounds must be ints known at compile time, found float", (2, 14), """
        def f(x: Tensor["B", "D", f32], s: float):
            e = x[:, s:]
        """),
    "slice-step": case("E-TYPE", "a slice step must be a non-zero int constant", (2, 13), X + """
            b = x[::0]
        """),
    "slice-end": case("E-SHAPE", "slice end 64 may exceed x.shape[1] (D)", (2, 14), X + """
            k = x[:, 0:64]
        """),
    "slice-start": case("E-SHAPE", "slice start 65 may exceed its end 64 on x.shape[1]", (2, 14), """
        def f(x: Tensor["B", "D", f32]) where D >= 64:
            m = x[:, 65:64]
        """),
    "operand-str": case("E-TYPE", "unsupported operand str for '+'", (2, 13), """
        def f(x: Tensor["B", f32], s: str):
            a = x + s
        """),
    "negate-bool": case("E-DTYPE", "unary '-' on a bool tensor", (2, 9), """
        def f(x: Tensor["B", bool]):
            b = -x
        """),
    "negate-str": case("E-TYPE", "unary '-' on str", (2, 9), """
        def f(s: str):
            c = -s
        """),
    "chained-tensor-compare": case("E-TYPE", "chained comparisons of tensors are ambiguous", (2, 9), """
        def f(x: Tensor["B", f32]):
            d = 0.0 < x < 1.0
        """, fixit="where(0.0 < x, x < 1.0, False)"),
    "in-on-tensor": case("E-TYPE", "'in' does not apply to tensors", (2, 9), """
        def f(x: Tensor["B", f32]):
            e = x in x
        """),
    "in-on-int": case("E-TYPE", "'in' needs a range, tuple, list or dict on its right, found int", (2, 9), """
        def f(x: int):
            e = 3 in 4
        """),
    "and-on-tensor": case("E-TYPE", "`and`/`or` needs a single bool, found Tensor[\"B\", f32]", (2, 9), """
        def f(x: Tensor["B", f32], n: bool):
            e = x and n
        """),
    "range-bound": case("E-TYPE", "a range bound must be an int, found float", (2, 17), """
        def f(n: int):
            a = 1 in 0..1.5
        """),
    "tensor-attribute": case("E-NAME", "a tensor has no attribute 'size'", (2, 11), X + """
            a = x.size
        """),
    "operand-expression-named": case(
        "E-SHAPE", "where: (i > 0).shape[0] (B) and x.shape[1] (D) do not broadcast",
        (2, 9), """
        def f(x: Tensor["B", "D", f32], i: Tensor["B", int32]):
            a = where(i > 0, x, x)
        """),
    "int-division-by-zero": case("E-TYPE", "integer division by zero", (2, 9), X + """
            e = x.shape[0] // 0
        """),
    # --- calls (calls.py)
    "not-callable": case("E-TYPE", "int is not callable", (2, 9), """
        def f(x: int):
            a = 3(4)
        """),
    "tile-outside-kernel": case(
        "E-TYPE", "tile.context is a tile intrinsic; it may only be used inside a @kernel",
        (2, 9), """
        def f(x: int):
            T = tile.context()
        """),
    "decorator-called": case("E-TYPE", "'jit' cannot be called here", (2, 9), """
        def f(x: int):
            b = jit(x)
        """),
    "host-only-in-jit": case(
        "E-TYPE", "'save' runs on the host only; it cannot be used in @jit code", (3, 5), """
        @jit
        def f(x: Tensor["B", f32]):
            save("a.npy", x)
        """),
    "builtin-too-many": case("E-TYPE", "sum() takes 3 positional arguments but 4 were given", (2, 25), X + """
            c = sum(x, 0, True, 1)
        """),
    "builtin-unknown-keyword": case("E-NAME", "sum() has no parameter 'axis2'", (2, 24), X + """
            d = sum(x, axis=0, axis2=1)
        """),
    "builtin-missing": case("E-TYPE", "sum() is missing the argument 'x'", (2, 9), X + """
            e = sum(axis=0)
        """),
    "builtin-twice": case("E-TYPE", "sum() got several values for 'axis'", (2, 19), X + """
            e = sum(x, 0, axis=1)
        """),
    "kernel-calls-jit": case("E-TYPE", "a @kernel cannot call the jit function 'j'", (6, 5), """
        @jit
        def j(x: Tensor["B", f32]) -> Tensor["B", f32]:
            return x
        @kernel
        def f(x: Tensor["B", f32]):
            j(x)
        """),
    "user-too-many": case("E-TYPE", "'g' takes 1 positional argument but 2 were given", (4, 17), """
        def g(a: Tensor["N", f32], *, k: int = 1) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x, 2)
        """),
    "user-unknown-keyword": case("E-NAME", "'g' has no parameter 'q'", (4, 17), """
        def g(a: Tensor["N", f32], *, k: int = 1) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x, q=2)
        """),
    "user-twice": case("E-TYPE", "'g' got several values for 'a'", (4, 17), """
        def g(a: Tensor["N", f32], *, k: int = 1) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x, a=x)
        """),
    "user-missing": case("E-TYPE", "call to 'g' is missing the argument 'a'", (4, 12), """
        def g(a: Tensor["N", f32], *, k: int = 1) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(k=2)
        """),
    "argument-not-tensor": case("E-TYPE", "argument 'a' of 'g' must be a tensor, found int", (4, 14), """
        def g(a: Tensor["N", f32]) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(3)
        """),
    "argument-rank": case("E-SHAPE", "argument 'a' of 'g' has rank 2 but the parameter is Tensor[\"N\", f32]",
                          (4, 14), """
        def g(a: Tensor["N", f32]) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", "D", f32]):
            return g(x)
        """),
    "argument-narrowing": case(
        "E-DTYPE", "argument 'a' of 'g' is f64 but the parameter is f32; narrowing is never "
        "implicit", (4, 14), """
        def g(a: Tensor["N", f32]) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f64]):
            return g(x)
        """, fixit="cast(x, f32)"),
    "argument-scalar-kind": case("E-TYPE", "argument 'k' of 'g' must be int, found float", (4, 19), """
        def g(a: Tensor["N", f32], *, k: int = 1) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x, k=1.5)
        """),
    "argument-str": case("E-TYPE", "argument 's' of 'g' must be str, found int", (4, 14), """
        def g(s: str) -> int:
            return 1
        def f(x: int):
            return g(3)
        """),
    "argument-dims-uninferable": case(
        "E-SHAPE", "cannot infer the dim symbols of 'D//4' in parameter 'a' of 'g'",
        (4, 14), """
        def g(a: Tensor["D//4", f32]) -> Tensor["D//4", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x)
        """),
    "argument-dims-unequal": case(
        "E-SHAPE", "call to 'g': y.shape[0] (C) must equal N = B, as parameter 'b' declares",
        (4, 17), """
        def g(a: Tensor["N", f32], b: Tensor["N", f32]) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32], y: Tensor["C", f32]):
            return g(x, y)
        """),
    "callee-constraint-false": case(
        "E-CONSTRAINT", "call to 'g' violates its constraint `N % 8 == 0` (here `4 == 0`)",
        (4, 12), """
        def g(a: Tensor["N", f32]) -> Tensor["N", f32] where N % 8 == 0:
            return a
        def f(x: Tensor[12, f32]):
            return g(x)
        """),
    # --- builtin rules (builtins.py)
    "builtin-arg-not-tensor": case(
        "E-TYPE", "layernorm: argument 'x' must be a tensor, found str", (2, 19), X + """
            a = layernorm("s", x, x)
        """),
    "static-int": case(
        "E-TYPE", "expand_dims: 'axis' must be an int known at compile time, found int", (2, 24), """
        def f(x: Tensor["B", f32], n: int):
            a = expand_dims(x, n)
        """),
    "static-axes": case(
        "E-TYPE", "sum: 'axis' must be an int or a tuple of ints known at compile time", (2, 21), """
        def f(x: Tensor["B", f32], n: int):
            b = sum(x, axis=(0, n))
        """),
    "shape-arg": case(
        "E-TYPE", "zeros: 'shape' must be a shape (an int or a tuple of ints), found (int, float)",
        (2, 15), """
        def f(n: int):
            d = zeros((2, 1.5))
        """),
    "shape-negative": case("E-SHAPE", "zeros: a dimension cannot be negative (-1)", (2, 15), """
        def f(n: int):
            d = zeros((-1, 2))
        """),
    "dtype-arg": case("E-TYPE", "zeros: 'dtype' must be a dtype such as f32 or bf16, found int", (2, 23), """
        def f(n: int):
            e = zeros((2, 3), 3)
        """),
    "str-arg": case("E-TYPE", "gelu: 'approximate' must be a string literal, found str", (2, 29), """
        def f(x: Tensor["B", f32], s: str):
            g = gelu(x, approximate=s)
        """),
    "str-choice": case(
        "E-TYPE", "gelu: 'approximate' must be one of 'none', 'tanh', found 'fast'", (2, 29), X + """
            g = gelu(x, approximate="fast")
        """),
    "fp8-matmul": case("E-DTYPE", "matmul: fp8 operand 'x' needs an explicit accumulation dtype", (2, 12), """
        def f(x: Tensor["B", "D", fp8_e4m3], w: Tensor["D", "H", fp8_e4m3 @accum(f32)]):
            return x @ w
        """, fixit="fp8_e4m3 @accum(f32)"),
    "fp8-sum": case("E-DTYPE", "sum: fp8 operand 'x' needs an explicit accumulation dtype", (2, 16), """
        def f(x: Tensor["B", fp8_e5m2]):
            return sum(x)
        """, fixit="fp8_e5m2 @accum(f32)"),
    "fp8-einsum": case("E-DTYPE", "einsum: fp8 operand 'x' needs an explicit accumulation dtype", (2, 31), """
        def f(x: Tensor["B", "D", fp8_e4m3]):
            return einsum("bd,bd->b", x, x)
        """, fixit="fp8_e4m3 @accum(f32)"),
    "elementwise-str": case(
        "E-TYPE", "exp: argument 'x' must be a tensor or a number, found str", (2, 13), """
        def f(x: int):
            m = exp("a")
        """),
    "float-only": case("E-DTYPE", "exp: needs a floating-point tensor, found int32", (2, 13), """
        def f(i: Tensor["B", int32]):
            m = exp(i)
        """, fixit="cast(i, f32)"),
    "where-condition": case("E-DTYPE", "where: the condition must be a bool tensor, found int32", (2, 15), """
        def f(x: Tensor["B", f32], i: Tensor["B", int32]):
            w = where(i, x, x)
        """, fixit="i != 0"),
    "full-value": case("E-TYPE", "full: 'value' must be a number, found str", (2, 20), """
        def f(n: int):
            a = full((2,), "a")
        """),
    "arange-n": case("E-TYPE", "arange: 'n' must be a single int", (2, 16), """
        def f(n: int):
            a = arange((2, 3))
        """),
    "random-int-dtype": case("E-DTYPE", "randn: random tensors are floating point, found int32", (2, 21), """
        def f(n: int):
            r = randn((2,), int32)
        """, fixit="f32"),
    "argmax-tuple": case("E-TYPE", "argmax: takes a single axis, not a tuple", (2, 24), X + """
            a = argmax(x, axis=(0, 1))
        """),
    "keepdims": case("E-TYPE", "sum: 'keepdims' must be True or False", (2, 25), X + """
            b = sum(x, keepdims=1)
        """),
    "einsum-ellipsis": case("E-TYPE", "einsum with '...' is not supported yet", (2, 16), X + """
            c = einsum("...i,ij->...j", x, x)
        """),
    "einsum-operand-count": case(
        "E-TYPE", "einsum: the spec names 2 operands but 1 were given", (2, 9), X + """
            d = einsum("ij,jk->ik", x)
        """),
    "einsum-rank": case("E-SHAPE", "einsum: 'ijk' does not match operand x of rank 2", (2, 30), X + """
            e = einsum("ijk,jk->ik", x, x)
        """),
    "einsum-output-axis": case(
        "E-SHAPE", "einsum: output axis 'z' does not appear in any input", (2, 16), X + """
            e = einsum("ij,ij->iz", x, x)
        """),
    "einsum-axis-mismatch": case(
        "E-SHAPE", "einsum 'j': x.shape[1] (D) must equal x.shape[0] (B)", (2, 9), X + """
            e = einsum("ij,jk->ik", x, x)
        """),
    "softmax-int": case("E-DTYPE", "softmax: 'x' must be floating point, found int32", (2, 17), """
        def f(i: Tensor["B", int32]):
            a = softmax(i)
        """, fixit="cast(i, f32)"),
    "layernorm-weight-rank": case(
        "E-SHAPE", "layernorm: 'w' must be 1-D over the last axis of x, found rank 2",
        (2, 22), """
        def f(x: Tensor["B", "D", f32], b: Tensor["D", f32]):
            g = layernorm(x, x, b)
        """),
    "rmsnorm-weight-dim": case("E-SHAPE", "rmsnorm: w.shape[0] (H) must equal x.shape[1] (D)", (2, 9), """
        def f(x: Tensor["B", "D", f32], w: Tensor["H", f32]):
            g = rmsnorm(x, w)
        """),
    "dropout-p": case("E-TYPE", "dropout: 'p' must be in [0, 1), found 1.5", (2, 20), X + """
            k = dropout(x, 1.5)
        """),
    "embedding-table-rank": case(
        "E-SHAPE", "embedding: 'table' must be 2-D (vocab, dim), found rank 1", (2, 19), """
        def f(v: Tensor["V", f32], i: Tensor["B", int32]):
            m = embedding(v, i)
        """),
    "embedding-ids": case("E-DTYPE", "embedding: 'ids' must be an integer tensor, found f32", (2, 22), """
        def f(t: Tensor["V", "D", f32], v: Tensor["B", f32]):
            m = embedding(t, v)
        """, fixit="cast(v, int32)"),
    "one-hot-ids": case("E-DTYPE", "one_hot: 'ids' must be integer class ids, found f32", (2, 17), """
        def f(v: Tensor["B", f32]):
            m = one_hot(v, 10)
        """, fixit="cast(v, int32)"),
    "one-hot-classes": case("E-TYPE", "one_hot: 'n' must be a single int", (2, 20), """
        def f(v: Tensor["B", int32]):
            m = one_hot(v, (10, 2))
        """),
    "cross-entropy-labels": case(
        "E-DTYPE", "cross_entropy: 'labels' must be integer class ids, found f32", (2, 26), """
        def f(x: Tensor["B", "C", f32], v: Tensor["B", f32]):
            n = cross_entropy(x, v)
        """, fixit="cast(v, int32)"),
    "cross-entropy-rank": case(
        "E-SHAPE", "cross_entropy: 'labels' must have rank 1 (logits without the class axis), "
        "found 2", (2, 26), """
        def f(x: Tensor["B", "C", f32], l: Tensor["B", "C", int32]):
            n = cross_entropy(x, l)
        """),
    "cross-entropy-batch": case(
        "E-SHAPE", "cross_entropy: l.shape[0] (N) must equal x.shape[0] (B)", (2, 9), """
        def f(x: Tensor["B", "C", f32], l: Tensor["N", int32]):
            n = cross_entropy(x, l)
        """),
    "attention-rank": case("E-SHAPE", "attention: 'v' must have rank >= 2 (..., seq, dim)", (2, 19), """
        def f(v: Tensor["D", f32], x: Tensor["S", "D", f32]):
            o = attention(v, x, x)
        """),
    "attention-dims": case("E-SHAPE", "attention: q.shape[1] (D) must equal k.shape[1] (E)", (2, 9), """
        def f(q: Tensor["S", "D", f32], k: Tensor["T", "E", f32], v: Tensor["T", "E", f32]):
            o = attention(q, k, v)
        """),
    "attention-causal": case("E-TYPE", "attention: 'causal' must be True or False", (2, 35), """
        def f(q: Tensor["S", "D", f32]):
            o = attention(q, q, q, causal=1)
        """),
    "permute-short": case("E-SHAPE", "permute: axes (0,) are not a permutation of 0..1", (2, 20), X + """
            p = permute(x, (0,))
        """),
    "squeeze-non-one": case("E-SHAPE", "squeeze: x.shape[0] (B) must be 1 to squeeze it", (2, 20), X + """
            q = squeeze(x, 0)
        """),
    "broadcast-to-rank": case("E-SHAPE", "broadcast_to: cannot broadcast rank 2 to rank 1", (2, 9), X + """
            r = broadcast_to(x, (3,))
        """),
    "broadcast-to-dim": case(
        "E-SHAPE", "broadcast_to: x.shape[1] (D) must equal shape.shape[1] (3)", (2, 9), X + """
            r = broadcast_to(x, (x.shape[0], 3))
        """),
    "concat-not-list": case(
        "E-TYPE", "concat: 'xs' must be a non-empty list or tuple of tensors", (2, 16), X + """
            s = concat(x)
        """),
    "concat-rank": case(
        "E-SHAPE", "concat: all tensors must have the same rank; xs[1] has rank 1, xs[0] has rank 2",
        (2, 16), """
        def f(x: Tensor["B", "D", f32], v: Tensor["D", f32]):
            s = concat([x, v])
        """),
    "concat-scalars": case("E-SHAPE", "concat: cannot concatenate rank-0 tensors", (2, 16), """
        def f(n: int):
            s = concat([1.0, 2.0])
        """),
    "concat-dims": case("E-SHAPE", "concat: xs[0].shape[1] (D) must equal xs[1].shape[1] (E)", (2, 9), """
        def f(x: Tensor["B", "D", f32], y: Tensor["B", "E", f32]):
            s = concat([x, y], axis=0)
        """),
    "split-zero": case("E-SHAPE", "split: 'n' must be at least 1, found 0", (2, 18), X + """
            t = split(x, 0)
        """),
    "split-divisible": case("E-SHAPE", "split: x.shape[0] (B) is not provably divisible by 3", (2, 9), X + """
            t = split(x, 3)
        """),
    "range-float": case("E-TYPE", "range: 'start' must be an int, found float", (2, 20), """
        def f(n: int):
            for i in range(1.5):
                pass
        """),
    "int-of-tensor": case("E-TYPE", "int: cannot convert Tensor[\"B\", \"D\", f32] to int", (2, 13), X + """
            w = int(x)
        """),
    "len-of-int": case("E-TYPE", "len: len() of int", (2, 13), """
        def f(n: int):
            u = len(3)
        """),
    "save-path": case("E-TYPE", "save: 'path' must be a string literal, found int", (2, 10), X + """
            save(3, x)
        """),
    # --- shape rules (shapes.py)
    "matmul-inner": case("E-SHAPE", "matmul: x.shape[1] (D) must equal w.shape[0] (K)", (2, 12), """
        def f(x: Tensor["B", "D", f32], w: Tensor["K", "H", f32]):
            return x @ w
        """),
    "broadcast": case(
        "E-SHAPE", "add: x.shape[1] (D) and y.shape[1] (E) do not broadcast: they must be equal or 1",
        (2, 12), """
        def f(x: Tensor["B", "D", f32], y: Tensor["B", "E", f32]):
            return x + y
        """),
    "axis-range": case("E-SHAPE", "sum: axis 5 is out of range for a tensor of rank 2", (2, 24), X + """
            return sum(x, axis=5)
        """),
    "axis-repeated": case("E-SHAPE", "sum: repeated axis in (0, 0)", (2, 21), X + """
            z = sum(x, axis=(0, 0))
        """),
    "matmul-scalar": case("E-SHAPE", "matmul: s is a scalar tensor; matmul needs rank >= 1", (2, 16), """
        def f(x: Tensor["B", f32], s: Tensor[f32]):
            return x @ s
        """),
    "reshape-two-holes": case("E-SHAPE", "reshape: at most one dimension may be -1", (2, 9), X + """
            h = reshape(x, (-1, -1))
        """),
    "reshape-indivisible": case(
        "E-SHAPE", "reshape: B*D elements are not provably divisible by 3", (2, 9), X + """
            h = reshape(x, (3, -1))
        """),
    "reshape-count": case("E-SHAPE", "reshape: cannot reshape B*D elements into 6", (2, 9), X + """
            h = reshape(x, (2, 3))
        """),
    # --- annotations (annotations.py)
    "tensor-bare": case("E-TYPE", "Tensor needs its dims and dtype", (1, 10), """
        def f(x: Tensor):
            pass
        """, fixit='Tensor["N", f32]'),
    "reserved-type": case("E-TYPE", "KVCache is reserved for a later version of Tessera", (1, 10), """
        def f(x: KVCache["B"]):
            pass
        """),
    "not-a-type": case("E-TYPE", "not a type", (1, 10), """
        def f(x: list):
            pass
        """),
    "dtype-not-last": case("E-TYPE", "the dtype comes last in a tensor type", (1, 17), """
        def f(x: Tensor[f32, "B"]):
            pass
        """, fixit="Tensor[dims..., dtype]"),
    "dim-negative": case("E-SHAPE", "a dimension cannot be negative (-1)", (1, 17), """
        def f(x: Tensor[-1, f32]):
            pass
        """),
    "dim-expression": case("E-TYPE", "bad dimension expression 'B+'", (1, 17), """
        def f(x: Tensor["B+", f32]):
            pass
        """),
    "dim-bare-name": case("E-TYPE", "'B' is not a dimension", (1, 17), """
        def f(x: Tensor[B, f32]):
            pass
        """, fixit='"B"'),
    "dim-float": case("E-TYPE", "not a dimension", (1, 17), """
        def f(x: Tensor[1.5, f32]):
            pass
        """),
    "accum-not-dtype": case("E-DTYPE", "not a dtype", (1, 33), """
        def f(x: Tensor["B", f32 @accum(int)]):
            pass
        """),
    "rounding-mode": case("E-DTYPE", "unknown rounding mode 'up'", (1, 27), """
        def f(x: Tensor["B", f32 @round("up")]):
            pass
        """),
    "not-a-policy": case("E-DTYPE", "not a numeric policy", (1, 27), """
        def f(x: Tensor["B", f32 @foo]):
            pass
        """),
    "accum-twice": case("E-DTYPE", "@accum is given twice", (1, 39), """
        def f(x: Tensor["B", f32 @accum(f64) @accum(f64)]):
            pass
        """),
    "accum-narrower": case(
        "E-DTYPE", "accumulation dtype f32 is narrower than the storage dtype f64", (1, 27), """
        def f(x: Tensor["B", f64 @accum(f32)]):
            pass
        """, fixit="f64 @accum(f64)"),
    "rounding-twice": case("E-DTYPE", "a rounding mode is given twice", (1, 49), """
        def f(x: Tensor["B", f32 @round("toward_zero") @stochastic_round]):
            pass
        """),
    # --- where clauses (annotations.py)
    "where-not-comparison": case("E-CONSTRAINT", "a where constraint must be a comparison", (1, 54), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B:
            return x
        """),
    "where-in-tuple": case("E-CONSTRAINT", "`in` takes a range such as 1..=4096", (1, 59), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B in (1, 2):
            return x
        """),
    "where-is": case("E-CONSTRAINT", "'is' is not a constraint operator", (1, 54), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B is 3:
            return x
        """),
    "where-unknown-dim": case("E-CONSTRAINT", "'Q' is not a dim of this signature", (1, 54), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where Q > 3:
            return x
        """),
    "where-division-by-zero": case("E-CONSTRAINT", "only defined by a positive integer constant", (1, 54), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B // 0 == 1:
            return x
        """),
    "where-float": case("E-CONSTRAINT", "constraints are integer expressions over dims", (1, 58), """
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] where B * 1.5 > 3:
            return x
        """),
    # --- decorators (decorators.py)
    "decorator-shape": case("E-SYNTAX", "a decorator is a name or a call", (1, 2), """
        @x[0]
        def f(x: int):
            pass
        """),
    "two-kinds": case("E-TYPE", "'f' cannot be both @jit and @kernel", (2, 2), """
        @jit
        @kernel
        def f(x: int):
            pass
        """),
    "jit-arguments": case("E-TYPE", "@jit takes no arguments", (1, 2), """
        @jit(3)
        def f(x: int):
            pass
        """, fixit="@jit"),
    "effects-bare": case("E-TYPE", "@effects needs the list of effects", (1, 2), """
        @effects
        def f(x: int):
            pass
        """, fixit="@effects()"),
    "effects-unknown": case("E-EFFECT", "unknown effect 'rand'", (1, 10), """
        @effects("rand")
        def f(x: int):
            pass
        """),
    "deterministic-keyword": case("E-NAME", "@deterministic has no parameter 'sed'", (1, 16), """
        @deterministic(sed=3)
        def f(x: int):
            pass
        """),
    "deterministic-seed": case("E-TYPE", "the seed must be an int literal", (1, 21), """
        @deterministic(seed=1.5)
        def f(x: int):
            pass
        """),
    "deterministic-positional": case("E-TYPE", "@deterministic takes only seed=N", (1, 16), """
        @deterministic(3)
        def f(x: int):
            pass
        """),
    "decorator-unknown": case("E-NAME", "unknown decorator '@foo.bar'", (1, 2), """
        @foo.bar
        def f(x: int):
            pass
        """),
    "autotune-bare": case("E-TYPE", "@kernel.autotune needs a search space", (1, 2), """
        @kernel.autotune
        def f(x: int):
            pass
        """, fixit="@kernel.autotune(space=dict(BM=[64, 128]))"),
    "autotune-positional": case("E-TYPE", "@kernel.autotune takes keyword arguments only", (1, 18), """
        @kernel.autotune(dict(a=[1]))
        def f(x: int):
            pass
        """),
    "autotune-keyword": case("E-NAME", "@kernel.autotune has no parameter 'foo'", (1, 37), """
        @kernel.autotune(space=dict(a=[1]), foo=3)
        def f(x: int):
            pass
        """),
    "autotune-no-space": case("E-TYPE", "@kernel.autotune needs space=dict(...)", (1, 2), """
        @kernel.autotune(metric="latency_ms")
        def f(x: int):
            pass
        """),
    "autotune-space-type": case("E-TYPE", "the autotune space must be a non-empty dict of lists", (1, 24), """
        @kernel.autotune(space=3)
        def f(x: int):
            pass
        """),
    "autotune-empty-choices": case(
        "E-TYPE", "the autotune choices for 'a' must be a non-empty list", (1, 24), """
        @kernel.autotune(space=dict(a=[]))
        def f(x: int):
            pass
        """),
    "autotune-choice-type": case(
        "E-TYPE", "autotune choices are int or string literals; 'a' has float", (1, 24), """
        @kernel.autotune(space=dict(a=[1.5]))
        def f(x: int):
            pass
        """),
    "autotune-metric": case(
        "E-TYPE", "the autotune metric must be one of 'latency_ms', 'throughput'", (1, 44), """
        @kernel.autotune(space=dict(a=[1]), metric="speed")
        def f(x: int):
            pass
        """),
    "autotune-budget": case("E-TYPE", "budget_ms must be a number", (1, 47), """
        @kernel.autotune(space=dict(a=[1]), budget_ms="x")
        def f(x: int):
            pass
        """),
    "autotune-cache": case("E-TYPE", "cache must be a path string", (1, 43), """
        @kernel.autotune(space=dict(a=[1]), cache=3)
        def f(x: int):
            pass
        """),
    "schedule-bare": case("E-TYPE", "@kernel.schedule takes one Schedule", (1, 2), """
        @kernel.schedule
        def f(x: int):
            pass
        """, fixit="@kernel.schedule(Schedule(...))"),
    "schedule-type": case("E-TYPE", "@kernel.schedule takes a Schedule, found int", (1, 18), """
        @kernel.schedule(3)
        def f(x: int):
            pass
        """),
    # --- kernels and effect scopes (intrinsics.py)
    "tile-context-attribute": case("E-NAME", "TileContext has no attribute 'q'", (4, 11), """
        @kernel
        def f(x: Tensor["B", f32]):
            T = tile.context()
            a = T.q
        """),
    "tile-member": case("E-NAME", "'tile' has no member 'lod'", (3, 14), """
        @kernel
        def f(x: Tensor["B", f32]):
            a = tile.lod(x)
        """),
    "effect-scope-kind": case("E-EFFECT", "effects.suspend: expected an effect kind", (2, 26), """
        def f(x: int):
            with effects.suspend("foo"):
                pass
        """),
    # --- effects (effects.py)
    "undeclared-effect": case(
        "E-EFFECT", "'f' performs the effect 'io' but its @effects declaration does not list it",
        (3, 5), """
        @effects("random")
        def f(x: Tensor["N", f32]):
            print(x)
        """, fixit='@effects("io", "random")'),
    "nondet-in-deterministic": case(
        "E-EFFECT", "tile.atomic_add() is nondeterministic, which @deterministic function "
        "'f' may not do", (4, 5), """
        @deterministic(seed=0)
        @kernel
        def f(t: Tensor["N", f32]):
            tile.atomic_add(t, 1.0)
        """),
    # --- imports (program.py)
    "import-unknown-module": case("E-IMPORT", "unknown module 'foo.bar'", (1, 1), """
        import foo.bar
        """),
    "import-package": case("E-IMPORT", "cannot find module 'stdlib'", (1, 1), """
        import stdlib
        def f(x: Tensor["B", f32]):
            return stdlib.nn.softmax_safe(x)
        """),
    "import-missing-module-of-package": case("E-IMPORT", "cannot find module 'stdlib.nope'", (1, 24), """
        from stdlib import nn, nope
        def f(x: Tensor["B", f32]):
            return nn.softmax_safe(x) + nope.g(x)
        """),
    "import-missing-stdlib": case("E-IMPORT", "cannot find module 'stdlib.nope'", (1, 1), """
        from stdlib.nope import a
        """),
}


@pytest.mark.parametrize("name", list(CASES))
def test_diagnostic(name: str) -> None:
    c = CASES[name]
    checked = check(c.src)
    find(checked, c.expect)
    assert len(checked.diagnostics) == c.count, shown(checked)
    assert all(d.span.file == "t.tsr" for d in checked.diagnostics)


def test_every_code_has_a_failing_program() -> None:
    covered = {c.expect.code for c in CASES.values()}
    spec_codes = {"E-SYNTAX", "E-NAME", "E-TYPE", "E-SHAPE", "E-DTYPE", "E-EFFECT", "E-CONSTRAINT",
                  "E-IMPORT"}
    assert spec_codes <= covered
    assert covered <= set(CODES)


# Problems that the parser reports before the checker sees them (the checker's own copies of these
# diagnostics cannot be reached from source text), checked through the same entry point.
PARSER_CASES: dict[str, Case] = {
    "duplicate-parameter": case("E-SYNTAX", "duplicate parameter 'x'", (1, 15), """
        def f(x: int, x: int):
            return x
        """),
    "repeated-keyword": case("E-SYNTAX", "keyword argument 'axis' repeated", (2, 27), X + """
            return sum(x, axis=0, axis=1)
        """),
    "subscript-assignment": case("E-SYNTAX", "assignment to subscripts is not supported", (2, 5), X + """
            x[0] = 1
        """),
}


@pytest.mark.parametrize("name", list(PARSER_CASES))
def test_parser_diagnostic_through_check(name: str) -> None:
    c = PARSER_CASES[name]
    checked = check(c.src)
    find(checked, c.expect)
    assert len(checked.diagnostics) == c.count, shown(checked)


# ---------------------------------------------------------------- imports between files


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def test_import_missing_sibling(tmp_path: Path) -> None:
    write(tmp_path, {"main.tsr": "from .layers import block\n"})
    checked = check_file(tmp_path / "main.tsr")
    d = find(checked, Expect("E-IMPORT", "cannot find module '.layers'", (1, 1)))
    assert "layers.tsr" in d.message
    assert len(checked.diagnostics) == 1


def test_import_cycle_between_siblings(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.tsr": "from .b import g\n\ndef f(x: int) -> int:\n    return g(x)\n",
        "b.tsr": "from .a import f\n\ndef g(x: int) -> int:\n    return x\n",
    })
    checked = check_file(tmp_path / "a.tsr")
    d = find(checked, Expect("E-IMPORT", "import cycle: ", (1, 1), file="b.tsr"))
    assert d.message.count("a.tsr") == 2 and d.message.count("b.tsr") == 1
    assert len(checked.diagnostics) == 1


def test_import_of_unreadable_sibling(tmp_path: Path) -> None:
    (tmp_path / "u.tsr").write_bytes(b'def q():\n    return "\xff"\n')
    write(tmp_path, {"main.tsr": "from .u import q\n"})
    checked = check_file(tmp_path / "main.tsr")
    find(checked, Expect("E-IMPORT", "cannot read module 'u'", (1, 1)))


def test_syntax_error_in_a_sibling_is_reported_in_its_file(tmp_path: Path) -> None:
    write(tmp_path, {"bad.tsr": "def q(:\n", "main.tsr": "from .bad import q\n\ndef f():\n    return q()\n"})
    checked = check_file(tmp_path / "main.tsr")
    find(checked, Expect("E-SYNTAX", "expected", (1, 7), file="bad.tsr"))
    assert len(checked.diagnostics) == 1


def test_sibling_module_members_and_types(tmp_path: Path) -> None:
    write(tmp_path, {
        "layers.tsr": 'def block(x: Tensor["B", "D", f32],\n'
                      '          w: Tensor["D", "H", f32]) -> Tensor["B", "H", f32]:\n'
                      "    return x @ w\n",
        "main.tsr": "from . import layers\nfrom .layers import block as blk\n\n"
                    'def f(x: Tensor["N", 8, f32], w: Tensor[8, 2, f32]):\n'
                    "    y = layers.block(x, w)\n    z = blk(x, w)\n    return layers.nothing\n",
    })
    checked = check_file(tmp_path / "main.tsr")
    find(checked, Expect("E-NAME", "module 'layers' has no name 'nothing'", (7, 19)))
    assert len(checked.diagnostics) == 1
    body = function(checked, "f").body
    types = [str(s.targets[0].ty) for s in body[:2]]  # type: ignore[attr-defined]
    assert types == ['Tensor["N", 2, f32]'] * 2


def test_errors_in_an_imported_sibling_name_its_file(tmp_path: Path) -> None:
    write(tmp_path, {"lib.tsr": "def g(x: int) -> int:\n    return x + undefined\n",
                     "main.tsr": "from .lib import g\n\ndef f(x: int) -> int:\n    return g(x) + nothere\n"})
    checked = check_file(tmp_path / "main.tsr")
    find(checked, Expect("E-NAME", "name 'nothere' is not defined", (4, 19), file="main.tsr"))
    find(checked, Expect("E-NAME", "name 'undefined' is not defined", (2, 16), file="lib.tsr"))
    assert Path(checked.diagnostics[0].span.file).name == "main.tsr"  # the checked file's errors come first


def test_failed_sibling_imports_do_not_cascade(tmp_path: Path) -> None:
    write(tmp_path, {"main.tsr": "from . import gone\nfrom .missing import g\nimport stdlib.nn.foo as foo\n\n"
                                 "def f(x: int):\n    return gone.h(x) + g(x) + foo.k(x)\n"})
    checked = check_file(tmp_path / "main.tsr")
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [("E-IMPORT", 1), ("E-IMPORT", 2),
                                                                    ("E-IMPORT", 3)], shown(checked)


def test_modules_of_a_folder_import_by_name() -> None:
    assert returned_type("""
        from stdlib import nn
        from stdlib import nn as layers
        def f(x: Tensor["B", "D", bf16], w: Tensor["D", bf16]):
            return (nn.softmax_safe(x), layers.rmsnorm_safe(x, w))
        """) == '(Tensor["B", "D", bf16], Tensor["B", "D", bf16])'
    d = check("import stdlib\n").diagnostics[0]
    assert d.notes == ("'stdlib' is a folder of modules: import one of them, e.g. `from stdlib import name`",)


def test_check_file_that_cannot_be_read(tmp_path: Path) -> None:
    checked = check_file(tmp_path / "missing.tsr")
    find(checked, Expect("E-IMPORT", "cannot read", (1, 1)))
    (tmp_path / "latin1.tsr").write_bytes(b"# caf\xe9\n")
    checked = check_file(tmp_path / "latin1.tsr")
    find(checked, Expect("E-SYNTAX", "the file is not valid UTF-8", (1, 6)))


# ---------------------------------------------------------------- calls of user functions


def test_callee_symbols_bind_to_the_callers_dims() -> None:
    assert returned_type("""
        def g(a: Tensor["N", "K", f32], b: Tensor["K", "M", f32]) -> Tensor["N", "M", f32]:
            return a @ b
        def f(x: Tensor["B", "D", f32], w: Tensor["D", 4, f32]):
            return g(x, w)
        """) == 'Tensor["B", 4, f32]'


def test_compound_dims_are_solved_at_the_call() -> None:
    g = """
        def g(a: Tensor["S+1", f32], b: Tensor["S", f32]) -> Tensor["S", "2*S", f32]:
            return b[:, None] * concat([b, b])[None, :]
        """
    assert returned_type(g + """
        def f(x: Tensor[129, f32], y: Tensor[128, f32]):
            return g(x, y)
        """) == "Tensor[128, 256, f32]"
    assert returned_type(g + """
        def f(x: Tensor["T", f32], y: Tensor["T-1", f32]):
            return g(x, y)
        """) == 'Tensor["T - 1", "2*T - 2", f32]'
    checked = check(g + """
        def f(x: Tensor[129, f32], y: Tensor[12, f32]):
            return g(x, y)
        """)
    d = find(checked, Expect("E-SHAPE", "call to 'g': y.shape[0] (12) must equal S = 128", (5, 17)))
    assert "S is bound to 128 by x.shape[0]" in d.notes


def test_a_symbol_bound_twice_names_both_dims() -> None:
    checked = check(CASES["argument-dims-unequal"].src)
    d = checked.diagnostics[0]
    assert "y.shape[0] (C)" in d.message and "N = B" in d.message
    assert d.notes == ("N is bound to B by x.shape[0]", "add 'where C == B' or fix the argument")
    assert [(lb.span.line, lb.span.col) for lb in d.labels] == [(1, 5)]


def test_call_with_an_equal_symbol_from_a_where_constraint() -> None:
    assert returned_type("""
        def g(a: Tensor["N", f32], b: Tensor["N", f32]) -> Tensor["N", f32]:
            return a + b
        def f(x: Tensor["B", f32], y: Tensor["C", f32]) where C == B:
            return g(x, y)
        """) == 'Tensor["B", f32]'


@pytest.mark.parametrize(("caller_where", "ok"), [
    ("", True),                 # unproven: a run-time guard
    ("where B % 4 == 0", True),  # still unproven
    ("where B % 16 == 0", True),  # proven
    ("where B == 12", False),     # provably false
    ("where B == 24", True),
])
def test_callee_constraints_at_the_call(caller_where: str, ok: bool) -> None:
    checked = check(f"""
        def g(a: Tensor["N", f32]) -> Tensor["N", f32] where N % 8 == 0:
            return a
        def f(x: Tensor["B", f32]) -> Tensor["B", f32] {caller_where}:
            return g(x)
        """)
    if ok:
        assert checked.ok, shown(checked)
    else:
        d = find(checked, Expect("E-CONSTRAINT", "call to 'g' violates its constraint `N % 8 == 0`", (4, 12)))
        assert [(lb.span.line, lb.message) for lb in d.labels] == [(1, "the constraint is declared here")]


def test_keyword_and_default_arguments() -> None:
    assert returned_type("""
        def g(a: Tensor["N", f32], *, scale: float = 2.0, axis: int = 0) -> Tensor["N", f32]:
            return a * scale
        def f(x: Tensor["B", bf16]):
            return g(x, axis=1) + g(a=x, scale=3)
        """) == 'Tensor["B", f32]'  # bf16 arguments widen implicitly to the f32 parameters


def test_generic_helpers_are_instantiated_per_call() -> None:
    types = returned_type("""
        def double(a):
            return a + a
        def f(x: Tensor["B", "D", bf16], v: Tensor["D", int32]):
            return (double(x), double(v), double(3))
        """)
    assert types == '(Tensor["B", "D", bf16], Tensor["D", int32], int)'


def test_an_error_in_a_generic_helper_labels_the_call() -> None:
    checked = check("""
        def mm(a, b):
            return a @ b
        def f(x: Tensor["B", "D", f32], w: Tensor["D", "H", f32], u: Tensor["K", "H", f32]):
            y = mm(x, w)
            return mm(x, u)
        """)
    d = find(checked, Expect("E-SHAPE", "matmul: a.shape[1] (D) must equal b.shape[0] (K)", (2, 12)))
    last = d.labels[-1]
    assert (last.span.line, last.span.col, last.message) == (5, 12, "instantiated from this call")
    assert len(checked.diagnostics) == 1  # the first call is fine; the helper alone is fine


def test_an_error_independent_of_the_call_is_reported_once_without_a_label() -> None:
    checked = check("""
        def f(x: Tensor["B", f32]):
            return helper(x) + helper(sum(x))
        def helper(a):
            return a + undefined
        """)
    assert len(checked.diagnostics) == 1, shown(checked)
    d = find(checked, Expect("E-NAME", "name 'undefined' is not defined", (4, 16)))
    assert d.labels == ()


def test_stdlib_helpers_keep_the_callers_shapes_and_dtypes() -> None:
    types = returned_type("""
        from stdlib.nn import softmax_safe, layernorm_safe, rmsnorm_safe, cross_entropy, mse, attention, gelu
        import stdlib.nn as nn
        def f(x: Tensor["B", "S", "D", bf16], w: Tensor["D", bf16], l: Tensor["B", "S", int32]):
            return (softmax_safe(x), layernorm_safe(x, w, w), rmsnorm_safe(x, w), cross_entropy(x, l),
                    mse(x, x), attention(x, x, x, causal=True), gelu(x), nn.logsumexp_safe(x, axis=1))
        """)
    t = 'Tensor["B", "S", "D", bf16]'
    assert types == f'({t}, {t}, {t}, Tensor[f32], Tensor[f32], {t}, {t}, Tensor["B", "D", bf16])'


def test_a_callee_with_a_bad_signature_is_not_checked_at_its_calls() -> None:
    checked = check("""
        def g(a: Tensor["N", nodtype]) -> Tensor["N", f32]:
            return a
        def f(x: Tensor["B", f32]):
            return g(x, 1, 2) @ x
        """)
    assert [d.message for d in checked.diagnostics] == ["'nodtype' is not a dimension"], shown(checked)


def test_a_generic_helper_alone_reports_nothing_about_its_unknown_arguments() -> None:
    helper = """
        def g(x: Tensor["N", "M", f32], shape, axis, dt, lo, spec, flag):
            a = reshape(x, shape)
            b = sum(broadcast_to(x, shape), axis=axis)
            c = cast(x[:, lo:], dt) + zeros(shape, dt)
            d = (einsum(spec, x), attention(x, x, x, causal=flag), split(x, axis), (x, x)[axis])
            e = save("out.npy", load(spec))
            return cast(sum(a, axis=axis), dt)
        """
    assert check(helper).ok, shown(check(helper))
    assert returned_type("""
        def g(x, shape, axis, dt):
            return cast(sum(reshape(x, shape), axis=axis), dt)
        def f(x: Tensor["B", "D", f32]) where D % 2 == 0:
            return g(x, (x.shape[0], x.shape[1] // 2, 2), -1, bf16)
        """) == 'Tensor["B", "D//2", bf16]'


def test_a_bad_parameter_type_still_names_its_dims() -> None:
    checked = check("""
        def f(x: Tensor["N", nodtype], y: Tensor["M+", f32]) -> Tensor["N", "M", f32] where N > 2, M % 4 == 0:
            return y
        """)
    assert [d.message.split(":")[0] for d in checked.diagnostics] == [
        "'nodtype' is not a dimension", "bad dimension expression 'M+'"], shown(checked)


# ---------------------------------------------------------------- recovery after errors


def test_independent_errors_in_several_functions_are_all_reported() -> None:
    checked = check("""
        def a(x: Tensor["B", "D", f32], w: Tensor["K", "H", f32]):
            return x @ w

        def b(x: Tensor["B", f32]) -> Tensor["B", f16]:
            return x

        @effects()
        def c(n: int):
            print(n)
            return foo()

        def d(x: Tensor["B", f32]):
            return sum(x, axis=3)
        """)
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [
        ("E-SHAPE", 2), ("E-DTYPE", 5), ("E-EFFECT", 9), ("E-NAME", 10), ("E-SHAPE", 13)], shown(checked)


def test_an_error_does_not_hide_the_next_statement() -> None:
    checked = check("""
        def f(x: Tensor["B", "D", f32], w: Tensor["K", "H", f32]):
            y = x @ w
            z = x + undefined_name
            q: Tensor["B", "D", f16] = x
            return sum(x, axis=5)
        """)
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [
        ("E-SHAPE", 2), ("E-NAME", 3), ("E-DTYPE", 4), ("E-SHAPE", 5)], shown(checked)


def test_a_failed_statement_binds_any_and_causes_no_cascade() -> None:
    checked = check("""
        def f(x: Tensor["B", "D", f32], w: Tensor["K", "H", f32]) -> Tensor["B", "D", f32]:
            y = x @ w
            a, b = y
            z = y @ y @ a
            t: Tensor["B", "D", f32] = z
            t += b
            for i in t:
                pass
            return t[0, 0, 0] + sum(z, axis=9)
        """)
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [("E-SHAPE", 2)], shown(checked)


@pytest.mark.parametrize("header", [
    "if x > 0.0:",                            # a tensor test in @jit code
    "while x > 0.0:",
    "for i, j in 3:",                         # cannot loop over int
    "with x as j, effects.suspend(\"io\"):",  # not a context manager
])
def test_a_bad_compound_statement_header_does_not_hide_its_body(header: str) -> None:
    checked = check(f"""
        @jit
        def f(x: Tensor["B", f32], j: int) -> Tensor["B", f32]:
            y = x
            {header}
                y = x + undefined_name
            return y + j + sum(x, axis=4)
        """)
    # The header's error, the body's, and none from the names the header binds (`j` is `any`).
    assert [(d.code, d.span.line) for d in checked.diagnostics] == [
        ("E-TYPE", 4), ("E-NAME", 5), ("E-SHAPE", 6)], shown(checked)


def test_one_bad_parameter_does_not_hide_another() -> None:
    checked = check("""
        def f(x: Tensor[B, f32], y: Tensor["B", f32 @accum(f16)], z: list) -> Tensor["B", nodtype]:
            return y
        """)
    first_words = [d.message.split(" ")[0] for d in checked.diagnostics]
    assert first_words == ["'B'", "accumulation", "not", "'nodtype'"]


# ---------------------------------------------------------------- shipped programs


SHIPPED = sorted([*(ROOT / "examples").glob("*.tsr"), *(ROOT / "stdlib").glob("**/*.tsr")])


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_programs_check_clean(path: Path) -> None:
    checked = check_file(path)
    assert checked.ok, shown(checked)


def test_there_are_shipped_programs() -> None:
    assert len([p for p in SHIPPED if p.parent.name == "examples"]) >= 5
    assert any(p.name == "nn.tsr" for p in SHIPPED)


def test_clean_helper_reports_nothing() -> None:
    clean("""
        def f(x: Tensor["B", f32]) -> Tensor["B", f32]:
            return x
        """)


# ---------------------------------------------------------------- regressions found by tests/test_fuzz.py


def test_module_name_longer_than_the_file_system_allows() -> None:
    # Path.is_file raised ENAMETOOLONG instead of answering "no such module".
    long = "a" * 300
    checked = check(f"""
        from .{long} import f
        import stdlib.{long}
        """)
    assert [d.code for d in checked.diagnostics] == ["E-IMPORT", "E-IMPORT"], shown(checked)
    assert all("cannot find module" in d.message for d in checked.diagnostics)


def test_nested_not_is_typed_once_per_level() -> None:
    # `not` typed its operand twice: 2**n work for n nested `not`s (30 took minutes).
    checked = check("def f(x: int):\n    return " + "not " * 60 + "x\n")
    assert checked.ok, shown(checked)


@pytest.mark.parametrize("expr", ["2 ** 2 ** 2 ** 2 ** 2 ** 2", "10 ** 10 ** 10", "9 ** 9 ** 9 * 0"])
def test_huge_int_powers_are_not_folded(expr: str) -> None:
    # Folding computed the exact power: the checker hung on a number with billions of digits.
    assert returned_type(f"""
        def f():
            return {expr}
        """) == "int"


def test_small_int_powers_are_still_folded() -> None:
    assert returned_type("""
        def f(x: Tensor["B", f32]) where B == 8:
            return x[0:2 ** 3]
        """) == 'Tensor[8, f32]'


def test_int_beyond_float_range_in_float_arithmetic() -> None:
    # float(10 ** 400) raised OverflowError; the value is unknown, as for a float overflow.
    assert returned_type("""
        def f():
            return (10 ** 400) * 1.0
        """) == "float"
