"""The cubin cache of the CUDA runtime (tessera/runtime/cubin.py), without a GPU: PTX assembled by
ptxas into an ELF cubin once per (PTX, architecture, ptxas version), then served from the checksummed
disk cache (a fresh process - a fresh compiler with an empty memory cache - hits it); corrupt entries
(bad checksum, or a valid entry that is no cubin) are discarded and rebuilt; no ptxas means None (the
runtime hands the PTX to the driver's JIT instead); PTX that ptxas rejects is an error naming the
kernels and quoting ptxas."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpu_checks import needs_ptxas
from tile_kernels import softmax_rows, unary

from tessera.runtime import cubin as cb
from tessera.runtime.cache import CodeCache
from tessera.runtime.cuda import emit_kernels_ptx


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TESSERA_PTXAS", raising=False)
    return tmp_path


def _ptx(arch: str = "sm_90a") -> str:
    return emit_kernels_ptx([softmax_rows(128, False, name="sm_cache"), unary("exp", name="exp_cache")], arch)


def _entries(d: Path) -> list[Path]:
    return sorted(d.glob("*.tobj"))


@needs_ptxas
def test_assembles_once_then_hits_the_disk_cache(cache_dir: Path) -> None:
    ptx = _ptx()
    first = cb.CubinCompiler()
    blob = first.cubin(ptx, "sm_90a", "sm_cache, exp_cache")
    assert blob is not None and blob.startswith(b"\x7fELF")
    assert (first.compiles, first.hits) == (1, 0)
    assert len(_entries(cache_dir)) == 1
    assert first.cubin(ptx, "sm_90a") == blob and first.hits == 1  # in memory
    fresh = cb.CubinCompiler()  # a new process: only the disk
    assert fresh.cubin(ptx, "sm_90a") == blob
    assert (fresh.compiles, fresh.hits) == (0, 1)


@needs_ptxas
def test_the_key_covers_ptx_architecture_and_ptxas_version(cache_dir: Path) -> None:
    c = cb.CubinCompiler()
    c.cubin(_ptx("sm_80"), "sm_80")
    c.cubin(_ptx("sm_80"), "sm_86")  # the same PTX for another GPU: another cubin
    c.cubin(_ptx("sm_90a"), "sm_90a")
    assert c.compiles == 3 and len(_entries(cache_dir)) == 3
    ptxas = cb.ptxas_path()
    assert ptxas is not None
    assert "ptxas" in cb.ptxas_version(ptxas).lower() or "cuda" in cb.ptxas_version(ptxas).lower()
    assert c.key(_ptx("sm_80"), "sm_80", ptxas) != c.key(_ptx("sm_80") + "\n", "sm_80", ptxas)


@needs_ptxas
@pytest.mark.parametrize("damage", ["flip", "truncate", "not_a_cubin"])
def test_corrupt_entries_are_discarded_and_rebuilt(cache_dir: Path, damage: str) -> None:
    ptx = _ptx()
    c = cb.CubinCompiler()
    good = c.cubin(ptx, "sm_90a")
    assert good is not None
    (entry,) = _entries(cache_dir)
    if damage == "flip":
        raw = bytearray(entry.read_bytes())
        raw[-100] ^= 0x40
        entry.write_bytes(bytes(raw))
    elif damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:-7])
    else:  # a well-formed entry (checksum fine) whose payload is no ELF cubin
        key = entry.stem
        entry.unlink()
        CodeCache().put(key, b"this is not a cubin")
    fresh = cb.CubinCompiler()
    assert fresh.cubin(ptx, "sm_90a") == good
    assert (fresh.compiles, fresh.hits) == (1, 0)
    assert fresh.cache.discarded == 1
    assert len(_entries(cache_dir)) == 1
    assert cb.CubinCompiler().cubin(ptx, "sm_90a") == good  # the rebuilt entry is sound


def test_without_ptxas_the_driver_jit_path_is_taken(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_PTXAS", "")
    c = cb.CubinCompiler()
    assert cb.ptxas_path() is None
    assert c.cubin(_ptx(), "sm_90a") is None
    assert _entries(cache_dir) == []


@needs_ptxas
def test_rejected_ptx_is_an_error_naming_the_kernels(cache_dir: Path) -> None:
    bad = _ptx().replace("ret;", "frobnicate.b32 %r1;", 1)
    with pytest.raises(cb.PtxasError, match=r"ptxas -arch=sm_90a rejected the PTX of kernels sm_cache, exp_cache"):
        cb.CubinCompiler().cubin(bad, "sm_90a", "sm_cache, exp_cache")
    assert _entries(cache_dir) == []


def test_a_missing_ptxas_binary_is_a_clear_error(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    cb.ptxas_version.cache_clear()
    monkeypatch.setenv("TESSERA_PTXAS", str(tmp_path / "no-such-ptxas"))
    with pytest.raises(cb.PtxasError, match="cannot run ptxas"):
        cb.CubinCompiler().cubin(_ptx(), "sm_90a")


def test_device_architectures() -> None:
    assert cb.arch_of_device(9, 0) == "sm_90a"
    assert cb.arch_of_device(8, 0) == "sm_80"
    assert cb.arch_of_device(8, 9) == "sm_89"
    assert cb.arch_of_device(10, 0) == "sm_100"
