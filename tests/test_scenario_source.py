"""A scenario loaded from a file names that file in the errors only a run finds (a trace or hardware that does
not exist, attention offload without a PIM device), not "scenario"; its equality, hash and saved form ignore it."""
from __future__ import annotations

import json

import pytest

import llmss_lab as ll
from llmss_lab.cli import main
from llmss_lab.errors import InputError
from llmss_lab.scenario import Scenario
from llmss_lab.sweeps import run_point

BAD = {"trace": {"trace": "no_such_trace.jsonl"}, "hardware": {"hardware": "NoSuchHW"},
       "attn_offload": {"attn_offload": True}, "cluster_config": {"cluster_config": "no_such_cluster.json"}}


@pytest.mark.parametrize("key", list(BAD))
def test_a_run_of_a_loaded_scenario_names_its_file(key, ref, tmp_path):
    path = Scenario(num_requests=3, **BAD[key]).save(tmp_path / "mine.json")
    with pytest.raises(InputError) as exc:
        Scenario.load(path).run(ref)
    assert exc.value.source == str(path) and exc.value.where == key, str(exc.value)
    with pytest.raises(InputError) as built:   # built in Python: no file to name
        Scenario(num_requests=3, **BAD[key]).run(ref)
    assert built.value.source == "scenario" and built.value.where == key


def test_the_file_is_kept_beside_the_fields(tmp_path):
    scen = Scenario(num_requests=7, tp=2)
    path = scen.save(tmp_path / "a.json")
    loaded = Scenario.load(path)
    assert loaded.source == str(path) and scen.source == "scenario"
    assert loaded == scen and hash(loaded) == hash(scen) and loaded.to_dict() == scen.to_dict()
    assert "source" not in json.loads(loaded.save(tmp_path / "b.json").read_text())
    assert (tmp_path / "b.json").read_bytes() == path.read_bytes()
    assert loaded.replace(tp=1).source == "scenario"   # no longer what the file says


def test_a_sweep_point_names_the_base_scenario_file(ref, tmp_path):
    path = Scenario(num_requests=3, **BAD["trace"]).save(tmp_path / "mine.json")
    base = Scenario.load(path)
    got = run_point(base.to_dict(), str(ref), source=base.source)
    assert got["status"] == "failed" and got["error"].startswith(f"{path}: trace: no such file"), got["error"]


def test_capacity_of_a_scenario_file_with_a_trace_names_the_file(ref, tmp_path, capsys):
    path = Scenario(num_requests=3, trace="example_trace").save(tmp_path / "mine.json")
    assert main(["capacity", str(path), "--slo-ttft-ms", "100", "--reference-dir", str(ref), "-q"]) == 2
    assert capsys.readouterr().err.strip() == (f"llmss: error: {path}: trace: capacity search varies the synthetic "
                                              "arrival rate; this scenario replays a trace")


def test_the_explorer_names_the_loaded_file_until_a_control_changes(ref, tmp_path):
    from llmss_lab.widgets.explorer import Explorer

    path = Scenario(num_requests=3, **BAD["attn_offload"]).save(tmp_path / "mine.json")
    ex = Explorer(reference_dir=ref)
    ex.scenario_path.value = str(path)
    assert ex.load_scenario() is not None
    assert ex.run() is None and f"{path}: attn_offload: needs a PIM device" in ex.status.value, ex.status.value
    ex.controls["num_requests"].value = 4   # now the controls' own scenario, not the file's
    assert ex.run() is None and "scenario: attn_offload: needs a PIM device" in ex.status.value, ex.status.value
    assert isinstance(ll.Scenario.load(path), Scenario)
