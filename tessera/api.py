"""The Python API (spec §9): `tessera.load(path)` and `tessera.compile(source_text)` return a module whose
attributes are the program's functions — `@jit` ones as `JitFunction`s, undecorated ones running on the
host runtime — taking and returning NumPy arrays (bf16 and fp8 through ml_dtypes).

    m = tessera.load("examples/mlp.tsr")
    y = m.mlp(x, w1, b1, w2)

A program with compile errors raises `tessera.CompilationError`, whose `str()` is the rendered
diagnostics; a failure while running raises `tessera.TesseraRuntimeError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from tessera.diagnostics import CompilationError, Diagnostic, render_text
from tessera.frontend import ast
from tessera.frontend.check import Checked, check_file, check_text
from tessera.runtime.dispatch import RunConfig, Trace, default_target
from tessera.runtime.host import HostRuntime
from tessera.source import SourceFile


class ProgramCompilationError(CompilationError):
    """A CompilationError whose text is the diagnostics rendered as `tessera check` shows them."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, SourceFile]) -> None:
        super().__init__(list(diagnostics))
        self.sources = sources
        self.rendered = render_text(self.diagnostics, sources)

    def __str__(self) -> str:
        return self.rendered


class Module:
    """A loaded program: its root module's functions and constants as attributes."""

    def __init__(self, checked: Checked, runtime: HostRuntime, name: str) -> None:
        self._checked = checked
        self._runtime = runtime
        self._name = name
        root = checked.result.program.root.tree if checked.result is not None else None
        self._names: list[str] = [] if root is None else [
            *(f.name for f in root.functions), *(c.name for c in root.constants)]

    @property
    def checked(self) -> Checked:
        return self._checked

    @property
    def runtime(self) -> HostRuntime:
        return self._runtime

    @property
    def functions(self) -> dict[str, ast.FunctionDef]:
        assert self._checked.result is not None
        return {f.name: f for f in self._checked.result.program.root.tree.functions}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"module '{self._name}' has no function or constant '{name}'")
        return self._runtime.function(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._names})

    def __repr__(self) -> str:
        return f"<tessera module {self._name}: {', '.join(self._names)}>"


def _module(checked: Checked, name: str, target: str | None, seed: int, out: IO[str] | None,
            trace: Trace | None) -> Module:
    if not checked.ok or checked.result is None:
        raise ProgramCompilationError(checked.diagnostics, checked.sources)
    config = RunConfig(target=target or default_target(), trace=trace)
    runtime = HostRuntime(checked.result, config=config, seed=seed, out=out, sources=checked.sources)
    return Module(checked, runtime, name)


def load(path: str | Path, *, target: str | None = None, seed: int = 0, out: IO[str] | None = None,
         trace: Trace | None = None) -> Module:
    """Check the `.tsr` file at `path` and return its module. `target`: cpu (default, or
    $TESSERA_TARGET) or reference; `seed`: the seed of unseeded random draws in host code."""
    return _module(check_file(path), Path(path).stem, target, seed, out, trace)


def compile(source_text: str, *, path: str = "<string>", target: str | None = None, seed: int = 0,
            out: IO[str] | None = None, trace: Trace | None = None) -> Module:
    """Check Tessera source text and return its module (imports of `.name` resolve beside `path`)."""
    return _module(check_text(source_text, path), Path(path).stem or "<string>", target, seed, out, trace)
