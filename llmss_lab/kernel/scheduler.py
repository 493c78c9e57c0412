"""Continuous-batching schedulers. ``vllm_v1`` follows vLLM V1's ``Scheduler.schedule``.

One step, with a token budget of ``max_num_batched_tokens``:

1. Running requests, in admission order, each get ``min(tokens still to compute, budget left)``
   (capped by ``long_prefill_token_threshold``). A request that cannot get KV blocks preempts the
   most recently admitted running request (recompute: its blocks are freed, it rejoins the front
   of the waiting queue) until it fits or is itself the victim.
2. If nothing was preempted, waiting requests are admitted in order while the budget lasts and
   fewer than ``max_num_seqs`` run: prefix-cache lookup, then a chunk of the rest. Without
   chunked prefill a prompt that does not fit the budget waits. Admission never preempts.

Progress (``num_computed_tokens``) advances when a request is scheduled, as in vLLM
(``Scheduler._update_after_schedule`` in vllm/v1/core/sched/scheduler.py). So with pipeline stages a
prompt's next chunk joins the next micro-batch while the chunk before it is still in the pipeline, and
its first decode has nothing to compute until the last chunk's token is out (vLLM's ``num_new_tokens ==
0`` case for PP). vLLM's first pipelined V1 scheduler kept a prompt's chunks apart: ``Scheduler.schedule``
(then vllm/v1/core/scheduler.py) skipped a running request until its step's output was back, the
``scheduled_req_ids`` set of vllm-project/vllm PR #13064 (February 2025).

With ``lookahead`` (vLLM's async scheduling) a step is scheduled while the one before it runs: a
request counts the token that step will give it (``RequestTable.pending``, vLLM's output
placeholders), gets no further step once that token is its last, and holds its slot and blocks
until the step's output is in.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config.engine import EngineConfig
from .kv_cache import KVCacheManager
from .registry import Registry
from .requests import UNSET, RequestTable, col_sum, col_sum_nonzero

SCHEDULERS = Registry["Scheduler"]("scheduler")


@dataclass(slots=True)
class ScheduledStep:
    rids: np.ndarray              # scheduled requests, running order
    num_new: np.ndarray           # tokens computed for each this step
    computed_before: np.ndarray   # their history (tokens already in KV)
    preempted: list[int] = field(default_factory=list)
    recall_tokens: int = 0        # prefix tokens loaded from a lower-tier pool before the step
    recall_after: float = 0.0     # when the pool chunks holding them have all arrived there (ns)
    store: list[int] = field(default_factory=list)   # chunk keys written through to that pool when the step ends
    admission: np.ndarray | None = None   # (an instance that hands over) its requests' preemptions when planned


class Scheduler:
    """Holds the waiting queue and running list of one instance and builds its batches."""

    name = "base"

    def __init__(self, engine: EngineConfig, kv: KVCacheManager, reqs: RequestTable, max_model_len: int,
                 output_cap: int | None = None, lookahead: bool = False):
        self.engine = engine
        self.kv = kv
        self.R = reqs
        self.max_model_len = max_model_len
        self.budget = engine.max_num_batched_tokens or max_model_len
        self.max_seqs = engine.max_num_seqs or 1 << 30
        self.threshold = engine.long_prefill_token_threshold
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self._run_arr: np.ndarray | None = None
        self.lookahead = lookahead      # schedule while the previous step runs (async scheduling)
        # tokens a request holds when this instance is done with it (a prefill instance: prompt + 1)
        self.final = reqs.final if output_cap is None else reqs.prompt + np.minimum(reqs.output, output_cap)
        self.hands_over = output_cap is not None   # a P/D prefill instance: it keeps R.kv_written (step_done)
        self.on_handed_in: Callable[[int], None] | None = None   # told when a handed-over request is admitted
        self.unlogged: list[int] = []   # preempted while scheduling a step that ran nothing
        # the block size for the per-step array arithmetic, as 0-d arrays: numpy takes about twice as long
        # for an operation on a small array with a Python int, which it converts on every call
        self._bs, self._bs_less_1 = np.array(kv.block_size), np.array(kv.block_size - 1)

    def add(self, rid: int, token_ids, kv_ready: int = 0) -> None:
        """Queue a request; ``kv_ready`` tokens of it already have KV (handed over by a prefill
        instance), which admission allocates without computing."""
        self.kv.register(rid, token_ids, int(self.R.prompt[rid] + self.R.output[rid]))
        self.R.kv_ready[rid] = kv_ready
        self.waiting.append(rid)

    def running_array(self) -> np.ndarray:
        if self._run_arr is None:
            self._run_arr = np.fromiter(self.running, np.int64, len(self.running))
        return self._run_arr

    def finish(self, rid: int, keep_kv: bool = False) -> None:
        """The request leaves this instance. ``keep_kv`` (a P/D prefill instance handing it over): its blocks stay
        held until :meth:`release`, once the decode instance has taken it in, as vLLM's KV connectors hold them, and
        ``R.kv_ready`` says how many prompt tokens' KV they carry.

        A request preempted while the step computing its last token was in flight (pipeline stages, async
        scheduling) is finished by that step all the same, from the waiting queue or, re-admitted meanwhile, from the
        running list (pipeline stages only: with three or more a later step can admit it while its old one runs, and
        with two a plan that preempted everyone runs nothing, so the next stage boundary's plan can): vLLM V1 keeps a
        preempted request's in-flight output (``AsyncScheduler._update_request_with_output`` in
        vllm/v1/core/sched/async_scheduler.py skips only the prefix caching) and, in ``Scheduler.update_from_output``
        (vllm/v1/core/sched/scheduler.py), stops it and removes it from the waiting queue (its
        ``stopped_preempted_reqs``) or the running list. The KV the preemption dropped and no step has computed
        again, ``num_tokens - 1 - computed``, is never recomputed - unless the request is handed over: a prefill
        instance hands over only the KV it still holds, ``R.kv_written`` tokens (none from the waiting queue;
        re-admitted, what prefix hits gave it back, not the chunks planned since, still in the pipeline with their
        KV unwritten), and the decode instance computes the rest of the prompt but its last token (which it
        computes anyway). vLLM does the same from the waiting queue: ``Scheduler._connector_finished`` passes the
        request's block ids to ``NixlConnector.request_finished``
        (vllm/distributed/kv_transfer/kv_connector/v1/nixl_connector.py), which for a preempted request are none,
        so ``delay_free_blocks`` is False, nothing is held for the decode side and ``remote_block_ids`` is empty.
        (vLLM's decode side has no path for that: its ``get_num_new_matched_tokens`` counts the whole prompt as
        remote while ``update_state_after_alloc`` asserts there is nothing to load without remote blocks; here the
        decode instance prefills what it lacks.)"""
        R = self.R
        if rid in self.running:
            self.running.remove(rid)
        else:
            self.waiting.remove(rid)
        never = max(int(R.num_tokens[rid] - 1 - R.computed[rid]), 0)
        if keep_kv:
            held = min(int(R.kv_written[rid]), int(R.prompt[rid]))
            R.kv_ready[rid] = held
            never -= max(int(R.prompt[rid]) - 1 - held, 0)   # the decode instance recomputes these
            keep_kv = held > 0   # nothing held: nothing to wait for
        R.lost[rid] -= never
        self._run_arr = None
        if not keep_kv:
            self.kv.forget(rid)
        self.R.nblocks[rid] = 0

    def step_done(self, step: ScheduledStep) -> None:
        """A step ended: its chunks' KV is in their requests' blocks now, ``R.computed`` having counted it since
        the step was planned. Not for a request preempted since (its blocks went; re-admitted, it has new ones)."""
        if step.admission is None:
            return
        R = self.R
        same = step.admission == R.preemptions[step.rids]
        rids, end = step.rids[same], (step.computed_before + step.num_new)[same]
        R.kv_written[rids] = np.maximum(R.kv_written[rids], end)

    def release(self, rid: int) -> None:
        """Free the blocks a finished request kept (``finish(rid, keep_kv=True)``)."""
        self.kv.forget(rid)

    def schedule(self, now: float) -> ScheduledStep | None:
        raise NotImplementedError


@SCHEDULERS.register("vllm_v1")
class VLLMV1Scheduler(Scheduler):
    def schedule(self, now: float) -> ScheduledStep | None:
        R, kv = self.R, self.kv
        budget = self.budget
        rids: list[int] = []      # requests scheduled one by one (admission, the preemption path)
        news: list[int] = []
        preempted: list[int] = []
        ra = na = before = after = None   # running requests scheduled all at once, as arrays

        # ---- phase A: running requests --------------------------------------------------------
        if self.running:
            run = self.running_array()
            comp = R.computed[run]
            if self.lookahead:
                ahead = R.num_tokens[run] + R.pending[run]   # tokens once the step in flight is out
                need = ahead - comp
                need[ahead >= self.final[run]] = 0
            else:
                need = R.num_tokens[run] - comp
            if self.threshold:
                np.minimum(need, self.threshold, out=need)
            total, everyone = col_sum_nonzero(need)
            if total <= budget:   # the usual case: everyone gets all it needs
                sched = need
            else:                 # in running order until the budget is spent
                sched = np.minimum(np.maximum(budget - (need.cumsum() - need), 0), need)
                total = budget
                everyone = np.count_nonzero(sched) == len(sched)
            upto = comp + sched   # tokens computed once this step has run
            grow = (upto + self._bs_less_1) // self._bs - R.nblocks[run]
            if not everyone:
                mask = sched > 0
                grow[~mask] = 0
            more_blocks = col_sum(grow)
            if more_blocks <= kv.pool.num_free:
                if more_blocks:  # everyone fits: hand out blocks in running order, taken from the pool at once
                    idx = grow.nonzero()[0]
                    rows, ks = run[idx], grow[idx]
                    new, blocks, end = kv.pool.allocate(more_blocks), kv.blocks, 0
                    for rid, k in zip(rows.tolist(), ks.tolist()):
                        blocks[rid].extend(new[end:end + k])
                        end += k
                    R.nblocks[rows] += ks
                ra, na, before, after = ((run, sched, comp, upto) if everyone else
                                         (run[mask], sched[mask], comp[mask], upto[mask]))
                budget -= total
                if kv.prefix_caching:   # indexed as allocated, as vLLM does: a request admitted below can hit them
                    idx = (after // self._bs > before // self._bs).nonzero()[0]
                    for rid, c in zip(ra[idx].tolist(), after[idx].tolist()):
                        kv.cache_full_blocks(rid, c, now)
            else:
                budget = self._running_with_preemption(now, rids, news, preempted)

        # ---- phase B: waiting requests ----------------------------------------------------------
        recall, recall_after = 0, 0.0
        if not preempted and self.waiting:
            budget, recall, recall_after = self._admit(now, budget, rids, news)

        if rids:
            more, more_new = np.array(rids, np.int64), np.array(news, np.int64)
            more_before = R.computed[more]
            if ra is None:
                ra, na, before, after = more, more_new, more_before, more_before + more_new
            else:
                ra = np.concatenate((ra, more))
                na = np.concatenate((na, more_new))
                before = np.concatenate((before, more_before))
                after = np.concatenate((after, more_before + more_new))
        if ra is None or not len(ra):
            # a request that preempted itself, with nothing else to run (a prefill instance whose blocks are held
            # for hand-overs): the preemption happened, as vLLM's stats count it, so the next step logs it
            self.unlogged.extend(preempted)
            return None
        if self.unlogged:
            preempted, self.unlogged = self.unlogged + preempted, []
        if self.lookahead:   # the step will give these a token
            R.pending[ra[after >= R.num_tokens[ra] + R.pending[ra]]] += 1
        R.computed[ra] = after
        return ScheduledStep(ra, na, before, preempted, recall, recall_after, kv.take_store(),
                             R.preemptions[ra] if self.hands_over else None)

    def _running_with_preemption(self, now: float, rids: list[int], news: list[int], preempted: list[int]) -> int:
        """The exact sequential loop, used when KV blocks run short."""
        R, kv = self.R, self.kv
        budget = self.budget
        i = 0
        while i < len(self.running) and budget > 0:
            rid = self.running[i]
            n = int(R.num_tokens[rid] + R.pending[rid] - R.computed[rid])
            if R.pending[rid] and R.num_tokens[rid] + R.pending[rid] >= self.final[rid]:
                n = 0
            if self.threshold:
                n = min(n, self.threshold)
            n = min(n, budget)
            if n <= 0:
                i += 1
                continue
            ok = True
            while not kv.allocate(rid, int(R.computed[rid]) + n):
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim == rid:
                    ok = False
                    break
            if not ok:
                break
            R.nblocks[rid] = len(kv.blocks[rid])
            kv.cache_full_blocks(rid, int(R.computed[rid]) + n, now)
            rids.append(rid)
            news.append(n)
            budget -= n
            i += 1
        self._run_arr = None
        return budget

    def _preempt(self, rid: int) -> None:
        R = self.R
        self.kv.free(rid)
        R.nblocks[rid] = 0
        R.lost[rid] += R.computed[rid]
        R.computed[rid] = 0
        R.kv_written[rid] = 0
        R.preemptions[rid] += 1
        self.waiting.appendleft(rid)

    def _admit(self, now: float, budget: int, rids: list[int], news: list[int]) -> tuple[int, int, float]:
        """Admit waiting requests; returns the budget left, the tokens recalled from a lower pool and
        when the pool has them all."""
        R, kv, bs = self.R, self.kv, self.kv.block_size
        eng = self.engine
        recall, recall_after = 0, 0.0
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            rid = self.waiting[0]
            total = int(R.num_tokens[rid])
            ready = int(R.kv_ready[rid])
            hits = [] if ready else kv.lookup(rid, total)
            n_hit = min(ready, total - 1) if ready else len(hits) * bs  # last token recomputed for logits
            extra, landed = (0, 0.0) if ready else kv.lower_hit_tokens(rid, total, n_hit)
            n_npu = n_hit
            n_hit += extra
            n = total - n_hit
            if self.threshold:   # before the no-chunking check, as vLLM: a capped prompt may fit the budget
                n = min(n, self.threshold)
            if not eng.enable_chunked_prefill and n > budget:
                break
            n = min(n, budget)
            if eng.reserve_full_isl and not kv.can_allocate(rid, total, hits):
                break
            if not kv.allocate(rid, n_hit + n, hits):
                break
            self.waiting.popleft()
            self.running.append(rid)
            self._run_arr = None
            R.nblocks[rid] = len(kv.blocks[rid])
            R.computed[rid] = n_hit
            R.kv_written[rid] = n_npu   # KV recalled from a lower pool arrives with the step (step_done)
            R.kv_ready[rid] = 0
            if ready and self.on_handed_in is not None:
                self.on_handed_in(rid)
            kv.cache_full_blocks(rid, n_hit + n, now)   # at allocation, as vLLM: the next admitted can hit them
            if not ready:
                if R.prefix_hit[rid] < 0:   # hit rates count a request once, as vLLM's (a resumed one hits its own KV)
                    R.prefix_hit[rid] = n_hit
                    kv.queries += total
                    kv.hits += n_npu
                    if kv.lower is not None:
                        kv.lower.count(now, total, extra)
                recall += extra
                recall_after = max(recall_after, landed)
                R.recalled[rid] += extra
                R.cache_hits[rid] += n_hit
            if R.scheduled[rid] == UNSET:
                R.scheduled[rid] = now
            rids.append(rid)
            news.append(n)
            budget -= n
        return budget, recall, recall_after


@SCHEDULERS.register("static")
class StaticBatchScheduler(VLLMV1Scheduler):
    """Request-level (static) batching, as servers batched before continuous batching (Orca, OSDI '22): a
    batch is drawn from the waiting queue, up to ``max_num_seqs`` requests, only once the one before it has
    finished; a request that finishes early leaves its slot empty until then, and arrivals wait for the
    next batch. Steps are otherwise ``vllm_v1``'s (token budget, chunked prefill, preemption), so the two
    differ only in when a request may join. For teaching and what-ifs: no vLLM release batches this way."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch: set[int] = set()   # members of the batch being served that have not been admitted yet

    def _admit(self, now: float, budget: int, rids: list[int], news: list[int]) -> tuple[int, int, float]:
        if not self.running and not self.batch:   # the last batch is done: the next is whoever waits now
            self.batch = set(itertools.islice(self.waiting, self.max_seqs))
        # the batch's members lead the queue (arrivals join at its back, preempted members at its front),
        # so admitting no more than them in order admits no one else
        limit = self.max_seqs
        self.max_seqs = min(limit, len(self.running) + len(self.batch))
        try:
            out = super()._admit(now, budget, rids, news)
        finally:
            self.max_seqs = limit
        self.batch.difference_update(rids)
        return out

    def _preempt(self, rid: int) -> None:
        super()._preempt(rid)
        self.batch.add(rid)   # still this batch's: it resumes before anyone new joins

    def finish(self, rid: int, keep_kv: bool = False) -> None:
        super().finish(rid, keep_kv)
        self.batch.discard(rid)   # preempted while its last token was in flight: done all the same (above)
