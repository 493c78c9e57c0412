"""Operator shapes of a transformer step, derived from the model's Hugging Face config (never stored):
the FLOPs and the bytes each operator of one layer moves on one tensor-parallel rank, for a batch.

These are the inputs of the analytical (roofline) latency model for hardware without a profile.
Conventions: a multiply-add is 2 FLOPs; bytes are what the operator reads and writes in device memory
(weights once per step, activations in and out, the KV cache it reads and writes); ``dtype_bytes`` is
the width of weights, activations and KV (2 for BF16). Attention is causal: a prefill chunk of ``c``
new tokens over ``k`` cached ones scores ``c*k + c*(c+1)/2`` query-key pairs; a decode over ``L``
cached tokens scores ``L + 1``. Column-parallel GEMMs (QKV, gate/up) and row-parallel ones (O, down)
split their weights over the ``tp`` ranks; attention splits its heads; the vocabulary-parallel LM
head and embedding split the vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.model import ModelSpec
from ..errors import InputError

ELEMENTWISE_FLOPS = {"rms_norm": 4, "rotary_emb": 3, "act_fn": 5}   # per element, order of magnitude
QUERY_BLOCK = 128   # query rows per tile of FlashAttention's varlen forward kernel (at head_dim 128; used for all)


@dataclass(frozen=True)
class OpCost:
    """One operator of one layer on one rank: FLOPs and bytes moved (weights, activations, KV)."""
    name: str
    flops: float
    weight_bytes: float
    act_bytes: float
    kv_bytes: float = 0.0

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.act_bytes + self.kv_bytes

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved: where the operator sits against a roofline."""
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass(frozen=True)
class DecodeTiles:
    """The decodes of a mixed prefill+decode batch as FlashAttention's varlen kernel runs them. The grid
    has one tile per (query block of the longest query, sequence, query head): a decode's one query row
    fills the first block, the rest exit empty. Unlike a decode-only batch, query heads are not packed
    per KV head and the KV is not split, so each tile streams its sequence's whole K and V alone."""
    seqs: float          # decode sequences
    heads: int           # query heads per rank: tiles per sequence and query block
    group: int           # query heads per KV head, which may share their K and V reads in cache
    kv: float            # cached tokens each tile streams
    blocks: int          # query blocks per (sequence, head): those of the prefill chunk
    token_bytes: float   # K and V bytes of one token of one head (also a query row in and its output out)

    @property
    def tiles(self) -> float:
        return self.seqs * self.heads

    @property
    def nbytes(self) -> float:
        """What the decodes move: each sequence's K and V of every KV head, its new token's written, its query rows
        in and output rows out (the bytes of :meth:`Shapes.attention_decode`)."""
        return self.seqs * self.token_bytes * (self.heads / self.group * (self.kv + 1) + self.heads)


@dataclass(frozen=True)
class ChunkTiles:
    """A prefill chunk as FlashAttention's varlen kernel runs it: one tile per (128-row query block, query head),
    whatever rows of the block are filled, each scoring its rows against every key it may see (causal: the
    history, and the chunk up to its block's end). Fields may be arrays (the fit takes every sample at once)."""
    heads: int           # query heads per rank: tiles per query block
    chunk: float         # new tokens (the step's chunks summed: one query)
    history: float       # cached tokens before them
    head_dim: int
    flops: float         # the chunk's work and bytes (:meth:`Shapes.attention_prefill`)
    nbytes: float

    @property
    def blocks(self):
        return np.maximum(np.ceil(np.asarray(self.chunk) / QUERY_BLOCK), 1.0)

    def keys(self, block):
        """Keys the ``block``-th query block counted from the chunk's end sees (0: the last block, every key)."""
        return self.history + np.minimum(self.chunk, QUERY_BLOCK * (self.blocks - block))


class Shapes:
    """Per-rank operator costs of a model at a tensor-parallel degree."""

    def __init__(self, model: ModelSpec, tp: int = 1, dtype_bytes: int = 2):
        if tp < 1 or model.num_heads % tp or model.num_kv_heads % tp and tp % model.num_kv_heads:
            raise InputError(f"tp {tp} does not split the model's {model.num_heads} heads / "
                             f"{model.num_kv_heads} KV heads", model.source or model.name, "tp")
        self.m, self.tp, self.b = model, tp, dtype_bytes
        self.h = model.hidden_size
        self.hd = model.head_dim
        self.q_heads = model.num_heads // tp
        self.kv_heads = max(1, model.num_kv_heads // tp)   # replicated when tp > KV heads
        self.ffn = model.intermediate_size // tp
        self.vocab = -(-model.vocab_size // tp)

    def gemm(self, name: str, tokens: int, k: int, n: int) -> OpCost:
        """[tokens, k] x [k, n]: weights k*n, activations in and out."""
        b = self.b
        return OpCost(name, 2.0 * tokens * k * n, float(k * n * b), 1.0 * tokens * (k + n) * b)

    def qkv_proj(self, tokens: int) -> OpCost:
        return self.gemm("qkv_proj", tokens, self.h, (self.q_heads + 2 * self.kv_heads) * self.hd)

    # the same projections unfused, as an eager stack runs them (the paper artifact's HF model): a GEMM each
    def q_proj(self, tokens: int) -> OpCost:
        return self.gemm("q_proj", tokens, self.h, self.q_heads * self.hd)

    def k_proj(self, tokens: int) -> OpCost:
        return self.gemm("k_proj", tokens, self.h, self.kv_heads * self.hd)

    def v_proj(self, tokens: int) -> OpCost:
        return self.gemm("v_proj", tokens, self.h, self.kv_heads * self.hd)

    def o_proj(self, tokens: int) -> OpCost:
        return self.gemm("o_proj", tokens, self.q_heads * self.hd, self.h)

    def gate_up_proj(self, tokens: int) -> OpCost:
        return self.gemm("gate_up_proj", tokens, self.h, 2 * self.ffn)

    def gate_proj(self, tokens: int) -> OpCost:
        return self.gemm("gate_proj", tokens, self.h, self.ffn)

    def up_proj(self, tokens: int) -> OpCost:
        return self.gemm("up_proj", tokens, self.h, self.ffn)

    def down_proj(self, tokens: int) -> OpCost:
        return self.gemm("down_proj", tokens, self.ffn, self.h)

    def act_fn(self, tokens: int) -> OpCost:
        """SiLU(gate) * up: reads both halves, writes one."""
        return OpCost("act_fn", ELEMENTWISE_FLOPS["act_fn"] * tokens * self.ffn, 0.0, 3.0 * tokens * self.ffn * self.b)

    def rms_norm(self, tokens: int) -> OpCost:
        return OpCost("rms_norm", ELEMENTWISE_FLOPS["rms_norm"] * tokens * self.h, float(self.h * self.b),
                      2.0 * tokens * self.h * self.b)

    def layer_norm(self, tokens: int) -> OpCost:
        """A LayerNorm's traffic is an RMSNorm's (its bias is ``hidden`` more weights, its mean a few more FLOPs)."""
        return self.rms_norm(tokens)

    def qk_norm(self, tokens: int) -> OpCost:
        """The RMSNorm of each query and key head (Qwen3), with a weight of ``head_dim`` for each of the two."""
        elems = tokens * (self.q_heads + self.kv_heads) * self.hd
        return OpCost("qk_norm", ELEMENTWISE_FLOPS["rms_norm"] * elems, float(2 * self.hd * self.b), 2.0 * elems * self.b)

    def rotary_emb(self, tokens: int) -> OpCost:
        elems = tokens * (self.q_heads + self.kv_heads) * self.hd
        return OpCost("rotary_emb", ELEMENTWISE_FLOPS["rotary_emb"] * elems, 0.0, 2.0 * elems * self.b)

    def embedding(self, tokens: int) -> OpCost:
        """A row gather from this rank's slice of the vocabulary, then the all-reduce assembles it."""
        return OpCost("embedding", 0.0, 0.0, 2.0 * tokens * self.h * self.b)

    def attention_prefill(self, chunk: int, history: int) -> OpCost:
        """One sequence's prefill chunk over its cached tokens (causal)."""
        pairs = chunk * history + chunk * (chunk + 1) / 2
        b, hd = self.b, self.hd
        kv_read = (history + chunk) * 2 * self.kv_heads * hd * b
        kv_write = chunk * 2 * self.kv_heads * hd * b
        qo = 2 * chunk * self.q_heads * hd * b
        return OpCost("attention_prefill", 4.0 * pairs * hd * self.q_heads, 0.0, float(qo), float(kv_read + kv_write))

    def chunk_tiles(self, chunk: float, history: float) -> ChunkTiles:
        """A prefill chunk of ``chunk`` tokens over ``history`` cached ones, as the varlen kernel's tiles."""
        c = self.attention_prefill(chunk, history)
        return ChunkTiles(self.q_heads, chunk, history, self.hd, c.flops, c.bytes)

    def attention_decode(self, kv_len: int) -> OpCost:
        """One sequence's decode token over ``kv_len`` cached tokens."""
        b, hd = self.b, self.hd
        kv_read = kv_len * 2 * self.kv_heads * hd * b
        kv_write = 2 * self.kv_heads * hd * b
        return OpCost("attention_decode", 4.0 * (kv_len + 1) * hd * self.q_heads, 0.0, 2.0 * self.q_heads * hd * b,
                      float(kv_read + kv_write))

    def decode_tiles(self, seqs: float, kv_len: float, chunk: float) -> DecodeTiles:
        """``seqs`` decodes over ``kv_len`` cached tokens each, sharing a step with a prefill chunk of ``chunk``
        tokens, the longest query (the kernel hands over a step's chunks summed: an upper bound)."""
        return DecodeTiles(seqs, self.q_heads, max(1, self.q_heads // self.kv_heads), kv_len,
                           max(1, -(-int(chunk) // QUERY_BLOCK)), 2.0 * self.hd * self.b)

    def lm_head(self, sequences: int) -> OpCost:
        """Logits of the sampled rows only (one per sequence), over this rank's vocabulary slice."""
        return self.gemm("lm_head", sequences, self.h, self.vocab)

    def sampler(self, sequences: int) -> OpCost:
        """Softmax and sampling over the full vocabulary in FP32."""
        v = self.m.vocab_size
        return OpCost("sampler", 5.0 * sequences * v, 0.0, 2.0 * sequences * v * 4)

    def router(self, tokens) -> OpCost:
        """The MoE router's logits, [tokens, hidden] x [hidden, E], on every rank (its weights are not split). Its
        softmax and top-k over the E logits per token are a few FLOPs and bytes each: what they cost is their
        kernels' launches, which the router's own fitted curve carries (``artifact/router``)."""
        m = self.m
        if not m.is_moe:
            raise InputError("not a mixture-of-experts model", m.source or m.name, "num_experts")
        return self.gemm("router", tokens, self.h, m.num_experts)

    def moe_experts(self, tokens, activated, pairs=None) -> OpCost:
        """The routed MLP as one fused kernel (vLLM's): ``pairs`` token-expert passes (gate, up, down of
        ``moe_intermediate_size``; ``tokens`` x top-k when not given) over ``activated`` distinct experts'
        weights, plus the router's FLOPs and weights (its input is the experts' own). Arguments may be
        arrays (one cost per EP rank)."""
        m = self.m
        r = self.router(tokens)
        inter, b = m.moe_intermediate_size // self.tp, self.b
        pairs = tokens * m.experts_per_token if pairs is None else pairs
        flops = 2.0 * pairs * 3 * self.h * inter + r.flops
        weights = activated * 3 * self.h * inter * b + r.weight_bytes
        acts = pairs * (2 * self.h + 3 * inter) * b
        return OpCost("moe_experts", flops, weights, acts)

    def layer(self, tokens: int) -> list[OpCost]:
        """The token-parallel operators of one decoder layer for a batch of ``tokens`` (no attention core)."""
        ops = [self.rms_norm(tokens), self.qkv_proj(tokens), self.rotary_emb(tokens), self.o_proj(tokens),
               self.rms_norm(tokens)]
        if self.m.qk_norm:
            ops.append(self.qk_norm(tokens))
        if not self.m.is_moe:
            ops += [self.gate_up_proj(tokens), self.act_fn(tokens), self.down_proj(tokens)]
        return ops

    def weight_bytes_per_rank(self) -> float:
        """Every weight one rank holds: layers, embedding and LM head (a cross-check with ModelSpec)."""
        layer = sum(op.weight_bytes for op in self.layer(1))
        if self.m.is_moe:
            layer += self.moe_experts(1, self.m.num_experts).weight_bytes
        vocab = self.vocab * self.h * self.b
        head = 0 if self.m.tie_word_embeddings else vocab
        return layer * self.m.num_layers + vocab + head + self.h * self.b
