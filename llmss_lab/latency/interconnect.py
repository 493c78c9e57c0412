"""An analytical (alpha-beta) interconnect model.

A message of ``S`` bytes over one link costs ``alpha + S / beta`` (latency plus size over
bandwidth). Collectives over ``N`` ranks use the ring algorithms NCCL uses for large messages:

* all-gather and reduce-scatter: ``N - 1`` steps, each moving ``S / N`` bytes;
* all-reduce: a reduce-scatter then an all-gather, ``2 (N - 1)`` steps;
* reductions also read two chunks and write one in local memory per step: ``3 (S / N) / mem_bw``.

Bandwidths in the configs are GB/s with 1 GB = 2**30 bytes (as the reference simulator reads
them); latencies are ns.
"""
from __future__ import annotations

from dataclasses import dataclass

GB = 2**30


@dataclass(frozen=True)
class Link:
    bandwidth_gbps: float   # GB/s
    latency_ns: float       # ns per message

    def transfer_ns(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        return self.latency_ns + nbytes / (self.bandwidth_gbps * GB) * 1e9


def all_gather_ns(link: Link, ranks: int, nbytes: float) -> float:
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    return (ranks - 1) * link.transfer_ns(nbytes / ranks)


def reduce_scatter_ns(link: Link, ranks: int, nbytes: float, mem_bw_gbps: float = 0.0) -> float:
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    reduce = 3 * (nbytes / ranks) / (mem_bw_gbps * GB) * 1e9 if mem_bw_gbps > 0 else 0.0
    return (ranks - 1) * (link.transfer_ns(nbytes / ranks) + reduce)


def all_reduce_ns(link: Link, ranks: int, nbytes: float, mem_bw_gbps: float = 0.0) -> float:
    return reduce_scatter_ns(link, ranks, nbytes, mem_bw_gbps) + all_gather_ns(link, ranks, nbytes)
