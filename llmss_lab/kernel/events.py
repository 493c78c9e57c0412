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

    def at(self, time: float, fn: Callable[[], None]) -> None:
        if time < self.now:
            raise ValueError(f"event scheduled in the past ({time} < {self.now})")
        heapq.heappush(self._heap, (time, next(self._seq), fn))

    def run(self, until: float = float("inf"), max_events: int | None = None) -> int:
        """Run events in time order; returns how many ran."""
        heap = self._heap
        count = 0
        while heap and heap[0][0] <= until:
            self.now, _, fn = heapq.heappop(heap)
            fn()
            count += 1
            if max_events is not None and count >= max_events:
                break
        return count

    def __len__(self) -> int:
        return len(self._heap)
