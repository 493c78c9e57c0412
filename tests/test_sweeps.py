"""Sweeps on dask.distributed: grids, same numbers as one-by-one runs, failed points kept, a separate
scheduler/worker, resume after an interruption, SLO goodput, capacity search, Pareto front, CLI, views."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

import llmss_lab as ll
from llmss_lab.cli import main
from llmss_lab.errors import InputError
from llmss_lab.sweeps import SLO, expand, load, other_slo, pareto_front, read_grid, run_point
from llmss_lab.views import design

from .conftest import free_port, local_dask_client, stop

distributed = pytest.importorskip("distributed")
BASE = ll.Scenario(num_requests=16, seed=5, latency="profile")   # profiled TP1/TP2 only: a TP4 point fails


@pytest.fixture(scope="module")
def client():
    yield from local_dask_client(2)


def test_a_mapping_is_a_cartesian_grid_and_a_list_is_points():
    dims, points = expand(BASE, {"tp": [1, 2], "rate": [4, 8.0, 16]})
    assert dims == {"tp": [1, 2], "rate": [4, 8.0, 16]} and len(points) == 6
    assert [(p["tp"], p["rate"]) for p in points] == [(1, 4.0), (1, 8.0), (1, 16.0), (2, 4.0), (2, 8.0), (2, 16.0)]
    assert all(p["num_requests"] == 16 and p["seed"] == 5 for p in points)
    dims, points = expand(BASE, [{"tp": 2}, {"max_num_seqs": 8, "rate": 2.0}])
    assert dims == {"point": [0, 1]} and points[1]["max_num_seqs"] == 8 and points[0]["tp"] == 2


@pytest.mark.parametrize("grid,says", [
    ({"gate_skew": [1.0, 2.0]}, "gate_skew has no effect at any point of the sweep (The model has no mixture"),
    ({"router": ["round_robin", "least_loaded"]}, "router has no effect at any point of the sweep (One replica"),
    ({"router": ["round_robin", "least_loaded"], "instances": [1, 2]}, None),   # two replicas at some points
    ({"tp": [1, 2]}, None),
])
def test_a_sweep_over_a_field_without_effect_says_so_before_it_runs(ref, caplog, grid, says):
    """A sweep over the gate's skew on a dense model ran identical points without a word."""
    with caplog.at_level("WARNING"):
        expand(BASE, grid, "g.yaml", ref)
    assert (says in caplog.text) if says else "has no effect" not in caplog.text, caplog.text


@pytest.mark.parametrize("grid,message", [
    ({"tpp": [1]}, "grid: tpp: not a scenario field"),
    ({"tp": 2}, "grid: tp: must be a non-empty list"),
    ({"tp": []}, "grid: tp: must be a non-empty list"),
    ({}, "the grid is empty"),
    ({"tp": [1, "two"]}, "grid: point 1 (tp='two'): tp: must be a whole number"),
    ([{"rate": 1.0}, 3], "grid: points[1]: point 1 must be a mapping"),
    ("tp", "a grid is a mapping"),
])
def test_bad_grids_are_named_before_anything_runs(grid, message):
    with pytest.raises(InputError) as exc:
        expand(BASE, grid)
    assert message in str(exc.value)


def test_grid_files(tmp_path):
    good = tmp_path / "g.yaml"
    good.write_text("tp: [1, 2]\nmax_num_seqs: [8]\n")
    assert read_grid(good) == {"tp": [1, 2], "max_num_seqs": [8]}
    pts = tmp_path / "p.yaml"
    pts.write_text("points:\n  - {tp: 2}\n  - {rate: 3.5}\n")
    assert read_grid(pts) == [{"tp": 2}, {"rate": 3.5}]
    bad = tmp_path / "bad.yaml"
    bad.write_text("tp: [1]\nmax_num_sqs: [8]\n")
    with pytest.raises(InputError, match=r"bad.yaml: max_num_sqs: not a scenario field"):
        read_grid(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tp: [1, 2\n")
    with pytest.raises(InputError, match="broken.yaml"):
        read_grid(broken)


def test_sweep_gives_exactly_the_numbers_of_one_by_one_runs_and_keeps_failed_points(client, ref):
    ds = ll.sweep(BASE, {"tp": [1, 2, 4], "max_num_seqs": [8, 64]}, client=client, reference_dir=ref, progress=False)
    assert ds.sizes == {"tp": 3, "max_num_seqs": 2}
    assert (ds.status.sel(tp=[1, 2]) == "ok").all() and (ds.status.sel(tp=4) == "failed").all()
    assert "no tp4/ folder" in str(ds.error.sel(tp=4, max_num_seqs=8).values)
    assert np.isnan(ds.output_throughput.sel(tp=4)).all()
    assert ds.attrs["points_ok"] == 4 and ds.attrs["points_failed"] == 2
    for tp in (1, 2):
        for seqs in (8, 64):
            direct = BASE.replace(tp=tp, max_num_seqs=seqs).run(ref).summary()
            point = ds.sel(tp=tp, max_num_seqs=seqs)
            for key in ("output_throughput", "mean_ttft_ms", "p99_tpot_ms", "duration_s", "preemptions"):
                assert float(point[key]) == direct[key], (tp, seqs, key)
            assert ll.Scenario.from_dict(__import__("json").loads(str(point.scenario.values))) == \
                BASE.replace(tp=tp, max_num_seqs=seqs)
    assert ds.num_gpus.sel(tp=2, max_num_seqs=8) == 2


def test_sweep_through_a_separate_scheduler_and_worker_on_loopback(ref, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        worker = subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nworkers", "1", "--nthreads",
                                   "1", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  cwd=tmp_path)
        with distributed.Client(address, timeout="300s") as c:   # wait for the worker (a bound, not speed)
            c.wait_for_workers(1, timeout=300)
        ds = ll.sweep(BASE, [{"rate": 4.0}, {"rate": 12.0}], client=address, reference_dir=ref, progress=False)
    finally:
        for proc in (worker, sched):
            if proc is not None:
                stop(proc)
    assert list(ds.status.values) == ["ok", "ok"]
    assert list(ds.rate.values) == [4.0, 12.0]
    assert float(ds.output_throughput[1]) == BASE.replace(rate=12.0).run(ref).summary()["output_throughput"]


def test_an_unreachable_scheduler_is_a_clear_error(ref):
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        ll.sweep(BASE, {"tp": [1]}, client=f"tcp://127.0.0.1:{free_port()}", reference_dir=ref, progress=False)


def test_an_interrupted_sweep_leaves_its_results_and_resumes(client, ref, tmp_path):
    out = tmp_path / "s.nc"
    grid = {"max_num_seqs": [4, 8, 16, 32, 64, 128]}
    seen = []

    def interrupt(i, result):
        seen.append(i)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ll.sweep(BASE, grid, client=client, reference_dir=ref, save_to=out, progress=False, on_point=interrupt)
    partial = load(out)
    assert int((partial.status == "ok").sum()) == 2 and not list(tmp_path.glob("*.part"))
    assert set(partial.status.values) <= {"ok", "pending"}
    resumed = ll.sweep(BASE, grid, client=client, reference_dir=ref, save_to=out, resume=True, progress=False)
    assert resumed.attrs["points_resumed"] == 2 and (resumed.status == "ok").all()
    fresh = ll.sweep(BASE, grid, client=client, reference_dir=ref, progress=False)
    xr.testing.assert_equal(resumed.output_throughput, fresh.output_throughput)
    assert load(out).attrs["points_ok"] == 6


def test_a_sweep_file_of_an_earlier_version_resumes(client, ref, tmp_path):
    """A field added to Scenario since the file was written (arrival_cv) made --resume refuse it as another
    sweep ('arrival_cv None there, 1.0 here'); it counts as its default, which the earlier version ran."""
    out, grid = tmp_path / "s.nc", {"max_num_seqs": [4, 8]}

    def interrupt(i, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ll.sweep(BASE, grid, client=client, reference_dir=ref, save_to=out, progress=False, on_point=interrupt)
    old = load(out)

    def drop(text: str) -> str:
        d = json.loads(text)
        d.pop("arrival_cv")
        return json.dumps(d)

    old["scenario"] = (old.scenario.dims, np.vectorize(drop)(old.scenario.values.astype(str)))
    old.attrs["base_scenario"] = drop(old.attrs["base_scenario"])
    old.to_netcdf(out)
    resumed = ll.sweep(BASE, grid, client=client, reference_dir=ref, save_to=out, resume=True, progress=False)
    assert resumed.attrs["points_resumed"] == 1 and (resumed.status == "ok").all()


def test_resume_needs_a_file(ref):
    with pytest.raises(InputError, match="resume needs the file"):
        ll.sweep(BASE, {"tp": [1]}, reference_dir=ref, resume=True, progress=False)


def test_slo_goodput_and_limits():
    slo = SLO(ttft_ms=100, tpot_ms=20, quantile=0.5)
    out = slo.evaluate(np.array([50.0, 150.0, 90.0, 80.0]), np.array([10.0, 10.0, 30.0, np.nan]), 2.0, 4)
    assert out["goodput"] == pytest.approx(2 / 2.0)            # requests 0 and 3 meet both limits
    assert out["slo_ttft_ms"] == pytest.approx(85.0) and out["slo_met"] == 1.0
    assert SLO(ttft_ms=60).evaluate(np.array([50.0, 70.0]), np.array([1.0, 1.0]), 1.0, 2)["slo_met"] == 0.0
    assert SLO(ttft_ms=1e9).evaluate(np.array([1.0]), np.array([1.0]), 1.0, 2)["slo_met"] == 0.0  # one unfinished
    for kwargs, key in (({}, "an SLO needs"), ({"ttft_ms": -1}, "ttft_ms"), ({"tpot_ms": 5, "quantile": 1.5}, "quantile")):
        with pytest.raises(InputError, match=key):
            SLO(**kwargs)


def _table(arrival_ms, first_ms, finish_ms, output):
    """A kernel request table with these times (ms; None: not yet)."""
    from llmss_lab.kernel.requests import RequestTable

    ns = lambda v: np.array([-1.0 if t is None else t * 1e6 for t in v])   # noqa: E731
    R = RequestTable(ns(arrival_ms), np.full(len(arrival_ms), 8), np.array(output))
    R.first_token, R.finished = ns(first_ms), ns(finish_ms)
    return R


def test_an_slo_is_lost_only_once_enough_requests_are_certain_to_break_it():
    slo = SLO(ttft_ms=100, quantile=0.9)   # 10 requests: p90 interpolates order statistics 8 and 9 (from 0)
    arrival = [0.0] * 10
    one_late = _table(arrival, [150.0] + [50.0] * 9, [200.0] * 10, [2] * 10)
    assert not slo.lost(one_late, 200e6)          # one TTFT over: p90 = 50 + 0.1 * 100 = 60 ms, met
    two_late = _table(arrival, [150.0, 150.0] + [50.0] * 8, [200.0] * 10, [2] * 10)
    assert slo.lost(two_late, 200e6)              # statistic 8 is over: p90 >= 150 ms
    waiting = _table(arrival, [150.0] + [None] * 9, [None] * 10, [2] * 10)
    assert not slo.lost(waiting, 90e6)            # nine still waiting, but within the limit so far
    assert slo.lost(waiting, 101e6)               # ... and past it now: their first tokens can only come later
    tpot = SLO(tpot_ms=10, quantile=0.5)
    slow = _table([0.0] * 4, [10.0] * 4, [None, None, 30.0, None], [3, 3, 3, 1])
    assert not tpot.lost(slow, 25e6)              # (25 - 10) / 2 = 7.5 ms so far
    assert tpot.lost(slow, 31e6)                  # two unfinished at >= 10.5 ms (the one-token output has none)
    for q in (0.5, 0.9, 0.99, 1.0):               # lost is never said of a run that meets the SLO
        rng = np.random.default_rng(int(q * 100))
        for n in (1, 2, 7, 10, 101):
            ttft = rng.exponential(100.0, n)
            R = _table([0.0] * n, ttft.tolist(), (ttft + 1).tolist(), [1] * n)
            met = SLO(ttft_ms=100, quantile=q).evaluate((R.first_token * 1e-9 - R.arrival * 1e-9) * 1e3,
                                                         np.full(n, np.nan), 1.0, n)["slo_met"]
            assert not (met and SLO(ttft_ms=100, quantile=q).lost(R, float(R.finished.max())))


def test_an_slo_is_won_only_once_enough_requests_are_certain_to_keep_it():
    slo = SLO(ttft_ms=100, quantile=0.5)   # 10 requests: p50 interpolates order statistics 4 and 5 (from 0)
    five = _table([0.0] * 10, [50.0] * 5 + [None] * 5, [None] * 10, [2] * 10)
    assert not slo.won(five, 60e6, 10)        # five within: statistic 5 may still be anything
    six = _table([0.0] * 10, [50.0] * 6 + [None] * 4, [None] * 10, [2] * 10)
    assert slo.won(six, 60e6, 10)             # six within: statistics 4 and 5 are, whatever the other four get
    assert not slo.won(six, 60e6, 11)         # ... but an eleventh request never came: not every request finishes
    tpot = SLO(tpot_ms=10, quantile=0.5)      # 4 requests: statistics 1 and 2 -> three within
    two = _table([0.0] * 4, [10.0] * 4, [20.0, 20.0, None, None], [3, 3, 3, 3])
    assert not tpot.won(two, 25e6, 4)
    one_token = _table([0.0] * 4, [10.0] * 4, [20.0, 20.0, None, None], [3, 3, 3, 1])
    assert tpot.won(one_token, 25e6, 4)       # a one-token output has a TPOT of 0 (evaluate's) from the start
    assert SLO(ttft_ms=100, tpot_ms=10, quantile=0.5).won(one_token, 25e6, 4)      # TTFTs of 10 ms: within
    assert not SLO(ttft_ms=5, tpot_ms=10, quantile=0.5).won(one_token, 25e6, 4)    # both limits must hold


def test_won_and_lost_never_contradict_the_whole_runs_verdict():
    """Generated runs, cut at every event: a run said won meets the SLO once it is whole, one said lost misses it."""
    from llmss_lab.kernel.requests import RequestTable
    from llmss_lab.results.metrics import tpot_ms

    rng = np.random.default_rng(7)
    said = {"won": 0, "lost": 0}
    for case in range(600):
        n = int(rng.choice([1, 2, 3, 5, 10, 37]))
        arrival = np.sort(rng.uniform(0, 1e9, n))
        first = arrival + rng.exponential(1e8, n)
        output = rng.integers(1, 6, n)
        finish = first + (output - 1) * rng.exponential(2e7, n)
        q = float(rng.choice([0.1, 0.5, 0.9, 0.99, 1.0]))
        slo = SLO(**[{"ttft_ms": 100}, {"tpot_ms": 20}, {"ttft_ms": 150, "tpot_ms": 30}][case % 3], quantile=q)
        s = 1e-9
        met = slo.evaluate((first * s - arrival * s) * 1e3, tpot_ms(first * s, finish * s, output), 1.0, n)["slo_met"]
        for now in np.unique(np.concatenate([first, finish])):
            R = RequestTable(arrival, np.full(n, 8), output)
            R.first_token = np.where(first <= now, first, -1.0)
            R.finished = np.where(finish <= now, finish, -1.0)
            if slo.won(R, now, n):
                assert met, (case, now)
                said["won"] += 1
            if slo.lost(R, now):
                assert not met, (case, now)
                said["lost"] += 1
    assert said["won"] > 500 and said["lost"] > 500   # both said often, so the checks above bite


@pytest.mark.parametrize("seed", [5, 6])
def test_a_run_stopped_once_its_slo_is_decided_gives_the_verdict_of_the_whole_run(ref, seed):
    base = BASE.replace(seed=seed)
    stopped_met = 0
    for slo in (SLO(ttft_ms=100), SLO(tpot_ms=40), SLO(ttft_ms=100, tpot_ms=40), SLO(ttft_ms=100, quantile=0.5)):
        for rate in (2.0, 4.0, 8.0, 12.0, 16.0, 32.0):
            point = base.replace(max_num_seqs=64, rate=rate).to_dict()
            whole = run_point(point, str(ref), slo)
            early = run_point(point, str(ref), slo, stop_early=True, stop_when_met=True)
            assert early["metrics"]["slo_met"] == whole["metrics"]["slo_met"], (slo, rate)
            if "stopped_at_s" in early:
                assert early["metrics"] == {"slo_met": whole["metrics"]["slo_met"]}
                first_arrival = float(ll.Scenario.from_dict(point).workload(ref).arrival_ns[0]) * 1e-9
                end = whole["metrics"]["duration_s"] + first_arrival
                stopped_met += int(whole["metrics"]["slo_met"] and early["stopped_at_s"] < end - 1e-9)
            else:
                assert early["metrics"] == whole["metrics"]
    assert stopped_met >= 5   # runs that met the SLO stopped before their last request was done (17 and 14 of 24)


def test_a_search_whose_passing_runs_stop_early_still_answers_with_a_whole_run():
    """Every run that may stop once it meets the SLO does: the answer is bisection's, and its run is whole."""
    from llmss_lab.sweeps.search import _plan

    lo0, hi0, tol = 1.0, 64.0, 0.05
    for edge in np.geomspace(0.5, 128.0, 101):
        state, rate, asked = _bisect(lambda r: r <= edge, lo0, hi0, tol)   # noqa: B023
        verdicts, again = {}, 0
        while (plan := _plan(verdicts, lo0, hi0, tol)).need:
            r = next(r for r in plan.need if r not in verdicts or "stopped_at_s" in verdicts[r])
            again += r in verdicts
            met = float(r <= edge)
            verdicts[r] = ({"status": "ok", "error": "", "metrics": {"slo_met": met, "goodput": r}}
                           if r in plan.whole or not met else
                           {"status": "ok", "error": "", "metrics": {"slo_met": met}, "stopped_at_s": 1.0})
        assert plan.state == state and (state not in ("inside", "above") or plan.rate == rate)
        assert plan.run is None or plan.run["metrics"]["goodput"] == plan.rate   # the answer's run, whole
        assert again <= 1


@pytest.mark.parametrize("rate, slo", [(64.0, SLO(ttft_ms=50)), (64.0, SLO(tpot_ms=10)), (2.0, SLO(ttft_ms=500)),
                                       (16.0, SLO(ttft_ms=100, tpot_ms=40))])
def test_a_run_stopped_early_gives_the_slo_verdict_of_the_whole_run(ref, rate, slo):
    point = BASE.replace(num_requests=200, max_num_seqs=16, rate=rate).to_dict()
    whole, early = run_point(point, str(ref), slo), run_point(point, str(ref), slo, stop_early=True)
    assert early["status"] == whole["status"] == "ok"
    assert early["metrics"]["slo_met"] == whole["metrics"]["slo_met"]
    if whole["metrics"]["slo_met"]:
        assert early["metrics"] == whole["metrics"] and "stopped_at_s" not in early
    else:
        assert early["metrics"] == {"slo_met": 0.0}
    if rate == 64.0:   # lost from the first requests on: stopped long before the run would end
        assert early["stopped_at_s"] < whole["metrics"]["duration_s"] / 4


class _WantedFor:
    """A run's search that stops wanting it after ``calls`` looks."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> bool:
        self.calls -= 1
        return self.calls >= 0


@pytest.mark.parametrize("stop_early", [True, False])
def test_a_run_its_search_no_longer_wants_ends_early_and_gives_no_verdict(ref, stop_early):
    """dask cannot interrupt a task: a run the capacity search cancelled kept its worker to its end. It now asks
    ``wanted`` as it goes and ends once told no, with a result that is no verdict (no slo_met for the search)."""
    slo = SLO(ttft_ms=500)   # met at 1 req/s: the whole run, the longest kind, would go on to its end
    point = BASE.replace(num_requests=200, max_num_seqs=16, rate=1.0).to_dict()
    whole = run_point(point, str(ref), slo, stop_early=stop_early)
    assert whole["metrics"]["slo_met"] == 1.0 and "stopped_at_s" not in whole
    first_arrival = float(ll.Scenario.from_dict(point).workload(ref).arrival_ns[0]) * 1e-9
    end = whole["metrics"]["duration_s"] + first_arrival
    dropped = run_point(point, str(ref), slo, stop_early=stop_early, wanted=_WantedFor(20))
    assert dropped["status"] == "cancelled" and dropped["metrics"] == {} and dropped["error"] == ""
    assert dropped["stopped_at_s"] < end / 2
    kept = run_point(point, str(ref), slo, stop_early=stop_early, wanted=_WantedFor(10**9))
    assert kept == {**whole, "wall_s": kept["wall_s"]}   # a run still wanted is the same run


@pytest.mark.parametrize("stop_early", [True, False])
def test_a_cancelled_run_ends_within_a_few_steps_of_a_long_prefill(ref, stop_early):
    """A run looked at its board only after a step that finished requests: a long prefill (here 4 prompts of 16,000
    tokens in chunks of 512, 32 steps each, all arrived at once) ran on for its first 35 steps unwatched. The kernel
    now also asks every STOP_POLL_STEPS steps: the run ends on its first look, long before a request finishes."""
    from llmss_lab.kernel.simulator import STOP_POLL_STEPS

    sc = BASE.replace(num_requests=4, rate=1000.0, input_len="fixed:16000", output_len="fixed:4",
                      max_num_batched_tokens=512)
    whole = sc.run(ref)
    first_finish = float(whole.requests.finish.min())
    dropped = run_point(sc.to_dict(), str(ref), SLO(ttft_ms=500), stop_early=stop_early, wanted=_WantedFor(0))
    assert dropped["status"] == "cancelled"
    steps = whole.iterations
    ends = np.sort(steps.start.values + steps.duration.values * 1e-3)   # s, of the one instance's steps
    assert whole.attrs["num_steps"] > 3 * STOP_POLL_STEPS and first_finish > ends[2 * STOP_POLL_STEPS]
    assert dropped["stopped_at_s"] == pytest.approx(ends[STOP_POLL_STEPS - 1], rel=1e-9)   # on the first look


def test_a_run_on_its_searchs_board_of_cancelled_keys_ends_itself_on_the_worker(client, ref):
    """The search puts the keys of the runs it cancels on a dask Variable; a run looks at it (at most every
    WANTED_EVERY_S of wall time) and ends once its key is there, or once the board is None (the search ended)."""
    from distributed import Variable

    from llmss_lab.sweeps.point import _Wanted

    slo = SLO(ttft_ms=500)
    point = BASE.replace(num_requests=200, max_num_seqs=16, rate=1.0).to_dict()   # met: runs whole, 0.5 s
    whole = run_point(point, str(ref), slo, stop_early=True)
    board = Variable("test-board-of-cancelled-keys", client=client)
    board.set(["test-run-dropped"])
    try:
        runs = {key: client.submit(run_point, point, str(ref), slo, True, False, _Wanted(board.name), key=key)
                for key in ("test-run-dropped", "test-run-kept")}
        dropped, kept = (runs[k].result() for k in ("test-run-dropped", "test-run-kept"))
        assert dropped["status"] == "cancelled" and dropped["stopped_at_s"] < whole["metrics"]["duration_s"] / 2
        assert kept["status"] == "ok" and kept["metrics"] == whole["metrics"]
        board.set(None)
        late = client.submit(run_point, point, str(ref), slo, True, False, _Wanted(board.name), key="test-run-late")
        assert late.result()["status"] == "cancelled"
    finally:
        board.delete()


def test_capacity_finds_the_edge_of_the_slo(client, ref):
    slo = SLO(ttft_ms=100, tpot_ms=40)     # p90 TTFT of this trace: 74 ms at 4 req/s, 119 ms at 16 req/s
    cap = ll.capacity(BASE, slo, {"max_num_seqs": [64]}, rate_range=(1.0, 64.0), rel_tol=0.1, client=client,
                      reference_dir=ref, progress=False)
    rate = float(cap.max_rate.sel(max_num_seqs=64))
    assert str(cap.bound.sel(max_num_seqs=64).values) == "inside" and 4.0 <= rate < 16.0
    at = run_point(BASE.replace(max_num_seqs=64, rate=rate).to_dict(), str(ref), slo)
    assert at["metrics"]["slo_met"] == 1.0
    assert float(cap.goodput.sel(max_num_seqs=64)) == at["metrics"]["goodput"]
    above = run_point(BASE.replace(max_num_seqs=64, rate=rate * 1.25).to_dict(), str(ref), slo)
    assert above["metrics"]["slo_met"] == 0.0        # the bracket closed within rel_tol of the edge
    bars = design.capacity_bars(cap)
    assert (bars.xaxis[0].axis_label, bars.yaxis[0].axis_label) == ("max_num_seqs (sequences)", "max_rate (req/s)")


def test_the_search_runs_the_bottom_of_the_range_only_when_no_middle_meets_the_slo():
    """A run at the bottom rate lasts longest (1 req/s: ~1000 simulated s for 1000 requests, the notebook's
    slowest runs); it only tells inside from below, which a middle that meets the SLO already does. Same answers as
    the search that ran both ends first, at every edge of a monotone SLO, in no more runs (but for a range that is
    all too much: every middle fails before the bottom does)."""
    from llmss_lab.sweeps.search import _plan

    def before(meets, lo0, hi0, tol):   # both ends, then the middles
        if meets(hi0):
            return "above", hi0, 2
        if not meets(lo0):
            return "below", None, 2
        lo, hi, runs = lo0, hi0, 2
        while hi / lo > 1 + tol:
            mid = math.sqrt(lo * hi)
            lo, hi, runs = (mid, hi, runs + 1) if meets(mid) else (lo, mid, runs + 1)
        return "inside", lo, runs

    for lo0, hi0, tol in ((1.0, 64.0, 0.05), (0.5, 64.0, 0.05), (1.0, 2.0, 0.1), (2.0, 3.0, 0.6)):
        for edge in np.geomspace(lo0 / 2, hi0 * 2, 301):
            meets = lambda r: r <= edge   # noqa: E731
            verdicts, asked = {}, []
            while (plan := _plan(verdicts, lo0, hi0, tol)).need:
                for r in plan.need:       # all the rates it waits for at once, as the search submits them
                    asked.append(r)
                    verdicts[r] = {"status": "ok", "error": "", "metrics": {"slo_met": float(meets(r))}}
            state, rate, runs = before(meets, lo0, hi0, tol)
            assert plan.state == state and (rate is None and plan.run is None or plan.rate == rate)
            assert len(asked) == len(set(asked)) and (len(asked) <= runs or state == "below")   # below: every middle
            assert (lo0 in asked) == (not any(meets(r) for r in asked if lo0 < r < hi0))
    failed = {"status": "failed", "error": "tp 3 does not divide", "metrics": {}}
    assert _plan({64.0: failed}, 1.0, 64.0, 0.05).state == "failed"


def test_a_sweeps_runs_cut_the_bracket_and_move_the_answer_within_the_tolerance():
    from llmss_lab.sweeps.search import _plan

    lo0, hi0, tol, free = 1.0, 64.0, 0.05, [4.0, 8.0, 16.0]
    total = {False: 0, True: 0}
    for edge in np.geomspace(0.5, 128.0, 301):
        meets = lambda r: r <= edge   # noqa: E731
        runs = {}
        for known in ({}, {r: {"status": "ok", "error": "", "metrics": {"slo_met": float(meets(r))}} for r in free}):
            verdicts, asked = dict(known), []
            while (plan := _plan(verdicts, lo0, hi0, tol)).need:
                for r in plan.need:
                    asked.append(r)
                    verdicts[r] = {"status": "ok", "error": "", "metrics": {"slo_met": float(meets(r))}}
            runs[bool(known)] = (plan, asked)
            total[bool(known)] += len(asked)
        (alone, asked_alone), (given, asked_given) = runs[False], runs[True]
        assert given.state == alone.state and len(asked_given) <= len(asked_alone)
        assert given.state != "inside" or given.rate <= edge < given.rate * (1 + tol)
        assert given.state != "inside" or abs(math.log(given.rate / alone.rate)) < math.log1p(tol)
    assert total[True] < 0.75 * total[False]


def _bisect(meets, lo0, hi0, tol):
    """Plain bisection, one rate at a time: (state, rate, rates tested in order)."""
    from llmss_lab.sweeps.search import _plan

    verdicts, asked = {}, []
    while (plan := _plan(verdicts, lo0, hi0, tol)).need:
        rate = next(r for r in plan.need if r not in verdicts)
        asked.append(rate)
        verdicts[rate] = {"status": "ok", "error": "", "metrics": {"slo_met": float(meets(rate))}}
    return plan.state, plan.rate, asked


def _k_section(meets, lo0, hi0, tol, workers, seed):
    """The search of one configuration on ``workers`` workers, each run taking a random time: (plan, rounds, runs).
    A run's round is one more than the latest round whose results it was planned from."""
    from llmss_lab.sweeps.search import _plan

    rng = np.random.default_rng(seed)
    verdicts, flying, now, rounds, runs = {}, {}, 0.0, 0, 0   # flying: rate -> (finish time, round)
    while True:
        plan = _plan(verdicts, lo0, hi0, tol, list(flying), workers)
        if not plan.need:
            return plan, rounds, runs
        for r in plan.need:
            if r not in flying:
                flying[r] = (now + rng.uniform(0.5, 1.5), rounds + 1)
        flying = {r: v for r, v in flying.items() if r in plan.need}   # the others are cancelled
        rate = min(flying, key=lambda r: flying[r][0])
        now, done_round = flying.pop(rate)
        verdicts[rate] = {"status": "ok", "error": "", "metrics": {"slo_met": float(meets(rate))}}
        rounds, runs = max(rounds, done_round), runs + 1


def test_idle_workers_test_more_rates_of_a_bracket_at_once_and_close_on_the_same_rates():
    """With fewer searches than workers the others sat idle while one bisection ran a rate at a time. k-section
    (several middles of the bracket at once, as the plan is asked for them) ends on the same answer as bisection
    for every edge of a monotone SLO, whatever order the runs finish in, in fewer rounds."""
    lo0, hi0, tol = 1.0, 64.0, 0.05
    total = {1: 0, 2: 0, 4: 0}
    for j, edge in enumerate(np.geomspace(0.5, 128.0, 201)):
        meets = lambda r: r <= edge   # noqa: E731
        state, rate, asked = _bisect(meets, lo0, hi0, tol)
        for workers in total:
            plan, rounds, _ = _k_section(meets, lo0, hi0, tol, workers, seed=j)
            assert plan.state == state and (state not in ("inside", "above") or plan.rate == rate), (edge, workers)
            total[workers] += rounds
    assert total[2] < 0.8 * total[1] and total[4] < 0.7 * total[1]   # 0.76 and 0.66 here


def test_a_search_alone_on_two_workers_tests_two_rates_a_round_to_the_same_answer(client, ref):
    """One configuration on two workers bisected a rate at a time, one worker idle. Here p90 TTFT <= 200 ms is met
    up to 15.02 req/s and missed above (a scan of 201 rates from 13.7 to 17.6, and 61 over the range): the first
    round runs 64, 8 and 22.6 at once (two levels of the bisection), later rounds a middle and a quarter."""
    base, slo = BASE.replace(num_requests=48, max_num_seqs=64), SLO(ttft_ms=200)
    cap = ll.capacity(base, slo, rate_range=(1.0, 64.0), rel_tol=0.05, client=client, reference_dir=ref,
                      progress=False)

    def meets(rate):
        return run_point(base.replace(rate=rate).to_dict(), str(ref), slo)["metrics"]["slo_met"]

    state, rate, _ = _bisect(meets, 1.0, 64.0, 0.05)   # one rate at a time, in this process
    assert str(cap.bound.values[0]) == state == "inside" and 14.3 < rate <= 15.02
    assert float(cap.max_rate[0]) == rate          # the same pair of rates closes the bracket
    assert int(cap.runs[0]) > int(cap.rounds[0])   # more than one rate a round
    # How many rounds, and how many runs end cancelled, turn on which run comes in first: timing, not logic. Fewer
    # rounds than bisection is checked on simulated finishing orders above, and measured by bench_capacity.py.


def test_a_search_uses_the_workers_its_cluster_gains_as_it_goes(ref, monkeypatch):
    """The workers were counted once, as the search started: a cluster that scaled up later (adaptive, or by hand)
    had its new workers idle. Here one worker, then two once the first run is in: the search's later rounds test two
    rates of its bracket at once, as a search started on two does."""
    from distributed import Client, LocalCluster

    from llmss_lab import sweeps

    widths = []
    plan = sweeps.search._plan

    def scaling(verdicts, lo0, hi0, rel_tol, flying, width):
        widths.append(width)
        if verdicts and len(cluster.scheduler_info["workers"]) == 1:   # the first run is in: a worker joins
            cluster.scale(2)
            c.wait_for_workers(2)
        return plan(verdicts, lo0, hi0, rel_tol, flying, width)

    monkeypatch.setattr(sweeps.search, "_plan", scaling)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        cap = ll.capacity(BASE.replace(max_num_seqs=64), SLO(ttft_ms=200), rate_range=(1.0, 64.0), rel_tol=0.05,
                          client=c, reference_dir=ref, progress=False)
    assert str(cap.bound.values[0]) == "inside"
    assert widths[0] == 1 and max(widths) == 2


def test_a_search_at_a_low_quantile_stops_runs_that_met_the_slo_and_answers_with_a_whole_run(client, ref):
    """At p50 a run is won with about half its requests done; the answer's metrics are still its whole run's. At p90
    it would spare less than the answer's second run costs: no run stops for meeting the SLO."""
    base, grid = BASE.replace(num_requests=48), {"max_num_seqs": [16, 64]}
    for slo, stops in ((SLO(ttft_ms=200, quantile=0.5), True), (SLO(ttft_ms=200), False)):
        cap = ll.capacity(base, slo, grid, rate_range=(1.0, 64.0), rel_tol=0.05, client=client, reference_dir=ref,
                          progress=False)
        assert (cap.attrs["runs_stopped_met"] > 0) == stops and cap.attrs["runs_stopped_missed"] > 0
        for m in grid["max_num_seqs"]:
            at = run_point(base.replace(max_num_seqs=m, rate=float(cap.max_rate.sel(max_num_seqs=m))).to_dict(),
                           str(ref), slo)
            assert str(cap.bound.sel(max_num_seqs=m).values) == "inside" and at["metrics"]["slo_met"] == 1.0
            for k in ("goodput", "mean_ttft_ms", "output_throughput", "duration_s"):
                assert float(cap[k].sel(max_num_seqs=m)) == at["metrics"][k]


def test_the_slos_tail_is_where_numpys_quantile_lies():
    """SLO.tail(n): the requests above the quantile of n, which lies between the (tail + 1)-th and the tail-th
    slowest (numpy's linear quantile, as SLO.evaluate takes it)."""
    for q in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 1 / 3, 0.7):
        for n in range(1, 400):
            lowest = n - 1 - SLO(ttft_ms=1, quantile=q).tail(n)   # from 0: the (tail + 1)-th slowest
            assert lowest - 1e-6 <= np.quantile(np.arange(n), q) < lowest + 1, (q, n)
    assert [SLO(ttft_ms=1).tail(n) for n in (16, 48, 91, 92, 1000)] == [2, 5, 9, 10, 100]


def test_a_search_on_a_workload_too_small_for_its_quantile_says_so_and_gives_its_bracket(client, ref, caplog):
    """With few requests above the SLO's quantile a verdict turns on one request and flips between nearby rates
    (16 requests at p90, 2 above it: of 4 seeds x 4 SLOs scanned at 121 rates from 1 to 64 req/s, 4 were met
    somewhere above a rate that missed, by up to 1.41x; none at p50, 8 above it). The search now says so before its
    runs, and gives the bracket it closed, the lowest rate seen to miss the SLO beside max_rate."""
    slo = SLO(ttft_ms=200, quantile=0.5)   # p50: 8 of 16 requests above it, 12 of 24
    with caplog.at_level("WARNING", logger="llmss_lab.sweeps"):
        cap = ll.capacity(BASE.replace(max_num_seqs=64), slo, {"num_requests": [16, 24]}, rate_range=(1.0, 64.0),
                          rel_tol=0.05, client=client, reference_dir=ref, progress=False)
    said = [r.getMessage() for r in caplog.records if "above it" in r.getMessage()]
    assert len(said) == 1 and "the p50 of 16 requests has 8 of them above it (under 10)" in said[0]
    assert "num_requests >= 20 puts 10 above it" in said[0]
    assert cap.slo_tail.values.tolist() == [8, 12]
    for n in (16, 24):
        c = cap.sel(num_requests=n)
        met, missed = float(c.max_rate), float(c.min_rate_missed)
        assert str(c.bound.values) == "inside" and met < missed <= met * 1.05 * (1 + 1e-12)
        point = BASE.replace(max_num_seqs=64, num_requests=n, rate=missed).to_dict()
        assert run_point(point, str(ref), slo)["metrics"]["slo_met"] == 0.0   # a run that missed, not a bound


def test_a_bracket_with_a_rate_met_above_one_missed_is_said_to_be_no_edge(caplog):
    from llmss_lab.sweeps.search import _bracket

    def runs(verdicts):
        return {r: {"status": "ok", "error": "", "metrics": {"slo_met": float(m)}} for r, m in verdicts.items()}

    with caplog.at_level("WARNING", logger="llmss_lab.sweeps"):
        assert _bracket(runs({64.0: 0, 8.0: 1, 22.6: 1, 32.0: 0}), "s, tp=1") == (22.6, 32.0)
        assert not caplog.records
        assert _bracket(runs({64.0: 0, 8.0: 1, 22.6: 0, 28.8: 1, 32.0: 0}), "s, tp=1") == (28.8, 22.6)
    assert caplog.records[0].getMessage().startswith("s, tp=1: the SLO was met at 28.8 req/s above a miss at 22.6")
    top, bottom = _bracket(runs({64.0: 1}), "s")                     # above the range: none missed
    assert top == 64.0 and math.isnan(bottom) and all(map(math.isnan, _bracket({}, "s")))


def test_capacity_takes_a_sweeps_runs_instead_of_running_them_again(client, ref):
    slo = SLO(ttft_ms=100, tpot_ms=40)
    grid = {"max_num_seqs": [16, 64]}
    ds = ll.sweep(BASE, {**grid, "rate": [4.0, 8.0, 16.0]}, client=client, reference_dir=ref, slo=slo, progress=False)
    alone = ll.capacity(BASE, slo, grid, rate_range=(1.0, 64.0), rel_tol=0.1, client=client, reference_dir=ref,
                        progress=False)
    given = ll.capacity(BASE, slo, grid, rate_range=(1.0, 64.0), rel_tol=0.1, client=client, reference_dir=ref,
                        progress=False, known=ds)
    assert (given.bound.values == alone.bound.values).all() and int(given.runs.sum()) < int(alone.runs.sum())
    assert np.all(np.abs(np.log(given.max_rate.values / alone.max_rate.values)) < math.log1p(0.1))
    assert (alone.attrs["runs_made"], alone.attrs["runs_reused"]) == (int(alone.runs.sum()), 0)
    assert (given.attrs["runs_made"], given.attrs["runs_reused"]) == (int(given.runs.sum()), 6)   # 2 configs x 3 rates
    for m in grid["max_num_seqs"]:   # the metrics of the run at max_rate are that run's, wherever it was made
        rate = float(given.max_rate.sel(max_num_seqs=m))
        at = run_point(BASE.replace(max_num_seqs=m, rate=rate).to_dict(), str(ref), slo)
        assert float(given.goodput.sel(max_num_seqs=m)) == at["metrics"]["goodput"]
    with pytest.raises(InputError, match="another SLO"):
        ll.capacity(BASE, SLO(ttft_ms=50), grid, client=client, reference_dir=ref, progress=False, known=ds)
    # the same limits as floats (as the command line gives them) are the same SLO: they were refused
    assert other_slo(ds, SLO(ttft_ms=100.0, tpot_ms=40.0)) is None
    assert other_slo(ds.assign_attrs(slo=""), slo).startswith("its runs were judged by another SLO (none)")
    with pytest.raises(InputError, match="expected a sweep's Dataset"):
        ll.capacity(BASE, slo, grid, client=client, reference_dir=ref, progress=False, known="sweep.nc")


def test_the_capacity_command_takes_a_sweep_file_of_the_same_slo(client, ref, tmp_path, capsys):
    """`llmss capacity` had no way to pass a sweep's runs (the library's known=ds): it ran them all again."""
    scenario = BASE.save(tmp_path / "base.json")
    sweep_nc = tmp_path / "sweep.nc"
    grid = tmp_path / "grid.yaml"
    grid.write_text("max_num_seqs: [16, 64]\n")
    # a sweep made in Python, its limits whole numbers: the flags' 100.0 and 40.0 are the same SLO
    ll.sweep(BASE, {"max_num_seqs": [16, 64], "rate": [4.0, 8.0, 16.0]}, client=client, reference_dir=ref,
             slo=SLO(ttft_ms=100, tpot_ms=40), save_to=sweep_nc, progress=False)
    command = ["capacity", str(scenario), "--grid", str(grid), "--slo-ttft-ms", "100", "--slo-tpot-ms", "40",
               "--rate-min", "1", "--rate-max", "64", "--rel-tol", "0.1", "--reference-dir", str(ref), "-q",
               "--dask-scheduler", client.scheduler.address]
    assert main([*command, "--out", str(tmp_path / "alone.nc")]) == 0
    said_alone = capsys.readouterr().out
    assert "min_rate_missed" in said_alone.splitlines()[0]   # the bracket, beside max_rate
    assert main([*command, "--out", str(tmp_path / "given.nc"), "--known", str(sweep_nc)]) == 0
    said_given = capsys.readouterr().out
    alone, given = load(tmp_path / "alone.nc"), load(tmp_path / "given.nc")
    # it said nothing of the runs it took from the file, nor of those it made
    assert f"\n{int(alone.runs.sum())} runs made\n" in said_alone
    assert f"\n{int(given.runs.sum())} runs made, 6 reused from {sweep_nc}\n" in said_given   # 2 configs x 3 rates
    assert (given.bound.values == alone.bound.values).all() and int(given.runs.sum()) < int(alone.runs.sum())
    assert np.all(np.abs(np.log(given.max_rate.values / alone.max_rate.values)) < math.log1p(0.1))
    # refused before a run, naming the file and the flag
    for extra, says in (
            (["--slo-ttft-ms", "50"], f"{sweep_nc}: --known: its runs were judged by another SLO ("),
            (["--known", str(scenario)], f"{scenario}: --known: not a netCDF sweep file"),
            (["--known", str(tmp_path / "missing.nc")], "missing.nc: --known: file does not exist"),
            (["--out", str(sweep_nc)], f"{sweep_nc}: --out: is also the command's --known input")):
        argv = [*command, "--known", str(sweep_nc), *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert says in err, err
    assert main([*command, "--known", str(sweep_nc), "--slo-ttft-ms", "50"]) == 2
    assert "give the SLO flags the sweep ran with (--slo-ttft-ms" in capsys.readouterr().err
    ll.sweep(BASE, {"rate": [4.0]}, client=client, reference_dir=ref, save_to=tmp_path / "no_slo.nc",
             progress=False)
    assert main([*command, "--known", str(tmp_path / "no_slo.nc")]) == 2
    assert "--known: its runs were judged by another SLO (none)" in capsys.readouterr().err


def test_capacity_reports_ranges_that_are_all_fine_or_all_too_much(client, ref):
    easy = ll.capacity(BASE, SLO(ttft_ms=1e6), rate_range=(1.0, 2.0), client=client, reference_dir=ref,
                       progress=False)
    assert str(easy.bound.values[0]) == "above" and float(easy.max_rate[0]) == 2.0
    hard = ll.capacity(BASE, SLO(ttft_ms=0.001), rate_range=(1.0, 2.0), client=client, reference_dir=ref,
                       progress=False)
    assert str(hard.bound.values[0]) == "below" and np.isnan(hard.max_rate.values[0])
    with pytest.raises(InputError, match="replays a trace"):
        ll.capacity(BASE.replace(trace="x.jsonl"), SLO(ttft_ms=1), reference_dir=ref)
    with pytest.raises(InputError, match="rate_range"):
        ll.capacity(BASE, SLO(ttft_ms=1), rate_range=(4.0, 2.0), reference_dir=ref)


def test_pareto_front_keeps_only_undominated_ok_points():
    ds = xr.Dataset({"goodput": ("p", [1.0, 2.0, 2.0, 3.0, 9.0]), "energy": ("p", [1.0, 1.0, 2.0, 3.0, 0.1]),
                     "status": ("p", ["ok", "ok", "ok", "ok", "failed"])}, coords={"p": range(5)})
    front = pareto_front(ds, maximize=["goodput"], minimize=["energy"])
    assert list(front.values) == [False, True, False, True, False]
    with pytest.raises(InputError, match="no variable 'watts'"):
        pareto_front(ds, maximize=["watts"], minimize=[])
    assert list(pareto_front(ds, maximize="goodput", minimize="energy").values) == list(front.values)   # one name
    with pytest.raises(InputError) as err:
        pareto_front(ds, maximize=None)
    assert err.value.where == "maximize"


def test_design_views_and_the_front_name_a_wrong_argument():
    """Each raised a bare ValueError, KeyError, TypeError or AttributeError."""
    ds = xr.Dataset({v: (("tp", "max_num_seqs"), [[1.0, 2.0]]) for v in ("goodput", "num_gpus")},
                    coords={"tp": [1], "max_num_seqs": [8, 16]})
    ds = ds.assign(status=(("tp", "max_num_seqs"), [["ok", "ok"]]), error=(("tp", "max_num_seqs"), [["", ""]]))
    for call, where, says in (
            (lambda: design.heatmap(ds, "goodput", "max_num_seqs", "max_num_seqs"), "y", "x and y are both"),
            (lambda: design.heatmap(ds, "goodput", "max_num_seqs", "tp", pp=2), "pp", "not a sweep dimension"),
            (lambda: pareto_front(None), "ds", "expected a sweep's Dataset, got NoneType"),
            (lambda: pareto_front("s.nc"), "ds", "load a saved sweep with llmss_lab.sweeps.load"),
            (lambda: pareto_front(ds, [], []), "maximize", "give at least one objective")):
        with pytest.raises(InputError) as err:
            call()
        assert err.value.where == where and says in err.value.message


def test_the_pareto_view_of_a_one_dimensional_sweep_names_its_points():
    """A sweep of one field (or a list of points) raised KeyError: renaming its dimension dropped the labels."""
    ds = xr.Dataset({"goodput": ("point", [1.0, 2.0, 3.0]), "num_gpus": ("point", [1.0, 1.0, 2.0]),
                     "status": ("point", ["ok", "ok", "ok"])}, coords={"point": [0, 1, 2]})
    front = pareto_front(ds, maximize=["goodput"], minimize=["num_gpus"])
    data = design.pareto(ds, "num_gpus", "goodput", front).renderers[0].data_source.data
    assert list(data["name"]) == ["point=0", "point=1", "point=2"]
    assert list(data["color"]) == ["#1f77b4", "#d62728", "#d62728"]


def test_the_capacity_bars_of_a_one_dimensional_search_name_their_configurations():
    """A search over one field (llmss capacity --grid with one list) raised KeyError: renaming its dimension
    dropped the labels, as the Pareto view's did."""
    cap = xr.Dataset({"max_rate": ("max_num_seqs", [6.0, 9.5], {"units": "req/s"}),
                      "bound": ("max_num_seqs", ["inside", "inside"])}, coords={"max_num_seqs": [16, 64]})
    data = design.capacity_bars(cap).renderers[0].data_source.data
    assert list(data["x"]) == ["max_num_seqs=16", "max_num_seqs=64"] and list(data["rate"]) == [6.0, 9.5]


def test_a_sweep_in_a_fresh_process_runs(ref, tmp_path):
    """As a user runs it: no dask client exists in the process beforehand (in this test session other
    tests' clients could otherwise stand in for the one the sweep makes)."""
    import subprocess
    import sys

    scenario = BASE.save(tmp_path / "base.json")
    grid = tmp_path / "grid.yaml"
    grid.write_text("max_num_seqs: [8, 16]\n")
    done = subprocess.run([sys.executable, "-m", "llmss_lab", "sweep", str(scenario), "--grid", str(grid), "--out",
                           str(tmp_path / "s.nc"), "--workers", "1", "--reference-dir", str(ref), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "2 ok, 0 failed" in done.stdout, done.stderr[-2000:]


def test_sweep_and_capacity_commands(ref, tmp_path, capsys):
    scenario = BASE.save(tmp_path / "base.json")
    grid = tmp_path / "grid.yaml"
    grid.write_text("tp: [1, 4]\n")
    out = tmp_path / "sweep.nc"
    assert main(["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "--workers", "1",
                 "--reference-dir", str(ref), "-q"]) == 0
    captured = capsys.readouterr()
    assert "1 ok, 1 failed; wrote" in captured.out and "no tp4/ folder" in captured.err
    assert list(load(out).status.values) == ["ok", "failed"]
    other = tmp_path / "other.yaml"           # another sweep into the same file would drop its point unasked
    other.write_text("max_num_seqs: [8]\n")
    assert main(["sweep", str(scenario), "--grid", str(other), "--out", str(out), "--reference-dir", str(ref),
                 "-q"]) == 2
    assert "sweep.nc: --out: holds a sweep with 1 point done; --resume goes on" in capsys.readouterr().err
    assert list(load(out).status.values) == ["ok", "failed"]
    assert main(["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "--workers", "1",
                 "--reference-dir", str(ref), "-q", "--resume"]) == 0
    assert "1 ok (1 of them reused from" in capsys.readouterr().out   # was "1 ok, 1 failed, 1 reused": one point
    assert main(["sweep", str(scenario), "--grid", str(other), "--out", str(out), "--workers", "1",
                 "--reference-dir", str(ref), "-q", "--overwrite"]) == 0
    assert list(load(out).status.values) == ["ok"] and capsys.readouterr()
    for command in (["run", str(ref / "configs/cluster/single_node_single_instance.json"), "--num-requests", "3"],
                    ["capacity", str(scenario), "--slo-ttft-ms", "500"]):   # they replaced it unasked
        assert main([*command, "--out", str(out), "--reference-dir", str(ref), "-q"]) == 2
        assert "sweep.nc: --out: holds a sweep with 1 point done; give --out another name" in capsys.readouterr().err
        assert list(load(out).status.values) == ["ok"]
    only_bad = tmp_path / "only_bad.yaml"     # every point fails: the command says so in its exit status
    only_bad.write_text("tp: [4]\n")
    assert main(["sweep", str(scenario), "--grid", str(only_bad), "--out", str(tmp_path / "none.nc"), "--workers", "1",
                 "--reference-dir", str(ref), "-q"]) == 1
    assert "0 ok, 1 failed" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("tp: [1]\nspeed: [2]\n")
    assert main(["sweep", str(scenario), "--grid", str(bad), "--out", str(out), "-q"]) == 2
    assert "bad.yaml: speed: not a scenario field" in capsys.readouterr().err
    assert main(["capacity", str(scenario), "--reference-dir", str(ref), "-q"]) == 2
    assert "--slo-ttft-ms" in capsys.readouterr().err


def test_design_views_show_values_failures_and_the_front(client, ref):
    ds = ll.sweep(BASE, {"tp": [1, 4], "max_num_seqs": [8, 64]}, client=client, reference_dir=ref, progress=False)
    p = design.heatmap(ds, "output_throughput", "max_num_seqs", "tp")
    data = p.renderers[0].data_source.data
    assert data["text"].count("failed") == 2 and len(data["value"]) == 4
    # text readable on its cell: dark on grey (failed) and on the bright top of the scale, white on the dark
    ok = [v for v in data["value"] if np.isfinite(v)]
    ink = dict(zip(data["value"], data["ink"]))
    assert {i for i, t in zip(data["ink"], data["text"]) if t == "failed"} == {"#222222"}
    assert ink[max(ok)] == "#222222" and ink[min(ok)] == "white"
    front = pareto_front(ds, maximize=["output_throughput"], minimize=["num_gpus"])
    sc = design.pareto(ds, "num_gpus", "output_throughput", front).renderers[0].data_source.data
    assert len(sc["x"]) == 2 and list(sc["color"]).count("#d62728") == int(front.sum())
    with pytest.raises(InputError, match="fix the other sweep dims"):
        design.heatmap(ds.expand_dims(rate=[1.0, 2.0]), "output_throughput", "max_num_seqs", "tp")
    time.sleep(0)   # keep the module's cluster for the next test


def _fake_sweep(grid: dict) -> xr.Dataset:
    """A sweep's Dataset as ll.sweep lays it out, with made-up metrics (no run needed for its labels)."""
    from llmss_lab.sweeps import to_dataset

    dims, points = expand(BASE, grid)
    results = [{"status": "ok", "error": "", "wall_s": 0.1,
                "metrics": {"goodput": 1.0 + k, "energy_per_output_token_J": 0.3, "num_gpus": 1.0}}
               for k in range(len(points))]
    return to_dataset(BASE, grid, dims, points, results)


def test_every_axis_of_the_sweep_views_names_its_units(tmp_path):
    """Heat maps labelled their axes by the field alone (a rate axis without req/s, a memory axis without GiB)."""
    ds = _fake_sweep({"rate": [4.0, 8.0], "cpu_mem_gib": [256.0, 512.0], "cxl_mem_bw": [32.0, 64.0],
                      "max_num_seqs": [16, 64], "tp": [1, 2]})
    assert {d: ds[d].attrs.get("units") for d in ds.dims} == {
        "rate": "req/s", "cpu_mem_gib": "GiB", "cxl_mem_bw": "GB/s", "max_num_seqs": "sequences", "tp": "1"}
    p = design.heatmap(ds, "goodput", "rate", "cpu_mem_gib", cxl_mem_bw=32.0, max_num_seqs=16, tp=1)
    assert (p.xaxis[0].axis_label, p.yaxis[0].axis_label) == ("rate (req/s)", "cpu_mem_gib (GiB)")
    p = design.heatmap(ds, "energy_per_output_token_J", "max_num_seqs", "cxl_mem_bw", rate=4.0, cpu_mem_gib=256.0,
                       tp=2)
    assert (p.xaxis[0].axis_label, p.yaxis[0].axis_label) == ("max_num_seqs (sequences)", "cxl_mem_bw (GB/s)")
    assert p.title.text.startswith("energy_per_output_token_J (J/token)")
    p = design.heatmap(ds, "goodput", "tp", "rate", cpu_mem_gib=256.0, cxl_mem_bw=32.0, max_num_seqs=16)
    assert (p.xaxis[0].axis_label, p.yaxis[0].axis_label) == ("tp", "rate (req/s)")   # a degree: units "1"
    p = design.pareto(ds, "energy_per_output_token_J", "goodput")
    assert (p.xaxis[0].axis_label, p.yaxis[0].axis_label) == ("energy_per_output_token_J (J/token)",
                                                              "goodput (req/s)")
    points = _fake_sweep([{"rate": 2.0, "npu_mem_gib": 48.0}, {"rate": 4.0, "npu_mem_gib": 96.0}])
    assert points.rate.attrs["units"] == "req/s" and points.npu_mem_gib.attrs["units"] == "GiB"
    # a sweep file written before coordinates had units gets them when loaded
    old = ds.copy()
    for d in old.dims:
        old[d].attrs.clear()
    ll.sweeps.save(old, tmp_path / "old.nc")
    assert load(tmp_path / "old.nc").rate.attrs["units"] == "req/s"


def test_a_sweep_file_is_rewritten_less_often_when_writing_it_is_slow():
    from llmss_lab.sweeps import SavePacer

    pacer = SavePacer(every_s=2.0, last=0.0)
    assert not pacer.due(1.9) and pacer.due(2.0)
    pacer.wrote(2.0, 2.1)               # a quick write keeps the asked-for pace
    assert pacer.due(4.2)
    pacer.wrote(4.2, 5.2)               # a 1 s write: the next waits 4 s, so writing stays under a fifth
    assert not pacer.due(9.0) and pacer.due(9.3)


def test_a_capacity_search_that_cancels_a_run_prints_no_warning_of_dask(ref, tmp_path):
    """A worker closing under a run the search cancelled logged "Async instruction for <Task cancelled ...> ended
    with CancelledError" under the table, in dask's own format."""
    ll.Scenario(num_requests=30, rate=4).save(tmp_path / "s.json")
    done = subprocess.run([sys.executable, "-m", "llmss_lab", "capacity", str(tmp_path / "s.json"), "--slo-ttft-ms",
                           "500", "--workers", "1", "--rate-max", "16", "--reference-dir", str(ref), "-q",
                           "--out", str(tmp_path / "c.nc")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "1 runs made" in done.stdout, done.stderr
    if not xr.load_dataset(tmp_path / "c.nc").attrs["runs_cancelled"]:   # the case this test is about did not arise
        pytest.skip("the search cancelled no run on this machine")
    assert "CancelledError" not in done.stderr and "distributed" not in done.stderr, done.stderr
