"""FileCheck for IR tests: match printed IR against `CHECK:` / `CHECK-NEXT:` / `CHECK-NOT:` ...
patterns with the `filecheck` package (LLVM FileCheck semantics), in process."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from textwrap import dedent

from filecheck.matcher import Matcher
from filecheck.options import Options


def filecheck(output: str, checks: str) -> None:
    """Assert that `output` matches the FileCheck patterns in `checks` (dedented); on failure the
    assertion message holds FileCheck's report and the output."""
    with tempfile.TemporaryDirectory() as tmp:
        check_file = Path(tmp) / "checks.txt"
        input_file = Path(tmp) / "input.txt"
        check_file.write_text(dedent(checks), encoding="utf-8")
        input_file.write_text(output, encoding="utf-8")
        matcher = Matcher.from_opts(Options(match_filename=str(check_file), input_file=str(input_file)))
        report = io.StringIO()
        matcher.stderr = report
        rc = matcher.run()
    assert rc == 0, f"FileCheck failed:\n{report.getvalue()}\n--- output ---\n{output}"
