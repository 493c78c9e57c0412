"""Wire instances, engines, routers and a workload to the event loop and run to completion.

New requests are routed at arrival among the instances that take them (all but decode
instances). In a prefill/decode split, a request whose prompt a prefill instance has processed is
handed to a decode instance picked by the same policy; its KV cache travels over the fabric, layer
by layer behind the prefill compute (``kv_transfer="layer"``) or after it (``"whole"``), pushed by the
prefill side. With ``"pull"`` the decode instance reads it, as vLLM V1's asynchronous connectors (such
as NixlConnector) do: it sees the request at a step boundary, reads the KV during that step, and
schedules the request from the first boundary after the read ends, one step later at the least. As in
vLLM's disaggregated serving, the decode instance then recomputes the last prompt token to get logits
and streams the first token, so TTFT spans prefill, KV transfer, the wait for a decode step and that step.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config.engine import EngineConfig
from ..ctrl_c import ctrl_c_calls
from ..errors import InputError
from ..latency.interconnect import Link
from ..latency.iteration import IterationModel
from ..workload import Workload
from .events import EventLoop
from .fabric import Fabric
from .instance import Engine, Instance
from .kv_cache import KVCacheManager
from .moe import GATES
from .requests import RequestTable
from .router import ROUTERS
from .scheduler import SCHEDULERS
from .tiers import CHUNK_TOKENS, NetPath, PrefixPool, Tier

KV_TRANSFERS = ("layer", "whole", "pull")   # how a prefill/decode split moves KV (module docstring)
HORIZON_NS = 100 * 86_400e9   # results keep per-second series: a run this long is a unit slip, not a workload
STOP_POLL_STEPS = 16   # stop_when is asked at least every this many steps, whether or not they finish requests


class RunStopped(Exception):
    """A run ended early because its ``stop_when`` said so, at simulated time ``now_ns``."""

    def __init__(self, now_ns: float, finished: int):
        super().__init__(f"run stopped at {now_ns * 1e-9:.3f} s of simulated time, {finished} requests done")
        self.now_ns = now_ns
        self.finished = finished


@dataclass
class InstanceSetup:
    """Everything one instance needs, already resolved from configs and profiles."""

    name: str
    engine: EngineConfig
    latency: IterationModel
    num_blocks: int
    max_model_len: int
    info: dict  # descriptive facts for the results' attrs (hardware, model, tp, sizes)
    role: str | None = None          # None, "prefill" or "decode"
    node: int = 0
    dp_group: str | None = None
    pp: int = 1
    lanes: int = 1                   # GPUs that each move their KV shard in a P/D hand-off
    kv_bytes_per_token: float = 0.0  # per lane
    moe: dict | None = None          # gate settings: num_experts, top_k, ep, num_layers, policy, seed, skew
    weight_bytes: float = 0.0        # resident on each NPU (weights kept in CPU/CXL memory excluded)
    block_bytes: float = 0.0         # one KV block on one NPU
    weight_stream: dict[str, float] = field(default_factory=dict)   # tier -> weight bytes read per step


@dataclass(frozen=True)
class TierSetup:
    name: str                # "cpu:<node>", "cxl:<device>" or "cxl" (all devices, striped)
    capacity_bytes: float
    bandwidth_gbps: float
    latency_ns: float = 0.0


@dataclass
class MemorySetup:
    """Memory below the NPUs and the lower prefix-cache tier, if any.

    ``prefix_storage`` is ``None``, ``"cpu"`` or ``"cxl"``; ``prefix_sharing`` is ``"instance"``
    (a private pool each, splitting the tier between the instances that use it), ``"node"`` (one
    pool per node; with CXL, one for the cluster) or ``"cluster"`` (one pool for everyone).
    """

    tiers: list[TierSetup] = field(default_factory=list)
    prefix_storage: str | None = None
    prefix_sharing: str = "instance"


@dataclass
class RawRun:
    requests: RequestTable
    instances: list[Instance]
    setups: list[InstanceSetup]
    end_ns: float
    engines: list[Engine] = field(default_factory=list)
    kv_bytes_moved: float = 0.0
    tiers: dict[str, Tier] = field(default_factory=dict)
    pools: list[PrefixPool] = field(default_factory=list)
    interrupted: bool = False   # stopped by a Ctrl-C at ``end_ns``: see :func:`run`


def _engines(loop: EventLoop, instances: list[Instance], setups: list[InstanceSetup], on_step) -> list[Engine]:
    groups: dict[str, list[int]] = {}
    solo: list[list[int]] = []
    for i, s in enumerate(setups):
        if s.dp_group is None:
            solo.append([i])
        else:
            groups.setdefault(s.dp_group, []).append(i)
    engines = []
    for members in solo + list(groups.values()):
        s = setups[members[0]]
        gate = None
        if s.moe:
            m = s.moe
            gate = GATES.get(m["policy"], "expert_gate")(m["num_experts"], m["top_k"], m["ep"], m["num_layers"],
                                                        seed=m["seed"], skew=m["skew"])
        engines.append(Engine(loop, [instances[i] for i in members], s.pp, gate, on_step))
    return engines


def pool_tier(s: InstanceSetup, storage: str, sharing: str) -> str:
    """The tier whose memory holds the lower prefix pool an instance uses."""
    if storage == "cxl":
        return "cxl"
    return "cpu:0" if sharing == "cluster" else f"cpu:{s.node}"


def weights_held(setups: list[InstanceSetup]) -> dict[str, float]:
    """Bytes of weights kept in each lower tier over all instances (a CXL device's count toward ``cxl``, the
    devices striped as one, too)."""
    held: dict[str, float] = {}
    for s in setups:
        for tier, nbytes in s.weight_stream.items():
            held[tier] = held.get(tier, 0.0) + nbytes
            if tier.startswith("cxl:"):
                held["cxl"] = held.get("cxl", 0.0) + nbytes
    return held


def _pools(setups: list[InstanceSetup], memory: MemorySetup, tiers: dict[str, Tier]
           ) -> tuple[list[PrefixPool], list[int]]:
    """The lower prefix pools and which instance uses which."""
    if memory.prefix_storage is None:
        return [], [-1] * len(setups)
    keys = [(pool_tier(s, memory.prefix_storage, memory.prefix_sharing),   # (tier, owner): one pool per key
             s.name if memory.prefix_sharing == "instance" else "") for s in setups]
    users: dict[str, int] = {}
    for tier, _ in set(keys):
        users[tier] = users.get(tier, 0) + 1
    held = weights_held(setups)
    pools: list[PrefixPool] = []
    index: dict[tuple[str, str], int] = {}
    pool_of = []
    for s, key in zip(setups, keys):
        chunk = s.kv_bytes_per_token * s.lanes * CHUNK_TOKENS
        if key not in index:
            tier = tiers[key[0]]
            index[key] = len(pools)
            name = f"{key[0]}:{key[1]}" if key[1] else key[0]
            room = max(0.0, tier.capacity_bytes - held.get(key[0], 0.0))   # what the weights kept there leave
            pools.append(PrefixPool(name, tier, chunk, room / users[key[0]]))
        elif pools[index[key]].chunk_bytes != chunk:
            raise ValueError(f"instances sharing the prefix pool {pools[index[key]].name} must have the same "
                             "model, KV dtype and parallel layout")
        pool_of.append(index[key])
    return pools, pool_of


def run(setups: list[InstanceSetup], workload: Workload, router: str = "round_robin",
        progress: Callable[[int], None] | None = None, links: tuple[Link, Link] | None = None,
        kv_transfer: str = "layer", seed: int = 0, memory: MemorySetup | None = None,
        stop_when: Callable[[RequestTable, float], bool] | None = None) -> RawRun:
    """``links``: (intra-node, inter-node) links for P/D KV transfers; ``memory``: lower tiers. ``stop_when`` is
    called with the request table and the time after each step that finished requests, and after every
    STOP_POLL_STEPS-th step (of all instances) since it was last asked, so that what does not wait on a request to
    finish (a cancelled run) is seen within a few steps of a long prefill; if it returns True, the run ends there
    with :class:`RunStopped` (every later event has a time at or after that one). ``R.num_finished`` tells a call
    after new requests finished from one on the clock.

    A Ctrl-C (where Python raises KeyboardInterrupt for it: see :func:`~llmss_lab.ctrl_c.ctrl_c_calls`) ends the run at
    the next event boundary instead of halfway through an event; the raw run then has ``interrupted`` set, ``end_ns``
    at the last event run, the requests not finished by then unfinished (finish time -1), and no step that was
    still running (its tokens never came out, its MoE routing is not counted and its reads from CPU or CXL memory
    are taken back from the tiers' counters; the KV blocks it took at its launch stay taken)."""
    loop = EventLoop()
    R = RequestTable(workload.arrival_ns, workload.input_toks, workload.output_toks)
    fabric = Fabric()
    memory = memory or MemorySetup()
    tiers = {t.name: Tier(t.name, t.capacity_bytes, t.bandwidth_gbps, t.latency_ns) for t in memory.tiers}
    pools, pool_of = _pools(setups, memory, tiers)
    instances: list[Instance] = []
    for i, s in enumerate(setups):
        lower = pools[pool_of[i]] if pool_of[i] >= 0 else None
        kv = KVCacheManager(s.num_blocks, s.engine.block_size, s.engine.enable_prefix_caching, s.engine.eviction,
                            lower)
        # vLLM schedules pipeline-parallel engines synchronously, whatever async_scheduling says
        sched = SCHEDULERS.get(s.engine.scheduler, "scheduler")(s.engine, kv, R, s.max_model_len,
                                                                 1 if s.role == "prefill" else None,
                                                                 s.engine.async_scheduling and s.pp == 1)
        stream = [(tiers[name], b) for name, b in s.weight_stream.items()]
        instances.append(Instance(i, s.name, sched, s.latency, R, s.role, s.kv_bytes_per_token * s.lanes, stream))
    entry = [i for i in instances if i.role != "decode"]
    decoders = [i for i in instances if i.role == "decode"]
    if not entry:
        raise ValueError("no instance takes new requests (all are decode instances)")
    if any(i.role == "prefill" for i in instances) and not decoders:
        raise ValueError("prefill instances need at least one decode instance")
    for d in decoders:   # a prefill instance holds a request's KV until a decode instance admits the request
        d.scheduler.on_handed_in = lambda rid: instances[int(R.prefill_instance[rid])].release(rid)
    route = ROUTERS.get(router, "router")(entry, seed)
    route_decode = ROUTERS.get(router, "router")(decoders, seed + 1) if decoders else None
    token_ids = workload.token_ids
    intra, inter = links or (Link(16.0, 0.0), Link(16.0, 0.0))
    nics = Fabric()   # the nodes' host NICs, which carry traffic to and from pools in other nodes' memory
    for inst, s in zip(instances, setups):   # a pool in another node's CPU memory is reached over the network
        pool = inst.scheduler.kv.lower
        if pool is not None and pool.tier.name.startswith("cpu:") and pool.tier.name != f"cpu:{s.node}":
            inst.pool_path = NetPath(inter, nics, int(pool.tier.name.removeprefix("cpu:")), s.node)

    def finished(rids: np.ndarray, now: float) -> None:
        for rid in rids.tolist():
            R.finished[rid] = now
            if progress is not None:
                progress(1)
        R.num_finished += len(rids)

    quiet = 0   # steps since stop_when was last asked

    def ask(now: float, finishing: bool) -> None:
        nonlocal quiet
        quiet += 1
        if finishing or quiet >= STOP_POLL_STEPS:
            quiet = 0
            if stop_when(R, now):
                raise RunStopped(now, R.num_finished)

    def deliver(rid: int, dst: Instance, held: int, prefilled: float, ready: float) -> None:
        R.kv_transfer[rid] = ready - prefilled
        dst.submit(rid, token_ids[rid], held)

    def read(rid: int, src: int, dst: int, link: Link, per_lane: float, lanes: int, prefilled: float,
             at: float) -> float:
        """The decode side's read of a handed-over KV cache, started when it sees the request."""
        ready = fabric.send(link, src, dst, at, per_lane, lanes)
        R.kv_transfer[rid] = ready - prefilled
        return ready

    def on_step(inst: Instance, first: np.ndarray, done: np.ndarray, start: float, now: float) -> None:
        if inst.role != "prefill":
            finished(done, now)
            if stop_when is not None:
                ask(now, len(done) > 0)
            return
        s = setups[inst.iid]
        chunks = inst.latency.layers
        for rid in first.tolist():
            dst = decoders[route_decode.pick(rid, token_ids[rid])]
            link = intra if setups[dst.iid].node == s.node else inter
            # each GPU sends or receives over its own link: with more GPUs on one side (TP2 prefill, TP1 decode)
            # the side with fewer carries the whole KV over fewer links
            lanes = min(s.lanes, setups[dst.iid].lanes)
            held = int(R.kv_ready[rid])   # the prompt tokens whose KV the prefill instance kept (Scheduler.finish)
            total = held * s.kv_bytes_per_token * s.lanes
            per_lane = total / lanes
            R.kv_bytes[rid] = total
            R.num_tokens[rid] = R.prompt[rid]   # the prefill's sampled token is not sent on
            if not held:   # preempted while its last step ran: no KV to move, the decode instance prefills
                R.kv_transfer[rid] = 0.0
                dst.submit(rid, token_ids[rid])
                continue
            if kv_transfer == "pull":
                dst.pull(rid, token_ids[rid], held, functools.partial(read, rid, inst.iid, dst.iid, link, per_lane,
                                                                      lanes, now))
                continue
            if kv_transfer == "layer":
                ready = fabric.send(link, inst.iid, dst.iid, start + (now - start) / chunks, per_lane, lanes,
                                    stream_until=now, chunks=chunks)
            else:
                ready = fabric.send(link, inst.iid, dst.iid, now, per_lane, lanes)
            loop.at(ready, functools.partial(deliver, rid, dst, held, now, ready))
        if stop_when is not None:
            ask(now, False)

    engines = _engines(loop, instances, setups, on_step)
    arrivals = workload.arrival_ns.tolist()

    # arrivals are fed one instant at a time so the heap stays small; requests of the same instant all
    # reach their instances before any engine plans, as LLMServingSim routes every arrived request at once
    # and vLLM drains its input queue before it schedules
    def arrive(rid: int) -> None:
        now, woken = arrivals[rid], {}
        while rid < len(arrivals) and arrivals[rid] == now:
            inst = entry[route.pick(rid, token_ids[rid])]
            inst.submit(rid, token_ids[rid], wake=False)
            woken[id(inst.engine)] = inst.engine
            rid += 1
        for engine in woken.values():
            engine.wake()
        if rid < len(arrivals):
            loop.at(float(arrivals[rid]), lambda: arrive(rid))

    loop.at(float(arrivals[0]), lambda: arrive(0))
    with ctrl_c_calls(loop.halt):
        loop.run(until=HORIZON_NS)
    if loop.halted:
        for inst in instances:
            inst.log.drop_running()
        for engine in engines:
            engine.drop_running()
    elif len(loop):
        raise InputError(f"the run would last more than {HORIZON_NS / 86_400e9:.0f} simulated days (at "
                         f"{loop.now / 86_400e9:.1f} days, {int(np.count_nonzero(R.finished >= 0))} of "
                         f"{len(R.finished)} requests done): a step latency or an arrival time is off by orders "
                         "of magnitude; check the latency model ("
                         f"{' | '.join(dict.fromkeys(s.info.get('latency_source', '?') for s in setups))}) and the "
                         "trace", "simulation")
    unfinished = int(np.count_nonzero(R.finished < 0))
    if unfinished and not loop.halted:  # cannot happen for admitted requests; a guard against silent loss
        raise RuntimeError(f"{unfinished} requests never finished")
    return RawRun(R, instances, setups, loop.now, engines, fabric.bytes_moved, tiers, pools, loop.halted)
