"""Long and sparse runs: wall time and peak memory of each phase of `llmss run`'s work.

Run: python benchmarks/bench_long.py [--reference-dir ROOT] [--cases sparse-1d hourly-30d dense-10k] [--repeat 3]
[--bin SECONDS]. Each case runs in --repeat fresh processes; every figure printed is the median of them. A sparse
trace (one request a minute) runs one request at a time, so it logs one engine step per output token (~650 a
request: ~28 M steps over 30 days, ~6.5 GB of step log), while an hourly one over 30 days is about its 2.6 M
one-second bins (timeseries and memory Datasets; --bin widens them). Peak RSS is read per phase (Linux:
/proc/self/clear_refs resets the high-water mark), so the results phase's own peak shows, not the kernel's; "peak
MB" is the largest of them. Prints the machine's speed first; wall times drift on shared machines, peaks do not.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from statistics import median

from machine import banner, default_reference_dir

# name: (requests, rate req/s, arrival, cluster: "" one Llama-3.1-8B instance, else a reference cluster config)
CASES = {
    "dense-10k": (10_000, 4.0, "poisson", ""),       # a busy server: batches of tens of requests
    "sparse-1d": (1_440, 1 / 60, "gamma", ""),       # one request a minute, regular, for a day
    "sparse-3d": (4_320, 1 / 60, "gamma", ""),
    "sparse-30d": (43_000, 1 / 60, "gamma", ""),     # ~28 M steps, ~20 min: the known long case
    "hourly-30d": (715, 1 / 3600, "gamma", ""),      # 2.6 M one-second bins, few steps
    "hourly-30d-x4": (715, 1 / 3600, "gamma", "dual_node_multi_instance"),   # 4 instances, 2 nodes: bins per instance
    "hourly-30d-power": (715, 1 / 3600, "gamma", "single_node_power_instance"),   # the power model's bins too
}

CHILD = """
import json, resource, sys, time
import llmss_lab as ll
from llmss_lab.kernel import power, simulator
from llmss_lab.results import dataset

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

def reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

phases = {}
def timed(name, fn):
    def run(*a, **k):
        reset()
        t0 = time.perf_counter()
        out = fn(*a, **k)
        phases[name] = (time.perf_counter() - t0, hwm())
        return out
    return run

n, rate, arrival, cluster, ref, out, bin_s = sys.argv[1:8]
simulator.run = timed("kernel", simulator.run)
power.account = timed("power", power.account)
dataset.Results.from_raw = classmethod(timed("results", dataset.Results.from_raw.__func__))
spec = ll.ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597) if not cluster \\
    else ll.load_cluster(f"{ref}/configs/cluster/{cluster}.json")
wl = ll.synthetic(int(n), rate=float(rate), arrival=arrival, cv=0.0, seed=1)
t0 = time.perf_counter()
res = ll.simulate(spec, wl, reference_dir=ref, **({"bin_s": float(bin_s)} if bin_s != "1" else {}))
timed("save", res.save)(out)
print(json.dumps({"wall_s": time.perf_counter() - t0, "steps": res.attrs["num_steps"],
                  "bins": res.timeseries.sizes["time"], "phases": phases,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir())
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["dense-10k", "sparse-1d", "hourly-30d"])
    p.add_argument("--out", default="/tmp/bench_long.nc", help="results file each case writes (replaced)")
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per case (medians are printed)")
    p.add_argument("--bin", default="1", help="time series bin width, s (simulate's bin_s; default 1)")
    args = p.parse_args()
    print(banner())
    print(f"{'case':>16}{'steps':>10}{'bins':>9}{'wall s':>8}  {'kernel s/MB':>13}{'power s/MB':>12}"
          f"{'results s/MB':>14}{'save s/MB':>12}{'peak MB':>9}")
    for name in args.cases:
        n, rate, arrival, cluster = CASES[name]
        runs = []
        for _ in range(args.repeat):
            run = subprocess.run([sys.executable, "-c", CHILD, str(n), str(rate), arrival, cluster,
                                  args.reference_dir, args.out, args.bin], capture_output=True, text=True, check=True)
            runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
        r = runs[0]
        ph = {k: f"{median(x['phases'][k][0] for x in runs):.1f}/{median(x['phases'][k][1] for x in runs):.0f}"
              for k in r["phases"]}
        peak = median(max(mb for _, mb in x["phases"].values()) for x in runs)
        print(f"{name:>16}{r['steps']:>10}{r['bins']:>9}{median(x['wall_s'] for x in runs):>8.1f}  "
              f"{ph['kernel']:>13}{ph['power']:>12}{ph['results']:>14}{ph['save']:>12}{peak:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
