"""The `tessera` command line (spec §9). Every user error ends in a rendered diagnostic and an exit
code, never a traceback; an internal failure prints one line and exits 70 (TESSERA_DEBUG=1 shows the
traceback)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import click

from tessera.diagnostics import render_json, render_text

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


if __name__ == "__main__":
    main()
