"""When the real Fig 7 instruments took their samples, and how the simulation's clock lines up with theirs.

Each row of a real Fig 7 series is one sample of one instrument, stamped on the measuring host's wall
clock: vLLM's ``/metrics`` scraped about once a second (``kv_metrics_*.csv``: GPU memory, and the
cumulative prompt tokens looked up in the prefix cache), vLLM's stats log line (the SD+PC hit rate;
stamped to the whole second), and LMCache's log line (the shared CPU pool). A row is therefore an
instant, not a second, and comparing like with like means reading the simulation at those instants.

The two clocks are tied by the one thing both runs share, the requests: vLLM's lookup counter rises as
requests reach the engine, and the simulation's rises as it schedules the same trace. The offset is
the one that best lines the two counters up (least absolute difference in tokens over every scrape),
so no memory or hit-rate value enters it.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .errors import InputError

# What the artifact recorded for each Fig 7 scenario, under figures/figure_7/raw_data/<scenario>/.
# ``scrapes``: one /metrics file per instance; ``hit_log``: the vLLM log whose stats line is the
# hit-rate series (else the scrape's hits / queries); ``pool_log``: LMCache's log, when a pool is shared.
RAW_FILES = {
    "SD+PC": {"scrapes": ("kv_metrics_sd.csv",), "hit_log": "SD_pulse_vllm.txt"},
    "MD+PC+PS": {"scrapes": ("kv_metrics_md_inst1_no_SFC.csv", "kv_metrics_md_inst2_no_SFC.csv"),
                 "pool_log": "lmcache_server_no_SFC.txt"},
}
_EPOCH = datetime(1970, 1, 1)
_VLLM_STAMP = re.compile(r"INFO (\d\d-\d\d \d\d:\d\d:\d\d) .*Prefix cache hit rate")
_LMCACHE_STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*memory usage")


def raw_paths() -> list[str]:
    """Every raw file above, as ``<scenario>/<file>`` under ``raw_data/`` (what a download must fetch)."""
    return [f"{sc}/{name}" for sc, files in RAW_FILES.items()
            for names in files.values() for name in ((names,) if isinstance(names, str) else names)]


def _seconds(stamp: datetime) -> float:
    """Wall-clock seconds with no time-zone conversion (every file is stamped on the same host)."""
    return (stamp - _EPOCH).total_seconds()


@dataclass(frozen=True)
class Scrape:
    """One instance's /metrics samples from its first prefix lookup on: that is the series' row 0."""
    time: np.ndarray          # wall-clock seconds
    queries: np.ndarray       # prompt tokens looked up so far

    @classmethod
    def read(cls, path: Path) -> "Scrape":
        times, queries = [], []
        try:
            with open(path, newline="") as f:
                for line, row in enumerate(csv.DictReader(f), start=2):
                    try:
                        times.append(_seconds(datetime.fromisoformat(row["timestamp"])))
                        queries.append(float(row["vllm:prefix_cache_queries_total"]))
                    except (KeyError, TypeError, ValueError) as exc:
                        raise InputError(f"not a /metrics sample ({exc})", path, f"line {line}") from None
        except OSError as exc:
            raise InputError(f"cannot read ({exc.strerror})", path) from None
        q = np.asarray(queries)
        first = np.flatnonzero(q > 0)
        if not len(first):
            raise InputError("no prefix lookup in any sample", path, "vllm:prefix_cache_queries_total")
        return cls(np.asarray(times)[first[0]:], q[first[0]:])


def _log_stamps(path: Path, pattern: re.Pattern, fmt: str, year: int | None = None) -> np.ndarray:
    stamps = []
    try:
        with open(path, errors="replace") as f:
            for lineno, line in enumerate(f, start=1):
                m = pattern.search(line)
                if m:
                    text = m.group(1) if year is None else f"{year}-{m.group(1)}"
                    try:
                        stamps.append(_seconds(datetime.strptime(text, fmt)))
                    except ValueError as exc:
                        raise InputError(f"bad time stamp ({exc})", path, f"line {lineno}") from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path) from None
    if not stamps:
        raise InputError(f"no line matches {pattern.pattern!r}", path)
    return np.asarray(stamps)


@dataclass(frozen=True)
class Fig7Instruments:
    """The real sample instants of one Fig 7 scenario's series (wall-clock seconds, row by row)."""
    scrapes: tuple[Scrape, ...]          # per instance, in the instance order of the simulation
    hit_instants: tuple[np.ndarray, ...]  # per instance: when its hit-rate rows were taken
    pool_instants: np.ndarray | None     # LMCache's memory rows; the pool's hit rate is the scrapes'

    @classmethod
    def read(cls, raw_dir: Path, scenario: str) -> "Fig7Instruments":
        files = RAW_FILES[scenario]
        scrapes = tuple(Scrape.read(raw_dir / name) for name in files["scrapes"])
        hits = tuple(s.time for s in scrapes)
        if "hit_log" in files:
            # the stats line is stamped to the whole second: its instant is, on average, half a second later
            year = (_EPOCH + timedelta(seconds=float(scrapes[0].time[0]))).year   # the log omits it
            stamps = _log_stamps(raw_dir / files["hit_log"], _VLLM_STAMP, "%Y-%m-%d %H:%M:%S", year)
            hits = (stamps + 0.5,)
        pool = None
        if "pool_log" in files:
            pool = _log_stamps(raw_dir / files["pool_log"], _LMCACHE_STAMP, "%Y-%m-%d %H:%M:%S,%f")
        return cls(scrapes, hits, pool)

    def pool_hit_instants(self) -> np.ndarray:
        """The pool's hit rate combines every instance's scrape of the same row: their mean instant."""
        n = min(len(s.time) for s in self.scrapes)
        return np.mean([s.time[:n] for s in self.scrapes], axis=0)


def clock_offset(scrapes: tuple[Scrape, ...], lookups: list[tuple[np.ndarray, np.ndarray]],
                 search_s: float = 3.0, step_s: float = 0.001) -> float:
    """Wall-clock seconds to subtract from an instrument's stamp to get simulated time.

    ``lookups`` holds, per instance, the simulated times at which prompts were looked up and the
    cumulative prompt tokens at each. The offset minimises the summed absolute difference between
    the real and simulated counters over every scrape; the middle of the best interval is returned.
    """
    first_real = min(s.time[0] for s in scrapes)
    first_sim = min(float(t[0]) for t, _ in lookups if len(t))
    centre = first_real - first_sim
    offsets = centre + np.arange(-search_s, search_s + step_s / 2, step_s)
    cost = np.zeros(len(offsets))
    for s, (t, cum) in zip(scrapes, lookups):
        if not len(t):      # an instance the (shortened) run gave no request
            continue
        at = s.time[None, :] - offsets[:, None]                  # each scrape's instant, in simulated time
        k = np.searchsorted(t, at, side="right")
        sim = np.where(k > 0, np.asarray(cum)[np.maximum(k - 1, 0)], 0.0)
        cost += np.abs(sim - s.queries[None, :]).sum(axis=1)
    best = np.flatnonzero(cost == cost.min())
    return float(offsets[(best[0] + best[-1]) // 2])
