"""The latency of one engine step (iteration) from the batch's exact composition.

A step runs the model once over every scheduled token:

* the prologue (embedding) and head (final norm) at ``T`` tokens, plus per block each token-parallel
  operator of the profile at ``T`` tokens (``layernorm`` twice: before attention and before the MLP);
* attention for the batch's prefill chunks (their tokens and histories summed into one
  equivalent chunk) and its decodes (count, mean history), corrected for unequal decode lengths;
* the LM head and sampler at the number of sequences;
* with tensor parallelism, two ring all-reduces of the hidden state (``T x hidden x dtype`` bytes)
  per block, after the attention output projection and after the MLP.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.model import DTYPE_BYTES, ModelSpec
from .interconnect import Link, all_reduce_ns
from .profile import TpProfile, interp1

EDGE_LAYERS = ("embedding", "final_layernorm")
PER_BLOCK_REPEATS = {"layernorm": 2}


@dataclass(frozen=True)
class BatchShape:
    """What the latency of a step depends on."""

    num_tokens: int
    num_seqs: int
    prefill_tokens: int = 0
    prefill_history: int = 0
    num_decodes: int = 0
    decode_kv_mean: float = 0.0
    decode_kv_min: float = 0.0
    decode_kv_max: float = 0.0


@dataclass(frozen=True)
class StepTime:
    compute_ns: float
    comm_ns: float
    attention_ns: float

    @property
    def total_ns(self) -> float:
        return self.compute_ns + self.comm_ns


class IterationModel:
    """Per-step latency of one instance (one model replica at a given TP degree)."""

    def __init__(self, profile: TpProfile, model: ModelSpec, tp: int = 1, link: Link | None = None,
                 mem_bw_gbps: float = 0.0, skew_correction: bool = True):
        self.profile = profile
        self.model = model
        self.tp = tp
        self.link = link
        self.mem_bw = mem_bw_gbps
        self.skew = profile.skew if skew_correction else None
        self.layers = model.num_layers
        self._dense_axis, self._dense_vals = self._dense_sum(profile)
        seq = profile.per_sequence
        axis = np.unique(np.concatenate([t[0] for t in seq.values()])) if seq else np.array([1.0])
        self._seq_axis = axis
        self._seq_vals = sum((interp1(x, v, axis) for x, v in seq.values()), np.zeros(len(axis)))
        self._dense_cache: dict[int, float] = {}
        self._seq_cache: dict[int, float] = {}
        self._hidden_bytes = model.hidden_size * DTYPE_BYTES[model.torch_dtype]

    def _dense_sum(self, profile: TpProfile) -> tuple[np.ndarray, np.ndarray]:
        """Sum every token-parallel operator of one whole forward on a common token axis.

        Interpolating the sum equals summing the interpolations, so one lookup per step suffices.
        """
        dense = profile.dense
        axis = np.unique(np.concatenate([t[0] for t in dense.values()]))
        total = np.zeros(len(axis))
        for layer, (x, v) in dense.items():
            times = 1 if layer in EDGE_LAYERS else self.layers * PER_BLOCK_REPEATS.get(layer, 1)
            total += times * interp1(x, v, axis)
        return axis, total

    def dense_ns(self, tokens: int) -> float:
        v = self._dense_cache.get(tokens)
        if v is None:
            v = float(interp1(self._dense_axis, self._dense_vals, tokens)) if tokens > 0 else 0.0
            self._dense_cache[tokens] = v
        return v

    def per_sequence_ns(self, seqs: int) -> float:
        v = self._seq_cache.get(seqs)
        if v is None:
            v = float(interp1(self._seq_axis, self._seq_vals, seqs)) if seqs > 0 else 0.0
            self._seq_cache[seqs] = v
        return v

    def attention_ns(self, b: BatchShape) -> float:
        """One attention layer for the whole batch."""
        att = self.profile.attention
        n = b.num_decodes
        t = att(b.prefill_tokens, b.prefill_history, n, b.decode_kv_mean)
        if self.skew is not None and n > 1 and b.decode_kv_max > b.decode_kv_mean:
            alpha = self.skew.alpha(b.prefill_tokens, n, b.decode_kv_mean, b.decode_kv_min,
                                    b.decode_kv_max, b.prefill_history)
            if alpha:
                t_max = att(b.prefill_tokens, b.prefill_history, n, b.decode_kv_max)
                if t_max > t:
                    t += alpha * (t_max - t)
        return t

    def allreduce_ns(self, tokens: int) -> float:
        """Both tensor-parallel all-reduces of every block."""
        if self.tp <= 1 or self.link is None or tokens <= 0:
            return 0.0
        one = all_reduce_ns(self.link, self.tp, tokens * self._hidden_bytes, self.mem_bw)
        return 2 * self.layers * one

    def step(self, b: BatchShape) -> StepTime:
        attn = self.layers * self.attention_ns(b)
        compute = self.dense_ns(b.num_tokens) + attn + self.per_sequence_ns(b.num_seqs)
        return StepTime(compute, self.allreduce_ns(b.num_tokens), attn)
