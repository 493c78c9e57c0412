"""Point-to-point transfers between instances, with contention.

Every instance has one egress and one ingress port per GPU rank; a transfer occupies the sender's
egress and the receiver's ingress for ``latency + bytes / bandwidth``. The ranks move their shards in
parallel, over as many lanes as the side with fewer GPUs has (a TP2 prefill instance sending to a TP1
decode instance moves the whole KV through the one decode GPU's link). Transfers that share a port
queue behind each other in the order they were asked for, so two prefills sending KV to one decoder
take twice as long as one.
"""
from __future__ import annotations

from collections import defaultdict

from ..latency.interconnect import Link


class Fabric:
    def __init__(self) -> None:
        self._free: dict[tuple[str, int], float] = defaultdict(float)
        self.bytes_moved = 0.0

    def ready(self, src: int, dst: int, earliest: float) -> float:
        """When a transfer from ``src`` to ``dst`` asked for at ``earliest`` can start: both ports free."""
        return max(earliest, self._free[("out", src)], self._free[("in", dst)])

    def reserve(self, src: int, dst: int, earliest: float, duration: float) -> float:
        """Book ``duration`` ns on ``src``'s egress and ``dst``'s ingress, as soon as both are free
        from ``earliest`` on; returns the end."""
        end = self.ready(src, dst, earliest) + duration
        self._free[("out", src)] = self._free[("in", dst)] = end
        return end

    def send(self, link: Link, src: int, dst: int, earliest: float, bytes_per_lane: float, lanes: int = 1,
             stream_until: float | None = None, chunks: int = 1) -> float:
        """Time the last byte arrives. With ``stream_until`` the data is produced in ``chunks``
        equal parts up to that time (layer by layer) and the last part leaves only after it."""
        duration = link.transfer_ns(bytes_per_lane)
        end = self.reserve(src, dst, earliest, duration)
        self.bytes_moved += bytes_per_lane * lanes
        if stream_until is not None:
            end = max(end, stream_until + link.transfer_ns(bytes_per_lane / chunks))
        return end
