"""Graph IR: the data structures and the op catalogue.

A `Module` holds `Function`s; a function is a straight-line list of `Op`s in SSA form (host-level
control flow was unrolled and helpers inlined when the graph was built). Values are typed tensors
over symbolic dims (`tensor<[B, D//4], bf16>`); rank-0 tensors stand for scalars.

Each op names an `OpDef` in `OPS`, the catalogue: its operand count, its attribute schema and its
result-type rule. The verifier, printer, parser, passes and the reference evaluator all read the
catalogue; adding an op is adding a row.

Conventions the catalogue enforces (the builder inserts what is needed):
- elementwise operands have identical shapes (broadcasts are explicit `broadcast_to` ops);
- `matmul` operands have identical batch dims; accumulation dtype is the `accum` attribute;
- numeric policies are explicit: `cast` carries its rounding, reductions and matmuls their `accum`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tessera.constraints import Constraint
from tessera.dtypes import BOOL, INT64, DType
from tessera.source import Span
from tessera.symbolic import Dim, DimError, parse_dim

IR_VERSION = 1


class IRError(Exception):
    """A malformed IR (verifier failure, bad text): an internal error of a pass, or bad input text."""


# ---------------------------------------------------------------- types and values


@dataclass(frozen=True)
class TensorType:
    dims: tuple[Dim, ...]
    dtype: DType

    @property
    def rank(self) -> int:
        return len(self.dims)

    def with_dims(self, dims: Sequence[Dim]) -> TensorType:
        return TensorType(tuple(dims), self.dtype)

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(self.dims, dtype)

    def __str__(self) -> str:
        return f"tensor<[{', '.join(map(str, self.dims))}], {self.dtype}>"


_ids = itertools.count()


@dataclass(eq=False)
class Value:
    """An SSA value: a function argument (producer None) or the result of one op."""

    ty: TensorType
    hint: str = ""  # a readable name for the printer (`x`, `h`), never semantics
    producer: Op | None = field(default=None, repr=False)
    uid: int = field(default_factory=lambda: next(_ids), repr=False)

    def __hash__(self) -> int:
        return self.uid


AttrValue = int | float | bool | str | DType | Dim | tuple


@dataclass(eq=False)
class Op:
    name: str
    operands: tuple[Value, ...]
    attrs: tuple[tuple[str, AttrValue], ...]
    results: tuple[Value, ...]
    span: Span | None = None

    def attr(self, key: str) -> AttrValue:
        for k, v in self.attrs:
            if k == key:
                return v
        raise KeyError(f"op {self.name} has no attribute '{key}'")

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]

    @property
    def opdef(self) -> OpDef:
        return OPS[self.name]


@dataclass(eq=False)
class Function:
    name: str
    params: list[Value]
    ops: list[Op]
    returns: list[Value]
    # Function attributes: the effect set (spec §8), the where constraints (as text, for guards),
    # the numeric policy of the parameters, and the symbols of the signature in order.
    effects: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    span: Span | None = None

    @property
    def result_types(self) -> list[TensorType]:
        return [v.ty for v in self.returns]

    def walk(self) -> Iterator[Op]:
        yield from self.ops


@dataclass(eq=False)
class Module:
    functions: list[Function] = field(default_factory=list)

    def function(self, name: str) -> Function:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)


# ---------------------------------------------------------------- the catalogue

# Attribute kinds of the schema: how the printer writes them and the parser reads them back.
#   "int" "float" "bool" "str" "dtype" "dim" "ints" (tuple of int) "dims" (tuple of Dim)
#   "func" (the name of a function of the module, written `@name`)
AttrSchema = tuple[tuple[str, str], ...]
InferFn = Callable[[Sequence[TensorType], dict[str, AttrValue]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    name: str
    n_operands: int  # -1: variadic
    attrs: AttrSchema
    infer: InferFn
    category: str  # elementwise | reduction | matmul | shape | nn | creation | effect
    effect: str | None = None
    doc: str = ""


OPS: dict[str, OpDef] = {}


def _def(name: str, n: int, attrs: AttrSchema, infer: InferFn, category: str, doc: str,
         effect: str | None = None) -> None:
    OPS[name] = OpDef(name, n, attrs, infer, category, effect, doc)


def _same(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[0]]


def _as_bool(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[0].with_dtype(BOOL)]


def _select(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[1]]


def _cast(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[0].with_dtype(a["dtype"])]  # type: ignore[arg-type]


def _creation(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [TensorType(tuple(a["shape"]), a["dtype"])]  # type: ignore[arg-type]


def _iota(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [TensorType((a["n"],), a["dtype"])]  # type: ignore[arg-type]


def _constant(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [TensorType((), a["dtype"])]  # type: ignore[arg-type]


def _reduce_dims(t: TensorType, axes: Sequence[int], keepdims: bool) -> tuple[Dim, ...]:
    one = Dim.const(1)
    return tuple(one if i in axes else d for i, d in enumerate(t.dims) if keepdims or i not in axes)


def _reduce(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    dims = _reduce_dims(ts[0], a["axes"], a["keepdims"])  # type: ignore[arg-type]
    kind = a["kind"]
    dtype = INT64 if kind in ("argmax", "argmin") else a["accum"]
    return [TensorType(dims, dtype)]  # type: ignore[arg-type]


def _matmul(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    x, y = ts
    return [TensorType((*x.dims[:-1], y.dims[-1]), a["accum"])]  # type: ignore[arg-type]


def _transpose(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[0].with_dims([ts[0].dims[i] for i in a["perm"]])]  # type: ignore[union-attr]


def _reshape(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [ts[0].with_dims(a["shape"])]  # type: ignore[arg-type]


def _slice(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    dims = []
    for lo, hi, st in zip(a["starts"], a["stops"], a["steps"]):  # type: ignore[call-overload]
        ext = hi - lo
        k = abs(st)
        dims.append(ext if k == 1 else (ext + (k - 1)) // k)
    return [ts[0].with_dims(dims)]


def _concat(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    ax = a["axis"]
    total = ts[0].dims[ax]  # type: ignore[index]
    for t in ts[1:]:
        total = total + t.dims[ax]  # type: ignore[index]
    dims = list(ts[0].dims)
    dims[ax] = total  # type: ignore[index]
    return [ts[0].with_dims(dims)]


def _gather(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    table, ids = ts
    return [TensorType((*ids.dims, *table.dims[1:]), table.dtype)]


def _logsumexp(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [TensorType(_reduce_dims(ts[0], a["axes"], a["keepdims"]), a["accum"])]  # type: ignore[arg-type]


def _attention(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    q, _, v = ts
    return [TensorType((*q.dims[:-1], v.dims[-1]), q.dtype)]


def _none(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return []


UNARY = ("neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid",
         "relu", "silu", "not")
BINARY = ("add", "sub", "mul", "div", "floordiv", "mod", "pow", "maximum", "minimum", "and", "or")
COMPARE_PREDICATES = ("eq", "ne", "lt", "le", "gt", "ge")
REDUCE_KINDS = ("sum", "mean", "max", "min", "prod", "argmax", "argmin")
ROUNDING = ("nearest_even", "toward_zero", "stochastic")

for _n in UNARY:
    _def(_n, 1, (), _same, "elementwise", f"elementwise {_n}")
_def("isnan", 1, (), _as_bool, "elementwise", "elementwise isnan")
_def("isinf", 1, (), _as_bool, "elementwise", "elementwise isinf")
_def("gelu", 1, (("approximate", "str"),), _same, "elementwise", "gelu, exact ('none') or 'tanh'")
for _n in BINARY:
    _def(_n, 2, (), _same, "elementwise", f"elementwise {_n}; operands of one shape and dtype")
_def("cmp", 2, (("pred", "str"),), _as_bool, "elementwise", "elementwise comparison -> bool")
_def("select", 3, (), _select, "elementwise", "select(cond, a, b)")
_def("cast", 1, (("dtype", "dtype"), ("rounding", "str")), _cast, "elementwise", "convert the dtype")

_def("constant", 0, (("value", "float"), ("dtype", "dtype")), _constant, "creation", "a rank-0 constant")
_def("fill", 0, (("shape", "dims"), ("value", "float"), ("dtype", "dtype")), _creation, "creation",
     "a tensor of one value")
_def("iota", 0, (("n", "dim"), ("dtype", "dtype")), _iota, "creation", "0, 1, ..., n-1")
_def("extent", 0, (("value", "dim"), ("dtype", "dtype")), _constant, "creation",
     "the value of a (symbolic) extent as a rank-0 tensor; a constant once shapes are specialised")
_def("random", 0, (("shape", "dims"), ("dtype", "dtype"), ("dist", "str"), ("seed", "int")), _creation,
     "creation", "samples of dist ('normal' | 'uniform'), keyed by seed", effect="random")

_def("broadcast_to", 1, (("shape", "dims"),), _reshape, "shape", "NumPy broadcast to shape")
_def("reshape", 1, (("shape", "dims"),), _reshape, "shape", "same elements, row-major, new shape")
_def("transpose", 1, (("perm", "ints"),), _transpose, "shape", "permute axes")
_def("slice", 1, (("starts", "dims"), ("stops", "dims"), ("steps", "ints")), _slice, "shape",
     "a strided window [start, stop) per axis, read from start (step > 0) or from stop - 1 backwards "
     "(step < 0) every |step| elements")
_def("concat", -1, (("axis", "int"),), _concat, "shape", "join along axis")
_def("gather", 2, (), _gather, "shape", "rows of table (axis 0) at integer ids")

_def("reduce", 1, (("kind", "str"), ("axes", "ints"), ("keepdims", "bool"), ("accum", "dtype")), _reduce,
     "reduction", "reduce over axes, accumulating in accum")
_def("matmul", 2, (("accum", "dtype"),), _matmul, "matmul", "batched matrix product, result in accum")

_def("softmax", 1, (("axis", "int"), ("accum", "dtype")), _same, "nn", "softmax along axis")
_def("logsumexp", 1, (("axes", "ints"), ("keepdims", "bool"), ("accum", "dtype")), _logsumexp, "nn",
     "log(sum(exp(x))) over axes")
_def("layernorm", 3, (("eps", "float"), ("accum", "dtype")), _same, "nn",
     "(x - mean) / sqrt(var + eps) * w + b over the last axis")
_def("rmsnorm", 2, (("eps", "float"), ("accum", "dtype")), _same, "nn", "x / sqrt(mean(x*x) + eps) * w")
_def("attention", 3, (("causal", "bool"), ("scale", "float"), ("accum", "dtype")), _attention, "nn",
     "softmax(q @ k^T * scale) @ v over the last two axes; scale 0.0 stands for 1/sqrt(q.shape[-1])")

_def("print", -1, (("format", "str"),), _none, "effect",
     "print at run time: each `{}` of format is the next operand, printed as NumPy does; `{{` `}}` are braces",
     effect="io")


def _call(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    raise IRError(f"call @{a.get('callee')}: result types come from the callee; build calls with make_call")


# A call's effects are its callee's: passes that see one function only treat it as effectful.
_def("call", -1, (("callee", "func"),), _call, "call", "call a function of the module (make_call)")


def _kernel(ts: Sequence[TensorType], a: dict[str, AttrValue]) -> list[TensorType]:
    return [TensorType(tuple(a["shape"]), a["dtype"])]  # type: ignore[arg-type]


# A @kernel called from @jit code (tessera/ir/kernel_registry.py): pure, its result a fresh tensor.
_def("kernel", -1, (("kernel", "str"), ("static", "str"), ("shape", "dims"), ("dtype", "dtype")), _kernel,
     "kernel", "a @kernel's result for these operands (its tensors, then its float arguments as f64 scalars)")

ELEMENTWISE = frozenset(n for n, d in OPS.items() if d.category == "elementwise")

# The values a string attribute may take (the verifier checks them; the docs list them).
ATTR_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("cmp", "pred"): COMPARE_PREDICATES,
    ("reduce", "kind"): REDUCE_KINDS,
    ("cast", "rounding"): ROUNDING,
    ("gelu", "approximate"): ("none", "tanh"),
    ("random", "dist"): ("normal", "uniform"),
}


def make_op(name: str, operands: Sequence[Value], hint: str = "", span: Span | None = None,
            **attrs: AttrValue) -> Op:
    """Create an op with its result types inferred from the catalogue (attribute order: the schema's)."""
    opdef = OPS.get(name)
    if opdef is None:
        raise IRError(f"unknown graph op '{name}'")
    missing = [k for k, _ in opdef.attrs if k not in attrs]
    extra = [k for k in attrs if k not in dict(opdef.attrs)]
    if missing or extra:
        raise IRError(f"{name}: attributes {missing or ''} missing {extra or ''} unknown")
    ordered = tuple((k, attrs[k]) for k, _ in opdef.attrs)
    result_types = opdef.infer([v.ty for v in operands], attrs)
    op = Op(name, tuple(operands), ordered, (), span)
    op.results = tuple(Value(t, hint, op) for t in result_types)
    return op


def bind_call(callee: Function, operand_types: Sequence[TensorType]) -> dict[str, Dim]:
    """The callee's symbols in terms of the caller's dims, from the argument types of one call.

    A symbol binds where a parameter dim is exactly that symbol; every parameter dim must then equal
    the argument's dim. IRError names the first argument that does not fit."""
    where = f"call @{callee.name}"
    if len(operand_types) != len(callee.params):
        raise IRError(f"{where}: {len(operand_types)} arguments, the callee takes {len(callee.params)}")
    binding: dict[str, Dim] = {}
    for p, t in zip(callee.params, operand_types):
        if p.ty.rank == t.rank:
            for pd, ad in zip(p.ty.dims, t.dims):
                sym = pd.single_atom()
                if isinstance(sym, str) and sym not in binding:
                    binding[sym] = ad
    for i, (p, t) in enumerate(zip(callee.params, operand_types)):
        if p.ty.dtype != t.dtype or p.ty.rank != t.rank:
            raise IRError(f"{where}: argument {i} is {t}, the callee expects {p.ty}")
        for j, (pd, ad) in enumerate(zip(p.ty.dims, t.dims)):
            unbound = pd.free_symbols - binding.keys()
            if unbound:
                raise IRError(f"{where}: cannot bind symbol {min(unbound)} from argument {i} dim {j} "
                              f"({pd}); it appears in no parameter dim on its own")
            if pd.substitute(binding) != ad:
                raise IRError(f"{where}: argument {i} dim {j} is {ad}, the callee expects {pd} = "
                              f"{pd.substitute(binding)}")
    return binding


def call_result_types(callee: Function, operand_types: Sequence[TensorType]) -> list[TensorType]:
    """The result types of calling `callee` with arguments of these types (its symbols bound)."""
    binding = bind_call(callee, operand_types)
    out = []
    for t in callee.result_types:
        unbound = set().union(*(d.free_symbols for d in t.dims)) - binding.keys()
        if unbound:
            raise IRError(f"call @{callee.name}: result type {t} mentions {min(unbound)}, "
                          "which no parameter binds")
        out.append(t.with_dims([d.substitute(binding) for d in t.dims]))
    return out


def make_call(callee: Function, operands: Sequence[Value], hint: str = "", span: Span | None = None) -> Op:
    """A `call` of `callee`; its results are typed from the callee's results, symbols bound per call."""
    types = call_result_types(callee, [v.ty for v in operands])
    op = Op("call", tuple(operands), (("callee", callee.name),), (), span)
    op.results = tuple(Value(t, hint, op) for t in types)
    return op


_CONSTRAINT_KIND = re.compile(r"==|!=|<=|>=|<|>")
_RANGE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+in\s+(.+?)\.\.(=?)(.+)$")


def parse_constraint(text: str) -> tuple[Constraint, ...]:
    """A function's `where` entry (`D % 8 == 0`, `1 <= B`, `B in 1..=4096`) as solver constraints."""
    try:
        m = _RANGE.match(text)
        if m:
            return Constraint.in_range(Dim.sym(m.group(1)), parse_dim(m.group(2)), parse_dim(m.group(4)),
                                       inclusive=m.group(3) == "=")
        kinds = list(_CONSTRAINT_KIND.finditer(text))
        if len(kinds) != 1:
            raise DimError("expected one comparison")
        k = kinds[0]
        return (Constraint(k.group(0), parse_dim(text[:k.start()]), parse_dim(text[k.end():])),)
    except DimError as exc:
        raise IRError(f"malformed where constraint {text!r}: {exc}") from None
