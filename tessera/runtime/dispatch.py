"""Calling a compiled function: `JitFunction` binds a `@jit` function's parameters to NumPy arrays and
Python values, binds every dim symbol from the argument shapes, checks every `where` constraint before
any work is done (a violation is a run-time E-SHAPE naming the rule and the actual extents), then builds,
specialises and optimises the Graph IR once per (extents, dtypes, static arguments) and runs it on the
chosen target: `cpu`, `cuda` or `hip` (compiled through the IR stack) or `reference` (the NumPy oracle).

`RunConfig` carries what every call of one run shares: the target, the Chrome trace being recorded
(`--profile`) and the precompiled artefacts of a bundle (`tessera build`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tessera.diagnostics import Label, runtime_error
from tessera.dtypes import DType
from tessera.frontend import ast
from tessera.frontend.types import ScalarType, StrType, TensorType, TupleType
from tessera.runtime import values
from tessera.runtime.device_array import as_device_array, is_device_array
from tessera.source import SourceFile, Span
from tessera.symbolic import Dim, DimError

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult
    from tessera.frontend.signatures import ParamSig, Signature
    from tessera.ir.graph.ops import Function

TARGETS = ("cpu", "reference", "cuda", "hip")
UNAVAILABLE_TARGETS: tuple[str, ...] = ()


def default_target() -> str:
    """The target of a run that names none: $TESSERA_TARGET, else cpu (spec §9)."""
    return os.environ.get("TESSERA_TARGET", "").strip() or "cpu"


def unavailable_message(target: str) -> str:
    return (f"the {target} backend is not available yet in this version of Tessera; "
            "use --target cpu (or reference)")


# ---------------------------------------------------------------- profiling


class Trace:
    """Chrome trace events (chrome://tracing, Perfetto): one complete event per phase."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self._t0 = time.perf_counter()

    @contextmanager
    def span(self, name: str, cat: str, **args: object) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            self.events.append({"name": name, "cat": cat, "ph": "X", "pid": os.getpid(), "tid": 1,
                                "ts": round((start - self._t0) * 1e6, 3),
                                "dur": round((end - start) * 1e6, 3), "args": dict(args)})

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"traceEvents": self.events, "displayTimeUnit": "ms"}, indent=1))


@contextmanager
def _maybe_span(trace: Trace | None, name: str, cat: str, **args: object) -> Iterator[None]:
    if trace is None:
        yield
    else:
        with trace.span(name, cat, **args):
            yield


# ---------------------------------------------------------------- configuration


class Runnable(Protocol):
    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]: ...


class PrecompiledSource(Protocol):
    """Where a run finds artefacts compiled ahead of time (a bundle): `lookup` gives a runnable for one
    specialisation, or None when it was not built."""

    def lookup(self, fn: str, key: SpecKey) -> Runnable | None: ...


@dataclass
class RunConfig:
    target: str = field(default_factory=default_target)
    trace: Trace | None = None
    precompiled: PrecompiledSource | None = None
    float64: bool = False  # reference target only: evaluate in float64


# ---------------------------------------------------------------- specialisation keys


@dataclass(frozen=True)
class SpecKey:
    """What one compiled artefact is specialised on: the symbol extents, the tensor arguments' dtypes
    and the static (non-tensor) arguments."""

    extents: tuple[tuple[str, int], ...]
    dtypes: tuple[str, ...]
    static: tuple[tuple[str, str], ...]

    def text(self) -> str:
        parts = [f"{s}={v}" for s, v in self.extents]
        parts += [f"{k}={v}" for k, v in self.static]
        return ", ".join(parts + [f"dtypes=({', '.join(self.dtypes)})"])

    def to_json(self) -> dict[str, object]:
        return {"extents": dict(self.extents), "dtypes": list(self.dtypes), "static": dict(self.static)}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> SpecKey:
        return SpecKey(tuple(sorted((str(k), int(v)) for k, v in d["extents"].items())),
                       tuple(d["dtypes"]), tuple(sorted((str(k), str(v)) for k, v in d["static"].items())))


# ---------------------------------------------------------------- symbol binding and guards


@dataclass
class Binding:
    """Concrete extents of a call's dim symbols, with where each came from (`x.shape[1]`)."""

    env: dict[str, int] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def show(self, syms: Sequence[str]) -> str:
        return ", ".join(f"{s} = {self.env[s]}" + (f" ({self.origin[s]})" if s in self.origin else "")
                         for s in syms if s in self.env)


def bind_symbols(sig: Signature, shapes: Mapping[str, tuple[int, ...]], span: Span,
                 given: Mapping[str, int] | None = None) -> Binding:
    """Bind the signature's dim symbols from the tensor arguments' shapes (bare symbols first, then
    compound dims solved when linear in one unbound symbol), checking that every occurrence agrees."""
    b = Binding()
    for s, v in (given or {}).items():
        b.env[s] = v
        b.origin[s] = f"--dim {s}={v}"
    tensor_params = [(p, p.ty) for p in sig.params if isinstance(p.ty, TensorType) and p.name in shapes]
    for p, t in tensor_params:
        for i, (d, ext) in enumerate(zip(t.dims, shapes[p.name])):
            sym = _bare_symbol(d)
            if sym is None:
                continue
            where = f"{p.name}.shape[{i}]"
            if sym in b.env and b.env[sym] != ext:
                raise runtime_error(
                    "E-SHAPE", f"the dim symbol {sym} is {b.env[sym]} ({b.origin[sym]}) but {ext} ({where})",
                    span, labels=[Label(p.span, f"parameter '{p.name}' is declared {t}")],
                    notes=[f"every occurrence of {sym} in '{sig.fn.name}' must have the same extent"])
            b.env.setdefault(sym, ext)
            b.origin.setdefault(sym, where)
    for p, t in tensor_params:
        for i, (d, ext) in enumerate(zip(t.dims, shapes[p.name])):
            if _bare_symbol(d) is not None:
                continue
            where = f"{p.name}.shape[{i}]"
            unbound = sorted(d.free_symbols - b.env.keys())
            if len(unbound) == 1:
                solved = _solve(d, unbound[0], b.env, ext)
                if solved is not None:
                    b.env[unbound[0]] = solved
                    b.origin[unbound[0]] = where
            try:
                want = d.evaluate(b.env)
            except DimError:
                continue
            if want != ext:
                syms = sorted(d.free_symbols)
                detail = f" with {b.show(syms)}" if syms else ""
                raise runtime_error(
                    "E-SHAPE", f"{where} is {ext} but parameter '{p.name}' declares {d} = {want}{detail}",
                    span, labels=[Label(p.span, f"parameter '{p.name}' is declared {t}")])
    derive_symbols(sig, b)
    return b


def derive_symbols(sig: Signature, b: Binding) -> None:
    """Symbols fixed by `where` equalities (`H == 4 * D`) once the others are bound."""
    changed = True
    while changed:
        changed = False
        for c, _ in sig.constraints:
            if c.kind != "==":
                continue
            unbound = sorted((c.lhs.free_symbols | c.rhs.free_symbols) - b.env.keys())
            if len(unbound) != 1:
                continue
            diff = c.lhs - c.rhs
            solved = _solve(diff, unbound[0], b.env, 0)
            if solved is not None and solved >= 0:
                b.env[unbound[0]] = solved
                b.origin[unbound[0]] = f"where {c}"
                changed = True


def check_constraints(sig: Signature, b: Binding, span: Span,
                      sources: Mapping[str, SourceFile] | None = None) -> None:
    """Every `where` constraint with the bound extents; the first that fails is a run-time E-SHAPE."""
    for c, cspan in sig.constraints:
        try:
            ok = c.holds(b.env)
        except DimError:
            continue  # a symbol no argument binds: nothing to check against
        if ok:
            continue
        rule = _source_text(cspan, sources) or str(c)
        syms = sorted(c.lhs.free_symbols | c.rhs.free_symbols)
        raise runtime_error("E-SHAPE", f"{rule} does not hold: {b.show(syms)}", span,
                            labels=[Label(cspan, f"the constraint of '{sig.fn.name}' is declared here")],
                            notes=[f"the failing part is {c}"] if str(c) != rule else [])


def _bare_symbol(d: Dim) -> str | None:
    syms = d.free_symbols
    if len(syms) == 1:
        s = next(iter(syms))
        if d == Dim.sym(s):
            return s
    return None


def _solve(d: Dim, sym: str, env: Mapping[str, int], value: int) -> int | None:
    """The integer value of `sym` making `d == value`, when d is linear in sym given env."""
    part = d.substitute({k: Dim.const(v) for k, v in env.items()})
    lin = part.as_linear()
    if lin is None:
        return None
    coeffs, const = lin
    c = coeffs.get(sym, 0)
    if c == 0 or set(coeffs) - {sym}:
        return None
    num = value - const
    if num % c:
        return None
    return num // c


def _source_text(span: Span, sources: Mapping[str, SourceFile] | None) -> str | None:
    if sources is None or span.file not in sources or span.line != span.end_line:
        return None
    line = sources[span.file].line_text(span.line)
    text = line[span.col - 1:span.end_col - 1].strip()
    return text or None


# ---------------------------------------------------------------- argument conversion


def to_tensor(value: object, p: ParamSig, t: TensorType, fn: str, span: Span) -> np.ndarray:
    """An argument as an array of the parameter's rank and declared dtype (floats round to nearest
    even); a value that cannot be one is a run-time error naming the parameter. A GPU tensor becomes
    a DeviceArray over the same memory (tessera/runtime/device_array.py), never converted."""
    if isinstance(value, (bool, int, float, np.generic)) and t.rank == 0:
        arr = np.asarray(value)
        if t.dtype is None:
            arr = arr.astype(np.float32 if isinstance(value, float) else arr.dtype)
    elif isinstance(value, np.ndarray):
        arr = value
    elif is_device_array(value):  # a GPU tensor (DLPack / CUDA array interface): used in place
        try:
            arr = as_device_array(value)  # type: ignore[assignment]
        except ValueError as ex:
            raise runtime_error("E-TYPE", f"argument '{p.name}' of '{fn}': {ex}", span) from None
    else:
        raise runtime_error("E-TYPE", f"argument '{p.name}' of '{fn}' must be a NumPy array ({t}), "
                            f"found {values.describe(value)}", span)
    if arr.ndim != t.rank:
        raise runtime_error("E-SHAPE", f"argument '{p.name}' of '{fn}' has rank {arr.ndim} "
                            f"(shape {values.format_value(tuple(arr.shape))}) but the parameter is {t}", span,
                            labels=[Label(p.span, f"parameter '{p.name}' is declared here")])
    if values.tessera_dtype(arr.dtype) is None:
        raise runtime_error("E-DTYPE", f"argument '{p.name}' of '{fn}' has the unsupported dtype {arr.dtype}",
                            span)
    if t.dtype is None or values.np_dtype(t.dtype) == arr.dtype:
        return arr
    if not isinstance(arr, np.ndarray):
        raise runtime_error("E-DTYPE", f"argument '{p.name}' of '{fn}' is a {values.tessera_dtype(arr.dtype)} device "
                            f"array but the parameter is {t.dtype}; device arrays are used in place, never "
                            "converted", span, labels=[Label(p.span, f"parameter '{p.name}' is declared here")])
    return _convert_arg(arr, t.dtype, p, fn, span)


def _convert_arg(arr: np.ndarray, want: DType, p: ParamSig, fn: str, span: Span) -> np.ndarray:
    have = values.tessera_dtype(arr.dtype)
    assert have is not None
    if want.is_float and (have.is_float or have.is_int or have.kind == "bool"):
        return values.convert(arr, want)
    if want.is_int and (have.is_int or have.kind == "bool"):
        out = values.convert(arr, want)
        if have.kind == "bool" or np.array_equal(out.astype(arr.dtype), arr):
            return out
        raise runtime_error("E-DTYPE", f"argument '{p.name}' of '{fn}' holds {have} values that do not fit "
                            f"in {want}", span)
    if want.kind == "bool" and have.kind == "bool":
        return arr
    raise runtime_error("E-DTYPE", f"argument '{p.name}' of '{fn}' is {have} but the parameter is {want}",
                        span, fixit=f"cast({p.name}, {want})")


def static_text(v: object) -> str:
    if isinstance(v, DType):
        return v.name
    return repr(v)


# ---------------------------------------------------------------- the callable


def bind_call(name: str, sig: Signature, fn: ast.FunctionDef, args: Sequence[object],
              kwargs: Mapping[str, object], span: Span,
              default: Callable[[ast.Expr], object]) -> dict[str, object]:
    """Python's rules for binding a call's arguments to the parameters of `fn` (a @jit function or a
    @kernel); `default` evaluates a parameter's default expression."""
    params = sig.params
    positional = [p for p in params if not p.kw_only]
    if len(args) > len(positional):
        raise runtime_error("E-TYPE", f"'{name}' takes {len(positional)} positional arguments but "
                            f"{len(args)} were given", span)
    bound: dict[str, object] = {p.name: a for p, a in zip(positional, args)}
    names = {p.name for p in params}
    for k, v in kwargs.items():
        if k not in names:
            raise runtime_error("E-NAME", f"'{name}' has no parameter '{k}'", span,
                                notes=[f"parameters: {', '.join(p.name for p in params) or '(none)'}"])
        if k in bound:
            raise runtime_error("E-TYPE", f"'{name}' got several values for '{k}'", span)
        bound[k] = v
    for p, node in zip(params, fn.params):
        if p.name in bound:
            continue
        if node.default is None:
            raise runtime_error("E-TYPE", f"call to '{name}' is missing the argument '{p.name}'", span)
        bound[p.name] = default(node.default)
    return bound


class CheckedCallable:
    """What a `@jit` function and a `@kernel` share as Python callables: the checked definition, the
    run configuration and the binding of call arguments (parameter defaults evaluated by the host
    runtime when there is one, `_default_without_host` otherwise)."""

    def __init__(self, checked: CheckResult, fn: ast.FunctionDef, *, config: RunConfig | None = None,
                 sources: Mapping[str, SourceFile] | None = None,
                 eval_default: Callable[[ast.Expr], object] | None = None) -> None:
        self.checked = checked
        self.fn = fn
        self.sig: Signature = checked.signatures[fn]
        self.config = config if config is not None else RunConfig()
        self.sources = sources if sources is not None else checked.program.sources
        self._eval_default = eval_default
        self.__name__ = fn.name

    @property
    def name(self) -> str:
        return self.fn.name

    def bind_arguments(self, args: Sequence[object], kwargs: Mapping[str, object],
                       span: Span) -> dict[str, object]:
        return bind_call(self.name, self.sig, self.fn, args, kwargs, span, self._default)

    def _default(self, e: ast.Expr) -> object:
        if isinstance(e, ast.Constant):
            return e.value
        if self._eval_default is not None:
            return self._eval_default(e)
        return self._default_without_host(e)

    def _default_without_host(self, e: ast.Expr) -> object:
        raise runtime_error("E-TYPE", f"the default of a parameter of '{self.name}' needs the host "
                            "runtime to evaluate; pass the argument", e.span)


class JitFunction(CheckedCallable):
    """A `@jit` function as a Python callable: NumPy arrays for tensor parameters, Python values for
    static ones; returns an array, or a tuple of arrays for a function with several results."""

    def __init__(self, checked: CheckResult, fn: ast.FunctionDef, *, config: RunConfig | None = None,
                 sources: Mapping[str, SourceFile] | None = None,
                 eval_default: Callable[[ast.Expr], object] | None = None) -> None:
        super().__init__(checked, fn, config=config, sources=sources, eval_default=eval_default)
        self._cache: dict[SpecKey, tuple[Runnable, Function | None]] = {}
        self.__doc__ = f"@jit {fn.name}: compiled per argument extents, dtypes and static arguments"

    def __repr__(self) -> str:
        return f"<jit function {self.fn.name}>"

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.call(args, kwargs, self.fn.name_span)

    # -- the phases of one call

    def prepare(self, args: Sequence[object], kwargs: Mapping[str, object],
                span: Span) -> tuple[list[np.ndarray], dict[str, object], Binding]:
        """Convert and bind the arguments and run the guards: everything before any work."""
        bound = self.bind_arguments(args, kwargs, span)
        arrays: list[np.ndarray] = []
        static: dict[str, object] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for p in self.sig.params:
            v = bound[p.name]
            if isinstance(p.ty, TensorType):
                arr = to_tensor(v, p, p.ty, self.name, span)
                arrays.append(arr)
                shapes[p.name] = tuple(arr.shape)
            elif p.ty is None and isinstance(v, np.ndarray):
                raise runtime_error("E-TYPE", f"parameter '{p.name}' of the @jit function '{self.name}' has no "
                                    "tensor type; annotate it (Tensor[...]) to pass an array", span,
                                    labels=[Label(p.span, "declared here")])
            else:
                static[p.name] = _check_static(v, p, self.name, span)
        b = bind_symbols(self.sig, shapes, span)
        check_constraints(self.sig, b, span, self.sources)
        return arrays, static, b

    def spec_key(self, arrays: Sequence[np.ndarray], static: Mapping[str, object], b: Binding) -> SpecKey:
        syms = sorted(s for s in b.env if s in self.sig.symbols)
        return SpecKey(tuple((s, b.env[s]) for s in syms),
                       tuple(str(values.tessera_dtype(a.dtype)) for a in arrays),
                       tuple(sorted((k, static_text(v)) for k, v in static.items())))

    def call(self, args: Sequence[object], kwargs: Mapping[str, object], span: Span) -> object:
        target = self.config.target
        if target in UNAVAILABLE_TARGETS:
            raise runtime_error("E-RUNTIME", unavailable_message(target), span)
        arrays, static, b = self.prepare(args, kwargs, span)
        if target != "cuda" and not all(isinstance(a, np.ndarray) for a in arrays):
            raise runtime_error("E-TYPE", f"'{self.name}' was given a CUDA device array but runs on the {target} "
                                "target; use target='cuda', or copy the array to the host first", span)
        key = self.spec_key(arrays, static, b)
        runnable = self.compiled(key, static, b)
        with _maybe_span(self.config.trace, f"run {self.name}", "run", target=target, spec=key.text()):
            outs = runnable(*arrays)
        return self._results(list(outs))

    def compiled(self, key: SpecKey, static: Mapping[str, object], b: Binding) -> Runnable:
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0]
        pre = self.config.precompiled
        if pre is not None and self.config.target == "cpu":
            r = pre.lookup(self.name, key)
            if r is not None:
                self._cache[key] = (r, None)
                return r
        with _maybe_span(self.config.trace, f"compile {self.name}", "compile", target=self.config.target,
                         spec=key.text()):
            graph = self.specialized_graph({**static, **self.generic_dtypes(key)},
                                           {s: v for s, v in key.extents})
            runnable = make_runnable(graph, self.config)
        self._cache[key] = (runnable, graph)
        return runnable

    def generic_dtypes(self, key: SpecKey) -> dict[str, object]:
        """The dtype of each dtype-generic tensor parameter (`Tensor["N"]`): the argument's, which the
        graph builder takes as that parameter's static argument."""
        tensors = [p for p in self.sig.params if isinstance(p.ty, TensorType)]
        return {p.name: d for p, d in zip(tensors, key.dtypes)
                if isinstance(p.ty, TensorType) and p.ty.dtype is None}

    def specialized_graph(self, static: dict[str, object], extents: Mapping[str, int]) -> Function:
        """Build the Graph IR for these static arguments, bind the extents, optimise."""
        from tessera.runtime.stages import graph_of

        return graph_of(self.checked, self.fn, static, extents)

    def _results(self, outs: list[np.ndarray]) -> object:
        if isinstance(self.sig.returns, TupleType):
            return tuple(outs)
        if not outs:
            return None
        if len(outs) == 1:
            return outs[0]
        return tuple(outs)


def _check_static(v: object, p: ParamSig, fn: str, span: Span) -> object:
    t = p.ty
    if isinstance(t, ScalarType):
        ok = {"int": (int,), "float": (int, float), "bool": (bool,)}[t.kind]
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, ok) or (t.kind == "int" and isinstance(v, bool)):
            raise runtime_error("E-TYPE", f"argument '{p.name}' of '{fn}' must be {t.kind}, "
                                f"found {values.describe(v)}", span)
        return float(v) if t.kind == "float" else v
    if isinstance(t, StrType) and not isinstance(v, str):
        raise runtime_error("E-TYPE", f"argument '{p.name}' of '{fn}' must be str, found {values.describe(v)}",
                            span)
    return v


def make_runnable(graph: Function, config: RunConfig) -> Runnable:
    """The compiled artefact of one specialised graph on the configured target."""
    if config.target == "reference":
        from tessera.ir.graph.reference import evaluate

        f64 = config.float64

        def run_reference(*arrays: np.ndarray) -> list[np.ndarray]:
            return evaluate(graph, list(arrays), float64=f64)

        return run_reference
    if config.target in ("cpu", "cuda", "hip"):
        from tessera.runtime.executor import compile_function

        return compile_function(graph, target=config.target)
    raise runtime_error("E-RUNTIME", unavailable_message(config.target),
                        graph.span or Span("<runtime>", 1, 1, 1, 1))
