"""Invariants of the kernel under generated scenarios (hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from llmss_lab.config.engine import EngineConfig
from llmss_lab.kernel import simulator
from llmss_lab.workload import Workload

from .conftest import setup


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 25))
    bs = draw(st.sampled_from([4, 8, 16]))
    prompts = draw(st.lists(st.integers(1, 120), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    gaps = draw(st.lists(st.integers(0, 3_000_000), min_size=n, max_size=n))
    share = draw(st.booleans())
    ids = [(list(range(p + o)) if share and i % 2 else None) for i, (p, o) in enumerate(zip(prompts, outputs))]
    need = max(-(-(p + o) // bs) for p, o in zip(prompts, outputs))
    blocks = draw(st.integers(need, need * 4))
    eng = EngineConfig(
        max_num_seqs=draw(st.integers(1, 8)),
        max_num_batched_tokens=draw(st.integers(8, 256)),
        block_size=bs,
        enable_prefix_caching=draw(st.booleans()),
        enable_chunked_prefill=draw(st.booleans()),
        long_prefill_token_threshold=draw(st.sampled_from([0, 0, 16])),
        reserve_full_isl=draw(st.booleans()),
        eviction=draw(st.sampled_from(["lru", "mru"])),
        async_scheduling=draw(st.booleans()),
        scheduler=draw(st.sampled_from(["vllm_v1", "vllm_v1", "static"])),
    )
    if not eng.enable_chunked_prefill:  # every prompt must fit one step, as vLLM requires
        eng = eng.with_overrides({"max_num_batched_tokens": max(eng.max_num_batched_tokens, max(prompts) + max(outputs))})
    wl = Workload(np.cumsum(gaps), np.array(prompts), np.array(outputs), ids, "generated")
    return eng, blocks, wl



@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_kernel_invariants(sc):
    eng, blocks, wl = sc
    raw = simulator.run([setup(eng, blocks)], wl)
    R = raw.requests
    # every request finishes exactly once, with exactly its output tokens
    assert (R.finished > 0).all()
    assert (R.num_tokens - R.prompt == R.output).all()
    # time is causal
    assert (R.arrival <= R.queued).all() and (R.queued <= R.scheduled).all()
    assert (R.scheduled < R.first_token).all() and (R.first_token <= R.finished).all()
    log = raw.instances[0].log
    # KV never exceeds the pool, steps never overlap, the budget and seat limits hold
    assert max(log.kv_blocks_used) <= blocks
    starts, durs = np.array(log.start), np.array(log.duration)
    assert (starts[1:] >= starts[:-1] + durs[:-1] - 1e-6).all()
    assert max(log.tokens) <= eng.max_num_batched_tokens
    assert max(log.seqs) <= eng.max_num_seqs
    # tokens are conserved: computed = prompts + (outputs - 1) + tokens lost to preemption - cache hits
    computed = sum(log.tokens)
    assert computed == R.prompt.sum() + (R.output - 1).sum() + R.lost.sum() - R.cache_hits.sum()
    assert (R.recomputed >= 0).all() and (R.recomputed <= R.lost).all()
    # the folded inter-token gaps: one per token after the first, and per request they add up to
    # the time from first to last token
    gaps, counts = log.itl.pairs()
    assert counts.sum() == (R.output - 1).sum() and (counts > 0).all() and (np.diff(gaps) > 0).all()
    assert np.dot(gaps, counts) == pytest.approx((R.finished - R.first_token).sum(), rel=1e-9, abs=1e-3)
    # the KV pool is whole again at the end
    kv = raw.instances[0].scheduler.kv
    assert kv.pool.num_free == blocks and all(r == 0 for r in kv.pool.ref)
    if eng.scheduler == "static":
        _check_static_batches(R, eng.max_num_seqs)


def _check_static_batches(R, max_seqs: int) -> None:
    """Static batching: a request joins only the batch formed while it waited. A batch starts when a request is
    first scheduled after every one scheduled before it has finished; whoever joins it later must have been
    taken in by then (a member held back for memory starts a "batch" of its own here: a weaker check, never
    a false alarm), and no batch has more than max_num_seqs requests."""
    start, members, done = None, 0, -1.0
    for rid in np.argsort(R.scheduled, kind="stable").tolist():
        if start is None or R.scheduled[rid] >= done:
            start, members = R.scheduled[rid], 0
        assert R.queued[rid] <= start, f"request {rid} joined a batch formed before it was taken in"
        members += 1
        assert members <= max_seqs
        done = max(done, R.finished[rid])


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_same_scenario_same_result(sc):
    eng, blocks, wl = sc
    a = simulator.run([setup(eng, blocks)], wl).requests
    b = simulator.run([setup(eng, blocks)], wl).requests
    assert np.array_equal(a.first_token, b.first_token) and np.array_equal(a.finished, b.finished)
