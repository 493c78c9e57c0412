"""Latency metrics as vLLM's benchmark defines them.

Per request: TTFT = first token - arrival; TPOT = (last token - first token) / (output tokens - 1)
for requests with more than one output token; E2EL = last token - arrival; ITL = every gap between
consecutive tokens of a request (pooled over all requests). Percentiles interpolate linearly
between order statistics (numpy's default, as the benchmark uses).
"""
from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STATS = ("mean", "median", "p90", "p95", "p99")


def tpot_ms(first_s: np.ndarray, last_s: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    out = np.full(len(first_s), np.nan)
    ok = output_tokens > 1
    out[ok] = (last_s[ok] - first_s[ok]) / (output_tokens[ok] - 1) * 1e3
    return out


def describe(values_ms: np.ndarray) -> dict[str, float]:
    """mean, median, p90, p95, p99 of finite values (NaN when there are none)."""
    v = np.asarray(values_ms, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {s: float("nan") for s in STATS}
    p = np.percentile(v, PERCENTILES)
    return {"mean": float(v.mean()), "median": float(p[0]), "p90": float(p[1]),
            "p95": float(p[2]), "p99": float(p[3])}


def latency_summary(ttft_ms: np.ndarray, tpot: np.ndarray, itl_ms: np.ndarray, e2el_ms: np.ndarray) -> dict[str, float]:
    """Flat dict in vLLM bench names: ``mean_ttft_ms``, ``p99_itl_ms``, ..."""
    out: dict[str, float] = {}
    for metric, values in (("ttft", ttft_ms), ("tpot", tpot), ("itl", itl_ms), ("e2el", e2el_ms)):
        for stat, v in describe(values).items():
            out[f"{stat}_{metric}_ms"] = v
    return out


def diff_pct(sim: float, real: float) -> float:
    return (sim - real) / real * 100.0 if real else float("nan")
