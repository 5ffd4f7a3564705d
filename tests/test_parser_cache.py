"""Tests of the parser's on-disk table cache (tessera/frontend/parser.py): it is only a speed-up, so a
cache file that is truncated, damaged, half written or in the way is discarded and rebuilt, and the
next process parses exactly as if there had been no cache.

Each case runs real, fresh processes: the cache is read once per process, at the first parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tessera.frontend import parser

ROOT = Path(__file__).resolve().parent.parent

# Parses and checks every example, and one text with a syntax error, and prints what it saw.
_PROBE = """\
import json, sys
from pathlib import Path
from tessera.frontend.check import check_text
root = Path(sys.argv[1])
clean = {p.name: check_text(p.read_text(encoding="utf-8"), str(p)).ok for p in sorted(root.glob("examples/*.tsr"))}
bad = [(d.code, d.message, d.span.line, d.span.col) for d in check_text("def f(x)\\n    return x\\n").diagnostics]
print(json.dumps({"clean": clean, "bad": bad}))
"""

EXPECTED_BAD = [["E-SYNTAX", "expected ':' at the end of this line", 1, 9]]


def probe(cache_home: Path) -> dict[str, object]:
    """Run the probe in a fresh process whose cache lives under `cache_home`; it must succeed quietly."""
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_NO_PARSER_CACHE"}
    env["XDG_CACHE_HOME"] = str(cache_home)
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT)], check=False, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warning, no logged traceback
    result = json.loads(proc.stdout)
    assert result["clean"] and all(result["clean"].values()), result
    assert result["bad"] == EXPECTED_BAD
    return result


def cache_file(cache_home: Path) -> Path:
    (path,) = (cache_home / "tessera").glob("parser-*.lark-cache")
    return path


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a cache written by a fresh process."""
    home = tmp_path_factory.mktemp("cache")
    probe(home)
    return cache_file(home).read_bytes()


def test_cache_is_written_then_reused(tmp_path: Path) -> None:
    probe(tmp_path)
    path = cache_file(tmp_path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    probe(tmp_path)
    # A hit does not rewrite the file.
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert not list((tmp_path / "tessera").glob("*.tmp"))  # the atomic write left nothing behind


def _key() -> bytes:
    return parser._cache_key(parser.grammar_path().read_text(encoding="utf-8"))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "truncated-half": lambda good: good[: len(good) // 2],
    "truncated-last-byte": lambda good: good[:-1],
    "key-only": lambda good: good.split(b"\n", 1)[0] + b"\n",
    "garbage": lambda good: bytes((i * 131 + 17) % 256 for i in range(len(good))),
    "garbage-after-key": lambda good: good.split(b"\n", 1)[0] + b"\n" + os.urandom(4096),
    "flipped-byte-in-payload": lambda good: _flip(good, len(good) * 2 // 3),
    "flipped-byte-in-digest": lambda good: _flip(good, good.index(b"\n") + 5),
    "appended-bytes": lambda good: good + b"\x00junk",
    "other-key": lambda good: b"0" * 64 + good[64:],
    "a-pickle-of-something-else": lambda good: b"%s\n" % good.split(b"\n", 1)[0] + b"\x80\x04K\x01.",
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corrupt_cache_is_discarded_and_rebuilt(tmp_path: Path, good_cache: bytes,
                                                corrupt: Callable[[bytes], bytes]) -> None:
    folder = tmp_path / "tessera"
    folder.mkdir()
    path = folder / f"parser-v{parser._CACHE_FORMAT}.lark-cache"
    path.write_bytes(corrupt(good_cache))
    probe(tmp_path)
    # The damaged file was replaced by a good one, which the next process can use as it is.
    key = _key()
    assert path.read_bytes().startswith(key + b"\n")
    assert parser._load_cached(path, key, parser._Layout(), parser._Builder()) is not None


def test_a_folder_in_place_of_the_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "tessera" / f"parser-v{parser._CACHE_FORMAT}.lark-cache"
    path.mkdir(parents=True)
    probe(tmp_path)  # cannot read it, cannot replace it: parses without a cache
    assert path.is_dir()
    assert not list((tmp_path / "tessera").glob("*.tmp"))


def test_cache_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "not-a-folder"
    home.write_text("x")
    probe(home)


def test_every_damaged_byte_is_a_miss(tmp_path: Path, good_cache: bytes) -> None:
    # In process, on the loader alone: a change anywhere in the file is caught before unpickling.
    key = good_cache.split(b"\n", 1)[0]
    assert key == _key()
    layout, builder = parser._Layout(), parser._Builder()
    path = tmp_path / "cache.bin"
    for at in range(0, len(good_cache), max(1, len(good_cache) // 97)):
        path.write_bytes(_flip(good_cache, at))
        assert parser._load_cached(path, key, layout, builder) is None, at
    path.write_bytes(good_cache)
    assert parser._load_cached(path, key, layout, builder) is not None
