"""The LLMServingSim 2.0 paper's validation figures (Figs 5-10) drawn with Bokeh in the paper's layout.

Each function takes the frames of :func:`llmss_lab.paper.frames` for its figure and returns a Bokeh
layout. The real system is a thick grey line, LLMServingSim 2.0 green dashes and llmss_lab a solid
blue line, in every panel; where several series share a panel (Figs 7, 10) colour tells the series
and the dash tells the source. Legends sit under the plots, an entry per source or series, so none
covers a line.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from bokeh.layouts import column, gridplot, row
from bokeh.models import (ColumnDataSource, Div, FactorRange, HoverTool, LabelSet, Legend, LegendItem, LinearAxis,
                          NumeralTickFormatter, Range1d, Span)
from bokeh.plotting import figure

from ..errors import InputError
from ..paper import LONG_NAMES, OURS, PEERS, REAL, SIMULATORS, THEIRS, normalised

STYLE = {REAL: dict(color="#9e9e9e", line_width=4, line_alpha=0.8),
         THEIRS: dict(color="#2ca02c", line_width=2, line_dash="dashed"),
         OURS: dict(color="#1f77b4", line_width=2)}
DASH = {REAL: "solid", THEIRS: "dashed", OURS: "solid"}
WIDTH = {REAL: 5, THEIRS: 2, OURS: 1.5}
ALPHA = {REAL: 0.35, THEIRS: 1.0, OURS: 1.0}
BAR = {"LLMServingSim 1.0": "#a9c5b4", "TokenSim": "#dde1e6", "Vidur": "#6c757d", "APEX": "#212529",
       THEIRS: "#2ca02c", OURS: "#1f77b4", REAL: "#9e9e9e"}
COMPONENT_COLORS = {"Others": "#555555", "GPU": "#e8453c", "CPU": "#fbbc05", "Memory": "#4caf50",
                    "Link": "#64b5f6", "NIC": "#0d47a1", "Storage": "#212121", "Measured": "#9e9e9e"}
SERIES_COLORS = ["#3366bb", "#d6325a", "#3cb521"]
PIM_COLORS = {"gpu_only": "#3366bb", "pim": "#3cb521", "pim_sbi": "#d6325a"}   # as the paper's Fig 10
# Fig 10's configurations as both panels name them (the artifact's files say gpu_only, its energy tables gpu-only)
PIM_NAMES = {"gpu_only": "GPU only", "gpu-only": "GPU only", "pim": "PIM", "pim_sbi": "PIM + SBI", "pim-sbi": "PIM + SBI"}
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _kilo() -> NumeralTickFormatter:
    """Ticks as 500, 1k, 1.5k (a fresh model per axis: a Bokeh model lives in one document)."""
    return NumeralTickFormatter(format="0.[0]a")


def _fig(title: str, y_label: str, x_label: str = "time (s)", width: int = 320, height: int = 220, **kw) -> figure:
    p = figure(title=title, width=width, height=height, tools=TOOLS, x_axis_label=x_label, y_axis_label=y_label, **kw)
    p.toolbar.logo = None
    p.xgrid.grid_line_color = None
    if x_label == "time (s)" and "x_range" not in kw:   # the runs start at 0: no padding into negative seconds
        p.x_range.start = 0
    if y_label == "tokens/s" and "y_range" not in kw:   # nor into negative throughput
        p.y_range.start = 0
    return p


def _caption(text: str) -> Div:
    return Div(text=f"<p style='margin:4px 0;font-size:13px'>{text}</p>")


LEGEND_ROW_PX = 26     # a row of 8pt legend entries: a 16 px glyph, the spacing and margins
LEGEND_TITLE_PX = 16
LEGEND_CHAR_PX = 6     # about the width of a character of an 8pt label


def _legend_below(p: figure, items: list[LegendItem], title: str | None = None) -> Legend:
    """``items`` in rows under the plot, as many to a row as fit its width: inside, a legend covered the lines
    (Figs 5, 7, 9, 10). The figure grows by the legend's height, so the plot keeps its own."""
    widest = max(16 + 5 + LEGEND_CHAR_PX * len(i.label.value) + 12 for i in items)
    cols = max(1, min(len(items), int((p.width - 60) // widest)))
    legend = Legend(items=items, title=title, orientation="horizontal", ncols=cols, location="top_left",
                    click_policy="hide", label_text_font_size="8pt", title_text_font_size="8pt",
                    title_text_font_style="bold", glyph_height=16, label_height=16, spacing=6, margin=2, padding=2,
                    background_fill_alpha=0.0, border_line_alpha=0.0)
    p.add_layout(legend, "below")
    p.height += LEGEND_ROW_PX * -(-len(items) // cols) + (LEGEND_TITLE_PX if title else 0)
    return legend


def _line(p: figure, y: pd.Series, source: str, series: str = "", **style):
    """A line of ``y`` over its index whose points carry their source and series, for :func:`_hover`."""
    n = len(y)
    return p.line("x", "y", source=ColumnDataSource({"x": y.index.values, "y": y.values, "source": [source] * n,
                                                     "series": [series] * n}), **style)


def _hover(p: figure, quantity: str) -> None:
    """Hover over a panel's lines: which source (and series), the time and the value (the lines gave none)."""
    lines = [r for r in p.renderers if "source" in r.data_source.data]
    series = [("series", "@series")] if any(r.data_source.data["series"][:1] != [""] for r in lines) else []
    p.add_tools(HoverTool(renderers=lines, tooltips=[("source", "@source"), *series, ("time", "@x{0,0.[0]} s"),
                                                     (quantity, "@y{0,0.[00]}")]))


def _lines(p: figure, df: pd.DataFrame, quantity: str, sources=(REAL, THEIRS, OURS)) -> list[LegendItem]:
    """A line per source in its style, with a hover; returns their legend entries."""
    items = [LegendItem(label=s, renderers=[_line(p, df[s].dropna(), s, **STYLE[s])]) for s in sources
             if s in df.columns]
    _hover(p, quantity)
    return items


NOWHERE = ([math.nan], [math.nan])   # a legend-only glyph: one point (BokehJS draws no entry for none), not drawn


def _source_key(p: figure, sources) -> list[LegendItem]:
    """Legend entries for the sources' line styles alone, in grey (in a panel where colour tells the series)."""
    return [LegendItem(label=s, renderers=[p.line(*NOWHERE, color="#555555", line_dash=DASH[s], line_width=WIDTH[s],
                                                  line_alpha=max(ALPHA[s], 0.5))]) for s in sources]


def _key(sources, width: int) -> figure:
    """A strip with the sources' legend alone, under a grid of panels (in one panel it covered its lines)."""
    k = figure(width=width, height=10, toolbar_location=None, outline_line_color=None, min_border=0,
               min_border_left=45)   # under the panels' plots, not their axes
    k.axis.visible = False
    k.grid.grid_line_color = None
    _legend_below(k, [LegendItem(label=s, renderers=[k.line(*NOWHERE, **STYLE[s])]) for s in sources])
    return k


def figure_5(frames: dict[str, pd.DataFrame]) -> column:
    """Generation throughput over time, A6000 row above H100 row, MD / SD+PC / PDD / SM."""
    panels = []
    for i, (key, df) in enumerate(frames.items()):
        p = _fig(key.replace("/", " / "), "tokens/s" if i % 4 == 0 else "", y_range=(0, 4200))
        p.yaxis.formatter = _kilo()
        _lines(p, df, "tokens/s")
        panels.append(p)
    sources = [s for s in (REAL, THEIRS, OURS) if any(s in df.columns for df in frames.values())]
    return column(_caption("<b>Figure 5.</b> Generation throughput over time: real vLLM (grey), "
                           "LLMServingSim 2.0 (green dashes), llmss_lab (blue)."),
                  gridplot(panels, ncols=4, merge_tools=True, toolbar_location="right"), _key(sources, 4 * 320))


BAR_LABEL_ANGLE = 1.2   # radians: a bar's source name, steep enough that "LLMServingSim 2.0" clears the next


def _stacked_energy(energy: pd.DataFrame, title: str, groups: list[str]) -> tuple[figure, list[LegendItem]]:
    """Stacked component energy per (config, source); a lone 'Measured' bar holds the real total. Returns the
    plot and the components' legend entries, for the caller to add its own before the legend goes under it."""
    sources = [s for s in (REAL, THEIRS, OURS) if s in set(energy["source"])]
    x = [(g, s) for g in groups for s in sources if ((energy.config == g) & (energy.source == s)).any()]
    comps = [c for c in COMPONENT_COLORS if c in set(energy["component"])]
    table = energy.pivot_table(index=["config", "source"], columns="component", values="energy_J", aggfunc="sum")
    table = table.reindex(index=pd.MultiIndex.from_tuples(x), columns=comps).fillna(0.0)
    src = ColumnDataSource({"x": x, **{c: table[c].values for c in comps},
                            "total": table.sum(axis=1).values})
    p = _fig(title, "energy (J)", x_label="", width=520, height=380, x_range=FactorRange(*x))
    bars = p.vbar_stack(comps, x="x", width=0.8, source=src, color=[COMPONENT_COLORS[c] for c in comps],
                        line_color="black", line_width=0.5)
    p.add_tools(HoverTool(tooltips=[("bar", "@x"), ("total J", "@total{0,0}")]))
    p.yaxis.formatter = _kilo()
    p.xaxis.major_label_orientation = BAR_LABEL_ANGLE
    p.xaxis.major_label_text_font_size = "8pt"
    p.y_range.start = 0
    return p, [LegendItem(label=c, renderers=[r]) for c, r in zip(comps, bars)]


def figure_6(frames: dict[str, pd.DataFrame]) -> column:
    """(a, b) server power per second for TP1 and TP2; (c) energy per component, with the measured total."""
    traces = []
    keys = [k for k in frames if k.startswith("power_")]
    # both panels on the paper's axes, from zero: a gap of 10 W looks like the 10 W it is
    top = max([1000.0] + [float(np.nanmax(frames[k].to_numpy(float))) * 1.05 for k in keys])
    end = max([120.0] + [float(frames[k].index.max()) for k in keys])
    for i, key in enumerate(keys):
        tp = key.removeprefix("power_").upper()
        p = _fig(f"({'ab'[i] if i < 2 else i}) server power, {tp}", "power (W)", width=520, height=260,
                 y_range=Range1d(0, top), x_range=Range1d(0, end))
        items = _lines(p, frames[key], "power (W)")
        if i == len(keys) - 1:   # once, under the last trace
            _legend_below(p, items)
        traces.append(p)
    groups = list(dict.fromkeys(frames["energy"]["config"]))
    bars, items = _stacked_energy(frames["energy"], "(c) energy per component", groups)
    _legend_below(bars, items)
    return column(_caption("<b>Figure 6.</b> Server power of the A6000 node under three bursts of ten requests, "
                           "and the energy of each component (the grey bar is the measured total)."),
                  row(column(*traces), bars))


def figure_7(frames: dict[str, pd.DataFrame]) -> column:
    """GPU memory (GiB) and prefix-hit rate (%) over time; left one instance, right two sharing a CPU pool. The
    tables hold MiB (``gpu_mem_mb``: read as decimal MB, the first row's 15,433 would be less than Llama-3.1-8B's
    weights alone, 16,060 MB), so their values / 1024 are GiB; the paper's axis says GB."""
    left = [k.split("/")[0] for k in frames if k.startswith("SD+PC/")][:1]
    right = list(dict.fromkeys(k.split("/")[0] for k in frames if not k.startswith("SD+PC/")))
    grid = []
    for quantity, label in (("memory", "memory (GiB)"), ("hit", "prefix hit rate (%)")):
        line = []
        for names, title in ((left, "single instance (SD+PC)"), (right, "two instances + shared CPU pool")):
            if not names:
                continue
            p = _fig(f"{title}: {label}", label, width=520, height=260)
            items = []
            for j, nm in enumerate(names):
                df = frames[f"{nm}/{quantity}"] / (1024.0 if quantity == "memory" else 1.0)
                color = "#333333" if len(names) == 1 else SERIES_COLORS[j % 3]
                lines = {s: _line(p, df[s].dropna(), s, nm, color=color, line_dash=DASH[s], line_width=WIDTH[s],
                                  line_alpha=ALPHA[s]) for s in (REAL, THEIRS, OURS)}
                # one series: an entry per source; several: an entry per series (its colour), then the sources' key
                items += ([LegendItem(label=s, renderers=[r]) for s, r in lines.items()] if len(names) == 1 else
                          [LegendItem(label=nm.replace("MD+PC+PS_", "").replace("_", " "),
                                      renderers=list(lines.values()))])
            _legend_below(p, items + (_source_key(p, (REAL, THEIRS, OURS)) if len(names) > 1 else []))
            _hover(p, label)
            line.append(p)
        grid.append(line)
    return column(_caption("<b>Figure 7.</b> GPU memory and prefix-cache hit rate on the A6000: real (thick, light), "
                           "LLMServingSim 2.0 (dashed), llmss_lab (thin solid)."), gridplot(grid, merge_tools=True))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


def _bars_with_marks(p: figure, x: list, values: list[float], colors: list[str], top: float, bottom: float,
                     mark_y: float) -> None:
    """Bars clipped to the axis with their value printed when off it, and an x where a system cannot run."""
    shown = [min(v, top) if not math.isnan(v) else math.nan for v in values]
    src = ColumnDataSource({"x": x, "top": shown, "value": values, "color": colors,
                            "label": [_fmt(v) if not math.isnan(v) else "" for v in values]})
    p.vbar(x="x", top="top", bottom=bottom, width=0.85, color="color", line_color="black", line_width=0.5, source=src)
    p.add_tools(HoverTool(tooltips=[("bar", "@x"), ("value", "@value{0.000}")]))
    off = ColumnDataSource({"x": [a for a, v in zip(x, values) if not math.isnan(v) and v > top],
                            "y": [top for v in values if not math.isnan(v) and v > top],
                            "t": [_fmt(v) for v in values if not math.isnan(v) and v > top]})
    p.add_layout(LabelSet(x="x", y="y", text="t", source=off, text_font_size="8pt", text_align="center", y_offset=2))
    missing = ColumnDataSource({"x": [a for a, v in zip(x, values) if math.isnan(v)],
                                "y": [mark_y] * sum(math.isnan(v) for v in values)})
    p.scatter("x", "y", source=missing, marker="x", size=9, line_width=2, color="black")


def figure_8(frames: dict[str, pd.DataFrame]) -> column:
    """(a) TPS, TTFT, TPOT normalised to vLLM for every simulator; (b) simulation time per scenario."""
    norm = normalised(frames["latency"])
    systems = [s for s in (*PEERS, THEIRS, OURS) if s in norm.columns]
    x, vals, cols = [], [], []
    for (sc, metric), r in norm.iterrows():
        for s in systems:
            x.append((LONG_NAMES.get(sc, sc), metric, s))
            vals.append(float(r[s]))
            cols.append(BAR[s])
    a = _fig("(a) accuracy: value / vLLM (× = cannot run that scenario)", "normalised to vLLM", x_label="",
             width=1250, height=300, x_range=FactorRange(*x), y_range=Range1d(0.4, 1.45))
    a.xaxis.major_label_text_font_size = "0pt"
    a.xaxis.group_text_font_size = "9pt"
    _bars_with_marks(a, x, vals, cols, top=1.4, bottom=0.4, mark_y=0.46)
    a.add_layout(Span(location=1.0, dimension="width", line_color="#c0392b", line_dash="dashed", line_width=2))
    _legend_below(a, [LegendItem(label=s, renderers=[a.scatter(*NOWHERE, marker="square", size=10, color=BAR[s])])
                      for s in systems])

    st = frames["sim_time"]
    systems_t = list(st.columns)
    xt = [(LONG_NAMES.get(sc, sc), s) for sc in st.index for s in systems_t]
    vt = [float(st.at[sc, s]) for sc in st.index for s in systems_t]
    b = _fig("(b) simulation time (log scale; the paper's host for the others, this machine for llmss_lab)",
             "simulation time (s)", x_label="", width=1250, height=300, x_range=FactorRange(*xt),
             y_axis_type="log", y_range=Range1d(0.01, 1e6))
    b.xaxis.major_label_text_font_size = "0pt"
    b.xaxis.group_text_font_size = "9pt"
    _bars_with_marks(b, xt, vt, [BAR[s] for _, s in xt], top=1e6, bottom=0.01, mark_y=0.02)
    labels = ColumnDataSource({"x": [a for a, v in zip(xt, vt) if not math.isnan(v)],
                               "y": [v for v in vt if not math.isnan(v)],
                               "t": [_fmt(v) for v in vt if not math.isnan(v)]})
    b.add_layout(LabelSet(x="x", y="y", text="t", source=labels, text_font_size="8pt", text_align="center", y_offset=2))
    _legend_below(b, [LegendItem(label=s, renderers=[b.scatter(*NOWHERE, marker="square", size=10, color=BAR[s])])
                      for s in systems_t])
    return column(_caption("<b>Figure 8.</b> Comparison with prior LLM-serving simulators on H100 "
                           "(TokenSim, Vidur, APEX and LLMServingSim numbers from the paper's artifact)."), a, b)


def _error_table_html(lat: pd.DataFrame) -> str:
    """Fig 9b: % error of TPS, TPOT, ITL and their geometric mean; TTFT below, as the paper leaves it out."""
    err = {s: (lat[s] - lat[REAL]).abs() / lat[REAL] * 100.0 for s in SIMULATORS}
    rows = [m for m in ("TPS", "TPOT", "ITL") if m in lat.index]
    geo = {s: float(np.exp(np.mean(np.log([err[s][m] for m in rows])))) for s in SIMULATORS}
    head = "".join(f"<th style='padding:2px 10px'>{s}</th>" for s in SIMULATORS)
    body = "".join(f"<tr><td>{m}</td>" + "".join(f"<td align='right'>{err[s][m]:.3f} %</td>" for s in SIMULATORS)
                   + "</tr>" for m in rows)
    body += "<tr><td><b>Geomean</b></td>" + "".join(f"<td align='right'><b>{geo[s]:.3f} %</b></td>"
                                                    for s in SIMULATORS) + "</tr>"
    if "TTFT" in lat.index:
        body += "<tr><td><i>TTFT (not in the paper's table)</i></td>" + "".join(
            f"<td align='right'><i>{err[s]['TTFT']:.2f} %</i></td>" for s in SIMULATORS) + "</tr>"
    return (f"<b>(b) error against vLLM-TPU</b><table style='border-collapse:collapse;font-size:13px'>"
            f"<tr><th>metric</th>{head}</tr>{body}</table>")


def figure_9(frames: dict[str, pd.DataFrame]) -> column:
    """(a) TPU-v6e throughput over time; (b) the error table."""
    key = next(k for k in frames if k != "latency")
    p = _fig("(a) TPU-v6e-1, Llama-3.1-8B: throughput", "tokens/s", width=560, height=300)
    p.yaxis.formatter = _kilo()
    _legend_below(p, _lines(p, frames[key], "tokens/s"))
    lat = frames["latency"].loc[key]
    return column(_caption("<b>Figure 9.</b> Google Cloud TPU-v6e-1: vLLM-TPU (grey), LLMServingSim 2.0 "
                           "(green dashes), llmss_lab (blue)."), row(p, Div(text=_error_table_html(lat), width=420)))


def figure_10(frames: dict[str, pd.DataFrame]) -> column:
    """GPU-only vs GPU+PIM vs PIM with sub-batch interleaving: throughput, and energy with J/token."""
    p = _fig("throughput (LLMServingSim 2.0 dashed, llmss_lab solid)", "tokens/s", width=620, height=380)
    p.yaxis.formatter = _kilo()
    names = [k.split("/")[1] for k in frames if k.startswith("throughput/")]
    items = []
    for j, nm in enumerate(names):
        df = frames[f"throughput/{nm}"]
        lines = [_line(p, df[s].dropna(), s, PIM_NAMES.get(nm, nm), line_width=2, line_dash=DASH[s],
                       color=PIM_COLORS.get(nm, SERIES_COLORS[j % 3])) for s in SIMULATORS]
        items.append(LegendItem(label=PIM_NAMES.get(nm, nm), renderers=lines))
    _legend_below(p, items + _source_key(p, SIMULATORS))
    _hover(p, "tokens/s")
    energy = frames["energy"].assign(config=frames["energy"]["config"].map(lambda c: PIM_NAMES.get(c, c)))
    groups = list(dict.fromkeys(energy["config"]))
    e, items = _stacked_energy(energy, "total energy, and J per output token (dots)", groups)
    ept = frames["energy_per_token"].rename(index=lambda c: PIM_NAMES.get(c, c))
    top = float(ept.max().max()) * 1.4
    e.extra_y_ranges = {"jpt": Range1d(0, top)}
    e.add_layout(LinearAxis(y_range_name="jpt", axis_label="J / token"), "right")
    for s in SIMULATORS:   # each source's dots joined in its own dash, as in the throughput panel
        x = [(g, s) for g in ept.index]
        items.append(LegendItem(label=f"J/token ({s})", renderers=[
            e.line(x, ept[s].values, y_range_name="jpt", color="#6a1bd1", line_dash=DASH[s], line_width=2),
            e.scatter(x, ept[s].values, y_range_name="jpt", color="#6a1bd1", size=10)]))
    _legend_below(e, items)
    return column(_caption("<b>Figure 10.</b> PIM attention offload on an A6000 node (256 requests, 128 in / 512 out). "
                           "No real system: llmss_lab against LLMServingSim 2.0."),
                  row(column(p), column(e)))   # not frame-aligned: the taller bars pushed p's legend 100 px down


def validation_scatter(table: pd.DataFrame) -> figure:
    """Each summary row as a dot: LLMServingSim 2.0's |error| across, llmss_lab's up (log-log); below the diagonal
    llmss_lab is closer to the real system. An error under 0.001 (0 included, which a log axis cannot show) sits on
    0.001 as a hollow dot, so it does not pass for an error of 0.001. The errors' units are each row's
    kind (% or points), which the legend names."""
    t = table.dropna(subset=[f"{THEIRS} error", f"{OURS} error"])
    floor = 1e-3
    unit = "(% or points, by the legend's kind)"
    p = _fig(f"|error| per case and metric (below the diagonal: llmss_lab closer)\nhollow: under {floor:g} "
             f"(0 too), drawn at {floor:g}", f"{OURS} |error| {unit}", x_label=f"{THEIRS} |error| {unit}", width=620,
             height=520, x_axis_type="log", y_axis_type="log", x_range=Range1d(floor / 2, 100),
             y_range=Range1d(floor / 2, 100))   # below the floor: the dots drawn on it show whole
    p.line([floor / 2, 100], [floor / 2, 100], color="#888888", line_dash="dashed")
    items = []
    for j, (kind, g) in enumerate(t.groupby("error kind")):
        theirs, ours = g[f"{THEIRS} error"].abs().values, g[f"{OURS} error"].abs().values
        src = ColumnDataSource({"x": np.maximum(theirs, floor), "y": np.maximum(ours, floor),
                                "theirs": theirs, "ours": ours, "case": g["case"].values,
                                "metric": g["metric"].values,
                                "fill": np.where((theirs < floor) | (ours < floor), 0.0, 0.8)})
        items.append(LegendItem(label=kind, renderers=[
            p.scatter("x", "y", source=src, size=8, fill_alpha="fill", line_alpha=0.9, line_width=1.5,
                      color=(*SERIES_COLORS, "#ff7f0e")[j % 4])]))
    p.add_tools(HoverTool(tooltips=[("case", "@case"), ("metric", "@metric"), (THEIRS, "@theirs{0.000}"),
                                    (OURS, "@ours{0.000}")]))
    if items:
        _legend_below(p, items)
    return p


FIGURES = {5: figure_5, 6: figure_6, 7: figure_7, 8: figure_8, 9: figure_9, 10: figure_10}


def draw(figure: int, frames: dict[str, pd.DataFrame]):
    """The layout of paper figure ``figure`` from its frames (:func:`llmss_lab.paper.frames`)."""
    if isinstance(figure, bool) or figure not in FIGURES:
        raise InputError(f"figures {sorted(FIGURES)} can be drawn, got {figure!r}", "view", "figure")
    if not isinstance(frames, dict) or not frames:
        raise InputError(f"expected the frames of figure {figure} (llmss_lab.paper.frames({figure}, ...)), got "
                         f"{type(frames).__name__ if not isinstance(frames, dict) else 'no frames'}", "view", "frames")
    try:
        return FIGURES[figure](frames)
    except KeyError as exc:   # the frames of another figure, or of a subset of its scenarios
        raise InputError(f"these are not figure {figure}'s frames (no {exc.args[0]!r})", "view", "frames") from None
