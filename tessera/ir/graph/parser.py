"""Graph IR text form: the parser (the inverse of `printer`).

Grammar (`#` starts a comment running to the end of the line):

    module     := [header] function*
    header     := "tessera.graph" INT "hash=" HEX16            (first line; checked when present)
    function   := "func" "@" NAME "(" [param ("," param)*] ")" "->" "(" [type ("," type)*] ")"
                  ["attributes" "{" [fattr ("," fattr)*] "}"] "{" op* return "}"
    param      := VALUE ":" type
    fattr      := ("effects" | "where" | "symbols") "=" "[" [STRING ("," STRING)*] "]"
    op         := [VALUE ("," VALUE)* "="] NAME "(" [VALUE ("," VALUE)*] ")"
                  ["{" [NAME "=" attr ("," NAME "=" attr)*] "}"] [":" type ("," type)*]
    return     := "return" [VALUE ("," VALUE)*]
    type       := "tensor" "<" "[" [dim ("," dim)*] "]" "," DTYPE ">"
    attr       := STRING | "true" | "false" | number | DTYPE | "@" NAME | dim | "[" [attr ("," attr)*] "]"
    number     := ["-"] (INT | FLOAT | "inf" | "nan")
    dim        := a dimension expression (`B`, `D//4`, `2*D - 1`, `N % 8`), see tessera.symbolic

The parser resolves names (a value defined twice or used before its definition is an error here)
and reads each attribute by its schema kind, but it does not verify: operand counts, attribute
kinds and result types are taken as written, so `verify` can judge malformed text. Errors are
IRErrors whose message starts with `line:col`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tessera.dtypes import DTYPES, DType
from tessera.ir.graph.ops import IR_VERSION, OPS, AttrValue, Function, IRError, Module, Op, TensorType, Value
from tessera.ir.graph.printer import HEADER, content_hash
from tessera.symbolic import Dim, DimError, parse_dim

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<symbol>@[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>->|//|[()\[\]{}<>,:=+\-*%])
""", re.VERBOSE)

_HEADER = re.compile(rf"{re.escape(HEADER)} (\d+) hash=([0-9a-f]{{16}})\n")


@dataclass(frozen=True)
class Token:
    kind: str  # string value symbol number ident punct eof
    text: str
    line: int
    col: int


def located(lines: list[str], line: int, col: int, msg: str) -> IRError:
    """An IRError `line:col: msg`, followed by the offending line and a caret under the column."""
    text = lines[line - 1] if 1 <= line <= len(lines) else ""
    return IRError(f"{line}:{col}: {msg}\n    {text}\n    {' ' * (col - 1)}^")


def _tokenize(text: str, line0: int, lines: list[str]) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, line0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise located(lines, line, pos - line_start + 1, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rindex("\n") + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


def parse_module(text: str) -> Module:
    """Parse the text form of a module. A header, when present, must name this IR version and
    carry the hash of the text after it."""
    line0 = 1
    lines = text.split("\n")
    m = _HEADER.match(text)
    if m:
        version = int(m.group(1))
        if version != IR_VERSION:
            raise IRError(f"1:{len(HEADER) + 2}: graph IR version {version} is not supported "
                          f"(this compiler reads version {IR_VERSION})")
        body = text[m.end():]
        if content_hash(body) != m.group(2):
            raise IRError(f"1:{m.start(2) + 1}: content hash mismatch: the header says {m.group(2)}, "
                          f"the text hashes to {content_hash(body)} (edited after printing?)")
        text, line0 = body, 2
    elif text.startswith(HEADER):
        raise IRError(f"1:1: malformed header; expected '{HEADER} <version> hash=<16 hex digits>'")
    return _Parser(_tokenize(text, line0, lines), lines).module()


def parse_function(text: str) -> Function:
    """Parse a text holding exactly one function."""
    module = parse_module(text)
    if len(module.functions) != 1:
        raise IRError(f"expected one function, found {len(module.functions)}")
    return module.functions[0]


class _Parser:
    def __init__(self, tokens: list[Token], lines: list[str]) -> None:
        self.toks = tokens
        self.lines = lines
        self.i = 0
        self.values: dict[str, tuple[Value, Token]] = {}

    # -- token helpers -------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, msg: str, tok: Token | None = None) -> IRError:
        t = tok or self.tok
        return located(self.lines, t.line, t.col, msg)

    def _found(self) -> str:
        return "end of input" if self.tok.kind == "eof" else repr(self.tok.text)

    def at(self, text: str) -> bool:
        return self.tok.kind in ("punct", "ident") and self.tok.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str = "") -> Token:
        if not self.at(text):
            raise self.error(f"expected '{text}'{what} but found {self._found()}")
        self.i += 1
        return self.toks[self.i - 1]

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what} but found {self._found()}")
        self.i += 1
        return self.toks[self.i - 1]

    def comma_list(self, close: str, item):  # type: ignore[no-untyped-def]
        items = []
        if not self.accept(close):
            items.append(item())
            while self.accept(","):
                items.append(item())
            self.expect(close, " or ','")
        return items

    # -- structure -----------------------------------------------------------------------------

    def module(self) -> Module:
        functions: list[Function] = []
        names: set[str] = set()
        while self.tok.kind != "eof":
            start = self.tok
            f = self.function()
            if f.name in names:
                raise self.error(f"function @{f.name} is defined twice", start)
            names.add(f.name)
            functions.append(f)
        return Module(functions)

    def function(self) -> Function:
        self.expect("func", " to start a function")
        name = self.expect_kind("symbol", "a function name '@name'").text[1:]
        self.values = {}
        self.expect("(")
        params = self.comma_list(")", self.param)
        self.expect("->")
        self.expect("(")
        declared = self.comma_list(")", self.type)
        fattrs: dict[str, tuple[str, ...]] = {}
        if self.accept("attributes"):
            self.expect("{")
            self.comma_list("}", lambda: self.function_attr(fattrs))
        self.expect("{", " to open the function body")
        ops: list[Op] = []
        while not self.at("return"):
            if self.at("}") or self.tok.kind == "eof":
                raise self.error(f"function @{name} has no 'return'")
            ops.append(self.op())
        ret_tok = self.expect("return")
        returns: list[Value] = []
        if self.tok.kind == "value":
            returns.append(self.use())
            while self.accept(","):
                returns.append(self.use())
        self.expect("}", " to close the function body")
        if len(returns) != len(declared):
            raise self.error(f"@{name} returns {len(returns)} values, its signature declares "
                             f"{len(declared)}", ret_tok)
        for k, (v, t) in enumerate(zip(returns, declared)):
            if v.ty != t:
                raise self.error(f"@{name}: returned value {k} has type {v.ty}, the signature declares {t}",
                                 ret_tok)
        return Function(name, params, ops, returns, effects=fattrs.get("effects", ()),
                        constraints=fattrs.get("where", ()), symbols=fattrs.get("symbols", ()))

    def function_attr(self, into: dict[str, tuple[str, ...]]) -> None:
        key_tok = self.expect_kind("ident", "a function attribute (effects, where, symbols)")
        if key_tok.text not in ("effects", "where", "symbols"):
            raise self.error(f"unknown function attribute '{key_tok.text}' (effects, where, symbols)", key_tok)
        if key_tok.text in into:
            raise self.error(f"function attribute '{key_tok.text}' given twice", key_tok)
        self.expect("=")
        self.expect("[")
        into[key_tok.text] = tuple(self.comma_list("]", self.string))

    def param(self) -> Value:
        tok = self.expect_kind("value", "a parameter '%name'")
        self.expect(":")
        v = Value(self.type(), _hint(tok.text))
        self.define(tok, v)
        return v

    def op(self) -> Op:
        result_toks: list[Token] = []
        if self.tok.kind == "value":
            result_toks.append(self.expect_kind("value", "a result"))
            while self.accept(","):
                result_toks.append(self.expect_kind("value", "a result '%name'"))
            self.expect("=", " after the results")
        name_tok = self.expect_kind("ident", "an op name")
        opdef = OPS.get(name_tok.text)
        if opdef is None:
            raise self.error(f"unknown graph op '{name_tok.text}'", name_tok)
        self.expect("(", f" after '{name_tok.text}'")
        operands = self.comma_list(")", self.use)
        attrs: list[tuple[str, AttrValue]] = []
        if self.accept("{"):
            kinds = dict(opdef.attrs)

            def attr() -> None:
                key = self.expect_kind("ident", "an attribute name")
                if any(k == key.text for k, _ in attrs):
                    raise self.error(f"attribute '{key.text}' given twice", key)
                self.expect("=")
                attrs.append((key.text, self.attr(kinds.get(key.text))))

            self.comma_list("}", attr)
        types: list[TensorType] = []
        if self.accept(":"):
            types.append(self.type())
            while self.accept(","):
                types.append(self.type())
        if len(types) != len(result_toks):
            raise self.error(f"{name_tok.text} names {len(result_toks)} results but gives {len(types)} "
                             "result types", name_tok)
        op = Op(name_tok.text, tuple(operands), tuple(attrs), ())
        op.results = tuple(Value(t, _hint(tok.text), op) for tok, t in zip(result_toks, types))
        for tok, v in zip(result_toks, op.results):
            self.define(tok, v)
        return op

    # -- values --------------------------------------------------------------------------------

    def define(self, tok: Token, v: Value) -> None:
        prev = self.values.get(tok.text)
        if prev is not None:
            raise self.error(f"value {tok.text} is already defined at {prev[1].line}:{prev[1].col}", tok)
        self.values[tok.text] = (v, tok)

    def use(self) -> Value:
        tok = self.expect_kind("value", "a value '%name'")
        found = self.values.get(tok.text)
        if found is None:
            raise self.error(f"use of undefined value {tok.text}", tok)
        return found[0]

    # -- types, dims, attributes ---------------------------------------------------------------

    def type(self) -> TensorType:
        self.expect("tensor", " (a type 'tensor<[dims], dtype>')")
        self.expect("<")
        self.expect("[")
        dims = self.comma_list("]", self.dim)
        self.expect(",")
        dtype = self.dtype()
        self.expect(">")
        return TensorType(tuple(dims), dtype)

    def dtype(self) -> DType:
        tok = self.expect_kind("ident", "a dtype")
        d = DTYPES.get(tok.text)
        if d is None:
            raise self.error(f"unknown dtype '{tok.text}'", tok)
        return d

    def dim(self) -> Dim:
        """A dimension expression: the tokens up to a ',', ']', '}' or '>' outside parentheses."""
        start = self.tok
        parts: list[str] = []
        depth = 0
        while True:
            t = self.tok
            if t.kind == "punct" and t.text in "(+-*//%" or t.kind in ("ident", "number"):
                depth += t.text == "("
            elif t.kind == "punct" and t.text == ")" and depth > 0:
                depth -= 1
            elif t.kind == "value" and t.text[1:].isdigit():
                parts.append("%")  # `N %8` lexes as a value name; inside a dim it is a modulo
                parts.append(t.text[1:])
                self.i += 1
                continue
            else:
                break
            parts.append(t.text)
            self.i += 1
        if not parts:
            raise self.error(f"expected a dimension but found {self._found()}")
        try:
            return parse_dim(" ".join(parts))
        except DimError as exc:
            raise self.error(f"bad dimension: {exc}", start) from None

    def string(self) -> str:
        tok = self.expect_kind("string", "a string")
        try:
            return json.loads(tok.text)
        except json.JSONDecodeError as exc:
            raise self.error(f"bad string: {exc.msg} at offset {exc.pos}", tok) from None

    def attr(self, kind: str | None) -> AttrValue:
        """An attribute value, read by the schema's kind where it fits (`4` is a Dim for a `dim`
        attribute); otherwise as written, for the verifier to reject."""
        start = self.i
        value = self.literal()
        if kind in ("dim", "dims"):
            # Re-read symbolic text as dims: `[B, D//4]` is not a list of plain literals.
            end = self.i
            self.i = start
            try:
                value = self.dims_literal() if kind == "dims" else self.dim()
            except IRError:
                self.i = start
                value = self.literal()
            if self.i != end:
                self.i = start
                value = self.literal()
        elif kind == "float" and type(value) is int:
            value = float(value)
        return value

    def dims_literal(self) -> tuple[Dim, ...]:
        self.expect("[")
        return tuple(self.comma_list("]", self.dim))

    def literal(self) -> AttrValue:
        t = self.tok
        if t.kind == "string":
            return self.string()
        if t.kind == "symbol":
            self.i += 1
            return t.text[1:]
        if self.accept("["):
            return tuple(self.comma_list("]", self.literal))
        if self.accept("true"):
            return True
        if self.accept("false"):
            return False
        negative = self.accept("-")
        t = self.tok
        if t.kind == "number":
            nxt = self.toks[self.i + 1]
            if not negative and nxt.kind == "punct" and nxt.text in ("+", "-", "*", "//", "%"):
                return self.dim()  # `4*D`
            self.i += 1
            if re.fullmatch(r"\d+", t.text):
                return -int(t.text) if negative else int(t.text)
            return float("-" + t.text if negative else t.text)
        if t.kind == "ident" and t.text in ("inf", "nan"):
            self.i += 1
            return float("-" + t.text if negative else t.text)
        if negative:
            raise self.error(f"expected a number after '-' but found {self._found()}")
        if t.kind == "ident" and t.text in DTYPES:
            self.i += 1
            return DTYPES[t.text]
        if t.kind in ("ident", "punct") and t.text not in ",]}":
            return self.dim()
        raise self.error(f"expected an attribute value but found {self._found()}")


def _hint(name_token: str) -> str:
    name = name_token[1:]
    return "" if name.isdigit() else name
