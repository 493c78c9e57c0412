"""Wall time and accuracy of each validation simulation, measured in fresh processes, with the
measured profile and with the analytical (roofline) latency model.

Run: python benchmarks/bench_validation.py [--reference-dir ROOT] [--repeat 5]
Prints, per case and latency source, the wall time from reading the inputs to finished results
(the ``sim_wall_s`` of ``llmss validate --json``) as min / median / max over the repeats, the median
wall time of the whole ``llmss validate`` process (interpreter and library start-up included), and the
mean |Diff %| against the real vLLM run. Latency sources:

* ``profile``: the case's measured profile bundle;
* ``analytical``: the roofline model with the stored fit (profiles/efficiency.yaml, which saw this
  hardware and model's profile among the others);
* ``analytical (LOO)``: the roofline model fitted without any profile of this hardware and model
  (``llmss profile-fit --leave-out``), the honest stand-in for hardware that has no profile.

Target: <= 0.5 s per case on the 2-core CI machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import banner, default_reference_dir

CASES = {"RTXPRO6000/Llama-3.1-8B": "RTXPRO6000/meta-llama/Llama-3.1-8B",
         "RTXPRO6000/Qwen3-32B": "RTXPRO6000/Qwen/Qwen3-32B"}


def llmss(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "llmss_lab", *args], capture_output=True, text=True,
                          check=True).stdout


def timed_llmss(*args: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = llmss(*args)
    return out, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir())
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    ref = args.reference_dir
    print(banner())
    print(f"{'case':<26}{'latency source':<19}{'min s':>7}{'median s':>10}{'max s':>7}{'process s':>11}{'err %':>8}  target <= 0.5 s")
    with tempfile.TemporaryDirectory() as tmp:
        for case, pair in CASES.items():
            loo = str(Path(tmp) / "loo.yaml")
            llmss("profile-fit", "--reference-dir", ref, "--out", loo, "--leave-out", pair)
            for label, extra in (("profile", ["--latency", "profile"]), ("analytical", ["--latency", "analytical"]),
                                 ("analytical (LOO)", ["--latency", "analytical", "--efficiency", loo])):
                walls, procs, err = [], [], None
                for _ in range(args.repeat):
                    out, proc = timed_llmss("validate", str(Path(ref) / "measurements" / case), "--reference-dir",
                                            ref, "--json", *extra)
                    rep = json.loads(out)
                    walls.append(rep["sim_wall_s"])
                    procs.append(proc)
                    err = rep["mean_abs_err_pct"]
                print(f"{case:<26}{label:<19}{min(walls):>7.3f}{statistics.median(walls):>10.3f}{max(walls):>7.3f}"
                      f"{statistics.median(procs):>11.2f}{err:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
