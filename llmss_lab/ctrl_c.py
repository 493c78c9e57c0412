"""What a Ctrl-C (SIGINT) does inside a block, in one place: a run stops between events, a netCDF write finishes
first. A base module every room may import, the kernel included."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator

Handler = Callable[[int, FrameType | None], Any]


@contextmanager
def _handled_by(handler: Handler, stands_in_for: Callable[[Any], bool]) -> Iterator[Handler | None]:
    """While inside, ``handler`` takes a Ctrl-C in place of the one installed, when ``stands_in_for`` accepts that
    one and in the main thread (the one signals reach); yields the handler it stands in for (put back on leaving),
    or None where the block runs as it is."""
    before = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not stands_in_for(before):
        yield None
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield before
    finally:
        signal.signal(signal.SIGINT, before)


@contextmanager
def ctrl_c_calls(fn: Callable[[], None]) -> Iterator[None]:
    """While inside, a Ctrl-C calls ``fn`` instead of raising KeyboardInterrupt wherever the code is. Only where
    Python's own handler is in place (a terminal, a Jupyter kernel running a cell or a widget's callback) and in
    the main thread; anywhere else the block runs as it is."""
    with _handled_by(lambda signum, frame: fn(), lambda before: before is signal.default_int_handler):
        yield


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done, then deliver it. netCDF writes need this: an interrupt landing while
    xarray holds netCDF's process-wide lock leaves the lock taken, and the next write (an interrupted sweep saves
    its points) then waits for it for ever. Where Ctrl-C is ignored or left to the system, or in a thread that no
    signal reaches, the block runs as it is."""
    caught: list[FrameType | None] = []
    before = None
    try:
        with _handled_by(lambda signum, frame: caught.append(frame), callable) as before:
            yield
    finally:
        if caught and before is not None:
            before(signal.SIGINT, caught[0])
