"""Check and time the CUDA backend on a GPU machine, against NumPy and (where installed) PyTorch.

1. Correctness: every example's @jit functions (the extents of tests/gpu_cases.py) and every stdlib
   kernel (stdlib/kernels.tsr, small ragged shapes) run on the device on fresh random inputs, with
   device buffers poisoned (NaN / -1) for the examples, and are compared with a float64 reference:
   ‖out - ref‖ / ‖ref‖ under the dtype's bound, no NaN.
2. Performance, each row checked the same way first, then timed with CUDA events: the plan's
   launches captured into a CUDA graph (so the host's launch cost stays out), warm-up, then the
   median of many replays; PyTorch's peer measured in the same run, the same way. Rows:
   the device-to-device copy (the roofline of the memory-bound rows; bytes read + written); softmax,
   layernorm, rmsnorm and add on 8192 x 8192 bf16 (bytes: each input read once, each output written
   once; target >= 80% of the copy); bf16 GEMM 4096^3 and 8192^3 (target at 4096^3: >= 50% of
   torch.matmul); the fused MLP of examples/mlp.tsr; flash attention forward (B=4, H=32, S=4096,
   D=128, causal and not: correct; its speed is the next step).

A row that cannot run yet prints its error and the run goes on. The last thing printed is the table:

    workload | Tessera ms | torch ms | Tessera GB/s or TFLOP/s | % of copy BW or % of torch | target met?

    python3 bench/gpu.py              # everything; exit 1 if a check fails
    python3 bench/gpu.py --quick      # the correctness checks only
    python3 bench/gpu.py --sweep      # also time schedule variants of the memory-bound rows

The GEMM rows use bench/gpu_gemm.py's `gemm_row` (the tensor-core path's own bench) when that
module exists, else a @jit bf16 matmul compiled here. Notes on the memory-bound rows, version by
version: bench/NOTES-gpu.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # gpu_cases: the examples' extents, shared with the tests
sys.path.insert(0, str(ROOT / "bench"))  # gpu_gemm, when it exists

import tessera
from tessera.codegen import ptx_bf16
from tessera.ir import gpu_memory, gpu_moments, gpu_row_divide
from tessera.runtime import cuda

BF16 = np.dtype(ml_dtypes.bfloat16)
TOL = {np.dtype(np.float32): 1e-5, BF16: 1e-2}
BIG = 8192
COPY_TARGET = 0.80  # memory-bound rows: fraction of the measured copy bandwidth
GEMM_TARGET = 0.50  # bf16 GEMM 4096^3: fraction of torch.matmul
TIME_BUDGET_MS = 400.0  # device time per timed measurement set, at most (slow rows replay fewer times)

# The memory-bound rows, as @jit functions of the builtins (one fused kernel each).
ROWS_SRC = '''
@jit
def softmax_bf16(x: Tensor["N", "M", bf16]) -> Tensor["N", "M", bf16]:
    return softmax(x, axis=-1)

@jit
def layernorm_bf16(x: Tensor["N", "M", bf16], w: Tensor["M", bf16], b: Tensor["M", bf16]) -> Tensor["N", "M", bf16]:
    return layernorm(x, w, b, 1e-5)

@jit
def rmsnorm_bf16(x: Tensor["N", "M", bf16], w: Tensor["M", bf16]) -> Tensor["N", "M", bf16]:
    return rmsnorm(x, w, 1e-6)

@jit
def add_bf16(x: Tensor["N", "M", bf16], y: Tensor["N", "M", bf16]) -> Tensor["N", "M", bf16]:
    return x + y

@jit
def matmul_bf16(a: Tensor["M", "K", bf16 @accum(f32)], b: Tensor["K", "N", bf16]) -> Tensor["M", "N", bf16]:
    return cast(a @ b, bf16)
'''


# ---------------------------------------------------------------- rows and the table


@dataclass
class Row:
    name: str
    ok: bool | None = None  # the check; None: not checked (timing-only rows)
    err: float | None = None
    ms: float | None = None
    peer_ms: float | None = None
    rate: float | None = None
    unit: str = ""  # "GB/s" or "TFLOP/s"
    pct: float | None = None
    pct_of: str = ""  # "copy" or "torch"
    target: float | None = None  # the fraction `pct` must reach
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, ex: BaseException) -> None:
        self.ok = False
        first = str(ex).strip().splitlines()[0][:150] if str(ex).strip() else ""
        self.note = f"{type(ex).__name__}: {first}"
        print(f"[{self.name}] {self.note}", file=sys.stderr)
        traceback.print_exc()

    @property
    def met(self) -> str:
        if self.target is None:
            return "-" if self.ok is None else ("correct" if self.ok else "NO")
        if not self.ok or self.pct is None:
            return "NO"
        return "yes" if self.pct >= self.target * 100 else "NO"


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    head = (f"{'workload':44s} | {'check':5s} | {'rel err':>8s} | {'Tessera ms':>10s} | {'torch ms':>8s} | "
            f"{'Tessera rate':>15s} | {'% of copy/torch':>15s} | target met?")
    print(head)
    print("-" * len(head))
    for r in rows:
        check = "-" if r.ok is None else ("ok" if r.ok else "FAIL")
        rate = "-" if r.rate is None else f"{r.rate:.0f} {r.unit}" if r.unit == "GB/s" else f"{r.rate:.1f} {r.unit}"
        pct = "-" if r.pct is None else f"{r.pct:.1f}% {r.pct_of}"
        print(f"{r.name:44s} | {check:5s} | {fmt(r.err, '8.1e')} | {fmt(r.ms, '10.3f')} | {fmt(r.peer_ms, '8.3f')} | "
              f"{rate:>15s} | {pct:>15s} | {r.met}" + (f"  ({r.note})" if r.note else ""))


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    g = np.asarray(got).astype(np.float64)
    if np.isnan(g).any():
        return float("nan")
    return float(np.linalg.norm(g - ref) / max(float(np.linalg.norm(ref)), 1e-300))


def passes(err: float, dtype: np.dtype) -> bool:
    return not math.isnan(err) and err <= TOL.get(np.dtype(dtype), 1e-5)


# ---------------------------------------------------------------- timing


class GraphTimer:
    """Median milliseconds of `launch(stream)`: the launches captured once into a CUDA graph of
    `inner` copies, replayed after a warm-up; falls back to back-to-back launches between events
    when capture fails (then the host's launch cost can show in short kernels: said in `how`)."""

    def __init__(self, dev: cuda.CudaDevice, graphs: bool = True) -> None:
        self.dev = dev
        self.drv = cuda._load_driver()
        self.graphs = graphs
        self.how = "graph" if graphs else "events"

    def time(self, launch: Callable[[Any], None], first_ms: float) -> float:
        inner = max(1, min(50, int(2.0 / max(first_ms, 1e-3))))
        reps = max(3, min(30, int(TIME_BUDGET_MS / max(first_ms * inner, 1e-3))))
        stream = cuda._call("cuStreamCreate", 1)  # non-blocking: capture never meets the legacy stream

        def eager() -> None:
            for _ in range(inner):
                launch(stream)

        replay = eager
        if self.graphs:
            try:
                replay = self._capture(launch, stream, inner)
            except Exception as ex:  # noqa: BLE001 - reported in the table's title, timed without a graph
                self.how = f"events (graph capture failed: {type(ex).__name__})"
        for _ in range(2):
            replay()
        self.dev.synchronize()
        start, end = self.dev.event(), self.dev.event()
        times = []
        for _ in range(reps):
            self.dev.record(start, stream)
            replay()
            self.dev.record(end, stream)
            times.append(self.dev.elapsed_ms(start, end) / inner)
        return statistics.median(times)

    def _capture(self, launch: Callable[[Any], None], stream: Any, inner: int) -> Callable[[], None]:
        drv = self.drv
        mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        cuda._call("cuStreamBeginCapture", stream, mode)
        try:
            for _ in range(inner):
                launch(stream)
        finally:
            graph = cuda._call("cuStreamEndCapture", stream)
        exe = cuda._call("cuGraphInstantiate", graph, 0)
        return lambda: cuda._call("cuGraphLaunch", exe, stream)


def first_run_ms(dev: cuda.CudaDevice, launch: Callable[[Any], None]) -> float:
    """One launch timed by events (after one untimed), to size the measurement."""
    launch(0)
    dev.synchronize()
    start, end = dev.event(), dev.event()
    dev.record(start)
    launch(0)
    dev.record(end)
    return dev.elapsed_ms(start, end)


def time_plan(fn: cuda.CudaCompiledFunction, arrays: Sequence[np.ndarray], timer: GraphTimer | None = None) -> float:
    """Median milliseconds of one run of the plan's kernels, the inputs already on the device (the
    timing every GPU bench shares: bench/gpu_gemm.py imports it)."""
    timer = timer or GraphTimer(fn.compiled.device)
    state = fn.upload(*arrays)
    try:
        return timer.time(state.run, first_run_ms(timer.dev, state.run))
    finally:
        state.free()


class Torch:
    """PyTorch's peer of each row, timed like Tessera's (a CUDA graph when capture works)."""

    def __init__(self) -> None:
        self.torch: Any = None
        self.why = ""
        try:
            import torch
        except ImportError:
            self.why = "PyTorch is not installed"
            return
        if not torch.cuda.is_available():
            self.why = "PyTorch sees no CUDA device"
            return
        self.torch = torch

    def tensor(self, a: np.ndarray) -> Any:
        t = self.torch
        if a.dtype == BF16:
            return t.from_numpy(a.view(np.int16)).view(t.bfloat16).cuda()
        return t.from_numpy(np.ascontiguousarray(a)).cuda()

    def time(self, op: Callable[[], Any]) -> float:
        t = self.torch
        op()
        t.cuda.synchronize()
        s, e = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        s.record()
        op()
        e.record()
        e.synchronize()
        first = s.elapsed_time(e)
        inner = max(1, min(50, int(2.0 / max(first, 1e-3))))
        reps = max(3, min(30, int(TIME_BUDGET_MS / max(first * inner, 1e-3))))
        run: Callable[[], Any]
        try:
            g = t.cuda.CUDAGraph()
            stream = t.cuda.Stream()
            stream.wait_stream(t.cuda.current_stream())
            with t.cuda.stream(stream):
                op()  # warm-up on the side stream, as capture wants
            t.cuda.current_stream().wait_stream(stream)
            with t.cuda.graph(g):
                for _ in range(inner):
                    op()
            run = g.replay
        except Exception:  # noqa: BLE001 - timed without a graph

            def run() -> None:
                for _ in range(inner):
                    op()
        run()
        run()
        t.cuda.synchronize()
        times = []
        for _ in range(reps):
            s.record()
            run()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / inner)
        return statistics.median(times)


# ---------------------------------------------------------------- compiling @jit functions at fixed extents


def write_source(text: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    p = d / "rows.tsr"
    p.write_text(text)
    return p


def jit_graph(path: Path, fn_name: str, dims: dict[str, int]) -> Any:
    """The specialised graph of @jit `fn_name` of the file at `path` for the extents `dims`."""
    from tessera.frontend.check import check_file
    from tessera.runtime import stages

    checked = check_file(path).result
    assert checked is not None, f"{path} does not check"
    fn = next(f for f in checked.program.root.tree.functions if f.name == fn_name)
    sig = checked.signatures[fn]
    env = stages.bind(sig, dims)
    return stages.lower_to(checked, fn, "graph", stages.static_defaults(sig, fn), env).graph


def build(graph: Any, params: dict[str, int] | None = None, block_access: bool = True,
          bf16_cvt: bool = True, row_divide: bool = True, packed_join: bool = True,
          moments: bool = False) -> cuda.CudaCompiledFunction:
    """The graph compiled for the device as compile_function(target="cuda") does, with the GPU
    schedule parameters `params` (None: the defaults), gpu_memory's block access and packed 16-bit
    joins, the PTX emitter's bf16 rounding instruction (ptx_bf16) and gpu_row_divide's division by a
    row-uniform divisor and gpu_moments's one-reduction mean and variance on or off; compiled afresh (not through the runtime's cache, whose key is the Tile IR alone)."""
    from tessera.ir.graph.passes.pipeline import optimize
    from tessera.ir.graph_to_schedule import partition
    from tessera.ir.schedule.gpu_heuristics import retarget
    from tessera.ir.schedule.verify import verify_plan
    from tessera.ir.schedule_to_tile import lower_plan

    g = optimize(graph)
    plan = partition(g)
    retarget(plan, **(params or {}))
    verify_plan(plan)
    kernels = lower_plan(plan)
    dev = cuda.device()
    saved = (gpu_memory.BLOCK_ACCESS, gpu_memory.PACKED_JOIN, ptx_bf16.ENABLED, gpu_row_divide.ENABLED,
             gpu_moments.ENABLED)
    gpu_memory.BLOCK_ACCESS, gpu_memory.PACKED_JOIN = block_access, packed_join
    ptx_bf16.ENABLED, gpu_row_divide.ENABLED, gpu_moments.ENABLED = bf16_cvt, row_divide, moments
    try:
        ptx = cuda.emit_kernels_ptx(kernels, dev.arch)
    finally:
        (gpu_memory.BLOCK_ACCESS, gpu_memory.PACKED_JOIN, ptx_bf16.ENABLED, gpu_row_divide.ENABLED,
         gpu_moments.ENABLED) = saved
    return cuda.CudaCompiledFunction(plan, kernels, cuda.CudaKernels(dev, kernels, ptx, dev.arch), g)


# ---------------------------------------------------------------- 1. correctness: examples and stdlib kernels


def check_examples(rng: np.random.Generator, timer: GraphTimer | None) -> list[Row]:
    from gpu_cases import example_case, example_names

    from tessera.ir.graph.reference import evaluate
    from tessera.runtime.executor import compile_function

    rows = []
    for file, fn in example_names():
        case = example_case(file, fn)
        row = Row(f"{case.id} " + " ".join(f"{k}={v}" for k, v in case.dims.items()))
        rows.append(row)
        try:
            compiled = compile_function(case.lowered.graph, target="cuda")
            compiled.poison = True
            xs = case.inputs(rng)
            got = compiled(*xs)
            refs = evaluate(case.lowered.graph, xs, float64=True)
            # The bound: the dtype's, or 1.5 times what the reference evaluator in the same dtypes
            # loses to float64 (deep bf16 pipelines lose a few percent to rounded intermediates).
            owns = [rel_err(o, r) for o, r in zip(evaluate(case.lowered.graph, xs), refs)]
            errs = [rel_err(g, r) for g, r in zip(got, refs)]
            row.err = max(errs)
            row.ok = all(not math.isnan(e) and e <= max(TOL.get(g.dtype, 1e-5), 1.5 * o)
                         for e, o, g in zip(errs, owns, got))
            if timer is not None:
                row.ms = time_plan(compiled, xs, timer)  # type: ignore[arg-type]
        except Exception as ex:  # noqa: BLE001 - reported in the table, the run goes on
            row.fail(ex)
    return rows


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    d = x - x.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps) * w + b


def _rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n, m = s.shape[-2:]
        s = np.where(np.arange(m)[None, :] <= np.arange(n)[:, None], s, -np.inf)
    return _softmax(s) @ v


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def stdlib_cases(rng: np.random.Generator) -> list[tuple[str, str, Callable[[Any], tuple[Any, np.ndarray]]]]:
    """(name, kernel, run): run(kernel) -> (result, float64 reference), bf16 inputs."""

    def r(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(BF16)

    def f64(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float64)

    def softmax(k: Any) -> tuple[Any, np.ndarray]:
        x = r(37, 1000, scale=3)
        return k(x), _softmax(f64(x))

    def matmul(k: Any) -> tuple[Any, np.ndarray]:
        a, b, bias = r(70, 96), r(96, 130), r(130)
        y = f64(a) @ f64(b) + f64(bias)
        return k(a, b, bias, epilogue=("bias", "gelu")), 0.5 * y * (1 + _erf(y / math.sqrt(2)))

    def layernorm(k: Any) -> tuple[Any, np.ndarray]:
        x, w, b = r(33, 768), r(768), r(768)
        return k(x, w, b, eps=1e-5), _layernorm(f64(x), f64(w), f64(b), 1e-5)

    def rmsnorm(k: Any) -> tuple[Any, np.ndarray]:
        x, w = r(33, 768), r(768)
        return k(x, w, eps=1e-6), _rmsnorm(f64(x), f64(w), 1e-6)

    def flash(causal: bool) -> Callable[[Any], tuple[Any, np.ndarray]]:
        def run(k: Any) -> tuple[Any, np.ndarray]:
            q, kk, v = r(3, 150, 64), r(3, 150, 64), r(3, 150, 64)
            return k(q, kk, v, causal=causal), _attention(f64(q), f64(kk), f64(v), causal)
        return run

    def rotary(k: Any) -> tuple[Any, np.ndarray]:
        x, c, s = r(40, 128), r(40, 64), r(40, 64)
        x1, x2 = f64(x[:, :64]), f64(x[:, 64:])
        return k(x, c, s), np.concatenate([x1 * f64(c) - x2 * f64(s), x2 * f64(c) + x1 * f64(s)], axis=1)

    def adam(k: Any) -> tuple[Any, np.ndarray]:
        n = 5000
        p, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
        v = np.abs(rng.standard_normal(n)).astype(np.float32)
        lr, b1, b2, eps, step = 1e-3, 0.9, 0.999, 1e-8, 3.0
        m64 = b1 * f64(m) + (1 - b1) * f64(g)
        v64 = b2 * f64(v) + (1 - b2) * f64(g) ** 2
        want = f64(p) - lr * (m64 / (1 - b1 ** step)) / (np.sqrt(v64 / (1 - b2 ** step)) + eps)
        k[(math.ceil(n / 1024),)](p, g, m, v, lr=lr, beta1=b1, beta2=b2, eps=eps, step=step)
        return p, want

    return [("softmax_rows bf16 37x1000", "softmax_rows", softmax),
            ("matmul bf16 70x96x130 +bias,gelu", "matmul", matmul),
            ("layernorm_rows bf16 33x768", "layernorm_rows", layernorm),
            ("rmsnorm_rows bf16 33x768", "rmsnorm_rows", rmsnorm),
            ("flash_attention bf16 3x150x64", "flash_attention", flash(False)),
            ("flash_attention bf16 3x150x64 causal", "flash_attention", flash(True)),
            ("rotary bf16 40x128", "rotary", rotary),
            ("adam_update f32 5000", "adam_update", adam)]


def stdlib_kernels(target: str) -> Any:
    names = ("softmax_rows", "matmul", "layernorm_rows", "rmsnorm_rows", "flash_attention", "rotary", "adam_update")
    m = tessera.compile(f"from stdlib.kernels import {', '.join(names)}\n", target=target)
    return lambda name: m.runtime.module_attr("stdlib.kernels", name)


def check_stdlib(rng: np.random.Generator) -> list[Row]:
    rows = []
    try:
        kernel = stdlib_kernels("cuda")
    except Exception as ex:  # noqa: BLE001
        row = Row("stdlib.kernels")
        row.fail(ex)
        return [row]
    for name, kname, run in stdlib_cases(rng):
        row = Row(f"stdlib {name}")
        rows.append(row)
        try:
            got, want = run(kernel(kname))
            got = np.asarray(got)
            row.err = rel_err(got, want)
            row.ok = passes(row.err, got.dtype)  # f32 results (adam, matmul's epilogue) to f32's bound
        except Exception as ex:  # noqa: BLE001
            row.fail(ex)
    return rows


# ---------------------------------------------------------------- 2. performance rows


def copy_row(timer: GraphTimer, torch: Torch) -> Row:
    """Device-to-device copy of 1 GiB, bytes read + written over the median time: the best of
    cuMemcpyDtoDAsync replayed in a CUDA graph, the same issued back to back, and PyTorch's copy_
    (timed in a graph too). On the H100 the memcpy in a graph - ours or PyTorch's - moved ~2.43 TB/s
    and the one issued back to back ~3.0 TB/s (bench/NOTES-gpu.md): the best is the roofline."""
    row = Row("copy D2D 1 GiB (the roofline)")
    n = 1 << 30
    dev = timer.dev
    src, dst = dev.alloc(n), dev.alloc(n)
    try:
        src.fill_bytes(0x3C)

        def launch(stream: Any) -> None:
            cuda._call("cuMemcpyDtoDAsync", dst.ptr, src.ptr, n, stream)

        first = first_run_ms(dev, launch)
        times = {"memcpy in a graph": timer.time(launch, first)}
        times["memcpy back to back"] = GraphTimer(dev, graphs=False).time(launch, first)
        if torch.torch is not None:
            t = torch.torch
            a, b = t.empty(n, dtype=t.uint8, device="cuda"), t.empty(n, dtype=t.uint8, device="cuda")
            a.fill_(7)
            times["torch copy_"] = torch.time(lambda: b.copy_(a))
            del a, b
        how = min(times, key=lambda k: times[k])
        row.ms = times[how]
        row.note = f"{how}; " + ", ".join(f"{k} {2 * n / (v * 1e-3) / 1e9:.0f} GB/s" for k, v in times.items())
        row.rate, row.unit = 2 * n / (row.ms * 1e-3) / 1e9, "GB/s"
        row.ok = bool((dst.to_host((4096,), np.dtype(np.uint8)) == 0x3C).all())
    except Exception as ex:  # noqa: BLE001
        row.fail(ex)
    finally:
        src.free()
        dst.free()
    return row


@dataclass
class MemCase:
    name: str
    fn: str
    dims: dict[str, int]
    inputs: Callable[[np.random.Generator], list[np.ndarray]]
    ref: Callable[[list[np.ndarray]], np.ndarray]
    nbytes: int
    peer: Callable[[Any, list[Any]], Callable[[], Any]]


ONLY: tuple[str, ...] = ()  # --only: the memory-bound rows whose names contain one of these


def mem_cases() -> list[MemCase]:
    return [c for c in _mem_cases() if not ONLY or any(o in c.name for o in ONLY)]


def _mem_cases() -> list[MemCase]:
    n = BIG
    full = n * n * 2

    def x_only(rng: np.random.Generator) -> list[np.ndarray]:
        return [(rng.standard_normal((n, n)) * 3).astype(BF16)]

    def x_w(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, n)).astype(BF16), rng.standard_normal(n).astype(BF16)]

    def x_w_b(rng: np.random.Generator) -> list[np.ndarray]:
        return [*x_w(rng), rng.standard_normal(n).astype(BF16)]

    def x_y(rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, n)).astype(BF16), rng.standard_normal((n, n)).astype(BF16)]

    def f(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float64)

    return [
        MemCase("softmax bf16 8192x8192", "softmax_bf16", {"N": n, "M": n}, x_only, lambda xs: _softmax(f(xs[0])),
                2 * full, lambda t, xs: lambda: t.softmax(xs[0], dim=-1)),
        MemCase("layernorm bf16 8192x8192", "layernorm_bf16", {"N": n, "M": n}, x_w_b,
                lambda xs: _layernorm(f(xs[0]), f(xs[1]), f(xs[2]), 1e-5), 2 * full + 4 * n,
                lambda t, xs: lambda: t.nn.functional.layer_norm(xs[0], (n,), xs[1], xs[2], 1e-5)),
        MemCase("rmsnorm bf16 8192x8192", "rmsnorm_bf16", {"N": n, "M": n}, x_w,
                lambda xs: _rmsnorm(f(xs[0]), f(xs[1]), 1e-6), 2 * full + 2 * n,
                lambda t, xs: lambda: t.nn.functional.rms_norm(xs[0], (n,), xs[1], 1e-6)),
        MemCase("add bf16 8192x8192", "add_bf16", {"N": n, "M": n}, x_y, lambda xs: f(xs[0]) + f(xs[1]), 3 * full,
                lambda t, xs: lambda: t.add(xs[0], xs[1])),
    ]


def mem_rows(rng: np.random.Generator, timer: GraphTimer, torch: Torch, copy_gbs: float | None,
             src: Path) -> list[Row]:
    rows = []
    for case in mem_cases():
        row = Row(case.name)
        rows.append(row)
        try:
            xs = case.inputs(rng)
            fn = build(jit_graph(src, case.fn, case.dims))
            fn.poison = True
            got = fn(*xs)[0]
            sample = np.sort(rng.choice(BIG, 64, replace=False))
            # Row-wise kernels: the reference of the sampled rows (w, b whole).
            row.err = rel_err(got[sample], case.ref([x[sample] if x.ndim == 2 else x for x in xs]))
            row.ok = passes(row.err, BF16) and not np.isnan(got.astype(np.float32)).any()
            row.ms = time_plan(fn, xs, timer)
            row.rate, row.unit = case.nbytes / (row.ms * 1e-3) / 1e9, "GB/s"
            if copy_gbs:
                row.pct, row.pct_of, row.target = 100 * row.rate / copy_gbs, "copy", COPY_TARGET
            if torch.torch is not None:
                row.peer_ms = torch.time(case.peer(torch.torch, [torch.tensor(x) for x in xs]))
            row.extra["inputs"] = xs
        except Exception as ex:  # noqa: BLE001
            row.fail(ex)
    return rows


SWEEP: list[tuple[str, dict[str, int], dict[str, bool]]] = [
    # (label, gpu_heuristics parameters, build switches: block_access, bf16_cvt, row_divide,
    # packed_join, moments). Earlier variants (per-slot access, integer rounding, slots) are in
    # bench/NOTES-gpu.md; these are the ones of versions 3-5 (the defaults are the winners).
    ("default", {}, {}),
    ("one row a program", {"blocks_per_program": 1}, {}),  # version 5: weights read every row
    ("2 rows a program", {"blocks_per_program": 2}, {}),
    ("8 rows a program", {"blocks_per_program": 8}, {}),
    ("no register cap", {"resident_threads": 0}, {}),
    ("one-reduction mean and variance", {}, {"moments": True}),  # gpu_moments (version 4: slower)
    ("IEEE division per element", {}, {"row_divide": False}),
    ("unpacked 16-bit join", {}, {"packed_join": False}),
    ("row elems=16", {"row_elements": 16}, {}),
]


def sweep(rows: list[Row], timer: GraphTimer, copy_gbs: float | None, src: Path) -> list[Row]:
    """The memory-bound rows again under each variant of SWEEP (only the variants that change the
    row's PTX)."""
    out = []
    for case, base in zip(mem_cases(), rows):
        xs = base.extra.get("inputs")
        if xs is None:
            continue
        graph = jit_graph(src, case.fn, case.dims)
        seen: set[str] = set()
        for label, params, switches in SWEEP:
            try:
                fn = build(graph, params, **switches)
                key = fn.compiled.ptx  # a variant that changes nothing for this row is not timed again
                if key in seen:
                    continue
                seen.add(key)
                sched = "; ".join(str(k.schedule) for k in fn.kernels)
                row = Row(f"  {case.name.split()[0]} {label}", note=sched)
                out.append(row)
                fn.poison = True
                got = fn(*xs)[0]
                sample = np.arange(0, BIG, 257)
                row.err = rel_err(got[sample], case.ref([x[sample] if x.ndim == 2 else x for x in xs]))
                row.ok = passes(row.err, BF16)
                row.ms = time_plan(fn, xs, timer)
                row.rate, row.unit = case.nbytes / (row.ms * 1e-3) / 1e9, "GB/s"
                if copy_gbs:
                    row.pct, row.pct_of, row.target = 100 * row.rate / copy_gbs, "copy", COPY_TARGET
            except Exception as ex:  # noqa: BLE001
                row = Row(f"  {case.name.split()[0]} {label}")
                out.append(row)
                row.fail(ex)
    return out


def gemm_rows(rng: np.random.Generator, timer: GraphTimer, torch: Torch, src: Path) -> list[Row]:
    """bf16 GEMM n^3 through bench/gpu_gemm.py's `gemm_row` (the tensor-core path's own bench) when it
    exists, else a @jit matmul compiled and timed here."""
    try:
        import gpu_gemm  # type: ignore[import-not-found]
        external = getattr(gpu_gemm, "gemm_row", None)
    except ImportError:
        external = None
    rows = []
    for n in (4096, 8192):
        row = Row(f"GEMM bf16 {n}^3" + (" (bench/gpu_gemm.py)" if external else " (@jit matmul)"))
        rows.append(row)
        try:
            if external is not None:
                got = external(rng, n, n, n)
                row.ms, row.err, row.ok, row.peer_ms = got["ms"], got["err"], bool(got["ok"]), got["torch_ms"]
                if got.get("note"):
                    row.note = str(got["note"])
            else:
                a = rng.standard_normal((n, n)).astype(BF16)
                b = rng.standard_normal((n, n)).astype(BF16)
                fn = build(jit_graph(src, "matmul_bf16", {"M": n, "K": n, "N": n}))
                fn.poison = True
                out = fn(a, b)[0]
                sample = np.sort(rng.choice(n, 32, replace=False))
                row.err = rel_err(out[sample], a[sample].astype(np.float64) @ b.astype(np.float64))
                row.ok = passes(row.err, BF16)
                row.ms = time_plan(fn, [a, b], timer)
                if torch.torch is not None:
                    ta, tb = torch.tensor(a), torch.tensor(b)
                    row.peer_ms = torch.time(lambda ta=ta, tb=tb: torch.torch.matmul(ta, tb))
            if row.ms:
                row.rate, row.unit = 2.0 * n ** 3 / (row.ms * 1e-3) / 1e12, "TFLOP/s"
                if row.peer_ms:
                    row.pct, row.pct_of = 100 * row.peer_ms / row.ms, "torch"
                    row.target = GEMM_TARGET if n == 4096 else None
        except Exception as ex:  # noqa: BLE001
            row.fail(ex)
    return rows


def mlp_row(rng: np.random.Generator, timer: GraphTimer, torch: Torch) -> Row:
    bsz, d = 4096, 1024
    h = 4 * d
    row = Row(f"fused MLP (examples/mlp.tsr) B={bsz} D={d} H={h}")
    try:
        x, w1 = rng.standard_normal((bsz, d)).astype(BF16), (rng.standard_normal((d, h)) / 32).astype(BF16)
        b1 = rng.standard_normal(h).astype(np.float32)
        w2 = (rng.standard_normal((h, d)) / 64).astype(BF16)
        fn = build(jit_graph(ROOT / "examples" / "mlp.tsr", "mlp", {"B": bsz, "D": d}))
        fn.poison = True
        got = fn(x, w1, b1, w2)[0]
        sample = np.sort(rng.choice(bsz, 32, replace=False))
        hid = x[sample].astype(np.float64) @ w1.astype(np.float64) + b1
        hid = 0.5 * hid * (1 + _erf(hid / math.sqrt(2)))
        row.err = rel_err(got[sample], hid @ w2.astype(np.float64))
        row.ok = passes(row.err, BF16)
        row.ms = time_plan(fn, [x, w1, b1, w2], timer)
        row.rate, row.unit = 4.0 * bsz * d * h / (row.ms * 1e-3) / 1e12, "TFLOP/s"
        if torch.torch is not None:
            t = torch.torch
            tx, tw1, tb1, tw2 = (torch.tensor(a) for a in (x, w1, b1, w2))
            gelu = t.nn.functional.gelu
            row.peer_ms = torch.time(lambda: gelu((tx @ tw1).float() + tb1).bfloat16() @ tw2)
            row.pct, row.pct_of = 100 * row.peer_ms / row.ms, "torch"
    except Exception as ex:  # noqa: BLE001
        row.fail(ex)
    return row


class CaughtLaunch:
    """The device launch a @kernel call on device arrays makes, caught so that it can be replayed
    alone (no binding, no result allocation, no copies): `launch(stream)`. Scalar arguments, which
    the call passes as 0-d host arrays, are uploaded once."""

    def __init__(self, kernel: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        from tessera.runtime.gpu_common import DeviceView

        kernel(*args, **kwargs)  # compiles (once per key)
        compiled = [c.compiled for c in kernel._cache.values()]
        calls: list[tuple[str, list[Any]]] = []

        def recorder(ck: Any) -> Callable[[str, list[Any]], None]:
            def launch(name: str, arrays: list[Any]) -> None:
                calls.append((name, list(arrays)))
                type(ck).launch(ck, name, arrays)
            return launch

        for ck in compiled:
            ck.launch = recorder(ck)  # the instance's attribute: the class's method stays as it is
        try:
            self.result = kernel(*args, **kwargs)
        finally:
            for ck in compiled:
                del ck.launch
        assert len(calls) == 1, f"expected one launch, caught {len(calls)}"
        self.name, arrays = calls[0]
        self.kernels = next(ck for ck in compiled if self.name in ck.names)
        dev = cuda.device()
        self.bufs = []
        self.views = []
        for a in arrays:
            if isinstance(a, np.ndarray):
                buf = dev.alloc(a.nbytes)
                host = np.ascontiguousarray(a)
                buf.copy_from(host.ctypes.data, host.nbytes)
                self.bufs.append(buf)
                self.views.append(DeviceView(buf.ptr, a.shape, tuple(st // a.itemsize for st in host.strides), a.dtype))
            else:
                self.views.append(DeviceView(a.ptr, a.shape, a.strides, a.dtype))

    def launch(self, stream: Any) -> None:
        self.kernels.launch_device(self.name, self.views, stream)

    def free(self) -> None:
        for buf in self.bufs:
            buf.free()


def attention_rows(rng: np.random.Generator, timer: GraphTimer, torch: Torch) -> list[Row]:
    """Flash attention forward through stdlib.kernels.flash_attention on the cuda target, on device-
    resident inputs (torch tensors, used in place): checked against float64 on two heads, then its
    launch timed alone like the other rows (captured into a CUDA graph); PyTorch's
    scaled_dot_product_attention on the same tensors."""
    bsz, heads, s, d = 4, 32, 4096, 128
    rows = []
    if torch.torch is None:
        row = Row("flash attention (stdlib.kernels on cuda)")
        row.fail(RuntimeError(f"device-resident inputs need PyTorch: {torch.why}"))
        return [row]
    try:
        kernel = stdlib_kernels("cuda")("flash_attention")
    except Exception as ex:  # noqa: BLE001
        row = Row("flash attention (stdlib.kernels on cuda)")
        row.fail(ex)
        return [row]
    t = torch.torch
    q, k, v = ((rng.standard_normal((bsz * heads, s, d))).astype(BF16) for _ in range(3))
    tq, tk, tv = (torch.tensor(a) for a in (q, k, v))
    for causal in (False, True):
        row = Row(f"flash attention fwd B={bsz} H={heads} S={s} D={d}" + (" causal" if causal else ""))
        rows.append(row)
        flops = 4.0 * bsz * heads * s * s * d * (0.5 if causal else 1.0)
        caught = None
        try:
            caught = CaughtLaunch(kernel, (tq, tk, tv), {"causal": causal})
            got = caught.result.numpy() if hasattr(caught.result, "numpy") else np.asarray(caught.result)
            heads_checked = [0, bsz * heads - 1]
            row.err = max(rel_err(got[i], _attention(q[i].astype(np.float64), k[i].astype(np.float64),
                                                     v[i].astype(np.float64), causal)) for i in heads_checked)
            row.ok = passes(row.err, BF16)
            row.ms = timer.time(caught.launch, first_run_ms(timer.dev, caught.launch))
            row.note = "device-resident, kernel alone"
            row.rate, row.unit = flops / (row.ms * 1e-3) / 1e12, "TFLOP/s"
            sdpa = t.nn.functional.scaled_dot_product_attention
            views = [x.view(bsz, heads, s, d) for x in (tq, tk, tv)]
            row.peer_ms = torch.time(lambda f=sdpa, c=causal, vs=views: f(*vs, is_causal=c))
            row.pct, row.pct_of = 100 * row.peer_ms / row.ms, "torch"
        except Exception as ex:  # noqa: BLE001
            row.fail(ex)
        finally:
            if caught is not None:
                caught.free()
    return rows


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the correctness checks only")
    ap.add_argument("--sweep", action="store_true", help="also time schedule variants of the memory-bound rows")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: examples,stdlib,memory,gemm,mlp,"
                                               "attention")
    ap.add_argument("--only", default="", help="comma-separated: the memory-bound rows whose names contain one")
    args = ap.parse_args()
    global ONLY
    ONLY = tuple(filter(None, args.only.split(",")))
    skip = set(filter(None, args.skip.split(",")))
    why = cuda.available()
    if why is not None:
        print(f"error: no CUDA device: {why}", file=sys.stderr)
        return 3
    dev = cuda.device()
    print(f"device: {dev.name}, compute capability {dev.capability[0]}.{dev.capability[1]}, PTX for {dev.arch}")
    rng = np.random.default_rng(int(time.time()))
    timer = GraphTimer(dev)
    torch = Torch()
    if torch.why:
        print(f"no PyTorch peer: {torch.why}")
    src = write_source(ROWS_SRC)
    sections: list[tuple[str, list[Row]]] = []

    def section(title: str, rows: list[Row]) -> list[Row]:
        sections.append((title, rows))
        print_table(title, rows)  # as it completes, so a run cut short still shows it
        sys.stdout.flush()
        return rows

    if "examples" not in skip:
        section("examples (plans of the examples' @jit functions, small extents)",
                check_examples(rng, None if args.quick else timer))
    if "stdlib" not in skip:
        section("stdlib kernels (@kernel on cuda, host calls)", check_stdlib(rng))
    if not args.quick:
        copy = copy_row(timer, torch)
        perf: list[Row] = [copy]
        mem: list[Row] = []
        if "memory" not in skip:
            mem = section("memory-bound rows", mem_rows(rng, timer, torch, copy.rate, src))
            perf += mem
        if args.sweep and mem:
            section("sweep: memory-bound rows under schedule variants", sweep(mem, timer, copy.rate, src))
        if "gemm" not in skip:
            perf += gemm_rows(rng, timer, torch, src)
        if "mlp" not in skip:
            perf.append(mlp_row(rng, timer, torch))
        if "attention" not in skip:
            perf += attention_rows(rng, timer, torch)
        title = f"Tessera vs PyTorch (timing: {timer.how}; median after warm-up)"
        sections.append((title, perf))
        print_table(title, perf)
    checked = [r for _, rows in sections for r in rows if r.ok is not None]
    return 0 if all(r.ok for r in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
