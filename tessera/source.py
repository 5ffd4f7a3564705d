"""Source files and spans: where every AST node, IR op and diagnostic points back to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """A half-open region of one source file; lines and columns are 1-based, end_col exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: Span) -> Span:
        """The smallest span covering self and other (same file)."""
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(self.file, start[0], start[1], end[0], end[1])

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_SPAN = Span("<unknown>", 1, 1, 1, 1)


@dataclass(frozen=True)
class SourceFile:
    """The text of one `.tsr` file, kept so diagnostics can show the offending line."""

    path: str
    text: str

    @classmethod
    def read(cls, path: str | Path) -> SourceFile:
        p = Path(path)
        return cls(str(p), p.read_text(encoding="utf-8"))

    def line_text(self, line: int) -> str:
        # Lines end at "\n" only, as the lexer counts them (splitlines would also split on form feeds).
        lines = self.text.split("\n")
        return lines[line - 1].rstrip("\r") if 1 <= line <= len(lines) else ""
