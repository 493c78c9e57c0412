"""The paper's validation figures as tables: what each figure plots, from three sources side by side.

For every figure of LLMServingSim 2.0's evaluation (Figs 5-10) this module reads

- ``vLLM``: the real system, the artifact's ``figures/figure_N/reference/`` files;
- ``LLMServingSim 2.0``: the reference simulator's own output, ``figures/figure_N/parsed/``;
- ``llmss_lab``: ours, written by :func:`llmss_lab.figures.write_figure_data` into ``out/figure_N/parsed/``,

and returns pandas frames shaped for plotting (:func:`frames`), the error of both simulators against
the real system (:func:`errors`), and one row per case and metric for the validation summary
(:func:`summary`). Nothing here runs the simulator; it reads files, so it works on any output folder.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .config.reader import as_path
from .errors import InputError
from .figures import COMPONENT_LABELS, ENERGY_COLUMNS, SCENARIOS, Scenario, as_names, compare, read_tsv, select
from .reference import bench_root

log = logging.getLogger(__name__)
REAL, THEIRS, OURS = "vLLM", "LLMServingSim 2.0", "llmss_lab"
SIMULATORS = (THEIRS, OURS)
# Fig 8's scenario names as the paper prints them, and the other simulators of its comparison.
LONG_NAMES = {"SD": "Single Dense", "MD": "Multi Dense", "PDD": "Prefill-Decode Disaggregated", "SM": "Single MoE"}
PEERS = ("TokenSim", "Vidur", "APEX")
LATENCY_METRICS = {"TPS": "throughput_tok_s", "TTFT": "mean_ttft_ms", "TPOT": "mean_tpot_ms", "ITL": "mean_itl_ms"}


def read_table(path: Path) -> pd.DataFrame:
    """A TSV file of the artifact's layout; ``X`` (cannot run) reads as missing."""
    if not path.is_file():
        raise InputError("file does not exist (run the figure's scenarios first)", path)
    read_tsv(path)   # the scorer's checks first: a short row, a NaN cell, bytes that are not UTF-8 are named by line
    try:
        return pd.read_csv(path, sep="\t", na_values=["X"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"not a tab-separated table ({exc})", path) from None


def _folders(sc: Scenario, ref: Path, out: Path) -> dict[str, Path]:
    base = ref / "figures" / sc.folder
    return {REAL: base / "reference", THEIRS: base / "parsed", OURS: out / sc.folder / "parsed"}


def _series(files: dict[str, Path], column: int = 1) -> pd.DataFrame:
    """One time series per source, aligned on whole seconds (a second a source lacks is NaN)."""
    cols = {}
    for source, path in files.items():
        t = read_table(path)
        try:
            cols[source] = pd.Series(t.iloc[:, column].astype(float).values,
                                     index=t.iloc[:, 0].astype(float).round().astype(int).values)
        except (ValueError, IndexError) as exc:
            raise InputError(f"not a numeric time series ({exc})", path) from None
    return pd.DataFrame(cols).sort_index().rename_axis("time_s")


def _energy(files: dict[str, Path], columns: dict[str, str]) -> pd.DataFrame:
    """Component energy (J) as rows of (config, source, component, energy_J)."""
    rows = []
    for source, path in files.items():
        t = read_table(path).set_index("component")
        for name, col in columns.items():
            if col in t.columns:
                rows += [(col, source, comp, float(t.at[comp, col])) for comp in COMPONENT_LABELS if comp in t.index]
    return pd.DataFrame(rows, columns=["config", "source", "component", "energy_J"])


def frames(figure: int, reference_dir: str | Path, out: str | Path,
           only: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """What figure ``figure`` plots, one frame per panel, each with a column per source."""
    scs = select(figure, only)
    ref, out = as_path(reference_dir, "reference_dir", "paper"), as_path(out, "out", "paper")
    f: dict[str, pd.DataFrame] = {}
    if figure in (5, 9):
        for sc in scs:
            key = f"{sc.hardware}/{sc.name}" if sc.hardware else sc.name
            f[key] = _series({s: d / f"{sc.name}_throughput.tsv" for s, d in _folders(sc, ref, out).items()})
    if figure == 6:
        for sc in scs:
            d = _folders(sc, ref, out)
            f[f"power_{sc.name}"] = _series({REAL: d[REAL] / f"server_power_{sc.name}.tsv",
                                             THEIRS: d[THEIRS] / f"power_{sc.name}.tsv",
                                             OURS: d[OURS] / f"power_{sc.name}.tsv"})
        d = _folders(scs[0], ref, out)
        cols = {sc.name: ENERGY_COLUMNS[6][sc.name] for sc in scs}
        energy = _energy({s: d[s] / "component_energy.tsv" for s in SIMULATORS}, cols)
        measured = [(cols[sc.name], REAL, "Measured", float(f[f"power_{sc.name}"][REAL].sum())) for sc in scs]
        f["energy"] = pd.concat([pd.DataFrame(measured, columns=energy.columns), energy], ignore_index=True)
    if figure == 7:
        for sc in scs:
            d = _folders(sc, ref, out)
            names = ["SD+PC"] if sc.name == "SD+PC" else [f"{sc.name}_{x}" for x in ("inst0", "inst1", "shared_cpu")]
            for nm in names:
                files = {s: p / f"{nm}.tsv" for s, p in d.items()}
                f[f"{nm}/memory"] = _series(files, 1)
                f[f"{nm}/hit"] = _series(files, 2)
    if figure in (8, 9):
        f["latency"] = _latency_table(scs, ref, out)
    if figure == 8:
        f["sim_time"] = _sim_times(scs, ref, out)
    if figure == 10:
        for sc in scs:
            d = _folders(sc, ref, out)
            f[f"throughput/{sc.name}"] = _series({s: d[s] / f"{sc.name}_b256_throughput.tsv" for s in SIMULATORS})
        d = _folders(scs[0], ref, out)
        cols = {sc.name: ENERGY_COLUMNS[10][sc.name] for sc in scs}
        f["energy"] = _energy({s: d[s] / "component_energy.tsv" for s in SIMULATORS}, cols)
        ept = {s: read_table(d[s] / "energy_per_token.tsv").iloc[0] for s in SIMULATORS}
        f["energy_per_token"] = pd.DataFrame({s: [float(ept[s].get(c, math.nan)) for c in cols.values()]
                                              for s in SIMULATORS}, index=pd.Index(list(cols.values()), name="config"))
    return f


def _latency_table(scs: list[Scenario], ref: Path, out: Path) -> pd.DataFrame:
    """Rows (scenario, metric); a column per system: vLLM, the peers of Fig 8, both simulators."""
    rows = []
    for sc in scs:
        d = _folders(sc, ref, out)
        real = read_table(d[REAL] / f"{sc.name}_latency.tsv")
        by = {}
        if "framework" in real.columns:
            for _, r in real.iterrows():
                by[str(r["framework"])] = r
        else:
            by[REAL] = real.iloc[0]
        by[THEIRS] = read_table(d[THEIRS] / f"{sc.name}_latency.tsv").iloc[0]
        by[OURS] = read_table(d[OURS] / f"{sc.name}_latency.tsv").iloc[0]
        for metric, col in LATENCY_METRICS.items():
            if col not in by[REAL].index:
                continue
            rows.append({"scenario": sc.name, "metric": metric,
                         **{name: float(r[col]) if col in r.index else math.nan for name, r in by.items()}})
    return pd.DataFrame(rows).set_index(["scenario", "metric"])


def _sim_times(scs: list[Scenario], ref: Path, out: Path) -> pd.DataFrame:
    """Simulation wall time (s) per scenario; the artifact's ``LLMServingSim`` row there is 1.0."""
    rows = []
    for sc in scs:
        d = _folders(sc, ref, out)
        peers = read_table(d[REAL] / f"{sc.name}_sim_time.tsv").set_index("framework")["simulation_time_s"]
        row = {"scenario": sc.name, "LLMServingSim 1.0": float(peers.get("LLMServingSim", math.nan))}
        row.update({p: float(peers.get(p, math.nan)) for p in PEERS})
        for s in SIMULATORS:
            row[s] = float(read_table(d[s] / f"{sc.name}_sim_time.tsv").iloc[0, 0])
        rows.append(row)
    return pd.DataFrame(rows).set_index("scenario")


def normalised(latency: pd.DataFrame) -> pd.DataFrame:
    """Fig 8a: every system's value divided by vLLM's."""
    return latency.drop(columns=[REAL]).div(latency[REAL], axis=0)


def errors(figure: int, reference_dir: str | Path, out: str | Path, only: Iterable[str] | None = None) -> pd.DataFrame:
    """Both simulators' error against the real system on the same metric, one row per scenario and metric.

    Metrics: ``*_err_pct`` signed % error; ``*_nmae_pct`` sum |sim - real| / sum real (%);
    ``hit_mae_points`` mean absolute difference of hit rates. Figure 10 has no real system: its rows
    are the facts themselves (energy per token, completion time, peak throughput).
    """
    rows = [{"scenario": (f"{s.scenario.hardware}/" if s.scenario.hardware else "") + s.scenario.name, "metric": k,
             THEIRS: s.theirs.get(k, math.nan), OURS: v}
            for s in compare(figure, reference_dir, out, only) for k, v in s.ours.items()]
    return pd.DataFrame(rows, columns=["scenario", "metric", THEIRS, OURS]).set_index(["scenario", "metric"])


# ---- the validation summary ----------------------------------------------------------------------

SUMMARY_COLUMNS = ["case", "metric", "error kind", REAL, THEIRS, OURS, f"{THEIRS} error", f"{OURS} error",
                   f"{THEIRS} wall s", f"{OURS} wall s"]


def _signed(sim: float, real: float) -> float:
    return (sim - real) / real * 100.0 if real else math.nan


def _nmae(sim: pd.Series, real: pd.Series) -> float:
    both = pd.concat([sim, real], axis=1).fillna(0.0)
    return float((both.iloc[:, 0] - both.iloc[:, 1]).abs().sum() / both.iloc[:, 1].sum() * 100.0)


def _overlap_nmae(sim: pd.Series, real: pd.Series) -> float:
    both = pd.concat([sim, real], axis=1).dropna()
    return float((both.iloc[:, 0] - both.iloc[:, 1]).abs().sum() / both.iloc[:, 1].sum() * 100.0)


def _row(case: str, metric: str, kind: str, real: float, values: dict[str, float], errs: dict[str, float],
         walls: dict[str, float]) -> dict:
    row = {"case": case, "metric": metric, "error kind": kind, REAL: real}
    for s in SIMULATORS:
        row[s] = values.get(s, math.nan)
        row[f"{s} error"] = errs.get(s, math.nan)
        row[f"{s} wall s"] = walls.get(s, math.nan)
    return row


def figure_summary(figure: int, reference_dir: str | Path, out: str | Path, walls: dict[str, float],
                   only: Iterable[str] | None = None) -> list[dict]:
    """Summary rows of one figure (5-9). ``walls`` maps a scenario name (``A6000/MD``, ``SD``) to our
    simulation wall time; LLMServingSim 2.0's comes from the artifact where it recorded it (Fig 8)."""
    ref, out = Path(reference_dir), Path(out)
    f = frames(figure, ref, out, only)
    rows: list[dict] = []
    theirs_wall: dict[str, float] = {}
    if figure == 8:
        theirs_wall = f["sim_time"][THEIRS].to_dict()
    for sc in select(figure, only):
        key = f"{sc.hardware}/{sc.name}" if sc.hardware else sc.name
        case = f"Fig {figure} {key}"
        w = {OURS: walls.get(key, math.nan), THEIRS: theirs_wall.get(sc.name, math.nan)}
        if figure in (5, 9):
            s = f[key]
            rows.append(_row(case, "output tokens", "signed %", s[REAL].sum(),
                             {x: s[x].sum() for x in SIMULATORS},
                             {x: _signed(s[x].sum(), s[REAL].sum()) for x in SIMULATORS}, w))
            rows.append(_row(case, "throughput per second (tok/s)", "NMAE %", math.nan, {},
                             {x: _nmae(s[x], s[REAL]) for x in SIMULATORS}, w))
        if figure in (8, 9):
            lat = f["latency"].loc[sc.name]
            for metric, r in lat.iterrows():
                rows.append(_row(case, metric, "signed %", r[REAL], {x: r[x] for x in SIMULATORS},
                                 {x: _signed(r[x], r[REAL]) for x in SIMULATORS}, w))
        if figure == 6:
            s = f[f"power_{sc.name}"].dropna()
            rows.append(_row(case, "energy (J)", "signed %", s[REAL].sum(), {x: s[x].sum() for x in SIMULATORS},
                             {x: _signed(s[x].sum(), s[REAL].sum()) for x in SIMULATORS}, w))
            rows.append(_row(case, "server power per second (W)", "NMAE %", math.nan, {},
                             {x: _overlap_nmae(s[x], s[REAL]) for x in SIMULATORS}, w))
        if figure == 7:
            names = ["SD+PC"] if sc.name == "SD+PC" else [f"{sc.name}_{x}" for x in ("inst0", "inst1", "shared_cpu")]
            for nm in names:
                c = f"Fig 7 {nm}"
                mem, hit = f[f"{nm}/memory"].dropna(), f[f"{nm}/hit"].dropna()
                end = mem.iloc[-1]
                rows.append(_row(c, "memory at the end (MiB)", "signed %", end[REAL], {x: end[x] for x in SIMULATORS},
                                 {x: _signed(end[x], end[REAL]) for x in SIMULATORS}, w))
                rows.append(_row(c, "memory per second (MiB)", "NMAE %", math.nan, {},
                                 {x: _overlap_nmae(mem[x], mem[REAL]) for x in SIMULATORS}, w))
                last = hit.iloc[-1]
                rows.append(_row(c, "prefix hit rate at the end (%)", "difference, points", last[REAL],
                                 {x: last[x] for x in SIMULATORS}, {x: last[x] - last[REAL] for x in SIMULATORS}, w))
                rows.append(_row(c, "prefix hit rate per second (%)", "MAE, points", math.nan, {},
                                 {x: float((hit[x] - hit[REAL]).abs().mean()) for x in SIMULATORS}, w))
    return rows


_SUMMARY_LINE = re.compile(r"^(TTFT|TPOT|Latency)\s+(Mean|Median|P\d+)\s+([-\d.]+)\s+([-\d.]+)\s+[-+\d.]+%\s*$")


def reference_summary(path: Path) -> dict[str, tuple[float, float]]:
    """LLMServingSim 2.0's ``validation/summary.txt``: {"TTFT Mean": (vLLM, simulated)} in ms."""
    if not path.is_file():
        raise InputError("file does not exist", path)
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SUMMARY_LINE.match(line.strip())
        if m:
            out[f"{m[1]} {m[2]}"] = (float(m[3]), float(m[4]))
    if not out:
        raise InputError("no 'Metric vLLM Sim Diff%' rows found", path)
    return out


def measurement_summary(report: dict, folder: Path) -> list[dict]:
    """Summary rows of one bench measurement: our :func:`llmss_lab.validate.validate` report next to
    the reference simulator's ``validation/summary.txt`` on the same statistics."""
    theirs = reference_summary(folder / "validation" / "summary.txt")
    case = f"bench {folder.parent.name}/{folder.name}"
    names = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "Latency"}
    rows = []
    for key, v in report["metrics"].items():
        metric, stat = key.split("_", 1)
        label = f"{names[metric]} {stat.capitalize() if stat in ('mean', 'median') else stat.upper()}"
        t = theirs.get(label)
        rows.append(_row(case, f"{label} (ms)", "signed %", v["vllm"],
                         {OURS: v["sim"], THEIRS: t[1] if t else math.nan},
                         {OURS: v["diff_pct"], THEIRS: _signed(t[1], t[0]) if t else math.nan},
                         {OURS: report["sim_wall_s"]}))
    return rows


def measurement_folders(root: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """The bench measurement folders (``measurements/<HW>/<model>`` with a real vLLM run), all or those named."""
    base = bench_root(root) / "measurements"
    runs = [p.parent.parent for p in sorted(base.glob("*/*/vllm/requests.jsonl"))]
    found = {f"{d.parent.name}/{d.name}": d for d in runs}
    if names is None:
        if not found:
            log.warning("no bench measurements under %s: the summary has the paper figures only", base)
        return list(found.values())
    wanted = list(names)
    for w in wanted:
        if w not in found:
            raise InputError(f"no measurement {w!r} (have: {sorted(found)})", base, "measurements")
    return [found[w] for w in wanted]


SUMMARY_FIGURES = (5, 6, 7, 8, 9)     # figure 10 has no real system to score against


def summary_figures(value: Iterable[str | int] | str | None) -> list[int]:
    """The validation summary's ``figures`` parameter (a list, or a string as ``papermill -p`` passes it)
    as figure numbers, each one the summary can score."""
    names = as_names(value, "figures")
    bad = [n for n in names if n not in {str(f) for f in SUMMARY_FIGURES}]
    if bad:
        why = " (it has no real system to score against)" if bad[0] == "10" else ""
        raise InputError(f"the summary covers figures {list(SUMMARY_FIGURES)}, not {bad[0]!r}{why}", "parameters",
                         "figures")
    return [int(n) for n in names]


def summary(rows: Iterable[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=SUMMARY_COLUMNS)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """Mean |error| of each simulator per error kind, over the rows where both have a number."""
    both = table.dropna(subset=[f"{THEIRS} error", f"{OURS} error"])
    g = both.groupby("error kind")[[f"{THEIRS} error", f"{OURS} error"]]
    return g.agg(lambda x: float(np.mean(np.abs(x)))).assign(rows=g.size())


__all__ = ["REAL", "THEIRS", "OURS", "SIMULATORS", "LONG_NAMES", "PEERS", "SCENARIOS", "frames", "errors",
           "normalised", "figure_summary", "measurement_folders", "measurement_summary",
           "reference_summary", "summary", "summary_figures", "headline"]
