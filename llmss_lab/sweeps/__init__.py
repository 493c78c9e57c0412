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

The package's rooms, each importing only those above it: :mod:`.slo` (the SLO and its verdicts), :mod:`.grid` (a
grid checked and expanded into points), :mod:`.point` (one point run as a dask task), :mod:`.dataset` (the results'
Dataset, saved, loaded, resumed), :mod:`.cluster` (the dask cluster), :mod:`.run` (:func:`sweep`), :mod:`.search`
(:func:`capacity`) and :mod:`.pareto`. Their names are all importable from here; a test that patches one patches
it in the module that defines it.
"""
from __future__ import annotations

from .cluster import CONNECT_TIMEOUT_S, HANDSHAKE_S, LOCAL_START_TRIES, MAX_WORKERS_PER_CORE, WORKER_WAIT_S, \
    dask_setup, local_client
from .dataset import UNITS, load, save, to_dataset, why_no_metrics
from .grid import MAX_POINTS, NOT_SWEPT, Grid, GridPoint, expand, grid_points, grid_scenarios, read_grid, \
    refuse_to_replace_an_input
from .pareto import pareto_front
from .point import STOP_CHECKS, WANTED_EVERY_S, num_gpus, run_point
from .run import SavePacer, run_points, sweep
from .search import MIN_REL_TOL, MIN_TAIL, Plan, capacity, other_slo
from .slo import SLO

__all__ = ["CONNECT_TIMEOUT_S", "HANDSHAKE_S", "LOCAL_START_TRIES", "MAX_POINTS", "MAX_WORKERS_PER_CORE",
           "MIN_REL_TOL", "MIN_TAIL", "NOT_SWEPT", "SLO", "STOP_CHECKS", "UNITS", "WANTED_EVERY_S", "WORKER_WAIT_S",
           "Grid", "GridPoint", "Plan", "SavePacer", "capacity", "dask_setup", "expand", "grid_points",
           "grid_scenarios", "load", "local_client", "num_gpus", "other_slo", "pareto_front", "read_grid",
           "refuse_to_replace_an_input", "run_point", "run_points", "save", "sweep", "to_dataset", "why_no_metrics"]
