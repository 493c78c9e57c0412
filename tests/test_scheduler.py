"""The vLLM-V1 scheduler against hand-worked schedules."""
from __future__ import annotations


from llmss_lab.config.engine import EngineConfig
from llmss_lab.kernel import simulator
from llmss_lab.workload import from_requests

from .conftest import ConstantLatency, make_scheduler, setup


def complete(s, step):
    """What the instance does after a step: one token for every request that caught up."""
    R = s.R
    for rid in step.rids.tolist():
        if R.computed[rid] >= R.num_tokens[rid]:
            R.num_tokens[rid] += 1


def test_budget_split_and_chunking():
    # budget 120: req0 takes 100, req1 gets a 20-token chunk, req2 waits
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=120, enable_prefix_caching=False)
    s, R = make_scheduler([100, 50, 30], [5, 5, 5], eng, num_blocks=100)
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0, 1]
    assert st.num_new.tolist() == [100, 20]
    complete(s, st)
    # next: req0 decodes 1, req1 finishes its prompt (30), req2 gets the rest of the budget (30 of 89)
    st = s.schedule(1.0)
    assert st.rids.tolist() == [0, 1, 2]
    assert st.num_new.tolist() == [1, 30, 30]
    assert st.computed_before.tolist() == [100, 20, 0]


def test_without_chunked_prefill_a_long_prompt_waits():
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_chunked_prefill=False, enable_prefix_caching=False)
    s, R = make_scheduler([40, 50], [3, 3], eng, num_blocks=100)
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0]  # 50 does not fit the 24 tokens left, and FCFS keeps it waiting
    complete(s, st)
    st = s.schedule(1.0)
    assert st.rids.tolist() == [0, 1] and st.num_new.tolist() == [1, 50]


def test_without_chunked_prefill_the_long_prefill_threshold_applies_first():
    """vLLM caps a prompt at long_prefill_token_threshold before asking whether it fits the budget."""
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_chunked_prefill=False,
                       enable_prefix_caching=False, long_prefill_token_threshold=32)
    s, R = make_scheduler([40, 100], [3, 3], eng, num_blocks=100)
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0, 1] and st.num_new.tolist() == [32, 32]


def test_max_num_seqs_caps_admission():
    eng = EngineConfig(max_num_seqs=2, enable_prefix_caching=False)
    s, R = make_scheduler([10, 10, 10], [4, 4, 4], eng, num_blocks=100)
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0, 1]
    assert list(s.waiting) == [2]


def test_preemption_takes_the_most_recent_and_requeues_it_first():
    # 16-token blocks, 5 blocks: two 32-token prompts fill 4 blocks; growth forces a preemption
    eng = EngineConfig(block_size=16, enable_prefix_caching=False, reserve_full_isl=False)
    s, R = make_scheduler([32, 32, 8], [40, 40, 4], eng, num_blocks=5)
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0, 1, 2]  # 2 + 2 + 1 blocks
    complete(s, st)
    # every request now needs a new block (token 33 / token 9 fits in block 1 of req2)
    st = s.schedule(1.0)
    assert st.preempted == [2, 1]           # tail first: req2, then req1, until req0 fits
    assert st.rids.tolist() == [0]
    assert list(s.waiting)[:2] == [1, 2]    # preempted requests go back to the front, in order
    assert R.computed[1] == 0 and R.preemptions[1] == 1 and R.preemptions[2] == 1


def test_phase_b_is_skipped_after_a_preemption():
    eng = EngineConfig(block_size=16, enable_prefix_caching=False, reserve_full_isl=False)
    s, R = make_scheduler([32, 32], [40, 40], eng, num_blocks=4)
    st = s.schedule(0.0)
    complete(s, st)
    st = s.schedule(1.0)
    assert st.preempted == [1]
    assert 1 not in st.rids.tolist()   # not re-admitted in the same step


def test_prefix_hits_on_full_blocks_and_the_last_token_is_recomputed():
    eng = EngineConfig(block_size=16, enable_prefix_caching=True)
    shared = list(range(40))
    ids = [shared + [1000 + i for i in range(8)], shared + [2000 + i for i in range(8)], list(range(48))]
    s, R = make_scheduler([48, 48, 48], [2, 2, 2], eng, num_blocks=50, token_ids=ids)
    s.max_seqs = 1
    st = s.schedule(0.0)
    assert st.rids.tolist() == [0]
    complete(s, st)
    s.max_seqs = 3
    st = s.schedule(1.0)
    # req1 shares 40 tokens = 2 full blocks (32 tokens); req2's 48 ids are the same first 40 too,
    # and its third block differs from req0's, so it also hits 32
    assert R.prefix_hit[1] == 32 and R.prefix_hit[2] == 32
    assert st.num_new.tolist() == [1, 16, 16]


def test_a_request_admitted_in_the_same_step_hits_the_blocks_allocated_before_it():
    """vLLM indexes full blocks as it allocates them, so two requests sharing a prefix and arriving
    together compute it once (the second reads the first's KV, written earlier in the same forward)."""
    eng = EngineConfig(block_size=16, enable_prefix_caching=True)
    shared = list(range(40))
    ids = [shared + [1000 + i for i in range(8)], shared + [2000 + i for i in range(8)]]
    s, R = make_scheduler([48, 48], [2, 2], eng, num_blocks=50, token_ids=ids)
    st = s.schedule(0.0)
    assert R.prefix_hit[0] == 0 and R.prefix_hit[1] == 32
    assert st.num_new.tolist() == [48, 16]
    assert s.kv.queries == 96 and s.kv.hits == 32


def test_a_resumed_request_is_not_counted_again_in_the_hit_rate():
    """Preempted and readmitted, a request finds its own blocks: vLLM keeps that out of the hit rate."""
    eng = EngineConfig(block_size=16, enable_prefix_caching=True)
    s, R = make_scheduler([48], [4], eng, num_blocks=50, token_ids=[list(range(48))])
    complete(s, s.schedule(0.0))
    assert (s.kv.queries, s.kv.hits) == (48, 0)
    s.running.remove(0)
    s._preempt(0)            # as a preemption does: its blocks go back to the free list, still indexed
    st = s.schedule(1.0)
    assert st.rids.tolist() == [0] and R.cache_hits[0] == 48 and st.num_new.tolist() == [1]
    assert (s.kv.queries, s.kv.hits) == (48, 0)


def test_a_fully_cached_prompt_still_computes_one_block():
    eng = EngineConfig(block_size=16, enable_prefix_caching=True)
    ids = [list(range(32)), list(range(32))]
    s, R = make_scheduler([32, 32], [2, 2], eng, num_blocks=50, token_ids=ids)
    s.max_seqs = 1
    complete(s, s.schedule(0.0))
    s.max_seqs = 2
    s.schedule(1.0)
    assert R.prefix_hit[1] == 16  # capped at num_tokens - 1, block aligned


def test_kernel_run_produces_every_token_once():
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_prefix_caching=False)
    wl = from_requests([(0.0, 100, 5), (0.0005, 30, 3), (0.01, 7, 1)])
    lat = ConstantLatency(1e6)
    raw = simulator.run([setup(eng, 100, lat)], wl)
    R = raw.requests
    assert (R.num_tokens - R.prompt == R.output).all()
    # 100-token prompt in chunks of 64 + 36: first token after step 2 (2 ms)
    assert R.first_token[0] == 2e6
    # request 1 arrived mid-step 1: queued at the step's end (engine takes requests between steps)
    assert R.queued[1] == 1e6
    assert sum(b.num_tokens for b in lat.shapes) == 100 + 30 + 7 + (5 - 1) + (3 - 1)


def test_async_scheduling_plans_each_step_while_the_previous_one_runs():
    # 1 ms steps. req0 (10-token prompt, 3 out) at 0; req1 (10, 2 out) arrives at 0.5 ms.
    # Async: at 0 the engine plans step 1 (req0's prompt) and step 2 (req0's first decode, counting the
    # token step 1 will give it); req1 is taken in when step 1 ends (1 ms) and planned into step 3, which
    # runs 2-3 ms. Step 4 (planned at 2 ms) has no decode for req0: its token from step 3 is its last.
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_prefix_caching=False, async_scheduling=True)
    wl = from_requests([(0.0, 10, 3), (0.0005, 10, 2)])
    lat = ConstantLatency(1e6)
    raw = simulator.run([setup(eng, 100, lat)], wl)
    R = raw.requests
    assert R.first_token.tolist() == [1e6, 3e6]
    assert R.finished.tolist() == [3e6, 4e6]
    assert R.queued[1] == 1e6 and R.scheduled[1] == 1e6
    assert [b.num_tokens for b in lat.shapes] == [10, 1, 11, 1]    # no step wasted on a finished request
    assert raw.instances[0].log.start.tolist() == [0.0, 1e6, 2e6, 3e6]
    assert (R.pending == 0).all()
    # the same run scheduled synchronously: req1 joins step 2 and both finish with step 3
    sync = simulator.run([setup(eng.with_overrides({"async_scheduling": False}), 100, ConstantLatency(1e6))], wl)
    assert sync.requests.first_token.tolist() == [1e6, 2e6] and sync.requests.finished.tolist() == [3e6, 3e6]


def test_requests_of_the_same_instant_share_the_first_step():
    """An idle engine that gets a burst plans once every request of the instant is in (vLLM drains its
    input queue before it schedules), not a step for the first request and one for the rest."""
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_prefix_caching=False)
    lat = ConstantLatency(1e6)
    raw = simulator.run([setup(eng, 100, lat)], from_requests([(0.0, 10, 2), (0.0, 10, 2), (0.0, 10, 2),
                                                               (0.0005, 10, 2)]))
    assert [b.num_tokens for b in lat.shapes] == [30, 3 + 10, 1]
    assert raw.requests.first_token.tolist() == [1e6, 1e6, 1e6, 2e6]


def test_async_scheduling_takes_mid_step_arrivals_in_at_the_step_boundary():
    """With nothing left to plan ahead, vLLM's engine waits on the running step and then reads every request
    that came meanwhile: one arrival mid-step does not get a step planned for it alone."""
    eng = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, enable_prefix_caching=False, async_scheduling=True)
    lat = ConstantLatency(1e6)
    # req0's prompt step gives its only token, so there is no step to plan ahead of it at 0
    raw = simulator.run([setup(eng, 100, lat)], from_requests([(0.0, 10, 1), (0.0003, 10, 2), (0.0006, 10, 2)]))
    assert [b.num_tokens for b in lat.shapes] == [10, 20, 2]
    assert raw.requests.queued.tolist() == [0.0, 1e6, 1e6]
    assert raw.requests.first_token.tolist() == [1e6, 2e6, 2e6]


def test_a_finished_request_leaves_no_bookkeeping_behind():
    """Per-request KV state goes with the request, so a long run's manager does not grow with every request."""
    eng = EngineConfig(block_size=16, enable_prefix_caching=True)
    s, R = make_scheduler([40, 20, 70, 33], [3, 5, 2, 4], eng, num_blocks=50, token_ids=[list(range(n)) for n in
                                                                                       (40, 20, 70, 33)])
    t = 0.0
    while s.running or s.waiting:
        complete(s, s.schedule(t))
        for rid in [r for r in s.running if R.num_tokens[r] >= R.final[r]]:
            s.finish(rid)
        t += 1.0
    kv = s.kv
    assert kv.blocks == {} and kv.num_cached == {} and kv._hashes == {} and kv._token_ids == {}


def test_static_batching_takes_new_requests_only_when_the_batch_is_done():
    """``static``: a batch of up to max_num_seqs waiting requests runs until its longest request is done;
    slots freed early stay empty, and a request that arrives meanwhile waits for the next batch. vLLM's
    continuous batching fills a freed slot at the next step."""
    eng = EngineConfig(max_num_seqs=2, max_num_batched_tokens=64, enable_prefix_caching=False)
    # 1 ms steps; req0 has 2 tokens to give, req1 6; req2 and req3 arrive at 0.5 ms
    wl = from_requests([(0.0, 10, 2), (0.0, 10, 6), (0.0005, 10, 2), (0.0005, 10, 2)])
    static = simulator.run([setup(eng.with_overrides({"scheduler": "static"}), 100, ConstantLatency(1e6))], wl)
    R = static.requests
    assert R.finished[:2].tolist() == [2e6, 6e6]
    assert R.scheduled[2:].tolist() == [6e6, 6e6]   # not at 2 ms, when req0's slot freed
    assert R.finished[2:].tolist() == [8e6, 8e6]
    continuous = simulator.run([setup(eng, 100, ConstantLatency(1e6))], wl).requests
    assert continuous.scheduled[2:].tolist() == [2e6, 4e6]   # each as a slot frees
