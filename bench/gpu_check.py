"""Check and time the CUDA backend on a GPU machine: every example's @jit functions (the extents of
tests/gpu_cases.py) and row softmax, layernorm and add at 8192 x 8192 f32.

Every case is compiled through Graph -> Schedule -> Tile -> Target IR -> PTX -> the driver, run once
on fresh random inputs with every device buffer poisoned (0xFF bytes: NaN / -1) and compared with a
float64 reference (the reference evaluator in float64 for the examples, NumPy formulas for the big
kernels): ‖out - ref‖ / ‖ref‖ must stay under the dtype's bound (for the examples: or within 1.5 times
what the reference evaluator in the same dtypes loses to float64) and no output may be NaN. Then the
plan's kernels are timed on device-resident buffers with CUDA events: warm-up, then the median of
REPEATS runs. Where PyTorch is installed, the same big kernels run through it as the peer.

    python3 bench/gpu_check.py            # prints the table last; exit 1 if any check fails
    python3 bench/gpu_check.py --quick    # the examples only

The "GB/s" column counts the bytes each kernel must move at least (inputs read once, outputs
written once) over the median time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # gpu_cases: the examples' extents, shared with the tests

import tessera
from tessera.ir.graph.reference import evaluate
from tessera.runtime import cuda
from tessera.runtime.executor import compile_function

WARMUP = 3
REPEATS = 20
BIG = 8192
TOL = {np.dtype(np.float32): 1e-5, np.dtype(ml_dtypes.bfloat16): 5e-2}

ADD = '''
@jit
def add(x: Tensor["N", "M", f32], y: Tensor["N", "M", f32]) -> Tensor["N", "M", f32]:
    return x + y
'''


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    g = got.astype(np.float64)
    if np.isnan(g).any():
        return float("nan")
    return float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-300))


def time_plan(fn: cuda.CudaCompiledFunction, arrays: list[np.ndarray]) -> float:
    """Median milliseconds of one run of the plan's kernels, inputs already on the device."""
    dev = fn.compiled.device
    state = fn.upload(*arrays)
    try:
        for _ in range(WARMUP):
            state.run()
        dev.synchronize()
        times = []
        start, end = dev.event(), dev.event()
        for _ in range(REPEATS):
            dev.record(start)
            state.run()
            dev.record(end)
            times.append(dev.elapsed_ms(start, end))
        return statistics.median(times)
    finally:
        state.free()


def torch_ms(fn_name: str, arrays: list[np.ndarray]) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    xs = [torch.from_numpy(np.ascontiguousarray(a)).cuda() for a in arrays]
    d = xs[0].shape[-1]
    ops = {
        "softmax": lambda: torch.softmax(xs[0], dim=-1),
        "layernorm": lambda: torch.nn.functional.layer_norm(xs[0], (d,), xs[1], xs[2], 1e-5),
        "add": lambda: xs[0] + xs[1],
    }
    op = ops[fn_name]
    for _ in range(WARMUP):
        op()
    torch.cuda.synchronize()
    times = []
    for _ in range(REPEATS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        op()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


class Row:
    def __init__(self, name: str, shape: str) -> None:
        self.name, self.shape = name, shape
        self.ms: float | None = None
        self.gbs: float | None = None
        self.err: float | None = None
        self.peer: float | None = None
        self.ok = False
        self.note = ""


def check_examples(rng: np.random.Generator, rows: list[Row]) -> None:
    from gpu_cases import example_case, example_names

    for file, fn in example_names():
        case = example_case(file, fn)
        row = Row(case.id, " ".join(f"{k}={v}" for k, v in case.dims.items()))
        rows.append(row)
        try:
            compiled = compile_function(case.lowered.graph, target="cuda")
            compiled.poison = True
            xs = case.inputs(rng)
            got = compiled(*xs)
            refs = evaluate(case.lowered.graph, xs, float64=True)
            # The bound: the dtype's, or what the reference evaluator's own dtype semantics lose to
            # float64 (deep bf16 pipelines lose a few percent to the rounding of intermediates).
            owns = [rel_err(o, r) for o, r in zip(evaluate(case.lowered.graph, xs), refs)]
            errs = [rel_err(g, r) for g, r in zip(got, refs)]
            row.err = max(errs)
            row.ok = all(e <= max(TOL.get(g.dtype, 1e-5), 1.5 * o) for e, o, g in zip(errs, owns, got))
            row.ms = time_plan(compiled, xs)
        except Exception as ex:  # noqa: BLE001 - reported in the table, the run goes on
            row.note = f"{type(ex).__name__}: {str(ex).splitlines()[0][:120] if str(ex) else ''}"
            traceback.print_exc()


def big_cases(rng: np.random.Generator) -> list[tuple[str, object, list[np.ndarray], object, int]]:
    """(name, jit function, inputs, float64 reference, bytes moved)."""
    n = BIG
    x = (rng.standard_normal((n, n)) * 3).astype(np.float32)
    y = rng.standard_normal((n, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    softmax = tessera.load(ROOT / "examples" / "softmax.tsr", target="cuda").row_softmax
    norm = tessera.load(ROOT / "examples" / "layernorm.tsr", target="cuda").norm
    add = tessera.compile(ADD, target="cuda").add

    def softmax_ref() -> np.ndarray:
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def norm_ref() -> np.ndarray:
        x64 = x.astype(np.float64)
        mu = x64.mean(-1, keepdims=True)
        var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
        return ((x64 - mu) / np.sqrt(var + 1e-5) * w + b)[None]

    nbytes = n * n * 4
    return [("softmax", softmax, [x], softmax_ref, 2 * nbytes),
            ("layernorm", norm, [x[None], w, b], norm_ref, 2 * nbytes),
            ("add", add, [x, y], lambda: x.astype(np.float64) + y, 3 * nbytes)]


def check_big(rng: np.random.Generator, rows: list[Row]) -> None:
    for name, jit, xs, ref, nbytes in big_cases(rng):
        row = Row(f"{name} f32", f"{BIG}x{BIG}")
        rows.append(row)
        try:
            jit(*xs)  # compile (and a first run) through the user-facing call
            key = next(iter(jit._cache))  # type: ignore[attr-defined]
            compiled = jit._cache[key][0]  # type: ignore[attr-defined]
            compiled.poison = True
            got = compiled(*xs)[0]
            row.err = rel_err(got, ref())
            row.ok = row.err <= 1e-5
            row.ms = time_plan(compiled, xs)
            row.gbs = nbytes / (row.ms * 1e-3) / 1e9
            peer_inputs = [xs[0][0], xs[1], xs[2]] if name == "layernorm" else xs
            row.peer = torch_ms(name, peer_inputs)
        except Exception as ex:  # noqa: BLE001
            row.note = f"{type(ex).__name__}: {str(ex).splitlines()[0][:120] if str(ex) else ''}"
            traceback.print_exc()


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the examples only")
    args = ap.parse_args()
    why = cuda.available()
    if why is not None:
        print(f"error: no CUDA device: {why}", file=sys.stderr)
        return 3
    dev = cuda.device()
    print(f"device: {dev.name}, compute capability {dev.capability[0]}.{dev.capability[1]}, PTX for {dev.arch}")
    rng = np.random.default_rng(int(time.time()))
    rows: list[Row] = []
    check_examples(rng, rows)
    if not args.quick:
        check_big(rng, rows)
    print()
    head = f"{'case':42s} {'extents':24s} {'check':5s} {'rel err':>9s} {'ms (median)':>11s} {'GB/s':>7s} {'torch ms':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        status = "ok" if r.ok else "FAIL"
        print(f"{r.name:42s} {r.shape:24s} {status:5s} {fmt(r.err, '9.1e')} {fmt(r.ms, '11.3f')} "
              f"{fmt(r.gbs, '7.0f')} {fmt(r.peer, '8.3f')}" + (f"  {r.note}" if r.note else ""))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
