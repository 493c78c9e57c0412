"""Wire instances, a router and a workload to the event loop and run to completion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config.engine import EngineConfig
from ..latency.iteration import IterationModel
from ..workload import Workload
from .events import EventLoop
from .instance import Instance
from .kv_cache import KVCacheManager
from .requests import RequestTable
from .router import ROUTERS
from .scheduler import SCHEDULERS


@dataclass
class InstanceSetup:
    """Everything one instance needs, already resolved from configs and profiles."""

    name: str
    engine: EngineConfig
    latency: IterationModel
    num_blocks: int
    max_model_len: int
    info: dict  # descriptive facts for the results' attrs (hardware, model, tp, sizes)


@dataclass
class RawRun:
    requests: RequestTable
    instances: list[Instance]
    setups: list[InstanceSetup]
    end_ns: float


def run(setups: list[InstanceSetup], workload: Workload, router: str = "round_robin",
        progress: Callable[[int], None] | None = None) -> RawRun:
    loop = EventLoop()
    R = RequestTable(workload.arrival_ns, workload.input_toks, workload.output_toks)
    on_finish = (lambda rid: progress(1)) if progress else None
    instances = []
    for i, s in enumerate(setups):
        kv = KVCacheManager(s.num_blocks, s.engine.block_size, s.engine.enable_prefix_caching, s.engine.eviction)
        sched = SCHEDULERS.get(s.engine.scheduler, "scheduler")(s.engine, kv, R, s.max_model_len)
        instances.append(Instance(i, loop, sched, s.latency, R, on_finish))
    route = ROUTERS.get(router, "router")(instances)
    token_ids = workload.token_ids
    arrivals = workload.arrival_ns.tolist()

    # arrivals are fed one at a time so the heap stays small
    def arrive(rid: int) -> None:
        instances[route.pick(rid)].submit(rid, token_ids[rid])
        if rid + 1 < len(arrivals):
            loop.at(float(arrivals[rid + 1]), lambda: arrive(rid + 1))

    loop.at(float(arrivals[0]), lambda: arrive(0))
    loop.run()
    unfinished = int(np.count_nonzero(R.finished < 0))
    if unfinished:  # cannot happen for admitted requests; a guard against silent loss
        raise RuntimeError(f"{unfinished} requests never finished")
    return RawRun(R, instances, setups, loop.now)
