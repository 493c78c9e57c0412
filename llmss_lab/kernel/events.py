"""A tiny discrete-event core: a clock and a heap of timed callbacks (in the spirit of SimPy)."""
from __future__ import annotations

import heapq
import itertools
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class EventLoop:
    """Time is float nanoseconds. Events at the same time run in the order they were scheduled."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._halt: list[bool] = []   # a list, not a flag attribute: run() tests it in a local at no cost per event

    def at(self, time: float, fn: Callable[[], None]) -> None:
        if time < self.now:
            raise ValueError(f"event scheduled in the past ({time} < {self.now})")
        heapq.heappush(self._heap, (time, next(self._seq), fn))

    def halt(self) -> None:
        """End :meth:`run` once the event under way is done. A signal handler may call it: it only leaves a mark,
        so the state is never left halfway through an event."""
        self._halt.append(True)

    @property
    def halted(self) -> bool:
        return bool(self._halt)

    def run(self, until: float = float("inf")) -> None:
        """Run events in time order until none is left before ``until`` or :meth:`halt` is called; ``now`` stays
        the time of the last event run."""
        heap, halt = self._heap, self._halt
        while heap and heap[0][0] <= until:
            self.now, _, fn = heapq.heappop(heap)
            fn()
            if halt:
                break

    def __len__(self) -> int:
        return len(self._heap)


@contextmanager
def ctrl_c_calls(fn: Callable[[], None]) -> Iterator[None]:
    """While inside, a Ctrl-C (SIGINT) calls ``fn`` instead of raising KeyboardInterrupt wherever the code is.
    Only where Python's own handler is in place (a terminal, a Jupyter kernel running a cell or a widget's
    callback) and in the main thread, which is the one signals reach; anywhere else the block runs as it is."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: fn())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
