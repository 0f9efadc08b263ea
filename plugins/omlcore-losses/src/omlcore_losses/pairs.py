"""Pair-based losses: contrastive, multi-similarity, SupCon (NT-Xent) and surrogate precision."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ._base import (
    EmptyPolicy,
    MetricLoss,
    NoValidPairsError,
    Reduction,
    check_batch,
    pair_masks,
    pairwise_l2,
    reduce,
)

__all__ = ["ContrastiveLoss", "MultiSimilarityLoss", "SupConLoss", "SurrogatePrecisionLoss"]


class _PairLoss(MetricLoss):
    """Shared checks: valid input, at least one positive and one negative pair."""

    def __init__(self, reduction: Reduction, on_empty: EmptyPolicy) -> None:
        super().__init__()
        self._check_reduction(reduction)
        self._check_on_empty(on_empty)
        self.reduction = reduction
        self.on_empty = on_empty

    def _masks(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | None:
        check_batch(self.loss_name, features, labels)
        pos, neg = pair_masks(labels)
        if not bool(pos.any()) or not bool(neg.any()):
            return None
        return pos, neg

    def _no_pairs(self, features: Tensor, labels: Tensor) -> Tensor:
        pos, _ = pair_masks(labels)
        why = "there is no positive pair" if not bool(pos.any()) else "there is no negative pair"
        return self._empty(features, labels, self.on_empty, NoValidPairsError, why)

    def _pair_logs(self, dist_or_sim: Tensor, pos: Tensor, neg: Tensor, key: str) -> dict[str, float]:
        with torch.no_grad():
            return {
                "n_pos_pairs": float(pos.sum()) / 2,
                "n_neg_pairs": float(neg.sum()) / 2,
                f"pos_{key}": float(dist_or_sim[pos].mean()),
                f"neg_{key}": float(dist_or_sim[neg].mean()),
                "empty_batch": 0.0,
            }


class ContrastiveLoss(_PairLoss):
    """Contrastive loss (Hadsell et al. 2006) with squared hinges, on Euclidean distances.

    ``mean_{pos} relu(d - pos_margin)^2 + mean_{neg} relu(neg_margin - d)^2`` (positives and negatives are
    averaged separately, so the many negatives of a batch do not drown the positives). With
    ``reduction="sum"`` the two sums are added instead.

    Args:
        pos_margin: positive pairs closer than this cost nothing.
        neg_margin: negative pairs farther than this cost nothing.
        normalize: L2-normalise the embeddings first (distances then lie in ``[0, 2]``).
        reduction: ``mean`` or ``sum`` over the pairs.
        on_empty: a batch without a positive or a negative pair raises :class:`NoValidPairsError`
            (``raise``) or gives a zero loss flagged in ``last_logs`` (``zero``).
    """

    loss_name = "contrastive"

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        normalize: bool = True,
        reduction: Reduction = "mean",
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(reduction, on_empty)
        if pos_margin < 0 or neg_margin <= pos_margin:
            raise ValueError(f"need 0 <= pos_margin < neg_margin, got {pos_margin} and {neg_margin}")
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.normalize = normalize

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss over all pairs of the batch."""
        masks = self._masks(features, labels)
        if masks is None:
            return self._no_pairs(features, labels)
        pos, neg = masks
        x = F.normalize(features, dim=1) if self.normalize else features
        dist = pairwise_l2(x)
        pos_terms = F.relu(dist[pos] - self.pos_margin) ** 2
        neg_terms = F.relu(self.neg_margin - dist[neg]) ** 2
        logs = self._pair_logs(dist, pos, neg, "dist")
        with torch.no_grad():
            logs["active_pos_pairs"] = float((pos_terms > 0).float().mean())
            logs["active_neg_pairs"] = float((neg_terms > 0).float().mean())
        self.last_logs = logs
        return reduce(pos_terms, self.reduction) + reduce(neg_terms, self.reduction)


def _log1p_sum_exp(values: Tensor, mask: Tensor) -> Tensor:
    """Row-wise ``log(1 + sum_{mask} exp(values))``, stable, ``0`` for rows with an empty mask."""
    masked = values.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros_like(values[:, :1])
    return torch.logsumexp(torch.cat([zeros, masked], dim=1), dim=1)


class MultiSimilarityLoss(_PairLoss):
    """Multi-similarity loss (Wang et al. 2019) on cosine similarities ``S``.

    Per anchor ``i``: ``(1/alpha) log(1 + sum_{P_i} exp(-alpha (S_ij - base)))
    + (1/beta) log(1 + sum_{N_i} exp(beta (S_ik - base)))``, averaged over anchors. With ``epsilon``
    set, pairs are mined first as in the paper: a positive is kept if ``S_ij < max_neg S_ik + epsilon``,
    a negative if ``S_ik > min_pos S_ij - epsilon``; ``null`` keeps every pair.

    Args:
        alpha, beta: scales of the positive and negative terms.
        base: the similarity offset ``lambda``.
        epsilon: the mining margin, or ``None`` for no mining.
        reduction: ``mean`` or ``sum`` over anchors.
        on_empty: as :class:`ContrastiveLoss`.
    """

    loss_name = "multi_similarity"

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float | None = 0.1,
        reduction: Reduction = "mean",
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(reduction, on_empty)
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got {alpha} and {beta}")
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.epsilon = epsilon

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss over the (mined) pairs of each anchor."""
        masks = self._masks(features, labels)
        if masks is None:
            return self._no_pairs(features, labels)
        pos, neg = masks
        x = F.normalize(features, dim=1)
        sim = x @ x.T
        logs = self._pair_logs(sim, pos, neg, "sim")
        if self.epsilon is not None:
            with torch.no_grad():
                hardest_neg = sim.masked_fill(~neg, float("-inf")).max(dim=1, keepdim=True).values
                easiest_pos = sim.masked_fill(~pos, float("inf")).min(dim=1, keepdim=True).values
                pos = pos & (sim < hardest_neg + self.epsilon)
                neg = neg & (sim > easiest_pos - self.epsilon)
            logs["mined_pos_pairs"] = float(pos.sum())
            logs["mined_neg_pairs"] = float(neg.sum())
        pos_term = _log1p_sum_exp(-self.alpha * (sim - self.base), pos) / self.alpha
        neg_term = _log1p_sum_exp(self.beta * (sim - self.base), neg) / self.beta
        self.last_logs = logs
        return reduce(pos_term + neg_term, self.reduction)


class SupConLoss(_PairLoss):
    """Supervised contrastive loss (Khosla et al. 2020, "L_out"); with two views per label it is NT-Xent.

    With ``z`` the L2-normalised embeddings and ``tau`` the temperature, per anchor ``i`` that has a
    positive: ``-1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )``,
    averaged over those anchors.

    Args:
        temperature: ``tau``.
        reduction: ``mean`` or ``sum`` over anchors that have a positive.
        on_empty: as :class:`ContrastiveLoss` (PML returns a silent 0 here, its issue #744).
    """

    loss_name = "supcon"

    def __init__(
        self,
        temperature: float = 0.1,
        reduction: Reduction = "mean",
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(reduction, on_empty)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss over anchors with at least one positive."""
        masks = self._masks(features, labels)
        if masks is None:
            return self._no_pairs(features, labels)
        pos, neg = masks
        x = F.normalize(features, dim=1)
        sim = x @ x.T
        logits = (sim / self.temperature).masked_fill(
            torch.eye(len(x), dtype=torch.bool, device=x.device), float("-inf")
        )
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        has_pos = pos.any(dim=1)
        n_pos = pos.sum(dim=1).clamp(min=1)
        per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1) / n_pos)[has_pos]
        logs = self._pair_logs(sim, pos, neg, "sim")
        logs["n_anchors"] = float(has_pos.sum())
        self.last_logs = logs
        return reduce(per_anchor, self.reduction)


class SurrogatePrecisionLoss(_PairLoss):
    """``1 - `` a smooth precision@k (the "surrogate precision" of OML / Patel et al. 2022).

    For query ``i`` and item ``j`` with Euclidean distance ``d_ij``, the smooth rank is
    ``r_ij = 1 + sum_{l != j} sigmoid((d_ij - d_il) / temperature2)`` and the smooth precision is
    ``(1/K) sum_j [label_j = label_i] sigmoid((K - r_ij) / temperature1)`` with ``K = k + 1``: every item
    retrieves itself (at rank 1, counted as a hit), as in OML.

    Args:
        k: the ``k`` of precision@k.
        temperature1: smoothness of the top-``K`` step.
        temperature2: smoothness of the rank.
        reduction: ``mean`` or ``sum`` over queries.
        on_empty: as :class:`ContrastiveLoss`.
    """

    loss_name = "surrogate_precision"

    def __init__(
        self,
        k: int,
        temperature1: float = 1.0,
        temperature2: float = 0.01,
        reduction: Reduction = "mean",
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(reduction, on_empty)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if temperature1 <= 0 or temperature2 <= 0:
            raise ValueError(f"temperatures must be > 0, got {temperature1} and {temperature2}")
        self.k = k
        self.temperature1 = temperature1
        self.temperature2 = temperature2

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """``1 -`` the smooth precision@k of every sample used as a query against the batch."""
        masks = self._masks(features, labels)
        if masks is None:
            return self._no_pairs(features, labels)
        pos, neg = masks
        dist = pairwise_l2(features)
        # diff[i, j, l] = d_ij - d_il; the l == j term is sigmoid(0) = 0.5, hence + 0.5 rather than + 1.
        rank = torch.sigmoid((dist[:, :, None] - dist[:, None, :]) / self.temperature2).sum(dim=2) + 0.5
        kk = self.k + 1
        hits = pos | torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        precision = (torch.sigmoid((kk - rank) / self.temperature1) * hits).sum(dim=1) / kk
        logs = self._pair_logs(dist, pos, neg, "dist")
        logs["surrogate_precision"] = float(precision.detach().mean())
        self.last_logs = logs
        return reduce(1.0 - precision, self.reduction)
