"""Schedule IR: one specialised graph function as a `Plan` of buffers and kernel calls.

A `Plan` says what memory a function needs and in which order which kernels touch it:

- `Buffer`s: the parameters, the results, the temporaries, and *views* — a reshape, transpose,
  broadcast or slice of another buffer that needs neither kernel nor copy. Every buffer has its
  graph `TensorType` (all dims constant) and a `Layout` in its root's elements; roots are
  contiguous.
- `steps`, in execution order: `KernelCall`s and `HostPrint`s (a `print` of the function runs on the
  host between kernels, in program order).

A `KernelCall` is one fused group of graph ops of one pattern (`PATTERNS`). Its body is those graph
ops — after `decompose` rewrote the nn ops into primitive ones, so the numeric policy shows as ops:
the casts to and from the accumulation dtype with their rounding, the scale of a mean — reading the
graph values bound to its input arguments and producing those bound to its outputs. Each call
carries:
- `space`: the iteration space (the shape every full-size value of the body has, which axes are
  reduced, the order the kernel walks the axes in and how it collapses them into few axes);
- `args`: the tensor arguments of the kernel in call order, each a buffer seen through a `Layout`
  (the collapsed view the kernel indexes); `bindings` ties body values to them;
- `schedule`: block sizes, vector width, warps, stages (from `heuristics`);
- `accum`: the accumulation dtype of its reductions or dot, when it has one;
- `kernel`: the Tile IR kernel that runs it, filled in by `schedule_to_tile.lower_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.dtypes import DType
from tessera.ir.graph.ops import Op as GraphOp
from tessera.ir.graph.ops import TensorType
from tessera.ir.graph.ops import Value as GraphValue
from tessera.ir.schedule.layout import Layout
from tessera.ir.tile.ops import Schedule


class ScheduleIRError(Exception):
    """A malformed plan (a verifier failure) or a graph the partitioner cannot plan."""


# The kernel patterns: what a call computes and how `schedule_to_tile` lowers it.
PATTERNS: dict[str, str] = {
    "elementwise": "a DAG of elementwise ops over one shape; broadcasts and constants inline",
    "row_reduction": "reductions over the trailing axes with their elementwise prologue and "
                     "epilogue; one program per block of rows, one pass per reduction level",
    "reduce": "reductions over other axes: as row_reduction, the kernel walks the kept axes first",
    "matmul": "a (batched) matrix product accumulated over K blocks, elementwise epilogue fused",
    "copy": "materialise a view that is no view (reshape of strided data), a concat piece, a result",
    "gather": "rows of a table at integer ids (embedding)",
    "kernel": "a @kernel called from @jit code, lowered by kernel_to_tile (never fused)",
}

BUFFER_KINDS = ("param", "result", "temp", "view")


@dataclass(frozen=True)
class ViewStep:
    """One graph shape op applied by a view (`transpose {perm = [1, 0]}`), kept for readers."""

    op: str
    attrs: tuple[tuple[str, object], ...]


@dataclass(eq=False)
class Buffer:
    name: str
    ty: TensorType
    kind: str  # one of BUFFER_KINDS
    layout: Layout  # in the root's elements
    index: int = -1  # position among the params / results
    base: Buffer | None = None  # views: the buffer viewed
    steps: tuple[ViewStep, ...] = ()  # views: the shape ops from `base`

    @property
    def root(self) -> Buffer:
        b = self
        while b.base is not None:
            b = b.base
        return b

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layout.shape

    @property
    def dtype(self) -> DType:
        return self.ty.dtype


@dataclass(frozen=True)
class KernelArg:
    """A tensor argument of a kernel: `buffer` as the kernel indexes it (`layout`, in the elements of
    the buffer's root). `part` says which role the argument plays in the pattern:
    full (an iteration-shaped operand or result), stat (a per-row value of a reduction: size 1 on
    the reduced axis), lhs / rhs (matmul operands), table / ids (gather)."""

    buffer: Buffer
    role: str  # "in" | "out"
    layout: Layout
    part: str = "full"


@dataclass(frozen=True)
class IterSpace:
    """The iteration of a kernel. `shape` is the full shape in graph axis order (a matmul's output
    shape); `order` the axes in the order the kernel walks them, the `reduced` last ones reduced;
    `dims` the collapsed axes: runs of consecutive entries of `order` merged into one kernel axis
    (the last run is the reduced one when `reduced` > 0). `k` is a matmul's contraction extent."""

    shape: tuple[int, ...]
    order: tuple[int, ...]
    reduced: int
    dims: tuple[tuple[int, ...], ...]
    k: int | None = None

    def extent(self, run: tuple[int, ...]) -> int:
        n = 1
        for a in run:
            n *= self.shape[a]
        return n

    @property
    def extents(self) -> tuple[int, ...]:
        return tuple(self.extent(r) for r in self.dims)

    @property
    def reduced_axes(self) -> tuple[int, ...]:
        return tuple(sorted(self.order[len(self.order) - self.reduced:])) if self.reduced else ()


@dataclass(eq=False)
class KernelCall:
    name: str
    pattern: str  # a key of PATTERNS
    origin: tuple[str, ...]  # the graph ops (before decomposition) it came from, for readers
    ops: list[GraphOp]  # the body, in dependency order
    args: list[KernelArg]
    bindings: list[tuple[GraphValue, int]]  # body value <-> argument index (inputs and outputs)
    space: IterSpace
    schedule: Schedule
    accum: DType | None = None
    kernel: str | None = None  # the Tile IR kernel's name, after lowering
    # Under TESSERA_DEBUG_BOUNDS, a user kernel's lowering (a LoweredKernel): its checks decode the
    # debug buffer the executor passes at `debug_param`.
    bounds: object | None = None
    debug_param: int | None = None

    @property
    def inputs(self) -> list[tuple[GraphValue, KernelArg]]:
        return [(v, self.args[i]) for v, i in self.bindings if self.args[i].role == "in"]

    @property
    def outputs(self) -> list[tuple[GraphValue, KernelArg]]:
        return [(v, self.args[i]) for v, i in self.bindings if self.args[i].role == "out"]


@dataclass(eq=False)
class HostPrint:
    """A debug `print` of the function: formatted on the host once its operands are computed."""

    format: str
    args: list[Buffer]


Step = KernelCall | HostPrint


@dataclass(eq=False)
class Plan:
    name: str
    params: list[Buffer]
    results: list[Buffer]
    buffers: list[Buffer]  # every buffer, params first, in definition order
    steps: list[Step] = field(default_factory=list)
    effects: tuple[str, ...] = ()

    @property
    def calls(self) -> list[KernelCall]:
        return [s for s in self.steps if isinstance(s, KernelCall)]
