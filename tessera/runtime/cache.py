"""The compiled-code cache: object code in memory and on disk.

Entries live in `~/.cache/tessera` (or `$TESSERA_CACHE_DIR`), one file per key:

    b"TESSERA-OBJ1\\n" | sha256(payload) (32 bytes) | len(payload) (8 bytes, little endian) | payload

The key is a hash of everything the code depends on (the printed Tile IR, the target triple, CPU
name and features, the compiler version; see `cache_key`). A missing, truncated or corrupt entry is
a miss: it is deleted and rebuilt, never an error. Writes go to a temporary file in the same
directory and are renamed into place, so readers never see a partial entry; an unwritable cache
directory only costs the disk cache.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

MAGIC = b"TESSERA-OBJ1\n"
_HEADER = len(MAGIC) + 32 + 8


def cache_dir() -> Path:
    env = os.environ.get("TESSERA_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tessera"


def cache_key(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        data = p.encode()
        h.update(struct.pack("<Q", len(data)))  # length-prefixed: no two part lists collide
        h.update(data)
    return h.hexdigest()


class CodeCache:
    """Object code by key; `directory=None` uses cache_dir() at each access (so the env var can
    change between uses, e.g. in tests)."""

    def __init__(self, directory: Path | None = None, disk: bool = True) -> None:
        self._directory = directory
        self.disk = disk
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.discarded = 0  # corrupt entries thrown away (tests read it)

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else cache_dir()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.tobj"

    def get(self, key: str) -> bytes | None:
        with self._lock:
            hit = self._memory.get(key)
        if hit is not None or not self.disk:
            return hit
        data = self._read(self.path(key))
        if data is not None:
            with self._lock:
                self._memory[key] = data
        return data

    def _read(self, path: Path) -> bytes | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        payload = self._unpack(raw)
        if payload is None:
            self.discarded += 1
            try:
                path.unlink()
            except OSError:
                pass
        return payload

    @staticmethod
    def _unpack(raw: bytes) -> bytes | None:
        if len(raw) < _HEADER or not raw.startswith(MAGIC):
            return None
        digest = raw[len(MAGIC):len(MAGIC) + 32]
        (n,) = struct.unpack("<Q", raw[len(MAGIC) + 32:_HEADER])
        payload = raw[_HEADER:]
        if len(payload) != n or hashlib.sha256(payload).digest() != digest:
            return None
        return payload

    def put(self, key: str, payload: bytes) -> None:
        with self._lock:
            self._memory[key] = payload
        if not self.disk:
            return
        blob = MAGIC + hashlib.sha256(payload).digest() + struct.pack("<Q", len(payload)) + payload
        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tobj", dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, self.path(key))
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            pass  # a read-only or full disk only loses the disk cache

    def discard(self, key: str) -> None:
        """Drop an entry that turned out unusable (it will be rebuilt)."""
        self.discarded += 1
        with self._lock:
            self._memory.pop(key, None)
        try:
            self.path(key).unlink()
        except OSError:
            pass

    def forget_memory(self) -> None:
        """Drop the in-memory copies (the disk entries stay), as a fresh process would start."""
        with self._lock:
            self._memory.clear()
