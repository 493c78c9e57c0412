"""Serving instances and the engines that step them.

An :class:`Instance` is one model replica: a scheduler over its own KV cache, a latency model and
a step log. An :class:`Engine` drives instances through steps: one instance on its own, or the
members of a data-parallel group in lockstep (every member runs each step; an idle member runs a
one-token dummy; all run at the group's largest token count and the step lasts as long as the
slowest member), keeping up to ``pp`` steps in flight when the model is pipelined.

Like vLLM's engine core, an instance takes in new requests only between steps: a request that
arrives while a step runs is queued when that step ends (that is when vLLM stamps ``queued_ts``).
"""
from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np

from ..latency.iteration import BatchShape, IterationModel, StepTime
from .events import EventLoop
from .moe import Gate, MoeRouting
from .requests import UNSET, RequestTable, col_max, col_stats, col_sum
from .scheduler import ScheduledStep, Scheduler
from .tiers import NetPath, PrefixPool, Tier

DUMMY = BatchShape(1, 1, 0, 0, 1, 1.0, 1.0, 1.0)   # what an idle data-parallel member computes
IDLE = BatchShape(0, 0)                            # and what it serves: no request
IDLE_STEP = ScheduledStep(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
Read = tuple[Tier, float, PrefixPool | None]   # a step's read from a tier; the pool, when over the network


def merge_counts(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``values`` with the summed ``counts`` of each."""
    distinct, where = np.unique(values, return_inverse=True)
    return distinct, np.bincount(where, weights=counts, minlength=len(distinct)).astype(np.int64)


class GapTally:
    """Inter-token gaps (ns) as (gap, count) pairs.

    The requests of a decode step mostly share one gap, the time since the step before, so a run's
    millions of token gaps fold into about one pair per step: memory grows with steps, not tokens.
    Gaps are folded every ``FOLD`` steps, off the step loop, and merged into distinct pairs at the end.
    """

    FOLD = 1024

    def __init__(self) -> None:
        self._fresh: list[np.ndarray] = []
        self._folded: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, gaps: np.ndarray) -> None:
        if len(gaps):
            self._fresh.append(gaps)
            if len(self._fresh) >= self.FOLD:
                self._fold()

    def _fold(self) -> None:
        """A step whose gaps are all one value becomes one pair at the cost of a min and a max;
        only the few mixed steps are sorted."""
        if not self._fresh:
            return
        lens = np.fromiter(map(len, self._fresh), np.int64, len(self._fresh))
        v = np.concatenate(self._fresh)
        self._fresh = []
        starts = np.cumsum(lens) - lens
        lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
        same = lo == hi
        mixed_v, mixed_c = np.unique(v[np.repeat(~same, lens)], return_counts=True)
        self._folded.append((np.concatenate([lo[same], mixed_v]), np.concatenate([lens[same], mixed_c])))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct gaps and how many token gaps had each."""
        self._fold()
        if not self._folded:
            return np.zeros(0), np.zeros(0, np.int64)
        return merge_counts(np.concatenate([v for v, _ in self._folded]),
                            np.concatenate([c for _, c in self._folded]))


def _ints() -> array:
    return array("q")


def _floats() -> array:
    return array("d")


# a step's counts that never exceed the instance's KV capacity in tokens or the run's number of requests: the
# tokens and sequences of a batch, the KV it holds and attends to, the requests running, waiting or preempted
BOUNDED_COUNTS = ("tokens", "seqs", "prefill_tokens", "prefill_seqs", "decode_seqs", "prefill_history",
                  "kv_blocks_used", "kv_blocks_holding", "running", "waiting", "prompt_done", "generated",
                  "preempted")
INT32_MAX = 2**31 - 1


@dataclass
class StepLog:
    """One row per step, appended to typed arrays (8 bytes a value, where a list of Python numbers
    takes about 40; 4 for the bounded counts of :meth:`bounded_by`) and read as numpy arrays at the end."""

    start: array = field(default_factory=_floats)
    duration: array = field(default_factory=_floats)
    comm: array = field(default_factory=_floats)
    p2p: array = field(default_factory=_floats)               # pipeline stage hand-overs (ns)
    attention: array = field(default_factory=_floats)
    tokens: array = field(default_factory=_ints)
    seqs: array = field(default_factory=_ints)
    prefill_tokens: array = field(default_factory=_ints)
    prefill_seqs: array = field(default_factory=_ints)
    decode_seqs: array = field(default_factory=_ints)
    decode_kv_mean: array = field(default_factory=_floats)
    decode_kv_min: array = field(default_factory=_floats)
    decode_kv_max: array = field(default_factory=_floats)
    prefill_history: array = field(default_factory=_ints)
    prefill_rms: array = field(default_factory=_floats)
    kv_blocks_used: array = field(default_factory=_ints)
    kv_blocks_holding: array = field(default_factory=_ints)   # in use or cached
    busy: array = field(default_factory=_floats)              # NPU time: the stages less waits on PIM (ns)
    wire_bytes: array = field(default_factory=_floats)
    recall: array = field(default_factory=_floats)            # wait for a lower-tier prefix recall (ns)
    tier_bytes: array = field(default_factory=_floats)        # bytes read from / written to CPU or CXL
    pool_link_bytes: array = field(default_factory=_floats)   # of which to / from a pool on another node
    pim_busy: array = field(default_factory=_floats)          # PIM channel-time of the step (ns), if PIM
    running: array = field(default_factory=_ints)
    waiting: array = field(default_factory=_ints)
    prompt_done: array = field(default_factory=_ints)   # prompt tokens of requests whose first token came
    generated: array = field(default_factory=_ints)
    preempted: array = field(default_factory=_ints)
    prefix_queries: array = field(default_factory=_ints)
    prefix_hits: array = field(default_factory=_ints)
    itl: GapTally = field(default_factory=GapTally)

    @classmethod
    def bounded_by(cls, most: int) -> StepLog:
        """A log whose :data:`BOUNDED_COUNTS` are int32 when ``most`` (the KV capacity in tokens, or the number of
        requests if larger) fits in one: a 3-day sparse run's 2.8 M steps log 146 MB less. The cumulative
        prefix-cache counters keep int64: they grow with the run."""
        log = cls()
        if most <= INT32_MAX:
            for key in BOUNDED_COUNTS:
                setattr(log, key, array("i"))
        return log

    def drop_running(self) -> None:
        """Forget the steps still running (launched, logged, not completed) when a run stops early: steps of an
        instance complete in the order they were launched, and the columns written at completion (``running``
        among them) end with the last completed one."""
        done = len(self.running)
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, array) and len(column) > done:
                del column[done:]


def batch_shape(step: ScheduledStep) -> BatchShape:
    s, h = step.num_new, step.computed_before
    if col_max(s) > 1:   # prefill chunks in the batch
        pre = s > 1
        chunks = s[pre]
        n_pre = len(chunks)
        pc, kp = col_sum(chunks), col_sum(h[pre])
        rms = float(np.sqrt(np.dot(chunks, chunks)))
        kv = h[~pre]
    else:                # decodes only
        n_pre = pc = kp = 0
        rms = 0.0
        kv = h
    n = len(s) - n_pre
    tokens = pc + n
    if n:
        kv_sum, kv_min, kv_max = col_stats(kv)
        return BatchShape(tokens, len(s), pc, kp, n, kv_sum / n, float(kv_min), float(kv_max), rms)
    return BatchShape(tokens, len(s), pc, kp, prefill_rms=rms)


@dataclass(slots=True)
class Planned:
    step: ScheduledStep
    shape: BatchShape
    row: int = -1   # its row in the step log, once launched


class Instance:
    """One model replica. ``role`` is ``None``, ``"prefill"`` or ``"decode"`` (disaggregated serving)."""

    def __init__(self, iid: int, name: str, scheduler: Scheduler, latency: IterationModel,
                 reqs: RequestTable, role: str | None = None, recall_bytes_per_token: float = 0.0,
                 weight_stream: list[tuple[Tier, float]] | None = None):
        self.iid = iid
        self.recall_bytes_per_token = recall_bytes_per_token   # KV of one token, all ranks
        self.weight_stream = weight_stream or []               # (tier, bytes read from it every step)
        self.pool_path: NetPath | None = None   # the network to a prefix pool in another node's memory
        self.name = name
        self.scheduler = scheduler
        self.latency = latency
        self.R = reqs
        self.role = role
        self.inbox: list[tuple[int, object, int]] = []
        self.to_pull: list[tuple[int, object, int, Callable[[float], float]]] = []   # handed over, not yet seen
        self.loading: list[tuple[int, object, int, float]] = []    # KV being read: (..., when the read ends)
        kv = scheduler.kv
        self.log = StepLog.bounded_by(max(kv.pool.num_blocks * kv.block_size, reqs.n))
        self.engine: Engine | None = None

    # ---- load, as routers see it -------------------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting) + len(self.inbox) + len(self.to_pull) + len(self.loading)

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    # ---- arrivals ----------------------------------------------------------------------------------
    def submit(self, rid: int, token_ids, kv_ready: int = 0, wake: bool = True) -> None:
        """A new request, or (``kv_ready`` > 0) one whose first ``kv_ready`` tokens' KV arrives with it.
        ``wake=False`` leaves waking the engine to the caller (requests that arrive together)."""
        self.R.instance[rid] = self.iid
        self.inbox.append((rid, token_ids, kv_ready))
        if wake:
            self.engine.wake()

    def pull(self, rid: int, token_ids, kv_ready: int, fetch: Callable[[float], float]) -> None:
        """A handed-over request whose KV this instance reads itself, as vLLM V1's asynchronous KV
        connectors do: it is seen at a step boundary, ``fetch(now)`` starts the read there and returns
        when the read ends, and the request is scheduled from the first later boundary after that."""
        self.R.instance[rid] = self.iid
        self.to_pull.append((rid, token_ids, kv_ready, fetch))
        self.engine.wake()

    def release(self, rid: int) -> None:
        """A decode instance took in a request this (prefill) instance handed over: its blocks are free now."""
        self.scheduler.release(rid)
        self.engine.wake()

    def take_inbox(self, now: float) -> None:
        if self.loading:    # reads started at an earlier boundary and finished by now join the queue
            pending = []
            for rid, ids, ready, until in self.loading:
                if until <= now:
                    self.scheduler.add(rid, ids, ready)
                else:
                    pending.append((rid, ids, ready, until))
            self.loading = pending
        for rid, ids, ready, fetch in self.to_pull:
            until = fetch(now)
            self.loading.append((rid, ids, ready, until))
            self.engine.loop.at(until, self.engine.wake)   # an idle engine wakes when the read ends
        self.to_pull.clear()
        for rid, ids, ready in self.inbox:
            if self.R.queued[rid] == UNSET:
                self.R.queued[rid] = now
            self.scheduler.add(rid, ids, ready)
        self.inbox.clear()

    # ---- steps -------------------------------------------------------------------------------------
    def plan(self, now: float) -> Planned | None:
        if self.inbox or self.to_pull or self.loading:
            self.take_inbox(now)
        step = self.scheduler.schedule(now)
        return None if step is None else Planned(step, batch_shape(step))

    def record(self, p: Planned, start: float, t: StepTime, duration: float, recall_ns: float,
               tier_bytes: float, pool_link_bytes: float) -> None:
        log, shape = self.log, p.shape
        p.row = len(log.start)
        log.start.append(start)
        log.duration.append(duration)
        log.busy.append(sum(t.stages) - t.npu_wait_ns)
        log.wire_bytes.append(t.wire_bytes)
        log.recall.append(recall_ns)
        log.tier_bytes.append(tier_bytes)
        log.pool_link_bytes.append(pool_link_bytes)
        log.kv_blocks_holding.append(self.scheduler.kv.pool.num_holding)
        log.comm.append(t.comm_ns)
        log.p2p.append(t.p2p_ns * (len(t.stages) - 1))
        log.attention.append(t.attention_ns)
        log.tokens.append(shape.num_tokens)
        log.seqs.append(shape.num_seqs)
        log.prefill_tokens.append(shape.prefill_tokens)
        log.prefill_seqs.append(shape.num_seqs - shape.num_decodes)
        log.decode_seqs.append(shape.num_decodes)
        log.decode_kv_mean.append(shape.decode_kv_mean)
        log.decode_kv_min.append(shape.decode_kv_min)
        log.decode_kv_max.append(shape.decode_kv_max)
        log.prefill_history.append(shape.prefill_history)
        log.prefill_rms.append(shape.prefill_rms)
        log.kv_blocks_used.append(self.scheduler.kv.pool.num_used)
        log.preempted.append(len(p.step.preempted))

    def complete(self, p: Planned, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of a finished step: returns (requests that got their first token, requests done)."""
        R = self.R
        rids = p.step.rids
        self.scheduler.step_done(p.step)
        # a token comes out for a request whose chunk in *this* step reached its end; with PP a later
        # micro-batch may already have advanced R.computed, so the step's own range decides
        produced = rids[p.step.computed_before + p.step.num_new >= R.num_tokens[rids]]
        if self.role == "prefill":
            # a step of a request this instance has handed over already gives nothing (vLLM's update_from_output
            # skips finished requests): with pipeline stages a request preempted while its prompt's last step runs
            # can be re-admitted and scheduled again before that step hands it over (Scheduler.finish)
            produced = produced[R.prefill_instance[produced] < 0]
        if self.scheduler.lookahead:
            R.pending[produced] -= 1
        ntok = R.num_tokens[produced] + 1
        R.num_tokens[produced] = ntok
        is_first = R.first_token[produced] == UNSET
        if np.count_nonzero(is_first):
            first, later = produced[is_first], produced[~is_first]
        else:   # the usual decode step
            first, later = produced[:0], produced
        log = self.log
        if self.role == "prefill":
            done = first  # handed over to a decode instance, which streams the first token
            R.prefill_instance[done] = self.iid
        else:
            if len(first):
                R.first_token[first] = now
            if len(later):
                log.itl.add(now - R.last_token[later])
            R.last_token[produced] = now
            done = produced[ntok >= R.final[produced]]
        keep = self.role == "prefill"   # the KV stays until the decode instance takes the request in
        for rid in done.tolist():
            self.scheduler.finish(rid, keep)
        kv = self.scheduler.kv
        log.prompt_done.append(col_sum(R.prompt[first]) if len(first) else 0)
        log.generated.append(len(produced))
        log.prefix_queries.append(kv.queries)
        log.prefix_hits.append(kv.hits)
        log.running.append(len(self.scheduler.running))
        log.waiting.append(self.num_waiting)
        return first, done


class Engine:
    """Steps one instance, or a data-parallel group in lockstep, with up to ``pp`` steps in flight."""

    def __init__(self, loop: EventLoop, members: list[Instance], pp: int = 1, gate: Gate | None = None,
                 on_step_done: Callable[[Instance, np.ndarray, np.ndarray, float, float], None] | None = None):
        self.loop = loop
        self.members = members
        self.pp = pp
        # steps in flight: one per pipeline stage, or (async scheduling) one queued behind the running one
        self.depth = 2 if members[0].scheduler.lookahead else pp
        self.gate = gate
        self.on_step_done = on_step_done
        self.inflight = 0
        self.stage_free = [0.0] * pp
        # token-expert pairs per routed layer group [G, E], summed; a gate's groups stand for the same layers
        # every step, so they are expanded to layers once, when read (expert_load)
        self._pairs: np.ndarray | None = None
        self._pairs_repeat = 1
        # each step in flight, oldest first (an engine's steps complete in launch order): its expert routing,
        # counted when it completes, and its reads from CPU / CXL memory, taken back if it never does
        self._flight: deque[tuple[MoeRouting | None, list[Read]]] = deque()
        self.offload = getattr(members[0].latency, "pim", None) is not None   # decode attention on PIM
        for m in members:
            m.engine = self

    @property
    def expert_load(self) -> np.ndarray | None:
        """[layers, E] token-expert pairs over the run (None without MoE)."""
        if self._pairs is None:
            return None
        return np.repeat(self._pairs, self._pairs_repeat, axis=0)[:self.gate.layers]

    @property
    def name(self) -> str:
        return self.members[0].name if len(self.members) == 1 else "+".join(m.name for m in self.members)

    def wake(self) -> None:
        """News from outside (an arrival, a hand-over, freed blocks, a finished KV read) starts an idle
        engine. A busy one takes it in at its next step boundary: vLLM's engine core, having scheduled
        all it could, waits on its oldest step before it reads its input queue again, so with async
        scheduling or pipeline stages a step is never planned mid-step around one late arrival."""
        if self.inflight == 0:
            self.poke()

    def poke(self) -> None:
        """At a step boundary: schedule steps while fewer than ``depth`` are in flight; with pipeline
        stages, only when the first stage is free."""
        now = self.loop.now
        while self.inflight < self.depth and (self.pp == 1 or self.stage_free[0] <= now):
            if not self._launch(now):
                return

    def _launch(self, now: float) -> bool:
        """Schedule one step now; it runs once the first stage is free. False if there is nothing to run."""
        plans = [m.plan(now) for m in self.members]
        if not any(plans):
            return False
        begin = max(now, self.stage_free[0])
        shapes = [p.shape if p else DUMMY for p in plans]
        T = max(s.num_tokens for s in shapes)
        lockstep = len(self.members) > 1
        if lockstep:   # a member with nothing to run steps too, on a dummy batch: its GPUs are busy, logged as such
            plans = [p or Planned(IDLE_STEP, IDLE) for p in plans]
        group_tokens = T * len(self.members)
        routing = self.gate.route(group_tokens) if self.gate is not None else None
        if self.offload:   # PIM offload: a lone instance, one stage
            times = [_offloaded(self.members[0].latency, plans[0].step)]
        else:
            times = [m.latency.step(s, T if lockstep else None, routing, group_tokens)
                     for m, s in zip(self.members, shapes)]
        t = times[0] if len(times) == 1 else _slowest(times)
        # KV recalled from a lower-tier prefix pool must arrive before the step computes on it, and can
        # leave the pool only once its write-through has arrived there
        clock = begin
        moved = [0.0] * len(self.members)
        remote = [0.0] * len(self.members)
        reads: list[Read] = []
        for i, (m, p) in enumerate(zip(self.members, plans)):
            if p is not None and p.step.recall_tokens:
                nbytes = p.step.recall_tokens * m.recall_bytes_per_token
                pool = m.scheduler.kv.lower
                clock = max(clock, pool.recall(max(now, p.step.recall_after), nbytes, m.pool_path))
                moved[i] += nbytes
                reads.append((pool.tier, nbytes, pool if m.pool_path is not None else None))
                if m.pool_path is not None:
                    remote[i] += nbytes
        recall_ns = clock - begin
        # weights kept in CPU or CXL memory stream in during the step, layer ahead of compute
        streamed = begin
        for i, m in enumerate(self.members):
            for tier, nbytes in m.weight_stream:
                streamed = max(streamed, tier.move(clock, nbytes))
                moved[i] += nbytes
                reads.append((tier, nbytes, None))
        # walk the pipeline: each stage starts when the batch reaches it and the stage is free
        for s, dur in enumerate(t.stages):
            start = max(clock, self.stage_free[s])
            clock = start + dur
            self.stage_free[s] = clock
            if s < len(t.stages) - 1:
                clock += t.p2p_ns
        end = max(clock, streamed)
        if self.pp == 1:   # a lone stage is busy until the step ends, weight stream included
            self.stage_free[0] = end
        for m, p, b, r in zip(self.members, plans, moved, remote):
            if p is not None:
                m.record(p, begin, t, end - begin, recall_ns, b, r)
                if self.offload:
                    m.log.pim_busy.append(t.pim_busy_ns)
        self.inflight += 1
        self._flight.append((routing, reads))
        if self.pp > 1:
            self.loop.at(self.stage_free[0], self.poke)
        self.loop.at(end, lambda: self._done(plans, begin))
        return True

    def _done(self, plans: list[Planned | None], start: float) -> None:
        now = self.loop.now
        self.inflight -= 1
        routing, _ = self._flight.popleft()
        if routing is not None:
            if self._pairs is None:
                self._pairs, self._pairs_repeat = routing.expert_tokens.copy(), routing.repeat
            else:
                self._pairs += routing.expert_tokens
        for m, p in zip(self.members, plans):
            if p is None:
                continue
            if p.step.store:   # the chunks this step computed reach the prefix pool now, not when scheduled
                written = m.scheduler.kv.lower.store(now, p.step.store, m.pool_path)
                m.log.tier_bytes[p.row] += written
                if m.pool_path is not None:
                    m.log.pool_link_bytes[p.row] += written
            first, done = m.complete(p, now)
            if self.on_step_done is not None:
                self.on_step_done(m, first, done, start, now)
        self.poke()

    def drop_running(self) -> None:
        """Forget the steps still running when a run stops early, as their members' logs do
        (:meth:`StepLog.drop_running`): their routing was never counted, and what they read from CPU or CXL
        memory at their launch is taken back from the tiers' and pools' counters."""
        for _, reads in self._flight:
            for tier, nbytes, remote in reads:
                tier.take_back(nbytes)
                if remote is not None:
                    remote.link_read -= nbytes
        self._flight.clear()


def _split(step: ScheduledStep) -> list[ScheduledStep]:
    """Two sub-batches with balanced new tokens: longest first, each to the lighter half."""
    order = np.argsort(-step.num_new, kind="stable")
    new = step.num_new.tolist()   # a list: indexing an array item by item costs several times more
    halves: list[list[int]] = [[], []]
    load = [0, 0]
    for i in order.tolist():
        k = 0 if load[0] <= load[1] else 1
        halves[k].append(i)
        load[k] += new[i]
    return [ScheduledStep(step.rids[h], step.num_new[h], step.computed_before[h]) for h in map(np.array, halves)]


def _offloaded(latency: IterationModel, step: ScheduledStep) -> StepTime:
    parts = _split(step) if latency.sub_batches and len(step.rids) > 1 else [step]
    halves = []
    for part in parts:
        decode = part.num_new == 1
        halves.append((batch_shape(part), part.computed_before[decode] + 1))
    return latency.offloaded_step(halves)


def _slowest(times: list[StepTime]) -> StepTime:
    """Lockstep: every stage lasts as long as the slowest member's."""
    stages = tuple(max(s) for s in zip(*(t.stages for t in times)))
    worst = max(times, key=lambda t: t.total_ns)
    return StepTime(worst.compute_ns, worst.comm_ns, worst.attention_ns, worst.moe_ns, stages,
                    max(t.p2p_ns for t in times), max(t.wire_bytes for t in times))
