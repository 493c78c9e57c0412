"""The Explorer panel driven as a user would: set controls, press buttons, read what comes out."""
from __future__ import annotations

import html
import json
import os
import re
import signal
import stat
import warnings

import ipywidgets as w
import numpy as np
import pytest
from bokeh.models import GlyphRenderer, Title

from llmss_lab import load_results, views
from llmss_lab.scenario import ENGINE_FIELDS, SHAPE_FIELDS, Scenario
from llmss_lab.widgets import Explorer

from .conftest import linked_root


MOE = "Qwen/Qwen3-30B-A3B-Instruct-2507"


@pytest.fixture()
def explorer(ref):
    return Explorer(ref, Scenario(num_requests=40))


def _controls_named(ex: Explorer) -> list[str]:
    """The controls the status line asks to check, by label."""
    return re.findall(r"<b>([^<]+)</b> \([^)]+ tab\)", ex.status.value)


def _timeline_steps(ex: Explorer) -> int:
    fig = ex.figures["Timeline"].children[0]
    (r,) = [r for r in fig.renderers if isinstance(r, GlyphRenderer)]
    return len(r.data_source.data["left"])


def test_run_shows_summary_and_figures(explorer):
    ex = explorer
    assert ex.controls["hardware"].value == "RTXPRO6000" and ex.controls["model"].value == "meta-llama/Llama-3.1-8B"
    ex.controls["max_num_seqs"].value = 8
    ex.run_button.click()
    assert ex.result is not None, ex.status.value
    assert ex.scenario_shown.max_num_seqs == 8
    assert ex.progress.value == ex.progress.max == 40
    assert _timeline_steps(ex) == ex.result.iterations.sizes["step"]
    assert "mean TTFT" in ex.summary.value and "40 requests" in ex.status.value
    assert [len(box.children) for box in ex.plots.children] == [1, 0, 0, 0]   # the open tab's BokehModel widget


def test_a_run_says_how_far_it_is_as_it_goes(explorer):
    """A long run showed "Running..." and a bar with no count nor time until it ended: read as stuck."""
    ex = explorer
    said: list[str] = []
    ex.status.observe(lambda change: said.append(change["new"]), "value")
    ex.run()
    running = [s for s in said if s.startswith("Running: ")]
    assert len(running) >= 10 and running[-1].startswith("Running: 40 of 40 requests done, "), said
    assert running[0] != running[-1] and all(s.endswith(" s so far...") for s in running)


def test_plot_tabs_are_built_when_first_shown(explorer):
    """Only the open tab's views are built: the browser takes ~0.1 s per figure, hidden or not."""
    ex = explorer
    ex.run_button.click()
    assert list(ex.figures) == ["Timeline"]
    timeline_widget = ex.plots.children[0].children[0]
    ex.plots.selected_index = 2
    assert list(ex.figures) == ["Timeline", "Latency CDFs"] and len(ex.plots.children[2].children) == 1
    cdfs = ex.figures["Latency CDFs"]
    ex.plots.selected_index = 0
    ex.plots.selected_index = 2
    assert ex.figures["Latency CDFs"] is cdfs               # built once per run
    ex.controls["max_num_seqs"].value = 8
    ex.run_button.click()                                    # a new run: only the open tab again
    assert list(ex.figures) == ["Latency CDFs"] and ex.figures["Latency CDFs"] is not cdfs
    assert [len(box.children) for box in ex.plots.children] == [0, 0, 1, 0]
    assert timeline_widget.comm is None                      # the old plot widget is closed, not leaked
    ex.plots.selected_index = 1
    assert all(f.x_range.end >= float(ex.result.requests.finish.max())
               for f in ex.figures["Time series"].children if hasattr(f, "x_range"))
    ex.plots.selected_index = 3
    assert "no mixture-of-experts layers" in ex.figures["Experts"].children[0].text      # a dense model


def test_the_plots_fit_the_panel_width(explorer):
    """The views' own 900 px ran past a JupyterLab notebook beside the file browser (1280 px window): legends
    and the right-hand CDFs were cut off behind a scroll bar. In the panel they take its width, heights kept."""
    from bokeh.models import LayoutDOM
    ex = explorer
    ex.run_button.click()
    for i in range(len(ex.plots.children)):
        ex.plots.selected_index = i
    parts = [p for fig in ex.figures.values() for p in fig.select({"type": LayoutDOM})]
    assert len(ex.figures) == 4 and len(parts) > 10
    assert all(p.sizing_mode == "stretch_width" for p in parts)
    # heights kept: the lifelines' 320 px of plot, and the legend under it
    assert ex.figures["Timeline"].children[1].height == views.request_lifelines(ex.result).height > 320


def test_unlimited_engine_caps_can_be_shown_and_run(explorer):
    """0 means unlimited for max_num_seqs and max_num_batched_tokens (README, Scenario): the panel clamped it to
    1 and 16, so a saved scenario with it could not be shown, and 0 typed ran one sequence at a time."""
    ex = explorer
    ex.set_scenario(Scenario(num_requests=40, max_num_seqs=0, max_num_batched_tokens=0))
    assert ex.unshown == {} and ex.scenario().max_num_seqs == 0 and ex.scenario().max_num_batched_tokens == 0
    assert ex.run() is not None, ex.status.value
    assert ex.clamp_note.value == "" and "unlimited" in ex.controls["max_num_seqs"].tooltip


def test_an_explorer_opens_no_layout_that_no_widget_uses(ref):
    """Each control got a new Layout, leaving the one it was built with open: about 45 per explorer."""
    def registry() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return dict(w.Widget.widgets)

    before = registry()
    Explorer(ref)
    new = {k: v for k, v in registry().items() if k not in before}
    used = {v.layout.model_id for v in new.values() if isinstance(getattr(v, "layout", None), w.Layout)}
    unused = [k for k, v in new.items() if isinstance(v, w.Layout) and k not in used]
    assert not unused, f"{len(unused)} Layout widgets open and unused"


def test_rebuilt_plots_leave_no_widget_open(explorer):
    """Each plot built left its Layout widget open when the next run replaced the plot (a comm each, in the
    kernel and the page)."""
    ex = explorer

    def open_widgets() -> int:
        with warnings.catch_warnings():    # the registry of open widgets, deprecated as public API
            warnings.simplefilter("ignore", DeprecationWarning)
            return len(w.Widget.widgets)

    ex.run()
    ex.plots.selected_index = 2
    before = open_widgets()
    for _ in range(3):
        ex.run()
        ex.plots.selected_index = 0      # rebuilt: the earlier run's plots are closed
        ex.plots.selected_index = 2
    assert open_widgets() == before


def test_baseline_overlays_and_reports_change(explorer):
    ex = explorer
    ex.run_button.click()
    first = ex.result
    ex.keep_button.click()
    assert ex.baseline is first and not ex.clear_button.disabled
    ex.controls["enable_prefix_caching"].value = False
    ex.controls["max_num_seqs"].value = 4
    ex.run_button.click()
    assert ex.result is not first
    assert _timeline_steps(ex) == first.iterations.sizes["step"] + ex.result.iterations.sizes["step"]
    assert "baseline" in ex.summary.value and "%" in ex.summary.value
    assert "max_num_seqs 4 (baseline 128)" in ex.summary.value and "enable_prefix_caching False" in ex.summary.value
    # the table's columns and the plots' rows say which run is which, not only "run" and "baseline"
    names = ("run (max_num_seqs 4, enable_prefix_caching off)", "baseline (max_num_seqs 128, enable_prefix_caching on)")
    assert all(f"{n}</th>" in ex.summary.value for n in names)
    assert list(ex.figures["Timeline"].children[0].y_range.factors) == [(names[1], "n0/i0"), (names[1], ""),
                                                                         (names[0], "n0/i0"), (names[0], "")]
    ex.plots.selected_index = 2
    assert [i.label.value for i in ex.figures["Latency CDFs"].children[0].children[0].legend[0].items] == list(names)
    ex.plots.selected_index = 0
    ex.clear_button.click()
    assert ex.baseline is None and _timeline_steps(ex) == ex.result.iterations.sizes["step"]


def test_a_baseline_is_compared_only_with_a_run_of_other_settings(explorer):
    """Keep as baseline, pressed before any change, showed a table of +0.0 % against the run itself."""
    ex = explorer
    ex.run()
    ex.keep_button.click()
    assert ex.baseline is ex.result and ex.status_text == f"Kept the run of {ex.shown_at} as the baseline."
    for _ in range(2):     # the run kept, then the same settings run again
        assert "%" not in ex.summary.value and "baseline (" not in ex.summary.value, ex.summary.value
        assert f"Baseline kept</b> (the run of {ex.baseline_at})" in ex.summary.value
        assert _timeline_steps(ex) == ex.result.iterations.sizes["step"]     # the plots: one run, not two
        ex.run()
    ex.controls["max_num_seqs"].value = 4
    ex.run()
    assert "Baseline kept" not in ex.summary.value and "%" in ex.summary.value
    assert "max_num_seqs 4 (baseline 128)" in ex.summary.value
    ex.keep_button.click()
    ex.clear_button.click()                     # the status line said "Kept ... as the baseline" still
    assert ex.status_text == "Cleared the baseline." and "baseline" not in ex.summary.value


def test_bad_values_are_reported_not_raised(explorer):
    ex = explorer
    ex.controls["input_len"].value = "bimodal"
    assert ex.run() is None
    assert "input_len" in ex.status.value and ex.result is None
    assert not ex.run_button.disabled          # the panel stays usable
    ex.controls["max_num_seqs"].value = 10**9   # bounded controls clamp
    assert ex.controls["max_num_seqs"].value == 4096


def test_an_error_in_a_chosen_file_names_the_control_that_chose_it(explorer, tmp_path):
    """A bad trace or cluster file said "Cannot run: bad.jsonl: line 2: ..." and no control, where every other
    error names the control to check (label and tab)."""
    ex = explorer
    (tmp_path / "bad.jsonl").write_text('{"input_toks": 5, "output_toks": 5, "arrival_time_ns": 0}\nnot json\n')
    (tmp_path / "bad.json").write_text("garbage")
    for key, name, said in (("trace", "bad.jsonl", "check <b>trace</b> (Workload tab). "),
                            ("cluster_config", "bad.json", "check <b>cluster config</b> (Hardware &amp; model tab). ")):
        ex.set_scenario(Scenario(num_requests=40))
        ex.controls[key].value = str(tmp_path / name)
        assert ex.run() is None
        assert said in ex.status.value and f"{name}: line " in ex.status.value, ex.status.value


def test_a_value_typed_beyond_a_controls_range_is_named_with_the_one_used(explorer):
    """-2 typed in 'what if: memory BW x' ran as 0.01 (the box's floor), a hundredfold slower, with no word; the
    page clamped it too, so the kernel never saw the -2."""
    ex = explorer
    bw = ex.controls["what_if_mem_bw"]
    bw.set_state({"value": -2.0})                        # as the page sends what was typed
    assert bw.value == 0.01 and "min" not in bw.keys    # the page is given no bounds to clamp with unsaid
    said = html.unescape(ex.clamp_note.value)
    assert "what if: memory BW x: -2 is below the lowest allowed 0.01; using 0.01" in said, said
    ex.controls["num_requests"].value = 50_000           # every bounded control, int or float
    said = html.unescape(ex.clamp_note.value)
    assert "requests (0: whole trace): 50000 is above the highest allowed 20000; using 20000" in said, said
    bw.value = 2.0                                       # set within range: its note goes, the other stays
    assert "memory BW" not in ex.clamp_note.value and "20000" in ex.clamp_note.value
    ex.controls["num_requests"].value = 40
    assert ex.clamp_note.value == ""


def test_a_count_typed_with_a_fraction_or_an_exponent_is_read_as_typed(explorer):
    """ipywidgets' int box drops "." and "e" as they are typed: 1e3 requests ran as 13 and a max num seqs of
    2.5 as 25, with no word. The counts take what a float box sends: 1e3 is 1000, 2.5 is rounded and said."""
    ex = explorer
    seqs, reqs = ex.controls["max_num_seqs"], ex.controls["num_requests"]
    assert seqs.get_state()["_view_name"] == "FloatTextView"    # the page's box that keeps "." and "e"
    reqs.set_state({"value": 1e3})                              # as the page sends "1e3"
    assert reqs.value == 1000 and type(reqs.value) is int and ex.clamp_note.value == ""
    seqs.set_state({"value": 2.5})
    assert seqs.value == 2 and type(ex.scenario().max_num_seqs) is int
    assert "max num seqs: 2.5 is not a whole number; using 2" in html.unescape(ex.clamp_note.value)
    seqs.value = 3
    assert ex.clamp_note.value == ""
    sent = []
    seqs.send_state = lambda key=None: sent.append(key)         # what the kernel tells the page
    seqs.set_state({"value": 3.2})   # rounded to the value held: the page is told 3, not left showing 3.2
    assert seqs.value == 3 and sent == ["value"]
    seqs.set_state({"value": 5})
    assert sent == ["value"]                                     # a value used as typed is not sent back
    seqs.value = float("nan")        # refused and named, not a TraitError in the notebook
    assert seqs.value == 5 and "max num seqs: nan is not a value it takes (expected a whole number); still 5" in \
        html.unescape(ex.clamp_note.value)


def test_hardware_and_model_drive_the_other_controls(ref):
    ex = Explorer(ref / "ispass26", Scenario(hardware="H100", model="meta-llama/Llama-3.1-70B", npu_mem_gib=80.0))
    assert [v for _, v in ex.controls["tp"].options] == [1, 2, 4]
    ex.controls["hardware"].value = "TPU-v6e-1"
    assert [v for _, v in ex.controls["model"].options] == ["meta-llama/Llama-3.1-8B"]
    assert [v for _, v in ex.controls["tp"].options] == [1]
    assert ex.controls["npu_mem_gib"].value == 32
    assert ex.controls["power"].disabled            # no config gives TPU power figures


def test_picking_a_config_or_trace_disables_what_they_replace(explorer):
    ex = explorer
    ex.controls["cluster_config"].value = "single_node_pd_instance"
    assert ex.controls["tp"].disabled and ex.controls["instances"].disabled
    ex.controls["trace"].value = "sharegpt-llama-3.1-8b-300-sps10"
    assert ex.controls["rate"].disabled and not ex.controls["num_requests"].disabled
    ex.run_button.click()
    assert ex.result.attrs["num_instances"] == 2 and ex.result.summary()["completed"] == 40
    ex.controls["cluster_config"].value = ""
    assert not ex.controls["tp"].disabled


def test_save_results_and_scenario(explorer, tmp_path):
    ex = explorer
    ex.save_results_button.click()            # nothing to save yet: a message, not an error
    assert not (tmp_path / "r.nc").exists()
    ex.controls["rate"].value = 5.0
    ex.run_button.click()
    ex.results_path.value = str(tmp_path / "r.nc")
    ex.scenario_path.value = str(tmp_path / "s.json")
    ex.save_results_button.click()
    ex.save_scenario_button.click()
    back = load_results(tmp_path / "r.nc")
    assert back.summary()["completed"] == 40
    assert Scenario.load(tmp_path / "s.json").rate == 5.0
    assert json.loads(back.attrs["scenario_json"])["rate"] == 5.0
    ex.results_path.value = str(tmp_path / "missing" / "r.nc")
    assert ex.save_results() is None and "Cannot save results" in ex.status.value
    for bad, why in (("", "give a file name"), (".", "is a folder"), (str(tmp_path), "is a folder"),
                     ("a\0b.nc", "give a file name"), ("~no-such-user-here/x.nc", "no home folder")):
        ex.results_path.value = ex.scenario_path.value = bad     # the status line says why; nothing escapes
        assert ex.save_results() is None and why in ex.status.value, ex.status.value
        assert ex.save_scenario() is None and why in ex.status.value, ex.status.value
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    long_name = str(tmp_path / ("x" * 300 + ".nc"))                # the system refuses it (ENAMETOOLONG)
    for bad, why in ((str(fifo), "not a regular file"), (long_name, "cannot write (File name too long)")):
        ex.results_path.value = ex.scenario_path.value = bad     # an OSError raised AttributeError here
        assert ex.save_results() is None and why in ex.status.value, ex.status.value
        assert ex.save_scenario() is None and why in ex.status.value, ex.status.value
    assert stat.S_ISFIFO(fifo.stat().st_mode)                     # not replaced by a plain file
    ex.controls["rate"].value = float("nan")                      # a file Scenario.load would refuse is not written
    ex.scenario_path.value = str(tmp_path / "nan.json")
    assert ex.save_scenario() is None and "rate: must be a finite number" in ex.status.value
    assert not (tmp_path / "nan.json").exists()


def test_the_scheduler_says_which_is_continuous_and_which_static_batching(explorer):
    """A class comparing the two saw "static" and "vllm_v1" with nothing to say which batches continuously."""
    sched = explorer.controls["scheduler"]
    assert dict(sched.options) == {"static (a batch at a time)": "static", "vllm_v1 (continuous batching)": "vllm_v1"}
    assert "continuous batching" in sched.tooltip and "only once the last has finished" in sched.tooltip
    sched.value = "static"                       # the value stays the policy's name
    assert explorer.scenario().scheduler == "static"


def test_a_saved_scenario_loads_back_into_the_controls(explorer, tmp_path):
    """The panel saved a scenario but could not load one: that took code (set_scenario(Scenario.load(...)))."""
    ex = explorer
    ex.controls["scheduler"].value = "static"
    ex.controls["rate"].value = 5.0
    ex.scenario_path.value = str(tmp_path / "s.json")
    ex.save_scenario_button.click()
    saved = ex.scenario()
    ex.controls["scheduler"].value = "vllm_v1"
    ex.controls["rate"].value = 1.0
    ex.load_scenario_button.click()
    assert ex.scenario() == saved and "Loaded the scenario" in ex.status.value, ex.status.value
    assert ex.run() is not None and ex.scenario_shown.scheduler == "static"
    for bad, why in (("", "give a file name"), (str(tmp_path / "none.json"), "does not exist")):
        ex.scenario_path.value = bad
        assert ex.load_scenario() is None and "Cannot load scenario" in ex.status.value and why in ex.status.value
    (tmp_path / "bad.json").write_text('{"rate": "fast"}')
    ex.scenario_path.value = str(tmp_path / "bad.json")
    assert ex.load_scenario() is None and "rate" in ex.status.value and ex.scenario() == saved


def test_saving_results_after_a_failed_run_says_it_saves_the_previous_run(explorer, tmp_path):
    """Save results after a failed run wrote the previous run's results with "Saved the results to ...", as if
    they were those of the settings just tried."""
    ex = explorer
    ex.run()
    ex.controls["npu_mem_gib"].value = 4.0               # no room for the KV cache: the run fails
    assert ex.run() is None
    ex.results_path.value = str(tmp_path / "r.nc")
    assert ex.save_results() is not None
    said = ex.status_text
    assert said.startswith(f"The last run failed: saved the previous successful run, of {ex.shown_at} "
                           "(NPU memory (GiB) 96.0 (tried 4.0)), to "), said
    assert json.loads(load_results(tmp_path / "r.nc").attrs["scenario_json"])["npu_mem_gib"] == 96.0
    ex.controls["npu_mem_gib"].value = 96.0
    ex.run()
    assert ex.save_results() is not None and ex.status_text.startswith("Saved the results to ")


def test_a_saved_scenario_comes_back_into_the_controls(ref):
    s = Scenario(num_requests=12, instances=2, prefill_instances=1, router="round_robin", shared_prefix_len=64)
    ex = Explorer(ref, s)
    assert ex.scenario() == s.replace(**dict(zip(("npu_mem_gib", "npu_mem_bw"), s.npu_memory(ref))))   # shown


def test_a_scenario_that_leaves_the_memory_to_its_hardware_shows_that_hardware_memory_again(explorer, ref):
    """set_scenario on the hardware already shown kept a memory typed before (16 GiB): the next Run simulated
    that, not the scenario given, and nothing said so."""
    ex = explorer
    ex.controls["npu_mem_gib"].value, ex.controls["npu_mem_bw"].value = 16.0, 500.0
    s = Scenario(num_requests=12)
    ex.set_scenario(s)
    assert ex.scenario() == s.replace(**dict(zip(("npu_mem_gib", "npu_mem_bw"), s.npu_memory(ref))))
    ex.controls["npu_mem_bw"].value = 500.0
    ex.set_scenario(s.replace(npu_mem_gib=48.0))    # a size given, the bandwidth left to the hardware
    assert (ex.controls["npu_mem_gib"].value, ex.controls["npu_mem_bw"].value) == (48.0, s.npu_memory(ref)[1])


def test_a_scenario_the_controls_cannot_show_is_named(ref):
    ex = Explorer(ref, Scenario(num_requests=12, instances=100, hardware="NoSuchGPU"))
    assert "cannot show this scenario as saved" in ex.status.value
    assert "instances 100 (shown as 64)" in ex.status.value and "NoSuchGPU" in ex.status.value


def test_a_run_from_code_does_not_silently_run_clamped_values(ref):
    """papermill's -p max_num_seqs 0 ran with 1 (the control's floor, since 0 is offered: unlimited) and printed
    its numbers as the answer; a value above the ceiling is the case now."""
    ex = Explorer(ref, Scenario(num_requests=12, max_num_seqs=10_000, max_num_batched_tokens=16_384))
    assert ex.run() is None and ex.result is None
    assert "Not run:" in ex.status.value and "max_num_seqs 10000 (shown as 4096)" in ex.status.value
    assert ex.run() is not None and ex.scenario_shown.max_num_seqs == 4096  # pressed again: what is shown
    assert Explorer(ref, Scenario(num_requests=12)).run() is not None        # nothing clamped: runs at once


def test_a_trace_path_can_be_typed_in(explorer, ref):
    ex = explorer
    ex.controls["trace"].value = str(ref / "workloads" / "example_trace.jsonl")
    assert ex.controls["rate"].disabled
    assert ex.run() is not None, ex.status.value
    ex.controls["trace"].value = str(ref / "workloads" / "missing.jsonl")
    assert ex.run() is None and "trace" in ex.status.value


def test_hardware_without_a_profile_and_a_bandwidth_what_if(explorer):
    """Pick a GPU known only by its spec, run it on the analytical model, keep it, double its memory
    bandwidth: the panel says which latency model ran and what changed."""
    ex = explorer
    labels = dict((v, k) for k, v in ex.controls["hardware"].options)
    assert labels["H200"] == "H200 (spec only: analytical)" and labels["RTXPRO6000"] == "RTXPRO6000"
    ex.controls["hardware"].value = "H200"
    assert ex.controls["npu_mem_gib"].value == 141 and ex.controls["npu_mem_bw"].value == 4800
    assert "meta-llama/Llama-3.1-70B" in [v for _, v in ex.controls["model"].options]
    ex.controls["model"].value = "meta-llama/Llama-3.1-8B"
    assert ex.run() is not None and "latencies from analytical" in ex.status.value
    ex.keep_baseline()
    ex.controls["what_if_mem_bw"].value = 2.0
    ex.run()
    assert "latencies from analytical (memory_bw_gbs x2)" in ex.status.value
    assert "what_if_mem_bw 2.0 (baseline 1.0)" in ex.summary.value
    assert float(ex.result.requests.tpot.mean()) < float(ex.baseline.requests.tpot.mean())


def test_a_what_if_against_a_profiled_baseline_is_flagged(explorer):
    ex = explorer
    ex.run()
    assert "latencies from profile" in ex.status.value
    ex.keep_baseline()
    ex.controls["what_if_flops"].value = 1.5
    ex.run()
    assert "one run used a measured profile and the other the analytical model" in ex.summary.value
    ex.controls["latency"].value = "profile"
    assert ex.run() is None and "cannot be scaled" in ex.status.value


def test_a_failed_run_marks_the_plots_stale_until_a_run_succeeds(explorer):
    ex = explorer
    ex.run_button.click()
    first, plots = ex.result, dict(ex.figures)
    assert ex.stale.value == ""
    ex.controls["npu_mem_gib"].value = 4.0               # no room for the KV cache: the run fails
    ex.run_button.click()
    assert "Cannot run" in ex.status.value
    assert ex.result is first and ex.figures == plots            # the old plots stay on show...
    assert "Not these settings" in ex.stale.value                # ...marked as the last successful run's
    assert f"at {ex.shown_at}" in ex.stale.value and "NPU memory (GiB) 96.0 (tried 4.0)" in ex.stale.value
    assert ex.view.children.index(ex.stale) < ex.view.children.index(ex.summary)   # above the table too
    ex.controls["npu_mem_gib"].value = 96.0
    ex.run_button.click()
    assert ex.result is not first and ex.stale.value == ""


def test_an_interrupted_run_marks_the_plots_stale(explorer, monkeypatch):
    ex = explorer
    ex.run()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Scenario, "run", interrupted)
    ex.controls["max_num_seqs"].value = 4
    with pytest.raises(KeyboardInterrupt):
        ex.run()
    assert "Interrupted" in ex.status.value and "max num seqs 128 (tried 4)" in ex.stale.value


def run_interrupted(explorer) -> None:
    """The explorer's run, with SIGINT raising KeyboardInterrupt as in a Jupyter kernel running a callback: the
    interrupt must go on after the explorer has shown what it kept."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            explorer.run()
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupted_run_shows_the_run_so_far_marked_partial(explorer, monkeypatch):
    """Threw the run away: the interrupt button left the previous run's plots, or none, after a long run."""

    real = Scenario.run
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if done[0] == 10:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Scenario, "run", lambda self, ref, progress, workload: real(self, ref, tick, workload))
    run_interrupted(explorer)
    res = explorer.result
    n = res.summary()["completed"]
    assert res.attrs["interrupted"] == 1 and 10 <= n < 40 and explorer.figures
    assert f"Partial run:</b> interrupted at {res.attrs['simulated_s']:.1f} s simulated: {n} of 40 requests" in \
        explorer.stale.value
    assert explorer.status_text.startswith("Interrupted, the run so far:")
    assert not explorer.save_results_button.disabled


def test_an_edit_after_an_interrupted_run_keeps_the_partial_run_note(explorer, monkeypatch):
    """An edit replaced the "Partial run" note by "Changed since the run below": the plots on show, still the
    interrupted run's, then read as a whole run's. Both are said until the next run; the edit's goes when undone."""
    real = Scenario.run
    press = lambda n: os.kill(os.getpid(), signal.SIGINT)   # noqa: E731 - at the first request finished
    monkeypatch.setattr(Scenario, "run", lambda self, ref, progress, workload: real(self, ref, press, workload))
    run_interrupted(explorer)
    partial = explorer.stale.value
    assert "Partial run:</b>" in partial and explorer.result.attrs["interrupted"] == 1
    shown = explorer.controls["max_num_seqs"].value
    explorer.controls["max_num_seqs"].value = shown + 4
    assert explorer.stale.value.startswith(partial) and "Changed since the run below" in explorer.stale.value
    explorer.controls["max_num_seqs"].value = shown
    assert explorer.stale.value == partial
    monkeypatch.setattr(Scenario, "run", real)
    explorer.run()
    assert explorer.stale.value == ""


def test_an_edit_after_a_run_says_the_plots_are_the_earlier_settings(explorer):
    """A control changed after a run left its table and plots on show with no word: they read as the answer to
    the settings now shown until the next Run."""
    ex = explorer
    ex.controls["max_num_seqs"].value = 4   # before any run: nothing on show to be stale
    assert ex.stale.value == ""
    ex.run()
    ex.controls["max_num_seqs"].value = 8
    assert "Changed since the run below" in ex.stale.value and "max num seqs 4 (now 8)" in ex.stale.value
    ex.controls["max_num_seqs"].value = 4   # back to what ran
    assert ex.stale.value == ""
    ex.controls["scheduler"].value = "static"
    ex.run()
    assert ex.stale.value == "" and ex.scenario_shown.scheduler == "static"


def test_no_stale_mark_without_earlier_plots(explorer):
    ex = explorer
    ex.controls["tp"].options = [(str(t), t) for t in (1, 3)]
    ex.controls["tp"].value = 3
    assert ex.run() is None and ex.stale.value == ""


@pytest.mark.parametrize(("control", "value", "label"), [
    ("npu_mem_gib", 4.0, "NPU memory (GiB)"),                 # the built cluster's nodes[0].instances[0].npu_mem.mem_size
    ("gpu_memory_utilization", 0.05, "gpu memory utilization"),   # the same key: either control can fix it
    ("attn_offload", True, "PIM device"),                     # nodes[0].cpu_mem.pim_config: no PIM device picked
    ("input_len", "bimodal", "input len"),                   # a Scenario field
])
def test_a_bad_value_names_the_control(explorer, control, value, label):
    ex = explorer
    ex.controls[control].value = value
    assert ex.run() is None
    assert f"<b>{label}</b>" in ex.status.value and "check <b>" in ex.status.value, ex.status.value


def test_a_bad_tp_names_the_control_and_its_tab(explorer):
    ex = explorer
    ex.controls["tp"].options = [(str(t), t) for t in (1, 3)]   # as a loaded scenario's value outside the catalog
    ex.controls["tp"].value = 3
    assert ex.run() is None
    assert "check <b>TP</b> (Cluster shape tab)" in ex.status.value
    assert "nodes[0].instances[0].tp_size" in ex.status.value      # the key is still given


def test_a_cluster_file_key_is_not_blamed_on_a_disabled_control(explorer, tmp_path):
    """With a cluster file chosen, the TP control is disabled: the error names the file's key, not TP."""
    ex = explorer
    cfg = json.loads(ex.catalog.cluster_configs["single_node_single_instance"].read_text())
    cfg["nodes"][0]["instances"][0].update(tp_size=3, num_npus=3)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    ex.controls["cluster_config"].value = str(tmp_path / "c.json")
    assert ex.run() is None and "nodes[0].instances[0].tp_size" in ex.status.value
    assert _controls_named(ex) == ["cluster config"], ex.status.value     # the file's chooser, never TP


def test_a_cluster_file_key_is_not_blamed_on_an_enabled_control_either(explorer, tmp_path):
    """The file's per-instance switches win over the memory-tab checkboxes, so its error names no control
    (was: "check sub-batch interleaving" while that box was unticked)."""
    ex = explorer
    cfg = json.loads(ex.catalog.cluster_configs["single_node_single_instance"].read_text())
    cfg["nodes"][0]["instances"][0]["enable_sub_batch_interleaving"] = True
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    ex.controls["cluster_config"].value = str(tmp_path / "c.json")
    assert ex.controls["sub_batch_interleaving"].value is False
    assert ex.run() is None and "enable_sub_batch_interleaving" in ex.status.value
    assert _controls_named(ex) == ["cluster config"], ex.status.value     # the file's chooser only


@pytest.mark.parametrize(("control", "value", "label", "says"), [
    ("attn_offload", True, "attention on PIM", "needs a PIM device, and "),
    ("sub_batch_interleaving", True, "sub-batch interleaving</b> (Memory &amp; power tab), <b>attention on PIM",
     "needs attention offloading (attn_offload)"),
    ("prefix_storage", "cxl", "prefix storage", "'cxl' needs CXL memory, and "),
])
def test_a_memory_control_a_cluster_file_cannot_serve_is_named_not_the_file(explorer, control, value, label, says):
    """The shipped file is fine; the ticked control asks for what it lacks (was: the file's key was blamed and no
    control named, while the PIM device and CXL controls that could fix it are disabled with a file chosen)."""
    ex = explorer
    ex.controls["cluster_config"].value = "single_node_single_instance"
    ex.controls[control].value = value
    assert ex.run() is None
    st = ex.status.value
    assert f"check <b>{label}</b> (Memory &amp; power tab)." in st and html.escape(says) in st, st
    assert "single_node_single_instance.json" in st and "PIM device</b>" not in st and "CXL memory (GiB)</b>" not in st


def test_a_memory_control_without_its_device_names_both_controls(explorer):
    ex = explorer
    ex.controls["prefix_storage"].value = "cxl"
    assert ex.run() is None
    assert "check <b>prefix storage</b> (Memory &amp; power tab), <b>CXL memory (GiB)</b>" in ex.status.value


def test_engine_controls_a_cluster_file_sets_for_every_instance_are_greyed_out_and_not_compared(explorer):
    """The file's per-instance engine keys win, as in LLMServingSim (was: the controls stayed live, and the
    baseline comparison reported "max_num_seqs 2 (baseline 128)" for two identical runs)."""
    ex = explorer
    ex.controls["cluster_config"].value = "single_node_heterogeneous"   # both instances set these four
    greyed = {k for k in ENGINE_FIELDS if ex.controls[k].disabled}
    assert greyed == {"max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "enable_chunked_prefill"}
    assert "2 of 2 instances" in ex.controls["max_num_seqs"].tooltip
    ex.run()
    ex.keep_baseline()
    ex.controls["max_num_seqs"].value = 2     # as a loaded scenario can still set it
    ex.controls["block_size"].value = 32      # the file leaves this one to the controls
    ex.run()
    said = html.unescape(ex.summary.value)
    assert "Run vs baseline: block_size 32 (baseline 16); changed but used by neither run: max_num_seqs 2 " \
           "(baseline 128; every instance of cluster_config 'single_node_heterogeneous' sets its own max_num_seqs)" \
           in said, said
    assert "run (block_size 32)</th>" in said and "baseline (block_size 16)</th>" in said   # not max_num_seqs
    ex.controls["cluster_config"].value = ""
    assert not any(ex.controls[k].disabled for k in ENGINE_FIELDS)


def test_a_setting_only_the_baseline_used_is_not_reported_as_the_runs(explorer):
    """After switching to a cluster file, the comparison read "tp 2 (baseline 1), npu_mem_gib 40.0 (baseline
    96.0)" although the file ran TP1 on 96 GiB."""
    ex = explorer
    ex.run()
    ex.keep_baseline()
    ex.controls["tp"].value = 2
    ex.controls["npu_mem_gib"].value = 40.0
    ex.controls["cluster_config"].value = "single_node_single_instance"
    ex.run()
    said = html.unescape(ex.summary.value)
    assert "tp 2" not in said and "npu_mem_gib 40.0" not in said, said
    assert "cluster_config 'single_node_single_instance' sets the cluster in this run: npu_mem_gib (baseline 96.0), " \
           "tp (baseline 1)" in said, said


def test_an_engine_key_the_file_sets_for_some_instances_leaves_the_control_live_and_says_so(explorer, tmp_path):
    ex = explorer
    cfg = json.loads(ex.catalog.cluster_configs["single_node_multi_instance"].read_text())
    cfg["nodes"][0]["instances"][0]["max_num_seqs"] = 8
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    ex.controls["cluster_config"].value = str(tmp_path / "c.json")
    total = len(cfg["nodes"][0]["instances"])
    assert not ex.controls["max_num_seqs"].disabled
    assert ex.run() is not None
    assert f"sets its own value for some instances: max num seqs (1 of {total})" in ex.status.value, ex.status.value


def test_a_whole_trace_can_be_chosen_and_a_capped_one_says_so(explorer):
    """The requests control started at 1, so a trace could not be run whole (0) from the panel."""
    ex = explorer
    ex.controls["trace"].value = "sharegpt-llama-3.1-8b-300-sps10"
    ex.controls["num_requests"].value = 0
    assert ex.run() is not None and ex.result.requests.sizes["request"] == 300
    assert "300 requests," in ex.status.value and "capped" not in ex.status.value
    ex.controls["num_requests"].value = 40
    assert ex.run() is not None and "40 requests (the trace capped at 40; 0 requests runs it whole)" in ex.status.value


def test_gamma_burstiness_is_a_control_and_changes_the_arrivals(explorer):
    """arrival 'gamma' had no spread control, so it ran at CV 1: the same arrivals as Poisson."""
    ex = explorer
    assert ex.controls["arrival_cv"].disabled
    ex.controls["arrival"].value = "gamma"
    assert not ex.controls["arrival_cv"].disabled
    ex.controls["arrival_cv"].value = 4.0
    gaps = np.diff(ex.scenario().workload(ex.reference_dir).arrival_ns)
    poisson = np.diff(ex.scenario().replace(arrival="poisson").workload(ex.reference_dir).arrival_ns)
    assert gaps.std() / gaps.mean() > 2 > poisson.std() / poisson.mean()


@pytest.mark.parametrize(("control", "depends_on", "on_value"), [
    ("gate_skew", "expert_gate", "zipf"), ("prefix_sharing", "prefix_storage", "cpu"),
    ("kv_transfer", "prefill_instances", 1), ("arrival_cv", "arrival", "gamma")])
def test_a_setting_without_effect_is_greyed_out_until_it_has_one(explorer, control, depends_on, on_value):
    ex = explorer
    ex.controls["instances"].value = 2
    ex.controls["model"].value = MOE                      # the gate has experts to spread tokens over
    assert ex.controls[control].disabled
    ex.controls[depends_on].value = on_value
    assert not ex.controls[control].disabled


@pytest.mark.parametrize(("control", "changes", "why"), [
    ("router", {"instances": 2}, "One replica takes every request"),
    ("router", {"dp": 2}, "One replica takes every request"),                 # it routes among DP members too
    ("router", {"instances": 3, "prefill_instances": 1}, "One replica takes every request"),
    ("cxl_mem_gib", {"prefix_storage": "cxl"}, "Nothing is placed on CXL memory"),
    ("cxl_mem_bw", {"weights_on": "cxl"}, "Nothing is placed on CXL memory"),
    ("cxl_devices", {"weights_on": "cxl"}, "Nothing is placed on CXL memory"),
    ("expert_gate", {"model": MOE}, "no mixture-of-experts layers"),
    ("gate_skew", {"model": MOE, "expert_gate": "zipf"}, "no mixture-of-experts layers"),
    ("npu_mem_bw", {"tp": 2}, "No effect at TP 1 and EP 1"),
    ("npu_mem_bw", {"model": MOE, "ep": 2}, "No effect at TP 1 and EP 1"),
    ("cpu_mem_gib", {"weights_on": "cpu"}, "Nothing is placed on CPU memory"),
    ("cpu_mem_gib", {"prefix_storage": "cpu"}, "Nothing is placed on CPU memory"),
    ("cpu_mem_gib", {"power": True}, "Nothing is placed on CPU memory"),        # the DRAM's static power
    ("cpu_mem_gib", {"pim_device": "HBM2_1GB_2000_pim", "attn_offload": True}, "Nothing is placed on CPU memory"),
    ("cpu_mem_bw", {"prefix_storage": "cpu"}, "Nothing is read from CPU memory"),
])
def test_a_control_without_effect_is_greyed_out_saying_why_until_it_has_one(explorer, control, changes, why):
    """These stayed live where a run showed they change nothing (one replica, nothing on CXL, a dense model, TP 1:
    the NPU bandwidth only times the TP/EP reductions)."""
    ex = explorer
    ctl = ex.controls[control]
    assert ctl.disabled and why in ctl.tooltip, ctl.tooltip
    for k, v in changes.items():
        ex.controls[k].value = v
    assert not ctl.disabled and why not in (ctl.tooltip or "")
    ex.controls["cluster_config"].value = "single_node_single_instance"
    if control in SHAPE_FIELDS:    # the file sets it, and the tooltip says so
        assert ctl.disabled and "The cluster file single_node_single_instance sets it" in ctl.tooltip
    else:                          # the file's replicas and model decide whether it matters
        assert not ctl.disabled


def test_a_prefill_decode_pair_has_nothing_to_route_either(explorer):
    ex = explorer
    ex.controls["instances"].value = 2
    ex.controls["prefill_instances"].value = 1
    assert ex.controls["router"].disabled and not ex.controls["kv_transfer"].disabled


def test_a_hardware_change_names_the_model_and_tp_it_cannot_keep_and_brings_them_back(ref):
    """Picking RTXPRO6000 after H100 / Llama-3.1-70B / TP 4 silently switched to another model and TP 1, and
    switching back did not restore them."""
    ex = Explorer(ref, Scenario(hardware="H100", model="meta-llama/Llama-3.1-70B", tp=4, npu_mem_gib=80))
    assert ex.unshown == {}
    ex.controls["hardware"].value = "RTXPRO6000"
    st = html.unescape(ex.status.value)
    assert ex.controls["model"].value != "meta-llama/Llama-3.1-70B"
    assert "RTXPRO6000 offers no model meta-llama/Llama-3.1-70B (shown: " in st and "no TP 4 (shown: " in st, st
    ex.controls["hardware"].value = "H100"
    assert (ex.controls["model"].value, ex.controls["tp"].value) == ("meta-llama/Llama-3.1-70B", 4)
    assert "offers no" not in ex.status.value


def test_power_is_ticked_again_on_hardware_that_has_a_power_model(ref):
    """A trip to hardware without a power model (spec only) unticked power for good, unlike model and TP."""
    ex = Explorer(ref, Scenario(power=True))
    power = ex.controls["power"]
    ex.controls["hardware"].value = "H100"
    assert not power.value and power.disabled
    ex.controls["hardware"].value = "RTXPRO6000"
    assert power.value and not power.disabled
    power.value = False                                     # the user's own choice is kept as well
    ex.controls["hardware"].value = "H100"
    ex.controls["hardware"].value = "RTXPRO6000"
    assert not power.value


def test_the_power_view_says_why_a_run_has_no_power_as_the_greyed_out_box_does(explorer):
    """The power view said "tick 'power'" where the box (labelled 'power model') was greyed out and could not be."""
    ex = explorer
    power = ex.controls["power"]
    ex.controls["hardware"].value = "H100"                  # no reference config gives it a power section
    why = "no reference cluster config gives 'H100' a power section"
    assert power.disabled and why in power.tooltip
    assert ex.run() is not None
    ex.plots.selected_index = 1
    title = ex.figures["Time series"].children[2].text.removeprefix("<b>").removesuffix("</b>")
    assert title.endswith(f"(this run has no power model: {why})"), title
    ex.controls["hardware"].value = "RTXPRO6000"
    power.value = False                                     # live, but off: ticking it is the answer
    assert not power.disabled and ex.run() is not None
    assert "power is off (tick 'power model'" in ex.figures["Time series"].children[2].text


def test_a_model_the_controls_cannot_show_runs_what_is_shown_on_the_second_press(ref):
    """The model list went blank (None), so the second press failed with 'model: must be text, got None'."""
    ex = Explorer(ref, Scenario(model="no/such-model", num_requests=10))
    shown = ex.controls["model"].value
    assert shown in [o[1] for o in ex.controls["model"].options]
    assert ex.run() is None and "model 'no/such-model' (shown as " in html.unescape(ex.status.value)
    assert ex.run() is not None and ex.scenario_shown.model == shown


def test_a_clamped_value_the_user_then_sets_runs_at_the_first_press(ref):
    """Setting the named control was not enough: the first Run still refused with the old message."""
    ex = Explorer(ref, Scenario(num_requests=10, max_num_seqs=0, rate=20_000.0))
    ex.controls["max_num_seqs"].value = 4
    assert ex.run() is None and "rate 20000.0 (shown as 10000.0)" in ex.status.value   # still as clamped
    assert "max_num_seqs" not in ex.status.value
    ex = Explorer(ref, Scenario(num_requests=10, max_num_seqs=0))
    ex.controls["max_num_seqs"].value = 4
    assert ex.run() is not None and ex.scenario_shown.max_num_seqs == 4


def test_an_unknown_hardware_is_shown_with_the_memory_of_the_one_shown_instead(ref):
    ex = Explorer(ref, Scenario(hardware="NoSuchGPU", num_requests=10, npu_mem_gib=96.0))
    hw = ex.controls["hardware"].value
    spec = ex.specs.get(hw)
    expected = ex.catalog.hardware[hw].mem_size if hw in ex.catalog.hardware else spec.memory_gib
    assert ex.controls["npu_mem_gib"].value == expected
    assert f"npu_mem_gib 96.0 (shown as {expected!r})" in ex.status.value


def test_save_scenario_names_the_control(explorer, tmp_path):
    ex = explorer
    ex.controls["rate"].value = float("nan")
    ex.scenario_path.value = str(tmp_path / "s.json")
    assert ex.save_scenario() is None
    assert "check <b>rate (req/s)</b> (Workload tab)" in ex.status.value and "rate: must be" in ex.status.value


@pytest.mark.parametrize("scenario, says", [
    (Scenario(input_len=5), "scenario: input_len: must be text, got 5"),
    (Scenario(enable_prefix_caching="yes"), "scenario: enable_prefix_caching: must be true or false, got 'yes'"),
    ("s.json", "explorer: scenario: expected a Scenario, got str"),
])
def test_a_scenario_of_wrong_kinds_is_refused_by_field(ref, scenario, says):
    """It raised a TraitError from the control that could not hold the value."""
    from llmss_lab.errors import InputError
    with pytest.raises(InputError) as exc:
        Explorer(ref, scenario=scenario)
    assert str(exc.value) == says


def test_the_npu_bandwidth_control_says_what_it_changes(explorer):
    """At TP 1 it changes nothing (it is the reductions' local memory traffic): the label and tooltip say so,
    and point to the what-if that does scale operator times."""
    c = explorer.controls["npu_mem_bw"]
    assert "collectives" in c.description and "what if: memory BW x" in c.tooltip
    assert explorer.controls["what_if_mem_bw"].description in c.tooltip


def test_bokehjs_is_sent_once_to_each_page(monkeypatch):
    """A page reloaded on a running kernel (or a second tab) has lost BokehJS: the kernel used to send
    it once per kernel, so every view of the reloaded page failed until the kernel was restarted."""
    from llmss_lab.widgets import explorer

    sent = []
    monkeypatch.setattr(explorer, "_send_bokehjs", lambda res: sent.append(page))
    monkeypatch.setattr(explorer, "_BOKEH_PAGES", {})
    for page in ["tab-1", "tab-1", "tab-1-reloaded", "tab-1"]:
        monkeypatch.setattr(explorer, "_page", lambda: page)
        explorer.load_bokeh()
    assert sent == ["tab-1", "tab-1-reloaded"]


def test_a_page_gets_the_bokehjs_a_figure_needs(monkeypatch, ref):
    """The kit's views need BokehJS's core, widgets and tables, not its 1.8 MB of math text: every
    notebook stores what it was sent. A user's figure with math text gets the rest, once."""
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from llmss_lab.widgets import explorer

    a = Scenario(num_requests=20, power=True).run(ref)
    b = Scenario(num_requests=8, model="Qwen/Qwen3-30B-A3B-Instruct-2507").run(ref)
    for v in [views.dashboard(a, b), views.latency_cdfs(a, b), views.experts(b)]:
        assert set(bundle_for_objs_and_resources([v], INLINE).js_raw) <= set(explorer._KIT_JS.js_raw)
    assert sum(map(len, explorer._KIT_JS.js_raw)) < 0.6 * sum(map(len, INLINE.js_raw))

    sent = []
    monkeypatch.setattr(explorer, "_send_bokehjs", sent.append)
    monkeypatch.setattr(explorer, "_BOKEH_PAGES", {})
    monkeypatch.setattr(explorer, "_page", lambda: "tab")
    math = figure(title="$$E = mc^2$$")
    for obj in [views.throughput(a), None, math, math, views.memory(a)]:
        explorer.load_bokeh(obj)
    assert sent == [explorer._KIT_JS, explorer._REST_JS]   # the core once: loaded twice, math text did not draw


def test_an_unreadable_hardware_spec_is_named_and_the_rest_offered(ref, tmp_path, monkeypatch):
    """One spec file being edited (memory_bw_gbs: 0) used to stop the whole panel from being built."""
    import shutil

    from llmss_lab.latency import specs
    from llmss_lab.widgets import explorer
    for p in specs.SPECS_DIR.glob("*.yaml"):
        shutil.copy(p, tmp_path)
    bad = tmp_path / "H100.yaml"
    bad.write_text(bad.read_text().replace("memory_bw_gbs:", "memory_bw_gbs: 0 #"))
    monkeypatch.setattr(explorer, "read_specs", lambda: specs.read_specs(tmp_path))
    ex = Explorer(ref)
    offered = [v for _, v in ex.controls["hardware"].options]
    assert "H100" not in offered and "H200" in offered and "RTXPRO6000" in offered
    assert "H100.yaml: memory_bw_gbs: must be a positive number" in ex.status.value


def test_the_ep_that_ran_is_said_when_it_is_not_the_one_shown(ref):
    """EP 1 at TP 2 on a MoE model runs EP 2 (experts spread over the TP ranks); the panel compared "ep 2
    (baseline 1)" at +0.0 % on every metric without saying both runs were EP 2."""
    ex = Explorer(ref, Scenario(model="Qwen/Qwen3-30B-A3B-Instruct-2507", tp=2, num_requests=6))
    assert ex.run().attrs["ep_size"] == 2 and "ran EP 2" in ex.status.value
    ex.controls["ep"].value = 2
    ex.run()
    assert "ran EP" not in ex.status.value
    ex.set_scenario(Scenario(num_requests=6, tp=2))                     # a dense model: EP 1 is what runs
    ex.run()
    assert "ran EP" not in ex.status.value


def test_a_refused_value_note_clears_when_the_control_takes_the_same_value_again(explorer):
    """The note on a refused value stayed until the control took another value: setting it back to the one it
    holds (the user's way to say "keep it") left the note, and notes of several controls piled up."""
    ex = explorer
    router, rate, text = ex.controls["router"], ex.controls["rate"], ex.controls["input_len"]
    held = router.value
    router.value = "no_such_router"
    text.value = None
    rate.value = "fast"
    said = html.unescape(ex.clamp_note.value)
    assert all(f"{label}: " in said for label in ("router", "rate (req/s)", "input len")), said
    router.value = held                     # the same value again: the router's note goes, the others stay
    said = html.unescape(ex.clamp_note.value)
    assert "router: " not in said and said.count(KEPT_NOTE) == 2, said
    rate.value = rate.value                 # a number box too
    text.set_state({"value": text.value})   # and the same value from the page
    assert ex.clamp_note.value == ""


def test_notes_on_values_not_used_as_typed_clear_after_a_run(ref):
    ex = Explorer(ref, Scenario(num_requests=4))
    ex.controls["router"].value = "no_such_router"
    ex.controls["max_num_seqs"].value = 2.5
    assert html.unescape(ex.clamp_note.value).count(": ") >= 2
    assert ex.run() is not None
    assert ex.clamp_note.value == "" and ex.clamped == {}   # the run on show used the values shown, as said
    ex.controls["router"].value = "no_such_router"          # a note after the run is kept until dealt with
    assert KEPT_NOTE in ex.clamp_note.value


KEPT_NOTE = "is not a value it takes"


def test_the_time_bins_are_a_control_carried_into_the_run(explorer, tmp_path):
    """The explorer had no bin width: a long run's plots drew 86,400 points a day per instance. The width sits
    with the workload, 1 s unless set, checked like the other boxes, and the run, its plots and a saved scenario
    take it."""
    ex = explorer
    bins = ex.controls["bin_s"]
    assert bins in ex.view.children[0].children[list(ex.view.children[0].titles).index("Workload")].children
    assert bins.value == 1.0 and bins.description == "time bins (s)" and "long run" in bins.tooltip
    bins.set_state({"value": 0.0})                   # as the page sends what was typed
    said = html.unescape(ex.clamp_note.value)
    assert bins.value == 0.001 and "time bins (s): 0 is below the lowest allowed 0.001; using 0.001" in said, said
    bins.value = 1e6
    assert bins.value == 86_400 and "above the highest allowed 86400" in html.unescape(ex.clamp_note.value)
    bins.value = float("nan")                        # within no range: the run names the control
    assert ex.run() is None and "<b>time bins (s)</b> (Workload tab)" in ex.status.value, ex.status.value
    bins.value = 2.0
    res = ex.run()
    assert res is not None and ex.scenario_shown.bin_s == 2.0
    assert res.timeseries.attrs["bin_s"] == 2.0 and np.allclose(np.diff(res.timeseries.time.values), 2.0)
    assert np.allclose(np.diff(res.memory.time.values), 2.0)
    ex.plots.selected_index = list(views.PANELS).index("Time series")
    titles = [t.text for t in ex.figures["Time series"].select({"type": Title})]
    assert "Throughput, mean of 2 s bins" in titles, titles
    ex.scenario_path.value = str(tmp_path / "s.json")
    ex.save_scenario()
    assert Scenario.load(tmp_path / "s.json").bin_s == 2.0


def test_every_scenario_field_has_a_control_on_a_tab_and_the_run_flag_fields_run(explorer, tmp_path):
    """A field without a tab (num_gpu_blocks, max_model_len, ... when they joined) ran at whatever a loaded file
    said, unseen."""
    from dataclasses import fields

    from llmss_lab.widgets.explorer import TAB_OF

    assert set(TAB_OF) == {f.name for f in fields(Scenario)}
    ex = explorer
    ex.controls["num_gpu_blocks"].value = 300
    ex.controls["reserve_full_isl"].value = False
    res = ex.run()
    assert res is not None, ex.status.value
    assert res.attrs["num_gpu_blocks"] == 300 and ex.scenario_shown.reserve_full_isl is False
    ex.controls["num_gpu_blocks"].value = 0   # 0: sized from the memory again
    assert ex.run().attrs["num_gpu_blocks"] > 300


def test_save_may_not_replace_a_file_the_run_reads(ref, tmp_path):
    """Save results to a link to the run's own trace (or Save scenario to the trace itself) wrote over the trace
    that the controls name, as `llmss run --scenario --out` did."""
    import shutil

    trace = tmp_path / "t.jsonl"
    shutil.copy(ref / "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl", trace)
    before = trace.read_bytes()
    ex = Explorer(ref, Scenario(num_requests=5, trace=str(trace)))
    assert ex.run() is not None, ex.status.value
    (tmp_path / "r.csv").symlink_to(trace)
    ex.results_path.value, ex.scenario_path.value = str(tmp_path / "r.csv"), str(trace)
    for save, what in ((ex.save_results, "results"), (ex.save_scenario, "scenario")):
        assert save() is None and f"is also an input of the run (the controls: trace), which the {what} would " \
                                  "replace" in ex.status.value, ex.status.value
    assert trace.read_bytes() == before


def test_the_panels_plots_leave_the_run_to_its_status_line(explorer):
    """A view alone names the run's model and hardware in its title (views.run_title); the panel's status line says
    them right above its plots, so they keep their plain titles, and the table its plain "run" column. Beside a
    baseline, the titles say what both ran (views.pair_title), which the status line does not."""
    ex = explorer
    ex.run()
    assert ex.status_text.startswith("meta-llama/Llama-3.1-8B on RTXPRO6000")
    titles = [f.title.text for f in ex.figures["Timeline"].children]
    assert titles == ["Batch timeline: engine steps per instance", "Request lifelines (queued, prefill, decode)"]
    assert "padding:1px 12px 1px 0'>run</th>" in ex.summary.value
    ex.keep_baseline()
    ex.controls["max_num_seqs"].value = 8
    ex.run()   # with a baseline: each run named by what differs, as before
    assert ex.names == ("run (max_num_seqs 8)", "baseline (max_num_seqs 128)")
    # and the plots' titles say what both ran (the status line speaks of the run alone)
    titles = [f.title.text.replace("\n", " ") for f in ex.figures["Timeline"].children]
    assert all(t.endswith(": both Llama-3.1-8B on RTXPRO6000, profiled latencies") for t in titles), titles


def test_the_efficiency_fit_is_greyed_out_while_a_measured_profile_runs(explorer, monkeypatch):
    """Under latency 'auto' a measured profile of the hardware, model and TP wins over the analytical model that an
    efficiency fit shapes, yet the fit's control was live. It is greyed out, saying why, from the catalog (no
    profile read), and comes back where the analytical model runs: latency analytical, a what-if, no profile."""
    import llmss_lab.api as api

    def no_profile_read(*args, **kwargs):
        raise AssertionError("a profile was read to decide")

    monkeypatch.setattr(api, "load_profile", no_profile_read)
    monkeypatch.setattr(api, "load_bundle", no_profile_read)
    ex = explorer
    c, fit = explorer.controls, explorer.controls["efficiency_file"]
    assert fit.disabled and fit.tooltip.startswith(
        "No effect: latency 'auto' runs the measured profile of Llama-3.1-8B on RTXPRO6000 at TP1 (pick the "
        "analytical model to use a fit) Fitted efficiency curves")
    c["latency"].value = "analytical"
    assert not fit.disabled and fit.tooltip.startswith("Fitted efficiency curves")
    c["latency"].value = "auto"
    assert fit.disabled
    c["what_if_mem_bw"].value = 2.0   # a what-if runs the spec under 'auto'
    assert not fit.disabled
    c["what_if_mem_bw"].value = 1.0
    c["hardware"].value = "H100"      # known by its spec alone here
    assert not fit.disabled
    c["hardware"].value = "RTXPRO6000"
    c["cluster_config"].value = "single_node_single_instance"
    assert fit.disabled and "every instance of the cluster file" in fit.tooltip
    c["cluster_config"].value = ""
    c["latency"].value = "profile"
    assert fit.disabled
    fit.value = "mine.yaml"           # set from code: the run refuses it, so it stays where it can be cleared
    assert not fit.disabled
    assert Scenario(latency="analytical").inert(ex.reference_dir).get("efficiency_file") is None


def test_a_run_interrupted_as_its_results_were_built_shows_whole(explorer, monkeypatch):
    """A Ctrl-C once the run had finished keeps all of it (api.simulate): not called a partial run."""

    import llmss_lab.results.dataset as dataset

    real = dataset.timeseries_dataset

    def ctrl_c_now(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "timeseries_dataset", ctrl_c_now)
    run_interrupted(explorer)
    assert "interrupted" not in explorer.result.attrs and explorer.result.summary()["completed"] == 40
    assert explorer.status_text.startswith("Interrupted as the results were built, all 40 requests finished: ")
    assert "Partial" not in explorer.stale.value and not explorer.save_results_button.disabled


def test_save_may_not_write_into_the_reference_data_the_panel_reads(ref, tmp_path):
    """Save scenario wrote into the reference folder the panel was given (only the one found by itself was kept)."""
    root = linked_root(ref, tmp_path / "root")
    ex = Explorer(root, Scenario(num_requests=5))
    assert ex.run() is not None, ex.status.value
    ex.results_path.value, ex.scenario_path.value = str(root / "r.nc"), str(root / "s.json")
    for save, what in ((ex.save_results, "results"), (ex.save_scenario, "scenario")):
        assert save() is None and f"{root / ('r.nc' if what == 'results' else 's.json')}: {what} file: is inside the " \
                                  f"reference data ({root})" in ex.status.value, ex.status.value
    assert sorted(p.name for p in root.iterdir()) == ["configs", "profiles", "workloads"]
