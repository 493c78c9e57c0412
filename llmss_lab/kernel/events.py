"""A tiny discrete-event core: a clock and a heap of timed callbacks (in the spirit of SimPy)."""
from __future__ import annotations

import heapq
import itertools
from typing import Callable


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
