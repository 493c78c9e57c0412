"""Memory below the NPU: CPU DRAM and CXL devices, and the prefix-cache pools that live in them.

A :class:`Tier` is one memory device with a bandwidth, a latency and one port: transfers to and
from it queue behind each other (first come, first served), so two instances recalling KV from
the same CPU memory, or a write-back and a recall, slow each other down. A transfer of ``B``
bytes that starts at ``t`` ends at ``max(t, port free) + latency + B / bandwidth``.

A :class:`PrefixPool` is a lower-tier prefix cache in the manner of LMCache: KV is kept in
chunks of 256 tokens (LMCache's default), each keyed by the chained hash of everything up to the
chunk's end, so a chunk is found only with its whole prefix. It is filled by write-through (a
chunk is copied down once every token of it has KV on an NPU; the copy costs tier bandwidth and
energy but does not stall the NPU) and evicts least recently used chunks when full. A pool may
serve one instance, every instance of a node, or the whole cluster.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..latency.interconnect import GB, Link

CHUNK_TOKENS = 256


@dataclass
class Tier:
    name: str
    capacity_bytes: float
    bandwidth_gbps: float    # GB/s, 1 GB = 2**30 bytes
    latency_ns: float = 0.0
    free_at: float = 0.0     # when the port is next idle
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    busy_ns: float = 0.0

    def transfer_ns(self, nbytes: float) -> float:
        """Time of one transfer on an idle port: latency + bytes / bandwidth."""
        if nbytes <= 0:
            return 0.0
        return self.latency_ns + nbytes / (self.bandwidth_gbps * GB) * 1e9

    def move(self, now: float, nbytes: float, write: bool = False, via: Link | None = None) -> float:
        """Queue a transfer on the port; returns when it ends. ``via`` is a network link the data also crosses
        (a pool in another node's memory): the port is busy for its own share, and the transfer ends no sooner
        than the link, starting with the port, can carry it."""
        if nbytes <= 0:
            return now
        d = self.transfer_ns(nbytes)
        start = max(now, self.free_at)
        self.free_at = start + d
        self.busy_ns += d
        if write:
            self.bytes_written += nbytes
        else:
            self.bytes_read += nbytes
        return self.free_at if via is None else max(self.free_at, start + via.transfer_ns(nbytes))


@dataclass
class PrefixPool:
    """A chunked, LRU prefix cache in a lower tier, shared by the instances given it."""

    name: str
    tier: Tier
    chunk_bytes: float                   # KV bytes of one chunk across the whole model
    capacity_bytes: float
    chunks: OrderedDict = field(default_factory=OrderedDict)   # key -> None, oldest first
    queries: int = 0                     # prompt tokens looked up
    hits: int = 0                        # tokens recalled from the pool (beyond the NPU's own hits)
    evictions: int = 0
    used_log: list[tuple[float, int]] = field(default_factory=list)   # (time, chunks held)
    stats_log: list[tuple[float, int, int]] = field(default_factory=list)   # (time, queries, hits)

    def count(self, now: float, queries: int, hits: int) -> None:
        self.queries += queries
        self.hits += hits
        self.stats_log.append((now, self.queries, self.hits))

    @property
    def capacity_chunks(self) -> int:
        return int(self.capacity_bytes // self.chunk_bytes)

    @property
    def used_bytes(self) -> float:
        return len(self.chunks) * self.chunk_bytes

    def store(self, now: float, keys: list[int]) -> float:
        """Write-through of completed chunks (already-held ones are only refreshed); the bytes written."""
        cap = self.capacity_chunks
        if cap <= 0:
            return 0.0
        new = 0
        for k in keys:
            if k in self.chunks:
                self.chunks.move_to_end(k)
                continue
            if len(self.chunks) >= cap:
                self.chunks.popitem(last=False)
                self.evictions += 1
            self.chunks[k] = None
            new += 1
        if new:
            self.tier.move(now, new * self.chunk_bytes, write=True)
            self.used_log.append((now, len(self.chunks)))
        return new * self.chunk_bytes

    def match(self, keys: list[int]) -> int:
        """How many leading chunks of a prefix the pool holds (refreshing them)."""
        n = 0
        for k in keys:
            if k not in self.chunks:
                break
            self.chunks.move_to_end(k)
            n += 1
        return n
