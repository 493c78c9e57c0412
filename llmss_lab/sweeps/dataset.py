"""A sweep's results as one xarray Dataset on the grid's dims: laid out, saved, loaded, and read back to resume."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from ..config.reader import as_path
from ..ctrl_c import ctrl_c_held
from ..errors import InputError
from ..files import absent, kind_of, not_netcdf, refuse_in_reference, replacing
from ..scenario import FIELD_UNITS, Scenario
from .grid import Grid, _current, _key, refuse_to_replace_one_of
from .slo import SLO

UNITS = {"energy_per_output_token_J": "J/token", "_ms": "ms", "_J": "J", "_s": "s", "request_throughput": "req/s",
         "token_throughput": "tok/s", "output_throughput": "tok/s", "goodput": "req/s", "rate": "req/s",
         "tokens": "tokens"}


def _units(name: str) -> str:
    return next((u for suffix, u in UNITS.items() if name.endswith(suffix) or name == suffix), "")


def to_dataset(base: Scenario, grid: Grid, dims: dict[str, list], points: list[dict], results: list[dict | None],
               slo: SLO | None = None, inputs: Mapping[str, str] | None = None) -> xr.Dataset:
    """Results laid out on the sweep's dims: one variable per metric (NaN where a point failed or is
    pending), ``status``, ``error``, ``wall_s`` and the ``scenario`` JSON of every point; ``inputs``, the files
    its runs read (:func:`~.grid.input_files`), in the attr ``input_files_json``."""
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
                     "slo": json.dumps(asdict(slo)) if slo else "", "input_files_json": json.dumps(dict(inputs or {})),
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
    for the write to finish. A file its runs read (:func:`recorded_inputs`) is refused, as ``sweep(save_to=)`` does,
    and so is a path inside the reference data they read (the attr ``reference_dir``)."""
    path = as_path(path)
    refuse_to_replace_one_of(path, recorded_inputs(ds), "path")
    refuse_in_reference(path, ds.attrs.get("reference_dir"), "path")
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path.parent)
    with ctrl_c_held(), replacing(path) as tmp:
        ds.to_netcdf(tmp)
    return path


def recorded_inputs(ds: xr.Dataset) -> dict[str, str]:
    """The files a sweep's runs read -> what names them (its ``input_files_json`` attr; none in a file saved before
    it was recorded, or where the attr is not such a record)."""
    try:
        files = json.loads(ds.attrs.get("input_files_json", "{}"))
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def check_sweep(ds: Any, source: str, key: str, needs: tuple[str, ...] = ("status",)) -> None:
    """``ds`` must be a sweep's Dataset, holding the variables ``needs`` (a file's path: how to load it)."""
    if not isinstance(ds, xr.Dataset) or any(name not in ds for name in needs):
        hint = " (load a saved sweep with llmss_lab.sweeps.load)" if isinstance(ds, (str, Path)) else ""
        raise InputError(f"expected a sweep's Dataset, got {type(ds).__name__}{hint}", source, key)


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


def why_no_metrics(ds: xr.Dataset) -> str:
    """Why a sweep has no metric variables, when it is because no point ran, for the error that asks for one."""
    status = ds.get("status")
    if status is None or (status == "ok").any():
        return ""
    failed = ds.error.values[status.values == "failed"]
    return f"; no point ran: {failed.size} failed, the first with: {failed.ravel()[0]}" if failed.size else ""
