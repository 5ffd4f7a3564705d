"""The stdlib's tile kernels (stdlib/kernels.tsr) and the examples' @kernels as test cases (test helper,
imported by tests only): fresh random inputs of ragged sizes in f32 and bf16, under each kernel's own
schedule and two others, with float64 NumPy references. The PTX tests assemble them, the GPU-lowering
tests run their Target IR in the lockstep interpreter, the device tests launch them with `--target cuda`.

A case is one call: `call(case, fn)` runs it through a `KernelFunction` (any target) and returns what
it produced - the result tile, or the tensors an explicit-grid kernel writes in place, which are views
at the front of NaN-filled buffers so that a write past their end shows (`tails_untouched`).
`launch_arrays` gives the arrays of a raw launch of the case's Tile IR (for the interpreter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
from gpu_cases import ROOT
from test_stdlib_kernels import EPILOGUES, _adam_reference, _attention

import tessera
from tessera.ir.tile.ops import Schedule

F32 = np.dtype(np.float32)
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = (F32, BF16)
STDLIB = ("softmax_rows", "matmul", "layernorm_rows", "rmsnorm_rows", "flash_attention", "rotary", "adam_update")
EXAMPLE_KERNELS = ("flash_attention", "row_scale")  # of examples/flash_attention.tsr

_ROWS = (None, Schedule(block=(4, 64), warps=8), Schedule(block=(16, 16), warps=16))
# None: the kernel's own schedule.
SCHEDULES: dict[str, tuple[Schedule | None, ...]] = {
    "softmax_rows": _ROWS, "layernorm_rows": _ROWS, "rmsnorm_rows": _ROWS, "rotary": _ROWS,
    "matmul": (None, Schedule(block=(16, 32), k=8), Schedule(block=(32, 16), k=64, warps=8, stages=2)),
    "flash_attention": (None, Schedule(block=(16, 32), warps=4), Schedule(block=(32, 16), warps=8, stages=3)),
    "adam_update": (None, Schedule(block=(1, 128)), Schedule(block=(1, 100), warps=2)),
}
# Ragged first: no extent a multiple of a block.
SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "softmax_rows": ((37, 300), (9, 1024), (65, 7), (1, 1)),
    "layernorm_rows": ((37, 300), (9, 1024), (65, 7)),
    "rmsnorm_rows": ((37, 300), (9, 1024), (1, 1)),
    "matmul": ((37, 29, 45), (70, 128, 33), (1, 1, 1)),  # (M, K, N)
    "flash_attention": ((3, 37, 37, 24), (2, 70, 45, 16), (1, 20, 83, 32)),  # (BH, S, SK, D)
    "rotary": ((37, 11), (65, 64), (9, 3)),  # (N, H): x is [N, 2H]
    "adam_update": ((3001,), (77,), (1024,)),
}
MATMUL_CHAINS: tuple[tuple[str, ...], ...] = ((), *EPILOGUES)
ADAM_BLOCK = 1024  # the elements of one adam_update program under its own schedule (ELEMENTWISE)


@dataclass
class KernelCase:
    """One call of a kernel: its inputs, how it is launched and what it must produce."""

    kernel: str
    schedule: Schedule | None
    dtype: np.dtype
    shape: tuple[int, ...]
    args: list[np.ndarray]
    kwargs: dict[str, object]
    want: list[np.ndarray]  # float64: the result, or the written tensors after the call
    tol: float
    grid: tuple[int, ...] | None = None  # an explicit grid
    written: tuple[int, ...] = ()  # args written in place (explicit-grid kernels); () = a returned tile
    out_dtype: np.dtype | None = None  # the result's dtype (a returned tile)
    source: str = "stdlib"
    _tails: list[np.ndarray] = field(default_factory=list)

    @property
    def id(self) -> str:
        s = self.schedule
        parts = ["own" if s is None else "x".join(map(str, s.block)) + f"w{s.warps}", str(self.dtype),
                 "x".join(map(str, self.shape))]
        parts += [f"{k}={v}" for k, v in self.kwargs.items() if k in ("causal", "epilogue") and v != ()]
        return f"{self.source}.{self.kernel}[{','.join(parts)}]"

    def inputs(self) -> list[np.ndarray]:
        """Fresh copies of the arguments; a written one is a view at the front of a NaN-filled buffer."""
        out = []
        self._tails = []
        for i, a in enumerate(self.args):
            if i in self.written:
                buf = np.full(a.size + 37, np.nan, a.dtype)
                v = buf[:a.size].reshape(a.shape)
                v[...] = a
                self._tails.append(buf[a.size:])
                out.append(v)
            else:
                out.append(a.copy())
        return out

    def tails_untouched(self) -> bool:
        return all(np.isnan(t.astype(np.float64)).all() for t in self._tails)

    def check(self, got: list[np.ndarray]) -> None:
        assert len(got) == len(self.want), self.id
        for g, w in zip(got, self.want):
            assert g.shape == w.shape, f"{self.id}: shape {g.shape}, want {w.shape}"
            if self.out_dtype is not None:
                assert g.dtype == self.out_dtype, f"{self.id}: dtype {g.dtype}, want {self.out_dtype}"
            tol = self.tol if g.dtype != BF16 else max(self.tol, 2e-2)
            np.testing.assert_allclose(g.astype(np.float64), w, rtol=tol, atol=tol, err_msg=self.id)
        assert self.tails_untouched(), f"{self.id}: written past the end of a tensor"


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [a.astype(np.float64) for a in arrays]


def _rows_case(name: str, shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> tuple:
    x = (rng.standard_normal(shape) * 3 + (1 if name == "layernorm_rows" else 0)).astype(dtype)
    xf, = _f64(x)
    if name == "softmax_rows":
        e = np.exp(xf - xf.max(1, keepdims=True))
        return [x], {}, e / e.sum(1, keepdims=True), 1e-5
    eps = float(rng.uniform(1e-6, 1e-3))
    w = rng.standard_normal(shape[1]).astype(dtype)
    if name == "rmsnorm_rows":
        return [x, w], {"eps": eps}, xf / np.sqrt((xf * xf).mean(1, keepdims=True) + eps) * _f64(w)[0], 2e-5
    b = rng.standard_normal(shape[1]).astype(dtype)
    d = xf - xf.mean(1, keepdims=True)
    want = d / np.sqrt((d * d).mean(1, keepdims=True) + eps) * _f64(w)[0] + _f64(b)[0]
    return [x, w, b], {"eps": eps}, want, 2e-5


def stdlib_case(name: str, schedule: Schedule | None, dtype: np.dtype, shape: tuple[int, ...],
                rng: np.random.Generator, variant: int = 0) -> KernelCase:
    """One call of stdlib kernel `name`; `variant` picks the matmul epilogue chain and causality."""
    out_dtype: np.dtype | None = dtype
    if name in ("softmax_rows", "layernorm_rows", "rmsnorm_rows"):
        args, kwargs, want, tol = _rows_case(name, shape, dtype, rng)
        return KernelCase(name, schedule, dtype, shape, args, kwargs, [want], tol, out_dtype=out_dtype)
    if name == "matmul":
        m, kk, n = shape
        a, b = rng.standard_normal((m, kk)).astype(dtype), rng.standard_normal((kk, n)).astype(dtype)
        bias, res = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
        chain = MATMUL_CHAINS[variant % len(MATMUL_CHAINS)]
        y = _f64(a)[0] @ _f64(b)[0]
        want = EPILOGUES[chain](y, *_f64(bias, res)) if chain else y
        cast = variant % 3 == 2  # every third variant ends the chain with a bf16 cast
        epilogue = (*chain, "bf16") if cast else chain
        return KernelCase(name, schedule, dtype, shape, [a, b, bias, res], {"epilogue": epilogue}, [want],
                          1e-4 * max(1.0, math.sqrt(kk) / 4), out_dtype=BF16 if cast else F32)
    if name == "flash_attention":
        bh, s, sk, d = shape
        q = rng.standard_normal((bh, s, d)).astype(dtype)
        k, v = rng.standard_normal((bh, sk, d)).astype(dtype), rng.standard_normal((bh, sk, d)).astype(dtype)
        causal = variant % 2 == 1
        return KernelCase(name, schedule, dtype, shape, [q, k, v], {"causal": causal},
                          [_attention(q, k, v, causal)], 1e-5, out_dtype=out_dtype)
    if name == "rotary":
        n, h = shape
        x = rng.standard_normal((n, 2 * h)).astype(dtype)
        angle = rng.uniform(0, 2 * math.pi, (n, h))
        cos, sin = np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)
        x1, x2 = _f64(x[:, :h], x[:, h:])
        c, sn = _f64(cos, sin)
        want = np.concatenate([x1 * c - x2 * sn, x2 * c + x1 * sn], 1)
        return KernelCase(name, schedule, dtype, shape, [x, cos, sin], {}, [want], 1e-5, out_dtype=out_dtype)
    if name == "adam_update":
        (n,) = shape
        p, m, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
        v = np.abs(v)
        g = rng.standard_normal(n).astype(dtype)  # the gradient in f32 or bf16; the state stays f32
        hyper = {"lr": float(rng.uniform(1e-4, 1e-2)), "beta1": 0.9, "beta2": float(rng.uniform(0.99, 0.9999)),
                 "eps": 1e-8, "step": float(1 + variant % 7)}
        want = _adam_reference(*_f64(p, g, m, v), hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"],
                               hyper["step"])
        bn = ADAM_BLOCK if schedule is None else schedule.block[-1]
        return KernelCase(name, schedule, dtype, shape, [p, g, m, v], hyper, list(want), 1e-5,
                          grid=(-(-n // bn),), written=(0, 2, 3), out_dtype=None)
    raise KeyError(name)


def stdlib_cases(rng: np.random.Generator, shapes: int | None = None) -> list[KernelCase]:
    """Every stdlib kernel x schedule x dtype, with the first `shapes` shapes (all when None)."""
    out = []
    for name in STDLIB:
        for si, sched in enumerate(SCHEDULES[name]):
            for dtype in DTYPES:
                for hi, shape in enumerate(SHAPES[name][:shapes]):
                    out.append(stdlib_case(name, sched, dtype, shape, rng, variant=si + hi + (dtype == BF16)))
    return out


def example_cases(rng: np.random.Generator) -> list[KernelCase]:
    """The @kernels of examples/flash_attention.tsr (bf16 attention, autotuned; an explicit-grid scale)."""
    out = []
    for shape, causal in (((2, 80, 80, 32), True), ((1, 37, 37, 16), False)):
        bh, s, _, d = shape
        q, k, v = (rng.standard_normal((bh, s, d)).astype(BF16) for _ in range(3))
        out.append(KernelCase("flash_attention", None, BF16, shape, [q, k, v], {"causal": causal},
                              [_attention(q, k, v, causal)], 2e-2, out_dtype=BF16, source="example"))
    for n, m in ((100, 70), (64, 64)):
        x = rng.standard_normal((n, m)).astype(np.float32)
        alpha = float(rng.uniform(-3, 3))
        out.append(KernelCase("row_scale", None, F32, (n, m), [x, np.zeros((n, m), np.float32)], {"alpha": alpha},
                              [x.astype(np.float64) * alpha], 1e-6, grid=(-(-n // 64),), written=(1,),
                              source="example"))
    return out


def modules(target: str) -> dict[str, Callable[[str], object]]:
    """source -> (kernel name -> its KernelFunction) for the stdlib and the example, on `target`."""
    std = tessera.compile(f"from stdlib.kernels import {', '.join(STDLIB)}\n", target=target)
    ex = tessera.load(ROOT / "examples" / "flash_attention.tsr", target=target)
    return {"stdlib": lambda n: std.runtime.module_attr("stdlib.kernels", n),  # type: ignore[attr-defined]
            "example": lambda n: getattr(ex, n)}


def kernel_of(case: KernelCase, mods: dict[str, Callable[[str], object]]) -> object:
    fn = mods[case.source](case.kernel)
    return fn if case.schedule is None else fn.with_schedule(case.schedule)  # type: ignore[attr-defined]


def call(case: KernelCase, fn: object) -> list[np.ndarray]:
    """Run the case through a KernelFunction: [the result] or the tensors it wrote."""
    args = case.inputs()
    f = fn if case.grid is None else fn[case.grid]  # type: ignore[index]
    result = f(*args, **case.kwargs)  # type: ignore[operator]
    return [result] if not case.written else [args[i] for i in case.written]  # type: ignore[list-item]


def launch_arrays(case: KernelCase, fn: object, low: object, args: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """The arrays of a raw launch of `low` (the LoweredKernel of the case's call of `fn`, a
    KernelFunction) with a NaN-poisoned result, and the positions of what the case checks among them."""
    names = [p.name for p in fn.sig.params]  # type: ignore[attr-defined]
    given = dict(zip(names, args))
    arrays: list[np.ndarray] = []
    checked: list[int] = []
    where: dict[str, int] = {}
    for kp in low.params:  # type: ignore[attr-defined]
        if kp.kind == "tensor":
            where[kp.name] = len(arrays)
            arrays.append(given[kp.name])
        elif kp.kind == "scalar":
            arrays.append(np.array(case.kwargs[kp.name], np.float64))
        elif kp.kind == "debug":
            raise AssertionError("launch_arrays: debug-bounds kernels are launched through KernelFunction")
        else:
            shape, _ = low.result  # type: ignore[attr-defined]
            checked.append(len(arrays))
            arrays.append(np.full(shape, np.nan, case.out_dtype))
    checked += [where[names[i]] for i in case.written]
    return arrays, checked
