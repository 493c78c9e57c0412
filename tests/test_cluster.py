"""Cluster features: collectives, P/D hand-off, DP lockstep, routing, MoE gates, every shipped config."""
from __future__ import annotations

import glob
from array import array
from pathlib import Path

import numpy as np
import pytest

from llmss_lab import simulate
from llmss_lab.config import EngineConfig, ModelSpec
from llmss_lab.errors import InputError
from llmss_lab.kernel import simulator
from llmss_lab.kernel.fabric import Fabric
from llmss_lab.kernel.moe import GATES
from llmss_lab.latency.interconnect import Link, all_gather_ns, all_reduce_ns, reduce_scatter_ns
from llmss_lab.latency.iteration import stage_layers
from llmss_lab.results.dataset import iterations_dataset, timeseries_dataset
from llmss_lab.config.cluster import ClusterSpec, InstanceSpec, MemorySpec, NodeSpec
from llmss_lab.workload import Workload, load_trace

from .conftest import ConstantLatency, setup

MiB = 2**20


def wl_of(arrival_ns, prompt, output, token_ids=None) -> Workload:
    return Workload(np.asarray(arrival_ns), np.asarray(prompt), np.asarray(output), token_ids or [])


# ---- interconnect -----------------------------------------------------------------------------------

def test_collectives_match_hand_computed_alpha_beta():
    link = Link(100.0, 1000.0)               # 100 GB/s (2**30 B), 1 us per message
    chunk = 1000.0 + MiB / (100 * 2**30) * 1e9   # one ring step of a 4 MiB tensor over 4 ranks: 10765.625 ns
    assert link.transfer_ns(MiB) == pytest.approx(10765.625)
    assert all_gather_ns(link, 4, 4 * MiB) == pytest.approx(3 * chunk)
    reduce = 3 * MiB / (1000 * 2**30) * 1e9      # 2 reads + 1 write of a chunk at 1000 GB/s
    assert reduce_scatter_ns(link, 4, 4 * MiB, 1000.0) == pytest.approx(3 * (chunk + reduce))
    assert all_reduce_ns(link, 4, 4 * MiB, 1000.0) == pytest.approx(3 * (chunk + reduce) + 3 * chunk)
    assert all_reduce_ns(link, 1, 4 * MiB) == 0.0


def test_transfers_sharing_a_port_queue():
    link = Link(1.0, 0.0)
    f = Fabric()
    one = link.transfer_ns(MiB)
    a = f.send(link, 0, 2, 0.0, MiB)
    b = f.send(link, 1, 2, 0.0, MiB)          # same receiver: waits for the first
    c = f.send(link, 3, 4, 0.0, MiB)          # disjoint ports: no wait
    assert (a, b, c) == pytest.approx((one, 2 * one, one))
    assert f.bytes_moved == 3 * MiB


def test_pipeline_stages_split_blocks_like_vllm():
    assert stage_layers(32, 4) == [8, 8, 8, 8]
    assert stage_layers(10, 4) == [2, 3, 3, 2]
    assert sum(stage_layers(80, 3)) == 80


# ---- P/D disaggregation -----------------------------------------------------------------------------

def test_pipeline_hand_overs_are_reported_per_step_at_their_alpha_beta_cost(ref):
    """Each step hands its tokens' activations (hidden size x 2 bytes each) from stage to stage over the config's
    link: alpha + bytes / beta per boundary. The iterations Dataset showed collectives only, so PP looked free."""
    from llmss_lab.scenario import Scenario

    it = Scenario(num_requests=12, pp=2, seed=1).run(ref).iterations
    link = Link(16.0, 20000.0)                       # the scenario's default link, GB/s and ns
    expected = [link.transfer_ns(t * 4096 * 2) * 1e-6 for t in it.num_tokens.values.tolist()]
    assert it.p2p.values.tolist() == pytest.approx(expected) and it.p2p.attrs["units"] == "ms"
    assert (it.duration >= it.p2p).all() and not it.comm.any()
    assert not Scenario(num_requests=12, tp=2, seed=1).run(ref).iterations.p2p.any()


def pd_setups(model: ModelSpec, kv_per_token: float):
    eng = EngineConfig(enable_prefix_caching=False)
    p = setup(eng, 4000, ConstantLatency(2e6))
    d = setup(eng, 4000, ConstantLatency(1e6))
    p.role, d.role, d.name = "prefill", "decode", "dec"
    p.kv_bytes_per_token = d.kv_bytes_per_token = kv_per_token
    return [p, d]


@pytest.mark.parametrize("mode", simulator.KV_TRANSFERS)
def test_pd_hand_off_conserves_requests_tokens_and_kv_bytes(ref, mode):
    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    kvb = model.kv_bytes_per_token()
    rng = np.random.default_rng(3)
    n = 40
    wl = wl_of(np.sort(rng.integers(0, 2e9, n)), rng.integers(5, 300, n), rng.integers(1, 40, n))
    raw = simulator.run(pd_setups(model, kvb), wl, links=(Link(16.0, 2000.0), Link(16.0, 2000.0)), kv_transfer=mode)
    R = raw.requests
    pre, dec = raw.instances
    prefill_tokens = sum(pre.log.tokens)
    decode_tokens = sum(dec.log.tokens)
    assert prefill_tokens == int(R.prompt.sum())            # every prompt prefilled once
    assert decode_tokens == int(R.output.sum())              # last prompt token + every later token, once
    assert (R.prefill_instance == 0).all() and (R.instance == 1).all()
    assert raw.kv_bytes_moved == pytest.approx(float((R.prompt * kvb).sum()))
    assert (R.kv_transfer > 0).all()
    assert (R.first_token >= R.arrival + 2e6 + R.kv_transfer).all()   # TTFT spans prefill and transfer
    ts = timeseries_dataset(raw)   # per-second counts: the role coordinate picks each total's owner once
    assert list(ts.role.values) == ["prefill", "decode"]
    assert float(ts.prompt_throughput.where(ts.role != "decode").sum()) == int(R.prompt.sum())
    assert float(ts.generation_throughput.where(ts.role != "prefill").sum()) == int(R.output.sum())


def test_iterations_are_every_step_of_every_instance_in_start_order_apart_from_the_step_log(ref):
    """Built a variable at a time (a long run's step log is gigabytes): the same rows as concatenating the
    instances' logs and sorting them stably by start, in s / ms / int32 (int64 where a value needs it), and never
    a view of the live log."""
    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    rng = np.random.default_rng(5)
    n = 30
    wl = wl_of(np.sort(rng.integers(0, 2e9, n)), rng.integers(5, 300, n), rng.integers(1, 40, n))
    split = simulator.run(pd_setups(model, model.kv_bytes_per_token()), wl)
    alone = simulator.run([setup(EngineConfig(), 4096)], wl)
    for raw in (split, alone):
        logs = [inst.log for inst in raw.instances]
        start = np.concatenate([np.asarray(log.start) for log in logs])
        order = np.argsort(start, kind="stable")

        def col(key, logs=logs, order=order):
            return np.concatenate([np.asarray(getattr(log, key)) for log in logs])[order]
        it = iterations_dataset(raw)
        assert it.sizes["step"] == len(start) > 0
        assert (it.instance.values == np.concatenate([np.full(len(log.start), i) for i, log in enumerate(logs)])[order]).all()
        assert np.array_equal(it.start.values, col("start") * 1e-9)
        assert np.array_equal(it.duration.values, col("duration") * 1e-6)
        assert np.array_equal(it.decode_kv_mean.values, col("decode_kv_mean"))
        assert np.array_equal(it.num_tokens.values, col("tokens")) and it.num_tokens.dtype == np.int32
        assert np.array_equal(it.kv_blocks_used.values, col("kv_blocks_used"))
        counts = ("instance", "num_seqs", "prefill_history", "running", "preempted")
        assert {it[v].dtype for v in counts} == {np.dtype(np.int32)}
        for v in it.variables.values():
            assert not any(np.shares_memory(v.values, np.asarray(getattr(log, k))) for log in logs
                           for k in ("start", "duration", "tokens", "decode_kv_mean", "kv_blocks_used"))
    assert len({int(i) for i in iterations_dataset(split).instance.values}) == 2
    # a count beyond int32 keeps int64 and its exact value (never wrapped)
    log = split.instances[1].log
    log.prefill_history = array("q", log.prefill_history)   # a log of int64 counts, as bounded_by gives past 2**31
    log.prefill_history[-1] = 2**40 + 3
    it = iterations_dataset(split)
    assert it.prefill_history.dtype == np.int64 and int(it.prefill_history.max()) == 2**40 + 3
    assert it.num_tokens.dtype == np.int32
    # spent (Results.from_raw: the log's last use): the same Dataset, and the log keeps only what it does not hold
    busy = list(split.instances[0].log.busy)
    assert iterations_dataset(split, spend=True).identical(it)
    assert all(len(log.start) == len(log.tokens) == len(log.decode_kv_max) == 0 for log in
               (inst.log for inst in split.instances))
    assert list(split.instances[0].log.busy) == busy and len(busy) > 0


@pytest.mark.parametrize("mode", simulator.KV_TRANSFERS)
def test_a_prefill_instance_holds_the_kv_until_the_decode_instance_takes_the_request(mode):
    """The prefill side freed a request's blocks when its prompt was done, so a slow decoder's queue grew without
    bound, its KV held by nobody; as in vLLM, the blocks stay until the decode side admits the request, and a
    full prefill cache stops the prefills (back-pressure)."""
    kvb = 1000.0
    p = setup(EngineConfig(enable_prefix_caching=False), 14, ConstantLatency(2e6))    # 7 blocks a prompt: room for 2
    d = setup(EngineConfig(enable_prefix_caching=False, max_num_seqs=1), 4000, ConstantLatency(1e6))
    p.role, d.role, d.name = "prefill", "decode", "dec"
    p.kv_bytes_per_token = d.kv_bytes_per_token = kvb
    n = 12
    raw = simulator.run([p, d], wl_of(np.zeros(n, np.int64), np.full(n, 100), np.full(n, 50)),
                        links=(Link(16.0, 2000.0), Link(16.0, 2000.0)), kv_transfer=mode)
    pre, dec = raw.instances
    assert max(dec.log.waiting) <= 2 < n - 1           # handed over but not taken in: what the prefill cache holds
    assert max(pre.log.kv_blocks_used) <= 14 and pre.scheduler.kv.pool.num_used == 0   # every block given back
    assert (raw.requests.finished > 0).all() and int(raw.requests.output.sum()) == n * 50


def test_pd_pull_reads_the_kv_at_a_step_boundary_and_schedules_one_step_later(ref):
    """Prefill 2 ms, decode step 1 ms, 10-token prompts of Llama-3.1-8B (1.25 MiB of KV) over a
    16 GiB/s link with 2 us latency: a read takes 2 + 76.29 us. Request A finds the decode instance
    idle, so pulling and pushing hand it over alike: KV in at 2.078 ms, first token at 3.078 ms.
    Request B's prefill ends at 7.5 ms while A decodes (boundaries at 7.078, 8.078, ... ms). Pushed,
    its KV is in at 7.578 and it runs in the 8.078 step. Pulled, the decode side sees it at 8.078,
    the read ends at 8.156, and it runs in the 9.078 step: one step later."""
    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    read = 2000.0 + 10 * model.kv_bytes_per_token() / (16 * 2**30) * 1e9
    first = {}
    for mode in ("whole", "pull"):
        raw = simulator.run(pd_setups(model, model.kv_bytes_per_token()), wl_of([0, 5.5e6], [10, 10], [30, 3]),
                            links=(Link(16.0, 2000.0), Link(16.0, 2000.0)), kv_transfer=mode)
        first[mode] = raw.requests.first_token.copy()
        if mode == "pull":
            # from the end of the prefill to the end of the read: B waited 0.5 ms + one read to be seen
            assert raw.requests.kv_transfer.tolist() == pytest.approx([read, (8e6 + 2 * read) - 7.5e6])
    assert first["whole"].tolist() == pytest.approx([2e6 + read + 1e6, 8e6 + read + 1e6])
    assert first["pull"].tolist() == pytest.approx([2e6 + read + 1e6, 9e6 + read + 1e6])


@pytest.mark.parametrize("mode", simulator.KV_TRANSFERS)
@pytest.mark.parametrize("prefill_gpus, decode_gpus", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 2)])
def test_pd_kv_moves_over_the_links_of_the_side_with_fewer_gpus(mode, prefill_gpus, decode_gpus):
    """A prompt's KV (1000 tokens x 128 KiB over all GPUs) on an idle 16 GiB/s link with 2 us latency: every GPU
    has one link, so the transfer runs over min(prefill GPUs, decode GPUs) links in parallel. A TP2 prefill
    instance handing to a TP1 decode instance took half the time of TP1 -> TP1, as if the one decode GPU
    received over two links."""
    total = 1000 * 131072.0
    p = setup(EngineConfig(enable_prefix_caching=False), 4000, ConstantLatency(2e6))
    d = setup(EngineConfig(enable_prefix_caching=False), 4000, ConstantLatency(1e6))
    p.role, d.role, d.name = "prefill", "decode", "dec"
    p.lanes, d.lanes = prefill_gpus, decode_gpus
    p.kv_bytes_per_token, d.kv_bytes_per_token = 131072.0 / prefill_gpus, 131072.0 / decode_gpus
    link = Link(16.0, 2000.0)
    raw = simulator.run([p, d], wl_of([0], [1000], [5]), links=(link, link), kv_transfer=mode)
    lanes = min(prefill_gpus, decode_gpus)
    whole = link.transfer_ns(total / lanes)
    # pushed after the prefill or pulled by an idle decoder: one whole transfer; streamed per layer (one layer here)
    # the same, as the only layer's KV leaves when the prefill ends
    assert raw.requests.kv_transfer.tolist() == pytest.approx([whole])
    assert raw.kv_bytes_moved == pytest.approx(total) and raw.requests.kv_bytes.tolist() == pytest.approx([total])


def test_pd_results_say_where_each_prompt_ran_and_what_its_kv_hand_off_cost(ref):
    """The requests Dataset named only the decode instance: which prefill instance took a prompt, how many KV bytes
    it sent and how long that took were computed and dropped. Prefill on node 0 and decode on node 1 over an
    8 GB/s, 20 us link between nodes: the first hand-off finds the link idle and takes 20 us + bytes / 8 GB/s."""
    def inst(role: str, where: str) -> InstanceSpec:
        return InstanceSpec("meta-llama/Llama-3.1-8B", "RTXPRO6000", MemorySpec(96, 1597), pd_type=role, where=where)

    spec = ClusterSpec([NodeSpec([inst("prefill", "p")]), NodeSpec([inst("decode", "d")])], [64.0, 8.0],
                       [1000.0, 20000.0])
    q = simulate(spec, load_trace(ref / "workloads/example_trace.jsonl", 6), reference_dir=ref,
                 kv_transfer="whole").requests
    assert q.prefill_instance.values.tolist() == [0] * 6 and q.instance.values.tolist() == [1] * 6
    kv = q.input_tokens.values * 131072.0
    assert q.kv_bytes.values.tolist() == pytest.approx(kv.tolist()) and q.kv_bytes.attrs["units"] == "B"
    hand = [Link(8.0, 20000.0).transfer_ns(b) * 1e-6 for b in kv]
    assert float(q.kv_transfer[0]) == pytest.approx(hand[0]) and q.kv_transfer.attrs["units"] == "ms"
    assert (q.kv_transfer.values >= np.array(hand) - 1e-9).all()
    colocated = simulate(ref / "configs/cluster/single_node_single_instance.json",
                         load_trace(ref / "workloads/example_trace.jsonl", 3), reference_dir=ref).requests
    assert "kv_transfer" not in colocated and "prefill_instance" not in colocated


def test_pd_whole_transfer_is_never_faster_than_layer_streaming(ref):
    res = {}
    for mode in ("layer", "whole"):
        r = simulate(ref / "configs/cluster/single_node_pd_instance.json", ref / "workloads/example_trace.jsonl",
                     reference_dir=ref, kv_transfer=mode, num_requests=30)
        res[mode] = r.summary()["mean_ttft_ms"]
    assert res["whole"] >= res["layer"]


# ---- data parallel lockstep ---------------------------------------------------------------------------

def test_dp_group_members_step_in_lockstep():
    eng = EngineConfig(enable_prefix_caching=False)
    a, b = setup(eng, 4000, ConstantLatency(1e6)), setup(eng, 4000, ConstantLatency(3e6))
    a.name, b.name = "a", "b"
    a.dp_group = b.dp_group = "A"
    wl = wl_of([0, 0, 5e6, 9e6], [10, 50, 20, 30], [5, 9, 3, 12])
    raw = simulator.run([a, b], wl, router="round_robin")
    starts = [np.asarray(i.log.start) for i in raw.instances]
    durs = [np.asarray(i.log.duration) for i in raw.instances]
    assert len(raw.engines) == 1
    common = np.intersect1d(starts[0], starts[1])
    assert len(common) > 0
    for t in common:  # a shared step lasts as long as the slowest member
        assert durs[0][starts[0] == t][0] == durs[1][starts[1] == t][0] == 3e6
    # a member with nothing to do still runs (a dummy), so the group never runs faster than member b
    every = np.union1d(starts[0], starts[1])
    assert np.all(np.diff(every) >= 3e6 - 1e-6)


# ---- routing -----------------------------------------------------------------------------------------

def routed(policy: str, wl: Workload, n_inst: int = 3, seed: int = 0) -> np.ndarray:
    eng = EngineConfig()
    setups = []
    for i in range(n_inst):
        s = setup(eng, 4000, ConstantLatency(5e6))
        s.name = f"i{i}"
        setups.append(s)
    return simulator.run(setups, wl, router=policy, seed=seed).requests.instance


def test_round_robin_and_random_routing():
    wl = wl_of(np.arange(9) * 1e6, [10] * 9, [3] * 9)
    assert routed("round_robin", wl).tolist() == [0, 1, 2] * 3
    r1, r2 = routed("random", wl, seed=1), routed("random", wl, seed=1)
    assert r1.tolist() == r2.tolist() and set(r1) <= {0, 1, 2}


def test_load_aware_routers_avoid_the_busy_instance():
    # three requests at t=0 are all queued at once; a long-running first request keeps instance 0 busy
    wl = wl_of([0, 1, 2, 3, 4, 5], [10] * 6, [400, 2, 2, 2, 2, 2])
    for policy in ("least_loaded", "load_score"):
        inst = routed(policy, wl, n_inst=2)
        assert inst[0] == 0 and (inst[1:] == 1).sum() >= 3, policy


def test_prefix_aware_router_follows_the_cached_prefix():
    shared = list(range(64))
    ids = [shared + [1000 + i] for i in range(4)] + [[5000 + j for j in range(65)]]
    t = [0, 50e6, 60e6, 70e6, 80e6]
    wl = wl_of(t, [65] * 5, [2] * 5, ids)
    inst = routed("prefix_aware", wl, n_inst=3)
    assert len(set(inst[:4].tolist())) == 1      # later requests go where the prefix is cached


# ---- MoE ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["balanced", "random", "zipf"])
@pytest.mark.parametrize("tokens", [1, 7, 300, 2048])
def test_expert_gates_conserve_token_expert_pairs(policy, tokens):
    g = GATES.get(policy)(16, 2, 4, 32, seed=5, skew=1.5)
    r = g.route(tokens)
    loads = r.layer_loads(32)
    assert loads.shape == (32, 16)
    np.testing.assert_allclose(loads.sum(axis=1), tokens * 2)
    assert (loads <= tokens + 1e-9).all()
    assert (r.local_tokens <= tokens).all() and (r.activated <= 4).all()


def test_zipf_gate_skews_expert_load():
    flat = GATES.get("zipf")(16, 2, 1, 8, seed=0, skew=0.0).route(4096).expert_tokens
    hot = GATES.get("zipf")(16, 2, 1, 8, seed=0, skew=2.0).route(4096).expert_tokens
    assert hot.max(axis=1).mean() > 2 * flat.max(axis=1).mean()


def test_moe_run_records_expert_load_per_layer(ref, tmp_path):
    res = simulate(ref / "configs/cluster/single_node_moe_single_instance.json",
                   ref / "workloads/example_trace.jsonl", reference_dir=ref, num_requests=20)
    ex = res.experts
    model = ModelSpec.from_hf_config(ref / "configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json")
    assert ex.expert_load.dims == ("moe_group", "layer", "expert")
    assert ex.sizes["layer"] == model.num_layers and ex.sizes["expert"] == model.num_experts
    per_layer = ex.expert_load.sum("expert").values[0]
    tokens = int(res.iterations.num_tokens.sum())
    # balanced gate: every layer routes every computed token to top-k experts (group tokens >= computed)
    assert np.allclose(per_layer, per_layer[0]) and per_layer[0] >= tokens * model.experts_per_token
    back = type(res).load(res.save(tmp_path / "moe.nc"))
    np.testing.assert_array_equal(back.experts.expert_load.values, ex.expert_load.values)


# ---- every shipped config ----------------------------------------------------------------------------

def shipped_configs(root: Path):
    return sorted(glob.glob(str(root / "configs/cluster/*.json"))) + sorted(glob.glob(str(root / "ispass26/cluster_config/*.json")))


def test_every_shipped_cluster_config_runs_or_names_what_is_missing(ref):
    ran = 0
    for c in shipped_configs(ref):
        legacy = "ispass26" in c
        root = ref / "ispass26" if legacy else ref
        wl = load_trace(ref / "ispass26/dataset/sharegpt_req100_rate10_llama.jsonl", 15)
        name = Path(c).name
        try:
            res = simulate(c, wl, reference_dir=root)
        except InputError as e:   # includes UnsupportedFeature: no shipped config may need one
            assert "no profile for hardware" in str(e), f"{name}: {e}"
            continue
        assert int(res.requests.sizes["request"]) == 15 and np.isfinite(res.requests.finish.values).all()
        ran += 1
    assert ran >= 28


def test_heterogeneous_cluster_runs_each_instance_on_its_own_hardware(ref):
    def inst(hw: str, mem: float, where: str) -> InstanceSpec:
        return InstanceSpec("meta-llama/Llama-3.1-8B", hw, MemorySpec(mem, 1000), where=where)

    spec = ClusterSpec([NodeSpec([inst("A6000", 40, "gpu")]), NodeSpec([inst("TPU-v6e-1", 32, "tpu")])], 112.0, 0.0)
    wl = load_trace(ref / "ispass26/dataset/sharegpt_req100_rate10_llama.jsonl", 40)
    res = simulate(spec, wl, reference_dir=ref / "ispass26", router="round_robin")
    it = res.iterations
    assert sorted(res.timeseries.instance.values.tolist()) == ["gpu", "tpu"]
    # same kind of work, different hardware: their step times differ
    dur = [float(it.duration.where(it.instance == i).median()) for i in (0, 1)]
    assert abs(dur[0] - dur[1]) / max(dur) > 0.05


def test_results_name_each_instances_hardware_model_and_node(ref, tmp_path):
    """The results named one hardware for a mixed cluster, the first instance's (attrs 'hardware'), and nothing per
    instance: an H100 instance's memory and throughput series read as an RTX PRO 6000's."""
    from llmss_lab import load_results

    def inst(hw: str, mem: float, tp: int, where: str) -> InstanceSpec:
        return InstanceSpec("meta-llama/Llama-3.1-8B", hw, MemorySpec(mem, 1000), tp_size=tp, where=where)

    spec = ClusterSpec([NodeSpec([inst("RTXPRO6000", 96, 1, "pro")]), NodeSpec([inst("H100", 80, 2, "h100")])],
                       [64.0, 16.0], [0.0, 20000.0])
    res = simulate(spec, load_trace(ref / "workloads/example_trace.jsonl", 8), reference_dir=ref)
    res.save(tmp_path / "run.nc")
    for r in (res, load_results(tmp_path / "run.nc")):
        for ds in (r.timeseries, r.memory):
            assert ds.instance.values.tolist() == ["pro", "h100"]
            assert ds.hardware.values.tolist() == ["RTXPRO6000", "H100"]
            assert ds.node.values.tolist() == [0, 1] and ds.tp_size.values.tolist() == [1, 2]
            assert ds.model.values.tolist() == ["meta-llama/Llama-3.1-8B"] * 2
        assert r.attrs["hardware"] == "RTXPRO6000, H100" and r.attrs["model"] == "meta-llama/Llama-3.1-8B"


def test_tpu_runs_padded_shapes_gpus_run_exact_ones(ref):
    from llmss_lab.api import pads_shapes
    from llmss_lab.latency.iteration import pow2_bucket

    assert [pow2_bucket(n, 16) for n in (1, 16, 17, 300, 2048)] == [16, 16, 32, 512, 2048]
    assert pads_shapes("TPU-v6e-1") and not pads_shapes("A6000") and not pads_shapes("H100")


def test_an_ep_rank_is_looked_up_at_its_token_expert_pairs_over_top_k():
    """moe.csv is profiled on one GPU with every token picking top-k experts. An EP2 rank reached by
    nearly all of 200 tokens computes only half their pairs, so it costs what 100 tokens cost there."""
    import numpy as np

    from llmss_lab.kernel.moe import GATES
    from llmss_lab.latency.profile import MoeTable

    routing = GATES.get("balanced")(128, 8, 2, 48).route(200)
    assert routing.local_tokens.tolist() == [[199.0, 199.0]]   # 1 - (1/2)^8 of the tokens reach each rank
    np.testing.assert_array_equal(routing.pair_tokens(), [[100.0, 100.0]])
    tokens = np.array([1.0, 1000.0] * 2)
    table = MoeTable(tokens, np.array([8.0, 8.0, 128.0, 128.0]), tokens * 1000.0)   # 1 us per token
    np.testing.assert_allclose(table(routing), [[100_000.0, 100_000.0]])


def test_a_legacy_expert_block_costs_only_the_experts_its_tokens_reach():
    """vLLM's fused MoE kernel skips experts no token picked. Under the balanced gate a one-token step of a
    top-2-of-16 model (Phi-mini-MoE) was charged all 16 experts at one token each, 8 times the two it runs."""
    import numpy as np

    from llmss_lab.kernel.moe import GATES
    from llmss_lab.latency.legacy import EXPERT_OPS, LegacyExperts

    axis = np.array([1.0, 2048.0])
    experts = LegacyExperts({k: (axis, 10_000.0 + axis) for k in EXPERT_OPS})   # 10 us + 1 ns a token, each op
    one = 3 * 10_001.0
    balanced = GATES.get("balanced")(16, 2, 1, 32)
    for tokens, reached in ((1, 2), (3, 6), (4, 8)):
        routing = balanced.route(tokens)
        np.testing.assert_allclose(experts(routing), [[reached * one]])
        assert routing.activated.tolist() == [[reached]]   # the count the gate itself reports
    np.testing.assert_allclose(experts(balanced.route(64)), [[16 * 3 * 10_008.0]])   # every expert, 8 tokens each
    sampled = GATES.get("random")(16, 2, 1, 32, seed=3).route(1)
    np.testing.assert_allclose(experts(sampled), np.full((32, 1), 2 * one))   # each layer: its two experts


def test_a_prefill_instance_needs_room_for_the_prompt_only(ref):
    """It hands a request over after the first token, so a small prefill GPU beside a large decode one serves
    requests whose whole length only the decode side holds (they were refused)."""
    from llmss_lab.api import simulate
    from llmss_lab.config.cluster import ClusterSpec, InstanceSpec, MemorySpec, NodeSpec
    from llmss_lab.workload import synthetic

    model, hw = "meta-llama/Llama-3.1-8B", "RTXPRO6000"
    spec = ClusterSpec([NodeSpec([InstanceSpec(model, hw, MemorySpec(17, 1597), pd_type="prefill", where="p"),
                                  InstanceSpec(model, hw, MemorySpec(96, 1597), pd_type="decode", where="d")])])
    wl = synthetic(2, rate=1, input_len="fixed:1000", output_len="fixed:3000", seed=0)
    res = simulate(spec, wl, reference_dir=ref)
    assert res.summary()["completed"] == 2
    with pytest.raises(InputError, match=r"3001 tokens \(input 3000 \+ its first token\) but the KV cache of p "
                                         r"holds at most \d+ "):
        simulate(spec, synthetic(2, rate=1, input_len="fixed:3000", output_len="fixed:10", seed=0), reference_dir=ref)
