"""How well the analytical latency model stands in for a measured profile, step by step.

The batch compositions are those of the bench workloads: every step the simulator runs when it
replays the shipped measurement cases (``measurements/<HW>/<model>/``) on their profiles. Each
profiled (hardware, model, TP) evaluates those steps twice, once with its measured profile and
once with the analytical model, and the step latencies are compared. Collectives are left out on
both sides (they do not depend on the profile). With ``leave_one_out`` the efficiency curves are
fitted without any profile of that (hardware, model).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import api
from .config.model import ModelSpec
from .errors import InputError
from .kernel.moe import BalancedGate
from .latency import roofline
from .latency.analytical import analytical_profile
from .latency.interconnect import Link
from .latency.iteration import EDGE_FIRST, EDGE_LAST, PER_BLOCK_REPEATS, BatchShape, IterationModel, pow2_bucket
from .latency.legacy import is_legacy_dir
from .latency.profile import LatencyProfile, interp1
from .latency.specs import HardwareSpec, load_specs

log = logging.getLogger(__name__)

BENCH_CASES = ("RTXPRO6000/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B")


def bench_shapes(root: Path, cases: Iterable[str] = BENCH_CASES) -> list[BatchShape]:
    """Every step's batch composition when the bench measurement cases are simulated."""
    from .validate import validate

    t0 = time.perf_counter()
    shapes: list[BatchShape] = []
    for case in cases:
        _, res = validate(root / "measurements" / case, root)
        it = res.iterations
        cols = [it[k].values for k in ("num_tokens", "num_seqs", "prefill_tokens", "prefill_history", "decode_seqs",
                                      "decode_kv_mean", "decode_kv_min", "decode_kv_max", "prefill_rms")]
        for t, s, pc, kp, n, kv, lo, hi, rms in zip(*cols):
            shapes.append(BatchShape(int(t), int(s), int(pc), int(kp), int(n), float(kv), float(lo), float(hi),
                                     float(rms)))
    log.info("%d bench steps from simulating %s in %.2f s", len(shapes), ", ".join(cases), time.perf_counter() - t0)
    return shapes


def measured_profile(folder: Path, tp: int, model: ModelSpec) -> LatencyProfile | None:
    """The profile of one ``tpN`` folder, or None when it cannot drive a step (the artifact's
    folders without attention predictions)."""
    if is_legacy_dir(folder.parent) and not (folder / "predictions").is_dir():
        return None
    return api.measured_profile(folder.parent, tp, model)


def step_times(profile: LatencyProfile, model: ModelSpec, tp: int, shapes: list[BatchShape],
               pad_shapes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Compute time (ns) of each step without collectives, and its attention part; MoE models
    route with the balanced gate."""
    m = IterationModel(profile, model, tp, link=None, pad_shapes=pad_shapes, skew_correction=profile.skew is not None)
    gate = BalancedGate(model.num_experts, model.experts_per_token, tp, model.num_layers) if model.is_moe else None
    total, attention = np.empty(len(shapes)), np.empty(len(shapes))
    for i, b in enumerate(shapes):
        st = m.step(b, routing=gate.route(b.num_tokens) if gate else None)
        total[i], attention[i] = st.total_ns, st.attention_ns
    return total, attention


# The class of every operator a profile can name: vLLM's fused ones and the paper artifact's eager HF ones.
OPERATOR_CLASS = {
    **dict.fromkeys(("qkv_proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "gate_proj", "up_proj",
                     "down_proj", "lm_head"), "gemm"),
    **dict.fromkeys(("layernorm", "input_layernorm", "post_layernorm", "final_layernorm", "qk_norm"), "norms"),
    "rotary_emb": "rotary", "rope": "rotary", "act_fn": "activation", "gate": "router", "embedding": "embedding",
    "sampler": "sampler"}
PARTS = ("gemm", "attention", "moe", "router", "norms", "rotary", "activation", "embedding", "sampler", "collectives")


def step_parts(profile: LatencyProfile, model: ModelSpec, tp: int, shapes: list[BatchShape], link: Link | None = None,
               mem_bw_gbps: float = 0.0, pad_shapes: bool = False) -> dict[str, np.ndarray]:
    """Each step's time (ns) split by operator class (:data:`PARTS`), so two profiles can be compared part by part
    on the same batches; the parts add up to the step's time. Collectives are charged over ``link`` as a run
    charges them (none without it); MoE models route with the balanced gate; one pipeline stage."""
    m = IterationModel(profile, model, tp, link, mem_bw_gbps, pad_shapes=pad_shapes,
                       skew_correction=profile.skew is not None)
    gate = BalancedGate(model.num_experts, model.experts_per_token, tp, model.num_layers) if model.is_moe else None
    tokens = np.array([b.num_tokens for b in shapes])
    seqs = np.array([b.num_seqs for b in shapes])
    if pad_shapes:   # as the step runs them (IterationModel.step)
        tokens = np.array([pow2_bucket(t, 16) for t in tokens])
        seqs = np.array([pow2_bucket(s, 8) for s in seqs])
    parts = {p: np.zeros(len(shapes)) for p in PARTS}
    for name, (x, v) in profile.dense.items():
        times = 1 if name in EDGE_FIRST + EDGE_LAST else model.num_layers * PER_BLOCK_REPEATS.get(name, 1)
        parts[OPERATOR_CLASS[name]] += times * interp1(x, v, tokens)
    for name, (x, v) in profile.per_sequence.items():
        parts[OPERATOR_CLASS[name]] += interp1(x, v, seqs)
    for i, b in enumerate(shapes):
        st = m.step(b, routing=gate.route(b.num_tokens) if gate else None)
        parts["attention"][i], parts["moe"][i], parts["collectives"][i] = st.attention_ns, st.moe_ns, st.comm_ns
    return parts


@dataclass(frozen=True)
class PairError:
    hardware: str
    model: str
    tp: int
    steps: int
    median_abs_pct: float
    p90_abs_pct: float
    median_signed_pct: float
    stack: str
    profiled_ms: float     # mean measured-profile step time
    analytical_ms: float
    no_attention_median_abs_pct: float   # the same steps without their attention time
    attention_share: float               # of the measured step time
    attention_below_roofline_pct: float  # steps whose profiled attention beats the roofline (no model can match)


def iteration_check(root: Path, leave_one_out: bool = True, only: Callable[[str, str], bool] | None = None,
                    shapes: list[BatchShape] | None = None, specs: dict[str, HardwareSpec] | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> list[PairError]:
    """Per-step error of the analytical model against every profiled (hardware, model, TP). ``progress`` is
    told each bundle as it starts: its name, how many are done and how many there are."""
    specs = specs if specs is not None else load_specs()
    shapes = shapes if shapes is not None else bench_shapes(root)
    if not shapes:
        raise InputError("the bench workloads produced no steps", root / "measurements")
    samples = roofline.all_samples(root, specs) if leave_one_out else []
    stored = None if leave_one_out else roofline.load_efficiency()
    if stored is not None:
        log.info("efficiency curves: the stored fit, %s", roofline.EFFICIENCY_FILE)
    fits: dict[tuple[str, str], dict] = {}
    out = []
    bundles = [b for b in roofline.profiled_bundles(root) if b[1] in specs and (only is None or only(b[1], b[2]))]
    for done, (folder, hw, model_name, tp) in enumerate(bundles):
        if progress:
            progress(f"{hw} {model_name} tp{tp}", done, len(bundles))
        t0 = time.perf_counter()
        model = roofline.model_config(root, model_name)
        prof = measured_profile(folder, tp, model)
        if prof is None:
            log.info("%s %s tp%d: %s has no attention predictions to drive a step; left out", hw, model_name, tp,
                     folder)
            continue
        if leave_one_out and (hw, model_name) not in fits:
            fits[(hw, model_name)] = roofline.fit(roofline.leave_out(samples, hw, model_name), specs)
        eff = fits[(hw, model_name)] if leave_one_out else stored
        pad = api.pads_shapes(hw)
        meas, meas_att = step_times(prof, model, tp, shapes, pad)
        stack = roofline.stack_of(folder, hw)
        pred, pred_att = step_times(analytical_profile(model, specs[hw], tp, eff, stack), model, tp, shapes, pad)
        _, floor_att = step_times(analytical_profile(model, specs[hw], tp, roofline.IDEAL, stack), model, tp, shapes,
                                  pad)
        err = (pred - meas) / meas * 100.0
        a = np.abs(err)
        rest = np.abs((pred - pred_att) / (meas - meas_att) - 1.0) * 100.0
        out.append(PairError(hw, model_name, tp, len(shapes), float(np.median(a)), float(np.percentile(a, 90)),
                             float(np.median(err)), stack, float(meas.mean() / 1e6), float(pred.mean() / 1e6),
                             float(np.median(rest)), float(meas_att.sum() / meas.sum()),
                             float(np.mean(meas_att < floor_att) * 100.0)))
        log.info("%s %s tp%d: the profile in %s against the analytical model (%s stack) in %.2f s", hw, model_name,
                 tp, folder, stack, time.perf_counter() - t0)
    return out
