"""Cubins for the CUDA runtime: PTX assembled by `ptxas`, cached on disk.

When NVIDIA's assembler is at hand (`$TESSERA_PTXAS`, else `ptxas` on the PATH) the runtime loads
machine code instead of handing PTX to the driver's JIT: `CubinCompiler.cubin(ptx, arch)` runs
`ptxas -arch=ARCH` once per (PTX, architecture, ptxas version) and keeps the result in the
compiled-code cache (tessera/runtime/cache.py: in memory and in `$TESSERA_CACHE_DIR`, checksummed,
written atomically; a corrupt entry is deleted and rebuilt). Without ptxas it returns None and the
runtime loads the PTX itself (`cuModuleLoadData` JIT-compiles it): the same kernels, compiled by
the driver, whose own cache keeps the result. A ptxas that rejects the PTX is an error naming the
kernels and quoting ptxas, never a silent fallback.

`arch_of_device(major, minor)` is the `-arch` of a device: its own `sm_XY` (`sm_90a` on Hopper, whose
PTX targets the `a` features), since a cubin only runs on the architecture it was built for.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from tessera.diagnostics import Diagnostic, TesseraRuntimeError
from tessera.runtime.cache import CodeCache, cache_key
from tessera.source import Span

_SPAN = Span("<ptxas>", 1, 1, 1, 1)


class PtxasError(TesseraRuntimeError):
    """ptxas rejected a module (a compiler bug: the emitter's PTX should always assemble)."""

    def __init__(self, message: str) -> None:
        super().__init__(Diagnostic("E-RUNTIME", message, _SPAN))
        self.message = message


def ptxas_path() -> str | None:
    """The assembler to use: $TESSERA_PTXAS (empty: none), else `ptxas` on the PATH."""
    env = os.environ.get("TESSERA_PTXAS")
    if env is not None:
        return env or None
    return shutil.which("ptxas")


@functools.lru_cache(maxsize=8)
def ptxas_version(path: str) -> str:
    """The last line of `ptxas --version` (part of every cubin's cache key)."""
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as ex:
        raise PtxasError(f"cannot run ptxas ({path}): {ex}") from None
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    if r.returncode != 0 or not lines:
        raise PtxasError(f"'{path} --version' failed: {(r.stderr or r.stdout).strip()[:300]}")
    return lines[-1]


def arch_of_device(major: int, minor: int) -> str:
    return "sm_90a" if (major, minor) == (9, 0) else f"sm_{major}{minor}"


class CubinCompiler:
    """Assembles PTX with ptxas into cached cubins (`hits` and `compiles` count what happened)."""

    def __init__(self, cache: CodeCache | None = None) -> None:
        self.cache = cache if cache is not None else CodeCache()
        self.hits = 0
        self.compiles = 0
        self._lock = threading.Lock()

    def key(self, ptx: str, arch: str, ptxas: str) -> str:
        return cache_key(["tessera-cubin-1", hashlib.sha256(ptx.encode()).hexdigest(), arch, ptxas_version(ptxas)])

    def cubin(self, ptx: str, arch: str, kernels: str = "") -> bytes | None:
        """The cubin of a PTX module for `arch`, or None when no ptxas is available."""
        ptxas = ptxas_path()
        if ptxas is None:
            return None
        key = self.key(ptx, arch, ptxas)
        hit = self.cache.get(key)
        if hit is not None and hit.startswith(b"\x7fELF"):
            with self._lock:
                self.hits += 1
            return hit
        if hit is not None:  # passes its checksum but is no cubin: rebuild it
            self.cache.discard(key)
        blob = self._assemble(ptxas, ptx, arch, kernels)
        with self._lock:
            self.compiles += 1
        self.cache.put(key, blob)
        return blob

    def discard(self, ptx: str, arch: str) -> None:
        """Drop a cached cubin the driver refused to load (it will be assembled again)."""
        ptxas = ptxas_path()
        if ptxas is not None:
            self.cache.discard(self.key(ptx, arch, ptxas))

    @staticmethod
    def _assemble(ptxas: str, ptx: str, arch: str, kernels: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="tessera-ptxas-") as tmp:
            src, out = Path(tmp) / "module.ptx", Path(tmp) / "module.cubin"
            src.write_text(ptx)
            try:
                r = subprocess.run([ptxas, f"-arch={arch}", str(src), "-o", str(out)], capture_output=True, text=True,
                                   timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as ex:
                raise PtxasError(f"ptxas -arch={arch} could not run (kernels {kernels or '?'}): {ex}") from None
            if r.returncode != 0:
                msg = (r.stderr or r.stdout).strip().splitlines()
                raise PtxasError(f"ptxas -arch={arch} rejected the PTX of kernels {kernels or '?'}: "
                                 + " | ".join(msg[:5]) + " (TESSERA_PTXAS= leaves the PTX to the driver's JIT)")
            return out.read_bytes()


@functools.cache
def default_compiler() -> CubinCompiler:
    return CubinCompiler()
