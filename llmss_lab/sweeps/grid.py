"""A sweep's grid: read from its file, checked, and expanded into the scenario of every point."""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..config.reader import closest, is_real, plain
from ..errors import InputError, LlmssError
from ..files import refuse_to_replace
from ..scenario import GENERATOR_FIELDS, Scenario

log = logging.getLogger(__name__)

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
GridPoint = tuple[str, tuple[str, ...]]   # what names a point in its grid file, and the fields the grid sets there


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


FIELDS = frozenset(f.name for f in fields(Scenario))


def _check_field(key: Any, source: str | Path, where: str) -> None:
    """A key of a grid (its file's, or a grid given in Python) must be a scenario field: the error names the closest."""
    if key not in FIELDS:
        hint = closest(str(key), FIELDS)
        raise InputError(f"not a scenario field (did you mean {hint!r}?)" if hint else
                         f"not a scenario field (fields: {', '.join(sorted(FIELDS))})", source, where)


def expand(base: Scenario, grid: Grid, source: str = "grid",
           reference_dir: str | Path | None = None) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """The sweep's dimensions and the scenario dict of every point (in C order over the dims).

    A mapping is a cartesian grid: ``{"tp": [1, 2], "max_num_seqs": [64, 256]}`` -> dims tp x
    max_num_seqs. A list of mappings is a list of points -> dim ``point`` of that length. Field
    names and value types are checked here, so a typo stops the sweep before any point runs.
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise InputError("the grid is empty: give at least one field with a list of values", source)
        dims: dict[str, list] = {}
        for key, values in grid.items():
            _check_field(key, source, str(key))
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
                _check_field(key, source, f"points[{i}].{key}")
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
    from ..config.reader import read_yaml

    data = read_yaml(path)
    if isinstance(data, Mapping) and set(data) == {"points"}:
        data = data["points"]
        if not isinstance(data, list) or not data:
            raise InputError(f"must be a non-empty list of points (mappings of scenario fields), got {data!r}", path,
                             "points")
    if isinstance(data, Mapping):
        for key in data:
            _check_field(key, path, str(key))
    elif isinstance(data, list):
        for i, point in enumerate(data):
            if not isinstance(point, Mapping):
                raise InputError(f"must be a mapping of scenario fields, got {point!r}", path, f"points[{i}]")
            for key in point:
                _check_field(key, path, f"points[{i}].{key}")
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


def grid_scenarios(base: Scenario, grid: Grid | None) -> Iterator[Scenario]:
    """The base scenario with each combination of the files a grid names (cluster configs, traces, PIM devices)
    in place of its own; none for what is no grid (:func:`expand` names it)."""
    keys = ("cluster_config", "trace", "pim_device")
    if isinstance(grid, Mapping):
        combos = itertools.product(*[[(k, v) for v in grid[k]] for k in keys if isinstance(grid.get(k), list)])
    elif isinstance(grid, Sequence):
        combos = ([(k, p[k]) for k in keys if k in p] for p in grid if isinstance(p, Mapping))
    else:
        return
    for combo in combos:
        changes = {k: v for k, v in combo if isinstance(v, str)}
        if changes:
            yield base.replace(**changes)


def refuse_to_replace_an_input(path: str | Path, key: str, base: Scenario, grid: Grid | None,
                               grid_source: str = "grid", reference_dir: str | Path | None = None) -> None:
    """Refuse ``path`` as where a sweep or capacity search is written when a run of it reads that file: the base
    scenario's (named by its file and key) or one the grid names (by the grid's source and key)."""
    refuse_to_replace_one_of(path, input_files(base, grid, grid_source, reference_dir), key)


def input_files(base: Scenario, grid: Grid | None, grid_source: str = "grid",
                reference_dir: str | Path | None = None) -> dict[str, str]:
    """The files the runs of a sweep or capacity search read, as absolute paths (a save from another folder still
    finds them), each -> what names it in an error: the base scenario's file and key, or the grid's source and key
    (the first that reads it). Its Dataset records them, so that :func:`~.dataset.save` refuses them too."""
    out: dict[str, str] = {}
    for scenario, named_by in ((base, base.source), *((s, grid_source) for s in grid_scenarios(base, grid))):
        for name, file in scenario.input_files(reference_dir).items():
            out.setdefault(os.path.abspath(file), f"an input of the run ({named_by}: {name})")
    return out


def refuse_to_replace_one_of(path: str | Path, inputs: Mapping[str, str], key: str) -> None:
    """Refuse ``path`` when it is one of ``inputs`` (file -> what names it, as :func:`input_files` gives them),
    links and relative paths resolved."""
    for file, name in inputs.items():
        refuse_to_replace(path, {name: file}, key)
