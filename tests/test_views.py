"""Bokeh views: the figures carry the run's data, overlay a baseline, and share the time axis."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from bokeh.models import (ColorBar, ColumnDataSource, Div, GlyphRenderer, Label, Legend, LegendItem,
                          LinearColorMapper, Tabs)
from bokeh.plotting import figure

from llmss_lab import views
from llmss_lab.views import plots
from llmss_lab.scenario import Scenario


@pytest.fixture(scope="module")
def runs(ref):
    a = Scenario(num_requests=60, power=True).run(ref)
    b = Scenario(num_requests=60, max_num_seqs=8).run(ref)
    return a, b


def _sources(fig) -> list[ColumnDataSource]:
    return [r.data_source for r in fig.renderers if isinstance(r, GlyphRenderer)]


def test_batch_timeline_has_one_bar_per_step_and_rows_per_run(runs):
    a, b = runs
    fig = views.batch_timeline(a)
    (src,) = _sources(fig)
    assert len(src.data["left"]) == a.iterations.sizes["step"]
    np.testing.assert_allclose(src.data["right"] - src.data["left"], a.iterations.duration.values * 1e-3)
    share = src.data["share"]
    assert share.min() >= 0 and share.max() <= 1 and share.max() > 0   # some prefill, some pure decode
    both = views.batch_timeline(a, b)
    assert list(both.y_range.factors) == [("baseline (max_num_seqs 8, power off)", "n0/i0"),
                                          ("baseline (max_num_seqs 8, power off)", ""),
                                          ("run (max_num_seqs 128, power on)", "n0/i0"),
                                          ("run (max_num_seqs 128, power on)", "")]
    assert len(_sources(both)[0].data["left"]) == a.iterations.sizes["step"] + b.iterations.sizes["step"]


def test_lifelines_cover_every_phase_of_every_request(runs):
    a, _ = runs
    (src,) = _sources(views.request_lifelines(a))
    n = a.requests.sizes["request"]
    assert len(src.data["x0"]) == 3 * n
    assert np.all(src.data["x1"] >= src.data["x0"])
    decode = src.data["phase"] == "decode"
    np.testing.assert_allclose(src.data["x1"][decode], a.requests.finish.values)


def test_time_views_share_one_x_range(runs):
    a, b = runs
    dash = views.dashboard(a, b)
    assert isinstance(dash, Tabs)
    figs = [views.batch_timeline, views.request_lifelines, views.throughput, views.memory, views.power]
    x = views.time_range(a, b)
    assert all(f(a, b, x).x_range is x for f in figs)
    assert x.end >= max(float(a.requests.finish.max()), float(b.requests.finish.max()))


@pytest.mark.parametrize("bad", [5, (0, "x"), (3.0, 1.0), (0.0, float("nan")), (0, 1, 2), (True, 2)])
def test_a_bad_x_range_is_named(runs, bad):
    from llmss_lab.errors import InputError

    a, _ = runs
    for f in (views.batch_timeline, views.request_lifelines, views.throughput, views.memory, views.power):
        with pytest.raises(InputError, match="view: x_range: expected a shared Range1d"):
            f(a, x_range=bad)
    assert views.throughput(a, x_range=(0, 2.5)).x_range.end == 2.5      # a pair of seconds still works


def test_throughput_integrates_to_the_tokens_generated(runs):
    a, _ = runs
    fig = views.throughput(a)
    gen = next(s for s in _sources(fig) if "y" in s.data and s.data["y"].sum() > 0)
    total = a.requests.output_tokens.sum().item()
    assert gen.data["y"].sum() == pytest.approx(total, rel=1e-9)   # 1 s bins: tokens/s x 1 s


def test_power_view_stacks_components_and_says_when_there_is_none(runs):
    a, b = runs
    fig = views.power(a, b)
    stacked = [s for s in _sources(fig) if "npu" in s.data]
    assert stacked and np.allclose(stacked[0].data["t"], a.power.time.values)
    none = views.power(b)   # nothing to draw: a line that says why, not an empty figure Bokeh warns about
    assert isinstance(none, Div) and "no power model" in none.text
    assert "no power model" in views.power(b, a).title.text   # the baseline's power is drawn under the note
    # neither has one: said of both (it named the run alone, as if the baseline had one)
    why = b.attrs["no_power"]
    assert views.power(b, b, label="x", baseline_label="y").text == (
        f"<b>Power per component: {views.pair_title(b, b)} (neither run has a power model: {why})</b>")
    other = dataclasses.replace(b, attrs={**b.attrs, "no_power": "H100 has none"})
    assert views.power(b, other, label="x", baseline_label="y").text == (
        f"<b>Power per component: {views.pair_title(b, b)} (x has no power model: {why}; nor has y: H100 has none)</b>")


def test_cdfs_and_summary_table_compare_two_runs(runs):
    a, b = runs
    fig = views.latency_cdf(a, b, "ttft")
    xs = [s.data["x"] for s in _sources(fig) if len(s.data["x"]) > 1]   # the steps (each rise is one point)
    assert fig.xaxis[0].axis_label == "TTFT (s)"   # the baseline's waits run to ~50,000 ms
    assert len(xs) == 2 and np.allclose(np.sort(a.requests.ttft.values) / 1000, xs[0])
    html = views.summary_table(a, b)
    assert "baseline" in html and "change" in html and "J per output token" in html


def test_a_metric_no_request_defines_reads_n_a_not_nan(ref, runs):
    """With one output token per request the explorer's table read 'nan' for TPOT and ITL (and 'nan %')."""
    one = Scenario(num_requests=4, output_len="fixed:1").run(ref)
    html = views.summary_table(one, runs[0])
    assert "nan" not in html.lower()
    assert html.count("title='needs requests with two or more output tokens'>n/a</span>") == 3


def test_a_cdf_rises_from_zero_at_its_shortest_value(ref, runs):
    """The step began at its first point: a CDF of four requests started in mid-air at 25 %, of two at 50 %."""
    few = Scenario(num_requests=4, output_len="fixed:8").run(ref)
    for r, b in ((few, None), (few, runs[0])):
        for metric, _ in plots.METRICS:
            fig = views.latency_cdf(r, b, metric)
            (rise,), (step,) = ([g for g in fig.renderers if type(g.glyph).__name__ == kind
                                 and g.glyph.line_color == plots.PALETTE[0]] for kind in ("Segment", "Step"))
            first = step.data_source.data
            assert rise.glyph.y0 == 0 and rise.glyph.x0 == rise.glyph.x1 == "x" and rise.glyph.y1 == "y"
            assert list(rise.data_source.data["x"]) == [first["x"][0]] and list(rise.data_source.data["y"]) == [
                first["y"][0]] and first["y"][0] > 0
            if b is not None:   # hidden with its curve from the legend
                (item,) = [i for i in fig.select({"type": LegendItem}) if step in i.renderers]
                assert rise in item.renderers


def test_the_itl_cdf_counts_every_token_gap(runs):
    a, b = runs
    src = _sources(views.latency_cdf(a, b, "itl"))[0]
    flat = np.repeat(a.itl.itl.values, a.itl.gaps.values)
    assert len(flat) == int((a.requests.output_tokens - 1).sum())
    # at each distinct gap, the share of token gaps at or below it
    want = np.searchsorted(np.sort(flat), src.data["x"], side="right") / len(flat)
    np.testing.assert_allclose(src.data["y"], want)
    assert src.data["y"][-1] == pytest.approx(1.0)
    assert len(views.latency_cdfs(a, b).children) == 2   # two rows of two


def test_an_empty_tpot_or_itl_cdf_says_why(ref, runs):
    """With output_len fixed:1 the TPOT and ITL plots were blank, with no word why; then blank but for a note in
    the title (the frame without axes, Bokeh warning that it drew nothing): the note goes across the plot."""
    one = Scenario(num_requests=8, output_len="fixed:1").run(ref)
    for metric in ("tpot", "itl"):
        alone = views.latency_cdf(one, None, metric)
        (note,) = alone.select({"type": Label, "name": "no data"})
        assert note.text == "no request made a second token" and not _sources(alone)
        assert "(" not in alone.title.text
        assert views.latency_cdf(one, runs[0], metric, label="one token").title.text.replace("\n", " ").endswith(
            "(one token: no request made a second token)")
        assert "(" not in views.latency_cdf(runs[0], None, metric).title.text
    assert "(" not in views.latency_cdf(one, None, "ttft").title.text


def test_expert_load_heatmap(ref):
    r = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=8, expert_gate="zipf").run(ref)
    fig = views.expert_load(r)
    img = _sources(fig)[0].data["image"][0]
    assert img.shape == (r.experts.sizes["layer"], r.experts.sizes["expert"])
    assert img.sum() == r.experts.expert_load.sum().item()
    # the Experts tab: a heatmap per run with MoE layers, titled by run; a dense baseline adds none
    dense = Scenario(num_requests=8).run(ref)
    tab = views.experts(r, dense)
    assert [f.title.text.replace("\n", " ") for f in tab.children] == [
        "Expert load (token-expert pairs): both on RTXPRO6000, profiled latencies; Qwen3-30B-A3B-Instruct-2507 vs "
        "Llama-3.1-8B; run (model Qwen3-30B-A3B-Instruct-\u2026, expert_gate zipf)"]
    assert [f.title.text.replace("\n", " ").split("; ")[-1] for f in views.experts(r, r).children] == ["run",
                                                                                                     "baseline"]
    alone = [views.experts(r).children[0].title.text, views.experts(r, label="zipf").children[0].title.text]
    # alone: named by what it ran, or by the name given, once
    assert alone == ["Expert load (token-expert pairs): Qwen3-30B-A3B-Instruct-2507 on RTXPRO6000",
                     "Expert load (token-expert pairs): zipf"]
    assert views.expert_load(r).title.text == alone[0]
    (note,) = views.experts(dense).children
    assert "meta-llama/Llama-3.1-8B has no mixture-of-experts layers" in note.text
    # colours from 0 on one scale for a run and its baseline, so cells compare across the two heatmaps
    even = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=8, expert_gate="balanced").run(ref)
    mappers = [f.select_one({"type": ColorBar}).color_mapper for f in views.experts(r, even).children]
    assert {(m.low, m.high) for m in mappers} == {(0.0, float(r.experts.expert_load.sum("moe_group").max()))}


def test_time_views_say_what_they_leave_out_and_where_memory_runs_out(ref):
    r = Scenario(num_requests=450).run(ref)
    # more than fit: every k-th, so the lines span the run on the time axis the batch timeline shares
    lines = views.request_lifelines(r, max_requests=100)
    assert lines.title.text.startswith("Request lifelines (every 5th of 450:")
    (src,) = _sources(lines)
    assert sorted(set(src.data["id"])) == list(range(0, 450, 5))
    assert max(src.data["x1"]) > 0.9 * float(r.requests.finish.max())
    assert views.request_lifelines(r).title.text.startswith("Request lifelines (every 2nd of 450:")
    assert views.request_lifelines(r, max_requests=450).title.text.startswith("Request lifelines (queued")
    mem = views.memory(r)
    (cap,) = [i.renderers[0] for i in mem.legend[0].items if i.label["value"] == "NPU KV capacity"]
    assert cap.data_source.data["y"][0] == pytest.approx(float(r.memory.npu_kv_capacity.sum()) / 1024)


def test_a_legend_under_the_plot_fits_in_the_figure(runs, ref):
    """The legends grow the figure by their height, so the plot keeps its own (a legend taller than the figure ran
    past its bottom, cut off in a notebook)."""
    a, _ = runs
    b = Scenario(num_requests=30, power=True, max_num_seqs=8).run(ref)
    pools = Scenario(num_requests=30, instances=2, prefix_storage="cpu", shared_prefix_len=512).run(ref)
    for fig in (views.power(a, b), views.memory(pools, b), views.throughput(a, b), views.request_lifelines(a, b)):
        legends = [x for x in fig.below if isinstance(x, Legend)]
        rows = sum(-(-_entries(leg) // leg.ncols) for leg in legends)
        # a row is a 20 px glyph and 10 px of spacing; each legend has a title, a margin and a padding too
        assert fig.height >= (320 if "lifelines" in fig.title.text else 220) + 30 * rows + 20 * len(legends), \
            (fig.title.text, rows, fig.height)
    assert views.throughput(a).height == 220 + 2 * 8 + 20   # a run alone: one row of two entries, no title


def _entries(legend: Legend) -> int:
    """Entries drawn: one per item, one per phase for the lifelines' item per value of a field."""
    return sum(3 if getattr(i.label, "field", None) else 1 for i in legend.items)


def test_overlay_legends_sit_under_the_plot_a_run_to_a_row(runs):
    """With a baseline the legends beside the plots took a third of the width at the explorer's 830 px, every
    entry repeating the run's long name; the CDF legends, inside, covered the curves' long tails."""
    a, b = runs
    names = views.run_labels(a, b)
    for view in (views.throughput, views.memory, views.request_lifelines):
        fig = view(a, b)
        assert all(leg in fig.below for leg in fig.select({"type": Legend})), fig.title.text
        legends = [x for x in fig.below if isinstance(x, Legend)]
        assert [leg.title for leg in legends] == list(names), fig.title.text   # each run named once
        for leg in legends:
            assert leg.orientation == "horizontal" and leg.ncols == _entries(leg), (fig.title.text, leg.title)
            assert not any(n in (getattr(i.label, "value", None) or "") for i in leg.items for n in names)
    power = views.power(a, a, None, *names)   # the stack's seven components in a row, and the baseline's total
    assert [(leg.title, leg.ncols) for leg in power.below if isinstance(leg, Legend)] == [(names[0], 7), (names[1], 1)]
    for metric, _ in plots.METRICS:   # a run to a row, under the axis: not over the curves
        fig = views.latency_cdf(a, b, metric)
        (leg,) = fig.select({"type": Legend})
        assert leg in fig.below and leg.ncols == 1 and _legend(fig) == list(names)
        assert fig.height == 240 + 2 * 30 - 10 + 2 * 8 + 17 * fig.title.text.count("\n")   # the plot keeps its height


def test_the_gantt_names_each_run_once_and_its_rows_by_instance(runs):
    """In the Timeline tab the rows read "run (scheduler static): n0/i0": with the lifelines' legend that left
    the two time plots ~320 px of the explorer's 830."""
    a, b = runs
    fig = views.batch_timeline(a, b)
    names = views.run_labels(a, b)
    assert {sub for _, sub in fig.y_range.factors} == {"n0/i0", ""}      # beside the plot: the instance only
    assert fig.yaxis[0].group_text_font_size == "0px"                     # the run's name is not drawn there...
    labels = fig.select({"type": Label})
    assert sorted(lab.text for lab in labels) == sorted(names)            # ...but once, across its own row
    factors = list(fig.y_range.factors)
    for lab in labels:   # on the row (name, ""): rows are one unit, groups GROUP_PADDING apart, centres half in
        k = factors.index((lab.text, ""))
        assert lab.y == pytest.approx(k + 0.5 + plots.GROUP_PADDING * (factors[k][0] != factors[0][0]))
        assert lab.x_units == "screen"
    assert not views.batch_timeline(a).select({"type": Label})             # a run alone: no names


def test_the_overlay_plots_take_the_width_of_the_explorer(runs, tmp_path):
    """Measured in a browser at the explorer's width (~830 px): the time plots had ~350 px (Time series) and
    ~255 px (Timeline) of it, the rest went to legends and row labels."""
    import os
    import shutil

    from bokeh.io import save
    from bokeh.resources import INLINE

    from llmss_lab.widgets.explorer import _fit_width

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = os.environ.get("LLMSS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium browser on PATH")
    a, b = runs
    page_width = 846   # an 830 px panel and the page's margins
    frames = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            for title in ("Timeline", "Time series", "Latency CDFs"):
                html = tmp_path / f"{title}.html"
                save(_fit_width(views.PANELS[title](a, b, None, "run (scheduler static)",
                                                    "baseline (max_num_seqs 8, power off)")), html,
                     resources=INLINE, title=title)
                page = browser.new_page(viewport={"width": page_width, "height": 800})
                page.goto(html.as_uri())
                page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 "   # drawn, not a guess
                                       "&& Bokeh.documents.every(d => d.is_idle)")      # at how long it takes
                frames[title] = page.evaluate("""() => { const out = [];
                    const walk = (v) => { if (v.frame && v.model.title) out.push([v.model.title.text,
                        v.frame.bbox.width, v.frame.bbox.height, v.bbox.width]);
                        for (const c of (v.child_views ?? [])) walk(c); };
                    for (const d of Bokeh.documents) for (const r of d.roots()) walk(Bokeh.index.get_one(r));
                    return out; }""")
                page.close()
        finally:
            browser.close()
    for title in ("Timeline", "Time series"):
        assert len(frames[title]) in (2, 3)
        for name, width, height, whole in frames[title]:
            assert width >= 0.8 * whole, (name, width, whole)   # the plot area: most of the figure's width
            assert height >= 140, (name, height)                # and its height, the legends below it
    for name, width, height, whole in frames["Latency CDFs"]:
        assert height >= 165 and width >= 0.75 * whole, (name, width, height, whole)


@pytest.mark.parametrize(("storage", "sharing", "labels"), [
    ("cpu", "cluster", ["CPU prefix pool (node 0)"]),
    ("cpu", "instance", ["CPU prefix pool of n0/i0", "CPU prefix pool of n0/i1"]),
    ("cxl", "node", ["CXL prefix pool"]),
])
def test_the_memory_legend_names_prefix_pools_in_words(ref, storage, sharing, labels):
    """The legend showed the pools' keys: 'cpu:0 pool', 'cpu:0:nodes[0].instances[1] pool'."""
    r = Scenario(num_requests=12, instances=2, prefix_storage=storage, prefix_sharing=sharing, shared_prefix_len=256,
                 cxl_mem_gib=64.0 if storage == "cxl" else 0.0).run(ref)
    legend = [i.label["value"] for i in views.memory(r).legend[0].items]
    assert [x for x in legend if "pool" in x] == labels, legend


def test_views_name_an_argument_of_the_wrong_kind(runs):
    from llmss_lab.errors import InputError

    a, b = runs
    for call, key in ((lambda: plots.dashboard("run.nc"), "a"), (lambda: plots.throughput(a, a.requests), "b"),
                      (lambda: plots.latency_cdf(a, metric="ttf"), "metric"),
                      (lambda: plots.request_lifelines(a, max_requests=2.5), "max_requests"),
                      (lambda: plots.expert_load(None), "a"), (lambda: plots.summary_table(a, 3), "b"),
                      (lambda: plots.expert_load(a), "r")):     # a dense run: AttributeError before
        with pytest.raises(InputError) as err:
            call()
        assert err.value.where == key
    assert plots.request_lifelines(a, max_requests=np.int64(5)) is not None


def test_a_baselines_series_are_told_apart_by_their_dashes(runs):
    a, b = runs
    for fig in (views.throughput(a, b), views.memory(a, b)):
        lines = [r.glyph for r in fig.renderers if isinstance(r, GlyphRenderer)]
        grey = [g for g in lines if g.line_color == plots.B_COLOR]
        assert len(grey) >= 2 and len({tuple(g.line_dash) for g in grey}) == len(grey), fig.title.text


def test_throughput_counts_a_pd_split_once(ref):
    """In a P/D split each side counts as its vLLM would (prompts on both); the view sums each where served."""
    res = Scenario(instances=2, prefill_instances=1, num_requests=12, rate=4.0).run(ref)
    legend = views.throughput(res).legend[0]
    lines = {item.label.value: item.renderers[0].data_source.data["y"] for item in legend.items}
    assert sum(lines["generation"]) == int(res.requests.output_tokens.sum())
    assert sum(lines["prompt"]) == int(res.requests.input_tokens.sum())


def test_heatmap_panels_can_share_one_colour_scale():
    import xarray as xr

    from llmss_lab.views import design

    shape = (2, 2, 2)   # tp x max_num_seqs x rate
    ds = xr.Dataset({"goodput": (("tp", "max_num_seqs", "rate"), np.arange(8.0).reshape(shape)),
                     "status": (("tp", "max_num_seqs", "rate"), np.full(shape, "ok")),
                     "error": (("tp", "max_num_seqs", "rate"), np.full(shape, ""))},
                    coords={"tp": [1, 2], "max_num_seqs": [8, 64], "rate": [1.0, 2.0]})

    def scale(**kw):
        mapper = design.heatmap(ds, "goodput", "rate", "max_num_seqs", tp=2, **kw).select_one(LinearColorMapper)
        return mapper.low, mapper.high
    assert scale() == (4.0, 7.0) and scale(same_scale=True) == (0.0, 7.0)


def test_colour_bars_read_large_counts_in_full(ref):
    """The expert load's colour bar read 0.000e+0 ... 2.000e+5 (BokehJS's default past 10^5), and its hover the
    raw float; a sweep's heat map of energy in J read so too."""
    import xarray as xr
    from bokeh.models import HoverTool

    from llmss_lab.views import design

    r = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=8, expert_gate="zipf").run(ref)
    (bar,) = views.expert_load(r).select({"type": ColorBar})
    assert bar.formatter.format == plots.TICKS   # thousands separated, decimals only where the ticks need them
    (hover,) = views.expert_load(r).select({"type": HoverTool})
    assert dict(hover.tooltips)["pairs"] == "@image{0,0}"
    ds = xr.Dataset({"total_energy_J": (("tp", "rate"), [[1.2e5, 3.4e5]]), "status": (("tp", "rate"), [["ok", "ok"]]),
                     "error": (("tp", "rate"), [["", ""]])}, coords={"tp": [1], "rate": [1.0, 2.0]})
    (bar,) = design.heatmap(ds, "total_energy_J", "rate", "tp").select({"type": ColorBar})
    assert bar.formatter.format == plots.TICKS


def test_batch_timeline_names_the_side_of_each_instance_in_a_pd_split(ref):
    """Notebook 03 says the prefill instance runs pure prefill and the decode instance pure decode: its rows
    read n0/i0 and n0/i1, and nothing said which was which."""
    pd = Scenario(instances=2, prefill_instances=1, num_requests=12, rate=4.0).run(ref)
    colocated = Scenario(instances=2, num_requests=12, rate=4.0).run(ref)
    rows = list(views.batch_timeline(pd, colocated, label="P/D", baseline_label="colocated").y_range.factors)
    assert rows == [("colocated", "n0/i1"), ("colocated", "n0/i0"), ("colocated", ""),
                    ("P/D", "n0/i1 (decode)"), ("P/D", "n0/i0 (prefill)"), ("P/D", "")]
    (src,) = _sources(views.batch_timeline(pd))
    it = pd.iterations
    on_prefill = np.asarray(src.data["y"]) == "n0/i0 (prefill)"
    assert on_prefill.sum() == int((it.instance == 0).sum()) > 0   # every step sits on its own instance's row
    assert (src.data["prefill_tokens"][on_prefill] == src.data["tokens"][on_prefill]).all()


def _legend(fig) -> list[str]:
    """The entries' labels as read: after the run's name when its legend is titled with it (an entry per value of a
    field, as the lifelines' phases: the field's name)."""
    return [(f"{leg.title}: " if leg.title else "") + (getattr(i.label, "value", None) or i.label.field)
            for leg in fig.below + fig.center + fig.right if isinstance(leg, Legend) for i in leg.items]


OVERLAYS = ("batch_timeline", "request_lifelines", "throughput", "memory", "power", "latency_cdf", "latency_cdfs",
            "summary_table", "timeline", "series", "experts", "dashboard")


def test_every_overlay_view_takes_the_names_of_the_run_and_its_baseline(runs):
    """Every overlay read only "run" and "baseline": which scenario was which was left to the prose."""
    import inspect

    a, b = runs
    for name in OVERLAYS:   # one API: the same two keywords, defaults left to the views
        params = inspect.signature(getattr(views, name)).parameters
        assert params["label"].default is None and params["baseline_label"].default is None, name
    names = dict(label="128 seqs", baseline_label="8 seqs")
    assert list(views.batch_timeline(a, b, **names).y_range.factors) == [("8 seqs", "n0/i0"), ("8 seqs", ""),
                                                                        ("128 seqs", "n0/i0"), ("128 seqs", "")]
    assert "8 seqs: every phase, grey" in _legend(views.request_lifelines(a, b, **names))
    assert _legend(views.throughput(a, b, **names)) == ["128 seqs: generation", "128 seqs: prompt",
                                                        "8 seqs: generation", "8 seqs: prompt"]
    assert {"128 seqs: NPU KV", "8 seqs: NPU KV"} <= set(_legend(views.memory(a, b, **names)))
    # the stacked components are the run's, the dashed total the baseline's: both say whose
    both = views.power(a, a, **names)   # the stack is the run's, named once in the title
    assert _legend(both)[::7] == ["128 seqs: base node", "8 seqs: total"]
    assert both.title.text == f"Power per component: {views.pair_title(a, a)}; stacked: 128 seqs"
    assert "128 seqs has no power model" in views.power(b, a, **names).title.text
    for fig in (views.latency_cdf(a, b, "tpot", **names), *views.latency_cdfs(a, b, **names).children[1].children):
        assert _legend(fig) == ["128 seqs", "8 seqs"]
    assert "<th style='text-align:right;padding:1px 12px 1px 0'>128 seqs</th>" in views.summary_table(a, b, **names)
    assert "8 seqs" in views.summary_table(a, b, **names)
    dash = views.dashboard(a, b, **names)
    assert list(dash.tabs[0].child.children[0].y_range.factors)[0] == ("8 seqs", "n0/i0")
    assert "128 seqs" in dash.tabs[-1].child.text
    assert _legend(views.series(a, b, **names).children[0])[0] == "128 seqs: generation"
    assert "8 seqs: every phase, grey" in _legend(views.timeline(a, b, **names).children[1])
    assert _legend(views.throughput(a, label="128 seqs")) == ["generation", "prompt"]   # alone: no tag
    assert views.throughput(a, label="128 seqs").title.text == "Throughput: 128 seqs"   # but named in the title


def test_left_out_the_names_say_what_differs_between_the_runs(runs, ref):
    """As `llmss summary` says what a second run changed: the legend says it of each run."""
    from llmss_lab.api import simulate
    from llmss_lab.workload import synthetic

    a, b = runs
    assert views.run_labels(a, b) == ("run (max_num_seqs 128, power on)", "baseline (max_num_seqs 8, power off)")
    assert _legend(views.latency_cdf(a, b)) == list(views.run_labels(a, b))
    assert _legend(views.throughput(a, b))[2] == "baseline (max_num_seqs 8, power off): generation"
    assert "<th style='text-align:right;padding:1px 12px 1px 0'>baseline (max_num_seqs 8, power off)</th>" \
        in views.summary_table(a, b)
    assert views.run_labels(a, a) == ("run", "baseline")   # nothing to tell apart
    assert views.run_labels(a) == ("Llama-3.1-8B on RTXPRO6000", "baseline")   # alone: what it ran
    many = Scenario(num_requests=60, max_num_seqs=8, block_size=32, rate=5.0, seed=1).run(ref)
    assert views.run_labels(many, b) == ("run (block_size 32, rate 5.0, +1 more)",
                                         "baseline (block_size 16, rate 10.0, +1 more)")
    # a cluster file sets the shape: the shape fields its scenario leaves as they were are not named
    file = Scenario(num_requests=8, cluster_config="single_node_single_instance", tp=2).run(ref)
    assert views.run_labels(file, Scenario(num_requests=8, cluster_config="single_node_single_instance").run(ref)) \
        == ("run", "baseline")
    # runs of simulate() record no scenario: the settings llmss summary compares
    cfg = ref / "configs/cluster/single_node_single_instance.json"
    x, y = (simulate(cfg, synthetic(8), reference_dir=ref, router=router) for router in ("round_robin", "random"))
    assert views.run_labels(x, y) == ("run (router round_robin)", "baseline (router random)")
    # one name given, the other still derived
    assert _legend(views.latency_cdf(a, b, label="mine")) == ["mine", "baseline (max_num_seqs 8, power off)"]


@pytest.mark.parametrize(("kw", "key", "says"), [
    (dict(label=""), "label", "expected a name to show for the run (a non-empty string) or None, got ''"),
    (dict(baseline_label=3), "baseline_label", "expected a name to show for the baseline"),
    (dict(label="same", baseline_label="same "), "baseline_label", "the run is also called 'same'"),
])
def test_a_bad_name_is_refused_by_every_overlay_view(runs, kw, key, says):
    from llmss_lab.errors import InputError

    a, b = runs
    for name in OVERLAYS:
        with pytest.raises(InputError, match="^" + re.escape(f"view: {key}: {says}")) as err:
            getattr(views, name)(a, b, **kw)
        assert err.value.where == key, name


def test_a_run_alone_gets_a_legend_only_where_it_names_several_series(runs):
    """A run alone had a legend of one entry, "run", under each CDF: 36 px that said nothing. Its name, when it has
    one of its own, is in the title instead; legends that tell series apart stay."""
    a, _ = runs
    for metric, title in plots.METRICS:
        fig = views.latency_cdf(a, metric=metric)
        assert not fig.select({"type": Legend}) and fig.height == 240, metric
        assert fig.title.text == f"{title} CDF: Llama-3.1-8B on RTXPRO6000"
        assert views.latency_cdf(a, metric=metric, label="128 seqs").title.text == f"{title} CDF: 128 seqs"
    for view in (views.throughput, views.memory, views.power, views.request_lifelines):
        legends = [x for x in view(a).below if isinstance(x, Legend)]
        assert len(legends) == 1 and _entries(legends[0]) >= 2, view.__name__
    named = views.timeline(a, label="128 seqs")
    assert [f.title.text.endswith(": 128 seqs") for f in named.children] == [True, True]
    assert not views.batch_timeline(a).title.text.endswith(": run")


@pytest.fixture(scope="module")
def paper_frames(ref, tmp_path_factory):
    """The frames of Figs 5 (one scenario), 6, 7, 9 and 10, from quick runs of their scenarios."""
    from llmss_lab import paper
    from llmss_lab.figures import write_figure_data

    art, out = ref / "ispass26", tmp_path_factory.mktemp("paper")
    only = {5: ["A6000/MD"]}
    for n in (5, 6, 7, 9, 10):
        write_figure_data(n, art, out, only=only.get(n))
    return {n: paper.frames(n, art, out, only=only.get(n)) for n in (5, 6, 7, 9, 10)}


def test_paper_legends_sit_under_the_plots_an_entry_per_source_or_series(paper_frames):
    """The paper views' legends sat inside a panel, over its lines (Figs 5, 7, 9, 10), or beside the bars between the
    plot and its second axis (Fig 10), and Fig 7 gave each series one entry that did not say which line is which
    source."""
    from bokeh.models import Plot

    from llmss_lab.paper import OURS, REAL, THEIRS
    from llmss_lab.views import paper as pv

    sources = [REAL, THEIRS, OURS]
    for n, frames in paper_frames.items():
        layout = pv.draw(n, frames)
        plots_ = list(layout.select({"type": Plot}))
        for p in plots_:
            assert not [x for x in p.center + p.right if isinstance(x, Legend)], (n, p.title.text)
            for leg in (x for x in p.below if isinstance(x, Legend)):
                labels = [i.label.value for i in leg.items]
                assert len(labels) == len(set(labels)) and leg.orientation == "horizontal", (n, labels)
        found = [[i.label.value for i in leg.items] for leg in layout.select({"type": Legend})]
        if n in (5, 9):
            assert found == [sources], n    # once: the sources
        found = sorted(found)   # the layout's order is not the page's
        if n == 6:
            assert len(found) == 2 and found[1] == sources and "Measured" in found[0], found
        if n == 7:   # one series: its sources; several: the series by colour, then the sources by dash
            assert found == [["inst0", "inst1", "shared cpu", *sources]] * 2 + [sources] * 2, found
        if n == 10:
            assert len(found) == 2 and ["GPU only", "PIM", "PIM + SBI", THEIRS, OURS] in found, found
            energy = next(f for f in found if "Others" in f)
            assert energy[-2:] == [f"J/token ({THEIRS})", f"J/token ({OURS})"], found


def test_paper_legends_grow_the_figure_and_bar_names_clear_each_other(paper_frames):
    """The plot keeps its height under a legend; at 0.6 rad "LLMServingSim 2.0" ran into the next bar's name."""
    from bokeh.models import FactorRange, Plot

    from llmss_lab.views import paper as pv

    bars = [p for p in pv.draw(10, paper_frames[10]).select({"type": Plot}) if isinstance(p.x_range, FactorRange)]
    (e,) = bars
    legend = [x for x in e.below if isinstance(x, Legend)][0]
    assert e.height == 380 + pv.LEGEND_ROW_PX * -(-len(legend.items) // legend.ncols)
    assert legend.ncols * (16 + 5 + 12 + pv.LEGEND_CHAR_PX * max(len(i.label.value) for i in legend.items)) <= e.width
    spacing = e.width / (len(e.x_range.factors) + 2)   # a bar's slot, generously (the groups' padding not counted)
    longest = max(len(src) for _, src in e.x_range.factors)
    assert np.cos(e.xaxis[0].major_label_orientation) * 5.5 * longest < spacing   # 8pt: about 5.5 px a character


def _colours(fig) -> list[str]:
    """The colours a figure draws its data in: each glyph's line or fill colour, or its colour column's values."""
    out = []
    for r in fig.renderers:
        g = r.glyph
        c = getattr(g, "line_color", None) if not hasattr(g, "fill_color") or type(g).__name__ == "Segment" \
            else g.fill_color
        out += list(r.data_source.data[c]) if isinstance(c, str) and c in r.data_source.data else [c]
    return [c for c in out if isinstance(c, str)]


def test_a_runs_colours_are_told_apart_with_any_colour_vision(runs, ref):
    """Category10's red and green (a CPU pool and the KV capacity, prefill and queued) read alike to a
    red-green colour-blind reader; the capacity line was the same red as the second prefix pool."""
    a, b = runs
    pools = Scenario(num_requests=30, instances=2, prefix_storage="cpu", shared_prefix_len=512).run(ref)
    allowed = set(plots.PALETTE) | {plots.B_COLOR, plots.LIMIT_COLOR}
    for fig in (views.throughput(a, b), views.memory(pools, b), views.power(a, b), views.request_lifelines(a, b),
                views.latency_cdf(a, b)):
        used = set(_colours(fig))
        assert used and used <= allowed, (fig.title.text, used - allowed)
    mem = views.memory(pools)
    colours = {i.label.value: i.renderers[0].glyph.line_color for i in mem.legend[0].items}
    assert len(set(colours.values())) == len(colours), colours          # every series its own colour
    phases = {c for *_, c in plots.PHASES}
    assert len(phases) == 3 and phases <= set(plots.PALETTE)


def test_axes_name_the_quantity_and_its_unit_and_long_latencies_read_in_seconds(runs):
    """The y axes read "W", "GiB", "tokens / s" with ticks 12000; a CDF of waits up to 50 s read 50,000 ms; the
    CDFs gave no numbers on hover; the power view left out a baseline with no power model without a word."""
    from bokeh.models import HoverTool, NumeralTickFormatter

    a, b = runs
    labels = {view.__name__: view(a, b).yaxis[0].axis_label for view in (views.throughput, views.memory, views.power)}
    assert labels == {"throughput": "throughput (tokens/s)", "memory": "memory (GiB)", "power": "power (W)"}
    for fig in (views.throughput(a), views.power(a)):
        assert fig.yaxis[0].formatter.format == fig.xaxis[0].formatter.format == plots.TICKS
    assert not isinstance(views.batch_timeline(a).yaxis[0].formatter, NumeralTickFormatter)   # rows: names
    slow, quick = views.latency_cdf(b, metric="e2e_latency"), views.latency_cdf(a, metric="tpot")
    assert float(b.requests.e2e_latency.max()) >= plots.SECONDS_FROM_MS > float(a.requests.tpot.max())
    assert slow.xaxis[0].axis_label == "E2E latency (s)" and quick.xaxis[0].axis_label == "TPOT (ms)"
    np.testing.assert_allclose(_sources(slow)[0].data["x"], np.sort(b.requests.e2e_latency.values) / 1000)
    (hover,) = slow.select({"type": HoverTool})
    assert dict(hover.tooltips)["E2E latency"].endswith(" s") and "@y" in dict(hover.tooltips)["at or below"]
    assert views.power(a, b).title.text.replace("\n", " ").endswith(f"({views.run_labels(a, b)[1]} has no power model)")


def _decimals(fmt: str) -> int:
    """The decimals a numbro format such as ``0,0.[000]`` can show (optional ones included)."""
    m = re.search(r"\.\[?(0+)\]?", fmt)
    return len(m[1]) if m else 0


def test_tick_labels_of_a_short_run_are_told_apart(ref):
    """One decimal at most: the time axis of a 0.2 s run read 0, 0.1, 0.1, 0.2, 0.2 (ticks 0.05 apart), and its
    hover said 0.1 s for a step at 0.05 s; a TPOT CDF spanning 22.5-22.9 ms read its ticks alike too."""
    from bokeh.models import HoverTool

    short = Scenario(num_requests=2, output_len="fixed:4", power=True).run(ref)
    assert float(short.requests.finish.max()) < 0.5
    figs = [views.throughput(short), views.memory(short), views.power(short), views.request_lifelines(short),
            views.batch_timeline(short), *(views.latency_cdf(short, metric=m) for m, _ in plots.METRICS)]
    for fig in figs:
        assert _decimals(fig.xaxis[0].formatter.format) >= 3, fig.title.text
        if fig.yaxis[0].formatter.__class__.__name__ == "NumeralTickFormatter":
            assert _decimals(fig.yaxis[0].formatter.format) >= 3, fig.title.text
        for hover in fig.select({"type": HoverTool}):
            for name, tip in hover.tooltips:
                if name == "time":
                    assert _decimals(tip) >= 3, (fig.title.text, tip)


def test_the_time_series_give_their_numbers_on_hover(runs):
    """Throughput, memory and power drew lines and areas with no hover: a reader could not read a value off them."""
    from bokeh.models import HoverTool

    a, b = runs
    for view, unit in ((views.throughput, "tokens/s"), (views.memory, "GiB")):
        fig = view(a, b)
        (hover,) = fig.select({"type": HoverTool})
        lines = [r for r in fig.renderers if type(r.glyph).__name__ == "Line"]
        assert set(hover.renderers) == set(lines) and len(lines) >= 4, view.__name__
        assert {r.data_source.data["run"][0] for r in lines} == set(views.run_labels(a, b))
        assert {r.data_source.data["unit"][0] for r in lines} == {unit}
        assert "@series" in dict(hover.tooltips)["series"] and "@unit" in dict(hover.tooltips)["value"]
    fig = views.power(a, a, label="x", baseline_label="y")
    (stack,), (lines,) = ([h for h in fig.toolbar.tools if isinstance(h, HoverTool) and (h.mode == "vline") == v]
                          for v in (True, False))
    tips = dict(stack.tooltips)
    (top,) = stack.renderers
    shown = [c for c in tips if c not in ("run", "time", "total")]
    names = [tips[c].removeprefix("@{").removesuffix("}{0,0} W") for c in shown]   # the columns they read
    assert len(names) == 7 and all(tips[c] == f"@{{{n}}}{{0,0}} W" for c, n in zip(shown, names))
    np.testing.assert_allclose(top.data_source.data["total"], sum(top.data_source.data[c] for c in names))
    # each component named as a reader names it, in the hover and the legend (they read base_node, npu, nic)
    assert shown == ["storage", "NIC", "link", "DRAM", "CPU", "NPU", "base node"]
    assert [i.label.value for i in [x for x in fig.below if isinstance(x, Legend)][0].items] == shown[::-1]
    assert [r.data_source.data["series"][0] for r in lines.renderers] == ["total"]


NOTEBOOK_PX = 848   # JupyterLab's output area in a 1280 px window with the file browser open (measured)


def test_every_view_fits_a_notebook_beside_the_file_browser(runs):
    """At 900 px a view ran past the output area, its toolbar and the right-hand CDFs cut off behind a scroll bar;
    the batch timeline's colour bar read 0, 0, 0, 0, 1 in JupyterLab."""
    from bokeh.layouts import Row
    from bokeh.models import Plot

    a, b = runs
    for view in (views.timeline, views.series, views.latency_cdfs):
        layout = view(a, b)
        for part in layout.select({"type": Row}):   # side by side: their widths add up
            assert sum(c.width for c in part.children) <= NOTEBOOK_PX, view.__name__
        assert all(p.width <= NOTEBOOK_PX for p in layout.select({"type": Plot})), view.__name__
    (bar,) = views.batch_timeline(a).select({"type": ColorBar})
    assert bar.formatter.format == "0%"


def test_paper_line_panels_give_source_time_and_value_on_hover(paper_frames):
    """The paper's line panels (Figs 5, 6, 7, 9, 10) had no hover: a gap between the sources could not be read."""
    from bokeh.models import HoverTool, Plot

    from llmss_lab.paper import OURS, REAL, THEIRS
    from llmss_lab.views import paper as pv

    checked = 0
    for n, frames in paper_frames.items():
        for p in pv.draw(n, frames).select({"type": Plot}):
            drawn = [r for r in p.renderers if type(r.glyph).__name__ == "Line" and "x" in r.data_source.data
                     and r.glyph.y == "y" and len(r.data_source.data["x"]) > 1 and r.y_range_name == "default"]
            if not drawn or p.title.text.startswith("|error|"):
                continue
            (hover,) = [t for t in p.toolbar.tools if isinstance(t, HoverTool)]
            assert set(hover.renderers) == set(drawn), (n, p.title.text)
            assert {r.data_source.data["source"][0] for r in drawn} <= {REAL, THEIRS, OURS}, (n, p.title.text)
            assert dict(hover.tooltips)["time"] == "@x{0,0.[0]} s", (n, p.title.text)
            checked += 1
    assert checked == 1 + 2 + 4 + 1 + 1   # Fig 5's one scenario, 6's two traces, 7's four panels, 9, 10


def test_the_mouse_wheel_scrolls_the_notebook_until_the_zoom_is_chosen(runs):
    """Over a time view the wheel zoomed the plot: scrolling a notebook down past the views stuck on them."""
    from bokeh.models import WheelZoomTool

    a, b = runs
    for fig in (views.batch_timeline(a, b), views.request_lifelines(a), views.throughput(a), views.memory(a),
                views.power(a), views.latency_cdf(a)):
        assert fig.toolbar.active_scroll in (None, "auto"), fig.title.text   # "auto": none (BokehJS 3.9, measured)
        assert [t.dimensions for t in fig.toolbar.tools if isinstance(t, WheelZoomTool)], fig.title.text   # kept


def test_memory_of_a_file_saved_before_the_memory_group_is_labelled_as_the_percentage_it_is(runs):
    """Files saved before the memory group have no ``memory`` Dataset (so no ``npu_kv``) and only the time
    series' ``kv_usage_pct`` (units %): the view drew that percentage on its "memory (GiB)" axis."""
    import dataclasses

    import xarray as xr
    from bokeh.models import LinearAxis

    a, b = runs
    old = dataclasses.replace(a, memory=xr.Dataset())
    assert old.timeseries.kv_usage_pct.attrs["units"] == "%"
    alone = views.memory(old)
    assert alone.yaxis[0].axis_label == "NPU KV in use (% of blocks)"
    assert (alone.y_range.start, alone.y_range.end) == (0, 100)
    # beside a run with memory samples: GiB on the left, the old run's % on an axis of its own on the right
    fig = views.memory(b, old)
    assert fig.yaxis[0].axis_label == "memory (GiB)"
    (right,) = [ax for ax in fig.right if isinstance(ax, LinearAxis)]
    assert right.axis_label == "NPU KV in use (% of blocks)" and right.y_range_name == "pct"
    on_pct = {r.data_source.data["unit"][0] for r in fig.renderers if isinstance(r, GlyphRenderer)
              and r.y_range_name == "pct"}
    on_gib = {r.data_source.data["unit"][0] for r in fig.renderers if isinstance(r, GlyphRenderer)
              and r.y_range_name == "default"}
    assert on_pct == {"%"} and on_gib == {"GiB"}


def _time_labels(*runs) -> dict[str, str]:
    """Each time view's title up to the run's name: where the bin widths are said."""
    return {view.__name__: view(*runs).title.text.split(": ")[0]
            for view in (views.throughput, views.memory, views.power)}


def test_every_time_series_view_says_its_bin_width_read_off_its_data(ref, runs):
    """Only the throughput view said "mean of N s bins": the power view's bins are as wide and its axis said
    nothing, nor did the memory view's, whose samples ``memory_sample_s`` spaces apart from ``bin_s``. The titles
    say it: on the y axes (``throughput (tokens/s, mean of 1 and 2 s bins)``) it ran past the figure's top edge."""
    import dataclasses

    import xarray as xr

    from llmss_lab import simulate

    sc = Scenario(num_requests=60, power=True)
    wide = simulate(sc.cluster(ref), sc.workload(ref), sc.engine(), reference_dir=ref, bin_s=2, memory_sample_s=0.5)
    a, _ = runs
    assert _time_labels(wide) == {"throughput": "Throughput, mean of 2 s bins",
                                  "memory": "Memory per tier, sampled every 0.5 s",
                                  "power": "Power per component, mean of 2 s bins"}
    assert _time_labels(wide, a) == {"throughput": "Throughput, mean of 1 and 2 s bins",
                                     "memory": "Memory per tier, sampled every 0.5 and 1 s",
                                     "power": "Power per component, mean of 1 and 2 s bins"}
    assert _time_labels(a) == {"throughput": "Throughput", "memory": "Memory per tier", "power": "Power per component"}
    # a file without memory samples draws the time series' KV share, a state at each bin's end
    old = dataclasses.replace(wide, memory=xr.Dataset())
    assert views.memory(old).title.text == "Memory per tier, sampled every 2 s: Llama-3.1-8B on RTXPRO6000"
    assert views.memory(old, a).title.text.startswith("Memory per tier, sampled every 1 and 2 s: both ")
    # the y axes name the quantity and unit alone, short enough for the axis: about 32 characters of a 9pt
    # italic label fit in a 220 px figure, centred on its plot ("memory (GiB, sampled every 0.5 and 1 s)" did not)
    for fig in (views.throughput(wide, a), views.memory(wide, a), views.power(wide, a), views.memory(a, old)):
        for axis in (*fig.left, *fig.right):
            assert len(axis.axis_label) <= 30, axis.axis_label


def test_a_file_saved_when_power_kept_one_second_bins_reads_its_widths_from_its_data(ref, capsys, tmp_path):
    """Files saved before the power followed ``bin_s`` hold one-second power bins under a wider ``bin_s`` attr (on
    every group, power's too): a width taken from that attr would call them 5 s bins. Built here as that code
    wrote them; the views and ``llmss summary`` read it as it is."""
    import dataclasses

    from llmss_lab.cli import main
    from llmss_lab.results.dataset import Results

    sc = Scenario(num_requests=60, power=True)
    wide, fine = (sc.replace(bin_s=b).run(ref) for b in (5.0, 1.0))
    power = fine.power.copy()
    power.attrs.update(bin_s=5.0, summary_json=wide.attrs["summary_json"])
    power.power.attrs["long_name"], power.time.attrs["long_name"] = "mean power in the bin", "end of the bin"
    del power.time.attrs["bin_s"]   # which new files' power carries
    dataclasses.replace(wide, power=power).save(tmp_path / "old.nc")
    old = Results.load(tmp_path / "old.nc")
    assert old.power.attrs["bin_s"] == old.attrs["bin_s"] == 5.0 and old.power.time.values[0] == 1.0
    assert "bin_s" not in old.power.time.attrs and "bin_s" in wide.power.time.attrs
    assert old.timeseries.time.values[0] == old.memory.time.values[0] == 5.0
    assert _time_labels(old) == {"throughput": "Throughput, mean of 5 s bins",
                                 "memory": "Memory per tier, sampled every 5 s", "power": "Power per component"}
    assert _time_labels(old, wide)["power"] == "Power per component, mean of 1 and 5 s bins"
    wide.save(tmp_path / "new.nc")
    assert main(["summary", str(tmp_path / "old.nc")]) == 0
    out = capsys.readouterr().out
    assert "J per output token" in out and "requests completed        60" in out, out
    assert main(["summary", str(tmp_path / "old.nc"), str(tmp_path / "new.nc")]) == 0
    assert "J per output token" in capsys.readouterr().out
    assert old.summary()["total_energy_J"] == pytest.approx(wide.summary()["total_energy_J"], rel=1e-9)


def test_the_power_of_a_run_shorter_than_its_bin_says_the_bin_width_not_the_runs_length(ref):
    """The power's one bin of a run shorter than a bin ends with the run, and its width was read off it: 20 s of
    a 60 s bin said "mean of 20.5648 s bins" beside the throughput's 60, and a 1 s bin half used named its half."""
    long = Scenario(num_requests=60, power=True, bin_s=60.0).run(ref)
    short = Scenario(num_requests=1, power=True, input_len="fixed:16", output_len="fixed:8").run(ref)
    assert long.power.sizes["time"] == 1 and long.power.time.values[0] < 60
    assert short.power.sizes["time"] == 1 and short.power.time.values[0] < 1
    assert _time_labels(long)["power"] == "Power per component, mean of 60 s bins"
    assert _time_labels(short)["power"] == "Power per component"


def test_a_run_within_one_time_bin_says_so_instead_of_an_empty_plot(ref, runs):
    """A line needs two points: a 20 s run in 60 s bins, or a 0.2 s run in 1 s bins, has one bin (ending after the
    run, off the plot's range) and one memory sample, and the Time series tab showed three empty frames."""
    a, _ = runs
    wide = Scenario(num_requests=60, power=True, bin_s=60.0).run(ref)
    tiny = Scenario(num_requests=2, output_len="fixed:1", power=True).run(ref)
    for r, width, took in ((wide, "60 s", f"{float(wide.requests.finish.max()):.3g} s"),
                           (tiny, "1 s", f"{float(tiny.requests.finish.max()):.3g} s")):
        for view, what in ((views.throughput, "bin"), (views.memory, "sample interval"), (views.power, "bin")):
            fig = view(r)
            assert not _sources(fig), (view.__name__, width)   # nothing drawn...
            (note,) = fig.select({"type": Label, "name": "no data"})   # ...and why, across the plot
            assert note.text == (f"this run took {took}, within one {width} {what}: nothing to draw over time; "
                                 "a narrower time bin (bin_s) draws it"), note.text
            assert note.x.target == "frame" and note.x.symbol == "center"
            # beside a run that draws: its lines, and the note in the title, naming the run it is about
            both = view(a, r, label="1 s bins", baseline_label="short")
            assert _sources(both) and not both.select({"type": Label, "name": "no data"})
            assert both.title.text.replace("\n", " ").endswith(
                f"(short took {took}, within one {width} {what}: nothing to draw over time; a narrower time bin "
                "(bin_s) draws it)"), both.title.text
    for view in (views.throughput, views.memory, views.power):   # a run of many bins draws as before
        fig = view(a)
        assert _sources(fig) and not fig.select({"type": Label, "name": "no data"}) and "(" not in fig.title.text


def test_capacity_bars_name_their_slo_and_the_configurations_outside_the_range():
    """The title said "within the SLO" without saying which; a configuration that missed the SLO even at the
    range's bottom (no bar) or met it at its top (a bar like any other) or failed looked like the others."""
    import xarray as xr

    from llmss_lab.sweeps import SLO
    from llmss_lab.views import design

    cap = xr.Dataset({"max_rate": ("max_num_seqs", [6.0, 64.0, np.nan, np.nan], {"units": "req/s"}),
                      "bound": ("max_num_seqs", ["inside", "above", "below", "failed"])},
                     coords={"max_num_seqs": [16, 64, 128, 256]},
                     attrs={"slo": json.dumps(dataclasses.asdict(SLO(ttft_ms=500.0, tpot_ms=50.0, quantile=0.9))),
                            "rate_range": [1.0, 64.0]})
    bars = design.capacity_bars(cap)
    assert bars.title.text == "highest request rate within the SLO (p90 TTFT <= 500 ms, TPOT <= 50 ms)"
    (notes,) = bars.select({"name": "bound notes"})
    assert list(notes.data_source.data["note"]) == ["", "above 64", "below 1", "failed"]
    assert list(notes.data_source.data["rate"]) == [6.0, 64.0, 0.0, 0.0]   # over each bar, or at 0
    assert bars.y_range.start == 0 and bars.y_range.range_padding >= 0.2   # room above the tallest bar's note
    cap.attrs["slo"] = json.dumps(dataclasses.asdict(SLO(tpot_ms=40.0, quantile=0.5)))
    assert design.capacity_bars(cap).title.text == "highest request rate within the SLO (p50 TPOT <= 40 ms)"
    del cap.attrs["slo"]
    assert design.capacity_bars(cap).title.text == "highest request rate within the SLO"


def test_a_long_title_breaks_into_lines_and_the_plot_keeps_its_height(ref, runs):
    """Titles ran past the figure's right edge, cut off: the power view's with both runs' derived names (107
    characters in 820 px), a note beside a run that draws, a CDF's named run in its 410 px."""
    a, b = runs
    moe = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=8, expert_gate="zipf").run(ref)
    names = {"label": "1 prefill + 1 decode (layer-wise KV transfer)", "baseline_label": "2 colocated replicas"}
    figs = [views.power(a, b), views.throughput(a, b, **names), views.memory(a, b, **names),
            views.request_lifelines(a, b, **names), views.batch_timeline(a, b, **names),
            *(views.latency_cdf(a, None, m, label=names["label"]) for m, _ in plots.METRICS),
            *views.experts(moe, a, **names).children]
    for fig in figs:   # 7 px a character of the 13 px bold title, ~90 px of the width taken by axis and toolbar
        lines = fig.title.text.split("\n")
        assert all(len(line) * 7.0 <= fig.width - 90 for line in lines), lines
    # the figure grows by each line added, so the plot keeps its height
    long, short = (views.power(a, a, label=name, baseline_label="y") for name in ("run " * 8, "x"))
    assert long.title.text.count("\n") == 1 and "\n" not in short.title.text
    assert long.height == short.height + 17
    cdf = views.latency_cdf(a, None, "ttft", label=names["label"])
    # a short parenthesis goes to the next line whole ('(layer-wise\nKV transfer)' broke it, as it did a lone run's
    # '(1 prefill\n+ 1 decode)')
    assert cdf.title.text == "TTFT CDF: 1 prefill + 1 decode\n(layer-wise KV transfer)" and cdf.height == 240 + 17
    glued = plots._fit_title(figure(width=300, title="Throughput: Llama-3.1-8B on RTXPRO6000 (1 prefill + 1 decode)"))
    assert glued.title.text.split("\n")[-1] == "(1 prefill + 1 decode)", glued.title.text


def _capacity(fig) -> tuple[list[str], float, bool]:
    """The memory view's capacity entries, the highest line of memory in use, and whether the y range leaves the
    capacity lines out (fitted to the memory in use alone)."""
    lines = [r for r in fig.renderers if "series" in r.data_source.data]
    peak = max(float(np.nanmax(r.data_source.data["y"])) for r in lines if "capacity" not in r.data_source.data["series"][0])
    caps = [getattr(i.label, "value", i.label) for leg in fig.below if isinstance(leg, Legend) for i in leg.items
            if getattr(i.label, "value", i.label).startswith("NPU KV capacity")]
    fitted = bool(fig.y_range.renderers) and fig.y_range.renderers != "auto"
    return caps, peak, fitted


def test_memory_far_below_its_kv_capacity_fills_the_plot(ref):
    """8 requests used under 2 GiB of a 71 GiB KV capacity: the y axis ran to the capacity line and the memory
    in use was a flat line on the floor. The capacity line is drawn when the memory in use reaches half of it, so the
    use fills at least half the plot; else the axis fits the memory in use and the legend gives the capacity and how
    far it is; a run that fills its KV cache keeps the capacity line in view."""
    few = Scenario(num_requests=8).run(ref)
    fig = views.memory(few)
    gib = float(few.memory.npu_kv_capacity.sum()) / 1024
    kv = float(few.memory.npu_kv.sum("instance").max()) / 1024    # memory in MiB
    caps, peak, fitted = _capacity(fig)
    assert caps == [f"NPU KV capacity: {gib:,.1f} GiB, {gib / kv:,.1f}x the peak NPU KV (off the scale)"] and fitted
    shown = {r.data_source.data["series"][0] for r in fig.y_range.renderers}
    assert shown == {"NPU KV", "NPU prefix cache"}                  # the range follows the memory in use alone
    full = Scenario(num_requests=200, rate=20.0, gpu_memory_utilization=0.25).run(ref)
    assert _capacity(views.memory(full))[::2] == (["NPU KV capacity"], False)   # every line, the capacity's too


def test_the_memory_in_use_fills_half_the_plot_or_the_capacity_goes_off_the_scale(ref):
    """A P/D run's 27 GiB in use sat in the bottom fifth under its 143 GiB KV capacity (the line was dropped only past
    8x). One rule for every kind of run: the capacity is drawn when the highest line reaches half of it."""
    runs = {"single": Scenario(num_requests=100),
            "P/D": Scenario(instances=2, prefill_instances=1, num_requests=100),
            "3 replicas": Scenario(instances=3, num_requests=100, rate=20.0),
            "CPU pool": Scenario(instances=2, num_requests=60, prefix_storage="cpu", prefix_sharing="node",
                                 shared_prefix_len=1024, num_prefixes=4),
            "full": Scenario(num_requests=200, rate=20.0, gpu_memory_utilization=0.25)}
    seen = {}
    for name, scen in runs.items():
        r = scen.run(ref)
        caps, peak, fitted = _capacity(views.memory(r))
        gib = float(r.memory.npu_kv_capacity.sum()) / 1024
        assert fitted == (gib > 2 * peak), name   # the rule: the use fills at least half the plot
        kv = float(r.memory.npu_kv.sum("instance").max()) / 1024
        assert caps == [f"NPU KV capacity: {gib:,.1f} GiB, {gib / kv:,.1f}x the peak NPU KV (off the scale)" if fitted
                        else "NPU KV capacity"], name
        seen[name] = fitted
    assert seen == {"single": True, "P/D": True, "3 replicas": True, "CPU pool": True, "full": False}
    pd = Scenario(instances=2, prefill_instances=1, num_requests=100).run(ref)
    both = views.memory(pd, Scenario(num_requests=200, rate=20.0, gpu_memory_utilization=0.25).run(ref))
    caps, peak, fitted = _capacity(both)   # each run's capacity is judged against the plot's highest line
    assert fitted and caps[0].endswith("(off the scale)") and caps[1] == "NPU KV capacity"
    assert both.y_range.renderers[-1].data_source.data["series"][0] == "NPU KV capacity"   # the baseline's, in view


def test_the_request_axis_ticks_whole_requests(ref):
    """The lifelines of two requests read 0, 0.2, 0.4, 0.6, 0.8, 1 up their request axis."""
    two = Scenario(num_requests=2, output_len="fixed:1").run(ref)
    for b in (None, two):
        assert views.request_lifelines(two, b).yaxis[0].ticker.min_interval == 1


def test_a_time_view_drawn_alone_starts_its_axis_at_zero(runs):
    """Drawn without a shared x range, a view fitted its axis to its data, which began at its first bin's end (1 s):
    no tick at 0, where the run starts. Alone it takes the range the dashboard would give it."""
    a, b = runs
    for view in (views.batch_timeline, views.request_lifelines, views.throughput, views.memory, views.power):
        for other in (None, b):
            x = view(a, other).x_range
            end = views.time_range(a, other).end
            assert (x.start, x.end, x.bounds[0]) == (0.0, end, 0.0), view.__name__


def test_legend_columns_are_as_wide_as_their_own_entries():
    """Columns were sized by the widest entry of all: one 60-character entry put each of three on its own row
    (BokehJS makes each column as wide as its own widest entry, which fit them in one)."""
    from bokeh.plotting import figure

    p = figure(width=820, height=200)
    items = [LegendItem(label=text, renderers=[p.line([0, 1], [0, 1])]) for text in ("NPU KV", "x" * 60, "prompt")]
    plots._legends_below(p, [(None, items)])
    assert p.legend[0].ncols == 3 and p.height == 200 + 20 + 2 * 8
    assert plots._columns([plots._item_px("y" * 30)] * 5) == 3    # 3 x 232 px of 740


def test_a_title_that_fits_its_figure_is_not_broken(runs):
    """Titles were broken at 7.5 px a character, where the views' titles measure 6.0-6.9 px in Chromium: 'E2E
    latency CDF: Llama-3.1-8B on RTXPRO6000' (43 characters, 298 px) broke in the 310 px a 410 px CDF has for it."""
    a, _ = runs
    cdf = views.latency_cdf(a, None, "e2e_latency", label="Llama-3.1-8B on RTXPRO6000")
    assert "\n" not in cdf.title.text and cdf.height == 240
    longer = views.latency_cdf(a, None, "e2e_latency", label="Llama-3.1-8B on RTXPRO6000 (TP2)")   # 49: breaks
    assert longer.title.text == "E2E latency CDF: Llama-3.1-8B on RTXPRO6000\n(TP2)"


def test_a_view_of_a_run_alone_says_what_it_ran(ref, runs):
    """show(views.throughput(r)) was titled 'Throughput' alone, with no word of the model, hardware or cluster shape
    of the run; a name given (the explorer's, a notebook's) is the title's, not doubled up with it."""
    a, b = runs
    llama = "Llama-3.1-8B on RTXPRO6000"
    assert views.throughput(a).title.text == f"Throughput: {llama}"
    assert views.power(a).title.text == f"Power per component: {llama}"
    assert views.power(b).text == f"<b>Power per component: {llama} (this run has no power model: {b.attrs['no_power']})</b>"
    assert "<th style='text-align:right;padding:1px 12px 1px 0'>Llama-3.1-8B on RTXPRO6000</th>" in views.summary_table(a)
    assert all(f.title.text.endswith(f": {llama}") for f in views.timeline(a).children)
    assert views.throughput(a, label="mine").title.text == "Throughput: mine"   # given: that name alone
    # two runs: their legends name them, the title what they ran (views.pair_title)
    assert views.throughput(a, b).title.text == f"Throughput: both {llama}, profiled latencies"
    pd = Scenario(instances=2, prefill_instances=1, num_requests=8).run(ref)
    assert views.memory(pd).title.text == f"Memory per tier: {llama} (1 prefill + 1 decode)"
    wide = Scenario(instances=3, tp=2, pp=2, num_requests=8).run(ref)
    assert views.run_title(wide) == f"{llama} (3 instances, TP2, PP2)"
    moe = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=4).run(ref)
    assert views.expert_load(moe).title.text == "Expert load (token-expert pairs): Qwen3-30B-A3B-Instruct-2507 on RTXPRO6000"
    # a file saved before the instances carried their model and hardware: from its attrs
    old = dataclasses.replace(a, timeseries=a.timeseries.drop_vars(["model", "hardware", "tp_size", "pp_size", "role"]))
    assert views.run_title(old) == llama


def test_a_view_of_two_runs_says_what_both_ran_and_what_differs(ref, runs):
    """A view of one run says its model and hardware (views.run_title), but one of two runs said neither: titled
    'Throughput' alone, with legends 'run (tp 2)' and 'baseline (tp 1)', it never said which model on which
    hardware both served, nor that one run's latencies came from a profile and the other's from the roofline."""
    a, b = runs
    tp2 = Scenario(num_requests=8, tp=2).run(ref)
    one = Scenario(num_requests=8).run(ref)
    llama = "Llama-3.1-8B on RTXPRO6000"
    assert views.pair_title(tp2, one) == f"both {llama}, profiled latencies; TP2 vs TP1"
    assert views.pair_title(one, tp2) == f"both {llama}, profiled latencies; TP1 vs TP2"   # the run's first
    assert views.pair_title(a, b) == f"both {llama}, profiled latencies"   # they differ in engine settings alone
    # H100 has no profile here: the analytical model runs it, and the title says so
    h100 = Scenario(num_requests=8, hardware="H100").run(ref)
    assert views.pair_title(h100, one) == "both Llama-3.1-8B; H100 vs RTXPRO6000; analytical vs profiled latencies"
    scaled = Scenario(num_requests=8, hardware="H100", what_if_mem_bw=2.0).run(ref)
    assert views.pair_title(scaled, h100) == ("both Llama-3.1-8B on H100; analytical (memory_bw_gbs x2) vs analytical "
                                              "latencies")
    pd = Scenario(num_requests=8, instances=2, prefill_instances=1).run(ref)
    two_pp = Scenario(num_requests=8, instances=2, pp=2).run(ref)
    assert views.pair_title(pd, two_pp) == (f"both {llama}, profiled latencies; 1 prefill + 1 decode vs "
                                            "2 instances; PP1 vs PP2")
    moe = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=4).run(ref)
    assert views.pair_title(moe, one) == ("both on RTXPRO6000, profiled latencies; Qwen3-30B-A3B-Instruct-2507 vs "
                                          "Llama-3.1-8B")
    assert plots._what_ran({"shape": "2 instances", "TP": "TP1"}) == "2 instances"   # shared, with neither model
    # expert parallelism over a data-parallel pair (notebook 05): each instance records it, as the attrs of a run
    # of several instances cannot
    ep = Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", num_requests=4, dp=2, ep=2).run(ref)
    assert views.run_title(ep) == "Qwen3-30B-A3B-Instruct-2507 on RTXPRO6000 (2 instances, DP2, EP2)"
    assert views.pair_title(ep, moe) == "both Qwen3-30B-A3B-Instruct-2507 on RTXPRO6000, profiled latencies; " \
                                        "2 instances vs 1 instance; DP2 vs DP1; EP2 vs EP1"
    # a P/D shape is not broken over two lines ('...; 1\nprefill + 1 decode vs 2 instances')
    title = views.batch_timeline(pd, two_pp, label="P/D", baseline_label="PP").title.text
    assert "\n" in title and all(line.count("prefill") == line.count("1 prefill + 1 decode") for line in title.split("\n"))
    # every view of the two says it after its own title, whatever the runs are called
    pair = views.pair_title(tp2, one)
    figs = [views.batch_timeline(tp2, one), views.request_lifelines(tp2, one), views.throughput(tp2, one),
            views.memory(tp2, one), views.power(tp2, one, label="TP=2", baseline_label="1 GPU"),
            *views.latency_cdfs(tp2, one, label="TP=2", baseline_label="1 GPU").select({"type": figure})]
    for fig in figs:
        title = fig.text if isinstance(fig, Div) else fig.title.text
        assert f": {pair}" in title.replace("\n", " "), title
    assert len(figs) == 9
    # and so does the summary table of the two (the explorer's Summary tab), above its columns; alone, none
    assert f"font-weight:bold;padding:1px 12px 1px 0'>{pair}</caption><tr>" in views.summary_table(tp2, one)
    assert "<caption" not in views.summary_table(tp2)
    (heat,) = views.experts(moe, one, label="Qwen3", baseline_label="Llama").children
    assert heat.title.text.replace("\n", " ") == f"Expert load (token-expert pairs): {views.pair_title(moe, one)}; Qwen3"
    # a file saved before the instances carried their model and hardware: from its attrs
    old = dataclasses.replace(tp2, timeseries=tp2.timeseries.drop_vars(["model", "hardware", "tp_size", "pp_size",
                                                                      "role"]))
    assert views.pair_title(old, one) == pair


def test_a_title_says_which_instances_share_a_data_parallel_group(ref, tmp_path):
    """Two instances in one DP group and two on their own were both '2 instances' in a title: the instances did
    not record their dp_group. Each now does (as its TP, PP and EP), and the title counts a group's members."""
    from llmss_lab.results.dataset import Results
    llama = "Llama-3.1-8B on RTXPRO6000"
    dp = Scenario(num_requests=8, dp=2).run(ref)
    two = Scenario(num_requests=8, instances=2).run(ref)
    assert list(dp.timeseries.dp_group.values) == ["replica0", "replica0"] == list(dp.memory.dp_group.values)
    assert list(two.timeseries.dp_group.values) == ["", ""]
    assert views.run_title(dp) == f"{llama} (2 instances, DP2)"
    assert views.run_title(two) == f"{llama} (2 instances)"
    assert views.pair_title(dp, two) == f"both {llama} (2 instances), profiled latencies; DP2 vs DP1"
    assert views.run_title(Scenario(num_requests=8, instances=2, dp=2).run(ref)) == f"{llama} (4 instances, DP2)"
    # a cluster file may group some instances and leave others alone: each size, as mixed TPs are said
    three = Scenario(num_requests=8, instances=3).run(ref)
    mixed = dataclasses.replace(three, timeseries=three.timeseries.assign_coords(dp_group=("instance", ["g", "", "g"])))
    assert views.run_title(mixed) == f"{llama} (3 instances, DP1/2)"
    # a file saved before the instances recorded their dp_group loads, and its title says what it can
    dp.save(tmp_path / "new.nc")
    old = dataclasses.replace(dp, timeseries=dp.timeseries.drop_vars("dp_group"), memory=dp.memory.drop_vars("dp_group"))
    old.save(tmp_path / "old.nc")
    old = Results.load(tmp_path / "old.nc")
    assert "dp_group" not in old.timeseries.coords and "dp_group" not in old.memory.coords
    assert views.run_title(old) == f"{llama} (2 instances)"
    assert views.pair_title(old, two) == f"both {llama} (2 instances), profiled latencies"   # DP: the old one does not say
    assert views.run_title(Results.load(tmp_path / "new.nc")) == f"{llama} (2 instances, DP2)"
