"""Calling a `@kernel` from host code: `KernelFunction` (and `KernelLaunch` for `k[grid](...)`).

A call binds the arguments (NumPy arrays for tensor parameters; Python values for `bool`, `int`,
`str` parameters, which specialise the kernel; `float` parameters are run-time scalars), binds the dim
symbols from the arrays' shapes and checks the `where` constraints (run-time E-SHAPE, as for `@jit`),
then lowers the kernel to Tile IR once per (extents, dtypes, static arguments, grid, debug flag),
compiles it for the configured target (Tile -> Target -> LLVM on the CPU runtime; on cuda the GPU
lowering, PTX and the CUDA runtime: tessera/runtime/cuda_kernels.py), allocates the result of a
kernel that returns a tile, launches it over its grid and returns the result (or None). On cuda, GPU
tensors (DeviceArray, DLPack) are used in place and give a DeviceArray result.

Tensors a kernel writes with `tile.store` are written in place: the array passed must already have
the parameter's dtype and be writeable. With `TESSERA_DEBUG_BOUNDS=1` every load and store is checked
and an unmasked out-of-bounds access is a run-time E-BOUNDS naming the kernel, the tensor, the index
and the program (tessera/ir/kernel_bounds.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tessera.diagnostics import Label, error, runtime_error
from tessera.dtypes import DType
from tessera.frontend import ast
from tessera.frontend.types import ScalarType, StrType, TensorType
from tessera.ir.kernel_bounds import DEBUG_WIDTH, decode
from tessera.runtime import values
from tessera.runtime.device_array import as_device_array, is_device_array
from tessera.runtime.dispatch import (
    UNAVAILABLE_TARGETS,
    CheckedCallable,
    RunConfig,
    bind_symbols,
    check_constraints,
    static_text,
    to_tensor,
    unavailable_message,
)
from tessera.source import SourceFile, Span

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult
    from tessera.ir.kernel_schedule import KernelSchedule
    from tessera.ir.kernel_to_tile import LoweredKernel
    from tessera.runtime.cpu import CompiledKernels
    from tessera.runtime.cuda import CudaKernels


def debug_bounds_enabled() -> bool:
    from tessera.ir.kernel_bounds import enabled

    return enabled()


@dataclass(frozen=True)
class KernelKey:
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    static: tuple[tuple[str, str], ...]
    grid: tuple[int, ...] | None
    debug: bool


@dataclass
class _Compiled:
    lowered: LoweredKernel
    compiled: CompiledKernels | CudaKernels


class KernelFunction(CheckedCallable):
    """A `@kernel` as a Python callable: `k(x, y, alpha=2.0)` for a kernel that returns a tile (its
    grid derives from the tile), `k[grid](x, y)` for an explicit grid."""

    def __init__(self, checked: CheckResult, fn: ast.FunctionDef, *, config: RunConfig | None = None,
                 sources: Mapping[str, SourceFile] | None = None,
                 eval_default: Callable[[ast.Expr], object] | None = None) -> None:
        super().__init__(checked, fn, config=config, sources=sources, eval_default=eval_default)
        self._schedule: KernelSchedule | None = None
        self._cache: dict[KernelKey, _Compiled] = {}
        from tessera.ir.kernel_registry import register

        register(checked, fn)  # so that graphs calling it (a bundle's, say) can be lowered

    def __repr__(self) -> str:
        return f"<kernel {self.fn.name}>"

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.call(list(args), dict(kwargs), self.fn.name_span)

    def __getitem__(self, grid: object) -> KernelLaunch:
        return self.launch(grid, self.fn.name_span)

    def launch(self, grid: object, span: Span) -> KernelLaunch:
        return KernelLaunch(self, _grid(grid, self.name, span))

    @property
    def schedule(self) -> KernelSchedule:
        if self._schedule is None:
            from tessera.ir.kernel_schedule import kernel_schedule

            self._schedule = kernel_schedule(self.checked, self.fn)
        return self._schedule

    def with_schedule(self, schedule: object) -> KernelFunction:
        """This kernel under another schedule (a `tessera.ir.tile.ops.Schedule`): for tests, tools and
        the autotuner; its compiled specialisations are separate."""
        from tessera.ir.kernel_schedule import KernelSchedule, check_schedule
        from tessera.ir.tile.ops import Schedule

        if not isinstance(schedule, Schedule):
            raise TypeError(f"with_schedule takes a Schedule, got {type(schedule).__name__}")
        check_schedule(schedule, self.fn.name_span)
        other = KernelFunction(self.checked, self.fn, config=self.config, sources=self.sources,
                               eval_default=self._eval_default)
        other._schedule = KernelSchedule(schedule, self.fn.name_span)
        return other

    # -- one call --------------------------------------------------------------------------

    def call(self, args: Sequence[object], kwargs: Mapping[str, object], span: Span,
             grid: tuple[int, ...] | None = None) -> object:
        target = self.config.target
        if target in UNAVAILABLE_TARGETS:
            raise runtime_error("E-RUNTIME", unavailable_message(target), span)
        bound = self.bind_arguments(args, kwargs, span)
        arrays: dict[str, np.ndarray] = {}
        given: dict[str, object] = {}
        static: dict[str, object] = {}
        scalars: dict[str, float] = {}
        for p in self.sig.params:
            v = bound[p.name]
            if isinstance(p.ty, TensorType):
                arrays[p.name] = to_tensor(v, p, p.ty, self.name, span)
                given[p.name] = v
            elif p.ty is None and (isinstance(v, np.ndarray) or is_device_array(v)):
                if not isinstance(v, np.ndarray):  # a GPU tensor: used in place
                    v = _device_array(v, p.name, self.name, span)
                if values.tessera_dtype(v.dtype) is None:
                    raise runtime_error("E-DTYPE", f"argument '{p.name}' of '{self.name}' has the unsupported dtype "
                                        f"{v.dtype}", span)
                arrays[p.name] = v
                given[p.name] = v
            elif p.ty is None:
                static[p.name] = tuple(v) if isinstance(v, list) else v
            elif isinstance(p.ty, ScalarType) and p.ty.kind == "float":
                if isinstance(v, np.generic):
                    v = v.item()
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise runtime_error("E-TYPE", f"argument '{p.name}' of '{self.name}' must be float, found "
                                        f"{values.describe(v)}", span)
                scalars[p.name] = float(v)
            else:
                static[p.name] = _check_static(v, p.ty, p.name, self.name, span)
        on_device = not all(isinstance(a, np.ndarray) for a in arrays.values())
        if on_device and target != "cuda":
            raise runtime_error("E-TYPE", f"'{self.name}' was given a CUDA device array but runs on the {target} "
                                "target; use target='cuda', or copy the array to the host first", span)
        b = bind_symbols(self.sig, {n: tuple(a.shape) for n, a in arrays.items()}, span)
        check_constraints(self.sig, b, span, self.sources)
        debug = debug_bounds_enabled()
        key = KernelKey(tuple(tuple(a.shape) for a in arrays.values()),
                        tuple(str(values.tessera_dtype(a.dtype)) for a in arrays.values()),
                        tuple(sorted((k, static_text(v)) for k, v in static.items())), grid, debug)
        c = self._cache.get(key)
        if c is None:
            c = self._compile(arrays, static, dict(b.env), grid, debug)
            self._cache[key] = c
        low = c.lowered
        launch: list[np.ndarray] = []
        result: np.ndarray | None = None
        debug_buf: np.ndarray | None = None
        roles = dict(zip((p.hint for p in low.kernel.params), low.kernel.roles))
        for kp in low.params:
            if kp.kind == "tensor":
                a = arrays[kp.name]
                if roles.get(kp.name, "in") != "in":
                    self._check_written(kp.name, a, given[kp.name], span)
                launch.append(a)
            elif kp.kind == "scalar":
                launch.append(np.array(scalars[kp.name], dtype=np.float64))
            elif kp.kind == "debug":
                debug_buf = debug_buffer(low)
                launch.append(debug_buf)
            else:
                assert low.result is not None
                shape, dt = low.result
                if on_device:  # device arrays in, a device array out
                    from tessera.runtime.cuda_kernels import device_result

                    result = device_result(shape, values.np_dtype(dt))  # type: ignore[assignment]
                else:
                    result = np.empty(shape, dtype=values.np_dtype(dt))
                launch.append(result)  # type: ignore[arg-type]
        c.compiled.launch(low.kernel.name, launch)
        if debug_buf is not None:
            self._report_bounds(debug_buf, low, span)
        return result

    def _compile(self, arrays: Mapping[str, np.ndarray], static: Mapping[str, object], symbols: Mapping[str, int],
                 grid: tuple[int, ...] | None, debug: bool) -> _Compiled:
        from tessera.ir.target.ops import TargetIRError
        from tessera.runtime.cpu import default_runtime

        low = self._lower(arrays, static, symbols, grid, debug)
        if self.config.target == "cuda":
            from tessera.runtime.cuda_kernels import compile_kernel

            return _Compiled(low, compile_kernel(low, self.name))
        if self.config.target == "hip":
            from tessera.runtime.hip import compile_kernel as compile_kernel_hip

            return _Compiled(low, compile_kernel_hip(low, self.name))  # type: ignore[arg-type]
        try:
            compiled = default_runtime().compile([low.kernel])
        except TargetIRError as ex:
            if "bytes of stack" not in str(ex):
                raise
            raise error("E-SCHEDULE", f"the schedule {low.schedule.schedule} of '{self.name}' cannot be compiled for "
                        f"the CPU: {ex}", low.schedule.span) from None
        return _Compiled(low, compiled)

    def _lower(self, arrays: Mapping[str, np.ndarray], static: Mapping[str, object], symbols: Mapping[str, int],
               grid: tuple[int, ...] | None, debug: bool) -> LoweredKernel:
        from tessera.ir.kernel_to_tile import KernelArgs, lower_kernel

        dtypes: dict[str, DType] = {}
        for n, a in arrays.items():
            dt = values.tessera_dtype(a.dtype)
            assert dt is not None
            dtypes[n] = dt
        args = KernelArgs({n: tuple(a.shape) for n, a in arrays.items()}, dtypes, dict(static), dict(symbols), grid)
        return lower_kernel(self.checked, self.fn, args, schedule=self.schedule, debug_bounds=debug)

    def lowered(self, *args: object, grid: tuple[int, ...] | None = None, **kwargs: object) -> LoweredKernel:
        """The Tile IR this call would run (for tests and tools): binds and lowers like a call, without
        compiling it for the target."""
        span = self.fn.name_span
        bound = self.bind_arguments(list(args), kwargs, span)
        arrays = {p.name: to_tensor(bound[p.name], p, p.ty, self.name, span) for p in self.sig.params
                  if isinstance(p.ty, TensorType)}
        arrays.update({p.name: bound[p.name] for p in self.sig.params  # type: ignore[misc]
                       if p.ty is None and isinstance(bound[p.name], np.ndarray)})
        static = {p.name: bound[p.name] for p in self.sig.params if p.name not in arrays
                  and not (isinstance(p.ty, ScalarType) and p.ty.kind == "float")}
        b = bind_symbols(self.sig, {n: tuple(a.shape) for n, a in arrays.items()}, span)
        return self._lower(arrays, static, dict(b.env), grid, debug_bounds_enabled())

    # -- helpers ---------------------------------------------------------------------------

    def _default_without_host(self, e: ast.Expr) -> object:
        # A kernel's defaults are static: the checker's constant evaluator computes them.
        from tessera.ir.kernel_schedule import StaticEvaluator

        return StaticEvaluator(self.checked).eval(e, self.sig.module)

    def _check_written(self, name: str, arr: np.ndarray, given: object, span: Span) -> None:
        p = next(p for p in self.sig.params if p.name == name)
        if not isinstance(arr, np.ndarray):
            return  # a device array: never converted, written in place
        if arr is not given:
            have = values.describe(given)
            raise runtime_error("E-DTYPE", f"'{self.name}' writes its parameter '{name}' in place, so the array "
                                f"passed must already be {values.tessera_dtype(arr.dtype)}; found {have}", span,
                                labels=[Label(p.span, "declared here")])
        if not arr.flags.writeable:
            raise runtime_error("E-TYPE", f"'{self.name}' writes its parameter '{name}' in place, but the array "
                                "passed is read-only", span)

    def _report_bounds(self, buf: np.ndarray, low: LoweredKernel, span: Span) -> None:
        report_bounds(self.name, buf, low, span if span != self.fn.name_span else None)


def _device_array(v: object, pname: str, fn: str, span: Span) -> object:
    try:
        return as_device_array(v)
    except ValueError as ex:
        raise runtime_error("E-TYPE", f"argument '{pname}' of '{fn}': {ex}", span) from None


def report_bounds(kernel: str, buf: np.ndarray, low: LoweredKernel, call_span: Span | None) -> None:
    """Raise E-BOUNDS for the first violation a debug-bounds kernel wrote into `buf`, if any."""
    found = decode(buf, low.checks, low.grid)
    if found is None:
        return
    check, index, program = found
    shown = ", ".join(map(str, index))
    raise runtime_error(
        "E-BOUNDS", f"kernel '{kernel}': tile.{check.op} of '{check.tensor}' is out of bounds at index [{shown}] "
        f"('{check.tensor}' has shape {values.format_value(check.shape)}), in program "
        f"{values.format_value(program)}", check.span,
        labels=[Label(call_span, "the kernel was called here")] if call_span is not None else [],
        notes=[("found by TESSERA_DEBUG_BOUNDS=1: an element outside the tensor that is neither masked off nor "
                "the padding past the end of a block that starts inside the tensor")])


def debug_buffer(low: LoweredKernel) -> np.ndarray:
    """The zeroed buffer a debug-bounds kernel reports into: one row per program."""
    return np.zeros((max(1, int(np.prod(low.grid))), DEBUG_WIDTH), dtype=np.int64)


class KernelLaunch:
    """`k[grid]`: a kernel bound to an explicit grid, called like the kernel."""

    def __init__(self, kernel: KernelFunction, grid: tuple[int, ...]) -> None:
        self.kernel, self.grid = kernel, grid

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.call(list(args), dict(kwargs), self.kernel.fn.name_span)

    def call(self, args: Sequence[object], kwargs: Mapping[str, object], span: Span) -> object:
        return self.kernel.call(args, kwargs, span, self.grid)

    def __repr__(self) -> str:
        return f"<kernel {self.kernel.name}[{', '.join(map(str, self.grid))}]>"


def _grid(grid: object, name: str, span: Span) -> tuple[int, ...]:
    items = grid if isinstance(grid, (tuple, list)) else (grid,)
    out = []
    for g in items:
        if isinstance(g, np.integer):
            g = int(g)
        if isinstance(g, bool) or not isinstance(g, int) or g < 0:
            raise runtime_error("E-TYPE", f"the grid of '{name}' is made of non-negative ints, found "
                                f"{values.format_value(grid)}", span)
        out.append(g)
    if not 1 <= len(out) <= 3:
        raise runtime_error("E-TYPE", f"a launch grid has 1 to 3 axes, found {len(out)}", span)
    return tuple(out)


def _check_static(v: object, t: object, pname: str, fn: str, span: Span) -> object:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(t, ScalarType):
        ok = {"int": (int,), "bool": (bool,)}.get(t.kind, (int, float))
        if not isinstance(v, ok) or (t.kind == "int" and isinstance(v, bool)):
            raise runtime_error("E-TYPE", f"argument '{pname}' of '{fn}' must be {t.kind}, found "
                                f"{values.describe(v)}", span)
    if isinstance(t, StrType) and not isinstance(v, str):
        raise runtime_error("E-TYPE", f"argument '{pname}' of '{fn}' must be str, found {values.describe(v)}", span)
    return v


# ---------------------------------------------------------------- `tessera lower` of a kernel


def lower_kernel_stage(checked: CheckResult, fn: ast.FunctionDef, stage: str, dims: Mapping[str, int]) -> str:
    """The text of the @kernel `fn` at `stage` (tile, target or llvm) for the extents `dims`, its static
    parameters at their literal defaults. An autotuned kernel's text starts with a note saying which
    configuration is used."""
    from tessera.ir.kernel_to_tile import KernelArgs, lower_kernel
    from tessera.ir.tile.printer import print_kernel
    from tessera.runtime.stages import StageError, bind, require_bound

    sig = checked.signatures[fn]
    if stage in ("graph", "schedule"):
        raise StageError(f"'{fn.name}' is a @kernel: it is written at the tile level and has no {stage} stage; "
                         "lower it with --stage tile, target, llvm, ptx or hip")
    env = bind(sig, dims)
    require_bound(sig, env, stage, fn.name)
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, DType] = {}
    static: dict[str, object] = {}
    for p, node in zip(sig.params, fn.params):
        if isinstance(p.ty, TensorType):
            if p.ty.dtype is None:
                raise StageError(f"the parameter '{p.name}' of '{fn.name}' has no dtype; lower it through a call")
            shapes[p.name] = tuple(d.evaluate(env) for d in p.ty.dims)
            dtypes[p.name] = p.ty.dtype
        elif isinstance(p.ty, ScalarType) and p.ty.kind == "float":
            continue
        elif node.default is not None and isinstance(node.default, ast.Constant):
            static[p.name] = node.default.value
        else:
            raise StageError(f"'{fn.name}' has the static parameter '{p.name}' without a literal default; lower it "
                             "through a call instead")
    if sig.returns is None:
        raise StageError(f"'{fn.name}' is launched with an explicit grid (it returns no tile); lower it through a call")
    low = lower_kernel(checked, fn, KernelArgs(shapes, dtypes, static, env), debug_bounds=debug_bounds_enabled())
    note = f"// {low.schedule.note}\n" if low.schedule.note else ""
    if stage == "tile":
        return note + print_kernel(low.kernel)
    from tessera.ir.tile_to_target import lower_kernel as to_target
    from tessera.runtime.cpu_features import cpu_target_info

    info = cpu_target_info()
    if stage == "ptx":
        from tessera.runtime.cuda import emit_kernels_ptx
        from tessera.runtime.stages import cuda_arch

        return note + emit_kernels_ptx([low.kernel], cuda_arch())
    if stage == "hip":
        from tessera.runtime.hip import emit_kernels_hip
        from tessera.runtime.stages import hip_arch

        return note + emit_kernels_hip([low.kernel], hip_arch())
    fn_t = to_target(low.kernel, info)
    if stage == "target":
        from tessera.ir.target.printer import print_function

        return note + print_function(fn_t)
    from tessera.codegen.llvm import emit_llvm
    from tessera.ir.target.ops import Module as TargetModule

    return note.replace("//", ";") + emit_llvm(TargetModule([fn_t]), info)
