"""Loading a program: the root file, the stdlib modules and sibling files it imports, transitively.

Each module is parsed once; imports resolve to modules by path. `stdlib.x.y` is `<stdlib>/x/y.tsr`;
`.layers` is `layers.tsr` beside the importing file (each extra leading dot goes one folder up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tessera.diagnostics import CompilationError, Diagnostic, error
from tessera.frontend import ast
from tessera.frontend.parser import parse_module
from tessera.resources import stdlib_dir
from tessera.source import SourceFile, Span


@dataclass
class LoadedModule:
    key: str  # "stdlib.nn" for the stdlib, else the resolved file path
    source: SourceFile
    tree: ast.Module
    # What each import resolved to: the import statement (or, for `from . import a, b`, each name)
    # -> module key.
    resolved: dict[object, str] = field(default_factory=dict)


@dataclass
class Program:
    root: LoadedModule
    modules: dict[str, LoadedModule]

    @property
    def sources(self) -> dict[str, SourceFile]:
        return {m.source.path: m.source for m in self.modules.values()}


def _module_file(module: str, level: int, importer: LoadedModule) -> tuple[str, Path]:
    parts = [p for p in module.split(".") if p]
    if level == 0:
        if not parts or parts[0] != "stdlib":
            raise LookupError(f"unknown module '{module}'; import `stdlib....` or a sibling file with `from .name`")
        key = ".".join(parts)
        return key, stdlib_dir().joinpath(*parts[1:]).with_suffix(".tsr")
    base = Path(importer.source.path).resolve().parent
    for _ in range(level - 1):
        base = base.parent
    path = base.joinpath(*parts).with_suffix(".tsr")
    return str(path), path


def load_program(root: SourceFile) -> tuple[Program | None, list[Diagnostic]]:
    """Parse the root and everything it imports. Import failures are diagnostics; the program is
    still returned when the root itself parsed, so that independent errors are all reported."""
    diags: list[Diagnostic] = []
    try:
        root_mod = LoadedModule(_root_key(root), root, parse_module(root))
    except CompilationError as ex:
        return None, ex.diagnostics
    modules = {root_mod.key: root_mod}
    stack: list[str] = []

    def visit(mod: LoadedModule) -> None:
        stack.append(mod.key)
        for imp in mod.tree.imports:
            targets = _import_targets(imp)
            for node, module, level, span in targets:
                try:
                    key, path = _module_file(module, level, mod)
                except LookupError as ex:
                    diags.append(error("E-IMPORT", str(ex), span).primary)
                    continue
                if key in stack:
                    cycle = " -> ".join([*stack[stack.index(key):], key])
                    diags.append(error("E-IMPORT", f"import cycle: {cycle}", span).primary)
                    continue
                if key not in modules:
                    if not path.is_file():
                        shown = module if level == 0 else "." * level + module
                        diags.append(error("E-IMPORT", f"cannot find module '{shown}' (looked for {path})",
                                           span).primary)
                        continue
                    try:
                        src = SourceFile(str(path), path.read_text(encoding="utf-8"))
                        modules[key] = LoadedModule(key, src, parse_module(src))
                    except (OSError, UnicodeDecodeError) as ex:
                        diags.append(error("E-IMPORT", f"cannot read module '{module}': {ex}", span).primary)
                        continue
                    except CompilationError as ex:
                        diags.extend(ex.diagnostics)
                        continue
                    visit(modules[key])
                mod.resolved[node] = key
        stack.pop()

    visit(root_mod)
    return Program(root_mod, modules), diags


def _import_targets(imp: ast.ImportFrom | ast.Import) -> list[tuple[object, str, int, Span]]:
    if isinstance(imp, ast.Import):
        return [(imp, imp.module, 0, imp.span)]
    if imp.module:
        return [(imp, imp.module, imp.level, imp.span)]
    # `from . import layers`: each name is a sibling module.
    return [(n, n.name, imp.level, n.span) for n in imp.names]


def _root_key(src: SourceFile) -> str:
    p = Path(src.path)
    return str(p.resolve()) if p.is_file() else src.path
