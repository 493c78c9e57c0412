"""The ``llmss`` command line: lab, example, run, validate, summary, figure-data, figures, sweep, capacity,
fetch-reference, profile-fit, profile-check, profile-iterations."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import InputError, LlmssError, RunInterrupted, WriteFailed
from .files import (absent, check_writable_file, check_writable_folder, permission_named, refuse_in_reference,
                    refuse_inside, refuse_to_replace)

ENGINE_INT = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks",
              "long_prefill_token_threshold", "max_model_len")
ENGINE_BOOL = ("enable_prefix_caching", "enable_chunked_prefill", "reserve_full_isl", "async_scheduling")

log = logging.getLogger("llmss_lab.cli")


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (and <= ``maximum``); argparse names the flag in its error."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {v}")
        return v
    return parse


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] ((low, high] with ``low_open``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(v) and (v > low if low_open else v >= low) and v <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if low_open else '>='} {low:g}"
                                             f"{f' and <= {high:g}' if math.isfinite(high) else ''}, got {text}")
        return v
    return parse


UNLIMITED_AT_0 = ("max_num_seqs", "max_num_batched_tokens", "long_prefill_token_threshold")
UNSET = {"num_gpu_blocks": "sized from the memory", "max_model_len": "the model's"}


def _engine_default(name: str) -> str:
    """An engine setting's default as the help shows it, read from EngineConfig so the two cannot drift."""
    from .config.engine import EngineConfig

    value = getattr(EngineConfig(), name)
    text = UNSET[name] if value is None else ("on" if value else "off") if isinstance(value, bool) else f"{value}"
    return f"default: {text}" + ("; 0 = unlimited" if name in UNLIMITED_AT_0 else "")


def _engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine settings (vLLM names; per-instance keys in the cluster config win)")
    for name in ENGINE_INT:   # default None: only a flag given overrides the config's per-instance keys
        g.add_argument("--" + name.replace("_", "-"), type=int, default=None, metavar="N", help=_engine_default(name))
    g.add_argument("--gpu-memory-utilization", type=float, default=None, metavar="F",
                   help=_engine_default("gpu_memory_utilization"))
    for name in ENGINE_BOOL:
        g.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                       help=_engine_default(name))
    g.add_argument("--scheduler", metavar="NAME", default=None,
                   help=f"scheduler policy, vllm_v1 (continuous batching) or static (a new batch only when the "
                        f"last is done); {_engine_default('scheduler')}")
    g.add_argument("--eviction", metavar="NAME", default=None,
                   help=f"KV block eviction policy, lru or mru; {_engine_default('eviction')}")


def _engine_from(args: argparse.Namespace):
    from .config.engine import EngineConfig

    keys = (*ENGINE_INT, *ENGINE_BOOL, "gpu_memory_utilization", "scheduler", "eviction")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    return EngineConfig().with_overrides(overrides, "command line", lambda k: "--" + k.replace("_", "-"))


def _json_safe(obj):
    """JSON has no NaN or Infinity: an undefined statistic (TPOT of one-token requests) becomes null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _bars(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only: piped into a file, a bar's redraws are noise (and -q turns them off)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _progress(total: int, enabled: bool):
    if not enabled:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="req", desc="simulating", leave=False, file=sys.stderr)
    return bar, bar.update


def _stage_bar(first: str, enabled: bool):
    """A bar for work whose steps are counted only once it starts; until then it shows ``first``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=None, desc=first, unit="", leave=False, file=sys.stderr,
                bar_format="{desc} {n_fmt}/{total_fmt} [{elapsed}]")


def _stage_progress(bar) -> Callable[[str, int, int], None]:
    """A ``progress(what, done, total)`` that shows on ``bar`` (None: no bar) what runs and how far it is."""
    def progress(what: str, done: int, total: int) -> None:
        if bar is not None:
            bar.total, bar.n = total or None, done
            bar.set_description(what)
    return progress


def describe_run(attrs: dict) -> str:
    """One line: what ran, and how long the simulation took."""
    n_inst = attrs.get("num_instances", 1)
    par = " x ".join(f"{k}{attrs.get(f'{k.lower()}_size', 1)}" for k in ("TP", "PP", "EP")   # one instance's
                     if k == "TP" or attrs.get(f"{k.lower()}_size", 1) > 1)
    what = (f"{attrs.get('model', '')} on {attrs.get('hardware', '')} ({par}), "
            f"{attrs.get('num_gpu_blocks', '')} KV blocks" if n_inst == 1 else
            f"{n_inst} instances of {attrs.get('model', '')} on {attrs.get('hardware', '')}")
    from .results.dataset import interrupted_note

    partial = f" (partial: {note})" if (note := interrupted_note(attrs)) else ""
    return (f"{what}; {attrs.get('num_steps', '')} steps simulated in {attrs.get('sim_wall_s', float('nan')):.3f} s"
            f"{partial}")


def format_comparison(runs: list[tuple[str, dict, dict]]) -> str:
    """Runs given as (name, summary, attrs) side by side, each after the first with its change from the first."""
    from .results.table import SUMMARY_ROWS, change_pct, known

    tags = [f"[{i}]" for i in range(1, len(runs) + 1)]
    out = [f"{tag} {name}: {describe_run(attrs)}" for tag, (name, _, attrs) in zip(tags, runs)]
    out += [f"{tag} latency model: {attrs['latency_source']}" for tag, (_, _, attrs) in zip(tags, runs)
            if not str(attrs.get("latency_source", "profile")).startswith("profile")]
    for tag, (_, _, attrs) in zip(tags[1:], runs[1:]):
        changed = _settings_changed(runs[0][2], attrs)
        out.append(f"{tag} differs from [1] in: {', '.join(changed) if changed else 'no recorded setting'}")
    width = 12
    out.append(f"  {'':<22}" + "".join(f"{t:>{width}}" for t in tags)
               + "".join(f"{t + ' vs [1]':>{width + 2}}" for t in tags[1:]))
    first = runs[0][1]
    for key, label, fmt in SUMMARY_ROWS:
        if not any(key in s for _, s, _ in runs):
            continue
        values = [s.get(key) for _, s, _ in runs]
        cells = "".join(f"{fmt.format(v) if known(v) else 'n/a':>{width}}" for v in values)
        changes = "".join(f"{'-' if (c := change_pct(v, first.get(key))) is None else f'{c:+.1f} %':>{width + 2}}"
                          for v in values[1:])
        out.append(f"  {label:<22}{cells}{changes}")
    return "\n".join(out)


def _settings_changed(a: dict, b: dict) -> list[str]:
    """``key old -> new`` for each recorded setting in which run ``b`` differs from run ``a``."""
    from .results.table import settings_changed

    return [f"{k} {va} -> {vb}" for k, va, vb in settings_changed(a, b)]


def format_summary(summary: dict, attrs: dict) -> str:
    rows = [
        ("requests completed", f"{summary['completed']}"),
        ("simulated duration", f"{summary['duration_s']:.2f} s"),
        ("request throughput", f"{summary['request_throughput']:.2f} req/s"),
        ("output throughput", f"{summary['output_throughput']:.1f} tok/s"),
        ("total token throughput", f"{summary['total_token_throughput']:.1f} tok/s"),
        ("preemptions", f"{summary['preemptions']}"),
        ("prefix-cache hit tokens", f"{summary['prefix_hit_tokens']}"),
    ]
    if "pool_hit_pct" in summary:
        rows.append(("lower-pool hit rate", ", ".join(f"{v:.1f} %" for v in summary["pool_hit_pct"])))
    if "total_energy_J" in summary:
        rows.append(("energy", f"{summary['total_energy_J']:.0f} J, "
                               f"{summary['energy_per_output_token_J']:.4f} J per output token"))
    out = [describe_run(attrs)]
    if not str(attrs.get("latency_source", "profile")).startswith("profile"):
        rows.insert(0, ("latency model", attrs["latency_source"]))
    out += [f"  {k:<26}{v}" for k, v in rows]
    out.append(f"  {'':<26}{'mean':>10}{'median':>10}{'p90':>10}{'p99':>10}")
    for m, label in (("ttft", "TTFT (ms)"), ("tpot", "TPOT (ms)"), ("itl", "ITL (ms)"), ("e2el", "E2E latency (ms)")):
        vals = "".join(f"{v:>10.1f}" if math.isfinite(v) else f"{'n/a':>10}"     # TPOT of one-token requests
                       for v in (summary[f"{s}_{m}_ms"] for s in ("mean", "median", "p90", "p99")))
        out.append(f"  {label:<26}{vals}")
    return "\n".join(out)


# the flags `run --scenario` takes; every other one sets what the scenario sets, by the same name but these
SCENARIO_RUN_FLAGS = {"scenario", "out", "bin", "json", "quiet", "reference_dir", "verbose"}
SCENARIO_FIELD_OF = {"workload": "trace", "what_if": "what_if_mem_bw and what_if_flops", "efficiency": "efficiency_file"}


def _run_scenario(args: argparse.Namespace):
    """`run --scenario`: the scenario's run, as the explorer and ``Scenario.run`` make it; a setting flag beside it
    is refused (which of the two was meant?), naming the scenario field that sets it."""
    from .scenario import Scenario

    for dest in sorted(args.given - SCENARIO_RUN_FLAGS):
        raise InputError(f"sets the run's {SCENARIO_FIELD_OF.get(dest, dest)}, which the scenario sets (edit it in "
                         f"{args.scenario}); drop the flag or --scenario", "command line", "--" + dest.replace("_", "-"))
    scenario = Scenario.load(args.scenario)
    if args.out:
        scenario.refuse_to_replace_an_input(args.out, "--out", args.reference_dir)
    if "bin" in args.given:   # how the results are binned, not what runs: the flag overrides the scenario's bin_s
        scenario = scenario.replace(bin_s=args.bin)
    if args.out:
        _refuse_to_replace_a_sweep(_results_out(args.out), ANOTHER_NAME)
    workload = scenario.workload(args.reference_dir)
    bar, cb = _progress(len(workload), _bars(args))
    try:
        return scenario.run(args.reference_dir, cb, workload)
    finally:
        if bar is not None:
            bar.close()


def cmd_run(args: argparse.Namespace) -> int:
    try:
        res = _run_scenario(args) if args.scenario else _run_cluster(args)
    except RunInterrupted as stop:
        return _keep_interrupted(stop, args)
    try:   # the file first: nothing after the run may lose it; the summary even when no file could be written
        if args.out:
            _save_or_rescue(res, args.out)
    finally:
        _print_summary(res, args)
    _say_synthetic(args)
    if args.out:
        from .results.dataset import results_format

        what = "one row per request" if results_format(args.out) == "csv" else "netCDF"
        print(f"results written to {args.out} ({what})", file=sys.stderr)
    return 0


def _print_summary(res, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(_json_safe(res.summary()), indent=2))
    else:
        print(format_summary(res.summary(), res.attrs))


def _keep_interrupted(stop: RunInterrupted, args: argparse.Namespace) -> int:
    """A run stopped by a Ctrl-C: what it simulated goes to ``--out`` (a Ctrl-C again is ignored until the file is
    whole) and its summary is printed, marked partial unless the run had finished; one line says what was kept.
    The status stays a Ctrl-C's."""
    from .ctrl_c import ctrl_c_calls

    res = stop.results
    if res is None:
        kept = "nothing to keep"
    else:
        if args.out:
            with ctrl_c_calls(lambda: None):
                _save_or_rescue(res, args.out)
        _print_summary(res, args)
        partial = "partial " if res.attrs.get("interrupted") else ""   # else it came as a finished run's were built
        kept = f"{partial}results in {args.out}" if args.out else f"{partial}summary above (--out FILE keeps the run)"
    _say_synthetic(args)
    print(f"llmss: {stop}; {kept}", file=sys.stderr)
    return 130


def _run_cluster(args: argparse.Namespace):
    """`run CLUSTER`: the config on a trace or a seeded synthetic workload, the settings from the flags."""
    from .api import simulate
    from .reference import ReferenceLayout, resolve_reference_dir
    from .workload import load_trace, synthetic

    engine = _engine_from(args)
    shape = {k: getattr(args, k) for k in ("rate", "input_len", "output_len") if getattr(args, k) is not None}
    cluster = args.cluster_config
    if absent(Path(cluster)) == "file does not exist":   # `configs/cluster/x.json` of the reference data, as a trace
        cluster = ReferenceLayout(resolve_reference_dir(args.reference_dir)).find(cluster)
    if args.workload:
        if shape:
            raise InputError("shapes a synthetic workload only; drop it, or drop --workload", "command line",
                             f"--{next(iter(shape)).replace('_', '-')}")
        wl = ReferenceLayout(resolve_reference_dir(args.reference_dir)).find(args.workload)
        workload = load_trace(wl, args.num_requests)
        if args.num_requests and len(workload) < args.num_requests:
            log.warning("%s holds %d requests; running all of them (--num-requests %d asked for more)",
                        wl, len(workload), args.num_requests)
    else:
        try:
            workload = synthetic(args.num_requests or SYNTHETIC_REQUESTS, seed=args.seed, **shape)   # else its defaults
        except InputError as exc:   # named by synthetic()'s argument: say the flag
            flag = {"input": "--input-len", "output": "--output-len", "rate": "--rate"}.get(exc.where or "")
            if exc.source != "argument" or flag is None:
                raise
            raise InputError(exc.message, "command line", flag) from None
    if args.out:
        _refuse_to_replace_a_sweep(_results_out(args.out), ANOTHER_NAME)
    bar, cb = _progress(len(workload), _bars(args))
    try:
        return simulate(cluster, workload, engine=engine, reference_dir=args.reference_dir, progress=cb,
                        router=args.router, expert_gate=args.expert_gate, gate_skew=args.gate_skew,
                        kv_transfer=args.kv_transfer, seed=args.seed, prefix_storage=args.prefix_storage,
                        prefix_sharing=args.prefix_sharing, attn_offload=args.attn_offload,
                        sub_batch_interleaving=args.sub_batch_interleaving, bin_s=args.bin, **_latency_kwargs(args))
    finally:
        if bar is not None:
            bar.close()


SYNTHETIC_REQUESTS = 100   # `run` without --workload or --num-requests


def _say_synthetic(args: argparse.Namespace) -> None:
    """After a run, whole or stopped by a Ctrl-C, the workload it generated when no --workload named one: it is not
    the trace a user may think it is. Not before: a run that fails prints its one error line alone."""
    if not (args.scenario or args.workload):
        print(f"no --workload: {_synthetic_said(args)}", file=sys.stderr)


def _synthetic_said(args: argparse.Namespace) -> str:
    """The generated workload in words, with the flags that shape it."""
    import inspect

    from .workload import synthetic

    n = args.num_requests or SYNTHETIC_REQUESTS
    default = {k: p.default for k, p in inspect.signature(synthetic).parameters.items()}
    rate, ins, outs = (default[k] if getattr(args, k) is None else getattr(args, k)
                       for k in ("rate", "input_len", "output_len"))
    return (f"{n} synthetic requests, Poisson arrivals at {rate:g} req/s, prompt lengths {ins}, output lengths "
            f"{outs}, seed {args.seed} (--num-requests, --rate, --input-len, --output-len and --seed set them)")


def _results_out(out: str, netcdf_only: bool = False) -> Path:
    """An ``--out`` results file checked before any work: writable, and named for a format we write."""
    from .results.dataset import results_format

    if results_format(out) != "netcdf" and netcdf_only:
        raise InputError("a sweep's results are written as netCDF; name a .nc file", out, "--out")
    return check_writable_file(out)


def _save_or_rescue(res, out: str) -> None:
    """Results that cannot be written where asked (disk full, ...) go to a temporary file, not lost."""
    import tempfile

    try:
        res.save(out)
    except (WriteFailed, OSError) as e:
        why = e.message if isinstance(e, WriteFailed) else f"could not write the results ({e.strerror or e})"
        try:
            fd, rescue = tempfile.mkstemp(prefix="llmss-results-", suffix=".nc")
            os.close(fd)
            res.save(rescue)
        except (WriteFailed, OSError):   # the temporary folder is full too: the printed summary is what is left
            raise InputError(f"{why}; nor could they be saved to the temporary folder", out, "--out") from None
        raise InputError(f"{why}; the results were saved to {rescue}", out, "--out") from None


def _bench_root(args: argparse.Namespace) -> Path:
    """The reference root of the bench commands: ``--reference-dir`` (or the default), stepping up from the
    paper artifact folder to the root that holds it."""
    from .reference import bench_root, resolve_reference_dir

    return bench_root(resolve_reference_dir(args.reference_dir))


EXAMPLE = "300 ShareGPT requests at 10 req/s, Llama-3.1-8B on one RTX PRO 6000"


def cmd_example(args: argparse.Namespace) -> int:
    root = _bench_root(args)
    cluster = root / "measurements" / "RTXPRO6000" / "Llama-3.1-8B" / "config.json"
    if not cluster.is_file():
        cluster = root / "configs" / "cluster" / "single_node_single_instance.json"
    argv = ["run", str(cluster), "--workload", "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl",
            "--reference-dir", str(root)] + (["--out", args.out] if args.out else []) + (["-q"] if args.quiet else [])
    print(f"Example: {EXAMPLE} ({cluster.name})")
    return cmd_run(build_parser().parse_args(argv))


def cmd_lab(args: argparse.Namespace) -> int:
    from .lab import launch

    return launch(args.port, args.no_browser, args.reference_dir, args.notebook, replace=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import format_report, validate

    root = _bench_root(args)
    report, res = validate(args.measurement_dir, root, **_latency_kwargs(args))
    report["latency_source"] = res.attrs["latency_source"]
    if args.json:
        print(json.dumps(_json_safe(report), indent=2))
    else:
        print(format_report(report, f"Validation: {args.measurement_dir}"))
        print(f"Latencies from {report['latency_source']}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .results.dataset import Results

    runs = []
    for path in args.results:
        t0 = time.perf_counter()
        res = Results.load(path)
        a = res.attrs
        log.info("%s: read in %.2f s; written by llmss_lab %s (git %s) from cluster %s, workload %s, latency %s; "
                 "its input files: %s", path, time.perf_counter() - t0, a.get("llmss_lab_version", "?"),
                 a.get("git_hash", "?"), a.get("cluster", "?"), a.get("workload", "?"), a.get("latency_source", "?"),
                 a.get("input_files_json", "not recorded"))
        try:
            summary = res.summary()
            text = format_summary(summary, res.attrs)   # also what tells a file changed by hand
        except (ValueError, TypeError, KeyError) as exc:   # a file edited by hand or by another tool
            raise InputError(f"holds results this version cannot summarise ({type(exc).__name__}: {exc}); was it "
                             "changed after llmss wrote it?", path) from None
        runs.append((path, summary, res.attrs))
    print(text if len(runs) == 1 else format_comparison(runs))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .reference import fetch_reference

    dest = fetch_reference(args.dest, progress=lambda items: tqdm(items, unit="file", desc="fetching",
                                                                  disable=not _bars(args)),
                           artifact=args.artifact)
    print(f"reference data in {dest} (use it with --reference-dir {dest}, or it is found automatically)")
    return 0


def cmd_figure_data(args: argparse.Namespace) -> int:
    from .figures import SCENARIOS, artifact_root, compare, format_scores, write_figure_data

    ref = artifact_root(args.reference_dir)
    for n in args.figures:
        if n not in SCENARIOS:
            raise InputError(f"figure data exists for figures {sorted(SCENARIOS)}", "figure-data", str(n))
    refuse_inside(args.out, ref, "the paper artifact")
    out = check_writable_folder(args.out)
    log.info("paper artifact: %s; figure data into %s", ref, out)
    for n in dict.fromkeys(args.figures):   # 6 6 writes figure 6 once
        t0 = time.perf_counter()
        files = write_figure_data(n, ref, out, on_scenario=lambda sc, wall: print(
            f"{sc.label}: simulated in {wall:.2f} s", file=sys.stderr))
        log.info("figure %d: %d files written in %.2f s", n, len(files), time.perf_counter() - t0)
        for f in files:
            print(f)
        if args.compare:
            t0 = time.perf_counter()
            scores = compare(n, ref, out)
            log.info("figure %d: scored in %.2f s", n, time.perf_counter() - t0)
            print(format_scores(scores))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .paper_run import notebooks, run_all

    todo = notebooks(args.only)
    bar = tqdm(total=len(todo), unit="notebook", desc="paper figures", disable=not _bars(args),
               delay=1)  # not over a quick error

    def done(run) -> None:
        bar.update(1)
        state = f"FAILED: {run.error}" if run.error else "ok"
        bar.write(f"{run.notebook.name}: {run.seconds:.1f} s, {state}", file=sys.stderr)

    t0 = time.perf_counter()
    index, runs = run_all(args.reference_dir, args.out, args.only, args.num_requests, args.seed, not args.no_png, done)
    bar.close()
    failed = [r for r in runs if r.error]
    print(f"{len(runs) - len(failed)} of {len(runs)} notebooks ran in {time.perf_counter() - t0:.0f} s; open {index}")
    for r in failed:
        print(f"failed: {r.notebook.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _slo(args: argparse.Namespace, required: bool):
    from .sweeps import SLO

    if args.slo_ttft_ms is None and args.slo_tpot_ms is None:
        if required:
            raise InputError("give --slo-ttft-ms and/or --slo-tpot-ms", "capacity", "--slo-ttft-ms")
        if args.slo_quantile is not None:   # alone it would be dropped, and the sweep would have no goodput
            raise InputError("is the quantile of an SLO limit; give --slo-ttft-ms and/or --slo-tpot-ms too",
                             "command line", "--slo-quantile")
        return None
    quantile = {} if args.slo_quantile is None else {"quantile": args.slo_quantile}   # else SLO's default
    return SLO(args.slo_ttft_ms, args.slo_tpot_ms, **quantile)


def _sweep_table(ds, columns: list[str]) -> str:
    import pandas as pd

    keep = [c for c in columns if c in ds]
    frame = ds[keep + ["status"]].to_dataframe()
    with pd.option_context("display.width", 200, "display.max_rows", 60, "display.max_columns", 20):
        return frame.round(3).to_string()


def _quiet_dask(args: argparse.Namespace) -> None:
    """dask sets its loggers to INFO when imported; they would print through our root handler."""
    import distributed  # noqa: F401 - imported for its logging set-up, then quietened

    if not args.verbose:
        logging.getLogger("distributed").setLevel(logging.WARNING)


ANOTHER_NAME = "give --out another name, or delete the file to replace it"


def _refuse_to_replace_a_sweep(out: Path, how: str = "--resume goes on with it (same scenario and grid), "
                                                      "--overwrite replaces it") -> None:
    """A sweep can take hours: writing another sweep, a run or a capacity search into its file would throw its
    points away unasked."""
    from .sweeps import load

    if not out.is_file():
        return
    try:
        done = int(load(out).attrs.get("points_ok", 0))
    except InputError:   # not a sweep file: replaced, as every --out is
        return
    if done:
        raise InputError(f"holds a sweep with {done} point{'s' if done != 1 else ''} done; {how}", out, "--out")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .scenario import Scenario
    from .sweeps import read_grid, refuse_to_replace_an_input, sweep

    _quiet_dask(args)
    base = Scenario.load(args.scenario)
    grid = read_grid(args.grid)
    refuse_to_replace_an_input(args.out, "--out", base, grid, args.grid, args.reference_dir)
    out = _results_out(args.out, netcdf_only=True)
    if not (args.resume or args.overwrite):
        _refuse_to_replace_a_sweep(out)
    ds = sweep(base, grid, client=args.dask_scheduler, reference_dir=args.reference_dir, n_workers=args.workers,
               slo=_slo(args, False), save_to=out, resume=args.resume, progress=_bars(args), grid_source=args.grid)
    print(_sweep_table(ds, ["output_throughput", "mean_ttft_ms", "mean_tpot_ms", "goodput",
                            "energy_per_output_token_J", "num_gpus", "wall_s"]))
    _print_failures(ds)
    reused = f" ({ds.attrs['points_resumed']} of them reused from {out})" if ds.attrs["points_resumed"] else ""
    print(f"{ds.attrs['points_ok']} ok{reused}, {ds.attrs['points_failed']} failed; wrote {out}")
    return 1 if ds.attrs["points_failed"] and not ds.attrs["points_ok"] else 0   # nothing ran: a script should know


def _print_failures(ds) -> None:
    """Why each failed point of a sweep or capacity search failed (its table shows only that it did)."""
    errors = ds.error.to_series()
    for where, state in ds.status.to_series().items():
        if state == "failed":
            print(f"failed: {dict(zip(ds.status.dims, where if isinstance(where, tuple) else (where,)))}: "
                  f"{errors[where]}", file=sys.stderr)


def _known_sweep(path: str, slo):
    """The sweep file given to ``llmss capacity --known``, its runs judged by the search's SLO: else refused, the
    file and the flag named (before a worker starts)."""
    from .sweeps import load, other_slo

    try:
        ds = load(path)
    except InputError as exc:   # 'file does not exist', 'not a sweep file': of the file this flag gave
        exc.where = exc.where or "--known"
        raise
    if (mismatch := other_slo(ds, slo)) is not None:
        raise InputError(f"{mismatch}: give the SLO flags the sweep ran with (--slo-ttft-ms, --slo-tpot-ms, "
                         "--slo-quantile), or run the sweep again with these", path, "--known")
    return ds


def cmd_capacity(args: argparse.Namespace) -> int:
    from .scenario import Scenario
    from .sweeps import capacity, read_grid, refuse_to_replace_an_input, save

    _quiet_dask(args)
    base = Scenario.load(args.scenario)
    grid = read_grid(args.grid) if args.grid else None
    if args.out:
        refuse_to_replace_an_input(args.out, "--out", base, grid, args.grid, args.reference_dir)
        _refuse_to_replace_a_sweep(_results_out(args.out, netcdf_only=True), ANOTHER_NAME)
    slo = _slo(args, True)
    known = _known_sweep(args.known, slo) if args.known else None
    ds = capacity(base, slo, grid, (args.rate_min, args.rate_max), args.rel_tol, client=args.dask_scheduler,
                  reference_dir=args.reference_dir, n_workers=args.workers, progress=_bars(args),
                  grid_source=args.grid or "grid", known=known)
    print(_sweep_table(ds, ["max_rate", "min_rate_missed", "bound", "goodput", "energy_per_output_token_J", "num_gpus",
                            "runs", "rounds"]))
    reused = f", {ds.attrs['runs_reused']} reused from {args.known}" if args.known else ""
    print(f"{ds.attrs['runs_made']} runs made{reused}")
    _print_failures(ds)
    if args.out:   # after the table: a failed write then loses no answer
        log.info("wrote %s", save(ds, args.out).absolute())
    return 1 if (ds.bound == "failed").all() else 0


def cmd_profile_fit(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from .latency import roofline
    from .latency.specs import SPECS_DIR, load_specs

    stored = roofline.EFFICIENCY_FILE
    target = stored if args.replace_stored_fit else Path(args.out or "efficiency.yaml")
    refuse_inside(target, SPECS_DIR, "the hardware specs the fit reads")
    if not args.replace_stored_fit and _same_path(str(target), str(stored)):   # a refit on one's own profiles lost
        # the shipped fit every run without --efficiency reads (in a regular install, inside site-packages)
        raise InputError("is the kit's stored fit, which runs without --efficiency read; write yours elsewhere "
                         "(maintainers replace it with --replace-stored-fit)", target, "--out" if args.out else None)
    out = check_writable_file(target)
    if out.suffix.lower() not in (".yaml", ".yml"):   # `--out scenario.json` wrote YAML over the scenario
        raise InputError(f"the fit is YAML; name a .yaml file (not {out.suffix or 'a name without one'})", args.out,
                         "--out")
    root = _bench_root(args)   # every profile: the bench's and the artifact's
    specs = load_specs()
    log.info("hardware specs of %s from %s", ", ".join(sorted(specs)), SPECS_DIR)
    bar = _stage_bar("reading the profiles", _bars(args))
    progress = _stage_progress(bar)
    try:
        samples = roofline.all_samples(root, specs, progress)
        samples = _left_out(samples, args.leave_out)
        progress("fitting the efficiency curves", 0, 0)
        eff = roofline.fit(samples, specs)
    finally:
        if bar is not None:
            bar.close()
    path = roofline.save_efficiency(eff, samples, specs, out)
    print(f"fitted on {len(samples)} operator timings of {len({x.bundle for x in samples})} profiles; wrote {path}"
          + ("" if args.replace_stored_fit else f" (use it with --efficiency {path})"))
    for c, e in eff.items():
        print(f"  {c:<28} " + "  ".join(f"{k} {v:.3g}" for k, v in dataclasses.asdict(e).items()))
    if args.leave_one_out:
        cols = ("gemm", "attention_prefill", "attention_decode", "attention_mixed")
        print("leave-one-out (fit without any profile of the same hardware and model), median |error| %:")
        print(f"  {'profile':<50}{'all':>7}" + "".join(f"{c.replace('attention_', 'attn ')[:11]:>12}" for c in cols))
        for hw, model in dict.fromkeys((x.hardware, x.bundle.rsplit("/tp", 1)[0].split("/", 1)[1]) for x in samples):
            eff_loo = roofline.fit(roofline.leave_out(samples, hw, model), specs)
            for b in sorted({x.bundle for x in samples if x.bundle.startswith(f"{hw}/{model}/tp")}):
                test = [x for x in samples if x.bundle == b]
                e = roofline.errors_pct(test, eff_loo, specs)
                med = [float(np.median(np.abs(e[[x.cls == c for x in test]]))) if any(x.cls == c for x in test)
                       else float("nan") for c in cols]
                print(f"  {b:<50}{np.median(np.abs(e)):>7.1f}" + "".join(f"{m:>12.1f}" for m in med))
    return 0


def _left_out(samples: list, leave_out: list[str]) -> list:
    """The operator timings without those of each ``--leave-out`` HW/ORG/MODEL (one not profiled is refused)."""
    from .latency import roofline

    profiled = sorted({x.bundle.rsplit("/tp", 1)[0] for x in samples})
    for item in leave_out:
        if item not in profiled:
            raise InputError(f"no profile {item!r} to leave out{_did_you_mean(item, profiled)}; give HW/ORG/MODEL, "
                             f"one of {profiled}", "command line", "--leave-out")
        hw, _, model = item.partition("/")
        samples = roofline.leave_out(samples, hw, model)
        log.info("left out %s: %d operator timings remain", item, len(samples))
    return samples


def _did_you_mean(item: str, profiled: list[str]) -> str:
    """The profile a HW/ORG/MODEL typo meant: the same hardware and model name, whatever the case, the
    organisation or a /tpN suffix."""
    def key(name: str) -> tuple[str, str]:
        parts = re.sub(r"/tp\d+$", "", name.strip("/")).split("/")
        return parts[0].casefold(), parts[-1].casefold()
    near = [p for p in profiled if key(p) == key(item)]
    return f" (did you mean {near[0]!r}?)" if near else ""


def cmd_profile_check(args: argparse.Namespace) -> int:
    from .latency import roofline

    bar = _stage_bar("reading the profiles", _bars(args) and args.leave_one_out)   # else it takes under a second
    try:
        table = roofline.check(_bench_root(args), args.hardware, args.model, args.tp, args.leave_one_out,
                               progress=_stage_progress(bar))
    finally:
        if bar is not None:
            bar.close()
    how = "a fit on every other profile" if args.leave_one_out else "the stored fit (profiles/efficiency.yaml)"
    print(f"analytical model vs the profile of {args.model} on {args.hardware}, with {how}")
    print(f"{'operator':<18}{'samples':>8}{'median |err| %':>16}{'p90 |err| %':>13}{'median err %':>14}"
          f"{'below roofline %':>18}")
    for op, s in table.items():
        print(f"{op:<18}{s['n']:>8}{s['median_abs_pct']:>16.1f}{s['p90_abs_pct']:>13.1f}{s['median_signed_pct']:>+14.1f}"
              f"{s['below_roofline_pct']:>18.1f}")
    short = {op: s["below_roofline_pct"] for op, s in table.items() if op != "all" and s["below_roofline_pct"] >= 0.05}
    if short:
        print("below roofline: timings shorter than the counted FLOPs and bytes take at the spec's peak. The kernel "
              "did less work than counted (fused away, or data served from cache), and the analytical model, which "
              "never beats the roofline, cannot match them: " + ", ".join(f"{op} {v:.1f} %" for op, v in short.items()))
    return 0


def cmd_profile_iterations(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from . import calibration

    root = _bench_root(args)
    bar = _stage_bar("simulating the bench workloads", _bars(args))
    try:
        rows = calibration.iteration_check(root, leave_one_out=not args.stored_fit, progress=_stage_progress(bar))
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    how = "the stored fit" if args.stored_fit else "a fit without any profile of the same hardware and model"
    print(f"analytical vs measured step latency over {rows[0].steps if rows else 0} bench steps, with {how}")
    print(f"{'hardware':<11}{'model':<36}{'tp':>3}{'stack':>9}{'median|err|%':>13}{'p90':>7}{'signed':>8}"
          f"{'no-attn':>8}{'attn share':>11}{'attn<roof':>10}{'profile ms':>11}{'model ms':>9}")
    for r in rows:
        print(f"{r.hardware:<11}{r.model:<36}{r.tp:>3}{r.stack:>9}{r.median_abs_pct:>13.1f}{r.p90_abs_pct:>7.1f}"
              f"{r.median_signed_pct:>+8.1f}{r.no_attention_median_abs_pct:>8.1f}{r.attention_share:>11.0%}"
              f"{r.attention_below_roofline_pct / 100:>10.0%}{r.profiled_ms:>11.2f}{r.analytical_ms:>9.2f}")
    return 0


def _latency_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latency", choices=("auto", "profile", "analytical"), default="auto",
                   help="step latencies from a measured profile, the analytical model (profiles/hardware), or "
                        "auto: the profile where one exists (default)")
    p.add_argument("--what-if", action="append", default=[], metavar="FIELD=X",
                   help="scale the hardware spec for the analytical model: FIELD memory_bw_gbs or bf16_tflops, X a "
                        "multiplier from 0.01 to 100, e.g. memory_bw_gbs=2 (repeatable)")
    p.add_argument("--efficiency", metavar="FILE.yaml", help="fitted efficiency curves, as `llmss profile-fit` writes them "
                                                          "(default: the stored fit, profiles/efficiency.yaml)")


def _latency_kwargs(args: argparse.Namespace) -> dict:
    what_if = {}
    for item in args.what_if:
        name, _, value = item.partition("=")
        if name in what_if:
            raise InputError(f"{name} given twice ({what_if[name]:g} and {value})", "command line", "--what-if")
        try:
            what_if[name] = float(value)
        except ValueError:
            raise InputError(f"expected FIELD=NUMBER, got {item!r}", "command line", "--what-if") from None
    return {"latency": args.latency, "what_if": what_if, "efficiency_file": args.efficiency}


def _meant(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the option a word typed wrong was closest to, or that it begins; else ''."""
    from .config.reader import closest   # only on a typo: it loads numpy, which `llmss --help` need not

    options = list(options)
    starts = [o for o in options if o.startswith(word)] if len(word) > 1 else []
    near = (closest(word, options) or next((o for o in options if _swapped(word, o)), None)
            or (starts[0] if len(starts) == 1 else None))
    return f" (did you mean {near!r}?)" if near else ""


def _swapped(word: str, option: str) -> bool:
    """Two neighbouring letters swapped (`rnu` for `run`): difflib rates that too far off in a short word."""
    return any(word == option[:i] + option[i + 1] + option[i] + option[i + 2:] for i in range(len(option) - 1))


class _Parser(argparse.ArgumentParser):
    """argparse that names what was meant by a command, a choice or a flag typed wrong (Python 3.14's
    ``suggest_on_error`` does the first two), and says an unknown flag in the usage of the command it was given to."""

    def _check_value(self, action: argparse.Action, value) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            if not isinstance(value, str) or "maybe you meant" in exc.message:   # 3.14 with suggest_on_error
                raise
            choices = ", ".join(map(repr, action.choices))   # after the name meant, which a long list hid
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{_meant(value, action.choices)}; "
                                                 f"choose from {choices}") from None

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:   # the command's parser puts its unknown flags here, where argparse would show the top usage
            commands = next((a.choices for a in self._actions if a.dest == "command" and a.choices), {})
            parser = commands.get(getattr(namespace, "command", None), self)
            flag = next((a for a in extras if a.startswith("--")), None)
            known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")
                     and a.help is not argparse.SUPPRESS]
            parser.error(f"unrecognized arguments: {' '.join(extras)}"
                         + (_meant(flag.partition("=")[0], known) if flag else ""))
        return namespace


class _Subcommand(_Parser):
    """A subcommand whose costly arguments (``later``) are added only when it parses or shows its help: `run`'s
    choices and defaults import the kernel and numpy (~0.4 s), which `llmss --help` and other commands never need."""

    def __init__(self, *args, later: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._later = later

    def _add_later(self) -> None:
        if self._later is not None:
            later, self._later = self._later, None
            later(self)

    def parse_known_args(self, args=None, namespace=None):
        """Also records which flags were given (``given``): a flag given with its default value is still given
        (`run --scenario` refuses it, where comparing with the default would let it pass unused)."""
        self._add_later()
        namespace = argparse.Namespace() if namespace is None else namespace
        flags = [a for a in self._actions if a.option_strings and a.default is not argparse.SUPPRESS]
        unset = object()   # argparse sets no default over an attribute already there
        for a in flags:
            if not isinstance(a.default, list):   # an append copies what is there: it starts from its default
                namespace.__dict__.setdefault(a.dest, unset)
        namespace, rest = super().parse_known_args(args, namespace)
        namespace.given = set()
        for a in flags:
            value = getattr(namespace, a.dest)
            if value is unset:
                setattr(namespace, a.dest, a.type(a.default) if isinstance(a.default, str) and callable(a.type)
                        else a.default)
            elif not isinstance(a.default, list) or value != a.default:
                namespace.given.add(a.dest)
        return namespace, rest

    def format_help(self) -> str:
        self._add_later()
        return super().format_help()


def _run_settings(r: argparse.ArgumentParser) -> None:
    """`run`'s policy, memory, latency and engine flags: the policies' names come from the kernel's registries."""
    from .kernel.moe import GATES
    from .kernel.simulator import KV_TRANSFERS
    from .kernel.router import ROUTERS

    r.add_argument("--router", default="load_score", choices=ROUTERS.names(),
                   help="request routing policy (default %(default)s)")
    r.add_argument("--expert-gate", default="balanced", choices=GATES.names(),
                   help="MoE expert routing policy (default %(default)s)")
    r.add_argument("--gate-skew", metavar="S", type=_number(0, 20), default=1.0,
                   help="Zipf exponent of the zipf expert gate (0 = uniform, up to 20; default %(default)s)")
    r.add_argument("--kv-transfer", default="layer", choices=KV_TRANSFERS,
                   help="P/D KV hand-off: pushed layer by layer behind the prefill, pushed whole after it, or "
                        "pulled by the decode instance when it sees the request (vLLM V1's asynchronous "
                        "connectors); default %(default)s")
    r.add_argument("--prefix-storage", choices=("cpu", "cxl"), default=None,
                   help="lower prefix-cache tier (LMCache-like pool in CPU or CXL memory)")
    r.add_argument("--prefix-sharing", choices=("instance", "node", "cluster"), default="instance",
                   help="who shares a lower prefix pool (default %(default)s)")
    r.add_argument("--attn-offload", action="store_true",
                   help="run decode attention on the node's PIM device (cpu_mem.pim_config)")
    r.add_argument("--sub-batch-interleaving", action="store_true",
                   help="with --attn-offload: overlap NPU and PIM work of two sub-batches")
    _latency_args(r)
    _engine_args(r)


class _Misplaced(argparse.Action):
    """A flag that means something else in another command: say where it belongs, not just 'unrecognized'."""

    def __init__(self, option_strings: list[str], dest: str, message: str, **kw) -> None:
        super().__init__(option_strings, dest, nargs="?", **kw)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(self.message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llmss", description="Simulate LLM serving on profiled hardware.",
                epilog="Start with `llmss example` (a 300-request run of the bundled trace) or `llmss lab` (the "
                       "explorer in JupyterLab); `llmss COMMAND --help` lists a command's flags.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Subcommand)

    def command(name: str, help: str, **kw) -> _Subcommand:
        """A command whose own --help opens with the line `llmss --help` gives it."""
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kw)

    ref_help = "reference data root (default: $LLMSS_REFERENCE_DIR, ../shared/reference/llmservingsim, or the fetch cache)"

    r = command("run", help="simulate a cluster config on a workload, or a scenario file", later=_run_settings)
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("cluster_config", nargs="?", metavar="CLUSTER", help="cluster config JSON (LLMServingSim format); relative paths "
                                                        "are also tried under the reference root")
    what.add_argument("--scenario", metavar="SCENARIO.json", help="scenario JSON (as the explorer saves it) in place of a cluster config: it "
                                         "sets the cluster, workload and every setting, so of the other flags only "
                                         "--out, --bin, --json, --reference-dir and -q are taken")
    r.add_argument("--workload", metavar="TRACE.jsonl", help="JSONL trace; relative paths are also tried under the reference root. "
                                      "Without it, a synthetic Poisson workload is generated")
    r.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    r.add_argument("--num-requests", metavar="N", type=_whole(1), default=None,
                   help="use only the first N requests (or generate N; default: the whole trace, or 100)")
    r.add_argument("--rate", metavar="R", type=_number(0, low_open=True), default=None,
                   help="synthetic arrival rate, req/s (default 10)")
    r.add_argument("--input-len", metavar="DIST", help="synthetic prompt lengths: fixed:N, uniform:LO:HI, "
                                       "lognormal:MEDIAN:SIGMA or sharegpt (default)")
    r.add_argument("--output-len", metavar="DIST", help="synthetic output lengths (same forms; default sharegpt)")
    r.add_argument("--seed", metavar="N", type=_whole(0), default=0,
                   help="seed of the synthetic workload and of every random policy (default %(default)s)")
    r.add_argument("--out", metavar="FILE", help="write results here: .nc (netCDF, every Dataset) or .csv (one row per request)")
    r.add_argument("--bin", type=_number(0.001, 86_400), default=1.0, metavar="SECONDS",
                   help="width of the time series' and power's bins and spacing of the memory samples (default "
                        "%(default)g s; "
                        "coarser for long runs; at most a day)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)

    e = command("example", help=f"simulate the bundled example ({EXAMPLE}) and print its summary")
    e.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    e.add_argument("--out", metavar="FILE", help="write results here: .nc (netCDF, every Dataset) or .csv (one row per request)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(fn=cmd_example)

    lab = command("lab", help="open JupyterLab on the quickstart notebook (the explorer)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser; print the URL")
    lab.add_argument("--port", metavar="N", type=_whole(1, 65535), help="port (default: Jupyter's, 8888 or the next free one)")
    lab.add_argument("--notebook", metavar="NB", default="00_quickstart.ipynb",
                     help="notebook to open, from notebooks/: a file name, without .ipynb too, or its number (02) "
                          "(default: 00_quickstart.ipynb)")
    lab.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    lab.set_defaults(fn=cmd_lab)

    v = command("validate", help="compare against a real vLLM run (bench measurement folder)")
    v.add_argument("measurement_dir", metavar="MEASUREMENT_DIR", help="a bench run folder: config.json, vllm/meta.json, "
                   "vllm/requests.jsonl; a relative path is also tried under the reference root")
    v.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    v.add_argument("--json", action="store_true", help="print one JSON object")
    _latency_args(v)
    v.set_defaults(fn=cmd_validate)

    s = command("summary", help="print the summary of a saved results file, or several side by side")
    s.add_argument("results", nargs="+", metavar="RESULTS.nc", help="results files (.nc); with two or more, a table of their metrics "
                                              "and each one's change from the first")
    s.set_defaults(fn=cmd_summary)

    g = command("figure-data", help="run the paper's scenarios of figures 5-10 and write the artifact's TSVs")
    g.add_argument("figures", type=int, nargs="+", metavar="FIGURE", help="figure numbers (5, 6, 7, 8, 9, 10)")
    g.add_argument("--reference-dir", metavar="ROOT", help=ref_help + "; the root that holds ispass26/, or that folder itself")
    g.add_argument("--out", metavar="DIR", required=True, help="output folder (figure_N/... is written inside)")
    g.add_argument("--compare", action="store_true", help="also score the files against real vLLM (figure 10, which has "
                                                          "none: against LLMServingSim 2.0), beside LLMServingSim 2.0's "
                                                          "own files scored the same way")
    g.set_defaults(fn=cmd_figure_data)

    fg = command("figures", help="regenerate the paper's figures 5-10 and the validation summary "
                                        "(papermill notebooks of paper_figures/, HTML + PNG + the published figure)")
    fg.add_argument("only", nargs="*", metavar="FIGURE", help="figure numbers and/or 'summary' (default: all)")
    fg.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    fg.add_argument("--out", metavar="DIR", help="output folder (default: paper_figures/output)")
    fg.add_argument("--num-requests", metavar="N", type=_whole(0), default=0,
                    help="only the first N requests of each trace (a quick look; default: the full traces)")
    fg.add_argument("--seed", metavar="N", type=_whole(0), default=0, help="seed of every random policy (default %(default)s)")
    fg.add_argument("--no-png", action="store_true", help="skip the PNG screenshots (no Chromium needed)")
    fg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fg.set_defaults(fn=cmd_figures)

    def dask_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dask-scheduler", dest="dask_scheduler", metavar="ADDR",
                       help="dask scheduler address (tcp://host:8786); default: a local cluster")
        q.add_argument("--scheduler", action=_Misplaced, help=argparse.SUPPRESS,
                       message="--scheduler is the batching policy of `llmss run`; in a sweep it is the scenario's "
                               "(or the grid's) `scheduler` field, and the dask address is --dask-scheduler")
        q.add_argument("--workers", metavar="N", type=_whole(1), help="worker processes of the local cluster (default: one per core)")
        q.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
        q.add_argument("--slo-ttft-ms", metavar="MS", type=float, help="SLO: TTFT limit (ms) at --slo-quantile")
        q.add_argument("--slo-tpot-ms", metavar="MS", type=float, help="SLO: TPOT limit (ms) at --slo-quantile")
        q.add_argument("--slo-quantile", metavar="Q", type=float, help="SLO quantile (default 0.9)")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sw = command("sweep", help="run a scenario over a grid of settings on dask; one netCDF Dataset")
    sw.add_argument("scenario", metavar="SCENARIO.json", help="scenario JSON (as the explorer saves it)")
    sw.add_argument("--grid", metavar="GRID.yaml", required=True, help="YAML: {field: [values]} (cartesian) or points: [{field: value}]")
    sw.add_argument("--out", metavar="FILE", required=True, help="results (netCDF), written as points arrive")
    again = sw.add_mutually_exclusive_group()   # both at once: which of the two was meant?
    again.add_argument("--resume", action="store_true", help="reuse the points already done in --out")
    again.add_argument("--overwrite", action="store_true", help="replace a sweep already in --out (refused otherwise)")
    dask_args(sw)
    sw.set_defaults(fn=cmd_sweep)

    cp = command("capacity", help="highest request rate within an SLO, per grid point (bisection)")
    cp.add_argument("scenario", metavar="SCENARIO.json", help="scenario JSON with a synthetic workload")
    cp.add_argument("--grid", metavar="GRID.yaml", help="YAML grid of configurations (default: the scenario alone)")
    cp.add_argument("--rate-min", metavar="R", type=_number(0, low_open=True), default=0.5, help="lowest rate searched, req/s (default 0.5)")
    cp.add_argument("--rate-max", metavar="R", type=_number(0, low_open=True), default=64.0, help="highest rate searched, req/s (default 64)")
    cp.add_argument("--rel-tol", metavar="T", type=_number(0, low_open=True), default=0.05, help="stop when high/low <= 1 + this (default 0.05)")
    cp.add_argument("--out", metavar="FILE", help="write the results (netCDF) here")
    cp.add_argument("--known", metavar="SWEEP.nc",
                    help="a sweep of the same SLO (llmss sweep --out): its runs at a configuration and a rate in the "
                         "range are not run again")
    dask_args(cp)
    cp.set_defaults(fn=cmd_capacity)

    pf = command("profile-fit", help="fit the analytical model's efficiency curves on every profiled bundle")
    pf.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    where = pf.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE.yaml", help="where to write the fit (default: efficiency.yaml in the "
                                                          "current folder), for runs to read with --efficiency FILE")
    where.add_argument("--replace-stored-fit", action="store_true",
                       help="write the kit's stored fit (profiles/efficiency.yaml), which runs without --efficiency "
                            "read: for maintainers, after the reference profiles change")
    pf.add_argument("--leave-out", action="append", default=[], metavar="HW/ORG/MODEL",
                    help="fit without this hardware's profiles of this model (repeatable), e.g. "
                         "RTXPRO6000/meta-llama/Llama-3.1-8B")
    pf.add_argument("--leave-one-out", action="store_true", help="also report each profile predicted by a fit "
                                                                 "on the others")
    pf.set_defaults(fn=cmd_profile_fit)

    pc = command("profile-check", help="compare the analytical model with a profile, operator by operator")
    pc.add_argument("hardware", metavar="HW", help="profiled hardware, e.g. RTXPRO6000")
    pc.add_argument("model", metavar="MODEL", help="model, e.g. meta-llama/Llama-3.1-8B")
    pc.add_argument("--tp", metavar="N", type=_whole(1), help="only this TP degree (default: every profiled one)")
    pc.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    pc.add_argument("--leave-one-out", action="store_true", help="fit on every other profile first")
    pc.set_defaults(fn=cmd_profile_check)

    pi = command("profile-iterations", help="per-step error of the analytical model against every profile, "
                                                   "over the bench workloads' batches")
    pi.add_argument("--reference-dir", metavar="ROOT", help=ref_help)
    pi.add_argument("--stored-fit", action="store_true",
                    help="use profiles/efficiency.yaml instead of a leave-one-out fit per (hardware, model)")
    pi.add_argument("--json", action="store_true", help="print one JSON list")
    pi.set_defaults(fn=cmd_profile_iterations)

    f = command("fetch-reference", help="download the public reference files (pinned commit) to a cache")
    f.add_argument("--dest", metavar="DIR", help="target folder (default: the per-user cache)")
    f.add_argument("--artifact", action="store_true",
                   help="also fetch the paper artifact's figure data, datasets and profiles (for `llmss figures`)")
    f.set_defaults(fn=cmd_fetch)
    for command in sub.choices.values():   # -v after the command too; SUPPRESS keeps one given before it
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress details")
    return p


INPUT_ARGS = {"cluster_config": "CLUSTER", "workload": "--workload", "scenario": "SCENARIO", "grid": "--grid",
              "known": "--known", "efficiency": "--efficiency"}


def _refuse_out_over(out: str | None, inputs: dict[str, str | Path]) -> None:
    """``--out`` naming a file the command reads would replace it with results: ``inputs`` maps what names each
    file (as the error says it) to the file."""
    if out:
        refuse_to_replace(out, inputs, "--out")


def _refuse_out_over_inputs(args: argparse.Namespace) -> None:
    """The files the command line names (a cluster config and the PIM device files it names, a trace, an
    efficiency fit, a scenario, a grid, a sweep) are inputs ``--out`` may not replace."""
    inputs = {f"the command's {name} input": getattr(args, key) for key, name in INPUT_ARGS.items()
              if getattr(args, key, None)}
    if getattr(args, "out", None) and getattr(args, "cluster_config", None):
        from .api import pim_files
        from .config.cluster import load_cluster

        try:
            cluster = load_cluster(args.cluster_config)
        except LlmssError:   # the run names what is wrong with it
            cluster = None
        if cluster is not None:
            inputs.update({f"an input of the run ({cluster.source}: {key})": path
                           for key, path in pim_files(cluster).items()})
    _refuse_out_over(getattr(args, "out", None), inputs)


def _refuse_out_in_reference(args: argparse.Namespace) -> None:
    """``--out`` inside the reference data would overwrite the measurements or profiles runs read; given the paper
    artifact inside it (ROOT/ispass26), the bench commands read the root's, so the root is kept whole."""
    out = getattr(args, "out", None)
    if not out or not hasattr(args, "reference_dir"):
        return
    from .reference import protected_root

    refuse_in_reference(out, protected_root(args.reference_dir))   # no root: the command says so if it needs one


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError, RuntimeError):   # a NUL byte, a symlink loop (before Python 3.13)
        return a == b


def _name_the_flag(exc: InputError, args: argparse.Namespace) -> None:
    """A library setting that this command's flag set is named as the flag (``what_if.memory_bw_gbs`` is
    ``--what-if: memory_bw_gbs``, ``slo: ttft_ms`` is ``--slo-ttft-ms``): the key means nothing at the prompt."""
    if exc.where == "reference_dir":
        exc.where = "--reference-dir"
        return
    if exc.source not in ("settings", "engine settings", "argument", "slo"):
        given = getattr(args, "efficiency", None)
        if (given is not None and exc.source and not (exc.where or "").startswith("--")   # not another flag's
                and _same_path(exc.source, given)):   # the flag's file, a line or key of it: named with the flag
            # ('-1: file does not exist' did not say where -1 came from, nor a cluster config's 'no fitted classes'
            # that it was read as --efficiency)
            exc.where = "--efficiency" + (f": {exc.where}" if exc.where not in (None, "efficiency_file") else "")
        return
    if not exc.where:
        return
    key, _, rest = exc.where.partition(".")
    key = f"slo_{key}" if exc.source == "slo" else {"efficiency_file": "efficiency"}.get(key, key)
    if getattr(args, key, None) is not None:
        exc.source, exc.where = "command line", "--" + key.replace("_", "-") + (f": {rest}" if rest else "")


def _log_reference(args: argparse.Namespace) -> None:
    """For ``-v``: the reference root a command reads, and what named it (a wrong one is the usual surprise)."""
    if not (hasattr(args, "reference_dir") and log.isEnabledFor(logging.INFO)):
        return
    from .reference import ENV_VAR, resolve_reference_dir

    try:
        root = resolve_reference_dir(args.reference_dir)
    except LlmssError:   # the command names what is wrong with it
        return
    how = ("--reference-dir" if args.reference_dir is not None else
           f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "found by itself: no --reference-dir or $" + ENV_VAR)
    log.info("reference data: %s (%s)", root, how)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:   # `llmss` alone: the commands and where to start, not argparse's "required: command"
        print(build_parser().format_help(), end="", file=sys.stderr)
        return 2
    try:   # `run` loads the kernel for its choices while it parses: a second or more on a busy machine
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("llmss: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:       # argparse has printed usage and the error (or the help): its status
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if isinstance(getattr(args, "out", None), str) and not args.out.strip():   # an unset $OUT: results would be lost
        print("llmss: error: command line: --out: empty; give a file or folder name", file=sys.stderr)
        return 2
    started = time.time()
    try:
        with permission_named():
            _log_reference(args)
            _refuse_out_over_inputs(args)
            _refuse_out_in_reference(args)
            code = args.fn(args)
        log.info("llmss %s took %.2f s", args.command, time.time() - started)
        return code
    except LlmssError as exc:
        if isinstance(exc, InputError):
            _name_the_flag(exc, args)
        print(f"llmss: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        written = out and Path(out).is_file() and Path(out).stat().st_mtime >= started
        # a sweep saves its points as they come in: say so when this run has written the file
        if args.fn is cmd_sweep and written:
            print(f"llmss: interrupted; {out} holds the points saved so far (run again with --resume to go on)",
                  file=sys.stderr)
        elif args.fn in (cmd_run, cmd_example):   # a Ctrl-C in the simulation itself keeps it (_keep_interrupted)
            print(f"llmss: interrupted; the results were written to {out}" if written else
                  "llmss: interrupted before the run's results were ready, so none were kept",
                  file=sys.stderr)
        else:
            print("llmss: interrupted; no file was left half-written", file=sys.stderr)
        return 130
    except BrokenPipeError:        # output piped into `head`: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
