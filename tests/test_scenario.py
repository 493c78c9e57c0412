"""Scenario (JSON in/out, cluster building, errors) and the reference catalog."""
from __future__ import annotations

import json

import pytest

from llmss_lab.catalog import scan
from llmss_lab.config.cluster import load_cluster
from llmss_lab.errors import InputError
from llmss_lab.scenario import Scenario


def test_catalog_lists_what_the_reference_folder_holds(ref):
    cat = scan(ref)
    hw = cat.hardware["RTXPRO6000"]
    assert "meta-llama/Llama-3.1-8B" in hw.models and 1 in hw.models["meta-llama/Llama-3.1-8B"]
    assert hw.mem_size == 96 and hw.power is not None   # from the shipped power config
    assert "single_node_pd_instance" in cat.cluster_configs
    assert "sharegpt-llama-3.1-8b-300-sps10" in cat.traces
    assert "DDR4_8GB_3200_pim" in cat.pim_devices
    legacy = scan(ref / "ispass26")    # the paper artifact's layout: tpN folders straight under the model
    assert legacy.hardware["H100"].models["meta-llama/Llama-3.1-70B"] == (1, 2, 4)


def test_scenario_json_round_trip(tmp_path):
    s = Scenario(instances=3, prefill_instances=1, rate=2.5, trace="", power=True)
    path = s.save(tmp_path / "s.json")
    assert Scenario.load(path) == s
    assert json.loads(path.read_text())["instances"] == 3


@pytest.mark.parametrize("data, key", [({"max_num_seq": 4}, "max_num_seq"), ({"tp": "2"}, "tp"),
                                       ({"power": 1}, "power")])
def test_scenario_rejects_unknown_keys_and_wrong_types(data, key):
    with pytest.raises(InputError) as err:
        Scenario.from_dict(data, "my.json")
    assert err.value.source == "my.json" and err.value.where == key


def test_loading_a_field_the_scenario_ignores_warns(tmp_path, caplog):
    """With a cluster file the shape fields are not used: a file asking for TP 4 beside one is told so."""
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"cluster_config": "single_node_pd_instance", "tp": 4, "pp": 1, "trace": "t",
                             "rate": 3.0}))
    with caplog.at_level("WARNING", logger="llmss_lab.scenario"):
        s = Scenario.load(p)
    assert s.tp == 4
    msgs = [r.getMessage() for r in caplog.records]
    assert any("tp: 4 is not used: cluster_config 'single_node_pd_instance' sets the cluster" in m for m in msgs)
    assert any("rate: 3.0 is not used: trace 't' gives the workload" in m for m in msgs)
    assert not any(": pp:" in m for m in msgs)          # a default value, as the explorer saves it: no noise
    caplog.clear()
    Scenario(tp=4).save(p)
    Scenario.load(p)
    assert not caplog.records


def test_malformed_scenario_file_names_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"tp": 2,\n "dp": }')
    with pytest.raises(InputError) as err:
        Scenario.load(p)
    assert err.value.where == "line 2"


def test_built_cluster_has_the_requested_shape(ref, tmp_path):
    s = Scenario(instances=2, dp=2, tp=2, prefill_instances=0, weights_on="cpu", power=True)
    spec = s.cluster(ref)
    insts = spec.instances
    assert len(insts) == 4 and {i.tp_size for i in insts} == {2}
    assert [i.dp_group for i in insts] == ["replica0", "replica0", "replica1", "replica1"]
    assert all(i.features["placement"] == {"default": {"weights": "cpu"}} for i in insts)
    assert spec.nodes[0].power is not None
    # the built JSON is LLMServingSim's format: it loads through the file reader unchanged
    p = tmp_path / "c.json"
    p.write_text(json.dumps(s.cluster_json(ref)))
    assert len(load_cluster(p).instances) == 4
    pd_spec = Scenario(instances=3, prefill_instances=1).cluster(ref)
    assert [i.pd_type for i in pd_spec.instances] == ["prefill", "decode", "decode"]


@pytest.mark.parametrize("changes, key", [
    ({"instances": 2, "prefill_instances": 2}, "prefill_instances"),
    ({"tp": 0}, "tp"),
    ({"weights_on": "cxl"}, "weights_on"),        # no CXL memory given
    ({"weights_on": "disk"}, "weights_on"),
    ({"hardware": "RTX3090", "power": True}, "power"),   # no reference config gives its power figures
])
def test_bad_shapes_name_the_key(ref, changes, key):
    with pytest.raises(InputError) as err:
        Scenario(**changes).cluster(ref)
    assert err.value.where == key


@pytest.mark.parametrize("changes, fields, key", [
    ({"tp": 3}, "tp", "nodes[0].instances[0].tp_size"),                       # checked as the cluster is built
    ({"npu_mem_gib": 8.0}, "npu_mem_gib, gpu_memory_utilization",             # checked as the run is built
     "nodes[0].instances[0].npu_mem.mem_size"),
    ({"pim_device": "nope"}, "pim_device", "nodes[0].cpu_mem.pim_config"),
    ({"instances": 2, "ep": 3, "model": "Qwen/Qwen3-30B-A3B-Instruct-2507"}, "ep", "nodes[0].instances[0].ep_size"),
    ({"weights_on": "cxl", "cxl_mem_gib": 10.0, "cxl_devices": 2}, "cxl_mem_gib, cxl_devices", "cxl_mem.mem_size"),
])
def test_errors_in_the_built_cluster_name_the_scenario_fields(ref, changes, fields, key):
    """A scenario file names `tp`, not the key of the config built from it; that key is still given."""
    with pytest.raises(InputError) as err:
        Scenario(num_requests=3, **changes).run(ref)
    assert (err.value.source, err.value.where) == ("scenario", fields) and key in err.value.message


def test_weights_on_cxl_are_spread_over_the_devices(ref):
    """Every CXL device holds a share of the blocks and streams it at once (was: all on device 0, so the device
    count changed nothing), and a share too large for a device says the size is split."""
    def run(devices: int, gib: float = 40.0):
        return Scenario(num_requests=10, weights_on="cxl", cxl_mem_gib=gib, cxl_devices=devices).run(ref)
    one, three = run(1), run(3)
    read = three.memory.tier_bytes_read
    assert all(read.sel(tier=f"cxl:{k}") > 0 for k in range(3))
    assert float(read.sel(tier=["cxl:0", "cxl:1", "cxl:2"]).sum()) == pytest.approx(
        float(one.memory.tier_bytes_read.sel(tier="cxl:0")), rel=0.05)      # the same weights, streamed per step
    assert three.summary()["mean_tpot_ms"] < 0.5 * one.summary()["mean_tpot_ms"]
    with pytest.raises(InputError, match=r"do not fit its 5 GiB \(10 GiB shared by 2 devices\)"):
        run(2, 10.0)


def test_workload_errors_name_the_scenario_key(ref):
    with pytest.raises(InputError) as err:
        Scenario(input_len="bimodal").workload(ref)
    assert (err.value.source, err.value.where) == ("scenario", "input_len")
    with pytest.raises(InputError) as err:
        Scenario(trace="no_such_trace").workload(ref)
    assert err.value.where == "trace" and "sharegpt-llama-3.1-8b-300-sps10" in str(err.value)


def test_names_pasted_with_spaces_around_them_are_found(ref):
    s = Scenario(trace=" example_trace ", cluster_config="single_node_single_instance\n", num_requests=0)
    assert len(s.workload(ref)) == 10 and s.cluster(ref).instances[0].hardware == "RTXPRO6000"


def test_trace_and_config_by_catalog_name(ref):
    s = Scenario(trace="sharegpt-llama-3.1-8b-300-sps10", num_requests=30, cluster_config="single_node_pd_instance")
    res = s.run(ref)
    assert res.summary()["completed"] == 30
    assert res.attrs["num_instances"] == 2
    assert Scenario.from_dict(json.loads(res.attrs["scenario_json"])) == s


def test_prompt_longer_than_budget_without_chunking_is_refused(ref):
    s = Scenario(num_requests=20, input_len="fixed:3000", enable_chunked_prefill=False)
    with pytest.raises(InputError, match="max_num_batched_tokens"):
        s.run(ref)
    assert s.replace(max_num_batched_tokens=4096).run(ref).summary()["completed"] == 20


def test_without_chunking_a_request_that_could_not_be_recomputed_in_one_step_is_refused(ref):
    """Preempted, a request is recomputed whole; without chunking, one longer than the budget waited forever
    and the run ended in 'requests never finished' (vLLM refuses such a budget at start-up)."""
    s = Scenario(npu_mem_gib=16.0, gpu_memory_utilization=1.0, enable_chunked_prefill=False,
                 max_num_batched_tokens=512, max_num_seqs=16, num_requests=20, rate=1000.0, input_len="fixed:500",
                 output_len="fixed:400", enable_prefix_caching=False)
    with pytest.raises(InputError, match=r"^scenario: max_num_batched_tokens: request 0 of .* needs 900 tokens .* "
                                         r"but the max_num_batched_tokens of nodes\[0\]\.instances\[0\] is 512 "):
        s.run(ref)
    res = s.replace(max_num_batched_tokens=1024).run(ref)
    assert res.summary()["completed"] == 20 and int(res.requests.preemptions.sum()) > 0


def test_numpy_values_from_a_notebook_are_stored_as_plain_values(tmp_path):
    """np.arange / np.linspace / a DataFrame hand numpy scalars over; they save as JSON and compare equal."""
    import numpy as np

    from llmss_lab.config.engine import EngineConfig

    plain = Scenario(tp=2, rate=2.5, power=True, hardware="A6000")
    for built in (Scenario(tp=np.int64(2), rate=np.float32(2.5), power=np.bool_(True), hardware=np.str_("A6000")),
                  Scenario.from_dict({"tp": np.int32(2), "rate": np.array(2.5), "power": np.bool_(True),
                                      "hardware": "A6000"}),
                  Scenario.from_dict({"tp": 2.0, "rate": 2.5, "power": True, "hardware": "A6000"})):
        assert built == plain and [type(getattr(built, k)) for k in ("tp", "rate", "power", "hardware")] == \
            [int, float, bool, str]
        assert Scenario.load(built.save(tmp_path / "s.json")) == plain
    engine = EngineConfig(max_num_seqs=np.int64(64), gpu_memory_utilization=np.float64(0.8),
                          enable_prefix_caching=np.bool_(False))
    assert engine == EngineConfig(max_num_seqs=64, gpu_memory_utilization=0.8, enable_prefix_caching=False)
    assert type(engine.max_num_seqs) is int and type(engine.enable_prefix_caching) is bool
    with pytest.raises(InputError, match="max_num_seqs: must be a whole number >= 0, got 2.5"):
        EngineConfig(max_num_seqs=np.float64(2.5))
    with pytest.raises(InputError) as err:
        Scenario.from_dict({"tp": np.float64(2.5)}, "my.json")
    assert err.value.where == "tp"


def test_simulate_takes_numpy_settings_as_their_plain_values(ref):
    import numpy as np

    import llmss_lab as ll

    cluster, trace = ref / "configs/cluster/single_node_single_instance.json", "workloads/example_trace.jsonl"
    a = ll.simulate(cluster, trace, reference_dir=ref, num_requests=np.int64(5), seed=np.uint8(3),
                    gate_skew=np.float32(1.5), memory_sample_s=np.float32(0.5), engine={"max_num_seqs": np.int64(4)})
    b = ll.simulate(cluster, trace, reference_dir=ref, num_requests=5, seed=3, gate_skew=1.5, memory_sample_s=0.5,
                    engine={"max_num_seqs": 4})
    assert a.attrs["seed"] == 3 and type(a.attrs["seed"]) is int
    assert a.requests.equals(b.requests)


@pytest.mark.parametrize("key, value", [("instances", 1_000_000), ("dp", 10_000)])
def test_a_node_of_absurd_size_is_refused_up_front(key, value):
    """instances=1e6 ran for minutes with no word; one node of a scenario holds at most 256 replicas."""
    with pytest.raises(InputError, match=rf"^s\.json: {key}: must be <= \d+ \(one node; write a cluster_config"):
        Scenario.from_dict({key: value}, "s.json")


@pytest.mark.parametrize("key", ["trace", "cluster_config"])
def test_a_folder_for_a_file_field_is_named_as_a_folder(ref, tmp_path, key):
    with pytest.raises(InputError, match=rf"^scenario: {key}: '.*' is a folder; give a"):
        sc = Scenario(**{key: str(tmp_path)})
        sc.workload(ref) if key == "trace" else sc.cluster(ref)


def test_a_length_distribution_that_is_not_numbers_lists_the_forms():
    with pytest.raises(InputError, match=r"input_len: bad length distribution 'lognormal:abc'; use fixed:N"):
        Scenario(input_len="lognormal:abc").workload()


def test_replicas_times_dp_members_are_capped_as_one_node():
    """instances=64 with dp=16 (each within its own cap, and the explorer's) built 1,024 engines in one node."""
    with pytest.raises(InputError, match=r"^s\.json: instances, dp: 64 replicas x 16 DP members = 1024 engines, "
                                         r"more than 256"):
        Scenario.from_dict({"instances": 64, "dp": 16}, "s.json")
    Scenario.from_dict({"instances": 64, "dp": 4}, "s.json")


def test_the_npu_memory_is_the_hardwares_unless_set(ref):
    """Scenario(hardware="H100") ran with the RTX PRO 6000's 96 GiB and 1597 GB/s on an 80 GB H100: the
    memory fields had that card's numbers as their defaults, whatever the hardware."""
    from llmss_lab.latency.analytical import find_spec

    def mem(s: Scenario, root=ref):
        (inst,) = s.cluster_json(root)["nodes"][0]["instances"]
        return inst["npu_mem"]["mem_size"], inst["npu_mem"]["mem_bw"]

    rtx = scan(ref).hardware["RTXPRO6000"]
    assert mem(Scenario()) == (rtx.mem_size, rtx.mem_bw)                   # the reference configs' numbers
    for hw in ("H100", "H200", "MI300X"):                                  # no profile here: the spec's
        spec = find_spec(hw)
        assert mem(Scenario(hardware=hw)) == (spec.memory_gib, spec.memory_bw_gbs)
    h100 = scan(ref / "ispass26").hardware["H100"]                          # profiled in the artifact
    assert mem(Scenario(hardware="H100"), ref / "ispass26") == (h100.mem_size, h100.mem_bw)
    assert mem(Scenario(hardware="H100", npu_mem_gib=40.0)) == (40.0, find_spec("H100").memory_bw_gbs)
    small = Scenario(hardware="H100", latency="analytical", num_requests=20).run(ref)
    assert small.attrs["kv_cache_tokens"] < Scenario(latency="analytical", num_requests=20).run(ref).attrs[
        "kv_cache_tokens"]                                                 # 80 GiB holds less KV than 96 GiB


def test_a_mistyped_field_is_named_with_the_closest_one():
    import dataclasses
    import pickle

    with pytest.raises(InputError, match=r"Scenario: max_num_seq: .*did you mean 'max_num_seqs'"):
        Scenario(max_num_seq=3)
    s = Scenario(num_requests=3)   # the check leaves copies and pickles (dask ships scenarios) alone
    assert pickle.loads(pickle.dumps(s)) == s and dataclasses.replace(s, rate=2.0).rate == 2.0


def test_dp_members_step_in_lockstep_for_moe_models_only(ref):
    """vLLM synchronises DP ranks for MoE models (their experts all-gather every step); a dense model's DP ranks
    are independent engines, the same as as many replicas."""
    base = Scenario(num_requests=40, rate=20.0, seed=2)
    wl = base.workload(ref)
    dense = [base.replace(**kw).run(ref, workload=wl).summary() for kw in ({"dp": 2}, {"instances": 2})]
    assert dense[0] == dense[1]
    it = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", dp=2, ep=2, num_requests=10).run(ref).iterations
    starts = [set(it.start.values[it.instance.values == i].tolist()) for i in (0, 1)]
    assert starts[0] == starts[1]   # every step together, an idle member running a dummy, logged as busy
    idle = it.num_tokens.values == 0
    assert idle.any() and (it.duration.values[idle] > 0).all()


def test_a_scenario_file_is_checked_whole_before_any_point_runs(ref, tmp_path, monkeypatch):
    """A mistyped policy or length passed Scenario.load and failed every point of a sweep, naming 'settings';
    a trace beside the scenario file was looked for in the working folder."""
    p = tmp_path / "s.json"
    for key, value, says in (("router", "least_load", "did you mean 'least_loaded'"),
                             ("input_len", "fixed:x", "bad length distribution"),
                             ("trace", "  ", "is blank; leave it empty for none")):
        p.write_text(json.dumps({key: value}))
        with pytest.raises(InputError, match=f"s.json: {key}: .*{says}"):
            Scenario.load(p)
    (tmp_path / "mine.jsonl").write_text((ref / "workloads/example_trace.jsonl").read_text())
    p.write_text(json.dumps({"trace": "mine.jsonl", "num_requests": 3}))
    monkeypatch.chdir(ref)   # anywhere but the scenario's folder
    assert len(Scenario.load(p).workload(ref)) == 3


# ---- the engine and latency settings `llmss run` has flags for --------------------------------------------------

def _fit_copy(folder, scale: float = 1.0):
    """The committed efficiency fit, its GEMM peak efficiency scaled (a fit that differs from the stored one)."""
    import yaml

    from llmss_lab.latency.roofline import EFFICIENCY_FILE

    data = yaml.safe_load(EFFICIENCY_FILE.read_text())
    data["classes"]["gemm"]["e_max"] *= scale
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_run_flags_fields_round_trip_through_a_file(tmp_path, monkeypatch):
    fit = _fit_copy(tmp_path)
    s = Scenario(num_gpu_blocks=100, max_model_len=512, long_prefill_token_threshold=64, reserve_full_isl=False,
                 latency="analytical", efficiency_file=str(fit))
    assert Scenario.load(s.save(tmp_path / "s.json")) == s
    assert {k: v for k, v in json.loads((tmp_path / "s.json").read_text()).items() if k in (
        "num_gpu_blocks", "max_model_len", "long_prefill_token_threshold", "reserve_full_isl")} == {
        "num_gpu_blocks": 100, "max_model_len": 512, "long_prefill_token_threshold": 64, "reserve_full_isl": False}
    s.replace(efficiency_file="fit.yaml").save(tmp_path / "rel.json")   # a neighbour of the scenario file
    monkeypatch.chdir(tmp_path.parent)
    assert Scenario.load(tmp_path / "rel.json").efficiency_file == str(fit)
    (tmp_path / "t.jsonl").write_text('{"input_toks": 5, "output_toks": 2, "arrival_time_ns": 0}\n')
    s.replace(efficiency_file=" fit.yaml ", trace="t.jsonl\n").save(tmp_path / "pasted.json")   # spaces around
    pasted = Scenario.load(tmp_path / "pasted.json")
    assert (pasted.efficiency_file, pasted.trace) == (str(fit), str(tmp_path / "t.jsonl"))
    assert Scenario().engine()["num_gpu_blocks"] is None and Scenario().engine()["max_model_len"] is None   # 0: unset


@pytest.mark.parametrize("key,value,says", [
    ("num_gpu_blocks", -1, "must be a whole number >= 0, got -1"),
    ("num_gpu_blocks", "40", "must be a whole number, got '40'"),
    ("num_gpu_blocks", 2.5, "must be a whole number, got 2.5"),
    ("num_gpu_blocks", 1 << 23, "must be a whole number from 1 to 4194304, got 8388608"),
    ("max_model_len", -512, "must be a whole number >= 0, got -512"),
    ("max_model_len", True, "must be a whole number, got True"),
    ("long_prefill_token_threshold", -1, "must be a whole number >= 0, got -1"),
    ("long_prefill_token_threshold", None, "must be a whole number, got None"),
    ("reserve_full_isl", "no", "must be true or false, got 'no'"),
    ("reserve_full_isl", 0, "must be true or false, got 0"),
    ("efficiency_file", 3, "must be text, got 3"),
    ("efficiency_file", "  ", "is blank; leave it empty for none"),
    ("efficiency_file", "no_such_fit.yaml", "file does not exist: 'no_such_fit.yaml'"),
    ("efficiency_file", "/", "is a folder, expected a file: '/'"),
    ("efficiency_file", "fit\x00.yaml", "the name holds a NUL character, which no file name can: 'fit\\x00.yaml'"),
])
def test_bad_run_flag_fields_name_the_file_and_key(key, value, says, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(InputError) as err:
        Scenario.load(path)
    assert str(err.value) == f"{path}: {key}: {says}"


def test_an_efficiency_file_with_a_measured_profile_or_a_broken_one_is_refused_at_load(tmp_path):
    fit = _fit_copy(tmp_path)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"latency": "profile", "efficiency_file": str(fit)}))
    with pytest.raises(InputError, match=rf"^{path}: efficiency_file: efficiency curves shape the analytical model"):
        Scenario.load(path)
    fit.write_text("classes: 3\n")   # an error inside the fit names the fit and its key
    path.write_text(json.dumps({"latency": "analytical", "efficiency_file": str(fit)}))
    with pytest.raises(InputError) as err:
        Scenario.load(path)
    assert err.value.source == str(fit) and err.value.where and "\n" not in str(err.value)


def test_a_max_model_len_past_the_models_is_named_at_the_scenario_key(ref, tmp_path):
    path = Scenario(num_requests=2, max_model_len=1_000_000).save(tmp_path / "s.json")
    with pytest.raises(InputError) as err:
        Scenario.load(path).run(ref)
    assert (err.value.source, err.value.where) == (str(path), "max_model_len"), err.value
    assert "is longer than meta-llama/Llama-3.1-8B allows" in err.value.message


SYNTHETIC = "synthetic(poisson, 10.0/s, n=4, seed=0)"


@pytest.mark.parametrize("fields, key, says", [
    ({"max_model_len": 71}, "max_model_len", "72 tokens (input 64 + output 8) but the max_model_len of "
                                             "nodes[0].instances[0] holds at most 71 (4 such requests)"),
    ({"num_gpu_blocks": 4}, "num_gpu_blocks", "72 tokens (input 64 + output 8) but the KV cache of "
                                              "nodes[0].instances[0] holds at most 64 (4 such requests)"),
    ({"input_len": "fixed:8000", "npu_mem_gib": 17.5}, "npu_mem_gib, gpu_memory_utilization",
     "8008 tokens (input 8000 + output 8) but the KV cache of nodes[0].instances[0] holds at most 6480 (4 such "
     "requests) (the built cluster's nodes[0].instances[0].npu_mem.mem_size)"),
    ({"input_len": "fixed:8000", "cluster_config": "c.json"}, "c.json: nodes[0].instances[0].npu_mem.mem_size",
     "8008 tokens (input 8000 + output 8) but the KV cache of nodes[0].instances[0] holds at most 6480 (4 such "
     "requests)"),
    ({"input_len": "fixed:5000", "model": "microsoft/Phi-mini-MoE-instruct", "latency": "analytical"}, "model",
     "5008 tokens (input 5000 + output 8) but the max_model_len (the model's context length) of "
     "nodes[0].instances[0] holds at most 4096 (4 such requests) (the built cluster's nodes[0].instances[0].model_name)"),
    ({"enable_chunked_prefill": False, "max_num_batched_tokens": 40, "max_num_seqs": 4}, "max_num_batched_tokens",
     "72 tokens (input 64 + output 8) to fit one step whole, as it must with chunked prefill off (if preempted it is "
     "recomputed at once), but the max_num_batched_tokens of nodes[0].instances[0] is 40 (4 such requests); raise "
     "max_num_batched_tokens or turn chunked prefill on")])
def test_a_generated_request_that_cannot_fit_names_the_scenario_key_that_sets_the_limit(ref, tmp_path, capsys,
                                                                                        monkeypatch, fields, key,
                                                                                        says):
    """A scenario file with max_model_len 71 and 72-token requests was refused as 'synthetic(poisson, ...):
    request 0: ...', naming the generated workload, which is no file: its writer is told the file and key to change
    (the scenario's field, or the cluster config's instance), through `llmss run --scenario` and Scenario.run."""
    from tests.test_cli import run

    monkeypatch.chdir(tmp_path)
    config = json.loads((ref / "configs/cluster/single_node_single_instance.json").read_text())
    config["nodes"][0]["instances"][0]["npu_mem"]["mem_size"] = 17.5   # room for 6,480 tokens of KV cache
    (tmp_path / "c.json").write_text(json.dumps(config))
    (tmp_path / "s.json").write_text(json.dumps({"num_requests": 4, "input_len": "fixed:64", "output_len": "fixed:8",
                                                 "hardware": "RTXPRO6000", **fields}))
    named = key if key.startswith("c.json") else f"s.json: {key}"
    with pytest.raises(InputError) as err:
        Scenario.load("s.json").run(ref)
    assert str(err.value) == f"{named}: request 0 of {SYNTHETIC} needs {says}"
    code, _, said = run(capsys, "run", "--scenario", "s.json", "--reference-dir", str(ref), "--out", "r.nc", "-q")
    assert (code, said) == (2, f"llmss: error: {named}: request 0 of {SYNTHETIC} needs {says}\n")
    assert not (tmp_path / "r.nc").exists()
