"""The front end's entry points: a file or a string in, the checked program and its diagnostics out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tessera.diagnostics import Diagnostic, error
from tessera.frontend.checker import CheckResult, check_program
from tessera.frontend.program import load_program
from tessera.source import SourceFile


@dataclass
class Checked:
    """Everything `tessera check` needs to report: diagnostics, and the sources to show them in."""

    diagnostics: list[Diagnostic]
    sources: dict[str, SourceFile]
    result: CheckResult | None = None
    errors_by_file: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def check_source(source: SourceFile) -> Checked:
    program, diags = load_program(source)
    if program is None:
        return Checked(diags, {source.path: source})
    result = check_program(program)
    all_diags = [*diags, *result.diagnostics]
    all_diags.sort(key=lambda d: (d.span.file != source.path, d.span.file, d.span.line, d.span.col))
    return Checked(all_diags, program.sources, result)


def check_text(text: str, path: str = "<string>") -> Checked:
    return check_source(SourceFile(path, text))


def read_source(path: str | Path) -> SourceFile | Diagnostic:
    """Read a `.tsr` file, or the diagnostic that says why it cannot be read."""
    p = Path(path)
    try:
        return SourceFile(str(p), p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as ex:
        return error("E-SYNTAX", f"the file is not valid UTF-8 (byte {ex.start})",
                     _span0(str(p))).primary
    except OSError as ex:
        return error("E-IMPORT", f"cannot read {p}: {ex.strerror or ex}", _span0(str(p))).primary


def _span0(path: str):
    from tessera.source import Span

    return Span(path, 1, 1, 1, 1)


def check_file(path: str | Path) -> Checked:
    src = read_source(path)
    if isinstance(src, Diagnostic):
        return Checked([src], {})
    return check_source(src)
