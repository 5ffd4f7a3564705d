"""The skeleton the GPU printers of Target IR share (tessera/codegen/ptx.py, tessera/codegen/hip.py).

Both print one kernel function at a time, each Target IR value as a list of names (one per lane:
PTX registers, C++ locals); what they share is how a function is walked, not what it is printed
as:

- the values seen so far (`vals`, `r`, `set`), the constants' values (`consts`, which the printers
  read to fold immediates) and the names taken (`unique`);
- the shared-memory layout: every `shared` op of the function, nested regions included, at a
  16-byte aligned offset of one block (`layout_shared`, before printing);
- the region walk (`region`): each op to its printer's `op_<name>` method, a `yield` giving the
  region's results, a `return` printed as the target's return statement;
- the lane moves that print nothing (`splat`, `extract`, `insert`) and constants (`op_const`: one
  name per distinct lane value, made by the printer's `constant`);
- program and thread ids (1-D grids only), read from the printer's special registers
  (`program_id_reg`, `thread_id_reg`, `special`).

A printer sets `vendor` (its name in errors), `return_stmt` and the id registers, and implements
`emit`, `constant` and `special`.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod

from tessera.ir.target.ops import Function, Op, Region, Scalar, TargetIRError, Value, elem_of, lanes_of


class GpuPrinter(ABC):
    """The state and walk of printing one GPU kernel function `f` (see the module docstring)."""

    vendor = ""
    return_stmt = ""

    def __init__(self, f: Function, info: str) -> None:
        if f.threads <= 0:
            raise TargetIRError(f"{self.vendor} emitter: function @{f.name} is not a GPU kernel (it has no thread "
                                f"count); lower it with a {info} TargetInfo")
        self.f = f
        self.lines: list[str] = []
        self.vals: dict[int, list[str]] = {}
        self.consts: dict[int, object] = {}  # uid -> the constant's value (for immediates)
        self.shared_offsets: dict[int, int] = {}
        self.shared_size = 0
        self.names_used: set[str] = set()

    @abstractmethod
    def emit(self, text: str) -> None:
        ...

    @abstractmethod
    def constant(self, kind: str, value: object) -> str:
        """A fresh name holding the scalar `value` of element kind `kind`."""
        ...

    # -- values and names

    def r(self, v: Value) -> list[str]:
        try:
            return self.vals[v.uid]
        except KeyError:
            raise TargetIRError(f"{self.vendor} emitter: value %{v.hint or v.uid} used before definition") from None

    def set(self, op: Op, names: list[str]) -> None:
        self.vals[op.result.uid] = names

    def unique(self, base: str) -> str:
        """`base`, or `base_N` for the first N that no earlier name took."""
        name = base
        for n in itertools.count(1):
            if name not in self.names_used:
                break
            name = f"{base}_{n}"
        self.names_used.add(name)
        return name

    # -- the walk

    def layout_shared(self, r: Region) -> None:
        for op in r.ops:
            if op.name == "shared":
                size = int(op.attr("count")) * max(1, Scalar(str(op.attr("elem"))).bits // 8)  # type: ignore[arg-type]
                self.shared_offsets[op.result.uid] = self.shared_size
                self.shared_size += -(-size // 16) * 16
            for sub in op.regions:
                self.layout_shared(sub)

    def region(self, r: Region) -> list[list[str]] | None:
        for op in r.ops:
            if op.name == "yield":
                return [self.r(v) for v in op.operands]
            if op.name == "return":
                self.emit(self.return_stmt)
                return None
            handler = getattr(self, "op_" + op.name, None)
            if handler is None:
                raise TargetIRError(f"the {self.vendor} emitter does not implement target op '{op.name}'")
            handler(op)
        return None

    # -- GPU ids

    program_id_reg = ""  # the target's special registers of axis 0
    thread_id_reg = ""

    @abstractmethod
    def special(self, reg: str) -> str:
        """A fresh 64-bit name holding the special register `reg`."""
        ...

    def _id(self, op: Op, reg: str) -> None:
        if int(op.attr("axis")) != 0:  # type: ignore[arg-type]
            raise TargetIRError(f"{self.vendor} emitter: {op.name} along axis {op.attr('axis')} (the runtime "
                                "launches 1-D grids)")
        self.set(op, [self.special(reg)])

    def op_program_id(self, op: Op) -> None:
        self._id(op, self.program_id_reg)

    def op_thread_id(self, op: Op) -> None:
        self._id(op, self.thread_id_reg)

    # -- constants and lanes

    def op_const(self, op: Op) -> None:
        t = op.result.ty
        kind = elem_of(t).kind
        value = op.attr("value")
        lanes = list(value) if isinstance(value, tuple) else [value] * lanes_of(t)
        self.consts[op.result.uid] = value
        seen: dict[object, str] = {}  # lanes of one value share a name
        out = []
        for x in lanes:
            if x not in seen:
                seen[x] = self.constant(kind, x)
            out.append(seen[x])
        self.set(op, out)

    def op_splat(self, op: Op) -> None:
        self.set(op, self.r(op.operands[0]) * int(op.attr("lanes")))  # type: ignore[operator, arg-type]

    def op_extract(self, op: Op) -> None:
        self.set(op, [self.r(op.operands[0])[int(op.attr("index"))]])  # type: ignore[arg-type]

    def op_insert(self, op: Op) -> None:
        names = list(self.r(op.operands[0]))
        names[int(op.attr("index"))] = self.r(op.operands[1])[0]  # type: ignore[arg-type]
        self.set(op, names)


__all__ = ["GpuPrinter"]
