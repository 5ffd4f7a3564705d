"""`tessera repl`: definitions accumulate, expressions print their value, `:type` shows the checked type,
`:lower` prints IR, and an error is rendered while the session goes on. Driven through piped stdin."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from tessera.repl import Session, read_inputs


def session() -> tuple[Session, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Session(target="reference", out=out, err=err), out, err


def feed(s: Session, text: str) -> None:
    lines = iter(text.splitlines())

    def read(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    for source in read_inputs(read, interactive=False):
        s.handle(source)


def test_definitions_accumulate_and_expressions_print() -> None:
    s, out, err = session()
    feed(s, """x = ones((2, 3), f32)
def double(v):
    return v * 2.0

double(x).shape
sum(double(x))
"done" + "!"
1 + 2
""")
    assert err.getvalue() == ""
    assert out.getvalue() == "(2, 3)\n12.0\n'done!'\n3\n"


def test_type_of_an_expression() -> None:
    s, out, err = session()
    feed(s, 'w = randn((4, 8), bf16, seed=0)\n:type w @ transpose(w)\n:type w.shape[0] * 2\n:type "s"\n')
    assert err.getvalue() == ""
    assert out.getvalue().splitlines() == ["Tensor[4, 4, f32]", "int", "str"]


def test_an_error_is_rendered_and_the_session_continues() -> None:
    s, out, err = session()
    feed(s, """a = 1
undefined_name + a
def bad(x: Tensor["N", f32]) -> Tensor["N", f32]:
    return x @ x

a + 1
""")
    text = err.getvalue()
    assert "error[E-NAME]: name 'undefined_name' is not defined" in text
    assert "error[E-SHAPE]" in text  # the rejected definition ...
    assert out.getvalue() == "2\n"  # ... and the session still has `a`
    assert "bad" not in s.defs


def test_runtime_errors_are_rendered_too() -> None:
    s, out, err = session()
    feed(s, 'def f(n: int):\n    assert n > 0, "n must be positive"\n    return n\n\nf(0)\nf(3)\n')
    assert "error[E-RUNTIME]: assertion failed: n must be positive" in err.getvalue()
    assert out.getvalue() == "3\n"


def test_redefinition_replaces_and_constants_keep_their_values() -> None:
    s, out, err = session()
    feed(s, "k = randn((3,), f32)\nc = k\nk[0] == c[0]\nk = randn((3,), f32, seed=1)\nc[0] == randn((3,), f32, seed=1)[0]\n")
    assert err.getvalue() == ""
    assert out.getvalue() == "True\nTrue\n"


def test_blocks_run_as_statements() -> None:
    s, out, err = session()
    feed(s, "for i in range(3):\n    print(i * i)\n\n")
    assert err.getvalue() == "" and out.getvalue() == "0\n1\n4\n"


def test_lower_command() -> None:
    s, out, err = session()
    feed(s, '@jit\ndef scale(x: Tensor["N", f32]) -> Tensor["N", f32]:\n    return x * 2.0\n\n'
            ":lower scale graph\n:lower scale graph N=16\n:lower scale schedule\n:lower nothing graph\n")
    text = out.getvalue()
    assert "func @scale(" in text and "tensor<[N], f32>" in text and "tensor<[16], f32>" in text
    assert "needs every dim symbol bound; missing N" in err.getvalue()
    assert "no @jit function 'nothing'" in err.getvalue()


def test_repl_through_piped_stdin(tmp_path: Path) -> None:
    script = 'x = arange(4)\nx * 2\n:type x\nnope\n:quit\nprint("not reached")\n'
    env = {**os.environ, "HOME": str(tmp_path), "TESSERA_TARGET": "reference"}
    p = subprocess.run([sys.executable, "-m", "tessera.cli", "repl"], input=script, capture_output=True, check=False,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[0 2 4 6]\nTensor[4, int64]\n"
    assert "error[E-NAME]: name 'nope' is not defined" in p.stderr and "Traceback" not in p.stderr
