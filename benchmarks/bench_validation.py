"""Wall time of each validation simulation (and its accuracy), measured in fresh processes.

Run: python benchmarks/bench_validation.py [--reference-dir ROOT] [--repeat 5]
Prints, per case, the wall time from reading the inputs to finished results (the ``sim_wall_s``
of ``llmss validate --json``), as min / median over the repeats, and the mean |Diff %|.
Target: <= 0.5 s per case on the 2-core CI machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = ("RTXPRO6000/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B")


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=os.environ.get("LLMSS_REFERENCE_DIR",
                                                             str(here.parent / "shared/reference/llmservingsim")))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"{'case':<28}{'min s':>8}{'median s':>10}{'max s':>8}{'err %':>8}  target <= 0.5 s")
    for case in CASES:
        walls, err = [], None
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-m", "llmss_lab", "validate",
                                  str(Path(args.reference_dir) / "measurements" / case),
                                  "--reference-dir", args.reference_dir, "--json"],
                                 capture_output=True, text=True, check=True)
            rep = json.loads(out.stdout)
            walls.append(rep["sim_wall_s"])
            err = rep["mean_abs_err_pct"]
        print(f"{case:<28}{min(walls):>8.3f}{statistics.median(walls):>10.3f}{max(walls):>8.3f}{err:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
