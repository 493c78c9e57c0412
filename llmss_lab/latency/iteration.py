"""The latency of one engine step (iteration) from the batch's exact composition.

A step runs the model once over every scheduled token (``T``, or the data-parallel group's padded
``T`` when members run in lockstep):

* the prologue (embedding) at ``T`` tokens on the first pipeline stage, the head (final norm at
  ``T`` tokens, LM head and sampler at the number of sequences) on the last;
* per transformer block: each token-parallel operator of the profile at ``T`` tokens (``layernorm``
  twice: before attention and before the MLP), attention for the batch's prefill chunks (their
  tokens and histories summed into one equivalent chunk) and its decodes (count, mean history,
  corrected for unequal decode lengths), and for MoE models the expert block of the busiest
  expert-parallel rank;
* collectives per block: with tensor parallelism a ring all-reduce of the hidden state
  (``T x hidden x dtype`` bytes) after the attention output projection and another after a dense
  MLP; an MoE block with expert parallelism instead dispatches with an all-gather of the tokens'
  hidden states and router logits and combines with a reduce-scatter of the hidden states
  (vLLM's all-gather/reduce-scatter all-to-all);
* with pipeline parallelism, blocks are split over stages as vLLM splits them and each stage
  boundary sends the hidden state point to point.

A step's time is returned per pipeline stage, so the kernel can overlap micro-batches.

Runtimes that execute precompiled shapes (vLLM on TPU compiles token counts and request counts in
power-of-two buckets) run the token-parallel operators at the padded token count and the LM head at
the padded request count (``pad_shapes``); attention runs on the real batch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..config.model import DTYPE_BYTES, ModelSpec
from .interconnect import Link, all_gather_ns, all_reduce_ns, reduce_scatter_ns
from .profile import LatencyProfile, interp1

EDGE_FIRST = ("embedding",)
EDGE_LAST = ("final_layernorm",)
PER_BLOCK_REPEATS = {"layernorm": 2}


@dataclass(slots=True)
class BatchShape:
    """What the latency of a step depends on. Built every step, so a plain slotted class: a frozen
    dataclass takes five times as long to construct. Treat it as a value: never change one."""

    num_tokens: int
    num_seqs: int
    prefill_tokens: int = 0
    prefill_history: int = 0
    num_decodes: int = 0
    decode_kv_mean: float = 0.0
    decode_kv_min: float = 0.0
    decode_kv_max: float = 0.0
    prefill_rms: float = 0.0   # sqrt of the summed squared chunk sizes (for profiles keyed that way)


@dataclass(slots=True)
class StepTime:
    """Time of one step; ``stages`` is the wall time of each pipeline stage (compute and its
    collectives), ``p2p_ns`` the hand-over between consecutive stages. A value, like BatchShape."""

    compute_ns: float
    comm_ns: float
    attention_ns: float
    moe_ns: float = 0.0
    stages: tuple[float, ...] = ()
    p2p_ns: float = 0.0
    wire_bytes: float = 0.0   # bytes the step's collectives and stage hand-overs put on links
    pim_busy_ns: float = 0.0  # PIM channel-time (sum over channels) of offloaded attention
    npu_wait_ns: float = 0.0  # time within the stages that the NPU waits on PIM rather than computing

    @property
    def total_ns(self) -> float:
        return sum(self.stages) + self.p2p_ns * (len(self.stages) - 1)


def _sum_table(ops: dict[str, tuple[np.ndarray, np.ndarray]],
               repeats: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Operators summed on a common axis (the sum of interpolations is the interpolation of the sum)."""
    if not ops:
        return np.array([1.0]), np.array([0.0])
    axis = np.unique(np.concatenate([x for x, _ in ops.values()]))
    total = np.zeros(len(axis))
    for layer, (x, v) in ops.items():
        total += (repeats or {}).get(layer, 1) * interp1(x, v, axis)
    return axis, total


def pow2_bucket(n: int, smallest: int) -> int:
    """The compiled shape a padded runtime runs ``n`` at: the next power of two, at least ``smallest``."""
    return max(smallest, 1 << max(0, int(n) - 1).bit_length())


def stage_layers(num_layers: int, pp: int) -> list[int]:
    """Blocks per pipeline stage: an even split, the remainder on the stages before the last."""
    base, extra = divmod(num_layers, pp)
    parts = [base] * pp
    for i in range(extra):
        parts[-(i + 2) if pp > 1 else 0] += 1
    return parts


class IterationModel:
    """Per-step latency of one instance (one model replica at given TP/PP/EP degrees)."""

    def __init__(self, profile: LatencyProfile, model: ModelSpec, tp: int = 1, link: Link | None = None,
                 mem_bw_gbps: float = 0.0, skew_correction: bool = True, pp: int = 1,
                 ep_link: Link | None = None, pad_shapes: bool = False, pim=None, sub_batches: bool = False):
        self.pim = pim                    # PimAttention for decode attention offload, or None
        self.sub_batches = sub_batches    # sub-batch interleaving of NPU and PIM work
        self.profile = profile
        self.model = model
        self.tp = tp
        self.pp = pp
        self.pad_shapes = pad_shapes
        self.link = link
        self.ep_link = ep_link or link
        self.mem_bw = mem_bw_gbps
        self.skew = profile.skew if skew_correction else None
        self._rms_key = getattr(profile.attention, "prefill_key", "sum") == "rms"
        # the attention table at one batch shape over decode histories, where the skew correction reads it at
        # two or three (AttentionTable.section)
        self._section = getattr(profile.attention, "section", None) if self.skew is not None else None
        self.layers = model.num_layers
        self.stage_blocks = stage_layers(self.layers, pp)
        edge = EDGE_FIRST + EDGE_LAST
        block = {k: v for k, v in profile.dense.items() if k not in edge}
        self._tables = {  # kind -> (axis, summed ns): one lookup per kind and step
            "block": _sum_table(block, PER_BLOCK_REPEATS),
            "first": _sum_table({k: v for k, v in profile.dense.items() if k in EDGE_FIRST}),
            "last": _sum_table({k: v for k, v in profile.dense.items() if k in EDGE_LAST}),
            "seq": _sum_table(profile.per_sequence),
        }
        self._cols: dict[str, list[float]] = {kind: [0.0] for kind in self._tables}   # value at 0, 1, 2, ...
        self._allreduce: dict[int, float] = {}   # tokens -> ns
        self._moe_memo: dict[tuple, tuple[tuple[float, ...], int]] = {}
        # (tokens, ep, EP group tokens) -> the step's terms that depend on them only: a run steps at a few
        # thousand token counts, and looking each term up anew cost a method call apiece
        self._by_tokens: dict[tuple[int, int, int], tuple[float, float, float, float, float, float]] = {}
        self._hidden_bytes = model.hidden_size * DTYPE_BYTES[model.torch_dtype]

    def _lookup(self, kind: str, x: int) -> float:
        """The table of ``kind`` at ``x`` tokens (or sequences); 0 at 0."""
        col = self._cols[kind]
        if x >= len(col):   # one vectorised interpolation for a run of sizes, then list indexing
            col.extend(interp1(*self._tables[kind], np.arange(len(col), max(2 * len(col), x + 1, 256))).tolist())
        return col[x]

    def attention_ns(self, b: BatchShape) -> float:
        """One attention layer for the whole batch."""
        att = self.profile.attention
        n = b.num_decodes
        pc = b.prefill_rms if self._rms_key else b.prefill_tokens
        kp = b.prefill_history
        if self.skew is None:
            return att(pc, kp, n, b.decode_kv_mean)
        at = self._section(pc, kp, n) if self._section is not None else partial(att, pc, kp, n)
        t = at(b.decode_kv_mean)
        if n > 1 and b.decode_kv_max > b.decode_kv_mean:
            alpha = self.skew.alpha(pc, n, b.decode_kv_mean, b.decode_kv_min, b.decode_kv_max, kp)
            if alpha:
                t_max = at(b.decode_kv_max)
                if t_max > t:
                    # a batch of unequal lengths takes between all-shortest and all-longest time; the fitted
                    # alpha of a thinly sampled bucket (down to -735 in the bundles) would leave that range
                    t_skew = t + alpha * (t_max - t)
                    t = min(t_skew, t_max) if alpha > 0 else max(t_skew, at(b.decode_kv_min))
        return t

    def allreduce_ns(self, tokens: int) -> float:
        """One tensor-parallel all-reduce of the hidden state."""
        if self.tp <= 1 or self.link is None or tokens <= 0:
            return 0.0
        v = self._allreduce.get(tokens)
        if v is None:
            v = all_reduce_ns(self.link, self.tp, tokens * self._hidden_bytes, self.mem_bw)
            self._allreduce[tokens] = v
        return v

    def ep_comm_ns(self, group_tokens: int, ep: int) -> float:
        """Dispatch (all-gather of hidden + router logits) and combine (reduce-scatter) of one MoE block."""
        if ep <= 1 or self.ep_link is None or group_tokens <= 0:
            return 0.0
        b = DTYPE_BYTES[self.model.torch_dtype]
        h, E = self.model.hidden_size, self.model.num_experts
        return (all_gather_ns(self.ep_link, ep, group_tokens * (h + E) * b)
                + reduce_scatter_ns(self.ep_link, ep, group_tokens * h * b, self.mem_bw))

    MOE_MEMO_SIZE = 4096

    def moe_stages(self, routing) -> tuple[tuple[float, ...], int]:
        """The MoE time of each pipeline stage's blocks under ``routing``, and the EP degree.

        Memoised by the routing's contents: a balanced gate routes a token count alike every step, and the
        lookup behind it (interpolations, a max over ranks, a sum per stage) cost more than the rest of the step.
        """
        key = (routing.repeat, routing.top_k, routing.local_tokens.shape, routing.expert_tokens.tobytes(),
               routing.local_tokens.tobytes(), routing.activated.tobytes())
        hit = self._moe_memo.get(key)
        if hit is None:
            per_rank = self.profile.moe(routing)                       # [G, ep]
            layers = np.repeat(per_rank.max(axis=1), routing.repeat)[:self.layers]
            stages, start = [], 0
            for nb in self.stage_blocks:
                stages.append(float(layers[start:start + nb].sum()))
                start += nb
            if len(self._moe_memo) >= self.MOE_MEMO_SIZE:   # a sampled gate rarely routes alike twice
                self._moe_memo.clear()
            hit = self._moe_memo[key] = (tuple(stages), routing.local_tokens.shape[1])
        return hit

    def offloaded_step(self, halves: list[tuple[BatchShape, np.ndarray]]) -> StepTime:
        """A step whose decode attention runs on PIM channels (``self.pim``), one layer at a time.

        ``halves`` is the whole batch, or its two sub-batches under sub-batch interleaving: each a
        shape and the KV lengths of its decodes. Per layer the NPU runs a sub-batch's
        token-parallel operators and prefill attention, then PIM runs its decode attention; with
        two sub-batches the NPU works on one while PIM works on the other. NPU and PIM are each
        one resource that serves the sub-batches in order.
        """
        gpu, pim, busy = [], [], 0.0
        for b, kv in halves:
            g = self._lookup("block", b.num_tokens)
            if b.prefill_tokens:   # prefill attention stays on the NPU
                g += self.attention_ns(replace(b, num_decodes=0, decode_kv_mean=0.0, decode_kv_min=0.0,
                                               decode_kv_max=0.0))
            gpu.append(g + 2 * self.allreduce_ns(b.num_tokens))
            span, channel_time = self.pim.layer_time(kv) if len(kv) else (0.0, 0.0)
            pim.append(span)
            busy += channel_time
        gpu_free = pim_free = 0.0
        ready = [0.0] * len(halves)      # when each sub-batch's previous attention finished
        for _ in range(self.layers):
            for i in range(len(halves)):
                gpu_free = max(gpu_free, ready[i]) + gpu[i]
                pim_free = max(pim_free, gpu_free) + pim[i]
                ready[i] = pim_free
        edges = sum(self._lookup("first", b.num_tokens) + self._lookup("last", b.num_tokens)
                    + self._lookup("seq", b.num_seqs) for b, _ in halves)
        total = max(ready) + edges
        comm = self.layers * sum(2 * self.allreduce_ns(b.num_tokens) for b, _ in halves)
        wire = sum(self.wire_bytes(b.num_tokens, b.num_tokens, 1, 2) for b, _ in halves)
        wait = total - edges - self.layers * sum(gpu)
        return StepTime(total - comm, comm, self.layers * sum(pim), 0.0, (total,), 0.0, wire, busy * self.layers,
                        wait)

    def wire_bytes(self, tokens: int, ep_group_tokens: int, ep: int, dense_reductions: int) -> float:
        """Bytes on the wire per step, as the ring algorithms move them: ``2 (N-1)/N x S`` per
        all-reduce, ``(N-1)/N x S`` per all-gather or reduce-scatter, ``S`` per stage hand-over."""
        if self.tp <= 1 and ep <= 1 and self.pp <= 1:   # one device: nothing on the wire
            return 0.0
        b = DTYPE_BYTES[self.model.torch_dtype]
        h = self.model.hidden_size
        L = self.layers
        out = 0.0
        if self.tp > 1:
            out += L * dense_reductions * 2 * (self.tp - 1) / self.tp * tokens * h * b
        if ep > 1:
            s = ep_group_tokens * ((h + self.model.num_experts) * b + h * b)
            out += L * (ep - 1) / ep * s
        if self.pp > 1:
            out += (self.pp - 1) * tokens * h * b
        return out

    def p2p_ns(self, tokens: int) -> float:
        if self.pp <= 1 or self.link is None:
            return 0.0
        return self.link.transfer_ns(tokens * self._hidden_bytes)

    def step(self, b: BatchShape, padded_tokens: int | None = None, routing=None,
             ep_group_tokens: int | None = None) -> StepTime:
        """``padded_tokens``: the token count a lockstep group runs at; ``routing``: this step's
        MoE routing (:mod:`llmss_lab.kernel.moe`); ``ep_group_tokens``: tokens across the EP group."""
        T = padded_tokens or b.num_tokens
        seqs = b.num_seqs
        if self.pad_shapes:
            T, seqs = pow2_bucket(T, 16), pow2_bucket(seqs, 8)
        L = self.layers
        attn = self.attention_ns(b)
        moe = None
        ep = 1
        if routing is not None and self.profile.moe is not None:
            moe, ep = self.moe_stages(routing)
        key = (T, ep, ep_group_tokens or T)
        by_tokens = self._by_tokens.get(key)
        if by_tokens is None:
            by_tokens = self._by_tokens[key] = self._token_terms(*key)
        block_table, block_comm, first, last_table, wire, p2p = by_tokens
        block = block_table + attn
        last = last_table + self._lookup("seq", seqs)
        stages = []
        moe_total = 0.0
        for s, nb in enumerate(self.stage_blocks):
            t = nb * (block + block_comm)
            if moe is not None:
                t += moe[s]
                moe_total += moe[s]
            if s == 0:
                t += first
            if s == self.pp - 1:
                t += last
            stages.append(t)
        comm = L * block_comm
        compute = sum(stages) - comm
        return StepTime(compute, comm, L * attn, moe_total, tuple(stages), p2p, wire)

    def _token_terms(self, T: int, ep: int, group_tokens: int) -> tuple[float, float, float, float, float, float]:
        """What a step at ``T`` tokens costs beyond attention, MoE and the sequences' LM head: the block table,
        the collectives of one block, the first and last layers, the bytes on the wire, the stage hand-over."""
        ar = self.allreduce_ns(T)
        if ep > 1:   # attention all-reduce, then expert dispatch and combine
            block_comm = ar + self.ep_comm_ns(group_tokens, ep)
        else:
            block_comm = 2 * ar
        return (self._lookup("block", T), block_comm, self._lookup("first", T), self._lookup("last", T),
                self.wire_bytes(T, group_tokens, ep, 1 if ep > 1 else 2), self.p2p_ns(T))
