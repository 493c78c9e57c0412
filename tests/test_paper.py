"""The paper figures: frames and errors read from the three sources, the Bokeh layouts, the export, the
`llmss figures` runner and the artifact fetch list. Figure 9 (one scenario) keeps the runs quick."""
from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from bokeh.models import LabelSet, Scatter
from bokeh.plotting import figure as figure_model

from llmss_lab import paper
from llmss_lab.cli import main
from llmss_lab.errors import InputError
from llmss_lab.figures import SCENARIOS, select, throughput_error, write_figure_data
from llmss_lab.reference import artifact_manifest, fetch_reference
from llmss_lab.views import paper as pv
from llmss_lab.views.export import chromium_executable, html_to_png, pdf_to_png, save_html

needs_chromium = pytest.mark.skipif(chromium_executable() is None, reason="no chromium on PATH")


@pytest.fixture(scope="module")
def art(ref) -> Path:
    return ref / "ispass26"


@pytest.fixture(scope="module")
def written(art, tmp_path_factory) -> Path:
    """Figures 6, 8 and 9 run in full once for the module."""
    out = tmp_path_factory.mktemp("figs")
    for n in (6, 8, 9):
        write_figure_data(n, art, out)
    return out


def test_select_by_name_hardware_or_both():
    assert [s.name for s in select(5, ["H100"])] == ["MD", "SD+PC", "PDD", "SM"]
    assert [(s.hardware, s.name) for s in select(5, ["A6000/SM", "H100/MD"])] == [("A6000", "SM"), ("H100", "MD")]
    assert len(select(5)) == 8
    with pytest.raises(InputError, match="no scenario 'XX' in figure 8"):
        select(8, ["XX"])


def test_frames_hold_each_source_as_written(art, written):
    f = paper.frames(9, art, written)
    s = f["SD"]
    assert list(s.columns) == [paper.REAL, paper.THEIRS, paper.OURS]
    ours = pd.read_csv(written / "figure_9/parsed/SD_throughput.tsv", sep="\t")
    real = pd.read_csv(art / "figures/figure_9/reference/SD_throughput.tsv", sep="\t")
    assert s[paper.OURS].sum() == pytest.approx(ours.throughput.sum())
    assert s[paper.REAL].sum() == pytest.approx(real.throughput.sum())
    lat = f["latency"].loc["SD"]
    assert set(lat.index) == {"TPS", "TTFT", "TPOT", "ITL"}
    assert lat.at["TPS", paper.REAL] == pytest.approx(1899.51)


def test_figure_7_says_its_memory_is_in_gib(art, tmp_path):
    """The tables hold MiB (vLLM's gpu_mem_mb) and the panels draw them / 1024, under an axis that said GB."""
    write_figure_data(7, art, tmp_path)
    frames = paper.frames(7, art, tmp_path)
    layout = pv.draw(7, frames)
    memory = [p for p in layout.select({"type": figure_model}) if "memory" in p.yaxis[0].axis_label]
    assert len(memory) == 2 and {p.yaxis[0].axis_label for p in memory} == {"memory (GiB)"}
    real = frames["SD+PC/memory"][pv.REAL].dropna()
    (single,) = [p for p in memory if p.title.text.startswith("single instance")]
    drawn = next(r.data_source.data for r in single.renderers if r.data_source.data.get("source", [""])[0] == pv.REAL)
    assert np.allclose(drawn["y"], real.values / 2**10) and 14.9 < drawn["y"][0] < 15.1   # the weights: ~15 GiB
    assert math.isclose(real.values[0], 15432.64258)   # the artifact's first row, in MiB


def test_figure_10_names_its_configurations_alike_in_both_panels(art, tmp_path):
    """The throughput legend said gpu_only, pim_sbi (the artifact's file names), the energy bars gpu-only, pim-sbi
    (its tables' columns): one configuration, two names."""
    from bokeh.models import FactorRange

    write_figure_data(10, art, tmp_path)
    layout = pv.draw(10, paper.frames(10, art, tmp_path))
    plots = {p.title.text.split()[0]: p for p in layout.select({"type": figure_model}) if p.title.text}
    throughput, energy = plots["throughput"], plots["total"]   # select() keeps no order
    legend = [i.label.value for i in throughput.legend[0].items][:3]
    assert isinstance(energy.x_range, FactorRange)
    groups = list(dict.fromkeys(g for g, _ in energy.x_range.factors))
    assert legend == groups == ["GPU only", "PIM", "PIM + SBI"]


def test_figure_10_tells_the_sources_energy_per_token_apart(art, tmp_path):
    """Both simulators' J-per-token dots were joined by the same purple dashes under one legend entry: the two
    zigzags crossing over the bars could not be told apart."""
    from bokeh.models import GlyphRenderer, Line

    write_figure_data(10, art, tmp_path)
    layout = pv.draw(10, paper.frames(10, art, tmp_path))
    (energy,) = [p for p in layout.select({"type": figure_model}) if p.title.text.startswith("total energy")]
    lines = [r for r in energy.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, Line)
             and r.y_range_name == "jpt"]
    by_source = {r.data_source.data["x"][0][1]: r.glyph.line_dash for r in lines}
    assert by_source == {paper.THEIRS: [6], paper.OURS: []}   # dashed and solid, as their throughput lines
    labels = [i.label.value for i in energy.legend[0].items]
    assert labels[-2:] == [f"J/token ({paper.THEIRS})", f"J/token ({paper.OURS})"]


def test_time_and_throughput_axes_start_at_zero(art, written, tmp_path):
    """Figs 7, 9 and 10 padded their time axes into negative seconds (from -2.7 s) and Figs 9 and 10 their
    throughput below 0 tokens/s, as the published figures do not."""
    for n in (7, 10):
        write_figure_data(n, art, tmp_path)
    timed = [p for n, out in ((7, tmp_path), (9, written), (10, tmp_path))
             for p in pv.draw(n, paper.frames(n, art, out)).select({"type": figure_model})
             if p.xaxis[0].axis_label == "time (s)"]
    assert len(timed) == 6 and {p.x_range.start for p in timed} == {0}
    rates = [p for p in timed if p.yaxis[0].axis_label == "tokens/s"]
    assert len(rates) == 2 and {p.y_range.start for p in rates} == {0}


def test_figure_10_panels_are_not_frame_aligned(art, tmp_path):
    """Bokeh lines up the plot frames of plots that are children of one row: the energy panel, taller with its
    legend, stretched the throughput panel, whose legend then sat about 100 px under its axis."""
    from bokeh.models import Row

    write_figure_data(10, art, tmp_path)
    layout = pv.draw(10, paper.frames(10, art, tmp_path))
    (panels,) = layout.select({"type": Row})
    assert not [c for c in panels.children if isinstance(c, figure_model)]


def test_errors_match_the_scoring_formula(art, written):
    e = paper.errors(9, art, written)
    expected = throughput_error(written / "figure_9/parsed/SD_throughput.tsv",
                                art / "figures/figure_9/reference/SD_throughput.tsv")
    assert e.at[("SD", "throughput_nmae_pct"), paper.OURS] == pytest.approx(expected)
    lat = paper.frames(9, art, written)["latency"].loc["SD"]
    tpot = (lat.at["TPOT", paper.THEIRS] - lat.at["TPOT", paper.REAL]) / lat.at["TPOT", paper.REAL] * 100
    assert e.at[("SD", "mean_tpot_ms_err_pct"), paper.THEIRS] == pytest.approx(tpot)


def test_figure_8_normalises_to_vllm_and_keeps_missing_systems_missing(art, written):
    f = paper.frames(8, art, written)
    norm = paper.normalised(f["latency"])
    assert norm.at[("SD", "TPS"), "APEX"] == pytest.approx(1833.95 / 1833.89)
    assert math.isnan(norm.at[("PDD", "TTFT"), "Vidur"])                 # 'X' in the artifact
    assert f["sim_time"].at["SD", "LLMServingSim 1.0"] == pytest.approx(182164.2394)
    assert (f["sim_time"][paper.OURS] > 0).all()


def test_figure_6_energy_has_the_measured_total_and_both_breakdowns(art, written):
    f = paper.frames(6, art, written)
    e = f["energy"]
    measured = e[(e.source == paper.REAL) & (e.config == "TP 1")].energy_J.sum()
    assert measured == pytest.approx(f["power_tp1"][paper.REAL].sum())
    ours = e[(e.source == paper.OURS) & (e.config == "TP 1")].energy_J.sum()
    theirs = e[(e.source == paper.THEIRS) & (e.config == "TP 1")].energy_J.sum()
    assert ours == pytest.approx(theirs, rel=0.05)     # same power config, same workload: same few-% budget


def test_summary_rows_carry_values_errors_and_wall_times(art, written):
    rows = paper.figure_summary(8, art, written, walls={"SD": 0.25})
    t = paper.summary(rows)
    sd = t[(t.case == "Fig 8 SD") & (t.metric == "TTFT")].iloc[0]
    assert sd[paper.REAL] == pytest.approx(61.5)
    assert sd[f"{paper.OURS} error"] == pytest.approx((sd[paper.OURS] - 61.5) / 61.5 * 100)
    assert sd[f"{paper.THEIRS} wall s"] == pytest.approx(302.252)
    assert sd[f"{paper.OURS} wall s"] == 0.25
    h = paper.headline(t)
    assert h.at["signed %", "rows"] == len(t)


def test_validation_scatter_shows_errors_below_its_floor_as_such_and_names_their_units():
    """An error of 0 (Fig 7's shared pool ends at the real 13,440 MiB in both simulators) was drawn as a filled dot at
    0.001, like an error of 0.001, and the axes said |error| with no unit."""
    table = pd.DataFrame({"case": ["a", "b", "c"], "metric": ["m"] * 3, "error kind": ["signed %"] * 3,
                          f"{paper.THEIRS} error": [0.0, 0.5, 2.0], f"{paper.OURS} error": [0.0, 0.0004, -1.0]})
    p = pv.validation_scatter(table)
    (dots,) = [r for r in p.renderers if "fill" in r.data_source.data]
    data = dots.data_source.data
    assert list(data["fill"]) == [0.0, 0.0, 0.8]                         # hollow where either is under 0.001
    assert list(data["x"]) == [0.001, 0.5, 2.0] and list(data["ours"]) == [0.0, 0.0004, 1.0]
    assert "hollow: under 0.001 (0 too), drawn at 0.001" in p.title.text
    for axis in (p.xaxis[0], p.yaxis[0]):
        assert axis.axis_label.endswith("|error| (% or points, by the legend's kind)")


def test_the_summary_gives_figure_7_memory_in_mib(art, tmp_path):
    """The artifact's gpu_mem_mb columns are MiB (see Fig 7's axes); the summary's rows said MB."""
    write_figure_data(7, art, tmp_path)
    t = paper.summary(paper.figure_summary(7, art, tmp_path, walls={}))
    memory = sorted(set(m for m in t.metric if m.startswith("memory")))
    assert memory == ["memory at the end (MiB)", "memory per second (MiB)"]
    pool = t[(t.case == "Fig 7 MD+PC+PS_shared_cpu") & (t.metric == "memory at the end (MiB)")].iloc[0]
    assert pool[paper.REAL] == 13440.0   # 420 chunks of 256 tokens x 128 KiB: 32 MiB each


def test_reference_summary_and_measurement_folders(ref):
    folders = paper.measurement_folders(ref)
    assert [f"{f.parent.name}/{f.name}" for f in folders] == ["RTXPRO6000/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B"]
    assert paper.measurement_folders(ref / "ispass26", ["RTXPRO6000/Qwen3-32B"]) == folders[1:]
    with pytest.raises(InputError, match="no measurement 'X/Y'"):
        paper.measurement_folders(ref, ["X/Y"])
    s = paper.reference_summary(folders[0] / "validation/summary.txt")
    assert s["TTFT Mean"] == (7097.2, 6815.7) and s["Latency P99"] == (37638.8, 37027.3)


def test_bad_tables_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="file does not exist"):
        paper.read_table(tmp_path / "none.tsv")
    p = tmp_path / "bad.tsv"
    p.write_bytes(b"time_s\tthroughput\n0\t\xff\xfe\n")
    with pytest.raises(InputError, match="bad.tsv"):
        paper._series({paper.REAL: p})
    q = tmp_path / "summary.txt"
    q.write_text("nothing here\n")
    with pytest.raises(InputError, match="no 'Metric vLLM Sim Diff%' rows"):
        paper.reference_summary(q)


def test_figure_8_draws_every_bar_and_marks_what_cannot_run(art, written):
    lay = pv.figure_8(paper.frames(8, art, written))
    a = lay.children[1]
    x_marks = [r for r in a.renderers if isinstance(r.glyph, Scatter) and r.glyph.marker == "x"]
    norm = paper.normalised(paper.frames(8, art, written)["latency"])
    assert len(x_marks[0].data_source.data["x"]) == int(norm.isna().sum().sum())
    off = [m for m in a.center if isinstance(m, LabelSet)][0].source.data["t"]
    assert sorted(off) == sorted(f"{v:.3g}" for v in norm.values.ravel() if v > 1.4)   # TokenSim's 5.2, 7.2 ...


@pytest.mark.parametrize("figure", [6, 8, 9])
def test_each_figure_saves_as_standalone_html(art, written, tmp_path, figure):
    lay = pv.draw(figure, paper.frames(figure, art, written))
    html = save_html(lay, tmp_path / f"f{figure}.html", f"Figure {figure}").read_text()
    assert "<script type=\"text/javascript\" src=" not in html     # BokehJS inline: opens offline
    assert "Bokeh" in html and not list(tmp_path.glob("*.part"))


def test_published_pdf_renders_and_a_broken_one_is_a_clear_error(art, tmp_path):
    png = pdf_to_png(art / "figures/figure_9/figure_9b_ref.pdf", tmp_path / "9b.png", scale=1)
    from PIL import Image
    w, h = Image.open(png).size
    assert abs(w - 232.25) <= 1 and abs(h - 183.2) <= 1       # the PDF page is 232.25 x 183.2 pt
    bad = tmp_path / "bad.pdf"
    bad.write_text("not a pdf")
    with pytest.raises(InputError, match="not a readable PDF"):
        pdf_to_png(bad, tmp_path / "x.png")


def test_a_browser_setting_that_is_no_browser_is_named(art, written, tmp_path, monkeypatch):
    """$LLMSS_CHROMIUM set to a program that is not Chromium gave a 55-line Playwright traceback."""
    pytest.importorskip("playwright.sync_api")
    html = save_html(pv.draw(9, paper.frames(9, art, written)), tmp_path / "f9.html", "Figure 9")
    monkeypatch.setenv("LLMSS_CHROMIUM", "/bin/true")
    with pytest.raises(InputError, match=r"/bin/true: \$LLMSS_CHROMIUM: could not start it as headless Chromium"):
        html_to_png(html, tmp_path / "f9.png")
    assert not (tmp_path / "f9.png").exists()


@needs_chromium
def test_png_export_screenshots_the_drawn_figure(art, written, tmp_path):
    html = save_html(pv.draw(9, paper.frames(9, art, written)), tmp_path / "f9.html", "Figure 9")
    png = html_to_png(html, tmp_path / "f9.png")
    from PIL import Image
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape[1] >= 1000 and img.shape[0] > 300
    assert (img < 128).mean() > 0.005            # something dark was drawn, not a blank page


@needs_chromium
def test_png_export_leaves_out_the_toolbars(tmp_path):
    """Every figure's PNG showed the pan, zoom and save buttons beside its plots (above Fig 7's)."""
    from bokeh.layouts import gridplot
    from bokeh.plotting import figure
    from PIL import Image

    def drawn(toolbar: str | None, name: str) -> np.ndarray:
        panels = []
        for k in range(2):
            p = figure(width=260, height=180, title=f"panel {k}", toolbar_location=toolbar)
            p.line([0, 1, 2], [1, 3, 2 + k])
            panels.append(p)
        grid = gridplot(panels, ncols=2, toolbar_location=toolbar)
        png = html_to_png(save_html(grid, tmp_path / f"{name}.html", name), tmp_path / f"{name}.png", width=700)
        return np.asarray(Image.open(png).convert("L"))

    bare = drawn(None, "bare")
    for where in ("right", "above"):
        shown = drawn(where, where)
        assert shown.shape == bare.shape and (shown == bare).all(), where


@needs_chromium
def test_png_export_is_cut_to_the_figure(tmp_path):
    """A 300 px figure came out as a 1400 px wide picture (the browser's page), blank right of the plot."""
    from bokeh.plotting import figure
    from PIL import Image

    p = figure(width=300, height=200, title="small", toolbar_location=None)
    p.line([0, 1, 2], [1, 3, 2])
    png = html_to_png(save_html(p, tmp_path / "small.html", "small"), tmp_path / "small.png", width=1400)
    img = np.asarray(Image.open(png).convert("L"))
    assert 2 * 300 <= img.shape[1] <= 2 * (300 + 8 + 8) and 2 * 200 <= img.shape[0] <= 2 * (200 + 8 + 8)
    assert (img[:, -16:] == 255).all() and (img[:, -40:-16] < 255).any()   # the margin kept, the figure whole


def test_artifact_fetch_list_is_enough_to_regenerate_the_figures(ref, tmp_path):
    """Fetch through a fake downloader serving the local copy: the fetched tree runs every figure."""
    local = {up[0]: ref / rel for up, rel in artifact_manifest()}
    urls = []

    def opener(url: str) -> bytes:
        urls.append(url)
        path = url.split("/ispass26-artifact/", 1)[1] if "/ispass26-artifact/" in url else None
        if path not in local:
            return b"x"                      # the main-branch files: not what this test is about
        return local[path].read_bytes()

    fetch_reference(tmp_path, opener=opener, artifact=True)
    assert sum("/ispass26-artifact/" in u for u in urls) == len(artifact_manifest())
    out = tmp_path / "out"
    for n in SCENARIOS:
        write_figure_data(n, tmp_path / "ispass26", out, num_requests=20)
        assert paper.frames(n, tmp_path / "ispass26", out)


def test_artifact_fetch_tries_the_second_place_on_404(tmp_path):
    import urllib.error

    tried = []

    def opener(url: str) -> bytes:
        tried.append(url)
        if "evaluation/artifacts/figure_5/figure_5_ref.pdf" in url:
            raise urllib.error.HTTPError(url, 404, "not found", None, None)
        return b"x"

    fetch_reference(tmp_path, opener=opener, artifact=True)
    assert any(u.endswith("evaluation/figure_5/figure_5_ref.pdf") for u in tried)
    assert (tmp_path / "ispass26/figures/figure_5/figure_5_ref.pdf").is_file()


# ---- the runner --------------------------------------------------------------------------------

def test_notebook_selection():
    from llmss_lab.paper_run import notebooks
    assert [p.name for p in notebooks(["9", "summary"])] == ["figure_09.ipynb", "validation_summary.ipynb"]
    assert len(notebooks()) == 7
    with pytest.raises(InputError, match="no paper notebook '11'"):
        notebooks(["11"])


def test_figures_command_without_the_artifact_says_how_to_get_it(tmp_path, capsys):
    assert main(["figures", "9", "--reference-dir", str(tmp_path)]) == 2      # nothing there at all
    err = capsys.readouterr().err
    assert "not a reference folder" in err and "llmss fetch-reference" in err and str(tmp_path) in err
    (tmp_path / "configs").mkdir()                                            # the bench's files only
    assert main(["figures", "9", "--reference-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no paper artifact here" in err and "fetch-reference --artifact" in err and "--reference-dir" in err


def test_figures_command_rejects_bad_arguments(capsys):
    assert main(["figures", "11"]) == 2
    assert "no paper notebook '11'" in capsys.readouterr().err
    assert main(["figures", "9", "--num-requests", "-1"]) == 2
    assert "--num-requests" in capsys.readouterr().err


def test_paper_notebooks_are_committed_clean_with_the_parameters_the_issue_names():
    from llmss_lab.paper_run import notebooks
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("reference_dir", "output_dir", "num_requests", "seed"):
            assert f"\n{name}:" in "\n" + tagged[0].source, (path.name, name)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@needs_chromium
def test_figures_command_writes_notebook_html_png_and_the_published_figure(ref, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["figures", "9", "--reference-dir", str(ref), "--out", str(out), "--num-requests", "40",
                 "--seed", "2", "-q"]) == 0
    for name in ("figure_09.ipynb", "figure_09.notebook.html", "figure_9.html", "figure_9.png",
                 "published/figure_9a_ref.png", "published/figure_9b_ref.png", "figure_9_errors.tsv", "index.html"):
        assert (out / name).is_file(), name
    nb = nbformat.read(out / "figure_09.ipynb", as_version=4)
    assert nb.metadata.papermill.parameters["num_requests"] == 40
    assert "figure_9.png" in (out / "index.html").read_text()
    assert "1 of 1 notebooks ran" in capsys.readouterr().out


def test_figures_take_a_relative_reference_dir_and_a_one_request_run(ref, tmp_path, monkeypatch, capsys):
    # the notebooks run in paper_figures/, so a relative folder must reach them resolved; with one request
    # the second instance of Fig 7's two-instance run gets none and still has a (flat) memory series
    monkeypatch.chdir(ref.parent)
    out = tmp_path / "out"
    assert main(["figures", "7", "--reference-dir", ref.name, "--out", str(out), "--num-requests", "1",
                 "--no-png", "-q"]) == 0, capsys.readouterr()
    assert (out / "figure_7.html").is_file()


def _paper_notebooks(tmp_path, sources: dict[str, str]):
    """A folder of stand-in paper notebooks: each has the papermill parameters cell, then its one cell of code."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name, src in sources.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell("reference_dir = ''\noutput_dir = ''\nnum_requests = 0\nseed = 0")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(src)]
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    return nbdir


def test_a_failing_notebook_is_reported_and_the_others_still_run(ref, tmp_path, monkeypatch):
    import llmss_lab.paper_run as pr

    nbdir = _paper_notebooks(tmp_path, {"figure_98": "raise ValueError('broken on purpose')", "figure_99": "x = 1",
                                        "validation_summary": "y = 2"})
    monkeypatch.setattr(pr, "notebooks_dir", lambda: nbdir)
    index, runs = pr.run_all(ref, tmp_path / "out", png=False)
    assert [r.notebook.stem for r in runs] == ["figure_98", "figure_99", "validation_summary"]
    assert "ValueError: broken on purpose" in runs[0].error
    assert runs[1].error is None and runs[2].error is None
    assert (tmp_path / "out/figure_99.ipynb").is_file() and (tmp_path / "out/figure_98.ipynb").is_file()
    assert "broken on purpose" in index.read_text()


def test_a_notebook_html_export_that_fails_is_reported_and_the_others_still_run(ref, tmp_path, monkeypatch):
    """nbconvert without its templates (a venv over the system's site-packages) ended `llmss figures` on the
    first notebook with a traceback, and no index was written."""
    import nbconvert

    import llmss_lab.paper_run as pr

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name in ("figure_99", "validation_summary"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell("reference_dir = ''\noutput_dir = ''\nnum_requests = 0\nseed = 0")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell("x = 1")]
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    monkeypatch.setattr(pr, "notebooks_dir", lambda: nbdir)

    def no_templates(*args, **kwargs):
        raise ValueError("No template sub-directory with name 'lab' found in the following paths:\n\t/venv/share")

    monkeypatch.setattr(nbconvert, "HTMLExporter", no_templates)
    index, runs = pr.run_all(ref, tmp_path / "out", png=False)
    assert [r.notebook.stem for r in runs] == ["figure_99", "validation_summary"]
    for run in runs:
        assert run.error == "notebook HTML: ValueError: No template sub-directory with name 'lab' found in the " \
                            "following paths: /venv/share", run.error
        assert (tmp_path / "out" / run.notebook.name).is_file()
    assert "No template sub-directory" in index.read_text()


def test_a_png_export_that_fails_does_not_hide_the_notebook_html_failure(ref, tmp_path, monkeypatch):
    """Both exports failed in a venv without nbconvert's templates or a Chromium, and the report named only the
    PNG's failure."""
    import nbconvert

    import llmss_lab.paper_run as pr
    import llmss_lab.views.export as export

    nbdir = _paper_notebooks(tmp_path, {
        "figure_99": "from pathlib import Path\nPath(output_dir, 'figure_99.html').write_text('x')",
        "validation_summary": "x = 1"})
    monkeypatch.setattr(pr, "notebooks_dir", lambda: nbdir)

    def no_templates(*args, **kwargs):
        raise ValueError("No template sub-directory with name 'lab'")

    def no_browser(*args, **kwargs):
        raise InputError("no headless Chromium", export.PNG_EXPORT)

    monkeypatch.setattr(nbconvert, "HTMLExporter", no_templates)
    monkeypatch.setattr(export, "html_to_png", no_browser)
    _, runs = pr.run_all(ref, tmp_path / "out", only=["99"], png=True)
    assert runs[0].error == ("notebook HTML: ValueError: No template sub-directory with name 'lab'; "
                             "PNG export: no headless Chromium"), runs[0].error


def test_notebook_html_finds_nbconvert_templates_outside_the_prefixs_data_folders(tmp_path, monkeypatch):
    """In a venv made with --system-site-packages nbconvert searched only the venv's share/jupyter, while its
    templates lie under the base interpreter's: every notebook's HTML export failed ("No template sub-directory
    with name 'lab'"). Here the data folders nbconvert searches hold no templates, as that venv's."""
    pytest.importorskip("nbconvert")
    import nbconvert.exporters.templateexporter as te

    import llmss_lab.paper_run as pr

    empty = tmp_path / "venv/share/jupyter"
    empty.mkdir(parents=True)
    monkeypatch.setattr(te, "jupyter_path", lambda *subdirs: [str(empty.joinpath(*subdirs))])
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('drawn')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="drawn\n")]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "run.ipynb")
    page = pr._notebook_html(tmp_path / "run.ipynb", tmp_path / "run.html").read_text()
    assert "jp-Notebook" in page and "drawn" in page    # the lab template's page, with the cell's output
    assert all((Path(d) / "lab" / "conf.json").is_file() for d in pr.nbconvert_templates())


def test_notebook_parameters_accept_lists_commas_and_json_strings():
    from llmss_lab.figures import as_names, scenario_filter
    assert scenario_filter([]) is None and scenario_filter("") is None
    assert scenario_filter('["SD", "PDD"]') == ["SD", "PDD"]          # papermill -p passes strings
    assert scenario_filter("MD, SM", "H100") == ["H100/MD", "H100/SM"]
    assert scenario_filter(None, ["A6000"]) == ["A6000"]
    assert as_names(9, "figures") == ["9"] and as_names([5, "6"], "figures") == ["5", "6"]
    with pytest.raises(InputError, match="parameters: scenarios: not a list of names"):
        scenario_filter("[SD")
    with pytest.raises(InputError, match="expected names"):
        as_names([1.5], "figures")
    with pytest.raises(InputError, match="parameters: figures: expected a list of names, got 3.5"):
        as_names(3.5, "figures")                                        # -p figures 3.5 (a float, not iterable)


def test_paper_functions_name_a_wrong_argument(tmp_path):
    """Each raised a TypeError, KeyError or AttributeError from deep inside."""
    from llmss_lab import paper
    from llmss_lab.errors import InputError
    from llmss_lab.views import paper as views_paper

    for call, where, says in (
            (lambda: paper.frames(5, None, tmp_path), "reference_dir", "expected a file path, got None"),
            (lambda: paper.frames(5, tmp_path, tmp_path, only=5), "only", "expected a list of scenario names"),
            (lambda: paper.frames("5", tmp_path, tmp_path), "5", "(a str: give the number)"),
            (lambda: views_paper.draw(11, {}), "figure", "can be drawn, got 11"),
            (lambda: views_paper.draw(6, {"throughput": None}), "frames", "not figure 6's frames"),
            (lambda: views_paper.draw(5, None), "frames", "expected the frames of figure 5")):
        with pytest.raises(InputError) as err:
            call()
        assert err.value.where == where and says in err.value.message


@pytest.mark.parametrize("figure, scenarios, hardware, param, hint", [
    (5, None, "h100", "hardware: h100", "did you mean 'H100'"),       # the notebook's hardware parameter, named
    (5, "MD", "h100", "hardware: h100", "did you mean 'H100'"),
    (5, "md", "H100", "scenarios: md", "did you mean 'MD'"),
    (5, "XX", "A6000", "scenarios: XX", "it has ['MD', 'PDD', 'SD+PC', 'SM'])"),
    (9, "sd", None, "scenarios: sd", "(it has ['SD']); names are case-sensitive: did you mean 'SD'"),
])
def test_an_unknown_name_is_blamed_on_its_parameter_with_the_right_case(figure, scenarios, hardware, param, hint):
    from llmss_lab.figures import scenario_filter
    with pytest.raises(InputError) as e:
        select(figure, scenario_filter(scenarios, hardware))
    assert str(e.value).startswith(param) and hint in str(e.value) and "None" not in str(e.value)


def test_validation_summary_names_a_bad_figure_and_makes_its_output_folder(ref, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = Path(__file__).resolve().parent.parent / "paper_figures" / "validation_summary.ipynb"

    def run(**params):
        papermill.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), progress_bar=False,
                                   parameters={"reference_dir": str(ref), **params}, kernel_name="python3")
    with pytest.raises(papermill.PapermillExecutionError, match="figures: the summary covers figures"):
        run(figures="abc")
    out = tmp_path / "new" / "summary"       # no figure writes it first: the notebook makes it
    run(figures=[], measurements=["RTXPRO6000/Llama-3.1-8B"], output_dir=str(out))
    assert "RTXPRO6000/Llama-3.1-8B" in (out / "validation_summary.tsv").read_text()


def test_figures_without_papermill_says_which_extra_to_install(ref, tmp_path, capsys, monkeypatch):
    """A plain `pip install -e .` has no papermill: `llmss figures` ended in a bare ModuleNotFoundError."""
    import sys
    monkeypatch.setitem(sys.modules, "papermill", None)    # as if not installed
    assert main(["figures", "9", "--reference-dir", str(ref / "ispass26"), "--out", str(tmp_path), "--no-png"]) == 2
    assert "needs papermill: pip install -e '.[figures]'" in capsys.readouterr().err
