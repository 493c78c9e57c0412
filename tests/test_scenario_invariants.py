"""Invariants of whole runs under generated scenarios (hypothesis, derandomised so CI is reproducible):
small clusters (replicas, DP, TP, PP, EP, a P/D split), engine settings, policies, memory tiers, prefix
pools, PIM offload, power, and small synthetic workloads, through the public Scenario API.

Every generated scenario either runs, and then: every request finishes exactly once with exactly its
output tokens; tokens are conserved; time is causal; an instance's steps never overlap; KV and every
pool stay within capacity; energy is the integral of power - or it is refused with an LlmssError that
names where (never another exception, never a hang: an alarm turns a stuck run into a failure).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

from llmss_lab.errors import LlmssError
from llmss_lab.kernel.moe import GATES
from llmss_lab.kernel.router import ROUTERS
from llmss_lab.scenario import Scenario

from .conftest import alarm

LLAMA, QWEN, MOE = "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B-Instruct-2507"
PIM = ("HBM2_1GB_2000_pim", "LPDDR5_2GB_6400_pim")
EXAMPLES = int(os.environ.get("LLMSS_INVARIANT_EXAMPLES", "520"))   # CI: >= 500
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTCOMES: dict[str, int] = {"ran": 0, "refused": 0}


@st.composite
def scenarios(draw) -> Scenario:
    model = draw(st.sampled_from([LLAMA, LLAMA, LLAMA, QWEN, MOE]))
    instances = draw(st.integers(1, 3))
    kw: dict = {"model": model, "instances": instances}
    if model == MOE:
        kw["dp"] = draw(st.sampled_from([1, 2]))
        kw["ep"] = draw(st.sampled_from([1, kw["dp"]]))
        kw["expert_gate"] = draw(st.sampled_from(GATES.names()))
        kw["gate_skew"] = draw(st.floats(0.5, 2.0))
    else:
        kw["tp"] = draw(st.sampled_from([1, 2]))
        kw["pp"] = draw(st.sampled_from([1, 1, 2]))
    if instances > 1 and kw.get("dp", 1) == 1 and draw(st.booleans()):   # P/D of DP groups is not modelled
        kw["prefill_instances"] = draw(st.integers(1, instances - 1))
        kw["kv_transfer"] = draw(st.sampled_from(["layer", "whole", "pull"]))
    # memory from tight (a few hundred KV blocks: preemption) to roomy; the odd refusal stays in the mix
    kw["npu_mem_gib"] = draw(st.sampled_from([17.2, 24.0, 40.0, 96.0]) if model == LLAMA else st.just(96.0))
    kw["gpu_memory_utilization"] = draw(st.sampled_from([0.9, 0.9, 0.9, 0.5]))
    chunked = draw(st.integers(0, 3)) > 0
    kw.update(max_num_seqs=draw(st.integers(1, 48)),
              max_num_batched_tokens=draw(st.sampled_from([64, 512, 2048] if chunked else [2048, 2048, 2048, 256])),
              block_size=draw(st.sampled_from([8, 16, 32])), enable_prefix_caching=draw(st.booleans()),
              enable_chunked_prefill=chunked, router=draw(st.sampled_from(ROUTERS.names())),
              eviction=draw(st.sampled_from(["lru", "mru"])), async_scheduling=draw(st.booleans()))
    tier = draw(st.sampled_from(["", "", "cpu", "cxl"]))
    if tier:
        kw["prefix_storage"] = tier
        kw["prefix_sharing"] = draw(st.sampled_from(["instance", "node", "cluster"]))
        kw["enable_prefix_caching"] = True
    if tier == "cxl" or draw(st.integers(0, 5)) == 0:
        kw["cxl_mem_gib"] = draw(st.sampled_from([64.0, 256.0]))
    if kw.get("pp", 1) == 1:           # weights off the NPU with PP are refused (not modelled)
        kw["weights_on"] = draw(st.sampled_from(["npu"] * 6 + ["cpu"] + (["cxl"] if kw.get("cxl_mem_gib") else [])))
    if model == LLAMA and kw.get("pp", 1) == 1 and draw(st.integers(0, 4)) == 0:
        kw.update(pim_device=draw(st.sampled_from(PIM)), attn_offload=True,
                  sub_batch_interleaving=draw(st.booleans()))
    kw["power"] = draw(st.booleans())
    kw.update(num_requests=draw(st.integers(1, 20)), rate=draw(st.sampled_from([2.0, 10.0, 50.0])),
              input_len=draw(st.sampled_from(["uniform:1:300", "fixed:64", "lognormal:120:0.8"])),
              output_len=draw(st.sampled_from(["uniform:1:24", "fixed:1", "fixed:16", "uniform:32:160"])),
              arrival=draw(st.sampled_from(["poisson", "gamma"])),
              shared_prefix_len=draw(st.sampled_from([0, 0, 32, 96])), num_prefixes=draw(st.integers(1, 3)),
              seed=draw(st.integers(0, 10_000)))
    if model == LLAMA and kw.get("pp") == 1 and not kw.get("attn_offload") and draw(st.integers(0, 3)) == 0:
        # KV pressure: a cache of a hundred-odd blocks under a burst of long outputs, so requests get preempted
        kw.update(tp=1, weights_on="npu", npu_mem_gib=draw(st.sampled_from([16.8, 17.0])), gpu_memory_utilization=0.9,
                  num_requests=20, rate=50.0, output_len="uniform:32:160", block_size=16,
                  max_num_seqs=draw(st.integers(16, 48)))
    return Scenario(**kw)


def check(sc: Scenario, res) -> None:
    wl = sc.workload()
    R = res.requests
    n = len(wl.arrival_ns)
    # every request finishes exactly once, with exactly its tokens
    assert R.sizes["request"] == n and len(np.unique(R.request.values)) == n
    assert np.isfinite(R.finish.values).all() and res.summary()["completed"] == n
    assert (R.input_tokens.values == wl.input_toks).all() and (R.output_tokens.values == wl.output_toks).all()
    # time is causal
    eps = 1e-9
    a, q, s, f, e = (R[k].values for k in ("arrival", "queued", "scheduled", "first_token", "finish"))
    assert (a <= q + eps).all() and (q <= s + eps).all() and (s <= f + eps).all() and (f <= e + eps).all()
    # steps of an instance never overlap; with PP a step is a micro-batch through every stage, so at
    # most pp of them are in flight at once (one per stage)
    it = res.iterations
    for inst in np.unique(it.instance.values):
        sel = it.instance.values == inst
        start, end = it.start.values[sel], it.start.values[sel] + it.duration.values[sel] * 1e-3
        assert (np.diff(start) >= 0).all()
        in_flight = np.searchsorted(start, end - 1e-9, side="left") - np.arange(len(start))
        assert in_flight.max(initial=1) <= sc.pp, (inst, int(in_flight.max()))
    # tokens are conserved: everything computed is a prompt token, a decoded token or a recomputed one;
    # prompt tokens found in a cache at first admission (NPU or a pool: prefix_hit_tokens includes the
    # recalled ones) are not computed, and recomputed_tokens is already net of what a cache gave back
    # when a preempted request returned. With a P/D split the decode
    # instance produces every output token itself (as vLLM's disaggregated decode does after loading
    # the prompt's KV), so each request costs one token more than on a single instance
    computed = int(it.num_tokens.sum())
    handoff = n if sc.prefill_instances else 0
    expected = int(R.input_tokens.sum() + (R.output_tokens - 1).sum() + R.recomputed_tokens.sum()
                   - R.prefix_hit_tokens.sum()) + handoff
    assert computed == expected, (computed, expected)
    # KV and every pool stay within capacity
    m = res.memory
    assert ((m.npu_kv + m.npu_prefix_cache) <= m.npu_kv_capacity * (1 + 1e-9)).all()
    assert (m.npu_used <= sc.npu_mem_gib * 1024 * (1 + 1e-9)).all()
    if "pool_used" in m:
        assert (m.pool_used <= m.pool_capacity * (1 + 1e-9)).all()
    # energy is the integral of power
    if "power" in res.power:
        t = res.power.time.values
        width = np.diff(np.concatenate([[0.0], t]))
        integral = float((res.power.power.sum(["node", "component"]).values * width).sum())
        assert integral == pytest.approx(float(res.power.energy.sum()), rel=1e-6)


@SETTINGS
@given(scenarios())
def test_every_generated_scenario_runs_correctly_or_is_refused_with_a_reason(ref, sc):
    note(repr(sc))
    try:
        with alarm(60):
            res = sc.run(ref)
    except LlmssError as exc:
        OUTCOMES["refused"] += 1
        assert str(exc) and (getattr(exc, "where", None) or getattr(exc, "source", None)), exc   # names where
        return
    OUTCOMES["ran"] += 1
    for label, on in (("preemption", res.summary()["preemptions"] > 0), ("P/D split", sc.prefill_instances > 0),
                      ("PP", sc.pp > 1), ("MoE", sc.model == MOE), ("prefix pool", bool(sc.prefix_storage)),
                      ("PIM", sc.attn_offload), ("power", sc.power), ("prefix hits", res.summary()["prefix_hit_tokens"] > 0)):
        if on:
            event(label)
    check(sc, res)


def test_most_generated_scenarios_actually_ran():
    """The invariants above must be exercised, not skipped by refusals (runs after the test above)."""
    total = OUTCOMES["ran"] + OUTCOMES["refused"]
    if total < EXAMPLES // 2:
        pytest.skip("the generated-scenario test did not run in this session")
    assert OUTCOMES["ran"] >= 0.7 * total, OUTCOMES


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_same_scenario_gives_an_identical_dataset(ref, sc):
    try:
        a = sc.run(ref)
    except LlmssError:
        return
    b = sc.run(ref)
    for name in ("requests", "iterations", "timeseries", "memory"):
        getattr(a, name).drop_attrs().equals(getattr(b, name).drop_attrs()) or pytest.fail(name)
    if "power" in a.power:
        assert a.power.drop_attrs().identical(b.power.drop_attrs())
