"""Design-space sweeps and capacity search on dask.distributed, with the results as one xarray Dataset.

A sweep runs a :class:`~llmss_lab.scenario.Scenario` at every point of a grid — a mapping
``{field: [values]}`` (the cartesian product; each field becomes a dimension) or a list of
``{field: value}`` points (one ``point`` dimension). Each point is an independent task on a
dask.distributed cluster: a LocalCluster of worker processes by default, or any ``Client`` or
scheduler address unchanged. Points that fail (a TP the profile lacks, a model that does not fit)
are marked ``failed`` with the error kept; the others complete. With ``save_to`` the Dataset is
written (atomically) as points arrive, and ``resume`` reuses every point already done there.

:func:`capacity` finds, for each point of a grid, the highest arrival rate whose run meets an
SLO (a percentile of TTFT and/or TPOT), by bisection on the rate; :func:`pareto_front` marks the
points no other point beats on every objective.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import xarray as xr

from .config.reader import as_path, closest, is_real, plain, store_plain
from .errors import ClusterStartError, InputError, LlmssError
from .files import absent, check_writable_file, ctrl_c_held, kind_of, not_netcdf, replacing
from .progress import progress_bar
from .reference import resolve_reference_dir
from .scenario import FIELD_UNITS, GENERATOR_FIELDS, Scenario

log = logging.getLogger(__name__)

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
CONNECT_TIMEOUT_S = 20.0   # a scheduler address that does not answer within this is an error, not a hang
HANDSHAKE_S = 5.0          # a dask scheduler sends its handshake as soon as a connection opens
WORKER_WAIT_S = 60.0       # nor is a scheduler that has no worker to run the points after this
LOCAL_START_TRIES = 2      # starts of a LocalCluster before its failure is an error
MIN_REL_TOL = 1e-6         # a finer bracket than this only spends runs on float rounding
MIN_TAIL = 10              # requests above an SLO's quantile for a verdict that does not turn on one or two of them
UNITS = {"energy_per_output_token_J": "J/token", "_ms": "ms", "_J": "J", "_s": "s", "request_throughput": "req/s",
         "token_throughput": "tok/s", "output_throughput": "tok/s", "goodput": "req/s", "rate": "req/s",
         "tokens": "tokens"}


@dataclass(frozen=True)
class SLO:
    """A service-level objective: the ``quantile`` of TTFT and of TPOT must stay within the limits
    (None: no limit on that metric), and every request must finish."""
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    quantile: float = 0.9

    def __post_init__(self) -> None:
        if self.ttft_ms is None and self.tpot_ms is None:
            raise InputError("an SLO needs a TTFT or a TPOT limit", "slo")
        store_plain(self)
        for key in ("ttft_ms", "tpot_ms"):
            v = getattr(self, key)
            if v is not None and not (is_real(v) and v > 0):
                raise InputError(f"must be a positive number of ms, got {v!r}", "slo", key)
        if not (is_real(self.quantile) and 0 < self.quantile <= 1):
            raise InputError(f"must be in (0, 1], got {self.quantile!r}", "slo", "quantile")

    def evaluate(self, ttft_ms: np.ndarray, tpot_ms: np.ndarray, duration_s: float, expected: int) -> dict[str, float]:
        """Goodput (requests meeting both limits per second of the run), the quantiles and whether the run meets the SLO."""
        ok = np.ones(len(ttft_ms), bool)
        out: dict[str, float] = {}
        met = len(ttft_ms) == expected
        for name, values, limit in (("ttft", ttft_ms, self.ttft_ms), ("tpot", tpot_ms, self.tpot_ms)):
            if limit is None:
                continue
            v = np.nan_to_num(values, nan=0.0)      # one-token outputs have no TPOT: no limit to break
            q = float(np.quantile(v, self.quantile)) if len(v) else math.inf
            out[f"slo_{name}_ms"] = q
            met = met and q <= limit
            ok &= v <= limit
        out["goodput"] = float(ok.sum() / duration_s) if duration_s > 0 else 0.0
        out["slo_met"] = float(met)
        return out

    def tail(self, n: int) -> int:
        """Requests above the quantile of ``n`` (numpy's linear quantile lies between the order statistics
        ``floor((n - 1) q)`` and the next, from 0): the verdict turns on whether that many, or one more, are over a
        limit. With few (p90 of 16: 2) one request decides it, and verdicts flip between nearby rates."""
        return n - 1 - math.floor((n - 1) * self.quantile + 1e-9)

    def lost(self, requests: Any, now_ns: float) -> bool:
        """Whether a run is already certain to miss the SLO at ``now_ns``, whatever its later steps do: enough of
        its requests have a TTFT or TPOT over the limit, or will have, to put the quantile over it.

        ``requests`` is the kernel's request table (times in ns, -1 where not yet). A first token still to come
        comes at ``now_ns`` or later, and so does the last token of an unfinished request; each request's TTFT
        and TPOT are computed as the results compute them, with those times in place of the ones to come, so
        that each is at most the value the finished run would give (each float operation is monotone).
        :meth:`evaluate` takes numpy's linear quantile of the n values, which is at least their order statistic
        ``floor((n - 1) q)`` (from 0): once ``n - floor((n - 1) q)`` values are over the limit, so are that
        statistic and the quantile. The margin keeps the index at or below numpy's, however it rounds ``(n-1) q``.
        """
        R = requests
        n = len(R.arrival)
        need = n - max(0, math.floor((n - 1) * self.quantile - 1e-9))
        s = 1e-9
        started = R.first_token >= 0
        if self.ttft_ms is not None:
            first = np.where(started, R.first_token, now_ns)
            ttft = (first * s - R.arrival * s) * 1e3
            if np.count_nonzero(ttft > self.ttft_ms) >= need:
                return True
        if self.tpot_ms is not None:
            timed = started & (R.output > 1)   # one-token outputs have no TPOT (evaluate counts them as 0)
            last = np.where(R.finished >= 0, R.finished, now_ns)[timed]
            tpot = (last * s - R.first_token[timed] * s) / (R.output[timed] - 1) * 1e3
            if np.count_nonzero(tpot > self.tpot_ms) >= need:
                return True
        return False

    def won(self, requests: Any, now_ns: float, expected: int | None = None) -> bool:
        """Whether a run is already certain to meet the SLO, whatever its later steps do: enough of its requests
        have a TTFT and a TPOT within the limits for good to hold every quantile the limits apply to.

        A TTFT is final once the first token is out, a TPOT once the last one is (computed as the results compute
        them, so each is the very value :meth:`evaluate` sees); one-token outputs count as a TPOT of 0 from the
        start, as there. Any other value can still grow without bound, so it is taken as over the limit. numpy's
        linear quantile of n values lies between its order statistics ``floor(h)`` and ``floor(h) + 1`` (from 0,
        h = (n - 1) q) and never above the larger (its rounding included): once ``floor(h) + 2`` final values are
        within the limit, so are both statistics and the quantile. That makes this exact for a quantile, which is
        all an SLO limits; a mean could not be decided before the last request, as one request still to come can
        move it anywhere. It also needs every one of the ``expected`` requests to finish, which a run that ends
        does (the kernel raises otherwise, the 100-day horizon the one way): the verdict is that of the whole run.
        ``expected``: the requests the scenario asked for (None: as many as the run has).
        """
        R = requests
        n = len(R.arrival)
        if expected is not None and n != expected:
            return False
        need = min(n, math.floor((n - 1) * self.quantile + 1e-9) + 2)   # the margin: however numpy rounds h
        s = 1e-9
        if self.ttft_ms is not None:
            first = R.first_token[R.first_token >= 0]
            arrival = R.arrival[R.first_token >= 0]
            if np.count_nonzero((first * s - arrival * s) * 1e3 <= self.ttft_ms) < need:
                return False
        if self.tpot_ms is not None:
            done = (R.finished >= 0) & (R.output > 1)
            tpot = (R.finished[done] * s - R.first_token[done] * s) / (R.output[done] - 1) * 1e3
            if np.count_nonzero(tpot <= self.tpot_ms) + np.count_nonzero(R.output <= 1) < need:
                return False
        return True


# ---- one point ------------------------------------------------------------------------------------

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


GridPoint = tuple[str, tuple[str, ...]]   # what names a point in its grid file, and the fields the grid sets there


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
    from .kernel.simulator import RunStopped

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


# ---- grids ----------------------------------------------------------------------------------------

MAX_POINTS = 10_000   # ~6 min at the ~27 points/s of two cores; the file is rewritten whole as points arrive


def _check_size(n: int, source: str) -> None:
    """Refuse a grid too large to run or save in reasonable time, before its points are built (a grid of
    27 million points sat silent for minutes)."""
    if n > MAX_POINTS:
        raise InputError(f"{n:,} points, more than {MAX_POINTS:,}: coarsen the grid or split it into sweeps of "
                         "their own files (a capacity search needs no rate dimension)", source)


# fields that are no sweep axis: bin_s changes nothing a sweep keeps (each point's summary metrics), and an
# efficiency file is a calibration of the latency model, kept in the points by name only
NOT_SWEPT = {"bin_s": "is not a sweep axis: it sets the width of each run's time series and power bins, and a sweep "
                      "keeps only each point's summary metrics, which are the same at every width; drop it from the "
                      "grid (the scenario's bin_s still sets its runs' bins)",
             "efficiency_file": "is not a sweep axis: it calibrates the analytical model rather than setting the system "
                                "served, and a point records the file's name, not the curves it held; set it in the "
                                "scenario and run the sweep once per fit"}


def _not_a_field(key: str, known: set[str]) -> str:
    hint = closest(key, known)
    return (f"not a scenario field (did you mean {hint!r}?)" if hint else
            f"not a scenario field (fields: {', '.join(sorted(known))})")


def expand(base: Scenario, grid: Grid, source: str = "grid",
           reference_dir: str | Path | None = None) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """The sweep's dimensions and the scenario dict of every point (in C order over the dims).

    A mapping is a cartesian grid: ``{"tp": [1, 2], "max_num_seqs": [64, 256]}`` -> dims tp x
    max_num_seqs. A list of mappings is a list of points -> dim ``point`` of that length. Field
    names and value types are checked here, so a typo stops the sweep before any point runs.
    """
    known = {f.name for f in fields(Scenario)}
    if isinstance(grid, Mapping):
        if not grid:
            raise InputError("the grid is empty: give at least one field with a list of values", source)
        dims: dict[str, list] = {}
        for key, values in grid.items():
            if key not in known:
                raise InputError(_not_a_field(key, known), source, key)
            if key in NOT_SWEPT:
                raise InputError(NOT_SWEPT[key], source, key)
            if isinstance(values, np.ndarray) and values.ndim == 1:
                values = values.tolist()   # np.arange(...), np.linspace(...): plain Python values
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                single = not any(isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, (str, bytes))
                                 for v in grid.values())   # a scenario's file given as the grid
                raise InputError(f"must be a non-empty list of values, got {values!r}" + (
                    f"; no field of the grid has a list: a scenario? a grid gives each field its values, "
                    f"{key}: [{values!r}, ...]" if single else ""), source, key)
            values = [plain(v) for v in values]
            twice = next((v for j, v in enumerate(values) if v in values[:j]), None)
            if twice is not None:
                raise InputError(f"lists {twice!r} twice: each value is one point of the sweep", source, key)
            dims[key] = values
        _check_size(math.prod(len(v) for v in dims.values()), source)
        overrides = [dict(zip(dims, combo)) for combo in itertools.product(*dims.values())]
    elif isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)) and len(grid) > 0:
        _check_size(len(grid), source)
        overrides = []
        seen: dict[str, int] = {}   # a point's key -> its index: a repeat is found without comparing every pair
        for i, point in enumerate(grid):
            if not isinstance(point, Mapping):
                raise InputError(f"point {i} must be a mapping of scenario fields, got {point!r}", source, f"points[{i}]")
            for key in point:
                if key not in known:
                    raise InputError(_not_a_field(key, known), source, f"points[{i}].{key}")
                if key in NOT_SWEPT:
                    raise InputError(NOT_SWEPT[key], source, f"points[{i}].{key}")
            point = {k: plain(v) for k, v in point.items()}
            key = _key({k: float(v) if is_real(v) else v for k, v in point.items()})   # 1 and 1.0 are one value
            if key in seen:
                raise InputError(f"is point {seen[key]} again: each point runs once", source, f"points[{i}]")
            seen[key] = i
            overrides.append(point)
        dims = {"point": list(range(len(overrides)))}
    else:
        raise InputError("a grid is a mapping {field: [values]} or a non-empty list of points", source)
    base_dict = base.to_dict()
    points, scenarios = [], []
    ignored_by: dict[tuple[str, str], dict[str, str]] = {}   # what a point ignores follows its file and trace
    named: set[tuple[str, str]] = set()   # (model, hardware) pairs checked
    for i, o in enumerate(overrides):
        where = f"{source}: point {i} ({', '.join(f'{k}={v!r}' for k, v in o.items())})"
        sc = Scenario.from_dict({**base_dict, **o}, where)
        if (sc.model, sc.hardware) not in named:   # a slip in a name stops the sweep, not one point of it
            sc.check_names(reference_dir, where)
            named.add((sc.model, sc.hardware))
        if (sc.cluster_config, sc.trace) not in ignored_by:   # reading the cluster file once, not per point
            ignored_by[sc.cluster_config, sc.trace] = sc.ignored(reference_dir)
        ignored = ignored_by[sc.cluster_config, sc.trace]
        for key in o:
            if key in ignored:
                raise InputError(f"has no effect: {ignored[key]} (every value would run the same point); "
                                 "drop this field from the grid, or sweep without the "
                                 f"{'trace' if key in GENERATOR_FIELDS else 'cluster_config'}", where, key)
        points.append(sc.to_dict())
        scenarios.append(sc)
    _say_inert(scenarios, points, source, reference_dir)
    return dims, points


def _say_inert(scenarios: list[Scenario], points: list[dict], source: str,
               reference_dir: str | Path | None) -> None:
    """A field the sweep varies that has no effect at any of its points (the gate's skew with the balanced gate,
    a router with one replica): its values will give the same numbers, which is worth a word before they run."""
    varied = [k for k in points[0] if len({json.dumps(p[k]) for p in points}) > 1]
    if not varied:
        return
    try:
        inert = [sc.inert(reference_dir) for sc in scenarios]
    except LlmssError:   # no reference folder to tell: the points' runs name it
        return
    for key in varied:
        if all(key in i for i in inert):
            log.warning("%s: %s has no effect at any point of the sweep (%s): its values will give the same numbers",
                        source, key, inert[0][key])


def read_grid(path: str | Path) -> Grid:
    """A grid from a YAML (or JSON) file: ``{field: [values], ...}`` or ``points: [{field: value}, ...]``."""
    from .config.reader import read_yaml

    data = read_yaml(path)
    if isinstance(data, Mapping) and set(data) == {"points"}:
        data = data["points"]
        if not isinstance(data, list) or not data:
            raise InputError(f"must be a non-empty list of points (mappings of scenario fields), got {data!r}", path,
                             "points")
    known = {f.name for f in fields(Scenario)}
    if isinstance(data, Mapping):
        for key in data:
            if key not in known:
                raise InputError(_not_a_field(str(key), known), path, str(key))
    elif isinstance(data, list):
        for i, point in enumerate(data):
            if not isinstance(point, Mapping):
                raise InputError(f"must be a mapping of scenario fields, got {point!r}", path, f"points[{i}]")
            for key in point:
                if key not in known:
                    raise InputError(_not_a_field(str(key), known), path, f"points[{i}].{key}")
    else:
        raise InputError("a grid file holds a mapping {field: [values]} or `points:` with a list of mappings", path)
    return data


def grid_points(grid: Grid, dims: dict[str, list], points: list[dict], source: str) -> list[GridPoint]:
    """Each point's name in its grid file, as :func:`expand` gives it, and the fields the grid sets there."""
    keys = [tuple(dims)] * len(points) if isinstance(grid, Mapping) else [tuple(p) for p in grid]
    return [(f"{source}: point {i} ({', '.join(f'{k}={p[k]!r}' for k in ks)})", ks)
            for i, (p, ks) in enumerate(zip(points, keys))]


def _key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


def _current(point: Any) -> Any:
    """A scenario saved by an earlier version, with the fields added since at their defaults (which is
    what that version ran), so its sweep file can still be resumed."""
    return {**Scenario().to_dict(), **point} if isinstance(point, dict) else point


# ---- the Dataset ----------------------------------------------------------------------------------

def _units(name: str) -> str:
    return next((u for suffix, u in UNITS.items() if name.endswith(suffix) or name == suffix), "")


def to_dataset(base: Scenario, grid: Grid, dims: dict[str, list], points: list[dict], results: list[dict | None],
               slo: SLO | None = None) -> xr.Dataset:
    """Results laid out on the sweep's dims: one variable per metric (NaN where a point failed or is
    pending), ``status``, ``error``, ``wall_s`` and the ``scenario`` JSON of every point."""
    shape = tuple(len(v) for v in dims.values())
    names: list[str] = []
    for r in results:
        for k in (r or {}).get("metrics", {}):
            if k not in names:
                names.append(k)
    data = {k: np.full(len(points), np.nan) for k in names}
    status = np.array(["pending"] * len(points), dtype=object)
    error = np.array([""] * len(points), dtype=object)
    wall = np.full(len(points), np.nan)
    for i, r in enumerate(results):
        if r is None:
            continue
        status[i], error[i], wall[i] = r["status"], r["error"], r["wall_s"]
        for k, v in r["metrics"].items():
            data[k][i] = v
    dim_names = list(dims)
    coords: dict[str, Any] = {d: (d, _coord(v), _coord_attrs(d, v)) for d, v in dims.items()}
    if dim_names == ["point"]:   # a list of points: every field that varies is a coordinate along it
        varying = sorted({k for p in grid for k in p})
        for k in varying:
            values = [p[k] for p in points]
            coords[k] = ("point", _coord(values), _coord_attrs(k, values))
    variables = {k: (dim_names, v.reshape(shape), {"units": _units(k)}) for k, v in data.items()}
    variables["status"] = (dim_names, status.reshape(shape).astype(str), {"description": "ok, failed or pending"})
    variables["error"] = (dim_names, error.reshape(shape).astype(str), {"description": "why a point failed"})
    variables["wall_s"] = (dim_names, wall.reshape(shape), {"units": "s", "description": "simulation wall time"})
    variables["scenario"] = (dim_names, np.array([json.dumps(p) for p in points], dtype=object)
                             .reshape(shape).astype(str), {"description": "the scenario of each point (JSON)"})
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({"title": "llmss_lab sweep", "base_scenario": json.dumps(base.to_dict()),
                     "grid": json.dumps(grid if isinstance(grid, Mapping) else list(grid), default=str),
                     "slo": json.dumps(asdict(slo)) if slo else "",
                     "points_ok": int((status == "ok").sum()), "points_failed": int((status == "failed").sum())})
    return ds


def _coord_attrs(field: str, values: list) -> dict[str, str]:
    """The field's units on a numeric coordinate, so that views label its axis (none on text and true/false)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return {"units": FIELD_UNITS[field]} if numeric and field in FIELD_UNITS else {}


def _coord(values: list) -> np.ndarray:
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values)
    return np.array([str(v) for v in values], dtype=str)


def save(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a sweep Dataset to netCDF atomically: a failed write leaves the previous file, and a Ctrl-C waits
    for the write to finish."""
    path = as_path(path)
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path.parent)
    with ctrl_c_held(), replacing(path) as tmp:
        ds.to_netcdf(tmp)
    return path


def load(path: str | Path) -> xr.Dataset:
    path = as_path(path)
    if why := absent(path):
        raise InputError(why, path)
    if not path.is_file():
        raise InputError(f"is {kind_of(path)}, not a sweep file", path)
    if why := not_netcdf(path):
        raise InputError(f"not a netCDF sweep file: {why}", path)
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"not a netCDF sweep file ({str(exc).splitlines()[0]})", path) from None
    if "scenario" not in ds or "status" not in ds:
        raise InputError("not a sweep file (no scenario/status variables)", path)
    for name, coord in ds.coords.items():   # a file written before coordinates had units
        if "units" not in coord.attrs and coord.dtype.kind in "iuf":
            coord.attrs.update(_coord_attrs(str(name), [0]))
    return ds


def _done(ds: xr.Dataset) -> dict[str, dict]:
    """Points already finished (ok) in a saved sweep, keyed by their scenario JSON."""
    out = {}
    metrics = [v for v in ds.data_vars if v not in ("status", "error", "wall_s", "scenario")]
    for idx in np.ndindex(ds.status.shape):
        if str(ds.status.values[idx]) != "ok":
            continue
        point = _current(json.loads(str(ds.scenario.values[idx])))
        out[_key(point)] = {"status": "ok", "error": "", "wall_s": float(ds.wall_s.values[idx]),
                            "metrics": {m: float(ds[m].values[idx]) for m in metrics
                                        if not np.isnan(ds[m].values[idx])}}
    return out


def _check_same_sweep(old: xr.Dataset, base: Scenario, dims: dict[str, list], points: list[dict],
                      path: Path) -> None:
    """Resuming rewrites the file with this sweep's points: refuse if it holds another sweep's results,
    which would be lost."""
    old_points = [_current(json.loads(str(s))) for s in old.scenario.values.ravel()]
    if list(old.scenario.dims) == list(dims) and old_points == points:
        return
    what = []
    try:
        old_base = _current(json.loads(str(old.attrs.get("base_scenario", ""))))
    except ValueError:
        old_base = None
    new_base = base.to_dict()
    if isinstance(old_base, dict) and old_base != new_base:
        keys = sorted(k for k in set(old_base) | set(new_base) if old_base.get(k) != new_base.get(k))
        what.append("base scenario: " + ", ".join(f"{k} {old_base.get(k)!r} there, {new_base.get(k)!r} here"
                                                  for k in keys[:4]) + (", ..." if len(keys) > 4 else ""))

    def shape(d: Mapping[str, list]) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items())

    old_dims = {str(d): [v.item() for v in old[d].values] if d in old.coords else list(range(old.sizes[d]))
                for d in old.scenario.dims}
    same = list(old_dims) == list(dims) and all(
        old_dims[d] == list(v) or old_dims[d] == [str(x) for x in v] for d, v in dims.items())
    if not same:
        what.append(f"grid: {shape(old_dims)} there, {shape(dims)} here")
    if not what:
        what.append("the points' scenarios differ")
    raise InputError(f"holds the results of a different sweep ({'; '.join(what)}); resuming would overwrite "
                     "them: give another --out (save_to), or resume with the same scenario and grid",
                     path, "--resume")


# ---- running --------------------------------------------------------------------------------------

MAX_WORKERS_PER_CORE = 4


def _check_cluster_args(client: Any, n_workers: Any, source: str) -> None:
    """Bad cluster arguments fail here, before anything runs: a LocalCluster of no workers waits
    forever, and a malformed address is a bare ValueError deep inside dask."""
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise InputError(f"must be a whole number of worker processes >= 1, got {n_workers!r}", source,
                         "--workers (n_workers)")
    if n_workers is not None and client is not None:   # the scheduler's own workers run the points
        raise InputError("sizes the local cluster started when no scheduler is given; a --dask-scheduler (client) "
                         "runs the points on its own workers", source, "--workers (n_workers)")
    most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if n_workers is not None and n_workers > most:   # they would share the memory until each one pauses
        raise InputError(f"{n_workers} local worker processes on {os.cpu_count()} cores would only split the "
                         f"memory (each point runs on one core); give at most {most}, or a --dask-scheduler",
                         source, "--workers (n_workers)")
    if isinstance(client, str):
        from distributed.comm import get_address_host_port, parse_address

        where = "--dask-scheduler (client)"
        try:
            scheme, _ = parse_address(client)
            if scheme in ("tcp", "tls", "ws", "wss"):
                host, port = get_address_host_port(client)
                if not host or not 0 < port < 65536:
                    raise ValueError("needs a host and a port from 1 to 65535")
        except (ValueError, TypeError) as exc:
            raise InputError(f"{client!r} is not a dask scheduler address ({exc}); give tcp://HOST:PORT",
                             source, where) from None
    elif client is not None and not hasattr(client, "submit"):
        raise InputError(f"must be a scheduler address or a distributed.Client, got {client!r}", source,
                         "--dask-scheduler (client)")


def _main_script() -> Path | None:
    """The script (or ``python -m`` module) this process runs, if a new worker process would import it again:
    dask starts workers by spawning, and a spawned process re-runs the main module's top-level code."""
    import dask

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)   # none in Jupyter, the REPL and python -c
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if not path or name.endswith("__main__") or \
            dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return None   # a package's __main__ (python -m llmss_lab, python -m pytest) is not run again
    return Path(path)


def _check_main_guard() -> None:
    """A script that starts a sweep at its top level, unguarded, would start it again in every worker it spawns,
    and the workers die with an error that reaches the user as 'Nanny failed to start': say what to do instead."""
    script = _main_script()
    if script is None:
        return
    try:
        text = script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if not re.search(r"""__name__\s*==\s*['"]__main__['"]""", text):
        raise InputError("a sweep starts dask worker processes, and each of them imports this script again: put "
                         "the code that runs the sweep under `if __name__ == \"__main__\":`", script)


@contextmanager
def local_client(n_workers: int) -> Iterator[Any]:
    """A Client on a LocalCluster of ``n_workers`` worker processes, both closed on exit.

    distributed gives its event-loop thread a fixed 10 s to start; a machine busy for a moment
    can miss that, so a failed start is tried once more before it is an error. A Ctrl-C while the
    workers start takes effect once they are up: a half-started cluster cannot be closed, and dask's
    exit hook then printed a traceback after the sweep had said it was interrupted."""
    from distributed import Client, LocalCluster

    _check_main_guard()
    cluster = c = None
    try:
        for attempt in range(1, LOCAL_START_TRIES + 1):
            try:
                # processes: the kernel is pure Python, so threads would share one GIL; the dashboard on a
                # free port (":8787" may be taken, and None does not turn it off)
                with ctrl_c_held():
                    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", preload=[__name__])   # dask_setup below
                break
            except (AssertionError, RuntimeError, TimeoutError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == LOCAL_START_TRIES:
                    script = _main_script()
                    hint = (f"; if {script.name} starts the sweep outside `if __name__ == \"__main__\":`, move it "
                            "under that guard (each worker process imports the script again)") if script else ""
                    raise ClusterStartError(
                        f"dask could not start a local cluster of {n_workers} worker process(es) in "
                        f"{LOCAL_START_TRIES} tries (last: {why}); the machine may be short of CPU or memory: try "
                        f"fewer --workers, or start a dask cluster yourself and give --dask-scheduler{hint}") from exc
                log.warning("dask's local cluster did not start (%s); trying once more", why)
        c = Client(cluster, set_as_default=False)   # no global dask config left behind
        yield c
    finally:
        dask_log = logging.getLogger("distributed")
        level = dask_log.level
        dask_log.setLevel(logging.CRITICAL)   # heartbeats racing the shutdown log errors nobody can act on
        try:
            if c is not None:
                c.close()
            if cluster is not None:
                cluster.close()
        finally:
            dask_log.setLevel(level)


def _not_closing_on_a_cancelled_run(record: logging.LogRecord) -> bool:
    """False for the warning a worker logs when it closes under a run the search cancelled and the run has not
    yet seen it ("Async instruction for <Task cancelled ...> ended with CancelledError"): expected, and nothing a
    user can act on, where `llmss capacity` printed it under its table."""
    return not record.getMessage().endswith("ended with CancelledError")


def dask_setup(worker: Any) -> None:
    """dask's preload hook, run as each worker process of a local cluster starts: a Ctrl-C in the terminal
    reaches the whole process group, and the sweep stops its workers itself. Left to them, each printed a
    traceback, and the points they were running were saved as failed ("worker lost")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_not_closing_on_a_cancelled_run)


def _knock(address: str) -> float:
    """Raise OSError at once if nothing listens at a network scheduler address (dask's Client would
    retry a refused connection until its timeout, and leaves its event-loop thread running when it
    gives up), or if what answers at a tcp address does not speak first as dask does; returns the
    seconds of CONNECT_TIMEOUT_S left for the Client."""
    from distributed.comm import get_address_host_port, parse_address

    t0 = time.monotonic()
    scheme = parse_address(address)[0]
    if scheme in ("tcp", "tls", "ws", "wss"):
        with socket.create_connection(get_address_host_port(address), timeout=CONNECT_TIMEOUT_S) as sock:
            if scheme == "tcp":   # a dask scheduler speaks first (its handshake); a server that accepts and then
                sock.settimeout(HANDSHAKE_S)   # waits (HTTP) would hold the Client past its own timeout, for ever
                try:
                    first = sock.recv(1)
                except socket.timeout:
                    raise ConnectionError(f"it accepted the connection but sent nothing in {HANDSHAKE_S:g} s, as a "
                                          "dask scheduler would at once") from None
                if not first:
                    raise ConnectionError("it closed the connection at once")
    return max(1.0, CONNECT_TIMEOUT_S - (time.monotonic() - t0))


@contextmanager
def _client(client: Any, n_workers: int | None, n_tasks: int, source: str = "sweep", bar: Any = None) -> Iterator[Any]:
    """:func:`_connect`, with the progress ``bar`` saying what it waits for meanwhile: a local cluster takes
    seconds to start, a remote scheduler as long as its network."""
    show = bar is not None and not bar.disable and not hasattr(client, "submit")   # a Client: nothing to wait for
    label = bar.desc if show else ""
    if show:
        waiting = "starting dask workers" if client is None else "connecting to dask"
        bar.set_description_str(f"{label} ({waiting})")
    with _connect(client, n_workers, n_tasks, source) as c:
        if show:
            bar.set_description_str(label)
        yield c


@contextmanager
def _connect(client: Any, n_workers: int | None, n_tasks: int, source: str = "sweep") -> Iterator[Any]:
    """The given Client, a Client on a scheduler address, or a LocalCluster of worker processes."""
    from distributed import Client

    if client is None:
        n = n_workers or max(1, min(os.cpu_count() or 1, n_tasks))
        log.info("starting a local dask cluster of %d worker process%s", n, "es" if n > 1 else "")
        with local_client(n) as c:
            yield c
    elif isinstance(client, str):
        where = "--dask-scheduler (client)"
        try:
            left = _knock(client)
            c = Client(client, timeout=f"{left:.1f}s", set_as_default=False)
        except Exception as exc:   # noqa: BLE001 - whatever answers there (not dask: any error), say which address
            raise InputError(f"cannot reach the dask scheduler at {client!r} ({type(exc).__name__}: {exc}); is a "
                             "dask scheduler listening there?", source, where) from None
        try:
            try:
                c.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"the dask scheduler at {client!r} has no workers to run the points (waited "
                                 f"{WORKER_WAIT_S:g} s: {exc}); start one with `dask worker {client}`",
                                 source, where) from None
            yield c
        finally:
            c.close()
    else:
        try:          # a Client of a cluster with no workers would wait for one forever
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"the dask client's cluster has no workers to run the points (waited "
                             f"{WORKER_WAIT_S:g} s: {exc}); give it at least one (LocalCluster(n_workers=1))",
                             source, "client") from None
        yield client


def run_points(points: list[dict], reference_dir: str | None, slo: SLO | None, client: Any = None,
               n_workers: int | None = None, progress: bool = True, desc: str = "sweep",
               on_result: Callable[[int, dict], None] | None = None, bar: Any = None,
               stop_early: bool = False, source: str = "sweep point",
               at: list[GridPoint] | None = None) -> list[dict]:
    """Run scenario dicts as dask tasks; ``on_result(i, result)`` hears each as it arrives. A caller
    that runs several batches passes its own progress ``bar``. ``stop_early``, and ``at``, each point's
    ``grid_point``: as :func:`run_point`'s."""
    from distributed import as_completed

    results: list[dict | None] = [None] * len(points)
    if not points:
        return []
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(total=len(points), desc=desc, unit="point", disable=not progress)
    try:
        with _client(client, n_workers, len(points), bar=bar) as c:
            futures = {c.submit(run_point, p, reference_dir, slo, stop_early, source=source,
                                grid_point=at[i] if at else None, pure=False): i for i, p in enumerate(points)}
            try:
                for fut in as_completed(futures, loop=c.loop):   # c is not dask's default client
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except Exception as exc:   # noqa: BLE001 - a worker that died: this point fails, the rest go on
                        results[i] = {"status": "failed", "metrics": {}, "error": f"worker lost: {exc}",
                                      "wall_s": math.nan}
                    bar.update(1)
                    _log_result(at[i][0] if at else f"{source} {i}", results[i])
                    if on_result is not None:
                        on_result(i, results[i])
            finally:
                c.cancel(list(futures))
    except BaseException:
        bar.leave = False   # the error (or the interrupt's note) says what happened; a stopped bar would not
        raise
    finally:
        if own_bar:
            bar.close()
    return results   # type: ignore[return-value]


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


@dataclass
class SavePacer:
    """When a sweep rewrites its file: every ``every_s`` at most, and never so often that writing
    takes more than ``1 / (1 + factor)`` of the client's time (10,000 points take ~0.7 s to write)."""

    every_s: float
    last: float
    factor: float = 4.0
    gap: float = field(init=False)

    def __post_init__(self) -> None:
        self.gap = self.every_s

    def due(self, now: float) -> bool:
        return now - self.last >= self.gap

    def wrote(self, start: float, end: float) -> None:
        self.last = end
        self.gap = max(self.every_s, self.factor * (end - start))


def grid_scenarios(base: Scenario, grid: Grid | None) -> Iterator[Scenario]:
    """The base scenario with each combination of the files a grid names (cluster configs, traces, PIM devices)
    in place of its own."""
    keys = ("cluster_config", "trace", "pim_device")
    if isinstance(grid, Mapping):
        combos = itertools.product(*[[(k, v) for v in grid[k]] for k in keys if isinstance(grid.get(k), list)])
    else:
        combos = ([(k, p[k]) for k in keys if k in p] for p in grid or () if isinstance(p, Mapping))
    for combo in combos:
        changes = {k: v for k, v in combo if isinstance(v, str)}
        if changes:
            yield base.replace(**changes)


def refuse_to_replace_an_input(path: str | Path, key: str, base: Scenario, grid: Grid | None,
                               grid_source: str = "grid", reference_dir: str | Path | None = None) -> None:
    """Refuse ``path`` as where a sweep or capacity search is written when a run of it reads that file: the base
    scenario's (named by its file and key) or one the grid names (by the grid's source and key)."""
    base.refuse_to_replace_an_input(path, key, reference_dir)
    for scenario in grid_scenarios(base, grid):
        scenario.refuse_to_replace_an_input(path, key, reference_dir, grid_source)


def sweep(base: Scenario, grid: Grid, client: Any = None, reference_dir: str | Path | None = None,
          n_workers: int | None = None, slo: SLO | None = None, save_to: str | Path | None = None,
          resume: bool = False, progress: bool = True, save_every_s: float = 2.0,
          on_point: Callable[[int, dict], None] | None = None, grid_source: str = "grid") -> xr.Dataset:
    """Run ``base`` at every point of ``grid`` and return the results on the grid's dims.

    ``client``: None (a LocalCluster of ``n_workers`` processes, started and stopped here), a
    scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``. Workers read the
    reference data at the path resolved here, so remote workers need it at the same path.
    ``slo`` adds ``goodput``, ``slo_met`` and the SLO quantiles. ``save_to`` writes the Dataset as
    points arrive (at most every ``save_every_s``, less often when writing is slow; and at the end, also
    when interrupted); with ``resume``, points already ``ok`` in that file are not run again. ``progress`` shows a
    tqdm bar; ``on_point(index, row)`` hears each point as it finishes (its index among the grid's points, and
    its metrics). ``grid_source`` names the grid (its file) in error messages.
    """
    _check_run_args(base, slo, "sweep")
    if save_to is not None:
        check_writable_file(save_to, "save_to")   # before any point runs, not when the results are in
        refuse_to_replace_an_input(save_to, "save_to", base, grid, grid_source, reference_dir)
    dims, points = expand(base, grid, grid_source, reference_dir)
    _check_cluster_args(client, n_workers, "sweep")   # up front: a fully resumed sweep never opens a client
    ref = str(resolve_reference_dir(reference_dir))
    log.info("sweep of %s over %s: %d points on %s; the workers read the reference data at %s", base.source,
             grid_source, len(points), ", ".join(f"{k} ({len(v)})" for k, v in dims.items()), ref)
    results: list[dict | None] = [None] * len(points)
    if resume:
        if save_to is None:
            raise InputError("resume needs the file to resume from (save_to)", "sweep", "resume")
        if Path(save_to).is_file():
            old = load(save_to)
            _check_same_sweep(old, base, dims, points, Path(save_to))
            done = _done(old)
            for i, p in enumerate(points):
                results[i] = done.get(_key(p))
    todo = [i for i, r in enumerate(results) if r is None]
    resumed = len(points) - len(todo)
    if resumed:
        log.info("resuming: %d of %d points already done", resumed, len(points))
    pacer = SavePacer(save_every_s, time.monotonic())
    arrivals = [0]

    def write() -> None:
        start = time.monotonic()
        ds = to_dataset(base, grid, dims, points, results, slo)
        ds.attrs["points_resumed"] = resumed
        save(ds, save_to)   # type: ignore[arg-type]
        pacer.wrote(start, time.monotonic())

    def arrived(k: int, result: dict) -> None:
        results[todo[k]] = result
        arrivals[0] += 1
        if save_to is not None and pacer.due(time.monotonic()):
            write()
        if on_point is not None:
            on_point(todo[k], result)

    finished = False
    at = grid_points(grid, dims, points, grid_source)
    try:
        run_points([points[i] for i in todo], ref, slo, client, n_workers, progress, on_result=arrived,
                   source=base.source, at=[at[i] for i in todo])
        finished = True
    finally:
        if save_to is not None and (finished or arrivals[0]):   # a sweep that never started leaves the file alone
            write()
    ds = to_dataset(base, grid, dims, points, results, slo)
    ds.attrs["points_resumed"] = resumed
    if ds.attrs["points_failed"]:
        log.warning("%d of %d sweep points failed; the first: %s", ds.attrs["points_failed"], len(points),
                    next(r["error"] for r in results if r is not None and r["status"] == "failed"))
    return ds


def why_no_metrics(ds: xr.Dataset) -> str:
    """Why a sweep has no metric variables, when it is because no point ran, for the error that asks for one."""
    status = ds.get("status")
    if status is None or (status == "ok").any():
        return ""
    failed = ds.error.values[status.values == "failed"]
    return f"; no point ran: {failed.size} failed, the first with: {failed.ravel()[0]}" if failed.size else ""


# ---- capacity search ------------------------------------------------------------------------------

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
    if not isinstance(known, xr.Dataset) or "scenario" not in known or "status" not in known:
        hint = " (load a saved sweep with llmss_lab.sweeps.load)" if isinstance(known, (str, Path)) else ""
        raise InputError(f"expected a sweep's Dataset, got {type(known).__name__}{hint}", "capacity", "known")
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
                result = {"status": "failed", "metrics": {}, "error": f"worker lost: {exc}", "wall_s": math.nan}
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
    best = [p.run for p in plans]
    errors = [p.run["error"] if p.state == "failed" and p.run is not None else "" for p in plans]
    lo = np.array([p.rate for p in plans], dtype=float)
    ds = to_dataset(base, grid if grid is not None else [{}], dims, points,
                    [b if b is not None and state[i] != "failed" else
                     {"status": "failed" if state[i] == "failed" else "ok", "metrics": {},
                                              "error": errors[i], "wall_s": math.nan}
                     for i, b in enumerate(best)], slo)
    shape = tuple(len(v) for v in dims.values())
    max_rate = np.where([b is not None and st != "failed" for b, st in zip(best, state)], lo, np.nan)
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


# ---- Pareto ---------------------------------------------------------------------------------------

def pareto_front(ds: xr.Dataset, maximize: Sequence[str] = ("goodput",),
                 minimize: Sequence[str] = ("energy_per_output_token_J", "num_gpus")) -> xr.DataArray:
    """True where a point is on the Pareto front: no other ok point is at least as good on every
    objective and better on one. Points that failed or lack an objective are never on it."""
    if not isinstance(ds, xr.Dataset) or "status" not in ds:
        hint = " (load a saved sweep with llmss_lab.sweeps.load)" if isinstance(ds, (str, Path)) else ""
        raise InputError(f"expected a sweep's Dataset, got {type(ds).__name__}{hint}", "pareto", "ds")
    maximize, minimize = ([names] if isinstance(names, str) else names for names in (maximize, minimize))
    if isinstance(maximize, Sequence) and isinstance(minimize, Sequence) and not (*maximize, *minimize):
        raise InputError("give at least one objective to maximize or minimize", "pareto", "maximize")
    for key, names in (("maximize", maximize), ("minimize", minimize)):
        if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise InputError(f"expected a list of variable names, got {names!r}", "pareto", key)
    for name in (*maximize, *minimize):
        if name not in ds:
            raise InputError(f"no variable {name!r} in the sweep (has: {', '.join(sorted(map(str, ds.data_vars)))})"
                             f"{why_no_metrics(ds)}", "pareto", name)
    cols = [ds[m].values.ravel() for m in maximize] + [-ds[m].values.ravel() for m in minimize]
    score = np.stack(cols, axis=1)                    # larger is better in every column
    valid = (ds.status.values.ravel() == "ok") & np.isfinite(score).all(axis=1)
    front = np.zeros(len(score), bool)
    idx = np.flatnonzero(valid)
    s = score[idx]
    for j, row in enumerate(s):
        dominated = np.any(np.all(s >= row, axis=1) & np.any(s > row, axis=1))
        front[idx[j]] = not dominated
    return xr.DataArray(front.reshape(ds.status.shape), dims=ds.status.dims, coords=ds.status.coords,
                        name="pareto", attrs={"maximize": list(maximize), "minimize": list(minimize)})
