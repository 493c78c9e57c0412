"""One point of a sweep or one run of a capacity search, as a dask task: run, judged, and reported."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, LlmssError
from ..scenario import Scenario
from .grid import GridPoint
from .slo import SLO

log = logging.getLogger(__name__)


def num_gpus(scenario: Scenario, reference_dir: str | Path | None = None) -> int:
    """Accelerators the scenario occupies (the cost axis of a Pareto view)."""
    return sum(i.num_npus for i in scenario.cluster(reference_dir).instances)


STOP_CHECKS = 256   # a run that may stop early asks the SLO about this many times at most (each costs O(requests))
WANTED_EVERY_S = 0.2   # a capacity run asks its search this often at most whether it still wants it (a scheduler round trip)


class _Wanted:
    """Whether the capacity search that submitted the running dask task still wants it: not once the task's key is
    on the search's board (a dask Variable ``board`` holding the keys it cancelled), nor once the board is None
    (the search ended). dask cannot interrupt a running task, so a cancelled run kept its worker busy to its end;
    asked from the kernel's stop_when, this ends it instead. Each look is a round trip to the scheduler, so it
    looks every ``every_s`` of wall time at most, and says "wanted" in between."""

    def __init__(self, board: str, every_s: float = WANTED_EVERY_S) -> None:
        self.board, self.every_s = board, every_s
        self.next_look, self.key, self.variable = 0.0, None, None

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next_look:
            return True
        self.next_look = now + self.every_s
        if self.variable is None:
            from distributed import Variable, get_client, get_worker

            self.key, self.variable = get_worker().get_current_task(), Variable(self.board, client=get_client())
        cancelled = self.variable.get(timeout=0)
        return cancelled is not None and self.key not in cancelled


class _Verdict:
    """The kernel's stop_when for a run that only needs its SLO verdict: True once the SLO is lost (or, with
    ``met``, won), which ``slo_met`` then says, or once ``wanted()`` says the run is no longer wanted, which
    ``cancelled`` then says. Asked after every step that finishes requests, and every few steps besides (the
    kernel's clock, which only ``wanted`` needs: a long prefill finishes nothing), it looks at the SLO every
    n / STOP_CHECKS steps that finished requests (``slo`` None: never)."""

    def __init__(self, slo: SLO | None, expected: int | None, met: bool,
                 wanted: Callable[[], bool] | None = None) -> None:
        self.slo, self.expected, self.met, self.wanted = slo, expected, met, wanted
        self.calls, self.finished, self.slo_met, self.cancelled = 0, 0, 0.0, False

    def __call__(self, requests: Any, now_ns: float) -> bool:
        if self.wanted is not None and not self.wanted():
            self.cancelled = True
            return True
        if requests.num_finished == self.finished:   # asked on the clock: nothing new for the SLO
            return False
        self.finished = requests.num_finished
        self.calls += 1
        if self.slo is None or self.calls % max(1, len(requests.arrival) // STOP_CHECKS):
            return False
        if self.slo.lost(requests, now_ns):
            return True
        self.slo_met = float(self.met and self.slo.won(requests, now_ns, self.expected))
        return bool(self.slo_met)


def run_point(scenario: dict[str, Any], reference_dir: str | None, slo: SLO | None = None,
              stop_early: bool = False, stop_when_met: bool = False,
              wanted: Callable[[], bool] | None = None, source: str = "sweep point",
              grid_point: GridPoint | None = None) -> dict[str, Any]:
    """Run one point; never raises (a sweep must not lose its other points): failures come back as
    ``{"status": "failed", "error": ...}``. Module-level so dask can ship it to any worker.

    ``stop_early`` (with an ``slo``): a run stops as soon as its SLO is certain to be missed (:meth:`SLO.lost`),
    or, with ``stop_when_met``, met (:meth:`SLO.won`), and comes back with the one metric ``slo_met`` and
    ``stopped_at_s``, the simulated time it stopped at; a capacity search needs no more of a run that fails, nor
    of one that meets the SLO below the rate it answers. ``wanted`` (:class:`_Wanted`), asked as the run goes: once
    it says False the run stops and comes back ``cancelled``, with no metrics and ``stopped_at_s``; its search
    has cancelled it and takes no verdict from it. ``source``: what the point's errors name (the base scenario's
    file); ``grid_point``: what names the point in its grid file and the fields the grid sets there, which an error
    at one of those fields names instead (the value came from the grid, not from the scenario file)."""
    from ..kernel.simulator import RunStopped

    t0 = time.perf_counter()
    try:
        sc = Scenario.from_dict(scenario, source)
        expected = sc.num_requests if not sc.trace else None   # a trace's: as many as it holds
        judge = slo if stop_early else None
        verdict = _Verdict(judge, expected, stop_when_met, wanted) if judge is not None or wanted else None
        try:
            res = sc.run(reference_dir, stop_when=verdict)
        except RunStopped as stopped:
            status, metrics = ("cancelled", {}) if verdict.cancelled else ("ok", {"slo_met": verdict.slo_met})
            return {"status": status, "metrics": metrics, "error": "", "wall_s": time.perf_counter() - t0,
                    "stopped_at_s": stopped.now_ns * 1e-9}
        metrics = {k: float(v) for k, v in res.summary().items() if isinstance(v, (int, float))}
        metrics["num_gpus"] = float(num_gpus(sc, reference_dir))
        if slo is not None:
            r = res.requests
            metrics.update(slo.evaluate(r.ttft.values, r.tpot.values, metrics["duration_s"], sc.num_requests
                                        if not sc.trace else len(r.request)))
        return {"status": "ok", "metrics": metrics, "error": "", "wall_s": time.perf_counter() - t0}
    except LlmssError as exc:
        error = str(exc)
        if (grid_point is not None and isinstance(exc, InputError) and exc.source == source
                and not set(grid_point[1]).isdisjoint((exc.where or "").split(", "))):
            error = str(InputError(exc.message, grid_point[0], exc.where))   # the grid's value, not the file's
    except Exception as exc:   # noqa: BLE001 - a bug in one point is reported there, the rest go on
        error = f"{type(exc).__name__}: {exc}"
    return {"status": "failed", "metrics": {}, "error": error, "wall_s": time.perf_counter() - t0}


def worker_lost(exc: BaseException) -> dict[str, Any]:
    """The result of a point whose worker died under it (dask raises it from the future): failed, with no wall time."""
    return {"status": "failed", "metrics": {}, "error": f"worker lost: {exc}", "wall_s": math.nan}


def _log_result(name: str, result: dict, rate: float | None = None) -> None:
    """A run that came in, for ``-v``: a long sweep's table shows its points only at the end."""
    verdict = result["status"]
    if result["status"] == "failed":
        verdict += f" ({result['error']})"
    elif "slo_met" in result["metrics"]:
        verdict += f", SLO {'met' if result['metrics']['slo_met'] else 'missed'}" + (
            f" (stopped at {result['stopped_at_s']:.1f} s of serving)" if "stopped_at_s" in result else "")
    log.info("%s%s: %s in %.2f s", name, "" if rate is None else f" at {rate:g} req/s", verdict, result["wall_s"])


def _check_run_args(base: Any, slo: Any, source: str, slo_needed: bool = False) -> None:
    """A scenario and an SLO of the right kind, named before any point runs (a dict for an SLO reached
    dataclasses.asdict deep in the run)."""
    if not isinstance(base, Scenario):
        raise InputError(f"expected a Scenario (ll.Scenario(...) or Scenario.load(path)), got {type(base).__name__}",
                         source, "base")
    if not isinstance(slo, SLO) and (slo_needed or slo is not None):
        raise InputError(f"expected an SLO (ll.SLO(ttft_ms=..., tpot_ms=...)){'' if slo_needed else ' or None'}, "
                         f"got {slo!r}", source, "slo")
