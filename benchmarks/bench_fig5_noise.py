"""How much of a Fig 5 per-second throughput NMAE is noise: step phase, clock phase, and the real series' total.

Run: python benchmarks/bench_fig5_noise.py [--reference-dir ROOT/ispass26] [--scenarios A6000/SD+PC A6000/SM]
     [--seeds 12] [--jitter-ms 1]

For each scenario it prints:
* the NMAE as `llmss figure-data --compare` scores it;
* the spread over runs whose every arrival is moved later by up to ``--jitter-ms`` (uniform, seeds 1..N): which
  step each second boundary falls in changes, so a difference smaller than this spread is not a difference;
* the NMAE with our seconds re-binned 0.1 s earlier and later (a 0.1 s run summed into shifted seconds);
* the floor the real series' total sets: sum |sim - real| >= |sum sim - sum real| for a run that serves every token.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import default_reference_dir


def nmae(ours: np.ndarray, real: np.ndarray) -> float:
    n = max(len(ours), len(real))
    a, b = np.pad(ours, (0, n - len(ours))), np.pad(real, (0, n - len(real)))
    return float(np.abs(a - b).sum() / real.sum() * 100.0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=str(Path(default_reference_dir()) / "ispass26"))
    p.add_argument("--scenarios", nargs="+", default=["A6000/SD+PC", "A6000/SM"])
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--jitter-ms", type=float, default=1.0)
    args = p.parse_args()
    from llmss_lab import figures

    ref = Path(args.reference_dir)
    load_trace = figures.load_trace
    for sc in figures.select(5, args.scenarios):
        real = np.loadtxt(ref / f"figures/{sc.folder}/reference/{sc.name}_throughput.tsv", skiprows=1)[:, 1]

        def per_second(**settings) -> np.ndarray:
            return np.array([g for _, g in figures.throughput_rows(figures.run_scenario(sc, ref, **settings))])

        base = nmae(per_second(), real)
        jittered = []
        for seed in range(1, args.seeds + 1):
            def jitter(path, n, seed=seed):
                w = load_trace(path, n)
                later = np.random.default_rng(seed).uniform(0, args.jitter_ms * 1e6, len(w.arrival_ns))
                return replace(w, arrival_ns=np.sort(w.arrival_ns + later.astype(np.int64)))
            figures.load_trace = jitter   # run_scenario reads its trace through this name
            try:
                jittered.append(nmae(per_second(), real))
            finally:
                figures.load_trace = load_trace
        ts = figures.run_scenario(sc, ref, bin_s=0.1).timeseries
        tenths = np.zeros(int(round(ts.time.values.max() * 10)) + 12)
        tenths[np.rint(ts.time.values * 10).astype(int)] = ts.generation_throughput.sum("instance").values * 0.1
        shifted = {}
        for d in (-1, 1):   # second k holds the tenths (10 (k-1) + d, 10 k + d]
            n = len(tenths) // 10 + 2
            shifted[d] = nmae(np.array([tenths[max(10 * k - 9 + d, 0):max(10 * k + 1 + d, 0)].sum()
                                        for k in range(n)]), real)
        served = figures.load_trace(ref / sc.dataset).output_toks.sum()
        print(f"{sc.label}: NMAE {base:.2f} %; arrivals jittered by up to {args.jitter_ms:g} ms ({args.seeds} seeds): "
              f"{min(jittered):.2f}-{max(jittered):.2f} % (mean {statistics.mean(jittered):.2f}, "
              f"sd {statistics.pstdev(jittered):.2f}); seconds re-binned 0.1 s earlier / later: "
              f"{shifted[-1]:.2f} / {shifted[1]:.2f} %; the real series sums to {real.sum():,.0f} of the trace's "
              f"{served:,} tokens: floor {abs(served - real.sum()) / real.sum() * 100:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
