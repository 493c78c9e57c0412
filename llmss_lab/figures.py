"""The LLMServingSim 2.0 paper's validation scenarios, run by llmss_lab, written as the artifact's TSVs.

The reference folder is the paper artifact (``.../llmservingsim/ispass26``): cluster configs under
``figures/figure_N/[HW/]config/``, workloads under ``dataset/``, profiles in the older format.
Every scenario runs the real vLLM engine settings of the paper's measurements: chunked prefill
with 2048 batched tokens, block size 16, vLLM's default 256 sequences and 0.9 memory utilisation,
prefix caching only where the scenario enables it (SD+PC); requests go round robin across
instances. Output files have the names, columns and layout of the artifact's ``parsed/`` folders.

``compare`` scores the files against the artifact's ``reference/`` (real vLLM) and, for context,
scores LLMServingSim 2.0's own ``parsed/`` files the same way.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import xarray as xr

from .api import routes, simulate
from .config.cluster import load_cluster
from .config.engine import EngineConfig
from .errors import InputError
from .files import absent, check_writable_folder, kind_of, refuse_inside, replacing
from .instruments import RAW_FILES, Fig7Instruments, clock_offset
from .results.dataset import Results, bin_width
from .workload import load_trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    figure: int
    name: str                     # MD, SD, SD+PC, PDD, SM
    hardware: str | None          # sub-folder of the figure (figure 5), else None
    dataset: str
    prefix_caching: bool = False
    outputs: tuple[str, ...] = ("throughput",)
    config_name: str | None = None          # config file stem when it is not ``<name>_config``
    engine: tuple[tuple[str, object], ...] = ()    # engine settings beyond ENGINE
    options: tuple[tuple[str, object], ...] = ()   # further simulate() arguments
    sent_one_late: bool = False   # the real run's client sent each request at its predecessor's trace time

    @property
    def folder(self) -> str:
        return f"figure_{self.figure}" + (f"/{self.hardware}" if self.hardware else "")

    @property
    def config(self) -> str:
        return f"figures/{self.folder}/config/{self.config_name or self.name + '_config'}.json"

    @property
    def label(self) -> str:
        return f"figure {self.figure} {self.hardware + ' ' if self.hardware else ''}{self.name}"


def _dataset(model: str) -> str:
    return f"dataset/sharegpt_req300_rate10_{model}.jsonl"


# How the real Fig 7 series were sampled: (memory period, hit-rate period) in seconds, each read off the
# timestamps in the artifact's raw_data/ (tests/test_figures.py recomputes them). GPU memory (and the MD hit rate)
# are vLLM's /metrics scraped every ~1.02 s (kv_metrics_*.csv); the SD+PC hit rate is vLLM's 1 s log line; the
# shared pool is LMCache's log line. A series starts at the sampler's first tick after its instance's first prefix
# lookup (the pool: after its first stored chunk); that tick can fall anywhere in the period, and we take the middle.
SAMPLERS = {"SD+PC": (1.0265, 1.0), "MD+PC+PS_inst0": (1.0222, 1.0222), "MD+PC+PS_inst1": (1.0222, 1.0222),
            "MD+PC+PS_shared_cpu": (1.0125, 1.0125)}
FINE_S = 0.01   # memory sample spacing of the Fig 7 runs, so the samplers' instants can be read off

SCENARIOS: dict[int, list[Scenario]] = {
    5: [Scenario(5, name, hw, _dataset({"A6000": "phi", "H100": "mixtral"}[hw] if name == "SM" else "llama"),
                 prefix_caching=name == "SD+PC")
        for hw in ("A6000", "H100") for name in ("MD", "SD+PC", "PDD", "SM")],
    8: [Scenario(8, name, None, _dataset("mixtral" if name == "SM" else "llama"), outputs=("latency", "sim_time"))
        for name in ("SD", "MD", "PDD", "SM")],
    9: [Scenario(9, "SD", None, _dataset("llama"), outputs=("throughput", "latency"))],
    # Fig 6: vLLM 0.11.1 defaults, prefix caching off; the trace's three bursts of ten, as sent: 11, 10, 9
    6: [Scenario(6, f"tp{tp}", None, "dataset/sharegpt_pulse_req10_n3_delay60.jsonl", outputs=("power",),
                 config_name=f"power_config_tp{tp}", sent_one_late=True) for tp in (1, 2)],
    # Fig 7: vLLM 0.13 with max_num_seqs 128 and max_model_len 2048; LMCache as a CPU pool shared by both
    7: [Scenario(7, name, None, "dataset/sharegpt_pulse_req50_n6_delay15_pc.jsonl", prefix_caching=True,
                 outputs=("memory",), engine=(("max_num_seqs", 128), ("max_model_len", 2048)),
                 options=((("prefix_storage", "cpu"), ("prefix_sharing", "node")) if name == "MD+PC+PS" else ())
                 + (("memory_sample_s", FINE_S),), sent_one_late=True)
        for name in ("SD+PC", "MD+PC+PS")],
    # Fig 10: 256 fixed requests (128 in, 512 out), GPU only vs decode attention on HBM2 PIM
    10: [Scenario(10, name, None, "dataset/fixed_in128_out512_req256_rate10.jsonl", outputs=("pim",),
                  config_name="gpu_only_config" if name == "gpu_only" else "pim_config",
                  options=(("attn_offload", name != "gpu_only"), ("sub_batch_interleaving", name == "pim_sbi")))
         for name in ("gpu_only", "pim", "pim_sbi")],
}
# The artifact's component names (figures 6 and 10) for the power model's components.
COMPONENT_LABELS = {"Others": "base_node", "GPU": "npu", "CPU": "cpu", "Memory": "dram", "Link": "link",
                    "NIC": "nic", "Storage": "storage"}
ENERGY_COLUMNS = {6: {"tp1": "TP 1", "tp2": "TP 2"}, 10: {"gpu_only": "gpu-only", "pim": "pim", "pim_sbi": "pim-sbi"}}

ENGINE = EngineConfig(max_num_seqs=256, max_num_batched_tokens=2048, block_size=16, gpu_memory_utilization=0.9,
                      enable_chunked_prefill=True)


def artifact_root(reference_dir: str | Path | None = None) -> Path:
    """The paper artifact folder: ``reference_dir`` itself, or its ``ispass26`` sub-folder
    (so the same reference root serves the bench measurements and the paper figures)."""
    from .reference import resolve_reference_dir

    ref = resolve_reference_dir(reference_dir)
    if not (ref / "figures").is_dir() and (ref / "ispass26" / "figures").is_dir():
        ref = ref / "ispass26"
    return ref


def as_names(value: Iterable[str | int] | str | None, key: str) -> list[str]:
    """A list of names from a list, a comma-separated string or a JSON list (as ``papermill -p`` passes it)."""
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise InputError(f"not a list of names: {value!r}", "parameters", key) from None
        else:
            return [v.strip() for v in text.split(",") if v.strip()]
    if not isinstance(value, Iterable):          # papermill -p figures 3.5, or a JSON number
        raise InputError(f"expected a list of names, got {value!r}", "parameters", key)
    names = list(value)
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in names):
        raise InputError(f"expected names, got {names!r}", "parameters", key)
    return [str(v) for v in names]


def scenario_filter(scenarios: Iterable[str] | str | None = None,
                    hardware: Iterable[str] | str | None = None) -> list[str] | None:
    """The ``only`` list for :func:`select` from a notebook's ``scenarios`` and (figure 5) ``hardware``
    parameters; None when both are empty (every scenario)."""
    sc, hw = as_names(scenarios, "scenarios"), as_names(hardware, "hardware")
    rows = sorted({s.hardware for scs in SCENARIOS.values() for s in scs if s.hardware})
    for h in hw:
        if h not in rows:
            near = [r for r in rows if r.casefold() == h.casefold()]
            hint = f"; names are case-sensitive: did you mean {near[0]!r}?" if near else ""
            raise InputError(f"no figure has a row on {h!r}; rows: {', '.join(rows)}{hint}", "hardware", h)
    if not hw:
        return sc or None
    return [f"{h}/{s}" for h in hw for s in sc] if sc else hw


def select(figure: int, only: Iterable[str] | None = None) -> list[Scenario]:
    """The scenarios of a figure, or those named in ``only`` (``MD`` or ``A6000/MD``)."""
    if isinstance(figure, bool) or figure not in SCENARIOS:
        kind = f" (a {type(figure).__name__}: give the number)" if isinstance(figure, str) else ""
        raise InputError(f"figure data exists for figures {sorted(SCENARIOS)}{kind}", "figure", str(figure))
    scs = SCENARIOS[figure]
    if only is None:
        return list(scs)
    if isinstance(only, str) or not isinstance(only, Iterable) or not all(isinstance(w, str) for w in only):
        raise InputError(f"expected a list of scenario names such as ['MD', 'A6000/SD+PC'], got {only!r}",
                         "scenarios", "only")
    wanted = list(only)
    keys = {sc: {sc.name} | ({sc.hardware, f"{sc.hardware}/{sc.name}"} if sc.hardware else set()) for sc in scs}
    unknown = [w for w in wanted if not any(w in k for k in keys.values())]
    if unknown:
        _unknown_scenario(figure, unknown[0], keys)
    return [sc for sc in scs if keys[sc] & set(wanted)]


def _unknown_scenario(figure: int, word: str, keys: dict[Scenario, set[str]]) -> None:
    """Name a word of ``only`` no scenario answers to, as the hardware or the scenario parameter it came
    from (a figure 5 notebook builds ``H100/MD`` from both), with the right spelling if only the case is off."""
    hardware = sorted({sc.hardware for sc in keys if sc.hardware})
    names = sorted({sc.name for sc in keys})
    hw, _, name = word.rpartition("/")
    folded = {h.casefold() for h in hardware}
    if hardware and ((hw and hw not in hardware) or (not hw and word.casefold() in folded)):
        param, bad, have = "hardware", hw or word, hardware
    else:
        split = bool(hw) and hw in hardware       # a known hardware with an unknown scenario: name the scenario
        param, bad = "scenarios", name if split else word
        have = names if split else names + [f"{h}/{n}" for h in hardware for n in names]
    near = [h for h in have if h.casefold() == bad.casefold()]
    hint = f"; names are case-sensitive: did you mean {near[0]!r}?" if near else ""
    what = "hardware" if param == "hardware" else "scenario"
    raise InputError(f"no {what} {bad!r} in figure {figure} (it has {have}){hint}", param, bad)


def run_scenario(sc: Scenario, reference_dir: Path, num_requests: int | None = None, seed: int = 0,
                 **settings) -> Results:
    """Run one paper scenario; ``num_requests`` keeps the first N requests of its trace (quick looks); ``settings``
    go to :func:`simulate` (``latency="analytical"``: the paper's cases on the analytical model)."""
    ref = Path(reference_dir)
    cfg = ref / sc.config
    if not cfg.is_file():
        raise InputError(f"not the paper artifact folder: {sc.config} is missing "
                         "(give the reference folder as .../llmservingsim or .../llmservingsim/ispass26)", ref)
    engine = ENGINE.with_overrides({"enable_prefix_caching": sc.prefix_caching, **dict(sc.engine)})
    workload = load_trace(ref / sc.dataset, num_requests)
    if sc.sent_one_late:
        workload = workload.sent_one_late()
    spec = load_cluster(cfg)
    # the artifact routes round-robin; with one instance (or one of each of a P/D pair) there is nothing to route
    router = "round_robin" if routes([i.pd_type for i in spec.instances]) else "load_score"
    log.info("%s: cluster config %s, router %s", sc.label, cfg, router)
    return simulate(spec, workload, engine, reference_dir=ref, router=router, seed=seed, **dict(sc.options), **settings)


# The figures' files read the results in numpy: xarray's ``isel``, ``sel`` and reductions build new coordinates,
# which xarray checks against dask's array type, and that imported dask, dask.array and scipy (0.45 s of CPU) into
# a process that has no dask arrays.
def row(da: xr.DataArray, dim: str, i: int) -> np.ndarray:
    """``da.isel({dim: i}).values``."""
    return np.take(da.values, i, axis=da.get_axis_num(dim))


def summed(da: xr.DataArray, dims: tuple[str, ...]) -> np.ndarray:
    """``da.sum(dims).values``: NaN skipped, as xarray skips it, by the same sum over the values with NaN as 0."""
    return np.nansum(da.values, axis=da.get_axis_num(dims))


def power_rows(res: Results) -> list[tuple[int, float]]:
    """Server power per second, as the artifact's files and the measured server power give it: row ``t`` is the
    mean power over [t, t+1) s of the run (the last second ends with the run). Bins of 1/n s (``bin_s`` 0.5, 0.25,
    ...) are summed into their second by energy; a wider bin cannot tell how its energy split between its seconds,
    so such a run is refused rather than spread evenly."""
    width = bin_width(res.power)
    per_second = round(1 / width)
    if not math.isclose(per_second * width, 1.0, rel_tol=1e-9):
        raise InputError(f"power per second needs bins that tile each second (1, 0.5, 0.25, ... s); this run's are "
                         f"{width:g} s: run it with bin_s=1", "power", "bin_s")
    p = summed(res.power.power, ("node", "component"))
    spans = np.diff(res.power.time.values, prepend=0.0)   # bins are labelled by their end; the last ends the run
    second = np.arange(len(p)) // per_second
    energy, covered = np.bincount(second, p * spans), np.bincount(second, spans)
    return [(t, float(e / d)) for t, (e, d) in enumerate(zip(energy, covered)) if d > 0]


def periodic_instants(res: Results, instance: int | None = None, pool: int | None = None,
                      periods: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Memory and hit-rate instants of a sampler with the given periods, when the real instants are not
    at hand: row ``k`` at ``start + period / 2 + k x period``, where ``start`` is the instance's first
    prefix lookup (a pool's first stored chunk), until the run ends."""
    m = res.memory
    t = m.time.values
    if pool is None:
        r = res.requests
        mine = r.instance.values == instance   # an instance given no request starts with the run's first
        start = float(r.scheduled.values[mine].min() if mine.any() else r.scheduled.values.min())
    else:
        stored = np.flatnonzero(row(m.pool_used, "pool", pool) > 0)
        start = float(t[stored[0]]) if len(stored) else float(t[0])
    n = int((t[-1] - start) / max(periods) - 0.5)
    mem_at, hit_at = (start + p * (0.5 + np.arange(n)) for p in periods)
    return mem_at, hit_at


def lookup_counters(res: Results) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per instance: when prompts were first looked up (scheduled) and the prompt tokens looked up so far."""
    r = res.requests
    out = []
    for i in range(res.memory.sizes["instance"]):
        mine = r.instance.values == i
        t, n = r.scheduled.values[mine], r.input_tokens.values[mine]
        order = np.argsort(t, kind="stable")
        out.append((t[order], np.cumsum(n[order])))
    return out


def memory_rows(res: Results, instance: int | None, pool: int | None,
                mem_at: np.ndarray, hit_at: np.ndarray) -> list[tuple[int, float, float]]:
    """Memory (MiB) and cumulative prefix-hit rate at the given simulated instants, row by row. The state
    at an instant is the sample that ends at or after it (samples end every ``memory_sample_s``); after
    the run it stays the last one."""
    m = res.memory
    t = m.time.values
    if pool is None:
        mem, hit = row(m.npu_used, "instance", instance), row(m.prefix_hit_pct, "instance", instance)
    else:
        mem, hit = row(m.pool_used, "pool", pool), row(m.pool_hit_pct, "pool", pool)
    n = min(len(mem_at), len(hit_at))
    a, b = (np.minimum(np.searchsorted(t, np.asarray(x[:n]), side="left"), len(t) - 1) for x in (mem_at, hit_at))
    return [(k, float(x), float(y)) for k, (x, y) in enumerate(zip(mem[a], hit[b]))]


def fig7_series(res: Results, sc: Scenario, reference_dir: Path) -> dict[str, tuple[int | None, int | None,
                                                                                 np.ndarray, np.ndarray]]:
    """Each series of a Fig 7 scenario: its instance (or pool) and its (memory, hit-rate) instants in
    simulated time. They are the real instruments' own instants (``llmss_lab.instruments``) when the
    artifact has its raw data, else periodic sampling at the middle phase (``SAMPLERS``)."""
    targets = {"SD+PC": (0, None)} if sc.name == "SD+PC" else \
        {**{f"{sc.name}_inst{i}": (i, None) for i in range(res.memory.sizes["instance"])},
         f"{sc.name}_shared_cpu": (None, 0)}
    raw = Path(reference_dir) / "figures/figure_7/raw_data" / sc.name
    if sc.name in RAW_FILES and raw.is_dir():
        real = Fig7Instruments.read(raw, sc.name)
        shift = clock_offset(real.scrapes, lookup_counters(res))
        out = {}
        for n, (inst, pool) in targets.items():
            if pool is None:
                mem, hit = real.scrapes[inst].time, real.hit_instants[inst]
            else:
                mem, hit = real.pool_instants, real.pool_hit_instants()
            out[n] = (inst, pool, mem - shift, hit - shift)
        return out
    log.warning("%s has no raw data: sampling Fig 7 at the middle of each instrument's period", raw)
    return {n: (inst, pool, *periodic_instants(res, inst, pool, SAMPLERS[n])) for n, (inst, pool) in targets.items()}


def energy_by_label(res: Results) -> dict[str, float]:
    e = res.power.energy
    by_component = dict(zip(e.component.values.tolist(), summed(e, ("node",)).tolist()))
    return {label: by_component[comp] for label, comp in COMPONENT_LABELS.items()}


def throughput_rows(res: Results) -> list[tuple[int, float]]:
    """Generated tokens per second over all instances: row ``t`` holds the tokens of (t-1, t] s;
    row 0 is 0, as in the artifact's files."""
    ts = res.timeseries
    gen = summed(ts.generation_throughput, ("instance",))
    times = ts.time.values
    return [(0, 0.0)] + [(int(round(t)), float(g)) for t, g in zip(times, gen)]


def latency_row(res: Results) -> dict[str, float]:
    s = res.summary()
    return {"throughput_tok_s": s["output_throughput"], "mean_ttft_ms": s["mean_ttft_ms"],
            "mean_tpot_ms": s["mean_tpot_ms"], "mean_itl_ms": s["mean_itl_ms"]}


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_figure_data(figure: int, reference_dir: str | Path, out: str | Path,
                      on_scenario: Callable[[Scenario, float], None] | None = None,
                      only: Iterable[str] | None = None, num_requests: int | None = None,
                      seed: int = 0) -> list[Path]:
    """Run the scenarios of a figure (all, or those in ``only``) and write their TSVs under
    ``out/figure_N/...``; returns the files. ``on_scenario`` hears each scenario's wall time."""
    refuse_inside(out, reference_dir, "the paper artifact", "out")
    out = check_writable_folder(out, "out")     # before the first simulation, not after it
    written = []
    energies: dict[str, tuple[dict[str, float], float]] = {}
    for sc in select(figure, only):
        t0 = time.perf_counter()
        res = run_scenario(sc, Path(reference_dir), num_requests, seed)
        wall = time.perf_counter() - t0
        parsed = Path(out) / sc.folder / "parsed"
        if "throughput" in sc.outputs:
            p = parsed / f"{sc.name}_throughput.tsv"
            _write_tsv(p, ["time_s", "throughput"], [[t, f"{g:.1f}"] for t, g in throughput_rows(res)])
            written.append(p)
        if "latency" in sc.outputs:
            row = latency_row(res)
            p = parsed / f"{sc.name}_latency.tsv"
            _write_tsv(p, list(row), [[f"{v:.2f}" for v in row.values()]])
            written.append(p)
        if "sim_time" in sc.outputs:
            p = parsed / f"{sc.name}_sim_time.tsv"
            _write_tsv(p, ["simulation_time_s"], [[f"{wall:.3f}"]])
            written.append(p)
        if "power" in sc.outputs:
            p = parsed / f"power_{sc.name}.tsv"
            _write_tsv(p, ["time_s", "power_w"], [[t, f"{w:.2f}"] for t, w in power_rows(res)])
            written.append(p)
        if "memory" in sc.outputs:
            for fname, (inst, pool, mem_at, hit_at) in fig7_series(res, sc, Path(reference_dir)).items():
                header = ["time_s", "gpu_mem_mb", "prefix_hit_pct"] if pool is None else \
                    ["time_s", "shared_cpu_mem_mb", "shared_cpu_prefix_hit_pct"]
                p = parsed / f"{fname}.tsv"
                rows = memory_rows(res, inst, pool, mem_at, hit_at)
                _write_tsv(p, header, [[t, f"{a:.2f}", f"{b:.2f}"] for t, a, b in rows])
                written.append(p)
        if "pim" in sc.outputs:
            p = parsed / f"{sc.name}_b256_throughput.tsv"
            _write_tsv(p, ["time_s", "throughput"], [[t, f"{g:.1f}"] for t, g in throughput_rows(res)])
            written.append(p)
        if figure in ENERGY_COLUMNS:
            energies[ENERGY_COLUMNS[figure][sc.name]] = (energy_by_label(res), res.power.attrs["energy_per_output_token_J"])
        if on_scenario is not None:
            on_scenario(sc, wall)
    if energies:
        parsed = Path(out) / f"figure_{figure}" / "parsed"
        cols = list(energies)
        p = parsed / "component_energy.tsv"
        _write_tsv(p, ["component", *cols], [[label, *(f"{energies[c][0][label]:.2f}" for c in cols)]
                                             for label in COMPONENT_LABELS])
        written.append(p)
        if figure == 10:
            p = parsed / "energy_per_token.tsv"
            _write_tsv(p, cols, [[repr(energies[c][1]) for c in cols]])
            written.append(p)
    return written


# ---- scoring -------------------------------------------------------------------------------------

NOT_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
LATENCY_KEYS = ("throughput_tok_s", "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms")
NOT_MEASURED = "X"   # a cell of Fig 8's reference tables: that system could not run the scenario

Row = tuple[int, dict[str, str]]   # a data row and its line number in the file


def _read_table(path: Path) -> tuple[list[str], list[Row]]:
    """Header and data rows (with their line numbers) of a figure table. Refuses what would crash or
    mis-score later, naming the line: bytes that are not UTF-8, no data rows, a row whose field count is
    not the header's (a line cut short), a repeated column, a NaN or infinite cell. Blank lines are skipped."""
    if why := absent(path):
        raise InputError(why, path)
    if not path.is_file():   # a pipe would block the read
        raise InputError(f"is {kind_of(path)}, expected a file", path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {raw[exc.start]:#04x})", path, f"line {line}") from None
    # QUOTE_NONE: a stray quote stays in its cell (and fails as a number) instead of swallowing lines
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None:
        raise InputError("no rows (the file is empty)", path)
    twice = next((h for h in header if header.count(h) > 1), None)
    if twice is not None:
        raise InputError(f"column {twice!r} appears twice", path, "line 1")
    rows: list[Row] = []
    for fields in reader:
        if not fields:
            continue
        line = reader.line_num
        if len(fields) != len(header):
            raise InputError(f"expected {len(header)} fields, got {len(fields)}", path, f"line {line}")
        row = dict(zip(header, fields))
        bad = next((k for k, v in row.items() if v.strip().lower() in NOT_FINITE), None)
        if bad is not None:
            raise InputError(f"column {bad!r}: not a finite number: {row[bad]!r}", path, f"line {line}")
        rows.append((line, row))
    if not rows:
        raise InputError("no rows (only a header)", path)
    return header, rows


def read_tsv(path: Path) -> list[dict[str, str]]:
    """A figure table's rows, checked as :func:`_read_table` does, so no score turns into nan or a crash."""
    return [row for _, row in _read_table(path)[1]]


def _require(path: Path, header: list[str], columns: Iterable[str]) -> None:
    missing = next((c for c in columns if c not in header), None)
    if missing is not None:
        raise InputError(f"no column {missing!r} (the header has {header})", path, "line 1")


def _number(path: Path, line: int, row: dict[str, str], column: str) -> float:
    """A cell as a number; every quantity of these tables (seconds, tokens/s, ms, W, MiB, %, J) is >= 0."""
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"column {column!r}: not a number: {text!r}", path, f"line {line}") from None
    if value < 0:
        raise InputError(f"column {column!r} is negative ({text.strip()})", path, f"line {line}")
    return value


def _nonzero(total: float, path: Path, column: str) -> float:
    """A reference total the error is divided by: 0 cannot be scored against."""
    if total == 0:
        raise InputError(f"column {column!r} is 0 on every row; cannot score against it", path)
    return total


def throughput_series(path: Path) -> dict[int, float]:
    """Tokens per second by second of a ``time_s, throughput`` table. Seconds must be whole and
    increasing: a repeated, shuffled or fractional second would be silently merged or misaligned."""
    header, rows = _read_table(path)
    _require(path, header, ("time_s", "throughput"))
    out: dict[int, float] = {}
    last: float | None = None
    for line, row in rows:
        t = _number(path, line, row, "time_s")
        if t != int(t):
            raise InputError(f"column 'time_s' is not a whole second: {row['time_s']!r}", path, f"line {line}")
        if last is not None and t <= last:
            raise InputError(f"column 'time_s' does not increase ({t:g} after {last:g})", path, f"line {line}")
        out[int(t)] = _number(path, line, row, "throughput")
        last = t
    return out


def throughput_error(sim: Path, real: Path) -> float:
    """Normalised mean absolute error of per-second throughput: sum |sim - real| / sum real, over
    every second either file covers (a second one file lacks counts as 0)."""
    a, b = throughput_series(sim), throughput_series(real)
    if b[max(b)] != 0:
        # a real run is recorded until it drains (every artifact file ends at 0): a file cut short does not
        log.warning("%s: the last second has %g tok/s, not 0: is the file cut short?", real, b[max(b)])
    secs = sorted(set(a) | set(b))
    num = sum(abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in secs)
    den = _nonzero(sum(b.values()), real, "throughput")
    return num / den * 100.0


def _system_row(path: Path) -> Row:
    """The vLLM row of a latency table: the row whose ``framework`` is vLLM when the table lists several
    systems (Fig 8's reference), else its only row. Never a guess: a missing or ambiguous row is an error."""
    header, rows = _read_table(path)
    if "framework" in header:
        vllm = [(line, r) for line, r in rows if r["framework"].strip() == "vLLM"]
        if not vllm:
            systems = [r["framework"] for _, r in rows]
            raise InputError(f"no vLLM row (column 'framework' has {systems})", path)
        if len(vllm) > 1:
            raise InputError("a second vLLM row", path, f"line {vllm[1][0]}")
        return vllm[0]
    if len(rows) > 1:
        raise InputError(f"expected one row, got {len(rows)} (and no 'framework' column naming the vLLM one)",
                         path, f"line {rows[1][0]}")
    return rows[0]


def latency_errors(sim: Path, real: Path) -> dict[str, float]:
    """Signed % error of each latency-table metric against the vLLM row of ``real``; a metric ``real``
    lacks (Fig 8 has no ITL) or marks ``X`` (not measured) is left out."""
    sim_line, s = _system_row(sim)
    real_line, r = _system_row(real)
    _require(sim, list(s), LATENCY_KEYS)
    _require(real, list(r), LATENCY_KEYS[:3])
    out = {}
    for key in LATENCY_KEYS:
        if key not in r or r[key].strip() == NOT_MEASURED:
            continue
        want = _number(real, real_line, r, key)
        if want == 0:
            raise InputError(f"column {key!r} is 0; cannot score against it", real, f"line {real_line}")
        out[key] = (_number(sim, sim_line, s, key) - want) / want * 100.0
    return out


def _columns(path: Path, n: int | None = None) -> tuple[list[str], list[list[float]]]:
    """The header and columns of an all-numeric table (of ``n`` columns, when given)."""
    header, rows = _read_table(path)
    if n is not None and len(header) != n:
        raise InputError(f"expected {n} columns, got {len(header)} ({header})", path, "line 1")
    return header, [[_number(path, line, r, k) for line, r in rows] for k in header]


def power_errors(sim: Path, real: Path) -> dict[str, float]:
    """Total energy error and per-second NMAE of power, over the seconds both traces cover."""
    _, (_, a) = _columns(sim, 2)
    header, (_, b) = _columns(real, 2)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    total = _nonzero(sum(b), real, header[1])
    return {"energy_err_pct": (sum(a) - sum(b)) / total * 100.0,
            "power_nmae_pct": sum(abs(x - y) for x, y in zip(a, b)) / total * 100.0}


def memory_errors(sim: Path, real: Path) -> dict[str, float]:
    """Memory NMAE (%) and mean absolute prefix-hit error (points), over the seconds both cover."""
    _, (_, ma, ha) = _columns(sim, 3)
    header, (_, mb, hb) = _columns(real, 3)
    n = min(len(ma), len(mb))
    total = _nonzero(sum(mb[:n]), real, header[1])
    return {"memory_nmae_pct": sum(abs(x - y) for x, y in zip(ma[:n], mb[:n])) / total * 100.0,
            "hit_mae_points": sum(abs(x - y) for x, y in zip(ha[:n], hb[:n])) / n}


def pim_facts(parsed: Path, name: str) -> dict[str, float]:
    """Figure 10 has no real measurement: its facts are compared with LLMServingSim 2.0's."""
    path = parsed / f"{name}_b256_throughput.tsv"
    _, (t, g) = _columns(path, 2)
    busy = [s for s, x in zip(t, g) if x > 0]
    if not busy:
        raise InputError("column 'throughput' is 0 on every row: no token was generated", path)
    label = ENERGY_COLUMNS[10][name]
    ept_path = parsed / "energy_per_token.tsv"
    header, values = _columns(ept_path)
    _require(ept_path, header, (label,))
    return {"energy_per_token_J": values[header.index(label)][0], "completion_s": max(busy),
            "peak_throughput_tok_s": max(g)}


@dataclass
class Score:
    scenario: Scenario
    ours: dict[str, float] = field(default_factory=dict)
    theirs: dict[str, float] = field(default_factory=dict)   # LLMServingSim 2.0's parsed/ files


def compare(figure: int, reference_dir: str | Path, out: str | Path, only: Iterable[str] | None = None) -> list[Score]:
    """Score written figure data (and the artifact's own simulator output) against real vLLM."""
    ref = Path(reference_dir)
    scores = []
    for sc in select(figure, only):
        real_dir = ref / "figures" / sc.folder / "reference"
        log.info("%s: scored against real vLLM in %s and LLMServingSim 2.0 in %s", sc.label, real_dir,
                 ref / "figures" / sc.folder / "parsed")
        score = Score(sc)
        for who, base in (("ours", Path(out) / sc.folder / "parsed"), ("theirs", ref / "figures" / sc.folder / "parsed")):
            d = getattr(score, who)
            if "power" in sc.outputs:
                d.update(power_errors(base / f"power_{sc.name}.tsv", real_dir / f"server_power_{sc.name}.tsv"))
            if "memory" in sc.outputs:
                names = ["SD+PC"] if sc.name == "SD+PC" else [f"{sc.name}_{x}" for x in ("inst0", "inst1", "shared_cpu")]
                for nm in names:
                    d.update({f"{nm} {k}": v for k, v in memory_errors(base / f"{nm}.tsv", real_dir / f"{nm}.tsv").items()})
            if "pim" in sc.outputs:
                d.update(pim_facts(base, sc.name))
            if "throughput" in sc.outputs:
                d["throughput_nmae_pct"] = throughput_error(base / f"{sc.name}_throughput.tsv",
                                                            real_dir / f"{sc.name}_throughput.tsv")
            if "latency" in sc.outputs:
                d.update({f"{k}_err_pct": v for k, v in latency_errors(base / f"{sc.name}_latency.tsv",
                                                                        real_dir / f"{sc.name}_latency.tsv").items()})
        scores.append(score)
    return scores


def format_scores(scores: list[Score]) -> str:
    lines = [f"{'scenario':<22} {'metric':<40} {'llmss_lab':>10} {'LLMServingSim 2.0':>18}"]
    for s in scores:
        for k, v in s.ours.items():
            theirs = s.theirs.get(k, math.nan)
            fmt = "{:>+10.4f}" if k.endswith("_J") else "{:>+10.2f}"
            lines.append(f"{s.scenario.label:<22} {k:<40} {fmt.format(v)} {fmt.format(theirs):>18}")
    return "\n".join(lines)
