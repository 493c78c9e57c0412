"""Power and energy per node and component, from what the run did.

Each node draws a constant power (base board, idle NPUs, the host CPU at its background load,
DRAM DIMMs, links, NICs, disks; see :meth:`PowerSpec.static_w`) for the whole run. On top of it,
events add energy where they happen in time:

* an NPU computing: ``(active - idle) x step time`` per NPU (each pipeline stage's NPUs for the
  time of their stage; not while the NPU waits on PIM attention, which LLMServingSim too charges to
  the PIM device alone), and the host CPU's extra power while it feeds the NPU (per node, at most the
  CPU's active power however many instances are busy: LLMServingSim adds it per instance);
* an NPU that has just gone idle stays in standby, ``(standby - idle)`` per NPU, for at most
  ``standby_duration`` seconds of each idle gap (clocks stay up in case work returns);
* DRAM: ``energy_per_bit x 8 x bytes`` moved to or from CPU or CXL memory (prefix-pool writes and
  recalls, weights read from a lower tier), and a PIM device's active power while it computes. The
  node whose memory it is pays: recalls from and writes to a pool in another node's CPU memory are
  that node's DRAM work (CXL, which no node holds, is booked to the instance's node, as LLMServingSim
  books all of its tier traffic);
* links: ``energy_per_bit x 8 x bytes`` on the wire for collectives and stage hand-overs (the
  instance's node). Bytes between nodes, P/D KV and traffic to and from a pool in another node's
  memory, are counted once, as every wire byte is, half at each end at that node's
  ``energy_per_bit``: one node's NIC sends what the other's receives (LLMServingSim books P/D KV to
  the sender alone).

Energies of an interval (a step, a standby period, a transfer) are spread evenly over it, so the
power of a bin (``bin_s`` wide, the run's time series' width; the last bin ends with the run) is the
energy of the bin over its width. Summing it over time gives the same total as summing the events
(energy = integral of power), whatever the width: the one thing not linear in the events, the node
CPU's cap, is applied per second (:data:`CPU_CAP_S`) before the seconds are summed into bins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.power import COMPONENTS, PowerSpec
from .simulator import RawRun

BIT_PJ = 8e-12   # joules per byte for each pJ/bit of a transfer's energy
CPU_CAP_S = 1.0  # the span over which a node CPU's extra power is capped at its active power (the model's grain)


@dataclass(frozen=True)
class NodePower:
    spec: PowerSpec
    cpu_mem_gib: float
    dram_idle_w: float | None = None   # replaces DIMM idle power (a PIM device's channels)
    pim_active_w: float = 0.0          # extra power of one PIM channel while it computes


@dataclass
class PowerAccount:
    edges_s: np.ndarray        # bin edges, seconds
    power_w: np.ndarray        # [bin, node, component] mean power in the bin
    energy_j: np.ndarray       # [node, component] over the run
    bin_s: float = 1.0         # the bins' width (the last one ends with the run)

    @property
    def total_j(self) -> float:
        return float(self.energy_j.sum())


def spread(starts: np.ndarray, ends: np.ndarray, energy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Energy of each bin when every interval's energy is spread evenly over it (instants fall
    into the bin that contains them)."""
    out = np.zeros(len(edges) - 1)
    if len(starts) == 0:
        return out
    d = ends - starts
    point = d <= 0
    if point.any():
        idx = np.clip(np.searchsorted(edges, starts[point], side="right") - 1, 0, len(out) - 1)
        out += np.bincount(idx, weights=energy[point], minlength=len(out))
    rate = energy[~point] / d[~point]
    F = _ramps(starts[~point], rate, edges) - _ramps(ends[~point], rate, edges)
    out += np.diff(F)
    return out


def _ramps(x: np.ndarray, rate: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sum_i rate_i * max(t - x_i, 0) at every t."""
    order = np.argsort(x)
    xs, rs = x[order], rate[order]
    cr = np.concatenate([[0.0], np.cumsum(rs)])
    crx = np.concatenate([[0.0], np.cumsum(rs * xs)])
    k = np.searchsorted(xs, t, side="right")
    return t * cr[k] - crx[k]


def _standby(starts: np.ndarray, ends: np.ndarray, horizon: float, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Standby intervals: the first ``limit`` seconds of every idle gap after a busy period."""
    if len(starts) == 0 or limit <= 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    gap_from = e[:-1]
    gap_to = s[1:]
    is_gap = gap_to > gap_from
    a = np.concatenate([gap_from[is_gap], [e[-1]]])
    b = np.concatenate([gap_to[is_gap], [max(horizon, e[-1])]])
    return a, np.minimum(b, a + limit)


def _edges(horizon: float, bin_s: float) -> np.ndarray:
    """Edges of ``bin_s``-wide bins from 0, the last one cut at ``horizon``."""
    nb = max(1, int(np.ceil(horizon / bin_s - 1e-12)))
    edges = np.minimum(np.arange(nb + 1, dtype=float) * bin_s, horizon)
    edges[-1] = horizon
    return edges


def _within(intervals: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cap_w: float) -> bool:
    """Whether the intervals' summed power stays within ``cap_w`` at every instant: none draws more alone and
    none overlaps another (one instance's steps), to the kernel's nanosecond (a step's length in seconds, taken
    as a difference of times a month into a run, is off by up to 5e-10 s)."""
    starts, ends, energy = (np.concatenate(x) for x in zip(*intervals))
    if not (energy <= cap_w * (ends - starts + 1e-9)).all():
        return False
    order = np.argsort(starts, kind="stable")
    return bool((starts[order][1:] >= np.maximum.accumulate(ends[order])[:-1] - 1e-9).all())


def _capped(intervals: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cap_w: float, edges: np.ndarray,
            horizon: float) -> np.ndarray:
    """Energy of each bin of ``edges`` when the summed power of the (starts, ends, energy) intervals may exceed
    ``cap_w`` in no :data:`CPU_CAP_S` span: spread over the pieces both grids make, each span's excess taken
    from its pieces in proportion, pieces summed into bins. The total is the same at every bin width. Bins of
    another width need one-second pieces (80 bytes a second of run: 200 MB for 30 days), so they are cut only
    where the cap can bind."""
    grain = _edges(horizon, CPU_CAP_S)
    same = len(grain) == len(edges) and bool((grain == edges).all())   # the bins are the spans
    if not same and (not intervals or _within(intervals, cap_w)):
        return sum((spread(*i, edges) for i in intervals), np.zeros(len(edges) - 1))
    pieces = edges if same else np.union1d(grain, edges)
    energy_p = np.zeros(len(pieces) - 1)
    for starts, ends, energy in intervals:
        energy_p += spread(starts, ends, energy, pieces)
    if same:
        return np.minimum(energy_p, cap_w * np.diff(edges))
    span = np.searchsorted(grain, pieces[:-1], side="right") - 1
    in_span = np.bincount(span, weights=energy_p, minlength=len(grain) - 1)
    room = cap_w * np.diff(grain)
    over = in_span > room
    energy_p = np.where(over[span], energy_p / np.where(over, in_span, 1.0)[span] * room[span], energy_p)
    return np.bincount(np.searchsorted(edges, pieces[:-1], side="right") - 1, weights=energy_p,
                       minlength=len(edges) - 1)


def account(raw: RawRun, nodes: list[NodePower | None], horizon_s: float | None = None,
            bin_s: float = 1.0) -> PowerAccount | None:
    """Power in ``bin_s``-wide bins and energy of every node that has a power spec (others count zero)."""
    if not any(nodes):
        return None
    horizon = max(raw.end_ns * 1e-9, horizon_s or 0.0)
    edges = _edges(horizon, bin_s)
    nb = len(edges) - 1
    widths = np.diff(edges)
    C = {c: i for i, c in enumerate(COMPONENTS)}
    energy_bins = np.zeros((nb, len(nodes), len(COMPONENTS)))
    for n, node in enumerate(nodes):
        if node is None:
            continue
        spec = node.spec
        npus: dict[str, int] = {}
        for s in raw.setups:
            if s.node == n:
                npus[s.info["hardware"]] = npus.get(s.info["hardware"], 0) + s.lanes
        for comp, watts in spec.static_w(node.cpu_mem_gib, npus, node.dram_idle_w).items():
            energy_bins[:, n, C[comp]] += watts * widths
    cpu_busy: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in nodes]   # steps feeding NPUs
    for inst, s in zip(raw.instances, raw.setups):
        node = nodes[s.node]
        if node is None or not inst.log.start:
            continue
        spec = node.spec
        npu = spec.npu[s.info["hardware"]]
        log = inst.log
        start = np.asarray(log.start) * 1e-9
        end = start + np.asarray(log.duration) * 1e-9
        busy = np.asarray(log.busy) * 1e-9
        per_stage = s.lanes // max(1, s.pp)
        n = s.node
        energy_bins[:, n, C["npu"]] += spread(start, end, (npu.active_w - npu.idle_w) * busy * per_stage, edges)
        cpu_busy[n].append((start, end, spec.cpu_busy_extra_w * busy))
        a, b = _standby(start, end, horizon, npu.standby_s)
        energy_bins[:, n, C["npu"]] += spread(a, b, (npu.standby_w - npu.idle_w) * (b - a) * s.lanes, edges)
        local = np.asarray(log.tier_bytes) - np.asarray(log.pool_link_bytes)   # in this node's own memory or CXL
        energy_bins[:, n, C["dram"]] += spread(start, end, spec.dram_pj_per_bit * BIT_PJ * local, edges)
        if log.pim_busy:
            energy_bins[:, n, C["dram"]] += spread(start, end, node.pim_active_w * np.asarray(log.pim_busy) * 1e-9, edges)
        energy_bins[:, n, C["link"]] += spread(start, end, spec.link_pj_per_bit * BIT_PJ * np.asarray(log.wire_bytes), edges)
    for inst in raw.instances:   # a pool in another node's memory: DRAM work there, the wire at both ends
        path, log = inst.pool_path, inst.log
        if path is None or not log.start:
            continue
        start = np.asarray(log.start) * 1e-9
        end = start + np.asarray(log.duration) * 1e-9
        nbytes = np.asarray(log.pool_link_bytes)
        if nodes[path.pool_node] is not None:
            pj = nodes[path.pool_node].spec.dram_pj_per_bit
            energy_bins[:, path.pool_node, C["dram"]] += spread(start, end, pj * BIT_PJ * nbytes, edges)
        for n in (path.pool_node, path.node):
            if nodes[n] is not None:
                energy_bins[:, n, C["link"]] += spread(start, end, nodes[n].spec.link_pj_per_bit * BIT_PJ * nbytes / 2,
                                                       edges)
    for n, node in enumerate(nodes):   # one CPU per node: several busy instances cannot drive it past its active power
        if node is not None:
            energy_bins[:, n, C["cpu"]] += _capped(cpu_busy[n], node.spec.cpu_busy_extra_w, edges, horizon)
    R = raw.requests   # P/D hand-offs, when the decode side has them: their wire bytes once, half at each end
    sent = np.flatnonzero((R.kv_bytes > 0) & (R.first_token >= 0))   # (an interrupted run's may be on the way)
    t, half = R.first_token[sent] * 1e-9, R.kv_bytes[sent] / 2
    for end in (R.prefill_instance[sent], R.instance[sent]):
        node_of = np.array([raw.setups[i].node for i in end], dtype=np.int64)
        for n, node in enumerate(nodes):
            mine = node_of == n
            if node is not None and mine.any():
                energy_bins[:, n, C["link"]] += spread(t[mine], t[mine], node.spec.link_pj_per_bit * BIT_PJ * half[mine],
                                                       edges)
    power = energy_bins / widths[:, None, None]
    return PowerAccount(edges, power, energy_bins.sum(axis=0), bin_s)
