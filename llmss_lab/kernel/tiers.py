"""Memory below the NPU: CPU DRAM and CXL devices, and the prefix-cache pools that live in them.

A :class:`Tier` is one memory device with a bandwidth, a latency and one port: transfers to and
from it queue behind each other (first come, first served), so two instances recalling KV from
the same CPU memory, or a write-back and a recall, slow each other down. A transfer of ``B``
bytes that starts at ``t`` ends at ``max(t, port free) + latency + B / bandwidth``.

A :class:`PrefixPool` is a lower-tier prefix cache in the manner of LMCache: KV is kept in
chunks of 256 tokens (LMCache's default), each keyed by the chained hash of the tokens up to the
chunk's end, so a chunk is found only with its whole prefix, by any instance that shares the pool
whatever its block size (the key is not built from block hashes). It is filled by write-through (a
chunk is copied down once every token of it has KV on an NPU; the copy costs tier bandwidth and
energy but does not stall the NPU) and evicts least recently used chunks when full. A pool may
serve one instance, every instance of a node, or the whole cluster.

A pool in another node's CPU memory is reached over the link between nodes (a :class:`NetPath`), both
ways: a recall crosses it from the pool's node, a write-through to it. A chunk can be recalled only
once its write has arrived; for a pool on the reader's own node that is already so, as the read
queues behind the write on the memory's port.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..latency.interconnect import GB, Link
from .fabric import Fabric

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

    def move(self, now: float, nbytes: float, write: bool = False, path: NetPath | None = None) -> float:
        """Queue a transfer on the port; returns when it ends. ``path`` is the network the data also crosses
        (a pool in another node's memory): the transfer starts once the port and the path's NIC ports are all
        free, holds the memory port for its own share and the NICs for the link's, and ends with the slower."""
        if nbytes <= 0:
            return now
        d = self.transfer_ns(nbytes)
        start = max(now, self.free_at)
        wire_end = start
        if path is not None:
            src, dst = path.ends(write)
            start = path.nics.ready(src, dst, start)
            wire_end = path.nics.send(path.link, src, dst, start, nbytes)
        self.free_at = start + d
        self.busy_ns += d
        if write:
            self.bytes_written += nbytes
        else:
            self.bytes_read += nbytes
        return max(self.free_at, wire_end)

    def take_back(self, nbytes: float) -> None:
        """Uncount a read whose step was dropped at a Ctrl-C (its port time stays booked: nothing runs after)."""
        if nbytes > 0:
            self.bytes_read -= nbytes
            self.busy_ns -= self.transfer_ns(nbytes)


@dataclass(frozen=True)
class NetPath:
    """The network between an instance and a prefix pool in another node's CPU memory.

    ``nics`` holds one egress and one ingress port per node (the host's NIC, full duplex; a
    :class:`Fabric` over node ids, apart from the GPUs' links that carry P/D hand-offs). A recall
    holds the pool node's egress and the reader node's ingress, a write-through the writer node's
    egress and the pool node's ingress: transfers through a NIC the same way queue behind each
    other, whichever instance asks, while a recall and a write in opposite directions pass.
    """

    link: Link
    nics: Fabric
    pool_node: int
    node: int          # the instance's

    def ends(self, write: bool) -> tuple[int, int]:
        """(sending node, receiving node) of a write to the pool or a read from it."""
        return (self.node, self.pool_node) if write else (self.pool_node, self.node)


@dataclass
class PrefixPool:
    """A chunked, LRU prefix cache in a lower tier, shared by the instances given it."""

    name: str
    tier: Tier
    chunk_bytes: float                   # KV bytes of one chunk across the whole model
    capacity_bytes: float
    chunks: OrderedDict = field(default_factory=OrderedDict)   # key -> when its write ends (ns), oldest first
    queries: int = 0                     # prompt tokens looked up
    hits: int = 0                        # tokens recalled from the pool (beyond the NPU's own hits)
    evictions: int = 0
    link_read: float = 0.0               # bytes recalled by instances on other nodes, over the link
    link_written: float = 0.0            # bytes they wrote through, over the link
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

    def store(self, now: float, keys: list[int], path: NetPath | None = None) -> float:
        """Write-through of completed chunks (already-held ones are only refreshed) by an instance
        ``path`` away; the bytes written."""
        cap = self.capacity_chunks
        if cap <= 0:
            return 0.0
        new = []
        for k in keys:
            if k in self.chunks:
                self.chunks.move_to_end(k)
                continue
            if len(self.chunks) >= cap:
                self.chunks.popitem(last=False)
                self.evictions += 1
            self.chunks[k] = now   # until its write is booked below
            new.append(k)
        nbytes = len(new) * self.chunk_bytes
        if new:
            landed = self.tier.move(now, nbytes, write=True, path=path)
            for k in new:
                if k in self.chunks:   # not already pushed out by a later one of the same write
                    self.chunks[k] = landed
            if path is not None:
                self.link_written += nbytes
            self.used_log.append((now, len(self.chunks)))
        return nbytes

    def recall(self, now: float, nbytes: float, path: NetPath | None = None) -> float:
        """Read recalled KV out to an instance ``path`` away; returns when it arrives."""
        if path is not None:
            self.link_read += nbytes
        return self.tier.move(now, nbytes, path=path)

    def match(self, keys: list[int]) -> int:
        """How many leading chunks of a prefix the pool holds (refreshing them)."""
        n = 0
        for k in keys:
            if k not in self.chunks:
                break
            self.chunks.move_to_end(k)
            n += 1
        return n

    def landed(self, keys: list[int]) -> float:
        """When the last of these held chunks is wholly in the pool (its write has ended)."""
        return max((self.chunks[k] for k in keys), default=0.0)
