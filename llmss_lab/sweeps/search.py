"""Capacity search: for each point of a grid, the highest arrival rate whose run meets an SLO, by bisection on
the rate, every configuration searched at once on the cluster."""
from __future__ import annotations

import itertools
import json
import logging
import math
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from ..config.reader import is_real
from ..errors import InputError, LlmssError
from ..progress import progress_bar
from ..reference import resolve_reference_dir
from ..scenario import Scenario
from .cluster import _check_cluster_args, _client
from .dataset import _done, check_sweep, to_dataset
from .grid import Grid, GridPoint, _key, expand, grid_points, input_files
from .point import _check_run_args, _log_result, _Wanted, run_point, worker_lost
from .slo import SLO

log = logging.getLogger(__name__)

MIN_REL_TOL = 1e-6         # a finer bracket than this only spends runs on float rounding
MIN_TAIL = 10              # requests above an SLO's quantile for a verdict that does not turn on one or two of them


@dataclass(frozen=True)
class Plan:
    """Where the search of one configuration stands: ``state`` searching, inside, above, below or failed; ``rate``
    the highest rate seen to meet the SLO and ``run`` its run (the failed run, if failed); ``need`` the rates
    whose runs it waits for, of which ``whole`` must not stop once they meet the SLO (their metrics may be the
    answer's)."""
    state: str
    rate: float = math.nan
    run: dict | None = None
    need: tuple[float, ...] = ()
    whole: tuple[float, ...] = ()

    def row(self) -> dict:
        """The configuration's point in the search's Dataset: the answer's run (its metrics), or a failed run's
        error, or no metrics (below the range)."""
        if self.state == "failed":
            return {"status": "failed", "metrics": {}, "error": self.run["error"], "wall_s": math.nan}
        return self.run or {"status": "ok", "metrics": {}, "error": "", "wall_s": math.nan}


def _middles(lo: float, hi: float, flying: Sequence[float], width: int, rel_tol: float) -> list[float]:
    """The rates to have running inside the bracket (lo, hi): those already running there, and then, up to
    ``width``, the geometric middle of the widest gap above the lowest of them, again and again (ties: the higher
    gap). Every rate is thus a node of the bisection tree of the bracket, and a gap within ``rel_tol`` is never
    cut: with one rate at a time this is bisection, with more it tests more of the tree's next rates at once
    (k-section), and under an SLO met or missed monotonically in the rate it closes on the same pair of rates as
    bisection does. Only upwards: a rate above a middle matters if the middle meets the SLO, and is otherwise
    missed too, which stops its run early (:meth:`SLO.lost`); a rate below it matters if the middle misses, but
    meets the SLO then, and a run that meets it at a low rate is the longest there is (the whole workload spread
    thin). Even with cancelled runs ending themselves (:class:`_Wanted`), rates below as well made
    bench_capacity.py --single --no-sweep slower (medians 4.8, 4.3, 5.0 s against 3.3, 4.3, 2.4 s upwards only)."""
    points = sorted({lo, hi, *(r for r in flying if lo < r < hi)})
    chosen = points[1:-1]
    while len(chosen) < width:
        floor = min(chosen, default=lo)
        gaps = [(round(math.log(b / a), 9), a, b) for a, b in zip(points, points[1:])
                if a >= floor and b / a > 1 + rel_tol]
        if not gaps:
            break
        _, a, b = max(gaps)
        mid = math.sqrt(a * b)
        points = sorted([*points, mid])
        chosen.append(mid)
    return chosen


def _plan(verdicts: Mapping[float, dict], lo0: float, hi0: float, rel_tol: float, flying: Sequence[float] = (),
          width: int = 1) -> Plan:
    """One configuration's search, from the runs made so far (rate -> :func:`run_point`'s result) and the rates
    still running (``flying``): what it answers, or which rates it needs (``width`` of them inside the bracket).

    The bracket is the lowest rate seen to miss the SLO (else the top of the range) and the highest seen to meet it
    below that (else the bottom); it is cut (:func:`_middles`) until hi / lo <= 1 + ``rel_tol``. The answer is
    thus a function of the verdicts alone, whatever order they came in. The top of the range is run first, with
    the first middles beside it, unless a rate below it missed already: if it meets the SLO the answer is
    ``above``. The bottom is run only if no middle met the SLO, to tell ``inside`` from ``below``: a run at a low
    rate lasts longest (the whole workload spread thin), and with the SLO met or missed monotonically in the rate,
    a middle that meets it says the bottom does too. A sweep's runs (``known=``) are verdicts like any other.

    The answer's metrics are its run's, so a run stopped once it met the SLO (:meth:`SLO.won`) is made again whole
    if it is the answer; to spare that, the rates whose meeting the SLO would close the bracket (and the top and the
    bottom) run whole from the start."""
    failed = next((verdicts[r] for r in sorted(verdicts) if verdicts[r]["status"] == "failed"), None)
    if failed is not None:
        return Plan("failed", run=failed)
    top = verdicts.get(hi0)
    if top is not None and top["metrics"]["slo_met"]:
        return Plan("above", hi0, top)   # a top runs whole
    hi = min((r for r, v in verdicts.items() if not v["metrics"]["slo_met"]), default=hi0)
    lo = max((r for r, v in verdicts.items() if v["metrics"]["slo_met"] and r < hi), default=lo0)
    need = (hi0,) if top is None and hi == hi0 else ()
    if hi / lo > 1 + rel_tol:
        middles = _middles(lo, hi, flying, width, rel_tol)
        return Plan("searching", need=need + tuple(middles),
                    whole=need + tuple(r for r in middles if hi / r <= 1 + rel_tol))
    best = verdicts.get(lo)
    if best is None:   # every rate above the bottom missed the SLO: the bottom says inside or below
        return Plan("searching", need=need + (lo0,), whole=need + (lo0,))
    if not best["metrics"]["slo_met"]:
        return Plan("below")
    if "stopped_at_s" in best:   # the answer, stopped once it met the SLO: its metrics need the whole run
        need += (lo,)
    return Plan("searching", need=need, whole=need) if need else Plan("inside", lo, best)


def other_slo(known: xr.Dataset, slo: SLO) -> str | None:
    """Why a sweep's runs cannot stand in for a capacity search's under ``slo`` (their ``slo_met`` was judged by
    another SLO, or none), or None when they can. Compared as values: ``ttft_ms=500`` (a Python sweep) is the
    ``500.0`` of ``--slo-ttft-ms 500``."""
    text = known.attrs.get("slo", "")
    try:
        same = SLO(**json.loads(text)) == slo
    except (TypeError, ValueError, LlmssError):   # none, or not an SLO this version reads
        same = False
    if same:
        return None
    return f"its runs were judged by another SLO ({text or 'none'}) than this search's ({json.dumps(asdict(slo))})"


def _known_runs(known: Any, slo: SLO, points: list[dict], lo0: float, hi0: float) -> list[dict[float, dict]]:
    """Each configuration's runs in ``known`` (a sweep's Dataset) at rates in [lo0, hi0], rate -> result."""
    out: list[dict[float, dict]] = [{} for _ in points]
    if known is None:
        return out
    check_sweep(known, "capacity", "known", ("scenario", "status"))
    if (mismatch := other_slo(known, slo)) is not None:
        raise InputError(f"{mismatch}: run the sweep with slo=", "capacity", "known")
    by_config: dict[str, dict[float, dict]] = {}
    for key, result in _done(known).items():
        point = json.loads(key)
        rate = point.pop("rate", None)
        if is_real(rate) and "slo_met" in result["metrics"]:
            by_config.setdefault(_key(point), {})[float(rate)] = result
    for i, p in enumerate(points):
        runs = by_config.get(_key({k: v for k, v in p.items() if k != "rate"}), {})
        out[i] = {r: v for r, v in runs.items() if lo0 <= r <= hi0}
    return out


def _threads(c: Any) -> int:
    """The threads the cluster has now, at least one: the scheduler's total alone, not each worker's (one small round
    trip, asked each time a run comes in, so a cluster that scales up as the search goes is used)."""
    return max(1, int(c.scheduler_info(n_workers=0).get("total_threads", 0)))


def _say_small(slo: SLO, tails: Mapping[int, int], source: Any) -> None:
    """Warn, before the runs, of workloads too small for the SLO's quantile: a verdict that turns on one request
    flips between nearby rates (met above a rate that missed), and the search's answer with it."""
    for n, tail in sorted(tails.items()):
        enough = next(m for m in itertools.count(n) if slo.tail(m) >= MIN_TAIL)
        log.warning("%s: the p%g of %d requests has %d of them above it (under %d): each verdict turns on one "
                    "request, so verdicts can flip between nearby rates and max_rate with them; min_rate_missed "
                    "gives the bracket the search closed; num_requests >= %d puts %d above it", source,
                    100 * slo.quantile, n, tail, MIN_TAIL, enough, MIN_TAIL)


def _bracket(verdicts: Mapping[float, dict], where: str) -> tuple[float, float]:
    """The highest rate seen to meet the SLO and the lowest seen to miss it (NaN: none), from all of a
    configuration's runs; a warning naming ``where`` if the first lies above the second (verdicts not monotone in
    the rate)."""
    met = [r for r, v in verdicts.items() if v["status"] == "ok" and v["metrics"].get("slo_met") == 1.0]
    missed = [r for r, v in verdicts.items() if v["status"] == "ok" and v["metrics"].get("slo_met") == 0.0]
    top, bottom = max(met, default=math.nan), min(missed, default=math.nan)
    if top > bottom:
        log.warning("%s: the SLO was met at %g req/s above a miss at %g req/s: its verdicts are not monotone in the "
                    "rate there, and max_rate is the edge below the lowest miss", where, top, bottom)
    return top, bottom


def _search(c: Any, points: list[dict], ref: str, slo: SLO, verdicts: list[dict[float, dict]], plans: list[Plan],
            runs: np.ndarray, rounds: np.ndarray, plan: Callable[[int, Sequence[float], int], Plan], bar: Any,
            stop_when_met: bool = False, source: str = "sweep point", at: list[GridPoint] | None = None
            ) -> dict[str, int]:
    """Run every configuration's search at once, each at its own pace: a configuration's next runs are submitted
    as soon as the run it waits for is in (no round waits for the slowest run of all). The workers (counted again
    each time a run comes in: a cluster may scale as the search goes) are shared out among the configurations still
    searching, and each has as many middles of its bracket running at once as its share (at least one): with fewer
    searches than workers, the idle ones test more rates of a bracket per round.
    A run no longer needed (outside the bracket, or of a search that has its answer) is cancelled, and, as dask
    cannot interrupt a task, put on a board its run looks at (:class:`_Wanted`) to end itself and free its worker.

    ``runs``: runs made per configuration; ``rounds``: the longest chain of them each waited for the one before.
    ``stop_when_met``: a run the plan does not need whole stops once it has met the SLO, too. Returns how many
    runs stopped early, by verdict, and how many were cancelled."""
    from distributed import Variable, as_completed

    workers = _threads(c)
    owner: dict[Any, tuple[int, float]] = {}               # future -> (configuration, rate)
    flying: list[dict[float, Any]] = [{} for _ in points]  # per configuration: rate -> future
    round_of: dict[Any, int] = {}
    stopped = {"missed": 0, "met": 0, "cancelled": 0}
    pending = as_completed(loop=c.loop)   # c is not dask's default client
    board = Variable(f"llmss-capacity-cancelled-{uuid.uuid4().hex}", client=c)
    cancelled: list[str] = []
    board.set(cancelled)

    def advance(i: int, width: int) -> None:
        plans[i] = plan(i, list(flying[i]), width)
        for rate in plans[i].need:
            if rate not in flying[i]:
                fut = c.submit(run_point, {**points[i], "rate": float(rate)}, ref, slo, True,
                               stop_when_met and rate not in plans[i].whole, _Wanted(board.name), source=source,
                               grid_point=at[i] if at else None, pure=False)
                owner[fut], flying[i][rate], round_of[fut] = (i, rate), fut, rounds[i] + 1
                pending.add(fut)
        stale = [flying[i].pop(r) for r in list(flying[i]) if r not in plans[i].need]
        for fut in stale:
            del owner[fut], round_of[fut]
        if stale:
            c.cancel(stale)
            cancelled.extend(fut.key for fut in stale)
            board.set(cancelled)
            stopped["cancelled"] += len(stale)
        bar.total = max(bar.total, bar.n + len(owner))

    widths = [1] * len(points)

    def share_out() -> None:
        """Each live search's share of the workers; a search whose share grew gets its extra middles now."""
        live = [i for i, p in enumerate(plans) if p.state == "searching"]
        share, extra = divmod(workers, max(1, len(live)))
        for k, i in enumerate(live):
            width = max(1, share + (k < extra))
            if width != widths[i]:
                widths[i] = width
                advance(i, width)

    try:
        for i in range(len(points)):
            advance(i, 1)
        share_out()
        for fut in pending:
            if fut not in owner:   # cancelled
                continue
            i, rate = owner.pop(fut)
            del flying[i][rate]
            try:
                result = fut.result()
            except Exception as exc:   # noqa: BLE001 - a worker that died: this configuration fails, the rest go on
                result = worker_lost(exc)
            verdicts[i][rate] = result
            _log_result(at[i][0] if at else f"{source} {i}", result, rate)
            if "stopped_at_s" in result:
                stopped["met" if result["metrics"]["slo_met"] else "missed"] += 1
            runs[i] += 1
            rounds[i] = max(rounds[i], round_of.pop(fut))
            bar.update(1)
            advance(i, widths[i])
            now = _threads(c)   # a cluster that scaled (adaptive, or by hand) since the last run came in
            if plans[i].state != "searching" or now != workers:
                workers = now
                share_out()
    finally:
        c.cancel(list(owner))
        board.set(None)   # what still runs sees the search is over; not deleted: a look at a deleted Variable
        # raises, and the scheduler logs it as an error (a cluster given by the caller keeps this small Variable)
    return stopped


def capacity(base: Scenario, slo: SLO, grid: Grid | None = None, rate_range: tuple[float, float] = (0.5, 64.0),
             rel_tol: float = 0.05, client: Any = None, reference_dir: str | Path | None = None,
             n_workers: int | None = None, progress: bool = True, grid_source: str = "grid",
             known: xr.Dataset | None = None) -> xr.Dataset:
    """The highest arrival rate (req/s) each grid point sustains within ``slo``, by bisection.

    Every configuration is searched at once, each at its own pace (:func:`_plan`): its next rate is
    submitted as soon as the run it waits for is in. The bracket starts at ``rate_range`` and halves
    (geometrically) until hi / lo <= 1 + ``rel_tol``; with fewer searches left than workers, a search tests
    several rates of its bracket at once (:func:`_search`), in fewer rounds to the same answer. ``max_rate`` is
    the highest rate seen to meet the SLO (below the lowest seen to miss it); ``bound`` says whether it lies ``inside`` the range, at its top
    (``above``: even the highest rate met it) or below it (``below``: even the lowest failed; ``max_rate`` is
    NaN). The metrics of the run at ``max_rate`` come along (goodput, energy per token, ...). A run stops as soon
    as its SLO is certain to be missed (:meth:`SLO.lost`), or, where that pays (a low quantile), met
    (:meth:`SLO.won`; the answer's run is made whole): only its verdict is used. ``known``: a sweep's Dataset with
    the same ``slo`` (over the rate, say): its runs at a configuration's scenario with a rate in the range are
    used, not run again, and cut the bracket first (the answer then moves within ``rel_tol``, as any bisection of
    a monotone SLO). The attrs ``runs_made`` and ``runs_reused`` count the runs this search made and those it took
    from ``known``; ``runs_stopped_missed`` and ``runs_stopped_met`` those of its runs that stopped early, and
    ``runs_cancelled`` those it cancelled once it no longer needed them (each ends itself, :class:`_Wanted`).
    ``min_rate_missed``, the lowest rate seen to miss the SLO, closes the bracket with ``max_rate``; ``slo_tail``
    counts the requests above the SLO's quantile (:meth:`SLO.tail`): under MIN_TAIL a verdict turns on one request
    and verdicts flip between nearby rates, which is said before the runs (and any verdict seen met above a miss,
    after them).
    """
    _check_run_args(base, slo, "capacity", slo_needed=True)
    if base.trace:
        raise InputError("capacity search varies the synthetic arrival rate; this scenario replays a trace",
                         base.source, "trace")
    points = [grid] if isinstance(grid, Mapping) else grid if isinstance(grid, Sequence) else []
    if any(isinstance(p, Mapping) and "rate" in p for p in points):
        raise InputError("capacity search sets the rate itself (--rate-min/--rate-max, rate_range); drop it from "
                         "the grid", grid_source, "rate")
    where = "rate_range (--rate-min/--rate-max)"
    try:
        lo0, hi0 = (float(r) for r in rate_range)
    except (TypeError, ValueError):
        raise InputError(f"must be two numbers (low, high) in req/s, got {rate_range!r}", "capacity", where) from None
    if not (math.isfinite(lo0) and math.isfinite(hi0) and 0 < lo0 < hi0 and math.isfinite(hi0 / lo0)):
        raise InputError(f"must be finite rates with 0 < low < high, got {rate_range!r}", "capacity", where)
    try:
        tol = float(rel_tol)
    except (TypeError, ValueError):
        tol = math.nan
    if isinstance(rel_tol, bool) or not (math.isfinite(tol) and tol >= MIN_REL_TOL):
        raise InputError(f"must be a finite number >= {MIN_REL_TOL:g} (0.05: within 5%), got {rel_tol!r}",
                         "capacity", "rel_tol (--rel-tol)")
    rel_tol = tol
    _check_cluster_args(client, n_workers, "capacity")   # up front: before the progress bar opens
    dims, points = expand(base, grid if grid is not None else [{}], grid_source, reference_dir)
    tails = np.array([slo.tail(p["num_requests"]) for p in points])
    _say_small(slo, {p["num_requests"]: t for p, t in zip(points, tails) if t < MIN_TAIL}, base.source)
    ref = str(resolve_reference_dir(reference_dir))
    n = len(points)
    verdicts = _known_runs(known, slo, points, lo0, hi0)   # per configuration: rate -> its run
    reused = sum(map(len, verdicts))
    log.info("capacity search of %s: %d configuration%s of %s, %g to %g req/s until high/low <= %g, %s, %d runs "
             "reused; the workers read the reference data at %s", base.source, n, "s" if n > 1 else "", grid_source,
             lo0, hi0, 1 + rel_tol, slo, reused, ref)
    plans: list[Plan] = [Plan("searching")] * n
    runs, rounds = np.zeros(n, int), np.zeros(n, int)
    steps = math.ceil(math.log2(math.log(hi0 / lo0) / math.log1p(rel_tol))) if hi0 / lo0 > 1 + rel_tol else 0
    # A run that meets the SLO can stop once it is won, with about a fraction `quantile` of its requests done
    # (p90: at 94 % of the simulated time, p50: 56-60 %, on bench_capacity.py's points), sparing at most
    # 1 - quantile of a run for each of the bracket's levels; but if it is the answer (half the time) it is made
    # again whole for its metrics. It pays only where the first outweighs a run (p50 on a bracket of 7 levels
    # spares up to 3.5 runs; p90 at most 0.7, and in a cost model of the search it spent 6-10 % more).
    stop_when_met = (1 - slo.quantile) * steps > 1
    bar = progress_bar(total=n * (2 + steps), desc="capacity", unit="run", disable=not progress)
    try:
        with _client(client, n_workers, 2 * n, "capacity", bar) as c:
            stopped = _search(c, points, ref, slo, verdicts, plans, runs, rounds,
                              lambda i, flying, width: _plan(verdicts[i], lo0, hi0, rel_tol, flying, width), bar,
                              stop_when_met, base.source,
                              grid_points(grid if grid is not None else [{}], dims, points, grid_source))
        bar.total = bar.n     # configurations that settled early needed fewer runs than budgeted
    finally:
        bar.close()
    state = np.array([p.state for p in plans], dtype=object)
    ds = to_dataset(base, grid if grid is not None else [{}], dims, points, [p.row() for p in plans], slo,
                    input_files(base, grid, grid_source, reference_dir))
    shape = tuple(len(v) for v in dims.values())
    max_rate = np.array([p.rate for p in plans], dtype=float)   # NaN where no rate met the SLO (below, failed)
    ds["max_rate"] = (list(dims), max_rate.reshape(shape), {"units": "req/s",
                                                             "description": "highest rate seen to meet the SLO below "
                                                                            "the lowest seen to miss it"})
    keys = [k for k in dims if k in points[0]] or [k for k in points[0] if len({json.dumps(p[k]) for p in points}) > 1]
    configs = [", ".join([str(base.source), *(f"{k}={p[k]}" for k in keys)]) for p in points]
    missed = np.array([_bracket(v, where)[1] if st != "failed" else math.nan
                       for v, st, where in zip(verdicts, state, configs)])
    ds["min_rate_missed"] = (list(dims), missed.reshape(shape),
                             {"units": "req/s", "description": "lowest rate seen to miss the SLO: with max_rate, the "
                                                               "bracket the search closed (NaN: none missed)"})
    ds["slo_tail"] = (list(dims), tails.reshape(shape),
                      {"description": "requests above the SLO's quantile: few (under 10) make each verdict turn on "
                                      "one request, and verdicts flip between nearby rates"})
    ds["bound"] = (list(dims), state.astype(str).reshape(shape),
                   {"description": "inside the range, above its top, below its bottom, or failed"})
    ds["runs"] = (list(dims), runs.reshape(shape), {"description": "runs made for this configuration"})
    ds["rounds"] = (list(dims), rounds.reshape(shape),
                    {"description": "rounds of runs this configuration waited for, one after another"})
    ds.attrs.update({"title": "llmss_lab capacity search", "rate_range": list(rate_range), "rel_tol": rel_tol,
                     "runs_made": int(runs.sum()), "runs_reused": reused,
                     "runs_stopped_missed": stopped["missed"], "runs_stopped_met": stopped["met"],
                     "runs_cancelled": stopped["cancelled"]})
    return ds
