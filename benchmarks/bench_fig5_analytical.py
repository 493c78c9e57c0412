"""How the analytical model predicts the paper's real vLLM runs on GPUs it was not validated on (issue 9), and where
its steps fall short.

Run: python benchmarks/bench_fig5_analytical.py [--reference-dir ROOT/ispass26] [--hardware H100 A6000]

It prints:
* Fig 5 per-second throughput NMAE per panel: the measured (artifact) profile, the analytical model (stored fit)
  and LLMServingSim 2.0's own run, with the last second each generates in;
* the measured-profile run's steps computed both ways, split by operator class (``calibration.step_parts``;
  collectives over the config's link): seconds of each part and its difference in points of the measured total;
* the real run's implied step time: each second's measured-profile steps (those with decodes: with P/D, the decode
  instance's), scaled by the
  tokens we generated in that second over the real run's, beside both models' mean step on those batches; the gap
  to the analytical model per step and, for a dense TP model, per all-reduce (two a layer);
* the same question on the one GPU log the artifact keeps (Fig 6, A6000, vLLM 0.11.1 run eagerly): vLLM's own
  per-second log lines at a steady running count give its step time at TP1 and TP2;
* with ``--all-reduce-us``, a what-if, not a model: the Fig 5 panels of ``--hardware`` on the analytical model with
  each TP all-reduce given that fixed cost (the configs' link latency is 0; set here per ring message, the cost over
  2 (TP - 1) messages).
"""
from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import banner, default_reference_dir


def shapes_of(it):
    from llmss_lab.latency.iteration import BatchShape

    cols = [it[k].values for k in ("num_tokens", "num_seqs", "prefill_tokens", "prefill_history", "decode_seqs",
                                   "decode_kv_mean", "decode_kv_min", "decode_kv_max", "prefill_rms")]
    return [BatchShape(int(t), int(s), int(pc), int(kp), int(n), float(kv), float(lo), float(hi), float(r))
            for t, s, pc, kp, n, kv, lo, hi, r in zip(*cols)]


def nmae_table(ref: Path, hardware: list[str], latencies: tuple[str, ...] = ("profile", "analytical"),
               theirs: bool = True) -> None:
    from llmss_lab import figures

    with tempfile.TemporaryDirectory() as tmp:
        for sc in (s for s in figures.SCENARIOS[5] if s.hardware in hardware):
            real = ref / f"figures/{sc.folder}/reference/{sc.name}_throughput.tsv"
            cells = []
            for latency in latencies:
                rows = figures.throughput_rows(figures.run_scenario(sc, ref, latency=latency))
                out = Path(tmp) / f"{latency}.tsv"
                figures._write_tsv(out, ["time_s", "throughput"], [list(r) for r in rows])
                cells.append(f"{figures.throughput_error(out, real):6.2f} ({max(t for t, g in rows if g > 0)} s)")
            if theirs:
                parsed = ref / f"figures/{sc.folder}/parsed/{sc.name}_throughput.tsv"
                last = {p: max(t for t, g in figures.throughput_series(p).items() if g > 0) for p in (parsed, real)}
                cells += [f"{figures.throughput_error(parsed, real):6.2f} ({last[parsed]} s)", f"({last[real]} s)"]
            print(f"  {sc.hardware:5s} {sc.name:5s}  " + " | ".join(cells))


def with_all_reduce_cost(ref: Path, hardware: list[str], costs_us: list[float]) -> None:
    from llmss_lab import figures

    load = figures.load_cluster
    for us in costs_us:
        def costed(path, us=us):
            spec = load(path)
            tp = spec.instances[0].tp_size
            return replace(spec, link_latency=us * 1e3 / (2 * (tp - 1)) if tp > 1 else 0.0)
        figures.load_cluster = costed   # run_scenario reads its cluster config through this name
        try:
            print(f"\nwhat-if: {us:g} us per TP all-reduce, analytical model, Fig 5 NMAE % (last second with tokens)")
            nmae_table(ref, hardware, ("analytical",), theirs=False)
        finally:
            figures.load_cluster = load


def split_and_implied(ref: Path, hardware: list[str]) -> None:
    from llmss_lab import api, calibration, figures
    from llmss_lab.config.cluster import load_cluster
    from llmss_lab.latency import roofline
    from llmss_lab.latency.analytical import analytical_profile, find_spec
    from llmss_lab.latency.interconnect import Link

    root = ref.parent
    for sc in (s for s in figures.SCENARIOS[5] if s.hardware in hardware):
        res = figures.run_scenario(sc, ref, latency="profile")
        it = res.iterations
        name, tp = str(res.timeseries.model.values[0]), int(res.timeseries.tp_size.values[0])
        model = roofline.model_config(root, name)
        cluster = load_cluster(ref / sc.config)
        link, bw = Link(*cluster.link(0)), cluster.instances[0].npu_mem.mem_bw
        shapes = shapes_of(it)
        parts = {}
        for kind, prof in (("measured", api.measured_profile(ref / "profiles" / sc.hardware / name, tp, model)),
                           ("analytical", analytical_profile(model, find_spec(sc.hardware), tp))):
            parts[kind] = calibration.step_parts(prof, model, tp, shapes, link, bw)
        meas, ana = (sum(parts[k].values()) for k in ("measured", "analytical"))
        print(f"\n{sc.hardware} {sc.name} ({name} TP{tp}), {len(shapes)} steps of the measured-profile run: "
              f"measured {meas.sum() / 1e9:.2f} s, analytical {ana.sum() / 1e9:.2f} s "
              f"({(ana.sum() / meas.sum() - 1) * 100:+.1f} %)")
        for p in calibration.PARTS:
            m, a = parts["measured"][p].sum(), parts["analytical"][p].sum()
            if m or a:
                print(f"  {p:12s} {m / 1e9:7.2f} s  {a / 1e9:7.2f} s  {(a - m) / meas.sum() * 100:+6.1f} points")

        real = figures.throughput_series(ref / f"figures/{sc.folder}/reference/{sc.name}_throughput.tsv")
        ours = dict(figures.throughput_rows(res))
        end = it.start.values + it.duration.values / 1e3
        decodes = it.decode_seqs.values > 0
        rows = []
        for t in sorted(real):
            sel = (end > t - 1) & (end <= t) & decodes
            if t == 0 or not sel.any() or real[t] <= 0 or ours.get(t, 0) <= 0:
                continue
            m, a = meas[sel].mean() / 1e6, ana[sel].mean() / 1e6
            rows.append((sel.sum(), m * ours[t] / real[t], m, a, it.prefill_tokens.values[sel].sum() == 0))
        r = np.array(rows)
        ar = 2 * model.num_layers if tp > 1 and not model.is_moe else 0
        for label, keep in (("every second", np.ones(len(r), bool)), ("decode-only seconds", r[:, 4] > 0)):
            w = r[keep, 0]
            imp, m, a = (np.average(r[keep, i], weights=w) for i in (1, 2, 3))
            per_ar = f", {(imp - a) / ar * 1e3:.0f} us per all-reduce" if ar else ""
            print(f"  {label} ({keep.sum()}): mean step real-implied {imp:.2f} ms, measured {m:.2f}, analytical "
                  f"{a:.2f}; real - analytical {imp - a:+.2f} ms a step{per_ar}")


LOG_LINE = re.compile(r"generation throughput: ([0-9.]+) tokens/s, Running: (\d+) reqs")


def fig6_logs(ref: Path) -> None:
    """vLLM's per-second log lines (Fig 6 raw data): where the running count holds from one line to the next, the
    step time is running / generated tokens per second."""
    from llmss_lab import figures

    print("\nFig 6 (A6000, Llama-3.1-8B, vLLM 0.11.1 enforce_eager): median decode step, ms, at 2-3 and 9-10 running")
    for sc in figures.SCENARIOS[6]:
        lines = LOG_LINE.findall((ref / f"figures/figure_6/raw_data/vllm_pulse_power_{sc.name}.txt").read_text())
        pairs = [(float(g), int(n)) for g, n in lines]
        steady = [(n, n / g * 1e3) for (g, n), (_, before) in zip(pairs[1:], pairs) if n == before and g > 0]
        cells = []
        for counts in ((2, 3), (9, 10)):
            real = np.median([ms for n, ms in steady if n in counts])
            row = [f"real {real:.1f}"]
            for latency in ("profile", "analytical"):
                it = figures.run_scenario(sc, ref, latency=latency).iterations
                sel = (it.prefill_tokens.values == 0) & np.isin(it.num_seqs.values, counts)
                step = float(np.median(it.duration.values[sel]))
                row.append(f"{latency} {step:.2f} ({(step / real - 1) * 100:+.1f} %)")
            cells.append(f"{counts}: " + ", ".join(row))
        print(f"  {sc.name}: " + "; ".join(cells))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=str(Path(default_reference_dir()) / "ispass26"))
    p.add_argument("--hardware", nargs="+", default=["H100"])
    p.add_argument("--all-reduce-us", nargs="*", type=float, default=[])
    args = p.parse_args()
    ref = Path(args.reference_dir)
    print(banner())
    print("Fig 5 throughput NMAE, % (last second with tokens): measured profile | analytical | LLMServingSim 2.0 | real")
    nmae_table(ref, ["A6000", "H100"])
    split_and_implied(ref, args.hardware)
    fig6_logs(ref)
    with_all_reduce_cost(ref, args.hardware, args.all_reduce_us)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
