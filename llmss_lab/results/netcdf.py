"""A run's Datasets as the groups of one netCDF-4 file, written with netCDF4 itself.

xarray's ``to_netcdf`` writes the same file but, with dask installed, asks dask four times on the way (which
scheduler runs, for the file's lock and for closing it; whether each array is one of dask's; and once per
variable it re-wraps to encode strings), numpy data too: a first save imported dask, dask.array and distributed,
0.4 s of CPU, for a run that has no dask arrays. A run's Datasets hold numbers and strings only, and for those
the netCDF conventions xarray follows take a few lines; ``xr.load_dataset`` reads the file back as it read
xarray's (tests compare the two files variable by variable).
"""
from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr


def write_groups(path: str | Path, groups: dict[str, xr.Dataset], encoding: dict[str, dict[str, dict]]) -> None:
    """Write each Dataset as the group of its name; ``encoding[group][variable]`` are createVariable's options
    (``zlib``, ``complevel``) for that variable."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for name, ds in groups.items():
            _write_group(nc.createGroup(name), ds, encoding.get(name, {}))


def _write_group(group: netCDF4.Group, ds: xr.Dataset, encoding: dict[str, dict]) -> None:
    """The CF conventions xarray writes and reads: floats get a NaN ``_FillValue``, strings are variable-length,
    and each data variable names the coordinates that are not a dimension's own but lie along its dimensions in
    its ``coordinates`` attribute (a run's Datasets have none that lie along no data variable's)."""
    for dim, size in ds.sizes.items():
        group.createDimension(str(dim), size)
    extra = [str(c) for c in ds.coords if c not in ds.dims]
    for name, var in ds.variables.items():
        values = var.values
        kind = values.dtype.kind
        attrs = dict(var.attrs)
        if kind == "b":   # netCDF has no booleans: bytes, which xarray reads back as bool by this attribute
            values, kind, attrs["dtype"] = values.astype("i1"), "i", "bool"
        if kind not in "iufUO":
            raise TypeError(f"{group.name}/{name}: cannot write {values.dtype} values to netCDF")
        nc_var = group.createVariable(str(name), str if kind in "UO" else values.dtype, tuple(map(str, var.dims)),
                                      fill_value=np.nan if kind == "f" else None, **encoding.get(name, {}))
        if name in ds.data_vars and (coords := sorted(c for c in extra if set(ds[c].dims) <= set(var.dims))):
            attrs["coordinates"] = " ".join(coords)
        nc_var.setncatts(attrs)
        nc_var[...] = values.astype(object) if kind in "UO" else values
    group.setncatts(ds.attrs)
