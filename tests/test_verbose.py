"""``-v`` of the long commands: which inputs they resolved (files, profiles, latency model), how long each part
took and where the outputs went; and without ``-v``, the same output as before (a real process each: under pytest,
logging's handlers are pytest's, so only a process of its own shows what a user sees)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

TIMES = re.compile(r"\d+\.\d+ s\b")   # wall times differ from run to run


def verbose_and_not(*argv: str, cwd=None, times: re.Pattern = TIMES) -> tuple[list[str], str]:
    """Run ``llmss ARGV`` with and without ``-v``: the ``-v`` run's log lines and the plain run's stdout, after
    checking that the plain run logs nothing (stderr is a pipe: no progress bar either) and that ``-v`` changes
    stdout in nothing but wall times (``times``).
    ``{run}`` in an argument is ``plain`` in the first run and ``loud`` in the second (an --out each)."""
    runs = [subprocess.run([sys.executable, "-m", "llmss_lab", *(a.replace("{run}", run) for a in argv), *verbose],
                           capture_output=True, cwd=cwd, timeout=300)   # bytes: text mode turns a bar's \r into \n
            for run, verbose in (("plain", []), ("loud", ["-v"]))]
    runs = [subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode()) for r in runs]
    for r in runs:
        assert r.returncode == 0, r.stderr
    plain, loud = runs
    assert "INFO" not in plain.stderr and "\r" not in plain.stderr, plain.stderr   # nor a progress bar's redraws
    assert times.sub("T", plain.stdout) == times.sub("T", loud.stdout)
    said = [line.removeprefix("INFO ") for line in loud.stderr.splitlines() if line.startswith("INFO ")]
    assert said, loud.stderr
    return said, plain.stdout


def one(said: list[str], pattern: str) -> re.Match:
    """The log line that matches ``pattern`` (from its start)."""
    hits = [m for line in said if (m := re.match(pattern, line))]
    assert hits, (pattern, said)
    return hits[0]


@pytest.fixture(scope="module")
def bench(ref):
    return str(ref)


def test_validate_says_which_files_it_read_and_how_long_each_part_took(bench):
    said, out = verbose_and_not("validate", "measurements/RTXPRO6000/Llama-3.1-8B", "--reference-dir", bench)
    assert "Mean |Diff%|" in out
    one(said, rf"reference data: {re.escape(bench)} \(--reference-dir\)")
    m = one(said, r"measurement (\S+): cluster config (\S+); engine settings from (\S+) \((.+)\); workload (\S+) "
                  r"\(300 requests\); vLLM's timestamps from (\S+)$")
    folder = m[1]
    assert m[2] == f"{folder}/config.json" and m[3] == f"{folder}/vllm/meta.json", m[0]
    assert m[5].endswith("workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl") and m[6].endswith("vllm/requests.jsonl")
    one(said, r"nodes\[0\]\.instances\[0\]: .* latency profile:\S+/profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/")
    one(said, rf"validation of {re.escape(folder)}: measurement read in \d+\.\d\d s, simulated and compared in "
              r"\d+\.\d\d s$")
    one(said, r"llmss validate took \d+\.\d\d s$")


def test_figure_data_says_which_configs_and_workloads_it_ran_where_it_wrote_and_how_long_each_figure_took(
        bench, tmp_path):
    said, out = verbose_and_not("figure-data", "6", "--reference-dir", bench, "--out", str(tmp_path), "--compare")
    assert "power_tp1.tsv" in out
    artifact = f"{bench}/ispass26"
    one(said, rf"paper artifact: {re.escape(artifact)}; figure data into {re.escape(str(tmp_path))}$")
    for tp in (1, 2):
        one(said, rf"figure 6 tp{tp}: cluster config {re.escape(artifact)}/figures/figure_6/config/power_config_tp{tp}"
                  r"\.json, router load_score$")
        one(said, rf"nodes\[0\]\.instances\[0\]: meta-llama/Llama-3.1-8B on A6000, TP{tp} .* latency "
                  rf"profile:{re.escape(artifact)}/profiles/A6000/meta-llama/Llama-3.1-8B/tp{tp}$")
        one(said, rf"figure 6 tp{tp}: scored against real vLLM in {re.escape(artifact)}/figures/figure_6/reference "
                  rf"and LLMServingSim 2.0 in {re.escape(artifact)}/figures/figure_6/parsed$")
    one(said, r"workload \S+/dataset/sharegpt_pulse_req10_n3_delay60\.jsonl: 30 requests$")
    one(said, r"figure 6: 3 files written in \d+\.\d\d s$")
    one(said, r"figure 6: scored in \d+\.\d\d s$")


def test_summary_says_what_each_file_recorded_of_its_run_and_how_long_it_took_to_read(bench, tmp_path):
    from llmss_lab.cli import main

    files = [str(tmp_path / f"r{n}.nc") for n in (5, 6)]
    for n, f in zip((5, 6), files):
        assert main(["run", "configs/cluster/single_node_single_instance.json", "--num-requests", str(n),
                     "--reference-dir", bench, "--out", f, "-q"]) == 0
    said, out = verbose_and_not("summary", *files)
    assert "[2] differs from [1]" in out
    for n, f in zip((5, 6), files):
        one(said, rf"{re.escape(f)}: read in \d+\.\d\d s; written by llmss_lab \S+ \(git \S+\) from cluster "
                  rf"{re.escape(bench)}/configs/cluster/single_node_single_instance\.json, workload "
                  rf"synthetic\(poisson, 10\.0/s, n={n}, seed=0\), latency profile:\S+/RTXPRO6000/\S+; its input "
                  r"files: \{\"cluster_config\": ")
    one(said, r"llmss summary took \d+\.\d\d s$")


def test_profile_check_says_which_profiles_spec_and_fit_it_used(bench):
    said, out = verbose_and_not("profile-check", "RTXPRO6000", "meta-llama/Llama-3.1-8B", "--tp", "1",
                                "--reference-dir", bench)
    assert "with the stored fit" in out
    one(said, r"the roofline of RTXPRO6000 from \S+/profiles/hardware/\S+\.yaml$")
    one(said, rf"RTXPRO6000/meta-llama/Llama-3.1-8B/tp1: \d+ operator timings from {re.escape(bench)}/profiles/"
              r"RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp1$")
    one(said, r"efficiency curves: the stored fit, \S+/profiles/efficiency\.yaml$")
    assert not any("/tp2:" in line for line in said), said   # --tp 1: the one profile it read
    one(said, r"llmss profile-check took \d+\.\d\d s$")


def test_profile_fit_says_which_profiles_and_specs_it_fitted_on_and_how_long_reading_and_fitting_took(bench,
                                                                                                       tmp_path):
    out_file = tmp_path / "eff.yaml"
    said, out = verbose_and_not("profile-fit", "--out", str(out_file), "--leave-out",
                                "RTXPRO6000/meta-llama/Llama-3.1-8B", "--reference-dir", bench)
    assert f"wrote {out_file}" in out
    one(said, r"hardware specs of .*RTXPRO6000.* from \S+/profiles/hardware$")
    one(said, rf"RTXPRO6000/Qwen/Qwen3-32B/tp2: \d+ operator timings from {re.escape(bench)}/profiles/RTXPRO6000/"
              r"Qwen/Qwen3-32B/bf16/tp2$")
    one(said, r"A6000/meta-llama/Llama-3.1-8B/tp1: \d+ operator timings from \S+/ispass26/profiles/A6000/")
    read = one(said, r"(\d+) operator timings of (\d+) profiles read in \d+\.\d\d s$")
    left = one(said, r"left out RTXPRO6000/meta-llama/Llama-3.1-8B: (\d+) operator timings remain$")
    assert int(left[1]) < int(read[1])
    one(said, r"fitted \d+ curves on \d+ operator timings in \d+\.\d\d s \(the slowest, \S+: \d+\.\d\d s\)$")


def test_profile_iterations_says_where_its_steps_fit_and_profiles_came_from_and_each_profiles_time(bench):
    said, out = verbose_and_not("profile-iterations", "--stored-fit", "--reference-dir", bench)
    assert "with the stored fit" in out
    one(said, r"\d+ bench steps from simulating RTXPRO6000/Llama-3.1-8B, RTXPRO6000/Qwen3-32B in \d+\.\d\d s$")
    one(said, r"measurement \S+/measurements/RTXPRO6000/Qwen3-32B: cluster config ")
    one(said, r"efficiency curves: the stored fit, \S+/profiles/efficiency\.yaml$")
    one(said, rf"RTXPRO6000 Qwen/Qwen3-32B tp2: the profile in {re.escape(bench)}/profiles/RTXPRO6000/Qwen/Qwen3-32B/"
              r"bf16/tp2 against the analytical model \(vllm stack\) in \d+\.\d\d s$")
    one(said, r"H100 meta-llama/Llama-3.1-8B tp1: \S+ has no attention predictions to drive a step; left out$")


def test_sweep_says_what_it_runs_where_and_each_point_as_it_comes_in(bench, tmp_path):
    import llmss_lab as ll

    ll.Scenario(num_requests=20, rate=4).save(tmp_path / "base.json")
    (tmp_path / "grid.yaml").write_text("max_num_seqs: [8, 16]\n")
    said, out = verbose_and_not("sweep", "base.json", "--grid", "grid.yaml", "--out", "s.nc", "--overwrite",
                                "--workers", "1", "--reference-dir", bench, cwd=tmp_path,
                                times=re.compile(r"\d+\.\d+(?= +ok$)", re.M))   # the wall_s column
    assert "2 ok, 0 failed; wrote s.nc" in out
    one(said, rf"sweep of base\.json over grid\.yaml: 2 points on max_num_seqs \(2\); the workers read the reference "
              rf"data at {re.escape(bench)}$")
    one(said, r"starting a local dask cluster of 1 worker process$")
    for i, n in enumerate((8, 16)):
        one(said, rf"grid\.yaml: point {i} \(max_num_seqs={n}\): ok in \d+\.\d\d s$")
    one(said, r"llmss sweep took \d+\.\d\d s$")


def test_capacity_says_what_it_searches_each_run_and_its_verdict_and_where_it_wrote(bench, tmp_path):
    import llmss_lab as ll

    ll.Scenario(num_requests=30, rate=4).save(tmp_path / "s.json")
    said, out = verbose_and_not("capacity", "s.json", "--slo-ttft-ms", "500", "--workers", "1", "--rate-max", "16",
                                "--reference-dir", bench, "--out", "{run}.nc", cwd=tmp_path)
    assert "runs made" in out
    one(said, r"capacity search of s\.json: 1 configuration of grid, 0\.5 to 16 req/s until high/low <= 1\.05, "
              r"SLO\(ttft_ms=500\.0, tpot_ms=None, quantile=0\.9\), 0 runs reused; the workers read the reference "
              rf"data at {re.escape(bench)}$")
    one(said, r"starting a local dask cluster of 1 worker process$")
    one(said, r"grid: point 0 \(\) at 16 req/s: ok, SLO (met|missed)( \(stopped at \d+\.\d s of serving\))? in "
              r"\d+\.\d\d s$")
    one(said, rf"wrote {re.escape(str(tmp_path))}/loud\.nc$")


def on_a_terminal(*argv: str, cwd=None) -> str:
    """What ``llmss ARGV`` writes to stderr when stderr is a terminal (a pseudo-terminal here); stdout is piped."""
    import fcntl
    import os
    import struct
    import termios

    main_fd, term = os.openpty()
    fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))   # 0 columns: tqdm draws nothing
    proc = subprocess.Popen([sys.executable, "-m", "llmss_lab", *argv], stdout=subprocess.PIPE, stderr=term,
                            cwd=cwd)
    os.close(term)
    seen = b""
    while True:   # read as it comes: a full terminal buffer would stop the process
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:   # EIO: the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    proc.communicate(timeout=300)
    assert proc.returncode == 0, seen.decode(errors="replace")
    return seen.decode(errors="replace")


def test_profile_check_and_fit_show_on_a_terminal_what_they_read_and_fit(bench, tmp_path):
    """Seconds of reading 23 profiles and fitting their curves showed nothing (piped, they still show nothing:
    :func:`verbose_and_not`)."""
    shown = on_a_terminal("profile-check", "RTXPRO6000", "meta-llama/Llama-3.1-8B", "--tp", "1", "--leave-one-out",
                          "--reference-dir", bench)
    assert "reading A6000/meta-llama/Llama-3.1-8B/tp1" in shown and "fitting the efficiency curves" in shown, shown
    shown = on_a_terminal("profile-fit", "--out", str(tmp_path / "eff.yaml"), "--reference-dir", bench)
    assert "reading RTXPRO6000/Qwen/Qwen3-32B/tp2" in shown and "fitting the efficiency curves" in shown, shown


def test_sweep_still_draws_its_bar_on_a_terminal(bench, tmp_path):
    """Its bar went to a pipe too ('sweep:  50%|#####  | 1/2' in a log file; :func:`verbose_and_not` checks that it
    no longer does, for capacity too); on a terminal it is drawn as before."""
    import llmss_lab as ll

    ll.Scenario(num_requests=20, rate=4).save(tmp_path / "s.json")
    (tmp_path / "grid.yaml").write_text("max_num_seqs: [8, 16]\n")
    shown = on_a_terminal("sweep", "s.json", "--grid", "grid.yaml", "--out", "t.nc", "--workers", "1",
                          "--reference-dir", bench, cwd=tmp_path)
    assert "2/2" in shown, shown


def test_figures_says_which_notebooks_with_what_and_each_ones_parts_times_and_files(bench, tmp_path):
    pytest.importorskip("papermill")
    said, out = verbose_and_not("figures", "9", "--num-requests", "5", "--no-png", "--reference-dir", bench,
                                "--out", str(tmp_path), times=re.compile(r"\d+(\.\d+)? s\b"))
    assert "1 of 1 notebooks ran" in out
    one(said, r"running figure_09\.ipynb from \S+/paper_figures with \{'reference_dir': '\S+', 'output_dir': "
              rf"'{re.escape(str(tmp_path))}', 'num_requests': 5, 'seed': 0\}}$")
    one(said, r"figure_09\.ipynb: executed in \d+\.\d\d s, notebook HTML in \d+\.\d\d s, published figure in "
              rf"\d+\.\d\d s; wrote {re.escape(str(tmp_path))}/figure_09\.ipynb, .*/published/figure_9a_ref\.png")


def test_fetch_reference_draws_no_progress_bar_into_a_pipe(monkeypatch, capsys, tmp_path):
    """Its bar went to stderr whatever it was, as sweep's did (a fake download here: no network)."""
    import llmss_lab.reference
    from llmss_lab.cli import main

    def fetch(dest, progress, artifact):
        for _ in progress(range(3)):
            pass
        return tmp_path

    monkeypatch.setattr(llmss_lab.reference, "fetch_reference", fetch)
    assert main(["fetch-reference", "--dest", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"reference data in {tmp_path}" in captured.out and captured.err == "", captured.err


def test_run_says_which_cluster_config_and_model_config_it_read(bench):
    """A relative CLUSTER is also looked up under the reference root: -v says which file ran, and each instance's
    model config (it named the workload and the instances, not these files)."""
    said, out = verbose_and_not("run", "configs/cluster/single_node_single_instance.json", "--num-requests", "5",
                                "--reference-dir", bench, "-q")
    assert "requests completed" in out
    one(said, rf"cluster {re.escape(bench)}/configs/cluster/single_node_single_instance\.json: 1 node$")
    one(said, rf"nodes\[0\]\.instances\[0\]: model config {re.escape(bench)}/configs/model/meta-llama/Llama-3\.1-8B"
              r"\.json$")
    one(said, r"llmss run took \d+\.\d\d s$")
