"""Invariants of the kernel's entities under small, nasty generated clusters (hypothesis, derandomised).

tests/test_invariants.py checks one instance's results and tests/test_scenario_invariants.py whole runs
through the public API. This file watches the kernel while it runs: after every step an instance plans and
every step it completes, its KV block pool is checked block by block (free + in use == total, each in-use
block's reference count is the number of requests holding it, no block held twice by one request, the prefix
index points at blocks that hold that prefix), and the requests against it (running ones hold the blocks
their computed tokens need, waiting ones hold none). Each step's scheduled tokens are tallied per request and
per instance, so a run is checked request by request: prompt tokens computed == prompt - prefix hits +
recomputation, prefilled on one prefill instance and decoded on one decode instance in a P/D split, KV bytes
moved == its KV size; prefix pools stay within their size and the tiers' byte counts add up to the steps';
MoE gates conserve token-expert pairs. A second, slower test runs generated scenarios through the public API
with the reference profiles (PIM offload, power) and checks the Datasets' totals against the per-request table.
"""
from __future__ import annotations

import contextlib
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

from llmss_lab.config.engine import EngineConfig
from llmss_lab.errors import LlmssError
from llmss_lab.kernel import simulator
from llmss_lab.kernel.instance import Instance
from llmss_lab.kernel.moe import GATES
from llmss_lab.kernel.router import ROUTERS
from llmss_lab.kernel.tiers import CHUNK_TOKENS
from llmss_lab.latency.interconnect import Link
from llmss_lab.latency.iteration import StepTime
from llmss_lab.workload import Workload

from .conftest import alarm
from .test_scenario_invariants import scenarios

EXAMPLES = int(os.environ.get("LLMSS_KERNEL_EXAMPLES", "300"))   # a hunt: more, with LLMSS_KERNEL_RANDOM=1
KERNEL = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("LLMSS_KERNEL_RANDOM"),
                  database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KV_BYTES = 1024.0   # one token's KV on one GPU, for the generated setups


class LinearLatency:
    """A step costs a fixed part plus a part per token (so batches of different sizes interleave unevenly across
    instances), split evenly over ``pp`` stages. Checks every MoE routing it is handed: token-expert pairs are
    conserved (``tokens x top_k`` per layer), no expert gets more than every token, no rank more tokens than
    the group has."""

    def __init__(self, base_ns: float, per_token_ns: float, pp: int = 1, top_k: int = 0):
        self.base, self.per_token, self.pp, self.top_k = base_ns, per_token_ns, pp, top_k
        self.layers = 4

    def step(self, b, padded_tokens=None, routing=None, ep_group_tokens=None) -> StepTime:
        tokens = padded_tokens or b.num_tokens
        if routing is not None:
            T = ep_group_tokens
            assert np.allclose(routing.expert_tokens.sum(axis=1), T * self.top_k), "token-expert pairs not conserved"
            assert (routing.expert_tokens >= 0).all() and (routing.expert_tokens <= T + 1e-9).all()
            assert (routing.local_tokens <= T).all() and (routing.local_tokens >= 0).all()
        total = self.base + self.per_token * tokens
        return StepTime(total, 0.0, 0.0, stages=(total / self.pp,) * self.pp, p2p_ns=500.0 if self.pp > 1 else 0.0)


# ---- the watcher -----------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the steps did, per request: tokens computed on each instance, and on which instances."""

    tokens: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))
    first_planned: dict[tuple[int, int], float] = field(default_factory=dict)   # (request, instance) -> time
    inflight: dict[int, list] = field(default_factory=lambda: defaultdict(list))   # instance -> steps planned, not done
    preemptions_at: dict[int, dict[int, int]] = field(default_factory=dict)   # step in flight -> its requests' preemptions
    readmitted_inflight: int = 0   # requests re-admitted while an older step of theirs ran
    done_while_preempted: int = 0  # requests finished by a step in flight when they were preempted
    chunk_behind_chunk: int = 0    # prompt chunks planned while the request's chunk before them was in flight
    prefilled: dict[int, float] = field(default_factory=dict)   # request -> when its prefill step ended
    held: dict[int, int] = field(default_factory=dict)   # request -> KV tokens its blocks hold when handed over
    # (instance, request) -> (its preemptions, KV tokens written): at admission its prefix hits, then the end of each
    # finished step planned since (a preemption starts a new admission: the steps planned before it wrote freed blocks)
    admission: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    written: dict[int, int] = field(default_factory=dict)   # request -> that KV on its prefill side at the hand-over
    checks: int = 0


def check_instance(inst: Instance) -> None:
    """The KV pool of one instance, block by block, and the requests it holds."""
    sched, kv, R = inst.scheduler, inst.scheduler.kv, inst.R
    pool, bs = kv.pool, kv.block_size
    N = pool.num_blocks
    ref = pool.ref
    assert min(ref, default=0) >= 0, "negative reference count"
    free = list(pool.free._fresh) + list(pool.free._q)
    assert len(set(free)) == len(free), "a block is free twice"
    assert set(free) == {b for b in range(N) if ref[b] == 0}, "free list and zero reference counts disagree"
    holders = Counter()
    for rid, blocks in kv.blocks.items():
        assert len(set(blocks)) == len(blocks), f"request {rid} holds a block twice"
        holders.update(blocks)
    assert all(holders[b] == ref[b] for b in range(N)), "reference counts are not the number of holders"
    assert len(free) + sum(1 for b in range(N) if ref[b]) == N
    # the prefix index: each hash at one block that carries it; a block shared only if it holds a prefix
    assert all(pool.block_hash[b] == h for h, b in pool.cached.items())
    assert sum(h is not None for h in pool.block_hash) == len(pool.cached)
    assert pool.free_cached == sum(1 for b in free if pool.block_hash[b] is not None)
    assert all(pool.block_hash[b] is not None for b in range(N) if ref[b] > 1), "a block shared without a prefix"
    assert kv.prefix_caching or not pool.cached
    # a request's indexed blocks hold its own prefix (a hit never hands over someone else's KV)
    for rid, blocks in kv.blocks.items():
        hs = kv._hashes.get(rid, [])
        for i in range(kv.num_cached[rid]):
            h = pool.block_hash[blocks[i]]
            assert h is None or h == hs[i], f"request {rid} block {i} holds another prefix"
    # running requests hold what their computed tokens need; waiting ones hold nothing
    for rid in sched.running:
        n = len(kv.blocks[rid])
        assert R.nblocks[rid] == n
        assert R.computed[rid] <= n * bs, f"request {rid} computed {R.computed[rid]} tokens in {n} blocks"
        assert n <= -(-int(R.final[rid]) // bs), f"request {rid} holds more blocks than it can fill"
        assert R.computed[rid] <= R.num_tokens[rid] + R.pending[rid]
    for rid in sched.waiting:
        assert not kv.blocks.get(rid), f"waiting request {rid} holds blocks"
        assert R.nblocks[rid] == 0
        assert R.computed[rid] == 0 or R.kv_ready[rid], "a waiting request keeps computed tokens"   # handed over: set on admission
    assert len(sched.running) <= sched.max_seqs
    if sched.hands_over:   # KV written by finished steps: never more than planned, none once preempted
        assert all(R.kv_written[rid] <= R.computed[rid] for rid in sched.running)
        assert not any(R.kv_written[rid] for rid in sched.waiting)
    # a lower prefix pool never above its size
    if kv.lower is not None:
        assert len(kv.lower.chunks) <= max(kv.lower.capacity_chunks, 0)


@contextlib.contextmanager
def watched():
    """Check every instance after each step it plans and each step it completes; tally the planned tokens."""
    tally = Tally()
    plan, complete = Instance.plan, Instance.complete

    def planned(self, now):
        p = plan(self, now)
        if p is not None:
            for rid, n in zip(p.step.rids.tolist(), p.step.num_new.tolist()):
                assert n > 0, f"request {rid} scheduled for {n} tokens"
                tally.tokens[rid][self.iid] += n
                tally.first_planned.setdefault((rid, self.iid), now)
            assert p.shape.num_tokens <= (self.scheduler.budget or 1 << 62)
            assert len(set(p.step.rids.tolist())) == len(p.step.rids), "a request twice in one step"
            # a request re-admitted while an older step of its own runs (preempted since that step was planned; it
            # starts again behind the step, or ahead of it on prefix hits). Only with pipeline stages, which plan
            # whenever the first stage frees (3+ steps in flight; or, with 2, a plan that preempted everyone ran
            # nothing and the next boundary's plan re-admits them). Async scheduling plans when a step ends and once
            # more straight after it, and a plan that preempts admits no one, so a request preempted while its step
            # runs waits for that step's output (Scheduler.finish)
            R = self.R
            ends, seen = {}, {}
            for q in tally.inflight[self.iid]:
                ends.update(zip(q.step.rids.tolist(), (q.step.computed_before + q.step.num_new).tolist()))
                seen.update(tally.preemptions_at[id(q)])
            before = dict(zip(p.step.rids.tolist(), p.step.computed_before.tolist()))
            again = [r for r in before if r in ends and R.preemptions[r] > seen[r]]
            assert not again or self.engine.pp > 1, f"requests {again} re-admitted while their step is in flight"
            tally.readmitted_inflight += len(again)
            # any other request with a step in flight goes on where that step ends, as vLLM's scheduler does (it
            # counts tokens computed when scheduled): a prompt's next chunk, or (async) the token after the one coming
            assert all(before[r] == e for r, e in ends.items() if r in before and r not in again)
            tally.chunk_behind_chunk += sum(1 for r, e in ends.items() if r not in again and before.get(r) == e < R.prompt[r])
            tally.preemptions_at[id(p)] = dict(zip(p.step.rids.tolist(), R.preemptions[p.step.rids].tolist()))
            for r, b in before.items():   # a new admission's first step: what it starts from is there already
                if tally.admission.get((self.iid, r), (-1,))[0] != R.preemptions[r]:
                    tally.admission[self.iid, r] = (int(R.preemptions[r]), b)
            tally.inflight[self.iid].append(p)
        check_instance(self)
        tally.checks += 1
        return p

    def completed(self, p, now):
        tally.inflight[self.iid] = [q for q in tally.inflight[self.iid] if q is not p]
        planned_at = tally.preemptions_at.pop(id(p), {})
        for rid, end in zip(p.step.rids.tolist(), (p.step.computed_before + p.step.num_new).tolist()):
            e, w = tally.admission[self.iid, rid]
            if planned_at[rid] == e:   # planned in the request's current admission: its chunk's KV is written now
                tally.admission[self.iid, rid] = (e, max(w, end))
        waiting = set(self.scheduler.waiting)
        out = complete(self, p, now)
        tally.done_while_preempted += len(waiting.intersection(out[1].tolist()))
        if self.role == "prefill":
            R, kv = self.R, self.scheduler.kv
            for rid in out[0].tolist():
                assert rid not in tally.prefilled, f"request {rid} prefilled twice"
                tally.prefilled[rid] = now
                tally.held[rid] = len(kv.blocks.get(rid, ())) * kv.block_size
                e, w = tally.admission[self.iid, rid]
                tally.written[rid] = w if e == R.preemptions[rid] else 0   # preempted since: its blocks are gone
        check_instance(self)
        return out

    with mock.patch.object(Instance, "plan", planned), mock.patch.object(Instance, "complete", completed):
        yield tally


# ---- generated clusters ----------------------------------------------------------------------------------------

@dataclass
class Case:
    setups: list[simulator.InstanceSetup]
    workload: Workload
    router: str = "round_robin"
    kv_transfer: str = "layer"
    memory: simulator.MemorySetup | None = None
    seed: int = 0


@st.composite
def cases(draw) -> Case:
    n_inst = draw(st.integers(1, 3))
    shape = draw(st.sampled_from(["solo", "solo", "pd", "dp"])) if n_inst > 1 else "solo"
    bs = draw(st.sampled_from([1, 8, 16, 32, 64, 128]))
    n = draw(st.integers(1, 14))
    chunked = draw(st.booleans())
    max_seqs = draw(st.sampled_from([1, 2, 3, 5, 6, 0]))   # 0: unlimited, as in LLMServingSim's configs
    # budgets just above max_num_seqs, and prompts longer than the budget (chunked); 0: unlimited
    budget = draw(st.sampled_from([max_seqs + 1, max_seqs + 2, 16, 64, 300, 0]))
    storage = draw(st.sampled_from([None, None, "cpu", "cxl"]))   # a lower prefix pool, fed by long shared prefixes
    prefix = draw(st.sampled_from([300, 600, 600] if storage else [0, 0, 40, 300, 600]))   # pool chunks: 256 tokens
    prompts = draw(st.lists(st.integers(1, 200), min_size=n, max_size=n))
    prompts = [p + (prefix if prefix and i % 3 else 0) for i, p in enumerate(prompts)]
    outputs = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0, 0, 1_000, 50_000, 3_000_000]), min_size=n, max_size=n))
    ids = [list(range(prefix)) + [10_000 * (i + 1) + t for t in range(p - prefix)] if prefix and i % 3 else
           [10_000 * (i + 1) + t for t in range(p)] for i, p in enumerate(prompts)]
    if not storage and not draw(st.booleans()):
        ids = [None] * n
    pd = shape == "pd"
    if not chunked and budget:   # a prompt (or a preempted request, whole) must fit one step
        budget = max(budget, max(p + o for p, o in zip(prompts, outputs)))
    eng = EngineConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, block_size=bs,
                       enable_prefix_caching=draw(st.booleans()) or prefix > 0, enable_chunked_prefill=chunked,
                       long_prefill_token_threshold=draw(st.sampled_from([0, 0, 0, 7, 100])),
                       reserve_full_isl=draw(st.booleans()), eviction=draw(st.sampled_from(["lru", "mru"])),
                       async_scheduling=draw(st.booleans()),
                       scheduler=draw(st.sampled_from(["vllm_v1", "vllm_v1", "vllm_v1", "static"])))
    # tiny KV: from just the largest request to a few times it (preemption, eviction)
    longest = max(p + o for p, o in zip(prompts, outputs))
    pp = draw(st.sampled_from([1, 1, 1, 2, 3, 4])) if shape != "dp" else 1
    moe = None
    top_k = 0
    if shape == "dp" or draw(st.integers(0, 4)) == 0:
        experts, top_k = draw(st.sampled_from([(8, 2), (16, 4), (4, 1)]))
        ep = n_inst if shape == "dp" and experts % n_inst == 0 else 1
        moe = {"num_experts": experts, "top_k": top_k, "ep": ep, "num_layers": 4,
               "policy": draw(st.sampled_from(GATES.names())), "seed": draw(st.integers(0, 99)),
               "skew": draw(st.sampled_from([0.0, 1.0, 2.5]))}
    n_prefill = draw(st.integers(1, n_inst - 1)) if pd else 0
    setups = []
    for i in range(n_inst):
        role = None if not pd else ("prefill" if i < n_prefill else "decode")
        # an instance of its own block size now and then (per-instance keys of a cluster config)
        own = eng if i == 0 or draw(st.integers(0, 3)) else eng.with_overrides({"block_size": draw(st.sampled_from([8, 32]))})
        need = -(-longest // own.block_size)
        blocks = draw(st.integers(need, need * 3))
        setups.append(simulator.InstanceSetup(
            f"i{i}", own, LinearLatency(draw(st.sampled_from([2e5, 1e6])), draw(st.sampled_from([0.0, 3e3])), pp, top_k),
            blocks, 1 << 20, {"hardware": "X"}, role=role, node=draw(st.integers(0, 1)),
            dp_group="g" if shape == "dp" else None, pp=pp, lanes=draw(st.sampled_from([1, 2])),
            kv_bytes_per_token=KV_BYTES, moe=moe))
    memory = None
    if storage and all(s.lanes == setups[0].lanes for s in setups):   # a shared pool needs one KV layout
        chunk = KV_BYTES * setups[0].lanes * CHUNK_TOKENS
        tiers = [simulator.TierSetup(f"cpu:{k}", chunk * draw(st.sampled_from([0, 1, 2, 5])), 50.0, 100.0)
                 for k in (0, 1)]
        tiers.append(simulator.TierSetup("cxl", chunk * draw(st.sampled_from([1, 3])), 20.0, 300.0))
        memory = simulator.MemorySetup(tiers, storage, draw(st.sampled_from(["instance", "node", "cluster"])))
    wl = Workload(np.cumsum(gaps), np.array(prompts), np.array(outputs), ids, "generated")
    return Case(setups, wl, draw(st.sampled_from(ROUTERS.names())), draw(st.sampled_from(simulator.KV_TRANSFERS)),
                memory, draw(st.integers(0, 99)))


@st.composite
def overlapped(draw) -> Case:
    """Steps in flight over preemptions: 2-4 pipeline stages (or async scheduling) on a lone instance or a P/D
    split's prefill side, blocks of one token, KV for little more than the longest request, prompts capped in
    short chunks, requests arriving together. A request is then preempted while the step computing its last token
    (or, on a prefill instance, its prompt's end) runs, and with stages re-admitted before that step is out."""
    pd = draw(st.booleans())
    asynchronous = draw(st.integers(0, 3)) == 0
    pp = 1 if asynchronous else draw(st.integers(2, 4))
    n = draw(st.integers(2, 6))
    prompts = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    budget = draw(st.integers(2, 6))
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=budget, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False, long_prefill_token_threshold=draw(st.sampled_from([0, 2, 3])),
                       async_scheduling=asynchronous)
    # a prefill instance computes prompts only: KV for little more than the longest, so that its last step is often
    # in flight when a preemption strikes (the request is handed over without KV, Scheduler.finish)
    longest = max(prompts) if pd else max(p + o for p, o in zip(prompts, outputs))
    blocks = draw(st.integers(longest, longest + 4 if pd else 16))
    first = simulator.InstanceSetup("p" if pd else "i", eng, LinearLatency(1e6, draw(st.sampled_from([0.0, 3e4])), pp),
                                    blocks, 1 << 20, {}, role="prefill" if pd else None, pp=pp, kv_bytes_per_token=KV_BYTES)
    decode = simulator.InstanceSetup("d", eng, LinearLatency(1e6, 0.0), 64, 1 << 20, {}, role="decode",
                                     kv_bytes_per_token=KV_BYTES)
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 400_000]), min_size=n, max_size=n))
    wl = Workload(np.cumsum(gaps), np.array(prompts), np.array(outputs), [None] * n, "overlapped")
    return Case([first, decode] if pd else [first], wl, kv_transfer=draw(st.sampled_from(simulator.KV_TRANSFERS)))


@st.composite
def shared_pools(draw) -> Case:
    """Instances of different block sizes (any that divides a pool chunk) sharing one CPU prefix pool: the first
    request writes its prompt's chunks through; each later one, a second later on another instance with the same
    prefix, must recall every whole chunk of it (the pool is large enough to keep them all)."""
    n_inst = draw(st.integers(2, 3))
    sizes = draw(st.lists(st.sampled_from([1, 2, 8, 16, 32, 64, 128, 256]), min_size=n_inst, max_size=n_inst))
    prefix = draw(st.integers(CHUNK_TOKENS, 3 * CHUNK_TOKENS))
    tails = draw(st.lists(st.integers(1, 40), min_size=n_inst, max_size=n_inst))
    outputs = draw(st.lists(st.integers(1, 3), min_size=n_inst, max_size=n_inst))
    prompts = [prefix + t for t in tails]
    ids = [list(range(prefix)) + [10_000 * (i + 1) + k for k in range(t)] for i, t in enumerate(tails)]
    longest = max(p + o for p, o in zip(prompts, outputs))
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=draw(st.sampled_from([0, 300])),
                       enable_prefix_caching=True, async_scheduling=draw(st.booleans()))
    setups = [simulator.InstanceSetup(f"i{k}", eng.with_overrides({"block_size": bs}), LinearLatency(1e6, 0.0),
                                      2 * -(-longest // bs), 1 << 20, {}, kv_bytes_per_token=KV_BYTES)
              for k, bs in enumerate(sizes)]
    chunk = KV_BYTES * CHUNK_TOKENS
    memory = simulator.MemorySetup([simulator.TierSetup("cpu:0", 4 * n_inst * chunk, 50.0, 100.0)], "cpu",
                                   draw(st.sampled_from(["node", "cluster"])))
    wl = Workload(np.arange(n_inst) * 1_000_000_000, np.array(prompts), np.array(outputs), ids, "shared")
    return Case(setups, wl, memory=memory)


def tell(seen: dict[str, object]) -> None:
    """Hypothesis's statistics (``pytest --hypothesis-show-statistics``): the kinds of case a test drew."""
    for label, on in seen.items():
        if on:
            event(label)


def run_case(c: Case) -> tuple[simulator.RawRun, Tally]:
    with watched() as tally, alarm(30):
        raw = simulator.run(c.setups, c.workload, c.router, links=(Link(8.0, 1e3), Link(2.0, 5e3)),
                            kv_transfer=c.kv_transfer, seed=c.seed, memory=c.memory)
    return raw, tally


def check_run(c: Case, raw: simulator.RawRun, tally: Tally) -> None:
    R = raw.requests
    roles = [s.role for s in c.setups]
    pd = "prefill" in roles
    # every request done, exactly its output tokens, in causal order
    assert (R.finished >= 0).all()
    assert (R.num_tokens == R.prompt + R.output).all()
    assert (R.arrival <= R.queued).all() and (R.queued <= R.scheduled).all()
    assert (R.scheduled < R.first_token).all() and (R.first_token <= R.finished).all()
    assert (R.first_token < R.finished)[R.output > 1].all()
    for rid in range(R.n):
        per_inst = tally.tokens[rid]
        computed = sum(per_inst.values())
        # prompt - hits + (output - 1) + recomputation; a P/D decode recomputes the last prompt token
        expected = int(R.prompt[rid] + R.output[rid] - 1 + R.lost[rid] - R.cache_hits[rid]) + (1 if pd else 0)
        assert computed == expected, (rid, computed, expected, dict(per_inst))
        assert 0 <= R.recomputed[rid] <= R.lost[rid]
        assert 0 <= R.recalled[rid] <= R.cache_hits[rid]   # summed over admissions: a resumed request hits its own KV
        assert 0 <= R.prefix_hit[rid] < R.prompt[rid]      # at least one prompt token is computed, for logits
        if pd:   # prefilled on one prefill instance, decoded on one decode instance
            p, d = int(R.prefill_instance[rid]), int(R.instance[rid])
            assert roles[p] == "prefill" and roles[d] == "decode"
            assert set(per_inst) == {p, d}, (rid, dict(per_inst), p, d)
            # the decode side computes the last prompt token again and every output token but the last
            # (more after a preemption, which drops the handed-over KV: it is recomputed)
            assert per_inst[d] >= R.output[rid] and per_inst[p] >= R.prompt[rid] - R.cache_hits[rid]
            # the KV the prefill instance still held moves: all of the prompt's, or (preempted while its last step
            # ran) what it computed again, maybe none, and the decode side prefills the rest (Scheduler.finish). Only
            # KV that finished steps wrote: a chunk still in the pipeline (re-admitted behind that step) has none yet
            handed, rest = divmod(float(R.kv_bytes[rid]), KV_BYTES * c.setups[p].lanes)
            assert rest == 0 and 0 <= handed <= min(R.prompt[rid], tally.held[rid])
            assert handed <= tally.written[rid], f"request {rid}: {handed:.0f} tokens' KV handed over, " \
                f"{tally.written[rid]} written"
            assert (handed > 0) == (tally.held[rid] > 0), "KV handed over without blocks, or blocks held for nothing"
            assert (R.kv_transfer[rid] > 0) == (handed > 0) and R.kv_transfer[rid] >= 0
            if not R.preemptions[rid]:
                assert per_inst[d] == R.output[rid] and per_inst[p] == R.prompt[rid] - R.cache_hits[rid]
                assert handed == R.prompt[rid]
            # the decode side computes on the KV only once it has arrived
            assert tally.first_planned[rid, d] >= tally.prefilled[rid] + R.kv_transfer[rid] - 1e-6
        else:
            assert set(per_inst) == {int(R.instance[rid])}
    if c.router == "round_robin":   # in turn: no instance gets two more than another
        for side in ({None, "prefill"}, {"decode"}):
            got = Counter(int(R.prefill_instance[r] if pd and side != {"decode"} else R.instance[r]) for r in range(R.n))
            counts = [got[i] for i, s in enumerate(c.setups) if s.role in side]
            assert not counts or max(counts) - min(counts) <= 1, counts
    if pd:
        assert raw.kv_bytes_moved == pytest.approx(R.kv_bytes.sum(), rel=1e-12)
    # the step log: within the pool, the budget and the seats; its tokens are the tallied ones
    for inst, s in zip(raw.instances, c.setups):
        log = inst.log
        assert max(log.kv_blocks_used, default=0) <= s.num_blocks
        assert all(u <= h <= s.num_blocks for u, h in zip(log.kv_blocks_used, log.kv_blocks_holding))
        assert max(log.seqs, default=0) <= (s.engine.max_num_seqs or R.n)
        assert min(log.recall, default=0.0) >= 0 and min(log.duration, default=1.0) > 0
        assert all(t == p + d for t, p, d in zip(log.tokens, log.prefill_tokens, log.decode_seqs))
        assert sum(log.tokens) == sum(t[inst.iid] for t in tally.tokens.values())
        assert sum(log.generated) == sum(int(R.output[r]) for r in range(R.n) if R.instance[r] == inst.iid) + \
            sum(1 for r in range(R.n) if R.prefill_instance[r] == inst.iid)
    assert sum(sum(i.log.preempted) for i in raw.instances) == R.preemptions.sum()
    # inter-token gaps: one per output token after the first, adding up to each request's first-to-last time
    gaps = [i.log.itl.pairs() for i in raw.instances]
    assert sum(int(c.sum()) for _, c in gaps) == int((R.output - 1).sum())
    assert sum(float(np.dot(g, c)) for g, c in gaps) == pytest.approx(float((R.finished - R.first_token).sum()),
                                                                      rel=1e-9, abs=1e-3)
    for e in raw.engines:   # lockstep: a data-parallel group's members step together; every engine is idle
        assert e.inflight == 0
        for m in e.members[1:]:
            assert m.log.start == e.members[0].log.start and m.log.duration == e.members[0].log.duration
    for inst in raw.instances:
        assert 0 <= inst.scheduler.kv.hits <= inst.scheduler.kv.queries
    # every pool is whole again, every instance idle
    for inst in raw.instances:
        kv = inst.scheduler.kv
        assert kv.pool.num_free == kv.pool.num_blocks and not any(kv.pool.ref)
        assert not kv.blocks and not inst.scheduler.running and not inst.scheduler.waiting
        assert not inst.inbox and not inst.to_pull and not inst.loading
    assert (R.pending == 0).all()
    # tiers: what the steps logged is what the tiers moved
    logged = sum(sum(inst.log.tier_bytes) for inst in raw.instances)
    moved = sum(t.bytes_read + t.bytes_written for t in raw.tiers.values())
    assert logged == pytest.approx(moved, rel=1e-9, abs=1e-6)
    link = sum(sum(inst.log.pool_link_bytes) for inst in raw.instances)
    assert link == pytest.approx(sum(p.link_read + p.link_written for p in raw.pools), rel=1e-9, abs=1e-6)
    for tier in raw.tiers.values():   # every chunk a pool took in was written once, whole
        pools = [p for p in raw.pools if p.tier is tier]
        assert tier.bytes_written == pytest.approx(sum((p.evictions + len(p.chunks)) * p.chunk_bytes for p in pools))
    for p in raw.pools:
        assert 0 <= p.hits <= p.queries
    recalled = sum(float(R.recalled[rid]) for rid in range(R.n))
    read = sum(t.bytes_read for t in raw.tiers.values())
    per_token = KV_BYTES * c.setups[0].lanes
    assert read == pytest.approx(recalled * per_token, rel=1e-9, abs=1e-6)
    # MoE: every layer routed each step's tokens x top_k, summed over the run (an idle DP member's dummy: one token)
    for e in raw.engines:
        if e.expert_load is not None:
            per_step = np.max([np.asarray(m.log.tokens) for m in e.members], axis=0)
            routed = int(np.maximum(per_step, 1).sum()) * len(e.members) * e.gate.k
            assert e.expert_load.shape == (e.gate.layers, e.gate.E)
            assert np.allclose(e.expert_load.sum(axis=1), routed)


@KERNEL
@given(cases())
def test_kernel_entities_stay_consistent_at_every_step(c):
    note(f"{[(s.role, s.num_blocks, s.pp, s.lanes, s.node, s.dp_group) for s in c.setups]} {c.setups[0].engine} "
         f"router={c.router} kv_transfer={c.kv_transfer} memory={c.memory} prompts={c.workload.input_toks.tolist()} "
         f"outputs={c.workload.output_toks.tolist()} arrivals={c.workload.arrival_ns.tolist()}")
    raw, tally = run_case(c)
    assert tally.checks > 0
    R = raw.requests
    tell({"preemption": R.preemptions.any(), "prefix hits": R.cache_hits.any(), "pool recall": R.recalled.any(),
          "P/D": (R.prefill_instance >= 0).any(), "MoE": c.setups[0].moe is not None, "PP": c.setups[0].pp > 1,
          "async": c.setups[0].engine.async_scheduling, "pool": c.memory is not None,
          "re-admitted behind an old step": tally.readmitted_inflight > 0,
          "next chunk behind its chunk in flight": tally.chunk_behind_chunk > 0,
          "finished while preempted": tally.done_while_preempted > 0})
    check_run(c, raw, tally)


@settings(KERNEL, max_examples=max(EXAMPLES // 3, 1))
@given(overlapped())
def test_preemptions_under_steps_in_flight_keep_the_kernel_consistent(c):
    note(f"{[(s.role, s.num_blocks, s.pp) for s in c.setups]} {c.setups[0].engine} kv_transfer={c.kv_transfer} "
         f"prompts={c.workload.input_toks.tolist()} outputs={c.workload.output_toks.tolist()} "
         f"arrivals={c.workload.arrival_ns.tolist()}")
    raw, tally = run_case(c)
    R = raw.requests
    handed = R.kv_bytes / KV_BYTES
    tell({"preemption": R.preemptions.any(), "async": c.setups[0].engine.async_scheduling, "P/D": len(c.setups) > 1,
          "re-admitted behind an old step": tally.readmitted_inflight,
          "finished while preempted": tally.done_while_preempted,
          "handed over without KV": len(c.setups) > 1 and (handed == 0).any(),
          "handed over with part of its KV": ((0 < handed) & (handed < R.prompt)).any()})
    check_run(c, raw, tally)


@settings(KERNEL, max_examples=max(EXAMPLES // 10, 1))
@given(shared_pools())
def test_a_pool_shared_across_block_sizes_serves_every_instance(c):
    note(f"block sizes {[s.engine.block_size for s in c.setups]} prompts={c.workload.input_toks.tolist()}")
    raw, tally = run_case(c)
    R = raw.requests
    shared = len(os.path.commonprefix([list(t) for t in c.workload.token_ids]))   # then 1-40 tokens of its own
    for rid in range(1, R.n):   # a fresh instance: its NPU holds nothing, the pool every chunk request 0 wrote
        assert R.instance[rid] == rid
        assert R.recalled[rid] == shared // CHUNK_TOKENS * CHUNK_TOKENS, (rid, R.recalled.tolist())
    if len({s.engine.block_size for s in c.setups}) > 1:
        event("block sizes differ")
    check_run(c, raw, tally)


# ---- whole runs: the Datasets agree with the per-request table ------------------------------------------------

def check_datasets(res) -> None:
    """Totals of the step, time-series, ITL, expert and power Datasets against the requests table."""
    R, it, ts = res.requests, res.iterations, res.timeseries
    n_out, n_in = int(R.output_tokens.sum()), int(R.input_tokens.sum())
    s = res.summary()
    assert s["completed"] == R.sizes["request"] and s["total_output_tokens"] == n_out
    assert s["preemptions"] == int(R.preemptions.sum()) == int(it.preempted.sum()) == int(ts.preemptions.sum())
    role = ts.role.values
    assert float(ts.generation_throughput.isel(instance=role != "prefill").sum()) == pytest.approx(n_out)
    assert float(ts.prompt_throughput.isel(instance=role != "decode").sum()) == pytest.approx(n_in)
    if (role == "prefill").any():   # a prefill instance's one token per request
        assert float(ts.generation_throughput.isel(instance=role == "prefill").sum()) == pytest.approx(R.sizes["request"])
        assert float(R.kv_bytes.sum()) == pytest.approx(res.requests.attrs["kv_bytes_transferred"], rel=1e-12)
        # a request preempted while its prompt's last step ran hands over only the KV still held (Scheduler.finish)
        per_token = (R.kv_bytes / R.input_tokens).values[R.preemptions.values == 0]
        assert (per_token > 0).all() and per_token.std() <= 1e-9 * float(per_token.mean())
        assert ((R.kv_bytes > 0) == (R.kv_transfer > 0)).all()
    assert int(res.itl.gaps.sum()) == int((R.output_tokens - 1).sum())
    first, fin, arr = R.first_token.values, R.finish.values, R.arrival.values
    assert np.allclose(R.ttft.values, (first - arr) * 1e3) and np.allclose(R.e2e_latency.values, (fin - arr) * 1e3)
    many = R.output_tokens.values > 1
    assert np.allclose(R.tpot.values[many], (fin - first)[many] * 1e3 / (R.output_tokens.values[many] - 1))
    assert (R.prefix_hit_tokens < R.input_tokens).all() and (R.recalled_tokens >= 0).all()
    assert int(it.num_tokens.sum()) >= n_in - int(R.prefix_hit_tokens.sum())
    assert ((it.prefill_tokens + it.decode_seqs) == it.num_tokens).all()
    assert (it.kv_blocks_used >= 0).all() and (it.num_seqs <= res.requests.sizes["request"]).all()
    if res.experts.data_vars:   # every layer routes the same tokens: pairs conserved across experts
        per_layer = res.experts.expert_load.sum("expert").values
        assert np.allclose(per_layer, per_layer[:, :1])
    if res.power.data_vars:
        total = float(res.power.energy.sum())
        assert total == pytest.approx(res.power.attrs["total_energy_J"], rel=1e-9)
        assert s["energy_per_output_token_J"] == pytest.approx(total / n_out, rel=1e-9)
        assert (res.power.energy >= 0).all() and (res.power.power >= 0).all()
    m = res.memory
    if "tier_bytes_read" in m and "pool_used" in m:   # a pool is read only for recalls (weights stay on the NPU)
        if res.attrs.get("scenario_json") and '"weights_on": "npu"' in res.attrs["scenario_json"]:
            assert (float(m.tier_bytes_read.sum()) > 0) == (int(R.recalled_tokens.sum()) > 0)


@settings(max_examples=int(os.environ.get("LLMSS_KERNEL_SCENARIOS", "150")), deadline=None,
          derandomize=not os.environ.get("LLMSS_KERNEL_RANDOM"), database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios().flatmap(lambda sc: st.sampled_from([sc.block_size, 1, 64, 128]).map(
    lambda bs: sc.replace(block_size=bs))))   # block sizes beyond test_scenario_invariants' 8-32
def test_whole_run_datasets_agree_with_the_requests_table(ref, sc):
    note(repr(sc))
    try:
        with alarm(60):
            res = sc.run(ref)
    except LlmssError:
        event("refused")
        return   # refusals are test_scenario_invariants' subject
    tell({"P/D": sc.prefill_instances > 0, "power": sc.power, "PIM": sc.attn_offload,
          "prefix pool": bool(sc.prefix_storage), "preemption": res.summary()["preemptions"] > 0})
    check_datasets(res)


# ---- regressions: minimal examples of what the generated cases found ---------------------------------------------

def _pd_pair(engine: EngineConfig, prefill_blocks: int, decode_blocks: int,
             pp: int = 1) -> list[simulator.InstanceSetup]:
    return [simulator.InstanceSetup("p", engine, LinearLatency(1e6, 0.0, pp), prefill_blocks, 1 << 20, {},
                                    role="prefill", pp=pp, kv_bytes_per_token=KV_BYTES),
            simulator.InstanceSetup("d", engine, LinearLatency(1e6, 0.0), decode_blocks, 1 << 20, {}, role="decode",
                                    kv_bytes_per_token=KV_BYTES)]


def test_a_preemption_in_a_step_that_runs_nothing_is_still_logged():
    """A prefill instance holds a finished prompt's KV until a decode instance takes the request in. Here request 1
    is prefilled (4 blocks held) while the one decode seat is busy with request 0's 50 tokens; request 2 (6 tokens,
    2 a step) then runs out of the 8 blocks and preempts itself, and the step runs nothing. The preemption counts in
    the requests table, so the step log (and the timeseries built on it) must count it too."""
    eng = EngineConfig(max_num_seqs=1, max_num_batched_tokens=2, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False)
    wl = Workload(np.zeros(3, np.int64), np.array([1, 4, 6]), np.array([50, 1, 1]), [None] * 3, "three")
    raw = simulator.run(_pd_pair(eng, 8, 60), wl, kv_transfer="whole")
    assert raw.requests.preemptions.tolist() == [0, 0, 1]
    assert [sum(i.log.preempted) for i in raw.instances] == [1, 0]


def test_a_request_finished_by_a_step_in_flight_recomputed_only_what_it_recomputed():
    """vLLM V1 keeps the output of a step that was in flight when its request was preempted (Scheduler.finish).
    Three stages, a 2-token budget, 5 blocks of one token: request 1's prompt runs in chunks 0:1, 1:3, 3:4; while the
    last is in flight, request 0's decode needs a block and preempts request 1 (4 tokens dropped), which is
    re-admitted behind that step and recomputes 2 tokens before the step's token finishes it. It recomputed 2, not
    4: the 8 tokens the steps computed are the prompts, request 0's one decode and those 2."""
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=2, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False)
    wl = Workload(np.zeros(2, np.int64), np.array([1, 4]), np.array([2, 1]), [None] * 2, "two")
    c = Case([simulator.InstanceSetup("i", eng, LinearLatency(1e6, 0.0, 3), 5, 1 << 20, {}, pp=3,
                                      kv_bytes_per_token=KV_BYTES)], wl)
    raw, tally = run_case(c)
    R = raw.requests
    assert R.preemptions.tolist() == [0, 1] and tally.readmitted_inflight == 1
    assert R.recomputed.tolist() == [0, 2]
    assert sum(raw.instances[0].log.tokens) == 8
    check_run(c, raw, tally)


def _handover_case(eng: EngineConfig, prompts: list[int], pp: int, blocks: int, name: str, kv_transfer: str) -> Case:
    """A prefill instance of ``pp`` stages and KV for ``blocks`` tokens beside a roomy decode instance, 1 ms a step,
    the prompts all arriving at 0 for one output token each: the hand-over cases below."""
    n = len(prompts)
    wl = Workload(np.zeros(n, np.int64), np.array(prompts), np.ones(n, np.int64), [None] * n, name)
    return Case(_pd_pair(eng, blocks, 64, pp), wl, kv_transfer=kv_transfer)


@pytest.mark.parametrize("pp, prompts, budget, blocks", [(2, [3, 4, 1, 1], 5, 6), (3, [2, 5, 1], 3, 6)])
def test_a_prefill_request_readmitted_behind_its_last_step_is_handed_over_once(pp, prompts, budget, blocks):
    """A P/D prefill instance with pipeline stages, prompts in chunks of 2, KV for 6 tokens. A plan preempts
    everyone, the request whose prompt's last step is in flight among them, and runs nothing; the next stage
    boundary's plan re-admits them, so that request is scheduled again behind its old step. The old step hands it
    over; the new one used to hand it over a second time, and Scheduler.finish crashed (``waiting.remove``).
    vLLM's update_from_output skips a finished request's output; so does Instance.complete."""
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=budget, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False, long_prefill_token_threshold=2)
    c = _handover_case(eng, prompts, pp, blocks, "short", "whole")
    raw, tally = run_case(c)
    assert tally.readmitted_inflight and raw.requests.preemptions.any()
    assert sum(raw.instances[0].log.generated) == len(prompts)   # one token per request, each handed over once
    check_run(c, raw, tally)


@pytest.mark.parametrize("kv_transfer", simulator.KV_TRANSFERS)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_prefill_request_preempted_behind_its_last_step_is_handed_over_without_kv(asynchronous, kv_transfer):
    """The nearest case with two steps in flight (PP=2 or async scheduling): prompts 3 and 2, chunks of 2, KV for
    4 tokens. Request 0's last chunk needs a block while request 1's whole prompt is in flight, and preempts it; a
    plan that preempts admits no one, so request 1 waits, and the step in flight hands it over from the queue, once
    (vLLM's stopped_preempted_reqs). Its blocks are gone, so, as vLLM's NixlConnector.request_finished gets no block
    ids and holds nothing, no KV moves (it moved 2 tokens' worth before) and the decode instance prefills the prompt
    itself: 2 tokens, one more than with the KV, recomputed. With async scheduling no second plan comes before that
    step's output (the assertion in ``watched``)."""
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=4, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False, long_prefill_token_threshold=2, async_scheduling=asynchronous)
    pp = 1 if asynchronous else 2
    c = _handover_case(eng, [3, 2], pp, 4, "two", kv_transfer)
    raw, tally = run_case(c)
    R = raw.requests
    assert tally.done_while_preempted == 1 and not tally.readmitted_inflight
    assert R.preemptions.tolist() == [0, 1] and R.recomputed.tolist() == [0, 1]
    assert R.kv_bytes.tolist() == [3 * KV_BYTES, 0.0] and R.kv_transfer[1] == 0 < R.kv_transfer[0]
    assert tally.tokens[1] == {0: 2, 1: 2}   # the prompt on each side
    check_run(c, raw, tally)



@pytest.mark.parametrize("pp, prompts, budget, chunk, blocks, prefilled", [(3, [5, 3], 4, 2, 7, 5),
                                                                         (4, [10, 8, 16], 6, 3, 17, 14)])
def test_a_prefill_request_readmitted_behind_its_last_step_hands_over_only_kv_written(pp, prompts, budget, chunk,
                                                                                       blocks, prefilled):
    """A P/D prefill instance with 3 (4) pipeline stages, prompts in chunks of 2 (3), KV for 7 (17) tokens; a step
    takes 1 ms, and a plan goes in as the first stage frees, every 1/pp ms. Request 1's prompt, 3 (8) tokens, has its
    last chunk planned at 1/3 (2/4) ms; the next plan gives request 0 its last chunk, which needs a block, and
    preempts request 1. The plan after re-admits request 1 (chunk 0:2; with 4 stages, 0:3, then 3:6 one plan later),
    and those chunks are still in the pipeline when its old last step ends and hands it over: its blocks hold no KV
    yet. It used to hand over 2 (6) tokens' KV, which ``R.computed`` counts as soon as a chunk is planned; now none
    moves, and the decode instance prefills the whole prompt. Recomputed: the chunks planned again on the prefill
    side, 2 (6), and all the prompt but its last token on the decode side, 2 (7): 4 (13), where it said 2 (7)."""
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=budget, block_size=1, enable_prefix_caching=False,
                       reserve_full_isl=False, long_prefill_token_threshold=chunk)
    c = _handover_case(eng, prompts, pp, blocks, "chunked", "whole")
    raw, tally = run_case(c)
    R = raw.requests
    assert R.preemptions[1] == 1 and tally.readmitted_inflight
    assert tally.held[1] == 0 and tally.written[1] == 0
    assert R.kv_bytes[1] == 0 and R.kv_transfer[1] == 0
    assert tally.tokens[1] == {0: prefilled, 1: prompts[1]}
    again = prefilled - prompts[1]
    assert R.recomputed[1] == again + prompts[1] - 1
    check_run(c, raw, tally)

def test_a_pool_shared_across_block_sizes_serves_the_chunks_one_instance_wrote_to_the_other():
    """Two instances on one node share a CPU prefix pool, one with 16-token blocks and one with 32. Request 0 (600
    tokens) runs on the first and writes two 256-token chunks through; request 1, the same prompt a second later on
    the second, recalls them: chunks are keyed on their tokens, as LMCache keys them, not on the writer's block hashes
    (which differ with the block size, so the second instance used to find nothing)."""
    eng = EngineConfig(max_num_seqs=0, block_size=16, enable_prefix_caching=True)
    setups = [simulator.InstanceSetup(f"i{k}", eng.with_overrides({"block_size": bs}), LinearLatency(1e6, 0.0), 2048 // bs,
                                      1 << 20, {}, kv_bytes_per_token=KV_BYTES) for k, bs in enumerate((16, 32))]
    chunk = KV_BYTES * CHUNK_TOKENS
    memory = simulator.MemorySetup([simulator.TierSetup("cpu:0", 4 * chunk, 50.0, 100.0)], "cpu", "node")
    ids = list(range(600))
    wl = Workload(np.array([0, 1_000_000_000]), np.array([600, 600]), np.array([2, 2]), [ids, ids], "twice")
    c = Case(setups, wl, memory=memory)
    raw, tally = run_case(c)
    R = raw.requests
    assert R.instance.tolist() == [0, 1]
    assert R.recalled.tolist() == [0, 2 * CHUNK_TOKENS]
    check_run(c, raw, tally)


def test_with_pipeline_stages_a_prompt_s_next_chunk_runs_behind_the_one_in_flight_and_its_decode_waits():
    """vLLM's scheduler counts a chunk's tokens as computed when it schedules it (Scheduler._update_after_schedule,
    "allowing us to schedule the prefill request again immediately in the next scheduling step"), and with pipeline
    stages the engine core fills its batch queue before it waits on the oldest step. So a 6-token prompt in chunks of
    2 on two stages (steps of 1 ms, 0.5 ms a stage) has its second chunk in the pipeline while the first is still in
    it, and the third behind the second; its first decode has nothing to compute until the last chunk's token is
    out (``num_new_tokens == 0``: "PP>1 and we have already scheduled all prompt tokens but they are not finished
    yet"), and is planned when that step ends."""
    eng = EngineConfig(max_num_seqs=0, max_num_batched_tokens=2, block_size=1, enable_prefix_caching=False)
    c = Case([simulator.InstanceSetup("i", eng, LinearLatency(1e6, 0.0, 2), 16, 1 << 20, {}, pp=2,
                                      kv_bytes_per_token=KV_BYTES)],
             Workload(np.zeros(1, np.int64), np.array([6]), np.array([2]), [None], "one"))
    raw, tally = run_case(c)
    log = raw.instances[0].log
    start, end = np.asarray(log.start), np.asarray(log.start) + np.asarray(log.duration)
    assert list(log.tokens) == [2, 2, 2, 1] and list(log.prefill_tokens) == [2, 2, 2, 0]
    assert start[1] < end[0] and start[2] < end[1]   # a chunk behind the one in flight
    # the second as the first stage frees; the third once the first is out (two steps in flight, as vLLM's batch
    # queue holds pipeline_parallel_size of them)
    assert start[1] == pytest.approx(0.5e6) and start[2] == end[0]
    assert start[3] == end[2]                         # the decode: once the prompt's last chunk is out
    assert tally.chunk_behind_chunk == 2
    check_run(c, raw, tally)
