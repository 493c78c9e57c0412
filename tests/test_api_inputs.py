"""Python-API inputs found by an audit: each ends in a named InputError, never a bare traceback or a hang."""
from __future__ import annotations

import hashlib
import json
import resource
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import llmss_lab as ll
from llmss_lab.config.cluster import NodeSpec
from llmss_lab.errors import InputError
from llmss_lab.reference import ENV_VAR, ReferenceLayout, resolve_reference_dir
from llmss_lab.workload import Workload, load_trace, synthetic

from .conftest import alarm

CLUSTER = "configs/cluster/single_node_single_instance.json"
TRACE = "workloads/example_trace.jsonl"


@contextmanager
def within(seconds: int, more_bytes: int = 2 * 2**30):
    """A call that takes this long, or this much more memory, is stuck: fail it instead of hanging the run
    (or of filling the machine's memory)."""
    limits = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    if limits[1] == resource.RLIM_INFINITY or in_use + more_bytes < limits[1]:
        resource.setrlimit(resource.RLIMIT_AS, (in_use + more_bytes, limits[1]))
    try:
        with alarm(seconds):
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limits)


# ---- synthetic workloads --------------------------------------------------------------------------

@pytest.mark.parametrize("cv", [0, 0.0, 1e-13, 1e-200])
def test_gamma_arrivals_with_cv_near_zero_are_regular(cv):
    wl = synthetic(5, rate=10, arrival="gamma", cv=cv)
    assert wl.arrival_ns.tolist() == [100_000_000 * k for k in range(1, 6)]


@pytest.mark.parametrize("cv", [1e200, 10.5, -1, float("nan"), float("inf")])
def test_cv_outside_0_to_10_is_named(cv):
    with pytest.raises(InputError) as err:
        synthetic(5, arrival="gamma", cv=cv)
    assert err.value.source == "argument" and err.value.where == "cv"


def test_bursty_arrivals_that_stretch_past_30_days_name_the_rate():
    n = 20
    with pytest.raises(InputError, match="span .* days, more than 30") as err:
        synthetic(n, rate=n / (29 * 86_400), arrival="gamma", cv=10, seed=0)   # mean span 29 days
    assert err.value.where == "rate"


@pytest.mark.parametrize("vocab_size", [10**30, 2**31 + 1, 0])
def test_vocab_size_is_bounded(vocab_size):
    with pytest.raises(InputError) as err:
        synthetic(5, shared_prefix_len=10, vocab_size=vocab_size)
    assert err.value.where == "vocab_size"


def test_a_vocabulary_of_2_31_ids_works():
    wl = synthetic(3, shared_prefix_len=10, vocab_size=2**31)
    assert all(0 <= t < 2**31 for ids in wl.token_ids for t in ids)


def test_many_prefixes_build_only_those_used():
    with within(20):
        wl = synthetic(5, shared_prefix_len=64, num_prefixes=10**9, seed=3)
    prefixes = {tuple(ids[:64]) for ids in wl.token_ids}
    assert 1 <= len(prefixes) <= 5
    assert all(len(ids) == n for ids, n in zip(wl.token_ids, wl.input_toks))
    again = synthetic(5, shared_prefix_len=64, num_prefixes=10**9, seed=3)
    assert again.token_ids == wl.token_ids


def test_num_prefixes_beyond_an_int64_is_named():
    with pytest.raises(InputError) as err, within(20):
        synthetic(5, shared_prefix_len=64, num_prefixes=10**30)
    assert err.value.where == "num_prefixes"


def _fingerprint(wl: Workload) -> str:
    h = hashlib.sha256()
    for a in (wl.arrival_ns, wl.input_toks, wl.output_toks):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    h.update(json.dumps(wl.token_ids).encode())
    h.update(wl.name.encode())
    return h.hexdigest()[:16]


# Fingerprints taken before prefixes were drawn lazily and cv got its range: a seed must keep giving
# the same workload (paper figures and tests depend on it), more prefixes than requests included.
SEEDED = [
    (dict(num_requests=40, seed=0), "4d0baf12818dcd71"),
    (dict(num_requests=2, seed=7, arrival="gamma", cv=3), "77a393fc5d116e76"),
    (dict(num_requests=40, seed=7, arrival="gamma", cv=1e-07), "38191b4571d6f969"),
    (dict(num_requests=40, seed=0, input_len="lognormal:120:0.8", shared_prefix_len=64, num_prefixes=4),
     "61a194c28f7abb75"),
    (dict(num_requests=2, seed=7, input_len="lognormal:120:0.8", shared_prefix_len=2048, num_prefixes=200),
     "b4752b836f2d222a"),
    (dict(num_requests=40, seed=0, input_len="lognormal:120:0.8", shared_prefix_len=16, num_prefixes=5000),
     "ce017396287b4e59"),
]


@pytest.mark.parametrize("kwargs, expected", SEEDED)
def test_seeded_workloads_are_unchanged(kwargs, expected):
    assert _fingerprint(synthetic(**kwargs)) == expected


# ---- traces and workloads built in Python -----------------------------------------------------------

def test_a_trace_line_with_a_repeated_key_is_refused(tmp_path):
    p = tmp_path / "dup.jsonl"
    p.write_text('{"input_toks": 10, "output_toks": 5, "arrival_time_ns": 0}\n'
                 '{"input_toks": 10, "input_toks": 20, "output_toks": 5, "arrival_time_ns": 1}\n')
    with pytest.raises(InputError, match="'input_toks' given twice") as err:
        load_trace(p)
    assert err.value.source == str(p) and err.value.where == "line 2"


def test_token_ids_must_cover_the_prompt():
    with pytest.raises(InputError, match="has 2 token ids, but input_toks.0. is 3") as err:
        Workload([0, 1000], [3, 3], [3, 3], [[1, 2], [1, 2]], name="mine")
    assert err.value.source == "mine" and err.value.where == "token_ids[0]"
    with pytest.raises(InputError) as err:
        Workload([0, 1000], [3, 3], [3, 3], [None, "abc"])
    assert err.value.where == "token_ids[1]"
    with pytest.raises(InputError) as err:
        Workload([0, 1000], [3, 3], [3, 3], np.zeros((2, 3)))
    assert err.value.where == "token_ids"


@pytest.mark.parametrize("ids", [[-1, 2, 3], ["a", "b", "c"], [1.5, 2, 3], [True, False, True], [1, None, 3]])
def test_token_ids_are_whole_numbers_as_a_trace_has_them(ids):
    """The trace reader refused these and a Workload built in Python took them: the prefix cache hashed them."""
    with pytest.raises(InputError, match="token ids are whole numbers >= 0") as err:
        Workload([0, 1000], [3, 3], [3, 3], [[1, 2, 3], ids])
    assert err.value.where == "token_ids[1]"


def test_token_ids_of_the_prompt_or_of_prompt_and_output_are_taken():
    wl = Workload([0, 1000, 2000], [3, 3, 3], [2, 2, 2], [[1, 2, 3], [1, 2, 3, 4, 5], None])
    assert len(wl.head(2)) == 2
    assert Workload([0], [3], [2], [np.arange(3)]).token_ids[0].tolist() == [0, 1, 2]


# ---- simulate() and the reference folder ------------------------------------------------------------

@pytest.mark.parametrize("key, kwargs", [("hardware", dict(hardware=None)), ("hardware", dict(hardware="")),
                                         ("model_name", dict(model_name=None))])
def test_a_spec_without_a_model_or_hardware_name_is_named(ref, key, kwargs):
    args = dict(model_name="meta-llama/Llama-3.1-8B", hardware="RTXPRO6000") | kwargs
    with pytest.raises(InputError, match="expected a name") as err:   # named as the spec is built
        ll.simulate(ll.ClusterSpec.single(args["model_name"], args["hardware"], mem_size=96), ref / TRACE,
                    reference_dir=ref)
    assert err.value.where == f"nodes[0].instances[0].{key}"


@pytest.mark.parametrize("cluster", [None, 2.5, "", {"nodes": []}])
def test_simulate_says_what_a_cluster_can_be(ref, cluster):
    with pytest.raises(InputError, match="expected a ClusterSpec .* or the path of a cluster JSON") as err:
        ll.simulate(cluster, ref / TRACE, reference_dir=ref)
    assert err.value.where == "cluster"


@pytest.mark.parametrize("kwargs, where, says", [
    (dict(efficiency_file=3), "efficiency_file", "expected the path of an efficiency file, got 3"),
    (dict(engine={None: 1}), "engine", "setting names are text, got None"),
])
def test_settings_of_the_wrong_type_are_named_not_a_bare_type_error(ref, kwargs, where, says):
    with pytest.raises(InputError, match=says) as err:
        ll.simulate(ref / CLUSTER, ref / TRACE, reference_dir=ref, num_requests=3, **kwargs)
    assert err.value.where == where


def test_a_missing_efficiency_file_names_the_setting_as_well_as_the_path(ref, tmp_path):
    """It read '/no/such.yaml: file does not exist', which a caller passing several paths could not place."""
    for path, says in ((tmp_path / "gone.yaml", "file does not exist"), (tmp_path, "is a folder, expected a file")):
        with pytest.raises(InputError) as err:
            ll.simulate(ref / CLUSTER, ref / TRACE, reference_dir=ref, num_requests=3, efficiency_file=path)
        assert (err.value.source, err.value.where, err.value.message) == (str(path), "efficiency_file", says)


def test_simulate_says_what_a_workload_can_be(ref):
    with pytest.raises(InputError, match="expected a Workload .* or the path of a JSONL trace") as err:
        ll.simulate(ref / CLUSTER, [(0, 10, 5)], reference_dir=ref)
    assert err.value.where == "workload"


def test_a_missing_relative_workload_names_both_places_looked(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="does not exist") as err:
        ll.simulate(ref / CLUSTER, "nope.jsonl", reference_dir=ref)
    assert str(tmp_path / "nope.jsonl") in str(err.value) and str(ref / "nope.jsonl") in str(err.value)


def test_a_relative_workload_is_found_here_first_then_in_the_reference_folder(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layout = ReferenceLayout(ref)
    assert layout.find(TRACE) == ref / TRACE
    (tmp_path / "workloads").mkdir()
    (tmp_path / TRACE).write_text("")
    assert layout.find(TRACE) == Path(TRACE)


def test_a_reference_variable_naming_a_file_says_so(tmp_path, monkeypatch):
    f = tmp_path / "ref.txt"
    f.write_text("")
    monkeypatch.setenv(ENV_VAR, str(f))
    with pytest.raises(InputError, match="is a file, not the reference folder") as err:
        resolve_reference_dir()
    assert err.value.where == f"${ENV_VAR}"


@pytest.mark.parametrize("build, says", [
    (lambda: ll.ClusterSpec("abc"), "cluster spec: nodes: expected a list of NodeSpec, got 'abc': ClusterSpec.single("),
    (lambda: ll.ClusterSpec([NodeSpec("x")]), "cluster spec: nodes[0].instances: expected a list of InstanceSpec"),
])
def test_a_cluster_spec_of_the_wrong_parts_is_named(build, says):
    """ClusterSpec("abc") raised AttributeError: 'str' object has no attribute 'cpu_mem'."""
    with pytest.raises(InputError) as exc:
        build()
    assert str(exc.value).startswith(says)


def test_a_python_built_spec_names_its_instance_and_suggests_the_setting(ref):
    """The key read '.max_num_seq' (no instance) and offered no correction."""
    spec = ll.ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, max_num_seq=4)
    with pytest.raises(InputError) as exc:
        ll.simulate(spec, synthetic(3), reference_dir=ref)
    assert str(exc.value) == ("cluster spec: nodes[0].instances[0].max_num_seq: unknown engine setting "
                              "(did you mean 'max_num_seqs'?)")


def test_a_pim_device_named_but_not_used_is_still_checked(ref):
    """A typo in cpu_mem.pim_config used to run silently until offloading was switched on."""
    with pytest.raises(InputError, match=r"pim_device: unknown PIM device 'nope'"):
        ll.Scenario(num_requests=3, pim_device="nope").run(ref)
    r = ll.Scenario(num_requests=3, pim_device="HBM2_1GB_2000_pim").run(ref)   # a real one, offload off: runs
    assert int(r.requests.sizes["request"]) == 3


def test_a_pim_device_path_to_some_other_file_is_named_by_its_key(ref, tmp_path):
    """It was read as a device INI: '/etc/hostname: line 1: expected key = value', without the key that named it."""
    other = tmp_path / "hostname"
    other.write_text("myhost\n")
    config = json.loads((ref / CLUSTER).read_text())
    config["nodes"][0]["cpu_mem"]["pim_config"] = str(other)
    (tmp_path / "cluster.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"cluster.json: nodes\[0\]\.cpu_mem\.pim_config: names .*hostname, which is "
                                         r"not a PIM device: give a device's name or its \.ini file"):
        ll.simulate(tmp_path / "cluster.json", synthetic(3), reference_dir=ref)


def test_settings_the_cluster_config_overrides_are_said_to_have_no_effect(ref, caplog):
    """`--max-num-seqs 4` on a config whose instances set their own ran exactly as without it, unsaid."""
    pd = ref / "configs/cluster/single_node_pd_per_instance_config.json"
    with caplog.at_level("WARNING", logger="llmss_lab"):
        base = ll.simulate(pd, synthetic(10, seed=1), reference_dir=ref)
        assert not [r for r in caplog.records if "no effect" in r.getMessage()]
        same = ll.simulate(pd, synthetic(10, seed=1), engine={"max_num_seqs": 4}, reference_dir=ref, gate_skew=2.0)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("max_num_seqs=4 has no effect on 2 of 2 instances: ") and str(pd) in m for m in said)
    assert any(m.startswith("gate_skew=2.0 has no effect") for m in said)
    np.testing.assert_array_equal(base.requests.ttft.values, same.requests.ttft.values)   # indeed none


def test_a_run_of_many_requests_says_up_front_how_long_it_takes(ref, monkeypatch, caplog):
    """10,000,000 requests (a typo for 10,000) ran silently until the machine ran out of memory."""
    from llmss_lab import api
    monkeypatch.setattr(api, "LONG_RUN", 5)
    with caplog.at_level("WARNING"):
        ll.simulate(ref / CLUSTER, ref / TRACE, reference_dir=ref, num_requests=5)
    assert "expect a run" not in caplog.text
    with caplog.at_level("WARNING"):
        ll.simulate(ref / CLUSTER, ref / TRACE, reference_dir=ref, num_requests=6)
    assert "6 requests: expect a run of about 0 min and 0.0 GB of memory" in caplog.text


# ---- outputs over the run's own inputs ------------------------------------------------------------

PIM = "DDR4_8GB_3200_pim.ini"   # its name is the device's, whose PIM latency is calibrated

def _inputs_beside(ref: Path, folder: Path) -> None:
    """A trace, a cluster config, a PIM device and a cluster config naming it (relative to its folder)."""
    import shutil

    shutil.copy(ref / TRACE, folder / "t.jsonl")
    shutil.copy(ref / CLUSTER, folder / "c.json")
    shutil.copy(ref / "ispass26/pim_config/DDR4_8GB_3200_pim.ini", folder / PIM)
    config = json.loads((folder / "c.json").read_text())
    config["nodes"][0]["cpu_mem"]["pim_config"] = PIM
    (folder / "pim.json").write_text(json.dumps(config))


def _refused(save, out: str, target: Path, said: str, what: str, key: str) -> None:
    """``save(out)``, ``out`` a link to ``target`` (given as is, and by a relative path through a folder), is
    refused with one line naming it and the input, and ``target`` is left as it was."""
    before = target.read_bytes()
    link = Path(out)
    for given in (out, f"sub/../{link.name}"):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        with pytest.raises(InputError) as err:
            save(given)
        assert str(err.value) == (f"{given}: {key}: is also an input of the run ({said}), which the {what} would "
                                  "replace; write them to another file")
        assert target.read_bytes() == before and link.is_symlink()


def test_results_save_may_not_replace_an_input_of_its_run(ref, tmp_path, monkeypatch):
    """`res.save('r.csv')`, r.csv a link to the run's own trace, wrote the results over the trace (the CLI and the
    explorer refused it; Python did not): so for its cluster config, efficiency fit and PIM device file, also after
    a change of folder (the run recorded its inputs' absolute paths) and for a results file loaded again."""
    from tests.test_scenario import _fit_copy

    _inputs_beside(ref, tmp_path)
    fit = _fit_copy(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    res = ll.simulate("c.json", "t.jsonl", reference_dir=ref, num_requests=4)
    loaded = ll.Results.load(res.save("r.nc"))
    fitted = ll.Scenario(num_requests=4, latency="analytical", efficiency_file="fit.yaml").run(ref)
    pim = ll.simulate("pim.json", "t.jsonl", reference_dir=ref, num_requests=4, attn_offload=True)
    monkeypatch.chdir(tmp_path / "sub")
    (tmp_path / "sub" / "sub").mkdir()
    for run, out, target, said in ((res, "x.csv", "t.jsonl", "trace"), (res, "x.nc", "c.json", "cluster_config"),
                                   (loaded, "x.csv", "t.jsonl", "trace"),
                                   (fitted, "x.nc", fit.name, "efficiency_file"),
                                   (pim, "x.nc", PIM, "nodes[0].cpu_mem.pim_config")):
        _refused(run.save, out, tmp_path / target, said, "results", "path")
    assert all(run.save(f"y.{kind}").is_file() for run in (res, loaded, fitted, pim) for kind in ("nc", "csv"))


def test_scenario_save_may_not_replace_a_file_it_reads(ref, tmp_path, monkeypatch):
    """`Scenario(trace='t.jsonl').save('s.json')`, s.json a link to t.jsonl, wrote the scenario over its trace."""
    from llmss_lab.reference import ENV_VAR
    from tests.test_scenario import _fit_copy

    _inputs_beside(ref, tmp_path)
    fit = _fit_copy(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(ref))
    for scenario, target, said in (
            (ll.Scenario(trace="t.jsonl"), "t.jsonl", "scenario: trace"),
            (ll.Scenario(cluster_config="pim.json"), "pim.json", "scenario: cluster_config"),
            (ll.Scenario(cluster_config="pim.json"), PIM,
             "scenario: cluster_config pim.json: nodes[0].cpu_mem.pim_config"),
            (ll.Scenario(latency="analytical", efficiency_file="fit.yaml"), fit.name, "scenario: efficiency_file"),
            (ll.Scenario(pim_device=str(tmp_path / PIM), attn_offload=True), PIM, "scenario: pim_device")):
        _refused(scenario.save, "s.json", tmp_path / target, said, "scenario", "path")
        assert scenario.save("saved.json").is_file()
    for odd in ({"trace": 5}, {"cluster_config": [1]}, {"efficiency_file": "\0"}, {"tp": "x"}):   # as before:
        assert ll.Scenario(**odd).save("odd.json").is_file()   # kinds are validate's to name, not save's


def test_a_sweep_may_not_be_saved_over_a_file_its_runs_read(ref, tmp_path, monkeypatch):
    """`sweep(base, grid, save_to='r.nc')`, r.nc a link to the trace the base scenario or a grid point reads,
    would have written the sweep's points over it as they came in; refused before any point runs."""
    import llmss_lab.sweeps as sweeps

    _inputs_beside(ref, tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweeps.run, "run_points", lambda *a, **k: pytest.fail("the sweep ran"))
    with_trace = ll.Scenario(num_requests=4, trace="t.jsonl")
    for base, grid, target, said in (
            (with_trace, {"seed": [0, 1]}, "t.jsonl", "scenario: trace"),
            (ll.Scenario(num_requests=4), {"trace": ["t.jsonl"], "seed": [0, 1]}, "t.jsonl", "g.yaml: trace"),
            (ll.Scenario(num_requests=4), [{"seed": 1}, {"cluster_config": "pim.json"}], PIM,
             "g.yaml: cluster_config pim.json: nodes[0].cpu_mem.pim_config")):
        _refused(lambda out: sweeps.sweep(base, grid, reference_dir=ref, save_to=out, grid_source="g.yaml",
                                          progress=False), "r.nc", tmp_path / target, said, "results", "save_to")


def test_a_generated_request_that_cannot_fit_names_the_setting_that_bounds_it(ref, capsys):
    """simulate(..., engine={'max_model_len': 71}) on 72-token generated requests named the generator
    ('synthetic(poisson, ...): request 0'), which no one can edit: it names the engine setting (at the prompt, its
    flag); a trace's request is still named at its line."""
    from tests.test_cli import run

    wl = synthetic(4, input_len="fixed:64", output_len="fixed:8")
    says = (f"request 0 of {wl.name} needs 72 tokens (input 64 + output 8) but the max_model_len of "
            "nodes[0].instances[0] holds at most 71 (4 such requests)")
    with pytest.raises(InputError) as err:
        ll.simulate(ref / CLUSTER, wl, engine={"max_model_len": 71}, reference_dir=ref)
    assert str(err.value) == f"engine settings: max_model_len: {says}"
    code, _, said = run(capsys, "run", str(ref / CLUSTER), "--num-requests", "4", "--input-len", "fixed:64",
                        "--output-len", "fixed:8", "--max-model-len", "71", "--reference-dir", str(ref), "-q")
    assert (code, said) == (2, f"llmss: error: command line: --max-model-len: {says}\n")
    trace = load_trace(ref / TRACE, 4)
    with pytest.raises(InputError, match=r"example_trace\.jsonl: line 1: request needs \d+ tokens \(input \d+ \+ "
                                         r"output \d+\) but the max_model_len of nodes\[0\]\.instances\[0\] holds "
                                         r"at most 8 \(4 such requests\)$"):
        ll.simulate(ref / CLUSTER, trace, engine={"max_model_len": 8}, reference_dir=ref)


def test_a_sweep_saved_by_save_may_not_replace_a_file_its_runs_read(ref, tmp_path, monkeypatch):
    """`sweeps.save(ds, 'r.nc')`, r.nc a link to the trace or PIM device file the sweep's runs read, wrote the sweep
    over it (sweep(save_to=) and the CLI refused it; save did not): a sweep's and a capacity search's Datasets record
    their runs' inputs as absolute paths, as a run's results do, so save refuses them also from another folder and
    for a sweep loaded again."""
    import llmss_lab.sweeps as sweeps
    from tests.conftest import local_dask_client

    _inputs_beside(ref, tmp_path)
    monkeypatch.chdir(tmp_path)
    on_pim = [{"max_num_seqs": 8}, {"cluster_config": "pim.json"}]
    for client in local_dask_client(1):
        runs = {"trace": sweeps.sweep(ll.Scenario(num_requests=4, trace="t.jsonl"), {"max_num_seqs": [8, 16]},
                                      client=client, reference_dir=ref, progress=False),
                "pim": sweeps.sweep(ll.Scenario(num_requests=4), on_pim, client=client, reference_dir=ref,
                                    grid_source="g.yaml", progress=False),
                "capacity": sweeps.capacity(ll.Scenario(num_requests=4), ll.SLO(ttft_ms=1e6), on_pim,
                                            rate_range=(1.0, 2.0), client=client, reference_dir=ref,
                                            grid_source="g.yaml", progress=False)}
    runs["loaded"] = sweeps.load(sweeps.save(runs["pim"], "pim.nc"))
    (tmp_path / "other" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "other")
    pim = "g.yaml: cluster_config pim.json: nodes[0].cpu_mem.pim_config"
    for name, target, said in (("trace", "t.jsonl", "scenario: trace"), ("pim", PIM, pim), ("loaded", PIM, pim),
                               ("capacity", PIM, pim)):
        _refused(lambda out: sweeps.save(runs[name], out), "r.nc", tmp_path / target, said, "results", "path")
        assert sweeps.save(runs[name], f"{name}.nc").is_file()
