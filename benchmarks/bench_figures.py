"""Wall and CPU time of each paper scenario (figures 5 to 10), cold and warm.

Run: python benchmarks/bench_figures.py [--reference-dir ROOT/ispass26] [--repeat 3]
Cold = a fresh process, from reading the config, workload and profiles to finished results.
Warm = the same run again in one process (profiles already parsed, as in a notebook session).
Each is timed in wall seconds and in CPU seconds of the process (``time.process_time``), which a busy shared
machine moves less than the wall time.
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
t, c = time.perf_counter(), time.process_time(); run_scenario(sc, ref)
print(time.perf_counter() - t, time.process_time() - c)
"""


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def stats(times: list[tuple[float, float]]) -> str:
    """min and median of the wall times, then of the CPU times."""
    cols = list(zip(*times))
    return "".join(f"{f(c):>9.3f}" for c in cols for f in (min, statistics.median))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=str(Path(default_reference_dir()) / "ispass26"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    from llmss_lab.figures import SCENARIOS, run_scenario

    ref = Path(args.reference_dir)
    print(banner())
    print(f"{'':<24}{'cold wall s':>18}{'cold CPU s':>18}{'warm wall s':>18}{'warm CPU s':>18}  target <= 0.5 s")
    print(f"{'scenario':<24}" + f"{'min':>9}{'median':>9}" * 4)
    for fig in sorted(SCENARIOS):
        for sc in SCENARIOS[fig]:
            cold = [tuple(map(float, subprocess.run([sys.executable, "-c", CHILD, str(fig), sc.name, sc.hardware or "",
                                                     str(ref)], capture_output=True, text=True, check=True).stdout.split()))
                    for _ in range(args.repeat)]
            warm = [timed(lambda: run_scenario(sc, ref)) for _ in range(args.repeat + 1)][1:]
            print(f"{sc.label:<24}{stats(cold)}{stats(warm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
