"""How fast this machine runs plain Python right now, so wall times from different days compare.

These machines are shared and their speed drifts (on 2026-11-23 the same simulation took 0.24-0.45 s
from one run to the next). Every benchmark prints this first.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def reference_loop_s(repeat: int = 3) -> float:
    """Fastest of ``repeat`` timings of 10^7 integer additions in a Python loop."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best


def banner() -> str:
    return f"machine: 10^7 Python additions take {reference_loop_s():.2f} s (lower is faster)"


def default_reference_dir() -> str:
    """$LLMSS_REFERENCE_DIR, else ../shared/reference/llmservingsim beside the checkout (as the tests find it)."""
    here = Path(__file__).resolve().parent.parent
    return os.environ.get("LLMSS_REFERENCE_DIR", str(here.parent / "shared/reference/llmservingsim"))
