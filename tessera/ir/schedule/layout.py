"""Strided layouts: where the elements of a buffer or of a view lie in their root storage.

A `Layout` is NumPy's view model in elements: extents, strides and an offset into a contiguous
root buffer. The Schedule IR uses it to decide which graph shape ops are free views (transpose,
broadcast, slice, and a reshape whose strides allow it) and to describe the tensor arguments a
kernel sees: collapsed, permuted views of buffers. The executor turns layouts into NumPy views
with `as_strided`, so a layout must never reach outside its root (`Layout.span`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements; 0 on broadcast axes
    offset: int = 0

    @staticmethod
    def contiguous(shape: Sequence[int]) -> Layout:
        strides = []
        acc = 1
        for n in reversed(shape):
            strides.append(acc)
            acc *= n
        return Layout(tuple(shape), tuple(reversed(strides)), 0)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def span(self) -> int:
        """One past the largest element index the layout touches (its offset when it is empty)."""
        if self.size == 0:
            return self.offset
        return self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides) if s > 0) + 1

    @property
    def first(self) -> int:
        """The smallest element index the layout touches (below the offset along negative strides)."""
        if self.size == 0:
            return self.offset
        return self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides) if s < 0)

    def is_contiguous(self) -> bool:
        return self == Layout.contiguous(self.shape) or self.size == 0

    def rows_alike(self) -> bool:
        """Every row (last axis) is the same elements: stride 0 or extent 1 along the other axes (a
        norm's weights broadcast over the rows of a row reduction)."""
        return all(n == 1 or s == 0 for n, s in zip(self.shape[:-1], self.strides[:-1]))

    def __str__(self) -> str:
        def ints(xs: Sequence[int]) -> str:
            return "[" + ", ".join(map(str, xs)) + "]"

        text = f"{ints(self.shape)} strides {ints(self.strides)}"
        return text + (f" offset {self.offset}" if self.offset else "")


def transpose(lay: Layout, perm: Sequence[int]) -> Layout:
    return Layout(tuple(lay.shape[i] for i in perm), tuple(lay.strides[i] for i in perm), lay.offset)


def broadcast(lay: Layout, shape: Sequence[int]) -> Layout:
    """NumPy broadcasting (trailing axes aligned): new and size-1 axes get stride 0."""
    lead = len(shape) - lay.rank
    if lead < 0:
        raise ValueError(f"cannot broadcast {lay.shape} to {tuple(shape)}")
    strides = [0] * lead
    for n, (m, s) in zip(shape[lead:], zip(lay.shape, lay.strides)):
        if m == n:
            strides.append(s)
        elif m == 1:
            strides.append(0)
        else:
            raise ValueError(f"cannot broadcast {lay.shape} to {tuple(shape)}")
    return Layout(tuple(shape), tuple(strides), lay.offset)


def slice_(lay: Layout, starts: Sequence[int], stops: Sequence[int], steps: Sequence[int]) -> Layout:
    """The graph `slice` op's window per axis; a negative step starts at the window's last element
    and walks back with a negative stride."""
    shape = []
    strides = []
    offset = lay.offset
    for n, s, lo, hi, st in zip(lay.shape, lay.strides, starts, stops, steps):
        ext = max(0, (hi - lo + abs(st) - 1) // abs(st))
        if ext:
            offset += (lo if st > 0 else hi - 1) * s
        shape.append(ext)
        strides.append(s * st)
    return Layout(tuple(shape), tuple(strides), offset)


def reshape(lay: Layout, shape: Sequence[int]) -> Layout | None:
    """The same elements in row-major order with a new shape, as a view; None when the strides
    do not allow one (the caller then copies)."""
    shape = tuple(shape)
    if math.prod(shape) != lay.size:
        raise ValueError(f"cannot reshape {lay.shape} to {shape}")
    if lay.size == 0:
        return Layout(shape, Layout.contiguous(shape).strides, lay.offset)
    # Drop size-1 axes (their strides carry no information), then match runs of old axes that
    # are contiguous among themselves against runs of new axes with the same element count.
    old = [(n, s) for n, s in zip(lay.shape, lay.strides) if n != 1]
    new_strides: list[int] = []
    i = 0
    j = 0
    new = list(shape)
    while j < len(new):
        if new[j] == 1:
            new_strides.append(0)
            j += 1
            continue
        # Extend a run of old axes and a run of new axes until their counts agree.
        oi, nj = i, j
        ocount, ncount = old[i][0], new[j]
        while ocount != ncount:
            if ocount < ncount:
                i += 1
                ocount *= old[i][0]
            else:
                j += 1
                ncount *= new[j]
        for k in range(oi, i):
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None  # the old run is not one strided line: no view reproduces it
        stride = old[i][1]
        run = []
        for k in range(j, nj - 1, -1):
            run.append(stride if new[k] != 1 else 0)
            if new[k] != 1:
                stride *= new[k]
        new_strides.extend(reversed(run))
        i += 1
        j += 1
    return Layout(shape, tuple(new_strides), lay.offset)


def can_merge(lay: Layout, i: int) -> bool:
    """Whether axes i and i+1 of `lay` read as one axis (a size-1 axis merges with anything)."""
    n0, n1 = lay.shape[i], lay.shape[i + 1]
    return n0 == 1 or n1 == 1 or lay.strides[i] == lay.strides[i + 1] * n1


def merge(lay: Layout, i: int) -> Layout:
    """Axes i and i+1 as one (`can_merge` must hold)."""
    n0, n1 = lay.shape[i], lay.shape[i + 1]
    s0, s1 = lay.strides[i], lay.strides[i + 1]
    stride = s0 if n1 == 1 else s1
    if n0 * n1 == 1:
        stride = 0
    shape = lay.shape[:i] + (n0 * n1,) + lay.shape[i + 2:]
    strides = lay.strides[:i] + (stride,) + lay.strides[i + 2:]
    return Layout(shape, strides, lay.offset)


def drop_axes(lay: Layout, axes: Sequence[int]) -> Layout:
    """Remove size-1 axes."""
    keep = [i for i in range(lay.rank) if i not in axes]
    return Layout(tuple(lay.shape[i] for i in keep), tuple(lay.strides[i] for i in keep), lay.offset)


def insert_unit(lay: Layout, at: int) -> Layout:
    return Layout(lay.shape[:at] + (1,) + lay.shape[at:], lay.strides[:at] + (0,) + lay.strides[at:],
                  lay.offset)
