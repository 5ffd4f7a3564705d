"""Tests of the packaging: pyproject.toml lists every package of the tree (the list is kept by hand,
because the grammar and the stdlib are mapped into the package from top-level folders), and the wheel
built from it carries the grammar and the stdlib that the compiler reads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# The packages that do not live under tessera/ but are mapped onto it (pyproject's package-dir).
MAPPED = {"tessera._grammar": "grammar", "tessera._stdlib": "stdlib"}


def tree_packages() -> set[str]:
    """Every folder under tessera/ that is a package (has an `__init__.py`), as a dotted name."""
    return {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "tessera").rglob("__init__.py")
            if "__pycache__" not in init.parts}


def test_packages_list_matches_the_tree() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    expected = tree_packages() | set(MAPPED)
    assert sorted(expected - listed) == [], "packages missing from pyproject.toml [tool.setuptools] packages"
    assert sorted(listed - expected) == [], "packages listed in pyproject.toml that are not in the tree"


def test_package_dir_maps_the_shipped_folders() -> None:
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == MAPPED
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert data == {"tessera._grammar": ["*.lark"], "tessera._stdlib": ["*.tsr"]}
    for folder in MAPPED.values():
        # A mapped folder is package data only: an __init__.py there would make setuptools ship it as code.
        assert (ROOT / folder).is_dir() and not (ROOT / folder / "__init__.py").exists()


def _buildable_copy(dest: Path) -> Path:
    """The files a build reads, copied so that the build's `build/` and `*.egg-info` stay out of the
    repository (and so that a concurrent editable install is not disturbed)."""
    src = dest / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tessera", "grammar", "stdlib"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    return src


@pytest.mark.slow
def test_wheel_ships_the_grammar_and_the_stdlib(tmp_path: Path) -> None:
    # Offline and with the installed setuptools (no build isolation, no index): the test extra pins a
    # setuptools that builds wheels by itself.
    src = _buildable_copy(tmp_path)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("tessera-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tessera/_grammar/tessera.lark" in names
    assert "tessera/_stdlib/nn.tsr" in names
    # Every package's modules are in, and the console script is declared.
    for pkg in tree_packages():
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, pkg
    for module in (ROOT / "tessera").rglob("*.py"):
        if "__pycache__" not in module.parts:
            assert module.relative_to(ROOT).as_posix() in names, module
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tessera = tessera.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # Nothing from the repository's other folders leaks in.
    assert not [n for n in names if n.split("/")[0] in ("tests", "examples", "bench", "grammar", "stdlib")]
