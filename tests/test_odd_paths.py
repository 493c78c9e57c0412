"""Paths that are there but not as a file: a loop of links, a dangling link, a pipe, a path through a file, a name
too long, a folder closed to the user. Each command that reads or writes one says which it is in one line."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from llmss_lab.cli import main
from llmss_lab.errors import InputError

from .conftest import alarm, linked_root

GOOD_CLUSTER = "configs/cluster/single_node_single_instance.json"


@pytest.fixture
def odd(tmp_path) -> dict[str, tuple[Path, str]]:
    """Each odd path and the words its message must hold."""
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "afile").write_text("x")
    return {"loop": (tmp_path / "loop1", "a loop of symbolic links"),
            "dangling": (tmp_path / "dangling", "a symbolic link to nowhere, which does not exist"),
            "through a file": (tmp_path / "afile" / "x.nc", f"{tmp_path / 'afile'}"),
            "too long": (tmp_path / ("a" * 300 + ".nc"), "the name is too long for the file system")}


def commands(ref: Path, p: str, out: Path) -> dict[str, list[str]]:
    cluster, r = str(ref / GOOD_CLUSTER), ["--reference-dir", str(ref)]
    return {"cluster": ["run", p, *r, "-q"], "trace": ["run", cluster, "--workload", p, *r, "-q"],
            "results": ["summary", p], "sweep scenario": ["sweep", p, "--grid", p, "--out", str(out), *r],
            "capacity scenario": ["capacity", p, "--slo-ttft-ms", "100", *r],
            "run scenario": ["run", "--scenario", p, *r],
            "measurement": ["validate", p, *r], "reference": ["run", cluster, "--reference-dir", p, "-q"],
            "efficiency": ["run", cluster, "--latency", "analytical", "--efficiency", p, *r, "-q"],
            "--out file": ["example", "--out", p, *r, "-q"],
            "--out folder": ["figure-data", "6", "--out", p, *r]}


@pytest.mark.parametrize("kind", ["loop", "dangling", "through a file", "too long"])
def test_an_odd_path_is_named_for_what_it_is(kind, odd, ref, tmp_path, capsys):
    """A loop of links and a path through a file were 'file does not exist', a name too long a traceback."""
    path, words = odd[kind]
    for what, argv in commands(ref, str(path), tmp_path / "s.nc").items():
        with alarm(20):
            code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (what, err)
        assert words in err and (f"{path}" in err or kind == "through a file"), (what, err)
        assert kind != "through a file" or "is a file, not a folder" in err, (what, err)
    assert not (tmp_path / "s.nc").exists()


def test_a_dangling_link_as_out_is_refused_by_every_command(ref, tmp_path, capsys):
    """A link whose target does not exist was written through: `--out old.nc`, a stale link, made a file at its
    old target, wherever that was. Every command with --out refuses it, naming the link and where it points."""
    import llmss_lab as ll

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scenario = ll.Scenario(num_requests=3).save(tmp_path / "s.json")
    (tmp_path / "g.yaml").write_text("max_num_seqs: [4]\n")
    r = ["--reference-dir", str(ref)]
    for n, argv in enumerate((["run", str(ref / GOOD_CLUSTER), "--num-requests", "3", *r, "-q"], ["example", *r, "-q"],
                              ["sweep", str(scenario), "--grid", str(tmp_path / "g.yaml"), *r, "-q"],
                              ["capacity", str(scenario), "--slo-ttft-ms", "100", *r, "-q"], ["profile-fit", *r],
                              ["figure-data", "6", *r], ["figures", "6", *r, "-q"])):
        link = tmp_path / f"out{n}.nc"
        link.symlink_to(elsewhere / f"made{n}.nc")
        with alarm(20):
            code = main([*argv, "--out", str(link)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (argv[0], err)
        assert f"{link}: --out: a symbolic link to {elsewhere / f'made{n}.nc'}, which does not exist" in err, err
    run = ll.simulate(ref / GOOD_CLUSTER, "workloads/example_trace.jsonl", num_requests=2, reference_dir=ref)
    for write in (ll.Scenario().save, run.save):
        link = tmp_path / "api.nc"
        link.unlink(missing_ok=True)
        link.symlink_to(elsewhere / "api.nc")
        with pytest.raises(InputError, match=rf"^{link}: a symbolic link to {elsewhere / 'api.nc'}, which does not"):
            write(link)
    assert not list(elsewhere.iterdir())


def test_a_pipe_is_named_and_never_read(odd, ref, tmp_path, capsys):
    """Nothing writes to the pipe: a reader that opened it would wait for ever (the alarm fails the test)."""
    fifo = tmp_path / "fifo"
    for what, argv in commands(ref, str(fifo), tmp_path / "s.nc").items():
        with alarm(20):
            code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and str(fifo) in err, (what, err)
        assert any(w in err.split(str(fifo))[1] for w in ("pipe", "not a folder")), (what, err)


def test_no_permission_is_said_so(tmp_path, monkeypatch):
    """A folder closed to the user (root, who runs these tests, passes every permission, so stat is made to
    refuse as it would)."""
    from llmss_lab.files import absent

    real = Path.stat

    def closed(self, *a, **k):
        if self.name == "c.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "stat", closed)
    assert absent(tmp_path / "c.json") == "no permission to reach it (a folder on its way is closed to you)"
    assert absent(tmp_path) is None and absent(tmp_path / "gone") == "file does not exist"


def test_an_out_in_a_system_folder_says_it_takes_no_files(capsys):
    """/proc answers a new file with ENOENT: 'cannot write a file in this folder (No such file or directory)'
    sent the user looking for a folder that is there."""
    for argv in (["example", "--out", "/proc/llmss.nc", "-q"], ["figure-data", "6", "--out", "/proc/llmss-fd/x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "takes no new files" in err and "No such file" not in err and len(err.splitlines()) == 1, err


def test_fetch_reference_into_the_reference_data_is_refused_before_a_folder_is_made(tmp_path):
    """--dest inside a reference root wrote a nested copy (and its folders) into the data runs read."""
    from llmss_lab.errors import InputError
    from llmss_lab.reference import fetch_reference

    root = tmp_path / "reference"
    (root / "configs").mkdir(parents=True)
    with pytest.raises(InputError, match=rf"^{root / 'copy'}: --dest: is inside the reference data \({root}\)"):
        fetch_reference(root / "copy", opener=lambda url: b"{}")
    assert sorted(p.name for p in root.iterdir()) == ["configs"]


@pytest.fixture
def closed(monkeypatch) -> Callable[[Path], tuple[str, ...]]:
    """``closed(path)`` makes a file or folder unreadable, as ``chmod 000`` does for a user who is not root (the
    tests run as root, whom no mode stops): the file cannot be opened; the folder cannot be listed, nor anything
    in it reached. Returns the names the path goes by (as given, and with its links resolved)."""
    import builtins
    import io

    files: set[str] = set()
    folders: set[str] = set()

    def name(p) -> str | None:
        return None if isinstance(p, int) else os.path.abspath(os.fsdecode(p))

    def inside(p) -> bool:
        return (n := name(p)) is not None and any(n.startswith(f + os.sep) for f in folders)

    def refused(p):
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))

    def guard(real, hit):
        def call(p=".", *a, **k):
            return refused(p) if hit(p) else real(p, *a, **k)
        return call

    opened = guard(builtins.open, lambda p: name(p) in files or inside(p))
    for module, fn in ((builtins, "open"), (io, "open")):
        monkeypatch.setattr(module, fn, opened)
    monkeypatch.setattr(os, "open", guard(os.open, lambda p: name(p) in files or inside(p)))
    for fn in ("stat", "lstat"):
        monkeypatch.setattr(os, fn, guard(getattr(os, fn), inside))
    for fn in ("scandir", "listdir"):
        monkeypatch.setattr(os, fn, guard(getattr(os, fn), lambda p: name(p) in folders or inside(p)))

    def close(path: Path) -> tuple[str, ...]:
        for module in [m for n, m in sys.modules.items() if n.startswith("llmss_lab.")]:   # read it, not a cache
            for fn in vars(module).values():
                if hasattr(fn, "cache_clear") and getattr(fn, "__module__", "") == module.__name__:
                    fn.cache_clear()
        names = tuple(dict.fromkeys((os.path.abspath(path), os.path.realpath(path))))
        (folders if path.is_dir() else files).update(names)
        return names
    return close


MEASURED = "measurements/RTXPRO6000/Llama-3.1-8B"
PROFILE = "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16"


@pytest.mark.parametrize("what", ["cluster", "cluster folder", "trace", "scenario", "scenario folder", "grid",
                                  "profile", "profile tp1", "profile table", "profile skew fit", "measurement",
                                  "measurement file", "model config", "reference"])
def test_an_input_closed_to_the_user_is_named_in_one_line(what, ref, tmp_path, capsys, closed):
    """A profile or measurement folder closed to the user ended in Python's PermissionError traceback (pathlib's
    is_file raises it before 3.13); the files named on the command line said 'cannot read: Permission denied'."""
    import llmss_lab as ll

    (tmp_path / "scen").mkdir()
    scenario = ll.Scenario(num_requests=3).save(tmp_path / "scen" / "s.json")
    grid = tmp_path / "g.yaml"
    grid.write_text("max_num_seqs: [4]\n")
    r, cluster, trace = ["--reference-dir", str(ref)], ref / GOOD_CLUSTER, ref / "workloads/example_trace.jsonl"
    run = ["run", str(cluster), "--workload", str(trace), "--num-requests", "3", "-q", *r]
    sweep = ["sweep", str(scenario), "--grid", str(grid), "--out", str(tmp_path / "o.nc"), "-q", *r]
    validate = ["validate", str(ref / MEASURED), *r]
    path, commands = {
        "cluster": (cluster, [run]), "cluster folder": (cluster.parent, [run]), "trace": (trace, [run]),
        "scenario": (scenario, [sweep, ["capacity", str(scenario), "--slo-ttft-ms", "100", "-q", *r],
                                ["run", "--scenario", str(scenario), "-q", *r]]),
        "scenario folder": (scenario.parent, [sweep, ["run", "--scenario", str(scenario), "-q", *r]]),
        "grid": (grid, [sweep]),
        "profile": (ref / PROFILE, [run]), "profile tp1": (ref / PROFILE / "tp1", [run]),
        "profile table": (ref / PROFILE / "tp1/dense.csv", [run]),
        "profile skew fit": (ref / PROFILE / "tp1/skew_fit.csv", [run]),
        "measurement": (ref / MEASURED, [validate]),
        "measurement file": (ref / MEASURED / "vllm/meta.json", [validate]),
        "model config": (ref / "configs/model/meta-llama/Llama-3.1-8B.json", [run]),
        "reference": (ref / "configs", [run])}[what]
    names = closed(path)
    for argv in commands:
        with alarm(20):
            code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("llmss: error: "), (argv[0], err)
        assert any(f"error: {n}" in err for n in names), (argv[0], err)
        assert "no permission" in err or "Permission denied" in err, err
    assert not (tmp_path / "o.nc").exists()


def test_a_profile_closed_to_the_user_is_an_input_error_in_python_too(ref, closed):
    import llmss_lab as ll

    names = closed(ref / PROFILE)
    with pytest.raises(InputError, match="no permission to reach it") as exc:
        ll.simulate(ref / GOOD_CLUSTER, "workloads/example_trace.jsonl", reference_dir=ref, num_requests=2)
    assert str(exc.value.source).startswith(names), exc.value
    with pytest.raises(InputError, match="no permission to reach it"):
        ll.Scenario(num_requests=2).run(ref)


@pytest.mark.parametrize("what", ["profiles", "profile", "model configs", "reference"])
def test_a_closed_folder_is_named_where_pathlib_answers_false(what, ref, capsys, closed, monkeypatch):
    """From Python 3.13 Path.is_file, is_dir and exists answer False where a folder on the way is closed: the
    profiles/ folder closed then ran the analytical model in the profile's place (a warning, exit 0), a closed
    model config folder said 'no model config', a closed reference folder 'not a reference folder'. Emulated here
    on any Python."""
    def answering_false(test):
        def call(self, *args, **kwargs):
            try:
                return test(self, *args, **kwargs)
            except OSError:
                return False
        return call

    for name in ("is_file", "is_dir", "exists"):
        monkeypatch.setattr(Path, name, answering_false(getattr(Path, name)))
    path = {"profiles": ref / "profiles", "profile": ref / PROFILE, "model configs": ref / "configs/model",
            "reference": ref}[what]
    names = closed(path)
    code = main(["run", str(ref / GOOD_CLUSTER), "--workload", "workloads/example_trace.jsonl", "--num-requests", "3",
                 "--reference-dir", str(ref), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and any(f"error: {n}/" in err for n in names), err
    assert "no permission to reach it" in err, err


def test_results_and_scenarios_are_not_saved_inside_the_reference_data(ref, tmp_path, monkeypatch):
    """`llmss run --out` refused the reference data, but ``Results.save`` and ``Scenario.save`` wrote there without a
    word: the run's root is recorded with its results, and a scenario keeps out of the root a run would read."""
    import llmss_lab as ll

    root = linked_root(ref, tmp_path / "root")
    res = ll.Scenario(num_requests=3).run(root)
    for out in (root / "run.nc", root / "run.csv"):
        with pytest.raises(InputError, match=rf"^{out}: path: is inside the reference data \({root}\), whose files"):
            res.save(out)
    monkeypatch.setenv("LLMSS_REFERENCE_DIR", str(root))
    with pytest.raises(InputError, match=rf"^{root / 's.json'}: path: is inside the reference data \({root}\)"):
        ll.Scenario().save(root / "s.json")
    assert sorted(p.name for p in root.iterdir()) == ["configs", "profiles", "workloads"]
    assert ll.Results.load(res.save(tmp_path / "run.nc")).attrs["reference_dir"] == str(root)
