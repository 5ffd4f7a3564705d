"""The `tessera` command line (spec §9). Every user error ends in a rendered diagnostic and an exit
code, never a traceback; an internal failure prints one line and exits 70 (TESSERA_DEBUG=1 shows the
traceback)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tessera.diagnostics import render_json, render_text

if TYPE_CHECKING:
    from tessera.frontend.check import Checked
    from tessera.source import SourceFile

EXIT_OK, EXIT_COMPILE, EXIT_USAGE, EXIT_RUNTIME, EXIT_INTERNAL = 0, 1, 2, 3, 70

F = TypeVar("F", bound=Callable[..., object])


def guarded(fn: F) -> F:
    """Turn an unexpected exception into 'internal compiler error' and exit 70."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BaseException as ex:  # noqa: BLE001 - this is the last line of defence
            if os.environ.get("TESSERA_DEBUG") == "1":
                traceback.print_exc()
            msg = str(ex).splitlines()[0] if str(ex) else ""
            click.echo(f"internal compiler error: {type(ex).__name__}{': ' + msg if msg else ''}", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tessera")
def main() -> None:
    """Tessera: one language for deep-learning models and tile kernels."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: rendered for people; json: a list of diagnostics on stdout")
@guarded
def check(file: str, fmt: str) -> None:
    """Parse and check FILE; exit 0 when clean, 1 on compile errors."""
    from tessera.frontend.check import check_file

    checked = check_file(file)
    if fmt == "json":
        click.echo(render_json(checked.diagnostics))
    elif checked.diagnostics:
        color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        click.echo(render_text(checked.diagnostics, checked.sources, color=color), err=True, nl=False)
        n = len(checked.diagnostics)
        click.echo(f"{n} error{'s' if n != 1 else ''} in {file}", err=True)
    else:
        click.echo(f"{file}: ok")
    sys.exit(EXIT_COMPILE if checked.diagnostics else EXIT_OK)


# ---------------------------------------------------------------- run, lower, build, repl
# Heavy modules (NumPy, the IR stack) are imported inside the commands, so that `tessera check`
# starts as fast as before.


def usage_error(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _color() -> bool:
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ


def _report_compile(checked: Checked, file: str) -> NoReturn:
    click.echo(render_text(checked.diagnostics, checked.sources, color=_color()), err=True, nl=False)
    n = len(checked.diagnostics)
    click.echo(f"{n} error{'s' if n != 1 else ''} in {file}", err=True)
    sys.exit(EXIT_COMPILE)


def _checked_or_exit(file: str) -> Checked:
    from tessera.frontend.check import check_file

    checked = check_file(file)
    if checked.diagnostics or checked.result is None:
        _report_compile(checked, file)
    return checked


def parse_dims(items: tuple[str, ...]) -> dict[str, int]:
    """`--dim SYM=INT` options; a malformed one is a usage error."""
    out: dict[str, int] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            usage_error(f"--dim expects SYM=INT, found '{item}'")
        try:
            n = int(value, 0)
        except ValueError:
            usage_error(f"--dim {name}: '{value}' is not an integer")
        if n < 0:
            usage_error(f"--dim {name}: an extent cannot be negative ({n})")
        if name in out and out[name] != n:
            usage_error(f"--dim {name} is given twice ({out[name]} and {n})")
        out[name] = n
    return out


def _parse_pairs(items: tuple[str, ...], flag: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip().isidentifier() or not value:
            usage_error(f"{flag} expects NAME={what}, found '{item}'")
        out[name.strip()] = value
    return out


def _target(option: str | None) -> str:
    from tessera.runtime.dispatch import TARGETS, UNAVAILABLE_TARGETS, default_target, unavailable_message

    target = option or default_target()
    if target not in TARGETS:
        usage_error(f"unknown target '{target}' (from TESSERA_TARGET); targets: {', '.join(TARGETS)}")
    if target in UNAVAILABLE_TARGETS:
        click.echo(f"error: {unavailable_message(target)}", err=True)
        sys.exit(EXIT_RUNTIME)
    if target == "cuda":
        from tessera.runtime.cuda import available

        why = available()
        if why is not None:
            click.echo(f"error: the cuda target cannot run here: {why}", err=True)
            sys.exit(EXIT_RUNTIME)
    if target == "hip":
        from tessera.runtime.hip import available as hip_available

        why = hip_available()
        if why is not None:
            click.echo(f"error: the hip target cannot run here: {why}", err=True)
            sys.exit(EXIT_RUNTIME)
    return target


def _runtime_failure(ex: BaseException, sources: Mapping[str, SourceFile]) -> NoReturn:
    from tessera.diagnostics import TesseraRuntimeError

    if isinstance(ex, TesseraRuntimeError):
        click.echo(render_text([ex.diagnostic], sources, color=_color()), err=True, nl=False)
    else:
        click.echo(f"error: {ex}", err=True)
    sys.exit(EXIT_RUNTIME)


@main.command()
@click.argument("file", type=click.Path(exists=True))
@click.option("--entry", default=None, help="the function to run (default: main)")
@click.option("--target", type=click.Choice(["cpu", "cuda", "hip", "reference"]), default=None,
              help="where @jit functions run (default: $TESSERA_TARGET or cpu)")
@click.option("--arg", "arg_items", multiple=True, metavar="NAME=PATH.npy",
              help="an argument of the entry from a .npy file (a number or string for a scalar parameter)")
@click.option("--dim", "dim_items", multiple=True, metavar="SYM=INT",
              help="the extent of a dim symbol, for arguments drawn at random")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="write the entry's results to this .npz (out0, out1, ...)")
@click.option("--seed", type=int, default=0, show_default=True,
              help="seed of random arguments and of unseeded random draws in host code")
@click.option("--profile", type=click.Path(dir_okay=False), default=None,
              help="write a Chrome trace (compile and run phases of every @jit call) to this file")
@guarded
def run(file: str, entry: str | None, target: str | None, arg_items: tuple[str, ...],
        dim_items: tuple[str, ...], out: str | None, seed: int, profile: str | None) -> None:
    """Run FILE's main() (or --entry) — FILE may be a bundle from `tessera build`.
    Exit 0 ok, 1 compile error, 2 usage error, 3 run-time error."""
    from tessera.runtime.dispatch import RunConfig, Trace

    precompiled = None
    bundle_entry = None
    if os.path.isdir(file):
        from tessera.bundle import BundleError, open_bundle

        try:
            b = open_bundle(file)
        except BundleError as ex:
            click.echo(f"error: {ex}", err=True)
            sys.exit(EXIT_RUNTIME)
        file, precompiled, bundle_entry = b.source_path, b, b.entry
    checked = _checked_or_exit(file)
    config = RunConfig(target=_target(target), trace=Trace() if profile else None, precompiled=precompiled)
    dims = parse_dims(dim_items)
    pairs = _parse_pairs(arg_items, "--arg", "PATH.npy")
    try:
        results = _run_entry(checked, file, entry or bundle_entry or "main", config, dims, pairs, seed)
        if out is not None:
            from tessera.runtime.values import save_npz

            save_npz(out, _flatten_results(results))
    except Exception as ex:  # noqa: BLE001 - sorted into user errors below; the rest is internal
        _handle_run_error(ex, checked.sources)
    finally:
        if config.trace is not None and profile:
            config.trace.write(profile)
    sys.exit(EXIT_OK)


def _handle_run_error(ex: Exception, sources: Mapping[str, SourceFile]) -> NoReturn:
    from tessera.diagnostics import CompilationError, TesseraRuntimeError

    if isinstance(ex, TesseraRuntimeError):
        _runtime_failure(ex, sources)
    if isinstance(ex, CompilationError):
        click.echo(render_text(ex.diagnostics, sources, color=_color()), err=True, nl=False)
        sys.exit(EXIT_COMPILE)
    if isinstance(ex, NotImplementedError):
        click.echo(f"error: not available yet: {ex}", err=True)
        sys.exit(EXIT_RUNTIME)
    if isinstance(ex, OSError):
        click.echo(f"error: {ex.strerror or ex}{': ' + str(ex.filename) if ex.filename else ''}", err=True)
        sys.exit(EXIT_RUNTIME)
    raise ex


def _run_entry(checked: Checked, file: str, entry: str, config: object, dims: dict[str, int],
               pairs: dict[str, str], seed: int) -> object:
    from tessera.runtime import values
    from tessera.runtime.host import HostRuntime

    assert checked.result is not None
    root = checked.result.program.root.tree
    fns = {f.name: f for f in root.functions}
    if entry not in fns:
        names = ", ".join(fns) or "none"
        usage_error(f"{file} has no function '{entry}' to run (functions: {names}); name one with --entry")
    fn = fns[entry]
    sig = checked.result.signatures[fn]
    if sig.kind == "kernel" and sig.returns is None:
        usage_error(f"'{entry}' is a @kernel launched with an explicit grid; call it from main() as {entry}[grid](...)")
    rt = HostRuntime(checked.result, config=config, seed=seed, sources=checked.sources)  # type: ignore[arg-type]
    args = _entry_arguments(sig, pairs, dims, seed, entry)
    f = rt.function(entry)
    result = rt.call_value(f, [], args, fn.name_span)
    if entry != "main" and result is not None:
        for i, r in enumerate(result if isinstance(result, tuple) else (result,)):
            click.echo(f"out{i} = {values.describe(r)}")
            click.echo(values.format_value(r))
    return result


def _entry_arguments(sig: Any, pairs: dict[str, str], dims: dict[str, int], seed: int,
                     entry: str) -> dict[str, object]:
    """The entry's arguments: --arg files and values, else random tensors of the declared shapes."""
    import numpy as np

    from tessera.diagnostics import runtime_error
    from tessera.dtypes import F32
    from tessera.frontend.types import TensorType
    from tessera.runtime import values
    from tessera.runtime.stages import bind, dim_flags, missing_symbols

    names = [p.name for p in sig.params]
    for k in pairs:
        if k not in names:
            usage_error(f"--arg {k}: '{entry}' has no parameter '{k}' (parameters: {', '.join(names) or 'none'})")
    unknown = sorted(set(dims) - sig.symbols)
    if unknown:
        usage_error(f"--dim {unknown[0]}: '{entry}' has no dim symbol {unknown[0]} "
                    f"(its symbols: {', '.join(sorted(sig.symbols)) or 'none'})")
    args: dict[str, object] = {}
    for p in sig.params:
        if p.name not in pairs or isinstance(p.ty, TensorType):
            continue
        args[p.name] = _scalar_argument(p, pairs[p.name])
    for p in sig.params:
        if isinstance(p.ty, TensorType) and p.name in pairs:
            try:
                args[p.name] = values.load_npy(pairs[p.name])
            except values.BadInputFile as ex:
                raise runtime_error("E-RUNTIME", f"--arg {p.name}: {ex}", p.span) from None
    env = bind(sig, dims)
    rng = np.random.Generator(np.random.PCG64(seed))
    for p in sig.params:
        if p.name in args or p.has_default:
            continue
        if not isinstance(p.ty, TensorType):
            usage_error(f"'{entry}' needs the argument '{p.name}' ({p.ty or 'untyped'}); pass --arg {p.name}=VALUE")
        missing = sorted({s for d in p.ty.dims for s in d.free_symbols} - env.keys())
        if missing:
            missing = [s for s in missing_symbols(sig, env) if s in missing] or missing
            usage_error(f"the random argument '{p.name}' of '{entry}' ({p.ty}) needs the extent of "
                        f"{', '.join(missing)}: pass {dim_flags(missing)} or --arg {p.name}=PATH.npy")
        shape = tuple(d.evaluate(env) for d in p.ty.dims)
        args[p.name] = _random_tensor(rng, shape, p.ty.dtype or F32)
    return args


def _random_tensor(rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    import numpy as np

    from tessera.runtime import values

    if dtype.is_float:
        return values.convert(rng.standard_normal(shape), dtype)
    if dtype.kind == "bool":
        return rng.random(shape) < 0.5
    return values.convert(rng.integers(0, 16, size=shape, dtype=np.int64), dtype)


def _scalar_argument(p: Any, text: str) -> object:
    import ast as pyast

    from tessera.frontend.types import ScalarType, StrType

    if isinstance(p.ty, StrType):
        return text
    try:
        v = pyast.literal_eval(text)
    except (ValueError, SyntaxError):
        if p.ty is None:
            return text
        usage_error(f"--arg {p.name}: '{text}' is not a {p.ty}")
    if isinstance(p.ty, ScalarType):
        ok = {"int": int, "float": (int, float), "bool": bool}[p.ty.kind]
        if not isinstance(v, ok) or (p.ty.kind == "int" and isinstance(v, bool)):
            usage_error(f"--arg {p.name}: '{text}' is not a {p.ty}")
        return float(v) if p.ty.kind == "float" else v
    return v


def _flatten_results(result: object) -> list[Any]:
    """The entry's results as arrays for --out: a tuple gives out0, out1, ...; scalars are rank 0."""
    import numpy as np

    if result is None:
        return []
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    return [np.asarray(r) for r in items if r is not None]


def _jit_functions(checked: Checked, fn_name: str | None, file: str) -> list[Any]:
    assert checked.result is not None
    root = checked.result.program.root.tree
    jits = [f for f in root.functions if checked.result.signatures[f].kind == "jit"]
    if fn_name is None:
        if not jits:
            usage_error(f"{file} has no @jit function to lower")
        return jits
    match = [f for f in root.functions if f.name == fn_name]
    if not match:
        usage_error(f"{file} has no function '{fn_name}' (@jit functions: {', '.join(f.name for f in jits) or 'none'})")
    if checked.result.signatures[match[0]].kind not in ("jit", "kernel"):
        usage_error(f"'{fn_name}' is not a @jit function or a @kernel; only those are lowered")
    return match


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--stage", required=True,
              type=click.Choice(["graph", "schedule", "tile", "target", "llvm", "ptx", "hip"]),
              help="which IR to print")
@click.option("--fn", "fn_name", default=None, help="the @jit function (default: all of them)")
@click.option("--dim", "dim_items", multiple=True, metavar="SYM=INT",
              help="bind a dim symbol (every symbol is needed below the graph stage)")
@guarded
def lower(file: str, stage: str, fn_name: str | None, dim_items: tuple[str, ...]) -> None:
    """Print a @jit function of FILE at one stage of the compiler."""
    from tessera.diagnostics import CompilationError
    from tessera.runtime.stages import UNAVAILABLE_STAGES, StageError, unavailable_stage
    from tessera.runtime.stages import lower as lower_fn

    if stage in UNAVAILABLE_STAGES:
        usage_error(unavailable_stage(stage))
    dims = parse_dims(dim_items)
    checked = _checked_or_exit(file)
    assert checked.result is not None
    texts = []
    for fn in _jit_functions(checked, fn_name, file):
        sig = checked.result.signatures[fn]
        given = {k: v for k, v in dims.items() if k in sig.symbols} if fn_name is None else dims
        try:
            texts.append(lower_fn(checked.result, fn, stage, given))
        except StageError as ex:
            usage_error(str(ex))
        except CompilationError as ex:
            click.echo(render_text(ex.diagnostics, checked.sources, color=_color()), err=True, nl=False)
            sys.exit(EXIT_COMPILE)
        except NotImplementedError as ex:
            click.echo(f"error: not available yet: {ex}", err=True)
            sys.exit(EXIT_USAGE)
    click.echo("\n".join(t.rstrip("\n") for t in texts))


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="the bundle directory to write")
@click.option("--dim", "dim_items", multiple=True, metavar="SYM=INT",
              help="extents to compile the @jit functions for (each function whose symbols are all bound)")
@click.option("--entry", default="main", show_default=True, help="what `tessera run BUNDLE` runs")
@guarded
def build(file: str, out: str, dim_items: tuple[str, ...], entry: str) -> None:
    """Compile FILE ahead of time into a bundle directory (IR, schedules, object code, manifest)."""
    from tessera.bundle import BundleError, write_bundle
    from tessera.diagnostics import CompilationError
    from tessera.runtime.stages import StageError

    dims = parse_dims(dim_items)
    checked = _checked_or_exit(file)
    try:
        manifest = write_bundle(checked, file, out, dims, entry)
    except (StageError, BundleError) as ex:
        usage_error(str(ex))
    except CompilationError as ex:
        click.echo(render_text(ex.diagnostics, checked.sources, color=_color()), err=True, nl=False)
        sys.exit(EXIT_COMPILE)
    except NotImplementedError as ex:
        click.echo(f"error: not available yet: {ex}", err=True)
        sys.exit(EXIT_RUNTIME)
    n = len(manifest["specializations"])
    click.echo(f"{out}: bundle of {file} with {n} compiled specialisation{'s' if n != 1 else ''}")


@main.command()
@click.option("--target", type=click.Choice(["cpu", "cuda", "hip", "reference"]), default=None,
              help="where @jit functions run (default: $TESSERA_TARGET or cpu)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of unseeded random draws")
@guarded
def repl(target: str | None, seed: int) -> None:
    """An interactive session: definitions, expressions, :type EXPR, :lower FN STAGE [SYM=INT ...], :quit."""
    from tessera.repl import Repl

    Repl(target=_target(target), seed=seed).loop()


if __name__ == "__main__":
    main()
