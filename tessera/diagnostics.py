"""Diagnostics as data (code, spans, notes, fix-it) and the one place they are rendered.

Every layer of the compiler reports problems by raising or collecting `Diagnostic`s; the CLI,
the REPL and the Python API render them through `render_text` / `render_json` below.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from tessera.source import SourceFile, Span

# The codes of spec §9, plus the ones this compiler adds. One line each: what the code means.
CODES: dict[str, str] = {
    "E-SYNTAX": "the text does not parse, or a construct is not allowed where it stands",
    "E-NAME": "a name, module, attribute or keyword argument that does not resolve",
    "E-TYPE": "a value of the wrong kind (tensor, scalar, string, tuple, function) or a bad call",
    "E-SHAPE": "tensor shapes that are not provably compatible",
    "E-DTYPE": "an element dtype that does not fit: implicit narrowing, missing @accum, bad dtype",
    "E-EFFECT": "an effect performed that the function does not declare or may not perform",
    "E-CONSTRAINT": "a `where` constraint that is malformed or provably false",
    "E-IMPORT": "an import that cannot be resolved or forms a cycle",
    "E-RUNTIME": "a failure while running compiled or host code",
    "E-SCHEDULE": "a kernel schedule that is malformed or does not fit the target's budgets",
    "E-BOUNDS": "an unmasked out-of-bounds tensor access in a kernel (found with TESSERA_DEBUG_BOUNDS=1)",
}


@dataclass(frozen=True)
class Label:
    """A secondary span with a short message, shown under the primary one."""

    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    labels: tuple[Label, ...] = ()
    notes: tuple[str, ...] = ()
    fixit: str | None = None
    severity: str = "error"

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "end_line": self.span.end_line,
            "end_col": self.span.end_col,
            "notes": [*(f"{lb.span}: {lb.message}" for lb in self.labels), *self.notes],
            "fixit": self.fixit,
        }


class CompilationError(Exception):
    """One or more diagnostics that stop compilation. `diagnostics` is never empty."""

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic]):
        diags = [diagnostics] if isinstance(diagnostics, Diagnostic) else list(diagnostics)
        assert diags, "a CompilationError carries at least one diagnostic"
        self.diagnostics: list[Diagnostic] = diags
        super().__init__("; ".join(f"{d.code} {d.span}: {d.message}" for d in diags))

    @property
    def primary(self) -> Diagnostic:
        return self.diagnostics[0]


class TesseraRuntimeError(Exception):
    """A failure while running a program (a guard that does not hold, a bad input file, a failed
    assert): one diagnostic, rendered like compile errors; the CLI exits with code 3."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        self.diagnostics: list[Diagnostic] = [diagnostic]
        super().__init__(f"{diagnostic.code} {diagnostic.span}: {diagnostic.message}")


def runtime_error(code: str, message: str, span: Span, *, labels: Iterable[Label] = (),
                  notes: Iterable[str] = (), fixit: str | None = None) -> TesseraRuntimeError:
    """Build a TesseraRuntimeError; `raise runtime_error(...)` where the run fails."""
    return TesseraRuntimeError(Diagnostic(code, message, span, tuple(labels), tuple(notes), fixit))


def error(
    code: str,
    message: str,
    span: Span,
    *,
    labels: Iterable[Label] = (),
    notes: Iterable[str] = (),
    fixit: str | None = None,
) -> CompilationError:
    """Build a one-diagnostic CompilationError; `raise error(...)` at the point of failure."""
    return CompilationError(Diagnostic(code, message, span, tuple(labels), tuple(notes), fixit))


def render_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diags], indent=2)


def _snippet(span: Span, sources: Mapping[str, SourceFile], style: str) -> list[Text]:
    """The source line of `span` with carets under it, in rustc's layout."""
    src = sources.get(span.file)
    if src is None or span.line > max(1, len(src.text.splitlines())):
        return []
    text = src.line_text(span.line)
    end_col = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, end_col - span.col)
    gutter = " " * len(str(span.line))
    carets = Text(f"  {gutter} | {' ' * (span.col - 1)}")
    carets.append("^" * width, style=style)
    return [Text(f"  {gutter} |"), Text(f"  {span.line} | {text}"), carets]


def render_text(
    diags: Iterable[Diagnostic], sources: Mapping[str, SourceFile], *, color: bool = False
) -> str:
    """Render diagnostics like rustc: header, location, the line with carets, labels, notes, fix-it."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=10_000,
                      highlight=False, soft_wrap=True)
    for d in diags:
        head = Text(f"error[{d.code}]", style="bold red")
        head.append(": ").append(d.message, style="bold")
        console.print(head)
        console.print(Text(f"  --> {d.span}"))
        for line in _snippet(d.span, sources, "bold red"):
            console.print(line)
        for lb in d.labels:
            console.print(Text(f"  --> {lb.span}: {lb.message}", style="blue"))
            for line in _snippet(lb.span, sources, "blue"):
                console.print(line)
        for note in d.notes:
            console.print(Text(f"  = note: {note}"))
        if d.fixit:
            console.print(Text(f"  = help: try `{d.fixit}`"))
        console.print(Text(""))
    return buf.getvalue()
