"""Request state for a whole run as columns (numpy arrays indexed by request id).

Columns instead of objects let the hot path update every running request with a handful of
array operations per step.
"""
from __future__ import annotations

import numpy as np

UNSET = -1.0
# Reductions of the per-step integer column slices (a batch's chunk sizes, histories, block needs).
# Batches are mostly small, where Python's own sum/min/max over a list take a fifth of numpy's
# reduce (0.2 vs 0.9 us for 9 items); past about 80 items numpy's is faster. Integers, so
# both give the same exact answer.
SMALL = 64


def col_sum(x: np.ndarray) -> int:
    return sum(x.tolist()) if len(x) <= SMALL else int(np.add.reduce(x))


def col_sum_nonzero(x: np.ndarray) -> tuple[int, bool]:
    """Sum of a column and whether none of its entries is zero, from one list when it is small."""
    if len(x) <= SMALL:
        v = x.tolist()
        return sum(v), 0 not in v
    return int(np.add.reduce(x)), bool(np.count_nonzero(x) == len(x))


def col_max(x: np.ndarray) -> int:
    return max(x.tolist()) if len(x) <= SMALL else int(np.maximum.reduce(x))


def col_stats(x: np.ndarray) -> tuple[int, int, int]:
    """Sum, min and max of a non-empty column, in one pass over its list when it is small."""
    if len(x) <= SMALL:
        v = x.tolist()
        return sum(v), min(v), max(v)
    return int(np.add.reduce(x)), int(np.minimum.reduce(x)), int(np.maximum.reduce(x))


class RequestTable:
    def __init__(self, arrival_ns: np.ndarray, prompt: np.ndarray, output: np.ndarray):
        n = len(arrival_ns)
        self.n = n
        self.arrival = arrival_ns.astype(np.float64)
        self.prompt = prompt.astype(np.int64)
        self.output = output.astype(np.int64)          # tokens to generate
        self.final = self.prompt + self.output         # tokens a request holds when it is done
        self.num_tokens = self.prompt.copy()           # prompt + generated so far
        self.computed = np.zeros(n, np.int64)          # tokens whose KV is computed
        self.pending = np.zeros(n, np.int64)           # tokens still to come from steps in flight (async)
        self.nblocks = np.zeros(n, np.int64)           # KV blocks held
        self.queued = np.full(n, UNSET)
        self.scheduled = np.full(n, UNSET)             # first time scheduled
        self.first_token = np.full(n, UNSET)
        self.last_token = np.full(n, UNSET)
        self.finished = np.full(n, UNSET)
        self.num_finished = 0                          # requests with a finish time so far
        self.preemptions = np.zeros(n, np.int64)
        self.prefix_hit = np.full(n, -1, np.int64)     # cached prompt tokens at first admission
        self.lost = np.zeros(n, np.int64)              # computed tokens dropped by preemptions
        self.cache_hits = np.zeros(n, np.int64)        # tokens found in the prefix cache, all admissions
        self.recalled = np.zeros(n, np.int64)          # of which loaded from a lower-tier pool
        self.kv_ready = np.zeros(n, np.int64)           # tokens whose KV arrives with the request (P/D)
        self.kv_written = np.zeros(n, np.int64)         # of this admission, tokens whose KV is in its blocks (P/D
                                                        # prefill instances: what a hand-over can carry)
        self.instance = np.full(n, -1, np.int64)       # instance that produced the output tokens
        self.prefill_instance = np.full(n, -1, np.int64)
        self.kv_transfer = np.full(n, UNSET)            # exposed P/D KV transfer time (ns)
        self.kv_bytes = np.zeros(n, np.float64)         # P/D KV bytes moved

    @property
    def recomputed(self) -> np.ndarray:
        """Tokens computed a second time because of preemption (net of what the cache gave back)."""
        resumed_hits = self.cache_hits - np.maximum(self.prefix_hit, 0)
        return np.maximum(self.lost - resumed_hits, 0)
