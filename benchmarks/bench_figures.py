"""Wall time of each paper scenario (figures 5, 8, 9; 300 requests each), cold and warm.

Run: python benchmarks/bench_figures.py [--reference-dir ROOT/ispass26] [--repeat 3]
Cold = a fresh process, from reading the config, workload and profiles to finished results.
Warm = the same run again in one process (profiles already parsed, as in a notebook session).
Target: <= 0.5 s per scenario (LLMServingSim 2.0: 302-633 s in the paper; TokenSim 2.5 s).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import banner, default_reference_dir

CHILD = """
import sys, time
from pathlib import Path
from llmss_lab.figures import SCENARIOS, run_scenario
fig, name, hw, ref = int(sys.argv[1]), sys.argv[2], sys.argv[3] or None, Path(sys.argv[4])
sc = next(s for s in SCENARIOS[fig] if s.name == name and s.hardware == hw)
t = time.perf_counter(); run_scenario(sc, ref); print(time.perf_counter() - t)
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=str(Path(default_reference_dir()) / "ispass26"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    from llmss_lab.figures import SCENARIOS, run_scenario

    ref = Path(args.reference_dir)
    print(banner())
    print(f"{'scenario':<24}{'cold min s':>11}{'cold med s':>11}{'warm min s':>11}{'warm med s':>11}  target <= 0.5 s")
    for fig in sorted(SCENARIOS):
        for sc in SCENARIOS[fig]:
            cold = [float(subprocess.run([sys.executable, "-c", CHILD, str(fig), sc.name, sc.hardware or "", str(ref)],
                                         capture_output=True, text=True, check=True).stdout) for _ in range(args.repeat)]
            warm = []
            for _ in range(args.repeat + 1):
                t = time.perf_counter()
                run_scenario(sc, ref)
                warm.append(time.perf_counter() - t)
            warm = warm[1:]
            print(f"{sc.label:<24}{min(cold):>11.3f}{statistics.median(cold):>11.3f}"
                  f"{min(warm):>11.3f}{statistics.median(warm):>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
