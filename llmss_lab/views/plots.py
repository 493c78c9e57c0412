"""Pure functions from :class:`~llmss_lab.results.dataset.Results` to Bokeh figures.

Every view takes the run (``a``) and optionally a baseline (``b``) and overlays them: the run in
colour, the baseline in grey dashes (or its own rows, under a row with its name, in the Gantt views). The
names are ``label`` and ``baseline_label``; left out, "run" and "baseline", each followed by what sets it
apart from the other (:func:`run_labels`). Each run has its own legend under the plot, headed by its name,
so the plot keeps the figure's width however long the names are; the title names what a run alone ran, or what
two runs share and what differs (:func:`pair_title`). Time views accept an ``x_range`` so that
:func:`dashboard` can link their x axes. Nothing here runs a simulation or touches widgets.
"""
from __future__ import annotations

import html
import json
import re
import textwrap
from typing import Any, Mapping

import numpy as np
import xarray as xr
from bokeh.core.properties import value
from bokeh.layouts import column, row
from bokeh.models import (BasicTicker, ColorBar, ColumnDataSource, Div, FactorRange, HoverTool, Label, Legend,
                          LegendItem, LinearAxis, LinearColorMapper, Node, NumeralTickFormatter, Range1d, Tabs,
                          TabPanel)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from ..config.power import COMPONENTS
from ..config.reader import as_whole
from ..errors import InputError
from ..results.dataset import Results, bin_width
from ..results.table import SUMMARY_ROWS, UNDEFINED, change_pct, known, settings_changed

A_NAME, B_NAME = "run", "baseline"
B_COLOR = "#888888"
# Okabe & Ito's colours, told apart with any colour vision (Category10's red and green were not): blue, orange,
# bluish green, vermillion, reddish purple, sky blue, then yellow (faint as a line: last); black marks limits
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
LIMIT_COLOR = "#000000"
WIDTH = 820   # with the toolbar: fits JupyterLab's output area at 1280 px beside the file browser (848 px; 900 ran past)
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
# tick labels: thousands separated (1,200 s, not 1200) and as many decimals as the ticks need, up to four: one
# decimal at most read the ticks of a 0.2 s run 0, 0.1, 0.1, 0.2, 0.2
TICKS = "0,0.[0000]"


def _fig(title: str, y_label: str, x_range=None, height: int = 220, **kw) -> figure:
    if x_range is not None and not isinstance(x_range, Range1d):
        ok = (isinstance(x_range, (tuple, list)) and len(x_range) == 2
              and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v)
                      for v in x_range) and x_range[0] < x_range[1])
        if not ok:
            raise InputError(f"expected a shared Range1d (views.time_range) or a (start, end) pair of seconds "
                             f"with start < end, got {x_range!r}", "view", "x_range")
    # the wheel zoom waits for a click on its icon: active, it took the wheel that scrolls a notebook past the plot
    p = figure(title=title, height=height, width=WIDTH, tools=TOOLS, active_scroll=None,
               x_axis_label="time (s)", y_axis_label=y_label, **({"x_range": x_range} if x_range is not None else {}),
               **kw)
    p.toolbar.logo = None
    p.xaxis.formatter = NumeralTickFormatter(format=TICKS)
    if "y_range" not in kw:   # a quantity, not rows: 12,000 tokens/s
        p.yaxis.formatter = NumeralTickFormatter(format=TICKS)
    return p


# a character of Bokeh's 13 px bold title: seven of the views' titles measured 6.0-6.9 px a character in Chromium
# (canvas measureText, 2026-11-25); 7.5 wrapped a 43-character CDF title of 298 px that had 310 px
TITLE_CHAR_PX = 7.0
TITLE_ROOM_PX = 100   # of the figure's width, what the y axis (65-84 px) and the toolbar (30 px) take from the title's
TITLE_LINE_PX = 17    # a title line's height


def _fit_title(p: figure) -> figure:
    """Break a title too long for the figure into lines (it ran past the right edge, cut off: a run's and its
    baseline's names with a note), growing the figure by the lines added so that the plot keeps its height."""
    text = p.title.text
    room = max(20, int((p.width - TITLE_ROOM_PX) // TITLE_CHAR_PX))
    if "\n" in text or len(text) <= room:
        return p
    # a parenthesis that fits a line ('(1 prefill + 1 decode)') moves to the next line whole, not broken inside, and
    # so does a P/D shape outside one (a pair's '1 prefill + 1 decode vs 2 instances' broke after its '1')
    glued = re.sub(r"\([^()]{0,%d}\)|\d+ prefill \+ \d+ decode" % (room - 2),
                   lambda m: m.group().replace(" ", "\0"), text)
    lines = [ln.replace("\0", " ") for ln in textwrap.wrap(glued, room, break_on_hyphens=False)]
    p.title.text = "\n".join(lines)
    p.height += TITLE_LINE_PX * (len(lines) - 1)
    return p


def _check_runs(a: object, b: object = None) -> None:
    """Views draw Results; anything else (a Dataset, a path, a sweep) is named, not an AttributeError."""
    for key, r in (("a", a), ("b", b)):
        if (key == "a" or r is not None) and not isinstance(r, Results):
            hint = " (load a saved run with llmss_lab.load_results)" if isinstance(r, str) else ""
            raise InputError(f"expected the Results of a run{' or None' if key == 'b' else ''}, got "
                             f"{type(r).__name__}{hint}", "view", key)


def time_range(a: Results, b: Results | None = None) -> Range1d:
    """A shared x range covering both runs, from 0 to the last finish."""
    _check_runs(a, b)
    # numpy's NaN-skipping max, as xarray's: xarray's own would import dask.array on a first render (0.5-1.5 s)
    end = max(float(np.nanmax(r.requests.finish.values)) for r in (a, b) if r is not None)
    return Range1d(0.0, end * 1.02, bounds=(0.0, end * 1.05))


def _time_axis(x_range, a: Results, b: Results | None):
    """The x range given, else the one :func:`dashboard` shares: from 0, where runs start. A view drawn alone
    fitted its axis to its data, which began at the first bin's end (1 s): no tick at 0."""
    return time_range(a, b) if x_range is None else x_range


def _short(label: str) -> str:
    """``nodes[0].instances[1]`` -> ``n0/i1``: row labels that fit beside a plot."""
    m = re.fullmatch(r"nodes\[(\d+)\]\.instances\[(\d+)\]", str(label))
    return f"n{m[1]}/i{m[2]}" if m else str(label)


LABEL_SETTINGS = 2     # settings named in a derived label; more are counted ("+3 more")
LABEL_VALUE_CHARS = 24


def _value(v) -> str:
    """A setting's value in a label: on/off for a switch, a path or a Hugging Face name by its last part, none
    for unset, cut short."""
    text = ("on" if v else "off") if isinstance(v, bool) else "none" if v is None or v == "" else str(v)
    text = text.rstrip("/").rsplit("/", 1)[-1] if isinstance(v, str) and "/" in v else text
    return text if len(text) <= LABEL_VALUE_CHARS else text[:LABEL_VALUE_CHARS - 1] + "\u2026"


def labels_of(differences: list[tuple[str, object, object]]) -> tuple[str, str]:
    """The names "run" and "baseline", each followed by its value of the settings given as ``(setting, run's
    value, baseline's value)``: ``run (max_num_seqs 128)``, ``baseline (max_num_seqs 8)``. With none: plain."""
    if not differences:
        return A_NAME, B_NAME
    shown, more = differences[:LABEL_SETTINGS], len(differences) - LABEL_SETTINGS
    tail = f", +{more} more" if more > 0 else ""
    return tuple(f"{name} ({', '.join(f'{k} {_value(v[i])}' for k, *v in shown)}{tail})"
                 for i, name in enumerate((A_NAME, B_NAME)))


def _scenario(attrs: Mapping) -> dict | None:
    try:
        s = json.loads(attrs.get("scenario_json", ""))
    except (TypeError, ValueError):
        return None
    return s if isinstance(s, dict) else None


def run_differences(a: Mapping, b: Mapping) -> list[tuple[str, Any, Any]]:
    """What sets run ``a`` apart from run ``b`` (their attrs), as ``(setting, a's value, b's value)``. Runs of a
    Scenario both: the scenario fields that differ, less those a side does not use (the cluster's shape when it
    names a cluster file, the generator's fields when it reads a trace); otherwise the recorded settings that
    ``llmss summary`` compares."""
    sa, sb = _scenario(a), _scenario(b)
    if sa is None or sb is None:
        return settings_changed(a, b)
    from ..scenario import GENERATOR_FIELDS, SHAPE_FIELDS   # here: the scenario module imports the whole kit

    unused = set()
    for s in (sa, sb):
        unused |= set(SHAPE_FIELDS) if s.get("cluster_config") else set()
        unused |= set(GENERATOR_FIELDS) if s.get("trace") else set()
    return [(k, sa.get(k), sb.get(k)) for k in dict.fromkeys([*sa, *sb])
            if k not in unused and sa.get(k) != sb.get(k)]


def run_labels(a: Results, b: Results | None = None) -> tuple[str, str]:
    """The names the views give a run and its baseline when not told (:func:`labels_of`): the settings in which
    the two differ are the Scenario fields of two Scenario runs (less those a side does not use), else the
    settings ``llmss summary`` compares. Two runs of the same settings are plain "run" and "baseline"; a run alone
    is named by what it ran (:func:`run_title`), as a view of it alone said nothing of that."""
    _check_runs(a, b)
    if b is None:
        return run_title(a) or A_NAME, B_NAME
    return labels_of(run_differences(a.attrs, b.attrs))


def _facets(r: Results) -> dict[str, str]:
    """What a run ran, facet by facet, each as a title shows it: model, hardware, cluster shape, DP, TP, PP, EP and
    where its step latencies came from (read from its instances, else from the attrs of a file saved before they
    were recorded); a facet the run does not say is left out."""
    ts = r.timeseries

    def each(key: str) -> list[str]:
        values = ts[key].values if key in ts.coords else [r.attrs[key]] if key in r.attrs else []
        return list(dict.fromkeys(str(v) for v in values))

    facets = {"model": " + ".join(m.rstrip("/").rsplit("/", 1)[-1] for m in each("model")),
              "hardware": " + ".join(each("hardware"))}
    roles = [str(v) for v in ts.role.values] if "role" in ts.coords else []
    n = ts.sizes.get("instance", 1)
    facets["shape"] = (f"{roles.count('prefill')} prefill + {roles.count('decode')} decode" if "prefill" in roles
                       else f"{n} instance{'s' if n > 1 else ''}")
    groups = [str(g) for g in ts.dp_group.values] if "dp_group" in ts.coords else \
        [str(r.attrs["dp_group"])] if "dp_group" in r.attrs else []
    if sizes := sorted({groups.count(g) if g else 1 for g in groups}):   # members of each instance's DP group
        facets["DP"] = "DP" + "/".join(map(str, sizes))
    for key, name in (("tp_size", "TP"), ("pp_size", "PP"), ("ep_size", "EP")):
        if sizes := sorted({int(float(v)) for v in each(key)}):
            facets[name] = name + "/".join(map(str, sizes))
    if "latency_source" in r.attrs:   # 'profile:<folder> | analytical:<spec>': the kinds, with a what-if if any
        kinds = dict.fromkeys(str(s).split(":", 1)[0] for s in str(r.attrs["latency_source"]).split(" | "))
        what_if = str(r.attrs.get("what_if", ""))
        facets["latencies"] = " + ".join(LATENCY_KINDS.get(k, k) for k in kinds) + (f" ({what_if})" if what_if else "")
    return {k: v for k, v in facets.items() if v}


LATENCY_KINDS = {"profile": "profiled", "analytical": "analytical"}
SHAPE_FACETS = ("shape", "DP", "TP", "PP", "EP")
PLAIN = {"shape": "1 instance", "DP": "DP1", "TP": "TP1", "PP": "PP1", "EP": "EP1"}   # left unsaid where both runs have them


def _what_ran(facets: dict[str, str]) -> str:
    """``Llama-3.1-8B on RTXPRO6000 (TP2)`` of the facets given (a one-instance TP1 shape goes unsaid)."""
    shape = [facets[k] for k in SHAPE_FACETS if k in facets and facets[k] != PLAIN[k]]
    on = f"on {facets['hardware']}" if "hardware" in facets else ""
    head = " ".join(x for x in (facets.get("model", ""), on) if x)
    return f"{head} ({', '.join(shape)})" if head and shape else head or ", ".join(shape)


def run_title(r: Results) -> str:
    """A run's model and hardware, and its cluster's shape where it is more than one instance at TP 1:
    ``Llama-3.1-8B on RTXPRO6000 (1 prefill + 1 decode, TP2)``; "" when the run does not say."""
    facets = _facets(r)
    return _what_ran(facets) if "model" in facets and "hardware" in facets else ""


def pair_title(a: Results, b: Results) -> str:
    """What a run and its baseline share, then what sets them apart, the run's value first:
    ``both Llama-3.1-8B on RTXPRO6000, profiled latencies; TP2 vs TP1``. Their legends name each run by the
    settings that differ; this says what they ran, which a view of two runs said nowhere. "" when neither says."""
    fa, fb = _facets(a), _facets(b)
    keys = [k for k in ("model", "hardware", *SHAPE_FACETS, "latencies") if k in fa and k in fb]   # both say
    same = {k: fa[k] for k in keys if fa[k] == fb[k]}
    shared = ", ".join(x for x in (_what_ran(same), f"{same['latencies']} latencies" if "latencies" in same else "")
                       if x)
    differ = [f"{fa[k]} vs {fb[k]}" + (" latencies" if k == "latencies" else "") for k in keys if k not in same]
    return "; ".join(([f"both {shared}"] if shared else []) + differ)


def _names(a: Results, b: Results | None, label: str | None, baseline_label: str | None) -> tuple[str, str]:
    """The two names a view shows: those given, else :func:`run_labels`."""
    _check_runs(a, b)
    for key, v in (("label", label), ("baseline_label", baseline_label)):
        if v is not None and not (isinstance(v, str) and v.strip()):
            raise InputError(f"expected a name to show for the {'run' if key == 'label' else 'baseline'} "
                             f"(a non-empty string) or None, got {v!r}", "view", key)
    derived = run_labels(a, b) if label is None or baseline_label is None else (None, None)
    names = (label.strip() if label is not None else derived[0],
             baseline_label.strip() if baseline_label is not None else derived[1])
    if b is not None and names[0] == names[1]:
        raise InputError(f"the run is also called {names[0]!r}: give the two different names, or the legend "
                         "cannot tell them apart", "view", "baseline_label")
    return names


def _named(title: str, runs: list[tuple[str, Results, bool]]) -> str:
    """A run alone is named in the title when it has a name of its own: it has no legend to carry it. Two runs
    have their legends: the title says what they share and what sets them apart (:func:`pair_title`)."""
    (name, a, _), *rest = runs
    if rest:
        return f"{title}: {pair}" if (pair := pair_title(a, rest[0][1])) else title
    return f"{title}: {name}" if name != A_NAME else title


def _runs(a: Results, b: Results | None, label: str | None = None,
          baseline_label: str | None = None) -> list[tuple[str, Results, bool]]:
    """``(name, results, is_baseline)`` for the run and, if given, the baseline."""
    name_a, name_b = _names(a, b, label, baseline_label)
    return [(name_a, a, False)] + ([(name_b, b, True)] if b is not None else [])


# ---- batch timeline -------------------------------------------------------------------------------

def batch_timeline(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
                   baseline_label: str | None = None) -> figure:
    """A Gantt of engine steps, one row per instance (named with its side in a prefill/decode split),
    coloured by the prefill share of the batch's tokens (0 = pure decode, 1 = pure prefill); hover shows the
    batch composition. With a baseline, each run's rows sit under a row of its name: the rows are
    ``(run's name, instance)`` and the name's own row is ``(run's name, "")``; beside the plot, the instance
    alone (the run's name before each took a third of the width)."""
    rows: list = []
    parts: list[dict[str, np.ndarray]] = []
    runs = _runs(a, b, label, baseline_label)
    for name, r, _ in runs:
        it = r.iterations
        ts = r.timeseries
        roles = ts.role.values if "role" in ts.coords else ["both"] * ts.sizes["instance"]   # older files: none
        labels = [_short(lab) + (f" ({role})" if role in ("prefill", "decode") else "")
                  for lab, role in zip(ts.instance.values, roles)]
        keys = [(name, lab) for lab in labels] if b is not None else labels
        rows += ([(name, "")] if b is not None else []) + keys
        y = np.empty(len(keys), dtype=object)
        y[:] = keys
        tok = it.num_tokens.values
        parts.append({"y": list(y[it.instance.values]), "left": it.start.values,
                      "right": it.start.values + it.duration.values * 1e-3,
                      "share": np.where(tok > 0, it.prefill_tokens.values / np.maximum(tok, 1), 0.0), "tokens": tok,
                      "seqs": it.num_seqs.values, "duration": it.duration.values, "step": it.step.values,
                      **{k: it[k].values for k in ("prefill_tokens", "prefill_seqs", "decode_seqs")}})
    cols = {k: (sum((part[k] for part in parts), []) if k == "y" else np.concatenate([part[k] for part in parts]))
            for k in parts[0]}
    factors = list(reversed(rows))
    p = _fig(_named("Batch timeline: engine steps per instance", runs), "", _time_axis(x_range, a, b),
             height=max(160, 60 + 45 * len(rows)), y_range=FactorRange(*factors, group_padding=GROUP_PADDING))
    if b is not None:   # the run's name once, across its own row, at the plot's left edge whatever the pan
        p.yaxis.group_text_font_size = "0px"
        p.yaxis.separator_line_color = None
        for name, *_ in runs:   # BokehJS takes no factor for an annotation's place: the row's synthetic centre
            p.add_layout(Label(x=6, x_units="screen", y=_centre(factors, (name, "")), text=name,
                               text_baseline="middle", text_font_size=LEGEND_FONT, text_font_style="bold"))
    mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0)
    src = ColumnDataSource(cols)
    p.hbar(y="y", left="left", right="right", height=0.8, source=src, line_color=None,
           fill_color={"field": "share", "transform": mapper}, name="steps")
    p.add_tools(HoverTool(tooltips=[("step", "@step"), ("latency", "@duration{0.00} ms"), ("tokens", "@tokens"),
                                    ("sequences", "@seqs"), ("prefill", "@prefill_tokens tok in @prefill_seqs seqs"),
                                    ("decodes", "@decode_seqs")]))
    p.add_layout(ColorBar(color_mapper=mapper, title="prefill share", width=8,
                          formatter=NumeralTickFormatter(format="0%")), "right")
    return _fit_title(p)


GROUP_PADDING = 0.3   # between the rows of the run and those of the baseline, in rows


def _centre(factors: list[tuple[str, str]], factor: tuple[str, str]) -> float:
    """Where BokehJS puts a two-level factor of a FactorRange (no range or factor padding): each row one unit,
    ``GROUP_PADDING`` between groups, rows centred half a unit in."""
    pos, group = 0.0, factors[0][0]
    for f in factors:
        if f[0] != group:
            pos, group = pos + GROUP_PADDING, f[0]
        if f == factor:
            return pos + 0.5
        pos += 1
    raise KeyError(factor)


# ---- request lifelines ----------------------------------------------------------------------------

PHASES = (("queued", "arrival", "scheduled", PALETTE[1]), ("prefill", "scheduled", "first_token", PALETTE[2]),
          ("decode", "first_token", "finish", PALETTE[0]))


def request_lifelines(a: Results, b: Results | None = None, x_range=None, max_requests: int = 400,
                      label: str | None = None, baseline_label: str | None = None) -> figure:
    """One line per request: queued, then prefill (to the first token), then decode, for at most
    ``max_requests``: with more, every k-th request, so the lines span the whole run on the time axis it
    shares with the batch timeline (the title says which). The baseline's requests sit just below the run's,
    thinner and grey, drawn first so the run's stay on top."""
    runs = _runs(a, b, label, baseline_label)
    if as_whole(max_requests) is None or max_requests < 1:
        raise InputError(f"must be a whole number >= 1, got {max_requests!r}", "view", "max_requests")
    most = max(r.requests.sizes["request"] for _, r, _ in runs)
    step = -(-most // int(max_requests))
    shown = f"every {_ordinal(step)} of {most}: " if step > 1 else ""
    p = _fig(_named(f"Request lifelines ({shown}queued, prefill, decode)", runs), "request", _time_axis(x_range, a, b),
             height=320)
    groups = []
    for name, r, base in reversed(runs):
        dy, alpha, width = (0.4 * step, 0.45, 1) if base else (0.0, 0.9, 2)
        req = r.requests.isel(request=slice(0, None, step))
        n = req.sizes["request"]
        ids = req.request.values
        phase = np.repeat([ph for ph, *_ in PHASES], n)
        color = np.repeat([B_COLOR if base else c for *_, c in PHASES], n)
        src = ColumnDataSource({
            "y": np.tile(ids + dy, 3), "id": np.tile(ids, 3), "phase": phase, "color": color,
            "x0": np.concatenate([req[t0].values for _, t0, _, _ in PHASES]),
            "x1": np.concatenate([req[t1].values for _, _, t1, _ in PHASES]),
            "ttft": np.tile(req.ttft.values, 3), "e2e": np.tile(req.e2e_latency.values, 3)})
        line = p.segment(x0="x0", y0="y", x1="x1", y1="y", source=src, line_width=width, alpha=alpha, color="color")
        item = LegendItem(label="every phase, grey", renderers=[line]) if base else \
            LegendItem(label={"field": "phase"}, renderers=[line])
        groups.insert(0, (name if b is not None else None, [item]))
    p.add_tools(HoverTool(tooltips=[("request", "@id"), ("phase", "@phase"), ("TTFT", "@ttft{0.0} ms"),
                                    ("E2E", "@e2e{0.0} ms")]))
    p.y_range.flipped = True
    p.yaxis.ticker = BasicTicker(min_interval=1)   # requests are counted: two read 0, 0.2, 0.4, ... 1
    _legends_below(p, groups)
    return _fit_title(p)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


LEGEND_ROW_PX = 30    # a legend row: Bokeh's 20 px glyph and 10 px of spacing (also between entries)
LEGEND_FONT = "9pt"
LEGEND_CHAR_PX = 6.5  # about the width of a character of a 9pt label
LEGEND_ROOM_PX = 740  # the width a legend under a plot may fill: the explorer's panel (~830 px) less the y axis
LEGEND_EDGE_PX = 8    # the legend's margin and padding (each side)
LEGEND_TITLE_PX = 17  # a legend's title above its entries, and the gap under it


def _item_px(label: str) -> float:
    """About how wide a legend entry of this label draws: glyph, standoff, label and the gap to the next."""
    return 20 + 5 + LEGEND_CHAR_PX * len(label) + 12


def _legends_below(p: figure, groups: list[tuple[str | None, list[LegendItem]]], ncols: int | None = None) -> None:
    """The legends under the plot, one per run, where they cover no data and leave the plot the figure's width
    (beside it, long names took a third of it). A run's legend starts with its name, once, and lists its series by
    their own short names, as many to a row as fit (``ncols`` sets it). The figure grows by the legends' height,
    so the plot keeps its own. Hide a series by clicking it."""
    extra = 0
    for title, items in groups:
        if not items:
            continue
        # an entry per phase for the lifelines' field label
        widths = [_item_px(text) for i in items for text in ([ph for ph, *_ in PHASES] if _entry_text(i) is None
                                                              else [_entry_text(i)])]
        cols = ncols or _columns(widths)
        rows = -(-len(widths) // cols)
        legend = Legend(items=items, title=title, orientation="horizontal", ncols=cols,
                        location="top_left", click_policy="hide", label_text_font_size=LEGEND_FONT,
                        title_text_font_size=LEGEND_FONT, title_text_font_style="bold", title_standoff=2,
                        margin=LEGEND_EDGE_PX // 2, padding=LEGEND_EDGE_PX // 2, spacing=LEGEND_ROW_PX - 20,
                        label_height=20, background_fill_alpha=0.0, border_line_alpha=0.0)
        p.add_layout(legend, "below")
        extra += LEGEND_ROW_PX * rows - (LEGEND_ROW_PX - 20) + 2 * LEGEND_EDGE_PX + (LEGEND_TITLE_PX if title else 0)
    p.height += extra


def _columns(widths: list[float]) -> int:
    """The most columns whose entries fit ``LEGEND_ROOM_PX``, each column as wide as its widest entry (as BokehJS
    lays them out): sized by the widest entry of all, a 60-character one put each of three entries on its own row."""
    return next(n for n in range(len(widths), 0, -1)
                if n == 1 or sum(max(widths[c::n]) for c in range(n)) <= LEGEND_ROOM_PX)


def _entry_text(item: LegendItem) -> str | None:
    """An entry's label, or None for an entry per value of a field (the lifelines': one per phase)."""
    return item.label if isinstance(item.label, str) else getattr(item.label, "value", None)


# ---- time series ------------------------------------------------------------------------------------

B_DASHES = ("dashed", "dotted", "dotdash", "dashdot")   # the baseline's series, all grey, told apart by dash


def _series_line(p: figure, run: str, label: str, unit: str, t, v, **style):
    """A line whose points carry their run, series and unit, for :func:`_hover_lines`."""
    n = len(t)
    return p.line("x", "y", source=ColumnDataSource({"x": t, "y": v, "run": [run] * n, "series": [label] * n,
                                                     "unit": [unit] * n}), **style)


def _hover_lines(p: figure) -> None:
    """One hover for the figure's lines: the run, the series and its value at that time (the lines alone told
    no number)."""
    lines = [r for r in p.renderers if "series" in r.data_source.data]
    p.add_tools(HoverTool(renderers=lines, tooltips=[("run", "@run"), ("series", "@series"),
                                                     ("time", "@x{0,0.[000]} s"), ("value", "@y{0,0.[00]} @unit")]))


def _overlay_lines(p: figure, run: str, unit: str, series: list[tuple[str, np.ndarray, np.ndarray]],
                   dashed: bool, **style) -> list[LegendItem]:
    """Draw a run's series (the baseline's grey and dashed) and return their legend entries."""
    items = []
    for k, (label, t, v) in enumerate(series):
        color = B_COLOR if dashed else PALETTE[k % len(PALETTE)]
        line = _series_line(p, run, label, unit, t, v, line_width=2, color=color,
                            line_dash=B_DASHES[k % len(B_DASHES)] if dashed else "solid", **style)
        items.append(LegendItem(label=label, renderers=[line]))
    return items


def _width_note(datasets: list[xr.Dataset], form: str) -> str:
    """``", " + form`` with the runs' widths (``"mean of {} s bins"`` -> ``", mean of 1 and 60 s bins"``), read
    off each Dataset's time coordinate (:func:`~llmss_lab.results.dataset.bin_width`); nothing when all are 1 s.
    It goes in the title: on the y axis it ran past the figure's top edge, cut off (the axis has the plot's height,
    the title its width)."""
    widths = sorted({float(f"{w:.6g}") for ds in datasets if (w := bin_width(ds)) is not None})
    return "" if widths in ([], [1.0]) else ", " + form.format(" and ".join(f"{w:g}" for w in widths))


MEAN_OF = "mean of {} s bins"   # a rate or power: each point the bin's mean
SAMPLED = "sampled every {} s"   # a state: each point its value at the sample


def _too_short(who: str, r: Results, ds: xr.Dataset, what: str) -> str | None:
    """Why ``ds`` (a group of run ``r``) draws no line over time, or None if it does: a line needs two points,
    and a run within one bin (or sample interval, ``what``) has one, which may end after the plot's range."""
    if ds.sizes.get("time", 0) >= 2:
        return None
    width = bin_width(ds)
    took = float(np.nanmax(r.requests.finish.values))
    within = f"within one {width:g} s {what}" if width is not None else f"with no {what}"
    return f"{who} took {took:.3g} s, {within}: nothing to draw over time; a narrower time bin (bin_s) draws it"


def _who(name: str, b: Results | None) -> str:
    """The run a note is about: by name beside a baseline; alone, the title names it."""
    return name if b is not None else "this run"


def _say(p: figure, notes: list[str], drawn: bool) -> None:
    """Say why a run draws nothing: beside another run's lines, in the title; else across the empty plot, which
    was blank but for its title (and Bokeh warned that it had no renderers)."""
    if not notes:
        return
    if drawn:
        p.title.text += f" ({'; '.join(notes)})"
        return
    centre = Node(target="frame", symbol="center")
    p.add_layout(Label(x=centre, y=centre, text="\n".join(notes), text_align="center", text_baseline="middle",
                       text_font_size=LEGEND_FONT, text_color="#444444", name="no data"))


def _served(counts, other_side: str) -> np.ndarray:
    """``counts`` summed over the instances, leaving out the P/D side that counts them too (files saved before
    the role coordinate: every instance)."""
    return (counts.where(counts.role != other_side) if "role" in counts.coords else counts).sum("instance").values


def throughput(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
               baseline_label: str | None = None) -> figure:
    """Prompt and generation tokens per second over time, summed over instances; in a P/D split each is counted
    where it is served (prompts on the prefill side, tokens on the decode side), not on both."""
    runs = _runs(a, b, label, baseline_label)
    bins = _width_note([r.timeseries for _, r, _ in runs], MEAN_OF)
    p = _fig(_named(f"Throughput{bins}", runs), "throughput (tokens/s)", _time_axis(x_range, a, b))
    groups, short = [], []
    for name, r, base in runs:
        ts = r.timeseries
        if note := _too_short(_who(name, b), r, ts, "bin"):
            short.append(note)
            continue
        t = ts.time.values
        groups.append((name if b is not None else None, _overlay_lines(
            p, name, "tokens/s", [("generation", t, _served(ts.generation_throughput, "prefill")),
                                  ("prompt", t, _served(ts.prompt_throughput, "decode"))], base)))
    _say(p, short, bool(groups))
    _hover_lines(p)
    _legends_below(p, groups)
    return _fit_title(p)


KV_PCT_LABEL = "NPU KV in use (% of blocks)"   # what results files without memory samples hold


def memory(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
           baseline_label: str | None = None) -> figure:
    """Memory in use per tier over time: NPU KV and cached prefix blocks (all instances), and each
    lower-tier prefix pool, in GiB.

    Results files saved before the memory group (no ``memory`` Dataset, so no ``npu_kv``) hold only the time
    series' ``kv_usage_pct``, the share of KV blocks in use, and not the bytes of a block to turn it into GiB: such
    a run is drawn in % on an axis that says so (on the right, beside a run that has GiB)."""
    runs = _runs(a, b, label, baseline_label)
    in_pct = [r for _, r, _ in runs if "npu_kv" not in r.memory]
    in_gib = len(in_pct) < len(runs)
    samples = _width_note([r.memory if "npu_kv" in r.memory else r.timeseries for _, r, _ in runs], SAMPLED)
    p = _fig(_named(f"Memory per tier{samples}", runs), "memory (GiB)" if in_gib else KV_PCT_LABEL,
             _time_axis(x_range, a, b))
    pct_style = {}
    if not in_gib:
        p.y_range = Range1d(0, 100)
    elif in_pct:
        p.extra_y_ranges = {"pct": Range1d(0, 100)}
        p.add_layout(LinearAxis(y_range_name="pct", axis_label=KV_PCT_LABEL), "right")
        pct_style = {"y_range_name": "pct"}
    groups, short, used, ceilings = [], [], [], []
    for name, r, base in runs:
        m = r.memory
        if note := _too_short(_who(name, b), r, m if "npu_kv" in m else r.timeseries, "sample interval"):
            short.append(note)
            continue
        if "npu_kv" not in m:
            ts = r.timeseries
            groups.append((name if b is not None else None, _overlay_lines(
                p, name, "%", [("NPU KV (% of blocks)", ts.time.values, ts.kv_usage_pct.mean("instance").values)],
                base, **pct_style)))
            continue
        t = m.time.values
        series = [("NPU KV", t, m.npu_kv.sum("instance").values / 1024),
                  ("NPU prefix cache", t, m.npu_prefix_cache.sum("instance").values / 1024)]
        if "pool_used" in m:
            for pool in m.pool.values:
                label = _pool_label(str(pool), str(m.pool_tier.sel(pool=pool).values))
                series.append((label, t, m.pool_used.sel(pool=pool).values / 1024))
        items = _overlay_lines(p, name, "GiB", series, base)
        used += [i.renderers[0] for i in items]
        if "npu_kv_capacity" in m:   # the ceiling KV use runs into before requests wait or are preempted
            cap = float(m.npu_kv_capacity.sum()) / 1024
            line = _series_line(p, name, "NPU KV capacity", "GiB", t[[0, -1]], [cap, cap],
                                color=B_COLOR if base else LIMIT_COLOR, line_dash=[1, 6], line_width=2)   # sparse dots
            items.append(LegendItem(label="NPU KV capacity", renderers=[line]))
            ceilings.append((items[-1], cap, float(np.nanmax(series[0][2], initial=0.0))))
        groups.append((name if b is not None else None, items))
    _capacities(p, used, ceilings)
    _say(p, short, bool(groups))
    _hover_lines(p)
    _legends_below(p, groups)
    return _fit_title(p)


CAPACITY_IN_VIEW = 2   # a KV capacity is drawn when the memory in use reaches 1/this of it: the use fills half the plot


def _capacities(p: figure, used: list, ceilings: list[tuple[LegendItem, float, float]]) -> None:
    """Draw each NPU KV capacity that the memory in use reaches half of, so the use fills at least half of the plot
    and its distance to the capacity shows; fit the axis to the use otherwise, the capacity's value and its distance
    (times the run's peak NPU KV) in its legend entry. Drawn up to 8x the use, a P/D run's 27 GiB sat in the bottom
    fifth under its 143 GiB capacity. ``ceilings``: each run's capacity entry, capacity and peak NPU KV (GiB)."""
    peak = max((float(np.nanmax(r.data_source.data["y"], initial=0.0)) for r in used), default=0.0)
    near = [item.renderers[0] for item, cap, _ in ceilings if cap <= CAPACITY_IN_VIEW * peak]
    if len(near) == len(ceilings):
        return
    p.y_range.renderers = used + near
    for item, cap, kv in ceilings:
        if cap > CAPACITY_IN_VIEW * peak:
            times = f"{cap / kv:,.1f}x the peak NPU KV" if kv > 0 else "no NPU KV in use"
            item.label = value(f"NPU KV capacity: {cap:,.1f} GiB, {times} (off the scale)")


def _pool_label(pool: str, tier: str) -> str:
    """A prefix pool's key as a legend label: ``cpu:0`` -> ``CPU prefix pool (node 0)``,
    ``cpu:0:nodes[0].instances[1]`` -> ``CPU prefix pool of n0/i1``, ``cxl`` -> ``CXL prefix pool``."""
    kind, _, node = tier.partition(":")
    owner = pool.removeprefix(tier).lstrip(":")    # the instance of a private pool (sharing 'instance')
    where = f" of {_short(owner)}" if owner else f" (node {node})" if kind == "cpu" and node else ""
    return f"{kind.upper()} prefix pool{where}"


# the power model's components as a reader names them (the legend read base_node, npu, nic)
COMPONENT_NAMES = {"base_node": "base node", "npu": "NPU", "cpu": "CPU", "dram": "DRAM", "link": "link", "nic": "NIC",
                   "storage": "storage"}


def _no_power(r: Results) -> str:
    """Why a run has no power model: Scenario.run records it."""
    return r.attrs.get("no_power", "add a node power section to the cluster config")


def power(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
          baseline_label: str | None = None) -> figure | Div:
    """Power per component over time (all nodes), stacked; the baseline's total as a dashed line. With no
    power model in either run, a line of text that says why (an empty figure drew nothing and Bokeh warned)."""
    name_a, name_b = _names(a, b, label, baseline_label)
    runs = _runs(a, b, name_a, name_b)
    # a run alone is named in the title, as the other views name it; two runs by what they share and what differs
    title = _named("Power per component" + _width_note([r.power for r in (a, b) if r is not None and "power" in r.power],
                                                       MEAN_OF), runs)
    if "power" not in a.power:
        why = _no_power(a)
        if b is None or "power" in b.power:
            title += f" ({name_a if b is not None else 'this run'} has no power model: {why})"
        else:   # neither: naming only the run read as if the baseline had one
            title += (f" (neither run has a power model: {why})" if _no_power(b) == why else
                      f" ({name_a} has no power model: {why}; nor has {name_b}: {_no_power(b)})")
        if b is None or "power" not in b.power:
            _fig(title, "power (W)", x_range)   # the range is still checked
            return Div(text=f"<b>{html.escape(title, quote=False)}</b>", width=WIDTH)
    elif b is not None:   # the stack is the run's: say so once, not in each entry
        title += f"; stacked: {name_a}"
        if "power" not in b.power:   # else the baseline is missing from this view alone, unsaid
            title += f" ({name_b} has no power model)"
    p = _fig(title, "power (W)", _time_axis(x_range, a, b))
    pw = a.power
    groups, short = [], []
    if "power" in pw and (note := _too_short(_who(name_a, b), a, pw, "bin")):
        short.append(note)
    elif "power" in pw:
        t = pw.time.values
        per = pw.power.sum("node")
        names = [c for c in COMPONENTS if float(per.sel(component=c).max()) > 0]
        data = {"t": t, **{c: per.sel(component=c).values for c in names}}
        stack = p.varea_stack(names, x="t", source=ColumnDataSource(data),
                              color=[PALETTE[k % len(PALETTE)] for k in range(len(names))])
        groups.append((name_a if b is not None else None,
                       [LegendItem(label=COMPONENT_NAMES[c], renderers=[area]) for c, area in zip(names, stack)]))
        # the stack's top, unseen, for a hover with each component's share at that second (areas take none)
        top = p.line("t", "total", source=ColumnDataSource({**data, "total": per.sum("component").values}),
                     line_color=None)
        p.add_tools(HoverTool(renderers=[top], mode="vline", tooltips=[
            ("run", name_a), ("time", "@t{0,0.[000]} s"), ("total", "@total{0,0} W"),
            *[(COMPONENT_NAMES[c], f"@{{{c}}}{{0,0}} W") for c in reversed(names)]]))
    if b is not None and "power" in b.power and (note := _too_short(name_b, b, b.power, "bin")):
        short.append(note)
    elif b is not None and "power" in b.power:
        bp = b.power
        line = _series_line(p, name_b, "total", "W", bp.time.values, bp.power.sum(("node", "component")).values,
                            color=B_COLOR, line_dash="dashed", line_width=2)
        groups.append((name_b, [LegendItem(label="total", renderers=[line])]))
        _hover_lines(p)
    _say(p, short, bool(groups))
    _legends_below(p, groups)
    return _fit_title(p)


EXPERT_TITLE = "Expert load (token-expert pairs)"


def expert_load(r: Results, high: float | None = None) -> figure:
    """Token-expert pairs per MoE layer and expert (summed over groups): where a gate's skew lands. The
    colours run from 0 to ``high`` (default: the busiest cell), so a run and its baseline given one ``high``
    compare cell by cell, and an even load shows as one colour at its level."""
    _check_runs(r)
    if "expert_load" not in r.experts:
        raise InputError(f"the run of {r.attrs.get('model', 'this model')} has no experts: expert load is for "
                         "mixture-of-experts models", "view", "r")
    load = r.experts.expert_load.sum("moe_group")
    n_layers, n_experts = load.sizes["layer"], load.sizes["expert"]
    p = figure(title=_named(EXPERT_TITLE, [(run_labels(r)[0], r, False)]), height=300, width=WIDTH, tools="hover,save,reset",
               x_axis_label="expert", y_axis_label="MoE layer", x_range=(-0.5, n_experts - 0.5),
               y_range=(-0.5, n_layers - 0.5),
               tooltips=[("layer", "$y{0}"), ("expert", "$x{0}"), ("pairs", "@image{0,0}")])
    p.toolbar.logo = None
    values = load.transpose("layer", "expert").values.astype(float)
    top = float(values.max()) if high is None else float(high)
    mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=max(top, 1.0))
    p.image(image=[values], x=-0.5, y=-0.5, dw=n_experts, dh=n_layers, color_mapper=mapper)
    # 200,000 pairs, not 2.000e+5
    p.add_layout(ColorBar(color_mapper=mapper, width=8, title="pairs", formatter=NumeralTickFormatter(format=TICKS)),
                 "right")
    return _fit_title(p)


# ---- latency distributions -------------------------------------------------------------------------

METRICS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e_latency", "E2E latency"))


def _distribution(r: Results, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values of a latency and the fraction at or below each: per request, or per token
    gap for ITL (kept as distinct gaps and their counts)."""
    if metric == "itl":
        v, n = r.itl.itl.values, r.itl.gaps.values
    else:
        v = np.sort(r.requests[metric].values)
        n = np.ones(len(v), np.int64)
    ok = np.isfinite(v) & (n > 0)
    v, n = v[ok], n[ok]
    return v, np.cumsum(n) / n.sum() if len(n) else n


SECONDS_FROM_MS = 10_000   # a CDF whose longest latency is this many ms or more reads in seconds


def latency_cdf(a: Results, b: Results | None = None, metric: str = "ttft", label: str | None = None,
                baseline_label: str | None = None) -> figure:
    """Empirical CDF of a latency (ms): per request, or for ITL per token gap. Each curve rises from 0 at its
    shortest value (a step from the first point alone began in mid-air: at 25 % for four requests)."""
    runs = _runs(a, b, label, baseline_label)
    if not (isinstance(metric, str) and metric in dict(METRICS)):
        raise InputError(f"must be one of {', '.join(m for m, _ in METRICS)}, got {metric!r}", "view", "metric")
    title = dict(METRICS)[metric]
    dists = [(name, base, *_distribution(r, metric)) for name, r, base in runs]
    longest = max((float(v[-1]) if metric != "itl" else float(v.max()) for *_, v, _ in dists if len(v)), default=0.0)
    unit, scale = ("s", 1e-3) if longest >= SECONDS_FROM_MS else ("ms", 1.0)   # 50 s, not 50,000 ms
    p = figure(title=_named(f"{title} CDF", runs), height=240, width=WIDTH // 2,
               tools="pan,wheel_zoom,box_zoom,reset,save", x_axis_label=f"{title} ({unit})", y_range=(0, 1.02),
               y_axis_label="fraction of token gaps" if metric == "itl" else "fraction of requests")
    p.toolbar.logo = None
    empty, items = [], []
    for name, base, v, frac in dists:
        if not len(v):
            empty.append(name)
            continue
        src = ColumnDataSource({"x": v * scale, "y": frac, "run": [name] * len(v)})
        style = {"line_width": 2, "color": B_COLOR if base else PALETTE[0], "line_dash": "dashed" if base else "solid"}
        line = p.step("x", "y", source=src, mode="after", **style)
        rise = p.segment(x0="x", y0=0, x1="x", y1="y", source=ColumnDataSource(
            {"x": v[:1] * scale, "y": frac[:1], "run": [name]}), **style)
        items.append(LegendItem(label=name, renderers=[line, rise]))
    if empty:   # only TPOT and ITL can be: every request has a first token
        why = "no request made a second token"
        _say(p, [f"{' and '.join(empty)}: {why}" if b is not None else why], drawn=bool(items))
    p.xaxis.formatter = NumeralTickFormatter(format=TICKS)   # 1,500 ms, not 1.500e+3
    p.add_tools(HoverTool(tooltips=[("run", "@run"), (title, f"@x{{0,0.[000]}} {unit}"),
                                    ("at or below", "@y{0.0%}")]))
    if b is not None:   # under the plot, a run to a row: inside, it covered the long tails its curves are drawn for
        _legends_below(p, [(None, items)], ncols=1)
    return _fit_title(p)


def latency_cdfs(a: Results, b: Results | None = None, label: str | None = None, baseline_label: str | None = None):
    """TTFT and TPOT above, ITL and E2E latency below."""
    names = _names(a, b, label, baseline_label)   # derived once for the four
    figs = [latency_cdf(a, b, m, *names) for m, _ in METRICS]
    return column(row(*figs[:2]), row(*figs[2:]))


# ---- the summary table and the dashboard -------------------------------------------------------------

PAD = "padding:1px 12px 1px 0"
CELL = f"text-align:right;{PAD}"   # numbers line up on the right, with room between the columns


def _cell(v, fmt: str, key: str) -> str:
    if v is None:
        return "-"
    if not known(v):
        return f"<span title='{UNDEFINED.get(key, 'not defined for this run')}'>n/a</span>"
    return fmt.format(v)


def summary_table(a: Results, b: Results | None = None, label: str | None = None,
                  baseline_label: str | None = None) -> str:
    """The summary as an HTML table; with a baseline, its column and the relative change."""
    name_a, name_b = (html.escape(n) for n in _names(a, b, label, baseline_label))
    sa = a.summary()
    sb = b.summary() if b is not None else None
    head = f"<tr><th style='text-align:left'>metric</th><th>{name_a}</th>" + (
        f"<th>{name_b}</th><th>change</th>" if sb else "") + "</tr>"
    head = head.replace("<th>", f"<th style='{CELL}'>")
    body = []
    for key, label, fmt in SUMMARY_ROWS:
        if key not in sa and not (sb and key in sb):
            continue
        va = sa.get(key)
        cells = [f"<td style='text-align:left;{PAD}'>{label}</td>", f"<td>{_cell(va, fmt, key)}</td>"]
        if sb is not None:
            vb = sb.get(key)
            cells.append(f"<td>{_cell(vb, fmt, key)}</td>")
            change = "-" if (c := change_pct(va, vb)) is None else f"{c:+.1f} %"
            cells.append(f"<td>{change}</td>")
        body.append("<tr>" + "".join(cells).replace("<td>", f"<td style='{CELL}'>") + "</tr>")
    # beside a baseline, what both ran, as the plots' titles say it (a run alone: its column's name says it)
    pair = html.escape(pair_title(a, b)) if b is not None else ""
    caption = f"<caption style='text-align:left;font-weight:bold;{PAD}'>{pair}</caption>" if pair else ""
    return ("<table class='llmss-summary' style='border-collapse:collapse;font-family:monospace'>" + caption + head
            + "".join(body) + "</table>")


def timeline(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
             baseline_label: str | None = None):
    """The batch timeline above the request lifelines, on one x range."""
    names = _names(a, b, label, baseline_label)
    x = x_range if x_range is not None else time_range(a, b)
    return column(batch_timeline(a, b, x, *names), request_lifelines(a, b, x, label=names[0], baseline_label=names[1]))


def series(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
           baseline_label: str | None = None):
    """Throughput, memory and power over time, on one x range (the "Time series" tab)."""
    names = _names(a, b, label, baseline_label)
    x = x_range if x_range is not None else time_range(a, b)
    return column(throughput(a, b, x, *names), memory(a, b, x, *names), power(a, b, x, *names))


def experts(a: Results, b: Results | None = None, x_range=None, label: str | None = None,
            baseline_label: str | None = None):
    """The expert load of each run with MoE layers (the "Experts" tab), or a note that neither has any."""
    figs = []
    runs = _runs(a, b, label, baseline_label)
    moe = [(name, r) for name, r, _ in runs if "expert_load" in r.experts]
    high = max((float(r.experts.expert_load.sum("moe_group").max()) for _, r in moe), default=None)
    for name, r in moe:
        f = expert_load(r, high)   # one colour scale for both runs
        f.title.text = _named(EXPERT_TITLE, runs) + (f"; {name}" if b is not None else "")
        figs.append(_fit_title(f))
    if not figs:
        models = sorted({str(r.attrs.get("model", "?")) for _, r, _ in runs})
        return column(Div(text=f"<p>No expert load to show: {html.escape(' and '.join(models))} "
                               f"{'has' if len(models) == 1 else 'have'} no mixture-of-experts layers.</p>"))
    return column(*figs)


# the dashboard's plot tabs, title -> view of (a, b, x_range, label, baseline_label): each can be built alone, as
# the explorer does for the tab on show (a browser takes about as long to draw a figure in a hidden tab as in the
# open one)
PANELS = {"Timeline": timeline, "Time series": series,
          "Latency CDFs": lambda a, b=None, x_range=None, label=None, baseline_label=None:
              latency_cdfs(a, b, label, baseline_label),
          "Experts": experts}


def dashboard(a: Results, b: Results | None = None, label: str | None = None, baseline_label: str | None = None):
    """Every view of one run (and its baseline) in tabs; the time views share one x range."""
    names = _names(a, b, label, baseline_label)
    x = time_range(a, b)
    return Tabs(tabs=[TabPanel(child=view(a, b, x, *names), title=title) for title, view in PANELS.items()]
                + [TabPanel(child=Div(text=summary_table(a, b, *names)), title="Summary")])
