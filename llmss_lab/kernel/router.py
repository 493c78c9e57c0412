"""Routing of arriving requests to instances; each policy is a small registered class.

A router chooses among its candidate instances (the instances that take new requests, or the
decode instances of a prefill/decode split) at the moment the request arrives.

* ``round_robin`` - in turn.
* ``least_loaded`` - fewest requests waiting or running; ties go to the lowest index.
* ``load_score`` - vLLM's score ``(4 x waiting + running) / max_num_seqs``; the scan starts after
  the last winner, so equal loads rotate.
* ``prefix_aware`` - the instance whose prefix cache holds the longest prefix of the prompt; ties
  (and no hits anywhere) fall back to ``load_score``.
* ``random`` - uniformly at random, seeded.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .kv_cache import chain_hashes
from .registry import Registry

ROUTERS = Registry["Router"]("routing policy")


class Router:
    name = "base"

    def __init__(self, instances: Sequence, seed: int = 0) -> None:
        self.instances = list(instances)

    def pick(self, rid: int, token_ids=None) -> int:
        """Index (into ``instances``) of the instance that takes request ``rid``."""
        raise NotImplementedError


@ROUTERS.register("round_robin")
class RoundRobin(Router):
    def __init__(self, instances: Sequence, seed: int = 0) -> None:
        super().__init__(instances)
        self._next = 0

    def pick(self, rid: int, token_ids=None) -> int:
        i = self._next % len(self.instances)
        self._next += 1
        return i


@ROUTERS.register("least_loaded")
class LeastLoaded(Router):
    def pick(self, rid: int, token_ids=None) -> int:
        loads = [i.num_waiting + i.num_running for i in self.instances]
        return int(np.argmin(loads))


@ROUTERS.register("load_score")
class LoadScore(Router):
    def __init__(self, instances: Sequence, seed: int = 0) -> None:
        super().__init__(instances)
        self._start = 0

    @staticmethod
    def score(inst) -> float:
        seqs = inst.scheduler.engine.max_num_seqs or 1
        return (4 * inst.num_waiting + inst.num_running) / seqs

    def best(self, among: Sequence[int]) -> int:
        n = len(self.instances)
        order = sorted(among, key=lambda i: (i - self._start) % n)
        win = min(order, key=lambda i: self.score(self.instances[i]))  # min keeps the first of equals
        self._start = (win + 1) % n
        return win

    def pick(self, rid: int, token_ids=None) -> int:
        return self.best(range(len(self.instances)))


@ROUTERS.register("prefix_aware")
class PrefixAware(LoadScore):
    def pick(self, rid: int, token_ids=None) -> int:
        hits = [0] * len(self.instances)
        if token_ids is not None:
            for i, inst in enumerate(self.instances):
                kv = inst.scheduler.kv
                if kv.prefix_caching:
                    hits[i] = kv.cached_prefix_blocks(chain_hashes(token_ids, kv.block_size))
        top = max(hits)
        return self.best([i for i, h in enumerate(hits) if h == top])


@ROUTERS.register("random")
class RandomRouter(Router):
    def __init__(self, instances: Sequence, seed: int = 0) -> None:
        super().__init__(instances)
        self.rng = np.random.default_rng(seed)

    def pick(self, rid: int, token_ids=None) -> int:
        return int(self.rng.integers(len(self.instances)))
