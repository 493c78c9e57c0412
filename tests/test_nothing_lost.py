"""Nothing lost: every result file is written to a temporary name and renamed, so a crash or an
interruption while writing (or while simulating) leaves the previous file as it was."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import xarray as xr

import llmss_lab as ll
from llmss_lab.cli import main
from llmss_lab.errors import WriteFailed
from llmss_lab.figures import _write_tsv
from llmss_lab.results import netcdf
from llmss_lab.sweeps import save as save_sweep

BASE = ll.Scenario(num_requests=6)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def previous(ref, tmp_path):
    path = BASE.run(ref).save(tmp_path / "r.nc")
    return path, digest(path)


def test_a_crash_while_writing_results_keeps_the_previous_file(ref, previous, monkeypatch):
    path, before = previous
    res = BASE.replace(num_requests=9).run(ref)
    calls = {"n": 0}
    real = netcdf._write_group

    def crash_on_second_group(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(netcdf, "_write_group", crash_on_second_group)
    with pytest.raises(WriteFailed, match=r"r\.nc: cannot write the file \(disk full\)"):
        res.save(path)
    assert digest(path) == before and not list(path.parent.glob("*.part"))
    assert ll.load_results(path).summary()["completed"] == 6


@pytest.fixture()
def full_disk(tmp_path, monkeypatch):
    """tmp_path/full as a full disk, as netCDF reports one: 'NetCDF: HDF error', no errno."""
    import os
    from types import SimpleNamespace

    full = tmp_path / "full"
    full.mkdir()
    real_write, real_group, real_statvfs = xr.Dataset.to_netcdf, netcdf._write_group, os.statvfs

    def write(self, path=None, *args, **kwargs):   # a sweep's file
        if path is not None and str(path).startswith(str(full)):
            raise RuntimeError("NetCDF: HDF error")
        return real_write(self, path, *args, **kwargs)

    def write_group(group, *args, **kwargs):       # a run's
        if group.filepath().startswith(str(full)):
            raise RuntimeError("NetCDF: HDF error")
        return real_group(group, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", write)
    monkeypatch.setattr(netcdf, "_write_group", write_group)
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=0, f_blocks=1 << 20, f_bavail=0, f_frsize=4096)
                        if str(p).startswith(str(full)) else real_statvfs(p))
    return full


def test_a_failed_write_on_a_pseudo_or_read_only_file_system_is_not_called_a_full_disk(tmp_path):
    """/proc has no blocks, so it read as full: "cannot write (no space left on the device)"."""
    from llmss_lab.files import _why
    denied = PermissionError(13, "Permission denied")
    assert _why(denied, Path("/proc")) == "Permission denied"
    assert _why(denied, tmp_path) == "Permission denied"


@pytest.mark.parametrize("command", ["run", "example"])
def test_results_a_full_disk_refuses_are_rescued_and_the_cause_named(ref, full_disk, capsys, command):
    """Was a bare 'RuntimeError: NetCDF: HDF error' traceback, and the results were lost."""
    args = ([str(ref / "configs/cluster/single_node_single_instance.json"), "--num-requests", "5"]
            if command == "run" else [])
    code = main([command, *args, "--reference-dir", str(ref), "--out", str(full_disk / "x.nc"), "-q"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "x.nc: --out: cannot write the file (no space left on the device)" in last, last
    rescue = Path(last.rsplit("saved to ", 1)[1])
    try:
        assert ll.load_results(rescue).summary()["completed"] > 0
    finally:
        rescue.unlink()


def test_a_capacity_search_prints_its_answer_and_why_points_failed_before_a_failing_write(ref, full_disk, capsys,
                                                                                          tmp_path):
    scen = BASE.replace(num_requests=8).save(tmp_path / "s.json")
    grid = tmp_path / "g.yaml"
    grid.write_text("tp: [1, 3]\n")    # TP 3 does not divide the model: that point fails
    code = main(["capacity", str(scen), "--grid", str(grid), "--slo-ttft-ms", "2000", "--rate-min", "1",
                 "--rate-max", "4", "--reference-dir", str(ref), "--workers", "1", "--out", str(full_disk / "c.nc"),
                 "-q"])
    out, err = capsys.readouterr()
    assert code == 2 and "max_rate" in out and "failed: {'tp': 3}: " in err and "tp_size" in err, err
    assert "c.nc: cannot write the file (no space left on the device)" in err.strip().splitlines()[-1]


def test_an_interrupted_cli_run_keeps_the_previous_file(ref, previous, monkeypatch, capsys):
    path, before = previous
    import llmss_lab.api as api

    real = api.simulator.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.simulator, "run", interrupted)
    code = main(["run", str(ref / "configs/cluster/single_node_single_instance.json"), "--reference-dir", str(ref),
                 "--num-requests", "5", "--out", str(path), "-q"])
    none = "llmss: interrupted before the run's results were ready, so none were kept\n"
    assert code == 130 and capsys.readouterr().err == none
    assert digest(path) == before and not list(path.parent.glob("*.part"))
    assert main(["example", "--reference-dir", str(ref), "--out", str(path), "-q"]) == 130
    monkeypatch.setattr(api.simulator, "run", real)
    assert capsys.readouterr().err == none
    assert digest(path) == before


def test_scenario_sweep_and_figure_files_are_replaced_whole(tmp_path, monkeypatch):
    scenario = BASE.save(tmp_path / "s.json")
    before = digest(scenario)
    monkeypatch.setattr("os.replace", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):       # interrupted at the last moment: the new text is written
        BASE.replace(tp=2).save(scenario)
    monkeypatch.undo()
    assert digest(scenario) == before and not list(tmp_path.glob("*.part"))

    ds = xr.Dataset({"status": ("point", ["ok"]), "scenario": ("point", ["{}"])})
    sweep_file = save_sweep(ds, tmp_path / "sweep.nc")
    before = digest(sweep_file)
    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda self, *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(WriteFailed):
        save_sweep(ds, sweep_file)
    monkeypatch.undo()
    assert digest(sweep_file) == before and not list(tmp_path.glob("*.part"))

    tsv = tmp_path / "figure_9" / "parsed" / "SD_throughput.tsv"
    _write_tsv(tsv, ["time_s", "throughput"], [[0, 0.0], [1, 10.0]])
    before = digest(tsv)

    class Boom(list):
        def __iter__(self):
            yield [0, 0.0]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write_tsv(tsv, ["time_s", "throughput"], Boom())
    assert digest(tsv) == before and not list(tsv.parent.glob("*.part"))


def test_a_write_follows_a_link_and_never_replaces_a_device_or_pipe(tmp_path):
    """Renaming the finished file over the target cut a link and, as root, turned /dev/full into a file."""
    import os
    import stat

    from llmss_lab.errors import InputError
    from llmss_lab.files import check_writable_file, write_text

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for call in (lambda: write_text(fifo, "x"), lambda: check_writable_file(fifo)):
        with pytest.raises(InputError, match="not a regular file"):
            call()
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_an_interrupted_sweep_says_its_file_holds_the_points_saved(tmp_path, monkeypatch, capsys):
    """Was "interrupted; nothing was written" while the file held the points finished so far."""
    import llmss_lab.sweeps as sweeps

    scen, grid, out = BASE.save(tmp_path / "s.json"), tmp_path / "g.yaml", tmp_path / "sw.nc"
    grid.write_text("max_num_seqs: [4, 8]\n")

    def saves_then_interrupted(*args, **kwargs):
        out.write_text("points")
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps, "sweep", saves_then_interrupted)
    assert main(["sweep", str(scen), "--grid", str(grid), "--out", str(out), "-q"]) == 130
    assert f"{out} holds the points saved so far (run again with --resume to go on)" in capsys.readouterr().err

    monkeypatch.setattr(sweeps, "sweep", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    (tmp_path / "old.nc").write_text("an earlier sweep")
    import os
    os.utime(tmp_path / "old.nc", (0, 0))
    assert main(["sweep", str(scen), "--grid", str(grid), "--out", str(tmp_path / "old.nc"), "-q"]) == 130
    assert "interrupted; no file was left half-written" in capsys.readouterr().err


CTRL_C_INSIDE_A_WRITE = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal, whatever the test runner inherited
import xarray as xr
import xarray.backends.locks as locks
import llmss_lab as ll
from llmss_lab.results import netcdf
from llmss_lab.sweeps import save as save_sweep

real, real_group = locks.acquire, netcdf._write_group

def ctrl_c_while_the_file_lock_is_held(lock, blocking=True):
    got = real(lock, blocking)
    if isinstance(lock, locks.SerializableLock):   # one of netCDF's process-wide locks
        locks.acquire = real
        os.kill(os.getpid(), signal.SIGINT)
    return got

def ctrl_c_between_groups(*args, **kwargs):   # a run's file is written without xarray's locks
    netcdf._write_group = real_group
    os.kill(os.getpid(), signal.SIGINT)
    return real_group(*args, **kwargs)

res = ll.Scenario(num_requests=6).run(sys.argv[1])
ds = xr.Dataset({"status": ("point", ["ok"]), "scenario": ("point", ["{}"])})
for name, write in (("r.nc", res.save), ("sweep.nc", lambda p: save_sweep(ds, p))):
    path = os.path.join(sys.argv[2], name)
    netcdf._write_group, locks.acquire = ctrl_c_between_groups, ctrl_c_while_the_file_lock_is_held
    try:
        write(path)
    except KeyboardInterrupt:
        print("interrupted after", name, "written" if os.path.exists(path) else "lost", flush=True)
    write(path)   # what a sweep does when interrupted: save its points once more
print("done", flush=True)
"""


def test_ctrl_c_during_a_netcdf_write_neither_hangs_nor_loses_the_file(ref, tmp_path):
    """A Ctrl-C landing while xarray held its file lock left the lock taken, and the next write (an interrupted
    sweep saves its points) waited for it for ever: `llmss sweep` hung on Ctrl-C. The write now finishes and the
    interrupt surfaces after it; so it does in a run's file, which netCDF4 writes without xarray's locks."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", CTRL_C_INSIDE_A_WRITE, str(ref), str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a netCDF write after a Ctrl-C inside the previous one hung")
    assert done.stdout.split("\n")[:3] == ["interrupted after r.nc written", "interrupted after sweep.nc written",
                                           "done"], done.stderr
    assert ll.load_results(tmp_path / "r.nc").summary()["completed"] == 6
    assert not list(tmp_path.glob("*.part"))


def test_a_local_sweep_worker_leaves_ctrl_c_to_the_sweep():
    """A terminal's Ctrl-C reaches the whole process group: each dask worker of `llmss sweep` died of it printing a
    traceback of some 40 lines, while the sweep stops its workers itself (and says where its points are)."""
    import os
    import signal
    import time

    from llmss_lab.sweeps import local_client

    # workers inherit the runner's SIGINT disposition: a runner started in the background of a script ignores
    # Ctrl-C, and so would its workers without the preload hook; start them as a terminal would
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with local_client(1) as client:
            (pid,) = client.run(os.getpid).values()
            os.kill(pid, signal.SIGINT)
            time.sleep(3)
            assert list(client.run(os.getpid).values()) == [pid]
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_while_dask_starts_its_workers_waits_for_them_then_closes_the_cluster(monkeypatch):
    """A Ctrl-C while LocalCluster started its workers left a half-started cluster that nothing could close:
    dask's exit hook then failed on it ("AssertionError: Status.init") after the sweep said it was interrupted."""
    import os
    import signal

    import distributed

    from llmss_lab.sweeps import local_client

    events = []

    class Starting:
        def __init__(self, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)   # the user presses Ctrl-C while the workers start
            events.append("started")

        def close(self):
            events.append("cluster closed")

    monkeypatch.setattr(distributed, "LocalCluster", Starting)
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("no client after a Ctrl-C"))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with local_client(2):
                pytest.fail("the sweep went on after a Ctrl-C")
    finally:
        signal.signal(signal.SIGINT, before)
    assert events == ["started", "cluster closed"]


@pytest.mark.parametrize("loading", ["build_parser", "_run_settings"])
def test_ctrl_c_while_the_cli_loads_is_one_line(monkeypatch, capsys, loading):
    """A Ctrl-C in the first second of `llmss ...`, while the parser loads the kernel for its choices, printed a
    traceback of numpy's import machinery; `run` loads them while it parses (``_run_settings``), not when the
    parser is built."""
    import llmss_lab.cli as cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, loading, interrupted)
    try:
        code = main(["run", "x.json"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C left main() as a traceback")
    assert code == 130
    assert capsys.readouterr().err == "llmss: interrupted\n"
