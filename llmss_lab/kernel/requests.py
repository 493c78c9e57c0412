"""Request state for a whole run as columns (numpy arrays indexed by request id).

Columns instead of objects let the hot path update every running request with a handful of
array operations per step.
"""
from __future__ import annotations

import numpy as np

UNSET = -1.0
# reductions of the small per-step column slices, without ndarray.sum/min/max's Python-level wrappers
col_sum, col_min, col_max = np.add.reduce, np.minimum.reduce, np.maximum.reduce


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
        self.preemptions = np.zeros(n, np.int64)
        self.prefix_hit = np.full(n, -1, np.int64)     # cached prompt tokens at first admission
        self.lost = np.zeros(n, np.int64)              # computed tokens dropped by preemptions
        self.cache_hits = np.zeros(n, np.int64)        # tokens found in the prefix cache, all admissions
        self.recalled = np.zeros(n, np.int64)          # of which loaded from a lower-tier pool
        self.kv_ready = np.zeros(n, np.int64)           # tokens whose KV arrives with the request (P/D)
        self.instance = np.full(n, -1, np.int64)       # instance that produced the output tokens
        self.prefill_instance = np.full(n, -1, np.int64)
        self.kv_transfer = np.full(n, UNSET)            # exposed P/D KV transfer time (ns)
        self.kv_bytes = np.zeros(n, np.float64)         # P/D KV bytes moved

    @property
    def recomputed(self) -> np.ndarray:
        """Tokens computed a second time because of preemption (net of what the cache gave back)."""
        resumed_hits = self.cache_hits - np.maximum(self.prefix_hit, 0)
        return np.maximum(self.lost - resumed_hits, 0)
