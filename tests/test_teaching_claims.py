"""What the teaching notebooks' text says, checked on the runs the notebooks make.

nbval only checks that the notebooks run; a change to the model could turn a sentence false and no test
would notice. Each notebook's code cells (not the plotting ones) are executed here in-process with their
committed parameters, and each claim of its markdown (and of its "Try" suggestions) is checked on the
resulting runs. A claim that stops holding is a finding: fix the model or the text, not the test.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def executed(name: str, ref: Path) -> dict:
    """The namespace after running the notebook's code cells (the ones that only draw are skipped)."""
    path = NOTEBOOKS / name
    ns: dict = {"__name__": "__notebook__"}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith("show("):
            continue
        exec(compile(cell.source, str(path), "exec"), ns)
        if "parameters" in cell.metadata.get("tags", []):
            ns["reference_dir"] = str(ref)
    return ns


def summaries(runs: dict) -> dict[str, dict[str, float]]:
    return {name: r.summary() for name, r in runs.items()}


def test_continuous_batching(ref):
    nb = executed("01_continuous_batching.ipynb", ref)
    # "Reading the tables": each metric is what the notebook says it is, on one of its runs
    run = nb["batching"]["vllm_v1"]
    q, s = run.requests, run.summary()
    assert np.allclose(q.ttft, (q.first_token - q.arrival) * 1e3)   # queue plus prefill
    assert float((q.first_token - q.scheduled).min()) > 0 and float((q.scheduled - q.arrival).max()) > 0
    many = q.output_tokens > 1
    assert np.allclose(q.tpot[many], ((q.finish - q.first_token) / (q.output_tokens - 1) * 1e3)[many])
    assert s["mean_tpot_ms"] == pytest.approx(float(q.tpot[many].mean()))
    assert np.allclose(q.e2e_latency, (q.finish - q.arrival) * 1e3)
    gaps = run.itl   # every gap between two tokens of a request, pooled
    assert int(gaps.gaps.sum()) == int((q.output_tokens - 1).sum())
    assert float((gaps.itl * gaps.gaps).sum()) == pytest.approx(float((q.finish - q.first_token).sum()) * 1e3)
    assert float(gaps.gaps.where(gaps.itl <= s["p99_itl_ms"]).sum()) >= 0.99 * float(gaps.gaps.sum())
    assert s["p99_itl_ms"] > s["mean_tpot_ms"]   # the tail of the gaps that TPOT, an average, hides
    assert s["output_throughput"] == pytest.approx(float(q.output_tokens.sum()) / float(q.finish.max() - q.arrival.min()))
    # static batches: fewer sequences per step, so shorter steps and a lower TPOT, but less throughput and
    # first tokens that wait for the whole batch before
    cont, static = (nb["batching"][k] for k in ("vllm_v1", "static"))
    c, st = cont.summary(), static.summary()
    assert float(static.iterations.num_seqs.mean()) < float(cont.iterations.num_seqs.mean())
    assert st["mean_tpot_ms"] < c["mean_tpot_ms"]
    assert st["output_throughput"] < c["output_throughput"] and st["mean_ttft_ms"] > 2 * c["mean_ttft_ms"]
    caps = summaries(nb["caps"])
    ttft = [caps[f"max_num_seqs={n}"]["mean_ttft_ms"] for n in (8, 32, 128)]
    tpot = [caps[f"max_num_seqs={n}"]["mean_tpot_ms"] for n in (8, 32, 128)]
    # fewer sequences per step: shorter steps (lower TPOT), but the queue grows and TTFT explodes
    assert tpot[0] < tpot[1] < tpot[2]
    assert ttft[0] > ttft[1] > ttft[2] and ttft[0] > 5 * ttft[2]

    runs, s = nb["runs"], summaries(nb["runs"])
    small, mid, whole = "chunked, budget 512", "chunked, budget 2048", "whole prompts, budget 8192"
    longest = {k: float(r.iterations.duration.max()) for k, r in runs.items()}
    # a small budget keeps every step short, but a long prompt needs many steps before its first token
    assert longest[small] < longest[mid] < longest["chunked, budget 8192"]
    assert s[small]["p99_itl_ms"] < s[mid]["p99_itl_ms"] < s["chunked, budget 8192"]["p99_itl_ms"]   # the worst gap
    assert s[small]["mean_ttft_ms"] > s[mid]["mean_ttft_ms"]
    # whole prompts: most gaps at a decode step's length, with a tail; small chunks cut the tail, move the
    # upper part of the ITL curve right and make first tokens come much later
    assert s[whole]["p90_itl_ms"] < 1.1 * s[whole]["median_itl_ms"] < s[whole]["p99_itl_ms"] / 2
    assert s[small]["p99_itl_ms"] < s[whole]["p99_itl_ms"]
    assert s[small]["p90_itl_ms"] > s[whole]["p90_itl_ms"] and s[small]["mean_itl_ms"] > s[whole]["mean_itl_ms"]
    # "much later": about 5x (whole-prompt steps of up to 8192 tokens run past dense.csv's 2048, where the time
    # grows at the grid's upper-half slope; the noisy last segment used before made them far too cheap: 40x then)
    assert s[small]["mean_ttft_ms"] > 3 * s[whole]["mean_ttft_ms"]

    # async scheduling: a little more TTFT (at most a step per request), the same TPOT
    sync, late = (m.summary() for m in nb["modes"].values())
    step_ms = float(nb["modes"]["synchronous"].iterations.duration.mean())
    assert 0 < late["mean_ttft_ms"] - sync["mean_ttft_ms"] <= step_ms
    assert late["mean_tpot_ms"] == pytest.approx(sync["mean_tpot_ms"], rel=0.01)

    # Try: with 128-token prompts chunking stops mattering
    short = nb["base"].replace(input_len="fixed:128")
    a, b = (short.replace(max_num_batched_tokens=n).run(ref).summary() for n in (512, 8192))
    assert a["mean_ttft_ms"] == pytest.approx(b["mean_ttft_ms"], rel=0.02)
    assert a["p99_itl_ms"] == pytest.approx(b["p99_itl_ms"], rel=0.02)


def test_kv_cache(ref):
    nb = executed("02_kv_cache.ipynb", ref)
    kv = nb["kv"]
    s = summaries(kv)
    # a small KV cache forces preemption; its KV line hits the ceiling
    assert s["utilisation 0.9"]["preemptions"] == 0
    assert s["utilisation 0.3"]["preemptions"] > 0 and s["utilisation 0.25"]["preemptions"] > 0
    small = kv["utilisation 0.25"]
    assert int(small.iterations.kv_blocks_used.max()) == small.attrs["num_gpu_blocks"]
    big = kv["utilisation 0.9"]
    assert int(big.iterations.kv_blocks_used.max()) < 0.5 * big.attrs["num_gpu_blocks"]
    # ...within seconds, and it stays there until the queue drains: in the memory samples the view draws, from the
    # first at 95 % of the capacity to the last, none under 90 %, over more than half the run
    used = small.memory.npu_kv.sum("instance")
    cap = float(small.memory.npu_kv_capacity.sum())
    t = used.time.values[used.values >= 0.95 * cap]
    assert t[0] < 10 and t[0] < 0.15 * small.summary()["duration_s"]
    assert float(used.sel(time=slice(t[0], t[-1])).min()) >= 0.9 * cap and t[-1] - t[0] > 0.5 * small.summary()["duration_s"]
    # ...in the memory view the notebook draws: the small cache's ceiling is in view (the memory view drops a
    # capacity over twice the memory in use off its scale)
    from bokeh.models import Legend

    from llmss_lab import views

    fig = views.memory(small, big, label="utilisation 0.25", baseline_label="utilisation 0.9")
    (run_legend,) = [leg for leg in fig.below if isinstance(leg, Legend) and leg.title == "utilisation 0.25"]
    assert [getattr(i.label, "value", i.label) for i in run_legend.items][-1] == "NPU KV capacity"
    (big_legend,) = [leg for leg in fig.below if isinstance(leg, Legend) and leg.title == "utilisation 0.9"]
    assert getattr(big_legend.items[-1].label, "value", "").endswith("(off the scale)")
    # a smaller cache costs TTFT and throughput; at 0.25 fewer requests fit, steps are shorter and TPOT drops
    # below the big cache's
    order = ["utilisation 0.9", "utilisation 0.3", "utilisation 0.25"]
    assert [s[k]["mean_ttft_ms"] for k in order] == sorted(s[k]["mean_ttft_ms"] for k in order)
    assert [s[k]["output_throughput"] for k in order] == sorted((s[k]["output_throughput"] for k in order), reverse=True)
    assert s["utilisation 0.25"]["mean_tpot_ms"] < s["utilisation 0.9"]["mean_tpot_ms"]
    assert float(small.iterations.num_seqs.mean()) < float(big.iterations.num_seqs.mean())

    pc = summaries(nb["pc"])
    hits = {k: v["prefix_hit_tokens"] for k, v in pc.items()}
    # shared prefixes are reused; with 200 distinct ones most requests bring their own, so little is reused
    assert hits["prefix caching off"] == 0
    assert 0 < hits["on, 200 distinct prefixes"] < 0.5 * hits["on, 4 distinct prefixes"]
    first = nb["pc"]["on, 200 distinct prefixes"].requests.prefix_hit_tokens == 0   # the first to bring its prefix
    assert int(first.sum()) > 0.5 * first.size
    assert pc["on, 4 distinct prefixes"]["mean_ttft_ms"] < pc["prefix caching off"]["mean_ttft_ms"]

    # Try: coarser blocks lose more of a prefix that ends inside a block, and tie on one that does not
    def hit(length: int, block: int) -> float:
        return nb["shared"].replace(shared_prefix_len=length, block_size=block).run(ref).summary()["prefix_hit_tokens"]

    assert hit(1000, 64) < hit(1000, 16)
    assert hit(1024, 64) == hit(1024, 16)

    # Try: a squeezed cache with 50 prefixes evicts them; LRU keeps more hits and a lower TTFT than MRU
    squeezed = nb["shared"].replace(gpu_memory_utilization=0.25, num_prefixes=50)
    lru, mru = (squeezed.replace(eviction=e).run(ref).summary() for e in ("lru", "mru"))
    assert lru["prefix_hit_tokens"] > mru["prefix_hit_tokens"] and lru["mean_ttft_ms"] < mru["mean_ttft_ms"]
    # with only the notebook's 4 prefixes the policies barely differ
    few_lru, few_mru = (nb["shared"].replace(gpu_memory_utilization=0.25, eviction=e).run(ref).summary()
                        for e in ("lru", "mru"))
    assert few_lru["prefix_hit_tokens"] == few_mru["prefix_hit_tokens"]
    assert few_lru["mean_ttft_ms"] == pytest.approx(few_mru["mean_ttft_ms"], rel=0.05)


def test_pd_disaggregation(ref):
    nb = executed("03_pd_disaggregation.ipynb", ref)
    s = summaries(nb["pd"])
    layer, whole, pull = (s[f"1 prefill + 1 decode ({k})"]["mean_ttft_ms"]
                          for k in ("layer-wise KV", "whole KV", "KV pulled"))
    # streamed layer by layer the hand-off mostly hides; sent whole it adds to the first token; pulled, the
    # request waits for a decode step boundary
    assert layer < whole and layer < pull
    # the hand-off column: nearly gone streamed layer by layer, the whole transfer sent whole, longest pulled
    handoff = [float(nb["pd"][f"1 prefill + 1 decode ({k})"].requests.kv_transfer.mean())
               for k in ("layer-wise KV", "whole KV", "KV pulled")]
    assert handoff[0] < 0.1 * handoff[1] and handoff[1] < handoff[2]
    # the prefill instance runs pure prefill, the decode instance pure decode
    it = nb["pd"]["1 prefill + 1 decode (layer-wise KV)"].iterations
    prefill, decode = (it.where(it.instance == i, drop=True) for i in (0, 1))
    assert int(prefill.prefill_tokens.sum()) == int(prefill.num_tokens.sum()) > 0
    assert int(decode.prefill_tokens.sum()) == 0 and int(decode.decode_seqs.sum()) > 0
    # the one decode instance fills up to max_num_seqs, so TTFT and TPOT grow; the ITL tail shrinks by half
    split, colocated = s["1 prefill + 1 decode (layer-wise KV)"], s["2 colocated replicas"]
    assert int(decode.num_seqs.max()) == nb["base"].max_num_seqs
    # ...and its batches are bigger than either colocated replica's
    both = nb["pd"]["2 colocated replicas"].iterations
    assert all(float(decode.num_seqs.mean()) > float(both.num_seqs.where(both.instance == i).mean()) for i in (0, 1))
    q = nb["pd"]["1 prefill + 1 decode (layer-wise KV)"].requests
    assert float((q.scheduled - q.arrival).mean()) * 1e3 < 0.2 * float(q.ttft.mean())   # not a prefill queue
    for key in ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms"):
        assert split[key] > colocated[key]
    assert split["output_throughput"] < colocated["output_throughput"]
    assert split["p99_itl_ms"] < 0.5 * colocated["p99_itl_ms"]

    # Try: longer prompts make the prefill side the bottleneck (its queue is most of TTFT); a second decode
    # instance gives decode room (no longer full, first tokens sooner)
    long = nb["base"].replace(prefill_instances=1, input_len="lognormal:4000:0.3").run(ref).requests
    assert float((long.scheduled - long.arrival).mean()) > 0.5 * float(long.ttft.mean()) * 1e-3
    roomy = nb["base"].replace(instances=3, prefill_instances=1).run(ref)
    it3 = roomy.iterations
    assert int(it3.num_seqs.where(it3.instance > 0).max()) < nb["base"].max_num_seqs
    assert roomy.summary()["mean_ttft_ms"] < split["mean_ttft_ms"]


def test_parallelism(ref):
    nb = executed("04_parallelism.ipynb", ref)
    it = {k: r.iterations for k, r in nb["par"].items()}
    one, tp, pp = it["1 GPU"], it["TP=2"], it["PP=2"]
    # TP: about half the compute per step, plus two all-reduces of the hidden state per layer
    assert not one.comm.any() and not one.p2p.any()
    assert float(tp.comm.mean()) > 0
    assert 0.4 < float((tp.duration - tp.comm).mean()) / float(one.duration.mean()) < 0.6
    from llmss_lab.config.model import DTYPE_BYTES, ModelSpec
    from llmss_lab.latency.interconnect import Link, all_reduce_ns
    from llmss_lab.reference import ReferenceLayout

    name = nb["base"].model
    model = ModelSpec.from_hf_config(ReferenceLayout(ref).model_config(name), name)
    cluster = nb["base"].replace(tp=2).cluster_json(ref)
    npu = cluster["nodes"][0]["instances"][0]["npu_mem"]
    link = Link(cluster["link_bw"], cluster["link_latency"])
    for k in (0, int(np.argmax(tp.num_tokens.values))):   # a small step and the biggest
        tokens = int(tp.num_tokens[k])
        one_reduce = all_reduce_ns(link, 2, tokens * model.hidden_size * DTYPE_BYTES[model.torch_dtype], npu["mem_bw"])
        assert float(tp.comm[k]) * 1e6 == pytest.approx(2 * model.num_layers * one_reduce, rel=1e-6)
    # the all-reduces grow with the step's tokens: TP wins on small decode steps and loses on long prefill
    # chunks, so its worst inter-token gap is longer than one GPU's
    big, small = (lambda it: it.num_tokens >= 1024), (lambda it: it.num_tokens <= 128)
    assert float(tp.duration[small(tp)].mean()) < float(one.duration[small(one)].mean())
    assert float(tp.duration[big(tp)].mean()) > float(one.duration[big(one)].mean())
    s = summaries(nb["par"])
    assert s["TP=2"]["p99_itl_ms"] > s["1 GPU"]["p99_itl_ms"]
    # the throughput plot: the same requests, and TP=2 done with them sooner
    assert s["TP=2"]["total_output_tokens"] == s["1 GPU"]["total_output_tokens"]
    assert s["TP=2"]["duration_s"] < 0.95 * s["1 GPU"]["duration_s"]
    # DP of a dense model: independent ranks behind one front end, as two replicas behind load_score
    for key in ("mean_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "output_throughput"):
        assert s["DP=2"][key] == pytest.approx(s["2 replicas (load_score)"][key], rel=1e-9)
    # PP: the hand-over costs little; one step per stage in flight, each with about half the sequences
    assert 0 < float(pp.p2p.mean()) < 0.01 * float(pp.duration.mean())
    assert pp.sizes["step"] > 1.5 * one.sizes["step"]
    assert float(pp.num_seqs.mean()) < 0.6 * float(one.num_seqs.mean())

    # routing: between replicas that share nothing the router hardly matters; with shared prefixes prefix_aware
    # sends a prompt where its prefix is cached: more hits, sooner first tokens
    assert s["2 replicas (round_robin)"]["mean_ttft_ms"] == pytest.approx(s["2 replicas (load_score)"]["mean_ttft_ms"],
                                                                          rel=0.05)
    r = summaries(nb["routed"])
    for other in ("round_robin", "load_score"):
        assert r["prefix_aware"]["prefix_hit_tokens"] > 1.2 * r[other]["prefix_hit_tokens"]
        assert r["prefix_aware"]["mean_ttft_ms"] < 0.9 * r[other]["mean_ttft_ms"]
    # Try: with a few hot prefixes prefix_aware follows the cache, not the load: one replica gets most of the
    # requests, and output throughput falls below load_score's
    hot = {k: nb["shared"].replace(num_prefixes=8, router=k).run(ref) for k in ("load_score", "prefix_aware")}
    split = {k: np.bincount(h.requests.instance.values, minlength=2) for k, h in hot.items()}
    assert split["prefix_aware"].max() > 0.55 * split["prefix_aware"].sum() > split["load_score"].max()
    assert hot["prefix_aware"].summary()["output_throughput"] < hot["load_score"].summary()["output_throughput"]


def test_moe_routing(ref):
    nb = executed("05_moe_routing.ipynb", ref)
    hot = nb["table"]["busiest / mean expert, per layer"]
    # an even load for the balanced gate, hot experts for zipf
    assert hot["balanced"] < 1.05 and hot["zipf 1.2"] > 4
    # fewer experts touched wins over the straggler here: nearly every step is a small decode step, zipf has the
    # shortest TPOT and the highest throughput, random lands between
    s = summaries(nb["gates"])
    for key, sign in (("mean_tpot_ms", 1), ("output_throughput", -1)):
        zipf_, random_, balanced = (sign * s[k][key] for k in ("zipf 1.2", "random", "balanced"))
        assert zipf_ < random_ < balanced, key
    for r in nb["gates"].values():
        assert float((r.iterations.num_tokens <= 64).mean()) > 0.9
    # zipf's 16 is the ceiling num_experts / top-k (a token picks distinct experts); every token picks each
    # layer's two most popular experts
    zipf = nb["gates"]["zipf 1.2"]
    from llmss_lab.config.model import ModelSpec
    from llmss_lab.reference import ReferenceLayout

    model = ModelSpec.from_hf_config(ReferenceLayout(ref).model_config(nb["base"].model), nb["base"].model)
    assert hot["zipf 1.2"] == pytest.approx(model.num_experts / model.experts_per_token)
    load = zipf.experts.expert_load.sum("moe_group").transpose("layer", "expert").values
    top = np.sort(load, axis=1)[:, ::-1] / load.sum(axis=1, keepdims=True)
    assert np.allclose(top[:, :2], 1 / model.experts_per_token) and (top[:, 2] < 1 / model.experts_per_token).all()
    # hot spots, a different few in each layer: not columns
    assert len(set(load.argmax(axis=1).tolist())) > load.shape[0] / 2


def test_memory_tiers_and_pim(ref):
    nb = executed("06_memory_tiers_pim.ipynb", ref)
    w = nb["w"]
    # weights off the GPU free memory for KV and are streamed in every step
    assert w["weights in CPU memory"].attrs["num_gpu_blocks"] > w["weights on GPU"].attrs["num_gpu_blocks"]
    tpot = {k: r.summary()["mean_tpot_ms"] for k, r in w.items()}
    assert tpot["weights on GPU"] < tpot["weights in CPU memory"] < tpot["weights on CXL"]
    # about a fifth more KV blocks; every step lasts at least one read of the weights over the tier (CPU memory
    # 256 GiB/s, CXL 64), most exactly that, and TPOT follows, against 19 ms a step on the GPU; no preemption there
    gpu = w["weights on GPU"]
    assert 1.15 < w["weights in CPU memory"].attrs["num_gpu_blocks"] / gpu.attrs["num_gpu_blocks"] < 1.25
    moved = float(gpu.memory.npu_weights.max() - w["weights in CPU memory"].memory.npu_weights.max())   # MiB
    assert 14.5 < moved / 1024 < 15.5
    cpu_bw = nb["base"].replace(weights_on="cpu").cluster_json(ref)["nodes"][0]["cpu_mem"]["mem_bw"]
    for name, bw in (("weights in CPU memory", cpu_bw), ("weights on CXL", 64.0)):
        assert bw == {"weights in CPU memory": 256.0, "weights on CXL": 64.0}[name]   # as the text says
        steps = w[name].iterations.duration
        read = moved / 1024 / bw * 1e3   # ms
        assert float(steps.min()) == pytest.approx(read, rel=1e-3), name
        assert float((abs(steps - float(steps.min())) < 1e-6).mean()) > 0.5, name   # most steps: exactly the read
        assert tpot[name] == pytest.approx(read, rel=0.05)
    assert 15 < float(gpu.iterations.duration.mean()) < 25 and gpu.summary()["preemptions"] == 0
    # Try: where the GPU's cache runs short, weights in CPU memory end the preemptions and the seconds-long wait for
    # a first token (ten times sooner), but each later token still waits for a weight read
    short = nb["base"].replace(gpu_memory_utilization=0.2)
    alone, moved_out = (short.replace(**kw).run(ref).summary() for kw in ({}, {"weights_on": "cpu"}))
    assert alone["preemptions"] > 0 and moved_out["preemptions"] == 0 and alone["mean_ttft_ms"] > 1000
    assert moved_out["mean_ttft_ms"] < 0.1 * alone["mean_ttft_ms"]
    assert moved_out["mean_tpot_ms"] > alone["mean_tpot_ms"]

    pool = nb["pool"]
    hits = {k: r.summary()["prefix_hit_tokens"] for k, r in pool.items()}
    recalled = {k: int(r.requests.recalled_tokens.sum()) for k, r in pool.items()}
    # a pool per instance adds nothing while each GPU cache holds its prefixes; a shared one is recalled from
    assert recalled["+ CPU pool per instance"] == 0
    assert hits["+ CPU pool per instance"] == hits["GPU prefix cache only"]
    assert recalled["+ CPU pool shared by the node"] > 0
    assert hits["+ CPU pool shared by the node"] > hits["GPU prefix cache only"]
    # the memory plot: the pool only grows and never fills its 512 GiB; the GPUs' KV rises and falls, and the
    # finished requests' blocks stay behind in the GPU prefix cache
    m = pool["+ CPU pool shared by the node"].memory
    used = m.pool_used.sum("pool").values
    assert (np.diff(used) >= 0).all() and used[-1] > 0
    assert float(m.pool_capacity.sum()) / 1024 == 512 and used[-1] < float(m.pool_capacity.sum())
    kv, cached = m.npu_kv.sum("instance").values, m.npu_prefix_cache.sum("instance").values
    assert kv[-1] < 0.1 * kv.max() and cached[-1] > max(0.5 * kv.max(), 10 * cached[kv.argmax()])

    # Try: a small GPU cache evicts, and even a per-instance pool pays off
    squeezed = nb["two"].replace(gpu_memory_utilization=0.22)
    alone, pooled = squeezed.run(ref), squeezed.replace(prefix_storage="cpu").run(ref)
    assert int(pooled.requests.recalled_tokens.sum()) > 0
    assert pooled.summary()["mean_ttft_ms"] < alone.summary()["mean_ttft_ms"]

    # sub-batch interleaving overlaps PIM attention with the GPU's work; on this DDR4 device PIM attention is
    # slower than the GPU's, and the overlap hides part of that, not all
    tpot = {k: r.summary()["mean_tpot_ms"] for k, r in nb["p"].items()}
    assert tpot["GPU only"] < tpot["PIM + sub-batch interleaving"] < tpot["PIM attention"]

    # Try: on the faster devices PIM beats the GPU and interleaving then hurts; longer outputs widen the gap
    def pim_tpot(scenario, device: str = "", sbi: bool = False) -> float:
        s = scenario.replace(pim_device=device, attn_offload=True, sub_batch_interleaving=sbi) if device else scenario
        return s.run(ref).summary()["mean_tpot_ms"]

    base, long = nb["base"], nb["base"].replace(output_len="fixed:2000")
    gpu, gpu_long = pim_tpot(base), pim_tpot(long)
    for device in ("HBM2_1GB_2000_pim", "LPDDR5_2GB_6400_pim"):
        assert pim_tpot(base, device) < gpu < pim_tpot(base, device, sbi=True)
    for device in ("DDR4_8GB_3200_pim", "HBM2_1GB_2000_pim"):
        assert abs(pim_tpot(long, device) - gpu_long) > abs(pim_tpot(base, device) - gpu)


def test_power_and_energy(ref):
    nb = executed("07_power_energy.ipynb", ref)
    s = summaries(nb["e"])
    caps = [f"max_num_seqs={n}" for n in (8, 32, 128)]
    # about the same power whatever the batch; bigger batches finish sooner, so less energy per token
    watts = np.array([s[c]["total_energy_J"] / s[c]["duration_s"] for c in caps])
    assert watts.max() < 1.02 * watts.min()
    per_token = [s[c]["energy_per_output_token_J"] for c in caps]
    assert per_token[0] > per_token[1] > per_token[2]
    # the plot: both lines about as high, the small batches' several times as long
    assert s[caps[0]]["duration_s"] > 3 * s[caps[2]]["duration_s"]
    mean_w = {c: float(nb["e"][c].power.power.sum(("node", "component")).mean()) for c in (caps[0], caps[2])}
    assert mean_w[caps[0]] == pytest.approx(mean_w[caps[2]], rel=0.05)


def parameters(name: str) -> dict:
    """The committed values of a notebook's parameters cell."""
    cell = next(c for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    ns: dict = {}
    exec(compile(cell.source, name, "exec"), ns)
    return ns


def test_design_space(ref):
    """The notebook needs dask, so its claims are checked on runs made here with its committed parameters."""
    pytest.importorskip("distributed")
    import llmss_lab as ll
    from llmss_lab.sweeps import local_client

    p = parameters("design_space.ipynb")
    n = p["num_requests"]
    # the SLO the text spells out: 90 % of requests within 500 ms TTFT and 50 ms TPOT
    assert (p["slo_ttft_ms"], p["slo_tpot_ms"]) == (500.0, 50.0)
    assert "ll.SLO(ttft_ms=slo_ttft_ms, tpot_ms=slo_tpot_ms, quantile=0.9)" in "".join(
        c.source for c in nbformat.read(NOTEBOOKS / "design_space.ipynb", as_version=4).cells)
    slo = ll.SLO(ttft_ms=p["slo_ttft_ms"], tpot_ms=p["slo_tpot_ms"], quantile=0.9)
    base = ll.Scenario(num_requests=n, seed=p["seed"], power=True, tp=min(p["tp_values"]),
                       max_num_seqs=max(p["max_num_seqs_values"]))

    def evaluate(requests: int, rate: float) -> dict:
        r = base.replace(num_requests=requests, rate=rate).run(ref)
        q = r.requests
        return slo.evaluate(q.ttft.values, q.tpot.values, r.summary()["duration_s"], requests)

    # long enough for the queue to settle: four times as many requests give the same verdict at every swept
    # rate; goodput comes close to the rate where the SLO is met and collapses where it is not
    verdicts = []
    for rate in p["rates"]:
        here = evaluate(n, rate)
        assert here["slo_met"] == evaluate(4 * n, rate)["slo_met"], rate
        assert here["goodput"] > 0.9 * rate if here["slo_met"] else here["goodput"] < 0.5 * rate
        verdicts.append(here["slo_met"])
    assert 0 < sum(verdicts) < len(verdicts)   # the swept rates straddle what the configuration keeps up with

    with local_client(2) as client:
        # 80 requests measure a burst: more than four times the rate the notebook's runs sustain
        cap = {k: ll.capacity(base.replace(num_requests=k), slo, rate_range=(1.0, 64.0), client=client,
                              reference_dir=ref, progress=False).max_rate.item() for k in (80, n)}
        assert cap[80] > 4 * cap[n]
        # over a grid with the rate in it, the front holds a point that is there only for its low energy per
        # token at a high rate, while most of its requests miss the SLO
        ds = ll.sweep(base, {"tp": p["tp_values"], "rate": p["rates"]}, client=client, reference_dir=ref, slo=slo,
                      progress=False)
    front = ll.pareto_front(ds, maximize=["goodput"], minimize=["energy_per_output_token_J", "num_gpus"])
    missed = front & (ds.slo_met == 0)
    assert missed.any() and bool((ds.goodput.where(missed) < 0.5 * ds.rate).any())
    assert ll.pareto_front(ds.sel(rate=8.0), maximize=["goodput"], minimize=["energy_per_output_token_J"]).any()
