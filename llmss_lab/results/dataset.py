"""Simulation results as self-describing xarray Datasets.

* ``requests`` (dim ``request``): timestamps, token counts, TTFT/TPOT/E2E, preemptions, prefix hits.
* ``iterations`` (dim ``step``): every engine step of every instance, with its batch composition.
* ``timeseries`` (dims ``time`` x ``instance``): bins of ``bin_s`` seconds (1 by default; the ``bin_s`` attr),
  labelled by the bin's end as vLLM's bench labels its ticks: throughputs (per second), running/waiting at the
  bin's end, KV use, prefix hit rate.
* ``itl`` (dim ``itl``): every distinct inter-token gap (ms) and how many token gaps had it.

Every variable carries ``units`` and ``long_name``; run-level facts sit in the Dataset attrs
(netCDF-safe: strings and numbers only, configs as JSON).
"""
from __future__ import annotations

import json
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from xarray.indexes import PandasIndex

from ..config.reader import as_path
from ..ctrl_c import ctrl_c_held
from ..errors import InputError
from ..files import absent, kind_of, not_netcdf, refuse_in_reference, refuse_to_replace, replacing
from ..config.power import COMPONENTS
from ..kernel.instance import merge_counts
from ..kernel.power import PowerAccount
from ..kernel.simulator import RawRun
from .metrics import latency_summary, tpot_ms
from .netcdf import write_groups

GROUPS = ("requests", "iterations", "timeseries")
OPTIONAL = ("experts", "memory", "power")   # present when the run has MoE, memory tiers, power specs
# what the summary and the views read, checked when a file is loaded
REQUIRED = {"requests": ("arrival", "finish", "ttft", "tpot", "e2e_latency", "input_tokens", "output_tokens",
                         "preemptions", "prefix_hit_tokens"),
            "iterations": ("start", "duration"), "timeseries": (), "itl": ("itl", "gaps")}
MIB = 2**20


NETCDF_SUFFIXES = ("", ".nc", ".nc4", ".netcdf", ".cdf")


def compressed(ds: xr.Dataset) -> dict[str, dict]:
    """netCDF encoding that deflates the numeric variables (zlib, level 1). The one-second bins of a long, mostly
    idle run are nearly all zeros: 300 requests at 0.001 req/s wrote 70 MB raw and take 1.6 MB so; the 300-request
    example takes 0.28 MB instead of 0.61 in about the same time. Level 4 saved 20 % more and took twice as long.
    Variables under 4 KiB stay raw, as do strings (netCDF cannot deflate them): a deflated variable is stored in
    chunks whose index costs a few KB: deflating every variable made a 60-request file's requests group larger
    (27 -> 63 KB) and the file 284 KB where the threshold gives 193 KB (313 KB raw).
    Readers need nothing: netCDF inflates on load."""
    return {name: {"zlib": True, "complevel": 1} for name, v in ds.variables.items()
            if v.dtype.kind in "biuf" and v.nbytes >= 4096}


# netCDF-C keeps up to 64 MiB of chunks per variable until the file closes (netCDF4.get_chunk_cache()); a long
# run's step columns are 2 chunks of ~11 MB each, so a file's whole iterations group sat in the cache while its
# other groups were written (~440 MB for 2.8 M steps). Chunks are written whole, once: a cache buys nothing.
WRITE_CHUNK_CACHE = 1 << 20


@contextmanager
def small_chunk_cache(nbytes: int = WRITE_CHUNK_CACHE):
    """Files opened inside get a chunk cache of ``nbytes`` per variable (the bytes written are the same)."""
    import netCDF4

    old = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(nbytes, old[1], old[2])
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*old)


def results_format(path: str | Path, key: str = "--out") -> str:
    """``"netcdf"`` (every Dataset) or ``"csv"`` (the per-request table) by the file's suffix, so a name like
    ``r.csv`` never silently gets netCDF bytes; any other suffix is refused before a run, not after it."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    raise InputError(f"cannot write results as '{suffix}': name a netCDF file (.nc: every Dataset, readable by "
                     "'llmss summary' and Results.load) or a CSV file (.csv: one row per request)", path, key)


POWER_ATTRS = ("total_energy_J", "energy_per_output_token_J")   # what the summary reads of the power group
DIMS = {"requests": "request", "iterations": "step", "itl": "itl"}


def _check_parts(parts: dict[str, xr.Dataset], path: Path) -> None:
    """The variables the summary and views read are numbers along their group's dimension, and a run has
    requests: a damaged or hand-edited file is named here, not met as a numpy error in a percentile."""
    for g, names in REQUIRED.items():
        for v in names:
            x = parts[g][v]
            if x.dims != (DIMS[g],):
                raise InputError(f"has dimensions {x.dims}, expected ({DIMS[g]!r},)", path, f"{g}/{v}")
            if not np.issubdtype(x.dtype, np.number):
                raise InputError(f"holds {x.dtype} values, not numbers", path, f"{g}/{v}")
    if parts["requests"].sizes.get("request", 0) == 0:
        raise InputError("holds no requests", path, "requests")
    if not np.isfinite(parts["requests"].finish.values).all():
        raise InputError("a request has no finish time (NaN): a run's file always has one", path, "requests/finish")


def _variable(dims, data, attrs: dict | None = None) -> xr.Variable:
    """A Variable of numpy data. xarray checks the data of ``Variable(dims, data)`` against dask's array type,
    which imports dask.array the first time (0.5-1.5 s; a run needs no dask); a numpy array of numbers or
    strings needs none of those checks, so it takes the Variable's fastpath."""
    a = np.asarray(data)
    return xr.Variable(dims, a, attrs, fastpath=a.dtype.kind not in "OMm")


def _var(dims, data, units: str, long_name: str) -> xr.Variable:
    return _variable(dims, data, {"units": units, "long_name": long_name})


def _dataset(data: dict[str, xr.Variable], coords: dict[str, xr.Variable], attrs: dict | None = None) -> xr.Dataset:
    """A Dataset whose dimension coordinates get their pandas indexes here: xarray's default index of a numpy
    coordinate asks whether it is a dask array, which imports dask (0.3-0.5 s) into a run that has none."""
    indexes = {name: PandasIndex(pd.Index(v.values), name, coord_dtype=v.dtype)
               for name, v in coords.items() if v.dims == (name,)}
    variables = dict(coords)
    for name, index in indexes.items():
        variables.update(index.create_variables({name: coords[name]}))
    return xr.Dataset(data, coords=xr.Coordinates(variables, indexes=indexes), attrs=attrs)


def _total(values: xr.DataArray) -> int:
    """A count's sum, NaN skipped as xarray's ``sum()`` skips it, in numpy: xarray's own would import dask.array."""
    return int(np.nansum(values.values))


def itl_dataset(gaps_ms: np.ndarray, counts: np.ndarray, attrs: dict | None = None) -> xr.Dataset:
    """Inter-token latency as a distribution: each distinct gap and how many token gaps had it."""
    return _dataset({"gaps": _var("itl", np.asarray(counts, np.int64), "1", "token gaps of this length")},
                    {"itl": _var("itl", np.asarray(gaps_ms, float), "ms", "inter-token latency")}, attrs or {})


def requests_dataset(raw: RawRun) -> xr.Dataset:
    R = raw.requests
    s = 1e-9
    arrival = R.arrival * s
    first = R.first_token * s
    finish = R.finished * s
    ttft = (first - arrival) * 1e3
    data = {
        "instance": _var("request", R.instance, "1", "instance that served the request (with a P/D split, its decode "
                                                    "instance)"),
        "arrival": _var("request", arrival, "s", "arrival time"),
        "queued": _var("request", R.queued * s, "s", "time the engine took the request in"),
        "scheduled": _var("request", R.scheduled * s, "s", "time first scheduled"),
        "first_token": _var("request", first, "s", "time of the first output token"),
        "finish": _var("request", finish, "s", "time of the last output token"),
        "input_tokens": _var("request", R.prompt, "1", "prompt tokens"),
        "output_tokens": _var("request", R.output, "1", "generated tokens"),
        "ttft": _var("request", ttft, "ms", "time to first token (from arrival)"),
        "tpot": _var("request", tpot_ms(first, finish, R.output), "ms", "time per output token after the first"),
        "e2e_latency": _var("request", (finish - arrival) * 1e3, "ms", "end-to-end latency"),
        "queue_delay": _var("request", (R.scheduled - R.arrival) * s * 1e3, "ms", "arrival to first scheduled"),
        "preemptions": _var("request", R.preemptions, "1", "times preempted (recompute)"),
        "recomputed_tokens": _var("request", R.recomputed, "1", "tokens computed again after preemption"),
        "prefix_hit_tokens": _var("request", np.maximum(R.prefix_hit, 0), "1", "prompt tokens found in the prefix cache"),
        "recalled_tokens": _var("request", R.recalled, "1", "prefix tokens loaded from a lower-tier pool"),
    }
    if (R.prefill_instance >= 0).any():   # a prefill/decode split: where the prompt ran and what its KV's move cost
        sent = R.prefill_instance >= 0
        data["prefill_instance"] = _var("request", R.prefill_instance, "1",
                                        "prefill instance that processed the prompt (-1: none)")
        data["kv_transfer"] = _var("request", np.where(sent, R.kv_transfer * 1e-6, np.nan), "ms",
                                   "KV hand-off from the end of the prefill until the decode instance has the KV")
        data["kv_bytes"] = _var("request", R.kv_bytes, "B", "KV bytes moved from the prefill to the decode instance")
    ids = np.arange(R.n)
    if raw.interrupted:   # the finished requests only, by their ids in the workload: the others have no latencies
        ids = np.flatnonzero(R.finished >= 0)
        data = {k: _variable("request", v.values[ids], v.attrs) for k, v in data.items()}
    return _dataset(data, {"request": _variable("request", ids)})


# the iterations Dataset: (variable, step log column, kind, units, long_name); kind "f" scales ns to s ("s") or to ms
# ("ms"), "i" is a whole number (int32 when every value fits, see ``_count_dtype``), "f" a float as logged
STEP_COLUMNS = (
    ("start", "start", "s", "s", "step start"),
    ("duration", "duration", "ms", "ms", "step latency"),
    ("comm", "comm", "ms", "ms", "collective communication in the step"),
    ("p2p", "p2p", "ms", "ms", "activations handed between pipeline stages in the step"),
    ("attention", "attention", "ms", "ms", "attention compute in the step"),
    ("recall", "recall", "ms", "ms", "wait for prefix KV loaded from a lower-tier pool"),
    ("num_tokens", "tokens", "i", "1", "tokens computed"),
    ("num_seqs", "seqs", "i", "1", "sequences in the batch"),
    ("prefill_tokens", "prefill_tokens", "i", "1",
     "tokens of prefill chunks of 2+ tokens (a one-token chunk costs and counts as a decode)"),
    ("prefill_seqs", "prefill_seqs", "i", "1", "sequences with a prefill chunk of 2+ tokens"),
    ("decode_seqs", "decode_seqs", "i", "1", "sequences computing one token (decodes, one-token prefill chunks)"),
    ("decode_kv_mean", "decode_kv_mean", "f", "1", "mean KV length of the decodes (tokens)"),
    ("decode_kv_min", "decode_kv_min", "f", "1", "shortest KV length of the decodes (tokens)"),
    ("decode_kv_max", "decode_kv_max", "f", "1", "longest KV length of the decodes (tokens)"),
    ("prefill_history", "prefill_history", "i", "1", "cached tokens the prefill chunks attend to (summed)"),
    ("prefill_rms", "prefill_rms", "f", "1", "root of the summed squared chunk sizes"),
    ("kv_blocks_used", "kv_blocks_used", "i", "1", "KV blocks in use"),
    ("running", "running", "i", "1", "running requests after the step"),
    ("waiting", "waiting", "i", "1", "waiting requests after the step"),
    ("preempted", "preempted", "i", "1", "requests preempted in the step"),
)
NS_TO = {"s": 1e-9, "ms": 1e-6}


INT32 = np.iinfo(np.int32)


def _count_dtype(values: list[np.ndarray]) -> type:
    """int32 when every value fits, else int64: a step's counts (tokens, sequences, blocks, requests) are far below
    2**31, and 4 bytes a value instead of 8 is 123 MB less for the 2.8 M steps of a 3-day sparse run."""
    fits = all(v.size == 0 or (INT32.min <= v.min() and v.max() <= INT32.max) for v in values)
    return np.int32 if fits else np.int64


def iterations_dataset(raw: RawRun, spend: bool = False) -> xr.Dataset:
    """Every step of every instance, in start order (ties: instance order).

    Built one variable at a time, each from one fresh array: a 30-day sparse trace logs ~28 M steps (~220 MB a
    column), and building every column before the first variable (and copying each again to sort and to scale)
    peaked at 2.4 times the step log on top of it. With ``spend`` each step log column is emptied once copied
    (the run's last use of it), so the log and the Dataset are never both whole."""
    logs = [inst.log for inst in raw.instances]
    lengths = [len(log.start) for log in logs]
    start_all = np.concatenate([np.asarray(log.start) for log in logs]) if logs else np.zeros(0)
    # one instance, or several whose steps happen to come in order: the stable sort keeps the order as it is
    order = None if start_all.size < 2 or bool((start_all[1:] >= start_all[:-1]).all()) else \
        np.argsort(start_all, kind="stable")
    del start_all

    def column(key: str | None, kind: str) -> np.ndarray:
        """The instances' ``key`` columns (None: the instance's id) end to end in step order, as a new array:
        ``concatenate`` always allocates, so it is never a view of the live log."""
        values = [np.full(n, inst.iid) if key is None else np.asarray(getattr(log, key))
                  for n, inst, log in zip(lengths, raw.instances, logs)]
        dtype = _count_dtype(values) if kind == "i" else np.float64
        out = np.concatenate(values, dtype=dtype) if values else np.zeros(0, dtype)
        del values   # the views of the log go before the log's column does
        if spend and key is not None:
            for log in logs:
                setattr(log, key, array(getattr(log, key).typecode))
        return out if order is None else out[order]

    d = "step"
    data = {"instance": _var(d, column(None, "i"), "1", "instance")}
    for name, key, kind, units, long_name in STEP_COLUMNS:
        a = column(key, kind)
        if kind in NS_TO:
            np.multiply(a, NS_TO[kind], out=a)   # what ``a * factor`` gives, without a second array
        data[name] = _var(d, a, units, long_name)
    return _dataset(data, {"step": _variable(d, np.arange(sum(lengths)))})


def timeseries_dataset(raw: RawRun, bin_s: float = 1.0) -> xr.Dataset:
    nbins = max(1, int(np.ceil(raw.end_ns * 1e-9 / bin_s)))
    edges = np.arange(nbins + 1) * bin_s
    names = [s.name for s in raw.setups]
    shape = (nbins, len(raw.instances))
    prompt = np.zeros(shape)
    gen = np.zeros(shape)
    running = np.zeros(shape)
    waiting = np.zeros(shape)
    kv_pct = np.zeros(shape)
    hit = np.full(shape, np.nan)
    preempt = np.zeros(shape)
    for j, inst in enumerate(raw.instances):
        log = inst.log
        if not log.start:
            continue
        end = (np.asarray(log.start) + np.asarray(log.duration)) * 1e-9
        b = np.minimum((end // bin_s).astype(np.int64), nbins - 1)
        prompt[:, j] = np.bincount(b, weights=log.prompt_done, minlength=nbins)[:nbins] / bin_s
        gen[:, j] = np.bincount(b, weights=log.generated, minlength=nbins)[:nbins] / bin_s
        preempt[:, j] = np.bincount(b, weights=log.preempted, minlength=nbins)[:nbins]
        # state at the end of each bin: the last step that ended in or before it
        last = np.searchsorted(end, edges[1:], side="right") - 1
        has = last >= 0
        idx = np.maximum(last, 0)
        running[:, j] = np.where(has, np.asarray(log.running)[idx], 0)
        waiting[:, j] = np.where(has, np.asarray(log.waiting)[idx], 0)
        kv_pct[:, j] = np.where(has, np.asarray(log.kv_blocks_used)[idx] / raw.setups[j].num_blocks * 100, 0)
        q = np.where(has, np.asarray(log.prefix_queries)[idx], 0).astype(float)
        h = np.where(has, np.asarray(log.prefix_hits)[idx], 0).astype(float)
        dq, dh = np.diff(q, prepend=0.0), np.diff(h, prepend=0.0)
        hit[:, j] = np.where(dq > 0, dh / np.where(dq > 0, dq, 1) * 100, np.nan)
    dims = ("time", "instance")
    data = {
        "prompt_throughput": _var(dims, prompt, "1/s", "prompt tokens per second (counted at first token)"),
        "generation_throughput": _var(dims, gen, "1/s", "generated tokens per second"),
        "running": _var(dims, running, "1", "running requests at the bin's end"),
        "waiting": _var(dims, waiting, "1", "waiting requests at the bin's end"),
        "kv_usage_pct": _var(dims, kv_pct, "%", "KV cache blocks in use"),
        "prefix_hit_rate": _var(dims, hit, "%", "prefix cache hit rate of lookups in the bin"),
        "preemptions": _var(dims, preempt, "1", "preemptions in the bin"),
    }
    time = _variable("time", edges[1:], {"units": "s", "standard_name": "time",
                                         "long_name": f"end of the {bin_s:g} s bin"})
    # each instance counts as its own vLLM would: in a P/D split a prompt shows on both sides, and the prefill
    # side's one token per request besides the decode side's full output; sum over the role that owns the metric
    return _dataset(data, {"time": time, "instance": _variable("instance", names), **instance_coords(raw)})


def instance_coords(raw: RawRun) -> dict[str, xr.Variable]:
    """What each instance is, on the ``instance`` dim: in a heterogeneous cluster the run's attrs cannot say it."""
    info = [s.info for s in raw.setups]

    def col(key: str, long_name: str, default):
        return _variable("instance", [i.get(key, default) for i in info], {"long_name": long_name})
    return {"role": _variable("instance", [s.role or "both" for s in raw.setups],
                                {"long_name": "what the instance serves: prefill, decode or both (not disaggregated)"}),
            "hardware": col("hardware", "accelerator the instance runs on", ""),
            "model": col("model", "model the instance serves", ""),
            "node": col("node", "node of the cluster config the instance is on", 0),
            "tp_size": col("tp_size", "tensor-parallel degree", 1),
            "pp_size": col("pp_size", "pipeline-parallel degree", 1),
            "ep_size": col("ep_size", "expert-parallel degree (1: dense, or every expert on each GPU)", 1),
            "dp_group": col("dp_group", "data-parallel group the instance is a member of (\"\": none)", "")}


def experts_dataset(raw: RawRun) -> xr.Dataset:
    """Token-expert pairs per MoE layer and expert, summed over the run, per engine (an instance or
    a data-parallel group, whose members route as one). Empty for dense models."""
    moe = [e for e in raw.engines if e.expert_load is not None]
    if not moe:
        return xr.Dataset()
    loads = np.stack([e.expert_load for e in moe])
    data = {"expert_load": _var(("moe_group", "layer", "expert"), loads, "1",
                                "token-expert pairs routed to each expert, whole run")}
    return _dataset(data, {"moe_group": _variable("moe_group", [e.name for e in moe]),
                           "layer": _variable("layer", np.arange(loads.shape[1])),
                           "expert": _variable("expert", np.arange(loads.shape[2]))})


def _at(times: np.ndarray, values: np.ndarray, t: np.ndarray, before: float = 0.0) -> np.ndarray:
    """The value of a step function (changing at ``times``) at each of ``t``."""
    if len(times) == 0:
        return np.full(len(t), before, dtype=float)
    k = np.searchsorted(times, t, side="right") - 1
    return np.where(k >= 0, np.asarray(values, dtype=float)[np.maximum(k, 0)], before)


def memory_dataset(raw: RawRun, bin_s: float = 1.0) -> xr.Dataset:
    """Memory per NPU and per lower-tier pool, sampled at the end of every bin.

    On an NPU: resident weights (and model buffers), KV of running requests, and cached prefix
    blocks that no request holds (kept until their blocks are reused). ``prefix_hit_pct`` is the
    cumulative share of looked-up prompt tokens found, as vLLM's counters give it.
    """
    nbins = max(1, int(np.ceil(raw.end_ns * 1e-9 / bin_s)))
    t_ns = (np.arange(nbins) + 1) * bin_s * 1e9
    n_inst = len(raw.instances)
    kv = np.zeros((nbins, n_inst))
    cached = np.zeros((nbins, n_inst))
    hit = np.zeros((nbins, n_inst))
    weights = np.array([s.weight_bytes / MIB for s in raw.setups])
    for j, inst in enumerate(raw.instances):
        log, s = inst.log, raw.setups[j]
        start = np.asarray(log.start)
        used = np.asarray(log.kv_blocks_used, dtype=float)
        holding = np.asarray(log.kv_blocks_holding, dtype=float)
        kv[:, j] = _at(start, used, t_ns) * s.block_bytes / MIB
        cached[:, j] = _at(start, holding - used, t_ns) * s.block_bytes / MIB
        end = start + np.asarray(log.duration)
        q = _at(end, log.prefix_queries, t_ns)
        h = _at(end, log.prefix_hits, t_ns)
        hit[:, j] = np.where(q > 0, h / np.where(q > 0, q, 1) * 100, 0.0)
    di = ("time", "instance")
    data = {
        "npu_weights": _var("instance", weights, "MiB", "weights and model buffers on each NPU"),
        "npu_kv_capacity": _var("instance", np.array([s.num_blocks * s.block_bytes / MIB for s in raw.setups]), "MiB",
                                "the KV cache's size on each NPU (its paged blocks)"),
        "npu_kv": _var(di, kv, "MiB", "KV cache of running requests, per NPU"),
        "npu_prefix_cache": _var(di, cached, "MiB", "cached prefix blocks no request holds, per NPU"),
        "npu_used": _var(di, weights[None, :] + kv + cached, "MiB", "NPU memory in use (weights + KV + prefix cache)"),
        "prefix_hit_pct": _var(di, hit, "%", "cumulative NPU prefix-cache hit rate (tokens)"),
    }
    coords = {"time": _variable("time", t_ns * 1e-9, {"units": "s", "long_name": f"end of the {bin_s:g} s bin"}),
              "instance": _variable("instance", [s.name for s in raw.setups]), **instance_coords(raw)}
    if raw.pools:
        used = np.zeros((nbins, len(raw.pools)))
        phit = np.zeros((nbins, len(raw.pools)))
        for k, pool in enumerate(raw.pools):
            if pool.used_log:
                tl, cl = zip(*pool.used_log)
                used[:, k] = _at(np.asarray(tl), np.asarray(cl), t_ns) * pool.chunk_bytes / MIB
            if pool.stats_log:
                tl, ql, hl = (np.asarray(x, dtype=float) for x in zip(*pool.stats_log))
                q, h = _at(tl, ql, t_ns), _at(tl, hl, t_ns)
                phit[:, k] = np.where(q > 0, h / np.where(q > 0, q, 1) * 100, 0.0)
        dp = ("time", "pool")
        data["pool_used"] = _var(dp, used, "MiB", "prefix chunks held by each lower-tier pool")
        data["pool_hit_pct"] = _var(dp, phit, "%", "cumulative tokens recalled from the pool per prompt token looked up")
        data["pool_capacity"] = _var("pool", np.array([p.capacity_bytes / MIB for p in raw.pools]), "MiB", "pool size")
        data["pool_link_read"] = _var("pool", np.array([p.link_read for p in raw.pools]), "B",
                                      "bytes recalled by instances on other nodes, over the link between nodes")
        data["pool_link_written"] = _var("pool", np.array([p.link_written for p in raw.pools]), "B",
                                         "bytes written through by instances on other nodes, over the link between nodes")
        data["pool_tier"] = _variable("pool", [p.tier.name for p in raw.pools], {"long_name": "memory tier"})
        coords["pool"] = _variable("pool", [p.name for p in raw.pools])
    if raw.tiers:
        names = list(raw.tiers)
        data["tier_bytes_read"] = _var("tier", np.array([raw.tiers[n].bytes_read for n in names]), "B", "bytes read")
        data["tier_bytes_written"] = _var("tier", np.array([raw.tiers[n].bytes_written for n in names]), "B",
                                          "bytes written")
        data["tier_busy"] = _var("tier", np.array([raw.tiers[n].busy_ns * 1e-9 for n in names]), "s",
                                 "time the tier's port was busy")
        coords["tier"] = _variable("tier", names)
    return _dataset(data, coords)


def _tokens_out(raw: RawRun) -> int:
    """The output tokens the run's energy went into: an interrupted run's unfinished requests' so far too."""
    R = raw.requests
    return int((R.num_tokens - R.prompt).clip(0).sum()) if raw.interrupted else int(R.output.sum())


def power_dataset(acc: PowerAccount, output_tokens: int) -> xr.Dataset:
    """Mean power per bin of the run's width (the last bin ends with the run, so it may be narrower) and energy
    over the run: the bins' power times their widths sums to ``energy``."""
    edges = acc.edges_s
    data = {
        "power": _var(("time", "node", "component"), acc.power_w, "W", f"mean power in the {acc.bin_s:g} s bin"),
        "energy": _var(("node", "component"), acc.energy_j, "J", "energy over the run"),
    }
    # the width on the coordinate too: a run shorter than a bin has one, cut to the run, that cannot tell it
    coords = {"time": _variable("time", edges[1:], {"units": "s", "long_name": f"end of the {acc.bin_s:g} s bin "
                                                    "(the last: the run's end)", "bin_s": acc.bin_s}),
              "node": _variable("node", np.arange(acc.power_w.shape[1])),
              "component": _variable("component", list(COMPONENTS))}
    ds = _dataset(data, coords)
    ds.attrs["total_energy_J"] = acc.total_j
    ds.attrs["energy_per_output_token_J"] = acc.total_j / output_tokens if output_tokens else float("nan")
    return ds


def interrupted_note(attrs: dict) -> str:
    """What an interrupted run holds, in words ("" for a whole run): where it stopped and how many requests of
    its workload had finished by then."""
    if not attrs.get("interrupted"):
        return ""
    return (f"interrupted at {float(attrs['simulated_s']):.1f} s simulated: {int(attrs['requests_finished']):,} of "
            f"{int(attrs['requests_total']):,} requests finished")


def bin_width(ds: xr.Dataset) -> float | None:
    """The width of ``ds``'s time bins (of ``memory``: its samples' spacing), read off its time coordinate: its
    ``bin_s`` attr where it has one (the power's, whose last bin ends with the run), else its first value (bins
    start at 0 and are labelled by their end). The Dataset's ``bin_s`` attr is the run's, not every group's: files
    saved before the power followed it hold one-second power bins under a wider ``bin_s``, and
    ``memory_sample_s`` spaces the memory samples otherwise. None without a time coordinate."""
    if "time" not in ds.coords or ds.sizes["time"] == 0:
        return None
    return float(ds.time.attrs.get("bin_s", ds.time.values[0]))


@dataclass
class Results:
    """The outcome of one simulation: Datasets per request, step (iteration), second (timeseries), inter-token
    gap (itl), MoE layer (experts), memory sample and power sample, the run's attrs on each, and ``summary()``
    in vLLM bench names."""

    requests: xr.Dataset
    iterations: xr.Dataset
    timeseries: xr.Dataset
    attrs: dict = field(default_factory=dict)
    itl: xr.Dataset = field(default_factory=lambda: itl_dataset(np.zeros(0), np.zeros(0, np.int64)))
    experts: xr.Dataset = field(default_factory=xr.Dataset)
    memory: xr.Dataset = field(default_factory=xr.Dataset)
    power: xr.Dataset = field(default_factory=xr.Dataset)

    @classmethod
    def from_raw(cls, raw: RawRun, attrs: dict, power: PowerAccount | None = None,
                 memory_sample_s: float | None = None, bin_s: float = 1.0) -> Results:
        """``bin_s`` is the timeseries' bin width and, unless ``memory_sample_s`` says otherwise, the memory
        samples' spacing: a long run's one-second bins are 86,400 rows a day per instance. The step log's columns
        that ``iterations`` holds are taken out of ``raw`` (see :func:`iterations_dataset`)."""
        pairs = [inst.log.itl.pairs() for inst in raw.instances]
        gaps, counts = merge_counts(np.concatenate([g for g, _ in pairs]), np.concatenate([c for _, c in pairs]))
        timeseries = timeseries_dataset(raw, bin_s)
        memory = memory_dataset(raw, bin_s if memory_sample_s is None else memory_sample_s)
        res = cls(requests_dataset(raw), iterations_dataset(raw, spend=True), timeseries, {},   # the log's last use
                  itl_dataset(gaps * 1e-6, counts), experts_dataset(raw), memory,
                  power_dataset(power, _tokens_out(raw)) if power is not None else xr.Dataset())
        for key, value in {**attrs, "bin_s": bin_s}.items():
            res.set_attr(key, value)
        res.set_attr("summary_json", json.dumps(res.summary()))
        return res

    def set_attr(self, key: str, value) -> None:
        """Set a run-level attribute on the results and on each Dataset alike."""
        self.attrs[key] = value
        for ds in (self.requests, self.iterations, self.timeseries, self.itl, self.experts, self.memory, self.power):
            ds.attrs[key] = value

    def summary(self) -> dict[str, float]:
        """The run's metrics by vLLM bench's names (``mean_ttft_ms``, ``p99_itl_ms``, ``output_throughput``, ...),
        with energy when the run had a power model and each pool's final hit rate when it had a prefix pool."""
        r = self.requests
        arrival = r.arrival.values
        finish = r.finish.values
        duration = float(finish.max() - arrival.min())
        n_out = _total(r.output_tokens)
        n_in = _total(r.input_tokens)
        out = {
            "completed": int(r.sizes["request"]),
            "duration_s": duration,
            "total_input_tokens": n_in,
            "total_output_tokens": n_out,
            "request_throughput": r.sizes["request"] / duration,
            "output_throughput": n_out / duration,
            "total_token_throughput": (n_in + n_out) / duration,
            "preemptions": _total(r.preemptions),
            "prefix_hit_tokens": _total(r.prefix_hit_tokens),
        }
        out.update(latency_summary(r.ttft.values, r.tpot.values, self.itl.itl.values, r.e2e_latency.values,
                                   self.itl.gaps.values))
        if self.power.data_vars:
            out.update({k: float(self.power.attrs[k]) for k in POWER_ATTRS})
        if "pool_hit_pct" in self.memory:
            # the last sample's row in numpy: ``isel`` builds its time coordinate off the fastpath, which imports
            # dask (0.45 s of a fresh process's 1 s in Fig 7's shared-pool run)
            out["pool_hit_pct"] = [float(v) for v in self.memory.pool_hit_pct.values[-1]]
        if self.attrs.get("interrupted"):   # stopped by a Ctrl-C: the metrics above are the finished requests'
            out.update(interrupted=True, simulated_s=float(self.attrs["simulated_s"]),
                       requests_total=int(self.attrs["requests_total"]))
        return out

    def save(self, path: str | Path) -> Path:
        """Write every Dataset as a group of one netCDF file, or the per-request table to a ``.csv`` file (see
        :func:`results_format`), atomically (temp file, rename); a Ctrl-C waits for a netCDF write to finish. Not
        over a file the run read, nor inside the reference data it read."""
        path = as_path(path)
        kind = results_format(path, "path")
        refuse_to_replace(path, {f"an input of the run ({key})": file for key, file in self.input_files().items()},
                          "path")
        # the reference data the run read (none in an older file)
        refuse_in_reference(path, self.attrs.get("reference_dir"), "path")
        if path.parent and not path.parent.exists():
            raise InputError("output folder does not exist", path.parent)
        if kind == "csv":
            with replacing(path) as tmp:
                self.request_table().to_csv(tmp, index=False)
            return path
        groups = {g: getattr(self, g) for g in (*GROUPS, "itl", *(g for g in OPTIONAL if getattr(self, g).data_vars))}
        with ctrl_c_held(), replacing(path) as tmp, small_chunk_cache():
            write_groups(tmp, groups, {g: compressed(ds) for g, ds in groups.items()})
        return path

    def input_files(self) -> dict[str, str]:
        """The files the run read, by the key that named them (its ``input_files_json`` attr; none in a file
        saved before it was recorded, or where the attr is not such a record)."""
        try:
            files = json.loads(self.attrs.get("input_files_json", "{}"))
        except (TypeError, ValueError):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}

    def request_table(self):
        """The requests as a pandas DataFrame, one row per request, units in the column names (``ttft_ms``)."""
        frame = self.requests.to_dataframe().reset_index()
        units = {name: self.requests[name].attrs.get("units", "1") for name in self.requests.data_vars}
        return frame.rename(columns={n: f"{n}_{u}" for n, u in units.items() if u != "1"})

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Read a results file that ``save`` wrote (netCDF); a CSV, a sweep's file or anything else is refused by
        name, since none of them holds a whole run."""
        path = as_path(path)
        if path.suffix.lower() == ".csv":
            raise InputError("is a per-request CSV, which holds no run summary; load a netCDF (.nc) results file",
                             path)
        if why := absent(path, "results file"):
            raise InputError(why, path)
        if not path.is_file():   # a folder, or a device as /dev/null: there, but not a file to read
            raise InputError(f"is {kind_of(path)}, not a results file", path)
        if why := not_netcdf(path):
            raise InputError(f"not an llmss_lab results file: {why}", path)
        try:
            parts = {g: xr.load_dataset(path, group=g, engine="netcdf4") for g in (*GROUPS, "itl")}
        except (OSError, ValueError, KeyError) as exc:
            hint = ""
            try:
                if "status" in xr.load_dataset(path, engine="netcdf4"):   # the root of a sweep's file
                    hint = ": it is a sweep's file (read it with llmss_lab.sweeps.load)"
            except (OSError, ValueError, KeyError):
                pass
            raise InputError(f"not an llmss_lab results file{hint or f' ({str(exc).splitlines()[0]})'}", path) from None
        if "token_gap" in parts["itl"].dims:   # an older file: one entry per token gap
            parts["itl"] = itl_dataset(*np.unique(parts["itl"].itl.values, return_counts=True), parts["itl"].attrs)
        missing = [f"{g}/{v}" for g, names in REQUIRED.items() for v in names if v not in parts[g]]
        if missing:
            raise InputError(f"not a complete llmss_lab results file (no {', '.join(missing)})", path)
        _check_parts(parts, path)
        extra = {}
        for g in OPTIONAL:
            try:
                extra[g] = xr.load_dataset(path, group=g, engine="netcdf4")
            except OSError:
                extra[g] = xr.Dataset()
        lost = [k for k in POWER_ATTRS if extra["power"].data_vars and k not in extra["power"].attrs]
        if lost:
            raise InputError(f"the power group lacks its {', '.join(lost)}: not a complete results file", path,
                             "power")
        attrs = dict(parts["requests"].attrs)
        return cls(parts["requests"], parts["iterations"], parts["timeseries"], attrs, parts["itl"], **extra)
