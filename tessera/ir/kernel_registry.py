"""`@kernel`s called from `@jit` code: the graph op that stands for the call, and what each layer does
with it.

The graph builder turns `k(x, w, alpha=0.5)` in a `@jit` function into one graph op

    %y = kernel(%x, %w, %alpha) {kernel = "k@3f2a9c0d1e4b", static = "{...}", shape = [M, N], dtype = f32}

whose operands are the kernel's tensor arguments (in parameter order, cast to their declared dtypes)
followed by its `float` arguments as rank-0 f64 tensors; `static` holds its static arguments (JSON) and
`shape`/`dtype` its declared result. `kernel` names the function in this process's registry, keyed by
the function's name and a digest of its module's text: the graph text says which source it came from,
and a graph parsed in another process that never compiled that source cannot be lowered (a clear
error). The op is pure: its result is a fresh tensor.

Below the graph, the partitioner makes the op a kernel call of its own (pattern `kernel`: never fused),
with the kernel's schedule; `schedule_to_tile` lowers it with `kernel_to_tile` for the call's concrete
extents and dtypes (the Tile IR parameters are the op's operands and its result, in order), so it
runs through the same Tile -> Target -> LLVM path as every kernel; the reference evaluator runs it
compiled (there is no NumPy version of a user kernel).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tessera.diagnostics import error
from tessera.dtypes import F64, DType, dtype_named, numpy_dtype
from tessera.frontend import ast
from tessera.frontend.types import ScalarType, TensorType
from tessera.ir.tile.ops import Kernel, Schedule
from tessera.source import Span
from tessera.symbolic import Dim

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult
    from tessera.ir.graph.ops import Op as GraphOp
    from tessera.ir.schedule.ops import KernelCall

OP = "kernel"


@dataclass(frozen=True)
class KernelRef:
    checked: CheckResult
    fn: ast.FunctionDef
    key: str


_REGISTRY: dict[str, KernelRef] = {}


def register(checked: CheckResult, fn: ast.FunctionDef) -> str:
    """The registry key of `fn` (registering it): its name and a digest of its module's file name and
    text (not its path: a bundle's copy of the source names the same kernels)."""
    sig = checked.signatures[fn]
    mod = checked.program.modules[sig.module]
    name = Path(sig.module).name if sig.module.endswith(".tsr") else sig.module
    digest = hashlib.sha256(f"{name}\0{mod.source.text}\0{fn.name}".encode()).hexdigest()[:12]
    key = f"{fn.name}@{digest}"
    _REGISTRY.setdefault(key, KernelRef(checked, fn, key))
    return key


def lookup(key: str) -> KernelRef:
    ref = _REGISTRY.get(key)
    if ref is None:
        raise KeyError(f"the @kernel '{key}' is not loaded in this process: compile the program that defines it "
                       "before lowering graphs that call it")
    return ref


# ---------------------------------------------------------------- static arguments as text


def encode_static(static: dict[str, object]) -> str:
    def enc(v: object) -> object:
        if isinstance(v, DType):
            return {"dtype": v.name}
        if isinstance(v, (tuple, list)):
            return [enc(x) for x in v]
        return v

    return json.dumps({k: enc(v) for k, v in sorted(static.items())}, sort_keys=True)


def decode_static(text: str) -> dict[str, object]:
    def dec(v: object) -> object:
        if isinstance(v, dict) and set(v) == {"dtype"}:
            return dtype_named(str(v["dtype"]))
        if isinstance(v, list):
            return tuple(dec(x) for x in v)
        return v

    return {k: dec(v) for k, v in json.loads(text).items()}


# ---------------------------------------------------------------- graph building


def build_call(b: object, checked: CheckResult, fn: ast.FunctionDef, module: str, args: list[object],
               kws: dict[str, object], span: Span) -> object:
    """The graph op of a call of the @kernel `fn` from @jit code (`b` is the graph builder)."""
    from tessera.ir.graph.build.interp import Frame
    from tessera.ir.graph.build.values import DynScalar, TVal

    sig = checked.signatures[fn]
    em = b.em  # type: ignore[attr-defined]
    positional = [p for p in fn.params if not p.kw_only]
    bound: dict[str, object] = dict(zip((p.name for p in positional), args))
    bound.update(kws)
    for p in fn.params:
        if p.name not in bound:
            if p.default is None:
                raise error("E-TYPE", f"call to '{fn.name}' is missing the argument '{p.name}'", span)
            bound[p.name] = b.expr(p.default, Frame(module))  # type: ignore[attr-defined]
    returns = sig.returns
    if not isinstance(returns, TensorType):
        raise error("E-TYPE", f"'{fn.name}' is launched with an explicit grid (it returns no tile): @jit code calls "
                    "kernels that return their result", span)
    tensors: list[object] = []
    scalars: list[object] = []
    static: dict[str, object] = {}
    bindings: dict[str, Dim] = {}
    for p in sig.params:
        v = bound[p.name]
        if isinstance(p.ty, TensorType) or (p.ty is None and isinstance(v, TVal)):
            t = em.tensor(v, span)
            value = em.cast(t.value, p.ty.dtype, span) if isinstance(p.ty, TensorType) and p.ty.dtype else t.value
            if isinstance(p.ty, TensorType):
                for w, g in zip(p.ty.dims, t.dims):
                    syms = w.free_symbols
                    if len(syms) == 1 and w == Dim.sym(next(iter(syms))):
                        bindings.setdefault(next(iter(syms)), g)
            tensors.append(value)
        elif isinstance(p.ty, ScalarType) and p.ty.kind == "float":
            scalars.append(em.scalar(v, F64, span))
        else:
            if isinstance(v, (TVal, DynScalar)):
                raise error("E-TYPE", f"the parameter '{p.name}' of the @kernel '{fn.name}' is static: its value must "
                            "be known when the @jit function is compiled", span)
            if isinstance(v, Dim):
                if not v.is_const:
                    raise error("E-TYPE", f"the static parameter '{p.name}' of '{fn.name}' needs a value known at "
                                "compile time, not the extent {v}", span)
                v = v.value
            static[p.name] = v
    dims = tuple(em.canon(d.substitute(bindings)) for d in returns.dims)
    dtype = returns.dtype or _probe_result_dtype(checked, fn, sig, tensors, static, span)
    unbound = set().union(*(d.free_symbols for d in dims)) - set().union(*(d.free_symbols for d in bindings.values()))
    if unbound:
        raise error("E-SHAPE", f"the result of '{fn.name}' has dims no argument binds ({', '.join(sorted(unbound))})",
                    span)
    op = em.emit(OP, [*tensors, *scalars], span, kernel=register(checked, fn), static=encode_static(static),
                 shape=dims, dtype=dtype)
    return TVal(op.result)


PROBE_EXTENT = 16


def _probe_result_dtype(checked: CheckResult, fn: ast.FunctionDef, sig: object, tensors: list[object],
                        static: dict[str, object], span: Span) -> DType:
    """The result dtype of a kernel that does not declare it (a dtype-generic kernel): the dtype of the
    tile it returns for these argument dtypes, found by lowering it once for nominal extents (symbolic
    dims of the graph taken as PROBE_EXTENT; a dtype does not depend on extents)."""
    from tessera.ir.kernel_schedule import kernel_schedule
    from tessera.ir.kernel_to_tile import KernelArgs, KernelLowering

    names = [p.name for p in sig.params if p.name not in static  # type: ignore[attr-defined]
             and not (isinstance(p.ty, ScalarType) and p.ty.kind == "float")]
    shapes = {n: tuple(d.value if d.is_const else PROBE_EXTENT for d in v.ty.dims)  # type: ignore[attr-defined]
              for n, v in zip(names, tensors)}
    dtypes = {n: v.ty.dtype for n, v in zip(names, tensors)}  # type: ignore[attr-defined]
    symbols: dict[str, int] = {}
    for p in sig.params:  # type: ignore[attr-defined]
        if isinstance(p.ty, TensorType) and p.name in shapes:
            for d, n in zip(p.ty.dims, shapes[p.name]):
                for s in d.free_symbols:
                    symbols.setdefault(s, n)
    if isinstance(sig.returns, TensorType):  # type: ignore[attr-defined]
        for d in sig.returns.dims:  # type: ignore[attr-defined]
            for s in d.free_symbols:
                symbols.setdefault(s, PROBE_EXTENT)
    low = KernelLowering(checked, fn, KernelArgs(shapes, dtypes, static, symbols), kernel_schedule(checked, fn),
                         "probe", False)
    low.run()
    if low.result is None:
        raise error("E-TYPE", f"'{fn.name}' returns no tile", span)
    return low.result[1]


# ---------------------------------------------------------------- lowering and running


def _specialisation(op: GraphOp, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[DType],
                    grid: tuple[int, ...] | None = None) -> tuple[KernelRef, object]:
    from tessera.ir.kernel_to_tile import KernelArgs

    ref = lookup(str(op.attr("kernel")))
    sig = ref.checked.signatures[ref.fn]
    static = decode_static(str(op.attr("static")))
    names = [p.name for p in sig.params if p.name not in static
             and not (isinstance(p.ty, ScalarType) and p.ty.kind == "float")]
    symbols: dict[str, int] = {}
    tshapes = dict(zip(names, shapes))
    for p in sig.params:
        if isinstance(p.ty, TensorType) and p.name in tshapes:
            for d, n in zip(p.ty.dims, tshapes[p.name]):
                if len(d.free_symbols) == 1 and d == Dim.sym(next(iter(d.free_symbols))):
                    symbols.setdefault(next(iter(d.free_symbols)), n)
    result = tuple(int(Dim.of(d).value) for d in op.attr("shape"))  # type: ignore[union-attr]
    if isinstance(sig.returns, TensorType):
        for d, n in zip(sig.returns.dims, result):
            if len(d.free_symbols) == 1 and d == Dim.sym(next(iter(d.free_symbols))):
                symbols.setdefault(next(iter(d.free_symbols)), n)
    return ref, KernelArgs(tshapes, dict(zip(names, dtypes)), static, symbols, grid)


def schedule_of(op: GraphOp) -> Schedule:
    from tessera.ir.kernel_schedule import kernel_schedule

    ref = lookup(str(op.attr("kernel")))
    return kernel_schedule(ref.checked, ref.fn).schedule


def _static_shape(v: object) -> tuple[int, ...]:
    return tuple(int(d.value) for d in v.ty.dims)  # type: ignore[attr-defined]


def lower_call(call: KernelCall, name: str) -> Kernel:
    """The Tile IR of a `kernel` pattern call (its arguments: the op's operands, then its result)."""
    from tessera.ir.kernel_to_tile import lower_kernel

    op = next(o for o in call.ops if o.name == OP)
    tensors = _tensor_operands(op)
    ref, args = _specialisation(op, [_static_shape(v) for v in tensors], [v.ty.dtype for v in tensors])
    from tessera.ir.kernel_bounds import enabled

    low = lower_kernel(ref.checked, ref.fn, args, name=name, debug_bounds=enabled())  # type: ignore[arg-type]
    if low.checks:
        call.bounds = low
        call.debug_param = next(i for i, p in enumerate(low.params) if p.kind == "debug")
    return low.kernel


def _tensor_operands(op: GraphOp) -> list[object]:
    ref = lookup(str(op.attr("kernel")))
    sig = ref.checked.signatures[ref.fn]
    n_scalars = sum(1 for p in sig.params if isinstance(p.ty, ScalarType) and p.ty.kind == "float")
    return list(op.operands[:len(op.operands) - n_scalars])


def run_op(op: GraphOp, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Run a `kernel` op on arrays (the reference evaluator's implementation): compiled, on the CPU."""
    from tessera.ir.kernel_to_tile import lower_kernel
    from tessera.runtime.cpu import default_runtime

    tensors = _tensor_operands(op)
    ins = [np.asarray(a).astype(numpy_dtype(v.ty.dtype), copy=False) for a, v in zip(arrays, op.operands)]  # type: ignore[attr-defined]
    ref, args = _specialisation(op, [a.shape for a in ins[:len(tensors)]], [v.ty.dtype for v in tensors])  # type: ignore[attr-defined]
    low = lower_kernel(ref.checked, ref.fn, args)  # type: ignore[arg-type]
    out = np.empty(_static_shape(op.result), dtype=numpy_dtype(op.result.ty.dtype))
    default_runtime().compile([low.kernel]).launch(low.kernel.name, [*ins, out])
    return out
