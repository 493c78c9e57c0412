"""Several runs side by side: as one pandas table (rows: runs, columns: summary metrics), and the rows
that the explorer's summary table and ``llmss summary A.nc B.nc`` show."""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

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


# the attrs that say how a run was set up (the engine's settings come from engine_json)
SETUP_ATTRS = ("cluster", "workload", "latency_model", "what_if", "model", "hardware", "tp_size", "pp_size", "ep_size",
               "num_instances", "router", "kv_transfer", "expert_gate", "seed", "prefix_storage", "prefix_sharing",
               "attn_offload", "sub_batch_interleaving")


def recorded_settings(attrs: Mapping) -> dict[str, Any]:
    """The setup a run's attrs record: :data:`SETUP_ATTRS` and the engine's settings."""
    try:
        engine = json.loads(attrs.get("engine_json", "{}"))
    except ValueError:
        engine = {}
    return {**{k: attrs.get(k) for k in SETUP_ATTRS}, **(engine if isinstance(engine, dict) else {})}


def settings_changed(a: Mapping, b: Mapping) -> list[tuple[str, Any, Any]]:
    """``(key, a's value, b's value)`` for each recorded setting in which run ``b`` differs from run ``a``."""
    sa, sb = recorded_settings(a), recorded_settings(b)
    return [(k, sa.get(k), sb.get(k)) for k in dict.fromkeys([*sa, *sb]) if str(sa.get(k)) != str(sb.get(k))]
