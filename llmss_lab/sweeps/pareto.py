"""The Pareto front of a sweep: the points no other point beats on every objective."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..errors import InputError
from .dataset import check_sweep, why_no_metrics


def pareto_front(ds: xr.Dataset, maximize: Sequence[str] = ("goodput",),
                 minimize: Sequence[str] = ("energy_per_output_token_J", "num_gpus")) -> xr.DataArray:
    """True where a point is on the Pareto front: no other ok point is at least as good on every
    objective and better on one. Points that failed or lack an objective are never on it."""
    check_sweep(ds, "pareto", "ds")
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
