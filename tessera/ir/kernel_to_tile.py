"""`@kernel` -> Tile IR: the checked AST of a kernel, its schedule and concrete extents -> `tile.Kernel`.

A kernel is lowered once per specialisation (like `@jit`): the extents and dtypes of its tensor
arguments, its static arguments (`bool`, `int`, `str` parameters), the launch grid when it is given
explicitly, and the debug-bounds flag. The body is run by a small abstract interpreter
(kernel_interp.py): everything known at compile time is computed at compile time (shapes, `T.m`,
`if causal:`, `for i in range(3)`, helper calls, which are inlined), and only tiles and run-time
scalars become Tile IR ops, built with `TileBuilder`; `tile.range` / `tile.range_n` loops become Tile IR
`for` loops whose carried values are the variables the body reassigns (acc, m, l). This module owns
the rest: the parameters, `tile.context()`, how `rows=`/`cols=` address blocks, the grid, and
`return t`, which stores the program's block of the result; then the verifier and the budgets.

The Tile IR parameters, in order: the tensor parameters; one rank-0 f64 tensor per `float` parameter
(run-time scalars: a new value does not recompile); the debug buffer (with debug bounds); the result.
`LoweredKernel.params` says which is which. The grid:

- returned tile of shape [bm, bn] and a result of rank r >= 2: (result.shape[:-2]..., cdiv(R, bm),
  cdiv(C, bn)); a rank-1 result and a [bn] tile: (cdiv(N, bn),);
- explicit (`k[grid](...)`): the given grid, baked into the kernel.

Program coordinates: the last grid axis is the column block, the one before it the row block, the
leading axes are batch indices; a tensor's leading (batch) axes take the grid's leading axes, aligned
on the right (docs/language.md, "Kernels").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tessera.diagnostics import error
from tessera.dtypes import F32, F64, INT64, DType
from tessera.frontend import ast
from tessera.frontend.types import ScalarType, StrType, TensorType
from tessera.ir import kernel_bounds
from tessera.ir.kernel_interp import KernelInterpreter, _Return
from tessera.ir.kernel_intrinsics import Bound
from tessera.ir.kernel_schedule import KernelSchedule, StaticEvaluator, kernel_schedule
from tessera.ir.kernel_values import (
    BlockRange,
    BlockSize,
    Context,
    Emitter,
    TensorArg,
    Weak,
    describe,
)
from tessera.ir.tile.budget import BUDGETS, BudgetError, Usage, check_budget
from tessera.ir.tile.builder import TileBuilder, cdiv
from tessera.ir.tile.ops import BlockType, Kernel, TileIRError, Value
from tessera.ir.tile.ops import ScalarType as TileScalar
from tessera.ir.tile.verify import verify_kernel
from tessera.source import Span
from tessera.symbolic import Dim, DimError

if TYPE_CHECKING:
    from tessera.frontend.checker import CheckResult
    from tessera.frontend.signatures import Signature

DEFAULT_GPU_BUDGET = "h100"


def gpu_budget_name() -> str | None:
    """The GPU budget every kernel schedule is checked against besides the CPU's: $TESSERA_GPU_BUDGET
    (a row of tessera.ir.tile.budget.BUDGETS, or "none"), default H100."""
    name = os.environ.get("TESSERA_GPU_BUDGET", "").strip().lower() or DEFAULT_GPU_BUDGET
    return None if name == "none" else name


@dataclass(frozen=True)
class KernelArgs:
    """What one specialisation is compiled for."""

    shapes: Mapping[str, tuple[int, ...]]  # tensor parameter -> shape
    dtypes: Mapping[str, DType]  # tensor parameter -> dtype
    static: Mapping[str, object]  # bool / int / str parameter -> value
    symbols: Mapping[str, int]  # every bound dim symbol -> extent
    grid: tuple[int, ...] | None = None  # an explicit launch grid


@dataclass(frozen=True)
class KernelParam:
    kind: str  # "tensor" | "scalar" | "debug" | "result"
    name: str


@dataclass
class LoweredKernel:
    kernel: Kernel
    params: list[KernelParam]
    grid: tuple[int, ...]
    result: tuple[tuple[int, ...], DType] | None
    schedule: KernelSchedule
    checks: list[kernel_bounds.BoundsCheck] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """A block of a tensor: a start per axis, the block's size per axis, and its shape as the kernel
    sees it (the last min(rank, 2) sizes; batch axes have size 1 and are dropped)."""

    starts: list[Value]
    sizes: tuple[int, ...]
    shape: tuple[int, ...]


class KernelLowering(KernelInterpreter):
    """One specialisation of one kernel being lowered (module docstring)."""

    def __init__(self, checked: CheckResult, fn: ast.FunctionDef, args: KernelArgs, schedule: KernelSchedule,
                 name: str, debug_bounds: bool) -> None:
        self.checked = checked
        self.fn = fn
        self.sig: Signature = checked.signatures[fn]
        self.module = self.sig.module
        self.args = args
        self.ks = schedule
        self.b = TileBuilder(name, schedule.schedule)
        self.e = Emitter(self.b)
        self.statics = StaticEvaluator(checked)
        self.debug_bounds = debug_bounds
        self.env: dict[str, object] = {}
        self.params: list[KernelParam] = []
        self.tensors: dict[str, TensorArg] = {}
        self.loaded: set[str] = set()
        self.stored: set[str] = set()
        self.checks: list[kernel_bounds.BoundsCheck] = []
        self.loop_depth: dict[int, int] = {}
        self.tile_loops = 0
        self.depth = 0
        self._globals: dict[tuple[str, str], object] = {}
        self._debug: Value | None = None
        self.result: tuple[tuple[int, ...], DType] | None = None
        self.grid: tuple[int, ...] = ()

    # -- driver ----------------------------------------------------------------------------

    def run(self) -> Kernel:
        sig, fn = self.sig, self.fn
        returns = sig.returns if isinstance(sig.returns, TensorType) else None
        if self.args.grid is not None:
            self.grid_rank = len(self.args.grid)
        elif returns is not None:
            self.grid_rank = max(1, returns.rank)
        else:
            raise error("E-TYPE", f"the @kernel '{fn.name}' returns no tile, so its grid cannot be derived: launch it "
                        f"with an explicit grid, {fn.name}[grid](...)", fn.name_span)
        self.setup_params()
        self.pids = [self.b.program_id(a, hint=f"pid{a}") for a in range(self.grid_rank)]
        self.context = self.make_context()
        if self.debug_bounds:
            self._debug = self.b.param("debug", 2, INT64, "inout")
            self.params.append(KernelParam("debug", "debug"))
            lin = self.pids[0]
            for a in range(1, self.grid_rank):
                lin = self.b.op("add", self.b.op("mul", lin, self.b.num_programs(a)), self.pids[a])
            self.linear_program_id = lin
        for pname, p in self.scalar_params:
            self.env[pname] = Weak(self.b.op("item", self.b.load(p, shape=()), hint=pname))
        try:
            self.block(fn.body)
            if returns is not None and self.args.grid is None:
                raise error("E-TYPE", f"the @kernel '{fn.name}' declares a result but returns no tile", fn.name_span)
        except _Return as r:
            if r.value is not None:
                self.store_result(r.value, r.span)
        if self.args.grid is not None:
            self.grid = self.args.grid
            self.b.grid(*self.grid)
        for i, p in enumerate(self.b.params):
            if p.hint in self.stored or p.hint == "out":
                self.b.roles[i] = "inout" if p.hint in self.loaded else "out"
        return self.b.build()

    def setup_params(self) -> None:
        self.scalar_params: list[tuple[str, Value]] = []
        for p in self.sig.params:
            t = p.ty
            if t is None and p.name in self.args.shapes:
                t = TensorType(tuple(Dim.const(n) for n in self.args.shapes[p.name]), None)  # an untyped tensor
            if isinstance(t, TensorType):
                if p.name not in self.args.shapes:
                    raise error("E-TYPE", f"no array for the tensor parameter '{p.name}'", p.span)
                shape = tuple(self.args.shapes[p.name])
                dt = self.args.dtypes[p.name]
                v = self.b.param(p.name, len(shape), dt, "in")
                ta = TensorArg(p.name, v, shape, dt)
                self.tensors[p.name] = ta
                self.env[p.name] = ta
                self.params.append(KernelParam("tensor", p.name))
                for axis, d in enumerate(t.dims):
                    sym = _bare_symbol(d)
                    if sym is not None and sym not in self.b.extents:
                        self.b.extent(sym, v, axis)
            elif isinstance(t, ScalarType) and t.kind == "float":
                v = self.b.param(p.name, 0, F64, "in")
                self.scalar_params.append((p.name, v))
                self.params.append(KernelParam("scalar", p.name))
            elif t is None or isinstance(t, (ScalarType, StrType)):
                if p.name not in self.args.static:
                    raise error("E-TYPE", f"no value for the parameter '{p.name}'", p.span)
                self.env[p.name] = self.args.static[p.name]
            else:
                raise error("E-TYPE", f"a @kernel parameter is a tensor or an int, float, bool or str; "
                            f"'{p.name}' is {t}", p.span)

    def make_context(self) -> Context:
        s = self.ks.schedule
        first = next(iter(self.tensors.values()), None)
        d = first.shape[-1] if first is not None and first.rank else 1
        bh = math.prod(first.shape[:-2]) if first is not None and first.rank > 2 else 1
        return Context(s.block[0], s.block[1] if len(s.block) > 1 else None, s.k, d, bh, s.warps, s.stages, s.vector)

    def context_size(self, axis: str) -> BlockSize:
        return self.context_field("m" if axis == "rows" else "n", self.fn.name_span)  # type: ignore[return-value]

    def context_field(self, name: str, span: Span) -> object:
        c = self.context
        if name in ("m", "n", "k", "d"):
            v = getattr(c, name)
            if v is None:
                raise error("E-SCHEDULE", f"T.{name} is not defined: the schedule {self.ks.schedule} has no "
                            f"{'second block size' if name == 'n' else 'k'}", span)
            return BlockSize(v, name)
        if name in ("bh", "warps", "stages", "vector"):
            return getattr(c, name)
        raise error("E-NAME", f"TileContext has no attribute '{name}'", span)

    def grid_axis(self, axis: int, span: Span) -> int:
        if not 0 <= axis < self.grid_rank:
            raise error("E-TYPE", f"grid axis {axis} does not exist: the grid of '{self.fn.name}' has "
                        f"{self.grid_rank} axis{'es' if self.grid_rank != 1 else ''}", span)
        return axis

    def debug_buffer(self) -> Value:
        assert self._debug is not None
        self.loaded.add("debug")
        self.stored.add("debug")
        return self._debug

    def bounds_check(self, t: TensorArg, addr: Address, mask: Value | None, span: Span, op: str) -> None:
        kernel_bounds.emit_check(self, t, addr, mask, span, op)

    # -- addressing ------------------------------------------------------------------------

    def program_coord(self, axis: str, span: Span) -> Value:
        g = self.grid_rank
        a = g - 2 if axis == "rows" else g - 1
        if a < 0:
            raise error("E-SHAPE", f"{axis}=T.{'m' if axis == 'rows' else 'n'} addresses the program's own row block, "
                        "but the grid has one axis (the columns); give (start, size) or a block index", span)
        return self.pids[a]

    def block_of(self, spec: object, axis: str, span: Span) -> tuple[Value | int, int]:
        """(start, size) of what rows=/cols= (`axis`) address (docs/language.md, "Kernels")."""
        if isinstance(spec, BlockSize):
            return self.b.op("mul", self.program_coord(axis, span), self.e.const(int(spec), INT64)), int(spec)
        if isinstance(spec, BlockRange):
            return spec.start, spec.size
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise error("E-TYPE", f"(start, size) takes two ints, found {describe(spec)}", span)
            start, size = spec
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise error("E-TYPE", f"the size in (start, size) must be a positive int known at compile time, found "
                            f"{describe(size)}", span)
            return self.e.index(start, span), int(size)
        if isinstance(spec, bool):
            raise error("E-TYPE", f"{axis}= takes a block, found {spec}", span)
        if isinstance(spec, int) or (isinstance(spec, Value) and isinstance(spec.ty, TileScalar)):
            size = int(self.context_size(axis))
            return self.b.op("mul", self.e.index(spec, span), self.e.const(size, INT64)), size
        raise error("E-TYPE", f"{axis}= takes T.m (the program's block), a tile.range variable, (start, size) or a "
                    f"block index, found {describe(spec)}", span)

    def address(self, t: TensorArg, rows: object, cols: object, a: Bound) -> Address:
        r = t.rank
        if r == 0 and (rows is not None or cols is not None):
            raise error("E-SHAPE", f"'{t.name}' has rank 0: it has no rows or columns to address", a.span)
        if r == 1 and rows is not None:
            raise error("E-SHAPE", f"'{t.name}' has rank 1: its one axis is addressed with cols=, not rows=", a.at("rows"))
        starts: list[Value] = []
        sizes: list[int] = []
        nb = min(r, 2)
        for axis in range(r - nb):
            ga = self.grid_rank - 2 - (r - 2) + axis
            if ga < 0:
                raise error("E-SHAPE", f"'{t.name}' has {r - 2} batch ax{'es' if r > 3 else 'is'} but the grid has only "
                            f"{max(0, self.grid_rank - 2)} leading ax{'es' if self.grid_rank != 3 else 'is'} to index them",
                            a.span, notes=["a tensor's leading axes are indexed by the grid's leading axes"])
            starts.append(self.pids[ga])
            sizes.append(1)
        for axis, spec in (("rows", rows), ("cols", cols))[2 - nb:]:
            extent = t.shape[r - (2 if axis == "rows" else 1)]
            if spec is None:
                start, size = self.e.const(0, INT64), extent
            else:
                start, size = self.block_of(spec, axis, a.at(axis))
            starts.append(self.e.index(start, a.span))
            sizes.append(size)
        return Address(starts, tuple(sizes), tuple(sizes[r - nb:]))

    # -- the result ------------------------------------------------------------------------

    def store_result(self, value: object, span: Span) -> None:
        if self.args.grid is not None:
            raise error("E-TYPE", f"'{self.fn.name}' returns a tile but is launched with an explicit grid; store "
                        "its outputs with tile.store instead", span)
        declared = self.sig.returns
        assert isinstance(declared, TensorType)
        try:
            shape = tuple(d.evaluate(dict(self.args.symbols)) for d in declared.dims)
        except DimError:
            raise error("E-SHAPE", f"the result {declared} of '{self.fn.name}' has a dim no argument binds", span) from None
        r = len(shape)
        if isinstance(value, Weak):
            value = value.value
        if isinstance(value, (bool, int, float)):
            value = self.e.const(value, declared.dtype or F32)
        if not isinstance(value, Value) or not isinstance(value.ty, (BlockType, TileScalar)):
            raise error("E-TYPE", f"a @kernel returns a tile, found {describe(value)}", span)
        if isinstance(value.ty, TileScalar):
            value = self.b.op("broadcast", value, shape=(1,) * min(r, 2))
        blk_shape = value.ty.shape  # type: ignore[union-attr]
        if len(blk_shape) != min(r, 2):
            raise error("E-SHAPE", f"the returned tile has shape {list(blk_shape)} but the program's block of the result "
                        f"{declared} has rank {min(r, 2)}", span)
        dt = declared.dtype or value.ty.dtype  # type: ignore[union-attr]
        if value.ty.dtype != dt:  # type: ignore[union-attr]
            from tessera.dtypes import is_narrowing

            if is_narrowing(value.ty.dtype, dt):  # type: ignore[union-attr]
                raise error("E-DTYPE", f"the result is declared {dt} but the returned tile is {value.ty.dtype}; "  # type: ignore[union-attr]
                            "narrowing is never implicit", span, fixit=f"tile.cast(..., {dt})")
            value = self.b.cast(value, dt)
        out = self.b.param("out", r, dt, "out")
        self.params.append(KernelParam("result", "out"))
        self.stored.add("out")
        for axis, d in enumerate(declared.dims):
            sym = _bare_symbol(d)
            if sym is not None and sym not in self.b.extents:
                self.b.extent(sym, out, axis)
        starts: list[Value] = [self.pids[a] for a in range(r - 2)]
        coord_axes = ("rows", "cols")[2 - min(r, 2):] if r else ()
        for axis, size in zip(coord_axes, blk_shape):
            starts.append(self.b.op("mul", self.program_coord(axis, span), self.e.const(size, INT64)))
        self.b.store(out, *starts, value=self.e.reshape(value, (1,) * max(0, r - 2) + tuple(blk_shape)))
        self.result = (shape, dt)
        grid: list[Dim] = []
        concrete: list[int] = []
        for axis in range(r):
            d = declared.dims[axis]
            dim = Dim.sym(str(d)) if _bare_symbol(d) in self.b.extents else Dim.const(shape[axis])
            blk = 1 if axis < r - 2 else blk_shape[axis - (r - len(blk_shape))]
            grid.append(dim if blk == 1 else cdiv(dim, blk))
            concrete.append(-(-shape[axis] // blk))
        if not grid:
            grid, concrete = [Dim.const(1)], [1]
        self.b.grid(*grid)
        self.grid = tuple(concrete)

def _bare_symbol(d: Dim) -> str | None:
    syms = d.free_symbols
    if len(syms) == 1:
        s = next(iter(syms))
        if d == Dim.sym(s):
            return s
    return None


# ---------------------------------------------------------------- entry point


def kernel_name(fn: ast.FunctionDef, args: KernelArgs) -> str:
    return f"kernel_{fn.name}"


def lower_kernel(checked: CheckResult, fn: ast.FunctionDef, args: KernelArgs, *,
                 schedule: KernelSchedule | None = None, debug_bounds: bool = False, name: str | None = None,
                 budgets: Sequence[str] | None = None) -> LoweredKernel:
    """Lower one specialisation of the @kernel `fn` (module docstring); verify the Tile IR and check the
    schedule against `budgets` (default: the CPU's and `gpu_budget_name()`'s)."""
    ks = schedule if schedule is not None else kernel_schedule(checked, fn)
    low = KernelLowering(checked, fn, args, ks, name or kernel_name(fn, args), debug_bounds)
    k = low.run()
    try:
        verify_kernel(k)
    except TileIRError as ex:
        raise error("E-TYPE", f"internal error: the Tile IR of '{fn.name}' does not verify: {ex}", fn.name_span) from None
    out = LoweredKernel(k, low.params, low.grid, low.result, ks, low.checks)
    if budgets is None:
        gpu = gpu_budget_name()
        budgets = ["cpu", *([gpu] if gpu else [])]
    for bname in budgets:
        budget = BUDGETS.get(bname)
        if budget is None:
            raise error("E-SCHEDULE", f"unknown budget '{bname}' (budgets: {', '.join(BUDGETS)})", ks.span)
        try:
            out.usage[bname] = check_budget(k, budget, low.loop_depth)
        except BudgetError as ex:
            raise error("E-SCHEDULE", f"the schedule {ks.schedule} of '{fn.name}' does not fit the {budget.name}: "
                        f"{ex.resource} needs {_figure(ex.needed, ex.unit)}, the budget is {_figure(ex.limit, ex.unit)}",
                        ks.span, notes=[str(ex), "use smaller blocks, fewer stages or fewer warps"]) from None
    return out


def _figure(n: int, unit: str) -> str:
    if unit == "bytes":
        return f"{n} bytes ({n / 1024:.1f} KiB)"
    return f"{n} {unit}"


__all__ = ["Address", "KernelArgs", "KernelLowering", "KernelParam", "LoweredKernel", "lower_kernel"]
