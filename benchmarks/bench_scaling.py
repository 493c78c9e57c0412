"""How wall time and memory grow with the number of requests on one instance.

Run: python benchmarks/bench_scaling.py [--reference-dir ROOT] [--sizes 1000 4000 16000] [--repeat 3]
Each size runs in --repeat fresh processes (so each peak RSS is its own; medians are printed): Llama-3.1-8B on
an RTX PRO 6000, seeded synthetic ShareGPT-like requests at 8 req/s. Prints wall time, engine steps, peak RSS, and
the RSS above the smallest run per extra request, the figure that says how far a long trace fits.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from statistics import median

from machine import banner, default_reference_dir

CHILD = """
import json, resource, sys, time
import llmss_lab as ll
n, ref = int(sys.argv[1]), sys.argv[2]
spec = ll.ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
wl = ll.synthetic(n, rate=8, seed=1)
t0 = time.perf_counter()
res = ll.simulate(spec, wl, reference_dir=ref)
print(json.dumps({"wall_s": time.perf_counter() - t0, "steps": res.attrs["num_steps"],
                  "tokens": int(res.requests.output_tokens.sum()),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir())
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per size (medians are printed)")
    args = p.parse_args()
    print(banner())
    print(f"{'requests':>9}{'wall s':>8}{'steps':>9}{'out tokens':>12}{'peak RSS MB':>13}{'KB/extra request':>18}")
    first = None
    for n in sorted(args.sizes):
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(n), args.reference_dir],
                                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(args.repeat)]
        r = {**runs[0], "wall_s": median(x["wall_s"] for x in runs), "rss_mb": median(x["rss_mb"] for x in runs)}
        per = "" if first is None else f"{(r['rss_mb'] - first[1]) * 1024 / (n - first[0]):.1f}"
        first = first or (n, r["rss_mb"])
        print(f"{n:>9}{r['wall_s']:>8.1f}{r['steps']:>9}{r['tokens']:>12}{r['rss_mb']:>13.0f}{per:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
