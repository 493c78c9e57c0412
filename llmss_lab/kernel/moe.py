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

The random policies turn pick weights into each expert's chance of being among a token's ``k``
distinct experts, then draw a step's pair counts per layer in one vectorised multinomial (see
``_SampledGate.route``): exact in the totals, an approximation of token-by-token top-k sampling.
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

    expert_tokens: np.ndarray   # [G, E] token-expert pairs per expert
    local_tokens: np.ndarray    # [G, ep] tokens that reach each EP rank
    activated: np.ndarray       # [G, ep] experts with at least one token on each rank
    repeat: int
    top_k: int

    def layer_loads(self, num_layers: int) -> np.ndarray:
        """Pairs per expert for every layer: [num_layers, E]."""
        return np.repeat(self.expert_tokens, self.repeat, axis=0)[:num_layers]

    def pair_tokens(self) -> np.ndarray:
        """[G, ep] each rank's token-expert pairs over ``top_k``: the tokens at which a one-GPU MoE block,
        every token picking ``top_k`` experts (how moe.csv is profiled), computes the rank's pairs."""
        G, ep = self.local_tokens.shape
        return self.expert_tokens.reshape(G, ep, -1).sum(axis=2) / self.top_k


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

    def _from_counts(self, tokens: int, counts: np.ndarray, pi: np.ndarray) -> MoeRouting:
        """Per-rank reach and activation from per-expert pair counts and inclusion probabilities."""
        G = counts.shape[0]
        by_rank = counts.reshape(G, self.ep, self.per_rank)
        activated = np.count_nonzero(by_rank, axis=2)
        reach = 1.0 - np.prod(1.0 - pi.reshape(-1, self.ep, self.per_rank), axis=2)
        local = np.minimum(np.rint(tokens * reach), by_rank.sum(axis=2))
        return MoeRouting(counts.astype(float), local, activated, self.layers // G, self.k)


@GATES.register("balanced")
class BalancedGate(Gate):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._routed: dict[int, MoeRouting] = {}   # tokens -> routing: it depends on nothing else

    def route(self, tokens: int) -> MoeRouting:
        """The same routing object for the same token count (its arrays read-only, as it is shared)."""
        r = self._routed.get(tokens)
        if r is None:
            E, k, ep = self.E, self.k, self.ep
            pairs = np.full((1, E), tokens * k / E)
            p_rank = 1.0 - ((ep - 1) / ep) ** k if ep > 1 else 1.0
            local = np.full((1, ep), float(round(tokens * p_rank)))
            act = np.full((1, ep), float(min(round(tokens * k / ep), self.per_rank)))
            for a in (pairs, local, act):
                a.flags.writeable = False
            r = self._routed[tokens] = MoeRouting(pairs, local, act, self.layers, k)
        return r


def inclusion_probabilities(p: np.ndarray, k: int) -> np.ndarray:
    """Chance that a token's ``k`` distinct experts include each expert, given pick weights ``p``:
    ``min(1, c p)`` with ``c`` set so they sum to ``k`` (an expert hot enough is in every token's set)."""
    pi = np.zeros_like(p, dtype=float)
    active = np.ones(len(p), bool)
    left = float(k)
    while active.any():
        c = left / p[active].sum()
        sat = active & (c * p >= 1.0)
        if not sat.any():
            pi[active] = c * p[active]
            break
        pi[sat] = 1.0
        left -= int(sat.sum())
        active &= ~sat
    return pi


class _SampledGate(Gate):
    _p: np.ndarray   # [layers, E] pick weights

    def _prepare(self) -> None:
        self._pi = np.stack([inclusion_probabilities(row, self.k) for row in self._p])
        self._sat = self._pi >= 1.0 - 1e-12
        rest = np.where(self._sat, 0.0, self._pi)
        sums = rest.sum(axis=1, keepdims=True)
        self._q = np.divide(rest, sums, out=np.zeros_like(rest), where=sums > 0)
        self._k_rest = self.k - self._sat.sum(axis=1)

    def route(self, tokens: int) -> MoeRouting:
        """Experts in every token's set get T pairs; the rest of the T k pairs are one multinomial
        per layer over the other experts by their inclusion chance, any expert above T (a token picks
        an expert once) handing its excess to the others. Exact in the totals, cheap at any T."""
        counts = self.rng.multinomial(tokens * self._k_rest, self._q) + tokens * self._sat
        for g in np.flatnonzero((counts > tokens).any(axis=1)):
            self._cap(tokens, counts[g], self._q[g])
        return self._from_counts(tokens, counts, self._pi)

    def _cap(self, tokens: int, counts: np.ndarray, p: np.ndarray) -> None:
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
        self._prepare()


@GATES.register("zipf")
class ZipfGate(_SampledGate):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        if self.skew < 0:
            raise ValueError(f"zipf skew must be >= 0, got {self.skew}")
        w = 1.0 / np.arange(1, self.E + 1) ** self.skew
        w /= w.sum()
        self._p = np.stack([w[self.rng.permutation(self.E)] for _ in range(self.layers)])
        self._prepare()
