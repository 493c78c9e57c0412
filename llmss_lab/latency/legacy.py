"""Profiles in the older format of the LLMServingSim 2.0 paper's artifact.

``profiles/<HW>/<org>/<model>/tpN/``:

* ``layers.csv`` (``layer_name,input,kv_cache,tp_size,latency(ns)``): each operator of one rank
  at ``input`` tokens (1..2048). ``embedding`` runs once before the blocks and ``final_layernorm``
  once after; ``lm_head`` is looked up at the number of sequences; every other operator runs once
  per transformer block at the batch's token count. The ``attn`` row (a plain attention timing) is
  superseded by the predictions below. MoE models list ``gate`` (per block, at all tokens) and
  ``expert.w1``/``w3``/``w2`` (one full expert at the tokens routed to it); ``act_fn`` of an MoE
  model is not charged separately because vLLM fuses it into the expert kernel.
* ``predictions/attn_prefill_predictions.csv`` (``kv_cache_size,prefill_chunk_size,prediction``)
  and ``attn_decode_predictions.csv`` (``batch_size,kv_cache_size,prediction``), in ns: one
  attention layer for a prefill chunk over a history, and for a batch of decodes at a mean
  history. A step's attention is the prefill part plus the decode part. Several prefill chunks
  in one step count as one chunk of ``sqrt(sum of squared chunk sizes)`` tokens (attention work
  grows with the square of a chunk) over their summed history.

All lookups interpolate linearly on each axis, clamp below the first grid point and extrapolate
linearly above the last, like the current format. The optional layers a profile lacks (the TPU
profile has no ``k_proj``/``v_proj`` rows) cost nothing; an unknown layer name (it would be charged on
every step), a missing required layer, a ``tp_size`` other than the folder's, or a key given twice
in any table is refused.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .profile import Grid2D, LatencyProfile, interp1, read_columns

EXPERT_OPS = ("expert.w1", "expert.w3", "expert.w2")
SKIP = ("attn", "lm_head")
# layer names of the artifact's profiler (LLMServingSim's profiler/v0): those every model runs, and the
# MLP of a dense or of a mixture-of-experts model; OPTIONAL ones may be missing (fused away on TPU, or superseded)
REQUIRED = ("embedding", "input_layernorm", "q_proj", "rope", "o_proj", "post_layernorm", "final_layernorm", "lm_head")
OPTIONAL = ("k_proj", "v_proj", "attn")
DENSE_MLP = ("gate_proj", "up_proj", "act_fn", "down_proj")
MOE_MLP = ("gate", *EXPERT_OPS)


def is_legacy_dir(model_dir: Path) -> bool:
    return any((d / "layers.csv").is_file() for d in model_dir.glob("tp*"))


class LegacyAttention:
    """Prefill part (equivalent chunk, history) plus decode part (count, mean history)."""

    prefill_key = "rms"

    def __init__(self, d: Path):
        p = d / "predictions" / "attn_prefill_predictions.csv"
        q = d / "predictions" / "attn_decode_predictions.csv"
        for f in (p, q):
            if not f.is_file():
                raise InputError("attention predictions missing from the profile", f)
        cp = read_columns(p, ("kv_cache_size", "prefill_chunk_size", "prediction"),
                          unique=("kv_cache_size", "prefill_chunk_size"))
        cd = read_columns(q, ("batch_size", "kv_cache_size", "prediction"), unique=("batch_size", "kv_cache_size"))
        self.prefill = Grid2D.from_points(cp["prefill_chunk_size"], cp["kv_cache_size"], cp["prediction"])
        self.decode = Grid2D.from_points(cd["batch_size"], cd["kv_cache_size"], cd["prediction"])

    def __call__(self, pc: float, kp: float, n: float, kv: float) -> float:
        t = max(self.prefill(pc, kp), 0.0) if pc > 0 else 0.0
        if n > 0:
            t += max(self.decode(n, kv), 0.0)
        return max(t, 1.0)


class LegacyExperts:
    """Expert block of each EP rank: the sum, over the experts it holds, of one expert's operators
    at the tokens routed to it (experts placed in contiguous ranges).

    An expert no token reached costs nothing: vLLM's fused MoE kernel computes only the experts that got
    tokens (``moe_align_block_size`` in vllm/model_executor/layers/fused_moe/ gives an expert without tokens no
    block, and each block of ``fused_moe_kernel`` in fused_moe.py loads its own expert's weights). The balanced gate's expected count below one pair,
    ``c < 1``, is an expert reached with chance ``c``, so it costs ``c`` of one token's time: a one-token step of a
    top-2 model costs two experts (the gate's ``activated``), not all of them at one token each."""

    def __init__(self, ops: dict[str, tuple[np.ndarray, np.ndarray]]):
        axis = np.unique(np.concatenate([ops[k][0] for k in EXPERT_OPS]))
        self.axis = axis
        self.values = sum(interp1(*ops[k], axis) for k in EXPERT_OPS)

    def __call__(self, routing) -> np.ndarray:
        c = routing.expert_tokens                        # [G, E]
        f = interp1(self.axis, self.values, np.maximum(c, 1))
        t = np.where(c >= 1, f, c * f)   # a sampled gate's counts are whole: only the balanced gate's fall below 1
        ep = routing.local_tokens.shape[1]
        return t.reshape(t.shape[0], ep, -1).sum(axis=2)


def load_legacy(model_dir: Path, tp: int, is_moe: bool) -> LatencyProfile:
    """The profile of one TP degree (cached while its files are unchanged)."""
    d = model_dir / f"tp{tp}"
    stamp = max((f.stat().st_mtime for f in d.rglob("*.csv")), default=0.0) if d.is_dir() else 0.0
    return _load_legacy(str(model_dir), tp, is_moe, stamp)


@functools.lru_cache(maxsize=16)
def _load_legacy(model_dir_s: str, tp: int, is_moe: bool, stamp: float) -> LatencyProfile:
    model_dir = Path(model_dir_s)
    d = model_dir / f"tp{tp}"
    if not (d / "layers.csv").is_file():
        have = sorted(p.name for p in model_dir.glob("tp*") if (p / "layers.csv").is_file())
        raise InputError(f"the profile has no tp{tp}/layers.csv (has {have}); pick a tp_size it was profiled at",
                         model_dir, f"tp{tp}")
    path = d / "layers.csv"
    required = REQUIRED + (MOE_MLP if is_moe else DENSE_MLP)
    known = sorted({*required, *OPTIONAL, "act_fn"})   # an MoE model's act_fn is fused into its experts (not charged)
    cols = read_columns(path, ("layer_name", "input", "tp_size", "latency(ns)"), labels={"layer_name": known},
                        unique=("layer_name", "input"))
    tps = set(cols["tp_size"].tolist())
    if tps != {tp}:
        raise InputError(f"says {sorted(tps - {tp})[0]:g} in a tp{tp}/ folder: profiled at another TP degree",
                         path, "tp_size")
    # rows grouped by layer through integer codes (in order of first appearance), not by comparing the
    # 30,000 names with each layer's name in turn (5 ms, a tenth of the load)
    codes, layer_names = pd.factorize(cols["layer_name"])
    x_all, t_all = cols["input"], cols["latency(ns)"]
    ops = {}
    for k, name in enumerate(layer_names):
        m = codes == k
        order = np.argsort(x_all[m], kind="stable")
        ops[str(name)] = (x_all[m][order], t_all[m][order])
    missing = [k for k in required if k not in ops]
    if missing:
        raise InputError(f"no rows for layer(s) {missing}: every transformer step runs them", path, "layer_name")
    moe = None
    dense = {k: v for k, v in ops.items() if k not in SKIP and not k.startswith("expert.")}
    if is_moe:
        moe = LegacyExperts(ops)
        dense.pop("act_fn", None)
    return LatencyProfile(tp=tp, dense=dense, per_sequence={"lm_head": ops["lm_head"]},
                          attention=LegacyAttention(d), skew=None, moe=moe, source=str(d))
