"""The lowering table: for each builtin of spec §6 usable in `@jit` code, how its bound arguments
become graph ops. Arguments arrive bound to the catalogue signature of `tessera.frontend.builtins`
(defaults filled in); adding a builtin is adding a row here next to its row there."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tessera.ir.graph.build import lower_elementwise as ew
from tessera.ir.graph.build import lower_linalg as la
from tessera.ir.graph.build import lower_misc as misc
from tessera.ir.graph.build import lower_nn as nn
from tessera.ir.graph.build import lower_reduce as red
from tessera.ir.graph.build import lower_shape as sh
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.graph.build.interp import Builder

Args = dict[str, object]
Lowering = Callable[["Builder", Args, list[object], Span], object]

LOWERINGS: dict[str, Lowering] = {}


def _row(name: str, fn: Lowering) -> None:
    LOWERINGS[name] = fn


# --- creation
_row("zeros", lambda b, a, v, s: misc.fill(b, a["shape"], 0.0, a["dtype"], s))
_row("ones", lambda b, a, v, s: misc.fill(b, a["shape"], 1.0, a["dtype"], s))
_row("full", lambda b, a, v, s: misc.fill(b, a["shape"], a["value"], a["dtype"], s))
_row("arange", lambda b, a, v, s: misc.arange(b, a["n"], a["dtype"], s))
_row("randn", lambda b, a, v, s: misc.random(b, "normal", a["shape"], a["dtype"], a["seed"], s))
_row("rand", lambda b, a, v, s: misc.random(b, "uniform", a["shape"], a["dtype"], a["seed"], s))
_row("print", lambda b, a, v, s: misc.print_(b, v, s))

# --- elementwise
for _n in ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "sigmoid", "silu", "neg", "abs",
           "relu", "isnan", "isinf"):
    _row(_n, lambda b, a, v, s, _n=_n: ew.unary(b, _n, a["x"], s))
_row("gelu", lambda b, a, v, s: ew.unary(b, "gelu", a["x"], s, approximate=str(a["approximate"])))
_row("maximum", lambda b, a, v, s: ew.minmax(b, "maximum", a["a"], a["b"], s))
_row("minimum", lambda b, a, v, s: ew.minmax(b, "minimum", a["a"], a["b"], s))
_row("where", lambda b, a, v, s: ew.where(b, a["cond"], a["a"], a["b"], s))
_row("clip", lambda b, a, v, s: ew.clip(b, a["x"], a["lo"], a["hi"], s))

# --- reductions
for _n in ("sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "var"):
    _row(_n, lambda b, a, v, s, _n=_n: red.reduction(b, _n, a["x"], a["axis"], a["keepdims"], s))

# --- shapes
_row("reshape", lambda b, a, v, s: sh.reshape(b, a["x"], a["shape"], s))
_row("transpose", lambda b, a, v, s: sh.transpose(b, a["x"], a["axes"], s))
_row("permute", lambda b, a, v, s: sh.transpose(b, a["x"], a["axes"], s))
_row("swapaxes", lambda b, a, v, s: sh.swapaxes(b, a["x"], a["a"], a["b"], s))
_row("expand_dims", lambda b, a, v, s: sh.expand_dims(b, a["x"], a["axis"], s))
_row("squeeze", lambda b, a, v, s: sh.squeeze(b, a["x"], a["axis"], s))
_row("broadcast_to", lambda b, a, v, s: sh.broadcast_to(b, a["x"], a["shape"], s))
_row("concat", lambda b, a, v, s: sh.concat(b, a["xs"], a["axis"], s))
_row("stack", lambda b, a, v, s: sh.stack(b, a["xs"], a["axis"], s))
_row("split", lambda b, a, v, s: sh.split(b, a["x"], a["n"], a["axis"], s))

# --- linear algebra
_row("matmul", lambda b, a, v, s: la.matmul(b, a["a"], a["b"], s))
_row("einsum", lambda b, a, v, s: la.einsum(b, a["spec"], v, s))

# --- nn
_row("softmax", lambda b, a, v, s: nn.softmax(b, a["x"], a["axis"], s))
_row("layernorm", lambda b, a, v, s: nn.layernorm(b, a["x"], a["w"], a["b"], a["eps"], s))
_row("rmsnorm", lambda b, a, v, s: nn.rmsnorm(b, a["x"], a["w"], a["eps"], s))
_row("dropout", lambda b, a, v, s: nn.dropout(b, a["x"], a["p"], a["seed"], s))
_row("embedding", lambda b, a, v, s: nn.embedding(b, a["table"], a["ids"], s))
_row("one_hot", lambda b, a, v, s: nn.one_hot(b, a["ids"], a["n"], a["dtype"], s))
_row("cross_entropy", lambda b, a, v, s: nn.cross_entropy(b, a["logits"], a["labels"], s))
_row("mse", lambda b, a, v, s: nn.mse(b, a["a"], a["b"], s))
_row("attention", lambda b, a, v, s: nn.attention(b, a["q"], a["k"], a["v"], a["causal"], a["scale"], s))

# --- casts
_row("cast", lambda b, a, v, s: misc.cast(b, a["x"], a["dtype"], s))
_row("cast_like", lambda b, a, v, s: misc.cast_like(b, a["x"], a["y"], s))

# --- host helpers, folded at build time
_row("range", lambda b, a, v, s: misc.range_(b, a["start"], a["stop"], a["step"], s))
_row("len", lambda b, a, v, s: misc.len_(b, a["x"], s))
for _k in ("int", "float", "bool"):
    _row(_k, lambda b, a, v, s, _k=_k: misc.to_scalar(b, _k, a["x"], s))
_row("dict", lambda b, a, v, s: dict(x for x in v if isinstance(x, tuple)))
