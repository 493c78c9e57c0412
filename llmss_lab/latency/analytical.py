"""A latency profile computed instead of measured: every operator the kernel looks up, from its FLOPs
and bytes (:mod:`.ops`) against a hardware spec's roofline with the fitted efficiency curves
(:mod:`.roofline`).

It has the shape of a measured :class:`~.profile.LatencyProfile` (token-parallel operators tabulated
on a token grid, the LM head and sampler on a sequence grid, attention and the MoE block as
callables), so the iteration model, TP/PP/EP collectives, PIM offload and everything downstream
run unchanged. :func:`iteration_errors` compares it step by step with a measured profile.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.model import ModelSpec
from ..config.reader import closest
from ..errors import InputError
from ..files import absent, kind_of
from .ops import Shapes
from .profile import LatencyProfile
from .roofline import CLASSES, EFFICIENCY_FILE, FALLBACK, Curve, CurveRoof, Roof, TilesRoof, load_efficiency, lookup
from .specs import SPECS_DIR, HardwareSpec, read_specs

log = logging.getLogger(__name__)

TOKEN_GRID = np.unique(np.round(np.geomspace(1, 1 << 17, 260)))
SEQ_GRID = np.unique(np.round(np.geomspace(1, 1 << 13, 140)))
WHAT_IF_KEYS = ("memory_bw_gbs", "bf16_tflops")


class AnalyticalAttention:
    """One attention layer of a batch: its prefill chunks (summed into one chunk over the summed
    history, as the kernel hands them over) on the prefill curve, its decodes at their mean KV
    length on the decode curve, or as the varlen kernel's tiles (:class:`.roofline.Tiles`) when they
    share the step with a chunk."""

    prefill_key = "sum"

    def __init__(self, shapes: Shapes, prefill: Roof | CurveRoof, decode: Roof | CurveRoof, mixed: Roof | TilesRoof):
        self.shapes, self.prefill, self.decode, self.mixed = shapes, prefill, decode, mixed

    def __call__(self, pc: float, kp: float, n: float, kv: float) -> float:
        t = 0.0
        if pc > 0:
            t += self.prefill.chunk(self.shapes, pc, kp)
        if n > 0:
            t += (self.mixed if pc > 0 else self.decode).decodes(self.shapes, n, kv, pc)
        return t if t > 1.0 else 1.0


class AnalyticalExperts:
    """The MoE block of each expert-parallel rank: the router plus its experts' GEMMs for the
    token-expert pairs that reach it, as one fused kernel (vLLM) or (``per_expert``, the paper
    artifact's eager loop) three GEMMs per expert that has tokens, the router then an operator of
    its own (``gate``). The balanced gate's expected count below one (one token of a top-2 model
    over 4 ranks: 0.5 pairs a rank, 0.25 an expert) is work done with that chance, as the measured
    profiles read it (:class:`.legacy.LegacyExperts`): that share of one token on one expert."""

    def __init__(self, shapes: Shapes, roof: Roof, per_expert: bool = False):
        self.shapes, self.roof, self.per_expert = shapes, roof, per_expert

    def __call__(self, routing) -> np.ndarray:
        ep = routing.local_tokens.shape[1]
        G = routing.expert_tokens.shape[0]
        if self.per_expert:
            s, n = self.shapes, routing.expert_tokens
            inter = s.m.moe_intermediate_size
            whole = np.maximum(n, 1.0)
            up = s.gemm("w1", whole, s.h, inter)
            down = s.gemm("w2", whole, inter, s.h)
            t = 2 * self.roof(up.flops, up.bytes) + self.roof(down.flops, down.bytes)
            return np.where(n >= 1, t, n * t).reshape(G, ep, -1).sum(axis=2)
        pairs = routing.expert_tokens.reshape(G, ep, -1).sum(axis=2)
        few = routing.local_tokens < 1
        c = self.shapes.moe_experts(np.where(few, 1.0, routing.local_tokens), np.where(few, 1.0, routing.activated),
                                    np.where(few, 1.0, pairs))
        t = self.roof(c.flops, c.bytes)
        return np.where(few, np.minimum(pairs, 1.0) * t, t)


@dataclass(frozen=True)
class WhatIf:
    """Multipliers on a spec: ``WhatIf(memory_bw_gbs=2)`` asks "what if memory bandwidth were 2x"."""

    memory_bw_gbs: float = 1.0
    bf16_tflops: float = 1.0

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "settings") -> "WhatIf":
        data = data or {}
        if not isinstance(data, dict):
            raise InputError("hardware what-if must be a mapping {spec field: multiplier}", source, "what_if")
        for k, v in data.items():
            if k not in WHAT_IF_KEYS:
                near = closest(k, WHAT_IF_KEYS) if isinstance(k, str) else None
                raise InputError(f"unknown what-if field {k!r}" + (f" (did you mean {near!r}?)" if near else "")
                                 + f" (known: {', '.join(WHAT_IF_KEYS)})", source,
                                 f"what_if.{k}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= 100:
                raise InputError(f"must be a multiplier between 0.01 and 100, got {v!r}", source, f"what_if.{k}")
        return cls(**{k: float(v) for k, v in data.items()})

    @property
    def active(self) -> bool:
        return any(getattr(self, k) != 1.0 for k in WHAT_IF_KEYS)

    def apply(self, spec: HardwareSpec) -> HardwareSpec:
        return spec.scaled(**{k: getattr(self, k) for k in WHAT_IF_KEYS}) if self.active else spec

    def label(self) -> str:
        return ", ".join(f"{k} x{getattr(self, k):g}" for k in WHAT_IF_KEYS if getattr(self, k) != 1.0)


@functools.lru_cache(maxsize=4)
def _specs(folder: str, stamp: tuple) -> tuple[dict[str, HardwareSpec], list[InputError]]:
    return read_specs(folder)


def _stamp(folder: Path) -> tuple:
    """What changes when a spec file is edited, added or removed (so an edit counts without a restart)."""
    try:
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.yaml")))
    except OSError:   # a file removed while listed: read the folder again next time
        return (object(),)


class UnknownHardware(InputError):
    """No spec has this name: the fault of whatever named it (a config key, a scenario field), unlike a spec file
    that does not read, whose error names that file."""


def find_spec(hardware: str, folder: str | Path = SPECS_DIR) -> HardwareSpec:
    """The spec of a hardware name as cluster configs write it (``H100``, ``TPU-v6e-1``)."""
    folder = Path(folder)
    specs, errors = _specs(str(folder), _stamp(folder))
    if hardware in specs:
        return specs[hardware]
    own = folder / f"{hardware}.yaml"
    for e in errors:
        if e.source == str(own):    # the spec being looked for does not read: its file and key say why
            raise e
    named = [s.name for s in specs.values() if s.path == str(own)]
    if named:
        raise InputError(f"describes {named[0]!r}, not {hardware!r}: a spec is found by its name", own, "name")
    bad = "".join(f"; cannot read {e}" for e in errors)   # perhaps the spec being looked for
    near = closest(hardware, specs)
    raise UnknownHardware(f"no profile and no hardware spec for {hardware!r}"
                     + (f" (did you mean {near!r}?)" if near else "")
                     + f"; add profiles/hardware/{hardware}.yaml (specs: {', '.join(sorted(specs))}){bad}",
                     folder, "name")


@functools.lru_cache(maxsize=8)
def _efficiency(path: str, stamp: float) -> dict[str, Curve]:
    return load_efficiency(Path(path))


def efficiency(path: str | Path = EFFICIENCY_FILE) -> dict[str, Curve]:
    """The fitted curves (cached while the file is unchanged)."""
    p = Path(path)
    why = absent(p)
    if why or not p.is_file():
        raise InputError("no efficiency fit (run `llmss profile-fit`)" if p == EFFICIENCY_FILE else
                         why or f"is {kind_of(p)}, expected a file", p)
    return _efficiency(str(p.resolve()), p.stat().st_mtime)


@functools.cache
def _warn_unscaled(name: str, path: str) -> None:
    """Once per spec: a GPU spec without its SM count or cache runs vLLM's attention counts as fitted (on the GPU
    of the stored fit), which a new spec file's author would otherwise not learn."""
    log.warning("%s: no 'sms' or 'cache_mb' key: the analytical model's attention tile counts are not scaled to "
                "this GPU (add them from its datasheet)", path or name)


def analytical_profile(model: ModelSpec, spec: HardwareSpec, tp: int, eff: dict[str, Curve] | None = None,
                       stack: str = "vllm", note: str = "") -> LatencyProfile:
    """A profile of ``model`` at TP ``tp`` on ``spec``, computed from the roofline with the
    efficiency curves of a software stack (:data:`.roofline.STACKS`; vLLM's by default)."""
    eff = eff if eff is not None else efficiency()
    sh = Shapes(model, tp)
    roof = {c: lookup(eff, stack, c).on(spec) for c in (*CLASSES, *FALLBACK)}
    norm = "layer_norm" if model.layer_norm else "rms_norm"   # Phi-MoE's LayerNorm: one kernel, unlike HF's eager RMSNorm
    T = TOKEN_GRID

    def tab(cls: str, cost, axis=T):
        c = cost(axis)
        return axis, np.asarray(roof[cls](c.flops, c.bytes), float)

    # the paper artifact's stack is HF transformers run eagerly: a GEMM per projection, the MoE router an operator
    # of its own (vLLM fuses Q/K/V and gate/up, and runs the router inside its fused MoE block)
    eager = stack == "artifact"
    qkv = ("q_proj", "k_proj", "v_proj") if eager else ("qkv_proj",)
    dense = {"embedding": tab("embedding", sh.embedding), "layernorm": tab(norm, getattr(sh, norm)),
             **{k: tab("gemm", getattr(sh, k)) for k in qkv}, "rotary_emb": tab("rotary_emb", sh.rotary_emb),
             "o_proj": tab("gemm", sh.o_proj), "final_layernorm": tab(norm, getattr(sh, norm))}
    if model.qk_norm:   # an RMSNorm; its own timings are not among the curve's samples (README, "Qwen3's query")
        dense["qk_norm"] = tab("rms_norm", sh.qk_norm)
    if not model.is_moe:
        dense.update({k: tab("gemm", getattr(sh, k)) for k in (("gate_proj", "up_proj") if eager else ("gate_up_proj",))})
        dense.update(act_fn=tab("act_fn", sh.act_fn), down_proj=tab("gemm", sh.down_proj))
    elif eager:
        dense["gate"] = tab("router", sh.router)
    per_seq = {"lm_head": tab("gemm", sh.lm_head, SEQ_GRID), "sampler": tab("sampler", sh.sampler, SEQ_GRID)}
    moe = AnalyticalExperts(Shapes(model, 1), roof["gemm"], eager) if model.is_moe else None
    if spec.sms is None or spec.cache_mb is None:
        unscaled = "its spec gives no sms/cache_mb: attention tile counts as fitted, not scaled to it"
        note = f"{note}; {unscaled}" if note else unscaled
        if spec.vendor != "Google":   # a TPU has neither; a GPU spec without them lacks two datasheet numbers
            _warn_unscaled(spec.name, spec.path)
    src = f"{spec.name} spec ({Path(spec.path).name or 'in memory'}){'; ' + note if note else ''}"
    return LatencyProfile(tp=tp, dense=dense, per_sequence=per_seq, attention=AnalyticalAttention(sh, roof["attention_prefill"], roof["attention_decode"],
                                                        roof["attention_mixed"]),
                          skew=eff.get("attention_skew") if stack == "vllm" else None, moe=moe, source=src,
                          kind="analytical")
