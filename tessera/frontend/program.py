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
    # Imported files that did not parse: not modules, but their syntax errors point into them.
    unparsed: dict[str, SourceFile] = field(default_factory=dict)

    @property
    def sources(self) -> dict[str, SourceFile]:
        return {**self.unparsed, **{m.source.path: m.source for m in self.modules.values()}}


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
    unparsed: dict[str, SourceFile] = {}
    failed: set[str] = set()  # keys of imported files that did not parse: reported once
    stack: list[str] = []

    def visit(mod: LoadedModule) -> None:
        stack.append(mod.key)
        for imp in mod.tree.imports:
            targets = _import_targets(imp, mod)
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
                if key in failed:
                    continue
                if key not in modules:
                    if not _is_file(path):
                        shown = module if level == 0 else "." * level + module
                        folder = _is_dir(path.with_suffix(""))
                        notes = [(f"'{shown}' is a folder of modules: import one of them, e.g. "
                                  f"`from {shown} import name`")]
                        diags.append(error("E-IMPORT", f"cannot find module '{shown}' (looked for {path})",
                                           span, notes=notes if folder else []).primary)
                        continue
                    try:
                        src = SourceFile(str(path), path.read_text(encoding="utf-8"))
                        modules[key] = LoadedModule(key, src, parse_module(src))
                    except (OSError, UnicodeDecodeError) as ex:
                        diags.append(error("E-IMPORT", f"cannot read module '{module}': {ex}", span).primary)
                        continue
                    except CompilationError as ex:
                        unparsed[src.path] = src
                        failed.add(key)
                        diags.extend(ex.diagnostics)
                        continue
                    visit(modules[key])
                mod.resolved[node] = key
        stack.pop()

    visit(root_mod)
    return Program(root_mod, modules, unparsed), diags


def _import_targets(imp: ast.ImportFrom | ast.Import,
                    importer: LoadedModule) -> list[tuple[object, str, int, Span]]:
    if isinstance(imp, ast.Import):
        return [(imp, imp.module, 0, imp.span)]
    if imp.module and not _is_package(imp.module, imp.level, importer):
        return [(imp, imp.module, imp.level, imp.span)]
    # `from . import layers`, `from stdlib import nn`: each name is a module of the folder.
    prefix = f"{imp.module}." if imp.module else ""
    return [(n, prefix + n.name, imp.level, n.span) for n in imp.names]


def _is_package(module: str, level: int, importer: LoadedModule) -> bool:
    """Whether `module` names a folder of modules (`stdlib`) rather than a `.tsr` file."""
    try:
        _, path = _module_file(module, level, importer)
    except LookupError:
        return False
    return not _is_file(path) and _is_dir(path.with_suffix(""))


def _root_key(src: SourceFile) -> str:
    p = Path(src.path)
    return str(p.resolve()) if _is_file(p) else src.path


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    # Path.is_file raises for some invalid names (ENAMETOOLONG, EACCES on a folder on the way); a
    # module name the file system cannot hold is a module that is not there.
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
