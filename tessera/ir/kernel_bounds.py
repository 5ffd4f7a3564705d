"""`TESSERA_DEBUG_BOUNDS=1`: kernels compiled with a bounds check on every `tile.load` / `tile.store`.

Loads and stores are always safe (out-of-bounds elements read `other` and are not written), which is
what makes ragged edges work without masks. What the check reports is an access the program did not
mean: an element outside the tensor that is neither masked off (`mask=` false) nor *edge padding*,
the part of a block past the end of an axis along which the block starts inside the tensor. A block
that starts before 0 or at or past the extent (a grid one too large, an index off by a block) is
an error; so is a masked access whose true mask elements fall outside the tensor.

The compiled check is ordinary Tile IR: every program owns one row of an int64 buffer appended to
the kernel's parameters (`debug`, [programs, DEBUG_WIDTH]); on the first violation it writes
(check id + 1, the offending element's index per tensor axis) into its row (a store at an
out-of-range row when there is nothing to report, which stores drop). The runtime reads the buffer
after the launch and raises E-BOUNDS naming the kernel, the tensor, the index and the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tessera.dtypes import BOOL, INT64
from tessera.ir.tile.ops import Value
from tessera.source import Span

if TYPE_CHECKING:
    from tessera.ir.kernel_to_tile import Address, KernelLowering
    from tessera.ir.kernel_values import TensorArg

MAX_RANK = 8
DEBUG_WIDTH = 1 + MAX_RANK
NOTHING = 1 << 62  # a row no buffer has: the store of a program with nothing to report is dropped


@dataclass(frozen=True)
class BoundsCheck:
    """One checked access: which tensor, load or store, where in the source, the tensor's shape."""

    kernel: str
    tensor: str
    op: str
    span: Span
    shape: tuple[int, ...]


def _or(L: KernelLowering, a: Value | None, b: Value) -> Value:
    return b if a is None else L.b.op("or", a, b)


def _outside(L: KernelLowering, start: Value, extent: int) -> Value:
    """start < 0 or start >= extent (an index scalar)."""
    e = L.e
    return L.b.op("or", L.b.op("cmp", start, e.const(0, INT64), pred="lt"),
                  L.b.op("cmp", start, e.const(extent, INT64), pred="ge"))


def emit_check(L: KernelLowering, t: TensorArg, addr: Address, mask: Value | None, span: Span, op: str) -> None:
    if t.rank > MAX_RANK:
        return
    cid = len(L.checks)
    L.checks.append(BoundsCheck(L.b.name, t.name, op, span, t.shape))
    b, e = L.b, L.e
    r = t.rank
    nb = len(addr.shape)  # the block axes are the tensor's last nb axes
    batch_bad: Value | None = None
    for d in range(r - nb):
        batch_bad = _or(L, batch_bad, _outside(L, addr.starts[d], t.shape[d]))
    if mask is None or nb == 0:
        bad: Value | None = None
        for d in range(r - nb, r):
            bad = _or(L, bad, _outside(L, addr.starts[d], t.shape[d]))
        bad = batch_bad if bad is None else (bad if batch_bad is None else b.op("or", bad, batch_bad))
        if bad is None:
            return
        if mask is not None:
            bad = b.op("and", bad, b.op("item", mask))
        _record(L, bad, [e.const(cid + 1, INT64), *addr.starts])
        return
    shape = addr.shape
    viol: Value | None = None
    pos: Value | None = None
    strides = [1] * nb
    for k in reversed(range(nb - 1)):
        strides[k] = strides[k + 1] * shape[k + 1]
    for k in range(nb):
        d = r - nb + k
        iota = b.op("iota", shape=shape, axis=k)
        idx = b.op("add", iota, addr.starts[d])
        below = b.op("cmp", idx, e.const(0, INT64), pred="lt")
        past = b.op("and", b.op("cmp", idx, e.const(t.shape[d], INT64), pred="ge"),
                    _outside(L, addr.starts[d], t.shape[d]))
        viol = _or(L, viol, b.op("or", below, past))
        term = iota if strides[k] == 1 else b.op("mul", iota, e.const(strides[k], INT64))
        pos = term if pos is None else b.op("add", pos, term)
    assert viol is not None and pos is not None
    if batch_bad is not None:
        viol = b.op("or", viol, batch_bad)
    viol = b.op("and", viol, mask)
    numel = strides[0] * shape[0]
    first = b.op("select", viol, pos, e.const(numel, INT64))
    for k in reversed(range(nb)):
        first = b.reduce(first, "min", k)
    first = b.op("item", first)
    bad = b.op("cmp", first, e.const(numel, INT64), pred="lt")
    index = list(addr.starts[:r - nb])
    for k in range(nb):
        off = b.op("floordiv", first, e.const(strides[k], INT64)) if strides[k] != 1 else first
        off = b.op("mod", off, e.const(shape[k], INT64))
        index.append(b.op("add", addr.starts[r - nb + k], off))
    _record(L, bad, [e.const(cid + 1, INT64), *index])


def _record(L: KernelLowering, bad: Value, fields: list[Value]) -> None:
    """Write `fields` into this program's row of the debug buffer if `bad` and the row is still empty."""
    b, e = L.b, L.e
    dbg = L.debug_buffer()
    row = L.linear_program_id
    zero = e.const(0, INT64)
    current = b.op("item", b.load(dbg, row, zero, shape=(1, 1)))
    write = b.op("and", bad, b.op("cmp", current, zero, pred="eq"))
    at = b.op("select", write, row, e.const(NOTHING, INT64))
    lanes = b.op("iota", shape=(1, DEBUG_WIDTH), axis=1)
    info = b.full((1, DEBUG_WIDTH), 0, INT64)
    for i, f in enumerate(fields):
        info = b.op("select", b.op("cmp", lanes, e.const(i, INT64), pred="eq"), f, info)
    b.store(dbg, at, zero, value=info)
    assert bad.ty.dtype == BOOL  # type: ignore[union-attr]


def enabled() -> bool:
    """Whether kernels are compiled with bounds checks (TESSERA_DEBUG_BOUNDS=1)."""
    import os

    return os.environ.get("TESSERA_DEBUG_BOUNDS", "").strip() not in ("", "0")


def decode(buffer: object, checks: list[BoundsCheck], grid: tuple[int, ...]) -> tuple[BoundsCheck, tuple[int, ...],
                                                                                       tuple[int, ...]] | None:
    """The first reported violation in program order: (check, element index, program coordinates)."""
    import numpy as np

    buf = np.asarray(buffer)
    rows = np.nonzero(buf[:, 0])[0]
    if rows.size == 0:
        return None
    r = int(rows[0])
    check = checks[int(buf[r, 0]) - 1]
    index = tuple(int(x) for x in buf[r, 1:1 + len(check.shape)])
    coords = []
    rest = r
    for g in reversed(grid):
        coords.append(rest % g)
        rest //= g
    return check, index, tuple(reversed(coords))
