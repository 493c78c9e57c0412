"""Several runs side by side as one pandas table (rows: runs, columns: summary metrics)."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .dataset import Results

DEFAULT_KEYS = ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "output_throughput", "preemptions",
                "prefix_hit_tokens")


def compare(runs: Mapping[str, Results], keys: Sequence[str] = DEFAULT_KEYS) -> pd.DataFrame:
    """One row per named run; a metric a run lacks (energy without a power model) is NaN."""
    summaries = {name: r.summary() for name, r in runs.items()}
    rows = {name: {k: s.get(k, float("nan")) for k in keys} for name, s in summaries.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[list(keys)]
