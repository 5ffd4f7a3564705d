"""The interpreter half of the `@kernel` lowering: statements, expressions and calls.

`KernelInterpreter` is a mixin of `KernelLowering` (tessera/ir/kernel_to_tile.py), which owns the
signature, the grid, block addressing and the result. Everything known at compile time is computed
here in Python (ints, floats, shapes, `if` on static values, `range` loops, unrolled; helper calls,
inlined); tiles and run-time scalars become Tile IR ops through `Emitter` (kernel_values.py);
`tile.range` / `tile.range_n` loops become Tile IR `for` loops carrying the variables the body
reassigns; `tile.*` calls go to the lowering table of kernel_intrinsics.py.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.diagnostics import error
from tessera.dtypes import BOOL, F32, INT64, DType, dtype_named
from tessera.frontend import ast
from tessera.frontend.builtins import BUILTINS, CONSTANTS, Builtin
from tessera.frontend.intrinsics import TILE_INTRINSICS
from tessera.frontend.types import DTypeValue
from tessera.ir.kernel_intrinsics import INTRINSIC_LOWERINGS, Bound, dot, static_math, transpose
from tessera.ir.kernel_values import (
    BlockRange,
    BlockSize,
    Context,
    TensorArg,
    TileRange,
    Weak,
    describe,
    is_runtime,
    is_tile,
)
from tessera.ir.tile.ops import BlockType, Value
from tessera.source import Span

MAX_INLINE_DEPTH = 32
MAX_STATIC_ITERATIONS = 1 << 16


@dataclass(frozen=True)
class _Namespace:
    name: str


@dataclass(frozen=True)
class _Intrinsic:
    name: str


@dataclass(frozen=True)
class _Builtin:
    name: str


@dataclass(frozen=True)
class _Function:
    fn: ast.FunctionDef
    module: str


class _Return(Exception):
    def __init__(self, value: object, span: Span) -> None:
        self.value, self.span = value, span


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod", "**": "pow"}
_PY_BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_COMPARE = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_PY_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
               ">=": operator.ge}
_ELEMENTWISE_BUILTINS = ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu",
                         "neg", "abs", "relu")


class KernelInterpreter:
    """Runs a kernel body (module docstring); a mixin of KernelLowering, whose state it uses."""

    # -- statements ------------------------------------------------------------------------

    def block(self, stmts: Sequence[ast.Stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: ast.Stmt) -> None:
        match s:
            case ast.Assign(targets=targets, value=value):
                v = self.expr(value)
                for t in targets:
                    self.bind(t, v, value.span)
            case ast.AnnAssign(target=target, value=value):
                self.bind(target, self.expr(value), value.span)
            case ast.AugAssign(target=target, op=op, value=value):
                self.bind(target, self.binop(op, self.lookup(target.id, target.span), self.expr(value), s.span),
                          s.span)
            case ast.ExprStmt(value=value):
                self.expr(value)
            case ast.Return(value=value):
                self._no_tile_loop("return", s.span)
                raise _Return(self.expr(value) if value is not None else None, value.span if value else s.span)
            case ast.If(test=test, body=body, orelse=orelse):
                self.block(body if self.static_truth(self.expr(test), test.span, "an if") else orelse)
            case ast.For(target=target, iter=it, body=body):
                self.for_(s, target, self.expr(it), body)
            case ast.While(test=test, body=body):
                n = 0
                while self.static_truth(self.expr(test), test.span, "a while loop"):
                    n += 1
                    if n > MAX_STATIC_ITERATIONS:
                        raise error("E-TYPE", "a static while loop in a kernel ran more than "
                                    f"{MAX_STATIC_ITERATIONS} iterations", s.span)
                    try:
                        self.block(body)
                    except _Break:
                        break
                    except _Continue:
                        continue
            case ast.Break():
                self._no_tile_loop("break", s.span)
                raise _Break()
            case ast.Continue():
                self._no_tile_loop("continue", s.span)
                raise _Continue()
            case ast.Pass():
                pass
            case ast.Assert(test=test, msg=msg):
                if not self.static_truth(self.expr(test), test.span, "an assert"):
                    text = self.expr(msg) if msg is not None else "assertion failed"
                    raise error("E-TYPE", f"assert failed while compiling '{self.fn.name}': {text}", s.span)
            case ast.With(items=items, body=body):
                for item in items:
                    self.expr(item.context)
                    if item.name is not None:
                        self.env[item.name.id] = None
                self.block(body)
            case _:
                raise error("E-SYNTAX", f"{type(s).__name__} is not supported in a @kernel", s.span)

    def _no_tile_loop(self, what: str, span: Span) -> None:
        if self.tile_loops:
            raise error("E-TYPE", f"'{what}' inside a tile loop: a tile.range loop runs every iteration", span)

    def static_truth(self, v: object, span: Span, what: str) -> bool:
        if is_runtime(v) or isinstance(v, BlockRange):
            raise error("E-TYPE", f"{what} on a run-time value in a @kernel: kernel control flow must be static", span,
                        notes=["branch on parameters and shapes; select elementwise with tile.where(cond, a, b)"])
        return bool(v)

    def bind(self, target: ast.Expr, v: object, span: Span) -> None:
        if isinstance(target, ast.Name):
            self.assign(target.id, v)
            return
        if isinstance(target, ast.Tuple):
            if not isinstance(v, (tuple, list)) or len(v) != len(target.elts):
                raise error("E-TYPE", f"cannot unpack {describe(v)} into {len(target.elts)} names", span)
            for t, x in zip(target.elts, v):
                self.bind(t, x, span)
            return
        raise error("E-SYNTAX", "only names and tuples of names can be assigned", target.span)

    def assign(self, name: str, v: object) -> None:
        if isinstance(v, Value) and not v.hint:
            v.hint = name
        self.env[name] = v

    # -- loops -----------------------------------------------------------------------------

    def for_(self, s: ast.For, target: ast.Expr, it: object, body: list[ast.Stmt]) -> None:
        if isinstance(it, TileRange):
            self.tile_loop(s, target, it, body)
            return
        if isinstance(it, (range, tuple, list)):
            for n, x in enumerate(it):
                if n > MAX_STATIC_ITERATIONS:
                    raise error("E-TYPE", f"a static loop in a kernel ran more than {MAX_STATIC_ITERATIONS} "
                                "iterations; use tile.range for a run-time loop", s.span)
                self.bind(target, x, s.span)
                try:
                    self.block(body)
                except _Break:
                    break
                except _Continue:
                    continue
            return
        raise error("E-TYPE", f"a kernel loops over range(...) (unrolled), tile.range(...) or tile.range_n(...), found "
                    f"{describe(it)}", s.iter.span)

    def tile_loop(self, s: ast.For, target: ast.Expr, rng: TileRange, body: list[ast.Stmt]) -> None:
        if not isinstance(target, ast.Name):
            raise error("E-SYNTAX", "a tile loop binds one name", target.span)
        names = _assigned(body)
        carried = [n for n in names if n in self.env and is_runtime(self.env[n])]
        fixed = {n: self.env[n] for n in names if n in self.env and n not in carried}
        inits: list[Value] = []
        weak: list[bool] = []
        for n in carried:
            v = self.env[n]
            weak.append(isinstance(v, Weak))
            inits.append(v.value if isinstance(v, Weak) else v)  # type: ignore[arg-type]
        start, stop = self.e.index(rng.start, s.span), self.e.index(rng.stop, s.span)
        step = self.e.const(rng.step, INT64)
        outer = dict(self.env)
        self.tile_loops += 1
        try:
            with self.b.for_(start, stop, step, inits, hints=carried, iv_hint=target.id) as loop:
                self.env = dict(outer)
                self.env[target.id] = BlockRange(loop.iv, rng.step)
                for n, arg, w in zip(carried, loop.args, weak):
                    self.env[n] = Weak(arg) if w else arg
                self.block(body)
                yields = [self.carried_value(n, self.env[n], init, s.span) for n, init in zip(carried, inits)]
                for n, before in fixed.items():
                    after = self.env.get(n)
                    if after is not before and not (_same_static(after, before)):
                        raise error("E-TYPE", f"'{n}' is a compile-time value before the tile loop ({describe(before)}) "
                                    f"and changes in it; start it as a tile or a run-time scalar", s.span)
                self.b.yield_(loop, yields)
        finally:
            self.tile_loops -= 1
        self.env = outer
        for n, r, w in zip(carried, loop.results, weak):
            self.env[n] = Weak(r) if w else r
        if rng.prefetch is not None:
            self.loop_depth[id(self.b._regions[-1].ops[-1])] = rng.prefetch

    def carried_value(self, name: str, v: object, init: Value, span: Span) -> Value:
        if isinstance(v, Weak):
            v = v.value
        want = init.ty
        if isinstance(v, (bool, int, float)):
            v = self.e.const(v, want.dtype)  # type: ignore[union-attr]
        if not isinstance(v, Value):
            raise error("E-TYPE", f"'{name}' is {describe(init)} before the tile loop and {describe(v)} in it", span)
        if v.ty == want:
            return v
        if v.ty.dtype != want.dtype:  # type: ignore[union-attr]
            raise error("E-DTYPE", f"'{name}' is {want} before the tile loop but {v.ty} in it: start it with the dtype "
                        "it has in the loop", span)
        if isinstance(want, BlockType):
            return self.e.fit(v, want.shape, span, f"'{name}' in the loop")
        raise error("E-TYPE", f"'{name}' is {want} before the tile loop but {v.ty} in it", span)

    # -- expressions -----------------------------------------------------------------------

    def expr(self, e: ast.Expr) -> object:
        match e:
            case ast.Constant(value=v):
                return v
            case ast.Name(id=n):
                return self.lookup(n, e.span)
            case ast.Attribute(value=base, attr=attr):
                return self.attribute(self.expr(base), attr, e.attr_span or e.span)
            case ast.Subscript(value=base, index=index):
                return self.subscript(self.expr(base), index, e.span)
            case ast.Call():
                return self.call(e)
            case ast.BinOp(op=op, left=a, right=b):
                return self.binop(op, self.expr(a), self.expr(b), e.span)
            case ast.UnaryOp(op=op, operand=x):
                return self.unaryop(op, self.expr(x), e.span)
            case ast.BoolOp(op=op, values=vs):
                out: object = None
                for x in vs:
                    out = self.expr(x)
                    truth = self.static_truth(out, x.span, f"'{op}'")
                    if (op == "and" and not truth) or (op == "or" and truth):
                        return out
                return out
            case ast.Compare(left=left, ops=ops, comparators=comps):
                return self.compare(left, ops, comps, e.span)
            case ast.IfExp(test=t, body=b, orelse=o):
                return self.expr(b) if self.static_truth(self.expr(t), t.span, "a conditional expression") \
                    else self.expr(o)
            case ast.Tuple(elts=es) | ast.List(elts=es):
                return tuple(self.expr(x) for x in es)
            case ast.Dict(keys=ks, values=vs):
                return {self.expr(k): self.expr(v) for k, v in zip(ks, vs)}
        raise error("E-SYNTAX", f"{type(e).__name__} is not supported in a @kernel", e.span)

    def lookup(self, name: str, span: Span) -> object:
        if name in self.env:
            return self.env[name]
        g = self.global_value(self.module, name, span)
        if g is not _MISSING:
            return g
        if name in CONSTANTS:
            return CONSTANTS[name].value  # type: ignore[attr-defined]
        dt = dtype_named(name)
        if dt is not None:
            return dt
        if name in ("tile", "effects", "kernel", "verify"):
            return _Namespace(name)
        if name in BUILTINS:
            return _Builtin(name)
        raise error("E-NAME", f"name '{name}' is not defined here (names defined only inside a tile loop are not "
                    "visible after it)", span)

    def global_value(self, module: str, name: str, span: Span) -> object:
        key = (module, name)
        if key in self._globals:
            return self._globals[key]
        mod = self.checked.program.modules[module]
        out: object = _MISSING
        for f in mod.tree.functions:
            if f.name == name:
                out = _Function(f, module)
        if out is _MISSING and any(c.name == name for c in mod.tree.constants):
            out = self.statics.name(name, module, span)
        if out is _MISSING:
            for imp in mod.tree.imports:
                if isinstance(imp, ast.Import) and imp in mod.resolved:
                    if (imp.asname or imp.module.split(".")[0]) == name:
                        out = _Namespace(mod.resolved[imp] if imp.asname else name)
                elif isinstance(imp, ast.ImportFrom):
                    for nm in imp.names:
                        if (nm.asname or nm.name) != name:
                            continue
                        if nm in mod.resolved:
                            out = _Namespace(mod.resolved[nm])
                        elif imp in mod.resolved:
                            out = self.global_value(mod.resolved[imp], nm.name, span)
        self._globals[key] = out
        return out

    def attribute(self, base: object, attr: str, span: Span) -> object:
        if isinstance(base, _Namespace):
            if base.name == "tile":
                if attr not in INTRINSIC_LOWERINGS:
                    raise error("E-NAME", f"'tile' has no member '{attr}'", span)
                return _Intrinsic(attr)
            if base.name in self.checked.program.modules:
                v = self.global_value(base.name, attr, span)
                if v is not _MISSING:
                    return v
            sub = f"{base.name}.{attr}"
            if any(k == sub or k.startswith(sub + ".") for k in self.checked.program.modules):
                return _Namespace(sub)
            if base.name == "effects":
                return _Builtin(f"effects.{attr}")
            raise error("E-NAME", f"'{base.name}' has no member '{attr}'", span)
        if isinstance(base, Context):
            return self.context_field(attr, span)
        if isinstance(base, TensorArg):
            if attr == "shape":
                return base.shape
            if attr == "ndim":
                return base.rank
            if attr == "dtype":
                return base.dtype
            raise error("E-TYPE", f"'{base.name}.{attr}': a kernel reads tensors through tile.load", span)
        if is_tile(base):
            assert isinstance(base, Value) and isinstance(base.ty, BlockType)
            if attr == "shape":
                return base.ty.shape
            if attr == "ndim":
                return base.ty.rank
            if attr == "dtype":
                return base.ty.dtype
            if attr == "T":
                return transpose(self, base, span)
        if isinstance(base, BlockRange) and attr in ("start", "size"):
            return getattr(base, attr)
        if isinstance(base, DType) and attr == "name":
            return base.name
        raise error("E-NAME", f"{describe(base)} has no attribute '{attr}' in a @kernel", span)

    def subscript(self, base: object, index: ast.Expr, span: Span) -> object:
        if is_tile(base):
            return self.index_tile(base, index, span)  # type: ignore[arg-type]
        if isinstance(base, TensorArg):
            raise error("E-TYPE", f"'{base.name}[...]': a kernel reads tensors through tile.load(t, rows=..., cols=...)",
                        span)
        if isinstance(base, (_Function, _Intrinsic)):
            raise error("E-TYPE", "launching a kernel over a grid from a kernel is not supported", span)
        key = self.expr(index)
        try:
            return base[key]  # type: ignore[index]
        except (IndexError, KeyError, TypeError) as ex:
            raise error("E-TYPE", f"cannot index {describe(base)} with {describe(key)}: {ex}", span) from None

    def index_tile(self, v: Value, index: ast.Expr, span: Span) -> Value:
        parts = index.elts if isinstance(index, ast.Tuple) else [index]
        shape = v.ty.shape  # type: ignore[union-attr]
        consuming = [p for p in parts if not _is_none(p) and not isinstance(p, ast.EllipsisLit)]
        out: list[int] = []
        axis = 0
        for p in parts:
            if isinstance(p, ast.EllipsisLit):
                fill = len(shape) - len(consuming)
                out.extend(shape[axis:axis + fill])
                axis += fill
            elif _is_none(p):
                out.append(1)
            elif isinstance(p, ast.Slice) and p.lower is None and p.upper is None and p.step is None:
                out.append(shape[axis])
                axis += 1
            else:
                raise error("E-TYPE", "a tile is indexed only with `:`, `None` and `...` (as in l[:, None])", p.span)
        out.extend(shape[axis:])
        return self.e.reshape(v, tuple(out))

    def binop(self, op: str, a: object, b: object, span: Span) -> object:
        if op == "@":
            if not (is_tile(a) and is_tile(b)):
                raise error("E-TYPE", f"'@' in a kernel multiplies two tiles, found {describe(a)} and {describe(b)}", span)
            return dot(self, a, b, None, span)  # type: ignore[arg-type]
        a, b = _offset(a), _offset(b)
        if not is_runtime(a) and not is_runtime(b):
            if not (_is_num(a) and _is_num(b)):
                if op == "+" and isinstance(a, (tuple, str)) and type(a) is type(b):
                    return a + b  # type: ignore[operator]
                if op == "*" and isinstance(a, tuple) and isinstance(b, int):
                    return a * b
                raise error("E-TYPE", f"unsupported operands for '{op}': {describe(a)} and {describe(b)}", span)
            try:
                out = _PY_BINOPS[op](a, b)
            except ZeroDivisionError:
                raise error("E-TYPE", f"division by zero while compiling '{self.fn.name}'", span) from None
            return int(out) if isinstance(out, int) else out
        return self.binary(_BINOPS[op], a, b, span)

    def binary(self, name: str, a: object, b: object, span: Span) -> object:
        if not is_runtime(a) and not is_runtime(b) and name in ("maximum", "minimum"):
            return (max if name == "maximum" else min)(a, b)  # type: ignore[type-var]
        for x in (a, b):
            if not (is_runtime(x) or _is_num(x)):
                raise error("E-TYPE", f"'{name}' takes tiles and numbers, found {describe(x)}", span)
        dt = self.e.result_dtype([a, b])
        if name == "div" and not dt.is_float:
            dt = F32
        return self.e.elementwise(name, [a, b], span, dtype=dt)

    def unaryop(self, op: str, x: object, span: Span) -> object:
        x = _offset(x)
        if op == "not":
            if is_runtime(x):
                return self.e.elementwise("not", [x], span, dtype=BOOL)
            return not x
        if op == "+":
            return x
        if not is_runtime(x):
            if not _is_num(x):
                raise error("E-TYPE", f"unary '-' of {describe(x)}", span)
            return -x  # type: ignore[operator]
        return self.e.elementwise("neg", [x], span)

    def compare(self, left: ast.Expr, ops: list[str], comps: list[ast.Expr], span: Span) -> object:
        a = self.expr(left)
        result: object = True
        for op, c in zip(ops, comps):
            b = self.expr(c)
            x, y = _offset(a), _offset(b)
            if is_runtime(x) or is_runtime(y):
                if len(ops) > 1 or op not in _COMPARE:
                    raise error("E-TYPE", f"'{op}' on run-time values: compare pairwise", span)
                dt = self.e.result_dtype([x, y])
                return self.e.elementwise("cmp", [x, y], span, dtype=dt, pred=_COMPARE[op])
            if op in ("in", "not in"):
                ok = x in y  # type: ignore[operator]
                r = ok if op == "in" else not ok
            elif op in ("is", "is not"):
                r = (x is y) if op == "is" else (x is not y)
            else:
                r = _PY_COMPARE[op](x, y)
            if not r:
                return False
            result, a = r, b
        return result

    def where(self, cond: object, a: object, b: object, span: Span) -> object:
        if not is_runtime(cond) and not isinstance(cond, (tuple, list)):
            return a if cond else b
        return self.e.select(cond, a, b, span)

    def unary_math(self, name: str, x: object, span: Span, **attrs: object) -> object:
        x = _offset(x)
        if not is_runtime(x):
            if not _is_num(x):
                raise error("E-TYPE", f"{name} takes a tile or a number, found {describe(x)}", span)
            return static_math(name, x, span)  # type: ignore[arg-type]
        dt = self.e.result_dtype([x])
        if name not in ("neg", "abs", "relu") and not dt.is_float:
            raise error("E-DTYPE", f"{name} needs a floating-point tile, found {dt}", span,
                        fixit=f"tile.cast(x, {F32})")
        return self.e.elementwise(name, [x], span, dtype=dt, **attrs)

    # -- calls -----------------------------------------------------------------------------

    def call(self, e: ast.Call) -> object:
        f = self.expr(e.func)
        pos = [self.expr(a) for a in e.args]
        kws = {kw.name: self.expr(kw.value) for kw in e.keywords}
        nodes_kw = {kw.name: kw.value for kw in e.keywords}
        if isinstance(f, _Intrinsic):
            bound = _bind(TILE_INTRINSICS[f.name], pos, list(e.args), kws, nodes_kw, e.span)
            return INTRINSIC_LOWERINGS[f.name](self, bound)
        if isinstance(f, _Builtin):
            return self.builtin(f.name, pos, list(e.args), kws, nodes_kw, e.span)
        if isinstance(f, _Function):
            return self.inline(f, pos, kws, e.span)
        if callable(f) and not isinstance(f, (Value, TensorArg)):
            return f(*pos, **kws)
        raise error("E-TYPE", f"{describe(f)} is not callable", e.func.span)

    def builtin(self, name: str, pos: list[object], pos_nodes: list[ast.Expr], kws: dict[str, object],
                nodes_kw: dict[str, ast.Expr], span: Span) -> object:
        if name.startswith("effects."):
            return None
        b = BUILTINS[name]
        a = _bind(b, pos, pos_nodes, kws, nodes_kw, span)
        if name in _ELEMENTWISE_BUILTINS:
            return self.unary_math(name, a["x"], span)
        if name == "gelu":
            x = a["x"]
            if not is_runtime(x):
                raise error("E-TYPE", "gelu of a number at compile time is not supported; write the formula", span)
            return self.unary_math("gelu", x, span, approximate=a["approximate"])
        if name in ("maximum", "minimum"):
            return self.binary(name, _offset(a["a"]), _offset(a["b"]), span)
        if name == "where":
            return self.where(a["cond"], _offset(a["a"]), _offset(a["b"]), span)
        if name == "clip":
            return self.binary("maximum", self.binary("minimum", _offset(a["x"]), _offset(a["hi"]), span),
                               _offset(a["lo"]), span)
        if name in ("isnan", "isinf"):
            x = _offset(a["x"])
            if not is_runtime(x):
                return (math.isnan if name == "isnan" else math.isinf)(x)  # type: ignore[arg-type]
            return self.e.elementwise(name, [x], span, dtype=self.e.result_dtype([x]))
        if name == "cast":
            dt = a["dtype"]
            if not isinstance(dt, DType):
                raise error("E-TYPE", f"cast takes a dtype, found {describe(dt)}", span)
            return self.e.cast(_offset(a["x"]), dt, span)
        if name in ("int", "float", "bool"):
            x = _offset(a["x"])
            if is_runtime(x):
                raise error("E-TYPE", f"{name}() of a run-time value in a kernel; use tile.cast", span)
            return {"int": int, "float": float, "bool": bool}[name](x)  # type: ignore[call-overload]
        if name == "len":
            x = a["x"]
            if isinstance(x, TensorArg):
                return x.shape[0]
            if is_tile(x):
                return x.ty.shape[0]  # type: ignore[union-attr]
            return len(x)  # type: ignore[arg-type]
        if name == "range":
            args = [a["start"]] if a["stop"] is None else [a["start"], a["stop"], a["step"]]
            if any(is_runtime(_offset(x)) for x in args):
                raise error("E-TYPE", "range(...) in a kernel is unrolled at compile time; for a run-time loop use "
                            "tile.range(...)", span)
            return range(*(int(_offset(x)) for x in args))  # type: ignore[arg-type]
        if name == "dict":
            return dict(kws)
        if name == "Schedule":
            raise error("E-TYPE", "a Schedule inside a kernel has no effect; give it with @kernel.schedule", span)
        raise error("E-TYPE", f"'{name}' is a graph-level builtin; it is not available in a @kernel", span,
                    notes=["kernels compute on tiles with the tile.* intrinsics and elementwise math"])

    def inline(self, f: _Function, pos: list[object], kws: dict[str, object], span: Span) -> object:
        sig = self.checked.signatures.get(f.fn)
        if sig is None or sig.kind != "host":
            raise error("E-TYPE", f"a @kernel can call undecorated helpers only; '{f.fn.name}' is "
                        f"{'@' + sig.kind if sig else 'unchecked'}", span)
        if self.depth >= MAX_INLINE_DEPTH:
            raise error("E-TYPE", f"helper calls nest more than {MAX_INLINE_DEPTH} deep (recursion?)", span)
        frame: dict[str, object] = {}
        positional = [p for p in f.fn.params if not p.kw_only]
        if len(pos) > len(positional):
            raise error("E-TYPE", f"'{f.fn.name}' takes {len(positional)} positional arguments", span)
        for p, v in zip(positional, pos):
            frame[p.name] = v
        frame.update(kws)
        for p in f.fn.params:
            if p.name not in frame:
                if p.default is None:
                    raise error("E-TYPE", f"call to '{f.fn.name}' is missing the argument '{p.name}'", span)
                frame[p.name] = self.statics.eval(p.default, f.module)
        saved_env, saved_module = self.env, self.module
        self.env, self.module = frame, f.module
        self.depth += 1
        loops, self.tile_loops = self.tile_loops, 0
        try:
            self.block(f.fn.body)
            return None
        except _Return as r:
            return r.value
        finally:
            self.env, self.module = saved_env, saved_module
            self.depth -= 1
            self.tile_loops = loops



class _Missing:
    pass


_MISSING = _Missing()


def _bind(b: Builtin, pos: list[object], pos_nodes: list[ast.Expr], kws: dict[str, object],
          nodes_kw: dict[str, ast.Expr], span: Span) -> Bound:
    """Arguments to parameters (the checker has validated the call's shape), defaults filled in."""
    values: dict[str, object] = {}
    nodes: dict[str, ast.Expr | None] = {}
    positional = [p for p in b.params if not p.kw_only and not p.variadic]
    for p, v, n in zip(positional, pos, pos_nodes):
        values[p.name], nodes[p.name] = v, n
    for k, v in kws.items():
        values[k], nodes[k] = v, nodes_kw.get(k)
    for p in b.params:
        if p.name not in values and not p.variadic:
            if p.required:
                raise error("E-TYPE", f"{b.name}() is missing the argument '{p.name}'", span)
            d = p.default
            values[p.name] = d.dtype if isinstance(d, DTypeValue) else d
            nodes[p.name] = None
    return Bound(values, nodes, span)


def _is_none(p: ast.Expr) -> bool:
    return isinstance(p, ast.Constant) and p.value is None


def _is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, BlockRange)


def _offset(x: object) -> object:
    """A block range in arithmetic is its start offset; a block size a plain int."""
    if isinstance(x, BlockRange):
        return x.start
    if isinstance(x, BlockSize):
        return int(x)
    return x


def _same_static(a: object, b: object) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - values without a usable ==
        return False


def _assigned(stmts: Sequence[ast.Stmt]) -> list[str]:
    """Names a block assigns (in order of first assignment), nested blocks and tile.cp_async
    destinations included."""
    out: list[str] = []

    def add(n: str) -> None:
        if n not in out:
            out.append(n)

    def target(t: ast.Expr) -> None:
        if isinstance(t, ast.Name):
            add(t.id)
        elif isinstance(t, ast.Tuple):
            for x in t.elts:
                target(x)

    def walk(ss: Sequence[ast.Stmt]) -> None:
        for s in ss:
            match s:
                case ast.Assign(targets=ts):
                    for t in ts:
                        target(t)
                case ast.AnnAssign(target=t) | ast.AugAssign(target=t):
                    target(t)
                case ast.For(target=t, body=body):
                    target(t)
                    walk(body)
                case ast.If(body=body, orelse=orelse):
                    walk(body)
                    walk(orelse)
                case ast.While(body=body) | ast.With(body=body):
                    walk(body)
                case ast.ExprStmt(value=ast.Call(func=ast.Attribute(value=ast.Name(id="tile"), attr="cp_async"),
                                                 args=[ast.Name(id=n), *_])):
                    add(n)

    walk(stmts)
    return out
