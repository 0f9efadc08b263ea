"""Miners that look at the current batch only: all, hard, n-hard triplets and hard clusters."""

from __future__ import annotations

import torch
from torch import Tensor

from omlcore_miners._common import (
    Memory,
    MemoryRecorder,
    all_triplets,
    check_batch,
    count_all_triplets,
    empty_triplets,
    n_hard_from_rows,
    parse_rank_range,
    sq_distances,
)

__all__ = ["AllTripletsMiner", "HardClusterMiner", "HardTripletsMiner", "NHardTripletsMiner"]


class AllTripletsMiner:
    """Every valid triplet of the batch, optionally a seeded random subset of them.

    Args:
        max_output_triplets: keep at most this many triplets (a uniformly random subset, still in
            lexicographic ``(a, p, n)`` order); ``None`` keeps all.
        seed: seed of the miner's own generator used for the subset (global RNGs are not touched).
    """

    def __init__(self, max_output_triplets: int | None = None, seed: int = 0) -> None:
        if max_output_triplets is not None and (isinstance(max_output_triplets, bool) or max_output_triplets < 1):
            raise ValueError(f"max_output_triplets must be None or >= 1, got {max_output_triplets!r}")
        self.max_output_triplets = max_output_triplets
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self.last_logs: dict[str, float] = {}

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All ``(a, p, n)`` with ``labels[a] == labels[p]``, ``a != p``, ``labels[n] != labels[a]``."""
        labels = check_batch(features, labels)
        a, p, n = all_triplets(labels)
        total = a.numel()
        if self.max_output_triplets is not None and total > self.max_output_triplets:
            keep = torch.randperm(total, generator=self._generator)[: self.max_output_triplets]
            keep = keep.sort().values.to(a.device)
            a, p, n = a[keep], p[keep], n[keep]
        self.last_logs = {"available_triplets": float(total), "triplets": float(a.numel())}
        return a, p, n

    def takes_all_triplets(self, features: Tensor, labels: Tensor) -> bool:
        """Whether :meth:`sample` would return every in-batch triplet of this batch (the shortcut of the
        README: a loss may then compute on all triplets without their index tensors and skip ``sample``).

        When ``True``, ``last_logs`` is updated as ``sample`` would; when ``False`` (a random subset is due)
        nothing changes, the generator included, and the caller calls ``sample``.
        """
        labels = check_batch(features, labels)
        total = count_all_triplets(labels)
        if self.max_output_triplets is not None and total > self.max_output_triplets:
            return False
        self.last_logs = {"available_triplets": float(total), "triplets": float(total)}
        return True


class NHardTripletsMiner:
    """Per anchor, the cartesian product of its hardest positives and hardest negatives.

    Args:
        n_positive: ``k`` (ranks ``1..k``) or a 1-based inclusive range ``[first, last]`` of positive
            ranks, rank 1 being the farthest positive.
        n_negative: the same for negatives, rank 1 being the nearest negative.
    """

    def __init__(self, n_positive: int | list[int] = 1, n_negative: int | list[int] = 1) -> None:
        self.n_positive = n_positive
        self.n_negative = n_negative
        self._positive_ranks = parse_rank_range(n_positive, "n_positive")
        self._negative_ranks = parse_rank_range(n_negative, "n_negative")
        self.last_logs: dict[str, float] = {}

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Triplets ordered by anchor, then positive rank, then negative rank."""
        labels = check_batch(features, labels)
        size = labels.shape[0]
        if size == 0:
            self.last_logs = {"triplets": 0.0}
            return empty_triplets(features.device)
        a, p, n = n_hard_from_rows(features, features, labels, labels, self._positive_ranks, self._negative_ranks)
        self.last_logs = {"triplets": float(a.numel())}
        return a, p, n


class HardTripletsMiner(NHardTripletsMiner):
    """Per anchor (ascending), its farthest positive and its nearest negative (ties: smaller index)."""

    def __init__(self) -> None:
        super().__init__(n_positive=1, n_negative=1)


class HardClusterMiner(MemoryRecorder):
    """One triplet per label built on label centres (OML's ``HardClusterMiner``); uses extra rows.

    For each label ``c`` with at least two items (ascending label order): anchor = the centre of ``c``,
    positive = the item of ``c`` farthest from it, negative = the nearest centre of another label.
    Centres are indices ``B + j`` into ``[batch; last_memory().features]``; they are means of the
    features and carry the gradient.
    """

    def __init__(self) -> None:
        self._memory = None
        self.last_logs: dict[str, float] = {}

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``n_labels`` triplets at most (labels with one item give none)."""
        labels = check_batch(features, labels)
        size = labels.shape[0]
        unique, inverse = torch.unique(labels, sorted=True, return_inverse=True)
        n_labels = unique.numel()
        counts = torch.bincount(inverse, minlength=n_labels)
        sums = torch.zeros(n_labels, features.shape[1], dtype=features.dtype, device=features.device)
        centres = sums.index_add(0, inverse, features) / counts[:, None].to(features.dtype)
        self._memory = Memory(centres, unique)
        if n_labels < 2:
            self.last_logs = {"triplets": 0.0}
            return empty_triplets(features.device)
        # squared distances (float64) between the detached rows and the centres as returned
        to_centres = sq_distances(features, centres)
        own = inverse[None, :] == torch.arange(n_labels, device=labels.device)[:, None]
        own_dist = to_centres.gather(1, inverse[:, None]).flatten()
        # argmax/argmin return the first (smallest-index) extremum on ties.
        farthest = own_dist[None, :].expand(n_labels, size).masked_fill(~own, float("-inf")).argmax(dim=1)
        between = sq_distances(centres)
        between.fill_diagonal_(float("inf"))
        nearest = between.argmin(dim=1)
        chosen = (counts >= 2).nonzero().flatten()
        self.last_logs = {"triplets": float(chosen.numel())}
        return chosen + size, farthest[chosen], nearest[chosen] + size
