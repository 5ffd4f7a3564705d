"""CPU benchmark: Tessera vs NumPy in one process, end to end through the user-facing API.

    .venv/bin/python bench/cpu.py [--runs N] [--cli-runs N]

Each workload is a `@jit` function of a small program given to `tessera.compile`, called with NumPy
arrays exactly as a user would (argument checks, guards, the specialisation cache, result allocation
included), next to the NumPy code a user would write. Before timing, each result is compared with
NumPy's (max |tessera - numpy| / max |numpy|). Timing: one warm-up call each (Tessera's first call
compiles; it is shown as "1st call"), then `--runs` calls of each, in interleaved blocks (see
`time_pair`: OpenBLAS's spinning threads would otherwise slow whichever side runs next). The table shows medians, their spread (± half the
interquartile range, in % of the median) and NumPy-time / Tessera-time (above 1.0 Tessera is faster).

The `tessera run` rows time a subprocess running a small program (parse, check, compile, run) with an
empty TESSERA_CACHE_DIR (cold: a fresh temporary folder per run; "no caches" also empties the parser
table cache), and again with the cache it filled (warm).

Compiled code is cached in a fresh temporary TESSERA_CACHE_DIR, so the 1st-call figures are cold
compiles. Exit status 1 when a result is wrong; a workload below its target is only marked.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EPS = 1e-5
MAX_REL_ERR = 1e-4  # f32 results against NumPy's f32 results

PROGRAM = '''
@jit
def softmax_rows(x: Tensor["N", "M", f32]) -> Tensor["N", "M", f32]:
    return softmax(x, axis=-1)


@jit
def norm(x: Tensor["N", "D", f32], w: Tensor["D", f32], b: Tensor["D", f32]) -> Tensor["N", "D", f32]:
    return layernorm(x, w, b, 1e-5)


@jit
def matmul(a: Tensor["M", "K", f32], b: Tensor["K", "N", f32]) -> Tensor["M", "N", f32]:
    return a @ b


@jit
def ffn_up(x: Tensor["T", "D", f32], w: Tensor["D", "H", f32], b: Tensor["H", f32]) -> Tensor["T", "H", f32]:
    return gelu(x @ w + b, approximate="tanh")
'''

# The `tessera run` program: host code drawing seeded inputs, one fused @jit call, a print, and the
# result returned (written with --out and checked against NumPy).
SMALL_PROGRAM = '''
@jit
def block(x: Tensor["B", "D", f32], w: Tensor["D", "H", f32], b: Tensor["H", f32]) -> Tensor["B", "H", f32]:
    return softmax(gelu(x @ w + b, approximate="tanh"), axis=-1)


def main():
    x = randn((64, 128), f32, seed=1)
    w = randn((128, 256), f32, seed=2)
    b = zeros((256,), f32)
    y = block(x, w, b)
    print("rows sum to", sum(y, axis=-1)[0])
    return y
'''
CLI_TARGET_S = 3.0


# ---------------------------------------------------------------- NumPy side


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(EPS)) * w + b


def np_gelu_tanh(h: np.ndarray) -> np.ndarray:
    # NumPy has no erf (a per-element math.erf would be far slower), so both sides use the tanh form.
    c = np.float32(math.sqrt(2 / math.pi))
    return np.float32(0.5) * h * (np.float32(1) + np.tanh(c * (h + np.float32(0.044715) * h * h * h)))


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    times: list[float]  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Half the interquartile range, as a fraction of the median."""
        q1, _, q3 = statistics.quantiles(self.times, n=4)
        return (q3 - q1) / 2 / self.median


def time_pair(np_fn: Callable[[], object], ts_fn: Callable[[], object], runs: int,
              rounds: int = 4) -> tuple[Timing, Timing]:
    """Time each side in blocks of calls, the blocks interleaved over `rounds` (the side that goes
    first alternates) so that both see the same background load. Blocks rather than single calls
    because OpenBLAS's worker threads spin for a while after each call: timed right after a NumPy
    matmul, Tessera's threads would share the two cores with them (and the other way round). A short
    pause before each block lets the other side's threads go idle."""
    np_fn()
    ts_fn()
    t_np: list[float] = []
    t_ts: list[float] = []
    per_block = max(1, runs // rounds)
    for r in range(rounds):
        sides = ((np_fn, t_np), (ts_fn, t_ts))
        for fn, out in sides if r % 2 == 0 else reversed(sides):
            time.sleep(0.2)
            fn()  # a call to wake the side's threads, untimed
            for _ in range(per_block):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return Timing(t_np), Timing(t_ts)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-30))


def ms(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


# ---------------------------------------------------------------- machine


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> tuple[str, str]:
    """NumPy's BLAS (name, version, OpenBLAS core) and its thread count, best effort."""
    name, threads = "unknown", "?"
    # show_config's layout differs between NumPy versions; the OpenBLAS probe needs Linux.
    with contextlib.suppress(Exception):
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas['name']} {blas.get('version', '')}".strip()
    with contextlib.suppress(StopIteration, OSError, AttributeError, UnicodeDecodeError):
        # OpenBLAS reports the kernel set it picked at run time and its thread count.
        path = next(ln.split()[-1] for ln in Path("/proc/self/maps").read_text().splitlines()
                    if "openblas" in ln.lower())
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            get_config = getattr(lib, f"{prefix}_get_config{suffix}", None)
            get_threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if get_config is not None and get_threads is not None:
                get_config.restype = ctypes.c_char_p
                core = get_config().decode().split()
                name += f" ({core[-2]})" if len(core) >= 2 else ""
                threads = str(get_threads())
                break
    return name, threads


# ---------------------------------------------------------------- tessera run


def tessera_command() -> list[str]:
    script = Path(sys.executable).with_name("tessera")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tessera.cli import main; main()"]


def run_cli(program: Path, out: Path, env: dict[str, str]) -> float:
    cmd = [*tessera_command(), "run", str(program), "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=False, env={**os.environ, **env}, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0 or "rows sum to" not in p.stdout:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return elapsed


def small_program_reference() -> np.ndarray:
    # `randn(shape, f32, seed=N)` on the host is PCG64(N)'s standard normals rounded to f32.
    x = np.random.Generator(np.random.PCG64(1)).standard_normal((64, 128)).astype(np.float32)
    w = np.random.Generator(np.random.PCG64(2)).standard_normal((128, 256)).astype(np.float32)
    return np_softmax(np_gelu_tanh(x @ w))


def bench_cli(runs: int, tmp: Path) -> list[tuple[str, Timing, float]]:
    program = tmp / "small.tsr"
    program.write_text(SMALL_PROGRAM)
    out = tmp / "out.npz"
    warm_env = {"TESSERA_CACHE_DIR": str(tmp / "cli-warm-cache"), "XDG_CACHE_HOME": str(tmp / "cli-warm-xdg")}
    run_cli(program, out, warm_env)  # fills the warm caches
    with np.load(out) as z:
        err = rel_err(z["out0"], small_program_reference())
    cold: list[float] = []
    cold_all: list[float] = []
    warm: list[float] = []
    for i in range(runs):
        fresh = Path(tempfile.mkdtemp(prefix=f"cold{i}-", dir=tmp))
        cold.append(run_cli(program, out, {"TESSERA_CACHE_DIR": str(fresh / "code")}))
        cold_all.append(run_cli(program, out, {"TESSERA_CACHE_DIR": str(fresh / "code2"),
                                               "XDG_CACHE_HOME": str(fresh / "xdg")}))
        warm.append(run_cli(program, out, warm_env))
    return [("tessera run, cold (empty code cache)", Timing(cold), err),
            ("tessera run, cold (no caches at all)", Timing(cold_all), err),
            ("tessera run, warm", Timing(warm), err)]


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed calls per side and workload (default 20)")
    ap.add_argument("--cli-runs", type=int, default=20, help="timed `tessera run`s of each kind (default 20)")
    args = ap.parse_args()
    if args.runs < 4 or args.cli_runs < 4:
        ap.error("--runs and --cli-runs need at least 4 (for the spread)")

    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as d:
        return run(args.runs, args.cli_runs, Path(d))


def run(runs: int, cli_runs: int, tmp: Path) -> int:
    os.environ["TESSERA_CACHE_DIR"] = str(tmp / "code-cache")  # cold compiles, and no stale user cache
    import tessera
    from tessera.runtime.cpu import _threads
    from tessera.runtime.cpu_features import cpu_target_info

    info = cpu_target_info()
    blas, blas_threads = blas_info()
    load = os.getloadavg()
    print(f"CPU: {cpu_name()} (LLVM: {info.cpu}, {info.vector_bits}-bit vectors), {os.cpu_count()} cores")
    print(f"NumPy {np.__version__}, BLAS {blas}; threads: Tessera {_threads()}, NumPy BLAS {blas_threads}, "
          "NumPy elementwise 1")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other processes share the cores: "
          "figures are medians)")

    t0 = time.perf_counter()
    m = tessera.compile(PROGRAM, path="bench.tsr")
    print(f"tessera.compile (parse + check): {ms(time.perf_counter() - t0)}; {runs} timed runs per side\n")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 4096), dtype=np.float32)
    gamma = rng.standard_normal(4096, dtype=np.float32)
    beta = rng.standard_normal(4096, dtype=np.float32)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    # An FFN up-projection: 1024 tokens, d_model 1024, hidden 4096 (the usual 4x).
    xt = rng.standard_normal((1024, 1024), dtype=np.float32)
    w = (rng.standard_normal((1024, 4096), dtype=np.float32) / np.float32(32))
    bias = rng.standard_normal(4096, dtype=np.float32)

    workloads: list[tuple[str, Callable[[], np.ndarray], Callable[[], np.ndarray], float]] = [
        ("softmax 2048x4096 f32", lambda: np_softmax(x), lambda: m.softmax_rows(x), 1.0),
        ("layernorm 2048x4096 f32", lambda: np_layernorm(x, gamma, beta), lambda: m.norm(x, gamma, beta), 1.0),
        ("matmul 1024^3 f32", lambda: a @ b, lambda: m.matmul(a, b), 0.3),
        ("gelu_tanh(x@w+b) 1024x1024x4096 f32", lambda: np_gelu_tanh(xt @ w + bias),
         lambda: m.ffn_up(xt, w, bias), 0.8),
    ]

    header = (f"{'workload':38s} {'max rel err':>11s} {'1st call':>9s} {'numpy':>15s} {'tessera':>15s} "
              f"{'np/tessera':>10s}  target")
    print(header)
    print("-" * len(header))
    wrong = False
    for name, np_fn, ts_fn, target in workloads:
        t_first = time.perf_counter()
        got = ts_fn()
        t_first = time.perf_counter() - t_first
        err = rel_err(got, np_fn())
        ok = err <= MAX_REL_ERR
        wrong |= not ok
        if not ok:
            print(f"{name:38s} {err:11.1e}  WRONG (over {MAX_REL_ERR:.0e}): not timed")
            continue
        t_np, t_ts = time_pair(np_fn, ts_fn, runs)
        ratio = t_np.median / t_ts.median
        verdict = "ok" if ratio >= target else "BELOW TARGET"
        print(f"{name:38s} {err:11.1e} {ms(t_first):>9s} {ms(t_np.median):>9s} ±{t_np.spread:3.0%} "
              f"{ms(t_ts.median):>9s} ±{t_ts.spread:3.0%} {ratio:9.2f}x  >= {target} {verdict}")

    for name, t, err in bench_cli(cli_runs, tmp):
        ok = err <= MAX_REL_ERR
        wrong |= not ok
        verdict = ("ok" if t.median < CLI_TARGET_S else "OVER TARGET") if ok else "WRONG"
        print(f"{name:38s} {err:11.1e} {'':>9s} {'':>15s} {ms(t.median):>9s} ±{t.spread:3.0%} {'':>10s}  "
              f"< {CLI_TARGET_S:.0f} s {verdict}")

    load = os.getloadavg()
    print("\ngelu: x 1024x1024 @ w 1024x4096 + b 4096 (an FFN up-projection: 1024 tokens, d_model 1024, 4x\n"
          "hidden); both sides use the tanh form, gelu(..., approximate=\"tanh\"), since NumPy has no erf.")
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
