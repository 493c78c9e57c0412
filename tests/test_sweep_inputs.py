"""Bad inputs to sweeps and capacity searches: each is a clear InputError naming the file and the key,
never a traceback, a hang, or results lost (a resume onto another sweep's file)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

import llmss_lab as ll
import llmss_lab.sweeps as sweeps
from llmss_lab.errors import ClusterStartError, InputError
from llmss_lab.sweeps import SLO, expand, load, read_grid

from .conftest import alarm, free_port, linked_root, local_dask_client, stop

distributed = pytest.importorskip("distributed")
BASE = ll.Scenario(num_requests=10, rate=5.0)


@pytest.fixture(scope="module")
def client():
    yield from local_dask_client(1)


def test_resume_refuses_a_file_of_another_sweep_and_keeps_its_results(client, ref, tmp_path):
    out = tmp_path / "s.nc"
    ll.sweep(BASE, {"max_num_seqs": [64, 128]}, client=client, reference_dir=ref, save_to=out, progress=False)
    before = out.read_bytes()
    with pytest.raises(InputError) as exc:
        ll.sweep(BASE, {"max_num_seqs": [32]}, client=client, reference_dir=ref, save_to=out, resume=True,
                 progress=False)
    assert exc.value.source == str(out) and "max_num_seqs=[64, 128] there, max_num_seqs=[32] here" in str(exc.value)
    assert "another --out" in str(exc.value)
    with pytest.raises(InputError, match="base scenario: seed 0 there, 3 here"):
        ll.sweep(BASE.replace(seed=3), {"max_num_seqs": [64, 128]}, client=client, reference_dir=ref, save_to=out,
                 resume=True, progress=False)
    assert out.read_bytes() == before and list(load(out).status.values) == ["ok", "ok"]
    same = ll.sweep(BASE, {"max_num_seqs": [64, 128]}, client=client, reference_dir=ref, save_to=out, resume=True,
                    progress=False)
    assert same.attrs["points_resumed"] == 2


def test_a_sweep_is_not_saved_inside_the_reference_data_it_read(client, ref, tmp_path):
    """``sweep(save_to=)`` and ``sweeps.save`` wrote into the reference data that `llmss sweep --out` refuses."""
    root = linked_root(ref, tmp_path / "root")
    out = root / "s.nc"
    with pytest.raises(InputError, match=rf"^{out}: save_to: is inside the reference data \({root}\)"):
        ll.sweep(BASE, {"max_num_seqs": [64]}, client=client, reference_dir=root, save_to=out, progress=False)
    ds = ll.sweep(BASE, {"max_num_seqs": [64]}, client=client, reference_dir=root, progress=False)
    with pytest.raises(InputError, match=rf"^{out}: path: is inside the reference data \({root}\)"):
        sweeps.save(ds, out)
    assert sorted(p.name for p in root.iterdir()) == ["configs", "profiles", "workloads"]


@pytest.mark.parametrize("n", [0, -2, 1.5, True])
def test_worker_counts_below_one_are_refused_not_waited_on(n, ref):
    t0 = time.monotonic()
    with pytest.raises(InputError) as exc:
        ll.sweep(BASE, {"tp": [1]}, n_workers=n, reference_dir=ref, progress=False)
    assert "--workers" in exc.value.where and "n_workers" in exc.value.where and repr(n) in str(exc.value)
    with pytest.raises(InputError, match="--workers"):
        ll.capacity(BASE, SLO(ttft_ms=100), n_workers=n, reference_dir=ref, progress=False)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("address", ["notanaddress", "tcp://host:abc", "tcp://:8786", "tcp://host:70000",
                                     "foo://host:1"])
def test_malformed_scheduler_addresses_are_named(address, ref):
    with pytest.raises(InputError) as exc:
        ll.sweep(BASE, {"tp": [1]}, client=address, reference_dir=ref, progress=False)
    assert "--dask-scheduler" in exc.value.where and repr(address) in str(exc.value)


def test_a_grid_too_large_to_run_is_refused_before_its_points_are_built():
    """A 300 x 300 grid spent 40 s before its first point and was heading for 13 h; 27 million points sat silent."""
    with pytest.raises(InputError, match=r"^g\.yaml: 90,000 points, more than 10,000: coarsen the grid"):
        expand(BASE, {"max_num_seqs": list(range(1, 301)), "seed": list(range(300))}, "g.yaml")
    with pytest.raises(InputError, match=r"^grid: 27,000,000 points"):
        expand(BASE, {"max_num_seqs": list(range(1, 301)), "seed": list(range(300)), "rate": [float(r) for r in
                                                                                              range(1, 301)]})
    with pytest.raises(InputError, match=r"10,001 points"):
        expand(BASE, [{"seed": i} for i in range(10_001)])
    assert len(expand(BASE, {"seed": list(range(100)), "max_num_seqs": list(range(1, 101))})[1]) == 10_000


def test_more_local_workers_than_the_cores_can_use_are_refused(ref):
    """--workers 1000 started 1000 processes of 24 MiB each; they paused at 262 % memory and the sweep hung."""
    import os

    most = 4 * (os.cpu_count() or 1)
    with pytest.raises(InputError, match=rf"^sweep: --workers \(n_workers\): {most + 1} local worker processes on "
                                         rf"\d+ cores would only split the memory .* give at most {most}, or"):
        ll.sweep(BASE, {"tp": [1]}, n_workers=most + 1, reference_dir=ref, progress=False)


def test_a_refused_dask_argument_leaves_no_progress_bar_behind(ref, capsys):
    """The check runs before capacity's bar opens: the error is the only thing printed."""
    with pytest.raises(InputError, match="--workers"):
        ll.capacity(BASE, SLO(ttft_ms=100), n_workers=0, reference_dir=ref, progress=True)
    with pytest.raises(InputError, match="--dask-scheduler"):
        ll.sweep(BASE, {"tp": [1]}, client="notanaddress", reference_dir=ref, progress=True)
    assert capsys.readouterr().err == ""


def test_a_scheduler_without_workers_is_an_error_not_a_hang(ref, monkeypatch):
    monkeypatch.setattr(sweeps.cluster, "WORKER_WAIT_S", 1.0)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300    # as a user would: run once the scheduler listens (it died: at once)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert sched.poll() is None and time.monotonic() < deadline, "the dask scheduler did not start"
                time.sleep(0.2)
        with pytest.raises(InputError, match="has no workers"):
            ll.sweep(BASE, {"tp": [1]}, client=address, reference_dir=ref, progress=False)
    finally:
        stop(sched)


def test_a_server_that_is_not_dask_is_named_not_waited_on(ref):
    """An HTTP server at the address: dask's Client waited past its own timeout for ever (the CLI hung)."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()   # accepts, says nothing
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match=r"cannot reach the dask scheduler at .* it accepted the connection but "
                                             r"sent nothing in 5 s"):
            ll.sweep(BASE, {"tp": [1]}, client=f"tcp://127.0.0.1:{listener.getsockname()[1]}", reference_dir=ref,
                     progress=False)
        assert time.monotonic() - t0 < 30
    finally:
        listener.close()


def test_a_sweep_that_never_started_leaves_an_existing_file_alone(ref, tmp_path, monkeypatch):
    def no_client(*args, **kwargs):   # a refused connection is known at once: no Client waits out its timeout
        pytest.fail("a Client was made for an address where nothing listens")
    monkeypatch.setattr(distributed, "Client", no_client)
    out = tmp_path / "earlier.nc"
    out.write_bytes(b"earlier results")
    with pytest.raises(InputError, match="cannot reach the dask scheduler at 'tcp://127.0.0.1:"):
        ll.sweep(BASE, {"tp": [1]}, client=f"tcp://127.0.0.1:{free_port()}", reference_dir=ref, save_to=out,
                 progress=False)
    assert out.read_bytes() == b"earlier results"


@pytest.mark.parametrize("rate_range, rel_tol, key", [
    ((0.5, float("inf")), 0.05, "rate_range"),
    ((float("nan"), 4.0), 0.05, "rate_range"),
    ((0.0, 4.0), 0.05, "rate_range"),
    ((8.0, 4.0), 0.05, "rate_range"),
    ((1.0,), 0.05, "rate_range"),
    ((1e-300, 1e300), 0.05, "rate_range"),     # each end finite, the ratio not
    ((0.5, 64.0), float("nan"), "rel_tol"),
    ((0.5, 64.0), float("inf"), "rel_tol"),
    ((0.5, 64.0), 1e-320, "rel_tol"),
    ((0.5, 64.0), 0.0, "rel_tol"),
])
def test_capacity_ranges_and_tolerances_must_be_finite(rate_range, rel_tol, key, ref):
    with pytest.raises(InputError) as exc:
        ll.capacity(BASE, SLO(ttft_ms=100), rate_range=rate_range, rel_tol=rel_tol, reference_dir=ref, progress=False)
    assert exc.value.source == "capacity" and exc.value.where.startswith(key)


def test_a_scenario_file_that_is_not_utf8_or_repeats_a_key_is_named(tmp_path):
    p = tmp_path / "latin1.json"
    p.write_bytes(b'{"num_requests": 20, "model": "x\xff"}')
    with pytest.raises(InputError) as exc:
        ll.Scenario.load(p)
    assert exc.value.source == str(p) and "not UTF-8" in str(exc.value)
    twice = tmp_path / "twice.json"
    twice.write_text('{"seed": 1, "rate": 2.0, "seed": 2}')
    with pytest.raises(InputError) as exc:
        ll.Scenario.load(twice)
    assert (exc.value.source, exc.value.where) == (str(twice), "line 1") and "'seed' given twice" in str(exc.value)


@pytest.mark.parametrize("key, value", [
    ("seed", -1), ("rate", float("nan")), ("rate", float("inf")), ("rate", -5.0), ("gate_skew", float("nan")),
    ("num_requests", 0), ("num_requests", -3), ("npu_mem_gib", -1.0), ("cpu_mem_bw", -1.0),
    ("gpu_memory_utilization", 7.0), ("what_if_flops", float("inf")), ("tp", 0), ("cxl_mem_gib", -1.0),
    ("shared_prefix_len", -1), ("num_prefixes", 0), ("block_size", 0), ("max_num_seqs", -1),
])
def test_out_of_range_scenario_fields_are_named(key, value, ref, tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({**BASE.to_dict(), key: value}))     # NaN and Infinity: Python's JSON writes them
    with pytest.raises(InputError) as exc:
        ll.Scenario.load(p)
    assert (exc.value.source, exc.value.where) == (str(p), key)
    with pytest.raises(InputError) as exc:   # a grid point: the whole sweep stops before any point runs
        expand(BASE, {key: [value]}, "g.yaml")
    assert exc.value.where == key and str(exc.value).startswith(f"g.yaml: point 0 ({key}=")
    with pytest.raises(InputError) as exc:   # built in Python and run
        BASE.replace(**{key: value}).run(ref)
    assert exc.value.where == key


def test_a_token_budget_below_max_num_seqs_is_named_by_the_scenario_file_and_grid_point(tmp_path):
    """vLLM refuses max_num_batched_tokens < max_num_seqs; a scenario file or grid point with it loaded, and only
    its run failed, naming 'engine settings' (a sweep dispatched the point and recorded it as failed)."""
    p = tmp_path / "s.json"
    p.write_text(json.dumps({**BASE.to_dict(), "max_num_seqs": 128, "max_num_batched_tokens": 64}))
    with pytest.raises(InputError, match=r"max_num_batched_tokens: 64 is less than max_num_seqs 128") as exc:
        ll.Scenario.load(p)
    assert (exc.value.source, exc.value.where) == (str(p), "max_num_batched_tokens")
    with pytest.raises(InputError, match=r"^g\.yaml: point 0 \(max_num_batched_tokens=64\): max_num_batched_tokens: "
                                         r"64 is less than max_num_seqs"):
        expand(BASE.replace(max_num_seqs=128), {"max_num_batched_tokens": [64, 4096]}, "g.yaml")


def test_num_requests_zero_means_the_whole_trace():
    assert ll.Scenario.from_dict({"trace": "t.jsonl", "num_requests": 0}).num_requests == 0


def test_grid_files_with_a_key_or_a_value_twice_are_refused(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("max_num_seqs: [64]\ntp: [1]\nmax_num_seqs: [128]\n")
    with pytest.raises(InputError) as exc:
        read_grid(keys)
    assert (exc.value.source, exc.value.where) == (str(keys), "line 3") and "'max_num_seqs' given twice" in str(exc.value)
    points = tmp_path / "points.yaml"
    points.write_text("points:\n  - {tp: 1, tp: 2}\n")
    with pytest.raises(InputError, match="points.yaml: line 2: key 'tp' given twice"):
        read_grid(points)
    values = tmp_path / "values.yaml"
    values.write_text("max_num_seqs: [64, 64]\n")
    with pytest.raises(InputError, match="values.yaml: max_num_seqs: lists 64 twice"):
        expand(BASE, read_grid(values), str(values))


class _FlakyCluster:
    """Stands in for distributed.LocalCluster: the first ``fails`` starts fail as dask's do when its
    event-loop thread misses its 10 s (a bare AssertionError)."""
    starts = 0

    def __init__(self, fails: int):
        self.fails = fails

    def __call__(self, **kwargs):
        type(self).starts += 1
        if type(self).starts <= self.fails:
            raise AssertionError
        return self

    def close(self):
        self.closed = True


class _Client:
    def __init__(self, cluster, set_as_default=True):
        self.cluster, self.closed = cluster, False

    def close(self):
        self.closed = True


@pytest.mark.parametrize("fails", [1, 2])
def test_a_local_cluster_that_fails_to_start_is_tried_once_more_then_named(fails, monkeypatch, caplog):
    monkeypatch.setattr(distributed, "LocalCluster", _FlakyCluster(fails))
    monkeypatch.setattr(distributed, "Client", _Client)
    monkeypatch.setattr(_FlakyCluster, "starts", 0)
    if fails < sweeps.LOCAL_START_TRIES:
        with sweeps.local_client(2) as c:
            assert not c.closed
        assert c.closed and c.cluster.closed and _FlakyCluster.starts == 2
        assert "did not start (AssertionError); trying once more" in caplog.text
    else:
        with pytest.raises(ClusterStartError) as exc:
            with sweeps.local_client(2):
                pytest.fail("no client without a cluster")
        assert "could not start a local cluster of 2 worker process(es) in 2 tries (last: AssertionError)" in str(exc.value)
        assert "--workers" in str(exc.value) and "--dask-scheduler" in str(exc.value)


def test_a_grid_of_numpy_arrays_expands_to_plain_values():
    import numpy as np

    dims, points = expand(ll.Scenario(), {"max_num_seqs": np.arange(32, 97, 32), "rate": np.linspace(1, 2, 2)})
    assert dims == {"max_num_seqs": [32, 64, 96], "rate": [1.0, 2.0]}
    assert [type(v) for v in dims["max_num_seqs"] + dims["rate"]] == [int] * 3 + [float] * 2
    assert [(p["max_num_seqs"], p["rate"]) for p in points] == [(s, r) for s in (32, 64, 96) for r in (1.0, 2.0)]
    json.dumps(points)   # every point saves as it is
    with pytest.raises(InputError, match="lists 32 twice"):
        expand(ll.Scenario(), {"max_num_seqs": np.array([32, 32])})
    with pytest.raises(InputError, match="must be a non-empty list"):
        expand(ll.Scenario(), {"max_num_seqs": np.arange(0)})


def test_slo_limits_of_the_wrong_kind_are_named_and_numpy_ones_taken():
    import numpy as np

    assert SLO(ttft_ms=np.float32(200), quantile=np.float64(0.5)) == SLO(ttft_ms=200.0, quantile=0.5)
    for kwargs, key in (({"ttft_ms": 200, "quantile": "0.9"}, "quantile"), ({"ttft_ms": "200"}, "ttft_ms"),
                        ({"tpot_ms": float("nan")}, "tpot_ms")):
        with pytest.raises(InputError) as err:
            SLO(**kwargs)
        assert err.value.where == key


def test_a_script_without_a_main_guard_is_told_to_add_one(ref, tmp_path):
    """dask spawns its workers, and each re-runs an unguarded script's top level (and its sweep): the user got
    'Nanny failed to start' and advice about CPU and memory; now the script is named with the fix."""
    call = (f"import llmss_lab as ll\nds = ll.sweep(ll.Scenario(num_requests=3), {{'max_num_seqs': [4, 8]}}, "
            f"n_workers=1, progress=False, reference_dir={str(ref)!r})\nprint(ds.status.values.tolist())\n")
    bare = tmp_path / "bare.py"
    bare.write_text(call)
    guarded = tmp_path / "guarded.py"
    guarded.write_text("def main():\n" + "".join(f"    {line}\n" for line in call.splitlines())
                       + "\n\nif __name__ == '__main__':\n    main()\n")
    out = subprocess.run([sys.executable, str(bare)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0 and "Nanny" not in out.stderr
    assert f"{bare}: a sweep starts dask worker processes" in out.stderr and '__name__ == "__main__"' in out.stderr
    out = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "['ok', 'ok']", out.stderr[-2000:]


@pytest.mark.parametrize("base, grid, says", [
    (BASE.replace(cluster_config="single_node_single_instance"), {"tp": [1, 2]},
     "tp: has no effect: cluster_config 'single_node_single_instance' sets the cluster"),
    (BASE.replace(cluster_config="single_node_single_instance"), [{"hardware": "H100"}], "hardware: has no effect"),
    (BASE.replace(trace="example_trace", num_requests=0), {"rate": [1.0, 100.0]},
     "rate: has no effect: trace 'example_trace' gives the workload"),
    (BASE, {"trace": ["", "example_trace"], "input_len": ["fixed:100", "fixed:200"]},
     "point 2 (trace='example_trace', input_len='fixed:100'): input_len: has no effect"),
    (BASE.replace(cluster_config="single_node_heterogeneous"), {"max_num_seqs": [8, 16]},   # both instances set it
     "max_num_seqs: has no effect: every instance of cluster_config 'single_node_heterogeneous' sets its own "
     "max_num_seqs (every value would run the same point); drop this field from the grid, or sweep without the "
     "cluster_config"),
])
def test_a_grid_field_the_scenario_ignores_is_refused(base, grid, says):
    """Such a sweep once returned identical points, each marked ok."""
    with pytest.raises(InputError, match=re.escape(says)):
        expand(base, grid)


def test_fields_a_scenario_uses_are_swept_beside_a_cluster_file():
    dims, points = expand(BASE.replace(cluster_config="single_node_single_instance"), {"max_num_seqs": [8, 16]})
    assert [p["max_num_seqs"] for p in points] == [8, 16]


@pytest.mark.parametrize("call, where, says", [
    (lambda tmp: ll.sweep(None, {"tp": [1]}), "base", "expected a Scenario"),
    (lambda tmp: ll.sweep(BASE, {"tp": [1]}, slo={"ttft_ms": 5}), "slo", "expected an SLO"),
    (lambda tmp: ll.sweep(BASE, {"tp": [1]}, save_to=tmp), "save_to", "is a folder"),
    (lambda tmp: ll.capacity(BASE, {"ttft_ms": 500}), "slo", "expected an SLO"),
    (lambda tmp: ll.capacity(BASE, None), "slo", "expected an SLO"),
    (lambda tmp: ll.capacity(BASE, SLO(ttft_ms=500), {"rate": [1.0, 2.0]}), "rate", "sets the rate itself"),
    (lambda tmp: ll.capacity(BASE, SLO(ttft_ms=500), [{"tp": 1}, {"rate": 2.0}]), "rate", "sets the rate itself"),
])
def test_sweep_and_capacity_arguments_are_named_before_any_point_runs(tmp_path, call, where, says):
    """These ran every point and then failed (a dict SLO, a folder to save to) or returned identical rows
    (a capacity grid over the rate it searches)."""
    with pytest.raises(InputError) as exc:
        call(tmp_path)
    assert exc.value.where == where and says in exc.value.message


def test_a_point_listed_twice_is_refused_like_a_value_listed_twice():
    with pytest.raises(InputError, match=r"^grid: points\[2\]: is point 0 again: each point runs once"):
        expand(BASE, [{"tp": 1}, {"tp": 2}, {"tp": 1}])


def test_a_client_whose_cluster_has_no_workers_is_named_not_waited_on(ref, monkeypatch):
    """design_space.ipynb with -p workers 0 built LocalCluster(n_workers=0) and its sweep waited forever."""
    from distributed import Client, LocalCluster

    monkeypatch.setattr(sweeps.cluster, "WORKER_WAIT_S", 1.0)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        with alarm(60), pytest.raises(InputError, match="client: the dask client's cluster has no workers"):
            ll.sweep(BASE, {"tp": [1]}, client=client, reference_dir=ref, progress=False)


def test_a_sweep_where_every_point_failed_says_why_when_a_metric_is_asked_for(ref, client, caplog):
    """design_space.ipynb with tp_values [3] ended in xarray's KeyError: 'goodput'; the reason sat in ds.error."""
    from llmss_lab.views import design

    with caplog.at_level("WARNING", logger="llmss_lab.sweeps"):
        ds = ll.sweep(BASE, {"tp": [3]}, client=client, reference_dir=ref, slo=SLO(ttft_ms=500, tpot_ms=50),
                      progress=False)
    assert "1 of 1 sweep points failed; the first: grid: point 0 (tp=3): tp: tp_size 3 does not divide" in caplog.text
    why = r"no point ran: 1 failed, the first with: grid: point 0 \(tp=3\): tp: tp_size 3"
    with pytest.raises(InputError, match=why):
        design.heatmap(ds, "goodput", "tp", "rate")
    with pytest.raises(InputError, match=why):
        ll.pareto_front(ds, maximize=["goodput"], minimize=[])


def test_a_mistyped_field_gets_a_suggestion(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("max_num_seq: [8, 16]\n")
    with pytest.raises(InputError,
                       match=r"g\.yaml: max_num_seq: not a scenario field \(did you mean 'max_num_seqs'\?\)"):
        sweeps.read_grid(grid)
    with pytest.raises(InputError, match=r"max_num_seq: unknown scenario key\(s\) \['max_num_seq'\] \(did you mean"):
        ll.Scenario.from_dict({"max_num_seq": 8})


def test_the_progress_bar_says_what_it_waits_for_before_the_first_point(ref, capsys, monkeypatch):
    """A local cluster takes seconds to start; the bar said nothing meanwhile (it opened only after)."""
    from contextlib import contextmanager

    @contextmanager
    def slow_start(n_workers):
        raise ClusterStartError("no cluster today")
        yield
    monkeypatch.setattr(sweeps.cluster, "local_client", slow_start)
    with pytest.raises(ClusterStartError):
        ll.sweep(BASE, {"tp": [1]}, reference_dir=ref, progress=True)
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        ll.sweep(BASE, {"tp": [1]}, client=f"tcp://127.0.0.1:{free_port()}", reference_dir=ref, progress=True)
    err = capsys.readouterr().err
    assert "sweep (starting dask workers)" in err and "sweep (connecting to dask)" in err
    assert err.split("\r")[-2:] == [" " * len(err.split("\r")[-2]), ""]   # the stopped bar was wiped, not left


def test_conflicting_sweep_flags_are_refused_not_one_of_them_dropped(ref, tmp_path, monkeypatch, capsys):
    """`--resume --overwrite` resumed, `--workers` beside a scheduler and `--slo-quantile` without a limit were
    dropped without a word."""
    from llmss_lab.cli import main

    scen, grid, out = BASE.save(tmp_path / "s.json"), tmp_path / "g.yaml", tmp_path / "sw.nc"
    grid.write_text("max_num_seqs: [4, 8]\n")
    monkeypatch.setattr(sweeps, "sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    common = ["sweep", str(scen), "--grid", str(grid), "--out", str(out), "--reference-dir", str(ref), "-q"]
    assert main([*common, "--resume", "--overwrite"]) == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err
    assert main([*common, "--slo-quantile", "0.5"]) == 2
    assert capsys.readouterr().err.strip().endswith("command line: --slo-quantile: is the quantile of an SLO limit; "
                                                    "give --slo-ttft-ms and/or --slo-tpot-ms too")
    for call in (lambda: ll.sweep(BASE, {"tp": [1]}, client="tcp://127.0.0.1:1", n_workers=2, reference_dir=ref),
                 lambda: ll.capacity(BASE, SLO(ttft_ms=100), client="tcp://127.0.0.1:1", n_workers=2,
                                     reference_dir=ref)):
        with pytest.raises(InputError, match="sizes the local cluster") as exc:
            call()
        assert exc.value.where == "--workers (n_workers)"


@pytest.mark.parametrize("grid,match", [
    ({"hardware": ["RTXPRO6000", "RTXPRO600"]},
     r"point 1 \(hardware='RTXPRO600'\): hardware: no profile and no hardware spec .*did you mean 'RTXPRO6000'"),
    ([{"model": "meta-llama/Llama-3.1-8b"}], r"point 0 \(model='meta-llama/Llama-3.1-8b'\): model: no model config "
                                             r".*did you mean 'meta-llama/Llama-3.1-8B'"),
])
def test_a_slip_in_a_model_or_hardware_name_stops_the_sweep_before_any_point_runs(ref, grid, match):
    """It became a failed point at run time, after the points before it ran, while a slip in a router's name
    stopped the sweep at once."""
    with pytest.raises(InputError, match=match):
        expand(BASE, grid, reference_dir=ref)
    dims, points = expand(BASE, {"hardware": ["RTXPRO6000", "B200"]}, reference_dir=ref)   # a spec, no profile
    assert [p["hardware"] for p in points] == ["RTXPRO6000", "B200"]


def test_a_grid_over_the_bin_width_is_refused_naming_the_grid_file_and_key(ref, tmp_path, monkeypatch, capsys):
    """bin_s widens a run's time series and power bins, none of which a sweep keeps: every point's metrics came
    out the same (35 metrics, the energy 6e-14 apart at 1, 0.25 and 60 s) and each point was marked ok. The
    scenario's own bin_s still sets its runs' bins."""
    from llmss_lab.cli import main

    for grid, where in (({"bin_s": [1, 60]}, "bin_s"), ([{"rate": 1.0}, {"rate": 2.0, "bin_s": 60}], "points[1].bin_s")):
        with pytest.raises(InputError, match="is not a sweep axis") as exc:
            expand(BASE, grid, "g.yaml")
        assert (exc.value.source, exc.value.where) == ("g.yaml", where)
    dims, points = expand(BASE.replace(bin_s=60.0), {"max_num_seqs": [8, 16]})
    assert [p["bin_s"] for p in points] == [60.0, 60.0]
    scen, grid = BASE.save(tmp_path / "s.json"), tmp_path / "g.yaml"
    grid.write_text("max_num_seqs: [4, 8]\nbin_s: [1, 60]\n")
    monkeypatch.setattr(sweeps.run, "run_points", lambda *a, **k: pytest.fail("the sweep ran"))
    for command in ("sweep", "capacity"):
        argv = [command, str(scen), "--grid", str(grid), "--reference-dir", str(ref), "-q", "--slo-ttft-ms", "500",
                *(["--out", str(tmp_path / "sw.nc")] if command == "sweep" else [])]
        assert main(argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"llmss: error: {grid}: bin_s: is not a sweep axis:"), last


def test_the_engine_fields_of_the_run_flags_are_sweep_axes_and_the_efficiency_fit_is_not(ref):
    """num_gpu_blocks, max_model_len, long_prefill_token_threshold and reserve_full_isl set the engine served, as
    max_num_seqs does; an efficiency file calibrates the latency model, and a point would keep only its name."""
    grid = {"num_gpu_blocks": [0, 100], "max_model_len": [0, 512], "long_prefill_token_threshold": [0, 64],
            "reserve_full_isl": [True, False]}
    dims, points = expand(BASE, grid, reference_dir=ref)
    assert list(dims) == list(grid) and len(points) == 16 and points[-1]["num_gpu_blocks"] == 100
    assert {p["reserve_full_isl"] for p in points} == {True, False}
    for grid, where in (({"efficiency_file": ["a.yaml", "b.yaml"]}, "efficiency_file"),
                        ([{"rate": 1.0}, {"efficiency_file": "a.yaml"}], "points[1].efficiency_file")):
        with pytest.raises(InputError, match="is not a sweep axis: it calibrates the analytical model") as exc:
            expand(BASE, grid, "g.yaml")
        assert (exc.value.source, exc.value.where) == ("g.yaml", where)


def test_a_scenario_given_as_the_grid_is_named_for_what_it_looks_like():
    """`llmss sweep s.json --grid s.json` said only "num_requests: must be a non-empty list of values, got 30"."""
    with pytest.raises(InputError, match=r"^s.json: num_requests: must be a non-empty list of values, got 30; no field "
                                         r"of the grid has a list: a scenario\? a grid gives each field its values, "
                                         r"num_requests: \[30, \.\.\.\]$"):
        sweeps.expand(ll.Scenario(), {"num_requests": 30, "rate": 4.0}, "s.json")
    with pytest.raises(InputError, match=r"rate: must be a non-empty list of values, got 4.0$"):   # a grid's slip
        sweeps.expand(ll.Scenario(), {"max_num_seqs": [8, 16], "rate": 4.0}, "g.yaml")


@pytest.mark.parametrize("save", [False, True])
@pytest.mark.parametrize("grid", [5, 2.5, None, True])
def test_a_grid_of_no_kind_is_named_by_sweep_as_by_expand(grid, save, tmp_path, monkeypatch):
    """sweep(base, 5, save_to=...) raised a bare TypeError ('int' object is not iterable) from listing the files its
    grid names, before expand could say what a grid is; so without save_to once the sweep's Dataset recorded them."""
    monkeypatch.setattr(sweeps.run, "run_points", lambda *a, **k: pytest.fail("the sweep ran"))
    with pytest.raises(InputError, match="a grid is a mapping"):
        ll.sweep(BASE, grid, save_to=tmp_path / "s.nc" if save else None, progress=False)
