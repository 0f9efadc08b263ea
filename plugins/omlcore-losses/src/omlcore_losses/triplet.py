"""Triplet losses: on every triplet of the batch, on stacked triplets, and on the triplets of a miner."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torch.nn import functional as F

from omlcore.protocols import Miner

from ._base import (
    EmptyPolicy,
    LossInputError,
    MetricLoss,
    NoValidTripletsError,
    Reduction,
    check_batch,
    pair_masks,
    pairwise_l2,
    reduce,
)

__all__ = ["TripletLoss", "TripletLossPlain", "TripletLossWithMiner", "all_triplets", "triplet_values"]


def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every ``(anchor, positive, negative)`` of the batch as three long index tensors (vectorised).

    Memory is ``B^3`` booleans, fine for the usual batch sizes (``B = 256``: 16 MB).
    """
    positive, negative = pair_masks(labels)
    a, p, n = torch.nonzero(positive[:, :, None] & negative[:, None, :], as_tuple=True)
    return a, p, n


def triplet_values(d_ap: Tensor, d_an: Tensor, margin: float | None) -> Tensor:
    """Per-triplet loss: ``relu(margin + d_ap - d_an)``, or ``log1p(exp(d_ap - d_an))`` when ``margin`` is
    ``None`` (the soft-margin version, computed stably as ``softplus``)."""
    if margin is None:
        return F.softplus(d_ap - d_an)
    return F.relu(margin + d_ap - d_an)


class _TripletBase(MetricLoss):
    def __init__(self, margin: float | None, reduction: Reduction, need_logs: bool, on_empty: EmptyPolicy) -> None:
        super().__init__()
        self._check_reduction(reduction)
        self._check_on_empty(on_empty)
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or null (soft margin), got {margin}")
        self.margin = margin
        self.reduction = reduction
        self.need_logs = need_logs
        self.on_empty = on_empty

    def triplet_loss(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """The loss on given triplet embeddings, three float ``(T, D)`` tensors (OML's ``TripletLoss``)."""
        d_ap = torch.linalg.vector_norm(anchor - positive, dim=1)
        d_an = torch.linalg.vector_norm(anchor - negative, dim=1)
        return self._from_distances(d_ap, d_an)

    def _from_distances(self, d_ap: Tensor, d_an: Tensor, extra: Mapping[str, float] | None = None) -> Tensor:
        values = triplet_values(d_ap, d_an, self.margin)
        logs: dict[str, float] = {"n_triplets": float(values.numel()), "empty_batch": 0.0}
        if self.need_logs:
            with torch.no_grad():
                logs["active_tri"] = float((values > 0).float().mean()) if self.margin is not None else 1.0
                logs["pos_dist"] = float(d_ap.mean())
                logs["neg_dist"] = float(d_an.mean())
        logs.update(extra or {})
        self.last_logs = logs
        return reduce(values, self.reduction)


class TripletLoss(_TripletBase):
    """Triplet loss over every ``(anchor, positive, negative)`` of the batch, Euclidean distances.

    Args:
        margin: the margin of ``relu(margin + d_ap - d_an)``; ``None`` gives the soft-margin loss
            ``log1p(exp(d_ap - d_an))``.
        reduction: ``mean`` or ``sum`` over the triplets.
        need_logs: add ``active_tri``, ``pos_dist`` and ``neg_dist`` to ``last_logs`` (three host syncs).
        on_empty: a batch without any triplet raises :class:`NoValidTripletsError` (``raise``) or gives
            a zero loss connected to the graph and ``last_logs["empty_batch"] = 1`` (``zero``).
    """

    loss_name = "triplet"

    def __init__(
        self,
        margin: float | None = 0.1,
        reduction: Reduction = "mean",
        need_logs: bool = True,
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(margin, reduction, need_logs, on_empty)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss on all triplets of ``(features, labels)``."""
        check_batch(self.loss_name, features, labels)
        a, p, n = all_triplets(labels)
        if a.numel() == 0:
            return self._empty(features, labels, self.on_empty, NoValidTripletsError, "there is no triplet")
        dist = pairwise_l2(features)
        return self._from_distances(dist[a, p], dist[a, n])


class TripletLossPlain(_TripletBase):
    """Triplet loss on a batch already arranged as triplets: rows ``(a, p, n, a, p, n, ...)``.

    ``labels`` must follow the layout: ``labels[0::3] == labels[1::3] != labels[2::3]``; a batch whose size
    is not a multiple of 3 or whose labels break the layout raises :class:`LossInputError`. Arguments as
    :class:`TripletLoss`.
    """

    loss_name = "triplet_plain"

    def __init__(
        self,
        margin: float | None = 0.1,
        reduction: Reduction = "mean",
        need_logs: bool = True,
    ) -> None:
        super().__init__(margin, reduction, need_logs, "raise")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss on the stacked triplets."""
        check_batch(self.loss_name, features, labels)
        if features.shape[0] % 3:
            raise LossInputError(
                f"{self.loss_name}: the batch must hold whole triplets (a, p, n, a, p, n, ...), "
                f"got {features.shape[0]} rows, not a multiple of 3"
            )
        la, lp, ln = labels[0::3], labels[1::3], labels[2::3]
        broken = ((la != lp) | (la == ln)).nonzero().flatten()
        if broken.numel():
            i = int(broken[0])
            raise LossInputError(
                f"{self.loss_name}: triplet {i} (rows {3 * i}..{3 * i + 2}) has labels "
                f"{labels[3 * i : 3 * i + 3].tolist()}; expected (x, x, y) with y != x"
            )
        return self.triplet_loss(features[0::3], features[1::3], features[2::3])


class TripletLossWithMiner(_TripletBase):
    """Triplet loss on the triplets a miner picks from the batch.

    Args:
        margin: as :class:`TripletLoss`; ``None`` is the soft margin.
        miner: any :class:`~omlcore.protocols.Miner`; in a config a nested ``{name, args}`` spec
            (``miner: {name: hard_triplets}``) that omlcore builds. ``None`` uses every triplet.
        reduction, need_logs, on_empty: as :class:`TripletLoss`. ``on_empty`` also covers a miner that
            returns no triplet. The miner's own ``last_logs`` (if it has any) are merged into this loss's,
            prefixed ``miner/``.
    """

    loss_name = "triplet_with_miner"

    def __init__(
        self,
        margin: float | None = 0.1,
        miner: Miner | None = None,
        reduction: Reduction = "mean",
        need_logs: bool = True,
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(margin, reduction, need_logs, on_empty)
        self.miner = miner

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Mine, then the loss on the mined triplets."""
        check_batch(self.loss_name, features, labels)
        if self.miner is None:
            a, p, n = all_triplets(labels)
        else:
            a, p, n = self.miner.sample(features, labels)
        if a.numel() == 0:
            why = (
                "there is no triplet"
                if self.miner is None
                else f"the miner {type(self.miner).__name__} found no triplet"
            )
            return self._empty(features, labels, self.on_empty, NoValidTripletsError, why)
        a, p, n = (t.to(features.device).long() for t in (a, p, n))
        extra: dict[str, float] = {}
        miner_logs = getattr(self.miner, "last_logs", None)
        if isinstance(miner_logs, Mapping):
            extra = {f"miner/{k}": float(v) for k, v in miner_logs.items()}
        # Miners that also mine outside the batch (memory banks, label centres) expose those rows with
        # `last_memory()`: index i >= B is row i - B of its features (the omlcore-miners contract).
        rows = features
        last_memory = getattr(self.miner, "last_memory", None)
        if callable(last_memory):
            memory = last_memory()
            if memory is not None and memory.features.shape[0] > 0:
                rows = torch.cat([features, memory.features.to(device=features.device, dtype=features.dtype)])
        if int(torch.stack([a.max(), p.max(), n.max()]).max()) >= rows.shape[0]:
            raise LossInputError(
                f"{self.loss_name}: the miner {type(self.miner).__name__} returned an index >= {rows.shape[0]} "
                f"(batch of {features.shape[0]} plus {rows.shape[0] - features.shape[0]} memory rows)"
            )
        if a.numel() <= rows.shape[0]:
            # Few triplets (batch-hard mining gives one per anchor): gathering their rows is cheaper
            # than a full distance matrix and its backward.
            d_ap = torch.linalg.vector_norm(rows[a] - rows[p], dim=1)
            d_an = torch.linalg.vector_norm(rows[a] - rows[n], dim=1)
            return self._from_distances(d_ap, d_an, extra)
        # Many triplets: one (N, N) distance matrix, then index it. Gathering a feature row per triplet
        # would cost O(T * D) memory (gigabytes with all triplets of a large batch) and a slow backward.
        dist = pairwise_l2(rows)
        return self._from_distances(dist[a, p], dist[a, n], extra)
