"""CUDA streams and events for Tessera's cuda target.

    from tessera.runtime.cuda_streams import Event, Stream, use_stream

    s = Stream()
    with use_stream(s):
        y = m.mlp(x_dev, w1, b1, w2)   # launched on s; with device arrays in, returns without waiting
    start, end = Event(), Event()
    start.record(s); ...; end.record(s)
    print(end.elapsed_ms(start))
    s.synchronize()

`use_stream(s)` makes `s` the current stream of the calling thread: every `@jit` call on the cuda
target launches its kernels there. A call with NumPy arguments still returns NumPy results (it waits
for `s`); a call with device arrays returns device arrays produced on `s`, whose `numpy()`,
`__dlpack__` and `__cuda_array_interface__` wait for `s` before anything reads them. Without a
current stream the legacy default stream is used. Every driver call is checked (`CudaError`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from tessera.runtime.cuda import _call, _load_driver, device

_current = threading.local()


class _Handle:
    """A driver object destroyed by `close()` (or when collected) with the call `_destroy`."""

    _destroy = ""
    handle: Any = None

    def close(self) -> None:
        if self.handle is not None:
            h, self.handle = self.handle, None
            _call(self._destroy, h)

    def __del__(self) -> None:
        if self.handle is not None and not sys.is_finalizing():
            with contextlib.suppress(Exception):  # never raise from a finaliser
                self.close()


class Stream(_Handle):
    """A CUDA stream of device 0 (non-blocking with respect to the legacy default stream)."""

    _destroy = "cuStreamDestroy"

    def __init__(self) -> None:
        device()
        flags = _load_driver().CUstream_flags.CU_STREAM_NON_BLOCKING
        self.handle: Any = _call("cuStreamCreate", int(flags))

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        if self.handle is not None:
            _call("cuStreamSynchronize", self.handle)

    def wait(self, event: Event) -> None:
        """Later work on this stream waits for `event`."""
        _call("cuStreamWaitEvent", self.handle, event.handle, 0)

    def __repr__(self) -> str:
        return f"<cuda stream 0x{int(self):x}>" if self.handle is not None else "<cuda stream (closed)>"


class Event(_Handle):
    """A CUDA event (with timing)."""

    _destroy = "cuEventDestroy"

    def __init__(self) -> None:
        device()
        self.handle: Any = _call("cuEventCreate", 0)

    def record(self, stream: Stream | None = None) -> Event:
        _call("cuEventRecord", self.handle, stream.handle if stream is not None else 0)
        return self

    def synchronize(self) -> None:
        _call("cuEventSynchronize", self.handle)

    def done(self) -> bool:
        drv = _load_driver()
        err = drv.cuEventQuery(self.handle)
        err = err[0] if isinstance(err, tuple) else err
        if int(err) == int(drv.CUresult.CUDA_ERROR_NOT_READY):
            return False
        if int(err) != 0:
            _call("cuEventQuery", self.handle)  # raises with the driver's message
        return True

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from `start` to this event (waits for this one)."""
        self.synchronize()
        return float(_call("cuEventElapsedTime", start.handle, self.handle))


def current_stream() -> Stream | None:
    """The calling thread's current stream (None: the legacy default stream)."""
    return getattr(_current, "stream", None)


@contextlib.contextmanager
def use_stream(stream: Stream | None) -> Iterator[Stream | None]:
    """Make `stream` the current stream of this thread for the `with` block."""
    prev = current_stream()
    _current.stream = stream
    try:
        yield stream
    finally:
        _current.stream = prev


__all__ = ["Event", "Stream", "current_stream", "use_stream"]
