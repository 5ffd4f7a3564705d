"""The typed AST of `.tsr` source: what the parser builds and the checker annotates.

Every node carries the span of the text it came from. Expression nodes have a `ty` slot that the
checker fills with the expression's type (tensor dims and dtype included), so that lowering reads
types off the tree instead of recomputing them. Nodes compare by identity (`eq=False`): two `x`
occurrences are different nodes with different spans.

Type annotations (`Tensor["B", "D", bf16 @accum(f32)]`) and decorators are kept as ordinary
expressions here, exactly as written; the checker interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tessera.source import Span

if TYPE_CHECKING:
    from tessera.frontend.types import Type


# ---------------------------------------------------------------- expressions


@dataclass(eq=False)
class Expr:
    span: Span
    ty: Type | None = field(default=None, init=False, repr=False)


@dataclass(eq=False)
class Name(Expr):
    id: str = ""


@dataclass(eq=False)
class Constant(Expr):
    """int, float, str, bool or None literal (`...` is `EllipsisLit`)."""

    value: int | float | str | bool | None = None


@dataclass(eq=False)
class EllipsisLit(Expr):
    pass


@dataclass(eq=False)
class BinOp(Expr):
    """Arithmetic: op is one of `+ - * / // % ** @`."""

    op: str = ""
    left: Expr = None  # type: ignore[assignment]
    right: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class UnaryOp(Expr):
    """op is one of `-`, `+`, `not`."""

    op: str = ""
    operand: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class BoolOp(Expr):
    """`and` / `or` over two or more operands."""

    op: str = ""
    values: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class Compare(Expr):
    """A (possibly chained) comparison `a < b <= c`; ops from `== != < <= > >= in not in is is not`."""

    left: Expr = None  # type: ignore[assignment]
    ops: list[str] = field(default_factory=list)
    comparators: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class IfExp(Expr):
    test: Expr = None  # type: ignore[assignment]
    body: Expr = None  # type: ignore[assignment]
    orelse: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class Keyword:
    span: Span
    name: str
    value: Expr


@dataclass(eq=False)
class Call(Expr):
    func: Expr = None  # type: ignore[assignment]
    args: list[Expr] = field(default_factory=list)
    keywords: list[Keyword] = field(default_factory=list)


@dataclass(eq=False)
class Attribute(Expr):
    value: Expr = None  # type: ignore[assignment]
    attr: str = ""
    attr_span: Span | None = None


@dataclass(eq=False)
class Slice(Expr):
    """`lower:upper:step` inside a subscript; absent parts are None."""

    lower: Expr | None = None
    upper: Expr | None = None
    step: Expr | None = None


@dataclass(eq=False)
class Subscript(Expr):
    """`value[index]`; several comma-separated indices arrive as a `Tuple` index."""

    value: Expr = None  # type: ignore[assignment]
    index: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class Tuple(Expr):
    elts: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class List(Expr):
    elts: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class Dict(Expr):
    keys: list[Expr] = field(default_factory=list)
    values: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class Range(Expr):
    """`lo..=hi` (inclusive) or `lo..hi` (end exclusive); used in `where B in 1..=4096`."""

    lo: Expr = None  # type: ignore[assignment]
    hi: Expr = None  # type: ignore[assignment]
    inclusive: bool = True


# ---------------------------------------------------------------- statements


@dataclass(eq=False)
class Stmt:
    span: Span


@dataclass(eq=False)
class Assign(Stmt):
    """`x = e` or `a, b = e`; each target is a `Name` or a `Tuple` of names (nested allowed)."""

    targets: list[Expr] = field(default_factory=list)
    value: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class AugAssign(Stmt):
    """`x += e`; op is the binary operator without `=`."""

    target: Name = None  # type: ignore[assignment]
    op: str = ""
    value: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class AnnAssign(Stmt):
    """`x: T = e` (the value is required in Tessera)."""

    target: Name = None  # type: ignore[assignment]
    annotation: Expr = None  # type: ignore[assignment]
    value: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class Return(Stmt):
    value: Expr | None = None


@dataclass(eq=False)
class If(Stmt):
    """`if`/`elif`/`else`; an `elif` is an `If` alone in `orelse`."""

    test: Expr = None  # type: ignore[assignment]
    body: list[Stmt] = field(default_factory=list)
    orelse: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class For(Stmt):
    target: Expr = None  # type: ignore[assignment]
    iter: Expr = None  # type: ignore[assignment]
    body: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class While(Stmt):
    test: Expr = None  # type: ignore[assignment]
    body: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class Break(Stmt):
    pass


@dataclass(eq=False)
class Continue(Stmt):
    pass


@dataclass(eq=False)
class Pass(Stmt):
    pass


@dataclass(eq=False)
class Assert(Stmt):
    test: Expr = None  # type: ignore[assignment]
    msg: Expr | None = None


@dataclass(eq=False)
class WithItem:
    span: Span
    context: Expr
    name: Name | None = None


@dataclass(eq=False)
class With(Stmt):
    items: list[WithItem] = field(default_factory=list)
    body: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class ExprStmt(Stmt):
    value: Expr = None  # type: ignore[assignment]


# ---------------------------------------------------------------- module level


@dataclass(eq=False)
class Param:
    span: Span
    name: str
    annotation: Expr | None = None
    default: Expr | None = None
    kw_only: bool = False


@dataclass(eq=False)
class FunctionDef(Stmt):
    name: str = ""
    name_span: Span = None  # type: ignore[assignment]
    decorators: list[Expr] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    returns: Expr | None = None
    where: list[Expr] = field(default_factory=list)
    body: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class ImportName:
    span: Span
    name: str
    asname: str | None = None


@dataclass(eq=False)
class ImportFrom(Stmt):
    """`from stdlib.nn import a, b as c` or `from .layers import block` (level = leading dots)."""

    module: str = ""
    level: int = 0
    names: list[ImportName] = field(default_factory=list)


@dataclass(eq=False)
class Import(Stmt):
    """`import stdlib.nn as nn`; without `as`, the first component is bound (Python's rule)."""

    module: str = ""
    asname: str | None = None


@dataclass(eq=False)
class ConstDef(Stmt):
    """A module constant `NAME = expr` or `NAME: T = expr`."""

    name: str = ""
    name_span: Span = None  # type: ignore[assignment]
    annotation: Expr | None = None
    value: Expr = None  # type: ignore[assignment]


@dataclass(eq=False)
class Module:
    span: Span
    path: str
    body: list[Stmt] = field(default_factory=list)

    @property
    def imports(self) -> list[ImportFrom | Import]:
        return [s for s in self.body if isinstance(s, (ImportFrom, Import))]

    @property
    def constants(self) -> list[ConstDef]:
        return [s for s in self.body if isinstance(s, ConstDef)]

    @property
    def functions(self) -> list[FunctionDef]:
        return [s for s in self.body if isinstance(s, FunctionDef)]


Node = Expr | Stmt | Module | Param | Keyword | WithItem | ImportName


def iter_child_exprs(e: Expr) -> list[Expr]:
    """The direct sub-expressions of `e`, in source order (for generic walks)."""
    match e:
        case BinOp(left=l, right=r):
            return [l, r]
        case UnaryOp(operand=o):
            return [o]
        case BoolOp(values=vs):
            return list(vs)
        case Compare(left=l, comparators=cs):
            return [l, *cs]
        case IfExp(test=t, body=b, orelse=o):
            return [t, b, o]
        case Call(func=f, args=a, keywords=k):
            return [f, *a, *(kw.value for kw in k)]
        case Attribute(value=v):
            return [v]
        case Slice(lower=lo, upper=up, step=st):
            return [x for x in (lo, up, st) if x is not None]
        case Subscript(value=v, index=i):
            return [v, i]
        case Tuple(elts=es) | List(elts=es):
            return list(es)
        case Dict(keys=ks, values=vs):
            return [*ks, *vs]
        case Range(lo=lo, hi=hi):
            return [lo, hi]
    return []
