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
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .api import simulate
from .config.engine import EngineConfig
from .errors import InputError
from .results.dataset import Results


@dataclass(frozen=True)
class Scenario:
    figure: int
    name: str                     # MD, SD, SD+PC, PDD, SM
    hardware: str | None          # sub-folder of the figure (figure 5), else None
    dataset: str
    prefix_caching: bool = False
    outputs: tuple[str, ...] = ("throughput",)

    @property
    def folder(self) -> str:
        return f"figure_{self.figure}" + (f"/{self.hardware}" if self.hardware else "")

    @property
    def config(self) -> str:
        return f"figures/{self.folder}/config/{self.name}_config.json"

    @property
    def label(self) -> str:
        return f"figure {self.figure} {self.hardware + ' ' if self.hardware else ''}{self.name}"


def _dataset(model: str) -> str:
    return f"dataset/sharegpt_req300_rate10_{model}.jsonl"


SCENARIOS: dict[int, list[Scenario]] = {
    5: [Scenario(5, name, hw, _dataset({"A6000": "phi", "H100": "mixtral"}[hw] if name == "SM" else "llama"),
                 prefix_caching=name == "SD+PC")
        for hw in ("A6000", "H100") for name in ("MD", "SD+PC", "PDD", "SM")],
    8: [Scenario(8, name, None, _dataset("mixtral" if name == "SM" else "llama"), outputs=("latency", "sim_time"))
        for name in ("SD", "MD", "PDD", "SM")],
    9: [Scenario(9, "SD", None, _dataset("llama"), outputs=("throughput", "latency"))],
}

ENGINE = EngineConfig(max_num_seqs=256, max_num_batched_tokens=2048, block_size=16, gpu_memory_utilization=0.9,
                      enable_chunked_prefill=True)


def run_scenario(sc: Scenario, reference_dir: Path) -> Results:
    ref = Path(reference_dir)
    cfg = ref / sc.config
    if not cfg.is_file():
        raise InputError(f"not the paper artifact folder: {sc.config} is missing "
                         "(pass --reference-dir .../llmservingsim/ispass26)", ref)
    engine = ENGINE.with_overrides({"enable_prefix_caching": sc.prefix_caching})
    return simulate(cfg, ref / sc.dataset, engine, reference_dir=ref, router="round_robin")


def throughput_rows(res: Results) -> list[tuple[int, float]]:
    """Generated tokens per second over all instances: row ``t`` holds the tokens of (t-1, t] s;
    row 0 is 0, as in the artifact's files."""
    ts = res.timeseries
    gen = ts.generation_throughput.sum("instance").values
    times = ts.time.values
    return [(0, 0.0)] + [(int(round(t)), float(g)) for t, g in zip(times, gen)]


def latency_row(res: Results) -> dict[str, float]:
    s = res.summary()
    return {"throughput_tok_s": s["output_throughput"], "mean_ttft_ms": s["mean_ttft_ms"],
            "mean_tpot_ms": s["mean_tpot_ms"], "mean_itl_ms": s["mean_itl_ms"]}


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)


def write_figure_data(figure: int, reference_dir: str | Path, out: str | Path,
                      on_scenario: Callable[[Scenario, float], None] | None = None) -> list[Path]:
    """Run every scenario of a figure and write its TSVs under ``out/figure_N/...``; returns the files."""
    if figure not in SCENARIOS:
        raise InputError(f"figure data exists for figures {sorted(SCENARIOS)}", "figure-data", str(figure))
    written = []
    for sc in SCENARIOS[figure]:
        t0 = time.perf_counter()
        res = run_scenario(sc, Path(reference_dir))
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
        if on_scenario is not None:
            on_scenario(sc, wall)
    return written


# ---- scoring -------------------------------------------------------------------------------------

def read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError("file does not exist", path)
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def throughput_error(sim: Path, real: Path) -> float:
    """Normalised mean absolute error of per-second throughput: sum |sim - real| / sum real, over
    every second either file covers (a second one file lacks counts as 0)."""
    def load(p: Path) -> dict[int, float]:
        return {int(float(r["time_s"])): float(r["throughput"]) for r in read_tsv(p)}
    a, b = load(sim), load(real)
    secs = sorted(set(a) | set(b))
    num = sum(abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in secs)
    den = sum(b.get(t, 0.0) for t in secs)
    return num / den * 100.0


def latency_errors(sim: Path, real: Path) -> dict[str, float]:
    """Signed % error of each latency-table metric against the vLLM row of ``real``."""
    rows = read_tsv(real)
    vllm = next((r for r in rows if r.get("framework", "vLLM") == "vLLM"), rows[0])
    s = read_tsv(sim)[0]
    out = {}
    for key in ("throughput_tok_s", "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms"):
        if key in s and key in vllm and vllm[key] not in ("X", ""):
            out[key] = (float(s[key]) - float(vllm[key])) / float(vllm[key]) * 100.0
    return out


@dataclass
class Score:
    scenario: Scenario
    ours: dict[str, float] = field(default_factory=dict)
    theirs: dict[str, float] = field(default_factory=dict)   # LLMServingSim 2.0's parsed/ files


def compare(figure: int, reference_dir: str | Path, out: str | Path) -> list[Score]:
    """Score written figure data (and the artifact's own simulator output) against real vLLM."""
    ref = Path(reference_dir)
    scores = []
    for sc in SCENARIOS[figure]:
        real_dir = ref / "figures" / sc.folder / "reference"
        score = Score(sc)
        for who, base in (("ours", Path(out) / sc.folder / "parsed"), ("theirs", ref / "figures" / sc.folder / "parsed")):
            d = getattr(score, who)
            if "throughput" in sc.outputs:
                d["throughput_nmae_pct"] = throughput_error(base / f"{sc.name}_throughput.tsv",
                                                            real_dir / f"{sc.name}_throughput.tsv")
            if "latency" in sc.outputs:
                d.update({f"{k}_err_pct": v for k, v in latency_errors(base / f"{sc.name}_latency.tsv",
                                                                        real_dir / f"{sc.name}_latency.tsv").items()})
        scores.append(score)
    return scores


def format_scores(scores: list[Score]) -> str:
    lines = [f"{'scenario':<22} {'metric':<26} {'llmss_lab':>10} {'LLMServingSim 2.0':>18}"]
    for s in scores:
        for k, v in s.ours.items():
            theirs = s.theirs.get(k, math.nan)
            lines.append(f"{s.scenario.label:<22} {k:<26} {v:>+10.2f} {theirs:>+18.2f}")
    return "\n".join(lines)
