"""Several runs side by side: as one pandas table (rows: runs, columns: summary metrics), and the rows
that the explorer's summary table and ``llmss summary A.nc B.nc`` show."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from .dataset import Results

# (summary key, label, format): the metrics shown side by side, in order
SUMMARY_ROWS = (("completed", "requests completed", "{:.0f}"), ("duration_s", "duration (s)", "{:.2f}"),
                ("output_throughput", "output tokens/s", "{:.1f}"), ("request_throughput", "requests/s", "{:.2f}"),
                ("mean_ttft_ms", "mean TTFT (ms)", "{:.1f}"), ("p99_ttft_ms", "p99 TTFT (ms)", "{:.1f}"),
                ("mean_tpot_ms", "mean TPOT (ms)", "{:.2f}"), ("p99_tpot_ms", "p99 TPOT (ms)", "{:.2f}"),
                ("p99_itl_ms", "p99 ITL (ms)", "{:.2f}"), ("mean_e2el_ms", "mean E2E (ms)", "{:.0f}"),
                ("preemptions", "preemptions", "{:.0f}"), ("prefix_hit_tokens", "prefix-hit tokens", "{:.0f}"),
                ("energy_per_output_token_J", "J per output token", "{:.4f}"))

# why a summary metric has no value (NaN), where "n/a" stands for it
UNDEFINED = dict.fromkeys(("mean_tpot_ms", "p99_tpot_ms", "p99_itl_ms"), "needs requests with two or more output tokens")


def known(v) -> bool:
    """A value to show (not missing, not NaN)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def change_pct(v, base) -> float | None:
    """The relative change of ``v`` from ``base`` in %, or None where it is not defined."""
    return (v - base) / base * 100 if known(v) and known(base) and base else None


DEFAULT_KEYS = ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "output_throughput", "preemptions",
                "prefix_hit_tokens")


def compare(runs: Mapping[str, Results], keys: Sequence[str] = DEFAULT_KEYS) -> pd.DataFrame:
    """One row per named run; a metric a run lacks (energy without a power model) is NaN."""
    summaries = {name: r.summary() for name, r in runs.items()}
    rows = {name: {k: s.get(k, float("nan")) for k in keys} for name, s in summaries.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[list(keys)]
