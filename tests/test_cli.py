"""Tests of the `tessera` command line (spec §9): exit codes, the JSON and text forms of diagnostics,
usage errors, unreadable input, and internal errors. Most run the click command in process; a few run
the installed `tessera` script, since what users see is a real process's streams and exit status."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tessera.frontend.check
from tessera.cli import EXIT_COMPILE, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tsr"))

# Spec §9: the fields of one JSON diagnostic, and their types.
JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "code": str, "message": str, "file": str, "line": int, "col": int, "end_line": int, "end_col": int,
    "notes": list, "fixit": (str, type(None)),
}

# Three independent mistakes, one per function: a shape error, an unknown name, an undeclared effect.
THREE_ERRORS = """\
@jit
def f(x: Tensor["B", "D", f32], w: Tensor["K", "N", f32]) -> Tensor["B", "N", f32]:
    return x @ w


def g(y):
    return undefined_name + 1


@effects()
def h(x: Tensor["N", f32]):
    print(x)
    return x
"""


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def write(tmp_path: Path, text: str, name: str = "prog.tsr") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def assert_no_traceback(*streams: str) -> None:
    for s in streams:
        assert "Traceback" not in s, s
        assert not re.search(r'File ".*", line \d+', s), s


# ---------------------------------------------------------------- exit codes and outputs


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_clean(example: Path) -> None:
    r = run("check", str(example))
    assert r.exit_code == EXIT_OK, r.stderr
    assert r.stdout == f"{example}: ok\n"
    assert r.stderr == ""


def test_clean_file_in_json_is_an_empty_list() -> None:
    r = run("check", str(EXAMPLES[0]), "--format", "json")
    assert r.exit_code == EXIT_OK
    assert json.loads(r.stdout) == []


def test_compile_errors_exit_1_with_the_text_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_ERRORS)
    r = run("check", path)
    assert r.exit_code == EXIT_COMPILE
    assert r.stdout == ""
    assert r.stderr.rstrip().endswith(f"3 errors in {path}")
    assert "\x1b[" not in r.stderr  # no colour when stderr is not a terminal


def test_json_diagnostics_have_exactly_the_spec_fields(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_ERRORS)
    r = run("check", path, "--format", "json")
    assert r.exit_code == EXIT_COMPILE
    assert r.stderr == ""  # stdout is the JSON document and nothing else
    diags = json.loads(r.stdout)
    assert isinstance(diags, list)
    for d in diags:
        assert set(d) == set(JSON_FIELDS), d
        for name, ty in JSON_FIELDS.items():
            assert isinstance(d[name], ty), (name, d)
        assert all(isinstance(n, str) for n in d["notes"])
        assert d["file"] == path
        assert 1 <= d["line"] <= d["end_line"] and d["col"] >= 1
    # Several independent errors are reported in one run, in source order.
    assert [(d["code"], d["line"]) for d in diags] == [("E-SHAPE", 3), ("E-NAME", 7), ("E-EFFECT", 12)]


def test_json_shape_error_matches_the_spec_example(tmp_path: Path) -> None:
    (d, *_) = json.loads(run("check", write(tmp_path, THREE_ERRORS), "--format", "json").stdout)
    assert d["message"] == "matmul: x.shape[1] (D) must equal w.shape[0] (K)"
    assert (d["line"], d["col"], d["end_line"], d["end_col"]) == (3, 12, 3, 17)  # `x @ w`
    assert "add 'where D == K' or fix the operand" in d["notes"]
    # Secondary labels come first in `notes`, as `file:line:col: message` (docs/language.md §Tools).
    assert any(n.endswith(":3:12: x.shape[1] is D") for n in d["notes"])


def test_json_fixit(tmp_path: Path) -> None:
    diags = json.loads(run("check", write(tmp_path, THREE_ERRORS), "--format", "json").stdout)
    assert diags[2]["fixit"] == '@effects("io")'
    assert diags[1]["fixit"] is None


def _caret_lines(stderr: str, line: int) -> tuple[str, str]:
    """The rendered source line `line` and the caret line under it."""
    lines = stderr.splitlines()
    for i, text in enumerate(lines):
        if re.match(rf"\s*{line} \| ", text):
            return text, lines[i + 1]
    raise AssertionError(f"line {line} is not shown:\n{stderr}")


def test_text_shows_the_source_line_and_carets_under_the_span(tmp_path: Path) -> None:
    r = run("check", write(tmp_path, THREE_ERRORS))
    assert "error[E-SHAPE]: matmul: x.shape[1] (D) must equal w.shape[0] (K)" in r.stderr
    assert f"--> {tmp_path / 'prog.tsr'}:3:12" in r.stderr
    source, carets = _caret_lines(r.stderr, 3)
    assert source.endswith("|     return x @ w")
    # The carets sit under `x @ w`: the same column of the rendered line, and as wide as the span.
    start = source.index("| ") + 2 + 11
    assert source[start:start + 5] == "x @ w"
    assert carets[start:] == "^^^^^"
    assert carets[:start].strip() == "|"
    assert "= note: add 'where D == K' or fix the operand" in r.stderr


def test_text_shows_every_error_and_its_fixit(tmp_path: Path) -> None:
    r = run("check", write(tmp_path, THREE_ERRORS))
    codes = re.findall(r"^error\[(E-[A-Z]+)\]", r.stderr, re.MULTILINE)
    assert codes == ["E-SHAPE", "E-NAME", "E-EFFECT"]
    source, carets = _caret_lines(r.stderr, 7)
    assert carets[source.index("undefined_name"):] == "^" * len("undefined_name")
    assert "= help: try `@effects(\"io\")`" in r.stderr


def test_one_error_is_singular(tmp_path: Path) -> None:
    r = run("check", write(tmp_path, "def f():\n    return nope\n"))
    assert r.exit_code == EXIT_COMPILE
    assert r.stderr.rstrip().endswith("1 error in " + str(tmp_path / "prog.tsr"))


def test_syntax_error_points_at_the_token(tmp_path: Path) -> None:
    r = run("check", write(tmp_path, "def f(x)\n    return x\n"), "--format", "json")
    assert r.exit_code == EXIT_COMPILE
    (d,) = json.loads(r.stdout)
    assert (d["code"], d["line"], d["col"]) == ("E-SYNTAX", 1, 9)
    assert d["message"] == "expected ':' at the end of this line"


def test_error_in_an_imported_file_shows_that_file(tmp_path: Path) -> None:
    # The imported file does not parse: its own line is shown (it is no module of the program, but its
    # source is kept for the diagnostics), and the error is reported once however often it is imported.
    write(tmp_path, "def helper(:\n    pass\n", "broken.tsr")
    path = write(tmp_path, "from .broken import helper\nfrom .broken import helper as h2\n\n\n"
                           "def main():\n    return 1\n")
    r = run("check", path)
    assert r.exit_code == EXIT_COMPILE
    assert r.stderr.count("error[E-SYNTAX]") == 1
    assert f"--> {tmp_path / 'broken.tsr'}:1:12" in r.stderr
    source, carets = _caret_lines(r.stderr, 1)
    assert source.endswith("| def helper(:")
    assert carets.endswith("           ^")


# ---------------------------------------------------------------- usage errors (exit 2)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    r = run("check", str(tmp_path / "nope.tsr"))
    assert r.exit_code == EXIT_USAGE
    assert "Usage: " in r.stderr and "does not exist" in r.stderr
    assert_no_traceback(r.stdout, r.stderr)


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    r = run("check", str(tmp_path))
    assert r.exit_code == EXIT_USAGE
    assert "Usage: " in r.stderr and "is a directory" in r.stderr
    assert_no_traceback(r.stdout, r.stderr)


@pytest.mark.parametrize("args", [
    ["check"],  # no FILE
    ["check", "--format", "xml", "x.tsr"],
    ["check", "--bogus", "x.tsr"],
    ["frobnicate"],
], ids=["no-file", "bad-format", "bad-option", "bad-command"])
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    r = run(*args)
    assert r.exit_code == EXIT_USAGE
    assert "Usage: " in r.stderr
    assert_no_traceback(r.stdout, r.stderr)


def test_help_and_version() -> None:
    assert run("--help").exit_code == 0
    r = run("check", "--help")
    assert r.exit_code == 0 and "--format" in r.stdout
    r = run("--version")
    assert r.exit_code == 0 and "0.1.0" in r.stdout


# ---------------------------------------------------------------- input that is not a program


def test_non_utf8_file_is_a_syntax_error_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsr"
    path.write_bytes('def f():\n    return "caf\xe9"\n'.encode("latin-1"))
    r = run("check", str(path), "--format", "json")
    assert r.exit_code == EXIT_COMPILE
    (d,) = json.loads(r.stdout)
    assert d["code"] == "E-SYNTAX" and "not valid UTF-8" in d["message"]
    assert (d["line"], d["col"]) == (2, 16)
    text = run("check", str(path))
    assert_no_traceback(text.stdout, text.stderr)
    source, carets = _caret_lines(text.stderr, 2)
    assert carets.index("^") == source.index("\N{REPLACEMENT CHARACTER}")


@pytest.mark.parametrize("content", [
    b"", b"\n\n\n", b"\x00\x01\x02", b"\xef\xbb\xbfdef f():\n    pass\n", b"def f(:\n", b"((((((((((" * 50,
    b"def f():\n" + b"    " * 200 + b"pass\n", b"\t\t\x0c\r\r\n", "def f(x): return x\u2028\n".encode(),
], ids=["empty", "blank", "control", "bom", "syntax", "brackets", "indent", "whitespace", "line-separator"])
def test_odd_files_never_show_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.tsr"
    path.write_bytes(content)
    for fmt in ("text", "json"):
        r = run("check", str(path), "--format", fmt)
        assert r.exit_code in (EXIT_OK, EXIT_COMPILE), r.output
        assert_no_traceback(r.stdout, r.stderr)
        if fmt == "json":
            json.loads(r.stdout)


# ---------------------------------------------------------------- internal errors (exit 70)


def _explode(*_args: object, **_kwargs: object) -> object:
    raise RuntimeError("checker exploded\nsecond line of the message")


def test_internal_error_is_one_line_and_exit_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tessera.frontend.check, "check_program", _explode)
    monkeypatch.delenv("TESSERA_DEBUG", raising=False)
    r = run("check", write(tmp_path, "def f():\n    pass\n"))
    assert r.exit_code == EXIT_INTERNAL
    assert r.stderr == "internal compiler error: RuntimeError: checker exploded\n"
    assert r.stdout == ""


def test_internal_error_with_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tessera.frontend.check, "check_program", _explode)
    r = run("check", write(tmp_path, "def f():\n    pass\n"), env={"TESSERA_DEBUG": "1"})
    assert r.exit_code == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in r.stderr
    assert "in _explode" in r.stderr
    assert r.stderr.splitlines()[-1] == "internal compiler error: RuntimeError: checker exploded"


# ---------------------------------------------------------------- the installed script, as a process


def _tessera() -> str:
    # The console script installed beside this interpreter (the README's `.venv/bin/tessera`).
    script = shutil.which("tessera", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail(f"the `tessera` script is not installed beside {sys.executable}; pip install -e .")
    return script


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TESSERA_DEBUG", "NO_COLOR")}
    env.update(extra)
    return env


def _proc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tessera(), *args], check=False, capture_output=True, text=True, env=env or _env(),
                          timeout=60, cwd=ROOT)


def test_process_exit_codes(tmp_path: Path) -> None:
    ok = _proc("check", "examples/mlp.tsr")
    assert (ok.returncode, ok.stdout, ok.stderr) == (EXIT_OK, "examples/mlp.tsr: ok\n", "")
    bad = _proc("check", write(tmp_path, THREE_ERRORS), "--format", "json")
    assert bad.returncode == EXIT_COMPILE
    assert len(json.loads(bad.stdout)) == 3
    usage = _proc("check", str(tmp_path / "missing.tsr"))
    assert usage.returncode == EXIT_USAGE
    assert "does not exist" in usage.stderr
    for p in (ok, bad, usage):
        assert_no_traceback(p.stdout, p.stderr)


def test_process_text_output(tmp_path: Path) -> None:
    p = _proc("check", write(tmp_path, THREE_ERRORS))
    assert p.returncode == EXIT_COMPILE
    assert "\x1b[" not in p.stderr  # piped: no colour codes
    source, carets = _caret_lines(p.stderr, 3)
    assert carets[source.index("x @ w"):] == "^^^^^"


# A process whose checker fails inside: the real entry point, with one function replaced before main().
_CRASHING_MAIN = """\
import sys
import tessera.frontend.check as check
def boom(*args, **kwargs):
    raise KeyError("no such thing")
check.check_program = boom
from tessera.cli import main
sys.argv = ["tessera", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_process_internal_error(tmp_path: Path, debug: bool) -> None:
    path = write(tmp_path, "def f():\n    pass\n")
    env = _env(TESSERA_DEBUG="1") if debug else _env()
    p = subprocess.run([sys.executable, "-c", _CRASHING_MAIN, "check", path], check=False, capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == EXIT_INTERNAL
    assert p.stdout == ""
    last = "internal compiler error: KeyError: 'no such thing'"
    if debug:
        assert "Traceback (most recent call last)" in p.stderr
        assert p.stderr.splitlines()[-1] == last
    else:
        assert p.stderr == last + "\n"
