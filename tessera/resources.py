"""Where the files that ship with the compiler live: the Lark grammar and the `.tsr` stdlib.

In the repository they sit at the top (`grammar/`, `stdlib/`); installed, they are the package data
`tessera._grammar` and `tessera._stdlib` (pyproject.toml maps one onto the other).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path


def _shipped_dir(package: str, repo_dir: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # Running from a checkout without installing (PYTHONPATH=.): the folders are beside the package.
    here = Path(__file__).resolve().parent.parent / repo_dir
    if here.is_dir():
        return here
    raise FileNotFoundError(f"tessera is installed without its {repo_dir}/ files ({package} not found)")


@cache
def grammar_path() -> Path:
    return _shipped_dir("tessera._grammar", "grammar") / "tessera.lark"


@cache
def stdlib_dir() -> Path:
    return _shipped_dir("tessera._stdlib", "stdlib")
