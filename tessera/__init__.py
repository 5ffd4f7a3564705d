"""Tessera: one language for deep-learning models and tile kernels.

`tessera.load(path)` / `tessera.compile(text)` give a module whose functions take and return NumPy
arrays; see `tessera.api`. They are imported on first use, so that `tessera check` stays light.
"""

from typing import TYPE_CHECKING

from tessera.diagnostics import CompilationError, TesseraRuntimeError

if TYPE_CHECKING:
    from tessera.api import Module, compile, load

__version__ = "0.1.0"

__all__ = ["CompilationError", "Module", "TesseraRuntimeError", "__version__", "compile", "load"]


def __getattr__(name: str) -> object:
    if name in ("load", "compile", "Module"):
        from tessera import api

        return getattr(api, name)
    raise AttributeError(f"module 'tessera' has no attribute '{name}'")
