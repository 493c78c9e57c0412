"""Bokeh views of sweeps (:func:`llmss_lab.sweep`) and capacity searches: heat maps over two sweep
dimensions, a Pareto scatter, and bars of the highest rate within an SLO."""
from __future__ import annotations

import json

import numpy as np
import xarray as xr
from bokeh.models import (BasicTicker, ColorBar, ColumnDataSource, FactorRange, HoverTool, LinearColorMapper,
                          NumeralTickFormatter)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from ..errors import InputError
from ..sweeps import why_no_metrics
from .plots import TICKS

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _check(ds: xr.Dataset, var: str, dims: tuple[str, ...]) -> None:
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"expected a sweep's Dataset, got {type(ds).__name__}", "view", "ds")
    if not isinstance(var, str) or var not in ds:
        raise InputError(f"no variable {var!r} (has: {', '.join(sorted(map(str, ds.data_vars)))})"
                         f"{why_no_metrics(ds)}", "view", var)
    for d in dims:
        if not isinstance(d, str) or d not in ds.dims:
            raise InputError(f"not a sweep dimension (dims: {', '.join(map(str, ds.dims))})", "view", d)


def _labels(values) -> list[str]:
    return [str(v) for v in np.asarray(values).tolist()]


def label(ds: xr.Dataset, name: str) -> str:
    """A variable's or coordinate's name with its units, as an axis says it (``rate (req/s)``); none for "1"."""
    unit = ds[name].attrs.get("units", "")
    return f"{name} ({unit})" if unit and unit != "1" else name


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def heatmap(ds: xr.Dataset, var: str, x: str, y: str, title: str | None = None, same_scale: bool = False,
            **select) -> figure:
    """``var`` over sweep dims ``x`` and ``y`` (other dims fixed by ``select``, e.g. ``tp=2``); each
    cell shows its value, failed points are grey and say so on hover. The colours span this panel's values, or
    with ``same_scale`` the whole sweep's, so that panels side by side (one per ``tp``) compare by colour.
    The title, unless given, names ``var``, its units and ``select`` (``goodput (req/s), tp=2``), so that panels
    side by side say which is which."""
    _check(ds, var, (x, y, *select))
    if x == y:
        raise InputError(f"x and y are both {x!r}: a heatmap needs two sweep dims", "view", "y")
    sub = ds.sel(**select) if select else ds
    rest = [d for d in sub[var].dims if d not in (x, y)]
    if rest:
        raise InputError(f"fix the other sweep dims with keyword arguments, e.g. {rest[0]}=...", "view", rest[0])
    da, status, error = (sub[v].transpose(y, x) for v in (var, "status", "error"))
    xs, ys = _labels(sub[x].values), _labels(sub[y].values)
    cx, cy, val, text, st, err = [], [], [], [], [], []
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            v = float(da.values[j, i])
            cx.append(xv), cy.append(yv), val.append(v), st.append(str(status.values[j, i]))
            err.append(str(error.values[j, i])[:160])
            text.append("failed" if st[-1] == "failed" else ("" if np.isnan(v) else _fmt(v)))
    every = np.asarray(ds[var].values if same_scale else val, float).ravel()
    finite = every[np.isfinite(every)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mapper = LinearColorMapper(palette=Viridis256, low=low, high=high, nan_color="#d9d9d9")
    # dark text on the bright (upper) part of Viridis and on grey failed cells, white on the dark part
    ink = ["#222222" if not np.isfinite(v) or (high > low and (v - low) / (high - low) > 0.55) else "white"
           for v in val]
    unit = ds[var].attrs.get("units", "")
    named = ", ".join([label(ds, var)] + [f"{d}={v}" for d, v in select.items()])
    p = figure(title=title or named, x_range=FactorRange(*xs), y_range=FactorRange(*ys),
               width=max(360, 70 * len(xs) + 160), height=max(260, 45 * len(ys) + 110), tools=TOOLS,
               x_axis_label=label(ds, x), y_axis_label=label(ds, y))
    p.toolbar.logo = None
    src = ColumnDataSource({"x": cx, "y": cy, "value": val, "text": text, "status": st, "error": err, "ink": ink})
    p.rect("x", "y", 1, 1, source=src, fill_color={"field": "value", "transform": mapper}, line_color="white")
    p.text("x", "y", text="text", source=src, text_align="center", text_baseline="middle", text_font_size="9pt",
           text_color="ink")
    p.add_tools(HoverTool(tooltips=[(label(ds, x), "@x"), (label(ds, y), "@y"), (label(ds, var), "@value{0.000}"),
                                    ("status", "@status"),
                                    ("error", "@error")]))
    p.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=6), width=10,
                          formatter=NumeralTickFormatter(format=TICKS),   # 120,000 J, not 1.2e+5
                          title=unit if unit and unit != "1" else None), "right")
    p.grid.grid_line_color = None
    return p


def pareto(ds: xr.Dataset, x: str, y: str, front: xr.DataArray | None = None, label_dims: list[str] | None = None,
           title: str | None = None) -> figure:
    """Every ok point of a sweep at (``x``, ``y``); points on ``front`` (:func:`llmss_lab.pareto_front`) are
    red and joined; hover names each point by its sweep coordinates."""
    _check(ds, x, ())
    _check(ds, y, ())
    dims = label_dims or list(ds.status.dims)
    flat = ds.stack(_p=list(ds.status.dims))   # one dimension too: renaming it would drop its labels
    ok = flat.status.values == "ok"
    xs, ys = flat[x].values[ok], flat[y].values[ok]
    names = [", ".join(f"{d}={flat[d].values[k]}" for d in dims) for k in np.flatnonzero(ok)]
    on = np.zeros(ok.sum(), bool)
    if front is not None:
        f = front.stack(_p=list(front.dims))
        on = f.values[ok].astype(bool)
    p = figure(title=title or f"{y} vs {x} (red: Pareto front)", width=620, height=420, tools=TOOLS,
               x_axis_label=label(ds, x), y_axis_label=label(ds, y))
    p.toolbar.logo = None
    src = ColumnDataSource({"x": xs, "y": ys, "name": names, "color": np.where(on, "#d62728", "#1f77b4"),
                            "size": np.where(on, 11, 7)})
    p.scatter("x", "y", source=src, color="color", size="size", alpha=0.8)
    if on.any():
        order = np.argsort(xs[on])
        p.line(xs[on][order], ys[on][order], color="#d62728", line_dash="dashed")
    p.add_tools(HoverTool(tooltips=[("point", "@name"), (x, "@x{0.000}"), (y, "@y{0.000}")]))
    return p


def slo_text(ds: xr.Dataset) -> str:
    """The SLO a sweep or capacity search was held to, as its ``slo`` attr records it: ``p90 TTFT <= 500 ms,
    TPOT <= 50 ms``; empty when it records none."""
    try:
        slo = json.loads(ds.attrs.get("slo") or "{}")
    except (TypeError, ValueError):
        return ""
    if not isinstance(slo, dict):
        return ""
    limits = [f"{name} <= {slo[key]:g} ms" for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"))
              if isinstance(slo.get(key), (int, float))]
    quantile = slo.get("quantile")
    at = f"p{100 * quantile:g} " if isinstance(quantile, (int, float)) else ""
    return at + ", ".join(limits) if limits else ""


# what a bar of a configuration whose edge is not inside the searched range stands for
BOUND_NOTES = {"above": "above {hi:g}", "below": "below {lo:g}", "failed": "failed"}


def capacity_bars(cap: xr.Dataset, title: str | None = None) -> figure:
    """The highest rate within the SLO for each configuration of a capacity search; the title names the SLO, and
    a configuration whose edge lies outside the searched range (or whose run failed) says so over its bar, which
    was otherwise an empty slot or a bar at the range's top like any other."""
    _check(cap, "max_rate", ())
    flat = cap.stack(_p=list(cap.max_rate.dims))   # one dimension too: renaming it would drop its labels
    dims = list(cap.max_rate.dims)
    names = [", ".join(f"{d}={flat[d].values[k]}" for d in dims) for k in range(flat.sizes["_p"])]
    rate = np.nan_to_num(flat.max_rate.values, nan=0.0)
    slo = slo_text(cap)
    default = "highest request rate within the SLO" + (f" ({slo})" if slo else "")
    p = figure(title=title or default, x_range=FactorRange(*names), width=620,
               height=320, tools=TOOLS, y_axis_label=label(cap, "max_rate"),
               x_axis_label=", ".join(label(cap, d) for d in dims))
    p.toolbar.logo = None
    bound = flat.bound.values.astype(str)
    lo, hi = (cap.attrs.get("rate_range") or [np.nan, np.nan])[:2]
    notes = [BOUND_NOTES.get(b, "").format(lo=lo, hi=hi) for b in bound]
    src = ColumnDataSource({"x": names, "rate": rate, "bound": bound, "note": notes,
                            "gpus": flat.num_gpus.values if "num_gpus" in flat else np.full(len(names), np.nan)})
    p.vbar(x="x", top="rate", width=0.7, source=src, color="#1f77b4")
    p.text(x="x", y="rate", text="note", source=src, text_align="center", text_baseline="bottom",
           text_font_size="9pt", y_offset=-2, name="bound notes")
    p.add_tools(HoverTool(tooltips=[("config", "@x"), ("max rate", "@rate{0.00} req/s"), ("bound", "@bound"),
                                    ("GPUs", "@gpus")]))
    p.xaxis.major_label_orientation = 0.5
    p.y_range.start = 0
    p.y_range.range_padding = 0.2   # 10 % above the tallest bar, for its note (at 5 % "above 64" was cut off)
    return p
