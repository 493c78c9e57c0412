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


def describe(values_ms: np.ndarray, counts: np.ndarray | None = None) -> dict[str, float]:
    """mean, median, p90, p95, p99 of finite values (NaN when there are none); ``counts`` says how
    often each value occurs (the inter-token gaps come folded that way)."""
    v = np.asarray(values_ms, dtype=float)
    ok = np.isfinite(v)
    if counts is not None:
        c = np.asarray(counts, dtype=np.int64)
        ok &= c > 0
        v, c = v[ok], c[ok]
        if not len(v):
            return {s: float("nan") for s in STATS}
        mean, p = float(np.dot(v, c) / c.sum()), repeated_percentiles(v, c, PERCENTILES)
    else:
        v = v[ok]
        if not len(v):
            return {s: float("nan") for s in STATS}
        mean, p = float(v.mean()), np.percentile(v, PERCENTILES)
    return {"mean": mean, "median": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3])}


def repeated_percentiles(values: np.ndarray, counts: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(np.repeat(values, counts), q)`` without building the repeated array: the same
    order statistics and the same linear interpolation between them."""
    order = np.argsort(values, kind="stable")
    v, ends = values[order], np.cumsum(counts[order])    # copies of v[i] end before index ends[i]
    rank = np.asarray(q, dtype=float) / 100 * (ends[-1] - 1)
    lo = np.floor(rank)
    a = v[np.searchsorted(ends, lo, side="right")]
    b = v[np.searchsorted(ends, np.minimum(lo + 1, ends[-1] - 1), side="right")]
    t = rank - lo
    # numpy's lerp, which counts back from b past the midpoint
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)


def latency_summary(ttft_ms: np.ndarray, tpot: np.ndarray, itl_ms: np.ndarray, e2el_ms: np.ndarray,
                    itl_count: np.ndarray | None = None) -> dict[str, float]:
    """Flat dict in vLLM bench names: ``mean_ttft_ms``, ``p99_itl_ms``, ...; ``itl_count`` is how
    many token gaps had each ``itl_ms`` value (all one when not given)."""
    out: dict[str, float] = {}
    for metric, values, counts in (("ttft", ttft_ms, None), ("tpot", tpot, None), ("itl", itl_ms, itl_count),
                                   ("e2el", e2el_ms, None)):
        for stat, v in describe(values, counts).items():
            out[f"{stat}_{metric}_ms"] = v
    return out


def diff_pct(sim: float, real: float) -> float:
    return (sim - real) / real * 100.0 if real else float("nan")
