"""A compact, deterministic text form of the AST, for golden parse tests and debugging.

Expressions print on one line as S-expressions, `(BinOp + (Name x) (Constant 1))`; statements print
one per line, with the bodies of compound statements indented below them:

    (FunctionDef f
      (params (Param x : (Name int)))
      (body
        (Return (Name x))))

Spans are left out by `dump` (so a golden text does not change when code moves), and appended to
each node's head as `@line:col-end_line:end_col` by `dump_with_spans`.
"""

from __future__ import annotations

from tessera.frontend import ast

__all__ = ["dump", "dump_with_spans"]


def dump(node: ast.Node | list[ast.Stmt]) -> str:
    """The text form of an AST node, a module, or a list of statements (one per line)."""
    return _Dumper(spans=False).render(node)


def dump_with_spans(node: ast.Node | list[ast.Stmt]) -> str:
    """Like `dump`, with each node's span after its head: `(Name x @1:5-1:6)`."""
    return _Dumper(spans=True).render(node)


class _Dumper:
    def __init__(self, *, spans: bool) -> None:
        self.spans = spans

    def render(self, node: ast.Node | list[ast.Stmt]) -> str:
        if isinstance(node, list):
            return "\n".join(line for s in node for line in self.stmt(s))
        if isinstance(node, ast.Expr):
            return self.expr(node)
        return "\n".join(self.stmt(node))

    def head(self, name: str, node: object) -> str:
        if not self.spans:
            return name
        sp = getattr(node, "span", None)
        if sp is None:
            return name
        return f"{name} @{sp.line}:{sp.col}-{sp.end_line}:{sp.end_col}"

    # ----------------------------------------------------------- expressions (one line)

    def opt(self, e: ast.Expr | None) -> str:
        return "_" if e is None else self.expr(e)

    def expr(self, e: ast.Expr) -> str:
        parts = self.expr_parts(e)
        name = "Ellipsis" if isinstance(e, ast.EllipsisLit) else type(e).__name__
        return "(" + " ".join([self.head(name, e), *parts]) + ")"

    def expr_parts(self, e: ast.Expr) -> list[str]:
        x = self.expr
        match e:
            case ast.Name(id=name):
                return [name]
            case ast.Constant(value=value):
                return [repr(value)]
            case ast.EllipsisLit():
                return []
            case ast.BinOp(op=op, left=left, right=right):
                return [op, x(left), x(right)]
            case ast.UnaryOp(op=op, operand=operand):
                return [op, x(operand)]
            case ast.BoolOp(op=op, values=values):
                return [op, *map(x, values)]
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                out = [x(left)]
                for op, right in zip(ops, comparators, strict=True):
                    out += [op, x(right)]
                return out
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return [x(test), x(body), x(orelse)]
            case ast.Call(func=func, args=args, keywords=keywords):
                return [x(func), *map(x, args), *(self.keyword(k) for k in keywords)]
            case ast.Attribute(value=value, attr=attr):
                return [x(value), attr]
            case ast.Slice(lower=lower, upper=upper, step=step):
                return [self.opt(lower), self.opt(upper), self.opt(step)]
            case ast.Subscript(value=value, index=index):
                return [x(value), x(index)]
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                return list(map(x, elts))
            case ast.Dict(keys=keys, values=values):
                return [f"({x(k)} {x(v)})" for k, v in zip(keys, values, strict=True)]
            case ast.Range(lo=lo, hi=hi, inclusive=inclusive):
                return ["..=" if inclusive else "..", x(lo), x(hi)]
        raise TypeError(f"ast_dump: unknown expression node {type(e).__name__}")

    def keyword(self, k: ast.Keyword) -> str:
        return f"({self.head('kw', k)} {k.name} {self.expr(k.value)})"

    # ----------------------------------------------------------- statements (one per line)

    def block(self, label: str, body: list[ast.Stmt]) -> list[str]:
        lines = [f"({label}"]
        for s in body:
            lines += ["  " + line for line in self.stmt(s)]
        lines[-1] += ")"
        return lines

    def compound(self, head: str, groups: list[list[str]]) -> list[str]:
        lines = [f"({head}"]
        for group in groups:
            lines += ["  " + line for line in group]
        lines[-1] += ")"
        return lines

    def stmt(self, s: object) -> list[str]:
        x = self.expr
        h = self.head
        match s:
            case ast.Module(path=path, body=body):
                return self.compound(f"{h('Module', s)} {path}", [self.stmt(b) for b in body])
            case ast.FunctionDef():
                return self.function(s)
            case ast.ConstDef(name=name, annotation=annotation, value=value):
                ann = f" : {x(annotation)} =" if annotation is not None else ""
                return [f"({h('ConstDef', s)} {name}{ann} {x(value)})"]
            case ast.Import(module=module, asname=asname):
                alias = f" as {asname}" if asname else ""
                return [f"({h('Import', s)} {module}{alias})"]
            case ast.ImportFrom(module=module, level=level, names=names):
                shown = [n.name if n.asname is None else f"({n.name} as {n.asname})" for n in names]
                return [f"({h('ImportFrom', s)} {'.' * level}{module} {' '.join(shown)})"]
            case ast.Assign(targets=targets, value=value):
                return [f"({h('Assign', s)} {' '.join(map(x, targets))} {x(value)})"]
            case ast.AugAssign(target=target, op=op, value=value):
                return [f"({h('AugAssign', s)} {op} {x(target)} {x(value)})"]
            case ast.AnnAssign(target=target, annotation=annotation, value=value):
                return [f"({h('AnnAssign', s)} {x(target)} : {x(annotation)} = {self.opt(value)})"]
            case ast.Return(value=value):
                return [f"({h('Return', s)})" if value is None else f"({h('Return', s)} {x(value)})"]
            case ast.Assert(test=test, msg=msg):
                tail = f" {x(msg)}" if msg is not None else ""
                return [f"({h('Assert', s)} {x(test)}{tail})"]
            case ast.ExprStmt(value=value):
                return [f"({h('Expr', s)} {x(value)})"]
            case ast.Pass() | ast.Break() | ast.Continue():
                return [f"({h(type(s).__name__, s)})"]
            case ast.If(test=test, body=body, orelse=orelse):
                groups = [self.block("body", body)]
                if orelse:
                    groups.append(self.block("else", orelse))
                return self.compound(f"{h('If', s)} {x(test)}", groups)
            case ast.For(target=target, iter=iterable, body=body):
                return self.compound(f"{h('For', s)} {x(target)} {x(iterable)}", [self.block("body", body)])
            case ast.While(test=test, body=body):
                return self.compound(f"{h('While', s)} {x(test)}", [self.block("body", body)])
            case ast.With(items=items, body=body):
                shown = " ".join(self.with_item(i) for i in items)
                return self.compound(f"{h('With', s)} {shown}", [self.block("body", body)])
        raise TypeError(f"ast_dump: unknown statement node {type(s).__name__}")

    def with_item(self, item: ast.WithItem) -> str:
        name = f" as {item.name.id}" if item.name is not None else ""
        return f"({self.head('item', item)} {self.expr(item.context)}{name})"

    def param(self, p: ast.Param) -> str:
        parts = [self.head("Param", p), p.name]
        if p.kw_only:
            parts.append("kw")
        if p.annotation is not None:
            parts += [":", self.expr(p.annotation)]
        if p.default is not None:
            parts += ["=", self.expr(p.default)]
        return "(" + " ".join(parts) + ")"

    def function(self, f: ast.FunctionDef) -> list[str]:
        groups: list[list[str]] = []
        if f.decorators:
            groups.append([f"(decorators {' '.join(map(self.expr, f.decorators))})"])
        if f.params:
            groups.append(self.compound("params", [[self.param(p)] for p in f.params]))
        if f.returns is not None:
            groups.append([f"(returns {self.expr(f.returns)})"])
        if f.where:
            groups.append([f"(where {' '.join(map(self.expr, f.where))})"])
        groups.append(self.block("body", f.body))
        return self.compound(f"{self.head('FunctionDef', f)} {f.name}", groups)
