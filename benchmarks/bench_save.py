"""Results files: size, save and load time of the 300-request example and of a long, mostly idle run.

Run: python benchmarks/bench_save.py [--reference-dir ROOT] [--repeat 5]
"example" is `llmss example` (300 ShareGPT requests at 10 req/s on one RTX PRO 6000); "idle" is
`llmss run configs/cluster/single_node_single_instance.json --rate 0.001 --num-requests 300`, whose
one-second bins span about 4 days. Each is saved as Results.save writes it (numeric variables deflated)
and raw, as files were written before; times are the best of --repeat, loads through ll.load_results.
Then the first save in a fresh process (a 20-request run, --repeat processes; medians): what `llmss run --out`
pays once, imports included, in CPU and wall seconds, and how many dask modules it leaves imported; and the first
load of that file (what `llmss summary` pays), also with dask hidden from xarray, whose reading path imports it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import banner, default_reference_dir


def save_raw(res, path: Path) -> Path:
    """The run written as Results.save wrote it before compression: every group, no encoding."""
    from llmss_lab.results.dataset import GROUPS, OPTIONAL

    mode = "w"
    for g in (*GROUPS, "itl", *(g for g in OPTIONAL if getattr(res, g).data_vars)):
        getattr(res, g).to_netcdf(path, group=g, mode=mode, engine="netcdf4")
        mode = "a"
    return path


FIRST_SAVE = """
import sys, time
import llmss_lab as ll
res = ll.simulate(sys.argv[1] + "/configs/cluster/single_node_single_instance.json", ll.synthetic(20, seed=1),
                  reference_dir=sys.argv[1])
cpu, wall = time.process_time(), time.perf_counter()
res.save(sys.argv[2])
print(time.process_time() - cpu, time.perf_counter() - wall,
      sum(m.split(".")[0] in ("dask", "distributed") for m in sys.modules))
"""


FIRST_LOAD = """
import sys, time
if sys.argv[2] == "hide":
    sys.modules["dask"] = None   # as if dask were not installed: what xarray's dask checks cost this load
cpu, wall = time.process_time(), time.perf_counter()
from llmss_lab.results.dataset import Results
Results.load(sys.argv[1])
print(time.process_time() - cpu, time.perf_counter() - wall,
      sum(m.split(".")[0] == "dask" and sys.modules[m] is not None for m in list(sys.modules)))
"""


def first_load(path: Path, repeat: int, dask: str) -> tuple[float, float, int]:
    """Median CPU and wall seconds of a fresh process's import of Results and first Results.load (``dask``
    "hide": with dask hidden from xarray), and the dask modules it imported."""
    runs = [subprocess.run([sys.executable, "-c", FIRST_LOAD, str(path), dask], capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(repeat)]
    return (statistics.median(float(r[0]) for r in runs), statistics.median(float(r[1]) for r in runs),
            int(runs[0][2]))


def first_save(ref: Path, path: Path, repeat: int) -> tuple[float, float, int]:
    """Median CPU and wall seconds of a fresh process's first Results.save, and the dask modules it imported."""
    runs = [subprocess.run([sys.executable, "-c", FIRST_SAVE, str(ref), str(path)], capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(repeat)]
    return (statistics.median(float(r[0]) for r in runs), statistics.median(float(r[1]) for r in runs),
            int(runs[0][2]))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir())
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    import llmss_lab as ll

    ref = Path(args.reference_dir)
    runs = {
        "example": ll.simulate(ref / "measurements/RTXPRO6000/Llama-3.1-8B/config.json",
                               "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl", reference_dir=ref),
        "idle": ll.simulate(ref / "configs/cluster/single_node_single_instance.json",
                            ll.synthetic(300, rate=0.001, seed=0), reference_dir=ref),
    }
    print(banner())
    print(f"{'run':<9}{'bins':>8}{'steps':>8}{'written':>9}{'MB':>8}{'save s':>8}{'load s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, res in runs.items():
            for how, save in (("raw", save_raw), ("deflated", ll.Results.save)):
                path = Path(tmp) / f"{name}-{how}.nc"
                s = best(lambda: save(res, path), args.repeat)
                lo = best(lambda: ll.load_results(path), args.repeat)
                print(f"{name:<9}{res.timeseries.sizes['time']:>8}{res.iterations.sizes['step']:>8}{how:>9}"
                      f"{path.stat().st_size / 1e6:>8.2f}{s:>8.3f}{lo:>8.3f}")
        cpu, wall, dask = first_save(ref, Path(tmp) / "first.nc", args.repeat)
        loads = {how: first_load(Path(tmp) / "first.nc", args.repeat, how) for how in ("keep", "hide")}
    print(f"first save in a fresh process: {cpu:.3f} s CPU, {wall:.3f} s wall (medians of {args.repeat}); "
          f"{dask} dask modules imported")
    for how, said in (("keep", "import and first load in a fresh process"), ("hide", "  the same, dask hidden")):
        cpu, wall, dask = loads[how]
        print(f"{said}: {cpu:.3f} s CPU, {wall:.3f} s wall (medians of {args.repeat}); {dask} dask modules imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
