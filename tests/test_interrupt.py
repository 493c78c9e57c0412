"""A Ctrl-C keeps the run: the kernel stops at an event boundary, ``simulate`` raises :class:`RunInterrupted` (a
KeyboardInterrupt) carrying the run so far, and ``llmss run`` saves it. Interrupts are real SIGINTs, sent from
inside the run (its progress callback, a step's launch, a write), as a terminal or a Jupyter kernel sends them."""
from __future__ import annotations

import functools
import json
import os
import re
import signal

from array import array
from contextlib import ExitStack
from dataclasses import fields
from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

import llmss_lab as ll
import llmss_lab.api as api
from llmss_lab.cli import main
from llmss_lab.kernel import simulator
from llmss_lab.kernel.instance import Engine, Instance
from llmss_lab.kernel.moe import GATES
from llmss_lab.kernel.tiers import PrefixPool
from llmss_lab.results.dataset import Results

from .test_kernel_invariants import KERNEL, cases, run_case

BASE = ll.Scenario(num_requests=80, rate=20)
CASES = {"one instance, power": BASE.replace(power=True),
         "P/D split": BASE.replace(instances=2, prefill_instances=1),
         "PP 2, prefix pool": BASE.replace(pp=2, prefix_storage="cpu", shared_prefix_len=256),
         "async, 2 replicas": BASE.replace(async_scheduling=True, instances=2)}


@pytest.fixture()
def ctrl_c():
    """SIGINT raises KeyboardInterrupt, as in a terminal or a Jupyter cell, whatever the test runner set."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def press() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def press_after(n: int):
    """A progress callback that presses Ctrl-C when the n-th request finishes."""
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if done[0] == n:
            press()
    return tick


def press_after_the_first_step(monkeypatch) -> None:
    """Ctrl-C once the run's first step is recorded, before any request can have finished."""
    real = Instance.record

    def first_step_then_ctrl_c(self, *args):
        monkeypatch.setattr(Instance, "record", real)
        real(self, *args)
        press()

    monkeypatch.setattr(Instance, "record", first_step_then_ctrl_c)


def stopped(scen: ll.Scenario, ref, n: int = 25) -> ll.RunInterrupted:
    with pytest.raises(ll.RunInterrupted) as caught:
        scen.run(ref, press_after(n))
    return caught.value


@pytest.mark.parametrize("case", CASES)
def test_a_run_stopped_by_ctrl_c_is_the_whole_run_cut_where_it_stopped(ref, ctrl_c, tmp_path, case):
    """Was a bare KeyboardInterrupt that threw the whole run away."""
    scen = CASES[case]
    whole = scen.run(ref)
    stop = stopped(scen, ref)
    assert isinstance(stop, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    part, a = stop.results, stop.results.attrs
    n, t = part.requests.sizes["request"], a["simulated_s"]
    assert 25 <= n < scen.num_requests and a["interrupted"] == 1 and a["requests_finished"] == n
    assert a["requests_total"] == scen.num_requests and "scenario_json" in a
    assert str(stop) == f"interrupted at {t:.1f} s simulated: {n} of {scen.num_requests} requests finished"
    # the finished requests, each once, are the whole run's that were done by then, with all their tokens and times
    ids = part.requests.request.values
    finish = whole.requests.finish.values
    assert len(set(ids.tolist())) == n and (finish[ids] <= t).all()
    assert set(np.flatnonzero(finish < t).tolist()) <= set(ids.tolist())
    for v in whole.requests.data_vars:
        np.testing.assert_array_equal(part.requests[v].values, whole.requests[v].values[ids], err_msg=v)
    # every step that completed, and no other: each instance's steps are the whole run's first ones
    for i in range(int(whole.iterations.instance.max()) + 1):
        mine = part.iterations.where(part.iterations.instance == i, drop=True)
        first = whole.iterations.where(whole.iterations.instance == i, drop=True).isel(step=slice(0, mine.sizes["step"]))
        for v in whole.iterations.data_vars:
            np.testing.assert_array_equal(mine[v].values, first[v].values, err_msg=f"instance {i}: {v}")
    end = part.iterations.start.values + part.iterations.duration.values * 1e-3
    assert (end <= t + 1e-9).all()
    # the time series' bins before the stop's are the whole run's, bin for bin
    for v in whole.timeseries.data_vars:
        np.testing.assert_array_equal(part.timeseries[v].values[:-1],
                                      whole.timeseries[v].values[:part.timeseries.sizes["time"] - 1], err_msg=v)
    summary = part.summary()
    assert summary["completed"] == n and summary["interrupted"] is True and summary["requests_total"] == 80
    if part.power.data_vars:   # energy so far: the integral of the power so far, less than the whole run's
        widths = np.diff(np.concatenate([[0.0], part.power.time.values]))
        energy = float((part.power.power.values * widths[:, None, None]).sum())
        assert energy == pytest.approx(summary["total_energy_J"]) and energy < whole.summary()["total_energy_J"]
    loaded = ll.load_results(part.save(tmp_path / "part.nc"))
    assert json.dumps(loaded.summary()) == json.dumps(summary) and loaded.attrs["interrupted"] == 1


def launches(c) -> tuple[simulator.RawRun, list[list[tuple]]]:
    """The whole run, and what each engine's steps took at their launch, in order: (MoE routing, [(pool, bytes
    recalled from it, over the network?)])."""
    taken: dict[Engine, list[tuple]] = {}
    now: list[tuple] = []
    real_launch, real_recall = Engine._launch, PrefixPool.recall

    def launch(self, t):
        now.append((None, []))
        launched = real_launch(self, t)
        step = now.pop()
        if launched:
            taken.setdefault(self, []).append(step)
        return launched

    def recall(self, t, nbytes, path=None):
        now[-1][1].append((self.name, nbytes, path is not None))
        return real_recall(self, t, nbytes, path)

    def router(real):
        def route(self, tokens):
            r = real(self, tokens)
            now[-1] = (r, now[-1][1])
            return r
        return route

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(Engine, "_launch", launch))
        patches.enter_context(mock.patch.object(PrefixPool, "recall", recall))
        for name in GATES.names():
            gate = GATES.get(name, "gate")
            patches.enter_context(mock.patch.object(gate, "route", router(gate.route)))
        whole, _ = run_case(c)
    return whole, [taken.get(e, []) for e in whole.engines]


@settings(KERNEL, max_examples=100)
@given(cases(), st.integers(1, 60))
def test_a_kernel_run_stopped_after_any_step_is_the_whole_run_cut_there(c, k):
    """The kernel's generated small clusters (P/D with each hand-over, DP, PP 1-4, async, MoE, prefix pools, tiny
    KV): a Ctrl-C as the k-th step completes leaves the whole run's first steps and finished requests, nothing more,
    nothing twice, and Results build from it; its expert loads and memory-tier counters are those of these steps
    (they counted the routing and recalls of the steps still running, which are dropped)."""
    whole, taken = launches(c)
    real = Instance.complete
    completed = [0]

    def complete(self, *args):
        out = real(self, *args)
        completed[0] += 1
        if completed[0] == k:
            press()
        return out

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with mock.patch.object(Instance, "complete", complete):
            part, _ = run_case(c)   # every step checked as it plans and completes, as the whole run's were
    finally:
        signal.signal(signal.SIGINT, before)
    W, P, t = whole.requests, part.requests, part.end_ns
    assert part.interrupted == (completed[0] >= k)
    event("stopped" if part.interrupted else "fewer steps than k: ran to its end")
    done = P.finished >= 0
    assert P.num_finished == np.count_nonzero(done)
    np.testing.assert_array_equal(P.finished[done], W.finished[done])
    assert (P.num_tokens[done] == P.final[done]).all() and (W.finished[~done] >= t).all()
    for a, b in zip(part.instances, whole.instances):
        steps = len(a.log.running)
        for f in fields(a.log):
            col = getattr(a.log, f.name)
            if isinstance(col, array):
                assert len(col) in (steps, 0), f.name   # pim_busy: only with PIM
                assert col.tolist() == getattr(b.log, f.name)[:len(col)].tolist(), f.name
        assert all(s + d <= t for s, d in zip(a.log.start, a.log.duration))
    read: dict[str, float] = {}
    over_link: dict[str, float] = {}
    for engine, steps in zip(part.engines, taken):
        ran = steps[:len(engine.members[0].log.running)]   # a DP group's members log each of its steps
        if engine.gate is not None:
            loads = [r.layer_loads(engine.gate.layers) for r, _ in ran]
            want = None if not loads else functools.reduce(lambda a, b: a + b, loads)
            np.testing.assert_array_equal(engine.expert_load, want)
        for _, recalls in ran:
            for pool, nbytes, remote in recalls:
                read[pool] = read.get(pool, 0.0) + nbytes
                over_link[pool] = over_link.get(pool, 0.0) + nbytes * remote
    for pool in part.pools:   # bytes are whole numbers here: exact in any order
        assert pool.link_read == over_link.get(pool.name, 0.0)
    for name, tier in part.tiers.items():
        assert tier.bytes_read == sum(n for p in part.pools if p.tier is tier for n in [read.get(p.name, 0.0)])
    if part.interrupted and P.num_finished:
        res = Results.from_raw(part, {"interrupted": 1, "simulated_s": t * 1e-9, "requests_finished": P.num_finished,
                                      "requests_total": P.n})
        assert res.requests.request.values.tolist() == np.flatnonzero(done).tolist()
        assert res.summary()["completed"] == P.num_finished


def test_a_ctrl_c_before_any_request_finished_carries_no_results(ref, ctrl_c, monkeypatch):
    press_after_the_first_step(monkeypatch)
    with pytest.raises(ll.RunInterrupted, match=r"^interrupted at 0\.\d s simulated: 0 of 80 requests finished$") as c:
        BASE.run(ref)
    assert c.value.results is None


def test_a_second_ctrl_c_while_the_run_so_far_is_gathered_is_ignored(ref, ctrl_c, monkeypatch):
    import llmss_lab.results.dataset as dataset

    real = dataset.timeseries_dataset

    def ctrl_c_again(*args, **kwargs):
        press()
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "timeseries_dataset", ctrl_c_again)
    assert stopped(BASE, ref).results.summary()["completed"] >= 25


def test_a_run_where_ctrl_c_is_not_python_s_to_handle_is_left_as_it_was(ref, ctrl_c):
    """A caller's own SIGINT handler (a sweep's) keeps the Ctrl-C: the kernel does not take it over."""
    pressed = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    res = BASE.run(ref, press_after(25))
    assert pressed == [signal.SIGINT] and res.summary()["completed"] == 80 and "interrupted" not in res.attrs


def cli_pressing_after(monkeypatch, n: int = 25) -> None:
    """``llmss run`` whose simulation gets a Ctrl-C when its n-th request finishes."""
    real = api.simulator.run

    def run(setups, workload, router, progress, *args, **kwargs):
        return real(setups, workload, router, press_after(n), *args, **kwargs)

    monkeypatch.setattr(api.simulator, "run", run)


def llmss_run(ref, out, *more) -> list[str]:
    return ["run", str(ref / "configs/cluster/single_node_single_instance.json"), "--reference-dir", str(ref),
            "--num-requests", "80", "-q", *(["--out", str(out)] if out else []), *more]


@pytest.mark.parametrize("name", ["r.nc", "r.csv"])
def test_an_interrupted_cli_run_saves_the_run_so_far(ref, ctrl_c, monkeypatch, capsys, tmp_path, name):
    """Printed "a run writes its results only when it ends, so none were" and kept nothing."""
    out = tmp_path / name
    out.write_text("the previous results")
    cli_pressing_after(monkeypatch)
    assert main(llmss_run(ref, out)) == 130
    printed, err = capsys.readouterr()
    said = err.strip().splitlines()[-1]
    head = r"llmss: interrupted at \d+\.\d s simulated: (\d+) of 80 requests finished; "
    m = re.fullmatch(head + f"partial results in {out}", said)
    assert m, said
    assert "(partial: interrupted at" in printed.splitlines()[0] and not list(tmp_path.glob("*.part*"))
    n = int(m.group(1))
    if name.endswith(".nc"):
        res = ll.load_results(out)
        assert res.attrs["interrupted"] == 1 and res.summary()["completed"] == n
    else:
        assert len(out.read_text().splitlines()) == n + 1


def test_an_interrupted_example_saves_the_run_so_far(ref, ctrl_c, monkeypatch, capsys, tmp_path):
    out = tmp_path / "r.nc"
    cli_pressing_after(monkeypatch)
    assert main(["example", "--reference-dir", str(ref), "--out", str(out), "-q"]) == 130
    n = ll.load_results(out).summary()["completed"]
    assert capsys.readouterr().err.endswith(f" {n} of 300 requests finished; partial results in {out}\n")


@pytest.mark.parametrize("name", ["r.nc", "r.csv"])
def test_a_second_ctrl_c_while_the_cli_saves_the_run_so_far_waits_for_the_file(ref, ctrl_c, monkeypatch, capsys,
                                                                               tmp_path, name):
    import pandas as pd

    from llmss_lab.results import netcdf

    real_group, real_csv = netcdf._write_group, pd.DataFrame.to_csv

    def group(*args, **kwargs):
        monkeypatch.setattr(netcdf, "_write_group", real_group)
        press()
        return real_group(*args, **kwargs)

    def csv(*args, **kwargs):
        press()
        return real_csv(*args, **kwargs)

    monkeypatch.setattr(netcdf, "_write_group", group)
    monkeypatch.setattr(pd.DataFrame, "to_csv", csv)
    out = tmp_path / name
    cli_pressing_after(monkeypatch)
    assert main(llmss_run(ref, out)) == 130
    assert capsys.readouterr().err.strip().endswith(f"requests finished; partial results in {out}")
    assert not list(tmp_path.glob("*.part*"))
    if name.endswith(".nc"):
        assert ll.load_results(out).attrs["interrupted"] == 1
    else:
        assert out.read_text().startswith("request,")


def test_an_interrupted_cli_run_without_out_or_results_says_so(ref, ctrl_c, monkeypatch, capsys, tmp_path):
    cli_pressing_after(monkeypatch)
    assert main(llmss_run(ref, None, "--json")) == 130
    printed, err = capsys.readouterr()
    assert json.loads(printed)["interrupted"] is True
    assert err.endswith("requests finished; partial summary above (--out FILE keeps the run)\n")
    press_after_the_first_step(monkeypatch)
    out = tmp_path / "r.nc"
    assert main(llmss_run(ref, out)) == 130
    printed, err = capsys.readouterr()
    assert printed == "" and err.endswith(" 0 of 80 requests finished; nothing to keep\n") and not out.exists()


def test_an_interrupted_cli_run_without_a_trace_says_the_workload_it_generated(ref, ctrl_c, monkeypatch, capsys):
    """A whole run said "no --workload: N synthetic requests, ..." after its summary; a run stopped by a Ctrl-C did
    not, with or without results to keep."""
    said = ("no --workload: 80 synthetic requests, Poisson arrivals at 2.5 req/s, prompt lengths sharegpt, output "
            "lengths sharegpt, seed 3 (--num-requests, --rate, --input-len, --output-len and --seed set them)")
    cli_pressing_after(monkeypatch)
    assert main(llmss_run(ref, None, "--rate", "2.5", "--seed", "3")) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == said and err[-1].endswith("partial summary above (--out FILE keeps the run)"), err
    press_after_the_first_step(monkeypatch)
    assert main(llmss_run(ref, None, "--rate", "2.5", "--seed", "3")) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == said and err[-1].endswith("nothing to keep"), err
    cli_pressing_after(monkeypatch)
    assert main(llmss_run(ref, None, "--workload", "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl")) == 130
    assert "synthetic" not in capsys.readouterr().err


def test_a_ctrl_c_while_the_cli_saves_a_whole_run_says_the_file_was_written(ref, ctrl_c, monkeypatch, capsys, tmp_path):
    """The write finishes first, then the Ctrl-C; it said "a run writes its results only when it ends, so none
    were" of the file just written."""
    from llmss_lab.results import netcdf

    real = netcdf._write_group

    def group(*args, **kwargs):
        monkeypatch.setattr(netcdf, "_write_group", real)
        press()
        return real(*args, **kwargs)

    monkeypatch.setattr(netcdf, "_write_group", group)
    out = tmp_path / "r.nc"
    assert main(llmss_run(ref, out)) == 130
    assert capsys.readouterr().err == f"llmss: interrupted; the results were written to {out}\n"
    assert "interrupted" not in ll.load_results(out).attrs


def test_a_run_stopped_by_ctrl_c_counts_the_expert_routing_and_memory_reads_of_its_steps_alone(ref, ctrl_c):
    """The expert loads and the CPU memory's counters took in the routing and the weights streamed of the steps
    still running at the stop, which the run so far drops: one step more than its iterations."""
    scen = BASE.replace(model="Qwen/Qwen3-30B-A3B-Instruct-2507", weights_on="cpu")   # weights stream every step
    whole = scen.run(ref)
    part = stopped(scen, ref).results
    steps, top_k = part.iterations.sizes["step"], 8
    assert 0 < steps < whole.iterations.sizes["step"]
    # every MoE layer routes each token of a step to top_k experts
    np.testing.assert_array_equal(part.experts.expert_load.sum("expert").values,
                                  top_k * int(part.iterations.num_tokens.sum()))
    # the same weights stream in at every step
    assert (whole.memory.tier_bytes_read.values > 0).all()
    for v in ("tier_bytes_read", "tier_busy"):
        per_step = whole.memory[v].values / whole.iterations.sizes["step"]
        np.testing.assert_allclose(part.memory[v].values, per_step * steps, rtol=1e-12, err_msg=v)


def test_a_ctrl_c_while_a_finished_run_s_results_are_built_stops_it_with_them(ref, ctrl_c, monkeypatch, capsys,
                                                                             tmp_path):
    """Was a bare KeyboardInterrupt that threw the finished run away, and `llmss run` kept nothing: the Ctrl-C now
    waits for the results (0.02-0.04 s for 20,000 requests), then stops the run with them, whole."""
    import llmss_lab.results.dataset as dataset

    whole = BASE.run(ref)
    real = dataset.timeseries_dataset

    def ctrl_c_now(*args, **kwargs):
        press()
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "timeseries_dataset", ctrl_c_now)
    said = "interrupted as the results were built, all 80 requests finished"
    with pytest.raises(ll.RunInterrupted, match=f"^{said}$") as caught:
        BASE.run(ref)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    res = caught.value.results
    assert "interrupted" not in res.attrs and "scenario_json" in res.attrs and res.summary()["completed"] == 80
    for v in whole.requests.data_vars:
        np.testing.assert_array_equal(res.requests[v].values, whole.requests[v].values, err_msg=v)
    out = tmp_path / "r.nc"
    assert main(llmss_run(ref, out)) == 130
    printed, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == f"llmss: {said}; results in {out}" and "partial" not in printed
    assert ll.load_results(out).summary()["completed"] == 80
