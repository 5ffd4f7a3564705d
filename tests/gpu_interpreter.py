"""A lockstep SIMT interpreter of GPU Target IR (test helper, imported by tests only).

It runs a function lowered by tessera/ir/tile_to_target_gpu.py on NumPy arrays the way a GPU would:
every thread of every program (CTA) at once, in lockstep, each Target value an array over the
threads (and lanes). `if` runs both branches under the threads' masks; memory ops touch only the
active threads' lanes; `shuffle_xor` needs the whole warp; `barrier` must be reached by all threads.
Shared memory is checked for races: between two barriers a thread may not read or overwrite bytes
another thread wrote, nor overwrite bytes another thread read (identical rewrites are allowed).
It checks the lowering's semantics on a machine without a GPU; the PTX is checked on the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tessera.ir.target.ops import Function, Op, Pointer, Region, Scalar, TargetType, Vector, elem_of
from tessera.ir.tile.ops import Kernel
from tessera.ir.tile_to_target_gpu import gpu_abi
from tessera.runtime.cuda import host_clusters

_NP = {"i1": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
       "f16": np.float16, "f32": np.float32, "f64": np.float64}
_UNSIGNED = {"i8": np.uint8, "i16": np.uint16, "i32": np.uint32, "i64": np.uint64}
_erf = np.vectorize(math.erf, otypes=[np.float64])


class SimtError(AssertionError):
    """The kernel did something a GPU would not allow (a race, a divergent barrier or shuffle, an
    out-of-range access)."""


@dataclass
class Ptr:
    space: str
    buf: int  # index into the interpreter's buffers
    off: np.ndarray  # byte offset per thread
    elem: Scalar


class _Mem:
    def __init__(self, data: np.ndarray, base: int, shared: bool) -> None:
        self.data = data  # uint8
        self.base = base  # a fake device address, 256-byte aligned
        self.shared = shared
        if shared:
            self.writer = np.full(data.size, -1, np.int64)
            self.reader = np.full(data.size, -1, np.int64)  # -2: several threads

    def fence(self) -> None:
        if self.shared:
            self.writer[:] = -1
            self.reader[:] = -1


def _np_type(t: TargetType) -> type:
    return _NP[elem_of(t).kind]


class Interpreter:
    def __init__(self, fn: Function, programs: int, args: Sequence[object]) -> None:
        self.fn = fn
        self.T = fn.threads
        assert self.T > 0, "not a GPU function"
        self.P = programs
        self.N = programs * self.T
        self.tid = np.tile(np.arange(self.T, dtype=np.int64), programs)
        self.pid = np.repeat(np.arange(programs, dtype=np.int64), self.T)
        self.mems: list[_Mem] = []
        self.env: dict[int, object] = {}
        self.shared_arena: int | None = None
        self.shared_size = 0
        self.shared_offsets: list[tuple[Op, int]] = []
        self.cp_open: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []  # this group's copies
        self.cp_groups: list[list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]] = []  # committed
        for p, a in zip(fn.params, args):
            if isinstance(p.ty, Pointer):
                buf, off = a  # type: ignore[misc]
                self.env[p.uid] = Ptr("global", buf, np.full(self.N, off, np.int64), p.ty.elem)
            else:
                self.env[p.uid] = np.full(self.N, a, _np_type(p.ty))

    def add_global(self, data: np.ndarray) -> int:
        base = 0x10000 + 256 * sum((m.data.size + 255) // 256 + 1 for m in self.mems)
        self.mems.append(_Mem(data, base, shared=False))
        return len(self.mems) - 1

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        self._layout_shared(self.fn.body)
        if self.shared_size:
            self.mems.append(_Mem(np.zeros(self.P * self.shared_size, np.uint8), 0, shared=True))
            self.shared_arena = len(self.mems) - 1
        self.region(self.fn.body, np.ones(self.N, bool))

    def _layout_shared(self, r: Region) -> None:
        for op in r.ops:
            if op.name == "shared":
                elem = Scalar(str(op.attr("elem")))
                size = int(op.attr("count")) * max(1, elem.bits // 8)  # type: ignore[arg-type]
                self.shared_offsets.append((op, self.shared_size))
                self.shared_size += -(-size // 16) * 16
            for sub in op.regions:
                self._layout_shared(sub)

    def region(self, r: Region, active: np.ndarray) -> list[object] | None:
        for op in r.ops:
            if op.name == "yield":
                return [self.env[v.uid] for v in op.operands]
            if op.name == "return":
                return None
            self.op(op, active)
        return None

    def v(self, x) -> object:  # type: ignore[no-untyped-def]
        return self.env[x.uid]

    def op(self, op: Op, active: np.ndarray) -> None:
        h = getattr(self, "op_" + op.name, None)
        if h is not None:
            h(op, active)
            return
        res = self.compute(op)
        self.env[op.result.uid] = res

    # -- arithmetic ----------------------------------------------------------------------------

    def compute(self, op: Op) -> np.ndarray:
        name = op.name
        a = [self.v(x) for x in op.operands]
        t = op.result.ty
        kind = elem_of(op.operands[0].ty).kind if op.operands else elem_of(t).kind
        flt = kind[0] == "f"
        with np.errstate(all="ignore"):
            if name in ("add", "sub", "mul"):
                f = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[name]
                return f(a[0], a[1]).astype(_np_type(t))
            if name == "div":
                return (a[0] / a[1]).astype(_np_type(t)) if flt else _tdiv(a[0], a[1])
            if name == "rem":
                return np.fmod(a[0], a[1]).astype(_np_type(t)) if flt else a[0] - _tdiv(a[0], a[1]) * a[1]
            if name in ("udiv", "urem", "umax", "umin", "lshr"):
                u = _UNSIGNED[kind]
                x, y = a[0].view(u), a[1].view(u)
                r = {"udiv": lambda: x // np.where(y == 0, 1, y), "urem": lambda: x % np.where(y == 0, 1, y),
                     "umax": lambda: np.maximum(x, y), "umin": lambda: np.minimum(x, y),
                     "lshr": lambda: x >> y}[name]()
                return r.astype(u).view(_np_type(t))
            if name in ("max", "min"):
                return (np.maximum if name == "max" else np.minimum)(a[0], a[1])
            if name in ("and", "or", "xor"):
                return {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[name](a[0], a[1])
            if name == "shl":
                return np.left_shift(a[0], a[1]).astype(_np_type(t))
            if name == "ashr":
                return np.right_shift(a[0], a[1])
            if name == "neg":
                return np.negative(a[0])
            if name == "abs":
                return np.abs(a[0])
            if name == "fma":
                wide = np.float64 if kind == "f32" else np.longdouble
                return (a[0].astype(wide) * a[1] + a[2]).astype(_np_type(t))
            if name in ("sqrt", "floor", "ceil", "rint", "trunc", "exp", "log", "sin", "cos", "tanh"):
                return getattr(np, name)(a[0]).astype(_np_type(t))
            if name == "erf":
                return _erf(a[0]).astype(_np_type(t))
            if name == "pow":
                return np.power(a[0], a[1]).astype(_np_type(t))
            if name == "copysign":
                return np.copysign(a[0], a[1])
            if name == "cmp":
                return _compare(str(op.attr("pred")), a[0], a[1], kind)
            if name == "select":
                c = a[0]
                if c.ndim < a[1].ndim:
                    c = c[:, None]
                return np.where(c, a[1], a[2])
            if name == "cast":
                return _cast(str(op.attr("kind")), a[0], kind, str(op.attr("to")))
            if name == "const":
                val = op.attr("value")
                arr = np.array(val, dtype=_np_type(t))
                if isinstance(t, Vector):
                    arr = np.broadcast_to(arr, (t.lanes,))
                    return np.broadcast_to(arr, (self.N, t.lanes)).copy()
                return np.full(self.N, arr, _np_type(t))
            if name == "splat":
                return np.repeat(a[0][:, None], int(op.attr("lanes")), axis=1)  # type: ignore[arg-type]
            if name == "extract":
                return a[0][:, int(op.attr("index"))].copy()  # type: ignore[arg-type]
            if name == "insert":
                r = a[0].copy()
                r[:, int(op.attr("index"))] = a[1]  # type: ignore[arg-type]
                return r
            if name == "vreduce":
                k = str(op.attr("kind"))
                x = a[0]
                if k in ("umax", "umin"):
                    u = x.view(_UNSIGNED[kind])
                    return (u.max(1) if k == "umax" else u.min(1)).view(x.dtype)
                f = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum,
                     "and": np.bitwise_and, "or": np.bitwise_or}[k]
                r = x[:, 0]
                for lane in range(1, x.shape[1]):
                    r = f(r, x[:, lane])
                return r.astype(x.dtype)
        raise SimtError(f"interpreter: op {name} is not implemented")

    # -- ids, control, sync --------------------------------------------------------------------

    def op_thread_id(self, op: Op, active: np.ndarray) -> None:
        self.env[op.result.uid] = self.tid.copy()

    def op_program_id(self, op: Op, active: np.ndarray) -> None:
        self.env[op.result.uid] = self.pid.copy()

    def op_barrier(self, op: Op, active: np.ndarray) -> None:
        if not active.all():
            raise SimtError("barrier reached by only some threads of a program")
        for m in self.mems:
            m.fence()

    def op_shuffle_xor(self, op: Op, active: np.ndarray) -> None:
        if not active.all():
            raise SimtError("shuffle_xor in divergent code (the whole warp must take part)")
        x = self.v(op.operands[0])
        idx = np.arange(self.N) ^ int(op.attr("mask"))  # type: ignore[arg-type]
        self.env[op.result.uid] = x[idx]

    # -- matrix units and asynchronous copies (tessera/ir/gpu_mma.py) ----------------------------

    def op_ptrcast(self, op: Op, active: np.ndarray) -> None:
        p = self.v(op.operands[0])
        self.env[op.result.uid] = Ptr(p.space, p.buf, p.off, Scalar(str(op.attr("elem"))))  # type: ignore[union-attr]

    def _whole(self, op: Op, active: np.ndarray) -> None:
        if not active.all():
            raise SimtError(f"{op.name} in divergent code (every thread of the program must take part)")

    def op_cp_async(self, op: Op, active: np.ndarray) -> None:
        """Read the source now (at most `size` bytes, the rest zero); the shared-memory write happens
        when a cp_async_wait retires the copy's group, as this thread's write."""
        dst, src, size = (self.v(x) for x in op.operands)
        n = int(op.attr("bytes"))  # type: ignore[arg-type]
        src_mem = self.mems[src.buf]  # type: ignore[union-attr]
        if ((dst.off[active] % n) != 0).any() or (((src_mem.base + src.off[active]) % n) != 0).any():  # type: ignore[union-attr]
            raise SimtError(f"cp_async of {n} bytes at an address not aligned to {n}")
        size = np.where(active, size.astype(np.int64), 0)  # type: ignore[union-attr]
        if (size > n).any() or (size < 0).any():
            raise SimtError(f"cp_async source size outside 0..{n}")
        idx = np.broadcast_to(np.arange(n), (self.N, n))
        read = idx < size[:, None]
        data = np.zeros((self.N, n), np.uint8)
        if read.any():
            b = src.off[:, None] + idx  # type: ignore[union-attr]
            used = b[read]
            if used.min() < 0 or used.max() >= src_mem.data.size:
                raise SimtError("cp_async reads outside its global buffer")
            data[read] = src_mem.data[used]
        didx = dst.off[:, None] + idx  # type: ignore[union-attr]
        dmem = self.mems[dst.buf]  # type: ignore[union-attr]
        if didx[active].min() < 0 or didx[active].max() >= dmem.data.size:
            raise SimtError("cp_async writes outside shared memory")
        # The copy may land any time from now: bytes another thread read since the last barrier race.
        readers = dmem.reader[didx[active]]
        threads = np.nonzero(active)[0][:, None]
        if ((readers != -1) & (readers != threads)).any():
            raise SimtError("shared-memory race: cp_async into bytes another thread read since the last barrier")
        self.cp_open.append((active.copy(), dst.buf, didx, data))  # type: ignore[union-attr]

    def op_cp_async_commit(self, op: Op, active: np.ndarray) -> None:
        self._whole(op, active)
        self.cp_groups.append(self.cp_open)
        self.cp_open = []

    def op_cp_async_wait(self, op: Op, active: np.ndarray) -> None:
        self._whole(op, active)
        keep = int(op.attr("pending"))  # type: ignore[arg-type]
        while len(self.cp_groups) > keep:
            for mask, buf, idx, data in self.cp_groups.pop(0):
                mem = self.mems[buf]
                sel = np.repeat(mask[:, None], idx.shape[1], axis=1)
                self._check_shared(Ptr("shared", buf, idx[:, 0], Scalar("i8")), mem, idx[:, :, None], sel, True,
                                   data)
                mem.data[idx[sel]] = data[sel]

    def op_ldmatrix(self, op: Op, active: np.ndarray) -> None:
        from tessera.ir.gpu_mma import ldmatrix_source

        self._whole(op, active)
        p = self.v(op.operands[0])
        if (p.off % 16).any():  # type: ignore[union-attr]
            raise SimtError("ldmatrix row address not aligned to 16 bytes")
        count, trans = int(op.attr("count")), bool(op.attr("trans"))  # type: ignore[arg-type]
        lane = np.arange(self.N) % 32
        warp0 = np.arange(self.N) - lane
        idx = np.empty((self.N, count * 2, 2), np.int64)
        for r in range(count):
            for h in range(2):
                src = np.array([ldmatrix_source(int(x), r, h, trans) for x in range(32)])
                start = p.off[warp0 + src[lane, 0]] + 2 * src[lane, 1]  # type: ignore[union-attr]
                idx[:, 2 * r + h] = start[:, None] + np.arange(2)
        mem = self.mems[p.buf]  # type: ignore[union-attr]
        if idx.min() < 0 or idx.max() >= mem.data.size:
            raise SimtError("ldmatrix reads outside shared memory")
        self._check_shared(p, mem, idx, np.ones((self.N, count * 2), bool), False, None)  # type: ignore[arg-type]
        halves = mem.data[idx].reshape(self.N, count * 2 * 2).view(np.uint16).reshape(self.N, count, 2)
        words = halves[:, :, 0].astype(np.uint32) | (halves[:, :, 1].astype(np.uint32) << 16)
        out = words.view(np.int32)
        self.env[op.result.uid] = out if count > 1 else out[:, 0]

    def op_mma(self, op: Op, active: np.ndarray) -> None:
        from tessera.ir.gpu_mma import mma_layout

        self._whole(op, active)
        lay = mma_layout(str(op.attr("layout")))
        a, b, c = (self.v(x) for x in op.operands)
        w = lay.warp
        W = self.N // w

        def unpack(x: np.ndarray) -> np.ndarray:  # [N, regs] i32 -> [N, regs, 2] f64
            u = x.view(np.uint32)
            h = np.stack([u & 0xFFFF, u >> 16], axis=-1).astype(np.uint16)
            if str(op.attr("ab")) == "bf16":
                return (h.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            return h.view(np.float16).astype(np.float64)

        A = np.zeros((W, lay.m, lay.k))
        B = np.zeros((W, lay.k, lay.n))
        C = np.zeros((W, lay.m, lay.n))
        ua, ub = unpack(a).reshape(W, w, lay.a_regs, 2), unpack(b).reshape(W, w, lay.b_regs, 2)
        cc = c.reshape(W, w, lay.c_regs).astype(np.float64)  # type: ignore[union-attr]
        for lane in range(w):
            for h in range(2):
                for r in range(lay.a_regs):
                    i, j = lay.a_elem(lane, r, h)
                    A[:, i, j] = ua[:, lane, r, h]
                for r in range(lay.b_regs):
                    i, j = lay.b_elem(lane, r, h)
                    B[:, i, j] = ub[:, lane, r, h]
            for e in range(lay.c_regs):
                i, j = lay.c_elem(lane, e)
                C[:, i, j] = cc[:, lane, e]
        D = A @ B + C
        out = np.empty((W, w, lay.c_regs), np.float32)
        for lane in range(w):
            for e in range(lay.c_regs):
                i, j = lay.c_elem(lane, e)
                out[:, lane, e] = D[:, i, j]
        self.env[op.result.uid] = out.reshape(self.N, lay.c_regs)

    def op_for(self, op: Op, active: np.ndarray) -> None:
        lo, hi, st, *inits = (self.v(x) for x in op.operands)
        for name, x in (("lo", lo), ("hi", hi), ("step", st)):
            vals = np.unique(x[active])
            if vals.size > 1:
                raise SimtError(f"for: {name} differs between threads")
        body = op.regions[0]
        if not active.any():
            for r, init in zip(op.results, inits):
                self.env[r.uid] = init
            return
        i0, i1, s = (int(x[active][0]) for x in (lo, hi, st))
        carried = list(inits)
        i = i0
        while i < i1:
            self.env[body.args[0].uid] = np.full(self.N, i, np.int64)
            for a, c in zip(body.args[1:], carried):
                self.env[a.uid] = c
            out = self.region(body, active)
            carried = list(out or [])
            i += s
        for r, c in zip(op.results, carried):
            self.env[r.uid] = c

    def op_if(self, op: Op, active: np.ndarray) -> None:
        c = self.v(op.operands[0])
        then_act, else_act = active & c, active & ~c
        res_t = self.region(op.regions[0], then_act) if then_act.any() else None
        res_e = self.region(op.regions[1], else_act) if else_act.any() else None
        for k, r in enumerate(op.results):
            if res_t is None:
                self.env[r.uid] = res_e[k]  # type: ignore[index]
            elif res_e is None:
                self.env[r.uid] = res_t[k]
            else:
                x, y = res_t[k], res_e[k]
                cc = c if x.ndim == 1 else c[:, None]  # type: ignore[union-attr]
                self.env[r.uid] = np.where(cc, x, y)

    # -- memory --------------------------------------------------------------------------------

    def op_shared(self, op: Op, active: np.ndarray) -> None:
        off = {id(o): off for o, off in self.shared_offsets}[id(op)]
        assert self.shared_arena is not None
        self.env[op.result.uid] = Ptr("shared", self.shared_arena, self.pid * self.shared_size + off,
                                      Scalar(str(op.attr("elem"))))

    def op_alloca(self, op: Op, active: np.ndarray) -> None:
        raise SimtError("alloca: GPU kernels keep blocks in registers and shared memory")

    def op_ptradd(self, op: Op, active: np.ndarray) -> None:
        p, off = self.v(op.operands[0]), self.v(op.operands[1])
        eb = max(1, p.elem.bits // 8)  # type: ignore[union-attr]
        self.env[op.result.uid] = Ptr(p.space, p.buf, p.off + off * eb, p.elem)  # type: ignore[union-attr]

    def op_ptrtoint(self, op: Op, active: np.ndarray) -> None:
        p = self.v(op.operands[0])
        self.env[op.result.uid] = self.mems[p.buf].base + p.off  # type: ignore[union-attr]

    def _bytes(self, p: Ptr, offs: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
        """Byte indices [N, lanes, eb] of lane elements at p + offs (elements, [N, lanes])."""
        eb = max(1, p.elem.bits // 8)
        start = p.off[:, None] + offs * eb
        return start[:, :, None] + np.arange(eb), eb

    def _access(self, p: Ptr, offs: np.ndarray, lanes: int, mask: np.ndarray, value: np.ndarray | None) -> np.ndarray | None:
        mem = self.mems[p.buf]
        idx, eb = self._bytes(p, offs, lanes)
        sel = mask  # [N, lanes]
        if not sel.any():
            return None if value is not None else np.zeros((self.N, lanes), _NP[p.elem.kind])
        used = idx[sel]
        if used.min() < 0 or used.max() >= mem.data.size:
            raise SimtError(f"{p.space} access out of range ({used.min()}..{used.max()} of {mem.data.size} bytes)")
        if p.space == "shared":
            self._check_shared(p, mem, idx, sel, value is not None, value)
        dt = np.dtype(_NP[p.elem.kind]) if p.elem.kind != "i1" else np.dtype(np.int8)
        if value is None:
            raw = mem.data[np.where(sel[:, :, None], idx, 0)]
            out = raw.reshape(self.N * lanes, eb).copy().view(dt).reshape(self.N, lanes)
            return out
        vals = np.ascontiguousarray(value.astype(dt)).view(np.uint8).reshape(self.N, lanes, eb)
        mem.data[idx[sel]] = vals[sel]
        return None

    def _check_shared(self, p: Ptr, mem: _Mem, idx: np.ndarray, sel: np.ndarray, write: bool,
                      value: np.ndarray | None) -> None:
        threads = np.broadcast_to(np.arange(self.N)[:, None, None], idx.shape)[sel].reshape(-1)
        b = idx[sel].reshape(-1)
        w = mem.writer[b]
        if write:
            assert value is not None
            dt = np.dtype(_NP[p.elem.kind]) if p.elem.kind != "i1" else np.dtype(np.int8)
            new = np.ascontiguousarray(value.astype(dt)).view(np.uint8).reshape(idx.shape)[sel].reshape(-1)
            r = mem.reader[b]
            war = (r != -1) & (r != threads)
            waw = (w != -1) & (w != threads) & (mem.data[b] != new)
            order = np.argsort(b, kind="stable")
            bs, ts, ns = b[order], threads[order], new[order]
            dup = (bs[1:] == bs[:-1]) & (ts[1:] != ts[:-1]) & (ns[1:] != ns[:-1])
            if war.any() or waw.any() or dup.any():
                raise SimtError("shared-memory race: a write to bytes another thread read or wrote since the "
                                "last barrier")
            mem.writer[b] = threads
        else:
            raw = (w != -1) & (w != threads)
            if raw.any():
                raise SimtError("shared-memory race: a read of bytes another thread wrote since the last barrier")
            r = mem.reader[b]
            mem.reader[b] = np.where((r == -1) | (r == threads), threads, -2)

    def op_load(self, op: Op, active: np.ndarray) -> None:
        p = self.v(op.operands[0])
        t = op.result.ty
        lanes = t.lanes if isinstance(t, Vector) else 1
        mask = np.repeat(active[:, None], lanes, axis=1)
        if len(op.operands) == 3:
            m = self.v(op.operands[1])
            mask = mask & (m if m.ndim == 2 else m[:, None])
        offs = np.broadcast_to(np.arange(lanes), (self.N, lanes))
        out = self._access(p, offs, lanes, mask, None)  # type: ignore[arg-type]
        if len(op.operands) == 3:
            other = self.v(op.operands[2])
            other = other if other.ndim == 2 else other[:, None]
            out = np.where(mask, out, other)
        self._set_mem_result(op, out, lanes)

    def _set_mem_result(self, op: Op, out: np.ndarray, lanes: int) -> None:
        t = op.result.ty
        out = out.astype(_np_type(t))
        self.env[op.result.uid] = out if isinstance(t, Vector) else out[:, 0]

    def op_gather(self, op: Op, active: np.ndarray) -> None:
        p, offs, m, other = (self.v(x) for x in op.operands)
        lanes = offs.shape[1]
        mask = active[:, None] & m
        out = self._access(p, offs, lanes, mask, None)  # type: ignore[arg-type]
        self._set_mem_result(op, np.where(mask, out, other), lanes)

    def op_store(self, op: Op, active: np.ndarray) -> None:
        p, val = self.v(op.operands[0]), self.v(op.operands[1])
        val2 = val if val.ndim == 2 else val[:, None]
        lanes = val2.shape[1]
        mask = np.repeat(active[:, None], lanes, axis=1)
        if len(op.operands) == 3:
            m = self.v(op.operands[2])
            mask = mask & (m if m.ndim == 2 else m[:, None])
        offs = np.broadcast_to(np.arange(lanes), (self.N, lanes))
        self._access(p, offs, lanes, mask, val2)  # type: ignore[arg-type]

    def op_scatter(self, op: Op, active: np.ndarray) -> None:
        p, offs, val, m = (self.v(x) for x in op.operands)
        self._access(p, offs, offs.shape[1], active[:, None] & m, val)  # type: ignore[arg-type]


def _tdiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    bb = np.where(b == 0, 1, b)
    q = a // bb
    fix = (a % bb != 0) & ((a < 0) != (bb < 0))
    return (q + fix).astype(a.dtype)


def _compare(pred: str, a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    if kind[0] == "f":
        nan = np.isnan(a) | np.isnan(b)
        base = pred[1:] if pred not in ("ord", "uno") else pred
        with np.errstate(invalid="ignore"):
            r = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b,
                 "ord": ~nan, "uno": nan}[base]
        if pred in ("ord", "uno"):
            return r
        return (r & ~nan) if pred[0] == "o" else (r | nan)
    if pred in ("eq", "ne"):
        return a == b if pred == "eq" else a != b
    if pred[0] == "u":
        u = _UNSIGNED.get(kind)
        a, b = (a.view(u), b.view(u)) if u else (a, b)
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[pred[1:]]


def _cast(kind: str, x: np.ndarray, src: str, to: str) -> np.ndarray:
    dst = _NP[to]
    with np.errstate(all="ignore"):
        if kind in ("fpext", "fptrunc", "sitofp"):
            return x.astype(dst)
        if kind == "uitofp":
            return x.view(_UNSIGNED[src]).astype(dst) if src != "i1" else x.astype(dst)
        if kind in ("fptosi_sat", "fptoui_sat"):
            info = np.iinfo(_UNSIGNED[to] if kind == "fptoui_sat" else dst)
            y = np.where(np.isnan(x), 0, np.clip(np.trunc(x.astype(np.float64)), info.min, info.max))
            return y.astype(_UNSIGNED[to] if kind == "fptoui_sat" else dst).view(dst)
        if kind == "sext":
            return x.astype(dst) if src != "i1" else np.where(x, -1, 0).astype(dst)
        if kind == "zext":
            return x.view(_UNSIGNED[src]).astype(_UNSIGNED[to]).view(dst) if src != "i1" else x.astype(dst)
        if kind == "trunc":
            return x.astype(dst) if to != "i1" else (x & 1).astype(bool)
        if kind == "bitcast":
            return x.view(dst)
    raise SimtError(f"cast {kind}")


# ---------------------------------------------------------------- running a kernel on NumPy arrays


def run_kernel(fn: Function, k: Kernel, arrays: Sequence[np.ndarray]) -> None:
    """Run a GPU-lowered kernel on NumPy arrays (any views), writing its outputs in place."""
    env = {sym: int(arrays[i].shape[ax]) for sym, (i, ax) in k.extents.items()}
    grid = [d.evaluate(env) for d in k.grid]
    programs = math.prod(grid)
    if programs <= 0:
        return
    clusters = host_clusters(arrays)  # arrays whose memory overlaps share one buffer, as on the device
    interp_args: list[object] = []
    where: dict[int, tuple[int, int]] = {}
    interp = Interpreter(fn, programs, [])
    owners = []
    for cl, lo, hi in clusters:
        host = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * max(1, hi - lo)).from_address(lo))
        buf = interp.add_global(host[: hi - lo].copy() if hi > lo else np.zeros(1, np.uint8))
        owners.append((cl, lo, hi, buf, host))
        for i in cl:
            addr = arrays[i].__array_interface__["data"][0]
            where[i] = (buf, addr - lo)
    for p in gpu_abi(k):
        a = arrays[p.tensor] if p.tensor >= 0 else None
        if p.kind == "ptr":
            interp_args.append(where[p.tensor])
        elif p.kind == "extent":
            interp_args.append(int(a.shape[p.axis]))  # type: ignore[union-attr]
        elif p.kind == "stride":
            interp_args.append(a.strides[p.axis] // a.itemsize)  # type: ignore[union-attr]
        elif p.kind == "grid":
            interp_args.append(grid[p.axis])
    fresh = Interpreter(fn, programs, interp_args)
    fresh.mems = interp.mems
    fresh.run()
    for cl, lo, hi, buf, host in owners:
        if any(k.roles[i] in ("out", "inout") for i in cl) and hi > lo:
            host[: hi - lo] = fresh.mems[buf].data[: hi - lo]
