"""A sweep: every point of a grid run on the cluster, saved as the points arrive, and resumed from its file."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from ..errors import InputError
from ..files import check_writable_file, refuse_in_reference
from ..progress import progress_bar
from ..reference import protected_root, resolve_reference_dir
from ..scenario import Scenario
from .cluster import _check_cluster_args, _client
from .dataset import _check_same_sweep, _done, load, save, to_dataset
from .grid import Grid, GridPoint, _key, expand, grid_points, input_files, refuse_to_replace_one_of
from .point import _check_run_args, _log_result, run_point, worker_lost
from .slo import SLO

log = logging.getLogger(__name__)


def run_points(points: list[dict], reference_dir: str | None, slo: SLO | None, client: Any = None,
               n_workers: int | None = None, progress: bool = True,
               on_result: Callable[[int, dict], None] | None = None, source: str = "sweep point",
               at: list[GridPoint] | None = None) -> list[dict]:
    """Run scenario dicts as dask tasks under a progress bar; ``on_result(i, result)`` hears each as it arrives.
    ``source``, and ``at``, each point's ``grid_point``: as :func:`run_point`'s."""
    from distributed import as_completed

    results: list[dict | None] = [None] * len(points)
    if not points:
        return []
    bar = progress_bar(total=len(points), desc="sweep", unit="point", disable=not progress)
    try:
        with _client(client, n_workers, len(points), bar=bar) as c:
            futures = {c.submit(run_point, p, reference_dir, slo, source=source,
                                grid_point=at[i] if at else None, pure=False): i for i, p in enumerate(points)}
            try:
                for fut in as_completed(futures, loop=c.loop):   # c is not dask's default client
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except Exception as exc:   # noqa: BLE001 - a worker that died: this point fails, the rest go on
                        results[i] = worker_lost(exc)
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
        bar.close()
    return results   # type: ignore[return-value]


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
    inputs = input_files(base, grid, grid_source, reference_dir)
    keep_out = str(protected_root(reference_dir) or "")   # the reference data: no save_to inside it
    if save_to is not None:   # before any point runs, not when the results are in
        refuse_in_reference(save_to, keep_out, "save_to")   # first: the write check leaves a probe file there
        check_writable_file(save_to, "save_to")
        refuse_to_replace_one_of(save_to, inputs, "save_to")
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

    def dataset() -> xr.Dataset:
        ds = to_dataset(base, grid, dims, points, results, slo, inputs)
        ds.attrs.update(points_resumed=resumed, reference_dir=keep_out)   # which save() keeps out of
        return ds

    def write() -> None:
        start = time.monotonic()
        save(dataset(), save_to)   # type: ignore[arg-type]
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
    ds = dataset()
    if ds.attrs["points_failed"]:
        log.warning("%d of %d sweep points failed; the first: %s", ds.attrs["points_failed"], len(points),
                    next(r["error"] for r in results if r is not None and r["status"] == "failed"))
    return ds
