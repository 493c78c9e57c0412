"""Profile bundles (LLMServingSim's current format) and lookups over their grids.

A bundle is ``<root>/profiles/<HW>/<org>/<model>/<variant>/`` with ``meta.yaml`` and one folder
per tensor-parallel degree, ``tpN/``, holding per-rank operator latencies measured on one GPU:

* ``dense.csv`` (layer, tokens, time_us): token-parallel operators, keyed by the batch's tokens.
* ``per_sequence.csv`` (layer, sequences, time_us): LM head and sampler, keyed by sequences.
* ``attention.csv`` (prefill_chunk, kv_prefill, n_decode, kv_decode, time_us): one attention
  layer for a batch with a prefill chunk over a history plus ``n_decode`` decodes of one length.
* ``skew_fit.csv``: a correction for decodes of unequal lengths (see :class:`SkewFit`).

Outside a grid: below the first point the first value is used (clamp); above the last point a 1-D table
grows at the slope of its upper half (:func:`upper_slope`) and the attention axes extend their last segment.
Inside, every axis is interpolated linearly.
"""
from __future__ import annotations

import csv
import functools
import math
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:   # pandas loads where a profile is read: `llmss --help` and the kernel's import do without it (~0.2 s)
    import pandas as pd

from ..config.reader import Section, as_whole, read_text, read_yaml
from ..errors import InputError
from ..files import reachable


# ---- generic helpers -----------------------------------------------------------------------------

TEXT_COLUMNS = ("layer", "layer_name", "n_label", "skew_rate_label", "kv_big_label", "kp_label", "regime")
# operator timings and their unit in seconds; each must be > 0 and at most a minute (a unit slip otherwise)
TIME_COLUMNS = {"time_us": 1e-6, "latency(ns)": 1e-9, "prediction": 1e-9}
MAX_OP_S = 60.0
# sizes and counts (tokens, sequences, experts, TP degree), each with its least value: whole numbers, never
# negative; a skew-fit bucket was fitted on at least one sample
COUNT_COLUMNS = {c: 0 for c in ("tokens", "sequences", "activated_experts", "prefill_chunk", "kv_prefill", "n_decode",
                                "kv_decode", "input", "kv_cache", "tp_size", "batch_size", "kv_cache_size",
                                "prefill_chunk_size", "pc")} | {"n_samples": 1}


def _bad_value(column: str, x: float) -> str | None:
    """Why a parsed number cannot be right for its column, or None."""
    if column in TIME_COLUMNS and not 0 < x * TIME_COLUMNS[column] <= MAX_OP_S:
        return f"column {column!r}: a latency must be > 0 and at most {MAX_OP_S:g} s, got {x:g}"
    least = COUNT_COLUMNS.get(column)
    if least == 0 and x < 0:
        return f"column {column!r}: a size or count cannot be negative, got {x:g}"
    if least is not None and (x != int(x) or x < least):
        return f"column {column!r}: expected a whole number >= {least}, got {x:g}"
    return None


def _any_bad(x: pd.Series, column: str) -> bool:
    """Whether any value of a column breaks :func:`_bad_value`'s rules (the fast path's check)."""
    if column in TIME_COLUMNS and ((x <= 0) | (x * TIME_COLUMNS[column] > MAX_OP_S)).any():
        return True
    least = COUNT_COLUMNS.get(column)
    return least is not None and bool(((x % 1 != 0) | (x < least)).any())


def read_csv(path: Path, columns: tuple[str, ...], labels: dict[str, list[str]] | None = None,
             unique: tuple[str, ...] = ()) -> dict[str, list]:
    """Columns of a CSV as lists; numbers parsed, errors name the file, line and column.

    ``labels`` gives the values a text column may hold; no two rows may agree on all ``unique``
    columns (the last would silently win). Every row must have as many fields as the header: an extra
    one (a decimal comma: ``2,67733`` for 2.67733) would otherwise shift or drop a value. pandas' C
    parser reads well-formed files fast; anything it rejects, or any value that breaks a rule, is
    re-read line by line to say exactly where the problem is.
    """
    labels = labels or {}
    df = _read_frame(path, columns, labels, unique)
    if df is None:
        return _read_csv_slow(path, columns, labels, unique)
    return {c: df[c].tolist() for c in columns}


def read_columns(path: Path, columns: tuple[str, ...], unique: tuple[str, ...] = (),
                 labels: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """Columns of a large CSV as arrays (numbers as floats, text as objects), with :func:`read_csv`'s checks."""
    labels = labels or {}
    df = _read_frame(path, columns, labels, unique)
    cols = _read_csv_slow(path, columns, labels, unique) if df is None else df
    return {c: np.asarray(cols[c], dtype=object if c in TEXT_COLUMNS else float) for c in columns}


def _read_frame(path: Path, columns: tuple[str, ...], labels: dict[str, list[str]],
                unique: tuple[str, ...]) -> pd.DataFrame | None:
    """The file through pandas when it is well formed (as many fields in every row as in the header,
    every number finite and within its column's rules, every label known, no repeated row), else None.
    pandas refuses a row with extra fields, except when the first row has them: it then takes the
    leading fields for an index, so anything but its default index means a bad field count; a short
    row leaves empty cells."""
    import pandas as pd

    try:
        df = pd.read_csv(path, encoding="utf-8", skipinitialspace=True)
        df.columns = [str(c).strip() for c in df.columns]
        if (not isinstance(df.index, pd.RangeIndex) or df.isna().to_numpy().any()
                or any(c not in df.columns for c in columns)):
            return None
        nums = [c for c in columns if c not in TEXT_COLUMNS]
        for c in set(columns) - set(nums):   # each distinct label stripped once, not every row
            codes, distinct = pd.factorize(df[c])
            df[c] = np.asarray([str(x).strip() for x in distinct], dtype=object)[codes]
        if any(not pd.api.types.is_numeric_dtype(df[c]) for c in nums):
            return None     # text that float() would still take ('2_9' is 29): the careful reader names it
        arr = df[nums].to_numpy(dtype=float) if nums else np.zeros((len(df), 0))
        if (len(df) and np.isfinite(arr).all() and not any(_any_bad(df[c], c) for c in nums)
                and all(df[c].isin(ok).all() for c, ok in labels.items())
                and not (unique and df.duplicated(list(unique)).any())):
            return df
    except Exception:  # noqa: BLE001 - any parse problem is located by the careful reader below
        pass
    return None


def _read_csv_slow(path: Path, columns: tuple[str, ...], labels: dict[str, list[str]],
                   unique: tuple[str, ...]) -> dict[str, list]:
    text = read_text(path)
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty CSV file", path) from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"missing column {missing[0]!r} (has {header})", path, "line 1")
    idx = [header.index(c) for c in columns]
    out: dict[str, list] = {c: [] for c in columns}
    seen: dict[tuple, int] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise InputError(f"expected {len(header)} fields, got {len(row)}", path, f"line {lineno}")
        for c, i in zip(columns, idx):
            v = row[i].strip()
            if c in TEXT_COLUMNS:
                if c in labels and v not in labels[c]:
                    raise InputError(f"column {c!r}: unknown label {v!r} (expected one of {labels[c]})", path,
                                     f"line {lineno}")
                out[c].append(v)
                continue
            try:
                if "_" in v:        # Python reads '2_9' as 29: a typo, not a number
                    raise ValueError(v)
                x = float(v)
            except ValueError:
                raise InputError(f"column {c!r}: not a number: {v!r}", path, f"line {lineno}") from None
            if not math.isfinite(x):
                raise InputError(f"column {c!r}: not a finite number: {v!r}", path, f"line {lineno}")
            why = _bad_value(c, x)
            if why:
                raise InputError(why, path, f"line {lineno}")
            out[c].append(x)
        if unique:
            key = tuple(out[c][-1] for c in unique)
            if key in seen:
                raise InputError(f"the same {', '.join(unique)} as line {seen[key]}", path, f"line {lineno}")
            seen[key] = lineno
    if not out[columns[0]]:
        raise InputError("CSV has a header but no rows", path)
    return out


def bracket(axis: np.ndarray | list, x: float) -> tuple[int, int, float]:
    """Indices (i, j) and weight w so that value = v[i] + w * (v[j] - v[i]).

    Clamp below the first point, extrapolate linearly above the last one.
    """
    n = len(axis)
    if n == 1 or x <= axis[0]:
        return 0, 0, 0.0
    if x >= axis[-1]:
        i = n - 2
    else:
        i = bisect_right(axis, x) - 1
    a0, a1 = axis[i], axis[i + 1]
    return i, i + 1, (x - a0) / (a1 - a0)


def upper_slope(axis: np.ndarray, values: np.ndarray) -> float:
    """The growth per unit to extrapolate with above a 1-D grid: the secant over its upper half, never negative.
    The last segment's slope is measurement noise on a fine grid (16-token steps): for Qwen3-32B it falls, and
    a prefill of 8192 tokens came out at zero time or less."""
    k = min(int(np.searchsorted(axis, axis[-1] / 2)), len(axis) - 2)
    return max(0.0, float((values[-1] - values[k]) / (axis[-1] - axis[k])))


def interp1(axis: np.ndarray, values: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    """Linear inside the grid, clamped below it, and extrapolated above it by :func:`upper_slope`."""
    x = np.asarray(x, dtype=float)
    y = np.interp(x, axis, values)
    if len(axis) > 1:
        above = x > axis[-1]
        if np.any(above):
            y = np.where(above, values[-1] + upper_slope(axis, values) * (x - axis[-1]), y)
    return y


# ---- attention ------------------------------------------------------------------------------------

def _lerp_rows(r0: list[float], r1: list[float], wi: float, j0: int, j1: int, wj: float) -> float:
    """Bilinear interpolation once both brackets are known: between rows ``r0`` and ``r1`` (weight ``wi``), each
    between columns ``j0`` and ``j1`` (weight ``wj``). Grid2D and AttentionTable.section share it, so a section
    gives the lookup's bits."""
    a = r0[j0] + wj * (r0[j1] - r0[j0])
    b = r1[j0] + wj * (r1[j1] - r1[j0])
    return a + wi * (b - a)


@dataclass
class Grid2D:
    """Latency over (prefill history, decode history) for one (chunk, n_decode) slice."""

    kp: np.ndarray
    kv: np.ndarray
    values: np.ndarray  # [len(kp), len(kv)] in ns, holes filled along kv then kp

    def __post_init__(self) -> None:
        # lookups run every step: Python lists index and bisect several times faster than arrays. A row of
        # values becomes a list when a lookup first needs it: a prefill grid has 4096 rows, a run reads a few
        self._kp, self._kv = self.kp.tolist(), self.kv.tolist()
        self._v: list[list[float] | None] = [None] * len(self._kp)

    def _row(self, i: int) -> list[float]:
        row = self._v[i] = self.values[i].tolist()
        return row

    def __call__(self, kp: float, kv: float) -> float:
        i0, i1, wi = bracket(self._kp, kp)
        j0, j1, wj = bracket(self._kv, kv)
        return _lerp_rows(self._v[i0] or self._row(i0), self._v[i1] or self._row(i1), wi, j0, j1, wj)

    def at_kp(self, kp: float) -> tuple[list[float], list[float], list[float], float]:
        """The grid at one prefill history, to be read at several decode histories: the kv axis, the two
        rows around ``kp`` and the weight between them (:func:`_lerp_rows` finishes what ``__call__`` does)."""
        i0, i1, wi = bracket(self._kp, kp)
        return self._kv, self._v[i0] or self._row(i0), self._v[i1] or self._row(i1), wi

    @classmethod
    def from_points(cls, kp: np.ndarray, kv: np.ndarray, t: np.ndarray) -> "Grid2D":
        laid_out = _full_grid(kp, kv, t)
        if laid_out is not None:   # the usual file: no sorting needed
            kp_axis, kv_axis, grid = laid_out
            return cls(kp_axis.astype(float), kv_axis.astype(float), np.maximum(grid, 0.0))
        kp_axis, kp_idx = np.unique(kp, return_inverse=True)
        kv_axis, kv_idx = np.unique(kv, return_inverse=True)
        grid = np.full((len(kp_axis), len(kv_axis)), np.nan)
        grid[kp_idx, kv_idx] = t
        if not np.isnan(grid).any():
            return cls(kp_axis.astype(float), kv_axis.astype(float), np.maximum(grid, 0.0))
        for i in range(len(kp_axis)):  # fill holes along the decode-history axis
            ok = ~np.isnan(grid[i])
            if ok.any() and not ok.all():
                grid[i] = interp1(kv_axis[ok], grid[i, ok], kv_axis)
        for j in range(len(kv_axis)):  # then along the prefill-history axis
            ok = ~np.isnan(grid[:, j])
            if ok.any() and not ok.all():
                grid[:, j] = interp1(kp_axis[ok], grid[ok, j], kp_axis)
        return cls(kp_axis.astype(float), kv_axis.astype(float), np.maximum(grid, 0.0))


def _full_grid(kp: np.ndarray, kv: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(kp axis, kv axis, values[kp, kv]) when the points are a full grid written row by row, either
    axis outer, both increasing (as the profilers write them); None otherwise."""
    n = len(t)
    for outer, inner, swap in ((kp, kv, False), (kv, kp, True)) if n else ():
        change = np.flatnonzero(outer != outer[0])
        m = int(change[0]) if len(change) else n   # points per row
        if n % m:
            continue
        rows_o, rows_i = outer.reshape(-1, m), inner.reshape(-1, m)
        o_axis, i_axis = rows_o[:, 0], rows_i[0]
        if ((rows_o == o_axis[:, None]).all() and (rows_i == i_axis).all()
                and (np.diff(o_axis) > 0).all() and (np.diff(i_axis) > 0).all()):
            v = np.asarray(t, dtype=float).reshape(-1, m)
            return (i_axis, o_axis, v.T) if swap else (o_axis, i_axis, v)
    return None


class _Zero:
    def __call__(self, kp: float, kv: float) -> float:
        return 0.0


@dataclass
class AttentionTable:
    """One attention layer's latency for a batch: 4-D lookup (chunk, n_decode, kp, kv_decode).

    Bracket the chunk and decode-count axes, evaluate the four corner slices bilinearly over the
    two history axes, then blend. A corner missing from the profile falls back to the nearest
    profiled slice; the (0, 0) corner is an empty batch, zero time.
    """

    pcs: np.ndarray
    ns: np.ndarray
    slices: dict[tuple[float, float], Grid2D | _Zero]

    def __post_init__(self) -> None:
        self._pcs, self._ns = self.pcs.tolist(), self.ns.tolist()   # see Grid2D
        self._sections: dict[tuple[float, float, float], Callable[[float], float]] = {}

    @classmethod
    def load(cls, path: Path) -> "AttentionTable":
        axes = ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode")
        a = read_columns(path, (*axes, "time_us"), unique=axes)
        keys = np.stack([a["prefill_chunk"], a["n_decode"]], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.ravel()
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        slices: dict[tuple[float, float], Grid2D | _Zero] = {}
        for s, (pc, n) in enumerate(uniq):
            rows = order[bounds[s]:bounds[s + 1]]
            slices[(pc, n)] = Grid2D.from_points(a["kv_prefill"][rows], a["kv_decode"][rows],
                                                 a["time_us"][rows] * 1000.0)
        slices[(0.0, 0.0)] = _Zero()
        pcs = np.unique(uniq[:, 0])
        ns = np.unique(uniq[:, 1])
        table = cls(np.union1d(pcs, [0.0]), np.union1d(ns, [0.0]), slices)
        table._fill_missing_corners()
        return table

    def _fill_missing_corners(self) -> None:
        have = [k for k, v in self.slices.items() if not isinstance(v, _Zero)]
        for pc in self.pcs:
            for n in self.ns:
                if (pc, n) in self.slices:
                    continue
                # nearest profiled slice in raw units, as LLMServingSim: a 24-token chunk beside 256
                # decodes takes the 256-decode slice, not the chunk's with 128 decodes
                best = min(have, key=lambda k: (k[0] - pc) ** 2 + (k[1] - n) ** 2)
                self.slices[(pc, n)] = self.slices[best]

    def __call__(self, pc: float, kp: float, n: float, kv: float) -> float:
        pcs, ns = self._pcs, self._ns
        i0, i1, wi = bracket(pcs, pc)
        j0, j1, wj = bracket(ns, n)
        p0, p1, n0, n1 = pcs[i0], pcs[i1], ns[j0], ns[j1]
        s = self.slices
        a = s[(p0, n0)](kp, kv)
        if wj:
            a += wj * (s[(p0, n1)](kp, kv) - a)
        if wi:
            b = s[(p1, n0)](kp, kv)
            if wj:
                b += wj * (s[(p1, n1)](kp, kv) - b)
            a += wi * (b - a)
        return a if a > 1.0 else 1.0

    SECTION_MEMO = 4096

    def section(self, pc: float, kp: float, n: float) -> Callable[[float], float]:
        """The table at one (chunk, history, decode count) as a function of the decode history alone, equal
        to ``self(pc, kp, n, kv)`` bit for bit. A step looks its shape up at two or three decode histories
        (the mean, longest and shortest, for the skew correction), and a run at a few hundred decode-only
        shapes: the brackets of the other three axes and the corner slices are found once (memoised)."""
        key = (pc, kp, n)
        f = self._sections.get(key)
        if f is None:
            if len(self._sections) >= self.SECTION_MEMO:   # batches with prefill chunks rarely repeat
                self._sections.clear()
            f = self._sections[key] = self._section(pc, kp, n)
        return f

    def _section(self, pc: float, kp: float, n: float) -> Callable[[float], float]:
        pcs, ns, s = self._pcs, self._ns, self.slices
        i0, i1, wi = bracket(pcs, pc)
        j0, j1, wj = bracket(ns, n)
        # the corners __call__ reads, in its order: (p0, n0), (p0, n1) if wj, (p1, n0) if wi, (p1, n1) if both
        keys = [(pcs[i0], ns[j0])] + ([(pcs[i0], ns[j1])] if wj else [])
        if wi:
            keys += [(pcs[i1], ns[j0])] + ([(pcs[i1], ns[j1])] if wj else [])
        corners = [None if isinstance(s[k], _Zero) else s[k].at_kp(kp) for k in keys]
        if wj and not wi and None not in corners and corners[0][0] == corners[1][0]:
            # the usual decode-only shape (chunk 0, on the grid): two slices over one kv axis, one bracket
            (axis, a0, a1, wa), (_, b0, b1, wb) = corners

            def two(kv: float) -> float:
                k0, k1, w = bracket(axis, kv)
                a = _lerp_rows(a0, a1, wa, k0, k1, w)
                a += wj * (_lerp_rows(b0, b1, wb, k0, k1, w) - a)
                return a if a > 1.0 else 1.0
            return two

        def general(kv: float) -> float:
            v = [0.0 if c is None else _lerp_rows(c[1], c[2], c[3], *bracket(c[0], kv)) for c in corners]
            a = v[0]
            if wj:
                a += wj * (v[1] - a)
            if wi:
                b = v[2 if wj else 1]
                if wj:
                    b += wj * (v[3] - b)
                a += wi * (b - a)
            return a if a > 1.0 else 1.0
        return general


# ---- skew correction ------------------------------------------------------------------------------

@dataclass
class SkewFit:
    """Heterogeneous decode lengths: attention time moves from the mean-length time toward the
    max-length time by a fitted fraction alpha, bucketed by the batch's shape.

    ``t = t(kv_mean) + alpha * (t(kv_max) - t(kv_mean))``. The bucket key is (prefill chunk, n,
    skew rate = (mean - min) / (max - min), max length, prefill history). As the bundle's
    ``meta.yaml`` defines it, the chunk part of the key is the raw chunk size, fitted only at profiled
    grid points; any other chunk size, or a bucket with no fit, uses the bundle's ``alpha_default``.
    """

    alpha_default: float
    pc_keys: frozenset[float]  # chunk sizes the table was fitted at
    n_bins: list[float]
    n_labels: list[str]
    sr_bins: list[float]
    sr_labels: list[str]
    kvb_bins: list[float]
    kvb_labels: list[str]
    kp_bins: list[float]
    kp_labels: list[str]
    table: dict[tuple, float] = field(default_factory=dict)
    # (chunk, n, history) -> the key's parts they decide: a step asks for alpha at its shape, and decode-only
    # shapes repeat (bounded: shapes with chunks rarely do)
    _parts: dict[tuple, tuple[float, str, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    PARTS_MEMO = 4096

    @staticmethod
    def _label(bins: list[float], labels: list[str], x: float) -> str:
        # bins are (lo, hi]; bisect_left finds the first edge >= x
        i = bisect_left(bins, x) - 1
        return labels[min(max(i, 0), len(labels) - 1)]

    def alpha(self, pc: float, n: int, kv_mean: float, kv_min: float, kv_max: float, kp: float) -> float:
        if pc not in self.pc_keys:
            return self.alpha_default
        parts = self._parts.get((pc, n, kp))
        if parts is None:
            if len(self._parts) >= self.PARTS_MEMO:
                self._parts.clear()
            parts = self._parts[(pc, n, kp)] = (float(pc), self._label(self.n_bins, self.n_labels, n),
                                                self._label(self.kp_bins, self.kp_labels, kp))
        sr = min(max((kv_mean - kv_min) / (kv_max - kv_min), 0.0), 1.0)
        key = (parts[0], parts[1], self._label(self.sr_bins, self.sr_labels, sr),
               self._label(self.kvb_bins, self.kvb_labels, kv_max), parts[2])
        return self.table.get(key, self.alpha_default)


SKEW_KEY = ("pc", "n_label", "skew_rate_label", "kv_big_label", "kp_label")
SKEW_AXES = {"n_label": "n", "skew_rate_label": "skew_rate", "kv_big_label": "kv_big", "kp_label": "kp"}


def _load_skew(meta: Section, tp: int, tp_dir: Path) -> SkewFit | None:
    """The bundle's skew fit at one TP degree, or None when meta.yaml turns it off or leaves nothing to
    apply. The table is the file ``per_tp.N.bucket_table`` names (relative to the bundle), else the
    inline ``per_tp.N.alpha_by_bucket`` of older meta files (``"pc=0|n<=128|sr<=15%|kvB<=16k|kp=0":
    alpha``), else ``tpN/skew_fit.csv``; without one every bucket takes the TP degree's
    ``alpha_default``. A table that meta.yaml names but the bundle lacks is an error (LLMServingSim
    only warns): the bundle is incomplete, and its fitted alphas would silently be lost.

    Every column of ``skew_fit.csv`` is checked: a label outside meta.yaml's bucket axes, a chunk size
    or sample count that is not a whole number, or a bucket given twice would otherwise drop or replace
    a fitted alpha without a word. ``alpha_default``, the fit over all samples, cannot be negative. A
    bucket's alpha is only checked to be finite: fitted on few samples it ranges from -735 to 27 in the
    shipped bundles, and the iteration model keeps the corrected time between the batch's all-shortest
    and all-longest times whatever alpha says.
    """
    sf = meta.section("skew_fit", required=False)
    if sf is None or not sf.boolean("enabled", required=False, default=False):
        return None
    axes = sf.section("bucket_axes")
    per_tp = sf.section("per_tp", required=False)
    entry = per_tp and (per_tp.data.get(tp) or per_tp.data.get(str(tp)))
    tp_meta = Section.of(entry, meta.source, per_tp.key(str(tp))) if entry is not None else None
    # the fit over all of a TP degree's samples: a negative one would make unequal decodes faster than equal ones
    alpha_default = tp_meta.number("alpha_default", False, 0.0, minimum=0.0) if tp_meta else 0.0
    named = tp_meta.string("bucket_table", required=False) if tp_meta else None
    path = tp_dir.parent / named if named else tp_dir / "skew_fit.csv"
    bins = {c: _skew_axis(axes, name) for c, name in SKEW_AXES.items()}
    (nb, nl), (sb, sl), (kb, kl), (pb, pl) = bins.values()
    inline = tp_meta.section("alpha_by_bucket", required=False) if tp_meta else None
    if inline is not None and not named:
        table = _inline_skew_table(inline, bins)
        return SkewFit(alpha_default, frozenset(k[0] for k in table), nb, nl, sb, sl, kb, kl, pb, pl, table)
    if not path.is_file():
        if named:
            raise tp_meta.error("bucket_table", f"names {named!r}, but {path} is missing")
        if not alpha_default:
            return None
        return SkewFit(alpha_default, frozenset(), *(x for b in bins.values() for x in b))
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        header = [c.strip() for c in next(csv.reader([f.readline()]), [])]
    counted = ("n_samples",) if "n_samples" in header else ()   # as in LLMServingSim: checked when given
    cols = read_csv(path, (*SKEW_KEY, "alpha", *counted), labels={c: b[1] for c, b in bins.items()},
                    unique=SKEW_KEY)
    table = {(float(pc), n_, sr, kvb, kp): float(al) for pc, n_, sr, kvb, kp, al in
             zip(*(cols[c] for c in SKEW_KEY), cols["alpha"])}
    return SkewFit(alpha_default, frozenset(float(p) for p in cols["pc"]), nb, nl, sb, sl, kb, kl, pb, pl, table)


def _inline_skew_table(inline: Section, bins: dict[str, tuple[list[float], list[str]]]) -> dict[tuple, float]:
    """``alpha_by_bucket`` of an older meta.yaml: keys ``pc=<chunk>|<n>|<skew rate>|<max kv>|<history>``
    with the labels of meta.yaml's bucket axes, each naming its alpha."""
    table: dict[tuple, float] = {}
    for key in inline.data:
        parts = str(key).split("|")
        pc = parts[0][3:] if parts[0].startswith("pc=") else ""
        try:
            chunk = float(pc)
        except ValueError:
            chunk = -1.0
        if len(parts) != 5 or not (chunk >= 0 and chunk.is_integer()):
            raise inline.error(str(key), "expected a bucket key 'pc=<chunk>|<n label>|<skew-rate label>|"
                                         "<kv_big label>|<kp label>'")
        for label, (axis, (_, labels)) in zip(parts[1:], bins.items()):
            if label not in labels:
                raise inline.error(str(key), f"{label!r} is not one of meta.yaml's {SKEW_AXES[axis]}_labels {labels}")
        table[(chunk, *parts[1:])] = inline.number(key)
    return table


def _skew_axis(axes: Section, name: str) -> tuple[list[float], list[str]]:
    """(bin edges, labels) of one bucket axis: increasing numbers, and one label between each two edges."""
    edges, labels = axes.data.get(f"{name}_bins"), axes.data.get(f"{name}_labels")
    numbers = isinstance(edges, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                              and math.isfinite(x) for x in edges)
    if not numbers or len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise axes.error(f"{name}_bins", f"expected at least two increasing numbers, got {edges!r}")
    if not isinstance(labels, list) or len(labels) != len(edges) - 1:
        n = len(labels) if isinstance(labels, list) else 0
        raise axes.error(f"{name}_labels", f"{n} labels for {len(edges)} bin edges; expected {len(edges) - 1}")
    return [float(x) for x in edges], [str(x) for x in labels]


# ---- a bundle ---------------------------------------------------------------------------------------

class MoeTable:
    """One MoE block (gate and experts) on one rank: 2-D lookup over (tokens, experts activated).
    The profile's tokens each pick top-k experts, so a rank is looked up at its token-expert pairs
    over k (with expert parallelism a token reaching a rank brings fewer than k pairs to it).
    Bracket the experts axis (clamp below, extrapolate above), interpolate tokens within each
    profiled expert count, blend."""

    def __init__(self, tokens: np.ndarray, experts: np.ndarray, ns: np.ndarray, source: str = ""):
        self.experts = np.unique(experts).astype(float)
        self.rows = []
        for e in self.experts:
            m = experts == e
            order = np.argsort(tokens[m])
            self.rows.append((tokens[m][order].astype(float), ns[m][order]))
        self.source = source
        self._memo: dict[tuple, np.ndarray] = {}   # a balanced gate routes a token count alike every step

    MEMO_SIZE = 4096

    def __call__(self, routing) -> np.ndarray:
        """Per routed layer group and EP rank: [G, ep] ns (read-only: it may be shared)."""
        lt = routing.pair_tokens()
        act = np.asarray(routing.activated, float)
        key = (lt.shape, lt.tobytes(), act.tobytes())
        out = self._memo.get(key)
        if out is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            out = self._memo[key] = self._lookup(lt, act)
            out.flags.writeable = False
        return out

    def _lookup(self, lt: np.ndarray, act: np.ndarray) -> np.ndarray:
        vals = np.stack([interp1(x, v, lt) for x, v in self.rows])       # [rows, G, ep]
        e = self.experts
        if len(e) == 1:
            out = vals[0]
        else:
            i = np.clip(np.searchsorted(e, act, side="right") - 1, 0, len(e) - 2)
            w = np.where(act <= e[0], 0.0, (act - e[i]) / (e[i + 1] - e[i]))
            a = np.take_along_axis(vals, i[None], 0)[0]
            b = np.take_along_axis(vals, (i + 1)[None], 0)[0]
            out = a + w * (b - a)
        return np.where(lt > 0, np.maximum(out, 0.0), 0.0)


@dataclass
class LatencyProfile:
    """What an iteration model needs from a profile at one TP degree, whatever its file format."""

    tp: int
    dense: dict[str, tuple[np.ndarray, np.ndarray]]          # layer -> (tokens, ns)
    per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]   # layer -> (sequences, ns)
    attention: Callable[[float, float, float, float], float]  # (chunk, chunk history, n decode, kv) -> ns
    skew: "SkewFit | None" = None
    moe: Callable | None = None                               # routing -> [G, ep] ns
    source: str = ""
    kind: str = "profile"                                     # or "analytical" (computed, not measured)


@dataclass
class ProfileBundle:
    """A bundle folder; each ``tpN/`` is read the first time it is asked for."""

    path: Path
    hardware: str
    model: str
    variant: str
    meta: Section
    tp_dirs: dict[int, Path]
    _tps: dict[int, LatencyProfile] = field(default_factory=dict)

    @property
    def tp_degrees(self) -> list[int]:
        return sorted(self.tp_dirs)

    def at_tp(self, tp: int) -> LatencyProfile:
        if tp not in self.tp_dirs:
            raise InputError(f"the profile has no tp{tp}/ folder (has {['tp%d' % t for t in self.tp_degrees]}); "
                             f"profile this model at TP={tp} or pick another tp_size", self.path, f"tp{tp}")
        if tp not in self._tps:
            self._tps[tp] = _load_tp(self.meta, tp, self.tp_dirs[tp])
        return self._tps[tp]

    def skew_fit(self, tp: int) -> SkewFit | None:
        """The skew fit of one ``tpN/`` folder alone, checked as :meth:`at_tp` checks it (for
        ``llmss profile-check``, which reads the timing tables its own way)."""
        return _load_skew(self.meta, tp, self.tp_dirs[tp])


# operator names of the current format's tables (LLMServingSim's architecture YAMLs: llama, qwen3, qwen3_moe,
# mixtral, phimoe); any other name would be charged on every step without a word
DENSE_LAYERS = ("embedding", "layernorm", "qkv_proj", "qk_norm", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
                "down_proj", "final_layernorm")
PER_SEQUENCE_LAYERS = ("lm_head", "sampler")
EVERY_STEP = frozenset({"embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "final_layernorm"})


def require_layers(profile: LatencyProfile, is_moe: bool, qk_norm: bool = False) -> None:
    """Refuse a bundle that lost an operator every step runs, or has one the model does not run: it would
    simulate a faster or slower model without a word. MoE models run their MLP from moe.csv instead of
    dense.csv; only models with a query/key norm (Qwen3) run qk_norm."""
    d = Path(profile.source)
    every = EVERY_STEP | ({"qk_norm"} if qk_norm else set())
    needed = {"dense.csv": (profile.dense, every | (set() if is_moe else {"gate_up_proj", "act_fn", "down_proj"})),
              "per_sequence.csv": (profile.per_sequence, {"lm_head"})}
    for name, (table, layers) in needed.items():
        missing = sorted(layers - set(table))
        if missing:
            raise InputError(f"no rows for layer(s) {missing}: every transformer step runs them", d / name, "layer")
    if not qk_norm and "qk_norm" in profile.dense:
        raise InputError("rows for qk_norm, which this model does not run (it has no query/key norm): "
                         "a profile of another model?", d / "dense.csv", "layer")


def grid_values(spec: str) -> list[float]:
    """The points a meta.yaml grid spec lists: ``"0, 16-2048 x2"`` is 0 and 16, 32, ..., 2048."""
    out: list[float] = []
    for part in str(spec).split(","):
        m = re.fullmatch(r"\s*([\d.]+)(?:\s*-\s*([\d.]+)\s*x\s*([\d.]+))?\s*", part)
        if m is None:
            raise ValueError(part)
        x = float(m.group(1))
        if m.group(2) is None:
            out.append(x)
            continue
        top, factor = float(m.group(2)), float(m.group(3))
        if factor <= 1 or x <= 0:
            raise ValueError(part)
        while x <= top * (1 + 1e-9):
            out.append(round(x, 6))
            x *= factor
    return out


def _check_coverage(meta: Section, d: Path, attention: AttentionTable, dense: dict, per_sequence: dict) -> None:
    """A table that stops short of the grid its meta.yaml says was profiled is a partial copy (or a run that
    died): its holes would be filled from neighbours and extrapolated, and results change several-fold."""
    grid = meta.data.get("attention_grid")
    if isinstance(grid, dict):
        for key, have, column in (("chunks", attention.pcs, "prefill_chunk"), ("n_decode", attention.ns, "n_decode")):
            try:
                listed = grid_values(grid.get(key, ""))
            except ValueError:   # a grid written some other way: nothing to check against
                continue
            missing = sorted(set(listed) - set(np.asarray(have, float).tolist()))
            if missing:
                raise InputError(f"has no rows at {', '.join(f'{v:g}' for v in missing[:4])}"
                                 f"{' ...' if len(missing) > 4 else ''}, which meta.yaml's attention_grid.{key} "
                                 "lists as profiled: an incomplete copy of the bundle?", d / "attention.csv", column)
    section = meta.section("engine_effective", required=False)   # not a mapping: named, not an AttributeError
    engine = section.data if section else {}
    seqs = as_whole(engine.get("max_num_seqs"))
    short = [layer for layer, (x, _) in per_sequence.items() if seqs and x[-1] < seqs]
    if short:
        raise InputError(f"{', '.join(short)} stop at fewer sequences than the {seqs} meta.yaml's "
                         "engine_effective.max_num_seqs profiled: an incomplete copy?", d / "per_sequence.csv",
                         "sequences")
    top = as_whole(engine.get("max_num_batched_tokens"))
    if not EVERY_STEP <= set(dense):   # a lost operator: require_layers names it, more to the point
        return
    short = [layer for layer, (x, _) in dense.items() if top and x[-1] < top]
    if short:
        raise InputError(f"{', '.join(short[:3])}{' ...' if len(short) > 3 else ''} stop at fewer tokens than the "
                         f"{top} meta.yaml's engine_effective.max_num_batched_tokens profiled: an incomplete copy?",
                         d / "dense.csv", "tokens")


def _load_tp(meta: Section, tp: int, d: Path) -> LatencyProfile:
    moe = None
    if (d / "moe.csv").is_file():
        c = read_csv(d / "moe.csv", ("tokens", "activated_experts", "time_us"), unique=("tokens", "activated_experts"))
        moe = MoeTable(np.array(c["tokens"]), np.array(c["activated_experts"]), np.array(c["time_us"]) * 1000.0,
                       str(d / "moe.csv"))
    dense = _layer_table(d / "dense.csv", "tokens", DENSE_LAYERS)
    per_sequence = _layer_table(d / "per_sequence.csv", "sequences", PER_SEQUENCE_LAYERS)
    attention = AttentionTable.load(d / "attention.csv")
    _check_coverage(meta, d, attention, dense, per_sequence)
    return LatencyProfile(
        tp=tp,
        dense=dense,
        per_sequence=per_sequence,
        attention=attention,
        skew=_load_skew(meta, tp, d),
        moe=moe,
        source=str(d),
    )


def _layer_table(path: Path, key: str, known: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each operator's (sizes, ns), sorted; only ``known`` operators, each size once (another name would be
    charged on every step, a repeated size would pick one of two timings)."""
    cols = read_csv(path, ("layer", key, "time_us"), labels={"layer": list(known)}, unique=("layer", key))
    out: dict[str, list[tuple[float, float]]] = {}
    for layer, x, t in zip(cols["layer"], cols[key], cols["time_us"]):
        out.setdefault(layer, []).append((x, t))
    tables = {}
    for layer, pts in out.items():
        pts.sort()
        tables[layer] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]) * 1000.0)
    return tables


@functools.lru_cache(maxsize=16)
def _load_bundle_cached(path: str, stamp: float) -> ProfileBundle:
    p = Path(path)
    meta_path = p / "meta.yaml"
    meta = Section.of(read_yaml(meta_path), meta_path)
    tp_dirs = {int(d.name[2:]): d for d in p.glob("tp*") if d.is_dir() and d.name[2:].isdigit()}
    if not tp_dirs:
        raise InputError("no tpN/ folders in the profile bundle", p)
    if meta.has("tp_degrees"):   # what the profiler ran: a folder more or less is a partial copy or a stray one
        listed = meta.data["tp_degrees"]
        if not isinstance(listed, list) or not listed or any(as_whole(t) is None or as_whole(t) < 1 for t in listed):
            raise meta.error("tp_degrees", f"expected a list of TP degrees such as [1, 2], got {listed!r}")
        if sorted(as_whole(t) for t in listed) != sorted(tp_dirs):
            raise meta.error("tp_degrees", f"lists {listed} but the bundle has the folders "
                                           f"{['tp%d' % t for t in sorted(tp_dirs)]}")
    # the folder is <HW>/<org>/<model>/<variant>: a meta.yaml that says otherwise was copied from another bundle
    folder = {"hardware": p.parts[-4], "model": "/".join(p.parts[-3:-1]), "variant": p.name}
    laid_out = len(p.parts) >= 5 and p.parts[-5] == "profiles"
    for key, expected in folder.items() if laid_out else ():
        said = meta.string(key, required=False)
        if said is not None and said != expected:
            raise meta.error(key, f"says {said!r} but the bundle sits in the folder of {expected!r}")
    return ProfileBundle(p, meta.string("hardware", required=False) or folder["hardware"],
                         meta.string("model", required=False) or "", meta.string("variant", required=False) or p.name,
                         meta, tp_dirs)


def load_bundle(path: str | Path) -> ProfileBundle:
    """Open (and cache) a profile bundle folder; its files are re-read when they change."""
    p = Path(path)
    if not reachable(p / "meta.yaml").is_file():
        raise InputError("not a profile bundle (no meta.yaml)", p)
    stamp = max(f.stat().st_mtime for f in p.rglob("*") if f.is_file())
    return _load_bundle_cached(str(p.resolve()), stamp)
