"""The Explorer: ipywidgets controls for a :class:`~llmss_lab.scenario.Scenario`, a Run button with a
progress bar, and the Bokeh views of the result (and of a kept baseline) in one panel.

The panel's logic lives in plain methods (``scenario()``, ``run()``, ``keep_baseline()``, ...)
so tests drive it without a browser: set ``explorer.controls[name].value``, call
``explorer.run_button.click()``, read ``explorer.result`` and ``explorer.figures`` (the Bokeh layouts of
the plot tabs opened since the run, by title: a tab's plots are built when it is first shown).
"""
from __future__ import annotations

import html
import logging
import math
import os
import re
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w
from bokeh.resources import INLINE, Resources
from traitlets import Float, Int, TraitError, Union, validate

from .. import views
from ..api import MAX_BIN_S, MIN_BIN_S
from ..catalog import scan
from ..config.engine import MAX_KV_BLOCKS
from ..errors import InputError, LlmssError, RunInterrupted
from ..files import refuse_in_reference
from ..latency.specs import read_specs
from ..reference import protected_root, resolve_reference_dir
from ..results.dataset import Results
from ..scenario import GENERATOR_FIELDS, INERT, SHAPE_FIELDS, Scenario
from ..scenario import choices as scenario_choices

log = logging.getLogger(__name__)

GROUPS = {
    "Hardware & model": ("cluster_config", "hardware", "model", "npu_mem_gib", "npu_mem_bw", "latency",
                         "what_if_mem_bw", "what_if_flops", "efficiency_file"),
    "Cluster shape": ("instances", "dp", "tp", "pp", "ep", "prefill_instances"),
    "Engine": ("max_num_seqs", "max_num_batched_tokens", "block_size", "enable_prefix_caching",
               "enable_chunked_prefill", "async_scheduling", "gpu_memory_utilization", "num_gpu_blocks",
               "max_model_len", "long_prefill_token_threshold", "reserve_full_isl"),
    "Policies": ("scheduler", "router", "expert_gate", "gate_skew", "eviction", "kv_transfer"),
    "Memory & power": ("weights_on", "cpu_mem_gib", "cpu_mem_bw", "cxl_mem_gib", "cxl_mem_bw", "cxl_devices",
                       "prefix_storage", "prefix_sharing", "pim_device", "attn_offload", "sub_batch_interleaving",
                       "power"),
    "Workload": ("trace", "num_requests", "rate", "input_len", "output_len", "arrival", "arrival_cv",
                 "shared_prefix_len", "num_prefixes", "seed", "bin_s"),
}
LABELS = {"npu_mem_gib": "NPU memory (GiB)", "npu_mem_bw": "NPU BW, collectives (GB/s)", "cpu_mem_gib": "CPU memory (GiB)",
          "cpu_mem_bw": "CPU bandwidth (GB/s)", "cxl_mem_gib": "CXL memory (GiB)", "cxl_mem_bw": "CXL GB/s per device",
          "rate": "rate (req/s)", "prefill_instances": "prefill replicas", "instances": "replicas",
          "dp": "DP", "tp": "TP", "pp": "PP", "ep": "EP", "pim_device": "PIM device", "weights_on": "weights on",
          "attn_offload": "attention on PIM", "sub_batch_interleaving": "sub-batch interleaving",
          "power": "power model", "latency": "latency model", "what_if_mem_bw": "what if: memory BW x",
          "what_if_flops": "what if: peak FLOP/s x", "arrival_cv": "burstiness (CV of gaps)",
          "num_requests": "requests (0: whole trace)", "bin_s": "time bins (s)",
          "num_gpu_blocks": "KV blocks (0: from memory)", "max_model_len": "max model len (0: model's)",
          "long_prefill_token_threshold": "long prefill cap (0: none)", "efficiency_file": "efficiency fit file"}
# the keys an error can name for a value a control sets, besides the Scenario fields (whose controls share their
# names) and the built cluster's keys (scenario.BUILT_KEYS, which Scenario.run names by field): the run settings
KEY_CONTROLS: dict[str, tuple[str, ...]] = {"what_if": ("what_if_mem_bw", "what_if_flops")}
# controls that can also fix what an error names at a run option: the option asked for something the cluster
# lacks (dropped while a cluster file, not these controls, sets the cluster)
RELATED: dict[str, tuple[str, ...]] = {"attn_offload": ("pim_device",), "prefix_storage": ("cxl_mem_gib",),
                                       "sub_batch_interleaving": ("attn_offload",)}
BOUNDS: dict[str, tuple[float, float]] = {
    "npu_mem_gib": (1, 4096), "npu_mem_bw": (1, 1e6), "instances": (1, 64), "dp": (1, 16), "pp": (1, 16),
    "ep": (1, 64), "prefill_instances": (0, 63), "max_num_seqs": (0, 4096), "max_num_batched_tokens": (0, 1 << 20),
    "gpu_memory_utilization": (0.05, 1.0), "gate_skew": (0.0, 10.0), "cpu_mem_gib": (1, 1e5), "cpu_mem_bw": (1, 1e5),
    "cxl_mem_gib": (0, 1e5), "cxl_mem_bw": (1, 1e5), "cxl_devices": (1, 64), "num_requests": (0, 20_000),
    "rate": (0.01, 1e4), "arrival_cv": (0.0, 10.0), "shared_prefix_len": (0, 32768), "num_prefixes": (1, 100_000),
    "seed": (0, 2**31 - 1),
    "what_if_mem_bw": (0.01, 100), "what_if_flops": (0.01, 100), "bin_s": (MIN_BIN_S, MAX_BIN_S),
    "num_gpu_blocks": (0, MAX_KV_BLOCKS), "max_model_len": (0, 1 << 24), "long_prefill_token_threshold": (0, 1 << 20)}
# what a control changes, where its label cannot say it all (shown on hover)
TOOLTIPS = {
    "npu_mem_bw": "The config's npu_mem.mem_bw: the local reads and writes of TP/EP reductions. Operator times come "
                  "from the profile or the hardware spec; to scale those, pick the analytical model and set "
                  "'what if: memory BW x'.",
    "max_num_seqs": "0: unlimited, as in LLMServingSim's configs (vLLM itself refuses 0).",
    "max_num_batched_tokens": "0: unlimited, as in LLMServingSim's configs (vLLM itself refuses 0).",
    "what_if_mem_bw": "Scales the hardware spec's memory bandwidth in the analytical model (not a measured profile).",
    "what_if_flops": "Scales the hardware spec's peak FLOP/s in the analytical model (not a measured profile).",
    "num_gpu_blocks": "KV cache blocks per instance (vLLM's num_gpu_blocks_override); 0: sized from the memory left "
                      "after the weights.",
    "reserve_full_isl": "Admit a waiting request only when its whole current sequence fits in free blocks, which "
                        "keeps admissions from causing preemptions.",
    "efficiency_file": "Fitted efficiency curves of the analytical model (llmss profile-fit --out); empty: "
                       "profiles/efficiency.yaml. Not read with a measured profile.",
    "bin_s": "Width of the throughput, KV, power and memory series' bins: wider for a long run (a day at 1 s is "
             "86,400 points per instance). Throughputs stay per second and power in W, averaged over each bin.",
    "scheduler": "vllm_v1: continuous batching, a request joins the batch at any step and leaves when done. static: "
                 "a batch is drawn from the queue only once the last has finished; arrivals wait for it.",
}
# the scheduler's options by what they do, for a class comparing them (the value stays the policy's name)
SCHEDULER_LABELS = {"vllm_v1": "vllm_v1 (continuous batching)", "static": "static (a batch at a time)"}
LATENCY_CHOICES = [("auto: profile where one exists", "auto"), ("measured profile", "profile"),
                   ("analytical (roofline)", "analytical")]
SPEC_TPS = (1, 2, 4, 8)      # TP degrees offered for hardware known only by its spec
TAB_OF = {k: tab for tab, keys in GROUPS.items() for k in keys}
READY = "Set the controls and press <b>Run</b>."


class Explorer:
    """An interactive panel: pick hardware and policies, run, compare against a kept baseline."""

    def __init__(self, reference_dir: str | Path | None = None, scenario: Scenario | None = None):
        self.reference_dir = resolve_reference_dir(reference_dir)
        self.catalog = scan(self.reference_dir)
        self.specs, unreadable = read_specs()   # hardware the analytical model can run without a profile
        self.all_models = _model_configs(self.reference_dir)
        self.result: Results | None = None
        self.baseline: Results | None = None
        self.baseline_scenario: Scenario | None = None
        self.baseline_at = ""          # when the baseline was run (HH:MM:SS)
        self.scenario_shown: Scenario | None = None   # the scenario of ``result``
        self.shown_at = ""             # when ``result`` was run (HH:MM:SS), for the stale-plots note
        self.tried: tuple[Scenario, str] | None = None   # the settings of a failed run since, and how it ended
        self.loaded: Scenario | None = None   # the controls' scenario as a file set them, naming the file
        self.figures: dict[str, Any] = {}   # plot tab title -> its Bokeh layout, for the tabs opened since the run
        self.names: tuple[str, str] = views.labels_of([])   # the plots' names of the run and baseline
        self.last_wall_s = float("nan")
        self.wanted: dict[str, Any] = {}    # the model and TP last picked (or given): shown again where offered
        self._refreshing = False            # options are being refilled: a value change is not the user's pick
        self.unshown: dict[str, tuple] = {}   # field -> (the value given, the one shown): the controls cannot hold it
        self.clamped: dict[str, str] = {}     # control -> a value typed that it cannot hold, and the one used
        self.clamp_note = w.HTML()            # says so until the control is set to a value it holds
        self.controls: dict[str, w.ValueWidget] = {f.name: self._control(f.name, f.type) for f in fields(Scenario)}
        self.controls["hardware"].observe(self._on_hardware, "value")
        self.controls["model"].observe(self._on_model, "value")
        self.controls["tp"].observe(self._on_tp, "value")
        self.controls["power"].observe(self._on_power, "value")
        for k in dict.fromkeys(("cluster_config", "trace", *(on for ons, _ in INERT.values() for on in ons))):
            self.controls[k].observe(self._on_switches, "value")
        self.status = w.HTML(READY)
        self.set_scenario(scenario or Scenario())
        if unreadable:   # the rest is offered; the file being edited is named
            self.status.value += ("<br><span style='color:#b00'>Not offered, a hardware spec that cannot be read: "
                                  f"{html.escape('; '.join(map(str, unreadable)))}</span>")

        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.keep_button = w.Button(description="Keep as baseline", icon="thumb-tack", disabled=True)
        self.clear_button = w.Button(description="Clear baseline", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="requests", bar_style="info")
        self.stale = w.HTML()          # a note while the table and plots are not the controls' (edited, or a failed run)
        self.partial = ""              # the "Partial run" note of an interrupted run on show: kept above any other
        for ctl in self.controls.values():
            ctl.observe(lambda _: self._note_edits(), "value")
        self.summary = w.HTML()
        self.plots = w.Tab(children=[w.Box(layout=w.Layout(width="100%")) for _ in views.PANELS],
                           layout=w.Layout(display="none"))   # shown from the first result on; the VBox stretches
        # it to its width (a width of 100% plus a widget's 2 px margins ran 4 px past the panel: a scroll bar)
        for i, title in enumerate(views.PANELS):
            self.plots.set_title(i, title)
        self.plots.observe(lambda _: self._show_panel(), "selected_index")
        self.results_path = w.Text(value="llmss_results.nc", description="results file")
        self.scenario_path = w.Text(value="llmss_scenario.json", description="scenario file")
        self.save_results_button = w.Button(description="Save results", icon="save", disabled=True)
        self.save_scenario_button = w.Button(description="Save scenario", icon="save")
        self.load_scenario_button = w.Button(description="Load scenario", icon="folder-open")
        self.run_button.on_click(lambda _: self.run())
        self.keep_button.on_click(lambda _: self.keep_baseline())
        self.clear_button.on_click(lambda _: self.clear_baseline())
        self.save_results_button.on_click(lambda _: self.save_results())
        self.save_scenario_button.on_click(lambda _: self.save_scenario())
        self.load_scenario_button.on_click(lambda _: self.load_scenario())

        tabs = w.Tab(children=[w.VBox([self.controls[k] for k in keys]) for keys in GROUPS.values()])
        for i, title in enumerate(GROUPS):
            tabs.set_title(i, title)
        self.view = w.VBox([
            tabs,
            w.HBox([self.run_button, self.progress, self.keep_button, self.clear_button]),
            self.status,
            self.clamp_note,
            self.stale,
            self.summary,
            self.plots,
            w.HBox([w.HBox([self.results_path, self.save_results_button]),    # a file box stays with its buttons
                    w.HBox([self.scenario_path, self.save_scenario_button, self.load_scenario_button])],
                   layout=w.Layout(flex_flow="row wrap")),
        ], layout=w.Layout(width="100%"))
        self.view.add_class("llmss-explorer")

    # ---- controls ------------------------------------------------------------------------------
    def _control(self, name: str, kind: Any) -> w.ValueWidget:
        cat = self.catalog
        label = LABELS.get(name, name.replace("_", " "))
        style = {"description_width": "190px"}
        choices: dict[str, list] = {   # what a scenario takes, some with labels
            **{k: list(v) for k, v in scenario_choices().items()},
            "hardware": [h if h in cat.hardware else (f"{h} (spec only: analytical)", h)
                         for h in sorted(set(cat.hardware) | set(self.specs))],
            "latency": LATENCY_CHOICES,
            "scheduler": [(SCHEDULER_LABELS.get(s, s), s) for s in scenario_choices()["scheduler"]],
            "model": [],
            "tp": [1],
            "block_size": [8, 16, 32, 64, 128],
            "prefix_storage": [("none", ""), "cpu", "cxl"],
            "pim_device": [("none", "")] + list(cat.pim_devices),
        }
        files = {"cluster_config": (cat.cluster_configs, "empty: built from the controls"),
                 "trace": (cat.traces, "empty: the generator below")}
        if name in files:   # a catalog entry, or any path typed in
            table, hint = files[name]
            ctl = _Combobox(options=sorted(table), placeholder=hint, ensure_option=False, description=label,
                            style=style)
        elif name in choices:
            ctl = _Dropdown(options=_pairs(choices[name]), description=label, style=style)
        elif kind in (bool, "bool"):
            ctl = _Checkbox(description=label, indent=False)
        elif kind in (int, "int", float, "float"):
            lo, hi = BOUNDS.get(name, (0, 1 << 30))
            box, cast = (_IntBox, int) if kind in (int, "int") else (_FloatBox, float)
            ctl = box(cast(lo), cast(hi), lambda note, k=name: self._on_clamp(k, note), description=label,
                      style=style)
        else:
            ctl = _Text(description=label, style=style)
        ctl.on_refused = lambda note, k=name: self._on_clamp(k, note)
        if not isinstance(ctl, _InRange):   # a value it takes, the same one again included, ends the note
            ctl.on_held = lambda k=name: KEPT in self.clamped.get(k, "") and self._on_clamp(k, "")
        ctl.layout.width = "420px"     # the control's own Layout: a new one would leave that one open
        if name in TOOLTIPS:
            ctl.tooltip = TOOLTIPS[name]
        return ctl

    def scenario(self) -> Scenario:
        """The scenario the controls describe: the one loaded from a file (which errors name) while they hold it."""
        scen = Scenario(**{k: c.value for k, c in self.controls.items()})
        return self.loaded if scen == self.loaded else scen

    def set_scenario(self, scenario: Scenario) -> None:
        """Show a scenario in the controls (options follow the hardware and model first). A value the
        controls cannot hold (an unknown hardware, a count above a slider's range) is named in the status
        line, so the scenario that runs is never silently another one. A scenario of wrong kinds (a number
        for a length, text for a switch) is refused by field, as Scenario.load refuses it."""
        if not isinstance(scenario, Scenario):
            raise InputError(f"expected a Scenario, got {type(scenario).__name__}", "explorer", "scenario")
        scenario.validate()
        c = self.controls
        self.wanted = {"model": scenario.model, "tp": scenario.tp, "power": scenario.power}
        known = scenario.hardware in self.catalog.hardware or scenario.hardware in self.specs
        if known:
            c["hardware"].value = scenario.hardware
            self._refresh_models()
        else:    # the hardware shown instead, with its own memory
            self._on_hardware({})
        # an unknown hardware's memory is not put on the one shown instead: it is named below with the hardware
        # and a memory left to the hardware (0) shows the hardware's (put there by _on_hardware on a change)
        own_mem = {k for k in ("npu_mem_gib", "npu_mem_bw") if not getattr(scenario, k)}
        if known and own_mem:   # also when the hardware did not change, whose memory a user may have typed over
            self._show_own_memory()
        skip = {"hardware", "model"} | (set() if known else {"npu_mem_gib", "npu_mem_bw"}) | own_mem
        for k, v in scenario.to_dict().items():
            if k in skip:
                continue
            if isinstance(c[k], w.Dropdown) and v not in [o[1] for o in c[k].options]:
                c[k].options = list(c[k].options) + [(str(v), v)]   # a saved scenario's value outside the catalog
            c[k].value = v
        self._on_switches()
        self.clamped.clear()   # what the controls could not hold is named below, with the value given
        self.clamp_note.value = ""
        shown = self.scenario().to_dict()
        # the first Run refuses while one of these still shows what it was clamped to, so the list is read
        self.unshown = {k: (v, shown[k]) for k, v in scenario.to_dict().items() if shown[k] != v and k not in own_mem}
        if self.unshown:
            said = ", ".join(f"{k} {v!r} (shown as {now!r})" for k, (v, now) in self.unshown.items())
            self.status.value = ("<span style='color:#b00'><b>The controls cannot show this scenario as saved:</b> "
                                 f"{html.escape(said)}; check them before pressing Run.</span>")
        else:
            self.status.value = READY

    def _hardware(self):
        """The catalog entry of the hardware on show (None for a saved scenario's unknown hardware)."""
        return self.catalog.hardware.get(self.controls["hardware"].value)

    def _refresh_models(self) -> None:
        """Offer the hardware's models, showing the one last picked if offered, else the one on show, else
        the first; then the same for TP."""
        hw = self._hardware()
        models = sorted(hw.models) if hw else (self.all_models if self.controls["hardware"].value in self.specs else [])
        ctl = self.controls["model"]
        keep = ctl.value
        self._refreshing = True
        try:
            ctl.options = _pairs(models)
            for pick in (self.wanted.get("model"), keep, models[0] if models else None):
                if pick in models:
                    ctl.value = pick
                    break
        finally:
            self._refreshing = False
        self._refresh_tp()

    def _refresh_tp(self) -> None:
        hw = self._hardware()
        tps = list(hw.models.get(self.controls["model"].value, (1,))) if hw else list(SPEC_TPS)
        ctl = self.controls["tp"]
        keep = ctl.value
        self._refreshing = True
        try:
            ctl.options = _pairs(tps)
            ctl.value = next(t for t in (self.wanted.get("tp"), keep, tps[0]) if t in tps)
        finally:
            self._refreshing = False

    def _on_hardware(self, change: dict) -> None:
        self._refresh_models()
        self._say_substitutes()
        self._show_own_memory()
        hw = self._hardware()
        power = self.controls["power"]
        self._refreshing = True   # not the user's pick: ticked again on hardware that has a power model
        try:
            power.value = bool(hw and hw.power and self.wanted.get("power", power.value))
        finally:
            self._refreshing = False
        self._on_switches()

    def _show_own_memory(self) -> None:
        """Put the memory size and bandwidth of the hardware on show in their controls: what a scenario that
        leaves them at 0 runs with."""
        hw, name = self._hardware(), self.controls["hardware"].value
        if (hw and hw.mem_size) or name in self.specs:
            gib, bw = Scenario(hardware=name).npu_memory(self.reference_dir)
            self.controls["npu_mem_gib"].value, self.controls["npu_mem_bw"].value = gib, bw

    def _on_clamp(self, name: str, note: str) -> None:
        """Name a value typed beyond a control's range (or a fraction for a count), or one it refused, and the one
        used instead, until the control next takes a value it holds (the same one again included) or a run with
        the values shown is on show: the run uses the value shown, which can differ from the one typed a
        hundredfold."""
        if note:
            self.clamped[name] = f"{self._label(name)}: {note}"
        else:
            self.clamped.pop(name, None)
        self.clamp_note.value = ("<span style='color:#b00'><b>Not used as typed:</b> "
                                 f"{html.escape('. '.join(self.clamped.values()))}.</span>" if self.clamped else "")

    def _on_model(self, change: dict) -> None:
        if not self._refreshing and change["new"] is not None:
            self.wanted["model"] = change["new"]
        self._refresh_tp()

    def _on_power(self, change: dict) -> None:
        if not self._refreshing:
            self.wanted["power"] = change["new"]

    def _on_tp(self, change: dict) -> None:
        if not self._refreshing and change["new"] is not None:
            self.wanted["tp"] = change["new"]

    def _say_substitutes(self) -> None:
        """After a hardware change, name the model or TP picked that this hardware does not offer, and what is
        shown instead: the next Run simulates what is shown (it comes back when hardware offering it is picked)."""
        c = self.controls
        swaps = [f"{c[k].description} {self.wanted[k]} (shown: {c[k].value})" for k in ("model", "tp")
                 if k in self.wanted and c[k].value != self.wanted[k]]
        if swaps:
            self.status.value = (f"<span style='color:#b00'>{html.escape(str(c['hardware'].value))} offers no "
                                 f"{html.escape('; no '.join(swaps))}. Press <b>Run</b> to run what is shown.</span>")
        elif " offers no " in self.status.value:   # an earlier hardware's note, no longer true
            self.status.value = READY

    def _on_switches(self, _change: dict | None = None) -> None:
        """Grey out each control that has no effect in the setting on show, its tooltip saying why, and bring it
        back once it has one: what a cluster file or a trace sets instead, and what only matters with another."""
        c = self.controls
        file, trace = c["cluster_config"].value, c["trace"].value
        shown = self.scenario()
        # engine settings every instance of the file sets for itself win over the controls
        set_by_file = shown.set_by_file(self.reference_dir) if file else {}
        inert = shown.inert(self.reference_dir)
        for k, ctl in c.items():
            n, total = set_by_file.get(k, (0, 0))
            why = (f"The cluster file {file} sets it" if file and k in SHAPE_FIELDS else
                   f"The trace {trace} gives the workload" if trace and k in GENERATOR_FIELDS else
                   f"Set per instance by the cluster file ({n} of {total} instances)" if n else
                   inert.get(k, ""))
            ctl.disabled = bool(why) and n == total   # a file that sets it for some instances leaves it the rest
            ctl.tooltip = " ".join(t for t in (why, TOOLTIPS.get(k)) if t) or None

    # ---- actions ---------------------------------------------------------------------------------
    def run(self) -> Results | None:
        """Simulate the scenario on show; errors go to the status line, never up as a traceback. The first Run
        after a scenario the controls could not show (a value beyond a control's range) refuses and says so,
        as a run from code (papermill parameters) would otherwise run other values silently; the next runs
        what the controls show."""
        scen = self.scenario()
        now = scen.to_dict()
        # a control set since the scenario was given is the user's pick: only the ones still as shown then count
        still = ", ".join(f"{k} {v!r} (shown as {was!r})" for k, (v, was) in self.unshown.items() if now[k] == was)
        self.unshown = {}
        if still:
            self.status.value = (f"<span style='color:#b00'><b>Not run:</b> the controls could not show the scenario "
                                 f"given: {html.escape(still)}. Press Run again to run what they show.</span>")
            return None
        t0 = time.perf_counter()
        self.run_button.disabled = True
        self.status.value = "Running..."
        try:
            workload = scen.workload(self.reference_dir)
            self.progress.value, self.progress.max = 0, len(workload)
            step = max(1, len(workload) // 50)   # ~50 bar updates whatever the run's size
            done = [0]

            def tick(n: int) -> None:
                done[0] += n
                if done[0] % step == 0 or done[0] == len(workload):
                    self.progress.value = done[0]
                    # the bar alone gives no count nor time: a long run read as a stuck one
                    self.status.value = (f"Running: {done[0]} of {len(workload)} requests done, "
                                         f"{time.perf_counter() - t0:.0f} s so far...")

            self.result = scen.run(self.reference_dir, tick, workload=workload)
        except LlmssError as exc:
            self.status.value = (f"<span style='color:#b00'><b>Cannot run:</b> {self._controls_of(exc, scen)}"
                                 f"{html.escape(str(exc))}</span>")
            self._mark_stale(scen, "failed")
            return None
        except Exception as exc:   # a bug in the kit: keep the panel alive, log the traceback
            log.exception("simulation failed")
            self.status.value = (f"<span style='color:#b00'><b>Internal error</b> ({type(exc).__name__}: "
                                 f"{html.escape(str(exc))}); please report it with the saved scenario.</span>")
            self._mark_stale(scen, "failed")
            return None
        except KeyboardInterrupt as stop:   # the kernel's interrupt button: say so, and let the interrupt go on
            if isinstance(stop, RunInterrupted) and stop.results is not None:   # the run so far, marked partial
                self.result = stop.results
                self._show(scen, len(workload), t0)
                if not stop.results.attrs.get("interrupted"):   # it came once the run had finished: all of it
                    said = html.escape(str(stop))
                    self.status.value = f"<b>{said[0].upper()}{said[1:]}:</b> " + self.status.value
                    raise
                self.status.value = "<b>Interrupted, the run so far:</b> " + self.status.value
                self.partial = ("<div style='border-left:4px solid #b00;background:#fff4e5;padding:2px 8px'>"
                                f"<b>Partial run:</b> {html.escape(str(stop))}; the table and plots below show "
                                "what ran until then, the table's metrics those of the finished requests.</div>")
                self._note_stale("")
            else:
                self.status.value = "Interrupted: the plots still show the previous run."
                self._mark_stale(scen, "was interrupted")
            raise
        finally:
            self.run_button.disabled = False
        return self._show(scen, len(workload), t0)

    def _show(self, scen: Scenario, n: int, t0: float) -> Results:
        """Put the run just made, of ``n`` requests, on show: table, plots and the status line."""
        self.scenario_shown, self.shown_at = scen, time.strftime("%H:%M:%S")
        self.stale.value, self.partial, self.tried = "", "", None
        self.clamped.clear()   # the notes told what this run would use instead of what was typed: it has run
        self.clamp_note.value = ""
        self._render()
        self.last_wall_s = time.perf_counter() - t0
        a = self.result.attrs
        self.status.value = (f"{html.escape(str(a.get('model', scen.model)))} on {html.escape(str(a.get('hardware', '')))}: "
                             f"{n} requests{self._trace_note(scen, n)}, {a['num_steps']} steps, "
                             f"{a['simulated_s']:.1f} s simulated "
                             f"in {a['sim_wall_s']:.2f} s (panel {self.last_wall_s:.2f} s); latencies from "
                             f"{html.escape(_latency_label(a))}{self._file_note(scen)}{self._ep_note(scen, a)}")
        self.keep_button.disabled = False
        self.save_results_button.disabled = False
        return self.result

    @staticmethod
    def _ep_note(scen: Scenario, attrs: dict) -> str:
        """The EP that ran, when it is not the one shown: a mixture-of-experts model's experts are spread over its
        TP ranks (EP = TP, as LLMServingSim's configs default), so EP 1 at TP 2 runs EP 2."""
        ep = attrs.get("ep_size")
        if scen.cluster_config or ep is None or int(ep) == scen.ep:
            return ""
        return (f"; <b>ran EP {int(ep)}</b>: the experts are spread over the TP ranks (EP = TP) unless EP is set "
                f"wider with DP")

    @staticmethod
    def _trace_note(scen: Scenario, n: int) -> str:
        """Say when a trace ran cut short, as the requests control's default (100) cuts most traces."""
        return f" (the trace capped at {n}; 0 requests runs it whole)" if scen.trace and n == scen.num_requests else ""

    def _file_note(self, scen: Scenario) -> str:
        """Which engine controls the chosen cluster file overrides for some of its instances (those it sets
        for all are greyed out), so a change to one is not read as a change to every instance."""
        part = {k: v for k, v in scen.set_by_file(self.reference_dir).items() if v[0] < v[1]}
        if not part:
            return ""
        said = ", ".join(f"{html.escape(self._label(k))} ({n} of {total})" for k, (n, total) in part.items())
        return f". The cluster file sets its own value for some instances: {said}; the controls set the others"

    def _label(self, name: str) -> str:
        """A control's label as the user sees it (not the Scenario field name)."""
        return self.controls[name].description

    def _controls_of(self, exc: Exception, scen: Scenario) -> str:
        """The controls (label and tab) behind the key an error names, as HTML, since a user sees sliders,
        not the config they build; "" for a key no control sets, or one a chosen cluster file sets instead."""
        if not isinstance(exc, InputError):
            return ""
        named = tuple((exc.where or "").split(", "))      # Scenario.run names a built key's fields so
        if all(f in self.controls for f in named):
            names: tuple[str, ...] = named + tuple(r for n in named for r in RELATED.get(n, ()) if r not in named)
        else:                  # a key of the chosen cluster file names no control: the file set it
            names = KEY_CONTROLS.get(exc.where or "", ()) or self._file_controls(exc.source, scen)
        names = tuple(n for n in names if not (scen.cluster_config and n in SHAPE_FIELDS))
        if not names:
            return ""
        shown = ", ".join(f"<b>{html.escape(self._label(n))}</b> ({html.escape(TAB_OF[n])} tab)" for n in names)
        return f"check {shown}. "

    def _file_controls(self, source: str | None, scen: Scenario) -> tuple[str, ...]:
        """The control (cluster config, trace) whose file an error names: an error in a file names the file and
        its line or key, which a user of the panel has to match to a control."""
        if not source:
            return ()
        files = {"cluster_config": self.catalog.cluster_configs, "trace": self.catalog.traces}
        at = os.path.abspath(source)
        return tuple(k for k, table in files.items() if (name := getattr(scen, k).strip()) and at in {
            os.path.abspath(p) for p in (name, table.get(name, name), self.catalog.root / name)})

    @property
    def status_text(self) -> str:
        """The status line as plain text, for code that runs the panel (a notebook cell, a script)."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value)).strip()

    def _mark_stale(self, tried: Scenario, how: str) -> None:
        """After a failed or interrupted run, say that the table and plots are the last successful run's,
        so they are not read as the answer to the settings just tried."""
        if self.result is None or self.scenario_shown is None:
            return
        self.tried = tried, how
        self._note_stale("<div style='border-left:4px solid #b00;background:#fff4e5;padding:2px 8px'>"
                         "<b>Not these settings:</b> the table and plots below are from the last successful run, "
                         f"at {self.shown_at}, with {html.escape(self._changed(tried))}.</div>")

    def _note_stale(self, note: str) -> None:
        """Show ``note`` (HTML; "" for none) on how the run on show differs from the controls, under the partial
        run's note when the run on show was interrupted: an edit or a failed run since leaves it partial."""
        self.stale.value = self.partial + note

    def _changed(self, tried: Scenario, word: str = "tried") -> str:
        """How the settings tried differ from those of the run on show, by control label."""
        a, b = self.scenario_shown.to_dict(), tried.to_dict()
        diff = ", ".join(f"{self._label(k)} {a[k]!r} ({word} {b[k]!r})" for k in a if a[k] != b[k])
        return diff or "the same settings"

    def _note_edits(self) -> None:
        """While the controls no longer describe the run on show, say so: its table and plots are not the answer
        to the settings now shown (they were read as such). A failed run's note stays until a run succeeds."""
        if self.scenario_shown is None or self.tried is not None:
            return
        now = self.scenario()
        self._note_stale("" if now == self.scenario_shown else (
            "<div style='border-left:4px solid #c80;background:#fffbe6;padding:2px 8px'><b>Changed since the run "
            f"below</b> (at {self.shown_at}): {html.escape(self._changed(now, 'now'))}. Press <b>Run</b> to see "
            "these settings.</div>"))

    def _render(self) -> None:
        """The table, and the plots of the open tab only: a browser takes ~0.1 s to draw each Bokeh figure,
        hidden or not, and the three tabs hold nine."""
        self.names = self._names()
        self.summary.value = (self._differences() + self._uncompared()
                              + views.summary_table(self.result, self._compared(), *self.names))
        self.figures = {}
        for box in self.plots.children:
            for old in box.children:
                # the earlier run's plot, in this kernel and in the browser; the base close, as jupyter_bokeh's
                # unhooks the Bokeh document and raises KeyError when __del__ closes it a second time. It leaves
                # the plot's Layout open (one widget per plot built): that goes too
                w.Widget.close(old)
                old.layout.close()
            box.children = ()
        self.plots.layout.display = None
        self._show_panel()

    def _show_panel(self) -> None:
        """Build the open plot tab's Bokeh views, unless they are built already."""
        from jupyter_bokeh.widgets import BokehModel   # imports Bokeh's Jupyter glue: only once there is a result
        i = self.plots.selected_index
        if self.result is None or i is None:
            return
        title = list(views.PANELS)[i]
        if title not in self.figures:
            self.figures[title] = _fit_width(views.PANELS[title](self.result, self._compared(), None, *self.names))
            self.plots.children[i].children = (BokehModel(self.figures[title], layout=w.Layout(width="100%")),)

    def _names(self) -> tuple[str, str]:
        """The names of the run and its baseline in the table and plots: "run" and "baseline", each with its value
        of the settings that differ and that both runs used (a setting neither used, as a cluster file set it, would
        name a difference the plots do not show; the cluster file that sets it is named instead). A run alone is
        plain "run": the status line above names its model and hardware, which its plots' titles would repeat."""
        if self._compared() is None:
            return views.labels_of([])
        a, b = self.scenario_shown.to_dict(), self.baseline_scenario.to_dict()
        now, then = self.scenario_shown.ignored(self.reference_dir), self.baseline_scenario.ignored(self.reference_dir)
        return views.labels_of([(k, a[k], b[k]) for k in a if a[k] != b[k] and k not in now and k not in then])

    def _differences(self) -> str:
        """What the run changed against its baseline, so a comparison says what it compares."""
        if self._compared() is None:
            return ""
        a, b = self.scenario_shown.to_dict(), self.baseline_scenario.to_dict()
        now, then = self.scenario_shown.ignored(self.reference_dir), self.baseline_scenario.ignored(self.reference_dir)
        changed = [k for k in a if a[k] != b[k]]
        idle = [k for k in changed if k in now and k in then]   # e.g. an engine control a cluster file overrides
        # a side that ignored a setting says what set it instead (a cluster file, a trace), not the control's value
        diff = [f"{k} {a[k]!r} (baseline: {then[k]})" if k in then else f"{k} {a[k]!r} (baseline {b[k]!r})"
                for k in changed if k not in idle and k not in now]
        by_cause: dict[str, list[str]] = {}
        for k in changed:
            if k in now and k not in idle:
                by_cause.setdefault(now[k], []).append(f"{k} (baseline {b[k]!r})")
        diff += [f"{cause} in this run: {', '.join(ks)}" for cause, ks in by_cause.items()]
        out = f"<p>Run vs baseline: {html.escape(', '.join(diff) or 'same scenario')}"
        if idle:   # say so, or the comparison reads as the effect of a change neither run saw
            out += html.escape("; changed but used by neither run: "
                               + ", ".join(f"{k} {a[k]!r} (baseline {b[k]!r}; {now[k]})" for k in idle))
        out += "</p>"
        kinds = {_latency_label(r.attrs).split(" ")[0] for r in (self.result, self.baseline) if r is not None}
        if len(kinds) > 1:
            out += ("<p><b>Note:</b> one run used a measured profile and the other the analytical model, so the "
                    "difference mixes the change with the model's error; set the latency model to analytical for "
                    "both to see a what-if alone.</p>")
        return out

    def _compared(self) -> Results | None:
        """The baseline the table and plots compare the run with: none while the run has the baseline's settings
        (the run kept, or run again: the seeded simulation repeats it), whose table would show 0 % everywhere."""
        if self.baseline is None or self.scenario_shown is None or self.baseline_scenario == self.scenario_shown:
            return None
        return self.baseline

    def _uncompared(self) -> str:
        """Why a kept baseline is not in the table: the run on show has its settings."""
        if self.baseline is None or self._compared() is not None:
            return ""
        return (f"<p><b>Baseline kept</b> (the run of {self.baseline_at}); this run has the same settings, so there "
                "is nothing to compare yet: change a control and press <b>Run</b> to compare against it.</p>")

    def keep_baseline(self) -> None:
        """Keep the current result to compare the next runs against."""
        if self.result is None:
            return
        self.baseline, self.baseline_scenario, self.baseline_at = self.result, self.scenario_shown, self.shown_at
        self.clear_button.disabled = False
        self.status.value = f"Kept the run of {self.shown_at} as the baseline."
        self._render()

    def clear_baseline(self) -> None:
        self.baseline = self.baseline_scenario = None
        self.clear_button.disabled = True
        self.status.value = "Cleared the baseline."   # not "Kept ... as the baseline" still
        if self.result is not None:
            self._render()

    def save_results(self) -> Path | None:
        """Write the run on show. After a failed or interrupted run that is the previous successful one: the
        status line says so, or the file would be taken for the settings just tried."""
        out = self._save(lambda p: self.result.save(p), self.results_path.value, "results")
        if out is not None and self.tried is not None:
            tried, how = self.tried
            self.status.value = (f"<span style='color:#b00'><b>The last run {how}:</b> saved the previous successful "
                                 f"run, of {self.shown_at} ({html.escape(self._changed(tried))}), to "
                                 f"<code>{html.escape(str(out))}</code>.</span>")
        return out

    def save_scenario(self) -> Path | None:
        def write(p: Path) -> Path:
            scen = self.scenario()
            scen.validate("the controls")   # never write a file that Scenario.load would refuse
            return scen.save(p)
        return self._save(write, self.scenario_path.value, "scenario")

    def load_scenario(self) -> Scenario | None:
        """Show the scenario saved in the scenario file in the controls (press Run to run it); a file that
        cannot be read, or a scenario of wrong kinds, is named in the status line and the controls are left."""
        path = self.scenario_path.value
        try:
            if not path.strip() or "\0" in path:
                raise InputError("give a file name", repr(path), "scenario file")
            scen = Scenario.load(Path(path).expanduser())
            self.set_scenario(scen)
            self.loaded = self.scenario().named(scen.source)   # with the hardware's memory where the file says 0
        except (LlmssError, OSError, ValueError, RuntimeError) as exc:
            self.status.value = (f"<span style='color:#b00'><b>Cannot load scenario:</b> "
                                 f"{html.escape(str(exc))}</span>")
            return None
        if self.status.value == READY:   # set_scenario names what the controls could not show instead
            self.status.value = (f"Loaded the scenario of <code>{html.escape(path)}</code>: press <b>Run</b> to "
                                 "run it.")
        return scen

    def _save(self, write, path: str, what: str) -> Path | None:
        if what == "results" and self.result is None:
            self.status.value = "Nothing to save yet: press <b>Run</b> first."
            return None
        try:
            if not path.strip() or "\0" in path:
                raise InputError("give a file name", repr(path), f"{what} file")
            try:
                target = Path(path).expanduser()
            except RuntimeError:   # "~name" of a user that does not exist
                raise InputError("no home folder for that user", path, f"{what} file") from None
            if target.is_dir() or not target.name or target.name in (".", ".."):
                raise InputError("is a folder; give a file name", target, f"{what} file")
            refuse_in_reference(target, protected_root(self.reference_dir), f"{what} file")   # the root it reads
            for scen in {self.scenario(), self.scenario_shown} - {None}:   # the next run's inputs, and the shown's
                scen.refuse_to_replace_an_input(target, f"{what} file", self.reference_dir, "the controls", what)
            out = write(target)
        except (LlmssError, OSError, ValueError) as exc:
            if isinstance(exc, OSError):   # a full disk, a read-only place: the system's words, with the file
                exc = InputError(f"cannot write ({exc.strerror or exc})", exc.filename or path, f"{what} file")
            self.status.value = (f"<span style='color:#b00'><b>Cannot save {what}:</b> "
                                 f"{self._controls_of(exc, self.scenario())}{html.escape(str(exc))}</span>")
            return None
        self.status.value = f"Saved the {what} to <code>{html.escape(str(out))}</code>."
        return out

    def _ipython_display_(self) -> None:
        from IPython.display import display
        load_bokeh()
        display(self.view)


class _InRange:
    """A number box whose range is kept in the kernel: ipywidgets' bounded boxes clamp in the page too, so the
    kernel never learns that -2 was typed and cannot say it ran as 0.01. A value beyond the range is brought
    within it, and ``on_clamp`` is told what was typed and what is used ("" for a value within range)."""

    whole = False   # whether the value is a count: a fraction typed is rounded, and said

    def __init__(self, low: float, high: float, on_clamp: Callable[[str], None], **kwargs: Any):
        self.low, self.high, self.on_clamp = low, high, on_clamp
        super().__init__(**kwargs)

    @validate("value")
    def _clamp(self, proposal: dict) -> float:
        typed = v = proposal["value"]
        if self.whole and math.isnan(v):
            raise TraitError(f"{self.description}: expected a whole number, got nan")
        if v < self.low:
            side, v = f"{v:.12g} is below the lowest", self.low
        elif v > self.high:
            side, v = f"{v:.12g} is above the highest", self.high
        else:   # within range (or NaN, which the run names)
            side = ""
        note = side and f"{side} allowed {v:.12g}; using {v:.12g}"
        if self.whole:
            v = round(v)
            if not side and v != typed:
                note = f"{typed:.12g} is not a whole number; using {v}"
        self.on_clamp(note)
        return v


KEPT = "is not a value it takes"   # in the note on a value a control refused


class _Refusing:
    """A control that keeps its value when code gives it one it cannot hold (a text in a number box, a choice
    it does not offer, None) and names it through ``on_refused``, as a value beyond a box's range is named:
    the explorer's note under the status line, not a TraitError in the notebook."""

    on_refused: Callable[[str], None] | None = None
    on_held: Callable[[], None] | None = None   # told of each value it takes (traitlets tells only of changes)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "value" or self.on_refused is None:
            return super().__setattr__(name, value)
        try:
            if value is None and getattr(self, "options", None):   # a Dropdown takes None as "nothing picked"
                raise TraitError("expected one of its choices")
            super().__setattr__(name, value)
        except TraitError as exc:
            self._refused(value, exc)
            return
        if self.on_held is not None:
            self.on_held()

    def set_state(self, sync_data: dict) -> None:
        """The same for a value from the page (an emptied box sends None), which would otherwise end in a
        traceback in the kernel's log; the page is told the value kept."""
        try:
            super().set_state(sync_data)
        except TraitError as exc:
            if self.on_refused is None:
                raise
            self._refused(sync_data.get("value", sync_data.get("index")), exc)
            self.send_state()
            return
        if self.on_held is not None and ("value" in sync_data or "index" in sync_data):
            self.on_held()

    def _refused(self, value: Any, exc: TraitError) -> None:
        text = str(exc).splitlines()[0]
        why = (re.sub(r"^.*?(expected [^,.]*).*$", r"\1", text) if "expected" in text else
               "not one of its choices" if "Invalid selection" in text else text)
        self.on_refused(f"{value!r} {KEPT} ({why}); still {self.value!r}")


class _Dropdown(_Refusing, w.Dropdown):
    pass


class _Combobox(_Refusing, w.Combobox):
    pass


class _Checkbox(_Refusing, w.Checkbox):
    pass


class _Text(_Refusing, w.Text):
    pass


class _IntBox(_Refusing, _InRange, w.FloatText):
    """A count, in ipywidgets' float box: its int box drops "." and "e" as they are typed, so 1e3 ran as 13
    and 2.5 as 25 with no word. Here 1e3 is 1000 and 2.5 is rounded to 2, and said."""

    whole = True
    value = Union([Int(), Float()], default_value=0).tag(sync=True)   # a fraction typed reaches the rounding


class _FloatBox(_Refusing, _InRange, w.FloatText):
    pass


def _fit_width(layout):
    """A plot tab's views as wide as the panel, heights kept: at the views' own 900 px they ran past a notebook
    column of JupyterLab beside its file browser (a 1280 px window), which cut off the legends on the right
    (``generat``, ``NPU KV ca``) and half of the right-hand CDFs behind a scroll bar."""
    from bokeh.models import LayoutDOM
    for part in layout.select({"type": LayoutDOM}):
        part.sizing_mode = "stretch_width"
    return layout


def _latency_label(attrs: dict) -> str:
    """``profile`` or ``analytical``, with the what-if if any (from a result's attrs)."""
    kind = str(attrs.get("latency_source", "profile:")).split(":", 1)[0]
    wi = attrs.get("what_if", "")
    return f"{kind} ({wi})" if wi else kind


def _model_configs(root: Path) -> list[str]:
    """Every model with a Hugging Face config under the reference root (``org/name``)."""
    names = set()
    for base in (root / "configs" / "model", root / "model_config"):
        names |= {str(p.relative_to(base).with_suffix("")) for p in base.glob("*/*.json")}
    return sorted(names)


def _pairs(options: list) -> list[tuple[str, Any]]:
    """Dropdown options as (label, value) pairs: ipywidgets reads a mixed list as values only."""
    return [o if isinstance(o, tuple) else (str(o), o) for o in options]


# BokehJS as the kit's views need it: the core, widgets (Div) and tables. Math text (1.8 MB) and WebGL are left
# out, which keeps a saved notebook 2 MB smaller.
_KIT_JS = Resources(mode="inline", components=["bokeh", "bokeh-widgets", "bokeh-tables"])
_REST_JS = Resources(mode="inline", components=[c for c in INLINE.components_for("js") if c not in _KIT_JS.components])
_BOKEH_PAGES: dict[str, bool] = {}   # client sessions (pages) sent BokehJS -> whether all of it


def _page() -> str:
    """The client session of the running cell: a reloaded page or a second tab has a new one, and
    has lost the BokehJS an earlier page was sent (the kernel cannot see the page otherwise)."""
    try:
        from IPython import get_ipython
        return str(get_ipython().kernel.get_parent()["header"]["session"])
    except (AttributeError, KeyError, TypeError):   # not in a kernel (a script, a test)
        return ""


def show(obj) -> None:
    """Display a Bokeh figure or layout in a notebook as a static embed (BokehJS inline), so a saved
    notebook, and its HTML export, show it offline without a kernel (a widget needs one)."""
    from bokeh.embed import components
    from IPython.display import HTML, display
    load_bokeh(obj)
    script, div = components(obj)
    display(HTML(div + script))


def _needs_all_js(obj) -> bool:
    """Whether a Bokeh object uses parts of BokehJS the kit's views do not (math text, WebGL)."""
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    return not set(bundle_for_objs_and_resources([obj], INLINE).js_raw) <= set(_KIT_JS.js_raw)


def _send_bokehjs(resources: Resources) -> None:
    """Send BokehJS to the page as application/javascript only. bokeh's output_notebook sends the same code
    under two MIME types (one for the classic notebook and nbconvert, one for jupyter_bokeh's renderer in
    JupyterLab), and a saved notebook keeps both: figure_05.ipynb held 2 x 1.95 MB. JupyterLab runs this one
    as it is (a trusted output), and nbconvert's HTML carries it."""
    from bokeh.core.templates import AUTOLOAD_NB_JS
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.io.state import curstate
    from IPython.display import publish_display_data

    curstate().output_notebook()   # as output_notebook does: a user's bokeh.io.show() then draws in the notebook
    js = AUTOLOAD_NB_JS.render(bundle=bundle_for_objs_and_resources(None, resources), elementid=None, force=True,
                               timeout=5000, register_mime=True)
    publish_display_data({"application/javascript": js})


def load_bokeh(obj=None) -> None:
    """Load BokehJS inline (works offline) before the first Bokeh widget a page shows; once per page,
    so a page reloaded on a running kernel gets it again. A user's figure with math text or WebGL
    (``obj``) gets the whole of BokehJS."""
    page = _page()
    full = obj is not None and _needs_all_js(obj)
    if page not in _BOKEH_PAGES:
        _send_bokehjs(INLINE if full else _KIT_JS)
    elif full and not _BOKEH_PAGES[page]:   # the rest only: BokehJS's core cannot be loaded twice on a page
        _send_bokehjs(_REST_JS)
    else:
        return
    _BOKEH_PAGES[page] = full
