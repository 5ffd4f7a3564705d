"""`tessera repl`: an interactive session over one growing module.

Definitions (`def`, decorated functions, constants `NAME = expr`, imports) accumulate into the session
module; redefining a name replaces its earlier definition. Anything else is evaluated as the body of a
fresh host function and its value printed. Commands: `:type EXPR` prints the checked type,
`:lower FN STAGE [SYM=INT ...]` prints IR, `:help`, `:quit`. An error is rendered and the session goes
on with the definitions it had. History is kept with `readline` in ~/.tessera_history when the input
is a terminal; piped input works the same, without prompts.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from tessera.diagnostics import CompilationError, TesseraRuntimeError, render_text
from tessera.frontend import ast
from tessera.frontend.check import Checked, check_text
from tessera.runtime import values
from tessera.runtime.dispatch import RunConfig, default_target
from tessera.runtime.host import HostRuntime
from tessera.runtime.stages import StageError, lower

SESSION_PATH = "<repl>"
ENTRY = "_repl_main"
HISTORY = Path("~/.tessera_history")
HELP = """\
definitions:  def f(...): ...   @jit def f(...): ...   NAME = expr   from stdlib.nn import gelu
expressions:  evaluated and printed (statements such as for-loops run as a block)
:type EXPR                      the checked type of EXPR
:lower FN STAGE [SYM=INT ...]   FN's IR at STAGE (graph, schedule, tile, target, llvm)
:help  :quit"""

_DEF = re.compile(r"^(?:@|def\s)")
_DEF_NAME = re.compile(r"^def\s+([A-Za-z_]\w*)", re.MULTILINE)
_CONST = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")
_IMPORT = re.compile(r"^(?:from|import)\s")
_STATEMENT = re.compile(r"^(?:for|while|if|with|assert|pass|return)\b")


class Session:
    """The session module as source text, its checked form and the values of its constants."""

    def __init__(self, *, target: str | None = None, seed: int = 0, out: IO[str] | None = None,
                 err: IO[str] | None = None) -> None:
        self.imports: list[str] = []
        self.defs: dict[str, str] = {}  # name -> source of a function or constant, in definition order
        self.config = RunConfig(target=target or default_target())
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.seed = seed
        self.constants: dict[tuple[str, str], object] = {}

    # -- the module text

    def text(self, extra: str = "") -> str:
        parts = [*self.imports, *self.defs.values()]
        if extra:
            parts.append(extra)
        return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"

    def check(self, extra: str = "") -> Checked:
        return check_text(self.text(extra), SESSION_PATH)

    # -- one input

    def handle(self, source: str) -> None:
        """Run one complete input (a line, or a block) and print what it gives."""
        stripped = source.strip()
        if not stripped:
            return
        if stripped.startswith(":"):
            self.command(stripped)
            return
        if _IMPORT.match(stripped):
            self.define_import(stripped)
        elif _DEF.match(stripped):
            m = _DEF_NAME.search(stripped)
            if m is None:
                self.error("a definition starts with `def NAME(...)` (after its decorators)")
                return
            self.define(m.group(1), source)
        elif _CONST.match(stripped) and not _STATEMENT.match(stripped):
            self.define(_CONST.match(stripped).group(1), stripped)  # type: ignore[union-attr]
        else:
            self.evaluate(source)

    def define_import(self, line: str) -> None:
        self.imports.append(line)
        checked = self.check()
        if not checked.ok:
            self.imports.pop()
            self.render(checked.diagnostics, checked)

    def define(self, name: str, source: str) -> None:
        before = dict(self.defs)
        # A redefinition keeps its place, so that constants defined after it still follow it.
        self.defs[name] = source.rstrip("\n")
        checked = self.check()
        if not checked.ok:
            self.defs = before
            self.render(checked.diagnostics, checked)
            return
        if name in before:
            # Constants defined after it may depend on it: they are evaluated again from the new text.
            later = list(self.defs)[list(self.defs).index(name):]
            self.constants = {k: v for k, v in self.constants.items() if k[0] not in later}
        if _CONST.match(source.strip()):
            self.run(checked, lambda rt: rt.function(name))  # evaluate now, as Python would

    def evaluate(self, source: str) -> None:
        checked = self.check(self.wrap(source))
        if not checked.ok:
            self.render(checked.diagnostics, checked)
            return
        value = self.run(checked, lambda rt: rt.function(ENTRY)())
        if value is not None:
            self.out.write(values.format_value(value, nested=isinstance(value, str)) + "\n")

    def wrap(self, source: str) -> str:
        lines = source.strip("\n").split("\n")
        first = lines[0].strip()
        if len(lines) == 1 and not _STATEMENT.match(first):
            body = f"    return ({first})"
        else:
            indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
            body = "\n".join("    " + x[indent:] for x in lines)
        return f"def {ENTRY}():\n{body}"

    def run(self, checked: Checked, action: Callable[[HostRuntime], object]) -> object:
        assert checked.result is not None
        rt = HostRuntime(checked.result, config=self.config, seed=self.seed, out=self.out,
                         sources=checked.sources)
        rt.rng = self.rng
        root = checked.result.program.root
        ns = rt.namespaces[root.key]
        for c in root.tree.constants:
            key = (c.name, self.defs.get(c.name, ""))
            if key in self.constants:
                ns[c.name] = self.constants[key]
        try:
            return action(rt)
        except TesseraRuntimeError as ex:
            self.render([ex.diagnostic], checked)
        except CompilationError as ex:
            self.render(ex.diagnostics, checked)
        except NotImplementedError as ex:
            self.error(f"not available yet: {ex}")
        finally:
            for c in root.tree.constants:
                v = ns.get(c.name)
                if v is not None and type(v).__name__ != "_Lazy":
                    self.constants[(c.name, self.defs.get(c.name, ""))] = v
        return None

    # -- commands

    def command(self, line: str) -> None:
        cmd, _, rest = line.partition(" ")
        rest = rest.strip()
        if cmd in (":quit", ":q", ":exit"):
            raise EOFError
        if cmd == ":help":
            self.out.write(HELP + "\n")
        elif cmd == ":type":
            self.show_type(rest)
        elif cmd == ":lower":
            self.show_lower(rest.split())
        else:
            self.error(f"unknown command {cmd}; try :help")

    def show_type(self, expr: str) -> None:
        if not expr:
            self.error(":type needs an expression")
            return
        checked = self.check(f"def {ENTRY}():\n    return ({expr})")
        if not checked.ok:
            self.render(checked.diagnostics, checked)
            return
        assert checked.result is not None
        fn = next(f for f in checked.result.program.root.tree.functions if f.name == ENTRY)
        ret = fn.body[0]
        assert isinstance(ret, ast.Return) and ret.value is not None
        self.out.write(f"{ret.value.ty}\n")

    def show_lower(self, words: list[str]) -> None:
        if len(words) < 2:
            self.error("usage: :lower FN STAGE [SYM=INT ...]")
            return
        name, stage, dim_words = words[0], words[1], words[2:]
        dims: dict[str, int] = {}
        for w in dim_words:
            sym, eq, val = w.partition("=")
            if not eq or not sym.isidentifier() or not val.lstrip("-").isdigit():
                self.error(f"expected SYM=INT, found '{w}'")
                return
            dims[sym] = int(val)
        checked = self.check()
        if not checked.ok:
            self.render(checked.diagnostics, checked)
            return
        assert checked.result is not None
        fn = next((f for f in checked.result.program.root.tree.functions if f.name == name), None)
        if fn is None or checked.result.signatures[fn].kind != "jit":
            self.error(f"no @jit function '{name}' in this session")
            return
        try:
            self.out.write(lower(checked.result, fn, stage, dims).rstrip("\n") + "\n")
        except StageError as ex:
            self.error(str(ex))
        except CompilationError as ex:
            self.render(ex.diagnostics, checked)
        except NotImplementedError as ex:
            self.error(f"not available yet: {ex}")

    # -- output

    def render(self, diags: list[Any], checked: Checked) -> None:
        color = self.err.isatty() and "NO_COLOR" not in os.environ
        self.err.write(render_text(diags, checked.sources, color=color))
        self.err.flush()

    def error(self, message: str) -> None:
        self.err.write(f"error: {message}\n")
        self.err.flush()


def read_inputs(read_line: Callable[[str], str], interactive: bool) -> Iterator[str]:
    """Complete inputs: one line, or a block (a line ending in ':' or a decorator, up to a blank line)."""
    while True:
        try:
            line = read_line(">>> " if interactive else "")
        except EOFError:
            return
        if not line.strip():
            continue
        block = [line]
        opens = line.rstrip().endswith(":") or line.lstrip().startswith("@")
        while opens:
            try:
                more = read_line("... " if interactive else "")
            except EOFError:
                break
            if not more.strip():
                break
            block.append(more)
        yield "\n".join(block)


class Repl:
    """The interactive loop around a `Session`."""

    def __init__(self, *, target: str | None = None, seed: int = 0) -> None:
        self.session = Session(target=target, seed=seed)
        self.interactive = sys.stdin.isatty()

    def loop(self) -> None:
        history = self._start_history()
        if self.interactive:
            sys.stdout.write("Tessera REPL — :help for commands, :quit to leave\n")
        try:
            for source in read_inputs(input, self.interactive):
                try:
                    self.session.handle(source)
                except EOFError:
                    break
        except KeyboardInterrupt:
            sys.stdout.write("\n")
        finally:
            if history is not None:
                history()

    def _start_history(self) -> Callable[[], None] | None:
        if not self.interactive:
            return None
        try:
            import readline
        except ImportError:  # some Python builds have no readline; the loop works without history
            return None
        path = HISTORY.expanduser()
        try:
            readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(2000)

        def save() -> None:
            try:
                readline.write_history_file(path)
            except OSError:
                pass

        return save
