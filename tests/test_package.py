"""The package surface: every public name resolves, and importing the package stays light."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import llmss_lab


def test_every_public_name_resolves():
    for name in llmss_lab.__all__:
        assert getattr(llmss_lab, name) is not None, name
    assert llmss_lab.load_results == llmss_lab.Results.load


def test_help_of_every_public_name_says_what_it_is():
    """The config specs, Workload and Scenario had only the text dataclass makes from the signature (Scenario's
    read "Scenario(*args, **kwargs)", from the __new__ that names mistyped fields), load_results none at all."""
    import inspect

    for name in sorted(set(llmss_lab.__all__) - {"__version__"}):
        obj = getattr(llmss_lab, name)
        doc = inspect.getdoc(obj)
        assert doc and not doc.startswith(f"{obj.__name__}("), name
    for cls, methods in ((llmss_lab.Results, ("summary", "save", "load", "request_table")),
                         (llmss_lab.Scenario, ("run", "save", "load", "replace", "cluster", "workload", "engine"))):
        for method in methods:
            assert inspect.getdoc(getattr(cls, method)), (cls.__name__, method)
    fields = list(inspect.signature(llmss_lab.Scenario).parameters)
    assert fields[:2] == ["hardware", "model"] and "seed" in fields


def test_import_and_help_do_not_load_the_kernel_or_xarray():
    code = ("import sys, llmss_lab, llmss_lab.cli; "
            "print(sorted(m for m in ('xarray', 'numpy', 'llmss_lab.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_light_commands_do_not_load_numpy():
    """`llmss --help` built `run`'s parser in full, importing the kernel and numpy for its choices (~0.4 s)."""
    code = ("import sys, contextlib, io, llmss_lab.cli as cli\n"
            "for argv in (['--help'], ['summary', '--help'], ['--version']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert cli.main(argv) == 0, argv\n"
            "print(sorted(m for m in ('numpy', 'xarray', 'llmss_lab.kernel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_api_does_not_load_the_downloader():
    """Only fetch-reference downloads: urllib.request (http.client, ssl) need not load with every run."""
    code = "import sys, llmss_lab.api; print('urllib.request' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        llmss_lab.no_such_name


# the rooms, lowest first: a module may import its own room and the rooms before it, never one after
# (modules at the package's top level that are no room: errors, files, provenance, ctrl_c, the base everyone uses)
ROOMS = [("config",), ("workload",), ("latency",), ("kernel",), ("results",)]
BASE = {"errors", "files", "provenance", "ctrl_c", "config", "__version__"}


def _imports(path, pkg_parts):
    """The llmss_lab modules a file imports (relative imports resolved), each as its top-level name."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(pkg_parts[:len(pkg_parts) - (node.level - 1)])
            names = [node.module] if node.module else [a.name for a in node.names]
            out |= {(base + n.split("."))[1] for n in names if len(base + n.split(".")) > 1}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmss_lab."):
            out.add(node.module.split(".")[1])
    return out


def test_the_lower_rooms_never_import_the_upper_ones():
    """One-way doors: config -> workload -> latency -> kernel -> results (and above them the API, scenarios,
    sweeps, views, widgets, CLI). The kernel never imports views or widgets; results never import a driver."""
    from pathlib import Path

    root = Path(llmss_lab.__file__).parent
    allowed: set[str] = set(BASE)
    wrong = []
    for room in ROOMS:
        allowed |= set(room)
        for name in room:
            files = sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / f"{name}.py"]
            for f in files:
                parts = ("llmss_lab", *f.relative_to(root).with_suffix("").parts[:-1])
                for top in _imports(f, parts) - allowed:
                    wrong.append(f"{f.relative_to(root)} imports llmss_lab.{top}")
    assert not wrong, "\n".join(wrong)



SWEEP_ROOMS = ["slo", "grid", "point", "dataset", "cluster", "run", "search", "pareto"]   # lowest first


def test_the_sweeps_rooms_import_only_the_ones_before_them():
    """llmss_lab.sweeps is split along its seams (SLO, grid, one point, Dataset, cluster, sweep, capacity search,
    Pareto): each module imports only those before it, so none of them reaches back into a driver above it."""
    import ast
    from pathlib import Path

    root = Path(llmss_lab.__file__).parent / "sweeps"
    assert sorted(f.stem for f in root.glob("*.py")) == sorted([*SWEEP_ROOMS, "__init__"])
    wrong = []
    for k, name in enumerate(SWEEP_ROOMS):
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                wrong += [f"{name} imports .{node.module}"] if node.module not in SWEEP_ROOMS[:k] else []
    assert not wrong, "\n".join(wrong)


def _imports_dask(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter leaves dask imported."""
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; print('dask' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip() != "False"


def test_a_run_and_its_summary_do_not_import_dask(ref):
    """xarray imports dask.array (0.5-1.5 s) the first time it checks data off a Variable's fastpath, and dask
    itself (0.3-0.5 s) to index a numpy coordinate; a single run has no dask arrays and must pay for neither."""
    assert not _imports_dask(
        "import llmss_lab as ll; "
        f"res = ll.simulate({str(ref / 'configs/cluster/single_node_moe_single_instance.json')!r}, "
        f"ll.synthetic(20, seed=1), reference_dir={str(ref)!r}, memory_sample_s=0.5); res.summary()")


def test_a_run_with_a_shared_prefix_pool_does_not_import_dask(ref):
    """The summary read each pool's final hit rate with ``isel``, whose new time coordinate is checked against
    dask's array type: Fig 7's shared CPU pool run spent 0.45 s of its 1 s in a fresh process importing dask."""
    assert not _imports_dask(
        "import llmss_lab as ll; "
        f"res = ll.simulate({str(ref / 'configs/cluster/single_node_multi_instance.json')!r}, "
        f"ll.synthetic(20, seed=1), reference_dir={str(ref)!r}, prefix_storage='cpu', prefix_sharing='node'); "
        "assert len(res.summary()['pool_hit_pct']) == 1")


def test_saving_results_does_not_import_dask(ref, tmp_path):
    """xarray's to_netcdf asked dask which scheduler runs and whether each array was its own: a first save
    imported dask, dask.array and distributed (0.4 s of CPU) for a run with no dask arrays."""
    assert not _imports_dask(
        "import llmss_lab as ll; "
        f"res = ll.simulate({str(ref / 'configs/cluster/single_node_power_instance.json')!r}, "
        f"ll.synthetic(20, seed=1), reference_dir={str(ref)!r}); res.save({str(tmp_path / 'run.nc')!r})")
    assert (tmp_path / "run.nc").stat().st_size > 0


def test_writing_figure_data_does_not_import_dask(ref, tmp_path):
    """The figures' files summed power, energy and throughput and took an instance's or a pool's memory with
    xarray's sum, sel and isel, each of which imported dask (0.45 s of CPU in every `llmss figure-data`)."""
    assert not _imports_dask(
        "from llmss_lab.figures import write_figure_data; "
        f"[write_figure_data(f, {str(ref / 'ispass26')!r}, {str(tmp_path)!r}, num_requests=20) for f in (6, 7, 9)]")
    assert {p.name for p in tmp_path.rglob("*.tsv")} >= {"power_tp1.tsv", "component_energy.tsv",
                                                         "MD+PC+PS_shared_cpu.tsv", "SD_throughput.tsv"}


def test_the_explorers_first_view_does_not_import_dask(ref):
    """The explorer's first Run shows the timeline tab: like the run itself, it needs no dask."""
    assert not _imports_dask(
        "import llmss_lab as ll, llmss_lab.views as v; "
        f"res = ll.simulate({str(ref / 'configs/cluster/single_node_single_instance.json')!r}, "
        f"ll.synthetic(20, seed=1), reference_dir={str(ref)!r}); v.timeline(res, res)")


def _regular_install(repo, tmp_path):
    """What ``pip install /path/to/repo`` puts in site-packages, built offline from a copy of the checkout (the
    build's build/ and egg-info folders land in the copy): the unpacked wheel, or, where no wheel can be built
    offline (setuptools before 70.1 without the ``wheel`` package), the files the wheel's build_py step copies."""
    import importlib.util
    import shutil
    import zipfile

    src = tmp_path / "src"
    for name in ("llmss_lab", "profiles"):
        shutil.copytree(repo / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    site = tmp_path / "site-packages"
    if importlib.util.find_spec("wheel") or importlib.util.find_spec("setuptools.command.bdist_wheel"):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(src)],
                       check=True, capture_output=True, timeout=120)
        (wheel,) = (tmp_path / "dist").glob("llmss_lab-*.whl")
        zipfile.ZipFile(wheel).extractall(site)
    else:
        subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                        "--build-lib", str(site)], cwd=src, check=True, capture_output=True, timeout=120)
    return src, site


def test_a_regular_install_carries_the_kits_profiles(tmp_path):
    """``pip install .`` (not -e) copied llmss_lab alone, without the top-level profiles/ (hardware specs, stored
    efficiency fit): the analytical model could not run on any hardware without a measured profile."""
    import tarfile
    from pathlib import Path

    repo = Path(llmss_lab.__file__).resolve().parent.parent
    src, site = _regular_install(repo, tmp_path)
    shipped = {p.relative_to(repo).as_posix() for p in (repo / "profiles").rglob("*") if p.is_file()}
    installed = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert {f"llmss_lab/{p}" for p in shipped} <= installed
    modules = {p.relative_to(repo).as_posix() for p in (repo / "llmss_lab").rglob("*.py")}
    assert modules - installed == set()          # every subpackage listed in pyproject.toml
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
                   cwd=src, check=True, capture_output=True, timeout=120)
    (sdist,) = tmp_path.glob("llmss_lab-*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert {f"llmss_lab-{llmss_lab.__version__}/{p}" for p in shipped} <= set(tar.getnames())

    code = ("import llmss_lab; from llmss_lab.latency.specs import SPECS_DIR; "
            "from llmss_lab.latency.roofline import EFFICIENCY_FILE; "
            "from llmss_lab.latency.analytical import efficiency, find_spec; "
            "print(llmss_lab.__file__, SPECS_DIR, EFFICIENCY_FILE, find_spec('H100').path, len(efficiency()), sep='\\n')")
    out = subprocess.run([sys.executable, "-c", code], cwd=site, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True, timeout=120).stdout.split("\n")
    package, specs, fit, h100 = (Path(p) for p in out[:4])
    assert package.parent == site / "llmss_lab"
    assert specs == site / "llmss_lab/profiles/hardware" and fit == site / "llmss_lab/profiles/efficiency.yaml"
    assert h100 == specs / "H100.yaml" and int(out[4]) > 0
