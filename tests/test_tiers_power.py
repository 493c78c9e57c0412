"""Memory tiers, lower prefix pools, PIM offload and the power model."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmss_lab.api import simulate
from llmss_lab.config.cluster import ClusterSpec, CxlSpec, InstanceSpec, MemorySpec, NodeSpec, load_cluster
from llmss_lab.config.power import COMPONENTS
from llmss_lab.kernel.power import spread
from llmss_lab.kernel.tiers import CHUNK_TOKENS, PrefixPool, Tier
from llmss_lab.workload import synthetic

GB = 2**30


def test_recall_time_is_bytes_over_bandwidth_plus_latency():
    t = Tier("cpu:0", 64 * GB, bandwidth_gbps=32, latency_ns=500)
    end = t.move(1000.0, 8 * GB)
    assert end == pytest.approx(1000 + 500 + 8 / 32 * 1e9)
    # a second transfer queues behind the first on the same port
    assert t.move(1000.0, 8 * GB) == pytest.approx(end + 500 + 8 / 32 * 1e9)
    assert t.bytes_read == 16 * GB


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=6), min_size=1, max_size=30))
def test_a_pool_never_holds_more_than_its_size(cap_chunks, batches):
    t = Tier("cpu:0", 1e12, 10)
    pool = PrefixPool("p", t, chunk_bytes=1000.0, capacity_bytes=cap_chunks * 1000.0 + 999)
    for now, keys in enumerate(batches):
        pool.store(float(now), keys)
        assert len(pool.chunks) <= cap_chunks
        assert pool.used_bytes <= pool.capacity_bytes
    # every byte written is a chunk that entered the pool
    assert t.bytes_written == pytest.approx((len(pool.chunks) + pool.evictions) * 1000.0)


def test_spread_conserves_energy():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 9, 200)
    e = s + rng.uniform(0, 2, 200) * (rng.random(200) > 0.1)   # some instants
    energy = rng.uniform(0, 5, 200)
    edges = np.arange(0, 12.0)
    bins = spread(s, e, energy, edges)
    assert bins.sum() == pytest.approx(energy.sum())
    assert (bins >= -1e-9).all()
    # one interval over [0.5, 2.5] puts a quarter, half and quarter in bins 0, 1, 2
    assert spread(np.array([0.5]), np.array([2.5]), np.array([4.0]), edges)[:3] == pytest.approx([1, 2, 1])


def _power_run(ref, **kw):
    cfg = ref / "configs/cluster/single_node_power_instance.json"
    wl = synthetic(60, rate=20, input_len="fixed:300", output_len="fixed:60", seed=1)
    return simulate(cfg, wl, reference_dir=ref, **kw)


def test_energy_is_the_integral_of_power(ref):
    res = _power_run(ref)
    p = res.power
    widths = np.diff(np.concatenate([[0.0], p.time.values]))
    integral = (p.power * xr_widths(p, widths)).sum("time")
    np.testing.assert_allclose(integral.values, p.energy.values, rtol=1e-9)
    assert set(p.component.values) == set(COMPONENTS)
    # idle parts: base power for the whole run, from the reference's worked example (200.5 W)
    T = float(p.time.values[-1])
    spec = load_cluster(ref / "configs/cluster/single_node_power_instance.json").nodes[0].power
    assert float(p.energy.sel(node=0, component="base_node")) == pytest.approx(spec.base_node_w * T)
    # NPU energy = idle + (active - idle) x busy time + standby; busy time is the sum of step times
    busy = float(res.iterations.duration.sum()) * 1e-3
    npu = float(p.energy.sel(node=0, component="npu"))
    lo = 35 * T + (600 - 35) * busy
    assert lo <= npu <= lo + (300 - 35) * T + 1e-6
    tokens = int(res.requests.output_tokens.sum())
    assert p.attrs["energy_per_output_token_J"] == pytest.approx(p.energy.sum().item() / tokens)


def xr_widths(p, widths):
    import xarray as xr
    return xr.DataArray(widths, dims="time", coords={"time": p.time})


def _two_instances(ref, cxl: CxlSpec | None = None) -> ClusterSpec:
    inst = [InstanceSpec("meta-llama/Llama-3.1-8B", "RTXPRO6000", MemorySpec(96, 1597), where=f"i{k}")
            for k in range(2)]
    return ClusterSpec([NodeSpec(inst, MemorySpec(64, 32, 100))], cxl_mem=cxl)


def _shared_prefix_workload(n=40, seed=0):
    wl = synthetic(n, rate=4, input_len="fixed:700", output_len="fixed:20", seed=seed)
    rng = np.random.default_rng(seed)
    common = rng.integers(0, 30000, 600).tolist()
    wl.token_ids = [common + rng.integers(0, 30000, int(i) - 600 + int(o)).tolist()
                    for i, o in zip(wl.input_toks, wl.output_toks)]
    return wl


def test_shared_cpu_pool_recalls_prefixes_and_conserves_bytes(ref):
    wl = _shared_prefix_workload()
    wl.input_toks[:] = 700
    res = simulate(_two_instances(ref), wl, reference_dir=ref, router="round_robin", prefix_storage="cpu",
                   prefix_sharing="node")
    m = res.memory
    assert m.sizes["pool"] == 1
    chunk_mib = CHUNK_TOKENS * 131072 / 2**20            # 256 tokens x 128 KiB of Llama-3.1-8B KV = 32 MiB
    assert float(m.pool_used.isel(time=-1, pool=0)) % chunk_mib == 0
    recalled = int(res.requests.recalled_tokens.sum())
    assert recalled > 0 and float(m.pool_hit_pct.isel(time=-1, pool=0)) > 0
    # bytes read from the CPU tier are exactly the recalled tokens' KV; bytes written are whole chunks
    from llmss_lab.results.dataset import MIB
    read = float(m.tier_bytes_read.sel(tier="cpu:0"))
    written = float(m.tier_bytes_written.sel(tier="cpu:0"))
    assert written == pytest.approx(float(m.pool_used.isel(time=-1, pool=0)) * MIB)   # nothing evicted
    assert read == recalled * 131072
    assert float(m.pool_used.max()) <= float(m.pool_capacity.max())


def test_dram_energy_counts_the_bytes_a_prefix_pool_reads_and_writes(ref):
    """Write-through is charged as DRAM energy (it was moved on the tier but never charged)."""
    res = simulate(ref / "configs/cluster/single_node_power_instance.json", _shared_prefix_workload(),
                   reference_dir=ref, prefix_storage="cpu")
    m, p = res.memory, res.power
    read, written = float(m.tier_bytes_read.sum()), float(m.tier_bytes_written.sum())
    assert written > 0
    T = float(p.time.values[-1])
    idle = 2.0 * (512 // 32) * T                       # dram idle_power x DIMMs, the whole run
    assert float(p.energy.sel(node=0, component="dram")) == pytest.approx(idle + 6.0 * 8 * (read + written) * 1e-12)


def test_private_pools_split_the_tier(ref):
    res = simulate(_two_instances(ref), _shared_prefix_workload(10), reference_dir=ref, prefix_storage="cpu")
    assert res.memory.sizes["pool"] == 2
    assert float(res.memory.pool_capacity.sum()) == pytest.approx(64 * 1024)


def test_weights_in_cxl_stream_every_step_and_free_npu_memory(ref):
    cfg = ref / "configs/cluster/single_node_cxl_instance.json"
    wl = synthetic(8, rate=100, input_len="fixed:64", output_len="fixed:16", seed=0)
    res = simulate(cfg, wl, reference_dir=ref)
    base = simulate(ref / "configs/cluster/single_node_single_instance.json", wl, reference_dir=ref)
    # all weights live on 4 CXL devices at 60 GB/s: a step lasts at least the busiest device's read
    assert float(res.iterations.duration.min()) > 5 * float(base.iterations.duration.max())
    assert res.attrs["num_gpu_blocks"] > base.attrs["num_gpu_blocks"]
    assert float(res.memory.npu_weights[0]) < 100   # only model buffers stay on the NPU (MiB)


def test_pim_offload_counts_channel_power(ref):
    cfg = ref / "configs/cluster/single_node_pim_instance.json"
    wl = synthetic(30, rate=50, input_len="fixed:200", output_len="fixed:50", seed=0)
    gpu = simulate(cfg, wl, reference_dir=ref)
    pim = simulate(cfg, wl, reference_dir=ref, attn_offload=True)
    assert pim.attrs["attn_offload"].startswith("pim:DDR4_8GB_3200")
    # 512 GiB of 8 GB DDR4 channels = 64 channels at 0.623 W idle replace 16 DIMMs x 2 W
    T = float(pim.power.time[-1])
    assert float(pim.power.energy.sel(node=0, component="dram")) > 64 * 0.623 * T
    assert float(gpu.power.energy.sel(node=0, component="dram")) == pytest.approx(16 * 2.0 * float(gpu.power.time[-1]))
    assert pim.summary()["completed"] == 30


def test_an_npu_waiting_on_pim_attention_is_not_charged_active_power(ref, tmp_path):
    """The NPU was charged active power for the whole step, PIM's decode attention included; it computes
    only around it (LLMServingSim charges a PIM row to the PIM device alone)."""
    import json
    cfg = json.loads((ref / "configs/cluster/single_node_pim_instance.json").read_text())
    npu = cfg["nodes"][0]["power"]["npu"]["RTXPRO6000"]
    npu["standby_power"] = npu["idle_power"]   # no standby: NPU energy is idle power plus compute
    path = tmp_path / "pim_power.json"
    path.write_text(json.dumps(cfg))
    wl = synthetic(30, rate=50, input_len="fixed:200", output_len="fixed:50", seed=0)
    res = simulate(path, wl, reference_dir=ref, attn_offload=True)
    it = res.iterations
    pim_s = float(it.attention.sum()) * 1e-3   # without sub-batches the NPU waits out every PIM span
    assert pim_s > 0.02 * float(it.duration.sum()) * 1e-3
    compute_s = float(it.duration.sum()) * 1e-3 - pim_s
    T = float(res.power.time[-1])
    expected = npu["idle_power"] * T + (npu["active_power"] - npu["idle_power"]) * compute_s
    assert float(res.power.energy.sel(node=0, component="npu")) == pytest.approx(expected, rel=1e-6)


def test_pd_kv_handoff_costs_link_energy(ref, tmp_path):
    import json
    pd_cfg = json.loads((ref / "configs/cluster/single_node_pd_instance.json").read_text())
    power = json.loads((ref / "configs/cluster/single_node_power_instance.json").read_text())["nodes"][0]["power"]
    power["link"]["idle_power"] = 0.0
    pd_cfg["nodes"][0]["power"] = power
    path = tmp_path / "pd_power.json"
    path.write_text(json.dumps(pd_cfg))
    hw = {i["hardware"] for i in pd_cfg["nodes"][0]["instances"]}
    if hw != {"RTXPRO6000"}:
        pytest.skip("power entry is for RTXPRO6000 only")
    res = simulate(path, synthetic(10, rate=20, input_len="fixed:500", output_len="fixed:5", seed=0), reference_dir=ref)
    link = float(res.power.energy.sel(node=0, component="link"))
    kv = float(res.attrs["kv_bytes_transferred"])
    assert kv > 0
    # at least the KV bytes at 4 pJ/bit (collectives add more when TP > 1)
    assert link >= power["link"]["energy_per_bit"] * 8e-12 * kv - 1e-9


def test_kv_handed_between_nodes_costs_link_energy_at_both_ends(ref, tmp_path):
    """The KV of a P/D hand-off was charged to the sender's links alone, while pool traffic between
    nodes was split: each wire byte counts once, half at each end's pJ/bit."""
    import copy
    import json
    d = json.loads((ref / "configs/cluster/single_node_pd_instance.json").read_text())
    power = json.loads((ref / "configs/cluster/single_node_power_instance.json").read_text())["nodes"][0]["power"]
    power["link"]["idle_power"] = 0.0
    node = d["nodes"][0]
    nodes = []
    for inst, pj in zip(node["instances"], (4.0, 10.0)):
        n = copy.deepcopy(node)
        n["num_instances"], n["instances"] = 1, [inst]
        n["power"] = copy.deepcopy(power)
        n["power"]["link"]["energy_per_bit"] = pj
        nodes.append(n)
    d["num_nodes"], d["nodes"] = 2, nodes
    path = tmp_path / "pd_two_nodes.json"
    path.write_text(json.dumps(d))
    res = simulate(path, synthetic(10, rate=20, input_len="fixed:500", output_len="fixed:5", seed=0), reference_dir=ref)
    kv = float(res.attrs["kv_bytes_transferred"])
    assert kv > 0
    link = res.power.energy.sel(component="link")
    assert float(link.sel(node=0)) == pytest.approx(4.0 * 8e-12 * kv / 2)   # TP1: no collectives
    assert float(link.sel(node=1)) == pytest.approx(10.0 * 8e-12 * kv / 2)


@pytest.mark.parametrize("block_size", [24, 384, 512])
def test_a_prefix_pool_needs_blocks_that_divide_its_chunks(ref, block_size):
    """Blocks of 512 crashed (no block per chunk); blocks of 24 keyed a 256-token chunk by 240 tokens and
    recalled 16 tokens another prompt did not share."""
    from llmss_lab.errors import InputError
    with pytest.raises(InputError, match="block_size: .*block_size must divide 256"):
        simulate(_two_instances(ref), _shared_prefix_workload(4), {"block_size": block_size}, reference_dir=ref,
                 prefix_storage="cpu")


def test_a_shared_pool_serves_a_chunk_only_after_the_step_that_computes_it_ends(ref):
    """Write-through happened when a step was scheduled: a second instance recalled a 4000-token prompt's KV
    at 1 ms and had its first token ~80 ms before the only instance computing that KV was done."""
    from llmss_lab.scenario import Scenario
    from llmss_lab.workload import Workload

    ids = list(range(4000))
    wl = Workload(np.array([0, 1_000_000, 2_000_000_000]), np.array([4000] * 3), np.array([2] * 3),
                  [ids, list(ids), list(ids)])
    sc = Scenario(instances=3, max_num_batched_tokens=8192)
    res = simulate(sc.cluster(ref), wl, sc.engine(), reference_dir=ref, router="round_robin",
                   prefix_storage="cpu", prefix_sharing="node")
    r = res.requests
    assert r.instance.values.tolist() == [0, 1, 2]
    assert int(r.recalled_tokens[1]) == 0                     # nothing in the pool yet at 1 ms
    assert int(r.recalled_tokens[2]) == 3840                  # 15 whole chunks once request 0's step is done
    assert float(r.first_token[2]) > float(r.first_token[0])


def test_a_node_cpu_never_draws_more_than_its_active_power(ref):
    """The CPU's extra power while it feeds busy NPUs was added once per busy instance: 875 W on a 200 W CPU
    with eight instances."""
    from llmss_lab.scenario import Scenario

    res = Scenario(instances=4, power=True, num_requests=60, rate=40.0).run(ref)
    cpu = res.power.power.sel(component="cpu")
    import json   # the power section the scenario takes for this hardware

    spec = json.loads((ref / "configs/cluster/single_node_power_instance.json").read_text())["nodes"][0]["power"]["cpu"]
    assert float(cpu.max()) <= spec["active_power"] + 1e-9
    assert float(cpu.max()) > spec["idle_power"] + (spec["active_power"] - spec["idle_power"]) * spec["util"] + 1


def test_a_prefix_pool_gets_the_memory_the_weights_kept_there_leave(ref):
    """Weights in CPU memory and a CPU prefix pool were sized apart: in 16 GiB, 14.96 GiB of weights beside a
    16 GiB pool. Weights that fit one by one but not together were let through."""
    from llmss_lab.errors import InputError
    from llmss_lab.scenario import Scenario

    base = Scenario(weights_on="cpu", cpu_mem_gib=16, prefix_storage="cpu", num_requests=4)
    res = base.run(ref)
    weights = float(res.memory.tier_bytes_read.sel(tier="cpu:0")) / res.attrs["num_steps"]   # all read every step
    assert float(res.memory.pool_capacity.sum()) * 2**20 == pytest.approx(16 * 2**30 - weights, rel=1e-3)
    with pytest.raises(InputError, match=r"weights the instances keep in cpu:0 \(29\.9\d GiB together\) do not fit"):
        base.replace(instances=2, cpu_mem_gib=20).run(ref)


def test_a_pool_in_another_nodes_memory_is_read_over_the_link_between_nodes(ref):
    """A cluster-wide CPU pool lives in node 0's memory. An instance on node 1 read its 3840 recalled tokens
    (480 MiB of Llama-3.1-8B KV) at the CPU memory's 256 GB/s, though the only way there is the 1 GB/s link
    between the nodes: 2 ms where the link takes 469 ms. The instance on node 0 still reads at memory speed."""
    from llmss_lab.workload import Workload

    def inst(where: str) -> InstanceSpec:
        return InstanceSpec("meta-llama/Llama-3.1-8B", "RTXPRO6000", MemorySpec(96, 1597), where=where)

    spec = ClusterSpec([NodeSpec([inst("a")]), NodeSpec([inst("b")])], [64.0, 1.0], [0.0, 20000.0])
    a, b, x = list(range(4000)), list(range(5000, 9000)), list(range(10000, 10100))
    # round robin: A on node 0, A on node 1 (recalled from node 0's memory), X on node 0, B on node 1 (written
    # to node 0's memory), B on node 0 (recalled from its own memory)
    ids = [a, list(a), x, b, list(b)]
    wl = Workload(np.arange(5) * 2_000_000_000, np.array([len(i) for i in ids]), np.array([2] * 5), ids)
    res = simulate(spec, wl, {"max_num_batched_tokens": 8192}, reference_dir=ref, router="round_robin",
                   prefix_storage="cpu", prefix_sharing="cluster")
    r, it = res.requests, res.iterations
    assert r.instance.values.tolist() == [0, 1, 0, 1, 0]
    assert r.recalled_tokens.values.tolist() == [0, 3840, 0, 0, 3840]
    nbytes = 3840 * 131072
    recall = {i: float(it.recall.where(it.instance == i).max()) for i in (0, 1)}
    assert recall[1] == pytest.approx((20000 + nbytes / GB * 1e9) * 1e-6, rel=1e-6)   # the link, not the memory
    assert recall[0] == pytest.approx(nbytes / (256 * GB) * 1e3, rel=1e-6)            # node 0's own memory
    assert float(res.memory.tier_bytes_read.sel(tier="cpu:0")) == 2 * nbytes


def test_a_cluster_with_power_on_some_nodes_says_which_nodes_the_energy_leaves_out(ref, caplog):
    """Node 1 has no power section: its energy counted as zero without a word, while the J per output token divided
    the other node's energy by both nodes' tokens (half the true figure on two equal nodes)."""
    import logging

    cfg = load_cluster(ref / "configs/cluster/single_node_power_instance.json")
    node = cfg.nodes[0]
    spec = ClusterSpec([node, NodeSpec(node.instances, node.cpu_mem)], 16.0, 20000.0, source="two.json")
    with caplog.at_level(logging.WARNING):
        res = simulate(spec, synthetic(10, rate=4, seed=1), reference_dir=ref)
    assert float(res.power.energy.sel(node=1).sum()) == 0
    warned = [r.getMessage() for r in caplog.records if "no power section" in r.getMessage()]
    assert len(warned) == 1 and "nodes [1]" in warned[0] and "cover nodes [0] only" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):   # every node with power: nothing to say
        simulate(ClusterSpec([node, node], 16.0, 20000.0), synthetic(4, rate=4, seed=1), reference_dir=ref)
    assert not [r for r in caplog.records if "no power section" in r.getMessage()]


def _llama(where: str) -> InstanceSpec:
    return InstanceSpec("meta-llama/Llama-3.1-8B", "RTXPRO6000", MemorySpec(96, 1597), where=where)


def _prompts(arrivals_s: list[float], ids: list[list[int]]):
    from llmss_lab.workload import Workload
    return Workload(np.array([int(t * 1e9) for t in arrivals_s]), np.array([len(i) for i in ids]),
                    np.array([2] * len(ids)), ids)


def test_write_through_to_a_pool_in_another_nodes_memory_crosses_the_link_before_it_is_read(ref):
    """An instance on node 1 wrote its chunks into node 0's cluster pool at node 0's memory speed, free of the
    link between the nodes, so an instance on node 0 recalled them 2 ms after asking, though at 50 MB/s the 480
    MiB were still on the wire for seconds."""
    link_gbps, link_ns = 0.05, 20000.0
    spec = ClusterSpec([NodeSpec([_llama("a")]), NodeSpec([_llama("b")])], [64.0, link_gbps], [0.0, link_ns])
    a, x = list(range(4000)), list(range(10000, 10100))
    # round robin: X on node 0; A on node 1, written through to node 0's memory; A again on node 0 at 2 s
    res = simulate(spec, _prompts([0, 0, 2], [x, a, list(a)]), {"max_num_batched_tokens": 8192}, reference_dir=ref,
                   router="round_robin", prefix_storage="cpu", prefix_sharing="cluster")
    r, it, m = res.requests, res.iterations, res.memory
    assert r.instance.values.tolist() == [0, 1, 0]
    assert r.recalled_tokens.values.tolist() == [0, 0, 3840]
    nbytes = 3840 * 131072                                   # 15 chunks of Llama-3.1-8B KV
    written = float(r.first_token[1])                        # the writer's prefill step ends and the write starts
    landed = written + (link_ns + nbytes / (link_gbps * GB) * 1e9) * 1e-9
    assert written < 2.0 < landed                            # indexed in the pool before request 2 came, not there yet
    step = it.where(it.instance == 0, drop=True).where(lambda s: s.start >= 2.0, drop=True).isel(step=0)
    # request 2 reads them from node 0's own memory, once they are there
    assert float(step.start) + float(step.recall) * 1e-3 == pytest.approx(landed + nbytes / (256 * GB), rel=1e-9)
    assert float(m.pool_link_written.sum()) == nbytes and float(m.pool_link_read.sum()) == 0


def test_recalls_from_a_pool_in_another_nodes_memory_queue_on_the_link(ref):
    """Two instances on node 1 recalling from node 0's memory at once each had the whole 1 GB/s link between the
    nodes (469 ms apiece, ending together), as if each had a link of its own."""
    link_ns = 20000.0
    spec = ClusterSpec([NodeSpec([_llama("a")]), NodeSpec([_llama("b"), _llama("c")])], [64.0, 1.0],
                       [0.0, link_ns])
    a = list(range(4000))
    small = [list(range(k * 1000, k * 1000 + 100)) for k in (10, 11, 12)]
    # round robin a, b, c, a, b, c: A is written to node 0's memory by node 0; b and c ask for it together at 2 s
    res = simulate(spec, _prompts([0, 0, 0, 1, 2, 2], [a, small[0], small[1], small[2], list(a), list(a)]),
                   {"max_num_batched_tokens": 8192}, reference_dir=ref, router="round_robin", prefix_storage="cpu",
                   prefix_sharing="cluster")
    r, it = res.requests, res.iterations
    assert r.instance.values.tolist() == [0, 1, 2, 0, 1, 2]
    assert r.recalled_tokens.values.tolist() == [0, 0, 0, 0, 3840, 3840]
    nbytes = 3840 * 131072
    one = (link_ns + nbytes / GB * 1e9) * 1e-6               # ms on the link
    recalls = sorted(float(it.recall.where(it.instance == i).max()) for i in (1, 2))
    assert recalls == pytest.approx([one, 2 * one], rel=1e-9)
    assert float(res.memory.pool_link_read.sum()) == 2 * nbytes


def test_a_pool_in_another_nodes_memory_charges_its_dram_to_that_node_and_the_link_to_both(ref):
    """Node 1's instance recalled from and wrote to node 0's memory: the DRAM energy of those bytes was booked to
    node 1, whose memory never saw them, and no link energy was booked for them anywhere."""
    node = load_cluster(ref / "configs/cluster/single_node_power_instance.json").nodes[0]
    spec = ClusterSpec([node, node], [16.0, 1.0], [20000.0, 20000.0])
    a, c = list(range(4000)), list(range(5000, 9000))
    # round robin: C on node 0 and A on node 1 (both written to node 0's memory), then A on node 0 (a local
    # recall) and C on node 1 (a recall over the link)
    res = simulate(spec, _prompts([0, 0, 3, 3], [c, a, list(a), list(c)]), {"max_num_batched_tokens": 8192},
                   reference_dir=ref, router="round_robin", prefix_storage="cpu", prefix_sharing="cluster")
    r, m, p = res.requests, res.memory, res.power
    assert r.instance.values.tolist() == [0, 1, 0, 1]
    assert r.recalled_tokens.values.tolist() == [0, 0, 3840, 3840]
    nbytes = 3840 * 131072
    remote = 2 * nbytes                                      # node 1's recall of C and its write of A
    on_node0 = float(m.tier_bytes_read.sel(tier="cpu:0") + m.tier_bytes_written.sel(tier="cpu:0"))
    assert on_node0 == 4 * nbytes                            # every pool byte went through node 0's memory
    T = float(p.time.values[-1])
    spec0 = node.power
    dram_idle = spec0.dram_idle_w * (512 // spec0.dram_dimm_gb) * T
    e = p.energy
    assert float(e.sel(node=0, component="dram")) == pytest.approx(dram_idle + spec0.dram_pj_per_bit * 8e-12 * on_node0)
    assert float(e.sel(node=1, component="dram")) == pytest.approx(dram_idle)
    for n in (0, 1):   # half the wire's energy at each end
        assert float(e.sel(node=n, component="link")) == pytest.approx(
            spec0.link_idle_w * spec0.link_count * T + 0.5 * spec0.link_pj_per_bit * 8e-12 * remote)
    assert float(m.pool_link_read.sum()) == float(m.pool_link_written.sum()) == nbytes


@pytest.mark.parametrize("instances", [4, 1])
def test_power_bins_follow_the_run_bin_width_and_keep_its_energy(ref, instances):
    """Power stayed in one-second bins whatever ``bin_s`` said. Now it follows it; the bins' energies sum to the
    run's, the same at 1 s and 60 s, where four busy instances meet their node CPU's cap (one-second pieces) and
    where one instance cannot (bins spread into at once)."""
    from llmss_lab.scenario import Scenario

    sc = Scenario(instances=instances, power=True, num_requests=200, rate=1.5 * instances / 4, seed=3)
    spec = sc.cluster(ref)
    wl = sc.workload(ref)
    runs = {b: simulate(spec, wl, sc.engine(), reference_dir=ref, bin_s=b).power for b in (60.0, 1.0)}
    for b, p in runs.items():
        T = p.attrs["simulated_s"]
        widths = np.diff(np.concatenate([[0.0], p.time.values]))
        assert p.sizes["time"] == np.ceil(T / b) and p.time.values[-1] == T
        np.testing.assert_allclose(widths[:-1], b)
        assert p.attrs["bin_s"] == b and f"{b:g} s bin" in p.power.attrs["long_name"] and p.power.attrs["units"] == "W"
        np.testing.assert_allclose((p.power.values * widths[:, None, None]).sum(axis=0), p.energy.values, rtol=1e-12)
    fine, coarse = runs[1.0], runs[60.0]
    assert fine.sizes["time"] > 120 and coarse.sizes["time"] == np.ceil(fine.sizes["time"] / 60)
    # one second at a time, the cap also clips spread()'s rounding noise (about 1e-7 J in a fully busy second),
    # which bins spread into at once keep: 9e-10 of the one instance's CPU energy
    rtol = 1e-12 if instances > 1 else 1e-8
    np.testing.assert_allclose(coarse.energy.values, fine.energy.values, rtol=rtol)
    assert coarse.attrs["total_energy_J"] == pytest.approx(fine.attrs["total_energy_J"], rel=rtol)
    # each minute's energy is the energy of its seconds, the node CPU's cap included: one busy instance reaches it,
    # four would pass it fourfold
    cpu = load_cluster(ref / "configs/cluster/single_node_power_instance.json").nodes[0].power
    assert float(fine.power.sel(component="cpu").max()) == pytest.approx(cpu.static_w(0, {})["cpu"] +
                                                                         cpu.cpu_busy_extra_w)
    per_s = fine.power.values * np.diff(np.concatenate([[0.0], fine.time.values]))[:, None, None]
    minute = np.arange(fine.sizes["time"]) // 60
    per_min = np.stack([per_s[minute == k].sum(axis=0) for k in range(coarse.sizes["time"])])
    widths = np.diff(np.concatenate([[0.0], coarse.time.values]))
    np.testing.assert_allclose(coarse.power.values * widths[:, None, None], per_min, rtol=max(rtol, 1e-9))
