"""What a user waits for before anything happens: start-up and first-run times, each in a fresh process.

Run: python benchmarks/bench_startup.py [--reference-dir ROOT] [--repeat 5] [--only NAME ...]
Each case starts a new Python process ``--repeat`` times and prints the median (and min, max) wall time of the
whole process; the in-process cases (first simulate, explorer) also print the median of the time they measure
themselves, which leaves out the interpreter's own start. The machines are shared: compare medians, the CPU
seconds (user + system of the process) more than the wall, and the banner.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import banner, default_reference_dir

CLUSTER = "configs/cluster/single_node_single_instance.json"
TRACE = "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl"

FIRST_SIMULATE = """
import sys, time
t0 = time.perf_counter()
import llmss_lab as ll
res = ll.simulate(sys.argv[1] + "/" + sys.argv[2], sys.argv[3], reference_dir=sys.argv[1])
res.summary()
print(time.perf_counter() - t0)
"""

EXPLORER = """
import sys, time
t0 = time.perf_counter()
from llmss_lab.widgets import Explorer
ex = Explorer(sys.argv[1])
assert ex.run() is not None, ex.status.value
print(time.perf_counter() - t0)
"""


def llmss(*argv: str) -> list[str]:
    """The installed ``llmss`` script beside this Python, else ``python -m llmss_lab``."""
    script = shutil.which("llmss", path=str(Path(sys.executable).parent))
    return [script, *argv] if script else [sys.executable, "-m", "llmss_lab", *argv]


def cases(ref: str) -> dict[str, list[str]]:
    return {
        "import llmss_lab": [sys.executable, "-c", "import llmss_lab"],
        "llmss --help": llmss("--help"),
        "llmss run --help": llmss("run", "--help"),
        "llmss run (example)": llmss("run", f"{ref}/{CLUSTER}", "--workload", TRACE, "--reference-dir", ref, "-q"),
        "first ll.simulate": [sys.executable, "-c", FIRST_SIMULATE, ref, CLUSTER, TRACE],
        "explorer first Run": [sys.executable, "-c", EXPLORER, ref],
    }


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def measure(cmd: list[str], repeat: int) -> tuple[list[float], list[float], list[float]]:
    """Wall and CPU times of ``repeat`` fresh processes, and the seconds each printed last (in-process cases)."""
    walls, cpus, inner = [], [], []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(repeat):
        t, c = time.perf_counter(), _children_cpu()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        cpus.append(_children_cpu() - c)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{out.stderr[-2000:]}")
        last = out.stdout.strip().splitlines()[-1:] or [""]
        try:
            inner.append(float(last[0]))
        except ValueError:
            pass
    return walls, cpus, inner


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir(),
                   help="default: $LLMSS_REFERENCE_DIR or ../shared/reference/llmservingsim beside the checkout")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    args = p.parse_args()
    print(banner())
    print(f"fresh processes, {args.repeat} each; wall seconds median (min-max), and the median CPU seconds (user +"
          " system), which another user's load moves less")
    for name, cmd in cases(args.reference_dir).items():
        if args.only and name not in args.only:
            continue
        walls, cpus, inner = measure(cmd, args.repeat)
        line = (f"{name:<22} {statistics.median(walls):6.3f}  ({min(walls):.3f}-{max(walls):.3f})"
                f"   cpu {statistics.median(cpus):.3f}")
        if inner:
            line += f"   in-process {statistics.median(inner):.3f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
