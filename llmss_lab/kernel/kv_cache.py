"""Paged KV cache with prefix caching, as vLLM V1 manages it.

The pool holds ``num_blocks`` blocks of ``block_size`` tokens. A request owns a list of blocks
covering its computed tokens. With prefix caching, every full block is indexed by a chained hash
of its tokens (``h_i = hash((h_{i-1}, tokens of block i))``), so a later request with the same
prefix can reuse it. Freed blocks keep their hash and stay reusable until the eviction policy
hands them out again; blocks are freed last-block-first so a prefix outlives its tail.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from .registry import Registry
from .tiers import CHUNK_TOKENS, PrefixPool

EVICTION = Registry["EvictionPolicy"]("eviction policy")
HASH_SEED = 0x51ED270B  # any constant: the chain only needs to be deterministic


def chain_hashes(token_ids: Sequence[int], block_size: int, prev: int = HASH_SEED, first: int = 0,
                 stop: int | None = None) -> list[int]:
    """Chained hashes of the full blocks ``first .. stop`` of ``token_ids`` (``prev`` = the hash before)."""
    last = len(token_ids) // block_size if stop is None else stop
    out = []
    for i in range(first, last):
        prev = hash((prev, tuple(token_ids[i * block_size:(i + 1) * block_size])))
        out.append(prev)
    return out


def extend_chain(hs: list[int], token_ids: Sequence[int] | None, size: int, rid: int, n: int) -> list[int]:
    """A request's chained hashes ``hs`` of ``size``-token pieces, extended to ``n`` pieces in place.

    Pieces past the known token ids (generated tokens the trace does not list) hash unique to the
    request, so they can only be found again by the request itself.
    """
    if len(hs) >= n:
        return hs
    known = len(token_ids) // size if token_ids is not None else 0
    if len(hs) < min(known, n):
        hs.extend(chain_hashes(token_ids, size, hs[-1] if hs else HASH_SEED, len(hs), min(known, n)))
    prev = hs[-1] if hs else HASH_SEED
    for i in range(len(hs), n):
        prev = hash((prev, -1, rid, i))
        hs.append(prev)
    return hs


class EvictionPolicy:
    """Order of the free blocks: which free (possibly cached) block is reused next."""

    name = "base"

    def __len__(self) -> int: ...
    def push(self, block: int) -> None: ...
    def take(self, k: int) -> list[int]: ...
    def remove(self, block: int) -> None: ...


@EVICTION.register("lru")
class LRUEviction(EvictionPolicy):
    """Least recently freed first: vLLM's free-block queue.

    The blocks never handed out yet come first, in order, and stay a ``range``: they need no queue
    entry each (a pool has tens of thousands of blocks), and while they last a step's new blocks
    are a slice of it.
    """

    def __init__(self, blocks: range):
        self._fresh = blocks                           # never handed out: ahead of every freed block
        self._q: OrderedDict[int, None] = OrderedDict()   # freed blocks, least recently freed first

    def __len__(self) -> int:
        return len(self._fresh) + len(self._q)

    def push(self, block: int) -> None:
        self._q[block] = None

    def take(self, k: int) -> list[int]:
        """The next ``k`` blocks to reuse, in order (the caller checked that ``k`` are free)."""
        fresh = self._fresh
        n = min(k, len(fresh))
        out = list(fresh[:n])
        self._fresh = fresh[n:]
        if n < k:
            pop = self._q.popitem
            out.extend(pop(last=False)[0] for _ in range(k - n))
        return out

    def remove(self, block: int) -> None:
        del self._q[block]   # a cached block: it was handed out before, so it is not a fresh one


@EVICTION.register("mru")
class MRUEviction(LRUEviction):
    """Most recently freed first: keeps old prefixes, sacrifices the newest (for experiments)."""

    def take(self, k: int) -> list[int]:
        pop = self._q.popitem
        out = [pop(last=True)[0] for _ in range(min(k, len(self._q)))]
        n = k - len(out)
        if n:   # then the fresh blocks, from the top
            split = len(self._fresh) - n
            out.extend(reversed(self._fresh[split:]))
            self._fresh = self._fresh[:split]
        return out


class BlockPool:
    def __init__(self, num_blocks: int, eviction: str = "lru"):
        self.num_blocks = num_blocks
        self.free = EVICTION.get(eviction, "eviction")(range(num_blocks))
        self.ref = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}   # hash -> block
        self.evictions = 0
        self.free_cached = 0               # free blocks that still hold a cached prefix

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_holding(self) -> int:
        """Blocks whose memory holds KV: in use, or free but still cached."""
        return self.num_blocks - len(self.free) + self.free_cached

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self.free)

    def allocate(self, k: int) -> list[int]:
        out = self.free.take(k)
        ref, block_hash = self.ref, self.block_hash
        for b in out:
            h = block_hash[b]
            if h is not None:  # reusing a cached block evicts its contents
                del self.cached[h]
                block_hash[b] = None
                self.evictions += 1
                self.free_cached -= 1
            ref[b] = 1
        return out

    def touch(self, blocks: Sequence[int]) -> None:
        """Take a reference on cached blocks found by a prefix lookup."""
        for b in blocks:
            if self.ref[b] == 0:
                self.free.remove(b)
                self.free_cached -= 1 if self.block_hash[b] is not None else 0
            self.ref[b] += 1

    def release(self, blocks: Sequence[int]) -> None:
        """Drop a request's references, tail first, so its prefix is evicted last."""
        for b in reversed(blocks):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.free.push(b)
                if self.block_hash[b] is not None:
                    self.free_cached += 1


class KVCacheManager:
    """Per-request block tables over one pool, with prefix caching when enabled."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool, eviction: str = "lru",
                 lower: PrefixPool | None = None):
        self.pool = BlockPool(num_blocks, eviction)
        self.lower = lower                       # a prefix pool in CPU or CXL memory, if any
        self.chunk_blocks = CHUNK_TOKENS // block_size
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.blocks: dict[int, list[int]] = {}
        self.num_cached: dict[int, int] = {}
        self._hashes: dict[int, list[int]] = {}
        self._chunks: dict[int, list[int]] = {}   # lower-pool chunk keys (chunk_keys)
        self._token_ids: dict[int, Sequence[int] | None] = {}
        self.queries = 0   # prompt tokens looked up
        self.hits = 0      # of which found cached
        self.to_store: list[int] = []   # chunk keys the step being scheduled completes: written through when it ends

    def register(self, rid: int, token_ids: Sequence[int] | None, num_tokens: int = 0) -> None:
        self._token_ids[rid] = token_ids
        self.blocks[rid] = []
        self.num_cached[rid] = 0
        if self.prefix_caching and num_tokens:
            self.block_hashes(rid, num_tokens // self.block_size)

    def block_hashes(self, rid: int, n_blocks: int) -> list[int]:
        """The request's chained block hashes, extended to ``n_blocks`` full blocks."""
        return extend_chain(self._hashes.setdefault(rid, []), self._token_ids.get(rid), self.block_size, rid, n_blocks)

    def chunk_keys(self, rid: int, n_chunks: int) -> list[int]:
        """The request's lower-pool chunk keys, extended to ``n_chunks`` chunks: chained hashes of the tokens of
        each 256-token chunk, as LMCache keys its chunks (``ChunkedTokenDatabase`` in lmcache/v1/token_database.py),
        so that instances with different block sizes find each other's chunks. Block hashes would not do: they
        chain per block (vLLM's too, ``KVCacheManager``'s ``hash_block_size`` in vllm/v1/core/kv_cache_manager.py),
        so the hash at a chunk's end differs with the block size."""
        return extend_chain(self._chunks.setdefault(rid, []), self._token_ids.get(rid), CHUNK_TOKENS, rid, n_chunks)

    def cached_prefix_blocks(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of a hash chain the cache holds (a router's probe; no side effects)."""
        cached = self.pool.cached
        n = 0
        for h in hashes:
            if h not in cached:
                break
            n += 1
        return n

    def lookup(self, rid: int, num_tokens: int) -> list[int]:
        """Cached blocks that cover this request's prefix (at most ``num_tokens - 1`` tokens,
        so at least one token is computed and yields logits)."""
        if not self.prefix_caching:
            return []
        n = (num_tokens - 1) // self.block_size
        found = []
        cached = self.pool.cached
        for h in self.block_hashes(rid, n)[:n]:
            b = cached.get(h)
            if b is None:
                break
            found.append(b)
        return found

    def can_allocate(self, rid: int, total_tokens: int, computed: Sequence[int] = ()) -> bool:
        need = -(-total_tokens // self.block_size) - len(self.blocks[rid]) - len(computed)
        reclaim = sum(1 for b in computed if self.pool.ref[b] == 0)
        return need <= self.pool.num_free - reclaim

    def allocate(self, rid: int, total_tokens: int, computed: Sequence[int] = ()) -> bool:
        """Make room for ``total_tokens`` tokens (all or nothing); ``computed`` are prefix hits."""
        if not self.can_allocate(rid, total_tokens, computed):
            return False
        blocks = self.blocks[rid]
        if computed:
            self.pool.touch(computed)
            blocks.extend(computed)
            self.num_cached[rid] = len(blocks)
        need = -(-total_tokens // self.block_size) - len(blocks)
        if need > 0:
            blocks.extend(self.pool.allocate(need))
        return True

    def cache_full_blocks(self, rid: int, num_computed: int, now: float = 0.0) -> None:
        """Index the request's newly completed blocks; write completed chunks through to the lower pool."""
        if not self.prefix_caching:
            return
        full = num_computed // self.block_size
        done = self.num_cached[rid]
        if full <= done:
            return
        hs = self._hashes.get(rid)
        if hs is None or len(hs) < full:
            hs = self.block_hashes(rid, full)
        blocks = self.blocks[rid]
        cached, block_hash = self.pool.cached, self.pool.block_hash
        for i in range(done, full):   # BlockPool.cache, inlined: this runs for every filled block
            b, h = blocks[i], hs[i]
            if h not in cached and block_hash[b] is None:
                cached[h] = b
                block_hash[b] = h
        self.num_cached[rid] = full
        if self.lower is not None:
            cb = self.chunk_blocks
            first, last = done // cb, full // cb   # chunks newly covered: first .. last - 1
            if last > first:
                self.to_store.extend(self.chunk_keys(rid, last)[first:last])

    def take_store(self) -> list[int]:
        """The chunk keys gathered since the last call (for the step just scheduled)."""
        keys, self.to_store = self.to_store, []
        return keys

    def lower_hit_tokens(self, rid: int, num_tokens: int, npu_hit_tokens: int) -> tuple[int, float]:
        """Tokens beyond the NPU's own hit that the lower pool can supply (whole chunks, at most
        ``num_tokens - 1`` tokens in all), and when the chunks holding them are wholly in the pool."""
        pool = self.lower
        if pool is None or not self.prefix_caching:
            return 0, 0.0
        n_chunks = (num_tokens - 1) // CHUNK_TOKENS
        if n_chunks * CHUNK_TOKENS <= npu_hit_tokens:
            return 0, 0.0
        keys = self.chunk_keys(rid, n_chunks)[:n_chunks]
        found = pool.match(keys)
        extra = found * CHUNK_TOKENS - npu_hit_tokens
        if extra <= 0:
            return 0, 0.0
        return extra, pool.landed(keys[npu_hit_tokens // CHUNK_TOKENS:found])

    def free(self, rid: int) -> None:
        self.pool.release(self.blocks[rid])
        self.blocks[rid] = []
        self.num_cached[rid] = 0

    def forget(self, rid: int) -> None:
        """Drop per-request bookkeeping once the request has finished for good."""
        self.free(rid)
        for per_request in (self.blocks, self.num_cached, self._hashes, self._chunks, self._token_ids):
            per_request.pop(rid, None)
