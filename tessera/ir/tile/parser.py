"""Parse the text form of Tile IR (tessera/ir/tile/printer.py) back into a Kernel.

print_kernel(parse_kernel(text)) == text for every printed kernel: the attribute schemas come from
the catalogue (so `value = 0` stays an int and `other = 0.0` a float), result types are re-inferred
and checked against the printed ones, and value names become the hints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tessera.dtypes import dtype_named
from tessera.ir.tile.ops import (
    TILE_OPS,
    AttrValue,
    BlockType,
    Kernel,
    Op,
    Region,
    ScalarType,
    Schedule,
    TensorRefType,
    TileIRError,
    TileType,
    Value,
    make_op,
)
from tessera.symbolic import parse_dim

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<val>%[A-Za-z_0-9.]+)
  | (?P<num>-?(?:inf|nan|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
  | (?P<id>[A-Za-z_][A-Za-z_0-9.]*)
  | (?P<arrow>->)
  | (?P<punct>[(){}\[\]<>,:=@])
  | (?P<arith>[-+*/%])
""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TileIRError(f"tile IR text: unexpected character {text[pos]!r} at offset {pos}")
        if m.lastgroup != "ws":
            out.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.values: dict[str, Value] = {}

    # -- tokens --------------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def fail(self, msg: str) -> None:
        tok = self.peek()
        where = f"line {self.text.count(chr(10), 0, tok.pos) + 1}" if tok else "end of text"
        raise TileIRError(f"tile IR text, {where}: {msg}")

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            self.fail("unexpected end of text")
        self.i += 1
        return tok  # type: ignore[return-value]

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            self.i -= 1
            self.fail(f"expected '{text}', found '{tok.text}'")
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.text == text:
            self.i += 1
            return True
        return False

    # -- values and types ----------------------------------------------------------------------

    def define(self, name: str, ty: TileType) -> Value:
        if name in self.values:
            self.fail(f"value {name} is defined twice")
        v = Value(ty, name[1:])
        self.values[name] = v
        return v

    def use(self) -> Value:
        tok = self.next()
        if tok.kind != "val":
            self.i -= 1
            self.fail(f"expected a value, found '{tok.text}'")
        v = self.values.get(tok.text)
        if v is None:
            self.i -= 1
            self.fail(f"value {tok.text} is not defined")
        return v  # type: ignore[return-value]

    def dtype(self) -> object:
        tok = self.next()
        dt = dtype_named(tok.text)
        if dt is None:
            self.i -= 1
            self.fail(f"unknown dtype '{tok.text}'")
        return dt

    def type(self) -> TileType:
        tok = self.peek()
        if tok is not None and tok.text == "block":
            self.next()
            self.expect("<")
            shape = self.int_list()
            self.expect(",")
            dt = self.dtype()
            space = "reg"
            if self.accept(","):
                space = self.next().text
            self.expect(">")
            return BlockType(tuple(shape), dt, space)  # type: ignore[arg-type]
        if tok is not None and tok.text == "tensor":
            self.next()
            self.expect("<")
            rank = self.next().text  # "2d" lexes as the number 2 and the name d
            if not rank.isdigit():
                self.fail(f"expected a rank like 2d, found '{rank}'")
            self.expect("d")
            self.expect(",")
            dt = self.dtype()
            self.expect(">")
            return TensorRefType(int(rank), dt)  # type: ignore[arg-type]
        return ScalarType(self.dtype())  # type: ignore[arg-type]

    def int_list(self) -> list[int]:
        self.expect("[")
        out: list[int] = []
        while not self.accept("]"):
            out.append(int(self.next().text))
            self.accept(",")
        return out

    # -- attributes ----------------------------------------------------------------------------

    def attr_value(self, kind: str) -> AttrValue:
        tok = self.peek()
        if tok is None:
            self.fail("expected an attribute value")
        if tok.text == "[":  # type: ignore[union-attr]
            self.next()
            items: list[AttrValue] = []
            while not self.accept("]"):
                items.append(self.attr_value("scalar"))
                self.accept(",")
            return tuple(items)
        tok = self.next()
        if tok.kind == "str":
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if tok.kind == "num":
            return float(tok.text) if any(c in tok.text for c in ".en") or "inf" in tok.text else int(tok.text)
        if tok.text in ("true", "false"):
            return tok.text == "true"
        dt = dtype_named(tok.text)
        if dt is not None:
            return dt
        self.i -= 1
        self.fail(f"cannot read attribute value '{tok.text}'")
        return 0

    def attrs(self) -> dict[str, AttrValue]:
        out: dict[str, AttrValue] = {}
        if not self.accept("{"):
            return out
        while not self.accept("}"):
            key = self.next().text
            self.expect("=")
            out[key] = self.attr_value("any")
            self.accept(",")
        return out

    # -- kernel --------------------------------------------------------------------------------

    def kernel(self) -> Kernel:
        self.expect("kernel")
        self.expect("@")
        name = self.next().text
        self.expect("(")
        params, roles = [], []
        while not self.accept(")"):
            pname = self.next().text
            self.expect(":")
            ty = self.type()
            params.append(self.define(pname, ty))
            roles.append(self.next().text)
            self.accept(",")
        self.expect("grid")
        self.expect("=")
        grid = self.grid()
        self.expect("schedule")
        self.expect("=")
        schedule = self.schedule()
        self.expect("extents")
        self.expect("=")
        extents = self.extents(params)
        body = self.region([])
        if self.peek() is not None:
            self.fail("text after the kernel")
        return Kernel(name, params, roles, extents, tuple(grid), body, schedule)

    def grid(self) -> list:
        start = self.expect("[").pos + 1
        depth = 1
        while depth:
            tok = self.next()
            depth += {"[": 1, "]": -1}.get(tok.text, 0)
        inner = self.text[start:self.toks[self.i - 1].pos]
        parts, level, cur = [], 0, ""
        for ch in inner:
            if ch == "," and level == 0:
                parts.append(cur)
                cur = ""
                continue
            level += {"(": 1, ")": -1}.get(ch, 0)
            cur += ch
        if cur.strip():
            parts.append(cur)
        return [parse_dim(p.strip()) for p in parts]

    def schedule(self) -> Schedule:
        self.expect("Schedule")
        self.expect("(")
        fields: dict[str, object] = {}
        while not self.accept(")"):
            key = self.next().text
            self.expect("=")
            if self.accept("("):
                vals = []
                while not self.accept(")"):
                    vals.append(int(self.next().text))
                    self.accept(",")
                fields[key] = tuple(vals)
            else:
                tok = self.next()
                fields[key] = tok.text[1:-1] if tok.kind == "str" else int(tok.text)
            self.accept(",")
        return Schedule(**fields)  # type: ignore[arg-type]

    def extents(self, params: list[Value]) -> dict[str, tuple[int, int]]:
        self.expect("{")
        out: dict[str, tuple[int, int]] = {}
        names = {p.hint: i for i, p in enumerate(params)}
        while not self.accept("}"):
            sym = self.next().text
            self.expect(":")
            ref = self.next().text  # "x.0"
            pname, _, axis = ref.rpartition(".")
            if pname not in names:
                self.fail(f"extent {sym} names unknown parameter '{pname}'")
            out[sym] = (names[pname], int(axis))
            self.accept(",")
        return out

    def region(self, args: list[Value]) -> Region:
        self.expect("{")
        ops: list[Op] = []
        while not self.accept("}"):
            ops.append(self.op())
        return Region(args, ops)

    def op(self) -> Op:
        results: list[str] = []
        if self.peek() is not None and self.peek().kind == "val":  # type: ignore[union-attr]
            while True:
                results.append(self.next().text)
                if not self.accept(","):
                    break
            self.expect("=")
        name = self.next().text
        if name == "for":
            return self.for_op(results)
        if name not in TILE_OPS:
            self.i -= 1
            self.fail(f"unknown tile op '{name}'")
        operands: list[Value] = []
        if self.accept("("):
            while not self.accept(")"):
                operands.append(self.use())
                self.accept(",")
        attrs = self.attrs()
        types: list[TileType] = []
        if results:
            self.expect(":")
            types = [self.type()]
            while self.accept(","):
                types.append(self.type())
        try:
            op = make_op(name, operands, **attrs)
        except (TileIRError, KeyError, TypeError, AssertionError, IndexError) as e:
            self.fail(f"{name}: {e}")
        if [r.ty for r in op.results] != types:
            self.fail(f"{name}: printed types {[str(t) for t in types]} differ from the inferred "
                      f"{[str(r.ty) for r in op.results]}")
        for r, rname in zip(op.results, results):
            self._bind(rname, r)
        return op

    def _bind(self, name: str, v: Value) -> None:
        if name in self.values:
            self.fail(f"value {name} is defined twice")
        v.hint = name[1:]
        self.values[name] = v

    def for_op(self, results: list[str]) -> Op:
        iv_name = self.next().text
        self.expect("=")
        start = self.use()
        self.expect("to")
        stop = self.use()
        self.expect("step")
        step = self.use()
        carried: list[tuple[str, Value]] = []
        if self.accept("iter_args"):
            self.expect("(")
            while not self.accept(")"):
                name = self.next().text
                self.expect("=")
                carried.append((name, self.use()))
                self.accept(",")
        types: list[TileType] = []
        if self.accept(":"):
            types = [self.type()]
            while self.accept(","):
                types.append(self.type())
        inits = [v for _, v in carried]
        if [v.ty for v in inits] != types or len(results) != len(inits):
            self.fail("for: result types must match the iter_args")
        iv = self.define(iv_name, start.ty)
        args = [self.define(name, v.ty) for name, v in carried]
        body = self.region([iv, *args])
        op = make_op("for", [start, stop, step, *inits], regions=[body])
        for r, rname in zip(op.results, results):
            self._bind(rname, r)
        return op


def parse_kernel(text: str) -> Kernel:
    """Read one kernel in the printer's text form (TileIRError with a line number on bad text)."""
    return _Parser(text).kernel()
