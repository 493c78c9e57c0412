"""Wall time of design_space.ipynb's sweep and capacity search, on a 2-worker LocalCluster, and what they answer.

Run: python benchmarks/bench_capacity.py [--repeat 3] [--num-requests 1000] [--seed 0] [--slo-ttft-ms 500]
     [--slo-tpot-ms 50] [--slo-quantile 0.9] [--rel-tol 0.05] [--no-sweep] [--single] [--json OUT]
     [--reference-dir ROOT]
The notebook's settings by default: Llama-3.1-8B on an RTX PRO 6000 with power, 1000 requests per run, a sweep of
tp [1, 2] x max_num_seqs [16, 64, 256] x rate [4, 8, 16], then the capacity search over tp x max_num_seqs in
rate_range (1, 64) with p90 TTFT <= 500 ms and TPOT <= 50 ms. One cluster for all repeats (as the notebook keeps
one), every worker warmed first. Prints the median and every time, the runs the search spent, and its answers
(max_rate per configuration, which must not move by more than rel_tol between versions). The capacity search is
given the sweep's runs (``known=``) where this version of llmss_lab takes them, as the notebook does; with
--no-sweep it runs alone. --single searches one configuration (tp 1, max_num_seqs 64) on the two workers, where
the search has a worker to spare. Where runs look whether their search still wants them, it also prints what one
look costs from a worker (a round trip to the scheduler), median of 200; where the search counts the workers each
time a run comes in, what one count costs; where the kernel asks a run's stop_when on a clock of steps, what one
such look costs (the board not due) against a step of the notebook's run (tp 1, max_num_seqs 64, 4 req/s).
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import statistics
import time

from machine import banner, default_reference_dir


def warm(reference_dir: str) -> None:
    from llmss_lab.scenario import Scenario

    Scenario(num_requests=4, power=True).run(reference_dir)


def look_s(board: str, n: int = 200) -> float:
    """Median wall time of one look at a search's board of cancelled runs, from inside a task."""
    from llmss_lab.sweeps.point import _Wanted

    wanted = _Wanted(board, every_s=0.0)
    wanted()   # the first look also finds the worker's client
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        wanted()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def clock_look_s(reference_dir: str, n: int = 20_000) -> tuple[float, float, int]:
    """Median wall time of one look the kernel's clock of steps makes at a capacity run's stop_when (nothing new
    finished, the board not due), the mean wall time of a step of the notebook's run, and the steps between looks."""
    from types import SimpleNamespace

    import llmss_lab as ll
    from llmss_lab.kernel.simulator import STOP_POLL_STEPS
    from llmss_lab.sweeps.point import _Verdict, _Wanted

    wanted = _Wanted("no-board")
    wanted.next_look = float("inf")   # between two looks at the board, as almost every look is
    verdict = _Verdict(ll.SLO(ttft_ms=500, tpot_ms=50), 1000, False, wanted)
    requests = SimpleNamespace(num_finished=0)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        verdict(requests, 0.0)
        times.append(time.perf_counter() - t0)
    res = ll.Scenario(num_requests=1000, power=True, max_num_seqs=64, rate=4.0).run(reference_dir)
    return statistics.median(times), res.attrs["sim_wall_s"] / res.attrs["num_steps"], STOP_POLL_STEPS


def count_s(client, n: int = 200) -> float:
    """Median wall time of one count of the cluster's workers, as the search makes it each time a run comes in."""
    from llmss_lab.sweeps.search import _threads

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _threads(client)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    import llmss_lab as ll
    from llmss_lab.sweeps import local_client

    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--num-requests", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slo-ttft-ms", type=float, default=500.0)
    p.add_argument("--slo-tpot-ms", type=float, default=50.0)
    p.add_argument("--slo-quantile", type=float, default=0.9)
    p.add_argument("--rel-tol", type=float, default=0.05)
    p.add_argument("--single", action="store_true", help="one configuration (tp 1, max_num_seqs 64), not six")
    p.add_argument("--no-sweep", action="store_true", help="time the capacity search alone, without the sweep's runs")
    p.add_argument("--json", help="write the answers (max_rate, bound per configuration) to this file")
    p.add_argument("--reference-dir", default=default_reference_dir())
    args = p.parse_args()
    print(banner())
    logging.getLogger("distributed").setLevel(logging.ERROR)
    ref = args.reference_dir
    base = ll.Scenario(num_requests=args.num_requests, seed=args.seed, power=True)
    slo = ll.SLO(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms, quantile=args.slo_quantile)
    configs = {"tp": [1], "max_num_seqs": [64]} if args.single else {"tp": [1, 2], "max_num_seqs": [16, 64, 256]}
    n = len(configs["tp"]) * len(configs["max_num_seqs"])
    takes_known = "known" in inspect.signature(ll.capacity).parameters
    sweep_s, cap_s = [], []
    looks = counts = clock = None
    from llmss_lab.kernel import simulator

    if hasattr(simulator, "STOP_POLL_STEPS"):   # stop_when is asked on a clock of steps too
        clock = clock_look_s(ref)
    with local_client(2) as client:
        client.run(warm, ref)
        if hasattr(ll.sweeps, "_Wanted"):   # runs that look whether their search wants them
            from distributed import Variable

            board = Variable("bench-board", client=client)
            board.set([])
            looks = client.submit(look_s, board.name, pure=False).result()
            board.delete()
        if hasattr(ll.sweeps, "_threads"):   # the search counts the workers each time a run comes in
            counts = count_s(client)
        for _ in range(args.repeat):
            known = {}
            if not args.no_sweep:
                t0 = time.perf_counter()
                ds = ll.sweep(base, {**configs, "rate": [4.0, 8.0, 16.0]}, client=client, reference_dir=ref, slo=slo,
                              progress=False)
                sweep_s.append(time.perf_counter() - t0)
                known = {"known": ds} if takes_known else {}
            t0 = time.perf_counter()
            cap = ll.capacity(base, slo, configs, rate_range=(1.0, 64.0), rel_tol=args.rel_tol, client=client,
                              reference_dir=ref, progress=False, **known)
            cap_s.append(time.perf_counter() - t0)
    print(f"{args.num_requests} requests per run, seed {args.seed}, SLO p{100 * args.slo_quantile:g} TTFT <= "
          f"{args.slo_ttft_ms:g} ms, "
          f"TPOT <= {args.slo_tpot_ms:g} ms, rel_tol {args.rel_tol:g}; capacity given the sweep's runs: "
          f"{bool(known)}")
    if sweep_s:
        print(f"  sweep ({3 * n} points)   : median {statistics.median(sweep_s):6.1f} s  ({', '.join(f'{t:.1f}' for t in sweep_s)})")
    print(f"  capacity ({n} configs): median {statistics.median(cap_s):6.1f} s  ({', '.join(f'{t:.1f}' for t in cap_s)})")
    runs = cap.runs if "runs" in cap else cap.rounds   # an earlier version counted the runs as `rounds`
    print(f"  runs spent: {int(runs.sum())} ({runs.values.ravel().tolist()})")
    if "runs" in cap:
        print(f"  rounds waited: {cap.rounds.values.ravel().tolist()}")
    said = {k: cap.attrs[k] for k in ("runs_reused", "runs_stopped_missed", "runs_stopped_met", "runs_cancelled")
            if k in cap.attrs}
    if said:
        print("  " + ", ".join(f"{k} {v}" for k, v in said.items()))
    if looks is not None:
        print(f"  one look at the board of cancelled runs: {1e3 * looks:.2f} ms (median of 200, from a worker)")
    if clock is not None:
        look, step, every = clock
        print(f"  one look on the kernel's clock: {1e6 * look:.2f} us (median of 20,000) every {every} steps of "
              f"{1e6 * step:.0f} us each (the notebook's run): {100 * look / every / step:.3f} % of a run")
    if counts is not None:
        print(f"  one count of the workers: {1e3 * counts:.2f} ms (median of 200, from the search)")
    answers = {}
    for tp in cap.tp.values:
        for m in cap.max_num_seqs.values:
            c = cap.sel(tp=tp, max_num_seqs=m)
            answers[f"tp{tp}_seqs{m}"] = [float(c.max_rate), str(c.bound.values)]
            print(f"  tp {tp} max_num_seqs {m:3d}: max_rate {float(c.max_rate):8.4f} req/s  {c.bound.values}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(answers, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
