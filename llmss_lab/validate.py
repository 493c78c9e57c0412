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

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config.engine import EngineConfig
from .config.reader import Section, read_json, read_text
from .errors import InputError
from .reference import ReferenceLayout
from .results.dataset import Results
from .results.metrics import STATS, describe, diff_pct, tpot_ms

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
        v = kw.integer(key, required=False, default=None, minimum=0)
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
    return EngineConfig().with_overrides(settings, meta.source)


def read_measurement(folder: str | Path, layout: ReferenceLayout) -> Measurement:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("measurement folder does not exist", folder)
    meta_path = folder / "vllm" / "meta.json"
    meta = Section.of(read_json(meta_path), meta_path)
    engine = _engine_from_meta(meta)
    dataset = layout.resolve(meta.string("dataset_path"))
    if not dataset.is_file():
        raise InputError(f"the workload {dataset} does not exist under the reference folder",
                         meta_path, "dataset_path")
    n = meta.integer("num_requests", required=False, default=None, minimum=1)
    req_path = folder / "vllm" / "requests.jsonl"
    rows = []
    for lineno, line in enumerate(read_text(req_path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}", req_path, f"line {lineno}") from None
        try:
            rows.append((float(obj["queued_ts"]), float(obj["first_token_ts"]), float(obj["last_token_ts"]),
                         int(obj["output_toks"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"missing or bad field {exc}", req_path, f"line {lineno}") from None
    if not rows:
        raise InputError("no requests", req_path)
    a = np.array(rows)
    queued, first, last, out = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    cluster = folder / "config.json"
    if not cluster.is_file():
        raise InputError("missing the cluster config of the run", cluster)
    return Measurement(folder, cluster, engine, dataset, n, (first - queued) * 1e3, tpot_ms(first, last, out),
                       (last - queued) * 1e3)


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


def validate(folder: str | Path, reference_dir: str | Path, **settings) -> tuple[dict, Results]:
    """Replay a measurement folder's run; ``settings`` go to :func:`~llmss_lab.api.simulate`
    (``latency="analytical"`` validates the analytical model instead of the profile)."""
    from .api import simulate

    layout = ReferenceLayout(reference_dir)
    meas = read_measurement(folder, layout)
    t0 = time.perf_counter()
    res = simulate(meas.cluster_path, meas.dataset, engine=meas.engine, reference_dir=reference_dir,
                   num_requests=meas.num_requests, **settings)
    report = compare(meas, res)
    report["sim_wall_s"] = time.perf_counter() - t0
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
