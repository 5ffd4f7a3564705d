"""The Tessera parser: `.tsr` text to the AST of `tessera.frontend.ast`, or E-SYNTAX diagnostics.

One Lark LALR parser (grammar in `grammar/tessera.lark`) is built per process. Three pieces cooperate:

- `_Layout`, a postlexer, turns raw line breaks into NEWLINE / INDENT / DEDENT (Python's rules, with
  clear errors for bad indentation), ignores breaks inside brackets, and handles the def header: the
  name `where` after the parameter list becomes the WHERE keyword, and a line break inside the header
  is dropped when the next line starts (or continues) a where clause.
- `_Builder`, the LALR parser's inline transformer, builds AST nodes with spans as rules reduce (one
  pass, no parse tree). Constructs the language excludes are parsed and reported here, collected so
  that several independent mistakes show up in one `CompilationError`.
- `_syntax_error` maps Lark's exceptions to readable messages ("expected ':', found 'return'").

Entry points: `parse_module`, `parse_statements` (REPL input), `parse_expression` (REPL / `:type`).
"""

from __future__ import annotations

import ast as pyast
import contextlib
import hashlib
import io
import os
import pickle
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer
from lark import __version__ as lark_version
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lark import PostLex
from lark.lexer import PatternStr

from tessera.diagnostics import CompilationError, Diagnostic, Label
from tessera.frontend import ast
from tessera.resources import grammar_path
from tessera.source import SourceFile, Span

__all__ = ["parse_expression", "parse_module", "parse_statements"]

_TOP_LEVEL_MESSAGE = (
    "top-level statements are not allowed; programs do their work in functions (e.g. `def main():`)"
)


# ---------------------------------------------------------------- public API


def parse_module(source: SourceFile) -> ast.Module:
    """Parse a whole `.tsr` file: imports, constants and function definitions only."""
    text = _normalise(source.text)
    body, errors = _run(text, "file_input", source.path)
    items: list[ast.Stmt] = []
    for stmt in body:
        item = _module_item(stmt, errors)
        if item is not None:
            items.append(item)
    _check_depth(items, errors)
    if errors:
        raise CompilationError(_sorted(errors))
    return ast.Module(_whole_text_span(text, source.path), source.path, items)


def parse_statements(source: SourceFile | str, file: str = "<input>") -> list[ast.Stmt]:
    """Parse REPL input: any statements, function definitions included, with no top-level rules."""
    if isinstance(source, SourceFile):
        text, file = source.text, source.path
    else:
        text = source
    body, errors = _run(_normalise(text), "file_input", file)
    _check_depth(body, errors)
    if errors:
        raise CompilationError(_sorted(errors))
    return body


def parse_expression(text: str, file: str = "<expr>") -> ast.Expr:
    """Parse one expression (a bare tuple `a, b` included)."""
    expr, errors = _run(_normalise(text), "expr_input", file)
    _check_depth([expr], errors)
    if errors:
        raise CompilationError(_sorted(errors))
    return expr


# ---------------------------------------------------------------- driver


_LOCK = threading.Lock()
_STATE: tuple[Lark, _Layout, _Builder] | None = None


def _parser() -> tuple[Lark, _Layout, _Builder]:
    global _STATE
    if _STATE is None:
        layout, builder = _Layout(), _Builder()
        lark = _build_lark(layout, builder)
        _TERMINAL_TEXT.update(_terminal_texts(lark))
        _STATE = (lark, layout, builder)
    return _STATE


# Bump when the postlexer's contract with the grammar changes without the grammar text changing.
_CACHE_FORMAT = 2

_LARK_OPTIONS: dict[str, Any] = {
    "parser": "lalr", "lexer": "basic", "start": ["file_input", "expr_input"], "maybe_placeholders": True,
}


def _build_lark(layout: _Layout, builder: _Builder) -> Lark:
    """The LALR parser. Its tables are cached on disk, which cuts ~0.25 s off every process start; the
    cache is only a speed-up, so one that cannot be read, written or trusted is rebuilt, never fatal."""
    grammar = grammar_path().read_text(encoding="utf-8")
    cache = _cache_file()
    key = _cache_key(grammar)
    if cache is not None:
        cached = _load_cached(cache, key, layout, builder)
        if cached is not None:
            return cached
    lark = Lark(grammar, postlex=layout, transformer=builder, **_LARK_OPTIONS)
    if cache is not None:
        _save_cached(cache, key, lark)
    return lark


def _cache_key(grammar: str) -> bytes:
    """What the tables depend on: the grammar, the options, the Lark and Python versions, our format."""
    parts = [grammar, repr(sorted(_LARK_OPTIONS.items())), lark_version, sys.version, str(_CACHE_FORMAT)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest().encode()


def _load_cached(path: Path, key: bytes, layout: _Layout, builder: _Builder) -> Lark | None:
    """The parser saved at `path`, or None when no intact one for `key` is there.

    The file is `key`, the payload's sha256 and the payload, the first two ending in a line break. The
    digest makes a truncated, half-written or damaged file a miss: a pickle can load from damaged bytes
    and break later, on every run. (Lark's own `cache=` option checks the key only, so it is not used.)"""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if head != key or digest != hashlib.sha256(payload).hexdigest().encode():
        return None
    try:
        # `Lark.load` cannot attach a transformer and a postlexer; `_load` is what Lark's cache calls.
        return Lark.__new__(Lark)._load(pickle.loads(payload), transformer=builder, postlex=layout)
    except Exception:  # noqa: BLE001 - an intact file this Lark cannot load: rebuild it
        return None


def _save_cached(path: Path, key: bytes, lark: Lark) -> None:
    """Write the cache through a temporary file renamed over it, so that no reader sees part of it."""
    buf = io.BytesIO()
    lark.save(buf, exclude_options=("postlex", "transformer"))
    payload = buf.getvalue()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(b"%s\n%s\n%s" % (key, hashlib.sha256(payload).hexdigest().encode(), payload))
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk, a folder in the way: run without the cache
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _cache_file() -> Path | None:
    """A per-user cache file (not the shared temp folder Lark would pick: the cache is a pickle)."""
    if os.environ.get("TESSERA_NO_PARSER_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "tessera"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    return folder / f"parser-v{_CACHE_FORMAT}.lark-cache"


def _run(text: str, start: str, file: str) -> tuple[Any, list[Diagnostic]]:
    """Parse `text` from rule `start`; a grammar-level error raises, structural ones are returned."""
    # The Lark instance, its postlexer and its transformer are shared and carry per-parse state
    # (file name, collected errors, open brackets), so parses are serialised.
    with _LOCK:
        lark, layout, builder = _parser()
        builder.file = file
        builder.errors = []
        layout.file = file
        layout.text = text
        try:
            result = lark.parse(text, start=start)
        except CompilationError as exc:
            raise CompilationError(_sorted([*builder.errors, *exc.diagnostics])) from None
        except UnexpectedInput as exc:
            diag = _syntax_error(exc, text, file, layout)
            raise CompilationError(_sorted([*builder.errors, diag])) from None
        except LarkError as exc:  # pragma: no cover - a grammar/Lark inconsistency, still no traceback
            diag = Diagnostic("E-SYNTAX", f"cannot parse this text ({type(exc).__name__})",
                              _point(file, 1, 1))
            raise CompilationError(diag) from None
        return result, builder.errors


# Expressions nest at most this deep (operators, calls, subscripts, attributes; parentheses alone add
# nothing). The checker and the lowerings walk expressions recursively on Python's bounded stack: a
# deeper expression (a machine-written `x + x + ... + x`) is E-SYNTAX here instead of a crash there.
_MAX_EXPR_DEPTH = 100


def _check_depth(nodes: list[Any], errors: list[Diagnostic]) -> None:
    """Report every outermost expression among `nodes` (statements, walked) nested too deeply."""
    stack: list[Any] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Expr):
            sp = node.span
            # Each level of nesting takes at least one character, so short expressions need no walk.
            if (sp.line != sp.end_line or sp.end_col - sp.col > _MAX_EXPR_DEPTH) and _too_deep(node):
                errors.append(_diag(f"expression nested too deeply (at most {_MAX_EXPR_DEPTH} levels of "
                                    "operators, calls and subscripts)", sp,
                                    notes=("split it into several statements with intermediate names",)))
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, (ast.Stmt, ast.Param, ast.Keyword, ast.WithItem)):
            stack.extend(vars(node).values())


def _too_deep(root: ast.Expr) -> bool:
    stack = [(root, 1)]
    while stack:
        e, depth = stack.pop()
        if depth > _MAX_EXPR_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in ast.iter_child_exprs(e))
    return False


def _normalise(text: str) -> str:
    # Lark counts lines by '\n' only; a final newline lets the last statement end like the others.
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _whole_text_span(text: str, file: str) -> Span:
    body = text.rstrip("\n")
    last_line = body.count("\n") + 1
    return Span(file, 1, 1, last_line, len(body) - (body.rfind("\n") + 1) + 1)


def _point(file: str, line: int, col: int) -> Span:
    return Span(file, line, col, line, col + 1)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.span.line, d.span.col))


def _diag(message: str, span: Span, *, fixit: str | None = None, notes: tuple[str, ...] = (),
          labels: tuple[Label, ...] = ()) -> Diagnostic:
    return Diagnostic("E-SYNTAX", message, span, labels, notes, fixit)


def _module_item(stmt: ast.Stmt, errors: list[Diagnostic]) -> ast.Stmt | None:
    """Check one top-level statement; constants become `ConstDef`s."""
    if isinstance(stmt, (ast.FunctionDef, ast.Import, ast.ImportFrom)):
        return stmt
    if isinstance(stmt, _Rejected) or (isinstance(stmt, ast.ExprStmt) and isinstance(stmt.value, _RejectedExpr)):
        return None  # already reported
    if isinstance(stmt, ast.ExprStmt) and isinstance(stmt.value, ast.Constant) and isinstance(
        stmt.value.value, str
    ):
        return stmt  # a docstring
    if isinstance(stmt, ast.Assign):
        target = stmt.targets[0]
        if len(stmt.targets) == 1 and isinstance(target, ast.Name):
            return ast.ConstDef(stmt.span, target.id, target.span, None, stmt.value)
        if all(_is_target(t) for t in stmt.targets):  # bad targets were reported already
            what = "chained assignment" if len(stmt.targets) > 1 else "tuple assignment"
            errors.append(_diag(f"{what} is not allowed at module level; define one constant per line",
                                stmt.span))
        return None
    if isinstance(stmt, ast.AnnAssign):
        if stmt.value is not None and isinstance(stmt.target, ast.Name):
            return ast.ConstDef(stmt.span, stmt.target.id, stmt.target.span, stmt.annotation, stmt.value)
        return None  # a missing value or bad target was reported already
    notes = ("module constants are immutable",) if isinstance(stmt, ast.AugAssign) else ()
    errors.append(_diag(_TOP_LEVEL_MESSAGE, stmt.span, notes=notes))
    return None


def _is_target(e: ast.Expr) -> bool:
    if isinstance(e, ast.Name):
        return True
    return isinstance(e, ast.Tuple) and bool(e.elts) and all(_is_target(x) for x in e.elts)


# ---------------------------------------------------------------- layout (postlexer)

_OPEN = frozenset({"LPAR", "LSQB", "LBRACE"})
_CLOSE = frozenset({"RPAR", "RSQB", "RBRACE"})
_PAIRS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
# Python's own limits; they also keep the recursive checks and printers far from the recursion limit.
_MAX_BRACKETS = 200
_MAX_BLOCKS = 100


class _Layout(PostLex):
    """Python's indentation rules as a token filter, plus the def-header rules for `where`.

    Lark's own `Indenter` emits NEWLINE/INDENT for every line break outside brackets. A def header
    whose where clause starts on its own line would then end at the `)` or result type, so this
    postlexer looks one token past a line break inside a def header: when that token is `where`
    (or a where clause is already under way) the break is dropped, and the header runs on to its
    final `:`. Indentation is compared as text, so tabs and spaces are never silently equated.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.file = "<input>"
        self.text = ""
        self.open_brackets: list[Token] = []
        self.unmatched: Token | None = None  # a closing bracket with nothing open

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.open_brackets = []
        self.unmatched = None
        return self._layout(iter(stream))

    def _layout(self, tokens: Iterator[Token]) -> Iterator[Token]:
        opens = self.open_brackets
        indents = [""]  # the indentation of each enclosing block, as written
        in_header = False  # between a `def` and the `:` ending its header
        params_done = False  # ... and past its parameter list
        in_where = False  # ... and inside its where clause
        pending: Token | None = None
        last: Token | None = None

        first = next(tokens, None)
        if first is not None and first.type != "_NL" and first.column > 1:
            # The first line is indented: the parser reports the INDENT ("unexpected indent").
            indent = self.text[first.start_pos - first.column + 1:first.start_pos]
            indents.append(indent)
            yield Token("_INDENT", indent, first.start_pos, first.line, 1, first.line, first.column,
                        first.start_pos)
        pending = first

        while True:
            if pending is not None:
                tok, pending = pending, None
            else:
                tok = next(tokens, None)
                if tok is None:
                    break
            last = tok
            typ = tok.type
            if typ == "_NL":
                if opens:
                    continue
                if in_header:
                    pending = next(tokens, None)
                    if pending is not None and (
                        in_where or (params_done and pending.type == "NAME" and pending.value == "where")
                    ):
                        self._check_where_indent(tok, indents[-1], pending)
                        continue
                    in_header = False
                yield from self._newline(tok, indents)
                continue
            if typ in _OPEN:
                opens.append(tok)
                if len(opens) > _MAX_BRACKETS:
                    raise CompilationError(_diag(
                        f"too many nested brackets (at most {_MAX_BRACKETS})",
                        Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)))
            elif typ in _CLOSE:
                if not opens:
                    self.unmatched = tok
                elif _PAIRS[opens[-1].type] != typ:
                    raise self._mismatch(opens[-1], tok)
                else:
                    opens.pop()
                if in_header and not opens:
                    params_done = True
            elif not opens:
                if typ == "DEF":
                    in_header, params_done, in_where = True, False, False
                elif in_header:
                    if typ == "COLON":
                        in_header = False
                    elif typ == "NAME" and params_done and tok.value == "where":
                        tok = Token.new_borrow_pos("WHERE", tok.value, tok)
                        in_where = True
            yield tok

        if opens:
            bracket = opens[-1]
            raise CompilationError(_diag(
                f"'{bracket.value}' was never closed",
                Span(self.file, bracket.line, bracket.column, bracket.end_line, bracket.end_column),
            ))
        if last is not None:
            while len(indents) > 1:
                indents.pop()
                yield Token("_DEDENT", "", last.end_pos, last.end_line, last.end_column, last.end_line,
                            last.end_column, last.end_pos)

    def _mismatch(self, opener: Token, closer: Token) -> CompilationError:
        return CompilationError(_diag(
            f"closing '{closer.value}' does not match opening '{opener.value}'",
            Span(self.file, closer.line, closer.column, closer.end_line, closer.end_column),
            labels=(Label(Span(self.file, opener.line, opener.column, opener.end_line, opener.end_column),
                          f"'{opener.value}' opened here"),),
        ))

    def _newline(self, tok: Token, indents: list[str]) -> Iterator[Token]:
        value: str = tok.value
        brk = value.find("\n")
        col = tok.column + max(brk, 0)
        yield Token("_NEWLINE", "\n", tok.start_pos, tok.line, col, tok.line, col + 1, tok.start_pos + 1)

        indent = _line_indent(value)
        top = indents[-1]
        if indent == top:
            return
        line, col = tok.end_line, len(indent) + 1
        pos = tok.end_pos
        if indent.startswith(top):
            indents.append(indent)
            if len(indents) > _MAX_BLOCKS:
                raise CompilationError(_diag(f"too many nested blocks (at most {_MAX_BLOCKS})",
                                             Span(self.file, line, 1, line, col + 1)))
            yield Token("_INDENT", indent, pos, line, col, line, col + 1, pos)
            return
        while len(indents) > 1 and len(indents[-1]) > len(indent) and indents[-1].startswith(indent):
            indents.pop()
            yield Token("_DEDENT", "", pos, line, col, line, col + 1, pos)
        if indents[-1] == indent:
            return
        top = indents[-1]
        if indent.startswith(top) or top.startswith(indent):
            message = "unindent does not match any outer indentation level"
        else:
            message = "inconsistent use of tabs and spaces in indentation"
        raise CompilationError(_diag(message, Span(self.file, line, 1, line, col + 1)))

    def _check_where_indent(self, tok: Token, block_indent: str, where: Token) -> None:
        indent = _line_indent(tok.value)
        if not (len(indent) > len(block_indent) and indent.startswith(block_indent)):
            raise CompilationError(_diag(
                "a where clause on its own line must be indented more than its `def`",
                Span(self.file, where.line, where.column, where.end_line, where.end_column),
            ))


def _line_indent(nl_value: str) -> str:
    """The indentation of the line that follows a line-break token."""
    tail = nl_value[nl_value.rfind("\n") + 1:]
    hash_at = tail.find("#")
    if hash_at >= 0:
        tail = tail[:hash_at]
    return tail.replace("\f", "")


# ---------------------------------------------------------------- AST builder


class _Rejected(ast.Stmt):
    """Stands in for an excluded statement that has been reported; never leaves the parser."""


class _RejectedExpr(ast.Expr):
    """Stands in for an excluded expression that has been reported; never leaves the parser."""


class _StarMarker:
    """The bare `*` of a parameter list (or `*args`, which is refused)."""

    def __init__(self, span: Span, name: str | None) -> None:
        self.span = span
        self.name = name


_Part = Any  # a Token or anything with a `.span`


class _Builder(Transformer):
    """Inline transformer: one method per grammar rule (or alias), called as the rule reduces."""

    def __init__(self) -> None:
        super().__init__()
        self.file = "<input>"
        self.errors: list[Diagnostic] = []

    # ----------------------------------------------------- helpers

    def _between(self, first: _Part, last: _Part) -> Span:
        if isinstance(first, Token):
            line, col = first.line, first.column
        else:
            sp = first.span
            line, col = sp.line, sp.col
        if isinstance(last, Token):
            return Span(self.file, line, col, last.end_line, last.end_column)
        sp = last.span
        return Span(self.file, line, col, sp.end_line, sp.end_col)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def _error(self, message: str, span: Span, *, fixit: str | None = None,
               notes: tuple[str, ...] = ()) -> None:
        self.errors.append(_diag(message, span, fixit=fixit, notes=notes))

    def _reject(self, message: str, span: Span, *, fixit: str | None = None,
                notes: tuple[str, ...] = ()) -> _Rejected:
        self._error(message, span, fixit=fixit, notes=notes)
        return _Rejected(span)

    def _reject_expr(self, message: str, span: Span, *, fixit: str | None = None,
                     notes: tuple[str, ...] = ()) -> _RejectedExpr:
        self._error(message, span, fixit=fixit, notes=notes)
        return _RejectedExpr(span)

    def _check_target(self, target: ast.Expr) -> None:
        """Assignment and loop targets are names or (nested) tuples of names."""
        if isinstance(target, ast.Name):
            return
        if isinstance(target, ast.Tuple) and target.elts:
            for elt in target.elts:
                self._check_target(elt)
            return
        if isinstance(target, _RejectedExpr):
            return
        if isinstance(target, ast.Subscript):
            self._error("assignment to subscripts is not supported; tensors are immutable", target.span,
                        notes=("build a new tensor instead (e.g. with `where(mask, value, x)` or `concat`)",))
        elif isinstance(target, ast.Attribute):
            self._error("assignment to attributes is not supported", target.span)
        elif isinstance(target, ast.List):
            self._error("cannot assign to a list; use a tuple of names (`a, b = ...`)", target.span)
        else:
            self._error(f"cannot assign to {_describe_expr(target)}; "
                        "only names and tuples of names can be assigned", target.span)

    # ----------------------------------------------------- entry points

    def file_input(self, c: list[Any]) -> list[ast.Stmt]:
        return _flatten(c)

    def expr_input(self, c: list[Any]) -> ast.Expr:
        return c[0]

    # ----------------------------------------------------- imports

    def import_name(self, c: list[Any]) -> list[ast.Stmt]:
        kw = c[0]
        return [ast.Import(self._between(kw, last), module, alias) for module, last, alias in c[1:]]

    def dotted_as_name(self, c: list[Any]) -> tuple[str, Token, str | None]:
        (module, _first, last), alias = c
        if alias is None:
            return module, last, None
        return module, alias, str(alias)

    def dotted_name(self, c: list[Token]) -> tuple[str, Token, Token]:
        return ".".join(c), c[0], c[-1]

    def import_from(self, c: list[Any]) -> ast.ImportFrom:
        kw, (level, module), names = c
        if isinstance(names, Token):  # `import *`
            self._error("`import *` is not supported; name what you import", self._tok_span(names),
                        fixit="from MODULE import NAME1, NAME2")
            return ast.ImportFrom(self._between(kw, names), module, level, [])
        return ast.ImportFrom(self._between(kw, names[-1]), module, level, names)

    def relative_module(self, c: list[Any]) -> tuple[int, str]:
        if len(c) == 1:
            return 0, c[0][0]
        level, dotted = c
        return level, (dotted[0] if dotted is not None else "")

    def dots(self, c: list[Token]) -> int:
        return sum(len(t) for t in c)

    def import_as_names(self, c: list[ast.ImportName]) -> list[ast.ImportName]:
        return c

    def import_as_name(self, c: list[Any]) -> ast.ImportName:
        name, alias = c
        end = alias if alias is not None else name
        return ast.ImportName(self._between(name, end), str(name), str(alias) if alias else None)

    # ----------------------------------------------------- functions

    def decorated(self, c: list[Any]) -> ast.Stmt:
        fn = c[-1]
        if isinstance(fn, ast.FunctionDef):
            fn.decorators = c[:-1]
        return fn

    def decorator(self, c: list[Any]) -> ast.Expr:
        return c[0]

    def funcdef(self, c: list[Any]) -> ast.FunctionDef:
        kw, name, params, returns, _where_kw, where, body = c
        fn = ast.FunctionDef(
            self._between(kw, body[-1]),
            name=str(name),
            name_span=self._tok_span(name),
            params=params or [],
            returns=returns,
            where=where or [],
            body=body,
        )
        self._check_body(body, in_loop=False)
        return fn

    def _check_body(self, body: list[ast.Stmt], *, in_loop: bool) -> None:
        """Nested defs and `break`/`continue` outside loops; nested functions checked themselves."""
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef):
                span = Span(self.file, stmt.span.line, stmt.span.col, stmt.name_span.end_line,
                            stmt.name_span.end_col)
                self._error(f"nested functions are not supported; define `{stmt.name}` at module level",
                            span)
            elif isinstance(stmt, (ast.Break, ast.Continue)) and not in_loop:
                word = "break" if isinstance(stmt, ast.Break) else "continue"
                self._error(f"`{word}` outside a loop", stmt.span)
            elif isinstance(stmt, ast.If):
                self._check_body(stmt.body, in_loop=in_loop)
                self._check_body(stmt.orelse, in_loop=in_loop)
            elif isinstance(stmt, (ast.For, ast.While)):
                self._check_body(stmt.body, in_loop=True)
            elif isinstance(stmt, ast.With):
                self._check_body(stmt.body, in_loop=in_loop)

    def parameters(self, c: list[Any]) -> list[ast.Param]:
        params: list[ast.Param] = []
        seen: set[str] = set()
        kw_only = False
        star: _StarMarker | None = None
        defaults_started = False
        for item in c:
            if isinstance(item, _StarMarker):
                if kw_only:
                    self._error("only one `*` is allowed in a parameter list", item.span)
                elif item.name is not None:
                    self._error(f"variadic parameters (`*{item.name}`) are not supported", item.span,
                                fixit="*")
                kw_only, star = True, item
                continue
            if item is None:  # a refused `**kw` or `/`, already reported
                continue
            if item.name in seen:
                self._error(f"duplicate parameter '{item.name}'", item.span)
            seen.add(item.name)
            item.kw_only = kw_only
            if not kw_only:
                if item.default is not None:
                    defaults_started = True
                elif defaults_started:
                    self._error("a parameter without a default follows one with a default", item.span,
                                notes=("put it first, or after `*` to make it keyword-only",))
            params.append(item)
        if star is not None and star.name is None and not any(p.kw_only for p in params):
            self._error("a bare `*` must be followed by keyword-only parameters", star.span)
        return params

    def param(self, c: list[Any]) -> ast.Param:
        name, annotation, default = c
        last = default if default is not None else annotation if annotation is not None else name
        return ast.Param(self._between(name, last), str(name), annotation, default)

    def star_param(self, c: list[Any]) -> _StarMarker:
        star, name = c
        return _StarMarker(self._between(star, name if name is not None else star),
                           str(name) if name is not None else None)

    def dstar_param(self, c: list[Token]) -> None:
        self._error(f"variadic keyword parameters (`**{c[1]}`) are not supported",
                    self._between(c[0], c[1]))

    def slash_param(self, c: list[Token]) -> None:
        self._error("positional-only parameters (`/`) are not supported", self._tok_span(c[0]))

    def constraints(self, c: list[ast.Expr]) -> list[ast.Expr]:
        return c

    # ----------------------------------------------------- simple statements

    def simple_stmt(self, c: list[Any]) -> list[ast.Stmt]:
        return _flatten(c)

    def expr_stmt(self, c: list[ast.Expr]) -> ast.ExprStmt:
        value = c[0]
        return ast.ExprStmt(value.span, value)

    def assign_stmt(self, c: list[ast.Expr]) -> ast.Assign:
        *targets, value = c
        for t in targets:
            self._check_target(t)
        return ast.Assign(self._between(targets[0], value), targets, value)

    def augassign_stmt(self, c: list[Any]) -> ast.AugAssign:
        target, op, value = c
        if isinstance(target, ast.Tuple):
            self._error("augmented assignment needs a single name", target.span)
        else:
            self._check_target(target)
        return ast.AugAssign(self._between(target, value), target, op.value[:-1], value)

    def annassign_stmt(self, c: list[Any]) -> ast.AnnAssign:
        target, annotation, value = c
        span = self._between(target, value if value is not None else annotation)
        if not isinstance(target, ast.Name):
            self._error("only a single name can be annotated", target.span)
        elif value is None:
            self._error("an annotated variable needs a value", span,
                        fixit=f"{target.id}: ... = VALUE",
                        notes=("Tessera has no declarations without a value",))
        return ast.AnnAssign(span, target, annotation, value)

    def return_stmt(self, c: list[Any]) -> ast.Return:
        kw, value = c
        return ast.Return(self._between(kw, value if value is not None else kw), value)

    def pass_stmt(self, c: list[Token]) -> ast.Pass:
        return ast.Pass(self._tok_span(c[0]))

    def break_stmt(self, c: list[Token]) -> ast.Break:
        return ast.Break(self._tok_span(c[0]))

    def continue_stmt(self, c: list[Token]) -> ast.Continue:
        return ast.Continue(self._tok_span(c[0]))

    def assert_stmt(self, c: list[Any]) -> ast.Assert:
        kw, test, msg = c
        return ast.Assert(self._between(kw, msg if msg is not None else test), test, msg)

    # ----------------------------------------------------- compound statements

    def suite(self, c: list[Any]) -> list[ast.Stmt]:
        return _flatten(c)

    def if_stmt(self, c: list[Any]) -> ast.If:
        kw, test, body, *elifs, orelse = c
        tail: list[ast.Stmt] = orelse or []
        for ekw, etest, ebody in reversed(elifs):
            end = tail[-1] if tail else ebody[-1]
            tail = [ast.If(self._between(ekw, end), etest, ebody, tail)]
        end = tail[-1] if tail else body[-1]
        return ast.If(self._between(kw, end), test, body, tail)

    def elif_clause(self, c: list[Any]) -> tuple[Token, ast.Expr, list[ast.Stmt]]:
        return c[0], c[1], c[2]

    def while_stmt(self, c: list[Any]) -> ast.While:
        kw, test, body, orelse = c
        if orelse is not None:
            self._error("`while ... else` is not supported", self._between(kw, orelse[-1]))
        return ast.While(self._between(kw, body[-1]), test, body)

    def for_stmt(self, c: list[Any]) -> ast.For:
        kw, target, iterable, body, orelse = c
        self._check_target(target)
        if orelse is not None:
            self._error("`for ... else` is not supported", self._between(kw, orelse[-1]))
        return ast.For(self._between(kw, body[-1]), target, iterable, body)

    def with_stmt(self, c: list[Any]) -> ast.With:
        return ast.With(self._between(c[0], c[-1][-1]), c[1:-1], c[-1])

    def with_item(self, c: list[Any]) -> ast.WithItem:
        context, name = c
        if name is None:
            return ast.WithItem(context.span, context)
        target = ast.Name(self._tok_span(name), id=str(name))
        return ast.WithItem(self._between(context, name), context, target)

    # ----------------------------------------------------- excluded statements

    def class_def(self, c: list[Any]) -> _Rejected:
        return self._reject("classes are not supported; use functions and module constants",
                            self._between(c[0], c[1]))

    def try_stmt(self, c: list[Any]) -> _Rejected:
        return self._reject("`try` is not supported; errors stop the program",
                            self._tok_span(c[0]),
                            notes=("check conditions with `assert cond, \"message\"`",))

    def except_clause(self, c: list[Any]) -> None:
        return None

    def async_stmt(self, c: list[Any]) -> _Rejected:
        return self._reject("`async` is not supported; compiled code runs asynchronously by itself",
                            self._tok_span(c[0]))

    def global_stmt(self, c: list[Token]) -> _Rejected:
        return self._reject("`global` is not supported; module constants are immutable",
                            self._between(c[0], c[-1]), notes=("return new values from functions",))

    def nonlocal_stmt(self, c: list[Token]) -> _Rejected:
        return self._reject("`nonlocal` is not supported; functions cannot be nested",
                            self._between(c[0], c[-1]))

    def del_stmt(self, c: list[Any]) -> _Rejected:
        return self._reject("`del` is not supported; values are freed when no longer used",
                            self._between(c[0], c[-1]))

    def raise_stmt(self, c: list[Any]) -> _Rejected:
        end = next((x for x in reversed(c) if x is not None), c[0])
        return self._reject("`raise` is not supported; stop with an error through `assert`",
                            self._between(c[0], end), fixit='assert False, "message"')

    # ----------------------------------------------------- expressions

    def tuple(self, c: list[ast.Expr]) -> ast.Tuple:
        return ast.Tuple(self._between(c[0], c[-1]), elts=c)

    def ifexp(self, c: list[ast.Expr]) -> ast.IfExp:
        body, test, orelse = c
        return ast.IfExp(self._between(body, orelse), test=test, body=body, orelse=orelse)

    def or_test(self, c: list[ast.Expr]) -> ast.BoolOp:
        return ast.BoolOp(self._between(c[0], c[-1]), op="or", values=c)

    def and_test(self, c: list[ast.Expr]) -> ast.BoolOp:
        return ast.BoolOp(self._between(c[0], c[-1]), op="and", values=c)

    def not_op(self, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._between(c[0], c[1]), op="not", operand=c[1])

    def comparison(self, c: list[Any]) -> ast.Compare:
        ops: list[str] = []
        comparators: list[ast.Expr] = []
        i, n = 1, len(c)
        while i < n:
            op = c[i].value
            if op in ("not", "is") and isinstance(c[i + 1], Token):  # `not in`, `is not`
                op = f"{op} {c[i + 1].value}"
                i += 1
            ops.append(op)
            comparators.append(c[i + 1])
            i += 2
        return ast.Compare(self._between(c[0], c[-1]), left=c[0], ops=ops, comparators=comparators)

    def range(self, c: list[Any]) -> ast.Range:
        lo, op, hi = c
        return ast.Range(self._between(lo, hi), lo=lo, hi=hi, inclusive=op.value == "..=")

    def arith_expr(self, c: list[Any]) -> ast.Expr:
        return self._fold_left(c)

    def term(self, c: list[Any]) -> ast.Expr:
        return self._fold_left(c)

    def _fold_left(self, c: list[Any]) -> ast.Expr:
        left = c[0]
        for i in range(1, len(c), 2):
            right = c[i + 1]
            left = ast.BinOp(self._between(left, right), op=c[i].value, left=left, right=right)
        return left

    def unary(self, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._between(c[0], c[1]), op=c[0].value, operand=c[1])

    def pow(self, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._between(c[0], c[2]), op="**", left=c[0], right=c[2])

    def call(self, c: list[Any]) -> ast.Expr:
        func, arguments, rpar = c
        args: list[ast.Expr] = []
        keywords: list[ast.Keyword] = []
        names: set[str] = set()
        for a in arguments or ():
            if isinstance(a, ast.Keyword):
                if a.name in names:
                    self._error(f"keyword argument '{a.name}' repeated", a.span)
                names.add(a.name)
                keywords.append(a)
            else:
                if keywords and not isinstance(a, _RejectedExpr):
                    self._error("positional argument follows keyword argument", a.span,
                                notes=("pass positional arguments first",))
                args.append(a)
        return ast.Call(self._between(func, rpar), func=func, args=args, keywords=keywords)

    def arguments(self, c: list[Any]) -> list[Any]:
        return c

    def keyword(self, c: list[ast.Expr]) -> ast.Keyword:
        name, value = c
        if not isinstance(name, ast.Name):
            self._error("a keyword argument's name must be a plain name (did you mean '=='?)", name.span)
            return ast.Keyword(self._between(name, value), "<invalid>", value)
        return ast.Keyword(self._between(name, value), name.id, value)

    def genexp(self, c: list[Any]) -> _RejectedExpr:
        return self._comprehension_error(self._between(c[0], c[1]))

    def star_arg(self, c: list[Any]) -> _RejectedExpr:
        return self._reject_expr("argument unpacking (`*args`) is not supported",
                                 self._between(c[0], c[1]))

    def dstar_arg(self, c: list[Any]) -> _RejectedExpr:
        return self._reject_expr("argument unpacking (`**kwargs`) is not supported",
                                 self._between(c[0], c[1]))

    def subscript(self, c: list[Any]) -> ast.Subscript:
        value, index, rsqb = c
        return ast.Subscript(self._between(value, rsqb), value=value, index=index)

    def slice(self, c: list[Any]) -> ast.Slice:
        lower, _colon, upper, _colon2, step = c
        present = [x for x in c if x is not None]
        return ast.Slice(self._between(present[0], present[-1]), lower=lower, upper=upper, step=step)

    def attribute(self, c: list[Any]) -> ast.Attribute:
        value, name = c
        return ast.Attribute(self._between(value, name), value=value, attr=str(name),
                             attr_span=self._tok_span(name))

    # ----------------------------------------------------- atoms

    def name(self, c: list[Token]) -> ast.Name:
        tok = c[0]
        return ast.Name(Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column), id=tok.value)

    def int_lit(self, c: list[Token]) -> ast.Expr:
        tok = c[0]
        span = self._tok_span(tok)
        try:
            return ast.Constant(span, value=int(tok.value, 0))
        except ValueError:
            digits = tok.value.replace("_", "")
            if len(digits) > 1 and digits.isdigit() and digits[0] == "0":
                return self._reject_expr("leading zeros are not allowed in integer literals", span,
                                         fixit=digits.lstrip("0") or "0")
            return self._reject_expr("this integer literal is too long", span)

    def float_lit(self, c: list[Token]) -> ast.Constant:
        tok = c[0]
        return ast.Constant(self._tok_span(tok), value=float(tok.value))

    def string(self, c: list[Token]) -> ast.Expr:
        parts: list[str] = []
        for tok in c:
            text: str = tok.value
            prefix = text[0] if text[0] not in "'\"" else ""
            if prefix in ("f", "F"):
                return self._reject_expr("f-strings are not supported; pass several arguments to print",
                                         self._tok_span(tok))
            if prefix in ("b", "B"):
                return self._reject_expr("bytes literals are not supported", self._tok_span(tok))
            if not prefix and "\\" not in text:
                quote = 3 if text.startswith(('"""', "'''")) else 1
                parts.append(text[quote:-quote])
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parts.append(pyast.literal_eval(text))
            except (SyntaxError, ValueError) as exc:
                reason = getattr(exc, "msg", None) or str(exc)
                return self._reject_expr(f"invalid string literal: {reason}", self._tok_span(tok))
        return ast.Constant(self._between(c[0], c[-1]), value="".join(parts))

    def ellipsis(self, c: list[Token]) -> ast.EllipsisLit:
        return ast.EllipsisLit(self._tok_span(c[0]))

    def none_lit(self, c: list[Token]) -> ast.Constant:
        return ast.Constant(self._tok_span(c[0]), value=None)

    def true_lit(self, c: list[Token]) -> ast.Constant:
        return ast.Constant(self._tok_span(c[0]), value=True)

    def false_lit(self, c: list[Token]) -> ast.Constant:
        return ast.Constant(self._tok_span(c[0]), value=False)

    def empty_tuple(self, c: list[Token]) -> ast.Tuple:
        return ast.Tuple(self._between(c[0], c[1]), elts=[])

    def paren(self, c: list[Any]) -> ast.Expr:
        # A parenthesised expression's span includes its parentheses, so that the span of an
        # enclosing node like `(a + b) * c` starts at the `(`.
        inner = c[1]
        inner.span = self._between(c[0], c[2])
        return inner

    def list(self, c: list[Any]) -> ast.List:
        return ast.List(self._between(c[0], c[2]), elts=c[1] or [])

    def dict(self, c: list[Any]) -> ast.Dict:
        pairs = c[1] or []
        return ast.Dict(self._between(c[0], c[2]), keys=[k for k, _ in pairs], values=[v for _, v in pairs])

    def set(self, c: list[Any]) -> _RejectedExpr:
        return self._reject_expr("sets are not supported; use a list or a tuple",
                                 self._between(c[0], c[-1]))

    def comprehension(self, c: list[Any]) -> _RejectedExpr:
        return self._comprehension_error(self._between(c[0], c[-1]))

    def _comprehension_error(self, span: Span) -> _RejectedExpr:
        return self._reject_expr("comprehensions are not supported; use a `for` loop or a tensor operation",
                                 span)

    def list_items(self, c: list[ast.Expr]) -> list[ast.Expr]:
        return c

    def dict_items(self, c: list[tuple[ast.Expr, ast.Expr]]) -> list[tuple[ast.Expr, ast.Expr]]:
        return c

    def dict_item(self, c: list[ast.Expr]) -> tuple[ast.Expr, ast.Expr]:
        return c[0], c[1]

    # ----------------------------------------------------- excluded expressions

    def lambdef(self, c: list[Any]) -> _RejectedExpr:
        return self._reject_expr("`lambda` is not supported; define a function with `def`",
                                 self._between(c[0], c[-1]))

    def lambda_params(self, c: list[Any]) -> None:
        return None

    def lambda_param(self, c: list[Any]) -> None:
        return None

    def comp_for(self, c: list[Any]) -> Any:
        # Only the end of the clause matters: it ends the span of the refused comprehension.
        return next(x for x in reversed(c) if x is not None)

    def comp_if(self, c: list[Any]) -> Any:
        return next(x for x in reversed(c) if x is not None)

    def yield_expr(self, c: list[Any]) -> _RejectedExpr:
        end = next((x for x in reversed(c) if x is not None), c[0])
        return self._reject_expr("`yield` is not supported; return a tuple or a tensor instead",
                                 self._between(c[0], end))


def _flatten(items: list[Any]) -> list[ast.Stmt]:
    out: list[ast.Stmt] = []
    for item in items:
        if isinstance(item, list):
            out.extend(item)
        elif item is not None:
            out.append(item)
    return out


def _describe_expr(e: ast.Expr) -> str:
    match e:
        case ast.Call():
            return "a function call"
        case ast.Constant(value=None | True | False):
            return f"`{e.value}`"
        case ast.Constant() | ast.EllipsisLit():
            return "a literal"
        case ast.BinOp() | ast.UnaryOp() | ast.BoolOp():
            return "an operator expression"
        case ast.Compare():
            return "a comparison (did you mean '=='?)"
        case ast.Tuple():
            return "an empty tuple"
    return "this expression"


# ---------------------------------------------------------------- syntax errors

# Readable names for terminals (filled from the grammar: 'return', ')', ...), plus these.
_TERMINAL_TEXT: dict[str, str] = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "AUGASSIGN": "'+='",
    "_NEWLINE": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of the block",
    "WHERE": "'where'",
    "$END": "end of input",
}

_EXPR_START = frozenset({"NAME", "INT", "FLOAT", "STRING", "LPAR", "LSQB", "LBRACE", "MINUS", "PLUS",
                         "NOT", "NONE", "TRUE", "FALSE", "ELLIPSIS"})
_STMT_START = frozenset({"DEF", "RETURN", "PASS", "BREAK", "CONTINUE", "ASSERT", "IF", "WHILE", "FOR",
                         "WITH", "IMPORT", "FROM", "AT"})
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "DOUBLESLASH", "PERCENT", "AT", "POW",
                        "LESSTHAN", "MORETHAN", "EQEQUAL", "NOTEQUAL", "LESSEQUAL", "GREATEREQUAL", "IN",
                        "NOT", "IS", "AND", "OR", "IF", "DOT", "LPAR", "LSQB", "DOTDOT", "DOTDOTEQ"})
# Never suggested: the excluded keywords, and tokens no user wants to be told to type here.
_NEVER_SUGGESTED = frozenset({"LAMBDA", "YIELD", "CLASS", "TRY", "ASYNC", "GLOBAL", "NONLOCAL", "DEL",
                              "RAISE", "SEMICOLON", "_DEDENT", "FOR", "AUGASSIGN"})
# Display order of the expected items: closers first, then '=' and keywords, generic classes last.
_ORDER = ["')'", "']'", "'}'", "':'", "','", "'='", "'->'", "'where'", "'import'", "'in'", "'as'",
          "'else'", "a name", "a statement", "an expression", "an operator", "end of line",
          "an indented block"]


def _terminal_texts(lark: Lark) -> dict[str, str]:
    texts: dict[str, str] = {}
    for term in lark.terminals:
        if isinstance(term.pattern, PatternStr) and term.name not in _TERMINAL_TEXT:
            texts[term.name] = f"'{term.pattern.value}'"
    return texts


def _describe_found(tok: Token) -> str:
    typ = tok.type
    if typ == "NAME":
        return f"name '{tok.value}'"
    if typ in ("INT", "FLOAT"):
        return f"number {tok.value}"
    if typ == "STRING":
        text = tok.value if len(tok.value) <= 24 else tok.value[:20] + "..."
        return f"string {text}"
    return _TERMINAL_TEXT.get(typ, f"'{tok.value}'")


def _describe_expected(expected: set[str]) -> str:
    names = set(expected) - _NEVER_SUGGESTED
    items: set[str] = set()
    if {"IF", "RETURN", "PASS"} <= names:
        names -= _STMT_START | _EXPR_START
        items.add("a statement")
    if {"NAME", "INT"} <= names:
        names -= _EXPR_START
        items.add("an expression")
    if {"PLUS", "STAR"} <= names:
        names -= _OPERATORS
        items.add("an operator")
    else:
        names -= {"POW", "SLASH"}  # in a parameter list: the refused `**kw` and `/`
    texts = {_TERMINAL_TEXT.get(n, n) for n in names} | items
    ordered = sorted(texts, key=lambda t: (_ORDER.index(t) if t in _ORDER else len(_ORDER), t))
    if len(ordered) > 7:
        ordered = [*ordered[:6], "..."]
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _eof_span(text: str, file: str) -> Span:
    body = text.rstrip()
    line = body.count("\n") + 1
    col = len(body) - (body.rfind("\n") + 1) + 1
    return _point(file, line, col)


def _syntax_error(exc: UnexpectedInput, text: str, file: str, layout: _Layout) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, text, file)
    if not isinstance(exc, UnexpectedToken):  # pragma: no cover - other UnexpectedInput kinds (EOF)
        return _diag("unexpected end of input", _eof_span(text, file))
    tok = exc.token
    try:
        expected = set(exc.accepts or exc.expected)
    except Exception:  # noqa: BLE001 - `accepts` replays the parser; fall back to the raw table
        expected = set(exc.expected)
    # The blocks still open at the end of the text close with DEDENTs placed after its last line
    # break, on a line that does not exist: report those at the end of the text, like `$END`.
    at_end = tok.type == "$END" or (tok.type == "_DEDENT" and tok.start_pos >= len(text.rstrip()))
    if at_end:
        span = _eof_span(text, file)
    else:
        span = Span(file, tok.line, tok.column, tok.end_line or tok.line,
                    tok.end_column or tok.column + 1)
    found = _TERMINAL_TEXT["$END"] if at_end else _describe_found(tok)
    notes: list[str] = []
    labels: list[Label] = []
    if tok.type == "_INDENT":
        message = "unexpected indent"
    elif tok is layout.unmatched:
        message = f"unmatched '{tok.value}'"
    elif "_INDENT" in expected:
        message = f"expected an indented block, found {found}"
    elif tok.type == "_NEWLINE" and "COLON" in expected:
        message = "expected ':' at the end of this line"
    elif tok.type == "$END":
        message = f"unexpected end of input; expected {_describe_expected(expected)}"
    else:
        message = f"expected {_describe_expected(expected)}, found {found}"
    if tok.type == "EQUAL":
        notes.append("to compare, use '=='; an assignment is a statement of its own")
    opens = layout.open_brackets
    if opens and tok.type != "$END" and opens[-1].line < tok.line:
        b = opens[-1]
        labels.append(Label(Span(file, b.line, b.column, b.end_line, b.end_column),
                            f"'{b.value}' opened here is still open"))
    return _diag(message, span, notes=tuple(notes), labels=tuple(labels))


def _bad_character(exc: UnexpectedCharacters, text: str, file: str) -> Diagnostic:
    pos = exc.pos_in_stream
    char = text[pos] if pos < len(text) else ""
    line, col = exc.line, exc.column
    if char and char in "'\"":
        # An unterminated `"""` lexes as the empty string `""` and then a lone quote.
        triple = pos >= 2 and text[pos - 2:pos] == char * 2
        if triple:
            pos, col = pos - 2, col - 2
        line_end = text.find("\n", pos)
        end_col = col + ((line_end if line_end >= 0 else len(text)) - pos)
        return _diag("unterminated triple-quoted string" if triple else "unterminated string literal",
                     Span(file, line, col, line, max(end_col, col + 1)))
    span = _point(file, line, col)
    shown = char if char.isprintable() else repr(char)[1:-1]
    notes: tuple[str, ...] = ()
    if char == "!":
        notes = ("use `not` for logical negation, and `!=` for inequality",)
    elif char in "&|^~":
        notes = ("bitwise operators are not supported; use `and`, `or`, `not` or `where(...)`",)
    elif char == "\\":
        notes = ("a backslash continues a line only as the line's last character",)
    return _diag(f"unexpected character '{shown}'", span, notes=notes)
