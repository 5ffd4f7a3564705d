"""Helpers shared by the checker tests: check a dedented `.tsr` source, then read its diagnostics
and the types the checker recorded on the AST."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

from tessera.diagnostics import Diagnostic, render_text
from tessera.frontend import ast
from tessera.frontend.check import Checked, check_text


def check(src: str, path: str = "t.tsr") -> Checked:
    """Check `src` (dedented; a leading newline is dropped so that line 1 is the first code line)."""
    return check_text(dedent(src).lstrip("\n"), path)


def shown(checked: Checked) -> str:
    """The diagnostics as `tessera check` prints them, for assertion messages."""
    return render_text(checked.diagnostics, checked.sources) or "(no diagnostics)"


def clean(src: str, path: str = "t.tsr") -> Checked:
    checked = check(src, path)
    assert checked.ok, shown(checked)
    return checked


def function(checked: Checked, name: str) -> ast.FunctionDef:
    assert checked.result is not None
    return next(fn for fn in checked.result.signatures if fn.name == name)


def statements(body: list[ast.Stmt]) -> Iterator[ast.Stmt]:
    """Every statement of a body, nested blocks included, in source order."""
    for s in body:
        yield s
        for attr in ("body", "orelse"):
            yield from statements(getattr(s, attr, []))


def returned_type(src: str, fn: str = "f") -> str:
    """The type of the value of the last `return` of `fn` in a program that checks clean."""
    checked = clean(src)
    returns = [s for s in statements(function(checked, fn).body) if isinstance(s, ast.Return)]
    assert returns and returns[-1].value is not None
    return str(returns[-1].value.ty)


def assigned_types(src: str, fn: str = "f") -> dict[str, str]:
    """`name -> type` for every `name = value` of `fn` in a program that checks clean."""
    checked = clean(src)
    out: dict[str, str] = {}
    for s in statements(function(checked, fn).body):
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
            out[s.targets[0].id] = str(s.targets[0].ty)
    return out


@dataclass(frozen=True)
class Expect:
    """One expected diagnostic: its code, a key part of its message, the line and column where its
    primary span starts, and its fix-it."""

    code: str
    message: str
    at: tuple[int, int]
    fixit: str | None = None
    file: str | None = None  # the file of the primary span, when it is not the checked one


def find(checked: Checked, want: Expect) -> Diagnostic:
    """The diagnostic that matches `want`'s code and message; asserts its span and fix-it."""
    matches = [d for d in checked.diagnostics if d.code == want.code and want.message in d.message]
    assert matches, f"no {want.code} with {want.message!r} among:\n{shown(checked)}"
    d = matches[0]
    assert (d.span.line, d.span.col) == want.at, shown(checked)
    assert d.fixit == want.fixit, shown(checked)
    if want.file is not None:
        assert Path(d.span.file).name == want.file
    return d
