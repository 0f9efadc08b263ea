"""Pair mining for pairwise re-rankers (OML's ``PairsMiner``)."""

from __future__ import annotations

import torch
from torch import Tensor

from omlcore_miners.inbatch import AllTripletsMiner, HardTripletsMiner

__all__ = ["PairsMiner"]


def _unordered_unique(i: Tensor, j: Tensor) -> Tensor:
    """Distinct pairs ``(min, max)`` as rows of a long ``(P, 2)`` tensor, sorted lexicographically."""
    pairs = torch.stack([torch.minimum(i, j), torch.maximum(i, j)], dim=1)
    return torch.unique(pairs, dim=0) if pairs.shape[0] else pairs


class PairsMiner:
    """Positive and negative pairs taken from hard (or all) triplets, for training a pairwise model.

    Args:
        hard_mining: mine triplets with ``hard_triplets`` (``True``) or ``all_triplets`` (``False``).

    ``sample`` returns ``(ids1, ids2, is_negative)``: the distinct ``{anchor, positive}`` pairs, then the
    distinct ``{anchor, negative}`` pairs, each as ``(smaller, larger)`` index and sorted.
    """

    def __init__(self, hard_mining: bool = True) -> None:
        self.hard_mining = hard_mining
        self._miner: HardTripletsMiner | AllTripletsMiner = HardTripletsMiner() if hard_mining else AllTripletsMiner()
        self.last_logs: dict[str, float] = {}

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Long ``ids1``, long ``ids2`` (``ids1 < ids2``) and bool ``is_negative``."""
        a, p, n = self._miner.sample(features, labels)
        positive = _unordered_unique(a, p)
        negative = _unordered_unique(a, n)
        pairs = torch.cat([positive, negative])
        is_negative = torch.zeros(pairs.shape[0], dtype=torch.bool, device=features.device)
        is_negative[positive.shape[0] :] = True
        self.last_logs = {"positive_pairs": float(positive.shape[0]), "negative_pairs": float(negative.shape[0])}
        return pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), is_negative
