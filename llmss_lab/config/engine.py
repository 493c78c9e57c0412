"""Engine settings, named as vLLM names them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable

from ..errors import InputError
from .model import DTYPE_BYTES
from .reader import closest, store_plain

MAX_KV_BLOCKS = 1 << 22   # ~4M blocks: far above any GPU's KV cache; the kernel keeps list entries per block


@dataclass(frozen=True)
class EngineConfig:
    """What ``vllm serve`` would be given. ``0`` means unlimited where vLLM allows it.

    ``gpu_memory_utilization`` sizes the KV cache as in vLLM (memory x utilisation - weights);
    ``num_gpu_blocks`` overrides that with an explicit block count (vLLM's
    ``num_gpu_blocks_override``). ``reserve_full_isl`` admits a waiting request only when its
    whole current sequence fits in free blocks, which keeps admissions from causing preemptions.
    ``async_scheduling`` schedules each step while the one before it runs (vLLM's
    ``--async-scheduling``, on by default from vLLM 0.14; off with pipeline parallelism).
    """

    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    max_model_len: int | None = None
    reserve_full_isl: bool = True
    async_scheduling: bool = False
    dtype: str | None = None
    kv_cache_dtype: str = "auto"
    scheduler: str = "vllm_v1"
    eviction: str = "lru"

    def __post_init__(self) -> None:
        store_plain(self)
        self.validate()

    def validate(self, source: str | None = "engine settings") -> None:
        def bad(key: str, msg: str) -> InputError:
            return InputError(msg, source, key)

        for key in ("max_num_seqs", "max_num_batched_tokens", "long_prefill_token_threshold"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(key, f"must be a whole number >= 0, got {v!r}")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size <= 0:
            raise bad("block_size", f"must be a whole number > 0, got {self.block_size!r}")
        if 0 < self.max_num_batched_tokens < self.max_num_seqs:   # vLLM refuses it: every sequence takes a token
            raise bad("max_num_batched_tokens", f"{self.max_num_batched_tokens} is less than max_num_seqs "
                      f"{self.max_num_seqs}, which vLLM refuses (each running sequence takes a token of the step); "
                      "raise it or lower max_num_seqs")
        u = self.gpu_memory_utilization
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
            raise bad("gpu_memory_utilization", f"must be in (0, 1], got {u!r}")
        n = self.num_gpu_blocks
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_KV_BLOCKS):
            raise bad("num_gpu_blocks", f"must be a whole number from 1 to {MAX_KV_BLOCKS}, got {n!r}")
        if self.max_model_len is not None and (isinstance(self.max_model_len, bool) or not isinstance(self.max_model_len, int)
                                               or self.max_model_len <= 0):
            raise bad("max_model_len", f"must be a whole number > 0, got {self.max_model_len!r}")
        for key in ("enable_prefix_caching", "enable_chunked_prefill", "reserve_full_isl", "async_scheduling"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, f"expected true or false, got {getattr(self, key)!r}")
        if self.dtype is not None and (not isinstance(self.dtype, str) or self.dtype not in DTYPE_BYTES):
            raise bad("dtype", f"must be one of {sorted(DTYPE_BYTES)} (or unset: the model's own), got {self.dtype!r}")
        if not isinstance(self.kv_cache_dtype, str) or self.kv_cache_dtype not in ("auto", "fp8"):
            raise bad("kv_cache_dtype", f"must be 'auto' or 'fp8', got {self.kv_cache_dtype!r}")

    def with_overrides(self, overrides: dict[str, Any], source: str | None = None,
                       key: Callable[[str], str] = str) -> EngineConfig:
        """A copy with ``overrides``; an error names ``source`` and ``key(name)`` (a flag, a key path)."""
        known = {f.name for f in fields(self)}
        for k in overrides:
            if not isinstance(k, str):
                raise InputError(f"setting names are text, got {k!r}", source, "engine")
            if k not in known:
                hint = closest(k, known)
                raise InputError("unknown engine setting" + (f" (did you mean {hint!r}?)" if hint else ""), source, key(k))
        try:
            return replace(self, **{k: v for k, v in overrides.items() if v is not None})
        except InputError as e:   # raised by __post_init__, which cannot know where the value came from
            raise InputError(e.message, source, key(e.where or "")) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

