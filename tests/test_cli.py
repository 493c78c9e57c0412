"""The command line: outputs, JSON shape, and clean errors with exit status 2."""
from __future__ import annotations

import json
import re

import pytest

from llmss_lab.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_with_a_synthetic_workload_writes_results(ref, capsys, tmp_path):
    code, out, err = run(capsys, "run", str(ref / "configs/cluster/single_node_single_instance.json"),
                         "--reference-dir", str(ref), "--num-requests", "20", "--max-num-seqs", "8",
                         "--out", str(tmp_path / "r.nc"), "-q")
    assert code == 0 and "TTFT (ms)" in out and (tmp_path / "r.nc").is_file()
    code, out, _ = run(capsys, "summary", str(tmp_path / "r.nc"))
    assert code == 0 and "requests completed        20" in out
    code, out, _ = run(capsys, "run", str(ref / "configs/cluster/single_node_pp_instance.json"),   # 4 GPUs
                       "--reference-dir", str(ref), "--num-requests", "5", "-q")
    assert code == 0 and out.startswith("meta-llama/Llama-3.1-8B on RTXPRO6000 (TP1 x PP4), "), out[:120]
    code, out, _ = run(capsys, "run", str(ref / "configs/cluster/single_node_multi_instance.json"),   # no one TP
                       "--reference-dir", str(ref), "--num-requests", "5", "--out", str(tmp_path / "m.nc"), "-q")
    assert code == 0 and out.startswith("2 instances of meta-llama/Llama-3.1-8B") and (tmp_path / "m.nc").is_file()


def test_run_bin_sets_the_width_of_the_saved_time_series_bins(ref, capsys, tmp_path):
    from llmss_lab.results.dataset import Results

    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    code, _, _ = run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "12", "--bin", "0.5",
                     "--out", str(tmp_path / "r.nc"), "-q")
    saved = Results.load(tmp_path / "r.nc")
    assert code == 0 and saved.timeseries.attrs["bin_s"] == 0.5 and saved.timeseries.time.values[0] == 0.5
    assert saved.memory.time.values[0] == 0.5
    for bad in ("0", "-2", "nan"):
        code, _, err = run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "2", "--bin", bad)
        assert code == 2 and "--bin" in err.strip().splitlines()[-1], err


def test_results_are_written_in_the_format_the_file_name_says(ref, capsys, tmp_path):
    import pandas as pd

    from llmss_lab.results.dataset import Results
    from llmss_lab.scenario import Scenario

    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    code, _, err = run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "12",
                       "--out", str(tmp_path / "r.csv"), "-q")
    table = pd.read_csv(tmp_path / "r.csv")
    assert code == 0 and "one row per request" in err and len(table) == 12
    run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "12", "--out", str(tmp_path / "r.nc"), "-q")
    assert list(table.ttft_ms) == pytest.approx(Results.load(tmp_path / "r.nc").requests.ttft.values)
    code, _, err = run(capsys, "summary", str(tmp_path / "r.csv"))
    assert code == 2 and "per-request CSV, which holds no run summary" in err
    Scenario(num_requests=5).save(tmp_path / "s.json")
    for argv in (["run", cluster, "--num-requests", "3", "--out", str(tmp_path / "r.json")],   # refused before running
                 ["capacity", str(tmp_path / "s.json"), "--slo-ttft-ms", "100", "--out", str(tmp_path / "c.csv")]):
        code, _, err = run(capsys, *argv, "--reference-dir", str(ref), "-q")
        assert code == 2 and "--out: " in err and not (tmp_path / argv[-1]).exists(), err


def test_validate_json_shape(ref, capsys):
    code, out, _ = run(capsys, "validate", str(ref / "measurements/RTXPRO6000/Llama-3.1-8B"),
                       "--reference-dir", str(ref), "--json")
    d = json.loads(out)
    assert code == 0 and set(d) == {"metrics", "mean_abs_err_pct", "sim_wall_s", "latency_source"}
    assert len(d["metrics"]) == 15
    assert set(d["metrics"]["ttft_mean"]) == {"vllm", "sim", "diff_pct"}


@pytest.mark.parametrize("argv,match", [
    (["run", "missing.json"], "missing.json: file does not exist"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--gpu-memory-utilization", "2"], "command line: --gpu-memory-utilization: must be in"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--workload", "nope.jsonl"], "nope.jsonl: file does not exist"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--out", "/no/such/dir/r.nc"], "output folder does not exist"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",   # a file
      "--out", "{scenario}/r.nc"], "s.json: --out: is a file, not a folder, so r.nc cannot be written in it"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--workload", "workloads/example_trace.jsonl", "--rate", "100"],
     "command line: --rate: shapes a synthetic workload only; drop it, or drop --workload"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--workload", "workloads/example_trace.jsonl", "--input-len", "fixed:5000"], "command line: --input-len: shapes"),
    (["validate", "/no/such/measurement", "--reference-dir", "{ref}"], "measurement folder does not exist"),
    (["profile-check", "RTXPRO6000", "Llama-3.1-8B", "--reference-dir", "{ref}"],   # the org left out
     "profile-check: MODEL: no profile of 'Llama-3.1-8B' on RTXPRO6000; did you mean 'meta-llama/Llama-3.1-8B'?"),
    (["validate", "{ref}/measurements/RTXPRO6000", "--reference-dir", "{ref}"],   # one level too high
     "RTXPRO6000: not a measurement folder; it holds Llama-3.1-8B, Qwen3-32B"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--input-len", "foo"], "command line: --input-len: bad length distribution 'foo'"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--output-len", "fixed:0"], "command line: --output-len: bad length distribution"),
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "/no/such/ref"],
     "reference folder does not exist"),
    # the flags, not the library's keys ('settings: what_if.memory_bw_gbs', 'slo: ttft_ms')
    (["run", "{ref}/configs/cluster/single_node_single_instance.json", "--reference-dir", "{ref}",
      "--what-if", "memory_bw_gbs=0"], "command line: --what-if: memory_bw_gbs: must be a multiplier"),
    (["capacity", "{scenario}", "--reference-dir", "{ref}", "--slo-ttft-ms", "-5"],
     "command line: --slo-ttft-ms: must be a positive number of ms"),
    (["capacity", "{scenario}", "--reference-dir", "{ref}", "--slo-ttft-ms", "9", "--slo-quantile", "2"],
     "command line: --slo-quantile: must be in (0, 1]"),
])
def test_errors_are_one_line(ref, capsys, tmp_path, argv, match):
    scenario = tmp_path / "s.json"
    scenario.write_text("{}")
    code, out, err = run(capsys, *[a.format(ref=ref, scenario=scenario) for a in argv])
    assert code == 2
    assert match in err and "Traceback" not in err
    assert err.startswith("llmss: error: ")


def test_a_request_that_can_never_fit_is_refused_up_front(ref, capsys, tmp_path):
    t = tmp_path / "big.jsonl"
    t.write_text(json.dumps({"input_toks": 5000, "output_toks": 100, "arrival_time_ns": 0}) + "\n")
    code, _, err = run(capsys, "run", str(ref / "configs/cluster/single_node_single_instance.json"),
                       "--reference-dir", str(ref), "--workload", str(t), "--num-gpu-blocks", "100")
    assert code == 2 and "big.jsonl: line 1: request needs 5100 tokens" in err


def test_asking_a_trace_for_more_requests_than_it_holds_says_so(ref, capsys, caplog):
    code, out, err = run(capsys, "run", str(ref / "configs/cluster/single_node_single_instance.json"),
                         "--reference-dir", str(ref), "--workload", "workloads/example_trace.jsonl",
                         "--num-requests", "100000", "-q", "--json")
    n = json.loads(out)["completed"]
    assert code == 0 and 0 < n < 100000
    assert f"holds {n} requests; running all of them (--num-requests 100000 asked for more)" in caplog.text


def test_example_runs_the_main_job(ref, capsys):
    code, out, err = run(capsys, "example", "--reference-dir", str(ref), "-q")
    assert code == 0 and "requests completed        300" in out
    code, again, err = run(capsys, "example", "--reference-dir", str(ref / "ispass26"), "-q")   # the artifact level
    same = lambda text: re.sub(r"simulated in [\d.]+ s", "", text)     # noqa: E731 - all but our wall time
    assert code == 0 and same(again) == same(out)


def test_bench_commands_take_the_artifact_folder_as_its_parent(ref, tmp_path, capsys):
    from llmss_lab.reference import bench_root
    assert bench_root(ref / "ispass26") == ref and bench_root(ref) == ref
    assert bench_root(tmp_path) == tmp_path               # an artifact alone stays itself
    case = ref / "measurements/RTXPRO6000/Llama-3.1-8B"
    for root in (ref, ref / "ispass26"):
        code, out, err = run(capsys, "validate", str(case), "--reference-dir", str(root), "--json")
        assert code == 0 and json.loads(out)["latency_source"].startswith("profile:")


def test_run_takes_cluster_policies(ref, capsys):
    code, out, err = run(capsys, "run", str(ref / "configs/cluster/single_node_pd_instance.json"), "--reference-dir",
                         str(ref), "--workload", "workloads/example_trace.jsonl", "--router", "least_loaded",
                         "--kv-transfer", "whole", "-q", "--json")
    assert code == 0 and json.loads(out)["completed"] > 0


@pytest.mark.parametrize("extra, says", [
    # not 'no efficiency fit'; and the flag named: '-1: file does not exist' left the user guessing what -1 was
    (["--efficiency", "/no/such/eff.yaml"], "llmss: error: /no/such/eff.yaml: --efficiency: file does not exist"),
    (["--efficiency=-1"], "llmss: error: -1: --efficiency: file does not exist"),
    (["--efficiency", "/"], "llmss: error: /: --efficiency: is a folder, expected a file"),
    (["--efficiency", "/no/such/eff.yaml", "--latency", "profile"], "command line: --efficiency: efficiency curves "
                                                                     "shape the analytical model; a measured profile"),
])
def test_an_efficiency_file_is_never_silently_ignored(ref, capsys, extra, says):
    """With a measured profile the file was never read, so a wrong path went unnoticed."""
    code, _, err = run(capsys, "run", str(ref / "configs/cluster/single_node_single_instance.json"),
                       "--reference-dir", str(ref), "--num-requests", "3", "-q", *extra)
    assert code == 2 and says in err and "Traceback" not in err


def test_an_unknown_model_is_blamed_on_the_cluster_key(ref, capsys, tmp_path):
    """It was reported against the reference folder, which the user did not write."""
    cfg = json.loads((ref / "configs/cluster/single_node_single_instance.json").read_text())
    cfg["nodes"][0]["instances"][0]["model_name"] = "meta-llama/Llama-9B"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    code, _, err = run(capsys, "run", str(path), "--reference-dir", str(ref), "--num-requests", "3", "-q")
    assert code == 2
    assert err.startswith(f"llmss: error: {path}: nodes[0].instances[0].model_name: no model config for "
                          "'meta-llama/Llama-9B' (looked for ")


def test_summary_of_a_results_file_changed_by_hand_is_one_clear_line(ref, tmp_path, capsys):
    """A string where llmss wrote a number ended in a bare 'Unknown format code' traceback."""
    import llmss_lab as ll

    res = ll.Scenario(num_requests=5).run(ref)
    res.set_attr("sim_wall_s", "slow")
    path = res.save(tmp_path / "edited.nc")
    assert main(["summary", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"llmss: error: {path}: holds results this version cannot summarise (ValueError: ") \
        and last.endswith("was it changed after llmss wrote it?"), last


@pytest.mark.parametrize("command", [["example"], ["sweep", "scenario.yaml", "--grid", "grid.yaml"],
                                     ["capacity", "scenario.yaml", "--slo-ttft-ms", "500", "--slo-tpot-ms", "50"]])
def test_an_out_file_inside_the_reference_data_is_refused_and_the_file_kept(command, tmp_path, capsys):
    """`--out ../shared/reference/.../measurements/run.nc` replaced a measurement the validation reads."""
    measured = tmp_path / "measurements" / "run.nc"
    measured.parent.mkdir()
    measured.write_text("real data")
    assert main([*command, "--reference-dir", str(tmp_path), "--out", str(measured)]) == 2
    assert "--out: is inside the reference data" in capsys.readouterr().err
    assert measured.read_text() == "real data"


def test_version_and_verbose_after_the_command(capsys):
    from llmss_lab import __version__
    from llmss_lab.cli import build_parser

    assert run(capsys, "--version")[:2] == (0, f"llmss {__version__}\n")
    parse = build_parser().parse_args
    assert parse(["summary", "r.nc", "-v"]).verbose and parse(["-v", "summary", "r.nc"]).verbose
    assert not parse(["summary", "r.nc"]).verbose


def test_the_readme_states_the_engine_defaults_the_code_has():
    from dataclasses import fields
    from pathlib import Path

    from llmss_lab.config.engine import EngineConfig

    text = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    said = dict(re.findall(r"`--(?:\[no-\])?([a-z-]+)` \[([^\]:]+)", text))
    shown = {"True": "on", "False": "off"}
    for f in fields(EngineConfig):
        if isinstance(f.default, (bool, int, float)) and f.name.replace("_", "-") in said:
            assert said.pop(f.name.replace("_", "-")) == shown.get(str(f.default), str(f.default)), f.name
    assert set(said) == {"num-gpu-blocks", "max-model-len"}   # the two without a fixed default


def test_run_help_states_the_defaults_the_readme_gives(capsys):
    """`llmss run --help` listed the engine flags with no default at all, and the policy flags without theirs."""
    from pathlib import Path

    text = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    said = dict(re.findall(r"`--(?:\[no-\])?([a-z-]+)` \[([^\]:]+)", text))
    said.update(re.findall(r"`--(router|expert-gate|kv-transfer)` \(`([a-z_]+)` default", text))
    assert len(said) == 14, said
    code, out, _ = run(capsys, "run", "--help")
    helps = " ".join(out.split("\noptions:\n", 1)[1].split())   # past the usage lines
    for flag, default in said.items():
        entry = re.search(rf" --{flag}(?:, --no-{flag})?(?: [A-Z]+| {{[a-z_,]+}})? (.*?)(?= --[a-z]|$)", helps)
        assert entry and f"default: {default}" in entry.group(1).replace("default ", "default: "), (flag, entry)


def test_out_may_not_replace_an_input_of_the_same_command(ref, capsys, tmp_path):
    from llmss_lab.scenario import Scenario

    Scenario(num_requests=5).save(tmp_path / "s.json")
    (tmp_path / "g.yaml").write_text("max_num_seqs: [16, 64]\n")
    cluster = tmp_path / "c.json"
    cluster.write_text((ref / "configs/cluster/single_node_single_instance.json").read_text())
    for argv, name in ((["run", str(cluster), "--out", str(cluster)], "CLUSTER"),
                       (["sweep", str(tmp_path / "s.json"), "--grid", str(tmp_path / "g.yaml"), "--out",
                         str(tmp_path / "g.yaml")], "--grid"),
                       (["capacity", str(tmp_path / "s.json"), "--slo-ttft-ms", "100", "--out",
                         str(tmp_path / "s.json")], "SCENARIO")):
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        code, _, err = run(capsys, *argv, "--reference-dir", str(ref), "-q")
        assert code == 2 and f"--out: is also the command's {name} input" in err, err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_summary_of_several_runs_puts_them_side_by_side_with_what_differs(ref, capsys, tmp_path):
    from llmss_lab.results.dataset import Results

    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    for seqs in (16, 4):
        run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "30", "--rate", "20",
            "--max-num-seqs", str(seqs), "--out", str(tmp_path / f"s{seqs}.nc"), "-q")
    code, out, err = run(capsys, "summary", str(tmp_path / "s16.nc"), str(tmp_path / "s4.nc"))
    assert code == 0, err
    assert f"[1] {tmp_path / 's16.nc'}: meta-llama/Llama-3.1-8B" in out
    assert "[2] differs from [1] in: max_num_seqs 16 -> 4" in out
    a, b = (Results.load(tmp_path / f"s{n}.nc").summary() for n in (16, 4))
    row = next(line for line in out.splitlines() if line.strip().startswith("mean TTFT (ms)")).split()
    assert row[3:] == [f"{a['mean_ttft_ms']:.1f}", f"{b['mean_ttft_ms']:.1f}",
                       f"{(b['mean_ttft_ms'] - a['mean_ttft_ms']) / a['mean_ttft_ms'] * 100:+.1f}", "%"]
    code, _, err = run(capsys, "summary", str(tmp_path / "s16.nc"), str(tmp_path / "missing.nc"))
    assert code == 2 and "missing.nc" in err


def _subcommands() -> dict:
    import argparse

    from llmss_lab.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _readme() -> str:
    from pathlib import Path

    return (Path(__file__).parents[1] / "README.md").read_text()


def test_every_argument_of_every_subcommand_says_what_it_is():
    """`llmss validate --help` listed measurement_dir bare; figure-data's --reference-dir said only the artifact
    folder would do, where the root (and the default lookup) work as for every other command."""
    for name, sub in _subcommands().items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
    ref_help = next(a.help for a in _subcommands()["run"]._actions if a.dest == "reference_dir")
    figure_data = next(a.help for a in _subcommands()["figure-data"]._actions if a.dest == "reference_dir")
    assert figure_data.startswith(ref_help), figure_data


def test_the_readme_cli_table_has_a_row_per_subcommand_naming_only_its_flags():
    rows = {}
    for line in _readme().split("## Command line", 1)[1].split("\n## ", 1)[0].splitlines():
        row = re.match(r"\| `llmss ([a-z-]+)([^|]*)` \|", line.replace("\\|", "/"))
        if row:
            rows[row[1]] = row[2]
    subs = _subcommands()
    assert sorted(rows) == sorted(subs)
    for name, usage in rows.items():
        known = {o for a in subs[name]._actions for o in a.option_strings}
        assert set(re.findall(r"--[a-z][a-z-]*", usage)) <= known, (name, usage)


def test_the_readme_cli_table_writes_each_flags_value_as_its_help_does(capsys):
    """The README's `llmss lab [--port N] [--notebook NB]` was `--port PORT --notebook NOTEBOOK` in --help, and
    `--reference-dir ROOT` was `--reference-dir REFERENCE_DIR`."""
    checked = 0
    for line in _readme().split("## Command line", 1)[1].split("\n## ", 1)[0].splitlines():
        row = re.match(r"\| `llmss ([a-z-]+)([^|]*)` \|", line.replace("\\|", "/"))
        if not row:
            continue
        code, out, _ = run(capsys, row[1], "--help")
        usage = " ".join(out.split("\n\n", 1)[0].split())
        for flag, value in re.findall(r"(--[a-z][a-z-]*) ([A-Z][A-Z0-9_]*(?:\.[a-z]+)?)", row[2]):
            assert f"[{flag} {value}" in usage or f" {flag} {value}" in usage, (row[1], flag, value, usage)
            checked += 1
    assert checked >= 25, checked


def test_the_readme_names_every_option_of_every_subcommand():
    """The table and text left out capacity's --rate-min, --rate-max and --rel-tol, among others."""
    import argparse

    text = _readme().replace("--[no-]", "--")   # `--[no-]enable-prefix-caching` names both forms
    for name, sub in _subcommands().items():
        for action in sub._actions:
            for flag in action.option_strings:
                negation = isinstance(action, argparse.BooleanOptionalAction) and flag.startswith("--no-")
                if flag in ("--help", "--verbose", "--quiet") or not flag.startswith("--") or negation:
                    continue
                assert re.search(re.escape(flag) + r"(?![a-z-])", text), (name, flag)


def test_every_link_within_the_readme_names_one_of_its_headings():
    text = _readme()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, links - anchors


@pytest.mark.parametrize("command", ["sweep", "capacity"])
def test_scheduler_in_a_sweep_says_it_is_the_run_commands_policy_flag(command, capsys, tmp_path):
    """`--scheduler static` was taken as a dask address ("static") in sweep and capacity, where `llmss run`
    reads it as the batching policy: the same flag must not mean two things."""
    argv = [command, str(tmp_path / "s.json"), "--grid", str(tmp_path / "g.yaml"), "--scheduler", "static"]
    if command == "sweep":
        argv += ["--out", str(tmp_path / "o.nc")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "batching policy" in err and "--dask-scheduler" in err


def test_the_readme_long_run_example_is_what_the_warning_predicts():
    """The warning's costs per request are bench_scaling's 100,000-request row; the README quotes them for 10 M."""
    from llmss_lab import api

    m = re.search(r"`--num-requests 10000000` would want about (\d+) min and (\d+) GB", _readme())
    assert m, "the README's example of the long-run warning is gone"
    per_request = (api.RUN_S_PER_REQUEST, api.RUN_BYTES_PER_REQUEST)
    assert (int(m[1]), int(m[2])) == (round(1e7 * per_request[0] / 60), round(1e7 * per_request[1] / 1e9))
    row = re.search(r"\| 100,000 \| (\d+) s \| [\d,]+ \| [\d.]+ M \| (\d+) MB", _readme())
    assert row and (int(row[1]), int(row[2])) == (round(1e5 * per_request[0]), round(1e5 * per_request[1] / 1e6))


def test_run_scenario_gives_the_summary_of_the_scenarios_own_run(ref, capsys, tmp_path):
    """A scenario file (the explorer's Save) could be swept and searched but not simply run from the command line.
    Its summary is the scenario's own run's, ll.simulate's on what it builds, and the explorer's after Load scenario."""
    import llmss_lab as ll
    from llmss_lab.cli import _json_safe
    from llmss_lab.widgets import Explorer

    scen = ll.Scenario(num_requests=20, max_num_seqs=8, instances=2, router="round_robin", seed=3,
                       input_len="lognormal:300:0.5")
    path = scen.save(tmp_path / "s.json")
    code, out, _ = run(capsys, "run", "--scenario", str(path), "--reference-dir", str(ref), "--json", "--bin", "2",
                       "--out", str(tmp_path / "r.nc"), "-q")
    assert code == 0
    mine = scen.replace(bin_s=2).run(ref)
    assert json.loads(out) == _json_safe(mine.summary())
    direct = ll.simulate(scen.cluster(ref), scen.workload(ref), scen.engine(), reference_dir=ref, router="round_robin",
                         seed=3)
    assert json.loads(out) == _json_safe(direct.summary())
    explorer = Explorer(ref)
    explorer.scenario_path.value = str(path)
    explorer.load_scenario()
    assert json.loads(out) == _json_safe(explorer.run().summary())   # Load scenario, then Run
    saved = ll.load_results(tmp_path / "r.nc")
    assert saved.timeseries.attrs["bin_s"] == 2   # and the scenario stored is the one that ran, --bin and all
    assert json.loads(saved.attrs["scenario_json"]) == scen.replace(bin_s=2).to_dict()
    code, out, _ = run(capsys, "run", "--scenario", str(path), "--reference-dir", str(ref), "-q")
    assert code == 0 and out.startswith("2 instances of meta-llama/Llama-3.1-8B") and "TTFT (ms)" in out


@pytest.mark.parametrize("flag,says", [
    (["--seed", "0"], "--seed: sets the run's seed, which the scenario sets"),   # the default value, given
    (["--workload", "workloads/example_trace.jsonl"], "--workload: sets the run's trace, which the scenario sets"),
    (["--no-enable-prefix-caching"], "--enable-prefix-caching: sets the run's enable_prefix_caching, which"),
    (["--what-if", "memory_bw_gbs=2"], "--what-if: sets the run's what_if_mem_bw and what_if_flops, which"),
    (["--max-model-len", "64"], "--max-model-len: sets the run's max_model_len, which the scenario sets"),
    (["--efficiency", "e.yaml"], "--efficiency: sets the run's efficiency_file, which the scenario sets"),
    (["--router", "load_score"], "--router: sets the run's router, which the scenario sets")])
def test_run_scenario_refuses_a_setting_flag_beside_it(flag, says, ref, capsys, tmp_path):
    import llmss_lab as ll

    path = ll.Scenario(num_requests=3).save(tmp_path / "s.json")
    code, _, err = run(capsys, "run", "--scenario", str(path), *flag, "--reference-dir", str(ref), "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"llmss: error: command line: {says}")
    assert f"(edit it in {path}); drop the flag or --scenario" in err, err


def test_run_takes_a_cluster_config_or_a_scenario_not_both_nor_neither(ref, capsys, tmp_path):
    import llmss_lab as ll

    path = ll.Scenario(num_requests=3).save(tmp_path / "s.json")
    code, _, err = run(capsys, "run", str(ref / "configs/cluster/single_node_single_instance.json"), "--scenario",
                       str(path))
    assert code == 2 and re.search(r"argument (--scenario|CLUSTER): not allowed with argument", err), err
    code, _, err = run(capsys, "run", "-q")
    assert code == 2 and "one of the arguments CLUSTER --scenario is required" in err


# base changes under which each field's value matters, the field, its value and the `run` flags that set the same
RUN_FLAG_FIELDS = [
    ({}, "num_gpu_blocks", 100, ["--num-gpu-blocks", "100"]),
    ({"max_num_batched_tokens": 0}, "max_model_len", 512, ["--max-model-len", "512"]),   # the step budget then
    ({}, "long_prefill_token_threshold", 64, ["--long-prefill-token-threshold", "64"]),
    ({"num_gpu_blocks": 100, "max_num_batched_tokens": 256}, "reserve_full_isl", False, ["--no-reserve-full-isl"]),
    ({"latency": "analytical"}, "efficiency_file", "FIT", ["--efficiency", "FIT"]),
]


@pytest.mark.parametrize("changes,field,value,flags", RUN_FLAG_FIELDS, ids=[c[1] for c in RUN_FLAG_FIELDS])
def test_run_scenario_with_a_field_runs_as_the_flag_does(changes, field, value, flags, ref, capsys, tmp_path):
    """`run --scenario` refuses setting flags, so the scenario must say what each of them says."""
    from tests.test_scenario import _fit_copy

    from llmss_lab.scenario import Scenario

    fit = str(_fit_copy(tmp_path, 0.5))
    value, flags = (fit if value == "FIT" else value), [fit if f == "FIT" else f for f in flags]
    workload = {"num_requests": 30, "rate": 40.0, "input_len": "fixed:300", "output_len": "fixed:40"}
    scen = Scenario(**workload, **changes, **{field: value})
    cluster = tmp_path / "c.json"
    cluster.write_text(json.dumps(scen.cluster_json(ref)))
    argv = ["run", str(cluster), "--reference-dir", str(ref), "--json", "-q", "--num-requests", "30", "--rate", "40",
            "--input-len", "fixed:300", "--output-len", "fixed:40"]
    argv += [a for k, v in changes.items() for a in ("--" + k.replace("_", "-"), str(v))]
    code, by_flag, err = run(capsys, *argv, *flags)
    assert code == 0, err
    code, without, _ = run(capsys, *argv)
    assert without != by_flag   # the value matters here
    code, by_field, err = run(capsys, "run", "--scenario", str(scen.save(tmp_path / "s.json")), "--reference-dir",
                              str(ref), "--json", "-q")
    assert code == 0 and json.loads(by_field) == json.loads(by_flag), err


def test_every_run_flag_beside_a_scenario_names_a_field_that_sets_it(capsys):
    """A flag without a scenario field would leave a run that `run --scenario` cannot make."""
    from llmss_lab.cli import SCENARIO_FIELD_OF, SCENARIO_RUN_FLAGS
    from llmss_lab.scenario import Scenario

    r = _subcommands()["run"]
    r.format_help()   # adds the setting flags
    dests = {a.dest for a in r._actions if a.option_strings and a.dest != "help"} - SCENARIO_RUN_FLAGS
    names = {n.strip() for d in dests for n in SCENARIO_FIELD_OF.get(d, d).split(" and ")}
    assert names - set(Scenario.__dataclass_fields__) == set()


def test_out_may_not_replace_a_file_the_scenario_grid_or_cluster_names(ref, capsys, tmp_path, monkeypatch):
    """`run --scenario s.json --out r.csv`, r.csv a link to the scenario's own trace, wrote the results over the
    trace (writes go through links); so for its cluster config, efficiency fit and PIM device file, for a grid's
    files and for a cluster config's PIM device. Refused before anything runs, the input untouched; relative
    paths and links resolved."""
    import shutil

    import llmss_lab.sweeps as sweeps
    from llmss_lab.scenario import Scenario
    from tests.test_scenario import _fit_copy

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweeps.run, "run_points", lambda *a, **k: pytest.fail("the sweep ran"))
    shutil.copy(ref / "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl", "t.jsonl")
    shutil.copy(ref / "configs/cluster/single_node_single_instance.json", "c.json")
    shutil.copy(ref / "ispass26/pim_config/DDR4_8GB_3200_pim.ini", "dev.ini")
    pim_cluster = json.loads((tmp_path / "c.json").read_text())
    pim_cluster["nodes"][0]["cpu_mem"]["pim_config"] = "dev.ini"   # relative to the config's folder
    (tmp_path / "pim.json").write_text(json.dumps(pim_cluster))
    fit = _fit_copy(tmp_path).name
    Scenario(num_requests=4, trace="t.jsonl").save("trace.json")
    Scenario(num_requests=4, latency="analytical", efficiency_file=fit).save("fit.json")
    Scenario(num_requests=4, cluster_config="c.json").save("file.json")
    Scenario(num_requests=4, cluster_config="pim.json").save("file_pim.json")
    Scenario(num_requests=4, pim_device=str(tmp_path / "dev.ini"), attn_offload=True).save("pim_dev.json")
    Scenario(num_requests=4).save("plain.json")
    (tmp_path / "g.yaml").write_text("trace: [t.jsonl]\nseed: [0, 1]\n")
    (tmp_path / "p.yaml").write_text("points:\n- {seed: 1}\n- {cluster_config: c.json}\n")
    slo = ["--slo-ttft-ms", "500"]
    for argv, target, named in (
            (["run", "--scenario", "trace.json"], "t.jsonl", "(trace.json: trace)"),
            (["run", "--scenario", "fit.json"], fit, "(fit.json: efficiency_file)"),
            (["run", "--scenario", "file.json"], "c.json", "(file.json: cluster_config)"),
            (["run", "--scenario", "file_pim.json"], "dev.ini",
             "(file_pim.json: cluster_config pim.json: nodes[0].cpu_mem.pim_config)"),
            (["run", "--scenario", "pim_dev.json"], "dev.ini", "(pim_dev.json: pim_device)"),
            (["run", "c.json", "--latency", "analytical", "--efficiency", fit], fit, "the command's --efficiency input"),
            (["run", "pim.json", "--attn-offload"], "dev.ini", "(pim.json: nodes[0].cpu_mem.pim_config)"),
            (["sweep", "plain.json", "--grid", "g.yaml"], "t.jsonl", "(g.yaml: trace)"),
            (["sweep", "trace.json", "--grid", "g.yaml"], "t.jsonl", "(trace.json: trace)"),
            (["capacity", "plain.json", "--grid", "p.yaml", *slo], "c.json", "(p.yaml: cluster_config)"),
            (["capacity", "file.json", *slo], "c.json", "(file.json: cluster_config)")):
        link = tmp_path / ("r.nc" if argv[0] != "run" or target == "dev.ini" else "r.csv")
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        code, _, err = run(capsys, *argv, "--out", link.name, "--reference-dir", str(ref), "-q")
        said = ("an input of the run " if named.startswith("(") else "") + named
        assert code == 2 and err == (f"llmss: error: {link.name}: --out: is also {said}, which the results would "
                                     "replace; write them to another file\n"), (argv, err)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before, argv


@pytest.mark.parametrize("command", [["example"], ["profile-fit"], ["figure-data", "5"]])
def test_out_may_not_land_in_the_reference_root_around_the_artifact_given(command, capsys, tmp_path):
    """Given the paper artifact (ROOT/ispass26) as --reference-dir, `example` and `profile-fit` read ROOT's bench
    files and profiles, yet only ROOT/ispass26 was kept from --out: `llmss example --reference-dir ROOT/ispass26
    --out ROOT/profiles/.../dense.csv` would have written over a profile."""
    root = tmp_path / "root"
    for folder in ("configs", "workloads", "profiles", "ispass26/figures"):
        (root / folder).mkdir(parents=True)
    profile = root / "profiles" / "dense.csv"
    profile.write_text("a profile\n")
    out = profile if command[0] != "figure-data" else root / "profiles"
    code, _, err = run(capsys, *command, "--reference-dir", str(root / "ispass26"), "--out", str(out))
    assert code == 2 and err == (f"llmss: error: {out}: --out: is inside the reference data ({root}), whose files it "
                                 "would overwrite; write somewhere else\n"), err
    assert profile.read_text() == "a profile\n" and sorted(p.name for p in (root / "profiles").iterdir()) == ["dense.csv"]


# a name typed wrong on the command line: (arguments, the end of the one error line, which names the name meant)
TYPOS = [
    (["run", "{cluster}", "--scheduler", "stati"], "--scheduler: unknown scheduler 'stati' (did you mean 'static'?); "
                                                   "registered: ['static', 'vllm_v1']"),
    (["run", "{cluster}", "--eviction", "LRU"], "--eviction: unknown eviction policy 'LRU' (did you mean 'lru'?); "
                                                "registered: ['lru', 'mru']"),
    # the name meant at once, not after the list of every choice (13 commands)
    (["rn", "x.json"], "llmss: error: argument COMMAND: invalid choice: 'rn' (did you mean 'run'?); choose from 'run', "),
    (["rnu"], "llmss: error: argument COMMAND: invalid choice: 'rnu' (did you mean 'run'?); choose from 'run', "),
    (["fetch"], "llmss: error: argument COMMAND: invalid choice: 'fetch' (did you mean 'fetch-reference'?); choose "),
    (["run", "{cluster}", "--router", "round-robin"],
     "llmss run: error: argument --router: invalid choice: 'round-robin' (did you mean 'round_robin'?); choose from "),
    # said in the usage of the command given, not llmss's
    (["run", "{cluster}", "--workloads", "t.jsonl"],
     "llmss run: error: unrecognized arguments: --workloads t.jsonl (did you mean '--workload'?)"),
    (["example", "--ouput=x.nc"], "llmss example: error: unrecognized arguments: --ouput=x.nc (did you mean '--out'?)"),
    (["run", "{cluster}", "--latency", "analytical", "--what-if", "memory_bw=2"],
     "--what-if: memory_bw: unknown what-if field 'memory_bw' (did you mean 'memory_bw_gbs'?) (known: memory_bw_gbs, "
     "bf16_tflops)"),
    (["profile-check", "RTXPRO600", "meta-llama/Llama-3.1-8B"],
     "llmss: error: profile-check: HW: no spec for hardware 'RTXPRO600'; did you mean 'RTXPRO6000'? (have: A100, "),
]


@pytest.mark.parametrize("argv,says", TYPOS, ids=[" ".join(a) for a, _ in TYPOS])
def test_a_name_typed_wrong_is_answered_with_the_name_meant(argv, says, ref, capsys):
    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    code, out, err = run(capsys, *[a.format(cluster=cluster) for a in argv], "--reference-dir", str(ref))
    last = err.strip().splitlines()[-1]
    assert code == 2 and not out and (last.endswith(says) or last.startswith(says)), err


def test_every_commands_help_says_what_it_does_and_llmss_help_where_to_start(capsys):
    from llmss_lab.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    for listed in commands._choices_actions:   # the line `llmss --help` gives each command, atop its own --help
        code, out, _ = run(capsys, listed.dest, "--help")
        said = " ".join(out.split())
        assert code == 0 and f"{listed.help[0].upper()}{listed.help[1:]}." in said, (listed.dest, out[:400])
    code, out, _ = run(capsys, "--help")
    said = " ".join(out.split())
    assert code == 0 and "Start with `llmss example`" in said and "or `llmss lab`" in said, out


# a file of the wrong kind given where another is read: (arguments, what the one error line must end with)
WRONG_FILES = [
    (["run", "{trace}"], "line 2: malformed JSON: Extra data (column 1); the file holds JSON Lines, an object per "
                         "line, where one JSON object is read: a trace goes to --workload or a scenario's trace"),
    (["run", "--scenario", "{trace}"], "where one JSON object is read: a trace goes to --workload or a scenario's trace"),
    (["run", "{cluster}", "--workload", "{cluster}"],
     "line 1: malformed JSON: Expecting property name enclosed in double quotes; the file is one JSON document over "
     "several lines (a cluster config or a scenario?), where a trace holds one request object per line"),
    (["run", "--scenario", "{cluster}"], "it is a cluster config: run it with `llmss run CLUSTER`, or name it in a "
                                         "scenario's cluster_config"),
    (["capacity", "{cluster}", "--slo-ttft-ms", "100"], "it is a cluster config: run it with `llmss run CLUSTER`, "
                                                        "or name it in a scenario's cluster_config"),
    # said of --efficiency, and what it reads (the cluster config's error was 'classes: missing the fitted ...')
    (["run", "{cluster}", "--latency", "analytical", "--efficiency", "{cluster}"],
     "single_node_single_instance.json: --efficiency: not an efficiency fit: no fitted 'classes' (the YAML file "
     "`llmss profile-fit` writes, like profiles/efficiency.yaml)"),
    (["run", "{cluster}", "--latency", "analytical", "--efficiency", "{trace}"],
     ".jsonl: --efficiency: line 2: malformed YAML: did not find expected <document start> (an efficiency fit is the "
     "YAML file `llmss profile-fit` writes, like profiles/efficiency.yaml)"),
]


@pytest.mark.parametrize("argv,says", WRONG_FILES, ids=[" ".join(a) for a, _ in WRONG_FILES])
def test_a_file_of_the_wrong_kind_is_named_for_what_it_is(argv, says, ref, capsys):
    files = {"cluster": ref / "configs/cluster/single_node_single_instance.json",
             "trace": ref / "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl"}
    code, out, err = run(capsys, *[a.format(**files) for a in argv], "--reference-dir", str(ref), "-q")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and err.strip().endswith(says), err


def test_a_cluster_config_is_found_under_the_reference_root_as_a_trace_is(ref, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # not where the reference data is
    given = "configs/cluster/single_node_single_instance.json"
    code, out, err = run(capsys, "run", given, "--reference-dir", str(ref), "--num-requests", "5", "--json", "-q")
    _, whole, _ = run(capsys, "run", str(ref / given), "--reference-dir", str(ref), "--num-requests", "5", "--json",
                      "-q")
    assert code == 0 and json.loads(out) == json.loads(whole), err
    code, _, err = run(capsys, "run", "configs/cluster/nope.json", "--reference-dir", str(ref), "-q")
    assert code == 2 and err == (f"llmss: error: configs/cluster/nope.json: file does not exist (looked in the current "
                                 f"directory, {tmp_path}/configs/cluster/nope.json, and in the reference folder, "
                                 f"{ref.absolute()}/configs/cluster/nope.json)\n"), err


@pytest.mark.parametrize("name,content,says", [
    ("run.json", b'{"num_requests": 10}\n', "the file is JSON, not netCDF"),
    ("grid.yaml", b"rate: [1, 2]\n", "the file is text, not netCDF"),
    ("empty.nc", b"", "the file is empty"),
    ("x.nc", bytes(range(256)), "the file is neither netCDF nor text"),
])
def test_a_file_read_as_netcdf_that_is_not_says_what_it_is(name, content, says, ref, capsys, tmp_path):
    """xarray's error listed its IO backends and a URL cut off by the one-line rule; netCDF's gave an errno."""
    (tmp_path / name).write_bytes(content)
    code, _, err = run(capsys, "summary", str(tmp_path / name))
    assert code == 2 and err == f"llmss: error: {tmp_path / name}: not an llmss_lab results file: {says}\n", err
    from llmss_lab.scenario import Scenario

    Scenario(num_requests=5).save(tmp_path / "s.json")
    code, _, err = run(capsys, "capacity", str(tmp_path / "s.json"), "--slo-ttft-ms", "100", "--known",
                       str(tmp_path / name), "--reference-dir", str(ref))
    assert code == 2 and err == f"llmss: error: {tmp_path / name}: --known: not a netCDF sweep file: {says}\n", err


def test_a_run_without_a_trace_says_the_workload_it_generated(ref, capsys):
    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    code, _, err = run(capsys, "run", cluster, "--reference-dir", str(ref), "--num-requests", "7", "--rate", "2.5",
                       "--input-len", "fixed:100", "--seed", "3", "-q")
    assert code == 0 and err.splitlines()[-1] == (
        "no --workload: 7 synthetic requests, Poisson arrivals at 2.5 req/s, prompt lengths fixed:100, output lengths "
        "sharegpt, seed 3 (--num-requests, --rate, --input-len, --output-len and --seed set them)"), err
    code, _, err = run(capsys, "run", cluster, "--reference-dir", str(ref), "--workload",
                       "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl", "--num-requests", "5", "-q")
    assert code == 0 and "synthetic" not in err, err


def test_a_measurement_folder_is_found_under_the_reference_root_as_a_trace_is(ref, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    given = "measurements/RTXPRO6000/Llama-3.1-8B"
    code, out, err = run(capsys, "validate", given, "--reference-dir", str(ref), "--json")
    _, whole, _ = run(capsys, "validate", str(ref / given), "--reference-dir", str(ref), "--json")
    drop = lambda report: {k: v for k, v in report.items() if k != "sim_wall_s"}   # noqa: E731 - wall time differs
    assert code == 0 and drop(json.loads(out)) == drop(json.loads(whole)), err
    code, _, err = run(capsys, "validate", "measurements/nope", "--reference-dir", str(ref))
    assert code == 2 and err == (f"llmss: error: measurements/nope: measurement folder does not exist (looked in the "
                                 f"current directory, {tmp_path}/measurements/nope, and in the reference folder, "
                                 f"{ref.absolute()}/measurements/nope)\n"), err


def test_llmss_alone_lists_the_commands_and_where_to_start(capsys):
    code, out, err = run(capsys)
    assert code == 2 and not out and "fetch-reference" in err and "Start with `llmss example`" in " ".join(err.split())
    assert "required" not in err, err


def test_the_what_if_help_names_every_field_the_model_scales(capsys):
    from llmss_lab.latency.analytical import WHAT_IF_KEYS

    for command in ("run", "validate"):
        code, out, _ = run(capsys, command, "--help")
        said = " ".join(out.split()).split("--what-if FIELD=X ", 2)[-1]
        assert code == 0 and all(k in said.split("--efficiency")[0] for k in WHAT_IF_KEYS), (command, said[:300])


@pytest.mark.parametrize("name,suffix", [("scenario.json", ".json"), ("fit", "a name without one")])
def test_profile_fit_writes_its_yaml_only_to_a_yaml_file(name, suffix, ref, capsys, tmp_path):
    """`llmss profile-fit --out scenario.json` wrote the fit's YAML over the scenario."""
    out = tmp_path / name
    if out.suffix:
        out.write_text('{"num_requests": 10}\n')
    code, _, err = run(capsys, "profile-fit", "--reference-dir", str(ref), "--out", str(out))
    assert code == 2 and err == f"llmss: error: {out}: --out: the fit is YAML; name a .yaml file (not {suffix})\n", err
    assert (out.read_text() == '{"num_requests": 10}\n') if out.suffix else not out.exists()


def test_the_example_says_in_its_help_what_it_runs(ref, capsys):
    code, out, _ = run(capsys, "example", "--reference-dir", str(ref), "-q")
    ran = out.splitlines()[0].removeprefix("Example: ").rsplit(" (", 1)[0]
    _, listed, _ = run(capsys, "--help")
    assert code == 0 and ran.startswith("300 ShareGPT requests") and ran in " ".join(listed.split()), (ran, listed)


def test_verbose_says_what_a_run_simulates_and_what_it_took(ref, caplog):
    """``-v`` promises progress details: a run logs its workload, each instance's shape, KV cache and latency
    source, and how much serving it simulated in how many steps (it logged nothing before)."""
    import logging

    with caplog.at_level(logging.INFO, logger="llmss_lab"):
        assert main(["run", "configs/cluster/single_node_single_instance.json", "--num-requests", "5",
                     "--reference-dir", str(ref), "-q", "-v"]) in (0, None)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("llmss_lab")]
    assert any(m.startswith("workload synthetic(") and m.endswith(": 5 requests") for m in said), said
    assert any(re.match(r"nodes\[0\]\.instances\[0\]: meta-llama/Llama-3.1-8B on RTXPRO6000, TP1 PP1, \d+ KV blocks "
                        r"\(\d+ tokens\), latency profile:", m) for m in said), said
    assert any(re.match(r"simulated \d+\.\d s of serving in \d+ steps", m) for m in said), said
