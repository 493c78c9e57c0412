"""Bokeh views of simulation results: pure functions from Results to figures (see :mod:`.plots`)."""
from .plots import (batch_timeline, dashboard, expert_load, latency_cdf, latency_cdfs, memory, power, request_lifelines,
                    summary_table, throughput, time_range)

__all__ = ["batch_timeline", "dashboard", "expert_load", "latency_cdf", "latency_cdfs", "memory", "power", "request_lifelines",
           "summary_table", "throughput", "time_range"]
