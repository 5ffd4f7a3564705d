"""bf16 GEMM on the CUDA backend (tensor cores: tessera/ir/gpu_pipeline.py) against torch.matmul.

    python3 bench/gpu_gemm.py                       # 4096^3 and 8192^3 with the default cuda schedule
    python3 bench/gpu_gemm.py --sweep               # and the schedules of SWEEP at 4096^3, the best at 8192^3
    python3 bench/gpu_gemm.py --check-only          # correctness at small and ragged sizes only

`y = cast(a @ b, bf16)` with f32 accumulation is compiled through Graph -> Schedule -> Tile -> Target
IR -> PTX -> the driver. Each case is first checked: fresh random inputs, the output buffer poisoned
(0xFF bytes: NaN), ‖y - ref‖ / ‖ref‖ against the float64 product (bound: bf16 rounding of the output,
2^-8, with room for the f32 accumulation order). Then the plan runs on device-resident buffers, timed
by bench/gpu.py's `time_plan` (CUDA graph replays); torch.matmul on the same bf16 inputs with CUDA
events, warm-up then the median of REPEATS runs. TFLOP/s counts 2 M N K.

Last sweep (H100 80GB HBM3, 2026-11-23): the default 128x128 k64 w4 s3 group_m 8 at 401 TFLOP/s for
4096^3 (torch ~660-700) and 414 for 8192^3 (torch ~770); 128x256 / 256x128 k64 w8 s3 ~380; 128x128
k64 w4 s4, w8, and the k32 w8 tiles 309-327.

`gemm_rows()` returns the rows (dicts) for bench/gpu.py's table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import traceback
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gpu import rel_err, time_plan  # the checks and timing every GPU bench shares

import tessera
from tessera.ir.schedule.gpu_heuristics import matmul_schedule, retarget
from tessera.runtime import cuda

WARMUP = 5
REPEATS = 20
TOL = 2.0 ** -8 + 1e-3
MM = '''
@jit
def mm(a: Tensor["M", "K", bf16 @accum(f32)], b: Tensor["K", "N", bf16]) -> Tensor["M", "N", bf16]:
    return cast(a @ b, bf16)
'''
CHECK_SIZES = [(128, 128, 256), (256, 384, 512), (200, 136, 72), (131, 77, 45), (1000, 1000, 1000)]
# (block, k, warps, stages, group_m): the matmul_schedule parameters (tessera/ir/schedule/gpu_heuristics.py)
SWEEP = [((128, 128), 64, 4, 3, 1), ((128, 128), 64, 4, 3, 8), ((128, 128), 64, 4, 4, 8), ((128, 128), 32, 4, 4, 8),
         ((128, 128), 64, 8, 3, 8), ((128, 256), 32, 8, 4, 8), ((128, 256), 32, 8, 6, 8), ((128, 256), 64, 8, 3, 8),
         ((256, 128), 64, 8, 3, 8), ((256, 128), 32, 8, 4, 8)]


def compile_gemm(m: int, n: int, k: int, schedule: tuple | None = None) -> cuda.CudaCompiledFunction:
    """The mm plan for these extents, compiled for the device; `schedule` = (block, k, warps, stages[,
    group_m]) replaces the cuda heuristics' choice for the matmul call."""
    from tessera.ir.graph_to_schedule import partition
    from tessera.ir.schedule.verify import verify_plan
    from tessera.ir.schedule_to_tile import lower_plan

    jit = tessera.compile(MM, target="cuda").mm
    graph = jit.specialized_graph({}, {"M": m, "N": n, "K": k})
    plan = retarget(partition(graph))
    if schedule is not None:
        block, bk, warps, stages, *group = schedule
        extra = {"group_m": group[0]} if group else {}
        for call in plan.calls:
            s = matmul_schedule(call, block=block, k=bk, warps=warps, stages=stages, **extra)
            if s is not None:
                call.schedule = s
    verify_plan(plan)
    fn = cuda.compile_plan(plan, lower_plan(plan), graph)
    fn.poison = True
    return fn


def inputs(rng: np.random.Generator, m: int, n: int, k: int) -> list[np.ndarray]:
    bf = ml_dtypes.bfloat16
    return [rng.standard_normal((m, k)).astype(bf), rng.standard_normal((k, n)).astype(bf)]


def reference(xs: list[np.ndarray]) -> np.ndarray:
    """The float64 product (through torch on the device where it is there: 8192^3 takes NumPy minutes)."""
    try:
        import torch

        if torch.cuda.is_available():
            a, b = (torch.from_numpy(x.astype(np.float64)).cuda() for x in xs)
            return (a @ b).cpu().numpy()
    except ImportError:
        pass
    return xs[0].astype(np.float64) @ xs[1].astype(np.float64)


def torch_ms(xs: list[np.ndarray]) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a, b = (torch.from_numpy(x.view(np.int16)).cuda().view(torch.bfloat16) for x in xs)
    for _ in range(WARMUP):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    times = []
    for _ in range(REPEATS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.matmul(a, b)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def gemm_row(rng: np.random.Generator, m: int, n: int, k: int, schedule: tuple | None = None,
             timed: bool = True, data: tuple[list[np.ndarray], np.ndarray] | None = None) -> dict[str, object]:
    """Check (and time) one GEMM: name, shape, ok, err, ms, tflops, torch_ms, torch_tflops, note.
    `data`: (inputs, float64 reference) shared by the schedules of one shape (fresh ones if None)."""
    sched = "default" if schedule is None else f"{schedule[0][0]}x{schedule[0][1]} k{schedule[1]} " \
                                                f"w{schedule[2]} s{schedule[3]}" + \
                                                "".join(f" g{g}" for g in schedule[4:])
    row: dict[str, object] = {"name": f"gemm bf16 [{sched}]", "shape": f"{m}x{n}x{k}", "ok": False,
                              "err": None, "ms": None, "tflops": None, "torch_ms": None, "torch_tflops": None,
                              "note": ""}
    try:
        fn = compile_gemm(m, n, k, schedule)
        if data is None:
            fresh = inputs(rng, m, n, k)
            data = (fresh, reference(fresh))
        xs, ref = data
        got = fn(*xs)[0]
        row["err"] = err = rel_err(got, ref)
        row["ok"] = bool(err <= TOL)
        if timed:
            flop = 2.0 * m * n * k
            row["ms"] = ms = time_plan(fn, xs)
            row["tflops"] = flop / (ms * 1e-3) / 1e12
            tm = torch_ms(xs)
            if tm is not None:
                row["torch_ms"], row["torch_tflops"] = tm, flop / (tm * 1e-3) / 1e12
    except Exception as ex:  # noqa: BLE001 - reported in the table, the run goes on
        row["note"] = f"{type(ex).__name__}: {str(ex).splitlines()[0][:100] if str(ex) else ''}"
        traceback.print_exc()
    return row


def gemm_rows(sizes: tuple[int, ...] = (4096, 8192), sweep: bool = False, check: bool = True,
              rng: np.random.Generator | None = None) -> list[dict[str, object]]:
    """Correctness at small and ragged sizes, then the timed square GEMMs (and the schedule sweep at
    the first size; its fastest correct schedule is timed at the other sizes too)."""
    rng = rng or np.random.default_rng()
    rows = [gemm_row(rng, m, n, k, timed=False) for m, n, k in CHECK_SIZES] if check else []
    best: tuple | None = None
    for i, s in enumerate(sizes):
        xs = inputs(rng, s, s, s)
        data = (xs, reference(xs))
        rows.append(gemm_row(rng, s, s, s, data=data))
        if sweep and i == 0:
            swept = [(sc, gemm_row(rng, s, s, s, sc, data=data)) for sc in SWEEP]
            rows += [r for _, r in swept]
            timed = [(float(r["tflops"]), sc) for sc, r in swept if r["ok"] and r["tflops"] is not None]  # type: ignore[arg-type]
            best = max(timed, key=lambda t: t[0])[1] if timed else None
        elif best is not None:
            rows.append(gemm_row(rng, s, s, s, best, data=data))
    return rows


def fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict[str, object]]) -> None:
    print(f"{'case':34} {'shape':>16} {'ok':>3} {'rel err':>9} {'ms':>8} {'TFLOP/s':>8} {'torch ms':>9} "
          f"{'torch TF/s':>10} {'vs torch':>8}  note")
    for r in rows:
        ratio = None if r["tflops"] is None or r["torch_tflops"] is None else \
            float(r["tflops"]) / float(r["torch_tflops"])  # type: ignore[arg-type]
        print(f"{r['name']!s:34} {r['shape']!s:>16} {'yes' if r['ok'] else 'NO':>3} {fmt(r['err'], '.2e'):>9} "
              f"{fmt(r['ms'], '.3f'):>8} {fmt(r['tflops'], '.1f'):>8} {fmt(r['torch_ms'], '.3f'):>9} "
              f"{fmt(r['torch_tflops'], '.1f'):>10} {fmt(ratio, '.2f'):>8}  {r['note']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="also time the schedules of SWEEP at the first size")
    ap.add_argument("--check-only", action="store_true", help="correctness at the small sizes only")
    ap.add_argument("--sizes", type=int, nargs="*", default=[4096, 8192])
    args = ap.parse_args()
    why = cuda.available()
    if why is not None:
        print(f"no CUDA device: {why}")
        return 2
    rows = gemm_rows(() if args.check_only else tuple(args.sizes), sweep=args.sweep)
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
