"""Run a specialised graph function as compiled kernels: the `cpu` target's compiled path.

`compile_function(fn, target="cpu")` optimises the graph, partitions it into a Schedule IR plan,
lowers every kernel call to Tile IR and compiles the kernels with the CPU runtime (whose code cache,
in memory and on disk, is keyed by the kernels' text). The returned
`CompiledFunction` is called with NumPy arrays (bf16 and fp8 as ml_dtypes arrays) and returns the
results as a list of fresh arrays. A call:

1. checks the arguments' count, shapes and dtypes against the plan's parameters (the dispatcher
   converts dtypes and checks `where` guards before this point); a parameter that is not
   C-contiguous is copied to a contiguous array once, since the plan's views assume contiguous roots;
2. allocates every result and temporary root buffer with `np.empty` (kernels write every element);
3. walks the plan's steps: each kernel call is launched with its arguments as NumPy views of the
   root buffers (`as_strided` with the layout the plan computed: collapsed, permuted, broadcast
   with stride 0 — no copies); each host print formats its buffers as the reference evaluator does.

`.plan` and `.kernels` stay available for `tessera lower`. A launcher other than the CPU runtime
(anything with `launch(name, arrays)`) can be given to `CompiledFunction` directly — the tests run
plans through a Tile IR interpreter that way.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

import numpy as np

from tessera.dtypes import numpy_dtype
from tessera.ir.graph.ops import Function
from tessera.ir.schedule.layout import Layout
from tessera.ir.schedule.ops import Buffer, HostPrint, KernelCall, Plan
from tessera.ir.tile.ops import Kernel


class Launcher(Protocol):
    def launch(self, name: str, arrays: list[np.ndarray]) -> None: ...


class ExecutionError(ValueError):
    """Arguments that do not fit the compiled function (count, shape, dtype)."""


class CompiledFunction:
    def __init__(self, plan: Plan, kernels: list[Kernel], launcher: Launcher, graph: Function | None = None,
                 out: TextIO | None = None, poison: bool = False) -> None:
        self.plan = plan
        self.kernels = kernels
        self.graph = graph
        self.launcher = launcher
        self.out = out
        # Debugging aid: fill fresh buffers with NaN (floats) or -1 (integers) instead of leaving them
        # uninitialised, so that an element no kernel writes shows up.
        self.poison = poison
        self._dtypes = [numpy_dtype(b.dtype) for b in plan.params]

    @property
    def name(self) -> str:
        return self.plan.name

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        plan = self.plan
        if len(arrays) != len(plan.params):
            raise ExecutionError(f"@{plan.name} takes {len(plan.params)} arguments, {len(arrays)} were given")
        roots: dict[Buffer, np.ndarray] = {}
        for i, (b, a, dt) in enumerate(zip(plan.params, arrays, self._dtypes)):
            a = np.asarray(a)
            if a.dtype != dt:
                raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must be {b.dtype}, got {a.dtype}")
            if a.shape != b.shape:
                raise ExecutionError(f"@{plan.name} argument {i} ({b.name}) must have shape {b.shape}, "
                                     f"got {a.shape}")
            roots[b] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        for b in plan.buffers:
            if b.base is None and b.kind != "param":
                dt = numpy_dtype(b.dtype)
                if self.poison:
                    roots[b] = np.full(b.shape, np.nan if b.dtype.is_float else -1).astype(dt)
                else:
                    roots[b] = np.empty(b.shape, dt)
        for step in plan.steps:
            if isinstance(step, KernelCall):
                views = [_view(roots[a.buffer.root], a.layout) for a in step.args]
                if any(v.size == 0 for v, a in zip(views, step.args) if a.role == "out"):
                    continue  # nothing to write: an empty grid
                assert step.kernel is not None, "the plan was not lowered to Tile IR"
                if step.bounds is None:
                    self.launcher.launch(step.kernel, views)
                else:
                    self._launch_checked(step, views)
            elif isinstance(step, HostPrint):
                self._print(step, roots)
        return [roots[b] for b in plan.results]

    def _launch_checked(self, step: KernelCall, views: list[np.ndarray]) -> None:
        """A user kernel compiled with TESSERA_DEBUG_BOUNDS: pass its debug buffer, then report."""
        from tessera.runtime.kernels import debug_buffer, report_bounds

        low = step.bounds
        buf = debug_buffer(low)  # type: ignore[arg-type]
        assert step.kernel is not None and step.debug_param is not None
        self.launcher.launch(step.kernel, [*views[:step.debug_param], buf, *views[step.debug_param:]])
        op = next(o for o in step.ops if o.name == "kernel")
        report_bounds(low.kernel.name, buf, low, op.span)  # type: ignore[union-attr]

    def _print(self, step: HostPrint, roots: dict[Buffer, np.ndarray]) -> None:
        shown = []
        for b in step.args:
            x = _view(roots[b.root], b.layout)
            shown.append(str(x.item()) if x.ndim == 0 else str(x))
        print(step.format.format(*shown), file=self.out or sys.stdout)


def _view(root: np.ndarray, lay: Layout) -> np.ndarray:
    """The elements `lay` describes, as a NumPy view of the contiguous root array."""
    if lay.size == 0:
        return np.empty(lay.shape, root.dtype)
    item = root.itemsize
    # as_strided rebuilds the array from its interface, whose type string NumPy cannot read back for
    # some ml_dtypes types (fp8_e5m2 is '<f1'): stride unsigned integers of the same size instead.
    flat = root.reshape(-1).view(np.dtype(f"u{item}"))
    view = np.lib.stride_tricks.as_strided(flat[lay.offset:], shape=lay.shape,
                                           strides=tuple(s * item for s in lay.strides))
    return view.view(root.dtype)


def compile_function(fn: Function, target: str = "cpu") -> CompiledFunction:
    """Optimise, partition, lower and compile a specialised graph function (all dims constant), for
    the host CPU, (target "cuda") the process's CUDA device (tessera/runtime/cuda.py) or (target
    "hip") its AMD GPU (tessera/runtime/hip.py)."""
    if target not in ("cpu", "cuda", "hip"):
        raise ValueError(f"compile_function: target '{target}' has no compiled path here (cpu, cuda or hip)")
    from tessera.ir.graph.passes.pipeline import optimize
    from tessera.ir.graph_to_schedule import partition
    from tessera.ir.schedule.verify import verify_plan
    from tessera.ir.schedule_to_tile import lower_plan
    from tessera.runtime.cpu import CpuRuntime

    graph = optimize(fn)
    plan = partition(graph)
    if target == "cuda":
        from tessera.ir.schedule.gpu_heuristics import retarget

        retarget(plan)  # GPU schedules for the memory-bound calls
    if target == "hip":
        from tessera.ir.schedule.gpu_heuristics import retarget
        from tessera.ir.target.info import hip_target_info
        from tessera.runtime.hip import default_runtime

        retarget(plan, warp=hip_target_info(default_runtime().arch).warp_size)
    verify_plan(plan)
    kernels = lower_plan(plan)
    if target == "cuda":
        from tessera.runtime.cuda import compile_plan

        return compile_plan(plan, kernels, graph)  # type: ignore[return-value]
    if target == "hip":
        from tessera.runtime.hip import compile_plan as compile_plan_hip

        return compile_plan_hip(plan, kernels, graph)  # type: ignore[return-value]
    # A runtime per compile: its code cache (on disk, keyed by the kernels' text) is read and written at
    # each compile, which `tessera build` relies on to collect the object code into a bundle.
    compiled = CpuRuntime().compile(kernels)
    return CompiledFunction(plan, kernels, compiled, graph)


def run_plan(plan: Plan, kernels: Sequence[Kernel], launcher: Launcher,
             arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a lowered plan once with any launcher (a convenience for tools and tests)."""
    return CompiledFunction(plan, list(kernels), launcher)(*arrays)
