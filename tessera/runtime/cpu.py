"""The CPU runtime: tile kernels -> LLVM JIT -> functions called on NumPy arrays.

`CpuRuntime.compile(kernels)` verifies and prints the kernels, looks the set up in the code cache
(memory, then disk), and on a miss lowers Tile -> Target -> LLVM IR and compiles an object file.
Either way the object code is loaded into an MCJIT engine, so a warm start skips LLVM's optimiser.

`CompiledKernels.launch(name, arrays)` checks dtypes, ranks and roles, passes each array as
(base pointer, extents, strides in elements) - any NumPy view works without a copy, including
transposes, negative strides and stride-0 broadcasts; bf16 and fp8 arrays pass their raw storage -
binds the extent symbols, evaluates the grid and runs the program range [0, programs) split into
contiguous ranges handed to a pool of os.cpu_count() threads. Calls go through ctypes, which releases the GIL, so the threads run
in parallel; small launches run inline on the calling thread.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tessera.ir.target.info import TargetInfo
from tessera.ir.target.verify import verify_module
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile.printer import print_kernel
from tessera.ir.tile.verify import verify_kernel
from tessera.ir.tile_to_target import AbiParam, abi, lower_kernels
from tessera.runtime.arguments import check_array
from tessera.runtime.cache import CodeCache, cache_key

# Bump when the lowering or the code generator changes what a given Tile IR compiles to.
COMPILER_VERSION = "tessera-cpu-2"
# Launches touching fewer elements than this run on the calling thread.
INLINE_ELEMENTS = 1 << 15
THREAD_STACK_BYTES = 16 << 20
CHUNKS_PER_THREAD = 4


class LaunchError(ValueError):
    """Arguments that do not fit the kernel (dtype, rank, role, count)."""


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    return max(1, os.cpu_count() or 1)


def _get_pool() -> ThreadPoolExecutor:
    """The worker threads, started at once with stacks large enough for the kernels' stack
    arrays (TargetInfo.max_local_bytes), whatever the platform's default thread stack is."""
    global _pool
    with _pool_lock:
        if _pool is None:
            n = _threads()
            old = threading.stack_size()
            try:
                threading.stack_size(THREAD_STACK_BYTES)
            except (ValueError, RuntimeError):
                pass
            try:
                pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tessera-cpu")
                # Threads start on submit: n tasks blocked on a barrier start all n now, while the
                # stack size is set.
                barrier = threading.Barrier(n + 1)
                started = [pool.submit(barrier.wait) for _ in range(n)]
                barrier.wait()
                for f in started:
                    f.result()
            finally:
                threading.stack_size(old)
            _pool = pool
        return _pool


@dataclass
class _Entry:
    kernel: Kernel
    abi: list[AbiParam]
    fn: ctypes._CFuncPtr  # type: ignore[name-defined]


class CompiledKernels:
    """A set of compiled kernels in one JIT engine (kept alive with it)."""

    def __init__(self, kernels: Sequence[Kernel], engine: object, key: str, from_cache: bool) -> None:
        self.key = key
        self.from_cache = from_cache  # True when the object code came from the cache
        self._engine = engine
        self._entries: dict[str, _Entry] = {}
        for k in kernels:
            params = abi(k)
            addr = engine.get_function_address(k.name)  # type: ignore[attr-defined]
            if not addr:
                raise RuntimeError(f"compiled code has no function '{k.name}'")
            argtypes = [ctypes.c_void_p if p.kind == "ptr" else ctypes.c_int64 for p in params]
            fn = ctypes.CFUNCTYPE(None, *argtypes)(addr)
            self._entries[k.name] = _Entry(k, params, fn)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def kernel(self, name: str) -> Kernel:
        return self._entries[name].kernel

    def launch(self, name: str, arrays: Sequence[np.ndarray], *, threads: int | None = None) -> None:
        """Run kernel `name` over its whole grid on `arrays` (one per kernel parameter)."""
        entry = self._entries.get(name)
        if entry is None:
            raise LaunchError(f"no compiled kernel '{name}' (have {', '.join(self._entries)})")
        k = entry.kernel
        if len(arrays) != len(k.params):
            raise LaunchError(f"kernel {name} takes {len(k.params)} arrays, got {len(arrays)}")
        for i, (p, role, a) in enumerate(zip(k.params, k.roles, arrays)):
            check_array(LaunchError, name, i, p.hint, p.ty, role, a)  # type: ignore[arg-type]
        env = {sym: int(arrays[i].shape[ax]) for sym, (i, ax) in k.extents.items()}
        grid = [d.evaluate(env) for d in k.grid]
        total = math.prod(grid)
        if total <= 0:
            return
        fixed: list[int] = []
        for p in entry.abi:
            if p.kind == "ptr":
                fixed.append(arrays[p.tensor].ctypes.data)
            elif p.kind == "extent":
                fixed.append(int(arrays[p.tensor].shape[p.axis]))
            elif p.kind == "stride":
                a = arrays[p.tensor]
                fixed.append(a.strides[p.axis] // a.itemsize)
            elif p.kind == "grid":
                fixed.append(grid[p.axis])
        nthreads = _threads() if threads is None else max(1, threads)
        work = sum(a.size for a in arrays)
        if nthreads == 1 or total == 1 or work < INLINE_ELEMENTS:
            entry.fn(*fixed, 0, total)
            return
        # Contiguous ranges (neighbouring programs share operand panels in cache), a few per
        # thread, handed out on demand: a thread slowed by other load or by costlier programs
        # takes fewer ranges instead of holding up the launch.
        parts = min(total, nthreads * CHUNKS_PER_THREAD)
        bounds = [total * i // parts for i in range(parts + 1)]
        ranges = itertools.pairwise(bounds)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    r = next(ranges, None)
                if r is None:
                    return
                entry.fn(*fixed, *r)

        pool = _get_pool()
        futures = [pool.submit(worker) for _ in range(min(nthreads, parts) - 1)]
        worker()
        for f in futures:
            f.result()



def _versions() -> list[str]:
    import llvmlite

    from tessera.codegen.llvm import _llvm

    return [COMPILER_VERSION, f"llvmlite {llvmlite.__version__}", f"llvm {_llvm().llvm_version_info}"]


class CpuRuntime:
    """Compiles tile kernels for this machine. One runtime per process is enough; it holds the
    in-memory cache of compiled kernel sets."""

    def __init__(self, target: TargetInfo | None = None, cache: CodeCache | None = None) -> None:
        if target is None:
            from tessera.runtime.cpu_features import cpu_target_info

            target = cpu_target_info()
        self.target = target
        self.cache = cache if cache is not None else CodeCache()
        self._loaded: dict[str, CompiledKernels] = {}
        self._lock = threading.Lock()

    def key(self, kernels: Sequence[Kernel]) -> str:
        return cache_key([*_versions(), self.target.key(), *(print_kernel(k) for k in kernels)])

    def compile(self, kernels: Sequence[Kernel]) -> CompiledKernels:
        names = [k.name for k in kernels]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel names must be unique within one compile: {names}")
        for k in kernels:
            verify_kernel(k)
        key = self.key(kernels)
        with self._lock:
            hit = self._loaded.get(key)
        if hit is not None:
            return hit
        obj = self.cache.get(key)
        compiled = None
        if obj is not None:
            try:
                compiled = CompiledKernels(kernels, _load_object(obj, self.target), key, from_cache=True)
            except Exception:  # noqa: BLE001 - an entry that passes its checksum but does not load
                self.cache.discard(key)
        if compiled is None:
            obj = self.build_object(kernels)
            self.cache.put(key, obj)
            compiled = CompiledKernels(kernels, _load_object(obj, self.target), key, from_cache=False)
        with self._lock:
            self._loaded[key] = compiled
        return compiled

    def build_object(self, kernels: Sequence[Kernel]) -> bytes:
        """Lower, emit and compile (no cache)."""
        from tessera.codegen.llvm import compile_object, emit_llvm

        module = lower_kernels(kernels, self.target)
        verify_module(module)
        return compile_object(emit_llvm(module, self.target), self.target)

    def forget(self) -> None:
        """Drop loaded kernel sets (the code cache keeps the object code)."""
        with self._lock:
            self._loaded.clear()


def _load_object(obj: bytes, target: TargetInfo) -> object:
    from tessera.codegen.llvm import _llvm, target_machine

    llvm = _llvm()
    empty = llvm.parse_assembly("")
    empty.triple = target.triple
    engine = llvm.create_mcjit_compiler(empty, target_machine(target))
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


_default: CpuRuntime | None = None


def default_runtime() -> CpuRuntime:
    """The process-wide runtime for the host CPU."""
    global _default
    if _default is None:
        _default = CpuRuntime()
    return _default
