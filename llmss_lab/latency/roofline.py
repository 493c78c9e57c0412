"""The analytical latency of an operator on hardware without a profile: its FLOPs and bytes
(:mod:`.ops`) against the accelerator's roofline (:mod:`.specs`), scaled by efficiency curves fitted
once on the profiled bundles of the reference data.

For an operator class (the GEMMs, attention, and each element-wise operator on its own) with
parameters ``e_max, f_half, u, t0``::

    t = t0 + max((F + f_half) / (P * e_max),  B / (W * u))

``P`` is the peak dense BF16 FLOP/s and ``W`` the memory bandwidth of the spec. The compute term is
the roofline's ``F / P`` at an achieved fraction ``e_max * F / (F + f_half)`` of peak that grows with
the size of the work; ``u`` is the achieved fraction of bandwidth and ``t0`` a launch overhead. The
few parameters per class are shared by every accelerator: what differs between accelerators is
their spec. :func:`fit` finds them by least squares on log time over every profiled operator
sample; the numbers live in ``profiles/efficiency.yaml`` with the fit's provenance.

The decodes of a mixed prefill+decode batch are not a roofline: FlashAttention's varlen kernel runs
them as tiles that each stream one query head's K and V alone (:class:`.ops.DecodeTiles`), so their
time is set by how many tiles run at once and how much their reads share the cache (:class:`Tiles`).

vLLM's attention forms (:class:`ChunkWaves`, :class:`Knee`, :class:`Tiles`) are fitted on the one GPU
whose profiles ran vLLM's kernels. Their counts are per hardware, so each records the spec it was fitted
on (``on_*``) and :meth:`on` scales it to another: tiles resident at once with the SMs, the cache that
keeps a KV group's reads with the chip's cache, the bandwidth knee (a duration at peak bandwidth) with the
bandwidth. A spec without SMs or cache (a TPU) keeps the fitted GPU's counts.
"""
from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import yaml

from ..config.model import ModelSpec
from ..config.reader import Section, closest, read_yaml
from ..errors import InputError
from ..files import write_text
from ..provenance import git_hash
from .ops import QUERY_BLOCK, ChunkTiles, DecodeTiles, OpCost, Shapes
from .profile import load_bundle, read_csv
from .specs import SPECS_DIR, HardwareSpec, load_specs

log = logging.getLogger(__name__)
EFFICIENCY_FILE = SPECS_DIR.parent / "efficiency.yaml"
CLASSES = ("gemm", "attention_prefill", "attention_decode", "attention_mixed", "rms_norm", "rotary_emb", "act_fn",
           "embedding", "sampler")
# and the classes of operators only some stacks or models run: the MoE router on its own (vLLM's moe.csv times it
# inside its fused MoE block), LayerNorm (Phi-MoE; the others normalise with RMSNorm), and the skew of vLLM's decodes
FIT_ORDER = CLASSES + ("router", "layer_norm", "attention_skew")
FALLBACK = {"router": "gemm", "layer_norm": "rms_norm"}   # a stack without timings of these: the nearest class
OP_CLASS = {"qkv_proj": "gemm", "o_proj": "gemm", "gate_up_proj": "gemm", "down_proj": "gemm", "lm_head": "gemm",
            "q_proj": "gemm", "k_proj": "gemm", "v_proj": "gemm", "gate_proj": "gemm", "up_proj": "gemm",
            "attention_prefill": "attention_prefill", "attention_decode": "attention_decode",
            "attention_mixed": "attention_mixed", "act_fn": "act_fn", "rms_norm": "rms_norm", "rotary_emb": "rotary_emb",
            "embedding": "embedding", "sampler": "sampler", "moe_experts": "gemm",
            "expert.w1": "gemm", "expert.w2": "gemm", "expert.w3": "gemm", "gate": "router", "router": "router",
            "layer_norm": "layer_norm",
            "skew_decode": "attention_skew", "skew_mixed": "attention_skew"}
ALIASES = {"layernorm": "rms_norm", "input_layernorm": "rms_norm", "post_layernorm": "rms_norm",
           "final_layernorm": "rms_norm", "rope": "rotary_emb"}   # profile names of the same operator
PER_BUNDLE_OP = 120        # samples kept per (bundle, operator): spread over the profiled grid
# The software that ran an operator shapes its efficiency as much as the chip: vLLM V1 fuses
# norms, rotary and activation and runs FlashAttention and a fused MoE kernel ("vllm", the current
# profile format); the paper artifact's profiler timed eager per-operator kernels, one expert at a
# time, with attention from a learned predictor ("artifact"); its TPU profile ran XLA-compiled
# ("xla"). GEMMs are the same vendor library calls everywhere and share one curve.
STACKS = ("vllm", "artifact", "xla")
SHARED = ("gemm",)


def ratio(have, fitted: float):
    """How many times the fitted GPU's amount of a resource a spec has (1 where the spec does not say)."""
    return 1.0 if have is None else have / fitted


@dataclass(frozen=True)
class Efficiency:
    e_max: float      # highest fraction of peak FLOP/s reached
    f_half: float     # FLOPs at which half of e_max is reached
    u: float          # fraction of peak memory bandwidth reached
    t0_us: float      # launch overhead

    def on(self, spec: HardwareSpec) -> "Roof":
        return Roof(self, spec)

    def time_ns(self, flops, nbytes, spec: HardwareSpec):
        return self.on(spec)(flops, nbytes)


@dataclass(frozen=True)
class Tiles:
    """The decodes of a mixed batch (:class:`.ops.DecodeTiles`). ``slots`` tiles run at once, each
    streaming its K and V serially (``tile_us`` plus ``token_ns`` per cached token), so the time is
    waves of tiles, and every empty tile of the chunk's further query blocks takes ``empty_ns`` of a
    slot. The query heads of one KV group read its K and V once when they run at the same time (up to
    ``slots`` / sequences of them) or when the group's K and V of every sequence fit in ``cache_mb``;
    the rest is memory traffic at a fraction ``u`` of peak bandwidth. The slower of the two bounds the
    time. ``slots`` and ``cache_mb`` are on a GPU of ``on_sms`` SMs and ``on_cache_mb`` MB of cache: another
    has slots in proportion to its SMs (tiles per SM are the kernel's) and keeps reads in proportion to its
    cache; a tile's times are an SM's own."""
    slots: float      # tiles resident at once
    tile_us: float    # a tile's fixed time
    token_ns: float   # a tile's time per cached token it streams
    u: float          # fraction of peak memory bandwidth reached
    empty_ns: float   # an empty tile's time in its slot
    cache_mb: float   # cache that keeps a KV group's reads for its next query head
    on_sms: float     # SMs of the GPU fitted on
    on_cache_mb: float   # and its on-chip cache

    def at(self, sms, cache_mb) -> "Tiles":
        """On a GPU of ``sms`` SMs and ``cache_mb`` MB of cache (arrays too: the fit's samples)."""
        return replace(self, slots=self.slots * ratio(sms, self.on_sms),
                       cache_mb=self.cache_mb * ratio(cache_mb, self.on_cache_mb),
                       on_sms=self.on_sms if sms is None else sms,
                       on_cache_mb=self.on_cache_mb if cache_mb is None else cache_mb)

    def on(self, spec: HardwareSpec) -> "TilesRoof":
        return TilesRoof(self.at(spec.sms, spec.cache_mb), spec)


def tiles_ns(p: Tiles, d: DecodeTiles, bw_bytes_s):
    """:class:`Tiles`' time for decode tiles (fields may be arrays: the fit evaluates every sample at once)."""
    tiles = d.tiles
    busy = (np.maximum(tiles / p.slots, 1.0) * (p.tile_us * 1e3 + d.kv * p.token_ns)
            + tiles * (d.blocks - 1) * p.empty_ns / p.slots)
    # a KV group's next query head finds its K and V in cache when the group's reads of every sequence fit in it,
    # or when it runs at the same time
    hit = 1.0 / (1.0 + d.seqs * d.kv * d.token_bytes / (p.cache_mb * 1e6))
    miss = np.minimum(1.0 / d.group + (1.0 - 1.0 / d.group) * (1.0 - hit),
                      1.0 / np.minimum(np.maximum(p.slots / d.seqs, 1.0), d.group))
    # plus each tile's query row in and output row out, and each sequence's new K and V written
    traffic = tiles * d.token_bytes * (d.kv * miss + 1.0 + 1.0 / d.group) / (bw_bytes_s * p.u) * 1e9
    return np.maximum(busy, traffic)


class TilesRoof:
    """:class:`Tiles` on one accelerator, with :class:`Roof`'s ``decodes`` and ``sample``."""

    def __init__(self, tiles: Tiles, spec: HardwareSpec):
        self.tiles, self.bw = tiles, spec.memory_bw_gbs * 1e9

    def decodes(self, shapes: Shapes, n: float, kv: float, chunk: float) -> float:
        return float(tiles_ns(self.tiles, shapes.decode_tiles(n, kv, chunk), self.bw))

    def sample(self, x: "Sample") -> float:
        return float(tiles_ns(self.tiles, x.tiles, self.bw))


@dataclass(frozen=True)
class ChunkWaves:
    """A prefill chunk (:class:`.ops.ChunkTiles`): its tiles run ``slots`` at a time, longest first (the last
    query blocks see the most keys), so a wave lasts as long as its first tile: ``tile_us`` plus the time of
    its keys, where a full wave of tiles computes at a fraction ``e`` of peak FLOP/s. Never faster than
    reading its bytes at full bandwidth. ``slots`` is on a GPU of ``on_sms`` SMs: another runs whole tiles in
    proportion to its SMs (so each tile's share of the peak FLOP/s is an SM's share times the tiles per SM)."""
    t0_us: float      # launch
    slots: float      # tiles resident at once
    e: float          # fraction of peak FLOP/s a full wave reaches
    tile_us: float    # a tile's fixed time
    on_sms: float     # SMs of the GPU fitted on

    def at(self, sms) -> "ChunkWaves":
        """On a GPU of ``sms`` SMs (arrays too)."""
        return replace(self, slots=np.maximum(1.0, np.round(self.slots * ratio(sms, self.on_sms))),
                       on_sms=self.on_sms if sms is None else sms)

    def on(self, spec: HardwareSpec) -> "CurveRoof":
        return CurveRoof(self.at(spec.sms), spec)


def chunk_ns(p: ChunkWaves, c: ChunkTiles, peak_flops, bw_bytes_s):
    """:class:`ChunkWaves`' time for a chunk (fields may be arrays)."""
    blocks = c.blocks
    waves = np.ceil(blocks * c.heads / p.slots)
    key_ns = 4.0 * QUERY_BLOCK * c.head_dim * p.slots / (p.e * peak_flops) * 1e9   # a block's row against one key
    busy = 0.0
    for j in range(int(np.max(waves))):
        longest = c.keys(np.floor(j * p.slots / c.heads))     # the wave's first tile: a head of this block
        busy = busy + np.where(j < waves, p.tile_us * 1e3 + key_ns * longest, 0.0)
    return p.t0_us * 1e3 + np.maximum(busy, c.nbytes / bw_bytes_s * 1e9)


@dataclass(frozen=True)
class Knee:
    """Decode-only attention. vLLM packs a KV group's query heads into one tile per (sequence, KV head) and
    splits long caches, so the time follows the batch's K and V bytes, not its heads (README, "Decode-only
    attention"); ``tile_ns`` per tile is what more sequences over the same bytes add. The bytes stream at a
    fraction ``u_lo`` of peak bandwidth in small batches and ``u_hi`` in large ones, with a smooth step
    between the two around ``knee_mb`` (the RTX PRO 6000 profiles: 81-89 % below 300 MB, 95-96 % past 1 GB).
    The knee is taken as a duration (its cause is not known; see README): on a GPU of another bandwidth than
    the ``on_bw_gbs`` fitted on, the batch that streams as long moves as many more bytes."""
    t0_us: float      # launch
    u_lo: float       # fraction of peak bandwidth in small batches
    u_hi: float       # ... in large ones
    knee_mb: float    # batch bytes halfway between the two
    tile_ns: float    # per (sequence, KV head)
    on_bw_gbs: float  # memory bandwidth of the GPU fitted on

    def at(self, bw_gbs) -> "Knee":
        """On a GPU of ``bw_gbs`` GB/s of memory bandwidth (arrays too)."""
        return replace(self, knee_mb=self.knee_mb * ratio(bw_gbs, self.on_bw_gbs), on_bw_gbs=bw_gbs)

    def on(self, spec: HardwareSpec) -> "CurveRoof":
        return CurveRoof(self.at(spec.memory_bw_gbs), spec)


def knee_ns(p: Knee, d: DecodeTiles, bw_bytes_s):
    """:class:`Knee`'s time for a decode-only batch (fields may be arrays)."""
    nbytes = d.nbytes
    x = (nbytes / (p.knee_mb * 1e6)) ** 2
    per_byte = (1.0 / p.u_lo + x / p.u_hi) / (1.0 + x) / bw_bytes_s * 1e9
    return p.t0_us * 1e3 + d.seqs * d.heads / d.group * p.tile_ns + nbytes * per_byte


class CurveRoof:
    """:class:`ChunkWaves` or :class:`Knee` on one accelerator, with :class:`Roof`'s ``chunk``, ``decodes`` and
    ``sample``."""

    def __init__(self, curve: "ChunkWaves | Knee", spec: HardwareSpec):
        self.curve, self.peak, self.bw = curve, spec.bf16_tflops * 1e12, spec.memory_bw_gbs * 1e9

    def chunk(self, shapes: Shapes, pc: float, kp: float) -> float:
        return float(chunk_ns(self.curve, shapes.chunk_tiles(pc, kp), self.peak, self.bw))

    def decodes(self, shapes: Shapes, n: float, kv: float, chunk: float) -> float:
        return float(knee_ns(self.curve, shapes.decode_tiles(n, kv, 0), self.bw))

    def chunk_of(self, x: "Sample") -> float:
        return float(chunk_ns(self.curve, x.chunk, self.peak, self.bw))

    def sample(self, x: "Sample") -> float:
        return self.chunk_of(x) if isinstance(self.curve, ChunkWaves) else float(knee_ns(self.curve, x.tiles, self.bw))


@dataclass(frozen=True)
class Skew:
    """Decodes of unequal lengths: a batch takes ``t(mean) + alpha * (t(longest) - t(mean))``, the form of a
    profile's skew fit (:class:`.profile.SkewFit`), with one ``alpha`` for decode-only batches and one beside a
    prefill chunk, fitted by least squares on time over the skewed batches the vLLM profiles timed (``skew.csv``)."""
    decode: float
    mixed: float

    def on(self, spec: HardwareSpec) -> "Skew":
        return self

    def alpha(self, pc: float, n: float, kv_mean: float, kv_min: float, kv_max: float, kp: float) -> float:
        """What :class:`.iteration.IterationModel` asks a profile's skew fit."""
        return self.mixed if pc > 0 else self.decode

    def sample(self, x: "Sample") -> float:
        mean, longest = x.skew_ns
        return mean + (self.mixed if x.op == "skew_mixed" else self.decode) * (longest - mean)


class Roof:
    """One operator class on one accelerator: the curve with the spec's peaks folded in, so the
    kernel's per-step lookups are plain arithmetic."""

    def __init__(self, eff: Efficiency, spec: HardwareSpec):
        self.t0 = eff.t0_us * 1e3
        self.f_half = eff.f_half
        self.per_flop = 1e9 / (spec.bf16_tflops * 1e12 * eff.e_max)
        self.per_byte = 1e9 / (spec.memory_bw_gbs * 1e9 * eff.u)

    def __call__(self, flops, nbytes):
        return self.t0 + np.maximum((flops + self.f_half) * self.per_flop, nbytes * self.per_byte)

    def at(self, flops: float, nbytes: float) -> float:
        """``__call__`` for one shape, in Python floats (the same operations and value): numpy's maximum of two
        scalars costs a microsecond, and attention is timed this way every step."""
        compute, memory = (flops + self.f_half) * self.per_flop, nbytes * self.per_byte
        return self.t0 + (compute if compute >= memory else memory)

    def chunk(self, shapes: Shapes, pc: float, kp: float) -> float:
        """A prefill chunk of ``pc`` tokens over ``kp`` cached ones."""
        c = shapes.attention_prefill(pc, kp)
        return self.at(c.flops, c.bytes)

    def chunk_of(self, x: "Sample") -> float:
        """The time of a sample's prefill chunk."""
        return self.at(x.chunk.flops, x.chunk.nbytes)

    def decodes(self, shapes: Shapes, n: float, kv: float, chunk: float) -> float:
        """``n`` decodes over ``kv`` cached tokens each, as one batch (``chunk``: a prefill chunk beside them)."""
        d = shapes.attention_decode(kv)
        return self.at(n * d.flops, n * d.bytes)

    def sample(self, x: "Sample") -> float:
        return float(self(x.flops, x.nbytes))


def key(stack: str, cls: str) -> str:
    """Where a class's curve is stored: shared, or per software stack (``artifact/attention``)."""
    return cls if cls in SHARED or stack == "vllm" else f"{stack}/{cls}"


Curve = Efficiency | Tiles | ChunkWaves | Knee | Skew


def lookup(eff: dict[str, Curve], stack: str, cls: str) -> Curve:
    """A stack's curve for a class, or vLLM's when that stack has none (vLLM is what the kernel models).
    A stack that timed no mixed batches (the artifact adds its prefill and decode predictions) runs
    a mixed batch's decodes on its decode curve."""
    if cls == "attention_mixed" and stack != "vllm" and key(stack, cls) not in eff and key(stack, "attention_decode") in eff:
        cls = "attention_decode"
    if cls in FALLBACK and key(stack, cls) not in eff and cls not in eff:
        cls = FALLBACK[cls]     # fitted nowhere: the nearest class, of this stack
    return eff.get(key(stack, cls)) or eff[cls]


def stack_of(tp_dir: Path, hardware: str) -> str:
    if (tp_dir / "dense.csv").is_file():
        return "vllm"
    return "xla" if "tpu" in hardware.lower() else "artifact"


@dataclass(frozen=True)
class Sample:
    bundle: str       # "HW/org/model/tpN"
    hardware: str
    op: str
    flops: float
    nbytes: float
    time_ns: float
    stack: str = "vllm"
    chunk: ChunkTiles | None = None    # attention with a prefill chunk: the chunk as the varlen kernel runs it
    tiles: DecodeTiles | None = None   # attention with decodes: their tiles
    pre_ns: float = 0.0       # a mixed batch: its chunk's profiled time alone, when the profile has it
    skew_ns: tuple[float, float] | None = None   # a skewed batch: the profiled times at its mean and longest length

    @property
    def cls(self) -> str:
        return OP_CLASS[self.op]

    @property
    def key(self) -> str:
        return key(self.stack, self.cls)


# ---- samples from the profiled bundles --------------------------------------------------------------

def _spread(rows: list, k: int = PER_BUNDLE_OP) -> list:
    if len(rows) <= k:
        return rows
    return [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, k).round().astype(int))]


def _cost(shapes: Shapes, op: str, n: int) -> OpCost | None:
    m = shapes.m
    if op == "gate":                   # the artifact's name of the MoE router
        return shapes.router(n) if m.is_moe else None
    if op.startswith("expert."):       # the artifact times one whole (unsharded) expert
        inter = m.moe_intermediate_size
        return shapes.gemm(op, n, inter, shapes.h) if op == "expert.w2" else shapes.gemm(op, n, shapes.h, inter)
    if op in ("act_fn", "gate_up_proj", "down_proj") and m.is_moe:
        return None        # an MoE model's MLP is its experts
    method = getattr(shapes, op, None)
    return method(n) if method is not None and op in OP_CLASS else None


def attention_sample(name: str, hw: str, stack: str, shapes: Shapes, pc, kp, n, kv, t_ns: float,
                     pre_ns: float = 0.0) -> Sample | None:
    """A prefill-only, decode-only or mixed batch with its chunk's and decodes' tiles; a mixed one's FLOPs and
    bytes are its decodes' (its chunk rides aside, with ``pre_ns``, the chunk's profiled time alone), since
    decodes that share a step with a prefill chunk run another way (:class:`Tiles`)."""
    chunk = shapes.chunk_tiles(int(pc), int(kp)) if pc > 0 else None
    if n > 0:
        d = shapes.attention_decode(int(kv))
        if chunk is not None:
            return Sample(name, hw, "attention_mixed", n * d.flops, n * d.bytes, t_ns, stack, chunk,
                          shapes.decode_tiles(n, kv, pc), pre_ns)
        return Sample(name, hw, "attention_decode", n * d.flops, n * d.bytes, t_ns, stack,
                      tiles=shapes.decode_tiles(n, kv, 0))
    if chunk is not None:
        return Sample(name, hw, "attention_prefill", chunk.flops, chunk.nbytes, t_ns, stack, chunk)
    return None


def bundle_samples(tp_dir: Path, model: ModelSpec, spec: HardwareSpec, tp: int, name: str) -> list[Sample]:
    """Every operator timing of one profiled ``tpN/`` folder (current or artifact format) with its cost."""
    shapes = Shapes(model, tp)
    out: list[Sample] = []
    if (tp_dir / "dense.csv").is_file():
        for fname, key in (("dense.csv", "tokens"), ("per_sequence.csv", "sequences")):
            cols = read_csv(tp_dir / fname, ("layer", key, "time_us"))
            by_op: dict[str, list] = {}
            for layer, x, t in zip(cols["layer"], cols[key], cols["time_us"]):
                by_op.setdefault(ALIASES.get(layer, layer), []).append((int(x), float(t) * 1e3))
            for op, rows in by_op.items():
                for x, t in _spread(sorted(rows)):
                    c = _cost(shapes, op, x)
                    if c is not None:
                        out.append(Sample(name, spec.name, op, c.flops, c.bytes, t))
        if (tp_dir / "moe.csv").is_file():      # one rank's gate and experts, profiled at TP=1
            c = read_csv(tp_dir / "moe.csv", ("tokens", "activated_experts", "time_us"))
            one = Shapes(model, 1)
            for x, e, t in _spread(sorted(zip(c["tokens"], c["activated_experts"], c["time_us"]))):
                cost = one.moe_experts(int(x), int(e))
                out.append(Sample(name, spec.name, "moe_experts", cost.flops, cost.bytes, float(t) * 1e3))
        a = read_csv(tp_dir / "attention.csv", ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"))
        rows = list(zip(a["prefill_chunk"], a["kv_prefill"], a["n_decode"], a["kv_decode"], a["time_us"]))
        alone = {(pc, kp): float(t) * 1e3 for pc, kp, n, _, t in rows if n == 0}
        prefill, decode = [r for r in rows if r[2] == 0], [r for r in rows if r[0] == 0]
        mixed = [r for r in rows if r[0] > 0 and r[2] > 0]
        for pc, kp, n, kv, t in (_spread(prefill, 2 * PER_BUNDLE_OP) + _spread(decode, 2 * PER_BUNDLE_OP)
                                 + _spread(mixed, 4 * PER_BUNDLE_OP)):
            x = attention_sample(name, spec.name, "vllm", shapes, pc, kp, n, kv, float(t) * 1e3, alone.get((pc, kp), 0.0))
            if x is not None:
                out.append(x)
        skew = tp_dir / "skew.csv"
        if skew.is_file():    # batches of unequal decode lengths, beside a chunk ("mixed") or not ("pure")
            c = read_csv(skew, ("regime", "t_mean_us", "t_max_us", "t_skew_us"), {"regime": ["pure", "mixed"]})
            rows = list(zip(c["regime"], c["t_mean_us"], c["t_max_us"], c["t_skew_us"]))
            for regime in ("pure", "mixed"):
                for _, mean, longest, t in _spread(sorted(r for r in rows if r[0] == regime), 2 * PER_BUNDLE_OP):
                    out.append(Sample(name, spec.name, f"skew_{'decode' if regime == 'pure' else 'mixed'}", 0.0, 0.0,
                                      float(t) * 1e3, skew_ns=(float(mean) * 1e3, float(longest) * 1e3)))
        return out
    stack = stack_of(tp_dir, spec.name)
    cols = read_csv(tp_dir / "layers.csv", ("layer_name", "input", "kv_cache", "tp_size", "latency(ns)"))
    by_op = {}
    for layer, x, t in zip(cols["layer_name"], cols["input"], cols["latency(ns)"]):
        by_op.setdefault(ALIASES.get(layer, layer), []).append((int(x), float(t)))
    for op, rows in by_op.items():
        if op == "lm_head" or op not in OP_CLASS:
            continue          # the artifact's lm_head rows time every token, not the sampled rows
        if op == "rms_norm" and model.layer_norm:
            op = "layer_norm"
        for x, t in _spread(sorted(rows)):
            c = _cost(shapes, op, x)
            if c is not None:
                out.append(Sample(name, spec.name, op, c.flops, c.bytes, t, stack))
    # Attention: the measured decode timings of the profiler's attention.csv (a GPU folder), else the
    # predictions (the TPU's XLA profile has a format of its own). The prefill timings are left out:
    # the profiler's prefill keys leave out the chunk's own tokens, so their work is not the counted one.
    rows = artifact_decode_rows(tp_dir)
    if rows is None and (tp_dir / "predictions").is_dir():
        d = read_csv(tp_dir / "predictions" / "attn_decode_predictions.csv",
                     ("batch_size", "kv_cache_size", "prediction"))
        rows = list(zip(d["batch_size"], d["kv_cache_size"], d["prediction"]))
    for n, kv, t in _spread(rows or [], 2 * PER_BUNDLE_OP):
        x = attention_sample(name, spec.name, stack, shapes, 0, 0, n, kv, float(t))
        if x is not None:
            out.append(x)
    return out


ARTIFACT_DECODE = ("batch_size", "kv_cache_size", "is_prefill", "time_stats.attn_decode.median")


def artifact_decode_rows(tp_dir: Path) -> list[tuple[int, int, float]] | None:
    """(requests, cached tokens per request, ns) of the artifact profiler's measured decode attention,
    or None when the folder has no such ``attention.csv``.

    The file's ``kv_cache_size`` is the whole batch's cache, not each request's: the profiler (vidur
    style, LLMServingSim's ``llm_profile/profiler/attention/attention_profiler.py``) fills one K and one V
    tensor of ``kv_cache_size`` tokens and gives each of the ``batch_size`` queries
    ``kv_cache_size // batch_size`` of them. Rows where that is zero read no cache and are skipped.
    Timings are in milliseconds.
    """
    path = tp_dir / "attention.csv"
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, encoding="utf-8", skipinitialspace=True)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable CSV: {e}", path) from None
    if ARTIFACT_DECODE[-1] not in df.columns:
        return None     # another profiler's format (the TPU's)
    missing = [c for c in ARTIFACT_DECODE if c not in df.columns]
    if missing:
        raise InputError(f"missing column {missing[0]!r}", path, "line 1")
    dec = df[~df["is_prefill"].astype(str).str.strip().str.lower().eq("true")]
    n = dec["batch_size"].to_numpy(dtype=float)
    per_request = np.floor(dec["kv_cache_size"].to_numpy(dtype=float) / np.maximum(n, 1))
    t_ms = dec[ARTIFACT_DECODE[-1]].to_numpy(dtype=float)
    bad = ~(np.isfinite(t_ms) & (t_ms > 0) & (n >= 1))
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise InputError(f"a decode row needs a positive timing and batch_size, got {t_ms[i]!r} ms for "
                         f"batch_size {n[i]:g}", path, f"line {int(dec.index[i]) + 2}")
    keep = per_request >= 1
    return [(int(a), int(b), float(c) * 1e6) for a, b, c in zip(n[keep], per_request[keep], t_ms[keep])]


def profiled_bundles(root: Path) -> list[tuple[Path, str, str, int]]:
    """(tpN folder, hardware, model name, tp) of every profiled folder under a reference root, both
    formats; artifact folders without attention timings or predictions give operator timings only."""
    found = []
    for base, pattern in ((root / "profiles", "*/*/*/bf16/tp*"), (root / "ispass26" / "profiles", "*/*/*/tp*"),
                          (root / "profiles", "*/*/*/tp*")):
        for d in sorted(base.glob(pattern)):
            if not d.is_dir() or not d.name[2:].isdigit():
                continue
            if not ((d / "dense.csv").is_file() or (d / "layers.csv").is_file()):
                continue
            if d.parent.name == "bf16" and not (d.parent / "meta.yaml").is_file():
                continue    # a simulation would not use it as measured either (it needs meta.yaml)
            parts = d.relative_to(base).parts
            hw, model = parts[0], f"{parts[1]}/{parts[2]}"
            key = (hw, model, int(d.name[2:]))
            if all((f[1], f[2], f[3]) != key for f in found):
                found.append((d, *key))
    return found


def model_config(root: Path, model: str) -> ModelSpec:
    for p in (root / "configs" / "model" / f"{model}.json", root / "ispass26" / "model_config" / f"{model}.json",
              root / "model_config" / f"{model}.json"):
        if p.is_file():
            return ModelSpec.from_hf_config(p)
    raise InputError(f"no model config for {model!r}", root, "model")


def read_bundle(root: Path, d: Path, hw: str, model: str, tp: int, spec: HardwareSpec) -> list[Sample]:
    """:func:`bundle_samples` of one profiled folder, named with its folder for ``-v``."""
    samples = bundle_samples(d, model_config(root, model), spec, tp, f"{hw}/{model}/tp{tp}")
    log.info("%s/%s/tp%d: %d operator timings from %s", hw, model, tp, len(samples), d)
    return samples


def all_samples(root: Path, specs: dict[str, HardwareSpec] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> list[Sample]:
    """Every profiled bundle's operator timings; ``progress`` is told each bundle as it starts (its name, how many
    are done and how many there are)."""
    specs = specs if specs is not None else load_specs()
    t0 = time.perf_counter()
    out: list[Sample] = []
    bundles = profiled_bundles(root)
    for done, (d, hw, model, tp) in enumerate(bundles):
        if progress:
            progress(f"reading {hw}/{model}/tp{tp}", done, len(bundles))
        if hw not in specs:
            log.warning("no hardware spec for %s: its profiles are left out of the fit", hw)
            continue
        out += read_bundle(root, d, hw, model, tp, specs[hw])
    log.info("%d operator timings of %d profiles read in %.2f s", len(out), len({x.bundle for x in out}),
             time.perf_counter() - t0)
    return out


# ---- fitting and storing --------------------------------------------------------------------------

def _predict(theta: np.ndarray, f: np.ndarray, b: np.ndarray, peak: np.ndarray, bw: np.ndarray) -> np.ndarray:
    e_max, f_half, u, t0 = np.exp(theta)
    return t0 * 1e3 + np.maximum((f + f_half) / (peak * e_max), b / (bw * u)) * 1e9


def _arrays(cls, items: list):
    """One dataclass of arrays from many (the curves evaluate every sample at once)."""
    return cls(*(np.array([getattr(x, f.name) for x in items], float) for f in fields(cls)))


def _fitted_on(s: list[Sample], specs: dict[str, HardwareSpec], field: str) -> tuple[float, np.ndarray]:
    """A spec field of the hardware with the most samples, which the fitted counts are on, and each sample's
    (that value where its spec does not say)."""
    hw = max(sorted({x.hardware for x in s}), key=[x.hardware for x in s].count)
    ref = getattr(specs[hw], field)
    if ref is None:
        raise InputError(f"vLLM's attention kernels are fitted per {field}, which this spec does not give",
                         specs[hw].path or hw, field)
    return ref, np.array([getattr(specs[x.hardware], field) or ref for x in s], float)


def _fit_chunk_waves(s: list[Sample], t: np.ndarray, specs: dict[str, HardwareSpec]) -> ChunkWaves:
    """:class:`ChunkWaves` by least squares on log time; ``slots`` counts waves, so it is searched on a grid
    (coarse, then every integer near the best: whole tiles on the GPU with the most samples) with the other
    three fitted at each."""
    from scipy.optimize import least_squares

    c = _arrays(ChunkTiles, [x.chunk for x in s])
    peak = np.array([specs[x.hardware].bf16_tflops * 1e12 for x in s])
    bw = np.array([specs[x.hardware].memory_bw_gbs * 1e9 for x in s])
    on_sms, sms = _fitted_on(s, specs, "sms")

    def at(slots: float) -> tuple[float, ChunkWaves]:
        def curve(th) -> ChunkWaves:
            t0, e, tile = (float(v) for v in np.exp(th))
            return ChunkWaves(t0, slots, e, tile, on_sms)
        res = least_squares(lambda th: np.log(chunk_ns(curve(th).at(sms), c, peak, bw)) - np.log(t), np.log([5.0, 0.5, 2.0]),
                            bounds=(np.log([0.05, 0.02, 0.01]), np.log([500.0, 1.0, 1e4])), loss="soft_l1", f_scale=0.2)
        return float(res.cost), curve(res.x)

    coarse = min((at(float(k)) + (k,) for k in np.unique(np.geomspace(8, 1024, 29).round())), key=lambda r: r[0])
    k = coarse[2]
    return min((at(float(j)) for j in range(max(1, int(k * 0.8)), int(k * 1.2) + 2)), key=lambda r: r[0])[1]


def _fit_knee(s: list[Sample], t: np.ndarray, specs: dict[str, HardwareSpec]) -> Knee:
    """:class:`Knee` by least squares on log time over decode-only batches."""
    from scipy.optimize import least_squares

    d = _arrays(DecodeTiles, [x.tiles for x in s])
    bw_gbs = np.array([specs[x.hardware].memory_bw_gbs for x in s])
    on_bw = _fitted_on(s, specs, "memory_bw_gbs")[0]
    res = least_squares(lambda th: np.log(knee_ns(Knee(*np.exp(th), on_bw).at(bw_gbs), d, bw_gbs * 1e9)) - np.log(t),
                        np.log([10.0, 0.8, 0.95, 300.0, 10.0]),
                        bounds=(np.log([0.05, 0.02, 0.02, 1.0, 0.01]), np.log([500.0, 1.0, 1.0, 1e5, 1e4])),
                        loss="soft_l1", f_scale=0.2)
    return Knee(*(float(v) for v in np.exp(res.x)), on_bw)


def _fit_tiles(s: list[Sample], t: np.ndarray, specs: dict[str, HardwareSpec]) -> Tiles:
    """:class:`Tiles` by least squares on log time over mixed batches' decode parts."""
    from scipy.optimize import least_squares

    d = _arrays(DecodeTiles, [x.tiles for x in s])
    bw = np.array([specs[x.hardware].memory_bw_gbs * 1e9 for x in s])
    (on_sms, sms), (on_cache, cache) = _fitted_on(s, specs, "sms"), _fitted_on(s, specs, "cache_mb")
    x0 = np.log([100.0, 2.0, 20.0, 0.7, 500.0, 50.0])
    lo, hi = np.log([1.0, 0.01, 0.01, 0.02, 1.0, 0.1]), np.log([1e5, 100.0, 1e4, 1.0, 1e5, 1e4])
    res = least_squares(lambda th: np.log(tiles_ns(Tiles(*np.exp(th), on_sms, on_cache).at(sms, cache), d, bw)) - np.log(t),
                        x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.2)
    return Tiles(*(float(v) for v in np.exp(res.x)), on_sms, on_cache)


def _fit_skew(s: list[Sample], t: np.ndarray) -> Skew:
    """:class:`Skew` by least squares on time: each batch weighs by the time its skew costs (on relative time,
    the many short batches of the grid, where a few microseconds are a large share, outvoted the long ones)."""
    mean, longest = np.array([x.skew_ns for x in s]).T
    w = longest - mean
    mixed = np.array([x.op == "skew_mixed" for x in s])
    return Skew(*(float(np.sum(w[m] * (t - mean)[m]) / np.sum(w[m] ** 2)) if m.any() else 0.0 for m in (~mixed, mixed)))


VLLM_FORMS = {"attention_prefill": _fit_chunk_waves, "attention_decode": _fit_knee}   # vLLM's; other stacks: roofline


def fit(samples: Iterable[Sample], specs: dict[str, HardwareSpec] | None = None) -> dict[str, Curve]:
    """Least squares on log time, per operator class (and software stack, see :data:`STACKS`),
    over every sample given. vLLM's classes must all be present; other stacks' are fitted where
    they have samples. Mixed attention batches are fitted last, on what their prefill part (by the
    prefill curve just fitted) leaves of their time, as :class:`Tiles`."""
    from scipy.optimize import least_squares

    specs = specs if specs is not None else load_specs()
    groups: dict[str, list[Sample]] = {}
    for x in samples:
        if x.time_ns > 0:
            groups.setdefault(x.key, []).append(x)
    missing = [c for c in CLASSES if c not in groups]
    if missing:
        raise InputError(f"no profiled samples of {missing} operators (vLLM profiles) to fit", "profiles", missing[0])
    out: dict[str, Curve] = {}
    marks: list[tuple[str, float]] = []   # when each class's fit began, for -v: which curve a slow fit spends it on
    for k in sorted(groups, key=lambda k: (k.count("/"), FIT_ORDER.index(k.rsplit("/", 1)[-1]))):
        marks.append((k, time.perf_counter()))
        s = groups[k]
        t = np.array([x.time_ns for x in s])
        if s[0].cls == "attention_mixed":
            pre = np.array([x.pre_ns or lookup(out, x.stack, "attention_prefill").on(specs[x.hardware]).chunk_of(x)
                            for x in s])
            keep = t - pre > 0.05 * t
            s, t = [x for x, k_ in zip(s, keep) if k_], (t - pre)[keep]
            if len(s) < 8:
                continue
            out[k] = _fit_tiles(s, t, specs)
            continue
        if k == "attention_skew":
            out[k] = _fit_skew(s, t)
            continue
        if k in VLLM_FORMS:
            out[k] = VLLM_FORMS[k](s, t, specs)
            continue
        f = np.array([x.flops for x in s])
        b = np.array([x.nbytes for x in s])
        peak = np.array([specs[x.hardware].bf16_tflops * 1e12 for x in s])
        bw = np.array([specs[x.hardware].memory_bw_gbs * 1e9 for x in s])
        x0 = np.log([0.6, 1e8, 0.7, 5.0])
        lo, hi = np.log([0.02, 1.0, 0.02, 0.05]), np.log([1.0, 1e13, 1.0, 500.0])
        res = least_squares(lambda th: np.log(_predict(th, f, b, peak, bw)) - np.log(t), x0, bounds=(lo, hi),
                            loss="soft_l1", f_scale=0.2)
        out[k] = Efficiency(*(float(v) for v in np.exp(res.x)))
    marks.append(("", time.perf_counter()))
    took = {k: t1 - t0 for (k, t0), (_, t1) in zip(marks, marks[1:])}
    slowest = max(took, key=took.__getitem__)
    log.info("fitted %d curves on %d operator timings in %.2f s (the slowest, %s: %.2f s)", len(out),
             sum(map(len, groups.values())), marks[-1][1] - marks[0][1], slowest, took[slowest])
    return out


def predict_ns(samples: list[Sample], eff: dict[str, Curve], specs: dict[str, HardwareSpec]) -> np.ndarray:
    """The analytical time of each sample (a mixed attention batch: prefill part plus decode part)."""
    out = []
    for x in samples:
        spec = specs[x.hardware]
        t = lookup(eff, x.stack, x.cls).on(spec).sample(x)
        if x.cls == "attention_mixed":
            t += lookup(eff, x.stack, "attention_prefill").on(spec).chunk_of(x)
        out.append(t)
    return np.array(out)


def leave_out(samples: list[Sample], hardware: str, model: str) -> list[Sample]:
    """Every sample except those of one (hardware, model) at any TP degree: a leave-one-out fit
    must not see the same operators at another TP degree."""
    return [x for x in samples if not (x.hardware == hardware and x.bundle.startswith(f"{hardware}/{model}/tp"))]


def errors_pct(samples: list[Sample], eff: dict[str, Curve], specs: dict[str, HardwareSpec]) -> np.ndarray:
    """Signed % error of the analytical time against each profiled sample."""
    pred = predict_ns(samples, eff, specs)
    meas = np.array([x.time_ns for x in samples])
    return (pred - meas) / meas * 100.0


def save_efficiency(eff: dict[str, Curve], samples: list[Sample], specs: dict[str, HardwareSpec],
                    path: Path = EFFICIENCY_FILE) -> Path:
    from .. import __version__

    err = errors_pct(samples, eff, specs)
    per_class = {k: float(np.median(np.abs(err[[x.key == k for x in samples]]))) for k in eff}
    doc = {
        "model": "t = t0 + max((F + f_half) / (P * e_max), B / (W * u)); P, W from profiles/hardware; "
                 "a class per software stack (STACKS in llmss_lab/latency/roofline.py), 'STACK/CLASS' when not vLLM's; "
                 "attention_mixed: the decodes of a mixed batch as varlen kernel tiles (Tiles in roofline.py); "
                 "vLLM's attention_prefill: a chunk's tiles in waves (ChunkWaves); attention_decode: K and V bytes "
                 "through a bandwidth knee (Knee); their on_* fields: the spec of the GPU their counts are on, "
                 "scaled to another's SMs, cache and bandwidth",
        "classes": {c: {k: float(f"{v:.5g}") for k, v in asdict(e).items()} for c, e in eff.items()},
        "provenance": {
            "fitted_on": sorted({x.bundle for x in samples}),
            "samples": len(samples),
            "median_abs_error_pct": {c: round(v, 2) for c, v in per_class.items()},
            "fitted_at": datetime.date.today().isoformat(),
            "llmss_lab": f"{__version__} ({git_hash()})",
            "command": "llmss profile-fit --reference-dir ROOT",
        },
    }
    return write_text(path, yaml.safe_dump(doc, sort_keys=False, width=110))


FIT_FILE = "the YAML file `llmss profile-fit` writes, like profiles/efficiency.yaml"


def load_efficiency(path: Path = EFFICIENCY_FILE) -> dict[str, Curve]:
    try:
        data = read_yaml(path)
    except InputError as exc:
        if exc.where is None:   # missing, a folder, not text: the caller names the setting that gave the path
            raise
        raise InputError(f"{exc.message} (an efficiency fit is {FIT_FILE})", exc.source, exc.where) from None
    # another kind of file (a cluster config, a hardware spec): an error of the whole file, which the caller names
    if not isinstance(data, dict) or "classes" not in data:
        raise InputError(f"not an efficiency fit: no fitted 'classes' ({FIT_FILE})", path)
    classes = data["classes"]
    if not isinstance(classes, dict):
        raise InputError("must be a mapping of the fitted classes (run `llmss profile-fit`)", path, "classes")
    missing = [c for c in CLASSES if not isinstance(classes.get(c), dict)]
    if missing:
        raise InputError("missing fitted parameters", path, f"classes.{missing[0]}")
    out = {}
    for k, p in classes.items():
        sec = Section.of(p, path, f"classes.{k}")
        # every value within the fit's bounds: past them a step can take years (f_half 1e308 ran into the
        # kernel's 100-day stop, which could not say which key)
        if k == "attention_skew":        # fractions of the way to the longest decode's time
            out[k] = Skew(sec.number("decode", minimum=-1.0, maximum=1.0), sec.number("mixed", minimum=-1.0, maximum=1.0))
            continue
        if k == "attention_prefill":     # vLLM's forms (VLLM_FORMS)
            out[k] = ChunkWaves(sec.number("t0_us", minimum=0, maximum=500.0), sec.number("slots", minimum=1, maximum=1e5),
                                sec.number("e", minimum=0.001, maximum=1.0), sec.number("tile_us", minimum=0, maximum=1e4),
                                sec.number("on_sms", minimum=1, maximum=1e6))
            continue
        if k == "attention_decode":
            out[k] = Knee(sec.number("t0_us", minimum=0, maximum=500.0), sec.number("u_lo", minimum=0.001, maximum=1.0),
                          sec.number("u_hi", minimum=0.001, maximum=1.0),
                          sec.number("knee_mb", minimum=0.001, maximum=1e5), sec.number("tile_ns", minimum=0, maximum=1e4),
                          sec.number("on_bw_gbs", minimum=0.001, maximum=1e9))
            continue
        if str(k).rsplit("/", 1)[-1] == "attention_mixed":
            # counts, times and a fraction of bandwidth
            out[str(k)] = Tiles(sec.number("slots", minimum=1, maximum=1e5), sec.number("tile_us", minimum=0, maximum=100.0),
                                sec.number("token_ns", minimum=0, maximum=1e4), sec.number("u", minimum=0.001, maximum=1.0),
                                sec.number("empty_ns", minimum=0, maximum=1e5), sec.number("cache_mb", minimum=0, maximum=1e4),
                                sec.number("on_sms", minimum=1, maximum=1e6), sec.number("on_cache_mb", minimum=0.001, maximum=1e9))
            continue
        # fractions of peak FLOP/s and bandwidth (the fit keeps them in [0.02, 1]); a size and a launch time
        out[str(k)] = Efficiency(sec.number("e_max", minimum=0.001, maximum=1.0), sec.number("f_half", minimum=0, maximum=1e13),
                                 sec.number("u", minimum=0.001, maximum=1.0), sec.number("t0_us", minimum=0, maximum=500.0))
    return out


# Every class at peak FLOP/s and bandwidth with no overhead: the least time physics allows
IDEAL = {c: Efficiency(1.0, 0.0, 1.0, 0.0) for c in CLASSES}


def floor_ratio(samples: list[Sample], specs: dict[str, HardwareSpec]) -> np.ndarray:
    """Each timing over the least time physics allows (:data:`IDEAL`; a mixed batch: both parts).
    Below 1, the timing cannot be of the work the profile says was done, so no roofline model can
    match it."""
    floor = predict_ns(samples, {**IDEAL, "attention_skew": Skew(0.0, 0.0)}, specs)
    floor[[x.skew_ns is not None for x in samples]] = 0.0      # a skewed batch's timings: no roofline to beat
    t = np.array([x.time_ns for x in samples])
    return np.where(floor > 0, t / np.where(floor > 0, floor, 1.0), math.inf)


def summary(err: np.ndarray, ratio: np.ndarray | None = None) -> dict[str, float]:
    """Error statistics; with ``ratio`` (:func:`floor_ratio`), also the share of timings faster
    than the roofline allows."""
    a = np.abs(err)
    out = {"n": int(len(err)), "median_abs_pct": float(np.median(a)) if len(a) else math.nan,
           "p90_abs_pct": float(np.percentile(a, 90)) if len(a) else math.nan,
           "median_signed_pct": float(np.median(err)) if len(err) else math.nan}
    if ratio is not None:
        out["below_roofline_pct"] = float(np.mean(ratio < 1.0) * 100.0) if len(ratio) else math.nan
    return out


def check(root: Path, hardware: str, model: str, tp: int | None = None, leave_one_out: bool = False,
          specs: dict[str, HardwareSpec] | None = None,
          progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """Operator-by-operator error of the analytical model against one profiled (hardware, model):
    with the stored fit, or (``leave_one_out``) with a fit on every other (hardware, model), whose reading
    ``progress`` hears as :func:`all_samples` says it."""
    specs = specs if specs is not None else load_specs()
    if hardware not in specs:
        near = closest(hardware, specs)   # the hardware was typed at the prompt: name it there, as MODEL is
        raise InputError(f"no spec for hardware {hardware!r}" + (f"; did you mean {near!r}?" if near else "")
                         + f" (have: {', '.join(sorted(specs))}, in {SPECS_DIR})", "profile-check", "HW")
    picked = [b for b in profiled_bundles(root) if b[1] == hardware and b[2] == model and (tp is None or b[3] == tp)]
    if not picked:
        bundles = profiled_bundles(root)
        models = {b[2] for b in bundles if b[1] == hardware}
        lower = {m.lower(): m for m in models}
        hint = lower.get(model.lower()) or closest(model, models) or next(
            (m for m in models if m.split("/")[-1].lower() == model.lower()), None)   # the org left out
        if hint and hint != model:
            raise InputError(f"no profile of {model!r} on {hardware}; did you mean {hint!r}?", "profile-check", "MODEL")
        have = sorted({f"{b[1]} {b[2]} tp{b[3]}" for b in bundles})
        bundle = root / "profiles" / hardware / model / "bf16"
        why = (f"{bundle} has no meta.yaml, so a simulation would not use it as measured either; "
               if bundle.is_dir() and not (bundle / "meta.yaml").is_file() else "")
        raise InputError(f"no profile of {model} on {hardware}{f' at tp{tp}' if tp else ''} ({why}profiled: {have})",
                         root, "profile")
    log.info("the roofline of %s from %s", hardware, specs[hardware].path or "its spec")
    test = []
    for d, hw, m, t in picked:
        test += read_bundle(root, d, hw, m, t, specs[hw])
        if (d.parent / "meta.yaml").is_file():      # a current bundle: its skew fit is part of the profile too
            load_bundle(d.parent).skew_fit(t)
    if leave_one_out:
        log.info("fitting the efficiency curves on every profile but %s's of %s", hardware, model)
        others = leave_out(all_samples(root, specs, progress), hardware, model)
        if progress:
            progress("fitting the efficiency curves", 0, 0)
        eff = fit(others, specs)
    else:
        log.info("efficiency curves: the stored fit, %s", EFFICIENCY_FILE)
        eff = load_efficiency()
    err = errors_pct(test, eff, specs)
    ratio = floor_ratio(test, specs)
    ops = sorted({x.op for x in test}, key=lambda o: (FIT_ORDER.index(OP_CLASS[o]), o))
    table = {}
    for op in ops:
        m = np.array([x.op == op for x in test])
        table[op] = summary(err[m], ratio[m])
    table["all"] = summary(err, ratio)
    return table
