"""What tests/test_fuzz_inputs.py found, one minimal case each (each failed before its fix)."""
from __future__ import annotations

import json

import pytest

import llmss_lab as ll

from llmss_lab.errors import InputError

TRACE = "workloads/example_trace.jsonl"
DEEP = 100_000


def put(path, content: bytes):
    path.write_bytes(content)
    return path


def test_deeply_nested_files_are_refused_not_a_crash(ref, tmp_path):
    """100,000 nested lists crashed the interpreter in PyYAML's composer (a segmentation fault, from a grid,
    meta.yaml or a hardware spec) and ended in a RecursionError from a JSON config or trace line."""
    from llmss_lab.config.reader import read_json, read_yaml
    from llmss_lab.workload import load_trace

    deep = "[" * DEEP + "]" * DEEP
    grid = put(tmp_path / "grid.yaml", f"tp: [1]\njunk: {deep}\n".encode())
    # PyYAML 6.0.4 and later stop at a nesting depth of their own first, with their own words for it
    with pytest.raises(InputError, match=r"grid.yaml: line 2: (nested more than 100 levels deep|malformed YAML: "
                                         r"exceeded maximum nesting depth)"):
        read_yaml(grid)
    config = put(tmp_path / "cluster.json", f'{{"name": "a [{{ \\" b",\n "junk": {deep}}}'.encode())
    with pytest.raises(InputError, match=r"cluster.json: line 2: nested more than 100 levels deep"):
        read_json(config)
    trace = put(tmp_path / "trace.jsonl", (ref / TRACE).read_bytes() + deep.encode())
    with pytest.raises(InputError, match=r"trace.jsonl: line 11: nested too deeply"):
        load_trace(trace)
    hundred = "[" * 99 + "]" * 99        # with the mapping around it: 100 levels, still read
    assert json.dumps(read_yaml(put(tmp_path / "ok.yaml", f"a: {hundred}".encode()))) == f'{{"a": {hundred}}}'


def test_a_control_character_in_yaml_is_one_line_naming_its_line(tmp_path):
    """A NUL byte in a grid or spec gave PyYAML's two-line message with a character offset."""
    from llmss_lab.config.reader import read_yaml

    with pytest.raises(InputError) as exc:
        read_yaml(put(tmp_path / "grid.yaml", b"tp: [1, 2]\nmax_num_seqs: [4\x00]\n"))
    assert str(exc.value) == (f"{tmp_path / 'grid.yaml'}: line 2: malformed YAML: character 0x0000 is not allowed "
                              "(a control character)")


@pytest.mark.parametrize("key", ["num_attention_heads", "hidden_size", "num_hidden_layers", "num_experts"])
def test_an_absurd_model_dimension_is_named(key, ref, tmp_path):
    """num_attention_heads 1e308 in Qwen3-30B's config (which gives its head_dim) ended in an OverflowError."""
    from llmss_lab.config.model import ModelSpec

    config = json.loads((ref / "configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json").read_text())
    config[key] = 1e308
    with pytest.raises(InputError, match=rf"^{tmp_path}/m.json: {key}: must be <= 4194304, got 1000000"):
        ModelSpec.from_hf_config(put(tmp_path / "m.json", json.dumps(config).encode()))


@pytest.mark.parametrize("name", [None, ".nan"])
def test_a_spec_without_a_name_is_named_not_the_config(name, ref, tmp_path, monkeypatch):
    """An H100.yaml whose name was dropped (or not a string) was reported as the cluster config's fault:
    'single_node_single_instance_H100.json: nodes[0].instances[0].hardware: missing required key (a name)'."""
    import functools
    import shutil

    from llmss_lab import api
    from llmss_lab.latency.analytical import find_spec
    from llmss_lab.latency.specs import SPECS_DIR

    specs = shutil.copytree(SPECS_DIR, tmp_path / "hardware")
    text = (specs / "H100.yaml").read_text().replace("name: H100\n", "" if name is None else f"name: {name}\n")
    (specs / "H100.yaml").write_text(text)
    monkeypatch.setattr(api, "find_spec", functools.partial(find_spec, folder=specs))
    with pytest.raises(InputError, match=rf"^{specs}/H100.yaml: name: missing required key"):
        ll.simulate(ref / "configs/cluster/single_node_single_instance_H100.json", TRACE, reference_dir=ref,
                    latency="analytical", num_requests=2)


@pytest.mark.parametrize("key,value,message", [
    ("arrival_cv", 1e21, "arrival_cv: must be <= 10.0"),
    ("num_requests", 10 ** 9, "num_requests: must be <= 10000000"),
    ("rate", 1e-9, "rate: 4 requests at 1e-09 req/s span more than 30 days")])
def test_a_scenario_file_with_a_generator_value_out_of_range_is_refused_when_loaded(key, value, message, tmp_path):
    """These loaded, and every point of `llmss sweep` then failed with 'scenario: arrival_cv: ...' (exit 1,
    after starting dask), the file unnamed."""
    d = {**ll.Scenario(num_requests=4, arrival="gamma").to_dict(), key: value}
    path = put(tmp_path / "s.json", json.dumps(d).encode())
    with pytest.raises(InputError, match=rf"^{path}: {message}"):
        ll.Scenario.load(path)


def test_a_folder_in_place_of_a_pim_device_file_is_named_as_one(tmp_path):
    """A folder DDR4_8GB_3200_pim.ini was reported as an unknown device, listed among the available ones."""
    from llmss_lab.latency.pim import load_pim_device

    (tmp_path / "DDR4_8GB_3200_pim.ini").mkdir()
    with pytest.raises(InputError, match=rf"^{tmp_path}/DDR4_8GB_3200_pim.ini: is a folder, expected a file$"):
        load_pim_device("DDR4_8GB_3200_pim", [tmp_path])


def test_a_control_given_a_value_it_cannot_hold_keeps_its_value_and_says_so(ref):
    """Set from code, a wrong-type value raised a TraitError in the notebook, and None on the hardware or TP
    dropdown an AttributeError or TypeError from the panel's own observers."""
    import html

    from llmss_lab.widgets import Explorer

    ex = Explorer(ref, ll.Scenario(num_requests=4))
    for name, value in (("hardware", None), ("tp", None), ("max_num_seqs", "x"), ("enable_prefix_caching", "yes"),
                        ("router", "nope")):
        before = ex.controls[name].value
        ex.controls[name].value = value
        assert ex.controls[name].value == before
        assert f"{value!r} is not a value it takes" in html.unescape(ex.clamp_note.value)
    ex.controls["router"].value = "random"      # a value it takes ends its note
    assert "'nope'" not in html.unescape(ex.clamp_note.value) and "'x'" in html.unescape(ex.clamp_note.value)
    assert ex.run() is not None, ex.status_text


def test_a_value_from_the_page_that_a_control_cannot_hold_is_named_and_sent_back(ref):
    """set_state from the page raised the TraitError into the kernel's log (an emptied number box sends None)."""
    import html

    from llmss_lab.widgets import Explorer

    ex = Explorer(ref, ll.Scenario(num_requests=4))
    for name, state in (("max_num_seqs", {"value": None}), ("hardware", {"index": 99})):
        ctl, sent = ex.controls[name], []
        before = ctl.value
        ctl.send_state = lambda key=None: sent.append(key)
        ctl.set_state(state)
        assert ctl.value == before and sent == [None], sent
        assert f"{ctl.description}: {next(iter(state.values()))!r} is not a value it takes" in html.unescape(
            ex.clamp_note.value)


def test_an_absurd_parallel_size_in_a_grid_is_refused_before_any_point_runs(ref, tmp_path):
    """tp 1e308 in a grid passed its reading; every point then failed with 'scenario: tp: must be <= 4096, got
    1000000000000000010979063629440455417404923096773118463368106829031575854049114915371633289784946888990612...'
    (a 309-digit number), the grid file unnamed."""
    from llmss_lab.sweeps import expand, read_grid

    grid = put(tmp_path / "grid.yaml", b"tp: [1.0e+308]\n")
    with pytest.raises(InputError, match=r"grid.yaml: point 0 \(tp=1e\+308\): tp: must be <= 4096, got 1e\+308$"):
        expand(ll.Scenario(num_requests=4), read_grid(grid), str(grid), ref)


@pytest.mark.parametrize("value", [".inf", "5", "{}", "[]"])
def test_a_grid_whose_points_are_not_a_list_names_points(value, tmp_path):
    """'points: .inf' said only 'a grid file holds a mapping {field: [values]} or `points:` with a list of
    mappings', naming no key."""
    from llmss_lab.sweeps import read_grid

    grid = put(tmp_path / "grid.yaml", f"points: {value}\n".encode())
    with pytest.raises(InputError, match=rf"^{grid}: points: must be a non-empty list of points"):
        read_grid(grid)


def test_a_grid_value_too_large_for_netcdf_is_refused_before_the_sweep_runs(tmp_path, capsys):
    """block_size 2**70 in a grid ran every point (each failed) and then ended in xarray's ValueError traceback
    ('unable to infer dtype on variable block_size') when the sweep or capacity search wrote its file."""
    from llmss_lab.cli import main

    scenario = ll.Scenario(num_requests=3).save(tmp_path / "s.json")
    grid = put(tmp_path / "grid.yaml", b"max_num_seqs: [4, 8]\nblock_size: [1180591620717411303424]\n")
    for argv in (["sweep", str(scenario), "--grid", str(grid), "--out", str(tmp_path / "o.nc"), "--workers", "1"],
                 ["capacity", str(scenario), "--grid", str(grid), "--slo-ttft-ms", "100", "--out",
                  str(tmp_path / "o.nc"), "--workers", "1"]):
        assert main([*argv, "-q"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"llmss: error: {grid}: point 0 (max_num_seqs=4, block_size=1180591620717411303424): block_size: must be "
            "a whole number within +-(2**63 - 1), got 1.18059e+21")
    assert not (tmp_path / "o.nc").exists()
    with pytest.raises(InputError, match=r"s2.json: seed: must be a whole number within"):
        ll.Scenario.load(put(tmp_path / "s2.json", json.dumps({"seed": 2 ** 64}).encode()))


def test_a_point_failed_by_a_grid_value_names_the_grid_not_the_scenario_file(ref, tmp_path, capsys):
    """npu_mem_gib 2**70 or pim_device 'x' set by a grid's point failed that point naming the base scenario file
    ('scenario.json: pim_device: unknown PIM device'), which holds neither value."""
    from llmss_lab.cli import main

    scenario = ll.Scenario(num_requests=3).save(tmp_path / "s.json")
    grid = put(tmp_path / "grid.yaml", b"points:\n  - {pim_device: x, tp: 1}\n  - {max_num_seqs: 4}\n")
    r = ["--reference-dir", str(ref), "--workers", "1", "-q"]
    for argv in (["sweep", str(scenario), "--grid", str(grid), "--out", str(tmp_path / "o.nc"), *r],
                 ["capacity", str(scenario), "--grid", str(grid), "--slo-ttft-ms", "5000", "--rate-min", "2",
                  "--rate-max", "8", "--rel-tol", "1", *r]):
        assert main(argv) == 0
        failed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("failed: ")]
        said = f"failed: {{'point': 0}}: {grid}: point 0 (pim_device='x', tp=1): pim_device: unknown PIM device 'x'"
        assert len(failed) == 1 and failed[0].startswith(said), failed
    base = put(tmp_path / "bad.json", json.dumps({"pim_device": "x", "num_requests": 3}).encode())   # the file's own
    other = put(tmp_path / "other.yaml", b"max_num_seqs: [4]\n")
    assert main(["sweep", str(base), "--grid", str(other), "--out", str(tmp_path / "o2.nc"), *r]) == 1
    failed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {{'max_num_seqs': 4}}: {base}: pim_device: unknown PIM "
                                                     "device 'x'"), failed


def test_a_nul_in_a_hardware_name_is_named_not_a_value_error(ref):
    """The profile lookup's stat (which names a folder closed to the user) met 'ü模型\\x00' as a hardware name
    and ended in ValueError: embedded null byte, where pathlib's is_dir had answered False."""
    with pytest.raises(InputError, match=r"^scenario: hardware: "):
        ll.Scenario(hardware="ü模型\x00", num_requests=2).run(ref)
