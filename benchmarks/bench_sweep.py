"""Speed-up of a 200-point sweep on a 2-worker LocalCluster over a 1-worker one, and the same numbers.

Run: python benchmarks/bench_sweep.py [--points 200] [--num-requests 60] [--reference-dir ROOT]
Each cluster is started, every worker warmed (profiles parsed, as any long sweep amortises), then
the sweep is timed. Target: speed-up >= 1.8x on 2 workers, and the two Datasets equal point for point
(and equal to runs made one by one in this process, for a sample of points).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from machine import banner


def warm(reference_dir: str) -> None:
    from llmss_lab.scenario import Scenario

    Scenario(num_requests=4).run(reference_dir)


def timed_sweep(base, grid, ref: str, workers: int):
    import llmss_lab as ll
    from llmss_lab.sweeps import local_client

    with local_client(workers) as client:
        client.run(warm, ref)
        t0 = time.perf_counter()
        ds = ll.sweep(base, grid, client=client, reference_dir=ref, progress=False)
        return time.perf_counter() - t0, ds


def main() -> int:
    import logging

    import llmss_lab as ll
    from llmss_lab.reference import resolve_reference_dir

    p = argparse.ArgumentParser()
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--num-requests", type=int, default=60)
    p.add_argument("--reference-dir")
    args = p.parse_args()
    print(banner())
    logging.getLogger("distributed").setLevel(logging.ERROR)
    ref = str(resolve_reference_dir(args.reference_dir))
    base = ll.Scenario(num_requests=args.num_requests)
    seqs = [8, 16, 32, 64, 128]
    rates = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0]
    seeds = list(range(max(1, args.points // (len(seqs) * len(rates)))))
    grid = {"max_num_seqs": seqs, "rate": rates, "seed": seeds}
    n = len(seqs) * len(rates) * len(seeds)
    t1, one = timed_sweep(base, grid, ref, 1)
    t2, two = timed_sweep(base, grid, ref, 2)
    metrics = [v for v in one.data_vars if v not in ("wall_s", "status", "error", "scenario")]
    same = all(np.array_equal(one[m].values, two[m].values, equal_nan=True) for m in metrics)
    sample = [json.loads(str(s)) for s in one.scenario.values.ravel()[:: max(1, n // 8)]]
    direct_same = True
    for point in sample:
        summary = ll.Scenario.from_dict(point).run(ref).summary()
        sel = one.sel(max_num_seqs=point["max_num_seqs"], rate=point["rate"], seed=point["seed"])
        direct_same &= all(float(sel[k]) == v for k, v in summary.items() if k in sel)
    print(f"{n}-point sweep ({args.num_requests} requests per point, {int((one.status == 'ok').sum())} ok)")
    print(f"  1 worker : {t1:7.2f} s  ({n / t1:.1f} points/s)")
    print(f"  2 workers: {t2:7.2f} s  ({n / t2:.1f} points/s)")
    print(f"  speed-up : {t1 / t2:7.2f}x   target >= 1.8x")
    print(f"  1 vs 2 workers identical: {same}; {len(sample)} sampled points equal to one-by-one runs: {direct_same}")
    return 0 if same and direct_same else 1


if __name__ == "__main__":
    raise SystemExit(main())
