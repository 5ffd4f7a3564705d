"""`tessera build` bundles: a program compiled ahead of time, run later by `tessera run BUNDLE` without
recompiling its `@jit` functions.

A bundle is a directory:

    manifest.json            format, versions, target, entry, the specialisations, sha256 of every file
    source/...               the program's own .tsr files (the stdlib ships with the compiler)
    graph/FN-KEY.graph       the specialised, optimised Graph IR of each specialisation (parseable text)
    schedule/FN-KEY.txt      its printed Schedule IR plan (what runs, with every kernel's schedule)
    objects/...              the CPU runtime's compiled code for those graphs: a copy of the entries the
                             compiled-code cache wrote while the bundle was built

Host code (`main()`) is still evaluated from the checked source; each `@jit` call whose specialisation
(extents, dtypes, static arguments) is in the bundle runs the bundled graph with the bundled object
code, found by the CPU runtime's own cache lookup (keyed by IR hash, target and CPU features) in
`objects/`. Every file is checked against its manifest hash when the bundle is opened: a changed or
missing file makes the bundle unusable (a run-time error), never silently rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.frontend.types import TensorType
from tessera.runtime.dispatch import RunConfig, Runnable, SpecKey, make_runnable, static_text
from tessera.runtime.stages import StageError, bind, graph_of, missing_symbols, static_defaults

if TYPE_CHECKING:
    from tessera.frontend.check import Checked

FORMAT = "tessera-bundle"
VERSION = 1
MANIFEST = "manifest.json"
CACHE_ENV = "TESSERA_CACHE_DIR"


class BundleError(Exception):
    """A bundle that cannot be written or used; the message says why in one line."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def cache_dir(path: Path) -> Iterator[None]:
    """Point the CPU runtime's compiled-code cache at `path` for the duration."""
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = old


def _spec_id(fn: str, key: SpecKey) -> str:
    digest = hashlib.sha256(json.dumps(key.to_json(), sort_keys=True).encode()).hexdigest()[:12]
    return f"{fn}-{digest}"


# ---------------------------------------------------------------- writing


def _program_files(checked: Checked, root_file: str) -> tuple[Path, list[Path]]:
    """The program's own source files (not the stdlib) and the folder they are stored relative to."""
    assert checked.result is not None
    files = [Path(m.source.path).resolve() for k, m in checked.result.program.modules.items()
             if not k.startswith("stdlib")]
    base = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path(root_file).resolve().parent
    return base, files


def write_bundle(checked: Checked, root_file: str, out: str | Path, dims: Mapping[str, int],
                 entry: str = "main") -> dict[str, Any]:
    """Compile every `@jit` function of the program whose dim symbols `dims` binds, and write the bundle.
    Returns the manifest."""
    assert checked.result is not None
    result = checked.result
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise BundleError(f"{out} exists and is not a bundle; choose a new directory")
    if out.exists():
        shutil.rmtree(out)
    for sub in ("source", "graph", "schedule", "objects"):
        (out / sub).mkdir(parents=True)

    base, files = _program_files(checked, root_file)
    for f in files:
        dest = out / "source" / f.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    root_rel = Path("source") / Path(checked.result.program.root.source.path).resolve().relative_to(base)

    root_fns = {f.name for f in result.program.root.tree.functions}
    if entry not in root_fns:
        raise BundleError(f"{root_file} has no function '{entry}' to be the bundle's entry")

    specs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for key_mod, mod in result.program.modules.items():
        if key_mod.startswith("stdlib"):
            continue
        for fn in mod.tree.functions:
            sig = result.signatures[fn]
            if sig.kind != "jit":
                continue
            env = {s: v for s, v in bind(sig, {k: v for k, v in dims.items() if k in sig.symbols}).items()
                   if s in sig.symbols}
            dtypes = [p.ty.dtype for p in sig.params if isinstance(p.ty, TensorType)]
            if missing_symbols(sig, env) or any(d is None for d in dtypes):
                skipped.append(fn.name)
                continue
            try:
                static = static_defaults(sig, fn)
            except StageError:
                skipped.append(fn.name)
                continue
            key = SpecKey(tuple(sorted(env.items())), tuple(str(d) for d in dtypes),
                          tuple(sorted((k, static_text(v)) for k, v in static.items())))
            specs.append(_compile_spec(checked, fn, key, static, env, out))
    if not specs:
        hint = f" (not all dim symbols bound for: {', '.join(skipped)})" if skipped else ""
        raise BundleError(f"no @jit function of {root_file} could be compiled with the given --dim extents{hint}")

    from tessera.runtime.cpu_features import host_cpu

    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "tessera": _tessera_version(), "target": "cpu",
        "cpu": host_features_json(host_cpu()), "entry": entry, "source": root_rel.as_posix(),
        "specializations": specs,
    }
    manifest["files"] = {p.relative_to(out).as_posix(): sha256_file(p)
                         for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _compile_spec(checked: Checked, fn: Any, key: SpecKey, static: Mapping[str, object],
                  env: Mapping[str, int], out: Path) -> dict[str, Any]:
    from tessera.ir.graph.ops import Module
    from tessera.ir.graph.printer import print_module
    from tessera.runtime.stages import Lowered, render

    assert checked.result is not None
    graph = graph_of(checked.result, fn, static, env)
    sid = _spec_id(fn.name, key)
    graph_path = Path("graph") / f"{sid}.graph"
    (out / graph_path).write_text(print_module(Module([graph])))
    from tessera.ir.graph_to_schedule import partition

    sched_path = Path("schedule") / f"{sid}.txt"
    (out / sched_path).write_text(render(Lowered(graph, plan=partition(graph)), "schedule"))
    objects = out / "objects"
    before = set(objects.iterdir())
    with cache_dir(objects):
        make_runnable(graph, RunConfig(target="cpu"))  # compiles; the runtime's cache writes the objects
    if not set(objects.iterdir()) - before and not before:
        raise BundleError("the CPU runtime wrote no object code for the bundle (its code cache is off?)")
    return {"function": fn.name, "key": key.to_json(), "graph": graph_path.as_posix(),
            "schedule": sched_path.as_posix()}


def host_features_json(cpu: Any) -> dict[str, object]:
    """What the bundle's object code was compiled for (the runtime's cache key includes it)."""
    return {"triple": cpu.triple, "name": cpu.name, "features": sorted(cpu.features)}


def _tessera_version() -> str:
    from tessera import __version__

    return __version__


# ---------------------------------------------------------------- reading


@dataclass
class Bundle:
    """An opened, verified bundle: where its source is, its entry, and its precompiled specialisations."""

    root: Path
    manifest: dict[str, Any]
    _runnables: dict[tuple[str, SpecKey], Runnable] = field(default_factory=dict)

    @property
    def source_path(self) -> str:
        return str(self.root / self.manifest["source"])

    @property
    def entry(self) -> str:
        return str(self.manifest["entry"])

    def specs(self) -> dict[tuple[str, SpecKey], dict[str, Any]]:
        return {(s["function"], SpecKey.from_json(s["key"])): s for s in self.manifest["specializations"]}

    def lookup(self, fn: str, key: SpecKey) -> Runnable | None:
        """The bundled code of one specialisation, or None when the bundle does not have it."""
        hit = self._runnables.get((fn, key))
        if hit is not None:
            return hit
        spec = self.specs().get((fn, key))
        if spec is None:
            return None
        from tessera.ir.graph.parser import parse_module

        graph = parse_module((self.root / spec["graph"]).read_text()).functions[0]
        objects = self.root / "objects"
        with cache_dir(objects):
            inner = make_runnable(graph, RunConfig(target="cpu"))

        def run_bundled(*arrays: Any) -> list[Any]:
            with cache_dir(objects):
                return inner(*arrays)

        self._runnables[(fn, key)] = run_bundled
        return run_bundled


def open_bundle(path: str | Path) -> Bundle:
    """Open and verify a bundle directory; BundleError says what is wrong with it."""
    root = Path(path)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root} is a directory but not a Tessera bundle (no {MANIFEST}); "
                          "build one with `tessera build FILE -o DIR`")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as ex:
        raise BundleError(f"{mpath} cannot be read: {ex}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a Tessera bundle manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{root} is a version {manifest.get('version')} bundle; this Tessera reads "
                          f"version {VERSION}: build it again")
    for rel, digest in manifest.get("files", {}).items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"the bundle {root} is incomplete: {rel} is missing")
        if sha256_file(p) != digest:
            raise BundleError(f"the bundle {root} is corrupt: {rel} does not match its manifest hash")
    return Bundle(root, manifest)
