"""Mixture-of-experts routing: which experts, on which expert-parallel rank, each step's tokens reach.

A gate policy turns ``T`` tokens of one step into, for every MoE layer, the token-expert pairs per
expert (``T x top_k`` in all, so tokens are conserved across experts) and, for every EP rank, the
tokens that reach it and the experts it activates. Experts are placed on ranks in contiguous
ranges (rank ``r`` owns experts ``[r E/ep, (r+1) E/ep)``), as vLLM places them.

Policies (registered by name):

* ``balanced`` - the expectation of uniform routing, deterministic: each expert gets ``T k / E``
  pairs; a rank is reached by ``T (1 - ((ep-1)/ep)^k)`` tokens and activates
  ``min(T k / ep, E / ep)`` experts.
* ``random`` - uniform random routing, seeded: pair counts per layer ~ Multinomial(T k, 1/E).
* ``zipf`` - skewed routing: expert popularity follows a Zipf law with exponent ``skew`` (0 is
  uniform), the popularity order shuffled per layer with the seed.

For the random policies the ``T k`` pairs are drawn as one multinomial per layer, with pairs
above ``T`` on one expert (a token picks an expert at most once) redrawn over the others: exact
in the totals, an approximation of per-token top-k sampling that is cheap at any ``T``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import Registry

GATES = Registry["Gate"]("expert gate policy")


@dataclass(frozen=True)
class MoeRouting:
    """One step's routing. Arrays have a leading layer axis of length ``G``; each row stands for
    ``repeat`` consecutive layers (``G = 1, repeat = layers`` when every layer routes alike)."""

    tokens: int
    expert_tokens: np.ndarray   # [G, E] token-expert pairs per expert
    local_tokens: np.ndarray    # [G, ep] tokens that reach each EP rank
    activated: np.ndarray       # [G, ep] experts with at least one token on each rank
    repeat: int

    def layer_loads(self, num_layers: int) -> np.ndarray:
        """Pairs per expert for every layer: [num_layers, E]."""
        return np.repeat(self.expert_tokens, self.repeat, axis=0)[:num_layers]


class Gate:
    name = "base"

    def __init__(self, num_experts: int, top_k: int, ep: int, num_layers: int, seed: int = 0,
                 skew: float = 1.0) -> None:
        if ep < 1 or num_experts % ep:
            raise ValueError(f"ep_size {ep} must divide the {num_experts} experts")
        self.E, self.k, self.ep, self.layers = num_experts, top_k, ep, num_layers
        self.per_rank = num_experts // ep
        self.rng = np.random.default_rng(seed)
        self.skew = skew

    def route(self, tokens: int) -> MoeRouting:
        raise NotImplementedError

    def _from_counts(self, tokens: int, counts: np.ndarray, probs: np.ndarray) -> MoeRouting:
        """Per-rank reach and activation from per-expert pair counts and routing probabilities."""
        G = counts.shape[0]
        by_rank = counts.reshape(G, self.ep, self.per_rank)
        activated = np.count_nonzero(by_rank, axis=2)
        q = probs.reshape(-1, self.ep, self.per_rank).sum(axis=2)        # P(one pick lands on rank)
        reach = 1.0 - (1.0 - q) ** self.k
        local = np.minimum(np.rint(tokens * reach), by_rank.sum(axis=2))
        return MoeRouting(tokens, counts.astype(float), local, activated, self.layers // G)


@GATES.register("balanced")
class BalancedGate(Gate):
    def route(self, tokens: int) -> MoeRouting:
        E, k, ep = self.E, self.k, self.ep
        pairs = np.full((1, E), tokens * k / E)
        p_rank = 1.0 - ((ep - 1) / ep) ** k if ep > 1 else 1.0
        local = np.full((1, ep), float(round(tokens * p_rank)))
        act = np.full((1, ep), float(min(round(tokens * k / ep), self.per_rank)))
        return MoeRouting(tokens, pairs, local, act, self.layers)


class _SampledGate(Gate):
    def _probs(self) -> np.ndarray:
        """[layers, E] routing probabilities."""
        raise NotImplementedError

    def route(self, tokens: int) -> MoeRouting:
        p = self._p
        counts = self.rng.multinomial(tokens * self.k, p)
        for g in np.flatnonzero((counts > tokens).any(axis=1)):
            self._cap(tokens, counts[g], p[g])
        return self._from_counts(tokens, counts, p)

    def _cap(self, tokens: int, counts: np.ndarray, p: np.ndarray) -> None:
        """Move pairs above T (a token picks an expert at most once) to the other experts."""
        while (over := counts > tokens).any():
            excess = int((counts[over] - tokens).sum())
            counts[over] = tokens
            room = np.where(counts < tokens, p, 0.0)
            counts += self.rng.multinomial(excess, room / room.sum())


@GATES.register("random")
class RandomGate(_SampledGate):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._p = np.full((self.layers, self.E), 1.0 / self.E)


@GATES.register("zipf")
class ZipfGate(_SampledGate):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        if self.skew < 0:
            raise ValueError(f"zipf skew must be >= 0, got {self.skew}")
        w = 1.0 / np.arange(1, self.E + 1) ** self.skew
        w /= w.sum()
        self._p = np.stack([w[self.rng.permutation(self.E)] for _ in range(self.layers)])
