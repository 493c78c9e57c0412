"""Validation against a real vLLM run recorded by LLMServingSim's bench harness.

A measurement folder holds ``config.json`` (the cluster config), ``vllm/meta.json`` (engine
settings, dataset path, request count), ``vllm/requests.jsonl`` (per-request timestamps) and
``vllm/timeseries.csv``. Both sides are measured the same way, from the moment the engine took the
request in: vLLM stamps ``queued_ts`` (its ``arrival_time`` is wall-clock epoch time, another clock),
and the simulator records when its engine loop took the request in.

* TTFT = first token - queued;  E2E latency = last token - queued;
* TPOT = (last token - first token) / (output tokens - 1), for requests with > 1 output token;
* mean, median, P90, P95, P99 (linear interpolation between order statistics);
* Diff % = (sim - vLLM) / vLLM x 100, and the mean of |Diff %| over the 15 numbers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config.cluster import ClusterSpec, load_cluster
from .config.engine import EngineConfig
from .config.reader import Section, read_json, read_text
from .errors import InputError
from .files import absent, kind_of, permission_named
from .reference import ReferenceLayout
from .results.dataset import Results
from .results.metrics import STATS, describe, diff_pct, tpot_ms
from .workload import Workload, load_trace

log = logging.getLogger(__name__)

METRICS = ("ttft", "tpot", "e2e")
LABELS = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "Latency"}


@dataclass
class Measurement:
    folder: Path
    cluster_path: Path
    engine: EngineConfig
    dataset: Path
    num_requests: int | None
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray
    e2e_ms: np.ndarray
    workload: Workload      # what the simulation replays: the first ``num_requests`` of ``dataset``


ASYNC_DEFAULT_FROM = (0, 14)   # vLLM schedules asynchronously by default from this release


def _vllm_release(meta: Section) -> tuple[int, int] | None:
    version = meta.string("vllm_version", required=False, default=None)
    if version is None:
        return None
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise meta.error("vllm_version", f"expected a release such as 0.19.0, got {version!r}") from None


def _engine_from_meta(meta: Section) -> EngineConfig:
    """The run's engine settings: what ``engine_kwargs`` sets, and vLLM's defaults of the recorded
    release for the rest (async scheduling)."""
    kw = meta.section("engine_kwargs")
    settings: dict = {}
    release = _vllm_release(meta)
    if release is not None:
        settings["async_scheduling"] = release >= ASYNC_DEFAULT_FROM
    a = kw.boolean("async_scheduling", required=False, default=None)
    if a is not None:
        settings["async_scheduling"] = a
    for key in ("max_num_seqs", "max_num_batched_tokens", "max_model_len"):
        v = kw.integer(key, required=False, default=None, minimum=1)   # vLLM refuses 0
        if v is not None:
            settings[key] = v
    for key in ("dtype", "kv_cache_dtype"):
        v = kw.string(key, required=False, default=None)
        if v is not None:
            settings[key] = None if (key == "dtype" and v == "auto") else v
    kv = meta.section("kv_cache", required=False)  # newer bench runs record the KV set-up too
    if kv is not None:
        for key in ("num_gpu_blocks", "block_size"):
            v = kv.integer(key, required=False, default=None, minimum=1)
            if v is not None:
                settings[key] = v
        u = kv.number("gpu_memory_utilization", required=False, default=None, positive=True, maximum=1)
        if u is not None:
            settings["gpu_memory_utilization"] = u
        pc = kv.boolean("enable_prefix_caching", required=False, default=None)
        if pc is not None:
            settings["enable_prefix_caching"] = pc
    kv_keys = ("num_gpu_blocks", "block_size", "gpu_memory_utilization", "enable_prefix_caching")
    return EngineConfig().with_overrides(settings, meta.source,
                                         lambda k: f"kv_cache.{k}" if k in kv_keys else f"engine_kwargs.{k}")


def _check_meta_matches_cluster(meta: Section, cluster: ClusterSpec, cluster_path: Path) -> None:
    """The simulation runs ``config.json``; ``meta.json`` records what vLLM ran. If they name a
    different model or tensor parallelism, the comparison would be between two different set-ups."""
    kw = meta.section("engine_kwargs")
    recorded = [(meta, "model", meta.string("model", required=False, default=None)),
                (kw, "model", kw.string("model", required=False, default=None))]
    tp = kw.integer("tensor_parallel_size", required=False, default=None, minimum=1)
    pp = kw.integer("pipeline_parallel_size", required=False, default=None, minimum=1)
    dp = kw.integer("data_parallel_size", required=False, default=None, minimum=1)
    groups = Counter(inst.dp_group for inst in cluster.instances if inst.dp_group is not None)
    sim_dp = max(groups.values(), default=1)
    if dp is not None and dp != sim_dp:
        raise kw.error("data_parallel_size", f"the run used {dp} but {cluster_path} simulates "
                                             + (f"dp_groups of {sim_dp}" if groups else "no dp_group (1)"))
    for inst in cluster.instances:
        if pp is not None and pp != inst.pp_size:
            raise kw.error("pipeline_parallel_size", f"the run used {pp} but {cluster_path} ({inst.where}.pp_size) "
                                                     f"simulates {inst.pp_size}")
        for section, key, value in recorded:
            if value is not None and value != inst.model_name:
                raise section.error(key, f"the run used {value!r} but {cluster_path} ({inst.where}.model_name) "
                                         f"simulates {inst.model_name!r}")
        if tp is not None and tp != inst.tp_size:
            raise kw.error("tensor_parallel_size", f"the run used {tp} but {cluster_path} ({inst.where}.tp_size) "
                                                   f"simulates {inst.tp_size}")


MAX_REQUEST_S = 86_400.0   # a request served for over a day
TIMESTAMPS = ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts")  # in the order they must come


def _field(obj: dict, key: str, source: Path, where: str, whole: bool = False,
           required: bool = True) -> float | int | None:
    """One number of a requests.jsonl line; every error names the field (JSON allows NaN and Infinity)."""
    if obj.get(key) is None:
        if required:
            raise InputError(f"missing required key {key!r}", source, where)
        return None
    v = obj[key]
    if whole:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{key} must be a whole number >= 1, got {v!r}", source, where)
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{key} must be a finite number of seconds, got {v!r}", source, where)
    return float(v)


def _read_requests(req_path: Path, workload: Workload, dataset_note: str) -> np.ndarray:
    """The real run's (queued, first, last, output tokens) per request. The run must have replayed the
    simulated workload, request for request: else the statistics compare two different request sets."""
    rows = []
    last_line = 0
    for lineno, line in enumerate(read_text(req_path).splitlines(), start=1):
        if not line.strip():
            continue
        last_line = lineno
        where = f"line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}", req_path, where) from None
        except RecursionError:
            raise InputError("nested too deeply to read", req_path, where) from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object per line", req_path, where)
        ts = {k: _field(obj, k, req_path, where, required=k != "scheduled_ts") for k in TIMESTAMPS}
        present = [k for k in TIMESTAMPS if ts[k] is not None]
        for before, after in zip(present, present[1:]):
            if ts[after] < ts[before]:
                raise InputError(f"{after} {ts[after]!r} is earlier than {before} {ts[before]!r} "
                                 f"(expected {' <= '.join(TIMESTAMPS)})", req_path, where)
        span = ts["last_token_ts"] - ts["queued_ts"]
        if span > MAX_REQUEST_S:   # seconds; a bench run lasts minutes, so this is a unit slip (ms, ns)
            raise InputError(f"last_token_ts is {span:.3g} s after queued_ts; timestamps are in seconds",
                             req_path, where)
        n_out = _field(obj, "output_toks", req_path, where, whole=True)
        n_in = _field(obj, "input_toks", req_path, where, whole=True, required=False)
        i = len(rows)
        if i >= len(workload):
            raise InputError(f"more requests than the simulated workload, which has {len(workload)} "
                             f"({dataset_note})", req_path, where)
        for key, value, expected in (("input_toks", n_in, workload.input_toks[i]),
                                     ("output_toks", n_out, workload.output_toks[i])):
            if value is not None and value != expected:
                raise InputError(f"{key} {value} differs from the simulated workload's {expected} "
                                 f"({workload.where(i)} of {dataset_note})", req_path, where)
        rows.append((ts["queued_ts"], ts["first_token_ts"], ts["last_token_ts"], n_out))
    if not rows:
        raise InputError("no requests", req_path)
    if len(rows) < len(workload):
        raise InputError(f"ends after {len(rows)} requests, but the simulated workload has {len(workload)} "
                         f"({dataset_note})", req_path, f"line {last_line + 1}")
    out = np.array(rows)
    # the engine takes each request in as it arrives, so queued_ts spans about the trace's arrivals: far more
    # is a unit slip that the per-request bound misses (milliseconds: a 10 s request reads as 10,000 s)
    span, arrivals = np.ptp(out[:, 0]), float(np.ptp(workload.arrival_ns)) / 1e9
    if span > 10 * arrivals + 60:
        raise InputError(f"queued_ts spans {span:.4g} s, but the workload's arrivals span {arrivals:.4g} s; "
                         "timestamps are in seconds (milliseconds or another unit?)", req_path)
    return out


def read_measurement(folder: str | Path, layout: ReferenceLayout) -> Measurement:
    folder = Path(folder)
    if (why := absent(folder, "measurement folder")) and why != "measurement folder does not exist":
        raise InputError(why, folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"is {'a file' if folder.is_file() else kind_of(folder)}, not a measurement folder (give the "
                         "folder holding config.json and vllm/)", folder)
    if not folder.is_dir():   # `measurements/HW/MODEL` of the reference data, as a trace or cluster config is found
        if folder.is_absolute() or not layout.resolve(folder).is_dir():
            raise InputError("measurement folder does not exist" + ("" if folder.is_absolute() else
                             f" (looked in the current directory, {Path.cwd() / folder}, and in the reference folder, "
                             f"{layout.resolve(folder)})"), folder)
        folder = layout.resolve(folder)
    meta_path = folder / "vllm" / "meta.json"
    if not meta_path.is_file() and not (folder / "config.json").is_file():
        inside = sorted(d.name for d in folder.iterdir() if (d / "vllm" / "meta.json").is_file())
        hint = f"; it holds {', '.join(inside)}" if inside else " (no config.json, no vllm/meta.json)"
        raise InputError(f"not a measurement folder{hint}", folder)
    meta = Section.of(read_json(meta_path), meta_path)
    engine = _engine_from_meta(meta)
    cluster = folder / "config.json"
    if not cluster.is_file():
        raise InputError("missing the cluster config of the run", cluster)
    _check_meta_matches_cluster(meta, load_cluster(cluster), cluster)
    dataset = layout.resolve(meta.string("dataset_path"))
    if not dataset.is_file():
        raise InputError(f"the workload {dataset} does not exist under the reference folder",
                         meta_path, "dataset_path")
    _check_hash(meta, dataset)
    n = meta.integer("num_requests", required=False, default=None, minimum=1)
    workload = load_trace(dataset, n)
    if n is not None and len(workload) < n:
        raise meta.error("num_requests", f"says {n} but the workload {dataset} has only {len(workload)} requests")
    note = f"{dataset}" + (f", num_requests {n} in {meta_path}" if n is not None else "")
    a = _read_requests(folder / "vllm" / "requests.jsonl", workload, note)
    queued, first, last, out = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    log.info("measurement %s: cluster config %s; engine settings from %s (%s); workload %s (%d requests); "
             "vLLM's timestamps from %s", folder, cluster, meta_path, _settings(engine), dataset, len(workload),
             folder / "vllm" / "requests.jsonl")
    return Measurement(folder, cluster, engine, dataset, n, (first - queued) * 1e3, tpot_ms(first, last, out),
                       (last - queued) * 1e3, workload)


def _settings(engine: EngineConfig) -> str:
    """The engine settings a measurement's run had where they are not the defaults, in words for ``-v``."""
    default = EngineConfig().to_dict()
    return ", ".join(f"{k} {v}" for k, v in engine.to_dict().items() if v != default[k]) or "the defaults"


def _check_hash(meta: Section, dataset: Path) -> None:
    """The run recorded its workload's sha256: replaying another file (an edited or re-sampled trace of
    the same name) would score the simulator against requests vLLM never saw."""
    want = meta.string("dataset_hash", required=False, default=None)
    if want is None:
        return
    if not re.fullmatch(r"[0-9a-fA-F]{64}", want):
        raise meta.error("dataset_hash", f"expected a sha256 (64 hex digits), got {want!r}")
    got = hashlib.sha256(dataset.read_bytes()).hexdigest()
    if got != want.lower():
        raise meta.error("dataset_hash", f"the run's workload had sha256 {want[:12]}..., but {dataset} has "
                                         f"{got[:12]}...: not the requests vLLM served")


def sim_latencies(res: Results) -> dict[str, np.ndarray]:
    r = res.requests
    q = r.queued.values
    return {"ttft": (r.first_token.values - q) * 1e3, "tpot": r.tpot.values, "e2e": (r.finish.values - q) * 1e3}


def compare(meas: Measurement, res: Results) -> dict:
    real = {"ttft": meas.ttft_ms, "tpot": meas.tpot_ms, "e2e": meas.e2e_ms}
    sim = sim_latencies(res)
    metrics = {}
    for m in METRICS:
        dr, ds = describe(real[m]), describe(sim[m])
        for s in STATS:
            metrics[f"{m}_{s}"] = {"vllm": dr[s], "sim": ds[s], "diff_pct": diff_pct(ds[s], dr[s])}
    errs = [abs(v["diff_pct"]) for v in metrics.values()]
    return {"metrics": metrics, "mean_abs_err_pct": float(np.mean(errs)), "sim_wall_s": res.attrs["sim_wall_s"]}


@permission_named()
def validate(folder: str | Path, reference_dir: str | Path, **settings) -> tuple[dict, Results]:
    """Replay a measurement folder's run; ``settings`` go to :func:`~llmss_lab.api.simulate`
    (``latency="analytical"`` validates the analytical model instead of the profile)."""
    from .api import simulate

    layout = ReferenceLayout(reference_dir)
    t0 = time.perf_counter()
    meas = read_measurement(folder, layout)
    t1 = time.perf_counter()
    res = simulate(meas.cluster_path, meas.workload, engine=meas.engine, reference_dir=reference_dir, **settings)
    report = compare(meas, res)
    report["sim_wall_s"] = time.perf_counter() - t1
    log.info("validation of %s: measurement read in %.2f s, simulated and compared in %.2f s", meas.folder, t1 - t0,
             report["sim_wall_s"])
    return report, res


def format_report(report: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'Metric':<20}{'vLLM':>12}{'Sim':>12}{'Diff%':>9}")
    lines.append("-" * 53)
    for m in METRICS:
        for s in STATS:
            v = report["metrics"][f"{m}_{s}"]
            lines.append(f"{LABELS[m] + ' ' + s.capitalize():<20}{v['vllm']:>12.1f}{v['sim']:>12.1f}{v['diff_pct']:>+8.1f}%")
        lines.append("")
    lines.append(f"Mean |Diff%|: {report['mean_abs_err_pct']:.2f} %   (simulation wall time {report['sim_wall_s']:.3f} s)")
    return "\n".join(lines)
