"""Schedule IR: a specialised graph function as a plan of buffers and fused kernel calls, each with
its schedule (block sizes, vector width, warps, stages) and its numeric policy spelled out as ops."""

from tessera.ir.schedule.ops import (
    PATTERNS,
    Buffer,
    HostPrint,
    IterSpace,
    KernelArg,
    KernelCall,
    Plan,
    ScheduleIRError,
    ViewStep,
)

__all__ = [
    "PATTERNS",
    "Buffer",
    "HostPrint",
    "IterSpace",
    "KernelArg",
    "KernelCall",
    "Plan",
    "ScheduleIRError",
    "ViewStep",
]
