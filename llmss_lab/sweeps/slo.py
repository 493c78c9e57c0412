"""The service-level objective of a sweep or a capacity search, and whether a run meets it (also while it runs)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config.reader import is_real, store_plain
from ..errors import InputError


@dataclass(frozen=True)
class SLO:
    """A service-level objective: the ``quantile`` of TTFT and of TPOT must stay within the limits
    (None: no limit on that metric), and every request must finish."""
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    quantile: float = 0.9

    def __post_init__(self) -> None:
        if self.ttft_ms is None and self.tpot_ms is None:
            raise InputError("an SLO needs a TTFT or a TPOT limit", "slo")
        store_plain(self)
        for key in ("ttft_ms", "tpot_ms"):
            v = getattr(self, key)
            if v is not None and not (is_real(v) and v > 0):
                raise InputError(f"must be a positive number of ms, got {v!r}", "slo", key)
        if not (is_real(self.quantile) and 0 < self.quantile <= 1):
            raise InputError(f"must be in (0, 1], got {self.quantile!r}", "slo", "quantile")

    def evaluate(self, ttft_ms: np.ndarray, tpot_ms: np.ndarray, duration_s: float, expected: int) -> dict[str, float]:
        """Goodput (requests meeting both limits per second of the run), the quantiles and whether the run meets the SLO."""
        ok = np.ones(len(ttft_ms), bool)
        out: dict[str, float] = {}
        met = len(ttft_ms) == expected
        for name, values, limit in (("ttft", ttft_ms, self.ttft_ms), ("tpot", tpot_ms, self.tpot_ms)):
            if limit is None:
                continue
            v = np.nan_to_num(values, nan=0.0)      # one-token outputs have no TPOT: no limit to break
            q = float(np.quantile(v, self.quantile)) if len(v) else math.inf
            out[f"slo_{name}_ms"] = q
            met = met and q <= limit
            ok &= v <= limit
        out["goodput"] = float(ok.sum() / duration_s) if duration_s > 0 else 0.0
        out["slo_met"] = float(met)
        return out

    def tail(self, n: int) -> int:
        """Requests above the quantile of ``n`` (numpy's linear quantile lies between the order statistics
        ``floor((n - 1) q)`` and the next, from 0): the verdict turns on whether that many, or one more, are over a
        limit. With few (p90 of 16: 2) one request decides it, and verdicts flip between nearby rates."""
        return n - 1 - math.floor((n - 1) * self.quantile + 1e-9)

    def lost(self, requests: Any, now_ns: float) -> bool:
        """Whether a run is already certain to miss the SLO at ``now_ns``, whatever its later steps do: enough of
        its requests have a TTFT or TPOT over the limit, or will have, to put the quantile over it.

        ``requests`` is the kernel's request table (times in ns, -1 where not yet). A first token still to come
        comes at ``now_ns`` or later, and so does the last token of an unfinished request; each request's TTFT
        and TPOT are computed as the results compute them, with those times in place of the ones to come, so
        that each is at most the value the finished run would give (each float operation is monotone).
        :meth:`evaluate` takes numpy's linear quantile of the n values, which is at least their order statistic
        ``floor((n - 1) q)`` (from 0): once ``n - floor((n - 1) q)`` values are over the limit, so are that
        statistic and the quantile. The margin keeps the index at or below numpy's, however it rounds ``(n-1) q``.
        """
        R = requests
        n = len(R.arrival)
        need = n - max(0, math.floor((n - 1) * self.quantile - 1e-9))
        s = 1e-9
        started = R.first_token >= 0
        if self.ttft_ms is not None:
            first = np.where(started, R.first_token, now_ns)
            ttft = (first * s - R.arrival * s) * 1e3
            if np.count_nonzero(ttft > self.ttft_ms) >= need:
                return True
        if self.tpot_ms is not None:
            timed = started & (R.output > 1)   # one-token outputs have no TPOT (evaluate counts them as 0)
            last = np.where(R.finished >= 0, R.finished, now_ns)[timed]
            tpot = (last * s - R.first_token[timed] * s) / (R.output[timed] - 1) * 1e3
            if np.count_nonzero(tpot > self.tpot_ms) >= need:
                return True
        return False

    def won(self, requests: Any, now_ns: float, expected: int | None = None) -> bool:
        """Whether a run is already certain to meet the SLO, whatever its later steps do: enough of its requests
        have a TTFT and a TPOT within the limits for good to hold every quantile the limits apply to.

        A TTFT is final once the first token is out, a TPOT once the last one is (computed as the results compute
        them, so each is the very value :meth:`evaluate` sees); one-token outputs count as a TPOT of 0 from the
        start, as there. Any other value can still grow without bound, so it is taken as over the limit. numpy's
        linear quantile of n values lies between its order statistics ``floor(h)`` and ``floor(h) + 1`` (from 0,
        h = (n - 1) q) and never above the larger (its rounding included): once ``floor(h) + 2`` final values are
        within the limit, so are both statistics and the quantile. That makes this exact for a quantile, which is
        all an SLO limits; a mean could not be decided before the last request, as one request still to come can
        move it anywhere. It also needs every one of the ``expected`` requests to finish, which a run that ends
        does (the kernel raises otherwise, the 100-day horizon the one way): the verdict is that of the whole run.
        ``expected``: the requests the scenario asked for (None: as many as the run has).
        """
        R = requests
        n = len(R.arrival)
        if expected is not None and n != expected:
            return False
        need = min(n, math.floor((n - 1) * self.quantile + 1e-9) + 2)   # the margin: however numpy rounds h
        s = 1e-9
        if self.ttft_ms is not None:
            first = R.first_token[R.first_token >= 0]
            arrival = R.arrival[R.first_token >= 0]
            if np.count_nonzero((first * s - arrival * s) * 1e3 <= self.ttft_ms) < need:
                return False
        if self.tpot_ms is not None:
            done = (R.finished >= 0) & (R.output > 1)
            tpot = (R.finished[done] * s - R.first_token[done] * s) / (R.output[done] - 1) * 1e3
            if np.count_nonzero(tpot <= self.tpot_ms) + np.count_nonzero(R.output <= 1) < need:
                return False
        return True
