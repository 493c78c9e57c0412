"""A serving instance: one engine loop that schedules a batch, runs it, and repeats.

Like vLLM's engine core, an instance takes in new requests only between steps: a request that
arrives while a step runs is queued when that step ends (that is when vLLM stamps ``queued_ts``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..latency.iteration import BatchShape, IterationModel
from .events import EventLoop
from .requests import UNSET, RequestTable
from .scheduler import ScheduledStep, Scheduler


@dataclass
class StepLog:
    """One row per step, kept as Python lists while running and turned into arrays at the end."""

    start: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)
    comm: list[float] = field(default_factory=list)
    attention: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    prefill_tokens: list[int] = field(default_factory=list)
    prefill_seqs: list[int] = field(default_factory=list)
    decode_seqs: list[int] = field(default_factory=list)
    decode_kv_mean: list[float] = field(default_factory=list)
    kv_blocks_used: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    prompt_done: list[int] = field(default_factory=list)   # prompt tokens of requests whose first token came
    generated: list[int] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    prefix_queries: list[int] = field(default_factory=list)
    prefix_hits: list[int] = field(default_factory=list)
    itl: list[np.ndarray] = field(default_factory=list)


def batch_shape(step: ScheduledStep) -> BatchShape:
    s, h = step.num_new, step.computed_before
    pre = s > 1
    n_pre = int(np.count_nonzero(pre))
    n = len(s) - n_pre
    if n_pre:
        pc, kp = int(s[pre].sum()), int(h[pre].sum())
        kv = h[~pre]
    else:
        pc = kp = 0
        kv = h
    if n:
        kv_sum = int(kv.sum())
        return BatchShape(int(s.sum()), len(s), pc, kp, n, kv_sum / n, float(kv.min()), float(kv.max()))
    return BatchShape(int(s.sum()), len(s), pc, kp)


class Instance:
    def __init__(self, iid: int, loop: EventLoop, scheduler: Scheduler, latency: IterationModel,
                 reqs: RequestTable, on_finish=None):
        self.iid = iid
        self.loop = loop
        self.scheduler = scheduler
        self.latency = latency
        self.R = reqs
        self.busy = False
        self.inbox: list[tuple[int, object]] = []
        self.log = StepLog()
        self.on_finish = on_finish
        self._step: ScheduledStep | None = None

    # ---- arrivals ----------------------------------------------------------------------------------
    def submit(self, rid: int, token_ids) -> None:
        self.R.instance[rid] = self.iid
        if self.busy:
            self.inbox.append((rid, token_ids))
            return
        self._enqueue(rid, token_ids)
        self._start_step()

    def _enqueue(self, rid: int, token_ids) -> None:
        self.R.queued[rid] = self.loop.now
        self.scheduler.add(rid, token_ids)

    # ---- the engine loop ---------------------------------------------------------------------------
    def _start_step(self) -> None:
        now = self.loop.now
        step = self.scheduler.schedule(now)
        if step is None:
            self.busy = False
            return
        shape = batch_shape(step)
        t = self.latency.step(shape)
        log = self.log
        log.start.append(now)
        log.duration.append(t.total_ns)
        log.comm.append(t.comm_ns)
        log.attention.append(t.attention_ns)
        log.tokens.append(shape.num_tokens)
        log.seqs.append(shape.num_seqs)
        log.prefill_tokens.append(shape.prefill_tokens)
        log.prefill_seqs.append(shape.num_seqs - shape.num_decodes)
        log.decode_seqs.append(shape.num_decodes)
        log.decode_kv_mean.append(shape.decode_kv_mean)
        log.kv_blocks_used.append(self.scheduler.kv.pool.num_used)
        log.preempted.append(len(step.preempted))
        self.busy = True
        self._step = step
        self.loop.at(now + t.total_ns, self._end_step)

    def _end_step(self) -> None:
        now = self.loop.now
        R, step = self.R, self._step
        rids = step.rids
        produced = rids[R.computed[rids] >= R.num_tokens[rids]]
        ntok = R.num_tokens[produced] + 1
        R.num_tokens[produced] = ntok
        is_first = R.first_token[produced] == UNSET
        first = produced[is_first]
        R.first_token[first] = now
        log = self.log
        if len(first) < len(produced):
            log.itl.append(now - R.last_token[produced[~is_first]])
        R.last_token[produced] = now
        done = produced[ntok - R.prompt[produced] >= R.output[produced]]
        for rid in done.tolist():
            R.finished[rid] = now
            self.scheduler.finish(rid)
            if self.on_finish is not None:
                self.on_finish(rid)
        kv = self.scheduler.kv
        log.prompt_done.append(int(R.prompt[first].sum()))
        log.generated.append(len(produced))
        log.prefix_queries.append(kv.queries)
        log.prefix_hits.append(kv.hits)
        for rid, ids in self.inbox:
            self._enqueue(rid, ids)
        self.inbox.clear()
        log.running.append(len(self.scheduler.running))
        log.waiting.append(len(self.scheduler.waiting))
        self._start_step()
