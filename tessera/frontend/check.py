"""The front end's entry points: a file or a string in, the checked program and its diagnostics out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tessera.diagnostics import Diagnostic
from tessera.frontend.checker import CheckResult, check_program
from tessera.frontend.program import load_program
from tessera.source import SourceFile, Span


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
    src, diag = _read(Path(path))
    return diag if diag is not None else src  # type: ignore[return-value]


def check_file(path: str | Path) -> Checked:
    src, diag = _read(Path(path))
    if diag is not None:
        # A file that is not UTF-8 is still shown, decoded with U+FFFD, so the bad line can be seen.
        return Checked([diag], {src.path: src} if src is not None else {})
    assert src is not None
    return check_source(src)


def _read(p: Path) -> tuple[SourceFile | None, Diagnostic | None]:
    """The file's source, or why it cannot be read (with the text to show, when there is one)."""
    try:
        data = p.read_bytes()
    except OSError as ex:
        return None, Diagnostic("E-IMPORT", f"cannot read {p}: {ex.strerror or ex}", Span(str(p), 1, 1, 1, 1))
    try:
        return SourceFile(str(p), data.decode("utf-8")), None
    except UnicodeDecodeError as ex:
        # Point at the first bad byte: its line, and its column in the characters decoded before it.
        line = data.count(b"\n", 0, ex.start) + 1
        line_start = data.rfind(b"\n", 0, ex.start) + 1
        col = len(data[line_start:ex.start].decode("utf-8", "replace")) + 1
        diag = Diagnostic("E-SYNTAX", f"the file is not valid UTF-8: byte 0x{data[ex.start]:02x} at offset "
                          f"{ex.start}", Span(str(p), line, col, line, col + 1),
                          notes=("Tessera source files are UTF-8; re-save the file in that encoding",))
        return SourceFile(str(p), data.decode("utf-8", "replace")), diag
