"""Model facts from a Hugging Face ``config.json``, and the sizes derived from them.

Sizes follow from the architecture alone (parameter shapes sharded the way vLLM shards them):
column-parallel QKV and gate/up, row-parallel O and down, vocab-parallel embedding and LM head,
replicated norms; KV heads are split across tensor-parallel ranks and layers across pipeline stages.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .reader import Section, read_json

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "int8": 1}
GIB = 1024**3
MAX_CONTEXT = 100_000_000
# every count and dimension of a config (released models reach 262k vocabularies, 16k hidden sizes, 384 experts);
# 1e308 heads overflowed the weight size into a traceback
MAX_SIZE = 1 << 22
# The decoders whose layers the kit's operators describe: RMSNorm (phimoe: LayerNorm), rotary attention with grouped
# KV heads, a gated MLP or experts of gated MLPs. Another model_type runs as one of them, which may not be what it is.
DECODERS = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "phimoe")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a decoder read from its Hugging Face ``config.json`` (``from_hf_config``): what the weight and
    KV sizes per rank and the analytical model's FLOPs and bytes are derived from."""

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    torch_dtype: str = "bfloat16"
    tie_word_embeddings: bool = False
    qk_norm: bool = False
    layer_norm: bool = False     # its norms are LayerNorm (one kernel), not RMSNorm (several kernels in eager HF)
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    source: str = ""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> ModelSpec:
        s = Section.of(read_json(path), path)
        size = functools.partial(s.integer, maximum=MAX_SIZE)
        hidden = size("hidden_size", minimum=1)
        heads = size("num_attention_heads", minimum=1)
        kv_heads = size("num_key_value_heads", required=False, default=heads, minimum=1)
        if heads % kv_heads:
            raise s.error("num_key_value_heads", f"{kv_heads} does not divide num_attention_heads {heads}")
        head_dim = size("head_dim", required=False, default=None, minimum=1)
        if head_dim is None:
            if hidden % heads:
                raise s.error("head_dim", "missing and hidden_size is not a multiple of num_attention_heads")
            head_dim = hidden // heads
        num_experts = size("num_local_experts", required=False, default=None, minimum=0)
        if num_experts is None:
            num_experts = size("num_experts", required=False, default=0, minimum=0)
        experts_per_token = size("num_experts_per_tok", required=False, default=0, minimum=0)
        if num_experts and not experts_per_token:
            raise s.error("num_experts_per_tok", "missing for a mixture-of-experts model")
        if experts_per_token > num_experts:
            raise s.error("num_experts_per_tok", f"{experts_per_token} is more than the model's {num_experts} experts"
                          if num_experts else f"{experts_per_token} for a model without experts (no num_experts)")
        model_type = s.string("model_type")
        if model_type not in DECODERS:
            _say_other_architecture(str(path), model_type)
        dtype = s.string("torch_dtype", required=False, default="bfloat16")
        if dtype not in DTYPE_BYTES:
            raise s.error("torch_dtype", f"unsupported dtype {dtype!r}; known: {sorted(DTYPE_BYTES)}")
        return cls(
            name=name or Path(path).stem,
            model_type=model_type,
            hidden_size=hidden,
            num_layers=size("num_hidden_layers", minimum=1),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate_size=size("intermediate_size", minimum=1),
            vocab_size=size("vocab_size", minimum=1),
            # the longest context of any released model is 10M tokens; 10**12 would be a slip, allowing such requests
            max_position_embeddings=size("max_position_embeddings", minimum=1, maximum=MAX_CONTEXT),
            torch_dtype=dtype,
            tie_word_embeddings=s.boolean("tie_word_embeddings", required=False, default=False),
            qk_norm=model_type.startswith("qwen3"),
            layer_norm=model_type == "phimoe",
            num_experts=num_experts,
            experts_per_token=experts_per_token,
            # Mixtral-style configs size their experts with intermediate_size (no moe_intermediate_size)
            moe_intermediate_size=size("moe_intermediate_size", required=False, minimum=0,
                                       default=size("intermediate_size") if num_experts else 0),
            source=str(path),
        )

    # ---- derived sizes -------------------------------------------------------------------------
    def check_parallelism(self, tp: int, pp: int = 1, source: str | None = None, where: str = "") -> None:
        """vLLM needs heads (and KV heads, or replicates them) to split evenly across TP ranks.
        ``where`` is the instance's key path in the cluster config, for the error."""
        prefix = f"{where}." if where else ""
        if self.num_heads % tp:
            raise InputError(f"tp_size {tp} does not divide the model's {self.num_heads} attention heads",
                             source, f"{prefix}tp_size")
        if pp > self.num_layers:
            raise InputError(f"pp_size {pp} exceeds the model's {self.num_layers} layers", source,
                             f"{prefix}pp_size")

    def kv_heads_per_rank(self, tp: int) -> int:
        # vLLM replicates KV heads when tp exceeds them, so each rank keeps at least one.
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token(self, tp: int = 1, pp: int = 1, kv_dtype_bytes: int | None = None) -> int:
        """K and V of one token on one rank (its share of KV heads and of layers)."""
        b = kv_dtype_bytes or DTYPE_BYTES[self.torch_dtype]
        layers_per_stage = -(-self.num_layers // pp)
        return 2 * self.kv_heads_per_rank(tp) * self.head_dim * layers_per_stage * b

    def weight_parts(self, tp: int = 1, ep: int = 1, dtype_bytes: int | None = None) -> dict[str, int]:
        """Bytes one rank holds of the embedding, of one transformer block, of the final norm and
        of the LM head (zero when tied to the embedding)."""
        b = dtype_bytes or DTYPE_BYTES[self.torch_dtype]
        h, hd = self.hidden_size, self.head_dim
        q = self.num_heads * hd // tp
        kv = self.kv_heads_per_rank(tp) * hd
        vocab = -(-self.vocab_size // tp)
        block = 2 * h + h * (q + 2 * kv) + q * h
        if self.qk_norm:
            block += 2 * hd
        if self.is_moe:
            local_experts = -(-self.num_experts // ep)
            block += h * self.num_experts + local_experts * 3 * h * self.moe_intermediate_size
        else:
            block += 3 * h * (self.intermediate_size // tp)
        return {"embedding": vocab * h * b, "block": block * b, "final_layernorm": h * b,
                "lm_head": 0 if self.tie_word_embeddings else vocab * h * b}

    def weight_bytes_per_rank(self, tp: int = 1, pp: int = 1, ep: int = 1, dtype_bytes: int | None = None) -> int:
        """Parameters held by one rank: the first pipeline stage's share, which is the largest."""
        w = self.weight_parts(tp, ep, dtype_bytes)
        layers = -(-self.num_layers // pp)
        return w["embedding"] + layers * w["block"] + w["final_layernorm"] + w["lm_head"]

    def runtime_buffer_bytes(self, dtype_bytes: int | None = None) -> int:
        """Model buffers besides the parameters: vLLM keeps a rotary cos/sin table of
        ``max_position_embeddings x head_dim`` values in the model dtype on every rank."""
        return self.max_position_embeddings * self.head_dim * (dtype_bytes or DTYPE_BYTES[self.torch_dtype])


@functools.lru_cache(maxsize=None)
def _say_other_architecture(path: str, model_type: str) -> None:
    """Once per config and process (a sweep reads it for every point)."""
    log.warning("%s: model_type %r is not one of the decoders the kit models (%s); it runs as a llama-style "
                "decoder (RMSNorm, rotary attention, gated MLP), which may not be its architecture", path, model_type,
                ", ".join(DECODERS))
