"""Bokeh views of simulation results: pure functions from Results to figures (see :mod:`.plots`)."""
from .plots import (PANELS, batch_timeline, dashboard, expert_load, experts, labels_of, latency_cdf, latency_cdfs,
                    memory, pair_title, power, request_lifelines, run_labels, run_title, series, summary_table, throughput,
                    time_range, timeline)

__all__ = ["PANELS", "batch_timeline", "dashboard", "expert_load", "experts", "labels_of", "latency_cdf",
           "latency_cdfs", "memory", "pair_title", "power", "request_lifelines", "run_labels", "run_title", "series",
           "summary_table", "throughput", "time_range", "timeline"]
