"""How long the explorer takes to answer Run on its default scenario.

Run: python benchmarks/bench_explorer.py [--reference-dir ROOT] [--repeat 10]
Measures, in one process as a JupyterLab kernel would: building the panel, the first Run (imports,
profile loading, first Bokeh document), then repeated Runs of the same scenario, without and with a
kept baseline. A Run is the whole button press: simulate, build the open tab's Bokeh views and their
BokehModel widget (the other tabs are built when opened). Target: a re-run under 1 s on the 2-core CI machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from machine import banner


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir",
                   help="default: $LLMSS_REFERENCE_DIR or ../shared/reference/llmservingsim beside the checkout")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    print(banner())

    t0 = time.perf_counter()
    from llmss_lab.widgets import Explorer
    ex = Explorer(args.reference_dir)
    t1 = time.perf_counter()
    assert ex.run() is not None, ex.status.value
    t2 = time.perf_counter()
    print(f"scenario: {ex.scenario_shown.num_requests} generated requests, {ex.result.attrs['num_steps']} steps")
    print(f"import + build panel   {t1 - t0:6.3f} s")
    print(f"first Run              {t2 - t1:6.3f} s")

    def runs(label: str) -> None:
        walls, sims = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ex.run()
            walls.append(time.perf_counter() - t)
            sims.append(ex.result.attrs["sim_wall_s"])
        print(f"{label:<22} min {min(walls):.3f}  median {statistics.median(walls):.3f}  max {max(walls):.3f} s"
              f"  (of which simulation median {statistics.median(sims):.3f} s)  target < 1 s")

    runs("re-run")
    ex.keep_baseline()
    ex.controls["max_num_seqs"].value = 64   # a run of the baseline's own settings is shown alone, not compared
    runs("re-run with baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
